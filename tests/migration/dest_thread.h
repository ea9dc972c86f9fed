/* SPDX-License-Identifier: MIT */
/*
 * A destination on its own thread, for the in-process migration tests
 * (test_migration, test_live, test_guest_ops): listen, run mig_dest_run
 * (the simulated machine) or mig_dest_run_guest (ops), join.
 */
#ifndef HPTMIG_TESTS_DEST_THREAD_H
#define HPTMIG_TESTS_DEST_THREAD_H

#include <pthread.h>
#include <string.h>

#include "testutil.h"

#include "hptmig/migration.h"

struct dest_thread {
	mig_listener_t *l;
	const mig_guest_ops_t *ops; /* NULL: the simulated machine */
	void *opaque;               /* the ops' guest */
	mig_dest_params_t p;
	mig_dest_report_t rep;
	hm_error_t err;
	int rc;
	pthread_t t;
};

static inline void *dest_thread_main(void *arg)
{
	struct dest_thread *d = arg;
	d->rc = d->ops ? mig_dest_run_guest(d->l, d->ops, d->opaque, &d->p, &d->rep, &d->err)
		       : mig_dest_run(d->l, &d->p, &d->rep, &d->err);
	return NULL;
}

/* Listen on uri with the default parameters and a 20 s accept timeout;
 * the caller may change d->p, d->ops and d->opaque before
 * dest_thread_run. */
static inline void dest_thread_listen(struct dest_thread *d, const char *uri)
{
	mig_uri_t u;
	memset(d, 0, sizeof(*d));
	assert_int_equal(mig_uri_parse(uri, &u, NULL), 0);
	assert_int_equal(mig_listen(&u, &d->l, NULL), 0);
	mig_dest_params_default(&d->p);
	d->p.accept_timeout_ms = 20000;
}

static inline void dest_thread_run(struct dest_thread *d)
{
	assert_int_equal(pthread_create(&d->t, NULL, dest_thread_main, d), 0);
}

static inline void dest_thread_join(struct dest_thread *d)
{
	pthread_join(d->t, NULL);
	mig_listener_close(d->l);
}

#endif
