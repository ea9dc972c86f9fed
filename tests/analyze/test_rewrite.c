/* SPDX-License-Identifier: MIT */
/*
 * an_rewrite on streams whose walk stops inside a record (a `spapr` FULL
 * section with a subsection the built-in layout does not describe): the
 * rewrite either keeps the stopped record and everything after it byte for
 * byte, or refuses with an error naming where; it must never produce a stream
 * that does not walk again with the same table.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hptmig/analyze.h"
#include "streamgen.h"

/*
 * The basic stream without vmdesc, its timer and dev sections replaced by a
 * `spapr` version 3 FULL record (known built-in layout) followed by an
 * undescribed subsection `spapr/extra`, then EOF. With `htab_after` the
 * spapr/htab END comes after the spapr record (the walk stops before it).
 */
static void build_spapr_sub(struct sg *s, size_t *spapr_rec, size_t *sub_at, bool htab_after)
{
	struct sg_basic o;
	sg_build_basic(s, &o, NULL);
	uint8_t end_rec[64];
	size_t end_len = o.timer_rec - o.htab_end_rec;
	assert_true(end_len <= sizeof(end_rec));
	memcpy(end_rec, s->p + o.htab_end_rec, end_len);
	s->len = htab_after ? o.htab_end_rec : o.timer_rec;
	*spapr_rec = s->len;
	sg_start(s, 0x04, 5, "spapr", 0, 3);
	sg_be64(s, 0x0123456789abcdefull); /* tb.guest_timebase */
	sg_be64(s, 42);                    /* tb.time_of_the_day_ns */
	*sub_at = s->len;
	sg_u8(s, 0x05);
	sg_str8(s, "spapr/extra");
	sg_be32(s, 1);
	sg_be32(s, 0xdeadbeef);
	sg_footer(s, 5);
	if (htab_after)
		sg_bytes(s, end_rec, end_len);
	sg_u8(s, 0x00);
}

static void test_stop_inside_record_rewrites(void **state)
{
	(void)state;
	struct sg s = {0};
	size_t spapr_rec, sub_at;
	build_spapr_sub(&s, &spapr_rec, &sub_at, false);
	an_report_t *r = NULL;
	hm_error_t err;
	assert_int_equal(an_analyze(s.p, s.len, 0, &r, &err), 0);
	assert_false(r->complete);
	assert_int_equal(r->stop_offset, (int64_t)sub_at); /* inside the spapr record */
	uint8_t digest[HM_SHA256_LEN];
	memcpy(digest, r->htab.digest, HM_SHA256_LEN);
	an_report_free(r);

	uint8_t *out = NULL;
	size_t n = 0;
	bool unchecked = false;
	assert_int_equal(an_rewrite(s.p, s.len, &out, &n, &unchecked, &err), 0);
	assert_true(unchecked);
	/* the stopped record, from its first byte, and all after it are kept */
	size_t tail = s.len - spapr_rec;
	assert_true(n >= tail);
	assert_memory_equal(out + n - tail, s.p + spapr_rec, tail);
	/* and the output walks again, stopping at the same place, same table */
	assert_int_equal(an_analyze(out, n, 0, &r, &err), 0);
	assert_false(r->complete);
	assert_int_equal(r->stop_offset, (int64_t)(n - tail + (sub_at - spapr_rec)));
	assert_memory_equal(r->htab.digest, digest, HM_SHA256_LEN);
	an_report_free(r);
	free(out);
	free(s.p);
}

static void test_stop_inside_record_before_htab_end_refused(void **state)
{
	(void)state;
	struct sg s = {0};
	size_t spapr_rec, sub_at;
	build_spapr_sub(&s, &spapr_rec, &sub_at, true);
	uint8_t *out = (uint8_t *)&s; /* must be reset to NULL */
	size_t n = 1;
	hm_error_t err;
	assert_int_equal(an_rewrite(s.p, s.len, &out, &n, NULL, &err), HM_E_UNSUPPORTED);
	assert_null(out);
	assert_int_equal(n, 0);
	assert_int_equal(err.offset, (int64_t)sub_at);
	assert_non_null(strstr(err.msg, "spapr/htab"));
	assert_non_null(strstr(err.msg, "END"));
	assert_non_null(strstr(err.msg, "'spapr'"));
	free(s.p);
}

/*
 * The vmdesc walk's work cap grows with the stream's length (2 visits per
 * byte + 1 Mi). Dropping spapr/htab PART records makes the output shorter,
 * so an input whose vmdesc walk needs more visits than the shorter output
 * allows would give a stream that no longer walks: rewrite must refuse it
 * by name instead. Here 100000 one-byte structs of 12 fields (1.3 M visits)
 * fit the input's cap thanks to 64 KiB of PART records, not the output's.
 */
static void test_work_cap_of_shorter_output(void **state)
{
	(void)state;
	enum { K = 100000, EXTRA = 11, PARTS = 4, PER_PART = 1000 };
	struct sg s = {0};
	sg_header(&s);
	sg_config(&s, "pseries-test");
	sg_start(&s, 0x01, 1, "spapr/htab", 0, 1);
	sg_be32(&s, 18);
	sg_footer(&s, 1);
	for (int p = 0; p < PARTS; p++) {
		sg_part(&s, 0x02, 1);
		sg_be32(&s, 0);
		sg_be32(&s, 0);
		sg_be16(&s, PER_PART);
		sg_be16(&s, 0);
		for (int i = 0; i < PER_PART; i++)
			sg_hpte(&s, 0x4000000123456715ull, 0x0000000001231190ull);
		sg_be32(&s, 0);
		sg_be32(&s, 0);
		sg_footer(&s, 1);
	}
	sg_part(&s, 0x03, 1);
	sg_be32(&s, 0);
	sg_be32(&s, 0);
	sg_be32(&s, 0);
	sg_footer(&s, 1);
	sg_start(&s, 0x04, 2, "big", 0, 1);
	for (int i = 0; i < K; i++)
		sg_u8(&s, (uint8_t)i);
	sg_footer(&s, 2);
	sg_u8(&s, 0x00);
	char *js = malloc(4096);
	int n = snprintf(js, 4096,
			 "{\"page_size\":4096,\"devices\":[{\"name\":\"big\",\"instance_id\":0,"
			 "\"vmsd_name\":\"big\",\"version\":1,\"fields\":[{\"name\":\"e\",\"type\":\"struct\","
			 "\"array_len\":%d,\"size\":1,\"struct\":{\"vmsd_name\":\"big/e\",\"version\":1,"
			 "\"fields\":[{\"name\":\"b\",\"type\":\"uint8\",\"size\":1}",
			 K);
	for (int i = 0; i < EXTRA; i++)
		n += snprintf(js + n, 4096 - (size_t)n, ",{\"name\":\"z%d\",\"type\":\"unused_buffer\",\"size\":0}", i);
	snprintf(js + n, 4096 - (size_t)n, "]}}]}]}");
	sg_vmdesc(&s, js);
	free(js);

	an_report_t *r = NULL;
	hm_error_t err;
	int rc = an_analyze(s.p, s.len, 0, &r, &err);
	if (rc)
		fprintf(stderr, "input: %s\n", err.msg);
	assert_int_equal(rc, 0); /* the input walks: its own cap is enough */
	assert_true(r->complete);
	an_report_free(r);

	uint8_t *out = NULL;
	size_t olen = 0;
	rc = an_rewrite(s.p, s.len, &out, &olen, NULL, &err);
	if (rc == 0) {
		/* whatever it wrote must walk again */
		rc = an_analyze(out, olen, 0, &r, &err);
		fprintf(stderr, "rewrite succeeded; its output: %s\n", rc ? err.msg : "walks");
		an_report_free(r);
		free(out);
		fail();
	}
	assert_int_equal(rc, HM_E_RANGE);
	assert_null(out);
	assert_non_null(strstr(err.msg, "rewrite"));
	assert_non_null(strstr(err.msg, "visits"));
	free(s.p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stop_inside_record_rewrites),
		cmocka_unit_test(test_stop_inside_record_before_htab_end_refused),
		cmocka_unit_test(test_work_cap_of_shorter_output),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
