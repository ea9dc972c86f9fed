/* SPDX-License-Identifier: MIT */
/*
 * Private pieces of the analyze layer: the bounds-checked cursor every
 * parser reads through, the compiled vmdesc, the sparse replay table of
 * spapr/htab and the walker state. Nothing here may read outside
 * [buf, buf + end) or trust a length before checking it against what is left.
 */
#ifndef HPTMIG_AN_INTERNAL_H
#define HPTMIG_AN_INTERNAL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hptmig/analyze.h"

/* ------------------------------------------------------------ vmdesc */

enum an_vkind { AN_VK_GENERIC, AN_VK_INT, AN_VK_UINT, AN_VK_INT_LE, AN_VK_BOOL, AN_VK_NULLPTR, AN_VK_STRUCT };

struct an_vdesc;

struct an_vfield {
	const char *name;   /* points into the parsed JSON (kept alive) */
	const char *type;
	uint64_t size;      /* bytes of one element */
	uint64_t count;     /* array_len, or 1 */
	int64_t index;      /* "index" of an unfolded array element, or -1 */
	enum an_vkind kind;
	int64_t dup_of;     /* index of the first field of this description with
			     * the same name (its values merge), or -1 */
	struct an_vdesc *sdesc; /* AN_VK_STRUCT */
};

struct an_vdesc {
	const char *name;      /* device name (top level) or NULL */
	const char *vmsd_name; /* vmsd_name, also the subsection name on the wire */
	uint32_t instance_id;
	int64_t version;       /* -1 when absent */
	size_t nfields;
	struct an_vfield *fields;
	size_t nsubs;
	struct an_vdesc *subs;
	bool has_dups;         /* some field names repeat */
};

/* Maximum nesting of structs and subsections we follow (a hostile vmdesc
 * must not exhaust the stack). QEMU's deepest real nesting is about 4. */
#define AN_VDESC_MAX_DEPTH 32

struct an_vmdesc {
	json_t *root;         /* owned */
	uint32_t page_size;   /* 0 when absent */
	size_t ndev;
	struct an_vdesc *devs;
	uint32_t *order; /* devs sorted by (name, instance_id), for bsearch */
	struct an_vdesc *config; /* "configuration", or NULL */
};

/*
 * Caps on the vmdesc, checked before jansson sees it (docs/limits.md): its
 * size, the JSON values it holds (objects, arrays, strings, numbers, ...)
 * and their nesting. Real vmdescs: 7 KB, 500 values, depth 12 (pseries);
 * a few hundred KB for the largest x86 machines.
 */
#define AN_VMDESC_MAX_BYTES ((size_t)4 << 20)
#define AN_VMDESC_MAX_VALUES ((uint64_t)1 << 16)
#define AN_VMDESC_MAX_JSON_DEPTH (4 * AN_VDESC_MAX_DEPTH + 8)
/* Count the JSON values and nesting of s[0, n) (a scan of its bytes outside
 * strings) and refuse one beyond the caps: HM_E_RANGE at base_off + the
 * offending byte. Malformed JSON passes (jansson reports it). */
int an_vmdesc_prescan(const char *s, size_t n, int64_t base_off, hm_error_t *err);
/* Compile a parsed vmdesc (takes a reference to root). err offset = base_off. */
int an_vmdesc_compile(json_t *root, struct an_vmdesc *vd, int64_t base_off, hm_error_t *err);
void an_vmdesc_free(struct an_vmdesc *vd);
const struct an_vdesc *an_vmdesc_find(const struct an_vmdesc *vd, const char *name,
				      uint32_t instance_id);
/* Built-in layouts of sections we know without a vmdesc (our own `spapr`
 * versions 1..3 and `hptmig/verify` 1). NULL when none. */
const struct an_vdesc *an_builtin_find(const char *name, uint32_t instance_id, uint32_t version);

/* ------------------------------------------------------------ index */

/* Open-addressing hash from a 64-bit key to a u32 value, so that lookups by
 * section id, (idstr, instance) and RAM block name stay O(1) whatever the
 * input (a linear search per record would make a hostile stream quadratic). */
struct an_index {
	uint64_t *keys;
	uint32_t *vals;
	size_t cap, n; /* cap: power of two, or 0 */
};
int an_index_put(struct an_index *ix, uint64_t key, uint32_t val);
/* A per-process random seed, and a hash keyed by it: a hostile stream
 * cannot choose keys that collide (linear probing would turn quadratic). */
uint64_t an_hash_seed(void);
uint64_t an_hash_mix(uint64_t key);
/* Visit the values stored under key: fn returns true to stop. Returns the
 * value fn stopped at, or -1. */
int64_t an_index_find(const struct an_index *ix, uint64_t key, bool (*fn)(void *, uint32_t), void *opaque);
void an_index_free(struct an_index *ix);
uint64_t an_hash_str(const char *s, uint64_t seed);

/* ------------------------------------------------------------ state tree */

struct an_arena {
	struct an_arena_chunk *head;
	size_t total; /* bytes of all chunks */
	size_t max;   /* allocation fails (and over is set) past this; 0: no cap */
	bool over;
};
void *an_arena_alloc(struct an_arena *a, size_t n);
void an_arena_free(struct an_arena *a);

enum an_node_type { AN_NODE_OBJ, AN_NODE_ARR, AN_NODE_STR, AN_NODE_TRUE, AN_NODE_FALSE };

/* A value of the decoded state; all of it lives in the walk's arena. */
struct an_node {
	enum an_node_type type;
	const char *key;          /* member name inside an object */
	const char *str;          /* AN_NODE_STR */
	size_t len;
	struct an_node *first, *last, *next;
};
struct an_node *an_node_new(struct an_arena *a, enum an_node_type t, const char *str, size_t len);
/*
 * Put v under key in obj. slot: where the caller keeps the node already put
 * under this key (NULL when none yet; updated), or NULL when the caller
 * knows the key is new. No search: a hostile vmdesc with 200,000 fields per
 * struct must not make each put scan the object.
 */
int an_node_put(struct an_arena *a, struct an_node *obj, const char *key, struct an_node *v, bool arr,
		struct an_node **slot);
/* Indented JSON text of the tree (malloc'd), or NULL: out of memory, or
 * (*over set) the text would exceed max bytes (0: no cap). */
char *an_node_render(const struct an_node *root, size_t max, size_t *len, bool *over);
/*
 * The --state budget (docs/limits.md): the tree's arena plus its text may
 * take AN_STATE_BASE + AN_STATE_PER_BYTE bytes per input byte outside the
 * spapr/htab records (those cost table memory instead); with
 * AN_OPT_STATE_JSON the text counts AN_STATE_JSON_WEIGHT times (jansson's
 * values take at most about 5 bytes per byte of the indented text).
 */
#define AN_STATE_BASE ((size_t)16 << 20)
#define AN_STATE_PER_BYTE 2u
#define AN_STATE_JSON_WEIGHT 6u

/* ------------------------------------------------------------ table */

/*
 * The replayed table keeps only what the stream wrote, so that its memory is
 * bounded by the input's size whatever the slots (docs/limits.md):
 * - a leaf per 32-slot group that was ever written: a header (group, bitmap
 *   of its valid slots) and its valid entries only, packed in slot order, in
 *   a capacity that is a power of two (1..32 entries);
 * - an open-addressing hash from group to leaf (load at most 3/4);
 * - a summary bitmap with one bit per group (set when the group has a valid
 *   entry), so an invalid run costs what it invalidates and slot-order
 *   iteration skips empty groups 64 at a time. 2^27 groups at shift 36: at
 *   most 16 MiB, allocated zeroed (pages never written cost nothing).
 * Worst case: a 24-byte chunk (header + one entry) in a group of its own
 * costs a 24-byte leaf (32 with malloc's header) and at most 32 bytes of
 * hash, 2.7 bytes per input byte; dense runs cost about 1 byte per byte.
 */
#define AN_TAB_GRP_SHIFT 5u
#define AN_TAB_GRP_SLOTS (1u << AN_TAB_GRP_SHIFT)

struct an_leaf;

struct an_tab {
	uint32_t shift;   /* 18..36 */
	uint64_t slots;
	uint64_t ngrp;    /* slots / 32 (rounded up) */
	uint64_t *sum;    /* ceil(ngrp / 64) words: group has valid entries */
	struct an_leaf **hash; /* hcap buckets, NULL when free */
	size_t hcap, hn;
	uint64_t valid;   /* valid entries now */
};

int an_tab_init(struct an_tab *t, uint32_t shift);
void an_tab_fini(struct an_tab *t);
/* Structural check of a valid entry in slot (papr-hpt.md, "Hash"): B not
 * reserved, page-size encoding known, the entry sits in the PTEG its AVPN
 * and H bit hash to (on the hash bits the AVPN determines). */
bool an_hpte_check(uint32_t shift, uint64_t slot, uint64_t v, uint64_t r, int *pgsz);
/* Page size encoding of an entry (enum an_pgsz) and its base page shift. */
int an_hpte_pgsz(uint64_t v, uint64_t r, unsigned *base_shift);

/* ------------------------------------------------------------ walker */

struct an_frame {
	const char *name;
	int64_t index;
};

struct an_private {
	struct an_vmdesc vd;
	bool have_vd;
	struct an_tab tab;   /* valid when htab present and hash (not no_hpt) */
	bool have_tab;
	size_t rec_cap; /* capacity of report->records */
	int64_t verify_off; /* offset of the hptmig/verify record */
	struct an_arena arena;  /* the state tree (AN_OPT_STATE) */
	uint64_t htab_bytes;    /* bytes of the spapr/htab records walked */
	struct an_index by_id;  /* section id -> section index */
	struct an_index by_key; /* hash(idstr, instance) -> section index */
	struct an_index blocks; /* hash(RAM block name) -> block index */
	uint64_t work;          /* vmstate field visits so far */
	uint64_t work_max;      /* ... and the most a stream of this size may need */
	struct an_node *state;  /* its root object */
	/* spapr/htab, the current record's pass (AN_ANOM_OVERLAP, htab.c):
	 * the last chunk's first slot and the end of what the pass covered */
	uint64_t sweep_first, sweep_end;
	bool sweep_any;
};

struct an_stream;

struct an_walk {
	/* The bytes [base, base + avail) of the stream are at win[0, avail):
	 * the whole buffer of an in-memory walk (base 0), or the read-ahead
	 * window of a streamed one (st set), or its held final phase. Offsets
	 * (pos, end, error offsets) are always the stream's. */
	const uint8_t *win;
	size_t base;
	size_t avail;
	size_t end;   /* records end here: the vmdesc offset, the buffer length,
		       * or SIZE_MAX while streaming (the source says where) */
	size_t pos;
	unsigned opts;
	an_report_t *r;
	hm_error_t *err;
	const struct an_vmdesc *vd; /* NULL without vmdesc */
	struct an_arena *arena;     /* state tree (AN_OPT_STATE) */
	char ctx[200];              /* "record #N SECTION_FULL, section 'x' (id N, instance N)" */
	int64_t rec_off;
	size_t nframes;
	struct an_frame frames[AN_VDESC_MAX_DEPTH * 2 + 8];
	/* ram */
	uint32_t page_size;
	int64_t ram_cur_block;
	/* vmstate walk stopped at an undescribed subsection (builtin layouts) */
	bool stop_sub;
	struct an_stream *st; /* a streamed walk's source and hooks, or NULL */
};

/* A streamed walk's state (stream.c). */
struct an_stream {
	const an_source_t *src;
	an_stream_opts_t o;
	an_stream_hooks_t hooks; /* all NULL when none */
	uint8_t *win;       /* AN_STREAM_WINDOW bytes */
	bool eof;           /* the source said so */
	uint64_t total;     /* bytes read from the source */
	bool held;          /* walking the held final phase */
	uint8_t *hold;      /* its bytes (malloc'd) */
	size_t hold_len;
	uint64_t hold_off;
	uint64_t committed; /* last offset given to the commit hook */
	uint64_t released;  /* bytes before it were given to the bytes hook */
	uint64_t commit_mark; /* the window's end (base + avail) at the last commit */
	bool in_record;     /* commit points inside a record */
	uint64_t next_progress_ns;
};
/* Read the final phase from w->pos to the end of the stream (or of its
 * vmdesc, o.stop_at_vmdesc) into st->hold, and point the window at it. */
int an_stream_hold(struct an_walk *w);
/* A walk stopped in the live phase (a section it cannot decode): read the
 * rest and count it (within the input cap), so that the report gives the
 * stream's size as an in-memory walk does. 0 or the source's error. */
int an_stream_drain(struct an_walk *w);
/* Give the bytes hook (if any) the bytes read before upto it has not had
 * (they must still be in the window). 0 or its error (set in w->err). */
int an_stream_release(struct an_walk *w, uint64_t upto);
/* A hook's return value: 0, or its code (HM_E_CANCELLED when positive)
 * with w->err set ("stopped by the <hook> hook") unless already set. */
int an_stream_hook_rc(struct an_walk *w, int rc, const char *hook);
/* The progress hook (pass_end: at the end of a spapr/htab record). */
int an_stream_progress(struct an_walk *w, bool pass_end);
/* Find the vmdesc (0x06, be32 len, JSON) ending exactly at buf + len right
 * after an EOF byte, at or after lo. */
bool an_find_vmdesc(const uint8_t *buf, size_t len, size_t lo, size_t *off, uint32_t *jlen);

/* Streamed walks (stream.c): make n bytes from pos readable in the window
 * (false with an error set when the stream ends first or the source
 * fails); consume n bytes without looking at them; the next byte or -1
 * (no error) at the end of the stream. */
bool an_stream_fill(struct an_walk *w, uint64_t n, const char *what);
int an_stream_skip(struct an_walk *w, uint64_t n, const char *what);
int an_stream_peek(struct an_walk *w);
/* Tell the hooks that every byte before w->pos was validated (rate
 * limited: see an_commit_point; always when force). Returns 0 or
 * the hook's error (set in w->err). */
int an_stream_commit(struct an_walk *w, bool force);
#define AN_COMMIT_STEP ((size_t)1 << 20)
/* Between items, also commit once per read when fewer than this many
 * read bytes are left (more than a RAM item: 8 + 1 + 255 + 4096 bytes):
 * what was read goes out before the window is refilled (one send per
 * read, as a relay does), and the window's compaction moves at most this
 * and an item's bytes. */
#define AN_COMMIT_TAIL ((size_t)8 << 10)

/* At an item boundary of a streamed walk: commit when due (the fast test
 * inline: this runs once per RAM page). 0 or the hook's error. */
static inline int an_commit_point(struct an_walk *w)
{
	const struct an_stream *st = w->st;
	size_t left = w->base + w->avail - w->pos;
	if (w->pos - st->committed < AN_COMMIT_STEP &&
	    (left >= AN_COMMIT_TAIL || st->commit_mark == w->base + w->avail))
		return 0;
	return an_stream_commit(w, false);
}

/* The most vmstate field visits a walk of records ending at walk_end may
 * make (report->priv->work counts them); rewrite checks its shorter output
 * against it. */
uint64_t an_work_max(size_t walk_end);

int an_fail(struct an_walk *w, int code, int64_t off, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* The byte at w->pos (an_need said it is there). */
static inline const uint8_t *an_at(const struct an_walk *w)
{
	return w->win + (w->pos - w->base);
}
static inline bool an_need(struct an_walk *w, uint64_t n, const char *what)
{
	if (w->end - w->pos >= n && w->base + w->avail - w->pos >= n)
		return true;
	if (w->st && w->end - w->pos >= n)
		return an_stream_fill(w, n, what);
	an_fail(w, HM_E_TRUNCATED, (int64_t)w->pos, "%s: needs %llu bytes, only %llu left", what,
		(unsigned long long)n, (unsigned long long)(w->end - w->pos));
	return false;
}
/* Consume n bytes unseen (RAM page data): a streamed walk never holds them. */
static inline int an_skip(struct an_walk *w, uint64_t n, const char *what)
{
	if (w->end - w->pos >= n && w->base + w->avail - w->pos >= n) {
		w->pos += (size_t)n;
		return 0;
	}
	if (w->st && w->end - w->pos >= n)
		return an_stream_skip(w, n, what);
	return an_fail(w, HM_E_TRUNCATED, (int64_t)w->pos, "%s: needs %llu bytes, only %llu left", what,
		       (unsigned long long)n, (unsigned long long)(w->end - w->pos));
}
/* The next byte, or -1 at the end of the records (no error). */
static inline int an_peek(struct an_walk *w)
{
	if (w->pos < w->end && w->pos - w->base < w->avail)
		return *an_at(w);
	return w->st && w->pos < w->end ? an_stream_peek(w) : -1;
}
static inline uint8_t an_u8(struct an_walk *w)
{
	uint8_t v = *an_at(w);
	w->pos++;
	return v;
}
static inline uint16_t an_be16(struct an_walk *w)
{
	uint16_t v = hm_load_be16(an_at(w));
	w->pos += 2;
	return v;
}
static inline uint32_t an_be32(struct an_walk *w)
{
	uint32_t v = hm_load_be32(an_at(w));
	w->pos += 4;
	return v;
}
static inline uint64_t an_be64(struct an_walk *w)
{
	uint64_t v = hm_load_be64(an_at(w));
	w->pos += 8;
	return v;
}

/* Walk one vmstate payload (fields then listed subsections) through d.
 * obj: JSON object to fill with decoded values, or NULL to only skip. */
int an_vmstate_walk(struct an_walk *w, const struct an_vdesc *d, int depth, struct an_node *obj,
		    bool builtin);
/* `ram` payload of one record (START/PART/END). */
int an_ram_walk(struct an_walk *w, uint8_t type);
/* `spapr/htab` payload of one record. */
int an_htab_walk(struct an_walk *w, uint8_t type, uint32_t version);
/* Final table statistics and digest into r->htab. */
int an_htab_finish(an_report_t *r, hm_error_t *err);
/*
 * The block root of the replayed table (wire-format.md §5) into
 * r->htab.root (root.c): block digests from the sparse table in slot
 * order, empty blocks as 32 zero bytes. Only for no HPT and shifts up to
 * AN_ROOT_SHIFT_MAX (the root's input is 32 bytes per block whatever the
 * stream holds: at most 32 MiB); above, has_root stays false.
 */
#define AN_ROOT_SHIFT_MAX HTAB_ALLOC_SHIFT_MAX
int an_htab_root(an_report_t *r, hm_error_t *err);
/* Every entry of the sparse table in slot order (htab.c). */
int an_tab_foreach(const struct an_tab *t, int (*fn)(void *, uint64_t, uint64_t, uint64_t),
		   void *opaque);
/* Note an hptmig/verify payload of len bytes at version (v1 or v2 layout,
 * v2 with 4096 slots per block); anything else is not ours (root.c). */
void an_verify_note(an_report_t *r, uint32_t version, const uint8_t *p, size_t len,
		    int64_t rec_off);
/* Does the noted hptmig/verify value (digest or root) equal the replayed
 * table's? (false without a table or a root to compare) */
bool an_verify_match(const an_report_t *r);
/* Canonical END payload of the final table. */
int an_htab_encode_final(const an_report_t *r, uint8_t **out, size_t *out_len);

#endif
