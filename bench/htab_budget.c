/* SPDX-License-Identifier: MIT */
/*
 * `hptmig bench htab-budget`: the worst single iterate call of the
 * spapr/htab section against its time budget (default 5 ms) on a clean
 * table (default 2 GiB, shift 31, 1/3 valid, nothing changing): the whole
 * first pass, then later passes (--sweeps full sweeps), with the bitmap and
 * the linear scan. Reports, per method and phase, the worst call in wall
 * time (what the budget bounds) and in thread CPU time (immune to the
 * shared machine's preemption), medians, over the budget as a ratio, and
 * the calls. On an oversubscribed machine the wall figures include the time
 * the thread waited for a CPU inside its last unit of work.
 */
#include "htab_bench.h"

static const char usage[] =
	"hptmig bench htab-budget [--shift N (31)] [--valid-per-mille N (333)] "
	"[--budget-us N (5000)] [--sweeps N (2)] [--seed N]";

#define MAX_CALLS 100000

struct phase {
	uint64_t calls, worst_wall, worst_cpu, over, total_wall;
	uint64_t wall[MAX_CALLS], cpu[MAX_CALLS];
};

static json_t *phase_json(struct phase *p, uint64_t budget)
{
	int n = (int)(p->calls < MAX_CALLS ? p->calls : MAX_CALLS);
	double mw = n ? (double)hb_median(p->wall, n) / 1e6 : 0.0;
	double mc = n ? (double)hb_median(p->cpu, n) / 1e6 : 0.0;
	return json_pack("{s:I, s:f, s:f, s:f, s:f, s:f, s:I, s:f}", "calls", (json_int_t)p->calls,
			 "median_wall_ms", mw, "median_cpu_ms", mc,
			 "worst_wall_ms", (double)p->worst_wall / 1e6, "worst_cpu_ms",
			 (double)p->worst_cpu / 1e6, "worst_wall_over_budget",
			 (double)p->worst_wall / (double)budget, "calls_over_budget",
			 (json_int_t)p->over, "total_ms", (double)p->total_wall / 1e6);
}

static int run(int argc, char **argv, json_t **result)
{
	uint64_t shift = 31, pm = 333, budget_us = 5000, sweeps = 2, seed = 11;
	const struct hb_opt o[] = { { "--shift", &shift, 36 }, { "--valid-per-mille", &pm, 1000 },
				    { "--budget-us", &budget_us, 10000000 }, { "--sweeps", &sweeps, 100 },
				    { "--seed", &seed, UINT64_MAX }, { NULL, NULL, 0 } };
	int prc = hb_parse("htab-budget", argc, argv, o, usage);
	if (prc)
		return prc == 1 ? 0 : prc;
	if (shift < 18 || budget_us == 0 || sweeps == 0) {
		tool_fail("htab-budget", "--shift must be 18..36, --budget-us and --sweeps >= 1");
		return 2;
	}
	uint64_t budget = budget_us * 1000;
	hpt_t *t;
	hm_error_t e;
	hm_error_clear(&e);
	if (hpt_create((unsigned)shift, NULL, &t, &e) != 0) {
		tool_fail_error("htab-budget", &e);
		return 1;
	}
	uint64_t valid = hb_fill(t, pm, &seed);
	json_t *methods = json_object();
	int rc = 0;
	for (int m = 0; m < 2 && rc == 0; m++) {
		htab_save_opts_t so;
		htab_save_opts_default(&so);
		so.scan = m ? HTAB_SCAN_LINEAR : HTAB_SCAN_BITMAP;
		so.budget_ns = budget;
		htab_save_t *s = NULL;
		mig_file_t *f = hb_null_writer();
		if (!f || htab_save_create(t, &so, &s, &e) != 0 || htab_save_setup(s, f) != 0) {
			tool_fail("htab-budget", "setup failed: %s", e.msg);
			mig_file_close(f, NULL);
			htab_save_destroy(s);
			rc = 1;
			break;
		}
		static struct phase ph[2];
		memset(ph, 0, sizeof(ph));
		htab_save_stats_t st;
		for (;;) {
			htab_save_get_stats(s, &st);
			if (st.passes >= sweeps)
				break;
			struct phase *p = &ph[st.first_pass_done ? 1 : 0];
			uint64_t w0 = hm_now_ns(), c0 = hb_cpu_ns();
			int r = htab_save_iterate(s, f, 0);
			uint64_t dw = hm_now_ns() - w0, dc = hb_cpu_ns() - c0;
			if (r < 0) {
				tool_fail("htab-budget", "iterate failed: %s", hm_err_name(r));
				rc = 1;
				break;
			}
			if (p->calls < MAX_CALLS) {
				p->wall[p->calls] = dw;
				p->cpu[p->calls] = dc;
			}
			p->calls++;
			p->total_wall += dw;
			p->over += dw > budget;
			if (dw > p->worst_wall)
				p->worst_wall = dw;
			if (dc > p->worst_cpu)
				p->worst_cpu = dc;
		}
		mig_file_close(f, NULL);
		htab_save_destroy(s);
		if (rc == 0)
			json_object_set_new(methods, htab_scan_name(so.scan),
					    json_pack("{s:o, s:o}", "first_pass", phase_json(&ph[0], budget),
						      "later_passes", phase_json(&ph[1], budget)));
	}
	if (rc == 0)
		*result = json_pack("{s:s, s:I, s:I, s:I, s:f, s:I, s:o}", "bench", "htab-budget",
				    "shift", (json_int_t)shift, "slots", (json_int_t)hpt_slots(t),
				    "valid", (json_int_t)valid, "budget_ms", (double)budget / 1e6,
				    "sweeps", (json_int_t)sweeps, "methods", methods);
	else
		json_decref(methods);
	hpt_destroy(t);
	return rc;
}

const struct hm_bench hm_bench_htab_budget = {
	.name = "htab-budget",
	.summary = "worst spapr/htab iterate call vs its 5 ms budget on a clean 2 GiB table",
	.usage = usage,
	.run = run,
};
