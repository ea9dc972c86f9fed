/* SPDX-License-Identifier: MIT */
/*
 * analyze walker: golden streams that must walk (with every count checked),
 * golden corruptions that must fail with a named HM_E_* code at the right
 * byte offset, truncation at every offset, streams without or with a lying
 * vmdesc, and a randomized property test of the spapr/htab replay and of
 * rewrite (same digest, every other record byte for byte).
 */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

#include "hptmig/analyze.h"
#include "hptmig/hpt.h"
#include "analyze/an_internal.h"
#include "streamgen.h"

static an_report_t *walk(const struct sg *s, unsigned opts, int *rc, hm_error_t *err)
{
	an_report_t *r = NULL;
	*rc = an_analyze(s->p, s->len, opts, &r, err);
	assert_non_null(r);
	return r;
}

static void test_basic_golden(void **state)
{
	(void)state;
	struct sg s = {0};
	struct sg_basic o;
	sg_build_basic(&s, &o, SG_VMDESC_BASIC);
	hm_error_t err;
	int rc;
	an_report_t *r = walk(&s, AN_OPT_STATE | AN_OPT_STATE_JSON, &rc, &err);
	assert_int_equal(rc, 0);
	assert_true(r->complete);
	assert_string_equal(r->machine, "pseries-test");
	assert_int_equal(r->nsections, 4);
	assert_int_equal(r->eof_offset, o.eof);
	assert_true(r->has_vmdesc);
	assert_int_equal(r->vmdesc_offset, o.vmdesc);
	assert_int_equal(r->ncommands, 1);
	assert_int_equal(r->commands[0].cmd, 11);
	assert_int_equal(r->commands[0].offset, o.cmd_rec);
	assert_true(r->ram.present);
	assert_int_equal(r->ram.data_pages, 1);
	assert_int_equal(r->ram.zero_pages, 1);
	assert_int_equal(r->ram.total_bytes, 1u << 20);
	assert_int_equal(r->ram.eos, 3);
	const an_htab_stats_t *h = &r->htab;
	assert_true(h->present);
	assert_false(h->no_hpt);
	assert_int_equal(h->shift, 18);
	assert_int_equal(h->records, 3);
	assert_int_equal(h->n_part, 1);
	assert_int_equal(h->chunks, 2);
	assert_int_equal(h->valid_sent, 2);
	assert_int_equal(h->invalid_sent, 1);
	assert_int_equal(h->valid, 1);
	assert_int_equal(h->bolted, 1);
	assert_int_equal(h->page_sizes[AN_PG_64K], 1);
	assert_int_equal(h->seg_1t, 1);
	assert_int_equal(h->pteg_occupancy[1], 1);
	assert_int_equal(h->pteg_occupancy[0], (1u << 11) - 1);
	uint64_t tab[2 * 16] = {0};
	tab[16] = o.v8;
	tab[17] = o.r8;
	uint8_t want[32];
	sg_digest(18, tab, 16, want);
	assert_memory_equal(h->digest, want, 32);
	/* records: config, 2 START, 2 PART, command, 2 END, 2 FULL */
	assert_int_equal(r->nrecords, 10);
	/* decoded state */
	json_t *dev = json_object_get(r->state, "dev (4)");
	assert_non_null(dev);
	assert_string_equal(json_string_value(json_object_get(dev, "a")), "0x00000007");
	json_t *arr = json_object_get(dev, "s");
	assert_int_equal(json_array_size(arr), 2);
	assert_true(json_is_true(json_object_get(json_array_get(arr, 0), "y")));
	assert_string_equal(json_string_value(json_object_get(json_object_get(dev, "dev/sub"), "z")),
			    "0x000000000000002a");
	json_t *timer = json_object_get(r->state, "timer (3)");
	assert_string_equal(json_string_value(json_object_get(timer, "cpu_clock_offset")),
			    "0xfffffffffffffffb (-5)");
	/* JSON output carries product.md's fields */
	json_t *j = an_report_json(r, AN_OUT_HTAB);
	assert_string_equal(json_string_value(json_object_get(j, "status")), "ok");
	json_t *jh = json_object_get(j, "htab");
	assert_int_equal(json_integer_value(json_object_get(jh, "shift")), 18);
	assert_int_equal(json_array_size(json_object_get(jh, "entries")), 1);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "ram"), "zero_pages")), 1);
	json_decref(j);
	char *t = an_report_text(r, AN_OUT_HTAB | AN_OUT_STATE | AN_OUT_DESC);
	assert_non_null(strstr(t, "result: OK"));
	free(t);
	an_report_free(r);
	free(s.p);
}

/* Build, corrupt with fn, walk: expect code at offset (or -1 = any). */
static void expect_err(const char *vmdesc, void (*fn)(struct sg *, const struct sg_basic *), int code,
		       int64_t (*where)(const struct sg_basic *), const char *needle)
{
	struct sg s = {0};
	struct sg_basic o;
	sg_build_basic(&s, &o, vmdesc);
	if (fn)
		fn(&s, &o);
	hm_error_t err;
	int rc;
	an_report_t *r = walk(&s, AN_OPT_STATE, &rc, &err);
	if (rc != code)
		print_error("expected %s, got %s: %s\n", hm_err_name(code), hm_err_name(rc), err.msg);
	assert_int_equal(rc, code);
	tu_assert_err(&r->error, code);
	if (where)
		assert_int_equal(err.offset, where(&o));
	if (needle && !strstr(err.msg, needle)) {
		print_error("message '%s' lacks '%s'\n", err.msg, needle);
		fail();
	}
	an_report_free(r);
	free(s.p);
}

static void bad_footer(struct sg *s, const struct sg_basic *o) { s->p[o->timer_footer + 4] ^= 1; }
static void bad_footer_byte(struct sg *s, const struct sg_basic *o) { s->p[o->timer_footer] = 0x7f; }
static int64_t at_timer_footer(const struct sg_basic *o) { return (int64_t)o->timer_footer; }
static void ram_xbzrle(struct sg *s, const struct sg_basic *o) { s->p[o->ram_part_item + 7] = 0x40; }
static void ram_compress(struct sg *s, const struct sg_basic *o) { s->p[o->ram_part_item + 6] = 0x01; s->p[o->ram_part_item + 7] = 0x08; }
static void ram_noflag(struct sg *s, const struct sg_basic *o) { s->p[o->ram_part_item + 7] = 0; }
static int64_t at_ram_item(const struct sg_basic *o) { return (int64_t)o->ram_part_item; }
static void ram_outside(struct sg *s, const struct sg_basic *o) { s->p[o->ram_part_item + 5] = 0x10; }
static void ram_badblock(struct sg *s, const struct sg_basic *o) { s->p[o->ram_part_item + 9] = 'X'; }
static void ram_continue_first(struct sg *s, const struct sg_basic *o) { s->p[o->ram_part_item + 7] = 0x22; }
static void ram_version(struct sg *s, const struct sg_basic *o) { s->p[o->ram_start_rec + 1 + 4 + 4 + 4 + 4 - 1] = 3; }
static void htab_range(struct sg *s, const struct sg_basic *o) { hm_store_be32(s->p + o->htab_chunk, 0xffffffffu); }
static int64_t at_htab_chunk(const struct sg_basic *o) { return (int64_t)o->htab_chunk; }
static void htab_shift_small(struct sg *s, const struct sg_basic *o) { hm_store_be32(s->p + o->htab_start_hdr, 17); }
static void htab_shift_huge(struct sg *s, const struct sg_basic *o) { hm_store_be32(s->p + o->htab_start_hdr, 40); }
static int64_t at_htab_hdr(const struct sg_basic *o) { return (int64_t)o->htab_start_hdr; }
static void htab_version(struct sg *s, const struct sg_basic *o) { s->p[o->htab_start_hdr - 1] = 2; }
static void htab_nohpt_chunks(struct sg *s, const struct sg_basic *o) { hm_store_be32(s->p + o->htab_start_hdr, 0xffffffffu); }
static void bad_magic(struct sg *s, const struct sg_basic *o) { (void)o; s->p[0] = 'X'; }
static void version2(struct sg *s, const struct sg_basic *o) { (void)o; s->p[7] = 2; }
static void unknown_type(struct sg *s, const struct sg_basic *o) { s->p[o->cmd_rec] = 0x09; }
static int64_t at_cmd(const struct sg_basic *o) { return (int64_t)o->cmd_rec; }
static void unknown_cmd(struct sg *s, const struct sg_basic *o) { s->p[o->cmd_rec + 2] = 99; }
static void cmd_len(struct sg *s, const struct sg_basic *o) { s->p[o->cmd_rec + 4] = 1; }
static void part_unknown_id(struct sg *s, const struct sg_basic *o) { s->p[o->ram_part_rec + 4] = 77; }
static int64_t at_ram_part(const struct sg_basic *o) { return (int64_t)o->ram_part_rec; }
static void dup_id(struct sg *s, const struct sg_basic *o) { s->p[o->dev_rec + 4] = 3; }
static void end_twice(struct sg *s, const struct sg_basic *o) { s->p[o->timer_rec] = 0x03; s->p[o->timer_rec + 4] = 1; }

static void test_error_vectors(void **state)
{
	(void)state;
	const char *vd = SG_VMDESC_BASIC;
	expect_err(vd, bad_footer, HM_E_FOOTER, at_timer_footer, "timer");
	expect_err(vd, bad_footer_byte, HM_E_FOOTER, at_timer_footer, "footer");
	expect_err(vd, ram_xbzrle, HM_E_UNSUPPORTED, at_ram_item, "0x40");
	expect_err(vd, ram_compress, HM_E_UNSUPPORTED, at_ram_item, "0x108");
	expect_err(vd, ram_noflag, HM_E_FORMAT, at_ram_item, "ram");
	expect_err(vd, ram_outside, HM_E_RANGE, at_ram_item, "outside block 'ram0'");
	expect_err(vd, ram_badblock, HM_E_FORMAT, at_ram_item, "unknown block");
	expect_err(vd, ram_continue_first, HM_E_FORMAT, at_ram_item, "CONTINUE");
	expect_err(vd, ram_version, HM_E_VERSION, NULL, "ram");
	expect_err(vd, htab_range, HM_E_RANGE, at_htab_chunk, "exceeds");
	expect_err(vd, htab_shift_small, HM_E_RANGE, at_htab_hdr, "htab_shift 17");
	expect_err(vd, htab_shift_huge, HM_E_UNSUPPORTED, at_htab_hdr, "htab_shift 40");
	expect_err(vd, htab_version, HM_E_VERSION, NULL, "spapr/htab");
	expect_err(vd, htab_nohpt_chunks, HM_E_FORMAT, NULL, "no HPT");
	expect_err(vd, bad_magic, HM_E_MAGIC, NULL, "magic");
	expect_err(vd, version2, HM_E_VERSION, NULL, "obsolete");
	expect_err(vd, unknown_type, HM_E_UNKNOWN, at_cmd, "0x09");
	expect_err(vd, unknown_cmd, HM_E_UNKNOWN, at_cmd, "command 99");
	expect_err(vd, cmd_len, HM_E_FORMAT, NULL, "length");
	expect_err(vd, part_unknown_id, HM_E_FORMAT, at_ram_part, "id 77");
	expect_err(vd, dup_id, HM_E_FORMAT, NULL, "introduced twice");
	expect_err(vd, end_twice, HM_E_FORMAT, NULL, "after the section's END");
}

/* vmdesc that lies: each must fail with a clear error, never crash. */
static void test_vmdesc_lies(void **state)
{
	(void)state;
	static const struct {
		const char *from, *to;
		int code;
		const char *needle;
	} lies[] = {
		/* timer 8 bytes shorter: the footer is not where it should be */
		{"\"name\":\"cpu_clock_offset\",\"type\":\"int64\",\"size\":8", "\"name\":\"cpu_clock_offset\",\"type\":\"int64\",\"size\":4", HM_E_FOOTER, "timer"},
		/* longer: eats the footer */
		{"\"name\":\"cpu_clock_offset\",\"type\":\"int64\",\"size\":8", "\"name\":\"cpu_clock_offset\",\"type\":\"int64\",\"size\":12", HM_E_FOOTER, "timer"},
		/* absurdly long */
		{"\"name\":\"unused\",\"type\":\"unused_buffer\",\"size\":8", "\"name\":\"unused\",\"type\":\"unused_buffer\",\"size\":4294967295", HM_E_TRUNCATED, "unused"},
		/* struct size disagrees with its fields */
		{"\"type\":\"struct\",\"size\":3", "\"type\":\"struct\",\"size\":4", HM_E_FORMAT, "vmdesc says 4"},
		/* array longer than the data */
		{"\"array_len\":2,", "\"array_len\":4000000000,", HM_E_TRUNCATED, "4000000000 structs"},
		/* subsection listed under another name */
		{"\"vmsd_name\":\"dev/sub\"", "\"vmsd_name\":\"dev/other\"", HM_E_FORMAT, "dev/sub"},
		/* subsection version differs */
		{"\"vmsd_name\":\"dev/sub\",\"version\":1", "\"vmsd_name\":\"dev/sub\",\"version\":2", HM_E_VERSION, "dev/sub"},
		/* a field of a negative size */
		{"\"name\":\"a\",\"type\":\"uint32\",\"size\":4", "\"name\":\"a\",\"type\":\"uint32\",\"size\":-4", HM_E_FORMAT, "size"},
		/* devices not an array */
		{"\"devices\":[", "\"devices\":{\"x\":[", HM_E_FORMAT, "vmdesc"},
	};
	for (size_t i = 0; i < sizeof(lies) / sizeof(lies[0]); i++) {
		char json[4096];
		const char *b = SG_VMDESC_BASIC;
		const char *p = strstr(b, lies[i].from);
		assert_non_null(p);
		snprintf(json, sizeof(json), "%.*s%s%s", (int)(p - b), b, lies[i].to, p + strlen(lies[i].from));
		if (i == 8)
			strcat(json, "}");
		struct sg s = {0};
		struct sg_basic o;
		sg_build_basic(&s, &o, json);
		hm_error_t err;
		int rc;
		an_report_t *r = walk(&s, AN_OPT_STATE, &rc, &err);
		if (rc != lies[i].code || !strstr(err.msg, lies[i].needle))
			print_error("lie %zu: expected %s with '%s', got %s: %s (offset %lld)\n", i,
				    hm_err_name(lies[i].code), lies[i].needle, hm_err_name(rc), err.msg,
				    (long long)err.offset);
		assert_int_equal(rc, lies[i].code);
		assert_non_null(strstr(err.msg, lies[i].needle));
		assert_true(err.offset >= 0);
		an_report_free(r);
		free(s.p);
	}
}

/* The basic vmdesc with `"x":<extra>,` put first; walked with --state. */
static int walk_with_extra(const char *extra, size_t xlen, hm_error_t *err, int64_t *json_off, size_t *json_len)
{
	const char *b = SG_VMDESC_BASIC;
	size_t bl = strlen(b);
	char *json = malloc(bl + xlen + 8);
	assert_non_null(json);
	int k = sprintf(json, "{\"x\":");
	memcpy(json + k, extra, xlen);
	json[k + (int)xlen] = ',';
	memcpy(json + k + xlen + 1, b + 1, bl); /* with its NUL */
	struct sg s = {0};
	struct sg_basic o;
	sg_build_basic(&s, &o, json);
	*json_off = (int64_t)o.vmdesc + 5;
	*json_len = strlen(json);
	int rc;
	an_report_t *r = walk(&s, AN_OPT_STATE, &rc, err);
	an_report_free(r);
	free(s.p);
	free(json);
	return rc;
}

static char *repeat(const char *head, const char *item, size_t n, const char *tail, size_t *len)
{
	size_t hl = strlen(head), il = strlen(item), tl = strlen(tail);
	char *j = malloc(hl + n * il + tl + 1);
	assert_non_null(j);
	memcpy(j, head, hl);
	for (size_t i = 0; i < n; i++)
		memcpy(j + hl + i * il, item, il);
	memcpy(j + hl + n * il, tail, tl + 1);
	*len = hl + n * il + tl;
	return j;
}

/* The vmdesc's caps (docs/limits.md): size, JSON values, nesting, checked
 * by a scan before jansson; what is inside strings does not count. */
static void test_vmdesc_caps(void **state)
{
	(void)state;
	hm_error_t err;
	int64_t off;
	size_t jl, xl;
	/* 70,000 commas, brackets and escaped quotes inside a string: fine */
	char *x = repeat("\"", ",[{:\\\"", 70000, "\"", &xl);
	int rc = walk_with_extra(x, xl, &err, &off, &jl);
	if (rc)
		print_error("%s\n", err.msg);
	assert_int_equal(rc, 0);
	free(x);

	/* 70,000 values */
	x = repeat("[", "0,", 70000, "0]", &xl);
	assert_int_equal(walk_with_extra(x, xl, &err, &off, &jl), HM_E_RANGE);
	assert_non_null(strstr(err.msg, "more than the cap of 65536 JSON values"));
	assert_true(err.offset > off && err.offset < off + (int64_t)jl);
	free(x);
	/* 65,000 values (and the basic vmdesc's): under the cap */
	x = repeat("[", "0,", 65000, "0]", &xl);
	rc = walk_with_extra(x, xl, &err, &off, &jl);
	if (rc)
		print_error("%s\n", err.msg);
	assert_int_equal(rc, 0);
	free(x);

	/* nesting: 200 levels; the 137th bracket is the one refused */
	x = repeat("", "[", 200, "", &xl);
	char *y = repeat(x, "]", 200, "", &xl);
	assert_int_equal(walk_with_extra(y, xl, &err, &off, &jl), HM_E_RANGE);
	assert_non_null(strstr(err.msg, "nested deeper than the cap of 136 levels"));
	assert_int_equal(err.offset, off + 5 + 135); /* '{', "x": then 136 brackets fit */
	free(x);
	free(y);

	/* 4 MiB + 1 of JSON: refused at its first byte, before parsing */
	size_t big = ((size_t)4 << 20) - strlen(SG_VMDESC_BASIC) - 6; /* {"x":"..",+ the rest */
	x = repeat("\"", "a", big, "\"", &xl);
	assert_int_equal(walk_with_extra(x, xl, &err, &off, &jl), HM_E_RANGE);
	assert_int_equal(jl, ((size_t)4 << 20) + 1);
	assert_non_null(strstr(err.msg, "4194305 bytes of JSON, more than the cap of 4194304 bytes"));
	assert_int_equal(err.offset, off);
	free(x);
	x = repeat("\"", "a", big - 1, "\"", &xl);
	rc = walk_with_extra(x, xl, &err, &off, &jl);
	if (rc)
		print_error("%s\n", err.msg);
	assert_int_equal(rc, 0);
	free(x);
}

static void test_no_vmdesc(void **state)
{
	(void)state;
	struct sg s = {0};
	struct sg_basic o;
	sg_build_basic(&s, &o, NULL);
	hm_error_t err;
	int rc;
	an_report_t *r = walk(&s, 0, &rc, &err);
	assert_int_equal(rc, 0);
	assert_false(r->complete);
	assert_int_equal(r->stop_offset, o.timer_rec);
	assert_non_null(strstr(r->stop_reason, "timer"));
	assert_non_null(strstr(r->stop_reason, "no vmdesc"));
	/* what came before is all there */
	assert_int_equal(r->htab.valid, 1);
	assert_int_equal(r->ram.data_pages, 1);
	json_t *j = an_report_json(r, 0);
	assert_string_equal(json_string_value(json_object_get(j, "status")), "incomplete");
	json_decref(j);
	an_report_free(r);

	/* rewrite still works: the table ended before the unknown section */
	uint8_t *out;
	size_t out_len;
	bool unchecked;
	assert_int_equal(an_rewrite(s.p, s.len, &out, &out_len, &unchecked, &err), 0);
	assert_true(unchecked);
	assert_memory_equal(out + out_len - (s.len - o.timer_rec), s.p + o.timer_rec, s.len - o.timer_rec);
	free(out);

	/* invalid JSON where the vmdesc is */
	free(s.p);
	memset(&s, 0, sizeof(s));
	sg_build_basic(&s, &o, "{\"devices\":[}");
	r = walk(&s, 0, &rc, &err);
	assert_int_equal(rc, HM_E_FORMAT);
	assert_non_null(strstr(err.msg, "vmdesc"));
	an_report_free(r);
	free(s.p);
}

static void test_truncated_everywhere(void **state)
{
	(void)state;
	struct sg s = {0};
	struct sg_basic o;
	sg_build_basic(&s, &o, SG_VMDESC_BASIC);
	size_t errors = 0, partial = 0;
	for (size_t n = 0; n < s.len; n++) {
		uint8_t *copy = malloc(n ? n : 1); /* exact size: ASan sees any overread */
		memcpy(copy, s.p, n);
		an_report_t *r = NULL;
		hm_error_t err;
		int rc = an_analyze(copy, n, AN_OPT_STATE, &r, &err);
		assert_non_null(r);
		if (rc < 0) {
			errors++;
			assert_true(err.offset >= -1 && err.offset <= (int64_t)n);
		} else {
			assert_false(r->complete); /* only the vmdesc-less prefix walks, in part */
			partial++;
		}
		an_report_free(r);
		free(copy);
	}
	assert_true(errors > 0 && partial > 0);
	free(s.p);
}

/* ------------------------------------------------------------ property */

static void put_chunks(struct sg *s, uint64_t *tab, uint64_t slots, uint64_t *rng, int nchunks,
		       uint64_t *vs, uint64_t *is)
{
	for (int c = 0; c < nchunks; c++) {
		uint64_t idx = tu_rand(rng) % slots;
		uint64_t room = slots - idx;
		uint64_t nv = tu_rand(rng) % 40, ni = tu_rand(rng) % 12;
		if (nv > room)
			nv = room;
		if (ni > room - nv)
			ni = room - nv;
		if (idx == 0 && nv == 0 && ni == 0)
			continue; /* would be the end mark */
		sg_be32(s, (uint32_t)idx);
		sg_be16(s, (uint16_t)nv);
		sg_be16(s, (uint16_t)ni);
		for (uint64_t k = 0; k < nv; k++) {
			uint64_t v = (tu_rand(rng) & ~3ull) | 1 | (tu_rand(rng) & 2);
			uint64_t r = tu_rand(rng);
			sg_hpte(s, v, r);
			tab[2 * (idx + k)] = v & ~0x40ull;
			tab[2 * (idx + k) + 1] = r;
		}
		for (uint64_t k = 0; k < ni; k++)
			tab[2 * (idx + nv + k)] = tab[2 * (idx + nv + k) + 1] = 0;
		*vs += nv;
		*is += ni;
	}
	sg_be32(s, 0);
	sg_be32(s, 0);
}

static void test_replay_and_rewrite_property(void **state)
{
	(void)state;
	uint64_t rng = tu_seed("analyze replay/rewrite property");
	for (int round = 0; round < 40; round++) {
		uint32_t shift = 18 + (uint32_t)(tu_rand(&rng) % 3);
		uint64_t slots = 1ull << (shift - 4);
		uint64_t *tab = calloc(slots * 2, sizeof(uint64_t));
		struct sg s = {0};
		sg_header(&s);
		sg_config(&s, "pseries-prop");
		sg_start(&s, 0x01, 7, "spapr/htab", 0, 1);
		sg_be32(&s, shift);
		sg_footer(&s, 7);
		uint64_t vs = 0, is = 0;
		int parts = (int)(tu_rand(&rng) % 5);
		bool resized = false;
		for (int p = 0; p < parts; p++) {
			sg_part(&s, 0x02, 7);
			if (tu_rand(&rng) % 8 == 0) {
				/* a resize: a new zeroed table */
				shift = 18 + (uint32_t)(tu_rand(&rng) % 3);
				slots = 1ull << (shift - 4);
				free(tab);
				tab = calloc(slots * 2, sizeof(uint64_t));
				sg_be32(&s, shift);
				resized = true;
			} else {
				sg_be32(&s, 0);
				put_chunks(&s, tab, slots, &rng, (int)(tu_rand(&rng) % 30), &vs, &is);
			}
			sg_footer(&s, 7);
		}
		sg_part(&s, 0x03, 7);
		sg_be32(&s, 0);
		put_chunks(&s, tab, slots, &rng, (int)(tu_rand(&rng) % 30), &vs, &is);
		sg_footer(&s, 7);
		sg_start(&s, 0x04, 9, "hptmig/verify", 0, 1);
		uint8_t want[32];
		sg_digest(shift, tab, slots, want);
		uint64_t valid = 0;
		for (uint64_t i = 0; i < slots; i++)
			valid += tab[2 * i] & 1;
		sg_be32(&s, shift);
		sg_be64(&s, valid);
		sg_bytes(&s, want, 32);
		sg_footer(&s, 9);
		sg_u8(&s, 0);

		hm_error_t err;
		int rc;
		an_report_t *r = walk(&s, 0, &rc, &err);
		if (rc)
			print_error("round %d: %s\n", round, err.msg);
		assert_int_equal(rc, 0);
		assert_true(r->complete);
		assert_memory_equal(r->htab.digest, want, 32);
		assert_int_equal(r->htab.valid, valid);
		assert_int_equal(r->htab.shift, shift);
		if (!resized) {
			assert_int_equal(r->htab.valid_sent, vs);
			assert_int_equal(r->htab.invalid_sent, is);
		}
		assert_true(r->has_verify);
		assert_memory_equal(r->verify_digest, r->htab.digest, 32);

		uint8_t *out;
		size_t out_len;
		assert_int_equal(an_rewrite(s.p, s.len, &out, &out_len, NULL, &err), 0);
		an_report_t *r2 = NULL;
		assert_int_equal(an_analyze(out, out_len, 0, &r2, &err), 0);
		assert_memory_equal(r2->htab.digest, want, 32);
		assert_int_equal(r2->htab.n_part, r->htab.shift != r->htab.start_shift ? 1 : 0);
		assert_int_equal(r2->htab.n_end, 1);
		assert_int_equal(r2->htab.valid_sent, valid);
		assert_int_equal(r2->htab.invalid_sent, 0);
		/* every other record, byte for byte, in order */
		size_t j = 0;
		for (size_t i = 0; i < r->nrecords; i++) {
			const an_record_t *a = &r->records[i];
			if (a->section != UINT32_MAX && r->sections[a->section].kind == AN_SEC_HTAB)
				continue;
			while (j < r2->nrecords && r2->records[j].section != UINT32_MAX &&
			       r2->sections[r2->records[j].section].kind == AN_SEC_HTAB)
				j++;
			assert_true(j < r2->nrecords);
			assert_int_equal(a->length, r2->records[j].length);
			assert_memory_equal(s.p + a->offset, out + r2->records[j].offset, a->length);
			j++;
		}
		/* rewriting a canonical stream is the identity */
		uint8_t *out2;
		size_t out2_len;
		assert_int_equal(an_rewrite(out, out_len, &out2, &out2_len, NULL, &err), 0);
		assert_int_equal(out2_len, out_len);
		assert_memory_equal(out2, out, out_len);
		free(out2);
		an_report_free(r2);
		free(out);
		an_report_free(r);
		free(s.p);
		free(tab);
	}
}

/* Random byte flips of the basic stream: never a crash, never a hang. */
static void test_mutations(void **state)
{
	(void)state;
	uint64_t rng = tu_seed("analyze mutations");
	struct sg s = {0};
	struct sg_basic o;
	sg_build_basic(&s, &o, SG_VMDESC_BASIC);
	uint8_t *copy = malloc(s.len);
	for (int i = 0; i < 3000; i++) {
		memcpy(copy, s.p, s.len);
		int flips = 1 + (int)(tu_rand(&rng) % 4);
		for (int k = 0; k < flips; k++)
			copy[tu_rand(&rng) % s.len] ^= (uint8_t)(1u << (tu_rand(&rng) % 8));
		an_report_t *r = NULL;
		hm_error_t err;
		int rc = an_analyze(copy, s.len, AN_OPT_STATE, &r, &err);
		assert_non_null(r);
		if (rc == 0 && r->complete && r->htab.present) {
			uint8_t *out;
			size_t n;
			if (an_rewrite(copy, s.len, &out, &n, NULL, &err) == 0)
				free(out);
		}
		an_report_free(r);
	}
	free(copy);
	free(s.p);
}

/* Our own streams carry hptmig/verify: a digest that disagrees with the
 * replayed table is an error (HM_E_DIGEST) at the verify record. */
static void test_verify_mismatch(void **state)
{
	(void)state;
	for (int good = 0; good < 2; good++) {
		struct sg s = {0};
		sg_header(&s);
		sg_start(&s, 0x01, 7, "spapr/htab", 0, 1);
		sg_be32(&s, 18);
		sg_footer(&s, 7);
		sg_part(&s, 0x03, 7);
		sg_be32(&s, 0);
		sg_be32(&s, 3);
		sg_be16(&s, 1);
		sg_be16(&s, 0);
		sg_hpte(&s, 0x4000000000001015ull, 0x1190);
		sg_be32(&s, 0);
		sg_be32(&s, 0);
		sg_footer(&s, 7);
		size_t vrec = s.len;
		sg_start(&s, 0x04, 9, "hptmig/verify", 0, 1);
		uint64_t tab[2 * 4] = {0};
		tab[6] = 0x4000000000001015ull;
		tab[7] = 0x1190;
		uint8_t d[32];
		sg_digest(18, tab, 4, d);
		if (!good)
			d[5] ^= 1;
		sg_be32(&s, 18);
		sg_be64(&s, 1);
		sg_bytes(&s, d, 32);
		sg_footer(&s, 9);
		sg_u8(&s, 0);
		hm_error_t err;
		int rc;
		an_report_t *r = walk(&s, 0, &rc, &err);
		if (good) {
			assert_int_equal(rc, 0);
		} else {
			assert_int_equal(rc, HM_E_DIGEST);
			assert_int_equal(err.offset, (int64_t)vrec);
			assert_non_null(strstr(err.msg, "hptmig/verify"));
		}
		an_report_free(r);
		free(s.p);
	}
}

/*
 * A valid 16G-page entry (QEMU's 34/34 row: 1T segment, L, pte_enc 0x3,
 * RPN aligned to 16G) at the slot its hash names is counted as 16G and
 * passes the structural check, in the report's text and JSON too.
 */
static void test_16g_page(void **state)
{
	(void)state;
	const uint32_t shift = 18;
	uint64_t vsid = 0x2345, ea = 3ull << 34;
	uint64_t v = hpt_mapping_v(HPT_SEG_1T, vsid, ea, true, false) | 0x10; /* bolted */
	uint64_t r = (5ull << 34) | 0x3000 | 0x190;
	uint64_t slot = hpt_pteg_index(shift, HPT_SEG_1T, vsid, ea, 34, false) * 8 + 2;
	struct sg s = {0};
	sg_header(&s);
	sg_start(&s, 0x01, 7, "spapr/htab", 0, 1);
	sg_be32(&s, shift);
	sg_footer(&s, 7);
	sg_part(&s, 0x03, 7);
	sg_be32(&s, 0);
	sg_be32(&s, (uint32_t)slot);
	sg_be16(&s, 1);
	sg_be16(&s, 0);
	sg_hpte(&s, v, r);
	sg_be32(&s, 0);
	sg_be32(&s, 0);
	sg_footer(&s, 7);
	sg_u8(&s, 0);
	hm_error_t err;
	int rc;
	an_report_t *rep = walk(&s, 0, &rc, &err);
	assert_int_equal(rc, 0);
	assert_true(rep->complete);
	assert_int_equal(rep->htab.valid, 1);
	assert_int_equal(rep->htab.page_sizes[AN_PG_16G], 1);
	assert_int_equal(rep->htab.page_sizes[AN_PG_BAD], 0);
	assert_int_equal(rep->htab.check_failures, 0);
	assert_int_equal(rep->htab.seg_1t, 1);
	assert_int_equal(an_hpte_pgsz(v, r, NULL), AN_PG_16G);
	assert_true(an_hpte_check(shift, slot, v, r, NULL));
	char *text = an_report_text(rep, 0);
	assert_non_null(text);
	assert_non_null(strstr(text, "page sizes: 16G=1\n"));
	free(text);
	json_t *j = an_report_json(rep, 0);
	assert_non_null(j);
	json_t *pg = json_object_get(json_object_get(j, "htab"), "page_sizes");
	assert_int_equal(json_integer_value(json_object_get(pg, "16G")), 1);
	assert_null(json_object_get(pg, "invalid"));
	json_decref(j);
	an_report_free(rep);
	free(s.p);
}

/* Configuration subsections QEMU may send after the machine name. */
static void build_config(struct sg *s, const char *cap, const char *extra)
{
	sg_header(s);
	sg_config(s, "pseries-9.2");
	sg_u8(s, 0x05);
	sg_str8(s, "configuration/target-page-bits");
	sg_be32(s, 1);
	sg_be32(s, 12);
	sg_u8(s, 0x05);
	sg_str8(s, "configuration/capabilities");
	sg_be32(s, 1);
	sg_be32(s, 2);
	sg_str8(s, "validate-uuid");
	sg_str8(s, cap);
	sg_u8(s, 0x05);
	sg_str8(s, "configuration/uuid");
	sg_be32(s, 1);
	for (int i = 0; i < 16; i++)
		sg_u8(s, (uint8_t)i);
	if (extra) {
		sg_u8(s, 0x05);
		sg_str8(s, extra);
		sg_be32(s, 1);
	}
	sg_start(s, 0x04, 1, "hptmig/verify", 0, 1);
	for (int i = 0; i < 44; i++)
		sg_u8(s, 0);
	sg_footer(s, 1);
	sg_u8(s, 0);
}

static void test_configuration(void **state)
{
	(void)state;
	struct sg s = {0};
	build_config(&s, "x-colo", NULL);
	hm_error_t err;
	int rc;
	an_report_t *r = walk(&s, 0, &rc, &err);
	/* the verify section is all zero: it does not match "no spapr/htab" */
	assert_int_equal(rc, HM_E_DIGEST);
	assert_string_equal(r->machine, "pseries-9.2");
	assert_int_equal(r->target_page_bits, 12);
	assert_string_equal(r->config_subsections,
			    "configuration/target-page-bits,configuration/capabilities,configuration/uuid");
	an_report_free(r);
	free(s.p);

	memset(&s, 0, sizeof(s));
	build_config(&s, "x-ignore-shared", NULL);
	r = walk(&s, 0, &rc, &err);
	assert_int_equal(rc, HM_E_UNSUPPORTED);
	assert_non_null(strstr(err.msg, "x-ignore-shared"));
	an_report_free(r);
	free(s.p);

	memset(&s, 0, sizeof(s));
	build_config(&s, "x-colo", "configuration/frobnicate");
	r = walk(&s, 0, &rc, &err);
	assert_int_equal(rc, HM_E_UNKNOWN);
	assert_non_null(strstr(err.msg, "configuration/frobnicate"));
	an_report_free(r);
	free(s.p);
}

/* Inputs built to make a walk slow must fail fast or finish fast. */
static void test_adversarial(void **state)
{
	(void)state;
	/* 1. a vmdesc with 20000 empty fields per struct and 1000 structs */
	struct sg s = {0};
	sg_header(&s);
	sg_start(&s, 0x04, 1, "bomb", 0, 1);
	for (int i = 0; i < 1000; i++)
		sg_u8(&s, 0);
	sg_footer(&s, 1);
	sg_u8(&s, 0);
	struct sg j = {0};
	const char *head = "{\"devices\":[{\"name\":\"bomb\",\"instance_id\":0,\"vmsd_name\":\"bomb\",\"version\":1,"
			   "\"fields\":[{\"name\":\"s\",\"type\":\"struct\",\"size\":1,\"array_len\":1000,"
			   "\"struct\":{\"vmsd_name\":\"s\",\"fields\":[";
	sg_bytes(&j, head, strlen(head));
	for (int i = 0; i < 20000; i++) {
		char f[64];
		int n = snprintf(f, sizeof(f), "{\"name\":\"z%d\",\"type\":\"buffer\",\"size\":0},", i);
		sg_bytes(&j, f, (size_t)n);
	}
	const char *tail = "{\"name\":\"b\",\"type\":\"uint8\",\"size\":1}]}}]}]}";
	sg_bytes(&j, tail, strlen(tail) + 1);
	sg_vmdesc(&s, (const char *)j.p);
	hm_error_t err;
	int rc;
	uint64_t t0 = hm_now_ns();
	an_report_t *r = walk(&s, AN_OPT_STATE, &rc, &err);
	assert_int_equal(rc, HM_E_RANGE);
	assert_non_null(strstr(err.msg, "more than"));
	assert_true(hm_now_ns() - t0 < UINT64_C(20) * 1000000000);
	an_report_free(r);
	free(s.p);
	free(j.p);

	/* 2. invalid runs of 65535 slots, each 8 bytes of input, over a table
	 * with valid entries spread across blocks: only the valid ones change */
	memset(&s, 0, sizeof(s));
	sg_header(&s);
	sg_start(&s, 0x01, 2, "spapr/htab", 0, 1);
	sg_be32(&s, 24);
	sg_footer(&s, 2);
	sg_part(&s, 0x03, 2);
	sg_be32(&s, 0);
	uint64_t slots = 1u << 20;
	uint64_t *tab = calloc(slots * 2, sizeof(uint64_t));
	for (uint64_t k = 100; k < slots; k += 997) {
		sg_be32(&s, (uint32_t)k);
		sg_be16(&s, 1);
		sg_be16(&s, 0);
		sg_hpte(&s, (k << 7) | 1, k);
		tab[2 * k] = (k << 7) | 1;
		tab[2 * k + 1] = k;
	}
	for (uint64_t i = 0; i < 2000; i++) {
		uint64_t idx = (i * 7919 * 64) % (slots - 65535);
		sg_be32(&s, (uint32_t)idx);
		sg_be16(&s, 0);
		sg_be16(&s, i % 3 ? 65535 : 1);
		for (uint64_t k = idx; k < idx + (i % 3 ? 65535 : 1); k++)
			tab[2 * k] = tab[2 * k + 1] = 0;
		if (i == 1000) { /* re-validate a few in the middle */
			for (uint64_t k = 5000; k < 5100; k++) {
				sg_be32(&s, (uint32_t)k);
				sg_be16(&s, 1);
				sg_be16(&s, 0);
				sg_hpte(&s, (k << 7) | 1, ~k);
				tab[2 * k] = (k << 7) | 1;
				tab[2 * k + 1] = ~k;
			}
		}
	}
	sg_be32(&s, 0);
	sg_be32(&s, 0);
	sg_footer(&s, 2);
	sg_u8(&s, 0);
	t0 = hm_now_ns();
	r = walk(&s, 0, &rc, &err);
	assert_int_equal(rc, 0);
	uint8_t want[32];
	sg_digest(24, tab, slots, want);
	assert_memory_equal(r->htab.digest, want, 32);
	uint64_t valid = 0;
	for (uint64_t k = 0; k < slots; k++)
		valid += tab[2 * k] & 1;
	assert_int_equal(r->htab.valid, valid);
	assert_true(hm_now_ns() - t0 < UINT64_C(20) * 1000000000);
	an_report_free(r);
	free(tab);
	free(s.p);

	/* 3. the same device twice (other section ids) is refused */
	memset(&s, 0, sizeof(s));
	sg_header(&s);
	for (uint32_t id = 1; id <= 2; id++) {
		sg_start(&s, 0x04, id, "hptmig/verify", 0, 1);
		for (int i = 0; i < 44; i++)
			sg_u8(&s, 0);
		sg_footer(&s, id);
	}
	sg_u8(&s, 0);
	r = walk(&s, 0, &rc, &err);
	assert_int_equal(rc, HM_E_FORMAT);
	assert_non_null(strstr(err.msg, "sent twice"));
	an_report_free(r);
	free(s.p);
}

static void test_hpte_check(void **state)
{
	(void)state;
	/* A 64K page in a 1T segment: AVPN gives VSID and EA bits 23..39;
	 * build the V word for vsid, ea and put it where its hash says. */
	uint32_t shift = 24;
	uint64_t npteg = 1ull << (shift - 7);
	uint64_t vsid = 0x123456, ea = 0x0000012345670000ull & 0xffffffffffull;
	unsigned p = 16;
	uint64_t va_hi = (vsid << 17) | (ea >> 23); /* va >> 23 */
	uint64_t v = (1ull << 62) | (va_hi << 7) | 0x4 | 0x1;
	uint64_t r = 0x1000 | 0x190;
	uint64_t hash = vsid ^ (vsid << 25) ^ ((ea & 0xffffffffffull) >> p);
	uint64_t pteg = hash & (npteg - 1);
	int pg;
	assert_true(an_hpte_check(shift, pteg * 8 + 3, v, r, &pg));
	assert_int_equal(pg, AN_PG_64K);
	/* secondary hash */
	assert_true(an_hpte_check(shift, ((~hash) & (npteg - 1)) * 8, v | 2, r, NULL));
	/* a PTEG whose high bits disagree */
	assert_false(an_hpte_check(shift, (pteg ^ (1ull << 15)) * 8, v, r, NULL));
	/* reserved segment size, bad page-size encoding */
	assert_false(an_hpte_check(shift, pteg * 8, v | (2ull << 62), r, NULL));
	assert_false(an_hpte_check(shift, pteg * 8, v, 0x3000, NULL));
	assert_int_equal(an_hpte_pgsz(v & ~4ull, r, NULL), AN_PG_4K);
	assert_int_equal(an_hpte_pgsz(v, 0x0, NULL), AN_PG_16M);
	assert_int_equal(an_hpte_pgsz(v, 0x7000, NULL), AN_PG_4K_64K);
	assert_int_equal(an_hpte_pgsz(v, 0x38000, NULL), AN_PG_4K_16M);
	assert_int_equal(an_hpte_pgsz(v, 0x8000, NULL), AN_PG_64K_16M);
}

static void test_encode_table(void **state)
{
	(void)state;
	uint64_t slots = 1u << 17; /* two runs > 65535 */
	uint64_t *tab = calloc(slots * 2, sizeof(uint64_t));
	for (uint64_t i = 0; i < 70000; i++) {
		tab[2 * i] = 0x41 | (i << 7);
		tab[2 * i + 1] = i;
	}
	tab[2 * 100000] = 1;
	uint8_t *out;
	size_t len;
	assert_int_equal(an_htab_encode_table(tab, slots, &out, &len), 0);
	/* be32 0, chunk 65535, chunk 4465, chunk 1, end mark */
	assert_int_equal(len, 4 + 3 * 8 + 70001 * 16 + 8);
	assert_int_equal(hm_load_be32(out), 0);
	assert_int_equal(hm_load_be16(out + 8), 65535);
	assert_int_equal(hm_load_be64(out + 12) & 0x40, 0);
	free(out);
	free(tab);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_basic_golden),
		cmocka_unit_test(test_error_vectors),
		cmocka_unit_test(test_vmdesc_lies),
		cmocka_unit_test(test_vmdesc_caps),
		cmocka_unit_test(test_no_vmdesc),
		cmocka_unit_test(test_truncated_everywhere),
		cmocka_unit_test(test_replay_and_rewrite_property),
		cmocka_unit_test(test_mutations),
		cmocka_unit_test(test_verify_mismatch),
		cmocka_unit_test(test_adversarial),
		cmocka_unit_test(test_configuration),
		cmocka_unit_test(test_hpte_check),
		cmocka_unit_test(test_16g_page),
		cmocka_unit_test(test_encode_table),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
