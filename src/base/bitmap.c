/* SPDX-License-Identifier: MIT */
/*
 * The atomic two-level bitmap behind change tracking. Writers (vCPU threads)
 * pay one atomic OR per new bit, plus one more only when the word's summary
 * bit is not set yet; the single reader pays for the words it takes, never
 * for clean regions. It must never lose a bit: see the proof in base.h.
 */
#include "hptmig/base.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>

struct hm_bitmap {
	uint64_t nbits;
	uint64_t nwords;         /* data words */
	uint64_t nsummary;       /* summary words: one bit per data word */
	_Atomic uint64_t *words;
	_Atomic uint64_t *summary;
	void *words_mem;         /* the same blocks, for free() */
	void *summary_mem;
	/* Bits set minus bits taken. Own cache line: every writer touches it. */
	_Alignas(64) _Atomic int64_t count;
	char pad[64 - sizeof(int64_t)];
};

int hm_bitmap_create(uint64_t nbits, hm_bitmap_t **out)
{
	hm_bitmap_t *b;
	if (nbits == 0 || nbits > (UINT64_C(1) << 44))
		return -EINVAL;
	b = aligned_alloc(64, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->nbits = nbits;
	b->nwords = (nbits + 63) / 64;
	b->nsummary = (b->nwords + 63) / 64;
	/* calloc of a large block is served by fresh zero pages: no cost until touched. */
	b->words_mem = calloc(b->nwords, sizeof(uint64_t));
	b->summary_mem = calloc(b->nsummary, sizeof(uint64_t));
	b->words = b->words_mem;
	b->summary = b->summary_mem;
	atomic_init(&b->count, 0);
	if (!b->words_mem || !b->summary_mem) {
		free(b->words_mem);
		free(b->summary_mem);
		free(b);
		return -ENOMEM;
	}
	*out = b;
	return 0;
}

void hm_bitmap_destroy(hm_bitmap_t *b)
{
	if (!b)
		return;
	free(b->words_mem);
	free(b->summary_mem);
	free(b);
}

uint64_t hm_bitmap_nbits(const hm_bitmap_t *b)
{
	return b->nbits;
}

uint64_t hm_bitmap_words(const hm_bitmap_t *b)
{
	return b->nwords;
}

/*
 * Mark data word w in the summary. The relaxed-looking load is seq_cst: if it
 * sees the bit set, the reader's clearing of that bit comes later in the total
 * order, and so does its exchange of the data word, which then sees our OR.
 */
static inline void summary_mark(hm_bitmap_t *b, uint64_t w)
{
	uint64_t m = UINT64_C(1) << (w & 63);
	_Atomic uint64_t *s = &b->summary[w >> 6];
	if (!(atomic_load(s) & m))
		atomic_fetch_or(s, m);
}

bool hm_bitmap_set(hm_bitmap_t *b, uint64_t bit)
{
	uint64_t w = bit >> 6, m = UINT64_C(1) << (bit & 63);
	uint64_t old = atomic_fetch_or(&b->words[w], m);
	if (old & m)
		return false; /* whoever set it first marks the summary */
	summary_mark(b, w);
	atomic_fetch_add_explicit(&b->count, 1, memory_order_relaxed);
	return true;
}

void hm_bitmap_set_range(hm_bitmap_t *b, uint64_t first, uint64_t n)
{
	uint64_t end = first + n;
	if (n == 0 || first >= b->nbits)
		return;
	if (end > b->nbits || end < first)
		end = b->nbits;
	while (first < end) {
		uint64_t w = first >> 6, lo = first & 63;
		uint64_t hi = (end - (w << 6)) >= 64 ? 64 : end - (w << 6);
		uint64_t m = (hi == 64 ? ~UINT64_C(0) : ((UINT64_C(1) << hi) - 1)) & ~((UINT64_C(1) << lo) - 1);
		uint64_t old = atomic_fetch_or(&b->words[w], m);
		uint64_t added = m & ~old;
		if (added) {
			summary_mark(b, w);
			atomic_fetch_add_explicit(&b->count, __builtin_popcountll(added),
						  memory_order_relaxed);
		}
		first = (w + 1) << 6;
	}
}

void hm_bitmap_clear_all(hm_bitmap_t *b)
{
	for (uint64_t i = 0; i < b->nsummary; i++) {
		uint64_t s = atomic_exchange(&b->summary[i], 0);
		while (s) {
			uint64_t j = (uint64_t)__builtin_ctzll(s);
			s &= s - 1;
			atomic_store(&b->words[(i << 6) + j], 0);
		}
	}
	atomic_store(&b->count, 0);
}

bool hm_bitmap_test(const hm_bitmap_t *b, uint64_t bit)
{
	if (bit >= b->nbits)
		return false;
	return (atomic_load_explicit(&b->words[bit >> 6], memory_order_relaxed) >> (bit & 63)) & 1;
}

uint64_t hm_bitmap_count(const hm_bitmap_t *b)
{
	int64_t c = atomic_load_explicit(&b->count, memory_order_relaxed);
	if (c < 0)
		return 0;
	return (uint64_t)c > b->nbits ? b->nbits : (uint64_t)c;
}

bool hm_bitmap_take(hm_bitmap_t *b, uint64_t *cursor, uint64_t *word_index, uint64_t *bits)
{
	uint64_t w = *cursor;
	while (w < b->nwords) {
		uint64_t si = w >> 6;
		uint64_t s = atomic_load(&b->summary[si]) & (~UINT64_C(0) << (w & 63));
		if (!s) {
			w = (si + 1) << 6;
			continue;
		}
		uint64_t j = (uint64_t)__builtin_ctzll(s);
		uint64_t wi = (si << 6) + j;
		/* Clear only this word's summary bit: bits below the cursor that
		 * writers set again must survive for the next pass. */
		atomic_fetch_and(&b->summary[si], ~(UINT64_C(1) << j));
		uint64_t v = atomic_exchange(&b->words[wi], 0);
		w = wi + 1;
		if (v) {
			atomic_fetch_sub_explicit(&b->count, __builtin_popcountll(v),
						  memory_order_relaxed);
			*cursor = w;
			*word_index = wi;
			*bits = v;
			return true;
		}
	}
	*cursor = b->nwords;
	return false;
}
