/* SPDX-License-Identifier: MIT */
/*
 * The run handle (mig_live_t): setters refuse bad values; a setting made
 * before the run overrides the params'; a bandwidth cap raised from another
 * thread during the run speeds the stream up (true byte counts in the
 * status), a new downtime limit reaches the policy at the next round; the
 * status goes setup, active, then cancelled, and its byte count equals the
 * report's; the destination publishes its side too.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "hptmig/migration.h"
#include "testutil.h"
#include "dest_thread.h"

static void test_live_setters(void **state)
{
	(void)state;
	mig_live_t *l;
	mig_status_t s;
	assert_int_equal(mig_live_new(&l), 0);
	mig_live_status(l, &s);
	assert_int_equal(s.status, MIG_RUN_NONE);
	assert_string_equal(mig_run_status_name(s.status), "none");
	assert_true(s.remaining == MIG_UNKNOWN && s.downtime_ns == MIG_UNKNOWN);
	assert_int_equal(mig_set_downtime_limit(l, 0), HM_E_RANGE);
	assert_int_equal(mig_set_downtime_limit(l, MIG_DOWNTIME_LIMIT_MAX_NS + 1), HM_E_RANGE);
	assert_int_equal(mig_set_downtime_limit(l, 5000000), 0);
	assert_int_equal(mig_set_max_bandwidth(l, 12345), 0);
	mig_live_status(l, &s);
	assert_int_equal(s.downtime_limit_ns, 5000000);
	assert_int_equal(s.max_bandwidth, 12345);
	assert_true(mig_set_max_bandwidth(NULL, 1) < 0);
	mig_live_free(l);
}

/* What the policy saw: the downtime limit of every round. */
struct seen {
	_Atomic uint64_t first_limit, last_limit;
};

static enum mig_policy_answer record_and_continue(void *opaque, const mig_policy_stats_t *st)
{
	struct seen *s = opaque;
	uint64_t zero = 0;
	atomic_compare_exchange_strong(&s->first_limit, &zero, st->downtime_limit_ns);
	atomic_store(&s->last_limit, st->downtime_limit_ns);
	return MIG_POLICY_CONTINUE;
}

struct operator {
	mig_live_t *live;
	mig_cancel_t *cancel;
	struct seen *seen;
	uint64_t slow, fast;     /* bytes/s observed in the status */
	bool limit_reached;      /* the policy saw the new downtime limit */
	enum mig_run_status during;
};

static uint64_t transferred(mig_live_t *l, enum mig_run_status *st)
{
	mig_status_t s;
	mig_live_status(l, &s);
	if (st)
		*st = s.status;
	return s.transferred;
}

static uint64_t rate_over(mig_live_t *l, uint64_t ns)
{
	uint64_t a = transferred(l, NULL), t0 = hm_now_ns();
	hm_sleep_ns(ns);
	uint64_t b = transferred(l, NULL), t1 = hm_now_ns();
	return (uint64_t)((double)(b - a) * 1e9 / (double)(t1 - t0));
}

static void *operator_main(void *arg)
{
	struct operator *o = arg;
	enum mig_run_status st = MIG_RUN_NONE;
	uint64_t t0 = hm_now_ns();
	while ((transferred(o->live, &st) == 0 || st != MIG_RUN_ACTIVE) &&
	       hm_now_ns() - t0 < 20000000000ull)
		hm_sleep_ns(10000000);
	o->during = st;
	o->slow = rate_over(o->live, 500000000);
	mig_set_max_bandwidth(o->live, 2u << 20);
	hm_sleep_ns(100000000);
	o->fast = rate_over(o->live, 300000000);
	mig_set_downtime_limit(o->live, 77000000);
	for (int i = 0; i < 200 && atomic_load(&o->seen->last_limit) != 77000000; i++)
		hm_sleep_ns(10000000);
	o->limit_reached = atomic_load(&o->seen->last_limit) == 77000000;
	mig_cancel_request(o->cancel);
	return NULL;
}

static void test_live_during_run(void **state)
{
	(void)state;
	char uri[600];
	snprintf(uri, sizeof(uri), "unix:%s/live.sock", tu_tmp);
	machine_config_t c;
	machine_t *m;
	machine_config_default(&c);
	c.ram_bytes = 0;
	c.htab_shift = 26; /* 64 MiB: about 2 MiB of valid entries in the first pass */
	c.rate = 1000;
	c.seed = tu_seed("guest");
	assert_int_equal(machine_create(&c, &m, NULL), 0);
	assert_int_equal(machine_start(m, NULL), 0);

	struct dest_thread d;
	dest_thread_listen(&d, uri);
	d.p.ram_bytes = UINT64_C(8) << 30; /* a cap that takes the 2^26 table */
	assert_int_equal(mig_live_new(&d.p.live), 0);
	dest_thread_run(&d);

	struct seen seen = {0};
	mig_params_t p;
	mig_params_default(&p);
	p.max_bandwidth = 64u << 10;
	p.policy = record_and_continue;
	p.policy_opaque = &seen;
	assert_int_equal(mig_cancel_new(&p.cancel), 0);
	assert_int_equal(mig_live_new(&p.live), 0);
	/* set before the run: wins over p.downtime_limit_ns */
	assert_int_equal(mig_set_downtime_limit(p.live, 123000000), 0);
	struct operator o = {.live = p.live, .cancel = p.cancel, .seen = &seen};
	pthread_t ot;
	assert_int_equal(pthread_create(&ot, NULL, operator_main, &o), 0);
	mig_report_t rep;
	hm_error_t e;
	hm_error_clear(&e);
	int rc = mig_source_run(m, uri, &p, &rep, &e);
	pthread_join(ot, NULL);
	dest_thread_join(&d);
	printf("status rate at 64 KiB/s cap: %llu B/s; at 2 MiB/s: %llu B/s\n",
	       (unsigned long long)o.slow, (unsigned long long)o.fast);

	if (rc != HM_E_CANCELLED)
		fail_msg("source: %d %s / destination: %s", rc, e.msg, d.err.msg);
	assert_int_equal(o.during, MIG_RUN_ACTIVE);
	assert_int_equal(atomic_load(&seen.first_limit), 123000000);
	assert_true(o.limit_reached);
	assert_true(o.slow > 0 && o.slow < 2 * (64u << 10));
	assert_true(o.fast > 4 * o.slow);
	mig_status_t s;
	mig_live_status(p.live, &s);
	assert_int_equal(s.status, MIG_RUN_CANCELLED);
	assert_true(s.source);
	assert_int_equal(s.transferred, rep.bytes_total);
	assert_true(rep.bytes_total > 0);
	assert_int_equal(s.max_bandwidth, 2u << 20);
	assert_true(s.downtime_ns == MIG_UNKNOWN); /* never stopped */
	assert_false(machine_paused(m));
	/* the destination: a cut stream, failed; its byte count is its report's */
	mig_live_status(d.p.live, &s);
	assert_false(s.source);
	assert_true(s.status == MIG_RUN_FAILED || s.status == MIG_RUN_CANCELLED);
	assert_int_equal(s.transferred, d.rep.bytes_total);
	mig_live_free(d.p.live);
	mig_live_free(p.live);
	mig_cancel_free(p.cancel);
	machine_destroy(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_live_setters),
		cmocka_unit_test(test_live_during_run),
	};
	return cmocka_run_group_tests(tests, tu_setup_tmp, tu_teardown_tmp);
}
