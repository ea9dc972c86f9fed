/* SPDX-License-Identifier: MIT */
/*
 * CLI: QEMU's own offline analyser (scripts/analyze-migration.py, not part
 * of this repository) reads the streams hptmig writes for QEMU: a
 * `migrate --qemu-pure` file and a `rewrite` of a real QEMU stream. The
 * live sections must carry non-zero ids (QEMU's loader hands PART/END of a
 * section numbered 0 to another section). Runs only when
 * HPTMIG_QEMU_ANALYZER names the script and python3 runs; skipped otherwise.
 */
#include "testutil.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *analyzer(void)
{
	const char *a = getenv("HPTMIG_QEMU_ANALYZER");
	if (!a || !*a) {
		print_message("HPTMIG_QEMU_ANALYZER is not set (path of QEMU's "
			      "scripts/analyze-migration.py): skipped\n");
		return NULL;
	}
	if (tu_run("python3 --version", NULL, NULL) != 0) {
		print_message("python3 does not run: skipped\n");
		return NULL;
	}
	return a;
}

/*
 * Run QEMU's analyser on path (exit 0, JSON on stdout) and return the
 * section id of `name` in its output (keys "name (id)"), or -1 if absent.
 */
static long analyzer_section_id(const char *a, const char *path, const char *name, json_t **outj)
{
	char cmd[8192], *out = NULL, *err = NULL;
	snprintf(cmd, sizeof(cmd), "python3 '%s' -f '%s'", a, path);
	int rc = tu_run(cmd, &out, &err);
	if (rc != 0)
		print_error("QEMU's analyser failed (%d) on %s:\n%s\n", rc, path, err ? err : "");
	assert_int_equal(rc, 0);
	json_t *j = json_loads(out, 0, NULL);
	assert_non_null(j);
	free(out);
	free(err);
	long id = -1;
	const char *key;
	json_t *v;
	size_t nl = strlen(name);
	json_object_foreach(j, key, v) {
		if (strncmp(key, name, nl) == 0 && strncmp(key + nl, " (", 2) == 0)
			id = strtol(key + nl + 2, NULL, 10);
	}
	*outj = j;
	return id;
}

static void test_qemu_pure_file(void **state)
{
	(void)state;
	const char *a = analyzer();
	if (!a)
		skip();
	char *dir = tu_mkdtemp();
	char cmd[8192], path[4096], *out = NULL, *err = NULL;
	snprintf(path, sizeof(path), "%s/pure.mig", dir);
	snprintf(cmd, sizeof(cmd), "'%s' migrate 'file:%s' --qemu-pure --ram 256M --workload linux",
		 tu_bin(), path);
	assert_int_equal(tu_run(cmd, &out, &err), 0);
	free(out);
	free(err);
	json_t *j;
	long id = analyzer_section_id(a, path, "spapr/htab", &j);
	assert_true(id > 0); /* present, and not 0 */
	/* the device section was decoded through the vmdesc */
	json_t *sp = NULL;
	const char *key;
	json_t *v;
	json_object_foreach(j, key, v) {
		if (strncmp(key, "spapr (", 7) == 0)
			sp = v;
		assert_null(strstr(key, "hptmig/verify")); /* pure: no extension */
	}
	assert_non_null(sp);
	assert_non_null(json_object_get(json_object_get(sp, "tb"), "guest_timebase"));
	json_decref(j);
	tu_rmdir(dir);
	free(dir);
}

static void test_rewritten_fixture(void **state)
{
	(void)state;
	const char *a = analyzer();
	if (!a)
		skip();
	const char *fx = tu_fixture("pseries-qemu10-p8-2g-live.mig");
	if (!fx)
		skip();
	char *dir = tu_mkdtemp();
	char cmd[8192], path[4096], *out = NULL, *err = NULL;
	snprintf(path, sizeof(path), "%s/re.mig", dir);
	snprintf(cmd, sizeof(cmd), "'%s' rewrite '%s' '%s'", tu_bin(), fx, path);
	assert_int_equal(tu_run(cmd, &out, &err), 0);
	free(out);
	free(err);
	json_t *j;
	/* QEMU's numbering is kept: spapr/htab 559, and its FULL `timer` 0 */
	assert_int_equal(analyzer_section_id(a, path, "spapr/htab", &j), 559);
	assert_non_null(json_object_get(json_object_get(j, "timer (0)"), "cpu_ticks_offset"));
	json_decref(j);
	tu_rmdir(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_qemu_pure_file),
		cmocka_unit_test(test_rewritten_fixture),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
