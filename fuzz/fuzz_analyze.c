/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the stream walker (an_analyze with state decoding and
 * every output), and, for inputs that walk, rewrite: the rewritten stream
 * must walk again with the same HTAB digest. The input buffer is exactly the
 * input, so any read past it is caught by the address sanitizer.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hptmig/analyze.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	an_report_t *r = NULL;
	hm_error_t err;
	int rc = an_analyze(data, size, AN_OPT_STATE | AN_OPT_KEEP_TABLE, &r, &err);
	if (!r)
		return 0;
	json_t *j = an_report_json(r, AN_OUT_HTAB | AN_OUT_STATE | AN_OUT_DESC);
	char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
	free(s);
	json_decref(j);
	char *t = an_report_text(r, AN_OUT_HTAB | AN_OUT_STATE);
	free(t);
	if (rc == 0 && r->htab.present && r->htab.n_end) {
		uint8_t *out = NULL;
		size_t n = 0;
		if (an_rewrite(data, size, &out, &n, NULL, &err) == 0) {
			an_report_t *r2 = NULL;
			int rc2 = an_analyze(out, n, 0, &r2, &err);
			if (rc2 != 0 || memcmp(r2->htab.digest, r->htab.digest, HM_SHA256_LEN) != 0)
				abort(); /* rewrite changed the table or broke the stream */
			an_report_free(r2);
			free(out);
		}
	}
	an_report_free(r);
	return 0;
}
