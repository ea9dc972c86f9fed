/* SPDX-License-Identifier: MIT */
/*
 * The delaying TCP relay (tests/cli/delay_relay.c) that gives the two-host
 * migration test its latency where netem is missing, checked over loopback
 * in the current namespace (no root): bytes intact and in order both ways,
 * half-close propagated in order and no earlier than the delay, a 64 KiB
 * ping-pong costs at least two delays per round trip, errors reset both
 * sides, sequential connections, the hard timeout. The test plays both the
 * client and the target itself.
 */
#include "test_migrate_util.h"

#include <netinet/tcp.h>
#include <poll.h>

static const char *relay_bin(void)
{
	const char *b = getenv("DELAY_RELAY_BIN");
	if (!b || !*b)
		fail_msg("DELAY_RELAY_BIN is not set");
	return b;
}

static uint64_t ms_now(void)
{
	return hm_now_ns() / 1000000ull;
}

/* A listening socket on 127.0.0.1 (the relay's target); its port in *port. */
static int target_listen(int *port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(fd, 4), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	*port = ntohs(sa.sin_port);
	return fd;
}

static int accept_within(int lfd, int timeout_ms)
{
	struct pollfd p = {.fd = lfd, .events = POLLIN};
	if (poll(&p, 1, timeout_ms) != 1)
		fail_msg("the relay did not connect to the target within %d ms", timeout_ms);
	int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	assert_true(fd >= 0);
	return fd;
}

/* Connect to the relay, retrying while it is not listening yet. */
static int connect_relay(int port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	for (int i = 0; i < 500; i++) {
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		assert_true(fd >= 0);
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			return fd;
		close(fd);
		usleep(10000);
	}
	fail_msg("the relay is not listening on port %d", port);
	return -1;
}

struct link {
	struct bg relay;
	char *dir;
	int lfd, client, target, relay_port;
};

/* Start the relay (extra options in opts), connect through it, accept. */
static void link_open(struct link *l, const char *opts, double delay_ms)
{
	char cmd[2048];
	int tport;
	l->dir = tu_mkdtemp();
	l->lfd = target_listen(&tport);
	l->relay_port = free_port();
	snprintf(cmd, sizeof(cmd), "exec '%s' %s 127.0.0.1:%d 127.0.0.1:%d %g", relay_bin(), opts,
		 l->relay_port, tport, delay_ms);
	bg_start(&l->relay, l->dir, "relay", cmd);
	l->client = connect_relay(l->relay_port);
	l->target = accept_within(l->lfd, 5000);
}

static void link_close(struct link *l)
{
	if (l->client >= 0)
		close(l->client);
	if (l->target >= 0)
		close(l->target);
	close(l->lfd);
	bg_reap(&l->relay);
	tu_rmdir(l->dir);
	free(l->dir);
}

static void fill(uint8_t *p, size_t n, uint64_t *rs)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)tu_rand(rs);
}

static void send_all(int fd, const uint8_t *p, size_t n)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w <= 0)
			fail_msg("send: %s", strerror(errno));
		p += w;
		n -= (size_t)w;
	}
}

static void recv_all(int fd, uint8_t *p, size_t n)
{
	while (n) {
		ssize_t r = recv(fd, p, n, 0);
		if (r <= 0)
			fail_msg("recv: %s", r == 0 ? "early end of stream" : strerror(errno));
		p += r;
		n -= (size_t)r;
	}
}

/* recv() gives 0: the peer's half-close reached us (and nothing else came). */
static void expect_eof(int fd)
{
	uint8_t b;
	ssize_t r = recv(fd, &b, 1, 0);
	if (r != 0)
		fail_msg("expected end of stream, got %zd (%s)", r, r < 0 ? strerror(errno) : "data");
}

/* A 64 KiB ping-pong through a 10 ms relay: every round trip costs two
 * delays, both payloads arrive intact; a clean close lets the relay exit 0. */
static void test_relay_pingpong(void **state)
{
	(void)state;
	uint64_t rs = tu_seed("relay pingpong");
	const double delay = 10;
	struct link l;
	link_open(&l, "-t 30", delay);
	static uint8_t ping[65536], pong[65536], got[65536];
	for (int round = 0; round < 4; round++) {
		fill(ping, sizeof(ping), &rs);
		fill(pong, sizeof(pong), &rs);
		uint64_t t0 = hm_now_ns();
		send_all(l.client, ping, sizeof(ping));
		recv_all(l.target, got, sizeof(got));
		assert_memory_equal(got, ping, sizeof(ping));
		send_all(l.target, pong, sizeof(pong));
		recv_all(l.client, got, sizeof(got));
		double rtt_ms = (double)(hm_now_ns() - t0) / 1e6;
		assert_memory_equal(got, pong, sizeof(pong));
		print_message("round %d: 64 KiB each way in %.1f ms (delay %g ms each way)\n", round,
			      rtt_ms, delay);
		assert_true(rtt_ms >= 2 * delay);
	}
	/* clean close from both sides: the relay is done and says nothing */
	assert_int_equal(shutdown(l.client, SHUT_WR), 0);
	expect_eof(l.target);
	assert_int_equal(shutdown(l.target, SHUT_WR), 0);
	expect_eof(l.client);
	assert_int_equal(bg_wait(&l.relay, 5000), 0);
	char *err = slurp(l.relay.err);
	assert_string_equal(err, "");
	free(err);
	link_close(&l);
}

/* One end of a bulk exchange driven by poll(). */
struct end {
	int fd;
	const uint8_t *tx;
	size_t tx_len, tx_off, tx_gate; /* send only tx_gate bytes until EOF was received */
	bool shut;
	uint8_t *rx;
	size_t rx_cap, rx_len;
	bool eof;
	uint64_t t_shut, t_eof;
};

static void end_step(struct end *e, short rev)
{
	size_t limit = e->eof ? e->tx_len : e->tx_gate;
	if ((rev & POLLOUT) && e->tx_off < limit) {
		size_t n = limit - e->tx_off;
		ssize_t w = send(e->fd, e->tx + e->tx_off, n > 65536 ? 65536 : n,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0 && errno != EAGAIN)
			fail_msg("send: %s", strerror(errno));
		if (w > 0)
			e->tx_off += (size_t)w;
	}
	if (e->tx_off == e->tx_len && !e->shut) {
		assert_int_equal(shutdown(e->fd, SHUT_WR), 0);
		e->shut = true;
		e->t_shut = hm_now_ns();
	}
	if ((rev & (POLLIN | POLLHUP)) && !e->eof) {
		ssize_t r = recv(e->fd, e->rx + e->rx_len, e->rx_cap - e->rx_len + 1, MSG_DONTWAIT);
		if (r < 0 && errno != EAGAIN)
			fail_msg("recv: %s", strerror(errno));
		if (r == 0) {
			e->eof = true;
			e->t_eof = hm_now_ns();
		}
		if (r > 0) {
			e->rx_len += (size_t)r;
			assert_true(e->rx_len <= e->rx_cap); /* nothing more than was sent */
		}
	}
}

/* Both directions at once, then half-closes: the client sends everything
 * and shuts its side; the target sends half, and the other half only after
 * it saw the client's end of stream (as the migration's return path
 * answers after the stream): the half-close arrives after the last byte,
 * one delay after it was sent, and the other direction keeps working. */
static void test_relay_bulk_halfclose(void **state)
{
	(void)state;
	uint64_t rs = tu_seed("relay bulk");
	const double delay = 5;
	const size_t na = 3u << 20, nb = 2u << 20;
	uint8_t *a = malloc(na), *b = malloc(nb), *ra = malloc(na + 1), *rb = malloc(nb + 1);
	fill(a, na, &rs);
	fill(b, nb, &rs);
	struct link l;
	link_open(&l, "-t 30", delay);
	struct end c = {.fd = l.client, .tx = a, .tx_len = na, .tx_gate = na, .rx = rb, .rx_cap = nb};
	struct end t = {.fd = l.target, .tx = b, .tx_len = nb, .tx_gate = nb / 2, .rx = ra,
			.rx_cap = na};
	uint64_t t0 = ms_now();
	while (!(c.eof && t.eof)) {
		if (ms_now() - t0 > 20000)
			fail_msg("bulk exchange stuck: client sent %zu got %zu, target sent %zu got %zu",
				 c.tx_off, c.rx_len, t.tx_off, t.rx_len);
		struct pollfd p[2] = {{.fd = c.fd, .events = POLLIN}, {.fd = t.fd, .events = POLLIN}};
		if (c.tx_off < c.tx_len)
			p[0].events |= POLLOUT;
		if (t.tx_off < (t.eof ? t.tx_len : t.tx_gate))
			p[1].events |= POLLOUT;
		assert_true(poll(p, 2, 1000) >= 0);
		end_step(&c, p[0].revents);
		end_step(&t, p[1].revents);
		if (!t.eof)
			assert_true(c.rx_len <= nb / 2); /* the gate held until the EOF came */
	}
	assert_int_equal(t.rx_len, na);
	assert_memory_equal(ra, a, na);
	assert_int_equal(c.rx_len, nb);
	assert_memory_equal(rb, b, nb);
	double lag_ms = (double)(t.t_eof - c.t_shut) / 1e6;
	print_message("3 MiB + 2 MiB crossed in %llu ms; half-close arrived %.1f ms after it was "
		      "sent (delay %g ms)\n",
		      (unsigned long long)(ms_now() - t0), lag_ms, delay);
	assert_true(lag_ms >= delay);
	assert_int_equal(bg_wait(&l.relay, 5000), 0);
	link_close(&l);
	free(a);
	free(b);
	free(ra);
	free(rb);
}

static void abort_close(int fd)
{
	struct linger lg = {.l_onoff = 1, .l_linger = 0};
	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
	close(fd);
}

/* A reset on either side resets the other (a cut stream must not look
 * ended), the relay reports it in one stderr line and exits 1. */
static void test_relay_error_resets(void **state)
{
	(void)state;
	for (int side = 0; side < 2; side++) {
		struct link l;
		link_open(&l, "-t 30", 2);
		send_all(l.client, (const uint8_t *)"partial", 7);
		uint8_t got[7];
		recv_all(l.target, got, sizeof(got));
		int victim = side ? l.client : l.target;
		int other = side ? l.target : l.client;
		abort_close(victim);
		if (side)
			l.client = -1;
		else
			l.target = -1;
		struct pollfd p = {.fd = other, .events = POLLIN};
		assert_int_equal(poll(&p, 1, 5000), 1);
		uint8_t b;
		ssize_t r = recv(other, &b, 1, 0);
		if (!(r < 0 && errno == ECONNRESET))
			fail_msg("side %d: expected a reset, got %zd (%s)", side, r,
				 r < 0 ? strerror(errno) : "not an error");
		assert_int_equal(bg_wait(&l.relay, 5000), 1);
		char *err = slurp(l.relay.err);
		assert_one_line(err);
		assert_non_null(strstr(err, side ? "client->target" : "target->client"));
		free(err);
		link_close(&l);
	}
}

/* -n 2 serves two connections one after the other. */
static void test_relay_sequential(void **state)
{
	(void)state;
	struct link l;
	link_open(&l, "-n 2 -t 30", 1);
	for (int i = 0; i < 2; i++) {
		if (i) {
			l.client = connect_relay(l.relay_port);
			l.target = accept_within(l.lfd, 5000);
		}
		char msg[16], got[16];
		int n = snprintf(msg, sizeof(msg), "conn %d", i);
		send_all(l.client, (const uint8_t *)msg, (size_t)n);
		assert_int_equal(shutdown(l.client, SHUT_WR), 0);
		recv_all(l.target, (uint8_t *)got, (size_t)n);
		assert_memory_equal(got, msg, (size_t)n);
		expect_eof(l.target);
		close(l.target);
		expect_eof(l.client);
		close(l.client);
		l.client = l.target = -1;
	}
	assert_int_equal(bg_wait(&l.relay, 5000), 0);
	link_close(&l);
}

/* The hard timeout: an idle connection is reset and the relay exits 1;
 * nobody connecting at all ends the same way. Usage errors exit 2. */
static void test_relay_timeout_and_usage(void **state)
{
	(void)state;
	struct link l;
	uint64_t t0 = ms_now();
	link_open(&l, "-t 1", 1);
	struct pollfd p = {.fd = l.client, .events = POLLIN};
	assert_int_equal(poll(&p, 1, 5000), 1);
	uint8_t b;
	assert_true(recv(l.client, &b, 1, 0) < 0);
	assert_int_equal(bg_wait(&l.relay, 5000), 1);
	assert_true(ms_now() - t0 >= 1000);
	char *err = slurp(l.relay.err);
	assert_one_line(err);
	assert_non_null(strstr(err, "timeout"));
	free(err);
	link_close(&l);

	char cmd[1024], *out = NULL;
	snprintf(cmd, sizeof(cmd), "'%s' -t 1 127.0.0.1:%d 127.0.0.1:1 1", relay_bin(), free_port());
	assert_int_equal(tu_run(cmd, &out, &err), 1);
	assert_non_null(strstr(err, "timeout"));
	free(out);
	free(err);
	const char *bad[] = {"", "127.0.0.1:1 127.0.0.1:2", "127.0.0.1 127.0.0.1:2 5",
			     "127.0.0.1:1 127.0.0.1:2 -1", "-q 1 127.0.0.1:1 127.0.0.1:2 5",
			     "-x 127.0.0.1:1 127.0.0.1:2 5"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(cmd, sizeof(cmd), "'%s' %s", relay_bin(), bad[i]);
		int rc = tu_run(cmd, &out, &err);
		if (rc != 2)
			fail_msg("'%s': exit %d, want 2 (%s)", bad[i], rc, err);
		free(out);
		free(err);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_relay_pingpong),
		cmocka_unit_test(test_relay_bulk_halfclose),
		cmocka_unit_test(test_relay_error_resets),
		cmocka_unit_test(test_relay_sequential),
		cmocka_unit_test(test_relay_timeout_and_usage),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
