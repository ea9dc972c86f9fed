/* SPDX-License-Identifier: MIT */
/*
 * CLI: `hptmig analyze` and `hptmig rewrite` on the built binary: JSON
 * fields, human output, --htab/--state/--desc, .zst input, exit statuses and
 * the one-line error contract, and rewrite's no-partial-output promise.
 */
#include "testutil.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../analyze/streamgen.h"

static int run(const char *args, char **out, char **err)
{
	char cmd[8192];
	snprintf(cmd, sizeof(cmd), "'%s' %s", tu_bin(), args);
	return tu_run(cmd, out, err);
}

static bool one_line(const char *s)
{
	const char *nl = strchr(s, '\n');
	return nl && nl[1] == 0;
}

static void test_synthetic(void **state)
{
	(void)state;
	char *dir = tu_mkdtemp();
	char path[4096], args[8192], *out, *err;
	struct sg s = {0};
	struct sg_basic o;
	sg_build_basic(&s, &o, SG_VMDESC_BASIC);
	snprintf(path, sizeof(path), "%s/basic.mig", dir);
	assert_int_equal(tu_write_file(path, s.p, s.len), 0);

	snprintf(args, sizeof(args), "analyze '%s' --json --htab --state --desc", path);
	assert_int_equal(run(args, &out, &err), 0);
	json_t *j = json_loads(out, 0, NULL);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "status")), "ok");
	assert_string_equal(json_string_value(json_object_get(j, "machine")), "pseries-test");
	json_t *h = json_object_get(j, "htab");
	assert_int_equal(json_integer_value(json_object_get(h, "valid")), 1);
	assert_int_equal(json_integer_value(json_object_get(json_array_get(json_object_get(h, "entries"), 0), "slot")), 8);
	assert_non_null(json_object_get(json_object_get(j, "state"), "dev (4)"));
	assert_non_null(json_object_get(json_object_get(j, "desc"), "devices"));
	json_decref(j);
	free(out);
	free(err);

	snprintf(args, sizeof(args), "analyze '%s' --htab --state", path);
	assert_int_equal(run(args, &out, &err), 0);
	assert_non_null(strstr(out, "machine: pseries-test"));
	assert_non_null(strstr(out, "htab: shift 18"));
	assert_non_null(strstr(out, "V=4000000123456715"));
	assert_non_null(strstr(out, "\"dev/sub\""));
	assert_non_null(strstr(out, "result: OK"));
	free(out);
	free(err);

	/* a corrupt footer: exit 1, one line naming section and offset */
	s.p[o.timer_footer + 4] ^= 1;
	assert_int_equal(tu_write_file(path, s.p, s.len), 0);
	snprintf(args, sizeof(args), "analyze '%s'", path);
	assert_int_equal(run(args, &out, &err), 1);
	assert_true(one_line(err));
	assert_non_null(strstr(err, "timer"));
	assert_non_null(strstr(err, "HM_E_FOOTER"));
	free(out);
	free(err);
	/* rewrite refuses it and leaves no OUT behind */
	snprintf(args, sizeof(args), "rewrite '%s' '%s/out.mig'", path, dir);
	assert_int_equal(run(args, &out, &err), 1);
	assert_true(one_line(err));
	char outp[4200];
	snprintf(outp, sizeof(outp), "%s/out.mig", dir);
	struct stat st;
	assert_int_not_equal(stat(outp, &st), 0);
	free(out);
	free(err);

	/* no vmdesc: walked in part, exit 1, says where it stopped */
	free(s.p);
	memset(&s, 0, sizeof(s));
	sg_build_basic(&s, &o, NULL);
	assert_int_equal(tu_write_file(path, s.p, s.len), 0);
	snprintf(args, sizeof(args), "analyze '%s' --json", path);
	assert_int_equal(run(args, &out, &err), 1);
	assert_true(one_line(err));
	assert_non_null(strstr(err, "stopped at byte offset"));
	j = json_loads(out, 0, NULL);
	assert_string_equal(json_string_value(json_object_get(j, "status")), "incomplete");
	assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "stopped"), "offset")), o.timer_rec);
	/* not ok, so an error too */
	json_t *je = json_object_get(j, "error");
	assert_non_null(je);
	assert_string_equal(json_string_value(json_object_get(je, "name")), "HM_E_UNSUPPORTED");
	assert_non_null(strstr(json_string_value(json_object_get(je, "message")), "walked only in part"));
	json_decref(j);
	free(out);
	free(err);

	/* usage errors */
	assert_int_equal(run("analyze", &out, &err), 2);
	free(out);
	free(err);
	assert_int_equal(run("analyze /nonexistent/x.mig", &out, &err), 1);
	assert_true(one_line(err));
	free(out);
	free(err);
	assert_int_equal(run("rewrite onlyone", &out, &err), 2);
	free(out);
	free(err);
	assert_int_equal(run("analyze --help", &out, &err), 0);
	assert_non_null(strstr(out, "--state"));
	free(out);
	free(err);
	free(s.p);
	tu_rmdir(dir);
	free(dir);
}

static void test_fixture_rewrite(void **state)
{
	(void)state;
	const char *fx = tu_fixture("pseries-qemu10-p8-2g-live.mig");
	if (!fx)
		skip();
	char *dir = tu_mkdtemp();
	char args[8192], *out, *err;
	snprintf(args, sizeof(args), "rewrite '%s/fixtures/qemu/pseries-qemu10-p8-2g-live.mig.zst' '%s/re.mig' --json",
		 tu_shared_dir(), dir);
	assert_int_equal(run(args, &out, &err), 0);
	json_t *j = json_loads(out, 0, NULL);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "digest")),
			    "9f011b6a3861a227e39a8bd87e4e50d73c82166763a259ed503aa7c4aca1a1a4");
	assert_int_equal(json_integer_value(json_object_get(j, "htab_records_in")), 10);
	assert_int_equal(json_integer_value(json_object_get(j, "htab_records_out")), 2);
	json_decref(j);
	free(out);
	free(err);
	snprintf(args, sizeof(args), "analyze '%s/re.mig' --json", dir);
	assert_int_equal(run(args, &out, &err), 0);
	j = json_loads(out, 0, NULL);
	json_t *h = json_object_get(j, "htab");
	assert_string_equal(json_string_value(json_object_get(h, "digest")),
			    "9f011b6a3861a227e39a8bd87e4e50d73c82166763a259ed503aa7c4aca1a1a4");
	assert_int_equal(json_integer_value(json_object_get(h, "valid")), 33598);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "ram"), "data_pages")), 20288);
	assert_string_equal(json_string_value(json_object_get(j, "machine")), "pseries-10.0");
	json_decref(j);
	free(out);
	free(err);
	tu_rmdir(dir);
	free(dir);
}

/* Our own streams: `hptmig save` writes one (with hptmig/verify); analyze
 * must walk it and find the sender's digest equal to the replayed table's. */
static void test_own_stream(void **state)
{
	(void)state;
	char *dir = tu_mkdtemp();
	char args[8192], *out, *err;
	snprintf(args, sizeof(args), "save '%s/own.mig' --ram 512M --workload linux --seed 7", dir);
	int rc = run(args, &out, &err);
	free(out);
	free(err);
	if (rc != 0) {
		tu_rmdir(dir);
		free(dir);
		print_message("hptmig save is not available (status %d): skipped\n", rc);
		skip();
	}
	snprintf(args, sizeof(args), "analyze '%s/own.mig' --json", dir);
	assert_int_equal(run(args, &out, &err), 0);
	json_t *j = json_loads(out, 0, NULL);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "status")), "ok");
	json_t *v = json_object_get(j, "verify");
	assert_non_null(v);
	assert_true(json_is_true(json_object_get(v, "match")));
	/* version 2: the sender's block root, equal to the replayed table's */
	assert_int_equal(json_integer_value(json_object_get(v, "version")), 2);
	assert_non_null(json_string_value(json_object_get(json_object_get(j, "htab"), "root")));
	assert_string_equal(json_string_value(json_object_get(v, "root")),
			    json_string_value(json_object_get(json_object_get(j, "htab"), "root")));
	json_decref(j);
	free(out);
	free(err);
	tu_rmdir(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_synthetic),
		cmocka_unit_test(test_fixture_rewrite),
		cmocka_unit_test(test_own_stream),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
