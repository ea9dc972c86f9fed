/* SPDX-License-Identifier: MIT */
/*
 * Whole-table walks: the HTAB digest of wire-format.md §5, the valid and
 * bolted counts, and the occupancy self-check. They visit the valid entries
 * through the table's occupancy bitmap (hpt_internal.h), so their cost is
 * O(valid entries + slots / 64), not a read of every V word: this is what
 * lets both sides of a migration digest a 2 GiB table inside the downtime.
 * A walk must never return a digest of a mix of two tables (a resize starts
 * it again) and never print, exit or abort.
 */
#include "hpt_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/*
 * A walk takes the reader lock one batch of occupancy words at a time, so a
 * resize commit (and the vCPUs queued behind it) never waits for a whole
 * walk; a walk that sees the generation change starts again.
 */
#define WALK_BATCH_WORDS 64  /* 4096 slots per reader-lock hold */
#define WALK_PREFETCH_WORDS 8 /* prefetch the entries of the word 512 slots ahead */
#define REC_LEN 24            /* be64 slot, V, R */
#define REC_BUF (256 * 64 * REC_LEN) /* SHA-256 is fed up to ~384 KiB at a time */

/*
 * One valid entry's stored words for the digest, in the chosen mode. Returns
 * false when the slot is not valid after all (a concurrent remove). The
 * tracked read is hpt_read_entries' seqlock (argument in hpt.c,
 * read_run_tracked): V, R, acquire fence, V again, then the slot's tracking
 * bit; any doubt falls back to the lock.
 */
static bool read_valid(hpt_read_mode_t mode, struct hpt_track *trk, struct hpt_table *t,
		       uint64_t slot, uint64_t *v_raw, uint64_t *r_raw)
{
	_Atomic uint64_t *vp = hpt_vp(t, slot);
	if (mode == HPT_READ_QUIESCENT) {
		*v_raw = atomic_load_explicit(vp, memory_order_relaxed) & ~HPT_LOCK_BE;
		*r_raw = atomic_load_explicit(hpt_rp(t, slot), memory_order_relaxed);
		return (*v_raw & HPT_VALID_BE) != 0;
	}
	if (trk) {
		uint64_t raw = atomic_load(vp);
		uint64_t r = atomic_load_explicit(hpt_rp(t, slot), memory_order_relaxed);
		atomic_thread_fence(memory_order_acquire);
		uint64_t raw2 = atomic_load_explicit(vp, memory_order_acquire);
		uint64_t bit = (atomic_load(&trk->words[slot >> 6]) >> (slot & 63)) & 1;
		if (raw2 == raw && !(raw & HPT_LOCK_BE) && !bit) {
			*v_raw = raw;
			*r_raw = r;
			return (raw & HPT_VALID_BE) != 0;
		}
	}
	uint64_t v = hpt_entry_lock(vp);
	*r_raw = atomic_load_explicit(hpt_rp(t, slot), memory_order_relaxed);
	hpt_entry_unlock(vp, v);
	*v_raw = HPT_BE(v);
	return (v & HPTE64_V_VALID) != 0;
}

static void prefetch_word(struct hpt_table *t, uint64_t wi)
{
	for (uint64_t m = atomic_load_explicit(&t->occ[wi], memory_order_relaxed); m; m &= m - 1)
		__builtin_prefetch((const void *)(uintptr_t)hpt_vp(t, (wi << 6) + (uint64_t)__builtin_ctzll(m)), 0, 3);
}

/*
 * The walk behind hpt_summary, hpt_digest and hpt_count. out == NULL: counts
 * only (no records, no SHA-256); with bolted_out also NULL the valid count
 * is the occupancy's population count.
 */
static int walk(hpt_t *h, hpt_read_mode_t mode, uint64_t *valid_out, uint64_t *bolted_out,
		uint8_t out[HM_SHA256_LEN])
{
	uint8_t *rec = NULL;
	hm_sha256_t *sha = NULL;
	uint64_t valid = 0, bolted = 0;
	const uint64_t bolted_be = HPT_BE(HPTE64_V_BOLTED);
	bool need_entries = out || bolted_out;
	int rc = -ENOMEM;
	if (out && !(rec = malloc(REC_BUF)))
		goto done;
	for (;;) {
		if (out && (rc = hm_sha256_new(&sha)) != 0)
			goto done;
		struct hpt_shard *s = hpt_rd_lock(h);
		uint64_t gen = atomic_load(&h->generation); /* stable under the reader lock */
		uint64_t nwords = hpt_tab(h)->slots >> 6;
		uint8_t be[4];
		hm_store_be32(be, hpt_tab(h)->shift);
		hpt_rd_unlock(s);
		if (out)
			hm_sha256_update(sha, be, 4);
		bool restart = false;
		size_t len = 0;
		valid = bolted = 0;
		for (uint64_t w0 = 0; w0 < nwords && !restart; w0 += WALK_BATCH_WORDS) {
			uint64_t w1 = nwords - w0 < WALK_BATCH_WORDS ? nwords : w0 + WALK_BATCH_WORDS;
			s = hpt_rd_lock(h);
			restart = atomic_load(&h->generation) != gen;
			struct hpt_table *t = hpt_tab(h);
			struct hpt_track *trk = mode == HPT_READ_TRACKED ? atomic_load(&h->track) : NULL;
			for (uint64_t wi = w0; wi < w1 && !restart; wi++) {
				uint64_t bits = atomic_load_explicit(&t->occ[wi], memory_order_acquire);
				if (!need_entries) {
					valid += (uint64_t)__builtin_popcountll(bits);
					continue;
				}
				if (wi + WALK_PREFETCH_WORDS < nwords)
					prefetch_word(t, wi + WALK_PREFETCH_WORDS);
				for (; bits; bits &= bits - 1) {
					uint64_t slot = (wi << 6) + (uint64_t)__builtin_ctzll(bits), v, r;
					if (!read_valid(mode, trk, t, slot, &v, &r))
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
				if (out && len > REC_BUF - 64 * REC_LEN) {
					hm_sha256_update(sha, rec, len);
					len = 0;
				}
			}
			hpt_rd_unlock(s);
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

int hpt_occupancy_check(hpt_t *h, hm_error_t *err)
{
	struct hpt_shard *s = hpt_rd_lock(h);
	struct hpt_table *t = hpt_tab(h);
	int rc = 0;
	for (uint64_t wi = 0; wi < t->slots >> 6 && !rc; wi++) {
		uint64_t want = 0;
		for (unsigned k = 0; k < 64; k++)
			if (atomic_load_explicit(hpt_vp(t, (wi << 6) + k), memory_order_acquire) &
			    HPT_VALID_BE)
				want |= UINT64_C(1) << k;
		uint64_t have = atomic_load_explicit(&t->occ[wi], memory_order_acquire);
		if (want != have) {
			uint64_t slot = (wi << 6) + (uint64_t)__builtin_ctzll(want ^ have);
			rc = hm_error_set(err, HM_E_STATE, -1,
					  "hpt: occupancy bit of slot %llu is %u but its V word says %s",
					  (unsigned long long)slot, (unsigned)((have >> (slot & 63)) & 1),
					  ((want >> (slot & 63)) & 1) ? "valid" : "invalid");
		}
	}
	hpt_rd_unlock(s);
	return rc;
}
