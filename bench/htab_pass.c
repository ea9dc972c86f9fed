/* SPDX-License-Identifier: MIT */
/*
 * `hptmig bench htab-pass`: one complete later pass of the spapr/htab
 * section (find the changed entries, read them, encode chunks, write them to
 * /dev/null) on a big table (default 2 GiB, shift 31, 1/3 valid) with 0.01 %
 * and 1 % of slots changed: the bitmap scan against the linear scan
 * (QEMU's cost model, every slot read every pass), same changes, same run.
 * Both must send exactly the changed entries; it is checked.
 */
#include "hpt/hpt_inspect.h"
#include "htab_bench.h"

static const char usage[] =
	"hptmig bench htab-pass [--shift N (31)] [--valid-per-mille N (333)] [--reps N (3)] "
	"[--seed N]";

/* One full later pass with an unbounded budget: CPU ns, entries sent. */
static int one_pass(htab_save_t *s, mig_file_t *f, uint64_t *ns, uint64_t *sent)
{
	htab_save_stats_t a, b;
	htab_save_get_stats(s, &a);
	uint64_t t0 = hb_cpu_ns();
	int rc = htab_save_iterate(s, f, UINT64_MAX / 4);
	*ns = hb_cpu_ns() - t0;
	htab_save_get_stats(s, &b);
	*sent = (b.valid_sent - a.valid_sent) + (b.invalid_sent - a.invalid_sent);
	return rc == 1 ? 0 : -1;
}

/* Change n distinct-ish random slots (toggle R's C bit of valid ones, enter
 * at invalid ones): each marks its slot once. Returns the slots changed. */
static uint64_t change(hpt_t *t, uint64_t n, uint64_t seed)
{
	uint64_t slots = hpt_slots(t);
	for (uint64_t i = 0; i < n; i++) {
		uint64_t s = hb_rand(&seed) % slots, v, r;
		hpt_read_entry(t, s, &v, &r);
		if (v & HPTE64_V_VALID)
			hpt_write_entry(t, s, v, r ^ HPTE64_R_C);
		else
			hpt_write_entry(t, s, UINT64_C(0x4000000000001f95), 0x1190);
	}
	return hpt_track_pending(t);
}

static int run(int argc, char **argv, json_t **result)
{
	uint64_t shift = 31, pm = 333, reps = 3, seed = 42;
	const struct hb_opt o[] = { { "--shift", &shift, 36 }, { "--valid-per-mille", &pm, 1000 },
				    { "--reps", &reps, 50 }, { "--seed", &seed, UINT64_MAX },
				    { NULL, NULL, 0 } };
	int prc = hb_parse("htab-pass", argc, argv, o, usage);
	if (prc)
		return prc == 1 ? 0 : prc;
	if (shift < 18 || reps == 0) {
		tool_fail("htab-pass", "--shift must be 18..36 and --reps >= 1");
		return 2;
	}
	hpt_t *t;
	hm_error_t e;
	hm_error_clear(&e);
	if (hpt_create((unsigned)shift, NULL, &t, &e) != 0) {
		tool_fail_error("htab-pass", &e);
		return 1;
	}
	uint64_t valid = hb_fill(t, pm, &seed);
	static const double fractions[] = { 0.0001, 0.01 };
	enum { NF = 2 };
	uint64_t tm[2][NF][50], sent[2][NF];
	int rc = 0;
	/* Per method: one first pass and a clean sweep (not measured), then for
	 * each fraction and rep the same seeded changes and one measured pass. */
	for (int m = 0; m < 2 && rc == 0; m++) {
		htab_save_opts_t so;
		htab_save_opts_default(&so);
		so.scan = m ? HTAB_SCAN_LINEAR : HTAB_SCAN_BITMAP;
		htab_save_t *s = NULL;
		mig_file_t *f = hb_null_writer();
		if (!f || htab_save_create(t, &so, &s, &e) != 0 || htab_save_setup(s, f) != 0) {
			tool_fail("htab-pass", "setup failed: %s", e.msg);
			mig_file_close(f, NULL);
			htab_save_destroy(s);
			rc = 1;
			break;
		}
		while (htab_save_iterate(s, f, UINT64_MAX / 4) == 0)
			;
		for (int fi = 0; fi < NF && rc == 0; fi++) {
			uint64_t nchange = (uint64_t)((double)hpt_slots(t) * fractions[fi]);
			for (uint64_t r = 0; r < reps && rc == 0; r++) {
				uint64_t marked = change(t, nchange, seed + (uint64_t)fi * 1000 + r);
				rc = one_pass(s, f, &tm[m][fi][r], &sent[m][fi]);
				if (rc == 0 && sent[m][fi] != marked) {
					tool_fail("htab-pass", "%s pass sent %llu entries, %llu changed",
						  htab_scan_name(so.scan), (unsigned long long)sent[m][fi],
						  (unsigned long long)marked);
					rc = 1;
				}
			}
		}
		if (mig_file_close(f, &e) != 0 && rc == 0) {
			tool_fail_error("htab-pass", &e);
			rc = 1;
		}
		htab_save_destroy(s);
	}
	json_t *rows = json_array();
	for (int fi = 0; fi < NF && rc == 0; fi++) {
		uint64_t mb = hb_median(tm[0][fi], (int)reps), ml = hb_median(tm[1][fi], (int)reps);
		json_array_append_new(
			rows, json_pack("{s:f, s:I, s:I, s:f, s:f, s:f}", "changed_fraction",
					fractions[fi], "bitmap_sent", (json_int_t)sent[0][fi],
					"linear_sent", (json_int_t)sent[1][fi], "bitmap_ms",
					(double)mb / 1e6, "linear_ms", (double)ml / 1e6,
					"ratio_linear_over_bitmap", mb ? (double)ml / (double)mb : 0.0));
	}
	if (rc == 0)
		*result = json_pack("{s:s, s:I, s:I, s:I, s:I, s:s, s:o}", "bench", "htab-pass", "shift",
				    (json_int_t)shift, "slots", (json_int_t)hpt_slots(t), "valid",
				    (json_int_t)valid, "reps", (json_int_t)reps, "time",
				    "thread CPU time, median of reps, one full later pass to /dev/null",
				    "results", rows);
	else
		json_decref(rows);
	hpt_destroy(t);
	return rc;
}

const struct hm_bench hm_bench_htab_pass = {
	.name = "htab-pass",
	.summary = "spapr/htab later pass, bitmap vs linear scan (0.01% and 1% changed)",
	.usage = usage,
	.run = run,
};
