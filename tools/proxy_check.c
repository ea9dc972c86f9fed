/* SPDX-License-Identifier: MIT */
/*
 * The proxy's checker (tools/proxy_check.h): the analyser's streamed walk
 * (an_analyze_stream) reads the source through the relay, and its commit
 * hook says which bytes were validated; only those are forwarded, straight
 * from the walker's window (its bytes hook). Kept here are only bytes the
 * walker handed over before their commit (its read-ahead when the final
 * phase starts, an item longer than its window's rest). --no-hold
 * forwards the final phase as it arrives (still walked, too late to stop).
 * The canonical re-encoding of spapr/htab is an_rewrite_stream's, writing
 * through the relay. Tools only: it prints the progress lines.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hptmig/analyze.h"
#include "proxy_check.h"
#include "stream_input.h"

/* Re-encoding keeps the last bytes read, as many as the walker may have
 * read ahead of the point where it starts the final phase. */
#define PROXY_TAIL (2 * AN_STREAM_WINDOW)

/* Pending bytes this far into the buffer and few: moved to its front. */
#define PROXY_COMPACT ((size_t)512 << 10)

/* Per-pass counts kept for the report (more passes are counted, not listed). */
#define PROXY_PASSES_MAX 4096

struct proxy_check {
	struct proxy_check_opts o;
	mig_proxy_sink_t *sink;
	hm_error_t *err;      /* the relay's error */
	/* Stream bytes [pend_off, pend_off + pend_len) read, not yet forwarded. */
	uint8_t *pend;        /* they are at pend[pend_start, pend_start + pend_len) */
	size_t pend_start, pend_len, pend_cap;
	uint64_t pend_off;
	uint64_t committed;   /* passthrough: the walk's last commit */
	bool forward_raw;     /* --no-hold in the final phase: forward as read */
	bool held;            /* the final phase started */
	uint64_t hold_off, hold_t0, held_bytes;
	uint64_t last_in_ns;  /* when the last byte of the held phase arrived */
	uint64_t out_ns;      /* when the held phase had been forwarded */
	bool final_unchecked; /* --no-hold and the final phase did not walk through */
	hm_error_t final_error; /* why, when it failed */
	an_report_t *rep;     /* the walk's report, after run */
	uint64_t out_htab_entries; /* re-encoded: valid entries written */
	/* progress */
	an_progress_t last;
	uint64_t passes[PROXY_PASSES_MAX];
	uint64_t npasses, prev_sent;
};

void proxy_check_opts_default(struct proxy_check_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->max_device_state = PROXY_DEVICE_STATE_DEFAULT;
}

int proxy_check_new(const struct proxy_check_opts *o, struct proxy_check **out, hm_error_t *err)
{
	struct proxy_check *c = calloc(1, sizeof(*c));
	if (!c)
		return hm_error_set(err, -ENOMEM, -1, "out of memory");
	c->o = *o;
	*out = c;
	return 0;
}

void proxy_check_free(struct proxy_check *c)
{
	if (!c)
		return;
	an_report_free(c->rep);
	free(c->pend);
	free(c);
}

/* Forget the n oldest pending bytes. The buffer is compacted only when a
 * new read does not fit behind them (keep): with 8 MiB of room and at most
 * the walker's 2 MiB read-ahead pending, a byte moves at most once. */
static void pend_consume(struct proxy_check *c, size_t n)
{
	c->pend_start += n;
	c->pend_len -= n;
	c->pend_off += n;
	if (c->pend_len == 0)
		c->pend_start = 0;
}

/* Forward the pending bytes before `to` (stream offset) and forget them. */
static int forward_to(struct proxy_check *c, uint64_t to)
{
	if (to <= c->pend_off)
		return 0;
	size_t n = (size_t)(to - c->pend_off);
	if (n > c->pend_len)
		n = c->pend_len;
	if (n == 0)
		return 0; /* (pend may be NULL: nothing was ever kept) */
	int rc = mig_proxy_emit(c->sink, c->pend + c->pend_start, n);
	if (rc == 0)
		pend_consume(c, n);
	return rc;
}

static int keep(struct proxy_check *c, const uint8_t *p, size_t n)
{
	if (c->pend_start >= PROXY_COMPACT && c->pend_len <= c->pend_start / 4) {
		/* Few bytes pending far in: back to the front (cheap), so that
		 * the buffer's hot part stays in the caches. */
		memmove(c->pend, c->pend + c->pend_start, c->pend_len);
		c->pend_start = 0;
	}
	if (c->pend_cap - c->pend_start - c->pend_len < n) {
		/* Move the pending bytes (at most the walker's read-ahead) to the
		 * front rather than grow: fresh pages cost more than the move. */
		if (c->pend_start) {
			memmove(c->pend, c->pend + c->pend_start, c->pend_len);
			c->pend_start = 0;
		}
		size_t cap = c->pend_cap ? c->pend_cap : (size_t)8 << 20;
		while (cap - c->pend_start - c->pend_len < n)
			cap *= 2;
		if (cap != c->pend_cap) {
			uint8_t *nb = realloc(c->pend, cap);
			if (!nb)
				return -ENOMEM;
			c->pend = nb;
			c->pend_cap = cap;
		}
	}
	memcpy(c->pend + c->pend_start + c->pend_len, p, n);
	c->pend_len += n;
	return 0;
}

/* Forget the pending bytes before `to` (re-encoding: an_rewrite_stream
 * wrote what they became). */
static void drop_to(struct proxy_check *c, uint64_t to)
{
	if (to <= c->pend_off)
		return;
	size_t n = (size_t)(to - c->pend_off);
	pend_consume(c, n > c->pend_len ? c->pend_len : n);
}

/* The walker's byte source: the relay. Passthrough: the walker hands the
 * bytes to on_bytes from its window. Re-encoding: an_rewrite_stream does
 * the same for itself; the last bytes read are kept here only with
 * --no-hold, so that it can forward the final phase from its first byte. */
static int64_t src_read(void *ctx, uint8_t *buf, size_t n, hm_error_t *err)
{
	struct proxy_check *c = ctx;
	/* Reads of a relay's size (the walker offers its window's room, up
	 * to 2 MiB): the bytes go out at the next commit while they are still
	 * in the caches, and the window's busy part stays small. */
	ssize_t k = mig_proxy_read(c->sink, buf, n < MIG_PROXY_BUF_SIZE ? n : MIG_PROXY_BUF_SIZE);
	(void)err; /* the relay's error holds why */
	if (k <= 0)
		return k;
	if (c->held)
		c->last_in_ns = hm_now_ns();
	if (c->forward_raw) {
		int rc = mig_proxy_emit(c->sink, buf, (size_t)k);
		c->pend_off += (uint64_t)k;
		return rc != 0 ? rc : k;
	}
	/* Passthrough: the walker hands the bytes to on_bytes from its window. */
	if (c->o.passthrough)
		return k;
	/* Re-encoding: an_rewrite_stream keeps and settles the bytes itself;
	 * only the walker's read-ahead may be needed here (--no-hold, at the
	 * hold), so the tail of that size is all that is kept, and only then. */
	if (!c->o.passthrough && !c->o.no_hold) {
		c->pend_off += (uint64_t)k;
		return k;
	}
	if (keep(c, buf, (size_t)k) != 0)
		return -ENOMEM;
	if (!c->o.passthrough && !c->held && c->pend_len > PROXY_TAIL)
		drop_to(c, c->pend_off + c->pend_len - PROXY_TAIL);
	return k;
}

/* Passthrough only (an_rewrite_stream keeps the commit hook for itself):
 * what is pending goes out; what the walker still holds follows through
 * on_bytes, straight from its window. */
static int on_commit(void *opaque, uint64_t committed, const an_record_t *rec)
{
	struct proxy_check *c = opaque;
	(void)rec;
	if (c->forward_raw)
		return 0;
	c->committed = committed;
	int rc = forward_to(c, committed);
	if (rc == 0 && c->held)
		c->out_ns = hm_now_ns(); /* the held phase is out */
	return rc;
}

/* Passthrough: bytes from the walker's buffer, in order. The committed
 * ones go out from there (no copy); the rest is kept until committed. */
static int on_bytes(void *opaque, uint64_t off, const uint8_t *p, size_t n)
{
	struct proxy_check *c = opaque;
	if (c->forward_raw)
		return 0; /* --no-hold: the final phase went out as it came */
	if (off != c->pend_off + c->pend_len)
		return hm_error_set(c->err, HM_E_STATE, (int64_t)off,
				    "proxy: the walker handed over offset %llu, %llu was next",
				    (unsigned long long)off, (unsigned long long)(c->pend_off + c->pend_len));
	if (off < c->committed) {
		int rc = forward_to(c, off); /* all of it: before off, so committed */
		size_t m = c->committed - off < n ? (size_t)(c->committed - off) : n;
		if (rc == 0)
			rc = mig_proxy_emit(c->sink, p, m);
		if (rc != 0)
			return rc;
		c->pend_off += m;
		p += m;
		n -= m;
		if (c->held)
			c->out_ns = hm_now_ns();
	}
	return n && keep(c, p, n) != 0 ? -ENOMEM : 0;
}

/* The final phase's bytes the walk held (also when it refused them: then
 * up to where it stopped; none went out unless --no-hold). */
static void note_held(struct proxy_check *c)
{
	if (c->held && c->rep && c->rep->file_bytes > c->hold_off)
		c->held_bytes = c->rep->file_bytes - c->hold_off;
}

static int on_hold(void *opaque, uint64_t offset)
{
	struct proxy_check *c = opaque;
	c->held = true;
	c->hold_off = offset;
	c->hold_t0 = hm_now_ns();
	if (!c->o.no_hold)
		return 0;
	/* Everything before offset was committed (and forwarded or written
	 * re-encoded); the pending bytes start at offset: out they go, and
	 * the rest as it arrives. */
	if (offset < c->pend_off)
		return hm_error_set(c->err, HM_E_STATE, (int64_t)offset,
				    "--no-hold: the final phase from offset %llu is no longer at hand",
				    (unsigned long long)offset);
	int rc = 0;
	if (c->o.passthrough)
		rc = forward_to(c, offset);
	else
		drop_to(c, offset); /* an_rewrite_stream wrote (or replaced) those */
	if (rc == 0)
		rc = forward_to(c, c->pend_off + c->pend_len);
	c->forward_raw = true;
	return rc;
}

static int on_progress(void *opaque, const an_report_t *r, const an_progress_t *p)
{
	struct proxy_check *c = opaque;
	(void)r;
	c->last = *p;
	if (p->pass_end) {
		if (c->npasses < PROXY_PASSES_MAX)
			c->passes[c->npasses] = p->htab_entries_sent - c->prev_sent;
		c->npasses++;
		c->prev_sent = p->htab_entries_sent;
	}
	if (!c->o.quiet)
		tool_follow_line(p);
	return 0;
}

static int write_out(void *opaque, const uint8_t *p, size_t n)
{
	struct proxy_check *c = opaque;
	if (c->forward_raw)
		return 0; /* --no-hold: the final phase went out as it came */
	int rc = mig_proxy_emit(c->sink, p, n);
	if (rc == 0 && c->held)
		c->out_ns = hm_now_ns(); /* the held phase is out up to here */
	return rc;
}

/* The walk ended without an error: a final phase it could not walk
 * through (no vmdesc, an undescribed section) is refused when held. */
static int check_complete(struct proxy_check *c, hm_error_t *err)
{
	const an_report_t *r = c->rep;
	if (r->complete)
		return 0;
	if (c->o.no_hold) {
		c->final_unchecked = true;
		return 0;
	}
	return hm_error_set(err, HM_E_UNSUPPORTED, r->stop_offset,
			    "the final phase from offset %llu could not be checked: %s (it was held and "
			    "not forwarded; --no-hold forwards it unchecked)",
			    (unsigned long long)c->hold_off, r->stop_reason);
}

/*
 * --no-hold, and the walk of the final phase failed (over its cap, a bad
 * record): those bytes went out unchecked as asked, so the relay is not
 * cut; the rest is forwarded as it comes, until the source closes, and the
 * walk's complaint is kept for the report (a warning line).
 */
static int final_unchecked(struct proxy_check *c, const hm_error_t *werr)
{
	char line[768];
	c->final_unchecked = true;
	c->final_error = *werr;
	fprintf(stderr, "hptmig proxy: warning: the final phase was forwarded unchecked "
		"(--no-hold) and does not walk: %s\n", hm_error_line(werr, line, sizeof(line)));
	fflush(stderr);
	uint8_t buf[1 << 16];
	for (;;) {
		ssize_t k = mig_proxy_read(c->sink, buf, sizeof(buf));
		if (k <= 0)
			return (int)k;
		int rc = mig_proxy_emit(c->sink, buf, (size_t)k);
		if (rc != 0)
			return rc;
	}
}

static int run(void *opaque, mig_proxy_sink_t *s, hm_error_t *err)
{
	struct proxy_check *c = opaque;
	c->sink = s;
	c->err = err;
	an_source_t src = {.read = src_read, .ctx = c};
	an_stream_hooks_t hooks = {.opaque = c, .commit = on_commit, .hold = on_hold,
				   .progress = on_progress, .bytes = on_bytes};
	an_stream_opts_t so = {.max_device_state = c->o.max_device_state, .stop_at_vmdesc = true,
			       .hooks = &hooks};
	hm_error_t werr;
	hm_error_clear(&werr);
	int rc;
	if (c->o.passthrough) {
		rc = an_analyze_stream(&src, &so, &c->rep, &werr);
	} else {
		uint64_t out = 0;
		bool unchecked = false;
		rc = an_rewrite_stream(&src, &so, write_out, c, &c->rep, &out, &unchecked, &werr);
	}
	if (rc < 0 && err->code == 0 && c->forward_raw)
		return final_unchecked(c, &werr);
	if (rc < 0) {
		if (err->code == 0) /* not the relay's failure: the walk's refusal */
			*err = werr;
		note_held(c);
		return err->code;
	}
	if (!c->rep)
		return hm_error_set(err, -ENOMEM, -1, "out of memory");
	rc = check_complete(c, err);
	if (rc == 0 && c->o.passthrough)
		rc = forward_to(c, c->pend_off + c->pend_len);
	if (c->out_ns == 0 && c->held)
		c->out_ns = hm_now_ns(); /* re-encoded: written when the walk returned */
	note_held(c);
	return rc;
}

void proxy_check_filter(struct proxy_check *c, mig_proxy_filter_t *f)
{
	f->run = run;
	f->opaque = c;
}

static json_t *htab_json(const struct proxy_check *c)
{
	const an_htab_stats_t *h = c->rep ? &c->rep->htab : NULL;
	if (!h || !h->present)
		return json_null();
	char dig[2 * HM_SHA256_LEN + 1];
	hm_hex(h->digest, HM_SHA256_LEN, dig);
	json_t *o = json_object();
	json_object_set_new(o, "shift", json_integer(h->no_hpt ? 0 : h->shift));
	json_object_set_new(o, "no_hpt", json_boolean(h->no_hpt));
	json_object_set_new(o, "valid", json_integer((json_int_t)h->valid));
	/* a partial walk has no digest to show */
	json_object_set_new(o, "digest", c->rep->complete ? json_string(dig) : json_null());
	/* The Merkle root of issue 13's verify v2: not computed until it lands. */
	json_object_set_new(o, "root", json_null());
	json_object_set_new(o, "records", json_integer((json_int_t)h->records));
	json_object_set_new(o, "entries_sent", json_integer((json_int_t)h->valid_sent));
	json_object_set_new(o, "invalid_sent", json_integer((json_int_t)h->invalid_sent));
	json_t *a = json_array();
	for (uint64_t i = 0; i < c->npasses && i < PROXY_PASSES_MAX; i++)
		json_array_append_new(a, json_integer((json_int_t)c->passes[i]));
	json_object_set_new(o, "passes", json_integer((json_int_t)c->npasses));
	json_object_set_new(o, "entries_per_pass", a);
	json_object_set_new(o, "reencoded", json_boolean(!c->o.passthrough));
	return o;
}

void proxy_check_json(const struct proxy_check *c, json_t *o)
{
	const an_report_t *r = c->rep;
	json_object_set_new(o, "checked", json_boolean(r && r->complete));
	json_object_set_new(o, "machine", r && r->machine[0] ? json_string(r->machine) : json_null());
	if (r && r->ram.present) {
		json_t *ram = json_object();
		json_object_set_new(ram, "data_pages", json_integer((json_int_t)r->ram.data_pages));
		json_object_set_new(ram, "zero_pages", json_integer((json_int_t)r->ram.zero_pages));
		json_object_set_new(ram, "total_bytes", json_integer((json_int_t)r->ram.total_bytes));
		json_object_set_new(o, "ram", ram);
	} else {
		json_object_set_new(o, "ram", json_null());
	}
	json_object_set_new(o, "htab", htab_json(c));
	json_object_set_new(o, "hold", json_boolean(!c->o.no_hold));
	/* held_ms: from the first held byte's arrival to the phase forwarded;
	 * hold_check_ms: from its last byte's arrival (the least downtime the
	 * hold adds: the walk of the phase and its forwarding). */
	bool h = c->held && !c->o.no_hold && c->out_ns >= c->hold_t0;
	json_object_set_new(o, "held_ms", json_real(h ? (double)(c->out_ns - c->hold_t0) / 1e6 : 0));
	json_object_set_new(o, "hold_check_ms",
			    json_real(h && c->last_in_ns && c->out_ns >= c->last_in_ns
					      ? (double)(c->out_ns - c->last_in_ns) / 1e6 : 0));
	json_object_set_new(o, "held_bytes", json_integer((json_int_t)c->held_bytes));
	json_object_set_new(o, "final_phase_unchecked", json_boolean(c->final_unchecked));
	if (c->final_error.code) {
		char line[768];
		json_object_set_new(o, "final_phase_error",
				    json_string(hm_error_line(&c->final_error, line, sizeof(line))));
	}
}
