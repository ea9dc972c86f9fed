/* SPDX-License-Identifier: MIT */
/*
 * `hptmig bench scan`: finding the changed slots of a big table (default a
 * 2 GiB table, shift 31, ~1/3 valid) for a later migration pass, with 0 %,
 * 0.01 % and 1 % of slots changed. Ours: take words from the two-level
 * tracking bitmap. Baseline (the seed's and QEMU's method): walk every slot
 * of a table in QEMU's layout reading its V word and testing the 0x40 dirty
 * flag (then clearing it). Both must find the same slots; it is checked.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "hptmig/hpt.h"
#include "tool.h"

static uint64_t sc_rand(uint64_t *s)
{
	uint64_t z = (*s += UINT64_C(0x9E3779B97F4A7C15));
	z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
	return z ^ (z >> 31);
}

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

/* Thread CPU time: on a shared machine, time spent preempted is not ours. */
static uint64_t cpu_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * UINT64_C(1000000000) + (uint64_t)ts.tv_nsec;
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

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static int bench_scan_run(int argc, char **argv, json_t **result)
{
	unsigned shift = 31;
	int reps = 3;
	for (int i = 1; i < argc; i++) {
		uint64_t v;
		if (strcmp(argv[i], "--shift") == 0 && i + 1 < argc) {
			if (hm_parse_u64(argv[++i], HPT_SHIFT_STREAM_MAX, &v) || v < HPT_SHIFT_MIN) {
				tool_fail("bench scan", "--shift: expected %u..%u, got '%s'", HPT_SHIFT_MIN,
					  HPT_SHIFT_STREAM_MAX, argv[i]);
				return 2;
			}
			shift = (unsigned)v;
		} else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc) {
			if (hm_parse_u64(argv[++i], 100, &v) || v == 0) {
				tool_fail("bench scan", "--reps: expected 1..100, got '%s'", argv[i]);
				return 2;
			}
			reps = (int)v;
		} else {
			tool_fail("bench scan", "unknown option '%s' (--shift N, --reps R)", argv[i]);
			return 2;
		}
	}
	hpt_t *h;
	hm_error_t e;
	hm_error_clear(&e);
	if (hpt_create(shift, NULL, &h, &e)) {
		tool_fail_error("bench scan", &e);
		return 1;
	}
	uint64_t slots = hpt_slots(h);
	size_t bytes = (size_t)1 << shift;
	uint8_t *mirror = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mirror != MAP_FAILED)
		(void)madvise(mirror, bytes, MADV_HUGEPAGE); /* as the table does */
	uint64_t max_changed = slots / 100 + 64;
	uint64_t *changed = malloc(max_changed * sizeof(uint64_t));
	uint64_t *found_a = malloc(max_changed * sizeof(uint64_t));
	uint64_t *found_b = malloc(max_changed * sizeof(uint64_t));
	uint8_t *buf = malloc(4096 * 16);
	if (mirror == MAP_FAILED || !changed || !found_a || !found_b || !buf) {
		tool_fail("bench scan", "out of memory for a 2^%u-byte table and its mirror", shift);
		hpt_destroy(h);
		free(changed);
		free(found_a);
		free(found_b);
		free(buf);
		return 1;
	}
	/* Fill ~1/3 of the slots with valid entries, identically in both. */
	uint64_t rs = 12345, nvalid = 0;
	uint64_t t_fill = hm_now_ns();
	for (uint64_t s0 = 0; s0 < slots; s0 += 4096) {
		uint64_t n = slots - s0 < 4096 ? slots - s0 : 4096;
		memset(buf, 0, n * 16);
		for (uint64_t k = 0; k < n; k++) {
			uint64_t x = sc_rand(&rs);
			if (x % 3)
				continue;
			hm_store_be64(buf + 16 * k, ((x >> 8) << 7 & HPTE64_V_AVPN) | HPTE64_V_VALID);
			hm_store_be64(buf + 16 * k + 8, ((x & 0xffff) << 12) | HPTE64_R_M);
			nvalid++;
		}
		hpt_write_entries(h, s0, n, buf);
		memcpy(mirror + 16 * s0, buf, n * 16);
	}
	double fill_s = (double)(hm_now_ns() - t_fill) / 1e9;

	/* The first pass: every entry of the table read consistently (under
	 * its lock when valid) into a buffer in the wire layout, against a
	 * plain memcpy of the mirror in the same 64 KiB pieces. */
	uint64_t fp_ns = UINT64_MAX, mc_ns = UINT64_MAX, fp_valid = 0;
	{
		/* A migration starts tracking, then reads; if it cannot start
		 * (no memory) the pass below measures the locked path instead. */
		hm_error_t e2;
		hm_error_clear(&e2);
		(void)hpt_track_start(h, &e2);
	}
	for (int rep = 0; rep < 2; rep++) {
		uint64_t t0 = cpu_now_ns(), nv = 0;
		for (uint64_t s0 = 0; s0 < slots; s0 += 4096)
			nv += hpt_read_entries(h, s0, 4096, buf);
		uint64_t t1 = cpu_now_ns();
		for (uint64_t s0 = 0; s0 < slots; s0 += 4096)
			memcpy(buf, mirror + 16 * s0, 4096 * 16);
		uint64_t t2 = cpu_now_ns();
		__asm__ volatile("" : : "r"(buf) : "memory"); /* keep the copies */
		fp_valid = nv;
		if (t1 - t0 < fp_ns)
			fp_ns = t1 - t0;
		if (t2 - t1 < mc_ns)
			mc_ns = t2 - t1;
	}

	static const struct {
		const char *name;
		double frac;
	} levels[] = {{"0%", 0.0}, {"0.01%", 0.0001}, {"1%", 0.01}};
	json_t *arr = json_array();
	int rc = 0;
	for (size_t li = 0; li < sizeof(levels) / sizeof(levels[0]) && rc == 0; li++) {
		uint64_t nch = (uint64_t)((double)slots * levels[li].frac);
		/* Choose distinct random slots. */
		for (uint64_t i = 0; i < nch; i++)
			changed[i] = sc_rand(&rs) % slots;
		qsort(changed, nch, sizeof(uint64_t), cmp_u64);
		uint64_t u = 0;
		for (uint64_t i = 0; i < nch; i++)
			if (u == 0 || changed[i] != changed[u - 1])
				changed[u++] = changed[i];
		nch = u;
		uint64_t best_a = UINT64_MAX, best_b = UINT64_MAX;
		for (int rep = 0; rep < reps && rc == 0; rep++) {
			hpt_track_stop(h);
			if (hpt_track_start(h, &e)) {
				tool_fail_error("bench scan", &e);
				rc = 1;
				break;
			}
			change_slots(h, mirror, changed, nch);
			/* The bitmap side is short: best of several scans of the same
			 * set (re-marked between them) per rep. */
			uint64_t na = 0, ta = UINT64_MAX;
			for (int k = 0; k < 5; k++) {
				if (k) /* mark the same set again (the mirror stays consistent) */
					change_slots(h, mirror, changed, nch);
				uint64_t t0 = cpu_now_ns();
				na = scan_bitmap(h, found_a);
				uint64_t t1 = cpu_now_ns();
				if (t1 - t0 < ta)
					ta = t1 - t0;
			}
			uint64_t t1 = cpu_now_ns();
			uint64_t nb = scan_linear(mirror, slots, found_b);
			uint64_t t2 = cpu_now_ns();
			if (na != nch || nb != nch || memcmp(found_a, found_b, nch * sizeof(uint64_t)) ||
			    (nch && memcmp(found_a, changed, nch * sizeof(uint64_t)))) {
				tool_fail("bench scan",
					  "level %s: the two methods disagree (bitmap %llu, walk %llu, changed %llu)",
					  levels[li].name, (unsigned long long)na, (unsigned long long)nb,
					  (unsigned long long)nch);
				rc = 1;
				break;
			}
			if (ta < best_a)
				best_a = ta;
			if (t2 - t1 < best_b)
				best_b = t2 - t1;
		}
		if (rc)
			break;
		double a_us = (double)best_a / 1e3, b_us = (double)best_b / 1e3;
		json_array_append_new(arr, json_pack("{s:s,s:I,s:f,s:f,s:f}", "changed", levels[li].name,
						     "changed_slots", (json_int_t)nch, "bitmap_us", a_us,
						     "linear_walk_us", b_us, "speedup", b_us / (a_us > 0 ? a_us : 0.001)));
	}
	hpt_track_stop(h);
	hpt_destroy(h);
	munmap(mirror, bytes);
	free(changed);
	free(found_a);
	free(found_b);
	free(buf);
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
			       (double)bytes / (double)fp_ns, "ratio_to_memcpy", (double)fp_ns / (double)mc_ns);
	*result = json_pack("{s:s,s:i,s:I,s:I,s:f,s:o,s:i,s:s,s:o}", "bench", "scan", "table_shift", shift,
			    "slots", (json_int_t)slots, "valid", (json_int_t)nvalid, "fill_seconds", fill_s,
			    "first_pass", fp,
			    "reps", reps, "timing", "thread CPU time, best of reps (bitmap: best of 5 scans per rep); both sides produce the same slot list (checked)",
			    "results", arr);
	return *result ? 0 : 1;
}

const struct hm_bench hm_bench_scan = {
	.name = "scan",
	.summary = "find changed slots: tracking bitmap vs QEMU's walk of every V word",
	.run = bench_scan_run,
};
