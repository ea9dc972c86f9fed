/* SPDX-License-Identifier: MIT */
/*
 * Every wait of the migration layer ends at a cancel: the token's fd
 * (mig_cancel_fd) and mig_cancel_wait, mig_accept_ex waiting for a
 * connection and screening a silent one, mig_connect_ex retrying a refused
 * connect (each retry reported in one line), and the destination waiting
 * for a pipe's first byte. Each wait is started with a bound of a minute
 * and cancelled from another thread after 100 ms; it must end within 1 s
 * (the time is printed) with HM_E_CANCELLED.
 */
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "hptmig/migration.h"
#include "testutil.h"

#define BOUND_NS 1000000000ull

static void *cancel_later(void *arg)
{
	hm_sleep_ns(100000000ull);
	mig_cancel_request(arg);
	return NULL;
}

/* Start the 100 ms cancel of c; returns the start time. */
static uint64_t arm(mig_cancel_t *c, pthread_t *t)
{
	assert_int_equal(pthread_create(t, NULL, cancel_later, c), 0);
	return hm_now_ns();
}

static void check_time(const char *what, uint64_t t0, pthread_t t)
{
	uint64_t ns = hm_now_ns() - t0;
	pthread_join(t, NULL);
	print_message("%s: ended %.1f ms after it began (cancel at 100 ms)\n", what,
		      (double)ns / 1e6);
	assert_true(ns < BOUND_NS);
}

static void test_cancel_fd_and_wait(void **state)
{
	(void)state;
	assert_int_equal(mig_cancel_fd(NULL), -1);
	assert_false(mig_cancel_wait(NULL, 1000000));
	mig_cancel_t *c;
	assert_int_equal(mig_cancel_new(&c), 0);
	struct pollfd p = {.fd = mig_cancel_fd(c), .events = POLLIN};
	assert_true(p.fd >= 0);
	assert_int_equal(poll(&p, 1, 0), 0);           /* not yet */
	assert_false(mig_cancel_wait(c, 20000000ull)); /* a plain sleep */
	pthread_t t;
	uint64_t t0 = arm(c, &t);
	assert_true(mig_cancel_wait(c, 60ull * 1000000000ull));
	check_time("mig_cancel_wait(60 s)", t0, t);
	assert_int_equal(poll(&p, 1, 0), 1); /* and it stays readable */
	assert_int_equal(poll(&p, 1, 0), 1);
	assert_true(mig_cancel_wait(c, 60ull * 1000000000ull));
	mig_cancel_free(c);
}

static mig_listener_t *listen_tcp0(void)
{
	mig_uri_t u;
	mig_listener_t *l;
	hm_error_t e;
	hm_error_clear(&e);
	assert_int_equal(mig_uri_parse("tcp:127.0.0.1:0", &u, &e), 0);
	assert_int_equal(mig_listen(&u, &l, &e), 0);
	assert_true(mig_listener_uri(l)->port > 0);
	return l;
}

static void test_accept_cancelled(void **state)
{
	(void)state;
	mig_listener_t *l = listen_tcp0();
	mig_cancel_t *c;
	assert_int_equal(mig_cancel_new(&c), 0);
	mig_accept_opts_t o;
	mig_accept_opts_default(&o);
	o.timeout_ms = 60000;
	o.cancel = c;
	mig_conn_t *conn = NULL;
	hm_error_t e;
	hm_error_clear(&e);
	pthread_t t;
	uint64_t t0 = arm(c, &t);
	assert_int_equal(mig_accept_ex(l, &o, &conn, NULL, &e), HM_E_CANCELLED);
	check_time("mig_accept_ex, no source", t0, t);
	assert_null(conn);
	assert_non_null(strstr(e.msg, "cancelled while waiting for a source"));
	mig_cancel_free(c);
	mig_listener_close(l);
}

static void test_probe_cancelled(void **state)
{
	(void)state;
	mig_listener_t *l = listen_tcp0();
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_port = htons((uint16_t)mig_listener_uri(l)->port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0); /* silent */
	mig_cancel_t *c;
	assert_int_equal(mig_cancel_new(&c), 0);
	mig_accept_opts_t o;
	mig_accept_opts_default(&o);
	o.timeout_ms = 60000;
	o.probe_timeout_ms = 60000;
	o.cancel = c;
	mig_conn_t *conn = NULL;
	hm_error_t e;
	hm_error_clear(&e);
	pthread_t t;
	uint64_t t0 = arm(c, &t);
	assert_int_equal(mig_accept_ex(l, &o, &conn, NULL, &e), HM_E_CANCELLED);
	check_time("mig_accept_ex, probing a silent connection", t0, t);
	assert_null(conn);
	close(fd);
	mig_cancel_free(c);
	mig_listener_close(l);
}

struct lines {
	pthread_mutex_t lock;
	unsigned n;
	char first[512];
};

static void on_retry(void *opaque, const char *line)
{
	struct lines *s = opaque;
	pthread_mutex_lock(&s->lock);
	if (s->n++ == 0)
		snprintf(s->first, sizeof(s->first), "%s", line);
	pthread_mutex_unlock(&s->lock);
}

static void test_connect_retries_cancelled(void **state)
{
	(void)state;
	/* a port nobody listens on: bound, then closed */
	mig_listener_t *l = listen_tcp0();
	char uri[64];
	snprintf(uri, sizeof(uri), "tcp:127.0.0.1:%d", mig_listener_uri(l)->port);
	mig_listener_close(l);
	mig_uri_t u;
	hm_error_t e;
	hm_error_clear(&e);
	assert_int_equal(mig_uri_parse(uri, &u, &e), 0);
	mig_cancel_t *c;
	assert_int_equal(mig_cancel_new(&c), 0);
	struct lines s = {.lock = PTHREAD_MUTEX_INITIALIZER};
	mig_connect_opts_t o = {.timeout_ms = 60000, .cancel = c, .on_retry = on_retry, .opaque = &s};
	mig_conn_t *conn = NULL;
	pthread_t t;
	uint64_t t0 = arm(c, &t);
	assert_int_equal(mig_connect_ex(&u, &o, &conn, &e), HM_E_CANCELLED);
	check_time("mig_connect_ex, refused and retrying", t0, t);
	assert_null(conn);
	print_message("%u retry lines; the first: %s\n", s.n, s.first);
	assert_true(s.n >= 1 && s.n <= 3); /* 50, 100 ms: not a busy loop */
	assert_non_null(strstr(s.first, "connect attempt 1 failed ("));
	assert_non_null(strstr(s.first, "next in 0.05 s"));
	mig_cancel_free(c);
}

/* The destination over a pipe nobody writes: only the cancel ends it. */
static void test_dest_pipe_cancelled(void **state)
{
	(void)state;
	int p[2];
	assert_int_equal(pipe(p), 0);
	char uri[32];
	snprintf(uri, sizeof(uri), "fd:%d", p[0]);
	mig_uri_t u;
	mig_listener_t *l;
	hm_error_t e;
	hm_error_clear(&e);
	assert_int_equal(mig_uri_parse(uri, &u, &e), 0);
	assert_int_equal(mig_listen(&u, &l, &e), 0);
	mig_cancel_t *c;
	assert_int_equal(mig_cancel_new(&c), 0);
	mig_dest_params_t dp;
	mig_dest_params_default(&dp);
	dp.accept_timeout_ms = 60000;
	dp.no_resume = true;
	dp.cancel = c;
	mig_dest_report_t rep;
	pthread_t t;
	uint64_t t0 = arm(c, &t);
	assert_int_equal(mig_dest_run(l, &dp, &rep, &e), HM_E_CANCELLED);
	check_time("mig_dest_run, a silent pipe", t0, t);
	assert_int_equal(rep.status, HM_E_CANCELLED);
	print_message("error: %s\n", e.msg);
	mig_listener_close(l);
	mig_cancel_free(c);
	close(p[0]);
	close(p[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cancel_fd_and_wait),
		cmocka_unit_test(test_accept_cancelled),
		cmocka_unit_test(test_probe_cancelled),
		cmocka_unit_test(test_connect_retries_cancelled),
		cmocka_unit_test(test_dest_pipe_cancelled),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
