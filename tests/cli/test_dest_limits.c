/* SPDX-License-Identifier: MIT */
/*
 * CLI: the destination's resource limits (docs/limits.md, "Destination").
 * `hptmig incoming` is run as a direct child so that wait4() gives its peak
 * RSS; the test itself plays the hostile peer: tiny streams naming huge
 * tables at START or in a storm of resizes, a source trickling one byte at a
 * time, stray connections before a real migration, too many strays.
 */
#include "test_migrate_util.h"

#include <sys/resource.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>

/* ------------------------------------------------------------- helpers */

struct child {
	pid_t pid;
	char out[512], err[512];
	int status;          /* exit status, 128+signal */
	long maxrss_kib;     /* peak resident set of hptmig itself */
	double seconds;      /* from start to exit */
	struct timespec t0;
};

/* Start hptmig with args (NULL-terminated), stdout/stderr into files. */
static void child_start(struct child *c, const char *name, const char *const *args)
{
	char *argv[32];
	int n = 0;
	argv[n++] = strdup(tu_bin());
	for (const char *const *a = args; *a && n < 31; a++)
		argv[n++] = strdup(*a);
	argv[n] = NULL;
	snprintf(c->out, sizeof(c->out), "%s/%s.out", tu_tmp, name);
	snprintf(c->err, sizeof(c->err), "%s/%s.err", tu_tmp, name);
	clock_gettime(CLOCK_MONOTONIC, &c->t0);
	c->pid = fork();
	assert_true(c->pid >= 0);
	if (c->pid == 0) {
		int o = open(c->out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		int e = open(c->err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (o < 0 || e < 0)
			_exit(126);
		dup2(o, 1);
		dup2(e, 2);
		execv(argv[0], argv);
		_exit(127);
	}
	for (int i = 0; i < n; i++)
		free(argv[i]);
}

/* Wait up to timeout_ms (then kill -9 and fail); fills status and maxrss. */
static void child_wait(struct child *c, int timeout_ms)
{
	for (int waited = 0;; waited += 10) {
		int st;
		struct rusage ru;
		pid_t r = wait4(c->pid, &st, WNOHANG, &ru);
		if (r == c->pid) {
			struct timespec t1;
			clock_gettime(CLOCK_MONOTONIC, &t1);
			c->seconds = (double)(t1.tv_sec - c->t0.tv_sec) +
				     (double)(t1.tv_nsec - c->t0.tv_nsec) / 1e9;
			c->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
			c->maxrss_kib = ru.ru_maxrss;
			return;
		}
		if (waited >= timeout_ms) {
			kill(c->pid, SIGKILL);
			waitpid(c->pid, &st, 0);
			fail_msg("hptmig did not finish within %d ms", timeout_ms);
		}
		usleep(10000);
	}
}

/* Connect to a unix socket path, retrying while the listener starts. */
static int connect_unix(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	for (int i = 0; i < 500; i++) {
		int fd = socket(AF_UNIX, SOCK_STREAM, 0);
		assert_true(fd >= 0);
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			return fd;
		close(fd);
		usleep(10000);
	}
	fail_msg("cannot connect to %s", path);
	return -1;
}

static int connect_tcp(int port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	for (int i = 0; i < 500; i++) {
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		assert_true(fd >= 0);
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			return fd;
		close(fd);
		usleep(10000);
	}
	fail_msg("cannot connect to 127.0.0.1:%d", port);
	return -1;
}

static void send_all(int fd, const uint8_t *p, size_t n)
{
	while (n) {
		ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
		if (k <= 0)
			return; /* the destination may refuse and close early */
		p += k;
		n -= (size_t)k;
	}
}

/* A stream under construction. */
struct sb {
	uint8_t b[4096];
	size_t n;
};

static void sb_u8(struct sb *s, uint8_t v)
{
	assert_true(s->n < sizeof(s->b));
	s->b[s->n++] = v;
}

static void sb_be32(struct sb *s, uint32_t v)
{
	for (int i = 3; i >= 0; i--)
		sb_u8(s, (uint8_t)(v >> (8 * i)));
}

static void sb_bytes(struct sb *s, const void *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		sb_u8(s, ((const uint8_t *)p)[i]);
}

/* QEVM, version 3, CONFIGURATION "pseries-10.0". */
static void sb_header(struct sb *s)
{
	sb_be32(s, 0x5145564d);
	sb_be32(s, 3);
	sb_u8(s, 0x07);
	sb_be32(s, 12);
	sb_bytes(s, "pseries-10.0", 12);
}

/* spapr/htab START (section id 1) naming a table of 2^shift bytes. */
static void sb_htab_start(struct sb *s, uint32_t shift)
{
	sb_u8(s, 0x01);
	sb_be32(s, 1);
	sb_u8(s, 10);
	sb_bytes(s, "spapr/htab", 10);
	sb_be32(s, 0);
	sb_be32(s, 1);
	sb_be32(s, shift);
	sb_u8(s, 0x7e);
	sb_be32(s, 1);
}

/* A PART record of section 1 whose header resizes the table to 2^shift. */
static void sb_htab_resize(struct sb *s, uint32_t shift)
{
	sb_u8(s, 0x02);
	sb_be32(s, 1);
	sb_be32(s, shift);
	sb_u8(s, 0x7e);
	sb_be32(s, 1);
}

/* One line on stderr naming what we expect; prints it on a mismatch. */
static void assert_err_has(const char *err, const char *what)
{
	if (!strstr(err, what))
		fail_msg("stderr lacks '%s': [%s]", what, err);
}

/* The last line of a text (for stderr with warnings before the error). */
static const char *last_line(const char *s)
{
	size_t n = strlen(s);
	while (n && s[n - 1] == '\n')
		n--;
	while (n && s[n - 1] != '\n')
		n--;
	return s + n;
}

#define GIB_KIB (1024L * 1024L)

/* ------------------------------------------------------------- tests */

/*
 * incoming with default options stays under 1 GiB on any stream whose table
 * is over its cap: a ~60-byte stream naming htab_shift 30, 33 or 36 at START
 * is refused before anything is allocated, with one line naming the cap and
 * the options that change it. Over a socket and from a file.
 */
static void test_oversized_start_refused(void **state)
{
	(void)state;
	const uint32_t shifts[] = {30, 33, 36};
	for (size_t i = 0; i < sizeof(shifts) / sizeof(shifts[0]); i++) {
		struct sb s = {.n = 0};
		sb_header(&s);
		sb_htab_start(&s, shifts[i]);
		sb_u8(&s, 0x00); /* EOF */

		char path[600], uri[620];
		snprintf(path, sizeof(path), "%s/big%u.sock", tu_tmp, shifts[i]);
		snprintf(uri, sizeof(uri), "unix:%s", path);
		const char *args[] = {"incoming", uri, "--accept-timeout", "20", NULL};
		struct child c;
		child_start(&c, "big", args);
		int fd = connect_unix(path);
		send_all(fd, s.b, s.n);
		child_wait(&c, 30000);
		close(fd);
		char *err = slurp(c.err);
		printf("shift %u over a socket: exit %d, peak RSS %ld KiB, %.2f s: %s", shifts[i],
		       c.status, c.maxrss_kib, c.seconds, err);
		assert_int_equal(c.status, 1);
		assert_one_line(err);
		char want[64];
		snprintf(want, sizeof(want), "htab_shift %u", shifts[i]);
		assert_err_has(err, want);
		assert_err_has(err, "exceeds this destination's cap of htab_shift 25 (32 MiB)");
		assert_err_has(err, "--ram SIZE or --max-htab-shift N");
		assert_true(c.maxrss_kib < GIB_KIB);
		assert_true(c.maxrss_kib < 64 * 1024); /* nothing of the table mapped */
		free(err);

		/* The same bytes from a file. */
		snprintf(path, sizeof(path), "%s/big%u.mig", tu_tmp, shifts[i]);
		assert_int_equal(tu_write_file(path, s.b, s.n), 0);
		snprintf(uri, sizeof(uri), "file:%s", path);
		const char *fargs[] = {"incoming", uri, NULL};
		child_start(&c, "bigf", fargs);
		child_wait(&c, 30000);
		err = slurp(c.err);
		assert_int_equal(c.status, 1);
		assert_one_line(err);
		assert_err_has(err, want);
		assert_true(c.maxrss_kib < 64 * 1024);
		free(err);
	}
}

/*
 * --ram raises the cap as QEMU's rule says (8G: shift 26 + 1 = 27), and
 * --max-htab-shift overrides it; the refusal names the option in force.
 */
static void test_cap_follows_ram(void **state)
{
	(void)state;
	struct sb s = {.n = 0};
	sb_header(&s);
	sb_htab_start(&s, 28);
	sb_u8(&s, 0x00);
	char path[600], uri[620];
	snprintf(path, sizeof(path), "%s/cap.mig", tu_tmp);
	assert_int_equal(tu_write_file(path, s.b, s.n), 0);
	snprintf(uri, sizeof(uri), "file:%s", path);

	struct child c;
	const char *a1[] = {"incoming", uri, "--ram", "8G", NULL};
	child_start(&c, "cap1", a1);
	child_wait(&c, 30000);
	char *err = slurp(c.err);
	assert_int_equal(c.status, 1);
	assert_one_line(err);
	assert_err_has(err, "htab_shift 28 (a table of 256 MiB) exceeds this destination's cap of "
			    "htab_shift 27 (128 MiB): a guest of --ram 8 GiB may have at most "
			    "htab_shift 27");
	free(err);

	const char *a2[] = {"incoming", uri, "--max-htab-shift", "20", NULL};
	child_start(&c, "cap2", a2);
	child_wait(&c, 30000);
	err = slurp(c.err);
	assert_int_equal(c.status, 1);
	assert_err_has(err, "cap of htab_shift 20 (1 MiB): change it with --max-htab-shift N");
	free(err);

	/* At the cap the table is taken (the stream then fails for lack of an END). */
	const char *a3[] = {"incoming", uri, "--ram", "16G", NULL};
	child_start(&c, "cap3", a3);
	child_wait(&c, 30000);
	err = slurp(c.err);
	assert_int_equal(c.status, 1);
	assert_err_has(err, "got no SECTION_END");
	free(err);

	const char *bad[][4] = {{"--max-htab-shift", "17"}, {"--max-htab-shift", "37"},
				{"--deadline", "-1"}, {"--max-strays", "0"},
				{"--probe-timeout", "0"}};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *a[] = {"incoming", uri, bad[i][0], bad[i][1], NULL};
		child_start(&c, "capbad", a);
		child_wait(&c, 30000);
		err = slurp(c.err);
		if (c.status != 2)
			fail_msg("%s %s: exit %d [%s]", bad[i][0], bad[i][1], c.status, err);
		assert_one_line(err);
		free(err);
	}
}

/*
 * A storm of resizes in PART records: 40 resizes between the cap and the
 * cap - 1 hold one populated table at a time (an old table kept, or
 * populated while the next one is, would peak at 192 MiB or more with the
 * cap at 2^27 = 128 MiB), then a resize over the cap is refused naming it.
 */
static void test_resize_storm(void **state)
{
	(void)state;
	struct sb s = {.n = 0};
	sb_header(&s);
	sb_htab_start(&s, 27);
	for (int i = 0; i < 40; i++)
		sb_htab_resize(&s, i % 2 ? 27 : 26);
	sb_htab_resize(&s, 33);
	sb_u8(&s, 0x00);
	char path[600], uri[620];
	snprintf(path, sizeof(path), "%s/storm.sock", tu_tmp);
	snprintf(uri, sizeof(uri), "unix:%s", path);
	const char *args[] = {"incoming", uri, "--max-htab-shift", "27", NULL};
	struct child c;
	child_start(&c, "storm", args);
	int fd = connect_unix(path);
	send_all(fd, s.b, s.n);
	child_wait(&c, 60000);
	close(fd);
	char *err = slurp(c.err);
	printf("resize storm: exit %d, peak RSS %ld KiB in %.2f s: %s", c.status, c.maxrss_kib,
	       c.seconds, err);
	assert_int_equal(c.status, 1);
	assert_one_line(err);
	assert_err_has(err, "PART record: htab_shift 33 (a table of 8 GiB) exceeds this "
			    "destination's cap of htab_shift 27 (128 MiB)");
	/* one 128 MiB table populated at a time, plus the program */
	assert_true(c.maxrss_kib < 192 * 1024);
	free(err);

	/* Under the default cap the same storm (at 2^25) stays far under 1 GiB. */
	s.n = 0;
	sb_header(&s);
	sb_htab_start(&s, 25);
	for (int i = 0; i < 20; i++)
		sb_htab_resize(&s, i % 2 ? 25 : 24);
	sb_htab_resize(&s, 30);
	sb_u8(&s, 0x00);
	const char *dargs[] = {"incoming", uri, NULL};
	child_start(&c, "storm2", dargs);
	fd = connect_unix(path);
	send_all(fd, s.b, s.n);
	child_wait(&c, 60000);
	close(fd);
	err = slurp(c.err);
	assert_int_equal(c.status, 1);
	assert_err_has(err, "PART record: htab_shift 30");
	assert_true(c.maxrss_kib < 128 * 1024);
	free(err);
}

/*
 * A source that trickles one byte every 0.2 s (never idle for the idle
 * timeout) is cut at --deadline with one line naming it.
 */
static void test_trickle_cut_by_deadline(void **state)
{
	(void)state;
	char path[600], uri[620];
	snprintf(path, sizeof(path), "%s/trickle.sock", tu_tmp);
	snprintf(uri, sizeof(uri), "unix:%s", path);
	const char *args[] = {"incoming", uri, "--deadline", "1.5", "--idle-timeout", "1", "--json",
			      NULL};
	struct child c;
	child_start(&c, "trickle", args);
	int fd = connect_unix(path);
	/* QEVM, version 3, then a CONFIGURATION naming a 200-byte machine name
	 * that comes one byte at a time. */
	struct sb s = {.n = 0};
	sb_be32(&s, 0x5145564d);
	sb_be32(&s, 3);
	sb_u8(&s, 0x07);
	sb_be32(&s, 200);
	send_all(fd, s.b, s.n);
	int sent = 0;
	for (; sent < 40; sent++) {
		uint8_t ch = 'a';
		if (send(fd, &ch, 1, MSG_NOSIGNAL) != 1)
			break;
		int st;
		if (waitpid(c.pid, &st, WNOHANG) == c.pid) {
			/* reaped here: report through child_wait's view */
			c.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
			c.pid = -1;
			break;
		}
		usleep(200000);
	}
	if (c.pid > 0)
		child_wait(&c, 10000);
	close(fd);
	char *err = slurp(c.err);
	printf("trickle: exit %d after %d bytes sent one by one: %s", c.status, sent, err);
	assert_int_equal(c.status, 1);
	assert_one_line(err);
	assert_err_has(err, "within the deadline of 1.5 s");
	assert_err_has(err, "--deadline");
	/* cut near 1.5 s: 7-8 bytes at 5/s, far from the 40 we would send */
	assert_true(sent >= 5 && sent < 20);
	json_t *o = json_of_file(c.out);
	assert_string_equal(jstr(o, "status"), "failed");
	assert_string_equal(jstr(o, "error_code"), "HM_E_TIMEOUT");
	json_decref(o);
	free(err);

	/* A silent source is cut by the idle timeout, named as such. */
	child_start(&c, "idle", args);
	fd = connect_unix(path);
	send_all(fd, s.b, s.n);
	child_wait(&c, 10000);
	close(fd);
	err = slurp(c.err);
	assert_int_equal(c.status, 1);
	assert_one_line(err);
	assert_err_has(err, "sent nothing for 1000 ms");
	assert_err_has(err, "--idle-timeout");
	free(err);

	/* The same limits on a pipe (exec:): a trickle is cut at the deadline,
	 * a producer that never writes at the accept timeout. */
	char hdr[600], cmd[2048];
	snprintf(hdr, sizeof(hdr), "%s/trickle.hdr", tu_tmp);
	assert_int_equal(tu_write_file(hdr, s.b, s.n), 0);
	snprintf(cmd, sizeof(cmd),
		 "'%s' incoming 'exec:cat %s; while sleep 0.2; do printf a; done' --deadline 1",
		 tu_bin(), hdr);
	char *out = NULL;
	int rc = tu_run(cmd, &out, &err);
	assert_int_equal(rc, 1);
	assert_one_line(err);
	assert_err_has(err, "within the deadline of 1.0 s");
	free(out);
	free(err);
	snprintf(cmd, sizeof(cmd), "'%s' incoming 'exec:sleep 30' --accept-timeout 0.5", tu_bin());
	rc = tu_run(cmd, &out, &err);
	assert_int_equal(rc, 1);
	assert_one_line(err);
	assert_err_has(err, "no data within 500 ms (--accept-timeout)");
	free(out);
	free(err);
}

/*
 * Stray connections (garbage, an immediate close, silence past the probe
 * timeout, another stream version) are refused with one warning line each
 * and the listener keeps going: the real migration that follows succeeds.
 */
static void test_strays_then_migration(void **state)
{
	(void)state;
	int port = free_port();
	char uri[64], cmd[1024];
	snprintf(uri, sizeof(uri), "tcp:127.0.0.1:%d", port);
	const char *args[] = {"incoming", uri, "--json", "--probe-timeout", "0.5",
			      "--accept-timeout", "30", NULL};
	struct child c;
	child_start(&c, "stray", args);

	int fd = connect_tcp(port);
	const char *http = "GET / HTTP/1.0\r\n\r\n";
	send_all(fd, (const uint8_t *)http, strlen(http));
	close(fd);
	fd = connect_tcp(port);
	close(fd); /* immediate close */
	fd = connect_tcp(port);
	usleep(800000); /* silent past the probe timeout */
	close(fd);
	fd = connect_tcp(port);
	const uint8_t v2[] = {'Q', 'E', 'V', 'M', 0, 0, 0, 2};
	send_all(fd, v2, sizeof(v2));
	close(fd);

	snprintf(cmd, sizeof(cmd), "'%s' migrate %s --json --htab-shift 20 --vcpus 1 --rate 1000",
		 tu_bin(), uri);
	char *sout = NULL, *serr = NULL;
	int rc = tu_run(cmd, &sout, &serr);
	child_wait(&c, 30000);
	char *err = slurp(c.err);
	printf("strays: incoming exit %d, stderr:\n%s", c.status, err);
	if (rc != 0 || c.status != 0)
		fail_msg("migrate rc %d [%s], incoming rc %d [%s]", rc, serr, c.status, err);
	json_t *o = json_of_file(c.out);
	assert_string_equal(jstr(o, "status"), "ok");
	assert_true(jbool(o, "verified"));
	assert_int_equal((int)jnum(o, "stray_connections"), 4);
	json_t *so = json_of(sout);
	assert_string_equal(jstr(so, "htab.root"), jstr(o, "htab.root"));
	json_decref(so);
	json_decref(o);
	/* where it listens, then one warning line per stray, saying why */
	int lines = 0;
	for (const char *p = err; *p; p++)
		lines += *p == '\n';
	assert_int_equal(lines, 5);
	assert_true(strncmp(err, "hptmig: incoming: listening on tcp:127.0.0.1:", 45) == 0);
	assert_err_has(err, "stray connection 1 of at most 10 from 127.0.0.1:");
	assert_err_has(err, "starts with 47 45 54 20 2f 20 48 54, not a QEMU migration stream");
	assert_err_has(err, "closed without sending anything");
	assert_err_has(err, "sent nothing within 500 ms");
	assert_err_has(err, "QEVM stream of version 2");
	free(err);
	free(sout);
	free(serr);
}

/* Too many strays: a clean failure (exit 1), the last line saying why. */
static void test_too_many_strays(void **state)
{
	(void)state;
	char path[600], uri[620];
	snprintf(path, sizeof(path), "%s/strays.sock", tu_tmp);
	snprintf(uri, sizeof(uri), "unix:%s", path);
	const char *args[] = {"incoming", uri, "--max-strays", "3", "--json", NULL};
	struct child c;
	child_start(&c, "strays", args);
	for (int i = 0; i < 3; i++) {
		int fd = connect_unix(path);
		send_all(fd, (const uint8_t *)"garbage!", 8);
		close(fd);
	}
	child_wait(&c, 30000);
	char *err = slurp(c.err);
	printf("too many strays: exit %d: %s", c.status, err);
	assert_int_equal(c.status, 1);
	assert_err_has(last_line(err), "gave up after 3 stray connections");
	assert_err_has(last_line(err), "--max-strays");
	assert_err_has(err, "stray connection 3 of at most 3");
	json_t *o = json_of_file(c.out);
	assert_string_equal(jstr(o, "status"), "failed");
	assert_int_equal((int)jnum(o, "stray_connections"), 3);
	json_decref(o);
	free(err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_oversized_start_refused),
		cmocka_unit_test(test_cap_follows_ram),
		cmocka_unit_test(test_resize_storm),
		cmocka_unit_test(test_trickle_cut_by_deadline),
		cmocka_unit_test(test_strays_then_migration),
		cmocka_unit_test(test_too_many_strays),
	};
	return cmocka_run_group_tests(tests, tu_setup_tmp, tu_teardown_tmp);
}
