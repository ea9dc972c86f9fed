/* SPDX-License-Identifier: MIT */
/*
 * Hash helpers usable without a table: the PTEG hash of a virtual address,
 * the V word of a mapping, the page-size encodings of papr-hpt.md and the
 * structural check of an entry against the PTEG it sits in. Pure functions:
 * they must never touch a table, allocate, or trust their input.
 */
#include "hptmig/hpt.h"

#include <errno.h>

uint64_t hpt_hash(unsigned ssize, uint64_t vsid, uint64_t ea, unsigned page_shift)
{
	if (page_shift > 63)
		page_shift = 63;
	if (ssize == HPT_SEG_1T)
		return vsid ^ (vsid << 25) ^ ((ea & UINT64_C(0xFFFFFFFFFF)) >> page_shift);
	return vsid ^ ((ea & UINT64_C(0x0FFFFFFF)) >> page_shift);
}

uint64_t hpt_pteg_index(unsigned shift, unsigned ssize, uint64_t vsid, uint64_t ea,
			unsigned page_shift, bool secondary)
{
	if (shift < 7 || shift > 63)
		return 0;
	uint64_t mask = (UINT64_C(1) << (shift - 7)) - 1;
	uint64_t hash = hpt_hash(ssize, vsid, ea, page_shift);
	return (secondary ? ~hash : hash) & mask;
}

uint64_t hpt_mapping_v(unsigned ssize, uint64_t vsid, uint64_t ea, bool large, bool secondary)
{
	uint64_t va;
	if (ssize == HPT_SEG_1T)
		va = (vsid << 40) | (ea & UINT64_C(0xFFFFFFFFFF));
	else
		va = (vsid << 28) | (ea & UINT64_C(0x0FFFFFFF));
	return ((uint64_t)(ssize & 3) << HPTE64_V_SSIZE_SHIFT) |
	       (((va >> 23) << HPTE64_V_AVPN_SHIFT) & HPTE64_V_AVPN) |
	       (large ? HPTE64_V_LARGE : 0) | (secondary ? HPTE64_V_SECONDARY : 0) | HPTE64_V_VALID;
}

/*
 * The rows of papr-hpt.md's page-size table for L = 1, plus QEMU's 16G row
 * (POWER7-9 `sps` tables: base and actual 2^34, pte_enc 0x3 in the RPN bits
 * below 2^34). The encodings exclude each other, so the order does not
 * matter. Which rows a guest may use is H_ENTER's business (hcall.c).
 */
static const struct {
	unsigned base, actual;
	uint64_t mask, enc;
} page_rows[] = {
	{16, 16, UINT64_C(0xF000), UINT64_C(0x1000)},
	{12, 16, UINT64_C(0xF000), UINT64_C(0x7000)},
	{24, 24, UINT64_C(0xFFF000), UINT64_C(0)},
	{12, 24, UINT64_C(0xFFF000), UINT64_C(0x38000)},
	{16, 24, UINT64_C(0xFFF000), UINT64_C(0x8000)},
	{34, 34, UINT64_C(0x3FFFFF000), UINT64_C(0x3000)},
};

int hpt_page_encode(unsigned base_shift, unsigned actual_shift, bool *large, uint64_t *r_bits)
{
	if (base_shift == 12 && actual_shift == 12) {
		*large = false;
		*r_bits = 0;
		return 0;
	}
	for (size_t i = 0; i < sizeof(page_rows) / sizeof(page_rows[0]); i++) {
		if (page_rows[i].base == base_shift && page_rows[i].actual == actual_shift) {
			*large = true;
			*r_bits = page_rows[i].enc;
			return 0;
		}
	}
	return -EINVAL;
}

int hpt_page_decode(uint64_t v, uint64_t r, unsigned *base_shift, unsigned *actual_shift)
{
	unsigned b = 12, a = 12;
	if (v & HPTE64_V_LARGE) {
		size_t i, n = sizeof(page_rows) / sizeof(page_rows[0]);
		for (i = 0; i < n; i++)
			if ((r & page_rows[i].mask) == page_rows[i].enc)
				break;
		if (i == n)
			return -EINVAL;
		b = page_rows[i].base;
		a = page_rows[i].actual;
	}
	if (base_shift)
		*base_shift = b;
	if (actual_shift)
		*actual_shift = a;
	return 0;
}

bool hpt_avpn_split(uint64_t v, unsigned base_shift, unsigned *ssize, uint64_t *vsid,
		    uint64_t *offset)
{
	if (base_shift > 63)
		return false;
	/* AVPN = va >> 23; bits of it inside the base page carry nothing. */
	uint64_t avpn = ((v & HPTE64_V_AVPN) >> HPTE64_V_AVPN_SHIFT) &
			~(((UINT64_C(1) << base_shift) - 1) >> 23);
	if ((v & HPTE64_V_SSIZE) == HPTE64_V_SSIZE_256M) {
		*ssize = HPT_SEG_256M;
		*vsid = avpn >> 5;
		*offset = (avpn & 0x1f) << 23;
	} else if ((v & HPTE64_V_SSIZE) == HPTE64_V_SSIZE_1T) {
		*ssize = HPT_SEG_1T;
		*vsid = avpn >> 17;
		*offset = (avpn & 0x1ffff) << 23;
	} else {
		return false; /* reserved segment size */
	}
	return true;
}

bool hpt_entry_check(unsigned shift, uint64_t slot, uint64_t v, uint64_t r)
{
	unsigned p, ssize;
	uint64_t vsid, offset;
	if (!(v & HPTE64_V_VALID))
		return true;
	if (shift < HPT_SHIFT_MIN || shift > HPT_SHIFT_MAX || slot >= (UINT64_C(1) << (shift - 4)))
		return false;
	if (hpt_page_decode(v, r, &p, NULL))
		return false;
	if (!hpt_avpn_split(v, p, &ssize, &vsid, &offset))
		return false;
	uint64_t hash = hpt_hash(ssize, vsid, offset, p);
	if (v & HPTE64_V_SECONDARY)
		hash = ~hash;
	/* EA bits p..22 are not in the AVPN: they feed the low 23 - p hash bits. */
	uint64_t mask = (UINT64_C(1) << (shift - 7)) - 1;
	if (p < 23)
		mask &= ~((UINT64_C(1) << (23 - p)) - 1);
	return ((hash ^ (slot >> 3)) & mask) == 0;
}
