/* SPDX-License-Identifier: MIT */
/*
 * Change tracking of a table: the vCPUs' change logs (rings, one per
 * reader-lock shard, single producer) and the bitmap they are harvested
 * into, one bit per slot plus one summary bit per 64-slot word, so a pass
 * finds changed slots without reading clean regions. The count of set bits
 * lives in the writers' shards (bitmap marks) and in the harvest counter,
 * so two vCPUs never write the same cache line to mark. It must never lose
 * a change: the argument, for the rings, the bitmap's summary/data words
 * and the taker, is in docs/hpt.md, "Change tracking". Unit tests:
 * tests/hpt/test_track.c; under threads: tests/hpt/test_stress.c.
 */
#include "hpt_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/*
 * Bitmap memory. Big bitmaps (a 2 GiB table has a 16 MiB bitmap) come from
 * mmap with huge pages: a sparse pass touches one random word per change,
 * and with 4K pages each of those is a TLB miss on top of the cache miss.
 */
#define TRK_MMAP_MIN ((size_t)1 << 20)

static void *trk_alloc(size_t bytes)
{
	if (bytes < TRK_MMAP_MIN)
		return calloc(1, bytes);
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	(void)madvise(p, bytes, MADV_HUGEPAGE);
	return p;
}

static void trk_free(void *p, size_t bytes)
{
	if (!p)
		return;
	if (bytes < TRK_MMAP_MIN)
		free(p);
	else
		munmap(p, bytes);
}

/* The rings' entries: one mapping for all of them, zero pages until a
 * ring's owner writes (a vCPU touches only its own ring). */
static size_t ring_mem_bytes(const struct hpt_track *t)
{
	return (size_t)HPT_NSHARDS * t->ring_size * sizeof(uint32_t);
}

int hpt_trk_new(uint64_t nbits, bool all, uint64_t ring_entries, struct hpt_track **out)
{
	if (ring_entries == 0)
		ring_entries = HPT_RING_DEFAULT;
	if (ring_entries < 2 || ring_entries > HPT_RING_MAX || (ring_entries & (ring_entries - 1)))
		return -EINVAL;
	struct hpt_track *t = aligned_alloc(64, sizeof(*t));
	if (!t)
		return -ENOMEM;
	memset(t, 0, sizeof(*t));
	t->ring_size = ring_entries;
	void *rm = mmap(NULL, ring_mem_bytes(t), PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (rm == MAP_FAILED) {
		free(t);
		return -ENOMEM;
	}
	t->ring_mem = rm;
	for (unsigned i = 0; i < HPT_NSHARDS; i++) {
		atomic_init(&t->rings[i].head, 0);
		atomic_init(&t->rings[i].tail, 0);
		t->rings[i].e = t->ring_mem + (size_t)i * t->ring_size;
		t->rings[i].mask = t->ring_size - 1;
	}
	atomic_init(&t->claimed, 0);
	atomic_init(&t->harvested, 0);
	pthread_mutex_init(&t->harvest_lock, NULL);
	t->nbits = nbits;
	t->nwords = (nbits + 63) / 64;
	t->nsummary = (t->nwords + 63) / 64;
	/* Zero pages: free until touched. */
	t->words = trk_alloc(t->nwords * sizeof(uint64_t));
	t->summary = trk_alloc(t->nsummary * sizeof(uint64_t));
	if (!t->words || !t->summary) {
		hpt_trk_destroy(t);
		return -ENOMEM;
	}
	atomic_init(&t->taken, 0);
	t->preset = 0;
	if (all) {
		for (uint64_t w = 0; w < t->nwords; w++) {
			uint64_t n = nbits - w * 64 >= 64 ? 64 : nbits - w * 64;
			atomic_init(&t->words[w], n == 64 ? ~UINT64_C(0) : (UINT64_C(1) << n) - 1);
		}
		for (uint64_t s = 0; s < t->nsummary; s++) {
			uint64_t n = t->nwords - s * 64 >= 64 ? 64 : t->nwords - s * 64;
			atomic_init(&t->summary[s], n == 64 ? ~UINT64_C(0) : (UINT64_C(1) << n) - 1);
		}
		t->preset = nbits;
	}
	*out = t;
	return 0;
}

void hpt_trk_destroy(struct hpt_track *t)
{
	if (!t)
		return;
	trk_free((void *)(uintptr_t)t->words, t->nwords * sizeof(uint64_t));
	trk_free((void *)(uintptr_t)t->summary, t->nsummary * sizeof(uint64_t));
	hpt_bc_free(t->bc);
	if (t->ring_mem) {
		munmap(t->ring_mem, ring_mem_bytes(t));
		pthread_mutex_destroy(&t->harvest_lock);
	}
	free(t);
}

bool hpt_trk_ring_claim(struct hpt_track *t, unsigned i)
{
	struct hpt_ring *r = &t->rings[i];
	if (!r->used) {
		/* Before the first append (program order), so a harvester that
		 * must see an append sees this bit too (hpt_trk_sync). */
		atomic_fetch_or(&t->claimed, UINT64_C(1) << i);
		r->used = 1;
	}
	/* Acquire: the harvester read the entries below tail before storing
	 * it, so overwriting them now cannot race with that read. */
	r->tail_seen = atomic_load_explicit(&r->tail, memory_order_acquire);
	return atomic_load_explicit(&r->head, memory_order_relaxed) - r->tail_seen <= r->mask;
}

void hpt_trk_harvest(struct hpt_track *t)
{
	uint64_t added = 0;
	pthread_mutex_lock(&t->harvest_lock);
	for (uint64_t c = atomic_load_explicit(&t->claimed, memory_order_acquire); c; c &= c - 1) {
		struct hpt_ring *r = &t->rings[__builtin_ctzll(c)];
		/* Acquire: the entries below head, and the table stores the
		 * writer made before appending, are visible from here on. */
		uint64_t hd = atomic_load_explicit(&r->head, memory_order_acquire);
		uint64_t tl = atomic_load_explicit(&r->tail, memory_order_relaxed);
		/* The entries' address and mask from the tracker's own
		 * immutable fields, never r->e / r->mask: those sit on the
		 * producer's line beside head, and the locked ORs below make
		 * the compiler reload them every entry, so each entry pulled
		 * the line a vCPU stores on every mark (measured: tracked
		 * hcalls twice as slow while a harvest ran; hcall.md). */
		const uint32_t *e = t->ring_mem + (size_t)(r - t->rings) * t->ring_size;
		const uint64_t mask = t->ring_size - 1;
		for (; tl != hd; tl++) {
			uint64_t slot = e[tl & mask];
			/* A slot past the end cannot come from this bitmap's table
			 * (the rings die with it); checked all the same. */
			if (slot >= t->nbits)
				continue;
			/* Always the locked OR (never hpt_trk_set's load-only
			 * shortcut): the taker's exchange of the word then reads
			 * from it or comes before it (docs/hpt.md, step 4). */
			uint64_t w = slot >> 6, m = UINT64_C(1) << (slot & 63);
			if (!(atomic_fetch_or(&t->words[w], m) & m)) {
				hpt_trk_summary_mark(t, w);
				added++;
			}
		}
		/* Release: our reads of the entries happen before the owner
		 * overwrites them, and our bit sets before a sync that sees
		 * this tail. */
		atomic_store_explicit(&r->tail, hd, memory_order_release);
	}
	atomic_fetch_add_explicit(&t->harvested, added, memory_order_relaxed);
	pthread_mutex_unlock(&t->harvest_lock);
}

uint64_t hpt_trk_set_range(struct hpt_track *t, uint64_t first, uint64_t n)
{
	uint64_t end = first + n, added_total = 0;
	if (n == 0 || first >= t->nbits)
		return 0;
	if (end > t->nbits || end < first)
		end = t->nbits;
	while (first < end) {
		uint64_t w = first >> 6, lo = first & 63;
		uint64_t hi = (end - (w << 6)) >= 64 ? 64 : end - (w << 6);
		uint64_t m = (hi == 64 ? ~UINT64_C(0) : ((UINT64_C(1) << hi) - 1)) & ~((UINT64_C(1) << lo) - 1);
		uint64_t old = atomic_fetch_or(&t->words[w], m);
		uint64_t added = m & ~old;
		if (added) {
			hpt_trk_summary_mark(t, w);
			added_total += (uint64_t)__builtin_popcountll(added);
		}
		first = (w + 1) << 6;
	}
	return added_total;
}

/*
 * Prefetch the data words named by summary words up to 'until' (exclusive).
 * A sparse pass is bound by one cache miss per changed word; touching the
 * next few summary words' data words ahead lets those misses overlap.
 * Hints only: correctness never depends on them.
 */
#define TRK_PREFETCH_AHEAD 16
static void trk_prefetch(struct hpt_track *t, uint64_t si)
{
	uint64_t until = si + TRK_PREFETCH_AHEAD < t->nsummary ? si + TRK_PREFETCH_AHEAD : t->nsummary;
	if (t->pf_next < si || t->pf_next > until + TRK_PREFETCH_AHEAD)
		t->pf_next = si; /* a new pass or a jump of the cursor */
	for (; t->pf_next < until; t->pf_next++) {
		uint64_t s = atomic_load_explicit(&t->summary[t->pf_next], memory_order_relaxed);
		unsigned n = 0;
		while (s && n++ < 16) {
			__builtin_prefetch((const void *)(uintptr_t)&t->words[(t->pf_next << 6) +
									      (uint64_t)__builtin_ctzll(s)],
					   1);
			s &= s - 1;
		}
	}
}

bool hpt_trk_take(struct hpt_track *t, uint64_t *cursor, uint64_t *word_index, uint64_t *bits)
{
	uint64_t w = *cursor;
	/* The start of a pass moves the rings into the bitmap; not every
	 * take: a sync reads the vCPUs' head lines, and pulling them once per
	 * changed word would cost a vCPU a coherence miss per append. Appends
	 * after this harvest wait for the next pass (docs/hpt.md, "Change
	 * tracking", step 2). */
	if (w == 0)
		hpt_trk_sync(t);
	while (w < t->nwords) {
		uint64_t si = w >> 6;
		uint64_t s = atomic_load(&t->summary[si]) & (~UINT64_C(0) << (w & 63));
		if (!s) {
			w = (si + 1) << 6;
			continue;
		}
		trk_prefetch(t, si);
		uint64_t j = (uint64_t)__builtin_ctzll(s);
		uint64_t wi = (si << 6) + j;
		/* Clear only this word's summary bit: bits below the cursor that
		 * writers set again must survive for the next pass. */
		atomic_fetch_and(&t->summary[si], ~(UINT64_C(1) << j));
		uint64_t v = atomic_exchange(&t->words[wi], 0);
		w = wi + 1;
		if (v) {
			atomic_fetch_add_explicit(&t->taken, (uint64_t)__builtin_popcountll(v),
						  memory_order_relaxed);
			/* The block of these slots changed since it was hashed
			 * (or will be hashed after this take): docs/hpt.md,
			 * "The root kept current". Summary word si is block si. */
			if (t->bc)
				hpt_bc_mark_group(t->bc, si, (unsigned)j);
			*cursor = w;
			*word_index = wi;
			*bits = v;
			return true;
		}
	}
	*cursor = t->nwords;
	return false;
}
