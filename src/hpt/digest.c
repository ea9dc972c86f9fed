/* SPDX-License-Identifier: MIT */
/*
 * Whole-table walks: the HTAB digest of wire-format.md §5 and the valid and
 * bolted counts. Both sides of a migration digest the table inside the
 * downtime, so the walk is one sequential pass over the V words at memory
 * speed, touching R only for valid entries, with plain loads where the
 * caller says nobody writes (HPT_READ_QUIESCENT). A walk must never return
 * a digest of a mix of two tables (a resize starts it again) and never
 * print, exit or abort.
 */
#include "hpt_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/*
 * A walk takes the reader lock one batch of slots at a time, so a resize
 * commit (and the vCPUs queued behind it) never waits for a whole walk; a
 * walk that sees the generation change starts again.
 */
#define WALK_BATCH_SLOTS 4096
#define REC_LEN 24                           /* be64 slot, V, R */
#define REC_BUF (2 * WALK_BATCH_SLOTS * REC_LEN) /* SHA-256 is fed ~96-192 KiB at a time */

/*
 * One live entry's stored words, read as mode says; raw is V as first
 * loaded (valid or locked). Returns false when it is not valid after all.
 * The tracked read is hpt_read_optimistic; any doubt falls back to the lock.
 */
static bool read_valid(hpt_read_mode_t mode, struct hpt_track *trk, struct hpt_table *t,
		       uint64_t slot, uint64_t raw, uint64_t *v_raw, uint64_t *r_raw)
{
	_Atomic uint64_t *vp = hpt_vp(t, slot);
	if (mode == HPT_READ_QUIESCENT) {
		*v_raw = raw & ~HPT_LOCK_BE;
		*r_raw = atomic_load_explicit(hpt_rp(t, slot), memory_order_relaxed);
		return (raw & HPT_VALID_BE) != 0;
	}
	if (trk && hpt_read_optimistic(trk, t, slot, v_raw, r_raw))
		return (*v_raw & HPT_VALID_BE) != 0;
	uint64_t v = hpt_entry_lock(vp);
	*r_raw = atomic_load_explicit(hpt_rp(t, slot), memory_order_relaxed);
	hpt_entry_unlock(vp, v);
	*v_raw = HPT_BE(v);
	return (v & HPTE64_V_VALID) != 0;
}

/*
 * The walk behind hpt_summary, hpt_digest and hpt_count. out == NULL: counts
 * only (no records, no SHA-256).
 */
static int walk(hpt_t *h, hpt_read_mode_t mode, uint64_t *valid_out, uint64_t *bolted_out,
		uint8_t out[HM_SHA256_LEN])
{
	uint8_t *rec = NULL;
	hm_sha256_t *sha = NULL;
	uint64_t valid = 0, bolted = 0;
	const uint64_t bolted_be = HPT_BE(HPTE64_V_BOLTED), live = HPT_VALID_BE | HPT_LOCK_BE;
	int rc = -ENOMEM;
	if (out && !(rec = malloc(REC_BUF)))
		goto done;
	for (;;) {
		if (out && (rc = hm_sha256_new(&sha)) != 0)
			goto done;
		struct hpt_shard *s = hpt_rd_lock(h);
		uint64_t gen = atomic_load(&h->generation); /* stable under the reader lock */
		uint64_t slots = hpt_tab(h)->slots;
		uint8_t be[4];
		hm_store_be32(be, hpt_tab(h)->shift);
		hpt_rd_unlock(s);
		if (out)
			hm_sha256_update(sha, be, 4);
		bool restart = false;
		size_t len = 0;
		valid = bolted = 0;
		for (uint64_t first = 0; first < slots && !restart; first += WALK_BATCH_SLOTS) {
			uint64_t end = slots - first < WALK_BATCH_SLOTS ? slots : first + WALK_BATCH_SLOTS;
			s = hpt_rd_lock(h);
			restart = atomic_load(&h->generation) != gen;
			struct hpt_table *t = hpt_tab(h);
			struct hpt_track *trk = mode == HPT_READ_TRACKED ? atomic_load(&h->track) : NULL;
			/* Collect 64 slots' "valid or locked" bits without a
			 * branch per slot (a third of a random table's slots are
			 * valid: a branch each would mispredict), then visit the
			 * set ones. In the stored big-endian V word as loaded on a
			 * little-endian host, 0x01 is bit 56 and 0x40 bit 62. */
			for (uint64_t w0 = first; w0 < end && !restart; w0 += 64) {
				uint64_t bits = 0;
				for (unsigned k = 0; k < 64; k++) {
					uint64_t raw = atomic_load_explicit(hpt_vp(t, w0 + k), memory_order_relaxed);
					bits |= (uint64_t)((raw & live) != 0) << k;
				}
				for (; bits; bits &= bits - 1) {
					uint64_t slot = w0 + (uint64_t)__builtin_ctzll(bits), v, r;
					uint64_t raw = atomic_load_explicit(hpt_vp(t, slot), memory_order_relaxed);
					if (!read_valid(mode, trk, t, slot, raw, &v, &r))
						continue;
					valid++;
					bolted += (v & bolted_be) != 0;
					if (!out)
						continue;
					hm_store_be64(rec + len, slot);
					memcpy(rec + len + 8, &v, 8); /* stored big-endian, like the digest */
					memcpy(rec + len + 16, &r, 8);
					len += REC_LEN;
				}
			}
			hpt_rd_unlock(s);
			if (out && len > REC_BUF - WALK_BATCH_SLOTS * REC_LEN) {
				hm_sha256_update(sha, rec, len); /* outside the reader lock */
				len = 0;
			}
		}
		if (!restart) {
			if (out && len)
				hm_sha256_update(sha, rec, len);
			break;
		}
		hm_sha256_free(sha); /* the table was replaced: start over */
		sha = NULL;
	}
	if (out)
		hm_sha256_final(sha, out);
	if (valid_out)
		*valid_out = valid;
	if (bolted_out)
		*bolted_out = bolted;
	rc = 0;
done:
	hm_sha256_free(sha);
	free(rec);
	return rc;
}

void hpt_count(hpt_t *h, uint64_t *valid, uint64_t *bolted)
{
	/* Counts need no memory beyond the stack: walk() cannot fail here. */
	uint64_t v = 0, b = 0;
	(void)walk(h, HPT_READ_QUIESCENT, &v, bolted ? &b : NULL, NULL);
	if (valid)
		*valid = v;
	if (bolted)
		*bolted = b;
}

void hpt_digest_none(uint8_t out[HM_SHA256_LEN])
{
	uint8_t b[4];
	hm_store_be32(b, HPT_NO_HPT);
	hm_sha256(b, sizeof(b), out);
}

int hpt_digest(hpt_t *h, uint8_t out[HM_SHA256_LEN])
{
	return walk(h, HPT_READ_LOCKED, NULL, NULL, out);
}

int hpt_summary(hpt_t *h, hpt_read_mode_t mode, uint64_t *valid, uint64_t *bolted,
		uint8_t out[HM_SHA256_LEN])
{
	if (mode != HPT_READ_LOCKED && mode != HPT_READ_TRACKED && mode != HPT_READ_QUIESCENT)
		return -EINVAL;
	return walk(h, mode, valid, bolted, out);
}
