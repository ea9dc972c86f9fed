/* SPDX-License-Identifier: MIT */
/*
 * The simulated machine (src/machine) as a guest of the controller: its
 * mig_guest_ops_t, and mig_source_run / mig_dest_run, the machine's entry
 * points over mig_source_run_guest / mig_dest_run_guest. The one file of
 * the migration layer that calls machine_*: the controller (source.c,
 * dest.c) reaches a guest only through the ops. Never prints.
 */
#include "mig_int.h"

#include <string.h>

/* ------------------------------------------------------- source guest */

static hpt_t *mg_table(void *o)
{
	return machine_hpt(o);
}

static int mg_pause(void *o, uint64_t timeout_ns, hm_error_t *err)
{
	return machine_pause(o, timeout_ns, err);
}

static int mg_resume(void *o, hm_error_t *err)
{
	(void)err;
	machine_resume(o);
	return 0;
}

static unsigned mg_throttle_get(void *o)
{
	return machine_throttle(o);
}

static void mg_throttle_set(void *o, unsigned percent)
{
	machine_set_throttle(o, percent);
}

static uint64_t mg_entry_changes(void *o)
{
	machine_stats_t ms;
	machine_get_stats(o, &ms);
	return ms.enters + ms.removes + ms.protects + ms.bulk_removes;
}

static void mg_spapr_get(void *o, spapr_state_t *st)
{
	machine_spapr_t ms;
	machine_spapr_get(o, &ms);
	st->guest_timebase = ms.guest_timebase;
	st->time_of_the_day_ns = ms.time_of_the_day_ns;
}

static void mg_spapr_set(void *o, const spapr_state_t *st)
{
	machine_spapr_t ms = {.guest_timebase = st->guest_timebase,
			      .time_of_the_day_ns = st->time_of_the_day_ns};
	machine_spapr_set(o, &ms);
}

static const mig_guest_ops_t machine_ops = {
	.table = mg_table,
	.pause = mg_pause,
	.resume = mg_resume,
	.throttle_get = mg_throttle_get,
	.throttle_set = mg_throttle_set,
	.entry_changes = mg_entry_changes,
	.spapr_get = mg_spapr_get,
	.spapr_set = mg_spapr_set,
};

const mig_guest_ops_t *mig_machine_guest_ops(void)
{
	return &machine_ops;
}

int mig_source_run(machine_t *m, const char *uri, const mig_params_t *p, mig_report_t *rep,
		   hm_error_t *err)
{
	return mig_source_run_guest(&machine_ops, m, uri, p, rep, err);
}

/* -------------------------------------------------- destination guest */

/* A simulated machine made on the table the destination loaded. */
struct machine_dest {
	const machine_config_t *cfg;
	machine_t *m;
};

static int md_adopt_table(void *o, hpt_t *table, hm_error_t *err)
{
	struct machine_dest *md = o;
	machine_config_t gc = *md->cfg;
	gc.htab_shift = 0;
	return machine_create_on(&gc, table, &md->m, err);
}

static void md_spapr_set(void *o, const spapr_state_t *st)
{
	mg_spapr_set(((struct machine_dest *)o)->m, st);
}

static int md_resume(void *o, hm_error_t *err)
{
	return machine_start(((struct machine_dest *)o)->m, err);
}

static const mig_guest_ops_t machine_dest_ops = {
	.resume = md_resume,
	.spapr_set = md_spapr_set,
	.adopt_table = md_adopt_table,
};

int mig_dest_run(mig_listener_t *l, const mig_dest_params_t *p, mig_dest_report_t *rep,
		 hm_error_t *err)
{
	mig_dest_params_t defaults;
	if (!p) {
		mig_dest_params_default(&defaults);
		p = &defaults;
	}
	struct machine_dest md = {.cfg = &p->guest};
	int rc = mig_dest_run_guest(l, &machine_dest_ops, &md, p, rep, err);
	if (!md.m)
		return rc;
	if (rc == 0) {
		/* The guest runs here: the caller's --run, then it stops. */
		uint64_t r0 = hm_now_ns();
		if (p->on_resumed)
			p->on_resumed(p->resumed_opaque, md.m);
		machine_stop(md.m);
		machine_get_stats(md.m, &rep->guest);
		rep->run_ns = hm_now_ns() - r0;
		rep->total_ns += rep->run_ns;
	}
	machine_destroy(md.m);
	return rc;
}
