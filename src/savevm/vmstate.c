/* SPDX-License-Identifier: MIT */
/*
 * The generic vmstate engine: saves and loads any struct described by a
 * vmstate_desc_t (fields, versions, test predicates, arrays, nested
 * structs, subsections, hooks) and writes its vmdesc JSON in QEMU's schema.
 * A load must never trust the stream: every rule is checked and every
 * failure names the field path and the byte offset.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "savevm/savevm_int.h"

#define VMSTATE_MAX_DEPTH 16
#define VMSTATE_MAX_ARRAY (1u << 26)

/* ------------------------------------------------------------ helpers */

static bool field_exists(const vmstate_field_t *fl, void *opaque, uint32_t v)
{
	if (v < fl->version_min)
		return false;
	if (fl->version_below && v >= fl->version_below)
		return false;
	if (fl->exists && !fl->exists(opaque, v))
		return false;
	return true;
}

static uint32_t field_count(const vmstate_field_t *fl)
{
	return fl->array_len > 1 ? fl->array_len : 1;
}

static size_t scalar_size(vmstate_type_t t)
{
	switch (t) {
	case VMS_U8:
	case VMS_I8:
		return 1;
	case VMS_U16:
	case VMS_I16:
		return 2;
	case VMS_U32:
	case VMS_I32:
		return 4;
	case VMS_U64:
	case VMS_I64:
		return 8;
	case VMS_BOOL:
		return sizeof(bool);
	default:
		return 0;
	}
}

static const char *type_name(const vmstate_field_t *fl)
{
	bool eq = fl->flags & VMS_F_EQUAL;
	switch (fl->type) {
	case VMS_U8: return eq ? "uint8 equal" : "uint8";
	case VMS_U16: return eq ? "uint16 equal" : "uint16";
	case VMS_U32: return eq ? "uint32 equal" : "uint32";
	case VMS_U64: return eq ? "uint64 equal" : "uint64";
	case VMS_I8: return eq ? "int8 equal" : "int8";
	case VMS_I16: return eq ? "int16 equal" : "int16";
	case VMS_I32: return eq ? "int32 equal" : "int32";
	case VMS_I64: return eq ? "int64 equal" : "int64";
	case VMS_BOOL: return "bool";
	case VMS_BUFFER: return "buffer";
	case VMS_UNUSED: return "unused_buffer";
	case VMS_STRUCT: return "struct";
	case VMS_VBUFFER: return "buffer";
	case VMS_BITMAP: return "bitmap";
	default: return "unknown";
	}
}

/* Does a struct description (or any nested one) have subsections? QEMU then
 * describes each array element separately (no "array_len"). */
static bool has_subsections(const vmstate_desc_t *d, int depth)
{
	if (!d || depth > VMSTATE_MAX_DEPTH)
		return false;
	if (d->subsections && d->subsections[0])
		return true;
	for (const vmstate_field_t *fl = d->fields; fl && fl->name; fl++)
		if (fl->type == VMS_STRUCT && has_subsections(fl->vmsd, depth + 1))
			return true;
	return false;
}

/*
 * The channel failed under field path (nothing below has reported it: a
 * failing call returns its non-zero code and every caller passes that up
 * unchanged): put the path in front of the channel's error, once, and
 * return its code. The public entry points copy it into their hm_error_t.
 */
static int field_fail(mig_file_t *f, const char *path)
{
	if (path && path[0])
		return mig_file_error_prefix(f, "field '%s': ", path);
	return mig_file_status(f);
}

/* A hook failed: its error becomes the channel's (offset: here, unless
 * set; a generic one naming the hook when it left none). */
static int hook_fail(mig_file_t *f, const hm_error_t *herr, int rc, const char *what, const char *name)
{
	if (!herr->code)
		return mig_file_set_error(f, rc, "%s hook of '%s' failed: %s", what, name, hm_err_str(rc));
	hm_error_t e = *herr;
	if (e.offset < 0)
		e.offset = (int64_t)mig_file_offset(f);
	return mig_file_latch_error(f, &e);
}

/* ----------------------------------------------------------------- check */

static int check_desc(const vmstate_desc_t *d, int depth, hm_error_t *err)
{
	if (depth > VMSTATE_MAX_DEPTH)
		return hm_error_set(err, -EINVAL, -1, "vmstate descriptions nested deeper than %d",
				    VMSTATE_MAX_DEPTH);
	if (!d || !d->name || !d->fields)
		return hm_error_set(err, -EINVAL, -1, "vmstate description without name or fields");
	size_t nl = strlen(d->name);
	if (nl == 0 || nl > SAVEVM_IDSTR_MAX)
		return hm_error_set(err, -EINVAL, -1, "vmstate '%s': name length %zu not in 1..255",
				    d->name, nl);
	if (d->minimum_version_id > d->version_id)
		return hm_error_set(err, -EINVAL, -1,
				    "vmstate '%s': minimum version %u above version %u", d->name,
				    d->minimum_version_id, d->version_id);
	for (const vmstate_field_t *fl = d->fields; fl->name; fl++) {
		size_t ss = scalar_size(fl->type);
		if (fl->array_len > VMSTATE_MAX_ARRAY)
			return hm_error_set(err, -EINVAL, -1, "vmstate '%s' field '%s': array_len %u too large",
					    d->name, fl->name, fl->array_len);
		switch (fl->type) {
		case VMS_U8: case VMS_U16: case VMS_U32: case VMS_U64:
		case VMS_I8: case VMS_I16: case VMS_I32: case VMS_I64: case VMS_BOOL:
			if (fl->size != ss)
				return hm_error_set(err, -EINVAL, -1,
						    "vmstate '%s' field '%s': member size %zu does not match type %s (%zu)",
						    d->name, fl->name, fl->size, type_name(fl), ss);
			break;
		case VMS_BUFFER:
		case VMS_UNUSED:
			if (fl->size == 0 || fl->array_len > 1)
				return hm_error_set(err, -EINVAL, -1,
						    "vmstate '%s' field '%s': buffer needs a size and no array",
						    d->name, fl->name);
			if (fl->flags & VMS_F_EQUAL)
				return hm_error_set(err, -EINVAL, -1,
						    "vmstate '%s' field '%s': EQUAL applies to integers only",
						    d->name, fl->name);
			break;
		case VMS_VBUFFER:
		case VMS_BITMAP:
			if (fl->size == 0 || fl->array_len > 1 || (fl->flags & VMS_F_EQUAL) ||
			    (fl->type == VMS_BITMAP && fl->size % 8 != 0) ||
			    (fl->type == VMS_VBUFFER && fl->size > UINT32_MAX))
				return hm_error_set(err, -EINVAL, -1,
						    "vmstate '%s' field '%s': bad size %zu, array or flags for %s",
						    d->name, fl->name, fl->size, type_name(fl));
			break;
		case VMS_STRUCT: {
			if (!fl->vmsd)
				return hm_error_set(err, -EINVAL, -1, "vmstate '%s' field '%s': struct without vmsd",
						    d->name, fl->name);
			if (fl->array_len > 1 && fl->size == 0)
				return hm_error_set(err, -EINVAL, -1,
						    "vmstate '%s' field '%s': struct array needs an element size",
						    d->name, fl->name);
			int rc = check_desc(fl->vmsd, depth + 1, err);
			if (rc)
				return rc;
			break;
		}
		default:
			return hm_error_set(err, -EINVAL, -1, "vmstate '%s' field '%s': bad type %d",
					    d->name, fl->name, (int)fl->type);
		}
		if (fl->type == VMS_BOOL && (fl->flags & VMS_F_EQUAL))
			return hm_error_set(err, -EINVAL, -1, "vmstate '%s' field '%s': EQUAL on bool",
					    d->name, fl->name);
	}
	for (const vmstate_desc_t *const *s = d->subsections; s && *s; s++) {
		if (!(*s)->name || strncmp((*s)->name, d->name, nl) != 0)
			return hm_error_set(err, -EINVAL, -1,
					    "vmstate '%s': subsection '%s' does not start with the parent's name",
					    d->name, (*s)->name ? (*s)->name : "(null)");
		int rc = check_desc(*s, depth + 1, err);
		if (rc)
			return rc;
	}
	return 0;
}

int vmstate_check(const vmstate_desc_t *vmsd, hm_error_t *err)
{
	return check_desc(vmsd, 0, err);
}

/* ------------------------------------------------------------------- save */

static int save_desc(mig_file_t *f, const vmstate_desc_t *d, void *opaque, uint32_t version,
		     json_t *desc);

static void put_scalar(mig_file_t *f, const vmstate_field_t *fl, const uint8_t *p)
{
	uint8_t u8;
	uint16_t u16;
	uint32_t u32;
	uint64_t u64;
	bool b;
	switch (fl->type) {
	case VMS_U8:
	case VMS_I8:
		memcpy(&u8, p, 1);
		mig_file_put_u8(f, u8);
		break;
	case VMS_U16:
	case VMS_I16:
		memcpy(&u16, p, 2);
		mig_file_put_be16(f, u16);
		break;
	case VMS_U32:
	case VMS_I32:
		memcpy(&u32, p, 4);
		mig_file_put_be32(f, u32);
		break;
	case VMS_U64:
	case VMS_I64:
		memcpy(&u64, p, 8);
		mig_file_put_be64(f, u64);
		break;
	case VMS_BOOL:
		memcpy(&b, p, sizeof(b));
		mig_file_put_u8(f, b ? 1 : 0);
		break;
	default:
		break;
	}
}

static const uint8_t zeros[256];

static int save_element(mig_file_t *f, const vmstate_field_t *fl, uint8_t *base, uint8_t *p,
			json_t *sdesc)
{
	switch (fl->type) {
	case VMS_VBUFFER: {
		uint32_t len;
		uint8_t *data;
		memcpy(&len, base + fl->size_offset, sizeof(len));
		memcpy(&data, p, sizeof(data));
		if (len > fl->size || (len && !data)) {
			mig_file_set_error(f, HM_E_STATE, "buffer '%s' of %u bytes (max %zu) has no data",
					   fl->name, len, fl->size);
			return field_fail(f, fl->name);
		}
		mig_file_put_buffer(f, data, len);
		return 0;
	}
	case VMS_BITMAP:
		for (size_t i = 0; i < fl->size / 8; i++) {
			uint64_t w;
			memcpy(&w, p + 8 * i, 8);
			mig_file_put_be64(f, w);
		}
		return 0;
	case VMS_BUFFER:
		mig_file_put_buffer(f, p, fl->size);
		return 0;
	case VMS_UNUSED:
		for (size_t left = fl->size; left;) {
			size_t n = left < sizeof(zeros) ? left : sizeof(zeros);
			mig_file_put_buffer(f, zeros, n);
			left -= n;
		}
		return 0;
	case VMS_STRUCT:
		return save_desc(f, fl->vmsd, p, fl->vmsd->version_id, sdesc);
	default:
		put_scalar(f, fl, p);
		return 0;
	}
}

static json_t *struct_header(const vmstate_desc_t *d, uint32_t version)
{
	json_t *o = json_object();
	if (!o)
		return NULL;
	json_object_set_new(o, "vmsd_name", json_string(d->name));
	json_object_set_new(o, "version", json_integer(version));
	return o;
}

static int save_fields(mig_file_t *f, const vmstate_desc_t *d, void *opaque, uint32_t version,
		       json_t *fields)
{
	uint8_t *base = opaque;
	for (const vmstate_field_t *fl = d->fields; fl->name; fl++) {
		if (!field_exists(fl, opaque, version))
			continue;
		uint32_t n = field_count(fl);
		bool compress = !(fl->type == VMS_STRUCT && has_subsections(fl->vmsd, 0));
		for (uint32_t i = 0; i < n; i++) {
			uint8_t *p = base + fl->offset + (size_t)i * fl->size;
			json_t *fd = NULL, *sdesc = NULL;
			if (fields && (i == 0 || !compress)) {
				fd = json_object();
				if (!fd) {
					mig_file_set_error(f, -ENOMEM, "out of memory (vmdesc)");
					return field_fail(f, fl->name);
				}
				json_object_set_new(fd, "name", json_string(fl->name));
				if (n > 1) {
					if (compress)
						json_object_set_new(fd, "array_len", json_integer(n));
					else
						json_object_set_new(fd, "index", json_integer(i));
				}
				json_object_set_new(fd, "type", json_string(type_name(fl)));
				if (fl->type == VMS_STRUCT) {
					sdesc = struct_header(fl->vmsd, fl->vmsd->version_id);
					json_object_set_new(fd, "struct", sdesc);
				}
			}
			uint64_t start = mig_file_offset(f);
			int rc = save_element(f, fl, base, p, sdesc);
			if (fd) {
				json_object_set_new(fd, "size", json_integer((json_int_t)(mig_file_offset(f) - start)));
				json_array_append_new(fields, fd);
			}
			if (rc)
				return rc;
		}
		if (mig_file_status(f))
			return field_fail(f, fl->name);
	}
	return 0;
}

static int save_desc(mig_file_t *f, const vmstate_desc_t *d, void *opaque, uint32_t version,
		     json_t *desc)
{
	if (d->pre_save) {
		hm_error_t he;
		hm_error_clear(&he);
		int rc = d->pre_save(opaque, &he);
		if (rc < 0)
			return hook_fail(f, &he, rc, "pre_save", d->name);
	}
	json_t *fields = NULL;
	if (desc) {
		fields = json_array();
		json_object_set_new(desc, "fields", fields);
	}
	int rc = save_fields(f, d, opaque, version, fields);
	if (rc)
		return rc;
	json_t *subs = NULL;
	for (const vmstate_desc_t *const *s = d->subsections; s && *s; s++) {
		const vmstate_desc_t *sd = *s;
		if (sd->needed && !sd->needed(opaque))
			continue;
		size_t len = strlen(sd->name);
		mig_file_put_u8(f, QEMU_VM_SUBSECTION);
		mig_file_put_u8(f, (uint8_t)len);
		mig_file_put_buffer(f, sd->name, len);
		mig_file_put_be32(f, sd->version_id);
		json_t *sdesc = NULL;
		if (desc) {
			if (!subs) {
				subs = json_array();
				json_object_set_new(desc, "subsections", subs);
			}
			sdesc = struct_header(sd, sd->version_id);
			json_array_append_new(subs, sdesc);
		}
		rc = save_desc(f, sd, opaque, sd->version_id, sdesc);
		if (rc)
			return rc;
	}
	if (mig_file_status(f))
		return field_fail(f, d->name);
	return 0;
}

int vmstate_save_json(mig_file_t *f, const vmstate_desc_t *vmsd, void *opaque, uint32_t version,
		      json_t *desc, hm_error_t *err)
{
	if (version == 0)
		version = vmsd->version_id;
	if (version > vmsd->version_id || version < vmsd->minimum_version_id) {
		mig_file_set_error(f, HM_E_VERSION, "vmstate '%s': cannot save version %u (supported %u..%u)",
				   vmsd->name, version, vmsd->minimum_version_id, vmsd->version_id);
		return mig_file_error_copy(f, err);
	}
	if (!mig_file_status(f))
		save_desc(f, vmsd, opaque, version, desc);
	return mig_file_error_copy(f, err);
}

int vmstate_save(mig_file_t *f, const vmstate_desc_t *vmsd, void *opaque, uint32_t version,
		 hm_error_t *err)
{
	return vmstate_save_json(f, vmsd, opaque, version, NULL, err);
}

/* ------------------------------------------------------------------- load */

static int load_desc(mig_file_t *f, const vmstate_desc_t *d, void *opaque, uint32_t version,
		     const char *path);

static int load_scalar(mig_file_t *f, const vmstate_field_t *fl, uint8_t *p, const char *path)
{
	uint64_t start = mig_file_offset(f);
	uint64_t v = 0;
	size_t sz = scalar_size(fl->type);
	switch (sz) {
	case 1:
		v = mig_file_get_u8(f);
		break;
	case 2:
		v = mig_file_get_be16(f);
		break;
	case 4:
		v = mig_file_get_be32(f);
		break;
	default:
		v = mig_file_get_be64(f);
		break;
	}
	if (mig_file_status(f))
		return field_fail(f, path);
	if (fl->type == VMS_BOOL) {
		if (v > 1) {
			mig_file_set_error_at(f, HM_E_FORMAT, (int64_t)start,
					      "bool value %llu is neither 0 nor 1",
					      (unsigned long long)v);
			return field_fail(f, path);
		}
		bool b = v != 0;
		memcpy(p, &b, sizeof(b));
		return 0;
	}
	if (fl->flags & VMS_F_EQUAL) {
		uint64_t cur = 0;
		uint8_t c8;
		uint16_t c16;
		uint32_t c32;
		switch (sz) {
		case 1: memcpy(&c8, p, 1); cur = c8; break;
		case 2: memcpy(&c16, p, 2); cur = c16; break;
		case 4: memcpy(&c32, p, 4); cur = c32; break;
		default: memcpy(&cur, p, 8); break;
		}
		if (cur != v) {
			mig_file_set_error_at(f, HM_E_FORMAT, (int64_t)start,
					      "value %#llx differs from the required %#llx",
					      (unsigned long long)v, (unsigned long long)cur);
			return field_fail(f, path);
		}
		return 0;
	}
	switch (sz) {
	case 1: { uint8_t x = (uint8_t)v; memcpy(p, &x, 1); break; }
	case 2: { uint16_t x = (uint16_t)v; memcpy(p, &x, 2); break; }
	case 4: { uint32_t x = (uint32_t)v; memcpy(p, &x, 4); break; }
	default: memcpy(p, &v, 8); break;
	}
	return 0;
}

static int load_vbuffer(mig_file_t *f, const vmstate_field_t *fl, uint8_t *base, uint8_t *p,
			const char *path)
{
	uint32_t len;
	uint8_t *data;
	memcpy(&len, base + fl->size_offset, sizeof(len));
	memcpy(&data, p, sizeof(data));
	if (len > fl->size) {
		/* The length came from the stream: check it before allocating. */
		mig_file_set_error(f, HM_E_RANGE, "length %u exceeds the maximum %zu", len, fl->size);
		return field_fail(f, path);
	}
	uint8_t *nd = realloc(data, len ? len : 1);
	if (!nd) {
		mig_file_set_error(f, -ENOMEM, "cannot allocate %u bytes", len);
		return field_fail(f, path);
	}
	memcpy(p, &nd, sizeof(nd));
	mig_file_get_buffer(f, nd, len);
	if (mig_file_status(f))
		return field_fail(f, path);
	return 0;
}

static int load_fields(mig_file_t *f, const vmstate_desc_t *d, void *opaque, uint32_t version,
		       const char *path)
{
	uint8_t *base = opaque;
	char fpath[512];
	for (const vmstate_field_t *fl = d->fields; fl->name; fl++) {
		if (!field_exists(fl, opaque, version))
			continue;
		uint32_t n = field_count(fl);
		for (uint32_t i = 0; i < n; i++) {
			uint8_t *p = base + fl->offset + (size_t)i * fl->size;
			if (n > 1)
				snprintf(fpath, sizeof(fpath), "%s.%s[%u]", path, fl->name, i);
			else
				snprintf(fpath, sizeof(fpath), "%s.%s", path, fl->name);
			int rc = 0;
			switch (fl->type) {
			case VMS_BUFFER:
				mig_file_get_buffer(f, p, fl->size);
				if (mig_file_status(f))
					rc = field_fail(f, fpath);
				break;
			case VMS_UNUSED:
				if (mig_file_skip(f, fl->size) != 0)
					rc = field_fail(f, fpath);
				break;
			case VMS_BITMAP:
				for (size_t w = 0; w < fl->size / 8; w++) {
					uint64_t v = mig_file_get_be64(f);
					memcpy(p + 8 * w, &v, 8);
				}
				if (mig_file_status(f))
					rc = field_fail(f, fpath);
				break;
			case VMS_VBUFFER:
				rc = load_vbuffer(f, fl, base, p, fpath);
				break;
			case VMS_STRUCT:
				rc = load_desc(f, fl->vmsd, p, fl->vmsd->version_id, fpath);
				break;
			default:
				rc = load_scalar(f, fl, p, fpath);
				break;
			}
			if (rc)
				return rc;
		}
	}
	return 0;
}

static int load_subsections(mig_file_t *f, const vmstate_desc_t *d, void *opaque, const char *path)
{
	size_t plen = strlen(d->name);
	for (;;) {
		uint8_t hdr[2 + SAVEVM_IDSTR_MAX];
		/*
		 * Exactly QEMU's vmstate_subsection_load: a byte 0x05 followed by a
		 * name too short for "<parent>/x", bytes missing, or a name without
		 * the parent's prefix is not a subsection of this description: the
		 * list ends there (whatever follows is checked by the caller).
		 */
		size_t got = mig_file_peek_buffer(f, hdr, 2);
		if (got < 2 || hdr[0] != QEMU_VM_SUBSECTION)
			break;
		size_t len = hdr[1];
		if (len < plen + 1)
			break;
		got = mig_file_peek_buffer(f, hdr, 2 + len);
		if (got < 2 + len)
			break;
		const char *name = (const char *)hdr + 2;
		/* QEMU: a name without the parent's prefix ends this list. */
		if (len < plen || memcmp(name, d->name, plen) != 0)
			break;
		const vmstate_desc_t *sd = NULL;
		for (const vmstate_desc_t *const *s = d->subsections; s && *s; s++) {
			if (strlen((*s)->name) == len && memcmp((*s)->name, name, len) == 0) {
				sd = *s;
				break;
			}
		}
		uint64_t start = mig_file_offset(f);
		if (!sd) {
			char q[HM_ESC_LEN(256)];
			mig_file_set_error_at(f, HM_E_UNKNOWN, (int64_t)start,
					      "unknown subsection '%s' of '%s'",
					      hm_escape(name, len, 0, q, sizeof(q)), d->name);
			return field_fail(f, path);
		}
		mig_file_skip(f, 2 + len);
		uint32_t v = mig_file_get_be32(f);
		if (mig_file_status(f))
			return field_fail(f, path);
		if (v > sd->version_id || v < sd->minimum_version_id) {
			mig_file_set_error_at(f, HM_E_VERSION, (int64_t)start + 2 + (int64_t)len,
					      "subsection '%s' version %u not in supported %u..%u",
					      sd->name, v, sd->minimum_version_id, sd->version_id);
			return field_fail(f, path);
		}
		char spath[512];
		snprintf(spath, sizeof(spath), "%s%s", path, sd->name + plen);
		int rc = load_desc(f, sd, opaque, v, spath);
		if (rc)
			return rc;
	}
	if (mig_file_status(f))
		return field_fail(f, path);
	return 0;
}

int vmstate_load_subsections(mig_file_t *f, const vmstate_desc_t *d, void *opaque, const char *path,
			     hm_error_t *err)
{
	if (!mig_file_status(f))
		load_subsections(f, d, opaque, path);
	return mig_file_error_copy(f, err);
}

static int load_desc(mig_file_t *f, const vmstate_desc_t *d, void *opaque, uint32_t version,
		     const char *path)
{
	if (d->pre_load) {
		hm_error_t he;
		hm_error_clear(&he);
		int rc = d->pre_load(opaque, &he);
		if (rc < 0)
			return hook_fail(f, &he, rc, "pre_load", d->name);
	}
	int rc = load_fields(f, d, opaque, version, path);
	if (rc)
		return rc;
	rc = load_subsections(f, d, opaque, path);
	if (rc)
		return rc;
	if (d->post_load) {
		hm_error_t he;
		hm_error_clear(&he);
		rc = d->post_load(opaque, version, &he);
		if (rc < 0)
			return hook_fail(f, &he, rc, "post_load", d->name);
	}
	return 0;
}

int vmstate_load(mig_file_t *f, const vmstate_desc_t *vmsd, void *opaque, uint32_t version_id,
		 hm_error_t *err)
{
	if (mig_file_status(f))
		return mig_file_error_copy(f, err);
	if (version_id > vmsd->version_id || version_id < vmsd->minimum_version_id)
		mig_file_set_error(f, HM_E_VERSION, "vmstate '%s': version %u not in supported %u..%u",
				   vmsd->name, version_id, vmsd->minimum_version_id, vmsd->version_id);
	else
		load_desc(f, vmsd, opaque, version_id, vmsd->name);
	return mig_file_error_copy(f, err);
}
