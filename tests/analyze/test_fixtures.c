/* SPDX-License-Identifier: MIT */
/*
 * analyze against the real QEMU streams of ../shared/fixtures/qemu: every
 * fact of their README (machine, sections, RAM pages, htab shift, chunks,
 * valid/invalid sent, final valid, bolted, digest, commands), decoding of
 * every device section through the vmdesc, reading the .zst as shipped, and
 * rewrite (same digest, every other record byte for byte). Skips cleanly
 * when the fixtures are absent.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hptmig/analyze.h"

struct fact {
	const char *file, *machine;
	size_t sections;
	uint64_t data, zero;
	int shift; /* -1: no HPT */
	uint64_t chunks, vsent, isent, valid, bolted;
	const char *digest;
	size_t commands;
	const char *extra_section;
};

static const struct fact facts[] = {
	{"pseries-qemu72-p8-1g.mig", "pseries-7.2", 17, 19586, 242582, 23, 16874, 17094, 0, 17094, 16400,
	 "bd0a5c0da6f5ccc7e5900a3828d5f4242c81c9621c7c9794f3e86cf9f05fd5b5", 0, "icp/server"},
	{"pseries-qemu10-p8-2g-live.mig", "pseries-10.0", 16, 20288, 506567, 24, 33225, 33625, 23, 33598, 32800,
	 "9f011b6a3861a227e39a8bd87e4e50d73c82166763a259ed503aa7c4aca1a1a4", 1, NULL},
	{"pseries-qemu10-p9radix-1g.mig", "pseries-10.0", 19, 21879, 240292, -1, 0, 0, 0, 0, 0,
	 "ad95131bc0b799c0b1af477fb14fcf26a6a9f76079e48bf090acb7e8367bfd0e", 1, "spapr-xive"},
};

static bool has_section(const an_report_t *r, const char *idstr)
{
	for (size_t i = 0; i < r->nsections; i++)
		if (strcmp(r->sections[i].idstr, idstr) == 0)
			return true;
	return false;
}

static void check_fixture(const struct fact *f)
{
	const char *path = tu_fixture(f->file);
	if (!path) {
		print_message("fixture %s not available: skipped\n", f->file);
		skip();
	}
	hm_error_t err;
	an_input_t in;
	assert_int_equal(an_input_open(path, &in, &err), 0);
	an_report_t *r = NULL;
	int rc = an_analyze(in.data, in.len, AN_OPT_STATE | AN_OPT_STATE_JSON | AN_OPT_KEEP_TABLE, &r, &err);
	if (rc)
		print_error("%s: %s\n", f->file, err.msg);
	assert_int_equal(rc, 0);
	assert_true(r->complete);
	/* Through the JSON, as a user sees it */
	json_t *j = an_report_json(r, 0);
	assert_string_equal(json_string_value(json_object_get(j, "status")), "ok");
	assert_string_equal(json_string_value(json_object_get(j, "machine")), f->machine);
	assert_int_equal(json_array_size(json_object_get(j, "sections")), f->sections);
	json_t *ram = json_object_get(j, "ram");
	assert_int_equal(json_integer_value(json_object_get(ram, "data_pages")), f->data);
	assert_int_equal(json_integer_value(json_object_get(ram, "zero_pages")), f->zero);
	json_t *h = json_object_get(j, "htab");
	if (f->shift < 0)
		assert_string_equal(json_string_value(json_object_get(h, "shift")), "no-hpt");
	else
		assert_int_equal(json_integer_value(json_object_get(h, "shift")), f->shift);
	assert_int_equal(json_integer_value(json_object_get(h, "chunks")), f->chunks);
	assert_int_equal(json_integer_value(json_object_get(h, "valid_sent")), f->vsent);
	assert_int_equal(json_integer_value(json_object_get(h, "invalid_sent")), f->isent);
	assert_int_equal(json_integer_value(json_object_get(h, "valid")), f->valid);
	assert_int_equal(json_integer_value(json_object_get(h, "bolted")), f->bolted);
	assert_string_equal(json_string_value(json_object_get(h, "digest")), f->digest);
	assert_int_equal(json_array_size(json_object_get(j, "commands")), f->commands);
	if (f->commands)
		assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(j, "commands"), 0),
								      "name")),
				    "switchover-start");
	json_decref(j);
	if (f->extra_section)
		assert_true(has_section(r, f->extra_section));
	assert_true(has_section(r, "spapr/htab"));
	if (f->shift > 0) {
		/* README: all large-page, none secondary-hash; every entry sits in its PTEG */
		assert_int_equal(r->htab.secondary, 0);
		assert_int_equal(r->htab.page_sizes[AN_PG_64K], f->valid);
		assert_int_equal(r->htab.check_failures, 0);
	}
	/* every device section decoded through the vmdesc */
	assert_true(r->has_vmdesc);
	size_t devices = 0;
	for (size_t i = 0; i < r->nsections; i++) {
		assert_int_not_equal(r->sections[i].kind, AN_SEC_UNKNOWN);
		devices += r->sections[i].kind == AN_SEC_VMSTATE;
	}
	assert_int_equal(devices, r->vmdesc_devices);
	assert_int_equal(json_object_size(r->state), f->sections);
	/* every record tiles the stream: header .. EOF */
	uint64_t at = 8;
	for (size_t i = 0; i < r->nrecords; i++) {
		assert_int_equal(r->records[i].offset, at);
		at += r->records[i].length;
	}
	assert_int_equal(at, r->eof_offset);

	/* rewrite: same digest, START + END only, every other record unchanged */
	uint8_t *out;
	size_t out_len;
	assert_int_equal(an_rewrite(in.data, in.len, &out, &out_len, NULL, &err), 0);
	an_report_t *r2 = NULL;
	rc = an_analyze(out, out_len, 0, &r2, &err);
	if (rc)
		print_error("%s rewritten: %s\n", f->file, err.msg);
	assert_int_equal(rc, 0);
	assert_memory_equal(r2->htab.digest, r->htab.digest, HM_SHA256_LEN);
	assert_int_equal(r2->htab.valid, r->htab.valid);
	assert_int_equal(r2->htab.n_part, 0);
	assert_int_equal(r2->htab.n_end, 1);
	assert_int_equal(r2->nsections, r->nsections);
	size_t k = 0;
	for (size_t i = 0; i < r->nrecords; i++) {
		const an_record_t *a = &r->records[i];
		if (a->section != UINT32_MAX && r->sections[a->section].kind == AN_SEC_HTAB)
			continue;
		while (r2->records[k].section != UINT32_MAX && r2->sections[r2->records[k].section].kind == AN_SEC_HTAB)
			k++;
		assert_int_equal(a->length, r2->records[k].length);
		assert_memory_equal(in.data + a->offset, out + r2->records[k].offset, a->length);
		k++;
	}
	/* EOF and vmdesc unchanged */
	assert_int_equal(in.len - r->eof_offset, out_len - r2->eof_offset);
	assert_memory_equal(in.data + r->eof_offset, out + r2->eof_offset, in.len - r->eof_offset);
	/* the START record of spapr/htab is kept as it was */
	for (size_t i = 0; i < r->nrecords; i++)
		if (r->records[i].type == QEMU_VM_SECTION_START && r->sections[r->records[i].section].kind == AN_SEC_HTAB)
			for (size_t m = 0; m < r2->nrecords; m++)
				if (r2->records[m].type == QEMU_VM_SECTION_START &&
				    r2->sections[r2->records[m].section].kind == AN_SEC_HTAB)
					assert_memory_equal(in.data + r->records[i].offset, out + r2->records[m].offset,
							    r->records[i].length);
	free(out);
	an_report_free(r2);
	an_report_free(r);
	an_input_close(&in);

	/* the .zst as shipped gives the same answer */
	char zst[4096];
	snprintf(zst, sizeof(zst), "%s/fixtures/qemu/%s.zst", tu_shared_dir(), f->file);
	assert_int_equal(an_input_open(zst, &in, &err), 0);
	assert_true(in.compressed);
	assert_int_equal(an_analyze(in.data, in.len, 0, &r, &err), 0);
	char hex[65];
	hm_hex(r->htab.digest, HM_SHA256_LEN, hex);
	assert_string_equal(hex, f->digest);
	an_report_free(r);
	an_input_close(&in);
}

static void test_qemu72(void **state) { (void)state; check_fixture(&facts[0]); }
static void test_qemu10_live(void **state) { (void)state; check_fixture(&facts[1]); }
static void test_qemu10_radix(void **state) { (void)state; check_fixture(&facts[2]); }

/* Corruptions of a real stream: truncated at many offsets, a bit flipped in
 * every section's footer; each gives an error (or an incomplete walk when
 * the cut removed the vmdesc), never a crash. */
static void test_real_corruptions(void **state)
{
	(void)state;
	const char *path = tu_fixture(facts[1].file);
	if (!path)
		skip();
	uint8_t *buf;
	size_t len;
	assert_int_equal(tu_read_file(path, &buf, &len), 0);
	an_report_t *r = NULL;
	hm_error_t err;
	assert_int_equal(an_analyze(buf, len, 0, &r, &err), 0);
	uint64_t rng = tu_seed("real stream truncations");
	for (int i = 0; i < 60; i++) {
		size_t n = i < 40 ? (size_t)(tu_rand(&rng) % len) : len - 1 - (size_t)(tu_rand(&rng) % 9000);
		an_report_t *t = NULL;
		int rc = an_analyze(buf, n, 0, &t, &err);
		assert_true(rc < 0 || !t->complete);
		an_report_free(t);
	}
	for (size_t i = 0; i < r->nrecords; i++) {
		const an_record_t *rec = &r->records[i];
		if (rec->type != QEMU_VM_SECTION_FULL && rec->type != QEMU_VM_SECTION_START && rec->type != QEMU_VM_SECTION_PART &&
		    rec->type != QEMU_VM_SECTION_END)
			continue;
		size_t foot = rec->offset + rec->length - 1;
		buf[foot] ^= 0x10;
		an_report_t *t = NULL;
		int rc = an_analyze(buf, len, 0, &t, &err);
		assert_int_equal(rc, HM_E_FOOTER);
		assert_int_equal(err.offset, (int64_t)(foot - 4));
		assert_non_null(strstr(err.msg, r->sections[rec->section].idstr));
		an_report_free(t);
		buf[foot] ^= 0x10;
	}
	an_report_free(r);
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_qemu72),
		cmocka_unit_test(test_qemu10_live),
		cmocka_unit_test(test_qemu10_radix),
		cmocka_unit_test(test_real_corruptions),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
