/* SPDX-License-Identifier: MIT */
/*
 * `hptmig rewrite IN OUT [--json]`: copy a QEMU migration stream record for
 * record, re-encoding only `spapr/htab` canonically (the whole table once in
 * its END record). OUT is written to a temporary file and renamed into place
 * only when everything succeeded, so a failed rewrite leaves no OUT behind.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hptmig/analyze.h"
#include "tool.h"

static const char usage[] =
	"usage: hptmig rewrite IN OUT [--json]\n"
	"\n"
	"Copy every record of the QEMU migration stream IN (plain or .zst) to OUT\n"
	"unchanged, except spapr/htab: its table is loaded with every check and sent\n"
	"again canonically, whole, in the section's END record (START kept, PART\n"
	"records dropped). No section is ever added, so real QEMU accepts OUT.\n"
	"\n"
	"  --json    print a JSON summary on stdout\n";

static int write_file(const char *path, const uint8_t *data, size_t len, hm_error_t *err)
{
	char tmp[4200];
	snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
	FILE *f = fopen(tmp, "wb");
	if (!f)
		return hm_error_set(err, -errno, -1, "%s: %s", tmp, strerror(errno));
	size_t k = len ? fwrite(data, 1, len, f) : 0;
	int e = (k != len || fflush(f) != 0 || fsync(fileno(f)) != 0) ? errno : 0;
	if (fclose(f) != 0 && !e)
		e = errno;
	if (e || rename(tmp, path) != 0) {
		if (!e)
			e = errno;
		unlink(tmp);
		return hm_error_set(err, -(e ? e : EIO), -1, "%s: %s", path, strerror(e ? e : EIO));
	}
	return 0;
}

/* With --json a failure prints an object too: status, error, error_code. */
static void fail_json(bool json, const char *in_path, const char *out_path, const hm_error_t *e)
{
	if (!json)
		return;
	json_t *o = json_object();
	json_object_set_new(o, "status", json_string("failed"));
	json_object_set_new(o, "in", json_string(in_path));
	json_object_set_new(o, "out", json_string(out_path));
	const char *msg = e->code && e->msg[0] ? e->msg : hm_err_str(e->code);
	json_t *js = json_string(msg); /* ASCII: hm_error_t messages are escaped */
	json_object_set_new(o, "error", js ? js : tool_json_str(msg));
	json_object_set_new(o, "error_code", json_string(hm_err_name(e->code)));
	if (e->offset >= 0)
		json_object_set_new(o, "error_offset", json_integer(e->offset));
	tool_print_json(o);
}

static int run(int argc, char **argv)
{
	const char *in_path = NULL, *out_path = NULL;
	bool json = false;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0) {
			json = true;
		} else if (argv[i][0] == '-' && argv[i][1]) {
			tool_fail("rewrite", "unknown option '%s' (hptmig rewrite --help)", argv[i]);
			return 2;
		} else if (!in_path) {
			in_path = argv[i];
		} else if (!out_path) {
			out_path = argv[i];
		} else {
			tool_fail("rewrite", "extra argument '%s'", argv[i]);
			return 2;
		}
	}
	if (!in_path || !out_path) {
		tool_fail("rewrite", "needs IN and OUT (hptmig rewrite --help)");
		return 2;
	}
	hm_error_t err;
	hm_error_clear(&err);
	an_input_t in;
	if (an_input_open(in_path, &in, &err) < 0) {
		tool_fail_error("rewrite", &err);
		fail_json(json, in_path, out_path, &err);
		return 1;
	}
	uint64_t t0 = hm_now_ns();
	uint8_t *out = NULL;
	size_t out_len = 0;
	bool unchecked = false;
	if (an_rewrite(in.data, in.len, &out, &out_len, &unchecked, &err) < 0) {
		char line[768];
		tool_fail("rewrite", "%s: %s", in_path, hm_error_line(&err, line, sizeof(line)));
		fail_json(json, in_path, out_path, &err);
		an_input_close(&in);
		return 1;
	}
	uint64_t t1 = hm_now_ns();
	/* Verify what we wrote walks and carries the same table. */
	an_report_t *a = NULL, *b = NULL;
	an_analyze(in.data, in.len, 0, &a, NULL);
	int rc = an_analyze(out, out_len, 0, &b, &err);
	bool same = a && b && rc == 0 && memcmp(a->htab.digest, b->htab.digest, HM_SHA256_LEN) == 0 &&
		    b->complete == a->complete;
	if (!same) {
		char line[768];
		tool_fail("rewrite", "internal check failed: the rewritten stream %s",
			  rc < 0 ? hm_error_line(&err, line, sizeof(line)) : "has another HTAB digest");
		if (rc >= 0)
			hm_error_set(&err, HM_E_DIGEST, -1,
				     "internal check failed: the rewritten stream has another HTAB digest");
		fail_json(json, in_path, out_path, &err);
		free(out);
		an_report_free(a);
		an_report_free(b);
		an_input_close(&in);
		return 1;
	}
	if (write_file(out_path, out, out_len, &err) < 0) {
		tool_fail_error("rewrite", &err);
		fail_json(json, in_path, out_path, &err);
		free(out);
		an_report_free(a);
		an_report_free(b);
		an_input_close(&in);
		return 1;
	}
	char dig[65];
	hm_hex(b->htab.digest, HM_SHA256_LEN, dig);
	if (json) {
		json_t *o = json_pack("{sssssssIsIsIsIsIsssbsf}", "status", "ok", "in", in_path, "out", out_path,
				      "bytes_in", (json_int_t)in.len, "bytes_out", (json_int_t)out_len,
				      "htab_records_in", (json_int_t)a->htab.records, "htab_records_out",
				      (json_int_t)b->htab.records, "valid", (json_int_t)b->htab.valid, "digest", dig,
				      "unchecked_tail", unchecked, "rewrite_ms", (double)(t1 - t0) / 1e6);
		tool_print_json(o);
	} else {
		printf("rewrote %s -> %s: %zu -> %zu bytes; spapr/htab %llu records -> %llu, %llu valid entries,"
		       " digest %s%s\n",
		       in_path, out_path, in.len, out_len, (unsigned long long)a->htab.records,
		       (unsigned long long)b->htab.records, (unsigned long long)b->htab.valid, dig,
		       unchecked ? " (records after the table copied unchecked: no vmdesc)" : "");
	}
	free(out);
	an_report_free(a);
	an_report_free(b);
	an_input_close(&in);
	return 0;
}

const struct hm_cmd hm_cmd_rewrite = {
	.name = "rewrite",
	.summary = "re-encode spapr/htab canonically, keep every other byte",
	.usage = usage,
	.run = run,
};
