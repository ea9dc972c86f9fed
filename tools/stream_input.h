/* SPDX-License-Identifier: MIT */
/*
 * Stream inputs of analyze and rewrite: `-` (stdin), a plain path, or a
 * migration URI (file:, fd:, exec:, and tcp:/unix: listened on as QEMU's
 * -incoming does, accepting one connection), read as a byte source (plain
 * or zstd) for the streamed walk. Only tools/ uses it: it prints the
 * "listening on URI" line on stderr.
 */
#ifndef HPTMIG_STREAM_INPUT_H
#define HPTMIG_STREAM_INPUT_H

#include <stdbool.h>

#include "hptmig/analyze.h"

typedef struct tool_input tool_input_t;

/* Open spec for reading (listening and accepting as needed; cmd names the
 * subcommand in the "listening on" line). */
int tool_input_open(const char *cmd, const char *spec, tool_input_t **out, hm_error_t *err);
const an_source_t *tool_input_source(tool_input_t *in);
bool tool_input_compressed(const tool_input_t *in);
/* Close everything (reap an exec: child). */
void tool_input_close(tool_input_t *in);
/* One progress line (at most 79 columns) on stderr: `analyze --follow`'s
 * and `proxy`'s (bytes, RAM records and pages, table passes and entries). */
void tool_follow_line(const an_progress_t *p);

#endif
