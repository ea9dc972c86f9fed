/* SPDX-License-Identifier: MIT */
/*
 * The change-tracking bitmap of a table: one bit per slot plus one summary
 * bit per 64-slot word, so a pass finds changed slots without reading clean
 * regions. It has no counter of its own: the count of set bits lives in the
 * writers' own reader-lock shards (see hpt_internal.h), so two vCPUs marking
 * different slots never write the same cache line. It must never lose a bit.
 * Unit tests: tests/hpt/test_track.c.
 *
 * Invariant: writers OR the data word, then (if not yet
 * set) the summary bit, both seq_cst; the single taker clears a summary bit,
 * then exchanges the data word with zero. A bit set before a take either is
 * returned by it or stays set with its summary bit set for a later take:
 * if the writer's summary load saw the bit set, the taker's clearing of it
 * comes later in the total order and so does its exchange of the data word.
 */
#include "hpt_internal.h"

#include <errno.h>
#include <stdlib.h>
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

int hpt_trk_create(uint64_t nbits, bool all, struct hpt_track **out)
{
	struct hpt_track *t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
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
	free(t);
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
			*cursor = w;
			*word_index = wi;
			*bits = v;
			return true;
		}
	}
	*cursor = t->nwords;
	return false;
}
