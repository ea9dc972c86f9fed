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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hptmig/proxy.h"
#include "mig_common.h"
#include "proxy_check.h"
#include "tool.h"

static const char usage[] =
	"usage: hptmig proxy LISTEN_URI DEST_URI [--json] [--passthrough] [--no-hold]\n"
	"                    [--max-device-state SIZE] [--quiet] [--accept-timeout S]\n"
	"                    [--connect-timeout S] [--idle-timeout S] [--linger S]\n"
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
	"\n"
	"Exit status: 0 when the whole stream was checked and forwarded, 1 when it\n"
	"was refused or a connection failed (the reason is on stderr), 2 on usage.\n";

struct proxy_cli {
	const char *listen, *dest;
	bool json;
	struct proxy_check_opts check;
	int accept_ms, connect_ms, idle_ms, linger_ms;
};

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

static void print_stray(void *opaque, const char *line)
{
	(void)opaque;
	fprintf(stderr, "hptmig proxy: warning: %s\n", line);
	fflush(stderr);
}

/* Listen, say where, take the source (screened as -incoming does), then
 * connect to the destination. Returns 0 or 1 after one line. */
static int open_ends(const struct proxy_cli *c, mig_listener_t **l, mig_conn_t **src,
		     mig_conn_t **dst)
{
	mig_uri_t lu, du;
	hm_error_t e;
	hm_error_clear(&e);
	if (mig_uri_parse(c->listen, &lu, &e) != 0 || mig_uri_parse(c->dest, &du, &e) != 0 ||
	    mig_listen(&lu, l, &e) != 0) {
		tool_fail_error("proxy", &e);
		return 1;
	}
	char where[4400];
	mig_uri_format(mig_listener_uri(*l), where, sizeof(where));
	if (lu.kind == MIG_URI_TCP || lu.kind == MIG_URI_UNIX) {
		fprintf(stderr, "hptmig proxy: listening on %s\n", where);
		fflush(stderr);
	}
	mig_accept_opts_t ao;
	mig_accept_opts_default(&ao);
	ao.timeout_ms = c->accept_ms;
	ao.idle_timeout_ms = c->idle_ms;
	ao.deadline_ns = 0;
	ao.on_stray = print_stray;
	if (mig_accept_ex(*l, &ao, src, NULL, &e) != 0) {
		tool_fail_error("proxy", &e);
		return 1;
	}
	if (mig_connect(&du, c->connect_ms, dst, &e) != 0) {
		tool_fail("proxy", "cannot reach the destination (the source's migration is cut): %s",
			  hm_error_line(&e, where, sizeof(where)));
		return 1;
	}
	return 0;
}

static const char *status_of(int rc, const mig_proxy_report_t *rep)
{
	if (rc == 0)
		return "ok";
	if (rep->error.code == HM_E_CANCELLED)
		return "cancelled";
	return rep->filter_failed ? "refused" : "failed";
}

static json_t *report_json(int rc, const mig_proxy_report_t *rep, struct proxy_check *chk)
{
	json_t *o = json_object();
	json_object_set_new(o, "status", json_string(status_of(rc, rep)));
	json_object_set_new(o, "bytes", json_integer((json_int_t)rep->in_bytes));
	json_object_set_new(o, "bytes_out", json_integer((json_int_t)rep->out_bytes));
	json_object_set_new(o, "return_path", json_boolean(rep->return_path));
	json_object_set_new(o, "return_path_bytes", json_integer((json_int_t)rep->rp_bytes));
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

static int relay(const struct proxy_cli *c, mig_conn_t *src, mig_conn_t *dst,
		 mig_cancel_t *cancel)
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
	mig_proxy_filter_t f;
	proxy_check_filter(chk, &f);
	mig_proxy_report_t rep;
	int rc = mig_proxy_run(src, dst, &f, &p, &rep, &e);
	if (rc != 0) {
		char line[768];
		tool_fail("proxy", "%s: both connections cut: %s",
			  rep.filter_failed ? "stream refused" : "relay failed",
			  hm_error_line(&rep.error, line, sizeof(line)));
	}
	if (c->json)
		tool_print_json(report_json(rc, &rep, chk));
	proxy_check_free(chk);
	return rc == 0 ? 0 : 1;
}

static int run(int argc, char **argv)
{
	struct proxy_cli c;
	int rc = parse_args(&c, argc, argv);
	if (rc != 0)
		return rc;
	mig_cancel_t *cancel = NULL;
	if (mig_cancel_new(&cancel) != 0 || mig_signals_start(cancel) != 0) {
		tool_fail("proxy", "out of resources");
		mig_cancel_free(cancel);
		return 1;
	}
	mig_listener_t *l = NULL;
	mig_conn_t *src = NULL, *dst = NULL;
	rc = open_ends(&c, &l, &src, &dst);
	if (rc == 0)
		rc = relay(&c, src, dst, cancel);
	hm_error_t e;
	hm_error_clear(&e);
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
	return rc;
}

const struct hm_cmd hm_cmd_proxy = {
	.name = "proxy",
	.summary = "relay a QEMU migration, checking it (and cutting it on a bad record)",
	.usage = usage,
	.run = run,
};
