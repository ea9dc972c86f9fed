/* SPDX-License-Identifier: MIT */
/*
 * Source side of `spapr/htab`: setup, time-bounded iterate, pending,
 * complete, cleanup, and the canonical encoder. It must never send a torn
 * entry or bit 0x40, never lose a change (bits are taken before their
 * entries are read), and never let one iterate call run past its budget by
 * more than one unit of work, however large the table.
 */
#include "hptmig/htab.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "chunk.h"
#include "hptmig/qemu_wire.h"

/* Slots read per unit of work (first pass, linear sweep): HTAB_BLOCK_SLOTS
 * (chunk.h), 64 KiB of table. */
/* Bitmap words taken (and their entries prefetched) between two budget
 * checks in a later pass: at most 4096 entries, like a block. */
#define HTAB_WORDS_PER_CHECK 64u
/* PTEGs sampled to estimate the valid density before the first pass. */
#define HTAB_SAMPLE_PTEGS 64u
/* Bytes per changed slot in pending(): the entry plus a chunk header. */
#define HTAB_PENDING_PER_CHANGE (HTAB_HPTE_SIZE + HTAB_CHUNK_HDR_SIZE)

_Static_assert(HTAB_BLOCK_SLOTS % 64 == 0, "blocks cover whole bitmap words");

/* State of the one-word take helper used by block sweeps (see take_word). */
enum stash_state {
	STASH_EMPTY = 0, /* nothing held: take at the next word */
	STASH_WORD,      /* holds the taken bits of word stash_word (> current) */
	STASH_DONE,      /* nothing was set from the last take to the end */
};

/*
 * All fields belong to the migration thread (the handlers and pending() are
 * called from it only); the table and its tracking do their own locking.
 */
struct htab_save {
	hpt_t *hpt; /* NULL: no HPT */
	enum htab_scan scan;
	uint64_t budget_ns;
	bool set_up;
	bool tracking; /* we started tracking on hpt */

	/* Geometry of the generation the current passes belong to. */
	uint64_t gen;
	unsigned shift;
	uint64_t slots;

	/* First pass of the current generation. */
	bool first_done;
	uint64_t first_next;
	uint64_t first_valid;  /* valid entries the first pass has sent */
	uint64_t sample_slots; /* density sample taken when the pass started */
	uint64_t sample_valid;

	/* Later passes: word cursor (bitmap) or slot cursor (linear). */
	uint64_t cursor;
	enum stash_state stash;
	uint64_t stash_word, stash_bits;

	uint8_t *blk; /* HTAB_BLOCK_SLOTS entries */
	htab_chunker_t ck;
	htab_save_stats_t st;
};

const char *htab_scan_name(enum htab_scan m)
{
	return m == HTAB_SCAN_LINEAR ? "linear" : "bitmap";
}

int htab_scan_parse(const char *s, enum htab_scan *out)
{
	if (s && strcmp(s, "bitmap") == 0)
		*out = HTAB_SCAN_BITMAP;
	else if (s && strcmp(s, "linear") == 0)
		*out = HTAB_SCAN_LINEAR;
	else
		return HM_E_FORMAT;
	return 0;
}

void htab_save_opts_default(htab_save_opts_t *o)
{
	memset(o, 0, sizeof(*o));
	o->scan = HTAB_SCAN_BITMAP;
	o->budget_ns = HTAB_BUDGET_DEFAULT_NS;
}

int htab_save_create(hpt_t *hpt, const htab_save_opts_t *opts, htab_save_t **out,
		     hm_error_t *err)
{
	htab_save_opts_t def;
	*out = NULL;
	if (!opts) {
		htab_save_opts_default(&def);
		opts = &def;
	}
	if (opts->scan != HTAB_SCAN_BITMAP && opts->scan != HTAB_SCAN_LINEAR)
		return hm_error_set(err, HM_E_RANGE, -1, "spapr/htab: scan method %d unknown",
				    (int)opts->scan);
	if (hpt && hpt_shift(hpt) > HTAB_ALLOC_SHIFT_MAX)
		return hm_error_set(err, HM_E_RANGE, -1,
				    "spapr/htab: htab_shift %u cannot be migrated (the stream's "
				    "be32 index names at most 2^32 slots: htab_shift %u..%u)",
				    hpt_shift(hpt), HTAB_STREAM_SHIFT_MIN, HTAB_ALLOC_SHIFT_MAX);
	htab_save_t *s = calloc(1, sizeof(*s));
	if (!s)
		return hm_error_set(err, -ENOMEM, -1, "spapr/htab: out of memory");
	s->hpt = hpt;
	s->scan = opts->scan;
	s->budget_ns = opts->budget_ns ? opts->budget_ns : HTAB_BUDGET_DEFAULT_NS;
	s->blk = malloc((size_t)HTAB_BLOCK_SLOTS * HTAB_HPTE_SIZE);
	if (!s->blk || htab_chunker_init(&s->ck) != 0) {
		free(s->blk);
		free(s);
		return hm_error_set(err, -ENOMEM, -1, "spapr/htab: out of memory");
	}
	s->shift = hpt ? hpt_shift(hpt) : HTAB_HDR_NO_HPT;
	*out = s;
	return 0;
}

void htab_save_cleanup(htab_save_t *s)
{
	if (!s)
		return;
	if (s->tracking)
		hpt_track_stop(s->hpt);
	s->tracking = false;
	s->set_up = false;
	htab_chunker_reset(&s->ck);
	s->stash = STASH_EMPTY;
}

void htab_save_destroy(htab_save_t *s)
{
	if (!s)
		return;
	htab_save_cleanup(s);
	htab_chunker_free(&s->ck);
	free(s->blk);
	free(s);
}

void htab_save_get_stats(const htab_save_t *s, htab_save_stats_t *out)
{
	*out = s->st;
	out->shift = s->hpt ? s->shift : HTAB_HDR_NO_HPT;
	out->first_pass_done = s->first_done;
	out->first_pass_next = s->first_next;
	out->chunks = s->ck.st.chunks;
	out->valid_sent = s->ck.st.valid_sent;
	out->invalid_sent = s->ck.st.invalid_sent;
}

/*
 * Read generation, shift and slots consistently (a resize may commit in
 * between: retry until the generation is stable around the reads).
 */
static void read_geometry(htab_save_t *s, uint64_t *gen, unsigned *shift, uint64_t *slots)
{
	for (;;) {
		uint64_t g = hpt_generation(s->hpt);
		*shift = hpt_shift(s->hpt);
		*slots = hpt_slots(s->hpt);
		*gen = hpt_generation(s->hpt);
		if (*gen == g)
			return;
	}
}

/* Start a first pass over the current geometry, sampling the density. */
static void first_pass_start(htab_save_t *s)
{
	uint8_t e[HPTES_PER_GROUP * HTAB_HPTE_SIZE];
	uint64_t ptegs = s->slots / HPTES_PER_GROUP;
	s->first_done = false;
	s->first_next = 0;
	s->first_valid = 0;
	s->sample_slots = 0;
	s->sample_valid = 0;
	s->cursor = 0;
	s->stash = STASH_EMPTY;
	htab_chunker_reset(&s->ck);
	for (uint64_t i = 0; i < HTAB_SAMPLE_PTEGS; i++) {
		uint64_t pteg = (i * ptegs) / HTAB_SAMPLE_PTEGS;
		s->sample_valid += hpt_read_entries(s->hpt, pteg * HPTES_PER_GROUP, HPTES_PER_GROUP, e);
		s->sample_slots += HPTES_PER_GROUP;
	}
}

/*
 * The changed-slot bits of exactly word w, for sweeps that visit words in
 * increasing order. hpt_track_take() returns the next non-zero word at or
 * after a cursor; a later word is held until the sweep reaches it, and once
 * nothing is left no more takes are made in this sweep (bits set meanwhile
 * stay in the bitmap for the next sweep: nothing is lost).
 */
static uint64_t take_word(htab_save_t *s, uint64_t w)
{
	uint64_t cur = w, first, bits;
	if (s->stash == STASH_DONE)
		return 0;
	if (s->stash == STASH_WORD) {
		if (s->stash_word > w)
			return 0;
		/* stash_word == w: sweeps never skip a word they stashed. */
		s->stash = STASH_EMPTY;
		return s->stash_bits;
	}
	if (!hpt_track_take(s->hpt, &cur, &first, &bits)) {
		s->stash = STASH_DONE;
		return 0;
	}
	if (first / 64 == w)
		return bits;
	s->stash = STASH_WORD;
	s->stash_word = first / 64;
	s->stash_bits = bits;
	return 0;
}

/* Should an iterate call stop now? (budget, rate limit, channel error) */
static bool must_stop(mig_file_t *f, uint64_t deadline)
{
	return mig_file_status(f) != 0 || hm_now_ns() >= deadline ||
	       mig_file_rate_limit_exceeded(f);
}

/* The table was resized under us: stop sending this generation. */
static bool resized(htab_save_t *s)
{
	return hpt_generation(s->hpt) != s->gen;
}

/*
 * First pass: every valid entry as valid runs, one block per unit of work.
 * The block's change bits are taken (and dropped) before it is read: what
 * the block sends is newer than those changes. The block is read straight
 * into the chunker's staging buffer (hpt_read_chunks: entries and headers
 * land at their place in the stream), and staged bytes go to
 * the channel between blocks. Returns true when done.
 */
static bool first_pass(htab_save_t *s, mig_file_t *f, uint64_t deadline, bool bounded)
{
	if (s->first_done)
		return true; /* must not reset the later pass's cursor and held word */
	/* Each call does at least one unit, so a tiny budget still progresses. */
	for (bool did = false; s->first_next < s->slots; did = true) {
		if (bounded && did && must_stop(f, deadline))
			return false;
		if (!bounded && mig_file_status(f))
			return false;
		uint64_t start = s->first_next;
		uint64_t n = s->slots - start < HTAB_BLOCK_SLOTS ? s->slots - start : HTAB_BLOCK_SLOTS;
		for (uint64_t w = start / 64; w < (start + n + 63) / 64; w++)
			(void)take_word(s, w);
		uint64_t nvalid = htab_chunker_read_block(&s->ck, f, s->hpt, start, n);
		if (resized(s)) {
			htab_chunker_undo(&s->ck); /* may hold the new table's entries */
			return false;
		}
		htab_chunker_push(&s->ck, f);
		s->first_valid += nvalid;
		s->first_next = start + n;
	}
	htab_chunker_flush(&s->ck, f);
	s->first_done = true;
	s->cursor = 0;
	s->stash = STASH_EMPTY;
	return true;
}

/* Send the changed slots of one taken word (bit k = slot first + k). */
static void send_word(htab_save_t *s, mig_file_t *f, uint64_t first, uint64_t bits)
{
	while (bits) {
		unsigned a = (unsigned)__builtin_ctzll(bits);
		uint64_t rest = bits >> a;
		unsigned len = (~rest == 0) ? 64u - a : (unsigned)__builtin_ctzll(~rest);
		(void)hpt_read_entries(s->hpt, first + a, len, s->blk);
		htab_chunker_add(&s->ck, f, first + a, len, s->blk, true);
		bits = (a + len >= 64) ? 0 : bits & ~(((UINT64_C(1) << len) - 1) << a);
	}
}

/*
 * Bitmap later pass from the word cursor to the table's end: cost is the
 * summary scan plus the changed entries. Returns true when the sweep reached
 * the end (the cursor wraps to 0), false when stopped.
 */
static bool later_bitmap(htab_save_t *s, mig_file_t *f, uint64_t deadline, bool bounded)
{
	/* Words are taken HTAB_WORDS_PER_CHECK at a time before any entry is
	 * read; the batch take hints their entries into the cache, so in a
	 * sparse pass the entries' cache misses overlap. Taking a batch before
	 * reading is safe: a change after a take is marked again. */
	uint64_t first[HTAB_WORDS_PER_CHECK], bits[HTAB_WORDS_PER_CHECK];
	bool end = false;
	for (unsigned n = 0;; n++) {
		if (bounded && n > 0 && must_stop(f, deadline))
			break;
		if (mig_file_status(f))
			break;
		unsigned got = (unsigned)hpt_track_take_batch(s->hpt, &s->cursor, first, bits,
							      HTAB_WORDS_PER_CHECK);
		end = got < HTAB_WORDS_PER_CHECK;
		for (unsigned i = 0; i < got; i++)
			send_word(s, f, first[i], bits[i]);
		if (end) {
			htab_chunker_flush(&s->ck, f);
			s->cursor = 0;
			s->st.passes++;
			return true;
		}
		if (resized(s))
			break;
	}
	htab_chunker_flush(&s->ck, f);
	return false;
}

/*
 * Linear later pass (QEMU's cost model): every block of the table is
 * read, whether anything in it changed or not; the changed slots among them
 * (bits taken before the read) are sent. Sweeps from the slot cursor to
 * limit; returns true when it got there (at the table's end the cursor wraps).
 */
static bool later_linear(htab_save_t *s, mig_file_t *f, uint64_t deadline, bool bounded,
			 uint64_t limit)
{
	uint64_t bits[HTAB_BLOCK_SLOTS / 64];
	for (bool did = false; s->cursor < limit; did = true) {
		if (bounded && did && must_stop(f, deadline))
			goto stop;
		if (mig_file_status(f))
			goto stop;
		uint64_t start = s->cursor;
		uint64_t n = s->slots - start < HTAB_BLOCK_SLOTS ? s->slots - start : HTAB_BLOCK_SLOTS;
		uint64_t nw = (n + 63) / 64;
		for (uint64_t w = 0; w < nw; w++)
			bits[w] = take_word(s, start / 64 + w);
		(void)hpt_read_entries(s->hpt, start, n, s->blk);
		if (resized(s))
			goto stop;
		for (uint64_t w = 0; w < nw; w++) {
			uint64_t b = bits[w];
			while (b) {
				unsigned k = (unsigned)__builtin_ctzll(b);
				b &= b - 1;
				uint64_t i = w * 64 + k;
				htab_chunker_add(&s->ck, f, start + i, 1, s->blk + i * HTAB_HPTE_SIZE, true);
			}
		}
		s->cursor = start + n;
	}
	htab_chunker_flush(&s->ck, f);
	if (s->cursor >= s->slots) {
		s->cursor = 0;
		s->stash = STASH_EMPTY;
		s->st.passes++;
	}
	return true;
stop:
	htab_chunker_flush(&s->ck, f);
	return false;
}

static void put_endmark(mig_file_t *f)
{
	uint8_t b[HTAB_ENDMARK_SIZE];
	htab_chunk_hdr_put(b, (struct htab_chunk_hdr){ 0 });
	mig_file_put_buffer(f, b, sizeof(b));
}

int htab_save_setup(htab_save_t *s, mig_file_t *f)
{
	uint64_t off = mig_file_offset(f);
	if (!s->hpt) {
		mig_file_put_be32(f, HTAB_HDR_NO_HPT);
		s->set_up = true;
		goto out;
	}
	if (s->set_up)
		return mig_file_set_error(f, HM_E_STATE, "spapr/htab: setup called twice");
	hm_error_t e;
	hm_error_clear(&e);
	if (hpt_track_start(s->hpt, &e) != 0) {
		hm_error_prefix(&e, "spapr/htab: setup: ");
		return mig_file_latch_error(f, &e);
	}
	s->tracking = true;
	read_geometry(s, &s->gen, &s->shift, &s->slots);
	if (s->shift > HTAB_ALLOC_SHIFT_MAX) {
		htab_save_cleanup(s);
		return mig_file_set_error(f, HM_E_RANGE,
					  "spapr/htab: htab_shift %u cannot be migrated (max %u)",
					  s->shift, HTAB_ALLOC_SHIFT_MAX);
	}
	first_pass_start(s);
	s->set_up = true;
	mig_file_put_be32(f, s->shift);
out:
	s->st.bytes += mig_file_offset(f) - off;
	return mig_file_status(f);
}

static void account_call(htab_save_t *s, mig_file_t *f, uint64_t off, uint64_t t0,
			 uint64_t budget)
{
	uint64_t dt = hm_now_ns() - t0;
	s->st.bytes += mig_file_offset(f) - off;
	s->st.iterations++;
	if (dt > s->st.max_iterate_ns)
		s->st.max_iterate_ns = dt;
	if (dt > budget)
		s->st.budget_overruns++;
}

int htab_save_iterate(htab_save_t *s, mig_file_t *f, uint64_t budget_ns)
{
	uint64_t t0 = hm_now_ns(), off = mig_file_offset(f);
	uint64_t budget = budget_ns ? budget_ns : s->budget_ns;
	uint64_t deadline = t0 + budget;
	int done = 0;
	if (!s->set_up)
		return mig_file_set_error(f, HM_E_STATE, "spapr/htab: iterate before setup");
	if (!s->hpt) {
		mig_file_put_be32(f, HTAB_HDR_NO_HPT);
		done = 1;
		goto out;
	}
	uint64_t gen;
	unsigned shift;
	uint64_t slots;
	read_geometry(s, &gen, &shift, &slots);
	if (gen != s->gen) {
		/* Resized: this PART is the new shift alone; a new first pass starts. */
		if (shift > HTAB_ALLOC_SHIFT_MAX) {
			mig_file_set_error(f, HM_E_RANGE,
					   "spapr/htab: table resized to htab_shift %u, above the "
					   "stream's limit %u", shift, HTAB_ALLOC_SHIFT_MAX);
			goto out;
		}
		s->gen = gen;
		s->shift = shift;
		s->slots = slots;
		first_pass_start(s);
		mig_file_put_be32(f, shift);
		s->st.headers++;
		goto out;
	}
	mig_file_put_be32(f, HTAB_HDR_CHUNKS);
	if (!s->first_done) {
		if (!first_pass(s, f, deadline, true) || must_stop(f, deadline))
			goto end;
	}
	if (s->scan == HTAB_SCAN_BITMAP)
		done = later_bitmap(s, f, deadline, true);
	else
		done = later_linear(s, f, deadline, true, s->slots) && s->cursor == 0;
end:
	htab_chunker_flush(&s->ck, f);
	put_endmark(f);
out:
	account_call(s, f, off, t0, budget);
	return mig_file_status(f) ? mig_file_status(f) : done;
}

int htab_save_complete(htab_save_t *s, mig_file_t *f)
{
	uint64_t off = mig_file_offset(f);
	if (!s->set_up)
		return mig_file_set_error(f, HM_E_STATE, "spapr/htab: complete before setup");
	if (!s->hpt) {
		mig_file_put_be32(f, HTAB_HDR_NO_HPT);
		goto out;
	}
	if (resized(s))
		return mig_file_set_error(f, HM_E_STATE,
					  "spapr/htab: the table was resized (htab_shift %u -> %u) "
					  "after the last iteration; one END record cannot carry a "
					  "new table: iterate again before stopping the guest",
					  s->shift, hpt_shift(s->hpt));
	mig_file_put_be32(f, HTAB_HDR_CHUNKS);
	if (!s->first_done)
		first_pass(s, f, 0, false);
	/* vCPUs are stopped: finish the current sweep, then one over what it had left behind. */
	if (s->scan == HTAB_SCAN_BITMAP) {
		bool from_start = s->cursor == 0;
		later_bitmap(s, f, 0, false);
		if (!from_start)
			later_bitmap(s, f, 0, false);
	} else {
		/*
		 * The held state of an interrupted sweep skips words: a held word
		 * k means "no takes before k", STASH_DONE "no takes until the
		 * end", both as of an earlier take; words set since then would be
		 * missed. So finish the sweep (delivering a held word's bits),
		 * then sweep the whole table once more: with the vCPUs stopped
		 * that sweep's own held words skip nothing.
		 */
		bool from_start = s->cursor == 0 && s->stash == STASH_EMPTY;
		later_linear(s, f, 0, false, s->slots);
		if (!from_start)
			later_linear(s, f, 0, false, s->slots);
	}
	htab_chunker_flush(&s->ck, f);
	put_endmark(f);
out:
	s->st.bytes += mig_file_offset(f) - off;
	return mig_file_status(f);
}

bool htab_save_resized(htab_save_t *s)
{
	return s->hpt && s->set_up && resized(s);
}

/* The first pass's rest, from the valid density seen (sample + pass). */
static uint64_t first_pass_left(htab_save_t *s)
{
	uint64_t bytes = 0;
	uint64_t slots = s->slots, next = s->first_next;
	bool first_done = s->first_done;
	if (resized(s)) {
		slots = hpt_slots(s->hpt);
		next = 0;
		first_done = false;
	}
	if (!first_done) {
		/* Valid density observed so far (sample + pass), as a fraction. */
		uint64_t num = s->sample_valid + s->first_valid;
		uint64_t den = s->sample_slots + next;
		uint64_t left = slots - next;
		uint64_t est = den ? (uint64_t)((double)left * (double)num / (double)den) : left;
		/* Entry bytes plus about one chunk header per two entries. */
		bytes += est * HTAB_HPTE_SIZE + est / 2 * HTAB_CHUNK_HDR_SIZE;
	}
	return bytes;
}

uint64_t htab_save_pending(htab_save_t *s)
{
	if (!s->hpt || !s->set_up)
		return HTAB_HDR_SIZE;
	return HTAB_HDR_SIZE + HTAB_ENDMARK_SIZE + first_pass_left(s) +
	       hpt_track_pending(s->hpt) * HTAB_PENDING_PER_CHANGE;
}

uint64_t htab_save_pass_pending(htab_save_t *s)
{
	if (!s->hpt || !s->set_up)
		return 0;
	if (!s->first_done || resized(s))
		return first_pass_left(s);
	return hpt_track_pending(s->hpt) * HTAB_PENDING_PER_CHANGE;
}

/* ------------------------------------------------------ canonical encoder */

int htab_encode_start(hpt_t *hpt, mig_file_t *f)
{
	mig_file_put_be32(f, hpt ? hpt_shift(hpt) : HTAB_HDR_NO_HPT);
	return mig_file_status(f);
}

int htab_encode_table(hpt_t *hpt, mig_file_t *f)
{
	if (!hpt) {
		mig_file_put_be32(f, HTAB_HDR_NO_HPT);
		return mig_file_status(f);
	}
	htab_chunker_t ck;
	if (htab_chunker_init(&ck) != 0)
		return mig_file_set_error(f, -ENOMEM, "spapr/htab: encoder out of memory");
	uint64_t slots = hpt_slots(hpt);
	mig_file_put_be32(f, HTAB_HDR_CHUNKS);
	for (uint64_t start = 0; start < slots && !mig_file_status(f); start += HTAB_BLOCK_SLOTS) {
		uint64_t n = slots - start < HTAB_BLOCK_SLOTS ? slots - start : HTAB_BLOCK_SLOTS;
		htab_chunker_read_block(&ck, f, hpt, start, n);
		htab_chunker_push(&ck, f);
	}
	htab_chunker_flush(&ck, f);
	put_endmark(f);
	htab_chunker_free(&ck);
	return mig_file_status(f);
}
