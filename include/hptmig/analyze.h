/* SPDX-License-Identifier: MIT */
/*
 * analyze: walk any QEMU migration stream held in memory (header,
 * configuration, commands, START/PART/END/FULL records with footers, the
 * `ram` and `spapr/htab` sections, and every other device section through
 * the vmdesc JSON appended after EOF), summarise it, decode device state,
 * and re-encode `spapr/htab` canonically (`rewrite`). It never trusts the
 * input: every length is checked against the bytes left, every footer is
 * checked, and the vmdesc is only a map to be verified; it never prints,
 * exits or aborts.
 */
#ifndef HPTMIG_ANALYZE_H
#define HPTMIG_ANALYZE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hptmig/base.h"
#include "hptmig/qemu_wire.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Record types, no-HPT and shift bounds: hptmig/qemu_wire.h. */

/* How a section's payload was understood. */
enum an_section_kind {
	AN_SEC_RAM = 1,     /* `ram`, §4 of wire-format.md */
	AN_SEC_HTAB = 2,    /* `spapr/htab`, §2 */
	AN_SEC_VMSTATE = 3, /* decoded through the stream's vmdesc */
	AN_SEC_BUILTIN = 4, /* `spapr` or `hptmig/verify` without vmdesc entry */
	AN_SEC_UNKNOWN = 5, /* not walkable: the walk stopped at it */
};

/* One record of the stream: [offset, offset + length) covers the type byte
 * through the footer (COMMAND and CONFIGURATION records have no footer). */
typedef struct an_record {
	uint64_t offset;
	uint64_t length;
	uint64_t payload; /* section records: first payload byte (payload ends 5 bytes
			   * before offset + length, at the footer) */
	uint32_t section; /* index in an_report_t.sections, or UINT32_MAX */
	uint16_t cmd;     /* COMMAND only */
	uint8_t type;     /* enum qemu_vm_record */
} an_record_t;

typedef struct an_section {
	uint32_t id;
	uint32_t instance_id;
	uint32_t version_id;
	enum an_section_kind kind;
	char idstr[256];
	uint64_t n_start, n_part, n_end, n_full;
	uint64_t bytes;        /* all bytes of its records, headers and footers included */
	uint64_t first_offset; /* of its START/FULL record */
} an_section_t;

typedef struct an_ram_block {
	char name[256];
	uint64_t length;
} an_ram_block_t;

typedef struct an_ram_stats {
	bool present;
	uint32_t page_size;     /* from the vmdesc, else 4096 */
	uint64_t total_bytes;   /* MEM_SIZE */
	uint64_t data_pages;    /* PAGE items */
	uint64_t zero_pages;    /* ZERO items (any fill byte) */
	uint64_t fill_pages;    /* ZERO items whose fill byte is not 0 (QEMU < 9 only) */
	uint64_t eos;           /* EOS items (one per record) */
	size_t nblocks;
	an_ram_block_t *blocks;
} an_ram_stats_t;

/* Page-size encodings counted over the final table (papr-hpt.md, plus
 * QEMU's 16G row, which hpt_page_decode accepts as QEMU does). */
enum an_pgsz { AN_PG_4K, AN_PG_64K, AN_PG_16M, AN_PG_4K_64K, AN_PG_4K_16M, AN_PG_64K_16M,
	       AN_PG_16G, AN_PG_BAD, AN_PG_COUNT };
/* Names of enum an_pgsz values ("4K", "64K", ..., "4K/64K", "16G", "invalid"). */
const char *an_pgsz_name(int pg);

typedef struct an_htab_stats {
	bool present;
	bool no_hpt;            /* final state is "no HPT" */
	uint32_t start_shift;   /* START header (AN_HTAB_NO_HPT for no HPT) */
	uint32_t shift;         /* final shift (after resizes), 0 when no_hpt */
	uint64_t n_start, n_part, n_end;
	uint64_t records;       /* n_start + n_part + n_end */
	uint64_t empty_records; /* PART/END with header 0 and no chunk */
	uint64_t resizes;       /* PART/END with a non-zero header (new table) */
	uint64_t chunks, valid_sent, invalid_sent;
	/* The final table, after replaying every chunk in stream order. */
	uint64_t slots, valid, bolted, secondary;
	uint64_t seg_256m, seg_1t, seg_reserved;
	uint64_t page_sizes[AN_PG_COUNT];
	uint64_t pteg_occupancy[9]; /* PTEGs with 0..8 valid entries */
	uint64_t check_failures;    /* valid entries failing the structural check */
	uint8_t digest[HM_SHA256_LEN]; /* wire-format.md §5 */
	/* The final-table fields and the digest above are a result: the walk
	 * reached EOF, or stopped cleanly at an undescribed section after
	 * spapr/htab's END. False after an error mid-stream (they are then
	 * zeros or a partial table: reports print none, JSON null). */
	bool final;
	/* The block root (wire-format.md §5, hptmig/verify v2); computed for
	 * no HPT and shifts up to 36 (at most 2^20 blocks), else has_root false. */
	bool has_root;
	uint8_t root[HM_SHA256_LEN];
} an_htab_stats_t;

/*
 * Anomalies: what QEMU's loader accepts but QEMU never writes, reported as
 * warnings (the walk goes on; `analyze --strict` fails on any).
 * AN_ANOM_INVALID_IN_RUN: an entry of a chunk's valid run without V's valid
 *   bit (QEMU's htab_load copies it as it is);
 * AN_ANOM_CHECK: a valid entry of a valid run that fails the structural
 *   check (an_hpte_check) as it is sent (check_failures counts the final
 *   table instead);
 * AN_ANOM_OVERLAP: a chunk overlapping another of the same pass: a pass
 *   is a run of chunks of one record whose first slots do not decrease
 *   (savers sweep upwards; a chunk starting lower begins a new pass).
 */
enum an_anomaly_kind { AN_ANOM_INVALID_IN_RUN, AN_ANOM_CHECK, AN_ANOM_OVERLAP, AN_ANOM_COUNT };
/* "invalid_in_valid_run", "check_failure", "overlap" (JSON keys). */
const char *an_anomaly_name(int kind);
#define AN_ANOMALY_FIRST 8 /* the first anomalies kept with their messages */
typedef struct an_anomaly {
	int kind;
	uint64_t offset; /* of the entry (INVALID_IN_RUN, CHECK) or the chunk */
	uint64_t slot;   /* the entry's, or the chunk's first */
	char msg[384];   /* printable ASCII, with record, chunk and offset */
} an_anomaly_t;
typedef struct an_anomalies {
	uint64_t count[AN_ANOM_COUNT];
	uint64_t total;
	size_t nfirst;
	an_anomaly_t first[AN_ANOMALY_FIRST];
} an_anomalies_t;

typedef struct an_command {
	uint64_t offset;
	uint16_t cmd;
	uint16_t len;
} an_command_t;

/* Name of a QEMU migration command ("switchover-start", ...) or NULL. */
const char *an_command_name(uint16_t cmd);

/*
 * What a walk found. Filled as far as the walk got, also when it failed
 * (then `error` holds the first error) or stopped early (`complete` false,
 * `stop_offset` and `stop_reason` say where and why: a section no layout is
 * known for, e.g. a stream without vmdesc).
 */
typedef struct an_report {
	uint64_t file_bytes;
	uint32_t stream_version;
	bool has_config;
	char machine[256];
	char config_subsections[512]; /* names, comma separated */
	uint32_t target_page_bits;    /* configuration/target-page-bits, 0 if absent */

	size_t nsections;
	an_section_t *sections;
	size_t nrecords;        /* records walked */
	an_record_t *records;   /* records number records_first .. nrecords - 1 */
	size_t records_first;   /* 0 in memory; a streamed walk keeps only the
				 * current record of the live phase, then every
				 * record of the held final phase */
	size_t ncommands;
	an_command_t *commands;

	an_ram_stats_t ram;
	an_htab_stats_t htab;
	an_anomalies_t anomalies; /* spapr/htab anomalies (warnings) */

	bool has_vmdesc;
	uint64_t vmdesc_offset; /* of the 0x06 byte */
	uint64_t vmdesc_len;    /* JSON bytes */
	size_t vmdesc_devices;
	json_t *vmdesc;         /* parsed vmdesc (owned), NULL without one */

	bool has_verify;        /* an hptmig/verify section was present */
	uint32_t verify_shift;
	uint64_t verify_valid;
	uint8_t verify_digest[HM_SHA256_LEN]; /* version 1 */
	uint32_t verify_version; /* 1 or 2 */
	uint8_t verify_root[HM_SHA256_LEN];   /* version 2 */

	uint64_t committed;     /* every byte before this offset was validated */
	bool complete;          /* walked every record through EOF */
	uint64_t eof_offset;    /* of the EOF byte when complete */
	int64_t stop_offset;    /* when !complete: where the walk stopped */
	char stop_reason[512];
	hm_error_t error;       /* first error (code 0: none) */

	char *state_text;       /* device state as indented JSON text (AN_OPT_STATE) */
	size_t state_len;
	json_t *state;          /* the same as a JSON value (AN_OPT_STATE_JSON), owned */
	uint64_t walk_ns;       /* time spent walking */

	struct an_private *priv; /* the replayed table and other internals */
} an_report_t;

/* Options of an_analyze(). */
#define AN_OPT_STATE 0x1u     /* decode every device section into report->state */
#define AN_OPT_KEEP_TABLE 0x2u /* keep the replayed table (an_htab_foreach, rewrite) */
#define AN_OPT_STATE_JSON 0x4u /* also parse the state text into report->state */

/*
 * Walk the stream buf[0, len) (the caller keeps it alive and unchanged for
 * the duration of the call). Always sets *out to a report (free it with
 * an_report_free) unless memory runs out. Returns 0 when the stream was
 * walked through EOF (and the vmdesc, if any) without error; a negative
 * code (also in (*out)->error and err) when the input is bad; 0 with
 * (*out)->complete false when the walk had to stop at a section whose
 * layout is unknown (no vmdesc).
 */
int an_analyze(const uint8_t *buf, size_t len, unsigned opts, an_report_t **out, hm_error_t *err);
void an_report_free(an_report_t *r);

/* ------------------------------------------------------------ streaming */

/*
 * A byte source: read() puts up to n bytes (n > 0) in buf and returns how
 * many (> 0), 0 at the end of the stream, or a negative code (errno or
 * HM_E_*) after filling err (the walker writes a generic message when
 * err->code is left 0). It may return fewer bytes than asked whenever it
 * likes (a pipe, a socket).
 */
typedef struct an_source {
	int64_t (*read)(void *ctx, uint8_t *buf, size_t n, hm_error_t *err);
	void *ctx;
} an_source_t;

/* What a streamed walk has seen so far (the progress hook). */
typedef struct an_progress {
	uint64_t bytes;            /* stream bytes walked (offset of the walk) */
	uint64_t committed;        /* validated bytes (see an_stream_hooks_t) */
	uint64_t ram_records;      /* `ram` START/PART/END records: QEMU sends one per iteration */
	uint64_t ram_data_pages, ram_zero_pages;
	uint64_t htab_records;     /* `spapr/htab` records: one per pass over the table */
	uint64_t htab_entries_sent;/* valid entries sent so far, all passes */
	uint64_t htab_valid;       /* valid entries in the replayed table now */
	uint32_t htab_shift;       /* its shift (0: none yet or no HPT) */
	bool held;                 /* in the final phase (device sections being held) */
	bool pass_end;             /* called at the end of a spapr/htab record, else by time */
} an_progress_t;

/*
 * Hooks of a streamed walk (each may be NULL; a non-zero return stops the
 * walk with that code, HM_E_CANCELLED when it is not negative). The bytes
 * are the caller's to keep: its source saw every one of them. A proxy
 * forwards what is committed and holds the rest.
 *
 * commit: every byte before `committed` was validated. Called at every
 *   record boundary of the live phase (rec NULL) and, inside a `ram` or
 *   `spapr/htab` record, between items (rec: the record, header decoded,
 *   length 0 while in progress): once per read from the source when the
 *   walk is within 8 KiB of the bytes read so far (so that a proxy
 *   forwards what it read before reading more, as a relay does), and at
 *   the latest every 1 MiB (AN_COMMIT_STEP, AN_COMMIT_TAIL). In the
 *   held final phase it is not called until the whole phase (FULL device
 *   sections, EOF, vmdesc) was walked; then record() is called for each of
 *   its records in order and commit() once with the end of the stream.
 * record: a record was walked, footer included (rec->length set).
 * hold: the final phase starts at `offset` (the first FULL record or EOF):
 *   what follows has no length on the wire and is held (at most
 *   max_device_state bytes) until the vmdesc after EOF describes it.
 * progress: about once a second while bytes arrive, and at the end of
 *   every spapr/htab record (p->pass_end).
 * bytes: every byte read from the source, handed over once, in order
 *   (offset is the stream offset of p[0]), from the walker's own buffer,
 *   valid only during the call: a proxy forwards from there instead of
 *   keeping a copy of what it reads. Bytes are handed over right after
 *   commit() says they are validated; ones not yet committed only when the
 *   window needs their room (a record item longer than what is left of it),
 *   when the final phase starts (before hold()), and at the walk's end
 *   (all the rest; also after a stop). The caller keeps those and forwards
 *   them at a later commit(). Not called in the held phase until its
 *   commit(), nor after an error.
 */
typedef struct an_stream_hooks {
	void *opaque;
	int (*commit)(void *opaque, uint64_t committed, const an_record_t *rec);
	int (*record)(void *opaque, const an_report_t *r, const an_record_t *rec);
	int (*hold)(void *opaque, uint64_t offset);
	int (*progress)(void *opaque, const an_report_t *r, const an_progress_t *p);
	int (*bytes)(void *opaque, uint64_t offset, const uint8_t *p, size_t n);
} an_stream_hooks_t;

/* Caps of a streamed walk (docs/limits.md). The held final phase: FULL
 * device sections, EOF and vmdesc (real pseries: ~1 MB; x86 with many
 * devices: a few MB). The input: memory does not grow with it (RAM pages
 * are skipped, not held), so its default is the largest cap. The
 * spapr/htab bytes: the replayed table costs up to 2.7 bytes per byte. */
#define AN_DEVICE_STATE_MAX_DEFAULT ((uint64_t)64 << 20)
#define AN_DEVICE_STATE_MAX_LIMIT ((uint64_t)1 << 30)
#define AN_STREAM_MAX_INPUT_DEFAULT AN_INPUT_MAX_LIMIT
#define AN_STREAM_HTAB_MAX ((uint64_t)1 << 30)
/* The read-ahead window of a streamed walk: the largest record item
 * (a table chunk of 65535 entries, 1 MiB) plus room to read ahead. */
#define AN_STREAM_WINDOW ((size_t)2 << 20)

typedef struct an_stream_opts {
	unsigned opts;             /* AN_OPT_* */
	uint64_t max_input;        /* stream bytes; 0: AN_STREAM_MAX_INPUT_DEFAULT */
	uint64_t max_device_state; /* held final phase; 0: AN_DEVICE_STATE_MAX_DEFAULT */
	bool stop_at_vmdesc;       /* end the walk when the held bytes end with a
				    * complete vmdesc (a proxy: the source then
				    * waits on its return path), instead of
				    * reading the source to its end (analyze:
				    * bytes after the vmdesc are an error) */
	const an_stream_hooks_t *hooks; /* NULL: none */
} an_stream_opts_t;

/*
 * an_analyze on a stream read from src, in constant memory (the window, the
 * held final phase, the replayed table and the report). Same report and
 * return values as an_analyze (and the same --state, digest, errors); the
 * report's records are only those of the final phase (records_first).
 */
int an_analyze_stream(const an_source_t *src, const an_stream_opts_t *o, an_report_t **out,
		      hm_error_t *err);

/*
 * Byte sources for a stream in a file descriptor: plain or zstd (detected
 * by its first 4 bytes; the first bytes must be QEVM or the zstd magic,
 * HM_E_MAGIC otherwise, as an_input_open). name is used in messages.
 * The fd stays the caller's. Free with an_fd_source_free.
 */
typedef struct an_fd_source an_fd_source_t;
int an_fd_source_new(int fd, const char *name, an_fd_source_t **out, hm_error_t *err);
/* Wrap any source the same way (zstd detection); raw must outlive it. */
int an_src_source_new(const an_source_t *raw, const char *name, an_fd_source_t **out, hm_error_t *err);
const an_source_t *an_fd_source_get(an_fd_source_t *s);
bool an_fd_source_compressed(const an_fd_source_t *s);
/* Bytes read from the fd (compressed bytes when compressed). */
uint64_t an_fd_source_raw_bytes(const an_fd_source_t *s);
void an_fd_source_free(an_fd_source_t *s);

/*
 * rewrite as a stream: read src, write the rewritten stream through
 * write() as it goes (the same output as an_rewrite). Bytes are written
 * once validated; on an error the output written so far is incomplete
 * (the caller must not use it: remove a file, fail a pipe). stats: the
 * input's report (free it) or NULL; out_bytes: bytes written.
 */
int an_rewrite_stream(const an_source_t *src, const an_stream_opts_t *o,
		      int (*write)(void *opaque, const uint8_t *p, size_t n), void *opaque,
		      an_report_t **stats, uint64_t *out_bytes, bool *unchecked_tail, hm_error_t *err);

/*
 * Call fn for every valid entry of the replayed table in slot order (needs
 * AN_OPT_KEEP_TABLE). fn returns 0 to go on, non-zero to stop (returned).
 */
int an_htab_foreach(const an_report_t *r, int (*fn)(void *opaque, uint64_t slot, uint64_t v,
						      uint64_t rr, bool check_ok),
		    void *opaque);

/* Output flags of an_report_json / an_report_text. */
#define AN_OUT_HTAB 0x1u  /* list the table's entries */
#define AN_OUT_STATE 0x2u /* include the decoded device state */
#define AN_OUT_DESC 0x4u  /* include the vmdesc */

/* The report as JSON (product.md fields and more). New reference. */
json_t *an_report_json(const an_report_t *r, unsigned out_flags);
/* The report as human-readable text (malloc'd, NUL-terminated), or NULL. */
char *an_report_text(const an_report_t *r, unsigned out_flags);
/*
 * The --htab listing without holding it: the JSON array an_report_json puts
 * in htab.entries (json: compact, as tool output prints it) or the lines
 * an_report_text prints after the digest, handed to write() piece by piece
 * (a non-zero return stops and is returned). A table of millions of entries
 * costs no memory this way (docs/limits.md).
 */
int an_htab_entries_write(const an_report_t *r, bool json, int (*write)(void *opaque, const char *s, size_t n),
			  void *opaque);

/*
 * Input files: a plain stream (file, pipe, device) or a zstd-compressed one
 * (detected by its magic, decompressed with libzstd), read into a private
 * buffer (never mapped: a file truncated meanwhile cannot raise SIGBUS). The
 * first bytes must be QEVM or the zstd magic (HM_E_MAGIC at offset 0 before
 * anything else is read); the stream may have at most `max` bytes (plain
 * size, or decompressed size), else HM_E_RANGE. max 0: the defaults below.
 * See docs/limits.md ("analyze").
 */
typedef struct an_input {
	const uint8_t *data;
	size_t len;
	bool compressed;
	void *map_;     /* internal: the buffer (a private anonymous mapping) */
	size_t maplen_; /* internal: its size */
	bool mapped_;   /* internal: map_ is to be unmapped */
} an_input_t;
/* Default cap of a plain stream, and of a decompressed one (a compressed
 * file's size says nothing about what it expands to, so its default is
 * lower: the worst case memory of a walk stays under 512 MiB). */
#define AN_INPUT_MAX_DEFAULT ((uint64_t)1 << 30)
#define AN_INPUT_ZSTD_MAX_DEFAULT ((uint64_t)112 << 20)
/* The largest cap one may ask for (stream offsets fit in 32 bits in the
 * sparse table's bookkeeping and records stay addressable). */
#define AN_INPUT_MAX_LIMIT ((uint64_t)16 << 30)
/* zstd decoder window limit (ZSTD_d_windowLogMax): 2^27 = 128 MiB, what
 * zstd itself accepts without --memory; libzstd allocates at most
 * min(window, frame content). */
#define AN_INPUT_ZSTD_WINDOW_LOG_MAX 27
int an_input_open_max(const char *path, uint64_t max, an_input_t *in, hm_error_t *err);
/* an_input_open_max(path, 0, ...): the default caps. */
int an_input_open(const char *path, an_input_t *in, hm_error_t *err);
void an_input_close(an_input_t *in);

/*
 * rewrite: copy every record of buf unchanged except the `spapr/htab`
 * section: its START record is kept, its PART records are dropped and its
 * END record carries the whole final table once, canonically (runs of valid
 * entries in slot order, each at most 65535 long, bit 0x40 of V cleared).
 * A table resize (a non-zero PART header) becomes one PART record carrying
 * the final shift just before END. The input must walk without error (all
 * the loader's checks); a stream whose walk stops at an unknown section is
 * accepted only when the spapr/htab END came before it (the rest is copied
 * unchanged and unchecked; *unchecked_tail says so). Never adds a section.
 * On success *out is malloc'd (free()) with *out_len bytes.
 */
int an_rewrite(const uint8_t *buf, size_t len, uint8_t **out, size_t *out_len,
	       bool *unchecked_tail, hm_error_t *err);

/*
 * Encode a whole table canonically as an END payload (be32 0, chunks,
 * end mark) into a malloc'd buffer. entries: slots × (V, R) host-order
 * pairs; only entries with V's valid bit are sent.
 */
int an_htab_encode_table(const uint64_t *entries, uint64_t slots, uint8_t **out, size_t *out_len);

#ifdef __cplusplus
}
#endif
#endif
