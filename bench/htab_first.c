/* SPDX-License-Identifier: MIT */
/*
 * `hptmig bench htab-first`: the first pass of the spapr/htab section over
 * a table with 1/3 of its slots valid (filled as H_ENTER fills a table:
 * random groups, first free slot) into a memory stream, and loading that
 * payload back into a table, each against memcpy of the table's bytes in
 * the same run. Destinations are pre-faulted for memcpy and for the stream
 * (a memory backend over a reused buffer), so page faults favour no side;
 * the load is reported twice: into a fresh table (its page faults included,
 * as a real destination pays them) and again into the now-mapped table.
 * Ratios are memcpy time / our time (1.0 = as fast as copying the table).
 * The load is checked: the loaded table's digest equals the source's.
 */
#include "htab_bench.h"

#include <errno.h>

static const char usage[] =
	"hptmig bench htab-first [--shift N (27)] [--valid-per-mille N (333)] [--reps N (5)] "
	"[--seed N]";

/* A memory stream over a caller buffer reused between runs (pre-faulted). */
struct membuf {
	uint8_t *p;
	size_t len, cap;
};

static ssize_t mb_writev(void *opaque, const struct iovec *iov, int n)
{
	struct membuf *m = opaque;
	size_t total = 0;
	for (int i = 0; i < n; i++) {
		if (iov[i].iov_len > m->cap - m->len)
			return -ENOSPC;
		memcpy(m->p + m->len, iov[i].iov_base, iov[i].iov_len);
		m->len += iov[i].iov_len;
		total += iov[i].iov_len;
	}
	return (ssize_t)total;
}

static const mig_file_ops_t mb_ops = { .writev = mb_writev };

static int run(int argc, char **argv, json_t **result)
{
	uint64_t shift = 27, pm = 333, reps = 5, seed = 7;
	const struct hb_opt o[] = { { "--shift", &shift, 32 }, { "--valid-per-mille", &pm, 1000 },
				    { "--reps", &reps, 50 }, { "--seed", &seed, UINT64_MAX },
				    { NULL, NULL, 0 } };
	int prc = hb_parse("htab-first", argc, argv, o, usage);
	if (prc)
		return prc == 1 ? 0 : prc;
	if (shift < 18 || reps == 0) {
		tool_fail("htab-first", "--shift must be 18..32 and --reps >= 1");
		return 2;
	}
	hpt_t *t;
	hm_error_t e;
	hm_error_clear(&e);
	if (hpt_create((unsigned)shift, NULL, &t, &e) != 0) {
		tool_fail_error("htab-first", &e);
		return 1;
	}
	uint64_t valid = hb_fill(t, pm, &seed);
	size_t bytes = (size_t)1 << shift;
	/* memcpy source: the table's bytes in ordinary (pre-faulted) memory. */
	uint8_t *src = malloc(bytes);
	if (!src) {
		hpt_destroy(t);
		tool_fail("htab-first", "out of memory");
		return 1;
	}
	for (uint64_t i = 0; i < hpt_slots(t); i += 4096)
		hpt_read_entries(t, i, 4096, src + i * 16);
	uint8_t digest[32];
	hpt_digest(t, digest);

	uint64_t tm[50], ts[50], tl[50], tw[50];
	struct membuf mb = { .cap = bytes + bytes / 2 };
	uint8_t *dst = malloc(bytes);
	mb.p = malloc(mb.cap);
	uint64_t chunks = 0;
	int rc = 0;
	if (!dst || !mb.p) {
		rc = 1;
		goto done;
	}
	memset(dst, 1, bytes); /* pre-fault both destinations */
	memset(mb.p, 1, mb.cap);
	for (uint64_t r = 0; r < reps && rc == 0; r++) {
		uint64_t t0 = hb_cpu_ns();
		memcpy(dst, src, bytes);
		tm[r] = hb_cpu_ns() - t0;
		__asm__ volatile("" : : "r"(dst) : "memory");

		/* Our first pass: setup (START) then complete (one END with the whole table). */
		mig_file_t *w;
		htab_save_t *s;
		mb.len = 0;
		if (mig_file_open_ops(&mb_ops, &mb, MIG_FILE_WRITE, 0, &w) != 0 ||
		    htab_save_create(t, NULL, &s, &e) != 0) {
			rc = 1;
			break;
		}
		htab_save_setup(s, w);
		mig_file_flush(w);
		size_t start_len = mb.len;
		t0 = hb_cpu_ns();
		int crc = htab_save_complete(s, w);
		crc = crc ? crc : mig_file_flush(w);
		ts[r] = hb_cpu_ns() - t0;
		htab_save_stats_t st;
		htab_save_get_stats(s, &st);
		chunks = st.chunks;
		htab_save_destroy(s);
		mig_file_close(w, NULL);

		/* Load it back: into a fresh table, then again into the mapped one. */
		htab_loader_t *l;
		htab_summary_t sum;
		if (crc != 0 || htab_loader_create(NULL, NULL, &l) != 0 ||
		    htab_loader_load_buffer(l, mb.p, start_len, HTAB_RECORD_START, &e) != 0) {
			rc = 1;
			break;
		}
		t0 = hb_cpu_ns();
		int lrc = htab_loader_load_buffer(l, mb.p + start_len, mb.len - start_len,
						  HTAB_RECORD_END, &e);
		tl[r] = hb_cpu_ns() - t0;
		t0 = hb_cpu_ns();
		lrc = lrc ? lrc : htab_loader_load_buffer(l, mb.p + start_len, mb.len - start_len,
							  HTAB_RECORD_END, &e);
		tw[r] = hb_cpu_ns() - t0;
		if (lrc != 0 || htab_loader_summary(l, &sum, &e) != 0 || memcmp(sum.digest, digest, 32) != 0) {
			tool_fail("htab-first", "loaded table differs from the source: %s", e.msg);
			rc = 1;
		}
		htab_loader_destroy(l);
	}
done:
	free(dst);
	size_t out_len = mb.len;
	free(mb.p);
	free(src);
	hpt_destroy(t);
	if (rc) {
		if (e.code)
			tool_fail_error("htab-first", &e);
		return 1;
	}
	uint64_t mm = hb_median(tm, (int)reps), ms = hb_median(ts, (int)reps), ml = hb_median(tl, (int)reps);
	uint64_t mw = hb_median(tw, (int)reps);
	*result = json_pack(
		"{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:s, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f}", "bench",
		"htab-first", "shift", (json_int_t)shift, "table_bytes", (json_int_t)bytes, "valid",
		(json_int_t)valid, "chunks", (json_int_t)chunks, "stream_bytes", (json_int_t)out_len,
		"reps", (json_int_t)reps, "time", "thread CPU time, median of reps",
		"memcpy_ms", (double)mm / 1e6, "first_pass_ms", (double)ms / 1e6, "load_ms",
		(double)ml / 1e6, "first_pass_vs_memcpy", ms ? (double)mm / (double)ms : 0.0,
		"load_vs_memcpy", ml ? (double)mm / (double)ml : 0.0, "load_mapped_ms", (double)mw / 1e6,
		"load_mapped_vs_memcpy", mw ? (double)mm / (double)mw : 0.0, "memcpy_GBps",
		mm ? (double)bytes / (double)mm : 0.0, "first_pass_table_GBps",
		ms ? (double)bytes / (double)ms : 0.0);
	return 0;
}

const struct hm_bench hm_bench_htab_first = {
	.name = "htab-first",
	.summary = "spapr/htab first pass and load of a 1/3-valid table, as a fraction of memcpy",
	.run = run,
};
