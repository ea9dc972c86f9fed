/* SPDX-License-Identifier: MIT */
/*
 * The guest interface (guest.h) with a custom guest that is not the
 * simulated machine: its own table, one "vCPU" thread making hypercalls,
 * its own pause/resume, and ops that log every call. A migration pauses
 * exactly once and calls the hooks in guest.h's order on both ends; a
 * failure after the stop resumes the source guest (before_resume, resume),
 * which keeps running; a pause that fails is not followed by any other op;
 * a guest with only the required ops migrates (throttle 0, dirty rate
 * unknown); missing required ops are refused.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hptmig/migration.h"
#include "testutil.h"
#include "dest_thread.h"

struct tguest {
	hpt_t *h;
	pthread_mutex_t lock;
	pthread_cond_t cv;
	bool pause_req, paused, stop; /* under lock */
	bool has_thread;
	pthread_t vcpu;
	uint64_t rng;
	_Atomic uint64_t hcalls, changes;
	char log[64];      /* one letter per op call, in order */
	unsigned tables;   /* table() calls (not logged) */
	int pause_rc, resume_rc, adopt_rc; /* what those ops answer */
	unsigned throttle;
	spapr_state_t spapr; /* source: what spapr_get gives; dest: what spapr_set got */
	uint8_t root[32];    /* block root of the table at before_resume */
	bool has_root;
};

static void note(struct tguest *g, char c)
{
	size_t n = strlen(g->log);
	if (n + 1 < sizeof(g->log))
		g->log[n] = c;
}

/* The vCPU: H_ENTER into a random PTEG, H_REMOVE of a random slot, until
 * stopped; parks between hypercalls while a pause is requested. */
static void *vcpu_main(void *arg)
{
	struct tguest *g = arg;
	uint64_t slots = hpt_slots(g->h);
	for (;;) {
		pthread_mutex_lock(&g->lock);
		while (g->pause_req && !g->stop) {
			g->paused = true;
			pthread_cond_broadcast(&g->cv);
			pthread_cond_wait(&g->cv, &g->lock);
		}
		g->paused = false;
		bool stop = g->stop;
		pthread_mutex_unlock(&g->lock);
		if (stop)
			break;
		uint64_t r = tu_rand(&g->rng);
		uint64_t ptex = r % slots;
		long rc = (r >> 60) & 1
				  ? hpt_h_remove(g->h, 0, ptex, 0, NULL, NULL)
				  : hpt_h_enter(g->h, 0, ptex & ~7ull, ((r >> 20) & 0xfff) << 16 | 0x4001,
						0x10, NULL);
		atomic_fetch_add(&g->hcalls, 1);
		if (rc == H_SUCCESS)
			atomic_fetch_add(&g->changes, 1);
		if ((r & 63) == 0)
			hm_sleep_ns(20000); /* a guest that also does other things */
	}
	return NULL;
}

/*
 * A guest on the heap: a failed assertion leaves its vCPU thread running
 * on memory no later test reuses (the test's stack would be).
 */
static struct tguest *guest_new(hpt_t *h)
{
	struct tguest *g = calloc(1, sizeof(*g));
	assert_non_null(g);
	g->h = h;
	g->rng = tu_seed("guest_ops");
	pthread_mutex_init(&g->lock, NULL);
	pthread_cond_init(&g->cv, NULL);
	g->spapr.guest_timebase = 0x123456789ull;
	g->spapr.time_of_the_day_ns = 42;
	return g;
}

static int guest_start(struct tguest *g)
{
	g->has_thread = pthread_create(&g->vcpu, NULL, vcpu_main, g) == 0;
	return g->has_thread ? 0 : -1;
}

static void guest_fini(struct tguest *g)
{
	if (g->has_thread) {
		pthread_mutex_lock(&g->lock);
		g->stop = true;
		pthread_cond_broadcast(&g->cv);
		pthread_mutex_unlock(&g->lock);
		pthread_join(g->vcpu, NULL);
	}
	hpt_destroy(g->h);
	pthread_cond_destroy(&g->cv);
	pthread_mutex_destroy(&g->lock);
	free(g);
}

static hpt_t *op_table(void *o)
{
	struct tguest *g = o;
	g->tables++;
	return g->h;
}

static int op_pause(void *o, uint64_t timeout_ns, hm_error_t *err)
{
	struct tguest *g = o;
	(void)timeout_ns;
	note(g, 'P');
	if (g->pause_rc)
		return hm_error_set(err, g->pause_rc, -1, "test guest: pause refused");
	pthread_mutex_lock(&g->lock);
	g->pause_req = true;
	while (g->has_thread && !g->paused)
		pthread_cond_wait(&g->cv, &g->lock);
	pthread_mutex_unlock(&g->lock);
	return 0;
}

static int op_resume(void *o, hm_error_t *err)
{
	struct tguest *g = o;
	note(g, 'R');
	if (g->resume_rc)
		return hm_error_set(err, g->resume_rc, -1, "test guest: resume refused");
	pthread_mutex_lock(&g->lock);
	g->pause_req = false;
	pthread_cond_broadcast(&g->cv);
	pthread_mutex_unlock(&g->lock);
	if (!g->has_thread)
		return guest_start(g) ? hm_error_set(err, -EAGAIN, -1, "no thread") : 0;
	return 0;
}

static void op_after_stop(void *o)
{
	note(o, 's');
}

static void op_before_resume(void *o)
{
	struct tguest *g = o;
	note(g, 'r');
	/* what the vCPU starts from (the destination's runs on it after) */
	g->has_root = g->h && hpt_root(g->h, HPT_READ_LOCKED, g->root) == 0;
}

static unsigned op_throttle_get(void *o)
{
	return ((struct tguest *)o)->throttle;
}

static void op_throttle_set(void *o, unsigned percent)
{
	note(o, 't');
	((struct tguest *)o)->throttle = percent;
}

static uint64_t op_entry_changes(void *o)
{
	return atomic_load(&((struct tguest *)o)->changes);
}

static void op_spapr_get(void *o, spapr_state_t *st)
{
	struct tguest *g = o;
	note(g, 'g');
	st->guest_timebase = g->spapr.guest_timebase;
	st->time_of_the_day_ns = g->spapr.time_of_the_day_ns;
}

static void op_spapr_set(void *o, const spapr_state_t *st)
{
	struct tguest *g = o;
	note(g, 'S');
	g->spapr = *st;
}

static int op_adopt_table(void *o, hpt_t *table, hm_error_t *err)
{
	struct tguest *g = o;
	note(g, 'A');
	g->h = table; /* ours from now on, also on failure */
	if (g->adopt_rc)
		return hm_error_set(err, g->adopt_rc, -1, "test guest: no room for the table");
	return 0;
}

static const mig_guest_ops_t full_ops = {
	.table = op_table,
	.pause = op_pause,
	.resume = op_resume,
	.after_stop = op_after_stop,
	.before_resume = op_before_resume,
	.throttle_get = op_throttle_get,
	.throttle_set = op_throttle_set,
	.entry_changes = op_entry_changes,
	.spapr_get = op_spapr_get,
	.spapr_set = op_spapr_set,
	.adopt_table = op_adopt_table,
};

/* Only what guest.h requires: table, pause, resume (and adopt_table). */
static const mig_guest_ops_t min_ops = {
	.table = op_table,
	.pause = op_pause,
	.resume = op_resume,
	.adopt_table = op_adopt_table,
};

/* A running source guest of 2^shift bytes of table. */
static struct tguest *source_guest(unsigned shift)
{
	hpt_t *h;
	hpt_config_t hc;
	hpt_config_default(&hc);
	hc.ram_bytes = UINT64_C(1) << (shift + 7);
	assert_int_equal(hpt_create(shift, &hc, &h, NULL), 0);
	struct tguest *g = guest_new(h);
	assert_int_equal(guest_start(g), 0);
	hm_sleep_ns(20000000); /* some entries before the migration */
	return g;
}

/* The destination thread, listening on uri, resuming guest g through ops. */
static void dest_start(struct dest_thread *d, struct tguest *g, const char *uri,
		       const mig_guest_ops_t *ops)
{
	dest_thread_listen(d, uri);
	g->spapr.guest_timebase = 0;
	d->ops = ops;
	d->opaque = g;
	dest_thread_run(d);
}

/* One migration between a running source guest and a destination thread. */
struct run {
	char uri[600];
	struct tguest *src, *dst;
	struct dest_thread d;
	mig_params_t p;
	mig_report_t rep;
	hm_error_t e;
	int rc;
};

/* Both guests and the destination's listener; the caller may then change
 * the guests' answers and the params before run_go. */
static void run_begin(struct run *r, const char *name)
{
	memset(r, 0, sizeof(*r));
	snprintf(r->uri, sizeof(r->uri), "unix:%s/%s.sock", tu_tmp, name);
	r->src = source_guest(18);
	r->dst = guest_new(NULL);
	dest_start(&r->d, r->dst, r->uri, &full_ops);
	mig_params_default(&r->p);
	r->p.downtime_limit_ns = 2000000000ull;
	r->p.max_iterations = 3;
	hm_error_clear(&r->e);
}

static void run_go(struct run *r, const mig_guest_ops_t *ops)
{
	r->rc = mig_source_run_guest(ops, r->src, r->uri, &r->p, &r->rep, &r->e);
	dest_thread_join(&r->d);
}

static void run_end(struct run *r)
{
	guest_fini(r->dst);
	guest_fini(r->src);
}

/* A guest's vCPU makes hypercalls (it runs, not paused): within 5 s, as a
 * loaded host may take a while to schedule it. */
static void assert_runs(struct tguest *g)
{
	uint64_t n0 = atomic_load(&g->hcalls);
	for (int i = 0; i < 5000 && atomic_load(&g->hcalls) == n0; i++)
		hm_sleep_ns(1000000);
	assert_true(atomic_load(&g->hcalls) > n0);
}

/* Success: the source pauses once, then after_stop, then spapr_get, and is
 * never resumed; the destination adopts, gets the timebase, resumes. */
static void test_ops_order_success(void **state)
{
	(void)state;
	struct run r;
	run_begin(&r, "ok");
	run_go(&r, &full_ops);
	if (r.rc || r.d.rc)
		fail_msg("source: %s / destination: %s", r.e.msg, r.d.err.msg);
	assert_string_equal(r.src->log, "Psg");
	assert_true(r.src->tables >= 1);
	assert_int_equal(r.rep.guest, MIG_GUEST_RESUMED_ON_DESTINATION);
	assert_true(r.rep.verified && r.d.rep.verified && r.d.rep.resumed);
	assert_memory_equal(r.rep.root, r.d.rep.root, 32);
	/* the destination guest: table, timebase, hook, resume, in order */
	assert_string_equal(r.dst->log, "ASrR");
	assert_int_equal(r.dst->spapr.guest_timebase, 0x123456789ull);
	assert_int_equal(r.dst->spapr.time_of_the_day_ns, 42);
	uint8_t a[32];
	assert_int_equal(hpt_root(r.src->h, HPT_READ_LOCKED, a), 0); /* still paused */
	assert_true(r.dst->has_root);
	assert_memory_equal(a, r.dst->root, 32);
	/* the destination's vCPU runs the table on: it is the caller's now */
	assert_runs(r.dst);
	run_end(&r);
}

/*
 * The destination refuses after the whole stream (its guest cannot adopt
 * the table): the source resumes its guest (before_resume, then resume)
 * and the guest runs on. With a resume that fails as well, the guest is
 * reported still paused and the error says both.
 */
static void refused_at_end(bool resume_fails)
{
	struct run r;
	run_begin(&r, resume_fails ? "refused2" : "refused");
	r.src->resume_rc = resume_fails ? -EIO : 0;
	r.dst->adopt_rc = -ENOMEM;
	run_go(&r, &full_ops);
	assert_int_not_equal(r.rc, 0);
	assert_int_not_equal(r.d.rc, 0);
	assert_false(r.d.rep.resumed);
	assert_string_equal(r.dst->log, "A"); /* no spapr_set, no resume */
	assert_string_equal(r.src->log, "PsgrR");
	assert_true(r.rep.stopped);
	if (resume_fails) {
		assert_int_equal(r.rep.guest, MIG_GUEST_PAUSED_RESUME_FAILED);
		assert_false(r.rep.source_resumed);
		assert_int_equal(r.rep.downtime_end, MIG_DOWNTIME_STILL_PAUSED);
		assert_non_null(strstr(r.e.msg, "resuming the guest on the source failed"));
		assert_non_null(strstr(r.e.msg, "refused"));
		assert_string_equal(mig_guest_state_name(r.rep.guest),
				    "paused-on-source-resume-failed");
		/* (the test's own resume, so the vCPU can be joined) */
		r.src->resume_rc = 0;
		assert_int_equal(op_resume(r.src, NULL), 0);
	} else {
		assert_int_equal(r.rep.guest, MIG_GUEST_RESUMED_ON_SOURCE);
		assert_true(r.rep.source_resumed);
		assert_int_equal(r.rep.downtime_end, MIG_DOWNTIME_SOURCE_RESUMED);
		assert_runs(r.src); /* the source guest runs on */
	}
	run_end(&r);
}

static void test_ops_refused_resumes(void **state)
{
	(void)state;
	refused_at_end(false);
}

static void test_ops_resume_fails(void **state)
{
	(void)state;
	refused_at_end(true);
}

/* A pause that fails: no other op, the guest never stopped, runs on. */
static void test_ops_pause_fails(void **state)
{
	(void)state;
	struct run r;
	run_begin(&r, "nopause");
	r.src->pause_rc = HM_E_TIMEOUT;
	run_go(&r, &full_ops);
	tu_assert_err(&r.e, HM_E_TIMEOUT);
	assert_int_equal(r.rc, HM_E_TIMEOUT);
	assert_non_null(strstr(r.e.msg, "pause refused"));
	assert_string_equal(r.src->log, "P");
	assert_false(r.rep.stopped);
	assert_int_equal(r.rep.guest, MIG_GUEST_RUNNING_ON_SOURCE);
	assert_runs(r.src);
	assert_int_not_equal(r.d.rc, 0);
	assert_string_equal(r.dst->log, "");
	run_end(&r);
}

/*
 * Only the required ops, with auto-converge on and a run handle attached:
 * the migration succeeds, the throttle reads 0, the dirty rate is unknown,
 * the `spapr` section carries zeros.
 */
static void test_ops_minimal(void **state)
{
	(void)state;
	struct run r;
	run_begin(&r, "min");
	r.src->spapr.guest_timebase = 7; /* not asked for: zeros go */
	r.dst->spapr.guest_timebase = 99;
	mig_live_t *live;
	assert_int_equal(mig_live_new(&live), 0);
	r.p.auto_converge = true;
	r.p.live = live;
	run_go(&r, &min_ops);
	if (r.rc || r.d.rc)
		fail_msg("source: %s / destination: %s", r.e.msg, r.d.err.msg);
	assert_string_equal(r.src->log, "P");
	assert_int_equal(r.rep.throttle, 0);
	mig_status_t s;
	mig_live_status(live, &s);
	assert_int_equal(s.status, MIG_RUN_COMPLETED);
	assert_true(s.dirty_rate == MIG_UNKNOWN);
	assert_int_equal(r.dst->spapr.guest_timebase, 0);
	assert_string_equal(r.dst->log, "ASrR");
	mig_live_free(live);
	run_end(&r);
}

/* Missing required ops: refused before anything happens. */
static void test_ops_required(void **state)
{
	(void)state;
	hpt_t *h;
	assert_int_equal(hpt_create(18, NULL, &h, NULL), 0);
	struct tguest *g = guest_new(h);
	mig_guest_ops_t ops = full_ops;
	ops.pause = NULL;
	mig_report_t rep;
	hm_error_t e;
	hm_error_clear(&e);
	assert_int_equal(mig_source_run_guest(&ops, g, "file:/nonexistent/x", NULL, &rep, &e),
			 HM_E_STATE);
	assert_int_equal(rep.status, HM_E_STATE);
	assert_int_equal(mig_source_run_guest(NULL, g, "file:/nonexistent/x", NULL, &rep, &e),
			 HM_E_STATE);
	ops = full_ops;
	ops.adopt_table = NULL;
	mig_dest_report_t drep;
	hm_error_clear(&e);
	assert_int_equal(mig_dest_run_guest(NULL, &ops, g, NULL, &drep, &e), HM_E_STATE);
	assert_non_null(strstr(e.msg, "adopt_table"));
	assert_string_equal(g->log, "");
	guest_fini(g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ops_order_success),
		cmocka_unit_test(test_ops_refused_resumes),
		cmocka_unit_test(test_ops_resume_fails),
		cmocka_unit_test(test_ops_pause_fails),
		cmocka_unit_test(test_ops_minimal),
		cmocka_unit_test(test_ops_required),
	};
	return cmocka_run_group_tests(tests, tu_setup_tmp, tu_teardown_tmp);
}
