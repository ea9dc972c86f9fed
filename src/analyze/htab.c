/* SPDX-License-Identifier: MIT */
/*
 * `spapr/htab` for the analyser: replays every chunk of every record into a
 * sparse copy of the table (64 KiB blocks allocated on first write, so a
 * hostile 2^32-slot header costs 8 MiB of pointers, not 64 GiB), then counts
 * what the final table holds, checks every valid entry's structure and
 * computes the HTAB digest (wire-format.md §5). It applies every check of a
 * loader (version, shift range, 64-bit chunk bounds, no chunks without a
 * table) and never reads past the record.
 */
#include "an_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define HPTE_V_VALID 0x1ull
#define HPTE_V_SECONDARY 0x2ull
#define HPTE_V_LARGE 0x4ull
#define HPTE_V_BOLTED 0x10ull
#define HPTE_V_HVLOCK 0x40ull
#define HPTE_V_AVPN_MASK 0x3fffffffffffff80ull
#define HTAB_SHIFT_MIN 18u
#define HTAB_SHIFT_MAX 46u
#define HTAB_RUN_MAX 65535u

/* --------------------------------------------------------------- table */

int an_tab_init(struct an_tab *t, uint32_t shift)
{
	memset(t, 0, sizeof(*t));
	t->shift = shift;
	t->slots = UINT64_C(1) << (shift - 4);
	t->nblk = (t->slots + AN_TAB_BLK_SLOTS - 1) >> AN_TAB_BLK_SHIFT;
	t->blk = calloc((size_t)t->nblk, sizeof(*t->blk));
	return t->blk ? 0 : -ENOMEM;
}

void an_tab_fini(struct an_tab *t)
{
	if (!t || !t->blk)
		return;
	for (uint64_t i = 0; i < t->nblk; i++)
		free(t->blk[i]);
	free(t->blk);
	memset(t, 0, sizeof(*t));
}

/*
 * A block: BLK_HDR words (a bitmap of its valid entries and their count),
 * then its entries as (V, R) pairs. The bitmap makes an invalid run cost
 * what it invalidates, not its length: a 8-byte chunk header may name 65535
 * slots, and a hostile stream must not turn that into a long walk.
 */
#define BLK_BITMAP_WORDS (AN_TAB_BLK_SLOTS / 64)
#define BLK_COUNT BLK_BITMAP_WORDS
#define BLK_HDR (BLK_BITMAP_WORDS + 1)

static inline uint64_t *blk_entry(uint64_t *b, uint64_t slot)
{
	return b + BLK_HDR + (slot & (AN_TAB_BLK_SLOTS - 1)) * 2;
}

static uint64_t *tab_block(struct an_tab *t, uint64_t slot)
{
	uint64_t **b = &t->blk[slot >> AN_TAB_BLK_SHIFT];
	if (!*b)
		*b = calloc(BLK_HDR + (size_t)AN_TAB_BLK_SLOTS * 2, sizeof(uint64_t));
	return *b;
}

/* Store one entry, keeping the block's bitmap and count. */
static inline void tab_store(uint64_t *b, uint64_t slot, uint64_t v, uint64_t r)
{
	uint64_t *e = blk_entry(b, slot);
	unsigned i = (unsigned)(slot & (AN_TAB_BLK_SLOTS - 1));
	uint64_t bit = UINT64_C(1) << (i & 63);
	bool was = (e[0] & 1) != 0, now = (v & 1) != 0;
	if (was != now) {
		b[i >> 6] ^= bit;
		b[BLK_COUNT] += now ? 1 : (uint64_t)-1;
	}
	e[0] = v;
	e[1] = r;
}

/* Invalidate slots [first, first + n): only entries that are valid change. */
static void tab_invalidate(struct an_tab *t, uint64_t first, uint64_t n)
{
	uint64_t end = first + n;
	while (first < end) {
		uint64_t blk_end = (first | (AN_TAB_BLK_SLOTS - 1)) + 1;
		uint64_t stop = end < blk_end ? end : blk_end;
		uint64_t *b = t->blk[first >> AN_TAB_BLK_SHIFT];
		if (b && b[BLK_COUNT]) {
			unsigned lo = (unsigned)(first & (AN_TAB_BLK_SLOTS - 1));
			unsigned hi = (unsigned)((stop - 1) & (AN_TAB_BLK_SLOTS - 1));
			for (unsigned wd = lo >> 6; wd <= hi >> 6; wd++) {
				uint64_t m = b[wd];
				if (wd == lo >> 6)
					m &= ~UINT64_C(0) << (lo & 63);
				if (wd == hi >> 6 && (hi & 63) != 63)
					m &= (UINT64_C(1) << ((hi & 63) + 1)) - 1;
				while (m) {
					unsigned bitn = (unsigned)__builtin_ctzll(m);
					m &= m - 1;
					uint64_t *e = b + BLK_HDR + ((uint64_t)wd * 64 + bitn) * 2;
					e[0] = e[1] = 0;
					b[wd] &= ~(UINT64_C(1) << bitn);
					b[BLK_COUNT]--;
				}
			}
		}
		first = stop;
	}
}

/* ------------------------------------------------------------- entries */

const char *an_pgsz_name(int pg)
{
	static const char *const n[AN_PG_COUNT] = {"4K", "64K", "16M", "4K/64K", "4K/16M", "64K/16M",
						  "invalid"};
	return pg >= 0 && pg < AN_PG_COUNT ? n[pg] : "?";
}

int an_hpte_pgsz(uint64_t v, uint64_t r, unsigned *base_shift)
{
	unsigned bs = 12;
	int pg;
	if (!(v & HPTE_V_LARGE))
		pg = AN_PG_4K;
	else if ((r & 0xfff000) == 0)
		pg = AN_PG_16M, bs = 24;
	else if ((r & 0xfff000) == 0x8000)
		pg = AN_PG_64K_16M, bs = 16;
	else if ((r & 0xfff000) == 0x38000)
		pg = AN_PG_4K_16M, bs = 12;
	else if ((r & 0xf000) == 0x1000)
		pg = AN_PG_64K, bs = 16;
	else if ((r & 0xf000) == 0x7000)
		pg = AN_PG_4K_64K, bs = 12;
	else
		pg = AN_PG_BAD;
	if (base_shift)
		*base_shift = bs;
	return pg;
}

/*
 * The AVPN holds va >> 23, so it gives the VSID and the effective address
 * bits from 23 up; the hash bits below (23 - base page shift) come from page
 * offset bits the AVPN drops, and are not checked. The PTEG index must
 * match the (primary or secondary) hash on every other bit.
 */
bool an_hpte_check(uint32_t shift, uint64_t slot, uint64_t v, uint64_t r, int *pgsz)
{
	unsigned p;
	int pg = an_hpte_pgsz(v, r, &p);
	if (pgsz)
		*pgsz = pg;
	uint64_t b = v >> 62;
	if (pg == AN_PG_BAD || b > 1)
		return false;
	uint64_t avpn = (v & HPTE_V_AVPN_MASK) >> 7;
	uint64_t hash;
	if (b == 0) {
		uint64_t vsid = avpn >> 5;
		uint64_t ea = (avpn & 0x1f) << 23;
		hash = vsid ^ (ea >> p);
	} else {
		uint64_t vsid = avpn >> 17;
		uint64_t ea = (avpn & 0x1ffff) << 23;
		hash = vsid ^ (vsid << 25) ^ (ea >> p);
	}
	uint64_t known = p < 23 ? ~((UINT64_C(1) << (23 - p)) - 1) : ~UINT64_C(0);
	uint64_t npteg_mask = (UINT64_C(1) << (shift - 7)) - 1;
	uint64_t want = (v & HPTE_V_SECONDARY) ? ~hash : hash;
	uint64_t pteg = slot >> 3;
	return ((want ^ pteg) & known & npteg_mask) == 0;
}

/* ---------------------------------------------------------------- walk */

static int new_table(struct an_walk *w, uint32_t hdr, size_t at)
{
	struct an_private *p = w->r->priv;
	if (hdr < HTAB_SHIFT_MIN || hdr > HTAB_SHIFT_MAX)
		return an_fail(w, HM_E_RANGE, (int64_t)at, "header: htab_shift %u outside %u..%u", hdr,
			       HTAB_SHIFT_MIN, HTAB_SHIFT_MAX);
	if (hdr > AN_HTAB_SHIFT_MAX_STREAM)
		return an_fail(w, HM_E_UNSUPPORTED, (int64_t)at,
			       "header: htab_shift %u: tables above 2^%u bytes cannot be addressed by the stream's"
			       " be32 slot index", hdr, AN_HTAB_SHIFT_MAX_STREAM);
	if (p->have_tab)
		an_tab_fini(&p->tab);
	p->have_tab = false;
	if (an_tab_init(&p->tab, hdr) < 0)
		return an_fail(w, -ENOMEM, (int64_t)at, "out of memory for a table of shift %u", hdr);
	p->have_tab = true;
	w->r->htab.no_hpt = false;
	w->r->htab.shift = hdr;
	return 0;
}

int an_htab_walk(struct an_walk *w, uint8_t type, uint32_t version)
{
	an_htab_stats_t *h = &w->r->htab;
	struct an_private *p = w->r->priv;
	if (type == AN_REC_START) {
		if (version != 1)
			return an_fail(w, HM_E_VERSION, w->rec_off, "version %u (only 1 exists)", version);
		h->present = true;
		h->n_start++;
	} else if (type == AN_REC_PART) {
		h->n_part++;
	} else {
		h->n_end++;
	}
	h->records++;
	size_t at = w->pos;
	if (!an_need(w, 4, "header"))
		return w->err->code;
	uint32_t hdr = an_be32(w);
	if (type == AN_REC_START) {
		h->start_shift = hdr;
		if (hdr == AN_HTAB_NO_HPT) {
			h->no_hpt = true;
			return 0;
		}
		return new_table(w, hdr, at);
	}
	if (hdr == AN_HTAB_NO_HPT) {
		/* QEMU frees its table on this header: the machine has no HPT now. */
		if (p->have_tab) {
			an_tab_fini(&p->tab);
			p->have_tab = false;
			h->resizes++;
		}
		h->no_hpt = true;
		h->shift = 0;
		return 0;
	}
	if (hdr != 0) {
		/* A new, zeroed table of this shift (QEMU reads nothing more). */
		h->resizes++;
		return new_table(w, hdr, at);
	}
	if (!p->have_tab)
		return an_fail(w, HM_E_FORMAT, (int64_t)at,
			       "header 0 (chunks follow) but the machine has no HPT (START header 0x%08x)",
			       h->start_shift);
	struct an_tab *t = &p->tab;
	uint64_t nchunks = 0;
	for (;;) {
		size_t c_at = w->pos;
		if (!an_need(w, 8, "chunk header"))
			return w->err->code;
		uint32_t index = an_be32(w);
		uint16_t nv = an_be16(w);
		uint16_t ni = an_be16(w);
		if (index == 0 && nv == 0 && ni == 0)
			break;
		nchunks++;
		if ((uint64_t)index + nv + ni > t->slots)
			return an_fail(w, HM_E_RANGE, (int64_t)c_at,
				       "chunk %" PRIu64 ": index %u + n_valid %u + n_invalid %u = %" PRIu64
				       " exceeds the table's %" PRIu64 " slots (shift %u)",
				       nchunks, index, nv, ni, (uint64_t)index + nv + ni, t->slots, t->shift);
		if (!an_need(w, (uint64_t)nv * 16, "chunk HPTEs"))
			return w->err->code;
		const uint8_t *src = w->buf + w->pos;
		for (uint32_t i = 0; i < nv; i++) {
			uint64_t slot = (uint64_t)index + i;
			uint64_t *b = tab_block(t, slot);
			if (!b)
				return an_fail(w, -ENOMEM, (int64_t)c_at, "out of memory");
			tab_store(b, slot, hm_load_be64(src + i * 16) & ~HPTE_V_HVLOCK, hm_load_be64(src + i * 16 + 8));
		}
		w->pos += (size_t)nv * 16;
		tab_invalidate(t, (uint64_t)index + nv, ni);
		h->valid_sent += nv;
		h->invalid_sent += ni;
	}
	h->chunks += nchunks;
	if (!nchunks)
		h->empty_records++;
	return 0;
}

/* --------------------------------------------------------------- finish */

int an_htab_finish(an_report_t *r, hm_error_t *err)
{
	an_htab_stats_t *h = &r->htab;
	struct an_private *p = r->priv;
	if (!h->present)
		return 0;
	h->valid = h->bolted = h->secondary = h->seg_256m = h->seg_1t = h->seg_reserved = 0;
	h->check_failures = 0;
	memset(h->page_sizes, 0, sizeof(h->page_sizes));
	memset(h->pteg_occupancy, 0, sizeof(h->pteg_occupancy));
	hm_sha256_t *sha;
	int rc = hm_sha256_new(&sha);
	if (rc < 0)
		return hm_error_set(err, rc, -1, "spapr/htab: cannot start SHA-256");
	uint8_t buf[24 * 256];
	size_t n = 0;
	if (!p->have_tab) {
		hm_store_be32(buf, AN_HTAB_NO_HPT);
		hm_sha256_update(sha, buf, 4);
		h->slots = 0;
	} else {
		struct an_tab *t = &p->tab;
		h->slots = t->slots;
		hm_store_be32(buf, t->shift);
		hm_sha256_update(sha, buf, 4);
		uint64_t per_blk = t->slots < AN_TAB_BLK_SLOTS ? t->slots : AN_TAB_BLK_SLOTS;
		for (uint64_t b = 0; b < t->nblk; b++) {
			const uint64_t *blk = t->blk[b];
			if (!blk || !blk[BLK_COUNT]) {
				h->pteg_occupancy[0] += per_blk / 8;
				continue;
			}
			blk += BLK_HDR;
			for (uint64_t g = 0; g < per_blk / 8; g++) {
				unsigned occ = 0;
				for (unsigned k = 0; k < 8; k++) {
					uint64_t i = g * 8 + k;
					uint64_t v = blk[i * 2], rr = blk[i * 2 + 1];
					if (!(v & HPTE_V_VALID))
						continue;
					uint64_t slot = (b << AN_TAB_BLK_SHIFT) + i;
					occ++;
					h->valid++;
					h->bolted += (v & HPTE_V_BOLTED) != 0;
					h->secondary += (v & HPTE_V_SECONDARY) != 0;
					uint64_t bseg = v >> 62;
					if (bseg == 0)
						h->seg_256m++;
					else if (bseg == 1)
						h->seg_1t++;
					else
						h->seg_reserved++;
					int pg;
					if (!an_hpte_check(t->shift, slot, v, rr, &pg))
						h->check_failures++;
					h->page_sizes[pg]++;
					hm_store_be64(buf + n, slot);
					hm_store_be64(buf + n + 8, v);
					hm_store_be64(buf + n + 16, rr);
					n += 24;
					if (n == sizeof(buf)) {
						hm_sha256_update(sha, buf, n);
						n = 0;
					}
				}
				h->pteg_occupancy[occ]++;
			}
		}
		if (n)
			hm_sha256_update(sha, buf, n);
	}
	hm_sha256_final(sha, h->digest);
	hm_sha256_free(sha);
	return 0;
}

int an_htab_foreach(const an_report_t *r, int (*fn)(void *, uint64_t, uint64_t, uint64_t, bool),
		    void *opaque)
{
	if (!r || !r->priv || !r->priv->have_tab)
		return 0;
	const struct an_tab *t = &r->priv->tab;
	uint64_t per_blk = t->slots < AN_TAB_BLK_SLOTS ? t->slots : AN_TAB_BLK_SLOTS;
	for (uint64_t b = 0; b < t->nblk; b++) {
		const uint64_t *blk = t->blk[b];
		if (!blk || !blk[BLK_COUNT])
			continue;
		blk += BLK_HDR;
		for (uint64_t i = 0; i < per_blk; i++) {
			uint64_t v = blk[i * 2], rr = blk[i * 2 + 1];
			if (!(v & HPTE_V_VALID))
				continue;
			uint64_t slot = (b << AN_TAB_BLK_SHIFT) + i;
			int rc = fn(opaque, slot, v, rr, an_hpte_check(t->shift, slot, v, rr, NULL));
			if (rc)
				return rc;
		}
	}
	return 0;
}

/* --------------------------------------------------------------- encode */

struct obuf {
	uint8_t *p;
	size_t len, cap;
};

static int ob_reserve(struct obuf *o, size_t n)
{
	if (o->cap - o->len >= n)
		return 0;
	size_t cap = o->cap ? o->cap : 4096;
	while (cap - o->len < n)
		cap *= 2;
	uint8_t *np = realloc(o->p, cap);
	if (!np)
		return -ENOMEM;
	o->p = np;
	o->cap = cap;
	return 0;
}

/* An entry source: false when the slot's whole block is unwritten (invalid). */
typedef bool (*get_entry_fn)(const void *src, uint64_t slot, uint64_t *v, uint64_t *r);

/* be32 0, one chunk per run of valid entries (at most 65535 each), end mark. */
static int encode(const void *src, uint64_t slots, get_entry_fn get, struct obuf *o)
{
	if (ob_reserve(o, 4) < 0)
		return -ENOMEM;
	hm_store_be32(o->p + o->len, 0);
	o->len += 4;
	uint64_t s = 0;
	while (s < slots) {
		uint64_t v, r;
		if (!get(src, s, &v, &r)) {
			/* an unwritten block of the sparse table: all invalid */
			s = (s + AN_TAB_BLK_SLOTS) & ~(uint64_t)(AN_TAB_BLK_SLOTS - 1);
			continue;
		}
		if (!(v & HPTE_V_VALID)) {
			s++;
			continue;
		}
		uint64_t first = s, n = 0;
		size_t hdr = o->len;
		if (ob_reserve(o, 8) < 0)
			return -ENOMEM;
		o->len += 8;
		while (s < slots && n < HTAB_RUN_MAX && get(src, s, &v, &r) && (v & HPTE_V_VALID)) {
			if (ob_reserve(o, 16) < 0)
				return -ENOMEM;
			hm_store_be64(o->p + o->len, v & ~HPTE_V_HVLOCK);
			hm_store_be64(o->p + o->len + 8, r);
			o->len += 16;
			n++;
			s++;
		}
		hm_store_be32(o->p + hdr, (uint32_t)first);
		hm_store_be16(o->p + hdr + 4, (uint16_t)n);
		hm_store_be16(o->p + hdr + 6, 0);
	}
	if (ob_reserve(o, 8) < 0)
		return -ENOMEM;
	memset(o->p + o->len, 0, 8);
	o->len += 8;
	return 0;
}

static bool get_tab(const void *src, uint64_t slot, uint64_t *v, uint64_t *r)
{
	const struct an_tab *t = src;
	const uint64_t *b = t->blk[slot >> AN_TAB_BLK_SHIFT];
	if (!b || !b[BLK_COUNT])
		return false;
	const uint64_t *e = b + BLK_HDR + (slot & (AN_TAB_BLK_SLOTS - 1)) * 2;
	*v = e[0];
	*r = e[1];
	return true;
}

static bool get_flat(const void *src, uint64_t slot, uint64_t *v, uint64_t *r)
{
	const uint64_t *e = (const uint64_t *)src + slot * 2;
	*v = e[0];
	*r = e[1];
	return true;
}

int an_htab_encode_table(const uint64_t *entries, uint64_t slots, uint8_t **out, size_t *out_len)
{
	struct obuf o = {0};
	if (slots > (UINT64_C(1) << 32) || encode(entries, slots, get_flat, &o) < 0) {
		free(o.p);
		return slots > (UINT64_C(1) << 32) ? HM_E_RANGE : -ENOMEM;
	}
	*out = o.p;
	*out_len = o.len;
	return 0;
}

int an_htab_encode_final(const an_report_t *r, uint8_t **out, size_t *out_len)
{
	struct obuf o = {0};
	const struct an_private *p = r->priv;
	if (!p->have_tab) {
		if (ob_reserve(&o, 4) < 0)
			return -ENOMEM;
		hm_store_be32(o.p, AN_HTAB_NO_HPT);
		o.len = 4;
	} else if (encode(&p->tab, p->tab.slots, get_tab, &o) < 0) {
		free(o.p);
		return -ENOMEM;
	}
	*out = o.p;
	*out_len = o.len;
	return 0;
}
