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
 * Visit the valid slots of [first, end) of t (multiples of 64; the caller
 * holds the reader lock): count them and, when rec is not NULL, append
 * their records (be64 slot, V, R as stored) to rec. Returns the bytes
 * appended. Collects 64 slots' "valid or locked" bits without a branch per
 * slot (a third of a random table's slots are valid: a branch each would
 * mispredict), then visits the set ones. In the stored big-endian V word as
 * loaded on a little-endian host, 0x01 is bit 56 and 0x40 bit 62.
 */
static size_t collect(hpt_read_mode_t mode, struct hpt_track *trk, struct hpt_table *t,
		      uint64_t first, uint64_t end, uint8_t *rec, uint64_t *valid, uint64_t *bolted)
{
	const uint64_t bolted_be = HPT_BE(HPTE64_V_BOLTED), live = HPT_VALID_BE | HPT_LOCK_BE;
	size_t len = 0;
	for (uint64_t w0 = first; w0 < end; w0 += 64) {
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
			(*valid)++;
			*bolted += (v & bolted_be) != 0;
			if (!rec)
				continue;
			hm_store_be64(rec + len, slot);
			memcpy(rec + len + 8, &v, 8); /* stored big-endian, like the digest */
			memcpy(rec + len + 16, &r, 8);
			len += REC_LEN;
		}
	}
	return len;
}

size_t hpt_collect(hpt_read_mode_t mode, struct hpt_track *trk, struct hpt_table *t,
		   uint64_t first, uint64_t end, uint8_t *rec, uint64_t *valid, uint64_t *bolted)
{
	return collect(mode, trk, t, first, end, rec, valid, bolted);
}

/*
 * collect over one block of 64 groups of 64 slots from first, reading the V
 * words only of the groups whose bit is set in reread and taking the
 * others' live slots from occ[] (as found when they were last read);
 * occ[] of the groups read is updated. Every slot occ names is read as
 * mode says, so one that is no longer valid is skipped; one that became
 * live in a group not read is missed, which is why the caller must read
 * every group with a change since occ was taken (docs/hpt.md, "Reading
 * only the changed groups").
 */
size_t hpt_collect_sparse(hpt_read_mode_t mode, struct hpt_track *trk, struct hpt_table *t,
			  uint64_t first, uint64_t occ[64], uint64_t reread, uint8_t *rec,
			  uint64_t *valid, uint64_t *bolted)
{
	const uint64_t bolted_be = HPT_BE(HPTE64_V_BOLTED), live = HPT_VALID_BE | HPT_LOCK_BE;
	size_t len = 0;
	/* What the block needs is scattered over its 64 KiB, a cache miss
	 * each: the live slots of the groups not read again, the 16 lines of
	 * each group read again. Ask for all of it first so the misses
	 * overlap instead of coming one after another. */
	for (unsigned g = 0; g < 64; g++) {
		uint64_t w0 = first + 64 * (uint64_t)g;
		if ((reread >> g) & 1)
			for (unsigned k = 0; k < 64; k += 4) /* 4 entries a line */
				__builtin_prefetch(hpt_vp(t, w0 + k));
		else
			for (uint64_t bits = occ[g]; bits; bits &= bits - 1)
				__builtin_prefetch(hpt_vp(t, w0 + (uint64_t)__builtin_ctzll(bits)));
	}
	for (unsigned g = 0; g < 64; g++) {
		uint64_t w0 = first + 64 * (uint64_t)g, bits = 0;
		if ((reread >> g) & 1) {
			for (unsigned k = 0; k < 64; k++) {
				uint64_t raw = atomic_load_explicit(hpt_vp(t, w0 + k),
								    memory_order_relaxed);
				bits |= (uint64_t)((raw & live) != 0) << k;
			}
			occ[g] = bits;
		} else {
			bits = occ[g];
		}
		for (; bits; bits &= bits - 1) {
			uint64_t slot = w0 + (uint64_t)__builtin_ctzll(bits), v, r;
			uint64_t raw = atomic_load_explicit(hpt_vp(t, slot), memory_order_relaxed);
			if (!(raw & live) || !read_valid(mode, trk, t, slot, raw, &v, &r))
				continue;
			(*valid)++;
			*bolted += (v & bolted_be) != 0;
			hm_store_be64(rec + len, slot);
			memcpy(rec + len + 8, &v, 8);
			memcpy(rec + len + 16, &r, 8);
			len += REC_LEN;
		}
	}
	return len;
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
			if (!restart)
				len += collect(mode, trk, t, first, end, out ? rec + len : NULL, &valid,
					       &bolted);
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

/* ------------------------------------------------ block digests and root */

_Static_assert(WALK_BATCH_SLOTS == HPT_VERIFY_BLOCK_SLOTS, "a walk batch is one verify block");
_Static_assert(REC_LEN == VERIFY_REC_SIZE, "digest and block records are the same bytes");

static bool mode_ok(hpt_read_mode_t mode)
{
	return mode == HPT_READ_LOCKED || mode == HPT_READ_TRACKED || mode == HPT_READ_QUIESCENT;
}

uint64_t hpt_verify_nblocks(unsigned shift)
{
	if (shift > HPT_SHIFT_MAX)
		return 0;
	if (shift < 4 + 12) /* fewer slots than one block (no architected table) */
		return 1;
	return (UINT64_C(1) << (shift - 4)) / HPT_VERIFY_BLOCK_SLOTS;
}

int hpt_verify_block_hash(unsigned shift, uint64_t b, uint8_t *buf, uint64_t nvalid,
			  uint8_t out[HM_SHA256_LEN])
{
	if (nvalid == 0) {
		memset(out, 0, HM_SHA256_LEN);
		return 0;
	}
	hm_store_be32(buf, shift);
	hm_store_be64(buf + 4, b);
	return hm_sha256(buf, HPT_VERIFY_BLOCK_PREFIX + nvalid * REC_LEN, out);
}

/*
 * Read block b of the current table into buf (after its prefix) under one
 * hold of the reader lock. *gen and *shift get the generation and shift it
 * was read at; *nvalid its valid entries. HM_E_RANGE when b is beyond the
 * table (a caller that saw another generation finds out from *gen).
 */
static int block_read(hpt_t *h, hpt_read_mode_t mode, uint64_t b, uint8_t *buf, uint64_t *gen,
		      unsigned *shift, uint64_t *nvalid, uint64_t *nbolted)
{
	uint64_t valid = 0, bolted = 0;
	struct hpt_shard *s = hpt_rd_lock(h);
	struct hpt_table *t = hpt_tab(h);
	*gen = atomic_load(&h->generation);
	*shift = t->shift;
	uint64_t nb = hpt_verify_nblocks(t->shift);
	if (b < nb) {
		struct hpt_track *trk = mode == HPT_READ_TRACKED ? atomic_load(&h->track) : NULL;
		uint64_t first = b * HPT_VERIFY_BLOCK_SLOTS;
		uint64_t end = t->slots - first < HPT_VERIFY_BLOCK_SLOTS ? t->slots
									 : first + HPT_VERIFY_BLOCK_SLOTS;
		(void)collect(mode, trk, t, first, end, buf + HPT_VERIFY_BLOCK_PREFIX, &valid, &bolted);
	}
	hpt_rd_unlock(s);
	*nvalid = valid;
	*nbolted = bolted;
	return b < nb ? 0 : HM_E_RANGE;
}

int hpt_block_digest(hpt_t *h, hpt_read_mode_t mode, uint64_t b, uint8_t out[HM_SHA256_LEN])
{
	if (!mode_ok(mode))
		return -EINVAL;
	uint8_t *buf = malloc(HPT_VERIFY_BLOCK_BUF);
	if (!buf)
		return -ENOMEM;
	uint64_t gen, nvalid, nbolted;
	unsigned shift;
	int rc = block_read(h, mode, b, buf, &gen, &shift, &nvalid, &nbolted);
	if (rc == 0)
		rc = hpt_verify_block_hash(shift, b, buf, nvalid, out);
	free(buf);
	return rc;
}

static void root_prefix(hm_sha256_t *sha, unsigned shift, uint64_t nblocks)
{
	uint8_t p[12];
	hm_store_be32(p, shift);
	hm_store_be64(p + 4, nblocks);
	hm_sha256_update(sha, p, sizeof(p));
}

int hpt_verify_root(unsigned shift, uint64_t nblocks, const uint8_t (*d)[HM_SHA256_LEN],
		    uint8_t out[HM_SHA256_LEN])
{
	hm_sha256_t *sha = NULL;
	int rc = hm_sha256_new(&sha);
	if (rc)
		return rc;
	root_prefix(sha, shift, nblocks);
	if (nblocks)
		hm_sha256_update(sha, d, nblocks * HM_SHA256_LEN);
	hm_sha256_final(sha, out);
	hm_sha256_free(sha);
	return 0;
}

/* What one attempt at the root adds up. */
struct root_acc {
	uint64_t valid, bolted;
	hm_sha256_t *root, *flat; /* flat: the HTAB digest too, or NULL */
};

/*
 * One attempt at the root: every block in order, each read under its own
 * hold of the reader lock and hashed outside it, block digests streamed
 * into the root (and the same records into the flat digest when asked).
 * 1: the table was replaced meanwhile (start again).
 */
static int root_once(hpt_t *h, hpt_read_mode_t mode, uint8_t *buf, struct root_acc *acc)
{
	struct hpt_shard *s = hpt_rd_lock(h);
	uint64_t gen0 = atomic_load(&h->generation); /* stable under the lock */
	unsigned shift = hpt_tab(h)->shift;
	hpt_rd_unlock(s);
	uint64_t nb = hpt_verify_nblocks(shift);
	int rc = 0;
	uint8_t p[12];
	hm_store_be32(p, shift);
	hm_store_be64(p + 4, nb);
	hm_sha256_update(acc->root, p, sizeof(p));
	if (acc->flat)
		hm_sha256_update(acc->flat, p, 4);
	acc->valid = acc->bolted = 0;
	for (uint64_t b = 0; b < nb && rc == 0; b++) {
		uint64_t gen, n, nbolt;
		unsigned sh;
		uint8_t d[HM_SHA256_LEN];
		rc = block_read(h, mode, b, buf, &gen, &sh, &n, &nbolt);
		if (rc == HM_E_RANGE || (rc == 0 && (gen != gen0 || sh != shift)))
			rc = 1; /* replaced (and perhaps shrunk) under us */
		if (rc == 0)
			rc = hpt_verify_block_hash(shift, b, buf, n, d);
		if (rc)
			break;
		hm_sha256_update(acc->root, d, sizeof(d));
		if (acc->flat && n)
			hm_sha256_update(acc->flat, buf + HPT_VERIFY_BLOCK_PREFIX, n * REC_LEN);
		acc->valid += n;
		acc->bolted += nbolt;
	}
	return rc;
}

int hpt_root_summary(hpt_t *h, hpt_read_mode_t mode, uint64_t *valid, uint64_t *bolted,
		     uint8_t digest[HM_SHA256_LEN], uint8_t root[HM_SHA256_LEN])
{
	if (!mode_ok(mode))
		return -EINVAL;
	struct root_acc acc = {0};
	uint8_t *buf = malloc(HPT_VERIFY_BLOCK_BUF);
	int rc = buf ? 0 : -ENOMEM;
	do {
		hm_sha256_free(acc.root);
		hm_sha256_free(acc.flat);
		acc.root = acc.flat = NULL;
		if (rc == 0 || rc == 1)
			rc = hm_sha256_new(&acc.root);
		if (rc == 0 && digest)
			rc = hm_sha256_new(&acc.flat);
		if (rc == 0)
			rc = root_once(h, mode, buf, &acc);
	} while (rc == 1); /* a resize replaced the table: start over, as walk() does */
	if (rc == 0) {
		hm_sha256_final(acc.root, root);
		if (digest)
			hm_sha256_final(acc.flat, digest);
		if (valid)
			*valid = acc.valid;
		if (bolted)
			*bolted = acc.bolted;
	}
	hm_sha256_free(acc.root);
	hm_sha256_free(acc.flat);
	free(buf);
	return rc;
}

int hpt_root(hpt_t *h, hpt_read_mode_t mode, uint8_t out[HM_SHA256_LEN])
{
	return hpt_root_summary(h, mode, NULL, NULL, NULL, out);
}

void hpt_root_none(uint8_t out[HM_SHA256_LEN])
{
	hpt_digest_none(out);
}
