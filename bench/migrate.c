/* SPDX-License-Identifier: MIT */
/*
 * `hptmig bench migrate [--sizes 4G,64G,256G] [--rates 1000,20000]
 * [--vcpus N] [--downtime-limit MS] [--max-bandwidth RATE] [--loaded] [--json]`:
 * live migrations of simulated `linux` guests over a unix socket on
 * loopback, our controller (bitmap scan, the table's pending counted in the
 * stop decision, measured fixed cost) side by side with QEMU's
 * behaviour (linear scan, the table's pending counted as zero: it stops as
 * soon as the first pass is out), on the same guest in the same run.
 * Reports downtime (stop to the destination's "resumed" message), total
 * time, passes and final-pass entries, and the seed/ours ratios ("seed", a JSON key kept: QEMU's side).
 * --loaded: two busy-loop neighbour threads run for the whole benchmark,
 * placed like the guest's vCPU threads (not pinned: the scheduler places
 * both), so the guest, the migration threads and the neighbours share the
 * cores (on a 2-core machine: every core has a neighbour).
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hptmig/machine.h"
#include "hptmig/migration.h"
#include "tool.h"

struct bdest {
	mig_listener_t *l;
	mig_dest_params_t p;
	mig_dest_report_t rep;
	hm_error_t err;
	int rc;
};

static void *bdest_main(void *arg)
{
	struct bdest *d = arg;
	d->rc = mig_dest_run(d->l, &d->p, &d->rep, &d->err);
	return NULL;
}

/* One migration of m to a fresh destination thread; m is resumed after. */
static int one(machine_t *m, const char *uri, const mig_params_t *p, mig_report_t *rep,
	       mig_dest_report_t *drep, hm_error_t *e)
{
	struct bdest d;
	mig_uri_t u;
	pthread_t t;
	memset(&d, 0, sizeof(d));
	if (mig_uri_parse(uri, &u, e) != 0 || mig_listen(&u, &d.l, e) != 0)
		return -1;
	mig_dest_params_default(&d.p);
	d.p.ram_bytes = machine_config(m)->ram_bytes; /* the destination's -m: its table cap */
	d.p.accept_timeout_ms = 60000;
	d.p.guest.vcpus = 1;
	d.p.guest.rate = 1000;
	if (pthread_create(&t, NULL, bdest_main, &d) != 0) {
		mig_listener_close(d.l);
		return -1;
	}
	int rc = mig_source_run(m, uri, p, rep, e);
	pthread_join(t, NULL);
	mig_listener_close(d.l);
	*drep = d.rep;
	if (rc == 0 && d.rc != 0) {
		*e = d.err;
		rc = d.rc;
	}
	if (rc == 0 && (!rep->has_root || !d.rep.has_root ||
			memcmp(rep->root, d.rep.root, 32) != 0)) {
		hm_error_set(e, HM_E_DIGEST, -1, "roots differ");
		rc = HM_E_DIGEST;
	}
	machine_resume(m); /* the same guest goes on for the next run */
	return rc;
}

static json_t *side(const mig_report_t *r, const mig_dest_report_t *d, uint64_t limit_ns)
{
	json_t *o = json_object();
	json_object_set_new(o, "downtime_ms", json_real((double)r->downtime_ns / 1e6));
	json_object_set_new(o, "total_time_ms", json_real((double)r->total_ns / 1e6));
	json_object_set_new(o, "within_limit", json_boolean(r->downtime_ns <= limit_ns));
	json_object_set_new(o, "expected_downtime_ms",
			    json_real((double)r->expected_downtime_ns / 1e6));
	json_object_set_new(o, "iterations", json_integer(r->iterations));
	json_object_set_new(o, "final_pass_entries", json_integer((json_int_t)r->final_entries));
	json_object_set_new(o, "entries_sent",
			    json_integer((json_int_t)(r->htab.valid_sent + r->htab.invalid_sent)));
	json_object_set_new(o, "bytes_total", json_integer((json_int_t)r->bytes_total));
	json_object_set_new(o, "bandwidth_mib_s", json_real((double)r->bandwidth / 1048576.0));
	json_object_set_new(o, "stop_reason", json_string(r->stop_reason));
	json_object_set_new(o, "valid", json_integer((json_int_t)d->htab_valid));
	/* the stop's verification: the blocks changed since hashed (both
	 * sides) and what it cost */
	json_object_set_new(o, "verify_expected_ms", json_real((double)r->verify_expected_ns / 1e6));
	json_object_set_new(o, "verify_stop_ms", json_real((double)r->verify_stop_ns / 1e6));
	json_object_set_new(o, "verify_blocks_at_stop",
			    json_integer((json_int_t)r->verify_blocks_at_stop));
	json_object_set_new(o, "verify_blocks", json_integer((json_int_t)r->verify_blocks));
	json_object_set_new(o, "dest_root_blocks_at_end",
			    json_integer((json_int_t)d->root_blocks_at_end));
	json_object_set_new(o, "dest_root_end_ms", json_real((double)d->root_end_ns / 1e6));
	json_object_set_new(o, "fixed_downtime_ms", json_real((double)r->fixed_downtime_ns / 1e6));
	/* where the downtime went: stop -> vCPUs paused -> final pass
	 * flushed -> (the source's re-hash and root: verify_stop_ms) -> the
	 * stream's tail flushed -> the destination's RESUMED; and the
	 * catch-up before the stop */
	json_object_set_new(o, "pause_ms", json_real((double)r->pause_ns / 1e6));
	json_object_set_new(o, "final_pass_ms", json_real((double)r->final_pass_ns / 1e6));
	json_object_set_new(o, "complete_ms", json_real((double)r->complete_ns / 1e6));
	json_object_set_new(o, "resumed_wait_ms",
			    json_real(r->downtime_ns > r->complete_ns
					      ? (double)(r->downtime_ns - r->complete_ns) / 1e6
					      : 0));
	json_object_set_new(o, "verify_blocks_at_decision",
			    json_integer((json_int_t)r->verify_blocks_at_decision));
	json_object_set_new(o, "catchup_rounds", json_integer(r->catchup_rounds));
	json_object_set_new(o, "catchup_ms", json_real((double)r->catchup_ns / 1e6));
	json_object_set_new(o, "catchup_dest_caught_up", json_integer(r->catchup_dest_caught_up));
	json_object_set_new(o, "catchup_dest_wait_ms",
			    json_real((double)r->catchup_dest_wait_ns / 1e6));
	return o;
}

/*
 * --loaded: neighbours that keep the cores busy, a tight loop of integer
 * work each, until told to stop (checked every 2^20 iterations).
 */
struct neighbours {
	_Atomic int stop;
	pthread_t t[2];
	int n;
};

static void *neighbour(void *arg)
{
	struct neighbours *nb = arg;
	volatile uint64_t x = 1;
	while (!atomic_load_explicit(&nb->stop, memory_order_relaxed))
		for (unsigned i = 0; i < (1u << 20); i++)
			x = x * 6364136223846793005ull + 1442695040888963407ull;
	return NULL;
}

static void neighbours_start(struct neighbours *nb, int n)
{
	atomic_store(&nb->stop, 0);
	nb->n = 0;
	for (int i = 0; i < n && i < 2; i++)
		if (pthread_create(&nb->t[i], NULL, neighbour, nb) == 0)
			nb->n++;
}

static void neighbours_stop(struct neighbours *nb)
{
	atomic_store(&nb->stop, 1);
	for (int i = 0; i < nb->n; i++)
		pthread_join(nb->t[i], NULL);
	nb->n = 0;
}

static int split_list(const char *s, uint64_t *out, int max, bool sizes)
{
	char buf[256];
	int n = 0;
	snprintf(buf, sizeof(buf), "%s", s);
	for (char *tok = strtok(buf, ","); tok && n < max; tok = strtok(NULL, ",")) {
		if (sizes ? hm_parse_size(tok, &out[n]) != 0 : hm_parse_u64(tok, 1000000000, &out[n]) != 0)
			return -1;
		n++;
	}
	return n;
}

/*
 * One row: the guest m at rate hypercalls/s per vCPU migrated with QEMU's
 * scan and stop rule, then with ours (that order: neither gets a warmer
 * table); appends the row to runs.
 */
static int compare_at_rate(machine_t *m, const char *uri, const mig_params_t *base,
			   unsigned vcpus, uint64_t ram, uint64_t rate, double boot_ms,
			   json_t *runs, hm_error_t *e)
{
	machine_set_rate(m, rate);
	hm_sleep_ns(200000000ull); /* let the new rate dirty the table */
	mig_params_t ours = *base, seed = *base;
	ours.policy = mig_policy_default;
	ours.scan = HTAB_SCAN_BITMAP;
	seed.policy = mig_policy_qemu_stop_rule;
	seed.stop_catchup = false; /* QEMU stops when its rule says so */
	seed.scan = HTAB_SCAN_LINEAR;
	mig_report_t ro, rs;
	mig_dest_report_t dro, drs;
	if (one(m, uri, &seed, &rs, &drs, e) != 0 || one(m, uri, &ours, &ro, &dro, e) != 0)
		return -1;
	json_t *run = json_object();
	json_object_set_new(run, "ram", json_integer((json_int_t)ram));
	json_object_set_new(run, "htab_shift", json_integer(ro.htab_shift));
	json_object_set_new(run, "vcpus", json_integer(vcpus));
	json_object_set_new(run, "rate_per_vcpu", json_integer((json_int_t)rate));
	json_object_set_new(run, "boot_ms", json_real(boot_ms));
	json_object_set_new(run, "ours", side(&ro, &dro, base->downtime_limit_ns));
	json_object_set_new(run, "seed", side(&rs, &drs, base->downtime_limit_ns));
	json_object_set_new(run, "downtime_ratio_seed_over_ours",
			    json_real(ro.downtime_ns ? (double)rs.downtime_ns / (double)ro.downtime_ns : 0));
	json_object_set_new(run, "total_ratio_seed_over_ours",
			    json_real(ro.total_ns ? (double)rs.total_ns / (double)ro.total_ns : 0));
	json_array_append_new(runs, run);
	fprintf(stderr, "bench migrate: %llu GiB, %llu hcalls/s/vCPU: downtime ours %.1f ms, "
		"seed %.1f ms (limit %.0f)\n",
		(unsigned long long)(ram >> 30), (unsigned long long)rate,
		(double)ro.downtime_ns / 1e6, (double)rs.downtime_ns / 1e6,
		(double)base->downtime_limit_ns / 1e6);
	return 0;
}

static int bench_migrate_run(int argc, char **argv, json_t **result)
{
	uint64_t sizes[8], rates[8];
	int nsizes = split_list("4G,64G,256G", sizes, 8, true);
	int nrates = split_list("1000,20000", rates, 8, false);
	unsigned vcpus = 2;
	bool loaded = false;
	mig_params_t base;
	mig_params_default(&base);
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		uint64_t x;
		if (strcmp(a, "--sizes") == 0 && v) {
			nsizes = split_list(v, sizes, 8, true);
			i++;
		} else if (strcmp(a, "--rates") == 0 && v) {
			nrates = split_list(v, rates, 8, false);
			i++;
		} else if (strcmp(a, "--vcpus") == 0 && v && hm_parse_u64(v, 64, &x) == 0 && x) {
			vcpus = (unsigned)x;
			i++;
		} else if (strcmp(a, "--downtime-limit") == 0 && v && hm_parse_u64(v, 100000, &x) == 0) {
			base.downtime_limit_ns = x * 1000000u;
			i++;
		} else if (strcmp(a, "--max-bandwidth") == 0 && v && hm_parse_size(v, &x) == 0) {
			base.max_bandwidth = x;
			i++;
		} else if (strcmp(a, "--loaded") == 0) {
			loaded = true;
		} else {
			tool_fail("bench migrate", "bad option '%s' (--sizes L --rates L --vcpus N "
				  "--downtime-limit MS --max-bandwidth RATE --loaded)", a);
			return 2;
		}
	}
	if (nsizes <= 0 || nrates <= 0) {
		tool_fail("bench migrate", "bad --sizes or --rates list");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	char dir[] = "/tmp/hptmig-bench-XXXXXX";
	if (!mkdtemp(dir)) {
		tool_fail("bench migrate", "cannot create a temporary directory");
		return 1;
	}
	char uri[128];
	snprintf(uri, sizeof(uri), "unix:%s/m.sock", dir);
	json_t *runs = json_array();
	int rc = 0;
	struct neighbours nb = {0};
	neighbours_start(&nb, loaded ? 2 : 0);
	for (int si = 0; si < nsizes && rc == 0; si++) {
		machine_config_t c;
		machine_config_default(&c);
		c.ram_bytes = sizes[si];
		c.vcpus = vcpus;
		c.workload = MACHINE_WL_LINUX;
		c.rate = rates[0];
		c.seed = 42;
		machine_t *m = NULL;
		hm_error_t e;
		hm_error_clear(&e);
		uint64_t b0 = hm_now_ns();
		if (machine_create(&c, &m, &e) != 0 || machine_start(m, &e) != 0) {
			tool_fail_error("bench migrate", &e);
			machine_destroy(m);
			rc = 1;
			break;
		}
		double boot_ms = (double)(hm_now_ns() - b0) / 1e6;
		for (int ri = 0; ri < nrates && rc == 0; ri++) {
			if (compare_at_rate(m, uri, &base, vcpus, sizes[si], rates[ri], boot_ms, runs,
					    &e) != 0) {
				tool_fail_error("bench migrate", &e);
				rc = 1;
			}
		}
		machine_destroy(m);
	}
	neighbours_stop(&nb); /* none to stop without --loaded */
	rmdir(dir);
	if (rc) {
		json_decref(runs);
		return rc;
	}
	json_t *o = json_object();
	json_object_set_new(o, "benchmark", json_string("migrate"));
	json_object_set_new(o, "transport", json_string("unix loopback"));
	json_object_set_new(o, "workload", json_string("linux"));
	json_object_set_new(o, "downtime_limit_ms", json_real((double)base.downtime_limit_ns / 1e6));
	json_object_set_new(o, "max_bandwidth", json_integer((json_int_t)base.max_bandwidth));
	json_object_set_new(o, "loaded", json_boolean(loaded));
	json_object_set_new(o, "neighbour_threads", json_integer(loaded ? 2 : 0));
	json_object_set_new(o, "ours", json_string("bitmap scan, table pending counted, measured fixed cost"));
	json_object_set_new(o, "seed", json_string("linear scan, table pending counted as zero"));
	json_object_set_new(o, "runs", runs);
	*result = o;
	return 0;
}

const struct hm_bench hm_bench_migrate = {
	.name = "migrate",
	.summary = "live migration downtime/total: our controller vs QEMU's stop rule and scan, linux guests 4G..256G (--loaded: two busy neighbour threads)",
	.usage = "hptmig bench migrate [--sizes 4G,64G,256G] [--rates 1000,20000] [--vcpus N]\n"
		 "                     [--downtime-limit MS] [--max-bandwidth RATE] [--loaded] [--json]",
	.run = bench_migrate_run,
};
