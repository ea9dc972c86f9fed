/* SPDX-License-Identifier: MIT */
/*
 * The vmdesc: QEMU's JSON description of every non-live section, appended
 * after EOF. Compiled once into a tree of field descriptions, then used to
 * skip or decode FULL payloads. The vmdesc is a map, not a proof: every
 * size it gives is checked against the bytes left, every listed subsection
 * must be present with its name, and a struct must take exactly the bytes it
 * claims, so a lying vmdesc gives an error at an offset, never a crash.
 */
#include "an_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* -------------------------------------------------------------- prescan */

int an_vmdesc_prescan(const char *s, size_t n, int64_t base_off, hm_error_t *err)
{
	if (n > AN_VMDESC_MAX_BYTES)
		return hm_error_set(err, HM_E_RANGE, base_off,
				    "%zu bytes of JSON, more than the cap of %zu bytes", n, AN_VMDESC_MAX_BYTES);
	/*
	 * Every value starts either at the top, after '[' or ',' in an array,
	 * or after ':' in an object: counting '[', ':' and ',' (outside
	 * strings) plus one bounds the values jansson would build.
	 */
	uint64_t values = 1;
	unsigned depth = 0;
	bool in_str = false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (in_str) {
			if (c == '\\')
				i++;
			else if (c == '"')
				in_str = false;
			continue;
		}
		switch (c) {
		case '"':
			in_str = true;
			break;
		case '{':
		case '[':
			if (++depth > AN_VMDESC_MAX_JSON_DEPTH)
				return hm_error_set(err, HM_E_RANGE, base_off + (int64_t)i,
						    "JSON nested deeper than the cap of %d levels at byte %zu",
						    AN_VMDESC_MAX_JSON_DEPTH, i);
			values += c == '[';
			break;
		case '}':
		case ']':
			depth -= depth > 0;
			break;
		case ':':
		case ',':
			values++;
			break;
		default:
			break;
		}
		if (values > AN_VMDESC_MAX_VALUES)
			return hm_error_set(err, HM_E_RANGE, base_off + (int64_t)i,
					    "more than the cap of %" PRIu64 " JSON values (at byte %zu)",
					    AN_VMDESC_MAX_VALUES, i);
	}
	return 0;
}

/* -------------------------------------------------------------- compile */

static void vdesc_fini(struct an_vdesc *d)
{
	if (!d)
		return;
	for (size_t i = 0; i < d->nfields; i++) {
		if (d->fields[i].sdesc) {
			vdesc_fini(d->fields[i].sdesc);
			free(d->fields[i].sdesc);
		}
	}
	free(d->fields);
	for (size_t i = 0; i < d->nsubs; i++)
		vdesc_fini(&d->subs[i]);
	free(d->subs);
	memset(d, 0, sizeof(*d));
}

static enum an_vkind kind_of(const char *type, uint64_t size)
{
	static const char *const ints[] = {"int8", "int16", "int32", "int64", "int32 equal",
					   "int64 equal", NULL};
	static const char *const uints[] = {"uint8", "uint16", "uint32", "uint64", "uint8 equal",
					    "uint16 equal", "uint32 equal", "uint64 equal", NULL};
	if (strcmp(type, "struct") == 0)
		return AN_VK_STRUCT;
	if (strcmp(type, "nullptr") == 0)
		return AN_VK_NULLPTR;
	if (size != 1 && size != 2 && size != 4 && size != 8)
		return AN_VK_GENERIC;
	if (strcmp(type, "bool") == 0)
		return size == 1 ? AN_VK_BOOL : AN_VK_GENERIC;
	if (strcmp(type, "int32 le") == 0)
		return AN_VK_INT_LE;
	for (int i = 0; ints[i]; i++)
		if (strcmp(type, ints[i]) == 0)
			return AN_VK_INT;
	for (int i = 0; uints[i]; i++)
		if (strcmp(type, uints[i]) == 0)
			return AN_VK_UINT;
	return AN_VK_GENERIC;
}

static int get_u64(json_t *o, const char *key, bool required, uint64_t max, uint64_t *out,
		   const char *where, int64_t off, hm_error_t *err)
{
	json_t *v = json_object_get(o, key);
	if (!v) {
		if (required)
			return hm_error_set(err, HM_E_FORMAT, off, "vmdesc: %s: '%s' missing", where, key);
		return 1;
	}
	if (!json_is_integer(v) || json_integer_value(v) < 0 ||
	    (uint64_t)json_integer_value(v) > max)
		return hm_error_set(err, HM_E_FORMAT, off, "vmdesc: %s: '%s' is not an integer in 0..%" PRIu64,
				    where, key, max);
	*out = (uint64_t)json_integer_value(v);
	return 0;
}

struct dup_ctx {
	const struct an_vdesc *d;
	const char *name;
};

static bool same_name(void *opaque, uint32_t i)
{
	const struct dup_ctx *c = opaque;
	return strcmp(c->d->fields[i].name, c->name) == 0;
}

static int vdesc_compile(json_t *o, struct an_vdesc *d, int depth, bool top, int64_t off, hm_error_t *err);

/* Compiles field #i of the device described as `where`. */
static int vdesc_compile_field(json_t *f, struct an_vfield *vf, size_t i, const char *where, int depth,
			       int64_t off, hm_error_t *err)
{
	uint64_t u;
	int rc;
	vf->index = -1;
	vf->dup_of = -1;
	vf->count = 1;
	if (!json_is_object(f) || !json_is_string(json_object_get(f, "name")) ||
	    !json_is_string(json_object_get(f, "type")))
		return hm_error_set(err, HM_E_FORMAT, off, "vmdesc: %s: field #%zu lacks a 'name' or 'type' string",
				    where, i);
	vf->name = json_string_value(json_object_get(f, "name"));
	vf->type = json_string_value(json_object_get(f, "type"));
	char fwhere[600];
	char qf[HM_ESC_LEN(100)];
	snprintf(fwhere, sizeof(fwhere), "%s field '%s'", where,
		 hm_escape(vf->name, strlen(vf->name), 0, qf, sizeof(qf)));
	if ((rc = get_u64(f, "size", true, UINT32_MAX, &vf->size, fwhere, off, err)) < 0)
		return rc;
	if ((rc = get_u64(f, "array_len", false, UINT32_MAX, &vf->count, fwhere, off, err)) < 0)
		return rc;
	if ((rc = get_u64(f, "index", false, UINT32_MAX, &u, fwhere, off, err)) < 0)
		return rc;
	if (rc == 0)
		vf->index = (int64_t)u;
	vf->kind = kind_of(vf->type, vf->size);
	if (vf->kind != AN_VK_STRUCT)
		return 0;
	json_t *st = json_object_get(f, "struct");
	if (!st)
		return hm_error_set(err, HM_E_FORMAT, off, "vmdesc: %s: type struct without 'struct'", fwhere);
	vf->sdesc = calloc(1, sizeof(*vf->sdesc));
	if (!vf->sdesc)
		return hm_error_set(err, -ENOMEM, off, "vmdesc: out of memory");
	return vdesc_compile(st, vf->sdesc, depth + 1, false, off, err);
}

/* Fields sharing a name merge their values (QEMU's analyser does so);
 * find each field's first namesake once, here, with a hash. */
static int vdesc_mark_dups(struct an_vdesc *d, int64_t off, hm_error_t *err)
{
	if (d->nfields < 2)
		return 0;
	struct an_index ix = {0};
	struct dup_ctx dc = {d, NULL};
	int rc = 0;
	for (size_t i = 0; i < d->nfields; i++) {
		dc.name = d->fields[i].name;
		uint64_t h = an_hash_str(dc.name, 0);
		int64_t first = an_index_find(&ix, h, same_name, &dc);
		d->fields[i].dup_of = first;
		if (first >= 0) {
			d->has_dups = true;
		} else if (an_index_put(&ix, h, (uint32_t)i) < 0) {
			rc = hm_error_set(err, -ENOMEM, off, "vmdesc: out of memory");
			break;
		}
	}
	an_index_free(&ix);
	return rc;
}

/* The optional array member `key` of o (absent: none), and zeroed room for
 * one compiled element of elem bytes per entry in *mem (NULL when empty). */
static int vdesc_array(json_t *o, const char *key, size_t elem, json_t **arr, size_t *n, void **mem,
		       const char *where, int64_t off, hm_error_t *err)
{
	*arr = json_object_get(o, key);
	*n = 0;
	if (*arr && !json_is_array(*arr))
		return hm_error_set(err, HM_E_FORMAT, off, "vmdesc: %s: '%s' is not an array", where, key);
	*n = *arr ? json_array_size(*arr) : 0;
	if (*n && !(*mem = calloc(*n, elem)))
		return hm_error_set(err, -ENOMEM, off, "vmdesc: out of memory");
	return 0;
}

/* Compiles the 'fields' array of the device described as `where`. */
static int vdesc_compile_fields(json_t *o, struct an_vdesc *d, const char *where, int depth, int64_t off,
				hm_error_t *err)
{
	json_t *fields;
	size_t nf;
	void *mem = NULL;
	int rc = vdesc_array(o, "fields", sizeof(*d->fields), &fields, &nf, &mem, where, off, err);
	d->fields = mem;
	if (rc < 0)
		return rc;
	for (size_t i = 0; i < nf; i++) {
		d->nfields = i + 1;
		rc = vdesc_compile_field(json_array_get(fields, i), &d->fields[i], i, where, depth, off, err);
		if (rc < 0)
			return rc;
	}
	return vdesc_mark_dups(d, off, err);
}

/* Compiles the 'subsections' array of the device described as `where`. */
static int vdesc_compile_subs(json_t *o, struct an_vdesc *d, const char *where, int depth, int64_t off,
			      hm_error_t *err)
{
	json_t *subs;
	size_t ns;
	void *mem = NULL;
	int rc = vdesc_array(o, "subsections", sizeof(*d->subs), &subs, &ns, &mem, where, off, err);
	d->subs = mem;
	if (rc < 0)
		return rc;
	for (size_t i = 0; i < ns; i++) {
		d->nsubs = i + 1;
		rc = vdesc_compile(json_array_get(subs, i), &d->subs[i], depth + 1, false, off, err);
		if (rc < 0)
			return rc;
		if (strlen(d->subs[i].vmsd_name) > 255)
			return hm_error_set(err, HM_E_FORMAT, off, "vmdesc: %s: subsection name longer than 255",
					    where);
	}
	return 0;
}

static int vdesc_compile(json_t *o, struct an_vdesc *d, int depth, bool top, int64_t off, hm_error_t *err)
{
	char where[300];
	memset(d, 0, sizeof(*d));
	d->version = -1;
	if (!json_is_object(o))
		return hm_error_set(err, HM_E_FORMAT, off, "vmdesc: a device description is not an object");
	if (depth > AN_VDESC_MAX_DEPTH)
		return hm_error_set(err, HM_E_RANGE, off, "vmdesc: nesting deeper than %d", AN_VDESC_MAX_DEPTH);
	json_t *js;
	if ((js = json_object_get(o, "name")) && json_is_string(js))
		d->name = json_string_value(js);
	if ((js = json_object_get(o, "vmsd_name")) && json_is_string(js))
		d->vmsd_name = json_string_value(js);
	if (top && !d->name)
		return hm_error_set(err, HM_E_FORMAT, off, "vmdesc: a device has no 'name'");
	if (!top && !d->vmsd_name)
		return hm_error_set(err, HM_E_FORMAT, off, "vmdesc: a struct or subsection has no 'vmsd_name'");
	const char *dn = d->name ? d->name : d->vmsd_name;
	char q[HM_ESC_LEN(120)];
	snprintf(where, sizeof(where), "device '%s'", hm_escape(dn, strlen(dn), 0, q, sizeof(q)));
	uint64_t u;
	int rc;
	if (top) {
		if ((rc = get_u64(o, "instance_id", true, UINT32_MAX, &u, where, off, err)) < 0)
			return rc;
		d->instance_id = (uint32_t)u;
	}
	if ((rc = get_u64(o, "version", false, UINT32_MAX, &u, where, off, err)) < 0)
		return rc;
	if (rc == 0)
		d->version = (int64_t)u;
	if ((rc = vdesc_compile_fields(o, d, where, depth, off, err)) < 0)
		return rc;
	return vdesc_compile_subs(o, d, where, depth, off, err);
}

/* qsort has no context argument in C11: the array being sorted is set just
 * before the call (compile runs in one thread per vmdesc; see note). */
static _Thread_local const struct an_vdesc *sort_devs;

static int cmp_key(const char *na, uint32_t ia, const char *nb, uint32_t ib)
{
	int c = strcmp(na, nb);
	if (c)
		return c;
	return ia < ib ? -1 : ia > ib;
}

static int cmp_dev(const void *a, const void *b)
{
	const struct an_vdesc *x = &sort_devs[*(const uint32_t *)a], *y = &sort_devs[*(const uint32_t *)b];
	return cmp_key(x->name, x->instance_id, y->name, y->instance_id);
}

int an_vmdesc_compile(json_t *root, struct an_vmdesc *vd, int64_t off, hm_error_t *err)
{
	memset(vd, 0, sizeof(*vd));
	if (!json_is_object(root))
		return hm_error_set(err, HM_E_FORMAT, off, "vmdesc: not a JSON object");
	vd->root = json_incref(root);
	uint64_t ps = 0;
	int rc = get_u64(root, "page_size", false, UINT32_MAX, &ps, "top level", off, err);
	if (rc < 0)
		return rc;
	if (rc == 0 && (ps < 512 || (ps & (ps - 1)) != 0))
		return hm_error_set(err, HM_E_FORMAT, off, "vmdesc: page_size %" PRIu64 " is not a power of two >= 512",
				    ps);
	vd->page_size = (uint32_t)ps;
	json_t *devs = json_object_get(root, "devices");
	if (!json_is_array(devs))
		return hm_error_set(err, HM_E_FORMAT, off, "vmdesc: 'devices' missing or not an array");
	size_t n = json_array_size(devs);
	if (n) {
		vd->devs = calloc(n, sizeof(*vd->devs));
		if (!vd->devs)
			return hm_error_set(err, -ENOMEM, off, "vmdesc: out of memory");
	}
	for (size_t i = 0; i < n; i++) {
		vd->ndev = i + 1;
		if ((rc = vdesc_compile(json_array_get(devs, i), &vd->devs[i], 0, true, off, err)) < 0)
			return rc;
	}
	vd->order = malloc((n ? n : 1) * sizeof(*vd->order));
	if (!vd->order)
		return hm_error_set(err, -ENOMEM, off, "vmdesc: out of memory");
	for (size_t i = 0; i < n; i++)
		vd->order[i] = (uint32_t)i;
	sort_devs = vd->devs;
	qsort(vd->order, n, sizeof(*vd->order), cmp_dev);
	for (size_t i = 1; i < n; i++) {
		const struct an_vdesc *a = &vd->devs[vd->order[i - 1]], *b = &vd->devs[vd->order[i]];
		if (a->instance_id == b->instance_id && strcmp(a->name, b->name) == 0) {
			char q[HM_ESC_LEN(120)];
			return hm_error_set(err, HM_E_FORMAT, off, "vmdesc: device '%s' instance %u described twice",
					    hm_escape(a->name, strlen(a->name), 0, q, sizeof(q)), a->instance_id);
		}
	}
	json_t *cfg = json_object_get(root, "configuration");
	if (cfg) {
		vd->config = calloc(1, sizeof(*vd->config));
		if (!vd->config)
			return hm_error_set(err, -ENOMEM, off, "vmdesc: out of memory");
		if ((rc = vdesc_compile(cfg, vd->config, 0, false, off, err)) < 0)
			return rc;
	}
	return 0;
}

void an_vmdesc_free(struct an_vmdesc *vd)
{
	if (!vd)
		return;
	for (size_t i = 0; i < vd->ndev; i++)
		vdesc_fini(&vd->devs[i]);
	free(vd->devs);
	free(vd->order);
	if (vd->config) {
		vdesc_fini(vd->config);
		free(vd->config);
	}
	json_decref(vd->root);
	memset(vd, 0, sizeof(*vd));
}

const struct an_vdesc *an_vmdesc_find(const struct an_vmdesc *vd, const char *name,
				      uint32_t instance_id)
{
	if (!vd || !vd->order)
		return NULL;
	size_t lo = 0, hi = vd->ndev;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct an_vdesc *d = &vd->devs[vd->order[mid]];
		int c = cmp_key(name, instance_id, d->name, d->instance_id);
		if (c == 0)
			return d;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

/* ------------------------------------------------------------- builtins */

/*
 * Layouts this project knows without a vmdesc: our own `spapr` (versions 1 to
 * 3, wire-format.md §3) and `hptmig/verify` (§5). Real QEMU's `spapr` adds
 * subsections that only its vmdesc describes; a walk meeting one stops.
 */
static const char *const builtin_json[] = {
	"{\"name\":\"spapr\",\"instance_id\":0,\"vmsd_name\":\"spapr\",\"version\":1,\"fields\":["
	"{\"name\":\"unused\",\"type\":\"unused_buffer\",\"size\":4},"
	"{\"name\":\"rtc_offset\",\"type\":\"uint64\",\"size\":8}]}",
	"{\"name\":\"spapr\",\"instance_id\":0,\"vmsd_name\":\"spapr\",\"version\":2,\"fields\":["
	"{\"name\":\"unused\",\"type\":\"unused_buffer\",\"size\":4},"
	"{\"name\":\"rtc_offset\",\"type\":\"uint64\",\"size\":8},"
	"{\"name\":\"tb\",\"type\":\"struct\",\"size\":16,\"struct\":{\"vmsd_name\":\"timebase\",\"version\":1,"
	"\"fields\":[{\"name\":\"guest_timebase\",\"type\":\"uint64\",\"size\":8},"
	"{\"name\":\"time_of_the_day_ns\",\"type\":\"int64\",\"size\":8}]}}]}",
	"{\"name\":\"spapr\",\"instance_id\":0,\"vmsd_name\":\"spapr\",\"version\":3,\"fields\":["
	"{\"name\":\"tb\",\"type\":\"struct\",\"size\":16,\"struct\":{\"vmsd_name\":\"timebase\",\"version\":1,"
	"\"fields\":[{\"name\":\"guest_timebase\",\"type\":\"uint64\",\"size\":8},"
	"{\"name\":\"time_of_the_day_ns\",\"type\":\"int64\",\"size\":8}]}}]}",
	"{\"name\":\"hptmig/verify\",\"instance_id\":0,\"vmsd_name\":\"hptmig/verify\",\"version\":1,\"fields\":["
	"{\"name\":\"htab_shift\",\"type\":\"uint32\",\"size\":4},"
	"{\"name\":\"valid\",\"type\":\"uint64\",\"size\":8},"
	"{\"name\":\"digest\",\"type\":\"buffer\",\"size\":32}]}",
	"{\"name\":\"hptmig/verify\",\"instance_id\":0,\"vmsd_name\":\"hptmig/verify\",\"version\":2,\"fields\":["
	"{\"name\":\"htab_shift\",\"type\":\"uint32\",\"size\":4},"
	"{\"name\":\"valid\",\"type\":\"uint64\",\"size\":8},"
	"{\"name\":\"slots_per_block\",\"type\":\"uint32 equal\",\"size\":4},"
	"{\"name\":\"root\",\"type\":\"buffer\",\"size\":32}]}",
};
#define N_BUILTIN (sizeof(builtin_json) / sizeof(builtin_json[0]))

static struct {
	bool done;
	bool ok;
	json_t *roots[N_BUILTIN];
	struct an_vdesc d[N_BUILTIN];
} builtins;

static void builtins_init(void)
{
	/* Compiled once (pthread_once below); constant afterwards. */
	builtins.ok = true;
	for (size_t i = 0; i < N_BUILTIN; i++) {
		hm_error_t e;
		hm_error_clear(&e);
		builtins.roots[i] = json_loads(builtin_json[i], 0, NULL);
		if (!builtins.roots[i] || vdesc_compile(builtins.roots[i], &builtins.d[i], 0, true, 0, &e) < 0)
			builtins.ok = false;
	}
	builtins.done = true;
}

static pthread_once_t builtins_once = PTHREAD_ONCE_INIT;

const struct an_vdesc *an_builtin_find(const char *name, uint32_t instance_id, uint32_t version)
{
	pthread_once(&builtins_once, builtins_init);
	if (!builtins.ok)
		return NULL;
	for (size_t i = 0; i < N_BUILTIN; i++)
		if (builtins.d[i].instance_id == instance_id && builtins.d[i].version == (int64_t)version &&
		    strcmp(builtins.d[i].name, name) == 0)
			return &builtins.d[i];
	return NULL;
}

/* ----------------------------------------------------------------- walk */

static void frame_push(struct an_walk *w, const char *name, int64_t index)
{
	if (w->nframes < sizeof(w->frames) / sizeof(w->frames[0])) {
		w->frames[w->nframes].name = name;
		w->frames[w->nframes].index = index;
	}
	w->nframes++;
}

/* One value as QEMU's analyser shows it: integers as 0x%0*x (negative
 * signed ones followed by their decimal value), booleans, "nullptr", and
 * anything else as hex bytes separated by spaces. */
static struct an_node *value_node(struct an_arena *a, const struct an_vfield *f, const uint8_t *p)
{
	static const char hx[] = "0123456789abcdef";
	char buf[64];
	uint64_t u = 0;
	switch (f->kind) {
	case AN_VK_NULLPTR:
		return an_node_new(a, AN_NODE_STR, "nullptr", 7);
	case AN_VK_BOOL:
		return an_node_new(a, p[0] ? AN_NODE_TRUE : AN_NODE_FALSE, NULL, 0);
	case AN_VK_INT:
	case AN_VK_UINT:
	case AN_VK_INT_LE: {
		for (uint64_t i = 0; i < f->size; i++) {
			uint64_t b = f->kind == AN_VK_INT_LE ? p[f->size - 1 - i] : p[i];
			u = (u << 8) | b;
		}
		size_t nd = (size_t)f->size * 2, n = 0;
		buf[n++] = '0';
		buf[n++] = 'x';
		for (size_t i = 0; i < nd; i++)
			buf[n++] = hx[(u >> ((nd - 1 - i) * 4)) & 15];
		bool neg = f->kind != AN_VK_UINT && ((u >> (f->size * 8 - 1)) & 1);
		if (neg) {
			int64_t sv = f->size < 8 ? (int64_t)(u | (~UINT64_C(0) << (f->size * 8))) : (int64_t)u;
			int k = snprintf(buf + n, sizeof(buf) - n, " (%" PRId64 ")", sv);
			if (k > 0)
				n += (size_t)k;
		}
		return an_node_new(a, AN_NODE_STR, buf, n);
	}
	default: {
		size_t n = (size_t)f->size;
		struct an_node *node = an_node_new(a, AN_NODE_STR, NULL, 0);
		char *s = node ? an_arena_alloc(a, n ? n * 3 : 1) : NULL;
		if (!s)
			return NULL;
		for (size_t i = 0; i < n; i++) {
			s[i * 3] = hx[p[i] >> 4];
			s[i * 3 + 1] = hx[p[i] & 15];
			s[i * 3 + 2] = ' ';
		}
		node->str = s;
		node->len = n ? n * 3 - 1 : 0;
		return node;
	}
	}
}

/* Every field, struct element and decoded value counts: a real stream
 * needs about one visit per byte at most, a hostile vmdesc (millions of
 * empty fields repeated by arrays) must not run long. */
static int walk_count(struct an_walk *w)
{
	struct an_private *pv = w->r->priv;
	if (++pv->work <= pv->work_max)
		return 0;
	return an_fail(w, HM_E_RANGE, (int64_t)w->pos, "the vmdesc describes more than %llu fields for a %llu-byte stream",
		       (unsigned long long)pv->work_max, (unsigned long long)w->end);
}

/* A field of type struct: each element walked through its description and
 * checked to take the size the vmdesc says. The field's frame is left
 * pushed on failure, so the error names the path. */
static int walk_struct_field(struct an_walk *w, const struct an_vfield *f, int depth, struct an_node *obj,
			     struct an_node **slot, bool builtin)
{
	bool arr = f->index >= 0 || f->count > 1;
	/* Elements of a zero-size struct are all empty: check one. */
	uint64_t count = f->size == 0 && f->count > 1 ? 1 : f->count;
	if (f->size && f->count > (w->end - w->pos) / f->size)
		return an_fail(w, HM_E_TRUNCATED, (int64_t)w->pos,
			       "field '%s': %" PRIu64 " structs of %" PRIu64 " bytes, only %zu bytes left", f->name,
			       f->count, f->size, w->end - w->pos);
	for (uint64_t k = 0; k < count; k++) {
		int rc;
		if (k && (rc = walk_count(w)) < 0)
			return rc;
		frame_push(w, f->name, f->count > 1 ? (int64_t)k : f->index);
		size_t start = w->pos;
		struct an_node *sub = obj ? an_node_new(w->arena, AN_NODE_OBJ, NULL, 0) : NULL;
		if (obj && !sub)
			return an_fail(w, -ENOMEM, (int64_t)w->pos, "out of memory");
		rc = an_vmstate_walk(w, f->sdesc, depth + 1, sub, builtin);
		if (rc < 0 || w->stop_sub) {
			w->nframes--;
			return rc;
		}
		if ((uint64_t)(w->pos - start) != f->size)
			return an_fail(w, HM_E_FORMAT, (int64_t)start,
				       "struct takes %zu bytes but the vmdesc says %" PRIu64
				       " (the vmdesc does not match the stream)",
				       w->pos - start, f->size);
		if (obj && an_node_put(w->arena, obj, f->name, sub, arr, slot) < 0)
			return an_fail(w, -ENOMEM, (int64_t)w->pos, "out of memory");
		w->nframes--;
	}
	return 0;
}

/* A field of plain values (one, or an array): consumed, and shown in obj. */
static int walk_value_field(struct an_walk *w, const struct an_vfield *f, struct an_node *obj,
			    struct an_node **slot)
{
	frame_push(w, f->name, f->index);
	if (f->count && f->size > UINT64_MAX / f->count)
		return an_fail(w, HM_E_RANGE, (int64_t)w->pos, "size %" PRIu64 " x array_len %" PRIu64 " overflows",
			       f->size, f->count);
	uint64_t total = f->size * f->count;
	if (!an_need(w, total, "field"))
		return w->err->code;
	if (obj) {
		int rc = 0;
		if (f->count > 1) {
			/* an array of empty values shows one of them */
			uint64_t count = f->size == 0 ? 1 : f->count;
			for (uint64_t k = 0; k < count && rc == 0; k++)
				rc = an_node_put(w->arena, obj, f->name,
						 value_node(w->arena, f, w->buf + w->pos + k * f->size), true, slot);
		} else {
			rc = an_node_put(w->arena, obj, f->name, value_node(w->arena, f, w->buf + w->pos),
					 f->index >= 0, slot);
		}
		if (rc < 0)
			return an_fail(w, -ENOMEM, (int64_t)w->pos, "out of memory");
	}
	w->pos += (size_t)total;
	w->nframes--;
	return 0;
}

/* One subsection the vmdesc lists: its header must name it, then its
 * fields are walked like a device's. */
static int walk_subsection(struct an_walk *w, const struct an_vdesc *s, int depth, struct an_node *obj,
			   bool builtin)
{
	frame_push(w, s->vmsd_name, -1);
	size_t at = w->pos;
	if (!an_need(w, 2, "subsection header"))
		return w->err->code;
	uint8_t t = an_u8(w);
	if (t != QEMU_VM_SUBSECTION)
		return an_fail(w, HM_E_FORMAT, (int64_t)at,
			       "subsection listed in the vmdesc is missing: expected byte 0x05, found 0x%02x", t);
	uint8_t nl = an_u8(w);
	if (!an_need(w, (uint64_t)nl + 4, "subsection name and version"))
		return w->err->code;
	size_t sl = strlen(s->vmsd_name);
	if (nl != sl || memcmp(w->buf + w->pos, s->vmsd_name, sl) != 0) {
		char q[HM_ESC_LEN(255)];
		return an_fail(w, HM_E_FORMAT, (int64_t)at, "subsection '%s' found where the vmdesc lists this one",
			       hm_escape(w->buf + w->pos, nl, 0, q, sizeof(q)));
	}
	w->pos += nl;
	uint32_t ver = an_be32(w);
	if (s->version >= 0 && ver != (uint64_t)s->version)
		return an_fail(w, HM_E_VERSION, (int64_t)w->pos - 4, "subsection version %u, the vmdesc says %" PRId64,
			       ver, s->version);
	struct an_node *sub = obj ? an_node_new(w->arena, AN_NODE_OBJ, NULL, 0) : NULL;
	if (obj && !sub)
		return an_fail(w, -ENOMEM, (int64_t)w->pos, "out of memory");
	int rc = an_vmstate_walk(w, s, depth + 1, sub, builtin);
	if (rc < 0 || w->stop_sub)
		return rc;
	if (obj && an_node_put(w->arena, obj, s->vmsd_name, sub, false, NULL) < 0)
		return an_fail(w, -ENOMEM, (int64_t)w->pos, "out of memory");
	w->nframes--;
	return 0;
}

int an_vmstate_walk(struct an_walk *w, const struct an_vdesc *d, int depth, struct an_node *obj,
		    bool builtin)
{
	if (depth > AN_VDESC_MAX_DEPTH)
		return an_fail(w, HM_E_RANGE, (int64_t)w->pos, "nesting deeper than %d", AN_VDESC_MAX_DEPTH);
	/* The node put under each field's name in obj (only needed when names
	 * repeat; otherwise every field's name is new in obj). */
	struct an_node **slots = NULL;
	if (obj && d->has_dups) {
		slots = an_arena_alloc(w->arena, d->nfields * sizeof(*slots));
		if (!slots)
			return an_fail(w, -ENOMEM, (int64_t)w->pos, "out of memory");
		memset(slots, 0, d->nfields * sizeof(*slots));
	}
	int rc = 0;
	for (size_t i = 0; i < d->nfields && rc == 0 && !w->stop_sub; i++) {
		const struct an_vfield *f = &d->fields[i];
		struct an_node *local = NULL;
		struct an_node **slot = slots ? &slots[f->dup_of >= 0 ? (size_t)f->dup_of : i] : &local;
		if ((rc = walk_count(w)) < 0)
			break;
		if (f->kind == AN_VK_STRUCT)
			rc = walk_struct_field(w, f, depth, obj, slot, builtin);
		else
			rc = walk_value_field(w, f, obj, slot);
	}
	for (size_t i = 0; i < d->nsubs && rc == 0 && !w->stop_sub; i++)
		rc = walk_subsection(w, &d->subs[i], depth, obj, builtin);
	if (rc < 0 || w->stop_sub)
		return rc;
	if (builtin && depth == 0 && w->pos < w->end && w->buf[w->pos] == QEMU_VM_SUBSECTION) {
		/* A subsection our built-in layout does not describe: stop cleanly. */
		w->stop_sub = true;
	}
	return 0;
}
