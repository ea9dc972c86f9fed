/* SPDX-License-Identifier: MIT */
/*
 * SIGINT and SIGTERM end every wait of the real binary at once: migrate's
 * connect retries (tcp, unix), incoming's accept and its screening of a
 * silent connection, the wait for the destination's answer after the
 * stream, the delay between --retries attempts, --warmup, and incoming's
 * --run, and a write into an exec: command that stops reading. Each must exit within 1 s (the goal is 100 ms; 1 s keeps a loaded
 * machine from failing it; the measured time is printed) with 130 / 143,
 * a report saying "cancelled" and where the guest is. Also: incoming's
 * "listening on" line names a port a client can connect to.
 */
#include "test_migrate_util.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/un.h>

#include "hptmig/base.h"

#define EXIT_BOUND_MS 1000

/* Wait (up to ms) until the file holds needle; true if it does. */
static bool wait_for_text(const char *path, const char *needle, int ms)
{
	for (int waited = 0; waited <= ms; waited += 10) {
		char *s = slurp(path);
		bool found = strstr(s, needle) != NULL;
		free(s);
		if (found)
			return true;
		usleep(10000);
	}
	return false;
}

/* Send sig to b, wait for its exit; the status, the time it took in *ms. */
static int signal_and_time(struct bg *b, int sig, const char *what, double *ms)
{
	uint64_t t0 = hm_now_ns();
	bg_kill(b, sig);
	int rc = bg_wait(b, 20000);
	*ms = (double)(hm_now_ns() - t0) / 1e6;
	print_message("%s: %s ended it in %.1f ms (exit status %d)\n", what,
		      sig == SIGINT ? "SIGINT" : "SIGTERM", *ms, rc);
	return rc;
}

/* The report of a cancelled source: status, the guest still running. */
static void assert_source_cancelled(const struct bg *b)
{
	char *err = slurp(b->err);
	assert_one_line(err);
	assert_non_null(strstr(err, "interrupted"));
	assert_non_null(strstr(err, "kept running on the source"));
	json_t *o = json_of_file(b->out);
	assert_string_equal(jstr(o, "status"), "cancelled");
	assert_string_equal(jstr(o, "error_code"), "HM_E_CANCELLED");
	assert_string_equal(jstr(o, "guest_state"), "running-on-source");
	assert_true(jbool(o, "guest.running"));
	json_decref(o);
	free(err);
}

static void test_sigint_connect_retries_tcp(void **state)
{
	(void)state;
	char cmd[4096];
	struct bg src;
	double ms;
	int port = free_port(); /* nobody listens there */
	snprintf(cmd, sizeof(cmd),
		 "exec '%s' migrate tcp:127.0.0.1:%d --json --ram 256M --connect-timeout 60",
		 tu_bin(), port);
	bg_start(&src, tu_tmp, "ctcp", cmd);
	/* each retry says so: the attempt, why, when the next one starts */
	assert_true(wait_for_text(src.err, "connect attempt 2 failed", 10000));
	char *err = slurp(src.err);
	assert_non_null(strstr(err, "connect attempt 1 failed ("));
	assert_non_null(strstr(err, "Connection refused"));
	assert_non_null(strstr(err, "next in "));
	free(err);
	int rc = signal_and_time(&src, SIGINT, "migrate, connect retries (tcp)", &ms);
	assert_int_equal(rc, 130);
	assert_true(ms <= EXIT_BOUND_MS);
	assert_source_cancelled(&src);
}

static void test_sigterm_connect_retries_unix(void **state)
{
	(void)state;
	char cmd[4096];
	struct bg src;
	double ms;
	snprintf(cmd, sizeof(cmd),
		 "exec '%s' migrate unix:%s/nobody.sock --json --ram 256M --connect-timeout 60",
		 tu_bin(), tu_tmp);
	bg_start(&src, tu_tmp, "cunix", cmd);
	assert_true(wait_for_text(src.err, "connect attempt 3 failed", 10000));
	int rc = signal_and_time(&src, SIGTERM, "migrate, connect retries (unix)", &ms);
	assert_int_equal(rc, 143);
	assert_true(ms <= EXIT_BOUND_MS);
	assert_source_cancelled(&src);
}

/* The port in "listening on tcp:127.0.0.1:PORT", or -1. */
static int listening_port(const char *path)
{
	if (!wait_for_text(path, "listening on tcp:127.0.0.1:", 10000))
		return -1;
	char *s = slurp(path);
	const char *p = strstr(s, "listening on tcp:127.0.0.1:");
	int port = atoi(p + strlen("listening on tcp:127.0.0.1:"));
	free(s);
	return port;
}

static int connect_tcp(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_true(fd >= 0);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* The report of a cancelled destination: nothing resumed, no digest. */
static void assert_dest_cancelled(const struct bg *b)
{
	char *err = slurp(b->err);
	assert_one_line(err);
	assert_non_null(strstr(err, "interrupted"));
	assert_non_null(strstr(err, "no guest was resumed here"));
	json_t *o = json_of_file(b->out);
	assert_string_equal(jstr(o, "status"), "cancelled");
	assert_string_equal(jstr(o, "error_code"), "HM_E_CANCELLED");
	assert_false(jbool(o, "resumed"));
	/* unknown, not 000...0 */
	assert_true(json_is_null(json_object_get(json_object_get(o, "htab"), "digest")));
	json_decref(o);
	free(err);
}

static void test_sigterm_incoming_accept(void **state)
{
	(void)state;
	char cmd[4096];
	struct bg in;
	double ms;
	snprintf(cmd, sizeof(cmd), "exec '%s' incoming tcp:127.0.0.1:0 --json", tu_bin());
	bg_start(&in, tu_tmp, "acc", cmd);
	int port = listening_port(in.err);
	print_message("incoming said: listening on tcp:127.0.0.1:%d\n", port);
	assert_true(port > 0 && port < 65536);
	int rc = signal_and_time(&in, SIGTERM, "incoming, waiting for a source", &ms);
	assert_int_equal(rc, 143);
	assert_true(ms <= EXIT_BOUND_MS);
	assert_dest_cancelled(&in);
}

/* A client connects to the port named and stays silent: incoming is
 * screening it (a 5 s probe by default) when the SIGINT comes. */
static void test_sigint_incoming_screening(void **state)
{
	(void)state;
	char cmd[4096];
	struct bg in;
	double ms;
	snprintf(cmd, sizeof(cmd), "exec '%s' incoming tcp:127.0.0.1:0 --json --probe-timeout 60",
		 tu_bin());
	bg_start(&in, tu_tmp, "scr", cmd);
	int port = listening_port(in.err);
	assert_true(port > 0);
	int fd = connect_tcp(port);
	assert_true(fd >= 0); /* the line named the real port */
	usleep(200000);        /* let it accept and start the probe */
	int rc = signal_and_time(&in, SIGINT, "incoming, screening a silent connection", &ms);
	close(fd);
	assert_int_equal(rc, 130);
	assert_true(ms <= EXIT_BOUND_MS);
	assert_dest_cancelled(&in);
}

/* A destination that takes the whole stream and never answers. */
struct mute_dest {
	int lfd;
	pthread_t t;
	atomic_bool got_eof;
	int conn;
};

static void *mute_main(void *arg)
{
	struct mute_dest *m = arg;
	m->conn = accept(m->lfd, NULL, NULL);
	if (m->conn < 0)
		return NULL;
	char buf[65536];
	while (read(m->conn, buf, sizeof(buf)) > 0)
		;
	atomic_store(&m->got_eof, true); /* the source half-closed: stream done */
	return NULL;
}

static void test_sigint_return_path_wait(void **state)
{
	(void)state;
	char cmd[4096], path[600];
	struct bg src;
	struct mute_dest m = {.conn = -1};
	double ms;
	snprintf(path, sizeof(path), "%s/mute.sock", tu_tmp);
	m.lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	assert_int_equal(bind(m.lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(m.lfd, 1), 0);
	atomic_init(&m.got_eof, false);
	assert_int_equal(pthread_create(&m.t, NULL, mute_main, &m), 0);
	snprintf(cmd, sizeof(cmd),
		 "exec '%s' migrate unix:%s --json --progress --htab-shift 20 --resume-timeout 60",
		 tu_bin(), path);
	bg_start(&src, tu_tmp, "rpw", cmd);
	/* the progress line of the wait phase (after the PING's 2 s bound) */
	assert_true(wait_for_text(src.err, "waiting for the destination", 20000));
	assert_true(atomic_load(&m.got_eof));
	int rc = signal_and_time(&src, SIGINT, "migrate, waiting for the destination's answer", &ms);
	pthread_join(m.t, NULL);
	if (m.conn >= 0)
		close(m.conn);
	close(m.lfd);
	assert_int_equal(rc, 130);
	assert_true(ms <= EXIT_BOUND_MS);
	json_t *o = json_of_file(src.out);
	assert_string_equal(jstr(o, "status"), "cancelled");
	/* the whole stream went out: the destination may run the guest */
	assert_string_equal(jstr(o, "guest_state"), "paused-on-source-destination-unknown");
	assert_true(jbool(o, "stopped"));
	assert_false(jbool(o, "source_resumed"));
	assert_true(jnum(o, "bytes_total") > 0); /* what really went out */
	json_decref(o);
	char *err = slurp(src.err);
	assert_non_null(strstr(err, "NOT resumed"));
	free(err);
}

static void test_sigint_retry_delay(void **state)
{
	(void)state;
	char cmd[4096];
	struct bg src;
	double ms;
	int port = free_port();
	snprintf(cmd, sizeof(cmd),
		 "exec '%s' migrate tcp:127.0.0.1:%d --json --ram 256M --connect-timeout 0.1 "
		 "--retries 3 --retry-delay 60",
		 tu_bin(), port);
	bg_start(&src, tu_tmp, "rdel", cmd);
	assert_true(wait_for_text(src.err, "attempt 1 of 4 failed", 10000));
	char *err = slurp(src.err);
	assert_non_null(strstr(err, "next in 60.0 s"));
	free(err);
	int rc = signal_and_time(&src, SIGINT, "migrate, delay between attempts", &ms);
	assert_int_equal(rc, 130);
	assert_true(ms <= EXIT_BOUND_MS);
	assert_source_cancelled(&src);
	json_t *o = json_of_file(src.out);
	assert_int_equal((int)jnum(o, "attempts"), 1);
	json_decref(o);
}

static void test_sigterm_warmup(void **state)
{
	(void)state;
	char cmd[4096];
	struct bg src;
	double ms;
	snprintf(cmd, sizeof(cmd),
		 "exec '%s' migrate unix:%s/w.sock --json --ram 256M --warmup 60", tu_bin(), tu_tmp);
	bg_start(&src, tu_tmp, "warm", cmd);
	usleep(500000); /* the guest boots and warms up */
	int rc = signal_and_time(&src, SIGTERM, "migrate, --warmup", &ms);
	assert_int_equal(rc, 143);
	assert_true(ms <= EXIT_BOUND_MS);
	assert_source_cancelled(&src);
}

/* exec: a command that never reads its stdin: the source's write into
 * the full pipe ends at SIGTERM (a blocked write(2) on a pipe used to sit
 * there until the command died), and without a signal after the write
 * timeout (--connect-timeout, as a socket's send timeout) with the guest
 * running. The command's shell is terminated; its sleep lingers 20 s. */
static void test_sigterm_exec_not_reading(void **state)
{
	(void)state;
	char cmd[4096];
	struct bg src;
	double ms;
	snprintf(cmd, sizeof(cmd),
		 "exec '%s' migrate 'exec:sleep 20' --json --ram 1G --workload idle "
		 "--connect-timeout 600",
		 tu_bin());
	bg_start(&src, tu_tmp, "execw", cmd);
	usleep(1000000); /* boots, then fills the pipe (64 KiB) and blocks */
	int rc = signal_and_time(&src, SIGTERM, "migrate, exec: write blocked", &ms);
	assert_int_equal(rc, 143);
	assert_true(ms <= EXIT_BOUND_MS);
	assert_source_cancelled(&src);
}

static void test_exec_write_timeout(void **state)
{
	(void)state;
	char cmd[4096], *out = NULL, *err = NULL;
	snprintf(cmd, sizeof(cmd),
		 "'%s' migrate 'exec:sleep 20' --json --ram 1G --workload idle --connect-timeout 1",
		 tu_bin());
	uint64_t t0 = hm_now_ns();
	assert_int_equal(tu_run(cmd, &out, &err), 1);
	double s = (double)(hm_now_ns() - t0) / 1e9;
	print_message("exec: write timeout: exit after %.1f s: %s", s, err);
	assert_true(s < 15.0);
	assert_one_line(err);
	assert_non_null(strstr(err, "write timed out"));
	json_t *o = json_of(out);
	assert_string_equal(jstr(o, "error_code"), "HM_E_TIMEOUT");
	assert_string_equal(jstr(o, "guest_state"), "running-on-source");
	json_decref(o);
	free(out);
	free(err);
}

/* A whole migration, then SIGINT to the destination running the guest
 * for --run 60: it stops the guest and reports at once. */
static void test_sigint_incoming_run(void **state)
{
	(void)state;
	char cmd[4096];
	struct bg in, src;
	double ms;
	snprintf(cmd, sizeof(cmd), "exec '%s' incoming unix:%s/run.sock --json --run 60", tu_bin(),
		 tu_tmp);
	bg_start(&in, tu_tmp, "runin", cmd);
	assert_true(wait_for_text(in.err, "listening on unix:", 10000));
	snprintf(cmd, sizeof(cmd), "exec '%s' migrate unix:%s/run.sock --json --htab-shift 20",
		 tu_bin(), tu_tmp);
	bg_start(&src, tu_tmp, "runsrc", cmd);
	assert_int_equal(bg_wait(&src, 30000), 0);
	usleep(300000);
	int rc = signal_and_time(&in, SIGINT, "incoming, --run", &ms);
	assert_true(ms <= EXIT_BOUND_MS);
	/* the migration itself succeeded: the guest moved and ran */
	assert_int_equal(rc, 0);
	json_t *o = json_of_file(in.out);
	assert_string_equal(jstr(o, "status"), "ok");
	assert_true(jbool(o, "resumed"));
	assert_true(jnum(o, "guest.run_time_ms") < 30000);
	json_decref(o);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sigint_connect_retries_tcp),
		cmocka_unit_test(test_sigterm_connect_retries_unix),
		cmocka_unit_test(test_sigterm_incoming_accept),
		cmocka_unit_test(test_sigint_incoming_screening),
		cmocka_unit_test(test_sigint_return_path_wait),
		cmocka_unit_test(test_sigint_retry_delay),
		cmocka_unit_test(test_sigterm_warmup),
		cmocka_unit_test(test_sigint_incoming_run),
		cmocka_unit_test(test_sigterm_exec_not_reading),
		cmocka_unit_test(test_exec_write_timeout),
	};
	return cmocka_run_group_tests(tests, tu_setup_tmp, tu_teardown_tmp);
}
