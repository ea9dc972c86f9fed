/* SPDX-License-Identifier: MIT */
/*
 * `hptmig save FILE`: snapshot a running simulated guest to a file (a live
 * migration to file:FILE, with the same passes, limits and final pass).
 * `hptmig incoming file:FILE` or `hptmig analyze FILE` read it back.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mig_common.h"
#include "tool.h"

static int save_run(int argc, char **argv)
{
	struct mig_cli cli;
	const char *pos[1];
	mig_cancel_t *cancel;
	int rc = mig_cli_start("save", argc, argv, MIG_CLI_SOURCE, "FILE", &cli, pos, NULL, &cancel);
	if (rc)
		return rc;
	char uri[4200];
	snprintf(uri, sizeof(uri), "%s%s", strncmp(pos[0], "file:", 5) == 0 ? "" : "file:", pos[0]);
	machine_t *m = NULL;
	hm_error_t e;
	hm_error_clear(&e);
	rc = mig_cli_make_guest("save", &cli, &m);
	if (rc == 0 && machine_start(m, &e) != 0) {
		tool_fail_error("save", &e);
		rc = 1;
	}
	if (rc == 0) {
		cli.params.cancel = cancel;
		mig_cli_progress_setup(&cli);
		mig_report_t rep;
		rc = mig_source_run(m, uri, &cli.params, &rep, &e);
		mig_progress_done();
		mig_cli_ctl_stop(&cli);
		if (cli.json)
			tool_print_json(mig_report_json(&rep, &cli.params, m, &e, uri));
		else if (rc == 0) {
			char dg[65];
			mig_hex(rep.digest, dg);
			printf("saved %s: %llu bytes, table shift %u, %llu valid entries, %u pass%s, "
			       "guest stopped %.2f ms\ndigest %s\n",
			       pos[0], (unsigned long long)rep.bytes_total, rep.htab_shift,
			       (unsigned long long)rep.htab_valid, rep.iterations,
			       rep.iterations == 1 ? "" : "es",
			       (double)rep.downtime_ns / 1e6, dg);
		}
		if (rc)
			mig_report_fail("save", "", &rep, &e);
		rc = mig_cli_exit_status(rc);
	}
	machine_destroy(m);
	mig_cli_ctl_stop(&cli);
	mig_signals_stop();
	mig_cancel_free(cancel);
	return rc;
}

const struct hm_cmd hm_cmd_save = {
	.name = "save",
	.summary = "snapshot a simulated guest to a file (a migration to file:)",
	.usage = "usage: hptmig save FILE [guest options] [migration options] [--json]\n"
		 "Same options as 'hptmig migrate' (see hptmig migrate --help).\n"
		 "Read it back with 'hptmig incoming file:FILE' or 'hptmig analyze FILE'.\n"
		 "Exit status: 0 saved; 1 failed; 130 / 143 interrupted by SIGINT / SIGTERM.\n",
	.run = save_run,
};
