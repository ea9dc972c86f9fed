/* SPDX-License-Identifier: MIT */
/*
 * The loader on the real QEMU streams of ../shared/fixtures/qemu/: every
 * spapr/htab record (found by the test-only walker qemu_walk.c) is replayed
 * in stream order, and the result must give the facts measured in that
 * folder's README (shift, chunks, valid and invalid sent, final valid,
 * bolted, digest). Each test skips when ../shared is absent. A re-encoded
 * table must also load back to the same digest.
 */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

#include "hptmig/htab.h"
#include "qemu_walk.h"

struct fact {
	const char *file;
	bool no_hpt;
	unsigned shift;
	uint64_t records, chunks, valid_sent, invalid_sent, valid, bolted;
	const char *digest;
};

static int on_htab(void *opaque, int type, mig_file_t *f)
{
	int rc = htab_loader_load(opaque, f, type);
	const hm_error_t *e = mig_file_error(f);
	if (rc && e)
		print_error("load: %s (offset %lld)\n", e->msg, (long long)e->offset);
	return rc;
}

static void check_fixture(const struct fact *x)
{
	const char *path = tu_fixture(x->file);
	if (!path)
		skip();
	uint8_t *buf;
	size_t len;
	assert_int_equal(tu_read_file(path, &buf, &len), 0);
	htab_loader_t *l;
	assert_int_equal(htab_loader_create(NULL, NULL, &l), 0);
	hm_error_t e;
	hm_error_clear(&e);
	struct qw_stats ws;
	int rc = qw_walk(buf, len, on_htab, l, &ws, &e);
	if (rc)
		fail_msg("%s: %s (offset %lld)", x->file, e.msg, (long long)e.offset);
	free(buf);
	htab_load_stats_t st;
	htab_loader_get_stats(l, &st);
	assert_int_equal(ws.htab_records, x->records);
	assert_int_equal(st.records, x->records);
	assert_int_equal(st.chunks, x->chunks);
	assert_int_equal(st.valid_sent, x->valid_sent);
	assert_int_equal(st.invalid_sent, x->invalid_sent);
	htab_summary_t sum;
	assert_int_equal(htab_loader_summary(l, &sum, &e), 0);
	assert_int_equal(sum.no_hpt, x->no_hpt);
	if (!x->no_hpt)
		assert_int_equal(sum.shift, x->shift);
	assert_int_equal(sum.valid, x->valid);
	assert_int_equal(sum.bolted, x->bolted);
	char hex[65];
	hm_hex(sum.digest, 32, hex);
	assert_string_equal(hex, x->digest);

	/* Canonical re-encoding loads back to the same table. */
	hpt_t *t = htab_loader_table(l);
	mig_file_t *w;
	assert_int_equal(mig_file_open_mem_writer(0, &w), 0);
	assert_int_equal(htab_encode_start(t, w), 0);
	size_t slen, elen;
	mig_file_mem_data(w, &slen);
	assert_int_equal(htab_encode_table(t, w), 0);
	const uint8_t *p = mig_file_mem_data(w, &elen);
	htab_loader_t *l2;
	assert_int_equal(htab_loader_create(NULL, NULL, &l2), 0);
	assert_int_equal(htab_loader_load_buffer(l2, p, slen, QEMU_VM_SECTION_START, &e), 0);
	assert_int_equal(htab_loader_load_buffer(l2, p + slen, elen - slen, QEMU_VM_SECTION_END, &e), 0);
	htab_summary_t s2;
	assert_int_equal(htab_loader_summary(l2, &s2, &e), 0);
	assert_memory_equal(s2.digest, sum.digest, 32);
	htab_loader_get_stats(l2, &st);
	assert_int_equal(st.valid_sent, x->valid);
	assert_int_equal(st.invalid_sent, 0);
	htab_loader_destroy(l2);
	mig_file_close(w, NULL);
	htab_loader_destroy(l);
}

static void test_qemu72_1g(void **state)
{
	(void)state;
	static const struct fact x = {
		"pseries-qemu72-p8-1g.mig", false, 23, 2, 16874, 17094, 0, 17094, 16400,
		"bd0a5c0da6f5ccc7e5900a3828d5f4242c81c9621c7c9794f3e86cf9f05fd5b5"
	};
	check_fixture(&x);
}

static void test_qemu10_2g_live(void **state)
{
	(void)state;
	static const struct fact x = {
		"pseries-qemu10-p8-2g-live.mig", false, 24, 10, 33225, 33625, 23, 33598, 32800,
		"9f011b6a3861a227e39a8bd87e4e50d73c82166763a259ed503aa7c4aca1a1a4"
	};
	check_fixture(&x);
}

static void test_qemu10_radix(void **state)
{
	(void)state;
	static const struct fact x = {
		"pseries-qemu10-p9radix-1g.mig", true, 0, 2, 0, 0, 0, 0, 0,
		"ad95131bc0b799c0b1af477fb14fcf26a6a9f76079e48bf090acb7e8367bfd0e"
	};
	check_fixture(&x);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_qemu72_1g),
		cmocka_unit_test(test_qemu10_2g_live),
		cmocka_unit_test(test_qemu10_radix),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
