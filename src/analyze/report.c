/* SPDX-License-Identifier: MIT */
/*
 * Presentation of an analysis: the JSON object of product.md (machine,
 * sections, ram, htab, commands, ...) and the human-readable text. Pure
 * functions of the report; they build values and strings, never print.
 */
#include "an_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *kind_name(enum an_section_kind k)
{
	switch (k) {
	case AN_SEC_RAM: return "ram";
	case AN_SEC_HTAB: return "htab";
	case AN_SEC_VMSTATE: return "vmstate";
	case AN_SEC_BUILTIN: return "builtin";
	default: return "unknown";
	}
}

struct list_ctx {
	json_t *arr;
};

static json_t *entry_json(uint64_t slot, uint64_t v, uint64_t r, bool ok)
{
	char vs[24], rs[24];
	snprintf(vs, sizeof(vs), "0x%016" PRIx64, v);
	snprintf(rs, sizeof(rs), "0x%016" PRIx64, r);
	return json_pack("{sIsssssssbsb}", "slot", (json_int_t)slot, "v", vs, "r", rs, "page_size",
			 an_pgsz_name(an_hpte_pgsz(v, r, NULL)), "bolted", (v & 0x10) != 0, "check_ok", ok);
}

static int list_entry(void *opaque, uint64_t slot, uint64_t v, uint64_t r, bool ok)
{
	struct list_ctx *c = opaque;
	json_array_append_new(c->arr, entry_json(slot, v, r, ok));
	return 0;
}

static json_t *htab_json(const an_report_t *r, unsigned flags)
{
	const an_htab_stats_t *h = &r->htab;
	if (!h->present)
		return json_null();
	char dig[65];
	hm_hex(h->digest, HM_SHA256_LEN, dig);
	json_t *o = json_object();
	if (h->no_hpt)
		json_object_set_new(o, "shift", json_string("no-hpt"));
	else
		json_object_set_new(o, "shift", json_integer(h->shift));
	if (h->start_shift == HTAB_HDR_NO_HPT)
		json_object_set_new(o, "start_shift", json_string("no-hpt"));
	else
		json_object_set_new(o, "start_shift", json_integer(h->start_shift));
	json_object_set_new(o, "records", json_integer((json_int_t)h->records));
	json_object_set_new(o, "record_counts", json_pack("{sIsIsI}", "start", (json_int_t)h->n_start, "part",
							   (json_int_t)h->n_part, "end", (json_int_t)h->n_end));
	json_object_set_new(o, "empty_records", json_integer((json_int_t)h->empty_records));
	json_object_set_new(o, "resizes", json_integer((json_int_t)h->resizes));
	json_object_set_new(o, "chunks", json_integer((json_int_t)h->chunks));
	json_object_set_new(o, "valid_sent", json_integer((json_int_t)h->valid_sent));
	json_object_set_new(o, "invalid_sent", json_integer((json_int_t)h->invalid_sent));
	json_object_set_new(o, "slots", json_integer((json_int_t)h->slots));
	json_object_set_new(o, "valid", json_integer((json_int_t)h->valid));
	json_object_set_new(o, "bolted", json_integer((json_int_t)h->bolted));
	json_object_set_new(o, "secondary", json_integer((json_int_t)h->secondary));
	json_t *pg = json_object();
	for (int i = 0; i < AN_PG_COUNT; i++)
		if (h->page_sizes[i])
			json_object_set_new(pg, an_pgsz_name(i), json_integer((json_int_t)h->page_sizes[i]));
	json_object_set_new(o, "page_sizes", pg);
	json_object_set_new(o, "segment_sizes", json_pack("{sIsIsI}", "256M", (json_int_t)h->seg_256m, "1T",
							   (json_int_t)h->seg_1t, "reserved", (json_int_t)h->seg_reserved));
	json_t *occ = json_array();
	for (int i = 0; i <= 8; i++)
		json_array_append_new(occ, json_integer((json_int_t)h->pteg_occupancy[i]));
	json_object_set_new(o, "pteg_occupancy", occ);
	json_object_set_new(o, "check_failures", json_integer((json_int_t)h->check_failures));
	json_object_set_new(o, "digest", json_string(dig));
	if (h->has_root) {
		hm_hex(h->root, HM_SHA256_LEN, dig);
		json_object_set_new(o, "root", json_string(dig));
	} else {
		json_object_set_new(o, "root", json_null());
	}
	if (flags & AN_OUT_HTAB) {
		struct list_ctx c = {json_array()};
		an_htab_foreach(r, list_entry, &c);
		json_object_set_new(o, "entries", c.arr);
	}
	return o;
}

json_t *an_report_json(const an_report_t *r, unsigned flags)
{
	json_t *o = json_object();
	if (!o)
		return NULL;
	const char *status = r->error.code ? "error" : r->complete ? "ok" : "incomplete";
	json_object_set_new(o, "status", json_string(status));
	if (r->error.code)
		json_object_set_new(o, "error", json_pack("{sisssssI}", "code", r->error.code, "name",
							  hm_err_name(r->error.code), "message", r->error.msg, "offset",
							  (json_int_t)r->error.offset));
	if (!r->complete && !r->error.code && r->stop_offset >= 0) {
		json_object_set_new(o, "stopped", json_pack("{sIss}", "offset", (json_int_t)r->stop_offset, "reason",
							    r->stop_reason));
		/* Not ok, so an "error" too (what the command's stderr line says). */
		char msg[sizeof(r->stop_reason) + 32];
		snprintf(msg, sizeof(msg), "walked only in part: %s", r->stop_reason);
		json_object_set_new(o, "error", json_pack("{sisssssI}", "code", HM_E_UNSUPPORTED, "name",
							  hm_err_name(HM_E_UNSUPPORTED), "message", msg, "offset",
							  (json_int_t)r->stop_offset));
	}
	json_object_set_new(o, "bytes", json_integer((json_int_t)r->file_bytes));
	json_object_set_new(o, "stream_version", json_integer(r->stream_version));
	json_object_set_new(o, "machine", r->has_config ? json_string(r->machine) : json_null());
	if (r->config_subsections[0])
		json_object_set_new(o, "configuration_subsections", json_string(r->config_subsections));
	json_t *secs = json_array();
	for (size_t i = 0; i < r->nsections; i++) {
		const an_section_t *s = &r->sections[i];
		json_array_append_new(
			secs, json_pack("{sIsssIsIsss{sIsIsIsI}sIsI}", "id", (json_int_t)s->id, "idstr", s->idstr,
					"instance", (json_int_t)s->instance_id, "version", (json_int_t)s->version_id,
					"kind", kind_name(s->kind), "records", "start", (json_int_t)s->n_start, "part",
					(json_int_t)s->n_part, "end", (json_int_t)s->n_end, "full",
					(json_int_t)s->n_full, "bytes", (json_int_t)s->bytes, "offset",
					(json_int_t)s->first_offset));
	}
	json_object_set_new(o, "sections", secs);
	json_object_set_new(o, "section_count", json_integer((json_int_t)r->nsections));
	json_object_set_new(o, "record_count", json_integer((json_int_t)r->nrecords));
	json_t *cmds = json_array();
	for (size_t i = 0; i < r->ncommands; i++) {
		const char *n = an_command_name(r->commands[i].cmd);
		json_array_append_new(cmds, json_pack("{sisssIsi}", "cmd", r->commands[i].cmd, "name", n ? n : "?",
						      "offset", (json_int_t)r->commands[i].offset, "len",
						      r->commands[i].len));
	}
	json_object_set_new(o, "commands", cmds);
	if (r->ram.present) {
		json_t *blocks = json_array();
		for (size_t i = 0; i < r->ram.nblocks; i++)
			json_array_append_new(blocks, json_pack("{sssI}", "name", r->ram.blocks[i].name, "length",
								(json_int_t)r->ram.blocks[i].length));
		json_object_set_new(o, "ram", json_pack("{sIsIsIsIsIsisO}", "data_pages", (json_int_t)r->ram.data_pages,
							"zero_pages", (json_int_t)r->ram.zero_pages, "fill_pages",
							(json_int_t)r->ram.fill_pages, "total_bytes",
							(json_int_t)r->ram.total_bytes, "eos", (json_int_t)r->ram.eos,
							"page_size", (int)r->ram.page_size, "blocks", blocks));
		json_decref(blocks);
	} else {
		json_object_set_new(o, "ram", json_null());
	}
	json_object_set_new(o, "htab", htab_json(r, flags));
	if (r->has_verify) {
		char dig[65];
		bool v2 = r->verify_version >= 2;
		hm_hex(v2 ? r->verify_root : r->verify_digest, HM_SHA256_LEN, dig);
		json_object_set_new(o, "verify", json_pack("{sIsIsIsssb}", "version", (json_int_t)r->verify_version,
							   "shift", (json_int_t)r->verify_shift, "valid",
							   (json_int_t)r->verify_valid, v2 ? "root" : "digest", dig,
							   "match", an_verify_match(r)));
	}
	if (r->has_vmdesc)
		json_object_set_new(o, "vmdesc", json_pack("{sIsIsI}", "offset", (json_int_t)r->vmdesc_offset, "length",
							   (json_int_t)r->vmdesc_len, "devices",
							   (json_int_t)r->vmdesc_devices));
	else
		json_object_set_new(o, "vmdesc", json_null());
	if (r->complete)
		json_object_set_new(o, "eof_offset", json_integer((json_int_t)r->eof_offset));
	json_object_set_new(o, "walk_ms", json_real((double)r->walk_ns / 1e6));
	if ((flags & AN_OUT_STATE) && r->state)
		json_object_set(o, "state", r->state);
	else if ((flags & AN_OUT_STATE) && r->state_text)
		json_object_set_new(o, "state", json_loadb(r->state_text, r->state_len, 0, NULL));
	if ((flags & AN_OUT_DESC) && r->vmdesc)
		json_object_set(o, "desc", r->vmdesc);
	return o;
}

/* ------------------------------------------------------------------ text */

struct sb {
	char *p;
	size_t len, cap;
	bool oom;
};

static void sb_printf(struct sb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(struct sb *b, const char *fmt, ...)
{
	if (b->oom)
		return;
	for (;;) {
		va_list ap;
		va_start(ap, fmt);
		int n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->oom = true;
			return;
		}
		if (b->p && (size_t)n < b->cap - b->len) {
			b->len += (size_t)n;
			return;
		}
		size_t cap = b->cap ? b->cap : 4096;
		while (cap - b->len <= (size_t)n)
			cap *= 2;
		char *np = realloc(b->p, cap);
		if (!np) {
			b->oom = true;
			return;
		}
		b->p = np;
		b->cap = cap;
	}
}

static void size_str(uint64_t v, char *out, size_t n)
{
	const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	int i = 0;
	double d = (double)v;
	while (d >= 1024 && i < 4) {
		d /= 1024;
		i++;
	}
	snprintf(out, n, i ? "%.1f %s" : "%.0f %s", d, u[i]);
}

static int entry_text(char *buf, size_t n, uint64_t slot, uint64_t v, uint64_t r, bool ok)
{
	return snprintf(buf, n, "  %10" PRIu64 " %08" PRIx64 "/%" PRIu64 " V=%016" PRIx64 " R=%016" PRIx64 " %-7s %s%s%s%s\n",
			slot, slot >> 3, slot & 7, v, r, an_pgsz_name(an_hpte_pgsz(v, r, NULL)),
			(v >> 62) == 1 ? "1T" : (v >> 62) == 0 ? "256M" : "B?", (v & 0x10) ? " bolted" : "",
			(v & 0x2) ? " secondary" : "", ok ? "" : " CHECK-FAILED");
}

static int text_entry(void *opaque, uint64_t slot, uint64_t v, uint64_t r, bool ok)
{
	struct sb *b = opaque;
	char line[160];
	entry_text(line, sizeof(line), slot, v, r, ok);
	sb_printf(b, "%s", line);
	return 0;
}

struct stream_ctx {
	bool json, first;
	int (*write)(void *, const char *, size_t);
	void *opaque;
};

static int stream_entry(void *opaque, uint64_t slot, uint64_t v, uint64_t r, bool ok)
{
	struct stream_ctx *c = opaque;
	if (!c->json) {
		char line[160];
		int n = entry_text(line, sizeof(line), slot, v, r, ok);
		return c->write(c->opaque, line, (size_t)n);
	}
	json_t *e = entry_json(slot, v, r, ok);
	char *s = e ? json_dumps(e, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
	json_decref(e);
	if (!s)
		return -ENOMEM;
	int rc = c->first ? 0 : c->write(c->opaque, ",", 1);
	if (rc == 0)
		rc = c->write(c->opaque, s, strlen(s));
	c->first = false;
	free(s);
	return rc;
}

int an_htab_entries_write(const an_report_t *r, bool json, int (*write)(void *opaque, const char *s, size_t n),
			  void *opaque)
{
	struct stream_ctx c = {json, true, write, opaque};
	int rc = json ? write(opaque, "[", 1) : 0;
	if (rc == 0)
		rc = an_htab_foreach(r, stream_entry, &c);
	if (rc == 0 && json)
		rc = write(opaque, "]", 1);
	return rc;
}

/* The geometry and counts of a table the stream sent (not a no-HPT one). */
static void text_htab_table(struct sb *b, const an_htab_stats_t *h)
{
	char s1[32];
	size_str(UINT64_C(1) << h->shift, s1, sizeof(s1));
	sb_printf(b, "htab: shift %u (%s, %" PRIu64 " slots), %" PRIu64 " records (%" PRIu64 " START, %" PRIu64
		  " PART, %" PRIu64 " END; %" PRIu64 " empty)\n",
		  h->shift, s1, h->slots, h->records, h->n_start, h->n_part, h->n_end, h->empty_records);
	sb_printf(b, "      sent: %" PRIu64 " chunks, %" PRIu64 " valid, %" PRIu64 " invalid%s\n", h->chunks,
		  h->valid_sent, h->invalid_sent, h->resizes ? " (table resized)" : "");
	sb_printf(b, "      final table: %" PRIu64 " valid, %" PRIu64 " bolted, %" PRIu64 " secondary\n",
		  h->valid, h->bolted, h->secondary);
	sb_printf(b, "      page sizes:");
	for (int i = 0; i < AN_PG_COUNT; i++)
		if (h->page_sizes[i])
			sb_printf(b, " %s=%" PRIu64, an_pgsz_name(i), h->page_sizes[i]);
	sb_printf(b, "\n      segment sizes: 256M=%" PRIu64 " 1T=%" PRIu64, h->seg_256m, h->seg_1t);
	if (h->seg_reserved)
		sb_printf(b, " reserved=%" PRIu64, h->seg_reserved);
	sb_printf(b, "\n      PTEG occupancy (valid entries per PTEG: PTEGs):");
	for (int i = 0; i <= 8; i++)
		sb_printf(b, " %d:%" PRIu64, i, h->pteg_occupancy[i]);
	sb_printf(b, "\n      structural check: %" PRIu64 " entr%s fail\n", h->check_failures,
		  h->check_failures == 1 ? "y" : "ies");
}

/* The section table and the commands. */
static void text_sections(struct sb *b, const an_report_t *r)
{
	sb_printf(b, "sections: %zu, records: %zu\n", r->nsections, r->nrecords);
	sb_printf(b, "  %4s  %-28s %10s %4s %5s %5s %5s %5s %12s  %s\n", "id", "idstr", "instance", "ver", "start",
		  "part", "end", "full", "bytes", "kind");
	for (size_t i = 0; i < r->nsections; i++) {
		const an_section_t *s = &r->sections[i];
		sb_printf(b, "  %4u  %-28s %10u %4u %5" PRIu64 " %5" PRIu64 " %5" PRIu64 " %5" PRIu64 " %12" PRIu64 "  %s\n",
			  s->id, s->idstr, s->instance_id, s->version_id, s->n_start, s->n_part, s->n_end, s->n_full,
			  s->bytes, kind_name(s->kind));
	}
	if (r->ncommands) {
		for (size_t i = 0; i < r->ncommands; i++) {
			const char *n = an_command_name(r->commands[i].cmd);
			sb_printf(b, "command: %s (%u) at offset %" PRIu64 "\n", n ? n : "?", r->commands[i].cmd,
				  r->commands[i].offset);
		}
	} else {
		sb_printf(b, "commands: none\n");
	}
}

/* The ram section's pages and blocks. */
static void text_ram(struct sb *b, const an_report_t *r)
{
	if (r->ram.present) {
		char s1[32];
		size_str(r->ram.total_bytes, s1, sizeof(s1));
		sb_printf(b, "ram: %" PRIu64 " data pages, %" PRIu64 " zero pages (page size %u), %s in %zu block%s:",
			  r->ram.data_pages, r->ram.zero_pages, r->ram.page_size, s1, r->ram.nblocks,
			  r->ram.nblocks == 1 ? "" : "s");
		for (size_t i = 0; i < r->ram.nblocks; i++)
			sb_printf(b, " %s=%" PRIu64, r->ram.blocks[i].name, r->ram.blocks[i].length);
		sb_printf(b, "\n");
		if (r->ram.fill_pages)
			sb_printf(b, "     %" PRIu64 " zero-page items carry a non-zero fill byte\n", r->ram.fill_pages);
	} else {
		sb_printf(b, "ram: (no ram section)\n");
	}
}

/* The spapr/htab section: table, counts, digest and, on request, every entry. */
static void text_htab(struct sb *b, const an_report_t *r, unsigned flags)
{
	const an_htab_stats_t *h = &r->htab;
	if (h->present) {
		char dig[65];
		hm_hex(h->digest, HM_SHA256_LEN, dig);
		if (h->no_hpt) {
			sb_printf(b, "htab: no HPT (radix guest), %" PRIu64 " records (%" PRIu64 " START, %" PRIu64
				  " PART, %" PRIu64 " END)\n",
				  h->records, h->n_start, h->n_part, h->n_end);
		} else {
			text_htab_table(b, h);
		}
		sb_printf(b, "      digest: %s\n", dig);
		if (h->has_root) {
			hm_hex(h->root, HM_SHA256_LEN, dig);
			sb_printf(b, "      root: %s\n", dig);
		}
		if ((flags & AN_OUT_HTAB) && !h->no_hpt) {
			sb_printf(b, "htab entries (slot pteg/i V R page-size segment flags):\n");
			an_htab_foreach(r, text_entry, b);
		}
	} else {
		sb_printf(b, "htab: (no spapr/htab section)\n");
	}
}

char *an_report_text(const an_report_t *r, unsigned flags)
{
	struct sb b = {0};
	char s1[32];
	size_str(r->file_bytes, s1, sizeof(s1));
	sb_printf(&b, "stream: %" PRIu64 " bytes (%s), version %u\n", r->file_bytes, s1, r->stream_version);
	sb_printf(&b, "machine: %s\n", r->has_config ? r->machine : "(no configuration record)");
	if (r->config_subsections[0])
		sb_printf(&b, "configuration subsections: %s\n", r->config_subsections);
	text_sections(&b, r);
	text_ram(&b, r);
	text_htab(&b, r, flags);
	if (r->has_verify) {
		char dig[65];
		bool v2 = r->verify_version >= 2;
		hm_hex(v2 ? r->verify_root : r->verify_digest, HM_SHA256_LEN, dig);
		sb_printf(&b, "hptmig/verify: version %u, shift %u, %" PRIu64 " valid, %s %s: %s\n",
			  r->verify_version, r->verify_shift, r->verify_valid, v2 ? "root" : "digest", dig,
			  an_verify_match(r) ? "matches the table" : "DOES NOT MATCH the table");
	}
	if (r->has_vmdesc)
		sb_printf(&b, "vmdesc: at offset %" PRIu64 ", %" PRIu64 " bytes, %zu devices\n", r->vmdesc_offset,
			  r->vmdesc_len, r->vmdesc_devices);
	else
		sb_printf(&b, "vmdesc: none\n");
	if (r->error.code) {
		char line[768];
		sb_printf(&b, "result: ERROR: %s\n", hm_error_line(&r->error, line, sizeof(line)));
	} else if (!r->complete) {
		sb_printf(&b, "result: INCOMPLETE: stopped at offset %" PRId64 ": %s\n", r->stop_offset, r->stop_reason);
	} else {
		sb_printf(&b, "result: OK (EOF at offset %" PRIu64 ")\n", r->eof_offset);
	}
	if ((flags & AN_OUT_STATE) && r->state_text)
		sb_printf(&b, "state:\n%s", r->state_text);
	if ((flags & AN_OUT_DESC) && r->vmdesc) {
		char *s = json_dumps(r->vmdesc, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII);
		if (s) {
			sb_printf(&b, "vmdesc:\n%s\n", s);
			free(s);
		}
	}
	if (b.oom) {
		free(b.p);
		return NULL;
	}
	return b.p;
}
