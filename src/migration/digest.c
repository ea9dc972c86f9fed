/* SPDX-License-Identifier: MIT */
/*
 * The HTAB digest (wire-format.md §5) and valid/bolted counts in one pass
 * that skips invalid slots, for the stop-and-copy phase on both sides: the
 * source digests the table it stopped, the destination the table it loaded,
 * both inside the downtime, so one pass instead of three matters. It never
 * changes the table; on a running guest the result is only a snapshot.
 */
#include "mig_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define RUN_MAX 4096u

int mig_table_summary(hpt_t *h, uint64_t *valid_out, uint64_t *bolted_out,
		      uint8_t digest[HM_SHA256_LEN])
{
	hm_sha256_t *sha;
	int rc = hm_sha256_new(&sha);
	if (rc)
		return rc;
	uint8_t *ent = malloc(RUN_MAX * HPTE64_SIZE);
	uint8_t *rec = malloc(RUN_MAX * 24);
	if (!ent || !rec) {
		free(ent);
		free(rec);
		hm_sha256_free(sha);
		return -ENOMEM;
	}
	uint64_t slots = hpt_slots(h), valid = 0, bolted = 0;
	uint8_t be[4];
	hm_store_be32(be, hpt_shift(h));
	hm_sha256_update(sha, be, 4);
	uint64_t s = hpt_find_valid(h, 0, slots);
	while (s < slots) {
		uint64_t end = hpt_find_invalid(h, s, slots);
		if (end - s > RUN_MAX)
			end = s + RUN_MAX;
		if (end == s)
			end = s + 1; /* changed under us: read it as it is now */
		uint64_t n = end - s;
		hpt_read_entries(h, s, n, ent);
		size_t len = 0;
		for (uint64_t i = 0; i < n; i++) {
			const uint8_t *e = ent + i * HPTE64_SIZE;
			if (!(e[7] & HPTE64_V_VALID))
				continue;
			valid++;
			bolted += (e[7] & HPTE64_V_BOLTED) != 0;
			hm_store_be64(rec + len, s + i);
			memcpy(rec + len + 8, e, HPTE64_SIZE);
			len += 24;
		}
		hm_sha256_update(sha, rec, len);
		s = hpt_find_valid(h, end, slots);
	}
	hm_sha256_final(sha, digest);
	hm_sha256_free(sha);
	free(ent);
	free(rec);
	if (valid_out)
		*valid_out = valid;
	if (bolted_out)
		*bolted_out = bolted;
	return 0;
}
