/* SPDX-License-Identifier: MIT */
/*
 * Private parts of the machine layer: the machine and vCPU structures and
 * the workload entry points. Nothing outside src/machine/ includes this.
 */
#ifndef HPTMIG_MACHINE_INT_H
#define HPTMIG_MACHINE_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include "hptmig/machine.h"

/* Written by one vCPU (relaxed atomics), read by anyone for statistics. */
struct machine_vcpu_stats {
	_Atomic uint64_t hcalls, enters, removes, protects, bulk_removes, reads;
	_Atomic uint64_t evictions, pteg_full, not_found, unexpected, processes;
	_Atomic uint64_t throttled_ns;
};

struct wl_state; /* workload.c */

struct machine_vcpu {
	machine_t *m;
	unsigned id;
	pthread_t thread;
	uint64_t rng;            /* owned by this vCPU's thread (or machine_step's caller) */
	struct wl_state *wl;     /* workload state, owned by this vCPU */
	struct machine_vcpu_stats st;
};

struct machine {
	machine_config_t cfg;    /* immutable after create */
	hpt_t *hpt;              /* owned; hypercalls are thread-safe (hpt.h) */
	struct machine_vcpu *vcpu;
	bool started;            /* controller thread only */

	/*
	 * Pause protocol: pause_req and stop_req are read by vCPUs between
	 * hypercalls without the lock (acquire); they are written and waited on
	 * under `lock`. A vCPU that sees a request takes the lock, counts itself
	 * in npaused (signals paused_cv) and waits on `wake`. machine_pause
	 * returns once npaused == vcpus: then no hypercall is in flight.
	 */
	pthread_mutex_t lock;
	pthread_cond_t wake;      /* vCPUs wait here (pause, rate/throttle sleeps) */
	pthread_cond_t paused_cv; /* the pauser waits here */
	atomic_int pause_req;
	atomic_int stop_req;
	unsigned npaused;         /* under lock */
	uint64_t pause_start;     /* controller thread */
	uint64_t paused_ns_total; /* controller thread */
	atomic_uint throttle;     /* percent 0..99 */
	_Atomic uint64_t rate;    /* hypercalls/s per vCPU (cfg.rate at create) */

	/* Timebase: guest tb = tb_now() + tb_offset while running; frozen
	 * value while paused or not started. Controller thread only. */
	uint64_t tb_offset;
	uint64_t tb_frozen;
	bool tb_is_frozen;
	int64_t tod_base_ns;
};

/* workload.c */
int machine_boot(machine_t *m, hm_error_t *err);
void machine_wl_step(struct machine_vcpu *v);
void machine_wl_free(struct machine_vcpu *v);

static inline uint64_t machine_rand(uint64_t *state)
{
	uint64_t z = (*state += UINT64_C(0x9E3779B97F4A7C15));
	z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
	return z ^ (z >> 31);
}

#define MSTAT_INC(v, f) atomic_fetch_add_explicit(&(v)->st.f, 1, memory_order_relaxed)

#endif
