/* SPDX-License-Identifier: MIT */
/*
 * The chunk writer shared by the saver and the canonical encoder: it turns
 * entries (wire bytes, invalid ones all zero) into (valid run, invalid run)
 * chunks of at most 65535 entries each, merging runs across calls. It never
 * writes bit 0x40 and never emits an invalid entry inside a valid run.
 */
#ifndef HPTMIG_HTAB_CHUNK_H
#define HPTMIG_HTAB_CHUNK_H

#include <stdbool.h>
#include <stdint.h>

#include "hptmig/hpt.h"
#include "hptmig/qemu_wire.h"
#include "hptmig/stream.h"

/* The chunker copies V bytes and clears the lock bit in place. */
_Static_assert((HPTE64_V_HVLOCK & ~UINT64_C(0xff)) == 0, "the lock bit is in V's last wire byte");

/* Slots per first-pass read (one unit of work): 64 KiB of table. */
#define HTAB_BLOCK_SLOTS 4096u

/* What the chunker has staged and sent; see htab_chunker_t. */
typedef struct htab_chunk_state {
	size_t len;        /* staged bytes in buf */
	bool open;         /* a chunk is open: its header room is at buf + hdr */
	size_t hdr;
	uint64_t index;    /* open chunk: first slot, run lengths */
	uint32_t n_valid;
	uint32_t n_invalid;
	/* Counters of every chunk closed by this chunker. */
	uint64_t chunks, valid_sent, invalid_sent;
} htab_chunk_state_t;

/*
 * The stream bytes being built, staged in buf before they go to the
 * channel: closed chunks (complete, in stream order), then the open chunk
 * (8 bytes of room for its header, written when it closes, then its valid
 * entries). Staging lets a first-pass read put entries straight at their
 * place in the stream (no per-entry copy, no per-run channel call) and
 * lets the open run keep growing across blocks up to 65535 entries. Bytes
 * reach the channel in big pieces (htab_chunker_push / flush). Owned by
 * one thread (the migration thread).
 */
typedef struct htab_chunker {
	uint8_t *buf;
	size_t cap;
	htab_chunk_state_t st;
	htab_chunk_state_t undo; /* st before the last htab_chunker_read_block */
} htab_chunker_t;

int htab_chunker_init(htab_chunker_t *c);
void htab_chunker_free(htab_chunker_t *c);
/* Drop the open chunk and everything staged, unsent (counters kept). */
void htab_chunker_reset(htab_chunker_t *c);

/* Close the open chunk (if any) and write everything staged to f. */
void htab_chunker_flush(htab_chunker_t *c, mig_file_t *f);

/*
 * Write the closed chunks to f when that is cheap: when they are at least
 * as large as the open chunk that has to be moved to the front after them
 * (so moving costs at most one copy of what is sent, however long the open
 * run grows). Call between units of work.
 */
void htab_chunker_push(htab_chunker_t *c, mig_file_t *f);

/*
 * Add n entries of consecutive slots from first (wire bytes in e, invalid
 * entries all zero). send_invalid: later passes send invalid entries as
 * invalid runs; the first pass and the encoder skip them (the destination
 * table starts zeroed).
 */
void htab_chunker_add(htab_chunker_t *c, mig_file_t *f, uint64_t first, uint64_t n,
		      const uint8_t *e, bool send_invalid);

/*
 * First-pass form: read the valid entries of slots [first, first + n) of h
 * (n <= HTAB_BLOCK_SLOTS) with hpt_read_chunks straight into the staging
 * buffer, headers and all, as valid runs (invalid slots are skipped, as add with
 * send_invalid false would). A run touching the block's end stays open, so
 * runs continue across blocks up to 65535 entries. Returns the number of
 * valid entries. Same snapshot contract as hpt_read_entries.
 */
uint64_t htab_chunker_read_block(htab_chunker_t *c, mig_file_t *f, hpt_t *h, uint64_t first,
				 uint64_t n);
/*
 * Forget what the last htab_chunker_read_block staged (e.g. the table was
 * resized under it), as if it had not run. Only directly after it: no
 * push, flush or add in between.
 */
void htab_chunker_undo(htab_chunker_t *c);

#endif
