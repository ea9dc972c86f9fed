/* SPDX-License-Identifier: MIT */
/*
 * savevm: QEMU's migration stream above the channel: the section registry
 * and live handler table, the declarative vmstate engine (save, load, vmdesc
 * JSON), the framing writer and reader, and the `hptmig/verify` section
 * (QEMU's `spapr` is the machine's: hptmig/machine.h). The reader must
 * never trust a byte: every check failure is an error naming the section,
 * field, value and byte offset, never a crash.
 */
#ifndef HPTMIG_SAVEVM_H
#define HPTMIG_SAVEVM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hptmig/base.h"
#include "hptmig/qemu_wire.h"
#include "hptmig/stream.h"

#ifdef __cplusplus
extern "C" {
#endif

/* --------------------------------------------------------------- limits */

/* Record types, magic, version and COMMAND numbers: hptmig/qemu_wire.h. */
/* Longest idstr / subsection name on the wire (u8 length). */
#define SAVEVM_IDSTR_MAX 255u
/* Largest vmdesc JSON the reader accepts (bytes). */
#define SAVEVM_VMDESC_MAX (64u << 20)
/* Largest machine name in the configuration record (bytes). */
#define SAVEVM_MACHINE_MAX 255u

/* ------------------------------------------------------ vmstate engine */

/*
 * A vmstate description says how a C struct travels on the wire: its fields
 * in order, each in its fixed big-endian encoding with no lengths or tags,
 * then its subsections (wire-format.md §3). One generic engine saves it,
 * loads it (checking every version rule) and describes it in the vmdesc.
 */
typedef enum vmstate_type {
	VMS_END = 0,    /* end of a field list (name NULL) */
	VMS_U8,
	VMS_U16,
	VMS_U32,
	VMS_U64,
	VMS_I8,
	VMS_I16,
	VMS_I32,
	VMS_I64,
	VMS_BOOL,       /* one byte 0 or 1; anything else is HM_E_FORMAT on load */
	VMS_BUFFER,     /* size raw bytes */
	VMS_UNUSED,     /* size reserved bytes: zeros on save, skipped on load; no storage */
	VMS_STRUCT,     /* a nested description (vmsd) over the bytes at offset */
	VMS_VBUFFER,    /* uint8_t *member, length in the uint32_t at size_offset
	                 * (an earlier field), at most size bytes; the loader
	                 * (re)allocates it with realloc: the owner frees it */
	VMS_BITMAP,     /* uint64_t member[size / 8], one be64 per word (QEMU "bitmap") */
} vmstate_type_t;

/* Field flags. */
#define VMS_F_EQUAL 0x1u /* load: wire value must equal the current value (QEMU "... equal") */

struct vmstate_desc;

/*
 * One field. Exists (is on the wire) for a given version v when
 * v >= version_min, and (version_below == 0 or v < version_below), and
 * (exists == NULL or exists(opaque, v)). When saving, v is the version being
 * written (normally the description's version_id).
 *
 * size: bytes of one element in the struct: for scalars the member's size
 * (checked against the type at registration), for VMS_BUFFER/VMS_UNUSED the
 * byte count on the wire, for VMS_STRUCT the element stride (sizeof the
 * member). array_len: 0 or 1 = one element; n > 1 = a fixed array of n
 * elements at offset, offset + size, ...
 */
typedef struct vmstate_field {
	const char *name;
	vmstate_type_t type;
	uint32_t flags;
	size_t offset;
	size_t size;
	uint32_t array_len;
	uint32_t version_min;
	uint32_t version_below;
	bool (*exists)(void *opaque, uint32_t version_id);
	const struct vmstate_desc *vmsd;
	size_t size_offset; /* VMS_VBUFFER: offset of its uint32_t length member */
} vmstate_field_t;

/*
 * A description (top level section payload, a nested struct, or a
 * subsection). Hooks get the struct pointer as opaque; they return 0 or a
 * negative code and fill err.
 *
 * - version_id: written in FULL/START headers and subsection headers; a
 *   loader accepts minimum_version_id <= v <= version_id. A nested struct's
 *   version is not on the wire: it is loaded with its own version_id.
 * - needed: subsections only: send it when NULL or true.
 * - pre_save: before the fields are written (fill derived fields).
 * - pre_load: before the fields are read (e.g. defaults for fields an old
 *   version lacks).
 * - post_load: after fields and subsections were read; the place to check
 *   cross-field rules. Gets the version on the wire.
 * - subsections: NULL-terminated array, or NULL. A subsection's name must
 *   start with its parent's name (QEMU matches subsections by that prefix).
 */
typedef struct vmstate_desc {
	const char *name;
	uint32_t version_id;
	uint32_t minimum_version_id;
	const vmstate_field_t *fields; /* terminated by VMSTATE_END_OF_LIST */
	const struct vmstate_desc *const *subsections;
	bool (*needed)(void *opaque);
	int (*pre_save)(void *opaque, hm_error_t *err);
	int (*pre_load)(void *opaque, hm_error_t *err);
	int (*post_load)(void *opaque, uint32_t version_id, hm_error_t *err);
} vmstate_desc_t;

/*
 * Field initialisers: designator lists (no braces), so that version rules
 * can be added in the same braces:
 *   { VMSTATE_U64(spapr_state_t, rtc_offset), .version_below = 3 },
 *   { VMSTATE_STRUCT(my_t, tb, &tb_vmsd), .version_min = 2 },
 *   { VMSTATE_END_OF_LIST }
 */
#define VMSTATE_FIELD_(st, f, t) \
	.name = #f, .type = (t), .offset = offsetof(st, f), .size = sizeof(((st *)0)->f)
#define VMSTATE_U8(st, f) VMSTATE_FIELD_(st, f, VMS_U8)
#define VMSTATE_U16(st, f) VMSTATE_FIELD_(st, f, VMS_U16)
#define VMSTATE_U32(st, f) VMSTATE_FIELD_(st, f, VMS_U32)
#define VMSTATE_U64(st, f) VMSTATE_FIELD_(st, f, VMS_U64)
#define VMSTATE_I8(st, f) VMSTATE_FIELD_(st, f, VMS_I8)
#define VMSTATE_I16(st, f) VMSTATE_FIELD_(st, f, VMS_I16)
#define VMSTATE_I32(st, f) VMSTATE_FIELD_(st, f, VMS_I32)
#define VMSTATE_I64(st, f) VMSTATE_FIELD_(st, f, VMS_I64)
#define VMSTATE_BOOL(st, f) VMSTATE_FIELD_(st, f, VMS_BOOL)
/* A fixed byte array member (uint8_t f[N]): N bytes on the wire. */
#define VMSTATE_BUFFER(st, f) VMSTATE_FIELD_(st, f, VMS_BUFFER)
/* A fixed array member of scalars (uint64_t f[N]). */
#define VMSTATE_ARRAY_(st, f, t) \
	.name = #f, .type = (t), .offset = offsetof(st, f), .size = sizeof(((st *)0)->f[0]), \
	.array_len = (uint32_t)(sizeof(((st *)0)->f) / sizeof(((st *)0)->f[0]))
#define VMSTATE_U8_ARRAY(st, f) VMSTATE_ARRAY_(st, f, VMS_U8)
#define VMSTATE_U16_ARRAY(st, f) VMSTATE_ARRAY_(st, f, VMS_U16)
#define VMSTATE_U32_ARRAY(st, f) VMSTATE_ARRAY_(st, f, VMS_U32)
#define VMSTATE_U64_ARRAY(st, f) VMSTATE_ARRAY_(st, f, VMS_U64)
#define VMSTATE_I32_ARRAY(st, f) VMSTATE_ARRAY_(st, f, VMS_I32)
#define VMSTATE_I64_ARRAY(st, f) VMSTATE_ARRAY_(st, f, VMS_I64)
#define VMSTATE_BOOL_ARRAY(st, f) VMSTATE_ARRAY_(st, f, VMS_BOOL)
/* A nested struct member described by *d. */
#define VMSTATE_STRUCT(st, f, d) VMSTATE_FIELD_(st, f, VMS_STRUCT), .vmsd = (d)
/* An array of nested structs (T f[N]) described by *d. */
#define VMSTATE_STRUCT_ARRAY(st, f, d) VMSTATE_ARRAY_(st, f, VMS_STRUCT), .vmsd = (d)
/*
 * A nested description over the same struct (no member of its own): how
 * QEMU's `tb` timebase appears in `spapr`. wire_name is the field name.
 */
#define VMSTATE_STRUCT_SELF(wire_name, d) \
	.name = (wire_name), .type = VMS_STRUCT, .offset = 0, .size = 0, .vmsd = (d)
/*
 * A variable-length buffer (QEMU VMSTATE_VBUFFER_ALLOC_UINT32): uint8_t *f
 * holding the uint32_t member lenf bytes, lenf sent as an earlier field;
 * a length above max is refused with HM_E_RANGE before any allocation.
 */
#define VMSTATE_VBUFFER_ALLOC_U32(st, f, lenf, max) \
	.name = #f, .type = VMS_VBUFFER, .offset = offsetof(st, f), .size = (max), \
	.size_offset = offsetof(st, lenf)
/* A bitmap of uint64_t words (uint64_t f[N]): N be64 words (QEMU VMSTATE_BITMAP). */
#define VMSTATE_BITMAP(st, f) \
	.name = #f, .type = VMS_BITMAP, .offset = offsetof(st, f), .size = sizeof(((st *)0)->f)
/* n reserved bytes (QEMU "unused_buffer"). */
#define VMSTATE_UNUSED(n) .name = "unused", .type = VMS_UNUSED, .size = (n)
#define VMSTATE_END_OF_LIST .name = NULL, .type = VMS_END

/*
 * Check a description (recursively): sizes match types, arrays and strides
 * are sane, subsection names carry the parent's prefix, versions are
 * ordered. Registration calls it; returns 0 or -EINVAL with err naming the
 * field.
 */
int vmstate_check(const vmstate_desc_t *vmsd, hm_error_t *err);

/*
 * Save opaque's fields and needed subsections at version (0 = the
 * description's version_id; an older version writes the older layout).
 * Runs pre_save. Returns 0 or the channel's/hook's error (also in err).
 */
int vmstate_save(mig_file_t *f, const vmstate_desc_t *vmsd, void *opaque, uint32_t version,
		 hm_error_t *err);
/*
 * Load a payload written at version_id (the caller read it from a record
 * header and checked its range; vmstate_load checks it again). Reads fields
 * that exist at that version, then subsections (wire-format.md §3), then
 * runs post_load. Errors: HM_E_VERSION, HM_E_FORMAT (bad bool, EQUAL
 * mismatch), HM_E_UNKNOWN (unknown subsection), HM_E_TRUNCATED; messages
 * name "<desc>.<field>" and the offset.
 */
int vmstate_load(mig_file_t *f, const vmstate_desc_t *vmsd, void *opaque, uint32_t version_id,
		 hm_error_t *err);

/* ------------------------------------------------------------ handlers */

/*
 * Live (iterative) section handler table, as QEMU's SaveVMHandlers.
 * The framing writer writes each record's header (type byte, section id, and
 * for START: idstr, instance, version), calls the handler for the payload,
 * then writes the footer. Handlers write/read only their payload. A handler
 * records an error only in the channel (mig_file_set_error*, or a failed
 * get/put latches one) and returns a negative code; the framing code adds
 * the section's name in front (mig_file_error_prefix) and the public entry
 * point copies the channel's error into its hm_error_t once. Calls for one
 * section never overlap.
 *
 * setup:    write the START payload; start change tracking. Called once.
 * iterate:  write one PART payload, sending work until budget_ns has passed
 *           or mig_file_rate_limit_exceeded(f); return 1 when all current
 *           work is sent, 0 when more remains, <0 on error.
 * pending:  bytes still to send if iteration stopped now (an estimate the
 *           controller sums to decide when to stop the guest). May be NULL.
 * complete: with the guest stopped, write the END payload: everything left.
 * load:     read one record's payload (record_type START, PART, END or FULL)
 *           written at version_id (already range-checked). Must consume
 *           exactly its payload: the reader checks the footer next.
 * cleanup:  stop tracking, free per-migration state. Called once after
 *           setup was called, on success and on failure. May be NULL.
 * Any member may be NULL on a side that does not use it (a load-only
 * registry needs only load); calling a missing save handler is HM_E_STATE.
 */
typedef struct savevm_live_ops {
	int (*setup)(void *opaque, mig_file_t *f);
	int (*iterate)(void *opaque, mig_file_t *f, uint64_t budget_ns);
	uint64_t (*pending)(void *opaque);
	int (*complete)(void *opaque, mig_file_t *f);
	int (*load)(void *opaque, mig_file_t *f, uint32_t version_id, int record_type);
	void (*cleanup)(void *opaque);
} savevm_live_ops_t;

/* ------------------------------------------------------------ registry */

/*
 * The sections of one side of one migration. Sections get section ids in
 * registration order starting at 0 (as QEMU does); the reader never assumes
 * ids, it learns them from START/FULL records. A registry is used by one
 * thread at a time. It does not own ops, descriptions or opaques.
 */
typedef struct savevm_registry savevm_registry_t;

int savevm_registry_new(savevm_registry_t **out);
void savevm_registry_free(savevm_registry_t *r);

/*
 * Register a live section (idstr <= 255 bytes, unique (idstr, instance)).
 * version: written in START; min_version: the oldest a loader accepts.
 * Returns 0, -EEXIST (duplicate), -EINVAL (bad arguments) or -ENOMEM.
 */
int savevm_register_live(savevm_registry_t *r, const char *idstr, uint32_t instance,
			 uint32_t version, uint32_t min_version, const savevm_live_ops_t *ops,
			 void *opaque, hm_error_t *err);
/* Register a vmstate section: versions from vmsd; checked by vmstate_check. */
int savevm_register_vmstate(savevm_registry_t *r, const char *idstr, uint32_t instance,
			    const vmstate_desc_t *vmsd, void *opaque, hm_error_t *err);
/*
 * Leave a section out of what the writer sends (e.g. hptmig/verify in a
 * stream meant for QEMU), or put it back. The reader still accepts it.
 * Returns 0 or -ENOENT.
 */
int savevm_section_set_enabled(savevm_registry_t *r, const char *idstr, uint32_t instance,
			       bool enabled);
/* Number of registered sections. */
size_t savevm_registry_count(const savevm_registry_t *r);

/* --------------------------------------------------------------- writer */

/*
 * The source side, in the order the migration controller calls it:
 *   savevm_write_header        magic, version 3, CONFIGURATION(machine)
 *   savevm_live_setup_all      one START per live section (setup handler)
 *   savevm_live_iterate        one PART per live section (repeat)
 *   savevm_write_command_switchover   optional COMMAND 11
 *   savevm_live_complete_all   one END per live section (guest stopped)
 *   savevm_write_full_all      one FULL per vmstate section (builds vmdesc)
 *   savevm_write_eof_and_vmdesc EOF, vmdesc JSON, flush
 *   savevm_live_cleanup_all    always (success or failure)
 * Each returns 0 or a negative code (also in err, with the offset). After an
 * error the stream is unusable: call savevm_live_cleanup_all and stop.
 */
int savevm_write_header(savevm_registry_t *r, mig_file_t *f, const char *machine_name,
			hm_error_t *err);
int savevm_live_setup_all(savevm_registry_t *r, mig_file_t *f, hm_error_t *err);
/*
 * One round, as QEMU's qemu_savevm_state_iterate: for each live section in
 * registration order, write a PART with the handler's payload, giving it
 * what is left of budget_ns (measured from the call). Before each section
 * the rate limit is asked; when exceeded the round stops there and returns 0
 * (the caller waits with mig_file_rate_wait and calls again). Returns 1 when
 * every live section reported all current work sent, 0 when some have more
 * (or the round was cut short), <0 on error.
 */
int savevm_live_iterate(savevm_registry_t *r, mig_file_t *f, uint64_t budget_ns, hm_error_t *err);
/* Sum of every live section's pending() estimate. */
uint64_t savevm_live_pending_total(savevm_registry_t *r);
int savevm_write_command_switchover(mig_file_t *f, hm_error_t *err);
/* COMMAND PING (QEMU's MIG_CMD_PING, be32 value). A QEMU destination needs
 * its return path open for it, so streams meant for QEMU leave it out. */
int savevm_write_command_ping(mig_file_t *f, uint32_t value, hm_error_t *err);
int savevm_live_complete_all(savevm_registry_t *r, mig_file_t *f, hm_error_t *err);
int savevm_write_full_all(savevm_registry_t *r, mig_file_t *f, hm_error_t *err);
int savevm_write_eof_and_vmdesc(savevm_registry_t *r, mig_file_t *f, hm_error_t *err);
void savevm_live_cleanup_all(savevm_registry_t *r);
/*
 * A whole stream without iteration (a snapshot): header, setup, complete,
 * FULL records, EOF, vmdesc, cleanup. For tests and tools.
 */
int savevm_save_all(savevm_registry_t *r, mig_file_t *f, const char *machine_name,
		    hm_error_t *err);

/* --------------------------------------------------------------- reader */

/* What the reader saw of one record, given to savevm_load_opts_t.on_record. */
typedef struct savevm_record_info {
	int type;                 /* enum qemu_vm_record */
	uint64_t offset;          /* offset of the type byte */
	uint64_t payload_offset;  /* first payload byte */
	uint64_t end_offset;      /* just past the record (after its footer) */
	uint32_t section_id;      /* section records */
	const char *idstr;        /* section records: the section's name */
	uint32_t instance_id;
	uint32_t version_id;      /* the version of this section on the wire */
	uint16_t command;         /* COMMAND records */
} savevm_record_info_t;

/* Summary of a loaded stream. */
typedef struct savevm_load_info {
	char machine[SAVEVM_MACHINE_MAX + 1]; /* "" when there was no configuration */
	bool has_configuration;
	bool switchover_seen;        /* a COMMAND 11 was read */
	bool has_vmdesc;             /* a valid vmdesc followed EOF */
	uint64_t records;            /* records read, EOF excluded */
	uint64_t sections;           /* distinct sections introduced by START/FULL */
	uint64_t eof_offset;         /* offset of the EOF byte */
	uint64_t end_offset;         /* offset after the last byte read */
} savevm_load_info_t;

/*
 * Reader options (all optional; zero = defaults).
 * on_record: called after each record (footer checked), e.g. for a dump.
 * on_unknown_section: START/FULL naming a section not in the registry; it
 *   may register one (then the reader looks it up again) and return 0,
 *   or return a negative code. Without it: HM_E_UNKNOWN naming idstr.
 * on_command: every COMMAND except SWITCHOVER_START; return 0 to accept.
 *   Without it: HM_E_UNKNOWN naming the command.
 * on_vmdesc: the vmdesc JSON (already checked to be valid JSON).
 * allow_incomplete: accept EOF while a live section has START but no END
 *   (default: HM_E_FORMAT, a destination must not accept half a section).
 * stop_at_eof: do not look for the vmdesc after EOF (stream continues).
 * require_end: after the vmdesc (or EOF) the input must end: a trailing
 *   byte is HM_E_FORMAT. Off by default because on a socket whose peer
 *   keeps it open (waiting for a return-path reply) the check would wait.
 */
typedef struct savevm_load_opts {
	void *opaque;
	int (*on_record)(void *opaque, const savevm_record_info_t *rec, hm_error_t *err);
	int (*on_unknown_section)(void *opaque, savevm_registry_t *r, const char *idstr,
				  uint32_t instance_id, uint32_t version_id, hm_error_t *err);
	int (*on_command)(void *opaque, uint16_t cmd, const uint8_t *data, uint16_t len,
			  hm_error_t *err);
	int (*on_vmdesc)(void *opaque, const char *json, size_t len, hm_error_t *err);
	bool allow_incomplete;
	bool stop_at_eof;
	bool require_end;
} savevm_load_opts_t;

/*
 * Read a whole stream from f: magic, version, optional configuration,
 * records up to EOF (dispatching each by (idstr, instance) to its live load
 * handler or the vmstate engine, checking versions, footers, record types
 * and commands), then the optional vmdesc (must be valid JSON, nothing may
 * follow it). Returns 0 or a negative code; err says what and where.
 */
int savevm_load_stream(mig_file_t *f, savevm_registry_t *r, hm_error_t *err);
int savevm_load_stream_ex(mig_file_t *f, savevm_registry_t *r, const savevm_load_opts_t *opts,
			  savevm_load_info_t *info, hm_error_t *err);

/* ------------------------------------------------- hptmig/verify section */

/*
 * `hptmig/verify` (FULL, instance 0; wire-format.md §5). Version 2 (what
 * the writer sends): be32 htab_shift (or 0xffffffff: no HPT), be64 valid
 * entries, be32 slots per block (VERIFY_BLOCK_SLOTS; the loader refuses
 * another value), 32-byte block root. Version 1 (still loaded): be32
 * htab_shift, be64 valid, 32-byte HTAB digest. The source fills
 * htab_shift, valid and root (after the final pass) before
 * savevm_write_full_all; the destination registers its own and after the
 * load compares with savevm_verify_check. version and loaded are set by
 * post_load (not on the wire); post_load rejects a shift outside 18..46
 * and not 0xffffffff, and a count the shift cannot hold.
 */
typedef struct savevm_verify {
	uint32_t htab_shift;
	uint64_t valid;
	uint32_t slots_per_block;     /* v2; pre_save and pre_load set VERIFY_BLOCK_SLOTS */
	uint8_t digest[HM_SHA256_LEN]; /* v1: the HTAB digest */
	uint8_t root[HM_SHA256_LEN];   /* v2: the block root */
	uint32_t version;             /* the version loaded */
	bool loaded;
} savevm_verify_t;

#define VERIFY_SECTION_IDSTR "hptmig/verify"
#define VERIFY_SECTION_VERSION 2u
#define VERIFY_SECTION_MIN_VERSION 1u
extern const vmstate_desc_t savevm_verify_vmsd;
int savevm_register_verify(savevm_registry_t *r, savevm_verify_t *v, hm_error_t *err);
/*
 * Compare what the stream said (*sent, loaded) with what the destination
 * has: the root for a version 2 section, the digest for version 1 (either
 * pointer may be NULL when that value was not computed). Returns 0;
 * HM_E_STATE when the section was never loaded or the value its version
 * compares was not given; HM_E_DIGEST naming the version, shift, count and
 * both values (hex) when they differ.
 */
int savevm_verify_check(const savevm_verify_t *sent, uint32_t htab_shift, uint64_t valid,
			const uint8_t digest[HM_SHA256_LEN], const uint8_t root[HM_SHA256_LEN],
			hm_error_t *err);

#ifdef __cplusplus
}
#endif
#endif
