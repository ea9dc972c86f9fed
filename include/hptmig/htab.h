/* SPDX-License-Identifier: MIT */
/*
 * htab: QEMU's `spapr/htab` live migration section (wire-format.md §2): the
 * source side (setup, time-bounded iterate, pending, complete, cleanup over
 * an hpt_t with change tracking), a standalone loader that replays record
 * payloads into a table, and a canonical encoder. It never prints, exits or
 * aborts on input: bad bytes give a negative HM_E_* code and an error naming
 * the record, the chunk, the value and the byte offset.
 */
#ifndef HPTMIG_HTAB_H
#define HPTMIG_HTAB_H

#include <stdbool.h>
#include <stdint.h>

#include "hptmig/base.h"
#include "hptmig/hpt.h"
#include "hptmig/savevm.h"
#include "hptmig/stream.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------ identity */

#define HTAB_IDSTR "spapr/htab"
#define HTAB_INSTANCE_ID 0u
#define HTAB_VERSION_ID 1u

/*
 * A payload belongs to a START, PART or END record (QEMU_VM_SECTION_*).
 * The payload layout, no-HPT value and run limit: hptmig/qemu_wire.h.
 */
/* Default time budget of one iterate call. */
#define HTAB_BUDGET_DEFAULT_NS UINT64_C(5000000)

/* ----------------------------------------------------------- save side */

/*
 * How later passes find changed entries. BITMAP (default) takes words of the
 * summary-indexed change bitmap: cost proportional to what changed. LINEAR
 * reproduces QEMU's cost model: every pass visits and reads
 * every slot of the table; it is kept as the baseline benchmarks compare to.
 */
enum htab_scan {
	HTAB_SCAN_BITMAP = 0,
	HTAB_SCAN_LINEAR = 1,
};
/* "bitmap" / "linear" <-> enum. Parse returns 0 or HM_E_FORMAT. */
const char *htab_scan_name(enum htab_scan m);
int htab_scan_parse(const char *s, enum htab_scan *out);

typedef struct htab_save_opts {
	enum htab_scan scan;
	/* Time budget of one iterate call in ns (0 = HTAB_BUDGET_DEFAULT_NS). */
	uint64_t budget_ns;
} htab_save_opts_t;

void htab_save_opts_default(htab_save_opts_t *o);

typedef struct htab_save_stats {
	unsigned shift;            /* current htab_shift, or HTAB_HDR_NO_HPT */
	bool first_pass_done;      /* of the current table generation */
	uint64_t first_pass_next;  /* next slot the first pass will read */
	uint64_t passes;           /* completed later passes (sweeps) */
	uint64_t iterations;       /* iterate calls */
	uint64_t headers;          /* non-zero PART headers sent (resizes) */
	uint64_t chunks;           /* chunks written (all payloads) */
	uint64_t valid_sent;       /* entries sent in valid runs */
	uint64_t invalid_sent;     /* entries sent in invalid runs */
	uint64_t bytes;            /* payload bytes written by this section */
	uint64_t max_iterate_ns;   /* longest single iterate call */
	uint64_t budget_overruns;  /* iterate calls that ended past their budget */
} htab_save_stats_t;

typedef struct htab_save htab_save_t;

/*
 * Create the source-side state over hpt (borrowed: it must outlive the
 * state), or for a "no HPT" guest when hpt is NULL. opts may be NULL
 * (defaults). Tables above htab_shift 36 are refused (HM_E_RANGE): their
 * slots cannot be named by the stream's be32 index. Returns 0, HM_E_RANGE
 * or -ENOMEM with err filled.
 */
int htab_save_create(hpt_t *hpt, const htab_save_opts_t *opts, htab_save_t **out,
		     hm_error_t *err);
/* Free the state (stops change tracking if this state started it). */
void htab_save_destroy(htab_save_t *s);

/*
 * The handler contracts (called from the migration thread only; vCPUs may
 * run hypercalls on the table concurrently except during complete).
 * Each writes one record payload to f; errors are latched in f (first error
 * wins) and returned as a negative code.
 *
 * setup: START payload (be32 htab_shift, or 0xffffffff), start tracking
 *   (HM_E_STATE if someone else is tracking the table).
 * iterate: one PART payload. Sends first-pass runs, then changed entries,
 *   until budget_ns (0: the configured budget) or the channel's rate limit
 *   is used up; both are checked inside the scan, so a call overruns its
 *   budget by at most one unit of work (a block of 4096 slots or one chunk).
 *   If the table was resized since the last call, the payload is only the
 *   new shift as header and a new first pass starts. Returns 1 when all
 *   current work is sent (first pass done and a sweep of the changes reached
 *   the table's end), 0 when more remains, or a negative code.
 * pending: estimate of the bytes still to send (first-pass remainder from
 *   the observed valid density, plus changed slots); O(1). Same thread as
 *   the other handlers (it reads the pass state without locks).
 * complete: one END payload with vCPUs stopped: the rest of the first pass,
 *   then every changed entry. Afterwards a loader holds the source's table
 *   exactly. A resize between the last iterate and complete cannot be told
 *   in one END record: HM_E_STATE. A controller avoids it by asking
 *   htab_save_resized() once the vCPUs are stopped and, if true, iterating
 *   (PART records: the new header, then the new table's first pass) until
 *   iterate returns 1 before it calls complete.
 * cleanup: stop tracking, forget pass state; a new setup starts afresh.
 */
int htab_save_setup(htab_save_t *s, mig_file_t *f);
int htab_save_iterate(htab_save_t *s, mig_file_t *f, uint64_t budget_ns);
uint64_t htab_save_pending(htab_save_t *s);
/* What the pass being sent still sends: during the first pass (of a table
 * generation) its rest at the observed valid density only, not the changes
 * made meanwhile (a later pass sends those); afterwards the changed slots.
 * For progress displays; same thread and cost as pending. */
uint64_t htab_save_pass_pending(htab_save_t *s);
/* True when the table was resized since the passes being sent began (the
 * next iterate sends the new header); false with no HPT or before setup. */
bool htab_save_resized(htab_save_t *s);
int htab_save_complete(htab_save_t *s, mig_file_t *f);
void htab_save_cleanup(htab_save_t *s);
void htab_save_get_stats(const htab_save_t *s, htab_save_stats_t *out);

/* -------------------------------------------------------------- loader */

typedef struct htab_loader_opts {
	/*
	 * Largest htab_shift the loader allocates (0 = 36, the stream's limit).
	 * A destination sets it from its RAM; the fuzzer keeps it small.
	 */
	unsigned max_shift;
	/* Configuration of tables the loader creates (NULL = defaults). */
	const hpt_config_t *cfg;
	/*
	 * No other thread touches the caller's table while the loader writes it
	 * (a destination before its guest resumes): valid runs are stored
	 * without entry locks (hpt_write_entries_exclusive). Tables the loader
	 * creates itself are always written so, until taken.
	 */
	bool exclusive;
	/*
	 * Back each new table with memory as soon as START (or a resize
	 * header) names it (hpt_populate): a destination pays the first touch
	 * of its table while the source still runs, not in the digest inside
	 * the downtime, and learns at once when it lacks the memory.
	 */
	bool populate;
	/*
	 * Appended to the message refusing a table above max_shift, to tell
	 * the user how to raise the cap (e.g. "change it with --ram SIZE or
	 * --max-htab-shift N"); NULL = none. Borrowed: must outlive the loader.
	 */
	const char *max_shift_hint;
} htab_loader_opts_t;

typedef struct htab_load_stats {
	bool started;          /* a START record was loaded */
	bool no_hpt;           /* the current state is "no HPT" */
	unsigned shift;        /* current htab_shift (0 when none) */
	uint64_t records;      /* record payloads loaded */
	uint64_t tables;       /* tables allocated (START + non-zero headers) */
	uint64_t chunks;       /* chunks (endmarks not counted) */
	uint64_t valid_sent;   /* entries received in valid runs */
	uint64_t invalid_sent; /* entries received in invalid runs */
} htab_load_stats_t;

/* The table after loading: counts and HTAB digest (wire-format.md §5). */
typedef struct htab_summary {
	bool no_hpt;
	unsigned shift;
	uint64_t valid;
	uint64_t bolted;
	uint8_t digest[HM_SHA256_LEN];
} htab_summary_t;

typedef struct htab_loader htab_loader_t;

/*
 * A loader. table: load into this existing table (borrowed; START and
 * non-zero headers hpt_reset() it to the source's shift), or NULL to let the
 * loader create and own one. opts may be NULL.
 */
int htab_loader_create(hpt_t *table, const htab_loader_opts_t *opts, htab_loader_t **out);
void htab_loader_destroy(htab_loader_t *l);

/*
 * Load one record payload from f (positioned at the payload; exactly the
 * payload is consumed). record_type: QEMU_VM_SECTION_START/PART/END. Returns 0
 * or a negative code; the error (naming the record, chunk, values, offset)
 * is latched in f only (mig_file_error; the caller adds context and copies
 * it out). After an error the loader's table is partly written and must
 * not be used for a guest.
 */
int htab_loader_load(htab_loader_t *l, mig_file_t *f, int record_type);

/* Same, over a payload in memory: the whole buffer must be consumed; the
 * error is copied to err (may be NULL). */
int htab_loader_load_buffer(htab_loader_t *l, const void *buf, size_t len, int record_type,
			    hm_error_t *err);

void htab_loader_get_stats(const htab_loader_t *l, htab_load_stats_t *out);
/* The current table (NULL before START or for no HPT). Still owned by l. */
hpt_t *htab_loader_table(htab_loader_t *l);
/* Hand the table to the caller (NULL if none); the loader forgets it. */
hpt_t *htab_loader_take_table(htab_loader_t *l);
/*
 * Final counts and digest of what was loaded. HM_E_STATE before START.
 * Reads the whole table (O(table)); -ENOMEM from the digest.
 */
int htab_loader_summary(htab_loader_t *l, htab_summary_t *out, hm_error_t *err);

/*
 * The block root (wire-format.md §5) of the loaded table, kept current:
 * the loader records the blocks every chunk writes or clears (a new table
 * starts with every block known empty), so a destination hashes them as
 * records arrive (htab_loader_root_refresh, within budget_ns; *left gets
 * the blocks still to hash) and, after the END record, htab_loader_root
 * re-hashes only what the records since touched, then the root. Both
 * read the table with plain loads when nobody else writes it (own or
 * exclusive), under entry locks otherwise. The same thread as the loads.
 */
typedef struct htab_root {
	bool no_hpt;          /* info.root is hpt_root_none's */
	hpt_root_info_t info; /* root, shift, valid, bolted, blocks re-hashed */
} htab_root_t;
int htab_loader_root_refresh(htab_loader_t *l, uint64_t budget_ns, uint64_t *left);
void htab_loader_root_stats(htab_loader_t *l, hpt_root_stats_t *st);
/* HM_E_STATE before START; -ENOMEM. */
int htab_loader_root(htab_loader_t *l, htab_root_t *out, hm_error_t *err);

/* ----------------------------------------------------- canonical encoder */

/* START payload for a table (be32 shift) or no HPT (hpt NULL: 0xffffffff). */
int htab_encode_start(hpt_t *hpt, mig_file_t *f);
/*
 * A complete END-style payload: header 0, every valid run of the table in
 * index order as chunks of at most 65535 entries, endmark (for hpt NULL:
 * 0xffffffff alone). The table should be quiescent (each entry is read
 * consistently, not the table as a whole). Returns 0 or the channel's error.
 */
int htab_encode_table(hpt_t *hpt, mig_file_t *f);

/* ------------------------------------------------------- savevm glue */

/*
 * Handler tables for the savevm registry. htab_save_ops: opaque is an
 * htab_save_t (setup, iterate, pending, complete, cleanup). htab_load_ops:
 * opaque is an htab_loader_t (load; version 1 only). Register them as
 * HTAB_IDSTR, instance 0, version 1 (min 1), or use the helpers below.
 */
extern const savevm_live_ops_t htab_save_ops;
extern const savevm_live_ops_t htab_load_ops;
int htab_register_save(savevm_registry_t *r, htab_save_t *s, hm_error_t *err);
int htab_register_load(savevm_registry_t *r, htab_loader_t *l, hm_error_t *err);

#ifdef __cplusplus
}
#endif
#endif
