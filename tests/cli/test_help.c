/* SPDX-License-Identifier: MIT */
/* CLI: the hptmig command's own contract (help, version, unknown commands). */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void test_help_and_errors(void **state)
{
	(void)state;
	char cmd[4096], *out, *err;
	snprintf(cmd, sizeof(cmd), "'%s' --help", tu_bin());
	assert_int_equal(tu_run(cmd, &out, &err), 0);
	assert_non_null(strstr(out, "usage: hptmig"));
	free(out);
	free(err);
	snprintf(cmd, sizeof(cmd), "'%s'", tu_bin());
	assert_int_equal(tu_run(cmd, &out, &err), 2);
	free(out);
	free(err);
	snprintf(cmd, sizeof(cmd), "'%s' frobnicate", tu_bin());
	assert_int_equal(tu_run(cmd, &out, &err), 2);
	assert_non_null(strstr(err, "hptmig: frobnicate: unknown command"));
	/* exactly one line on stderr */
	assert_int_equal(strchr(err, '\n') - err + 1, (long)strlen(err));
	free(out);
	free(err);
	snprintf(cmd, sizeof(cmd), "'%s' bench no-such-bench", tu_bin());
	assert_int_equal(tu_run(cmd, &out, &err), 2);
	free(out);
	free(err);
	snprintf(cmd, sizeof(cmd), "'%s' --version", tu_bin());
	assert_int_equal(tu_run(cmd, &out, &err), 0);
	assert_non_null(strstr(out, "hptmig "));
	free(out);
	free(err);
}

/* The waits and caps added against hostile peers take only sane values:
 * each bad one is a usage error (exit 2) in one line naming the option,
 * before anything listens, connects or reads. */
static void test_bad_limit_values(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"incoming unix:/nonexistent/x --deadline abc",
		"incoming unix:/nonexistent/x --deadline -1",
		"incoming unix:/nonexistent/x --idle-timeout 0",
		"incoming unix:/nonexistent/x --probe-timeout 0.0001",
		"incoming unix:/nonexistent/x --idle-timeout 99999999",
		"incoming unix:/nonexistent/x --max-strays 0",
		"incoming unix:/nonexistent/x --max-strays 9999999999",
		"incoming unix:/nonexistent/x --max-htab-shift 17",
		"incoming unix:/nonexistent/x --max-htab-shift 37",
		"incoming unix:/nonexistent/x --ram 1K",
		"migrate unix:/nonexistent/x --resume-timeout 0",
		"migrate unix:/nonexistent/x --resume-timeout 4000",
		"analyze /dev/null --max-input 0",
		"analyze /dev/null --max-input 17G",
		"rewrite /dev/null /dev/null --max-input x",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char cmd[4096], *out, *err;
		snprintf(cmd, sizeof(cmd), "'%s' %s", tu_bin(), bad[i]);
		int rc = tu_run(cmd, &out, &err);
		if (rc != 2)
			fprintf(stderr, "%s -> %d: %s", bad[i], rc, err);
		assert_int_equal(rc, 2);
		assert_int_equal(strchr(err, '\n') - err + 1, (long)strlen(err));
		const char *opt = strstr(bad[i], "--");
		char name[32];
		snprintf(name, sizeof(name), "%.*s", (int)strcspn(opt, " "), opt);
		if (!strstr(err, name))
			fprintf(stderr, "%s: the error does not name %s: %s", bad[i], name, err);
		assert_non_null(strstr(err, name));
		free(out);
		free(err);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {cmocka_unit_test(test_help_and_errors),
					    cmocka_unit_test(test_bad_limit_values)};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
