/* SPDX-License-Identifier: MIT */
/*
 * `hptmig bench digest [--shift N] [--valid N] [--reps R] [--json]`: the
 * end-to-end HTAB digest (wire-format.md §5) that both sides of a
 * migration compute inside the downtime, on a big table (default a 2 GiB
 * table, shift 31, with 4 194 304 valid entries: the bolted linear map of a
 * 256 GiB guest). Interleaved, on the same table, thread CPU time:
 *  - ours: hpt_summary(HPT_READ_QUIESCENT), plain loads (the stopped source
 *    and the destination's loaded table);
 *  - locked: the same walk taking each valid entry's lock (hpt_digest; what
 *    the destination paid before the quiescent mode);
 *  - tracked: the lock-free tracking-validated read (tracking on; what the
 *    source paid);
 *  - ideal: the same records built from a plain-memory copy of the table
 *    (no atomics): how close ours is to a bare walk;
 *  - sha: SHA-256 alone over the prebuilt records: the floor the format sets.
 * Every digest must be equal (checked). Best and median of R runs.
 * Then the stop-time verification of hptmig/verify v2 (stop_measure): the
 * roots kept current after 0.01 % and 1 % of the blocks changed, against
 * the full root and the flat digest.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "hptmig/hpt.h"
#include "htab_bench.h"
#include "tool.h"




/* The ideal: every V word of a plain-memory copy, records of the valid
 * ones in 4096-slot batches, SHA-256 fed per batch. */
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

/* --shift, --valid, --reps. 0, -1 after --help, or an exit code. */
static int digest_args(int argc, char **argv, unsigned *shift, uint64_t *want_valid, int *reps)
{
	uint64_t sh = *shift, rp = (uint64_t)*reps;
	const struct hb_opt o[] = {{"--shift", &sh, HPT_SHIFT_STREAM_MAX},
				   {"--valid", want_valid, UINT64_MAX},
				   {"--reps", &rp, 100},
				   {NULL, NULL, 0}};
	int prc = hb_parse("bench digest", argc, argv, o, "--shift N, --valid N, --reps R");
	if (prc)
		return prc == 1 ? -1 : prc;
	if (sh < HPT_SHIFT_MIN || rp == 0) {
		tool_fail("bench digest", "--shift takes %u..%u and --reps 1..100", HPT_SHIFT_MIN,
			  HPT_SHIFT_STREAM_MAX);
		return 2;
	}
	*shift = (unsigned)sh;
	*reps = (int)rp;
	return 0;
}

/* The table, its plain copy and the digest input written out. */
struct dg_ctx {
	hpt_t *h;
	unsigned shift;
	uint64_t slots;
	size_t bytes;
	uint8_t *mirror; /* the table's plain copy */
	uint64_t *pick;  /* the valid slots */
	uint64_t n;      /* how many */
	uint8_t *rec;    /* 4096 records of scratch */
	uint8_t *all;    /* the whole digest input */
	size_t all_len;
};

/*
 * want_valid distinct random slots (draw, sort, drop repeats, top up)
 * get bolted 64K-page-like entries, the same in the table and the copy;
 * the digest input is written out alongside.
 */
static void digest_fill(struct dg_ctx *c, uint64_t want_valid)
{
	uint64_t rs = 4242, n = 0;
	while (n < want_valid) {
		while (n < want_valid)
			c->pick[n++] = hb_rand(&rs) % c->slots;
		n = hb_sort_unique(c->pick, n);
	}
	c->n = n;
	c->all_len = 4;
	hm_store_be32(c->all, c->shift);
	for (uint64_t i = 0; i < n; i++) {
		uint64_t s = c->pick[i], x = hb_rand(&rs);
		uint8_t ent[16];
		hm_store_be64(ent, ((x >> 8) << 7 & HPTE64_V_AVPN) | HPTE64_V_BOLTED |
					   HPTE64_V_LARGE | HPTE64_V_VALID);
		hm_store_be64(ent + 8, ((x & 0xffffff) << 16) | 0x1000 | HPTE64_R_M | HPTE64_R_C);
		hpt_write_entries_exclusive(c->h, s, 1, ent);
		memcpy(c->mirror + 16 * s, ent, 16);
		hm_store_be64(c->all + c->all_len, s);
		memcpy(c->all + c->all_len + 8, ent, 16);
		c->all_len += 24;
	}
	/* Touch the rest of the copy as the table's walk would find it: mapped
	 * zero pages read as zeros, so fault them in once, outside the timing. */
	for (size_t off = 0; off < c->bytes; off += 4096)
		c->mirror[off] = c->mirror[off];
}

enum { M_OURS, M_LOCKED, M_TRACKED, M_IDEAL, M_SHA, M_N };
static const char *const mname[M_N] = {"ours", "locked", "tracked", "ideal", "sha256_only"};

/*
 * reps rounds of every method (t[k][r]: thread CPU ns); every digest must
 * equal hpt_digest's and the counts the entries written. 0 or 1.
 */
static int digest_measure(struct dg_ctx *c, int reps, uint64_t *t[M_N])
{
	uint8_t d[M_N][32], d_ref[32];
	uint64_t nv = 0, nb = 0;
	hm_error_t e;
	hm_error_clear(&e);
	int rc = hpt_track_start(c->h, &e) ? 1 : 0; /* for the tracked read; nobody marks */
	for (int r = 0; r < reps && rc == 0; r++) {
		uint64_t t0 = hb_cpu_ns();
		rc |= hpt_summary(c->h, HPT_READ_QUIESCENT, &nv, &nb, d[M_OURS]) != 0;
		uint64_t t1 = hb_cpu_ns();
		rc |= hpt_summary(c->h, HPT_READ_LOCKED, NULL, NULL, d[M_LOCKED]) != 0;
		uint64_t t2 = hb_cpu_ns();
		rc |= hpt_summary(c->h, HPT_READ_TRACKED, NULL, NULL, d[M_TRACKED]) != 0;
		uint64_t t3 = hb_cpu_ns();
		rc |= walk_linear(c->mirror, c->shift, c->slots, c->rec, d[M_IDEAL]) != 0;
		uint64_t t4 = hb_cpu_ns();
		hm_sha256(c->all, c->all_len, d[M_SHA]);
		uint64_t t5 = hb_cpu_ns();
		t[M_OURS][r] = t1 - t0;
		t[M_LOCKED][r] = t2 - t1;
		t[M_TRACKED][r] = t3 - t2;
		t[M_IDEAL][r] = t4 - t3;
		t[M_SHA][r] = t5 - t4;
	}
	if (rc == 0 && hpt_digest(c->h, d_ref))
		rc = 1;
	for (int k = 0; k < M_N && rc == 0; k++) {
		if (memcmp(d[k], d_ref, 32) != 0) {
			tool_fail("bench digest", "the %s digest differs from hpt_digest's", mname[k]);
			rc = 1;
		}
	}
	if (rc == 0 && (nv != c->n || nb != c->n)) {
		tool_fail("bench digest", "counts %llu valid / %llu bolted, expected %llu",
			  (unsigned long long)nv, (unsigned long long)nb, (unsigned long long)c->n);
		rc = 1;
	}
	return rc;
}

/* Best and median of each method, as JSON and on stderr (sorts t). */
static json_t *digest_json(const struct dg_ctx *c, int reps, uint64_t *t[M_N])
{
	uint64_t best[M_N], med[M_N];
	for (int k = 0; k < M_N; k++) {
		qsort(t[k], (size_t)reps, 8, hb_cmp_u64);
		best[k] = t[k][0];
		med[k] = t[k][reps / 2];
	}
	json_t *o = json_object();
	json_object_set_new(o, "benchmark", json_string("digest"));
	json_object_set_new(o, "htab_shift", json_integer(c->shift));
	json_object_set_new(o, "slots", json_integer((json_int_t)c->slots));
	json_object_set_new(o, "valid", json_integer((json_int_t)c->n));
	json_object_set_new(o, "digest_input_bytes", json_integer((json_int_t)c->all_len));
	json_object_set_new(o, "reps", json_integer(reps));
	fprintf(stderr,
		"digest of a 2^%u-byte table with %llu valid entries (%.1f MB of SHA-256 input), "
		"thread CPU time, best / median of %d:\n",
		c->shift, (unsigned long long)c->n, (double)c->all_len / 1e6, reps);
	for (int k = 0; k < M_N; k++) {
		char key[64];
		snprintf(key, sizeof(key), "%s_best_ms", mname[k]);
		json_object_set_new(o, key, json_real(ms(best[k])));
		snprintf(key, sizeof(key), "%s_median_ms", mname[k]);
		json_object_set_new(o, key, json_real(ms(med[k])));
		fprintf(stderr, "  %-12s %8.1f / %8.1f ms   ours = %.2fx / %.2fx of it\n", mname[k],
			ms(best[k]), ms(med[k]), (double)best[M_OURS] / (double)best[k],
			(double)med[M_OURS] / (double)med[k]);
	}
	json_object_set_new(o, "locked_over_ours_median",
			    json_real((double)med[M_LOCKED] / (double)med[M_OURS]));
	json_object_set_new(o, "tracked_over_ours_median",
			    json_real((double)med[M_TRACKED] / (double)med[M_OURS]));
	json_object_set_new(o, "ours_over_ideal_median",
			    json_real((double)med[M_OURS] / (double)med[M_IDEAL]));
	json_object_set_new(o, "ours_over_sha256_only_median",
			    json_real((double)med[M_OURS] / (double)med[M_SHA]));
	return o;
}

/*
 * Stop-time verification (hptmig/verify v2): the root kept current, after
 * changes to a fraction of the blocks, against a full recomputation of the
 * root (the stop's cost without it) and the flat digest (the stop's cost
 * before version 2). Per rep: frac of the B blocks get one entry written
 * (hpt_write_entry: tracking marks it, a loader-style record marks it
 * too), the final pass takes the marks (not timed: that is the pass's
 * work), then, timed (process CPU, and wall for the kept roots): the
 * source's hpt_track_root, the destination's
 * hpt_blocks_root (re-hash the changed blocks and the root), the full
 * root and the flat digest. Every kept root must equal the full one.
 */
enum { S_SRC, S_DEST, S_FULL, S_FLAT, S_N };

static uint64_t proc_cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * UINT64_C(1000000000) + (uint64_t)ts.tv_nsec;
}
static const char *const sname[S_N] = {"kept_root_source", "kept_root_destination", "full_root",
				       "flat_digest"};

static int stop_measure(struct dg_ctx *c, double frac, int reps, json_t *arr)
{
	uint64_t nb = hpt_verify_nblocks(c->shift), k = (uint64_t)((double)nb * frac + 0.5);
	uint64_t rs = 777, *t[S_N] = {0}, *wall[2] = {0}, rehashed = 0;
	hpt_blocks_t *blk = NULL;
	int rc = hpt_blocks_new(&blk) ? 1 : 0;
	if (k == 0)
		k = 1;
	for (int m = 0; m < S_N; m++)
		if (!(t[m] = calloc((size_t)reps, 8)))
			rc = 1;
	for (int m = 0; m < 2; m++)
		if (!(wall[m] = calloc((size_t)reps, 8)))
			rc = 1;
	/* Both caches up to date first (a migration hashes while it runs). */
	hpt_root_info_t src, dst;
	if (!rc)
		rc = hpt_track_root(c->h, HPT_READ_QUIESCENT, &src) ||
		     hpt_blocks_root(blk, c->h, HPT_READ_QUIESCENT, &dst);
	for (int r = 0; r < reps && rc == 0; r++) {
		for (uint64_t i = 0; i < k; i++) {
			uint64_t b = hb_rand(&rs) % nb, slot = b * HPT_VERIFY_BLOCK_SLOTS +
							       hb_rand(&rs) % HPT_VERIFY_BLOCK_SLOTS;
			uint64_t x = hb_rand(&rs);
			hpt_write_entry(c->h, slot,
					((x >> 8) << 7 & HPTE64_V_AVPN) | HPTE64_V_LARGE | HPTE64_V_VALID,
					((x & 0xffffff) << 16) | 0x1000 | HPTE64_R_M);
			hpt_blocks_mark(blk, slot, 1);
		}
		uint64_t cur = 0, first, bits;
		while (hpt_track_take(c->h, &cur, &first, &bits))
			;
		uint8_t full[32], flat[32];
		/* process CPU time: a root with 32 or more blocks to hash uses a
		 * second thread (hpt_root_threads), whose time counts too */
		uint64_t w0 = hm_now_ns(), t0 = proc_cpu_ns();
		rc |= hpt_track_root(c->h, HPT_READ_QUIESCENT, &src) != 0;
		uint64_t w1 = hm_now_ns(), t1 = proc_cpu_ns();
		rc |= hpt_blocks_root(blk, c->h, HPT_READ_QUIESCENT, &dst) != 0;
		uint64_t w2 = hm_now_ns(), t2 = proc_cpu_ns();
		rc |= hpt_root(c->h, HPT_READ_QUIESCENT, full) != 0;
		uint64_t t3 = proc_cpu_ns();
		rc |= hpt_summary(c->h, HPT_READ_QUIESCENT, NULL, NULL, flat) != 0;
		uint64_t t4 = proc_cpu_ns();
		wall[0][r] = w1 - w0;
		wall[1][r] = w2 - w1;
		t[S_SRC][r] = t1 - t0;
		t[S_DEST][r] = t2 - t1;
		t[S_FULL][r] = t3 - t2;
		t[S_FLAT][r] = t4 - t3;
		rehashed += src.rehashed;
		if (rc == 0 && (memcmp(src.root, full, 32) || memcmp(dst.root, full, 32))) {
			tool_fail("bench digest", "a kept root differs from the full recomputation");
			rc = 1;
		}
	}
	if (rc == 0) {
		json_t *o = json_object();
		json_object_set_new(o, "changed_blocks_fraction", json_real(frac));
		json_object_set_new(o, "changed_blocks", json_integer((json_int_t)k));
		json_object_set_new(o, "blocks", json_integer((json_int_t)nb));
		json_object_set_new(o, "rehashed_blocks_mean",
				    json_real((double)rehashed / (double)reps));
		fprintf(stderr, "stop-time verification, %llu of %llu blocks changed (%g %%):\n",
			(unsigned long long)k, (unsigned long long)nb, frac * 100);
		uint64_t med[S_N];
		for (int m = 0; m < S_N; m++) {
			qsort(t[m], (size_t)reps, 8, hb_cmp_u64);
			med[m] = t[m][reps / 2];
			char key[64];
			snprintf(key, sizeof(key), "%s_best_ms", sname[m]);
			json_object_set_new(o, key, json_real(ms(t[m][0])));
			snprintf(key, sizeof(key), "%s_median_ms", sname[m]);
			json_object_set_new(o, key, json_real(ms(med[m])));
			snprintf(key, sizeof(key), "%s_worst_ms", sname[m]);
			json_object_set_new(o, key, json_real(ms(t[m][reps - 1])));
			fprintf(stderr, "  %-22s best %8.2f  median %8.2f  worst %8.2f ms\n", sname[m],
				ms(t[m][0]), ms(med[m]), ms(t[m][reps - 1]));
		}
		for (int m = 0; m < 2; m++) { /* what the downtime sees */
			char key[64];
			qsort(wall[m], (size_t)reps, 8, hb_cmp_u64);
			snprintf(key, sizeof(key), "%s_wall_median_ms", sname[m]);
			json_object_set_new(o, key, json_real(ms(wall[m][reps / 2])));
			fprintf(stderr, "  %-22s wall median %8.2f ms\n", sname[m],
				ms(wall[m][reps / 2]));
		}
		json_object_set_new(o, "full_root_over_kept_source_median",
				    json_real((double)med[S_FULL] / (double)med[S_SRC]));
		json_object_set_new(o, "flat_digest_over_kept_source_median",
				    json_real((double)med[S_FLAT] / (double)med[S_SRC]));
		json_array_append_new(arr, o);
	}
	for (int m = 0; m < S_N; m++)
		free(t[m]);
	for (int m = 0; m < 2; m++)
		free(wall[m]);
	hpt_blocks_free(blk);
	return rc;
}

static int bench_digest_run(int argc, char **argv, json_t **result)
{
	struct dg_ctx c = {.shift = 31};
	uint64_t want_valid = UINT64_C(4194304);
	int reps = 5;
	int rc = digest_args(argc, argv, &c.shift, &want_valid, &reps);
	if (rc)
		return rc < 0 ? 0 : rc;
	hm_error_t e;
	hm_error_clear(&e);
	if (hpt_create(c.shift, NULL, &c.h, &e)) {
		tool_fail_error("bench digest", &e);
		return 1;
	}
	c.slots = hpt_slots(c.h);
	if (want_valid > c.slots / 2) {
		tool_fail("bench digest", "--valid %llu: at most half of the %llu slots",
			  (unsigned long long)want_valid, (unsigned long long)c.slots);
		hpt_destroy(c.h);
		return 2;
	}
	c.bytes = (size_t)1 << c.shift;
	c.mirror = mmap(NULL, c.bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (c.mirror != MAP_FAILED)
		(void)madvise(c.mirror, c.bytes, MADV_HUGEPAGE); /* as the table does */
	c.pick = malloc(want_valid * sizeof(uint64_t) + 8);
	c.rec = malloc(4096 * 24);
	c.all = malloc(want_valid * 24 + 4);
	uint64_t *t[M_N] = {0};
	rc = 1;
	for (int k = 0; k < M_N; k++)
		t[k] = calloc((size_t)reps, 8);
	if (c.mirror == MAP_FAILED || !c.pick || !c.rec || !c.all) {
		tool_fail("bench digest", "out of memory for a 2^%u-byte table and its copy", c.shift);
		goto out;
	}
	digest_fill(&c, want_valid);
	rc = 0;
	for (int k = 0; k < M_N && rc == 0; k++)
		if (!t[k])
			rc = 1;
	if (rc == 0)
		rc = digest_measure(&c, reps, t);
	if (rc == 0)
		*result = digest_json(&c, reps, t);
	if (rc == 0) {
		/* tracking is on since digest_measure (the source's cache) */
		json_t *arr = json_array();
		json_object_set_new(*result, "stop_verification", arr);
		rc = stop_measure(&c, 0.0001, reps, arr);
		if (rc == 0)
			rc = stop_measure(&c, 0.01, reps, arr);
	}
out:
	for (int k = 0; k < M_N; k++)
		free(t[k]);
	if (c.mirror != MAP_FAILED)
		munmap(c.mirror, c.bytes);
	free(c.pick);
	free(c.rec);
	free(c.all);
	hpt_destroy(c.h);
	return rc;
}

const struct hm_bench hm_bench_digest = {
	.name = "digest",
	.summary = "end-to-end HTAB digest of a 2 GiB table: quiescent walk vs locked and tracked reads, a bare walk and SHA-256 alone; stop-time verification with the roots kept current (0.01 % and 1 % of blocks changed) vs the full walk",
	.usage = "hptmig bench digest [--shift N] [--valid N] [--reps R] [--json]",
	.run = bench_digest_run,
};
