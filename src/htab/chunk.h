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

#include "hptmig/stream.h"

/*
 * One open chunk being built. buf holds the valid run (HTAB_RUN_MAX
 * entries); the chunk is written on flush or when the next entry cannot
 * extend it. Owned by one thread (the migration thread).
 */
typedef struct htab_chunker {
	uint8_t *buf;
	bool open;
	uint64_t index;
	uint32_t n_valid;
	uint32_t n_invalid;
	/* Counters of everything written through this chunker. */
	uint64_t chunks, valid_sent, invalid_sent;
} htab_chunker_t;

int htab_chunker_init(htab_chunker_t *c);
void htab_chunker_free(htab_chunker_t *c);

/* Write the open chunk (if any) to f. */
void htab_chunker_flush(htab_chunker_t *c, mig_file_t *f);

/*
 * Add n entries of consecutive slots from first (wire bytes in e, invalid
 * entries all zero). send_invalid: later passes send invalid entries as
 * invalid runs; the first pass and the encoder skip them (the destination
 * table starts zeroed).
 */
void htab_chunker_add(htab_chunker_t *c, mig_file_t *f, uint64_t first, uint64_t n,
		      const uint8_t *e, bool send_invalid);

/*
 * First-pass form of add (valid runs only), for large blocks: runs wholly
 * inside the block go straight from e to the channel (no copy through buf);
 * only a run touching either end of the block passes through buf, so runs
 * continue across blocks up to HTAB_RUN_MAX.
 */
void htab_chunker_add_block(htab_chunker_t *c, mig_file_t *f, uint64_t first, uint64_t n,
			    const uint8_t *e);

#endif
