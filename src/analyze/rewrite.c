/* SPDX-License-Identifier: MIT */
/*
 * rewrite: the input stream byte for byte, except the `spapr/htab` section,
 * whose table (replayed with all the loader's checks) is sent once, whole and
 * canonically, in the section's END record; its PART records are dropped.
 * It never adds a section (the output is meant for real QEMU) and never
 * produces output from an input that failed a check.
 */
#include "an_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* The index of the spapr/htab section, or a negative code in err: the
 * stream has none, or its section never reached an END record. */
static int64_t rewrite_find_htab(const an_report_t *r, hm_error_t *err)
{
	int64_t hsec = -1;
	for (size_t i = 0; i < r->nsections; i++)
		if (r->sections[i].kind == AN_SEC_HTAB)
			hsec = (int64_t)i;
	if (hsec < 0 || !r->htab.present)
		return hm_error_set(err, HM_E_FORMAT, -1, "rewrite: the stream has no spapr/htab section");
	if (r->htab.n_end)
		return hsec;
	if (r->complete)
		return hm_error_set(err, HM_E_FORMAT, (int64_t)r->eof_offset, "rewrite: spapr/htab has no END record");
	return hm_error_set(err, HM_E_UNSUPPORTED, r->stop_offset,
			    "rewrite: spapr/htab has no END record before the walk had to stop: %s", r->stop_reason);
}

/*
 * The walked records tile [8, tail); everything from tail on is copied
 * unchanged: the EOF byte and the vmdesc, or, when the walk stopped,
 * the record it stopped in from its first byte (the walk may stop in
 * the middle of a record, e.g. at a subsection the built-in layout
 * does not describe; stop_offset is then inside that record).
 * Returns 0 with *tail set, or a negative code in err.
 */
static int rewrite_tail(const an_report_t *r, size_t len, size_t *tail_out, hm_error_t *err)
{
	size_t tail = 8, ntiled = 0;
	while (ntiled < r->nrecords && r->records[ntiled].offset == tail &&
	       r->records[ntiled].length <= len - tail)
		tail += (size_t)r->records[ntiled++].length;
	size_t want = r->complete ? (size_t)r->eof_offset : (size_t)r->stop_offset;
	if (ntiled != r->nrecords || tail > want || (r->complete && tail != want))
		return hm_error_set(err, HM_E_STATE, (int64_t)tail,
				    "rewrite: the walked records end at offset %zu, not where the walk ended (%zu):"
				    " refusing to rewrite",
				    tail, want);
	*tail_out = tail;
	return 0;
}

/* Writes the htab section's replacement for its END record at o (room was
 * reserved by the caller): [resize PART], END with the whole table.
 * Returns the bytes written. */
static size_t rewrite_put_end(uint8_t *o, const an_report_t *r, uint32_t sid, const uint8_t *payload,
			      size_t plen)
{
	const an_htab_stats_t *h = &r->htab;
	size_t n = 0;
	if (!h->no_hpt && h->shift != h->start_shift) {
		o[n++] = QEMU_VM_SECTION_PART;
		hm_store_be32(o + n, sid);
		hm_store_be32(o + n + 4, h->shift);
		o[n + 8] = QEMU_VM_SECTION_FOOTER;
		hm_store_be32(o + n + 9, sid);
		n += 13;
	}
	o[n++] = QEMU_VM_SECTION_END;
	hm_store_be32(o + n, sid);
	n += 4;
	memcpy(o + n, payload, plen);
	n += plen;
	o[n++] = QEMU_VM_SECTION_FOOTER;
	hm_store_be32(o + n, sid);
	n += 4;
	return n;
}

/* Builds the output: the header, every walked record but the htab
 * section's PART and END ones, the table in place of its END, the tail. */
static int rewrite_emit(const uint8_t *buf, size_t len, const an_report_t *r, int64_t hsec, size_t tail,
			uint8_t **out, size_t *out_len, hm_error_t *err)
{
	uint8_t *payload = NULL;
	size_t plen = 0;
	int rc = an_htab_encode_final(r, &payload, &plen);
	if (rc < 0)
		return hm_error_set(err, rc, -1, "rewrite: out of memory encoding the table");
	uint32_t sid = r->sections[hsec].id;
	size_t cap = len + plen + 64;
	uint8_t *o = malloc(cap);
	if (!o) {
		free(payload);
		return hm_error_set(err, -ENOMEM, -1, "rewrite: out of memory (%zu bytes)", cap);
	}
	memcpy(o, buf, 8);
	size_t n = 8;
	for (size_t i = 0; i < r->nrecords; i++) {
		const an_record_t *rec = &r->records[i];
		bool is_htab = rec->section == (uint32_t)hsec;
		if (!is_htab || rec->type == QEMU_VM_SECTION_START) {
			memcpy(o + n, buf + rec->offset, (size_t)rec->length);
			n += (size_t)rec->length;
		} else if (rec->type != QEMU_VM_SECTION_PART) {
			n += rewrite_put_end(o + n, r, sid, payload, plen);
		}
	}
	memcpy(o + n, buf + tail, len - tail);
	n += len - tail;
	free(payload);
	*out = o;
	*out_len = n;
	return 0;
}

/* The walk's work cap grows with the records' length, and dropping
 * PART records shortens them: output whose vmdesc walk would exceed
 * its own cap would not walk again, so refuse it by name. */
static int rewrite_check_work(const an_report_t *r, size_t len, size_t n, hm_error_t *err)
{
	size_t in_end = r->has_vmdesc ? (size_t)r->vmdesc_offset : len;
	size_t out_end = n - (len - in_end);
	if (r->priv->work <= an_work_max(out_end))
		return 0;
	uint64_t work = r->priv->work, cap_out = an_work_max(out_end);
	int64_t where = (int64_t)r->records[0].offset;
	for (size_t i = 0; i < r->nrecords; i++)
		if (r->records[i].section != UINT32_MAX && r->sections[r->records[i].section].kind == AN_SEC_VMSTATE) {
			where = (int64_t)r->records[i].offset;
			break;
		}
	return hm_error_set(err, HM_E_RANGE, where,
			    "rewrite: the vmdesc walk of the input takes %llu field visits; the rewritten stream,"
			    " %zu bytes shorter, allows %llu: it would not walk again, refusing",
			    (unsigned long long)work, in_end - out_end, (unsigned long long)cap_out);
}

int an_rewrite(const uint8_t *buf, size_t len, uint8_t **out, size_t *out_len, bool *unchecked_tail,
	       hm_error_t *err)
{
	hm_error_t local;
	if (!err)
		err = &local;
	hm_error_clear(err);
	*out = NULL;
	*out_len = 0;
	if (unchecked_tail)
		*unchecked_tail = false;
	an_report_t *r = NULL;
	uint8_t *o = NULL;
	size_t n = 0, tail = 0;
	int64_t hsec = -1;
	int rc = an_analyze(buf, len, AN_OPT_KEEP_TABLE, &r, err);
	if (rc < 0)
		goto out;
	if ((hsec = rewrite_find_htab(r, err)) < 0) {
		rc = (int)hsec;
		goto out;
	}
	if ((rc = rewrite_tail(r, len, &tail, err)) < 0)
		goto out;
	if (!r->complete && unchecked_tail)
		*unchecked_tail = true;
	if ((rc = rewrite_emit(buf, len, r, hsec, tail, &o, &n, err)) < 0)
		goto out;
	if ((rc = rewrite_check_work(r, len, n, err)) < 0) {
		free(o);
		goto out;
	}
	*out = o;
	*out_len = n;
out:
	an_report_free(r);
	return rc;
}
