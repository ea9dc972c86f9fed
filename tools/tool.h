/* SPDX-License-Identifier: MIT */
/*
 * What the hptmig subcommands and benchmarks share: the dispatch tables,
 * option helpers and the one place that talks to the user (stderr lines,
 * JSON on stdout). Library code never includes this.
 */
#ifndef HPTMIG_TOOL_H
#define HPTMIG_TOOL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hptmig/base.h"

/* A subcommand: `hptmig NAME args...`. run() returns the exit status. */
struct hm_cmd {
	const char *name;
	const char *summary;   /* one line for `hptmig --help` */
	const char *usage;     /* full usage text for `hptmig NAME --help` */
	int (*run)(int argc, char **argv);
};

/*
 * A benchmark: `hptmig bench NAME [--json] [opts]`. run() fills *result with
 * one JSON object (both sides of the comparison and their ratio) and returns
 * 0, or returns non-zero with an error line already printed.
 */
struct hm_bench {
	const char *name;
	const char *summary;
	const char *usage;     /* `hptmig bench NAME --help`: the synopsis line */
	int (*run)(int argc, char **argv, json_t **result);
};

extern const struct hm_cmd *const hm_commands[];
extern const struct hm_bench *const hm_benches[];

/* Print "hptmig: <cmd>: message" on stderr (one line). */
void tool_fail(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Print an hm_error_t as one line on stderr, with context. */
void tool_fail_error(const char *cmd, const hm_error_t *e);
/* A JSON string of bytes from a peer or a file, escaped with hm_escape
 * (cut at 256 bytes): always valid, never NULL. tool_json_str: of a C
 * string (NULL gives JSON null). */
json_t *tool_json_bytes(const void *bytes, size_t len);
json_t *tool_json_str(const char *s);
/* Print a JSON object on stdout, compact with a newline. Takes ownership. */
void tool_print_json(json_t *obj);
/*
 * A usage error (exit status 2) of a command line that has --json: print
 * {"status":"error","error":LINE} on stdout, LINE being the last stderr
 * line of tool_fail, unless a JSON object was printed already. Called
 * once by main with the command's exit status.
 */
void tool_usage_json(int argc, char **argv, int rc);
/* True when stdout is a terminal (progress lines only then). */
bool tool_stdout_is_tty(void);

/* --max-input SIZE of analyze and rewrite: a size (hm_parse_size: K M G T
 * suffixes, powers of 1024) from 1 to AN_INPUT_MAX_LIMIT; false otherwise. */
bool tool_parse_max_input(const char *s, uint64_t *out);

#endif
