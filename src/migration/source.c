/* SPDX-License-Identifier: MIT */
/*
 * The source side of a live migration: the precopy controller. Rounds of
 * time-bounded iteration, a replaceable policy deciding from measured
 * bandwidth and every section's pending bytes when the rest fits the
 * downtime limit, auto-converge, the stop-and-complete phase, the wait for
 * the destination's answer, retries. It never harms the guest: before the
 * stop a failure leaves it running untouched, after the stop it is resumed
 * unless the destination may be running it (then it stays paused: two
 * guests must never run); the report says which, and the real stopped
 * time. It never prints.
 */
#include "mig_int.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

/* ---------------------------------------------------------------- cancel */

struct mig_cancel {
	atomic_int requested;
	/* An eventfd made readable by the request and never drained: every
	 * wait (connect, accept, probe, retry delays, the CLI's waits) polls
	 * it beside its own fd, so a cancel ends the wait at once. */
	int fd;
	pthread_mutex_t lock; /* protects conn */
	mig_conn_t *conn;     /* the connection to wake, or NULL */
};

int mig_cancel_new(mig_cancel_t **out)
{
	mig_cancel_t *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (c->fd < 0) {
		int e = -errno;
		free(c);
		return e;
	}
	pthread_mutex_init(&c->lock, NULL);
	*out = c;
	return 0;
}

void mig_cancel_free(mig_cancel_t *c)
{
	if (!c)
		return;
	close(c->fd);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

void mig_cancel_request(mig_cancel_t *c)
{
	if (!c)
		return;
	atomic_store(&c->requested, 1);
	uint64_t one = 1;
	/* Cannot fail short of a counter overflow (it would stay readable). */
	ssize_t w = write(c->fd, &one, sizeof(one));
	(void)w;
	pthread_mutex_lock(&c->lock);
	if (c->conn)
		mig_conn_abort(c->conn);
	pthread_mutex_unlock(&c->lock);
}

bool mig_cancel_requested(const mig_cancel_t *c)
{
	return c && atomic_load(&((mig_cancel_t *)(uintptr_t)c)->requested);
}

int mig_cancel_fd(const mig_cancel_t *c)
{
	return c ? c->fd : -1;
}

bool mig_cancel_wait(mig_cancel_t *c, uint64_t ns)
{
	uint64_t end = hm_now_ns() + ns;
	if (!c) {
		hm_sleep_ns(ns);
		return false;
	}
	for (;;) {
		if (mig_cancel_requested(c))
			return true;
		uint64_t now = hm_now_ns();
		if (now >= end)
			return false;
		uint64_t left_ms = (end - now + 999999) / 1000000;
		struct pollfd p = {.fd = c->fd, .events = POLLIN};
		/* poll's timeout is an int: long waits go in slices of a day. */
		poll(&p, 1, left_ms > 86400000u ? 86400000 : (int)left_ms);
	}
}

void mig_cancel_attach(mig_cancel_t *c, mig_conn_t *conn)
{
	if (!c)
		return;
	pthread_mutex_lock(&c->lock);
	c->conn = conn;
	if (conn && atomic_load(&c->requested))
		mig_conn_abort(conn);
	pthread_mutex_unlock(&c->lock);
}

/* ---------------------------------------------------------------- policy */

enum mig_policy_answer mig_policy_default(void *opaque, const mig_policy_stats_t *st)
{
	(void)opaque;
	/* Within the limit: stop, unless the expectation is still falling
	 * fast (by a quarter since the last round: the kept roots catching
	 * up after a pass) and not yet below a quarter of the limit; it
	 * cannot fall by a quarter forever, so this ends. */
	uint64_t prev = st->prev_expected_downtime_ns;
	bool falling = prev && prev != UINT64_MAX && st->expected_downtime_ns < prev / 4 * 3;
	if (st->iterations >= 1 && st->bandwidth > 0 &&
	    st->expected_downtime_ns <= st->downtime_limit_ns &&
	    (!falling || st->expected_downtime_ns <= st->downtime_limit_ns / 4))
		return MIG_POLICY_STOP;
	/* Over the limit by what more passes hardly remove: the fixed cost
	 * and the blocks to re-hash (a guest that changes blocks as fast as
	 * we hash them); the rest (the bytes) is small. */
	uint64_t floor = st->fixed_downtime_ns + st->verify_ns;
	if (st->iterations >= 1 && st->bandwidth > 0 && floor >= st->downtime_limit_ns &&
	    st->expected_downtime_ns - floor <= st->downtime_limit_ns / 10)
		return MIG_POLICY_STOP;
	if (st->max_iterations && st->iterations >= st->max_iterations)
		return MIG_POLICY_STOP;
	return MIG_POLICY_CONTINUE;
}

enum mig_policy_answer mig_policy_qemu_stop_rule(void *opaque, const mig_policy_stats_t *st)
{
	(void)opaque;
	/* QEMU counts the table's pending work as zero: with nothing else to
	 * send, the expected downtime is 0 as soon as the first pass is out. */
	if (st->iterations >= 1)
		return MIG_POLICY_STOP;
	if (st->max_iterations && st->iterations >= st->max_iterations)
		return MIG_POLICY_STOP;
	return MIG_POLICY_CONTINUE;
}

void mig_params_default(mig_params_t *p)
{
	memset(p, 0, sizeof(*p));
	p->downtime_limit_ns = 300000000ull;
	p->retry_delay_ns = 1000000000ull;
	p->scan = HTAB_SCAN_BITMAP;
	p->round_budget_ns = 20000000ull;
	p->stop_catchup = true;
	p->connect_timeout_ms = 10000;
	p->rp_timeout_ms = 30000;
	p->pause_timeout_ns = 1000000000ull;
	p->machine_name = MIG_MACHINE_NAME;
}

/* ----------------------------------------------------------- guest state */

const char *mig_guest_state_name(enum mig_guest_state s)
{
	switch (s) {
	case MIG_GUEST_RUNNING_ON_SOURCE:
		return "running-on-source";
	case MIG_GUEST_RESUMED_ON_SOURCE:
		return "resumed-on-source";
	case MIG_GUEST_RESUMED_ON_DESTINATION:
		return "resumed-on-destination";
	case MIG_GUEST_PAUSED_ON_SOURCE:
		return "paused-on-source";
	case MIG_GUEST_PAUSED_DESTINATION_UNKNOWN:
		return "paused-on-source-destination-unknown";
	case MIG_GUEST_PAUSED_DESTINATION_DIVERGED:
		return "paused-on-source-destination-diverged";
	case MIG_GUEST_PAUSED_RESUME_FAILED:
		return "paused-on-source-resume-failed";
	}
	return "unknown";
}

const char *mig_guest_state_text(enum mig_guest_state s)
{
	switch (s) {
	case MIG_GUEST_RUNNING_ON_SOURCE:
		return "the guest kept running on the source";
	case MIG_GUEST_RESUMED_ON_SOURCE:
		return "the guest was stopped, then resumed on the source";
	case MIG_GUEST_RESUMED_ON_DESTINATION:
		return "the guest was resumed on the destination";
	case MIG_GUEST_PAUSED_ON_SOURCE:
		return "the guest is paused on the source (no return path: nobody confirms a resume)";
	case MIG_GUEST_PAUSED_DESTINATION_UNKNOWN:
		return "the guest was left paused on the source and NOT resumed: the destination "
		       "may be running it (no answer after the whole stream was sent); resume the "
		       "source only if the destination did not";
	case MIG_GUEST_PAUSED_DESTINATION_DIVERGED:
		return "the guest was left paused on the source and NOT resumed: the destination "
		       "is running a guest whose table differs from the source's";
	case MIG_GUEST_PAUSED_RESUME_FAILED:
		return "the guest was stopped and the migration failed, then resuming it on the "
		       "source failed: it is still paused there (the destination did not resume it)";
	}
	return "the guest's state is unknown";
}

const char *mig_downtime_end_name(enum mig_downtime_end d)
{
	switch (d) {
	case MIG_DOWNTIME_NOT_STOPPED:
		return "not-stopped";
	case MIG_DOWNTIME_DEST_RESUMED:
		return "destination-resumed";
	case MIG_DOWNTIME_SOURCE_RESUMED:
		return "source-resumed";
	case MIG_DOWNTIME_LAST_BYTE:
		return "last-byte-flushed";
	case MIG_DOWNTIME_STILL_PAUSED:
		return "still-paused";
	}
	return "unknown";
}

/* ------------------------------------------------------------- the attempt */

/* Fixed part of the expected downtime besides the digests (measured):
 * stopping vCPUs, the stream's tail, the return-path round trip. */
#define MIG_DOWNTIME_OVERHEAD_NS 1000000ull

struct attempt {
	const mig_guest_ops_t *ops; /* the guest: reached only through these */
	void *opaque;
	hpt_t *h;                /* ops->table(opaque), for this attempt */
	const mig_params_t *p;
	mig_report_t *rep;
	mig_conn_t *conn;
	savevm_registry_t *reg;
	htab_save_t *hs;
	spapr_state_t spapr;
	savevm_verify_t verify;
	uint64_t run_t0;         /* start of the first attempt (for the timeout) */
	bool setup_called;
	uint64_t fixed_ns;       /* measured fixed cost of the stop (see mig_policy_stats_t) */
	uint64_t root_ns;        /* its root part: SHA-256 over B block digests, measured */
	unsigned digest_samples; /* measurements taken */
	bool retryable;          /* the guest still runs and nothing ambiguous happened */
	uint64_t t_stop;         /* when the stop was requested (valid once rep->stopped) */
	bool keep_paused;        /* after a failure the destination may be running the guest:
				  * the source must not resume it (rep->guest says why) */
	/* Progress of the pass being shown (progress()). */
	unsigned prog_pass;
	unsigned prog_percent;
	uint64_t prog_pass_bytes0; /* htab payload bytes when the pass began */
	uint64_t max_bw;         /* settings in force: p's, or p->live's once changed */
	uint64_t dl_ns;
	uint64_t dirty_t, dirty_n; /* dirty-rate window: start and entry changes then */
	uint64_t dirty_rate;     /* entry changes per second (MIG_UNKNOWN: none yet) */
};

/* The guest's throttle percent (0 when it has none). */
static unsigned guest_throttle(const struct attempt *a)
{
	return a->ops->throttle_get ? a->ops->throttle_get(a->opaque) : 0;
}

/*
 * Where the pass being sent stands: its number, what it still sends and a
 * percentage that does not go back within the pass. The first pass's rest
 * is the htab layer's estimate of the table not yet read (not the dirty
 * count, which grows while the guest runs and made a first pass look as if
 * it did not converge).
 */
static void progress_pass(struct attempt *a, bool final, uint64_t pending, mig_progress_t *pr)
{
	htab_save_stats_t hs = {0};
	if (a->hs)
		htab_save_get_stats(a->hs, &hs);
	unsigned pass = a->rep->iterations + 1;
	if (pass != a->prog_pass) {
		a->prog_pass = pass;
		a->prog_percent = 0;
		a->prog_pass_bytes0 = hs.bytes;
	}
	uint64_t done = hs.bytes - a->prog_pass_bytes0;
	/* This pass's rest (the htab layer's estimate; during the first pass
	 * not what was dirtied meanwhile) plus what the other sections and the
	 * link still hold; the stop rule's pending when the pass is final. */
	uint64_t left = pending;
	if (!final && a->hs) {
		uint64_t all = savevm_live_pending_total(a->reg);
		uint64_t others = pending > all ? pending - all : 0;
		left = htab_save_pass_pending(a->hs) + others;
	}
	unsigned pct = done + left ? (unsigned)(done * 100 / (done + left)) : 0;
	if (pct > 100)
		pct = 100;
	/* An estimate of the rest can grow (the guest adds entries, the
	 * density seen changes): the percentage shown never goes back. */
	if (pct < a->prog_percent)
		pct = a->prog_percent;
	a->prog_percent = pct;
	pr->pass = pass;
	pr->percent = pct;
	pr->remaining_bytes = left;
	pr->pending_entries = left / HTAB_HPTE_SIZE;
	pr->total_bytes = pr->bytes_sent + left;
}

static void progress(struct attempt *a, const char *phase, uint64_t pending, uint64_t bw,
		     uint64_t expected, uint64_t t0)
{
	if (!a->p->progress)
		return;
	mig_progress_t pr = {
		.attempt = a->rep->attempts,
		.iterations = a->rep->iterations,
		.pending_bytes = pending,
		.bandwidth = bw,
		.expected_downtime_ns = expected,
		.bytes_sent = a->conn ? mig_file_offset(mig_conn_file(a->conn)) : 0,
		.throttle = guest_throttle(a),
		.elapsed_ns = hm_now_ns() - t0,
		.phase = phase,
	};
	if (strcmp(phase, "setup") != 0) /* no pass has begun */
		progress_pass(a, strcmp(phase, "iterate") != 0, pending, &pr);
	a->p->progress(a->p->progress_opaque, &pr);
}

/*
 * What a stop costs whatever is pending: the root over the block digests
 * (hptmig/verify v2; the blocks changed since hashed are counted apart, in
 * stop_verify_ns, as more rounds reduce them), the final bytes and the
 * RESUMED answer cross the link (the round trip), plus stopping the vCPUs
 * and the stream's tail. The root is timed over as many zero digests as
 * the table has blocks; each call takes one more sample and keeps the
 * least, since a sample can only be inflated (by the guest, the
 * destination's own work on a shared host, the machine's noise), never
 * deflated. Both sides compute a root; the destination's starts when the
 * final pass has arrived, so they overlap and count once.
 */
#define MIG_FIXED_SAMPLES 3
static void measure_fixed(struct attempt *a)
{
	uint64_t nb = hpt_verify_nblocks(hpt_shift(a->h));
	uint8_t(*d)[HM_SHA256_LEN] = calloc(nb ? nb : 1, HM_SHA256_LEN);
	uint8_t root[HM_SHA256_LEN];
	uint64_t td = hm_now_ns();
	if (d)
		(void)hpt_verify_root(hpt_shift(a->h), nb,
				      (const uint8_t(*)[HM_SHA256_LEN])d, root);
	uint64_t r = hm_now_ns() - td;
	free(d);
	if (a->digest_samples++ == 0 || r < a->root_ns)
		a->root_ns = r;
	a->fixed_ns = a->root_ns + MIG_DOWNTIME_OVERHEAD_NS + a->rep->rtt_ns;
	a->rep->fixed_downtime_ns = a->fixed_ns;
}

/*
 * The roots kept current (docs/migration.md, "Verification off the stop
 * path"): after every round, hash the blocks changed since they were
 * hashed (every block, the first time) while the guest runs, so the stop
 * re-hashes only the blocks changed since. Within half a round's budget
 * (the passes must not starve: a longer cycle lets more change), but after
 * the round that completed the first pass all of them (at most one walk
 * of the table; the cache's changed set only grows at takes, which this
 * thread makes, so this ends): the policy then sees, as the stop's
 * verification cost, only what changed after that pass. Not with
 * --qemu-pure (no hptmig/verify in the stream: nothing to keep). A failure
 * here only leaves more to hash at the stop.
 */
static void roots_refresh(struct attempt *a, bool pass_complete)
{
	if (a->p->qemu_pure)
		return;
	bool first = pass_complete && a->rep->iterations == 0; /* counted after this */
	(void)hpt_track_root_refresh(a->h, HPT_READ_LOCKED,
				     first ? UINT64_MAX : a->p->round_budget_ns / 2, NULL);
}

/* Until a block has been timed: a conservative cost of hashing one (a
 * full 4096-slot block of records is ~100 KiB of SHA-256 input). */
#define MIG_BLOCK_NS_DEFAULT 100000ull

/*
 * What re-hashing the blocks changed since hashed costs at the stop: the
 * blocks the root would hash now (changed since hashed, or with change
 * marks the final pass has still to take) times the measured cost of a
 * block (the last refresh's, or the mean so far before one).
 */
static uint64_t stop_verify_ns(struct attempt *a)
{
	hpt_root_stats_t st;
	if (a->p->qemu_pure || hpt_track_root_stats(a->h, &st) != 0)
		return 0;
	/* The last refresh's cost per block when there was one: the blocks
	 * left at the stop are like its blocks (changed since hashed: only
	 * their changed groups are read), unlike the first walk's (every
	 * group read, many blocks empty); else the mean so far. */
	uint64_t per = MIG_BLOCK_NS_DEFAULT;
	if (st.recent_block_ns)
		per = st.recent_block_ns;
	else if (st.hashed)
		per = st.hash_ns / st.hashed;
	a->rep->verify_blocks = st.nblocks;
	a->rep->verify_block_ns = per;
	return st.stop_blocks * per;
}

/*
 * Bandwidth sampling: bytes the peer acknowledged (written minus still in
 * the socket's queue) per second, measured only while the link is busy: a
 * round that had more work than it sent, or a backlog in the socket. Idle
 * stretches say nothing about the link. An EWMA of >= 100 ms windows.
 */
struct bw_sampler {
	uint64_t win_ns;    /* window start time, 0 = no window open */
	uint64_t win_bytes; /* delivered at window start */
	uint64_t bw;        /* EWMA of the windows, 0 = none yet */
};

/* Sample after a round that ended at now; returns the bandwidth the policy
 * sees. *unsent_out: bytes still in the socket's send queue. */
static uint64_t bw_sample(struct attempt *a, struct bw_sampler *s, bool more_work, uint64_t now,
			  uint64_t t0, uint64_t *unsent_out)
{
	mig_file_t *f = mig_conn_file(a->conn);
	uint64_t sent = mig_file_offset(f);
	uint64_t unsent = mig_conn_unsent_bytes(a->conn);
	uint64_t delivered = sent - (unsent < sent ? unsent : 0);
	bool busy = more_work || unsent >= 65536;
	*unsent_out = unsent;
	if (busy && s->win_ns == 0) {
		s->win_ns = now;
		s->win_bytes = delivered;
	} else if (busy && now - s->win_ns >= 100000000ull) {
		/* delivered can fall (the socket's queue grew after a long
		 * round): no negative window, no overflowing conversion */
		uint64_t got = delivered > s->win_bytes ? delivered - s->win_bytes : 0;
		uint64_t nb = (uint64_t)((double)got * 1e9 / (double)(now - s->win_ns));
		if (nb > 0)
			s->bw = s->bw ? (s->bw + nb) / 2 : nb;
		s->win_ns = now;
		s->win_bytes = delivered;
	} else if (!busy) {
		s->win_ns = 0;
	}
	uint64_t bw_eff = s->bw;
	if (bw_eff == 0 && now > t0 && delivered > 0)
		/* No saturated window yet: what the peer acknowledged so far over
		 * the time so far is a lower bound of the link's rate. (Bytes
		 * merely queued in the socket are not: a fast first round fills
		 * the send buffer at memory speed.) */
		bw_eff = (uint64_t)((double)delivered * 1e9 / (double)(now - t0));
	if (a->max_bw && (bw_eff == 0 || bw_eff > a->max_bw))
		bw_eff = a->max_bw;
	return bw_eff;
}

/* Auto-converge state across passes. */
struct converge {
	uint64_t pass_start_bytes; /* stream offset where this pass began */
	uint64_t prev_pass_dirty;  /* pending after the previous pass (UINT64_MAX: none) */
	unsigned not_converging;   /* passes in a row that did not converge */
};

/*
 * After a complete pass. Auto-converge as QEMU: when the bytes dirtied
 * during a pass are more than half of what the pass sent (or did not
 * shrink), twice in a row, raise the throttle (20 %, then +10 % steps, at
 * most 99 %).
 */
static void auto_converge_step(struct attempt *a, struct converge *c)
{
	mig_file_t *f = mig_conn_file(a->conn);
	uint64_t pass_bytes = mig_file_offset(f) - c->pass_start_bytes;
	uint64_t dirty = savevm_live_pending_total(a->reg);
	if (a->p->auto_converge && a->rep->iterations > 1) {
		if (dirty * 2 > pass_bytes || dirty >= c->prev_pass_dirty)
			c->not_converging++;
		else
			c->not_converging = 0;
		if (c->not_converging >= 2) {
			unsigned t = guest_throttle(a);
			if (a->ops->throttle_set)
				a->ops->throttle_set(a->opaque,
						     t == 0 ? 20 : (t + 10 > 99 ? 99 : t + 10));
			c->not_converging = 0;
		}
	}
	c->prev_pass_dirty = dirty;
	c->pass_start_bytes = mig_file_offset(f);
}

/*
 * The policy's statistics after a round. Bytes still in the socket's send
 * queue (or a shaper) cross the link after the stop too: they are pending.
 */
static mig_policy_stats_t policy_stats(struct attempt *a, bool pass_complete, uint64_t elapsed,
				       uint64_t bw, uint64_t unsent)
{
	const mig_params_t *p = a->p;
	uint64_t pending = savevm_live_pending_total(a->reg) + unsent;
	uint64_t verify = stop_verify_ns(a);
	uint64_t expected = bw ? (uint64_t)((double)pending * 1e9 / (double)bw) + a->fixed_ns +
					 verify
			       : UINT64_MAX;
	return (mig_policy_stats_t){
		.rounds = a->rep->rounds,
		.iterations = a->rep->iterations,
		.pass_complete = pass_complete,
		.elapsed_ns = elapsed,
		.bytes_sent = mig_file_offset(mig_conn_file(a->conn)),
		.bandwidth = bw,
		.pending_bytes = pending,
		.expected_downtime_ns = expected,
		.fixed_downtime_ns = a->fixed_ns,
		.verify_ns = verify,
		.downtime_limit_ns = a->dl_ns,
		.max_iterations = p->max_iterations,
		.throttle = guest_throttle(a),
	};
}

/* The policy said STOP: note what it saw and why, for the report. */
static void note_stop(struct attempt *a, const mig_policy_stats_t *st)
{
	const mig_params_t *p = a->p;
	mig_report_t *rep = a->rep;
	uint64_t expected = st->expected_downtime_ns;
	rep->pending_at_stop = st->pending_bytes;
	rep->expected_downtime_ns = expected == UINT64_MAX ? 0 : expected;
	rep->verify_expected_ns = st->verify_ns;
	snprintf(rep->stop_reason, sizeof(rep->stop_reason), "%s",
		 expected <= a->dl_ns ? "converged"
		 : a->fixed_ns + st->verify_ns >= a->dl_ns ? "fixed-cost-over-limit"
		 : (p->max_iterations && rep->iterations >= p->max_iterations) ? "max-iterations"
									      : "policy");
}

/* Before each round: a cancel or the overall timeout ends the precopy (the
 * guest never noticed). */
static int precopy_check_limits(struct attempt *a, uint64_t run_t0, hm_error_t *err)
{
	const mig_params_t *p = a->p;
	if (mig_cancel_requested(p->cancel))
		return hm_error_set(err, HM_E_CANCELLED, -1,
				    "migration cancelled before the guest was stopped");
	if (p->timeout_ns && hm_now_ns() - run_t0 >= p->timeout_ns) {
		a->retryable = false;
		return hm_error_set(err, HM_E_TIMEOUT, -1,
				    "timeout: not converged after %llu s (%u passes, %llu bytes pending)",
				    (unsigned long long)(p->timeout_ns / 1000000000ull),
				    a->rep->iterations,
				    (unsigned long long)savevm_live_pending_total(a->reg));
	}
	return 0;
}

/* One round: iterate within the budget, flush, wait out the rate limit.
 * Returns savevm_live_iterate's answer (1: all current work sent). */
static int precopy_round(struct attempt *a, uint64_t *r1, hm_error_t *err)
{
	mig_file_t *f = mig_conn_file(a->conn);
	int rc = savevm_live_iterate(a->reg, f, a->p->round_budget_ns, err);
	if (rc < 0)
		return rc;
	if (mig_file_flush(f) != 0)
		return mig_file_error_copy(f, err);
	bool limited = mig_file_rate_limit_exceeded(f);
	/* Hash before the rate wait: on a limited link that time is spent
	 * waiting anyway, so the cycle (and what changes in it) stays as
	 * short as without the kept roots. */
	roots_refresh(a, rc == 1);
	*r1 = hm_now_ns();
	a->rep->rounds++;
	if (limited) {
		int rc2 = mig_file_rate_wait(f);
		if (rc2 != 0) {
			*err = *mig_file_error(f);
			return rc2;
		}
	}
	return rc;
}

/*
 * The destination's REFUSED as our error: its code (or HM_E_PEER) and
 * offset, its message escaped (a peer's bytes).
 */
static int refused_error(const mig_rp_msg_t *msg, hm_error_t *err)
{
	char why[HM_ESC_LEN(160)];
	hm_escape(msg->msg, strlen(msg->msg), 0, why, sizeof(why));
	return hm_error_set(err, msg->code < 0 ? msg->code : HM_E_PEER, msg->offset,
			    "the destination refused the stream: \"%s\"", why);
}

/*
 * The catch-up before the stop (docs/migration.md). The policy said STOP
 * with what is left now: mostly the blocks the guest changed since they
 * were last hashed, which a round's refresh (half a round's budget) does
 * not all re-hash when the guest changes many blocks. Everything the stop
 * would re-hash can be hashed now instead, while the guest runs: a round
 * (takes the marks, so their blocks are known, and sends the entries),
 * then a refresh of every block changed, then again, while that cuts
 * what the stop would re-hash by a quarter or more (hashing faster than
 * the guest changes blocks); it stops when the rest costs under
 * MIG_CATCHUP_ENOUGH_NS or after MIG_CATCHUP_MAX rounds, and never goes
 * past max_iterations passes. A guest that changes blocks about as fast
 * as they are hashed (a loaded host) ends it after one round. The policy's statistics are taken
 * again afterwards, so the expected downtime in the report is what was
 * really left at the pause. Any error: negative, the guest still runs.
 */
#define MIG_CATCHUP_MAX 4
#define MIG_CATCHUP_ENOUGH_NS 1000000ull

/*
 * The destination's half of a catch-up round: it hashes the blocks a
 * round wrote after it has read them, so at the pause it could still be
 * hashing the last round's blocks (measured at 256 GiB: 1 000-1 300
 * blocks, 10-35 ms of the downtime) while ours were done. A COMMAND PING
 * after the round: the destination answers PONG when it reads it, after
 * loading and hashing everything before it, so the PONG says it has
 * caught up. Waited for with the guest running, at most the downtime
 * limit (a slower destination costs that wait, and the rest stays for the
 * stop). Only where the PONG of the round-trip PING came (rtt_ns): a
 * peer that does not answer is not waited for. round tells the tokens
 * apart, so a late PONG of an earlier wait is skipped. Negative on a
 * broken link or an answer that is not PONG (the guest still runs).
 */
#define MIG_BARRIER_TOKEN 0x68706300u /* "hpc" and the round */
static int dest_barrier(struct attempt *a, unsigned round, hm_error_t *err)
{
	if (a->p->qemu_pure || !mig_conn_has_return_path(a->conn) || a->rep->rtt_ns == 0)
		return 0;
	mig_file_t *f = mig_conn_file(a->conn);
	uint32_t token = MIG_BARRIER_TOKEN | (round & 0xffu);
	int rc = savevm_write_command_ping(f, token, err);
	if (!rc && mig_file_flush(f) != 0)
		rc = mig_file_error_copy(f, err);
	if (rc)
		return rc;
	uint64_t b0 = hm_now_ns(), wait_ns = a->dl_ns;
	if (a->p->rp_timeout_ms > 0 && (uint64_t)a->p->rp_timeout_ms * 1000000ull < wait_ns)
		wait_ns = (uint64_t)a->p->rp_timeout_ms * 1000000ull;
	for (;;) {
		uint64_t now = hm_now_ns();
		if (now - b0 >= wait_ns)
			break; /* not caught up in time: the rest waits for the stop */
		mig_rp_msg_t msg;
		hm_error_t e;
		hm_error_clear(&e);
		rc = mig_rp_recv(a->conn, (int)((wait_ns - (now - b0) + 999999) / 1000000), &msg, &e);
		if (rc == HM_E_TIMEOUT)
			break;
		if (rc)
			return hm_error_set(err, e.code, e.offset,
					    "waiting for the destination to catch up: %s", e.msg);
		if (msg.type == MIG_RP_REFUSED)
			return refused_error(&msg, err);
		if (msg.type != MIG_RP_PONG)
			return hm_error_set(err, HM_E_FORMAT, -1,
					    "return path: expected PONG %u, got message type %u",
					    token, msg.type);
		if (msg.value == token) {
			a->rep->catchup_dest_caught_up++;
			break;
		}
		/* a late PONG of an earlier PING: skip it */
	}
	a->rep->catchup_dest_wait_ns += hm_now_ns() - b0;
	return 0;
}

static int stop_catchup(struct attempt *a, uint64_t t0, mig_policy_stats_t *st, hm_error_t *err)
{
	hpt_t *h = a->h;
	uint64_t c0 = hm_now_ns();
	hpt_root_stats_t rs;
	/* A cancel (or the timeout) that came with the decision: the guest
	 * has not stopped yet, so it keeps running. */
	int rc = precopy_check_limits(a, a->run_t0, err);
	if (rc)
		return rc;
	if (hpt_track_root_stats(h, &rs) != 0)
		return 0;
	uint64_t left = rs.stop_blocks;
	a->rep->verify_blocks_at_decision = left;
	unsigned max_it = a->p->max_iterations;
	for (unsigned i = 0; i < MIG_CATCHUP_MAX && stop_verify_ns(a) > MIG_CATCHUP_ENOUGH_NS &&
			     !(max_it && a->rep->iterations >= max_it);
	     i++) {
		uint64_t r1;
		if (i > 0)
			rc = precopy_check_limits(a, a->run_t0, err);
		if (!rc)
			rc = precopy_round(a, &r1, err);
		if (rc < 0)
			return rc;
		if (rc == 1)
			a->rep->iterations++;
		/* All of it, but no longer than the downtime limit: a guest
		 * that out-changes the hashing must not hold the stop back. */
		(void)hpt_track_root_refresh(h, HPT_READ_LOCKED, a->dl_ns, NULL);
		a->rep->catchup_rounds++;
		/* and the destination has hashed the same blocks */
		rc = dest_barrier(a, i, err);
		if (rc < 0)
			return rc;
		if (hpt_track_root_stats(h, &rs) != 0 || rs.stop_blocks * 4 > left * 3)
			break;
		left = rs.stop_blocks;
	}
	a->rep->catchup_ns = hm_now_ns() - c0;
	if (a->rep->catchup_rounds) {
		uint64_t unsent = mig_conn_unsent_bytes(a->conn), now = hm_now_ns();
		mig_policy_stats_t s2 = policy_stats(a, st->pass_complete, now - t0,
						     st->bandwidth, unsent);
		s2.prev_expected_downtime_ns = st->expected_downtime_ns;
		*st = s2;
	}
	return 0;
}

/*
 * Live settings (mig_live_t): the bandwidth cap and downtime limit in force
 * for this round. A changed cap is usually on the stream already (the
 * setter puts it there at once, so a rate wait computed for the old cap
 * ends); the controller puts it there too, and its own copies follow.
 */
static void live_refresh(struct attempt *a)
{
	if (!a->p->live)
		return;
	uint64_t bw = a->max_bw;
	mig_live_settings(a->p->live, &a->max_bw, &a->dl_ns);
	if (a->conn && a->max_bw != bw)
		mig_file_set_rate_limit(mig_conn_file(a->conn), a->max_bw);
}

/* Entry-changing hypercalls so far: what dirties the table (MIG_UNKNOWN:
 * the guest does not count them). */
static uint64_t entry_changes(const struct attempt *a)
{
	return a->ops->entry_changes ? a->ops->entry_changes(a->opaque) : MIG_UNKNOWN;
}

/* The status snapshot after a round (query-migrate's fields). */
static void live_publish_round(struct attempt *a, const mig_policy_stats_t *st, uint64_t now)
{
	if (!a->p->live)
		return;
	if (now - a->dirty_t >= 100000000ull && a->dirty_n != MIG_UNKNOWN) {
		uint64_t n = entry_changes(a);
		a->dirty_rate = (uint64_t)((double)(n - a->dirty_n) * 1e9 / (double)(now - a->dirty_t));
		a->dirty_t = now;
		a->dirty_n = n;
	}
	mig_status_t s = {
		.status = MIG_RUN_ACTIVE,
		.attempt = a->rep->attempts,
		.iterations = a->rep->iterations,
		.transferred = st->bytes_sent,
		.remaining = st->pending_bytes,
		.total = hpt_slots(a->h) * 16u,
		.bandwidth = st->bandwidth,
		.dirty_rate = a->dirty_rate,
		.expected_downtime_ns = st->expected_downtime_ns,
		.setup_ns = a->rep->setup_ns,
		.downtime_ns = MIG_UNKNOWN,
		.throttle = st->throttle,
	};
	mig_live_publish(a->p->live, &s);
}

/* The status at a phase change (setup, device) between rounds. */
static void live_publish_phase(struct attempt *a, enum mig_run_status status)
{
	if (!a->p->live)
		return;
	mig_status_t s;
	mig_live_status(a->p->live, &s);
	s.status = status;
	s.attempt = a->rep->attempts;
	s.iterations = a->rep->iterations;
	if (a->conn)
		s.transferred = mig_file_offset(mig_conn_file(a->conn));
	if (status == MIG_RUN_SETUP) {
		s.remaining = s.expected_downtime_ns = s.setup_ns = s.dirty_rate = MIG_UNKNOWN;
		s.bandwidth = 0;
		s.total = hpt_slots(a->h) * 16u;
	}
	s.downtime_ns = MIG_UNKNOWN;
	mig_live_publish(a->p->live, &s);
}

/*
 * Precopy: rounds until the policy says STOP (returns 0) or ABORT, a
 * cancel, the timeout or an error (negative; the guest still runs).
 */
static int attempt_precopy(struct attempt *a, uint64_t t0, uint64_t run_t0, hm_error_t *err)
{
	const mig_params_t *p = a->p;
	mig_policy_fn policy = p->policy ? p->policy : mig_policy_default;
	struct bw_sampler bws = {0};
	struct converge conv = {.pass_start_bytes = mig_file_offset(mig_conn_file(a->conn)),
				.prev_pass_dirty = UINT64_MAX};
	uint64_t last_progress = 0, prev_expected = UINT64_MAX;
	a->dirty_t = hm_now_ns();
	a->dirty_n = entry_changes(a);
	a->dirty_rate = MIG_UNKNOWN;

	for (;;) {
		uint64_t r1 = 0, unsent;
		live_refresh(a);
		int rc = precopy_check_limits(a, run_t0, err);
		if (!rc)
			rc = precopy_round(a, &r1, err);
		if (rc < 0)
			return rc;
		uint64_t bw = bw_sample(a, &bws, rc == 0, hm_now_ns(), t0, &unsent);
		if (rc == 1) {
			a->rep->iterations++;
			auto_converge_step(a, &conv);
			/* About to find the limit out of reach because of the
			 * fixed cost alone: make sure of that cost with another
			 * sample first. */
			if (a->fixed_ns >= a->dl_ns &&
			    a->digest_samples < MIG_FIXED_SAMPLES)
				measure_fixed(a);
		}
		mig_policy_stats_t st = policy_stats(a, rc == 1, r1 - t0, bw, unsent);
		st.prev_expected_downtime_ns = prev_expected;
		prev_expected = st.expected_downtime_ns;
		a->rep->bandwidth = bw;
		live_publish_round(a, &st, r1);
		enum mig_policy_answer ans = policy(p->policy_opaque, &st);
		if (r1 - last_progress >= 200000000ull) {
			progress(a, "iterate", st.pending_bytes, bw, st.expected_downtime_ns, t0);
			last_progress = r1;
		}
		if (ans == MIG_POLICY_ABORT)
			return hm_error_set(err, HM_E_CANCELLED, -1,
					    "the precopy policy aborted the migration after %u passes",
					    a->rep->iterations);
		if (ans == MIG_POLICY_STOP) {
			if (p->stop_catchup && !p->qemu_pure) {
				rc = stop_catchup(a, t0, &st, err);
				if (rc < 0)
					return rc;
			}
			note_stop(a, &st);
			return 0;
		}
		if (rc == 1) {
			/* All current work is out: give the guest time to change
			 * something (and the link time to drain) rather than
			 * spinning over a table that hardly changed. */
			hm_sleep_ns(5000000);
		}
	}
}

/*
 * The guest resized its table after our last round (rare: a guest grows its
 * HPT after memory hotplug). One END record cannot carry a new table, so
 * send the new header and the new table's first pass in PART records now,
 * before complete: the vCPUs are stopped, so the rounds finish, and the
 * loader takes a PART header as a new table (wire-format.md §2). It costs
 * downtime instead of the migration. The rate limit does not apply with the
 * guest stopped (as for complete).
 */
static int resized_at_stop(struct attempt *a, mig_file_t *f, hm_error_t *err)
{
	if (!htab_save_resized(a->hs))
		return 0;
	uint64_t limit = mig_file_rate_limit(f);
	int rc;
	mig_file_set_rate_limit(f, 0);
	do
		rc = savevm_live_iterate(a->reg, f, 0, err);
	while (rc == 0);
	mig_file_set_rate_limit(f, limit);
	a->rep->resized_at_stop = true;
	return rc < 0 ? rc : 0;
}

/*
 * The link's round trip, which every stop pays once (the final bytes one
 * way, RESUMED the other): a COMMAND PING right after the header, answered
 * PONG on the return path before the destination has anything else to do.
 * Measured end to end, so a proxy or relay on the way is in it (a socket's
 * own RTT estimate would see the first hop only). Not for streams meant for
 * QEMU (it needs its own return path for a PING) nor without a return path.
 * A peer that does not answer within MIG_PING_TIMEOUT_MS costs that wait,
 * not the migration: the round trip stays unknown (0) and a late PONG is
 * skipped where RESUMED is awaited.
 */
#define MIG_PING_TIMEOUT_MS 2000
static int measure_rtt(struct attempt *a, mig_file_t *f, hm_error_t *err)
{
	const uint32_t token = 0x68706d67; /* "hpmg" */
	mig_rp_msg_t msg;
	if (a->p->qemu_pure || !mig_conn_has_return_path(a->conn))
		return 0;
	int rc = savevm_write_command_ping(f, token, err);
	uint64_t t0 = hm_now_ns(); /* the PING leaves with this flush */
	if (!rc && mig_file_flush(f) != 0)
		rc = mig_file_error_copy(f, err);
	if (rc)
		return rc;
	hm_error_t e;
	hm_error_clear(&e);
	int wait = a->p->rp_timeout_ms < MIG_PING_TIMEOUT_MS ? a->p->rp_timeout_ms : MIG_PING_TIMEOUT_MS;
	rc = mig_rp_recv(a->conn, wait, &msg, &e);
	if (rc == HM_E_TIMEOUT)
		return 0; /* no answer (yet): go on without the round trip */
	if (rc) {
		hm_error_set(err, e.code, e.offset, "waiting for the answer to PING: %s", e.msg);
		return rc;
	}
	if (msg.type == MIG_RP_REFUSED)
		return refused_error(&msg, err);
	if (msg.type != MIG_RP_PONG || msg.value != token)
		return hm_error_set(err, HM_E_FORMAT, -1,
				    "return path: expected PONG %u, got message type %u value %u",
				    token, msg.type, msg.value);
	a->rep->rtt_ns = hm_now_ns() - t0;
	return 0;
}

/*
 * The flat HTAB digest of our stopped table, for the report and for a
 * RESUMED that carries only a digest: computed once the downtime has
 * ended (after the destination's answer, or the last byte), so it costs
 * the guest nothing.
 */
static void source_flat_digest(struct attempt *a)
{
	hpt_summary(a->h, HPT_READ_QUIESCENT, NULL, NULL, a->rep->digest);
}

/*
 * Compare the destination's RESUMED with our table: the root when it
 * carries one (hptmig/verify v2) and the digest when it carries one. 0, or
 * HM_E_DIGEST with *what the value that differs ("root", "digest").
 */
static int compare_resumed(struct attempt *a, const mig_rp_msg_t *msg, const char **what)
{
	mig_report_t *rep = a->rep;
	rep->has_dest_root = msg->has_root;
	rep->has_dest_digest = msg->has_digest;
	memcpy(rep->dest_root, msg->root, HM_SHA256_LEN);
	memcpy(rep->dest_digest, msg->digest, HM_SHA256_LEN);
	if (msg->has_root && !rep->has_root) /* qemu-pure: no root at the stop */
		rep->has_root = hpt_root(a->h, HPT_READ_QUIESCENT, rep->root) == 0;
	rep->verified = false;
	*what = msg->has_root ? "root" : "digest";
	if (msg->has_root && memcmp(msg->root, rep->root, HM_SHA256_LEN) != 0) {
		*what = "root";
		return HM_E_DIGEST;
	}
	if (msg->has_digest && memcmp(msg->digest, rep->digest, HM_SHA256_LEN) != 0) {
		*what = "digest";
		return HM_E_DIGEST;
	}
	rep->verified = msg->has_root || msg->has_digest;
	return rep->verified ? 0 : HM_E_DIGEST;
}

/*
 * The whole stream is out and the guest stopped: wait for the destination's
 * answer, bounded by rp_timeout_ms in all (a peer trickling bytes or
 * sending PONGs forever gets no more). REFUSED: the destination did not
 * resume, so the caller resumes the source. RESUMED with our digest: the
 * guest moved. Anything else (silence up to the bound, a reset, garbage, a
 * cancel) leaves us unable to know whether the destination resumed, and
 * RESUMED with another digest means it runs a different table: in both the
 * source must stay paused, so two guests never run; the error says so.
 */
static int await_resumed(struct attempt *a, uint64_t t0, hm_error_t *err)
{
	const mig_params_t *p = a->p;
	mig_report_t *rep = a->rep;
	mig_rp_msg_t msg;
	int rc;
	uint64_t deadline = hm_now_ns() + (uint64_t)(p->rp_timeout_ms > 0 ? p->rp_timeout_ms : 0) *
					       1000000ull;
	mig_conn_finish_write(a->conn);
	progress(a, "wait", 0, rep->bandwidth, 0, t0);
	for (;;) {
		uint64_t now = hm_now_ns();
		int left = now >= deadline ? 0 : (int)((deadline - now + 999999) / 1000000);
		rc = mig_rp_recv(a->conn, left, &msg, err);
		if (rc || msg.type != MIG_RP_PONG)
			break;
		/* a PONG that came too late for measure_rtt: skip it */
	}
	uint64_t t_end = hm_now_ns();
	if (rc && mig_conn_tls_refused(a->conn)) {
		/* A TLS alert before any answer: the destination refused the
		 * session (a certificate, --tls-authz), so it loaded nothing and
		 * the source resumes, as on REFUSED. */
		hm_error_prefix(err, "after the whole stream was sent: ");
		return err->code;
	}
	if (rc) {
		/* We cannot know whether the destination resumed: stay paused,
		 * never retry. */
		a->retryable = false;
		a->keep_paused = true;
		rep->guest = MIG_GUEST_PAUSED_DESTINATION_UNKNOWN;
		if (mig_cancel_requested(p->cancel)) {
			/* (the cancel shut the connection down: the transport's own
			 * error says nothing more) */
			hm_error_clear(err);
			hm_error_set(err, HM_E_CANCELLED, -1,
				     "cancelled while waiting for the destination's answer after "
				     "the whole stream was sent");
		} else if (rc == HM_E_TIMEOUT) {
			hm_error_clear(err);
			hm_error_set(err, HM_E_TIMEOUT, -1,
				     "after the whole stream was sent: no answer from the destination "
				     "within %d ms",
				     p->rp_timeout_ms);
		} else {
			hm_error_prefix(err, "after the whole stream was sent: ");
		}
		return err->code;
	}
	if (msg.type == MIG_RP_REFUSED)
		return refused_error(&msg, err);
	rep->downtime_ns = t_end - a->t_stop;
	rep->downtime_end = MIG_DOWNTIME_DEST_RESUMED;
	source_flat_digest(a);
	const char *what = NULL;
	rc = compare_resumed(a, &msg, &what);
	if (rc) {
		/* It resumed on a table that is not ours: a failure, and the
		 * source must not resume as well (two guests). */
		char a1[65], a2[65];
		a->retryable = false;
		a->keep_paused = true;
		rep->guest = MIG_GUEST_PAUSED_DESTINATION_DIVERGED;
		bool root = strcmp(what, "root") == 0;
		hm_hex(root ? rep->root : rep->digest, HM_SHA256_LEN, a1);
		hm_hex(root ? msg.root : msg.digest, HM_SHA256_LEN, a2);
		return hm_error_set(err, HM_E_DIGEST, -1,
				    "the destination resumed a guest with table %s %s, the "
				    "source's is %s",
				    what, a2, a1);
	}
	rep->guest = MIG_GUEST_RESUMED_ON_DESTINATION;
	return 0;
}

/*
 * The block root of the stopped table into hptmig/verify (version 2) and
 * the report: the stop's one verification call.
 */
static int mig_source_verify_root(struct attempt *a, hm_error_t *err)
{
	hpt_t *h = a->h;
	hpt_root_info_t info;
	uint64_t t0 = hm_now_ns();
	/* The roots kept current: only the blocks changed since they were
	 * hashed (the final pass's among them), then the root. Tracking is
	 * on until cleanup; without it (never here), a full recomputation. */
	int rc = hpt_track_root(h, HPT_READ_QUIESCENT, &info);
	if (rc == HM_E_STATE) {
		memset(&info, 0, sizeof(info));
		info.shift = hpt_shift(h);
		info.nblocks = hpt_verify_nblocks(info.shift);
		info.rehashed = info.nblocks;
		rc = hpt_root_summary(h, HPT_READ_QUIESCENT, &info.valid, NULL, NULL, info.root);
	}
	if (rc)
		return hm_error_set(err, rc, -1, "block root: %s", hm_err_str(rc));
	a->rep->verify_stop_ns = hm_now_ns() - t0;
	a->rep->verify_blocks_at_stop = info.rehashed;
	a->verify.htab_shift = info.shift;
	a->verify.valid = info.valid;
	memcpy(a->verify.root, info.root, HM_SHA256_LEN);
	memcpy(a->rep->root, a->verify.root, HM_SHA256_LEN);
	a->rep->has_root = true;
	return 0;
}

/*
 * Setup phase: connect, register the guest's sections, header, the round
 * trip, START records, then back the table with memory and measure the
 * fixed cost of a stop. Any failure leaves the guest running untouched.
 */
static int attempt_setup(struct attempt *a, mig_uri_t *uri, uint64_t t0, hm_error_t *err)
{
	const mig_params_t *p = a->p;
	hpt_t *h = a->h;
	int rc;

	progress(a, "setup", 0, 0, 0, t0);
	live_publish_phase(a, MIG_RUN_SETUP);
	mig_connect_opts_t co = {.timeout_ms = p->connect_timeout_ms, .cancel = p->cancel,
				 .on_retry = p->on_retry, .opaque = p->retry_opaque};
	rc = mig_connect_tls_ex(uri, &co, p->tls, &a->conn, err);
	if (rc)
		return rc;
	mig_cancel_attach(p->cancel, a->conn);
	mig_file_t *f = mig_conn_file(a->conn);
	live_refresh(a);
	mig_file_set_rate_limit(f, a->max_bw);
	mig_live_attach_file(p->live, f); /* a cap changed from now on applies at once */
	a->rep->return_path = mig_conn_has_return_path(a->conn);

	htab_save_opts_t ho;
	htab_save_opts_default(&ho);
	ho.scan = p->scan;
	rc = htab_save_create(h, &ho, &a->hs, err);
	if (!rc)
		rc = mig_register_guest(&a->reg, a->hs, NULL, &a->spapr,
					p->qemu_pure ? NULL : &a->verify, err);
	if (!rc)
		rc = savevm_write_header(a->reg, f,
					 p->machine_name ? p->machine_name : MIG_MACHINE_NAME, err);
	if (!rc)
		rc = measure_rtt(a, f, err);
	if (!rc) {
		a->setup_called = true;
		rc = savevm_live_setup_all(a->reg, f, err);
	}
	if (!rc && mig_file_flush(f) != 0)
		rc = mig_file_error_copy(f, err);
	if (rc)
		return rc;
	a->rep->setup_ns = hm_now_ns() - t0;

	/* Back the whole table with memory first (a lazily mapped table's
	 * untouched parts would be faulted in by the first full walk: seconds
	 * for 2 GiB on some hosts), so neither the passes nor the measurement
	 * below nor the digest in the downtime pay for it. */
	if ((rc = hpt_populate(h, err)) != 0)
		return rc;
	measure_fixed(a);
	return 0;
}

/*
 * Stop-and-copy phase: pause the guest, the timebase into `spapr`, a
 * resize caught at the stop, END records, the digest into `hptmig/verify`
 * (while the destination loads the final pass), FULL records, EOF, vmdesc.
 * A failed pause returns with the guest running; from a successful pause on
 * rep->stopped is set and any failure resumes the guest (the caller does).
 */
static int attempt_stop_and_copy(struct attempt *a, uint64_t t0, hm_error_t *err)
{
	const mig_params_t *p = a->p;
	mig_report_t *rep = a->rep;
	mig_file_t *f = mig_conn_file(a->conn);
	int rc;

	progress(a, "stop", rep->pending_at_stop, rep->bandwidth, rep->expected_downtime_ns, t0);
	/* The rate limit does not apply with the guest stopped: detach. */
	mig_live_attach_file(p->live, NULL);
	live_publish_phase(a, MIG_RUN_DEVICE);
	uint64_t t_stop = hm_now_ns();
	rc = a->ops->pause(a->opaque, p->pause_timeout_ns, err);
	if (rc)
		return rc; /* pause withdrawn: the guest runs on */
	a->t_stop = t_stop;
	rep->stopped = true;
	rep->pause_ns = hm_now_ns() - t_stop;
	if (a->ops->after_stop)
		a->ops->after_stop(a->opaque);
	memset(&a->spapr, 0, sizeof(a->spapr));
	if (a->ops->spapr_get)
		a->ops->spapr_get(a->opaque, &a->spapr);
	htab_save_stats_t before, after;
	htab_save_get_stats(a->hs, &before);
	rc = resized_at_stop(a, f, err);
	if (!rc)
		rc = savevm_live_complete_all(a->reg, f, err);
	/* Let the destination load the final pass while we compute the root. */
	if (!rc && mig_file_flush(f) != 0)
		rc = mig_file_error_copy(f, err);
	rep->final_pass_ns = hm_now_ns() - t_stop;
	if (!rc && !p->qemu_pure)
		rc = mig_source_verify_root(a, err);
	if (!rc)
		rc = savevm_write_full_all(a->reg, f, err);
	if (!rc)
		rc = savevm_write_eof_and_vmdesc(a->reg, f, err);
	if (!rc && mig_file_flush(f) != 0)
		rc = mig_file_error_copy(f, err);
	htab_save_get_stats(a->hs, &after);
	rep->final_entries = after.valid_sent + after.invalid_sent - before.valid_sent -
			     before.invalid_sent;
	rep->complete_ns = hm_now_ns() - t_stop;
	if (rc) {
		hm_error_prefix(err, "after the guest was stopped: ");
		return rc;
	}
	rep->bytes_total = mig_file_offset(f);
	return 0;
}

/*
 * The whole stream is out, the guest stopped. With a return path, await
 * the destination's answer (await_resumed); without, the downtime ends at
 * the last byte and the guest stays paused. Then close (an exec: command
 * that failed means the stream may not have arrived).
 */
static int attempt_finish(struct attempt *a, uint64_t t0, hm_error_t *err)
{
	const mig_params_t *p = a->p;
	mig_report_t *rep = a->rep;
	int rc;
	if (mig_conn_has_return_path(a->conn)) {
		rc = await_resumed(a, t0, err);
		if (rc)
			return rc;
	} else {
		rep->downtime_ns = hm_now_ns() - a->t_stop;
		rep->downtime_end = MIG_DOWNTIME_LAST_BYTE;
		rep->guest = MIG_GUEST_PAUSED_ON_SOURCE;
		source_flat_digest(a); /* our own digest, for the report */
	}
	/* Detached first: a cancel during the close (its last flush, an exec:
	 * child's exit) must not reach a connection being freed; the close's
	 * own waits poll the cancel. */
	mig_cancel_attach(p->cancel, NULL);
	rc = mig_conn_close(a->conn, err);
	a->conn = NULL;
	if (rc) {
		hm_error_prefix(err, "after the guest was stopped: ");
		return rc;
	}
	return 0;
}

/* One attempt: setup, precopy, stop-and-copy, the destination's answer. */
static int attempt_run(struct attempt *a, mig_uri_t *uri, hm_error_t *err)
{
	uint64_t t0 = hm_now_ns();
	int rc;
	a->retryable = true;
	rc = attempt_setup(a, uri, t0, err);
	if (!rc)
		rc = attempt_precopy(a, t0, a->run_t0, err);
	if (!rc)
		rc = attempt_stop_and_copy(a, t0, err);
	if (!rc)
		rc = attempt_finish(a, t0, err);
	return rc;
}

static void attempt_cleanup(struct attempt *a)
{
	mig_cancel_attach(a->p->cancel, NULL);
	mig_live_attach_file(a->p->live, NULL);
	if (a->reg && a->setup_called)
		savevm_live_cleanup_all(a->reg);
	savevm_registry_free(a->reg);
	a->reg = NULL;
	if (a->hs) {
		htab_save_get_stats(a->hs, &a->rep->htab);
		htab_save_destroy(a->hs);
		a->hs = NULL;
	}
	if (a->conn) {
		/* Failed or cancelled: the bytes that did go out, for the report. */
		if (!a->rep->bytes_total)
			a->rep->bytes_total = mig_file_offset(mig_conn_file(a->conn));
		mig_conn_abort(a->conn);
		mig_conn_close(a->conn, NULL);
		a->conn = NULL;
	}
}

/* One line before a new attempt: which one failed, why, when the next starts. */
static void retry_note(const mig_params_t *p, unsigned attempt, const hm_error_t *why)
{
	char line[sizeof(why->msg) + 128];
	snprintf(line, sizeof(line), "attempt %u of %u failed (%s); next in %.1f s (--retries)",
		 attempt, p->retries + 1, why->msg, (double)p->retry_delay_ns / 1e9);
	hm_log(HM_LOG_WARN, "%s", line);
	if (p->on_retry)
		p->on_retry(p->retry_opaque, line);
}

/*
 * After a failure with the guest stopped, when the destination cannot have
 * resumed it: resume it here (before_resume, resume). A resume that fails
 * leaves it paused; the report and the error say so.
 */
static void source_resume(const mig_guest_ops_t *ops, void *opaque, mig_report_t *rep,
			  uint64_t t_stop, hm_error_t *e)
{
	hm_error_t re;
	hm_error_clear(&re);
	if (ops->before_resume)
		ops->before_resume(opaque);
	int rc = ops->resume(opaque, &re);
	if (rc) {
		rep->guest = MIG_GUEST_PAUSED_RESUME_FAILED;
		hm_error_t c = *e;
		hm_error_clear(e);
		hm_error_set(e, c.code, c.offset, "%s; resuming the guest on the source failed: %s",
			     c.msg, re.msg[0] ? re.msg : hm_err_str(rc));
		return; /* still paused: counted up to the report */
	}
	rep->source_resumed = true;
	rep->guest = MIG_GUEST_RESUMED_ON_SOURCE;
	rep->downtime_ns = hm_now_ns() - t_stop;
	rep->downtime_end = MIG_DOWNTIME_SOURCE_RESUMED;
}

/*
 * After an attempt that stopped the guest: resume it when it failed so that
 * the destination cannot have resumed it, and count the stopped time (to
 * the resume, the answer or the last byte; or from *paused_at up to the
 * report while it stays paused).
 */
static void attempt_account_stop(struct attempt *a, int rc, hm_error_t *e,
				 uint64_t *stopped_total, uint64_t *paused_at)
{
	mig_report_t *rep = a->rep;
	if (rc && !a->keep_paused) {
		/* The destination cannot have resumed: resume here. */
		source_resume(a->ops, a->opaque, rep, a->t_stop, e);
		if (rep->source_resumed)
			*stopped_total += rep->downtime_ns;
		else
			*paused_at = a->t_stop;
	} else if (rep->downtime_end == MIG_DOWNTIME_NOT_STOPPED) {
		/* Paused with no answer: counted up to the report. */
		*paused_at = a->t_stop;
	} else {
		/* Moved, or a complete stream without a return path:
		 * downtime_ns ends where the answer (or last byte) came. */
		*stopped_total += rep->downtime_ns;
	}
}

int mig_source_run_guest(const mig_guest_ops_t *ops, void *opaque, const char *uri_text,
			 const mig_params_t *p, mig_report_t *rep, hm_error_t *err)
{
	mig_params_t defaults;
	mig_uri_t uri;
	uint64_t t0 = hm_now_ns();
	int rc;
	if (!p) {
		mig_params_default(&defaults);
		p = &defaults;
	}
	memset(rep, 0, sizeof(*rep));
	hpt_t *h = ops && ops->table ? ops->table(opaque) : NULL;
	if (!h || !ops->pause || !ops->resume) {
		rep->status = HM_E_STATE;
		return hm_error_set(err, HM_E_STATE, -1,
				    "guest: the table, pause and resume operations are required");
	}
	rc = mig_uri_parse(uri_text, &uri, err);
	if (rc) {
		rep->status = rc;
		return rc;
	}
	mig_live_begin(p->live, true, p->max_bandwidth, p->downtime_limit_ns);
	uint64_t stopped_total = 0;
	uint64_t paused_at = 0; /* stop of an attempt that ended paused, no answer */
	for (;;) {
		struct attempt a = {.ops = ops, .opaque = opaque, .h = h, .p = p, .rep = rep,
				    .run_t0 = t0,
				    .max_bw = p->max_bandwidth, .dl_ns = p->downtime_limit_ns};
		hm_error_t e;
		hm_error_clear(&e);
		unsigned attempts = rep->attempts + 1;
		memset(rep, 0, sizeof(*rep));
		rep->attempts = attempts;
		rc = attempt_run(&a, &uri, &e);
		attempt_cleanup(&a);
		if (rc && rc != HM_E_CANCELLED && mig_cancel_requested(p->cancel) && !a.keep_paused) {
			/* A cancel shuts the connection down, so the transfer usually
			 * fails with the transport's error (EPIPE...) before the
			 * controller sees the flag: report what really happened. */
			hm_error_t c;
			hm_error_clear(&c);
			hm_error_set(&c, HM_E_CANCELLED, -1, "migration cancelled (%s)", e.msg);
			e = c;
			rc = HM_E_CANCELLED;
		}
		if (rep->stopped)
			attempt_account_stop(&a, rc, &e, &stopped_total, &paused_at);
		if (rc == 0 || !a.retryable || rep->attempts > p->retries ||
		    (rep->stopped && !rep->source_resumed && rc) ||
		    mig_cancel_requested(p->cancel)) {
			if (rc)
				*err = e;
			break;
		}
		retry_note(p, rep->attempts, &e);
		/* The guest keeps running; wait, then start over with a full pass. */
		if (mig_cancel_wait(p->cancel, p->retry_delay_ns)) {
			hm_error_clear(&e);
			hm_error_set(&e, HM_E_CANCELLED, -1,
				     "migration cancelled while waiting to retry (after attempt %u "
				     "of %u)", rep->attempts, p->retries + 1);
			*err = e;
			rep->status = rc = HM_E_CANCELLED;
			break;
		}
	}
	if (rep->stopped && rep->downtime_end == MIG_DOWNTIME_NOT_STOPPED) {
		/* Still paused at the report, nobody resumed it (yet). */
		uint64_t now = hm_now_ns();
		rep->downtime_ns = now - paused_at;
		rep->downtime_end = MIG_DOWNTIME_STILL_PAUSED;
		stopped_total += rep->downtime_ns;
	}
	rep->stopped_total_ns = stopped_total;
	rep->status = rc;
	rep->total_ns = hm_now_ns() - t0;
	rep->throttle = ops->throttle_get ? ops->throttle_get(opaque) : 0;
	rep->htab_shift = hpt_shift(h);
	if ((rc != 0 && rep->guest != MIG_GUEST_PAUSED_DESTINATION_DIVERGED) || !rep->stopped)
		rep->has_root = hpt_root_summary(h, HPT_READ_LOCKED, NULL, NULL, rep->digest,
						 rep->root) == 0;
	hpt_count(h, &rep->htab_valid, &rep->htab_bolted);
	mig_live_end(p->live,
		     rc == 0 ? MIG_RUN_COMPLETED : rc == HM_E_CANCELLED ? MIG_RUN_CANCELLED
								  : MIG_RUN_FAILED,
		     rep->bytes_total, rep->stopped ? rep->downtime_ns : MIG_UNKNOWN);
	return rc;
}
