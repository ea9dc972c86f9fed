/* SPDX-License-Identifier: MIT */
/*
 * The proxy's relay (include/hptmig/proxy.h): one thread, poll(2) over the
 * source and destination descriptors, the stream going one way through a
 * filter and the return path the other way unchanged. It forwards only what
 * the filter emits, bounds every wait (idle timeout, linger after the end),
 * and on any error cuts both connections at once so that the destination
 * sees an aborted migration. It never prints or exits.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hptmig/proxy.h"
#include "mig_int.h"

/* How often the loop wakes at most to look at cancel and progress. */
#define PROXY_SLICE_MS 250

struct mig_proxy_sink {
	const mig_proxy_params_t *p;
	mig_proxy_report_t *rep;
	int sfd, dfd;          /* source (stream in, return path out), destination */
	bool s_sock, d_sock;   /* sockets: the return path exists on that side */
	mig_tls_t *stls, *dtls; /* a side's TLS session (every byte goes through it), or NULL */
	size_t s_again, d_again; /* a TLS send that must be retried with this length, or 0 */
	bool src_eof;          /* the source closed its side of the stream */
	bool dst_eof;          /* the destination closed its side (return path) */
	bool src_wr_shut;      /* we told the source the return path ended */
	uint8_t pre[8];        /* stream bytes the accept probe took, handed out first */
	size_t pre_len, pre_pos;
	bool io_failed;        /* the error is the transport's (or a cancel), not the filter's */
	uint8_t *rp;           /* return-path bytes read from dst, not yet sent to src */
	size_t rp_len, rp_off;
	uint64_t last_move;    /* when a byte last moved (ns) */
	uint64_t last_progress;
	hm_error_t *err;
};

void mig_proxy_params_default(mig_proxy_params_t *p)
{
	memset(p, 0, sizeof(*p));
	p->idle_timeout_ms = MIG_IO_TIMEOUT_MS;
	p->linger_ms = MIG_IO_TIMEOUT_MS;
	p->progress_ms = 1000;
}

static int run_none(void *o, mig_proxy_sink_t *s, hm_error_t *err)
{
	uint8_t buf[64 * 1024];
	(void)o, (void)err;
	for (;;) {
		ssize_t n = mig_proxy_read(s, buf, sizeof(buf));
		if (n <= 0)
			return (int)n;
		int rc = mig_proxy_emit(s, buf, (size_t)n);
		if (rc != 0)
			return rc;
	}
}

const mig_proxy_filter_t mig_proxy_filter_none = {.run = run_none, .opaque = NULL};

static void set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl >= 0)
		fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static bool is_socket(int fd)
{
	struct stat st;
	return fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
}

/*
 * The connection layer: a side's bytes go through its TLS session when it
 * has one, else straight to the socket; both never block (-1 with EAGAIN).
 * Reads: mig_sock_recv_nb.
 */
static ssize_t side_send(int fd, mig_tls_t *tls, size_t *again, const void *buf, size_t len)
{
	if (!tls)
		return send(fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
	/* GnuTLS: a record that could not go out is sent by the next call,
	 * which must ask for the same length. */
	if (*again && *again <= len)
		len = *again;
	ssize_t n = mig_tls_send(tls, buf, len);
	*again = n == -EAGAIN ? len : 0;
	if (n < 0) {
		errno = (int)-n;
		return -1;
	}
	return n;
}

/* A side's write half ends: close_notify first on TLS, so that the peer
 * reads a clean end of the session. */
static void side_shut_wr(int fd, mig_tls_t *tls)
{
	if (tls)
		mig_tls_bye(tls);
	shutdown(fd, SHUT_WR);
}

/* errno's words, or the TLS session's reason for EPROTO. */
static const char *side_strerror(mig_tls_t *tls, int e)
{
	return tls && e == EPROTO ? mig_tls_why(tls) : strerror(e);
}

static void progress_tick(mig_proxy_sink_t *s, bool force)
{
	uint64_t now = hm_now_ns();
	if (!s->p->progress)
		return;
	if (!force && now - s->last_progress < (uint64_t)s->p->progress_ms * 1000000ull)
		return;
	s->last_progress = now;
	s->p->progress(s->p->opaque, s->rep->in_bytes, s->rep->out_bytes);
}

/* Send what the return-path buffer holds to the source, as far as it goes
 * without blocking. When the destination has closed and all is sent, tell
 * the source (half-close) that nothing more comes back. */
static int rp_flush(mig_proxy_sink_t *s)
{
	while (s->rp_off < s->rp_len) {
		ssize_t n = side_send(s->sfd, s->stls, &s->s_again, s->rp + s->rp_off,
				      s->rp_len - s->rp_off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		if (n < 0)
			return hm_error_set(s->err, -errno, -1,
					    "return path: writing to the source failed: %s after %llu "
					    "bytes relayed", side_strerror(s->stls, errno),
					    (unsigned long long)s->rep->rp_bytes);
		s->rp_off += (size_t)n;
		s->last_move = hm_now_ns();
	}
	s->rp_len = s->rp_off = 0;
	if (s->dst_eof && s->s_sock && !s->src_wr_shut) {
		side_shut_wr(s->sfd, s->stls);
		s->src_wr_shut = true;
	}
	return 0;
}

/* Read what the destination sent back (its return path) into the buffer;
 * without a socket on the source side it has nowhere to go and is dropped. */
static int rp_read(mig_proxy_sink_t *s)
{
	size_t room = MIG_PROXY_BUF_SIZE - s->rp_len;
	if (room == 0)
		return 0;
	ssize_t n = mig_sock_recv_nb(s->dfd, s->dtls, s->rp + s->rp_len, room);
	if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
		return 0;
	if (n < 0) {
		if (errno == ECONNRESET) {
			n = 0; /* as a close: a write to it will fail if it matters */
		} else {
			return hm_error_set(s->err, -errno, -1,
					    "return path: reading from the destination failed: %s",
					    side_strerror(s->dtls, errno));
		}
	}
	s->last_move = hm_now_ns();
	if (n == 0) {
		s->dst_eof = true;
		return rp_flush(s);
	}
	s->rep->rp_bytes += (uint64_t)n;
	if (s->s_sock)
		s->rp_len += (size_t)n;
	return rp_flush(s);
}

/* Idle timeout of a wait that still owes something; 0 when not yet due. */
static int idle_check(mig_proxy_sink_t *s, const char *what)
{
	uint64_t now = hm_now_ns();
	if (s->p->idle_timeout_ms <= 0 ||
	    now - s->last_move < (uint64_t)s->p->idle_timeout_ms * 1000000ull)
		return 0;
	return hm_error_set(s->err, HM_E_TIMEOUT, (int64_t)s->rep->in_bytes,
			    "%s: nothing moved for %d ms (%llu stream bytes in, %llu out; "
			    "--idle-timeout)", what, s->p->idle_timeout_ms,
			    (unsigned long long)s->rep->in_bytes, (unsigned long long)s->rep->out_bytes);
}

static int cancel_check(mig_proxy_sink_t *s)
{
	if (!mig_cancel_requested(s->p->cancel))
		return 0;
	return hm_error_set(s->err, HM_E_CANCELLED, (int64_t)s->rep->in_bytes,
			    "cancelled after %llu stream bytes", (unsigned long long)s->rep->in_bytes);
}

/* Wait for the source to send (src_in) or the destination to take more
 * (dst_out), relaying the return path meanwhile; bounded by the idle
 * timeout, and woken every slice for a cancel. */
static int wait_io(mig_proxy_sink_t *s, bool src_in, bool dst_out, bool idle)
{
	struct pollfd pf[2];
	short sev = src_in ? POLLIN : 0, dev = dst_out ? POLLOUT : 0;
	if (s->s_sock && s->rp_off < s->rp_len)
		sev |= POLLOUT;
	if (s->d_sock && !s->dst_eof && s->rp_len < MIG_PROXY_BUF_SIZE)
		dev |= POLLIN;
	pf[0] = (struct pollfd){.fd = s->sfd, .events = sev};
	pf[1] = (struct pollfd){.fd = s->dfd, .events = dev};
	/* The destination's TLS session may hold return-path bytes already
	 * read from its socket, which poll cannot see. */
	bool rp_held = s->dtls && (dev & POLLIN) && mig_tls_pending(s->dtls);
	int k = poll(pf, 2, rp_held ? 0 : PROXY_SLICE_MS);
	if (k < 0 && errno != EINTR)
		return hm_error_set(s->err, -errno, -1, "poll: %s", strerror(errno));
	if (rp_held && k >= 0) {
		pf[1].revents |= POLLIN;
		k++;
	}
	int rc = 0;
	if (k > 0 && (dev & POLLIN) && (pf[1].revents & (POLLIN | POLLHUP | POLLERR)))
		rc = rp_read(s);
	if (rc == 0 && k > 0 && (sev & POLLOUT) && (pf[0].revents & (POLLOUT | POLLERR | POLLHUP)))
		rc = rp_flush(s);
	if (rc == 0)
		rc = cancel_check(s);
	if (rc == 0 && idle)
		rc = idle_check(s, src_in ? "source" : "destination");
	progress_tick(s, false);
	return rc;
}

uint64_t mig_proxy_offset(const mig_proxy_sink_t *s)
{
	return s->rep->in_bytes;
}

ssize_t mig_proxy_read(mig_proxy_sink_t *s, void *buf, size_t len)
{
	if (s->pre_pos < s->pre_len) {
		size_t n = s->pre_len - s->pre_pos < len ? s->pre_len - s->pre_pos : len;
		memcpy(buf, s->pre + s->pre_pos, n);
		s->pre_pos += n;
		s->rep->in_bytes += n;
		return (ssize_t)n;
	}
	while (!s->src_eof && len > 0) {
		ssize_t n = s->s_sock ? mig_sock_recv_nb(s->sfd, s->stls, buf, len)
				      : read(s->sfd, buf, len);
		if (n > 0) {
			s->rep->in_bytes += (uint64_t)n;
			s->last_move = hm_now_ns();
			return n;
		}
		if (n == 0) {
			s->src_eof = true;
			break;
		}
		int rc = 0;
		if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK)
			rc = hm_error_set(s->err, -errno, (int64_t)s->rep->in_bytes,
					  "reading from the source failed after %llu bytes: %s",
					  (unsigned long long)s->rep->in_bytes,
					  side_strerror(s->stls, errno));
		else if (errno != EINTR)
			rc = wait_io(s, true, false, true);
		if (rc != 0) {
			s->io_failed = true;
			return rc;
		}
	}
	return 0;
}

int mig_proxy_emit(mig_proxy_sink_t *s, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	while (len > 0) {
		ssize_t n = s->d_sock ? side_send(s->dfd, s->dtls, &s->d_again, p, len)
				      : write(s->dfd, p, len);
		if (n > 0) {
			p += n;
			len -= (size_t)n;
			s->rep->out_bytes += (uint64_t)n;
			s->last_move = hm_now_ns();
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		int rc;
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
			rc = hm_error_set(s->err, -errno, (int64_t)s->rep->out_bytes,
					  "writing to the destination failed after %llu bytes: %s",
					  (unsigned long long)s->rep->out_bytes,
					  side_strerror(s->dtls, errno));
		else
			rc = wait_io(s, false, true, true);
		if (rc != 0) {
			s->io_failed = true;
			return rc;
		}
	}
	progress_tick(s, false);
	/* A cancel ends the relay also while bytes flow without a wait. */
	int rc = cancel_check(s);
	if (rc != 0)
		s->io_failed = true;
	return rc;
}

/* Both connections at once: the destination sees its input stop in the
 * middle of the stream (a reset where the kernel can), the source sees its
 * migration fail. */
static void cut_both(mig_proxy_sink_t *s)
{
	struct linger lg = {.l_onoff = 1, .l_linger = 0};
	if (s->d_sock) {
		setsockopt(s->dfd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		shutdown(s->dfd, SHUT_RDWR);
	}
	if (s->s_sock) {
		setsockopt(s->sfd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		shutdown(s->sfd, SHUT_RDWR);
	}
	s->rep->cut = true;
}

/*
 * After the stream: a byte more from the source is an error; its close is
 * passed on to the destination; the return path is relayed until the
 * destination closed and all of it reached the source, or linger_ms passed
 * (the stream itself was delivered: that is not an error).
 */
static int drain(mig_proxy_sink_t *s)
{
	uint64_t end = hm_now_ns() + (uint64_t)(s->p->linger_ms > 0 ? s->p->linger_ms : 0) * 1000000ull;
	bool told_dst = false;
	for (;;) {
		if (s->src_eof && !told_dst) {
			if (s->d_sock)
				side_shut_wr(s->dfd, s->dtls);
			told_dst = true;
		}
		bool rp_over = !s->d_sock || (s->dst_eof && s->rp_len == 0);
		if ((s->src_eof && rp_over) || hm_now_ns() >= end)
			return 0;
		uint8_t b[512];
		ssize_t n = 0;
		if (!s->src_eof) {
			n = s->s_sock ? mig_sock_recv_nb(s->sfd, s->stls, b, sizeof(b))
				      : read(s->sfd, b, sizeof(b));
			if (n == 0)
				s->src_eof = true;
			if (n > 0) {
				s->rep->filter_failed = true;
				return hm_error_set(s->err, HM_E_FORMAT, (int64_t)s->rep->in_bytes,
						    "the source sent %zd more byte%s after the stream's "
						    "end at byte offset %llu", n, n == 1 ? "" : "s",
						    (unsigned long long)s->rep->in_bytes);
			}
			if (n < 0 && errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK)
				s->src_eof = true; /* a source gone after its last byte */
		}
		if (s->src_eof && !told_dst)
			continue;
		int rc = wait_io(s, !s->src_eof, false, false); /* linger bounds it */
		if (rc != 0) {
			s->io_failed = true;
			return rc;
		}
	}
}

int mig_proxy_run(mig_conn_t *src, mig_conn_t *dst, const mig_proxy_filter_t *f,
		  const mig_proxy_params_t *p, mig_proxy_report_t *rep, hm_error_t *err)
{
	mig_proxy_params_t d;
	mig_proxy_sink_t s = {0};
	uint8_t junk[8];
	size_t junk_len;
	memset(rep, 0, sizeof(*rep));
	if (!p) {
		mig_proxy_params_default(&d);
		p = &d;
	}
	uint64_t t0 = hm_now_ns();
	s.p = p;
	s.rep = rep;
	s.err = &rep->error;
	s.sfd = mig_conn_raw_fd(src, s.pre, &s.pre_len);
	s.dfd = mig_conn_raw_fd(dst, junk, &junk_len);
	s.s_sock = is_socket(s.sfd);
	s.d_sock = is_socket(s.dfd);
	s.stls = mig_conn_tls(src);
	s.dtls = mig_conn_tls(dst);
	rep->return_path = s.s_sock && s.d_sock;
	s.last_move = s.last_progress = t0;
	s.rp = malloc(MIG_PROXY_BUF_SIZE);
	int rc = 0;
	if (!s.rp) {
		rc = hm_error_set(s.err, -ENOMEM, -1, "out of memory");
	} else {
		set_nonblock(s.sfd);
		set_nonblock(s.dfd);
		rc = f->run(f->opaque, &s, s.err);
		if (rc != 0 && s.err->code == 0)
			hm_error_set(s.err, rc, (int64_t)rep->in_bytes, "the filter failed");
		rep->filter_failed = rc != 0 && !s.io_failed;
		rep->stream_done = rc == 0;
	}
	if (rc == 0)
		rc = drain(&s);
	if (rc != 0)
		cut_both(&s);
	progress_tick(&s, true);
	free(s.rp);
	rep->duration_ns = hm_now_ns() - t0;
	if (rc != 0 && err)
		*err = rep->error;
	return rc;
}
