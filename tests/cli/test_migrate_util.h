/* SPDX-License-Identifier: MIT */
/*
 * Helpers for the migration CLI tests: background hptmig processes (always
 * reaped, killed on timeout), free tcp ports, JSON from a command's output.
 * Header-only so that each test_migrate*.c stays one program.
 */
#ifndef HPTMIG_TEST_MIGRATE_UTIL_H
#define HPTMIG_TEST_MIGRATE_UTIL_H

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

struct bg {
	pid_t pid;
	char out[512], err[512];
	int status; /* exit status, 128+signal, -1 while running */
};

/* Start `sh -c cmd` in the background, stdout/stderr to files in dir. */
static inline void bg_start(struct bg *b, const char *dir, const char *name, const char *cmd)
{
	snprintf(b->out, sizeof(b->out), "%s/%s.out", dir, name);
	snprintf(b->err, sizeof(b->err), "%s/%s.err", dir, name);
	b->status = -1;
	b->pid = fork();
	assert_true(b->pid >= 0);
	if (b->pid == 0) {
		int o = open(b->out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		int e = open(b->err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (o < 0 || e < 0)
			_exit(126);
		dup2(o, 1);
		dup2(e, 2);
		/* exec so that kill() reaches hptmig itself, not a shell */
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
}

/* Wait up to timeout_ms; on timeout kill -9 and fail the test. */
static inline int bg_wait(struct bg *b, int timeout_ms)
{
	if (b->status >= 0 || b->pid <= 0)
		return b->status;
	for (int waited = 0;; waited += 10) {
		int st;
		pid_t r = waitpid(b->pid, &st, WNOHANG);
		if (r == b->pid) {
			b->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
			return b->status;
		}
		if (waited >= timeout_ms) {
			kill(b->pid, SIGKILL);
			waitpid(b->pid, &st, 0);
			b->status = 128 + SIGKILL;
			fail_msg("background process did not finish within %d ms", timeout_ms);
		}
		usleep(10000);
	}
}

static inline void bg_kill(struct bg *b, int sig)
{
	if (b->pid > 0 && b->status < 0)
		kill(b->pid, sig);
}

/* Make sure a background process is gone (test cleanup paths). */
static inline void bg_reap(struct bg *b)
{
	if (b->pid > 0 && b->status < 0) {
		int st;
		kill(b->pid, SIGKILL);
		waitpid(b->pid, &st, 0);
		b->status = 128 + SIGKILL;
	}
}

static inline char *slurp(const char *path)
{
	uint8_t *d = NULL;
	size_t n = 0;
	if (tu_read_file(path, &d, &n) != 0)
		return strdup("");
	char *s = malloc(n + 1);
	memcpy(s, d, n);
	s[n] = 0;
	free(d);
	return s;
}

/* Parse the last line of a file or string as a JSON object (fails the test otherwise). */
static inline json_t *json_of(const char *text)
{
	json_error_t je;
	const char *line = text;
	const char *p = text;
	while (*p) {
		if (*p == '\n' && p[1])
			line = p + 1;
		p++;
	}
	json_t *o = json_loads(line, 0, &je);
	if (!o)
		fail_msg("not JSON (%s): %s", je.text, text);
	return o;
}

static inline json_t *json_of_file(const char *path)
{
	char *s = slurp(path);
	json_t *o = json_of(s);
	free(s);
	return o;
}

static inline const char *jstr(json_t *o, const char *path)
{
	/* "a.b" paths */
	char buf[128];
	snprintf(buf, sizeof(buf), "%s", path);
	json_t *cur = o;
	for (char *tok = strtok(buf, "."); tok && cur; tok = strtok(NULL, "."))
		cur = json_object_get(cur, tok);
	if (!cur || !json_is_string(cur))
		fail_msg("JSON field %s missing or not a string", path);
	return json_string_value(cur);
}

static inline double jnum(json_t *o, const char *path)
{
	char buf[128];
	snprintf(buf, sizeof(buf), "%s", path);
	json_t *cur = o;
	for (char *tok = strtok(buf, "."); tok && cur; tok = strtok(NULL, "."))
		cur = json_object_get(cur, tok);
	if (!cur || !json_is_number(cur))
		fail_msg("JSON field %s missing or not a number", path);
	return json_number_value(cur);
}

static inline bool jbool(json_t *o, const char *path)
{
	char buf[128];
	snprintf(buf, sizeof(buf), "%s", path);
	json_t *cur = o;
	for (char *tok = strtok(buf, "."); tok && cur; tok = strtok(NULL, "."))
		cur = json_object_get(cur, tok);
	if (!cur || !json_is_boolean(cur))
		fail_msg("JSON field %s missing or not a boolean", path);
	return json_is_true(cur);
}

/* A tcp port on 127.0.0.1 free right now (bind to port 0, read it, close). */
static inline int free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	close(fd);
	return ntohs(sa.sin_port);
}

/*
 * A line the commands print on stderr as they go, not an error: where a
 * listener listens, and one line per retry (connect attempts, --retries).
 */
static inline bool is_note_line(const char *line)
{
	static const char *const notes[] = {": listening on ", ": connect attempt ",
					    ": attempt "};
	const char *c;
	if (strncmp(line, "hptmig: ", 8) != 0 || !(c = strstr(line + 8, ": ")))
		return false;
	for (size_t i = 0; i < sizeof(notes) / sizeof(notes[0]); i++)
		if (strncmp(c, notes[i], strlen(notes[i])) == 0)
			return true;
	return false;
}

/* stderr of a failing command: exactly one line (besides note lines). */
static inline void assert_one_line(const char *err)
{
	size_t errors = 0, n = strlen(err);
	if (n == 0 || err[n - 1] != '\n')
		fail_msg("stderr is not exactly one line: [%s]", err);
	for (const char *p = err; *p;) {
		const char *e = strchr(p, '\n');
		char line[2048];
		snprintf(line, sizeof(line), "%.*s", (int)(e - p), p);
		if (!is_note_line(line))
			errors++;
		p = e + 1;
	}
	if (errors != 1)
		fail_msg("stderr is not exactly one line: [%s]", err);
}

#endif
