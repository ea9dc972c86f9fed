/* SPDX-License-Identifier: MIT */
/*
 * CLI: bytes from a file reach no terminal raw. Streams whose section name,
 * machine name, RAM block name or vmdesc strings hold ESC, BEL, a C1 byte
 * (0x9b), invalid UTF-8 and a newline, through analyze, rewrite and
 * incoming: stderr is one line of printable ASCII, and with --json stdout
 * parses and has "error". (migrate, with such bytes on the return path, is
 * in test_migrate_liars.c.)
 */
#include "testutil.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../analyze/streamgen.h"

/* No NUL: a C string, but every kind of byte a terminal or a JSON parser
 * must not see raw. */
#define EVIL "\x1b]0;pwned\x07\x9b" "2J\xff\xfe\xc3(\nline two"

static char *dir;

static int setup(void **state)
{
	(void)state;
	dir = tu_mkdtemp();
	return dir ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	tu_rmdir(dir);
	free(dir);
	return 0;
}

static void assert_printable_ascii(const char *what, const char *s, bool one_line)
{
	size_t n = strlen(s);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '\n' && (!one_line || i == n - 1))
			continue;
		if (c < 0x20 || c > 0x7e)
			fail_msg("%s: byte 0x%02x at %zu in [%s]", what, c, i, s);
	}
	if (one_line && (n == 0 || s[n - 1] != '\n'))
		fail_msg("%s: not one line: [%s]", what, s);
}

/* Run `hptmig ARGS` on a stream: exit 1, one printable stderr line; with
 * --json also a parsable stdout with "error". Returns stderr (caller frees). */
static char *check(const char *args, bool json)
{
	char cmd[8192], *out = NULL, *err = NULL;
	snprintf(cmd, sizeof(cmd), "'%s' %s%s", tu_bin(), args, json ? " --json" : "");
	int rc = tu_run(cmd, &out, &err);
	print_message("%s: rc %d, stderr: %s", args, rc, err);
	assert_int_equal(rc, 1);
	assert_printable_ascii("stderr", err, true);
	assert_printable_ascii("stdout", out, false);
	if (json) {
		json_error_t je;
		json_t *o = json_loads(out, 0, &je);
		if (!o)
			fail_msg("stdout is not JSON (%s): %s", je.text, out);
		assert_non_null(json_object_get(o, "error"));
		json_decref(o);
	}
	free(out);
	return err;
}

static void write_stream(const char *name, struct sg *s, char *path, size_t len)
{
	snprintf(path, len, "%s/%s", dir, name);
	assert_int_equal(tu_write_file(path, s->p, s->len), 0);
	free(s->p);
}

/* All four commands on one file. */
static void check_all(const char *path)
{
	char args[8192];
	const char *pre[] = {"analyze '", "analyze '", "incoming 'file:"};
	const char *post[] = {"'", "' --state --desc", "'"};
	for (size_t i = 0; i < sizeof(pre) / sizeof(pre[0]); i++) {
		snprintf(args, sizeof(args), "%s%s%s", pre[i], path, post[i]);
		free(check(args, false));
		free(check(args, true));
	}
	snprintf(args, sizeof(args), "rewrite '%s' '%s/out.mig'", path, dir);
	free(check(args, false));
	free(check(args, true));
}

static void test_section_name(void **state)
{
	(void)state;
	struct sg s = {0};
	char path[4096];
	sg_header(&s);
	sg_config(&s, "pseries-test");
	sg_start(&s, 0x04, 1, EVIL, 0, 1);
	sg_be32(&s, 0);
	sg_footer(&s, 1);
	sg_u8(&s, 0x00);
	write_stream("section.mig", &s, path, sizeof(path));
	check_all(path);
	/* the loader names it, escaped */
	char args[8192];
	snprintf(args, sizeof(args), "incoming 'file:%s'", path);
	char *err = check(args, false);
	assert_non_null(strstr(err, "\\x1b]0;pwned\\x07\\x9b2J\\xff\\xfe\\xc3(\\x0aline two"));
	free(err);
}

static void test_machine_name(void **state)
{
	(void)state;
	struct sg s = {0};
	char path[4096];
	sg_header(&s);
	sg_config(&s, EVIL);
	sg_start(&s, 0x04, 1, "no-such-device", 0, 1);
	sg_footer(&s, 1);
	sg_u8(&s, 0x00);
	write_stream("machine.mig", &s, path, sizeof(path));
	check_all(path);
}

static void test_ram_block_name(void **state)
{
	(void)state;
	struct sg s = {0};
	char path[4096];
	sg_header(&s);
	sg_config(&s, "pseries-test");
	sg_start(&s, 0x01, 1, "ram", 0, 4);
	sg_be64(&s, (1u << 20) | 0x04);
	sg_str8(&s, EVIL);
	sg_be64(&s, 1u << 20);
	sg_be64(&s, 0x10);
	sg_footer(&s, 1);
	sg_u8(&s, 0x00);
	write_stream("ram.mig", &s, path, sizeof(path));
	check_all(path);
}

/* vmdesc strings: JSON escapes for ESC, BEL, a newline and U+009B (C1
 * CSI); a field without a size makes the analyser name the device and the
 * field. Raw invalid UTF-8 in the vmdesc is its own case. */
static void test_vmdesc_strings(void **state)
{
	(void)state;
	struct sg s = {0};
	char path[4096];
	sg_header(&s);
	sg_config(&s, "pseries-test");
	sg_start(&s, 0x04, 1, "dev", 0, 1);
	sg_be32(&s, 7);
	sg_footer(&s, 1);
	sg_u8(&s, 0x00);
	sg_vmdesc(&s, "{\"page_size\":4096,\"devices\":[{\"name\":\"dev\\u001b]0;x\\u0007\\u009b\\n2\","
		      "\"instance_id\":0,\"vmsd_name\":\"dev\",\"version\":1,\"fields\":["
		      "{\"name\":\"f\\u001b[2J\\u0085\",\"type\":\"uint32\"}]}]}");
	write_stream("vmdesc.mig", &s, path, sizeof(path));
	char args[8192];
	snprintf(args, sizeof(args), "analyze '%s'", path);
	char *err = check(args, false);
	assert_non_null(strstr(err, "\\x1b]0;x\\x07\\xc2\\x9b\\x0a2"));
	free(err);
	free(check(args, true));

	struct sg t = {0};
	sg_header(&t);
	sg_config(&t, "pseries-test");
	sg_u8(&t, 0x00);
	sg_vmdesc(&t, "{\"page_size\":4096,\"devices\":[{\"name\":\"" EVIL "\"}]}");
	write_stream("vmdesc-utf8.mig", &t, path, sizeof(path));
	snprintf(args, sizeof(args), "analyze '%s'", path);
	free(check(args, false));
	free(check(args, true));
}

/* A good stream whose vmdesc field name holds ESC and U+009B (C1 CSI):
 * analyze succeeds, --state text is printable ASCII, --json's state parses. */
static void test_state_field_name(void **state)
{
	(void)state;
	struct sg s = {0};
	char path[4096], cmd[8192], *out, *err;
	sg_header(&s);
	sg_config(&s, "pseries-test");
	sg_start(&s, 0x04, 1, "dev", 0, 1);
	sg_be32(&s, 7);
	sg_footer(&s, 1);
	sg_u8(&s, 0x00);
	sg_vmdesc(&s, "{\"page_size\":4096,\"devices\":[{\"name\":\"dev\",\"instance_id\":0,"
		      "\"vmsd_name\":\"dev\",\"version\":1,\"fields\":["
		      "{\"name\":\"a\\u001b]0;x\\u0007\\u009b\",\"type\":\"uint32\",\"size\":4}]}]}");
	write_stream("state.mig", &s, path, sizeof(path));
	snprintf(cmd, sizeof(cmd), "'%s' analyze '%s' --state --desc", tu_bin(), path);
	assert_int_equal(tu_run(cmd, &out, &err), 0);
	assert_printable_ascii("stdout", out, false);
	assert_non_null(strstr(out, "a\\\\x1b]0;x\\\\x07\\\\xc2\\\\x9b"));
	free(out);
	free(err);
	snprintf(cmd, sizeof(cmd), "'%s' analyze '%s' --state --json", tu_bin(), path);
	assert_int_equal(tu_run(cmd, &out, &err), 0);
	assert_printable_ascii("stdout", out, false);
	json_t *o = json_loads(out, 0, NULL);
	assert_non_null(o);
	json_t *dev = json_object_get(json_object_get(o, "state"), "dev (1)");
	assert_non_null(dev);
	assert_non_null(json_object_get(dev, "a\\x1b]0;x\\x07\\xc2\\x9b"));
	json_decref(o);
	free(out);
	free(err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_section_name),
		cmocka_unit_test(test_machine_name),
		cmocka_unit_test(test_ram_block_name),
		cmocka_unit_test(test_vmdesc_strings),
		cmocka_unit_test(test_state_field_name),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
