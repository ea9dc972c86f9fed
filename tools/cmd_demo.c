/* SPDX-License-Identifier: MIT */
/*
 * `hptmig demo`: a whole live migration in one command: a simulated source
 * guest and a destination (a thread of this process) over a unix socket or
 * tcp loopback, with the source's and the destination's reports and a
 * verdict (digests equal, downtime against the limit).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mig_common.h"
#include "tool.h"

struct dest_thread {
	mig_listener_t *l;
	mig_dest_params_t p;
	mig_dest_report_t rep;
	hm_error_t err;
	int rc;
	struct mig_cli_run run; /* --run: the destination guest keeps running */
};

static void *dest_main(void *arg)
{
	struct dest_thread *d = arg;
	d->rc = mig_dest_run(d->l, &d->p, &d->rep, &d->err);
	return NULL;
}

/*
 * What the demo says at the end: JSON (both reports, the verdict) or the
 * human lines, and the one stderr line of a failure. Returns the exit code.
 */
static int demo_report(const struct mig_cli *cli, int src_rc, const mig_report_t *rep,
		       const hm_error_t *e, machine_t *m, const char *uri,
		       const struct dest_thread *d)
{
	/* The roots (what the stream verifies); the digests too when the
	 * destination computed one (--qemu-pure streams, --digest). */
	bool equal = src_rc == 0 && d->rc == 0 &&
		     (rep->has_root && d->rep.has_root
			      ? memcmp(rep->root, d->rep.root, HM_SHA256_LEN) == 0
			      : d->rep.has_digest) &&
		     (!d->rep.has_digest || memcmp(rep->digest, d->rep.digest, HM_SHA256_LEN) == 0);
	if (cli->json) {
		json_t *o = json_object();
		json_object_set_new(o, "status", json_string(equal ? "ok"
								 : src_rc == HM_E_CANCELLED ||
									   d->rc == HM_E_CANCELLED
								 ? "cancelled"
								 : "failed"));
		if (!equal) {
			/* what the stderr line says */
			hm_error_t de;
			hm_error_clear(&de);
			if (src_rc == 0 && d->rc == 0)
				hm_error_set(&de, HM_E_DIGEST, -1,
					     "roots or digests differ between source and destination");
			mig_json_error(o, src_rc ? src_rc : d->rc ? d->rc : HM_E_DIGEST,
				       src_rc ? e : d->rc ? &d->err : &de);
		}
		json_object_set_new(o, "uri", json_string(uri));
		json_object_set_new(o, "digests_equal", json_boolean(equal));
		json_object_set_new(o, "downtime_within_limit",
				    json_boolean(rep->downtime_ns <= cli->params.downtime_limit_ns));
		json_object_set_new(o, "source", mig_report_json(rep, &cli->params, m, e, uri));
		json_object_set_new(o, "destination", mig_dest_report_json(&d->rep, &d->err));
		tool_print_json(o);
	} else if (src_rc == 0) {
		mig_report_print(rep, &cli->params);
		if (d->rc == 0)
			mig_dest_report_print(&d->rep);
		if (equal)
			printf("result: OK: the destination's table equals the source's (roots "
			       "equal); downtime %.2f ms %s the %.0f ms limit\n",
			       (double)rep->downtime_ns / 1e6,
			       rep->downtime_ns <= cli->params.downtime_limit_ns ? "within" : "OVER",
			       (double)cli->params.downtime_limit_ns / 1e6);
	}
	if (src_rc != 0) {
		mig_report_fail("demo", "migration failed: ", rep, e);
	} else if (d->rc != 0) {
		char line[768];
		tool_fail("demo", "the destination refused: %s",
			  hm_error_line(&d->err, line, sizeof(line)));
	} else if (!equal) {
		tool_fail("demo", "roots or digests differ between source and destination");
	}
	return equal ? 0 : mig_cli_exit_status(src_rc ? src_rc : d->rc ? d->rc : 1);
}

/* The destination thread's parameters: the source guest's RAM (QEMU: the
 * same -m) and behaviour, --run, the cancel. */
static void demo_dest_params(struct dest_thread *d, const struct mig_cli *cli,
			     const machine_config_t *gc, mig_cancel_t *cancel, char *cap_hint,
			     size_t hint_len)
{
	struct mig_cli dcli = *cli;
	mig_dest_params_default(&d->p);
	dcli.guest.ram_bytes = gc->ram_bytes;
	mig_cli_dest_limits("demo", &dcli, &d->p, cap_hint, hint_len);
	d->p.accept_timeout_ms = 60000;
	d->run = (struct mig_cli_run){.run_ns = cli->run_ns, .cancel = cancel};
	d->p.on_resumed = mig_cli_keep_running;
	d->p.resumed_opaque = &d->run;
	d->p.guest.vcpus = gc->vcpus;
	d->p.guest.workload = gc->workload;
	d->p.guest.rate = gc->rate;
	d->p.guest.seed = gc->seed + 1;
	d->p.cancel = cancel;
	hm_error_clear(&d->err);
}

static int demo_run(int argc, char **argv)
{
	struct mig_cli cli;
	char cap_hint[256];
	const char *pos[1];
	int npos;
	int rc = mig_cli_parse("demo", argc, argv, MIG_CLI_SOURCE | MIG_CLI_DEST, &cli, pos, 0,
			       &npos);
	if (rc)
		return rc;
	if (cli.run_ns == 0)
		cli.run_ns = 500000000ull;
	hm_error_t e;
	hm_error_clear(&e);
	mig_cancel_t *cancel = NULL;
	if (mig_cancel_new(&cancel) != 0 || mig_signals_start(cancel) != 0) {
		tool_fail("demo", "out of resources");
		mig_cancel_free(cancel);
		return 1;
	}
	if (mig_cli_ctl_start("demo", &cli, cancel, true) != 0) {
		mig_signals_stop();
		mig_cancel_free(cancel);
		return 1;
	}
	char dir[] = "/tmp/hptmig-demo-XXXXXX";
	char uri[256];
	bool have_dir = false;
	mig_uri_t u;
	mig_listener_t *l = NULL;
	machine_t *m = NULL;
	struct dest_thread d = {0};
	pthread_t dt;
	bool dest_started = false;
	mig_report_t rep;
	int src_rc = -1;
	rc = 1;
	memset(&rep, 0, sizeof(rep));
	if (strcmp(cli.transport, "tcp") == 0) {
		snprintf(uri, sizeof(uri), "tcp:127.0.0.1:0");
	} else {
		if (!mkdtemp(dir)) {
			tool_fail("demo", "cannot create a temporary directory");
			goto out;
		}
		have_dir = true;
		snprintf(uri, sizeof(uri), "unix:%s/mig.sock", dir);
	}
	if (mig_uri_parse(uri, &u, &e) != 0 || mig_listen(&u, &l, &e) != 0) {
		tool_fail_error("demo", &e);
		goto out;
	}
	mig_uri_format(mig_listener_uri(l), uri, sizeof(uri));
	if (mig_cli_make_guest("demo", &cli, &m) != 0)
		goto out;
	const machine_config_t *gc = machine_config(m);
	uint64_t valid0;
	hpt_count(machine_hpt(m), &valid0, NULL);
	if (!cli.json) {
		char rate[48];
		if (gc->rate)
			snprintf(rate, sizeof(rate), "%llu hypercalls/s", (unsigned long long)gc->rate);
		else
			snprintf(rate, sizeof(rate), "flat out"); /* --rate 0: no pacing */
		printf("hptmig demo: %s guest, %.2f GiB RAM, table of 2^%u bytes (%llu valid entries "
		       "at boot), %u vCPU%s at %s each, over %s\n",
		       machine_workload_name(gc->workload), (double)gc->ram_bytes / (1u << 30),
		       hpt_shift(machine_hpt(m)), (unsigned long long)valid0, gc->vcpus,
		       gc->vcpus == 1 ? "" : "s", rate, uri);
		fflush(stdout);
	}
	d.l = l;
	demo_dest_params(&d, &cli, gc, cancel, cap_hint, sizeof(cap_hint));
	if (pthread_create(&dt, NULL, dest_main, &d) != 0) {
		tool_fail("demo", "cannot start the destination thread");
		goto out;
	}
	dest_started = true;
	bool started;
	int run_rc = mig_cli_run_source("demo", &cli, m, uri, cancel, &rep, &e, &started);
	if (started)
		src_rc = run_rc;
out:
	if (dest_started) {
		if (src_rc != 0)
			mig_cancel_request(cancel); /* the destination must not wait for us */
		pthread_join(dt, NULL);
	}
	mig_cli_ctl_stop(&cli); /* the final status line before the report */
	if (src_rc == 0 || dest_started)
		rc = demo_report(&cli, src_rc, &rep, &e, m, uri, &d);
	machine_destroy(m);
	mig_listener_close(l);
	if (have_dir)
		rmdir(dir);
	mig_signals_stop();
	mig_cancel_free(cancel);
	return rc;
}

const struct hm_cmd hm_cmd_demo = {
	.name = "demo",
	.summary = "live-migrate a simulated guest to a destination on loopback, in one command",
	.usage = "usage: hptmig demo [guest options] [migration options] [--json]\n"
		 "  --transport unix|tcp  loopback transport (default unix)\n"
		 "  --run S               the destination runs the resumed guest S seconds (0.5)\n"
		 "Guest, migration, output, status and control options as 'hptmig migrate --help'\n"
		 "(status and control are the source's; docs/control.md).\n"
		 "Exit status: 0 digests equal; 1 failed; 130 / 143 interrupted by SIGINT /\n"
		 "SIGTERM (the report says cancelled and where the guest is).\n",
	.run = demo_run,
};
