/* SPDX-License-Identifier: MIT */
/*
 * Golden vectors for the analyser's spapr/htab anomalies (what QEMU accepts
 * but never writes): each small stream must give exactly its anomaly, at
 * its byte offset, and a clean stream none; plus the partial walk (no final
 * table, no digest as a result) and streams that number spapr/htab 0.
 */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

#include "hptmig/analyze.h"
#include "hptmig/hpt.h"
#include "analyze/an_internal.h"
#include "streamgen.h"

#define SHIFT 18u
#define ID 3u

/* A 4K-page entry that passes the structural check in any slot of PTEG
 * g's primary group (vsid chosen so that its hash is g). */
struct ent {
	uint64_t pteg, v, r;
};

static struct ent good(uint64_t vsid)
{
	struct ent e;
	uint64_t ea = 0x5000;
	e.v = hpt_mapping_v(HPT_SEG_256M, vsid, ea, false, false);
	e.r = (0x1234ull << 12) | 0x190;
	e.pteg = hpt_pteg_index(SHIFT, HPT_SEG_256M, vsid, ea, 12, false);
	assert_true(an_hpte_check(SHIFT, e.pteg * 8, e.v, e.r, NULL));
	return e;
}

static void start(struct sg *s)
{
	sg_header(s);
	sg_config(s, "pseries-test");
	sg_start(s, 0x01, ID, "spapr/htab", 0, 1);
	sg_be32(s, SHIFT);
	sg_footer(s, ID);
}

static void rec_begin(struct sg *s, uint8_t type)
{
	sg_part(s, type, ID);
	sg_be32(s, 0);
}

/* A chunk of nv copies of e and ni invalid slots; returns its offset. */
static size_t chunk(struct sg *s, uint64_t index, unsigned nv, unsigned ni, struct ent e)
{
	size_t at = s->len;
	sg_be32(s, (uint32_t)index);
	sg_be16(s, (uint16_t)nv);
	sg_be16(s, (uint16_t)ni);
	for (unsigned i = 0; i < nv; i++)
		sg_hpte(s, e.v, e.r);
	return at;
}

static void rec_end(struct sg *s)
{
	sg_be32(s, 0);
	sg_be32(s, 0);
	sg_footer(s, ID);
}

static an_report_t *walk(const struct sg *s, int want_rc)
{
	an_report_t *r = NULL;
	hm_error_t err;
	int rc = an_analyze(s->p, s->len, 0, &r, &err);
	if (rc != want_rc)
		print_error("walk: %d, expected %d: %s\n", rc, want_rc, err.msg);
	assert_int_equal(rc, want_rc);
	assert_non_null(r);
	return r;
}

static void expect_only(const an_report_t *r, int kind, uint64_t offset, uint64_t slot)
{
	const an_anomalies_t *a = &r->anomalies;
	assert_int_equal(a->total, 1);
	for (int k = 0; k < AN_ANOM_COUNT; k++)
		assert_int_equal(a->count[k], k == kind ? 1 : 0);
	assert_int_equal(a->nfirst, 1);
	assert_int_equal(a->first[0].kind, kind);
	assert_int_equal(a->first[0].offset, offset);
	assert_int_equal(a->first[0].slot, slot);
	char at[40];
	snprintf(at, sizeof(at), "offset %llu", (unsigned long long)offset);
	assert_non_null(strstr(a->first[0].msg, at));
	assert_non_null(strstr(a->first[0].msg, "spapr/htab"));
	/* and in the JSON, under "anomalies" */
	json_t *j = an_report_json(r, 0);
	json_t *ja = json_object_get(j, "anomalies");
	assert_int_equal(json_integer_value(json_object_get(ja, "total")), 1);
	assert_int_equal(json_integer_value(json_object_get(ja, an_anomaly_name(kind))), 1);
	json_t *f0 = json_array_get(json_object_get(ja, "first"), 0);
	assert_string_equal(json_string_value(json_object_get(f0, "kind")), an_anomaly_name(kind));
	assert_int_equal(json_integer_value(json_object_get(f0, "offset")), (json_int_t)offset);
	json_decref(j);
}

/* What QEMU writes: ascending chunks per record, a later record going back
 * (a new pass), a wrap inside a record, valid and invalid runs. None. */
static void test_clean(void **state)
{
	(void)state;
	struct ent a = good(0x111), b = good(0x222);
	struct sg s = {0};
	start(&s);
	rec_begin(&s, 0x02);
	chunk(&s, a.pteg * 8, 3, 0, a);
	chunk(&s, b.pteg * 8 + 1, 2, 3, b);
	rec_end(&s);
	rec_begin(&s, 0x02); /* next record: the same slots again */
	chunk(&s, a.pteg * 8, 3, 2, a);
	rec_end(&s);
	rec_begin(&s, 0x03); /* a wrap inside the record: b's, then a's */
	uint64_t hi = a.pteg > b.pteg ? a.pteg : b.pteg, lo = a.pteg > b.pteg ? b.pteg : a.pteg;
	assert_true(hi > lo);
	chunk(&s, hi * 8, 1, 0, hi == a.pteg ? a : b);
	chunk(&s, lo * 8, 1, 0, lo == a.pteg ? a : b);
	rec_end(&s);
	sg_u8(&s, 0);
	an_report_t *r = walk(&s, 0);
	assert_true(r->complete);
	assert_true(r->htab.final);
	assert_int_equal(r->anomalies.total, 0);
	assert_int_equal(r->anomalies.nfirst, 0);
	json_t *j = an_report_json(r, 0);
	assert_true(json_is_string(json_object_get(json_object_get(j, "htab"), "digest")));
	assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "anomalies"), "total")), 0);
	json_decref(j);
	an_report_free(r);
	free(s.p);
}

static void test_invalid_in_valid_run(void **state)
{
	(void)state;
	struct ent a = good(0x111), bad = a;
	bad.v &= ~HPTE64_V_VALID;
	struct sg s = {0};
	start(&s);
	rec_begin(&s, 0x03);
	size_t at = chunk(&s, a.pteg * 8, 1, 0, a);
	chunk(&s, a.pteg * 8 + 1, 1, 0, bad); /* one run split for the offsets: */
	(void)at;
	rec_end(&s);
	sg_u8(&s, 0);
	/* the bad entry is the second chunk's first: header 8 bytes after it */
	size_t entry = at + 8 + 16 + 8;
	an_report_t *r = walk(&s, 0);
	expect_only(r, AN_ANOM_INVALID_IN_RUN, entry, a.pteg * 8 + 1);
	assert_int_equal(r->htab.valid, 1); /* the slot is invalid in the table */
	an_report_free(r);
	free(s.p);

	/* inside one chunk: entry 2 of 3 */
	memset(&s, 0, sizeof(s));
	start(&s);
	rec_begin(&s, 0x03);
	at = s.len;
	sg_be32(&s, (uint32_t)(a.pteg * 8));
	sg_be16(&s, 3);
	sg_be16(&s, 0);
	sg_hpte(&s, a.v, a.r);
	sg_hpte(&s, bad.v, bad.r);
	sg_hpte(&s, a.v, a.r);
	rec_end(&s);
	sg_u8(&s, 0);
	r = walk(&s, 0);
	expect_only(r, AN_ANOM_INVALID_IN_RUN, at + 8 + 16, a.pteg * 8 + 1);
	assert_int_equal(r->htab.valid, 2);
	an_report_free(r);
	free(s.p);
}

static void test_check_failure(void **state)
{
	(void)state;
	/* a reserved segment size (B = 3) fails it in any slot */
	struct ent a = good(0x111);
	a.v |= 3ull << 62;
	uint64_t slot = a.pteg * 8 + 5;
	assert_false(an_hpte_check(SHIFT, slot, a.v, a.r, NULL));
	struct sg s = {0};
	start(&s);
	rec_begin(&s, 0x03);
	size_t at = chunk(&s, slot, 1, 0, a);
	rec_end(&s);
	sg_u8(&s, 0);
	an_report_t *r = walk(&s, 0);
	expect_only(r, AN_ANOM_CHECK, at + 8, slot);
	assert_int_equal(r->htab.check_failures, 1); /* the final table's count too */
	an_report_free(r);
	free(s.p);
}

static void test_overlap(void **state)
{
	(void)state;
	struct ent a = good(0x111);
	struct sg s = {0};
	start(&s);
	rec_begin(&s, 0x03);
	chunk(&s, a.pteg * 8, 3, 2, a);              /* slots +0..+4 */
	size_t at = chunk(&s, a.pteg * 8 + 4, 1, 0, a); /* +4 again */
	rec_end(&s);
	sg_u8(&s, 0);
	an_report_t *r = walk(&s, 0);
	expect_only(r, AN_ANOM_OVERLAP, at, a.pteg * 8 + 4);
	assert_non_null(strstr(r->anomalies.first[0].msg, "same pass"));
	an_report_free(r);
	free(s.p);

	/* the same start twice, and one more: two overlaps, both kept */
	memset(&s, 0, sizeof(s));
	start(&s);
	rec_begin(&s, 0x03);
	chunk(&s, a.pteg * 8, 1, 0, a);
	chunk(&s, a.pteg * 8, 1, 0, a);
	chunk(&s, a.pteg * 8, 0, 1, a);
	rec_end(&s);
	sg_u8(&s, 0);
	r = walk(&s, 0);
	assert_int_equal(r->anomalies.count[AN_ANOM_OVERLAP], 2);
	assert_int_equal(r->anomalies.total, 2);
	an_report_free(r);
	free(s.p);
}

/* More than AN_ANOMALY_FIRST: all counted, the first ones kept. */
static void test_many(void **state)
{
	(void)state;
	struct ent a = good(0x111), bad = a;
	bad.v &= ~HPTE64_V_VALID;
	struct sg s = {0};
	start(&s);
	rec_begin(&s, 0x03);
	chunk(&s, a.pteg * 8, 40, 0, bad);
	rec_end(&s);
	sg_u8(&s, 0);
	an_report_t *r = walk(&s, 0);
	assert_int_equal(r->anomalies.total, 40);
	assert_int_equal(r->anomalies.count[AN_ANOM_INVALID_IN_RUN], 40);
	assert_int_equal(r->anomalies.nfirst, AN_ANOMALY_FIRST);
	an_report_free(r);
	free(s.p);
}

/* An error mid-stream: no final table, so no digest that reads as one. */
static void test_partial_walk(void **state)
{
	(void)state;
	struct ent a = good(0x111);
	struct sg s = {0};
	start(&s);
	rec_begin(&s, 0x02);
	chunk(&s, a.pteg * 8, 2, 0, a);
	rec_end(&s);
	rec_begin(&s, 0x03);
	sg_be32(&s, (uint32_t)(a.pteg * 8));
	sg_be16(&s, 5); /* 5 entries announced, 1 there: truncated */
	sg_be16(&s, 0);
	sg_hpte(&s, a.v, a.r);
	an_report_t *r = walk(&s, HM_E_TRUNCATED);
	assert_false(r->htab.final);
	json_t *j = an_report_json(r, 0);
	json_t *h = json_object_get(j, "htab");
	assert_true(json_is_null(json_object_get(h, "digest")));
	assert_true(json_is_null(json_object_get(h, "valid")));
	assert_true(json_is_false(json_object_get(h, "final")));
	json_decref(j);
	char *t = an_report_text(r, 0);
	assert_non_null(t);
	assert_null(strstr(t, "digest: 0000"));
	assert_null(strstr(t, "final table: 0 valid"));
	assert_non_null(strstr(t, "final table and digest: none"));
	free(t);
	an_report_free(r);
	free(s.p);
}

/* hptmig numbered spapr/htab 0 before: such streams still walk. */
static void test_section_id_zero(void **state)
{
	(void)state;
	struct ent a = good(0x111);
	struct sg s = {0};
	sg_header(&s);
	sg_start(&s, 0x01, 0, "spapr/htab", 0, 1);
	sg_be32(&s, SHIFT);
	sg_footer(&s, 0);
	sg_part(&s, 0x02, 0);
	sg_be32(&s, 0);
	chunk(&s, a.pteg * 8, 2, 0, a);
	sg_be32(&s, 0);
	sg_be32(&s, 0);
	sg_footer(&s, 0);
	sg_part(&s, 0x03, 0);
	sg_be32(&s, 0);
	sg_be32(&s, 0);
	sg_be32(&s, 0);
	sg_footer(&s, 0);
	sg_u8(&s, 0);
	an_report_t *r = walk(&s, 0);
	assert_true(r->complete);
	assert_int_equal(r->sections[0].id, 0);
	assert_int_equal(r->htab.valid, 2);
	assert_int_equal(r->htab.n_end, 1);
	assert_true(r->htab.final);
	an_report_free(r);
	free(s.p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_clean),
		cmocka_unit_test(test_invalid_in_valid_run),
		cmocka_unit_test(test_check_failure),
		cmocka_unit_test(test_overlap),
		cmocka_unit_test(test_many),
		cmocka_unit_test(test_partial_walk),
		cmocka_unit_test(test_section_id_zero),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
