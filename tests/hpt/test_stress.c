/* SPDX-License-Identifier: MIT */
/*
 * Concurrency stress: vCPU threads issue random hypercalls (enter, remove,
 * protect, bulk remove, clear ref/mod, and resizes) on a few hot PTEGs,
 * while a migration thread starts tracking under them, makes a full first
 * pass, then repeatedly drains changed slots into a copy. After the threads
 * stop and a final drain the copy must equal the table entry for entry, and
 * the digests must match: no torn entry, no lost change. Seed printed.
 */
#include "testutil.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hptmig/hpt.h"
#include "hpt/hpt_inspect.h"

#define MAX_SHIFT 19
#define MAX_SLOTS (UINT64_C(1) << (MAX_SHIFT - 4))

struct ctx {
	hpt_t *h;
	_Atomic int stop;
	uint64_t seed;
	bool resize;
	_Atomic uint64_t ops, resizes;
};

struct worker {
	struct ctx *c;
	int id;
};

/* The RPN every entry for V carries (H_PROTECT and H_CLEAR_* keep it). */
static uint64_t rpn_of(uint64_t v)
{
	uint64_t x = (v & HPTE64_V_AVPN) * UINT64_C(0x9E3779B97F4A7C15);
	return (x >> 40) & 0xffff;
}

/* A snapshot must be an entry some hypercall wrote: zero, or V with its R. */
static _Atomic uint64_t torn_reads;
static void check_snapshot(uint64_t v, uint64_t r)
{
	if (!(v & HPTE64_V_VALID)) {
		if (v != 0 || r != 0)
			atomic_fetch_add(&torn_reads, 1);
		return;
	}
	if (((r & HPTE64_R_RPN) >> 12) != rpn_of(v))
		atomic_fetch_add(&torn_reads, 1);
}

static void *vcpu(void *arg)
{
	struct worker *w = arg;
	struct ctx *c = w->c;
	uint64_t rs = c->seed * 31 + (uint64_t)w->id, n = 0;
	while (!atomic_load_explicit(&c->stop, memory_order_relaxed)) {
		unsigned shift = hpt_shift(c->h);
		/* 64 VSIDs x 64 pages: hashes below 64, so every thread fights
		 * over the same 64 primary (and 64 secondary) PTEGs. */
		uint64_t vsid = tu_rand(&rs) & 63, ea = (tu_rand(&rs) & 63) << 12;
		bool sec = tu_rand(&rs) & 1;
		uint64_t pteg = hpt_pteg_index(shift, HPT_SEG_256M, vsid, ea, 12, sec);
		uint64_t ptex = (pteg << 3) | (tu_rand(&rs) & 7);
		uint64_t v = hpt_mapping_v(HPT_SEG_256M, vsid, ea, false, sec);
		unsigned op = (unsigned)(tu_rand(&rs) % 100);
		if (op < 35) {
			/* R's RPN is a function of V (rpn_of): a reader can tell a
			 * torn (V, R) pair from a real one. */
			uint64_t r = (rpn_of(v) << 12) | HPTE64_R_M |
				     (tu_rand(&rs) & (HPTE64_R_R | HPTE64_R_C | 3));
			hpt_h_enter(c->h, tu_rand(&rs) & 1 ? H_EXACT : 0, ptex,
				    v | (tu_rand(&rs) & 3 ? 0 : HPTE64_V_BOLTED), r, NULL);
		} else if (op < 60) {
			uint64_t ov, orr;
			hpt_h_remove(c->h, tu_rand(&rs) & 1 ? H_AVPN : 0, ptex, v & ~0x7full, &ov, &orr);
		} else if (op < 75) {
			hpt_h_protect(c->h, tu_rand(&rs) & 0x3f07, ptex, 0);
		} else if (op < 85) {
			uint64_t a[8];
			for (int i = 0; i < 4; i++) {
				a[2 * i] = H_BULK_REMOVE_REQUEST | (((tu_rand(&rs) % 3)) << 56) |
					   ((ptex & ~7ull) + (tu_rand(&rs) & 7));
				a[2 * i + 1] = tu_rand(&rs) & 1 ? v & ~0x7full : HPTE64_V_BOLTED;
			}
			if (tu_rand(&rs) % 8 == 0)
				a[6] = H_BULK_REMOVE_END;
			hpt_h_bulk_remove(c->h, a);
		} else if (op < 92) {
			uint64_t old;
			hpt_h_clear_ref(c->h, 0, ptex, &old);
		} else if (op < 99) {
			uint64_t old;
			hpt_h_clear_mod(c->h, 0, ptex, &old);
		} else if (c->resize && w->id == 0 && tu_rand(&rs) % 40 == 0) {
			unsigned ns = shift == 18 ? 19 : 18;
			if (hpt_h_resize_prepare(c->h, 0, ns) == H_SUCCESS &&
			    hpt_h_resize_commit(c->h, 0, ns) == H_SUCCESS)
				atomic_fetch_add(&c->resizes, 1);
		} else {
			uint64_t out[8];
			hpt_h_read(c->h, H_READ_4, ptex, out);
		}
		n++;
	}
	atomic_fetch_add(&c->ops, n);
	return NULL;
}

/*
 * Bulk read through hpt_read_chunks (the first pass's reader), expanded
 * into hpt_read_entries' layout (n <= 256 slots, invalid ones zero); checks
 * the runs add up. Random join: the layout must not matter.
 */
static uint64_t read_chunks_into(hpt_t *h, uint64_t first, uint64_t n, uint8_t *buf, uint64_t *rs)
{
	uint8_t out[256 * 16 + 129 * 8];
	hpt_chunks_t info;
	bool join = tu_rand(rs) & 1;
	assert_true(n <= 256);
	uint64_t nv = hpt_read_chunks(h, first, n, out, join, &info);
	memset(buf, 0, n * 16);
	memcpy(buf, out, info.joined * 16); /* a joined head: slots first, first + 1, ... */
	size_t at = info.joined * 16;
	uint64_t count = info.joined;
	while (at < info.len) {
		uint64_t slot = hm_load_be32(out + at), len = hm_load_be16(out + at + 4);
		assert_true(slot >= first && len >= 1 && slot + len <= first + n);
		memcpy(buf + (slot - first) * 16, out + at + 8, len * 16);
		at += 8 + len * 16;
		count += len;
	}
	assert_true(at == info.len && count == nv);
	return nv;
}

/*
 * Drain changed slots into copy (2 words per slot, host order). A third of
 * the words go through each bulk reader (hpt_read_entries, hpt_read_chunks:
 * lock-free, validated by tracking), the rest entry by entry.
 */
static void drain(struct ctx *c, uint64_t *copy, uint64_t *seen_gen, uint64_t *rs)
{
	uint64_t g = hpt_generation(c->h);
	if (g != *seen_gen) {
		/* The table was replaced: forget it, re-read everything. */
		memset(copy, 0, MAX_SLOTS * 16);
		*seen_gen = g;
		hpt_track_mark_all(c->h);
	}
	uint64_t cur = 0, first, bits;
	uint8_t buf[64 * 16];
	while (hpt_track_take(c->h, &cur, &first, &bits)) {
		unsigned how = (unsigned)(tu_rand(rs) % 3);
		if (how < 2) {
			uint64_t n = hpt_slots(c->h) > first ? hpt_slots(c->h) - first : 0;
			n = n > 64 ? 64 : n;
			memset(buf, 0, sizeof(buf));
			if (how == 0)
				hpt_read_entries(c->h, first, n, buf);
			else
				read_chunks_into(c->h, first, n, buf, rs);
			for (unsigned k = 0; k < 64; k++) {
				if (!(bits >> k & 1) || first + k >= MAX_SLOTS)
					continue;
				copy[2 * (first + k)] = hm_load_be64(buf + 16 * k);
				copy[2 * (first + k) + 1] = hm_load_be64(buf + 16 * k + 8);
			}
			for (unsigned k = 0; k < 64; k++)
				check_snapshot(hm_load_be64(buf + 16 * k), hm_load_be64(buf + 16 * k + 8));
		} else {
			while (bits) {
				uint64_t s = first + (uint64_t)__builtin_ctzll(bits);
				bits &= bits - 1;
				uint64_t v = 0, r = 0;
				if (s < MAX_SLOTS && hpt_read_entry(c->h, s, &v, &r)) {
					check_snapshot(v, r);
					copy[2 * s] = v;
					copy[2 * s + 1] = r;
				}
			}
		}
	}
}

/* ring: entries per vCPU change log (0: the default, which the drains keep
 * from filling; 8: full most of the time, so marks also take the bitmap
 * path and the rings wrap thousands of times). */
static void run_stress(bool resize, unsigned ring, const char *name)
{
	struct ctx c;
	memset(&c, 0, sizeof(c));
	c.seed = tu_seed(name);
	c.resize = resize;
	uint64_t rs = c.seed;
	hm_error_t e;
	hm_error_clear(&e);
	hpt_config_t cfg;
	hpt_config_default(&cfg);
	if (ring)
		cfg.track_ring_entries = ring;
	assert_int_equal(hpt_create(18, &cfg, &c.h, &e), 0);
	uint64_t ov0 = hpt_track_overflows(c.h);
	enum { NT = 4 };
	pthread_t th[NT];
	struct worker w[NT];
	for (int i = 0; i < NT; i++) {
		w[i].c = &c;
		w[i].id = i;
		assert_int_equal(pthread_create(&th[i], NULL, vcpu, &w[i]), 0);
	}
	hm_sleep_ns(50 * 1000 * 1000); /* let the guest run before tracking */
	uint64_t *copy = calloc(MAX_SLOTS * 2, sizeof(uint64_t));
	assert_non_null(copy);
	/* Start tracking under running vCPUs, then a full first pass. */
	assert_int_equal(hpt_track_start(c.h, &e), 0);
	uint64_t seen_gen = hpt_generation(c.h);
	{
		uint64_t slots = hpt_slots(c.h);
		uint8_t buf[256 * 16];
		for (uint64_t s = 0; s < slots && s < MAX_SLOTS; s += 256) {
			uint64_t n = slots - s < 256 ? slots - s : 256;
			memset(buf, 0, sizeof(buf));
			if (tu_rand(&rs) & 1)
				hpt_read_entries(c.h, s, n, buf);
			else
				read_chunks_into(c.h, s, n, buf, &rs);
			for (uint64_t k = 0; k < n; k++) {
				check_snapshot(hm_load_be64(buf + 16 * k), hm_load_be64(buf + 16 * k + 8));
				copy[2 * (s + k)] = hm_load_be64(buf + 16 * k);
				copy[2 * (s + k) + 1] = hm_load_be64(buf + 16 * k + 8);
			}
		}
	}
	/* Short enough for the thread sanitizer's budget (~5 s for the file). */
	const uint64_t run_ns = UINT64_C(1200000000);
	uint64_t t_end = hm_now_ns() + run_ns, passes = 0;
	while (hm_now_ns() < t_end) {
		drain(&c, copy, &seen_gen, &rs);
		passes++;
	}
	atomic_store(&c.stop, 1);
	for (int i = 0; i < NT; i++)
		pthread_join(th[i], NULL);
	/* Final passes with the guest stopped: until nothing is pending and
	 * the generation is the one the copy belongs to. */
	for (int i = 0; i < 4; i++)
		drain(&c, copy, &seen_gen, &rs);
	assert_true(hpt_track_pending(c.h) == 0);
	assert_true(seen_gen == hpt_generation(c.h));

	uint64_t slots = hpt_slots(c.h), mism = 0, nvalid = 0;
	hm_sha256_t *sha;
	assert_int_equal(hm_sha256_new(&sha), 0);
	uint8_t b[24];
	hm_store_be32(b, hpt_shift(c.h));
	hm_sha256_update(sha, b, 4);
	for (uint64_t s = 0; s < slots; s++) {
		uint64_t v, r;
		assert_true(hpt_read_entry(c.h, s, &v, &r));
		if (v != copy[2 * s] || r != copy[2 * s + 1]) {
			if (mism++ < 5)
				print_error("slot %llu: table %#llx/%#llx copy %#llx/%#llx\n",
					    (unsigned long long)s, (unsigned long long)v,
					    (unsigned long long)r, (unsigned long long)copy[2 * s],
					    (unsigned long long)copy[2 * s + 1]);
		}
		if (copy[2 * s] & HPTE64_V_VALID) {
			nvalid++;
			hm_store_be64(b, s);
			hm_store_be64(b + 8, copy[2 * s]);
			hm_store_be64(b + 16, copy[2 * s + 1]);
			hm_sha256_update(sha, b, 24);
		}
	}
	uint8_t want[32], got[32];
	hm_sha256_final(sha, want);
	hm_sha256_free(sha);
	assert_int_equal(hpt_digest(c.h, got), 0);
	uint64_t ov = hpt_track_overflows(c.h) - ov0;
	printf("# %s: %llu hcalls, %llu resizes, %llu drain passes, %llu valid at end, "
	       "%llu marks past a full or shared ring\n",
	       name, (unsigned long long)atomic_load(&c.ops), (unsigned long long)atomic_load(&c.resizes),
	       (unsigned long long)passes, (unsigned long long)nvalid, (unsigned long long)ov);
	if (atomic_load(&torn_reads))
		fail_msg("seed %llu: %llu torn entries read", (unsigned long long)c.seed,
			 (unsigned long long)atomic_load(&torn_reads));
	if (mism)
		fail_msg("seed %llu: %llu slots differ", (unsigned long long)c.seed,
			 (unsigned long long)mism);
	assert_memory_equal(got, want, 32);
	assert_true(nvalid > 0);
	if (resize)
		assert_true(atomic_load(&c.resizes) > 0);
	if (ring)
		assert_true(ov > 0); /* the bitmap path ran under the same checks */
	hpt_track_stop(c.h);
	hpt_destroy(c.h);
	free(copy);
}

static void test_stress_hcalls(void **state)
{
	(void)state;
	run_stress(false, 0, "stress_hcalls");
}

static void test_stress_small_rings(void **state)
{
	(void)state;
	run_stress(true, 8, "stress_small_rings");
}

static void test_stress_with_resize(void **state)
{
	(void)state;
	run_stress(true, 0, "stress_with_resize");
}

/* Resizes back and forth while another thread digests, computes the
 * block root (with the digest from the same walk) and counts: every answer
 * must be that of one whole table (the walk restarts when the table is
 * replaced), never a mix. */
struct rz {
	hpt_t *h;
	_Atomic int stop;
	_Atomic uint64_t commits;
};

static void *resizer(void *arg)
{
	struct rz *z = arg;
	while (!atomic_load(&z->stop)) {
		unsigned ns = hpt_shift(z->h) == 18 ? 19 : 18;
		if (hpt_h_resize_prepare(z->h, 0, ns) == H_SUCCESS &&
		    hpt_h_resize_commit(z->h, 0, ns) == H_SUCCESS)
			atomic_fetch_add(&z->commits, 1);
	}
	return NULL;
}

static void test_digest_during_resize(void **state)
{
	(void)state;
	uint64_t rs = tu_seed("digest_during_resize");
	struct rz z;
	memset(&z, 0, sizeof(z));
	assert_int_equal(hpt_create(18, NULL, &z.h, NULL), 0);
	uint64_t n = 0;
	for (int i = 0; i < 600; i++) {
		uint64_t vsid = tu_rand(&rs) & 0xFFFFFFF, ea = tu_rand(&rs) & 0x0FFFF000;
		uint64_t pteg = hpt_pteg_index(18, HPT_SEG_256M, vsid, ea, 12, false);
		uint64_t v = hpt_mapping_v(HPT_SEG_256M, vsid, ea, false, false) | HPTE64_V_BOLTED;
		if (hpt_h_enter(z.h, H_EXACT, (pteg << 3) | (tu_rand(&rs) & 7), v, (vsid & 0xffff) << 12 | 0x10,
				NULL) == H_SUCCESS)
			n++;
	}
	/* The two possible tables: shift 18 as filled, and its rehash at 19. */
	uint8_t d[2][32], rt[2][32], got[32], gotr[32];
	assert_int_equal(hpt_digest(z.h, d[0]), 0);
	assert_int_equal(hpt_root(z.h, HPT_READ_LOCKED, rt[0]), 0);
	assert_int_equal(hpt_h_resize_prepare(z.h, 0, 19), H_SUCCESS);
	assert_int_equal(hpt_h_resize_commit(z.h, 0, 19), H_SUCCESS);
	assert_int_equal(hpt_digest(z.h, d[1]), 0);
	assert_int_equal(hpt_root(z.h, HPT_READ_LOCKED, rt[1]), 0);
	assert_memory_not_equal(d[0], d[1], 32);
	assert_memory_not_equal(rt[0], rt[1], 32);
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, resizer, &z), 0);
	uint64_t t_end = hm_now_ns() + UINT64_C(600000000), walks = 0;
	while (hm_now_ns() < t_end) {
		uint64_t nv, nb;
		assert_int_equal(hpt_digest(z.h, got), 0);
		assert_true(memcmp(got, d[0], 32) == 0 || memcmp(got, d[1], 32) == 0);
		hpt_count(z.h, &nv, &nb);
		assert_true(nv == n && nb == n);
		assert_int_equal(hpt_root_summary(z.h, HPT_READ_LOCKED, &nv, &nb, got, gotr), 0);
		int k = memcmp(gotr, rt[0], 32) == 0 ? 0 : 1;
		assert_memory_equal(gotr, rt[k], 32);
		assert_memory_equal(got, d[k], 32); /* digest and root of the same table */
		assert_true(nv == n && nb == n);
		walks++;
	}
	atomic_store(&z.stop, 1);
	pthread_join(th, NULL);
	printf("# digest_during_resize: %llu walks, %llu commits, %llu entries\n",
	       (unsigned long long)walks, (unsigned long long)atomic_load(&z.commits),
	       (unsigned long long)n);
	assert_true(atomic_load(&z.commits) > 0);
	hpt_destroy(z.h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stress_hcalls),
		cmocka_unit_test(test_stress_with_resize),
		cmocka_unit_test(test_stress_small_rings),
		cmocka_unit_test(test_digest_during_resize),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
