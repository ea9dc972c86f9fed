/* SPDX-License-Identifier: MIT */
/*
 * The chunk writer (see chunk.h): entries in, (valid run, invalid run)
 * chunks out. It must never emit a chunk longer than 65535 entries per run,
 * an invalid entry inside a valid run, or V bit 0x40 (hpt reads clear it;
 * the writer clears it again where it copies, as a second line of defence).
 */
#include "chunk.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "htab_wire.h"

int htab_chunker_init(htab_chunker_t *c)
{
	memset(c, 0, sizeof(*c));
	c->buf = malloc((size_t)HTAB_RUN_MAX * HTAB_HPTE_SIZE);
	return c->buf ? 0 : -ENOMEM;
}

void htab_chunker_free(htab_chunker_t *c)
{
	free(c->buf);
	c->buf = NULL;
}

static void put_chunk_hdr(mig_file_t *f, uint64_t index, uint32_t nv, uint32_t ni)
{
	mig_file_put_be32(f, (uint32_t)index);
	mig_file_put_be16(f, (uint16_t)nv);
	mig_file_put_be16(f, (uint16_t)ni);
}

void htab_chunker_flush(htab_chunker_t *c, mig_file_t *f)
{
	if (!c->open)
		return;
	put_chunk_hdr(f, c->index, c->n_valid, c->n_invalid);
	if (c->n_valid)
		mig_file_put_buffer(f, c->buf, (size_t)c->n_valid * HTAB_HPTE_SIZE);
	c->chunks++;
	c->valid_sent += c->n_valid;
	c->invalid_sent += c->n_invalid;
	c->open = false;
	c->n_valid = c->n_invalid = 0;
}

static inline void copy_hpte(uint8_t *dst, const uint8_t *src)
{
	memcpy(dst, src, HTAB_HPTE_SIZE);
	dst[7] &= (uint8_t)~HTAB_V_HV_BIT;
}

void htab_chunker_add(htab_chunker_t *c, mig_file_t *f, uint64_t first, uint64_t n,
		      const uint8_t *e, bool send_invalid)
{
	for (uint64_t i = 0; i < n; i++, e += HTAB_HPTE_SIZE) {
		uint64_t slot = first + i;
		bool valid = htab_wire_valid(e);
		if (!valid && !send_invalid) {
			htab_chunker_flush(c, f);
			continue;
		}
		if (c->open && slot == c->index + c->n_valid + c->n_invalid) {
			if (valid && c->n_invalid == 0 && c->n_valid < HTAB_RUN_MAX) {
				copy_hpte(c->buf + (size_t)c->n_valid * HTAB_HPTE_SIZE, e);
				c->n_valid++;
				continue;
			}
			if (!valid && c->n_invalid < HTAB_RUN_MAX) {
				c->n_invalid++;
				continue;
			}
		}
		htab_chunker_flush(c, f);
		c->open = true;
		c->index = slot;
		if (valid) {
			copy_hpte(c->buf, e);
			c->n_valid = 1;
		} else {
			c->n_invalid = 1;
		}
	}
}

/* Length of the run of valid entries at e[0..n). */
static uint64_t valid_run(const uint8_t *e, uint64_t n)
{
	uint64_t i = 0;
	while (i < n && htab_wire_valid(e + i * HTAB_HPTE_SIZE))
		i++;
	return i;
}

static uint64_t invalid_run(const uint8_t *e, uint64_t n)
{
	uint64_t i = 0;
	while (i < n && !htab_wire_valid(e + i * HTAB_HPTE_SIZE))
		i++;
	return i;
}

void htab_chunker_add_block(htab_chunker_t *c, mig_file_t *f, uint64_t first, uint64_t n,
			    const uint8_t *e)
{
	uint64_t i = 0;
	/* A run carried over from the previous block continues here. */
	if (c->open && c->n_invalid == 0 && c->index + c->n_valid == first) {
		uint64_t k = valid_run(e, n);
		htab_chunker_add(c, f, first, k, e, false);
		if (k == n)
			return; /* the whole block continues the run */
		i = k;
	}
	htab_chunker_flush(c, f);
	while (i < n) {
		i += invalid_run(e + i * HTAB_HPTE_SIZE, n - i);
		if (i >= n)
			break;
		uint64_t k = valid_run(e + i * HTAB_HPTE_SIZE, n - i);
		if (i + k == n) {
			/* Touches the block's end: may continue in the next block. */
			htab_chunker_add(c, f, first + i, k, e + i * HTAB_HPTE_SIZE, false);
			break;
		}
		while (k > 0) {
			uint64_t m = k < HTAB_RUN_MAX ? k : HTAB_RUN_MAX;
			put_chunk_hdr(f, first + i, (uint32_t)m, 0);
			mig_file_put_buffer(f, e + i * HTAB_HPTE_SIZE, (size_t)m * HTAB_HPTE_SIZE);
			c->chunks++;
			c->valid_sent += m;
			i += m;
			k -= m;
		}
	}
}
