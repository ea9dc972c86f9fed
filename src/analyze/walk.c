/* SPDX-License-Identifier: MIT */
/*
 * The stream walker: header, configuration, commands, START/PART/END/FULL
 * records with their footers, EOF and the vmdesc after it, dispatching each
 * payload to `ram`, `spapr/htab` or the vmdesc-driven vmstate walk. It works
 * on a memory buffer and never trusts a byte: every error names the record,
 * the section, the field and the byte offset; a section it has no layout for
 * stops the walk cleanly (report->complete false), never a guess.
 */
#include "an_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VMDESC_MAX_LEN (64u << 20) /* QEMU's analyser looks at the last 10 MB */
/* COMMAND records: each costs a record and a command entry (48 bytes) for
 * 5 bytes of input, so their number is capped (docs/limits.md). */
#define AN_MAX_COMMANDS 4096u

_Static_assert(sizeof(uint32_t) == 4, "be32 fields");

/* Commands of QEMU's migration/savevm.c (MigrationCommand) and their fixed
 * lengths (-1: variable). */
static const struct {
	const char *name;
	int len;
} commands[] = {
	[0] = {NULL, 0},
	[1] = {"open-return-path", 0},
	[2] = {"ping", 4},
	[3] = {"postcopy-advise", -1},
	[4] = {"postcopy-listen", 0},
	[5] = {"postcopy-run", 0},
	[6] = {"postcopy-ram-discard", -1},
	[7] = {"postcopy-resume", 0},
	[8] = {"packaged", 4},
	[9] = {"recv-bitmap", -1},
	[10] = {"enable-colo", 0},
	[11] = {"switchover-start", 0},
};
#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

const char *an_command_name(uint16_t cmd)
{
	return cmd < N_COMMANDS ? commands[cmd].name : NULL;
}

#define HM_STR_(x) #x
#define HM_STR(x) HM_STR_(x)

/* The --state budget for a stream of len bytes of which htab are spapr/htab
 * records (their bytes cost table memory instead, docs/limits.md). */
static size_t state_budget(uint64_t len, uint64_t htab)
{
	uint64_t dev = len > htab ? len - htab : 0;
	if (dev > (SIZE_MAX - AN_STATE_BASE) / AN_STATE_PER_BYTE)
		return SIZE_MAX;
	return AN_STATE_BASE + AN_STATE_PER_BYTE * (size_t)dev;
}

static const char *state_cap_msg(size_t max)
{
	static _Thread_local char m[200];
	snprintf(m, sizeof(m),
		 "the decoded state (--state) needs more than its cap of %zu bytes (%zu MiB + %u bytes per input byte"
		 " outside spapr/htab)",
		 max, AN_STATE_BASE >> 20, AN_STATE_PER_BYTE);
	return m;
}

int an_fail(struct an_walk *w, int code, int64_t off, const char *fmt, ...)
{
	if (w->err->code)
		return w->err->code;
	char msg[400], path[300];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (code == -ENOMEM && w->arena && w->arena->over) {
		/* not the machine's memory but the --state budget */
		code = HM_E_RANGE;
		snprintf(msg, sizeof(msg), "%s", state_cap_msg(w->arena->max));
	}
	path[0] = 0;
	size_t n = 0;
	size_t nf = w->nframes < sizeof(w->frames) / sizeof(w->frames[0]) ? w->nframes
									    : sizeof(w->frames) / sizeof(w->frames[0]);
	for (size_t i = 0; i < nf && n < sizeof(path) - 1; i++) {
		int k;
		if (w->frames[i].index >= 0)
			k = snprintf(path + n, sizeof(path) - n, "%s%s[%" PRId64 "]", i ? "." : "",
				     w->frames[i].name, w->frames[i].index);
		else
			k = snprintf(path + n, sizeof(path) - n, "%s%s", i ? "." : "", w->frames[i].name);
		if (k < 0)
			break;
		n += (size_t)k;
	}
	if (n >= sizeof(path))
		n = sizeof(path) - 1;
	if (path[0]) {
		/* field names come from the vmdesc: the peer's bytes */
		char qpath[HM_ESC_LEN(120)];
		return hm_error_set(w->err, code, off, "%s: field '%s': %s", w->ctx,
				    hm_escape(path, n, 0, qpath, sizeof(qpath)), msg);
	}
	return hm_error_set(w->err, code, off, "%s: %s", w->ctx[0] ? w->ctx : "stream", msg);
}

/* ------------------------------------------------------------- vmdesc */

/*
 * Find the vmdesc: 0x06, be32 len, JSON[len] ending exactly at the end of
 * the buffer, right after the EOF byte, at or after lo_min (>= 1). JSON cannot contain a raw 0x06, so
 * searching back from the end finds at most one candidate that fits.
 */
bool an_find_vmdesc(const uint8_t *buf, size_t len, size_t lo_min, size_t *off, uint32_t *jlen)
{
	if (lo_min == 0 || len < lo_min + 5 + 2)
		return false;
	size_t lo = len > (size_t)VMDESC_MAX_LEN + lo_min + 4 ? len - VMDESC_MAX_LEN - 5 : lo_min;
	size_t hi = len - 5 - 2; /* JSON is at least "{}" */
	while (hi >= lo) {
		const uint8_t *q = memrchr(buf + lo, QEMU_VM_VMDESCRIPTION, hi - lo + 1);
		if (!q)
			return false;
		size_t p = (size_t)(q - buf);
		if (hm_load_be32(buf + p + 1) == len - p - 5 && buf[p + 5] == '{' && buf[p - 1] == QEMU_VM_EOF) {
			*off = p;
			*jlen = (uint32_t)(len - p - 5);
			return true;
		}
		if (p == lo)
			break;
		hi = p - 1;
	}
	return false;
}

/* ------------------------------------------------------------- sections */

/* The record being walked. */
static an_record_t *cur_rec(an_report_t *r)
{
	return &r->records[r->nrecords - 1 - r->records_first];
}

static int add_record(an_report_t *r, uint8_t type, uint64_t off, uint32_t sec, uint16_t cmd)
{
	if (r->nrecords - r->records_first == r->priv->rec_cap) {
		size_t cap = r->priv->rec_cap ? r->priv->rec_cap * 2 : 64;
		an_record_t *n = realloc(r->records, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		r->records = n;
		r->priv->rec_cap = cap;
	}
	an_record_t *rec = &r->records[r->nrecords++ - r->records_first];
	rec->offset = off;
	rec->length = 0;
	rec->payload = 0;
	rec->type = type;
	rec->section = sec;
	rec->cmd = cmd;
	return 0;
}

static int64_t find_section(const an_report_t *r, uint32_t id)
{
	return an_index_find(&r->priv->by_id, id, NULL, NULL);
}

struct key_match {
	const an_report_t *r;
	const char *idstr;
	uint32_t inst;
};

static bool same_key(void *opaque, uint32_t i)
{
	const struct key_match *m = opaque;
	return m->r->sections[i].instance_id == m->inst && strcmp(m->r->sections[i].idstr, m->idstr) == 0;
}

static void set_ctx(struct an_walk *w, uint8_t type, const an_section_t *s)
{
	if (s)
		snprintf(w->ctx, sizeof(w->ctx), "record #%zu %s at offset %" PRId64 ", section '%s' (id %u, instance %u)",
			 w->r->nrecords, qemu_vm_record_name(type), w->rec_off, s->idstr, s->id, s->instance_id);
	else
		snprintf(w->ctx, sizeof(w->ctx), "record #%zu %s at offset %" PRId64, w->r->nrecords,
			 qemu_vm_record_name(type), w->rec_off);
}

static void stop_walk(struct an_walk *w, int64_t off, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void stop_walk(struct an_walk *w, int64_t off, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char raw[sizeof(w->r->stop_reason)];
	vsnprintf(raw, sizeof(raw), fmt, ap);
	va_end(ap);
	/* shown like an error message: the same guard */
	hm_escape(raw, strlen(raw), HM_ESC_KEEP_QUOTING, w->r->stop_reason, sizeof(w->r->stop_reason));
	w->r->stop_offset = off;
	w->r->complete = false;
}

/* The payload of a START or FULL record, by what the section is. */
static int section_payload(struct an_walk *w, an_section_t *s, uint8_t type, bool *stopped)
{
	if (s->kind == AN_SEC_RAM || s->kind == AN_SEC_HTAB) {
		int rc = s->kind == AN_SEC_RAM ? an_ram_walk(w, type) : an_htab_walk(w, type, s->version_id);
		if (rc < 0 || !(w->opts & AN_OPT_STATE))
			return rc;
		/* As QEMU's analyser: RAM shows its block sizes, the table nothing. */
		struct an_arena *a = w->arena;
		char key[300];
		int kl = snprintf(key, sizeof(key), "%s (%u)", s->idstr, s->id);
		struct an_node *kn = an_node_new(a, AN_NODE_STR, key, (size_t)kl);
		struct an_node *v;
		if (s->kind == AN_SEC_RAM) {
			struct an_node *sz = an_node_new(a, AN_NODE_OBJ, NULL, 0);
			for (size_t i = 0; sz && i < w->r->ram.nblocks; i++) {
				char hv[24];
				int n = snprintf(hv, sizeof(hv), "0x%016" PRIx64, w->r->ram.blocks[i].length);
				struct an_node *bn = an_node_new(a, AN_NODE_STR, w->r->ram.blocks[i].name,
								 strlen(w->r->ram.blocks[i].name));
				if (!bn || an_node_put(a, sz, bn->str, an_node_new(a, AN_NODE_STR, hv, (size_t)n), false, NULL) < 0)
					sz = NULL;
			}
			v = an_node_new(a, AN_NODE_OBJ, NULL, 0);
			if (v && sz && an_node_put(a, v, "section sizes", sz, false, NULL) < 0)
				v = NULL;
		} else {
			v = an_node_new(a, AN_NODE_STR, "", 0);
		}
		if (!kn || !v || an_node_put(a, w->r->priv->state, kn->str, v, false, NULL) < 0)
			return an_fail(w, -ENOMEM, w->rec_off, "out of memory");
		return 0;
	}
	if (s->kind == AN_SEC_VMSTATE || s->kind == AN_SEC_BUILTIN) {
		const struct an_vdesc *d = s->kind == AN_SEC_VMSTATE
						   ? an_vmdesc_find(w->vd, s->idstr, s->instance_id)
						   : an_builtin_find(s->idstr, s->instance_id, s->version_id);
		struct an_node *obj = (w->opts & AN_OPT_STATE) ? an_node_new(w->arena, AN_NODE_OBJ, NULL, 0) : NULL;
		if ((w->opts & AN_OPT_STATE) && !obj)
			return an_fail(w, -ENOMEM, w->rec_off, "out of memory");
		size_t start = w->pos;
		w->nframes = 0;
		w->stop_sub = false;
		int rc = an_vmstate_walk(w, d, 0, obj, s->kind == AN_SEC_BUILTIN);
		w->nframes = 0;
		if (rc < 0)
			return rc;
		if (w->stop_sub) {
			s->kind = AN_SEC_UNKNOWN;
			stop_walk(w, (int64_t)w->pos,
				  "section '%s' (id %u) at offset %" PRId64 ": a subsection at offset %zu is not described"
				  " (no vmdesc entry for this section); walked up to here",
				  s->idstr, s->id, w->rec_off, w->pos);
			*stopped = true;
			return 0;
		}
		if (strcmp(s->idstr, "hptmig/verify") == 0 && s->instance_id == 0)
			an_verify_note(w->r, s->version_id, w->win + (start - w->base), w->pos - start, w->rec_off);
		if (obj) {
			char key[300];
			int kl = snprintf(key, sizeof(key), "%s (%u)", s->idstr, s->id);
			struct an_node *kn = an_node_new(w->arena, AN_NODE_STR, key, (size_t)kl);
			if (!kn || an_node_put(w->arena, w->r->priv->state, kn->str, obj, false, NULL) < 0)
				return an_fail(w, -ENOMEM, w->rec_off, "out of memory");
		}
		return 0;
	}
	*stopped = true;
	stop_walk(w, w->rec_off,
		  "section '%s' (id %u, instance %u, version %u) at offset %" PRId64
		  ": no layout known (%s); walked up to here",
		  s->idstr, s->id, s->instance_id, s->version_id, w->rec_off,
		  type == QEMU_VM_SECTION_START ? "a live section: only ram and spapr/htab are decoded"
		  : w->vd			? "not in the vmdesc"
						: "the stream has no vmdesc");
	return 0;
}

static enum an_section_kind classify(struct an_walk *w, const char *idstr, uint32_t inst,
				     uint32_t ver, uint8_t type)
{
	if (strcmp(idstr, "ram") == 0 && inst == 0 && type == QEMU_VM_SECTION_START)
		return AN_SEC_RAM;
	if (strcmp(idstr, "spapr/htab") == 0 && inst == 0 && type == QEMU_VM_SECTION_START)
		return AN_SEC_HTAB;
	if (type == QEMU_VM_SECTION_FULL) {
		if (an_vmdesc_find(w->vd, idstr, inst))
			return AN_SEC_VMSTATE;
		if (an_builtin_find(idstr, inst, ver))
			return AN_SEC_BUILTIN;
	}
	return AN_SEC_UNKNOWN;
}

static int footer(struct an_walk *w, const an_section_t *s)
{
	size_t at = w->pos;
	if (!an_need(w, 5, "section footer"))
		return w->err->code;
	uint8_t t = an_u8(w);
	uint32_t id = an_be32(w);
	if (t != QEMU_VM_SECTION_FOOTER)
		return an_fail(w, HM_E_FOOTER, (int64_t)at,
			       "footer expected (0x7e), found byte 0x%02x: the payload did not end where it should",
			       t);
	if (id != s->id)
		return an_fail(w, HM_E_FOOTER, (int64_t)at, "footer names section id %u, expected %u", id, s->id);
	return 0;
}

static int start_or_full(struct an_walk *w, uint8_t type, bool *stopped)
{
	an_report_t *r = w->r;
	if (!an_need(w, 5, "section header"))
		return w->err->code;
	uint32_t id = an_be32(w);
	uint8_t nl = an_u8(w);
	if (nl == 0)
		return an_fail(w, HM_E_FORMAT, (int64_t)w->pos - 1, "section id %u: empty idstr", id);
	if (!an_need(w, (uint64_t)nl + 8, "section idstr, instance and version"))
		return w->err->code;
	char idstr[256];
	memcpy(idstr, an_at(w), nl);
	idstr[nl] = 0;
	for (unsigned i = 0; i < nl; i++)
		if ((uint8_t)idstr[i] < 0x20 || (uint8_t)idstr[i] > 0x7e)
			return an_fail(w, HM_E_FORMAT, (int64_t)w->pos + i,
				       "section id %u: idstr byte 0x%02x is not printable", id, (uint8_t)idstr[i]);
	w->pos += nl;
	uint32_t inst = an_be32(w);
	uint32_t ver = an_be32(w);
	if (find_section(r, id) >= 0)
		return an_fail(w, HM_E_FORMAT, w->rec_off, "section id %u ('%s') introduced twice", id, idstr);
	/* A device is sent once: a second START/FULL of the same (idstr,
	 * instance) is a broken sender (and would let a hostile stream make
	 * the walk re-run one huge vmdesc description many times). */
	struct key_match km = {r, idstr, inst};
	uint64_t hkey = an_hash_str(idstr, inst);
	int64_t dup = an_index_find(&r->priv->by_key, hkey, same_key, &km);
	if (dup >= 0)
		return an_fail(w, HM_E_FORMAT, w->rec_off, "section '%s' instance %u sent twice (ids %u and %u)", idstr,
			       inst, r->sections[dup].id, id);
	an_section_t *ns = r->sections;
	if ((r->nsections & (r->nsections - 1)) == 0) {
		/* capacity: the next power of two (a doubling, not one realloc each) */
		ns = realloc(r->sections, (r->nsections ? r->nsections * 2 : 1) * sizeof(*ns));
		if (!ns)
			return an_fail(w, -ENOMEM, w->rec_off, "out of memory");
		r->sections = ns;
	}
	an_section_t *s = &ns[r->nsections];
	memset(s, 0, sizeof(*s));
	s->id = id;
	s->instance_id = inst;
	s->version_id = ver;
	memcpy(s->idstr, idstr, (size_t)nl + 1);
	s->first_offset = (uint64_t)w->rec_off;
	s->kind = classify(w, idstr, inst, ver, type);
	if (type == QEMU_VM_SECTION_START)
		s->n_start = 1;
	else
		s->n_full = 1;
	uint32_t sidx = (uint32_t)r->nsections++;
	if (an_index_put(&r->priv->by_id, id, sidx) < 0 || an_index_put(&r->priv->by_key, hkey, sidx) < 0)
		return an_fail(w, -ENOMEM, w->rec_off, "out of memory");
	cur_rec(r)->section = sidx;
	cur_rec(r)->payload = w->pos;
	set_ctx(w, type, s);
	if (s->kind == AN_SEC_RAM && ver != 4)
		return an_fail(w, HM_E_VERSION, w->rec_off, "version %u (only 4 is supported)", ver);
	int rc = section_payload(w, s, type, stopped);
	if (rc < 0 || *stopped)
		return rc;
	return footer(w, s);
}

static int part_or_end(struct an_walk *w, uint8_t type, bool *stopped)
{
	an_report_t *r = w->r;
	if (!an_need(w, 4, "section id"))
		return w->err->code;
	uint32_t id = an_be32(w);
	int64_t si = find_section(r, id);
	if (si < 0)
		return an_fail(w, HM_E_FORMAT, w->rec_off, "section id %u was not introduced by a START record", id);
	an_section_t *s = &r->sections[si];
	cur_rec(r)->section = (uint32_t)si;
	cur_rec(r)->payload = w->pos;
	set_ctx(w, type, s);
	if (s->n_start == 0)
		return an_fail(w, HM_E_FORMAT, w->rec_off, "%s for a section sent as FULL", qemu_vm_record_name(type));
	if (s->n_end)
		return an_fail(w, HM_E_FORMAT, w->rec_off, "%s after the section's END record", qemu_vm_record_name(type));
	if (type == QEMU_VM_SECTION_PART)
		s->n_part++;
	else
		s->n_end++;
	if (s->kind == AN_SEC_RAM) {
		int rc = an_ram_walk(w, type);
		if (rc < 0)
			return rc;
	} else if (s->kind == AN_SEC_HTAB) {
		int rc = an_htab_walk(w, type, s->version_id);
		if (rc < 0)
			return rc;
	} else {
		*stopped = true;
		stop_walk(w, w->rec_off, "live section '%s' (id %u) at offset %" PRId64 ": no layout known; walked up to here",
			  s->idstr, s->id, w->rec_off);
		return 0;
	}
	return footer(w, s);
}

static int command(struct an_walk *w)
{
	an_report_t *r = w->r;
	if (!an_need(w, 4, "command header"))
		return w->err->code;
	uint16_t cmd = an_be16(w);
	uint16_t len = an_be16(w);
	cur_rec(r)->cmd = cmd;
	snprintf(w->ctx, sizeof(w->ctx), "record #%zu COMMAND %u (%s) at offset %" PRId64, r->nrecords, cmd,
		 an_command_name(cmd) ? an_command_name(cmd) : "?", w->rec_off);
	if (cmd >= N_COMMANDS || !commands[cmd].name)
		return an_fail(w, HM_E_UNKNOWN, w->rec_off, "unknown command %u", cmd);
	if (commands[cmd].len >= 0 && len != commands[cmd].len)
		return an_fail(w, HM_E_FORMAT, w->rec_off + 3, "length %u, this command takes %d", len,
			       commands[cmd].len);
	if (cmd == 8)
		return an_fail(w, HM_E_UNSUPPORTED, w->rec_off, "packaged (postcopy) streams are not supported");
	if (an_skip(w, len, "command data") < 0)
		return w->err->code;
	if (r->ncommands >= AN_MAX_COMMANDS)
		return an_fail(w, HM_E_RANGE, w->rec_off,
			       "more than %u COMMAND records (the cap; QEMU sends a handful)", AN_MAX_COMMANDS);
	an_command_t *nc = realloc(r->commands, (r->ncommands + 1) * sizeof(*nc));
	if (!nc)
		return an_fail(w, -ENOMEM, w->rec_off, "out of memory");
	r->commands = nc;
	nc[r->ncommands].offset = (uint64_t)w->rec_off;
	nc[r->ncommands].cmd = cmd;
	nc[r->ncommands].len = len;
	r->ncommands++;
	return 0;
}

/* Configuration subsections QEMU sends (migration/savevm.c). Decoded here
 * rather than through the vmdesc, whose description of the capability list
 * (a variable-length array) cannot give per-element sizes. */
static int config_subsection(struct an_walk *w)
{
	an_report_t *r = w->r;
	size_t at = w->pos;
	if (!an_need(w, 2, "configuration subsection header"))
		return w->err->code;
	w->pos++;
	uint8_t nl = an_u8(w);
	if (!an_need(w, (uint64_t)nl + 4, "configuration subsection name and version"))
		return w->err->code;
	char name[256];
	memcpy(name, an_at(w), nl);
	name[nl] = 0;
	w->pos += nl;
	uint32_t ver = an_be32(w);
	/* The peer's name as it may be shown (reports, messages). */
	char qname[HM_ESC_LEN(255)];
	hm_escape(name, nl, 0, qname, sizeof(qname));
	size_t used = strlen(r->config_subsections);
	snprintf(r->config_subsections + used, sizeof(r->config_subsections) - used, "%s%s", used ? "," : "",
		 qname);
	if (strcmp(name, "configuration/target-page-bits") == 0) {
		if (!an_need(w, 4, "target-page-bits"))
			return w->err->code;
		r->target_page_bits = an_be32(w);
		if (r->target_page_bits < 9 || r->target_page_bits > 30)
			return an_fail(w, HM_E_RANGE, (int64_t)w->pos - 4, "target-page-bits %u", r->target_page_bits);
		return 0;
	}
	if (strcmp(name, "configuration/uuid") == 0) {
		if (!an_need(w, 16, "uuid"))
			return w->err->code;
		w->pos += 16;
		return 0;
	}
	if (strcmp(name, "configuration/capabilities") == 0) {
		if (!an_need(w, 4, "capability count"))
			return w->err->code;
		uint32_t n = an_be32(w);
		for (uint32_t i = 0; i < n; i++) {
			if (!an_need(w, 1, "capability name length"))
				return w->err->code;
			uint8_t l = an_u8(w);
			if (!an_need(w, l, "capability name"))
				return w->err->code;
			char cap[256];
			memcpy(cap, an_at(w), l);
			cap[l] = 0;
			w->pos += l;
			if (strcmp(cap, "x-ignore-shared") == 0 || strcmp(cap, "mapped-ram") == 0)
				return an_fail(w, HM_E_UNSUPPORTED, (int64_t)w->pos - l - 1,
					       "capability '%s' changes the RAM format: not supported", cap);
			/* (only those two names get here: printable) */
		}
		return 0;
	}
	(void)ver;
	return an_fail(w, HM_E_UNKNOWN, (int64_t)at, "unknown configuration subsection '%s'", qname);
}

static int configuration(struct an_walk *w)
{
	an_report_t *r = w->r;
	snprintf(w->ctx, sizeof(w->ctx), "record #%zu CONFIGURATION at offset %" PRId64, r->nrecords, w->rec_off);
	if (r->has_config)
		return an_fail(w, HM_E_FORMAT, w->rec_off, "a second configuration record");
	if (r->nrecords != 1)
		return an_fail(w, HM_E_FORMAT, w->rec_off, "configuration after other records");
	if (!an_need(w, 4, "machine name length"))
		return w->err->code;
	uint32_t len = an_be32(w);
	if (len == 0 || len > 255)
		return an_fail(w, HM_E_RANGE, (int64_t)w->pos - 4, "machine name length %u (1..255)", len);
	if (!an_need(w, len, "machine name"))
		return w->err->code;
	memcpy(r->machine, an_at(w), len);
	r->machine[len] = 0;
	for (uint32_t i = 0; i < len; i++)
		if ((uint8_t)r->machine[i] < 0x20 || (uint8_t)r->machine[i] > 0x7e)
			return an_fail(w, HM_E_FORMAT, (int64_t)w->pos + i, "machine name byte 0x%02x",
				       (uint8_t)r->machine[i]);
	w->pos += len;
	r->has_config = true;
	while (an_peek(w) == QEMU_VM_SUBSECTION) {
		int rc = config_subsection(w);
		if (rc < 0)
			return rc;
	}
	if (r->target_page_bits && !w->vd)
		w->page_size = UINT32_C(1) << r->target_page_bits;
	return 0;
}

/* ------------------------------------------------------------------ walk */

/* Streamed walk, before each record of the live phase: the previous
 * record is committed and forgotten; a FULL record or EOF starts the final
 * phase, read whole (it cannot be delimited before the vmdesc describes
 * it), with the vmdesc it ends with. Sets *ended when the stream ended
 * (w->err set) and *held when the final phase was just read. */
static int live_boundary(struct an_walk *w, bool *held)
{
	an_report_t *r = w->r;
	*held = false;
	w->st->in_record = false;
	if (an_stream_commit(w, true) < 0)
		return w->err->code;
	r->records_first = r->nrecords;
	int c = an_peek(w);
	if (c < 0) {
		if (w->err->code)
			return w->err->code;
		return hm_error_set(w->err, HM_E_TRUNCATED, (int64_t)w->pos,
				    "stream ends at offset %zu without an EOF record (after %zu records)", w->pos,
				    r->nrecords);
	}
	if (c != QEMU_VM_SECTION_FULL && c != QEMU_VM_EOF) {
		w->st->in_record = true;
		return 0;
	}
	int rc = an_stream_hold(w);
	if (rc < 0)
		return rc;
	r->file_bytes = w->end;
	*held = true;
	return 0;
}

/* Streamed walk, after a record: the hooks, and the spapr/htab byte cap
 * (the replayed table's memory grows with them, not with the window). */
static int live_record_done(struct an_walk *w, const an_record_t *rec)
{
	struct an_stream *st = w->st;
	an_report_t *r = w->r;
	if (st->held)
		return 0;
	if (r->priv->htab_bytes > AN_STREAM_HTAB_MAX)
		return hm_error_set(w->err, HM_E_RANGE, (int64_t)rec->offset,
				    "spapr/htab records take more than %llu bytes of the stream (the cap of a"
				    " streamed walk: its replayed table grows with them)",
				    (unsigned long long)AN_STREAM_HTAB_MAX);
	if (st->hooks.record && an_stream_hook_rc(w, st->hooks.record(st->hooks.opaque, r, rec), "record") < 0)
		return w->err->code;
	if (rec->section != UINT32_MAX && r->sections[rec->section].kind == AN_SEC_HTAB)
		return an_stream_progress(w, true);
	return 0;
}

static int walk_records(struct an_walk *w)
{
	an_report_t *r = w->r;
	for (;;) {
		w->ctx[0] = 0;
		if (w->st && !w->st->held) {
			bool held;
			int rc = live_boundary(w, &held);
			if (rc < 0)
				return rc;
			if (held)
				return 1; /* the caller finds the vmdesc and walks on */
		}
		if (w->pos >= w->end)
			return hm_error_set(w->err, HM_E_TRUNCATED, (int64_t)w->pos,
					    "stream ends at offset %zu without an EOF record (after %zu records)", w->pos,
					    r->nrecords);
		w->rec_off = (int64_t)w->pos;
		uint8_t type = an_u8(w);
		if (type == QEMU_VM_EOF) {
			if (w->pos != w->end)
				return hm_error_set(w->err, HM_E_FORMAT, (int64_t)w->pos,
						    "%zu bytes after the EOF record at offset %" PRId64 " are not a vmdesc",
						    w->end - w->pos, w->rec_off);
			r->eof_offset = (uint64_t)w->rec_off;
			r->complete = true;
			return 0;
		}
		if (add_record(r, type, (uint64_t)w->rec_off, UINT32_MAX, 0) < 0)
			return hm_error_set(w->err, -ENOMEM, w->rec_off, "out of memory");
		set_ctx(w, type, NULL);
		bool stopped = false;
		int rc;
		switch (type) {
		case QEMU_VM_SECTION_START:
		case QEMU_VM_SECTION_FULL:
			rc = start_or_full(w, type, &stopped);
			break;
		case QEMU_VM_SECTION_PART:
		case QEMU_VM_SECTION_END:
			rc = part_or_end(w, type, &stopped);
			break;
		case QEMU_VM_COMMAND:
			rc = command(w);
			break;
		case QEMU_VM_CONFIGURATION:
			rc = configuration(w);
			break;
		default:
			rc = an_fail(w, HM_E_UNKNOWN, w->rec_off, "record type byte 0x%02x (%s) is not valid here",
				     type, qemu_vm_record_name(type));
		}
		if (rc < 0)
			return rc;
		an_record_t *rec = cur_rec(r);
		if (stopped) {
			r->nrecords--; /* the record we could not walk is not listed */
			return 0;
		}
		rec->length = (uint64_t)w->pos - rec->offset;
		if (rec->section != UINT32_MAX) {
			r->sections[rec->section].bytes += rec->length;
			if (r->sections[rec->section].kind == AN_SEC_HTAB) {
				/* what spapr/htab took so far no longer counts for --state */
				r->priv->htab_bytes += rec->length;
				r->priv->arena.max = state_budget(r->file_bytes, r->priv->htab_bytes);
			}
		}
		if (w->st && live_record_done(w, rec) < 0)
			return w->err->code;
	}
}

/* Bound on vmstate work. A real stream needs at most two visits per byte (a
 * 1-byte struct of one field: the element and its field); the rest is room
 * for empty fields. */
uint64_t an_work_max(size_t walk_end)
{
	return 2 * (uint64_t)walk_end + (UINT64_C(1) << 20);
}

/* The 8-byte stream header: magic and version 3. */
static int analyze_header(an_report_t *r, const uint8_t *buf, size_t len)
{
	if (len < 8)
		return hm_error_set(&r->error,
				    len >= 4 && hm_load_be32(buf) != QEMU_VM_FILE_MAGIC ? HM_E_MAGIC : HM_E_TRUNCATED, 0,
				    "stream header: needs 8 bytes (magic, version), the input has %zu", len);
	if (hm_load_be32(buf) != QEMU_VM_FILE_MAGIC)
		return hm_error_set(&r->error, HM_E_MAGIC, 0, "stream header: magic 0x%08x is not QEVM (0x%08x)",
				    hm_load_be32(buf), QEMU_VM_FILE_MAGIC);
	r->stream_version = hm_load_be32(buf + 4);
	if (r->stream_version != QEMU_VM_FILE_VERSION)
		return hm_error_set(&r->error, HM_E_VERSION, 4, "stream header: version %u%s (only 3 is supported)",
				    r->stream_version,
				    r->stream_version == QEMU_VM_FILE_VERSION_COMPAT ? " is obsolete" : "");
	return 0;
}

/* The vmdesc at the end of the stream, when there is one: checked, parsed
 * and compiled, and the walk told to end where it starts. buf[0, len) are
 * the stream's bytes from offset base on (its end); lo_min: the first
 * place the vmdesc's 0x06 may be. */
static int analyze_vmdesc(struct an_walk *w, const uint8_t *buf, size_t len, size_t base, size_t lo_min)
{
	an_report_t *r = w->r;
	struct an_private *p = r->priv;
	size_t voff;
	uint32_t vlen;
	if (!an_find_vmdesc(buf, len, lo_min, &voff, &vlen))
		return 0;
	buf += voff;
	voff += base;
	int rc = an_vmdesc_prescan((const char *)buf + 5, vlen, (int64_t)voff + 5, &r->error);
	if (rc < 0) {
		hm_error_prefix(&r->error, "vmdesc at offset %zu: ", voff);
		return rc;
	}
	json_error_t je;
	json_t *root = json_loadb((const char *)buf + 5, vlen, JSON_REJECT_DUPLICATES, &je);
	if (!root)
		return hm_error_set(&r->error, HM_E_FORMAT,
				    (int64_t)(voff + 5 + (size_t)(je.position > 0 ? je.position : 0)),
				    "vmdesc at offset %zu: invalid JSON: %s", voff, je.text);
	rc = an_vmdesc_compile(root, &p->vd, (int64_t)voff, &r->error);
	json_decref(root);
	p->have_vd = true;
	if (rc < 0)
		return rc;
	r->has_vmdesc = true;
	r->vmdesc = json_incref(p->vd.root);
	r->vmdesc_offset = voff;
	r->vmdesc_len = vlen;
	r->vmdesc_devices = p->vd.ndev;
	w->vd = &p->vd;
	w->end = voff;
	if (p->vd.page_size)
		w->page_size = p->vd.page_size;
	return 0;
}

/* Our own streams carry the sender's digest (v1) or root (v2): check it.
 * A root the analyser did not compute (shift above 36) is not compared. */
static int analyze_check_verify(an_report_t *r)
{
	const an_htab_stats_t *h = &r->htab;
	uint32_t shift = h->present && !h->no_hpt ? h->shift : HTAB_HDR_NO_HPT;
	bool v2 = r->verify_version >= 2;
	const char *what = v2 ? "root" : "digest";
	const uint8_t *sent = v2 ? r->verify_root : r->verify_digest;
	const uint8_t *have = v2 ? h->root : h->digest;
	bool same = (v2 && !h->has_root) || memcmp(sent, have, HM_SHA256_LEN) == 0;
	if (same && r->verify_shift == shift && r->verify_valid == h->valid)
		return 0;
	char a[65], b[65];
	hm_hex(sent, HM_SHA256_LEN, a);
	hm_hex(have, HM_SHA256_LEN, b);
	return hm_error_set(&r->error, HM_E_DIGEST, r->priv->verify_off,
			    "section 'hptmig/verify': the sender's table (shift %u, %llu valid, %s %s)"
			    " is not the one replayed from spapr/htab (shift %u, %llu valid, %s %s)",
			    r->verify_shift, (unsigned long long)r->verify_valid, what, a, shift,
			    (unsigned long long)h->valid, what, b);
}

/* What was decoded for --state, also when the walk failed or stopped,
 * rendered as text (and JSON on request) within the state budget.
 * Returns rc, or the budget's error when the text did not fit. */
static int analyze_render_state(an_report_t *r, size_t len, unsigned opts, int rc)
{
	struct an_private *p = r->priv;
	size_t state_max = state_budget(len, p->htab_bytes);
	/* the text fits in what the tree left of the budget; parsed by
	 * jansson it takes up to AN_STATE_JSON_WEIGHT times as much */
	size_t text_max = state_max - (p->arena.total < state_max ? p->arena.total : state_max);
	if ((opts & AN_OPT_STATE_JSON) && text_max > state_max / AN_STATE_JSON_WEIGHT)
		text_max = state_max / AN_STATE_JSON_WEIGHT;
	bool over = false;
	r->state_text = an_node_render(p->state, text_max ? text_max : 1, &r->state_len, &over);
	if (over) {
		rc = hm_error_set(&r->error, HM_E_RANGE, -1, "%s%s", state_cap_msg(state_max),
				  (opts & AN_OPT_STATE_JSON) ? " (its text counts " HM_STR(AN_STATE_JSON_WEIGHT)
							       " times: it is also parsed as JSON)"
							     : "");
	}
	an_arena_free(&p->arena);
	p->state = NULL;
	if (r->state_text && (opts & AN_OPT_STATE_JSON))
		r->state = json_loadb(r->state_text, r->state_len, 0, NULL);
	return rc;
}

/* A new report for a walk with these options (NULL: out of memory, in err). */
static an_report_t *report_new(unsigned opts, size_t len, hm_error_t *err)
{
	an_report_t *r = calloc(1, sizeof(*r));
	struct an_private *p = calloc(1, sizeof(*p));
	if (!r || !p) {
		free(r);
		free(p);
		hm_error_set(err, -ENOMEM, -1, "out of memory");
		return NULL;
	}
	r->priv = p;
	r->file_bytes = len;
	r->stop_offset = -1;
	hm_error_clear(&r->error);
	if (opts & AN_OPT_STATE) {
		p->arena.max = state_budget(len, 0);
		p->state = an_node_new(&p->arena, AN_NODE_OBJ, NULL, 0);
		if (!p->state)
			hm_error_set(&r->error, -ENOMEM, -1, "out of memory");
	}
	return r;
}

/* After the records: the table's statistics, our own digest check, the
 * state text, and the error in err. */
static int analyze_finish(an_report_t *r, unsigned opts, int rc, uint64_t t0, hm_error_t *err)
{
	struct an_private *p = r->priv;
	if (rc >= 0 && !r->error.code) {
		rc = an_htab_finish(r, &r->error);
		if (rc == 0)
			rc = an_htab_root(r, &r->error);
		if (rc == 0 && r->has_verify)
			rc = analyze_check_verify(r);
	}
	if (p->state)
		rc = analyze_render_state(r, (size_t)r->file_bytes, opts, rc);
	r->walk_ns = hm_now_ns() - t0;
	if (r->error.code) {
		*err = r->error;
		return r->error.code;
	}
	return rc;
}

int an_analyze(const uint8_t *buf, size_t len, unsigned opts, an_report_t **out, hm_error_t *err)
{
	hm_error_t local;
	if (!err)
		err = &local;
	hm_error_clear(err);
	uint64_t t0 = hm_now_ns();
	an_report_t *r = *out = report_new(opts, len, err);
	if (!r)
		return err->code;
	struct an_walk w = {.win = buf, .avail = len, .end = len, .opts = opts, .r = r, .err = &r->error,
			    .ram_cur_block = -1, .page_size = 4096, .arena = &r->priv->arena};
	int rc = r->error.code;
	if (rc == 0 && (rc = analyze_header(r, buf, len)) == 0 && (rc = analyze_vmdesc(&w, buf, len, 0, 9)) == 0) {
		w.pos = 8;
		r->priv->work_max = an_work_max(w.end);
		rc = walk_records(&w);
	}
	return analyze_finish(r, opts, rc, t0, err);
}

/* Streamed: the final phase was read into the window; find its vmdesc and
 * walk it as an in-memory walk would, then hand its records to the hooks. */
static int stream_final_phase(struct an_walk *w)
{
	an_report_t *r = w->r;
	struct an_stream *st = w->st;
	int rc = analyze_vmdesc(w, st->hold, st->hold_len, (size_t)st->hold_off, 1);
	if (rc < 0)
		return rc;
	r->priv->work_max = an_work_max(w->end);
	r->priv->arena.max = state_budget(r->file_bytes, r->priv->htab_bytes);
	rc = walk_records(w);
	if (rc < 0)
		return rc;
	for (size_t i = r->records_first; st->hooks.record && i < r->nrecords; i++)
		if (an_stream_hook_rc(w, st->hooks.record(st->hooks.opaque, r, &r->records[i - r->records_first]),
				      "record") < 0)
			return w->err->code;
	if (!r->complete)
		return 0; /* stopped: nothing more is validated */
	st->held = false;
	w->pos = w->base + w->avail;
	r->committed = w->pos;
	st->in_record = false;
	rc = an_stream_commit(w, true);
	st->held = true;
	return rc;
}

/* The stream header from the source. */
static int stream_header(struct an_walk *w)
{
	an_report_t *r = w->r;
	if (!an_need(w, 8, "stream header")) {
		if (!w->st->eof)
			return w->err->code; /* the source failed */
		uint8_t b[8] = {0};
		memcpy(b, w->win, w->avail);
		hm_error_clear(w->err);
		return analyze_header(r, b, w->avail);
	}
	int rc = analyze_header(r, w->win, 8);
	w->pos = 8;
	return rc;
}

int an_analyze_stream(const an_source_t *src, const an_stream_opts_t *o, an_report_t **out, hm_error_t *err)
{
	hm_error_t local;
	if (!err)
		err = &local;
	hm_error_clear(err);
	uint64_t t0 = hm_now_ns();
	an_stream_opts_t so = o ? *o : (an_stream_opts_t){0};
	an_report_t *r = *out = report_new(so.opts, 0, err);
	if (!r)
		return err->code;
	struct an_stream st = {.src = src, .o = so};
	if (!st.o.max_input)
		st.o.max_input = AN_STREAM_MAX_INPUT_DEFAULT;
	if (!st.o.max_device_state)
		st.o.max_device_state = AN_DEVICE_STATE_MAX_DEFAULT;
	if (so.hooks)
		st.hooks = *so.hooks;
	st.win = malloc(AN_STREAM_WINDOW);
	struct an_walk w = {.win = st.win, .end = SIZE_MAX, .opts = so.opts, .r = r, .err = &r->error,
			    .ram_cur_block = -1, .page_size = 4096, .arena = &r->priv->arena, .st = &st};
	int rc = r->error.code;
	if (!st.win)
		rc = hm_error_set(&r->error, -ENOMEM, -1, "out of memory");
	if (rc == 0 && (rc = stream_header(&w)) == 0) {
		r->priv->work_max = UINT64_MAX; /* no vmstate walk before the final phase */
		rc = walk_records(&w);
		if (rc == 1)
			rc = stream_final_phase(&w);
		else if (rc == 0 && !r->complete && !so.stop_at_vmdesc)
			rc = an_stream_drain(&w);
	}
	if (rc >= 0 && st.win && an_stream_release(&w, w.base + w.avail) < 0)
		rc = r->error.code; /* every byte read went to the bytes hook */
	if (!st.held)
		r->file_bytes = st.total;
	free(st.hold);
	free(st.win);
	return analyze_finish(r, so.opts, rc, t0, err);
}

void an_report_free(an_report_t *r)
{
	if (!r)
		return;
	if (r->priv) {
		if (r->priv->have_vd)
			an_vmdesc_free(&r->priv->vd);
		if (r->priv->have_tab)
			an_tab_fini(&r->priv->tab);
		an_arena_free(&r->priv->arena);
		an_index_free(&r->priv->by_id);
		an_index_free(&r->priv->by_key);
		an_index_free(&r->priv->blocks);
		free(r->priv);
	}
	free(r->sections);
	free(r->records);
	free(r->commands);
	free(r->ram.blocks);
	json_decref(r->vmdesc);
	json_decref(r->state);
	free(r->state_text);
	free(r);
}
