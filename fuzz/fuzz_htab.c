/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the spapr/htab loader. Input: a sequence of records,
 * each u8 record_type, be32 payload length, payload (the format of
 * the .rec files of tests/htab/golden). The loader must never crash, leak or hang; when
 * it accepts the input, re-encoding the table canonically and loading that
 * must give the same digest (a round-trip property). Tables are capped at
 * htab_shift 22 so that no input makes the fuzzer allocate much.
 * (The fuzz build instruments the whole library for coverage.)
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hptmig/htab.h"

#include "hptmig/stream.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void roundtrip(htab_loader_t *l, const htab_summary_t *sum)
{
	hpt_t *t = htab_loader_table(l);
	mig_file_t *w;
	if (mig_file_open_mem_writer(0, &w) != 0)
		return;
	htab_encode_start(t, w);
	size_t start_len;
	mig_file_mem_data(w, &start_len);
	htab_encode_table(t, w);
	size_t len;
	const uint8_t *p = mig_file_mem_data(w, &len);
	htab_loader_opts_t o = { .max_shift = 22 };
	htab_loader_t *l2;
	if (p && htab_loader_create(NULL, &o, &l2) == 0) {
		hm_error_t e;
		hm_error_clear(&e);
		htab_summary_t s2;
		if (htab_loader_load_buffer(l2, p, start_len, QEMU_VM_SECTION_START, &e) != 0 ||
		    htab_loader_load_buffer(l2, p + start_len, len - start_len, QEMU_VM_SECTION_END, &e) != 0 ||
		    htab_loader_summary(l2, &s2, &e) != 0 ||
		    memcmp(s2.digest, sum->digest, sizeof(s2.digest)) != 0 || s2.valid != sum->valid)
			abort(); /* the canonical encoding of a loaded table must load back equal */
		htab_loader_destroy(l2);
	}
	mig_file_close(w, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	htab_loader_opts_t o = { .max_shift = 22 };
	htab_loader_t *l;
	if (htab_loader_create(NULL, &o, &l) != 0)
		return 0;
	size_t pos = 0;
	int rc = 0;
	while (rc == 0 && size - pos >= 5) {
		int type = data[pos];
		uint32_t len = hm_load_be32(data + pos + 1);
		pos += 5;
		if (len > size - pos)
			len = (uint32_t)(size - pos);
		hm_error_t e;
		hm_error_clear(&e);
		rc = htab_loader_load_buffer(l, data + pos, len, type, &e);
		if (rc != 0 && (e.code == 0 || e.msg[0] == 0))
			abort(); /* an error must always come with a message */
		pos += len;
	}
	htab_summary_t sum;
	if (rc == 0 && htab_loader_summary(l, &sum, NULL) == 0 && !sum.no_hpt)
		roundtrip(l, &sum);
	htab_loader_destroy(l);
	return 0;
}
