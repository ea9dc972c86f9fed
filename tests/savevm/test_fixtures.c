/* SPDX-License-Identifier: MIT */
/*
 * The framing reader against real QEMU streams (../shared/fixtures/qemu):
 * with only this layer's sections it stops at the first section it does not
 * know and names it; with skip handlers for `ram`, `spapr/htab` and (via
 * the stream's own vmdesc) every vmstate device, it walks every record to
 * EOF and the vmdesc and reproduces the measured facts of the README.
 * Skips cleanly when ../shared is absent.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "testutil.h"
#include "hptmig/machine.h"
#include "hptmig/savevm.h"

struct fixture {
	const char *name;
	const char *machine;
	uint64_t first_record;   /* offset of the first section record */
	uint64_t sections;
	uint64_t data_pages, zero_pages;
	uint32_t htab_shift;     /* 0xffffffff: no HPT */
	uint64_t chunks, valid_sent, invalid_sent;
	int switchover;          /* 1 yes, 0 no, -1 not stated */
};

static const struct fixture fixtures[] = {
	{ "pseries-qemu72-p8-1g.mig", "pseries-7.2", 24, 17, 19586, 242582, 23, 16874, 17094, 0, 0 },
	{ "pseries-qemu10-p8-2g-live.mig", "pseries-10.0", 25, 16, 20288, 506567, 24, 33225, 33625, 23, 1 },
	{ "pseries-qemu10-p9radix-1g.mig", "pseries-10.0", 25, 19, 21879, 240292, 0xffffffffu, 0, 0, 0, -1 },
};

struct mapped {
	uint8_t *data;
	size_t len;
};

static bool map_fixture(const char *name, struct mapped *m)
{
	const char *path = tu_fixture(name);
	if (!path)
		return false;
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	m->len = (size_t)st.st_size;
	m->data = mmap(NULL, m->len, PROT_READ, MAP_PRIVATE, fd, 0);
	assert_true(m->data != MAP_FAILED);
	close(fd);
	return true;
}

/* --------------------------------------------------- walk to first unknown */

static void test_stops_at_first_unknown(void **state)
{
	(void)state;
	int ran = 0;
	for (size_t i = 0; i < sizeof(fixtures) / sizeof(fixtures[0]); i++) {
		struct mapped m;
		if (!map_fixture(fixtures[i].name, &m))
			continue;
		ran++;
		savevm_registry_t *r;
		assert_int_equal(savevm_registry_new(&r), 0);
		spapr_state_t sp;
		savevm_verify_t v;
		hm_error_t e;
		hm_error_clear(&e);
		assert_int_equal(machine_spapr_register(r, &sp, &e), 0);
		assert_int_equal(savevm_register_verify(r, &v, &e), 0);
		mig_file_t *f;
		assert_int_equal(mig_file_open_mem_reader(m.data, m.len, &f), 0);
		savevm_load_info_t info;
		int rc = savevm_load_stream_ex(f, r, NULL, &info, &e);
		print_message("%s: %s\n", fixtures[i].name, e.msg);
		tu_assert_err(&e, HM_E_UNKNOWN);
		assert_int_equal(rc, HM_E_UNKNOWN);
		assert_non_null(strstr(e.msg, "unknown section 'ram' instance 0"));
		assert_int_equal(e.offset, fixtures[i].first_record);
		assert_string_equal(info.machine, fixtures[i].machine);
		mig_file_close(f, NULL);
		savevm_registry_free(r);
		munmap(m.data, m.len);
	}
	if (!ran)
		skip();
}

/* ----------------------------------------------------------- full walk */

struct walk {
	json_t *vmdesc;         /* the stream's own vmdesc (read from the tail) */
	uint64_t data_pages, zero_pages;
	uint32_t htab_shift;
	uint64_t chunks, valid, invalid;
	int devices;            /* FULL sections skipped through the vmdesc */
	json_t *dev_for[64];
	int ndev;
};

/* ram (wire-format.md §4), skipped item by item. */
static int ram_load(void *opaque, mig_file_t *f, uint32_t version, int type)
{
	struct walk *w = opaque;
	(void)version;
	(void)type;
	for (;;) {
		uint64_t off = mig_file_offset(f);
		uint64_t a = mig_file_get_be64(f);
		uint64_t flags = a & 0xfff;
		if (mig_file_status(f))
			return mig_file_status(f);
		if (flags & ~(uint64_t)(0x02 | 0x04 | 0x08 | 0x10 | 0x20))
			return mig_file_set_error_at(f, HM_E_UNSUPPORTED, (int64_t)off,
						     "ram: flags %#llx", (unsigned long long)flags);
		if (flags & 0x04) {
			uint64_t total = a & ~(uint64_t)0xfff, sum = 0;
			while (sum < total && !mig_file_status(f)) {
				uint8_t len = mig_file_get_u8(f);
				mig_file_skip(f, len);
				sum += mig_file_get_be64(f);
			}
			if (sum != total)
				return mig_file_set_error(f, HM_E_FORMAT, "ram: block sizes %llu != %llu",
							  (unsigned long long)sum, (unsigned long long)total);
		}
		if (flags & (0x02 | 0x08)) {
			if (!(flags & 0x20))
				mig_file_skip(f, mig_file_get_u8(f));
			if (flags & 0x02) {
				mig_file_get_u8(f);
				w->zero_pages++;
			} else {
				mig_file_skip(f, 4096);
				w->data_pages++;
			}
		}
		if (flags & 0x10)
			return mig_file_status(f);
	}
}

/* spapr/htab (wire-format.md §2), chunks counted. */
static int htab_load(void *opaque, mig_file_t *f, uint32_t version, int type)
{
	struct walk *w = opaque;
	(void)version;
	uint32_t hdr = mig_file_get_be32(f);
	if (type == QEMU_VM_SECTION_START) {
		w->htab_shift = hdr;
		return mig_file_status(f);
	}
	if (hdr != 0)
		return mig_file_status(f);
	for (;;) {
		uint32_t index = mig_file_get_be32(f);
		uint16_t nv = mig_file_get_be16(f);
		uint16_t ni = mig_file_get_be16(f);
		if (mig_file_status(f))
			return mig_file_status(f);
		if (index == 0 && nv == 0 && ni == 0)
			return 0;
		w->chunks++;
		w->valid += nv;
		w->invalid += ni;
		mig_file_skip(f, (uint64_t)nv * 16);
	}
}

static json_t *find_sub(json_t *desc, const char *name, size_t len)
{
	size_t i;
	json_t *s;
	json_array_foreach(json_object_get(desc, "subsections"), i, s) {
		const char *n = json_string_value(json_object_get(s, "vmsd_name"));
		if (n && strlen(n) == len && memcmp(n, name, len) == 0)
			return s;
	}
	return NULL;
}

/* Skip one vmstate payload using the sizes of its vmdesc entry. */
static int skip_desc(mig_file_t *f, json_t *desc)
{
	size_t i;
	json_t *fl;
	json_array_foreach(json_object_get(desc, "fields"), i, fl) {
		json_int_t size = json_integer_value(json_object_get(fl, "size"));
		json_t *al = json_object_get(fl, "array_len");
		json_int_t n = al ? json_integer_value(al) : 1;
		mig_file_skip(f, (uint64_t)size * (uint64_t)n);
	}
	const char *self = json_string_value(json_object_get(desc, "vmsd_name"));
	size_t slen = self ? strlen(self) : 0;
	uint8_t hdr[2 + 256];
	while (mig_file_peek_buffer(f, hdr, 2) == 2 && hdr[0] == QEMU_VM_SUBSECTION) {
		uint8_t len = hdr[1];
		/* As QEMU: a name without this level's prefix belongs to a parent. */
		if (mig_file_peek_buffer(f, hdr, 2u + len) != 2u + len || len < slen ||
		    memcmp(hdr + 2, self, slen) != 0)
			break;
		char name[256];
		memcpy(name, hdr + 2, len);
		mig_file_skip(f, 2u + len);
		mig_file_get_be32(f);
		json_t *sub = find_sub(desc, name, len);
		if (!sub)
			return mig_file_set_error(f, HM_E_UNKNOWN, "subsection '%.*s' not in vmdesc",
						  (int)len, name);
		int rc = skip_desc(f, sub);
		if (rc)
			return rc;
	}
	return mig_file_status(f);
}

struct dev_ctx {
	struct walk *w;
	json_t *desc;
};
static struct dev_ctx dev_ctx[64];

static int dev_load(void *opaque, mig_file_t *f, uint32_t version, int type)
{
	struct dev_ctx *c = opaque;
	(void)version;
	assert_int_equal(type, QEMU_VM_SECTION_FULL);
	c->w->devices++;
	return skip_desc(f, c->desc);
}

static const savevm_live_ops_t ram_ops = { .load = ram_load };
static const savevm_live_ops_t htab_ops = { .load = htab_load };
static const savevm_live_ops_t dev_ops = { .load = dev_load };

static int on_unknown(void *opaque, savevm_registry_t *r, const char *idstr, uint32_t instance,
		      uint32_t version, hm_error_t *err)
{
	struct walk *w = opaque;
	if (strcmp(idstr, "ram") == 0)
		return savevm_register_live(r, idstr, instance, version, 0, &ram_ops, w, err);
	if (strcmp(idstr, "spapr/htab") == 0)
		return savevm_register_live(r, idstr, instance, version, 0, &htab_ops, w, err);
	size_t i;
	json_t *d;
	json_array_foreach(json_object_get(w->vmdesc, "devices"), i, d) {
		const char *n = json_string_value(json_object_get(d, "name"));
		if (n && strcmp(n, idstr) == 0 &&
		    (uint32_t)json_integer_value(json_object_get(d, "instance_id")) == instance) {
			assert_true(w->ndev < 64);
			dev_ctx[w->ndev] = (struct dev_ctx){ w, d };
			return savevm_register_live(r, idstr, instance, version, 0, &dev_ops,
						    &dev_ctx[w->ndev++], err);
		}
	}
	return hm_error_set(err, HM_E_UNKNOWN, -1, "'%s' not in the vmdesc", idstr);
}

/* The vmdesc, found by searching back from the end as QEMU's analyser does. */
static json_t *tail_vmdesc(const struct mapped *m)
{
	size_t lo = m->len > (1u << 20) ? m->len - (1u << 20) : 1;
	for (size_t p = m->len - 5; p >= lo; p--) {
		if (m->data[p] != QEMU_VM_VMDESCRIPTION || m->data[p - 1] != QEMU_VM_EOF)
			continue;
		uint32_t len = hm_load_be32(m->data + p + 1);
		if (p + 5 + len == m->len)
			return json_loadb((const char *)m->data + p + 5, len, 0, NULL);
	}
	return NULL;
}

static void test_full_walk(void **state)
{
	(void)state;
	int ran = 0;
	for (size_t i = 0; i < sizeof(fixtures) / sizeof(fixtures[0]); i++) {
		const struct fixture *fx = &fixtures[i];
		struct mapped m;
		if (!map_fixture(fx->name, &m))
			continue;
		ran++;
		struct walk w;
		memset(&w, 0, sizeof(w));
		w.vmdesc = tail_vmdesc(&m);
		assert_non_null(w.vmdesc);
		savevm_registry_t *r;
		assert_int_equal(savevm_registry_new(&r), 0);
		mig_file_t *f;
		assert_int_equal(mig_file_open_mem_reader(m.data, m.len, &f), 0);
		savevm_load_opts_t o = { .opaque = &w, .on_unknown_section = on_unknown,
					 .require_end = true };
		savevm_load_info_t info;
		hm_error_t e;
		hm_error_clear(&e);
		int rc = savevm_load_stream_ex(f, r, &o, &info, &e);
		if (rc)
			print_error("%s: %s (offset %lld)\n", fx->name, e.msg, (long long)e.offset);
		assert_int_equal(rc, 0);
		print_message("%s: %llu records, %llu sections, %llu data / %llu zero pages, "
			      "%llu chunks, %llu valid, %llu invalid, vmdesc at %llu\n",
			      fx->name, (unsigned long long)info.records,
			      (unsigned long long)info.sections, (unsigned long long)w.data_pages,
			      (unsigned long long)w.zero_pages, (unsigned long long)w.chunks,
			      (unsigned long long)w.valid, (unsigned long long)w.invalid,
			      (unsigned long long)info.eof_offset + 1);
		assert_string_equal(info.machine, fx->machine);
		assert_true(info.has_vmdesc);
		assert_int_equal(info.end_offset, m.len);
		assert_int_equal(info.sections, fx->sections);
		assert_int_equal(w.devices, (int)fx->sections - 2);
		assert_int_equal(w.data_pages, fx->data_pages);
		assert_int_equal(w.zero_pages, fx->zero_pages);
		assert_int_equal(w.htab_shift, fx->htab_shift);
		assert_int_equal(w.chunks, fx->chunks);
		assert_int_equal(w.valid, fx->valid_sent);
		assert_int_equal(w.invalid, fx->invalid_sent);
		if (fx->switchover >= 0)
			assert_int_equal(info.switchover_seen, fx->switchover == 1);
		mig_file_close(f, NULL);
		savevm_registry_free(r);
		json_decref(w.vmdesc);
		munmap(m.data, m.len);
	}
	if (!ran)
		skip();
}

/* --------------------------------------- QEMU's spapr section, byte for byte */

struct spapr_rec {
	uint64_t payload, end;
	int seen;
};

static int spapr_record(void *opaque, const savevm_record_info_t *ri, hm_error_t *err)
{
	(void)err;
	struct spapr_rec *sr = opaque;
	if (ri->idstr && strcmp(ri->idstr, "spapr") == 0) {
		sr->payload = ri->payload_offset;
		sr->end = ri->end_offset - 5; /* before the footer */
		sr->seen++;
	}
	return 0;
}

static struct walk *cur_walk;
static struct spapr_rec *cur_rec;
static int on_record_any(void *opaque, const savevm_record_info_t *ri, hm_error_t *err)
{
	(void)opaque;
	return spapr_record(cur_rec, ri, err);
}

static json_t *fixture_device(json_t *vmdesc, const char *name)
{
	size_t i;
	json_t *d;
	json_array_foreach(json_object_get(vmdesc, "devices"), i, d) {
		if (strcmp(json_string_value(json_object_get(d, "name")), name) == 0)
			return d;
	}
	return NULL;
}

/*
 * machine_spapr_register_qemu loads QEMU's whole spapr section (every
 * subsection the fixtures carry), and writing it again gives the same
 * payload bytes and the same vmdesc entry, character for character.
 */
static void test_spapr_qemu_byte_for_byte(void **state)
{
	(void)state;
	int ran = 0;
	for (size_t i = 0; i < sizeof(fixtures) / sizeof(fixtures[0]); i++) {
		const struct fixture *fx = &fixtures[i];
		struct mapped m;
		if (!map_fixture(fx->name, &m))
			continue;
		ran++;
		struct walk w;
		memset(&w, 0, sizeof(w));
		w.vmdesc = tail_vmdesc(&m);
		assert_non_null(w.vmdesc);
		struct spapr_rec sr = { 0 };
		cur_walk = &w;
		cur_rec = &sr;
		savevm_registry_t *r;
		assert_int_equal(savevm_registry_new(&r), 0);
		spapr_qemu_state_t q;
		memset(&q, 0, sizeof(q));
		hm_error_t e;
		hm_error_clear(&e);
		assert_int_equal(machine_spapr_register_qemu(r, &q, &e), 0);
		mig_file_t *f;
		assert_int_equal(mig_file_open_mem_reader(m.data, m.len, &f), 0);
		savevm_load_opts_t o = { .opaque = &w, .on_unknown_section = on_unknown,
					 .on_record = on_record_any, .require_end = true };
		int rc = savevm_load_stream_ex(f, r, &o, NULL, &e);
		if (rc)
			print_error("%s: %s (offset %lld)\n", fx->name, e.msg, (long long)e.offset);
		assert_int_equal(rc, 0);
		mig_file_close(f, NULL);
		savevm_registry_free(r);
		assert_int_equal(sr.seen, 1);

		uint32_t want = SPAPR_QEMU_OV5_CAS | SPAPR_QEMU_CAP(6) | SPAPR_QEMU_DTB | SPAPR_QEMU_FWNMI;
		if (fx->htab_shift == 0xffffffffu)
			want |= SPAPR_QEMU_PATB;
		assert_int_equal(q.present, want);
		json_t *dev = fixture_device(w.vmdesc, "spapr");
		assert_non_null(dev);
		print_message("%s: spapr tb %#llx, fdt %u bytes, patb %#llx, cap[6] %u\n", fx->name,
			      (unsigned long long)q.base.guest_timebase, q.fdt_size,
			      (unsigned long long)q.patb_entry, q.caps[6]);
		assert_non_null(q.fdt_blob);
		assert_int_equal(hm_load_be32(q.fdt_blob), 0xd00dfeed); /* a device tree */

		/* Write it back: same payload, same vmdesc entry. */
		assert_int_equal(savevm_registry_new(&r), 0);
		assert_int_equal(machine_spapr_register_qemu(r, &q, &e), 0);
		mig_file_t *wf;
		assert_int_equal(mig_file_open_mem_writer(0, &wf), 0);
		assert_int_equal(savevm_save_all(r, wf, NULL, &e), 0);
		size_t len;
		const uint8_t *out = mig_file_mem_data(wf, &len);
		size_t hdr = 8 + 1 + 4 + 1 + 5 + 4 + 4;
		size_t plen = (size_t)(sr.end - sr.payload);
		assert_true(len > hdr + plen + 5 + 1 + 5);
		assert_memory_equal(out + hdr, m.data + sr.payload, plen);
		assert_int_equal(out[hdr + plen], QEMU_VM_SECTION_FOOTER);
		assert_int_equal(out[hdr + plen + 5], QEMU_VM_EOF);
		const uint8_t *js = out + hdr + plen + 5 + 1 + 5;
		json_t *ours = json_loadb((const char *)js, len - (size_t)(js - out), 0, NULL);
		assert_non_null(ours);
		char *a = json_dumps(json_array_get(json_object_get(ours, "devices"), 0), JSON_PRESERVE_ORDER);
		char *b = json_dumps(dev, JSON_PRESERVE_ORDER);
		assert_string_equal(a, b);
		free(a);
		free(b);
		json_decref(ours);
		mig_file_close(wf, NULL);
		savevm_registry_free(r);
		spapr_qemu_state_release(&q);
		assert_null(q.fdt_blob);
		json_decref(w.vmdesc);
		munmap(m.data, m.len);
	}
	if (!ran)
		skip();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stops_at_first_unknown),
		cmocka_unit_test(test_full_walk),
		cmocka_unit_test(test_spapr_qemu_byte_for_byte),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
