/* SPDX-License-Identifier: MIT */
/*
 * Private to src/hpt/: the table object, the per-entry lock, the sharded
 * reader lock that makes resize safe, and the tracking mark. Shared by
 * hpt.c (table, tracking, raw access, digest) and hcall.c (hypercalls).
 * Nothing outside src/hpt/ may include it or rely on the layout.
 */
#ifndef HPTMIG_HPT_INTERNAL_H
#define HPTMIG_HPT_INTERNAL_H

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#include "hptmig/hpt.h"

/* Entries are stored big-endian; words are handled in their stored form. */
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define HPT_BE(x) __builtin_bswap64(x)
#else
#define HPT_BE(x) (x)
#endif
#define HPT_LOCK_BE HPT_BE(HPTE64_V_HVLOCK)
#define HPT_VALID_BE HPT_BE(HPTE64_V_VALID)

_Static_assert(HPTE64_SIZE == 2 * sizeof(uint64_t), "an HPTE is two dwords");
_Static_assert(HPTEG_SIZE == HPTES_PER_GROUP * HPTE64_SIZE, "a PTEG is 8 HPTEs");

/*
 * One table's memory: 2 atomic words per slot (V at 2*slot, R at 2*slot+1),
 * each holding the big-endian bytes of the architected dword. Immutable
 * after creation except for the entries; freed only in exclusive mode.
 */
struct hpt_table {
	unsigned shift;
	uint64_t slots;
	size_t bytes;
	_Atomic uint64_t *w;
};

#define HPT_NSHARDS 64
/*
 * One shard of the reader lock on its own cache line, used by the threads
 * hashed to it (normally one). readers: threads inside the read side.
 * marked: new tracking bits this shard's threads set (ever; only grows):
 * the pending count is the sum over shards minus what the taker took, so a
 * mark costs an add on a line the hcall already owns, never a shared one.
 */
struct hpt_shard {
	_Alignas(64) _Atomic uint64_t readers;
	_Atomic uint64_t marked;
	_Atomic uint64_t overflow; /* marks that bypassed the ring (ever; approximate) */
	char pad[64 - 3 * sizeof(uint64_t)];
};

/*
 * A vCPU's log of changed slots (track.c; the design and the no-loss
 * argument are in docs/hpt.md, "Change tracking"). One per reader-lock
 * shard. Single producer: a thread appends only while it is alone in its
 * shard's read side (readers == 1; normally a shard has one thread, and a
 * thread that finds company marks the bitmap instead), so producers of
 * one ring never overlap and each one's appends happen before the next
 * one's (the shard's counter is a release/acquire RMW chain). Consumed by
 * whoever holds the tracker's harvest lock, which moves the slots into
 * the bitmap.
 *  head: entries appended, ever; stored by the producer with release
 *    after the entry, loaded by harvesters with acquire.
 *  tail_seen, used: the producer's (tail_seen: a tail it loaded, <= tail;
 *    used: the ring's bit in the tracker's claimed mask is set).
 *  tail: entries consumed, ever; stored with release under the harvest
 *    lock after the entries were read, loaded by the producer with acquire
 *    when the ring looks full (the entries below it may be overwritten).
 *  e: ring_size slot numbers (struct hpt_track; a table has at most 2^32
 *    slots).
 */
#define HPT_RING_DEFAULT (UINT64_C(1) << 16)
#define HPT_RING_MAX (UINT64_C(1) << 24)
struct hpt_ring {
	_Alignas(64) _Atomic uint64_t head;
	uint64_t used;
	uint64_t tail_seen;
	uint32_t *e;
	/* ring_size - 1, immutable: a copy on the owner's line, because the
	 * tracker's own lines are written by the migration thread. */
	uint64_t mask;
	_Alignas(64) _Atomic uint64_t tail;
};

/*
 * The tracking bitmap and the rings (track.c). words/summary: see the
 * invariant there. base: sum of the shards' marked counters when this
 * bitmap was installed (computed while no thread can mark: tracking off, or
 * exclusive mode). preset: bits set at creation. taken: bits the taker took
 * (one taker). harvested: new bits the harvest set (harvest lock).
 * claimed: a bit per ring that was ever appended to (set before that).
 */
struct hpt_track {
	uint64_t nbits, nwords, nsummary;
	_Atomic uint64_t *words;
	_Atomic uint64_t *summary;
	uint64_t base, preset;
	_Atomic uint64_t taken;
	/* Taker only (one taker at a time): next summary word whose data
	 * words get prefetched, so a sparse pass overlaps its cache misses. */
	uint64_t pf_next;
	uint64_t ring_size; /* entries per ring, a power of two; immutable */
	_Atomic uint64_t claimed;
	_Atomic uint64_t harvested;
	pthread_mutex_t harvest_lock;
	uint32_t *ring_mem;
	/* The block digests kept current for the verification root
	 * (blocks.c), NULL until first asked for. Taker only: created,
	 * marked (at every take), hashed and freed by the one taker, or
	 * freed with the tracker in exclusive mode. */
	struct hpt_bcache *bc;
	struct hpt_ring rings[HPT_NSHARDS];
};

/*
 * Per-block digests of wire-format.md §5 v2 with a "changed since hashed"
 * bit per block (blocks.c). One thread at a time (the tracker's taker, or
 * a loader's owner). Block b is summary word b of a tracker over the same
 * table: 4096 slots = 64 tracking words.
 */
struct hpt_bcache;
void hpt_bc_free(struct hpt_bcache *bc);
void hpt_bc_mark_block(struct hpt_bcache *bc, uint64_t b);
/* Block b changed in its 64-slot group g (tracking word 64 b + g). */
void hpt_bc_mark_group(struct hpt_bcache *bc, uint64_t b, unsigned g);

/* ring_entries: per ring, a power of two in 2..HPT_RING_MAX (0: default). */
int hpt_trk_new(uint64_t nbits, bool all, uint64_t ring_entries, struct hpt_track **out);
static inline int hpt_trk_create(uint64_t nbits, bool all, struct hpt_track **out)
{
	return hpt_trk_new(nbits, all, 0, out);
}
void hpt_trk_destroy(struct hpt_track *t);
/* Set bits [first, first + n); returns how many were newly set. */
uint64_t hpt_trk_set_range(struct hpt_track *t, uint64_t first, uint64_t n);
/* Take the next word; at *cursor == 0 (a pass starts) harvests first. */
bool hpt_trk_take(struct hpt_track *t, uint64_t *cursor, uint64_t *word_index, uint64_t *bits);
/* Move every ring's appended slots into the bitmap (takes the lock). */
void hpt_trk_harvest(struct hpt_track *t);
/* Slow path of a mark by the thread alone in shard s (ring i): note the
 * ring in the claimed mask, refresh tail_seen; true when the caller may
 * append, false (ring full) when it marks the bitmap instead. */
bool hpt_trk_ring_claim(struct hpt_track *t, unsigned i);

/*
 * Make every slot appended to a ring before this call (happens-before)
 * visible in the bitmap: nothing to do when every claimed ring's tail has
 * reached its head (a tail load with acquire orders the harvester's bit
 * sets before what follows), else harvest. With no vCPU marking, a few
 * loads of lines nobody writes.
 */
static inline void hpt_trk_sync(struct hpt_track *t)
{
	for (uint64_t c = atomic_load_explicit(&t->claimed, memory_order_acquire); c; c &= c - 1) {
		struct hpt_ring *r = &t->rings[__builtin_ctzll(c)];
		if (atomic_load_explicit(&r->head, memory_order_acquire) !=
		    atomic_load_explicit(&r->tail, memory_order_acquire)) {
			hpt_trk_harvest(t);
			return;
		}
	}
}

/* Summary bit of data word w. The load is seq_cst: docs/hpt.md, step 3. */
static inline void hpt_trk_summary_mark(struct hpt_track *t, uint64_t w)
{
	uint64_t m = UINT64_C(1) << (w & 63);
	_Atomic uint64_t *s = &t->summary[w >> 6];
	if (!(atomic_load(s) & m))
		atomic_fetch_or(s, m);
}

/*
 * Data word w of the bitmap for a reader, read only under its summary bit
 * (0 when that is clear): a set bit the reader must see comes with a
 * visible summary bit (track.c), and a fresh bitmap's untouched pages are
 * never faulted in (see "Tracking bits" at read_runs in hpt.c). Rings are
 * synced first, so a mark made before an unlock the caller's V2 load read
 * from is in the bitmap even while it was still in a vCPU's ring.
 */
static inline uint64_t hpt_trk_word_nosync(struct hpt_track *t, uint64_t w)
{
	if (!((atomic_load(&t->summary[w >> 6]) >> (w & 63)) & 1))
		return 0;
	return atomic_load(&t->words[w]);
}

/* The same after a ring sync (a caller validating one read at a time). */
static inline uint64_t hpt_trk_word(struct hpt_track *t, uint64_t w)
{
	hpt_trk_sync(t);
	return hpt_trk_word_nosync(t, w);
}

/*
 * Set one bit; true when it was clear before. A bit already set costs a
 * load, not a locked OR (why that is safe: docs/hpt.md, "Change
 * tracking", step 3). Caller: a writer's bitmap fallback, entry lock held.
 */
static inline bool hpt_trk_set(struct hpt_track *t, uint64_t bit)
{
	uint64_t w = bit >> 6, m = UINT64_C(1) << (bit & 63);
	if (atomic_load(&t->words[w]) & m)
		return false;
	if (atomic_fetch_or(&t->words[w], m) & m)
		return false; /* whoever set it first marks the summary */
	hpt_trk_summary_mark(t, w);
	return true;
}

struct hpt {
	/*
	 * Read-mostly line: loaded by every hcall, written only by control
	 * operations (resize, reset, tracking start/stop), so in normal running
	 * it stays shared in every core's cache.
	 *  excl: 1 while a control operation holds the table exclusively.
	 *  tab: current table; replaced only in exclusive mode.
	 *  track: tracking bitmap or NULL; set with seq_cst (see hpt.c), cleared
	 *    and freed only in exclusive mode, so a reader-lock holder may use it.
	 */
	_Alignas(64) _Atomic int excl;
	_Atomic(struct hpt_table *) tab;
	_Atomic(struct hpt_track *) track;
	_Atomic unsigned cur_shift;     /* mirrors tab->shift for lock-free getters */
	_Atomic uint64_t generation;
	hpt_config_t cfg;               /* immutable */

	/* Control operations: serialised by ctl. pending is protected by ctl. */
	_Alignas(64) pthread_mutex_t ctl;
	struct hpt_table *pending;

	struct hpt_shard shards[HPT_NSHARDS];
};

static inline void hpt_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

/* ---- sharded reader lock ("big reader" lock) ---- */

struct hpt_shard *hpt_rd_lock_slow(hpt_t *h, struct hpt_shard *s);
struct hpt_shard *hpt_my_shard(hpt_t *h);

/*
 * Enter the read side: the table (and the tracker) cannot be replaced or
 * freed until hpt_rd_unlock(). Increment our shard, then check excl (both
 * seq_cst): against the writer storing excl then reading every shard, one of
 * the two sees the other (Dekker), so a writer never proceeds while a
 * reader is inside, and a reader never enters an exclusive section.
 */
static inline struct hpt_shard *hpt_rd_lock(hpt_t *h)
{
	struct hpt_shard *s = hpt_my_shard(h);
	atomic_fetch_add(&s->readers, 1);
	if (__builtin_expect(atomic_load(&h->excl) != 0, 0))
		return hpt_rd_lock_slow(h, s);
	return s;
}

static inline void hpt_rd_unlock(struct hpt_shard *s)
{
	atomic_fetch_sub_explicit(&s->readers, 1, memory_order_release);
}

static inline struct hpt_table *hpt_tab(hpt_t *h)
{
	return atomic_load_explicit(&h->tab, memory_order_acquire);
}

/* Exclusive mode; the caller holds h->ctl. Waits for readers to drain. */
void hpt_wr_lock(hpt_t *h);
void hpt_wr_unlock(hpt_t *h);

/* ---- per-entry lock ---- */

static inline _Atomic uint64_t *hpt_vp(struct hpt_table *t, uint64_t slot)
{
	return &t->w[2 * slot];
}
static inline _Atomic uint64_t *hpt_rp(struct hpt_table *t, uint64_t slot)
{
	return &t->w[2 * slot + 1];
}

/*
 * Take an entry's lock: CAS the HVLOCK bit into V (seq_cst, which is the
 * same instruction as acquire on x86 and gives the total order the tracking
 * argument in hpt.c needs). Returns V in host order with 0x40 clear.
 */
static inline uint64_t hpt_entry_lock(_Atomic uint64_t *vp)
{
	uint64_t old = atomic_load_explicit(vp, memory_order_relaxed);
	unsigned spins = 0;
	for (;;) {
		if (old & HPT_LOCK_BE) {
			if (++spins > 64) {
				sched_yield();
				spins = 0;
			} else {
				hpt_cpu_relax();
			}
			old = atomic_load_explicit(vp, memory_order_relaxed);
			continue;
		}
		if (atomic_compare_exchange_weak(vp, &old, old | HPT_LOCK_BE)) {
			/* Seqlock half for the optimistic reader (hpt.c): the
			 * lock is ordered before the stores that follow it. */
			atomic_thread_fence(memory_order_release);
			return HPT_BE(old);
		}
	}
}

/* Release with V (host order, 0x40 cleared here): publishes earlier R stores. */
static inline void hpt_entry_unlock(_Atomic uint64_t *vp, uint64_t v)
{
	atomic_store_explicit(vp, HPT_BE(v & ~HPTE64_V_HVLOCK), memory_order_release);
}

static inline uint64_t hpt_r_load(_Atomic uint64_t *rp)
{
	return HPT_BE(atomic_load_explicit(rp, memory_order_relaxed));
}
static inline void hpt_r_store(_Atomic uint64_t *rp, uint64_t r)
{
	atomic_store_explicit(rp, HPT_BE(r), memory_order_relaxed);
}

/*
 * Mark a slot changed. Call with the entry lock held, after the new words
 * are stored and before unlocking, inside the reader lock (s is the shard
 * hpt_rd_lock returned). One seq_cst load and a branch when tracking is
 * off. On: the slot goes to the thread's ring with a plain store and a
 * release store of head (no locked instruction, no shared line written;
 * the migration thread moves it into the bitmap); a ring that is full or
 * owned by another thread sharing the shard means the bitmap directly (an
 * atomic OR and an add on our own shard line). The no-loss argument:
 * docs/hpt.md, "Change tracking".
 */
static inline void hpt_track_mark(hpt_t *h, struct hpt_shard *s, uint64_t slot)
{
	struct hpt_track *t = atomic_load(&h->track);
	if (!t)
		return;
	unsigned i = (unsigned)(s - h->shards);
	struct hpt_ring *r = &t->rings[i];
	/* Alone in the shard: our own increment is the only one (a relaxed
	 * load suffices: of two threads inside, the later increment's
	 * thread reads at least 2; docs/hpt.md). The shard's line is in our
	 * cache (hpt_rd_lock just wrote it). */
	bool alone = atomic_load_explicit(&s->readers, memory_order_relaxed) == 1;
	uint64_t hd = atomic_load_explicit(&r->head, memory_order_relaxed);
	if (alone && ((__builtin_expect(r->used && hd - r->tail_seen <= r->mask, 1)) ||
		      hpt_trk_ring_claim(t, i))) {
		r->e[hd & r->mask] = (uint32_t)slot;
		atomic_store_explicit(&r->head, hd + 1, memory_order_release);
		return;
	}
	/* A statistic: a load and a store, not a locked add (threads sharing
	 * a shard may lose a count; never a mark). */
	atomic_store_explicit(&s->overflow,
			      atomic_load_explicit(&s->overflow, memory_order_relaxed) + 1,
			      memory_order_relaxed);
	if (hpt_trk_set(t, slot))
		atomic_fetch_add_explicit(&s->marked, 1, memory_order_relaxed);
}

/*
 * The optimistic read of one entry, without its lock, validated by
 * tracking (why: docs/hpt.md, "The first pass without locks"): V
 * (seq_cst), R, acquire fence, V again, then the slot's tracking bit. *v and *r get the stored words; true when
 * they are a real state of the entry (V unchanged, unlocked, no change
 * marked), false when the caller must read it again under the lock.
 */
static inline bool hpt_read_optimistic(struct hpt_track *trk, struct hpt_table *t,
				       uint64_t slot, uint64_t *v, uint64_t *r)
{
	_Atomic uint64_t *vp = hpt_vp(t, slot);
	uint64_t v1 = atomic_load(vp);
	*r = atomic_load_explicit(hpt_rp(t, slot), memory_order_relaxed);
	atomic_thread_fence(memory_order_acquire);
	uint64_t v2 = atomic_load_explicit(vp, memory_order_acquire);
	uint64_t bit = (hpt_trk_word(trk, slot >> 6) >> (slot & 63)) & 1;
	*v = v1;
	return (v2 == v1) & ((v1 & HPT_LOCK_BE) == 0) & (bit == 0);
}

/*
 * The digest walk's reader (digest.c): the valid entries of slots
 * [first, end) of t (the caller holds the reader lock; end - first a
 * multiple of 64) as 24-byte digest records at rec (NULL: count only),
 * read as mode says; adds to *valid and *bolted; returns the bytes written.
 */
size_t hpt_collect(hpt_read_mode_t mode, struct hpt_track *trk, struct hpt_table *t,
		   uint64_t first, uint64_t end, uint8_t *rec, uint64_t *valid, uint64_t *bolted);
/* The same over the block of 4096 slots at first, reading the V words only
 * of the 64-slot groups set in reread and the rest's live slots from occ
 * (updated for the groups read); records always written. */
size_t hpt_collect_sparse(hpt_read_mode_t mode, struct hpt_track *trk, struct hpt_table *t,
			  uint64_t first, uint64_t occ[64], uint64_t reread, uint8_t *rec,
			  uint64_t *valid, uint64_t *bolted);

/* Resize steps (hpt.c), called by the hypercalls with h->ctl held. */
long hpt_resize_prepare_locked(hpt_t *h, unsigned shift);
long hpt_resize_commit_locked(hpt_t *h, unsigned shift);

/* Table memory (zero pages mapped lazily). */
struct hpt_table *hpt_table_new(unsigned shift);
void hpt_table_free(struct hpt_table *t);

#endif
