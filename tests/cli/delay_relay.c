/* SPDX-License-Identifier: MIT */
/*
 * delay_relay: a test-only TCP relay that adds a one-way delay in each
 * direction, so that the two-host migration test gets a round trip on
 * kernels without netem. Every byte (and the half-close that follows the
 * last one) is delivered, in order, no earlier than DELAY_MS after the relay
 * read it. It must never reorder, drop or invent bytes, never outlive its
 * test (hard timeout) and never print anything but one line per error on
 * stderr; it is never installed.
 *
 * usage: delay_relay [-n CONNS] [-t TIMEOUT_S] [-q MAX_QUEUE] [-b SOCKBUF]
 *                    LISTEN_ADDR:PORT TARGET_ADDR:PORT DELAY_MS
 *
 * Why the window: a relay terminates TCP, so whatever it holds looks
 * "delivered" to the sender (the sender's unsent-bytes count, which the
 * migration controller reads, no longer sees it). A real link with latency
 * holds about one bandwidth-delay product in flight. So each direction
 * reads only while it holds less than twice what it could write onward in
 * the last delay period (at least 64 KiB, at most MAX_QUEUE, which bounds
 * memory): it grows like TCP's slow start while the far side keeps up and
 * holds about 2 x BDP when the link behind it is the bottleneck. The
 * socket buffers are kept small (SOCKBUF) for the same reason.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CHUNK_MAX 65536u
#define MIN_WINDOW 65536u
#define CONNECT_RETRY_NS (20ull * 1000000000ull) /* the destination may start late */

static const char *prog = "delay_relay";

struct chunk {
	struct chunk *next;
	uint64_t due_ns; /* not written before this time (CLOCK_MONOTONIC) */
	size_t len, off; /* off: bytes of data[] already written */
	bool eof;        /* the half-close marker (len 0) */
	unsigned char data[];
};

/* One direction: bytes read from `in`, delayed, written to `out`. */
struct dir {
	const char *name;
	int in, out;
	struct chunk *head, *tail;
	size_t queued;   /* bytes read and not yet written */
	bool eof_read;   /* `in` gave EOF: the marker is queued */
	bool shut;       /* SHUT_WR done on `out` */
	bool blocked;    /* due bytes wait for room in `out` (poll POLLOUT) */
	uint64_t win_start;
	size_t win_cur, win_prev; /* bytes written this period and the last one */
};

struct cfg {
	uint64_t delay_ns, period_ns;
	size_t max_queue;
	int sockbuf;
};

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int sys_fail(const char *what)
{
	fprintf(stderr, "%s: %s: %s\n", prog, what, strerror(errno));
	return -1;
}

static int dir_fail(const struct dir *d, const char *what, int e)
{
	fprintf(stderr, "%s: %s: %s: %s\n", prog, d->name, what, strerror(e));
	return -1;
}

/* "host:port", "[v6]:port"; host may be a name. */
static int resolve(const char *spec, bool passive, struct addrinfo **out)
{
	char host[256];
	const char *colon = strrchr(spec, ':');
	if (!colon || colon == spec || !colon[1] || (size_t)(colon - spec) >= sizeof(host)) {
		fprintf(stderr, "%s: bad address %s (want ADDR:PORT)\n", prog, spec);
		return -1;
	}
	size_t hl = (size_t)(colon - spec);
	memcpy(host, spec, hl);
	host[hl] = 0;
	char *h = host;
	if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
		host[hl - 1] = 0;
		h = host + 1;
	}
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0)};
	int rc = getaddrinfo(h, colon + 1, &hints, out);
	if (rc != 0) {
		fprintf(stderr, "%s: %s: %s\n", prog, spec, gai_strerror(rc));
		return -1;
	}
	return 0;
}

static void set_bufs(int fd, int sockbuf)
{
	if (sockbuf > 0) {
		/* best effort: the kernel clamps and doubles these */
		(void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sockbuf, sizeof(sockbuf));
		(void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sockbuf, sizeof(sockbuf));
	}
}

static int set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* Close so that the peer sees a reset, not a clean end of stream: a
 * truncated migration stream must never look complete. */
static void close_abort(int fd)
{
	if (fd < 0)
		return;
	struct linger lg = {.l_onoff = 1, .l_linger = 0};
	(void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
}

static int poll_ms(uint64_t now, uint64_t until)
{
	if (until <= now)
		return 0;
	uint64_t ms = (until - now + 999999) / 1000000;
	return ms > 1000 ? 1000 : (int)ms;
}

static int listen_on(const char *spec, int sockbuf)
{
	struct addrinfo *ai;
	if (resolve(spec, true, &ai) != 0)
		return -1;
	int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, 0);
	int one = 1;
	if (fd < 0) {
		freeaddrinfo(ai);
		return sys_fail("socket");
	}
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	set_bufs(fd, sockbuf); /* before listen: accepted sockets inherit them */
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 4) != 0 ||
	    set_nonblock(fd) != 0) {
		int e = errno;
		freeaddrinfo(ai);
		close(fd);
		errno = e;
		fprintf(stderr, "%s: listen on %s: %s\n", prog, spec, strerror(e));
		return -1;
	}
	freeaddrinfo(ai);
	return fd;
}

static int accept_until(int lfd, uint64_t deadline)
{
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd >= 0)
			return fd;
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
		    errno != ECONNABORTED)
			return sys_fail("accept");
		uint64_t now = now_ns();
		if (now >= deadline) {
			fprintf(stderr, "%s: timeout: no connection\n", prog);
			return -1;
		}
		struct pollfd p = {.fd = lfd, .events = POLLIN};
		(void)poll(&p, 1, poll_ms(now, deadline));
	}
}

/* Connect to the target, retrying while it refuses (it may start after us). */
static int connect_until(const char *spec, int sockbuf, uint64_t deadline)
{
	struct addrinfo *ai;
	if (resolve(spec, false, &ai) != 0)
		return -1;
	uint64_t give_up = now_ns() + CONNECT_RETRY_NS;
	if (give_up > deadline)
		give_up = deadline;
	int e = 0;
	for (;;) {
		int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd < 0) {
			freeaddrinfo(ai);
			return sys_fail("socket");
		}
		set_bufs(fd, sockbuf);
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
			freeaddrinfo(ai);
			return fd;
		}
		e = errno;
		while (e == EINPROGRESS) {
			uint64_t now = now_ns();
			if (now >= give_up) {
				e = ETIMEDOUT;
				break;
			}
			struct pollfd p = {.fd = fd, .events = POLLOUT};
			if (poll(&p, 1, poll_ms(now, give_up)) > 0) {
				socklen_t sl = sizeof(e);
				if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &sl) != 0)
					e = errno;
				if (e == 0) {
					freeaddrinfo(ai);
					return fd;
				}
			}
		}
		close(fd);
		if ((e != ECONNREFUSED && e != ENETUNREACH && e != EHOSTUNREACH) ||
		    now_ns() + 50000000ull >= give_up)
			break;
		struct timespec ts = {0, 50000000};
		nanosleep(&ts, NULL);
	}
	freeaddrinfo(ai);
	fprintf(stderr, "%s: connect to %s: %s\n", prog, spec, strerror(e));
	return -1;
}

/* How many more bytes this direction may hold (see the window, on top). */
static size_t dir_room(const struct dir *d, const struct cfg *c)
{
	size_t w = 2 * (d->win_cur > d->win_prev ? d->win_cur : d->win_prev);
	if (w < MIN_WINDOW)
		w = MIN_WINDOW;
	if (w > c->max_queue)
		w = c->max_queue;
	return d->queued < w ? w - d->queued : 0;
}

static bool dir_wants_read(const struct dir *d, const struct cfg *c)
{
	return !d->eof_read && dir_room(d, c) > 0;
}

static void dir_account(struct dir *d, const struct cfg *c, size_t n, uint64_t now)
{
	if (now - d->win_start >= c->period_ns) {
		/* a period with no write at all (idle) counts as nothing */
		d->win_prev = now - d->win_start < 2 * c->period_ns ? d->win_cur : 0;
		d->win_cur = 0;
		d->win_start = now;
	}
	d->win_cur += n;
}

static void dir_free(struct dir *d)
{
	while (d->head) {
		struct chunk *n = d->head->next;
		free(d->head);
		d->head = n;
	}
	d->tail = NULL;
}

static int dir_push(struct dir *d, const unsigned char *data, size_t n, bool eof, uint64_t due)
{
	struct chunk *ch = malloc(sizeof(*ch) + n);
	if (!ch) {
		fprintf(stderr, "%s: %s: out of memory\n", prog, d->name);
		return -1;
	}
	ch->next = NULL;
	ch->due_ns = due;
	ch->len = n;
	ch->off = 0;
	ch->eof = eof;
	if (n)
		memcpy(ch->data, data, n);
	if (d->tail)
		d->tail->next = ch;
	else
		d->head = ch;
	d->tail = ch;
	d->queued += n;
	return 0;
}

static int dir_read(struct dir *d, const struct cfg *c)
{
	static unsigned char buf[CHUNK_MAX];
	size_t want = dir_room(d, c);
	if (want > sizeof(buf))
		want = sizeof(buf);
	if (want == 0 || d->eof_read)
		return 0;
	ssize_t n = recv(d->in, buf, want, 0);
	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return 0;
		return dir_fail(d, "read", errno);
	}
	uint64_t due = now_ns() + c->delay_ns;
	if (n == 0) {
		d->eof_read = true;
		return dir_push(d, NULL, 0, true, due);
	}
	return dir_push(d, buf, (size_t)n, false, due);
}

/* Write everything that is due; the half-close goes out after the last byte. */
static int dir_flush(struct dir *d, const struct cfg *c, uint64_t now)
{
	while (d->head && d->head->due_ns <= now) {
		struct chunk *ch = d->head;
		if (ch->eof) {
			if (shutdown(d->out, SHUT_WR) != 0)
				return dir_fail(d, "shutdown", errno);
			d->shut = true;
		} else {
			ssize_t w = send(d->out, ch->data + ch->off, ch->len - ch->off, MSG_NOSIGNAL);
			if (w < 0) {
				if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
					d->blocked = true;
					return 0;
				}
				return dir_fail(d, "write", errno);
			}
			ch->off += (size_t)w;
			d->queued -= (size_t)w;
			dir_account(d, c, (size_t)w, now);
			if (ch->off < ch->len)
				continue; /* the next send says whether there is room */
		}
		d->head = ch->next;
		if (!d->head)
			d->tail = NULL;
		free(ch);
	}
	return 0;
}

static int sock_error(int fd)
{
	int e = 0;
	socklen_t sl = sizeof(e);
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &sl) != 0)
		e = errno;
	return e;
}

/* Relay one accepted connection until both directions are closed. */
static int relay_conn(int cfd, int tfd, const struct cfg *c, uint64_t deadline)
{
	int one = 1;
	/* Nagle would add delays of its own to what we emulate */
	(void)setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	(void)setsockopt(tfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (set_nonblock(cfd) != 0 || set_nonblock(tfd) != 0)
		return sys_fail("fcntl");
	uint64_t t0 = now_ns();
	struct dir dirs[2] = {
		{.name = "client->target", .in = cfd, .out = tfd, .win_start = t0},
		{.name = "target->client", .in = tfd, .out = cfd, .win_start = t0},
	};
	int rc = 0;
	for (;;) {
		uint64_t now = now_ns();
		if (now >= deadline) {
			fprintf(stderr, "%s: timeout: the connection is still open\n", prog);
			rc = -1;
			break;
		}
		for (int i = 0; i < 2 && rc == 0; i++)
			if (!dirs[i].blocked)
				rc = dir_flush(&dirs[i], c, now);
		if (rc)
			break;
		if (dirs[0].shut && dirs[1].shut)
			break; /* both sides said they are done, and we told the other */
		/* fds[0] = client, fds[1] = target */
		struct pollfd fds[2] = {{.fd = cfd}, {.fd = tfd}};
		uint64_t wake = deadline;
		for (int i = 0; i < 2; i++) {
			struct dir *d = &dirs[i];
			if (dir_wants_read(d, c))
				fds[i].events |= POLLIN;
			if (d->blocked)
				fds[1 - i].events |= POLLOUT;
			else if (d->head && d->head->due_ns < wake)
				wake = d->head->due_ns;
		}
		/* a socket we wait for nothing on would report hang-ups forever */
		for (int i = 0; i < 2; i++)
			if (!fds[i].events)
				fds[i].fd = -1;
		int n = poll(fds, 2, poll_ms(now, wake));
		if (n < 0 && errno != EINTR) {
			rc = sys_fail("poll");
			break;
		}
		if (n <= 0)
			continue;
		for (int i = 0; i < 2 && rc == 0; i++) {
			struct dir *d = &dirs[i];
			short in_ev = fds[i].revents, out_ev = fds[1 - i].revents;
			if ((in_ev & (POLLIN | POLLHUP | POLLERR)) && dir_wants_read(d, c))
				rc = dir_read(d, c);
			else if ((in_ev & POLLERR) && sock_error(d->in))
				rc = dir_fail(d, "read", sock_error(d->in));
			if (rc == 0 && d->blocked && (out_ev & (POLLOUT | POLLERR | POLLHUP)))
				d->blocked = false; /* the next flush writes or reports the error */
		}
		if (rc)
			break;
	}
	dir_free(&dirs[0]);
	dir_free(&dirs[1]);
	return rc;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: %s [-n CONNS] [-t TIMEOUT_S] [-q MAX_QUEUE] [-b SOCKBUF] "
		"LISTEN_ADDR:PORT TARGET_ADDR:PORT DELAY_MS\n",
		prog);
}

static bool parse_num(const char *s, double lo, double hi, double *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || *end || !(v >= lo && v <= hi))
		return false;
	*out = v;
	return true;
}

int main(int argc, char **argv)
{
	double conns = 1, timeout_s = 120, max_queue = 8 << 20, sockbuf = 65536, delay_ms;
	int opt;
	while ((opt = getopt(argc, argv, "n:t:q:b:")) != -1) {
		bool ok = false;
		switch (opt) {
		case 'n': ok = parse_num(optarg, 1, 1000, &conns); break;
		case 't': ok = parse_num(optarg, 1, 3600, &timeout_s); break;
		case 'q': ok = parse_num(optarg, MIN_WINDOW, 1u << 30, &max_queue); break;
		case 'b': ok = parse_num(optarg, 0, 1 << 26, &sockbuf); break;
		default: break;
		}
		if (!ok) {
			usage();
			return 2;
		}
	}
	if (argc - optind != 3 || !parse_num(argv[optind + 2], 0, 60000, &delay_ms)) {
		usage();
		return 2;
	}
	/* bad addresses are usage errors, found before anything listens */
	struct addrinfo *ai;
	for (int i = 0; i < 2; i++) {
		if (resolve(argv[optind + i], i == 0, &ai) != 0) {
			usage();
			return 2;
		}
		freeaddrinfo(ai);
	}
	struct cfg c = {
		.delay_ns = (uint64_t)(delay_ms * 1e6),
		.max_queue = (size_t)max_queue,
		.sockbuf = (int)sockbuf,
	};
	/* the window's period: one delay, but not so short that it measures noise */
	c.period_ns = c.delay_ns > 10000000ull ? c.delay_ns : 10000000ull;
	uint64_t deadline = now_ns() + (uint64_t)(timeout_s * 1e9);
	signal(SIGPIPE, SIG_IGN);
	/* backstop: even a stuck system call cannot keep us past the timeout */
	alarm((unsigned)timeout_s + 5);

	int lfd = listen_on(argv[optind], c.sockbuf);
	if (lfd < 0)
		return 1;
	int status = 0;
	for (int i = 0; i < (int)conns; i++) {
		int cfd = accept_until(lfd, deadline);
		if (cfd < 0) {
			status = 1;
			break;
		}
		int tfd = connect_until(argv[optind + 1], c.sockbuf, deadline);
		if (tfd < 0) {
			close_abort(cfd);
			status = 1;
			continue;
		}
		if (relay_conn(cfd, tfd, &c, deadline) != 0) {
			close_abort(cfd);
			close_abort(tfd);
			status = 1;
			if (now_ns() >= deadline)
				break;
			continue;
		}
		close(cfd);
		close(tfd);
	}
	close(lfd);
	return status;
}
