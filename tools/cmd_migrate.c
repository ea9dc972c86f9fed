/* SPDX-License-Identifier: MIT */
/*
 * `hptmig migrate URI`: boot a simulated guest (or take the table of a real
 * QEMU stream), run it, and live-migrate it to URI. Prints a summary, or
 * with --json one object; a failure is one line on stderr and a non-zero
 * exit status, and never harms the guest.
 */
#include "mig_common.h"

#include "tool.h"

#define MIG_OPTS_USAGE                                                                       \
	"guest options:\n"                                                                   \
	"  --ram SIZE           guest RAM (table = RAM/128, as QEMU); default 2G\n"          \
	"  --htab-shift N       table of 2^N bytes instead (18..36)\n"                       \
	"  --vcpus N            vCPU threads issuing hypercalls (default 1)\n"               \
	"  --workload W         idle | uniform | linux (default linux)\n"                    \
	"  --rate N             hypercalls per second per vCPU, 0 = flat out (default 20000)\n" \
	"  --seed N             workload seed (default 1)\n"                                 \
	"  --from IN            start from the table inside a real QEMU stream (IN as\n"       \
	"                       analyze reads it: a path, -, file:, exec:, tcp:, unix:)\n" \
	"  --warmup S           run the guest S seconds before migrating\n"                  \
	"migration options:\n"                                                               \
	"  --max-bandwidth RATE bytes/s, K/M/G suffixes, 0 = unlimited (default 0)\n"        \
	"  --downtime-limit MS  default 300\n"                                               \
	"  --max-iterations N   stop the guest after N passes anyway (0 = no limit)\n"       \
	"  --timeout S          cancel if not stopped after S seconds\n"                     \
	"  --auto-converge      throttle the vCPUs while not converging\n"                   \
	"  --retries N          new attempts after a failure (guest keeps running)\n"        \
	"  --retry-delay S      delay between attempts (default 1)\n"                        \
	"  --connect-timeout S  wait for the destination to listen (default 10)\n"           \
	"  --resume-timeout S   wait for the destination's answer after the stream\n"       \
	"                       (default 30); then the guest stays paused\n"                 \
	"  --qemu-pure          no project extension sections (QEMU can load it)\n"          \
	"  --scan bitmap|linear how later passes find changes (default bitmap)\n"            \
	"  --policy ours|qemu   stop decision (qemu: QEMU's rule, table pending counted as zero)\n"       \
	"output:\n"                                                                         \
	"  --json               one JSON object on stdout at the end\n"                     \
	"  --progress           progress on stderr also when it is not a terminal (then\n" \
	"                       one line a second); default: only on a terminal\n"         \
	"  --quiet              no progress\n"                                              \
	"status and control (docs/control.md):\n"                                           \
	"  --status-interval MS a JSON status line on stdout every MS ms (query-migrate\n"  \
	"                       names)\n"                                                   \
	"  --control unix:PATH  QMP-style control socket: query-migrate, migrate_cancel,\n"  \
	"                       migrate-set-parameters (max-bandwidth, downtime-limit);\n"  \
	"                       unix:PATH,idle-timeout=S closes a client silent for S s\n"   \
	"                       (default 60, 0: never)\n"                                   \
	"exit status: 0 migrated; 1 failed (the stderr line says where the guest is);\n"    \
	"130 / 143 interrupted by SIGINT / SIGTERM (every wait ends at once)\n"

#define MIG_TLS_USAGE                                                                        \
	"TLS (tcp; docs/tls.md):\n"                                                           \
	"  --tls-creds DIR      QEMU tls-creds-x509 layout: ca-cert.pem, client-cert.pem,\n"  \
	"                       client-key.pem; the destination's certificate is verified\n" \
	"  --tls-hostname NAME  the name its certificate must carry (default: URI host)\n"

static int migrate_run(int argc, char **argv)
{
	struct mig_cli cli;
	const char *pos[1];
	mig_uri_t u;
	mig_cancel_t *cancel;
	int rc = mig_cli_start("migrate", argc, argv, MIG_CLI_SOURCE | MIG_CLI_TLS, "URI", &cli, pos, &u, &cancel);
	if (rc)
		return rc;
	hm_error_t e;
	hm_error_clear(&e);
	machine_t *m = NULL;
	if (mig_cli_make_guest("migrate", &cli, &m) != 0) {
		mig_cli_end(&cli, cancel);
		return 1;
	}
	mig_report_t rep;
	bool started;
	rc = mig_cli_run_source("migrate", &cli, m, pos[0], cancel, &rep, &e, &started);
	if (!started)
		goto fail;
	if (rc && mig_signals_caught() && e.code == HM_E_CANCELLED)
		hm_error_prefix(&e, "interrupted: ");
	mig_cli_ctl_stop(&cli);
	if (cli.json)
		tool_print_json(mig_report_json(&rep, &cli.params, m, &e, pos[0]));
	else if (rc == 0)
		mig_report_print(&rep, &cli.params);
	if (rc)
		mig_report_fail("migrate", "", &rep, &e);
	machine_destroy(m);
	mig_cli_end(&cli, cancel);
	return mig_cli_exit_status(rc);
fail:
	machine_destroy(m);
	mig_cli_end(&cli, cancel);
	return 1;
}

const struct hm_cmd hm_cmd_migrate = {
	.name = "migrate",
	.summary = "live-migrate a simulated guest to URI",
	.usage = "usage: hptmig migrate URI [guest options] [migration options] [--json]\n"
		 "URI: tcp:HOST:PORT, unix:PATH, exec:COMMAND, file:PATH or fd:N\n" MIG_OPTS_USAGE
		 MIG_TLS_USAGE,
	.run = migrate_run,
};
