/* SPDX-License-Identifier: MIT */
/*
 * `hptmig bench scan`: finding the changed slots of a big table (default a
 * 2 GiB table, shift 31, ~1/3 valid) for a later migration pass, with 0 %,
 * 0.01 % and 1 % of slots changed. Ours: take words from the two-level
 * tracking bitmap. Baseline (QEMU's method): walk every slot
 * of a table in QEMU's layout reading its V word and testing the 0x40 dirty
 * flag (then clearing it). Both must find the same slots; it is checked.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "hptmig/hpt.h"
#include "hpt/hpt_inspect.h"
#include "htab_bench.h"
#include "tool.h"

/* Ours: drain the tracking bitmap into out[] (slot numbers, increasing). */
static uint64_t scan_bitmap(hpt_t *h, uint64_t *out)
{
	uint64_t cur = 0, first, bits, n = 0;
	while (hpt_track_take(h, &cur, &first, &bits)) {
		while (bits) {
			out[n++] = first + (uint64_t)__builtin_ctzll(bits);
			bits &= bits - 1;
		}
	}
	return n;
}

/* Baseline: QEMU's later-pass walk over every slot's V word (be64, 16-byte
 * stride), collecting and cleaning the dirty flag. */
static uint64_t scan_linear(uint8_t *mirror, uint64_t slots, uint64_t *out)
{
	uint64_t n = 0;
	for (uint64_t s = 0; s < slots; s++) {
		uint8_t *p = mirror + 16 * s;
		uint64_t v = hm_load_be64(p);
		if (v & HPTE64_V_HVLOCK) {
			hm_store_be64(p, v & ~HPTE64_V_HVLOCK);
			out[n++] = s;
		}
	}
	return n;
}


/* Change the listed slots: through the table (marking them) and in the
 * mirror (R's C bit toggled and QEMU's dirty flag set). */
static void change_slots(hpt_t *h, uint8_t *mirror, const uint64_t *changed, uint64_t nch)
{
	for (uint64_t i = 0; i < nch; i++) {
		uint64_t s = changed[i], v, r;
		hpt_read_entry(h, s, &v, &r);
		hpt_write_entry(h, s, v, r ^ HPTE64_R_C);
		uint8_t *p = mirror + 16 * s;
		hm_store_be64(p + 8, hm_load_be64(p + 8) ^ HPTE64_R_C);
		hm_store_be64(p, hm_load_be64(p) | HPTE64_V_HVLOCK);
	}
}


/* The table, its plain mirror (QEMU's layout) and the scratch lists. */
struct scan_ctx {
	hpt_t *h;
	uint8_t *mirror;
	uint64_t slots;
	size_t bytes;
	uint64_t *changed, *found_a, *found_b;
	uint8_t *buf; /* 4096 entries in the wire layout */
	uint64_t rs;  /* PRNG state */
};

/* --shift, --reps. 0, -1 after --help, or an exit code. */
static int scan_args(int argc, char **argv, unsigned *shift, int *reps)
{
	uint64_t sh = *shift, rp = (uint64_t)*reps;
	const struct hb_opt o[] = {{"--shift", &sh, HPT_SHIFT_STREAM_MAX}, {"--reps", &rp, 100},
				   {NULL, NULL, 0}};
	int prc = hb_parse("bench scan", argc, argv, o, "--shift N, --reps R");
	if (prc)
		return prc == 1 ? -1 : prc;
	if (sh < HPT_SHIFT_MIN || rp == 0) {
		tool_fail("bench scan", "--shift takes %u..%u and --reps 1..100", HPT_SHIFT_MIN,
			  HPT_SHIFT_STREAM_MAX);
		return 2;
	}
	*shift = (unsigned)sh;
	*reps = (int)rp;
	return 0;
}

static void scan_ctx_free(struct scan_ctx *c)
{
	hpt_destroy(c->h);
	if (c->mirror && c->mirror != MAP_FAILED)
		munmap(c->mirror, c->bytes);
	free(c->changed);
	free(c->found_a);
	free(c->found_b);
	free(c->buf);
}

/* Fill ~1/3 of the slots with valid entries, identically in both; returns
 * how many. */
static uint64_t scan_fill(struct scan_ctx *c)
{
	uint64_t nvalid = 0;
	for (uint64_t s0 = 0; s0 < c->slots; s0 += 4096) {
		uint64_t n = c->slots - s0 < 4096 ? c->slots - s0 : 4096;
		memset(c->buf, 0, n * 16);
		for (uint64_t k = 0; k < n; k++) {
			uint64_t x = hb_rand(&c->rs);
			if (x % 3)
				continue;
			hm_store_be64(c->buf + 16 * k, ((x >> 8) << 7 & HPTE64_V_AVPN) | HPTE64_V_VALID);
			hm_store_be64(c->buf + 16 * k + 8, ((x & 0xffff) << 12) | HPTE64_R_M);
			nvalid++;
		}
		hpt_write_entries(c->h, s0, n, c->buf);
		memcpy(c->mirror + 16 * s0, c->buf, n * 16);
	}
	return nvalid;
}

/*
 * The first pass: every entry of the table read consistently (under its
 * lock when valid) into a buffer in the wire layout, against a plain
 * memcpy of the mirror in the same 64 KiB pieces. Best of 2 each.
 */
static void scan_first_pass(struct scan_ctx *c, uint64_t *fp_ns, uint64_t *mc_ns,
			    uint64_t *fp_valid)
{
	*fp_ns = *mc_ns = UINT64_MAX;
	/* A migration starts tracking, then reads; if it cannot start (no
	 * memory) the pass below measures the locked path instead. */
	hm_error_t e2;
	hm_error_clear(&e2);
	(void)hpt_track_start(c->h, &e2);
	for (int rep = 0; rep < 2; rep++) {
		uint64_t t0 = hb_cpu_ns(), nv = 0;
		for (uint64_t s0 = 0; s0 < c->slots; s0 += 4096)
			nv += hpt_read_entries(c->h, s0, 4096, c->buf);
		uint64_t t1 = hb_cpu_ns();
		for (uint64_t s0 = 0; s0 < c->slots; s0 += 4096)
			memcpy(c->buf, c->mirror + 16 * s0, 4096 * 16);
		uint64_t t2 = hb_cpu_ns();
		__asm__ volatile("" : : "r"(c->buf) : "memory"); /* keep the copies */
		*fp_valid = nv;
		if (t1 - t0 < *fp_ns)
			*fp_ns = t1 - t0;
		if (t2 - t1 < *mc_ns)
			*mc_ns = t2 - t1;
	}
}

/* nch distinct random slots, sorted, into c->changed; returns how many. */
static uint64_t scan_choose(struct scan_ctx *c, uint64_t nch)
{
	for (uint64_t i = 0; i < nch; i++)
		c->changed[i] = hb_rand(&c->rs) % c->slots;
	return hb_sort_unique(c->changed, nch);
}

/*
 * One level of change: nch slots changed, found by the bitmap and by the
 * linear walk; both lists must equal the changed set. Best of reps (the
 * bitmap side: best of 5 scans of the same set per rep). 0 or 1.
 */
static int scan_level(struct scan_ctx *c, const char *name, uint64_t nch, int reps,
		      uint64_t *best_a, uint64_t *best_b)
{
	hm_error_t e;
	hm_error_clear(&e);
	*best_a = *best_b = UINT64_MAX;
	for (int rep = 0; rep < reps; rep++) {
		hpt_track_stop(c->h);
		if (hpt_track_start(c->h, &e)) {
			tool_fail_error("bench scan", &e);
			return 1;
		}
		uint64_t na = 0, ta = UINT64_MAX;
		for (int k = 0; k < 5; k++) {
			/* (k > 0: mark the same set again; the mirror stays consistent) */
			change_slots(c->h, c->mirror, c->changed, nch);
			uint64_t t0 = hb_cpu_ns();
			na = scan_bitmap(c->h, c->found_a);
			uint64_t t1 = hb_cpu_ns();
			if (t1 - t0 < ta)
				ta = t1 - t0;
		}
		uint64_t t1 = hb_cpu_ns();
		uint64_t nb = scan_linear(c->mirror, c->slots, c->found_b);
		uint64_t t2 = hb_cpu_ns();
		if (na != nch || nb != nch || memcmp(c->found_a, c->found_b, nch * sizeof(uint64_t)) ||
		    (nch && memcmp(c->found_a, c->changed, nch * sizeof(uint64_t)))) {
			tool_fail("bench scan",
				  "level %s: the two methods disagree (bitmap %llu, walk %llu, changed %llu)",
				  name, (unsigned long long)na, (unsigned long long)nb,
				  (unsigned long long)nch);
			return 1;
		}
		if (ta < *best_a)
			*best_a = ta;
		if (t2 - t1 < *best_b)
			*best_b = t2 - t1;
	}
	return 0;
}

static int bench_scan_run(int argc, char **argv, json_t **result)
{
	unsigned shift = 31;
	int reps = 3;
	int rc = scan_args(argc, argv, &shift, &reps);
	if (rc)
		return rc < 0 ? 0 : rc;
	struct scan_ctx c = {.rs = 12345};
	hm_error_t e;
	hm_error_clear(&e);
	if (hpt_create(shift, NULL, &c.h, &e)) {
		tool_fail_error("bench scan", &e);
		return 1;
	}
	c.slots = hpt_slots(c.h);
	c.bytes = (size_t)1 << shift;
	c.mirror = mmap(NULL, c.bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (c.mirror != MAP_FAILED)
		(void)madvise(c.mirror, c.bytes, MADV_HUGEPAGE); /* as the table does */
	uint64_t max_changed = c.slots / 100 + 64;
	c.changed = malloc(max_changed * sizeof(uint64_t));
	c.found_a = malloc(max_changed * sizeof(uint64_t));
	c.found_b = malloc(max_changed * sizeof(uint64_t));
	c.buf = malloc(4096 * 16);
	if (c.mirror == MAP_FAILED || !c.changed || !c.found_a || !c.found_b || !c.buf) {
		tool_fail("bench scan", "out of memory for a 2^%u-byte table and its mirror", shift);
		scan_ctx_free(&c);
		return 1;
	}
	uint64_t t_fill = hm_now_ns();
	uint64_t nvalid = scan_fill(&c);
	double fill_s = (double)(hm_now_ns() - t_fill) / 1e9;
	uint64_t fp_ns, mc_ns, fp_valid = 0;
	scan_first_pass(&c, &fp_ns, &mc_ns, &fp_valid);

	static const struct {
		const char *name;
		double frac;
	} levels[] = {{"0%", 0.0}, {"0.01%", 0.0001}, {"1%", 0.01}};
	json_t *arr = json_array();
	for (size_t li = 0; li < sizeof(levels) / sizeof(levels[0]) && rc == 0; li++) {
		uint64_t nch = scan_choose(&c, (uint64_t)((double)c.slots * levels[li].frac));
		uint64_t best_a, best_b;
		rc = scan_level(&c, levels[li].name, nch, reps, &best_a, &best_b);
		if (rc)
			break;
		double a_us = (double)best_a / 1e3, b_us = (double)best_b / 1e3;
		json_array_append_new(arr, json_pack("{s:s,s:I,s:f,s:f,s:f}", "changed", levels[li].name,
						     "changed_slots", (json_int_t)nch, "bitmap_us", a_us,
						     "linear_walk_us", b_us, "speedup", b_us / (a_us > 0 ? a_us : 0.001)));
	}
	hpt_track_stop(c.h);
	scan_ctx_free(&c);
	if (rc) {
		json_decref(arr);
		return rc;
	}
	if (fp_valid != nvalid) {
		tool_fail("bench scan", "first pass found %llu valid entries, %llu were written",
			  (unsigned long long)fp_valid, (unsigned long long)nvalid);
		json_decref(arr);
		return 1;
	}
	json_t *fp = json_pack("{s:f,s:f,s:f,s:f}", "read_entries_ms", (double)fp_ns / 1e6,
			       "memcpy_ms", (double)mc_ns / 1e6, "read_entries_gb_per_s",
			       (double)c.bytes / (double)fp_ns, "ratio_to_memcpy", (double)fp_ns / (double)mc_ns);
	*result = json_pack("{s:s,s:i,s:I,s:I,s:f,s:o,s:i,s:s,s:o}", "bench", "scan", "table_shift", shift,
			    "slots", (json_int_t)c.slots, "valid", (json_int_t)nvalid, "fill_seconds", fill_s,
			    "first_pass", fp,
			    "reps", reps, "timing", "thread CPU time, best of reps (bitmap: best of 5 scans per rep); both sides produce the same slot list (checked)",
			    "results", arr);
	return *result ? 0 : 1;
}

const struct hm_bench hm_bench_scan = {
	.name = "scan",
	.summary = "find changed slots: tracking bitmap vs QEMU's walk of every V word",
	.usage = "hptmig bench scan [--shift N] [--reps R] [--json]",
	.run = bench_scan_run,
};
