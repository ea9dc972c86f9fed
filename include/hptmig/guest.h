/* SPDX-License-Identifier: MIT */
/*
 * guest: what the migration controller needs from a guest, as a table of
 * operations a VMM implements: its hashed page table, pause and resume of
 * its vCPUs, hooks around the stop (where QEMU calls its vm-state
 * notifiers), and optional throttle, statistics and `spapr` state. The
 * controller (mig_source_run_guest, mig_dest_run_guest in migration.h)
 * reaches the guest only through these; the simulated machine is one
 * implementation (mig_machine_guest_ops). Types only: nothing here calls
 * anything, and the library never calls an op from a vCPU's hypercall path.
 *
 * Threads: every op is called on the thread running the migration (the
 * caller of mig_*_run_guest), never concurrently with another op of the
 * same run, and never with a library lock held. The guest's vCPU threads
 * may call hpt_* hypercalls on the table at any time except between a
 * successful pause and resume (hpt.h's concurrency contract).
 */
#ifndef HPTMIG_GUEST_H
#define HPTMIG_GUEST_H

#include <stdbool.h>
#include <stdint.h>

#include "hptmig/base.h"
#include "hptmig/hpt.h"
#include "hptmig/machine.h" /* spapr_state_t: the `spapr` section's values */

#ifdef __cplusplus
extern "C" {
#endif

/*
 * A guest, seen by the controller. `opaque` (given beside the ops to every
 * run) is passed as the first argument of every op. R: required on that
 * end; O: optional (NULL), with the behaviour written when absent. An op
 * that fails returns a negative code and fills err with one line; the
 * controller puts it in the run's error (the migration fails safely, as
 * for any other error of that phase).
 */
typedef struct mig_guest_ops {
	/*
	 * Source, R. The guest's table: the one its hypercalls change. Called
	 * once, at the start of the run (NULL refuses it); it must stay the
	 * same hpt_t for the whole run (a guest's resize happens inside it,
	 * hpt_h_resize_*). The controller reads it and tracks changes; it
	 * never frees it.
	 */
	hpt_t *(*table)(void *opaque);
	/*
	 * Source, R. Stop every vCPU at a hypercall boundary (QEMU's
	 * pause_all_vcpus): return 0 once no vCPU is inside an hpt_* call
	 * that changes the table and none will start one until resume. Wait
	 * at most timeout_ns (mig_params_t.pause_timeout_ns); on failure the
	 * guest must be running as before (withdraw the request) and the
	 * migration fails before the stop (the guest never noticed). Called
	 * at most once per attempt, after the controller decided to stop.
	 */
	int (*pause)(void *opaque, uint64_t timeout_ns, hm_error_t *err);
	/*
	 * R on both ends (the destination's unless no_resume). Source: let the
	 * vCPUs run again after a failure once they were paused, when the
	 * destination cannot have resumed the guest (never after a success:
	 * the guest then lives at the destination and stays paused here).
	 * A failure is reported in the run's error and the report says the
	 * guest is still paused on the source. Destination: start the guest on
	 * the adopted table; a failure refuses the stream (REFUSED).
	 */
	int (*resume)(void *opaque, hm_error_t *err);
	/*
	 * O, source. Called right after pause succeeded, before any state is
	 * read (QEMU's vm_state_notify(running=false) after pause_all_vcpus):
	 * e.g. flush a vCPU-side queue of table changes into the table.
	 */
	void (*after_stop)(void *opaque);
	/*
	 * O, both ends. Called right before resume (QEMU's
	 * vm_state_notify(running=true) before resume_all_vcpus); on the
	 * destination after adopt_table and spapr_set.
	 */
	void (*before_resume)(void *opaque);
	/*
	 * O, source: auto-converge (mig_params_t.auto_converge). The percent
	 * (0..99) of wall time the vCPUs are made to sleep. Called between
	 * rounds, not per hypercall. Absent: the throttle reads as 0 and
	 * auto-converge has nothing to raise (the migration still runs).
	 */
	unsigned (*throttle_get)(void *opaque);
	void (*throttle_set)(void *opaque, unsigned percent);
	/*
	 * O, source: statistics. The hypercalls that changed a table entry so
	 * far (H_ENTER, H_REMOVE, H_PROTECT, H_BULK_REMOVE; a monotonic count,
	 * relaxed reads are fine): the status's dirty_rate is its rate over
	 * ~100 ms windows. Called at the start of each precopy, then at most
	 * every 100 ms (after a round) while a mig_live_t is attached.
	 * Absent: dirty_rate is MIG_UNKNOWN.
	 */
	uint64_t (*entry_changes)(void *opaque);
	/*
	 * O, source: the `spapr` section's values, read with the guest paused
	 * (after after_stop): the guest timebase (frozen while paused) and the
	 * host's time of day. *st is zeroed first. Absent: the section
	 * carries zeros.
	 */
	void (*spapr_get)(void *opaque, spapr_state_t *st);
	/*
	 * O, destination: the loaded `spapr` values, before before_resume and
	 * resume, so the guest's timebase continues from the source's.
	 * Absent: ignored.
	 */
	void (*spapr_set)(void *opaque, const spapr_state_t *st);
	/*
	 * Destination, R (unless no_resume). The loaded, verified table: the
	 * guest owns it from this call on (also when it fails) and frees it
	 * with hpt_destroy. Called once, after the whole stream was loaded
	 * and checked, before spapr_set and resume. Not called for a stream
	 * without a table (no-HPT) nor with no_resume.
	 */
	int (*adopt_table)(void *opaque, hpt_t *table, hm_error_t *err);
} mig_guest_ops_t;

#ifdef __cplusplus
}
#endif
#endif
