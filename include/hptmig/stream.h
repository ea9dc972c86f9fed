/* SPDX-License-Identifier: MIT */
/*
 * stream: the buffered migration channel (mig_file_t) over a file
 * descriptor (file, pipe, socket), a memory buffer or caller-supplied ops.
 * Big-endian put/get, a first-error-wins latch that records the byte offset,
 * byte counters and a 100 ms-window rate limiter. It never prints, exits,
 * aborts, or blocks forever on a peer that has gone away.
 */
#ifndef HPTMIG_STREAM_H
#define HPTMIG_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "hptmig/base.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Threading: a mig_file_t is used by one thread at a time, except
 * mig_file_shutdown() and mig_file_set_rate_limit(), which any thread may
 * call at any time (to cancel a blocked transfer / change the limit).
 *
 * Errors: every operation that fails latches the first error (code, byte
 * offset where it happened, message) in the channel. After that every put is
 * a no-op, every get returns zero (and fills buffers with zeros), and
 * mig_file_error() returns the first error. So a handler can issue a run of
 * gets and check once at the end. Codes: HM_E_TRUNCATED for end of input in
 * the middle of a get, -errno for system failures (-EPIPE, -ECONNRESET...),
 * HM_E_TIMEOUT when a socket receive/send timeout (SO_RCVTIMEO/SO_SNDTIMEO)
 * expires, HM_E_CANCELLED after mig_file_shutdown(), -ENOMEM when a memory
 * writer cannot grow. EINTR is retried; short reads/writes are continued.
 *
 * Offsets: mig_file_offset() is the number of bytes consumed by gets (read
 * mode) or produced by puts (write mode) since the channel was opened,
 * i.e. the byte offset in the stream of the next byte. Errors record this
 * offset at the moment they are latched (for a failed get: the offset of the
 * first byte of the value that could not be read).
 */

enum mig_file_mode {
	MIG_FILE_READ = 0,
	MIG_FILE_WRITE = 1,
};

/* Flags for mig_file_open_fd / mig_file_open_ops. */
#define MIG_FILE_OWN_FD 0x1u  /* close the fd (or call ops->close) in mig_file_close */

/* Default buffer size of fd and ops backends (bytes). */
#define MIG_FILE_BUF_SIZE 65536
/* Puts and gets of at least this many bytes bypass the buffer (no copy). */
#define MIG_FILE_DIRECT_MIN 8192
/* Rate-limiter window, as QEMU's (BUFFER_DELAY = 100 ms). */
#define MIG_FILE_RATE_WINDOW_NS 100000000ull

/*
 * Caller-supplied backend (e.g. a TLS session, an accounting wrapper).
 * read: read up to len bytes; return >0 bytes read, 0 at end of input,
 *       -errno on failure (-EINTR is retried, -EAGAIN means timeout).
 * writev: write up to the sum of the iovecs; return bytes written (>0) or
 *       -errno; short writes are continued by the channel.
 * shutdown: optional, unblock pending read/write from another thread.
 * close: optional, called by mig_file_close only with MIG_FILE_OWN_FD.
 */
typedef struct mig_file_ops {
	ssize_t (*read)(void *opaque, void *buf, size_t len);
	ssize_t (*writev)(void *opaque, const struct iovec *iov, int iovcnt);
	void (*shutdown)(void *opaque);
	int (*close)(void *opaque);
} mig_file_ops_t;

/*
 * Hot part of a channel, visible only so that the get/put fast paths can be
 * inline. Not part of the API: do not touch the fields. Invariant kept by
 * stream.c: in read mode [rpos, rend) are the buffered bytes not consumed
 * yet; in write mode [wpos, wend) is the free buffer space. Once an error is
 * latched both ranges are empty, so every fast path falls to the slow path,
 * which sees the error.
 */
struct mig_file_hot {
	const uint8_t *rpos, *rend;
	uint8_t *wpos, *wend;
};

typedef struct mig_file mig_file_t;

/* ---------------------------------------------------------- constructors */

/*
 * A channel over fd (file, pipe or socket). mode: MIG_FILE_READ or
 * MIG_FILE_WRITE. flags: MIG_FILE_OWN_FD to close fd in mig_file_close.
 * Writes to sockets use MSG_NOSIGNAL (a closed peer gives -EPIPE, never
 * SIGPIPE); for pipes the caller should ignore SIGPIPE.
 * Returns 0 and *out, or -ENOMEM / -EINVAL.
 */
int mig_file_open_fd(int fd, enum mig_file_mode mode, unsigned flags, mig_file_t **out);

/* A channel over caller-supplied ops (see mig_file_ops_t); opaque is theirs. */
int mig_file_open_ops(const mig_file_ops_t *ops, void *opaque, enum mig_file_mode mode,
		      unsigned flags, mig_file_t **out);

/*
 * A growable memory writer. initial: starting capacity (0 = default). The
 * bytes are available at any time through mig_file_mem_data (no flush
 * needed) or mig_file_mem_take.
 */
int mig_file_open_mem_writer(size_t initial, mig_file_t **out);

/*
 * A reader over the caller's buffer (zero copy: the buffer must outlive the
 * channel and stay unchanged). Reading past len latches HM_E_TRUNCATED.
 */
int mig_file_open_mem_reader(const void *buf, size_t len, mig_file_t **out);

/*
 * Flush (write mode), close the fd when owned, copy the first error (if any)
 * into err, and free f. Returns 0 or the first error's code (a flush
 * failure here is also reported). f may be NULL.
 */
int mig_file_close(mig_file_t *f, hm_error_t *err);

/* ----------------------------------------------------------- memory writer */

/* The bytes written so far by a memory writer (valid until the next put). */
const uint8_t *mig_file_mem_data(const mig_file_t *f, size_t *len);
/*
 * Take ownership of a memory writer's bytes (free() them). The writer is
 * empty afterwards but keeps its offset. Returns 0, or -EINVAL when f is
 * not a memory writer, or its latched error.
 */
int mig_file_mem_take(mig_file_t *f, uint8_t **data, size_t *len);

/* ----------------------------------------------------------------- errors */

/* The first error, or NULL while there is none. Owned by f. */
const hm_error_t *mig_file_error(const mig_file_t *f);
/* 0 or the first error's code. */
int mig_file_status(const mig_file_t *f);
/*
 * Latch an error at the current offset (a section handler that found a bad
 * value). Returns code (so `return mig_file_set_error(...)` reads well); if
 * an error is already latched, that one is kept and its code returned.
 */
int mig_file_set_error(mig_file_t *f, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Same, at an explicit offset (e.g. the start of a bad record). */
int mig_file_set_error_at(mig_file_t *f, int code, int64_t offset, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* Latch a copy of e (when e->code != 0). Returns the latched code. */
int mig_file_latch_error(mig_file_t *f, const hm_error_t *e);
/*
 * Add context in front of the latched error's message ("section 'x': ...")
 * as the error travels up through the layers of stream code; a no-op when
 * no error is latched. Returns the latched code (0 when none).
 */
int mig_file_error_prefix(mig_file_t *f, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/*
 * Copy the latched error into err (when err is not NULL and still clear):
 * what a public entry point does once, on its way out. Returns the latched
 * code (0 when none).
 */
int mig_file_error_copy(const mig_file_t *f, hm_error_t *err);
/*
 * Cancel: any thread may call this. The channel latches HM_E_CANCELLED,
 * and a read or write blocked in the backend is woken (shutdown(2) on a
 * socket, ops->shutdown for ops backends). Files and pipes cannot be woken
 * that way; they fail at the next call into the backend.
 */
void mig_file_shutdown(mig_file_t *f);

/* ----------------------------------------------------------------- counters */

/* Byte offset in the stream (bytes consumed/produced so far). */
uint64_t mig_file_offset(const mig_file_t *f);
/* Remember the current offset; mig_file_since_mark counts bytes after it. */
void mig_file_mark(mig_file_t *f);
uint64_t mig_file_since_mark(const mig_file_t *f);
enum mig_file_mode mig_file_mode(const mig_file_t *f);

/* ------------------------------------------------------------- rate limit */

/*
 * At most bytes_per_second / 10 bytes per 100 ms window (0 = unlimited, the
 * default). The limiter only answers questions; it never blocks a put.
 * Thread-safe (atomic), may be changed while a transfer runs.
 */
void mig_file_set_rate_limit(mig_file_t *f, uint64_t bytes_per_second);
uint64_t mig_file_rate_limit(const mig_file_t *f);
/*
 * "May I send more now?": true when the bytes written in the current window
 * reached its budget (a new window starts automatically once 100 ms have
 * passed), and also when an error is latched (no more work is useful).
 * Ask before each unit of work. Bytes beyond a window's budget (one large
 * put) are carried into the next windows.
 */
bool mig_file_rate_limit_exceeded(mig_file_t *f);
/* Nanoseconds until the current window ends (0 when not limited / over). */
uint64_t mig_file_rate_wait_ns(mig_file_t *f);
/*
 * Flush, then sleep until the next window starts and open it. Returns at
 * once when unlimited. Returns 0 or the latched error (e.g. cancelled).
 */
int mig_file_rate_wait(mig_file_t *f);

/* ------------------------------------------------------------------- write */

void mig_file_put_slow(mig_file_t *f, const void *buf, size_t len);

/* Write len bytes. Buffers of MIG_FILE_DIRECT_MIN bytes or more go straight
 * to the backend together with what is buffered (one writev, no copy). */
void mig_file_put_buffer(mig_file_t *f, const void *buf, size_t len);
/* Push buffered bytes to the backend. Returns 0 or the latched error. */
int mig_file_flush(mig_file_t *f);

static inline void mig_file_put_u8(mig_file_t *f, uint8_t v)
{
	struct mig_file_hot *h = (struct mig_file_hot *)(void *)f;
	if (h->wend - h->wpos >= 1) {
		*h->wpos++ = v;
		return;
	}
	mig_file_put_slow(f, &v, 1);
}
static inline void mig_file_put_be16(mig_file_t *f, uint16_t v)
{
	struct mig_file_hot *h = (struct mig_file_hot *)(void *)f;
	if (h->wend - h->wpos >= 2) {
		hm_store_be16(h->wpos, v);
		h->wpos += 2;
		return;
	}
	uint8_t b[2];
	hm_store_be16(b, v);
	mig_file_put_slow(f, b, 2);
}
static inline void mig_file_put_be32(mig_file_t *f, uint32_t v)
{
	struct mig_file_hot *h = (struct mig_file_hot *)(void *)f;
	if (h->wend - h->wpos >= 4) {
		hm_store_be32(h->wpos, v);
		h->wpos += 4;
		return;
	}
	uint8_t b[4];
	hm_store_be32(b, v);
	mig_file_put_slow(f, b, 4);
}
static inline void mig_file_put_be64(mig_file_t *f, uint64_t v)
{
	struct mig_file_hot *h = (struct mig_file_hot *)(void *)f;
	if (h->wend - h->wpos >= 8) {
		hm_store_be64(h->wpos, v);
		h->wpos += 8;
		return;
	}
	uint8_t b[8];
	hm_store_be64(b, v);
	mig_file_put_slow(f, b, 8);
}

/* ------------------------------------------------------------------- read */

/*
 * Slow path of every get: refill, then copy len bytes into buf; on end of
 * input or error, latch and zero-fill buf. Returns true when buf was filled.
 */
bool mig_file_get_slow(mig_file_t *f, void *buf, size_t len);

/* Read exactly len bytes into buf (zero-filled on error). Large reads go
 * straight from the backend into buf. Returns len, or 0 on error. */
size_t mig_file_get_buffer(mig_file_t *f, void *buf, size_t len);
/*
 * Zero-copy access: a pointer to the next len bytes, consumed, valid until
 * the next call on f; NULL (with HM_E_TRUNCATED or the error latched) when
 * they are not available. Memory readers serve any len; fd readers up to
 * MIG_FILE_BUF_SIZE (larger len latches -EINVAL).
 */
const uint8_t *mig_file_get_ptr(mig_file_t *f, size_t len);
/* Consume len bytes without looking at them. Returns 0 or the error. */
int mig_file_skip(mig_file_t *f, uint64_t len);
/*
 * The next byte without consuming it: 0..255, or -1 at a clean end of input
 * or when an error is latched. Reaching the end does not latch an error.
 */
int mig_file_peek_u8(mig_file_t *f);
/* True at a clean end of input (no more bytes, no error). */
bool mig_file_eof(mig_file_t *f);
/*
 * Copy up to len of the next bytes into buf without consuming them (len at
 * most MIG_FILE_BUF_SIZE for fd readers). Returns how many were available
 * (fewer near the end of input); never latches end of input as an error.
 */
size_t mig_file_peek_buffer(mig_file_t *f, void *buf, size_t len);

/*
 * The bytes already buffered after the read position, without reading any
 * more: a pointer and their count in *n (0 in write mode or after an
 * error). Valid until the next call on f. A parser may work through them in
 * place and then consume what it used with mig_file_get_ptr(f, used), which
 * for used <= *n never refills.
 */
static inline const uint8_t *mig_file_buffered(mig_file_t *f, size_t *n)
{
	struct mig_file_hot *h = (struct mig_file_hot *)(void *)f;
	*n = (size_t)(h->rend - h->rpos);
	return h->rpos;
}

static inline uint8_t mig_file_get_u8(mig_file_t *f)
{
	struct mig_file_hot *h = (struct mig_file_hot *)(void *)f;
	if (h->rend - h->rpos >= 1)
		return *h->rpos++;
	uint8_t v;
	mig_file_get_slow(f, &v, 1);
	return v;
}
static inline uint16_t mig_file_get_be16(mig_file_t *f)
{
	struct mig_file_hot *h = (struct mig_file_hot *)(void *)f;
	uint8_t b[2];
	if (h->rend - h->rpos >= 2) {
		uint16_t v = hm_load_be16(h->rpos);
		h->rpos += 2;
		return v;
	}
	mig_file_get_slow(f, b, 2);
	return hm_load_be16(b);
}
static inline uint32_t mig_file_get_be32(mig_file_t *f)
{
	struct mig_file_hot *h = (struct mig_file_hot *)(void *)f;
	uint8_t b[4];
	if (h->rend - h->rpos >= 4) {
		uint32_t v = hm_load_be32(h->rpos);
		h->rpos += 4;
		return v;
	}
	mig_file_get_slow(f, b, 4);
	return hm_load_be32(b);
}
static inline uint64_t mig_file_get_be64(mig_file_t *f)
{
	struct mig_file_hot *h = (struct mig_file_hot *)(void *)f;
	uint8_t b[8];
	if (h->rend - h->rpos >= 8) {
		uint64_t v = hm_load_be64(h->rpos);
		h->rpos += 8;
		return v;
	}
	mig_file_get_slow(f, b, 8);
	return hm_load_be64(b);
}

#ifdef __cplusplus
}
#endif
#endif
