/* SPDX-License-Identifier: MIT */
/*
 * The worked example of docs/stream.md ("adding a section"), compiled and
 * checked: the FULL record bytes the text shows, the subsection only when
 * needed, the defaults of pre_load, v1 loads and the post_load refusal.
 * If this test changes, the document must change with it.
 */
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "hptmig/savevm.h"

/* ---- begin: copied from docs/stream.md §7 ---- */
typedef struct xics_state {
	uint32_t mask;
	uint64_t pending;
	uint8_t prio[16];
} xics_state_t;

static bool prio_needed(void *opaque)
{
	const xics_state_t *x = opaque;
	for (int i = 0; i < 16; i++)
		if (x->prio[i] != 0xff)
			return true;
	return false;
}

/* On the parent: a subsection's hooks run only when it is on the wire. */
static int xics_pre_load(void *opaque, hm_error_t *err)
{
	(void)err;
	memset(((xics_state_t *)opaque)->prio, 0xff, 16);  /* default if absent */
	return 0;
}

static const vmstate_field_t prio_fields[] = {
	{ VMSTATE_BUFFER(xics_state_t, prio) },
	{ VMSTATE_END_OF_LIST },
};
static const vmstate_desc_t prio_vmsd = {
	.name = "xics/prio",             /* must start with the parent's name */
	.version_id = 1, .minimum_version_id = 1,
	.fields = prio_fields, .needed = prio_needed,
};
static const vmstate_desc_t *const xics_subs[] = { &prio_vmsd, NULL };

static int xics_post_load(void *opaque, uint32_t version, hm_error_t *err)
{
	xics_state_t *x = opaque;
	if (version < 2)
		x->pending = 0;                  /* not on the wire before v2 */
	if (x->mask & 0xffff0000u)
		return hm_error_set(err, HM_E_RANGE, -1,
				    "field 'xics.mask': value %#x has reserved bits", x->mask);
	return 0;
}

static const vmstate_field_t xics_fields[] = {
	{ VMSTATE_U32(xics_state_t, mask) },
	{ VMSTATE_U64(xics_state_t, pending), .version_min = 2 },
	{ VMSTATE_END_OF_LIST },
};
static const vmstate_desc_t xics_vmsd = {
	.name = "xics", .version_id = 2, .minimum_version_id = 1,
	.fields = xics_fields, .subsections = xics_subs,
	.pre_load = xics_pre_load, .post_load = xics_post_load,
};
/* ---- end of the copy ---- */

static uint8_t *save(xics_state_t *x, size_t *len)
{
	savevm_registry_t *r;
	assert_int_equal(savevm_registry_new(&r), 0);
	hm_error_t e;
	hm_error_clear(&e);
	assert_int_equal(savevm_register_vmstate(r, "xics", 0, &xics_vmsd, x, &e), 0);
	mig_file_t *f;
	assert_int_equal(mig_file_open_mem_writer(0, &f), 0);
	assert_int_equal(savevm_save_all(r, f, NULL, &e), 0);
	uint8_t *d;
	assert_int_equal(mig_file_mem_take(f, &d, len), 0);
	mig_file_close(f, NULL);
	savevm_registry_free(r);
	return d;
}

static int load(xics_state_t *x, const uint8_t *d, size_t len, hm_error_t *e)
{
	savevm_registry_t *r;
	assert_int_equal(savevm_registry_new(&r), 0);
	hm_error_clear(e);
	assert_int_equal(savevm_register_vmstate(r, "xics", 0, &xics_vmsd, x, e), 0);
	mig_file_t *f;
	assert_int_equal(mig_file_open_mem_reader(d, len, &f), 0);
	int rc = savevm_load_stream(f, r, e);
	mig_file_close(f, NULL);
	savevm_registry_free(r);
	return rc;
}

static void test_example(void **state)
{
	(void)state;
	xics_state_t x = { .mask = 0x1234, .pending = 0x55 };
	memset(x.prio, 0xff, 16);
	x.prio[3] = 5;
	size_t len;
	uint8_t *d = save(&x, &len);
	/* magic, version, then the FULL record the document shows (the
	 * first section registered has id 1: ids never start at 0) */
	static const uint8_t rec[] = {
		0x04, 0, 0, 0, 1, 4, 'x', 'i', 'c', 's', 0, 0, 0, 0, 0, 0, 0, 2,
		0, 0, 0x12, 0x34, 0, 0, 0, 0, 0, 0, 0, 0x55,
		0x05, 9, 'x', 'i', 'c', 's', '/', 'p', 'r', 'i', 'o', 0, 0, 0, 1,
	};
	assert_memory_equal(d + 8, rec, sizeof(rec));
	assert_memory_equal(d + 8 + sizeof(rec), x.prio, 16);
	static const uint8_t tail[] = { 0x7e, 0, 0, 0, 1, 0x00 };
	assert_memory_equal(d + 8 + sizeof(rec) + 16, tail, sizeof(tail));

	xics_state_t y;
	memset(&y, 0, sizeof(y));
	hm_error_t e;
	assert_int_equal(load(&y, d, len, &e), 0);
	assert_int_equal(y.mask, 0x1234);
	assert_int_equal(y.pending, 0x55);
	assert_memory_equal(y.prio, x.prio, 16);
	free(d);

	/* Default priorities: no subsection; the loader's pre_load default applies. */
	memset(x.prio, 0xff, 16);
	d = save(&x, &len);
	assert_null(memmem(d, len, "xics/prio", 9));
	memset(&y, 0, sizeof(y));
	assert_int_equal(load(&y, d, len, &e), 0);
	assert_memory_equal(y.prio, x.prio, 16);

	/* Reserved mask bits are refused with the field named. */
	x.mask = 0x10000;
	free(d);
	d = save(&x, &len);
	assert_int_equal(load(&y, d, len, &e), HM_E_RANGE);
	assert_non_null(strstr(e.msg, "xics.mask"));
	free(d);

	/* A version 1 record (no pending) loads, pending becomes 0. */
	static const uint8_t v1[] = {
		'Q', 'E', 'V', 'M', 0, 0, 0, 3,
		0x04, 0, 0, 0, 9, 4, 'x', 'i', 'c', 's', 0, 0, 0, 0, 0, 0, 0, 1,
		0, 0, 0, 7, 0x7e, 0, 0, 0, 9, 0x00,
	};
	y.pending = 99;
	assert_int_equal(load(&y, v1, sizeof(v1), &e), 0);
	assert_int_equal(y.mask, 7);
	assert_int_equal(y.pending, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_example),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
