/* SPDX-License-Identifier: MIT */
/*
 * Shared implementation of the migration subcommands (see mig_common.h):
 * option parsing, the guest from options or from a real QEMU stream, the
 * signal watcher, the progress line and the reports. Only tools/ code
 * prints; this is where the migration commands do it.
 */
#include "mig_common.h"

#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "hptmig/analyze.h"
#include "stream_input.h"
#include "tool.h"

enum {
	O_RAM = 1000, O_SHIFT, O_VCPUS, O_WORKLOAD, O_RATE, O_SEED, O_FROM,
	O_BW, O_DOWNTIME, O_MAXITER, O_TIMEOUT, O_AUTOCONV, O_RETRIES, O_RETRY_DELAY,
	O_PURE, O_SCAN, O_POLICY, O_JSON, O_RUN, O_WARMUP, O_ACCEPT_TIMEOUT, O_TRANSPORT, O_CONNECT_TIMEOUT,
	O_MAX_SHIFT, O_DEADLINE, O_IDLE_TIMEOUT, O_PROBE_TIMEOUT, O_MAX_STRAYS,
	O_RESUME_TIMEOUT, O_PROGRESS, O_QUIET, O_STATUS_INTERVAL, O_CONTROL, O_TLS_CREDS, O_TLS_HOSTNAME,
	O_TLS_AUTHZ, O_DIGEST,
};

static const struct option guest_opts[] = {
	{"ram", required_argument, NULL, O_RAM},
	{"htab-shift", required_argument, NULL, O_SHIFT},
	{"vcpus", required_argument, NULL, O_VCPUS},
	{"workload", required_argument, NULL, O_WORKLOAD},
	{"rate", required_argument, NULL, O_RATE},
	{"seed", required_argument, NULL, O_SEED},
	{"from", required_argument, NULL, O_FROM},
	{"max-bandwidth", required_argument, NULL, O_BW},
	{"downtime-limit", required_argument, NULL, O_DOWNTIME},
	{"max-iterations", required_argument, NULL, O_MAXITER},
	{"timeout", required_argument, NULL, O_TIMEOUT},
	{"auto-converge", no_argument, NULL, O_AUTOCONV},
	{"retries", required_argument, NULL, O_RETRIES},
	{"retry-delay", required_argument, NULL, O_RETRY_DELAY},
	{"qemu-pure", no_argument, NULL, O_PURE},
	{"scan", required_argument, NULL, O_SCAN},
	{"policy", required_argument, NULL, O_POLICY},
	{"json", no_argument, NULL, O_JSON},
	{"run", required_argument, NULL, O_RUN},
	{"warmup", required_argument, NULL, O_WARMUP},
	{"accept-timeout", required_argument, NULL, O_ACCEPT_TIMEOUT},
	{"transport", required_argument, NULL, O_TRANSPORT},
	{"connect-timeout", required_argument, NULL, O_CONNECT_TIMEOUT},
	{"max-htab-shift", required_argument, NULL, O_MAX_SHIFT},
	{"deadline", required_argument, NULL, O_DEADLINE},
	{"idle-timeout", required_argument, NULL, O_IDLE_TIMEOUT},
	{"probe-timeout", required_argument, NULL, O_PROBE_TIMEOUT},
	{"max-strays", required_argument, NULL, O_MAX_STRAYS},
	{"resume-timeout", required_argument, NULL, O_RESUME_TIMEOUT},
	{"progress", no_argument, NULL, O_PROGRESS},
	{"quiet", no_argument, NULL, O_QUIET},
	{"status-interval", required_argument, NULL, O_STATUS_INTERVAL},
	{"control", required_argument, NULL, O_CONTROL},
	{"tls-creds", required_argument, NULL, O_TLS_CREDS},
	{"tls-hostname", required_argument, NULL, O_TLS_HOSTNAME},
	{"tls-authz", required_argument, NULL, O_TLS_AUTHZ},
	{"digest", no_argument, NULL, O_DIGEST},
	{NULL, 0, NULL, 0},
};

/* Seconds with an optional fraction ("2", "0.5") into ns. */
static int parse_seconds(const char *s, uint64_t *ns)
{
	*ns = 0;
	char *end;
	double d = strtod(s, &end);
	if (end == s || *end || !(d >= 0) || d > 1e9)
		return -1;
	*ns = (uint64_t)(d * 1e9);
	return 0;
}

static bool allowed(int opt, unsigned kinds)
{
	switch (opt) {
	case O_VCPUS:
	case O_WORKLOAD:
	case O_RATE:
	case O_SEED:
	case O_JSON:
	case O_PROGRESS:
	case O_QUIET:
	case O_STATUS_INTERVAL:
	case O_CONTROL:
		return true;
	case O_RAM:
		return true; /* the source guest's, or the destination guest's (its cap) */
	case O_RUN:
	case O_ACCEPT_TIMEOUT:
	case O_MAX_SHIFT:
	case O_DEADLINE:
	case O_IDLE_TIMEOUT:
	case O_PROBE_TIMEOUT:
	case O_MAX_STRAYS:
	case O_DIGEST:
		return kinds & MIG_CLI_DEST;
	case O_TLS_CREDS:
		return kinds & MIG_CLI_TLS;
	case O_TLS_HOSTNAME: /* the client checks the server's name */
		return (kinds & MIG_CLI_TLS) && (kinds & MIG_CLI_SOURCE);
	case O_TLS_AUTHZ:    /* the server lets one client DN in */
		return (kinds & MIG_CLI_TLS) && (kinds & MIG_CLI_DEST);
	default:
		return kinds & MIG_CLI_SOURCE;
	}
}

/* Seconds into whole ms, within [min_ns, max_ns]. */
static int parse_ms(const char *s, uint64_t min_ns, uint64_t max_ns, int *ms)
{
	uint64_t ns = 0;
	int bad = parse_seconds(s, &ns) != 0 || ns < min_ns || ns > max_ns;
	*ms = (int)(ns / 1000000u);
	return bad;
}

/* --ram's bounds, in bytes: 32 MiB, and the largest guest whose table
 * (RAM/128, QEMU's rule) fits the stream's be32 slot index (8 TiB). */
#define CLI_RAM_MIN (UINT64_C(1) << 25)
#define CLI_RAM_MAX (UINT64_C(1) << (HPT_SHIFT_STREAM_MAX + 7))

/* A well-formed --ram outside its bounds: one usage line in bytes (not in
 * table shifts, which the user did not write). True when it printed. */
static bool ram_out_of_range(const char *cmd, const char *a)
{
	uint64_t v = 0;
	if (!a || hm_parse_size(a, &v) != 0 || (v >= CLI_RAM_MIN && v <= CLI_RAM_MAX))
		return false;
	if (v < CLI_RAM_MIN)
		tool_fail(cmd, "--ram %s: %llu bytes is less than the smallest guest, %llu bytes (32 MiB)",
			  a, (unsigned long long)v, (unsigned long long)CLI_RAM_MIN);
	else
		tool_fail(cmd,
			  "--ram %s: %llu bytes is more than the largest guest, %llu bytes (8 TiB), "
			  "whose table (RAM/128) the stream can carry",
			  a, (unsigned long long)v, (unsigned long long)CLI_RAM_MAX);
	return true;
}

/* The guest's options (either end). Returns nonzero on a bad value. */
static int parse_guest_opt(int c, const char *a, struct mig_cli *cli, bool *shift_given)
{
	uint64_t v = 0;
	hm_error_t e;
	int bad = 0;
	switch (c) {
	case O_RAM:
		bad = hm_parse_size(a, &v) != 0 || v < CLI_RAM_MIN || v > CLI_RAM_MAX;
		cli->guest.ram_bytes = v;
		cli->ram_given = true;
		break;
	case O_SHIFT:
		bad = hm_parse_u64(a, 46, &v) != 0 || v < 18;
		cli->guest.htab_shift = (unsigned)v;
		*shift_given = true;
		break;
	case O_VCPUS:
		bad = hm_parse_u64(a, MACHINE_VCPUS_MAX, &v) != 0 || v < 1;
		cli->guest.vcpus = (unsigned)v;
		break;
	case O_WORKLOAD:
		bad = machine_workload_parse(a, &cli->guest.workload, &e) != 0;
		break;
	case O_RATE:
		bad = hm_parse_size(a, &v) != 0 || v > UINT64_C(1000000000);
		cli->guest.rate = v;
		break;
	case O_SEED:
		bad = hm_parse_u64(a, UINT64_MAX, &v) != 0;
		cli->guest.seed = v;
		break;
	case O_FROM:
		cli->from = a;
		break;
	case O_JSON:
		cli->json = true;
		break;
	case O_PROGRESS:
		cli->progress = MIG_CLI_PROGRESS_ON;
		break;
	case O_QUIET:
		cli->progress = MIG_CLI_PROGRESS_OFF;
		break;
	case O_STATUS_INTERVAL: /* ms, 10 ms to 1 h */
		bad = hm_parse_u64(a, 3600000, &v) != 0 || v < 10;
		cli->status_interval_ms = (unsigned)v;
		break;
	case O_CONTROL: {
		char path[sizeof(((struct sockaddr_un *)0)->sun_path)], msg[160];
		unsigned idle;
		bad = control_parse(a, path, sizeof(path), &idle, msg, sizeof(msg)) != 0;
		cli->control = a;
		break;
	}
	}
	return bad;
}

/* The source's (migration) options. Returns nonzero on a bad value. */
static int parse_source_opt(int c, const char *a, struct mig_cli *cli)
{
	mig_params_t *p = &cli->params;
	uint64_t v = 0;
	int bad = 0;
	switch (c) {
	case O_BW:
		bad = hm_parse_size(a, &v) != 0;
		p->max_bandwidth = v;
		break;
	case O_DOWNTIME:
		bad = hm_parse_u64(a, UINT64_C(3600000), &v) != 0;
		p->downtime_limit_ns = v * 1000000u;
		break;
	case O_MAXITER:
		bad = hm_parse_u64(a, 1000000, &v) != 0;
		p->max_iterations = (unsigned)v;
		break;
	case O_TIMEOUT:
		bad = parse_seconds(a, &p->timeout_ns) != 0;
		break;
	case O_AUTOCONV:
		p->auto_converge = true;
		break;
	case O_RETRIES:
		bad = hm_parse_u64(a, 1000, &v) != 0;
		p->retries = (unsigned)v;
		break;
	case O_RETRY_DELAY:
		bad = parse_seconds(a, &p->retry_delay_ns) != 0;
		break;
	case O_PURE:
		p->qemu_pure = true;
		break;
	case O_SCAN:
		bad = htab_scan_parse(a, &p->scan) != 0;
		break;
	case O_POLICY:
		if (strcmp(a, "ours") == 0) {
			p->policy = mig_policy_default;
			p->stop_catchup = true;
		} else if (strcmp(a, "qemu") == 0 || strcmp(a, "seed") == 0) {
			p->policy = mig_policy_qemu_stop_rule; /* "seed": its old name */
			p->stop_catchup = false;               /* it stops as QEMU does */
		} else {
			bad = 1;
		}
		break;
	case O_WARMUP:
		bad = parse_seconds(a, &cli->warmup_ns) != 0;
		break;
	case O_CONNECT_TIMEOUT:
		bad = parse_ms(a, 0, UINT64_C(3600000000000), &p->connect_timeout_ms);
		break;
	case O_RESUME_TIMEOUT:
		bad = parse_ms(a, UINT64_C(1000000), UINT64_C(3600000000000), &p->rp_timeout_ms);
		break;
	case O_TRANSPORT:
		bad = strcmp(a, "unix") != 0 && strcmp(a, "tcp") != 0;
		cli->transport = a;
		break;
	}
	return bad;
}

/* The destination's options (docs/limits.md). Returns nonzero on a bad value. */
static int parse_dest_opt(int c, const char *a, struct mig_cli *cli)
{
	uint64_t v = 0;
	int bad = 0;
	switch (c) {
	case O_RUN:
		bad = parse_seconds(a, &cli->run_ns) != 0;
		break;
	case O_ACCEPT_TIMEOUT:
		bad = parse_ms(a, 0, UINT64_MAX, &cli->accept_timeout_ms);
		break;
	case O_MAX_SHIFT:
		bad = hm_parse_u64(a, HPT_SHIFT_STREAM_MAX, &v) != 0 || v < HPT_SHIFT_MIN;
		cli->max_htab_shift = (unsigned)v;
		break;
	case O_DEADLINE:
		bad = parse_seconds(a, &cli->deadline_ns) != 0;
		break;
	case O_IDLE_TIMEOUT:
		bad = parse_ms(a, 1000000u, UINT64_C(86400000000000), &cli->idle_timeout_ms);
		break;
	case O_PROBE_TIMEOUT:
		bad = parse_ms(a, 1000000u, UINT64_C(86400000000000), &cli->probe_timeout_ms);
		break;
	case O_MAX_STRAYS:
		bad = hm_parse_u64(a, 1000000, &v) != 0 || v < 1;
		cli->max_strays = (unsigned)v;
		break;
	case O_DIGEST:
		cli->dest_digest = true;
		break;
	}
	return bad;
}

/* --tls-*: strings kept as given (argv outlives the command). */
static int parse_tls_opt(int c, const char *a, struct mig_cli *cli)
{
	switch (c) {
	case O_TLS_CREDS:
		cli->tls.dir = a;
		return !a[0];
	case O_TLS_HOSTNAME:
		cli->tls.hostname = a;
		return !a[0];
	case O_TLS_AUTHZ:
		cli->tls.authz_dn = a;
		return !a[0];
	}
	return 0;
}

static void cli_defaults(struct mig_cli *cli)
{
	memset(cli, 0, sizeof(*cli));
	machine_config_default(&cli->guest);
	cli->guest.ram_bytes = UINT64_C(2) << 30;
	cli->guest.rate = 20000;
	mig_params_default(&cli->params);
	cli->accept_timeout_ms = 600000;
	cli->deadline_ns = (uint64_t)MIG_DEADLINE_MS * 1000000u;
	cli->idle_timeout_ms = MIG_IO_TIMEOUT_MS;
	cli->probe_timeout_ms = MIG_PROBE_TIMEOUT_MS;
	cli->max_strays = MIG_MAX_STRAYS;
	cli->transport = "unix";
}

/* One stderr line per retry (the library composes it). */
static void print_retry(void *opaque, const char *line)
{
	fprintf(stderr, "hptmig: %s: %s\n", (const char *)opaque, line);
	fflush(stderr);
}

int mig_cli_parse(const char *cmd, int argc, char **argv, unsigned kinds, struct mig_cli *cli,
		  const char **pos, int npos, int *npos_out)
{
	cli_defaults(cli);
	cli->params.on_retry = print_retry;
	cli->params.retry_opaque = (void *)(uintptr_t)cmd;
	*npos_out = 0;
	optind = 1;
	opterr = 0;
	bool shift_given = false;
	for (;;) {
		int idx = 0;
		int c = getopt_long(argc, argv, "", guest_opts, &idx);
		if (c == -1)
			break;
		if (c == '?' || c == ':') {
			tool_fail(cmd, "unknown or incomplete option '%s' (hptmig %s --help)",
				  argv[optind - 1], cmd);
			return 2;
		}
		if (!allowed(c, kinds)) {
			tool_fail(cmd, "option '%s' does not apply here (hptmig %s --help)",
				  argv[optind - 1], cmd);
			return 2;
		}
		const char *a = optarg;
		const char *name = NULL;
		for (const struct option *o = guest_opts; o->name; o++)
			if (o->val == c)
				name = o->name;
		int bad = parse_guest_opt(c, a, cli, &shift_given) ||
			  parse_source_opt(c, a, cli) || parse_dest_opt(c, a, cli) ||
			  parse_tls_opt(c, a, cli);
		if (bad && c == O_RAM && ram_out_of_range(cmd, a))
			return 2;
		if (bad) {
			tool_fail(cmd, "--%s: bad value '%s'", name ? name : "?", a ? a : "");
			return 2;
		}
	}
	if (shift_given && !cli->ram_given)
		cli->guest.ram_bytes = 0; /* RAM from the table: shift + 7 */
	if (shift_given && cli->ram_given) {
		tool_fail(cmd, "--ram and --htab-shift are exclusive");
		return 2;
	}
	if (!shift_given)
		cli->guest.htab_shift = 0;
	for (int i = optind; i < argc; i++) {
		if (*npos_out >= npos) {
			tool_fail(cmd, "unexpected argument '%s' (hptmig %s --help)", argv[i], cmd);
			return 2;
		}
		pos[(*npos_out)++] = argv[i];
	}
	return 0;
}

/* --tls-*: usage errors (2), or the credentials loaded (1 when they cannot be). */
static int cli_tls_load(const char *cmd, unsigned kinds, struct mig_cli *cli, const mig_uri_t *u)
{
	hm_error_t e;
	hm_error_clear(&e);
	cli->tls_creds = NULL;
	if (!cli->tls.dir) {
		if (cli->tls.hostname || cli->tls.authz_dn) {
			tool_fail(cmd, "--%s needs --tls-creds DIR",
				  cli->tls.hostname ? "tls-hostname" : "tls-authz");
			return 2;
		}
		return 0;
	}
	if (!u || u->kind != MIG_URI_TCP) {
		tool_fail(cmd, "--tls-creds needs a tcp:HOST:PORT URI");
		return 2;
	}
	enum mig_tls_endpoint ep = kinds & MIG_CLI_DEST ? MIG_TLS_SERVER : MIG_TLS_CLIENT;
	if (mig_tls_creds_load(&cli->tls, ep, &cli->tls_creds, &e) != 0) {
		tool_fail_error(cmd, &e);
		return 1;
	}
	cli->params.tls = cli->tls_creds;
	return 0;
}

void mig_cli_tls_free(struct mig_cli *cli)
{
	mig_tls_creds_free(cli->tls_creds);
	cli->tls_creds = NULL;
	cli->params.tls = NULL;
}

int mig_cli_listen(const struct mig_cli *cli, const mig_uri_t *u, mig_listener_t **out,
		   hm_error_t *err)
{
	int rc = mig_listen(u, out, err);
	if (rc == 0 && cli->tls_creds && (rc = mig_listener_set_tls(*out, cli->tls_creds, err))) {
		mig_listener_close(*out);
		*out = NULL;
	}
	return rc;
}

int mig_cli_start(const char *cmd, int argc, char **argv, unsigned kinds, const char *what,
		  struct mig_cli *cli, const char **arg, mig_uri_t *uri, mig_cancel_t **cancel)
{
	int npos;
	int rc = mig_cli_parse(cmd, argc, argv, kinds, cli, arg, 1, &npos);
	if (rc)
		return rc;
	if (npos != 1) {
		tool_fail(cmd, "missing %s (hptmig %s --help)", what, cmd);
		return 2;
	}
	hm_error_t e;
	hm_error_clear(&e);
	if (uri && mig_uri_parse(*arg, uri, &e) != 0) {
		tool_fail_error(cmd, &e);
		return 2;
	}
	rc = cli_tls_load(cmd, kinds, cli, uri);
	if (rc)
		return rc;
	*cancel = NULL;
	if (mig_cancel_new(cancel) != 0 || mig_signals_start(*cancel) != 0) {
		tool_fail(cmd, "out of resources");
		mig_cli_tls_free(cli);
		mig_cancel_free(*cancel);
		*cancel = NULL;
		return 1;
	}
	if (mig_cli_ctl_start(cmd, cli, *cancel, kinds & MIG_CLI_SOURCE) != 0) {
		mig_signals_stop();
		mig_cancel_free(*cancel);
		*cancel = NULL;
		return 1;
	}
	return 0;
}

/* ------------------------------------------------- destination limits */

static void print_stray(void *opaque, const char *line)
{
	fprintf(stderr, "hptmig %s: warning: %s\n", (const char *)opaque, line);
	fflush(stderr);
}

static const char *human_size(uint64_t b, char *buf, size_t len);

void mig_cli_dest_limits(const char *cmd, const struct mig_cli *cli, mig_dest_params_t *p,
			 char *hint, size_t hint_len)
{
	char ram[32];
	p->ram_bytes = cli->guest.ram_bytes ? cli->guest.ram_bytes : MIG_DEST_RAM_DEFAULT;
	p->max_shift = cli->max_htab_shift;
	if (cli->max_htab_shift)
		snprintf(hint, hint_len, "change it with --max-htab-shift N");
	else
		snprintf(hint, hint_len,
			 "a guest of --ram %s may have at most htab_shift %u (QEMU's rule); change "
			 "it with --ram SIZE or --max-htab-shift N",
			 human_size(p->ram_bytes, ram, sizeof(ram)), mig_dest_max_shift(p));
	p->max_shift_hint = hint;
	p->deadline_ns = cli->deadline_ns;
	p->idle_timeout_ms = cli->idle_timeout_ms;
	p->probe_timeout_ms = cli->probe_timeout_ms;
	p->max_strays = cli->max_strays;
	p->on_stray = print_stray;
	p->stray_opaque = (void *)(uintptr_t)cmd;
}

/* "2 GiB", "512 MiB", "1.5 GiB": a RAM size as the user would write it. */
static const char *human_size(uint64_t b, char *buf, size_t len)
{
	if (b >= (UINT64_C(1) << 30) && b % (UINT64_C(1) << 30) == 0)
		snprintf(buf, len, "%llu GiB", (unsigned long long)(b >> 30));
	else if (b >= (UINT64_C(1) << 30))
		snprintf(buf, len, "%.2f GiB", (double)b / (1u << 30));
	else
		snprintf(buf, len, "%llu MiB", (unsigned long long)(b >> 20));
	return buf;
}

/* ------------------------------------------------------------ the guest */

struct from_ctx {
	hpt_t *h;
	uint64_t n;
};

static int from_entry(void *opaque, uint64_t slot, uint64_t v, uint64_t r, bool ok)
{
	struct from_ctx *c = opaque;
	(void)ok;
	if (!hpt_write_entry(c->h, slot, v, r))
		return -1;
	c->n++;
	return 0;
}


int mig_cli_run_source(const char *cmd, struct mig_cli *cli, machine_t *m, const char *uri,
		       mig_cancel_t *cancel, mig_report_t *rep, hm_error_t *e, bool *started)
{
	*started = machine_start(m, e) == 0;
	if (!*started) {
		tool_fail_error(cmd, e);
		return 1;
	}
	if (cli->warmup_ns && mig_cancel_wait(cancel, cli->warmup_ns)) {
		/* Ctrl-C during the warmup: nothing was sent, the guest runs on. */
		memset(rep, 0, sizeof(*rep));
		rep->status = hm_error_set(e, HM_E_CANCELLED, -1,
					   "cancelled during the warmup, before the migration began");
		hpt_count(machine_hpt(m), &rep->htab_valid, &rep->htab_bolted);
		rep->htab_shift = hpt_shift(machine_hpt(m));
		hpt_digest(machine_hpt(m), rep->digest);
		return rep->status;
	}
	cli->params.cancel = cancel;
	mig_cli_progress_setup(cli);
	int rc = mig_source_run(m, uri, &cli->params, rep, e);
	mig_progress_done();
	return rc;
}

int mig_cli_make_guest(const char *cmd, const struct mig_cli *cli, machine_t **out)
{
	hm_error_t e;
	hm_error_clear(&e);
	*out = NULL;
	if (!cli->from) {
		if (machine_create(&cli->guest, out, &e) != 0) {
			tool_fail_error(cmd, &e);
			return 1;
		}
		return 0;
	}
	/* Streamed, as analyze reads it: any input form (a path, -, file:,
	 * exec:, a listening tcp:/unix:), constant memory apart from the
	 * replayed table and the held final phase (docs/limits.md). */
	tool_input_t *in = NULL;
	an_report_t *rep = NULL;
	if (tool_input_open(cmd, cli->from, &in, &e) < 0) {
		hm_error_prefix(&e, "--from %s: ", cli->from);
		tool_fail_error(cmd, &e);
		return 1;
	}
	an_stream_opts_t so = {.opts = AN_OPT_KEEP_TABLE};
	int rc = an_analyze_stream(tool_input_source(in), &so, &rep, &e);
	if (rc == 0 && rep && !rep->htab.present)
		rc = hm_error_set(&e, HM_E_FORMAT, -1, "the stream has no spapr/htab section");
	if (rc == 0 && rep->htab.no_hpt)
		rc = hm_error_set(&e, HM_E_UNSUPPORTED, -1,
				  "the guest has no hashed page table (radix MMU)");
	hpt_t *h = NULL;
	if (rc == 0) {
		hpt_config_t hc;
		hpt_config_default(&hc);
		rc = hpt_create(rep->htab.shift, &hc, &h, &e);
	}
	if (rc == 0) {
		struct from_ctx c = {.h = h};
		if (an_htab_foreach(rep, from_entry, &c) != 0)
			rc = hm_error_set(&e, HM_E_RANGE, -1, "an entry does not fit the table");
	}
	an_report_free(rep);
	tool_input_close(in);
	if (rc == 0) {
		machine_config_t gc = cli->guest;
		gc.ram_bytes = 0; /* RAM implied by the table */
		rc = machine_create_on(&gc, h, out, &e);
		h = NULL;
	}
	hpt_destroy(h);
	if (rc) {
		hm_error_prefix(&e, "--from %s: ", cli->from);
		tool_fail_error(cmd, &e);
		return 1;
	}
	return 0;
}

/* --------------------------------------------------------------- signals */

static pthread_t sig_thread;
static bool sig_running;
static atomic_int sig_caught;

static void *sig_main(void *arg)
{
	mig_cancel_t *c = arg;
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGUSR2);
	for (;;) {
		int sig = 0;
		if (sigwait(&set, &sig) != 0)
			continue;
		if (sig == SIGUSR2)
			return NULL;
		atomic_store(&sig_caught, sig);
		mig_cancel_request(c);
	}
}

void mig_cli_keep_running(void *opaque, machine_t *m)
{
	const struct mig_cli_run *r = opaque;
	(void)m; /* it runs on its own vCPU threads; we only wait */
	mig_cancel_wait(r->cancel, r->run_ns);
}

int mig_signals_start(mig_cancel_t *c)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGUSR2);
	/* Every thread created after this inherits the mask: only the watcher
	 * takes these signals. A peer gone away is an error code, not a signal. */
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (pthread_create(&sig_thread, NULL, sig_main, c) != 0)
		return -1;
	sig_running = true;
	return 0;
}

void mig_signals_stop(void)
{
	if (!sig_running)
		return;
	pthread_kill(sig_thread, SIGUSR2);
	pthread_join(sig_thread, NULL);
	sig_running = false;
}

bool mig_signals_caught(void)
{
	return atomic_load(&sig_caught) != 0;
}

int mig_cli_exit_status(int rc)
{
	int sig = atomic_load(&sig_caught);
	if (rc == 0)
		return 0;
	return sig ? 128 + sig : 1; /* the shell's convention: 130 SIGINT, 143 SIGTERM */
}

/* -------------------------------------------------------------- progress */

/*
 * The progress line goes to stderr (stdout is the report's, JSON with
 * --json). On a terminal it is redrawn in place every ~200 ms; elsewhere
 * (--progress into a pipe or file) it is one line per second. It never
 * exceeds PROGRESS_COLS columns: parts that do not fit are left out, the
 * least important last in the line.
 */
#define PROGRESS_COLS 80

static bool progress_shown;   /* a redrawn line is on the terminal */
static bool progress_tty;     /* stderr is a terminal */
static uint64_t progress_last;/* when a plain line was last printed */
static char progress_prev[PROGRESS_COLS + 1]; /* plain mode: the last phase line */

void mig_cli_progress_setup(struct mig_cli *cli)
{
	progress_tty = isatty(STDERR_FILENO) == 1;
	progress_last = 0;
	progress_prev[0] = 0;
	bool on = cli->progress == MIG_CLI_PROGRESS_ON ||
		  (cli->progress == MIG_CLI_PROGRESS_AUTO && progress_tty);
	cli->params.progress = on ? mig_progress_print : NULL;
	cli->params.progress_opaque = NULL;
}

/* "812.3K", "12.0M", "1.50G": compact sizes for the line. */
static const char *short_size(uint64_t b, char *buf, size_t len)
{
	if (b >= (UINT64_C(1) << 30))
		snprintf(buf, len, "%.2fG", (double)b / (1u << 30));
	else if (b >= (UINT64_C(1) << 20))
		snprintf(buf, len, "%.1fM", (double)b / (1u << 20));
	else
		snprintf(buf, len, "%.1fK", (double)b / 1024);
	return buf;
}

/* Append ", part" to line when it still fits in PROGRESS_COLS. */
static void add_part(char *line, const char *part)
{
	size_t n = strlen(line), k = strlen(part);
	if (n + k <= PROGRESS_COLS)
		memcpy(line + n, part, k + 1);
}

/* The line for p, at most PROGRESS_COLS characters. */
static void progress_line(const mig_progress_t *p, char line[PROGRESS_COLS + 1])
{
	char part[96], a[24], b[24], c[24];
	line[0] = 0;
	if (p->attempt > 1) {
		snprintf(part, sizeof(part), "attempt %u: ", p->attempt);
		add_part(line, part);
	}
	if (strcmp(p->phase, "setup") == 0) {
		add_part(line, "connecting to the destination");
		return;
	}
	if (strcmp(p->phase, "wait") == 0) {
		snprintf(part, sizeof(part), "final pass %u sent (%s in all); waiting for the "
			 "destination", p->pass, short_size(p->bytes_sent, a, sizeof(a)));
		add_part(line, part);
		return;
	}
	bool stop = strcmp(p->phase, "stop") == 0;
	if (stop)
		snprintf(part, sizeof(part), "stop: final pass %u", p->pass);
	else
		snprintf(part, sizeof(part), "pass %u %3u%%", p->pass, p->percent);
	add_part(line, part);
	snprintf(part, sizeof(part), " | sent %s, left %s of %s",
		 short_size(p->bytes_sent, a, sizeof(a)), short_size(p->remaining_bytes, b, sizeof(b)),
		 short_size(p->total_bytes, c, sizeof(c)));
	add_part(line, part);
	if (p->bandwidth) {
		snprintf(part, sizeof(part), " | %s/s", short_size(p->bandwidth, a, sizeof(a)));
		add_part(line, part);
	}
	if (p->expected_downtime_ns != UINT64_MAX && p->bandwidth) {
		snprintf(part, sizeof(part), " | downtime ~%.0f ms",
			 (double)p->expected_downtime_ns / 1e6);
		add_part(line, part);
	}
	if (p->throttle) {
		snprintf(part, sizeof(part), " | throttle %u%%", p->throttle);
		add_part(line, part);
	}
}

void mig_progress_print(void *opaque, const mig_progress_t *p)
{
	(void)opaque;
	char line[PROGRESS_COLS + 1];
	progress_line(p, line);
	if (progress_tty) {
		fprintf(stderr, "\r\033[K%s", line);
		progress_shown = true;
	} else {
		/* One line per second, and every change of phase (setup, stop,
		 * wait) at once, so a log shows each step. */
		uint64_t now = hm_now_ns();
		bool phase_line = strcmp(p->phase, "iterate") != 0;
		if (phase_line ? strcmp(line, progress_prev) == 0
			       : now - progress_last < 1000000000ull)
			return;
		if (phase_line)
			snprintf(progress_prev, sizeof(progress_prev), "%s", line);
		else
			progress_last = now;
		fprintf(stderr, "%s\n", line);
	}
	fflush(stderr);
}

void mig_progress_done(void)
{
	if (progress_shown) {
		fprintf(stderr, "\r\033[K");
		fflush(stderr);
		progress_shown = false;
	}
}

/* --------------------------------------------------------------- reports */

void mig_hex(const uint8_t d[32], char out[65])
{
	hm_hex(d, 32, out);
}

static double ms(uint64_t ns)
{
	return (double)ns / 1e6;
}

const char *mig_json_status(int status)
{
	return status == 0 ? "ok" : status == HM_E_CANCELLED ? "cancelled" : "failed";
}

void mig_json_error(json_t *o, int status, const hm_error_t *err)
{
	/* Always there when the status is not ok, and always a valid string:
	 * messages are printable ASCII by construction (hm_error_t). */
	int code = err && err->code ? err->code : status;
	const char *msg = err && err->code && err->msg[0] ? err->msg : hm_err_str(code);
	json_t *js = json_string(msg); /* as on stderr */
	json_object_set_new(o, "error", js ? js : tool_json_str(msg));
	json_object_set_new(o, "error_code", json_string(hm_err_name(code)));
	if (err && err->code && err->offset >= 0)
		json_object_set_new(o, "error_offset", json_integer(err->offset));
}

void mig_report_fail(const char *cmd, const char *what, const mig_report_t *r,
		     const hm_error_t *e)
{
	char line[768];
	tool_fail(cmd, "%s%s; %s", what, hm_error_line(e, line, sizeof(line)),
		  mig_guest_state_text(r->guest));
}

/* A digest as hex, or null when it was not computed. */
static json_t *hex_or_null(bool have, const uint8_t d[HM_SHA256_LEN])
{
	char hex[2 * HM_SHA256_LEN + 1];
	if (!have)
		return json_null();
	hm_hex(d, HM_SHA256_LEN, hex);
	return json_string(hex);
}

json_t *mig_report_json(const mig_report_t *r, const mig_params_t *p, machine_t *m,
			const hm_error_t *err, const char *uri)
{
	char dg[65], ddg[65];
	mig_hex(r->digest, dg);
	mig_hex(r->dest_digest, ddg);
	json_t *o = json_object();
	json_object_set_new(o, "status", json_string(mig_json_status(r->status)));
	if (r->status != 0)
		mig_json_error(o, r->status, err);
	json_object_set_new(o, "guest_state", json_string(mig_guest_state_name(r->guest)));
	if (uri)
		json_object_set_new(o, "uri", json_string(uri));
	json_object_set_new(o, "attempts", json_integer(r->attempts));
	json_object_set_new(o, "total_time_ms", json_real(ms(r->total_ns)));
	json_object_set_new(o, "setup_time_ms", json_real(ms(r->setup_ns)));
	json_object_set_new(o, "downtime_ms", json_real(ms(r->downtime_ns)));
	json_object_set_new(o, "downtime_limit_ms", json_real(ms(p->downtime_limit_ns)));
	json_object_set_new(o, "expected_downtime_ms", json_real(ms(r->expected_downtime_ns)));
	json_object_set_new(o, "fixed_downtime_ms", json_real(ms(r->fixed_downtime_ns)));
	json_object_set_new(o, "rtt_ms", json_real(ms(r->rtt_ns)));
	/* the stop's verification: expected by the policy, then measured */
	json_object_set_new(o, "verify_expected_ms", json_real(ms(r->verify_expected_ns)));
	json_object_set_new(o, "verify_stop_ms", json_real(ms(r->verify_stop_ns)));
	json_object_set_new(o, "verify_blocks_at_stop",
			    json_integer((json_int_t)r->verify_blocks_at_stop));
	json_object_set_new(o, "verify_blocks", json_integer((json_int_t)r->verify_blocks));
	json_object_set_new(o, "verify_block_us", json_real((double)r->verify_block_ns / 1e3));
	/* the catch-up between the decision and the pause (the guest ran) */
	json_object_set_new(o, "catchup_rounds", json_integer(r->catchup_rounds));
	json_object_set_new(o, "catchup_ms", json_real(ms(r->catchup_ns)));
	json_object_set_new(o, "catchup_destination_caught_up",
			    json_integer(r->catchup_dest_caught_up));
	json_object_set_new(o, "catchup_destination_wait_ms", json_real(ms(r->catchup_dest_wait_ns)));
	json_object_set_new(o, "downtime_measured_to",
			    json_string(mig_downtime_end_name(r->downtime_end)));
	json_object_set_new(o, "stopped_time_total_ms", json_real(ms(r->stopped_total_ns)));
	json_object_set_new(o, "pause_time_ms", json_real(ms(r->pause_ns)));
	json_object_set_new(o, "complete_time_ms", json_real(ms(r->complete_ns)));
	json_object_set_new(o, "iterations", json_integer(r->iterations));
	json_object_set_new(o, "rounds", json_integer(r->rounds));
	json_object_set_new(o, "stop_reason", json_string(r->stop_reason));
	json_object_set_new(o, "bytes_total", json_integer((json_int_t)r->bytes_total));
	json_object_set_new(o, "bandwidth_bytes_per_s", json_integer((json_int_t)r->bandwidth));
	json_object_set_new(o, "max_bandwidth", json_integer((json_int_t)p->max_bandwidth));
	json_object_set_new(o, "throttle_percent", json_integer(r->throttle));
	json_object_set_new(o, "stopped", json_boolean(r->stopped));
	json_object_set_new(o, "source_resumed", json_boolean(r->source_resumed));
	json_object_set_new(o, "return_path", json_boolean(r->return_path));
	json_object_set_new(o, "verified", json_boolean(r->verified));
	json_object_set_new(o, "qemu_pure", json_boolean(p->qemu_pure));
	json_t *h = json_object();
	json_object_set_new(h, "shift", json_integer(r->htab_shift));
	json_object_set_new(h, "slots", json_integer((json_int_t)(UINT64_C(1) << (r->htab_shift - 4))));
	json_object_set_new(h, "valid", json_integer((json_int_t)r->htab_valid));
	json_object_set_new(h, "bolted", json_integer((json_int_t)r->htab_bolted));
	json_object_set_new(h, "digest", json_string(dg));
	json_object_set_new(h, "root", hex_or_null(r->has_root, r->root));
	if (r->downtime_end == MIG_DOWNTIME_DEST_RESUMED) {
		json_object_set_new(h, "destination_digest",
				    r->has_dest_digest ? json_string(ddg) : json_null());
		json_object_set_new(h, "destination_root", hex_or_null(r->has_dest_root, r->dest_root));
	}
	json_object_set_new(h, "entries_sent",
			    json_integer((json_int_t)(r->htab.valid_sent + r->htab.invalid_sent)));
	json_object_set_new(h, "valid_sent", json_integer((json_int_t)r->htab.valid_sent));
	json_object_set_new(h, "invalid_sent", json_integer((json_int_t)r->htab.invalid_sent));
	json_object_set_new(h, "final_pass_entries", json_integer((json_int_t)r->final_entries));
	json_object_set_new(h, "resized_at_stop", json_boolean(r->resized_at_stop));
	json_object_set_new(h, "chunks", json_integer((json_int_t)r->htab.chunks));
	json_object_set_new(h, "bytes", json_integer((json_int_t)r->htab.bytes));
	json_object_set_new(h, "passes", json_integer((json_int_t)r->htab.passes));
	json_object_set_new(h, "scan", json_string(htab_scan_name(p->scan)));
	json_object_set_new(o, "htab", h);
	if (m) {
		const machine_config_t *c = machine_config(m);
		machine_stats_t st;
		machine_get_stats(m, &st);
		json_t *g = json_object();
		json_object_set_new(g, "workload", json_string(machine_workload_name(c->workload)));
		json_object_set_new(g, "vcpus", json_integer(c->vcpus));
		json_object_set_new(g, "ram", json_integer((json_int_t)c->ram_bytes));
		json_object_set_new(g, "rate", json_integer((json_int_t)c->rate));
		json_object_set_new(g, "seed", json_integer((json_int_t)c->seed));
		json_object_set_new(g, "hcalls", json_integer((json_int_t)st.hcalls));
		json_object_set_new(g, "unexpected", json_integer((json_int_t)st.unexpected));
		json_object_set_new(g, "running", json_boolean(machine_running(m) && !machine_paused(m)));
		json_object_set_new(o, "guest", g);
	}
	return o;
}

json_t *mig_dest_report_json(const mig_dest_report_t *r, const hm_error_t *err)
{
	char dg[65];
	mig_hex(r->digest, dg);
	json_t *o = json_object();
	json_object_set_new(o, "status", json_string(mig_json_status(r->status)));
	if (r->status != 0)
		mig_json_error(o, r->status, err);
	/* escaped by the library already (mig_dest_report_t.machine) */
	json_object_set_new(o, "machine", json_string(r->machine));
	json_object_set_new(o, "total_time_ms", json_real(ms(r->total_ns)));
	json_object_set_new(o, "setup_time_ms", json_real(0));
	json_object_set_new(o, "wait_time_ms", json_real(ms(r->wait_ns)));
	json_object_set_new(o, "load_time_ms", json_real(ms(r->load_ns)));
	json_object_set_new(o, "downtime_ms", json_null());
	json_object_set_new(o, "iterations", json_integer((json_int_t)r->htab.records));
	json_object_set_new(o, "bytes_total", json_integer((json_int_t)r->bytes_total));
	json_object_set_new(o, "verified", json_boolean(r->verified));
	json_object_set_new(o, "resumed", json_boolean(r->resumed));
	json_object_set_new(o, "max_htab_shift", json_integer(r->max_shift));
	json_object_set_new(o, "stray_connections", json_integer(r->strays));
	json_t *h = json_object();
	if (r->no_hpt)
		json_object_set_new(h, "shift", json_string("no-hpt"));
	else
		json_object_set_new(h, "shift", json_integer(r->htab_shift));
	json_object_set_new(h, "valid", json_integer((json_int_t)r->htab_valid));
	json_object_set_new(h, "bolted", json_integer((json_int_t)r->htab_bolted));
	/* A refused or cancelled load has no table to digest: unknown, not 000...0. */
	json_object_set_new(h, "digest", r->status == 0 ? hex_or_null(r->has_digest, r->digest) : json_null());
	json_object_set_new(h, "root", r->status == 0 ? hex_or_null(r->has_root, r->root) : json_null());
	json_object_set_new(h, "root_blocks_at_end", json_integer((json_int_t)r->root_blocks_at_end));
	json_object_set_new(h, "root_end_ms", json_real(ms(r->root_end_ns)));
	json_object_set_new(h, "entries_sent",
			    json_integer((json_int_t)(r->htab.valid_sent + r->htab.invalid_sent)));
	json_object_set_new(h, "valid_sent", json_integer((json_int_t)r->htab.valid_sent));
	json_object_set_new(h, "invalid_sent", json_integer((json_int_t)r->htab.invalid_sent));
	json_object_set_new(h, "chunks", json_integer((json_int_t)r->htab.chunks));
	json_object_set_new(h, "records", json_integer((json_int_t)r->htab.records));
	json_object_set_new(h, "bytes", json_integer((json_int_t)r->htab_bytes));
	json_object_set_new(o, "htab", h);
	json_t *g = json_object();
	json_object_set_new(g, "run_time_ms", json_real(ms(r->run_ns)));
	json_object_set_new(g, "hcalls", json_integer((json_int_t)r->guest.hcalls));
	json_object_set_new(g, "unexpected", json_integer((json_int_t)r->guest.unexpected));
	json_object_set_new(o, "guest", g);
	return o;
}

static const char *human_bytes(uint64_t b, char *buf, size_t len)
{
	if (b >= (UINT64_C(1) << 30))
		snprintf(buf, len, "%.2f GiB", (double)b / (1u << 30));
	else if (b >= (UINT64_C(1) << 20))
		snprintf(buf, len, "%.2f MiB", (double)b / (1u << 20));
	else
		snprintf(buf, len, "%.1f KiB", (double)b / 1024);
	return buf;
}

void mig_report_print(const mig_report_t *r, const mig_params_t *p)
{
	char dg[65], b1[32], b2[32], b3[32];
	mig_hex(r->digest, dg);
	printf("source: migrated in %.1f ms (%u attempt%s): %u pass%s + final pass, stop: %s\n",
	       ms(r->total_ns), r->attempts, r->attempts == 1 ? "" : "s", r->iterations,
	       r->iterations == 1 ? "" : "es", r->stop_reason);
	printf("source: table shift %u, %llu valid entries; sent %llu entries (%llu in the final "
	       "pass), %s of table, %s in all at %s/s\n",
	       r->htab_shift, (unsigned long long)r->htab_valid,
	       (unsigned long long)(r->htab.valid_sent + r->htab.invalid_sent),
	       (unsigned long long)r->final_entries, human_bytes(r->htab.bytes, b1, sizeof(b1)),
	       human_bytes(r->bytes_total, b2, sizeof(b2)),
	       human_bytes(r->bandwidth, b3, sizeof(b3)));
	printf("source: downtime %.2f ms (limit %.0f ms, expected %.2f ms, measured to %s)%s\n",
	       ms(r->downtime_ns), ms(p->downtime_limit_ns), ms(r->expected_downtime_ns),
	       r->downtime_end == MIG_DOWNTIME_DEST_RESUMED ? "the destination's resumed message"
							    : "the last byte flushed",
	       r->downtime_ns <= p->downtime_limit_ns ? "" : "  ** over the limit **");
	printf("source: %s\n", mig_guest_state_text(r->guest));
	if (r->throttle)
		printf("source: auto-converge throttled the vCPUs to %u%%\n", r->throttle);
	printf("source: digest %s\n", dg);
	if (r->has_root) {
		mig_hex(r->root, dg);
		printf("source: root %s\n", dg);
	}
}

void mig_dest_report_print(const mig_dest_report_t *r)
{
	char dg[65];
	mig_hex(r->digest, dg);
	printf("destination: loaded %llu bytes in %.1f ms: table shift %u, %llu valid (%llu "
	       "bolted), %llu entries received in %llu records\n",
	       (unsigned long long)r->bytes_total, ms(r->load_ns), r->htab_shift,
	       (unsigned long long)r->htab_valid, (unsigned long long)r->htab_bolted,
	       (unsigned long long)(r->htab.valid_sent + r->htab.invalid_sent),
	       (unsigned long long)r->htab.records);
	if (r->has_digest)
		printf("destination: digest %s\n", dg);
	if (r->has_root) {
		mig_hex(r->root, dg);
		printf("destination: root %s (%s; %llu blocks re-hashed after the last record)\n",
		       dg, r->verified ? "verified against the source" : "no verify section in the stream",
		       (unsigned long long)r->root_blocks_at_end);
	}
	if (r->resumed)
		printf("destination: guest resumed, ran %.1f s issuing %llu hypercalls\n",
		       ms(r->run_ns) / 1000, (unsigned long long)r->guest.hcalls);
}

/* ------------------------------------------------- status and control */

int mig_cli_ctl_start(const char *cmd, struct mig_cli *cli, mig_cancel_t *cancel, bool source)
{
	if (mig_live_new(&cli->live) != 0) {
		tool_fail(cmd, "out of resources");
		return 1;
	}
	cli->params.live = cli->live;
	if (source) { /* what query-migrate-parameters says before the run begins */
		mig_set_max_bandwidth(cli->live, cli->params.max_bandwidth);
		mig_set_downtime_limit(cli->live, cli->params.downtime_limit_ns);
	}
	cli->ctl = (struct ctl_live){.live = cli->live, .cancel = cancel, .source = source};
	struct ctl_provider pv;
	ctl_provider_live(&pv, &cli->ctl);
	char msg[256];
	if (cli->control && control_start(cli->control, &pv, msg, sizeof(msg)) != 0) {
		tool_fail(cmd, "%s", msg);
		mig_live_free(cli->live);
		cli->live = NULL;
		cli->params.live = NULL;
		return 1;
	}
	if (cli->status_interval_ms && status_start(cli->status_interval_ms, &pv) != 0) {
		tool_fail(cmd, "out of resources");
		control_stop();
		mig_live_free(cli->live);
		cli->live = NULL;
		cli->params.live = NULL;
		return 1;
	}
	return 0;
}

void mig_cli_end(struct mig_cli *cli, mig_cancel_t *cancel)
{
	mig_cli_ctl_stop(cli);
	mig_signals_stop();
	mig_cancel_free(cancel);
	mig_cli_tls_free(cli);
}

void mig_cli_ctl_stop(struct mig_cli *cli)
{
	if (!cli->live)
		return;
	status_stop();
	control_stop();
	/* The report shows the settings in force at the end (they may have
	 * changed through the control socket). */
	mig_status_t s;
	mig_live_status(cli->live, &s);
	if (s.source) {
		cli->params.max_bandwidth = s.max_bandwidth;
		cli->params.downtime_limit_ns = s.downtime_limit_ns;
	}
	cli->params.live = NULL;
	mig_live_free(cli->live);
	cli->live = NULL;
}
