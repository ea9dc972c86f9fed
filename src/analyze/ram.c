/* SPDX-License-Identifier: MIT */
/*
 * The `ram` section (wire-format.md §4), read only: MEM_SIZE block list in
 * START, then ZERO and PAGE items until EOS in every record. Counts pages
 * and checks every block name, address and flag; it must never accept a
 * flag it does not implement (XBZRLE, compression, hooks, multifd) or a page
 * outside its block.
 */
#include "an_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define RAM_FLAG_ZERO 0x02u
#define RAM_FLAG_MEM_SIZE 0x04u
#define RAM_FLAG_PAGE 0x08u
#define RAM_FLAG_EOS 0x10u
#define RAM_FLAG_CONTINUE 0x20u
#define RAM_MAX_BLOCKS 4096u

static int read_block_name(struct an_walk *w, char name[256], const char *what)
{
	if (!an_need(w, 1, what))
		return w->err->code;
	size_t at = w->pos;
	uint8_t n = an_u8(w);
	if (n == 0)
		return an_fail(w, HM_E_FORMAT, (int64_t)at, "%s: empty block name", what);
	if (!an_need(w, n, what))
		return w->err->code;
	memcpy(name, an_at(w), n);
	name[n] = 0;
	for (unsigned i = 0; i < n; i++)
		if (name[i] < 0x20 || name[i] > 0x7e)
			return an_fail(w, HM_E_FORMAT, (int64_t)at,
				       "%s: block name has byte 0x%02x (not a RAM block name: misaligned?)",
				       what, (uint8_t)name[i]);
	w->pos += n;
	return 0;
}

static bool same_block(void *opaque, uint32_t i)
{
	const void *const *a = opaque;
	const an_ram_stats_t *ram = a[0];
	return strcmp(ram->blocks[i].name, (const char *)a[1]) == 0;
}

static int64_t find_block(struct an_walk *w, const char *name)
{
	const void *a[2] = {&w->r->ram, name};
	return an_index_find(&w->r->priv->blocks, an_hash_str(name, 0), same_block, (void *)a);
}

static int mem_size(struct an_walk *w, uint64_t total, size_t item_off)
{
	an_ram_stats_t *ram = &w->r->ram;
	if (ram->nblocks)
		return an_fail(w, HM_E_FORMAT, (int64_t)item_off, "a second MEM_SIZE item");
	ram->total_bytes = total;
	uint64_t left = total;
	while (left) {
		if (ram->nblocks >= RAM_MAX_BLOCKS)
			return an_fail(w, HM_E_RANGE, (int64_t)w->pos, "more than %u RAM blocks", RAM_MAX_BLOCKS);
		char name[256];
		int rc = read_block_name(w, name, "MEM_SIZE block");
		if (rc < 0)
			return rc;
		if (!an_need(w, 8, "MEM_SIZE block length"))
			return w->err->code;
		uint64_t len = an_be64(w);
		if (len > left)
			return an_fail(w, HM_E_FORMAT, (int64_t)w->pos - 8,
				       "block '%s' length %" PRIu64 " exceeds the %" PRIu64
				       " bytes left of MEM_SIZE %" PRIu64
				       " (per-block fields of a capability such as postcopy-ram or"
				       " x-ignore-shared are not supported)",
				       name, len, left, total);
		if (find_block(w, name) >= 0)
			return an_fail(w, HM_E_FORMAT, (int64_t)w->pos - 8, "block '%s' listed twice", name);
		an_ram_block_t *nb = realloc(ram->blocks, (ram->nblocks + 1) * sizeof(*nb));
		if (!nb)
			return an_fail(w, -ENOMEM, (int64_t)w->pos, "out of memory");
		ram->blocks = nb;
		memcpy(nb[ram->nblocks].name, name, sizeof(name));
		nb[ram->nblocks].length = len;
		if (an_index_put(&w->r->priv->blocks, an_hash_str(name, 0), (uint32_t)ram->nblocks) < 0)
			return an_fail(w, -ENOMEM, (int64_t)w->pos, "out of memory");
		ram->nblocks++;
		left -= len;
	}
	return 0;
}

/*
 * The common case, fast: a run of ZERO and PAGE items with CONTINUE (the
 * block named before) inside the block, all in the window. Checked as the
 * loop below checks them, item by item; the first item that is anything
 * else, or the run's end, is left to that loop (which then reports any
 * error at the same offset). A streamed walk stops the run short of the
 * window's last AN_COMMIT_TAIL bytes and of the next AN_COMMIT_STEP, so
 * that the loop's commit points fall as they would without it.
 */
static void ram_run(struct an_walk *w, an_ram_stats_t *ram, uint64_t ps)
{
	const an_ram_block_t *b = &ram->blocks[w->ram_cur_block];
	size_t left = w->base + w->avail - w->pos;
	if (w->end - w->pos < left)
		left = w->end - w->pos;
	if (w->st) {
		uint64_t since = w->pos - w->st->committed;
		if (since >= AN_COMMIT_STEP)
			return;
		left = left > AN_COMMIT_TAIL ? left - AN_COMMIT_TAIL : 0;
		if (left > AN_COMMIT_STEP - since)
			left = (size_t)(AN_COMMIT_STEP - since);
	}
	const uint8_t *p = an_at(w), *start = p;
	const uint64_t fmask = ps - 1, last = b->length >= ps ? b->length - ps : 0;
	const bool any = b->length >= ps;
	uint64_t zero = 0, fill = 0, data = 0;
	while (left >= 9) {
		uint64_t word = hm_load_be64(p);
		uint64_t flags = word & fmask, addr = word & ~fmask;
		if (!any || addr > last)
			break;
		if (flags == (RAM_FLAG_ZERO | RAM_FLAG_CONTINUE)) {
			fill += p[8] != 0;
			zero++;
			p += 9;
			left -= 9;
		} else if (flags == (RAM_FLAG_PAGE | RAM_FLAG_CONTINUE) && left >= 8 + ps) {
			data++;
			p += 8 + ps;
			left -= 8 + ps;
		} else {
			break;
		}
	}
	w->pos += (size_t)(p - start);
	ram->zero_pages += zero;
	ram->fill_pages += fill;
	ram->data_pages += data;
}

int an_ram_walk(struct an_walk *w, uint8_t type)
{
	an_ram_stats_t *ram = &w->r->ram;
	const uint64_t ps = w->page_size;
	const uint64_t fmask = ps - 1;
	ram->present = true;
	ram->page_size = (uint32_t)ps;
	for (;;) {
		size_t at = w->pos;
		if (w->st && an_commit_point(w) < 0)
			return w->err->code;
		if (w->ram_cur_block >= 0) {
			ram_run(w, ram, ps);
			at = w->pos;
		}
		if (!an_need(w, 8, "RAM item"))
			return w->err->code;
		uint64_t word = an_be64(w);
		uint64_t addr = word & ~fmask;
		uint32_t flags = (uint32_t)(word & fmask);
		uint32_t op = flags & ~RAM_FLAG_CONTINUE;
		switch (op) {
		case RAM_FLAG_EOS:
			if (flags & RAM_FLAG_CONTINUE)
				return an_fail(w, HM_E_FORMAT, (int64_t)at, "RAM flags 0x%x: EOS with CONTINUE", flags);
			ram->eos++;
			return 0;
		case RAM_FLAG_MEM_SIZE: {
			if (type != QEMU_VM_SECTION_START || (flags & RAM_FLAG_CONTINUE))
				return an_fail(w, HM_E_FORMAT, (int64_t)at, "RAM flags 0x%x: MEM_SIZE outside the START record",
					       flags);
			int rc = mem_size(w, addr, at);
			if (rc < 0)
				return rc;
			continue;
		}
		case RAM_FLAG_ZERO:
		case RAM_FLAG_PAGE: {
			if (flags & RAM_FLAG_CONTINUE) {
				if (w->ram_cur_block < 0)
					return an_fail(w, HM_E_FORMAT, (int64_t)at,
						       "RAM flags 0x%x: CONTINUE with no block named before", flags);
			} else {
				char name[256];
				int rc = read_block_name(w, name, "RAM page block");
				if (rc < 0)
					return rc;
				w->ram_cur_block = find_block(w, name);
				if (w->ram_cur_block < 0)
					return an_fail(w, HM_E_FORMAT, (int64_t)at,
						       "RAM page in unknown block '%s' (not in MEM_SIZE)", name);
			}
			const an_ram_block_t *b = &ram->blocks[w->ram_cur_block];
			if (addr >= b->length || b->length - addr < ps)
				return an_fail(w, HM_E_RANGE, (int64_t)at,
					       "RAM page at 0x%" PRIx64 " outside block '%s' (%" PRIu64 " bytes)", addr,
					       b->name, b->length);
			if (op == RAM_FLAG_ZERO) {
				if (!an_need(w, 1, "zero page fill byte"))
					return w->err->code;
				if (an_u8(w) != 0)
					ram->fill_pages++;
				ram->zero_pages++;
			} else {
				if (an_skip(w, ps, "RAM page data") < 0)
					return w->err->code;
				ram->data_pages++;
			}
			continue;
		}
		default:
			return an_fail(w, op ? HM_E_UNSUPPORTED : HM_E_FORMAT, (int64_t)at,
				       "RAM flags 0x%x not supported (XBZRLE 0x40, HOOK 0x80, COMPRESS 0x100,"
				       " MULTIFD_FLUSH 0x200 and combinations are refused)",
				       flags);
		}
	}
}
