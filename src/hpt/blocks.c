/* SPDX-License-Identifier: MIT */
/*
 * The verification root of wire-format.md §5 (version 2) kept current:
 * per-block digests cached with a "changed since hashed" bit per block, so
 * that the stop re-hashes only the blocks that changed and then the root.
 * The source's cache lives in its tracker (marked at every take, so it
 * dies with the tracker on a resize or a stop); a loader keeps a
 * standalone one (hpt_blocks_t) that it marks for every chunk it writes.
 * A cached digest must never stand for a block that changed after it was
 * read: the argument is in docs/hpt.md, "The root kept current".
 */
#include "hpt_internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Per block: its digest and counts, as of its last hash. */
struct bc_block {
	uint8_t d[HM_SHA256_LEN];
	uint32_t valid, bolted;
};

struct hpt_bcache {
	unsigned shift;
	uint64_t nblocks;
	uint64_t *dirty;        /* a bit per block: changed since hashed (or never hashed) */
	uint64_t *groups;       /* per block: its 64-slot groups changed since hashed */
	uint64_t *occ;          /* per block, 64 words: each group's live slots when last
				 * read (nblocks x 512 bytes; mmap'ed, zero pages) */
	uint64_t *known;        /* a bit per block: occ holds every group (else read all) */
	struct bc_block *blk;   /* nblocks entries; mmap'ed when big (zero pages) */
	size_t blk_bytes;
	uint8_t *buf;           /* one block's digest input (HPT_VERIFY_BLOCK_BUF bytes) */
	uint8_t *buf2;          /* the root's helper thread's (made on first use) */
	uint64_t *list;         /* the root's blocks to hash (nblocks; made on first use) */
	uint8_t (*digs)[HM_SHA256_LEN]; /* the root's input, gathered (nblocks) */
	uint64_t cursor;        /* where the next refresh looks first */
	uint64_t hashed, hash_ns; /* blocks hashed, ever, and the time it took */
	uint64_t recent_ns;     /* per block, in the last refresh that hashed >= 8 */
	uint64_t gen;           /* standalone cache: the table generation it describes */
};

struct hpt_blocks {
	struct hpt_bcache *bc;
};

#define BC_MMAP_MIN ((size_t)1 << 20)

static void *bc_alloc(size_t bytes)
{
	if (bytes < BC_MMAP_MIN)
		return calloc(1, bytes);
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

static void bc_release(void *p, size_t bytes)
{
	if (!p)
		return;
	if (bytes < BC_MMAP_MIN)
		free(p);
	else
		munmap(p, bytes);
}

void hpt_bc_free(struct hpt_bcache *bc)
{
	if (!bc)
		return;
	bc_release(bc->blk, bc->blk_bytes);
	bc_release(bc->digs, bc->nblocks * HM_SHA256_LEN);
	bc_release(bc->occ, bc->nblocks * 64 * sizeof(uint64_t));
	bc_release(bc->groups, bc->nblocks * sizeof(uint64_t));
	free(bc->known);
	free(bc->dirty);
	free(bc->buf);
	free(bc->buf2);
	free(bc->list);
	free(bc);
}

/* A cache for a table of this shift with every block changed (never hashed). */
static struct hpt_bcache *bc_new(unsigned shift)
{
	struct hpt_bcache *bc = calloc(1, sizeof(*bc));
	if (!bc)
		return NULL;
	bc->shift = shift;
	bc->nblocks = hpt_verify_nblocks(shift);
	uint64_t nw = (bc->nblocks + 63) / 64;
	bc->blk_bytes = bc->nblocks * sizeof(struct bc_block);
	bc->dirty = malloc(nw * sizeof(uint64_t));
	bc->known = calloc(nw, sizeof(uint64_t));
	bc->groups = bc_alloc(bc->nblocks * sizeof(uint64_t));
	bc->occ = bc_alloc(bc->nblocks * 64 * sizeof(uint64_t));
	bc->blk = bc_alloc(bc->blk_bytes);
	bc->digs = bc_alloc(bc->nblocks * HM_SHA256_LEN);
	bc->buf = malloc(HPT_VERIFY_BLOCK_BUF);
	if (!bc->nblocks || !bc->dirty || !bc->known || !bc->groups || !bc->occ || !bc->blk ||
	    !bc->digs || !bc->buf) {
		hpt_bc_free(bc);
		return NULL;
	}
	for (uint64_t w = 0; w < nw; w++) {
		uint64_t n = bc->nblocks - w * 64;
		bc->dirty[w] = n >= 64 ? ~UINT64_C(0) : (UINT64_C(1) << n) - 1;
	}
	return bc;
}

/* Changed somewhere: every group is read again. */
void hpt_bc_mark_block(struct hpt_bcache *bc, uint64_t b)
{
	if (b < bc->nblocks) {
		bc->dirty[b >> 6] |= UINT64_C(1) << (b & 63);
		bc->groups[b] = ~UINT64_C(0);
	}
}

void hpt_bc_mark_group(struct hpt_bcache *bc, uint64_t b, unsigned g)
{
	if (b < bc->nblocks) {
		bc->dirty[b >> 6] |= UINT64_C(1) << (b & 63);
		bc->groups[b] |= UINT64_C(1) << (g & 63);
	}
}

/*
 * The groups of block b to read again when hashing it, and the block
 * taken as read (its bit in known set, its groups cleared): every group
 * when occ does not hold the block yet, else the groups changed since it
 * was hashed and, with a tracker (marks), the groups whose marks are not
 * taken yet (summary word b). Called where the block's dirty bit is
 * cleared, before it is read (docs/hpt.md, "Reading only the changed
 * groups").
 */
static uint64_t bc_take_groups(struct hpt_bcache *bc, struct hpt_track *marks, uint64_t b)
{
	uint64_t kbit = UINT64_C(1) << (b & 63);
	uint64_t g = bc->groups[b];
	if (!(bc->known[b >> 6] & kbit))
		g = ~UINT64_C(0);
	if (marks)
		g |= atomic_load_explicit(&marks->summary[b], memory_order_relaxed);
	bc->known[b >> 6] |= kbit;
	bc->groups[b] = 0;
	return g;
}

static bool bc_is_dirty(const struct hpt_bcache *bc, uint64_t b)
{
	return (bc->dirty[b >> 6] >> (b & 63)) & 1;
}

static uint64_t bc_count_dirty(const struct hpt_bcache *bc)
{
	uint64_t n = 0;
	for (uint64_t w = 0; w < (bc->nblocks + 63) / 64; w++)
		n += (uint64_t)__builtin_popcountll(bc->dirty[w]);
	return n;
}

/* First dirty block in [from, to); to when none. */
static uint64_t bc_find(const struct hpt_bcache *bc, uint64_t from, uint64_t to)
{
	while (from < to) {
		uint64_t m = bc->dirty[from >> 6] & (~UINT64_C(0) << (from & 63));
		if (m) {
			uint64_t b = (from & ~UINT64_C(63)) + (uint64_t)__builtin_ctzll(m);
			return b < to ? b : to;
		}
		from = (from | 63) + 1;
	}
	return to;
}

/* Next dirty block at or after b, else the first one; nblocks when none. */
static uint64_t bc_next_dirty(const struct hpt_bcache *bc, uint64_t b)
{
	uint64_t x = bc_find(bc, b, bc->nblocks);
	return x < bc->nblocks ? x : bc_find(bc, 0, bc->nblocks);
}

/*
 * Block b's digest and counts into bc->blk[b], read into buf (HPT_VERIFY_BLOCK_BUF
 * bytes) with the digest walk's reader. Touches nothing else of bc, so
 * two threads may hash distinct blocks at once (bc_root_hash_par).
 */
static int bc_hash_into(struct hpt_bcache *bc, struct hpt_table *t, struct hpt_track *trk,
			hpt_read_mode_t mode, uint64_t b, uint64_t reread, uint8_t *buf)
{
	uint64_t first = b * HPT_VERIFY_BLOCK_SLOTS;
	uint64_t valid = 0, bolted = 0;
	(void)hpt_collect_sparse(mode, mode == HPT_READ_TRACKED ? trk : NULL, t, first,
				 bc->occ + 64 * b, reread, buf + HPT_VERIFY_BLOCK_PREFIX, &valid,
				 &bolted);
	struct bc_block *blk = &bc->blk[b];
	int rc = hpt_verify_block_hash(bc->shift, b, buf, valid, blk->d);
	if (rc)
		return rc;
	blk->valid = (uint32_t)valid;
	blk->bolted = (uint32_t)bolted;
	return 0;
}

/*
 * Hash block b of table t (the caller holds the reader lock, so t is the
 * current table and bc describes it): clear its bit first, then read (a
 * change after the clear marks it again: docs/hpt.md), with the digest
 * walk's reader.
 */
static int bc_hash(struct hpt_bcache *bc, struct hpt_table *t, struct hpt_track *trk,
		   struct hpt_track *marks, hpt_read_mode_t mode, uint64_t b)
{
	uint64_t t0 = hm_now_ns();
	bc->dirty[b >> 6] &= ~(UINT64_C(1) << (b & 63));
	uint64_t reread = bc_take_groups(bc, marks, b);
	int rc = bc_hash_into(bc, t, trk, mode, b, reread, bc->buf);
	if (rc) {
		hpt_bc_mark_block(bc, b); /* not hashed after all */
		return rc;
	}
	bc->hashed++;
	bc->hash_ns += hm_now_ns() - t0;
	return 0;
}

/*
 * The root's hashing on two threads: the caller and one helper take blocks
 * of list[] in turn (an atomic index, a few blocks at a time) until none
 * is left. Only for a table nobody writes during the call (QUIESCENT: the
 * stopped guest, a loader's own table) or read under the entry locks
 * (LOCKED); a TRACKED read must stay on the taker's thread. The caller
 * holds the reader lock for both (the table cannot be replaced), has
 * cleared the blocks' bits, and reads blk[] only after the join.
 */
#define BC_PAR_MIN 32   /* fewer blocks than this: the thread costs more than it saves */
#define BC_PAR_GRAIN 4  /* blocks taken at a time */

struct bc_par {
	struct hpt_bcache *bc;
	struct hpt_table *t;
	hpt_read_mode_t mode;
	const uint64_t *list;
	const uint64_t *reread; /* per list entry: the groups to read again */
	uint64_t n;
	_Atomic uint64_t next;
	_Atomic int rc;
};

struct bc_worker {
	struct bc_par *par;
	uint8_t *buf;
	uint64_t hashed, ns;
};

static void *bc_par_run(void *arg)
{
	struct bc_worker *w = arg;
	struct bc_par *par = w->par;
	uint64_t t0 = hm_now_ns();
	for (;;) {
		uint64_t i = atomic_fetch_add_explicit(&par->next, BC_PAR_GRAIN, memory_order_relaxed);
		if (i >= par->n || atomic_load_explicit(&par->rc, memory_order_relaxed) != 0)
			break;
		uint64_t e = i + BC_PAR_GRAIN < par->n ? i + BC_PAR_GRAIN : par->n;
		for (; i < e; i++) {
			int rc = bc_hash_into(par->bc, par->t, NULL, par->mode, par->list[i],
					      par->reread[i], w->buf);
			if (rc) {
				atomic_store(&par->rc, rc);
				break;
			}
			w->hashed++;
		}
	}
	w->ns = hm_now_ns() - t0;
	return NULL;
}

/* Threads the stop's root hashes on: 2, or 1 on a single CPU. */
unsigned hpt_root_threads(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n >= 2 ? 2u : 1u;
}

/* Hash list[0..n) (bits already cleared) on two threads; serially when
 * the helper cannot be had. On failure every block of the list is marked
 * changed again (conservative: the root fails anyway). */
static int bc_root_hash_par(struct hpt_bcache *bc, struct hpt_table *t, hpt_read_mode_t mode,
			    const uint64_t *list, const uint64_t *reread, uint64_t n)
{
	struct bc_par par = {.bc = bc, .t = t, .mode = mode, .list = list, .reread = reread,
			     .n = n};
	struct bc_worker w[2] = {{.par = &par, .buf = bc->buf}, {.par = &par, .buf = bc->buf2}};
	pthread_t th;
	bool helper = bc->buf2 && pthread_create(&th, NULL, bc_par_run, &w[1]) == 0;
	(void)bc_par_run(&w[0]);
	if (helper)
		pthread_join(th, NULL);
	int rc = atomic_load(&par.rc);
	if (rc) {
		for (uint64_t i = 0; i < n; i++)
			hpt_bc_mark_block(bc, list[i]);
		return rc;
	}
	bc->hashed += w[0].hashed + w[1].hashed;
	bc->hash_ns += w[0].ns + w[1].ns; /* per block: the time of one thread */
	return 0;
}

/*
 * The root over every block, hashing first each block for which
 * changed since hashed or, when marks is a tracker over this table, with
 * marks not taken yet (they will mark it again when taken). The caller
 * holds the reader lock for the whole call (the blocks must all be of one
 * table). Many blocks to hash in a mode that allows it: on two threads
 * (hpt_root_threads), the list of blocks gathered and their bits cleared
 * first, as bc_hash clears each before reading it.
 */
static int bc_root(struct hpt_bcache *bc, struct hpt_table *t, struct hpt_track *trk,
		   struct hpt_track *marks, hpt_read_mode_t mode, hpt_root_info_t *out)
{
	uint64_t valid = 0, bolted = 0, rehashed = 0;
	int rc;
	bool par = mode != HPT_READ_TRACKED && hpt_root_threads() > 1;
	if (par && !bc->list)
		bc->list = malloc(2 * bc->nblocks * sizeof(uint64_t)); /* blocks, their groups */
	if (par && bc->list && !bc->buf2)
		bc->buf2 = malloc(HPT_VERIFY_BLOCK_BUF);
	if (par && bc->list && bc->buf2) {
		uint64_t n = 0;
		for (uint64_t b = 0; b < bc->nblocks; b++) {
			bool pending = marks && atomic_load_explicit(&marks->summary[b],
								      memory_order_relaxed) != 0;
			if (bc_is_dirty(bc, b) || pending)
				bc->list[n++] = b;
		}
		if (n >= BC_PAR_MIN) {
			uint64_t *reread = bc->list + bc->nblocks;
			for (uint64_t i = 0; i < n; i++) {
				uint64_t b = bc->list[i];
				bc->dirty[b >> 6] &= ~(UINT64_C(1) << (b & 63));
				reread[i] = bc_take_groups(bc, marks, b);
			}
			if ((rc = bc_root_hash_par(bc, t, mode, bc->list, reread, n)) != 0)
				return rc;
			rehashed = n;
			marks = NULL; /* every block it names is hashed now */
		}
	}
	for (uint64_t b = 0; b < bc->nblocks; b++) {
		bool pending = marks && atomic_load_explicit(&marks->summary[b],
							      memory_order_relaxed) != 0;
		if (bc_is_dirty(bc, b) || pending) {
			/* (a pending block's marks, when taken, mark it again) */
			if ((rc = bc_hash(bc, t, trk, marks, mode, b)) != 0)
				return rc;
			rehashed++;
		}
		valid += bc->blk[b].valid;
		bolted += bc->blk[b].bolted;
		memcpy(bc->digs[b], bc->blk[b].d, HM_SHA256_LEN);
	}
	if ((rc = hpt_verify_root(bc->shift, bc->nblocks,
				  (const uint8_t(*)[HM_SHA256_LEN])bc->digs, out->root)) != 0)
		return rc;
	out->shift = bc->shift;
	out->nblocks = bc->nblocks;
	out->valid = valid;
	out->bolted = bolted;
	out->rehashed = rehashed;
	return 0;
}

static unsigned table_shift(const struct hpt_table *t)
{
	return t->shift;
}

/* ------------------------------------------------ source: in the tracker */

/* The tracker's cache, created on first use (taker only). */
static struct hpt_bcache *trk_cache(struct hpt_track *trk, struct hpt_table *t)
{
	if (!trk->bc)
		trk->bc = bc_new(table_shift(t));
	return trk->bc;
}

/* Blocks still to hash per reader-lock hold (a resize waits at most this). */
#define REFRESH_BATCH 16

/* Hash up to REFRESH_BATCH dirty blocks from the cursor on (wrapping to 0);
 * *done: no dirty block is left after the cursor. */
static int bc_hash_batch(struct hpt_bcache *bc, struct hpt_table *t, struct hpt_track *trk,
			 struct hpt_track *marks, hpt_read_mode_t mode, bool *done)
{
	int rc = 0;
	unsigned k = 0;
	uint64_t b = bc_next_dirty(bc, bc->cursor);
	for (; b < bc->nblocks && k < REFRESH_BATCH && rc == 0; k++) {
		rc = bc_hash(bc, t, trk, marks, mode, b);
		bc->cursor = b + 1 < bc->nblocks ? b + 1 : 0;
		b = bc_next_dirty(bc, bc->cursor);
	}
	*done = b >= bc->nblocks;
	return rc;
}

/* Note the per-block cost of a refresh call (blocks changed since hashed
 * hold entries and are cold: dearer than the mean over a first walk). */
static void bc_note_recent(struct hpt_bcache *bc, uint64_t hashed0, uint64_t ns0)
{
	if (bc && bc->hashed - hashed0 >= 8)
		bc->recent_ns = (bc->hash_ns - ns0) / (bc->hashed - hashed0);
}

int hpt_track_root_refresh(hpt_t *h, hpt_read_mode_t mode, uint64_t budget_ns, uint64_t *left)
{
	uint64_t t0 = hm_now_ns(), n = 0, hashed0 = 0, ns0 = 0;
	struct hpt_bcache *seen = NULL;
	int rc = 0;
	for (;;) {
		struct hpt_shard *s = hpt_rd_lock(h);
		struct hpt_track *trk = atomic_load(&h->track);
		struct hpt_table *t = hpt_tab(h);
		struct hpt_bcache *bc = trk ? trk_cache(trk, t) : NULL;
		if (!bc) {
			hpt_rd_unlock(s);
			rc = trk ? -ENOMEM : HM_E_STATE;
			break;
		}
		if (bc != seen) { /* first hold, or a new tracker (resize) */
			seen = bc;
			hashed0 = bc->hashed;
			ns0 = bc->hash_ns;
		}
		bool done;
		rc = bc_hash_batch(bc, t, trk, trk, mode, &done);
		n = done ? 0 : bc_count_dirty(bc);
		if (rc || done || hm_now_ns() - t0 >= budget_ns)
			bc_note_recent(bc, hashed0, ns0);
		hpt_rd_unlock(s);
		if (rc || done || hm_now_ns() - t0 >= budget_ns)
			break;
	}
	if (left)
		*left = n;
	return rc;
}

int hpt_track_root_stats(hpt_t *h, hpt_root_stats_t *st)
{
	memset(st, 0, sizeof(*st));
	struct hpt_shard *s = hpt_rd_lock(h);
	struct hpt_track *trk = atomic_load(&h->track);
	int rc = HM_E_STATE;
	if (trk) {
		struct hpt_table *t = hpt_tab(h);
		struct hpt_bcache *bc = trk_cache(trk, t);
		rc = -ENOMEM;
		if (bc) {
			/* Blocks a root would hash now: changed since hashed, or
			 * with marks not taken yet (rings moved in first). */
			hpt_trk_sync(trk);
			for (uint64_t b = 0; b < bc->nblocks; b++)
				st->stop_blocks += bc_is_dirty(bc, b) ||
						   atomic_load_explicit(&trk->summary[b],
									memory_order_relaxed) != 0;
			st->nblocks = bc->nblocks;
			st->dirty = bc_count_dirty(bc);
			st->hashed = bc->hashed;
			st->hash_ns = bc->hash_ns;
			st->recent_block_ns = bc->recent_ns;
			rc = 0;
		}
	}
	hpt_rd_unlock(s);
	return rc;
}

int hpt_track_root(hpt_t *h, hpt_read_mode_t mode, hpt_root_info_t *out)
{
	memset(out, 0, sizeof(*out));
	struct hpt_shard *s = hpt_rd_lock(h);
	struct hpt_track *trk = atomic_load(&h->track);
	struct hpt_table *t = hpt_tab(h);
	int rc = HM_E_STATE;
	if (trk) {
		struct hpt_bcache *bc = trk_cache(trk, t);
		rc = -ENOMEM;
		if (bc) {
			/* Marks still in the vCPUs' rings become bits first, so
			 * a block whose marks were not taken is hashed too. */
			hpt_trk_sync(trk);
			rc = bc_root(bc, t, trk, trk, mode, out);
		}
	}
	hpt_rd_unlock(s);
	return rc;
}

/* ------------------------------------------ destination: a loader's record */

int hpt_blocks_new(hpt_blocks_t **out)
{
	*out = calloc(1, sizeof(**out));
	return *out ? 0 : -ENOMEM;
}

void hpt_blocks_free(hpt_blocks_t *c)
{
	if (!c)
		return;
	hpt_bc_free(c->bc);
	free(c);
}

/*
 * The cache for h's current table (caller holds the reader lock): a new
 * one, every block changed, when the table was replaced (reset, resize)
 * since the cache was made: the old digests describe another table.
 */
static struct hpt_bcache *blocks_cache(hpt_blocks_t *c, hpt_t *h)
{
	uint64_t gen = atomic_load(&h->generation);
	if (c->bc && c->bc->gen == gen)
		return c->bc;
	hpt_bc_free(c->bc);
	c->bc = bc_new(table_shift(hpt_tab(h)));
	if (c->bc)
		c->bc->gen = gen;
	return c->bc;
}

int hpt_blocks_set_empty(hpt_blocks_t *c, hpt_t *h)
{
	struct hpt_shard *s = hpt_rd_lock(h);
	hpt_bc_free(c->bc);
	c->bc = bc_new(table_shift(hpt_tab(h)));
	if (c->bc) {
		/* Every block's digest is the empty block's: 32 zero bytes
		 * (bc_new's zero pages), no entries; nothing to hash. */
		c->bc->gen = atomic_load(&h->generation);
		memset(c->bc->dirty, 0, (c->bc->nblocks + 63) / 64 * sizeof(uint64_t));
		/* and every group's live slots none (occ's zero pages) */
		memset(c->bc->known, 0xff, (c->bc->nblocks + 63) / 64 * sizeof(uint64_t));
	}
	hpt_rd_unlock(s);
	return c->bc ? 0 : -ENOMEM;
}

void hpt_blocks_mark(hpt_blocks_t *c, uint64_t first, uint64_t n)
{
	struct hpt_bcache *bc = c->bc;
	if (!bc || n == 0)
		return; /* no cache yet: every block counts as changed */
	uint64_t last = first + n - 1;
	if (last < first)
		last = UINT64_MAX;
	/* every 64-slot group the range touches, a block at a time */
	uint64_t g0 = first / 64, g1 = last / 64;
	for (uint64_t b = g0 / 64; b <= g1 / 64 && b < bc->nblocks; b++) {
		unsigned lo = b > g0 / 64 ? 0 : (unsigned)(g0 & 63);
		unsigned hi = b < g1 / 64 ? 63 : (unsigned)(g1 & 63);
		bc->dirty[b >> 6] |= UINT64_C(1) << (b & 63);
		bc->groups[b] |= (~UINT64_C(0) >> (63 - hi)) & (~UINT64_C(0) << lo);
	}
}

int hpt_blocks_refresh(hpt_blocks_t *c, hpt_t *h, hpt_read_mode_t mode, uint64_t budget_ns,
		       uint64_t *left)
{
	uint64_t t0 = hm_now_ns(), n = 0;
	int rc = 0;
	for (;;) {
		struct hpt_shard *s = hpt_rd_lock(h);
		struct hpt_bcache *bc = blocks_cache(c, h);
		if (!bc) {
			hpt_rd_unlock(s);
			rc = -ENOMEM;
			break;
		}
		struct hpt_table *t = hpt_tab(h);
		struct hpt_track *trk = atomic_load(&h->track);
		bool done;
		rc = bc_hash_batch(bc, t, trk, NULL, mode, &done);
		n = done ? 0 : bc_count_dirty(bc);
		hpt_rd_unlock(s);
		if (rc || done || hm_now_ns() - t0 >= budget_ns)
			break;
	}
	if (left)
		*left = n;
	return rc;
}

void hpt_blocks_stats(hpt_blocks_t *c, hpt_t *h, hpt_root_stats_t *st)
{
	memset(st, 0, sizeof(*st));
	struct hpt_shard *s = hpt_rd_lock(h);
	struct hpt_bcache *bc = c->bc;
	if (bc && bc->gen == atomic_load(&h->generation)) {
		st->nblocks = bc->nblocks;
		st->dirty = st->stop_blocks = bc_count_dirty(bc);
	} else {
		st->nblocks = st->dirty = st->stop_blocks =
			hpt_verify_nblocks(table_shift(hpt_tab(h)));
	}
	if (bc) {
		st->hashed = bc->hashed;
		st->hash_ns = bc->hash_ns;
	}
	hpt_rd_unlock(s);
}

int hpt_blocks_root(hpt_blocks_t *c, hpt_t *h, hpt_read_mode_t mode, hpt_root_info_t *out)
{
	memset(out, 0, sizeof(*out));
	struct hpt_shard *s = hpt_rd_lock(h);
	struct hpt_bcache *bc = blocks_cache(c, h);
	int rc = bc ? bc_root(bc, hpt_tab(h), atomic_load(&h->track), NULL, mode, out) : -ENOMEM;
	hpt_rd_unlock(s);
	return rc;
}
