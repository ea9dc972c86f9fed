/* SPDX-License-Identifier: MIT */
/*
 * Live status and control of a running command, the QMP way: JSON status
 * lines on stdout (--status-interval, status.c) and a QMP-style control
 * socket (--control unix:PATH, control.c). Both see a run only through a
 * provider (struct ctl_provider), so any command (migrate, incoming, demo,
 * a proxy) plugs in its own; docs/control.md has the protocol and the hook.
 */
#ifndef HPTMIG_TOOLS_CONTROL_H
#define HPTMIG_TOOLS_CONTROL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hptmig/migration.h"

/*
 * What status lines and the control socket ask of a run. Every callback
 * may be called from the status or control thread while the run goes, so
 * each must be thread-safe and must not block for long.
 */
struct ctl_provider {
	/* A snapshot (required). */
	void (*status)(void *opaque, mig_status_t *out);
	/*
	 * migrate-set-parameters: name is "max-bandwidth" (value in bytes/s)
	 * or "downtime-limit" (ms). Returns 0, or non-zero after writing the
	 * reason (a QMP GenericError desc) into msg. NULL: not supported.
	 */
	int (*set_param)(void *opaque, const char *name, uint64_t value, char *msg, size_t len);
	/* migrate_cancel (NULL: not supported). */
	void (*cancel)(void *opaque);
	void *opaque;
	/* The "side" member of a status (NULL: "source" or "destination" as
	 * the snapshot says; a proxy says "proxy"). */
	const char *side;
};

/* The provider of a library run: live's status and setters, cancel's
 * request. source false: the destination has no settings to change. */
struct ctl_live {
	mig_live_t *live;
	mig_cancel_t *cancel;
	bool source;
};
void ctl_provider_live(struct ctl_provider *pv, struct ctl_live *cl);

/* A status snapshot as query-migrate's names (docs/json-schema.md):
 * flat (event lines) or with the byte counters under "ram" as QEMU's
 * MigrationInfo (query-migrate's return). New reference. */
json_t *ctl_status_json(const mig_status_t *s, bool nested);
/* pv's snapshot (pv->status) as ctl_status_json, with pv->side; *s gets
 * the snapshot. New reference. */
json_t *ctl_provider_json(const struct ctl_provider *pv, mig_status_t *s, bool nested);

/* --status-interval: a thread printing {"event":"status",...} every
 * interval_ms on stdout. status_stop prints the final line and joins. */
int status_start(unsigned interval_ms, const struct ctl_provider *pv);
void status_stop(void);

/* Caps of the control socket (docs/control.md). */
#define CTL_LINE_MAX 4096   /* bytes of one command line, newline included */
#define CTL_CLIENTS_MAX 8   /* clients served at once; more are told so and closed */
#define CTL_IDLE_S 60       /* default idle timeout: a client that sends no
			     * complete command for this long is closed */
#define CTL_IDLE_MAX_S 86400

/*
 * The spec of --control: "unix:PATH" or "unix:PATH,idle-timeout=S" (S from
 * 0, no timeout, to CTL_IDLE_MAX_S; default CTL_IDLE_S). 0 with the path
 * (NUL-terminated, at most plen - 1 bytes) and the timeout in ms, or -1
 * with the reason in msg: the commands report it as a usage error.
 */
int control_parse(const char *spec, char *path, size_t plen, unsigned *idle_ms, char *msg,
		  size_t len);

/*
 * --control SPEC: create the socket (mode 0600; a stale socket at PATH is
 * replaced, anything else refused) and serve QMP clients on a thread.
 * Returns 0, or -1 with the reason in msg. control_stop closes every
 * client and removes PATH.
 */
int control_start(const char *spec, const struct ctl_provider *pv, char *msg, size_t len);
void control_stop(void);

#endif
