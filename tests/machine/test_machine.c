/* SPDX-License-Identifier: MIT */
/*
 * The simulated machine: boot mappings as Linux makes them, every workload
 * keeps every entry where its hash says, determinism on one vCPU, pause at a
 * hypercall boundary (nothing changes while paused), resume, rate and
 * throttle, and the spapr timebase.
 */
#include "hpt/hpt_inspect.h"
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hptmig/machine.h"

static machine_t *make(enum machine_workload wl, unsigned shift, unsigned vcpus, uint64_t seed)
{
	machine_config_t c;
	machine_t *m = NULL;
	hm_error_t e;
	hm_error_clear(&e);
	machine_config_default(&c);
	c.ram_bytes = 0;
	c.htab_shift = shift;
	c.workload = wl;
	c.vcpus = vcpus;
	c.seed = seed;
	int rc = machine_create(&c, &m, &e);
	if (rc)
		print_error("machine_create: %s\n", e.msg);
	assert_int_equal(rc, 0);
	return m;
}

/* Every valid entry sits where its AVPN and H bit hash to. */
static void check_structure(machine_t *m, uint64_t *valid_out, uint64_t *bolted_out)
{
	hpt_t *h = machine_hpt(m);
	uint64_t valid = 0, bolted = 0;
	for (uint64_t s = 0; s < hpt_slots(h); s++) {
		uint64_t v, r;
		assert_true(hpt_read_entry(h, s, &v, &r));
		if (!(v & HPTE64_V_VALID))
			continue;
		valid++;
		if (v & HPTE64_V_BOLTED)
			bolted++;
		if (!hpt_entry_check(hpt_shift(h), s, v, r))
			fail_msg("slot %llu: v=%016llx r=%016llx is not where it hashes",
				 (unsigned long long)s, (unsigned long long)v, (unsigned long long)r);
	}
	if (valid_out)
		*valid_out = valid;
	if (bolted_out)
		*bolted_out = bolted;
}

static void test_boot_linear_map(void **state)
{
	(void)state;
	machine_t *m = make(MACHINE_WL_IDLE, 20, 1, 1);
	/* shift 20: RAM = 2^27 = 128 MiB = 2048 pages of 64K, all bolted */
	assert_int_equal(machine_config(m)->ram_bytes, UINT64_C(128) << 20);
	uint64_t valid, bolted;
	check_structure(m, &valid, &bolted);
	assert_int_equal(valid, 2048);
	assert_int_equal(bolted, 2048);
	machine_stats_t st;
	machine_get_stats(m, &st);
	assert_int_equal(st.unexpected, 0);
	machine_destroy(m);

	/* sizing from RAM as QEMU: 512 MiB -> shift 22 */
	machine_config_t c;
	hm_error_t e;
	hm_error_clear(&e);
	machine_config_default(&c);
	c.ram_bytes = UINT64_C(512) << 20;
	assert_int_equal(machine_create(&c, &m, &e), 0);
	assert_int_equal(hpt_shift(machine_hpt(m)), 22);
	uint64_t n;
	hpt_count(machine_hpt(m), &n, NULL);
	assert_int_equal(n, 8192);
	machine_destroy(m);

	/* bad configurations are refused with a named error */
	c.vcpus = 0;
	assert_int_equal(machine_create(&c, &m, &e), HM_E_RANGE);
	assert_non_null(strstr(e.msg, "vcpus"));
	enum machine_workload w;
	hm_error_clear(&e);
	assert_int_equal(machine_workload_parse("bogus", &w, &e), HM_E_FORMAT);
	assert_int_equal(machine_workload_parse("uniform", &w, NULL), 0);
	assert_int_equal(w, MACHINE_WL_UNIFORM);
}

static void test_workloads_keep_structure(void **state)
{
	(void)state;
	uint64_t seed = tu_seed("workloads");
	for (int wl = MACHINE_WL_UNIFORM; wl <= MACHINE_WL_LINUX; wl++) {
		machine_t *m = make((enum machine_workload)wl, 18, 2, seed);
		uint64_t before;
		hpt_count(machine_hpt(m), &before, NULL);
		machine_step(m, 0, 40000);
		machine_step(m, 1, 40000);
		machine_stats_t st;
		machine_get_stats(m, &st);
		print_message("%s: hcalls %llu enters %llu full %llu evictions %llu procs %llu\n",
			      machine_workload_name((enum machine_workload)wl),
			      (unsigned long long)st.hcalls, (unsigned long long)st.enters,
			      (unsigned long long)st.pteg_full, (unsigned long long)st.evictions,
			      (unsigned long long)st.processes);
		assert_int_equal(st.unexpected, 0);
		assert_true(st.hcalls >= 80000);
		assert_true(st.enters > 0 && st.removes + st.bulk_removes > 0 && st.protects > 0);
		if (wl == MACHINE_WL_LINUX) {
			/* a small table under many processes: PTEGs fill, victims go */
			assert_true(st.pteg_full > 0);
			assert_true(st.evictions > 0);
			assert_true(st.processes > 16);
		}
		uint64_t valid, bolted;
		check_structure(m, &valid, &bolted);
		assert_true(valid > before);
		/* the kernel's linear map is never evicted by the linux workload */
		if (wl == MACHINE_WL_LINUX)
			assert_int_equal(bolted, (UINT64_C(1) << 25) >> 16);
		machine_destroy(m);
	}
}

static void digest_of(machine_t *m, uint8_t d[32])
{
	assert_int_equal(hpt_digest(machine_hpt(m), d), 0);
}

static void test_deterministic(void **state)
{
	(void)state;
	uint64_t seed = tu_seed("deterministic");
	uint8_t d1[32], d2[32], d3[32];
	machine_t *a = make(MACHINE_WL_LINUX, 19, 1, seed);
	machine_t *b = make(MACHINE_WL_LINUX, 19, 1, seed);
	machine_t *c = make(MACHINE_WL_LINUX, 19, 1, seed + 1);
	machine_step(a, 0, 20000);
	machine_step(b, 0, 20000);
	machine_step(c, 0, 20000);
	digest_of(a, d1);
	digest_of(b, d2);
	digest_of(c, d3);
	assert_memory_equal(d1, d2, 32);
	assert_memory_not_equal(d1, d3, 32);
	machine_destroy(a);
	machine_destroy(b);
	machine_destroy(c);
}

static void test_pause_resume(void **state)
{
	(void)state;
	uint64_t seed = tu_seed("pause");
	machine_t *m = make(MACHINE_WL_LINUX, 20, 2, seed);
	hm_error_t e;
	hm_error_clear(&e);
	assert_int_equal(machine_start(m, &e), 0);
	assert_int_equal(machine_start(m, &e), HM_E_STATE);
	for (int round = 0; round < 5; round++) {
		hm_sleep_ns(20000000);
		assert_int_equal(machine_pause(m, 2000000000ull, &e), 0);
		assert_true(machine_paused(m));
		machine_stats_t s1, s2;
		uint8_t d1[32], d2[32];
		machine_get_stats(m, &s1);
		digest_of(m, d1);
		hm_sleep_ns(10000000);
		machine_get_stats(m, &s2);
		digest_of(m, d2);
		/* paused: no hypercall in flight, none started */
		assert_int_equal(s1.hcalls, s2.hcalls);
		assert_memory_equal(d1, d2, 32);
		/* timebase frozen while paused */
		machine_spapr_t t1, t2;
		machine_spapr_get(m, &t1);
		hm_sleep_ns(2000000);
		machine_spapr_get(m, &t2);
		assert_int_equal(t1.guest_timebase, t2.guest_timebase);
		machine_resume(m);
		assert_false(machine_paused(m));
		hm_sleep_ns(10000000);
		machine_stats_t s3;
		machine_get_stats(m, &s3);
		assert_true(s3.hcalls > s2.hcalls);
	}
	machine_stats_t st;
	machine_get_stats(m, &st);
	assert_int_equal(st.unexpected, 0);
	assert_true(st.paused_ns > 0);
	/* stop while paused works too */
	assert_int_equal(machine_pause(m, 2000000000ull, &e), 0);
	machine_stop(m);
	assert_false(machine_running(m));
	check_structure(m, NULL, NULL);
	machine_destroy(m);
}

static void test_rate_and_throttle(void **state)
{
	(void)state;
	machine_config_t c;
	machine_t *m;
	hm_error_t e;
	hm_error_clear(&e);
	machine_config_default(&c);
	c.ram_bytes = 0;
	c.htab_shift = 19;
	c.rate = 200;
	c.vcpus = 2;
	assert_int_equal(machine_create(&c, &m, &e), 0);
	machine_stats_t s0, s1;
	machine_get_stats(m, &s0);
	assert_int_equal(machine_start(m, &e), 0);
	uint64_t t0 = hm_now_ns();
	hm_sleep_ns(300000000ull);
	/* a slow pause is still bounded: rate-limited vCPUs sleep, and wake */
	uint64_t p0 = hm_now_ns();
	assert_int_equal(machine_pause(m, 1000000000ull, &e), 0);
	uint64_t pause_ns = hm_now_ns() - p0;
	uint64_t ran = hm_now_ns() - t0;
	machine_get_stats(m, &s1);
	/* at most rate x time x vcpus hypercall steps (a step may be a few calls) */
	uint64_t steps_max = (200 * ran / 1000000000ull + 2) * 2;
	assert_true(s1.hcalls - s0.hcalls <= steps_max * 4);
	assert_true(s1.hcalls - s0.hcalls > 0);
	assert_true(pause_ns < 1000000000ull);
	machine_resume(m);
	machine_stop(m);
	machine_destroy(m);

	/* throttle: vCPUs sleep part of the time */
	c.rate = 0;
	assert_int_equal(machine_create(&c, &m, &e), 0);
	machine_set_throttle(m, 150);
	assert_int_equal(machine_throttle(m), 99);
	machine_set_throttle(m, 50);
	assert_int_equal(machine_start(m, &e), 0);
	hm_sleep_ns(100000000ull);
	machine_stop(m);
	machine_get_stats(m, &s1);
	assert_true(s1.throttled_ns > 0);
	assert_int_equal(s1.unexpected, 0);
	machine_destroy(m);
}

static void test_create_on_and_spapr(void **state)
{
	(void)state;
	hpt_t *h;
	hm_error_t e;
	hm_error_clear(&e);
	assert_int_equal(hpt_create(19, NULL, &h, &e), 0);
	machine_config_t c;
	machine_config_default(&c);
	c.ram_bytes = 0;
	machine_t *m;
	assert_int_equal(machine_create_on(&c, h, &m, &e), 0);
	assert_ptr_equal(machine_hpt(m), h);
	/* no boot on an adopted table */
	uint64_t valid;
	hpt_count(h, &valid, NULL);
	assert_int_equal(valid, 0);
	assert_int_equal(machine_config(m)->ram_bytes, UINT64_C(1) << 26);
	machine_spapr_t in = {.guest_timebase = UINT64_C(123456789000), .time_of_the_day_ns = 5};
	machine_spapr_set(m, &in);
	machine_spapr_t out;
	machine_spapr_get(m, &out);
	assert_int_equal(out.guest_timebase, in.guest_timebase);
	assert_int_equal(machine_start(m, &e), 0);
	hm_sleep_ns(5000000);
	machine_spapr_get(m, &out);
	/* the timebase continues from the migrated value */
	assert_true(out.guest_timebase > in.guest_timebase);
	assert_true(out.guest_timebase < in.guest_timebase + 512000000ull * 5);
	machine_stop(m);
	machine_destroy(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_boot_linear_map),
		cmocka_unit_test(test_workloads_keep_structure),
		cmocka_unit_test(test_deterministic),
		cmocka_unit_test(test_pause_resume),
		cmocka_unit_test(test_rate_and_throttle),
		cmocka_unit_test(test_create_on_and_spapr),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
