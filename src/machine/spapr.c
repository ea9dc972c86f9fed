/* SPDX-License-Identifier: MIT */
/*
 * QEMU's `spapr` machine vmstate (versions 1 to 3, byte for byte and with
 * QEMU's vmdesc names), plain and with the optional subsections QEMU 7.2 to
 * 10 send on pseries; it lives with the machine, as in QEMU's hw/ppc/spapr.c.
 * It must never accept a value QEMU would refuse, nor refuse one QEMU sends.
 */
#include <stdlib.h>

#include "hptmig/machine.h"

/* ------------------------------------------------------------------ spapr */

/* QEMU: VMSTATE_UINT64_TEST(rtc_offset, SpaprMachineState, version_before_3). */
static bool spapr_version_before_3(void *opaque, uint32_t version_id)
{
	(void)opaque;
	return version_id < 3;
}

/* QEMU's VMSTATE_PPC_TIMEBASE_V: a nested "timebase" struct named "tb". */
static const vmstate_field_t timebase_fields[] = {
	{ VMSTATE_U64(spapr_state_t, guest_timebase) },
	{ VMSTATE_I64(spapr_state_t, time_of_the_day_ns) },
	{ VMSTATE_END_OF_LIST },
};

static const vmstate_desc_t timebase_vmsd = {
	.name = "timebase",
	.version_id = 1,
	.minimum_version_id = 1,
	.fields = timebase_fields,
};

static const vmstate_field_t spapr_fields[] = {
	/* The seed's v1 next_irq; QEMU today reads it as 4 unused bytes. */
	{ VMSTATE_U32(spapr_state_t, next_irq), .version_below = 3 },
	{ VMSTATE_U64(spapr_state_t, rtc_offset), .exists = spapr_version_before_3 },
	{ VMSTATE_STRUCT_SELF("tb", &timebase_vmsd), .version_min = 2 },
	{ VMSTATE_END_OF_LIST },
};

const vmstate_desc_t machine_spapr_vmsd = {
	.name = "spapr",
	.version_id = SPAPR_SECTION_VERSION,
	.minimum_version_id = SPAPR_SECTION_MIN_VERSION,
	.fields = spapr_fields,
};

int machine_spapr_register(savevm_registry_t *r, spapr_state_t *s, hm_error_t *err)
{
	return savevm_register_vmstate(r, SPAPR_SECTION_IDSTR, 0, &machine_spapr_vmsd, s, err);
}

/* --------------------------------------------- spapr with QEMU subsections */

/* Each optional subsection: sent when its bit is set, sets it when loaded. */
#define SPAPR_PRESENCE(tag, bit)                                                \
	static bool tag##_needed(void *o)                                       \
	{                                                                       \
		return (((spapr_qemu_state_t *)o)->present & (bit)) != 0;       \
	}                                                                       \
	static int tag##_post_load(void *o, uint32_t v, hm_error_t *e)          \
	{                                                                       \
		(void)v;                                                        \
		(void)e;                                                        \
		((spapr_qemu_state_t *)o)->present |= (bit);                    \
		return 0;                                                       \
	}

#define SPAPR_SUB(tag, wire_name, flds)                                          \
	static const vmstate_desc_t tag##_vmsd = {                              \
		.name = wire_name, .version_id = 1, .minimum_version_id = 1,    \
		.fields = flds, .needed = tag##_needed, .post_load = tag##_post_load, \
	}

/* spapr_option_vector_ov5_cas: field "ov5_cas", struct "spapr_option_vector". */
static const vmstate_field_t ovec_fields[] = {
	{ .name = "bitmap", .type = VMS_BITMAP, .offset = 0,
	  .size = sizeof(((spapr_qemu_state_t *)0)->ov5_cas) },
	{ VMSTATE_END_OF_LIST },
};
static const vmstate_desc_t ovec_vmsd = {
	.name = "spapr_option_vector", .version_id = 1, .minimum_version_id = 1,
	.fields = ovec_fields,
};
static const vmstate_field_t ov5_fields[] = {
	{ VMSTATE_STRUCT(spapr_qemu_state_t, ov5_cas, &ovec_vmsd) },
	{ VMSTATE_END_OF_LIST },
};
SPAPR_PRESENCE(ov5, SPAPR_QEMU_OV5_CAS)
SPAPR_SUB(ov5, "spapr_option_vector_ov5_cas", ov5_fields);

static const vmstate_field_t patb_fields[] = {
	{ VMSTATE_U64(spapr_qemu_state_t, patb_entry) },
	{ VMSTATE_END_OF_LIST },
};
SPAPR_PRESENCE(patb, SPAPR_QEMU_PATB)
SPAPR_SUB(patb, "spapr_patb_entry", patb_fields);

static const vmstate_field_t dtb_fields[] = {
	{ VMSTATE_U32(spapr_qemu_state_t, fdt_initial_size) },
	{ VMSTATE_U32(spapr_qemu_state_t, fdt_size) },
	{ VMSTATE_VBUFFER_ALLOC_U32(spapr_qemu_state_t, fdt_blob, fdt_size, SPAPR_QEMU_FDT_MAX) },
	{ VMSTATE_END_OF_LIST },
};
SPAPR_PRESENCE(dtb, SPAPR_QEMU_DTB)
SPAPR_SUB(dtb, "spapr_dtb", dtb_fields);

static const vmstate_field_t fwnmi_fields[] = {
	{ VMSTATE_U64(spapr_qemu_state_t, fwnmi_system_reset_addr) },
	{ VMSTATE_U64(spapr_qemu_state_t, fwnmi_machine_check_addr) },
	{ VMSTATE_I32(spapr_qemu_state_t, fwnmi_machine_check_interlock) },
	{ VMSTATE_END_OF_LIST },
};
SPAPR_PRESENCE(fwnmi, SPAPR_QEMU_FWNMI)
SPAPR_SUB(fwnmi, "spapr_fwnmi", fwnmi_fields);

/* spapr/cap/<name>: one byte, field "mig.caps[<SPAPR_CAP_* as QEMU spells it>]". */
#define SPAPR_CAP(n, sname, num)                                                 \
	static const vmstate_field_t cap_##sname##_fields[] = {                 \
		{ .name = "mig.caps[" num "]", .type = VMS_U8,                  \
		  .offset = offsetof(spapr_qemu_state_t, caps) + (n), .size = 1 }, \
		{ VMSTATE_END_OF_LIST },                                        \
	};                                                                      \
	SPAPR_PRESENCE(cap_##sname, SPAPR_QEMU_CAP(n))                          \
	SPAPR_SUB(cap_##sname, "spapr/cap/" #sname, cap_##sname##_fields)

SPAPR_CAP(0, htm, "0x00");
SPAPR_CAP(1, vsx, "0x01");
SPAPR_CAP(2, dfp, "0x02");
SPAPR_CAP(3, cfpc, "0x03");
SPAPR_CAP(4, sbbc, "0x04");
SPAPR_CAP(5, ibs, "0x05");
SPAPR_CAP(6, hpt_maxpagesize, "0x06");
SPAPR_CAP(7, nested_kvm_hv, "0x07");
SPAPR_CAP(8, large_decr, "0x08");
SPAPR_CAP(9, ccf_assist, "0x09");
SPAPR_CAP(10, fwnmi, "0x0A");
SPAPR_CAP(11, rpt_invalidate, "0x0B");
SPAPR_CAP(12, ail_mode_3, "0x0C");
SPAPR_CAP(13, nested_papr, "0x0D");

/* QEMU's order (hw/ppc/spapr.c vmstate_spapr), which is the order on the wire. */
static const vmstate_desc_t *const spapr_qemu_subs[] = {
	&ov5_vmsd,
	&patb_vmsd,
	&cap_htm_vmsd,
	&cap_vsx_vmsd,
	&cap_dfp_vmsd,
	&cap_cfpc_vmsd,
	&cap_sbbc_vmsd,
	&cap_ibs_vmsd,
	&cap_hpt_maxpagesize_vmsd,
	&cap_nested_kvm_hv_vmsd,
	&dtb_vmsd,
	&cap_large_decr_vmsd,
	&cap_ccf_assist_vmsd,
	&cap_fwnmi_vmsd,
	&fwnmi_vmsd,
	&cap_rpt_invalidate_vmsd,
	&cap_ail_mode_3_vmsd,
	&cap_nested_papr_vmsd,
	NULL,
};

_Static_assert(offsetof(spapr_qemu_state_t, base) == 0,
	       "spapr's field descriptions are reused over spapr_qemu_state_t");

const vmstate_desc_t machine_spapr_qemu_vmsd = {
	.name = "spapr",
	.version_id = SPAPR_SECTION_VERSION,
	.minimum_version_id = SPAPR_SECTION_MIN_VERSION,
	.fields = spapr_fields,
	.subsections = spapr_qemu_subs,
};

int machine_spapr_register_qemu(savevm_registry_t *r, spapr_qemu_state_t *s, hm_error_t *err)
{
	return savevm_register_vmstate(r, SPAPR_SECTION_IDSTR, 0, &machine_spapr_qemu_vmsd, s, err);
}

void spapr_qemu_state_release(spapr_qemu_state_t *s)
{
	if (!s)
		return;
	free(s->fdt_blob);
	s->fdt_blob = NULL;
	s->fdt_size = 0;
	s->present &= ~SPAPR_QEMU_DTB;
}
