/* SPDX-License-Identifier: MIT */
/*
 * CLI: `hptmig demo` migrates a simulated guest to a destination on
 * loopback in one command; its JSON holds both reports, each with its own
 * digest, and they agree. Over unix and tcp.
 */
#include "test_migrate_util.h"

static void check_demo(const char *opts)
{
	char cmd[4096], *out = NULL, *err = NULL;
	snprintf(cmd, sizeof(cmd), "'%s' demo --json %s", tu_bin(), opts);
	int rc = tu_run(cmd, &out, &err);
	if (rc != 0)
		fail_msg("demo rc %d: %s", rc, err);
	json_t *o = json_of(out);
	assert_string_equal(jstr(o, "status"), "ok");
	assert_true(jbool(o, "digests_equal"));
	json_t *s = json_object_get(o, "source");
	json_t *d = json_object_get(o, "destination");
	assert_non_null(s);
	assert_non_null(d);
	/* each side computed its own root; they are equal (the destination's
	 * flat digest only with --digest) */
	assert_string_equal(jstr(s, "htab.root"), jstr(d, "htab.root"));
	assert_string_equal(jstr(s, "htab.destination_root"), jstr(d, "htab.root"));
	assert_true(json_is_null(json_object_get(json_object_get(d, "htab"), "digest")));
	assert_int_equal((int64_t)jnum(s, "bytes_total"), (int64_t)jnum(d, "bytes_total"));
	assert_int_equal((int64_t)jnum(s, "htab.entries_sent"), (int64_t)jnum(d, "htab.entries_sent"));
	assert_true(jnum(s, "iterations") >= 1);
	assert_true(jbool(d, "verified"));
	assert_true(jbool(d, "resumed"));
	assert_true(jnum(d, "guest.hcalls") > 0);
	json_decref(o);
	free(out);
	free(err);
}

static void test_demo_unix(void **state)
{
	(void)state;
	check_demo("--htab-shift 20 --vcpus 2 --run 0.2");
}

static void test_demo_tcp(void **state)
{
	(void)state;
	check_demo("--transport tcp --ram 512M --workload uniform --run 0.1");
}

static void test_demo_human(void **state)
{
	(void)state;
	char cmd[4096], *out = NULL, *err = NULL;
	snprintf(cmd, sizeof(cmd), "'%s' demo --htab-shift 19 --run 0.1", tu_bin());
	assert_int_equal(tu_run(cmd, &out, &err), 0);
	/* what a person wants to see: passes, entries, downtime vs limit, digests */
	assert_non_null(strstr(out, "pass"));
	assert_non_null(strstr(out, "entries"));
	assert_non_null(strstr(out, "limit"));
	assert_non_null(strstr(out, "roots equal"));
	/* not a terminal: no progress line */
	assert_null(strchr(out, '\r'));
	free(out);
	free(err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_demo_unix),
		cmocka_unit_test(test_demo_tcp),
		cmocka_unit_test(test_demo_human),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
