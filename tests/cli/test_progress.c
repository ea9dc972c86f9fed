/* SPDX-License-Identifier: MIT */
/*
 * Progress of the real binary as virsh and QEMU users expect it: on
 * stderr, forced with --progress when stderr is not a terminal (then one
 * line a second, no carriage returns), off with --quiet and by default off
 * a terminal, on by default on one (a pseudo-terminal, redrawn in place);
 * with --json stdout stays one JSON object. Each line fits 80
 * columns, its percentage never goes back within a pass, and the pass
 * numbers agree with the final "stop: final pass N" line and the report.
 * Also the wording: "1 pass", and `demo --rate 0` runs "flat out".
 */
#include "test_migrate_util.h"

#include <poll.h>
#include <pty.h>

#include "hptmig/base.h"

/* Migrate a 16 GiB guest (a 128 MiB table) over a 2 MiB/s link, so the
 * migration takes a few seconds. */
static void migrate_limited(const char *name, const char *opts, struct bg *src)
{
	char cmd[4096];
	struct bg in;
	snprintf(cmd, sizeof(cmd), "exec '%s' incoming unix:%s/%s.sock --ram 16G --run 0", tu_bin(),
		 tu_tmp, name);
	bg_start(&in, tu_tmp, name, cmd);
	for (int i = 0; i < 1000; i++) { /* until it listens */
		char *e = slurp(in.err);
		bool up = strstr(e, "listening on") != NULL;
		free(e);
		if (up)
			break;
		usleep(10000);
	}
	char sname[64];
	snprintf(sname, sizeof(sname), "%s-src", name);
	snprintf(cmd, sizeof(cmd),
		 "exec '%s' migrate unix:%s/%s.sock --ram 16G --max-bandwidth 2M "
		 "--connect-timeout 10 %s",
		 tu_bin(), tu_tmp, name, opts);
	bg_start(src, tu_tmp, sname, cmd);
	int rc = bg_wait(src, 120000), irc = bg_wait(&in, 30000);
	if (rc != 0 || irc != 0) {
		char *e1 = slurp(src->err), *e2 = slurp(in.err);
		fail_msg("migrate exit %d [%s], incoming exit %d [%s]", rc, e1, irc, e2);
	}
}

static void test_progress_lines(void **state)
{
	(void)state;
	struct bg src;
	migrate_limited("prog", "--json --progress", &src);
	/* stdout: exactly one JSON object, nothing else */
	char *out = slurp(src.out);
	json_error_t je;
	json_t *o = json_loads(out, 0, &je);
	if (!o)
		fail_msg("stdout is not one JSON object (%s): [%s]", je.text, out);
	assert_string_equal(jstr(o, "status"), "ok");
	int iterations = (int)jnum(o, "iterations");
	double total_s = jnum(o, "total_time_ms") / 1000;

	char *err = slurp(src.err);
	print_message("stderr:\n%s", err);
	assert_null(strchr(err, '\r')); /* not a terminal: whole lines */
	assert_non_null(strstr(err, "waiting for the destination"));
	int lines = 0, pass_lines = 0, last_pass = 0, last_pct = -1, stop_pass = -1;
	for (char *p = err; *p;) {
		char *e = strchr(p, '\n');
		assert_non_null(e);
		*e = 0;
		if (is_note_line(p)) { /* a connect retry, not progress */
			p = e + 1;
			continue;
		}
		lines++;
		if (strlen(p) > 80)
			fail_msg("progress line over 80 columns (%zu): [%s]", strlen(p), p);
		for (const char *c = p; *c; c++)
			if ((unsigned char)*c < 0x20 || (unsigned char)*c > 0x7e)
				fail_msg("control byte in a progress line: [%s]", p);
		int pass, pct;
		if (sscanf(p, "pass %d %d%%", &pass, &pct) == 2) {
			pass_lines++;
			assert_true(pass >= last_pass); /* passes go forward */
			if (pass == last_pass && pct < last_pct)
				fail_msg("percentage went back within pass %d: %d%% after %d%%", pass,
					 pct, last_pct);
			assert_true(pct >= 0 && pct <= 100);
			assert_non_null(strstr(p, "sent "));
			assert_non_null(strstr(p, "left "));
			assert_non_null(strstr(p, " of "));
			last_pass = pass;
			last_pct = pct;
		} else if (sscanf(p, "stop: final pass %d", &pass) == 1) {
			stop_pass = pass;
			assert_true(pass >= last_pass);
		}
		p = e + 1;
	}
	print_message("%d lines, %d pass lines in %.1f s, %d passes + final pass %d\n", lines,
		      pass_lines, total_s, iterations, stop_pass);
	assert_true(pass_lines >= 1);
	/* one line a second off a terminal (and one per phase change) */
	assert_true(pass_lines <= (int)total_s + 2);
	/* the final pass's number is the report's passes + 1 */
	assert_int_equal(stop_pass, iterations + 1);
	json_decref(o);
	free(out);
	free(err);
}

/* Off a terminal nothing is shown unless asked; --quiet wins over --progress. */
static void test_progress_off(void **state)
{
	(void)state;
	struct bg a, b;
	char cmd[4096];
	snprintf(cmd, sizeof(cmd), "exec '%s' save %s/q.bin --htab-shift 20 --json", tu_bin(), tu_tmp);
	bg_start(&a, tu_tmp, "qdef", cmd);
	assert_int_equal(bg_wait(&a, 30000), 0);
	snprintf(cmd, sizeof(cmd), "exec '%s' save %s/q.bin --htab-shift 20 --progress --quiet",
		 tu_bin(), tu_tmp);
	bg_start(&b, tu_tmp, "qquiet", cmd);
	assert_int_equal(bg_wait(&b, 30000), 0);
	char *e1 = slurp(a.err), *e2 = slurp(b.err);
	assert_string_equal(e1, "");
	assert_string_equal(e2, "");
	free(e1);
	free(e2);
	/* and with --progress, save shows it on stderr, stdout untouched */
	snprintf(cmd, sizeof(cmd), "exec '%s' save %s/q.bin --htab-shift 20 --progress --json",
		 tu_bin(), tu_tmp);
	bg_start(&b, tu_tmp, "qprog", cmd);
	assert_int_equal(bg_wait(&b, 30000), 0);
	char *e3 = slurp(b.err);
	assert_non_null(strstr(e3, "stop: final pass "));
	json_decref(json_of_file(b.out));
	free(e3);
}

/*
 * On a terminal, progress is on by default: `save` with its stdout and
 * stderr on a pseudo-terminal redraws one line in place ("\r\033[K"),
 * each within 80 columns, clears it before the summary.
 */
static void test_progress_on_terminal(void **state)
{
	(void)state;
	char path[600];
	snprintf(path, sizeof(path), "%s/tty.bin", tu_tmp);
	int master;
	struct winsize ws = {.ws_row = 24, .ws_col = 80};
	pid_t pid = forkpty(&master, NULL, NULL, &ws);
	assert_true(pid >= 0);
	if (pid == 0) {
		execl(tu_bin(), tu_bin(), "save", path, "--ram", "8G", "--max-bandwidth", "2M",
		      (char *)NULL);
		_exit(127);
	}
	size_t cap = 1 << 20, len = 0;
	char *buf = malloc(cap);
	for (;;) { /* read until the child closes the terminal */
		struct pollfd p = {.fd = master, .events = POLLIN};
		if (poll(&p, 1, 60000) <= 0)
			break;
		ssize_t n = read(master, buf + len, cap - 1 - len);
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	buf[len] = 0;
	int st;
	waitpid(pid, &st, 0);
	close(master);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	/* redrawn in place, then cleared before the summary */
	assert_non_null(strstr(buf, "\r\033[Kpass 1 "));
	assert_non_null(strstr(buf, "\r\033[Ksaved "));
	int redraws = 0;
	for (char *p = strstr(buf, "\r\033[K"); p; p = strstr(p + 1, "\r\033[K")) {
		const char *line = p + 4;
		size_t n = strcspn(line, "\r\n");
		if (strncmp(line, "saved ", 6) == 0)
			continue; /* the summary after the cleared line */
		if (n > 80)
			fail_msg("progress line over 80 columns (%zu): [%.*s]", n, (int)n, line);
		redraws++;
	}
	print_message("%d redraws on the terminal\n", redraws);
	assert_true(redraws >= 2);
	free(buf);
}

static void test_wording(void **state)
{
	(void)state;
	char cmd[4096], *out = NULL, *err = NULL;
	/* an idle guest, one pass: "1 pass", never "1 passes" */
	snprintf(cmd, sizeof(cmd), "'%s' save %s/w.bin --htab-shift 20 --workload idle --quiet",
		 tu_bin(), tu_tmp);
	assert_int_equal(tu_run(cmd, &out, &err), 0);
	print_message("%s", out);
	assert_null(strstr(out, " 1 passes"));
	assert_non_null(strstr(out, " pass"));
	free(out);
	free(err);
	snprintf(cmd, sizeof(cmd), "'%s' demo --htab-shift 20 --rate 0 --run 0.1 --quiet", tu_bin());
	assert_int_equal(tu_run(cmd, &out, &err), 0);
	print_message("%.*s\n", (int)(strchr(out, '\n') - out), out);
	assert_non_null(strstr(out, "flat out"));
	assert_null(strstr(out, " 0 hypercalls/s"));
	free(out);
	free(err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_progress_lines),
		cmocka_unit_test(test_progress_off),
		cmocka_unit_test(test_progress_on_terminal),
		cmocka_unit_test(test_wording),
	};
	return cmocka_run_group_tests(tests, tu_setup_tmp, tu_teardown_tmp);
}
