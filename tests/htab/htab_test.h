/* SPDX-License-Identifier: MIT */
/*
 * Helpers shared by the htab save and round-trip tests (header-only, test
 * code only): a recorder that keeps each handler call's payload apart, the
 * replay of recorded payloads into a loader, a wire checker (no bit 0x40,
 * runs within limits, valid bits where they belong) and table fillers.
 */
#ifndef HPTMIG_TEST_HTAB_TEST_H
#define HPTMIG_TEST_HTAB_TEST_H

#include "hpt/hpt_inspect.h"
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

#include "hptmig/htab.h"

#define REC_MAX 100000

/* Payloads written into one memory channel; rec i = [off[i], off[i+1]). */
struct recorder {
	mig_file_t *w;
	int n;
	int type[REC_MAX];
	size_t off[REC_MAX + 1];
};

static inline void rec_open(struct recorder *r)
{
	memset(r, 0, sizeof(*r));
	assert_int_equal(mig_file_open_mem_writer(0, &r->w), 0);
}

static inline void rec_begin(struct recorder *r, int type)
{
	assert_true(r->n < REC_MAX);
	r->type[r->n] = type;
	r->off[r->n] = (size_t)mig_file_offset(r->w);
}

static inline void rec_end(struct recorder *r)
{
	r->n++;
	r->off[r->n] = (size_t)mig_file_offset(r->w);
}

static inline const uint8_t *rec_payload(struct recorder *r, int i, size_t *len)
{
	size_t total;
	const uint8_t *p = mig_file_mem_data(r->w, &total);
	*len = r->off[i + 1] - r->off[i];
	return p + r->off[i];
}

/*
 * Check one payload as the wire demands of a sender: no V with 0x40, valid
 * runs only of valid entries, indices in range. Returns the chunk count.
 */
static inline uint64_t wire_check(const uint8_t *p, size_t len, int type, uint64_t slots)
{
	assert_true(len >= 4);
	uint32_t hdr = hm_load_be32(p);
	if (type == QEMU_VM_SECTION_START || hdr != 0) {
		assert_int_equal(len, 4);
		return 0;
	}
	size_t pos = 4;
	uint64_t chunks = 0;
	for (;;) {
		assert_true(len - pos >= 8);
		uint32_t index = hm_load_be32(p + pos);
		uint16_t nv = hm_load_be16(p + pos + 4), ni = hm_load_be16(p + pos + 6);
		pos += 8;
		if (!index && !nv && !ni)
			break;
		assert_true(nv + ni > 0);
		assert_true((uint64_t)index + nv + ni <= slots);
		assert_true(len - pos >= (size_t)nv * 16);
		for (unsigned i = 0; i < nv; i++, pos += 16) {
			uint64_t v = hm_load_be64(p + pos);
			assert_true(v & 1);
			if (v & 0x40)
				fail_msg("bit 0x40 on the wire at payload offset %zu", pos);
		}
		chunks++;
	}
	assert_int_equal(pos, len);
	return chunks;
}

/* Load every recorded payload into a fresh loader (checking the wire too). */
static inline htab_loader_t *rec_replay(struct recorder *r)
{
	uint64_t slots = 0;
	htab_loader_t *l;
	assert_int_equal(htab_loader_create(NULL, NULL, &l), 0);
	for (int i = 0; i < r->n; i++) {
		size_t len;
		const uint8_t *p = rec_payload(r, i, &len);
		uint32_t hdr = len >= 4 ? hm_load_be32(p) : 0;
		if (hdr != 0 && hdr != HTAB_HDR_NO_HPT && hdr >= 18 && hdr <= 36)
			slots = UINT64_C(1) << (hdr - 4);
		if (slots)
			wire_check(p, len, r->type[i], slots);
		hm_error_t e;
		hm_error_clear(&e);
		int rc = htab_loader_load_buffer(l, p, len, r->type[i], &e);
		if (rc)
			fail_msg("record %d (type %d): %s (offset %lld)", i, r->type[i], e.msg,
				 (long long)e.offset);
	}
	return l;
}

static inline void assert_same_table(hpt_t *src, htab_loader_t *l)
{
	uint8_t d[32];
	htab_summary_t sum;
	assert_int_equal(hpt_digest(src, d), 0);
	assert_int_equal(htab_loader_summary(l, &sum, NULL), 0);
	if (memcmp(d, sum.digest, 32) != 0) {
		uint64_t v1;
		hpt_t *dst = htab_loader_table(l);
		hpt_count(src, &v1, NULL);
		for (uint64_t i = 0, shown = 0; dst && i < hpt_slots(src) && shown < 5; i++) {
			uint64_t a, b, c, dd;
			hpt_read_entry(src, i, &a, &b);
			hpt_read_entry(dst, i, &c, &dd);
			if ((a & 1) != (c & 1) || ((a & 1) && (a != c || b != dd))) {
				print_error("slot %llu: source V=%016llx R=%016llx, destination "
					    "V=%016llx R=%016llx\n",
					    (unsigned long long)i, (unsigned long long)a,
					    (unsigned long long)b, (unsigned long long)c,
					    (unsigned long long)dd);
				shown++;
			}
		}
		fail_msg("digest mismatch: source %llu valid, destination %llu valid",
			 (unsigned long long)v1, (unsigned long long)sum.valid);
	}
}

/* A random valid-looking entry (the hpt store accepts any V with bit 0x1). */
static inline void rand_entry(uint64_t *seed, uint64_t *v, uint64_t *r)
{
	*v = (tu_rand(seed) & ~UINT64_C(0x7f)) | (tu_rand(seed) & 0x1c) | 1;
	*r = tu_rand(seed) & ~UINT64_C(0x4000000000000000);
}

/* Fill about percent % of the slots with random entries. */
static inline void fill_random(hpt_t *t, uint64_t *seed, unsigned percent)
{
	uint64_t slots = hpt_slots(t);
	for (uint64_t i = 0; i < slots; i++) {
		if (tu_rand(seed) % 100 >= percent)
			continue;
		uint64_t v, r;
		rand_entry(seed, &v, &r);
		assert_true(hpt_write_entry(t, i, v, r));
	}
}

#endif
