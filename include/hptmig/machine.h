/* SPDX-License-Identifier: MIT */
/*
 * machine: the simulated pseries guest as far as migration goes: its hashed
 * page table (an hpt_t), the `spapr` machine state (timebase), vCPU threads
 * issuing hypercalls from a workload (idle, uniform, linux), pause at a
 * hypercall boundary, resume, and a throttle. It never prints or exits; a
 * hypercall answer the workload did not expect is counted (machine_stats
 * .unexpected), never fatal.
 */
#ifndef HPTMIG_MACHINE_H
#define HPTMIG_MACHINE_H

#include <stdbool.h>
#include <stdint.h>

#include "hptmig/base.h"
#include "hptmig/hpt.h"
#include "hptmig/savevm.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------- spapr vmstate */

/*
 * The `spapr` machine section (instance 0, version 3, minimum 1), as QEMU
 * sends it (wire-format.md §3):
 *   v1: be32 next_irq, be64 rtc_offset
 *   v2: v1 + timebase (be64 guest_timebase, be64 time_of_the_day_ns)
 *   v3: timebase only (vmdesc: field "tb", struct "timebase")
 * Loading an older version leaves the fields it lacks unchanged.
 */
typedef struct spapr_state {
	uint64_t rtc_offset;
	uint32_t next_irq;
	uint64_t guest_timebase;
	int64_t time_of_the_day_ns;
} spapr_state_t;

#define SPAPR_SECTION_IDSTR "spapr"
#define SPAPR_SECTION_VERSION 3u
#define SPAPR_SECTION_MIN_VERSION 1u
extern const vmstate_desc_t machine_spapr_vmsd;
/* Register `spapr` instance 0 over *s. */
int machine_spapr_register(savevm_registry_t *r, spapr_state_t *s, hm_error_t *err);

/*
 * `spapr` with QEMU's optional subsections, for reading (and re-writing
 * byte for byte) the section of a real QEMU stream. machine_spapr_register
 * refuses them as unknown; this variant knows the ones QEMU 7.2 to 10 send
 * on pseries: spapr_option_vector_ov5_cas, spapr_patb_entry, every
 * spapr/cap/<name> ("mig.caps[0x0N]"), spapr_dtb, spapr_fwnmi. It still
 * refuses spapr_pending_events and spapr_irq_map (HM_E_UNKNOWN).
 * A subsection is sent when its bit is set in `present`; loading sets the
 * bit of each one received. `fdt_blob` is allocated by the loader (at most
 * SPAPR_QEMU_FDT_MAX bytes): free it with spapr_qemu_state_release().
 */
#define SPAPR_QEMU_OV5_CAS 0x1u
#define SPAPR_QEMU_PATB 0x2u
#define SPAPR_QEMU_DTB 0x4u
#define SPAPR_QEMU_FWNMI 0x8u
#define SPAPR_QEMU_NCAPS 14
#define SPAPR_QEMU_CAP(n) (1u << (8 + (n))) /* n: QEMU's SPAPR_CAP_* number, 0..13 */
#define SPAPR_QEMU_FDT_MAX (1u << 20)        /* QEMU's FDT_MAX_SIZE */

typedef struct spapr_qemu_state {
	spapr_state_t base;              /* must stay first: shares spapr's fields */
	uint32_t present;                /* SPAPR_QEMU_* bits */
	uint64_t ov5_cas[32];            /* 2048-bit option vector 5 bitmap */
	uint64_t patb_entry;
	uint8_t caps[16];                /* mig.caps[n] */
	uint32_t fdt_initial_size;
	uint32_t fdt_size;
	uint8_t *fdt_blob;
	uint64_t fwnmi_system_reset_addr;
	uint64_t fwnmi_machine_check_addr;
	int32_t fwnmi_machine_check_interlock;
} spapr_qemu_state_t;

extern const vmstate_desc_t machine_spapr_qemu_vmsd;
/* Register `spapr` instance 0 over *s with QEMU's subsections. */
int machine_spapr_register_qemu(savevm_registry_t *r, spapr_qemu_state_t *s, hm_error_t *err);
/* Free what a load allocated (fdt_blob); s stays valid (empty dtb). */
void spapr_qemu_state_release(spapr_qemu_state_t *s);

enum machine_workload {
	MACHINE_WL_IDLE = 0,    /* boots (bolted linear map), then no hypercalls */
	MACHINE_WL_UNIFORM = 1, /* boots, then enter/protect/remove at uniformly random slots */
	MACHINE_WL_LINUX = 2,   /* boots, then processes fault in, protect, unmap, exit */
};

/* Parse "idle" / "uniform" / "linux". Returns 0 or HM_E_FORMAT. */
int machine_workload_parse(const char *s, enum machine_workload *out, hm_error_t *err);
const char *machine_workload_name(enum machine_workload w);

#define MACHINE_VCPUS_MAX 256

typedef struct machine_config {
	uint64_t ram_bytes;    /* guest RAM; 0 = derive from htab_shift (RAM = table x 128) */
	unsigned htab_shift;   /* 0 = from ram_bytes as QEMU does (hpt_shift_for_ram) */
	unsigned vcpus;        /* 1..MACHINE_VCPUS_MAX */
	enum machine_workload workload;
	uint64_t rate;         /* hypercalls per second per vCPU; 0 = flat out */
	uint64_t seed;         /* workload PRNG seed (vCPU i uses a stream derived from it) */
} machine_config_t;

/* Defaults: 512 MiB RAM, 1 vCPU, linux workload, rate 0, seed 1. */
void machine_config_default(machine_config_t *cfg);

/* The `spapr` vmstate values (wire-format.md §3). */
typedef struct machine_spapr {
	uint64_t guest_timebase;    /* guest timebase ticks (512 MHz) at the snapshot */
	int64_t time_of_the_day_ns; /* host wall clock (ns since epoch) at the snapshot */
} machine_spapr_t;

/* Counters summed over vCPUs (relaxed reads while running). */
typedef struct machine_stats {
	uint64_t hcalls;       /* every hypercall issued */
	uint64_t enters, removes, protects, bulk_removes, reads;
	uint64_t evictions;    /* linux: PTEG full on both hashes, a victim removed */
	uint64_t pteg_full;    /* H_PTEG_FULL answers (expected, handled) */
	uint64_t not_found;    /* H_NOT_FOUND answers (expected after evictions) */
	uint64_t unexpected;   /* any other non-success answer: a bug somewhere */
	uint64_t processes;    /* linux: processes started */
	uint64_t paused_ns;    /* total time the guest was paused */
	uint64_t throttled_ns; /* total time vCPUs slept because of the throttle */
} machine_stats_t;

typedef struct machine machine_t;

/*
 * Create and boot a guest: a table of the configured size, then the boot
 * mappings (every workload maps RAM as bolted 64K pages in a 1T kernel
 * segment, as Linux does), done on the calling thread so the result is
 * deterministic. vCPUs are not running yet (machine_start).
 */
int machine_create(const machine_config_t *cfg, machine_t **out, hm_error_t *err);
/*
 * Wrap an existing table (loaded by a destination, or taken from a real
 * QEMU stream): no boot mappings are made. Takes ownership of table (also
 * on failure). cfg->htab_shift is ignored; cfg->ram_bytes 0 = table x 128.
 */
int machine_create_on(const machine_config_t *cfg, hpt_t *table, machine_t **out,
		      hm_error_t *err);
/* Stop vCPUs if running, free everything including the table. */
void machine_destroy(machine_t *m);

hpt_t *machine_hpt(machine_t *m);
const machine_config_t *machine_config(const machine_t *m);

/* Start the vCPU threads (running, not paused). HM_E_STATE if started. */
int machine_start(machine_t *m, hm_error_t *err);
/* Stop and join the vCPU threads (also when paused). Idempotent. */
void machine_stop(machine_t *m);
bool machine_running(const machine_t *m);

/*
 * Pause every vCPU at a hypercall boundary: returns once no vCPU is inside
 * a hypercall and none will start one until machine_resume(). Waits at most
 * timeout_ns; on timeout the request is withdrawn (vCPUs keep running) and
 * HM_E_TIMEOUT is returned. Not started or already paused: returns 0.
 */
int machine_pause(machine_t *m, uint64_t timeout_ns, hm_error_t *err);
void machine_resume(machine_t *m);
bool machine_paused(const machine_t *m);

/* Percentage (0..99) of wall time each vCPU sleeps. Any thread, any time. */
void machine_set_throttle(machine_t *m, unsigned percent);
unsigned machine_throttle(const machine_t *m);

/* Change the per-vCPU hypercall rate (0 = flat out), running or not. Call
 * from the thread that owns m (machine_config() reports the new rate). */
void machine_set_rate(machine_t *m, uint64_t rate);

void machine_get_stats(const machine_t *m, machine_stats_t *out);

/* spapr state: read at the stop (timebase frozen while paused), set on load. */
void machine_spapr_get(const machine_t *m, machine_spapr_t *out);
void machine_spapr_set(machine_t *m, const machine_spapr_t *in);

/*
 * Run the workload for n hypercalls on the calling thread as vCPU `vcpu`
 * (not concurrently with that vCPU's thread). For tests and benchmarks that
 * need a deterministic sequence without threads.
 */
void machine_step(machine_t *m, unsigned vcpu, uint64_t n);

#ifdef __cplusplus
}
#endif
#endif
