/* SPDX-License-Identifier: MIT */
/*
 * `hptmig bench digest [--shift N] [--valid N] [--reps R] [--json]`: the
 * end-to-end HTAB digest (wire-format.md §5) that both sides of a
 * migration compute inside the downtime, on a big sparse table (default a
 * 2 GiB table, shift 31, with 4 194 304 valid entries: the bolted linear map
 * of a 256 GiB guest). Side by side, interleaved, same table:
 *  - ours: hpt_summary(HPT_READ_QUIESCENT), which visits the valid entries
 *    through the table's occupancy bitmap;
 *  - baseline: the fastest O(table) walk, over a plain-memory copy of the
 *    table (no atomics, no locks): read every V word, build the records of
 *    the valid ones, SHA-256 them; what the digest cost before occupancy;
 *  - floor: SHA-256 alone over the same records, prebuilt in memory.
 * All three must give the same digest (checked). Thread CPU time, best and
 * median of R runs; ratios baseline/ours and ours/floor.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "hptmig/hpt.h"
#include "tool.h"

static uint64_t dg_rand(uint64_t *s)
{
	uint64_t z = (*s += UINT64_C(0x9E3779B97F4A7C15));
	z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
	return z ^ (z >> 31);
}

static uint64_t dg_cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * UINT64_C(1000000000) + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* The baseline: every V word of the plain copy, records of the valid ones
 * in 4096-slot batches, SHA-256 fed per batch (as the old walk did). */
static int walk_linear(const uint8_t *mirror, unsigned shift, uint64_t slots, uint8_t *rec,
		       uint8_t out[HM_SHA256_LEN])
{
	hm_sha256_t *sha;
	if (hm_sha256_new(&sha))
		return -1;
	uint8_t be[4];
	hm_store_be32(be, shift);
	hm_sha256_update(sha, be, 4);
	for (uint64_t s0 = 0; s0 < slots; s0 += 4096) {
		size_t len = 0;
		for (uint64_t s = s0; s < s0 + 4096 && s < slots; s++) {
			const uint8_t *e = mirror + 16 * s;
			if (!(e[7] & HPTE64_V_VALID))
				continue;
			hm_store_be64(rec + len, s);
			memcpy(rec + len + 8, e, 16);
			len += 24;
		}
		if (len)
			hm_sha256_update(sha, rec, len);
	}
	hm_sha256_final(sha, out);
	hm_sha256_free(sha);
	return 0;
}

static double ms(uint64_t ns)
{
	return (double)ns / 1e6;
}

static int bench_digest_run(int argc, char **argv, json_t **result)
{
	unsigned shift = 31;
	uint64_t want_valid = UINT64_C(4194304);
	int reps = 5;
	for (int i = 1; i < argc; i++) {
		uint64_t v;
		if (strcmp(argv[i], "--shift") == 0 && i + 1 < argc) {
			if (hm_parse_u64(argv[++i], HPT_SHIFT_STREAM_MAX, &v) || v < HPT_SHIFT_MIN) {
				tool_fail("bench digest", "--shift: expected %u..%u, got '%s'",
					  HPT_SHIFT_MIN, HPT_SHIFT_STREAM_MAX, argv[i]);
				return 2;
			}
			shift = (unsigned)v;
		} else if (strcmp(argv[i], "--valid") == 0 && i + 1 < argc) {
			if (hm_parse_u64(argv[++i], UINT64_MAX, &v)) {
				tool_fail("bench digest", "--valid: expected a count, got '%s'", argv[i]);
				return 2;
			}
			want_valid = v;
		} else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc) {
			if (hm_parse_u64(argv[++i], 100, &v) || v == 0) {
				tool_fail("bench digest", "--reps: expected 1..100, got '%s'", argv[i]);
				return 2;
			}
			reps = (int)v;
		} else {
			tool_fail("bench digest", "unknown option '%s' (--shift N, --valid N, --reps R)",
				  argv[i]);
			return 2;
		}
	}
	hpt_t *h;
	hm_error_t e;
	hm_error_clear(&e);
	if (hpt_create(shift, NULL, &h, &e)) {
		tool_fail_error("bench digest", &e);
		return 1;
	}
	uint64_t slots = hpt_slots(h);
	if (want_valid > slots / 2) {
		tool_fail("bench digest", "--valid %llu: at most half of the %llu slots",
			  (unsigned long long)want_valid, (unsigned long long)slots);
		hpt_destroy(h);
		return 2;
	}
	size_t bytes = (size_t)1 << shift;
	uint8_t *mirror = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mirror != MAP_FAILED)
		(void)madvise(mirror, bytes, MADV_HUGEPAGE); /* as the table does */
	uint64_t *pick = malloc(want_valid * sizeof(uint64_t) + 8);
	uint8_t *rec = malloc(4096 * 24);
	uint8_t *all = malloc(want_valid * 24 + 4);
	int rc = 1;
	json_t *o = NULL;
	if (mirror == MAP_FAILED || !pick || !rec || !all) {
		tool_fail("bench digest", "out of memory for a 2^%u-byte table and its copy", shift);
		goto out;
	}
	/* Distinct random slots (draw, sort, drop repeats, top up). */
	uint64_t rs = 4242, n = 0;
	while (n < want_valid) {
		while (n < want_valid)
			pick[n++] = dg_rand(&rs) % slots;
		qsort(pick, n, sizeof(uint64_t), cmp_u64);
		uint64_t u = 0;
		for (uint64_t i = 0; i < n; i++)
			if (u == 0 || pick[i] != pick[u - 1])
				pick[u++] = pick[i];
		n = u;
	}
	/* Bolted 64K-page-like entries, the same in the table and the copy. */
	size_t all_len = 4;
	hm_store_be32(all, shift);
	for (uint64_t i = 0; i < n; i++) {
		uint64_t s = pick[i], x = dg_rand(&rs);
		uint8_t ent[16];
		hm_store_be64(ent, ((x >> 8) << 7 & HPTE64_V_AVPN) | HPTE64_V_BOLTED |
					   HPTE64_V_LARGE | HPTE64_V_VALID);
		hm_store_be64(ent + 8, ((x & 0xffffff) << 16) | 0x1000 | HPTE64_R_M | HPTE64_R_C);
		hpt_write_entries_unshared(h, s, 1, ent);
		memcpy(mirror + 16 * s, ent, 16);
		hm_store_be64(all + all_len, s);
		memcpy(all + all_len + 8, ent, 16);
		all_len += 24;
	}
	/* Touch the rest of the copy as the table's walk would find it: mapped
	 * zero pages read as zeros, so fault them in once, outside the timing. */
	for (size_t off = 0; off < bytes; off += 4096)
		mirror[off] = mirror[off];

	uint64_t *t_ours = calloc((size_t)reps, 8), *t_lin = calloc((size_t)reps, 8),
		 *t_sha = calloc((size_t)reps, 8);
	if (!t_ours || !t_lin || !t_sha) {
		tool_fail("bench digest", "out of memory");
		free(t_ours);
		free(t_lin);
		free(t_sha);
		goto out;
	}
	uint8_t d_ours[32], d_lin[32], d_sha[32], d_ref[32];
	uint64_t nv = 0, nb = 0;
	rc = 0;
	for (int r = 0; r < reps && rc == 0; r++) {
		uint64_t t0 = dg_cpu_ns();
		if (hpt_summary(h, HPT_READ_QUIESCENT, &nv, &nb, d_ours))
			rc = 1;
		uint64_t t1 = dg_cpu_ns();
		if (walk_linear(mirror, shift, slots, rec, d_lin))
			rc = 1;
		uint64_t t2 = dg_cpu_ns();
		hm_sha256(all, all_len, d_sha);
		uint64_t t3 = dg_cpu_ns();
		t_ours[r] = t1 - t0;
		t_lin[r] = t2 - t1;
		t_sha[r] = t3 - t2;
	}
	if (rc == 0 && hpt_digest(h, d_ref))
		rc = 1;
	if (rc == 0 && (memcmp(d_ours, d_lin, 32) || memcmp(d_ours, d_sha, 32) ||
			memcmp(d_ours, d_ref, 32) || nv != n || nb != n)) {
		tool_fail("bench digest", "the three digests (or the counts %llu/%llu of %llu) differ",
			  (unsigned long long)nv, (unsigned long long)nb, (unsigned long long)n);
		rc = 1;
	}
	if (rc == 0) {
		qsort(t_ours, (size_t)reps, 8, cmp_u64);
		qsort(t_lin, (size_t)reps, 8, cmp_u64);
		qsort(t_sha, (size_t)reps, 8, cmp_u64);
		uint64_t bo = t_ours[0], bl = t_lin[0], bs = t_sha[0];
		uint64_t mo = t_ours[reps / 2], ml = t_lin[reps / 2], msh = t_sha[reps / 2];
		o = json_object();
		json_object_set_new(o, "benchmark", json_string("digest"));
		json_object_set_new(o, "htab_shift", json_integer(shift));
		json_object_set_new(o, "slots", json_integer((json_int_t)slots));
		json_object_set_new(o, "valid", json_integer((json_int_t)n));
		json_object_set_new(o, "digest_input_bytes", json_integer((json_int_t)all_len));
		json_object_set_new(o, "reps", json_integer(reps));
		json_object_set_new(o, "ours_best_ms", json_real(ms(bo)));
		json_object_set_new(o, "ours_median_ms", json_real(ms(mo)));
		json_object_set_new(o, "linear_best_ms", json_real(ms(bl)));
		json_object_set_new(o, "linear_median_ms", json_real(ms(ml)));
		json_object_set_new(o, "sha256_only_best_ms", json_real(ms(bs)));
		json_object_set_new(o, "sha256_only_median_ms", json_real(ms(msh)));
		json_object_set_new(o, "linear_over_ours_best", json_real((double)bl / (double)bo));
		json_object_set_new(o, "linear_over_ours_median", json_real((double)ml / (double)mo));
		json_object_set_new(o, "ours_over_sha256_only_best", json_real((double)bo / (double)bs));
		fprintf(stderr, "digest of a 2^%u-byte table with %llu valid entries (%.1f MB of SHA-256 input), "
		       "thread CPU time, best / median of %d:\n",
		       shift, (unsigned long long)n, (double)all_len / 1e6, reps);
		fprintf(stderr, "  ours (occupancy walk)   %8.1f / %8.1f ms\n", ms(bo), ms(mo));
		fprintf(stderr, "  linear walk, plain copy %8.1f / %8.1f ms   (%.1fx / %.1fx ours)\n", ms(bl),
		       ms(ml), (double)bl / (double)bo, (double)ml / (double)mo);
		fprintf(stderr, "  SHA-256 alone           %8.1f / %8.1f ms   (ours = %.2fx of it)\n", ms(bs),
		       ms(msh), (double)bo / (double)bs);
		*result = o;
	}
	free(t_ours);
	free(t_lin);
	free(t_sha);
out:
	if (mirror != MAP_FAILED)
		munmap(mirror, bytes);
	free(pick);
	free(rec);
	free(all);
	hpt_destroy(h);
	return rc;
}

const struct hm_bench hm_bench_digest = {
	.name = "digest",
	.summary = "end-to-end HTAB digest of a big sparse table: occupancy walk vs linear walk vs SHA-256 alone",
	.run = bench_digest_run,
};
