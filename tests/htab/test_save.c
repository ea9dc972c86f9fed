/* SPDX-License-Identifier: MIT */
/*
 * Save side of spapr/htab, single-threaded: no-HPT payloads, first pass then
 * later passes sending only what changed (both scan methods), the iterate
 * budget and rate limit checked inside the scan (a call does at most one
 * unit of work past them, and at least one unit so a tiny budget still
 * progresses), a linear sweep holding a taken word across calls, resize during migration (a PART with the new
 * shift, then a new first pass), complete after a resize refused, run
 * lengths capped at 65535, pending estimates, and the savevm glue.
 */
#include "hpt/hpt_inspect.h"
#include "htab_test.h"

#include "hptmig/savevm.h"

static struct recorder *rec_new(void)
{
	struct recorder *r = malloc(sizeof(*r));
	assert_non_null(r);
	rec_open(r);
	return r;
}

static void rec_free(struct recorder *r)
{
	mig_file_close(r->w, NULL);
	free(r);
}

static int do_setup(struct recorder *r, htab_save_t *s)
{
	rec_begin(r, QEMU_VM_SECTION_START);
	int rc = htab_save_setup(s, r->w);
	rec_end(r);
	return rc;
}

static int do_iterate(struct recorder *r, htab_save_t *s, uint64_t budget)
{
	rec_begin(r, QEMU_VM_SECTION_PART);
	int rc = htab_save_iterate(s, r->w, budget);
	rec_end(r);
	return rc;
}

static int do_complete(struct recorder *r, htab_save_t *s)
{
	rec_begin(r, QEMU_VM_SECTION_END);
	int rc = htab_save_complete(s, r->w);
	rec_end(r);
	return rc;
}

static void test_no_hpt(void **state)
{
	(void)state;
	struct recorder *r = rec_new();
	htab_save_t *s;
	assert_int_equal(htab_save_create(NULL, NULL, &s, NULL), 0);
	assert_int_equal(do_setup(r, s), 0);
	assert_int_equal(do_iterate(r, s, 0), 1);
	assert_int_equal(do_complete(r, s), 0);
	for (int i = 0; i < 3; i++) {
		size_t len;
		const uint8_t *p = rec_payload(r, i, &len);
		assert_int_equal(len, 4);
		assert_int_equal(hm_load_be32(p), HTAB_HDR_NO_HPT);
	}
	htab_loader_t *l = rec_replay(r);
	htab_summary_t sum;
	assert_int_equal(htab_loader_summary(l, &sum, NULL), 0);
	assert_true(sum.no_hpt);
	htab_loader_destroy(l);
	htab_save_destroy(s);
	rec_free(r);
}

/* First pass, then changes sent by later passes only; both methods. */
static void check_passes(enum htab_scan scan)
{
	uint64_t seed = tu_seed(scan == HTAB_SCAN_BITMAP ? "htab passes bitmap" : "htab passes linear");
	hpt_t *t;
	assert_int_equal(hpt_create(20, NULL, &t, NULL), 0);
	fill_random(t, &seed, 30);
	uint64_t valid;
	hpt_count(t, &valid, NULL);
	struct recorder *r = rec_new();
	htab_save_opts_t o;
	htab_save_opts_default(&o);
	o.scan = scan;
	htab_save_t *s;
	assert_int_equal(htab_save_create(t, &o, &s, NULL), 0);
	assert_int_equal(do_setup(r, s), 0);
	assert_true(hpt_tracking(t));
	/* pending before the first pass: about the valid bytes (sampled density). */
	uint64_t pend = htab_save_pending(s);
	assert_true(pend > valid * 16 / 3 && pend < valid * 16 * 3);
	int rc;
	int calls = 0;
	while ((rc = do_iterate(r, s, UINT64_C(1000000000))) == 0)
		assert_true(++calls < 1000);
	assert_int_equal(rc, 1);
	htab_save_stats_t st;
	htab_save_get_stats(s, &st);
	assert_true(st.first_pass_done);
	assert_int_equal(st.valid_sent, valid);
	assert_int_equal(st.invalid_sent, 0);
	assert_true(htab_save_pending(s) <= 12);

	/* Change k entries (some removed): the next pass sends exactly those. */
	uint64_t k = 1 + tu_rand(&seed) % 500;
	for (uint64_t i = 0; i < k; i++) {
		uint64_t slot = tu_rand(&seed) % hpt_slots(t), v, rv;
		if (tu_rand(&seed) % 4 == 0) {
			v = 0;
			rv = 0;
		} else {
			rand_entry(&seed, &v, &rv);
		}
		hpt_write_entry(t, slot, v, rv);
	}
	uint64_t npend = hpt_track_pending(t);
	assert_true(npend <= k);
	assert_true(htab_save_pending(s) >= npend * 16);
	assert_int_equal(do_iterate(r, s, UINT64_C(1000000000)), 1);
	htab_save_stats_t st2;
	htab_save_get_stats(s, &st2);
	assert_int_equal((st2.valid_sent - st.valid_sent) + (st2.invalid_sent - st.invalid_sent), npend);
	/* Nothing changed: a pass sends nothing. */
	assert_int_equal(do_iterate(r, s, UINT64_C(1000000000)), 1);
	htab_save_get_stats(s, &st);
	assert_int_equal(st.valid_sent, st2.valid_sent);
	assert_int_equal(st.invalid_sent, st2.invalid_sent);
	/* More changes, then complete sends them. */
	for (int i = 0; i < 100; i++) {
		uint64_t v, rv;
		rand_entry(&seed, &v, &rv);
		hpt_write_entry(t, tu_rand(&seed) % hpt_slots(t), v, rv);
	}
	assert_int_equal(do_complete(r, s), 0);
	htab_loader_t *l = rec_replay(r);
	assert_same_table(t, l);
	htab_loader_destroy(l);
	htab_save_destroy(s);
	assert_false(hpt_tracking(t));
	rec_free(r);
	hpt_destroy(t);
}

static void test_passes_bitmap(void **state)
{
	(void)state;
	check_passes(HTAB_SCAN_BITMAP);
}

static void test_passes_linear(void **state)
{
	(void)state;
	check_passes(HTAB_SCAN_LINEAR);
}

/*
 * htab_save_pass_pending (what the pass being sent still sends, for
 * progress displays): during the first pass, entries dirtied behind its
 * scan do not count (a later pass sends them; counting them made "entries
 * left" climb all through pass 1), while htab_save_pending counts them;
 * after the first pass it is the changed slots.
 */
static void test_pass_pending(void **state)
{
	(void)state;
	uint64_t seed = tu_seed("htab pass pending");
	hpt_t *t;
	assert_int_equal(hpt_create(20, NULL, &t, NULL), 0);
	fill_random(t, &seed, 30);
	struct recorder *r = rec_new();
	htab_save_t *s;
	assert_int_equal(htab_save_create(t, NULL, &s, NULL), 0);
	assert_int_equal(do_setup(r, s), 0);
	assert_int_equal(do_iterate(r, s, 1), 0); /* one block of the first pass */
	htab_save_stats_t st;
	htab_save_get_stats(s, &st);
	assert_false(st.first_pass_done);
	assert_true(st.first_pass_next > 0 && st.first_pass_next < hpt_slots(t));
	uint64_t pass0 = htab_save_pass_pending(s), all0 = htab_save_pending(s);
	assert_true(pass0 > 0);
	/* the guest changes 1000 entries the scan has already read */
	for (int i = 0; i < 1000; i++) {
		uint64_t v, rv;
		rand_entry(&seed, &v, &rv);
		hpt_write_entry(t, tu_rand(&seed) % st.first_pass_next, v, rv);
	}
	uint64_t dirty = hpt_track_pending(t);
	assert_true(dirty > 0);
	print_message("first pass at slot %llu: pass pending %llu -> %llu, pending %llu -> %llu "
		      "(%llu dirtied)\n",
		      (unsigned long long)st.first_pass_next, (unsigned long long)pass0,
		      (unsigned long long)htab_save_pass_pending(s), (unsigned long long)all0,
		      (unsigned long long)htab_save_pending(s), (unsigned long long)dirty);
	assert_int_equal(htab_save_pass_pending(s), pass0);
	assert_true(htab_save_pending(s) >= all0 + dirty * 16);
	/* the first pass done, the pass pending is the changes */
	while (!st.first_pass_done) {
		(void)do_iterate(r, s, 1);
		htab_save_get_stats(s, &st);
	}
	uint64_t changed = hpt_track_pending(t);
	assert_true(htab_save_pass_pending(s) >= changed * 16);
	assert_true(htab_save_pass_pending(s) < htab_save_pending(s));
	htab_save_destroy(s);
	hpt_destroy(t);
	rec_free(r);
}

/*
 * Budget and rate limit are checked inside the scan: with a budget of 1 ns
 * each call does at most one unit (a block of 4096 slots) of the first pass,
 * however large the table; complete still finishes everything.
 */
static void test_budget_inside_scan(void **state)
{
	(void)state;
	uint64_t seed = tu_seed("htab budget");
	for (int m = 0; m < 2; m++) {
		hpt_t *t;
		assert_int_equal(hpt_create(22, NULL, &t, NULL), 0);
		fill_random(t, &seed, 5);
		struct recorder *r = rec_new();
		htab_save_opts_t o;
		htab_save_opts_default(&o);
		o.scan = m ? HTAB_SCAN_LINEAR : HTAB_SCAN_BITMAP;
		htab_save_t *s;
		assert_int_equal(htab_save_create(t, &o, &s, NULL), 0);
		assert_int_equal(do_setup(r, s), 0);
		uint64_t prev = 0;
		for (int i = 0; i < 5; i++) {
			assert_int_equal(do_iterate(r, s, 1), 0);
			htab_save_stats_t st;
			htab_save_get_stats(s, &st);
			assert_true(st.first_pass_next - prev <= 4096);
			assert_true(st.first_pass_next > prev); /* progress however small the budget */
			prev = st.first_pass_next;
		}
		/* Rate limit: 1 MB/s = 100 KB per window; the call stops near it. */
		mig_file_set_rate_limit(r->w, 1000000);
		size_t before = (size_t)mig_file_offset(r->w);
		assert_int_equal(do_iterate(r, s, UINT64_C(10000000000)), 0);
		size_t sent = (size_t)mig_file_offset(r->w) - before;
		assert_true(sent <= 100000 + 4096 * 24 + 64);
		mig_file_set_rate_limit(r->w, 0);
		assert_int_equal(do_complete(r, s), 0);
		htab_loader_t *l = rec_replay(r);
		assert_same_table(t, l);
		htab_loader_destroy(l);
		htab_save_destroy(s);
		rec_free(r);
		hpt_destroy(t);
	}
}

/*
 * Regressions: a linear sweep holds the bits of a word it took ahead of its
 * cursor; complete after an interrupted sweep must still send that word's
 * changes (once dropped when complete restarted the sweep) and changes made
 * after the take in words between the cursor and the held word (once
 * skipped: the held word meant "no takes before it"). Both were found by
 * the under-fire round trip.
 */
static void test_linear_held_word(void **state)
{
	(void)state;
	uint64_t seed = tu_seed("htab linear held word");
	hpt_t *t;
	assert_int_equal(hpt_create(20, NULL, &t, NULL), 0);
	fill_random(t, &seed, 10);
	struct recorder *r = rec_new();
	htab_save_opts_t o;
	htab_save_opts_default(&o);
	o.scan = HTAB_SCAN_LINEAR;
	htab_save_t *s;
	assert_int_equal(htab_save_create(t, &o, &s, NULL), 0);
	assert_int_equal(do_setup(r, s), 0);
	while (do_iterate(r, s, UINT64_C(1000000000)) == 0)
		;
	/* Changes only in the 4th block: the sweep's first take holds that word. */
	uint64_t slot = 3 * 4096 + 5, v, rv;
	rand_entry(&seed, &v, &rv);
	assert_true(hpt_write_entry(t, slot, v, rv));
	assert_true(hpt_write_entry(t, slot + 1, 0, 0));
	assert_int_equal(do_iterate(r, s, 1), 0); /* one block: the word is held */
	htab_save_stats_t st;
	htab_save_get_stats(s, &st);
	assert_int_equal(hpt_track_pending(t), 0);
	/* A change between the cursor and the held word, after the take. */
	rand_entry(&seed, &v, &rv);
	assert_true(hpt_write_entry(t, 4096 + 7, v, rv));
	assert_int_equal(do_complete(r, s), 0);
	htab_save_stats_t st2;
	htab_save_get_stats(s, &st2);
	assert_true(st2.valid_sent > st.valid_sent);
	htab_loader_t *l = rec_replay(r);
	assert_same_table(t, l);
	htab_loader_destroy(l);
	htab_save_destroy(s);
	rec_free(r);
	hpt_destroy(t);
}

/* Enter n bolted 4K entries through H_ENTER (so resize can rehash them). */
static uint64_t enter_bolted(hpt_t *t, uint64_t *seed, int n)
{
	uint64_t ok = 0;
	for (int i = 0; i < n; i++) {
		uint64_t vsid = 1 + tu_rand(seed) % 100000, ea = (tu_rand(seed) % 65536) << 12;
		uint64_t pteg = hpt_pteg_index(hpt_shift(t), HPT_SEG_256M, vsid, ea, 12, false);
		uint64_t v = hpt_mapping_v(HPT_SEG_256M, vsid, ea, false, false) | HPTE64_V_BOLTED;
		uint64_t rr = ((uint64_t)i << 12) | HPTE64_R_M | 0x2;
		if (hpt_h_enter(t, 0, pteg * 8, v, rr, NULL) == H_SUCCESS)
			ok++;
	}
	return ok;
}

static void test_resize(void **state)
{
	(void)state;
	uint64_t seed = tu_seed("htab resize");
	hpt_t *t;
	assert_int_equal(hpt_create(19, NULL, &t, NULL), 0);
	assert_true(enter_bolted(t, &seed, 3000) > 1000);
	struct recorder *r = rec_new();
	htab_save_t *s;
	assert_int_equal(htab_save_create(t, NULL, &s, NULL), 0);
	assert_int_equal(do_setup(r, s), 0);
	assert_int_equal(do_iterate(r, s, 1), 0); /* part of the first pass */
	assert_int_equal(hpt_h_resize_prepare(t, 0, 20), H_SUCCESS);
	assert_int_equal(hpt_h_resize_commit(t, 0, 20), H_SUCCESS);
	/* complete now cannot tell the destination: refused, source unharmed. */
	mig_file_t *scratch;
	assert_int_equal(mig_file_open_mem_writer(0, &scratch), 0);
	assert_int_equal(htab_save_complete(s, scratch), HM_E_STATE);
	mig_file_close(scratch, NULL);
	/* The next PART is the new shift alone. */
	assert_int_equal(do_iterate(r, s, 0), 0);
	size_t len;
	const uint8_t *p = rec_payload(r, r->n - 1, &len);
	assert_int_equal(len, 4);
	assert_int_equal(hm_load_be32(p), 20);
	htab_save_stats_t st;
	htab_save_get_stats(s, &st);
	assert_int_equal(st.headers, 1);
	assert_false(st.first_pass_done);
	while (do_iterate(r, s, UINT64_C(1000000000)) == 0)
		;
	enter_bolted(t, &seed, 100);
	assert_int_equal(do_complete(r, s), 0);
	htab_loader_t *l = rec_replay(r);
	htab_load_stats_t ls;
	htab_loader_get_stats(l, &ls);
	assert_int_equal(ls.tables, 2);
	assert_int_equal(ls.shift, 20);
	assert_same_table(t, l);
	htab_loader_destroy(l);
	htab_save_destroy(s);
	rec_free(r);
	hpt_destroy(t);
}

/*
 * The whole table as one END payload, by the canonical encoder (by_saver
 * false) or by the saver's first pass in complete (true): the chunk bytes
 * (be32 0, chunks, end mark) and their length. Free with whole_pass_free.
 */
struct whole_pass {
	mig_file_t *w;
	htab_save_t *s;
};

static const uint8_t *whole_pass_encode(struct whole_pass *wp, hpt_t *t, int by_saver, size_t *len)
{
	wp->s = NULL;
	assert_int_equal(mig_file_open_mem_writer(0, &wp->w), 0);
	if (!by_saver) {
		assert_int_equal(htab_encode_table(t, wp->w), 0);
	} else {
		assert_int_equal(htab_save_create(t, NULL, &wp->s, NULL), 0);
		assert_int_equal(htab_save_setup(wp->s, wp->w), 0);
		assert_int_equal(htab_save_complete(wp->s, wp->w), 0);
	}
	const uint8_t *p = mig_file_mem_data(wp->w, len);
	if (by_saver) {
		p += 4; /* the START record's shift */
		*len -= 4;
	}
	return p;
}

static void whole_pass_free(struct whole_pass *wp)
{
	htab_save_destroy(wp->s);
	mig_file_close(wp->w, NULL);
}

/* A full table: runs are cut at 65535 entries and continue across blocks. */
static void test_run_max(void **state)
{
	(void)state;
	uint64_t seed = tu_seed("htab run max");
	hpt_t *t;
	assert_int_equal(hpt_create(21, NULL, &t, NULL), 0);
	fill_random(t, &seed, 100);
	for (int m = 0; m < 2; m++) {
		struct whole_pass wp;
		size_t len;
		const uint8_t *p = whole_pass_encode(&wp, t, m, &len);
		/* 131072 slots: 65535 + 65535 + 2. */
		assert_int_equal(wire_check(p, len, QEMU_VM_SECTION_END, hpt_slots(t)), 3);
		assert_int_equal(hm_load_be16(p + 8), 65535);
		whole_pass_free(&wp);
	}
	hpt_destroy(t);
}

/*
 * QEMU's first pass (htab_save_first_pass), written out slot by slot here
 * as an independent reference: valid runs cut at 65535, nothing else.
 * Returns the END payload (be32 0, chunks, end mark); *len its length.
 */
static uint8_t *reference_first_pass(hpt_t *t, size_t *len)
{
	uint64_t slots = hpt_slots(t);
	uint8_t *buf = malloc(4 + slots * 24 + 8), *p = buf;
	assert_non_null(buf);
	hm_store_be32(p, 0), p += 4;
	for (uint64_t i = 0; i < slots;) {
		uint64_t v, r;
		while (i < slots && hpt_read_entry(t, i, &v, &r) && !(v & HPTE64_V_VALID))
			i++;
		uint64_t start = i;
		uint8_t *hdr = p;
		p += 8;
		while (i < slots && i - start < 65535 && hpt_read_entry(t, i, &v, &r) &&
		       (v & HPTE64_V_VALID)) {
			hm_store_be64(p, v), hm_store_be64(p + 8, r), p += 16;
			i++;
		}
		if (i == start) {
			p = hdr;
			continue;
		}
		hm_store_be32(hdr, (uint32_t)start);
		hm_store_be16(hdr + 4, (uint16_t)(i - start));
		hm_store_be16(hdr + 6, 0);
	}
	memset(p, 0, 8), p += 8;
	*len = (size_t)(p - buf);
	return buf;
}

static void set_run(hpt_t *t, uint64_t first, uint64_t n, uint64_t *seed)
{
	for (uint64_t i = first; i < first + n && i < hpt_slots(t); i++)
		assert_true(hpt_write_entry(t, i, (tu_rand(seed) & HPTE64_V_AVPN) | HPTE64_V_VALID,
					    tu_rand(seed) & ~UINT64_C(0xf)));
}

/*
 * The first pass (and the canonical encoder) byte for byte against the
 * reference, on tables whose runs meet the block (4096 slots) and chunk
 * (65535) limits in every way: a run cut at 65535 exactly at a block's end
 * and continuing in the next block, runs crossing blocks and 64-slot
 * groups, a run ending at a block's end followed by an invalid slot, runs
 * at the table's ends, and random sparse and dense tables.
 */
static void test_first_pass_reference(void **state)
{
	(void)state;
	uint64_t seed = tu_seed("htab first pass reference");
	for (int c = 0; c < 6; c++) {
		hpt_t *t;
		assert_int_equal(hpt_create(21, NULL, &t, NULL), 0); /* 131072 slots */
		uint64_t slots = hpt_slots(t);
		switch (c) {
		case 0: /* 65535 ending at the end of block 19, then more */
			set_run(t, 20 * 4096 - 65535, 65535 + 5000, &seed);
			break;
		case 1: /* exactly 65535 ending at a block's end, next block starts invalid */
			set_run(t, 20 * 4096 - 65535, 65535, &seed);
			set_run(t, 20 * 4096 + 1, 10, &seed);
			break;
		case 2: /* block-crossing and group-crossing runs, ends of the table */
			set_run(t, 0, 1, &seed);
			set_run(t, 4096 - 3, 7, &seed);
			set_run(t, 8192 - 64, 64, &seed);
			set_run(t, 3 * 4096 + 63, 2, &seed);
			set_run(t, 5 * 4096, 4096 * 3 + 1, &seed);
			set_run(t, slots - 70000, 70000, &seed);
			break;
		case 3:
			fill_random(t, &seed, 5);
			break;
		case 4:
			fill_random(t, &seed, 33);
			break;
		default:
			fill_random(t, &seed, 95);
			break;
		}
		size_t rlen;
		uint8_t *ref = reference_first_pass(t, &rlen);
		for (int m = 0; m < 2; m++) {
			struct whole_pass wp;
			size_t len;
			const uint8_t *p = whole_pass_encode(&wp, t, m, &len);
			if (len != rlen || memcmp(p, ref, len) != 0)
				fail_msg("case %d, %s: %zu bytes, the reference %zu", c,
					 m ? "first pass" : "encoder", len, rlen);
			whole_pass_free(&wp);
		}
		free(ref);
		hpt_destroy(t);
	}
}

/* The savevm glue: a whole stream written and read by the framing layer. */
static void test_savevm_glue(void **state)
{
	(void)state;
	uint64_t seed = tu_seed("htab savevm glue");
	hpt_t *t;
	assert_int_equal(hpt_create(18, NULL, &t, NULL), 0);
	fill_random(t, &seed, 20);
	savevm_registry_t *reg;
	htab_save_t *s;
	hm_error_t e;
	hm_error_clear(&e);
	assert_int_equal(savevm_registry_new(&reg), 0);
	assert_int_equal(htab_save_create(t, NULL, &s, NULL), 0);
	assert_int_equal(htab_register_save(reg, s, &e), 0);
	mig_file_t *w;
	assert_int_equal(mig_file_open_mem_writer(0, &w), 0);
	assert_int_equal(savevm_write_header(reg, w, "pseries-10.0", &e), 0);
	assert_int_equal(savevm_live_setup_all(reg, w, &e), 0);
	assert_true(savevm_live_pending_total(reg) > 0);
	int rc;
	while ((rc = savevm_live_iterate(reg, w, UINT64_C(5000000), &e)) == 0)
		;
	assert_int_equal(rc, 1);
	hpt_write_entry(t, 77, 0x12345601, 0x99);
	assert_int_equal(savevm_live_complete_all(reg, w, &e), 0);
	assert_int_equal(savevm_write_full_all(reg, w, &e), 0);
	assert_int_equal(savevm_write_eof_and_vmdesc(reg, w, &e), 0);
	savevm_live_cleanup_all(reg);
	savevm_registry_free(reg);
	size_t len;
	const uint8_t *p = mig_file_mem_data(w, &len);

	savevm_registry_t *rr;
	htab_loader_t *l;
	assert_int_equal(savevm_registry_new(&rr), 0);
	assert_int_equal(htab_loader_create(NULL, NULL, &l), 0);
	assert_int_equal(htab_register_load(rr, l, &e), 0);
	mig_file_t *rd;
	assert_int_equal(mig_file_open_mem_reader(p, len, &rd), 0);
	rc = savevm_load_stream(rd, rr, &e);
	if (rc)
		fail_msg("load: %s", e.msg);
	assert_same_table(t, l);
	mig_file_close(rd, NULL);
	savevm_registry_free(rr);
	htab_loader_destroy(l);
	htab_save_destroy(s);
	mig_file_close(w, NULL);
	hpt_destroy(t);
}

static void test_misuse(void **state)
{
	(void)state;
	hpt_t *t;
	htab_save_t *s;
	mig_file_t *w;
	assert_int_equal(hpt_create(18, NULL, &t, NULL), 0);
	assert_int_equal(mig_file_open_mem_writer(0, &w), 0);
	assert_int_equal(htab_save_create(t, NULL, &s, NULL), 0);
	assert_int_equal(htab_save_iterate(s, w, 0), HM_E_STATE);
	htab_save_destroy(s);
	mig_file_close(w, NULL);
	/* Someone else tracking: setup fails with their code, no crash. */
	assert_int_equal(hpt_track_start(t, NULL), 0);
	assert_int_equal(mig_file_open_mem_writer(0, &w), 0);
	assert_int_equal(htab_save_create(t, NULL, &s, NULL), 0);
	assert_int_equal(htab_save_setup(s, w), HM_E_STATE);
	htab_save_destroy(s);
	assert_true(hpt_tracking(t)); /* not ours to stop */
	mig_file_close(w, NULL);
	enum htab_scan m;
	assert_int_equal(htab_scan_parse("linear", &m), 0);
	assert_int_equal(m, HTAB_SCAN_LINEAR);
	assert_int_equal(htab_scan_parse("fast", &m), HM_E_FORMAT);
	assert_string_equal(htab_scan_name(HTAB_SCAN_BITMAP), "bitmap");
	hpt_destroy(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_no_hpt),		   cmocka_unit_test(test_passes_bitmap),
		cmocka_unit_test(test_passes_linear),	   cmocka_unit_test(test_budget_inside_scan),
		cmocka_unit_test(test_resize),		   cmocka_unit_test(test_run_max),
		cmocka_unit_test(test_savevm_glue),	   cmocka_unit_test(test_misuse),
		cmocka_unit_test(test_linear_held_word),
		cmocka_unit_test(test_first_pass_reference),
		cmocka_unit_test(test_pass_pending),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
