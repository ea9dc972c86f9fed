/* SPDX-License-Identifier: MIT */
/*
 * The chunk writer (see chunk.h): entries in, (valid run, invalid run)
 * chunks out, staged in one buffer and written to the channel in big
 * pieces. It must never emit a chunk longer than 65535 entries per run, an
 * invalid entry inside a valid run, or V bit 0x40 (hpt reads clear it;
 * where this file copies entries it clears it again, as a second line of
 * defence; entries read by htab_chunker_read_block are placed by
 * hpt_read_chunks, which reads 0x40 clear by construction: it is the lock).
 */
#include "chunk.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "hptmig/qemu_wire.h"

/* Worst-case bytes one read_block stages: every other slot valid (one
 * header per entry), plus one header inserted where a joined run is cut
 * at 65535 entries. */
#define BLOCK_NEED                                                                         \
	((size_t)HTAB_BLOCK_SLOTS * HTAB_HPTE_SIZE +                                       \
	 ((size_t)HTAB_BLOCK_SLOTS / 2 + 1) * HTAB_CHUNK_HDR_SIZE + HTAB_CHUNK_HDR_SIZE)
/* The largest open chunk: its header room and 65535 valid entries. */
#define OPEN_MAX ((size_t)HTAB_CHUNK_HDR_SIZE + (size_t)HTAB_RUN_MAX * HTAB_HPTE_SIZE)
/* After a forced push only the open chunk is left: room for two blocks. */
#define STAGE_CAP (OPEN_MAX + 2 * BLOCK_NEED)
/* htab_chunker_add stages at most a header and an entry per entry. */
#define ADD_NEED ((size_t)HTAB_CHUNK_HDR_SIZE + HTAB_HPTE_SIZE)

_Static_assert(HTAB_BLOCK_SLOTS <= HTAB_RUN_MAX, "a run inside one block never needs a cut");
_Static_assert(HTAB_BLOCK_SLOTS % 64 == 0, "blocks cover whole bitmap words");

int htab_chunker_init(htab_chunker_t *c)
{
	memset(c, 0, sizeof(*c));
	c->buf = malloc(STAGE_CAP);
	if (!c->buf)
		return -ENOMEM;
	c->cap = STAGE_CAP;
	return 0;
}

void htab_chunker_free(htab_chunker_t *c)
{
	free(c->buf);
	c->buf = NULL;
}

void htab_chunker_reset(htab_chunker_t *c)
{
	c->st.len = 0;
	c->st.open = false;
	c->st.n_valid = c->st.n_invalid = 0;
	c->undo = c->st;
}

/* Write the open chunk's header into its room: it is complete. */
static void close_chunk(htab_chunker_t *c)
{
	htab_chunk_state_t *s = &c->st;
	if (!s->open)
		return;
	htab_chunk_hdr_put(c->buf + s->hdr,
			   (struct htab_chunk_hdr){ .index = (uint32_t)s->index,
						    .n_valid = (uint16_t)s->n_valid,
						    .n_invalid = (uint16_t)s->n_invalid });
	s->chunks++;
	s->valid_sent += s->n_valid;
	s->invalid_sent += s->n_invalid;
	s->open = false;
	s->n_valid = s->n_invalid = 0;
}

/* Send the closed chunks; the open one moves to the front of buf. */
static void send_closed(htab_chunker_t *c, mig_file_t *f)
{
	htab_chunk_state_t *s = &c->st;
	size_t closed = s->open ? s->hdr : s->len;
	if (closed == 0)
		return;
	mig_file_put_buffer(f, c->buf, closed);
	memmove(c->buf, c->buf + closed, s->len - closed);
	s->len -= closed;
	if (s->open)
		s->hdr = 0;
}

void htab_chunker_flush(htab_chunker_t *c, mig_file_t *f)
{
	close_chunk(c);
	send_closed(c, f);
}

void htab_chunker_push(htab_chunker_t *c, mig_file_t *f)
{
	htab_chunk_state_t *s = &c->st;
	size_t closed = s->open ? s->hdr : s->len;
	if (closed >= s->len - closed)
		send_closed(c, f);
}

static inline void copy_hpte(uint8_t *dst, const uint8_t *src)
{
	memcpy(dst, src, HTAB_HPTE_SIZE);
	dst[7] &= (uint8_t)~HPTE64_V_HVLOCK;
}

void htab_chunker_add(htab_chunker_t *c, mig_file_t *f, uint64_t first, uint64_t n,
		      const uint8_t *e, bool send_invalid)
{
	htab_chunk_state_t *s = &c->st;
	for (uint64_t i = 0; i < n; i++, e += HTAB_HPTE_SIZE) {
		uint64_t slot = first + i;
		bool valid = htab_wire_valid(e);
		if (!valid && !send_invalid) {
			close_chunk(c);
			continue;
		}
		if (c->cap - s->len < ADD_NEED)
			send_closed(c, f); /* leaves at most the open chunk: room */
		if (s->open && slot == s->index + s->n_valid + s->n_invalid) {
			if (valid && s->n_invalid == 0 && s->n_valid < HTAB_RUN_MAX) {
				copy_hpte(c->buf + s->len, e);
				s->len += HTAB_HPTE_SIZE;
				s->n_valid++;
				continue;
			}
			if (!valid && s->n_invalid < HTAB_RUN_MAX) {
				s->n_invalid++;
				continue;
			}
		}
		close_chunk(c);
		s->open = true;
		s->index = slot;
		s->hdr = s->len;
		s->len += HTAB_CHUNK_HDR_SIZE;
		if (valid) {
			copy_hpte(c->buf + s->len, e);
			s->len += HTAB_HPTE_SIZE;
			s->n_valid = 1;
		} else {
			s->n_invalid = 1;
		}
	}
}

uint64_t htab_chunker_read_block(htab_chunker_t *c, mig_file_t *f, hpt_t *h, uint64_t first,
				 uint64_t n)
{
	htab_chunk_state_t *s = &c->st;
	if (n > HTAB_BLOCK_SLOTS)
		n = HTAB_BLOCK_SLOTS; /* callers never ask for more: the bounds need it */
	if (c->cap - s->len < BLOCK_NEED)
		send_closed(c, f);
	c->undo = *s;
	/* The open chunk continues only as a valid run ending just before us. */
	bool join = s->open && s->n_invalid == 0 && s->n_valid < HTAB_RUN_MAX &&
		    s->index + s->n_valid == first;
	if (!join)
		close_chunk(c);
	uint8_t *out = c->buf + s->len;
	hpt_chunks_t got;
	uint64_t nvalid = hpt_read_chunks(h, first, n, out, join, &got);
	size_t len = got.len;
	if (join) {
		uint64_t joined = got.joined;
		if (s->n_valid + joined > HTAB_RUN_MAX) {
			/* Cut the run at 65535: a header goes in after the entries
			 * that complete the open chunk (at most once per block: the
			 * rest is shorter than a block). */
			size_t k = HTAB_RUN_MAX - s->n_valid;
			size_t at = k * HTAB_HPTE_SIZE;
			memmove(out + at + HTAB_CHUNK_HDR_SIZE, out + at, len - at);
			len += HTAB_CHUNK_HDR_SIZE;
			got.last_pos += HTAB_CHUNK_HDR_SIZE;
			s->n_valid = HTAB_RUN_MAX;
			close_chunk(c);
			s->open = true;
			s->index = first + k;
			s->hdr = (size_t)(out - c->buf) + at;
			s->n_valid = (uint32_t)(joined - k);
			s->n_invalid = 0;
		} else {
			s->n_valid += (uint32_t)joined;
		}
		/* The run ended inside the block: its chunk is complete. */
		if (joined < n)
			close_chunk(c);
	}
	/* hpt_read_chunks wrote every run's header, final except for a run
	 * touching the block's end (always the last): that one stays open. */
	uint64_t closed = got.nruns, sent = nvalid - got.joined;
	if (got.nruns && got.last_slot + got.last_n == first + n) {
		closed--;
		sent -= got.last_n;
		s->open = true;
		s->index = got.last_slot;
		s->hdr = (size_t)(out - c->buf) + got.last_pos;
		s->n_valid = (uint32_t)got.last_n;
		s->n_invalid = 0;
	}
	s->chunks += closed;
	s->valid_sent += sent;
	s->len += len;
	return nvalid;
}

void htab_chunker_undo(htab_chunker_t *c)
{
	c->st = c->undo;
}
