/* SPDX-License-Identifier: MIT */
/*
 * `hptmig incoming URI`: the destination. Wait for (or read) a migration,
 * load and verify it, resume the guest on the loaded table, keep it running
 * --run seconds, report. Refuses, with one line on stderr and a non-zero
 * exit status, any stream that is incomplete, corrupt or mismatching.
 */
#include <stdio.h>
#include <stdlib.h>

#include "mig_common.h"
#include "tool.h"

static int incoming_run(int argc, char **argv)
{
	struct mig_cli cli;
	const char *pos[1];
	mig_uri_t u;
	mig_cancel_t *cancel;
	int rc = mig_cli_start("incoming", argc, argv, MIG_CLI_DEST | MIG_CLI_TLS, "URI", &cli, pos, &u, &cancel);
	if (rc)
		return rc;
	hm_error_t e;
	hm_error_clear(&e);
	mig_listener_t *l = NULL;
	rc = mig_cli_listen(&cli, &u, &l, &e);
	if (rc) {
		tool_fail_error("incoming", &e);
		mig_cli_end(&cli, cancel);
		return 1;
	}
	const mig_uri_t *lu = mig_listener_uri(l);
	if (lu->kind == MIG_URI_TCP || lu->kind == MIG_URI_UNIX) {
		/* The real address (the chosen port for tcp:HOST:0), at once:
		 * a script starts the source when it sees this line. */
		char where[4200];
		mig_uri_format(lu, where, sizeof(where));
		fprintf(stderr, "hptmig: incoming: listening on %s\n", where);
		fflush(stderr);
	}
	mig_dest_params_t dp;
	mig_dest_params_default(&dp);
	char hint[256];
	mig_cli_dest_limits("incoming", &cli, &dp, hint, sizeof(hint));
	dp.accept_timeout_ms = cli.accept_timeout_ms;
	struct mig_cli_run run = {.run_ns = cli.run_ns, .cancel = cancel};
	dp.on_resumed = mig_cli_keep_running;
	dp.resumed_opaque = &run;
	dp.guest.vcpus = cli.guest.vcpus;
	dp.guest.workload = cli.guest.workload;
	dp.guest.rate = cli.guest.rate;
	dp.guest.seed = cli.guest.seed;
	dp.cancel = cancel;
	dp.live = cli.live;
	dp.digest = cli.dest_digest;
	mig_dest_report_t rep;
	rc = mig_dest_run(l, &dp, &rep, &e);
	mig_listener_close(l);
	if (rc && mig_signals_caught())
		hm_error_prefix(&e, "interrupted: ");
	mig_cli_ctl_stop(&cli);
	if (cli.json)
		tool_print_json(mig_dest_report_json(&rep, &e));
	else if (rc == 0)
		mig_dest_report_print(&rep);
	if (rc == HM_E_CANCELLED) {
		char line[768];
		tool_fail("incoming", "%s; no guest was resumed here",
			  hm_error_line(&e, line, sizeof(line)));
	} else if (rc) {
		char line[768];
		tool_fail("incoming", "refused the migration: %s", hm_error_line(&e, line, sizeof(line)));
	}
	mig_cli_end(&cli, cancel);
	return mig_cli_exit_status(rc);
}

const struct hm_cmd hm_cmd_incoming = {
	.name = "incoming",
	.summary = "receive a migration on URI, verify it and resume the guest",
	.usage = "usage: hptmig incoming URI [--json] [--run SECONDS] [limits] [guest options]\n"
		 "URI: tcp:HOST:PORT, unix:PATH (listen), exec:COMMAND, file:PATH, fd:N (read)\n"
		 "  --run S              keep the resumed guest running S seconds\n"
		 "limits (docs/limits.md):\n"
		 "  --ram SIZE           this guest's RAM, as QEMU's -m (default 2G): caps the table\n"
		 "                       at htab_shift hpt_shift_for_ram(SIZE) + 1 (2G: 25, 32 MiB)\n"
		 "  --max-htab-shift N   cap the table at 2^N bytes instead (18..36)\n"
		 "  --deadline S         the whole stream must arrive within S seconds of its first\n"
		 "                       byte (default 3600; 0 = none)\n"
		 "  --idle-timeout S     a source silent this long is gone (default 30)\n"
		 "  --accept-timeout S   give up when no migration arrives (default 600; exec:, fd:\n"
		 "                       wait this long for the first byte)\n"
		 "  --probe-timeout S    tcp/unix: a connection must send QEVM + version 3 within S\n"
		 "                       seconds or it is a stray, refused (default 5)\n"
		 "  --max-strays N       give up after N stray connections (default 10)\n"
		 "  --digest             also compute the flat HTAB digest of the loaded table (JSON\n"
		 "                       htab.digest; null without): a walk of the whole table after\n"
		 "                       the stream ended, inside the downtime (about 190 ms for a\n"
		 "                       2 GiB table, a 256 GiB guest). The block root, kept current\n"
		 "                       while the stream arrives, is always computed and verified\n"
		 "TLS (tcp; docs/tls.md):\n"
		 "  --tls-creds DIR      QEMU tls-creds-x509 layout: ca-cert.pem, server-cert.pem,\n"
		 "                       server-key.pem; sources must show a client certificate\n"
		 "                       from that CA (a failed handshake is a stray)\n"
		 "  --tls-authz DN       let in only the source whose certificate has this DN\n"
		 "  --vcpus N, --workload W, --rate N, --seed N   the resumed guest's behaviour\n"
		 "  --json               one JSON object on stdout at the end\n"
		 "  --status-interval MS a JSON status line on stdout every MS ms (docs/control.md)\n"
		 "  --control unix:PATH  QMP-style control socket: query-migrate, migrate_cancel;\n"
		 "                       unix:PATH,idle-timeout=S closes a client silent for S s\n"
		 "                       (default 60, 0: never)\n"
		 "On tcp/unix it prints 'listening on URI' (the real port for port 0) on stderr\n"
		 "as soon as it listens. Exit status: 0 resumed; 1 refused or failed; 130 / 143\n"
		 "interrupted by SIGINT / SIGTERM (every wait ends at once).\n",
	.run = incoming_run,
};
