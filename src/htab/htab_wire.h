/* SPDX-License-Identifier: MIT */
/*
 * Wire layout of the `spapr/htab` payloads (wire-format.md §2), in one place
 * for the saver, the loader and the encoder. Only constants and layout
 * checks live here: no code that reads or writes a channel.
 *
 *   START payload    := be32 header
 *   PART/END payload := be32 header [chunk* endmark]    (chunks when header == 0)
 *   chunk            := be32 index, be16 n_valid, be16 n_invalid, n_valid x HPTE
 *   endmark          := be32 0, be16 0, be16 0
 *   HPTE             := be64 V, be64 R
 */
#ifndef HPTMIG_HTAB_WIRE_H
#define HPTMIG_HTAB_WIRE_H

#include <stdint.h>

#include "hptmig/hpt.h"
#include "hptmig/htab.h"

#define HTAB_HDR_SIZE 4u          /* be32 header */
#define HTAB_CHUNK_HDR_SIZE 8u    /* be32 index, be16 n_valid, be16 n_invalid */
#define HTAB_HPTE_SIZE 16u        /* be64 V, be64 R */
#define HTAB_ENDMARK_SIZE 8u      /* a chunk header of all zeros */
#define HTAB_HDR_CHUNKS 0u        /* header value: chunks follow */

/* Shifts a stream can carry: 18 (256 KiB) .. 36 (2^32 slots, be32 index). */
#define HTAB_SHIFT_MIN HPT_SHIFT_MIN
#define HTAB_SHIFT_MAX HPT_SHIFT_STREAM_MAX

/* The hypervisor's software bit: never on the wire, cleared on load. */
#define HTAB_V_HV_BIT HPTE64_V_HVLOCK

struct htab_wire_chunk_hdr {
	uint8_t index[4];
	uint8_t n_valid[2];
	uint8_t n_invalid[2];
};
struct htab_wire_hpte {
	uint8_t v[8];
	uint8_t r[8];
};

_Static_assert(sizeof(struct htab_wire_chunk_hdr) == HTAB_CHUNK_HDR_SIZE, "chunk header size");
_Static_assert(sizeof(struct htab_wire_hpte) == HTAB_HPTE_SIZE, "HPTE size");
_Static_assert(HTAB_HPTE_SIZE == HPTE64_SIZE, "wire HPTE equals table HPTE");
_Static_assert(HTAB_RUN_MAX == UINT16_MAX, "runs are be16 counts");
_Static_assert(HTAB_SHIFT_MAX - 4 == 32, "the largest stream table has 2^32 slots");
_Static_assert(HTAB_HDR_NO_HPT == HPT_NO_HPT, "one no-HPT value");

/* Is the V word in wire bytes p valid? (bit 0x1 of the last byte of V) */
static inline int htab_wire_valid(const uint8_t *hpte)
{
	return hpte[7] & 1;
}

#endif
