/* SPDX-License-Identifier: MIT */
/*
 * The streamed walk (an_analyze_stream, an_rewrite_stream) against the
 * in-memory one: the same report, state, digest and rewrite output whatever
 * sizes the source hands out (seeded, printed), on whole streams, every
 * prefix and random corruptions; the hooks' contract (commit never ahead of
 * what was read, records tiling the stream, the final phase held); the
 * device-state cap; and constant memory on a stream far larger than the
 * window, measured as the most the allocator held during the walk.
 */
#include "testutil.h"

#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hptmig/analyze.h"
#include "streamgen.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

static uint64_t rng;

/* A stream in memory handed out in random pieces (1..max bytes). */
struct msrc {
	const uint8_t *p;
	size_t len, pos, max;
};

static int64_t msrc_read(void *ctx, uint8_t *buf, size_t n, hm_error_t *err)
{
	(void)err;
	struct msrc *m = ctx;
	size_t k = m->len - m->pos;
	size_t piece = 1 + (size_t)(tu_rand(&rng) % m->max);
	if (k > n)
		k = n;
	if (k > piece)
		k = piece;
	memcpy(buf, m->p + m->pos, k);
	m->pos += k;
	return (int64_t)k;
}

static size_t rand_max(void)
{
	static const size_t maxes[] = {1, 3, 7, 64, 4096, 100000, (size_t)1 << 22};
	return maxes[tu_rand(&rng) % (sizeof(maxes) / sizeof(maxes[0]))];
}

/* The report as JSON text without the timing. */
static char *report_text(const an_report_t *r)
{
	json_t *o = an_report_json(r, AN_OUT_STATE | AN_OUT_DESC);
	json_object_del(o, "walk_ms");
	char *s = json_dumps(o, JSON_SORT_KEYS | JSON_COMPACT);
	json_decref(o);
	assert_non_null(s);
	return s;
}

/* Walk buf both ways: same return code, same report (and state). */
static void walk_both(const uint8_t *buf, size_t len, unsigned opts, const an_stream_opts_t *extra)
{
	an_report_t *a = NULL, *b = NULL;
	hm_error_t ea, eb;
	int ra = an_analyze(buf, len, opts, &a, &ea);
	struct msrc m = {buf, len, 0, rand_max()};
	an_source_t src = {msrc_read, &m};
	an_stream_opts_t so = extra ? *extra : (an_stream_opts_t){0};
	so.opts = opts;
	int rb = an_analyze_stream(&src, &so, &b, &eb);
	assert_non_null(a);
	assert_non_null(b);
	/* Sound (walked whole) one way iff the other; both walked without
	 * error: the same report. A stream the in-memory walk refuses at its
	 * vmdesc may stop earlier when streamed (a section it cannot decode
	 * before the vmdesc arrives), and the other way round. */
	bool good_a = ra == 0 && a->complete, good_b = rb == 0 && b->complete;
	bool mixed = (ra < 0) != (rb < 0) && !(ra == 0 ? a->complete : b->complete);
	if (good_a != good_b || ((ra < 0) != (rb < 0) && !mixed))
		fail_msg("len %zu, pieces <= %zu: in memory rc %d (%s), streamed rc %d (%s)", len, m.max, ra,
			 ea.msg, rb, eb.msg);
	if (ra == 0 && rb == 0) {
		/* stopped in the live phase: the vmdesc after EOF was never
		 * looked for (the rest was only counted) */
		if (!a->complete && a->has_vmdesc && !b->has_vmdesc && (uint64_t)a->stop_offset < a->vmdesc_offset) {
			json_decref(a->vmdesc);
			a->vmdesc = NULL;
			a->has_vmdesc = false;
		}
		char *ta = report_text(a), *tb = report_text(b);
		if (strcmp(ta, tb) != 0) {
			fprintf(stderr, "in memory: %s\nstreamed:  %s\n", ta, tb);
			fail_msg("reports differ (len %zu, pieces <= %zu)", len, m.max);
		}
		free(ta);
		free(tb);
		assert_memory_equal(a->htab.digest, b->htab.digest, HM_SHA256_LEN);
		if (a->state_text || b->state_text) {
			assert_non_null(a->state_text);
			assert_non_null(b->state_text);
			assert_string_equal(a->state_text, b->state_text);
		}
		assert_int_equal(b->committed, b->complete ? len : b->committed);
	}
	an_report_free(a);
	an_report_free(b);
}

static void build_variants(int k, struct sg *s)
{
	struct sg_basic o;
	memset(s, 0, sizeof(*s));
	if (k == 0) {
		sg_build_basic(s, &o, SG_VMDESC_BASIC);
	} else if (k == 1) {
		sg_build_basic(s, &o, NULL); /* no vmdesc: walk stops at timer */
	} else if (k == 3) {
		/* a table resize (PART header 19) before the chunks: the
		 * rewrite sends one PART with the final shift before END */
		struct sg t = {0};
		sg_build_basic(&t, &o, SG_VMDESC_BASIC);
		size_t at = o.htab_start_hdr + 4 + 5;
		sg_bytes(s, t.p, at);
		sg_part(s, 0x02, 2);
		sg_be32(s, 19);
		sg_footer(s, 2);
		sg_bytes(s, t.p + at, t.len - at);
		free(t.p);
	} else {
		/* no FULL section at all: EOF right after the live ones */
		sg_build_basic(s, &o, NULL);
		s->len = o.timer_rec;
		sg_u8(s, 0x00);
		sg_vmdesc(s, "{\"page_size\":4096,\"devices\":[]}");
	}
}

static void test_same_as_in_memory(void **state)
{
	(void)state;
	for (int k = 0; k < 4; k++) {
		struct sg s;
		build_variants(k, &s);
		for (int i = 0; i < 40; i++) {
			walk_both(s.p, s.len, 0, NULL);
			walk_both(s.p, s.len, AN_OPT_STATE | AN_OPT_KEEP_TABLE, NULL);
		}
		free(s.p);
	}
}

/* Every prefix: both walks fail (or stop) alike. */
static void test_prefixes(void **state)
{
	(void)state;
	for (int k = 0; k < 4; k++) {
		struct sg s;
		build_variants(k, &s);
		for (size_t n = 0; n < s.len; n++)
			walk_both(s.p, n, AN_OPT_STATE, NULL);
		free(s.p);
	}
}

/* Random corruptions of one to three bytes. */
static void test_corruptions(void **state)
{
	(void)state;
	struct sg s;
	build_variants(0, &s);
	uint8_t *c = malloc(s.len);
	assert_non_null(c);
	for (int i = 0; i < 3000; i++) {
		memcpy(c, s.p, s.len);
		int nb = 1 + (int)(tu_rand(&rng) % 3);
		for (int j = 0; j < nb; j++)
			c[tu_rand(&rng) % s.len] = (uint8_t)tu_rand(&rng);
		walk_both(c, s.len, AN_OPT_STATE, NULL);
	}
	free(c);
	free(s.p);
}

/* The real QEMU streams: the same report and --state text streamed as in
 * memory (the CLI streams; test_fixtures checks the in-memory walk against
 * QEMU's analyser). Skipped without ../shared. */
static void test_fixtures_same(void **state)
{
	(void)state;
	const char *names[] = {"pseries-qemu10-p8-2g-live.mig", "pseries-qemu10-p9radix-1g.mig",
			       "pseries-qemu72-p8-1g.mig"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		const char *path = tu_fixture(names[i]);
		if (!path)
			skip();
		uint8_t *p;
		size_t n;
		assert_int_equal(tu_read_file(path, &p, &n), 0);
		walk_both(p, n, AN_OPT_STATE | AN_OPT_KEEP_TABLE, NULL);
		free(p);
	}
}

/* ------------------------------------------------------------ hooks */

struct hk {
	struct msrc *m;
	uint64_t committed, next_rec, hold_at, progress_passes, records;
	int holds;
};

static int hk_commit(void *o, uint64_t committed, const an_record_t *rec)
{
	struct hk *h = o;
	assert_true(committed > h->committed);
	assert_true(committed <= h->m->pos); /* never ahead of what was read */
	if (rec)
		assert_true(committed > rec->offset);
	h->committed = committed;
	return 0;
}

static int hk_record(void *o, const an_report_t *r, const an_record_t *rec)
{
	struct hk *h = o;
	(void)r;
	assert_int_equal(rec->offset, h->next_rec); /* records tile the stream */
	assert_true(rec->length > 0);
	assert_true(rec->offset + rec->length <= h->m->pos);
	h->next_rec = rec->offset + rec->length;
	h->records++;
	return 0;
}

static int hk_hold(void *o, uint64_t off)
{
	struct hk *h = o;
	h->holds++;
	h->hold_at = off;
	assert_true(h->committed == off); /* everything before was validated */
	return 0;
}

static int hk_progress(void *o, const an_report_t *r, const an_progress_t *p)
{
	struct hk *h = o;
	(void)r;
	h->progress_passes += p->pass_end;
	assert_true(p->bytes <= h->m->pos);
	return 0;
}

static void test_hooks(void **state)
{
	(void)state;
	struct sg s = {0};
	struct sg_basic o;
	sg_build_basic(&s, &o, SG_VMDESC_BASIC);
	for (int i = 0; i < 30; i++) {
		struct msrc m = {s.p, s.len, 0, rand_max()};
		an_source_t src = {msrc_read, &m};
		struct hk h = {.m = &m, .next_rec = 8};
		an_stream_hooks_t hooks = {&h, hk_commit, hk_record, hk_hold, hk_progress};
		an_stream_opts_t so = {.hooks = &hooks};
		an_report_t *r = NULL;
		hm_error_t err;
		assert_int_equal(an_analyze_stream(&src, &so, &r, &err), 0);
		assert_true(r->complete);
		assert_int_equal(h.holds, 1);
		assert_int_equal(h.hold_at, o.timer_rec);
		assert_int_equal(h.next_rec, o.eof); /* the last record ends at EOF */
		assert_int_equal(h.records, r->nrecords);
		assert_int_equal(h.committed, s.len);
		assert_int_equal(h.progress_passes, 3); /* the table's START, PART, END */
		/* the report keeps only the final phase's records */
		assert_int_equal(r->records_first, r->nrecords - 2);
		assert_int_equal(r->records[0].offset, o.timer_rec);
		an_report_free(r);
	}
	free(s.p);
}

/* The bytes hook: every byte read, once, in order, equal to the input;
 * handed over before its commit only rarely (the window's read-ahead when
 * the final phase starts): the proxy forwards the rest from the window. */
struct bh {
	struct msrc *m;
	uint64_t committed, next, early;
	bool held;
};

static int bh_commit(void *o, uint64_t committed, const an_record_t *rec)
{
	struct bh *h = o;
	(void)rec;
	/* what the last commit validated was handed over right after it
	 * (a proxy must not sit on committed bytes: its source may wait) */
	assert_true(h->next >= h->committed);
	h->committed = committed;
	return 0;
}

static int bh_hold(void *o, uint64_t off)
{
	struct bh *h = o;
	h->held = true;
	assert_true(h->next >= off); /* the read-ahead came first */
	return 0;
}

static int bh_bytes(void *o, uint64_t off, const uint8_t *p, size_t n)
{
	struct bh *h = o;
	assert_int_equal(off, h->next);
	assert_true(n > 0);
	assert_true(off + n <= h->m->pos); /* only what was read */
	assert_memory_equal(p, h->m->p + off, n);
	if (off + n > h->committed)
		h->early += off + n - (off > h->committed ? off : h->committed);
	h->next = off + n;
	return 0;
}

static void bytes_walk(const uint8_t *buf, size_t len, bool stop_at_vmdesc, uint64_t early_max)
{
	struct msrc m = {buf, len, 0, rand_max()};
	an_source_t src = {msrc_read, &m};
	struct bh h = {.m = &m};
	an_stream_hooks_t hooks = {.opaque = &h, .commit = bh_commit, .hold = bh_hold, .bytes = bh_bytes};
	an_stream_opts_t so = {.hooks = &hooks, .stop_at_vmdesc = stop_at_vmdesc};
	an_report_t *r = NULL;
	hm_error_t err;
	int rc = an_analyze_stream(&src, &so, &r, &err);
	if (rc != 0)
		fail_msg("len %zu, pieces <= %zu: rc %d (%s)", len, m.max, rc, err.msg);
	assert_int_equal(h.next, m.pos); /* all of what was read, at the end */
	if (r->complete) {
		assert_int_equal(h.committed, len);
		assert_int_equal(h.next, len);
	}
	if (h.early > early_max)
		fail_msg("len %zu, pieces <= %zu: %llu bytes handed over before their commit (at most %llu)", len,
			 m.max, (unsigned long long)h.early, (unsigned long long)early_max);
	an_report_free(r);
}

static void test_bytes_hook(void **state)
{
	(void)state;
	for (int k = 0; k < 4; k++) {
		struct sg s;
		build_variants(k, &s);
		for (int i = 0; i < 20; i++)
			bytes_walk(s.p, s.len, i & 1, s.len);
		free(s.p);
	}
	const char *path = tu_fixture("pseries-qemu10-p8-2g-live.mig");
	if (!path)
		skip();
	uint8_t *p;
	size_t n;
	assert_int_equal(tu_read_file(path, &p, &n), 0);
	/* 90 MB of RAM pages and table chunks: early are only the window's
	 * read-ahead when the final phase starts */
	for (int i = 0; i < (SANITIZED ? 1 : 3); i++)
		bytes_walk(p, n, true, AN_STREAM_WINDOW);
	free(p);
}

/* A hook's refusal stops the walk with its code. */
static int refuse_commit(void *o, uint64_t committed, const an_record_t *rec)
{
	(void)o;
	(void)rec;
	return committed > 200 ? HM_E_PEER : 0;
}

static void test_hook_stops(void **state)
{
	(void)state;
	struct sg s = {0};
	struct sg_basic o;
	sg_build_basic(&s, &o, SG_VMDESC_BASIC);
	struct msrc m = {s.p, s.len, 0, 64};
	an_source_t src = {msrc_read, &m};
	an_stream_hooks_t hooks = {.commit = refuse_commit};
	an_stream_opts_t so = {.hooks = &hooks};
	an_report_t *r = NULL;
	hm_error_t err;
	assert_int_equal(an_analyze_stream(&src, &so, &r, &err), HM_E_PEER);
	assert_non_null(strstr(err.msg, "commit hook"));
	an_report_free(r);
	free(s.p);
}

/* The final phase beyond --max-device-state: a named error at the cap. */
static void test_device_state_cap(void **state)
{
	(void)state;
	struct sg s = {0};
	struct sg_basic o;
	sg_build_basic(&s, &o, SG_VMDESC_BASIC);
	uint64_t need = s.len - o.timer_rec;
	an_stream_opts_t so = {.max_device_state = need - 1};
	struct msrc m = {s.p, s.len, 0, 100};
	an_source_t src = {msrc_read, &m};
	an_report_t *r = NULL;
	hm_error_t err;
	assert_int_equal(an_analyze_stream(&src, &so, &r, &err), HM_E_RANGE);
	assert_non_null(strstr(err.msg, "device-state cap"));
	assert_int_equal(err.offset, (int64_t)(o.timer_rec + need - 1));
	an_report_free(r);
	/* exactly the phase's size: fine */
	so.max_device_state = need;
	m.pos = 0;
	assert_int_equal(an_analyze_stream(&src, &so, &r, &err), 0);
	assert_true(r->complete);
	an_report_free(r);
	/* --max-input: the whole stream's bytes */
	an_stream_opts_t si = {.max_input = s.len - 1};
	m.pos = 0;
	assert_int_equal(an_analyze_stream(&src, &si, &r, &err), HM_E_RANGE);
	assert_non_null(strstr(err.msg, "input cap"));
	an_report_free(r);
	free(s.p);
}

/* ------------------------------------------------------------ rewrite */

struct obuf {
	struct sg s;
	size_t fail_after; /* 0: never */
};

static int obuf_write(void *o, const uint8_t *p, size_t n)
{
	struct obuf *b = o;
	if (b->fail_after && b->s.len + n > b->fail_after)
		return -EPIPE;
	sg_bytes(&b->s, p, n);
	return 0;
}

static void test_rewrite_same(void **state)
{
	(void)state;
	for (int k = 0; k < 4; k++) {
		struct sg s;
		build_variants(k, &s);
		uint8_t *want = NULL;
		size_t want_len = 0;
		bool unchecked_a = false, unchecked_b = false;
		hm_error_t err;
		int ra = an_rewrite(s.p, s.len, &want, &want_len, &unchecked_a, &err);
		assert_int_equal(ra, 0);
		for (int i = 0; i < 20; i++) {
			struct msrc m = {s.p, s.len, 0, rand_max()};
			an_source_t src = {msrc_read, &m};
			struct obuf out = {{0}, 0};
			an_report_t *r = NULL;
			uint64_t n = 0;
			int rb = an_rewrite_stream(&src, NULL, obuf_write, &out, &r, &n, &unchecked_b, &err);
			assert_int_equal(ra < 0, rb < 0);
			if (ra == 0) {
				assert_int_equal(n, want_len);
				assert_int_equal(out.s.len, want_len);
				assert_memory_equal(out.s.p, want, want_len);
				assert_int_equal(unchecked_a, unchecked_b);
			}
			an_report_free(r);
			free(out.s.p);
		}
		free(want);
		free(s.p);
	}
}

/* A failing writer: the rewrite stops with the writer's error. */
static void test_rewrite_write_fails(void **state)
{
	(void)state;
	struct sg s;
	build_variants(0, &s);
	struct msrc m = {s.p, s.len, 0, 1000};
	an_source_t src = {msrc_read, &m};
	struct obuf out = {{0}, 100};
	hm_error_t err;
	uint64_t n = 0;
	assert_int_equal(an_rewrite_stream(&src, NULL, obuf_write, &out, NULL, &n, NULL, &err), -EPIPE);
	assert_non_null(strstr(err.msg, "writing the output"));
	free(out.s.p);
	free(s.p);
}

/* ------------------------------------------------------------ memory */

/*
 * A stream generated as it is read, never held: ram with one block of
 * `pages` 4 KiB pages, all sent in one PART record, a small table, EOF, no
 * vmdesc. While the walker reads it, the source samples how much the
 * allocator holds.
 */
struct gen {
	uint64_t pages, page;   /* pages sent so far */
	struct sg head, tail;   /* bytes before and after the pages */
	size_t head_pos, tail_pos, item_pos;
	uint8_t item[8 + 4096];
	size_t peak, base;
};

static size_t heap_now(void)
{
	struct mallinfo2 mi = mallinfo2();
	return mi.uordblks + mi.hblkhd;
}

static int64_t gen_read(void *ctx, uint8_t *buf, size_t n, hm_error_t *err)
{
	(void)err;
	struct gen *g = ctx;
	size_t h = heap_now();
	if (h > g->peak)
		g->peak = h;
	size_t k = 0;
	while (k < n) {
		if (g->head_pos < g->head.len) {
			buf[k++] = g->head.p[g->head_pos++];
		} else if (g->page < g->pages) {
			if (g->item_pos == 0) {
				hm_store_be64(g->item, (g->page << 12) | 0x08 | 0x20);
				memset(g->item + 8, (int)(g->page & 0xff), 4096);
			}
			size_t c = sizeof(g->item) - g->item_pos < n - k ? sizeof(g->item) - g->item_pos : n - k;
			memcpy(buf + k, g->item + g->item_pos, c);
			k += c;
			g->item_pos += c;
			if (g->item_pos == sizeof(g->item)) {
				g->item_pos = 0;
				g->page++;
			}
		} else if (g->tail_pos < g->tail.len) {
			buf[k++] = g->tail.p[g->tail_pos++];
		} else {
			break;
		}
	}
	return (int64_t)k;
}

static void test_constant_memory(void **state)
{
	(void)state;
	struct gen g = {.pages = SANITIZED ? 32768 : 131072}; /* 128 MiB or 512 MiB of pages */
	uint64_t bytes = g.pages << 12;
	sg_header(&g.head);
	sg_start(&g.head, 0x01, 1, "ram", 0, 4);
	sg_be64(&g.head, bytes | 0x04);
	sg_str8(&g.head, "ram0");
	sg_be64(&g.head, bytes);
	sg_be64(&g.head, 0x10);
	sg_footer(&g.head, 1);
	sg_start(&g.head, 0x01, 2, "spapr/htab", 0, 1);
	sg_be32(&g.head, 18);
	sg_footer(&g.head, 2);
	sg_part(&g.head, 0x02, 1);
	/* the first page names its block, the others CONTINUE */
	sg_be64(&g.head, 0x08);
	sg_str8(&g.head, "ram0");
	for (int i = 0; i < 4096; i++)
		sg_u8(&g.head, 0);
	g.page = 1;
	sg_be64(&g.tail, 0x10);
	sg_footer(&g.tail, 1);
	sg_part(&g.tail, 0x03, 2);
	sg_be32(&g.tail, 0);
	sg_be32(&g.tail, 8);
	sg_be16(&g.tail, 1);
	sg_be16(&g.tail, 0);
	sg_hpte(&g.tail, 0x4000000123456715ull, 0x0000000001231190ull);
	sg_be32(&g.tail, 0);
	sg_be32(&g.tail, 0);
	sg_footer(&g.tail, 2);
	sg_u8(&g.tail, 0x00);
	g.base = heap_now();
	an_source_t src = {gen_read, &g};
	an_report_t *r = NULL;
	hm_error_t err;
	int rc = an_analyze_stream(&src, NULL, &r, &err);
	if (rc != 0)
		fail_msg("%s", err.msg);
	assert_true(r->complete);
	assert_int_equal(r->ram.data_pages, g.pages);
	assert_int_equal(r->htab.valid, 1);
	assert_int_equal(r->file_bytes, g.head.len + (g.pages - 1) * (8 + 4096) + g.tail.len);
	size_t grew = g.peak > g.base ? g.peak - g.base : 0;
	print_message("stream of %llu MiB: the allocator held at most %zu KiB more during the walk%s\n",
		      (unsigned long long)(r->file_bytes >> 20), grew >> 10,
		      SANITIZED ? " (not checked under a sanitizer)" : "");
	/* the window (2 MiB), the report, the table: far from the stream */
	if (!SANITIZED && grew > AN_STREAM_WINDOW + ((size_t)4 << 20))
		fail_msg("the walk held %zu bytes for a %llu-byte stream", grew, (unsigned long long)r->file_bytes);
	an_report_free(r);
	free(g.head.p);
	free(g.tail.p);
}

/*
 * A long run of ZERO and PAGE items with CONTINUE (the RAM walk's fast
 * path, ram_run) inside the basic stream's ram PART record, longer than
 * the window: the same counts both ways, and a bad item anywhere in it
 * (a page outside the block, an unsupported flag) refused with the same
 * code at its own offset, in memory and streamed in random pieces.
 */
#define RUN_ITEMS 5000

static size_t build_run(struct sg *s, size_t *item_off, uint64_t *zero, uint64_t *data, uint64_t *fill)
{
	struct sg t = {0};
	struct sg_basic o;
	sg_build_basic(&t, &o, SG_VMDESC_BASIC);
	/* after the basic record's named ZERO item and its CONTINUE page */
	size_t at = o.ram_part_item + 8 + 5 + 1 + 8 + 4096;
	memset(s, 0, sizeof(*s));
	sg_bytes(s, t.p, at);
	*zero = 1, *data = 1, *fill = 0;
	for (size_t i = 0; i < RUN_ITEMS; i++) {
		uint64_t addr = (uint64_t)(i % 256) << 12;
		item_off[i] = s->len;
		if (i % 7 == 3) {
			sg_be64(s, addr | 0x08 | 0x20);
			for (int j = 0; j < 4096; j++)
				sg_u8(s, (uint8_t)(i + (size_t)j));
			(*data)++;
		} else {
			sg_be64(s, addr | 0x02 | 0x20);
			sg_u8(s, i % 50 == 0 ? 1 : 0);
			*fill += i % 50 == 0;
			(*zero)++;
		}
	}
	sg_bytes(s, t.p + at, t.len - at);
	free(t.p);
	return at;
}

static void run_walks(const uint8_t *buf, size_t len, int code, int64_t off, const char *what)
{
	for (int i = 0; i < 4; i++) {
		an_report_t *r = NULL;
		hm_error_t e;
		struct msrc m = {buf, len, 0, i == 1 ? 4096 : i == 2 ? 100000 : (size_t)1 << 22};
		an_source_t src = {msrc_read, &m};
		int rc = i ? an_analyze_stream(&src, NULL, &r, &e) : an_analyze(buf, len, 0, &r, &e);
		if (rc != code || (code && e.offset != off))
			fail_msg("%s, %s (pieces <= %zu): rc %d at %lld (%s), expected %d at %lld", what,
				 i ? "streamed" : "in memory", m.max, rc, (long long)e.offset, e.msg, code,
				 (long long)off);
		an_report_free(r);
	}
}

static void test_ram_run(void **state)
{
	(void)state;
	struct sg s;
	size_t *off = malloc(RUN_ITEMS * sizeof(*off));
	assert_non_null(off);
	uint64_t zero, data, fill;
	build_run(&s, off, &zero, &data, &fill);
	run_walks(s.p, s.len, 0, 0, "whole");
	an_report_t *r = NULL;
	hm_error_t e;
	assert_int_equal(an_analyze(s.p, s.len, 0, &r, &e), 0);
	assert_int_equal(r->ram.zero_pages, zero);
	assert_int_equal(r->ram.data_pages, data);
	assert_int_equal(r->ram.fill_pages, fill);
	an_report_free(r);
	walk_both(s.p, s.len, 0, NULL);
	uint8_t *c = malloc(s.len);
	assert_non_null(c);
	for (int t = 0; t < 40; t++) {
		size_t k = (size_t)(tu_rand(&rng) % RUN_ITEMS);
		memcpy(c, s.p, s.len);
		if (t % 2) {
			c[off[k] + 5] = 0x10; /* page at 1 MiB: outside the 1 MiB block */
			run_walks(c, s.len, HM_E_RANGE, (int64_t)off[k], "a page outside the block");
		} else {
			c[off[k] + 7] = 0x60; /* XBZRLE | CONTINUE */
			run_walks(c, s.len, HM_E_UNSUPPORTED, (int64_t)off[k], "an XBZRLE item");
		}
	}
	free(c);
	free(off);
	free(s.p);
}

int main(void)
{
	rng = tu_seed("test_analyze_stream");
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_same_as_in_memory), cmocka_unit_test(test_prefixes),
		cmocka_unit_test(test_corruptions),       cmocka_unit_test(test_hooks),
		cmocka_unit_test(test_hook_stops),        cmocka_unit_test(test_device_state_cap),
		cmocka_unit_test(test_rewrite_same),      cmocka_unit_test(test_rewrite_write_fails),
		cmocka_unit_test(test_constant_memory),   cmocka_unit_test(test_fixtures_same),
		cmocka_unit_test(test_bytes_hook),        cmocka_unit_test(test_ram_run),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
