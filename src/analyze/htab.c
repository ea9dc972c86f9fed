/* SPDX-License-Identifier: MIT */
/*
 * `spapr/htab` for the analyser: replays every chunk of every record into a
 * sparse copy of the table that holds only the valid entries written (see
 * struct an_tab: its memory is bounded by the input, not by the 2^32 slots a
 * header may claim, nor by how the writes are scattered), then counts
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

#include "hptmig/stream.h"
#include "hptmig/hpt.h"
#include "htab/chunk.h"


/* --------------------------------------------------------------- table */

/*
 * A leaf: group number (low 27 bits) and log2 of its capacity (high bits),
 * the bitmap of its valid slots, then popcount(bits) (V, R) pairs in slot
 * order; room for 1 << cap_log2 pairs.
 */
struct an_leaf {
	uint32_t grp_cap;
	uint32_t bits;
	uint64_t e[];
};
#define LEAF_GRP_MASK ((UINT32_C(1) << 27) - 1)
#define LEAF_CAP_LOG2(l) ((l)->grp_cap >> 27)
_Static_assert(sizeof(struct an_leaf) == 8, "leaf header is 8 bytes");

int an_tab_init(struct an_tab *t, uint32_t shift)
{
	memset(t, 0, sizeof(*t));
	t->shift = shift;
	t->slots = UINT64_C(1) << (shift - 4);
	t->ngrp = (t->slots + AN_TAB_GRP_SLOTS - 1) >> AN_TAB_GRP_SHIFT;
	t->sum = calloc((size_t)((t->ngrp + 63) / 64), sizeof(*t->sum));
	t->hcap = 64;
	t->hash = calloc(t->hcap, sizeof(*t->hash));
	if (!t->sum || !t->hash) {
		an_tab_fini(t);
		return -ENOMEM;
	}
	return 0;
}

void an_tab_fini(struct an_tab *t)
{
	if (!t)
		return;
	for (size_t i = 0; t->hash && i < t->hcap; i++)
		free(t->hash[i]);
	free(t->hash);
	free(t->sum);
	memset(t, 0, sizeof(*t));
}

static inline size_t grp_hash(uint64_t g, size_t cap)
{
	return (size_t)an_hash_mix(g) & (cap - 1);
}

static struct an_leaf *leaf_find(const struct an_tab *t, uint64_t g)
{
	for (size_t j = grp_hash(g, t->hcap);; j = (j + 1) & (t->hcap - 1)) {
		struct an_leaf *l = t->hash[j];
		if (!l || (l->grp_cap & LEAF_GRP_MASK) == g)
			return l;
	}
}

static void hash_insert(struct an_leaf **h, size_t cap, struct an_leaf *l)
{
	size_t j = grp_hash(l->grp_cap & LEAF_GRP_MASK, cap);
	while (h[j])
		j = (j + 1) & (cap - 1);
	h[j] = l;
}

/* A new, empty leaf for group g (never removed before an_tab_fini). */
static struct an_leaf *leaf_new(struct an_tab *t, uint64_t g)
{
	if ((t->hn + 1) * 4 > t->hcap * 3) {
		size_t nc = t->hcap * 2;
		struct an_leaf **nh = calloc(nc, sizeof(*nh));
		if (!nh)
			return NULL;
		for (size_t i = 0; i < t->hcap; i++)
			if (t->hash[i])
				hash_insert(nh, nc, t->hash[i]);
		free(t->hash);
		t->hash = nh;
		t->hcap = nc;
	}
	struct an_leaf *l = malloc(sizeof(*l) + 2 * sizeof(uint64_t));
	if (!l)
		return NULL;
	l->grp_cap = (uint32_t)g; /* capacity 1 << 0 */
	l->bits = 0;
	hash_insert(t->hash, t->hcap, l);
	t->hn++;
	return l;
}

static inline unsigned rank(uint32_t bits, unsigned i)
{
	return (unsigned)__builtin_popcount(bits & ((UINT32_C(1) << i) - 1));
}

static inline void sum_update(struct an_tab *t, uint64_t g, uint32_t bits)
{
	if (bits)
		t->sum[g >> 6] |= UINT64_C(1) << (g & 63);
	else
		t->sum[g >> 6] &= ~(UINT64_C(1) << (g & 63));
}

/* Remove the valid entries of leaf l (group g) whose bit is in mask. */
static void leaf_remove(struct an_tab *t, struct an_leaf *l, uint64_t g, uint32_t mask)
{
	uint32_t keep = l->bits & ~mask;
	if (keep == l->bits)
		return;
	unsigned n = (unsigned)__builtin_popcount(l->bits), o = 0, k = 0;
	for (uint32_t m = l->bits; m; m &= m - 1, k++) {
		unsigned i = (unsigned)__builtin_ctz(m);
		if (keep >> i & 1) {
			l->e[2 * o] = l->e[2 * k];
			l->e[2 * o + 1] = l->e[2 * k + 1];
			o++;
		}
	}
	t->valid -= n - o;
	l->bits = keep;
	sum_update(t, g, keep);
}

/* Store one entry written by the stream; an entry without the valid bit
 * makes its slot invalid (nobody reads an invalid slot's words). */
static int tab_store(struct an_tab *t, uint64_t slot, uint64_t v, uint64_t r)
{
	uint64_t g = slot >> AN_TAB_GRP_SHIFT;
	unsigned i = (unsigned)(slot & (AN_TAB_GRP_SLOTS - 1));
	struct an_leaf *l = leaf_find(t, g);
	if (!(v & HPTE64_V_VALID)) {
		if (l)
			leaf_remove(t, l, g, UINT32_C(1) << i);
		return 0;
	}
	if (!l && !(l = leaf_new(t, g)))
		return -ENOMEM;
	unsigned k = rank(l->bits, i);
	if (!(l->bits >> i & 1)) {
		unsigned n = (unsigned)__builtin_popcount(l->bits);
		unsigned cl = LEAF_CAP_LOG2(l);
		if (n + 1 > (1u << cl)) {
			/* grow in place: the hash bucket must follow the move */
			size_t j = grp_hash(g, t->hcap);
			while (t->hash[j] != l)
				j = (j + 1) & (t->hcap - 1);
			struct an_leaf *nl = realloc(l, sizeof(*l) + (size_t)2 * sizeof(uint64_t) * (2u << cl));
			if (!nl)
				return -ENOMEM;
			l = t->hash[j] = nl;
			l->grp_cap = (uint32_t)g | (cl + 1) << 27;
		}
		memmove(&l->e[2 * (k + 1)], &l->e[2 * k], (size_t)(n - k) * 2 * sizeof(uint64_t));
		if (!l->bits)
			sum_update(t, g, 1);
		l->bits |= UINT32_C(1) << i;
		t->valid++;
	}
	l->e[2 * k] = v;
	l->e[2 * k + 1] = r;
	return 0;
}

/* Invalidate slots [first, first + n): only groups holding valid entries
 * are visited (64 groups per summary word), so the cost is what changes
 * plus one word per 2048 slots of the run. */
static void tab_invalidate(struct an_tab *t, uint64_t first, uint64_t n)
{
	if (!n || !t->valid)
		return;
	uint64_t last = first + n - 1;
	uint64_t g0 = first >> AN_TAB_GRP_SHIFT, g1 = last >> AN_TAB_GRP_SHIFT;
	for (uint64_t wd = g0 >> 6; wd <= g1 >> 6; wd++) {
		uint64_t m = t->sum[wd];
		if (wd == g0 >> 6)
			m &= ~UINT64_C(0) << (g0 & 63);
		if (wd == g1 >> 6 && (g1 & 63) != 63)
			m &= (UINT64_C(1) << ((g1 & 63) + 1)) - 1;
		while (m) {
			uint64_t g = wd * 64 + (unsigned)__builtin_ctzll(m);
			m &= m - 1;
			uint32_t mask = ~UINT32_C(0);
			if (g == g0)
				mask &= ~UINT32_C(0) << (first & (AN_TAB_GRP_SLOTS - 1));
			if (g == g1 && (last & (AN_TAB_GRP_SLOTS - 1)) != AN_TAB_GRP_SLOTS - 1)
				mask &= (UINT32_C(1) << ((last & (AN_TAB_GRP_SLOTS - 1)) + 1)) - 1;
			leaf_remove(t, leaf_find(t, g), g, mask);
		}
	}
}

/* Every valid entry in slot order; fn returns non-zero to stop (returned). */
static int tab_foreach(const struct an_tab *t, int (*fn)(void *, uint64_t, uint64_t, uint64_t), void *opaque)
{
	uint64_t nw = (t->ngrp + 63) / 64;
	for (uint64_t wd = 0; wd < nw; wd++) {
		for (uint64_t m = t->sum[wd]; m; m &= m - 1) {
			uint64_t g = wd * 64 + (unsigned)__builtin_ctzll(m);
			const struct an_leaf *l = leaf_find(t, g);
			unsigned k = 0;
			for (uint32_t b = l->bits; b; b &= b - 1, k++) {
				uint64_t slot = (g << AN_TAB_GRP_SHIFT) + (unsigned)__builtin_ctz(b);
				int rc = fn(opaque, slot, l->e[2 * k], l->e[2 * k + 1]);
				if (rc)
					return rc;
			}
		}
	}
	return 0;
}

/* ------------------------------------------------------------- entries */

const char *an_pgsz_name(int pg)
{
	static const char *const n[AN_PG_COUNT] = {"4K", "64K", "16M", "4K/64K", "4K/16M", "64K/16M", "16G",
						  "invalid"};
	return pg >= 0 && pg < AN_PG_COUNT ? n[pg] : "?";
}

/* The category of hpt_page_decode's (base, actual) pair: every row it
 * accepts (papr-hpt.md's table and QEMU's 16G row) has one. */
int an_hpte_pgsz(uint64_t v, uint64_t r, unsigned *base_shift)
{
	static const struct {
		unsigned base, actual;
		int pg;
	} cat[] = {
		{12, 12, AN_PG_4K},    {16, 16, AN_PG_64K},    {24, 24, AN_PG_16M},
		{12, 16, AN_PG_4K_64K}, {12, 24, AN_PG_4K_16M}, {16, 24, AN_PG_64K_16M},
		{34, 34, AN_PG_16G},
	};
	unsigned b = 12, a = 12;
	int pg = AN_PG_BAD;
	if (hpt_page_decode(v, r, &b, &a) == 0)
		for (size_t i = 0; i < sizeof(cat) / sizeof(cat[0]); i++)
			if (cat[i].base == b && cat[i].actual == a)
				pg = cat[i].pg;
	if (base_shift)
		*base_shift = pg == AN_PG_BAD ? 12 : b;
	return pg;
}

/*
 * hpt_entry_check (the PTEG the AVPN and H bit hash to, on the hash bits
 * the AVPN determines), on entries whose page size the report knows. The
 * valid bit is forced: the analyser asks about entries it stored as valid.
 */
bool an_hpte_check(uint32_t shift, uint64_t slot, uint64_t v, uint64_t r, int *pgsz)
{
	int pg = an_hpte_pgsz(v, r, NULL);
	if (pgsz)
		*pgsz = pg;
	return pg != AN_PG_BAD && hpt_entry_check(shift, slot, v | HPTE64_V_VALID, r);
}

/* ------------------------------------------------------------ anomalies */

const char *an_anomaly_name(int kind)
{
	static const char *const n[AN_ANOM_COUNT] = {"invalid_in_valid_run", "check_failure", "overlap"};
	return kind >= 0 && kind < AN_ANOM_COUNT ? n[kind] : "?";
}

/* Count one anomaly; keep the first AN_ANOMALY_FIRST with their message
 * (after the record's context, w->ctx). Never fails the walk. */
static void anomaly(struct an_walk *w, int kind, uint64_t off, uint64_t slot, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
static void anomaly(struct an_walk *w, int kind, uint64_t off, uint64_t slot, const char *fmt, ...)
{
	an_anomalies_t *a = &w->r->anomalies;
	a->count[kind]++;
	a->total++;
	if (a->nfirst == AN_ANOMALY_FIRST)
		return;
	an_anomaly_t *x = &a->first[a->nfirst++];
	x->kind = kind;
	x->offset = off;
	x->slot = slot;
	char raw[sizeof(x->msg)];
	int n = snprintf(raw, sizeof(raw), "%s: ", w->ctx);
	if (n < 0 || (size_t)n >= sizeof(raw))
		n = 0;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(raw + n, sizeof(raw) - (size_t)n, fmt, ap);
	va_end(ap);
	hm_escape(raw, strlen(raw), HM_ESC_KEEP_QUOTING, x->msg, sizeof(x->msg));
}

/* Each entry of a chunk's valid run as it is sent: the valid bit, then
 * the structural check (entries at an_at(w), nv of them; offsets are the
 * stream's, w->pos). */
static void check_valid_run(struct an_walk *w, const struct an_tab *t, uint64_t chunk, uint32_t index,
			    uint32_t nv)
{
	for (uint32_t i = 0; i < nv; i++) {
		size_t at = w->pos + (size_t)i * HTAB_HPTE_SIZE;
		const uint8_t *e = an_at(w) + (size_t)i * HTAB_HPTE_SIZE;
		uint64_t v = hm_load_be64(e), r = hm_load_be64(e + 8);
		uint64_t slot = (uint64_t)index + i;
		if (!(v & HPTE64_V_VALID))
			anomaly(w, AN_ANOM_INVALID_IN_RUN, at, slot,
				"chunk %" PRIu64 ": entry %u of the valid run (slot %" PRIu64 ", offset %zu) "
				"has no valid bit (V 0x%016" PRIx64 ")", chunk, i, slot, at, v);
		else if (!an_hpte_check(t->shift, slot, v & ~HPTE64_V_HVLOCK, r, NULL))
			anomaly(w, AN_ANOM_CHECK, at, slot,
				"chunk %" PRIu64 ": entry in slot %" PRIu64 " (offset %zu) fails the structural "
				"check (V 0x%016" PRIx64 " R 0x%016" PRIx64 ")", chunk, slot, at, v, r);
	}
}

/*
 * Passes and overlaps. A pass is a run of chunks whose first slots do not
 * decrease (QEMU's and hptmig's savers sweep the table upwards); a chunk
 * that starts below the one before it begins a new pass (the sweep wrapped
 * to 0, or a new pass began). A chunk that starts before the highest slot
 * its pass already covered overlaps another chunk of that pass: QEMU never
 * writes that (it cleans each entry's dirty bit as it sends it). Passes
 * are counted per record.
 */
static void sweep_chunk(struct an_walk *w, uint64_t chunk, uint64_t first, uint64_t n, size_t at)
{
	struct an_private *p = w->r->priv;
	uint64_t end = first + n;
	if (!n)
		return;
	if (p->sweep_any && first >= p->sweep_first && first < p->sweep_end)
		anomaly(w, AN_ANOM_OVERLAP, at, first,
			"chunk %" PRIu64 " at offset %zu covers slots %" PRIu64 "..%" PRIu64
			", overlapping slots %" PRIu64 "..%" PRIu64 " that earlier chunks of the same pass "
			"(ascending run of chunks) covered",
			chunk, at, first, end - 1, first, (end < p->sweep_end ? end : p->sweep_end) - 1);
	if (!p->sweep_any || first < p->sweep_first)
		p->sweep_end = end; /* a new pass */
	else if (end > p->sweep_end)
		p->sweep_end = end;
	p->sweep_any = true;
	p->sweep_first = first;
}

/* ---------------------------------------------------------------- walk */

static int new_table(struct an_walk *w, uint32_t hdr, size_t at)
{
	struct an_private *p = w->r->priv;
	if (hdr < HTAB_STREAM_SHIFT_MIN || hdr > HTAB_STREAM_SHIFT_MAX)
		return an_fail(w, HM_E_RANGE, (int64_t)at, "header: htab_shift %u outside %u..%u", hdr,
			       HTAB_STREAM_SHIFT_MIN, HTAB_STREAM_SHIFT_MAX);
	if (hdr > HTAB_ALLOC_SHIFT_MAX)
		return an_fail(w, HM_E_UNSUPPORTED, (int64_t)at,
			       "header: htab_shift %u: tables above 2^%u bytes cannot be addressed by the stream's"
			       " be32 slot index", hdr, HTAB_ALLOC_SHIFT_MAX);
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
	if (type == QEMU_VM_SECTION_START) {
		if (version != 1)
			return an_fail(w, HM_E_VERSION, w->rec_off, "version %u (only 1 exists)", version);
		h->present = true;
		h->n_start++;
	} else if (type == QEMU_VM_SECTION_PART) {
		h->n_part++;
	} else {
		h->n_end++;
	}
	h->records++;
	size_t at = w->pos;
	if (!an_need(w, 4, "header"))
		return w->err->code;
	uint32_t hdr = an_be32(w);
	if (type == QEMU_VM_SECTION_START) {
		h->start_shift = hdr;
		if (hdr == HTAB_HDR_NO_HPT) {
			h->no_hpt = true;
			return 0;
		}
		return new_table(w, hdr, at);
	}
	if (hdr == HTAB_HDR_NO_HPT) {
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
	p->sweep_any = false;
	for (;;) {
		size_t c_at = w->pos;
		if (w->st && an_commit_point(w) < 0)
			return w->err->code;
		if (!an_need(w, HTAB_CHUNK_HDR_SIZE, "chunk header"))
			return w->err->code;
		struct htab_chunk_hdr ch;
		enum htab_chunk_kind kind = htab_chunk_parse(an_at(w), t->slots, &ch);
		w->pos += HTAB_CHUNK_HDR_SIZE;
		if (kind == HTAB_CHUNK_ENDMARK)
			break;
		uint32_t index = ch.index;
		uint16_t nv = ch.n_valid, ni = ch.n_invalid;
		nchunks++;
		if (kind == HTAB_CHUNK_RANGE)
			return an_fail(w, HM_E_RANGE, (int64_t)c_at,
				       "chunk %" PRIu64 ": index %u + n_valid %u + n_invalid %u = %" PRIu64
				       " exceeds the table's %" PRIu64 " slots (shift %u)",
				       nchunks, index, nv, ni, (uint64_t)index + nv + ni, t->slots, t->shift);
		if (!an_need(w, (uint64_t)nv * HTAB_HPTE_SIZE, "chunk HPTEs"))
			return w->err->code;
		check_valid_run(w, t, nchunks, index, nv);
		sweep_chunk(w, nchunks, index, (uint64_t)nv + ni, c_at);
		const uint8_t *src = an_at(w);
		for (uint32_t i = 0; i < nv; i++)
			if (tab_store(t, (uint64_t)index + i, hm_load_be64(src + i * 16) & ~HPTE64_V_HVLOCK,
				      hm_load_be64(src + i * 16 + 8)) < 0)
				return an_fail(w, -ENOMEM, (int64_t)c_at, "out of memory");
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

struct finish_ctx {
	an_htab_stats_t *h;
	uint32_t shift;
	hm_sha256_t *sha;
	uint64_t pteg;     /* PTEG of the entries counted in occ */
	unsigned occ;
	uint64_t busy;     /* PTEGs with at least one valid entry */
	size_t n;
	uint8_t buf[24 * 256];
};

static void finish_pteg(struct finish_ctx *c)
{
	if (c->occ) {
		c->h->pteg_occupancy[c->occ]++;
		c->busy++;
	}
	c->occ = 0;
}

static int finish_entry(void *opaque, uint64_t slot, uint64_t v, uint64_t rr)
{
	struct finish_ctx *c = opaque;
	an_htab_stats_t *h = c->h;
	if (slot >> 3 != c->pteg) {
		finish_pteg(c);
		c->pteg = slot >> 3;
	}
	c->occ++;
	h->valid++;
	h->bolted += (v & HPTE64_V_BOLTED) != 0;
	h->secondary += (v & HPTE64_V_SECONDARY) != 0;
	uint64_t bseg = v >> 62;
	if (bseg == 0)
		h->seg_256m++;
	else if (bseg == 1)
		h->seg_1t++;
	else
		h->seg_reserved++;
	int pg;
	if (!an_hpte_check(c->shift, slot, v, rr, &pg))
		h->check_failures++;
	h->page_sizes[pg]++;
	hm_store_be64(c->buf + c->n, slot);
	hm_store_be64(c->buf + c->n + 8, v);
	hm_store_be64(c->buf + c->n + 16, rr);
	c->n += 24;
	if (c->n == sizeof(c->buf)) {
		hm_sha256_update(c->sha, c->buf, c->n);
		c->n = 0;
	}
	return 0;
}

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
	uint8_t hdr[4];
	if (!p->have_tab) {
		hm_store_be32(hdr, HTAB_HDR_NO_HPT);
		hm_sha256_update(sha, hdr, 4);
		h->slots = 0;
	} else {
		struct an_tab *t = &p->tab;
		h->slots = t->slots;
		hm_store_be32(hdr, t->shift);
		hm_sha256_update(sha, hdr, 4);
		struct finish_ctx *c = calloc(1, sizeof(*c));
		if (!c) {
			hm_sha256_free(sha);
			return hm_error_set(err, -ENOMEM, -1, "spapr/htab: out of memory");
		}
		c->h = h;
		c->shift = t->shift;
		c->sha = sha;
		tab_foreach(t, finish_entry, c);
		finish_pteg(c);
		if (c->n)
			hm_sha256_update(sha, c->buf, c->n);
		h->pteg_occupancy[0] = t->slots / 8 - c->busy;
		free(c);
	}
	hm_sha256_final(sha, h->digest);
	hm_sha256_free(sha);
	/* A table the walk stopped before END is not final (a stop at an
	 * undescribed device section after END is: those come last). */
	h->final = r->complete || h->n_end > 0;
	return 0;
}

struct foreach_ctx {
	int (*fn)(void *, uint64_t, uint64_t, uint64_t, bool);
	void *opaque;
	uint32_t shift;
};

static int foreach_entry(void *opaque, uint64_t slot, uint64_t v, uint64_t rr)
{
	struct foreach_ctx *c = opaque;
	return c->fn(c->opaque, slot, v, rr, an_hpte_check(c->shift, slot, v, rr, NULL));
}

int an_htab_foreach(const an_report_t *r, int (*fn)(void *, uint64_t, uint64_t, uint64_t, bool),
		    void *opaque)
{
	if (!r || !r->priv || !r->priv->have_tab)
		return 0;
	struct foreach_ctx c = {fn, opaque, r->priv->tab.shift};
	return tab_foreach(&r->priv->tab, foreach_entry, &c);
}

/* --------------------------------------------------------------- encode */

/*
 * The canonical END payload: be32 0, one chunk per run of valid entries in
 * slot order (at most 65535 each), the end mark. The chunks come from the
 * htab layer's chunker (src/htab/chunk.c), the project's one chunk encoder:
 * entries arrive in slot order through enc_entry and a run goes on while
 * slots follow each other. Memory: the chunker's staging buffer and the
 * output.
 */
struct enc {
	mig_file_t *f;
	htab_chunker_t ck;
};

static int enc_entry(void *opaque, uint64_t slot, uint64_t v, uint64_t r)
{
	struct enc *e = opaque;
	uint8_t b[HTAB_HPTE_SIZE];
	hm_store_be64(b, v);
	hm_store_be64(b + 8, r);
	htab_chunker_add(&e->ck, e->f, slot, 1, b, false);
	return mig_file_status(e->f);
}

static int enc_begin(struct enc *e)
{
	memset(e, 0, sizeof(*e));
	if (mig_file_open_mem_writer(0, &e->f) < 0)
		return -ENOMEM;
	if (htab_chunker_init(&e->ck) < 0) {
		mig_file_close(e->f, NULL);
		return -ENOMEM;
	}
	mig_file_put_be32(e->f, HTAB_HDR_CHUNKS);
	return 0;
}

/* Finish (rc == 0) or abandon the payload; returns 0 or a negative code. */
static int enc_end(struct enc *e, int rc, uint8_t **out, size_t *out_len)
{
	if (rc == 0) {
		uint8_t endmark[HTAB_ENDMARK_SIZE];
		htab_chunk_hdr_put(endmark, (struct htab_chunk_hdr){ 0 });
		htab_chunker_flush(&e->ck, e->f);
		mig_file_put_buffer(e->f, endmark, sizeof(endmark));
		rc = mig_file_mem_take(e->f, out, out_len);
	}
	htab_chunker_free(&e->ck);
	mig_file_close(e->f, NULL);
	return rc < 0 ? rc : 0;
}

int an_htab_encode_table(const uint64_t *entries, uint64_t slots, uint8_t **out, size_t *out_len)
{
	if (slots > (UINT64_C(1) << 32))
		return HM_E_RANGE;
	struct enc e;
	if (enc_begin(&e) < 0)
		return -ENOMEM;
	int rc = 0;
	for (uint64_t s = 0; s < slots && rc == 0; s++)
		if (entries[2 * s] & HPTE64_V_VALID)
			rc = enc_entry(&e, s, entries[2 * s], entries[2 * s + 1]);
	return enc_end(&e, rc, out, out_len);
}

int an_htab_encode_final(const an_report_t *r, uint8_t **out, size_t *out_len)
{
	const struct an_private *p = r->priv;
	if (!p->have_tab) {
		uint8_t *b = malloc(HTAB_HDR_SIZE);
		if (!b)
			return -ENOMEM;
		hm_store_be32(b, HTAB_HDR_NO_HPT);
		*out = b;
		*out_len = HTAB_HDR_SIZE;
		return 0;
	}
	struct enc e;
	if (enc_begin(&e) < 0)
		return -ENOMEM;
	return enc_end(&e, tab_foreach(&p->tab, enc_entry, &e), out, out_len);
}

int an_tab_foreach(const struct an_tab *t, int (*fn)(void *, uint64_t, uint64_t, uint64_t),
		   void *opaque)
{
	return tab_foreach(t, fn, opaque);
}
