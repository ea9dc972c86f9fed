/* SPDX-License-Identifier: MIT */
/*
 * The verification root kept current (src/hpt/blocks.c) must equal a full
 * recomputation (hpt_root_summary) whenever it is asked with nothing
 * writing: after random hypercalls, resizes, passes that take marks,
 * refreshes with any budget, on the source's tracker; after random loads,
 * clears and resets through a loader's hpt_blocks_t. The last case runs
 * the same with vCPU threads changing the table while the migration
 * thread takes and hashes (label concurrency, run under TSan). Seeds
 * printed.
 */
#include "testutil.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hptmig/hpt.h"

/* One random hypercall on table h (mappings spread over every block). */
static void random_hcall(hpt_t *h, uint64_t *rs)
{
	unsigned shift = hpt_shift(h);
	uint64_t vsid = tu_rand(rs) & 0xfffff, ea = (tu_rand(rs) & 0xffff) << 12;
	bool sec = tu_rand(rs) & 1;
	uint64_t pteg = hpt_pteg_index(shift, HPT_SEG_256M, vsid, ea, 12, sec);
	uint64_t ptex = (pteg << 3) | (tu_rand(rs) & 7);
	unsigned op = (unsigned)(tu_rand(rs) % 100);
	if (op < 50) {
		uint64_t v = hpt_mapping_v(HPT_SEG_256M, vsid, ea, false, sec);
		uint64_t r = ((tu_rand(rs) & 0xffff) << 12) | HPTE64_R_M |
			     (tu_rand(rs) & (HPTE64_R_R | HPTE64_R_C | 3));
		hpt_h_enter(h, 0, ptex, v | (tu_rand(rs) & 63 ? 0 : HPTE64_V_BOLTED), r, NULL);
	} else if (op < 75) {
		uint64_t ov, orr;
		hpt_h_remove(h, 0, ptex, 0, &ov, &orr);
	} else if (op < 90) {
		hpt_h_protect(h, tu_rand(rs) & 0x3f07, ptex, 0);
	} else {
		uint64_t old;
		hpt_h_clear_ref(h, 0, ptex, &old);
	}
}

/* A resize; shrinking may fail with two bolted entries on one slot
 * (H_PTEG_FULL: the old table stays), which is a case worth having too. */
static bool resize(hpt_t *h, unsigned shift)
{
	assert_int_equal(hpt_h_resize_prepare(h, 0, shift), H_SUCCESS);
	long rc = hpt_h_resize_commit(h, 0, shift);
	assert_true(rc == H_SUCCESS || rc == H_PTEG_FULL);
	return rc == H_SUCCESS;
}

/* Take every mark (a pass), or only some of the words (a pass cut short
 * by its budget: the rest waits for the next one). */
static uint64_t take_pass(hpt_t *h, uint64_t *rs, bool all)
{
	uint64_t cur = 0, first, bits, n = 0;
	while (hpt_track_take(h, &cur, &first, &bits)) {
		n++;
		if (!all && tu_rand(rs) % 4 == 0)
			break;
	}
	return n;
}

/* The kept root (info) against a full recomputation and a count. */
static void check_root(hpt_t *h, const hpt_root_info_t *info, const char *when, unsigned round)
{
	uint8_t full[HM_SHA256_LEN];
	uint64_t valid = 0, v2 = 0, bolted = 0;
	assert_int_equal(hpt_root_summary(h, HPT_READ_QUIESCENT, &valid, NULL, NULL, full), 0);
	hpt_count(h, &v2, &bolted);
	if (memcmp(full, info->root, HM_SHA256_LEN) != 0) {
		char a[65], b[65];
		hm_hex(full, HM_SHA256_LEN, a);
		hm_hex(info->root, HM_SHA256_LEN, b);
		fail_msg("%s, round %u: kept root %s, full recomputation %s", when, round, b, a);
	}
	assert_int_equal(info->shift, hpt_shift(h));
	assert_int_equal(info->nblocks, hpt_verify_nblocks(hpt_shift(h)));
	assert_int_equal(info->valid, valid);
	assert_int_equal(info->valid, v2);
	assert_int_equal(info->bolted, bolted);
}

/* Source: random hcalls, resizes, passes, refreshes; the root at random
 * points (guest "stopped": this thread is the only writer). */
static void test_track_root_random(void **state)
{
	(void)state;
	uint64_t rs = tu_seed("test_track_root_random");
	hpt_config_t cfg;
	hpt_config_default(&cfg);
	hpt_t *h;
	hm_error_t err;
	assert_int_equal(hpt_create(20, &cfg, &h, &err), 0);
	assert_int_equal(hpt_track_start(h, &err), 0);
	hpt_root_info_t info;
	unsigned checks = 0, partial = 0, resizes = 0;
	for (unsigned round = 0; round < 300; round++) {
		unsigned n = (unsigned)(tu_rand(&rs) % 400);
		for (unsigned i = 0; i < n; i++)
			random_hcall(h, &rs);
		unsigned what = (unsigned)(tu_rand(&rs) % 10);
		if (what < 4) {
			take_pass(h, &rs, what < 2);
		} else if (what < 7) {
			uint64_t left = 0;
			/* budget 0: one batch of blocks, so some stay changed */
			assert_int_equal(hpt_track_root_refresh(h, HPT_READ_LOCKED,
								tu_rand(&rs) & 1 ? 0 : UINT64_MAX,
								&left),
					 0);
			partial += left != 0;
		} else if (what == 7 && tu_rand(&rs) % 4 == 0) {
			resizes += resize(h, hpt_shift(h) == 20 ? 21 : 20);
		}
		if (tu_rand(&rs) % 5 == 0) {
			hpt_root_stats_t st;
			assert_int_equal(hpt_track_root_stats(h, &st), 0);
			assert_int_equal(hpt_track_root(h, round & 1 ? HPT_READ_QUIESCENT
								    : HPT_READ_LOCKED,
							&info),
					 0);
			assert_int_equal(info.rehashed, st.stop_blocks);
			check_root(h, &info, "tracker", round);
			checks++;
		}
	}
	/* After a full refresh and a pass nothing is left to hash but the
	 * blocks the pass marked. */
	take_pass(h, &rs, true);
	assert_int_equal(hpt_track_root_refresh(h, HPT_READ_LOCKED, UINT64_MAX, NULL), 0);
	assert_int_equal(hpt_track_root(h, HPT_READ_QUIESCENT, &info), 0);
	assert_int_equal(info.rehashed, 0);
	check_root(h, &info, "final", 0);
	printf("# %u checks, %u resizes, %u refreshes cut short\n", checks, resizes, partial);
	assert_true(checks > 20 && partial > 0 && resizes > 0);
	hpt_track_stop(h);
	hpt_root_info_t none;
	assert_int_equal(hpt_track_root(h, HPT_READ_QUIESCENT, &none), HM_E_STATE);
	hpt_destroy(h);
}

/* A change behind a cache's back (what a lost mark would look like) gives
 * a root that differs from the full one: the checks above can fail. And a
 * marked change re-hashes exactly its block. */
static void test_track_root_detects_unmarked(void **state)
{
	(void)state;
	hpt_config_t cfg;
	hpt_config_default(&cfg);
	hpt_t *h;
	hm_error_t err;
	uint64_t rs = 7;
	assert_int_equal(hpt_create(20, &cfg, &h, &err), 0);
	assert_int_equal(hpt_track_start(h, &err), 0);
	for (unsigned i = 0; i < 2000; i++)
		random_hcall(h, &rs);
	take_pass(h, &rs, true);
	hpt_root_info_t info;
	assert_int_equal(hpt_track_root(h, HPT_READ_QUIESCENT, &info), 0);
	check_root(h, &info, "before", 0);
	hpt_blocks_t *c;
	assert_int_equal(hpt_blocks_new(&c), 0);
	assert_int_equal(hpt_blocks_root(c, h, HPT_READ_QUIESCENT, &info), 0);
	check_root(h, &info, "standalone", 0);
	uint64_t slot = 4096 * 3 + 17;
	assert_true(hpt_write_entry(h, slot, HPTE64_V_VALID | (UINT64_C(5) << 7), HPTE64_R_M));
	/* not marked in c: its root is stale and must differ */
	hpt_root_info_t stale;
	assert_int_equal(hpt_blocks_root(c, h, HPT_READ_QUIESCENT, &stale), 0);
	assert_int_equal(stale.rehashed, 0);
	uint8_t full[HM_SHA256_LEN];
	assert_int_equal(hpt_root(h, HPT_READ_QUIESCENT, full), 0);
	assert_memory_not_equal(stale.root, full, HM_SHA256_LEN);
	/* marked: right again, one block hashed */
	hpt_blocks_mark(c, slot, 1);
	assert_int_equal(hpt_blocks_root(c, h, HPT_READ_QUIESCENT, &info), 0);
	assert_int_equal(info.rehashed, 1);
	check_root(h, &info, "marked", 0);
	/* the tracker saw the write (hpt_write_entry marks like an hcall) */
	assert_int_equal(hpt_track_root(h, HPT_READ_QUIESCENT, &info), 0);
	assert_int_equal(info.rehashed, 1);
	check_root(h, &info, "tracker after write", 0);
	hpt_blocks_free(c);
	hpt_destroy(h);
}

/* Destination: random chunk loads, clears and resets through a loader's
 * record (every write marked), refreshes with any budget. */
static void test_blocks_root_random(void **state)
{
	(void)state;
	uint64_t rs = tu_seed("test_blocks_root_random");
	hpt_config_t cfg;
	hpt_config_default(&cfg);
	hpt_t *h;
	hm_error_t err;
	assert_int_equal(hpt_create(20, &cfg, &h, &err), 0);
	hpt_blocks_t *c;
	assert_int_equal(hpt_blocks_new(&c), 0);
	uint8_t buf[300 * 16];
	hpt_root_info_t info;
	unsigned checks = 0;
	for (unsigned round = 0; round < 400; round++) {
		unsigned what = (unsigned)(tu_rand(&rs) % 20);
		uint64_t slots = hpt_slots(h), n = 1 + tu_rand(&rs) % 300;
		uint64_t first = tu_rand(&rs) % slots;
		if (first + n > slots)
			n = slots - first;
		if (what < 12) {
			for (uint64_t i = 0; i < n; i++) {
				uint64_t v = tu_rand(&rs) % 3
						     ? (tu_rand(&rs) & ~HPTE64_V_HVLOCK) | HPTE64_V_VALID
						     : 0;
				hm_store_be64(buf + 16 * i, v);
				hm_store_be64(buf + 16 * i + 8, v ? tu_rand(&rs) : 0);
			}
			hpt_write_entries(h, first, n, buf);
			hpt_blocks_mark(c, first, n);
		} else if (what < 15) {
			hpt_clear_entries(h, first, n);
			hpt_blocks_mark(c, first, n);
		} else if (what < 18) {
			uint64_t left;
			assert_int_equal(hpt_blocks_refresh(c, h, HPT_READ_QUIESCENT,
							    tu_rand(&rs) & 1 ? 0 : UINT64_MAX,
							    &left),
					 0);
		} else if (what == 18 && tu_rand(&rs) % 3 == 0) {
			assert_int_equal(hpt_reset(h, hpt_shift(h) == 20 ? 19 : 20, &err), 0);
		}
		if (tu_rand(&rs) % 6 == 0) {
			hpt_root_stats_t st;
			hpt_blocks_stats(c, h, &st);
			assert_int_equal(hpt_blocks_root(c, h, HPT_READ_QUIESCENT, &info), 0);
			assert_int_equal(info.rehashed, st.stop_blocks);
			check_root(h, &info, "loader", round);
			checks++;
		}
	}
	assert_true(checks > 30);
	hpt_blocks_free(c);
	hpt_destroy(h);
}

/* ---- with vCPUs running ---- */

struct run {
	hpt_t *h;
	bool no_resize; /* vCPU 0 resizes now and then unless set */
	_Atomic int stop;
	uint64_t seed;
	_Atomic uint64_t ops, resizes;
};

struct vcpu_arg {
	struct run *r;
	int id;
};

static void *vcpu(void *p)
{
	struct vcpu_arg *a = p;
	struct run *r = a->r;
	uint64_t rs = r->seed * 77 + (uint64_t)a->id, n = 0;
	while (!atomic_load_explicit(&r->stop, memory_order_relaxed)) {
		random_hcall(r->h, &rs);
		if (a->id == 0 && !r->no_resize && tu_rand(&rs) % 500 == 0) {
			unsigned ns = hpt_shift(r->h) == 20 ? 21 : 20;
			if (hpt_h_resize_prepare(r->h, 0, ns) == H_SUCCESS &&
			    hpt_h_resize_commit(r->h, 0, ns) == H_SUCCESS)
				atomic_fetch_add(&r->resizes, 1);
		}
		n++;
	}
	atomic_fetch_add(&r->ops, n);
	return NULL;
}

#define NVCPU 3

static void vcpus_start(struct run *r, pthread_t th[NVCPU], struct vcpu_arg va[NVCPU])
{
	atomic_store(&r->stop, 0);
	for (int i = 0; i < NVCPU; i++) {
		va[i] = (struct vcpu_arg){r, i};
		assert_int_equal(pthread_create(&th[i], NULL, vcpu, &va[i]), 0);
	}
}

static void vcpus_stop(struct run *r, pthread_t th[NVCPU])
{
	atomic_store(&r->stop, 1);
	for (int i = 0; i < NVCPU; i++)
		pthread_join(th[i], NULL);
}

static void test_track_root_concurrent(void **state)
{
	(void)state;
	struct run r = {0};
	r.seed = tu_seed("test_track_root_concurrent");
	uint64_t rs = r.seed;
	hpt_config_t cfg;
	hpt_config_default(&cfg);
	hm_error_t err;
	assert_int_equal(hpt_create(20, &cfg, &r.h, &err), 0);
	/* Start tracking with the guest already running, as a migration does. */
	for (unsigned cycle = 0; cycle < 6; cycle++) {
		pthread_t th[NVCPU];
		struct vcpu_arg va[NVCPU];
		vcpus_start(&r, th, va);
		if (cycle == 0)
			assert_int_equal(hpt_track_start(r.h, &err), 0);
		uint64_t t_end = hm_now_ns() + 300000000ull;
		while (hm_now_ns() < t_end) {
			unsigned what = (unsigned)(tu_rand(&rs) % 4);
			if (what < 2) {
				take_pass(r.h, &rs, what == 0);
			} else if (what == 2) {
				assert_int_equal(hpt_track_root_refresh(r.h, HPT_READ_LOCKED,
									1000000, NULL),
						 0);
			} else {
				hpt_root_stats_t st;
				assert_int_equal(hpt_track_root_stats(r.h, &st), 0);
			}
		}
		vcpus_stop(&r, th);
		/* "Stopped": a final pass (or not), then the root. */
		if (tu_rand(&rs) & 1)
			take_pass(r.h, &rs, true);
		hpt_root_info_t info;
		assert_int_equal(hpt_track_root(r.h, HPT_READ_QUIESCENT, &info), 0);
		check_root(r.h, &info, "concurrent", cycle);
	}
	printf("# %llu hypercalls, %llu resizes\n", (unsigned long long)atomic_load(&r.ops),
	       (unsigned long long)atomic_load(&r.resizes));
	assert_true(atomic_load(&r.ops) > 1000);
	hpt_track_stop(r.h);
	hpt_destroy(r.h);
}

/*
 * A root with many blocks to hash hashes them on two threads
 * (hpt_root_threads; 32 blocks or more): it must give what a serial root
 * and a full recomputation give, for the tracker (QUIESCENT and LOCKED),
 * with vCPU threads changing the table between the roots (and during a
 * LOCKED one: a snapshot, not checked, but run under TSan), and for a
 * loader's record. A 2^23-byte table has 128 blocks.
 */
static void test_root_parallel(void **state)
{
	(void)state;
	struct run r = {.no_resize = true}; /* the table stays at 128 blocks */
	r.seed = tu_seed("test_root_parallel");
	uint64_t rs = r.seed;
	hpt_config_t cfg;
	hpt_config_default(&cfg);
	hm_error_t err;
	assert_int_equal(hpt_create(23, &cfg, &r.h, &err), 0);
	assert_int_equal(hpt_verify_nblocks(23), 128);
	assert_int_equal(hpt_track_start(r.h, &err), 0);
	hpt_root_info_t info;
	unsigned par = 0, ser = 0;
	for (unsigned round = 0; round < 24; round++) {
		/* every sixth root after a full refresh and a few changes: the
		 * serial path (fewer than 32 blocks) */
		bool few = round % 6 == 5;
		if (few) {
			take_pass(r.h, &rs, true);
			assert_int_equal(hpt_track_root_refresh(r.h, HPT_READ_LOCKED, UINT64_MAX,
								NULL),
					 0);
		}
		unsigned n = few ? 5 : 3000;
		for (unsigned i = 0; i < n; i++)
			random_hcall(r.h, &rs);
		if (tu_rand(&rs) & 1)
			take_pass(r.h, &rs, tu_rand(&rs) & 1);
		if (tu_rand(&rs) % 3 == 0)
			assert_int_equal(hpt_track_root_refresh(r.h, HPT_READ_LOCKED, 0, NULL), 0);
		assert_int_equal(hpt_track_root(r.h, round & 1 ? HPT_READ_QUIESCENT
							       : HPT_READ_LOCKED,
						&info),
				 0);
		check_root(r.h, &info, "parallel", round);
		par += info.rehashed >= 32;
		ser += info.rehashed < 32;
	}
	/* vCPUs running between roots, and during LOCKED ones */
	for (unsigned cycle = 0; cycle < 4; cycle++) {
		pthread_t th[NVCPU];
		struct vcpu_arg va[NVCPU];
		vcpus_start(&r, th, va);
		uint64_t t_end = hm_now_ns() + 150000000ull;
		while (hm_now_ns() < t_end) {
			if (tu_rand(&rs) & 1)
				take_pass(r.h, &rs, tu_rand(&rs) & 1);
			else
				assert_int_equal(hpt_track_root(r.h, HPT_READ_LOCKED, &info), 0);
		}
		vcpus_stop(&r, th);
		if (tu_rand(&rs) & 1)
			take_pass(r.h, &rs, true);
		assert_int_equal(hpt_track_root(r.h, HPT_READ_QUIESCENT, &info), 0);
		check_root(r.h, &info, "parallel, after vCPUs", cycle);
		par += info.rehashed >= 32;
	}
	/* a loader's record */
	hpt_blocks_t *c;
	assert_int_equal(hpt_blocks_new(&c), 0);
	assert_int_equal(hpt_blocks_root(c, r.h, HPT_READ_QUIESCENT, &info), 0);
	assert_int_equal(info.rehashed, 128);
	check_root(r.h, &info, "loader, first", 0);
	uint8_t e[16];
	for (unsigned i = 0; i < 100; i++) {
		uint64_t slot = tu_rand(&rs) % hpt_slots(r.h);
		uint64_t v = tu_rand(&rs) & 1 ? (tu_rand(&rs) & ~HPTE64_V_HVLOCK) | HPTE64_V_VALID : 0;
		hm_store_be64(e, v);
		hm_store_be64(e + 8, v ? tu_rand(&rs) : 0);
		hpt_write_entries(r.h, slot, 1, e);
		hpt_blocks_mark(c, slot, 1);
	}
	assert_int_equal(hpt_blocks_root(c, r.h, HPT_READ_QUIESCENT, &info), 0);
	check_root(r.h, &info, "loader", 1);
	par += info.rehashed >= 32;
	printf("# %u roots with >= 32 blocks to hash, %u with fewer, %llu hypercalls; %u threads\n",
	       par, ser, (unsigned long long)atomic_load(&r.ops), hpt_root_threads());
	assert_true(par > 4 && ser > 0);
	hpt_blocks_free(c);
	hpt_track_stop(r.h);
	hpt_destroy(r.h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_track_root_random),
		cmocka_unit_test(test_track_root_detects_unmarked),
		cmocka_unit_test(test_blocks_root_random),
		cmocka_unit_test(test_track_root_concurrent),
		cmocka_unit_test(test_root_parallel),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
