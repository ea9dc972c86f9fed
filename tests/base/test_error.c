/* SPDX-License-Identifier: MIT */
/* Tests of the error object, code names, size parsing and SHA-256. */
#include "testutil.h"

#include <errno.h>
#include <string.h>

static void test_first_error_wins(void **state)
{
	(void)state;
	hm_error_t e;
	char line[800];
	hm_error_clear(&e);
	assert_int_equal(e.code, 0);
	assert_int_equal(hm_error_set(&e, HM_E_FORMAT, 42, "field '%s' is %d", "x", 7), HM_E_FORMAT);
	assert_int_equal(hm_error_set(&e, HM_E_TRUNCATED, 50, "later"), HM_E_TRUNCATED);
	assert_int_equal(e.code, HM_E_FORMAT);
	assert_int_equal(e.offset, 42);
	hm_error_prefix(&e, "section '%s': ", "spapr");
	assert_string_equal(e.msg, "section 'spapr': field 'x' is 7");
	hm_error_line(&e, line, sizeof(line));
	assert_string_equal(line, "section 'spapr': field 'x' is 7 (at byte offset 42) [HM_E_FORMAT]");
	assert_int_equal(hm_error_set(NULL, -EIO, -1, "ignored"), -EIO);
}

static void test_names(void **state)
{
	(void)state;
	assert_string_equal(hm_err_name(HM_E_FOOTER), "HM_E_FOOTER");
	assert_string_equal(hm_err_name(-EPIPE), "EPIPE");
	assert_string_equal(hm_err_name(-99999), "HM_E_OTHER");
	assert_non_null(hm_err_str(-EIO));
}

static void test_parse_size(void **state)
{
	(void)state;
	uint64_t v;
	assert_int_equal(hm_parse_size("4G", &v), 0);
	assert_true(v == (UINT64_C(4) << 30));
	assert_int_equal(hm_parse_size("512m", &v), 0);
	assert_true(v == (UINT64_C(512) << 20));
	assert_int_equal(hm_parse_size("1TiB", &v), 0);
	assert_true(v == (UINT64_C(1) << 40));
	assert_int_equal(hm_parse_size("100", &v), 0);
	assert_true(v == 100);
	assert_int_equal(hm_parse_size("", &v), HM_E_FORMAT);
	assert_int_equal(hm_parse_size("-1", &v), HM_E_FORMAT);
	assert_int_equal(hm_parse_size("4X", &v), HM_E_FORMAT);
	assert_int_equal(hm_parse_size("99999999999999999999", &v), HM_E_RANGE);
	assert_int_equal(hm_parse_size("16777216T", &v), HM_E_RANGE);
	/* Decimal fractions: exact, rounded down to a whole byte. */
	assert_int_equal(hm_parse_size("1.5G", &v), 0);
	assert_true(v == UINT64_C(1610612736));
	assert_int_equal(hm_parse_size("0.5k", &v), 0);
	assert_true(v == 512);
	assert_int_equal(hm_parse_size("0.1K", &v), 0); /* 102.4 */
	assert_true(v == 102);
	assert_int_equal(hm_parse_size("2.25MiB", &v), 0);
	assert_true(v == (UINT64_C(9) << 18));
	assert_int_equal(hm_parse_size("0.000000001T", &v), 0); /* 1099.511627776 */
	assert_true(v == 1099);
	assert_int_equal(hm_parse_size("1.999999999G", &v), 0); /* 2147483646.926 */
	assert_true(v == UINT64_C(2147483646));
	assert_int_equal(hm_parse_size("16777215.999999999T", &v), 0);
	assert_true(v == UINT64_MAX - 1099); /* 2^64 - 1099.51 rounded down */
	assert_int_equal(hm_parse_size("16777216.0T", &v), HM_E_RANGE);
	assert_int_equal(hm_parse_size("1.5", &v), HM_E_FORMAT);
	assert_int_equal(hm_parse_size("1.G", &v), HM_E_FORMAT);
	assert_int_equal(hm_parse_size(".5G", &v), HM_E_FORMAT);
	assert_int_equal(hm_parse_size("1.5.5G", &v), HM_E_FORMAT);
	assert_int_equal(hm_parse_size("1,5G", &v), HM_E_FORMAT);
	assert_int_equal(hm_parse_size("1.0000000001G", &v), HM_E_FORMAT);
	assert_int_equal(hm_parse_size("1.5 G", &v), HM_E_FORMAT);
	assert_int_equal(hm_parse_size("1e3K", &v), HM_E_FORMAT);
	assert_int_equal(hm_parse_u64("0x10", 100, &v), 0);
	assert_true(v == 16);
	assert_int_equal(hm_parse_u64("101", 100, &v), HM_E_RANGE);
	assert_int_equal(hm_parse_u64("1x", 100, &v), HM_E_FORMAT);
}

static void test_sha256(void **state)
{
	(void)state;
	uint8_t d[32], d2[32];
	char hex[65];
	/* The no-HPT digest of wire-format.md §5: SHA-256 of be32 0xffffffff. */
	const uint8_t nohpt[4] = {0xff, 0xff, 0xff, 0xff};
	assert_int_equal(hm_sha256(nohpt, 4, d), 0);
	hm_hex(d, 32, hex);
	assert_string_equal(hex, "ad95131bc0b799c0b1af477fb14fcf26a6a9f76079e48bf090acb7e8367bfd0e");
	hm_sha256_t *h;
	assert_int_equal(hm_sha256_new(&h), 0);
	hm_sha256_update(h, nohpt, 2);
	hm_sha256_update(h, nohpt + 2, 2);
	hm_sha256_final(h, d2);
	hm_sha256_free(h);
	assert_memory_equal(d, d2, 32);
}

static void test_be(void **state)
{
	(void)state;
	uint8_t b[8];
	hm_store_be64(b, UINT64_C(0x0102030405060708));
	assert_int_equal(b[0], 1);
	assert_int_equal(b[7], 8);
	assert_true(hm_load_be64(b) == UINT64_C(0x0102030405060708));
	hm_store_be32(b, 0xdeadbeef);
	assert_true(hm_load_be32(b) == 0xdeadbeef);
	hm_store_be16(b, 0xbeef);
	assert_true(hm_load_be16(b) == 0xbeef);
}

/* Every byte outside printable ASCII becomes \xNN, quoting is escaped, a
 * cut value says so, and the error object guards what callers forget. */
static void test_escape(void **state)
{
	(void)state;
	char out[64], tiny[8];
	const char in[] = "a\x1b]0;x\x07\x9b\xff\n\\\"b";
	hm_escape(in, sizeof(in) - 1, 0, out, sizeof(out));
	assert_string_equal(out, "a\\x1b]0;x\\x07\\x9b\\xff\\x0a\\\\\\\"b");
	hm_escape(in, sizeof(in) - 1, HM_ESC_KEEP_QUOTING, out, sizeof(out));
	assert_string_equal(out, "a\\x1b]0;x\\x07\\x9b\\xff\\x0a\\\"b");
	hm_escape("\0z", 2, 0, out, sizeof(out));
	assert_string_equal(out, "\\x00z");
	hm_escape(NULL, 5, 0, out, sizeof(out));
	assert_string_equal(out, "");
	/* Cut at a whole escape, marked. */
	hm_escape("abcdefghij", 10, 0, tiny, sizeof(tiny));
	assert_string_equal(tiny, "abcd...");
	hm_escape("\x01\x02\x03", 3, 0, tiny, sizeof(tiny));
	assert_string_equal(tiny, "\\x01...");
	hm_escape("abcdefg", 7, 0, tiny, sizeof(tiny));
	assert_string_equal(tiny, "abcdefg");
	hm_escape("abc", 3, 0, tiny, 2);
	assert_string_equal(tiny, ".");
	/* HM_ESC_LEN always holds the worst case, uncut. */
	unsigned char all[256];
	char big[HM_ESC_LEN(256)];
	for (int i = 0; i < 256; i++)
		all[i] = (unsigned char)i;
	hm_escape(all, sizeof(all), 0, big, sizeof(big));
	assert_int_equal(strlen(big), 95 + 2 + (256 - 95) * 4);
	for (const char *p = big; *p; p++)
		assert_true(*p >= 0x20 && *p <= 0x7e);

	hm_error_t e;
	hm_error_clear(&e);
	hm_error_set(&e, HM_E_FORMAT, 3, "name '%s'", "\x1b[2J\nline two\x9b");
	assert_string_equal(e.msg, "name '\\x1b[2J\\x0aline two\\x9b'");
	hm_error_prefix(&e, "section '%s': ", "\a");
	assert_string_equal(e.msg, "section '\\x07': name '\\x1b[2J\\x0aline two\\x9b'");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_first_error_wins), cmocka_unit_test(test_escape),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_parse_size),       cmocka_unit_test(test_sha256),
		cmocka_unit_test(test_be),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
