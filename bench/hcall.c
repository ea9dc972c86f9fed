/* SPDX-License-Identifier: MIT */
/*
 * `hptmig bench hcall`: the cost of change tracking on the vCPU hot path.
 * H_ENTER + H_REMOVE pairs from 1 and N threads, tracking off vs on in
 * alternating short rounds within one run, reported as a ratio. With
 * tracking on, every round starts a fresh bitmap (stop + start) on a table
 * big enough that most marks set a new bit; the fraction is measured and
 * reported, so the benchmark never measures ORs on already-set bits only.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hptmig/hpt.h"
#include "tool.h"

#define BENCH_SHIFT 26 /* 64 MiB table, 4M slots: a 16 GiB-ish guest's table is 128 MiB */

struct hc_ctx {
	hpt_t *h;
	_Atomic int go, stop;
	_Atomic uint64_t ops, changes;
	_Atomic uint64_t cpu_ns; /* sum of the workers' thread CPU time */
};

static uint64_t thread_cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * UINT64_C(1000000000) + (uint64_t)ts.tv_nsec;
}

struct hc_thread {
	struct hc_ctx *c;
	uint64_t seed;
	pthread_t th;
};

static uint64_t hc_rand(uint64_t *s)
{
	uint64_t z = (*s += UINT64_C(0x9E3779B97F4A7C15));
	z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
	return z ^ (z >> 31);
}

static void *hc_worker(void *arg)
{
	struct hc_thread *t = arg;
	struct hc_ctx *c = t->c;
	uint64_t rs = t->seed, ops = 0, changes = 0, slots = hpt_slots(c->h);
	while (!atomic_load_explicit(&c->go, memory_order_acquire))
		;
	uint64_t cpu0 = thread_cpu_ns();
	while (!atomic_load_explicit(&c->stop, memory_order_relaxed)) {
		/* A batch between checks of the stop flag. */
		for (int i = 0; i < 256; i++) {
			uint64_t x = hc_rand(&rs);
			uint64_t ptex = x % slots, slot;
			uint64_t v = ((x >> 20) << 7 & HPTE64_V_AVPN) | HPTE64_V_VALID;
			uint64_t r = ((x & 0xfffff) << 12) | HPTE64_R_M;
			if (hpt_h_enter(c->h, 0, ptex, v, r, &slot) == H_SUCCESS) {
				ops++;
				changes++;
				if (hpt_h_remove(c->h, H_AVPN, slot, v & HPTE64_V_COMPARE_MASK, NULL, NULL) ==
				    H_SUCCESS)
					changes++;
				ops++;
			} else {
				ops++;
			}
		}
	}
	atomic_fetch_add(&c->cpu_ns, thread_cpu_ns() - cpu0);
	atomic_fetch_add(&c->ops, ops);
	atomic_fetch_add(&c->changes, changes);
	return NULL;
}

/* One round: nthreads workers for round_ns. Returns ops; *new_frac set when tracking. */
static int hc_round(hpt_t *h, int nthreads, bool track, uint64_t round_ns, uint64_t seed,
		    uint64_t *ops, double *secs, double *cpu_secs, double *new_frac)
{
	struct hc_ctx c;
	struct hc_thread th[64];
	memset(&c, 0, sizeof(c));
	c.h = h;
	if (track) {
		hm_error_t e;
		hm_error_clear(&e);
		if (hpt_track_start(h, &e))
			return -1;
	}
	for (int i = 0; i < nthreads; i++) {
		th[i].c = &c;
		th[i].seed = seed * 977 + (uint64_t)i;
		if (pthread_create(&th[i].th, NULL, hc_worker, &th[i]))
			return -1;
	}
	uint64_t t0 = hm_now_ns();
	atomic_store_explicit(&c.go, 1, memory_order_release);
	hm_sleep_ns(round_ns);
	atomic_store(&c.stop, 1);
	for (int i = 0; i < nthreads; i++)
		pthread_join(th[i].th, NULL);
	*secs = (double)(hm_now_ns() - t0) / 1e9;
	*ops = atomic_load(&c.ops);
	*cpu_secs = (double)atomic_load(&c.cpu_ns) / 1e9;
	if (track) {
		/* Each enter+remove pair marks one slot twice: the second OR finds
		 * the bit set, as it would in any real migration. New bits / pairs. */
		uint64_t pairs = atomic_load(&c.changes) / 2;
		*new_frac = pairs ? (double)hpt_track_pending(h) / (double)pairs : 0;
		hpt_track_stop(h);
	}
	return 0;
}

static int bench_hcall_run(int argc, char **argv, json_t **result)
{
	int max_threads = 2, rounds = 10;
	double seconds = 4.0;
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
			if (*end || !(seconds > 0.05 && seconds <= 600)) {
				tool_fail("bench hcall", "--seconds: expected 0.05..600, got '%s'", argv[i]);
				return 2;
			}
		} else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc) {
			if (hm_parse_u64(argv[++i], 1000, &v) || v == 0) {
				tool_fail("bench hcall", "--rounds: expected 1..1000, got '%s'", argv[i]);
				return 2;
			}
			rounds = (int)v;
		} else {
			tool_fail("bench hcall", "unknown option '%s' (--threads N, --seconds S, --rounds R)",
				  argv[i]);
			return 2;
		}
	}
	hpt_t *h;
	hm_error_t e;
	hm_error_clear(&e);
	if (hpt_create(BENCH_SHIFT, NULL, &h, &e)) {
		tool_fail_error("bench hcall", &e);
		return 1;
	}
	/* Fault the table in first so no round pays for page faults. */
	for (uint64_t s = 0; s < hpt_slots(h); s += 256) {
		hpt_write_entry(h, s, 1, 0);
		hpt_write_entry(h, s, 0, 0);
	}
	int configs[2] = {1, max_threads};
	int nconf = max_threads > 1 ? 2 : 1;
	uint64_t round_ns = (uint64_t)(seconds * 1e9 / (nconf * rounds * 2));
	json_t *arr = json_array();
	double *pair = calloc((size_t)rounds, sizeof(double));
	for (int ci = 0; ci < nconf && pair; ci++) {
		int nt = configs[ci];
		uint64_t ops[2] = {0, 0};
		double secs[2] = {0, 0}, cpu[2] = {0, 0}, frac_sum = 0;
		json_t *rr = json_array();
		for (int r = 0; r < rounds; r++) {
			double per_cpu[2] = {0, 0};
			/* Alternate which mode goes first so drift cancels. */
			for (int k = 0; k < 2; k++) {
				int mode = (r & 1) ? 1 - k : k; /* 0 off, 1 on */
				uint64_t o;
				double s, cs, f = 0;
				if (hc_round(h, nt, mode == 1, round_ns, (uint64_t)(r * 2 + k + 1), &o, &s, &cs,
					     &f)) {
					tool_fail("bench hcall", "cannot start threads or tracking");
					json_decref(arr);
					json_decref(rr);
					hpt_destroy(h);
					free(pair);
					return 1;
				}
				ops[mode] += o;
				secs[mode] += s;
				cpu[mode] += cs;
				per_cpu[mode] = cs > 0 ? (double)o / cs : 0;
				if (mode == 1)
					frac_sum += f;
			}
			pair[r] = per_cpu[0] > 0 ? per_cpu[1] / per_cpu[0] : 0;
			json_array_append_new(rr, json_pack("{s:f,s:f,s:f}", "off_mops_per_cpu_s",
							    per_cpu[0] / 1e6, "on_mops_per_cpu_s",
							    per_cpu[1] / 1e6, "ratio", pair[r]));
		}
		/* Headline: median of the per-round on/off ratios of ops per CPU
		 * second (robust to other load on a shared machine). */
		double *sorted = malloc((size_t)rounds * sizeof(double));
		if (sorted) {
			memcpy(sorted, pair, (size_t)rounds * sizeof(double));
			for (int i = 1; i < rounds; i++)
				for (int j = i; j > 0 && sorted[j - 1] > sorted[j]; j--) {
					double t = sorted[j];
					sorted[j] = sorted[j - 1];
					sorted[j - 1] = t;
				}
		}
		double med = !sorted ? 0
			     : (rounds & 1) ? sorted[rounds / 2]
					    : (sorted[rounds / 2 - 1] + sorted[rounds / 2]) / 2;
		free(sorted);
		double off_w = (double)ops[0] / secs[0], on_w = (double)ops[1] / secs[1];
		double off_c = (double)ops[0] / cpu[0], on_c = (double)ops[1] / cpu[1];
		json_array_append_new(
			arr, json_pack("{s:i,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:o}", "threads", nt,
				       "off_mops_per_cpu_s", off_c / 1e6, "on_mops_per_cpu_s", on_c / 1e6,
				       "median_ratio_on_over_off", med, "tracking_cost_pct",
				       (med > 0 ? 1.0 / med - 1.0 : 0) * 100.0, "off_mops_per_s_wall",
				       off_w / 1e6, "on_mops_per_s_wall", on_w / 1e6, "wall_ratio_on_over_off",
				       on_w / off_w, "new_bit_fraction", frac_sum / rounds, "rounds", rr));
	}
	free(pair);
	hpt_destroy(h);
	*result = json_pack("{s:s,s:i,s:i,s:f,s:s,s:s,s:s,s:o}", "bench", "hcall", "table_shift",
			    BENCH_SHIFT, "rounds", rounds, "seconds", seconds, "workload",
			    "H_ENTER at a random PTEG + H_REMOVE (H_AVPN) of the slot it got",
			    "tracking",
			    "fresh bitmap per round (stop+start), no reader thread; new_bit_fraction = "
			    "new bits set / enter+remove pairs",
			    "metric", "ops per thread-CPU second; headline = median of per-round on/off ratios",
			    "results", arr);
	return *result ? 0 : 1;
}

const struct hm_bench hm_bench_hcall = {
	.name = "hcall",
	.summary = "H_ENTER+H_REMOVE throughput, change tracking off vs on (1 and N threads)",
	.run = bench_hcall_run,
};
