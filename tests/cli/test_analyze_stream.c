/* SPDX-License-Identifier: MIT */
/*
 * CLI: `hptmig analyze` and `rewrite` reading streams as they come: from a
 * pipe (`-`), exec:, fd:, file:, and listening unix: and tcp:127.0.0.1:0
 * (the "listening on" line, then one connection); a stream cut short in a
 * pipe; `rewrite - -` as a filter equal to `rewrite IN OUT`; `--follow`
 * printing progress before the stream ends (a writer that waits for it);
 * the device-state and input caps; peak RSS of a 256 MiB stream in a pipe.
 */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include "../analyze/streamgen.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

static struct sg basic;
static struct sg_basic bo;
static char basic_path[4200];

static int run(const char *args, char **out, char **err)
{
	char cmd[16384];
	snprintf(cmd, sizeof(cmd), "'%s' %s", tu_bin(), args);
	return tu_run(cmd, out, err);
}

static bool one_line(const char *s)
{
	const char *nl = strchr(s, '\n');
	return nl && nl[1] == 0;
}

/* The digest and status of an analyze --json output. */
static void expect_basic_json(const char *out)
{
	json_t *j = json_loads(out, 0, NULL);
	if (!j)
		fail_msg("not JSON: %s", out);
	assert_string_equal(json_string_value(json_object_get(j, "status")), "ok");
	json_t *h = json_object_get(j, "htab");
	assert_int_equal(json_integer_value(json_object_get(h, "valid")), 1);
	assert_int_equal(json_integer_value(json_object_get(j, "bytes")), (json_int_t)basic.len);
	json_decref(j);
}

static int setup(void **state)
{
	int rc = tu_setup_tmp(state);
	sg_build_basic(&basic, &bo, SG_VMDESC_BASIC);
	snprintf(basic_path, sizeof(basic_path), "%s/basic.mig", tu_tmp);
	assert_int_equal(tu_write_file(basic_path, basic.p, basic.len), 0);
	return rc;
}

static int teardown(void **state)
{
	free(basic.p);
	return tu_teardown_tmp(state);
}

/* The same JSON report from a file, a pipe, exec:, fd: and file:. */
static void test_pipe_exec_fd_file(void **state)
{
	(void)state;
	char args[16384], cmd[16400], *out, *err;
	for (int i = 0; i < 5; i++) {
		const char *b = basic_path, *t = tu_bin();
		switch (i) {
		case 0: /* a real pipe for '-' */
			snprintf(cmd, sizeof(cmd), "cat '%s' | '%s' analyze - --json", b, t);
			break;
		case 1:
			snprintf(cmd, sizeof(cmd), "'%s' analyze --json 'exec:cat %s'", t, b);
			break;
		case 2:
			snprintf(cmd, sizeof(cmd), "'%s' analyze fd:7 --json 7< '%s'", t, b);
			break;
		case 3:
			snprintf(cmd, sizeof(cmd), "'%s' analyze 'file:%s' --json", t, b);
			break;
		default:
			snprintf(cmd, sizeof(cmd), "'%s' analyze - --json --state --htab < '%s'", t, b);
		}
		int rc = tu_run(cmd, &out, &err);
		if (rc != 0)
			fail_msg("%s: exit %d: %s", cmd, rc, err);
		expect_basic_json(out);
		free(out);
		free(err);
	}
	/* '-' is stdin, never a file named '-' */
	snprintf(args, sizeof(args), "analyze - < /dev/null");
	assert_int_equal(run(args, &out, &err), 1);
	assert_true(one_line(err));
	assert_non_null(strstr(err, "stream header: needs 8 bytes"));
	free(out);
	free(err);
}

/* Cut short in a pipe: one line naming where the stream ended. */
static void test_cut_short(void **state)
{
	(void)state;
	size_t cuts[] = {bo.ram_part_item + 20, bo.htab_chunk + 10, bo.dev_rec + 3, bo.vmdesc + 30};
	for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
		char cmd[16400], *out, *err, want[64];
		snprintf(cmd, sizeof(cmd), "head -c %zu '%s' | '%s' analyze -", cuts[i], basic_path, tu_bin());
		assert_int_equal(tu_run(cmd, &out, &err), 1);
		if (!one_line(err))
			fail_msg("not one line: %s", err);
		snprintf(want, sizeof(want), "%zu", cuts[i]);
		if (!strstr(err, "offset") || (i < 2 && !strstr(err, want)))
			fail_msg("cut at %zu: %s", cuts[i], err);
		free(out);
		free(err);
	}
}

/* ------------------------------------------------------------ listening */

struct child {
	pid_t pid;
	int in, out, err; /* our ends of its stdin, stdout, stderr (-1: none) */
};

static void spawn(struct child *c, const char *const *args, bool pipe_in)
{
	int pi[2] = {-1, -1}, po[2], pe[2];
	if (pipe_in)
		assert_int_equal(pipe(pi), 0);
	assert_int_equal(pipe(po), 0);
	assert_int_equal(pipe(pe), 0);
	c->pid = fork();
	assert_true(c->pid >= 0);
	if (c->pid == 0) {
		if (pipe_in) {
			dup2(pi[0], 0);
			close(pi[1]); /* else stdin never ends */
		} else
			dup2(open("/dev/null", O_RDONLY), 0);
		dup2(po[1], 1);
		dup2(pe[1], 2);
		close(po[0]);
		close(pe[0]);
		char *argv[32] = {strdup(tu_bin())};
		int n = 1;
		for (int i = 0; args[i] && n < 31; i++)
			argv[n++] = strdup(args[i]);
		argv[n] = NULL;
		execv(tu_bin(), argv);
		_exit(127);
	}
	if (pipe_in) {
		close(pi[0]);
		c->in = pi[1];
	} else {
		c->in = -1;
	}
	close(po[1]);
	close(pe[1]);
	c->out = po[0];
	c->err = pe[0];
}

/* Read one line from fd within ms (a functional wait, not a timing check). */
static bool read_line(int fd, char *buf, size_t n, int ms)
{
	size_t k = 0;
	while (k + 1 < n) {
		struct pollfd p = {fd, POLLIN, 0};
		if (poll(&p, 1, ms) <= 0)
			break;
		ssize_t r = read(fd, buf + k, 1);
		if (r <= 0)
			break;
		if (buf[k] == '\n') {
			buf[k] = 0;
			return true;
		}
		k++;
	}
	buf[k] = 0;
	return false;
}

static char *slurp_fd(int fd)
{
	size_t cap = 1 << 16, n = 0;
	char *b = malloc(cap);
	assert_non_null(b);
	for (;;) {
		if (cap - n < 4096) {
			cap *= 2;
			b = realloc(b, cap);
			assert_non_null(b);
		}
		ssize_t k = read(fd, b + n, cap - n - 1);
		if (k <= 0)
			break;
		n += (size_t)k;
	}
	b[n] = 0;
	close(fd);
	return b;
}

static int finish(struct child *c, char **out, char **err, long *maxrss_kb)
{
	if (c->in >= 0)
		close(c->in);
	*out = slurp_fd(c->out);
	*err = slurp_fd(c->err);
	int st;
	struct rusage ru;
	while (wait4(c->pid, &st, 0, &ru) < 0 && errno == EINTR)
		;
	if (maxrss_kb)
		*maxrss_kb = ru.ru_maxrss;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void write_all(int fd, const void *p, size_t n)
{
	const uint8_t *b = p;
	while (n) {
		ssize_t k = write(fd, b, n);
		assert_true(k > 0);
		b += k;
		n -= (size_t)k;
	}
}

static void test_listen_unix_tcp(void **state)
{
	(void)state;
	char sock[4200], uri[4300];
	snprintf(sock, sizeof(sock), "%s/mig.sock", tu_tmp);
	for (int tcp = 0; tcp < 2; tcp++) {
		if (tcp)
			snprintf(uri, sizeof(uri), "tcp:127.0.0.1:0");
		else
			snprintf(uri, sizeof(uri), "unix:%s", sock);
		const char *args[] = {"analyze", uri, "--json", NULL};
		struct child c;
		spawn(&c, args, false);
		char line[512];
		assert_true(read_line(c.err, line, sizeof(line), 20000));
		const char *at = strstr(line, "listening on ");
		if (!at)
			fail_msg("no 'listening on' line: %s", line);
		at += strlen("listening on ");
		int fd;
		if (tcp) {
			const char *colon = strrchr(at, ':');
			assert_non_null(colon);
			int port = atoi(colon + 1);
			assert_true(port > 0);
			struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
			sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
			fd = socket(AF_INET, SOCK_STREAM, 0);
			assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
		} else {
			assert_string_equal(at, uri);
			struct sockaddr_un sa = {.sun_family = AF_UNIX};
			snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
			fd = socket(AF_UNIX, SOCK_STREAM, 0);
			assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
		}
		write_all(fd, basic.p, basic.len);
		close(fd);
		char *out, *err;
		int rc = finish(&c, &out, &err, NULL);
		if (rc != 0)
			fail_msg("%s: exit %d: %s", uri, rc, err);
		expect_basic_json(out);
		free(out);
		free(err);
	}
}

/* --follow: progress lines arrive while the writer still holds the end. */
static void test_follow(void **state)
{
	(void)state;
	const char *args[] = {"analyze", "--follow", "-", NULL};
	struct child c;
	spawn(&c, args, true);
	/* through the table's PART record (a pass): its progress line comes */
	write_all(c.in, basic.p, bo.cmd_rec);
	char line[512];
	bool got = read_line(c.err, line, sizeof(line), 20000);
	if (!got)
		fail_msg("no progress line before the end of the stream: '%s'", line);
	assert_non_null(strstr(line, "MiB"));
	assert_non_null(strstr(line, "htab pass"));
	assert_true(strlen(line) <= 80);
	write_all(c.in, basic.p + bo.cmd_rec, basic.len - bo.cmd_rec);
	char *out, *err;
	int rc = finish(&c, &out, &err, NULL);
	if (rc != 0)
		fail_msg("exit %d: %s", rc, err);
	assert_non_null(strstr(out, "htab: shift 18"));
	free(out);
	free(err);
}

/* The held final phase above its cap, and the input cap, on a pipe. */
static void test_caps(void **state)
{
	(void)state;
	char cmd[16400], *out, *err;
	snprintf(cmd, sizeof(cmd), "cat '%s' | '%s' analyze - --max-device-state 100", basic_path, tu_bin());
	assert_int_equal(tu_run(cmd, &out, &err), 1);
	assert_true(one_line(err));
	assert_non_null(strstr(err, "the device-state cap (--max-device-state"));
	free(out);
	free(err);
	snprintf(cmd, sizeof(cmd), "cat '%s' | '%s' analyze - --max-input 1K", basic_path, tu_bin());
	assert_int_equal(tu_run(cmd, &out, &err), 1);
	assert_true(one_line(err));
	assert_non_null(strstr(err, "more than 1024 bytes (the input cap; --max-input"));
	free(out);
	free(err);
	snprintf(cmd, sizeof(cmd), "'%s' analyze - --max-device-state 2G < /dev/null", tu_bin());
	assert_int_equal(tu_run(cmd, &out, &err), 2);
	assert_true(one_line(err));
	free(out);
	free(err);
}

/* rewrite - - is a filter: the same bytes as rewrite IN OUT; its summary
 * on stderr; a stream that fails leaves a non-zero exit. */
static void test_rewrite_filter(void **state)
{
	(void)state;
	char ref[4300], got[4300], cmd[16400], *out, *err;
	snprintf(ref, sizeof(ref), "%s/ref.mig", tu_tmp);
	snprintf(got, sizeof(got), "%s/got.mig", tu_tmp);
	snprintf(cmd, sizeof(cmd), "'%s' rewrite '%s' '%s'", tu_bin(), basic_path, ref);
	assert_int_equal(tu_run(cmd, &out, &err), 0);
	free(out);
	free(err);
	snprintf(cmd, sizeof(cmd), "cat '%s' | '%s' rewrite - - > '%s'", basic_path, tu_bin(), got);
	assert_int_equal(tu_run(cmd, &out, &err), 0);
	assert_non_null(strstr(err, "rewrote - -> -"));
	free(out);
	free(err);
	uint8_t *a, *b;
	size_t na, nb;
	assert_int_equal(tu_read_file(ref, &a, &na), 0);
	assert_int_equal(tu_read_file(got, &b, &nb), 0);
	assert_int_equal(na, nb);
	assert_memory_equal(a, b, na);
	free(a);
	free(b);
	/* no file named '-' */
	assert_int_not_equal(access("-", F_OK), 0);
	/* cut short in the table: exit 1, an error naming the offset, no summary */
	snprintf(cmd, sizeof(cmd), "head -c %zu '%s' | '%s' rewrite - - > /dev/null", bo.htab_chunk + 10, basic_path,
		 tu_bin());
	assert_int_equal(tu_run(cmd, &out, &err), 1);
	assert_null(strstr(err, "rewrote"));
	assert_non_null(strstr(err, "offset"));
	free(out);
	free(err);
}

/* ------------------------------------------------------------ memory */

/* 256 MiB of RAM pages into analyze's stdin: its peak RSS stays small. */
static void test_big_pipe_rss(void **state)
{
	(void)state;
	const uint64_t pages = 65536;
	const char *args[] = {"analyze", "-", "--json", NULL};
	struct child c;
	spawn(&c, args, true);
	struct sg h = {0};
	sg_header(&h);
	sg_start(&h, 0x01, 1, "ram", 0, 4);
	sg_be64(&h, (pages << 12) | 0x04);
	sg_str8(&h, "ram0");
	sg_be64(&h, pages << 12);
	sg_be64(&h, 0x10);
	sg_footer(&h, 1);
	sg_part(&h, 0x02, 1);
	write_all(c.in, h.p, h.len);
	static uint8_t item[8 + 4096 + 5];
	for (uint64_t p = 0; p < pages; p++) {
		size_t n = 0;
		hm_store_be64(item, (p << 12) | 0x08 | (p ? 0x20 : 0));
		n = 8;
		if (!p) {
			item[n++] = 4;
			memcpy(item + n, "ram0", 4);
			n += 4;
		}
		memset(item + n, (int)p, 4096);
		write_all(c.in, item, n + 4096);
	}
	h.len = 0;
	sg_be64(&h, 0x10);
	sg_footer(&h, 1);
	sg_u8(&h, 0x00);
	write_all(c.in, h.p, h.len);
	free(h.p);
	char *out, *err;
	long rss;
	int rc = finish(&c, &out, &err, &rss);
	if (rc != 0)
		fail_msg("exit %d: %s", rc, err);
	json_t *j = json_loads(out, 0, NULL);
	assert_non_null(j);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "ram"), "data_pages")), pages);
	json_decref(j);
	print_message("256 MiB stream through a pipe: peak RSS %ld KiB%s\n", rss,
		      SANITIZED ? " (not checked under a sanitizer)" : "");
	if (!SANITIZED && rss > 64 * 1024)
		fail_msg("peak RSS %ld KiB above 64 MiB", rss);
	free(out);
	free(err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pipe_exec_fd_file), cmocka_unit_test(test_cut_short),
		cmocka_unit_test(test_listen_unix_tcp),   cmocka_unit_test(test_follow),
		cmocka_unit_test(test_caps),              cmocka_unit_test(test_rewrite_filter),
		cmocka_unit_test(test_big_pipe_rss),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
