/* SPDX-License-Identifier: MIT */
/*
 * Embedding hptmig in a VMM: a guest that is not hptmig's simulated machine
 * (its own table from hpt_create, its own "vCPU" thread making hypercalls,
 * its own pause/resume with a mutex and a condition variable) migrates live
 * over a unix socket to a destination guest in the same program (a second
 * thread), through the guest interface (hptmig/guest.h). While it runs, an
 * "operator" thread raises the bandwidth cap (the library behind QMP's
 * migrate-set-parameters). Exits 0 only when the destination resumed with
 * the source's table (block roots equal) and runs it.
 *
 *   cc -std=c11 -o embed embed.c $(pkg-config --cflags --libs hptmig)
 *   ./embed [DIR]        (DIR: where the socket goes; default a fresh /tmp dir)
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hptmig/migration.h>

/* ------------------------------------------------------------ the guest */

struct toy {
	const char *name;
	hpt_t *table;         /* the guest's hashed page table (owned) */
	pthread_mutex_t lock; /* protects pause_req, parked, stop */
	pthread_cond_t cv;
	bool pause_req, parked, stop;
	bool started;         /* the vCPU thread exists (migration thread only) */
	pthread_t vcpu;
	atomic_uint throttle; /* percent of time the vCPU sleeps (auto-converge) */
	_Atomic uint64_t hcalls, changes;
	uint64_t rng;         /* the vCPU's */
	spapr_state_t spapr;  /* the toy's timebase, frozen at the stop */
	uint8_t root[32];     /* block root of the table just before the vCPU ran */
	bool has_root;
};

static uint64_t next_rand(uint64_t *s)
{
	uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

/* One hypercall as a guest kernel would make it: map a page into a random
 * PTEG, change a protection, or unmap. */
static void one_hcall(struct toy *g)
{
	uint64_t r = next_rand(&g->rng);
	uint64_t ptex = r % hpt_slots(g->table);
	long rc;
	switch (r >> 62) {
	case 0:
	case 1:
		rc = hpt_h_enter(g->table, 0, ptex & ~7ull, ((r >> 20) & 0xfff) << 16 | 0x4001, 0x10,
				 NULL);
		break;
	case 2:
		rc = hpt_h_protect(g->table, 0x3, ptex, 0);
		break;
	default:
		rc = hpt_h_remove(g->table, 0, ptex, 0, NULL, NULL);
	}
	atomic_fetch_add_explicit(&g->hcalls, 1, memory_order_relaxed);
	if (rc == H_SUCCESS)
		atomic_fetch_add_explicit(&g->changes, 1, memory_order_relaxed);
}

static void *vcpu_main(void *arg)
{
	struct toy *g = arg;
	for (;;) {
		pthread_mutex_lock(&g->lock);
		while (g->pause_req && !g->stop) { /* park between hypercalls */
			g->parked = true;
			pthread_cond_broadcast(&g->cv);
			pthread_cond_wait(&g->cv, &g->lock);
		}
		g->parked = false;
		bool stop = g->stop;
		pthread_mutex_unlock(&g->lock);
		if (stop)
			return NULL;
		for (int i = 0; i < 64; i++)
			one_hcall(g);
		/* 64 hypercalls take ~10 us here; sleep so a throttle of t % holds */
		unsigned t = atomic_load(&g->throttle);
		struct timespec ts = {0, 50000 + 10000L * t / (100 - t)};
		nanosleep(&ts, NULL);
	}
}

static uint64_t now_tb(void) /* a 512 MHz timebase from the monotonic clock */
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 512000000u + (uint64_t)ts.tv_nsec * 512u / 1000u;
}

/* ------------------------------------------------ the guest's operations */

static hpt_t *toy_table(void *o)
{
	return ((struct toy *)o)->table;
}

static int toy_pause(void *o, uint64_t timeout_ns, hm_error_t *err)
{
	struct toy *g = o;
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += (time_t)(timeout_ns / 1000000000u);
	until.tv_nsec += (long)(timeout_ns % 1000000000u);
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&g->lock);
	g->pause_req = true;
	while (g->started && !g->parked) {
		if (pthread_cond_timedwait(&g->cv, &g->lock, &until) == ETIMEDOUT && !g->parked) {
			g->pause_req = false; /* withdraw: the guest runs on */
			pthread_mutex_unlock(&g->lock);
			return hm_error_set(err, HM_E_TIMEOUT, -1, "%s: the vCPU did not stop",
					    g->name);
		}
	}
	pthread_mutex_unlock(&g->lock);
	g->spapr.guest_timebase = now_tb(); /* frozen while paused */
	return 0;
}

static int toy_resume(void *o, hm_error_t *err)
{
	struct toy *g = o;
	pthread_mutex_lock(&g->lock);
	g->pause_req = false;
	pthread_cond_broadcast(&g->cv);
	pthread_mutex_unlock(&g->lock);
	if (!g->started) { /* a destination: the first run on the adopted table */
		int rc = pthread_create(&g->vcpu, NULL, vcpu_main, g);
		if (rc)
			return hm_error_set(err, -rc, -1, "%s: no vCPU thread: %s", g->name,
					    strerror(rc));
		g->started = true;
	}
	return 0;
}

/* Where QEMU calls its vm-state notifiers. */
static void toy_after_stop(void *o)
{
	printf("%s: vCPU stopped for the final pass\n", ((struct toy *)o)->name);
}

static void toy_before_resume(void *o)
{
	struct toy *g = o;
	/* (a check for this example: what the vCPU starts from) */
	g->has_root = hpt_root(g->table, HPT_READ_LOCKED, g->root) == 0;
	printf("%s: vCPU about to run\n", g->name);
}

static unsigned toy_throttle_get(void *o)
{
	return atomic_load(&((struct toy *)o)->throttle);
}

static void toy_throttle_set(void *o, unsigned percent)
{
	atomic_store(&((struct toy *)o)->throttle, percent > 99 ? 99 : percent);
}

static uint64_t toy_entry_changes(void *o)
{
	return atomic_load_explicit(&((struct toy *)o)->changes, memory_order_relaxed);
}

static void toy_spapr_get(void *o, spapr_state_t *st)
{
	struct toy *g = o;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	st->guest_timebase = g->spapr.guest_timebase;
	st->time_of_the_day_ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void toy_spapr_set(void *o, const spapr_state_t *st)
{
	((struct toy *)o)->spapr = *st;
}

static int toy_adopt_table(void *o, hpt_t *table, hm_error_t *err)
{
	(void)err;
	((struct toy *)o)->table = table; /* ours now: freed by toy_fini */
	return 0;
}

static const mig_guest_ops_t toy_ops = {
	.table = toy_table,
	.pause = toy_pause,
	.resume = toy_resume,
	.after_stop = toy_after_stop,
	.before_resume = toy_before_resume,
	.throttle_get = toy_throttle_get,
	.throttle_set = toy_throttle_set,
	.entry_changes = toy_entry_changes,
	.spapr_get = toy_spapr_get,
	.spapr_set = toy_spapr_set,
	.adopt_table = toy_adopt_table,
};

static void toy_init(struct toy *g, const char *name, hpt_t *table, uint64_t seed)
{
	memset(g, 0, sizeof(*g));
	g->name = name;
	g->table = table;
	g->rng = seed;
	pthread_mutex_init(&g->lock, NULL);
	pthread_cond_init(&g->cv, NULL);
}

static void toy_fini(struct toy *g)
{
	if (g->started) {
		pthread_mutex_lock(&g->lock);
		g->stop = true;
		pthread_cond_broadcast(&g->cv);
		pthread_mutex_unlock(&g->lock);
		pthread_join(g->vcpu, NULL);
	}
	hpt_destroy(g->table);
	pthread_cond_destroy(&g->cv);
	pthread_mutex_destroy(&g->lock);
}

/* ------------------------------------------------- destination, operator */

struct dest {
	mig_listener_t *l;
	struct toy guest;
	mig_dest_params_t p;
	mig_dest_report_t rep;
	hm_error_t err;
	int rc;
};

static void *dest_main(void *arg)
{
	struct dest *d = arg;
	d->rc = mig_dest_run_guest(d->l, &toy_ops, &d->guest, &d->p, &d->rep, &d->err);
	return NULL;
}

/* Once the precopy runs, lift the bandwidth cap (migrate-set-parameters). */
static void *operator_main(void *arg)
{
	mig_live_t *live = arg;
	mig_status_t s;
	for (int i = 0; i < 2000; i++) {
		mig_live_status(live, &s);
		if (s.status == MIG_RUN_ACTIVE && s.transferred > 0)
			break;
		if (s.status >= MIG_RUN_DEVICE)
			return NULL;
		hm_sleep_ns(5000000);
	}
	printf("operator: status %s, %llu bytes sent, cap %llu B/s: lifting the cap\n",
	       mig_run_status_name(s.status), (unsigned long long)s.transferred,
	       (unsigned long long)s.max_bandwidth);
	mig_set_max_bandwidth(live, 0);
	return NULL;
}

static void hex8(const uint8_t *d, char *out)
{
	for (int i = 0; i < 8; i++)
		sprintf(out + 2 * i, "%02x", d[i]);
}

int main(int argc, char **argv)
{
	char dir[] = "/tmp/hptmig-embed-XXXXXX", uri[4200];
	const char *where = argc > 1 ? argv[1] : mkdtemp(dir);
	hm_error_t e;
	hm_error_clear(&e);
	if (!where) {
		perror("mkdtemp");
		return 1;
	}
	snprintf(uri, sizeof(uri), "unix:%s/embed.sock", where);

	/* The source guest: a 1 GiB guest's table (8 MiB), some boot
	 * mappings, then its vCPU running. */
	hpt_config_t hc;
	hpt_config_default(&hc);
	hc.ram_bytes = 1ull << 30;
	hpt_t *t;
	if (hpt_create(hpt_shift_for_ram(hc.ram_bytes), &hc, &t, &e) != 0) {
		fprintf(stderr, "hpt_create: %s\n", e.msg);
		return 1;
	}
	struct toy src;
	toy_init(&src, "source", t, 1);
	for (int i = 0; i < 20000; i++)
		one_hcall(&src);
	hm_error_t re;
	hm_error_clear(&re);
	if (toy_resume(&src, &re) != 0) {
		fprintf(stderr, "%s\n", re.msg);
		return 1;
	}

	/* The destination: listening now, an empty guest waiting for a table. */
	static struct dest d;
	mig_uri_t u;
	pthread_t dt, ot;
	if (mig_uri_parse(uri, &u, &e) != 0 || mig_listen(&u, &d.l, &e) != 0) {
		fprintf(stderr, "%s: %s\n", uri, e.msg);
		return 1;
	}
	toy_init(&d.guest, "destination", NULL, 2);
	mig_dest_params_default(&d.p);
	d.p.ram_bytes = hc.ram_bytes;
	pthread_create(&dt, NULL, dest_main, &d);

	/* The source's run: a slow cap to begin with, changed while it runs. */
	mig_live_t *live;
	if (mig_live_new(&live) != 0)
		return 1;
	mig_params_t p;
	mig_params_default(&p);
	p.max_bandwidth = 256 << 10;
	p.auto_converge = true;
	p.live = live;
	pthread_create(&ot, NULL, operator_main, live);
	mig_report_t rep;
	int rc = mig_source_run_guest(&toy_ops, &src, uri, &p, &rep, &e);
	pthread_join(ot, NULL);
	pthread_join(dt, NULL);
	mig_listener_close(d.l);

	/* The result, checked on the tables themselves: the source's, still
	 * paused, and the destination's as its vCPU started on it. */
	uint8_t rs[32];
	char hs[17] = "", hd[17] = "";
	bool same = rc == 0 && d.rc == 0 && hpt_root(src.table, HPT_READ_LOCKED, rs) == 0 &&
		    d.guest.has_root && memcmp(rs, d.guest.root, 32) == 0 &&
		    memcmp(rs, rep.root, 32) == 0 && memcmp(rs, d.rep.root, 32) == 0;
	hex8(rs, hs);
	hex8(d.guest.root, hd);
	/* The destination's vCPU makes hypercalls (within 5 s: a loaded host
	 * may take a while to schedule a new thread). */
	uint64_t h0 = atomic_load(&d.guest.hcalls);
	bool runs = false;
	for (int i = 0; i < 5000 && d.guest.started && !runs; i++) {
		hm_sleep_ns(1000000);
		runs = atomic_load(&d.guest.hcalls) > h0;
	}
	printf("source: %s, guest %s, %u passes, %llu bytes, downtime %.1f ms, throttle %u %%\n",
	       rc ? e.msg : "ok", mig_guest_state_name(rep.guest), rep.iterations,
	       (unsigned long long)rep.bytes_total, (double)rep.downtime_ns / 1e6, rep.throttle);
	printf("destination: %s, %llu valid entries, timebase %s, vCPU %s\n",
	       d.rc ? d.err.msg : "ok", (unsigned long long)d.rep.htab_valid,
	       d.guest.spapr.guest_timebase == src.spapr.guest_timebase ? "carried over"
									  : "DIFFERS",
	       runs ? "running" : "NOT running");
	printf("result: %s (root %s / %s)\n", same && runs ? "ok" : "FAILED", hs, hd);
	mig_live_free(live);
	toy_fini(&d.guest);
	toy_fini(&src);
	if (argc <= 1)
		rmdir(dir);
	return same && runs && d.guest.spapr.guest_timebase == src.spapr.guest_timebase ? 0 : 1;
}
