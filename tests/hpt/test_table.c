/* SPDX-License-Identifier: MIT */
/*
 * The table object: creation limits and their messages, lazy allocation of
 * big tables, raw entry access (single and bulk, big-endian layout, 0x40
 * cleared), the loader's write paths, reset, change tracking semantics, and
 * the digest: a known-answer test whose expected SHA-256 input is built
 * byte by byte here, and the "no HPT" constant.
 */
#include "testutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hptmig/hpt.h"
#include "hpt/hpt_inspect.h"

static void test_create_limits(void **state)
{
	(void)state;
	hpt_t *h = (hpt_t *)1;
	hm_error_t e;
	static const unsigned bad[] = {0, 17, 37, 46, 47, 64, 1000};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		hm_error_clear(&e);
		assert_int_equal(hpt_create(bad[i], NULL, &h, &e), HM_E_RANGE);
		tu_assert_err(&e, HM_E_RANGE);
		assert_null(h);
		char num[16];
		snprintf(num, sizeof(num), "%u", bad[i]);
		assert_non_null(strstr(e.msg, num)); /* the message names the value */
	}
	hm_error_clear(&e);
	hpt_create(40, NULL, &h, &e);
	assert_non_null(strstr(e.msg, "cannot be migrated"));
	hpt_config_t cfg;
	hpt_config_default(&cfg);
	assert_int_equal(cfg.max_page_shift, 16);
	cfg.max_page_shift = 11;
	hm_error_clear(&e);
	assert_int_equal(hpt_create(18, &cfg, &h, &e), HM_E_RANGE);
	/* A zero-initialised config is the default one. */
	hpt_config_t zero = {0};
	assert_int_equal(hpt_create(18, &zero, &h, NULL), 0);
	assert_int_equal(hpt_config(h)->max_page_shift, 16);
	hpt_destroy(h);
	/* NULL error object accepted. */
	assert_int_equal(hpt_create(17, NULL, &h, NULL), HM_E_RANGE);

	assert_int_equal(hpt_create(18, NULL, &h, NULL), 0);
	assert_int_equal(hpt_shift(h), 18);
	assert_true(hpt_slots(h) == 16384);
	assert_int_equal(hpt_config(h)->max_page_shift, 16);
	assert_true(hpt_generation(h) == 0);
	assert_false(hpt_tracking(h));
	hpt_destroy(h);
	hpt_destroy(NULL);
}

static void test_big_lazy(void **state)
{
	(void)state;
	hpt_t *h;
	uint64_t t0 = hm_now_ns();
	assert_int_equal(hpt_create(31, NULL, &h, NULL), 0); /* 2 GiB */
	/* Lazy zero pages: creation does not touch the table. Generous bound
	 * (a functional check, not a benchmark): touching 2 GiB takes seconds. */
	assert_true(hm_now_ns() - t0 < UINT64_C(200000000));
	assert_true(hpt_slots(h) == (UINT64_C(1) << 27));
	uint64_t last = hpt_slots(h) - 1, v, r;
	assert_int_equal(hpt_h_enter(h, H_EXACT, last, 0x81, 0x1010, NULL), H_SUCCESS);
	assert_true(hpt_read_entry(h, last, &v, &r) && v == 0x81 && r == 0x1010);
	assert_true(hpt_find_valid(h, last - 1000, hpt_slots(h)) == last);
	hpt_destroy(h);
	/* The stream's limit: 2^32 slots. Virtual space only; may be refused
	 * by a strict overcommit policy, which must then be a clean -ENOMEM. */
	int rc = hpt_create(36, NULL, &h, NULL);
	assert_true(rc == 0 || rc == -12);
	if (rc == 0) {
		assert_true(hpt_slots(h) == (UINT64_C(1) << 32));
		assert_int_equal(hpt_h_enter(h, H_EXACT, (UINT64_C(1) << 32) - 1, 0x81, 0x1010, NULL),
				 H_SUCCESS);
		hpt_destroy(h);
	}
}

static void test_raw_access(void **state)
{
	(void)state;
	hpt_t *h;
	hm_error_t e;
	hm_error_clear(&e);
	assert_int_equal(hpt_create(18, NULL, &h, &e), 0);
	assert_int_equal(hpt_track_start(h, &e), 0);
	uint64_t v, r, slots = hpt_slots(h);
	/* 0x40 never stored, never returned. */
	assert_true(hpt_write_entry(h, 5, 0x123456781ull | HPTE64_V_HVLOCK, 0xabcdef010ull));
	assert_true(hpt_read_entry(h, 5, &v, &r));
	assert_true(v == 0x123456781ull && r == 0xabcdef010ull);
	assert_true(hpt_track_pending(h) == 1);
	/* Same value again: no change, no mark. */
	uint64_t cur = 0, first, bits;
	assert_true(hpt_track_take(h, &cur, &first, &bits) && first == 0 && bits == (1u << 5));
	assert_true(hpt_write_entry(h, 5, 0x123456781ull, 0xabcdef010ull));
	assert_true(hpt_track_pending(h) == 0);
	assert_false(hpt_write_entry(h, slots, 1, 1));
	assert_false(hpt_read_entry(h, slots, &v, &r));
	assert_true(v == 0 && r == 0);
	/* Bulk write / read, wire layout. */
	uint8_t buf[16 * 8], out[16 * 8];
	memset(buf, 0, sizeof(buf));
	for (int i = 0; i < 8; i++) {
		if (i == 3)
			continue; /* an invalid one in the run */
		hm_store_be64(buf + 16 * i, (uint64_t)(i + 1) << 7 | 1 | (i == 2 ? 0x40 : 0));
		hm_store_be64(buf + 16 * i + 8, (uint64_t)(i + 1) << 12 | 0x10);
	}
	assert_true(hpt_write_entries(h, slots - 8, 8, buf) == 8);
	assert_true(hpt_write_entries(h, slots - 4, 8, buf) == 4); /* clipped */
	assert_true(hpt_write_entries(h, slots, 8, buf) == 0);
	memset(out, 0xee, sizeof(out));
	/* Table now: buf[0..3] at slots-8.., then the clipped write's buf[0..3]. */
	assert_true(hpt_read_entries(h, slots - 8, 8, out) == 6);
	hm_store_be64(buf + 16 * 2, 3 << 7 | 1); /* 0x40 cleared on the way */
	memcpy(buf + 16 * 4, buf, 64);
	assert_memory_equal(out, buf, sizeof(out));
	assert_true(hpt_read_entries(h, slots - 2, 8, out) == 1); /* clipped */
	assert_memory_equal(out, buf + 16 * 2, 32);
	assert_true(hpt_find_valid(h, 6, slots) == slots - 8);
	assert_true(hpt_find_invalid(h, slots - 8, slots) == slots - 5);
	assert_true(hpt_find_valid(h, slots - 1, slots) == slots);
	assert_true(hpt_find_invalid(h, 5, slots) == 6);
	/* Clear a run: marks only entries that were not zero. */
	while (hpt_track_take(h, &cur, &first, &bits))
		;
	cur = 0;
	while (hpt_track_take(h, &cur, &first, &bits))
		;
	assert_true(hpt_track_pending(h) == 0);
	assert_true(hpt_clear_entries(h, slots - 16, 100) == 16);
	assert_true(hpt_track_pending(h) == 6);
	uint64_t nv;
	hpt_count(h, &nv, NULL);
	assert_true(nv == 1);
	hpt_destroy(h);
}

static void test_tracking(void **state)
{
	(void)state;
	hpt_t *h;
	hm_error_t e;
	hm_error_clear(&e);
	assert_int_equal(hpt_create(18, NULL, &h, &e), 0);
	uint64_t cur = 0, first, bits;
	/* Off: changes are not recorded; take finds nothing. */
	assert_int_equal(hpt_h_enter(h, 0, 0, 0x81, 0x10, NULL), H_SUCCESS);
	assert_true(hpt_track_pending(h) == 0);
	assert_false(hpt_track_take(h, &cur, &first, &bits));
	hpt_track_mark_all(h); /* no-op */
	assert_int_equal(hpt_track_start(h, &e), 0);
	assert_true(hpt_tracking(h));
	assert_true(hpt_track_pending(h) == 0); /* starts clear */
	assert_int_equal(hpt_track_start(h, &e), HM_E_STATE);
	tu_assert_err(&e, HM_E_STATE);
	/* Several changes to one slot count once; slots in different words. */
	assert_int_equal(hpt_h_protect(h, 1, 0, 0), H_SUCCESS);
	assert_int_equal(hpt_h_protect(h, 2, 0, 0), H_SUCCESS);
	assert_int_equal(hpt_h_enter(h, H_EXACT, 200, 0x81, 0x10, NULL), H_SUCCESS);
	assert_int_equal(hpt_h_enter(h, H_EXACT, 16383, 0x81, 0x10, NULL), H_SUCCESS);
	assert_true(hpt_track_pending(h) == 3);
	cur = 0;
	assert_true(hpt_track_take(h, &cur, &first, &bits) && first == 0 && bits == 1);
	assert_true(hpt_track_take(h, &cur, &first, &bits) && first == 192 && bits == (1u << 8));
	/* A change behind the cursor survives for the next pass. */
	assert_int_equal(hpt_h_remove(h, 0, 0, 0, NULL, NULL), H_SUCCESS);
	assert_true(hpt_track_take(h, &cur, &first, &bits) && first == 16320 &&
		    bits == (UINT64_C(1) << 63));
	assert_false(hpt_track_take(h, &cur, &first, &bits));
	assert_true(hpt_track_pending(h) == 1);
	cur = 0;
	assert_true(hpt_track_take(h, &cur, &first, &bits) && first == 0 && bits == 1);
	hpt_track_mark_all(h);
	assert_true(hpt_track_pending(h) == 16384);
	hpt_track_stop(h);
	assert_false(hpt_tracking(h));
	assert_true(hpt_track_pending(h) == 0);
	hpt_track_stop(h); /* idempotent */
	/* Restart: clear again. */
	assert_int_equal(hpt_track_start(h, &e), 0);
	assert_true(hpt_track_pending(h) == 0);
	/* Reset to another shift: new generation, all marked, table empty. */
	hm_error_clear(&e);
	assert_int_equal(hpt_reset(h, 17, &e), HM_E_RANGE);
	assert_int_equal(hpt_reset(h, 19, NULL), 0);
	assert_int_equal(hpt_shift(h), 19);
	assert_true(hpt_generation(h) == 1);
	assert_true(hpt_track_pending(h) == 32768);
	uint64_t nv;
	hpt_count(h, &nv, NULL);
	assert_true(nv == 0);
	hpt_destroy(h); /* with tracking on: frees the bitmap */
}

/* Expected digest built by hand: be32 shift, then per valid slot be64 slot,
 * be64 (V & ~0x40), be64 R. */
static void test_digest_kat(void **state)
{
	(void)state;
	hpt_t *h;
	assert_int_equal(hpt_create(18, NULL, &h, NULL), 0);
	uint8_t got[32], want[32];
	uint8_t in[4 + 3 * 24];
	/* Empty table: just the shift. */
	static const uint8_t shift18[4] = {0, 0, 0, 18};
	assert_int_equal(hpt_digest(h, got), 0);
	hm_sha256(shift18, 4, want);
	assert_memory_equal(got, want, 32);

	/* Three valid entries (one with the 0x40 bit written raw), one invalid
	 * with non-zero words (not digested). */
	assert_true(hpt_write_entry(h, 16383, 0x4000000000001235ull, 0x8000000000002190ull));
	assert_true(hpt_write_entry(h, 0, 0x0000000000000081ull, 0x0000000000001010ull));
	assert_true(hpt_write_entry(h, 4097, 0x00000000deadbe11ull | 0x40, 0x0123456789abcdefull));
	assert_true(hpt_write_entry(h, 7, 0x0000000000000080ull, 0x1111ull));
	const uint8_t bytes[] = {
		0x00, 0x00, 0x00, 0x12,
		/* slot 0 */
		0, 0, 0, 0, 0, 0, 0, 0,
		0, 0, 0, 0, 0, 0, 0x00, 0x81,
		0, 0, 0, 0, 0, 0, 0x10, 0x10,
		/* slot 4097 */
		0, 0, 0, 0, 0, 0, 0x10, 0x01,
		0, 0, 0, 0, 0xde, 0xad, 0xbe, 0x11,
		0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef,
		/* slot 16383 */
		0, 0, 0, 0, 0, 0, 0x3f, 0xff,
		0x40, 0, 0, 0, 0, 0, 0x12, 0x35,
		0x80, 0, 0, 0, 0, 0, 0x21, 0x90,
	};
	_Static_assert(sizeof(bytes) == sizeof(in), "3 records");
	hm_sha256(bytes, sizeof(bytes), want);
	assert_int_equal(hpt_digest(h, got), 0);
	assert_memory_equal(got, want, 32);
	uint64_t nv, nb;
	hpt_count(h, &nv, &nb);
	assert_true(nv == 3 && nb == 2); /* 0x...1235 and 0x...11 have 0x10 set */
	hpt_destroy(h);

	/* No HPT: SHA-256(be32 0xffffffff). */
	static const uint8_t none[32] = {
		0xad, 0x95, 0x13, 0x1b, 0xc0, 0xb7, 0x99, 0xc0, 0xb1, 0xaf, 0x47,
		0x7f, 0xb1, 0x4f, 0xcf, 0x26, 0xa6, 0xa9, 0xf7, 0x60, 0x79, 0xe4,
		0x8b, 0xf0, 0x90, 0xac, 0xb7, 0xe8, 0x36, 0x7b, 0xfd, 0x0e};
	hpt_digest_none(got);
	assert_memory_equal(got, none, 32);
}

/* Reference digest and counts: every slot read under its lock, one by one. */
static void reference(hpt_t *h, uint8_t want[32], uint64_t *nv, uint64_t *nb)
{
	hm_sha256_t *ref;
	uint8_t b[24];
	assert_int_equal(hm_sha256_new(&ref), 0);
	hm_store_be32(b, hpt_shift(h));
	hm_sha256_update(ref, b, 4);
	*nv = *nb = 0;
	for (uint64_t s = 0; s < hpt_slots(h); s++) {
		uint64_t v, r;
		hpt_read_entry(h, s, &v, &r);
		if (!(v & HPTE64_V_VALID))
			continue;
		++*nv;
		*nb += (v & HPTE64_V_BOLTED) != 0;
		hm_store_be64(b, s);
		hm_store_be64(b + 8, v);
		hm_store_be64(b + 16, r);
		hm_sha256_update(ref, b, 24);
	}
	hm_sha256_final(ref, want);
	hm_sha256_free(ref);
}

/* Digest over many batches equals a straightforward reference. */
static void test_digest_random(void **state)
{
	(void)state;
	uint64_t rs = tu_seed("digest_random");
	hpt_t *h;
	assert_int_equal(hpt_create(20, NULL, &h, NULL), 0);
	uint64_t slots = hpt_slots(h);
	for (int i = 0; i < 20000; i++) {
		uint64_t s = tu_rand(&rs) % slots;
		hpt_write_entry(h, s, tu_rand(&rs) | 1, tu_rand(&rs));
	}
	uint8_t got[32], want[32];
	uint64_t nv, nb;
	reference(h, want, &nv, &nb);
	assert_int_equal(hpt_digest(h, got), 0);
	assert_memory_equal(got, want, 32);
	hpt_destroy(h);
}

/* The exclusive bulk write stores what the locked one stores (0x40 cleared,
 * invalid entries included), and hpt_summary agrees with hpt_digest and
 * hpt_count on the result. */
static void test_write_exclusive_and_summary(void **state)
{
	(void)state;
	uint64_t seed = tu_seed("unshared write");
	const uint64_t n = 3000;
	uint8_t *buf = malloc(n * HPTE64_SIZE), *back = malloc(n * HPTE64_SIZE);
	hpt_t *a, *b;
	assert_non_null(buf);
	assert_non_null(back);
	assert_int_equal(hpt_create(18, NULL, &a, NULL), 0);
	assert_int_equal(hpt_create(18, NULL, &b, NULL), 0);
	for (uint64_t i = 0; i < n; i++) {
		uint64_t v = tu_rand(&seed), r = tu_rand(&seed);
		if (i % 3 == 0)
			v = r = 0;
		else
			v |= HPTE64_V_HVLOCK | (i % 2 ? HPTE64_V_VALID : 0);
		hm_store_be64(buf + i * HPTE64_SIZE, v);
		hm_store_be64(buf + i * HPTE64_SIZE + 8, r);
	}
	assert_int_equal(hpt_write_entries(a, 100, n, buf), n);
	assert_int_equal(hpt_write_entries_exclusive(b, 100, n, buf), n);
	for (uint64_t i = 0; i < n; i++) {
		uint64_t va, ra, vb, rb;
		hpt_read_entry(a, 100 + i, &va, &ra);
		hpt_read_entry(b, 100 + i, &vb, &rb);
		assert_true(va == vb && ra == rb);
		assert_true((vb & HPTE64_V_HVLOCK) == 0);
	}
	/* clipped at the table's end, as hpt_write_entries */
	assert_int_equal(hpt_write_entries_exclusive(b, hpt_slots(b) - 10, n, buf), 10);
	assert_int_equal(hpt_write_entries(a, hpt_slots(a) - 10, n, buf), 10);
	uint8_t d1[32], d2[32];
	uint64_t v1, b1, v2, b2;
	assert_int_equal(hpt_digest(a, d1), 0);
	hpt_count(a, &v1, &b1);
	for (int mode = HPT_READ_LOCKED; mode <= HPT_READ_QUIESCENT; mode++) {
		assert_int_equal(hpt_summary(b, (hpt_read_mode_t)mode, &v2, &b2, d2), 0);
		assert_memory_equal(d1, d2, 32);
		assert_true(v1 == v2 && b1 == b2);
	}
	assert_int_equal(hpt_summary(b, (hpt_read_mode_t)7, &v2, &b2, d2), -EINVAL);
	hpt_destroy(a);
	hpt_destroy(b);
	free(buf);
	free(back);
}

/*
 * The digest and the counts in every read mode follow every way an entry
 * changes (single and bulk writes, locked and exclusive, clears, H_REMOVE,
 * H_BULK_REMOVE, tracking on and off, reset): after each round of random
 * operations they equal a walk over every slot, entry by entry.
 */
static void test_summary_random(void **state)
{
	(void)state;
	uint64_t rs = tu_seed("summary_random");
	hpt_t *h;
	assert_int_equal(hpt_create(18, NULL, &h, NULL), 0);
	enum { ROUNDS = 40, OPS = 400, RUN = 200 };
	uint8_t *buf = malloc(RUN * HPTE64_SIZE);
	assert_non_null(buf);
	for (int round = 0; round < ROUNDS; round++) {
		uint64_t slots = hpt_slots(h);
		if (round == ROUNDS / 2)
			assert_int_equal(hpt_reset(h, 19, NULL), 0); /* fresh, bigger table */
		if (round % 4 == 1)
			assert_int_equal(hpt_track_start(h, NULL), 0);
		for (int op = 0; op < OPS; op++) {
			uint64_t s = tu_rand(&rs) % slots, n = 1 + tu_rand(&rs) % RUN;
			uint64_t v = tu_rand(&rs), r = tu_rand(&rs);
			switch (tu_rand(&rs) % 6) {
			case 0: /* one entry, valid or not, lock bit set or not */
				hpt_write_entry(h, s, v, r);
				break;
			case 1:
			case 2: /* a run; a third of it zero */
				for (uint64_t i = 0; i < n; i++) {
					uint64_t x = tu_rand(&rs), y = tu_rand(&rs);
					if (x % 3 == 0)
						x = y = 0;
					hm_store_be64(buf + i * HPTE64_SIZE, x);
					hm_store_be64(buf + i * HPTE64_SIZE + 8, y);
				}
				if (tu_rand(&rs) & 1)
					hpt_write_entries(h, s, n, buf);
				else
					hpt_write_entries_exclusive(h, s, n, buf);
				break;
			case 3:
				hpt_clear_entries(h, s, n);
				break;
			case 4: {
				uint64_t ov;
				hpt_read_entry(h, s, &ov, &r);
				hpt_h_remove(h, 0, s, 0, NULL, NULL);
				break;
			}
			default: {
				uint64_t args[8] = {0};
				for (int k = 0; k < 4; k++)
					args[2 * k] = H_BULK_REMOVE_REQUEST | (tu_rand(&rs) % slots);
				hpt_h_bulk_remove(h, args);
				break;
			}
			}
		}
		uint8_t want[32], got[32];
		uint64_t nv, nb, gv, gb;
		reference(h, want, &nv, &nb);
		for (int mode = HPT_READ_LOCKED; mode <= HPT_READ_QUIESCENT; mode++) {
			assert_int_equal(hpt_summary(h, (hpt_read_mode_t)mode, &gv, &gb, got), 0);
			assert_memory_equal(got, want, 32);
			assert_true(gv == nv && gb == nb);
		}
		hpt_count(h, &gv, &gb);
		assert_true(gv == nv && gb == nb);
		hpt_count(h, &gv, NULL);
		assert_true(gv == nv);
		assert_int_equal(hpt_digest(h, got), 0);
		assert_memory_equal(got, want, 32);
		if (round % 4 == 3)
			hpt_track_stop(h);
	}
	free(buf);
	hpt_destroy(h);
}

/* Resident set in bytes (Linux /proc), or 0 when it cannot be read. */
static uint64_t rss_bytes(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	unsigned long size = 0, res = 0;
	if (!f)
		return 0;
	if (fscanf(f, "%lu %lu", &size, &res) != 2)
		res = 0;
	fclose(f);
	return (uint64_t)res * 4096;
}

/* hpt_populate backs the whole table with memory and changes no entry. */
static void test_populate(void **state)
{
	(void)state;
	uint64_t rs = tu_seed("populate");
	hpt_t *h, *twin;
	assert_int_equal(hpt_create(26, NULL, &h, NULL), 0); /* 64 MiB */
	assert_int_equal(hpt_create(26, NULL, &twin, NULL), 0);
	for (int i = 0; i < 1000; i++) {
		uint64_t slot = tu_rand(&rs) % (hpt_slots(h) / 8), v = tu_rand(&rs) | 1, r = tu_rand(&rs);
		hpt_write_entry(h, slot, v, r);
		hpt_write_entry(twin, slot, v, r);
	}
	/* Measured before any walk: reading a lazily mapped table faults it
	 * in on some kernels, which is the point of populating. */
	uint64_t r0 = rss_bytes();
	assert_int_equal(hpt_populate(h, NULL), 0);
	uint64_t r1 = rss_bytes();
	uint8_t before[32], after[32];
	assert_int_equal(hpt_digest(twin, before), 0);
	assert_int_equal(hpt_digest(h, after), 0);
	assert_memory_equal(before, after, 32);
	hpt_destroy(twin);
	if (r0 && r1) /* 7/8 of the table was never written: now it is resident */
		assert_true(r1 - r0 >= (UINT64_C(1) << 26) / 2);
	assert_int_equal(hpt_populate(h, NULL), 0); /* again: nothing changes */
	assert_int_equal(hpt_digest(h, after), 0);
	assert_memory_equal(before, after, 32);
	/* after a resize, the new table is the one populated */
	assert_int_equal(hpt_reset(h, 20, NULL), 0);
	assert_int_equal(hpt_populate(h, NULL), 0);
	uint64_t nv;
	hpt_count(h, &nv, NULL);
	assert_int_equal(nv, 0);
	hpt_destroy(h);
}

/*
 * Expand hpt_read_chunks' output into hpt_read_entries' layout (n x 16
 * bytes, zeros for invalid slots), checking its shape on the way: the
 * joined head, then runs in slot order, each behind its header (be32 slot,
 * be16 length, be16 0), never adjacent to the previous run (they would be
 * one), every entry valid with 0x40 clear, the counts and the last run's
 * record right, and nothing written past the reported length. Returns the
 * valid count.
 */
static uint64_t chunks_expand(hpt_t *h, uint64_t first, uint64_t n, bool join, uint8_t *buf)
{
	size_t cap = (size_t)n * 16 + ((size_t)n / 2 + 1) * 8;
	uint8_t *out = malloc(cap + 64);
	assert_non_null(out);
	memset(out, 0xA5, cap + 64);
	hpt_chunks_t info;
	memset(&info, 0x5A, sizeof(info));
	uint64_t nv = hpt_read_chunks(h, first, n, out, join, &info);
	uint64_t slots = hpt_slots(h);
	uint64_t nn = first >= slots ? 0 : (n > slots - first ? slots - first : n);
	memset(buf, 0, (size_t)n * 16);
	assert_true(nv == info.nvalid);
	assert_true(info.len <= cap);
	for (size_t i = info.len; i < cap + 64; i++)
		assert_int_equal(out[i], 0xA5);
	if (!join)
		assert_true(info.joined == 0);
	memcpy(buf, out, info.joined * 16);
	uint64_t count = info.joined, prev_end = first + info.joined, runs = 0;
	size_t at = info.joined * 16, last = 0;
	while (at < info.len) {
		assert_true(info.len - at >= 8 + 16);
		uint64_t slot = hm_load_be32(out + at), len = hm_load_be16(out + at + 4);
		assert_int_equal(hm_load_be16(out + at + 6), 0);
		assert_true(len >= 1);
		if (runs > 0 || info.joined > 0 || join)
			assert_true(slot > prev_end); /* else it would continue a run */
		else
			assert_true(slot >= first);
		assert_true(slot + len <= first + nn);
		memcpy(buf + (slot - first) * 16, out + at + 8, len * 16);
		last = at;
		at += 8 + len * 16;
		prev_end = slot + len;
		count += len;
		runs++;
	}
	assert_true(at == info.len);
	assert_true(count == nv);
	assert_true(runs == info.nruns);
	if (runs) {
		assert_true(info.last_pos == last);
		assert_true(info.last_slot == hm_load_be32(out + last));
		assert_true(info.last_n == hm_load_be16(out + last + 4));
	}
	for (uint64_t i = 0; i < nn; i++) {
		const uint8_t *e = buf + i * 16;
		if (e[7] & 1)
			assert_int_equal(e[7] & 0x40, 0);
	}
	free(out);
	return nv;
}

/* Fill a table with runs of assorted lengths (1 .. 300 slots, crossing
 * 64-slot groups) at about per_mille density; bit 0x40 set in some V. */
static void fill_runs(hpt_t *h, uint64_t *rs, unsigned per_mille)
{
	uint64_t slots = hpt_slots(h);
	hpt_clear_entries(h, 0, slots);
	for (uint64_t s = 0; s < slots;) {
		uint64_t len = 1 + tu_rand(rs) % (tu_rand(rs) % 4 ? 8 : 300);
		bool valid = tu_rand(rs) % 1000 < per_mille;
		for (uint64_t i = 0; i < len && s < slots; i++, s++) {
			if (!valid)
				continue;
			uint64_t v = (tu_rand(rs) & HPTE64_V_AVPN) | HPTE64_V_VALID |
				     (tu_rand(rs) % 5 == 0 ? HPTE64_V_HVLOCK : 0);
			assert_true(hpt_write_entry(h, s, v, tu_rand(rs) & ~UINT64_C(0xf)));
		}
	}
}

/* hpt_read_chunks gives exactly hpt_read_entries' entries, at any density,
 * range and join, with tracking off (locked reads), on (lock-free,
 * validated) and on with changed slots (their groups read locked). */
static void test_read_chunks(void **state)
{
	(void)state;
	uint64_t rs = tu_seed("read_chunks");
	hpt_t *h;
	assert_int_equal(hpt_create(18, NULL, &h, NULL), 0);
	uint64_t slots = hpt_slots(h);
	uint8_t *a = malloc((slots + 64) * 16), *b = malloc((slots + 64) * 16);
	assert_non_null(a);
	assert_non_null(b);
	static const unsigned density[] = { 0, 50, 333, 700, 1000 };
	for (int mode = 0; mode < 3; mode++) {
		for (size_t d = 0; d < sizeof(density) / sizeof(density[0]); d++) {
			if (mode)
				hpt_track_stop(h);
			fill_runs(h, &rs, density[d]);
			if (mode) {
				assert_int_equal(hpt_track_start(h, NULL), 0);
				/* mode 2: rewrite some slots after the start (bits set). */
				for (int i = 0; mode == 2 && i < 200; i++) {
					uint64_t s = tu_rand(&rs) % slots;
					hpt_write_entry(h, s, tu_rand(&rs) % 3 ? (s << 7) | 1 : 0, s << 12);
				}
			}
			for (int t = 0; t < 60; t++) {
				uint64_t first, n;
				switch (t % 4) {
				case 0: /* whole aligned blocks, as the first pass reads */
					first = (tu_rand(&rs) % (slots / 4096)) * 4096;
					n = 4096;
					break;
				case 1: /* anywhere, any length */
					first = tu_rand(&rs) % slots;
					n = 1 + tu_rand(&rs) % 5000;
					break;
				case 2: /* clipped at the table's end */
					first = slots - 1 - tu_rand(&rs) % 100;
					n = 200;
					break;
				default: /* tiny, inside one group */
					first = tu_rand(&rs) % slots;
					n = 1 + tu_rand(&rs) % 3;
					break;
				}
				bool join = tu_rand(&rs) & 1;
				memset(a, 0, (size_t)n * 16);
				uint64_t nva = hpt_read_entries(h, first, n, a);
				uint64_t nvb = chunks_expand(h, first, n, join, b);
				assert_true(nva == nvb);
				assert_memory_equal(a, b, (size_t)n * 16);
			}
			/* The whole table block by block: every valid entry once. */
			uint64_t total = 0, want = 0;
			hpt_count(h, &want, NULL);
			for (uint64_t s0 = 0; s0 < slots; s0 += 4096)
				total += chunks_expand(h, s0, 4096, false, b);
			assert_true(total == want);
		}
	}
	assert_true(chunks_expand(h, slots, 10, false, b) == 0); /* past the end */
	/* n is clipped to 65535 (a run's be16 length). */
	hpt_t *big;
	assert_int_equal(hpt_create(22, NULL, &big, NULL), 0);
	uint8_t *wire = malloc((size_t)70000 * 16);
	assert_non_null(wire);
	memset(wire, 0, (size_t)70000 * 16);
	for (uint64_t i = 0; i < 70000; i++)
		hm_store_be64(wire + i * 16, (i << 7) | HPTE64_V_VALID);
	assert_true(hpt_write_entries(big, 0, 70000, wire) == 70000);
	uint8_t *o = malloc((size_t)70000 * 16 + 35001 * 8);
	assert_non_null(o);
	hpt_chunks_t ci;
	assert_true(hpt_read_chunks(big, 0, 70000, o, false, &ci) == 65535);
	assert_true(ci.nruns == 1 && ci.last_n == 65535 && hm_load_be16(o + 4) == 65535);
	free(o);
	free(wire);
	hpt_destroy(big);
	hpt_track_stop(h);
	free(a);
	free(b);
	hpt_destroy(h);
}

/* Append a chunk header and n entries (V with the valid bit unless bad ==
 * the entry's number, 0x40 set on odd ones) to p; returns the new end. */
static uint8_t *put_chunk(uint8_t *p, uint32_t first, uint16_t n, uint64_t *rs, int bad)
{
	hm_store_be32(p, first);
	hm_store_be16(p + 4, n);
	hm_store_be16(p + 6, 3); /* an invalid run: not applied by hpt */
	p += 8;
	for (int i = 0; i < n; i++, p += 16) {
		uint64_t v = (tu_rand(rs) << 7) | (i & 1 ? HPTE64_V_HVLOCK : 0);
		v = i == bad ? v & ~HPTE64_V_VALID : v | HPTE64_V_VALID;
		hm_store_be64(p, v);
		hm_store_be64(p + 8, tu_rand(rs));
	}
	return p;
}

/*
 * hpt_write_chunks_exclusive stores what hpt_write_entries stores for each
 * chunk's valid run (0x40 cleared, invalid runs untouched, clipped at the
 * table's end), on the exclusive and the tracked path, and says false for
 * an entry without the valid bit (stored or clipped) and for a cut chunk.
 */
static void test_write_chunks(void **state)
{
	(void)state;
	uint64_t rs = tu_seed("write_chunks");
	for (int tracked = 0; tracked < 2; tracked++) {
		hpt_t *a, *b;
		assert_int_equal(hpt_create(18, NULL, &a, NULL), 0);
		assert_int_equal(hpt_create(18, NULL, &b, NULL), 0);
		if (tracked)
			assert_int_equal(hpt_track_start(b, NULL), 0);
		uint64_t slots = hpt_slots(a);
		uint8_t *buf = malloc(16 * 1024), *p = buf;
		assert_non_null(buf);
		static const struct { uint32_t first; uint16_t n; } c[] = {
			{0, 1}, {5, 7}, {100, 200}, {4000, 3}};
		for (size_t i = 0; i < 4; i++) {
			uint8_t *q = p;
			p = put_chunk(p, c[i].first, c[i].n, &rs, -1);
			hpt_write_entries(a, c[i].first, c[i].n, q + 8);
		}
		/* clipped at the table's end */
		uint8_t *q = p;
		p = put_chunk(p, (uint32_t)(slots - 2), 5, &rs, -1);
		hpt_write_entries(a, slots - 2, 5, q + 8);
		assert_true(hpt_write_chunks_exclusive(b, buf, (size_t)(p - buf)));
		uint8_t da[32], db[32];
		assert_int_equal(hpt_digest(a, da), 0);
		assert_int_equal(hpt_digest(b, db), 0);
		assert_memory_equal(da, db, 32);
		if (tracked) {
			uint64_t cur = 0, first, bits;
			assert_true(hpt_track_take(b, &cur, &first, &bits)); /* marked */
		}
		/* an entry without the valid bit: stored, and false */
		p = put_chunk(buf, 300, 4, &rs, 2);
		assert_false(hpt_write_chunks_exclusive(b, buf, (size_t)(p - buf)));
		uint64_t v, r;
		assert_true(hpt_read_entry(b, 302, &v, &r));
		assert_false(v & HPTE64_V_VALID);
		/* ... also when it lies beyond the table's end (not stored) */
		p = put_chunk(buf, (uint32_t)(slots - 1), 3, &rs, 2);
		assert_false(hpt_write_chunks_exclusive(b, buf, (size_t)(p - buf)));
		/* a cut chunk */
		p = put_chunk(buf, 10, 4, &rs, -1);
		assert_false(hpt_write_chunks_exclusive(b, buf, (size_t)(p - buf) - 1));
		free(buf);
		hpt_destroy(a);
		hpt_destroy(b);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_create_limits),
		cmocka_unit_test(test_big_lazy),
		cmocka_unit_test(test_raw_access),
		cmocka_unit_test(test_tracking),
		cmocka_unit_test(test_digest_kat),
		cmocka_unit_test(test_digest_random),
		cmocka_unit_test(test_write_exclusive_and_summary),
		cmocka_unit_test(test_summary_random),
		cmocka_unit_test(test_populate),
		cmocka_unit_test(test_write_chunks),
		cmocka_unit_test(test_read_chunks),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
