/* SPDX-License-Identifier: MIT */
/*
 * Test helper: builds small synthetic QEMU migration streams byte by byte
 * (independently of the code under test) and remembers the offsets of the
 * fields the error-vector tests corrupt. Test-only; aborts on out of memory.
 */
#ifndef HPTMIG_TEST_STREAMGEN_H
#define HPTMIG_TEST_STREAMGEN_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hptmig/base.h"

struct sg {
	uint8_t *p;
	size_t len, cap;
};

static inline void sg_bytes(struct sg *s, const void *b, size_t n)
{
	if (s->cap - s->len < n) {
		size_t cap = s->cap ? s->cap : 4096;
		while (cap - s->len < n)
			cap *= 2;
		s->p = realloc(s->p, cap);
		if (!s->p)
			abort();
		s->cap = cap;
	}
	if (n)
		memcpy(s->p + s->len, b, n);
	s->len += n;
}
static inline void sg_u8(struct sg *s, uint8_t v) { sg_bytes(s, &v, 1); }
static inline void sg_be16(struct sg *s, uint16_t v) { uint8_t b[2]; hm_store_be16(b, v); sg_bytes(s, b, 2); }
static inline void sg_be32(struct sg *s, uint32_t v) { uint8_t b[4]; hm_store_be32(b, v); sg_bytes(s, b, 4); }
static inline void sg_be64(struct sg *s, uint64_t v) { uint8_t b[8]; hm_store_be64(b, v); sg_bytes(s, b, 8); }
static inline void sg_str8(struct sg *s, const char *str)
{
	sg_u8(s, (uint8_t)strlen(str));
	sg_bytes(s, str, strlen(str));
}
static inline void sg_header(struct sg *s) { sg_be32(s, 0x5145564d); sg_be32(s, 3); }
static inline void sg_config(struct sg *s, const char *machine)
{
	sg_u8(s, 0x07);
	sg_be32(s, (uint32_t)strlen(machine));
	sg_bytes(s, machine, strlen(machine));
}
static inline void sg_start(struct sg *s, uint8_t type, uint32_t id, const char *idstr, uint32_t inst,
			    uint32_t ver)
{
	sg_u8(s, type);
	sg_be32(s, id);
	sg_str8(s, idstr);
	sg_be32(s, inst);
	sg_be32(s, ver);
}
static inline void sg_part(struct sg *s, uint8_t type, uint32_t id) { sg_u8(s, type); sg_be32(s, id); }
static inline void sg_footer(struct sg *s, uint32_t id) { sg_u8(s, 0x7e); sg_be32(s, id); }
static inline void sg_vmdesc(struct sg *s, const char *json)
{
	sg_u8(s, 0x06);
	sg_be32(s, (uint32_t)strlen(json));
	sg_bytes(s, json, strlen(json));
}
static inline void sg_hpte(struct sg *s, uint64_t v, uint64_t r) { sg_be64(s, v); sg_be64(s, r); }

/* Offsets of interesting bytes in the basic stream. */
struct sg_basic {
	size_t ram_start_rec, htab_start_hdr, ram_part_rec, ram_part_item, htab_part_rec, htab_chunk,
		cmd_rec, ram_end_rec, htab_end_rec, timer_rec, timer_footer, dev_rec, eof, vmdesc;
	uint64_t v8, r8; /* the entry left valid in slot 8 */
};

#define SG_VMDESC_BASIC                                                                                 \
	"{\"page_size\":4096,\"devices\":["                                                             \
	"{\"name\":\"timer\",\"instance_id\":0,\"vmsd_name\":\"timer\",\"version\":2,\"fields\":["      \
	"{\"name\":\"cpu_ticks_offset\",\"type\":\"int64\",\"size\":8},"                                  \
	"{\"name\":\"unused\",\"type\":\"unused_buffer\",\"size\":8},"                                    \
	"{\"name\":\"cpu_clock_offset\",\"type\":\"int64\",\"size\":8}]},"                                \
	"{\"name\":\"dev\",\"instance_id\":0,\"vmsd_name\":\"dev\",\"version\":1,\"fields\":["          \
	"{\"name\":\"a\",\"type\":\"uint32\",\"size\":4},"                                                \
	"{\"name\":\"s\",\"array_len\":2,\"type\":\"struct\",\"size\":3,\"struct\":{\"vmsd_name\":\"dev/s\"," \
	"\"version\":1,\"fields\":[{\"name\":\"x\",\"type\":\"uint16\",\"size\":2},"                       \
	"{\"name\":\"y\",\"type\":\"bool\",\"size\":1}]}}],"                                              \
	"\"subsections\":[{\"vmsd_name\":\"dev/sub\",\"version\":1,\"fields\":["                          \
	"{\"name\":\"z\",\"type\":\"uint64\",\"size\":8}]}]}]}"

/*
 * The basic stream: configuration, ram (1 MiB block "ram0") and spapr/htab
 * (shift 18) START, a PART of each, COMMAND 11, END of each, FULL timer and
 * dev (fields, a struct array, a subsection), EOF, then vmdesc (NULL: none).
 * Final table: slot 8 valid (slot 9 sent valid, then invalidated).
 */
static inline void sg_build_basic(struct sg *s, struct sg_basic *o, const char *vmdesc)
{
	memset(o, 0, sizeof(*o));
	sg_header(s);
	sg_config(s, "pseries-test");
	o->ram_start_rec = s->len;
	sg_start(s, 0x01, 1, "ram", 0, 4);
	sg_be64(s, (1u << 20) | 0x04);
	sg_str8(s, "ram0");
	sg_be64(s, 1u << 20);
	sg_be64(s, 0x10);
	sg_footer(s, 1);
	sg_start(s, 0x01, 2, "spapr/htab", 0, 1);
	o->htab_start_hdr = s->len;
	sg_be32(s, 18);
	sg_footer(s, 2);
	o->ram_part_rec = s->len;
	sg_part(s, 0x02, 1);
	o->ram_part_item = s->len;
	sg_be64(s, 0x0 | 0x02);
	sg_str8(s, "ram0");
	sg_u8(s, 0);
	sg_be64(s, 0x1000 | 0x08 | 0x20);
	for (int i = 0; i < 4096; i++)
		sg_u8(s, (uint8_t)i);
	sg_be64(s, 0x10);
	sg_footer(s, 1);
	o->htab_part_rec = s->len;
	sg_part(s, 0x02, 2);
	sg_be32(s, 0);
	o->htab_chunk = s->len;
	sg_be32(s, 8);
	sg_be16(s, 2);
	sg_be16(s, 0);
	o->v8 = 0x4000000123456715ull; /* 1T segment, bolted, large, valid */
	o->r8 = 0x0000000001231190ull; /* 64K page */
	sg_hpte(s, o->v8 | 0x40, o->r8); /* 0x40 must be cleared on load */
	sg_hpte(s, 0x4000000123456795ull, 0x0000000001241190ull);
	sg_be32(s, 0);
	sg_be32(s, 0);
	sg_footer(s, 2);
	o->cmd_rec = s->len;
	sg_u8(s, 0x08);
	sg_be16(s, 11);
	sg_be16(s, 0);
	o->ram_end_rec = s->len;
	sg_part(s, 0x03, 1);
	sg_be64(s, 0x10);
	sg_footer(s, 1);
	o->htab_end_rec = s->len;
	sg_part(s, 0x03, 2);
	sg_be32(s, 0);
	sg_be32(s, 9);
	sg_be16(s, 0);
	sg_be16(s, 1);
	sg_be32(s, 0);
	sg_be32(s, 0);
	sg_footer(s, 2);
	o->timer_rec = s->len;
	sg_start(s, 0x04, 3, "timer", 0, 2);
	sg_be64(s, 0x1122334455667788ull);
	sg_be64(s, 0);
	sg_be64(s, (uint64_t)-5);
	o->timer_footer = s->len;
	sg_footer(s, 3);
	o->dev_rec = s->len;
	sg_start(s, 0x04, 4, "dev", 0, 1);
	sg_be32(s, 7);
	sg_be16(s, 1);
	sg_u8(s, 1);
	sg_be16(s, 2);
	sg_u8(s, 0);
	sg_u8(s, 0x05);
	sg_str8(s, "dev/sub");
	sg_be32(s, 1);
	sg_be64(s, 42);
	sg_footer(s, 4);
	o->eof = s->len;
	sg_u8(s, 0x00);
	o->vmdesc = s->len;
	if (vmdesc)
		sg_vmdesc(s, vmdesc);
}

/* HTAB digest (wire-format.md §5) of a flat table, computed independently. */
static inline void sg_digest(uint32_t shift, const uint64_t *tab, uint64_t slots, uint8_t out[32])
{
	hm_sha256_t *h;
	if (hm_sha256_new(&h) < 0)
		abort();
	uint8_t b[24];
	hm_store_be32(b, shift);
	hm_sha256_update(h, b, 4);
	for (uint64_t i = 0; tab && i < slots; i++) {
		if (!(tab[2 * i] & 1))
			continue;
		hm_store_be64(b, i);
		hm_store_be64(b + 8, tab[2 * i] & ~0x40ull);
		hm_store_be64(b + 16, tab[2 * i + 1]);
		hm_sha256_update(h, b, 24);
	}
	hm_sha256_final(h, out);
	hm_sha256_free(h);
}

#endif
