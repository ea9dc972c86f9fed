/* SPDX-License-Identifier: MIT */
/*
 * Stream framing: a small stream written by the engine (live toy section,
 * spapr, hptmig/verify) matches hand-checked bytes and loads back; the
 * error vectors of the issue each fail with their HM_E_* code at the right
 * offset; every truncation fails cleanly; registry, rate limit, hooks.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "testutil.h"
#include "hptmig/machine.h"
#include "hptmig/savevm.h"
#include "hptmig/hpt.h"

/* ------------------------------------------------------------ toy section */

struct toy {
	uint32_t iter_calls;
	int setup_calls, complete_calls, cleanup_calls;
	uint64_t pending;
	int types[16];
	int ntypes;
	uint32_t part_values[16];
	int fail_load;
};

static int toy_setup(void *opaque, mig_file_t *f)
{
	((struct toy *)opaque)->setup_calls++;
	mig_file_put_be32(f, 0xa0a0a0a0);
	return 0;
}

static int toy_iterate(void *opaque, mig_file_t *f, uint64_t budget_ns)
{
	(void)budget_ns;
	struct toy *t = opaque;
	mig_file_put_be32(f, t->iter_calls++);
	return t->iter_calls >= 2 ? 1 : 0;
}

static uint64_t toy_pending(void *opaque)
{
	return ((struct toy *)opaque)->pending;
}

static int toy_complete(void *opaque, mig_file_t *f)
{
	((struct toy *)opaque)->complete_calls++;
	mig_file_put_be32(f, 0xe0e0e0e0);
	return 0;
}

static int toy_load(void *opaque, mig_file_t *f, uint32_t version, int type)
{
	struct toy *t = opaque;
	(void)version;
	uint32_t v = mig_file_get_be32(f);
	if (t->ntypes < 16) {
		t->part_values[t->ntypes] = v;
		t->types[t->ntypes++] = type;
	}
	if (t->fail_load)
		return mig_file_set_error(f, HM_E_RANGE, "toy value %#x refused", v);
	if (type == QEMU_VM_SECTION_START && v != 0xa0a0a0a0)
		return mig_file_set_error(f, HM_E_FORMAT, "toy START value %#x", v);
	return 0;
}

static void toy_cleanup(void *opaque)
{
	((struct toy *)opaque)->cleanup_calls++;
}

static const savevm_live_ops_t toy_ops = {
	.setup = toy_setup,
	.iterate = toy_iterate,
	.pending = toy_pending,
	.complete = toy_complete,
	.load = toy_load,
	.cleanup = toy_cleanup,
};

/* ------------------------------------------------------------ fixtures */

struct side {
	savevm_registry_t *r;
	struct toy toy;
	spapr_state_t spapr;
	savevm_verify_t verify;
};

static void side_init(struct side *s, bool with_toy)
{
	memset(s, 0, sizeof(*s));
	hm_error_t e;
	hm_error_clear(&e);
	assert_int_equal(savevm_registry_new(&s->r), 0);
	if (with_toy)
		assert_int_equal(savevm_register_live(s->r, "toy", 0, 1, 1, &toy_ops, &s->toy, &e), 0);
	assert_int_equal(machine_spapr_register(s->r, &s->spapr, &e), 0);
	assert_int_equal(savevm_register_verify(s->r, &s->verify, &e), 0);
}

/* The golden stream, written through the migration controller's calls. */
static uint8_t *write_golden(size_t *len)
{
	struct side s;
	side_init(&s, true);
	s.spapr.guest_timebase = 0x0102030405060708ull;
	s.spapr.time_of_the_day_ns = -2;
	s.verify.htab_shift = 18;
	s.verify.valid = 3;
	for (int i = 0; i < HM_SHA256_LEN; i++)
		s.verify.root[i] = (uint8_t)i;
	mig_file_t *f;
	assert_int_equal(mig_file_open_mem_writer(0, &f), 0);
	hm_error_t e;
	hm_error_clear(&e);
	assert_int_equal(savevm_write_header(s.r, f, "pseries-x", &e), 0);
	assert_int_equal(savevm_live_setup_all(s.r, f, &e), 0);
	assert_int_equal(savevm_live_iterate(s.r, f, 1000000, &e), 0); /* toy: more to do */
	assert_int_equal(savevm_write_command_switchover(f, &e), 0);
	assert_int_equal(savevm_live_complete_all(s.r, f, &e), 0);
	assert_int_equal(savevm_write_full_all(s.r, f, &e), 0);
	assert_int_equal(savevm_write_eof_and_vmdesc(s.r, f, &e), 0);
	savevm_live_cleanup_all(s.r);
	assert_int_equal(s.toy.setup_calls, 1);
	assert_int_equal(s.toy.complete_calls, 1);
	assert_int_equal(s.toy.cleanup_calls, 1);
	uint8_t *d;
	assert_int_equal(mig_file_mem_take(f, &d, len), 0);
	mig_file_close(f, NULL);
	savevm_registry_free(s.r);
	return d;
}

/* Hand-checked bytes of the golden stream up to and including EOF. */
static const uint8_t golden_head[] = {
	'Q', 'E', 'V', 'M', 0, 0, 0, 3,                                    /* 0: magic, version */
	0x07, 0, 0, 0, 9, 'p', 's', 'e', 'r', 'i', 'e', 's', '-', 'x',      /* 8: configuration */
	0x01, 0, 0, 0, 0, 3, 't', 'o', 'y', 0, 0, 0, 0, 0, 0, 0, 1,         /* 22: START id 0 */
	0xa0, 0xa0, 0xa0, 0xa0,                                            /* 39: payload */
	0x7e, 0, 0, 0, 0,                                                  /* 43: footer */
	0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0x7e, 0, 0, 0, 0,                     /* 48: PART, 0, footer */
	0x08, 0, 11, 0, 0,                                                 /* 62: COMMAND 11 */
	0x03, 0, 0, 0, 0, 0xe0, 0xe0, 0xe0, 0xe0, 0x7e, 0, 0, 0, 0,         /* 67: END */
	0x04, 0, 0, 0, 1, 5, 's', 'p', 'a', 'p', 'r', 0, 0, 0, 0, 0, 0, 0, 3, /* 81: FULL spapr */
	1, 2, 3, 4, 5, 6, 7, 8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe, /* 100: tb */
	0x7e, 0, 0, 0, 1,                                                  /* 116: footer */
	0x04, 0, 0, 0, 2, 13, 'h', 'p', 't', 'm', 'i', 'g', '/', 'v', 'e', 'r', 'i', 'f', 'y',
	0, 0, 0, 0, 0, 0, 0, 2,                                            /* 121: FULL verify v2 */
	0, 0, 0, 18, 0, 0, 0, 0, 0, 0, 0, 3,                               /* 148: shift, valid */
	0, 0, 0x10, 0,                                                     /* 160: slots/block */
	0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23,
	24, 25, 26, 27, 28, 29, 30, 31,                                    /* 164: root */
	0x7e, 0, 0, 0, 2,                                                  /* 196: footer */
	0x00,                                                              /* 201: EOF */
};
#define EOF_OFF 201
#define VERIFY_FOOTER_OFF 196

/*
 * The same stream as the version 1 sender wrote it (hptmig/verify v1:
 * shift, valid, 32-byte digest), up to and including EOF: still loads.
 */
static const uint8_t golden_v1_head[] = {
	'Q', 'E', 'V', 'M', 0, 0, 0, 3,
	0x07, 0, 0, 0, 9, 'p', 's', 'e', 'r', 'i', 'e', 's', '-', 'x',
	0x01, 0, 0, 0, 0, 3, 't', 'o', 'y', 0, 0, 0, 0, 0, 0, 0, 1,
	0xa0, 0xa0, 0xa0, 0xa0,
	0x7e, 0, 0, 0, 0,
	0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0x7e, 0, 0, 0, 0,
	0x08, 0, 11, 0, 0,
	0x03, 0, 0, 0, 0, 0xe0, 0xe0, 0xe0, 0xe0, 0x7e, 0, 0, 0, 0,
	0x04, 0, 0, 0, 1, 5, 's', 'p', 'a', 'p', 'r', 0, 0, 0, 0, 0, 0, 0, 3,
	1, 2, 3, 4, 5, 6, 7, 8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe,
	0x7e, 0, 0, 0, 1,
	0x04, 0, 0, 0, 2, 13, 'h', 'p', 't', 'm', 'i', 'g', '/', 'v', 'e', 'r', 'i', 'f', 'y',
	0, 0, 0, 0, 0, 0, 0, 1,                                            /* 121: FULL verify v1 */
	0, 0, 0, 18, 0, 0, 0, 0, 0, 0, 0, 3,                               /* 148: shift, valid */
	0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23,
	24, 25, 26, 27, 28, 29, 30, 31,                                    /* 160: digest */
	0x7e, 0, 0, 0, 2,                                                  /* 192: footer */
	0x00,                                                              /* 197: EOF */
};

static const char golden_vmdesc[] =
	"{\"configuration\": {\"vmsd_name\": \"configuration\", \"version\": 1, \"fields\": "
	"[{\"name\": \"len\", \"type\": \"uint32\", \"size\": 4}, {\"name\": \"name\", \"type\": "
	"\"buffer\", \"size\": 9}]}, \"page_size\": 4096, \"devices\": [{\"name\": \"spapr\", "
	"\"instance_id\": 0, \"vmsd_name\": \"spapr\", \"version\": 3, \"fields\": [{\"name\": "
	"\"tb\", \"type\": \"struct\", \"struct\": {\"vmsd_name\": \"timebase\", \"version\": 1, "
	"\"fields\": [{\"name\": \"guest_timebase\", \"type\": \"uint64\", \"size\": 8}, "
	"{\"name\": \"time_of_the_day_ns\", \"type\": \"int64\", \"size\": 8}]}, \"size\": "
	"16}]}, {\"name\": \"hptmig/verify\", \"instance_id\": 0, \"vmsd_name\": "
	"\"hptmig/verify\", \"version\": 2, \"fields\": [{\"name\": \"htab_shift\", \"type\": "
	"\"uint32\", \"size\": 4}, {\"name\": \"valid\", \"type\": \"uint64\", \"size\": 8}, "
	"{\"name\": \"slots_per_block\", \"type\": \"uint32 equal\", \"size\": 4}, "
	"{\"name\": \"root\", \"type\": \"buffer\", \"size\": 32}]}]}";

static void test_golden_stream(void **state)
{
	(void)state;
	size_t len;
	uint8_t *d = write_golden(&len);
	assert_true(len > sizeof(golden_head) + 5);
	assert_memory_equal(d, golden_head, sizeof(golden_head));
	assert_int_equal(d[EOF_OFF + 1], QEMU_VM_VMDESCRIPTION);
	uint32_t jl = hm_load_be32(d + EOF_OFF + 2);
	assert_int_equal(jl, strlen(golden_vmdesc));
	assert_int_equal(len, EOF_OFF + 6 + jl);
	assert_memory_equal(d + EOF_OFF + 6, golden_vmdesc, jl);
	free(d);
}

static int load_buf(struct side *s, const uint8_t *d, size_t len, const savevm_load_opts_t *o,
		    savevm_load_info_t *info, hm_error_t *e)
{
	mig_file_t *f;
	assert_int_equal(mig_file_open_mem_reader(d, len, &f), 0);
	hm_error_clear(e);
	int rc = savevm_load_stream_ex(f, s->r, o, info, e);
	assert_int_equal(rc, e->code);
	mig_file_close(f, NULL);
	return rc;
}

static void test_load_golden(void **state)
{
	(void)state;
	size_t len;
	uint8_t *d = write_golden(&len);
	struct side s;
	side_init(&s, true);
	savevm_load_info_t info;
	hm_error_t e;
	savevm_load_opts_t o = { .require_end = true };
	assert_int_equal(load_buf(&s, d, len, &o, &info, &e), 0);
	assert_int_equal(s.toy.ntypes, 3);
	assert_int_equal(s.toy.types[0], QEMU_VM_SECTION_START);
	assert_int_equal(s.toy.types[1], QEMU_VM_SECTION_PART);
	assert_int_equal(s.toy.types[2], QEMU_VM_SECTION_END);
	assert_int_equal(s.toy.part_values[2], 0xe0e0e0e0);
	assert_int_equal(s.spapr.guest_timebase, 0x0102030405060708ull);
	assert_int_equal(s.spapr.time_of_the_day_ns, -2);
	assert_true(s.verify.loaded);
	assert_int_equal(s.verify.htab_shift, 18);
	assert_int_equal(s.verify.valid, 3);
	assert_string_equal(info.machine, "pseries-x");
	assert_true(info.has_configuration);
	assert_true(info.switchover_seen);
	assert_true(info.has_vmdesc);
	assert_int_equal(info.records, 7);
	assert_int_equal(info.sections, 3);
	assert_int_equal(info.eof_offset, EOF_OFF);
	assert_int_equal(info.end_offset, len);

	/* verify_check (version 2: the root): equal passes, any difference
	 * is HM_E_DIGEST, a root not computed HM_E_STATE. */
	assert_int_equal(s.verify.version, 2);
	assert_int_equal(s.verify.slots_per_block, 4096);
	uint8_t dg[HM_SHA256_LEN];
	for (int i = 0; i < HM_SHA256_LEN; i++)
		dg[i] = (uint8_t)i;
	assert_int_equal(savevm_verify_check(&s.verify, 18, 3, NULL, dg, &e), 0);
	hm_error_clear(&e);
	assert_int_equal(savevm_verify_check(&s.verify, 18, 3, dg, NULL, &e), HM_E_STATE);
	dg[5] ^= 1;
	hm_error_clear(&e);
	assert_int_equal(savevm_verify_check(&s.verify, 18, 3, NULL, dg, &e), HM_E_DIGEST);
	assert_non_null(strstr(e.msg, "root"));
	savevm_verify_t never = { 0 };
	hm_error_clear(&e);
	assert_int_equal(savevm_verify_check(&never, 18, 3, dg, dg, &e), HM_E_STATE);

	/* The stream may end at EOF: no vmdesc is fine. */
	savevm_registry_free(s.r);
	side_init(&s, true);
	assert_int_equal(load_buf(&s, d, EOF_OFF + 1, NULL, &info, &e), 0);
	assert_false(info.has_vmdesc);
	savevm_registry_free(s.r);
	free(d);
}

/* SHA-256(be32 0xffffffff): the "no HPT" digest and root (wire-format §5). */
static const uint8_t no_hpt_root[32] = {
	0xad, 0x95, 0x13, 0x1b, 0xc0, 0xb7, 0x99, 0xc0, 0xb1, 0xaf, 0x47,
	0x7f, 0xb1, 0x4f, 0xcf, 0x26, 0xa6, 0xa9, 0xf7, 0x60, 0x79, 0xe4,
	0x8b, 0xf0, 0x90, 0xac, 0xb7, 0xe8, 0x36, 0x7b, 0xfd, 0x0e};

/*
 * hptmig/verify across versions: a version 1 stream still loads and is
 * checked by its digest; a version 2 "no HPT" section carries the
 * constant root; a version 2 root that differs is refused by the check,
 * naming the root.
 */
static void test_verify_versions(void **state)
{
	(void)state;
	struct side s;
	hm_error_t e;
	savevm_load_info_t info;
	uint8_t v[HM_SHA256_LEN];
	for (int i = 0; i < HM_SHA256_LEN; i++)
		v[i] = (uint8_t)i;

	/* Version 1 (as the previous sender wrote it), ending at EOF. */
	side_init(&s, true);
	assert_int_equal(load_buf(&s, golden_v1_head, sizeof(golden_v1_head), NULL, &info, &e), 0);
	assert_true(s.verify.loaded);
	assert_int_equal(s.verify.version, 1);
	assert_int_equal(s.verify.htab_shift, 18);
	assert_int_equal(s.verify.valid, 3);
	assert_memory_equal(s.verify.digest, v, HM_SHA256_LEN);
	assert_int_equal(savevm_verify_check(&s.verify, 18, 3, v, NULL, &e), 0);
	hm_error_clear(&e);
	assert_int_equal(savevm_verify_check(&s.verify, 18, 3, NULL, v, &e), HM_E_STATE);
	v[31] ^= 0x80;
	hm_error_clear(&e);
	assert_int_equal(savevm_verify_check(&s.verify, 18, 3, v, NULL, &e), HM_E_DIGEST);
	assert_non_null(strstr(e.msg, "version 1"));
	assert_non_null(strstr(e.msg, "digest"));
	v[31] ^= 0x80;
	savevm_registry_free(s.r);

	/* Version 2, "no HPT": shift 0xffffffff, 0 valid, the constant root. */
	size_t len;
	uint8_t *d = write_golden(&len);
	memcpy(d + 148, (const uint8_t[]){0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0}, 12);
	memcpy(d + 164, no_hpt_root, 32);
	side_init(&s, true);
	assert_int_equal(load_buf(&s, d, EOF_OFF + 1, NULL, &info, &e), 0);
	assert_int_equal(s.verify.version, 2);
	assert_int_equal(s.verify.htab_shift, HTAB_HDR_NO_HPT);
	uint8_t none[HM_SHA256_LEN];
	hpt_root_none(none);
	assert_memory_equal(none, no_hpt_root, 32);
	assert_int_equal(savevm_verify_check(&s.verify, HTAB_HDR_NO_HPT, 0, NULL, none, &e), 0);
	savevm_registry_free(s.r);
	/* ... and with one entry claimed it is refused at load. */
	d[159] = 1;
	side_init(&s, true);
	assert_int_equal(load_buf(&s, d, EOF_OFF + 1, NULL, &info, &e), HM_E_RANGE);
	assert_non_null(strstr(e.msg, "no HPT"));
	savevm_registry_free(s.r);
	free(d);

	/* Version 2 with one bit of the root flipped: loads (it is only a
	 * claim), and the destination's check refuses it by the root. */
	d = write_golden(&len);
	d[164 + 7] ^= 0x10;
	side_init(&s, true);
	assert_int_equal(load_buf(&s, d, len, NULL, &info, &e), 0);
	hm_error_clear(&e);
	assert_int_equal(savevm_verify_check(&s.verify, 18, 3, NULL, v, &e), HM_E_DIGEST);
	assert_non_null(strstr(e.msg, "version 2"));
	assert_non_null(strstr(e.msg, "root"));
	savevm_registry_free(s.r);
	free(d);
}

/* The fd path of the reader: the golden stream through a pipe. */
static void test_load_from_pipe(void **state)
{
	(void)state;
	size_t len;
	uint8_t *d = write_golden(&len);
	int p[2];
	assert_int_equal(pipe(p), 0);
	assert_true(len < 65536);
	assert_int_equal(write(p[1], d, len), (ssize_t)len);
	close(p[1]);
	struct side s;
	side_init(&s, true);
	mig_file_t *f;
	assert_int_equal(mig_file_open_fd(p[0], MIG_FILE_READ, MIG_FILE_OWN_FD, &f), 0);
	hm_error_t e;
	hm_error_clear(&e);
	assert_int_equal(savevm_load_stream(f, s.r, &e), 0);
	assert_true(s.verify.loaded);
	mig_file_close(f, NULL);
	savevm_registry_free(s.r);
	free(d);
}

struct vector {
	const char *name;
	size_t at;        /* byte to change, or start of the cut */
	int value;        /* new byte value, or -1: cut `cut` bytes at `at` */
	size_t cut;
	int code;
	int64_t offset;   /* expected error offset, -1: do not check */
	const char *needle;
};

static const struct vector vectors[] = {
	{ "bad magic", 0, 'X', 0, HM_E_MAGIC, 0, "magic" },
	{ "version 2", 7, 2, 0, HM_E_VERSION, 4, "obsolete" },
	{ "version 4", 7, 4, 0, HM_E_VERSION, 4, "version 4" },
	{ "unknown section", 28, 'x', 0, HM_E_UNKNOWN, 22, "'xoy'" },
	{ "version too new", 99, 4, 0, HM_E_VERSION, 81, "newer" },
	{ "version too old", 99, 0, 0, HM_E_VERSION, 81, "older" },
	{ "footer with wrong id", 47, 9, 0, HM_E_FOOTER, 43, "footer names section id 9" },
	{ "missing footer", 43, -1, 5, HM_E_FOOTER, 43, "expected footer" },
	{ "unknown type byte", 62, 0x09, 0, HM_E_UNKNOWN, 62, "record type 0x09" },
	{ "unknown command", 64, 2, 0, HM_E_UNKNOWN, 62, "COMMAND 2" },
	{ "command with data", 66, 1, 0, HM_E_FORMAT, -1, "SWITCHOVER_START" },
	{ "part names unknown id", 52, 7, 0, HM_E_FORMAT, 48, "section id 7" },
	{ "missing END", 67, -1, 14, HM_E_FORMAT, EOF_OFF - 14, "no SECTION_END" },
	{ "part payload short", 53, -1, 1, HM_E_FOOTER, 57, "expected footer" },
	{ "toy payload bad", 40, 0x11, 0, HM_E_FORMAT, 43, "toy START value" },
	{ "subsection at top level", 62, 0x05, 0, HM_E_FORMAT, 62, "SUBSECTION" },
	{ "footer at top level", 62, 0x7e, 0, HM_E_FOOTER, 62, "outside" },
	{ "verify shift out of range", 151, 50, 0, HM_E_RANGE, -1, "htab_shift" },
	{ "verify v2 slots per block", 162, 0x08, 0, HM_E_FORMAT, 160, "slots_per_block" },
	{ "verify v2 slots per block 0", 162, 0, 0, HM_E_FORMAT, 160, "0x1000" },
	{ "verify v2 payload short", 170, -1, 1, HM_E_FOOTER, VERIFY_FOOTER_OFF, "expected footer" },
	{ "verify version 3", 147, 3, 0, HM_E_VERSION, 121, "newer" },
	{ "verify version 0", 147, 0, 0, HM_E_VERSION, 121, "older" },
	{ "bad vmdesc json", EOF_OFF + 6, '[', 0, HM_E_FORMAT, -1, "not valid JSON" },
	{ "garbage after EOF", EOF_OFF + 1, 0x33, 0, HM_E_FORMAT, EOF_OFF + 1, "after EOF" },
	{ "vmdesc too long", EOF_OFF + 2, 0x7f, 0, HM_E_RANGE, EOF_OFF + 2, "VMDESCRIPTION" },
	{ "config name too long", 11, 0xff, 0, HM_E_RANGE, 9, "machine name" },
};

static void test_error_vectors(void **state)
{
	(void)state;
	size_t len;
	uint8_t *d = write_golden(&len);
	uint8_t *m = malloc(len);
	for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
		const struct vector *v = &vectors[i];
		size_t mlen = len;
		memcpy(m, d, len);
		if (v->value >= 0) {
			m[v->at] = (uint8_t)v->value;
		} else {
			memmove(m + v->at, m + v->at + v->cut, len - v->at - v->cut);
			mlen -= v->cut;
		}
		struct side s;
		side_init(&s, true);
		hm_error_t e;
		savevm_load_opts_t o = { .require_end = true };
		int rc = load_buf(&s, m, mlen, &o, NULL, &e);
		print_message("%-26s -> %s: %s (offset %lld)\n", v->name, hm_err_name(rc), e.msg,
			      (long long)e.offset);
		tu_assert_err(&e, v->code);
		if (v->offset >= 0)
			assert_int_equal(e.offset, v->offset);
		assert_non_null(strstr(e.msg, v->needle));
		savevm_registry_free(s.r);
	}
	/* A trailing byte after the vmdesc, with require_end. */
	uint8_t *t = malloc(len + 1);
	memcpy(t, d, len);
	t[len] = 0;
	struct side s;
	side_init(&s, true);
	hm_error_t e;
	savevm_load_opts_t o = { .require_end = true };
	assert_int_equal(load_buf(&s, t, len + 1, &o, NULL, &e), HM_E_FORMAT);
	assert_int_equal(e.offset, len);
	savevm_registry_free(s.r);
	/* A load handler's own error carries the section in front. */
	side_init(&s, true);
	s.toy.fail_load = 1;
	assert_int_equal(load_buf(&s, d, len, NULL, NULL, &e), HM_E_RANGE);
	assert_non_null(strstr(e.msg, "section 'toy' instance 0 version 1 (SECTION_START at offset 22)"));
	assert_non_null(strstr(e.msg, "toy value 0xa0a0a0a0 refused"));
	savevm_registry_free(s.r);
	free(t);
	free(m);
	free(d);
}

/* Sections introduced twice, or two sections on one id, are refused. */
static void test_duplicate_ids(void **state)
{
	(void)state;
	size_t len;
	uint8_t *d = write_golden(&len);
	/* Give verify (FULL at 121) the id of spapr (1): both its id and footer. */
	d[125] = 1;
	d[VERIFY_FOOTER_OFF + 4] = 1;
	struct side s;
	side_init(&s, true);
	hm_error_t e;
	assert_int_equal(load_buf(&s, d, len, NULL, NULL, &e), HM_E_FORMAT);
	assert_non_null(strstr(e.msg, "already used"));
	assert_int_equal(e.offset, 121);
	savevm_registry_free(s.r);
	/* Duplicate registration is refused too. */
	side_init(&s, true);
	hm_error_clear(&e);
	spapr_state_t sp;
	assert_int_equal(machine_spapr_register(s.r, &sp, &e), -EEXIST);
	savevm_registry_free(s.r);
	free(d);
}

/* Every prefix of a valid stream fails cleanly at an offset inside it. */
static void test_truncated_everywhere(void **state)
{
	(void)state;
	size_t len;
	uint8_t *d = write_golden(&len);
	for (size_t n = 0; n < len; n++) {
		uint8_t *cut = malloc(n ? n : 1); /* exact size: ASan sees any overread */
		memcpy(cut, d, n);
		struct side s;
		side_init(&s, true);
		hm_error_t e;
		int rc = load_buf(&s, cut, n, NULL, NULL, &e);
		if (n == EOF_OFF + 1) {
			assert_int_equal(rc, 0); /* ends at EOF: valid */
		} else {
			if (rc == 0)
				print_error("prefix of %zu bytes loaded\n", n);
			assert_true(rc < 0);
			assert_true(e.offset >= 0 && (uint64_t)e.offset <= n);
			assert_true(e.msg[0] != '\0');
		}
		savevm_registry_free(s.r);
		free(cut);
	}
	free(d);
}

/*
 * One route for errors: what savevm_load_stream_ex reports is the channel's
 * own error, context and all (section name, field path), for every prefix
 * of the golden stream and for a handler's refusal. Before the route was
 * unified the channel kept the bare message and only err had the context.
 */
static void test_channel_error_is_reported(void **state)
{
	(void)state;
	size_t len;
	uint8_t *d = write_golden(&len);
	for (size_t n = 0; n <= len; n++) {
		struct side s;
		side_init(&s, true);
		s.toy.fail_load = n == len;
		mig_file_t *f;
		assert_int_equal(mig_file_open_mem_reader(d, n, &f), 0);
		hm_error_t e;
		hm_error_clear(&e);
		int rc = savevm_load_stream_ex(f, s.r, NULL, NULL, &e);
		const hm_error_t *ce = mig_file_error(f);
		if (rc == 0) {
			assert_null(ce);
		} else {
			assert_non_null(ce);
			if (strcmp(ce->msg, e.msg) != 0)
				print_error("prefix %zu: channel '%s' vs reported '%s'\n", n, ce->msg,
					    e.msg);
			assert_int_equal(ce->code, e.code);
			assert_int_equal(ce->offset, e.offset);
			assert_string_equal(ce->msg, e.msg);
		}
		if (n == len)
			assert_non_null(strstr(ce->msg, "section 'toy' instance 0 version 1"));
		mig_file_close(f, NULL);
		savevm_registry_free(s.r);
	}
	free(d);

	/* The writer's own errors (not a handler's) take the same route: a
	 * machine name too long is the channel's error too, as reported. */
	struct side s;
	side_init(&s, true);
	char name[SAVEVM_MACHINE_MAX + 2];
	memset(name, 'm', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	mig_file_t *f;
	assert_int_equal(mig_file_open_mem_writer(0, &f), 0);
	hm_error_t e;
	hm_error_clear(&e);
	assert_int_equal(savevm_write_header(s.r, f, name, &e), -EINVAL);
	const hm_error_t *ce = mig_file_error(f);
	assert_non_null(ce);
	assert_int_equal(ce->code, e.code);
	assert_int_equal(ce->offset, e.offset);
	assert_string_equal(ce->msg, e.msg);
	assert_non_null(strstr(e.msg, "machine name"));
	mig_file_close(f, NULL);
	savevm_registry_free(s.r);
}

static void test_rate_limited_iterate(void **state)
{
	(void)state;
	struct side s;
	side_init(&s, true);
	s.toy.pending = 1000;
	mig_file_t *f;
	assert_int_equal(mig_file_open_mem_writer(0, &f), 0);
	hm_error_t e;
	hm_error_clear(&e);
	assert_int_equal(savevm_write_header(s.r, f, NULL, &e), 0);
	assert_int_equal(savevm_live_setup_all(s.r, f, &e), 0);
	assert_int_equal(savevm_live_pending_total(s.r), 1000);
	mig_file_set_rate_limit(f, 10); /* 1 byte per window: already exceeded */
	size_t before = 0, after = 0;
	mig_file_mem_data(f, &before);
	assert_int_equal(savevm_live_iterate(s.r, f, 1000, &e), 0);
	mig_file_mem_data(f, &after);
	assert_int_equal(before, after); /* no PART written */
	assert_int_equal(s.toy.iter_calls, 0);
	mig_file_set_rate_limit(f, 0);
	assert_int_equal(savevm_live_iterate(s.r, f, 1000, &e), 0);
	assert_int_equal(savevm_live_iterate(s.r, f, 1000, &e), 1);
	savevm_live_cleanup_all(s.r);
	savevm_live_cleanup_all(s.r); /* idempotent */
	assert_int_equal(s.toy.cleanup_calls, 1);
	mig_file_close(f, NULL);
	savevm_registry_free(s.r);
}

static int register_toy(void *opaque, savevm_registry_t *r, const char *idstr, uint32_t instance,
			uint32_t version, hm_error_t *err)
{
	(void)version;
	if (strcmp(idstr, "toy") != 0)
		return hm_error_set(err, HM_E_UNKNOWN, -1, "hook does not know '%s'", idstr);
	return savevm_register_live(r, idstr, instance, 1, 1, &toy_ops, opaque, err);
}

struct seen {
	int records;
	int types[16];
	char vmdesc[2048];
};

static int on_record(void *opaque, const savevm_record_info_t *ri, hm_error_t *err)
{
	(void)err;
	struct seen *s = opaque;
	if (s->records < 16)
		s->types[s->records] = ri->type;
	s->records++;
	assert_true(ri->end_offset > ri->offset);
	return 0;
}

static int on_vmdesc(void *opaque, const char *json, size_t len, hm_error_t *err)
{
	(void)err;
	struct seen *s = opaque;
	assert_true(len < sizeof(s->vmdesc));
	memcpy(s->vmdesc, json, len);
	s->vmdesc[len] = 0;
	return 0;
}

static void test_hooks(void **state)
{
	(void)state;
	size_t len;
	uint8_t *d = write_golden(&len);
	struct side s;
	side_init(&s, false); /* no toy: the hook registers it */
	struct toy toy = { 0 };
	struct seen seen = { 0 };
	savevm_load_opts_t o = { .opaque = &toy, .on_unknown_section = register_toy };
	hm_error_t e;
	assert_int_equal(load_buf(&s, d, len, &o, NULL, &e), 0);
	assert_int_equal(toy.ntypes, 3);
	savevm_registry_free(s.r);

	side_init(&s, true);
	o = (savevm_load_opts_t){ .opaque = &seen, .on_record = on_record, .on_vmdesc = on_vmdesc };
	assert_int_equal(load_buf(&s, d, len, &o, NULL, &e), 0);
	assert_int_equal(seen.records, 7);
	assert_int_equal(seen.types[0], QEMU_VM_CONFIGURATION);
	assert_int_equal(seen.types[3], QEMU_VM_COMMAND);
	assert_int_equal(seen.types[6], QEMU_VM_SECTION_FULL);
	assert_string_equal(seen.vmdesc, golden_vmdesc);
	savevm_registry_free(s.r);

	/* Leaving a section out of what is sent (e.g. a stream for QEMU). */
	side_init(&s, true);
	assert_int_equal(savevm_section_set_enabled(s.r, VERIFY_SECTION_IDSTR, 0, false), 0);
	assert_int_equal(savevm_section_set_enabled(s.r, "nope", 0, false), -ENOENT);
	mig_file_t *f;
	assert_int_equal(mig_file_open_mem_writer(0, &f), 0);
	hm_error_clear(&e);
	assert_int_equal(savevm_save_all(s.r, f, "m", &e), 0);
	size_t n;
	const uint8_t *p = mig_file_mem_data(f, &n);
	assert_null(memmem(p, n, "hptmig/verify", 13));
	savevm_registry_free(s.r);
	side_init(&s, true);
	assert_int_equal(load_buf(&s, p, n, NULL, NULL, &e), 0);
	assert_false(s.verify.loaded);
	savevm_registry_free(s.r);
	mig_file_close(f, NULL);
	free(d);
}

/* A vmdesc larger than the reader's first allocation; and one cut short. */
static void test_big_vmdesc(void **state)
{
	(void)state;
	size_t pad = 3u << 20;
	size_t jl = pad + 24;
	size_t len = 8 + 1 + 5 + jl;
	uint8_t *d = malloc(len);
	memcpy(d, "QEVM\0\0\0\3\0\x06", 10);
	hm_store_be32(d + 10, (uint32_t)jl);
	char *js = (char *)d + 14;
	memcpy(js, "{\"devices\":[],\"pad\":\"", 21);
	memset(js + 21, 'x', pad);
	memcpy(js + 21 + pad, "\"}", 2);
	js[jl - 1] = ' ';
	struct side s;
	side_init(&s, true);
	savevm_load_info_t info;
	hm_error_t e;
	savevm_load_opts_t o = { .require_end = true };
	assert_int_equal(load_buf(&s, d, len, &o, &info, &e), 0);
	assert_true(info.has_vmdesc);
	assert_int_equal(load_buf(&s, d, len - 1, &o, &info, &e), HM_E_TRUNCATED);
	assert_non_null(strstr(e.msg, "VMDESCRIPTION"));
	savevm_registry_free(s.r);
	free(d);
}

/* COMMAND PING is QEMU's: type 0x08, be16 command 2, be16 length 4, be32 value. */
static void test_ping_bytes(void **state)
{
	(void)state;
	static const uint8_t want[] = {0x08, 0x00, 0x02, 0x00, 0x04, 0xde, 0xad, 0xbe, 0xef};
	mig_file_t *f;
	hm_error_t e;
	hm_error_clear(&e);
	assert_int_equal(mig_file_open_mem_writer(0, &f), 0);
	assert_int_equal(savevm_write_command_ping(f, 0xdeadbeef, &e), 0);
	uint8_t *d;
	size_t len;
	assert_int_equal(mig_file_mem_take(f, &d, &len), 0);
	mig_file_close(f, NULL);
	assert_int_equal(len, sizeof(want));
	assert_memory_equal(d, want, sizeof(want));
	free(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ping_bytes),
		cmocka_unit_test(test_golden_stream),
		cmocka_unit_test(test_load_golden),
		cmocka_unit_test(test_verify_versions),
		cmocka_unit_test(test_load_from_pipe),
		cmocka_unit_test(test_error_vectors),
		cmocka_unit_test(test_duplicate_ids),
		cmocka_unit_test(test_truncated_everywhere),
		cmocka_unit_test(test_channel_error_is_reported),
		cmocka_unit_test(test_rate_limited_iterate),
		cmocka_unit_test(test_hooks),
		cmocka_unit_test(test_big_vmdesc),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
