/* SPDX-License-Identifier: MIT */
/*
 * `hptmig proxy LISTEN_URI DEST_URI`: a checking man-in-the-middle for a
 * real QEMU -> QEMU migration. It accepts the source as QEMU's -incoming
 * does, connects to the destination, and forwards the stream through the
 * checker of tools/proxy_check.c (framing, ram, spapr/htab with every loader
 * check, the held final device sections, the vmdesc), relaying the return
 * path back. A bad record cuts both connections and prints one line.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "hptmig/proxy.h"
#include "mig_common.h"
#include "proxy_check.h"
#include "tool.h"

static const char usage[] =
	"usage: hptmig proxy LISTEN_URI DEST_URI [--json] [--passthrough] [--no-hold]\n"
	"                    [--max-device-state SIZE] [--quiet] [--accept-timeout S]\n"
	"                    [--connect-timeout S] [--idle-timeout S] [--linger S]\n"
	"                    [--tls-creds DIR] [--listen-tls-creds DIR] [--dest-tls-creds DIR]\n"
	"                    [--tls-hostname NAME] [--tls-authz DN]\n"
	"                    [--status-interval MS] [--control unix:PATH]\n"
	"\n"
	"Sit between a QEMU migration source and its destination: listen on\n"
	"LISTEN_URI (tcp:HOST:PORT, unix:PATH; also exec:, fd:, file: to replay a\n"
	"stream) as QEMU's -incoming does, connect to DEST_URI, and forward the\n"
	"stream while checking it: framing, the ram records, spapr/htab with every\n"
	"check of the loader (a 32-bit index wrap is stopped here), the device\n"
	"sections of the final phase against the vmdesc after EOF. The return path\n"
	"is relayed back. On a bad record both connections are cut (the destination\n"
	"sees an aborted migration) and one line names the record and byte offset.\n"
	"\n"
	"  --json             one JSON object on stdout at the end\n"
	"  --passthrough      forward spapr/htab as it came (default: re-encoded\n"
	"                     canonically, the same table in fewer bytes)\n"
	"  --no-hold          forward the final device sections at once, unchecked\n"
	"                     (default: hold them until the vmdesc is walked)\n"
	"  --max-device-state SIZE  cap of the held device sections (default 64M)\n"
	"  --quiet            no progress lines on stderr\n"
	"  --accept-timeout S wait at most S seconds for the source (default 600)\n"
	"  --connect-timeout S  for the destination to accept (default 10)\n"
	"  --idle-timeout S   cut when nothing moves for S seconds (default 30)\n"
	"  --linger S         after the stream, relay the return path until both\n"
	"                     sides close or S seconds pass (default 30)\n"
	"  --tls-creds DIR    TLS on both tcp sides, QEMU's tls-creds-x509 layout:\n"
	"                     the TLS server to the source (server-cert.pem,\n"
	"                     server-key.pem; the source's certificate is checked\n"
	"                     against ca-cert.pem), the TLS client to the destination\n"
	"                     (client-cert.pem, client-key.pem; its certificate and\n"
	"                     name are checked against ca-cert.pem)\n"
	"  --listen-tls-creds DIR  TLS towards the source only (or other credentials)\n"
	"  --dest-tls-creds DIR    TLS towards the destination only (or other ones)\n"
	"  --tls-hostname NAME  the name the destination's certificate must carry\n"
	"                     (default: DEST_URI's host)\n"
	"  --tls-authz DN     the only client DN the source may present\n"
	"  --status-interval MS  a JSON status line on stdout every MS ms (10..3600000)\n"
	"  --control unix:PATH   a QMP-style control socket: query-migrate,\n"
	"                     migrate_cancel (docs/control.md); unix:PATH,idle-timeout=S\n"
	"                     closes a client silent for S s (default 60, 0: never)\n"
	"\n"
	"Exit status: 0 when the whole stream was checked and forwarded, 1 when it\n"
	"was refused, cancelled or a connection failed (the reason is on stderr),\n"
	"2 on usage, 130 or 143 when SIGINT or SIGTERM ended it.\n";

struct proxy_cli {
	const char *listen, *dest;
	bool json;
	struct proxy_check_opts check;
	int accept_ms, connect_ms, idle_ms, linger_ms;
	const char *tls_both, *tls_listen, *tls_dest, *tls_hostname, *tls_authz;
	unsigned status_ms;     /* --status-interval (0: none) */
	const char *control;    /* --control unix:PATH */
};

/* Options that take a string, kept as given (argv outlives the command). */
static const char **string_opt(struct proxy_cli *c, const char *o)
{
	static const struct {
		const char *name;
		size_t off;
	} t[] = {
		{"--tls-creds", offsetof(struct proxy_cli, tls_both)},
		{"--listen-tls-creds", offsetof(struct proxy_cli, tls_listen)},
		{"--dest-tls-creds", offsetof(struct proxy_cli, tls_dest)},
		{"--tls-hostname", offsetof(struct proxy_cli, tls_hostname)},
		{"--tls-authz", offsetof(struct proxy_cli, tls_authz)},
		{"--control", offsetof(struct proxy_cli, control)},
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		if (strcmp(o, t[i].name) == 0)
			return (const char **)(void *)((char *)c + t[i].off);
	return NULL;
}

/* "S" seconds, 0..max_s, into ms. */
static bool parse_secs(const char *s, uint64_t max_s, int *ms)
{
	uint64_t v;
	if (!s || hm_parse_u64(s, max_s, &v) != 0)
		return false;
	*ms = (int)(v * 1000);
	return true;
}

static int parse_opt(struct proxy_cli *c, int argc, char **argv, int *i)
{
	const char *o = argv[*i], *v = *i + 1 < argc ? argv[*i + 1] : NULL;
	int *ms = NULL;
	if (strcmp(o, "--accept-timeout") == 0)
		ms = &c->accept_ms;
	else if (strcmp(o, "--connect-timeout") == 0)
		ms = &c->connect_ms;
	else if (strcmp(o, "--idle-timeout") == 0)
		ms = &c->idle_ms;
	else if (strcmp(o, "--linger") == 0)
		ms = &c->linger_ms;
	if (ms) {
		if (!parse_secs(v, 86400, ms) || (*ms == 0 && ms != &c->linger_ms)) {
			tool_fail("proxy", "%s needs seconds from %d to 86400, got '%s'", o,
				  ms == &c->linger_ms ? 0 : 1, v ? v : "");
			return 2;
		}
		(*i)++;
		return 0;
	}
	if (strcmp(o, "--max-device-state") == 0) {
		uint64_t sz;
		if (!v || hm_parse_size(v, &sz) != 0 || sz == 0 || sz > PROXY_DEVICE_STATE_MAX) {
			tool_fail("proxy", "--max-device-state needs a size from 1 to 1G, got '%s'",
				  v ? v : "");
			return 2;
		}
		c->check.max_device_state = sz;
		(*i)++;
		return 0;
	}
	const char **str = string_opt(c, o);
	if (str) {
		char path[sizeof(((struct sockaddr_un *)0)->sun_path)], msg[160];
		unsigned idle;
		if (str == &c->control && v &&
		    control_parse(v, path, sizeof(path), &idle, msg, sizeof(msg)) != 0) {
			tool_fail("proxy", "%s", msg);
			return 2;
		}
		if (!v || !v[0]) {
			tool_fail("proxy", "%s needs a value", o);
			return 2;
		}
		*str = v;
		(*i)++;
		return 0;
	}
	if (strcmp(o, "--status-interval") == 0) {
		uint64_t n;
		if (!v || hm_parse_u64(v, 3600000, &n) != 0 || n < 10) {
			tool_fail("proxy", "--status-interval needs milliseconds from 10 to 3600000, "
				  "got '%s'", v ? v : "");
			return 2;
		}
		c->status_ms = (unsigned)n;
		(*i)++;
		return 0;
	}
	tool_fail("proxy", "unknown option '%s' (hptmig proxy --help)", o);
	return 2;
}

static int parse_args(struct proxy_cli *c, int argc, char **argv)
{
	memset(c, 0, sizeof(*c));
	proxy_check_opts_default(&c->check);
	c->accept_ms = 600000;
	c->connect_ms = 10000;
	c->idle_ms = MIG_IO_TIMEOUT_MS;
	c->linger_ms = MIG_IO_TIMEOUT_MS;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--json") == 0) {
			c->json = true;
		} else if (strcmp(a, "--quiet") == 0) {
			c->check.quiet = true;
		} else if (strcmp(a, "--passthrough") == 0) {
			c->check.passthrough = true;
		} else if (strcmp(a, "--no-hold") == 0) {
			c->check.no_hold = true;
		} else if (a[0] == '-' && a[1]) {
			int rc = parse_opt(c, argc, argv, &i);
			if (rc != 0)
				return rc;
		} else if (!c->listen) {
			c->listen = a;
		} else if (!c->dest) {
			c->dest = a;
		} else {
			tool_fail("proxy", "two URIs only ('%s' is extra)", a);
			return 2;
		}
	}
	if (!c->dest) {
		tool_fail("proxy", "missing %s (hptmig proxy --help)", c->listen ? "DEST_URI" : "LISTEN_URI");
		return 2;
	}
	return 0;
}

static void print_warning(void *opaque, const char *line)
{
	(void)opaque;
	fprintf(stderr, "hptmig proxy: warning: %s\n", line);
	fflush(stderr);
}



/* ------------------------------------------------------------------- TLS */

struct proxy_tls {
	mig_tls_creds_t *server; /* towards the source (the listener), or NULL */
	mig_tls_creds_t *client; /* towards the destination, or NULL */
};

/*
 * --tls-creds (both sides), --listen-tls-creds, --dest-tls-creds (one side
 * each, over --tls-creds), --tls-hostname (destination), --tls-authz
 * (source): 2 on a usage error, 1 when credentials cannot be loaded.
 */
static int tls_load(const struct proxy_cli *c, const mig_uri_t *lu, const mig_uri_t *du,
		    struct proxy_tls *t)
{
	const char *ld = c->tls_listen ? c->tls_listen : c->tls_both;
	const char *dd = c->tls_dest ? c->tls_dest : c->tls_both;
	const char *bad = NULL;
	if (c->tls_authz && !ld)
		bad = "--tls-authz needs TLS towards the source (--tls-creds or --listen-tls-creds)";
	else if (c->tls_hostname && !dd)
		bad = "--tls-hostname needs TLS towards the destination (--tls-creds or "
		      "--dest-tls-creds)";
	else if (ld && lu->kind != MIG_URI_TCP)
		bad = "TLS towards the source needs a tcp:HOST:PORT LISTEN_URI";
	else if (dd && du->kind != MIG_URI_TCP)
		bad = "TLS towards the destination needs a tcp:HOST:PORT DEST_URI";
	if (bad) {
		tool_fail("proxy", "%s", bad);
		return 2;
	}
	hm_error_t e;
	hm_error_clear(&e);
	mig_tls_opts_t so = {.dir = ld, .authz_dn = c->tls_authz};
	mig_tls_opts_t co = {.dir = dd, .hostname = c->tls_hostname};
	if ((ld && mig_tls_creds_load(&so, MIG_TLS_SERVER, &t->server, &e) != 0) ||
	    (dd && mig_tls_creds_load(&co, MIG_TLS_CLIENT, &t->client, &e) != 0)) {
		tool_fail_error("proxy", &e);
		return 1;
	}
	return 0;
}

/* ---------------------------------------------------- status and control */

/*
 * What --status-interval and --control see of the proxy: its own counters
 * (a relay, not a library run), updated by the relay's progress callback
 * and at each phase; values a relay cannot know are MIG_UNKNOWN.
 */
struct proxy_live {
	pthread_mutex_t lock;
	mig_status_t s;
	uint64_t t0;                 /* start (ns) */
	uint64_t win_ns, win_bytes;  /* the rate's window */
	bool ended;
	mig_cancel_t *cancel;
};

static void live_init(struct proxy_live *pl, mig_cancel_t *cancel)
{
	memset(pl, 0, sizeof(*pl));
	pthread_mutex_init(&pl->lock, NULL);
	pl->cancel = cancel;
	pl->t0 = hm_now_ns();
	pl->s = (mig_status_t){.status = MIG_RUN_SETUP, .remaining = MIG_UNKNOWN,
			       .total = MIG_UNKNOWN, .dirty_rate = MIG_UNKNOWN,
			       .expected_downtime_ns = MIG_UNKNOWN, .setup_ns = MIG_UNKNOWN,
			       .downtime_ns = MIG_UNKNOWN};
}

static void live_status(void *opaque, mig_status_t *out)
{
	struct proxy_live *pl = opaque;
	pthread_mutex_lock(&pl->lock);
	*out = pl->s;
	if (!pl->ended)
		out->total_ns = hm_now_ns() - pl->t0;
	pthread_mutex_unlock(&pl->lock);
}

static void live_cancel(void *opaque)
{
	mig_cancel_request(((struct proxy_live *)opaque)->cancel);
}

/* The relay's progress (about every 100 ms): bytes, and the rate over the
 * last second or more. */
static void live_progress(void *opaque, uint64_t in, uint64_t out)
{
	struct proxy_live *pl = opaque;
	uint64_t now = hm_now_ns();
	(void)out;
	pthread_mutex_lock(&pl->lock);
	pl->s.transferred = in;
	if (now - pl->win_ns >= 1000000000ull) {
		pl->s.bandwidth = (in - pl->win_bytes) * 1000000000ull / (now - pl->win_ns);
		pl->win_ns = now;
		pl->win_bytes = in;
	}
	pthread_mutex_unlock(&pl->lock);
}

static void live_phase(struct proxy_live *pl, enum mig_run_status st, uint64_t in)
{
	uint64_t now = hm_now_ns();
	pthread_mutex_lock(&pl->lock);
	pl->s.status = st;
	pl->s.transferred = in;
	if (st == MIG_RUN_ACTIVE) {
		pl->s.setup_ns = now - pl->t0;
		pl->win_ns = now;
		pl->win_bytes = in;
	} else if (st != MIG_RUN_SETUP) {
		pl->s.total_ns = now - pl->t0;
		pl->ended = true;
	}
	pthread_mutex_unlock(&pl->lock);
}

/* Start --control and --status-interval over pl: 0, or 1 after one line. */
static int live_start(const struct proxy_cli *c, struct proxy_live *pl)
{
	struct ctl_provider pv = {.status = live_status, .cancel = live_cancel, .opaque = pl,
				  .side = "proxy"};
	char msg[256];
	if (c->control && control_start(c->control, &pv, msg, sizeof(msg)) != 0) {
		tool_fail("proxy", "%s", msg);
		return 1;
	}
	if (c->status_ms && status_start(c->status_ms, &pv) != 0) {
		tool_fail("proxy", "out of resources");
		control_stop();
		return 1;
	}
	return 0;
}

/* ---------------------------------------------------------------- relay */

/* Listen (with TLS when asked), say where, take the source (screened as
 * -incoming does), then connect to the destination. 0, or 1 with e set. */
static int open_ends(const struct proxy_cli *c, const mig_uri_t *lu, const mig_uri_t *du,
		     const struct proxy_tls *t, mig_cancel_t *cancel, mig_listener_t **l,
		     mig_conn_t **src, mig_conn_t **dst, hm_error_t *e)
{
	if (mig_listen(lu, l, e) != 0 || mig_listener_set_tls(*l, t->server, e) != 0)
		return 1;
	char where[4400];
	mig_uri_format(mig_listener_uri(*l), where, sizeof(where));
	if (lu->kind == MIG_URI_TCP || lu->kind == MIG_URI_UNIX) {
		fprintf(stderr, "hptmig proxy: listening on %s%s\n", where,
			t->server ? " (TLS)" : "");
		fflush(stderr);
	}
	mig_accept_opts_t ao;
	mig_accept_opts_default(&ao);
	ao.timeout_ms = c->accept_ms;
	ao.idle_timeout_ms = c->idle_ms;
	ao.deadline_ns = 0;
	ao.cancel = cancel;
	ao.on_stray = print_warning;
	if (mig_accept_ex(*l, &ao, src, NULL, e) != 0)
		return 1;
	mig_connect_opts_t co = {.timeout_ms = c->connect_ms, .cancel = cancel};
	if (mig_connect_tls_ex(du, &co, t->client, dst, e) != 0) {
		hm_error_t d = *e;
		hm_error_clear(e);
		hm_error_set(e, d.code, -1, "cannot reach the destination (the source's migration "
			     "is cut): %s", hm_error_line(&d, where, sizeof(where)));
		return 1;
	}
	return 0;
}

static json_t *report_json(int rc, const mig_proxy_report_t *rep, struct proxy_check *chk,
			   bool cancelled);

/* Before the relay: one line, and the report (--json) with no bytes. */
static int ends_failed(const struct proxy_cli *c, const hm_error_t *e, struct proxy_live *pl,
		       mig_cancel_t *cancel)
{
	bool cancelled = mig_cancel_requested(cancel);
	live_phase(pl, cancelled ? MIG_RUN_CANCELLED : MIG_RUN_FAILED, 0);
	tool_fail_error("proxy", e);
	status_stop();
	if (c->json) {
		mig_proxy_report_t rep;
		memset(&rep, 0, sizeof(rep));
		rep.error = *e;
		rep.duration_ns = hm_now_ns() - pl->t0;
		tool_print_json(report_json(1, &rep, NULL, cancelled));
	}
	return 1;
}

static const char *status_of(int rc, const mig_proxy_report_t *rep, bool cancelled)
{
	if (rc == 0)
		return "ok";
	if (cancelled || rep->error.code == HM_E_CANCELLED)
		return "cancelled";
	return rep->filter_failed ? "refused" : "failed";
}

static json_t *report_json(int rc, const mig_proxy_report_t *rep, struct proxy_check *chk,
			   bool cancelled)
{
	json_t *o = json_object();
	json_object_set_new(o, "status", json_string(status_of(rc, rep, cancelled)));
	json_object_set_new(o, "bytes", json_integer((json_int_t)rep->in_bytes));
	json_object_set_new(o, "bytes_out", json_integer((json_int_t)rep->out_bytes));
	json_object_set_new(o, "return_path", json_boolean(rep->return_path));
	json_object_set_new(o, "return_path_bytes", json_integer((json_int_t)rep->rp_bytes));
	if (chk)
		proxy_check_json(chk, o);
	json_object_set_new(o, "duration_ms", json_integer((json_int_t)(rep->duration_ns / 1000000)));
	if (rc != 0) {
		char line[768];
		json_t *e = json_object();
		json_object_set_new(e, "code", json_string(hm_err_name(rep->error.code)));
		json_object_set_new(e, "offset", json_integer(rep->error.offset));
		json_object_set_new(e, "message", tool_json_str(hm_error_line(&rep->error, line,
									     sizeof(line))));
		json_object_set_new(o, "error", e);
	}
	return o;
}

/* The stream from src through the checker to dst; the report (--json)
 * after the last status line. 0, or 1 after one line. */
static int relay(const struct proxy_cli *c, mig_conn_t *src, mig_conn_t *dst,
		 mig_cancel_t *cancel, struct proxy_live *pl)
{
	struct proxy_check *chk = NULL;
	hm_error_t e;
	hm_error_clear(&e);
	if (proxy_check_new(&c->check, &chk, &e) != 0) {
		tool_fail_error("proxy", &e);
		return 1;
	}
	mig_proxy_params_t p;
	mig_proxy_params_default(&p);
	p.idle_timeout_ms = c->idle_ms;
	p.linger_ms = c->linger_ms;
	p.cancel = cancel;
	p.progress = live_progress;
	p.opaque = pl;
	p.progress_ms = 100;
	mig_proxy_filter_t f;
	proxy_check_filter(chk, &f);
	mig_proxy_report_t rep;
	live_phase(pl, MIG_RUN_ACTIVE, 0);
	int rc = mig_proxy_run(src, dst, &f, &p, &rep, &e);
	bool cancelled = rc != 0 && mig_cancel_requested(cancel);
	live_phase(pl, rc == 0 ? MIG_RUN_COMPLETED : cancelled ? MIG_RUN_CANCELLED : MIG_RUN_FAILED,
		   rep.in_bytes);
	if (cancelled) {
		tool_fail("proxy", "cancelled (%s): both connections cut after %llu stream bytes",
			  mig_signals_caught() ? "signal" : "migrate_cancel",
			  (unsigned long long)rep.in_bytes);
	} else if (rc != 0) {
		char line[768];
		tool_fail("proxy", "%s: both connections cut: %s",
			  rep.filter_failed ? "stream refused" : "relay failed",
			  hm_error_line(&rep.error, line, sizeof(line)));
	}
	status_stop();
	if (c->json)
		tool_print_json(report_json(rc, &rep, chk, cancelled));
	proxy_check_free(chk);
	return rc == 0 ? 0 : 1;
}

/* The URIs (1 after one line), then the TLS options and credentials. */
static int prepare(const struct proxy_cli *c, mig_uri_t *lu, mig_uri_t *du, struct proxy_tls *t)
{
	hm_error_t e;
	hm_error_clear(&e);
	if (mig_uri_parse(c->listen, lu, &e) != 0 || mig_uri_parse(c->dest, du, &e) != 0) {
		tool_fail_error("proxy", &e);
		return 1;
	}
	return tls_load(c, lu, du, t);
}

static int run(int argc, char **argv)
{
	struct proxy_cli c;
	mig_uri_t lu, du;
	struct proxy_tls t = {NULL, NULL};
	int rc = parse_args(&c, argc, argv);
	if (rc == 0)
		rc = prepare(&c, &lu, &du, &t);
	mig_cancel_t *cancel = NULL;
	if (rc == 0 && (mig_cancel_new(&cancel) != 0 || mig_signals_start(cancel) != 0)) {
		tool_fail("proxy", "out of resources");
		rc = 1;
	}
	struct proxy_live pl;
	live_init(&pl, cancel);
	mig_listener_t *l = NULL;
	mig_conn_t *src = NULL, *dst = NULL;
	if (rc == 0)
		rc = live_start(&c, &pl);
	hm_error_t e;
	hm_error_clear(&e);
	if (rc == 0 && open_ends(&c, &lu, &du, &t, cancel, &l, &src, &dst, &e) != 0)
		rc = ends_failed(&c, &e, &pl, cancel);
	else if (rc == 0)
		rc = relay(&c, src, dst, cancel, &pl);
	status_stop();
	control_stop();
	/* Nothing was written through the channels: closing cannot fail on
	 * their account; an exec: destination's exit status is its own. */
	if (dst && mig_conn_close(dst, &e) != 0 && rc == 0) {
		tool_fail_error("proxy", &e);
		rc = 1;
	}
	mig_conn_close(src, NULL);
	mig_listener_close(l);
	mig_signals_stop();
	mig_cancel_free(cancel);
	mig_tls_creds_free(t.server);
	mig_tls_creds_free(t.client);
	pthread_mutex_destroy(&pl.lock);
	return rc == 1 ? mig_cli_exit_status(rc) : rc;
}

const struct hm_cmd hm_cmd_proxy = {
	.name = "proxy",
	.summary = "relay a QEMU migration, checking it (and cutting it on a bad record)",
	.usage = usage,
	.run = run,
};
