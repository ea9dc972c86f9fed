/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for an_rewrite's promise. Whenever it succeeds: the
 * output walks again (an_analyze) without error, ends the same way (through
 * EOF, or stopped at the same record), carries the same table digest, and
 * every byte outside the `spapr/htab` records is kept, in order: the records
 * of other sections, the EOF, the vmdesc, and the unchecked tail after a walk
 * that had to stop. When it fails, it fails with an error code and a message
 * and no output. abort() on any violation.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hptmig/analyze.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

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
