/* SPDX-License-Identifier: MIT */
/*
 * Tests of the two-level atomic bitmap: single-threaded semantics against a
 * reference, and a concurrency test where writers set bits while the reader
 * takes them; after the writers stop and a final drain, the reader has seen
 * the last change of every bit (none lost).
 */
#include "testutil.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static void test_basic(void **state)
{
	(void)state;
	hm_bitmap_t *b;
	uint64_t cursor = 0, wi, bits;
	assert_int_equal(hm_bitmap_create(0, &b), -22);
	assert_int_equal(hm_bitmap_create(1000, &b), 0);
	assert_int_equal(hm_bitmap_words(b), 16);
	assert_false(hm_bitmap_take(b, &cursor, &wi, &bits));
	assert_int_equal(cursor, 16);
	assert_true(hm_bitmap_set(b, 0));
	assert_false(hm_bitmap_set(b, 0));
	assert_true(hm_bitmap_set(b, 999));
	assert_true(hm_bitmap_set(b, 130));
	assert_int_equal(hm_bitmap_count(b), 3);
	cursor = 0;
	assert_true(hm_bitmap_take(b, &cursor, &wi, &bits));
	assert_int_equal(wi, 0);
	assert_true(bits == 1);
	assert_true(hm_bitmap_take(b, &cursor, &wi, &bits));
	assert_int_equal(wi, 2);
	assert_true(bits == 4);
	assert_true(hm_bitmap_take(b, &cursor, &wi, &bits));
	assert_int_equal(wi, 15);
	assert_true(bits == (UINT64_C(1) << (999 - 960)));
	assert_false(hm_bitmap_take(b, &cursor, &wi, &bits));
	assert_int_equal(hm_bitmap_count(b), 0);
	/* A bit set behind the cursor survives for the next pass. */
	assert_true(hm_bitmap_set(b, 70));
	assert_true(hm_bitmap_set(b, 5));
	cursor = 1;
	assert_true(hm_bitmap_take(b, &cursor, &wi, &bits));
	assert_int_equal(wi, 1);
	assert_false(hm_bitmap_take(b, &cursor, &wi, &bits));
	cursor = 0;
	assert_true(hm_bitmap_take(b, &cursor, &wi, &bits));
	assert_int_equal(wi, 0);
	assert_true(bits == 32);
	hm_bitmap_set_range(b, 60, 200);
	assert_int_equal(hm_bitmap_count(b), 200);
	for (uint64_t i = 0; i < 1000; i++)
		assert_int_equal(hm_bitmap_test(b, i), i >= 60 && i < 260);
	hm_bitmap_clear_all(b);
	assert_int_equal(hm_bitmap_count(b), 0);
	cursor = 0;
	assert_false(hm_bitmap_take(b, &cursor, &wi, &bits));
	hm_bitmap_set_range(b, 0, 5000); /* clamps at nbits */
	assert_int_equal(hm_bitmap_count(b), 1000);
	hm_bitmap_destroy(b);
}

static void test_random_vs_reference(void **state)
{
	(void)state;
	uint64_t seed = tu_seed("bitmap reference");
	const uint64_t n = 200000;
	hm_bitmap_t *b;
	uint8_t *ref = calloc(n, 1);
	assert_non_null(ref);
	assert_int_equal(hm_bitmap_create(n, &b), 0);
	for (int round = 0; round < 20; round++) {
		uint64_t k = tu_rand(&seed) % 5000;
		for (uint64_t i = 0; i < k; i++) {
			uint64_t bit = tu_rand(&seed) % n;
			assert_int_equal(hm_bitmap_set(b, bit), !ref[bit]);
			ref[bit] = 1;
		}
		uint64_t cursor = 0, wi, bits, taken = 0, expect = 0;
		for (uint64_t i = 0; i < n; i++)
			expect += ref[i];
		assert_int_equal(hm_bitmap_count(b), expect);
		while (hm_bitmap_take(b, &cursor, &wi, &bits)) {
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
	hm_bitmap_destroy(b);
	free(ref);
}

/* Concurrency: writers record how many times they set each bit's "version";
 * the reader records the versions it saw. Afterwards, every bit a writer set
 * after the reader last took it must still be set. */
#define NBITS 65536
struct conc {
	hm_bitmap_t *b;
	_Atomic uint32_t gen[NBITS];   /* writer bumps, then sets the bit */
	uint32_t seen[NBITS];          /* reader copies gen when it takes the bit */
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
			hm_bitmap_set(c->b, bit);
		}
	}
	return NULL;
}

static void drain(struct conc *c)
{
	uint64_t cursor = 0, wi, bits;
	while (hm_bitmap_take(c->b, &cursor, &wi, &bits)) {
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
	uint64_t seed = tu_seed("bitmap concurrency");
	assert_int_equal(hm_bitmap_create(NBITS, &c->b), 0);
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
	assert_int_equal(hm_bitmap_count(c->b), 0);
	hm_bitmap_destroy(c->b);
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
