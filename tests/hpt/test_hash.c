/* SPDX-License-Identifier: MIT */
/*
 * Hash helpers against hand-computed values (256M and 1T segments, 4K, 64K
 * and 16M pages), the page-size table both ways, the shift-for-RAM rule, and
 * the structural check: it accepts every entry H_ENTER places for a hashed
 * mapping (randomized, seed printed) and rejects a moved one.
 */
#include "testutil.h"

#include "hptmig/hpt.h"

static void test_hash_known(void **state)
{
	(void)state;
	/* 256M: vsid ^ ((ea & 0x0FFFFFFF) >> p) */
	assert_true(hpt_hash(HPT_SEG_256M, 0x123456, 0x0ABCD000, 12) == 0x129f9b);
	assert_true(hpt_hash(HPT_SEG_256M, 0x123456, 0x0ABCD000, 16) == 0x123eea);
	assert_true(hpt_hash(HPT_SEG_256M, 0x123456, 0x0A000000, 24) == 0x12345c);
	/* EA bits above the segment offset do not count. */
	assert_true(hpt_hash(HPT_SEG_256M, 0x123456, UINT64_C(0xF0000000ABCD000), 12) == 0x129f9b);
	/* 1T: vsid ^ (vsid << 25) ^ ((ea & 0xFFFFFFFFFF) >> p) */
	assert_true(hpt_hash(HPT_SEG_1T, 0x1234, UINT64_C(0x12345678000), 12) ==
		    UINT64_C(0x246a34444c));
	assert_true(hpt_hash(HPT_SEG_1T, 0x1234, UINT64_C(0x12345670000), 16) ==
		    UINT64_C(0x2468235753));
	assert_true(hpt_hash(HPT_SEG_1T, 0x1234, UINT64_C(0x12345000000), 24) ==
		    UINT64_C(0x2468003171));

	/* PTEG indexes: shift 18 has 2048 PTEGs (mask 0x7ff), 24 has 0x1ffff+1. */
	assert_true(hpt_pteg_index(18, HPT_SEG_256M, 0x123456, 0x0ABCD000, 12, false) == 0x79b);
	assert_true(hpt_pteg_index(18, HPT_SEG_256M, 0x123456, 0x0ABCD000, 12, true) == 0x64);
	assert_true(hpt_pteg_index(24, HPT_SEG_256M, 0x123456, 0x0ABCD000, 12, true) == 0x16064);
	assert_true(hpt_pteg_index(18, HPT_SEG_256M, 0x123456, 0x0ABCD000, 16, false) == 0x6ea);
	assert_true(hpt_pteg_index(24, HPT_SEG_256M, 0x123456, 0x0ABCD000, 16, true) == 0x1c115);
	assert_true(hpt_pteg_index(18, HPT_SEG_256M, 0x123456, 0x0A000000, 24, false) == 0x45c);
	assert_true(hpt_pteg_index(18, HPT_SEG_256M, 0x123456, 0x0A000000, 24, true) == 0x3a3);
	assert_true(hpt_pteg_index(18, HPT_SEG_1T, 0x1234, UINT64_C(0x12345678000), 12, false) == 0x44c);
	assert_true(hpt_pteg_index(24, HPT_SEG_1T, 0x1234, UINT64_C(0x12345678000), 12, true) == 0x1bbb3);
	assert_true(hpt_pteg_index(18, HPT_SEG_1T, 0x1234, UINT64_C(0x12345670000), 16, true) == 0xac);
	assert_true(hpt_pteg_index(24, HPT_SEG_1T, 0x1234, UINT64_C(0x12345000000), 24, false) == 0x3171);

	/* V words: AVPN = va >> 23 at bit 7, B at 62, L, H, valid. */
	assert_true(hpt_mapping_v(HPT_SEG_256M, 0x123456, 0x0ABCD000, false, false) ==
		    UINT64_C(0x123456a81));
	assert_true(hpt_mapping_v(HPT_SEG_256M, 0x123456, 0x0A000000, true, true) ==
		    UINT64_C(0x123456a07));
	assert_true(hpt_mapping_v(HPT_SEG_1T, 0x1234, UINT64_C(0x12345678000), false, false) ==
		    UINT64_C(0x4000001234234501));
}

static void test_page_sizes(void **state)
{
	(void)state;
	static const struct {
		unsigned b, a;
		uint64_t enc;
	} rows[] = {{12, 12, 0}, {16, 16, 0x1000}, {24, 24, 0}, {12, 16, 0x7000},
		    {12, 24, 0x38000}, {16, 24, 0x8000}, {34, 34, 0x3000}};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		bool large;
		uint64_t bits;
		unsigned b, a;
		assert_int_equal(hpt_page_encode(rows[i].b, rows[i].a, &large, &bits), 0);
		assert_true(bits == rows[i].enc);
		assert_int_equal(large, !(rows[i].b == 12 && rows[i].a == 12));
		/* Round trip with an RPN aligned to the actual page size. */
		uint64_t r = (UINT64_C(0x123) << rows[i].a) | bits | HPTE64_R_M;
		assert_int_equal(hpt_page_decode(large ? HPTE64_V_LARGE : 0, r, &b, &a), 0);
		assert_int_equal(b, rows[i].b);
		assert_int_equal(a, rows[i].a);
	}
	unsigned b, a;
	assert_int_equal(hpt_page_encode(16, 12, &(bool){0}, &(uint64_t){0}), -22);
	assert_int_equal(hpt_page_encode(34, 24, &(bool){0}, &(uint64_t){0}), -22);
	/* 16G: the encoding 0x3000 needs the RPN bits 16..33 clear. */
	assert_int_equal(hpt_page_decode(HPTE64_V_LARGE, 0x13000, &b, &a), -22);
	/* L = 1 with LP bits matching no row. */
	assert_int_equal(hpt_page_decode(HPTE64_V_LARGE, 0x2000, &b, &a), -22);
	assert_int_equal(hpt_page_decode(HPTE64_V_LARGE, 0x9000, &b, &a), -22);
	assert_int_equal(hpt_page_decode(HPTE64_V_LARGE, 0x101000 + 0x8000, &b, &a), -22);
	/* L = 0: 4K whatever R says. */
	assert_int_equal(hpt_page_decode(0, 0xF000, &b, &a), 0);
	assert_int_equal(a, 12);
}

static void test_shift_for_ram(void **state)
{
	(void)state;
	assert_int_equal(hpt_shift_for_ram(512ull << 20), 22);
	assert_int_equal(hpt_shift_for_ram(2ull << 30), 24);
	assert_int_equal(hpt_shift_for_ram(16ull << 30), 27);
	assert_int_equal(hpt_shift_for_ram(256ull << 30), 31);
	assert_int_equal(hpt_shift_for_ram(1ull << 40), 33);
	assert_int_equal(hpt_shift_for_ram((1ull << 40) + 1), 34); /* pow2ceil */
	assert_int_equal(hpt_shift_for_ram(3ull << 30), 25);
	assert_int_equal(hpt_shift_for_ram(0), 18);
	assert_int_equal(hpt_shift_for_ram(1), 18);
	assert_int_equal(hpt_shift_for_ram(32ull << 20), 18);
	assert_int_equal(hpt_shift_for_ram(UINT64_MAX), 46);
	assert_int_equal(hpt_shift_for_ram(1ull << 63), 46);
}

/* Random hashed mappings, entered at their hashed PTEG, pass the check;
 * moved to a PTEG differing in a determined bit, they fail. */
static void test_entry_check_random(void **state)
{
	(void)state;
	uint64_t seed = tu_seed("entry_check_random"), rs = seed;
	static const unsigned sizes[][2] = {{12, 12}, {16, 16}, {12, 16}, {24, 24}, {12, 24}, {16, 24}};
	for (int iter = 0; iter < 20000; iter++) {
		unsigned shift = 18 + (unsigned)(tu_rand(&rs) % 10);
		unsigned ssize = (unsigned)(tu_rand(&rs) & 1);
		unsigned k = (unsigned)(tu_rand(&rs) % 6), bp = sizes[k][0], ap = sizes[k][1];
		uint64_t vsid = tu_rand(&rs) & (ssize ? 0x1FFFFFFFFFULL : 0x1FFFFFFFFFFFULL);
		uint64_t ea = tu_rand(&rs) & ~((UINT64_C(1) << ap) - 1);
		bool sec = tu_rand(&rs) & 1, large;
		uint64_t lp;
		assert_int_equal(hpt_page_encode(bp, ap, &large, &lp), 0);
		uint64_t v = hpt_mapping_v(ssize, vsid, ea, large, sec) | (tu_rand(&rs) & HPTE64_V_BOLTED);
		uint64_t r = ((tu_rand(&rs) << ap) & HPTE64_R_RPN & ~UINT64_C(0xFFF000)) | lp | HPTE64_R_M;
		uint64_t pteg = hpt_pteg_index(shift, ssize, vsid, ea, bp, sec);
		uint64_t slot = (pteg << 3) | (tu_rand(&rs) & 7);
		if (!hpt_entry_check(shift, slot, v, r))
			fail_msg("seed %llu iter %d: hashed entry rejected (shift %u slot %#llx v %#llx r %#llx)",
				 (unsigned long long)seed, iter, shift, (unsigned long long)slot,
				 (unsigned long long)v, (unsigned long long)r);
		/* Flip the top PTEG bit: the AVPN determines it unless the table
		 * is so small that every index bit comes from EA bits p..22. */
		uint64_t moved = slot ^ (UINT64_C(1) << (shift - 5));
		if (shift - 8 + bp >= 23)
			assert_false(hpt_entry_check(shift, moved, v, r));
		else
			assert_true(hpt_entry_check(shift, moved, v, r));
		/* Invalid entries always pass; reserved B and bad LP never do. */
		assert_true(hpt_entry_check(shift, moved, v & ~HPTE64_V_VALID, r));
		assert_false(hpt_entry_check(shift, slot, v | UINT64_C(0x8000000000000000), r));
		if (large)
			assert_false(hpt_entry_check(shift, slot, v, (r & ~UINT64_C(0xFFF000)) | 0x2000));
	}
	/* Out-of-range slot or shift. */
	assert_false(hpt_entry_check(18, 1u << 14, 1, HPTE64_R_M));
	assert_false(hpt_entry_check(17, 0, 1, HPTE64_R_M));
}

/* What H_ENTER places passes the check (through a real table). */
static void test_entry_check_after_enter(void **state)
{
	(void)state;
	hpt_t *h;
	hpt_config_t cfg;
	hpt_config_default(&cfg);
	cfg.max_page_shift = 24;
	assert_int_equal(hpt_create(20, &cfg, &h, NULL), 0);
	uint64_t rs = tu_seed("entry_check_after_enter");
	int placed = 0;
	for (int i = 0; i < 2000; i++) {
		uint64_t vsid = tu_rand(&rs) & 0xFFFFFFFFULL, ea = tu_rand(&rs) & ~0xFFFULL;
		bool sec = tu_rand(&rs) & 1;
		uint64_t pteg = hpt_pteg_index(20, HPT_SEG_256M, vsid, ea, 12, sec), slot;
		uint64_t v = hpt_mapping_v(HPT_SEG_256M, vsid, ea, false, sec);
		if (hpt_h_enter(h, 0, pteg << 3, v, (i + 1) << 12 | HPTE64_R_M, &slot) != H_SUCCESS)
			continue;
		uint64_t rv, rr;
		assert_true(hpt_read_entry(h, slot, &rv, &rr));
		assert_true(hpt_entry_check(20, slot, rv, rr));
		placed++;
	}
	assert_true(placed > 1900);
	hpt_destroy(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hash_known),
		cmocka_unit_test(test_page_sizes),
		cmocka_unit_test(test_shift_for_ram),
		cmocka_unit_test(test_entry_check_random),
		cmocka_unit_test(test_entry_check_after_enter),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
