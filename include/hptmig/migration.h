/* SPDX-License-Identifier: MIT */
/*
 * migration: the transports (QEMU-spelled URIs, with a return path on
 * sockets), the precopy controller of the source (rounds, convergence
 * policy, limits, cancel, statistics) and the destination side (load,
 * verify, resume, answer on the return path). It never prints or exits,
 * never harms the source guest on failure (the guest keeps running, or is
 * resumed), and the destination never reports success on a stream that is
 * incomplete, corrupt or does not match the source's digest.
 */
#ifndef HPTMIG_MIGRATION_H
#define HPTMIG_MIGRATION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hptmig/base.h"
#include "hptmig/guest.h"
#include "hptmig/htab.h"
#include "hptmig/machine.h"
#include "hptmig/stream.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------- transports */

enum mig_uri_kind {
	MIG_URI_TCP = 1,  /* tcp:HOST:PORT (HOST may be [v6]) */
	MIG_URI_UNIX,     /* unix:PATH */
	MIG_URI_EXEC,     /* exec:COMMAND (sh -c; source writes its stdin, destination reads its stdout) */
	MIG_URI_FILE,     /* file:PATH */
	MIG_URI_FD,       /* fd:N (an inherited descriptor) */
};

typedef struct mig_uri {
	enum mig_uri_kind kind;
	char host[256]; /* tcp */
	int port;       /* tcp; 0 on a listener = any free port */
	char path[4096];/* unix path, exec command or file path */
	int fd;         /* fd: */
} mig_uri_t;

/* Parse a URI. Returns 0 or HM_E_FORMAT/HM_E_RANGE naming what is wrong. */
int mig_uri_parse(const char *s, mig_uri_t *u, hm_error_t *err);
/* tcp and unix carry a return path (the socket read the other way). */
bool mig_uri_has_return_path(const mig_uri_t *u);
/* The URI back as text. */
void mig_uri_format(const mig_uri_t *u, char *buf, size_t len);

/* A connection: the stream channel plus the return path when there is one. */
typedef struct mig_conn mig_conn_t;
typedef struct mig_listener mig_listener_t;

/* I/O timeout on sockets: a peer silent this long is treated as gone. */
#define MIG_IO_TIMEOUT_MS 30000

/*
 * Source: connect (tcp, unix: retried until timeout_ms while the listener
 * is not up yet), spawn (exec), create (file) or adopt (fd). The stream
 * channel is in write mode.
 */
int mig_connect(const mig_uri_t *u, int timeout_ms, mig_conn_t **out, hm_error_t *err);

typedef struct mig_cancel mig_cancel_t;

/* How the source connects (mig_connect_ex). */
typedef struct mig_connect_opts {
	int timeout_ms;         /* tcp, unix: keep retrying this long (as mig_connect) */
	mig_cancel_t *cancel;   /* may be NULL: a cancel ends the connect and its
				 * retries at once (HM_E_CANCELLED) */
	/* Called with one line (no newline) before each retry of a refused
	 * connect: the attempt, why, when the next one starts. May be NULL. */
	void (*on_retry)(void *opaque, const char *line);
	void *opaque;
} mig_connect_opts_t;
/*
 * mig_connect with a cancel and a retry report. tcp and unix retry a
 * refused connect (the destination is not listening yet) after 50 ms,
 * doubling up to 500 ms, until timeout_ms has passed.
 */
int mig_connect_ex(const mig_uri_t *u, const mig_connect_opts_t *o, mig_conn_t **out,
		   hm_error_t *err);
/*
 * Destination: bind and listen now for tcp/unix (so the caller can report
 * the address, e.g. the port chosen for tcp:HOST:0); nothing for others.
 */
int mig_listen(const mig_uri_t *u, mig_listener_t **out, hm_error_t *err);
/* The listener's URI with the bound port filled in. */
const mig_uri_t *mig_listener_uri(const mig_listener_t *l);
/* Wait (timeout_ms, -1 = forever) for the source, or open/spawn the input. */
int mig_accept(mig_listener_t *l, int timeout_ms, mig_conn_t **out, hm_error_t *err);

/* Defaults of the destination's limits (docs/limits.md, "Destination"). */
#define MIG_PROBE_TIMEOUT_MS 5000     /* a connection must send QEVM + version 3 within this */
#define MIG_MAX_STRAYS 10u            /* stray connections refused before giving up */
#define MIG_DEADLINE_MS 3600000       /* the whole stream read within this */

/* How the destination waits for, screens and reads its input. */
typedef struct mig_accept_opts {
	/* tcp/unix: wait this long for the migration in all (strays included);
	 * pipes (exec:, fd:): for the first byte. -1 = forever. */
	int timeout_ms;
	/* tcp/unix: a new connection must send the stream's first 8 bytes
	 * (QEVM magic, version 3) within this, else it is a stray (0 = default). */
	int probe_timeout_ms;
	/* tcp/unix: give up (HM_E_PEER) after this many strays (0 = default). */
	unsigned max_strays;
	/* A read that waits this long for a byte fails (HM_E_TIMEOUT); 0 = none. */
	int idle_timeout_ms;
	/* Every read after the stream's first byte ends by then: a trickling
	 * source is cut (HM_E_TIMEOUT); 0 = none. */
	uint64_t deadline_ns;
	/* Called with one line (no newline) for every stray connection refused. */
	void (*on_stray)(void *opaque, const char *line);
	void *opaque;
	/* May be NULL: a cancel ends the wait for a connection, the probe of
	 * one and the wait for a pipe's first byte at once (HM_E_CANCELLED). */
	mig_cancel_t *cancel;
} mig_accept_opts_t;

void mig_accept_opts_default(mig_accept_opts_t *o);
/*
 * mig_accept with limits: on tcp/unix, connections that do not start with
 * QEVM + version 3 within probe_timeout_ms are closed and reported through
 * on_stray, and the listener keeps waiting (up to max_strays of them, within
 * timeout_ms in all); the accepted connection's stream still starts at its
 * first byte. Every input gets the idle timeout and the deadline. *strays
 * (may be NULL) counts the connections refused.
 */
int mig_accept_ex(mig_listener_t *l, const mig_accept_opts_t *o, mig_conn_t **out,
		  unsigned *strays, hm_error_t *err);

enum mig_conn_timeout {
	MIG_CONN_TIMEOUT_NONE = 0,
	MIG_CONN_TIMEOUT_IDLE = 1,     /* a read waited idle_timeout_ms */
	MIG_CONN_TIMEOUT_DEADLINE = 2, /* the deadline passed */
};
/* Which limit (if any) ended a read on a connection from mig_accept_ex. */
enum mig_conn_timeout mig_conn_timed_out(const mig_conn_t *c);
/* True once the connection's deadline has passed (false without one). */
bool mig_conn_deadline_passed(const mig_conn_t *c);
/* Close the listener; removes a unix socket file it created. */
void mig_listener_close(mig_listener_t *l);

/* The stream channel (owned by the connection). */
mig_file_t *mig_conn_file(mig_conn_t *c);
bool mig_conn_has_return_path(const mig_conn_t *c);
const char *mig_conn_desc(const mig_conn_t *c);
/*
 * The descriptor under c's stream (still owned by c), for a relay that
 * polls it with others and moves bytes itself (mig_proxy_run). The bytes an
 * accept probe already took from it are copied to pre (at most 8; handed
 * out once, *pre_len 0 afterwards): they come before what the descriptor
 * yields. On tcp/unix the same descriptor carries the return path. Do not
 * mix with transfers through mig_conn_file(c).
 */
int mig_conn_raw_fd(mig_conn_t *c, uint8_t pre[8], size_t *pre_len);
/*
 * Bytes written to a socket that the peer has not acknowledged yet (kernel
 * send queue, plus what a shaper holds): they still have to cross the link
 * after the stop, so the controller counts them as pending. 0 otherwise.
 */
uint64_t mig_conn_unsent_bytes(const mig_conn_t *c);
/*
 * Source, after the stream's last byte was flushed: half-close the socket so
 * the destination sees the end of input; the return path stays open.
 */
void mig_conn_finish_write(mig_conn_t *c);
/* Unblock any transfer on c from another thread (cancel). */
void mig_conn_abort(mig_conn_t *c);
/*
 * Flush and close; for exec, reap the child (on the source a child that
 * failed is an error: the stream may not have gone anywhere). Returns 0 or
 * the first error. c may be NULL.
 */
int mig_conn_close(mig_conn_t *c, hm_error_t *err);

/*
 * TLS on tcp (docs/tls.md), with QEMU's tls-creds-x509 directory layout.
 * Peers are always verified: the client checks the server's chain and name,
 * the server requires a client certificate from the same CA and, with
 * authz_dn, that exact distinguished name (as GnuTLS prints it, as QEMU's
 * authz compares it).
 */
#define MIG_TLS_CA_CERT "ca-cert.pem"         /* both sides */
#define MIG_TLS_CA_CRL "ca-crl.pem"           /* optional, both sides */
#define MIG_TLS_SERVER_CERT "server-cert.pem" /* destination (listener) */
#define MIG_TLS_SERVER_KEY "server-key.pem"
#define MIG_TLS_CLIENT_CERT "client-cert.pem" /* source; our servers require it */
#define MIG_TLS_CLIENT_KEY "client-key.pem"

enum mig_tls_endpoint { MIG_TLS_CLIENT = 0, MIG_TLS_SERVER = 1 };
typedef struct mig_tls_creds mig_tls_creds_t;

typedef struct mig_tls_opts {
	const char *dir;      /* the credentials directory (--tls-creds) */
	const char *hostname; /* client: the name the server's certificate must
			       * carry; NULL = the URI's host (--tls-hostname) */
	const char *authz_dn; /* server: the only client DN let in; NULL = any
			       * client the CA signed (--tls-authz) */
} mig_tls_opts_t;

/* Load the files ep needs; the message names the directory and the file. */
int mig_tls_creds_load(const mig_tls_opts_t *o, enum mig_tls_endpoint ep, mig_tls_creds_t **out,
		       hm_error_t *err);
void mig_tls_creds_free(mig_tls_creds_t *c);
/*
 * Make every connection accepted on the tcp listener l a TLS session with
 * server credentials c (which must outlive l). The handshake counts as the
 * stray probe: a connection that fails it (plain text, wrong CA, expired or
 * unauthorised certificate) is a stray under mig_accept_ex, an error under
 * mig_accept. HM_E_STATE for a listener that is not tcp or client creds.
 */
int mig_listener_set_tls(mig_listener_t *l, const mig_tls_creds_t *c, hm_error_t *err);
/* mig_connect, then a TLS handshake with client credentials tls (NULL:
 * plain) within the same timeout_ms; tcp only. */
int mig_connect_tls(const mig_uri_t *u, int timeout_ms, const mig_tls_creds_t *tls,
		    mig_conn_t **out, hm_error_t *err);
/* The same with mig_connect_ex's options (cancel, retry report); the
 * handshake itself is bounded by o->timeout_ms, not cancelled. */
int mig_connect_tls_ex(const mig_uri_t *u, const mig_connect_opts_t *o, const mig_tls_creds_t *tls,
		       mig_conn_t **out, hm_error_t *err);

/* Return-path messages (destination to source): types and byte layouts
 * in hptmig/qemu_wire.h (enum mig_rp_type, struct mig_rp_wire_*). */

typedef struct mig_rp_msg {
	uint16_t type;
	/* RESUMED, RESUMED_ROOT (mig_rp_send_resumed picks the type: root) */
	uint8_t digest[32];
	uint8_t root[32];
	bool has_root;    /* RESUMED_ROOT: the destination's block root */
	bool has_digest;  /* digest is the destination's (always for RESUMED) */
	uint64_t valid;   /* valid entries in the loaded table */
	uint64_t bytes;   /* stream bytes the destination read */
	uint64_t load_ns; /* time the destination spent loading */
	/* PONG */
	uint32_t value;
	/* REFUSED */
	int32_t code;
	int64_t offset;
	char msg[512];
} mig_rp_msg_t;

int mig_rp_send_resumed(mig_conn_t *c, const mig_rp_msg_t *m);
int mig_rp_send_refused(mig_conn_t *c, const hm_error_t *e);
int mig_rp_send_pong(mig_conn_t *c, uint32_t value);
/* Wait up to timeout_ms for one message. */
int mig_rp_recv(mig_conn_t *c, int timeout_ms, mig_rp_msg_t *m, hm_error_t *err);


/* ------------------------------------------------------------- controller */

/*
 * Cancel token: any thread may call mig_cancel_request() (e.g. a signal
 * watcher thread on Ctrl-C). The controller checks it between rounds and
 * the connection it registers is shut down so a blocked transfer wakes.
 * Not async-signal-safe: call it from a thread, not a signal handler.
 */
int mig_cancel_new(mig_cancel_t **out);
void mig_cancel_free(mig_cancel_t *c);
void mig_cancel_request(mig_cancel_t *c);
bool mig_cancel_requested(const mig_cancel_t *c);
/*
 * A descriptor (owned by c) that becomes readable (POLLIN) when the cancel
 * is requested and stays readable: a caller's own wait polls it beside its
 * fds, so it ends at once without polling the flag. -1 for NULL.
 */
int mig_cancel_fd(const mig_cancel_t *c);
/* Sleep up to ns, ending early when c is cancelled (true then). c may be NULL. */
bool mig_cancel_wait(mig_cancel_t *c, uint64_t ns);

/* What the precopy policy sees after every round (one iterate call). */
typedef struct mig_policy_stats {
	unsigned rounds;              /* iterate calls so far */
	unsigned iterations;          /* completed passes (a sweep reached the table's end) */
	bool pass_complete;           /* this round completed a pass */
	uint64_t elapsed_ns;          /* since the attempt started */
	uint64_t bytes_sent;          /* stream bytes so far */
	uint64_t bandwidth;           /* measured bytes/s (0 = not measured yet) */
	uint64_t pending_bytes;       /* every live section's pending() plus bytes written
				       * but not yet acknowledged by the peer */
	uint64_t expected_downtime_ns;/* pending_bytes / bandwidth + fixed_downtime_ns */
	uint64_t fixed_downtime_ns;   /* measured cost of the stop that does not depend on
				       * pending work: the root over the block digests,
				       * stopping vCPUs, the return-path round trip */
	uint64_t verify_ns;           /* re-hashing, at the stop, the blocks changed since
				       * they were hashed: their count x the measured cost
				       * of a block (in expected, not in fixed: more
				       * rounds reduce it) */
	uint64_t downtime_limit_ns;
	unsigned max_iterations;      /* 0 = unlimited */
	unsigned throttle;            /* current vCPU throttle percent */
	uint64_t prev_expected_downtime_ns; /* the previous round's (UINT64_MAX: none) */
} mig_policy_stats_t;

enum mig_policy_answer {
	MIG_POLICY_CONTINUE = 0, /* iterate again */
	MIG_POLICY_STOP = 1,     /* stop the guest and complete */
	MIG_POLICY_ABORT = 2,    /* give up (cancel; the guest keeps running) */
};

/*
 * The precopy policy: a replaceable function (Xen's model). Called after
 * every round with the statistics; returns what to do. Must not block.
 */
typedef enum mig_policy_answer (*mig_policy_fn)(void *opaque, const mig_policy_stats_t *st);

/*
 * Ours: stop when a measured bandwidth exists and the expected downtime
 * (every section's pending bytes, the table's included, plus the measured
 * fixed cost) fits the limit; or when the fixed cost alone exceeds the
 * limit and the pending work is already below a tenth of it (iterating
 * more cannot help: stop at the best point); or when max_iterations passes
 * are done (stop anyway).
 */
enum mig_policy_answer mig_policy_default(void *opaque, const mig_policy_stats_t *st);
/*
 * QEMU's stop rule: spapr's htab section reports its pending work as zero,
 * so QEMU stops as soon as the first pass is complete. The baseline the
 * benchmarks compare ours with (`--policy qemu`).
 */
enum mig_policy_answer mig_policy_qemu_stop_rule(void *opaque, const mig_policy_stats_t *st);

/*
 * A progress snapshot for a display (called at most every ~200 ms while
 * iterating, and once at each phase change).
 */
typedef struct mig_progress {
	unsigned attempt;
	unsigned iterations;          /* completed passes */
	unsigned pass;                /* the pass being sent (1-based); at "stop" the
				       * final pass, the same number the report's
				       * iterations + 1 gives */
	unsigned percent;             /* of that pass: never smaller than the last
				       * snapshot's of the same pass (pass 1: the scan
				       * position; later passes: sent / (sent + left)) */
	uint64_t remaining_bytes;     /* what this pass still sends (pass 1: the rest of
				       * the table at the valid density seen so far, not
				       * what was dirtied meanwhile) */
	uint64_t total_bytes;         /* bytes_sent + remaining_bytes */
	uint64_t pending_bytes;       /* all sections' pending (what the stop rule sees) */
	uint64_t pending_entries;     /* remaining_bytes / 16 */
	uint64_t bandwidth;
	uint64_t expected_downtime_ns;
	uint64_t bytes_sent;
	unsigned throttle;
	uint64_t elapsed_ns;
	const char *phase;            /* "setup", "iterate", "stop", "wait" */
} mig_progress_t;

/*
 * A run handle for live settings and status (the library behind QMP's
 * migrate-set-parameters and query-migrate). Created by the caller, given
 * to one run at a time (mig_params_t.live or mig_dest_params_t.live), and
 * usable from any thread while the run goes: every function below is
 * thread-safe (one mutex inside; never held across I/O).
 */
typedef struct mig_live mig_live_t;
int mig_live_new(mig_live_t **out);
void mig_live_free(mig_live_t *l);
/*
 * Change the bandwidth cap (bytes/s, 0 = unlimited) or the downtime limit
 * (ns) of the run. They take effect at the controller's next round (the
 * rate limiter's wait sees a new bandwidth within its 10 ms slice). A value
 * set before the run starts overrides the params'; the params' are used
 * otherwise. Returns 0, or HM_E_RANGE for a downtime limit of 0 or above
 * MIG_DOWNTIME_LIMIT_MAX_NS.
 */
#define MIG_DOWNTIME_LIMIT_MAX_NS (UINT64_C(3600000) * 1000000u) /* 1 h */
int mig_set_max_bandwidth(mig_live_t *l, uint64_t bytes_per_second);
int mig_set_downtime_limit(mig_live_t *l, uint64_t ns);

/* QEMU's MigrationStatus values that hptmig reaches. */
enum mig_run_status {
	MIG_RUN_NONE = 0,   /* "none": no run attached yet */
	MIG_RUN_SETUP,      /* "setup": connecting, header, START; a destination waiting */
	MIG_RUN_ACTIVE,     /* "active": precopy rounds; a destination loading */
	MIG_RUN_DEVICE,     /* "device": the guest is stopped, the final pass goes out */
	MIG_RUN_COMPLETED,  /* "completed" */
	MIG_RUN_FAILED,     /* "failed" */
	MIG_RUN_CANCELLED,  /* "cancelled": a cancel (QMP, signal) ended it */
};
/* QEMU's spelling: "none", "setup", "active", "device", "completed",
 * "failed", "cancelled". Never NULL. */
const char *mig_run_status_name(enum mig_run_status s);

/* An unknown value in mig_status_t. */
#define MIG_UNKNOWN UINT64_MAX

/* A snapshot of a run (mig_live_status). Times in ns; MIG_UNKNOWN = not known. */
typedef struct mig_status {
	enum mig_run_status status;
	bool source;                  /* source side (false: destination) */
	unsigned attempt;             /* source: attempt number (1 = first) */
	unsigned iterations;          /* source: completed passes */
	uint64_t transferred;         /* stream bytes written (source) or read (destination) */
	uint64_t remaining;           /* source: pending bytes (every live section + unacked) */
	uint64_t total;               /* the table's size in bytes (slots x 16) */
	uint64_t bandwidth;           /* measured bytes/s */
	uint64_t dirty_rate;          /* source: table entry changes per second (hypercalls
				       * that change an entry, over the last round's window) */
	uint64_t expected_downtime_ns;
	uint64_t setup_ns;
	uint64_t total_ns;            /* since the run started; up to the end once it ended */
	uint64_t downtime_ns;         /* once the guest was stopped and the run ended */
	unsigned throttle;            /* source: vCPU throttle percent */
	uint64_t max_bandwidth;       /* the settings in force (bytes/s, 0 = unlimited) */
	uint64_t downtime_limit_ns;
} mig_status_t;
/* The latest snapshot, any thread, any time (before a run: status NONE). */
void mig_live_status(mig_live_t *l, mig_status_t *out);

typedef struct mig_params {
	uint64_t max_bandwidth;       /* bytes/s; 0 = unlimited */
	uint64_t downtime_limit_ns;   /* default 300 ms */
	unsigned max_iterations;      /* 0 = unlimited */
	uint64_t timeout_ns;          /* cancel when not stopped by then; 0 = none */
	bool auto_converge;           /* raise the throttle while not converging */
	bool qemu_pure;               /* no hptmig/verify section */
	unsigned retries;             /* new attempts after a failure that left the guest running */
	uint64_t retry_delay_ns;      /* between attempts (default 1 s) */
	enum htab_scan scan;          /* bitmap (ours) or linear (QEMU's) */
	uint64_t round_budget_ns;     /* time budget of one iterate call (default 20 ms) */
	bool stop_catchup;            /* default true: once the policy says STOP, short
				       * rounds that hash what changed until the blocks
				       * left for the stop shrink no more (docs/migration.md,
				       * "The catch-up before the stop"); false keeps the
				       * policy's stop as it is (QEMU's rule in the bench) */
	int connect_timeout_ms;       /* default 10000 */
	int rp_timeout_ms;            /* bound on the wait for the destination's answer
				       * after the stream, whatever arrives (default 30000) */
	uint64_t pause_timeout_ns;    /* bounded wait for vCPUs to stop (default 1 s) */
	const char *machine_name;     /* CONFIGURATION record (default "pseries-10.0") */
	mig_policy_fn policy;         /* NULL = mig_policy_default */
	void *policy_opaque;
	void (*progress)(void *opaque, const mig_progress_t *p);
	void *progress_opaque;
	mig_cancel_t *cancel;         /* may be NULL */
	/* One line (no newline) before every retry: of a refused connect
	 * (mig_connect_opts_t) and of a failed attempt (--retries: attempt n
	 * of N, why, next in S). May be NULL. */
	void (*on_retry)(void *opaque, const char *line);
	void *retry_opaque;
	mig_live_t *live;             /* settings changed during the run, status; may be NULL */
	const mig_tls_creds_t *tls;   /* client credentials: TLS on tcp; NULL = plain */
} mig_params_t;

void mig_params_default(mig_params_t *p);

/*
 * Where the guest is when mig_source_run returns: one answer for every way
 * an attempt can end (docs/migration.md, "What the source reports").
 */
enum mig_guest_state {
	/* Never stopped: the migration failed or was cancelled before the stop. */
	MIG_GUEST_RUNNING_ON_SOURCE = 0,
	/* Stopped, then resumed on the source after a failure from which the
	 * destination cannot have resumed (stream cut, REFUSED, exec failure). */
	MIG_GUEST_RESUMED_ON_SOURCE,
	/* Moved: the destination answered RESUMED with our digest. */
	MIG_GUEST_RESUMED_ON_DESTINATION,
	/* Stream complete, no return path (file:, exec:, fd:): paused on the
	 * source, nobody confirms a resume. */
	MIG_GUEST_PAUSED_ON_SOURCE,
	/* The whole stream went out, then no clear answer (silence until the
	 * bound, connection reset, garbage, cancel): the destination may be
	 * running the guest, so the source stays paused. */
	MIG_GUEST_PAUSED_DESTINATION_UNKNOWN,
	/* The destination answered RESUMED with a digest that is not ours: it
	 * runs a different table; the source stays paused (two guests must
	 * never run). */
	MIG_GUEST_PAUSED_DESTINATION_DIVERGED,
	/* Stopped, the attempt failed so that the destination cannot have
	 * resumed, and the guest's resume op failed (mig_source_run_guest;
	 * the simulated machine's never does): still paused on the source. */
	MIG_GUEST_PAUSED_RESUME_FAILED,
};
/* "running-on-source", "resumed-on-source", "resumed-on-destination",
 * "paused-on-source", "paused-on-source-destination-unknown",
 * "paused-on-source-destination-diverged", "paused-on-source-resume-failed".
 * Never NULL. */
const char *mig_guest_state_name(enum mig_guest_state s);
/* One sentence for the user saying where the guest is. Never NULL. */
const char *mig_guest_state_text(enum mig_guest_state s);

/* Where downtime_ns ends. */
enum mig_downtime_end {
	MIG_DOWNTIME_NOT_STOPPED = 0,   /* the guest was never stopped: 0 */
	MIG_DOWNTIME_DEST_RESUMED,      /* the destination's RESUMED arrived */
	MIG_DOWNTIME_SOURCE_RESUMED,    /* the source resumed the guest */
	MIG_DOWNTIME_LAST_BYTE,         /* no return path: the stream was complete */
	MIG_DOWNTIME_STILL_PAUSED,      /* still paused: up to the report */
};
/* "not-stopped", "destination-resumed", "source-resumed",
 * "last-byte-flushed", "still-paused". Never NULL. */
const char *mig_downtime_end_name(enum mig_downtime_end d);

/* Source statistics (product.md's JSON fields and more). */
typedef struct mig_report {
	int status;                   /* 0 or the error code */
	unsigned attempts;
	enum mig_guest_state guest;   /* where the guest is now */
	enum mig_downtime_end downtime_end; /* where downtime_ns ends */
	uint64_t stopped_total_ns;    /* the guest stopped, over all attempts */
	bool stopped;                 /* the guest was stopped for the final pass */
	bool source_resumed;          /* true only if the source really resumed the guest */
	bool return_path;             /* downtime ends at the destination's RESUMED */
	bool verified;                /* destination's digest equals ours */
	char stop_reason[32];         /* "converged", "max-iterations", "policy" */
	uint64_t total_ns, setup_ns, downtime_ns, expected_downtime_ns;
	uint64_t pause_ns;            /* time to stop the vCPUs */
	uint64_t complete_ns;         /* final pass + FULL + EOF, flushed */
	unsigned iterations, rounds;
	uint64_t bytes_total;
	uint64_t bandwidth;           /* last measured, bytes/s */
	uint64_t pending_at_stop;     /* bytes the policy expected for the final pass */
	uint64_t fixed_downtime_ns;   /* measured fixed cost of the stop (digests, tail,
				       * round trip) */
	uint64_t rtt_ns;              /* measured round trip (PING/PONG); 0 = not measured */
	uint64_t verify_expected_ns;  /* the policy's verify_ns at the stop */
	uint64_t verify_stop_ns;      /* the root at the stop, measured (blocks + root) */
	uint64_t verify_blocks_at_stop; /* blocks re-hashed at the stop */
	uint64_t verify_blocks;       /* blocks of the table (B) */
	uint64_t verify_block_ns;     /* measured cost of hashing one block */
	unsigned catchup_rounds;      /* catch-up rounds between STOP and the pause */
	uint64_t catchup_ns;          /* their time (the guest runs) */
	unsigned catchup_dest_caught_up; /* rounds after which the destination said it
					  * had loaded and hashed them (PONG) in time */
	uint64_t catchup_dest_wait_ns; /* time waiting for that (part of catchup_ns) */
	uint64_t verify_blocks_at_decision; /* blocks the stop would re-hash when the
				       * policy said STOP (before the catch-up) */
	uint64_t final_pass_ns;       /* stop to the final pass (END) flushed */
	unsigned throttle;            /* at the end */
	unsigned htab_shift;
	uint64_t htab_valid, htab_bolted;
	uint8_t digest[HM_SHA256_LEN];
	uint8_t dest_digest[HM_SHA256_LEN];
	uint8_t root[HM_SHA256_LEN];      /* block root (wire-format §5) of our table */
	uint8_t dest_root[HM_SHA256_LEN]; /* the destination's, from RESUMED_ROOT */
	bool has_root, has_dest_root, has_dest_digest;
	htab_save_stats_t htab;       /* entries sent, chunks, bytes, ... */
	uint64_t final_entries;       /* entries sent in the final pass (END) */
	bool resized_at_stop;         /* the guest resized its table after the last
				       * round: the new table went in PARTs at the stop */
} mig_report_t;

/*
 * Migrate the guest (ops, opaque: guest.h) to uri. Its vCPUs may be
 * running (they keep running during precopy). The ops are called as
 * guest.h says: pause (and after_stop, spapr_get) once per attempt that
 * reaches the stop; before_resume and resume only after a failure. On
 * success the guest is left paused (it now lives at the destination) and
 * 0 is returned. On failure before the stop the guest never noticed;
 * after the stop it is resumed unless the destination may be running it (rep->guest says which: no clear answer after the whole
 * stream, or RESUMED with another digest, leave it paused). With retries, a
 * failure that left the guest running (or that the destination explicitly
 * refused) is followed, after retry_delay_ns, by a new attempt with a full
 * pass. rep is always filled, downtime_ns with the real time the guest was
 * stopped. Returns 0 or a negative code (also in err); HM_E_STATE when a
 * required op (table, pause, resume) is missing.
 */
int mig_source_run_guest(const mig_guest_ops_t *ops, void *opaque, const char *uri,
			 const mig_params_t *p, mig_report_t *rep, hm_error_t *err);
/*
 * The simulated machine as a source guest (guest.h): opaque is a machine_t *.
 * Every op is set (throttle, statistics, spapr included) but the two hooks
 * (it needs none) and adopt_table: a destination's simulated machine is
 * mig_dest_run's.
 */
const mig_guest_ops_t *mig_machine_guest_ops(void);
/* mig_source_run_guest(mig_machine_guest_ops(), m, ...). */
int mig_source_run(machine_t *m, const char *uri, const mig_params_t *p, mig_report_t *rep,
		   hm_error_t *err);

/* ------------------------------------------------------------ destination */

/* The destination guest's RAM when the caller names none (as the CLI's guests). */
#define MIG_DEST_RAM_DEFAULT (UINT64_C(2) << 30)

typedef struct mig_dest_params {
	int accept_timeout_ms;        /* wait for a source; -1 = forever (default 600000) */
	/*
	 * The destination guest's RAM (QEMU's -m there; default
	 * MIG_DEST_RAM_DEFAULT). It caps the table: at most
	 * hpt_shift_for_ram(ram_bytes) + 1, what H_RESIZE_HPT_PREPARE would
	 * let such a guest grow to. A larger table is refused before anything
	 * is allocated, at START and at any resize.
	 */
	uint64_t ram_bytes;
	unsigned max_shift;           /* override of that cap (0 = from ram_bytes), 18..36 */
	const char *max_shift_hint;   /* appended to the refusal: how to raise the cap */
	int probe_timeout_ms;         /* see mig_accept_opts_t (default MIG_PROBE_TIMEOUT_MS) */
	unsigned max_strays;          /* see mig_accept_opts_t (default MIG_MAX_STRAYS) */
	int idle_timeout_ms;          /* see mig_accept_opts_t (default MIG_IO_TIMEOUT_MS) */
	uint64_t deadline_ns;         /* the stream loaded within this after its first byte
				       * (default MIG_DEADLINE_MS; 0 = none) */
	void (*on_stray)(void *opaque, const char *line); /* one line per stray connection */
	void *stray_opaque;
	/*
	 * mig_dest_run only (the simulated machine): called on the
	 * destination's thread after RESUMED was sent, with the running guest;
	 * the guest stops when it returns (NULL: at once). The CLI's --run
	 * keeps it running here. It must return, and should watch the cancel.
	 * (mig_dest_run_guest returns with the caller's guest running instead.)
	 */
	void (*on_resumed)(void *opaque, machine_t *m);
	void *resumed_opaque;
	machine_config_t guest;       /* mig_dest_run only: vCPUs/workload/rate/seed of
				       * the resumed simulated guest */
	bool no_resume;               /* load and verify only (no guest op is called) */
	/*
	 * Also compute the flat HTAB digest (wire-format.md §5) of the loaded
	 * table, for people and checks: a walk of the whole table after the
	 * stream ended, inside the downtime (about 190 ms for a 2 GiB table
	 * here). Without it only the block root, kept current while the
	 * stream arrives, is computed; the digest is computed anyway when the
	 * source verifies with one (hptmig/verify version 1, or no section).
	 */
	bool digest;
	mig_cancel_t *cancel;
	mig_live_t *live;             /* status for query-migrate; may be NULL */
} mig_dest_params_t;

void mig_dest_params_default(mig_dest_params_t *p);
/* The largest htab_shift p lets the destination allocate (its max_shift, or
 * hpt_shift_for_ram(ram_bytes) + 1, at most HPT_SHIFT_STREAM_MAX). */
unsigned mig_dest_max_shift(const mig_dest_params_t *p);

typedef struct mig_dest_report {
	int status;
	bool verified;                /* hptmig/verify section present and equal */
	bool resumed;
	bool no_hpt;
	char machine[256];            /* the stream's machine type, hm_escape'd */
	uint64_t total_ns, load_ns, wait_ns;
	uint64_t bytes_total;
	unsigned htab_shift;
	uint64_t htab_valid, htab_bolted;
	uint8_t digest[HM_SHA256_LEN]; /* of the loaded table, before resuming */
	uint8_t root[HM_SHA256_LEN];   /* its block root (wire-format §5) */
	bool has_digest, has_root;     /* digest, root computed */
	uint64_t root_blocks_at_end;  /* blocks re-hashed after the END record */
	uint64_t root_end_ns;         /* that re-hash and the root (in the downtime) */
	htab_load_stats_t htab;
	uint64_t htab_bytes;          /* payload bytes of the spapr/htab records */
	machine_stats_t guest;        /* mig_dest_run: hypercalls issued after the resume */
	uint64_t run_ns;              /* mig_dest_run: the resumed guest ran (on_resumed +
				       * stop); total_ns includes it */
	unsigned max_shift;           /* the cap that applied */
	unsigned strays;              /* stray connections refused before the migration */
} mig_dest_report_t;

/*
 * Accept one migration on l, load it, verify it, hand the loaded table to
 * the guest (ops, opaque: guest.h; adopt_table, spapr_set, before_resume,
 * resume, in that order), answer RESUMED on the return path and return 0
 * with the guest running: it is the caller's from then on. Refuses
 * (answers REFUSED, returns an error, never calls resume) a stream that
 * ends early, fails any check or does not match the source's digest.
 * With p->no_resume (ops may be NULL) no op is called and the table is
 * freed on return. A stream without a table (no-HPT) calls no op either.
 * HM_E_STATE when adopt_table or resume is missing.
 */
int mig_dest_run_guest(mig_listener_t *l, const mig_guest_ops_t *ops, void *opaque,
		       const mig_dest_params_t *p, mig_dest_report_t *rep, hm_error_t *err);
/*
 * mig_dest_run_guest with a simulated machine (p->guest) created on the
 * loaded table, then p->on_resumed, then the machine stops (rep->guest,
 * rep->run_ns) and is freed.
 */
int mig_dest_run(mig_listener_t *l, const mig_dest_params_t *p, mig_dest_report_t *rep,
		 hm_error_t *err);

#ifdef __cplusplus
}
#endif
#endif
