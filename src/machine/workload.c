/* SPDX-License-Identifier: MIT */
/*
 * Workloads: the hypercall streams a vCPU issues. Boot maps RAM as bolted
 * 64K pages in 1T kernel segments (as Linux's linear map); `uniform`
 * changes uniformly random slots; `linux` runs processes that fault pages in
 * (primary PTEG, else secondary, else evict a non-bolted entry and retry),
 * change protections, unmap in batches and exit. Every entry made sits in
 * the PTEG its AVPN hashes to. A workload never blocks and never aborts: an
 * answer it did not expect is counted in the vCPU's `unexpected` counter.
 */
#include "machine_int.h"

#include <stdlib.h>
#include <string.h>

/* Linux's kernel linear map starts here; one 1T segment per TiB of RAM. */
#define WL_KERNEL_EA UINT64_C(0xc000000000000000)
#define WL_KERNEL_VSID UINT64_C(0x3ffffff000)
/* Linux scrambles proto-VSIDs with a multiplier modulo 2^37 - 1. */
#define WL_VSID_MULT UINT64_C(12538073)
#define WL_VSID_MOD ((UINT64_C(1) << 37) - 1)

#define WL_PROCS 16           /* live processes per vCPU */
#define WL_PROC_PAGES 2048    /* resident pages a process keeps mapped */
#define WL_PROC_SEGS 4        /* text, heap, mmap, stack */

struct wl_page {
	uint64_t slot;
	uint64_t v; /* V as entered (with the valid bit) */
};

struct wl_proc {
	uint64_t vsid[WL_PROC_SEGS];
	struct wl_page *pages;
	uint32_t n;
	uint64_t ops_left;
};

struct wl_state {
	struct wl_proc proc[WL_PROCS];
	uint64_t next_proto;
};

static uint64_t rnd(struct machine_vcpu *v)
{
	return machine_rand(&v->rng);
}

static void count_ret(struct machine_vcpu *v, long ret)
{
	if (ret == H_SUCCESS)
		return;
	if (ret == H_PTEG_FULL)
		MSTAT_INC(v, pteg_full);
	else if (ret == H_NOT_FOUND)
		MSTAT_INC(v, not_found);
	else
		MSTAT_INC(v, unexpected);
}

/* ----------------------------------------------------------------- boot */

int machine_boot(machine_t *m, hm_error_t *err)
{
	hpt_t *h = m->hpt;
	unsigned shift = hpt_shift(h);
	bool large;
	uint64_t rbits;
	if (hpt_page_encode(16, 16, &large, &rbits) != 0)
		return hm_error_set(err, HM_E_STATE, -1, "boot: no 64K page encoding");
	uint64_t ram = m->cfg.ram_bytes & ~UINT64_C(0xffff);
	struct machine_vcpu *v0 = &m->vcpu[0];
	for (uint64_t pa = 0; pa < ram; pa += 0x10000) {
		uint64_t ea = WL_KERNEL_EA | pa;
		uint64_t vsid = WL_KERNEL_VSID + (pa >> 40);
		uint64_t r = pa | rbits | HPTE64_R_M; /* PP 0: kernel read/write */
		long ret = H_PTEG_FULL;
		for (int sec = 0; sec < 2 && ret == H_PTEG_FULL; sec++) {
			uint64_t pteg = hpt_pteg_index(shift, HPT_SEG_1T, vsid, ea, 16, sec);
			uint64_t pteh = hpt_mapping_v(HPT_SEG_1T, vsid, ea, large, sec) | HPTE64_V_BOLTED;
			ret = hpt_h_enter(h, 0, pteg * HPTES_PER_GROUP, pteh, r, NULL);
			MSTAT_INC(v0, hcalls);
			MSTAT_INC(v0, enters);
		}
		if (ret != H_SUCCESS)
			return hm_error_set(err, HM_E_STATE, -1,
					    "boot: H_ENTER of the linear map at 0x%llx answered %s",
					    (unsigned long long)pa, hpt_ret_name(ret));
	}
	return 0;
}

/* --------------------------------------------------------------- uniform */

static void uniform_step(struct machine_vcpu *v)
{
	hpt_t *h = v->m->hpt;
	uint64_t slots = hpt_slots(h);
	uint64_t slot = rnd(v) % slots;
	uint64_t rd[8];
	long ret = hpt_h_read(h, 0, slot, rd);
	MSTAT_INC(v, hcalls);
	MSTAT_INC(v, reads);
	count_ret(v, ret);
	if (ret != H_SUCCESS)
		return;
	uint64_t x = rnd(v);
	if (rd[0] & HPTE64_V_VALID) {
		uint64_t avpn = rd[0] & HPTE64_V_COMPARE_MASK;
		if ((rd[0] & HPTE64_V_BOLTED) || (x & 1)) {
			/* flip user read-only / read-write */
			uint64_t pp = (rd[1] & HPTE64_R_PP) == 2 ? 3 : 2;
			ret = hpt_h_protect(h, H_AVPN | pp, slot, avpn);
			MSTAT_INC(v, protects);
		} else {
			ret = hpt_h_remove(h, H_AVPN, slot, avpn, NULL, NULL);
			MSTAT_INC(v, removes);
		}
		MSTAT_INC(v, hcalls);
		count_ret(v, ret);
		return;
	}
	/* A 4K mapping in a 256M segment that hashes to this slot's PTEG:
	 * hash = vsid ^ page index, so choose the VSID from the page index. */
	uint64_t npteg_mask = (slots >> 3) - 1;
	uint64_t pteg = slot >> 3;
	uint64_t pidx = (x >> 8) & 0xffff;
	uint64_t vsid = ((pteg ^ pidx) & npteg_mask) | ((x >> 32) & 0xff) << 30;
	uint64_t ea = pidx << 12;
	uint64_t pteh = hpt_mapping_v(HPT_SEG_256M, vsid, ea, false, false);
	uint64_t ram_pages = v->m->cfg.ram_bytes >> 12;
	uint64_t ptel = ((rnd(v) % (ram_pages ? ram_pages : 1)) << 12) | HPTE64_R_M | 2;
	ret = hpt_h_enter(h, H_EXACT, slot, pteh, ptel, NULL);
	MSTAT_INC(v, hcalls);
	MSTAT_INC(v, enters);
	count_ret(v, ret);
}

/* ----------------------------------------------------------------- linux */

static void proc_spawn(struct machine_vcpu *v, struct wl_state *s, struct wl_proc *p)
{
	for (int i = 0; i < WL_PROC_SEGS; i++) {
		uint64_t proto = ((uint64_t)(v->id + 1) << 28) + s->next_proto++;
		p->vsid[i] = (proto * WL_VSID_MULT) % WL_VSID_MOD;
	}
	p->n = 0;
	/* Short-lived commands and long-running daemons. */
	p->ops_left = (rnd(v) & 3) ? 500 + rnd(v) % 5000 : 20000 + rnd(v) % 200000;
	MSTAT_INC(v, processes);
}

static struct wl_state *wl_get(struct machine_vcpu *v)
{
	if (v->wl)
		return v->wl;
	struct wl_state *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	for (int i = 0; i < WL_PROCS; i++) {
		s->proc[i].pages = calloc(WL_PROC_PAGES, sizeof(struct wl_page));
		if (!s->proc[i].pages) {
			for (int j = 0; j < i; j++)
				free(s->proc[j].pages);
			free(s);
			return NULL;
		}
		proc_spawn(v, s, &s->proc[i]);
	}
	v->wl = s;
	return s;
}

void machine_wl_free(struct machine_vcpu *v)
{
	if (!v->wl)
		return;
	for (int i = 0; i < WL_PROCS; i++)
		free(v->wl->proc[i].pages);
	free(v->wl);
	v->wl = NULL;
}

/* Unmap up to `k` pages from the end of p's list with H_BULK_REMOVE. */
static void proc_unmap(struct machine_vcpu *v, struct wl_proc *p, uint32_t k)
{
	hpt_t *h = v->m->hpt;
	while (k > 0 && p->n > 0) {
		uint64_t args[8];
		unsigned n = 0;
		while (n < H_BULK_REMOVE_MAX_BATCH && k > 0 && p->n > 0) {
			struct wl_page *pg = &p->pages[--p->n];
			args[2 * n] = H_BULK_REMOVE_REQUEST | H_BULK_REMOVE_AVPN | pg->slot;
			args[2 * n + 1] = pg->v & HPTE64_V_COMPARE_MASK;
			n++;
			k--;
		}
		if (n < H_BULK_REMOVE_MAX_BATCH)
			args[2 * n] = H_BULK_REMOVE_END;
		for (unsigned i = n + 1; i < H_BULK_REMOVE_MAX_BATCH; i++)
			args[2 * i] = 0;
		long ret = hpt_h_bulk_remove(h, args);
		MSTAT_INC(v, hcalls);
		MSTAT_INC(v, bulk_removes);
		count_ret(v, ret);
		for (unsigned i = 0; i < n && ret == H_SUCCESS; i++)
			if ((args[2 * i] & H_BULK_REMOVE_CODE) == H_BULK_REMOVE_NOT_FOUND)
				MSTAT_INC(v, not_found); /* evicted meanwhile: normal */
	}
}

static void proc_fault(struct machine_vcpu *v, struct wl_proc *p)
{
	hpt_t *h = v->m->hpt;
	unsigned shift = hpt_shift(h);
	if (p->n >= WL_PROC_PAGES) {
		proc_unmap(v, p, 1 + (uint32_t)(rnd(v) % 16));
		return;
	}
	uint64_t x = rnd(v);
	uint64_t vsid = p->vsid[x & (WL_PROC_SEGS - 1)];
	uint64_t ea = ((x >> 8) & 0xffff) << 12;
	uint64_t ram_pages = v->m->cfg.ram_bytes >> 12;
	uint64_t ptel = ((rnd(v) % (ram_pages ? ram_pages : 1)) << 12) | HPTE64_R_M | 2 |
			((x >> 40) & 1 ? HPTE64_R_N : 0);
	uint64_t slot = 0, pteh = 0;
	long ret = H_PTEG_FULL;
	for (int attempt = 0; attempt < 2 && ret == H_PTEG_FULL; attempt++) {
		for (int sec = 0; sec < 2 && ret == H_PTEG_FULL; sec++) {
			uint64_t pteg = hpt_pteg_index(shift, HPT_SEG_256M, vsid, ea, 12, sec);
			pteh = hpt_mapping_v(HPT_SEG_256M, vsid, ea, false, sec);
			ret = hpt_h_enter(h, 0, pteg * HPTES_PER_GROUP, pteh, ptel, &slot);
			MSTAT_INC(v, hcalls);
			MSTAT_INC(v, enters);
			count_ret(v, ret);
		}
		if (ret != H_PTEG_FULL || attempt == 1)
			break;
		/* Both groups full: evict a non-bolted entry of the primary group
		 * (Linux picks a pseudo-random victim) and retry. */
		uint64_t pteg = hpt_pteg_index(shift, HPT_SEG_256M, vsid, ea, 12, false);
		uint64_t first = rnd(v) & 7;
		for (unsigned i = 0; i < HPTES_PER_GROUP; i++) {
			uint64_t vs = pteg * HPTES_PER_GROUP + ((first + i) & 7);
			uint64_t rd[8];
			long r2 = hpt_h_read(h, 0, vs, rd);
			MSTAT_INC(v, hcalls);
			MSTAT_INC(v, reads);
			count_ret(v, r2);
			if (r2 != H_SUCCESS || !(rd[0] & HPTE64_V_VALID) || (rd[0] & HPTE64_V_BOLTED))
				continue;
			r2 = hpt_h_remove(h, H_AVPN, vs, rd[0] & HPTE64_V_COMPARE_MASK, NULL, NULL);
			MSTAT_INC(v, hcalls);
			MSTAT_INC(v, removes);
			count_ret(v, r2);
			if (r2 == H_SUCCESS)
				MSTAT_INC(v, evictions);
			break;
		}
	}
	if (ret == H_SUCCESS) {
		p->pages[p->n].slot = slot;
		p->pages[p->n].v = pteh | HPTE64_V_VALID;
		p->n++;
	}
}

static void proc_protect(struct machine_vcpu *v, struct wl_proc *p)
{
	if (p->n == 0)
		return;
	uint64_t x = rnd(v);
	uint32_t i = (uint32_t)(x % p->n);
	struct wl_page *pg = &p->pages[i];
	/* mprotect: read-only or read-write, sometimes no-execute */
	uint64_t flags = H_AVPN | ((x >> 32) & 1 ? 3 : 2) | ((x >> 33) & 1 ? H_N : 0);
	long ret = hpt_h_protect(v->m->hpt, flags, pg->slot, pg->v & HPTE64_V_COMPARE_MASK);
	MSTAT_INC(v, hcalls);
	MSTAT_INC(v, protects);
	count_ret(v, ret);
	if (ret == H_NOT_FOUND) /* evicted by someone: forget it */
		p->pages[i] = p->pages[--p->n];
}

static void linux_step(struct machine_vcpu *v)
{
	struct wl_state *s = wl_get(v);
	if (!s) {
		MSTAT_INC(v, unexpected);
		return;
	}
	uint64_t x = rnd(v);
	struct wl_proc *p = &s->proc[x % WL_PROCS];
	unsigned op = (unsigned)((x >> 16) % 100);
	/* Faults dominate; munmap batches are rarer (net growth until exit). */
	if (op < 65 || p->n == 0)
		proc_fault(v, p);
	else if (op < 90)
		proc_protect(v, p);
	else
		proc_unmap(v, p, 1 + (uint32_t)((x >> 24) % 8));
	if (p->ops_left-- == 0) {
		proc_unmap(v, p, p->n); /* exit: the whole address space goes */
		proc_spawn(v, s, p);
	}
}

void machine_wl_step(struct machine_vcpu *v)
{
	switch (v->m->cfg.workload) {
	case MACHINE_WL_UNIFORM:
		uniform_step(v);
		break;
	case MACHINE_WL_LINUX:
		linux_step(v);
		break;
	case MACHINE_WL_IDLE:
		break;
	}
}
