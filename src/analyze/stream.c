/* SPDX-License-Identifier: MIT */
/*
 * The streamed walk's reading side: a fixed read-ahead window over a byte
 * source (refilled when the walker needs bytes it does not hold, skipped
 * through for RAM page data), the commit and progress hooks, and the held
 * final phase (FULL device sections, EOF, vmdesc), read whole within its
 * cap because nothing on the wire says where its records end. Memory is the
 * window plus that cap, whatever the stream's size. Never prints.
 */
#include "an_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define PROGRESS_NS 1000000000ull

/* Read from the source into buf (at most n): > 0, 0 at its end, or < 0
 * with the walker's error set. The input cap is checked here. */
static int64_t src_read(struct an_walk *w, uint8_t *buf, size_t n)
{
	struct an_stream *st = w->st;
	if (st->eof)
		return 0;
	hm_error_t e;
	hm_error_clear(&e);
	int64_t k = st->src->read(st->src->ctx, buf, n, &e);
	if (k < 0) {
		if (w->err->code)
			return w->err->code;
		if (e.code) {
			*w->err = e;
			return e.code;
		}
		return hm_error_set(w->err, (int)k, (int64_t)st->total, "reading the stream at offset %" PRIu64 ": %s",
				    st->total, hm_err_str((int)k));
	}
	if (k == 0) {
		st->eof = true;
		return 0;
	}
	if ((uint64_t)k > n)
		return hm_error_set(w->err, HM_E_STATE, (int64_t)st->total, "byte source returned %" PRId64
				    " bytes for %zu", k, n);
	st->total += (uint64_t)k;
	if (st->total > st->o.max_input)
		return hm_error_set(w->err, HM_E_RANGE, (int64_t)st->o.max_input,
				    "the stream has more than %" PRIu64 " bytes (the input cap; --max-input SIZE"
				    " changes it)", st->o.max_input);
	return k;
}

static int ended(struct an_walk *w, uint64_t n, uint64_t have, const char *what)
{
	return an_fail(w, HM_E_TRUNCATED, (int64_t)w->pos,
		       "%s: needs %llu bytes, the stream ends %llu bytes later (at offset %llu)", what,
		       (unsigned long long)n, (unsigned long long)have, (unsigned long long)(w->pos + have));
}

/* Hand the bytes read before `upto` that the bytes hook has not had yet
 * to it, from the buffer that holds them (the window, or the held phase
 * after it took the window's place). 0 or the hook's error. */
int an_stream_release(struct an_walk *w, uint64_t upto)
{
	struct an_stream *st = w->st;
	if (!st->hooks.bytes || upto <= st->released)
		return 0;
	if (st->released < w->base || upto > w->base + w->avail)
		return hm_error_set(w->err, HM_E_STATE, (int64_t)st->released,
				    "stream window: bytes %" PRIu64 "..%" PRIu64 " are not in the window", st->released,
				    upto);
	const uint8_t *p = w->win + (st->released - w->base);
	size_t n = (size_t)(upto - st->released);
	uint64_t off = st->released;
	st->released = upto;
	return an_stream_hook_rc(w, st->hooks.bytes(st->hooks.opaque, off, p, n), "bytes");
}

int an_stream_drain(struct an_walk *w)
{
	struct an_stream *st = w->st;
	if (an_stream_release(w, w->base + w->avail) < 0)
		return w->err->code;
	for (;;) {
		int64_t k = src_read(w, st->win, AN_STREAM_WINDOW);
		if (k <= 0)
			return (int)k;
		w->base = w->pos;
		w->avail = 0;
		if (st->hooks.bytes) {
			st->released = st->total;
			if (an_stream_hook_rc(w, st->hooks.bytes(st->hooks.opaque, st->total - (uint64_t)k, st->win,
								 (size_t)k), "bytes") < 0)
				return w->err->code;
		}
	}
}

/* Drop the bytes before pos from the window, but none that the bytes hook
 * has not had (the caller forwards from the window), unless `need` more
 * bytes from pos would then not fit: those are handed to it first. */
static int compact(struct an_walk *w, uint64_t need)
{
	struct an_stream *st = w->st;
	uint64_t from = w->pos;
	if (st->hooks.bytes && st->released < from) {
		if (w->pos - st->released + need <= AN_STREAM_WINDOW)
			from = st->released;
		else if (an_stream_release(w, w->pos) < 0)
			return w->err->code;
	}
	size_t off = (size_t)(from - w->base);
	if (off > w->avail)
		off = w->avail;
	if (off) {
		memmove(st->win, st->win + off, w->avail - off);
		w->avail -= off;
		w->base += off;
	}
	return 0;
}

bool an_stream_fill(struct an_walk *w, uint64_t n, const char *what)
{
	struct an_stream *st = w->st;
	if (st->held || n > AN_STREAM_WINDOW) {
		/* the held phase is all in memory: its end is the stream's */
		if (n > AN_STREAM_WINDOW && !st->held)
			an_fail(w, HM_E_RANGE, (int64_t)w->pos, "%s: %llu bytes exceed the read window (%zu)", what,
				(unsigned long long)n, AN_STREAM_WINDOW);
		else
			ended(w, n, w->base + w->avail - w->pos, what);
		return false;
	}
	if (compact(w, n) < 0)
		return false;
	while (w->base + w->avail - w->pos < n) {
		int64_t k = src_read(w, st->win + w->avail, AN_STREAM_WINDOW - w->avail);
		if (k < 0)
			return false;
		if (k == 0) {
			ended(w, n, w->base + w->avail - w->pos, what);
			return false;
		}
		w->avail += (size_t)k;
	}
	return true;
}

int an_stream_skip(struct an_walk *w, uint64_t n, const char *what)
{
	struct an_stream *st = w->st;
	if (st->held) {
		ended(w, n, w->base + w->avail - w->pos, what);
		return w->err->code;
	}
	uint64_t start = w->pos, left = n;
	for (;;) {
		uint64_t have = w->base + w->avail - w->pos;
		if (have >= left) {
			w->pos += (size_t)left;
			return 0;
		}
		w->pos += (size_t)have;
		left -= have;
		/* the window is used up: read on behind what is kept of it */
		if (compact(w, AN_STREAM_WINDOW / 2) < 0)
			return w->err->code;
		int64_t k = src_read(w, st->win + w->avail, AN_STREAM_WINDOW - w->avail);
		if (k < 0)
			return w->err->code;
		if (k == 0) {
			w->pos = (size_t)start;
			return ended(w, n, n - left, what);
		}
		w->avail += (size_t)k;
	}
}

int an_stream_peek(struct an_walk *w)
{
	struct an_stream *st = w->st;
	if (st->held)
		return -1;
	if (compact(w, 1) < 0)
		return -1;
	while (w->base + w->avail == w->pos) {
		int64_t k = src_read(w, st->win + w->avail, AN_STREAM_WINDOW - w->avail);
		if (k <= 0)
			return -1; /* an error stays in w->err */
		w->avail += (size_t)k;
	}
	return *an_at(w);
}

int an_stream_hook_rc(struct an_walk *w, int rc, const char *hook)
{
	if (rc == 0)
		return 0;
	if (w->err->code)
		return w->err->code;
	return hm_error_set(w->err, rc < 0 ? rc : HM_E_CANCELLED, (int64_t)w->pos, "stopped by the %s hook at offset %zu",
			    hook, w->pos);
}

int an_stream_progress(struct an_walk *w, bool pass_end)
{
	struct an_stream *st = w->st;
	if (!st->hooks.progress)
		return 0;
	uint64_t now = hm_now_ns();
	if (!pass_end && now < st->next_progress_ns)
		return 0;
	st->next_progress_ns = now + PROGRESS_NS;
	const an_report_t *r = w->r;
	an_progress_t p = {
		.bytes = w->pos,
		.committed = st->committed,
		.ram_data_pages = r->ram.data_pages,
		.ram_zero_pages = r->ram.zero_pages,
		.htab_records = r->htab.records,
		.htab_entries_sent = r->htab.valid_sent,
		.htab_valid = r->priv->have_tab ? r->priv->tab.valid : 0,
		.htab_shift = r->priv->have_tab ? r->priv->tab.shift : 0,
		.held = st->held,
		.pass_end = pass_end,
	};
	for (size_t i = 0; i < r->nsections; i++)
		if (r->sections[i].kind == AN_SEC_RAM)
			p.ram_records = r->sections[i].n_start + r->sections[i].n_part + r->sections[i].n_end;
	return an_stream_hook_rc(w, st->hooks.progress(st->hooks.opaque, r, &p), "progress");
}

int an_stream_commit(struct an_walk *w, bool force)
{
	struct an_stream *st = w->st;
	if (st->held)
		return 0;
	uint64_t wend = w->base + w->avail;
	if (!force && w->pos - st->committed < AN_COMMIT_STEP &&
	    (wend - w->pos >= AN_COMMIT_TAIL || st->commit_mark == wend))
		return 0;
	st->commit_mark = wend;
	if (w->pos > st->committed) {
		st->committed = w->pos;
		w->r->committed = w->pos;
		if (st->hooks.commit) {
			const an_record_t *rec = NULL;
			if (st->in_record && w->r->nrecords > w->r->records_first)
				rec = &w->r->records[w->r->nrecords - 1 - w->r->records_first];
			int rc = an_stream_hook_rc(w, st->hooks.commit(st->hooks.opaque, w->pos, rec), "commit");
			if (rc < 0)
				return rc;
		}
		if (an_stream_release(w, w->pos) < 0)
			return w->err->code;
	}
	return an_stream_progress(w, false);
}

/*
 * A final phase that starts with EOF (no FULL section) is delimited: the
 * vmdesc (0x06, be32 length within the vmdesc cap, '{') or nothing. Returns
 * 1 when the held bytes are complete, 0 when more are needed, or the error.
 */
static int hold_eof_first(struct an_walk *w)
{
	struct an_stream *st = w->st;
	const uint8_t *h = st->hold;
	if (st->hold_len < 2)
		return 0;
	if (h[1] != QEMU_VM_VMDESCRIPTION)
		return hm_error_set(w->err, HM_E_FORMAT, (int64_t)st->hold_off + 1,
				    "byte 0x%02x after the EOF record at offset %" PRIu64 " is not a vmdesc (0x06)", h[1],
				    st->hold_off);
	if (st->hold_len < 6)
		return 0;
	uint32_t len = hm_load_be32(h + 2);
	if (len > AN_VMDESC_MAX_BYTES)
		return hm_error_set(w->err, HM_E_RANGE, (int64_t)st->hold_off + 2,
				    "vmdesc at offset %" PRIu64 ": %u bytes of JSON, more than the cap of %zu bytes",
				    st->hold_off + 1, len, AN_VMDESC_MAX_BYTES);
	if (st->hold_len < 6 + (size_t)len)
		return 0;
	if (st->hold_len > 6 + (size_t)len)
		return hm_error_set(w->err, HM_E_FORMAT, (int64_t)st->hold_off + 6 + len,
				    "bytes after the vmdesc that ends at offset %" PRIu64, st->hold_off + 6 + len);
	return 1;
}

/* The held bytes end with a complete vmdesc: a cheap test first (JSON
 * ends with '}', possibly followed by white space QEMU never sends). */
static bool hold_complete(const struct an_stream *st)
{
	if (!st->hold_len || st->hold[st->hold_len - 1] != '}')
		return false;
	size_t off;
	uint32_t jlen;
	return an_find_vmdesc(st->hold, st->hold_len, 1, &off, &jlen);
}

int an_stream_hold(struct an_walk *w)
{
	struct an_stream *st = w->st;
	uint64_t cap = st->o.max_device_state;
	/* what was read ahead goes to the bytes hook before the hold hook,
	 * which may forward it (--no-hold) */
	if (an_stream_release(w, w->base + w->avail) < 0)
		return w->err->code;
	if (st->hooks.hold) {
		int rc = an_stream_hook_rc(w, st->hooks.hold(st->hooks.opaque, w->pos), "hold");
		if (rc < 0)
			return rc;
	}
	st->hold_off = w->pos;
	size_t have = w->base + w->avail - w->pos, size = have + AN_STREAM_WINDOW;
	st->hold = malloc(size);
	if (!st->hold)
		return hm_error_set(w->err, -ENOMEM, (int64_t)w->pos, "out of memory");
	memcpy(st->hold, an_at(w), have);
	st->hold_len = have;
	bool eof_first = have && st->hold[0] == QEMU_VM_EOF;
	for (;;) {
		if (eof_first) {
			int rc = hold_eof_first(w);
			if (rc < 0)
				return rc;
			if (rc == 1 && st->o.stop_at_vmdesc)
				break;
		} else if (st->o.stop_at_vmdesc && hold_complete(st)) {
			break;
		}
		if (st->hold_len > cap)
			break;
		if (size - st->hold_len < AN_STREAM_WINDOW / 2) {
			size_t ns = size * 2 < cap + AN_STREAM_WINDOW ? size * 2 : (size_t)cap + AN_STREAM_WINDOW;
			uint8_t *nb = realloc(st->hold, ns);
			if (!nb)
				return hm_error_set(w->err, -ENOMEM, (int64_t)w->pos, "out of memory");
			st->hold = nb;
			size = ns;
		}
		int64_t k = src_read(w, st->hold + st->hold_len, size - st->hold_len);
		if (k < 0)
			return w->err->code;
		if (k == 0)
			break;
		st->hold_len += (size_t)k;
		if (an_stream_progress(w, false) < 0)
			return w->err->code;
	}
	if (st->hold_len > cap)
		return hm_error_set(w->err, HM_E_RANGE, (int64_t)(st->hold_off + cap),
				    "the final phase from offset %" PRIu64 " (FULL device sections, EOF, vmdesc)"
				    " has more than %" PRIu64 " bytes: the device-state cap"
				    " (--max-device-state SIZE changes it)",
				    st->hold_off, cap);
	st->held = true;
	w->win = st->hold;
	w->base = w->pos;
	w->avail = st->hold_len;
	w->end = w->pos + st->hold_len;
	return 0;
}
