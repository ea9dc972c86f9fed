/* SPDX-License-Identifier: MIT */
/*
 * The project's `hptmig/verify` section: the end-to-end check of the table
 * (version 2: the block root; version 1, still loaded: the HTAB digest),
 * sent as a FULL record after the HTAB. It belongs to the stream
 * layer (not to a device model): it describes what the stream carried, and
 * the loader must refuse a shift no stream can carry and a count no table
 * of that shift can hold. QEMU's `spapr` lives in src/machine/spapr.c.
 */
#include <string.h>

#include "savevm/savevm_int.h"

/* ----------------------------------------------------------- hptmig/verify */

/* The only block size of version 2: the sender writes it, the loader
 * requires it (VMS_F_EQUAL: a field-named error at its offset). */
static int verify_pre_save(void *opaque, hm_error_t *err)
{
	(void)err;
	((savevm_verify_t *)opaque)->slots_per_block = VERIFY_BLOCK_SLOTS;
	return 0;
}

static int verify_pre_load(void *opaque, hm_error_t *err)
{
	savevm_verify_t *v = opaque;
	(void)err;
	v->slots_per_block = VERIFY_BLOCK_SLOTS;
	v->loaded = false;
	return 0;
}

static int verify_post_load(void *opaque, uint32_t version_id, hm_error_t *err)
{
	savevm_verify_t *v = opaque;
	if (v->htab_shift != HTAB_HDR_NO_HPT &&
	    (v->htab_shift < HTAB_STREAM_SHIFT_MIN || v->htab_shift > HTAB_STREAM_SHIFT_MAX))
		return hm_error_set(err, HM_E_RANGE, -1,
				    "field 'hptmig/verify.htab_shift': value %u not in 18..46 nor 0xffffffff",
				    v->htab_shift);
	if (v->htab_shift != HTAB_HDR_NO_HPT &&
	    v->valid > (UINT64_C(1) << (v->htab_shift - 4)))
		return hm_error_set(err, HM_E_RANGE, -1,
				    "field 'hptmig/verify.valid': %llu entries exceed the %llu slots of shift %u",
				    (unsigned long long)v->valid,
				    (unsigned long long)(UINT64_C(1) << (v->htab_shift - 4)), v->htab_shift);
	if (v->htab_shift == HTAB_HDR_NO_HPT && v->valid != 0)
		return hm_error_set(err, HM_E_RANGE, -1,
				    "field 'hptmig/verify.valid': %llu entries with no HPT",
				    (unsigned long long)v->valid);
	v->version = version_id;
	v->loaded = true;
	return 0;
}

static const vmstate_field_t verify_fields[] = {
	{ VMSTATE_U32(savevm_verify_t, htab_shift) },
	{ VMSTATE_U64(savevm_verify_t, valid) },
	{ VMSTATE_BUFFER(savevm_verify_t, digest), .version_below = 2 },
	{ VMSTATE_U32(savevm_verify_t, slots_per_block), .flags = VMS_F_EQUAL, .version_min = 2 },
	{ VMSTATE_BUFFER(savevm_verify_t, root), .version_min = 2 },
	{ VMSTATE_END_OF_LIST },
};

const vmstate_desc_t savevm_verify_vmsd = {
	.name = VERIFY_SECTION_IDSTR,
	.version_id = VERIFY_SECTION_VERSION,
	.minimum_version_id = VERIFY_SECTION_MIN_VERSION,
	.fields = verify_fields,
	.pre_save = verify_pre_save,
	.pre_load = verify_pre_load,
	.post_load = verify_post_load,
};

int savevm_register_verify(savevm_registry_t *r, savevm_verify_t *v, hm_error_t *err)
{
	return savevm_register_vmstate(r, VERIFY_SECTION_IDSTR, 0, &savevm_verify_vmsd, v, err);
}

int savevm_verify_check(const savevm_verify_t *sent, uint32_t htab_shift, uint64_t valid,
			const uint8_t digest[HM_SHA256_LEN], const uint8_t root[HM_SHA256_LEN],
			hm_error_t *err)
{
	if (!sent || !sent->loaded)
		return hm_error_set(err, HM_E_STATE, -1,
				    "section 'hptmig/verify' was not received: cannot verify the table");
	bool v2 = sent->version >= 2;
	const char *what = v2 ? "root" : "digest";
	const uint8_t *want = v2 ? sent->root : sent->digest, *have = v2 ? root : digest;
	if (!have)
		return hm_error_set(err, HM_E_STATE, -1,
				    "hptmig/verify version %u: the destination's table %s was not computed",
				    sent->version, what);
	if (sent->htab_shift == htab_shift && sent->valid == valid &&
	    memcmp(want, have, HM_SHA256_LEN) == 0)
		return 0;
	char a[2 * HM_SHA256_LEN + 1], b[2 * HM_SHA256_LEN + 1];
	hm_hex(want, HM_SHA256_LEN, a);
	hm_hex(have, HM_SHA256_LEN, b);
	return hm_error_set(err, HM_E_DIGEST, -1,
			    "hptmig/verify version %u: source sent shift %u, %llu valid, %s %s; destination has shift %u, %llu valid, %s %s",
			    sent->version, sent->htab_shift, (unsigned long long)sent->valid, what, a,
			    htab_shift, (unsigned long long)valid, what, b);
}
