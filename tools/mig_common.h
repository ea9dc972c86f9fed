/* SPDX-License-Identifier: MIT */
/*
 * What `hptmig demo`, `migrate`, `incoming` and `save` share: guest and
 * migration option parsing, the guest built from options (including
 * --from IN), the Ctrl-C watcher, the --run loop of a resumed
 * destination guest, the progress line and the JSON reports. It talks to
 * the user (stderr, stdout); the library never does.
 */
#ifndef HPTMIG_TOOLS_MIG_COMMON_H
#define HPTMIG_TOOLS_MIG_COMMON_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "hptmig/machine.h"
#include "hptmig/migration.h"

enum mig_cli_progress {
	MIG_CLI_PROGRESS_AUTO = 0, /* on when stderr is a terminal */
	MIG_CLI_PROGRESS_ON,       /* --progress */
	MIG_CLI_PROGRESS_OFF,      /* --quiet */
};
#include "control.h"

/* Everything the four commands can be told. */
struct mig_cli {
	machine_config_t guest;
	const char *from;          /* --from IN */
	mig_params_t params;
	bool json;
	enum mig_cli_progress progress; /* --progress / --quiet */
	uint64_t run_ns;           /* --run S (destination; demo: the destination) */
	uint64_t warmup_ns;        /* --warmup S: run the guest before migrating */
	int accept_timeout_ms;     /* --accept-timeout S */
	/* Destination limits (docs/limits.md); the destination's RAM is guest.ram_bytes. */
	bool ram_given;            /* --ram was given */
	unsigned max_htab_shift;   /* --max-htab-shift N (0 = from the RAM) */
	uint64_t deadline_ns;      /* --deadline S (0 = none) */
	int idle_timeout_ms;       /* --idle-timeout S */
	int probe_timeout_ms;      /* --probe-timeout S */
	unsigned max_strays;       /* --max-strays N */
	bool dest_digest;          /* --digest: the destination computes the flat digest too */
	const char *transport;     /* demo: unix or tcp */
	unsigned status_interval_ms; /* --status-interval MS (0 = none) */
	const char *control;       /* --control unix:PATH */
	mig_live_t *live;          /* the run's handle (mig_cli_ctl_start) */
	struct ctl_live ctl;       /* the provider's state over live */
	mig_tls_opts_t tls;        /* --tls-creds, --tls-hostname, --tls-authz */
	mig_tls_creds_t *tls_creds;/* loaded by mig_cli_start; mig_cli_tls_free */
};

enum mig_cli_kind {
	MIG_CLI_SOURCE = 1,   /* migrate, demo, save: guest + migration options */
	MIG_CLI_DEST = 2,     /* incoming: --run, guest behaviour options */
	MIG_CLI_TLS = 4,      /* migrate, incoming: --tls-* (tcp) */
};

/*
 * Parse options from argv[first..argc). Positional arguments are stored in
 * pos[] (up to npos). Returns 0, or 2 after printing one usage line.
 */
int mig_cli_parse(const char *cmd, int argc, char **argv, unsigned kinds, struct mig_cli *cli,
		  const char **pos, int npos, int *npos_out);

/*
 * The start the migration commands share: parse the options, take exactly
 * one positional argument (*arg; what names it in the usage line), parse
 * it into *uri unless uri is NULL, then a cancel, the Ctrl-C watcher
 * (mig_signals_start) and status/control (mig_cli_ctl_start; the caller
 * ends them with mig_cli_ctl_stop). Returns 0; or 2 (usage) or 1 after one stderr line,
 * with nothing left to free.
 */
int mig_cli_start(const char *cmd, int argc, char **argv, unsigned kinds, const char *what,
		  struct mig_cli *cli, const char **arg, mig_uri_t *uri, mig_cancel_t **cancel);

/*
 * --tls-creds: after mig_cli_start, cli->tls_creds holds the credentials of
 * the side (client for MIG_CLI_SOURCE, set in cli->params.tls; server for
 * MIG_CLI_DEST, for mig_cli_listen). Freed here (NULL-safe).
 */
void mig_cli_tls_free(struct mig_cli *cli);
/* mig_listen, and TLS on the listener when --tls-creds was given. */
int mig_cli_listen(const struct mig_cli *cli, const mig_uri_t *u, mig_listener_t **out,
		   hm_error_t *err);

/*
 * Fill the destination's limits in p from the options (RAM, cap, deadline,
 * timeouts, strays; stray connections reported on stderr as they happen).
 * hint receives the text telling the user how to raise the cap; it must
 * outlive p's use.
 */
void mig_cli_dest_limits(const char *cmd, const struct mig_cli *cli, mig_dest_params_t *p,
			 char *hint, size_t hint_len);

/*
 * --status-interval and --control over a run handle (cli->live, created
 * here; also given to cli->params.live): status lines and the control
 * socket start now, before the run. Returns 0, or 1 after one stderr line
 * with nothing left running. mig_cli_ctl_stop (idempotent) prints the
 * final status line, closes the socket and frees the handle; call it before
 * the final report.
 */
int mig_cli_ctl_start(const char *cmd, struct mig_cli *cli, mig_cancel_t *cancel, bool source);
void mig_cli_ctl_stop(struct mig_cli *cli);
/* The end of a command that mig_cli_start began: status and control
 * stopped (if still running), the signal watcher, the cancel and the TLS
 * credentials freed. */
void mig_cli_end(struct mig_cli *cli, mig_cancel_t *cancel);

/*
 * Build the source guest: from --from IN (the table of a real QEMU
 * stream) or booted from the configuration. Returns 0 or prints one line
 * and returns 1.
 */
int mig_cli_make_guest(const char *cmd, const struct mig_cli *cli, machine_t **out);

/*
 * Start guest m, let it run --warmup, then migrate it to uri (cancel
 * attached, a progress line on a terminal). Returns mig_source_run's code,
 * or 1 after one line on stderr when the guest could not start (*started
 * false then, and rep untouched).
 */
int mig_cli_run_source(const char *cmd, struct mig_cli *cli, machine_t *m, const char *uri,
		       mig_cancel_t *cancel, mig_report_t *rep, hm_error_t *e, bool *started);

/*
 * The destination's --run: keep the resumed guest running run_ns, or until
 * cancel (Ctrl-C). Set as mig_dest_params_t.on_resumed with a struct
 * mig_cli_run as its opaque, which must outlive mig_dest_run.
 */
struct mig_cli_run {
	uint64_t run_ns;
	mig_cancel_t *cancel;
};
void mig_cli_keep_running(void *opaque, machine_t *m);

/* Ctrl-C / SIGTERM watcher thread: cancels c. Stop it with mig_signals_stop. */
int mig_signals_start(mig_cancel_t *c);
void mig_signals_stop(void);
bool mig_signals_caught(void);
/* The command's exit status for result rc: 0; 128 + the signal when
 * SIGINT/SIGTERM ended it (130, 143); else 1. */
int mig_cli_exit_status(int rc);

/*
 * Progress on stderr (mig_progress_print): set cli->params.progress from
 * --progress/--quiet (default: when stderr is a terminal). A terminal gets
 * one line redrawn in place, cleared by mig_progress_done; anything else
 * one line per second and one per phase. At most 80 columns.
 */
void mig_cli_progress_setup(struct mig_cli *cli);
void mig_progress_print(void *opaque, const mig_progress_t *p);
void mig_progress_done(void);

/* The report's "status": "ok", "cancelled" (HM_E_CANCELLED: Ctrl-C, SIGTERM,
 * a cancel) or "failed". */
const char *mig_json_status(int status);
/* The "error", "error_code" (and "error_offset") keys of a failed report:
 * always present, always valid JSON strings. */
void mig_json_error(json_t *o, int status, const hm_error_t *err);
/* The one stderr line of a failed migration: what, the error, and where
 * the guest is now (mig_guest_state_text). */
void mig_report_fail(const char *cmd, const char *what, const mig_report_t *r,
		     const hm_error_t *e);

/* JSON reports (new references). */
json_t *mig_report_json(const mig_report_t *r, const mig_params_t *p, machine_t *m,
			const hm_error_t *err, const char *uri);
json_t *mig_dest_report_json(const mig_dest_report_t *r, const hm_error_t *err);

/* Human summary lines on stdout. */
void mig_report_print(const mig_report_t *r, const mig_params_t *p);
void mig_dest_report_print(const mig_dest_report_t *r);

/* Lower-case hex of a digest. */
void mig_hex(const uint8_t d[32], char out[65]);

#endif
