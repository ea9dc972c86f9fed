/* SPDX-License-Identifier: MIT */
/*
 * Two independent readers of spapr/htab must agree: the analyser's sparse
 * replay (src/analyze) and the live loader of the htab layer (src/htab).
 * Every spapr/htab record payload the analyser finds is fed to the loader;
 * counts, shift and HTAB digest must be equal, on the real QEMU fixtures and
 * on random streams (chunks in any order, invalid runs, resizes).
 */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

#include "hptmig/analyze.h"
#include "hptmig/htab.h"
#include "hptmig/hpt.h"
#include "streamgen.h"

static void crosscheck(const uint8_t *buf, size_t len, const char *what)
{
	an_report_t *r = NULL;
	hm_error_t err;
	int rc = an_analyze(buf, len, 0, &r, &err);
	if (rc)
		print_error("%s: %s\n", what, err.msg);
	assert_int_equal(rc, 0);
	htab_loader_t *l;
	assert_int_equal(htab_loader_create(NULL, NULL, &l), 0);
	for (size_t i = 0; i < r->nrecords; i++) {
		const an_record_t *rec = &r->records[i];
		if (rec->section == UINT32_MAX || r->sections[rec->section].kind != AN_SEC_HTAB)
			continue;
		size_t plen = (size_t)(rec->offset + rec->length - 5 - rec->payload);
		rc = htab_loader_load_buffer(l, buf + rec->payload, plen, rec->type, &err);
		if (rc)
			print_error("%s: htab loader refused record at %llu: %s\n", what,
				    (unsigned long long)rec->offset, err.msg);
		assert_int_equal(rc, 0);
	}
	htab_load_stats_t st;
	htab_loader_get_stats(l, &st);
	htab_summary_t sum;
	assert_int_equal(htab_loader_summary(l, &sum, &err), 0);
	assert_int_equal(st.records, r->htab.records);
	assert_int_equal(st.chunks, r->htab.chunks);
	assert_int_equal(st.valid_sent, r->htab.valid_sent);
	assert_int_equal(st.invalid_sent, r->htab.invalid_sent);
	assert_int_equal(sum.no_hpt, r->htab.no_hpt);
	if (!sum.no_hpt)
		assert_int_equal(sum.shift, r->htab.shift);
	assert_int_equal(sum.valid, r->htab.valid);
	assert_int_equal(sum.bolted, r->htab.bolted);
	assert_memory_equal(sum.digest, r->htab.digest, HM_SHA256_LEN);
	/* the block root from the sparse table equals hpt's from the loaded one */
	uint8_t root[HM_SHA256_LEN];
	if (sum.no_hpt || !htab_loader_table(l))
		hpt_root_none(root);
	else
		assert_int_equal(hpt_root(htab_loader_table(l), HPT_READ_LOCKED, root), 0);
	assert_true(r->htab.has_root);
	assert_memory_equal(root, r->htab.root, HM_SHA256_LEN);
	htab_loader_destroy(l);
	an_report_free(r);
}

static void test_fixtures(void **state)
{
	(void)state;
	static const char *const names[] = {"pseries-qemu72-p8-1g.mig", "pseries-qemu10-p8-2g-live.mig",
					    "pseries-qemu10-p9radix-1g.mig"};
	int done = 0;
	for (size_t i = 0; i < 3; i++) {
		const char *p = tu_fixture(names[i]);
		if (!p)
			continue;
		an_input_t in;
		hm_error_t err;
		assert_int_equal(an_input_open(p, &in, &err), 0);
		crosscheck(in.data, in.len, names[i]);
		an_input_close(&in);
		done++;
	}
	if (!done)
		skip();
}

static void test_random(void **state)
{
	(void)state;
	uint64_t rng = tu_seed("analyze/htab loader cross-check");
	for (int round = 0; round < 30; round++) {
		struct sg s = {0};
		sg_header(&s);
		uint32_t shift = 18 + (uint32_t)(tu_rand(&rng) % 3);
		sg_start(&s, 0x01, 3, "spapr/htab", 0, 1);
		sg_be32(&s, shift);
		sg_footer(&s, 3);
		int recs = 1 + (int)(tu_rand(&rng) % 5);
		for (int k = 0; k < recs; k++) {
			sg_part(&s, k == recs - 1 ? 0x03 : 0x02, 3);
			if (k < recs - 1 && tu_rand(&rng) % 6 == 0) {
				shift = 18 + (uint32_t)(tu_rand(&rng) % 3);
				sg_be32(&s, shift);
			} else {
				uint64_t slots = 1ull << (shift - 4);
				sg_be32(&s, 0);
				int n = (int)(tu_rand(&rng) % 40);
				for (int c = 0; c < n; c++) {
					uint64_t idx = tu_rand(&rng) % slots, room = slots - idx;
					uint64_t nv = tu_rand(&rng) % 30, ni = tu_rand(&rng) % 10;
					nv = nv > room ? room : nv;
					ni = ni > room - nv ? room - nv : ni;
					if (!nv && !ni)
						continue; /* QEMU never sends an empty chunk; the htab
							   * loader refuses one, the analyser (like
							   * QEMU's loader) lets it pass */
					sg_be32(&s, (uint32_t)idx);
					sg_be16(&s, (uint16_t)nv);
					sg_be16(&s, (uint16_t)ni);
					for (uint64_t e = 0; e < nv; e++)
						sg_hpte(&s, tu_rand(&rng) | 1, tu_rand(&rng));
				}
				sg_be32(&s, 0);
				sg_be32(&s, 0);
			}
			sg_footer(&s, 3);
		}
		sg_u8(&s, 0);
		crosscheck(s.p, s.len, "random");
		/* and after rewrite */
		uint8_t *out;
		size_t out_len;
		hm_error_t err;
		assert_int_equal(an_rewrite(s.p, s.len, &out, &out_len, NULL, &err), 0);
		crosscheck(out, out_len, "random rewritten");
		free(out);
		free(s.p);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_random),
		cmocka_unit_test(test_fixtures),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
