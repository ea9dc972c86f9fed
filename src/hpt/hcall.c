/* SPDX-License-Identifier: MIT */
/*
 * The hypercalls that read and change the table, with QEMU's spapr semantics
 * and return codes (plus the fixes papr-hpt.md asks for: H_BULK_REMOVE puts
 * R/C in bits 59:58). Every change is made under the entry lock and marked
 * for migration before unlocking; a call that fails or changes nothing marks
 * nothing. Guest input must never crash, hang or corrupt the table.
 */
#include "hpt_internal.h"

/* Is real address raddr RAM (vs I/O) for the WIMG check? */
static bool is_ram(const hpt_t *h, uint64_t raddr)
{
	return h->cfg.ram_bytes == 0 || raddr < h->cfg.ram_bytes;
}

long hpt_h_enter(hpt_t *h, uint64_t flags, uint64_t ptex, uint64_t pteh, uint64_t ptel,
		 uint64_t *slot)
{
	unsigned base, actual;
	if ((pteh & HPTE64_V_SSIZE) >> HPTE64_V_SSIZE_SHIFT > 1)
		return H_PARAMETER; /* segment sizes 2 and 3 are reserved */
	if (hpt_page_decode(pteh, ptel, &base, &actual) || actual > h->cfg.max_page_shift)
		return H_PARAMETER;
	/* QEMU's page-size filter (spapr_pagesize_cb, applied to the CPU's
	 * table): a page larger than its segment's base page exists only when
	 * it is 16M, as KVM allows, so 4K base / 64K actual is refused. */
	if (actual != base && actual != 24)
		return H_PARAMETER;
	uint64_t raddr = (ptel & HPTE64_R_RPN) & ~((UINT64_C(1) << actual) - 1);
	if (is_ram(h, raddr)) {
		if ((ptel & HPTE64_R_WIMG) != HPTE64_R_M)
			return H_PARAMETER;
	} else {
		uint64_t wim = ptel & (HPTE64_R_W | HPTE64_R_I | HPTE64_R_M);
		if (wim != HPTE64_R_I && wim != (HPTE64_R_I | HPTE64_R_M))
			return H_PARAMETER;
	}
	/* Strip the hypervisor's bits (lock, absent) and bit 62; the entry is
	 * made valid as KVM does (a guest always asks for a valid entry). */
	pteh = (pteh & ~(HPTE64_V_HVLOCK | HPTE64_V_ABSENT)) | HPTE64_V_VALID;
	ptel &= ~HPTE64_R_BIT62;

	struct hpt_shard *s = hpt_rd_lock(h);
	struct hpt_table *t = hpt_tab(h);
	long rc = H_PTEG_FULL;
	if (ptex >= t->slots) {
		rc = H_PARAMETER;
		goto out;
	}
	uint64_t first = (flags & H_EXACT) ? ptex : (ptex & ~UINT64_C(7));
	uint64_t last = (flags & H_EXACT) ? ptex : first + 7;
	for (uint64_t i = first; i <= last; i++) {
		_Atomic uint64_t *vp = hpt_vp(t, i);
		/* An unlocked valid slot is skipped without taking its lock. */
		if ((atomic_load_explicit(vp, memory_order_relaxed) & (HPT_VALID_BE | HPT_LOCK_BE)) ==
		    HPT_VALID_BE)
			continue;
		uint64_t v = hpt_entry_lock(vp);
		if (v & HPTE64_V_VALID) {
			hpt_entry_unlock(vp, v);
			continue;
		}
		/* Insertion order: R, then V with the valid bit (the unlock). */
		hpt_r_store(hpt_rp(t, i), ptel);
		hpt_track_mark(h, s, i);
		hpt_entry_unlock(vp, pteh);
		if (slot)
			*slot = i;
		rc = H_SUCCESS;
		break;
	}
out:
	hpt_rd_unlock(s);
	return rc;
}

enum { REMOVE_SUCCESS = 0, REMOVE_NOT_FOUND = 1, REMOVE_PARM = 2 };

/*
 * Remove under the reader lock (shared by H_REMOVE and H_BULK_REMOVE).
 * flags: H_AVPN / H_ANDCOND.
 */
static int remove_locked(hpt_t *h, struct hpt_shard *s, struct hpt_table *t, uint64_t ptex,
			 uint64_t avpn, uint64_t flags, uint64_t *ov, uint64_t *or_)
{
	if (ptex >= t->slots)
		return REMOVE_PARM;
	_Atomic uint64_t *vp = hpt_vp(t, ptex);
	uint64_t v = hpt_entry_lock(vp);
	if (!(v & HPTE64_V_VALID) || ((flags & H_AVPN) && (v & HPTE64_V_COMPARE_MASK) != avpn) ||
	    ((flags & H_ANDCOND) && (v & avpn) != 0)) {
		hpt_entry_unlock(vp, v);
		return REMOVE_NOT_FOUND;
	}
	*ov = v;
	*or_ = hpt_r_load(hpt_rp(t, ptex));
	/* Removal order: V (still locked, no longer valid), then R, then unlock. */
	atomic_store_explicit(vp, HPT_LOCK_BE, memory_order_relaxed);
	hpt_r_store(hpt_rp(t, ptex), 0);
	hpt_track_mark(h, s, ptex);
	hpt_entry_unlock(vp, 0);
	return REMOVE_SUCCESS;
}

long hpt_h_remove(hpt_t *h, uint64_t flags, uint64_t ptex, uint64_t avpn, uint64_t *old_v,
		  uint64_t *old_r)
{
	uint64_t v = 0, r = 0;
	struct hpt_shard *s = hpt_rd_lock(h);
	int ret = remove_locked(h, s, hpt_tab(h), ptex, avpn, flags, &v, &r);
	hpt_rd_unlock(s);
	switch (ret) {
	case REMOVE_SUCCESS:
		if (old_v)
			*old_v = v;
		if (old_r)
			*old_r = r;
		return H_SUCCESS;
	case REMOVE_NOT_FOUND:
		return H_NOT_FOUND;
	default:
		return H_PARAMETER;
	}
}

/*
 * R = (R & ~clear) | set on a valid entry (its AVPN compared when avpn_check),
 * under the entry lock; marked only when R changed. *old_r (may be NULL)
 * gets R before. H_PROTECT and H_CLEAR_REF / H_CLEAR_MOD.
 */
static inline long update_r(hpt_t *h, uint64_t ptex, bool avpn_check, uint64_t avpn,
			    uint64_t clear, uint64_t set, uint64_t *old_r)
{
	struct hpt_shard *s = hpt_rd_lock(h);
	struct hpt_table *t = hpt_tab(h);
	long rc = H_SUCCESS;
	if (ptex >= t->slots) {
		rc = H_PARAMETER;
		goto out;
	}
	_Atomic uint64_t *vp = hpt_vp(t, ptex);
	uint64_t v = hpt_entry_lock(vp);
	if (!(v & HPTE64_V_VALID) || (avpn_check && (v & HPTE64_V_COMPARE_MASK) != avpn)) {
		hpt_entry_unlock(vp, v);
		rc = H_NOT_FOUND;
		goto out;
	}
	uint64_t r = hpt_r_load(hpt_rp(t, ptex));
	uint64_t nr = (r & ~clear) | set;
	if (nr != r) {
		hpt_r_store(hpt_rp(t, ptex), nr);
		hpt_track_mark(h, s, ptex);
	}
	hpt_entry_unlock(vp, v);
	if (old_r)
		*old_r = r;
out:
	hpt_rd_unlock(s);
	return rc;
}

long hpt_h_protect(hpt_t *h, uint64_t flags, uint64_t ptex, uint64_t avpn)
{
	uint64_t set = ((flags << 55) & HPTE64_R_PP0) | ((flags << 48) & HPTE64_R_KEY_HI) |
		       (flags & (HPTE64_R_PP | HPTE64_R_N | HPTE64_R_KEY_LO));
	return update_r(h, ptex, (flags & H_AVPN) != 0, avpn,
			HPTE64_R_PP0 | HPTE64_R_PP | HPTE64_R_N | HPTE64_R_KEY_HI | HPTE64_R_KEY_LO,
			set, NULL);
}

long hpt_h_read(hpt_t *h, uint64_t flags, uint64_t ptex, uint64_t out[8])
{
	struct hpt_shard *s = hpt_rd_lock(h);
	struct hpt_table *t = hpt_tab(h);
	long rc = H_SUCCESS;
	if (ptex >= t->slots) {
		rc = H_PARAMETER;
		goto done;
	}
	unsigned n = 1;
	if (flags & H_READ_4) {
		ptex &= ~UINT64_C(3); /* a table holds whole PTEGs: +3 stays inside */
		n = 4;
	}
	for (unsigned i = 0; i < n; i++) {
		_Atomic uint64_t *vp = hpt_vp(t, ptex + i);
		uint64_t v = hpt_entry_lock(vp);
		out[2 * i + 1] = hpt_r_load(hpt_rp(t, ptex + i));
		hpt_entry_unlock(vp, v);
		out[2 * i] = v;
	}
done:
	hpt_rd_unlock(s);
	return rc;
}

long hpt_h_bulk_remove(hpt_t *h, uint64_t args[8])
{
	struct hpt_shard *s = hpt_rd_lock(h);
	struct hpt_table *t = hpt_tab(h);
	long rc = H_SUCCESS;
	for (int i = 0; i < H_BULK_REMOVE_MAX_BATCH; i++) {
		uint64_t *tsh = &args[2 * i], tsl = args[2 * i + 1];
		uint64_t type = *tsh & H_BULK_REMOVE_TYPE;
		if (type == H_BULK_REMOVE_END)
			break;
		if (type != H_BULK_REMOVE_REQUEST) {
			rc = H_PARAMETER;
			break;
		}
		*tsh &= H_BULK_REMOVE_PTEX | H_BULK_REMOVE_FLAGS;
		*tsh |= H_BULK_REMOVE_RESPONSE;
		if ((*tsh & H_BULK_REMOVE_FLAGS) == (H_BULK_REMOVE_ANDCOND | H_BULK_REMOVE_AVPN)) {
			*tsh |= H_BULK_REMOVE_PARM;
			rc = H_PARAMETER;
			break;
		}
		/* Flags 57:56 -> H_ANDCOND (bit 30) / H_AVPN (bit 31). */
		uint64_t fl = (*tsh & H_BULK_REMOVE_FLAGS) >> 26;
		uint64_t v, r;
		int ret = remove_locked(h, s, t, *tsh & H_BULK_REMOVE_PTEX, tsl, fl, &v, &r);
		*tsh |= (uint64_t)ret << 60;
		if (ret == REMOVE_SUCCESS) {
			/* R (0x100) -> bit 59, C (0x80) -> bit 58. */
			*tsh |= (r & (HPTE64_R_R | HPTE64_R_C)) << 51;
		} else if (ret == REMOVE_PARM) {
			rc = H_PARAMETER;
			break;
		}
	}
	hpt_rd_unlock(s);
	return rc;
}

long hpt_h_clear_ref(hpt_t *h, uint64_t flags, uint64_t ptex, uint64_t *old_r)
{
	(void)flags;
	return update_r(h, ptex, false, 0, HPTE64_R_R, 0, old_r);
}

long hpt_h_clear_mod(hpt_t *h, uint64_t flags, uint64_t ptex, uint64_t *old_r)
{
	(void)flags;
	return update_r(h, ptex, false, 0, HPTE64_R_C, 0, old_r);
}

long hpt_h_resize_prepare(hpt_t *h, uint64_t flags, uint64_t shift)
{
	if (flags != 0)
		return H_PARAMETER;
	if (shift != 0 && (shift < HPT_SHIFT_MIN || shift > HPT_SHIFT_MAX))
		return H_PARAMETER;
	/* QEMU's limit: one order above the table it would give this much RAM,
	 * so a small guest cannot make its host allocate (and then migrate) a
	 * huge table. No limit when the RAM size is not known (ram_bytes 0). */
	if (h->cfg.ram_bytes && shift > hpt_shift_for_ram(h->cfg.ram_bytes) + 1)
		return H_RESOURCE;
	if (shift > HPT_SHIFT_STREAM_MAX)
		return H_RESOURCE;
	pthread_mutex_lock(&h->ctl);
	long rc = hpt_resize_prepare_locked(h, (unsigned)shift);
	pthread_mutex_unlock(&h->ctl);
	return rc;
}

long hpt_h_resize_commit(hpt_t *h, uint64_t flags, uint64_t shift)
{
	if (flags != 0)
		return H_PARAMETER;
	pthread_mutex_lock(&h->ctl);
	long rc = (shift >= HPT_SHIFT_MIN && shift <= HPT_SHIFT_MAX)
			  ? hpt_resize_commit_locked(h, (unsigned)shift)
			  : H_CLOSED;
	pthread_mutex_unlock(&h->ctl);
	return rc;
}

long hpt_hcall(hpt_t *h, uint64_t opcode, uint64_t args[8])
{
	uint64_t a[8];
	long rc;
	switch (opcode) {
	case H_ENTER:
		rc = hpt_h_enter(h, args[0], args[1], args[2], args[3], &a[0]);
		if (rc == H_SUCCESS)
			args[0] = a[0];
		return rc;
	case H_REMOVE:
		rc = hpt_h_remove(h, args[0], args[1], args[2], &a[0], &a[1]);
		if (rc == H_SUCCESS) {
			args[0] = a[0];
			args[1] = a[1];
		}
		return rc;
	case H_READ: {
		unsigned n = (args[0] & H_READ_4) ? 8u : 2u;
		rc = hpt_h_read(h, args[0], args[1], a);
		if (rc == H_SUCCESS)
			for (unsigned i = 0; i < n; i++)
				args[i] = a[i];
		return rc;
	}
	case H_PROTECT:
		return hpt_h_protect(h, args[0], args[1], args[2]);
	case H_CLEAR_REF:
	case H_CLEAR_MOD:
		rc = (opcode == H_CLEAR_REF ? hpt_h_clear_ref : hpt_h_clear_mod)(h, args[0], args[1],
										  &a[0]);
		if (rc == H_SUCCESS)
			args[0] = a[0];
		return rc;
	case H_BULK_REMOVE:
		return hpt_h_bulk_remove(h, args);
	case H_RESIZE_HPT_PREPARE:
		return hpt_h_resize_prepare(h, args[0], args[1]);
	case H_RESIZE_HPT_COMMIT:
		return hpt_h_resize_commit(h, args[0], args[1]);
	default:
		return H_FUNCTION;
	}
}

const char *hpt_hcall_name(uint64_t opcode)
{
	switch (opcode) {
	case H_REMOVE: return "H_REMOVE";
	case H_ENTER: return "H_ENTER";
	case H_READ: return "H_READ";
	case H_CLEAR_MOD: return "H_CLEAR_MOD";
	case H_CLEAR_REF: return "H_CLEAR_REF";
	case H_PROTECT: return "H_PROTECT";
	case H_BULK_REMOVE: return "H_BULK_REMOVE";
	case H_RESIZE_HPT_PREPARE: return "H_RESIZE_HPT_PREPARE";
	case H_RESIZE_HPT_COMMIT: return "H_RESIZE_HPT_COMMIT";
	default: return "H_UNKNOWN";
	}
}

const char *hpt_ret_name(long ret)
{
	switch (ret) {
	case H_SUCCESS: return "H_SUCCESS";
	case H_BUSY: return "H_BUSY";
	case H_CLOSED: return "H_CLOSED";
	case H_NOT_AVAILABLE: return "H_NOT_AVAILABLE";
	case H_HARDWARE: return "H_HARDWARE";
	case H_FUNCTION: return "H_FUNCTION";
	case H_PRIVILEGE: return "H_PRIVILEGE";
	case H_PARAMETER: return "H_PARAMETER";
	case H_PTEG_FULL: return "H_PTEG_FULL";
	case H_NOT_FOUND: return "H_NOT_FOUND";
	case H_NO_MEM: return "H_NO_MEM";
	case H_RESOURCE: return "H_RESOURCE";
	default: return "H_UNKNOWN_RETURN";
	}
}
