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

/* The headers before the table's END payload at o (at most END_HDR_MAX
 * bytes): a PART carrying the final shift when the table was resized, then
 * the END record's header. Returns the bytes written. */
#define END_HDR_MAX (14 + 5) /* PART: type, id, shift, footer, id; END: type, id */
static size_t put_end_headers(uint8_t *o, uint32_t sid, bool resized, uint32_t shift)
{
	size_t n = 0;
	if (resized) {
		o[n++] = QEMU_VM_SECTION_PART;
		hm_store_be32(o + n, sid);
		hm_store_be32(o + n + 4, shift);
		o[n + 8] = QEMU_VM_SECTION_FOOTER;
		hm_store_be32(o + n + 9, sid);
		n += 13;
	}
	o[n++] = QEMU_VM_SECTION_END;
	hm_store_be32(o + n, sid);
	return n + 4;
}

/* Writes the htab section's replacement for its END record at o (room was
 * reserved by the caller): [resize PART], END with the whole table.
 * Returns the bytes written. */
static size_t rewrite_put_end(uint8_t *o, const an_report_t *r, uint32_t sid, const uint8_t *payload,
			      size_t plen)
{
	const an_htab_stats_t *h = &r->htab;
	size_t n = put_end_headers(o, sid, !h->no_hpt && h->shift != h->start_shift, h->shift);
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

/* ------------------------------------------------------------ streamed */

/*
 * The streamed rewrite gets the bytes from the walker's window through the
 * bytes hook. The walker's hooks decide, in order, what becomes of them:
 * written (validated bytes of any record but the table's PART and END
 * ones), dropped (those), or output inserted (the canonical END). The
 * decisions are queued and applied as the bytes arrive, straight from the
 * window (right after each commit); only bytes handed over before they
 * are decided are kept here: the walker's read-ahead at the final phase,
 * an item longer than its window's rest, and the held final phase (its
 * records are decided before its bytes come).
 */
struct rws_op {
	uint64_t upto;    /* settle the bytes before upto ... */
	bool drop;        /* ... by dropping them, else writing them */
	uint8_t *out;     /* or (non-NULL) write out[0, out_len) and free it */
	size_t out_len;
};

struct rws {
	const an_source_t *in;
	an_source_t self;
	uint8_t *pend;       /* bytes [pend_off, pend_off + pend_len) at pend + pend_start */
	size_t pend_start, pend_len, pend_cap;
	uint64_t pend_off;   /* with pend empty: the next byte to settle */
	struct rws_op *ops;  /* decisions not yet applied, ops[op_head, op_n) */
	size_t op_head, op_n, op_cap;
	uint64_t decided;    /* the last settle decision's upto */
	int (*write)(void *opaque, const uint8_t *p, size_t n);
	void *opaque;
	const an_stream_hooks_t *user; /* hold and progress are passed on */
	const an_report_t *r;
	uint64_t out_bytes;
	int64_t delta;       /* output bytes minus input bytes settled */
	bool end_done;       /* the table's END was replaced */
	hm_error_t *err;     /* &own: the walker reports its hooks' failures generically */
	hm_error_t own;
};

/* Make room for n more kept bytes. Settled bytes are consumed by index;
 * the live ones move to the front only when a read does not fit behind
 * them and they are no more than the room that frees, or when they are
 * few (a quarter of the room) and 512 KiB in, so that the buffer's hot
 * part stays in the caches (each byte moves at most about once), else the
 * buffer grows. */
static int rws_room(struct rws *s, size_t n)
{
	if (s->pend_start >= ((size_t)512 << 10) && s->pend_len <= s->pend_start / 4) {
		/* few bytes live far in: back to the front, where the caches are */
		memmove(s->pend, s->pend + s->pend_start, s->pend_len);
		s->pend_start = 0;
	}
	if (s->pend_cap - s->pend_start - s->pend_len >= n)
		return 0;
	if (s->pend_start && s->pend_len <= s->pend_start) {
		memmove(s->pend, s->pend + s->pend_start, s->pend_len);
		s->pend_start = 0;
		if (s->pend_cap - s->pend_len >= n)
			return 0;
	}
	size_t nc = s->pend_cap ? s->pend_cap : 2 * AN_STREAM_WINDOW;
	while (nc - s->pend_start - s->pend_len < n)
		nc *= 2;
	uint8_t *nb = realloc(s->pend, nc);
	if (!nb)
		return -ENOMEM;
	s->pend = nb;
	s->pend_cap = nc;
	return 0;
}

static int64_t rws_read(void *ctx, uint8_t *buf, size_t n, hm_error_t *err)
{
	struct rws *s = ctx;
	return s->in->read(s->in->ctx, buf, n, err);
}

static int rws_out(struct rws *s, const uint8_t *p, size_t n)
{
	if (!n)
		return 0;
	int rc = s->write(s->opaque, p, n);
	if (rc != 0)
		return hm_error_set(s->err, rc < 0 ? rc : -EIO, -1, "rewrite: writing the output failed after %llu bytes",
				    (unsigned long long)s->out_bytes);
	s->out_bytes += n;
	return 0;
}

static int rws_push(struct rws *s, struct rws_op op)
{
	if (s->op_head == s->op_n)
		s->op_head = s->op_n = 0;
	if (s->op_n == s->op_cap) {
		size_t nc = s->op_cap ? 2 * s->op_cap : 64;
		struct rws_op *no = realloc(s->ops, nc * sizeof(*no));
		if (!no) {
			free(op.out);
			return hm_error_set(s->err, -ENOMEM, -1, "rewrite: out of memory");
		}
		s->ops = no;
		s->op_cap = nc;
	}
	s->ops[s->op_n++] = op;
	return 0;
}

/* Apply the head decision to p[0, n) (stream bytes from pend_off): how
 * many bytes it took (<= n), or a negative code. */
static int64_t rws_apply(struct rws *s, struct rws_op *op, const uint8_t *p, size_t n)
{
	size_t m = op->upto - s->pend_off < n ? (size_t)(op->upto - s->pend_off) : n;
	if (!op->drop) {
		int rc = rws_out(s, p, m);
		if (rc < 0)
			return rc;
	} else {
		s->delta -= (int64_t)m;
	}
	return (int64_t)m;
}

/* Apply the queued decisions to what is kept and to p[0, n) (the bytes
 * that follow it; NULL, 0: none), keeping what is left undecided. */
static int rws_run(struct rws *s, const uint8_t *p, size_t n)
{
	while (s->op_head < s->op_n) {
		struct rws_op *op = &s->ops[s->op_head];
		if (op->out) {
			int rc = rws_out(s, op->out, op->out_len);
			free(op->out);
			op->out = NULL;
			if (rc < 0)
				return rc;
			s->op_head++;
			continue;
		}
		if (op->upto <= s->pend_off) {
			s->op_head++;
			continue;
		}
		int64_t m;
		if (s->pend_len) {
			m = rws_apply(s, op, s->pend + s->pend_start, s->pend_len);
			if (m < 0)
				return (int)m;
			s->pend_len -= (size_t)m;
			s->pend_start = s->pend_len ? s->pend_start + (size_t)m : 0;
		} else if (n) {
			m = rws_apply(s, op, p, n);
			if (m < 0)
				return (int)m;
			p += m;
			n -= (size_t)m;
		} else {
			return 0; /* its bytes have not come yet */
		}
		s->pend_off += (uint64_t)m;
	}
	if (n) {
		if (rws_room(s, n) != 0)
			return hm_error_set(s->err, -ENOMEM, -1, "rewrite: out of memory");
		memcpy(s->pend + s->pend_start + s->pend_len, p, n);
		s->pend_len += n;
	}
	return 0;
}

static int rws_bytes(void *opaque, uint64_t off, const uint8_t *p, size_t n)
{
	struct rws *s = opaque;
	if (off != s->pend_off + s->pend_len)
		return hm_error_set(s->err, HM_E_STATE, (int64_t)off, "rewrite: offset %llu handed over, %llu was next",
				    (unsigned long long)off, (unsigned long long)(s->pend_off + s->pend_len));
	return rws_run(s, p, n);
}

/* Write or drop the bytes up to offset upto (now or when they come). */
static int rws_settle(struct rws *s, uint64_t upto, bool drop)
{
	if (upto <= s->decided)
		return 0;
	s->decided = upto;
	int rc = rws_push(s, (struct rws_op){.upto = upto, .drop = drop});
	return rc < 0 ? rc : rws_run(s, NULL, 0);
}

static bool rws_is_table(const struct rws *s, const an_record_t *rec)
{
	return s->r && rec->section != UINT32_MAX && rec->section < s->r->nsections &&
	       s->r->sections[rec->section].kind == AN_SEC_HTAB;
}

/* The table's END record: [a PART with the final shift after a resize],
 * END with the whole table, canonically, by the chunk encoder. */
static int rws_put_end(struct rws *s, const an_record_t *rec)
{
	const an_report_t *r = s->r;
	uint8_t *payload = NULL;
	size_t plen = 0;
	if (an_htab_encode_final(r, &payload, &plen) < 0)
		return hm_error_set(s->err, -ENOMEM, -1, "rewrite: out of memory encoding the table");
	uint32_t sid = r->sections[rec->section].id;
	bool no_hpt = !r->priv->have_tab;
	uint32_t shift = no_hpt ? 0 : r->priv->tab.shift;
	uint8_t hdr[END_HDR_MAX], ftr[5]; /* [PART with the shift], END header */
	size_t n = put_end_headers(hdr, sid, !no_hpt && shift != r->htab.start_shift, shift);
	ftr[0] = QEMU_VM_SECTION_FOOTER;
	hm_store_be32(ftr + 1, sid);
	/* one output after the bytes decided so far: headers, payload, footer */
	uint8_t *o = realloc(payload, n + plen + 5);
	if (!o) {
		free(payload);
		return hm_error_set(s->err, -ENOMEM, -1, "rewrite: out of memory encoding the table");
	}
	memmove(o + n, o, plen);
	memcpy(o, hdr, n);
	memcpy(o + n + plen, ftr, 5);
	int rc = rws_push(s, (struct rws_op){.out = o, .out_len = n + plen + 5});
	if (rc == 0)
		rc = rws_run(s, NULL, 0);
	s->delta += (int64_t)(n + plen + 5);
	s->end_done = true;
	return rc;
}

static int rws_record(void *opaque, const an_report_t *r, const an_record_t *rec)
{
	struct rws *s = opaque;
	s->r = r;
	int rc = rws_settle(s, rec->offset, false);
	bool drop = rws_is_table(s, rec) && rec->type != QEMU_VM_SECTION_START;
	if (rc == 0)
		rc = rws_settle(s, rec->offset + rec->length, drop);
	if (rc == 0 && drop && rec->type == QEMU_VM_SECTION_END)
		rc = rws_put_end(s, rec);
	return rc;
}

/* The work cap of the output's vmdesc walk (see rewrite_check_work). */
static int rws_check_work(struct rws *s)
{
	const an_report_t *r = s->r;
	if (!r || !r->has_vmdesc)
		return 0;
	uint64_t out_end = (uint64_t)((int64_t)r->vmdesc_offset + s->delta);
	if (r->priv->work <= an_work_max((size_t)out_end))
		return 0;
	return hm_error_set(s->err, HM_E_RANGE, (int64_t)r->vmdesc_offset,
			    "rewrite: the vmdesc walk of the input takes %llu field visits; the rewritten stream,"
			    " %lld bytes shorter, allows %llu: it would not walk again, refusing",
			    (unsigned long long)r->priv->work, (long long)-s->delta,
			    (unsigned long long)an_work_max((size_t)out_end));
}

static int rws_commit(void *opaque, uint64_t committed, const an_record_t *rec)
{
	struct rws *s = opaque;
	if (rec)
		return rws_settle(s, committed, rws_is_table(s, rec) && rec->type != QEMU_VM_SECTION_START);
	if (s->r && s->r->complete && rws_check_work(s) < 0)
		return s->err->code;
	return rws_settle(s, committed, false);
}

static int rws_hold(void *opaque, uint64_t offset)
{
	struct rws *s = opaque;
	return s->user && s->user->hold ? s->user->hold(s->user->opaque, offset) : 0;
}

static int rws_progress(void *opaque, const an_report_t *r, const an_progress_t *p)
{
	struct rws *s = opaque;
	s->r = r;
	return s->user && s->user->progress ? s->user->progress(s->user->opaque, r, p) : 0;
}

/* A walk that stopped (no layout for a section) after the table's END:
 * the rest is copied unchanged, unchecked, as an_rewrite does. */
static int rws_copy_rest(struct rws *s)
{
	int rc = rws_settle(s, s->pend_off + s->pend_len, false);
	if (rc == 0 && (s->op_head < s->op_n || s->pend_len))
		rc = hm_error_set(s->err, HM_E_STATE, (int64_t)s->pend_off,
				  "rewrite: bytes from offset %llu were not settled",
				  (unsigned long long)s->pend_off);
	uint8_t buf[1 << 16];
	while (rc == 0) {
		int64_t k = s->in->read(s->in->ctx, buf, sizeof(buf), s->err);
		if (k < 0)
			return s->err->code ? s->err->code : (int)k;
		if (k == 0)
			break;
		rc = rws_out(s, buf, (size_t)k);
	}
	return rc;
}

int an_rewrite_stream(const an_source_t *src, const an_stream_opts_t *o,
		      int (*write)(void *opaque, const uint8_t *p, size_t n), void *opaque, an_report_t **stats,
		      uint64_t *out_bytes, bool *unchecked_tail, hm_error_t *err)
{
	hm_error_t local;
	if (!err)
		err = &local;
	hm_error_clear(err);
	if (stats)
		*stats = NULL;
	if (unchecked_tail)
		*unchecked_tail = false;
	struct rws s = {.in = src, .write = write, .opaque = opaque, .user = o ? o->hooks : NULL};
	s.err = &s.own;
	s.self = (an_source_t){rws_read, &s};
	an_stream_hooks_t h = {.opaque = &s, .commit = rws_commit, .record = rws_record, .hold = rws_hold,
			       .progress = rws_progress, .bytes = rws_bytes};
	an_stream_opts_t so = o ? *o : (an_stream_opts_t){0};
	so.opts |= AN_OPT_KEEP_TABLE;
	so.hooks = &h;
	an_report_t *r = NULL;
	int rc = an_analyze_stream(&s.self, &so, &r, err);
	if (rc < 0 && s.own.code) {
		*err = s.own; /* the hook's own words, not "stopped by the hook" */
		if (r)
			r->error = s.own;
	}
	if (rc == 0 && r) {
		int64_t hsec = rewrite_find_htab(r, err);
		if (hsec < 0)
			rc = (int)hsec;
		else if (!s.end_done)
			rc = hm_error_set(err, HM_E_STATE, -1, "rewrite: the table's END record was not replaced");
		else if (!r->complete) {
			if (unchecked_tail)
				*unchecked_tail = true;
			rc = rws_copy_rest(&s);
			if (rc < 0)
				*err = s.own;
		}
	}
	if (rc == 0 && (s.op_head < s.op_n || s.pend_len))
		rc = hm_error_set(err, HM_E_STATE, (int64_t)s.pend_off,
				  "rewrite: bytes from offset %llu were not settled", (unsigned long long)s.pend_off);
	for (size_t i = s.op_head; i < s.op_n; i++)
		free(s.ops[i].out);
	free(s.ops);
	free(s.pend);
	if (out_bytes)
		*out_bytes = s.out_bytes;
	if (stats)
		*stats = r;
	else
		an_report_free(r);
	return rc;
}
