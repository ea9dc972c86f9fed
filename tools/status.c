/* SPDX-License-Identifier: MIT */
/*
 * Status of a running command in QEMU's query-migrate names and units
 * (docs/json-schema.md): the JSON of a snapshot, the --status-interval
 * thread printing one {"event":"status",...} line per interval on stdout,
 * and the provider over a library run (mig_live_t). Unknown values are
 * JSON null, never a made-up number.
 */
#include "control.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tool.h"

/* ------------------------------------------------------------- provider */

static void live_status(void *opaque, mig_status_t *out)
{
	struct ctl_live *cl = opaque;
	mig_live_status(cl->live, out);
	out->source = cl->source; /* (also before the run has begun) */
}

static int live_set_param(void *opaque, const char *name, uint64_t value, char *msg, size_t len)
{
	struct ctl_live *cl = opaque;
	if (!cl->source) {
		snprintf(msg, len, "Parameter '%s' applies to the source of a migration only", name);
		return -1;
	}
	if (strcmp(name, "max-bandwidth") == 0)
		return mig_set_max_bandwidth(cl->live, value);
	if (strcmp(name, "downtime-limit") == 0) {
		if (value == 0 || value > MIG_DOWNTIME_LIMIT_MAX_NS / 1000000u) {
			snprintf(msg, len,
				 "Parameter 'downtime-limit' expects an integer in the range of 1 to "
				 "%llu ms",
				 (unsigned long long)(MIG_DOWNTIME_LIMIT_MAX_NS / 1000000u));
			return -1;
		}
		return mig_set_downtime_limit(cl->live, value * 1000000u);
	}
	snprintf(msg, len, "Parameter '%s' is unexpected", name);
	return -1;
}

static void live_cancel(void *opaque)
{
	struct ctl_live *cl = opaque;
	mig_cancel_request(cl->cancel);
}

void ctl_provider_live(struct ctl_provider *pv, struct ctl_live *cl)
{
	*pv = (struct ctl_provider){.status = live_status, .set_param = live_set_param,
				    .cancel = live_cancel, .opaque = cl};
}

/* ----------------------------------------------------------------- JSON */

static json_t *count_or_null(uint64_t v)
{
	return v == MIG_UNKNOWN ? json_null() : json_integer((json_int_t)v);
}

/* ns to whole ms (QEMU's unit for every time in MigrationInfo). */
static json_t *ms_or_null(uint64_t ns)
{
	return ns == MIG_UNKNOWN ? json_null() : json_integer((json_int_t)(ns / 1000000u));
}

json_t *ctl_status_json(const mig_status_t *s, bool nested)
{
	json_t *o = json_object();
	json_t *ram = nested ? json_object() : o;
	bool known = s->status != MIG_RUN_NONE;
	json_object_set_new(o, "status", json_string(mig_run_status_name(s->status)));
	json_object_set_new(o, "side", json_string(s->source ? "source" : "destination"));
	json_object_set_new(ram, "transferred", known ? json_integer((json_int_t)s->transferred)
						       : json_null());
	json_object_set_new(ram, "remaining", count_or_null(s->remaining));
	json_object_set_new(ram, "total", count_or_null(s->total));
	/* QEMU's mbps: megabits (10^6) per second, a number */
	json_object_set_new(ram, "mbps",
			    known && s->bandwidth ? json_real((double)s->bandwidth * 8 / 1e6)
						  : json_null());
	json_object_set_new(ram, "dirty-pages-rate", count_or_null(s->dirty_rate));
	json_object_set_new(ram, "dirty-sync-count",
			    known && s->source ? json_integer(s->iterations) : json_null());
	if (nested)
		json_object_set_new(o, "ram", ram);
	json_object_set_new(o, "expected-downtime", ms_or_null(s->expected_downtime_ns));
	json_object_set_new(o, "setup-time", ms_or_null(s->setup_ns));
	json_object_set_new(o, "total-time", known ? ms_or_null(s->total_ns) : json_null());
	json_object_set_new(o, "downtime", ms_or_null(s->downtime_ns));
	json_object_set_new(o, "cpu-throttle-percentage",
			    known && s->source ? json_integer(s->throttle) : json_null());
	json_object_set_new(o, "max-bandwidth",
			    s->source ? json_integer((json_int_t)s->max_bandwidth) : json_null());
	json_object_set_new(o, "downtime-limit",
			    s->source ? json_integer((json_int_t)(s->downtime_limit_ns / 1000000u))
				      : json_null());
	return o;
}

json_t *ctl_provider_json(const struct ctl_provider *pv, mig_status_t *s, bool nested)
{
	pv->status(pv->opaque, s);
	json_t *o = ctl_status_json(s, nested);
	if (pv->side)
		json_object_set_new(o, "side", json_string(pv->side));
	return o;
}

/* ---------------------------------------------------------- the printer */

static struct {
	pthread_t thread;
	bool running;
	pthread_mutex_t lock; /* protects stop; with cond, the thread's sleep */
	pthread_cond_t cond;
	bool stop;
	unsigned interval_ms;
	struct ctl_provider pv;
} st = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void print_status_line(void)
{
	mig_status_t s;
	json_t *body = ctl_provider_json(&st.pv, &s, false);
	if (s.status == MIG_RUN_NONE) {
		json_decref(body);
		return; /* nothing runs yet */
	}
	json_t *o = json_object();
	json_object_set_new(o, "event", json_string("status"));
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	json_t *ts = json_object(); /* as a QMP event's */
	json_object_set_new(ts, "seconds", json_integer((json_int_t)now.tv_sec));
	json_object_set_new(ts, "microseconds", json_integer((json_int_t)(now.tv_nsec / 1000)));
	json_object_set_new(o, "timestamp", ts);
	json_object_update(o, body);
	json_decref(body);
	char *line = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII | JSON_REAL_PRECISION(9));
	json_decref(o);
	if (line) {
		/* one write per line: never interleaved with another line */
		flockfile(stdout);
		fputs(line, stdout);
		fputc('\n', stdout);
		fflush(stdout);
		funlockfile(stdout);
		free(line);
	}
}

static void *status_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&st.lock);
	while (!st.stop) {
		struct timespec t;
		clock_gettime(CLOCK_MONOTONIC, &t);
		uint64_t ns = (uint64_t)t.tv_nsec + (uint64_t)st.interval_ms * 1000000u;
		t.tv_sec += (time_t)(ns / 1000000000u);
		t.tv_nsec = (long)(ns % 1000000000u);
		int rc = 0;
		while (!st.stop && rc != ETIMEDOUT)
			rc = pthread_cond_timedwait(&st.cond, &st.lock, &t);
		if (st.stop)
			break;
		pthread_mutex_unlock(&st.lock);
		print_status_line();
		pthread_mutex_lock(&st.lock);
	}
	pthread_mutex_unlock(&st.lock);
	return NULL;
}

int status_start(unsigned interval_ms, const struct ctl_provider *pv)
{
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&st.cond, &ca);
	pthread_condattr_destroy(&ca);
	st.pv = *pv;
	st.interval_ms = interval_ms;
	st.stop = false;
	if (pthread_create(&st.thread, NULL, status_main, NULL) != 0) {
		pthread_cond_destroy(&st.cond);
		return -1;
	}
	st.running = true;
	return 0;
}

void status_stop(void)
{
	if (!st.running)
		return;
	pthread_mutex_lock(&st.lock);
	st.stop = true;
	pthread_cond_signal(&st.cond);
	pthread_mutex_unlock(&st.lock);
	pthread_join(st.thread, NULL);
	pthread_cond_destroy(&st.cond);
	st.running = false;
	print_status_line(); /* the final status: completed, failed or cancelled */
}
