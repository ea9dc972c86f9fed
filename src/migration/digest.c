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
	/*
	 * Windows of RUN_MAX slots: skip a window's empty head with the
	 * lock-free hpt_find_valid, then read the rest of the window in one
	 * hpt_read_entries call (invalid entries read as zeros). Two calls per
	 * window whatever the density: calling per valid run would take the
	 * table's reader lock once per scattered entry (4M times for the linear
	 * map of a 256 GiB guest).
	 */
	for (uint64_t w = 0; w < slots; w += RUN_MAX) {
		uint64_t end = slots - w < RUN_MAX ? slots : w + RUN_MAX;
		uint64_t s = hpt_find_valid(h, w, end);
		if (s >= end)
			continue;
		uint64_t n = end - s;
		if (hpt_read_entries(h, s, n, ent) == 0)
			continue;
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
