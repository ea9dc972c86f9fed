/* SPDX-License-Identifier: MIT */
/*
 * CLI: `hptmig analyze` reports spapr/htab anomalies (what QEMU accepts but
 * never writes) as warnings on stderr and under "anomalies" in --json, and
 * --strict turns any into exit status 3; a stream hptmig wrote has none.
 * A walk that fails mid-stream prints no digest as a result.
 */
#include "testutil.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hptmig/hpt.h"
#include "../analyze/streamgen.h"

static int run(const char *args, char **out, char **err)
{
	char cmd[8192];
	snprintf(cmd, sizeof(cmd), "'%s' %s", tu_bin(), args);
	return tu_run(cmd, out, err);
}

static size_t lines(const char *s)
{
	size_t n = 0;
	for (; *s; s++)
		n += *s == '\n';
	return n;
}

/* spapr/htab (shift 18) with one END record: a good entry in slot 8*g,
 * then the same slot again in the same pass (overlap), then an entry
 * without its valid bit inside a valid run. cut: stop inside the record. */
static void build(struct sg *s, bool cut)
{
	uint64_t vsid = 0x111, ea = 0x5000;
	uint64_t v = hpt_mapping_v(HPT_SEG_256M, vsid, ea, false, false), r = (0x1234ull << 12) | 0x190;
	uint64_t slot = hpt_pteg_index(18, HPT_SEG_256M, vsid, ea, 12, false) * 8;
	sg_header(s);
	sg_config(s, "pseries-test");
	sg_start(s, 0x01, 2, "spapr/htab", 0, 1);
	sg_be32(s, 18);
	sg_footer(s, 2);
	sg_part(s, 0x03, 2);
	sg_be32(s, 0);
	sg_be32(s, (uint32_t)slot);
	sg_be16(s, 2);
	sg_be16(s, 0);
	sg_hpte(s, v, r);
	sg_hpte(s, v & ~1ull, r); /* no valid bit */
	sg_be32(s, (uint32_t)slot);
	sg_be16(s, 1);
	sg_be16(s, 0);
	sg_hpte(s, v, r);
	if (cut)
		return;
	sg_be32(s, 0);
	sg_be32(s, 0);
	sg_footer(s, 2);
	sg_u8(s, 0);
}

static void test_anomalous_stream(void **state)
{
	(void)state;
	char *dir = tu_mkdtemp();
	char path[4096], args[8192], *out, *err;
	struct sg s = {0};
	build(&s, false);
	snprintf(path, sizeof(path), "%s/anom.mig", dir);
	assert_int_equal(tu_write_file(path, s.p, s.len), 0);
	free(s.p);

	/* default: exit 0, one warning per anomaly on stderr */
	snprintf(args, sizeof(args), "analyze '%s'", path);
	assert_int_equal(run(args, &out, &err), 0);
	assert_int_equal(lines(err), 2);
	assert_non_null(strstr(err, "hptmig: analyze: warning: "));
	assert_non_null(strstr(err, "invalid_in_valid_run anomaly: "));
	assert_non_null(strstr(err, "overlap anomaly: "));
	assert_non_null(strstr(out, "anomalies: 2 ( invalid_in_valid_run 1, check_failure 0, overlap 1)"));
	assert_non_null(strstr(out, "result: OK"));
	free(out);
	free(err);

	/* --strict: exit 3, the warnings then one line saying why */
	snprintf(args, sizeof(args), "analyze '%s' --strict", path);
	assert_int_equal(run(args, &out, &err), 3);
	assert_int_equal(lines(err), 3);
	const char *last = strrchr(err, '\n');
	while (last > err && last[-1] != '\n')
		last--;
	assert_non_null(strstr(last, "--strict: 2 anomalies"));
	free(out);
	free(err);

	/* --json: counts and the first ones with offsets */
	snprintf(args, sizeof(args), "analyze '%s' --json --strict", path);
	assert_int_equal(run(args, &out, &err), 3);
	json_t *j = json_loads(out, 0, NULL);
	assert_non_null(j);
	json_t *a = json_object_get(j, "anomalies");
	assert_int_equal(json_integer_value(json_object_get(a, "total")), 2);
	assert_int_equal(json_integer_value(json_object_get(a, "invalid_in_valid_run")), 1);
	assert_int_equal(json_integer_value(json_object_get(a, "overlap")), 1);
	assert_int_equal(json_integer_value(json_object_get(a, "check_failure")), 0);
	json_t *f = json_object_get(a, "first");
	assert_int_equal(json_array_size(f), 2);
	assert_true(json_integer_value(json_object_get(json_array_get(f, 0), "offset")) > 0);
	assert_true(json_is_string(json_object_get(json_object_get(j, "htab"), "digest")));
	json_decref(j);
	free(out);
	free(err);
	tu_rmdir(dir);
	free(dir);
}

/* Cut inside the END record: exit 1, one line, no digest as a result. */
static void test_partial_walk(void **state)
{
	(void)state;
	char *dir = tu_mkdtemp();
	char path[4096], args[8192], *out, *err;
	struct sg s = {0};
	build(&s, true);
	snprintf(path, sizeof(path), "%s/cut.mig", dir);
	assert_int_equal(tu_write_file(path, s.p, s.len), 0);
	free(s.p);
	snprintf(args, sizeof(args), "analyze '%s' --strict", path);
	assert_int_equal(run(args, &out, &err), 1);
	assert_int_equal(lines(err), 1);
	assert_null(strstr(out, "digest: 0000"));
	assert_non_null(strstr(out, "final table and digest: none"));
	free(out);
	free(err);
	snprintf(args, sizeof(args), "analyze '%s' --json", path);
	assert_int_equal(run(args, &out, &err), 1);
	json_t *j = json_loads(out, 0, NULL);
	assert_non_null(j);
	assert_true(json_is_null(json_object_get(json_object_get(j, "htab"), "digest")));
	assert_string_equal(json_string_value(json_object_get(j, "status")), "error");
	json_decref(j);
	free(out);
	free(err);
	tu_rmdir(dir);
	free(dir);
}

/* What hptmig writes (a churning guest, several passes) has no anomaly. */
static void test_own_stream_clean(void **state)
{
	(void)state;
	char *dir = tu_mkdtemp();
	char args[8192], *out, *err;
	snprintf(args, sizeof(args),
		 "migrate 'file:%s/own.mig' --qemu-pure --ram 512M --workload linux --vcpus 2 --rate 50000 "
		 "--max-bandwidth 4M --downtime-limit 5",
		 dir);
	assert_int_equal(run(args, &out, &err), 0);
	free(out);
	free(err);
	snprintf(args, sizeof(args), "analyze '%s/own.mig' --json --strict", dir);
	assert_int_equal(run(args, &out, &err), 0);
	assert_string_equal(err, "");
	json_t *j = json_loads(out, 0, NULL);
	assert_non_null(j);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "anomalies"), "total")), 0);
	json_t *h = json_object_get(j, "htab");
	print_message("own stream: %lld spapr/htab records\n",
		      (long long)json_integer_value(json_object_get(h, "records")));
	assert_true(json_integer_value(json_object_get(h, "records")) >= 3);
	json_decref(j);
	free(out);
	free(err);
	tu_rmdir(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_anomalous_stream),
		cmocka_unit_test(test_partial_walk),
		cmocka_unit_test(test_own_stream_clean),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
