/* SPDX-License-Identifier: MIT */
/*
 * `hptmig bench hcall`: the cost of change tracking on the vCPU hot path.
 * H_ENTER + H_REMOVE pairs from 1 and N threads on two identical tables, one
 * with tracking off and one with tracking on; every thread alternates short
 * batches between the two (off-on, on-off, ...), so both modes run under the
 * same machine conditions and the paired batch ratios cancel the noise of a
 * shared machine. The main thread drains the tracked table as a migration
 * thread would (takes every changed slot every --drain-us, default 1 ms:
 * the vCPUs' change logs are moved into the bitmap and the bits cleared),
 * so most marks are new changes; the fraction, and how often a mark missed
 * the log (full or shared), are measured and reported. --pass-read makes
 * the drain a later pass that also reads what changed, as the sender does
 * (the cost to the vCPUs of a pass reading lines they just wrote).
 */
#include <pthread.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hptmig/hpt.h"
#include "tool.h"

#define BENCH_SHIFT 26 /* 64 MiB table, 4M slots (the table of an 8 GiB guest) */
#define BATCH_PAIRS 64
#define MAX_BATCHES (1u << 20)
/* Assumed cost of a real hypercall round trip (guest exit, dispatch,
 * return), for the cost relative to it: --hcall-ns. See hcall.md. */
#define REAL_HCALL_NS 1000

struct hc_ctx {
	hpt_t *h[2];   /* the two tables */
	hpt_t *cur[2]; /* this run: [0] tracking off, [1] tracking on */
	_Atomic int go, stop;
};

/* Per worker, on its own cache lines (allocated aligned): the main thread
 * drains tracking while the workers run, and a counter sharing a line with
 * its loop variables would be a cost of the benchmark, not of tracking. */
struct hc_thread {
	_Alignas(128) struct hc_ctx *c;
	uint64_t seed;
	pthread_t th;
	uint64_t ops[2], ns[2], pairs_on;
	uint32_t n; /* batches recorded per mode */
	uint32_t *bns[2];
};

static uint64_t hc_rand(uint64_t *s)
{
	uint64_t z = (*s += UINT64_C(0x9E3779B97F4A7C15));
	z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
	return z ^ (z >> 31);
}

/* One batch of enter+remove pairs on h. Returns hcalls made. */
static uint64_t hc_batch(hpt_t *h, uint64_t *rs, uint64_t slots, uint64_t *pairs)
{
	uint64_t ops = 0;
	for (int i = 0; i < BATCH_PAIRS; i++) {
		uint64_t x = hc_rand(rs);
		uint64_t ptex = x % slots, slot;
		uint64_t v = ((x >> 20) << 7 & HPTE64_V_AVPN) | HPTE64_V_VALID;
		uint64_t r = ((x & 0xfffff) << 12) | HPTE64_R_M;
		ops++;
		if (hpt_h_enter(h, 0, ptex, v, r, &slot) == H_SUCCESS) {
			ops++;
			if (hpt_h_remove(h, H_AVPN, slot, v & HPTE64_V_COMPARE_MASK, NULL, NULL) == H_SUCCESS)
				(*pairs)++;
		}
	}
	return ops;
}

static void *hc_worker(void *arg)
{
	struct hc_thread *t = arg;
	struct hc_ctx *c = t->c;
	uint64_t rs[2] = {t->seed, t->seed ^ UINT64_C(0x5555)}, slots = hpt_slots(c->cur[0]);
	/* Counted on this thread's stack and stored once at the end: the
	 * on and off batches do the same work. */
	uint64_t pairs[2] = {0, 0}, ops[2] = {0, 0}, ns[2] = {0, 0};
	uint32_t n = 0;
	while (!atomic_load_explicit(&c->go, memory_order_acquire))
		;
	for (uint32_t k = 0; !atomic_load_explicit(&c->stop, memory_order_relaxed); k++) {
		for (int j = 0; j < 2; j++) {
			int mode = (k & 1) ? 1 - j : j;
			uint64_t t0 = hm_now_ns();
			uint64_t o = hc_batch(c->cur[mode], &rs[mode], slots, &pairs[mode]);
			uint64_t d = hm_now_ns() - t0;
			ops[mode] += o;
			ns[mode] += d;
			if (n < MAX_BATCHES)
				t->bns[mode][n] = (uint32_t)(d > UINT32_MAX ? UINT32_MAX : d);
		}
		if (n < MAX_BATCHES)
			n++;
	}
	t->pairs_on = pairs[1];
	for (int m = 0; m < 2; m++) {
		t->ops[m] = ops[m];
		t->ns[m] = ns[m];
	}
	t->n = n;
	return NULL;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/*
 * Median and quartiles of the paired batch ratios (on/off time for the
 * same amount of work), over all threads; returns how many pairs.
 */
static uint64_t hc_ratio_quartiles(const struct hc_thread *th, int nt, uint64_t nb, double *med,
				   double *q1, double *q3)
{
	double *ratio = malloc((nb ? nb : 1) * sizeof(double));
	uint64_t nr = 0;
	for (int i = 0; i < nt && ratio; i++)
		for (uint32_t k = 0; k < th[i].n; k++)
			if (th[i].bns[0][k] && th[i].bns[1][k])
				ratio[nr++] = (double)th[i].bns[1][k] / (double)th[i].bns[0][k];
	*med = *q1 = *q3 = 0;
	if (ratio && nr) {
		qsort(ratio, nr, sizeof(double), cmp_double);
		*med = ratio[nr / 2];
		*q1 = ratio[nr / 4];
		*q3 = ratio[(3 * nr) / 4];
	}
	free(ratio);
	return nr;
}

/* Median batch time per mode: the speed of a thread that is not preempted
 * (on a shared machine the totals include waiting for a CPU). */
static void hc_batch_medians(const struct hc_thread *th, int nt, uint64_t nb, double mb[2])
{
	for (int m = 0; m < 2; m++) {
		double *bt = malloc((nb ? nb : 1) * sizeof(double));
		uint64_t n = 0;
		mb[m] = 0;
		for (int i = 0; i < nt && bt; i++)
			for (uint32_t k = 0; k < th[i].n; k++)
				bt[n++] = th[i].bns[m][k];
		if (bt && n) {
			qsort(bt, n, sizeof(double), cmp_double);
			mb[m] = bt[n / 2];
		}
		free(bt);
	}
}

/* One later pass over h as the sender's bitmap pass reads it (src/htab/
 * save.c, later_bitmap): 64 words per batch take, then every run of
 * changed slots read in the wire layout. Returns the slots taken. */
#define HC_PASS_WORDS 64
static uint64_t hc_pass_read(hpt_t *h)
{
	uint64_t cur = 0, first[HC_PASS_WORDS], bits[HC_PASS_WORDS], n = 0;
	uint8_t buf[64 * HPTE64_SIZE];
	size_t got;
	do {
		got = hpt_track_take_batch(h, &cur, first, bits, HC_PASS_WORDS);
		for (size_t i = 0; i < got; i++) {
			n += (uint64_t)__builtin_popcountll(bits[i]);
			for (uint64_t b = bits[i]; b;) {
				unsigned a = (unsigned)__builtin_ctzll(b);
				uint64_t rest = b >> a;
				unsigned len = (~rest == 0) ? 64u - a : (unsigned)__builtin_ctzll(~rest);
				(void)hpt_read_entries(h, first[i] + a, len, buf);
				b = (a + len >= 64) ? 0 : b & ~(((UINT64_C(1) << len) - 1) << a);
			}
		}
	} while (got == HC_PASS_WORDS);
	return n;
}

/* Run nt threads for run_ns; fill a JSON result object. */
static json_t *hc_config(struct hc_ctx *c, int nt, uint64_t run_ns, uint64_t drain_ns,
			 uint64_t real_ns, bool pass_read)
{
	struct hc_thread th[64];
	memset(th, 0, sizeof(th));
	atomic_store(&c->go, 0);
	atomic_store(&c->stop, 0);
	hm_error_t e;
	hm_error_clear(&e);
	if (hpt_track_start(c->cur[1], &e))
		return NULL;
	for (int i = 0; i < nt; i++) {
		th[i].c = c;
		th[i].seed = UINT64_C(0x1234567) * (uint64_t)(i + 1) + (uint64_t)nt;
		th[i].bns[0] = calloc(MAX_BATCHES, sizeof(uint32_t));
		th[i].bns[1] = calloc(MAX_BATCHES, sizeof(uint32_t));
		if (!th[i].bns[0] || !th[i].bns[1] || pthread_create(&th[i].th, NULL, hc_worker, &th[i])) {
			for (int j = 0; j <= i; j++) {
				free(th[j].bns[0]);
				free(th[j].bns[1]);
			}
			/* threads already started are stopped and joined below */
			atomic_store(&c->stop, 1);
			atomic_store(&c->go, 1);
			for (int j = 0; j < i; j++)
				pthread_join(th[j].th, NULL);
			hpt_track_stop(c->cur[1]);
			return NULL;
		}
	}
	/* The migration thread's part: every drain_ns take every changed slot
	 * (a later pass without the reading and sending), or with pass_read
	 * also read each changed run as the sender's bitmap pass does (batch
	 * takes that hint the entries, then hpt_read_entries per run). */
	uint64_t new_bits = 0, sweeps = 0, t_end, ov0 = hpt_track_overflows(c->cur[1]);
	atomic_store_explicit(&c->go, 1, memory_order_release);
	t_end = hm_now_ns() + run_ns;
	while (hm_now_ns() < t_end) {
		hm_sleep_ns(drain_ns);
		uint64_t cur = 0, first, bits;
		if (pass_read)
			new_bits += hc_pass_read(c->cur[1]);
		else
			while (hpt_track_take(c->cur[1], &cur, &first, &bits))
				new_bits += (uint64_t)__builtin_popcountll(bits);
		sweeps++;
	}
	atomic_store(&c->stop, 1);
	for (int i = 0; i < nt; i++)
		pthread_join(th[i].th, NULL);
	new_bits += hpt_track_pending(c->cur[1]);
	uint64_t overflows = hpt_track_overflows(c->cur[1]) - ov0;
	hpt_track_stop(c->cur[1]);

	uint64_t ops[2] = {0, 0}, ns[2] = {0, 0}, pairs = 0, nb = 0;
	for (int i = 0; i < nt; i++) {
		ops[0] += th[i].ops[0];
		ops[1] += th[i].ops[1];
		ns[0] += th[i].ns[0];
		ns[1] += th[i].ns[1];
		pairs += th[i].pairs_on;
		nb += th[i].n;
	}
	double med, q1, q3, mb[2];
	uint64_t nr = hc_ratio_quartiles(th, nt, nb, &med, &q1, &q3);
	hc_batch_medians(th, nt, nb, mb);
	for (int i = 0; i < nt; i++) {
		free(th[i].bns[0]);
		free(th[i].bns[1]);
	}
	double off = (double)ops[0] / ((double)ns[0] / 1e9), on = (double)ops[1] / ((double)ns[1] / 1e9);
	double per_batch[2] = {nb ? (double)ops[0] / (double)nb : 0, nb ? (double)ops[1] / (double)nb : 0};
	/* Per hcall: the off time and what tracking adds (median batches). */
	double ns_off = per_batch[0] > 0 ? mb[0] / per_batch[0] : 0;
	double extra = ns_off * (med - 1.0);
	json_t *o = json_pack("{s:i,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:I,s:f}", "threads", nt,
			      "off_mhcalls_per_s_per_thread", mb[0] > 0 ? per_batch[0] / mb[0] * 1e3 : 0.0,
			      "on_mhcalls_per_s_per_thread", mb[1] > 0 ? per_batch[1] / mb[1] * 1e3 : 0.0,
			      "off_mhcalls_per_s_wall_total", off / 1e6, "on_mhcalls_per_s_wall_total",
			      on / 1e6, "median_batch_time_ratio_on_over_off", med, "ratio_q1", q1,
			      "ratio_q3", q3, "tracking_cost_pct", (med - 1.0) * 100.0,
			      "total_time_ratio_on_over_off", off / on, "batch_pairs", (json_int_t)nr,
			      "new_bit_fraction", pairs ? (double)new_bits / (double)pairs : 0.0);
	if (o && json_object_update_new(
			 o, json_pack("{s:f,s:f,s:I,s:f,s:I}", "off_ns_per_hcall", ns_off,
				      "extra_ns_per_hcall", extra, "assumed_real_hcall_ns",
				      (json_int_t)real_ns, "cost_vs_real_hcall_pct",
				      100.0 * extra / ((double)real_ns + ns_off), "drain_sweeps",
				      (json_int_t)sweeps)) != 0) {
		json_decref(o);
		return NULL;
	}
	/* Marks that missed the ring: 2 per pair (enter + remove). */
	json_object_set_new(o, "ring_miss_fraction",
			    json_real(pairs ? (double)overflows / (2.0 * (double)pairs) : 0.0));
	return o;
}

/*
 * One thread count: each table is the tracked one for half the time (a
 * difference between the two tables themselves, page placement or huge
 * pages, cancels in the geometric mean of the two runs' ratios). NULL when
 * the threads or tracking could not start.
 */
static json_t *hc_both_halves(struct hc_ctx *c, int nt, uint64_t half_ns, uint64_t drain_ns,
			      uint64_t real_ns, bool pass_read)
{
	json_t *half[2];
	for (int sw = 0; sw < 2; sw++) {
		c->cur[0] = c->h[sw];
		c->cur[1] = c->h[1 - sw];
		half[sw] = hc_config(c, nt, half_ns, drain_ns, real_ns, pass_read);
	}
	if (!half[0] || !half[1]) {
		json_decref(half[0]);
		json_decref(half[1]);
		return NULL;
	}
	double m0 = json_real_value(json_object_get(half[0], "median_batch_time_ratio_on_over_off"));
	double m1 = json_real_value(json_object_get(half[1], "median_batch_time_ratio_on_over_off"));
	double g = sqrt(m0 * m1);
	double ns_off = 0.5 * (json_real_value(json_object_get(half[0], "off_ns_per_hcall")) +
			       json_real_value(json_object_get(half[1], "off_ns_per_hcall")));
	double extra = ns_off * (g - 1.0);
	return json_pack("{s:i,s:f,s:f,s:f,s:f,s:I,s:f,s:o,s:o}", "threads", nt,
			 "tracking_cost_pct", (g - 1.0) * 100.0, "off_ns_per_hcall", ns_off,
			 "extra_ns_per_hcall", extra, "cost_vs_real_hcall_pct",
			 100.0 * extra / ((double)real_ns + ns_off), "assumed_real_hcall_ns",
			 (json_int_t)real_ns, "geo_mean_ratio_on_over_off", g,
			 "tracked_table_1", half[0], "tracked_table_0", half[1]);
}

static int bench_hcall_run(int argc, char **argv, json_t **result)
{
	int max_threads = 2;
	double seconds = 4.0;
	uint64_t drain_us = 1000, real_ns = REAL_HCALL_NS, ring = 0;
	bool pass_read = false;
	for (int i = 1; i < argc; i++) {
		uint64_t v;
		if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
			if (hm_parse_u64(argv[++i], 64, &v) || v == 0) {
				tool_fail("bench hcall", "--threads: expected 1..64, got '%s'", argv[i]);
				return 2;
			}
			max_threads = (int)v;
		} else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
			char *end;
			seconds = strtod(argv[++i], &end);
			if (*end || !(seconds >= 0.2 && seconds <= 600)) {
				tool_fail("bench hcall", "--seconds: expected 0.2..600, got '%s'", argv[i]);
				return 2;
			}
		} else if (strcmp(argv[i], "--drain-us") == 0 && i + 1 < argc) {
			if (hm_parse_u64(argv[++i], 1000000, &drain_us) || drain_us == 0) {
				tool_fail("bench hcall", "--drain-us: expected 1..1000000, got '%s'", argv[i]);
				return 2;
			}
		} else if (strcmp(argv[i], "--ring") == 0 && i + 1 < argc) {
			if (hm_parse_u64(argv[++i], UINT64_C(1) << 24, &ring)) {
				tool_fail("bench hcall", "--ring: expected 0..16777216, got '%s'", argv[i]);
				return 2;
			}
		} else if (strcmp(argv[i], "--hcall-ns") == 0 && i + 1 < argc) {
			if (hm_parse_u64(argv[++i], 1000000, &real_ns)) {
				tool_fail("bench hcall", "--hcall-ns: expected 0..1000000, got '%s'", argv[i]);
				return 2;
			}
		} else if (strcmp(argv[i], "--pass-read") == 0) {
			pass_read = true;
		} else {
			tool_fail("bench hcall",
				  "unknown option '%s' (--threads N, --seconds S, --drain-us N, --ring N, "
				  "--hcall-ns N, --pass-read)",
				  argv[i]);
			return 2;
		}
	}
	struct hc_ctx c;
	memset(&c, 0, sizeof(c));
	hm_error_t e;
	hm_error_clear(&e);
	hpt_config_t cfg;
	hpt_config_default(&cfg);
	if (ring)
		cfg.track_ring_entries = (unsigned)ring;
	for (int k = 0; k < 2; k++) {
		if (hpt_create(BENCH_SHIFT, &cfg, &c.h[k], &e)) {
			tool_fail_error("bench hcall", &e);
			hpt_destroy(c.h[0]);
			return 1;
		}
		/* Fault the table in first so no batch pays for page faults. */
		for (uint64_t s = 0; s < hpt_slots(c.h[k]); s += 256) {
			hpt_write_entry(c.h[k], s, 1, 0);
			hpt_write_entry(c.h[k], s, 0, 0);
		}
	}
	int configs[2] = {1, max_threads};
	int nconf = max_threads > 1 ? 2 : 1;
	json_t *arr = json_array();
	for (int ci = 0; ci < nconf; ci++) {
		json_t *r = hc_both_halves(&c, configs[ci], (uint64_t)(seconds * 1e9 / nconf / 2),
					   drain_us * 1000, real_ns, pass_read);
		if (!r) {
			tool_fail("bench hcall", "cannot start %d threads or tracking", configs[ci]);
			json_decref(arr);
			hpt_destroy(c.h[0]);
			hpt_destroy(c.h[1]);
			return 1;
		}
		json_array_append_new(arr, r);
	}
	hpt_destroy(c.h[0]);
	hpt_destroy(c.h[1]);
	*result = json_pack(
		"{s:s,s:i,s:f,s:s,s:s,s:I,s:b,s:s,s:o}", "bench", "hcall", "table_shift", BENCH_SHIFT,
		"seconds", seconds, "workload",
		"H_ENTER at a random PTEG + H_REMOVE (H_AVPN) of the slot it got", "tracking",
		pass_read ? "two identical tables, off and on; every drain_us the main thread runs a "
			    "later pass over the tracked one as the sender does (batch takes, then "
			    "hpt_read_entries per changed run; no sending); new_bit_fraction = bits "
			    "taken / enter+remove pairs; ring_miss_fraction = marks that bypassed the "
			    "vCPU's change log / marks"
			  : "two identical tables, off and on; the main thread takes every changed "
			    "slot of the tracked one every drain_us (the entries are not read); "
			    "new_bit_fraction = bits taken / enter+remove pairs; ring_miss_fraction "
			    "= marks that bypassed the vCPU's change log / marks",
		"drain_us", (json_int_t)drain_us, "pass_read", pass_read,
		"metric",
		"each thread alternates 64-pair batches between the tables; per run the median of the "
		"paired batch time ratios (on/off); two runs, each table tracked in one; headline "
		"tracking_cost_pct = geometric mean of the two medians - 1",
		"results", arr);
	return *result ? 0 : 1;
}

const struct hm_bench hm_bench_hcall = {
	.name = "hcall",
	.summary = "H_ENTER+H_REMOVE cost, change tracking off vs on, interleaved (1 and N threads)",
	.usage = "hptmig bench hcall [--threads N] [--seconds S] [--drain-us N] [--ring N]\n"
		 "                   [--hcall-ns N] [--pass-read] [--json]",
	.run = bench_hcall_run,
};
