/* SPDX-License-Identifier: MIT */
/*
 * The analyser's side of hptmig/verify version 2: the block root of the
 * table replayed from spapr/htab (wire-format.md §5), computed from the
 * sparse table one block at a time in slot order, and the sender's
 * verify section in either version. Its cost is bounded by the input
 * (entries replayed) plus 32 bytes per block of a table of shift at most
 * 36; it never prints and never reads outside the payload it is given.
 */
#include "an_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "hptmig/hpt.h"

struct root_ctx {
	hm_sha256_t *root;
	uint32_t shift;
	uint64_t cur;  /* block being collected (UINT64_MAX: none yet) */
	uint64_t next; /* first block whose digest is not in root yet */
	uint64_t n;    /* records of cur in buf */
	int rc;
	uint8_t buf[HPT_VERIFY_BLOCK_BUF];
};

/* Empty blocks next .. upto - 1: 32 zero bytes each. */
static void zero_blocks(struct root_ctx *c, uint64_t upto)
{
	static const uint8_t zeros[64 * HM_SHA256_LEN];
	while (c->next < upto) {
		uint64_t k = upto - c->next < 64 ? upto - c->next : 64;
		hm_sha256_update(c->root, zeros, k * HM_SHA256_LEN);
		c->next += k;
	}
}

static void flush_block(struct root_ctx *c)
{
	uint8_t d[HM_SHA256_LEN];
	if (c->cur == UINT64_MAX || c->rc)
		return;
	zero_blocks(c, c->cur);
	c->rc = hpt_verify_block_hash(c->shift, c->cur, c->buf, c->n, d);
	hm_sha256_update(c->root, d, sizeof(d));
	c->next = c->cur + 1;
	c->n = 0;
}

static int root_entry(void *opaque, uint64_t slot, uint64_t v, uint64_t r)
{
	struct root_ctx *c = opaque;
	uint64_t b = slot / HPT_VERIFY_BLOCK_SLOTS;
	if (b != c->cur) {
		flush_block(c);
		c->cur = b;
	}
	uint8_t *rec = c->buf + HPT_VERIFY_BLOCK_PREFIX + c->n * VERIFY_REC_SIZE;
	hm_store_be64(rec, slot);
	hm_store_be64(rec + 8, v); /* the replay stores V with 0x40 clear, as the digest */
	hm_store_be64(rec + 16, r);
	c->n++;
	return c->rc;
}

int an_htab_root(an_report_t *r, hm_error_t *err)
{
	an_htab_stats_t *h = &r->htab;
	struct an_private *p = r->priv;
	h->has_root = false;
	if (!h->present)
		return 0;
	if (!p->have_tab) {
		hpt_root_none(h->root);
		h->has_root = true;
		return 0;
	}
	if (p->tab.shift > AN_ROOT_SHIFT_MAX)
		return 0;
	struct root_ctx *c = calloc(1, sizeof(*c));
	if (!c || hm_sha256_new(&c->root) != 0) {
		free(c);
		return hm_error_set(err, -ENOMEM, -1, "spapr/htab: out of memory for the block root");
	}
	c->shift = p->tab.shift;
	c->cur = UINT64_MAX;
	uint64_t nb = hpt_verify_nblocks(c->shift);
	uint8_t pre[12];
	hm_store_be32(pre, c->shift);
	hm_store_be64(pre + 4, nb);
	hm_sha256_update(c->root, pre, sizeof(pre));
	c->rc = an_tab_foreach(&p->tab, root_entry, c);
	flush_block(c);
	zero_blocks(c, nb);
	int rc = c->rc;
	if (rc == 0) {
		hm_sha256_final(c->root, h->root);
		h->has_root = true;
	} else {
		hm_error_set(err, rc, -1, "spapr/htab: block root: %s", hm_err_str(rc));
	}
	hm_sha256_free(c->root);
	free(c);
	return rc;
}

void an_verify_note(an_report_t *r, uint32_t version, const uint8_t *p, size_t len,
		    int64_t rec_off)
{
	bool v1 = version == 1 && len == VERIFY_V1_PAYLOAD_SIZE;
	bool v2 = version == 2 && len == VERIFY_V2_PAYLOAD_SIZE &&
		  hm_load_be32(p + 12) == VERIFY_BLOCK_SLOTS;
	if (!v1 && !v2)
		return;
	r->has_verify = true;
	r->verify_version = version;
	r->verify_shift = hm_load_be32(p);
	r->verify_valid = hm_load_be64(p + 4);
	if (v1)
		memcpy(r->verify_digest, p + 12, HM_SHA256_LEN);
	else
		memcpy(r->verify_root, p + 16, HM_SHA256_LEN);
	r->priv->verify_off = rec_off;
}

bool an_verify_match(const an_report_t *r)
{
	const an_htab_stats_t *h = &r->htab;
	if (!r->has_verify || !h->present)
		return false;
	if (r->verify_version >= 2)
		return h->has_root && memcmp(r->verify_root, h->root, HM_SHA256_LEN) == 0;
	return memcmp(r->verify_digest, h->digest, HM_SHA256_LEN) == 0;
}
