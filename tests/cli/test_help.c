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

int main(void)
{
	const struct CMUnitTest tests[] = {cmocka_unit_test(test_help_and_errors)};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
