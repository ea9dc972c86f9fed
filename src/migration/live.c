/* SPDX-License-Identifier: MIT */
/*
 * The run handle (mig_live_t): settings changed while a migration runs
 * (bandwidth cap, downtime limit) and the latest status snapshot, shared
 * between the run's thread and any other (a QMP control socket, a status
 * printer). One mutex protects every field; it is never held across I/O
 * or a sleep, so a caller never waits on the migration. It never prints.
 */
#include "mig_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct mig_live {
	pthread_mutex_t lock; /* protects every field below */
	mig_status_t st;      /* the latest snapshot; settings in st.max_bandwidth and
			       * st.downtime_limit_ns */
	bool bw_set, dl_set;  /* a setter ran before the run began: it wins over params */
	uint64_t t0;          /* start of the run (for total_ns while it goes) */
	mig_file_t *file;     /* the source's stream while rate-limited, or NULL */
};

int mig_live_new(mig_live_t **out)
{
	mig_live_t *l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	pthread_mutex_init(&l->lock, NULL);
	l->st.status = MIG_RUN_NONE;
	l->st.remaining = l->st.total = l->st.dirty_rate = MIG_UNKNOWN;
	l->st.expected_downtime_ns = l->st.setup_ns = l->st.total_ns = MIG_UNKNOWN;
	l->st.downtime_ns = MIG_UNKNOWN;
	*out = l;
	return 0;
}

void mig_live_free(mig_live_t *l)
{
	if (!l)
		return;
	pthread_mutex_destroy(&l->lock);
	free(l);
}

const char *mig_run_status_name(enum mig_run_status s)
{
	switch (s) {
	case MIG_RUN_NONE:
		return "none";
	case MIG_RUN_SETUP:
		return "setup";
	case MIG_RUN_ACTIVE:
		return "active";
	case MIG_RUN_DEVICE:
		return "device";
	case MIG_RUN_COMPLETED:
		return "completed";
	case MIG_RUN_FAILED:
		return "failed";
	case MIG_RUN_CANCELLED:
		return "cancelled";
	}
	return "none";
}

int mig_set_max_bandwidth(mig_live_t *l, uint64_t bytes_per_second)
{
	if (!l)
		return -EINVAL;
	pthread_mutex_lock(&l->lock);
	l->st.max_bandwidth = bytes_per_second;
	l->bw_set = true;
	/* A rate wait in progress re-reads the limit every 10 ms: a raised
	 * cap must not sit out a wait computed for the old one. */
	if (l->file)
		mig_file_set_rate_limit(l->file, bytes_per_second);
	pthread_mutex_unlock(&l->lock);
	return 0;
}

int mig_set_downtime_limit(mig_live_t *l, uint64_t ns)
{
	if (!l)
		return -EINVAL;
	if (ns == 0 || ns > MIG_DOWNTIME_LIMIT_MAX_NS)
		return HM_E_RANGE;
	pthread_mutex_lock(&l->lock);
	l->st.downtime_limit_ns = ns;
	l->dl_set = true;
	pthread_mutex_unlock(&l->lock);
	return 0;
}

void mig_live_status(mig_live_t *l, mig_status_t *out)
{
	pthread_mutex_lock(&l->lock);
	*out = l->st;
	if (out->status == MIG_RUN_SETUP || out->status == MIG_RUN_ACTIVE ||
	    out->status == MIG_RUN_DEVICE)
		out->total_ns = hm_now_ns() - l->t0;
	pthread_mutex_unlock(&l->lock);
}

void mig_live_begin(mig_live_t *l, bool source, uint64_t bw, uint64_t dl_ns)
{
	if (!l)
		return;
	pthread_mutex_lock(&l->lock);
	uint64_t keep_bw = l->bw_set ? l->st.max_bandwidth : bw;
	uint64_t keep_dl = l->dl_set ? l->st.downtime_limit_ns : dl_ns;
	memset(&l->st, 0, sizeof(l->st));
	l->st.status = MIG_RUN_SETUP;
	l->st.source = source;
	l->st.max_bandwidth = source ? keep_bw : 0;
	l->st.downtime_limit_ns = source ? keep_dl : 0;
	l->st.remaining = l->st.total = l->st.dirty_rate = MIG_UNKNOWN;
	l->st.expected_downtime_ns = l->st.setup_ns = MIG_UNKNOWN;
	l->st.downtime_ns = MIG_UNKNOWN;
	l->bw_set = l->dl_set = false;
	l->t0 = hm_now_ns();
	pthread_mutex_unlock(&l->lock);
}

void mig_live_settings(mig_live_t *l, uint64_t *bw, uint64_t *dl_ns)
{
	if (!l)
		return;
	pthread_mutex_lock(&l->lock);
	*bw = l->st.max_bandwidth;
	*dl_ns = l->st.downtime_limit_ns;
	pthread_mutex_unlock(&l->lock);
}

void mig_live_attach_file(mig_live_t *l, mig_file_t *f)
{
	if (!l)
		return;
	pthread_mutex_lock(&l->lock);
	l->file = f;
	if (f)
		mig_file_set_rate_limit(f, l->st.max_bandwidth);
	pthread_mutex_unlock(&l->lock);
}

void mig_live_publish(mig_live_t *l, const mig_status_t *s)
{
	if (!l)
		return;
	pthread_mutex_lock(&l->lock);
	mig_status_t keep = l->st;
	l->st = *s;
	/* the settings and the side belong to the handle, not the publisher */
	l->st.source = keep.source;
	l->st.max_bandwidth = keep.max_bandwidth;
	l->st.downtime_limit_ns = keep.downtime_limit_ns;
	pthread_mutex_unlock(&l->lock);
}

void mig_live_end(mig_live_t *l, enum mig_run_status status, uint64_t transferred,
		  uint64_t downtime_ns)
{
	if (!l)
		return;
	pthread_mutex_lock(&l->lock);
	l->st.status = status;
	l->st.transferred = transferred;
	l->st.downtime_ns = downtime_ns;
	l->st.total_ns = hm_now_ns() - l->t0;
	if (status == MIG_RUN_COMPLETED)
		l->st.remaining = 0;
	l->file = NULL;
	pthread_mutex_unlock(&l->lock);
}
