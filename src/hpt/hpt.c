/* SPDX-License-Identifier: MIT */
/*
 * The table object: lazy allocation, the sharded reader lock that lets a
 * resize replace the table under running vCPUs, change tracking, raw entry
 * access for the migration reader and the loader (counts and the digest:
 * digest.c).
 * It must never hand out a torn entry, never lose a change while tracking,
 * and never print, exit or abort.
 *
 * Why no change is lost (tracking start vs the first pass, every later
 * pass, the rings and the bitmap): docs/hpt.md, "Change tracking"; the
 * orderings it relies on are named where they are made.
 */
#include "hpt_internal.h"
#include "hpt_inspect.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* ------------------------------------------------------------ reader lock */

static _Atomic unsigned shard_next;
static _Thread_local unsigned tl_shard; /* 1 + shard index, 0 = unassigned */

struct hpt_shard *hpt_my_shard(hpt_t *h)
{
	unsigned i = tl_shard;
	if (__builtin_expect(i == 0, 0)) {
		/* Threads get distinct shards round robin (64 threads before two
		 * share one; sharing costs contention, never correctness). */
		i = 1 + atomic_fetch_add_explicit(&shard_next, 1, memory_order_relaxed) % HPT_NSHARDS;
		tl_shard = i;
	}
	return &h->shards[i - 1];
}

struct hpt_shard *hpt_rd_lock_slow(hpt_t *h, struct hpt_shard *s)
{
	for (;;) {
		atomic_fetch_sub(&s->readers, 1);
		while (atomic_load_explicit(&h->excl, memory_order_relaxed))
			sched_yield();
		atomic_fetch_add(&s->readers, 1);
		if (!atomic_load(&h->excl))
			return s;
	}
}

void hpt_wr_lock(hpt_t *h)
{
	atomic_store(&h->excl, 1);
	for (unsigned i = 0; i < HPT_NSHARDS; i++) {
		unsigned spins = 0;
		while (atomic_load(&h->shards[i].readers) != 0) {
			if (++spins > 64) {
				sched_yield();
				spins = 0;
			} else {
				hpt_cpu_relax();
			}
		}
	}
}

void hpt_wr_unlock(hpt_t *h)
{
	atomic_store(&h->excl, 0);
}

/* ------------------------------------------------------------------ table */

struct hpt_table *hpt_table_new(unsigned shift)
{
	struct hpt_table *t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->shift = shift;
	t->slots = UINT64_C(1) << (shift - 4);
	t->bytes = (size_t)1 << shift;
	/* Anonymous zero pages: creating a 2 GiB table costs nothing until it
	 * is written, and freeing returns the memory to the system. */
	void *p = mmap(NULL, t->bytes, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED) {
		free(t);
		return NULL;
	}
	/* Big tables: ask for transparent huge pages. A guest's entries are
	 * spread over the whole table by the hash, so it is touched everywhere
	 * soon anyway; huge pages cut page faults and TLB misses of hcalls and
	 * of the migration's full passes. Advisory: failure is harmless. */
	if (shift >= 25)
		(void)madvise(p, t->bytes, MADV_HUGEPAGE);
	t->w = p;
	return t;
}

void hpt_table_free(struct hpt_table *t)
{
	if (!t)
		return;
	munmap((void *)(uintptr_t)t->w, t->bytes);
	free(t);
}

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif
#define POPULATE_STEP ((size_t)32 << 20)

int hpt_populate(hpt_t *h, hm_error_t *err)
{
	/* In steps, each inside the reader lock (the table stays mapped), so a
	 * resize commit waits for one step, not the whole table; after a
	 * resize the new table is the one populated. */
	for (size_t off = 0;;) {
		struct hpt_shard *s = hpt_rd_lock(h);
		struct hpt_table *t = hpt_tab(h);
		if (off >= t->bytes) {
			hpt_rd_unlock(s);
			return 0;
		}
		size_t n = t->bytes - off < POPULATE_STEP ? t->bytes - off : POPULATE_STEP;
		char *p = (char *)(uintptr_t)t->w + off;
		int rc = madvise(p, n, MADV_POPULATE_WRITE) == 0 ? 0 : -errno;
		if (rc == -EINVAL) {
			/* An older kernel: fault each page in for writing with an
			 * atomic OR of 0, which changes nothing even while vCPUs
			 * write the same words. */
			for (size_t o = 0; o < n; o += 4096)
				atomic_fetch_or_explicit(&t->w[(off + o) / sizeof(uint64_t)], 0,
							 memory_order_relaxed);
			rc = 0;
		}
		hpt_rd_unlock(s);
		if (rc)
			return hm_error_set(err, rc == -EFAULT || rc == -ENOMEM ? -ENOMEM : rc, -1,
					    "hpt: cannot populate the 2^%u-byte table: %s", hpt_shift(h),
					    hm_err_str(rc));
		off += n;
	}
}

void hpt_config_default(hpt_config_t *cfg)
{
	cfg->max_page_shift = 16;
	cfg->ram_bytes = 0;
	cfg->track_ring_entries = (unsigned)HPT_RING_DEFAULT;
}

unsigned hpt_shift_for_ram(uint64_t ram_bytes)
{
	unsigned lg;
	if (ram_bytes <= 1)
		lg = 0;
	else if (ram_bytes > (UINT64_C(1) << 63))
		lg = 64;
	else
		lg = 64u - (unsigned)__builtin_clzll(ram_bytes - 1); /* log2(pow2ceil) */
	int shift = (int)lg - 7;
	if (shift < (int)HPT_SHIFT_MIN)
		shift = HPT_SHIFT_MIN;
	if (shift > (int)HPT_SHIFT_MAX)
		shift = HPT_SHIFT_MAX;
	return (unsigned)shift;
}

static int check_shift(unsigned shift, hm_error_t *err)
{
	if (shift < HPT_SHIFT_MIN || shift > HPT_SHIFT_MAX)
		return hm_error_set(err, HM_E_RANGE, -1,
				    "hpt: htab_shift %u outside the architected range %u..%u",
				    shift, HPT_SHIFT_MIN, HPT_SHIFT_MAX);
	if (shift > HPT_SHIFT_STREAM_MAX)
		return hm_error_set(err, HM_E_RANGE, -1,
				    "hpt: htab_shift %u: a table of 2^%u slots cannot be migrated "
				    "(the stream's be32 slot index reaches shift %u at most)",
				    shift, shift - 4, HPT_SHIFT_STREAM_MAX);
	return 0;
}

int hpt_create(unsigned shift, const hpt_config_t *cfg, hpt_t **out, hm_error_t *err)
{
	hpt_config_t c;
	int rc;
	*out = NULL;
	if (cfg)
		c = *cfg;
	else
		hpt_config_default(&c);
	if ((rc = check_shift(shift, err)) != 0)
		return rc;
	if (c.max_page_shift == 0)
		c.max_page_shift = 16; /* a zero-initialised config means the default */
	if (c.max_page_shift < 12 || c.max_page_shift > 34)
		return hm_error_set(err, HM_E_RANGE, -1,
				    "hpt: config max_page_shift %u outside 12..34", c.max_page_shift);
	if (c.track_ring_entries == 0)
		c.track_ring_entries = HPT_RING_DEFAULT;
	if (c.track_ring_entries < 2 || c.track_ring_entries > HPT_RING_MAX ||
	    (c.track_ring_entries & (c.track_ring_entries - 1)))
		return hm_error_set(err, HM_E_RANGE, -1,
				    "hpt: config track_ring_entries %u is not a power of two in 2..%u",
				    c.track_ring_entries, (unsigned)HPT_RING_MAX);
	hpt_t *h = aligned_alloc(64, sizeof(*h));
	if (!h)
		return hm_error_set(err, -ENOMEM, -1, "hpt: out of memory for the table object");
	memset(h, 0, sizeof(*h));
	struct hpt_table *t = hpt_table_new(shift);
	if (!t) {
		free(h);
		return hm_error_set(err, -ENOMEM, -1, "hpt: cannot map a table of 2^%u bytes", shift);
	}
	h->cfg = c;
	atomic_init(&h->excl, 0);
	atomic_init(&h->tab, t);
	atomic_init(&h->track, NULL);
	atomic_init(&h->cur_shift, shift);
	atomic_init(&h->generation, 0);
	pthread_mutex_init(&h->ctl, NULL);
	h->pending = NULL;
	for (unsigned i = 0; i < HPT_NSHARDS; i++)
		atomic_init(&h->shards[i].readers, 0);
	*out = h;
	return 0;
}

void hpt_destroy(hpt_t *h)
{
	if (!h)
		return;
	hpt_table_free(atomic_load(&h->tab));
	hpt_table_free(h->pending);
	hpt_trk_destroy(atomic_load(&h->track));
	pthread_mutex_destroy(&h->ctl);
	free(h);
}

/* Getters take a const pointer; atomics are read through a non-const alias. */
static hpt_t *unconst(const hpt_t *h)
{
	return (hpt_t *)(uintptr_t)h;
}

unsigned hpt_shift(const hpt_t *h)
{
	return atomic_load(&unconst(h)->cur_shift);
}

uint64_t hpt_slots(const hpt_t *h)
{
	return UINT64_C(1) << (hpt_shift(h) - 4);
}

const hpt_config_t *hpt_config(const hpt_t *h)
{
	return &h->cfg;
}

uint64_t hpt_generation(const hpt_t *h)
{
	return atomic_load(&unconst(h)->generation);
}

/* Sum of the shards' new-bit counters (see struct hpt_shard). */
static uint64_t shard_marked_sum(hpt_t *h)
{
	uint64_t n = 0;
	for (unsigned i = 0; i < HPT_NSHARDS; i++)
		n += atomic_load_explicit(&h->shards[i].marked, memory_order_relaxed);
	return n;
}

/*
 * Swap in table nt; the caller holds ctl and exclusive mode. When tracking,
 * the new bitmap nb (all set) replaces the old one. Returns the old table
 * and bitmap for the caller to free outside exclusive mode.
 */
static void swap_table(hpt_t *h, struct hpt_table *nt, struct hpt_track *nb,
		       struct hpt_table **old_t, struct hpt_track **old_b)
{
	*old_t = atomic_load(&h->tab);
	*old_b = NULL;
	atomic_store(&h->tab, nt);
	atomic_store(&h->cur_shift, nt->shift);
	if (nb) {
		nb->base = shard_marked_sum(h); /* exclusive mode: nobody marks */
		*old_b = atomic_load(&h->track);
		atomic_store(&h->track, nb);
	}
	atomic_fetch_add(&h->generation, 1);
}

/* Fresh bitmap for a table of 'slots' with every bit set, if tracking. */
static int new_full_bitmap(hpt_t *h, uint64_t slots, struct hpt_track **out)
{
	*out = NULL;
	if (!atomic_load(&h->track))
		return 0;
	return hpt_trk_new(slots, true, h->cfg.track_ring_entries, out);
}

int hpt_reset(hpt_t *h, unsigned shift, hm_error_t *err)
{
	int rc;
	if ((rc = check_shift(shift, err)) != 0)
		return rc;
	pthread_mutex_lock(&h->ctl);
	struct hpt_table *nt = hpt_table_new(shift), *ot;
	struct hpt_track *nb = NULL, *ob;
	if (!nt || new_full_bitmap(h, nt->slots, &nb)) {
		pthread_mutex_unlock(&h->ctl);
		hpt_table_free(nt);
		return hm_error_set(err, -ENOMEM, -1, "hpt: cannot map a table of 2^%u bytes", shift);
	}
	hpt_table_free(h->pending);
	h->pending = NULL;
	hpt_wr_lock(h);
	swap_table(h, nt, nb, &ot, &ob);
	hpt_wr_unlock(h);
	pthread_mutex_unlock(&h->ctl);
	hpt_table_free(ot);
	hpt_trk_destroy(ob);
	return 0;
}

/* ----------------------------------------------------------------- resize */

long hpt_resize_prepare_locked(hpt_t *h, unsigned shift)
{
	if (h->pending && h->pending->shift == shift)
		return H_SUCCESS; /* already prepared: idempotent, as QEMU */
	hpt_table_free(h->pending);
	h->pending = NULL;
	if (shift == 0)
		return H_SUCCESS;
	h->pending = hpt_table_new(shift);
	return h->pending ? H_SUCCESS : H_NO_MEM;
}

/*
 * Rehash one valid bolted entry of the old table into the new one: same slot
 * number within its PTEG, PTEG recomputed from the AVPN plus the low hash
 * bits the old PTEG index supplies (QEMU's rehash_hpte). Exclusive mode: no
 * entry is locked and nothing else runs, so plain (relaxed) access is fine.
 */
static long rehash_entry(struct hpt_table *ot, struct hpt_table *nt, uint64_t slot, uint64_t v,
			 uint64_t r)
{
	unsigned base, actual;
	if (hpt_page_decode(v, r, &base, &actual))
		return H_HARDWARE; /* H_ENTER never stores a bad encoding */
	uint64_t old_mask = (ot->slots >> 3) - 1, new_mask = (nt->slots >> 3) - 1;
	uint64_t pteg = slot >> 3, vsid, offset;
	unsigned ssize;
	if (!hpt_avpn_split(v, base, &ssize, &vsid, &offset))
		return H_HARDWARE;
	if (v & HPTE64_V_SECONDARY)
		pteg = ~pteg;
	/* As QEMU's rehash_hpte: no segment mask on the recovered offset. */
	uint64_t seg_hash = ssize == HPT_SEG_1T ? vsid ^ (vsid << 25) : vsid;
	if (base < 23)
		offset |= ((seg_hash ^ pteg) & old_mask) << base;
	uint64_t hash = seg_hash ^ (offset >> base);
	uint64_t npteg = (v & HPTE64_V_SECONDARY) ? (~hash & new_mask) : (hash & new_mask);
	uint64_t ns = (npteg << 3) | (slot & 7);
	uint64_t cur = HPT_BE(atomic_load_explicit(hpt_vp(nt, ns), memory_order_relaxed));
	if (cur & HPTE64_V_VALID)
		return H_PTEG_FULL; /* only bolted entries are rehashed: a bolted collision */
	hpt_r_store(hpt_rp(nt, ns), r);
	atomic_store_explicit(hpt_vp(nt, ns), HPT_BE(v), memory_order_relaxed);
	return H_SUCCESS;
}

long hpt_resize_commit_locked(hpt_t *h, unsigned shift)
{
	struct hpt_table *nt = h->pending, *ot;
	struct hpt_track *nb = NULL, *ob = NULL;
	long rc = H_SUCCESS;
	if (!nt || nt->shift != shift)
		return H_CLOSED;
	h->pending = NULL; /* consumed whatever the outcome, as QEMU */
	if (new_full_bitmap(h, nt->slots, &nb)) {
		hpt_table_free(nt);
		return H_NO_MEM;
	}
	hpt_wr_lock(h);
	ot = atomic_load(&h->tab);
	for (uint64_t s = 0; s < ot->slots && rc == H_SUCCESS; s++) {
		uint64_t raw = atomic_load_explicit(hpt_vp(ot, s), memory_order_relaxed);
		if (!(raw & HPT_VALID_BE))
			continue;
		uint64_t v = HPT_BE(raw);
		if (!(v & HPTE64_V_BOLTED))
			continue;
		rc = rehash_entry(ot, nt, s, v, hpt_r_load(hpt_rp(ot, s)));
	}
	if (rc == H_SUCCESS)
		swap_table(h, nt, nb, &ot, &ob);
	hpt_wr_unlock(h);
	if (rc == H_SUCCESS) {
		hpt_table_free(ot);
		hpt_trk_destroy(ob);
	} else {
		hpt_table_free(nt);
		hpt_trk_destroy(nb);
	}
	return rc;
}

/* --------------------------------------------------------------- tracking */

int hpt_track_start(hpt_t *h, hm_error_t *err)
{
	struct hpt_track *b;
	int rc;
	pthread_mutex_lock(&h->ctl);
	if (atomic_load(&h->track)) {
		pthread_mutex_unlock(&h->ctl);
		return hm_error_set(err, HM_E_STATE, -1, "hpt: change tracking is already on");
	}
	/* ctl is held: no resize can change the slot count meanwhile. */
	rc = hpt_trk_new(hpt_slots(h), false, h->cfg.track_ring_entries, &b);
	if (rc) {
		pthread_mutex_unlock(&h->ctl);
		return hm_error_set(err, rc, -1, "hpt: no memory for the tracking bitmap");
	}
	/* Tracking is off: no thread marks, the shard counters are still. */
	b->base = shard_marked_sum(h);
	/* seq_cst store: the Dekker half that pairs with writers' track load. */
	atomic_store(&h->track, b);
	pthread_mutex_unlock(&h->ctl);
	return 0;
}

void hpt_track_stop(hpt_t *h)
{
	pthread_mutex_lock(&h->ctl);
	struct hpt_track *b = atomic_load(&h->track);
	if (b) {
		/* Exclusive mode waits out every hcall that may hold b. */
		hpt_wr_lock(h);
		atomic_store(&h->track, NULL);
		hpt_wr_unlock(h);
		hpt_trk_destroy(b);
	}
	pthread_mutex_unlock(&h->ctl);
}

bool hpt_tracking(const hpt_t *h)
{
	return atomic_load(&unconst(h)->track) != NULL;
}

uint64_t hpt_track_pending(hpt_t *h)
{
	struct hpt_shard *s = hpt_rd_lock(h);
	struct hpt_track *b = atomic_load(&h->track);
	uint64_t n = 0;
	if (b) {
		/* Exact when nothing runs; otherwise off by the marks in flight.
		 * Rings first: their slots count once they are bits. */
		hpt_trk_sync(b);
		int64_t c = (int64_t)(shard_marked_sum(h) - b->base + b->preset +
				      atomic_load_explicit(&b->harvested, memory_order_relaxed) -
				      atomic_load_explicit(&b->taken, memory_order_relaxed));
		n = c < 0 ? 0 : (uint64_t)c > b->nbits ? b->nbits : (uint64_t)c;
	}
	hpt_rd_unlock(s);
	return n;
}

uint64_t hpt_track_overflows(hpt_t *h)
{
	uint64_t n = 0;
	for (unsigned i = 0; i < HPT_NSHARDS; i++)
		n += atomic_load_explicit(&h->shards[i].overflow, memory_order_relaxed);
	return n;
}

void hpt_track_mark_all(hpt_t *h)
{
	struct hpt_shard *s = hpt_rd_lock(h);
	struct hpt_track *b = atomic_load(&h->track);
	if (b)
		atomic_fetch_add_explicit(&s->marked, hpt_trk_set_range(b, 0, b->nbits),
					  memory_order_relaxed);
	hpt_rd_unlock(s);
}

bool hpt_track_take(hpt_t *h, uint64_t *cursor, uint64_t *first_slot, uint64_t *bits)
{
	struct hpt_shard *s = hpt_rd_lock(h);
	struct hpt_track *b = atomic_load(&h->track);
	uint64_t wi = 0;
	bool ok = b && hpt_trk_take(b, cursor, &wi, bits);
	hpt_rd_unlock(s);
	if (ok)
		*first_slot = wi << 6;
	return ok;
}

size_t hpt_track_take_batch(hpt_t *h, uint64_t *cursor, uint64_t *first_slot, uint64_t *bits,
			    size_t max)
{
	struct hpt_shard *s = hpt_rd_lock(h);
	struct hpt_track *b = atomic_load(&h->track);
	size_t got = 0;
	if (b) {
		struct hpt_table *t = hpt_tab(h);
		uint64_t wi;
		while (got < max && hpt_trk_take(b, cursor, &wi, &bits[got])) {
			first_slot[got] = wi << 6;
			/* Hint the entries into the cache while the reader lock
			 * keeps this table alive: the caller reads them next, and
			 * their misses overlap. Only here, where they are read:
			 * a prefetch pulls lines a vCPU just wrote. */
			for (uint64_t m = bits[got]; m; m &= m - 1) {
				uint64_t slot = (wi << 6) + (uint64_t)__builtin_ctzll(m);
				if (slot < t->slots)
					__builtin_prefetch((const void *)(uintptr_t)hpt_vp(t, slot), 0, 0);
			}
			got++;
		}
	}
	hpt_rd_unlock(s);
	return got;
}

/* ------------------------------------------------------------- raw access */

bool hpt_read_entry(hpt_t *h, uint64_t slot, uint64_t *v, uint64_t *r)
{
	struct hpt_shard *s = hpt_rd_lock(h);
	struct hpt_table *t = hpt_tab(h);
	bool ok = slot < t->slots;
	uint64_t vv = 0, rr = 0;
	if (ok) {
		vv = hpt_entry_lock(hpt_vp(t, slot));
		rr = hpt_r_load(hpt_rp(t, slot));
		hpt_entry_unlock(hpt_vp(t, slot), vv);
	}
	hpt_rd_unlock(s);
	*v = vv;
	*r = rr;
	return ok;
}

/*
 * The first-pass fast path: invalid, unlocked entries cost one seq_cst load
 * (a plain load on x86) and give 16 zero bytes; valid ones are copied under
 * their lock, so a concurrent hcall can never produce a torn entry.
 */
static uint64_t read_run(struct hpt_table *t, uint64_t first, uint64_t n, uint8_t *buf)
{
	uint64_t nvalid = 0;
	for (uint64_t i = 0; i < n; i++, buf += HPTE64_SIZE) {
		_Atomic uint64_t *vp = hpt_vp(t, first + i);
		uint64_t raw = atomic_load(vp), out_v = 0, out_r = 0;
		if (raw & (HPT_VALID_BE | HPT_LOCK_BE)) {
			uint64_t v = hpt_entry_lock(vp);
			uint64_t r_raw = atomic_load_explicit(hpt_rp(t, first + i), memory_order_relaxed);
			hpt_entry_unlock(vp, v);
			if (v & HPTE64_V_VALID) {
				/* The table is big-endian like the wire: copy the
				 * stored words (0x40 is clear in v). */
				out_v = HPT_BE(v);
				out_r = r_raw;
				nvalid++;
			}
		}
		memcpy(buf, &out_v, 8);
		memcpy(buf + 8, &out_r, 8);
	}
	return nvalid;
}

/* Read one entry under its lock into the wire layout; true if valid. */
static bool read_locked(struct hpt_table *t, uint64_t slot, uint8_t *out)
{
	_Atomic uint64_t *vp = hpt_vp(t, slot);
	uint64_t v = hpt_entry_lock(vp);
	uint64_t r_raw = atomic_load_explicit(hpt_rp(t, slot), memory_order_relaxed);
	hpt_entry_unlock(vp, v);
	uint64_t mask = -(uint64_t)((v & HPTE64_V_VALID) != 0);
	uint64_t out_v = HPT_BE(v) & mask, out_r = r_raw & mask;
	memcpy(out, &out_v, 8);
	memcpy(out + 8, &out_r, 8);
	return out_v != 0;
}

/*
 * read_run without the lock of a quiet valid entry: V1, R, acquire fence,
 * V2, then (one ring sync per tracking word) the slot's tracking bit; a
 * changed, locked or marked entry is read again under its lock. Why that
 * is a real state of the entry: docs/hpt.md, "The first pass without
 * locks". Requires tracking on for the whole call (held by the reader
 * lock) and no hpt_track_take on another thread.
 */
static uint64_t read_run_tracked(struct hpt_track *trk, struct hpt_table *t, uint64_t first,
				 uint64_t n, uint8_t *buf)
{
	uint64_t nvalid = 0;
	/* One tracking word's slots (up to 64) at a time. */
	for (uint64_t s0 = first, end = first + n; s0 < end;) {
		uint64_t m = 64 - (s0 & 63);
		if (m > end - s0)
			m = end - s0;
		uint8_t *out = buf + (s0 - first) * HPTE64_SIZE;
		/* 1. V1, R, fence, V2 per slot; branch-free for the common cases
		 * (valid and quiet, or invalid): on a table that is 1/3 full at
		 * random, a branch per entry mispredicts a third of the time. */
		uint64_t quiet = 0; /* valid slots read without the lock */
		for (uint64_t k = 0; k < m; k++) {
			uint64_t slot = s0 + k;
			_Atomic uint64_t *vp = hpt_vp(t, slot);
			uint64_t v1 = atomic_load(vp);
			uint64_t r_raw = atomic_load_explicit(hpt_rp(t, slot), memory_order_relaxed);
			atomic_thread_fence(memory_order_acquire);
			uint64_t v2 = atomic_load_explicit(vp, memory_order_acquire);
			uint64_t ok = (v2 == v1) & ((v1 & HPT_LOCK_BE) == 0);
			uint64_t live = (v1 & (HPT_VALID_BE | HPT_LOCK_BE)) != 0;
			if (__builtin_expect(live & !ok, 0)) {
				nvalid += read_locked(t, slot, out + k * HPTE64_SIZE);
				continue;
			}
			uint64_t valid = (v1 & HPT_VALID_BE) != 0;
			uint64_t mask = -valid;
			uint64_t out_v = v1 & mask, out_r = r_raw & mask;
			quiet |= valid << (slot & 63);
			nvalid += valid;
			memcpy(out + k * HPTE64_SIZE, &out_v, 8);
			memcpy(out + k * HPTE64_SIZE + 8, &out_r, 8);
		}
		/* 2. After every V2 of the word: one ring sync, then its
		 * (summary-guarded) bits; a quiet slot marked meanwhile is read
		 * again under its lock. */
		if (quiet) {
			for (quiet &= hpt_trk_word(trk, s0 >> 6); quiet; quiet &= quiet - 1) {
				uint64_t slot = (s0 & ~UINT64_C(63)) + (uint64_t)__builtin_ctzll(quiet);
				nvalid -= !read_locked(t, slot, out + (slot - s0) * HPTE64_SIZE);
			}
		}
		s0 += m;
	}
	return nvalid;
}

uint64_t hpt_read_entries(hpt_t *h, uint64_t first, uint64_t n, uint8_t *buf)
{
	struct hpt_shard *s = hpt_rd_lock(h);
	struct hpt_table *t = hpt_tab(h);
	struct hpt_track *trk = atomic_load(&h->track);
	uint64_t nvalid = 0;
	if (first < t->slots) {
		if (n > t->slots - first)
			n = t->slots - first;
		nvalid = trk ? read_run_tracked(trk, t, first, n, buf) : read_run(t, first, n, buf);
	}
	hpt_rd_unlock(s);
	return nvalid;
}

/*
 * hpt_read_chunks, one group at a time: a group is the slots of one
 * tracking word (64 slots, aligned), or fewer at either end of the range.
 * Fast group (tracking on): runs_group_fast; locked group (no tracking, or
 * a fast group given up): runs_group_locked. Why a kept fast group holds
 * real states, and why the tracking bit is read only under a set summary
 * bit: docs/hpt.md, "The first pass without locks".
 *
 * Headers: be32 first slot, be16 length, be16 0, written once a run's
 * start is known; a run reaching a group's end is lengthened when the next
 * group's leading valid slots are known (its length field rewritten).
 */
/* Groups (1 KiB of table each) read_runs prefetches ahead of itself. */
#define RUNS_PREFETCH_GROUPS 4
/* The host-order low byte of V (valid 0x01, lock 0x40) of a stored word. */
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define HPT_V_LOWBYTE(raw) ((raw) >> 56)
#else
#define HPT_V_LOWBYTE(raw) ((raw) & 0xff)
#endif

static inline void put_chunk_hdr(uint8_t *p, uint64_t slot, uint64_t n)
{
	htab_chunk_hdr_put(p, (struct htab_chunk_hdr){ .index = (uint32_t)slot,
						       .n_valid = (uint16_t)n });
}

/* What read_runs has written so far: the output position and the run
 * being built (its header, first slot and length), counts. */
struct runs_out {
	uint8_t *p;     /* next byte of out */
	uint8_t *lh;    /* header of the last run started, NULL: none yet */
	uint64_t ls, ln; /* that run's first slot and length */
	uint64_t nruns;  /* headers written */
	uint64_t joined; /* leading entries that continue the caller's run */
};

/*
 * The fast group: the m slots at w (slot s0 first) read without entry
 * locks while tracking is on (docs/hpt.md, "The first pass without
 * locks"). Copies the valid entries to o->p behind room for their runs'
 * headers and sets *vm (bit k: slot s0 + k valid). Returns false when the
 * group must be read again locked (a lock seen, a V word that changed
 * between its two loads, a tracking bit set on a valid slot); o is then
 * unchanged (what was copied past o->p is overwritten). The steps and why
 * they suffice: docs/hpt.md, "The first pass without locks". Inline: this
 * is the first pass's hot loop.
 */
static inline bool runs_group_fast(struct hpt_track *trk, _Atomic uint64_t *w, uint64_t s0,
				   unsigned m, uint64_t carry, struct runs_out *o, uint64_t *vm)
{
	const size_t gap = HPT_CHUNK_HDR_SIZE;
	uint8_t *at[64];
	uint8_t *p = o->p;
	/* Hint: the table's 16 lines of a group RUNS_PREFETCH_GROUPS ahead
	 * (the hardware prefetcher alone leaves the scan waiting on memory).
	 * Correctness never depends on it. */
#pragma GCC unroll 16
	for (unsigned l = 0; l < 16; l++)
		__builtin_prefetch((const void *)(uintptr_t)(w + 2 * 64 * RUNS_PREFETCH_GROUPS + 8 * l), 0, 3);
	/* 1. V1: low bytes of eight V words packed into one word, their valid
	 * bits gathered with one multiply. */
	uint64_t flags = 0; /* OR of the low bytes: any lock? */
	uint64_t v1 = 0;
	if (m == 64) {
		for (unsigned q = 0; q < 64; q += 8) {
			uint64_t lo = 0;
#pragma GCC unroll 8
			for (unsigned j = 0; j < 8; j++)
				lo |= HPT_V_LOWBYTE(atomic_load(&w[2 * (q + j)])) << (8 * j);
			flags |= lo;
			v1 |= (((lo & UINT64_C(0x0101010101010101)) * UINT64_C(0x0102040810204080)) >> 56)
			      << q;
		}
	} else {
		for (unsigned k = 0; k < m; k++) {
			uint64_t lo = HPT_V_LOWBYTE(atomic_load(&w[2 * k]));
			flags |= lo;
			v1 |= (lo & HPTE64_V_VALID) << k;
		}
	}
	/* 2. Vb, R to out, fence, V2. Run starts: valid slots whose
	 * predecessor is not; a header's room is left before them. */
	uint64_t starts = v1 & ~((v1 << 1) | carry);
	uint64_t v_and = ~UINT64_C(0), v_or = 0, diff = 0;
	for (uint64_t b = v1; b; b &= b - 1) {
		unsigned k = (unsigned)__builtin_ctzll(b);
		at[k] = p; /* where a run starting at k has its header */
		p += gap & (0 - (size_t)((starts >> k) & 1));
		uint64_t raw = atomic_load(&w[2 * k]);
		uint64_t rr = atomic_load_explicit(&w[2 * k + 1], memory_order_relaxed);
		atomic_thread_fence(memory_order_acquire);
		diff |= atomic_load_explicit(&w[2 * k], memory_order_acquire) ^ raw;
		v_and &= raw;
		v_or |= raw;
		memcpy(p, &raw, 8);
		memcpy(p + 8, &rr, 8);
		p += HPTE64_SIZE;
	}
	/* 3. The tracking bits, after every V2: the summary word first, the
	 * data word only where the summary says it holds a bit (a first pass
	 * then never touches the bitmap's untouched, unmapped pages). */
	uint64_t bits = hpt_trk_word(trk, s0 >> 6) >> (s0 & 63);
	/* 4. Keep the group, or read it again locked. */
	if ((flags & UINT64_C(0x4040404040404040)) != 0 || (v_and & HPT_VALID_BE) == 0 ||
	    (v_or & HPT_LOCK_BE) != 0 || diff != 0 || (bits & v1) != 0)
		return false;
	if (carry) {
		/* The run through the previous group's end goes on through this
		 * group's leading valid slots. */
		uint64_t lead = v1 == ~UINT64_C(0) ? 64 : (uint64_t)__builtin_ctzll(~v1);
		if (o->lh) {
			o->ln += lead;
			hm_store_be16(o->lh + 4, (uint16_t)o->ln);
		} else {
			o->joined += lead;
		}
	}
	for (uint64_t b = starts; b; b &= b - 1) {
		unsigned k = (unsigned)__builtin_ctzll(b);
		uint64_t rest = ~(v1 >> k); /* 0 only if k == 0 and all valid */
		o->lh = at[k];
		o->ls = s0 + k;
		o->ln = rest ? (uint64_t)__builtin_ctzll(rest) : 64;
		put_chunk_hdr(o->lh, o->ls, o->ln);
		o->nruns++;
	}
	o->p = p;
	*vm = v1;
	return true;
}

/*
 * The locked group: the m slots at w (slot s0 first), each valid or locked
 * one read under its entry lock, appended to o as runs. Returns the valid
 * mask. Without tracking every group goes here; with it, only those the
 * fast path gave up.
 */
static inline uint64_t runs_group_locked(_Atomic uint64_t *w, uint64_t s0, unsigned m,
					 uint64_t carry, struct runs_out *o)
{
	uint64_t v[64], r[64];
	uint64_t vm = 0;
	for (unsigned k = 0; k < m; k++) {
		_Atomic uint64_t *vp = &w[2 * k];
		if (!(atomic_load(vp) & (HPT_VALID_BE | HPT_LOCK_BE)))
			continue;
		uint64_t hv = hpt_entry_lock(vp);
		uint64_t rr = atomic_load_explicit(&w[2 * k + 1], memory_order_relaxed);
		hpt_entry_unlock(vp, hv);
		if (hv & HPTE64_V_VALID) {
			v[k] = HPT_BE(hv); /* 0x40 clear: hpt_entry_lock's contract */
			r[k] = rr;
			vm |= UINT64_C(1) << k;
		}
	}
	uint64_t starts = vm & ~((vm << 1) | carry);
	for (uint64_t b = vm; b; b &= b - 1) {
		unsigned k = (unsigned)__builtin_ctzll(b);
		if ((starts >> k) & 1) {
			o->lh = o->p;
			o->ls = s0 + k;
			o->ln = 1;
			put_chunk_hdr(o->lh, o->ls, o->ln);
			o->nruns++;
			o->p += HPT_CHUNK_HDR_SIZE;
		} else if (o->lh) {
			hm_store_be16(o->lh + 4, (uint16_t)++o->ln);
		} else {
			o->joined++; /* continues the caller's run */
		}
		memcpy(o->p, &v[k], 8);
		memcpy(o->p + 8, &r[k], 8);
		o->p += HPTE64_SIZE;
	}
	return vm;
}

/*
 * The valid entries of slots [first, first + n) as runs, each behind a
 * chunk header (hpt_read_chunks' contract), 64-slot group by group: the
 * fast group when tracking is on, the locked group otherwise or when the
 * fast one gives up.
 */
static uint64_t read_runs(struct hpt_track *trk, struct hpt_table *t, uint64_t first, uint64_t n,
			  uint8_t *out, bool join, hpt_chunks_t *info)
{
	struct runs_out o = {.p = out};
	uint64_t carry = join ? 1 : 0; /* 1: the slot before this group is valid */
	for (uint64_t s0 = first, end = first + n; s0 < end;) {
		unsigned m = 64u - (unsigned)(s0 & 63);
		if (m > end - s0)
			m = (unsigned)(end - s0);
		/* The group's words: V of slot s0 + k at w[2k], R at w[2k + 1]. */
		_Atomic uint64_t *w = t->w + 2 * s0;
		uint64_t vm = 0;
		if (!trk || !runs_group_fast(trk, w, s0, m, carry, &o, &vm))
			vm = runs_group_locked(w, s0, m, carry, &o);
		carry = (vm >> (m - 1)) & 1;
		s0 += m;
	}
	info->len = (size_t)(o.p - out);
	info->nruns = o.nruns;
	info->joined = o.joined;
	info->last_slot = o.ls;
	info->last_n = o.ln;
	info->last_pos = o.lh ? (size_t)(o.lh - out) : 0;
	/* Every entry is 16 bytes, every run but a joined one has a header
	 * (counting this way avoids a popcount per group: no popcnt in the
	 * baseline x86-64 instruction set). */
	info->nvalid = (info->len - o.nruns * HPT_CHUNK_HDR_SIZE) / HPTE64_SIZE;
	return info->nvalid;
}

uint64_t hpt_read_chunks(hpt_t *h, uint64_t first, uint64_t n, uint8_t *out, bool join,
			 hpt_chunks_t *info)
{
	struct hpt_shard *s = hpt_rd_lock(h);
	struct hpt_table *t = hpt_tab(h);
	struct hpt_track *trk = atomic_load(&h->track);
	memset(info, 0, sizeof(*info));
	if (n > UINT16_MAX)
		n = UINT16_MAX; /* a run's length is a be16 */
	if (first < t->slots) {
		if (n > t->slots - first)
			n = t->slots - first;
		read_runs(trk, t, first, n, out, join, info);
	}
	hpt_rd_unlock(s);
	return info->nvalid;
}

static uint64_t find_entry(hpt_t *h, uint64_t from, uint64_t limit, bool want_valid)
{
	struct hpt_shard *s = hpt_rd_lock(h);
	struct hpt_table *t = hpt_tab(h);
	if (limit > t->slots)
		limit = t->slots;
	uint64_t i = from;
	for (; i < limit; i++) {
		uint64_t raw = atomic_load_explicit(hpt_vp(t, i), memory_order_acquire);
		if (((raw & HPT_VALID_BE) != 0) == want_valid)
			break;
	}
	hpt_rd_unlock(s);
	return i < limit ? i : limit;
}

uint64_t hpt_find_valid(hpt_t *h, uint64_t from, uint64_t limit)
{
	return find_entry(h, from, limit, true);
}

uint64_t hpt_find_invalid(hpt_t *h, uint64_t from, uint64_t limit)
{
	return find_entry(h, from, limit, false);
}

/* Store (v, r) at slot under its lock; mark when it changed. */
static void write_one(hpt_t *h, struct hpt_shard *s, struct hpt_table *t, uint64_t slot,
		      uint64_t v, uint64_t r)
{
	_Atomic uint64_t *vp = hpt_vp(t, slot), *rp = hpt_rp(t, slot);
	v &= ~HPTE64_V_HVLOCK;
	uint64_t ov = hpt_entry_lock(vp);
	uint64_t or_ = hpt_r_load(rp);
	if (ov == v && or_ == r) {
		hpt_entry_unlock(vp, ov);
		return;
	}
	if (!(v & HPTE64_V_VALID)) {
		/* Removal order: V (still locked, no longer valid), then R. */
		atomic_store_explicit(vp, HPT_LOCK_BE, memory_order_relaxed);
	}
	hpt_r_store(rp, r);
	hpt_track_mark(h, s, slot);
	hpt_entry_unlock(vp, v);
}

bool hpt_write_entry(hpt_t *h, uint64_t slot, uint64_t v, uint64_t r)
{
	struct hpt_shard *s = hpt_rd_lock(h);
	struct hpt_table *t = hpt_tab(h);
	bool ok = slot < t->slots;
	if (ok)
		write_one(h, s, t, slot, v, r);
	hpt_rd_unlock(s);
	return ok;
}

/* How many of the n slots from first lie inside t (0 when first is past
 * its end): the bulk writers clip to the table rather than fail. */
static inline uint64_t clip_to_table(const struct hpt_table *t, uint64_t first, uint64_t n)
{
	if (first >= t->slots)
		return 0;
	return n > t->slots - first ? t->slots - first : n;
}

uint64_t hpt_write_entries(hpt_t *h, uint64_t first, uint64_t n, const uint8_t *buf)
{
	struct hpt_shard *s = hpt_rd_lock(h);
	struct hpt_table *t = hpt_tab(h);
	n = clip_to_table(t, first, n);
	for (uint64_t i = 0; i < n; i++, buf += HPTE64_SIZE) {
		uint64_t v = hm_load_be64(buf), r = hm_load_be64(buf + 8);
		/* Zero over zero (invalid runs, fresh tables) costs two loads. */
		if ((v | r) == 0 && atomic_load(hpt_vp(t, first + i)) == 0 &&
		    atomic_load_explicit(hpt_rp(t, first + i), memory_order_relaxed) == 0)
			continue;
		write_one(h, s, t, first + i, v, r);
	}
	hpt_rd_unlock(s);
	return n;
}

/* Store n entries of the wire layout at first..: no locks, no marks (the
 * caller is the only user of table t). Returns the AND of their V words. */
static inline uint64_t store_exclusive(struct hpt_table *t, uint64_t first, uint64_t n,
				      const uint8_t *buf)
{
	_Atomic uint64_t *w = t->w + 2 * first;
	uint64_t all = ~UINT64_C(0);
	/* The table and the wire are both big-endian: store the raw words. */
	for (uint64_t i = 0; i < n; i++, buf += HPTE64_SIZE) {
		uint64_t v, r;
		memcpy(&v, buf, 8);
		memcpy(&r, buf + 8, 8);
		all &= v;
		atomic_store_explicit(&w[2 * i], v & ~HPT_LOCK_BE, memory_order_relaxed);
		atomic_store_explicit(&w[2 * i + 1], r, memory_order_relaxed);
	}
	return all; /* AND of the stored V words: the caller's cheap check */
}

/* AND of n wire entries' V words as stored (big-endian). */
static uint64_t and_v(const uint8_t *buf, uint64_t n)
{
	uint64_t all = ~UINT64_C(0);
	for (uint64_t i = 0; i < n; i++) {
		uint64_t v;
		memcpy(&v, buf + i * HPTE64_SIZE, 8);
		all &= v;
	}
	return all;
}

uint64_t hpt_write_entries_exclusive(hpt_t *h, uint64_t first, uint64_t n, const uint8_t *buf)
{
	if (atomic_load(&h->track))
		return hpt_write_entries(h, first, n, buf);
	struct hpt_table *t = hpt_tab(h);
	n = clip_to_table(t, first, n);
	store_exclusive(t, first, n, buf);
	return n;
}

bool hpt_write_chunks_exclusive(hpt_t *h, const uint8_t *chunks, size_t len)
{
	bool locked = atomic_load(&h->track) != NULL;
	struct hpt_table *t = hpt_tab(h);
	uint64_t all = ~UINT64_C(0);
	for (size_t off = 0; off + HPT_CHUNK_HDR_SIZE <= len;) {
		const uint8_t *c = chunks + off;
		struct htab_chunk_hdr ch = htab_chunk_hdr_get(c);
		uint64_t first = ch.index, n = ch.n_valid, m = 0;
		const uint8_t *src = c + HPT_CHUNK_HDR_SIZE;
		off += HPT_CHUNK_HDR_SIZE + n * HPTE64_SIZE;
		if (off > len)
			return false; /* a cut chunk: the caller's check failed */
		if (locked) {
			hpt_write_entries(h, first, n, src);
		} else if (first < t->slots) {
			/* Store and check in one loop over the run (a separate
			 * check loop costs a mispredicted exit per short run). */
			m = n < t->slots - first ? n : t->slots - first;
			all &= store_exclusive(t, first, m, src);
		}
		all &= and_v(src + m * HPTE64_SIZE, n - m); /* not stored: checked all the same */
	}
	return (all & HPT_VALID_BE) != 0;
}

uint64_t hpt_clear_entries(hpt_t *h, uint64_t first, uint64_t n)
{
	struct hpt_shard *s = hpt_rd_lock(h);
	struct hpt_table *t = hpt_tab(h);
	n = clip_to_table(t, first, n);
	for (uint64_t i = 0; i < n; i++) {
		/* Already-zero entries (the common case) cost one load. */
		if (atomic_load(hpt_vp(t, first + i)) == 0 &&
		    atomic_load_explicit(hpt_rp(t, first + i), memory_order_relaxed) == 0)
			continue;
		write_one(h, s, t, first + i, 0, 0);
	}
	hpt_rd_unlock(s);
	return n;
}

