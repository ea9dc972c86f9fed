/* SPDX-License-Identifier: MIT */
/*
 * CLI: `hptmig incoming` faced with a real QEMU stream (the fixtures of
 * ../shared, decompressed here) or with QEMU's device sections refuses it
 * with one line that says it loads hptmig's simulated guest only and points
 * to `hptmig proxy` and `hptmig analyze`; with --json the same in the
 * error fields. Skipped where ../shared is absent (the synthetic case runs).
 */
#include "testutil.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool one_line(const char *s)
{
	const char *nl = strchr(s, '\n');
	return nl && nl[1] == 0;
}

static void expect_refusal(const char *path, const char *section, long long offset)
{
	char cmd[8192], *out = NULL, *err = NULL, want[300];
	snprintf(want, sizeof(want), "section '%s' instance 0", section);
	/* text: exit 1, one line on stderr, nothing on stdout */
	snprintf(cmd, sizeof(cmd), "'%s' incoming 'file:%s' --accept-timeout 10", tu_bin(), path);
	assert_int_equal(tu_run(cmd, &out, &err), 1);
	assert_true(one_line(err));
	assert_non_null(strstr(err, want));
	assert_non_null(strstr(err, "hptmig's simulated guest"));
	assert_non_null(strstr(err, "'hptmig proxy'"));
	assert_non_null(strstr(err, "'hptmig analyze'"));
	assert_non_null(strstr(err, "[HM_E_UNKNOWN]"));
	assert_string_equal(out, "");
	free(out);
	free(err);
	/* --json: the same in status/error fields, still one line on stderr */
	snprintf(cmd, sizeof(cmd), "'%s' incoming 'file:%s' --accept-timeout 10 --json", tu_bin(), path);
	assert_int_equal(tu_run(cmd, &out, &err), 1);
	assert_true(one_line(err));
	json_t *j = json_loads(out, 0, NULL);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "status")), "failed");
	assert_string_equal(json_string_value(json_object_get(j, "error_code")), "HM_E_UNKNOWN");
	const char *m = json_string_value(json_object_get(j, "error"));
	assert_non_null(m);
	assert_non_null(strstr(m, want));
	assert_non_null(strstr(m, "'hptmig proxy'"));
	assert_non_null(strstr(m, "'hptmig analyze'"));
	assert_int_equal(json_integer_value(json_object_get(j, "error_offset")), offset);
	assert_false(json_is_true(json_object_get(j, "resumed")));
	json_decref(j);
	free(out);
	free(err);
}

/* Each real QEMU stream starts its records with `ram`'s START right after
 * the configuration record ("pseries-10.0" or "pseries-7.2"). */
static void test_real_qemu_streams(void **state)
{
	(void)state;
	static const struct {
		const char *name;
		long long ram_at;
	} fx[] = {
		{ "pseries-qemu10-p8-2g-live.mig", 25 },
		{ "pseries-qemu10-p9radix-1g.mig", 25 },
		{ "pseries-qemu72-p8-1g.mig", 24 },
	};
	for (size_t i = 0; i < sizeof(fx) / sizeof(fx[0]); i++) {
		const char *p = tu_fixture(fx[i].name);
		if (!p) {
			print_message("%s: ../shared fixtures absent: skipped\n", fx[i].name);
			skip();
		}
		expect_refusal(p, "ram", fx[i].ram_at);
	}
}

/* QEMU's device set without `ram`: its first FULL section (`timer`, id 0)
 * is refused the same way, at that record. */
static void test_qemu_device_section(void **state)
{
	(void)state;
	static const uint8_t b[] = {
		'Q', 'E', 'V', 'M', 0, 0, 0, 3,
		0x07, 0, 0, 0, 12, 'p', 's', 'e', 'r', 'i', 'e', 's', '-', '1', '0', '.', '0',
		0x04, 0, 0, 0, 0, 5, 't', 'i', 'm', 'e', 'r', 0, 0, 0, 0, 0, 0, 0, 2, /* 25: FULL */
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
		0x7e, 0, 0, 0, 0, 0x00,
	};
	char *dir = tu_mkdtemp();
	char path[4096];
	snprintf(path, sizeof(path), "%s/timer.mig", dir);
	assert_int_equal(tu_write_file(path, b, sizeof(b)), 0);
	expect_refusal(path, "timer", 25);
	tu_rmdir(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_qemu_device_section),
		cmocka_unit_test(test_real_qemu_streams),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
