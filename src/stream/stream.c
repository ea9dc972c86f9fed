/* SPDX-License-Identifier: MIT */
/*
 * The buffered migration channel: backends (fd, caller ops, memory reader,
 * growable memory writer), the slow paths behind the inline get/put fast
 * paths of stream.h, the first-error latch and the rate limiter. It must
 * never block forever on a closed peer, never raise SIGPIPE on a socket and
 * never read or write outside its buffers whatever the input.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hptmig/stream.h"

enum backend { BK_FD, BK_OPS, BK_MEMR, BK_MEMW };

/*
 * Offsets: in read mode offset = base_off + (hot.rpos - rbase); in write
 * mode offset = base_off + (hot.wpos - buf). base_off counts bytes that
 * left the buffer (sent to the backend, taken from a memory writer, or read
 * past in read mode). All fields except `cancelled` and `rate_limit` belong
 * to the thread using the channel.
 */
struct mig_file {
	struct mig_file_hot hot; /* first: the inline fast paths cast f to it */
	enum mig_file_mode mode;
	enum backend kind;
	unsigned flags;
	int fd;
	bool is_socket;         /* set at open, then constant (mig_file_shutdown reads it) */
	bool no_sendmsg;        /* owner thread: sendmsg said ENOTSOCK, use writev */
	const mig_file_ops_t *ops;
	void *ops_opaque;
	uint8_t *buf;           /* fd/ops buffer, or memory writer bytes */
	size_t cap;
	const uint8_t *rbase;   /* read mode: stream offset base_off is here */
	uint64_t base_off;
	uint64_t mark;
	bool eof;               /* the backend reported end of input */
	bool failed;
	hm_error_t err;
	atomic_bool cancelled;  /* set by mig_file_shutdown from any thread */
	_Atomic uint64_t rate_limit; /* bytes per second, 0 = none; any thread */
	uint64_t win_start_ns;  /* rate window start (owner thread) */
	uint64_t win_off;       /* offset counted as the window's start */
	/* Offset of the value a get/skip is reading (for backend errors), or UINT64_MAX. */
	uint64_t op_start;
};

_Static_assert(offsetof(struct mig_file, hot) == 0, "hot part must be first");

/* ------------------------------------------------------------ helpers */

uint64_t mig_file_offset(const mig_file_t *f)
{
	if (f->mode == MIG_FILE_READ)
		return f->base_off + (uint64_t)(f->hot.rpos - f->rbase);
	return f->base_off + (uint64_t)(f->hot.wpos - f->buf);
}

static void latch_v(mig_file_t *f, int code, int64_t off, const char *fmt, va_list ap)
	__attribute__((format(printf, 4, 0)));
static void latch_v(mig_file_t *f, int code, int64_t off, const char *fmt, va_list ap)
{
	if (f->failed)
		return;
	hm_error_setv(&f->err, code, off, fmt, ap);
	f->failed = true;
	/* Empty both fast-path windows so every get/put reaches the slow path. */
	f->hot.rend = f->hot.rpos;
	f->hot.wend = f->hot.wpos;
}

static void latch(mig_file_t *f, int code, int64_t off, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void latch(mig_file_t *f, int code, int64_t off, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	latch_v(f, code, off, fmt, ap);
	va_end(ap);
}

static bool check_cancel(mig_file_t *f)
{
	if (atomic_load(&f->cancelled)) {
		latch(f, HM_E_CANCELLED, (int64_t)mig_file_offset(f), "migration channel cancelled");
		return true;
	}
	return false;
}

static mig_file_t *alloc_file(enum mig_file_mode mode, enum backend kind)
{
	mig_file_t *f = calloc(1, sizeof(*f));
	if (!f)
		return NULL;
	f->mode = mode;
	f->kind = kind;
	f->fd = -1;
	atomic_init(&f->cancelled, false);
	atomic_init(&f->rate_limit, 0);
	f->win_start_ns = hm_now_ns();
	f->op_start = UINT64_MAX;
	return f;
}

static int setup_buffer(mig_file_t *f)
{
	f->cap = MIG_FILE_BUF_SIZE;
	f->buf = malloc(f->cap);
	if (!f->buf)
		return -ENOMEM;
	if (f->mode == MIG_FILE_READ) {
		f->rbase = f->buf;
		f->hot.rpos = f->hot.rend = f->buf;
	} else {
		f->hot.wpos = f->buf;
		f->hot.wend = f->buf + f->cap;
	}
	return 0;
}

/* ------------------------------------------------------- constructors */

int mig_file_open_fd(int fd, enum mig_file_mode mode, unsigned flags, mig_file_t **out)
{
	if (!out || fd < 0 || (mode != MIG_FILE_READ && mode != MIG_FILE_WRITE))
		return -EINVAL;
	mig_file_t *f = alloc_file(mode, BK_FD);
	if (!f)
		return -ENOMEM;
	f->fd = fd;
	f->flags = flags;
	struct stat st;
	f->is_socket = fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
	if (setup_buffer(f) != 0) {
		free(f);
		return -ENOMEM;
	}
	*out = f;
	return 0;
}

int mig_file_open_ops(const mig_file_ops_t *ops, void *opaque, enum mig_file_mode mode,
		      unsigned flags, mig_file_t **out)
{
	if (!out || !ops || (mode == MIG_FILE_READ && !ops->read) ||
	    (mode == MIG_FILE_WRITE && !ops->writev) ||
	    (mode != MIG_FILE_READ && mode != MIG_FILE_WRITE))
		return -EINVAL;
	mig_file_t *f = alloc_file(mode, BK_OPS);
	if (!f)
		return -ENOMEM;
	f->ops = ops;
	f->ops_opaque = opaque;
	f->flags = flags;
	if (setup_buffer(f) != 0) {
		free(f);
		return -ENOMEM;
	}
	*out = f;
	return 0;
}

int mig_file_open_mem_writer(size_t initial, mig_file_t **out)
{
	if (!out)
		return -EINVAL;
	mig_file_t *f = alloc_file(MIG_FILE_WRITE, BK_MEMW);
	if (!f)
		return -ENOMEM;
	f->cap = initial ? initial : 4096;
	f->buf = malloc(f->cap);
	if (!f->buf) {
		free(f);
		return -ENOMEM;
	}
	f->hot.wpos = f->buf;
	f->hot.wend = f->buf + f->cap;
	*out = f;
	return 0;
}

int mig_file_open_mem_reader(const void *buf, size_t len, mig_file_t **out)
{
	if (!out || (!buf && len))
		return -EINVAL;
	mig_file_t *f = alloc_file(MIG_FILE_READ, BK_MEMR);
	if (!f)
		return -ENOMEM;
	static const uint8_t empty[1];
	const uint8_t *p = buf ? (const uint8_t *)buf : empty;
	f->rbase = p;
	f->hot.rpos = p;
	f->hot.rend = p + len;
	f->eof = true;
	*out = f;
	return 0;
}

/* ------------------------------------------------------------ backends */

/* Read up to n bytes: >0, 0 at end of input, <0 with the error latched. */
static ssize_t backend_read(mig_file_t *f, void *p, size_t n)
{
	for (;;) {
		if (check_cancel(f))
			return f->err.code;
		ssize_t r;
		if (f->kind == BK_FD)
			r = read(f->fd, p, n);
		else
			r = f->ops->read(f->ops_opaque, p, n);
		int e = 0;
		if (f->kind == BK_FD && r < 0)
			e = errno;
		else if (f->kind == BK_OPS && r < 0)
			e = (int)-r;
		if (r >= 0) {
			/* A shutdown from another thread shows up as end of input. */
			if (r == 0 && check_cancel(f))
				return f->err.code;
			if (r == 0)
				f->eof = true;
			return r;
		}
		if (e == EINTR)
			continue;
		int64_t off = (int64_t)(f->op_start != UINT64_MAX ? f->op_start : mig_file_offset(f));
		if (e == EAGAIN || e == EWOULDBLOCK)
			latch(f, HM_E_TIMEOUT, off, "migration channel: read timed out");
		else
			latch(f, -e, off, "migration channel: read failed: %s", strerror(e));
		return f->err.code;
	}
}

/*
 * Write every byte of iov[0..cnt) (short writes continued). off is the
 * stream offset of the first byte, for error reports. Returns 0 or the
 * latched error.
 */
static int backend_writev(mig_file_t *f, struct iovec *iov, int cnt, uint64_t off)
{
	while (cnt > 0) {
		if (iov->iov_len == 0) {
			iov++;
			cnt--;
			continue;
		}
		if (check_cancel(f))
			return f->err.code;
		ssize_t r;
		int e = 0;
		if (f->kind == BK_OPS) {
			r = f->ops->writev(f->ops_opaque, iov, cnt);
			if (r < 0)
				e = (int)-r;
		} else if (f->is_socket && !f->no_sendmsg) {
			struct msghdr mh = { .msg_iov = iov, .msg_iovlen = (size_t)cnt };
			r = sendmsg(f->fd, &mh, MSG_NOSIGNAL);
			if (r < 0)
				e = errno;
			if (r < 0 && e == ENOTSOCK) {
				f->no_sendmsg = true;
				continue;
			}
		} else {
			r = writev(f->fd, iov, cnt);
			if (r < 0)
				e = errno;
		}
		if (r < 0) {
			if (e == EINTR)
				continue;
			if (e == EAGAIN || e == EWOULDBLOCK)
				latch(f, HM_E_TIMEOUT, (int64_t)off, "migration channel: write timed out");
			else
				latch(f, -e, (int64_t)off, "migration channel: write failed: %s",
				      strerror(e));
			return f->err.code;
		}
		if (r == 0) {
			latch(f, -EIO, (int64_t)off, "migration channel: write made no progress");
			return f->err.code;
		}
		size_t done = (size_t)r;
		off += done;
		while (cnt > 0 && done >= iov->iov_len) {
			done -= iov->iov_len;
			iov++;
			cnt--;
		}
		if (cnt > 0) {
			iov->iov_base = (uint8_t *)iov->iov_base + done;
			iov->iov_len -= done;
		}
	}
	return 0;
}

/* ------------------------------------------------------------------ errors */

const hm_error_t *mig_file_error(const mig_file_t *f)
{
	return f->failed ? &f->err : NULL;
}

int mig_file_status(const mig_file_t *f)
{
	return f->failed ? f->err.code : 0;
}

int mig_file_set_error(mig_file_t *f, int code, const char *fmt, ...)
{
	if (!f->failed && code != 0) {
		va_list ap;
		va_start(ap, fmt);
		latch_v(f, code, (int64_t)mig_file_offset(f), fmt, ap);
		va_end(ap);
	}
	return f->failed ? f->err.code : code;
}

int mig_file_set_error_at(mig_file_t *f, int code, int64_t offset, const char *fmt, ...)
{
	if (!f->failed && code != 0) {
		va_list ap;
		va_start(ap, fmt);
		latch_v(f, code, offset, fmt, ap);
		va_end(ap);
	}
	return f->failed ? f->err.code : code;
}

int mig_file_latch_error(mig_file_t *f, const hm_error_t *e)
{
	if (e && e->code != 0 && !f->failed)
		latch(f, e->code, e->offset, "%s", e->msg);
	return f->failed ? f->err.code : 0;
}

int mig_file_error_prefix(mig_file_t *f, const char *fmt, ...)
{
	if (!f->failed)
		return 0;
	char pre[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(pre, sizeof(pre), fmt, ap);
	va_end(ap);
	hm_error_prefix(&f->err, "%s", pre);
	return f->err.code;
}

int mig_file_error_copy(const mig_file_t *f, hm_error_t *err)
{
	if (!f->failed)
		return 0;
	if (err && err->code == 0)
		*err = f->err;
	return f->err.code;
}

void mig_file_shutdown(mig_file_t *f)
{
	atomic_store(&f->cancelled, true);
	if (f->kind == BK_FD && f->is_socket)
		shutdown(f->fd, SHUT_RDWR);
	else if (f->kind == BK_OPS && f->ops->shutdown)
		f->ops->shutdown(f->ops_opaque);
}

/* --------------------------------------------------------------- counters */

void mig_file_mark(mig_file_t *f)
{
	f->mark = mig_file_offset(f);
}

uint64_t mig_file_since_mark(const mig_file_t *f)
{
	return mig_file_offset(f) - f->mark;
}

enum mig_file_mode mig_file_mode(const mig_file_t *f)
{
	return f->mode;
}

/* ------------------------------------------------------------- rate limit */

void mig_file_set_rate_limit(mig_file_t *f, uint64_t bytes_per_second)
{
	atomic_store(&f->rate_limit, bytes_per_second);
}

uint64_t mig_file_rate_limit(const mig_file_t *f)
{
	return atomic_load(&((mig_file_t *)(uintptr_t)f)->rate_limit);
}

static uint64_t window_budget(uint64_t bps)
{
	uint64_t b = bps / (1000000000ull / MIG_FILE_RATE_WINDOW_NS);
	return b ? b : 1;
}

/*
 * Roll the window forward to now. Bytes sent beyond a window's budget are
 * carried into the following windows (so one big put cannot exceed the
 * long-term rate); unused budget is not saved up (no bursts).
 */
static void rate_roll(mig_file_t *f, uint64_t bps, uint64_t now)
{
	if (now - f->win_start_ns < MIG_FILE_RATE_WINDOW_NS)
		return;
	uint64_t windows = (now - f->win_start_ns) / MIG_FILE_RATE_WINDOW_NS;
	uint64_t budget = window_budget(bps);
	uint64_t off = mig_file_offset(f);
	uint64_t used = off - f->win_off;
	uint64_t credit = windows > UINT64_MAX / budget ? UINT64_MAX : windows * budget;
	uint64_t excess = used > credit ? used - credit : 0;
	if (excess > used) /* cannot happen; keeps the arithmetic obviously safe */
		excess = used;
	f->win_off = off - excess;
	f->win_start_ns += windows * MIG_FILE_RATE_WINDOW_NS;
}

bool mig_file_rate_limit_exceeded(mig_file_t *f)
{
	uint64_t bps = mig_file_rate_limit(f);
	if (f->failed)
		return true;
	if (bps == 0)
		return false;
	rate_roll(f, bps, hm_now_ns());
	return mig_file_offset(f) - f->win_off >= window_budget(bps);
}

uint64_t mig_file_rate_wait_ns(mig_file_t *f)
{
	if (f->failed || !mig_file_rate_limit_exceeded(f))
		return 0;
	uint64_t now = hm_now_ns();
	uint64_t end = f->win_start_ns + MIG_FILE_RATE_WINDOW_NS;
	return end > now ? end - now : 0;
}

int mig_file_rate_wait(mig_file_t *f)
{
	if (f->mode == MIG_FILE_WRITE)
		mig_file_flush(f);
	while (!f->failed && mig_file_rate_limit_exceeded(f)) {
		uint64_t ns = mig_file_rate_wait_ns(f);
		/* Sleep in slices so that a cancel is seen within 10 ms. */
		if (ns > 10000000ull)
			ns = 10000000ull;
		if (check_cancel(f))
			break;
		hm_sleep_ns(ns ? ns : 100000ull);
	}
	return mig_file_status(f);
}

/* -------------------------------------------------------------------- write */

int mig_file_flush(mig_file_t *f)
{
	if (f->mode != MIG_FILE_WRITE || f->kind == BK_MEMW || f->failed)
		return mig_file_status(f);
	size_t n = (size_t)(f->hot.wpos - f->buf);
	if (n == 0)
		return 0;
	struct iovec iov = { .iov_base = f->buf, .iov_len = n };
	int rc = backend_writev(f, &iov, 1, f->base_off);
	if (rc == 0) {
		f->base_off += n;
		f->hot.wpos = f->buf;
	}
	return rc;
}

static bool memw_grow(mig_file_t *f, size_t need)
{
	size_t used = (size_t)(f->hot.wpos - f->buf);
	if (need > SIZE_MAX - used) {
		latch(f, -ENOMEM, (int64_t)mig_file_offset(f), "memory stream too large");
		return false;
	}
	size_t cap = f->cap ? f->cap : 4096;
	while (cap - used < need) {
		if (cap > SIZE_MAX / 2) {
			cap = used + need;
			break;
		}
		cap *= 2;
	}
	uint8_t *nb = realloc(f->buf, cap);
	if (!nb) {
		latch(f, -ENOMEM, (int64_t)mig_file_offset(f),
		      "memory stream: cannot grow to %zu bytes", cap);
		return false;
	}
	f->buf = nb;
	f->cap = cap;
	f->hot.wpos = nb + used;
	f->hot.wend = nb + cap;
	return true;
}

void mig_file_put_slow(mig_file_t *f, const void *buf, size_t len)
{
	if (f->failed || len == 0)
		return;
	if (f->mode != MIG_FILE_WRITE) {
		latch(f, -EINVAL, (int64_t)mig_file_offset(f), "put on a channel opened for reading");
		return;
	}
	if (f->kind == BK_MEMW) {
		if ((size_t)(f->hot.wend - f->hot.wpos) < len && !memw_grow(f, len))
			return;
		memcpy(f->hot.wpos, buf, len);
		f->hot.wpos += len;
		return;
	}
	if (len >= MIG_FILE_DIRECT_MIN) {
		/* Buffered bytes and the caller's buffer in one writev: no copy. */
		size_t n = (size_t)(f->hot.wpos - f->buf);
		struct iovec iov[2] = {
			{ .iov_base = f->buf, .iov_len = n },
			{ .iov_base = (void *)(uintptr_t)buf, .iov_len = len },
		};
		if (backend_writev(f, iov, 2, f->base_off) == 0) {
			f->base_off += n + len;
			f->hot.wpos = f->buf;
		}
		return;
	}
	const uint8_t *p = buf;
	while (len > 0 && !f->failed) {
		size_t room = (size_t)(f->hot.wend - f->hot.wpos);
		if (room == 0) {
			if (mig_file_flush(f) != 0)
				return;
			continue;
		}
		size_t n = len < room ? len : room;
		memcpy(f->hot.wpos, p, n);
		f->hot.wpos += n;
		p += n;
		len -= n;
	}
}

void mig_file_put_buffer(mig_file_t *f, const void *buf, size_t len)
{
	if (len < MIG_FILE_DIRECT_MIN && (size_t)(f->hot.wend - f->hot.wpos) >= len) {
		if (len)
			memcpy(f->hot.wpos, buf, len);
		f->hot.wpos += len;
		return;
	}
	mig_file_put_slow(f, buf, len);
}

/* -------------------------------------------------------------- memory io */

const uint8_t *mig_file_mem_data(const mig_file_t *f, size_t *len)
{
	if (f->kind != BK_MEMW) {
		if (len)
			*len = 0;
		return NULL;
	}
	if (len)
		*len = (size_t)(f->hot.wpos - f->buf);
	return f->buf;
}

int mig_file_mem_take(mig_file_t *f, uint8_t **data, size_t *len)
{
	if (f->kind != BK_MEMW || !data || !len)
		return -EINVAL;
	if (f->failed)
		return f->err.code;
	size_t n = (size_t)(f->hot.wpos - f->buf);
	uint8_t *fresh = malloc(4096);
	if (!fresh)
		return -ENOMEM;
	*data = f->buf;
	*len = n;
	f->base_off += n;
	f->buf = fresh;
	f->cap = 4096;
	f->hot.wpos = fresh;
	f->hot.wend = fresh + f->cap;
	return 0;
}

/* --------------------------------------------------------------------- read */

/*
 * Make room and read more into the buffer (fd/ops readers). Returns bytes
 * added, 0 at end of input, <0 with the error latched.
 */
static ssize_t refill(mig_file_t *f)
{
	if (f->kind == BK_MEMR || f->failed)
		return f->failed ? f->err.code : 0;
	size_t avail = (size_t)(f->hot.rend - f->hot.rpos);
	if (f->hot.rpos != f->buf) {
		f->base_off += (uint64_t)(f->hot.rpos - f->rbase);
		memmove(f->buf, f->hot.rpos, avail);
		f->rbase = f->buf;
		f->hot.rpos = f->buf;
		f->hot.rend = f->buf + avail;
	}
	if (avail >= f->cap)
		return 0;
	ssize_t r = backend_read(f, f->buf + avail, f->cap - avail);
	if (r > 0)
		f->hot.rend += r;
	return r;
}

static void latch_truncated(mig_file_t *f, uint64_t start, size_t want, size_t got)
{
	latch(f, HM_E_TRUNCATED, (int64_t)start,
	      "stream ended after %zu of %zu bytes of a value at offset %llu", got, want,
	      (unsigned long long)start);
}

static bool get_loop(mig_file_t *f, uint8_t *out, size_t len, uint64_t start);

bool mig_file_get_slow(mig_file_t *f, void *buf, size_t len)
{
	uint8_t *out = buf;
	if (f->failed || f->mode != MIG_FILE_READ) {
		if (!f->failed)
			latch(f, -EINVAL, (int64_t)mig_file_offset(f),
			      "get on a channel opened for writing");
		memset(buf, 0, len);
		return false;
	}
	uint64_t start = mig_file_offset(f);
	f->op_start = start;
	bool ok = get_loop(f, out, len, start);
	f->op_start = UINT64_MAX;
	return ok;
}

static bool get_loop(mig_file_t *f, uint8_t *out, size_t len, uint64_t start)
{
	size_t done = 0;
	while (done < len) {
		size_t avail = (size_t)(f->hot.rend - f->hot.rpos);
		if (avail) {
			size_t n = len - done < avail ? len - done : avail;
			memcpy(out + done, f->hot.rpos, n);
			f->hot.rpos += n;
			done += n;
			continue;
		}
		ssize_t r;
		if (f->kind == BK_MEMR) {
			r = 0;
		} else if (len - done >= MIG_FILE_DIRECT_MIN) {
			/* Large read straight into the caller's buffer. */
			r = backend_read(f, out + done, len - done);
			if (r > 0) {
				f->base_off += (uint64_t)r;
				done += (size_t)r;
				continue;
			}
		} else {
			r = refill(f);
			if (r > 0)
				continue;
		}
		if (r == 0)
			latch_truncated(f, start, len, done);
		memset(out, 0, len);
		return false;
	}
	return true;
}

size_t mig_file_get_buffer(mig_file_t *f, void *buf, size_t len)
{
	if ((size_t)(f->hot.rend - f->hot.rpos) >= len) {
		if (len)
			memcpy(buf, f->hot.rpos, len);
		f->hot.rpos += len;
		return len;
	}
	return mig_file_get_slow(f, buf, len) ? len : 0;
}

const uint8_t *mig_file_get_ptr(mig_file_t *f, size_t len)
{
	if ((size_t)(f->hot.rend - f->hot.rpos) >= len) {
		const uint8_t *p = f->hot.rpos;
		f->hot.rpos += len;
		return p;
	}
	if (f->failed)
		return NULL;
	if (f->mode != MIG_FILE_READ) {
		latch(f, -EINVAL, (int64_t)mig_file_offset(f), "get on a channel opened for writing");
		return NULL;
	}
	uint64_t start = mig_file_offset(f);
	if (f->kind != BK_MEMR && len > f->cap) {
		latch(f, -EINVAL, (int64_t)start,
		      "zero-copy read of %zu bytes exceeds the channel buffer (%zu)", len, f->cap);
		return NULL;
	}
	f->op_start = start;
	while ((size_t)(f->hot.rend - f->hot.rpos) < len) {
		ssize_t r = refill(f);
		if (r > 0)
			continue;
		if (r == 0)
			latch_truncated(f, start, len, (size_t)(f->hot.rend - f->hot.rpos));
		f->op_start = UINT64_MAX;
		return NULL;
	}
	f->op_start = UINT64_MAX;
	const uint8_t *p = f->hot.rpos;
	f->hot.rpos += len;
	return p;
}

static int skip_loop(mig_file_t *f, uint64_t len, uint64_t start);

int mig_file_skip(mig_file_t *f, uint64_t len)
{
	uint64_t start = mig_file_offset(f);
	if (f->failed)
		return f->err.code;
	if (f->mode != MIG_FILE_READ)
		return mig_file_set_error(f, -EINVAL, "skip on a channel opened for writing");
	f->op_start = start;
	int rc = skip_loop(f, len, start);
	f->op_start = UINT64_MAX;
	return rc;
}

static int skip_loop(mig_file_t *f, uint64_t len, uint64_t start)
{
	uint64_t done = 0;
	while (done < len) {
		uint64_t avail = (uint64_t)(f->hot.rend - f->hot.rpos);
		if (avail) {
			uint64_t n = len - done < avail ? len - done : avail;
			f->hot.rpos += n;
			done += n;
			continue;
		}
		ssize_t r = refill(f);
		if (r > 0)
			continue;
		if (r == 0)
			latch(f, HM_E_TRUNCATED, (int64_t)start,
			      "stream ended after %llu of %llu bytes skipped from offset %llu",
			      (unsigned long long)done, (unsigned long long)len,
			      (unsigned long long)start);
		return f->err.code;
	}
	return 0;
}

int mig_file_peek_u8(mig_file_t *f)
{
	if (f->hot.rend > f->hot.rpos)
		return *f->hot.rpos;
	if (f->failed || f->mode != MIG_FILE_READ)
		return -1;
	while (f->hot.rend == f->hot.rpos) {
		if (f->kind == BK_MEMR)
			return -1;
		ssize_t r = refill(f);
		if (r <= 0)
			return -1;
	}
	return *f->hot.rpos;
}

size_t mig_file_peek_buffer(mig_file_t *f, void *buf, size_t len)
{
	if (f->failed || f->mode != MIG_FILE_READ)
		return 0;
	if (f->kind != BK_MEMR && len > f->cap)
		len = f->cap;
	while ((size_t)(f->hot.rend - f->hot.rpos) < len && f->kind != BK_MEMR && !f->eof) {
		if (refill(f) <= 0)
			break;
	}
	size_t avail = (size_t)(f->hot.rend - f->hot.rpos);
	size_t n = avail < len ? avail : len;
	if (n)
		memcpy(buf, f->hot.rpos, n);
	return n;
}

bool mig_file_eof(mig_file_t *f)
{
	return mig_file_peek_u8(f) < 0 && !f->failed;
}

/* -------------------------------------------------------------------- close */

int mig_file_close(mig_file_t *f, hm_error_t *err)
{
	if (!f)
		return 0;
	if (f->mode == MIG_FILE_WRITE)
		mig_file_flush(f);
	int rc = mig_file_status(f);
	if (f->flags & MIG_FILE_OWN_FD) {
		int crc = 0;
		if (f->kind == BK_FD) {
			if (close(f->fd) != 0 && f->mode == MIG_FILE_WRITE)
				crc = -errno;
		} else if (f->kind == BK_OPS && f->ops->close) {
			crc = f->ops->close(f->ops_opaque);
		}
		if (crc < 0 && rc == 0) {
			latch(f, crc, (int64_t)mig_file_offset(f), "migration channel: close failed: %s",
			      strerror(-crc));
			rc = crc;
		}
	}
	if (f->failed && err)
		hm_error_set(err, f->err.code, f->err.offset, "%s", f->err.msg);
	if (f->kind != BK_MEMR)
		free(f->buf);
	free(f);
	return rc;
}
