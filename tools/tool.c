/* SPDX-License-Identifier: MIT */
/*
 * Output helpers of the hptmig command: the only code that writes to the
 * user's terminal. What it writes is one line of printable ASCII per
 * message, and every JSON string is valid (peer bytes escaped first).
 */
#include "tool.h"

#include "hptmig/analyze.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The last line tool_fail printed, and whether a JSON object went to
 * stdout (main thread only: for tool_usage_json). */
static char last_fail[1100];
static bool json_printed;

void tool_fail(const char *cmd, const char *fmt, ...)
{
	char raw[1024], line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(raw, sizeof(raw), fmt, ap);
	va_end(ap);
	/* A last guard: the line stays one line of printable ASCII whatever a
	 * caller formatted in (error messages are escaped already, so quoting
	 * is kept as it is). */
	fprintf(stderr, "hptmig: %s: %s\n", cmd,
		hm_escape(raw, strlen(raw), HM_ESC_KEEP_QUOTING, line, sizeof(line)));
	snprintf(last_fail, sizeof(last_fail), "hptmig: %s: %s", cmd, line);
}

void tool_usage_json(int argc, char **argv, int rc)
{
	if (rc != 2 || json_printed || !last_fail[0])
		return;
	for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
		if (strcmp(argv[i], "--json") != 0)
			continue;
		json_t *o = json_object();
		json_object_set_new(o, "status", json_string("error"));
		json_object_set_new(o, "error", tool_json_str(last_fail));
		tool_print_json(o);
		return;
	}
}

json_t *tool_json_bytes(const void *bytes, size_t len)
{
	char buf[HM_ESC_LEN(256)];
	return json_string(hm_escape(bytes, len, 0, buf, sizeof(buf)));
}

json_t *tool_json_str(const char *s)
{
	return s ? tool_json_bytes(s, strlen(s)) : json_null();
}

void tool_fail_error(const char *cmd, const hm_error_t *e)
{
	char line[768];
	tool_fail(cmd, "%s", hm_error_line(e, line, sizeof(line)));
}

void tool_print_json(json_t *obj)
{
	char *s = json_dumps(obj, JSON_COMPACT | JSON_ENSURE_ASCII);
	json_printed = true;
	if (s) {
		fputs(s, stdout);
		fputc('\n', stdout);
		free(s);
	}
	fflush(stdout);
	json_decref(obj);
}

bool tool_stdout_is_tty(void)
{
	return isatty(STDOUT_FILENO) == 1;
}

bool tool_parse_max_input(const char *s, uint64_t *out)
{
	uint64_t v = 0;
	if (!s || hm_parse_size(s, &v) != 0 || v == 0 || v > AN_INPUT_MAX_LIMIT)
		return false;
	*out = v;
	return true;
}
