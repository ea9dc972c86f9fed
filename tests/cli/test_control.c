/* SPDX-License-Identifier: MIT */
/*
 * CLI tests of live status and control (docs/control.md): a real QMP
 * client in Python (tests/cli/qmp_client.py; skipped without python3)
 * negotiates, queries, changes max-bandwidth mid-run (the rate change seen
 * in true byte counts and in later status lines) and cancels (status
 * cancelled, the guest still running on the source); bad commands get
 * QMP's error classes; --status-interval lines parse and carry QEMU's
 * names; JSON usage errors; and every JSON output's keys equal those
 * documented in docs/json-schema.md.
 */
#include "test_migrate_util.h"

#include <sys/stat.h>
#include <sys/un.h>

/* ------------------------------------------------ docs/json-schema.md */

/* The keys of schema NAME (space separated, "[k]" optional) into buf;
 * fails the test when the page has no such line. */
static void schema_line(const char *name, char *buf, size_t len)
{
	char path[1024], want[160];
	snprintf(path, sizeof(path), "%s/docs/json-schema.md", tu_source_dir());
	snprintf(want, sizeof(want), "schema: %s = ", name);
	char *doc = slurp(path);
	char *p = strstr(doc, want);
	/* the name must match whole: "x = " cannot match "x.y = " */
	if (!p)
		fail_msg("docs/json-schema.md has no line '%s'", want);
	p += strlen(want);
	size_t n = strcspn(p, "\n");
	if (n >= len)
		fail_msg("schema line %s too long", name);
	memcpy(buf, p, n);
	buf[n] = 0;
	free(doc);
}

static bool schema_has(const char *name)
{
	char path[1024], want[160];
	snprintf(path, sizeof(path), "%s/docs/json-schema.md", tu_source_dir());
	snprintf(want, sizeof(want), "schema: %s = ", name);
	char *doc = slurp(path);
	bool r = strstr(doc, want) != NULL;
	free(doc);
	return r;
}

/* o's keys equal the documented ones (optional ones may be absent), and
 * every member object with a schema of its own is checked too. */
static void assert_schema(json_t *o, const char *name)
{
	char line[4096], key[128];
	if (!json_is_object(o))
		fail_msg("%s: not a JSON object", name);
	schema_line(name, line, sizeof(line));
	/* documented keys present */
	for (char *tok = strtok(line, " "); tok; tok = strtok(NULL, " ")) {
		if (tok[0] == '[')
			continue;
		if (!json_object_get(o, tok))
			fail_msg("%s: documented key '%s' missing", name, tok);
	}
	/* present keys documented */
	const char *k;
	json_t *v;
	json_object_foreach(o, k, v) {
		char sp[140], opt[140];
		schema_line(name, line, sizeof(line));
		snprintf(sp, sizeof(sp), " %s ", k);
		snprintf(opt, sizeof(opt), " [%s] ", k);
		char padded[4200];
		snprintf(padded, sizeof(padded), " %s ", line);
		if (!strstr(padded, sp) && !strstr(padded, opt))
			fail_msg("%s: key '%s' is not in docs/json-schema.md", name, k);
		snprintf(key, sizeof(key), "%s.%s", name, k);
		if (json_is_object(v) && schema_has(key))
			assert_schema(v, key);
	}
}

/* ------------------------------------------------------------- helpers */

static bool have_python(void)
{
	return tu_run("command -v python3 >/dev/null 2>&1", NULL, NULL) == 0;
}

static void client_path(char *buf, size_t len)
{
	snprintf(buf, len, "%s/tests/cli/qmp_client.py", tu_source_dir());
}

/* Wait until path exists (a listener is up). */
static void wait_path(const char *path, int timeout_ms)
{
	struct stat sb;
	for (int w = 0; stat(path, &sb) != 0; w += 10) {
		if (w >= timeout_ms)
			fail_msg("%s did not appear within %d ms", path, timeout_ms);
		usleep(10000);
	}
}

/* Connect to a unix socket and send what is not a migration (errors
 * ignored: the listener may be gone already). */
static void poke_stray(const char *path)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (fd < 0)
		return;
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0) {
		ssize_t w = write(fd, "not a migration\n", 16);
		(void)w;
	}
	close(fd);
}

/* The lines of a file: every line but the last one that is not a status
 * event goes into lines[] (status lines), the report is returned. */
static json_t *split_output(const char *path, json_t **lines, size_t max, size_t *n)
{
	char *s = slurp(path);
	json_t *report = NULL;
	*n = 0;
	for (char *l = strtok(s, "\n"); l; l = strtok(NULL, "\n")) {
		json_error_t je;
		json_t *o = json_loads(l, 0, &je);
		if (!o)
			fail_msg("%s: a line is not JSON (%s): %s", path, je.text, l);
		if (json_object_get(o, "event")) {
			if (report)
				fail_msg("%s: a status line after the report", path);
			if (*n < max)
				lines[(*n)++] = o;
			else
				json_decref(o);
		} else {
			if (report)
				fail_msg("%s: two reports", path);
			report = o;
		}
	}
	free(s);
	if (!report)
		fail_msg("%s: no final report", path);
	return report;
}

static void free_lines(json_t **lines, size_t n)
{
	for (size_t i = 0; i < n; i++)
		json_decref(lines[i]);
}

/* ---------------------------------------------------------------- tests */

static void test_usage_error_json(void **state)
{
	(void)state;
	char cmd[2048];
	char *out = NULL, *err = NULL;
	snprintf(cmd, sizeof(cmd), "'%s' migrate --json --bogus", tu_bin());
	assert_int_equal(tu_run(cmd, &out, &err), 2);
	assert_one_line(err);
	json_t *o = json_of(out);
	assert_schema(o, "usage-error");
	assert_string_equal(jstr(o, "status"), "error");
	assert_non_null(strstr(jstr(o, "error"), "--bogus"));
	json_decref(o);
	free(out);
	free(err);
	/* a bad value and a missing argument, on other commands */
	const char *cases[] = {"incoming --json", "demo --status-interval 1 --json",
			       "migrate unix:/x --control tcp:1 --json"};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(cmd, sizeof(cmd), "'%s' %s", tu_bin(), cases[i]);
		assert_int_equal(tu_run(cmd, &out, &err), 2);
		assert_one_line(err);
		o = json_of(out);
		assert_schema(o, "usage-error");
		json_decref(o);
		free(out);
		free(err);
	}
	/* without --json, stdout stays empty */
	snprintf(cmd, sizeof(cmd), "'%s' migrate --bogus", tu_bin());
	assert_int_equal(tu_run(cmd, &out, &err), 2);
	assert_string_equal(out, "");
	free(out);
	free(err);
}

static void test_control_path_refused(void **state)
{
	(void)state;
	char cmd[4096], path[600];
	char *out = NULL, *err = NULL;
	snprintf(path, sizeof(path), "%s/not-a-socket", tu_tmp);
	assert_int_equal(tu_write_file(path, "keep", 4), 0);
	snprintf(cmd, sizeof(cmd), "'%s' incoming unix:%s/x.sock --control unix:%s", tu_bin(),
		 tu_tmp, path);
	assert_int_equal(tu_run(cmd, &out, &err), 1);
	assert_one_line(err);
	assert_non_null(strstr(err, "not a socket"));
	char *kept = slurp(path);
	assert_string_equal(kept, "keep");
	free(kept);
	free(out);
	free(err);
	unlink(path);
}

/* A waiting destination: QMP protocol errors, concurrent clients, the
 * socket's mode; Ctrl-C then ends it (status cancelled, socket removed). */
static void test_qmp_errors(void **state)
{
	(void)state;
	if (!have_python())
		skip();
	char cmd[4096], ctl[600], client[1024];
	struct bg in;
	snprintf(ctl, sizeof(ctl), "%s/e.ctl", tu_tmp);
	snprintf(cmd, sizeof(cmd),
		 "exec '%s' incoming unix:%s/e.sock --json --status-interval 100 --control unix:%s "
		 "--max-strays 1",
		 tu_bin(), tu_tmp, ctl);
	bg_start(&in, tu_tmp, "ein", cmd);
	wait_path(ctl, 10000);
	struct stat sb;
	assert_int_equal(stat(ctl, &sb), 0);
	assert_true(S_ISSOCK(sb.st_mode));
	assert_int_equal(sb.st_mode & 0777, 0600);

	client_path(client, sizeof(client));
	char *out = NULL, *err = NULL;
	snprintf(cmd, sizeof(cmd), "python3 '%s' errors '%s'", client, ctl);
	int rc = tu_run(cmd, &out, &err);
	if (rc != 0)
		fail_msg("qmp_client errors: exit %d: %s", rc, err);
	json_t *seen = json_of(out);
	const char *k;
	json_t *v;
	json_object_foreach(seen, k, v)
		assert_schema(v, k);
	assert_string_equal(jstr(seen, "query-migrate.status"), "setup");
	assert_string_equal(jstr(seen, "query-migrate.side"), "destination");
	json_decref(seen);
	free(out);
	free(err);

	/* (Where the wait for a source does not watch Ctrl-C, a stray
	 * connection ends it (--max-strays 1): cancelled either way, as the
	 * cancel was requested.) */
	bg_kill(&in, SIGINT);
	usleep(300000);
	char sock[600];
	snprintf(sock, sizeof(sock), "%s/e.sock", tu_tmp);
	poke_stray(sock);
	int st = bg_wait(&in, 20000);
	assert_true(st == 1 || st == 130); /* (130: the shell's convention for SIGINT) */
	assert_int_equal(stat(ctl, &sb), -1); /* removed at exit */
	json_t *lines[256];
	size_t n;
	json_t *rep = split_output(in.out, lines, 256, &n);
	assert_schema(rep, "dest-report");
	assert_true(n >= 1);
	for (size_t i = 0; i < n; i++) {
		assert_schema(lines[i], "status-event");
		assert_string_equal(jstr(lines[i], "side"), "destination");
	}
	assert_string_equal(jstr(lines[0], "status"), "setup");
	assert_string_equal(jstr(lines[n - 1], "status"), "cancelled");
	free_lines(lines, n);
	json_decref(rep);
}

/* The whole story on a live run: query, max-bandwidth raised (seen in the
 * byte counts and in later status lines), the destination queried, cancel. */
static void test_qmp_live(void **state)
{
	(void)state;
	if (!have_python())
		skip();
	char cmd[4096], sctl[600], dctl[600], client[1024];
	struct bg in, src;
	snprintf(sctl, sizeof(sctl), "%s/s.ctl", tu_tmp);
	snprintf(dctl, sizeof(dctl), "%s/d.ctl", tu_tmp);
	snprintf(cmd, sizeof(cmd),
		 "exec '%s' incoming unix:%s/l.sock --ram 4G --json --control unix:%s", tu_bin(),
		 tu_tmp, dctl);
	bg_start(&in, tu_tmp, "lin", cmd);
	wait_path(dctl, 10000);
	snprintf(cmd, sizeof(cmd),
		 "exec '%s' migrate unix:%s/l.sock --ram 4G --max-bandwidth 32K --json "
		 "--status-interval 100 --control unix:%s",
		 tu_bin(), tu_tmp, sctl);
	bg_start(&src, tu_tmp, "lsrc", cmd);
	wait_path(sctl, 10000);

	client_path(client, sizeof(client));
	char *out = NULL, *err = NULL;
	snprintf(cmd, sizeof(cmd), "python3 '%s' live '%s' '%s'", client, sctl, dctl);
	int rc = tu_run(cmd, &out, &err);
	if (rc != 0) {
		bg_reap(&src);
		bg_reap(&in);
		fail_msg("qmp_client live: exit %d: %s", rc, err);
	}
	printf("qmp_client: %s", out);
	free(out);
	free(err);

	assert_int_equal(bg_wait(&src, 30000), 1);
	bg_wait(&in, 30000);
	char *serr = slurp(src.err);
	assert_one_line(serr);
	assert_non_null(strstr(serr, "cancelled"));
	free(serr);

	json_t *lines[1024];
	size_t n;
	json_t *rep = split_output(src.out, lines, 1024, &n);
	assert_schema(rep, "source-report");
	assert_string_equal(jstr(rep, "guest_state"), "running-on-source");
	assert_true(jbool(rep, "guest.running"));
	assert_int_equal((int64_t)jnum(rep, "max_bandwidth"), 32 * 1024); /* set back */
	assert_true(n >= 3);
	double slow_mbps = -1, fast_mbps = -1;
	for (size_t i = 0; i < n; i++) {
		assert_schema(lines[i], "status-event");
		json_t *mb = json_object_get(lines[i], "mbps");
		double bw = jnum(lines[i], "max-bandwidth");
		if (strcmp(jstr(lines[i], "status"), "active") != 0 || !json_is_number(mb))
			continue;
		if (bw == 32 * 1024 && fast_mbps < 0 && slow_mbps < 0)
			slow_mbps = json_number_value(mb);
		if (bw == 256 * 1024 && json_number_value(mb) > fast_mbps)
			fast_mbps = json_number_value(mb);
	}
	printf("status lines: %zu, mbps at 32K %.3f, at 256K up to %.3f\n", n, slow_mbps, fast_mbps);
	assert_true(slow_mbps > 0);
	assert_true(fast_mbps > 4 * slow_mbps);
	/* the end: cancelled, and the true byte count in both places */
	assert_string_equal(jstr(lines[n - 1], "status"), "cancelled");
	assert_true(jnum(rep, "bytes_total") > 0);
	assert_true(jnum(lines[n - 1], "transferred") == jnum(rep, "bytes_total"));
	free_lines(lines, n);
	json_decref(rep);
	json_t *drep = json_of_file(in.out);
	assert_schema(drep, "dest-report");
	json_decref(drep);
}

/* demo: status lines from setup to completed, the report's keys. */
static void test_status_demo(void **state)
{
	(void)state;
	char cmd[2048];
	snprintf(cmd, sizeof(cmd),
		 "exec '%s' demo --ram 1G --max-bandwidth 1M --run 0.1 --json --status-interval 20",
		 tu_bin());
	struct bg d;
	bg_start(&d, tu_tmp, "demo", cmd);
	assert_int_equal(bg_wait(&d, 60000), 0);
	json_t *lines[4096];
	size_t n;
	json_t *rep = split_output(d.out, lines, 4096, &n);
	assert_schema(rep, "demo-report");
	assert_schema(json_object_get(rep, "source"), "source-report");
	assert_schema(json_object_get(rep, "destination"), "dest-report");
	assert_true(n >= 2);
	bool active = false;
	for (size_t i = 0; i < n; i++) {
		assert_schema(lines[i], "status-event");
		active |= strcmp(jstr(lines[i], "status"), "active") == 0;
	}
	assert_true(active);
	json_t *last = lines[n - 1];
	assert_string_equal(jstr(last, "status"), "completed");
	assert_true(json_is_integer(json_object_get(last, "downtime")));
	assert_true(jnum(last, "remaining") == 0);
	assert_true(jnum(last, "transferred") == jnum(rep, "source.bytes_total"));
	free_lines(lines, n);
	json_decref(rep);
}

/* Ctrl-C on a migration: the last status line says cancelled. */
static void test_status_interrupt(void **state)
{
	(void)state;
	char cmd[4096];
	struct bg in, src;
	snprintf(cmd, sizeof(cmd), "exec '%s' incoming unix:%s/i.sock", tu_bin(), tu_tmp);
	bg_start(&in, tu_tmp, "iin", cmd);
	char sock[600];
	snprintf(sock, sizeof(sock), "%s/i.sock", tu_tmp);
	wait_path(sock, 10000);
	snprintf(cmd, sizeof(cmd),
		 "exec '%s' migrate unix:%s --ram 1G --max-bandwidth 64K --json "
		 "--status-interval 50",
		 tu_bin(), sock);
	bg_start(&src, tu_tmp, "isrc", cmd);
	/* wait for an active status line, then interrupt */
	for (int w = 0;; w += 20) {
		char *s = slurp(src.out);
		bool act = strstr(s, "\"status\":\"active\"") != NULL;
		free(s);
		if (act)
			break;
		if (w > 20000) {
			bg_reap(&src);
			bg_reap(&in);
			fail_msg("no active status line within 20 s");
		}
		usleep(20000);
	}
	bg_kill(&src, SIGINT);
	int st = bg_wait(&src, 20000);
	assert_true(st == 1 || st == 130);
	bg_wait(&in, 20000);
	json_t *lines[1024];
	size_t n;
	json_t *rep = split_output(src.out, lines, 1024, &n);
	assert_string_equal(jstr(lines[n - 1], "status"), "cancelled");
	assert_true(json_is_null(json_object_get(lines[n - 1], "downtime")));
	assert_string_equal(jstr(rep, "guest_state"), "running-on-source");
	free_lines(lines, n);
	json_decref(rep);
}

/* The idle timeout (unix:PATH,idle-timeout=S): a client that sends no
 * command for S seconds is told and closed, one that keeps talking is
 * served on; a bad value is a usage error. */
static void test_control_idle(void **state)
{
	(void)state;
	if (!have_python())
		skip();
	char cmd[4096], ctl[600], client[1024];
	char *out = NULL, *err = NULL;
	snprintf(cmd, sizeof(cmd), "'%s' incoming unix:%s/i.sock --control unix:%s/i.ctl,"
		 "idle-timeout=-1 --json", tu_bin(), tu_tmp, tu_tmp);
	assert_int_equal(tu_run(cmd, &out, &err), 2);
	assert_one_line(err);
	free(out);
	free(err);
	struct bg in;
	snprintf(ctl, sizeof(ctl), "%s/i.ctl", tu_tmp);
	snprintf(cmd, sizeof(cmd), "exec '%s' incoming unix:%s/i.sock --control unix:%s,"
		 "idle-timeout=1", tu_bin(), tu_tmp, ctl);
	bg_start(&in, tu_tmp, "iin", cmd);
	wait_path(ctl, 10000);
	client_path(client, sizeof(client));
	snprintf(cmd, sizeof(cmd), "python3 '%s' idle '%s' 1", client, ctl);
	int rc = tu_run(cmd, &out, &err);
	bg_kill(&in, SIGTERM);
	int st = bg_wait(&in, 10000);
	if (rc != 0)
		fail_msg("qmp_client idle: exit %d: %s", rc, err);
	printf("qmp_client: %s", out);
	assert_int_equal(st, 143);
	free(out);
	free(err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_usage_error_json),
		cmocka_unit_test(test_control_path_refused),
		cmocka_unit_test(test_qmp_errors),
		cmocka_unit_test(test_qmp_live),
		cmocka_unit_test(test_status_demo),
		cmocka_unit_test(test_status_interrupt),
		cmocka_unit_test(test_control_idle),
	};
	return cmocka_run_group_tests(tests, tu_setup_tmp, tu_teardown_tmp);
}
