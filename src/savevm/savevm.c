/* SPDX-License-Identifier: MIT */
/*
 * The section registry and QEMU's stream framing: the writer (header,
 * START/PART/END/FULL records with footers, COMMAND, EOF, vmdesc) and the
 * reader that walks a stream to EOF and dispatches each record. The reader
 * trusts nothing: every record type, id, version and footer is checked and
 * every failure says which record, which section and which byte offset.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "savevm/savevm_int.h"

typedef struct savevm_section {
	char idstr[SAVEVM_IDSTR_MAX + 1];
	uint32_t instance;
	uint32_t version;
	uint32_t min_version;
	uint32_t section_id;             /* writer: registration order, from 1 */
	const savevm_live_ops_t *ops;    /* live sections */
	void *opaque;
	const vmstate_desc_t *vmsd;      /* vmstate sections */
	bool enabled;
	/* writer state of the current migration */
	bool setup_done;                 /* setup called: cleanup due */
	/* reader state of the current load */
	bool introduced;                 /* a START or FULL named it */
	bool started;                    /* introduced by START */
	bool ended;                      /* END seen */
	uint32_t wire_id;
	uint32_t wire_version;
} savevm_section_t;

struct savevm_registry {
	savevm_section_t **secs;
	size_t n, cap;
	uint32_t next_id;                /* the next section id: never 0 (below) */
	json_t *devices;                 /* vmdesc "devices", built by write_full_all */
	char machine[SAVEVM_MACHINE_MAX + 1];
	bool has_machine;
};

/* --------------------------------------------------------------- registry */

int savevm_registry_new(savevm_registry_t **out)
{
	if (!out)
		return -EINVAL;
	savevm_registry_t *r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	/*
	 * Ids start at 1. QEMU's loader finds the section of a PART/END record
	 * by the id its START carried, comparing with a field that is 0 for
	 * every section it has not loaded yet: a live section numbered 0 has
	 * its PART/END records handed to the first such section (`timer`).
	 * The reader still accepts id 0 (older hptmig streams used it).
	 */
	r->next_id = 1;
	*out = r;
	return 0;
}

void savevm_registry_free(savevm_registry_t *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n; i++)
		free(r->secs[i]);
	free(r->secs);
	json_decref(r->devices);
	free(r);
}

size_t savevm_registry_count(const savevm_registry_t *r)
{
	return r->n;
}

static savevm_section_t *find_section(const savevm_registry_t *r, const char *idstr, size_t len,
				      uint32_t instance)
{
	for (size_t i = 0; i < r->n; i++) {
		savevm_section_t *s = r->secs[i];
		if (s->instance == instance && strlen(s->idstr) == len &&
		    memcmp(s->idstr, idstr, len) == 0)
			return s;
	}
	return NULL;
}

/* Add a live (ops) or vmstate (vmsd) section over opaque. */
static int add_section(savevm_registry_t *r, const char *idstr, uint32_t instance,
		       uint32_t version, uint32_t min_version, const savevm_live_ops_t *ops,
		       const vmstate_desc_t *vmsd, void *opaque, hm_error_t *err)
{
	if (!r || !idstr)
		return hm_error_set(err, -EINVAL, -1, "register: no registry or idstr");
	size_t len = strlen(idstr);
	if (len == 0 || len > SAVEVM_IDSTR_MAX)
		return hm_error_set(err, -EINVAL, -1, "register '%s': idstr length %zu not in 1..255",
				    idstr, len);
	if (min_version > version)
		return hm_error_set(err, -EINVAL, -1,
				    "register '%s': minimum version %u above version %u", idstr,
				    min_version, version);
	if (find_section(r, idstr, len, instance))
		return hm_error_set(err, -EEXIST, -1, "section '%s' instance %u registered twice",
				    idstr, instance);
	if (r->n == r->cap) {
		size_t nc = r->cap ? r->cap * 2 : 8;
		savevm_section_t **ns = realloc(r->secs, nc * sizeof(*ns));
		if (!ns)
			return hm_error_set(err, -ENOMEM, -1, "out of memory");
		r->secs = ns;
		r->cap = nc;
	}
	savevm_section_t *s = calloc(1, sizeof(*s));
	if (!s)
		return hm_error_set(err, -ENOMEM, -1, "out of memory");
	memcpy(s->idstr, idstr, len + 1);
	s->instance = instance;
	s->version = version;
	s->min_version = min_version;
	s->section_id = r->next_id++;
	s->enabled = true;
	s->ops = ops;
	s->vmsd = vmsd;
	s->opaque = opaque;
	r->secs[r->n++] = s;
	return 0;
}

int savevm_register_live(savevm_registry_t *r, const char *idstr, uint32_t instance,
			 uint32_t version, uint32_t min_version, const savevm_live_ops_t *ops,
			 void *opaque, hm_error_t *err)
{
	if (!ops)
		return hm_error_set(err, -EINVAL, -1, "register '%s': no handler table",
				    idstr ? idstr : "(null)");
	return add_section(r, idstr, instance, version, min_version, ops, NULL, opaque, err);
}

int savevm_register_vmstate(savevm_registry_t *r, const char *idstr, uint32_t instance,
			    const vmstate_desc_t *vmsd, void *opaque, hm_error_t *err)
{
	int rc = vmstate_check(vmsd, err);
	if (rc)
		return rc;
	return add_section(r, idstr, instance, vmsd->version_id, vmsd->minimum_version_id, NULL,
			   vmsd, opaque, err);
}

int savevm_section_set_enabled(savevm_registry_t *r, const char *idstr, uint32_t instance,
			       bool enabled)
{
	savevm_section_t *s = find_section(r, idstr, strlen(idstr), instance);
	if (!s)
		return -ENOENT;
	s->enabled = enabled;
	return 0;
}

/* ----------------------------------------------------------------- writer */

/*
 * Errors take one route: everything below a public entry point records its
 * error in the channel (first error wins), context is added in front of it
 * there (mig_file_error_prefix), and the entry point copies it into its
 * hm_error_t once (mig_file_error_copy) on the way out.
 */

/*
 * Code that reports in an hm_error_t (the vmstate engine, a callback) failed
 * with rc: make sure the channel holds an error, he's when it has one
 * (offset: here, unless set), else a generic one naming what failed.
 * Returns the channel's code.
 */
static int ensure_latched(mig_file_t *f, int rc, const hm_error_t *he, const char *what)
{
	if (mig_file_status(f))
		return mig_file_status(f);
	if (he && he->code) {
		hm_error_t e = *he;
		if (e.offset < 0)
			e.offset = (int64_t)mig_file_offset(f);
		return mig_file_latch_error(f, &e);
	}
	return mig_file_set_error(f, rc < 0 ? rc : HM_E_STATE, "%s failed: %s", what,
				  hm_err_str(rc));
}

/* A writer-side handler of s failed: name the section in the channel's error. */
static int section_failed(mig_file_t *f, int rc, const hm_error_t *he,
			  const savevm_section_t *s, const char *what)
{
	ensure_latched(f, rc, he, what);
	return mig_file_error_prefix(f, "section '%s' instance %u: ", s->idstr, s->instance);
}

static void put_footer(mig_file_t *f, const savevm_section_t *s);

/*
 * A handler of s wrote its payload and returned rc: the record's footer, or
 * (rc < 0 or the channel failed) the failure, named after the section.
 * Returns 0 to go on, or the channel's code.
 */
static int end_record(mig_file_t *f, const savevm_section_t *s, int rc, const hm_error_t *he,
		      const char *what)
{
	if (rc < 0 || mig_file_status(f))
		return section_failed(f, rc, he, s, what);
	put_footer(f, s);
	return 0;
}

static void put_section_header(mig_file_t *f, int type, const savevm_section_t *s)
{
	mig_file_put_u8(f, (uint8_t)type);
	mig_file_put_be32(f, s->section_id);
	if (type == QEMU_VM_SECTION_START || type == QEMU_VM_SECTION_FULL) {
		size_t len = strlen(s->idstr);
		mig_file_put_u8(f, (uint8_t)len);
		mig_file_put_buffer(f, s->idstr, len);
		mig_file_put_be32(f, s->instance);
		mig_file_put_be32(f, s->version);
	}
}

static void put_footer(mig_file_t *f, const savevm_section_t *s)
{
	mig_file_put_u8(f, QEMU_VM_SECTION_FOOTER);
	mig_file_put_be32(f, s->section_id);
}

int savevm_write_header(savevm_registry_t *r, mig_file_t *f, const char *machine_name,
			hm_error_t *err)
{
	mig_file_put_be32(f, QEMU_VM_FILE_MAGIC);
	mig_file_put_be32(f, QEMU_VM_FILE_VERSION);
	r->has_machine = false;
	if (machine_name) {
		size_t len = strlen(machine_name);
		if (len > SAVEVM_MACHINE_MAX) {
			mig_file_set_error(f, -EINVAL, "machine name of %zu bytes exceeds %u", len,
					   SAVEVM_MACHINE_MAX);
			return mig_file_error_copy(f, err);
		}
		mig_file_put_u8(f, QEMU_VM_CONFIGURATION);
		mig_file_put_be32(f, (uint32_t)len);
		mig_file_put_buffer(f, machine_name, len);
		memcpy(r->machine, machine_name, len + 1);
		r->has_machine = true;
	}
	return mig_file_error_copy(f, err);
}

int savevm_live_setup_all(savevm_registry_t *r, mig_file_t *f, hm_error_t *err)
{
	for (size_t i = 0; i < r->n; i++) {
		savevm_section_t *s = r->secs[i];
		if (!s->ops || !s->enabled)
			continue;
		if (!s->ops->setup) {
			mig_file_set_error(f, HM_E_STATE, "section '%s': no setup handler", s->idstr);
			break;
		}
		put_section_header(f, QEMU_VM_SECTION_START, s);
		s->setup_done = true;
		if (end_record(f, s, s->ops->setup(s->opaque, f), NULL, "setup handler"))
			break;
	}
	return mig_file_error_copy(f, err);
}

int savevm_live_iterate(savevm_registry_t *r, mig_file_t *f, uint64_t budget_ns, hm_error_t *err)
{
	uint64_t deadline = hm_now_ns() + budget_ns;
	if (deadline < budget_ns)
		deadline = UINT64_MAX;
	int all_done = 1;
	for (size_t i = 0; i < r->n; i++) {
		savevm_section_t *s = r->secs[i];
		if (!s->ops || !s->enabled || !s->setup_done)
			continue;
		if (!s->ops->iterate) {
			mig_file_set_error(f, HM_E_STATE, "section '%s': no iterate handler", s->idstr);
			break;
		}
		/* As QEMU: a section that would exceed the rate limit waits for a later round. */
		if (mig_file_rate_limit_exceeded(f)) {
			all_done = 0;
			break;
		}
		uint64_t now = hm_now_ns();
		put_section_header(f, QEMU_VM_SECTION_PART, s);
		int rc = s->ops->iterate(s->opaque, f, deadline > now ? deadline - now : 0);
		if (end_record(f, s, rc, NULL, "iterate handler"))
			break;
		if (rc == 0)
			all_done = 0;
	}
	if (mig_file_status(f))
		return mig_file_error_copy(f, err);
	return all_done;
}

uint64_t savevm_live_pending_total(savevm_registry_t *r)
{
	uint64_t total = 0;
	for (size_t i = 0; i < r->n; i++) {
		savevm_section_t *s = r->secs[i];
		if (s->ops && s->enabled && s->setup_done && s->ops->pending) {
			uint64_t p = s->ops->pending(s->opaque);
			total = total + p < total ? UINT64_MAX : total + p;
		}
	}
	return total;
}

int savevm_write_command_switchover(mig_file_t *f, hm_error_t *err)
{
	mig_file_put_u8(f, QEMU_VM_COMMAND);
	mig_file_put_be16(f, MIG_CMD_SWITCHOVER_START);
	mig_file_put_be16(f, 0);
	return mig_file_error_copy(f, err);
}

int savevm_write_command_ping(mig_file_t *f, uint32_t value, hm_error_t *err)
{
	mig_file_put_u8(f, QEMU_VM_COMMAND);
	mig_file_put_be16(f, MIG_CMD_PING);
	mig_file_put_be16(f, 4);
	mig_file_put_be32(f, value);
	return mig_file_error_copy(f, err);
}

int savevm_live_complete_all(savevm_registry_t *r, mig_file_t *f, hm_error_t *err)
{
	for (size_t i = 0; i < r->n; i++) {
		savevm_section_t *s = r->secs[i];
		if (!s->ops || !s->enabled || !s->setup_done)
			continue;
		if (!s->ops->complete) {
			mig_file_set_error(f, HM_E_STATE, "section '%s': no complete handler", s->idstr);
			break;
		}
		put_section_header(f, QEMU_VM_SECTION_END, s);
		if (end_record(f, s, s->ops->complete(s->opaque, f), NULL, "complete handler"))
			break;
	}
	return mig_file_error_copy(f, err);
}

int savevm_write_full_all(savevm_registry_t *r, mig_file_t *f, hm_error_t *err)
{
	json_decref(r->devices);
	r->devices = json_array();
	if (!r->devices) {
		mig_file_set_error(f, -ENOMEM, "out of memory (vmdesc)");
		return mig_file_error_copy(f, err);
	}
	for (size_t i = 0; i < r->n; i++) {
		savevm_section_t *s = r->secs[i];
		if (!s->vmsd || !s->enabled)
			continue;
		put_section_header(f, QEMU_VM_SECTION_FULL, s);
		json_t *dev = json_object();
		if (!dev) {
			section_failed(f, mig_file_set_error(f, -ENOMEM, "out of memory (vmdesc)"), NULL, s, "save");
			break;
		}
		json_object_set_new(dev, "name", json_string(s->idstr));
		json_object_set_new(dev, "instance_id", json_integer(s->instance));
		json_object_set_new(dev, "vmsd_name", json_string(s->vmsd->name));
		json_object_set_new(dev, "version", json_integer(s->version));
		json_array_append_new(r->devices, dev);
		int rc = vmstate_save_json(f, s->vmsd, s->opaque, s->version, dev, NULL);
		if (end_record(f, s, rc, NULL, "save"))
			break;
	}
	return mig_file_error_copy(f, err);
}

int savevm_write_eof_and_vmdesc(savevm_registry_t *r, mig_file_t *f, hm_error_t *err)
{
	mig_file_put_u8(f, QEMU_VM_EOF);
	json_t *root = json_object();
	if (!root) {
		mig_file_set_error(f, -ENOMEM, "out of memory (vmdesc)");
		return mig_file_error_copy(f, err);
	}
	if (r->has_machine) {
		/* As QEMU 9+: the configuration record described like a device. */
		json_t *cfg = json_pack("{s:s, s:i, s:[{s:s, s:s, s:i}, {s:s, s:s, s:I}]}",
					"vmsd_name", "configuration", "version", 1, "fields",
					"name", "len", "type", "uint32", "size", 4,
					"name", "name", "type", "buffer", "size",
					(json_int_t)strlen(r->machine));
		if (cfg)
			json_object_set_new(root, "configuration", cfg);
	}
	json_object_set_new(root, "page_size", json_integer(SAVEVM_PAGE_SIZE));
	json_object_set_new(root, "devices", r->devices ? json_incref(r->devices) : json_array());
	/* No JSON_COMPACT: jansson then separates with ", " and ": ", as QEMU does. */
	char *js = json_dumps(root, JSON_PRESERVE_ORDER);
	json_decref(root);
	if (!js) {
		mig_file_set_error(f, -ENOMEM, "out of memory (vmdesc)");
		return mig_file_error_copy(f, err);
	}
	size_t len = strlen(js);
	mig_file_put_u8(f, QEMU_VM_VMDESCRIPTION);
	mig_file_put_be32(f, (uint32_t)len);
	mig_file_put_buffer(f, js, len);
	free(js);
	mig_file_flush(f);
	return mig_file_error_copy(f, err);
}

void savevm_live_cleanup_all(savevm_registry_t *r)
{
	for (size_t i = 0; i < r->n; i++) {
		savevm_section_t *s = r->secs[i];
		if (s->ops && s->setup_done) {
			s->setup_done = false;
			if (s->ops->cleanup)
				s->ops->cleanup(s->opaque);
		}
	}
}

int savevm_save_all(savevm_registry_t *r, mig_file_t *f, const char *machine_name,
		    hm_error_t *err)
{
	int rc = savevm_write_header(r, f, machine_name, err);
	if (!rc)
		rc = savevm_live_setup_all(r, f, err);
	if (!rc)
		rc = savevm_live_complete_all(r, f, err);
	if (!rc)
		rc = savevm_write_full_all(r, f, err);
	if (!rc)
		rc = savevm_write_eof_and_vmdesc(r, f, err);
	savevm_live_cleanup_all(r);
	return rc;
}

/* ----------------------------------------------------------------- reader */

/* Subsections of the configuration record: none known (QEMU's optional
 * ones, e.g. "configuration/capabilities", are refused by name). */
static const vmstate_field_t config_fields[] = { { VMSTATE_END_OF_LIST } };
static const vmstate_desc_t config_vmsd = {
	.name = "configuration",
	.version_id = 1,
	.minimum_version_id = 1,
	.fields = config_fields,
};

struct load_ctx {
	mig_file_t *f;
	savevm_registry_t *r;
	const savevm_load_opts_t *o;
	savevm_load_info_t *info;
};

/* Latch a reader error at off in the channel; returns the channel's code. */
static int rfail(struct load_ctx *c, int code, uint64_t off, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int rfail(struct load_ctx *c, int code, uint64_t off, const char *fmt, ...)
{
	char msg[400];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return mig_file_set_error_at(c->f, code, (int64_t)off, "%s", msg);
}

/* A channel error while reading what: put what in front of it. */
static int rtrunc(struct load_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int rtrunc(struct load_ctx *c, const char *fmt, ...)
{
	char pre[300];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(pre, sizeof(pre), fmt, ap);
	va_end(ap);
	return mig_file_error_prefix(c->f, "%s: ", pre);
}

/*
 * Finish a call of a reader callback (on_record, on_unknown_section,
 * on_command, on_vmdesc) that returned rc with its error in *he: when it
 * refused (rc < 0), its error (or, when it gave none, the message fmt) goes
 * into the channel at off unless it names its own offset. Returns 0 or the
 * channel's code.
 */
static int run_hook(struct load_ctx *c, int rc, hm_error_t *he, uint64_t off, const char *fmt,
		    ...) __attribute__((format(printf, 5, 6)));
static int run_hook(struct load_ctx *c, int rc, hm_error_t *he, uint64_t off, const char *fmt,
		    ...)
{
	if (rc >= 0)
		return 0;
	if (!he->code) {
		va_list ap;
		va_start(ap, fmt);
		hm_error_setv(he, rc, (int64_t)off, fmt, ap);
		va_end(ap);
	}
	if (he->offset < 0)
		he->offset = (int64_t)off;
	return mig_file_latch_error(c->f, he);
}

static savevm_section_t *find_wire(const savevm_registry_t *r, uint32_t id)
{
	for (size_t i = 0; i < r->n; i++)
		if (r->secs[i]->introduced && r->secs[i]->wire_id == id)
			return r->secs[i];
	return NULL;
}

static int read_footer(struct load_ctx *c, const savevm_section_t *s, int type, uint64_t rec_off)
{
	uint64_t off = mig_file_offset(c->f);
	int t = mig_file_peek_u8(c->f);
	if (t < 0) {
		mig_file_get_u8(c->f); /* latch the truncation */
		return rtrunc(c, "section '%s' %s record at offset %llu: footer", s->idstr,
			      qemu_vm_record_name(type), (unsigned long long)rec_off);
	}
	if (t != QEMU_VM_SECTION_FOOTER)
		return rfail(c, HM_E_FOOTER, off,
			     "section '%s' %s record at offset %llu: expected footer 0x7e at offset %llu, found 0x%02x (payload length mismatch)",
			     s->idstr, qemu_vm_record_name(type), (unsigned long long)rec_off,
			     (unsigned long long)off, t);
	mig_file_get_u8(c->f);
	uint32_t id = mig_file_get_be32(c->f);
	if (mig_file_status(c->f))
		return rtrunc(c, "section '%s' footer", s->idstr);
	if (id != s->wire_id)
		return rfail(c, HM_E_FOOTER, off,
			     "section '%s' %s record at offset %llu: footer names section id %u, expected %u",
			     s->idstr, qemu_vm_record_name(type), (unsigned long long)rec_off, id,
			     s->wire_id);
	return 0;
}

static int load_payload(struct load_ctx *c, savevm_section_t *s, int type, uint32_t version,
			uint64_t rec_off)
{
	hm_error_t he;
	hm_error_clear(&he);
	int rc;
	if (s->ops) {
		if (!s->ops->load)
			return rfail(c, HM_E_STATE, rec_off, "section '%s': no load handler", s->idstr);
		rc = s->ops->load(s->opaque, c->f, version, type);
	} else {
		rc = vmstate_load(c->f, s->vmsd, s->opaque, version, &he);
	}
	if (rc < 0 || mig_file_status(c->f)) {
		ensure_latched(c->f, rc, &he, "load handler");
		return mig_file_error_prefix(c->f,
					     "section '%s' instance %u version %u (%s at offset %llu): ",
					     s->idstr, s->instance, version, qemu_vm_record_name(type),
					     (unsigned long long)rec_off);
	}
	return 0;
}

static int record_done(struct load_ctx *c, savevm_record_info_t *ri)
{
	c->info->records++;
	if (!c->o->on_record)
		return 0;
	ri->end_offset = mig_file_offset(c->f);
	hm_error_t he;
	hm_error_clear(&he);
	int rc = c->o->on_record(c->o->opaque, ri, &he);
	return run_hook(c, rc, &he, ri->offset, "record callback refused %s at offset %llu",
			qemu_vm_record_name(ri->type), (unsigned long long)ri->offset);
}

static int load_section_start(struct load_ctx *c, int type, uint64_t rec_off)
{
	mig_file_t *f = c->f;
	uint32_t id = mig_file_get_be32(f);
	uint8_t len = mig_file_get_u8(f);
	char idstr[SAVEVM_IDSTR_MAX + 1];
	mig_file_get_buffer(f, idstr, len);
	idstr[len] = '\0';
	uint32_t instance = mig_file_get_be32(f);
	uint32_t version = mig_file_get_be32(f);
	if (mig_file_status(f))
		return rtrunc(c, "%s record header at offset %llu", qemu_vm_record_name(type),
			      (unsigned long long)rec_off);
	/* The peer's name, as it may appear in a message. */
	char qid[HM_ESC_LEN(SAVEVM_IDSTR_MAX)];
	hm_escape(idstr, len, 0, qid, sizeof(qid));
	if (memchr(idstr, '\0', len))
		return rfail(c, HM_E_FORMAT, rec_off + 6,
			     "%s record at offset %llu: section name '%s' contains a NUL byte",
			     qemu_vm_record_name(type), (unsigned long long)rec_off, qid);
	savevm_section_t *s = find_section(c->r, idstr, len, instance);
	if (!s && c->o->on_unknown_section) {
		hm_error_t he;
		hm_error_clear(&he);
		int rc = c->o->on_unknown_section(c->o->opaque, c->r, idstr, instance, version, &he);
		if (rc < 0)
			return run_hook(c, rc, &he, rec_off, "unknown section '%s' instance %u refused",
					qid, instance);
		s = find_section(c->r, idstr, len, instance);
	}
	if (!s)
		return rfail(c, HM_E_UNKNOWN, rec_off,
			     "unknown section '%s' instance %u (version %u, section id %u, %s record at offset %llu)",
			     qid, instance, version, id, qemu_vm_record_name(type),
			     (unsigned long long)rec_off);
	if (s->introduced)
		return rfail(c, HM_E_FORMAT, rec_off,
			     "section '%s' instance %u introduced a second time (%s record at offset %llu)",
			     qid, instance, qemu_vm_record_name(type), (unsigned long long)rec_off);
	savevm_section_t *other = find_wire(c->r, id);
	if (other)
		return rfail(c, HM_E_FORMAT, rec_off,
			     "%s record at offset %llu: section id %u of '%s' is already used by '%s'",
			     qemu_vm_record_name(type), (unsigned long long)rec_off, id, qid,
			     other->idstr);
	if (version > s->version)
		return rfail(c, HM_E_VERSION, rec_off,
			     "section '%s' instance %u: version %u is newer than the supported %u",
			     qid, instance, version, s->version);
	if (version < s->min_version)
		return rfail(c, HM_E_VERSION, rec_off,
			     "section '%s' instance %u: version %u is older than the minimum %u",
			     qid, instance, version, s->min_version);
	if (type == QEMU_VM_SECTION_START && !s->ops)
		return rfail(c, HM_E_FORMAT, rec_off,
			     "section '%s' is not a live section but came in a SECTION_START record at offset %llu",
			     qid, (unsigned long long)rec_off);
	s->introduced = true;
	s->started = type == QEMU_VM_SECTION_START;
	s->wire_id = id;
	s->wire_version = version;
	c->info->sections++;
	savevm_record_info_t ri = {
		.type = type, .offset = rec_off, .payload_offset = mig_file_offset(f),
		.section_id = id, .idstr = s->idstr, .instance_id = instance, .version_id = version,
	};
	int rc = load_payload(c, s, type, version, rec_off);
	if (!rc)
		rc = read_footer(c, s, type, rec_off);
	if (!rc)
		rc = record_done(c, &ri);
	return rc;
}

static int load_section_part(struct load_ctx *c, int type, uint64_t rec_off)
{
	mig_file_t *f = c->f;
	uint32_t id = mig_file_get_be32(f);
	if (mig_file_status(f))
		return rtrunc(c, "%s record header at offset %llu", qemu_vm_record_name(type),
			      (unsigned long long)rec_off);
	savevm_section_t *s = find_wire(c->r, id);
	if (!s)
		return rfail(c, HM_E_FORMAT, rec_off,
			     "%s record at offset %llu names section id %u, which no SECTION_START introduced",
			     qemu_vm_record_name(type), (unsigned long long)rec_off, id);
	if (!s->started)
		return rfail(c, HM_E_FORMAT, rec_off,
			     "%s record at offset %llu for section '%s', which was sent as SECTION_FULL",
			     qemu_vm_record_name(type), (unsigned long long)rec_off, s->idstr);
	if (s->ended)
		return rfail(c, HM_E_FORMAT, rec_off,
			     "%s record at offset %llu for section '%s' after its SECTION_END",
			     qemu_vm_record_name(type), (unsigned long long)rec_off, s->idstr);
	if (type == QEMU_VM_SECTION_END)
		s->ended = true;
	savevm_record_info_t ri = {
		.type = type, .offset = rec_off, .payload_offset = mig_file_offset(f),
		.section_id = id, .idstr = s->idstr, .instance_id = s->instance,
		.version_id = s->wire_version,
	};
	int rc = load_payload(c, s, type, s->wire_version, rec_off);
	if (!rc)
		rc = read_footer(c, s, type, rec_off);
	if (!rc)
		rc = record_done(c, &ri);
	return rc;
}

static int load_command(struct load_ctx *c, uint64_t rec_off)
{
	mig_file_t *f = c->f;
	uint16_t cmd = mig_file_get_be16(f);
	uint16_t len = mig_file_get_be16(f);
	const uint8_t *data = len ? mig_file_get_ptr(f, len) : NULL;
	if (mig_file_status(f))
		return rtrunc(c, "COMMAND record at offset %llu", (unsigned long long)rec_off);
	if (cmd == MIG_CMD_SWITCHOVER_START) {
		if (len != 0)
			return rfail(c, HM_E_FORMAT, rec_off + 3,
				     "COMMAND SWITCHOVER_START at offset %llu has length %u, expected 0",
				     (unsigned long long)rec_off, len);
		c->info->switchover_seen = true;
	} else if (c->o->on_command) {
		hm_error_t he;
		hm_error_clear(&he);
		int rc = c->o->on_command(c->o->opaque, cmd, data, len, &he);
		if (rc < 0)
			return run_hook(c, rc, &he, rec_off, "COMMAND %u at offset %llu refused", cmd,
					(unsigned long long)rec_off);
	} else {
		return rfail(c, HM_E_UNKNOWN, rec_off,
			     "unknown COMMAND %u (length %u) at offset %llu", cmd, len,
			     (unsigned long long)rec_off);
	}
	savevm_record_info_t ri = { .type = QEMU_VM_COMMAND, .offset = rec_off,
				    .payload_offset = rec_off + 5, .command = cmd };
	return record_done(c, &ri);
}

static int load_configuration(struct load_ctx *c, uint64_t rec_off)
{
	mig_file_t *f = c->f;
	uint32_t len = mig_file_get_be32(f);
	if (mig_file_status(f))
		return rtrunc(c, "CONFIGURATION record at offset %llu", (unsigned long long)rec_off);
	if (len > SAVEVM_MACHINE_MAX)
		return rfail(c, HM_E_RANGE, rec_off + 1,
			     "CONFIGURATION record: machine name length %u exceeds %u", len,
			     SAVEVM_MACHINE_MAX);
	mig_file_get_buffer(f, c->info->machine, len);
	c->info->machine[len] = '\0';
	if (mig_file_status(f))
		return rtrunc(c, "CONFIGURATION record at offset %llu: machine name",
			      (unsigned long long)rec_off);
	if (memchr(c->info->machine, '\0', len))
		return rfail(c, HM_E_FORMAT, rec_off + 5,
			     "CONFIGURATION record: machine name contains a NUL byte");
	hm_error_t he;
	hm_error_clear(&he);
	int rc = vmstate_load_subsections(f, &config_vmsd, NULL, "configuration", &he);
	if (rc != 0) {
		ensure_latched(f, rc, &he, "configuration");
		return mig_file_error_prefix(f, "CONFIGURATION record at offset %llu: ",
					     (unsigned long long)rec_off);
	}
	c->info->has_configuration = true;
	savevm_record_info_t ri = { .type = QEMU_VM_CONFIGURATION, .offset = rec_off,
				    .payload_offset = rec_off + 1 };
	return record_done(c, &ri);
}

static int load_vmdesc(struct load_ctx *c)
{
	mig_file_t *f = c->f;
	int t = mig_file_peek_u8(f);
	if (t < 0) {
		if (mig_file_status(f))
			return rtrunc(c, "after EOF");
		return 0; /* the stream may end at EOF */
	}
	uint64_t off = mig_file_offset(f);
	if (t != QEMU_VM_VMDESCRIPTION)
		return rfail(c, HM_E_FORMAT, off,
			     "after EOF: expected VMDESCRIPTION (0x06) or end of stream, found 0x%02x", t);
	mig_file_get_u8(f);
	uint32_t len = mig_file_get_be32(f);
	if (mig_file_status(f))
		return rtrunc(c, "VMDESCRIPTION at offset %llu", (unsigned long long)off);
	if (len > SAVEVM_VMDESC_MAX)
		return rfail(c, HM_E_RANGE, off + 1, "VMDESCRIPTION length %u exceeds %u", len,
			     SAVEVM_VMDESC_MAX);
	/*
	 * Grow the buffer as bytes arrive, so that a length field claiming
	 * 64 MiB on a short input costs no more than the input.
	 */
	size_t cap = len < (1u << 20) ? (size_t)len + 1 : (1u << 20);
	size_t got = 0;
	char *js = malloc(cap);
	while (js && got < len) {
		if (got + 1 >= cap) {
			size_t ncap = cap * 2 > (size_t)len + 1 ? (size_t)len + 1 : cap * 2;
			char *nj = realloc(js, ncap);
			if (!nj) {
				free(js);
				js = NULL;
				break;
			}
			js = nj;
			cap = ncap;
		}
		size_t n = len - got < cap - 1 - got ? len - got : cap - 1 - got;
		if (mig_file_get_buffer(f, js + got, n) != n)
			break;
		got += n;
	}
	if (!js)
		return rfail(c, -ENOMEM, off, "VMDESCRIPTION: cannot allocate %u bytes", len);
	js[got] = '\0';
	if (mig_file_status(f)) {
		free(js);
		return rtrunc(c, "VMDESCRIPTION at offset %llu (length %u)", (unsigned long long)off, len);
	}
	json_error_t je;
	json_t *root = json_loadb(js, len, 0, &je);
	if (!root || !json_is_object(root)) {
		json_decref(root);
		free(js);
		if (!root)
			return rfail(c, HM_E_FORMAT, off + 5 + (uint64_t)(je.position > 0 ? je.position : 0),
				     "VMDESCRIPTION at offset %llu is not valid JSON: %s (line %d column %d)",
				     (unsigned long long)off, je.text, je.line, je.column);
		return rfail(c, HM_E_FORMAT, off + 5,
			     "VMDESCRIPTION at offset %llu is not a JSON object", (unsigned long long)off);
	}
	json_decref(root);
	c->info->has_vmdesc = true;
	int rc = 0;
	if (c->o->on_vmdesc) {
		hm_error_t he;
		hm_error_clear(&he);
		rc = run_hook(c, c->o->on_vmdesc(c->o->opaque, js, len, &he), &he, off,
			      "vmdesc callback failed");
	}
	free(js);
	return rc;
}

/* Magic and version (wire-format.md §1). */
static int load_file_header(struct load_ctx *c)
{
	mig_file_t *f = c->f;
	uint32_t magic = mig_file_get_be32(f);
	if (mig_file_status(f))
		return rtrunc(c, "stream header");
	if (magic != QEMU_VM_FILE_MAGIC)
		return rfail(c, HM_E_MAGIC, 0,
			     "bad magic 0x%08x: not a QEMU migration stream (expected 0x%08x \"QEVM\")",
			     magic, QEMU_VM_FILE_MAGIC);
	uint32_t version = mig_file_get_be32(f);
	if (mig_file_status(f))
		return rtrunc(c, "stream header");
	if (version == QEMU_VM_FILE_VERSION_COMPAT)
		return rfail(c, HM_E_VERSION, 4,
			     "stream version 2 is obsolete (QEMU before 0.13); only version 3 is supported");
	if (version != QEMU_VM_FILE_VERSION)
		return rfail(c, HM_E_VERSION, 4, "stream version %u is not supported (expected 3)",
			     version);
	return 0;
}

/* One record of type t at off (its type byte already read). */
static int load_record(struct load_ctx *c, uint8_t t, uint64_t off, bool first)
{
	switch (t) {
	case QEMU_VM_CONFIGURATION:
		if (!first)
			return rfail(c, HM_E_FORMAT, off,
				     "CONFIGURATION record at offset %llu after other records",
				     (unsigned long long)off);
		return load_configuration(c, off);
	case QEMU_VM_SECTION_START:
	case QEMU_VM_SECTION_FULL:
		return load_section_start(c, t, off);
	case QEMU_VM_SECTION_PART:
	case QEMU_VM_SECTION_END:
		return load_section_part(c, t, off);
	case QEMU_VM_COMMAND:
		return load_command(c, off);
	case QEMU_VM_SECTION_FOOTER:
		return rfail(c, HM_E_FOOTER, off, "section footer at offset %llu outside a section record",
			     (unsigned long long)off);
	case QEMU_VM_SUBSECTION:
	case QEMU_VM_VMDESCRIPTION:
		return rfail(c, HM_E_FORMAT, off, "%s record at offset %llu is not allowed here",
			     qemu_vm_record_name(t), (unsigned long long)off);
	default:
		return rfail(c, HM_E_UNKNOWN, off, "unknown record type 0x%02x at offset %llu", t,
			     (unsigned long long)off);
	}
}

/* After EOF: every live section ended, then the vmdesc and the end of input. */
static int load_after_eof(struct load_ctx *c)
{
	const savevm_registry_t *r = c->r;
	uint64_t eof = c->info->eof_offset;
	if (!c->o->allow_incomplete) {
		for (size_t i = 0; i < r->n; i++) {
			const savevm_section_t *s = r->secs[i];
			if (s->started && !s->ended)
				return rfail(c, HM_E_FORMAT, eof,
					     "EOF at offset %llu but live section '%s' (id %u) got no SECTION_END",
					     (unsigned long long)eof, s->idstr, s->wire_id);
		}
	}
	if (c->o->stop_at_eof)
		return 0;
	int rc = load_vmdesc(c);
	if (rc || !c->o->require_end)
		return rc;
	int t = mig_file_peek_u8(c->f);
	if (t >= 0)
		return rfail(c, HM_E_FORMAT, mig_file_offset(c->f),
			     "unexpected byte 0x%02x at offset %llu after the end of the stream", t,
			     (unsigned long long)mig_file_offset(c->f));
	return 0;
}

int savevm_load_stream_ex(mig_file_t *f, savevm_registry_t *r, const savevm_load_opts_t *opts,
			  savevm_load_info_t *info, hm_error_t *err)
{
	static const savevm_load_opts_t no_opts;
	savevm_load_info_t local_info;
	if (!info)
		info = &local_info;
	memset(info, 0, sizeof(*info));
	struct load_ctx c = { .f = f, .r = r, .o = opts ? opts : &no_opts, .info = info };
	for (size_t i = 0; i < r->n; i++) {
		r->secs[i]->introduced = r->secs[i]->started = r->secs[i]->ended = false;
	}
	int rc = load_file_header(&c);
	for (bool first = true; rc == 0; first = false) {
		uint64_t off = mig_file_offset(f);
		uint8_t t = mig_file_get_u8(f);
		if (mig_file_status(f)) {
			rc = rtrunc(&c, "record type at offset %llu (stream ended before EOF)",
				    (unsigned long long)off);
		} else if (t == QEMU_VM_EOF) {
			info->eof_offset = off;
			rc = load_after_eof(&c);
			break;
		} else {
			rc = load_record(&c, t, off, first);
		}
	}
	info->end_offset = mig_file_offset(f);
	if (rc || mig_file_status(f))
		rc = mig_file_error_copy(f, err);
	return rc;
}

int savevm_load_stream(mig_file_t *f, savevm_registry_t *r, hm_error_t *err)
{
	return savevm_load_stream_ex(f, r, NULL, NULL, err);
}
