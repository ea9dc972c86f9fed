/* SPDX-License-Identifier: MIT */
/*
 * `hptmig analyze FILE [--json] [--htab] [--state] [--desc]`: what is inside
 * any QEMU migration stream (plain or .zst) and whether it is sound. Exit 0
 * only when the whole stream was walked without error; otherwise one clear
 * line on stderr (and whatever was learnt before the problem on stdout).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "hptmig/analyze.h"
#include "tool.h"

static const char usage[] =
	"usage: hptmig analyze FILE [--json] [--htab] [--state] [--desc] [--strict] [--max-input SIZE]\n"
	"\n"
	"Walk a QEMU migration stream (any machine type; a .zst file is decompressed)\n"
	"and report its machine, sections, RAM pages, the spapr/htab table and its\n"
	"digest. Device sections are skipped or decoded through the JSON description\n"
	"(vmdesc) QEMU appends after EOF, and checked against it.\n"
	"\n"
	"  --json    one JSON object on stdout (fields of product.md and more)\n"
	"  --htab    list the valid entries of the final table\n"
	"  --state   decode every device section's fields by name and value\n"
	"  --desc    print the vmdesc\n"
	"  --strict  fail (exit 3) on any anomaly: what QEMU accepts but never writes\n"
	"            in spapr/htab (an entry without its valid bit in a valid run, an\n"
	"            entry failing the structural check, a chunk overlapping another of\n"
	"            its pass); without it they are warnings on stderr\n"
	"  --max-input SIZE  refuse a stream larger than SIZE bytes (suffix K, M, G:\n"
	"            binary units), plain or once decompressed; default 1G for a\n"
	"            plain file, 112M for a .zst (docs/limits.md)\n"
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

static int run(int argc, char **argv)
{
	const char *file = NULL;
	bool json = false, strict = false;
	unsigned out = 0, opts = 0;
	uint64_t max_input = 0; /* the defaults */
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0) {
			json = true;
		} else if (strcmp(argv[i], "--htab") == 0) {
			out |= AN_OUT_HTAB;
			opts |= AN_OPT_KEEP_TABLE;
		} else if (strcmp(argv[i], "--state") == 0) {
			out |= AN_OUT_STATE;
			opts |= AN_OPT_STATE;
		} else if (strcmp(argv[i], "--desc") == 0) {
			out |= AN_OUT_DESC;
		} else if (strcmp(argv[i], "--strict") == 0) {
			strict = true;
		} else if (strcmp(argv[i], "--max-input") == 0) {
			if (i + 1 >= argc || !tool_parse_max_input(argv[i + 1], &max_input)) {
				tool_fail("analyze", "--max-input needs a size from 1 to 16G (e.g. 512M), got '%s'",
					  i + 1 < argc ? argv[i + 1] : "");
				return 2;
			}
			i++;
		} else if (argv[i][0] == '-' && argv[i][1]) {
			tool_fail("analyze", "unknown option '%s' (hptmig analyze --help)", argv[i]);
			return 2;
		} else if (!file) {
			file = argv[i];
		} else {
			tool_fail("analyze", "one FILE only ('%s' is extra)", argv[i]);
			return 2;
		}
	}
	if (!file) {
		tool_fail("analyze", "missing FILE (hptmig analyze --help)");
		return 2;
	}
	hm_error_t err;
	hm_error_clear(&err);
	an_input_t in;
	/* --json --state: the library parses the state itself, within its
	 * --state budget (report.c would otherwise parse the text again). */
	if (json && (opts & AN_OPT_STATE))
		opts |= AN_OPT_STATE_JSON;
	if (an_input_open_max(file, max_input, &in, &err) < 0) {
		tool_fail_error("analyze", &err);
		return 1;
	}
	an_report_t *r = NULL;
	int rc = an_analyze(in.data, in.len, opts, &r, &err);
	if (!r) {
		an_input_close(&in);
		tool_fail_error("analyze", &err);
		return 1;
	}
	/* --htab lists the entries as they are formatted, not from a string
	 * or a JSON tree of all of them (docs/limits.md). */
	unsigned held = out & ~AN_OUT_HTAB;
	if (json) {
		json_t *o = an_report_json(r, held);
		json_object_set_new(o, "file", json_string(file));
		json_object_set_new(o, "compressed", json_boolean(in.compressed));
		if (out & AN_OUT_HTAB)
			print_json_streaming(o, r);
		else
			tool_print_json(o);
	} else {
		char *text = an_report_text(r, held);
		if (text) {
			printf("file: %s%s\n", file, in.compressed ? " (zstd)" : "");
			if (out & AN_OUT_HTAB)
				print_text_streaming(text, r);
			else
				fputs(text, stdout);
			free(text);
		}
		fflush(stdout);
	}
	int status = finish(file, r, rc, strict);
	an_report_free(r);
	an_input_close(&in);
	return status;
}

const struct hm_cmd hm_cmd_analyze = {
	.name = "analyze",
	.summary = "show what is inside a QEMU migration stream (any machine, .zst too)",
	.usage = usage,
	.run = run,
};
