/* SPDX-License-Identifier: MIT */
/*
 * Transports: QEMU-spelled migration URIs (tcp:, unix:, exec:, file:, fd:)
 * turned into a mig_file_t for the stream plus, on sockets, a return path
 * (the same full-duplex socket read the other way). It never prints, never
 * exits, never waits forever for a peer (connect/accept/read have timeouts;
 * the destination's reads also an overall deadline), never lets a stray
 * connection end a listener (up to a bounded number of them) and never
 * leaves an exec child unreaped.
 */
#include "hptmig/migration.h"
#include "hptmig/savevm.h"
#include "mig_int.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <linux/sockios.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

/* ------------------------------------------------------------------ URIs */

static int uri_copy(char *dst, size_t cap, const char *src, const char *what, hm_error_t *err)
{
	size_t n = strlen(src);
	if (n == 0)
		return hm_error_set(err, HM_E_FORMAT, -1, "URI: empty %s", what);
	if (n >= cap)
		return hm_error_set(err, HM_E_RANGE, -1, "URI: %s is %zu bytes, at most %zu", what,
				    n, cap - 1);
	memcpy(dst, src, n + 1);
	return 0;
}

int mig_uri_parse(const char *s, mig_uri_t *u, hm_error_t *err)
{
	memset(u, 0, sizeof(*u));
	u->fd = -1;
	if (!s)
		return hm_error_set(err, HM_E_FORMAT, -1, "URI: missing");
	if (strncmp(s, "tcp:", 4) == 0) {
		const char *hp = s + 4;
		const char *colon;
		u->kind = MIG_URI_TCP;
		if (hp[0] == '[') { /* [v6addr]:port */
			const char *close = strchr(hp, ']');
			if (!close || close[1] != ':')
				return hm_error_set(err, HM_E_FORMAT, -1,
						    "URI '%s': expected tcp:[ADDR]:PORT", s);
			size_t n = (size_t)(close - hp - 1);
			if (n == 0 || n >= sizeof(u->host))
				return hm_error_set(err, HM_E_FORMAT, -1, "URI '%s': bad host", s);
			memcpy(u->host, hp + 1, n);
			u->host[n] = 0;
			colon = close + 1;
		} else {
			colon = strrchr(hp, ':');
			if (!colon)
				return hm_error_set(err, HM_E_FORMAT, -1,
						    "URI '%s': expected tcp:HOST:PORT", s);
			size_t n = (size_t)(colon - hp);
			if (n >= sizeof(u->host))
				return hm_error_set(err, HM_E_FORMAT, -1, "URI '%s': host too long", s);
			memcpy(u->host, hp, n);
			u->host[n] = 0;
		}
		uint64_t port;
		if (hm_parse_u64(colon + 1, 65535, &port) != 0)
			return hm_error_set(err, HM_E_FORMAT, -1,
					    "URI '%s': port '%s' is not a number 0..65535", s, colon + 1);
		u->port = (int)port;
		return 0;
	}
	if (strncmp(s, "unix:", 5) == 0) {
		u->kind = MIG_URI_UNIX;
		if (strlen(s + 5) >= sizeof(((struct sockaddr_un *)0)->sun_path))
			return hm_error_set(err, HM_E_RANGE, -1,
					    "URI '%s': unix socket path longer than %zu bytes", s,
					    sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
		return uri_copy(u->path, sizeof(u->path), s + 5, "unix socket path", err);
	}
	if (strncmp(s, "exec:", 5) == 0) {
		u->kind = MIG_URI_EXEC;
		return uri_copy(u->path, sizeof(u->path), s + 5, "exec command", err);
	}
	if (strncmp(s, "file:", 5) == 0) {
		u->kind = MIG_URI_FILE;
		return uri_copy(u->path, sizeof(u->path), s + 5, "file path", err);
	}
	if (strncmp(s, "fd:", 3) == 0) {
		uint64_t fd;
		u->kind = MIG_URI_FD;
		if (hm_parse_u64(s + 3, 1u << 30, &fd) != 0)
			return hm_error_set(err, HM_E_FORMAT, -1, "URI '%s': fd '%s' is not a number",
					    s, s + 3);
		u->fd = (int)fd;
		return 0;
	}
	return hm_error_set(err, HM_E_FORMAT, -1,
			    "URI '%s': unknown transport (tcp:HOST:PORT, unix:PATH, exec:CMD, "
			    "file:PATH or fd:N)",
			    s);
}

bool mig_uri_has_return_path(const mig_uri_t *u)
{
	return u->kind == MIG_URI_TCP || u->kind == MIG_URI_UNIX;
}

void mig_uri_format(const mig_uri_t *u, char *buf, size_t len)
{
	switch (u->kind) {
	case MIG_URI_TCP:
		if (strchr(u->host, ':'))
			snprintf(buf, len, "tcp:[%s]:%d", u->host, u->port);
		else
			snprintf(buf, len, "tcp:%s:%d", u->host, u->port);
		break;
	case MIG_URI_UNIX:
		snprintf(buf, len, "unix:%s", u->path);
		break;
	case MIG_URI_EXEC:
		snprintf(buf, len, "exec:%s", u->path);
		break;
	case MIG_URI_FILE:
		snprintf(buf, len, "file:%s", u->path);
		break;
	case MIG_URI_FD:
		snprintf(buf, len, "fd:%d", u->fd);
		break;
	}
}

/* ------------------------------------------------------------ connections */

/*
 * The destination's reader (an ops backend of the stream channel, which
 * owns it): the first bytes the probe already took, then the fd, every
 * wait bounded by the idle timeout and the deadline. Only the loading
 * thread reads; shutdown (any thread) sets stop and wakes a socket.
 */
struct rd {
	int fd;
	bool sock;            /* recv(MSG_DONTWAIT) first, poll only when empty */
	bool poll_ok;         /* not a regular file (those never block) */
	uint8_t pre[8];       /* bytes taken by the probe, handed out first */
	size_t pre_len, pre_pos;
	bool started;         /* a byte of the stream has arrived */
	int idle_ms;          /* <= 0: none */
	uint64_t deadline_ns; /* relative to the first byte; 0: none */
	uint64_t deadline;    /* absolute once started, else UINT64_MAX */
	uint64_t first_by;    /* absolute: the first byte must come by then */
	int cancel_fd;        /* polled beside fd (a pipe's wait ends at a cancel); -1: none */
	mig_tls_t *tls;       /* the session reads go through (owned by the conn), or NULL */
	atomic_bool stop;
	atomic_int timed_out; /* enum mig_conn_timeout */
};

struct mig_conn {
	mig_file_t *f;    /* the stream; owns its fd */
	struct rd *rd;    /* destination reader (owned by f), or NULL */
	int rp_fd;        /* return path: a dup of the socket, or -1 */
	int fd;           /* the descriptor under f (owned by f), for mig_conn_raw_fd */
	pid_t child;      /* exec: the child to reap, or -1 */
	struct pw *pw;    /* exec: source: the pipe writer (owned by f), or NULL */
	mig_tls_t *tls;   /* tcp with TLS: stream and return path go through it */
	bool source;
	char desc[256];
};

struct mig_listener {
	mig_uri_t uri;    /* with the bound port filled in */
	int fd;           /* listening socket, or -1 (exec/file/fd need none) */
	bool unlink_path; /* we created the unix socket file */
	const mig_tls_creds_t *tls; /* server credentials (the caller's), or NULL */
};

static int set_timeouts(int fd, int ms)
{
	struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
	if (ms <= 0)
		return 0;
	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) != 0)
		return -errno;
	return 0;
}

/* An exec: child whose stream failed or was never used: terminated and
 * reaped (st: its status, may be NULL). */
static void terminate_child(pid_t child, int *st)
{
	kill(child, SIGTERM);
	while (waitpid(child, st, 0) < 0 && errno == EINTR)
		;
}

static int conn_new(int fd, enum mig_file_mode mode, bool rp, bool source, const char *desc,
		    mig_conn_t **out, hm_error_t *err)
{
	mig_conn_t *c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return hm_error_set(err, -ENOMEM, -1, "out of memory");
	}
	c->rp_fd = -1;
	c->fd = fd;
	c->child = -1;
	c->source = source;
	snprintf(c->desc, sizeof(c->desc), "%s", desc);
	if (rp) {
		c->rp_fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
		if (c->rp_fd < 0) {
			int e = -errno;
			close(fd);
			free(c);
			return hm_error_set(err, e, -1, "%s: dup: %s", desc, strerror(-e));
		}
	}
	int rc = mig_file_open_fd(fd, mode, MIG_FILE_OWN_FD, &c->f);
	if (rc != 0) {
		close(fd);
		if (c->rp_fd >= 0)
			close(c->rp_fd);
		free(c);
		return hm_error_set(err, rc, -1, "%s: cannot open channel", desc);
	}
	*out = c;
	return 0;
}

/* conn_new for an exec: child (pid > 0) or a plain fd (child 0): on failure
 * the child is terminated and reaped, never left behind. */
static int conn_wrap(int fd, enum mig_file_mode mode, const mig_uri_t *u, bool source,
		     const char *desc, pid_t child, mig_conn_t **out, hm_error_t *err)
{
	int rc = conn_new(fd, mode, mig_uri_has_return_path(u), source, desc, out, err);
	if (rc != 0) {
		if (child > 0)
			terminate_child(child, NULL);
		return rc;
	}
	(*out)->child = child;
	return 0;
}

static void rd_start(struct rd *r)
{
	r->started = true;
	r->deadline = r->deadline_ns ? hm_now_ns() + r->deadline_ns : UINT64_MAX;
}

ssize_t mig_sock_recv_nb(int fd, mig_tls_t *tls, void *buf, size_t len)
{
	if (!tls)
		return recv(fd, buf, len, MSG_DONTWAIT);
	ssize_t n = mig_tls_recv(tls, buf, len);
	if (n < 0) {
		errno = (int)-n;
		return -1;
	}
	return n;
}

/* Poll slice: a shutdown of a pipe (which poll cannot see) is noticed this soon. */
#define RD_SLICE_NS 250000000ull

static ssize_t rd_read(void *o, void *buf, size_t len)
{
	struct rd *r = o;
	if (r->pre_pos < r->pre_len) {
		size_t n = r->pre_len - r->pre_pos < len ? r->pre_len - r->pre_pos : len;
		memcpy(buf, r->pre + r->pre_pos, n);
		r->pre_pos += n;
		return (ssize_t)n;
	}
	uint64_t idle_end = r->idle_ms > 0 ? hm_now_ns() + (uint64_t)r->idle_ms * 1000000ull
					   : UINT64_MAX;
	for (;;) {
		if (atomic_load(&r->stop))
			return 0; /* the channel sees its cancel */
		ssize_t n = -1;
		if (r->sock) {
			n = mig_sock_recv_nb(r->fd, r->tls, buf, len);
		} else if (!r->poll_ok) {
			n = read(r->fd, buf, len);
		} else {
			errno = EAGAIN;
		}
		if (n > 0 && !r->started)
			rd_start(r);
		if (n >= 0)
			return n;
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			return -errno;
		uint64_t now = hm_now_ns();
		uint64_t end = r->started ? r->deadline : r->first_by;
		if (now >= end) {
			atomic_store(&r->timed_out, r->started ? MIG_CONN_TIMEOUT_DEADLINE
							       : MIG_CONN_TIMEOUT_IDLE);
			return r->started ? -ETIMEDOUT : -EAGAIN;
		}
		/* Sockets are idle-timed from the start; a pipe's first byte may
		 * take until first_by (its producer may wait for a source). */
		bool idle_on = r->started || r->sock;
		if (idle_on && now >= idle_end) {
			atomic_store(&r->timed_out, MIG_CONN_TIMEOUT_IDLE);
			return -EAGAIN;
		}
		if (idle_on && idle_end < end)
			end = idle_end;
		if (end - now > RD_SLICE_NS)
			end = now + RD_SLICE_NS;
		struct pollfd p[2] = {{.fd = r->fd, .events = POLLIN},
				      {.fd = r->cancel_fd, .events = POLLIN}};
		int k = poll(p, 2, (int)((end - now + 999999) / 1000000));
		if (k < 0 && errno != EINTR)
			return -errno;
		if (k > 0 && p[1].revents) {
			/* Cancelled: once the request has shut this reader down
			 * (the connection is attached to the cancel) the channel
			 * reports its cancel at end of input; before, an error. */
			return atomic_load(&r->stop) ? 0 : -ECANCELED;
		}
		if (k > 0 && p[0].revents && !r->sock) {
			n = read(r->fd, buf, len);
			if (n > 0 && !r->started)
				rd_start(r);
			if (n >= 0)
				return n;
			if (errno != EAGAIN && errno != EINTR)
				return -errno;
		}
	}
}

static void rd_shutdown(void *o)
{
	struct rd *r = o;
	atomic_store(&r->stop, true);
	if (r->sock)
		shutdown(r->fd, SHUT_RDWR);
}

static int rd_close(void *o)
{
	struct rd *r = o;
	int rc = close(r->fd) == 0 ? 0 : -errno;
	free(r);
	return rc;
}

static const mig_file_ops_t rd_ops = {
	.read = rd_read, .shutdown = rd_shutdown, .close = rd_close,
};

/*
 * A destination connection over fd: the stream through rd (pre: the bytes
 * a probe took), a return path on sockets. Takes fd in all cases.
 */
static int conn_new_reader(int fd, const mig_uri_t *u, const char *desc, const uint8_t *pre,
			   size_t pre_len, const mig_accept_opts_t *o, int first_ms, pid_t child,
			   mig_tls_t *tls, mig_conn_t **out, hm_error_t *err)
{
	struct rd *r = calloc(1, sizeof(*r));
	mig_conn_t *c = calloc(1, sizeof(*c));
	struct stat st;
	if (!r || !c) {
		free(r);
		free(c);
		mig_tls_free(tls);
		close(fd);
		if (child > 0)
			terminate_child(child, NULL);
		return hm_error_set(err, -ENOMEM, -1, "out of memory");
	}
	r->fd = fd;
	r->sock = mig_uri_has_return_path(u);
	r->poll_ok = !(fstat(fd, &st) == 0 && S_ISREG(st.st_mode));
	memcpy(r->pre, pre, pre_len);
	r->pre_len = pre_len;
	r->idle_ms = o->idle_timeout_ms;
	r->deadline_ns = o->deadline_ns;
	r->deadline = UINT64_MAX;
	r->tls = tls;
	r->first_by = first_ms < 0 ? UINT64_MAX : hm_now_ns() + (uint64_t)first_ms * 1000000ull;
	r->cancel_fd = mig_cancel_fd(o->cancel);
	atomic_init(&r->stop, false);
	atomic_init(&r->timed_out, MIG_CONN_TIMEOUT_NONE);
	if (pre_len)
		rd_start(r);
	c->rp_fd = -1;
	c->fd = fd;
	c->child = child;
	c->rd = r;
	c->tls = tls;
	snprintf(c->desc, sizeof(c->desc), "%s", desc);
	if (r->sock) {
		c->rp_fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
		if (c->rp_fd < 0) {
			int e = -errno;
			rd_close(r);
			mig_tls_free(tls);
			free(c);
			return hm_error_set(err, e, -1, "%s: dup: %s", desc, strerror(-e));
		}
	}
	int rc = mig_file_open_ops(&rd_ops, r, MIG_FILE_READ, MIG_FILE_OWN_FD, &c->f);
	if (rc != 0) {
		rd_close(r);
		mig_tls_free(tls);
		if (c->rp_fd >= 0)
			close(c->rp_fd);
		if (child > 0)
			terminate_child(child, NULL);
		free(c);
		return hm_error_set(err, rc, -1, "%s: cannot open channel", desc);
	}
	*out = c;
	return 0;
}

/*
 * Wait until fd is ready for ev, or the cancel's fd (cfd, -1: none) is
 * readable; 0, HM_E_TIMEOUT, HM_E_CANCELLED or -errno. fd may be -1 (then
 * it is a sleep that a cancel ends).
 */
static int wait_fd_cancel(int fd, short ev, int timeout_ms, int cfd)
{
	struct pollfd p[2] = {{.fd = cfd, .events = POLLIN}, {.fd = fd, .events = ev}};
	uint64_t end = hm_now_ns() + (uint64_t)(timeout_ms < 0 ? 0 : timeout_ms) * 1000000ull;
	for (;;) {
		int left = -1;
		if (timeout_ms >= 0) {
			uint64_t now = hm_now_ns();
			left = now >= end ? 0 : (int)((end - now + 999999) / 1000000);
		}
		int n = poll(p, 2, left);
		if (n > 0 && p[0].revents)
			return HM_E_CANCELLED;
		if (n > 0)
			return 0;
		if (n == 0)
			return HM_E_TIMEOUT;
		if (errno != EINTR)
			return -errno;
	}
}

static int wait_fd(int fd, short ev, int timeout_ms)
{
	return wait_fd_cancel(fd, ev, timeout_ms, -1);
}

static int cancelled(hm_error_t *err, const char *desc, const char *what)
{
	return hm_error_set(err, HM_E_CANCELLED, -1, "%s: cancelled while %s", desc, what);
}

static int tcp_connect_once(const mig_uri_t *u, int timeout_ms, int cfd, int *out,
			    hm_error_t *err)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res, *ai;
	char port[16];
	snprintf(port, sizeof(port), "%d", u->port);
	int g = getaddrinfo(u->host, port, &hints, &res);
	if (g != 0)
		return hm_error_set(err, -EHOSTUNREACH, -1, "tcp:%s:%d: cannot resolve host: %s",
				    u->host, u->port, gai_strerror(g));
	int last = -ECONNREFUSED;
	for (ai = res; ai; ai = ai->ai_next) {
		int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
				ai->ai_protocol);
		if (fd < 0) {
			last = -errno;
			continue;
		}
		int rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
		if (rc != 0 && errno == EINPROGRESS) {
			rc = wait_fd_cancel(fd, POLLOUT, timeout_ms, cfd);
			if (rc == HM_E_CANCELLED) {
				close(fd);
				freeaddrinfo(res);
				return hm_error_set(err, HM_E_CANCELLED, -1,
						    "tcp:%s:%d: cancelled while connecting", u->host,
						    u->port);
			}
			if (rc == 0) {
				int soerr = 0;
				socklen_t sl = sizeof(soerr);
				getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
				rc = soerr ? -soerr : 0;
			}
		} else if (rc != 0) {
			rc = -errno;
		}
		if (rc == 0) {
			int fl = fcntl(fd, F_GETFL);
			fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
			int one = 1;
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
			freeaddrinfo(res);
			*out = fd;
			return 0;
		}
		last = rc;
		close(fd);
	}
	freeaddrinfo(res);
	if (last == HM_E_TIMEOUT)
		return hm_error_set(err, HM_E_TIMEOUT, -1, "tcp:%s:%d: connect timed out after %d ms",
				    u->host, u->port, timeout_ms);
	return hm_error_set(err, last, -1, "tcp:%s:%d: cannot connect: %s", u->host, u->port,
			    strerror(-last));
}

/* Retry schedule of a refused connect: 50 ms, doubling up to 500 ms. */
#define CONNECT_RETRY_FIRST_NS 50000000ull
#define CONNECT_RETRY_MAX_NS 500000000ull

/*
 * Before a retry of a refused connect: report it (one line), then wait
 * *delay (doubling it for the next time) unless the cancel comes first.
 * Returns 0, or HM_E_CANCELLED with err filled.
 */
static int connect_retry_wait(const mig_connect_opts_t *o, const char *desc, unsigned attempt,
			      const hm_error_t *why, uint64_t *delay, hm_error_t *err)
{
	if (o->on_retry) {
		char line[sizeof(why->msg) + 160];
		snprintf(line, sizeof(line), "connect attempt %u failed (%s); next in %.2f s, "
			 "giving up after %.1f s (--connect-timeout)",
			 attempt, why->msg, (double)*delay / 1e9, (double)o->timeout_ms / 1e3);
		o->on_retry(o->opaque, line);
	}
	int rc = wait_fd_cancel(-1, 0, (int)(*delay / 1000000u), mig_cancel_fd(o->cancel));
	*delay = *delay * 2 > CONNECT_RETRY_MAX_NS ? CONNECT_RETRY_MAX_NS : *delay * 2;
	if (rc == HM_E_CANCELLED)
		return cancelled(err, desc, "waiting for the destination to listen");
	return 0;
}

/*
 * Connect, retrying while the destination refuses (not listening yet: it
 * may be starting at the same moment) until timeout_ms has passed.
 */
static int tcp_connect(const mig_uri_t *u, const mig_connect_opts_t *o, int *out,
		       hm_error_t *err)
{
	int timeout_ms = o->timeout_ms;
	uint64_t end = hm_now_ns() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0) * 1000000ull;
	uint64_t delay = CONNECT_RETRY_FIRST_NS;
	char desc[300];
	snprintf(desc, sizeof(desc), "tcp:%s:%d", u->host, u->port);
	for (unsigned attempt = 1;; attempt++) {
		hm_error_t e;
		hm_error_clear(&e);
		uint64_t now = hm_now_ns();
		int left = now >= end ? 1 : (int)((end - now) / 1000000u) + 1;
		int rc = tcp_connect_once(u, left, mig_cancel_fd(o->cancel), out, &e);
		if (rc == 0)
			return 0;
		if (rc != -ECONNREFUSED || hm_now_ns() + delay >= end) {
			if (err)
				*err = e;
			return rc;
		}
		rc = connect_retry_wait(o, desc, attempt, &e, &delay, err);
		if (rc)
			return rc;
	}
}

static int unix_addr(const char *path, struct sockaddr_un *sa)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sa->sun_path))
		return -ENAMETOOLONG;
	strcpy(sa->sun_path, path);
	return 0;
}

static int unix_connect(const mig_uri_t *u, const mig_connect_opts_t *o, int *out,
			hm_error_t *err)
{
	int timeout_ms = o->timeout_ms;
	uint64_t delay = CONNECT_RETRY_FIRST_NS;
	unsigned attempt = 0;
	struct sockaddr_un sa;
	if (unix_addr(u->path, &sa) != 0)
		return hm_error_set(err, -ENAMETOOLONG, -1, "unix:%s: path too long", u->path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return hm_error_set(err, -errno, -1, "unix:%s: socket: %s", u->path,
				    strerror(errno));
	/* A unix connect does not block for long; retry briefly when the
	 * listener is not there yet (ENOENT/ECONNREFUSED) within the timeout,
	 * so that a destination started at the same time is found. */
	uint64_t end = hm_now_ns() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0) * 1000000ull;
	for (;;) {
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
			*out = fd;
			return 0;
		}
		int e = errno;
		if (e == EINTR)
			continue;
		if ((e == ENOENT || e == ECONNREFUSED || e == EAGAIN) && hm_now_ns() + delay < end) {
			hm_error_t why;
			hm_error_clear(&why);
			hm_error_set(&why, -e, -1, "unix:%s: %s", u->path, strerror(e));
			char desc[sizeof(u->path) + 8];
			snprintf(desc, sizeof(desc), "unix:%s", u->path);
			int rc = connect_retry_wait(o, desc, ++attempt, &why, &delay, err);
			if (rc) {
				close(fd);
				return rc;
			}
			continue;
		}
		close(fd);
		return hm_error_set(err, -e, -1, "unix:%s: cannot connect: %s", u->path,
				    strerror(e));
	}
}

static int spawn(const char *cmd, bool child_reads, int *our_fd, pid_t *pid, hm_error_t *err)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) != 0)
		return hm_error_set(err, -errno, -1, "exec:%s: pipe: %s", cmd, strerror(errno));
	pid_t c = fork();
	if (c < 0) {
		int e = errno;
		close(p[0]);
		close(p[1]);
		return hm_error_set(err, -e, -1, "exec:%s: fork: %s", cmd, strerror(e));
	}
	if (c == 0) {
		/* child: its stdin (source side) or stdout (destination side) is the pipe */
		int want = child_reads ? 0 : 1;
		int end = child_reads ? p[0] : p[1];
		if (dup2(end, want) < 0)
			_exit(127);
		signal(SIGPIPE, SIG_DFL);
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	if (child_reads) {
		close(p[0]);
		*our_fd = p[1];
	} else {
		close(p[1]);
		*our_fd = p[0];
	}
	*pid = c;
	return 0;
}

/*
 * The source's stream into an exec: child's stdin. A pipe has no send
 * timeout and a blocked write(2) on it sees neither our cancel nor a
 * shutdown, so a command that stops reading would hold the source until
 * it is killed. Our end is non-blocking; a full pipe is waited on with
 * poll beside the cancel, in slices (a shutdown is noticed within one),
 * and for at most timeout_ns per write (the socket's send timeout for
 * tcp/unix: the connect timeout). Errors as the channel expects: -EAGAIN
 * for the timeout ("write timed out"), -ECANCELED for a cancel.
 */
struct pw {
	int fd;
	int cancel_fd;
	uint64_t timeout_ns; /* 0: none */
	_Atomic bool stop;
};

static ssize_t pw_writev(void *o, const struct iovec *iov, int iovcnt)
{
	struct pw *w = o;
	uint64_t end = w->timeout_ns ? hm_now_ns() + w->timeout_ns : UINT64_MAX;
	for (;;) {
		if (atomic_load(&w->stop))
			return -ECANCELED;
		ssize_t n = writev(w->fd, iov, iovcnt);
		if (n >= 0)
			return n;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return -errno;
		uint64_t now = hm_now_ns();
		if (now >= end)
			return -EAGAIN;
		uint64_t wait = end - now < RD_SLICE_NS ? end - now : RD_SLICE_NS;
		int k = wait_fd_cancel(w->fd, POLLOUT, (int)((wait + 999999) / 1000000), w->cancel_fd);
		if (k == HM_E_CANCELLED)
			return -ECANCELED;
		if (k < 0 && k != HM_E_TIMEOUT)
			return k;
	}
}

static void pw_shutdown(void *o)
{
	atomic_store(&((struct pw *)o)->stop, true);
}

static int pw_close(void *o)
{
	struct pw *w = o;
	int rc = close(w->fd) == 0 ? 0 : -errno;
	free(w);
	return rc;
}

static const mig_file_ops_t pw_ops = {
	.writev = pw_writev, .shutdown = pw_shutdown, .close = pw_close,
};

/* An exec: source connection: the pipe through pw. Takes fd, reaps the
 * child on failure. */
static int conn_new_pipe_writer(int fd, const mig_connect_opts_t *o, const char *desc, pid_t child,
				mig_conn_t **out, hm_error_t *err)
{
	struct pw *w = calloc(1, sizeof(*w));
	mig_conn_t *c = calloc(1, sizeof(*c));
	int fl = fcntl(fd, F_GETFL);
	int rc = !w || !c ? -ENOMEM : fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0 ? -errno : 0;
	if (rc == 0) {
		w->fd = fd;
		w->cancel_fd = mig_cancel_fd(o->cancel);
		w->timeout_ns = o->timeout_ms > 0 ? (uint64_t)o->timeout_ms * 1000000ull : 0;
		rc = mig_file_open_ops(&pw_ops, w, MIG_FILE_WRITE, MIG_FILE_OWN_FD, &c->f);
	}
	if (rc != 0) {
		free(w);
		free(c);
		close(fd);
		if (child > 0)
			terminate_child(child, NULL);
		return hm_error_set(err, rc, -1, "%s: cannot open channel", desc);
	}
	c->rp_fd = -1;
	c->fd = fd;
	c->child = child;
	c->pw = w;
	c->source = true;
	snprintf(c->desc, sizeof(c->desc), "%s", desc);
	*out = c;
	return 0;
}

int mig_connect(const mig_uri_t *u, int timeout_ms, mig_conn_t **out, hm_error_t *err)
{
	mig_connect_opts_t o = {.timeout_ms = timeout_ms};
	return mig_connect_ex(u, &o, out, err);
}

int mig_connect_ex(const mig_uri_t *u, const mig_connect_opts_t *o, mig_conn_t **out,
		   hm_error_t *err)
{
	int timeout_ms = o->timeout_ms;
	char desc[256];
	int fd = -1, rc;
	pid_t child = -1;
	*out = NULL;
	mig_uri_format(u, desc, sizeof(desc));
	switch (u->kind) {
	case MIG_URI_TCP:
		rc = tcp_connect(u, o, &fd, err);
		break;
	case MIG_URI_UNIX:
		rc = unix_connect(u, o, &fd, err);
		break;
	case MIG_URI_EXEC:
		/* A child that exits early must give -EPIPE, not kill us. */
		signal(SIGPIPE, SIG_IGN);
		rc = spawn(u->path, true, &fd, &child, err);
		break;
	case MIG_URI_FILE:
		fd = open(u->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		rc = fd < 0 ? hm_error_set(err, -errno, -1, "%s: cannot create: %s", desc,
					   strerror(errno))
			    : 0;
		break;
	case MIG_URI_FD:
		signal(SIGPIPE, SIG_IGN);
		fd = fcntl(u->fd, F_DUPFD_CLOEXEC, 3);
		rc = fd < 0 ? hm_error_set(err, -errno, -1, "%s: %s", desc, strerror(errno)) : 0;
		break;
	default:
		rc = hm_error_set(err, HM_E_FORMAT, -1, "bad URI kind");
	}
	if (rc != 0)
		return rc;
	if (mig_uri_has_return_path(u) && timeout_ms > 0)
		set_timeouts(fd, timeout_ms);
	if (u->kind == MIG_URI_EXEC)
		return conn_new_pipe_writer(fd, o, desc, child, out, err);
	return conn_wrap(fd, MIG_FILE_WRITE, u, true, desc, child, out, err);
}

/* ---------------------------------------------------------------- TLS */

/* The source's stream through its TLS session (an ops backend; the conn
 * owns the session, the channel the fd). */
struct tls_wr {
	int fd;
	mig_tls_t *tls;
};

static ssize_t tls_wr_writev(void *o, const struct iovec *iov, int iovcnt)
{
	struct tls_wr *w = o;
	ssize_t done = 0;
	for (int i = 0; i < iovcnt; i++) {
		if (iov[i].iov_len == 0)
			continue;
		ssize_t n = mig_tls_send(w->tls, iov[i].iov_base, iov[i].iov_len);
		if (n <= 0)
			return done ? done : n < 0 ? n : -EPIPE;
		done += n;
		if ((size_t)n < iov[i].iov_len)
			break; /* a record's worth: the channel sends the rest */
	}
	return done;
}

static void tls_wr_shutdown(void *o)
{
	shutdown(((struct tls_wr *)o)->fd, SHUT_RDWR);
}

static int tls_wr_close(void *o)
{
	struct tls_wr *w = o;
	int rc = close(w->fd) == 0 ? 0 : -errno;
	free(w);
	return rc;
}

static const mig_file_ops_t tls_wr_ops = {
	.writev = tls_wr_writev, .shutdown = tls_wr_shutdown, .close = tls_wr_close,
};

int mig_connect_tls(const mig_uri_t *u, int timeout_ms, const mig_tls_creds_t *tls,
		    mig_conn_t **out, hm_error_t *err)
{
	mig_connect_opts_t o = {.timeout_ms = timeout_ms};
	return mig_connect_tls_ex(u, &o, tls, out, err);
}

int mig_connect_tls_ex(const mig_uri_t *u, const mig_connect_opts_t *o, const mig_tls_creds_t *tls,
		       mig_conn_t **out, hm_error_t *err)
{
	char desc[256], why[600];
	int fd = -1;
	int timeout_ms = o->timeout_ms;
	if (!tls)
		return mig_connect_ex(u, o, out, err);
	*out = NULL;
	mig_uri_format(u, desc, sizeof(desc));
	if (u->kind != MIG_URI_TCP)
		return hm_error_set(err, HM_E_STATE, -1, "%s: TLS (--tls-creds) needs a tcp: URI",
				    desc);
	if (mig_tls_creds_endpoint(tls) != MIG_TLS_CLIENT)
		return hm_error_set(err, HM_E_STATE, -1, "%s: TLS: server credentials on a client",
				    desc);
	int rc = tcp_connect(u, o, &fd, err);
	if (rc != 0)
		return rc;
	int ms = timeout_ms > 0 ? timeout_ms : MIG_IO_TIMEOUT_MS;
	set_timeouts(fd, ms);
	mig_tls_t *t = NULL;
	rc = mig_tls_handshake(tls, fd, u->host, hm_now_ns() + (uint64_t)ms * 1000000ull,
			       mig_cancel_fd(o->cancel), &t, why, sizeof(why));
	if (rc == HM_E_CANCELLED) {
		close(fd);
		return cancelled(err, desc, "in the TLS handshake");
	}
	if (rc != 0) {
		close(fd);
		return hm_error_set(err, rc == -EPROTO ? HM_E_PEER : rc, -1,
				    "%s: TLS handshake failed: %s", desc, why);
	}
	mig_conn_t *c = calloc(1, sizeof(*c));
	struct tls_wr *w = calloc(1, sizeof(*w));
	if (!c || !w) {
		rc = hm_error_set(err, -ENOMEM, -1, "out of memory");
		goto fail;
	}
	c->child = -1;
	c->source = true;
	c->tls = t;
	c->fd = fd;
	snprintf(c->desc, sizeof(c->desc), "%s", desc);
	c->rp_fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (c->rp_fd < 0) {
		rc = hm_error_set(err, -errno, -1, "%s: dup: %s", desc, strerror(errno));
		goto fail;
	}
	w->fd = fd;
	w->tls = t;
	rc = mig_file_open_ops(&tls_wr_ops, w, MIG_FILE_WRITE, MIG_FILE_OWN_FD, &c->f);
	if (rc != 0) {
		rc = hm_error_set(err, rc, -1, "%s: cannot open channel", desc);
		goto fail;
	}
	*out = c;
	return 0;
fail:
	if (c && c->rp_fd >= 0)
		close(c->rp_fd);
	free(c);
	free(w);
	mig_tls_free(t);
	close(fd);
	return rc;
}

int mig_listener_set_tls(mig_listener_t *l, const mig_tls_creds_t *c, hm_error_t *err)
{
	char desc[256];
	mig_uri_format(&l->uri, desc, sizeof(desc));
	if (c && l->uri.kind != MIG_URI_TCP)
		return hm_error_set(err, HM_E_STATE, -1, "%s: TLS (--tls-creds) needs a tcp: URI",
				    desc);
	if (c && mig_tls_creds_endpoint(c) != MIG_TLS_SERVER)
		return hm_error_set(err, HM_E_STATE, -1, "%s: TLS: client credentials on a listener",
				    desc);
	l->tls = c;
	return 0;
}

int mig_listen(const mig_uri_t *u, mig_listener_t **out, hm_error_t *err)
{
	mig_listener_t *l = calloc(1, sizeof(*l));
	char desc[256];
	*out = NULL;
	if (!l)
		return hm_error_set(err, -ENOMEM, -1, "out of memory");
	l->uri = *u;
	l->fd = -1;
	mig_uri_format(u, desc, sizeof(desc));
	if (u->kind == MIG_URI_TCP) {
		struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
					 .ai_flags = AI_PASSIVE},
				*res;
		char port[16];
		snprintf(port, sizeof(port), "%d", u->port);
		int g = getaddrinfo(u->host[0] ? u->host : NULL, port, &hints, &res);
		if (g != 0) {
			free(l);
			return hm_error_set(err, -EADDRNOTAVAIL, -1, "%s: cannot resolve: %s", desc,
					    gai_strerror(g));
		}
		int e = EADDRNOTAVAIL;
		for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
			int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
			if (fd < 0) {
				e = errno;
				continue;
			}
			int one = 1;
			setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
			if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 4) == 0) {
				l->fd = fd;
				break;
			}
			e = errno;
			close(fd);
		}
		freeaddrinfo(res);
		if (l->fd < 0) {
			free(l);
			return hm_error_set(err, -e, -1, "%s: cannot listen: %s", desc, strerror(e));
		}
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		if (getsockname(l->fd, (struct sockaddr *)&ss, &sl) == 0) {
			if (ss.ss_family == AF_INET)
				l->uri.port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
			else if (ss.ss_family == AF_INET6)
				l->uri.port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
		}
	} else if (u->kind == MIG_URI_UNIX) {
		struct sockaddr_un sa;
		if (unix_addr(u->path, &sa) != 0) {
			free(l);
			return hm_error_set(err, -ENAMETOOLONG, -1, "%s: path too long", desc);
		}
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			int e = errno;
			free(l);
			return hm_error_set(err, -e, -1, "%s: socket: %s", desc, strerror(e));
		}
		/* A stale socket file from a dead listener is replaced; any other
		 * kind of file is not ours to remove. */
		struct stat st;
		if (lstat(u->path, &st) == 0 && S_ISSOCK(st.st_mode))
			unlink(u->path);
		if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 4) != 0) {
			int e = errno;
			close(fd);
			free(l);
			return hm_error_set(err, -e, -1, "%s: cannot listen: %s", desc, strerror(e));
		}
		l->fd = fd;
		l->unlink_path = true;
	}
	*out = l;
	return 0;
}

const mig_uri_t *mig_listener_uri(const mig_listener_t *l)
{
	return &l->uri;
}

void mig_accept_opts_default(mig_accept_opts_t *o)
{
	memset(o, 0, sizeof(*o));
	o->timeout_ms = 600000;
	o->probe_timeout_ms = MIG_PROBE_TIMEOUT_MS;
	o->max_strays = MIG_MAX_STRAYS;
	o->idle_timeout_ms = MIG_IO_TIMEOUT_MS;
	o->deadline_ns = (uint64_t)MIG_DEADLINE_MS * 1000000ull;
}

/* "127.0.0.1:40312", "[::1]:40312" or "a unix peer". */
static void peer_name(int fd, char *buf, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[INET6_ADDRSTRLEN + 2] = "?";
	snprintf(buf, len, "a unix peer");
	if (getpeername(fd, (struct sockaddr *)&ss, &sl) != 0)
		return;
	if (ss.ss_family == AF_INET) {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;
		inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
		snprintf(buf, len, "%s:%u", host, ntohs(a->sin_port));
	} else if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
		inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
		snprintf(buf, len, "[%s]:%u", host, ntohs(a->sin6_port));
	}
}

/*
 * Take the first 8 bytes of a new connection within ms: QEVM and version 3
 * make it the migration (0); anything else is a stray (1, why in `why`);
 * HM_E_CANCELLED when the cancel's fd (cfd) fires first.
 */
static int probe(int fd, mig_tls_t *tls, int ms, int cfd, uint8_t hdr[8], char *why, size_t wl)
{
	size_t got = 0;
	uint64_t end = hm_now_ns() + (uint64_t)(ms > 0 ? ms : 0) * 1000000ull;
	while (got < 8) {
		uint64_t now = hm_now_ns();
		int left = now >= end ? 0 : (int)((end - now + 999999) / 1000000);
		struct pollfd p[2] = {{.fd = fd, .events = POLLIN}, {.fd = cfd, .events = POLLIN}};
		/* A TLS session may hold decrypted bytes the socket no longer shows. */
		int k = tls && mig_tls_pending(tls) ? 1 : left ? poll(p, 2, left) : 0;
		if (k < 0 && errno == EINTR)
			continue;
		if (k > 0 && p[1].revents)
			return HM_E_CANCELLED;
		if (k <= 0) {
			if (got)
				snprintf(why, wl, "sent %zu byte%s, then nothing within %d ms", got,
					 got == 1 ? "" : "s", ms);
			else
				snprintf(why, wl, "sent nothing within %d ms", ms);
			return 1;
		}
		ssize_t n = mig_sock_recv_nb(fd, tls, hdr + got, 8 - got);
		if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
			continue;
		if (n <= 0) {
			if (n < 0 && tls && errno == EPROTO)
				snprintf(why, wl, "failed after %zu bytes: TLS: %s", got,
					 mig_tls_why(tls));
			else if (n < 0)
				snprintf(why, wl, "failed after %zu bytes: %s", got, strerror(errno));
			else if (got)
				snprintf(why, wl, "closed after %zu byte%s", got, got == 1 ? "" : "s");
			else
				snprintf(why, wl, "closed without sending anything");
			return 1;
		}
		got += (size_t)n;
	}
	uint32_t magic = hm_load_be32(hdr), version = hm_load_be32(hdr + 4);
	if (magic != QEMU_VM_FILE_MAGIC) {
		/* 0x16 0x03: a TLS handshake record, from a source using TLS. */
		bool hello = !tls && hdr[0] == 0x16 && hdr[1] == 0x03;
		snprintf(why, wl,
			 "starts with %02x %02x %02x %02x %02x %02x %02x %02x, not a QEMU migration "
			 "stream (QEVM, version 3)%s",
			 hdr[0], hdr[1], hdr[2], hdr[3], hdr[4], hdr[5], hdr[6], hdr[7],
			 hello ? ": it is a TLS handshake (this listener has no --tls-creds)" : "");
		return 1;
	}
	if (version != QEMU_VM_FILE_VERSION) {
		snprintf(why, wl, "sent a QEVM stream of version %" PRIu32 " (only version 3 is accepted)",
			 version);
		return 1;
	}
	return 0;
}

/*
 * Close a connection that failed the TLS handshake so that its peer reads
 * the alert we sent: a close with unread input would reset it, and the
 * reset would discard the alert. End our side, then wait for the peer to
 * close for at most TLS_LINGER_MS (a bound on the listener's time, not the
 * peer's), draining what it still sends when drain is set. A peer that
 * sent a plain stream is not drained: a QEMU source without a return path
 * would take a drained stream for a delivered one and stop its guest; it
 * meets a full window, then the reset, and fails with its guest running.
 */
#define TLS_LINGER_MS 1000
static void close_lingering(int fd, bool drain)
{
	uint8_t sink[4096];
	uint64_t end = hm_now_ns() + TLS_LINGER_MS * 1000000ull;
	shutdown(fd, SHUT_WR);
	for (;;) {
		uint64_t now = hm_now_ns();
		if (now >= end)
			break;
		struct pollfd p = {.fd = fd, .events = drain ? POLLIN : POLLRDHUP};
		int k = poll(&p, 1, (int)((end - now + 999999) / 1000000));
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0 || !drain)
			break;
		ssize_t n = recv(fd, sink, sizeof(sink), MSG_DONTWAIT);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
			break;
	}
	close(fd);
}

/* Wait for a connection on l until end (absolute ns, UINT64_MAX = forever). */
static int accept_one(mig_listener_t *l, uint64_t end, int timeout_ms, int cfd,
		      const char *desc, unsigned strays, int *out, hm_error_t *err)
{
	uint64_t now = hm_now_ns();
	int left = end == UINT64_MAX ? -1 : now >= end ? 0 : (int)((end - now + 999999) / 1000000);
	int rc = wait_fd_cancel(l->fd, POLLIN, left, cfd);
	if (rc == HM_E_CANCELLED)
		return cancelled(err, desc, "waiting for a source to connect");
	if (rc == HM_E_TIMEOUT) {
		if (strays)
			return hm_error_set(err, HM_E_TIMEOUT, -1,
					    "%s: no migration stream within %d ms (%u stray connection%s "
					    "refused; --accept-timeout)",
					    desc, timeout_ms, strays, strays == 1 ? "" : "s");
		return hm_error_set(err, HM_E_TIMEOUT, -1, "%s: no source connected within %d ms",
				    desc, timeout_ms);
	}
	if (rc != 0)
		return hm_error_set(err, rc, -1, "%s: poll: %s", desc, strerror(-rc));
	int fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return hm_error_set(err, -errno, -1, "%s: accept: %s", desc, strerror(errno));
	if (l->uri.kind == MIG_URI_TCP) {
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	*out = fd;
	return 0;
}

/*
 * One accepted connection fd on l: its TLS handshake when l has TLS, then
 * (screen) the probe of its first 8 bytes, both within what is left of
 * the accept's wait (end) and the probe's (pms). 0: it is the migration
 * (*tls, hdr and *pre set); 1: a stray, closed, why says what it did;
 * otherwise an error (err set, fd closed): a cancel, or a failed
 * handshake without screening.
 */
static int screen_one(mig_listener_t *l, const mig_accept_opts_t *o, bool screen, int fd,
		      uint64_t end, int pms, const char *desc, const char *peer, mig_tls_t **tls,
		      uint8_t hdr[8], size_t *pre, char *why, size_t wl, hm_error_t *err)
{
	int cfd = mig_cancel_fd(o->cancel);
	/* The probe (and a TLS handshake) counts against the accept timeout too. */
	int wait = pms;
	uint64_t now = hm_now_ns();
	if (end != UINT64_MAX)
		wait = now >= end ? 1 : (int)((end - now + 999999) / 1000000);
	if (wait > pms && screen)
		wait = pms;
	if (l->tls) {
		uint64_t hs_end = now + (uint64_t)wait * 1000000ull;
		char reason[600];
		int hr = mig_tls_handshake(l->tls, fd, NULL, hs_end, cfd, tls, reason, sizeof(reason));
		if (hr == HM_E_CANCELLED) {
			close(fd);
			return cancelled(err, desc, "in the TLS handshake of a connection");
		}
		if (hr != 0) {
			/* the peer gets the TLS alert, not a reset */
			close_lingering(fd, hr != -EPROTONOSUPPORT);
			if (!screen)
				return hm_error_set(err, hr, -1, "%s: the connection from %s failed "
						    "the TLS handshake: %s", desc, peer, reason);
			snprintf(why, wl, "failed the TLS handshake: %.560s", reason);
			return 1;
		}
		if (!screen)
			return 0;
		/* the 8 bytes in what is left: handshake and probe share the wait */
		uint64_t t = hm_now_ns();
		wait = t >= hs_end ? 1 : (int)((hs_end - t + 999999) / 1000000);
	}
	int pr = probe(fd, *tls, wait, cfd, hdr, why, wl);
	if (pr == 0) {
		*pre = 8;
		return 0;
	}
	close(fd);
	mig_tls_free(*tls);
	*tls = NULL;
	if (pr == HM_E_CANCELLED)
		return cancelled(err, desc, "reading the first bytes of a connection");
	return 1;
}

/* A tcp or unix listener: take connections until one is the migration
 * (screen: the others are strays, each reported, up to o->max_strays). */
static int accept_socket(mig_listener_t *l, const mig_accept_opts_t *o, bool screen,
			 const char *desc, int *fd_out, mig_tls_t **tls, uint8_t hdr[8],
			 size_t *pre, unsigned *strays_out, hm_error_t *err)
{
	uint64_t end = o->timeout_ms < 0 ? UINT64_MAX
					 : hm_now_ns() + (uint64_t)o->timeout_ms * 1000000ull;
	int pms = o->probe_timeout_ms > 0 ? o->probe_timeout_ms : MIG_PROBE_TIMEOUT_MS;
	unsigned max = o->max_strays ? o->max_strays : MIG_MAX_STRAYS;
	for (unsigned strays = 0;;) {
		int fd = -1;
		int rc = accept_one(l, end, o->timeout_ms, mig_cancel_fd(o->cancel), desc, strays,
				    &fd, err);
		if (rc != 0)
			return rc;
		if (!screen && !l->tls) {
			*fd_out = fd;
			return 0;
		}
		char why[600], peer[INET6_ADDRSTRLEN + 16], line[1024];
		peer_name(fd, peer, sizeof(peer));
		rc = screen_one(l, o, screen, fd, end, pms, desc, peer, tls, hdr, pre, why,
				sizeof(why), err);
		if (rc == 0)
			*fd_out = fd;
		if (rc != 1)
			return rc;
		strays++;
		if (strays_out)
			*strays_out = strays;
		snprintf(line, sizeof(line), "%s: stray connection %u of at most %u from %s "
			 "refused: it %s", desc, strays, max, peer, why);
		if (o->on_stray)
			o->on_stray(o->opaque, line);
		if (strays >= max)
			return hm_error_set(err, HM_E_PEER, -1,
					    "%s: gave up after %u stray connections (the last "
					    "from %s: it %s; --max-strays)",
					    desc, strays, peer, why);
	}
}

static int accept_impl(mig_listener_t *l, const mig_accept_opts_t *o, bool screen,
		       mig_conn_t **out, unsigned *strays_out, hm_error_t *err)
{
	const mig_uri_t *u = &l->uri;
	char desc[256];
	int fd = -1, rc;
	pid_t child = -1;
	uint8_t hdr[8];
	size_t pre = 0;
	int first_ms = -1;
	mig_tls_t *tls = NULL;
	*out = NULL;
	if (strays_out)
		*strays_out = 0;
	mig_uri_format(u, desc, sizeof(desc));
	switch (u->kind) {
	case MIG_URI_TCP:
	case MIG_URI_UNIX:
		rc = accept_socket(l, o, screen, desc, &fd, &tls, hdr, &pre, strays_out, err);
		if (rc != 0)
			return rc;
		break;
	case MIG_URI_EXEC:
		rc = spawn(u->path, false, &fd, &child, err);
		if (rc != 0)
			return rc;
		first_ms = screen ? o->timeout_ms : -1;
		break;
	case MIG_URI_FILE:
		fd = open(u->path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return hm_error_set(err, -errno, -1, "%s: cannot open: %s", desc,
					    strerror(errno));
		break;
	case MIG_URI_FD:
		fd = fcntl(u->fd, F_DUPFD_CLOEXEC, 3);
		if (fd < 0)
			return hm_error_set(err, -errno, -1, "%s: %s", desc, strerror(errno));
		first_ms = screen ? o->timeout_ms : -1;
		break;
	}
	/* Sends on the return path are bounded too (a peer that stops reading). */
	if (mig_uri_has_return_path(u))
		set_timeouts(fd, o->idle_timeout_ms > 0 ? o->idle_timeout_ms : MIG_IO_TIMEOUT_MS);
	return conn_new_reader(fd, u, desc, hdr, pre, o, first_ms, child, tls, out, err);
}

int mig_accept_ex(mig_listener_t *l, const mig_accept_opts_t *o, mig_conn_t **out,
		  unsigned *strays, hm_error_t *err)
{
	mig_accept_opts_t d;
	if (!o) {
		mig_accept_opts_default(&d);
		o = &d;
	}
	return accept_impl(l, o, true, out, strays, err);
}

int mig_accept(mig_listener_t *l, int timeout_ms, mig_conn_t **out, hm_error_t *err)
{
	/* As before the limits existed: no screening, 30 s idle, no deadline. */
	mig_accept_opts_t o = {.timeout_ms = timeout_ms, .idle_timeout_ms = MIG_IO_TIMEOUT_MS};
	return accept_impl(l, &o, false, out, NULL, err);
}

enum mig_conn_timeout mig_conn_timed_out(const mig_conn_t *c)
{
	return c && c->rd ? (enum mig_conn_timeout)atomic_load(&c->rd->timed_out)
			  : MIG_CONN_TIMEOUT_NONE;
}

bool mig_conn_deadline_passed(const mig_conn_t *c)
{
	return c && c->rd && c->rd->started && hm_now_ns() >= c->rd->deadline;
}

void mig_listener_close(mig_listener_t *l)
{
	if (!l)
		return;
	if (l->fd >= 0)
		close(l->fd);
	if (l->unlink_path)
		unlink(l->uri.path);
	free(l);
}

mig_file_t *mig_conn_file(mig_conn_t *c)
{
	return c->f;
}

bool mig_conn_has_return_path(const mig_conn_t *c)
{
	return c->rp_fd >= 0;
}

const char *mig_conn_desc(const mig_conn_t *c)
{
	return c->desc;
}

int mig_conn_raw_fd(mig_conn_t *c, uint8_t pre[8], size_t *pre_len)
{
	size_t n = 0;
	if (c->rd && c->rd->pre_pos < c->rd->pre_len) {
		n = c->rd->pre_len - c->rd->pre_pos;
		memcpy(pre, c->rd->pre + c->rd->pre_pos, n);
		c->rd->pre_pos = c->rd->pre_len;
	}
	*pre_len = n;
	return c->fd;
}

mig_tls_t *mig_conn_tls(const mig_conn_t *c)
{
	return c->tls;
}

bool mig_conn_tls_refused(const mig_conn_t *c)
{
	return c && c->tls && mig_tls_refused(c->tls);
}

uint64_t mig_conn_unsent_bytes(const mig_conn_t *c)
{
	int n = 0;
	if (!c || c->rp_fd < 0 || ioctl(c->rp_fd, SIOCOUTQ, &n) != 0 || n < 0)
		return 0;
	return (uint64_t)n;
}

void mig_conn_finish_write(mig_conn_t *c)
{
	if (c && c->tls)
		mig_tls_bye(c->tls); /* close_notify: a clean end for the destination */
	if (c && c->rp_fd >= 0)
		shutdown(c->rp_fd, SHUT_WR);
}

void mig_conn_abort(mig_conn_t *c)
{
	if (!c)
		return;
	mig_file_shutdown(c->f);
	if (c->rp_fd >= 0)
		shutdown(c->rp_fd, SHUT_RDWR);
}

/*
 * Reap an exec: child. A source's child gets its exit after reading the
 * stream's end; that wait ends at a cancel (the child is then terminated
 * and the close reports the cancel). cancel_fd -1: a plain wait.
 */
static int reap_child(pid_t child, int cancel_fd, int *st)
{
	for (;;) {
		pid_t r = waitpid(child, st, cancel_fd >= 0 ? WNOHANG : 0);
		if (r == child)
			return 0;
		if (r < 0 && errno != EINTR)
			return -errno;
		if (r == 0 && wait_fd_cancel(-1, 0, 10, cancel_fd) == HM_E_CANCELLED) {
			terminate_child(child, st);
			return HM_E_CANCELLED;
		}
	}
}

int mig_conn_close(mig_conn_t *c, hm_error_t *err)
{
	if (!c)
		return 0;
	int cancel_fd = c->pw ? c->pw->cancel_fd : -1; /* before f frees pw */
	int rc = mig_file_close(c->f, err);
	if (c->rp_fd >= 0)
		close(c->rp_fd);
	mig_tls_free(c->tls); /* after the channel's last write went through it */
	if (c->child > 0) {
		int st = 0;
		/* A failed stream is of no use to the child either (a source's
		 * child may never read again: waiting for it would hang). */
		int wr = 0;
		if (rc != 0)
			terminate_child(c->child, &st);
		else
			wr = reap_child(c->child, cancel_fd, &st);
		if (rc == 0 && wr == HM_E_CANCELLED)
			rc = hm_error_set(err, HM_E_CANCELLED, -1,
					  "%s: cancelled while the command was still running", c->desc);
		else if (rc == 0 && c->source && !(WIFEXITED(st) && WEXITSTATUS(st) == 0))
			rc = hm_error_set(err, HM_E_PEER, -1, "%s: command %s %d", c->desc,
					  WIFEXITED(st) ? "exited with status" : "killed by signal",
					  WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
	}
	free(c);
	return rc;
}

/* ------------------------------------------------------------ return path */

/*
 * Return-path messages (layouts in hptmig/qemu_wire.h). The source reads
 * one PONG after its PING (setup, to measure the round trip) and one
 * RESUMED or REFUSED after the stream's last byte; a REFUSED may come
 * instead of the PONG.
 */
static int write_all(int fd, mig_tls_t *tls, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	while (len > 0) {
		ssize_t n;
		if (tls) {
			n = mig_tls_send(tls, p, len);
			if (n <= 0)
				return n < 0 ? (int)n : -EPIPE;
			p += n;
			len -= (size_t)n;
			continue;
		}
		n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int read_all(int fd, mig_tls_t *tls, void *buf, size_t len, uint64_t deadline)
{
	uint8_t *p = buf;
	while (len > 0) {
		uint64_t now = hm_now_ns();
		if (now >= deadline)
			return HM_E_TIMEOUT;
		/* Bytes a TLS session already decrypted do not show on the socket. */
		if (!tls || !mig_tls_pending(tls)) {
			int rc = wait_fd(fd, POLLIN, (int)((deadline - now) / 1000000 + 1));
			if (rc != 0)
				return rc;
		}
		ssize_t n = tls ? mig_sock_recv_nb(fd, tls, p, len) : recv(fd, p, len, 0);
		if (n == 0)
			return HM_E_TRUNCATED;
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Send one message, header and payload in one write; nothing without a return path. */
static int rp_send(mig_conn_t *c, uint16_t type, const void *payload, size_t len)
{
	struct {
		struct mig_rp_wire_hdr h;
		uint8_t p[MIG_RP_PAYLOAD_MAX];
	} w;
	if (c->rp_fd < 0)
		return 0;
	hm_store_be16(w.h.type, type);
	hm_store_be16(w.h.len, (uint16_t)len);
	memcpy(w.p, payload, len);
	return write_all(c->rp_fd, c->tls, &w, sizeof(w.h) + len);
}

int mig_rp_send_resumed(mig_conn_t *c, const mig_rp_msg_t *m)
{
	if (m->has_root) {
		struct mig_rp_wire_resumed_root q;
		memcpy(q.root, m->root, sizeof(q.root));
		if (m->has_digest)
			memcpy(q.digest, m->digest, sizeof(q.digest));
		else
			memset(q.digest, 0, sizeof(q.digest));
		hm_store_be64(q.valid, m->valid);
		hm_store_be64(q.bytes, m->bytes);
		hm_store_be64(q.load_ns, m->load_ns);
		hm_store_be32(q.flags, m->has_digest ? MIG_RP_RESUMED_DIGEST : 0);
		return rp_send(c, MIG_RP_RESUMED_ROOT, &q, sizeof(q));
	}
	struct mig_rp_wire_resumed p;
	memcpy(p.digest, m->digest, sizeof(p.digest));
	hm_store_be64(p.valid, m->valid);
	hm_store_be64(p.bytes, m->bytes);
	hm_store_be64(p.load_ns, m->load_ns);
	return rp_send(c, MIG_RP_RESUMED, &p, sizeof(p));
}

int mig_rp_send_refused(mig_conn_t *c, const hm_error_t *e)
{
	struct {
		struct mig_rp_wire_refused p;
		char msg[sizeof(e->msg)];
	} w;
	_Static_assert(sizeof(w) == sizeof(w.p) + sizeof(w.msg), "no padding");
	_Static_assert(sizeof(w) <= MIG_RP_PAYLOAD_MAX, "a REFUSED fits a message");
	size_t n = strnlen(e->msg, sizeof(e->msg) - 1);
	hm_store_be32(w.p.code, (uint32_t)e->code);
	hm_store_be64(w.p.offset, (uint64_t)e->offset);
	memcpy(w.msg, e->msg, n);
	return rp_send(c, MIG_RP_REFUSED, &w, sizeof(w.p) + n);
}

int mig_rp_send_pong(mig_conn_t *c, uint32_t value)
{
	struct mig_rp_wire_pong p;
	hm_store_be32(p.value, value);
	return rp_send(c, MIG_RP_PONG, &p, sizeof(p));
}

/* Decode one payload of len bytes; 0, or HM_E_FORMAT for an unknown type or length. */
static int rp_decode(uint16_t type, const uint8_t *body, uint16_t len, mig_rp_msg_t *m,
		     hm_error_t *err)
{
	m->type = type;
	if (type == MIG_RP_RESUMED && len == sizeof(struct mig_rp_wire_resumed)) {
		const struct mig_rp_wire_resumed *p = (const void *)body;
		memcpy(m->digest, p->digest, sizeof(m->digest));
		m->valid = hm_load_be64(p->valid);
		m->bytes = hm_load_be64(p->bytes);
		m->load_ns = hm_load_be64(p->load_ns);
		m->has_digest = true;
		return 0;
	}
	if (type == MIG_RP_RESUMED_ROOT && len == sizeof(struct mig_rp_wire_resumed_root)) {
		const struct mig_rp_wire_resumed_root *q = (const void *)body;
		uint32_t flags = hm_load_be32(q->flags);
		if (flags & ~MIG_RP_RESUMED_DIGEST)
			return hm_error_set(err, HM_E_FORMAT, -1,
					    "return path: RESUMED_ROOT flags %#x are unknown", flags);
		memcpy(m->root, q->root, sizeof(m->root));
		memcpy(m->digest, q->digest, sizeof(m->digest));
		m->has_root = true;
		m->has_digest = (flags & MIG_RP_RESUMED_DIGEST) != 0;
		m->valid = hm_load_be64(q->valid);
		m->bytes = hm_load_be64(q->bytes);
		m->load_ns = hm_load_be64(q->load_ns);
		return 0;
	}
	if (type == MIG_RP_PONG && len == sizeof(struct mig_rp_wire_pong)) {
		m->value = hm_load_be32(((const struct mig_rp_wire_pong *)(const void *)body)->value);
		return 0;
	}
	if (type == MIG_RP_REFUSED && len >= sizeof(struct mig_rp_wire_refused)) {
		const struct mig_rp_wire_refused *p = (const void *)body;
		m->code = (int32_t)hm_load_be32(p->code);
		m->offset = (int64_t)hm_load_be64(p->offset);
		size_t n = len - sizeof(*p);
		if (n >= sizeof(m->msg))
			n = sizeof(m->msg) - 1;
		memcpy(m->msg, body + sizeof(*p), n);
		m->msg[n] = 0;
		return 0;
	}
	return hm_error_set(err, HM_E_FORMAT, -1,
			    "return path: message type %u with length %u is unknown", type, len);
}

int mig_rp_recv(mig_conn_t *c, int timeout_ms, mig_rp_msg_t *m, hm_error_t *err)
{
	struct mig_rp_wire_hdr h;
	uint8_t body[MIG_RP_PAYLOAD_MAX];
	memset(m, 0, sizeof(*m));
	if (c->rp_fd < 0)
		return hm_error_set(err, HM_E_STATE, -1, "%s: no return path", c->desc);
	uint64_t deadline = hm_now_ns() + (uint64_t)timeout_ms * 1000000ull;
	int rc = read_all(c->rp_fd, c->tls, &h, sizeof(h), deadline);
	if (rc == 0 && !c->tls && h.type[0] == 0x15 && h.type[1] == 0x03)
		/* 0x15 0x03: a TLS alert record, where a return-path message belongs. */
		return hm_error_set(err, HM_E_PEER, -1,
				    "return path: the destination answered with a TLS alert: it "
				    "expects TLS (--tls-creds)");
	if (rc == 0) {
		uint16_t len = hm_load_be16(h.len);
		if (len > sizeof(body))
			return hm_error_set(err, HM_E_FORMAT, -1,
					    "return path: message length %u exceeds max %zu", len,
					    sizeof(body));
		rc = read_all(c->rp_fd, c->tls, body, len, deadline);
		if (rc == 0)
			return rp_decode(hm_load_be16(h.type), body, len, m, err);
	}
	if (rc == HM_E_TIMEOUT)
		return hm_error_set(err, HM_E_TIMEOUT, -1,
				    "return path: no answer from the destination within %d ms",
				    timeout_ms);
	if (rc == HM_E_TRUNCATED)
		return hm_error_set(err, HM_E_PEER, -1,
				    "return path: the destination closed the connection without "
				    "an answer");
	if (rc == -EPROTO && c->tls)
		return hm_error_set(err, HM_E_PEER, -1, "return path: TLS: %s", mig_tls_why(c->tls));
	return hm_error_set(err, rc, -1, "return path: %s", hm_err_str(rc));
}
