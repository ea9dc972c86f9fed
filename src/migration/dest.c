/* SPDX-License-Identifier: MIT */
/*
 * The destination side: accept one migration, load every record (the
 * `spapr/htab` loader, `spapr`, `hptmig/verify`), compare the digest,
 * resume the guest on the loaded table and say so on the return path (or
 * say why not). It never resumes or reports success on a stream that ends
 * early, fails a check or does not match the source's digest, never
 * allocates a table over its cap (from the destination guest's RAM) and
 * never prints.
 */
#include "mig_int.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

void mig_dest_params_default(mig_dest_params_t *p)
{
	/* The waits' defaults are the transport's: one definition. */
	mig_accept_opts_t ao;
	mig_accept_opts_default(&ao);
	memset(p, 0, sizeof(*p));
	p->accept_timeout_ms = ao.timeout_ms;
	p->probe_timeout_ms = ao.probe_timeout_ms;
	p->max_strays = ao.max_strays;
	p->idle_timeout_ms = ao.idle_timeout_ms;
	p->deadline_ns = ao.deadline_ns;
	p->ram_bytes = MIG_DEST_RAM_DEFAULT;
	machine_config_default(&p->guest);
	p->guest.ram_bytes = 0; /* from the loaded table */
	p->guest.rate = 1000;
}

unsigned mig_dest_max_shift(const mig_dest_params_t *p)
{
	unsigned s = p->max_shift;
	if (!s)
		s = hpt_shift_for_ram(p->ram_bytes ? p->ram_bytes : MIG_DEST_RAM_DEFAULT) + 1;
	if (s > HPT_SHIFT_STREAM_MAX)
		s = HPT_SHIFT_STREAM_MAX;
	if (s < HPT_SHIFT_MIN)
		s = HPT_SHIFT_MIN;
	return s;
}

struct dest {
	const mig_dest_params_t *p;
	mig_conn_t *conn;
	mig_dest_report_t *rep;
	htab_loader_t *loader;
	savevm_registry_t *reg;
	hpt_t *table;          /* ours until the guest adopts it */
	const mig_guest_ops_t *ops; /* the guest to resume (guest.h); NULL with no_resume */
	void *opaque;
	spapr_state_t spapr;
	savevm_verify_t verify;
	uint64_t t0, t_conn;   /* start, and when the connection was accepted */
	bool summary_done;
	int64_t verify_offset; /* of the hptmig/verify record, for errors */
	htab_summary_t sum;    /* its digest only when has_digest */
	uint8_t root[HM_SHA256_LEN]; /* block root of the loaded table (with sum) */
	uint64_t live_t;       /* last status published (ns) */
	bool has_digest;
};

/* The status snapshot while loading (query-migrate on a destination):
 * bytes read so far, the table's size once known; at most every 10 ms. */
static void dest_publish(struct dest *d, uint64_t transferred, bool force)
{
	uint64_t now = hm_now_ns();
	if (!d->p->live || (!force && now - d->live_t < 10000000ull))
		return;
	d->live_t = now;
	hpt_t *t = d->loader ? htab_loader_table(d->loader) : NULL;
	uint64_t el = now - d->t_conn;
	mig_status_t s = {
		.status = MIG_RUN_ACTIVE,
		.transferred = transferred,
		.remaining = MIG_UNKNOWN,
		.total = t ? hpt_slots(t) * 16u : MIG_UNKNOWN,
		.bandwidth = el ? (uint64_t)((double)transferred * 1e9 / (double)el) : 0,
		.dirty_rate = MIG_UNKNOWN,
		.expected_downtime_ns = MIG_UNKNOWN,
		.setup_ns = d->rep->wait_ns,
		.downtime_ns = MIG_UNKNOWN,
	};
	mig_live_publish(d->p->live, &s);
}

/*
 * The block root and counts of the loaded table, from the roots kept
 * current: only the blocks written since they were last hashed (the final
 * records') are hashed again (docs/migration.md, "Verification off the
 * stop path"). The flat digest is dest_flat_digest's.
 */
static int dest_summary(struct dest *d)
{
	htab_root_t r;
	hm_error_t e;
	hm_error_clear(&e);
	memset(&d->sum, 0, sizeof(d->sum));
	uint64_t t0 = hm_now_ns();
	int rc = htab_loader_root(d->loader, &r, &e);
	if (rc)
		return rc;
	d->rep->root_end_ns = hm_now_ns() - t0;
	d->rep->root_blocks_at_end = r.info.rehashed;
	d->sum.no_hpt = r.no_hpt;
	d->sum.shift = r.no_hpt ? 0 : r.info.shift;
	d->sum.valid = r.info.valid;
	d->sum.bolted = r.info.bolted;
	memcpy(d->root, r.info.root, HM_SHA256_LEN);
	d->has_digest = false;
	return 0;
}

/* The flat HTAB digest of the loaded table: a whole-table walk, so only
 * when asked (--digest) or when the source verifies with it (v1). */
static int dest_flat_digest(struct dest *d)
{
	hpt_t *t = htab_loader_table(d->loader);
	int rc = 0;
	if (d->has_digest)
		return 0;
	if (d->sum.no_hpt || !t)
		hpt_digest_none(d->sum.digest);
	else
		rc = hpt_summary(t, HPT_READ_QUIESCENT, NULL, NULL, d->sum.digest);
	d->has_digest = rc == 0;
	return rc;
}

/*
 * While the table's records arrive (the source's guest still runs), hash
 * the blocks each one wrote; right after the END record, only the blocks
 * the records since touched and the root: the source computes its own at
 * the same time, so the two overlap in the downtime.
 */
static int dest_on_record(void *o, const savevm_record_info_t *rec, hm_error_t *err)
{
	struct dest *d = o;
	/* The deadline also bounds work between reads (a buffered burst of
	 * resize records each mapping a table): checked at every record. */
	if (mig_conn_deadline_passed(d->conn))
		return hm_error_set(err, HM_E_TIMEOUT, (int64_t)rec->offset, "deadline passed");
	dest_publish(d, rec->end_offset, false);
	bool htab = rec->idstr && strcmp(rec->idstr, HTAB_IDSTR) == 0;
	if (rec->idstr && strcmp(rec->idstr, VERIFY_SECTION_IDSTR) == 0)
		d->verify_offset = (int64_t)rec->offset;
	if (htab && rec->end_offset >= rec->payload_offset + 5)
		d->rep->htab_bytes += rec->end_offset - rec->payload_offset - 5; /* minus footer */
	if (htab)
		d->summary_done = false; /* a later record changes the table */
	if (htab && rec->type != QEMU_VM_SECTION_END)
		(void)htab_loader_root_refresh(d->loader, UINT64_MAX, NULL); /* what is left: at END */
	if (rec->type == QEMU_VM_SECTION_END && htab) {
		d->summary_done = dest_summary(d) == 0;
	}
	return 0;
}

/*
 * COMMAND PING: answer PONG at once on the return path (the source measures
 * the link's round trip with it). Any other command is refused by name.
 */
static int dest_on_command(void *o, uint16_t cmd, const uint8_t *data, uint16_t len,
			   hm_error_t *err)
{
	struct dest *d = o;
	if (cmd != MIG_CMD_PING)
		return hm_error_set(err, HM_E_UNKNOWN, -1, "unknown COMMAND %u (length %u)", cmd,
				    len);
	if (len != 4)
		return hm_error_set(err, HM_E_FORMAT, -1, "COMMAND PING has length %u, expected 4",
				    len);
	/* Without a return path there is nobody to answer (file:, exec:). */
	(void)mig_rp_send_pong(d->conn, hm_load_be32(data));
	return 0;
}

/*
 * A section the guest does not have (`ram`, QEMU's devices): the stream is
 * not one of hptmig's simulated guest, most likely a real QEMU's. Say what
 * this end loads and what reads a QEMU stream instead; the reader puts the
 * record's offset in the error.
 */
static int dest_on_unknown_section(void *o, savevm_registry_t *r, const char *idstr,
				   uint32_t instance, uint32_t version, hm_error_t *err)
{
	(void)o;
	(void)r;
	char q[HM_ESC_LEN(SAVEVM_IDSTR_MAX)];
	hm_escape(idstr, strlen(idstr), 0, q, sizeof(q));
	return hm_error_set(err, HM_E_UNKNOWN, -1,
			    "section '%s' instance %u version %u is not one of hptmig's simulated "
			    "guest (%s, %s, %s): incoming loads only streams of that guest; for a "
			    "real QEMU migration use 'hptmig proxy' (check it in flight) or "
			    "'hptmig analyze' (read the stream)",
			    q, instance, version, HTAB_IDSTR, SPAPR_SECTION_IDSTR,
			    VERIFY_SECTION_IDSTR);
}

/*
 * A read that ended on the idle timeout or the deadline latched a terse
 * channel error ("read timed out", "Connection timed out"); say which limit
 * it was, after how many bytes, and which option changes it.
 */
static void timeout_message(const mig_dest_params_t *p, mig_conn_t *c,
			    const mig_dest_report_t *rep, hm_error_t *err)
{
	enum mig_conn_timeout t = mig_conn_timed_out(c);
	if (t == MIG_CONN_TIMEOUT_NONE && err->code == HM_E_TIMEOUT && mig_conn_deadline_passed(c))
		t = MIG_CONN_TIMEOUT_DEADLINE;
	if (t == MIG_CONN_TIMEOUT_NONE)
		return;
	int64_t off = err->offset >= 0 ? err->offset : (int64_t)rep->bytes_total;
	hm_error_clear(err);
	if (t == MIG_CONN_TIMEOUT_DEADLINE)
		hm_error_set(err, HM_E_TIMEOUT, off,
			     "%s: the source did not complete the stream within the deadline of "
			     "%.1f s (%" PRIu64 " bytes received; --deadline)",
			     mig_conn_desc(c), (double)p->deadline_ns / 1e9, rep->bytes_total);
	else if (rep->bytes_total == 0 && !mig_conn_has_return_path(c))
		hm_error_set(err, HM_E_TIMEOUT, off,
			     "%s: no data within %d ms (--accept-timeout)", mig_conn_desc(c),
			     p->accept_timeout_ms);
	else
		hm_error_set(err, HM_E_TIMEOUT, off,
			     "%s: the source sent nothing for %d ms (%" PRIu64
			     " bytes received; --idle-timeout)",
			     mig_conn_desc(c), p->idle_timeout_ms, rep->bytes_total);
}

static void refuse(mig_conn_t *c, const hm_error_t *e)
{
	if (c && mig_conn_has_return_path(c))
		mig_rp_send_refused(c, e);
}

/*
 * Setup phase: accept (screening strays, with the idle timeout and the
 * deadline), a fresh table and a loader over it capped at rep->max_shift,
 * the guest's sections.
 */
static int dest_setup(struct dest *d, mig_listener_t *l, hm_error_t *err)
{
	const mig_dest_params_t *p = d->p;
	mig_dest_report_t *rep = d->rep;
	mig_accept_opts_t ao = {.timeout_ms = p->accept_timeout_ms,
				.probe_timeout_ms = p->probe_timeout_ms,
				.max_strays = p->max_strays,
				.idle_timeout_ms = p->idle_timeout_ms,
				.deadline_ns = p->deadline_ns,
				.on_stray = p->on_stray,
				.opaque = p->stray_opaque,
				.cancel = p->cancel};
	int rc = mig_accept_ex(l, &ao, &d->conn, &rep->strays, err);
	if (rc)
		return rc;
	mig_cancel_attach(p->cancel, d->conn);
	d->t_conn = hm_now_ns();
	rep->wait_ns = d->t_conn - d->t0;
	dest_publish(d, 0, true);

	hpt_config_t hc;
	hpt_config_default(&hc);
	rc = hpt_create(HPT_SHIFT_MIN, &hc, &d->table, err);
	if (rc)
		return rc;
	/* The table reaches the guest only after the load (adopt_table). */
	htab_loader_opts_t lo = {.max_shift = rep->max_shift, .cfg = &hc, .exclusive = true,
				 .populate = true, .max_shift_hint = p->max_shift_hint};
	rc = htab_loader_create(d->table, &lo, &d->loader);
	if (rc)
		return hm_error_set(err, rc, -1, "out of memory");
	return mig_register_guest(&d->reg, NULL, d->loader, &d->spapr, &d->verify, err);
}

/*
 * Load phase: every record, then the checks: a `spapr/htab` section was
 * there, the loaded table's digest (already taken after its END record,
 * overlapping the source's) equals the verify record's.
 */
static int dest_load(struct dest *d, hm_error_t *err)
{
	mig_dest_report_t *rep = d->rep;
	mig_file_t *f = mig_conn_file(d->conn);
	savevm_load_opts_t opts = {.opaque = d, .on_record = dest_on_record,
				   .on_unknown_section = dest_on_unknown_section,
				   .on_command = dest_on_command};
	savevm_load_info_t info;
	int rc = savevm_load_stream_ex(f, d->reg, &opts, &info, err);
	rep->bytes_total = mig_file_offset(f);
	htab_loader_get_stats(d->loader, &rep->htab);
	if (rc)
		return rc;
	if (mig_cancel_requested(d->p->cancel))
		return hm_error_set(err, HM_E_CANCELLED, -1, "cancelled while loading");
	/* the peer's bytes: kept as they may be shown */
	hm_escape(info.machine, strlen(info.machine), 0, rep->machine, sizeof(rep->machine));
	if (!rep->htab.started)
		return hm_error_set(err, HM_E_FORMAT, (int64_t)info.eof_offset,
				    "the stream has no 'spapr/htab' section: not a pseries guest");
	if (!d->summary_done && (rc = dest_summary(d)) != 0)
		return hm_error_set(err, rc, -1, "root of the loaded table: %s", hm_err_str(rc));
	/* The flat digest when asked, or when the source verifies with it
	 * (version 1, or no section: it compares RESUMED's digest). */
	if ((d->p->digest || !d->verify.loaded || d->verify.version < 2) &&
	    (rc = dest_flat_digest(d)) != 0)
		return hm_error_set(err, rc, -1, "digest of the loaded table: %s", hm_err_str(rc));
	rep->no_hpt = d->sum.no_hpt;
	rep->htab_shift = d->sum.no_hpt ? HPT_NO_HPT : d->sum.shift;
	rep->htab_valid = d->sum.valid;
	rep->htab_bolted = d->sum.bolted;
	memcpy(rep->digest, d->sum.digest, HM_SHA256_LEN);
	memcpy(rep->root, d->root, HM_SHA256_LEN);
	rep->has_digest = d->has_digest;
	rep->has_root = true;
	if (d->verify.loaded) {
		rc = savevm_verify_check(&d->verify, d->sum.no_hpt ? HTAB_HDR_NO_HPT : d->sum.shift,
					 d->sum.valid, d->has_digest ? d->sum.digest : NULL, d->root,
					 err);
		if (rc) {
			if (err->offset < 0)
				err->offset = d->verify_offset; /* the record that disagreed */
			return rc;
		}
		rep->verified = true;
	}
	rep->load_ns = hm_now_ns() - d->t_conn;
	return 0;
}

/*
 * Resume phase: the guest adopts the loaded table and the stream's `spapr`
 * values and resumes (guest.h's order), then RESUMED on the return path.
 * The guest runs on, the caller's from now on.
 */
static int dest_resume(struct dest *d, hm_error_t *err)
{
	const mig_dest_params_t *p = d->p;
	mig_dest_report_t *rep = d->rep;
	const mig_guest_ops_t *ops = d->ops;
	int rc;
	if (!d->sum.no_hpt && !p->no_resume) {
		hpt_t *t = htab_loader_take_table(d->loader);
		if (t == d->table)
			d->table = NULL; /* the guest owns it now */
		rc = ops->adopt_table(d->opaque, t, err);
		if (!rc && ops->spapr_set)
			ops->spapr_set(d->opaque, &d->spapr);
		if (!rc && ops->before_resume)
			ops->before_resume(d->opaque);
		if (!rc)
			rc = ops->resume(d->opaque, err);
		if (rc) {
			hm_error_prefix(err, "resuming the guest: ");
			return rc;
		}
		rep->resumed = true;
	}
	mig_rp_msg_t msg = {.type = MIG_RP_RESUMED, .valid = d->sum.valid,
			    .bytes = rep->bytes_total, .load_ns = rep->load_ns};
	memcpy(msg.digest, d->sum.digest, HM_SHA256_LEN);
	/* A version 2 source reads RESUMED_ROOT; older ones (and a stream
	 * without hptmig/verify, which may come from one) read RESUMED. */
	msg.has_root = d->verify.loaded && d->verify.version >= 2;
	msg.has_digest = d->has_digest;
	memcpy(msg.root, d->root, HM_SHA256_LEN);
	mig_rp_send_resumed(d->conn, &msg); /* a source gone now changes nothing here */
	/* The migration is over once the guest runs here (not when --run ends). */
	mig_live_end(p->live, MIG_RUN_COMPLETED, rep->bytes_total, MIG_UNKNOWN);
	return 0;
}

int mig_dest_run_guest(mig_listener_t *l, const mig_guest_ops_t *ops, void *opaque,
		       const mig_dest_params_t *p, mig_dest_report_t *rep, hm_error_t *err)
{
	mig_dest_params_t defaults;
	struct dest d = {.verify_offset = -1, .ops = ops, .opaque = opaque};
	int rc;
	if (!p) {
		mig_dest_params_default(&defaults);
		p = &defaults;
	}
	memset(rep, 0, sizeof(*rep));
	if (!p->no_resume && (!ops || !ops->adopt_table || !ops->resume)) {
		rep->status = HM_E_STATE;
		return hm_error_set(err, HM_E_STATE, -1,
				    "guest: the adopt_table and resume operations are required "
				    "(or no_resume)");
	}
	d.p = p;
	d.rep = rep;
	d.t0 = hm_now_ns();
	rep->max_shift = mig_dest_max_shift(p);
	mig_live_begin(p->live, false, 0, 0);

	rc = dest_setup(&d, l, err);
	if (rc && !d.conn)
		goto out; /* nobody to refuse */
	if (!rc)
		rc = dest_load(&d, err);
	if (!rc)
		rc = dest_resume(&d, err);
	if (rc && rc != HM_E_CANCELLED && mig_cancel_requested(p->cancel)) {
		/* The cancel ended the read (end of input, a shut down socket):
		 * say so, with what the transfer saw. */
		hm_error_t c;
		hm_error_clear(&c);
		hm_error_set(&c, HM_E_CANCELLED, err->offset, "cancelled (%s)", err->msg);
		*err = c;
		rc = HM_E_CANCELLED;
	}
	if (rc) {
		if (err->code == 0)
			hm_error_set(err, rc, -1, "load failed");
		timeout_message(p, d.conn, rep, err);
		refuse(d.conn, err);
	}
out:
	rep->status = rc;
	rep->total_ns = hm_now_ns() - d.t0;
	if (rc) /* (a success ended the status at the resume) */
		mig_live_end(p->live,
			     rc == HM_E_CANCELLED || mig_cancel_requested(p->cancel)
				     ? MIG_RUN_CANCELLED
				     : MIG_RUN_FAILED,
			     rep->bytes_total, MIG_UNKNOWN);
	mig_cancel_attach(p->cancel, NULL);
	if (d.conn) {
		if (rc)
			mig_conn_abort(d.conn);
		mig_conn_close(d.conn, NULL);
	}
	savevm_registry_free(d.reg);
	htab_loader_destroy(d.loader); /* borrowed the table: does not free it */
	hpt_destroy(d.table);
	return rc;
}
