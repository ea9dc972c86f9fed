/* SPDX-License-Identifier: MIT */
/*
 * The spapr/htab loader against golden vectors: records cut from real QEMU
 * streams (tests/htab/golden/, .bin files) that must load to known tables, and the
 * crafted vectors of vectors.list (*.rec) that must load or fail with their
 * named HM_E_* code. Also: error offsets and messages, the max_shift cap,
 * loading into a caller's table, and a randomized encode/load property.
 */
#include "hpt/hpt_inspect.h"
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hptmig/htab.h"

static char *golden_path(const char *name)
{
	static char p[4096];
	snprintf(p, sizeof(p), "%s/tests/htab/golden/%s", tu_source_dir(), name);
	return p;
}

static uint8_t *read_golden(const char *name, size_t *len)
{
	uint8_t *d = NULL;
	int rc = tu_read_file(golden_path(name), &d, len);
	if (rc != 0)
		fail_msg("cannot read golden file %s: %d", golden_path(name), rc);
	return d;
}

static int code_by_name(const char *name)
{
	static const int codes[] = { HM_OK,	     HM_E_FORMAT, HM_E_TRUNCATED, HM_E_RANGE,
				     HM_E_VERSION,  HM_E_STATE,  HM_E_UNKNOWN };
	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
		if (strcmp(hm_err_name(codes[i]), name) == 0 ||
		    (codes[i] == HM_OK && strcmp(name, "HM_OK") == 0))
			return codes[i];
	fail_msg("unknown code name %s", name);
	return 1;
}

/* Load a .rec container (u8 type, be32 len, payload)*; returns the first error code. */
static int load_rec(htab_loader_t *l, const uint8_t *d, size_t len, hm_error_t *e)
{
	size_t pos = 0;
	while (pos < len) {
		assert_true(len - pos >= 5);
		int type = d[pos];
		uint32_t n = hm_load_be32(d + pos + 1);
		pos += 5;
		assert_true(n <= len - pos);
		int rc = htab_loader_load_buffer(l, d + pos, n, type, e);
		if (rc)
			return rc;
		pos += n;
	}
	return 0;
}

static htab_loader_t *load_rec_file(const char *name, int expect, hm_error_t *e)
{
	size_t len;
	uint8_t *d = read_golden(name, &len);
	htab_loader_t *l;
	hm_error_clear(e);
	assert_int_equal(htab_loader_create(NULL, NULL, &l), 0);
	int rc = load_rec(l, d, len, e);
	free(d);
	if (rc != expect)
		fail_msg("%s: expected %s, got %s: %s", name, hm_err_name(expect), hm_err_name(rc),
			 e->msg);
	if (expect != 0) {
		assert_int_equal(e->code, expect);
		assert_true(strlen(e->msg) > 0);
		assert_non_null(strstr(e->msg, "spapr/htab"));
		assert_true(e->offset >= 0);
	}
	return l;
}

static void test_vector_list(void **state)
{
	(void)state;
	FILE *f = fopen(golden_path("vectors.list"), "r");
	assert_non_null(f);
	char line[512];
	int n = 0;
	while (fgets(line, sizeof(line), f)) {
		char file[128], code[64];
		if (line[0] == '#' || sscanf(line, "%127s %63s", file, code) != 2)
			continue;
		hm_error_t e;
		htab_loader_t *l = load_rec_file(file, code_by_name(code), &e);
		htab_loader_destroy(l);
		n++;
	}
	fclose(f);
	assert_true(n >= 20);
}

static uint64_t entry_v(hpt_t *t, uint64_t slot, uint64_t *r)
{
	uint64_t v;
	assert_true(hpt_read_entry(t, slot, &v, r));
	return v;
}

static void test_vector_contents(void **state)
{
	(void)state;
	hm_error_t e;
	htab_load_stats_t st;
	htab_summary_t sum;
	uint64_t r;

	htab_loader_t *l = load_rec_file("ok-hv-bit.rec", 0, &e);
	assert_int_equal(entry_v(htab_loader_table(l), 9, &r), UINT64_C(0x4000000012345f95));
	htab_loader_destroy(l);

	l = load_rec_file("ok-last-slot.rec", 0, &e);
	assert_int_equal(htab_loader_summary(l, &sum, NULL), 0);
	assert_int_equal(sum.valid, 2);
	assert_int_equal(entry_v(htab_loader_table(l), 16383, &r), 0);
	assert_int_equal(entry_v(htab_loader_table(l), 16381, &r), UINT64_C(0x4000000012346005));
	htab_loader_destroy(l);

	l = load_rec_file("ok-kvm-first-pass.rec", 0, &e);
	htab_loader_get_stats(l, &st);
	assert_int_equal(st.chunks, 2);
	assert_int_equal(st.valid_sent, 3);
	assert_int_equal(st.invalid_sent, 13);
	assert_int_equal(st.records, 3);
	htab_loader_destroy(l);

	l = load_rec_file("ok-resize.rec", 0, &e);
	htab_loader_get_stats(l, &st);
	assert_int_equal(st.tables, 2);
	assert_int_equal(st.shift, 19);
	assert_int_equal(htab_loader_summary(l, &sum, NULL), 0);
	assert_int_equal(sum.shift, 19);
	assert_int_equal(sum.valid, 1); /* the entry sent before the resize is gone */
	assert_int_equal(entry_v(htab_loader_table(l), 32767, &r), UINT64_C(0x4000000012346005));
	htab_loader_destroy(l);

	l = load_rec_file("ok-nohpt.rec", 0, &e);
	assert_null(htab_loader_table(l));
	assert_int_equal(htab_loader_summary(l, &sum, NULL), 0);
	assert_true(sum.no_hpt);
	htab_loader_destroy(l);
}

static void test_error_details(void **state)
{
	(void)state;
	hm_error_t e;
	htab_loader_t *l = load_rec_file("err-index-wrap.rec", HM_E_RANGE, &e);
	/* The chunk header is at payload offset 4 (after the be32 header). */
	assert_int_equal(e.offset, 4);
	assert_non_null(strstr(e.msg, "chunk 0"));
	assert_non_null(strstr(e.msg, "4294967295"));
	assert_non_null(strstr(e.msg, "4294967296")); /* the 64-bit sum, not wrapped */
	htab_loader_destroy(l);

	l = load_rec_file("err-invalid-in-valid-run.rec", HM_E_FORMAT, &e);
	assert_int_equal(e.offset, 4 + 8 + 16); /* the second entry */
	assert_non_null(strstr(e.msg, "entry 1"));
	assert_non_null(strstr(e.msg, "valid bit"));
	htab_loader_destroy(l);

	l = load_rec_file("err-start-shift-high.rec", HM_E_RANGE, &e);
	assert_non_null(strstr(e.msg, "18..36"));
	htab_loader_destroy(l);

	l = load_rec_file("err-entry-truncated.rec", HM_E_TRUNCATED, &e);
	assert_non_null(strstr(e.msg, "chunk 0"));
	htab_loader_destroy(l);
}

/* Offsets are those of the channel: several records through one reader. */
static void test_channel_offsets(void **state)
{
	(void)state;
	uint8_t buf[64];
	size_t n = 0;
	hm_store_be32(buf + n, 20), n += 4;           /* START payload */
	hm_store_be32(buf + n, 0), n += 4;            /* PART header */
	hm_store_be32(buf + n, 65535), n += 4;        /* chunk: last slot of shift 20 */
	hm_store_be16(buf + n, 0), n += 2;
	hm_store_be16(buf + n, 1), n += 2;
	hm_store_be32(buf + n, 65535), n += 4;        /* one past */
	hm_store_be16(buf + n, 0), n += 2;
	hm_store_be16(buf + n, 2), n += 2;
	mig_file_t *f;
	htab_loader_t *l;
	hm_error_t e;
	hm_error_clear(&e);
	assert_int_equal(mig_file_open_mem_reader(buf, n, &f), 0);
	assert_int_equal(htab_loader_create(NULL, NULL, &l), 0);
	assert_int_equal(htab_loader_load(l, f, QEMU_VM_SECTION_START), 0);
	assert_int_equal(htab_loader_load(l, f, QEMU_VM_SECTION_PART), HM_E_RANGE);
	e = *mig_file_error(f);
	assert_int_equal(e.offset, 16);
	assert_non_null(strstr(e.msg, "chunk 1"));
	hm_error_t fe;
	hm_error_clear(&fe);
	assert_int_equal(mig_file_close(f, &fe), HM_E_RANGE);
	assert_int_equal(fe.offset, 16);
	htab_loader_destroy(l);
}

static void test_max_shift_and_external(void **state)
{
	(void)state;
	uint8_t p[4];
	hm_error_t e;
	hm_error_clear(&e);
	htab_loader_opts_t o = { .max_shift = 20 };
	htab_loader_t *l;
	assert_int_equal(htab_loader_create(NULL, &o, &l), 0);
	hm_store_be32(p, 21);
	assert_int_equal(htab_loader_load_buffer(l, p, 4, QEMU_VM_SECTION_START, &e), HM_E_RANGE);
	assert_non_null(strstr(e.msg, "htab_shift 21 (a table of 2 MiB) exceeds this destination's "
				  "cap of htab_shift 20 (1 MiB)"));
	htab_loader_destroy(l);

	/* The cap holds for a resize header in PART and END records too, and
	 * the message carries the caller's hint on how to raise it. */
	o.max_shift_hint = "change it with --max-htab-shift N";
	for (int type = QEMU_VM_SECTION_PART; type <= QEMU_VM_SECTION_END; type++) {
		hm_error_clear(&e);
		assert_int_equal(htab_loader_create(NULL, &o, &l), 0);
		hm_store_be32(p, 19);
		assert_int_equal(htab_loader_load_buffer(l, p, 4, QEMU_VM_SECTION_START, &e), 0);
		for (uint32_t s = 18; s <= 20; s++) { /* resizes within the cap */
			hm_store_be32(p, s);
			assert_int_equal(htab_loader_load_buffer(l, p, 4, type, &e), 0);
			assert_int_equal(hpt_shift(htab_loader_table(l)), s);
		}
		hm_store_be32(p, 36);
		assert_int_equal(htab_loader_load_buffer(l, p, 4, type, &e), HM_E_RANGE);
		assert_non_null(strstr(e.msg, "htab_shift 36 (a table of 64 GiB) exceeds this "
					      "destination's cap of htab_shift 20 (1 MiB): change it "
					      "with --max-htab-shift N"));
		assert_int_equal(e.offset, 0);
		/* the table of the last good header is still the one held */
		assert_int_equal(hpt_shift(htab_loader_table(l)), 20);
		htab_loader_destroy(l);
	}
	o.max_shift_hint = NULL;
	o.max_shift = 40;
	assert_int_equal(htab_loader_create(NULL, &o, &l), HM_E_RANGE);

	/* Loading into the caller's table: START resets it to the source's shift. */
	hpt_t *t;
	assert_int_equal(hpt_create(18, NULL, &t, NULL), 0);
	assert_true(hpt_write_entry(t, 5, UINT64_C(0x4000000012346005), 0x194));
	assert_int_equal(htab_loader_create(t, NULL, &l), 0);
	hm_store_be32(p, 19);
	assert_int_equal(htab_loader_load_buffer(l, p, 4, QEMU_VM_SECTION_START, &e), 0);
	assert_ptr_equal(htab_loader_table(l), t);
	assert_int_equal(hpt_shift(t), 19);
	uint64_t valid;
	hpt_count(t, &valid, NULL);
	assert_int_equal(valid, 0);
	htab_loader_destroy(l); /* must not free the caller's table */
	hpt_destroy(t);
}

/* Records cut from pseries-qemu10-p8-2g-live.mig (see golden/README.md). */
static void test_qemu_cuts(void **state)
{
	(void)state;
	static const char *const files[] = { "qemu10-2g-live-start.bin",
					     "qemu10-2g-live-part4-invalid.bin",
					     "qemu10-2g-live-part5.bin",
					     "qemu10-2g-live-end-empty.bin" };
	static const int types[] = { QEMU_VM_SECTION_START, QEMU_VM_SECTION_PART, QEMU_VM_SECTION_PART,
				     QEMU_VM_SECTION_END };
	htab_loader_t *l;
	hm_error_t e;
	hm_error_clear(&e);
	assert_int_equal(htab_loader_create(NULL, NULL, &l), 0);
	for (int i = 0; i < 4; i++) {
		size_t len;
		uint8_t *d = read_golden(files[i], &len);
		int rc = htab_loader_load_buffer(l, d, len, types[i], &e);
		if (rc)
			fail_msg("%s: %s", files[i], e.msg);
		free(d);
	}
	htab_load_stats_t st;
	htab_loader_get_stats(l, &st);
	assert_int_equal(st.shift, 24);
	assert_int_equal(st.chunks, 27);
	assert_int_equal(st.valid_sent, 5);
	assert_int_equal(st.invalid_sent, 23);
	htab_summary_t sum;
	assert_int_equal(htab_loader_summary(l, &sum, NULL), 0);
	assert_int_equal(sum.valid, 3);
	assert_int_equal(sum.bolted, 0);
	char hex[65];
	hm_hex(sum.digest, 32, hex);
	assert_string_equal(hex, "d1578b74a0892939354505033ef7f2d2a795c7cf7b28dd21a651a38b1eb654ea");
	uint64_t r;
	assert_int_equal(entry_v(htab_loader_table(l), 0xf5a71, &r), UINT64_C(0x40081dd687003d85));
	assert_int_equal(r, UINT64_C(0x7f7f1196));
	htab_loader_destroy(l);

	/* The radix guest: START and END both 0xffffffff. */
	assert_int_equal(htab_loader_create(NULL, NULL, &l), 0);
	size_t len;
	uint8_t *d = read_golden("qemu10-p9radix-start-nohpt.bin", &len);
	assert_int_equal(htab_loader_load_buffer(l, d, len, QEMU_VM_SECTION_START, &e), 0);
	free(d);
	d = read_golden("qemu10-p9radix-end-nohpt.bin", &len);
	assert_int_equal(htab_loader_load_buffer(l, d, len, QEMU_VM_SECTION_END, &e), 0);
	free(d);
	assert_int_equal(htab_loader_summary(l, &sum, NULL), 0);
	assert_true(sum.no_hpt);
	hm_hex(sum.digest, 32, hex);
	assert_string_equal(hex, "ad95131bc0b799c0b1af477fb14fcf26a6a9f76079e48bf090acb7e8367bfd0e");
	htab_loader_destroy(l);

	/* QEMU 7.2's START: htab_shift 23. */
	assert_int_equal(htab_loader_create(NULL, NULL, &l), 0);
	d = read_golden("qemu72-1g-start.bin", &len);
	assert_int_equal(htab_loader_load_buffer(l, d, len, QEMU_VM_SECTION_START, &e), 0);
	free(d);
	assert_int_equal(hpt_shift(htab_loader_table(l)), 23);
	htab_loader_destroy(l);
}

/*
 * Property: any random table, canonically encoded, loads back to the same
 * digest, whatever the chunking; and a random PART with invalid runs applied
 * to a table equals applying it slot by slot to a reference array.
 */
static void test_random_property(void **state)
{
	(void)state;
	uint64_t seed = tu_seed("htab load random property");
	for (int round = 0; round < 20; round++) {
		hpt_t *t;
		assert_int_equal(hpt_create(18, NULL, &t, NULL), 0);
		uint64_t slots = hpt_slots(t);
		uint64_t density = tu_rand(&seed) % 100;
		for (uint64_t i = 0; i < slots; i++)
			if (tu_rand(&seed) % 100 < density)
				hpt_write_entry(t, i, (tu_rand(&seed) & ~UINT64_C(0x7f)) | 0x1 |
						   (tu_rand(&seed) & 0x5c),
						tu_rand(&seed));
		mig_file_t *w;
		assert_int_equal(mig_file_open_mem_writer(0, &w), 0);
		assert_int_equal(htab_encode_start(t, w), 0);
		size_t slen, len;
		mig_file_mem_data(w, &slen);
		assert_int_equal(htab_encode_table(t, w), 0);
		const uint8_t *p = mig_file_mem_data(w, &len);
		htab_loader_t *l;
		hm_error_t e;
		hm_error_clear(&e);
		assert_int_equal(htab_loader_create(NULL, NULL, &l), 0);
		assert_int_equal(htab_loader_load_buffer(l, p, slen, QEMU_VM_SECTION_START, &e), 0);
		int rc = htab_loader_load_buffer(l, p + slen, len - slen, QEMU_VM_SECTION_END, &e);
		if (rc)
			fail_msg("round %d: %s", round, e.msg);
		uint8_t d1[32];
		htab_summary_t sum;
		assert_int_equal(hpt_digest(t, d1), 0);
		assert_int_equal(htab_loader_summary(l, &sum, NULL), 0);
		assert_memory_equal(d1, sum.digest, 32);
		htab_load_stats_t st;
		htab_loader_get_stats(l, &st);
		assert_int_equal(st.valid_sent, sum.valid);
		assert_int_equal(st.invalid_sent, 0);
		htab_loader_destroy(l);
		mig_file_close(w, NULL);
		hpt_destroy(t);
	}
}

/*
 * Invalid runs against a model: random valid and invalid runs (partial and
 * whole 64-slot blocks, runs over clean regions, repeated clears) loaded by
 * a loader on its own table (block bookkeeping on), on a caller's exclusive
 * table (on) and on a caller's shared table (off): each slot must match.
 */
static void put_be(uint8_t **q, uint64_t v, int bytes)
{
	for (int i = bytes - 1; i >= 0; i--)
		*(*q)++ = (uint8_t)(v >> (8 * i));
}

/* The loader's root kept current equals a full recomputation of its
 * table (and its counts); returns the blocks it re-hashed. */
static uint64_t check_loader_root(htab_loader_t *l, const char *when, int rec)
{
	htab_root_t kept;
	hm_error_t e;
	hm_error_clear(&e);
	assert_int_equal(htab_loader_root(l, &kept, &e), 0);
	hpt_t *t = htab_loader_table(l);
	uint8_t full[32];
	uint64_t valid = 0, bolted = 0;
	assert_int_equal(hpt_root_summary(t, HPT_READ_LOCKED, &valid, &bolted, NULL, full), 0);
	if (memcmp(full, kept.info.root, 32) != 0)
		fail_msg("%s, record %d: the loader's kept root differs from the table's", when, rec);
	assert_int_equal(kept.info.valid, valid);
	assert_int_equal(kept.info.bolted, bolted);
	return kept.info.rehashed;
}

static void test_invalid_runs_model(void **state)
{
	(void)state;
	uint64_t seed = tu_seed("htab invalid runs model");
	const uint64_t slots = UINT64_C(1) << 14; /* htab_shift 18 */
	uint64_t *mv = calloc(slots, sizeof(uint64_t)), *mr = calloc(slots, sizeof(uint64_t));
	uint8_t *pay = malloc(1u << 20);
	assert_non_null(mv);
	assert_non_null(mr);
	assert_non_null(pay);
	for (int mode = 0; mode < 3; mode++) {
		memset(mv, 0, slots * sizeof(uint64_t));
		memset(mr, 0, slots * sizeof(uint64_t));
		hpt_t *ext = NULL;
		htab_loader_t *l;
		htab_loader_opts_t o = {.exclusive = mode == 1};
		if (mode > 0)
			assert_int_equal(hpt_create(18, NULL, &ext, NULL), 0);
		assert_int_equal(htab_loader_create(ext, &o, &l), 0);
		hm_error_t e;
		hm_error_clear(&e);
		uint8_t start[4] = {0, 0, 0, 18};
		assert_int_equal(htab_loader_load_buffer(l, start, 4, QEMU_VM_SECTION_START, &e), 0);
		for (int rec = 0; rec < 30; rec++) {
			uint8_t *q = pay;
			put_be(&q, 0, 4);
			for (int c = 0; c < 40; c++) {
				uint64_t idx = tu_rand(&seed) % slots;
				uint64_t room = slots - idx;
				uint64_t nv = tu_rand(&seed) % 4 == 0 ? 0 : tu_rand(&seed) % 70;
				uint64_t ni = tu_rand(&seed) % 300;
				if (nv > room)
					nv = room;
				if (ni > room - nv)
					ni = room - nv;
				if (idx == 0 && nv == 0 && ni == 0)
					continue; /* that would be the endmark */
				put_be(&q, idx, 4);
				put_be(&q, nv, 2);
				put_be(&q, ni, 2);
				for (uint64_t k = 0; k < nv; k++) {
					uint64_t v = (tu_rand(&seed) & ~UINT64_C(0x7f)) | 1;
					uint64_t r = tu_rand(&seed);
					put_be(&q, v, 8);
					put_be(&q, r, 8);
					mv[idx + k] = v;
					mr[idx + k] = r;
				}
				for (uint64_t k = 0; k < ni; k++)
					mv[idx + nv + k] = mr[idx + nv + k] = 0;
			}
			put_be(&q, 0, 8);
			int rc = htab_loader_load_buffer(l, pay, (size_t)(q - pay), QEMU_VM_SECTION_PART, &e);
			if (rc)
				fail_msg("mode %d record %d: %s", mode, rec, e.msg);
			/* the destination's pattern: hash as records arrive (any
			 * budget), the root after some record */
			uint64_t left;
			assert_int_equal(htab_loader_root_refresh(l, tu_rand(&seed) & 1 ? 0 : UINT64_MAX,
								  &left),
					 0);
			if (tu_rand(&seed) % 3 == 0)
				check_loader_root(l, "invalid runs", rec);
		}
		check_loader_root(l, "invalid runs, end", 30);
		/* nothing written since: nothing to hash */
		assert_int_equal(check_loader_root(l, "again", 30), 0);
		hpt_t *t = htab_loader_table(l);
		for (uint64_t i = 0; i < slots; i++) {
			uint64_t v, r;
			hpt_read_entry(t, i, &v, &r);
			if (!(v & 1))
				v = r = 0;
			if (v != mv[i] || r != mr[i])
				fail_msg("mode %d slot %llu: V %llx R %llx, expected %llx %llx", mode,
					 (unsigned long long)i, (unsigned long long)v,
					 (unsigned long long)r, (unsigned long long)mv[i],
					 (unsigned long long)mr[i]);
		}
		htab_loader_destroy(l);
		hpt_destroy(ext);
	}
	free(mv);
	free(mr);
	free(pay);
}

/*
 * The root kept current through records that each touch a few blocks of a
 * 64-block table: valid-only and invalid-only chunks (so a missing mark on
 * either path leaves a stale block), loaded from memory (the buffered fast
 * path) or through the careful path (a borrowed, shared table), hashed as
 * they arrive or not, a resize header in between.
 */
static void test_root_kept(void **state)
{
	(void)state;
	uint64_t seed = tu_seed("htab loader root kept");
	uint8_t *pay = malloc(1u << 16);
	assert_non_null(pay);
	for (int mode = 0; mode < 2; mode++) {
		hpt_t *ext = NULL;
		htab_loader_t *l;
		if (mode == 1)
			assert_int_equal(hpt_create(18, NULL, &ext, NULL), 0);
		assert_int_equal(htab_loader_create(ext, NULL, &l), 0);
		hm_error_t e;
		hm_error_clear(&e);
		uint8_t start[4] = {0, 0, 0, 22};
		assert_int_equal(htab_loader_load_buffer(l, start, 4, QEMU_VM_SECTION_START, &e), 0);
		assert_int_equal(check_loader_root(l, "fresh", 0), 0);
		uint64_t rehashed = 0;
		for (int rec = 0; rec < 200; rec++) {
			uint64_t slots = hpt_slots(htab_loader_table(l));
			uint8_t *q = pay;
			bool resize = rec == 100;
			put_be(&q, resize ? 21 : 0, 4);
			int nchunks = resize ? 0 : 1 + (int)(tu_rand(&seed) % 4); /* a new table: alone */
			for (int c = 0; c < nchunks; c++) {
				uint64_t idx = 1 + tu_rand(&seed) % (slots - 200);
				bool valid = rec < 20 || tu_rand(&seed) % 2;
				uint64_t n = 1 + tu_rand(&seed) % 100;
				put_be(&q, idx, 4);
				put_be(&q, valid ? n : 0, 2);
				put_be(&q, valid ? 0 : n, 2);
				for (uint64_t k = 0; valid && k < n; k++) {
					put_be(&q, (tu_rand(&seed) & ~UINT64_C(0x7f)) | 1, 8);
					put_be(&q, tu_rand(&seed), 8);
				}
			}
			if (!resize) /* a resize header ends its record (wire-format.md §2) */
				put_be(&q, 0, 8);
			int rc = htab_loader_load_buffer(l, pay, (size_t)(q - pay), QEMU_VM_SECTION_PART,
							 &e);
			if (rc)
				fail_msg("mode %d record %d: %s", mode, rec, e.msg);
			if (tu_rand(&seed) % 2)
				assert_int_equal(htab_loader_root_refresh(l, UINT64_MAX, NULL), 0);
			if (tu_rand(&seed) % 2)
				rehashed += check_loader_root(l, "kept", rec);
		}
		rehashed += check_loader_root(l, "kept, end", 200);
		/* few blocks per record: far fewer than every block every time */
		assert_true(rehashed > 0 && rehashed < 200 * 64 / 4);
		htab_loader_destroy(l);
		hpt_destroy(ext);
	}
	free(pay);
}

/*
 * The loader's buffered fast path (its own table): 600 good chunks, then
 * one whose third entry lacks the valid bit. The fast path must leave that
 * chunk's segment to the careful path: the error names chunk 600 and entry
 * 2 at its exact offset, and the counts are those of the 600 good chunks.
 * The good chunks alone, read through a file (a 64 KiB channel buffer, so
 * chunks cross its edge), give the same table as from memory.
 */
static void test_buffered_path(void **state)
{
	(void)state;
	uint64_t rs = tu_seed("htab buffered path");
	enum { GOOD = 600 };
	uint8_t *buf = malloc(4 + (GOOD + 1) * (8 + 40 * 16) + 8), *q = buf;
	assert_non_null(buf);
	put_be(&q, 0, 4); /* PART header: chunks follow */
	uint64_t slot = 0, nvalid = 0, bad_off = 0;
	for (int c = 0; c <= GOOD; c++) {
		unsigned nv = 1 + (unsigned)(tu_rand(&rs) % 40), ni = (unsigned)(tu_rand(&rs) % 5);
		if (c == GOOD && nv < 3)
			nv = 3; /* the bad chunk has an entry 2 */
		put_be(&q, slot, 4);
		put_be(&q, nv, 2);
		put_be(&q, ni, 2);
		for (unsigned i = 0; i < nv; i++) {
			uint64_t v = (tu_rand(&rs) << 8) | HPTE64_V_VALID;
			if (c == GOOD && i == 2) {
				v &= ~HPTE64_V_VALID;
				bad_off = (uint64_t)(q - buf);
			}
			put_be(&q, v, 8);
			put_be(&q, tu_rand(&rs), 8);
		}
		if (c < GOOD)
			nvalid += nv;
		slot += nv + ni;
	}
	size_t good_len = 0;
	for (int pass = 0; pass < 2; pass++) {
		/* pass 0: with the bad chunk; pass 1: good chunks + end mark */
		size_t len = (size_t)(q - buf);
		if (pass == 1) {
			uint8_t *p = buf + 4;
			for (int c = 0; c < GOOD; c++)
				p += 8 + (size_t)hm_load_be16(p + 4) * 16;
			memset(p, 0, 8);
			good_len = len = (size_t)(p + 8 - buf);
		}
		htab_loader_t *l;
		hm_error_t e;
		hm_error_clear(&e);
		uint8_t start[4];
		hm_store_be32(start, 20);
		assert_int_equal(htab_loader_create(NULL, NULL, &l), 0);
		assert_int_equal(htab_loader_load_buffer(l, start, 4, QEMU_VM_SECTION_START, &e), 0);
		int rc = htab_loader_load_buffer(l, buf, len, QEMU_VM_SECTION_PART, &e);
		htab_load_stats_t st;
		htab_loader_get_stats(l, &st);
		if (pass == 0) {
			assert_int_equal(rc, HM_E_FORMAT);
			assert_int_equal(e.offset, (int64_t)bad_off);
			assert_non_null(strstr(e.msg, "chunk 600"));
			assert_non_null(strstr(e.msg, "entry 2"));
			assert_int_equal(st.chunks, GOOD);
			assert_int_equal(st.valid_sent, nvalid);
			htab_loader_destroy(l);
			continue;
		}
		assert_int_equal(rc, 0);
		htab_summary_t mem, file;
		assert_int_equal(htab_loader_summary(l, &mem, NULL), 0);
		assert_int_equal(mem.valid, nvalid);
		check_loader_root(l, "buffered path", 0);
		htab_loader_destroy(l);

		FILE *tf = tmpfile();
		assert_non_null(tf);
		assert_int_equal(fwrite(buf, 1, good_len, tf), good_len);
		fflush(tf);
		rewind(tf);
		mig_file_t *f;
		assert_int_equal(mig_file_open_fd(fileno(tf), MIG_FILE_READ, 0, &f), 0);
		assert_int_equal(htab_loader_create(NULL, NULL, &l), 0);
		assert_int_equal(htab_loader_load_buffer(l, start, 4, QEMU_VM_SECTION_START, &e), 0);
		assert_int_equal(htab_loader_load(l, f, QEMU_VM_SECTION_PART), 0);
		assert_int_equal(mig_file_offset(f), good_len);
		assert_int_equal(htab_loader_summary(l, &file, NULL), 0);
		assert_memory_equal(mem.digest, file.digest, 32);
		check_loader_root(l, "buffered path, file", 0);
		htab_loader_get_stats(l, &st);
		assert_int_equal(st.chunks, GOOD);
		htab_loader_destroy(l);
		mig_file_close(f, NULL);
		fclose(tf);
	}
	free(buf);
}

/*
 * qemu_wire.h's chunk header: golden bytes both ways, and the one parser's
 * answers (endmark, in range, out of range in 64-bit: an index near 2^32
 * plus its runs must not wrap, a zero-length chunk with an index is no
 * endmark).
 */
static void test_chunk_hdr_wire(void **state)
{
	(void)state;
	uint8_t b[HTAB_CHUNK_HDR_SIZE];
	htab_chunk_hdr_put(b, (struct htab_chunk_hdr){ .index = 0x01020304, .n_valid = 0x0506,
						       .n_invalid = 0x0708 });
	static const uint8_t want[] = { 1, 2, 3, 4, 5, 6, 7, 8 };
	assert_memory_equal(b, want, sizeof(want));
	struct htab_chunk_hdr h;
	assert_int_equal(htab_chunk_parse(b, UINT64_C(0x01020304) + 0x0506 + 0x0708, &h),
			 HTAB_CHUNK_RUNS);
	assert_int_equal(h.index, 0x01020304);
	assert_int_equal(h.n_valid, 0x0506);
	assert_int_equal(h.n_invalid, 0x0708);
	assert_int_equal(htab_chunk_parse(b, UINT64_C(0x01020304) + 0x0506 + 0x0707, &h),
			 HTAB_CHUNK_RANGE);
	static const uint8_t wrap[] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x01 };
	assert_int_equal(htab_chunk_parse(wrap, UINT64_C(1) << 32, &h), HTAB_CHUNK_RANGE);
	static const uint8_t zero[HTAB_CHUNK_HDR_SIZE] = { 0 };
	assert_int_equal(htab_chunk_parse(zero, 0, &h), HTAB_CHUNK_ENDMARK);
	static const uint8_t empty_at[] = { 0, 0, 0, 9, 0, 0, 0, 0 };
	assert_int_equal(htab_chunk_parse(empty_at, 16, &h), HTAB_CHUNK_RUNS);
	assert_int_equal(htab_chunk_parse(empty_at, 8, &h), HTAB_CHUNK_RANGE);
	assert_string_equal(qemu_vm_record_name(QEMU_VM_SECTION_PART), "SECTION_PART");
	assert_string_equal(qemu_vm_record_name(0x42), "unknown");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vector_list),     cmocka_unit_test(test_vector_contents),
		cmocka_unit_test(test_error_details),   cmocka_unit_test(test_channel_offsets),
		cmocka_unit_test(test_max_shift_and_external), cmocka_unit_test(test_qemu_cuts),
		cmocka_unit_test(test_random_property),
		cmocka_unit_test(test_invalid_runs_model),
		cmocka_unit_test(test_root_kept),
		cmocka_unit_test(test_buffered_path),
		cmocka_unit_test(test_chunk_hdr_wire),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
