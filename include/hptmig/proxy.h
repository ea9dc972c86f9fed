/* SPDX-License-Identifier: MIT */
/*
 * proxy (migration layer): relay one migration stream from an accepted
 * source connection to a destination, through a filter that checks (and
 * may re-encode) the bytes, and relay the return path the other way. The
 * filter decides what reaches the destination: the relay forwards exactly
 * what it emits, never a byte it has not seen. On a filter error or a
 * transport failure both connections are cut at once. It never prints or
 * exits; memory is the relay's two fixed buffers plus what the filter holds.
 */
#ifndef HPTMIG_PROXY_H
#define HPTMIG_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "hptmig/base.h"
#include "hptmig/migration.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Bytes read from the source at a time, and the return path's buffer. */
#define MIG_PROXY_BUF_SIZE (256u * 1024u)

/*
 * The relay as a filter sees it. mig_proxy_read hands out the source's
 * stream bytes in order (up to len; 0 when the source closed; negative on a
 * failure, the idle timeout or a cancel), relaying the return path while it
 * waits. mig_proxy_emit writes bytes to the destination before it returns
 * (relaying the return path while it waits), so a filter never keeps what
 * it emitted. Both return negative codes with the relay's error set.
 */
typedef struct mig_proxy_sink mig_proxy_sink_t;
ssize_t mig_proxy_read(mig_proxy_sink_t *s, void *buf, size_t len);
int mig_proxy_emit(mig_proxy_sink_t *s, const void *buf, size_t len);
/* Stream bytes read from the source so far (the offset of the next one). */
uint64_t mig_proxy_offset(const mig_proxy_sink_t *s);

/*
 * A filter: run() pulls the whole stream through mig_proxy_read and emits
 * what may be forwarded, never a byte before it is checked. It returns 0
 * once the stream is complete and everything it owed was emitted; then any
 * further byte from the source is an error (the relay checks). It returns
 * a negative code with err naming record, field and offset when the stream
 * is bad (or when the read or emit it called failed: return that code):
 * the relay then cuts both connections. Called once, on the relay's thread.
 */
typedef struct mig_proxy_filter {
	int (*run)(void *opaque, mig_proxy_sink_t *s, hm_error_t *err);
	void *opaque;
} mig_proxy_filter_t;

/* The identity filter: forwards every byte as it arrives, checks nothing,
 * and the stream ends when the source closes. */
extern const mig_proxy_filter_t mig_proxy_filter_none;

typedef struct mig_proxy_params {
	/* A wait for the next byte in either direction that lasts this long
	 * while something is still owed ends the relay (HM_E_TIMEOUT). */
	int idle_timeout_ms;     /* default MIG_IO_TIMEOUT_MS */
	/* After the stream is complete and forwarded: how long to keep relaying
	 * the return path until both sides have closed. */
	int linger_ms;           /* default MIG_IO_TIMEOUT_MS */
	/* Called about every progress_ms while the stream flows (may be NULL). */
	void (*progress)(void *opaque, uint64_t in_bytes, uint64_t out_bytes);
	void *opaque;
	int progress_ms;         /* default 1000 */
	mig_cancel_t *cancel;    /* may be NULL */
} mig_proxy_params_t;

void mig_proxy_params_default(mig_proxy_params_t *p);

typedef struct mig_proxy_report {
	uint64_t in_bytes;       /* stream bytes read from the source */
	uint64_t out_bytes;      /* stream bytes written to the destination */
	uint64_t rp_bytes;       /* return-path bytes relayed destination -> source */
	bool return_path;        /* both ends are sockets: the return path was relayed */
	bool stream_done;        /* the filter's run() returned 0: the stream was complete */
	bool filter_failed;      /* the filter refused the stream (not a transport failure) */
	bool cut;                /* both connections were cut (error) */
	uint64_t duration_ns;    /* from the relay's start to its end */
	hm_error_t error;        /* why it failed (code 0: it did not) */
} mig_proxy_report_t;

/*
 * Relay src's stream through f to dst, and dst's return path to src while
 * both are sockets, until the source has closed, the stream is complete and
 * forwarded, and the destination has closed or linger_ms has passed.
 * Returns 0, or a negative code (also in rep->error and err): then both
 * connections were shut down at once (the destination sees its input end
 * in the middle of the stream: an aborted migration). The caller still
 * closes both connections. The relay uses the descriptors under the
 * connections (mig_conn_raw_fd); the connections' channels are not used.
 */
int mig_proxy_run(mig_conn_t *src, mig_conn_t *dst, const mig_proxy_filter_t *f,
		  const mig_proxy_params_t *p, mig_proxy_report_t *rep, hm_error_t *err);

#ifdef __cplusplus
}
#endif
#endif
