/* SPDX-License-Identifier: MIT */
/*
 * The simulated pseries machine: table, boot mappings, vCPU threads with a
 * per-vCPU rate and a machine-wide throttle, pause at a hypercall boundary,
 * and the spapr timebase. It never prints, exits, or blocks a vCPU inside a
 * hypercall; a paused machine has no hypercall in flight.
 */
#include "machine_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int machine_workload_parse(const char *s, enum machine_workload *out, hm_error_t *err)
{
	if (s && strcmp(s, "idle") == 0)
		*out = MACHINE_WL_IDLE;
	else if (s && strcmp(s, "uniform") == 0)
		*out = MACHINE_WL_UNIFORM;
	else if (s && strcmp(s, "linux") == 0)
		*out = MACHINE_WL_LINUX;
	else
		return hm_error_set(err, HM_E_FORMAT, -1,
				    "workload '%s' is unknown (idle, uniform or linux)", s ? s : "");
	return 0;
}

const char *machine_workload_name(enum machine_workload w)
{
	switch (w) {
	case MACHINE_WL_IDLE:
		return "idle";
	case MACHINE_WL_UNIFORM:
		return "uniform";
	case MACHINE_WL_LINUX:
		return "linux";
	}
	return "?";
}

void machine_config_default(machine_config_t *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->ram_bytes = UINT64_C(512) << 20;
	cfg->vcpus = 1;
	cfg->workload = MACHINE_WL_LINUX;
	cfg->seed = 1;
}

/* 512 MHz timebase, as on POWER. */
static uint64_t tb_now(void)
{
	uint64_t ns = hm_now_ns();
	return ns / 1000000000u * 512000000u + (ns % 1000000000u) * 512u / 1000u;
}

static int check_config(const machine_config_t *cfg, hm_error_t *err)
{
	if (cfg->vcpus < 1 || cfg->vcpus > MACHINE_VCPUS_MAX)
		return hm_error_set(err, HM_E_RANGE, -1, "vcpus %u out of range 1..%u", cfg->vcpus,
				    MACHINE_VCPUS_MAX);
	if (cfg->workload > MACHINE_WL_LINUX)
		return hm_error_set(err, HM_E_RANGE, -1, "workload %d unknown", (int)cfg->workload);
	if (cfg->rate > UINT64_C(1000000000))
		return hm_error_set(err, HM_E_RANGE, -1,
				    "rate %llu hypercalls/s per vCPU exceeds 1e9",
				    (unsigned long long)cfg->rate);
	return 0;
}

static int machine_alloc(const machine_config_t *cfg, hpt_t *table, machine_t **out,
			 hm_error_t *err)
{
	machine_t *m = calloc(1, sizeof(*m));
	if (!m) {
		hpt_destroy(table);
		return hm_error_set(err, -ENOMEM, -1, "out of memory");
	}
	m->cfg = *cfg;
	m->hpt = table;
	m->cfg.htab_shift = hpt_shift(table);
	if (m->cfg.ram_bytes == 0)
		m->cfg.ram_bytes = UINT64_C(1) << (hpt_shift(table) + 7);
	pthread_mutex_init(&m->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&m->wake, &ca);
	pthread_cond_init(&m->paused_cv, &ca);
	pthread_condattr_destroy(&ca);
	m->vcpu = calloc(m->cfg.vcpus, sizeof(*m->vcpu));
	if (!m->vcpu) {
		machine_destroy(m);
		return hm_error_set(err, -ENOMEM, -1, "out of memory");
	}
	for (unsigned i = 0; i < m->cfg.vcpus; i++) {
		m->vcpu[i].m = m;
		m->vcpu[i].id = i;
		/* Distinct, reproducible streams per vCPU. */
		m->vcpu[i].rng = m->cfg.seed * UINT64_C(0x9E3779B97F4A7C15) + i * UINT64_C(0xD1B54A32D192ED03) + 1;
	}
	atomic_store(&m->rate, m->cfg.rate);
	m->tb_offset = 0;
	m->tb_frozen = 0;
	m->tod_base_ns = 0;
	*out = m;
	return 0;
}

int machine_create(const machine_config_t *cfg, machine_t **out, hm_error_t *err)
{
	int rc = check_config(cfg, err);
	if (rc)
		return rc;
	unsigned shift = cfg->htab_shift;
	uint64_t ram = cfg->ram_bytes;
	if (shift == 0) {
		if (ram == 0)
			return hm_error_set(err, HM_E_RANGE, -1, "neither RAM size nor htab shift given");
		shift = hpt_shift_for_ram(ram);
	}
	if (ram == 0 && shift < 57)
		ram = UINT64_C(1) << (shift + 7);
	hpt_config_t hc;
	hpt_config_default(&hc);
	hc.ram_bytes = ram;
	hpt_t *h = NULL;
	rc = hpt_create(shift, &hc, &h, err);
	if (rc)
		return rc;
	machine_config_t c = *cfg;
	c.ram_bytes = ram;
	rc = machine_alloc(&c, h, out, err);
	if (rc)
		return rc;
	rc = machine_boot(*out, err);
	if (rc) {
		machine_destroy(*out);
		*out = NULL;
	}
	return rc;
}

int machine_create_on(const machine_config_t *cfg, hpt_t *table, machine_t **out,
		      hm_error_t *err)
{
	int rc = check_config(cfg, err);
	if (rc) {
		hpt_destroy(table);
		return rc;
	}
	return machine_alloc(cfg, table, out, err);
}

void machine_destroy(machine_t *m)
{
	if (!m)
		return;
	machine_stop(m);
	if (m->vcpu)
		for (unsigned i = 0; i < m->cfg.vcpus; i++)
			machine_wl_free(&m->vcpu[i]);
	free(m->vcpu);
	hpt_destroy(m->hpt);
	pthread_cond_destroy(&m->wake);
	pthread_cond_destroy(&m->paused_cv);
	pthread_mutex_destroy(&m->lock);
	free(m);
}

hpt_t *machine_hpt(machine_t *m)
{
	return m->hpt;
}

const machine_config_t *machine_config(const machine_t *m)
{
	return &m->cfg;
}

/* ------------------------------------------------------------ vCPU loop */

static void abs_deadline(struct timespec *ts, uint64_t ns_from_now)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	uint64_t nsec = (uint64_t)ts->tv_nsec + ns_from_now % 1000000000u;
	ts->tv_sec += (time_t)(ns_from_now / 1000000000u + nsec / 1000000000u);
	ts->tv_nsec = (long)(nsec % 1000000000u);
}

/*
 * Park at a hypercall boundary while a pause is requested. Called with
 * m->lock held; returns with it held.
 */
static void park_locked(machine_t *m)
{
	m->npaused++;
	pthread_cond_broadcast(&m->paused_cv);
	while (atomic_load(&m->pause_req) && !atomic_load(&m->stop_req))
		pthread_cond_wait(&m->wake, &m->lock);
	m->npaused--;
}

/*
 * Sleep until hm_now_ns() reaches `until`, but wake at once for a pause or
 * stop request (a pause is then honoured before returning).
 */
static void vcpu_sleep_until(machine_t *m, uint64_t until)
{
	pthread_mutex_lock(&m->lock);
	for (;;) {
		if (atomic_load(&m->stop_req))
			break;
		if (atomic_load(&m->pause_req)) {
			park_locked(m);
			continue;
		}
		uint64_t now = hm_now_ns();
		if (now >= until)
			break;
		struct timespec ts;
		abs_deadline(&ts, until - now);
		pthread_cond_timedwait(&m->wake, &m->lock, &ts);
	}
	pthread_mutex_unlock(&m->lock);
}

static void *vcpu_main(void *arg)
{
	struct machine_vcpu *v = arg;
	machine_t *m = v->m;
	uint64_t next = hm_now_ns();
	uint64_t run_start = next;
	for (;;) {
		if (atomic_load_explicit(&m->pause_req, memory_order_acquire) ||
		    atomic_load_explicit(&m->stop_req, memory_order_acquire)) {
			pthread_mutex_lock(&m->lock);
			if (atomic_load(&m->pause_req) && !atomic_load(&m->stop_req))
				park_locked(m);
			pthread_mutex_unlock(&m->lock);
			if (atomic_load(&m->stop_req))
				break;
			next = hm_now_ns();
			run_start = next;
		}
		if (m->cfg.workload == MACHINE_WL_IDLE) {
			/* An idle guest issues no hypercalls: sleep until asked. */
			vcpu_sleep_until(m, hm_now_ns() + 100000000u);
			continue;
		}
		machine_wl_step(v);
		uint64_t now = hm_now_ns();
		unsigned thr = atomic_load_explicit(&m->throttle, memory_order_relaxed);
		if (thr > 0 && now - run_start >= 5000000u) {
			/* Sleep so that sleeping is thr% of wall time. */
			uint64_t ran = now - run_start;
			uint64_t nap = ran * thr / (100u - thr);
			vcpu_sleep_until(m, now + nap);
			atomic_fetch_add_explicit(&v->st.throttled_ns, nap, memory_order_relaxed);
			run_start = hm_now_ns();
			next = run_start > next ? run_start : next;
		}
		uint64_t rate = atomic_load_explicit(&m->rate, memory_order_relaxed);
		if (rate > 0) {
			next += 1000000000u / rate;
			if (next > now)
				vcpu_sleep_until(m, next);
			else if (now - next > 1000000000u)
				next = now; /* do not burst to catch up after a long stall */
		}
	}
	return NULL;
}

int machine_start(machine_t *m, hm_error_t *err)
{
	if (m->started)
		return hm_error_set(err, HM_E_STATE, -1, "machine already started");
	atomic_store(&m->stop_req, 0);
	atomic_store(&m->pause_req, 0);
	/* The timebase runs while the guest runs. */
	if (m->tb_is_frozen) {
		m->tb_offset = m->tb_frozen - tb_now();
		m->tb_is_frozen = false;
	}
	for (unsigned i = 0; i < m->cfg.vcpus; i++) {
		int rc = pthread_create(&m->vcpu[i].thread, NULL, vcpu_main, &m->vcpu[i]);
		if (rc != 0) {
			atomic_store(&m->stop_req, 1);
			pthread_mutex_lock(&m->lock);
			pthread_cond_broadcast(&m->wake);
			pthread_mutex_unlock(&m->lock);
			for (unsigned j = 0; j < i; j++)
				pthread_join(m->vcpu[j].thread, NULL);
			return hm_error_set(err, -rc, -1, "cannot start vCPU thread %u: %s", i,
					    strerror(rc));
		}
	}
	m->started = true;
	return 0;
}

void machine_stop(machine_t *m)
{
	if (!m->started)
		return;
	pthread_mutex_lock(&m->lock);
	atomic_store(&m->stop_req, 1);
	pthread_cond_broadcast(&m->wake);
	pthread_mutex_unlock(&m->lock);
	for (unsigned i = 0; i < m->cfg.vcpus; i++)
		pthread_join(m->vcpu[i].thread, NULL);
	m->started = false;
	if (atomic_load(&m->pause_req)) {
		atomic_store(&m->pause_req, 0);
		m->paused_ns_total += hm_now_ns() - m->pause_start;
	}
}

bool machine_running(const machine_t *m)
{
	return m->started;
}

int machine_pause(machine_t *m, uint64_t timeout_ns, hm_error_t *err)
{
	if (!m->started || atomic_load(&m->pause_req))
		goto frozen;
	pthread_mutex_lock(&m->lock);
	atomic_store(&m->pause_req, 1);
	pthread_cond_broadcast(&m->wake);
	struct timespec ts;
	abs_deadline(&ts, timeout_ns);
	while (m->npaused < m->cfg.vcpus) {
		if (pthread_cond_timedwait(&m->paused_cv, &m->lock, &ts) == ETIMEDOUT &&
		    m->npaused < m->cfg.vcpus) {
			unsigned n = m->npaused;
			atomic_store(&m->pause_req, 0);
			pthread_cond_broadcast(&m->wake);
			pthread_mutex_unlock(&m->lock);
			return hm_error_set(err, HM_E_TIMEOUT, -1,
					    "pause: only %u of %u vCPUs stopped within %llu ms", n,
					    m->cfg.vcpus, (unsigned long long)(timeout_ns / 1000000u));
		}
	}
	m->pause_start = hm_now_ns();
	pthread_mutex_unlock(&m->lock);
frozen:
	if (!m->tb_is_frozen) {
		m->tb_frozen = tb_now() + m->tb_offset;
		m->tb_is_frozen = true;
	}
	return 0;
}

void machine_resume(machine_t *m)
{
	if (m->tb_is_frozen && m->started) {
		m->tb_offset = m->tb_frozen - tb_now();
		m->tb_is_frozen = false;
	}
	if (!m->started || !atomic_load(&m->pause_req))
		return;
	pthread_mutex_lock(&m->lock);
	m->paused_ns_total += hm_now_ns() - m->pause_start;
	atomic_store(&m->pause_req, 0);
	pthread_cond_broadcast(&m->wake);
	pthread_mutex_unlock(&m->lock);
}

bool machine_paused(const machine_t *m)
{
	return m->started && atomic_load(&((machine_t *)(uintptr_t)m)->pause_req) != 0;
}

void machine_set_throttle(machine_t *m, unsigned percent)
{
	if (percent > 99)
		percent = 99;
	atomic_store(&m->throttle, percent);
}

void machine_set_rate(machine_t *m, uint64_t rate)
{
	atomic_store(&m->rate, rate);
	m->cfg.rate = rate; /* reported configuration follows */
}

unsigned machine_throttle(const machine_t *m)
{
	return atomic_load(&((machine_t *)(uintptr_t)m)->throttle);
}

void machine_get_stats(const machine_t *m, machine_stats_t *out)
{
	memset(out, 0, sizeof(*out));
	for (unsigned i = 0; i < m->cfg.vcpus; i++) {
		const struct machine_vcpu_stats *s = &m->vcpu[i].st;
#define SUM(f) out->f += atomic_load_explicit(&((struct machine_vcpu_stats *)(uintptr_t)s)->f, memory_order_relaxed)
		SUM(hcalls);
		SUM(enters);
		SUM(removes);
		SUM(protects);
		SUM(bulk_removes);
		SUM(reads);
		SUM(evictions);
		SUM(pteg_full);
		SUM(not_found);
		SUM(unexpected);
		SUM(processes);
		SUM(throttled_ns);
#undef SUM
	}
	out->paused_ns = m->paused_ns_total;
}

void machine_spapr_get(const machine_t *m, machine_spapr_t *out)
{
	out->guest_timebase = m->tb_is_frozen ? m->tb_frozen : tb_now() + m->tb_offset;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	out->time_of_the_day_ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void machine_spapr_set(machine_t *m, const machine_spapr_t *in)
{
	/* The guest sees its timebase continue from the source's value. */
	m->tb_frozen = in->guest_timebase;
	m->tb_is_frozen = true;
	if (m->started && !atomic_load(&m->pause_req)) {
		m->tb_offset = m->tb_frozen - tb_now();
		m->tb_is_frozen = false;
	}
}

void machine_step(machine_t *m, unsigned vcpu, uint64_t n)
{
	if (vcpu >= m->cfg.vcpus || m->cfg.workload == MACHINE_WL_IDLE)
		return;
	struct machine_vcpu *v = &m->vcpu[vcpu];
	uint64_t end = atomic_load(&v->st.hcalls) + n;
	while (atomic_load(&v->st.hcalls) < end)
		machine_wl_step(v);
}
