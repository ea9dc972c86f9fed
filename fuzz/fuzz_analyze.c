/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the stream walker (an_analyze with state decoding and
 * every output), and, for inputs that walk, rewrite: the rewritten stream
 * must walk again with the same HTAB digest; and the streamed walk
 * (an_analyze_stream, pieces of sizes taken from the input) must agree with
 * the in-memory one: sound both ways or neither, the same digest. The input
 * buffer is exactly the input, so any read past it is caught by the address
 * sanitizer.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hptmig/analyze.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct piece_src {
	const uint8_t *p;
	size_t len, pos, step;
};

static int64_t piece_read(void *ctx, uint8_t *buf, size_t n, hm_error_t *err)
{
	(void)err;
	struct piece_src *m = ctx;
	size_t k = m->len - m->pos;
	if (k > n)
		k = n;
	/* piece sizes vary with the bytes: 1 + (byte at pos) * step */
	size_t piece = m->pos < m->len ? 1 + (size_t)m->p[m->pos] * m->step : 1;
	if (k > piece)
		k = piece;
	memcpy(buf, m->p + m->pos, k);
	m->pos += k;
	return (int64_t)k;
}

/* The streamed walk agrees with the in-memory one (r, rc). */
static void check_streamed(const uint8_t *data, size_t size, const an_report_t *r, int rc)
{
	struct piece_src m = {data, size, 0, size ? 1u + data[size / 2] % 64u : 1u};
	an_source_t src = {piece_read, &m};
	an_stream_opts_t so = {.opts = AN_OPT_STATE | AN_OPT_KEEP_TABLE};
	an_report_t *s = NULL;
	hm_error_t err;
	int rs = an_analyze_stream(&src, &so, &s, &err);
	if (!s)
		return;
	bool good_r = rc == 0 && r->complete, good_s = rs == 0 && s->complete;
	if (good_r != good_s)
		abort(); /* sound one way and not the other */
	if (good_r && memcmp(r->htab.digest, s->htab.digest, HM_SHA256_LEN) != 0)
		abort();
	an_report_free(s);
}

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
	check_streamed(data, size, r, rc);
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
