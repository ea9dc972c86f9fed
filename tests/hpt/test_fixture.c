/* SPDX-License-Identifier: MIT */
/*
 * The hpt layer against a real QEMU 7.2 stream (a real Linux guest's hashed
 * page table): load its spapr/htab chunks with the loader's bulk calls, then
 * check the measured facts of fixtures/qemu/README.md (valid and bolted
 * counts, the HTAB digest) and that every real entry passes the structural
 * hash check. Skips cleanly when the shared fixtures are absent.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hptmig/hpt.h"
#include "hpt/hpt_inspect.h"

struct htab_end {
	const uint8_t *p; /* first chunk */
	size_t len;       /* bytes up to the end of the file */
	uint32_t id, shift;
};

/* Find spapr/htab's START (for the section id and shift), then its END
 * record (0x03, id, header 0), whose chunks must parse to an end mark and a
 * footer naming the id; a false match of the byte pattern fails that. */
static bool find_htab(const uint8_t *d, size_t n, struct htab_end *out)
{
	const char *name = "spapr/htab";
	const uint8_t *s = d;
	while ((s = memmem(s, n - (size_t)(s - d), name, 10)) != NULL) {
		size_t i = (size_t)(s - d);
		if (i >= 6 && d[i - 1] == 10 && d[i - 6] == 0x01 && i + 10 + 12 <= n)
			break;
		s++;
	}
	if (!s)
		return false;
	size_t i = (size_t)(s - d);
	out->id = hm_load_be32(d + i - 5);
	out->shift = hm_load_be32(d + i + 10 + 8);
	uint8_t pat[9] = {0x03};
	hm_store_be32(pat + 1, out->id);
	const uint8_t *e = d + i;
	while ((e = memmem(e, n - (size_t)(e - d), pat, 9)) != NULL) {
		const uint8_t *c = e + 9, *end = d + n;
		uint64_t slots = UINT64_C(1) << (out->shift - 4);
		bool ok = false;
		while (c + 8 <= end) {
			uint64_t idx = hm_load_be32(c), nv = hm_load_be16(c + 4), ni = hm_load_be16(c + 6);
			if (idx == 0 && nv == 0 && ni == 0) {
				ok = c + 13 <= end && c[8] == 0x7e && hm_load_be32(c + 9) == out->id;
				break;
			}
			if (idx + nv + ni > slots || c + 8 + 16 * nv > end)
				break;
			c += 8 + 16 * nv;
		}
		if (ok) {
			out->p = e + 9;
			out->len = (size_t)(end - out->p);
			return true;
		}
		e++;
	}
	return false;
}

static void test_qemu72_htab(void **state)
{
	(void)state;
	const char *path = tu_fixture("pseries-qemu72-p8-1g.mig");
	if (!path) {
		print_message("fixture absent: skipped\n");
		skip();
	}
	uint8_t *d;
	size_t n;
	assert_int_equal(tu_read_file(path, &d, &n), 0);
	struct htab_end he = {0};
	assert_true(find_htab(d, n, &he));
	assert_int_equal(he.shift, 23);

	hpt_t *h;
	hpt_config_t cfg;
	hpt_config_default(&cfg);
	assert_int_equal(hpt_create(he.shift, &cfg, &h, NULL), 0);
	uint64_t chunks = 0, sent = 0;
	const uint8_t *c = he.p;
	for (;;) {
		uint64_t idx = hm_load_be32(c), nv = hm_load_be16(c + 4), ni = hm_load_be16(c + 6);
		if (idx == 0 && nv == 0 && ni == 0)
			break;
		assert_true(hpt_write_entries(h, idx, nv, c + 8) == nv);
		assert_true(hpt_clear_entries(h, idx + nv, ni) == ni);
		chunks++;
		sent += nv;
		c += 8 + 16 * nv;
	}
	/* The README's measured facts. */
	assert_int_equal(chunks, 16874);
	assert_int_equal(sent, 17094);
	uint64_t valid, bolted;
	hpt_count(h, &valid, &bolted);
	assert_int_equal(valid, 17094);
	assert_int_equal(bolted, 16400);
	uint8_t dg[32];
	char hex[65];
	assert_int_equal(hpt_digest(h, dg), 0);
	hm_hex(dg, 32, hex);
	assert_string_equal(hex, "bd0a5c0da6f5ccc7e5900a3828d5f4242c81c9621c7c9794f3e86cf9f05fd5b5");

	/* Every entry a real Linux guest entered sits where its AVPN hashes,
	 * and decodes to a page size; moved to the other half of the table
	 * (top PTEG bit flipped) none of them does. */
	uint64_t checked = 0, s = hpt_find_valid(h, 0, hpt_slots(h)), large = 0;
	while (s < hpt_slots(h)) {
		uint64_t v, r;
		unsigned bp, ap;
		assert_true(hpt_read_entry(h, s, &v, &r));
		assert_int_equal(hpt_page_decode(v, r, &bp, &ap), 0);
		large += ap > 12;
		if (!hpt_entry_check(23, s, v, r))
			fail_msg("slot %llu: v %#llx r %#llx fails the hash check", (unsigned long long)s,
				 (unsigned long long)v, (unsigned long long)r);
		/* At shift 23 the top PTEG bit (bit 15) is determined by the
		 * AVPN for every base page size (15 >= 23 - 12). */
		assert_false(hpt_entry_check(23, s ^ (UINT64_C(1) << (23 - 5)), v, r));
		checked++;
		s = hpt_find_valid(h, s + 1, hpt_slots(h));
	}
	assert_int_equal(checked, 17094);

	/* H_ENTER (H_EXACT) accepts every real entry with QEMU's default
	 * configuration for this 1 GiB guest (64K page cap, RAM below 1 GiB),
	 * and the table it builds has the same digest. */
	hpt_t *h2;
	cfg.ram_bytes = UINT64_C(1) << 30;
	assert_int_equal(hpt_create(23, &cfg, &h2, NULL), 0);
	uint64_t slots = hpt_slots(h);
	for (s = hpt_find_valid(h, 0, slots); s < slots; s = hpt_find_valid(h, s + 1, slots)) {
		uint64_t v, r, slot;
		hpt_read_entry(h, s, &v, &r);
		long rc = hpt_h_enter(h2, H_EXACT, s, v, r, &slot);
		if (rc != H_SUCCESS)
			fail_msg("slot %llu: H_ENTER of v %#llx r %#llx: %s", (unsigned long long)s,
				 (unsigned long long)v, (unsigned long long)r, hpt_ret_name(rc));
	}
	uint8_t dg2[32];
	assert_int_equal(hpt_digest(h2, dg2), 0);
	assert_memory_equal(dg, dg2, 32);
	hpt_destroy(h2);
	printf("# qemu72: %llu entries checked, %llu with pages above 4K\n", (unsigned long long)checked,
	       (unsigned long long)large);
	hpt_destroy(h);
	free(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_qemu72_htab),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
