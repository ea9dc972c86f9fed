/* SPDX-License-Identifier: MIT */
/*
 * `hptmig bench htab-first`: the first pass of the spapr/htab section over
 * a table with 1/3 of its slots valid (filled as H_ENTER fills a table:
 * random groups, first free slot) into a memory stream, and loading that
 * payload back into a table, each against memcpy of the table's bytes.
 * The measurements are interleaved in every round (memcpy, first pass, load
 * into a fresh table that START populated, as `hptmig incoming` does while
 * the source's first pass is still coming (its populate time is reported
 * apart), load again into the now-mapped one, and load into a fresh table
 * that was not populated, page faults included), so a noisy
 * neighbour slows both sides of a ratio alike; ratios are given from the
 * best (minimum) time of each side and from the medians. Every side is
 * timed with the same clock: the calling thread's CPU time (user + system,
 * so page faults count; time preempted does not). The baseline stays the
 * fastest plain copy: memcpy between buffers that are pre-faulted and on
 * transparent huge pages like the table. The stream's buffer is
 * pre-faulted too; the loaded table's digest is checked against the
 * source's. Ratios are memcpy time / our time (1.0 = as fast as copying
 * the table's bytes). It must never report a ratio from a run that failed.
 */
#include "htab_bench.h"

#include <errno.h>
#include <sys/mman.h>

static const char usage[] =
	"hptmig bench htab-first [--shift N (27)] [--valid-per-mille N (333)] [--rounds N (7)] "
	"[--seed N]";

#define HF_TARGET 0.5 /* issue 4: first pass and load at >= 0.5 of memcpy */
#define HF_ROUNDS_MAX 50

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

/*
 * Pre-faulted anonymous memory on transparent huge pages where the kernel
 * gives them, as the table's own memory (hpt.c asks for them): memcpy
 * between such buffers measured a few % faster than between malloc'd
 * ones, so the baseline is the fastest plain copy we know.
 */
static void *alloc_prefaulted(size_t bytes)
{
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	(void)madvise(p, bytes, MADV_HUGEPAGE);
	memset(p, 1, bytes);
	return p;
}

static void free_prefaulted(void *p, size_t bytes)
{
	if (p)
		munmap(p, bytes);
}

/* Best and median of n times, in ms (sorts a copy). */
static json_t *stat_ms(const uint64_t *t, int n, uint64_t *best, uint64_t *median)
{
	uint64_t c[HF_ROUNDS_MAX];
	json_t *all = json_array();
	memcpy(c, t, (size_t)n * sizeof(*t));
	for (int i = 0; i < n; i++)
		json_array_append_new(all, json_real((double)t[i] / 1e6));
	*median = hb_median(c, n);
	*best = c[0];
	return all;
}

static double ratio(uint64_t base, uint64_t ours)
{
	return ours ? (double)base / (double)ours : 0.0;
}

/*
 * One first pass of t into mb: START (its length in *start_len), then the
 * whole table in one END, timed into *ns; *chunks from the section's
 * stats. Returns -1 when nothing could be set up, else the save's code.
 */
static int first_pass(hpt_t *t, struct membuf *mb, size_t *start_len, uint64_t *ns,
		      uint64_t *chunks, hm_error_t *e)
{
	mig_file_t *w;
	htab_save_t *s;
	mb->len = 0;
	if (mig_file_open_ops(&mb_ops, mb, MIG_FILE_WRITE, 0, &w) != 0)
		return -1;
	if (htab_save_create(t, NULL, &s, e) != 0) {
		mig_file_close(w, NULL);
		return -1;
	}
	htab_save_setup(s, w);
	mig_file_flush(w);
	*start_len = mb->len;
	uint64_t t0 = hb_cpu_ns();
	int crc = htab_save_complete(s, w);
	crc = crc ? crc : mig_file_flush(w);
	*ns = hb_cpu_ns() - t0;
	htab_save_stats_t st;
	htab_save_get_stats(s, &st);
	*chunks = st.chunks;
	htab_save_destroy(s);
	mig_file_close(w, NULL);
	return crc;
}

/* The sides' per-round times, in this order. */
enum { HF_SIDES = 6 }; /* memcpy, first pass, load, load mapped, START populate, load unpopulated */

/* The result: best and median of each side, ratios to memcpy, every round. */
static json_t *result_json(const uint64_t *const tv[HF_SIDES], int n, uint64_t shift,
			   size_t bytes, uint64_t valid, uint64_t chunks, size_t out_len)
{
	uint64_t rounds = (uint64_t)n;
	uint64_t bm, mm, bs, ms, bl, ml, bw, mw, bp, mp, bf, mf;
	json_t *am = stat_ms(tv[0], n, &bm, &mm), *as = stat_ms(tv[1], n, &bs, &ms);
	json_t *al = stat_ms(tv[2], n, &bl, &ml), *aw = stat_ms(tv[3], n, &bw, &mw);
	json_t *ap = stat_ms(tv[4], n, &bp, &mp), *af = stat_ms(tv[5], n, &bf, &mf);
	return json_pack(
		"{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:s, s:f,"
		" s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f,"
		" s:f, s:f, s:f, s:f, s:f, s:f,"
		" s:b, s:b, s:f, s:f,"
		" s:f, s:f, s:f, s:f, s:f, s:f,"
		" s:{s:o, s:o, s:o, s:o, s:o, s:o}}",
		"bench", "htab-first", "shift", (json_int_t)shift, "table_bytes", (json_int_t)bytes,
		"valid", (json_int_t)valid, "chunks", (json_int_t)chunks, "stream_bytes",
		(json_int_t)out_len, "rounds", (json_int_t)rounds, "time",
		"thread CPU time (user+system) for every side; each round runs memcpy, first pass, "
		"START (populates the fresh table, as a destination does), load, load mapped, "
		"load into an unpopulated table in turn; ratios = memcpy / ours, from the best of "
		"each and from the medians",
		"target", HF_TARGET,
		/* Best of each side. */
		"memcpy_ms", (double)bm / 1e6, "first_pass_ms", (double)bs / 1e6, "load_ms",
		(double)bl / 1e6, "load_mapped_ms", (double)bw / 1e6,
		/* Medians. */
		"memcpy_median_ms", (double)mm / 1e6, "first_pass_median_ms", (double)ms / 1e6,
		"load_median_ms", (double)ml / 1e6, "load_mapped_median_ms", (double)mw / 1e6,
		"first_pass_vs_memcpy", ratio(bm, bs), "first_pass_vs_memcpy_median", ratio(mm, ms),
		"load_vs_memcpy", ratio(bm, bl), "load_vs_memcpy_median", ratio(mm, ml),
		"load_mapped_vs_memcpy", ratio(bm, bw), "load_mapped_vs_memcpy_median", ratio(mm, mw),
		"first_pass_meets_target", ratio(bm, bs) >= HF_TARGET && ratio(mm, ms) >= HF_TARGET,
		"load_meets_target", ratio(bm, bl) >= HF_TARGET && ratio(mm, ml) >= HF_TARGET,
		"memcpy_GBps", bm ? (double)bytes / (double)bm : 0.0, "first_pass_table_GBps",
		bs ? (double)bytes / (double)bs : 0.0,
		"start_populate_ms", (double)bp / 1e6, "start_populate_median_ms", (double)mp / 1e6,
		"load_unpopulated_ms", (double)bf / 1e6, "load_unpopulated_median_ms", (double)mf / 1e6,
		"load_unpopulated_vs_memcpy", ratio(bm, bf), "load_unpopulated_vs_memcpy_median",
		ratio(mm, mf),
		"rounds_ms", "memcpy", am, "first_pass", as, "load", al, "load_mapped", aw,
		"start_populate", ap, "load_unpopulated", af);
}

/* Load the stream in mb (START is its first start_len bytes) into a fresh
 * table nobody populated; the END record's load timed into *ns. */
static int load_unpopulated(const struct membuf *mb, size_t start_len, uint64_t *ns,
			    hm_error_t *e)
{
	htab_loader_t *l;
	if (htab_loader_create(NULL, NULL, &l) != 0)
		return -1;
	int lrc = htab_loader_load_buffer(l, mb->p, start_len, QEMU_VM_SECTION_START, e);
	if (lrc == 0) {
		uint64_t t0 = hb_cpu_ns();
		lrc = htab_loader_load_buffer(l, mb->p + start_len, mb->len - start_len,
					      QEMU_VM_SECTION_END, e);
		*ns = hb_cpu_ns() - t0;
	}
	htab_loader_destroy(l);
	return lrc;
}

/* --shift, --valid-per-mille, --rounds (--reps), --seed. 0, -1 after
 * --help, or an exit code. */
static int hf_args(int argc, char **argv, uint64_t *shift, uint64_t *pm, uint64_t *rounds,
		   uint64_t *seed)
{
	uint64_t reps = 0;
	const struct hb_opt o[] = { { "--shift", shift, 32 }, { "--valid-per-mille", pm, 1000 },
				    { "--rounds", rounds, HF_ROUNDS_MAX },
				    { "--reps", &reps, HF_ROUNDS_MAX }, /* old name of --rounds */
				    { "--seed", seed, UINT64_MAX }, { NULL, NULL, 0 } };
	int prc = hb_parse("htab-first", argc, argv, o, usage);
	if (prc)
		return prc == 1 ? -1 : prc;
	if (reps)
		*rounds = reps;
	if (*shift < 18 || *rounds == 0) {
		tool_fail("htab-first", "--shift must be 18..32 and --rounds 1..%d", HF_ROUNDS_MAX);
		return 2;
	}
	return 0;
}

static int run(int argc, char **argv, json_t **result)
{
	uint64_t shift = 27, pm = 333, rounds = 7, seed = 7;
	int prc = hf_args(argc, argv, &shift, &pm, &rounds, &seed);
	if (prc)
		return prc < 0 ? 0 : prc;
	hpt_t *t;
	hm_error_t e;
	hm_error_clear(&e);
	if (hpt_create((unsigned)shift, NULL, &t, &e) != 0) {
		tool_fail_error("htab-first", &e);
		return 1;
	}
	uint64_t valid = hb_fill(t, pm, &seed);
	size_t bytes = (size_t)1 << shift;
	struct membuf mb = { .cap = bytes + bytes / 2 };
	/* memcpy source: the table's bytes; destination and stream pre-faulted. */
	uint8_t *src = alloc_prefaulted(bytes), *dst = alloc_prefaulted(bytes);
	mb.p = alloc_prefaulted(mb.cap);
	uint64_t tm[HF_ROUNDS_MAX], ts[HF_ROUNDS_MAX], tl[HF_ROUNDS_MAX], tw[HF_ROUNDS_MAX];
	uint64_t tp[HF_ROUNDS_MAX], tf[HF_ROUNDS_MAX];
	uint64_t chunks = 0;
	uint8_t digest[32];
	int rc = 0;
	if (!src || !dst || !mb.p) {
		tool_fail("htab-first", "out of memory");
		rc = 1;
		goto done;
	}
	for (uint64_t i = 0; i < hpt_slots(t); i += 4096)
		hpt_read_entries(t, i, 4096, src + i * 16);
	hpt_digest(t, digest);

	for (uint64_t r = 0; r < rounds && rc == 0; r++) {
		uint64_t t0 = hb_cpu_ns();
		memcpy(dst, src, bytes);
		tm[r] = hb_cpu_ns() - t0;
		__asm__ volatile("" : : "r"(dst) : "memory");

		/* Our first pass: setup (START) then complete (one END with the whole table). */
		size_t start_len;
		int crc = first_pass(t, &mb, &start_len, &ts[r], &chunks, &e);
		if (crc < 0) {
			rc = 1;
			break;
		}

		/* Load it back: into a fresh table that START populated (as a
		 * destination does), then again into the mapped one. */
		htab_loader_t *l;
		htab_summary_t sum;
		htab_loader_opts_t lo = {.populate = true};
		t0 = hb_cpu_ns();
		if (crc != 0 || htab_loader_create(NULL, &lo, &l) != 0 ||
		    htab_loader_load_buffer(l, mb.p, start_len, QEMU_VM_SECTION_START, &e) != 0) {
			rc = 1;
			break;
		}
		tp[r] = hb_cpu_ns() - t0;
		t0 = hb_cpu_ns();
		int lrc = htab_loader_load_buffer(l, mb.p + start_len, mb.len - start_len,
						  QEMU_VM_SECTION_END, &e);
		tl[r] = hb_cpu_ns() - t0;
		t0 = hb_cpu_ns();
		lrc = lrc ? lrc : htab_loader_load_buffer(l, mb.p + start_len, mb.len - start_len,
							  QEMU_VM_SECTION_END, &e);
		tw[r] = hb_cpu_ns() - t0;
		if (lrc != 0 || htab_loader_summary(l, &sum, &e) != 0 || memcmp(sum.digest, digest, 32) != 0) {
			tool_fail("htab-first", "loaded table differs from the source: %s", e.msg);
			rc = 1;
		}
		htab_loader_destroy(l);
		/* And into a fresh table nobody populated: its page faults land in
		 * the load. */
		if (rc == 0 && load_unpopulated(&mb, start_len, &tf[r], &e) != 0)
			rc = 1;
		if (rc)
			break;
	}
done:;
	size_t out_len = mb.len;
	free_prefaulted(dst, bytes);
	free_prefaulted(mb.p, mb.cap);
	free_prefaulted(src, bytes);
	hpt_destroy(t);
	if (rc) {
		if (e.code)
			tool_fail_error("htab-first", &e);
		return 1;
	}
	const uint64_t *times[HF_SIDES] = {tm, ts, tl, tw, tp, tf};
	*result = result_json(times, (int)rounds, shift, bytes, valid, chunks, out_len);
	if (!*result) {
		tool_fail("htab-first", "out of memory");
		return 1;
	}
	return 0;
}

const struct hm_bench hm_bench_htab_first = {
	.name = "htab-first",
	.summary = "spapr/htab first pass and load of a 1/3-valid table, as a fraction of memcpy",
	.usage = usage,
	.run = run,
};
