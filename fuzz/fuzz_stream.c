/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the stream reader (savevm_load_stream_ex over a
 * memory channel): framing, the vmstate engine (spapr, hptmig/verify and a
 * test device using every field kind and nested subsections) and the vmdesc
 * check. It must never crash, leak or hang; when an input loads, saving the
 * loaded state and loading that must give the same state (round trip).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hptmig/machine.h"
#include "hptmig/savevm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct fz_inner {
	uint16_t a;
	int32_t b;
} fz_inner_t;

typedef struct fz_dev {
	uint8_t u8;
	int64_t i64;
	bool flag;
	uint8_t buf[4];
	uint32_t arr[2];
	fz_inner_t ins[2];
	uint32_t magic;
	uint64_t sub_val;
	uint16_t deeper_val;
	bool has_sub, has_deeper; /* set by the subsections' post_load */
} fz_dev_t;

static const vmstate_field_t inner_fields[] = {
	{ VMSTATE_U16(fz_inner_t, a) },
	{ VMSTATE_I32(fz_inner_t, b) },
	{ VMSTATE_END_OF_LIST },
};
static const vmstate_desc_t inner_vmsd = {
	.name = "fz/inner", .version_id = 1, .minimum_version_id = 1, .fields = inner_fields,
};

static bool deeper_needed(void *opaque)
{
	return ((fz_dev_t *)opaque)->has_deeper;
}
static int deeper_post(void *opaque, uint32_t v, hm_error_t *err)
{
	(void)v;
	(void)err;
	((fz_dev_t *)opaque)->has_deeper = true;
	return 0;
}
static const vmstate_field_t deeper_fields[] = {
	{ VMSTATE_U16(fz_dev_t, deeper_val) },
	{ VMSTATE_END_OF_LIST },
};
static const vmstate_desc_t deeper_vmsd = {
	.name = "fz/dev/sub/deeper", .version_id = 2, .minimum_version_id = 1,
	.fields = deeper_fields, .needed = deeper_needed, .post_load = deeper_post,
};
static const vmstate_desc_t *const sub_subs[] = { &deeper_vmsd, NULL };

static bool sub_needed(void *opaque)
{
	return ((fz_dev_t *)opaque)->has_sub;
}
static int sub_post(void *opaque, uint32_t v, hm_error_t *err)
{
	(void)v;
	(void)err;
	((fz_dev_t *)opaque)->has_sub = true;
	return 0;
}
static const vmstate_field_t sub_fields[] = {
	{ VMSTATE_U64(fz_dev_t, sub_val) },
	{ VMSTATE_END_OF_LIST },
};
static const vmstate_desc_t sub_vmsd = {
	.name = "fz/dev/sub", .version_id = 1, .minimum_version_id = 1,
	.fields = sub_fields, .needed = sub_needed, .post_load = sub_post, .subsections = sub_subs,
};
static const vmstate_desc_t *const dev_subs[] = { &sub_vmsd, NULL };

static const vmstate_field_t dev_fields[] = {
	{ VMSTATE_U8(fz_dev_t, u8) },
	{ VMSTATE_I64(fz_dev_t, i64), .version_min = 2 },
	{ VMSTATE_BOOL(fz_dev_t, flag) },
	{ VMSTATE_BUFFER(fz_dev_t, buf), .version_below = 3 },
	{ VMSTATE_U32_ARRAY(fz_dev_t, arr) },
	{ VMSTATE_STRUCT_ARRAY(fz_dev_t, ins, &inner_vmsd) },
	{ VMSTATE_UNUSED(2) },
	{ VMSTATE_U32(fz_dev_t, magic), .flags = VMS_F_EQUAL },
	{ VMSTATE_END_OF_LIST },
};
static const vmstate_desc_t dev_vmsd = {
	.name = "fz/dev", .version_id = 3, .minimum_version_id = 1,
	.fields = dev_fields, .subsections = dev_subs,
};

/* A load-only live section: START/PART/END payload = u8 n, n bytes. */
static int live_load(void *opaque, mig_file_t *f, uint32_t v, int type)
{
	(void)opaque;
	(void)v;
	(void)type;
	uint8_t n = mig_file_get_u8(f);
	return mig_file_skip(f, n);
}
static const savevm_live_ops_t live_ops = { .load = live_load };

struct state {
	savevm_registry_t *r;
	spapr_qemu_state_t spapr; /* with QEMU's subsections: variable-length dtb too */
	savevm_verify_t verify;
	fz_dev_t dev;
};

static int state_init(struct state *s)
{
	memset(s, 0, sizeof(*s));
	s->dev.magic = 0x600df00d;
	if (savevm_registry_new(&s->r) != 0)
		return -1;
	if (savevm_register_live(s->r, "fz/live", 0, 2, 1, &live_ops, NULL, NULL) != 0 ||
	    machine_spapr_register_qemu(s->r, &s->spapr, NULL) != 0 ||
	    savevm_register_verify(s->r, &s->verify, NULL) != 0 ||
	    savevm_register_vmstate(s->r, "fz/dev", 0, &dev_vmsd, &s->dev, NULL) != 0) {
		savevm_registry_free(s->r);
		return -1;
	}
	return 0;
}

static int load(struct state *s, const uint8_t *data, size_t size, hm_error_t *e)
{
	mig_file_t *f;
	if (mig_file_open_mem_reader(data, size, &f) != 0)
		return -1;
	savevm_load_opts_t o = { .require_end = true, .allow_incomplete = true };
	savevm_load_info_t info;
	hm_error_clear(e);
	int rc = savevm_load_stream_ex(f, s->r, &o, &info, e);
	/* Contract: a failure always carries a code and an offset inside the input. */
	if (rc != 0 && (e->code != rc || e->offset < 0 || (uint64_t)e->offset > size))
		abort();
	mig_file_close(f, NULL);
	return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct state a;
	if (state_init(&a) != 0)
		return 0;
	/* From here on a.spapr may own an fdt_blob: every path releases it. */
	hm_error_t e;
	if (load(&a, data, size, &e) == 0) {
		/* Round trip: what loaded, saved and loaded again, is the same. */
		mig_file_t *w;
		savevm_section_set_enabled(a.r, "fz/live", 0, false);
		if (!a.verify.loaded) /* zeros are not a valid verify payload */
			savevm_section_set_enabled(a.r, VERIFY_SECTION_IDSTR, 0, false);
		if (mig_file_open_mem_writer(0, &w) == 0) {
			if (savevm_save_all(a.r, w, "fz", &e) == 0) {
				size_t len;
				const uint8_t *p = mig_file_mem_data(w, &len);
				struct state b;
				if (state_init(&b) == 0) {
					if (load(&b, p, len, &e) != 0)
						abort();
					/* Saved at the current version: v1/v2-only fields are not sent. */
					if (a.spapr.base.guest_timebase != b.spapr.base.guest_timebase ||
					    a.spapr.base.time_of_the_day_ns != b.spapr.base.time_of_the_day_ns ||
					    a.spapr.present != b.spapr.present ||
					    a.spapr.fdt_size != b.spapr.fdt_size ||
					    (a.spapr.fdt_size &&
					     memcmp(a.spapr.fdt_blob, b.spapr.fdt_blob, a.spapr.fdt_size) != 0) ||
					    memcmp(a.spapr.caps, b.spapr.caps, sizeof(a.spapr.caps)) != 0 ||
					    a.dev.u8 != b.dev.u8 || a.dev.flag != b.dev.flag ||
					    memcmp(a.dev.arr, b.dev.arr, sizeof(a.dev.arr)) != 0 ||
					    a.dev.sub_val != b.dev.sub_val ||
					    a.dev.has_sub != b.dev.has_sub ||
					    a.dev.deeper_val != b.dev.deeper_val ||
					    a.verify.htab_shift != b.verify.htab_shift ||
					    a.verify.valid != b.verify.valid ||
					    (a.verify.version >= 2 &&
					     memcmp(a.verify.root, b.verify.root, HM_SHA256_LEN) != 0))
						abort();
					savevm_registry_free(b.r);
					spapr_qemu_state_release(&b.spapr);
				}
			}
			mig_file_close(w, NULL);
		}
	}
	savevm_registry_free(a.r);
	spapr_qemu_state_release(&a.spapr);
	return 0;
}
