/* SPDX-License-Identifier: MIT */
/*
 * The wire shapes of QEMU's migration stream and of our return path, in one
 * place (wire-format.md): record types and their names, magic and version,
 * COMMAND numbers, the `spapr/htab` payload layout (chunk header with
 * inline get/put, no-HPT, shift bounds) and the return-path messages. Every
 * encoder and decoder uses these; nothing here reads or writes a channel.
 */
#ifndef HPTMIG_QEMU_WIRE_H
#define HPTMIG_QEMU_WIRE_H

#include <stdint.h>

#include "hptmig/base.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------- stream framing */

/* wire-format.md §1. All integers big-endian. */
#define QEMU_VM_FILE_MAGIC 0x5145564du     /* "QEVM" */
#define QEMU_VM_FILE_VERSION 3u
#define QEMU_VM_FILE_VERSION_COMPAT 2u     /* obsolete (QEMU before 0.13): refused */

/* Record type bytes (QEMU's savevm.c names). */
enum qemu_vm_record {
	QEMU_VM_EOF = 0x00,
	QEMU_VM_SECTION_START = 0x01,
	QEMU_VM_SECTION_PART = 0x02,
	QEMU_VM_SECTION_END = 0x03,
	QEMU_VM_SECTION_FULL = 0x04,
	QEMU_VM_SUBSECTION = 0x05,
	QEMU_VM_VMDESCRIPTION = 0x06,
	QEMU_VM_CONFIGURATION = 0x07,
	QEMU_VM_COMMAND = 0x08,
	QEMU_VM_SECTION_FOOTER = 0x7e,
};

/* Human name of a record type byte ("SECTION_START", ...; "unknown"). */
static inline const char *qemu_vm_record_name(int type)
{
	switch (type) {
	case QEMU_VM_EOF: return "EOF";
	case QEMU_VM_SECTION_START: return "SECTION_START";
	case QEMU_VM_SECTION_PART: return "SECTION_PART";
	case QEMU_VM_SECTION_END: return "SECTION_END";
	case QEMU_VM_SECTION_FULL: return "SECTION_FULL";
	case QEMU_VM_SUBSECTION: return "SUBSECTION";
	case QEMU_VM_VMDESCRIPTION: return "VMDESCRIPTION";
	case QEMU_VM_CONFIGURATION: return "CONFIGURATION";
	case QEMU_VM_COMMAND: return "COMMAND";
	case QEMU_VM_SECTION_FOOTER: return "SECTION_FOOTER";
	default: return "unknown";
	}
}

/* COMMAND numbers (QEMU's enum qemu_vm_cmd); only SWITCHOVER_START is accepted by default. */
#define MIG_CMD_PING 2u /* be32 value: the destination answers PONG on its return path */
#define MIG_CMD_SWITCHOVER_START 11u

/* ------------------------------------------------- spapr/htab payloads */

/*
 * wire-format.md §2:
 *   START payload    := be32 header (htab_shift, or HTAB_HDR_NO_HPT)
 *   PART/END payload := be32 header [chunk* endmark]    (chunks when header == 0)
 *   chunk            := be32 index, be16 n_valid, be16 n_invalid, n_valid x HPTE
 *   endmark          := be32 0, be16 0, be16 0
 *   HPTE             := be64 V, be64 R
 */
#define HTAB_HDR_SIZE 4u          /* be32 header */
#define HTAB_CHUNK_HDR_SIZE 8u    /* be32 index, be16 n_valid, be16 n_invalid */
#define HTAB_HPTE_SIZE 16u        /* be64 V, be64 R */
#define HTAB_ENDMARK_SIZE 8u      /* a chunk header of all zeros */
#define HTAB_HDR_CHUNKS 0u        /* header value: chunks follow */
/* Header value (and hptmig/verify htab_shift) of a "no HPT" (radix) guest. */
#define HTAB_HDR_NO_HPT 0xffffffffu
/* Longest valid or invalid run in one chunk (a be16 count). */
#define HTAB_RUN_MAX 65535u

/*
 * Shifts. A stream may name any architected table, 18 (256 KiB) .. 46
 * (64 TiB): a reader of foreign streams (the analyser) accepts that range.
 * A be32 chunk index addresses 2^32 slots, so the largest table this
 * project allocates (and the loader accepts) has shift 36.
 */
#define HTAB_STREAM_SHIFT_MIN 18u
#define HTAB_STREAM_SHIFT_MAX 46u
#define HTAB_ALLOC_SHIFT_MAX 36u

struct htab_chunk_hdr {
	uint32_t index;
	uint16_t n_valid;
	uint16_t n_invalid;
};

/* Decode the HTAB_CHUNK_HDR_SIZE bytes at p. */
static inline struct htab_chunk_hdr htab_chunk_hdr_get(const uint8_t *p)
{
	struct htab_chunk_hdr h = {
		.index = hm_load_be32(p),
		.n_valid = hm_load_be16(p + 4),
		.n_invalid = hm_load_be16(p + 6),
	};
	return h;
}

/* Encode h into the HTAB_CHUNK_HDR_SIZE bytes at p. */
static inline void htab_chunk_hdr_put(uint8_t *p, struct htab_chunk_hdr h)
{
	hm_store_be32(p, h.index);
	hm_store_be16(p + 4, h.n_valid);
	hm_store_be16(p + 6, h.n_invalid);
}

/* What htab_chunk_parse found. */
enum htab_chunk_kind {
	HTAB_CHUNK_RANGE = -1, /* index + n_valid + n_invalid exceeds the table */
	HTAB_CHUNK_ENDMARK = 0,
	HTAB_CHUNK_RUNS = 1,   /* a chunk within the table (n_valid = n_invalid = 0 included) */
};

/*
 * The one chunk-header parser (the loader's and the analyser's): decode the
 * HTAB_CHUNK_HDR_SIZE bytes at p into *h and check them, in 64-bit
 * arithmetic, against a table of slots entries.
 */
static inline enum htab_chunk_kind htab_chunk_parse(const uint8_t *p, uint64_t slots,
						    struct htab_chunk_hdr *h)
{
	*h = htab_chunk_hdr_get(p);
	if ((h->index | h->n_valid | h->n_invalid) == 0)
		return HTAB_CHUNK_ENDMARK;
	if ((uint64_t)h->index + h->n_valid + h->n_invalid > slots)
		return HTAB_CHUNK_RANGE;
	return HTAB_CHUNK_RUNS;
}

/* Is the HPTE in wire bytes p valid? (bit 0x1 of the last byte of V) */
static inline int htab_wire_valid(const uint8_t *hpte)
{
	return hpte[7] & 1;
}

_Static_assert(HTAB_ALLOC_SHIFT_MAX - 4 == 32, "the largest allocated table has 2^32 slots");
_Static_assert(HTAB_RUN_MAX == UINT16_MAX, "runs are be16 counts");

/* ------------------------------------------------------ hptmig/verify */

/*
 * wire-format.md §5 (the project's section, never sent to QEMU):
 *   v1 payload := be32 htab_shift, be64 valid, 32-byte HTAB digest
 *   v2 payload := be32 htab_shift, be64 valid, be32 VERIFY_BLOCK_SLOTS,
 *                 32-byte block root
 * A block is VERIFY_BLOCK_SLOTS consecutive slots; its digest input starts
 * with be32 htab_shift, be64 block number (VERIFY_BLOCK_PREFIX bytes), then
 * be64 slot, be64 V & ~0x40, be64 R (VERIFY_REC_SIZE bytes) per valid slot.
 */
#define VERIFY_BLOCK_SLOTS 4096u
#define VERIFY_BLOCK_PREFIX 12u
#define VERIFY_REC_SIZE 24u
#define VERIFY_V1_PAYLOAD_SIZE 44u
#define VERIFY_V2_PAYLOAD_SIZE 48u

/* --------------------------------------------------------- return path */

/*
 * Our return path (destination to source; not QEMU's): be16 type, be16
 * length, payload[length]. The structs are byte layouts (no padding,
 * big-endian fields written with hm_store_be*).
 *   RESUMED: 32-byte digest, be64 valid entries, be64 bytes received,
 *            be64 load time ns. The answer to a stream whose hptmig/verify
 *            is version 1 or absent (older sources read only this).
 *   RESUMED_ROOT: 32-byte block root, 32-byte digest, be64 valid, be64
 *            bytes, be64 load ns, be32 flags (bit 0: the digest was
 *            computed; otherwise it is zero). The answer to version 2.
 *   REFUSED: be32 code (two's complement), be64 offset, message bytes.
 *   PONG:    be32 value of the COMMAND PING it answers.
 */
enum mig_rp_type {
	MIG_RP_RESUMED = 1, /* loaded, verified, guest resumed */
	MIG_RP_REFUSED = 2, /* the destination refused the stream: code, offset, message */
	MIG_RP_PONG = 3,    /* answer to a COMMAND PING: its be32 value */
	MIG_RP_RESUMED_ROOT = 4, /* RESUMED with the block root (hptmig/verify v2) */
};

/* Longest payload a reader accepts (a REFUSED with its message fits). */
#define MIG_RP_PAYLOAD_MAX 1024u

struct mig_rp_wire_hdr {
	uint8_t type[2];
	uint8_t len[2];
};
struct mig_rp_wire_resumed {
	uint8_t digest[32];
	uint8_t valid[8];
	uint8_t bytes[8];
	uint8_t load_ns[8];
};
struct mig_rp_wire_resumed_root {
	uint8_t root[32];
	uint8_t digest[32];
	uint8_t valid[8];
	uint8_t bytes[8];
	uint8_t load_ns[8];
	uint8_t flags[4];
};
#define MIG_RP_RESUMED_DIGEST 0x1u /* RESUMED_ROOT flags: digest computed */
struct mig_rp_wire_refused {
	uint8_t code[4];
	uint8_t offset[8];
	/* then the message bytes, up to the length */
};
struct mig_rp_wire_pong {
	uint8_t value[4];
};

_Static_assert(sizeof(struct mig_rp_wire_hdr) == 4, "return-path header size");
_Static_assert(sizeof(struct mig_rp_wire_resumed) == 56, "RESUMED payload size");
_Static_assert(sizeof(struct mig_rp_wire_resumed_root) == 92, "RESUMED_ROOT payload size");
_Static_assert(sizeof(struct mig_rp_wire_refused) == 12, "REFUSED fixed payload size");
_Static_assert(sizeof(struct mig_rp_wire_pong) == 4, "PONG payload size");

#ifdef __cplusplus
}
#endif
#endif
