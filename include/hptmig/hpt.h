/* SPDX-License-Identifier: MIT */
/*
 * hpt: the PAPR hashed page table of a pseries guest, its hypercalls (with
 * QEMU/KVM semantics and every return code), the hash helpers, resize, the
 * end-to-end digest, and change tracking for live migration. Nothing here
 * prints, exits or aborts on guest input: hypercalls return H_* codes and
 * setup functions return 0 / a negative code with an hm_error_t filled.
 *
 * Concurrency contract (details in src/hpt/hpt.c, where the data lives):
 *  - Any number of threads (vCPUs) may call the hpt_h_* hypercalls at once,
 *    concurrently with one migration thread calling hpt_read_entries(),
 *    hpt_read_chunks(), hpt_track_take(), hpt_digest() and friends.
 *  - Every entry has a lock bit (HPTE64_V_HVLOCK, 0x40 in V) taken with a
 *    compare-and-swap and released with release ordering. Every read through
 *    this API returns a consistent (V, R) pair, never a torn one, with 0x40
 *    cleared. The lock is never held across a call boundary.
 *  - Change tracking: every hypercall (or hpt_write_entry*) that changes an
 *    entry marks its slot while holding the entry lock. A slot whose bit was
 *    taken and that changes afterwards is marked again: nothing is lost.
 *  - Resize commit swaps the table under running vCPUs using a sharded
 *    ("big reader") lock: an hcall touches only its own thread's shard line
 *    plus read-mostly lines; the commit waits for readers to drain.
 *  - hpt_create/hpt_destroy are not concurrent with anything else.
 */
#ifndef HPTMIG_HPT_H
#define HPTMIG_HPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hptmig/base.h"
#include "hptmig/qemu_wire.h"

#ifdef __cplusplus
extern "C" {
#endif

/* --------------------------------------------------------------- geometry */

/* The values are the wire's (hptmig/qemu_wire.h), defined once there. */
#define HPT_SHIFT_MIN HTAB_STREAM_SHIFT_MIN       /* smallest architected table: 256 KiB */
#define HPT_SHIFT_MAX HTAB_STREAM_SHIFT_MAX       /* largest architected table: 64 TiB */
#define HPT_SHIFT_STREAM_MAX HTAB_ALLOC_SHIFT_MAX /* largest table whose slots fit a be32 index */
#define HPT_NO_HPT HTAB_HDR_NO_HPT                /* htab_shift of a "no HPT" (radix) guest */
#define HPTE64_SIZE HTAB_HPTE_SIZE                /* bytes per entry: be64 V, be64 R */
#define HPTES_PER_GROUP 8u       /* entries per PTEG */
#define HPTEG_SIZE 128u          /* bytes per PTEG */

/* ----------------------------------------------------------------- V word */

#define HPTE64_V_SSIZE_SHIFT 62
#define HPTE64_V_SSIZE UINT64_C(0xC000000000000000)
#define HPTE64_V_SSIZE_256M UINT64_C(0x0000000000000000)
#define HPTE64_V_SSIZE_1T UINT64_C(0x4000000000000000)
#define HPTE64_V_AVPN UINT64_C(0x3FFFFFFFFFFFFF80)
#define HPTE64_V_AVPN_SHIFT 7
#define HPTE64_V_COMPARE_MASK (~UINT64_C(0x7f)) /* AVPN compare: (V & ~0x7f) == avpn */
#define HPTE64_V_SW_MASK UINT64_C(0x78)
#define HPTE64_V_HVLOCK UINT64_C(0x40)   /* hypervisor's own: our per-entry lock */
#define HPTE64_V_ABSENT UINT64_C(0x20)   /* KVM "absent"; stripped by H_ENTER */
#define HPTE64_V_BOLTED UINT64_C(0x10)   /* guest hint, part of guest state */
#define HPTE64_V_LOCK UINT64_C(0x08)     /* Linux native lock (guest's) */
#define HPTE64_V_LARGE UINT64_C(0x4)
#define HPTE64_V_SECONDARY UINT64_C(0x2)
#define HPTE64_V_VALID UINT64_C(0x1)

/* ----------------------------------------------------------------- R word */

#define HPTE64_R_PP0 UINT64_C(0x8000000000000000)
#define HPTE64_R_BIT62 UINT64_C(0x4000000000000000) /* never taken from the guest */
#define HPTE64_R_KEY_HI UINT64_C(0x3000000000000000)
#define HPTE64_R_RPN UINT64_C(0x0FFFFFFFFFFFF000)
#define HPTE64_R_KEY_LO UINT64_C(0x0000000000000E00)
#define HPTE64_R_R UINT64_C(0x100)
#define HPTE64_R_C UINT64_C(0x80)
#define HPTE64_R_WIMG UINT64_C(0x78)
#define HPTE64_R_W UINT64_C(0x40)
#define HPTE64_R_I UINT64_C(0x20)
#define HPTE64_R_M UINT64_C(0x10)
#define HPTE64_R_G UINT64_C(0x08)
#define HPTE64_R_N UINT64_C(0x4)
#define HPTE64_R_PP UINT64_C(0x3)

/* --------------------------------------------------------- hcall returns */

#define H_SUCCESS 0L
#define H_BUSY 1L
#define H_CLOSED 2L
#define H_NOT_AVAILABLE 3L
#define H_HARDWARE (-1L)
#define H_FUNCTION (-2L)
#define H_PRIVILEGE (-3L)
#define H_PARAMETER (-4L)
#define H_PTEG_FULL (-6L)
#define H_NOT_FOUND (-7L)
#define H_NO_MEM (-9L)
#define H_RESOURCE (-16L)

/* --------------------------------------------------------- hcall numbers */

#define H_REMOVE 0x04UL
#define H_ENTER 0x08UL
#define H_READ 0x0CUL
#define H_CLEAR_MOD 0x10UL
#define H_CLEAR_REF 0x14UL
#define H_PROTECT 0x18UL
#define H_BULK_REMOVE 0x124UL
#define H_RESIZE_HPT_PREPARE 0x36CUL
#define H_RESIZE_HPT_COMMIT 0x370UL

/* ----------------------------------------------------------- hcall flags */

#define H_EXACT (UINT64_C(1) << 39)
#define H_R_XLATE (UINT64_C(1) << 38)
#define H_READ_4 (UINT64_C(1) << 37)
#define H_AVPN (UINT64_C(1) << 31)
#define H_ANDCOND (UINT64_C(1) << 30)
#define H_ZERO_PAGE (UINT64_C(1) << 15)
#define H_N UINT64_C(4)
#define H_PP1 UINT64_C(2)
#define H_PP2 UINT64_C(1)

/* H_BULK_REMOVE translation-specifier high word (tsh) fields. */
#define H_BULK_REMOVE_TYPE UINT64_C(0xc000000000000000)
#define H_BULK_REMOVE_REQUEST UINT64_C(0x4000000000000000)
#define H_BULK_REMOVE_RESPONSE UINT64_C(0x8000000000000000)
#define H_BULK_REMOVE_END UINT64_C(0xc000000000000000)
#define H_BULK_REMOVE_CODE UINT64_C(0x3000000000000000)
#define H_BULK_REMOVE_SUCCESS UINT64_C(0x0000000000000000)
#define H_BULK_REMOVE_NOT_FOUND UINT64_C(0x1000000000000000)
#define H_BULK_REMOVE_PARM UINT64_C(0x2000000000000000)
#define H_BULK_REMOVE_HW UINT64_C(0x3000000000000000)
#define H_BULK_REMOVE_RC UINT64_C(0x0c00000000000000)   /* R (bit 59), C (bit 58) */
#define H_BULK_REMOVE_FLAGS UINT64_C(0x0300000000000000)
#define H_BULK_REMOVE_ABSOLUTE UINT64_C(0x0000000000000000)
#define H_BULK_REMOVE_ANDCOND UINT64_C(0x0100000000000000)
#define H_BULK_REMOVE_AVPN UINT64_C(0x0200000000000000)
#define H_BULK_REMOVE_PTEX UINT64_C(0x00ffffffffffffff)
#define H_BULK_REMOVE_MAX_BATCH 4

/* ------------------------------------------------------------ the table */

typedef struct hpt hpt_t;

typedef struct hpt_config {
	/*
	 * Largest page (actual page shift) a guest may map: H_ENTER refuses a
	 * larger one with H_PARAMETER. QEMU's default cap-hpt-max-page-size is
	 * 64K (16), which refuses 16M pages; 24 allows them, 34 also 16G
	 * pages. 0 means 16.
	 */
	unsigned max_page_shift;
	/*
	 * Guest RAM size in bytes, for H_ENTER's WIMG check: a real address below
	 * it is RAM (needs WIMG == M), at or above it is I/O (needs W|I|M of I or
	 * I|M). Also H_RESIZE_HPT_PREPARE's limit (QEMU's): a shift above
	 * hpt_shift_for_ram(ram_bytes) + 1 is H_RESOURCE. 0 means "every
	 * address is RAM" and no RAM-based resize limit (the machine always
	 * passes its RAM).
	 */
	uint64_t ram_bytes;
	/*
	 * Entries of each vCPU thread's change log while tracking (a power of
	 * two, 2..2^24; 0 means the default 65536, 256 KiB per thread that
	 * changes the table). A full log sends marks to the bitmap directly
	 * (correct, slower) until the migration thread drains it.
	 */
	unsigned track_ring_entries;
} hpt_config_t;

/* Fill cfg with the defaults: max_page_shift 16, ram_bytes 0,
 * track_ring_entries 65536. */
void hpt_config_default(hpt_config_t *cfg);

/*
 * QEMU's spapr_hpt_shift_for_ramsize(): log2(pow2ceil(ram)) - 7 (a table of
 * 1/128 of RAM), clamped to 18..46.
 */
unsigned hpt_shift_for_ram(uint64_t ram_bytes);

/*
 * Create an empty table of 1 << shift bytes (zero pages allocated lazily, so
 * a 2 GiB table is created in microseconds). cfg may be NULL (defaults).
 * Errors: HM_E_RANGE for shift outside 18..46 or above 36 (the stream cannot
 * name its slots), or a cfg value out of range; -ENOMEM.
 */
int hpt_create(unsigned shift, const hpt_config_t *cfg, hpt_t **out, hm_error_t *err);
void hpt_destroy(hpt_t *h);

/*
 * Back the whole table with memory now, without changing any entry (safe
 * while vCPUs run). A table is mapped lazily, and reading a part nobody
 * wrote faults it in: on some hosts (VMs backed on first touch) that costs
 * seconds for a 2 GiB table. A migration populates both tables while the
 * guest still runs, so no full walk (first pass, digest) pays it inside the
 * downtime. Returns 0, -ENOMEM or another negative errno (also in err).
 */
int hpt_populate(hpt_t *h, hm_error_t *err);

/* Current shift and number of slots (1 << (shift - 4)). Change on resize. */
unsigned hpt_shift(const hpt_t *h);
uint64_t hpt_slots(const hpt_t *h);
/* The configuration the table was created with. */
const hpt_config_t *hpt_config(const hpt_t *h);

/*
 * Bumped by every successful resize commit and by hpt_reset(): a migration
 * that sees it change sends a PART with a new header and restarts a full
 * pass. Starts at 0.
 */
uint64_t hpt_generation(const hpt_t *h);

/*
 * Replace the table by a zeroed one of the given shift (the destination's
 * answer to a START or a non-zero PART header). Same errors as hpt_create.
 * Tracking, if on, marks every slot of the new table. Bumps the generation.
 */
int hpt_reset(hpt_t *h, unsigned shift, hm_error_t *err);

/* ------------------------------------------------------------ hypercalls */

/*
 * All hypercalls follow QEMU's spapr semantics (see papr-hpt.md) and return
 * an H_* code; outputs are written only on H_SUCCESS unless stated. A ptex at
 * or beyond hpt_slots() is H_PARAMETER.
 */

/*
 * H_ENTER. Checks the segment size (B = 2, 3 reserved), the page-size
 * encoding, the cap and QEMU's filter (an actual page size other than the
 * base one only when it is 16M: 4K base / 64K actual is H_PARAMETER), WIMG (RAM vs I/O by cfg.ram_bytes), strips 0x60 from
 * pteh and bit 62 from ptel and sets the valid bit. Without H_EXACT takes the
 * first invalid slot of PTEG ptex & ~7, with H_EXACT slot ptex must be
 * invalid; otherwise H_PTEG_FULL. *slot (may be NULL) gets the slot used.
 */
long hpt_h_enter(hpt_t *h, uint64_t flags, uint64_t ptex, uint64_t pteh, uint64_t ptel,
		 uint64_t *slot);

/*
 * H_REMOVE. H_NOT_FOUND if the entry is invalid, or H_AVPN and
 * (V & ~0x7f) != avpn, or H_ANDCOND and (V & avpn) != 0. Otherwise the entry
 * becomes all zero and *old_v, *old_r (each may be NULL) get the old words.
 */
long hpt_h_remove(hpt_t *h, uint64_t flags, uint64_t ptex, uint64_t avpn, uint64_t *old_v,
		  uint64_t *old_r);

/*
 * H_PROTECT. H_NOT_FOUND as H_REMOVE (AVPN check only, ANDCOND ignored).
 * Replaces R's PP0, PP, N, KEY_HI, KEY_LO from flags. An unchanged R is
 * still H_SUCCESS but does not mark the entry for migration.
 */
long hpt_h_protect(hpt_t *h, uint64_t flags, uint64_t ptex, uint64_t avpn);

/*
 * H_READ. out[0], out[1] = V, R of ptex; with H_READ_4 out[0..7] = the four
 * entries from ptex & ~3. Invalid entries are returned as stored. V has 0x40
 * cleared.
 */
long hpt_h_read(hpt_t *h, uint64_t flags, uint64_t ptex, uint64_t out[8]);

/*
 * H_BULK_REMOVE. args = 4 x (tsh, tsl). Each request (type 01) is rewritten
 * in place as its response (type 10, code in 61:60, R/C of the removed entry
 * in 59:58, flags and ptex kept). A type 11 ends the list; type 00 or 10 is
 * H_PARAMETER (left untouched). Flags 3 or a ptex out of range gives response
 * code 2 and stops the list with H_PARAMETER. "Not found" does not stop it.
 */
long hpt_h_bulk_remove(hpt_t *h, uint64_t args[8]);

/* H_CLEAR_REF / H_CLEAR_MOD: H_NOT_FOUND unless valid; *old_r = R before. */
long hpt_h_clear_ref(hpt_t *h, uint64_t flags, uint64_t ptex, uint64_t *old_r);
long hpt_h_clear_mod(hpt_t *h, uint64_t flags, uint64_t ptex, uint64_t *old_r);

/*
 * H_RESIZE_HPT_PREPARE. flags must be 0 (H_PARAMETER). shift 0 cancels a
 * pending resize (H_SUCCESS). shift outside 18..46 is H_PARAMETER; above
 * hpt_shift_for_ram(cfg.ram_bytes) + 1 (QEMU's limit, when ram_bytes is set)
 * or 37..46 (this implementation cannot migrate such a table) is H_RESOURCE. Allocation
 * failure is H_NO_MEM. Builds the (empty) new table synchronously and returns
 * H_SUCCESS; a new prepare replaces a pending one of another shift.
 */
long hpt_h_resize_prepare(hpt_t *h, uint64_t flags, uint64_t shift);

/*
 * H_RESIZE_HPT_COMMIT. flags must be 0 (H_PARAMETER); no pending table or a
 * different shift is H_CLOSED. Rehashes every valid bolted entry into the
 * same slot number within its PTEG in the new table (other entries are
 * dropped); two bolted entries landing on one slot is H_PTEG_FULL and the old
 * table stays. The pending table is consumed either way (as QEMU). On
 * success bumps the generation and, when tracking, marks every slot.
 */
long hpt_h_resize_commit(hpt_t *h, uint64_t flags, uint64_t shift);

/*
 * Dispatch by hcall number: args[] in and out as QEMU's spapr hcall table
 * (H_ENTER: args[0..3] in, args[0] = slot out; H_REMOVE: args[0] = V,
 * args[1] = R; H_READ: args[0..7]; H_CLEAR_*: args[0] = old R; BULK: args
 * rewritten). Unknown numbers are H_FUNCTION.
 */
long hpt_hcall(hpt_t *h, uint64_t opcode, uint64_t args[8]);
/* Name of an hcall number ("H_ENTER") or of a return code ("H_PTEG_FULL"). */
const char *hpt_hcall_name(uint64_t opcode);
const char *hpt_ret_name(long ret);

/* --------------------------------------------------- raw entry access */


/*
 * Bulk read for a migration pass: entries first .. first+n-1 into buf as
 * n x 16 bytes big-endian (be64 V, be64 R: the wire layout), each entry a
 * consistent snapshot with 0x40 cleared; entries without the valid bit read
 * as 16 zero bytes (they carry nothing a migration sends). Returns the
 * number of valid entries copied; n is clipped to the table's end (the
 * caller checks with hpt_slots()).
 * Speed: with tracking on, an entry no hypercall touched since its bit was
 * last taken is read without its lock (validated by the tracking bit: see
 * hpt.c), so a first pass runs at a few times memcpy speed; without
 * tracking, valid entries cost one uncontended lock/unlock. Contract: with
 * tracking on, do not run this concurrently with hpt_track_take() on
 * another thread (the migration thread takes and reads; that is the use).
 */
uint64_t hpt_read_entries(hpt_t *h, uint64_t first, uint64_t n, uint8_t *buf);

/* What hpt_read_chunks() wrote. */
typedef struct hpt_chunks {
	size_t len;        /* bytes written to out */
	uint64_t nvalid;   /* valid entries written */
	uint64_t nruns;    /* runs written with a header */
	uint64_t joined;   /* join: leading entries continuing the caller's run */
	uint64_t last_slot; /* the last run with a header (when nruns > 0): */
	uint64_t last_n;    /*   its first slot, length, and the offset in out */
	size_t last_pos;    /*   of its header */
} hpt_chunks_t;

/* Bytes of the header hpt_read_chunks() writes before each run (the wire's). */
#define HPT_CHUNK_HDR_SIZE HTAB_CHUNK_HDR_SIZE

/*
 * The first-pass form of hpt_read_entries, in the migration stream's own
 * layout (wire-format.md: spapr/htab chunks): only the valid entries of
 * slots first .. first+n-1, as runs of consecutive valid slots, each run
 * an 8-byte header (be32 first slot, be16 length, be16 0: a chunk with no
 * invalid run) then its entries, 16 bytes each exactly as hpt_read_entries
 * gives them (be64 V with 0x40 clear, be64 R). So a first pass can send the
 * bytes as they are; the caller only fixes up runs it continues across
 * calls. join: the caller's previous run ended at slot first - 1; a run
 * starting at slot first continues it: its entries come first in out,
 * without a header (info->joined of them). n is clipped to the table's end
 * and to 65535 (a run's length must fit its be16). out must hold
 * n * 16 + (n / 2 + 1) * 8 bytes. Returns the number of valid entries.
 * Same snapshot guarantee and contract as hpt_read_entries (with tracking
 * on, entries are read lock-free, validated by the tracking bitmap);
 * cheaper per entry: V words are scanned a tracking word (64 slots) at a
 * time and entries and headers go straight to their place in out.
 */
uint64_t hpt_read_chunks(hpt_t *h, uint64_t first, uint64_t n, uint8_t *out, bool join,
			 hpt_chunks_t *info);


/*
 * Store an entry (the loader on the destination): V with 0x40 cleared, R as
 * given, under the entry lock; marks tracking like an hcall when the entry
 * changes. Returns false when slot is out of range.
 */
bool hpt_write_entry(hpt_t *h, uint64_t slot, uint64_t v, uint64_t r);
/*
 * Bulk forms for the loader: store n wire-format entries (16 bytes each,
 * big-endian) from buf, or zero n entries. Return the number stored
 * (clipped to the table's end).
 */
uint64_t hpt_write_entries(hpt_t *h, uint64_t first, uint64_t n, const uint8_t *buf);
/*
 * hpt_write_entries for a table no other thread can reach while it runs (a
 * destination's table before its guest resumes, a loader's own table):
 * plain stores of the wire bytes (0x40 cleared), no entry locks, so a load
 * runs near memcpy speed. Falls back to hpt_write_entries when tracking is
 * on. Using it while another thread touches the table is undefined.
 */
uint64_t hpt_write_entries_exclusive(hpt_t *h, uint64_t first, uint64_t n, const uint8_t *buf);
/*
 * The loader's bulk path: store the valid runs of len bytes of spapr/htab
 * chunks (be32 index, be16 n_valid, be16 n_invalid, n_valid x 16 bytes;
 * the layout hpt_read_chunks writes) whose headers the caller has checked
 * (whole chunks, ranges). Invalid runs are NOT applied: the caller clears
 * what may hold something. Same contract as hpt_write_entries_exclusive
 * (with tracking on it takes the locked path); entries beyond the table
 * are clipped. Returns false when an entry of a valid run lacks the valid
 * bit (it has been stored all the same: the caller fails the load).
 */
bool hpt_write_chunks_exclusive(hpt_t *h, const uint8_t *chunks, size_t len);
uint64_t hpt_clear_entries(hpt_t *h, uint64_t first, uint64_t n);

/* ------------------------------------------------------------- hashing */

#define HPT_SEG_256M 0u
#define HPT_SEG_1T 1u

/*
 * The hash of a virtual address: 256M segment: vsid ^ ((ea & 0x0FFFFFFF) >>
 * p); 1T: vsid ^ (vsid << 25) ^ ((ea & 0xFFFFFFFFFF) >> p). p = base page
 * shift. The PTEG index is hash & (npteg - 1) (primary) or ~hash & (npteg-1).
 */
uint64_t hpt_hash(unsigned ssize, uint64_t vsid, uint64_t ea, unsigned page_shift);
uint64_t hpt_pteg_index(unsigned shift, unsigned ssize, uint64_t vsid, uint64_t ea,
			unsigned page_shift, bool secondary);
/*
 * The one AVPN-to-hash-input step: from a V word and its base page shift,
 * the segment size (HPT_SEG_*), the VSID and the segment offset the AVPN
 * carries (EA bits from 23 up; bits inside the base page dropped; bits
 * base..22 are not in the AVPN and are zero). hpt_hash(ssize, vsid,
 * offset, base_shift) is then the entry's hash in every bit the AVPN
 * determines. Returns false for a reserved segment size.
 */
bool hpt_avpn_split(uint64_t v, unsigned base_shift, unsigned *ssize, uint64_t *vsid,
		    uint64_t *offset);
/* V word for the mapping: (B << 62) | ((va >> 23) << 7) | L | H | valid. */
uint64_t hpt_mapping_v(unsigned ssize, uint64_t vsid, uint64_t ea, bool large, bool secondary);

/*
 * Page-size encoding (papr-hpt.md's table plus QEMU's 16G row). Encode:
 * base/actual shift pair (12/12, 16/16, 24/24, 12/16, 12/24, 16/24, 34/34;
 * H_ENTER refuses 12/16, see there) to the L bit and the R bits to
 * OR into an RPN aligned to the actual page size; returns 0 or -EINVAL.
 * Decode: from V and R to base and actual shift; returns 0 or -EINVAL for an
 * encoding that matches no row. Neither needs a table.
 */
int hpt_page_encode(unsigned base_shift, unsigned actual_shift, bool *large, uint64_t *r_bits);
int hpt_page_decode(uint64_t v, uint64_t r, unsigned *base_shift, unsigned *actual_shift);

/*
 * Structural check of an entry at a slot of a table of the given shift: a
 * valid entry must have a known segment size and page size and sit in the
 * PTEG its AVPN and H bit hash to, in every index bit the AVPN determines
 * (those below 23 - p come from the EA offset and are not known). Invalid
 * entries always pass. Works without a table (the tests check workloads and
 * the hash helpers with it).
 */
bool hpt_entry_check(unsigned shift, uint64_t slot, uint64_t v, uint64_t r);

/* ------------------------------------------------------ change tracking */

/*
 * Start tracking with every bit clear: from the moment this returns every
 * change to an entry marks its slot. HM_E_STATE if already tracking,
 * -ENOMEM.
 */
int hpt_track_start(hpt_t *h, hm_error_t *err);
/* Stop tracking and free the bitmap (waits for in-flight hcalls). */
void hpt_track_stop(hpt_t *h);
bool hpt_tracking(const hpt_t *h);
/*
 * Count of changed slots not yet taken (0 when not tracking): O(1) in the
 * table size; first moves the vCPUs' ring entries into the bitmap (their
 * cost: one bit set per change since the last call). Exact when no thread
 * changes the table meanwhile.
 */
uint64_t hpt_track_pending(hpt_t *h);
/*
 * Marks (ever, over every tracking session of this table) that went to the
 * bitmap directly because the vCPU's change log was full or its shard had
 * another thread inside (docs/hpt.md, "Change tracking"): a benchmark's and
 * a test's view of how often the fast path was missed. Exact for one
 * thread per shard; threads sharing a shard may lose counts (a statistic,
 * kept without a locked instruction).
 */
uint64_t hpt_track_overflows(hpt_t *h);
/*
 * Take (read and clear) the next word of 64 changed-slot bits at or after
 * *cursor (a word cursor: start at 0). On success *first_slot is the slot of
 * bit 0 and *bits the changed slots (bit k = slot first_slot + k). Returns
 * false when nothing is left at or after the cursor, or when not tracking.
 * A take at cursor 0 (a pass starts) first moves the vCPUs' change logs
 * into the bitmap, so a pass sees the changes made before it started and
 * later ones wait for the next pass: start every pass at 0. One taker at a
 * time. Read the entries after taking their bits: a change
 * after the take is marked again. Nothing but the bitmap is read: the
 * entries are not touched (hpt_track_take_batch hints them into the cache).
 */
bool hpt_track_take(hpt_t *h, uint64_t *cursor, uint64_t *first_slot, uint64_t *bits);
/*
 * Up to max takes as above, under one reader lock, into first_slot[i] and
 * bits[i]; returns how many (fewer than max: nothing left at or after the
 * cursor, or not tracking). The taken words' entries are hinted into the
 * cache, so a caller that reads them next overlaps their cache misses
 * (a pass's reader; a caller that does not read them should use
 * hpt_track_take: each hint pulls a line a vCPU may have just written).
 */
size_t hpt_track_take_batch(hpt_t *h, uint64_t *cursor, uint64_t *first_slot, uint64_t *bits,
			    size_t max);

/* ---------------------------------------------------- digest and counts */

/*
 * How a whole-table walk reads each valid entry:
 *  LOCKED: under the entry's lock; safe from any thread at any time.
 *  TRACKED: lock-free, validated by change tracking as hpt_read_entries
 *    does, with the same contract (do not run it concurrently with
 *    hpt_track_take on another thread); the lock when tracking is off.
 *  QUIESCENT: plain loads; the caller guarantees that nothing writes the
 *    table during the call (vCPUs paused, or a loader's own table). If that
 *    is broken the answer may be wrong, never a crash.
 */
typedef enum {
	HPT_READ_LOCKED = 0,
	HPT_READ_TRACKED = 1,
	HPT_READ_QUIESCENT = 2,
} hpt_read_mode_t;

/* ------------------------------- the verification root, kept current */

/*
 * The block root of wire-format.md §5 (hptmig/verify version 2) kept up to
 * date while a migration runs, so the stop re-hashes only the blocks that
 * changed since they were hashed, then the root (docs/hpt.md, "The root
 * kept current"). Two owners:
 *  - the source: the tracker keeps the block digests and marks a block at
 *    every hpt_track_take of its slots (and starts with every block
 *    changed; a resize or reset brings a new tracker, so everything is
 *    hashed again). Call the hpt_track_root* functions from the taker's
 *    thread only (the migration thread), while tracking.
 *  - a loader: an hpt_blocks_t it marks for every range it writes; one
 *    thread. A table replaced (reset, resize: the generation changed)
 *    since the record was made starts it over, every block changed.
 */
typedef struct {
	uint8_t root[HM_SHA256_LEN];
	unsigned shift;    /* the table's, as in the root's input */
	uint64_t nblocks;  /* B */
	uint64_t valid;    /* valid entries (sum of the blocks' counts) */
	uint64_t bolted;   /* valid and bolted */
	uint64_t rehashed; /* blocks this call hashed */
} hpt_root_info_t;

typedef struct {
	uint64_t nblocks;     /* B of the current table */
	uint64_t dirty;       /* blocks changed since hashed (or never hashed) */
	uint64_t stop_blocks; /* blocks a root would hash now: dirty, or with
			       * change marks not taken yet (source) */
	uint64_t hashed;      /* blocks hashed so far by this cache */
	uint64_t hash_ns;     /* wall time spent on them (per-block cost) */
	uint64_t recent_block_ns; /* per block in the last refresh that hashed
				   * >= 8 blocks (0: none yet; source only) */
} hpt_root_stats_t;

/*
 * Hash blocks changed since they were hashed, until none is left or
 * budget_ns ran out (checked every 16 blocks); *left (may be NULL) gets
 * the blocks still changed. mode: LOCKED while vCPUs run, QUIESCENT when
 * stopped. Returns 0, HM_E_STATE (not tracking), -ENOMEM or -EIO.
 */
int hpt_track_root_refresh(hpt_t *h, hpt_read_mode_t mode, uint64_t budget_ns, uint64_t *left);
/* What the next hpt_track_root would cost; 0 or as above. */
int hpt_track_root_stats(hpt_t *h, hpt_root_stats_t *st);
/*
 * The root now: hashes every block changed since hashed or holding change
 * marks not taken yet, then the root over the cached digests. Equal to a
 * full recomputation (hpt_root) when nothing writes the table during the
 * call (vCPUs paused: use QUIESCENT). Returns 0 or as above.
 */
int hpt_track_root(hpt_t *h, hpt_read_mode_t mode, hpt_root_info_t *out);
/*
 * Threads a root (hpt_track_root, hpt_blocks_root) hashes its blocks on
 * when it has many (32 or more) to hash in QUIESCENT or LOCKED mode: 2 (the
 * caller and a helper it starts and joins), 1 on a single CPU.
 */
unsigned hpt_root_threads(void);

typedef struct hpt_blocks hpt_blocks_t;
int hpt_blocks_new(hpt_blocks_t **out);
void hpt_blocks_free(hpt_blocks_t *c);
/* h's table holds no valid entry (just created or reset, nothing written
 * since): every block digest is the empty one, none to hash. 0, -ENOMEM. */
int hpt_blocks_set_empty(hpt_blocks_t *c, hpt_t *h);
/* Slots [first, first + n) were written: their blocks are hashed again. */
void hpt_blocks_mark(hpt_blocks_t *c, uint64_t first, uint64_t n);
/* As hpt_track_root_refresh, for h's current table. 0, -ENOMEM or -EIO. */
int hpt_blocks_refresh(hpt_blocks_t *c, hpt_t *h, hpt_read_mode_t mode, uint64_t budget_ns,
		       uint64_t *left);
void hpt_blocks_stats(hpt_blocks_t *c, hpt_t *h, hpt_root_stats_t *st);
/* The root of h's table now, hashing the blocks marked since hashed.
 * Nothing may write h during the call but through this thread's marks. */
int hpt_blocks_root(hpt_blocks_t *c, hpt_t *h, hpt_read_mode_t mode, hpt_root_info_t *out);

/*
 * The HTAB digest of wire-format.md §5: SHA-256 over be32(shift), then for
 * each valid slot in increasing order be64(slot), be64(V & ~0x40), be64(R).
 * Returns 0 or -ENOMEM. Meaningful on a quiescent table (each entry is read
 * consistently, but not the table as a whole). One sequential pass over
 * the V words (R is read for valid entries only), each entry under its lock.
 */
int hpt_digest(hpt_t *h, uint8_t out[HM_SHA256_LEN]);
/*
 * The digest and the valid and bolted counts in one walk (either count
 * pointer may be NULL), each entry read as mode says; for the stop-and-copy
 * phase, where both sides digest inside the downtime. Returns 0, -ENOMEM or
 * -EINVAL (unknown mode).
 */
int hpt_summary(hpt_t *h, hpt_read_mode_t mode, uint64_t *valid, uint64_t *bolted,
		uint8_t out[HM_SHA256_LEN]);
/* Digest of a "no HPT" machine: SHA-256 of be32 0xffffffff. */
void hpt_digest_none(uint8_t out[HM_SHA256_LEN]);
/* Count valid and bolted (valid and 0x10) entries; either pointer may be NULL. */
void hpt_count(hpt_t *h, uint64_t *valid, uint64_t *bolted);

/* ------------------------------------------------ block digests and root */

/*
 * The block root of wire-format.md §5 (hptmig/verify version 2): the table
 * cut into blocks of HPT_VERIFY_BLOCK_SLOTS slots, a digest per block (32
 * zero bytes for a block without a valid slot) and a root over them, so a
 * side that knows which blocks changed re-hashes only those.
 */
#define HPT_VERIFY_BLOCK_SLOTS VERIFY_BLOCK_SLOTS
/* Bytes in front of a block's records in hpt_verify_block_hash's buffer. */
#define HPT_VERIFY_BLOCK_PREFIX VERIFY_BLOCK_PREFIX
/* Bytes of a block's record buffer: the prefix and every slot valid. */
#define HPT_VERIFY_BLOCK_BUF (VERIFY_BLOCK_PREFIX + VERIFY_BLOCK_SLOTS * VERIFY_REC_SIZE)

/*
 * Number of blocks B of a table of the given shift: max(1, slots / 4096).
 * 0 for a shift no table has (above 46, HPT_NO_HPT included).
 */
uint64_t hpt_verify_nblocks(unsigned shift);

/*
 * d_b from its records: buf holds HPT_VERIFY_BLOCK_PREFIX bytes of room
 * (filled here with be32 shift, be64 b) followed by nvalid records of 24
 * bytes (be64 slot, be64 V & ~0x40, be64 R, slots increasing, all inside
 * block b: the caller's contract). nvalid == 0 gives 32 zero bytes. For
 * readers that hold the entries elsewhere (the analyser's sparse table).
 * Returns 0 or -EIO (libcrypto failed).
 */
int hpt_verify_block_hash(unsigned shift, uint64_t b, uint8_t *buf, uint64_t nvalid,
			  uint8_t out[HM_SHA256_LEN]);

/*
 * d_b of block b of the current table, read as mode says (see
 * hpt_read_mode_t): the block is read under one hold of the reader lock,
 * so it is all from one table generation (a caller combining blocks
 * checks hpt_generation around them). Returns 0,
 * HM_E_RANGE (b not below hpt_verify_nblocks of the current shift),
 * -EINVAL (mode), -ENOMEM or -EIO.
 */
int hpt_block_digest(hpt_t *h, hpt_read_mode_t mode, uint64_t b, uint8_t out[HM_SHA256_LEN]);

/*
 * The root over nblocks block digests d[0..nblocks-1]: SHA-256 over
 * be32(shift), be64(nblocks), d_0 .. d_{B-1}. Returns 0, -ENOMEM or -EIO.
 */
int hpt_verify_root(unsigned shift, uint64_t nblocks, const uint8_t (*d)[HM_SHA256_LEN],
		    uint8_t out[HM_SHA256_LEN]);

/*
 * The root of the whole table by full recomputation (every block digest),
 * read as mode says. Like hpt_summary: meaningful on a quiescent table,
 * starts again when a resize replaces the table. Returns 0, -EINVAL
 * (mode), -ENOMEM or -EIO.
 */
int hpt_root(hpt_t *h, hpt_read_mode_t mode, uint8_t out[HM_SHA256_LEN]);
/*
 * hpt_root that also counts the valid and bolted entries and, when digest
 * is not NULL, computes the HTAB digest from the same records in the same
 * walk (each pointer but root may be NULL). Same returns as hpt_root.
 */
int hpt_root_summary(hpt_t *h, hpt_read_mode_t mode, uint64_t *valid, uint64_t *bolted,
		     uint8_t digest[HM_SHA256_LEN], uint8_t root[HM_SHA256_LEN]);

/* Root of a "no HPT" machine: SHA-256 of be32 0xffffffff (the digest's). */
void hpt_root_none(uint8_t out[HM_SHA256_LEN]);

#ifdef __cplusplus
}
#endif
#endif
