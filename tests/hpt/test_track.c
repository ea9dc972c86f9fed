/* SPDX-License-Identifier: MIT */
/*
 * Tests of the change-tracking bitmap itself (src/hpt/track.c, through its
 * private interface): single-threaded semantics against a reference, and a
 * concurrency test where writers set bits while the taker takes them; after
 * the writers stop and a final drain, the taker has seen the last change of
 * every bit (none lost). The table-level tracking tests are in test_table.c
 * and test_stress.c.
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_basic),
		cmocka_unit_test(test_random_vs_reference),
		cmocka_unit_test(test_concurrent_no_loss),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
