/* SPDX-License-Identifier: MIT */
/*
 * Every hypercall and every return code, with the edges papr-hpt.md names:
 * last slot, full PTEG (both hashes), AVPN/ANDCOND, each page-size row and
 * the cap, WIMG for RAM and I/O, ptex out of range, H_EXACT, stripped bits,
 * H_READ_4 alignment, bulk-remove lists with mixed outcomes, clear ref/mod,
 * and resize prepare/commit/cancel with and without bolted collisions. Each
 * case also checks what change tracking marked (changes only).
 */
#include "testutil.h"

#include "hptmig/hpt.h"

#define SHIFT 18
#define SLOTS (UINT64_C(1) << (SHIFT - 4))

static hpt_t *mk(unsigned shift, unsigned max_page_shift, uint64_t ram)
{
	hpt_t *h;
	hpt_config_t cfg;
	hm_error_t e;
	hm_error_clear(&e);
	hpt_config_default(&cfg);
	cfg.max_page_shift = max_page_shift;
	cfg.ram_bytes = ram;
	assert_int_equal(hpt_create(shift, &cfg, &h, &e), 0);
	assert_int_equal(hpt_track_start(h, &e), 0);
	return h;
}

/* A V word with a distinguishable AVPN tag. */
static uint64_t mkv(uint64_t tag)
{
	return (tag << HPTE64_V_AVPN_SHIFT) | HPTE64_V_VALID;
}
static uint64_t mkr(uint64_t pfn)
{
	return (pfn << 12) | HPTE64_R_M;
}

/* Drain tracking: returns the number of marked slots; *one = a marked slot. */
static uint64_t drain(hpt_t *h, uint64_t *one)
{
	uint64_t cur = 0, first, bits, n = 0;
	while (hpt_track_take(h, &cur, &first, &bits)) {
		n += (uint64_t)__builtin_popcountll(bits);
		if (one)
			*one = first + (uint64_t)__builtin_ctzll(bits);
	}
	assert_int_equal(hpt_track_pending(h), 0);
	return n;
}

static void expect_marked(hpt_t *h, uint64_t slot)
{
	uint64_t got = UINT64_MAX;
	assert_int_equal(hpt_track_pending(h), 1);
	assert_int_equal(drain(h, &got), 1);
	assert_true(got == slot);
}

static void expect_unmarked(hpt_t *h)
{
	assert_int_equal(hpt_track_pending(h), 0);
	assert_int_equal(drain(h, NULL), 0);
}

static void test_enter_basic(void **state)
{
	(void)state;
	hpt_t *h = mk(SHIFT, 16, 0);
	uint64_t slot = 99, v, r, out[8];
	/* 0x60 (hypervisor lock, absent) and bit 62 are stripped; valid set. */
	assert_int_equal(hpt_h_enter(h, 0, 13, mkv(5) | 0x60 | HPTE64_V_BOLTED | 0x8,
				     mkr(7) | HPTE64_R_BIT62 | HPTE64_R_PP, &slot), H_SUCCESS);
	assert_true(slot == 8); /* first free slot of PTEG 13 & ~7 */
	expect_marked(h, 8);
	assert_true(hpt_read_entry(h, 8, &v, &r));
	assert_true(v == (mkv(5) | HPTE64_V_BOLTED | 0x8));
	assert_true(r == (mkr(7) | HPTE64_R_PP));
	assert_int_equal(hpt_h_read(h, 0, 8, out), H_SUCCESS);
	assert_true(out[0] == v && out[1] == r);
	/* Valid bit forced on. */
	assert_int_equal(hpt_h_enter(h, 0, 8, mkv(6) & ~HPTE64_V_VALID, mkr(8), &slot), H_SUCCESS);
	assert_true(slot == 9);
	assert_true(hpt_read_entry(h, 9, &v, &r) && (v & HPTE64_V_VALID));
	expect_marked(h, 9);
	hpt_destroy(h);
}

static void test_enter_full_and_exact(void **state)
{
	(void)state;
	hpt_t *h = mk(SHIFT, 16, 0);
	uint64_t slot, last = SLOTS - 1;
	/* Fill the last PTEG of the table, searching from its last slot. */
	for (uint64_t i = 0; i < 8; i++) {
		assert_int_equal(hpt_h_enter(h, 0, last, mkv(100 + i), mkr(i), &slot), H_SUCCESS);
		assert_true(slot == (last & ~UINT64_C(7)) + i);
	}
	assert_int_equal(drain(h, NULL), 8);
	assert_int_equal(hpt_h_enter(h, 0, last, mkv(200), mkr(1), &slot), H_PTEG_FULL);
	assert_int_equal(hpt_h_enter(h, H_EXACT, last, mkv(200), mkr(1), &slot), H_PTEG_FULL);
	expect_unmarked(h);
	/* Both hashes full: the guest's secondary PTEG full as well. */
	uint64_t sec = (~(last >> 3) & ((SLOTS >> 3) - 1)) << 3;
	for (uint64_t i = 0; i < 8; i++)
		assert_int_equal(hpt_h_enter(h, 0, sec, mkv(300 + i) | HPTE64_V_SECONDARY, mkr(i), NULL),
				 H_SUCCESS);
	assert_int_equal(hpt_h_enter(h, 0, sec, mkv(400) | HPTE64_V_SECONDARY, mkr(1), NULL),
			 H_PTEG_FULL);
	assert_int_equal(hpt_h_enter(h, 0, last, mkv(400), mkr(1), NULL), H_PTEG_FULL);
	drain(h, NULL);
	/* H_EXACT: that slot and no other. */
	assert_int_equal(hpt_h_enter(h, H_EXACT, 21, mkv(1), mkr(1), &slot), H_SUCCESS);
	assert_true(slot == 21);
	expect_marked(h, 21);
	assert_int_equal(hpt_h_enter(h, H_EXACT, 21, mkv(2), mkr(2), &slot), H_PTEG_FULL);
	expect_unmarked(h);
	assert_int_equal(hpt_h_enter(h, 0, 21, mkv(2), mkr(2), &slot), H_SUCCESS);
	assert_true(slot == 16);
	/* Free a slot in the full last PTEG: the search finds it. */
	assert_int_equal(hpt_h_remove(h, 0, last - 3, 0, NULL, NULL), H_SUCCESS);
	assert_int_equal(hpt_h_enter(h, 0, last & ~7ull, mkv(9), mkr(9), &slot), H_SUCCESS);
	assert_true(slot == last - 3);
	/* ptex out of range. */
	drain(h, NULL);
	assert_int_equal(hpt_h_enter(h, 0, SLOTS, mkv(1), mkr(1), &slot), H_PARAMETER);
	assert_int_equal(hpt_h_enter(h, H_EXACT, UINT64_MAX, mkv(1), mkr(1), &slot), H_PARAMETER);
	expect_unmarked(h);
	hpt_destroy(h);
}

static void test_enter_page_sizes(void **state)
{
	(void)state;
	static const struct {
		unsigned b, a;
	} rows[] = {{12, 12}, {16, 16}, {24, 24}, {12, 16}, {12, 24}, {16, 24}, {34, 34}};
	static const unsigned caps[] = {12, 16, 20, 24, 34};
	for (size_t ci = 0; ci < sizeof(caps) / sizeof(caps[0]); ci++) {
		unsigned cap = caps[ci];
		hpt_t *h = mk(SHIFT, cap, 0);
		for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
			bool large;
			uint64_t lp, slot;
			assert_int_equal(hpt_page_encode(rows[i].b, rows[i].a, &large, &lp), 0);
			uint64_t v = mkv(i + 1) | (large ? HPTE64_V_LARGE : 0);
			uint64_t r = (UINT64_C(3) << rows[i].a) | lp | HPTE64_R_M;
			/* QEMU's filter: 4K base / 64K actual never (only 16M may
			 * differ from the base size); 16G with the cap at 34. */
			bool allowed = rows[i].a == rows[i].b || rows[i].a == 24;
			long want = allowed && rows[i].a <= cap ? H_SUCCESS : H_PARAMETER;
			long got = hpt_h_enter(h, 0, i * 8, v, r, &slot);
			if (got != want)
				fail_msg("cap %u row %u/%u: got %s want %s", cap, rows[i].b, rows[i].a,
					 hpt_ret_name(got), hpt_ret_name(want));
			if (got == H_SUCCESS)
				expect_marked(h, i * 8);
			else
				expect_unmarked(h);
		}
		/* The differential test's case: pteh 0x1005, ptel 0x7010 (4K base,
		 * 64K actual) with the cap at 16 is H_PARAMETER, as in QEMU. */
		if (cap == 16)
			assert_int_equal(hpt_h_enter(h, 0, 0, 0x1005, 0x7010, NULL), H_PARAMETER);
		/* Undefined LP encodings with L = 1. */
		assert_int_equal(hpt_h_enter(h, 0, 0, mkv(1) | HPTE64_V_LARGE, 0x2000 | HPTE64_R_M, NULL),
				 H_PARAMETER);
		assert_int_equal(hpt_h_enter(h, 0, 0, mkv(1) | HPTE64_V_LARGE, 0x4000 | HPTE64_R_M, NULL),
				 H_PARAMETER);
		/* 0x3000 is 16G only with RPN bits 16..33 clear. */
		assert_int_equal(hpt_h_enter(h, 0, 0, mkv(1) | HPTE64_V_LARGE, 0x13000 | HPTE64_R_M, NULL),
				 H_PARAMETER);
		/* Reserved segment sizes 2 and 3. */
		assert_int_equal(hpt_h_enter(h, 0, 0, mkv(1) | (UINT64_C(2) << 62), mkr(1), NULL),
				 H_PARAMETER);
		assert_int_equal(hpt_h_enter(h, 0, 0, mkv(1) | (UINT64_C(3) << 62), mkr(1), NULL),
				 H_PARAMETER);
		assert_int_equal(hpt_h_enter(h, 0, 64, mkv(1) | HPTE64_V_SSIZE_1T, mkr(1), NULL),
				 H_SUCCESS);
		hpt_destroy(h);
	}
}

static void test_enter_wimg(void **state)
{
	(void)state;
	/* RAM is the first 1 GiB; above is I/O. */
	hpt_t *h = mk(SHIFT, 16, UINT64_C(1) << 30);
	uint64_t io = UINT64_C(1) << 32;
	struct {
		uint64_t pa, wimg;
		long want;
	} cases[] = {
		{0x1000, HPTE64_R_M, H_SUCCESS},
		{0x1000, 0, H_PARAMETER},
		{0x1000, HPTE64_R_M | HPTE64_R_G, H_PARAMETER},
		{0x1000, HPTE64_R_I | HPTE64_R_M, H_PARAMETER},
		{0x1000, HPTE64_R_W | HPTE64_R_M, H_PARAMETER},
		{(UINT64_C(1) << 30) - 4096, HPTE64_R_M, H_SUCCESS},
		{UINT64_C(1) << 30, HPTE64_R_M, H_PARAMETER},
		{io, HPTE64_R_I, H_SUCCESS},
		{io, HPTE64_R_I | HPTE64_R_M, H_SUCCESS},
		{io, HPTE64_R_I | HPTE64_R_G, H_SUCCESS},
		{io, HPTE64_R_M, H_PARAMETER},
		{io, 0, H_PARAMETER},
		{io, HPTE64_R_W | HPTE64_R_I, H_PARAMETER},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		long got = hpt_h_enter(h, 0, i * 8, mkv(i + 1), cases[i].pa | cases[i].wimg, NULL);
		if (got != cases[i].want)
			fail_msg("case %zu pa %#llx wimg %#llx: got %s", i,
				 (unsigned long long)cases[i].pa, (unsigned long long)cases[i].wimg,
				 hpt_ret_name(got));
	}
	hpt_destroy(h);
	/* ram_bytes 0: everything is RAM. */
	h = mk(SHIFT, 16, 0);
	assert_int_equal(hpt_h_enter(h, 0, 0, mkv(1), io | HPTE64_R_M, NULL), H_SUCCESS);
	assert_int_equal(hpt_h_enter(h, 0, 0, mkv(1), io | HPTE64_R_I, NULL), H_PARAMETER);
	hpt_destroy(h);
}

static void test_remove(void **state)
{
	(void)state;
	hpt_t *h = mk(SHIFT, 16, 0);
	uint64_t v, r, slot;
	uint64_t V = mkv(0x1234) | HPTE64_V_BOLTED, R = mkr(42) | HPTE64_R_C | HPTE64_R_R;
	assert_int_equal(hpt_h_enter(h, 0, SLOTS - 1, V, R, &slot), H_SUCCESS);
	drain(h, NULL);
	/* Not found: invalid slot, AVPN mismatch, ANDCOND hit. */
	assert_int_equal(hpt_h_remove(h, 0, slot - 1, 0, &v, &r), H_NOT_FOUND);
	assert_int_equal(hpt_h_remove(h, H_AVPN, slot, mkv(0x1235) & ~0x7full, &v, &r), H_NOT_FOUND);
	assert_int_equal(hpt_h_remove(h, H_ANDCOND, slot, HPTE64_V_BOLTED, &v, &r), H_NOT_FOUND);
	assert_int_equal(hpt_h_remove(h, 0, SLOTS, 0, &v, &r), H_PARAMETER);
	assert_int_equal(hpt_h_remove(h, 0, UINT64_MAX, 0, &v, &r), H_PARAMETER);
	expect_unmarked(h);
	/* AVPN compare ignores the low 7 bits; ANDCOND with a clear mask passes. */
	assert_int_equal(hpt_h_remove(h, H_AVPN | H_ANDCOND, slot, V & ~0x7full, &v, &r), H_NOT_FOUND);
	assert_int_equal(hpt_h_remove(h, H_AVPN, slot, V & ~0x7full, &v, &r), H_SUCCESS);
	assert_true(v == V && r == R);
	expect_marked(h, slot);
	assert_true(hpt_read_entry(h, slot, &v, &r) && v == 0 && r == 0);
	assert_int_equal(hpt_h_remove(h, 0, slot, 0, &v, &r), H_NOT_FOUND);
	assert_int_equal(hpt_h_enter(h, 0, 0, V, R, &slot), H_SUCCESS);
	assert_int_equal(hpt_h_remove(h, H_ANDCOND, slot, UINT64_C(1) << 40, &v, &r), H_SUCCESS);
	hpt_destroy(h);
}

static void test_protect(void **state)
{
	(void)state;
	hpt_t *h = mk(SHIFT, 16, 0);
	uint64_t v, r, slot;
	uint64_t V = mkv(77), R = mkr(5) | HPTE64_R_PP0 | HPTE64_R_KEY_HI | HPTE64_R_KEY_LO |
				    HPTE64_R_N | 0x3 | HPTE64_R_C | HPTE64_R_R;
	assert_int_equal(hpt_h_enter(h, 0, 40, V, R, &slot), H_SUCCESS);
	drain(h, NULL);
	assert_int_equal(hpt_h_protect(h, 0, 41, 0), H_NOT_FOUND);
	assert_int_equal(hpt_h_protect(h, H_AVPN, slot, mkv(78) & ~0x7full), H_NOT_FOUND);
	assert_int_equal(hpt_h_protect(h, 0, SLOTS, 0), H_PARAMETER);
	expect_unmarked(h);
	/* flags: PP0 from bit 8 (<<55), KEY_HI from bits 12:13 (<<48), then
	 * PP, N and KEY_LO as they are. */
	uint64_t flags = H_AVPN | (UINT64_C(1) << 12) | H_PP2 | 0x400;
	assert_int_equal(hpt_h_protect(h, flags, slot, V & ~0x7full), H_SUCCESS);
	expect_marked(h, slot);
	assert_true(hpt_read_entry(h, slot, &v, &r));
	assert_true(v == V);
	assert_true(r == (mkr(5) | (UINT64_C(1) << 60) | 0x400 | 0x1 | HPTE64_R_C | HPTE64_R_R));
	/* The same again changes nothing: success, no mark. */
	assert_int_equal(hpt_h_protect(h, flags, slot, V & ~0x7full), H_SUCCESS);
	expect_unmarked(h);
	/* PP0 set from flags bit 8; ANDCOND is not an H_PROTECT flag. */
	assert_int_equal(hpt_h_protect(h, H_ANDCOND | 0x100 | H_N, slot, V), H_SUCCESS);
	assert_true(hpt_read_entry(h, slot, &v, &r));
	assert_true(r == (mkr(5) | HPTE64_R_PP0 | HPTE64_R_N | HPTE64_R_C | HPTE64_R_R));
	hpt_destroy(h);
}

static void test_read(void **state)
{
	(void)state;
	hpt_t *h = mk(SHIFT, 16, 0);
	uint64_t out[8];
	for (uint64_t i = 0; i < 8; i++)
		assert_int_equal(hpt_h_enter(h, H_EXACT, SLOTS - 8 + i, mkv(i + 1), mkr(i + 1), NULL),
				 H_SUCCESS);
	drain(h, NULL);
	assert_int_equal(hpt_h_read(h, 0, SLOTS - 2, out), H_SUCCESS);
	assert_true(out[0] == mkv(7) && out[1] == mkr(7));
	/* H_READ_4 from ptex 6 of a PTEG reads entries 4..7. */
	assert_int_equal(hpt_h_read(h, H_READ_4, SLOTS - 2, out), H_SUCCESS);
	for (int i = 0; i < 4; i++)
		assert_true(out[2 * i] == mkv(5 + i) && out[2 * i + 1] == mkr(5 + i));
	assert_int_equal(hpt_h_read(h, H_READ_4, SLOTS - 7, out), H_SUCCESS);
	assert_true(out[0] == mkv(1) && out[6] == mkv(4));
	/* Invalid entries read as stored (zero). */
	assert_int_equal(hpt_h_read(h, H_READ_4, 5, out), H_SUCCESS);
	for (int i = 0; i < 8; i++)
		assert_true(out[i] == 0);
	assert_int_equal(hpt_h_read(h, 0, SLOTS, out), H_PARAMETER);
	assert_int_equal(hpt_h_read(h, H_READ_4, SLOTS + 1, out), H_PARAMETER);
	expect_unmarked(h);
	/* Through the dispatcher too. */
	uint64_t args[8] = {H_READ_4, SLOTS - 3};
	assert_int_equal(hpt_hcall(h, H_READ, args), H_SUCCESS);
	assert_true(args[0] == mkv(5) && args[7] == mkr(8));
	hpt_destroy(h);
}

#define REQ(flags, ptex) (H_BULK_REMOVE_REQUEST | ((uint64_t)(flags) << 56) | (ptex))

static void test_bulk_remove(void **state)
{
	(void)state;
	hpt_t *h = mk(SHIFT, 16, 0);
	uint64_t A = mkv(10), B = mkv(11), C = mkv(12);
	assert_int_equal(hpt_h_enter(h, H_EXACT, 1, A, mkr(1) | HPTE64_R_R, NULL), H_SUCCESS);
	assert_int_equal(hpt_h_enter(h, H_EXACT, 2, B, mkr(2) | HPTE64_R_C, NULL), H_SUCCESS);
	assert_int_equal(hpt_h_enter(h, H_EXACT, 3, C, mkr(3) | HPTE64_R_C | HPTE64_R_R, NULL),
			 H_SUCCESS);
	drain(h, NULL);
	/* ok (absolute), not found (AVPN mismatch), ok (AVPN), end. */
	uint64_t args[8] = {REQ(0, 1), 0, REQ(2, 2), C & ~0x7full, REQ(2, 3), C & ~0x7full,
			    H_BULK_REMOVE_END, 0};
	assert_int_equal(hpt_h_bulk_remove(h, args), H_SUCCESS);
	assert_true(args[0] == (H_BULK_REMOVE_RESPONSE | H_BULK_REMOVE_SUCCESS | (UINT64_C(1) << 59) | 1));
	assert_true(args[2] == (H_BULK_REMOVE_RESPONSE | H_BULK_REMOVE_NOT_FOUND | H_BULK_REMOVE_AVPN | 2));
	assert_true(args[4] == (H_BULK_REMOVE_RESPONSE | H_BULK_REMOVE_SUCCESS | H_BULK_REMOVE_AVPN |
				(UINT64_C(3) << 58) | 3));
	assert_true(args[6] == H_BULK_REMOVE_END);
	assert_int_equal(drain(h, NULL), 2);
	uint64_t v, r;
	assert_true(hpt_read_entry(h, 2, &v, &r) && v == B);
	/* ANDCOND: (V & tsl) != 0 is not found; then ok; then a parameter
	 * error (flags 3) stops the list before the 4th request. */
	assert_int_equal(hpt_h_enter(h, H_EXACT, 9, mkv(20) | HPTE64_V_BOLTED, mkr(1), NULL), H_SUCCESS);
	drain(h, NULL);
	uint64_t a2[8] = {REQ(1, 9), HPTE64_V_BOLTED, REQ(1, 2), HPTE64_V_BOLTED, REQ(3, 9), 0,
			  REQ(0, 9), 0};
	assert_int_equal(hpt_h_bulk_remove(h, a2), H_PARAMETER);
	assert_true(a2[0] == (H_BULK_REMOVE_RESPONSE | H_BULK_REMOVE_NOT_FOUND | H_BULK_REMOVE_ANDCOND | 9));
	assert_true(a2[2] == (H_BULK_REMOVE_RESPONSE | H_BULK_REMOVE_SUCCESS | H_BULK_REMOVE_ANDCOND |
			      (UINT64_C(1) << 58) | 2));
	assert_true(a2[4] == (H_BULK_REMOVE_RESPONSE | H_BULK_REMOVE_PARM | H_BULK_REMOVE_FLAGS | 9));
	assert_true(a2[6] == REQ(0, 9)); /* untouched */
	assert_true(hpt_read_entry(h, 9, &v, &r) && (v & HPTE64_V_VALID));
	expect_marked(h, 2);
	/* ptex out of range: parameter error, stops. */
	uint64_t a3[8] = {REQ(0, SLOTS), 0, REQ(0, 9), 0, H_BULK_REMOVE_END, 0, 0, 0};
	assert_int_equal(hpt_h_bulk_remove(h, a3), H_PARAMETER);
	assert_true(a3[0] == (H_BULK_REMOVE_RESPONSE | H_BULK_REMOVE_PARM | SLOTS));
	assert_true(a3[2] == REQ(0, 9));
	expect_unmarked(h);
	/* Type 00 (and 10) is H_PARAMETER, left as is; earlier entries done. */
	uint64_t a4[8] = {REQ(0, 9), 0, 0x0000000000000005ull, 0, REQ(0, 1), 0, 0, 0};
	assert_int_equal(hpt_h_bulk_remove(h, a4), H_PARAMETER);
	assert_true(a4[0] == (H_BULK_REMOVE_RESPONSE | 9));
	assert_true(a4[2] == 5);
	expect_marked(h, 9);
	uint64_t a5[8] = {H_BULK_REMOVE_RESPONSE | 1, 0};
	assert_int_equal(hpt_h_bulk_remove(h, a5), H_PARAMETER);
	/* End marker first: nothing done; four not-found requests. */
	uint64_t a6[8] = {H_BULK_REMOVE_END, 0, REQ(0, 1), 0};
	assert_int_equal(hpt_h_bulk_remove(h, a6), H_SUCCESS);
	assert_true(a6[2] == REQ(0, 1));
	uint64_t a7[8] = {REQ(0, 100), 0, REQ(0, 101), 0, REQ(0, 102), 0, REQ(0, SLOTS - 1), 0};
	assert_int_equal(hpt_h_bulk_remove(h, a7), H_SUCCESS);
	for (int i = 0; i < 4; i++)
		assert_true((a7[2 * i] & (H_BULK_REMOVE_TYPE | H_BULK_REMOVE_CODE)) ==
			    (H_BULK_REMOVE_RESPONSE | H_BULK_REMOVE_NOT_FOUND));
	expect_unmarked(h);
	hpt_destroy(h);
}

static void test_clear_ref_mod(void **state)
{
	(void)state;
	hpt_t *h = mk(SHIFT, 16, 0);
	uint64_t old;
	uint64_t R = mkr(3) | HPTE64_R_R | HPTE64_R_C;
	assert_int_equal(hpt_h_enter(h, H_EXACT, SLOTS - 1, mkv(1), R, NULL), H_SUCCESS);
	drain(h, NULL);
	assert_int_equal(hpt_h_clear_ref(h, 0, SLOTS - 2, &old), H_NOT_FOUND);
	assert_int_equal(hpt_h_clear_mod(h, 0, SLOTS, &old), H_PARAMETER);
	expect_unmarked(h);
	assert_int_equal(hpt_h_clear_ref(h, 0, SLOTS - 1, &old), H_SUCCESS);
	assert_true(old == R);
	expect_marked(h, SLOTS - 1);
	assert_int_equal(hpt_h_clear_ref(h, 0, SLOTS - 1, &old), H_SUCCESS);
	assert_true(old == (R & ~HPTE64_R_R));
	expect_unmarked(h); /* nothing changed */
	assert_int_equal(hpt_h_clear_mod(h, 0, SLOTS - 1, &old), H_SUCCESS);
	assert_true(old == (R & ~HPTE64_R_R));
	expect_marked(h, SLOTS - 1);
	uint64_t args[8] = {0, SLOTS - 1};
	assert_int_equal(hpt_hcall(h, H_CLEAR_MOD, args), H_SUCCESS);
	assert_true(args[0] == mkr(3));
	uint64_t v, r;
	assert_true(hpt_read_entry(h, SLOTS - 1, &v, &r) && r == mkr(3));
	hpt_destroy(h);
}

/* Enter a hashed 4K mapping in its primary or secondary PTEG at slot-in-group k. */
static uint64_t enter_mapping(hpt_t *h, uint64_t vsid, uint64_t ea, bool sec, unsigned k,
			      bool bolted)
{
	uint64_t pteg = hpt_pteg_index(hpt_shift(h), HPT_SEG_256M, vsid, ea, 12, sec), slot;
	uint64_t v = hpt_mapping_v(HPT_SEG_256M, vsid, ea, false, sec) | (bolted ? HPTE64_V_BOLTED : 0);
	assert_int_equal(hpt_h_enter(h, H_EXACT, (pteg << 3) | k, v, mkr(vsid & 0xffff), &slot),
			 H_SUCCESS);
	return slot;
}

static void test_resize(void **state)
{
	(void)state;
	hpt_t *h = mk(SHIFT, 16, 0);
	uint64_t gen = hpt_generation(h);
	/* Parameter checks. */
	assert_int_equal(hpt_h_resize_prepare(h, 1, 19), H_PARAMETER);
	assert_int_equal(hpt_h_resize_prepare(h, 0, 17), H_PARAMETER);
	assert_int_equal(hpt_h_resize_prepare(h, 0, 47), H_PARAMETER);
	assert_int_equal(hpt_h_resize_prepare(h, 0, 40), H_RESOURCE);
	assert_int_equal(hpt_h_resize_prepare(h, 0, 36), H_SUCCESS); /* RAM unknown: no limit */
	assert_int_equal(hpt_h_resize_prepare(h, 0, 0), H_SUCCESS);
	assert_int_equal(hpt_h_resize_commit(h, 0, 19), H_CLOSED);
	assert_int_equal(hpt_h_resize_commit(h, 1, 19), H_PARAMETER);
	/* Prepare, cancel (shift 0), commit finds nothing. */
	assert_int_equal(hpt_h_resize_prepare(h, 0, 19), H_SUCCESS);
	assert_int_equal(hpt_h_resize_prepare(h, 0, 0), H_SUCCESS);
	assert_int_equal(hpt_h_resize_commit(h, 0, 19), H_CLOSED);
	/* Prepare 20 then 19: the later one wins. */
	assert_int_equal(hpt_h_resize_prepare(h, 0, 20), H_SUCCESS);
	assert_int_equal(hpt_h_resize_prepare(h, 0, 19), H_SUCCESS);
	assert_int_equal(hpt_h_resize_commit(h, 0, 20), H_CLOSED);
	assert_int_equal(hpt_shift(h), SHIFT);

	/* Bolted entries in primary and secondary PTEGs, and non-bolted ones. */
	struct {
		uint64_t vsid, ea;
		bool sec, bolted;
		unsigned k;
	} m[] = {
		{0x123456, 0x0ABCD000, false, true, 0}, {0x777, 0x0FFFF000, true, true, 3},
		{0x99, 0x00001000, false, true, 7},     {0x55, 0x0000A000, false, false, 1},
		{0x1, 0x0CAFE000, true, false, 2},
	};
	const size_t nm = sizeof(m) / sizeof(m[0]);
	for (size_t i = 0; i < nm; i++)
		enter_mapping(h, m[i].vsid, m[i].ea, m[i].sec, m[i].k, m[i].bolted);
	drain(h, NULL);
	assert_int_equal(hpt_h_resize_prepare(h, 0, 19), H_SUCCESS);
	assert_int_equal(hpt_h_resize_commit(h, 0, 19), H_SUCCESS);
	assert_int_equal(hpt_shift(h), 19);
	assert_true(hpt_slots(h) == (UINT64_C(1) << 15));
	assert_true(hpt_generation(h) == gen + 1);
	/* Tracking marks every slot of the new table. */
	assert_true(hpt_track_pending(h) == hpt_slots(h));
	drain(h, NULL);
	uint64_t nvalid, nbolted;
	hpt_count(h, &nvalid, &nbolted);
	assert_int_equal(nvalid, 3);
	assert_int_equal(nbolted, 3);
	for (size_t i = 0; i < nm; i++) {
		uint64_t pteg = hpt_pteg_index(19, HPT_SEG_256M, m[i].vsid, m[i].ea, 12, m[i].sec);
		uint64_t v, r;
		assert_true(hpt_read_entry(h, (pteg << 3) | m[i].k, &v, &r));
		assert_int_equal((v & HPTE64_V_VALID) != 0, m[i].bolted);
		if (m[i].bolted) {
			assert_true(v == (hpt_mapping_v(HPT_SEG_256M, m[i].vsid, m[i].ea, false, m[i].sec) |
					  HPTE64_V_BOLTED));
			assert_true(r == mkr(m[i].vsid & 0xffff));
			assert_true(hpt_entry_check(19, (pteg << 3) | m[i].k, v, r));
		}
	}
	/* Shrink back to 18: no collision. */
	assert_int_equal(hpt_h_resize_prepare(h, 0, 18), H_SUCCESS);
	assert_int_equal(hpt_h_resize_commit(h, 0, 18), H_SUCCESS);
	hpt_count(h, &nvalid, NULL);
	assert_int_equal(nvalid, 3);
	assert_true(hpt_generation(h) == gen + 2);
	drain(h, NULL);

	/* Collision on shrink: two bolted entries whose 19-bit PTEGs differ
	 * only in the top bit, at the same slot number. */
	assert_int_equal(hpt_h_resize_prepare(h, 0, 19), H_SUCCESS);
	assert_int_equal(hpt_h_resize_commit(h, 0, 19), H_SUCCESS);
	uint64_t vsid2 = 0x123456 ^ (UINT64_C(1) << 11); /* flips PTEG bit 11 (top of 12) */
	enter_mapping(h, vsid2, 0x0ABCD000, false, 0, true);
	hpt_count(h, &nvalid, NULL);
	assert_int_equal(nvalid, 4);
	uint64_t before[2][2];
	uint8_t d1[32], d2[32];
	assert_int_equal(hpt_digest(h, d1), 0);
	hpt_read_entry(h, 0, &before[0][0], &before[0][1]);
	gen = hpt_generation(h);
	drain(h, NULL);
	assert_int_equal(hpt_h_resize_prepare(h, 0, 18), H_SUCCESS);
	assert_int_equal(hpt_h_resize_commit(h, 0, 18), H_PTEG_FULL);
	/* Old table intact, generation unchanged, pending consumed. */
	assert_int_equal(hpt_shift(h), 19);
	assert_true(hpt_generation(h) == gen);
	assert_int_equal(hpt_digest(h, d2), 0);
	assert_memory_equal(d1, d2, 32);
	expect_unmarked(h);
	assert_int_equal(hpt_h_resize_commit(h, 0, 18), H_CLOSED);
	/* A non-bolted entry at that spot does not collide: it is dropped. */
	uint64_t old_v, old_r;
	uint64_t s2 = (hpt_pteg_index(19, HPT_SEG_256M, vsid2, 0x0ABCD000, 12, false) << 3);
	assert_int_equal(hpt_h_remove(h, 0, s2, 0, &old_v, &old_r), H_SUCCESS);
	assert_int_equal(hpt_h_enter(h, H_EXACT, s2, old_v & ~HPTE64_V_BOLTED, old_r, NULL), H_SUCCESS);
	assert_int_equal(hpt_h_resize_prepare(h, 0, 18), H_SUCCESS);
	assert_int_equal(hpt_h_resize_commit(h, 0, 18), H_SUCCESS);
	hpt_count(h, &nvalid, NULL);
	assert_int_equal(nvalid, 3);
	/* Via the dispatcher. */
	uint64_t args[8] = {0, 20};
	assert_int_equal(hpt_hcall(h, H_RESIZE_HPT_PREPARE, args), H_SUCCESS);
	assert_int_equal(hpt_hcall(h, H_RESIZE_HPT_COMMIT, args), H_SUCCESS);
	assert_int_equal(hpt_shift(h), 20);
	hpt_destroy(h);
}

/* Random bolted mappings survive random resize chains where they fit. */
/*
 * QEMU's RAM-based limit (h_resize_hpt_prepare): a shift above
 * spapr_hpt_shift_for_ramsize(ram) + 1 is H_RESOURCE, checked after the
 * parameter checks; shift 0 (cancel) always passes.
 */
static void test_resize_ram_limit(void **state)
{
	(void)state;
	static const struct {
		uint64_t ram;
		unsigned max; /* largest shift a prepare may ask for */
	} cases[] = {
		{UINT64_C(32) << 20, 19},  /* 32 MiB: table 2^18, one order above */
		{UINT64_C(768) << 20, 24}, /* rounded up to 1 GiB: 2^23 + 1 */
		{UINT64_C(1) << 30, 24},
		{(UINT64_C(1) << 30) + 1, 25},
		{UINT64_C(1) << 40, 34},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		hpt_t *h = mk(SHIFT, 16, cases[i].ram);
		unsigned max = cases[i].max;
		assert_int_equal(hpt_h_resize_prepare(h, 0, max + 1), H_RESOURCE);
		assert_int_equal(hpt_h_resize_prepare(h, 0, 17), H_PARAMETER);
		assert_int_equal(hpt_h_resize_prepare(h, 0, 47), H_PARAMETER);
		uint64_t args[8] = {0, max + 1};
		assert_int_equal(hpt_hcall(h, H_RESIZE_HPT_PREPARE, args), H_RESOURCE);
		assert_int_equal(hpt_h_resize_prepare(h, 0, 0), H_SUCCESS);
		if (max <= 24) {
			/* Allocated lazily: a 2^24-byte table costs nothing here. */
			assert_int_equal(hpt_h_resize_prepare(h, 0, max), H_SUCCESS);
			assert_int_equal(hpt_h_resize_commit(h, 0, max), H_SUCCESS);
			assert_int_equal(hpt_shift(h), max);
		}
		hpt_destroy(h);
	}
}

static void test_resize_random(void **state)
{
	(void)state;
	uint64_t rs = tu_seed("resize_random");
	hpt_t *h = mk(20, 24, 0);
	enum { N = 300 };
	struct {
		uint64_t vsid, ea;
		bool sec;
		unsigned k, p;
	} m[N];
	size_t n = 0;
	for (size_t i = 0; i < N; i++) {
		static const unsigned ps[] = {12, 16, 24};
		unsigned p = ps[tu_rand(&rs) % 3];
		m[n].vsid = tu_rand(&rs) & 0xFFFFFFFFFULL;
		m[n].ea = tu_rand(&rs) & 0x0FFFFFFF & ~((UINT64_C(1) << p) - 1);
		m[n].sec = tu_rand(&rs) & 1;
		m[n].k = (unsigned)(tu_rand(&rs) & 7);
		m[n].p = p;
		bool large;
		uint64_t lp;
		hpt_page_encode(p, p, &large, &lp);
		uint64_t pteg = hpt_pteg_index(20, HPT_SEG_256M, m[n].vsid, m[n].ea, p, m[n].sec);
		uint64_t v = hpt_mapping_v(HPT_SEG_256M, m[n].vsid, m[n].ea, large, m[n].sec) |
			     HPTE64_V_BOLTED;
		if (hpt_h_enter(h, H_EXACT, (pteg << 3) | m[n].k, v, (UINT64_C(1) << 24) | lp | HPTE64_R_M,
				NULL) == H_SUCCESS)
			n++;
	}
	/* Grow: never collides (more PTEGs). */
	for (unsigned s = 21; s <= 23; s++) {
		assert_int_equal(hpt_h_resize_prepare(h, 0, s), H_SUCCESS);
		assert_int_equal(hpt_h_resize_commit(h, 0, s), H_SUCCESS);
		uint64_t nv, nb;
		hpt_count(h, &nv, &nb);
		assert_int_equal(nv, n);
		assert_int_equal(nb, n);
		for (size_t i = 0; i < n; i++) {
			uint64_t pteg = hpt_pteg_index(s, HPT_SEG_256M, m[i].vsid, m[i].ea, m[i].p, m[i].sec);
			uint64_t v, r;
			hpt_read_entry(h, (pteg << 3) | m[i].k, &v, &r);
			assert_true(v & HPTE64_V_VALID);
			assert_true(hpt_entry_check(s, (pteg << 3) | m[i].k, v, r));
		}
	}
	hpt_destroy(h);
}

/* hpt_hcall: QEMU's args[] convention for every number; names. */
static void test_dispatch(void **state)
{
	(void)state;
	hpt_t *h = mk(SHIFT, 16, 0);
	uint64_t a[8] = {H_EXACT, 42, mkv(9), mkr(9) | HPTE64_R_C};
	assert_int_equal(hpt_hcall(h, H_ENTER, a), H_SUCCESS);
	assert_true(a[0] == 42);
	uint64_t p[8] = {H_AVPN | H_PP1, 42, mkv(9) & ~0x7full};
	assert_int_equal(hpt_hcall(h, H_PROTECT, p), H_SUCCESS);
	uint64_t c[8] = {0, 42};
	assert_int_equal(hpt_hcall(h, H_CLEAR_REF, c), H_SUCCESS);
	assert_true(c[0] == (mkr(9) | HPTE64_R_C | 2));
	uint64_t r[8] = {0, 42, 0};
	assert_int_equal(hpt_hcall(h, H_REMOVE, r), H_SUCCESS);
	assert_true(r[0] == mkv(9) && r[1] == (mkr(9) | HPTE64_R_C | 2));
	uint64_t b[8] = {REQ(0, 42), 0, H_BULK_REMOVE_END};
	assert_int_equal(hpt_hcall(h, H_BULK_REMOVE, b), H_SUCCESS);
	assert_true((b[0] & H_BULK_REMOVE_CODE) == H_BULK_REMOVE_NOT_FOUND);
	/* Failures leave args as they were. */
	uint64_t f[8] = {0, SLOTS, 7, 7};
	assert_int_equal(hpt_hcall(h, H_ENTER, f), H_PARAMETER);
	assert_true(f[0] == 0 && f[1] == SLOTS);
	assert_int_equal(hpt_hcall(h, 0x1234, f), H_FUNCTION);
	assert_string_equal(hpt_hcall_name(H_BULK_REMOVE), "H_BULK_REMOVE");
	assert_string_equal(hpt_hcall_name(0x1234), "H_UNKNOWN");
	assert_string_equal(hpt_ret_name(H_PTEG_FULL), "H_PTEG_FULL");
	assert_string_equal(hpt_ret_name(H_NOT_FOUND), "H_NOT_FOUND");
	assert_string_equal(hpt_ret_name(-99), "H_UNKNOWN_RETURN");
	hpt_destroy(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_enter_basic),
		cmocka_unit_test(test_enter_full_and_exact),
		cmocka_unit_test(test_enter_page_sizes),
		cmocka_unit_test(test_enter_wimg),
		cmocka_unit_test(test_remove),
		cmocka_unit_test(test_protect),
		cmocka_unit_test(test_read),
		cmocka_unit_test(test_bulk_remove),
		cmocka_unit_test(test_clear_ref_mod),
		cmocka_unit_test(test_resize),
		cmocka_unit_test(test_resize_ram_limit),
		cmocka_unit_test(test_resize_random),
		cmocka_unit_test(test_dispatch),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
