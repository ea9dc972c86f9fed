/* SPDX-License-Identifier: MIT */
/*
 * The block digests and root of wire-format.md §5 (hptmig/verify v2): a
 * known-answer test whose SHA-256 inputs are spelled out byte by byte, a
 * reference computed here entry by entry after random changes and resizes
 * (every read mode), one changed bit anywhere changes the root, empty
 * blocks, the block count and the "no HPT" root.
 */
#include "testutil.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "hptmig/hpt.h"
#include "hpt/hpt_inspect.h"

static const uint8_t zero32[32];

static void test_nblocks(void **state)
{
	(void)state;
	assert_true(HPT_VERIFY_BLOCK_SLOTS == 4096);
	assert_true(hpt_verify_nblocks(18) == 4);       /* 16384 slots */
	assert_true(hpt_verify_nblocks(24) == 256);
	assert_true(hpt_verify_nblocks(36) == UINT64_C(1) << 20);
	assert_true(hpt_verify_nblocks(46) == UINT64_C(1) << 30);
	assert_true(hpt_verify_nblocks(10) == 1);       /* max(1, ...) */
	assert_true(hpt_verify_nblocks(47) == 0);
	assert_true(hpt_verify_nblocks(HPT_NO_HPT) == 0);
}

/*
 * Known answer, shift 18 (4 blocks): entries at slots 0, 4097 (0x40
 * written raw, not digested), 16383, and an invalid one with non-zero
 * words at 7. Block 2 is empty: its digest is 32 zero bytes.
 */
static void test_root_kat(void **state)
{
	(void)state;
	hpt_t *h;
	assert_int_equal(hpt_create(18, NULL, &h, NULL), 0);
	assert_true(hpt_write_entry(h, 16383, 0x4000000000001235ull, 0x8000000000002190ull));
	assert_true(hpt_write_entry(h, 0, 0x0000000000000081ull, 0x0000000000001010ull));
	assert_true(hpt_write_entry(h, 4097, 0x00000000deadbe11ull | 0x40, 0x0123456789abcdefull));
	assert_true(hpt_write_entry(h, 7, 0x0000000000000080ull, 0x1111ull));
	static const uint8_t b0[] = {
		0, 0, 0, 18, 0, 0, 0, 0, 0, 0, 0, 0, /* shift, block 0 */
		0, 0, 0, 0, 0, 0, 0, 0,
		0, 0, 0, 0, 0, 0, 0x00, 0x81,
		0, 0, 0, 0, 0, 0, 0x10, 0x10,
	};
	static const uint8_t b1[] = {
		0, 0, 0, 18, 0, 0, 0, 0, 0, 0, 0, 1, /* shift, block 1 */
		0, 0, 0, 0, 0, 0, 0x10, 0x01,
		0, 0, 0, 0, 0xde, 0xad, 0xbe, 0x11,
		0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef,
	};
	static const uint8_t b3[] = {
		0, 0, 0, 18, 0, 0, 0, 0, 0, 0, 0, 3, /* shift, block 3 */
		0, 0, 0, 0, 0, 0, 0x3f, 0xff,
		0x40, 0, 0, 0, 0, 0, 0x12, 0x35,
		0x80, 0, 0, 0, 0, 0, 0x21, 0x90,
	};
	uint8_t in[12 + 4 * 32], want[32], got[32], d[4][32];
	memcpy(in, (const uint8_t[]){0, 0, 0, 18, 0, 0, 0, 0, 0, 0, 0, 4}, 12);
	hm_sha256(b0, sizeof(b0), in + 12);
	hm_sha256(b1, sizeof(b1), in + 12 + 32);
	memset(in + 12 + 64, 0, 32);
	hm_sha256(b3, sizeof(b3), in + 12 + 96);
	hm_sha256(in, sizeof(in), want);
	for (int mode = HPT_READ_LOCKED; mode <= HPT_READ_QUIESCENT; mode++) {
		for (uint64_t b = 0; b < 4; b++) {
			assert_int_equal(hpt_block_digest(h, (hpt_read_mode_t)mode, b, d[b]), 0);
			assert_memory_equal(d[b], in + 12 + 32 * b, 32);
		}
		assert_memory_equal(d[2], zero32, 32);
		assert_int_equal(hpt_root(h, (hpt_read_mode_t)mode, got), 0);
		assert_memory_equal(got, want, 32);
	}
	assert_int_equal(hpt_verify_root(18, 4, (const uint8_t(*)[32])d, got), 0);
	assert_memory_equal(got, want, 32);
	uint64_t nv = 0, nbolt = 0;
	uint8_t dg[32], dg_want[32];
	assert_int_equal(hpt_root_summary(h, HPT_READ_QUIESCENT, &nv, &nbolt, dg, got), 0);
	assert_true(nv == 3 && nbolt == 2);
	assert_memory_equal(got, want, 32);
	assert_int_equal(hpt_digest(h, dg_want), 0);
	assert_memory_equal(dg, dg_want, 32);

	/* Out of range and unknown mode. */
	assert_int_equal(hpt_block_digest(h, HPT_READ_LOCKED, 4, got), HM_E_RANGE);
	assert_int_equal(hpt_block_digest(h, (hpt_read_mode_t)7, 0, got), -EINVAL);
	assert_int_equal(hpt_root(h, (hpt_read_mode_t)7, got), -EINVAL);

	/* An empty table: every block digest is zero, the root is over zeros. */
	assert_int_equal(hpt_reset(h, 18, NULL), 0);
	memset(in + 12, 0, 4 * 32);
	hm_sha256(in, sizeof(in), want);
	assert_int_equal(hpt_root(h, HPT_READ_LOCKED, got), 0);
	assert_memory_equal(got, want, 32);
	hpt_destroy(h);
}

static void test_root_none(void **state)
{
	(void)state;
	static const uint8_t none[32] = {
		0xad, 0x95, 0x13, 0x1b, 0xc0, 0xb7, 0x99, 0xc0, 0xb1, 0xaf, 0x47,
		0x7f, 0xb1, 0x4f, 0xcf, 0x26, 0xa6, 0xa9, 0xf7, 0x60, 0x79, 0xe4,
		0x8b, 0xf0, 0x90, 0xac, 0xb7, 0xe8, 0x36, 0x7b, 0xfd, 0x0e};
	static const uint8_t ff[4] = {0xff, 0xff, 0xff, 0xff};
	uint8_t got[32], want[32];
	hm_sha256(ff, 4, want);
	assert_memory_equal(want, none, 32);
	hpt_root_none(got);
	assert_memory_equal(got, none, 32);
}

/* Reference root: every slot read under its lock, one by one, block by block. */
static void reference_root(hpt_t *h, uint8_t want[32], uint8_t (*d)[32])
{
	unsigned shift = hpt_shift(h);
	uint64_t slots = hpt_slots(h), nb = slots / 4096;
	hm_sha256_t *root, *blk = NULL;
	uint8_t b[24];
	assert_int_equal(hm_sha256_new(&root), 0);
	hm_store_be32(b, shift);
	hm_store_be64(b + 4, nb);
	hm_sha256_update(root, b, 12);
	for (uint64_t k = 0; k < nb; k++) {
		for (uint64_t s = k * 4096; s < (k + 1) * 4096; s++) {
			uint64_t v, r;
			assert_true(hpt_read_entry(h, s, &v, &r));
			if (!(v & HPTE64_V_VALID))
				continue;
			if (!blk) {
				assert_int_equal(hm_sha256_new(&blk), 0);
				hm_store_be32(b, shift);
				hm_store_be64(b + 4, k);
				hm_sha256_update(blk, b, 12);
			}
			hm_store_be64(b, s);
			hm_store_be64(b + 8, v);
			hm_store_be64(b + 16, r);
			hm_sha256_update(blk, b, 24);
		}
		uint8_t dk[32] = {0};
		if (blk)
			hm_sha256_final(blk, dk);
		hm_sha256_free(blk);
		blk = NULL;
		hm_sha256_update(root, dk, 32);
		if (d)
			memcpy(d[k], dk, 32);
	}
	hm_sha256_final(root, want);
	hm_sha256_free(root);
}

/* One round of random changes: single and bulk writes, clears, hcalls. */
static void random_ops(hpt_t *h, uint64_t *rs, int ops)
{
	uint8_t buf[64 * HPTE64_SIZE];
	uint64_t slots = hpt_slots(h);
	for (int op = 0; op < ops; op++) {
		uint64_t s = tu_rand(rs) % slots, n = 1 + tu_rand(rs) % 64;
		switch (tu_rand(rs) % 5) {
		case 0:
			hpt_write_entry(h, s, tu_rand(rs), tu_rand(rs));
			break;
		case 1:
			for (uint64_t i = 0; i < n; i++) {
				uint64_t x = tu_rand(rs), y = tu_rand(rs);
				if (x % 3 == 0)
					x = y = 0;
				hm_store_be64(buf + i * HPTE64_SIZE, x | (i & 1));
				hm_store_be64(buf + i * HPTE64_SIZE + 8, y);
			}
			hpt_write_entries(h, s, n, buf);
			break;
		case 2:
			hpt_clear_entries(h, s, n);
			break;
		case 3:
			hpt_h_remove(h, 0, s, 0, NULL, NULL);
			break;
		default:
			hpt_write_entry(h, s, tu_rand(rs) | HPTE64_V_VALID, tu_rand(rs));
			break;
		}
	}
}

/*
 * After every round of random changes (and resets to other sizes) the root
 * in every read mode, each block digest and the root over them equal the
 * reference built here.
 */
static void test_root_random(void **state)
{
	(void)state;
	uint64_t rs = tu_seed("root_random");
	hpt_t *h;
	assert_int_equal(hpt_create(19, NULL, &h, NULL), 0);
	for (int round = 0; round < 12; round++) {
		if (round == 4)
			assert_int_equal(hpt_reset(h, 18, NULL), 0);
		if (round == 8)
			assert_int_equal(hpt_reset(h, 20, NULL), 0);
		if (round % 3 == 1)
			assert_int_equal(hpt_track_start(h, NULL), 0);
		random_ops(h, &rs, 1500);
		uint64_t nb = hpt_verify_nblocks(hpt_shift(h));
		uint8_t (*d)[32] = malloc(nb * 32), (*g)[32] = malloc(nb * 32);
		assert_non_null(d);
		assert_non_null(g);
		uint8_t want[32], got[32];
		reference_root(h, want, d);
		for (int mode = HPT_READ_LOCKED; mode <= HPT_READ_QUIESCENT; mode++) {
			assert_int_equal(hpt_root(h, (hpt_read_mode_t)mode, got), 0);
			assert_memory_equal(got, want, 32);
			for (uint64_t b = 0; b < nb; b++)
				assert_int_equal(hpt_block_digest(h, (hpt_read_mode_t)mode, b, g[b]), 0);
			assert_memory_equal(g, d, nb * 32);
		}
		assert_int_equal(hpt_verify_root(hpt_shift(h), nb, (const uint8_t(*)[32])g, got), 0);
		assert_memory_equal(got, want, 32);
		uint64_t nv, nbolt, gv, gb;
		uint8_t dg[32], dg_want[32];
		hpt_count(h, &nv, &nbolt);
		assert_int_equal(hpt_digest(h, dg_want), 0);
		assert_int_equal(hpt_root_summary(h, HPT_READ_TRACKED, &gv, &gb, dg, got), 0);
		assert_true(gv == nv && gb == nbolt);
		assert_memory_equal(got, want, 32);
		assert_memory_equal(dg, dg_want, 32);
		if (round % 3 == 2)
			hpt_track_stop(h);
		free(d);
		free(g);
	}
	hpt_destroy(h);
}

static void root_of(hpt_t *h, uint8_t out[32])
{
	assert_int_equal(hpt_root(h, HPT_READ_LOCKED, out), 0);
}

/*
 * One changed bit anywhere changes the root: every bit of V (but the
 * lock bit 0x40, which is never digested and never stored) and of R of
 * random valid entries, the valid bit (an entry present on one side only),
 * and an entry added in an empty block. Restoring gives the old root back.
 */
static void test_root_one_bit(void **state)
{
	(void)state;
	uint64_t rs = tu_seed("root_one_bit");
	hpt_t *h;
	assert_int_equal(hpt_create(18, NULL, &h, NULL), 0);
	/* Blocks 0..2 populated, block 3 left empty. */
	for (int i = 0; i < 3000; i++) {
		uint64_t s = tu_rand(&rs) % (3 * 4096);
		hpt_write_entry(h, s, tu_rand(&rs) | HPTE64_V_VALID, tu_rand(&rs));
	}
	uint8_t base[32], got[32];
	root_of(h, base);
	for (int t = 0; t < 8; t++) {
		uint64_t s = hpt_find_valid(h, tu_rand(&rs) % (3 * 4096), 3 * 4096);
		if (s == 3 * 4096)
			s = hpt_find_valid(h, 0, 3 * 4096);
		uint64_t v, r;
		assert_true(hpt_read_entry(h, s, &v, &r));
		for (unsigned bit = 0; bit < 128; bit++) {
			if (bit == 6) /* 0x40: the lock bit, cleared on every store */
				continue;
			uint64_t v2 = bit < 64 ? v ^ (UINT64_C(1) << bit) : v;
			uint64_t r2 = bit >= 64 ? r ^ (UINT64_C(1) << (bit - 64)) : r;
			assert_true(hpt_write_entry(h, s, v2, r2));
			root_of(h, got);
			if (memcmp(got, base, 32) == 0)
				fail_msg("slot %llu bit %u: root unchanged",
					 (unsigned long long)s, bit);
		}
		assert_true(hpt_write_entry(h, s, v, r));
		root_of(h, got);
		assert_memory_equal(got, base, 32);
	}
	/* An entry on one side only, in the empty block. */
	assert_true(hpt_write_entry(h, 3 * 4096 + 17, 0x81, 0x1000));
	root_of(h, got);
	assert_memory_not_equal(got, base, 32);
	assert_true(hpt_write_entry(h, 3 * 4096 + 17, 0, 0));
	root_of(h, got);
	assert_memory_equal(got, base, 32);
	hpt_destroy(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_nblocks),
		cmocka_unit_test(test_root_kat),
		cmocka_unit_test(test_root_none),
		cmocka_unit_test(test_root_random),
		cmocka_unit_test(test_root_one_bit),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
