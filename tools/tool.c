/* SPDX-License-Identifier: MIT */
/*
 * Output helpers of the hptmig command: the only code that writes to the
 * user's terminal.
 */
#include "tool.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

void tool_fail(const char *cmd, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "hptmig: %s: ", cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

void tool_fail_error(const char *cmd, const hm_error_t *e)
{
	char line[768];
	tool_fail(cmd, "%s", hm_error_line(e, line, sizeof(line)));
}

void tool_print_json(json_t *obj)
{
	char *s = json_dumps(obj, JSON_COMPACT | JSON_ENSURE_ASCII);
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
