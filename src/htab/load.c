/* SPDX-License-Identifier: MIT */
/*
 * The standalone `spapr/htab` loader: replays record payloads (START, PART,
 * END) into a table, checking every field with 64-bit arithmetic before it
 * acts on it. It must never allocate a table above its max_shift, write
 * outside the table, accept an invalid entry in a valid run, or keep bit
 * 0x40; every error names the record, the chunk, the values and the offset.
 */
#include "hptmig/htab.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hptmig/qemu_wire.h"

/* Entries validated and stored per piece (fd readers serve up to 64 KiB). */
#define HTAB_LOAD_PIECE 2048u

struct htab_loader {
	hpt_t *table;     /* NULL before START or for no HPT */
	bool own;         /* table was created by the loader */
	bool external;    /* the caller gave us the table */
	bool exclusive;    /* opts.exclusive: nobody else touches the caller's table */
	bool populate;    /* opts.populate: back new tables with memory at once */
	/*
	 * One bit per 64-slot block that may hold a non-zero entry, kept only
	 * while nobody else writes the table (own or exclusive; NULL otherwise):
	 * the table is zeroed at START and at a resize header, and only this
	 * loader writes it. An invalid run then costs the blocks it names that
	 * hold something, not 16 bytes read per slot: without it an 8-byte
	 * chunk naming 65535 invalid slots read 1 MiB of table, so a hostile
	 * stream could keep a destination busy for many minutes.
	 */
	uint64_t *dirty;
	/*
	 * The blocks (4096 slots, wire-format.md §5) written since their
	 * digest was taken, for the root kept current: every store and clear
	 * of the table marks them (mark_blocks, clear_range). NULL when out
	 * of memory at creation: htab_loader_root then fails, nothing else.
	 */
	hpt_blocks_t *blocks;
	unsigned max_shift;
	const char *max_shift_hint; /* borrowed from opts; NULL = none */
	hpt_config_t cfg;
	bool have_cfg;
	htab_load_stats_t st;
};

static const char *rec_name(int t)
{
	/* "START", "PART", "END": QEMU's record name without "SECTION_". */
	const char *n = qemu_vm_record_name(t);
	return strncmp(n, "SECTION_", 8) == 0 ? n + 8 : n;
}

int htab_loader_create(hpt_t *table, const htab_loader_opts_t *opts, htab_loader_t **out)
{
	htab_loader_t *l = calloc(1, sizeof(*l));
	*out = NULL;
	if (!l)
		return -ENOMEM;
	l->max_shift = HTAB_ALLOC_SHIFT_MAX;
	if (opts && opts->max_shift) {
		if (opts->max_shift < HTAB_STREAM_SHIFT_MIN || opts->max_shift > HTAB_ALLOC_SHIFT_MAX) {
			free(l);
			return HM_E_RANGE;
		}
		l->max_shift = opts->max_shift;
	}
	l->max_shift_hint = opts ? opts->max_shift_hint : NULL;
	l->exclusive = opts && opts->exclusive;
	l->populate = opts && opts->populate;
	if (opts && opts->cfg) {
		l->cfg = *opts->cfg;
		l->have_cfg = true;
	}
	l->external = table != NULL;
	l->table = table;
	(void)hpt_blocks_new(&l->blocks);
	*out = l;
	return 0;
}

void htab_loader_destroy(htab_loader_t *l)
{
	if (!l)
		return;
	if (l->own)
		hpt_destroy(l->table);
	free(l->dirty);
	hpt_blocks_free(l->blocks);
	free(l);
}

void htab_loader_get_stats(const htab_loader_t *l, htab_load_stats_t *out)
{
	*out = l->st;
}

hpt_t *htab_loader_table(htab_loader_t *l)
{
	return l->st.started && !l->st.no_hpt ? l->table : NULL;
}

hpt_t *htab_loader_take_table(htab_loader_t *l)
{
	hpt_t *t = htab_loader_table(l);
	if (t) {
		l->table = NULL;
		l->own = false;
		l->external = false;
		free(l->dirty);
		l->dirty = NULL;
	}
	return t;
}

/*
 * Errors go only into the channel (the savevm layer adds the section's name,
 * the public entry point copies it out). A get failed (the channel latched
 * e.g. HM_E_TRUNCATED): put our context in front of its message.
 */
static int fail_stream(mig_file_t *f, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static int fail_stream(mig_file_t *f, const char *fmt, ...)
{
	char ctx[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(ctx, sizeof(ctx), fmt, ap);
	va_end(ap);
	if (!mig_file_status(f))
		return mig_file_set_error(f, HM_E_TRUNCATED, "%s: input ended", ctx);
	return mig_file_error_prefix(f, "%s: ", ctx);
}

/* "32 MiB", "1 GiB", "64 TiB": the size of a table of 2^shift bytes. */
static const char *table_size(unsigned shift, char *buf, size_t len)
{
	static const char *unit[] = {"bytes", "KiB", "MiB", "GiB", "TiB"};
	unsigned u = shift / 10 < 4 ? shift / 10 : 4;
	snprintf(buf, len, "%llu %s", 1ull << (shift - 10 * u), unit[u]);
	return buf;
}

/*
 * A new zeroed table of the given shift (START or a non-zero header). The
 * shift is checked against max_shift before anything is allocated. On a
 * resize hpt_reset maps the new table (untouched zero pages) and unmaps the
 * old one before hpt_populate touches the new one, so a stream of resizes
 * holds at most one populated table of at most 2^max_shift bytes.
 */
static int new_table(htab_loader_t *l, mig_file_t *f, int type, uint32_t hdr,
		     int64_t off)
{
	if (hdr > l->max_shift && hdr <= HTAB_ALLOC_SHIFT_MAX && l->max_shift < HTAB_ALLOC_SHIFT_MAX) {
		char want[32], cap[32];
		return mig_file_set_error_at(f, HM_E_RANGE, off,
					     "spapr/htab: %s record: htab_shift %" PRIu32
					     " (a table of %s) exceeds this destination's cap of htab_shift %u "
					     "(%s)%s%s",
					     rec_name(type), hdr, table_size(hdr, want, sizeof(want)), l->max_shift,
					     table_size(l->max_shift, cap, sizeof(cap)),
					     l->max_shift_hint ? ": " : "",
					     l->max_shift_hint ? l->max_shift_hint : "");
	}
	if (hdr < HTAB_STREAM_SHIFT_MIN || hdr > l->max_shift)
		return mig_file_set_error_at(f, HM_E_RANGE, off,
					     "spapr/htab: %s record: header (htab_shift) %" PRIu32
					     " (0x%08" PRIx32 ") out of range %u..%u",
					     rec_name(type), hdr, hdr, HTAB_STREAM_SHIFT_MIN, l->max_shift);
	hm_error_t e;
	hm_error_clear(&e);
	int rc;
	if (l->table) {
		rc = hpt_reset(l->table, hdr, &e);
	} else {
		rc = hpt_create(hdr, l->have_cfg ? &l->cfg : NULL, &l->table, &e);
		if (rc == 0)
			l->own = true;
	}
	if (rc == 0 && l->populate)
		rc = hpt_populate(l->table, &e);
	if (rc != 0) {
		hm_error_prefix(&e, "spapr/htab: %s record: table of htab_shift %" PRIu32 ": ",
				rec_name(type), hdr);
		e.offset = off;
		mig_file_latch_error(f, &e);
		return rc;
	}
	l->st.shift = hdr;
	l->st.no_hpt = false;
	l->st.tables++;
	/* A table just created or reset holds nothing (a borrowed one too:
	 * hpt_reset maps fresh zero pages): every block digest is known. */
	if (l->blocks && hpt_blocks_set_empty(l->blocks, l->table) != 0) {
		hpt_blocks_free(l->blocks);
		l->blocks = NULL;
	}
	free(l->dirty);
	l->dirty = NULL;
	if (l->own || l->exclusive) {
		/* slots / 64 blocks, 64 per word (8 MiB at the stream's limit,
		 * zero pages until touched). Without it, clears stay correct. */
		uint64_t words = ((hpt_slots(l->table) >> 6) + 63) >> 6;
		l->dirty = calloc(words ? words : 1, sizeof(uint64_t));
	}
	return 0;
}

static void mark_blocks(htab_loader_t *l, uint64_t first, uint64_t n)
{
	if (l->blocks)
		hpt_blocks_mark(l->blocks, first, n);
	if (!l->dirty || n == 0)
		return;
	for (uint64_t b = first >> 6; b <= (first + n - 1) >> 6; b++)
		l->dirty[b >> 6] |= UINT64_C(1) << (b & 63);
}

/* Clear slots [first, first + n) of the table, noting their blocks. */
static void clear_range(htab_loader_t *l, uint64_t first, uint64_t n)
{
	if (l->blocks)
		hpt_blocks_mark(l->blocks, first, n);
	hpt_clear_entries(l->table, first, n);
}

/* Invalidate slots [first, first + n): only blocks that may hold something. */
static void clear_slots(htab_loader_t *l, uint64_t first, uint64_t n)
{
	if (!l->dirty) {
		clear_range(l, first, n);
		return;
	}
	uint64_t end = first + n, last = (end - 1) >> 6;
	for (uint64_t b = first >> 6; b <= last;) {
		uint64_t w = l->dirty[b >> 6] >> (b & 63);
		if (w == 0) {
			b = ((b >> 6) + 1) << 6; /* the rest of this word is clean */
			continue;
		}
		b += (uint64_t)__builtin_ctzll(w);
		if (b > last)
			break;
		uint64_t bs = b << 6, be = bs + 64;
		uint64_t s = bs < first ? first : bs, e = be < end ? be : end;
		clear_range(l, s, e - s);
		if (s == bs && e == be)
			l->dirty[b >> 6] &= ~(UINT64_C(1) << (b & 63)); /* all zero now */
		b++;
	}
}

/* Switch to "no HPT": an own table is freed, a borrowed one is left alone. */
static void drop_table(htab_loader_t *l)
{
	if (l->own) {
		hpt_destroy(l->table);
		l->table = NULL;
		l->own = false;
	}
	free(l->dirty);
	l->dirty = NULL;
	l->st.no_hpt = true;
	l->st.shift = 0;
}

/* The entry of a valid run that lacks the valid bit (slow path of the check). */
static uint32_t first_invalid(const uint8_t *p, uint32_t k)
{
	uint32_t i = 0;
	while (i < k && htab_wire_valid(p + (size_t)i * HTAB_HPTE_SIZE))
		i++;
	return i;
}

/* Apply checked chunks at least this often, while they are still cached. */
#define HTAB_LOAD_SEGMENT (64u << 10)

/* True when a block of slots [first, first + n) may hold an entry. */
static bool may_hold(const htab_loader_t *l, uint64_t first, uint64_t n)
{
	if (!l->dirty)
		return true;
	for (uint64_t b = first >> 6; b <= (first + n - 1) >> 6; b++)
		if (l->dirty[b >> 6] & (UINT64_C(1) << (b & 63)))
			return true;
	return false;
}

/*
 * The fast path for a table nobody else writes: check the headers, in
 * place, of as many whole chunks as the channel has already buffered and
 * hand them to hpt in segments (one call per ~64 KiB, while they are still
 * in the cache), which stores the runs and checks their valid bits in the
 * same loop (a separate loop over each short run costs a mispredicted exit
 * per chunk). A
 * chunk whose invalid run may have something to clear ends its segment, so
 * the clear comes after its valid run and before any later chunk, as the
 * stream orders them. It stops before an endmark, a chunk that crosses the
 * buffer's end, and any chunk that fails a check: the careful path below
 * takes that one (and reports it with its offset). Returns the chunks
 * applied; counts go to *nvalid / *ninvalid.
 */
static uint64_t load_buffered(htab_loader_t *l, mig_file_t *f, uint64_t slots, uint64_t *nvalid,
			      uint64_t *ninvalid)
{
	size_t avail, used = 0, seg = 0;
	const uint8_t *b = mig_file_buffered(f, &avail);
	uint64_t applied = 0;
	while (avail - used >= HTAB_CHUNK_HDR_SIZE) {
		struct htab_chunk_hdr ch;
		if (htab_chunk_parse(b + used, slots, &ch) != HTAB_CHUNK_RUNS)
			break;
		uint32_t index = ch.index;
		uint16_t nv = ch.n_valid, ni = ch.n_invalid;
		size_t need = HTAB_CHUNK_HDR_SIZE + (size_t)nv * HTAB_HPTE_SIZE;
		if (avail - used < need)
			break;
		mark_blocks(l, index, nv);
		used += need;
		applied++;
		*nvalid += nv;
		*ninvalid += ni;
		bool clear = ni && may_hold(l, (uint64_t)index + nv, ni);
		if (clear || used - seg >= HTAB_LOAD_SEGMENT) {
			if (!hpt_write_chunks_exclusive(l->table, b + seg, used - seg))
				goto bad;
			seg = used;
			if (clear)
				clear_slots(l, (uint64_t)index + nv, ni);
		}
	}
	if (used > seg && !hpt_write_chunks_exclusive(l->table, b + seg, used - seg))
		goto bad;
	goto done;
bad:
	/* An entry of this segment lacks the valid bit: leave the segment
	 * unconsumed for the careful path, which stops at that entry. */
	for (size_t o = seg; o < used;) {
		struct htab_chunk_hdr ch = htab_chunk_hdr_get(b + o);
		uint16_t nv = ch.n_valid, ni = ch.n_invalid;
		o += HTAB_CHUNK_HDR_SIZE + (size_t)nv * HTAB_HPTE_SIZE;
		applied--;
		*nvalid -= nv;
		*ninvalid -= ni;
	}
	used = seg;
done:
	if (used)
		(void)mig_file_get_ptr(f, used); /* within the buffer: no refill */
	return applied;
}

/*
 * The chunks of one record. Per chunk the fast path is one zero-copy read
 * of the 8-byte header, the 64-bit range check, one zero-copy read of the
 * entries, a branch-free check of their valid bits and the store; byte
 * offsets for messages are recomputed only on an error.
 */
static int load_chunks(htab_loader_t *l, mig_file_t *f, int type)
{
	uint64_t slots = hpt_slots(l->table);
	bool raw = l->own || l->exclusive;
	uint64_t chunks = 0, nvalid = 0, ninvalid = 0;
	int rc = 0;
	for (uint64_t n = 0;; n++) {
		if (raw) {
			uint64_t k = load_buffered(l, f, slots, &nvalid, &ninvalid);
			chunks += k;
			n += k;
		}
		const uint8_t *h = mig_file_get_ptr(f, HTAB_CHUNK_HDR_SIZE);
		if (!h) {
			rc = fail_stream(f, "spapr/htab: %s record: chunk %" PRIu64
					 " header (or endmark) truncated",
					 rec_name(type), n);
			break;
		}
		struct htab_chunk_hdr ch;
		enum htab_chunk_kind kind = htab_chunk_parse(h, slots, &ch);
		if (kind == HTAB_CHUNK_ENDMARK)
			break;
		uint32_t index = ch.index;
		uint16_t nv = ch.n_valid, ni = ch.n_invalid;
		if (kind == HTAB_CHUNK_RANGE) {
			uint64_t end = (uint64_t)index + nv + ni;
			int64_t at = (int64_t)mig_file_offset(f) - HTAB_CHUNK_HDR_SIZE;
			rc = mig_file_set_error_at(f, HM_E_RANGE, at,
						   "spapr/htab: %s record: chunk %" PRIu64 " (index %" PRIu32
						   ", n_valid %u, n_invalid %u): index + n_valid + n_invalid = %" PRIu64
						   " exceeds the table's %" PRIu64 " slots (htab_shift %u)",
						   rec_name(type), n, index, nv, ni, end, slots, l->st.shift);
			break;
		}
		/* n_valid = n_invalid = 0 with a non-zero index is no endmark: QEMU's
		 * loader applies it as a no-op (after the range check), so do we. */
		for (uint32_t done = 0; done < nv;) {
			uint32_t k = nv - done < HTAB_LOAD_PIECE ? nv - done : HTAB_LOAD_PIECE;
			size_t bytes = (size_t)k * HTAB_HPTE_SIZE;
			const uint8_t *p = mig_file_get_ptr(f, bytes);
			if (!p) {
				rc = fail_stream(f, "spapr/htab: %s record: chunk %" PRIu64
						 " (index %" PRIu32 ", n_valid %u): entries %u..%u truncated",
						 rec_name(type), n, index, nv, done, done + k - 1);
				goto out;
			}
			unsigned all = 1;
			for (uint32_t i = 0; i < k; i++)
				all &= htab_wire_valid(p + (size_t)i * HTAB_HPTE_SIZE);
			if (!all) {
				uint32_t i = first_invalid(p, k);
				const uint8_t *e = p + (size_t)i * HTAB_HPTE_SIZE;
				int64_t at = (int64_t)(mig_file_offset(f) - bytes) +
					     (int64_t)i * HTAB_HPTE_SIZE;
				rc = mig_file_set_error_at(f, HM_E_FORMAT, at,
							   "spapr/htab: %s record: chunk %" PRIu64 " (index %" PRIu32
							   ", n_valid %u): entry %u (slot %" PRIu64
							   ") V=0x%016" PRIx64 " lacks the valid bit in a valid run",
							   rec_name(type), n, index, nv, done + i,
							   (uint64_t)index + done + i, hm_load_be64(e));
				goto out;
			}
			/* Bit 0x40 is cleared by hpt_write_entries (hpt.h contract). */
			if (raw)
				hpt_write_entries_exclusive(l->table, (uint64_t)index + done, k, p);
			else
				hpt_write_entries(l->table, (uint64_t)index + done, k, p);
			mark_blocks(l, (uint64_t)index + done, k);
			done += k;
		}
		if (ni)
			clear_slots(l, (uint64_t)index + nv, ni);
		chunks++;
		nvalid += nv;
		ninvalid += ni;
	}
out:
	l->st.chunks += chunks;
	l->st.valid_sent += nvalid;
	l->st.invalid_sent += ninvalid;
	return rc;
}

int htab_loader_load(htab_loader_t *l, mig_file_t *f, int type)
{
	int64_t off = (int64_t)mig_file_offset(f);
	if (mig_file_status(f))
		return fail_stream(f, "spapr/htab: channel already failed");
	if (type != QEMU_VM_SECTION_START && type != QEMU_VM_SECTION_PART &&
	    type != QEMU_VM_SECTION_END)
		return mig_file_set_error_at(f, HM_E_FORMAT, off,
					     "spapr/htab: record type %d: the section has only START, PART and "
					     "END records", type);
	uint32_t hdr = mig_file_get_be32(f);
	if (mig_file_status(f))
		return fail_stream(f, "spapr/htab: %s record: header truncated", rec_name(type));
	if (type == QEMU_VM_SECTION_START) {
		if (l->st.started)
			return mig_file_set_error_at(f, HM_E_FORMAT, off,
						     "spapr/htab: second START record (header 0x%08" PRIx32 ")", hdr);
		if (hdr == HTAB_HDR_CHUNKS)
			return mig_file_set_error_at(f, HM_E_FORMAT, off,
						     "spapr/htab: START record: header 0 (expected htab_shift %u..%u "
						     "or 0xffffffff for no HPT)",
						     HTAB_STREAM_SHIFT_MIN, l->max_shift);
	} else if (!l->st.started) {
		return mig_file_set_error_at(f, HM_E_FORMAT, off,
					     "spapr/htab: %s record (header 0x%08" PRIx32 ") before START",
					     rec_name(type), hdr);
	}
	l->st.records++;
	if (hdr == HTAB_HDR_NO_HPT) {
		/* As QEMU's loader: "no HPT" from here on; nothing follows. */
		l->st.started = true;
		drop_table(l);
		return 0;
	}
	if (hdr != HTAB_HDR_CHUNKS) {
		/* A new zeroed table of that shift (START, or a resize); nothing follows. */
		int rc = new_table(l, f, type, hdr, off);
		if (rc == 0)
			l->st.started = true;
		return rc;
	}
	if (l->st.no_hpt || !l->table)
		return mig_file_set_error_at(f, HM_E_FORMAT, off,
					     "spapr/htab: %s record: header 0 (chunks follow) but the source "
					     "announced no HPT (0xffffffff)",
					     rec_name(type));
	return load_chunks(l, f, type);
}

int htab_loader_load_buffer(htab_loader_t *l, const void *buf, size_t len, int type,
			    hm_error_t *err)
{
	mig_file_t *f;
	int rc = mig_file_open_mem_reader(buf, len, &f);
	if (rc)
		return hm_error_set(err, rc, -1, "spapr/htab: cannot open a memory reader");
	rc = htab_loader_load(l, f, type);
	if (rc == 0 && mig_file_offset(f) != len)
		rc = mig_file_set_error_at(f, HM_E_FORMAT, (int64_t)mig_file_offset(f),
					   "spapr/htab: %s record: %zu bytes left after the payload "
					   "(endmark at offset %" PRIu64 ")",
					   rec_name(type), len - (size_t)mig_file_offset(f),
					   mig_file_offset(f));
	/* The one place the channel's error is copied out. */
	int crc = mig_file_close(f, err);
	return rc ? rc : crc;
}

int htab_loader_summary(htab_loader_t *l, htab_summary_t *out, hm_error_t *err)
{
	memset(out, 0, sizeof(*out));
	if (!l->st.started)
		return hm_error_set(err, HM_E_STATE, -1, "spapr/htab: no START record was loaded");
	if (l->st.no_hpt || !l->table) {
		out->no_hpt = true;
		out->shift = HTAB_HDR_NO_HPT;
		hpt_digest_none(out->digest);
		return 0;
	}
	out->shift = hpt_shift(l->table);
	/* One walk; plain loads when nobody else writes the table. */
	int rc = hpt_summary(l->table, l->own || l->exclusive ? HPT_READ_QUIESCENT : HPT_READ_LOCKED,
			     &out->valid, &out->bolted, out->digest);
	if (rc)
		return hm_error_set(err, rc, -1, "spapr/htab: digest failed");
	return 0;
}

/* ---------------------------------------------- the root kept current */

static hpt_read_mode_t root_mode(const htab_loader_t *l)
{
	return l->own || l->exclusive ? HPT_READ_QUIESCENT : HPT_READ_LOCKED;
}

int htab_loader_root_refresh(htab_loader_t *l, uint64_t budget_ns, uint64_t *left)
{
	hpt_t *t = htab_loader_table(l);
	if (left)
		*left = 0;
	if (!t)
		return 0;
	if (!l->blocks)
		return -ENOMEM;
	return hpt_blocks_refresh(l->blocks, t, root_mode(l), budget_ns, left);
}

void htab_loader_root_stats(htab_loader_t *l, hpt_root_stats_t *st)
{
	hpt_t *t = htab_loader_table(l);
	memset(st, 0, sizeof(*st));
	if (t && l->blocks)
		hpt_blocks_stats(l->blocks, t, st);
}

int htab_loader_root(htab_loader_t *l, htab_root_t *out, hm_error_t *err)
{
	memset(out, 0, sizeof(*out));
	if (!l->st.started)
		return hm_error_set(err, HM_E_STATE, -1, "spapr/htab: no START record was loaded");
	hpt_t *t = htab_loader_table(l);
	if (!t) {
		out->no_hpt = true;
		out->info.shift = HTAB_HDR_NO_HPT;
		hpt_root_none(out->info.root);
		return 0;
	}
	int rc = l->blocks ? hpt_blocks_root(l->blocks, t, root_mode(l), &out->info) : -ENOMEM;
	if (rc)
		return hm_error_set(err, rc, -1, "spapr/htab: block root: %s", hm_err_str(rc));
	return 0;
}
