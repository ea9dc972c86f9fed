/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for an_rewrite's promise. Whenever it succeeds: the
 * output walks again (an_analyze) without error, ends the same way (through
 * EOF, or stopped at the same record), carries the same table digest, and
 * every byte outside the `spapr/htab` records is kept, in order: the records
 * of other sections, the EOF, the vmdesc, and the unchecked tail after a walk
 * that had to stop. When it fails, it fails with an error code and a message
 * and no output. The streamed rewrite (an_rewrite_stream, the input handed
 * out in pieces) gives the same bytes whenever an_rewrite succeeds. abort()
 * on any violation.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hptmig/analyze.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct msrc {
	const uint8_t *p;
	size_t len, pos;
};

static int64_t msrc_read(void *ctx, uint8_t *buf, size_t n, hm_error_t *err)
{
	(void)err;
	struct msrc *m = ctx;
	size_t k = m->len - m->pos;
	if (k > n)
		k = n;
	if (k > 1 + (m->pos * 7919) % 4096) /* pieces of varying sizes */
		k = 1 + (m->pos * 7919) % 4096;
	memcpy(buf, m->p + m->pos, k);
	m->pos += k;
	return (int64_t)k;
}

struct obuf {
	uint8_t *p;
	size_t len, cap;
};

static int obuf_write(void *o, const uint8_t *p, size_t n)
{
	struct obuf *b = o;
	if (b->cap - b->len < n) {
		size_t c = b->cap ? b->cap : 4096;
		while (c - b->len < n)
			c *= 2;
		uint8_t *nb = realloc(b->p, c);
		if (!nb)
			abort();
		b->p = nb;
		b->cap = c;
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
	return 0;
}

/* The streamed rewrite of data gives exactly out[0, n). */
static void check_streamed(const uint8_t *data, size_t size, const uint8_t *out, size_t n, bool unchecked)
{
	struct msrc m = {data, size, 0};
	an_source_t src = {msrc_read, &m};
	struct obuf o = {0};
	bool unchecked_s = false;
	hm_error_t err;
	uint64_t written = 0;
	if (an_rewrite_stream(&src, NULL, obuf_write, &o, NULL, &written, &unchecked_s, &err) != 0 ||
	    written != n || o.len != n || (n && memcmp(o.p, out, n) != 0) || unchecked_s != unchecked)
		abort(); /* streamed and in-memory rewrites differ */
	free(o.p);
}

/* The bytes of buf outside the records of section index sec, concatenated:
 * the header, every other record, and whatever follows the last record. */
static uint8_t *outside(const uint8_t *buf, size_t len, const an_report_t *r, uint32_t sec, size_t *n)
{
	uint8_t *o = malloc(len ? len : 1);
	if (!o)
		abort();
	size_t k = 0, at = 8;
	memcpy(o, buf, 8);
	k = 8;
	for (size_t i = 0; i < r->nrecords; i++) {
		const an_record_t *rec = &r->records[i];
		if (rec->offset != at || rec->length > len - at)
			abort(); /* the records must tile the stream */
		if (rec->section != sec) {
			memcpy(o + k, buf + at, (size_t)rec->length);
			k += (size_t)rec->length;
		}
		at += (size_t)rec->length;
	}
	memcpy(o + k, buf + at, len - at);
	k += len - at;
	*n = k;
	return o;
}

static int64_t htab_index(const an_report_t *r)
{
	for (size_t i = 0; i < r->nsections; i++)
		if (r->sections[i].kind == AN_SEC_HTAB)
			return (int64_t)i;
	return -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *out = (uint8_t *)&size;
	size_t n = 1;
	bool unchecked = false;
	hm_error_t err;
	int rc = an_rewrite(data, size, &out, &n, &unchecked, &err);
	if (rc < 0) {
		if (out || n || rc != err.code || !err.msg[0])
			abort(); /* a failure gives no output and says why */
		return 0;
	}
	if (rc != 0)
		abort();
	check_streamed(data, size, out, n, unchecked);
	an_report_t *a = NULL, *b = NULL;
	hm_error_t ea, eb;
	if (an_analyze(data, size, 0, &a, &ea) != 0)
		abort(); /* rewrite succeeded on an input that does not walk */
	if (an_analyze(out, n, 0, &b, &eb) != 0)
		abort(); /* the output does not walk again */
	if (memcmp(a->htab.digest, b->htab.digest, HM_SHA256_LEN) != 0 || a->htab.valid != b->htab.valid ||
	    a->htab.no_hpt != b->htab.no_hpt || (!a->htab.no_hpt && a->htab.shift != b->htab.shift))
		abort(); /* another table */
	if (a->complete != b->complete || unchecked != !a->complete || a->nsections != b->nsections)
		abort(); /* ends another way */
	int64_t ha = htab_index(a), hb = htab_index(b);
	if (ha < 0 || hb != ha)
		abort();
	size_t la, lb;
	uint8_t *oa = outside(data, size, a, (uint32_t)ha, &la);
	uint8_t *ob = outside(out, n, b, (uint32_t)hb, &lb);
	if (la != lb || memcmp(oa, ob, la) != 0)
		abort(); /* a byte outside spapr/htab changed */
	/* Canonical: rewriting the output gives the output back. */
	uint8_t *out2 = NULL;
	size_t n2 = 0;
	if (an_rewrite(out, n, &out2, &n2, NULL, &err) != 0 || n2 != n || memcmp(out2, out, n) != 0)
		abort();
	free(out2);
	free(oa);
	free(ob);
	an_report_free(a);
	an_report_free(b);
	free(out);
	return 0;
}
