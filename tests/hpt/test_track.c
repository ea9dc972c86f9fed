/* SPDX-License-Identifier: MIT */
/*
 * Tests of the change-tracking bitmap itself (src/hpt/track.c, through its
 * private interface): single-threaded semantics against a reference, and a
 * concurrency test where writers set bits while the taker takes them; after
 * the writers stop and a final drain, the taker has seen the last change of
 * every bit (none lost); the vCPUs' change logs (rings) through the table
 * API, filling, falling back to the bitmap and wrapping. The table-level
 * tracking tests are in test_table.c and test_stress.c.
 */
#include "testutil.h"

#include "hpt/hpt_internal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static bool bit_is_set(struct hpt_track *t, uint64_t bit)
{
	return (atomic_load(&t->words[bit >> 6]) >> (bit & 63)) & 1;
}

static void test_basic(void **state)
{
	(void)state;
	struct hpt_track *b;
	uint64_t cursor = 0, wi, bits;
	assert_int_equal(hpt_trk_create(1000, false, &b), 0);
	assert_int_equal(b->nwords, 16);
	assert_false(hpt_trk_take(b, &cursor, &wi, &bits));
	assert_int_equal(cursor, 16);
	assert_true(hpt_trk_set(b, 0));
	assert_false(hpt_trk_set(b, 0));
	assert_true(hpt_trk_set(b, 999));
	assert_true(hpt_trk_set(b, 130));
	cursor = 0;
	assert_true(hpt_trk_take(b, &cursor, &wi, &bits));
	assert_int_equal(wi, 0);
	assert_true(bits == 1);
	assert_true(hpt_trk_take(b, &cursor, &wi, &bits));
	assert_int_equal(wi, 2);
	assert_true(bits == 4);
	assert_true(hpt_trk_take(b, &cursor, &wi, &bits));
	assert_int_equal(wi, 15);
	assert_true(bits == (UINT64_C(1) << (999 - 960)));
	assert_false(hpt_trk_take(b, &cursor, &wi, &bits));
	assert_int_equal(atomic_load(&b->taken), 3);
	/* A bit set behind the cursor survives for the next pass. */
	assert_true(hpt_trk_set(b, 70));
	assert_true(hpt_trk_set(b, 5));
	cursor = 1;
	assert_true(hpt_trk_take(b, &cursor, &wi, &bits));
	assert_int_equal(wi, 1);
	assert_false(hpt_trk_take(b, &cursor, &wi, &bits));
	cursor = 0;
	assert_true(hpt_trk_take(b, &cursor, &wi, &bits));
	assert_int_equal(wi, 0);
	assert_true(bits == 32);
	assert_int_equal(hpt_trk_set_range(b, 60, 200), 200);
	assert_int_equal(hpt_trk_set_range(b, 50, 20), 10);
	for (uint64_t i = 0; i < 1000; i++)
		assert_int_equal(bit_is_set(b, i), i >= 50 && i < 260);
	assert_int_equal(hpt_trk_set_range(b, 0, 5000), 1000 - 210); /* clamps at nbits */
	assert_int_equal(hpt_trk_set_range(b, 1000, 5), 0);
	hpt_trk_destroy(b);

	/* Created full: every bit set, none beyond nbits, preset counted. */
	assert_int_equal(hpt_trk_create(130, true, &b), 0);
	assert_int_equal(b->preset, 130);
	uint64_t n = 0;
	cursor = 0;
	while (hpt_trk_take(b, &cursor, &wi, &bits)) {
		assert_true(wi < 3);
		n += (uint64_t)__builtin_popcountll(bits);
	}
	assert_int_equal(n, 130);
	hpt_trk_destroy(b);
}

static void test_random_vs_reference(void **state)
{
	(void)state;
	uint64_t seed = tu_seed("track bitmap reference");
	const uint64_t n = 200000;
	struct hpt_track *b;
	uint8_t *ref = calloc(n, 1);
	assert_non_null(ref);
	assert_int_equal(hpt_trk_create(n, false, &b), 0);
	for (int round = 0; round < 20; round++) {
		uint64_t k = tu_rand(&seed) % 5000;
		for (uint64_t i = 0; i < k; i++) {
			uint64_t bit = tu_rand(&seed) % n;
			if (tu_rand(&seed) % 8 == 0) {
				uint64_t len = tu_rand(&seed) % 300, expect = 0;
				for (uint64_t j = bit; j < bit + len && j < n; j++)
					expect += !ref[j], ref[j] = 1;
				assert_int_equal(hpt_trk_set_range(b, bit, len), expect);
				continue;
			}
			assert_int_equal(hpt_trk_set(b, bit), !ref[bit]);
			ref[bit] = 1;
		}
		uint64_t cursor = 0, wi, bits, taken = 0, expect = 0;
		for (uint64_t i = 0; i < n; i++)
			expect += ref[i];
		while (hpt_trk_take(b, &cursor, &wi, &bits)) {
			while (bits) {
				uint64_t bit = wi * 64 + (uint64_t)__builtin_ctzll(bits);
				bits &= bits - 1;
				assert_true(bit < n);
				assert_int_equal(ref[bit], 1);
				ref[bit] = 0;
				taken++;
			}
		}
		assert_int_equal(taken, expect);
	}
	hpt_trk_destroy(b);
	free(ref);
}

/* Concurrency: writers bump a bit's generation, then set the bit; the taker
 * records the generation it saw when it took the bit. Afterwards every bit's
 * last generation must have been seen. */
#define NBITS 65536
struct conc {
	struct hpt_track *b;
	_Atomic uint32_t gen[NBITS];
	uint32_t seen[NBITS];
	atomic_bool stop;
};

struct writer_arg {
	struct conc *c;
	uint64_t seed;
};

static void *writer(void *arg)
{
	struct writer_arg *w = arg;
	struct conc *c = w->c;
	uint64_t s = w->seed;
	while (!atomic_load(&c->stop)) {
		for (int i = 0; i < 1000; i++) {
			uint64_t bit = tu_rand(&s) % NBITS;
			atomic_fetch_add(&c->gen[bit], 1);
			hpt_trk_set(c->b, bit);
		}
	}
	return NULL;
}

static void drain(struct conc *c)
{
	uint64_t cursor = 0, wi, bits;
	while (hpt_trk_take(c->b, &cursor, &wi, &bits)) {
		while (bits) {
			uint64_t bit = wi * 64 + (uint64_t)__builtin_ctzll(bits);
			bits &= bits - 1;
			c->seen[bit] = atomic_load(&c->gen[bit]);
		}
	}
}

static void test_concurrent_no_loss(void **state)
{
	(void)state;
	struct conc *c = calloc(1, sizeof(*c));
	pthread_t t[3];
	struct writer_arg wa[3];
	assert_non_null(c);
	uint64_t seed = tu_seed("track bitmap concurrency");
	assert_int_equal(hpt_trk_create(NBITS, false, &c->b), 0);
	for (int i = 0; i < 3; i++) {
		wa[i].c = c;
		wa[i].seed = seed + (uint64_t)i * 7919;
		assert_int_equal(pthread_create(&t[i], NULL, writer, &wa[i]), 0);
	}
	uint64_t end = hm_now_ns() + 300000000ull;
	while (hm_now_ns() < end)
		drain(c);
	atomic_store(&c->stop, true);
	for (int i = 0; i < 3; i++)
		pthread_join(t[i], NULL);
	drain(c);
	for (uint64_t i = 0; i < NBITS; i++)
		assert_int_equal(c->seen[i], atomic_load(&c->gen[i]));
	hpt_trk_destroy(c->b);
	free(c);
}

/* Take everything; returns the number of bits, *got[] = 1 for each slot. */
static uint64_t take_all(hpt_t *h, uint8_t *got, uint64_t n)
{
	uint64_t cur = 0, first, bits, k = 0;
	memset(got, 0, n);
	while (hpt_track_take(h, &cur, &first, &bits))
		for (; bits; bits &= bits - 1, k++) {
			uint64_t s = first + (uint64_t)__builtin_ctzll(bits);
			assert_true(s < n);
			got[s] = 1;
		}
	return k;
}

/*
 * The vCPU change logs through the table API, one thread: a 4-entry ring
 * fills and the rest goes to the bitmap (counted), nothing is lost either
 * way; drained every round, the ring wraps many times without one
 * fallback; a slot changed twice counts once; a change after the take is
 * taken again; bad ring sizes are refused.
 */
static void test_rings(void **state)
{
	(void)state;
	enum { N = 1024 };
	hpt_t *h;
	hpt_config_t cfg;
	hm_error_t e;
	uint8_t got[N];
	hm_error_clear(&e);
	hpt_config_default(&cfg);
	cfg.track_ring_entries = 3;
	assert_int_equal(hpt_create(18, &cfg, &h, &e), HM_E_RANGE);
	assert_non_null(strstr(e.msg, "track_ring_entries 3"));
	cfg.track_ring_entries = 1u << 25;
	assert_int_equal(hpt_create(18, &cfg, &h, &e), HM_E_RANGE);
	cfg.track_ring_entries = 4;
	assert_int_equal(hpt_create(18, &cfg, &h, &e), 0);
	assert_int_equal(hpt_track_start(h, &e), 0);
	uint64_t ov0 = hpt_track_overflows(h);

	/* 10 changes, no drain: 4 in the ring, 6 past it. */
	for (uint64_t s = 0; s < 10; s++)
		assert_true(hpt_write_entry(h, s * 7, HPTE64_V_VALID | (s << 7), s));
	assert_true(hpt_track_overflows(h) - ov0 == 6);
	assert_true(hpt_track_pending(h) == 10);
	assert_true(take_all(h, got, N) == 10);
	for (uint64_t s = 0; s < 10; s++)
		assert_int_equal(got[s * 7], 1);
	assert_true(hpt_track_pending(h) == 0);

	/* Rounds of 3 changes (one slot twice) and a take: the ring wraps. */
	uint64_t rs = tu_seed("rings"), ov1 = hpt_track_overflows(h);
	for (int round = 0; round < 300; round++) {
		uint64_t a = tu_rand(&rs) % N, b = (a + 1 + tu_rand(&rs) % (N - 1)) % N;
		assert_true(hpt_write_entry(h, a, HPTE64_V_VALID | ((uint64_t)round << 7), 1));
		assert_true(hpt_write_entry(h, b, HPTE64_V_VALID | ((uint64_t)round << 7), 2));
		assert_true(hpt_write_entry(h, a, HPTE64_V_VALID | ((uint64_t)round << 7), 3));
		assert_true(hpt_track_pending(h) == 2);
		assert_true(take_all(h, got, N) == 2);
		assert_true(got[a] && got[b]);
		/* Changed after its take: marked again. */
		assert_true(hpt_write_entry(h, a, 0, 0));
		assert_true(take_all(h, got, N) == 1);
		assert_true(got[a]);
	}
	assert_true(hpt_track_overflows(h) == ov1);
	/* A lock-free reader's bit lookup sees a mark still in the ring: the
	 * validation of hpt_read_entries / hpt_read_chunks depends on it. */
	assert_true(hpt_write_entry(h, 70, HPTE64_V_VALID, 70));
	struct hpt_track *t = atomic_load(&h->track);
	assert_int_equal((hpt_trk_word(t, 70 >> 6) >> (70 & 63)) & 1, 1);
	assert_true(take_all(h, got, N) == 1 && got[70]);
	/* A fresh tracker has fresh rings. */
	hpt_track_stop(h);
	assert_int_equal(hpt_track_start(h, &e), 0);
	assert_true(hpt_write_entry(h, 5, HPTE64_V_VALID, 9));
	assert_true(take_all(h, got, N) == 1 && got[5]);
	hpt_track_stop(h);
	hpt_destroy(h);
}

/*
 * hpt_track_take_batch: the same words, in the same order, as one take at a
 * time (each batch size, random changes), fewer than max only at the end,
 * the rings harvested at cursor 0, nothing when not tracking.
 */
static void test_take_batch(void **state)
{
	(void)state;
	enum { SLOTS = 16384, WORDS = SLOTS / 64 };
	static const size_t sizes[] = {1, 3, 64, 1000};
	hpt_t *h;
	hpt_config_t cfg;
	hm_error_t e;
	hm_error_clear(&e);
	hpt_config_default(&cfg);
	assert_int_equal(hpt_create(18, &cfg, &h, &e), 0);
	assert_int_equal(hpt_slots(h), SLOTS);
	uint64_t cur = 0, first[WORDS], bits[WORDS];
	assert_int_equal(hpt_track_take_batch(h, &cur, first, bits, WORDS), 0);
	assert_int_equal(hpt_track_start(h, &e), 0);
	uint64_t rs = tu_seed("take_batch");
	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		uint64_t want[WORDS];
		memset(want, 0, sizeof(want));
		unsigned n = 1 + (unsigned)(tu_rand(&rs) % 3000);
		for (unsigned i = 0; i < n; i++) {
			uint64_t slot = tu_rand(&rs) % SLOTS;
			/* A write that changes nothing marks nothing: every
			 * value is new (k and i in V). */
			uint64_t v = ((uint64_t)k << 20 | i) << 7;
			assert_true(hpt_write_entry(h, slot, HPTE64_V_VALID | v, i));
			want[slot / 64] |= UINT64_C(1) << (slot % 64);
		}
		uint64_t seen[WORDS], last = 0;
		memset(seen, 0, sizeof(seen));
		size_t got, calls = 0;
		cur = 0;
		do {
			got = hpt_track_take_batch(h, &cur, first, bits, sizes[k]);
			assert_true(got <= sizes[k]);
			for (size_t i = 0; i < got; i++) {
				assert_int_equal(first[i] % 64, 0);
				assert_true(first[i] < SLOTS && bits[i] != 0);
				assert_true(calls + i == 0 || first[i] > last);
				last = first[i];
				seen[first[i] / 64] = bits[i];
			}
			calls += got;
		} while (got == sizes[k]);
		assert_memory_equal(seen, want, sizeof(want));
		/* Taken: a second sweep finds nothing. */
		cur = 0;
		assert_int_equal(hpt_track_take_batch(h, &cur, first, bits, sizes[k]), 0);
		assert_int_equal(hpt_track_pending(h), 0);
	}
	hpt_track_stop(h);
	cur = 0;
	assert_int_equal(hpt_track_take_batch(h, &cur, first, bits, WORDS), 0);
	hpt_destroy(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_basic),
		cmocka_unit_test(test_random_vs_reference),
		cmocka_unit_test(test_concurrent_no_loss),
		cmocka_unit_test(test_rings),
		cmocka_unit_test(test_take_batch),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
