/* SPDX-License-Identifier: MIT */
/*
 * `hptmig analyze IN [--json] [--htab] [--state] [--desc] [--follow]`: what
 * is inside any QEMU migration stream (plain or .zst, a file, stdin or a
 * migration URI, read as a stream in constant memory) and whether it is
 * sound. Exit 0 only when the whole stream was walked without error;
 * otherwise one clear line on stderr (and whatever was learnt before the
 * problem on stdout).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "hptmig/analyze.h"
#include "stream_input.h"
#include "tool.h"

static const char usage[] =
	"usage: hptmig analyze IN [--json] [--htab] [--state] [--desc] [--follow] [--strict]\n"
	"                         [--max-input SIZE] [--max-device-state SIZE]\n"
	"\n"
	"Walk a QEMU migration stream (any machine type; zstd is decompressed) as it\n"
	"arrives, in constant memory, and report its machine, sections, RAM pages,\n"
	"the spapr/htab table and its digest. Device sections are skipped or decoded\n"
	"through the JSON description (vmdesc) QEMU appends after EOF, and checked\n"
	"against it.\n"
	"\n"
	"IN: a file, '-' (stdin), or a migration URI: file:PATH, fd:N, exec:CMD\n"
	"(its stdout), tcp:HOST:PORT or unix:PATH (listen and accept one connection,\n"
	"as QEMU's -incoming; 'listening on URI' goes to stderr; port 0: any).\n"
	"E.g. in QEMU's monitor: migrate exec:\"hptmig analyze --follow -\"\n"
	"\n"
	"  --json    one JSON object on stdout (fields of product.md and more)\n"
	"  --htab    list the valid entries of the final table\n"
	"  --state   decode every device section's fields by name and value\n"
	"  --desc    print the vmdesc\n"
	"  --follow  one progress line on stderr per second and per spapr/htab pass\n"
	"            while the stream arrives: bytes, RAM pages, table entries\n"
	"  --strict  fail (exit 3) on any anomaly: what QEMU accepts but never writes\n"
	"            in spapr/htab (an entry without its valid bit in a valid run, an\n"
	"            entry failing the structural check, a chunk overlapping another of\n"
	"            its pass); without it they are warnings on stderr\n"
	"  --max-input SIZE  refuse a stream larger than SIZE bytes (suffix K, M, G:\n"
	"            binary units), once decompressed; default 16G (docs/limits.md)\n"
	"  --max-device-state SIZE  hold at most SIZE bytes of the final phase (FULL\n"
	"            device sections, EOF, vmdesc: no length on the wire, so they are\n"
	"            held until the vmdesc describes them); default 64M\n"
	"\n"
	"Exit status: 0 when the whole stream was walked without error, 1 when it is\n"
	"bad or could only be walked in part (the reason is on stderr), 2 on usage,\n"
	"3 with --strict when it was walked without error but has anomalies.\n";

static int write_stdout(void *opaque, const char *p, size_t n)
{
	(void)opaque;
	return fwrite(p, 1, n, stdout) == n ? 0 : -EIO;
}

/*
 * --json --htab: the report's JSON with htab.entries streamed in place of a
 * marker (an unguessable string: peer bytes in the report cannot forge it),
 * so millions of entries never sit in memory as jansson values.
 */
static void print_json_streaming(json_t *o, const an_report_t *r)
{
	json_t *h = json_object_get(o, "htab");
	if (!json_is_object(h)) {
		tool_print_json(o);
		return;
	}
	uint8_t nonce[16];
	char hex[33], marker[64];
	if (getrandom(nonce, sizeof(nonce), 0) != (ssize_t)sizeof(nonce))
		memset(nonce, 0x5a, sizeof(nonce));
	hm_hex(nonce, sizeof(nonce), hex);
	snprintf(marker, sizeof(marker), "\"hptmig-entries-%s\"", hex);
	char bare[64];
	snprintf(bare, sizeof(bare), "hptmig-entries-%s", hex);
	json_object_set_new(h, "entries", json_string(bare));
	char *s = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
	json_decref(o);
	char *at = s ? strstr(s, marker) : NULL;
	if (at) {
		fwrite(s, 1, (size_t)(at - s), stdout);
		an_htab_entries_write(r, true, write_stdout, NULL);
		fputs(at + strlen(marker), stdout);
		fputc('\n', stdout);
	}
	free(s);
	fflush(stdout);
}

/* The text report with the --htab lines streamed after the digest line. */
static void print_text_streaming(const char *text, const an_report_t *r)
{
	const an_htab_stats_t *h = &r->htab;
	char dig[65], line[100];
	hm_hex(h->digest, HM_SHA256_LEN, dig);
	snprintf(line, sizeof(line), "\n      digest: %s\n", dig);
	const char *at = h->present && !h->no_hpt ? strstr(text, line) : NULL;
	if (!at) {
		fputs(text, stdout);
		return;
	}
	at += strlen(line);
	fwrite(text, 1, (size_t)(at - text), stdout);
	fputs("htab entries (slot pteg/i V R page-size segment flags):\n", stdout);
	an_htab_entries_write(r, false, write_stdout, NULL);
	fputs(at, stdout);
}

/* --follow: one line (at most 79 columns) on stderr. */
static int follow_line(void *opaque, const an_report_t *r, const an_progress_t *p)
{
	(void)opaque;
	(void)r;
	tool_follow_line(p);
	return 0;
}

/* The anomalies as warnings on stderr: the first few, then the count. */
static void print_anomalies(const char *file, const an_anomalies_t *a)
{
	for (size_t i = 0; i < a->nfirst; i++)
		tool_fail("analyze", "warning: %s: %s anomaly: %s", file, an_anomaly_name(a->first[i].kind),
			  a->first[i].msg);
	if (a->total > a->nfirst)
		tool_fail("analyze", "warning: %s: %llu anomalies in all (%llu %s, %llu %s, %llu %s), the first %zu shown",
			  file, (unsigned long long)a->total, (unsigned long long)a->count[0], an_anomaly_name(0),
			  (unsigned long long)a->count[1], an_anomaly_name(1), (unsigned long long)a->count[2],
			  an_anomaly_name(2), a->nfirst);
}

/*
 * The stderr lines and the exit status. A stream walked in full: its
 * anomalies as warnings (and 3 with --strict). A bad or partly walked one
 * gets its one error line only (the counts are in --json).
 */
static int finish(const char *file, const an_report_t *r, int rc, bool strict)
{
	if (rc < 0) {
		char line[768];
		tool_fail("analyze", "%s: %s", file, hm_error_line(&r->error, line, sizeof(line)));
		return 1;
	}
	if (!r->complete) {
		tool_fail("analyze", "%s: walked only in part: stopped at byte offset %lld: %s", file,
			  (long long)r->stop_offset, r->stop_reason);
		return 1;
	}
	print_anomalies(file, &r->anomalies);
	if (strict && r->anomalies.total) {
		tool_fail("analyze", "%s: --strict: %llu anomal%s in spapr/htab (warnings above)", file,
			  (unsigned long long)r->anomalies.total, r->anomalies.total == 1 ? "y" : "ies");
		return 3;
	}
	return 0;
}

struct args {
	const char *file;
	bool json, follow, strict;
	unsigned out, opts;
	an_stream_opts_t so;
};

/* 0, or the exit status of a usage error (printed). */
static int parse_args(int argc, char **argv, struct args *a)
{
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0) {
			a->json = true;
		} else if (strcmp(argv[i], "--follow") == 0) {
			a->follow = true;
		} else if (strcmp(argv[i], "--strict") == 0) {
			a->strict = true;
		} else if (strcmp(argv[i], "--htab") == 0) {
			a->out |= AN_OUT_HTAB;
			a->opts |= AN_OPT_KEEP_TABLE;
		} else if (strcmp(argv[i], "--state") == 0) {
			a->out |= AN_OUT_STATE;
			a->opts |= AN_OPT_STATE;
		} else if (strcmp(argv[i], "--desc") == 0) {
			a->out |= AN_OUT_DESC;
		} else if (strcmp(argv[i], "--max-input") == 0 || strcmp(argv[i], "--max-device-state") == 0) {
			bool in = strcmp(argv[i], "--max-input") == 0;
			uint64_t v = 0;
			if (i + 1 >= argc || !tool_parse_max_input(argv[i + 1], &v) ||
			    (!in && v > AN_DEVICE_STATE_MAX_LIMIT)) {
				tool_fail("analyze", "%s needs a size from 1 to %s (e.g. 512M), got '%s'", argv[i],
					  in ? "16G" : "1G", i + 1 < argc ? argv[i + 1] : "");
				return 2;
			}
			*(in ? &a->so.max_input : &a->so.max_device_state) = v;
			i++;
		} else if (strcmp(argv[i], "-") != 0 && argv[i][0] == '-' && argv[i][1]) {
			tool_fail("analyze", "unknown option '%s' (hptmig analyze --help)", argv[i]);
			return 2;
		} else if (!a->file) {
			a->file = argv[i];
		} else {
			tool_fail("analyze", "one IN only ('%s' is extra)", argv[i]);
			return 2;
		}
	}
	if (!a->file) {
		tool_fail("analyze", "missing IN (hptmig analyze --help)");
		return 2;
	}
	return 0;
}

static void print_report(const struct args *a, const an_report_t *r, bool compressed)
{
	/* --htab lists the entries as they are formatted, not from a string
	 * or a JSON tree of all of them (docs/limits.md). */
	unsigned held = a->out & ~AN_OUT_HTAB;
	if (a->json) {
		json_t *o = an_report_json(r, held);
		json_object_set_new(o, "file", json_string(a->file));
		json_object_set_new(o, "compressed", json_boolean(compressed));
		if (a->out & AN_OUT_HTAB)
			print_json_streaming(o, r);
		else
			tool_print_json(o);
		return;
	}
	char *text = an_report_text(r, held);
	if (text) {
		printf("file: %s%s\n", a->file, compressed ? " (zstd)" : "");
		if (a->out & AN_OUT_HTAB)
			print_text_streaming(text, r);
		else
			fputs(text, stdout);
		free(text);
	}
	fflush(stdout);
}

static int run(int argc, char **argv)
{
	struct args a = {0};
	int st = parse_args(argc, argv, &a);
	if (st)
		return st;
	hm_error_t err;
	hm_error_clear(&err);
	/* --json --state: the library parses the state itself, within its
	 * --state budget (report.c would otherwise parse the text again). */
	if (a.json && (a.opts & AN_OPT_STATE))
		a.opts |= AN_OPT_STATE_JSON;
	a.so.opts = a.opts;
	an_stream_hooks_t hooks = {.progress = follow_line};
	if (a.follow)
		a.so.hooks = &hooks;
	tool_input_t *in = NULL;
	if (tool_input_open("analyze", a.file, &in, &err) < 0) {
		tool_fail_error("analyze", &err);
		return 1;
	}
	an_report_t *r = NULL;
	int rc = an_analyze_stream(tool_input_source(in), &a.so, &r, &err);
	if (!r) {
		tool_input_close(in);
		tool_fail_error("analyze", &err);
		return 1;
	}
	print_report(&a, r, tool_input_compressed(in));
	int status = finish(a.file, r, rc, a.strict);
	an_report_free(r);
	tool_input_close(in);
	return status;
}

const struct hm_cmd hm_cmd_analyze = {
	.name = "analyze",
	.summary = "show what is inside a QEMU migration stream (any machine, .zst too)",
	.usage = usage,
	.run = run,
};
