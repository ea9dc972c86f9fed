/* SPDX-License-Identifier: MIT */
/*
 * CLI: the small parts of the command's contract a new user meets first:
 * `help [COMMAND]`, `-V`/`--version`, `bench NAME --help` for every
 * benchmark, decimal sizes, and --ram out of bounds as a usage error (exit
 * 2, one line in bytes) before anything listens or connects.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Runs `hptmig ARGS`; returns the exit status, out/err to free. */
static int run(const char *args, char **out, char **err)
{
	char cmd[4096];
	snprintf(cmd, sizeof(cmd), "'%s' %s", tu_bin(), args);
	return tu_run(cmd, out, err);
}

static bool one_line(const char *s)
{
	const char *nl = strchr(s, '\n');
	return nl && nl[1] == '\0';
}

static void test_help_command(void **state)
{
	(void)state;
	char *out, *err, *out2, *err2;
	assert_int_equal(run("help", &out, &err), 0);
	assert_non_null(strstr(out, "usage: hptmig COMMAND"));
	assert_non_null(strstr(out, "help"));
	free(out);
	free(err);
	/* help COMMAND is exactly COMMAND --help */
	static const char *const cmds[] = {"migrate", "incoming", "demo", "analyze", "proxy"};
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		char a[64], b[64];
		snprintf(a, sizeof(a), "help %s", cmds[i]);
		snprintf(b, sizeof(b), "%s --help", cmds[i]);
		assert_int_equal(run(a, &out, &err), 0);
		assert_int_equal(run(b, &out2, &err2), 0);
		assert_non_null(strstr(out, "usage: hptmig"));
		assert_string_equal(out, out2);
		free(out);
		free(err);
		free(out2);
		free(err2);
	}
	assert_int_equal(run("help bench", &out, &err), 0);
	assert_non_null(strstr(out, "migrate"));
	free(out);
	free(err);
	assert_int_equal(run("help frobnicate", &out, &err), 2);
	assert_true(one_line(err));
	assert_non_null(strstr(err, "frobnicate"));
	free(out);
	free(err);
}

static void test_version(void **state)
{
	(void)state;
	char *out, *err, *out2, *err2;
	assert_int_equal(run("-V", &out, &err), 0);
	assert_int_equal(run("--version", &out2, &err2), 0);
	assert_string_equal(out, out2);
	assert_true(one_line(out));
	/* "hptmig MAJOR.MINOR.PATCH" then, in a git checkout, "(git ...)" */
	unsigned a, b, c;
	assert_int_equal(sscanf(out, "hptmig %u.%u.%u", &a, &b, &c), 3);
	free(out);
	free(err);
	free(out2);
	free(err2);
}

/* Every benchmark answers --help (and -h, anywhere after its name) with
 * its synopsis on stdout, exit 0, without running. */
static void test_bench_help(void **state)
{
	(void)state;
	char *list, *err;
	assert_int_equal(run("bench --list", &list, &err), 0);
	free(err);
	int n = 0;
	char *names = strstr(list, "benchmarks:\n");
	assert_non_null(names);
	for (char *line = strtok(names, "\n"); line; line = strtok(NULL, "\n")) {
		char name[64];
		if (strncmp(line, "  ", 2) != 0 || sscanf(line, "%63s", name) != 1)
			continue;
		char args[128], *out, *e;
		snprintf(args, sizeof(args), "bench %s --help", name);
		int rc = run(args, &out, &e);
		if (rc != 0)
			fprintf(stderr, "%s -> %d: %s", args, rc, e);
		assert_int_equal(rc, 0);
		char want[96];
		snprintf(want, sizeof(want), "usage: hptmig bench %s", name);
		assert_non_null(strstr(out, want));
		free(out);
		free(e);
		snprintf(args, sizeof(args), "bench %s --json -h", name);
		assert_int_equal(run(args, &out, &e), 0);
		assert_non_null(strstr(out, want));
		free(out);
		free(e);
		n++;
	}
	free(list);
	assert_true(n >= 9);
}

/* --ram beyond what a guest can be is a usage error in bytes, for every
 * command that takes it, before anything listens or connects. */
static void test_ram_bounds(void **state)
{
	(void)state;
	static const char *const cmds[] = {
		"demo --ram 128T",
		"migrate unix:/nonexistent/x --ram 128T",
		"incoming unix:/nonexistent/x --ram 128T",
	};
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		char *out, *err;
		int rc = run(cmds[i], &out, &err);
		if (rc != 2)
			fprintf(stderr, "%s -> %d: %s", cmds[i], rc, err);
		assert_int_equal(rc, 2);
		assert_true(one_line(err));
		assert_non_null(strstr(err, "--ram 128T: 140737488355328 bytes"));
		assert_non_null(strstr(err, "8796093022208 bytes (8 TiB)"));
		assert_null(strstr(err, "shift"));
		free(out);
		free(err);
	}
	char *out, *err;
	assert_int_equal(run("demo --ram 16M", &out, &err), 2);
	assert_true(one_line(err));
	assert_non_null(strstr(err, "16777216 bytes"));
	free(out);
	free(err);
	/* 8 TiB itself is allowed: the parse accepts it, and the destination
	 * then fails at run time to listen on a path that cannot exist. */
	assert_int_equal(run("incoming unix:/nonexistent/x --ram 8T", &out, &err), 1);
	assert_null(strstr(err, "--ram"));
	free(out);
	free(err);
}

/* Decimal sizes reach the options: "1.5G" is 1.5 GiB in the JSON result;
 * garbage is a usage error naming the option. */
static void test_decimal_sizes(void **state)
{
	(void)state;
	char *out, *err;
	int rc = run("demo --ram 1.5G --rate 0 --run 0 --json", &out, &err);
	if (rc != 0)
		fprintf(stderr, "demo --ram 1.5G -> %d: %s", rc, err);
	assert_int_equal(rc, 0);
	assert_non_null(strstr(out, "\"ram\":1610612736"));
	free(out);
	free(err);
	static const char *const bad[] = {"demo --ram 1.5", "demo --ram 1.G", "demo --ram .5G",
					  "demo --ram 1,5G", "demo --max-bandwidth 1.5.1M"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		rc = run(bad[i], &out, &err);
		assert_int_equal(rc, 2);
		assert_true(one_line(err));
		assert_non_null(strstr(err, "bad value"));
		free(out);
		free(err);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_help_command), cmocka_unit_test(test_version),
		cmocka_unit_test(test_bench_help),   cmocka_unit_test(test_ram_bounds),
		cmocka_unit_test(test_decimal_sizes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
