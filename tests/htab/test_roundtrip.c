/* SPDX-License-Identifier: MIT */
/*
 * Round trip under fire: vCPU threads issue random hypercalls (H_ENTER,
 * H_REMOVE, H_PROTECT, H_BULK_REMOVE, H_CLEAR_REF/MOD) on the source table
 * while the spapr/htab section iterates into a memory stream with a small
 * budget; then the vCPUs stop, complete runs, and the stream loaded into a
 * fresh table must have the source's digest. Many seeds (printed), both
 * scan methods, with and without a resize during the migration. Labelled
 * concurrency: it also runs under the thread sanitizer.
 */
#include "htab_test.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>

struct vcpu {
	pthread_t th;
	hpt_t *t;
	uint64_t seed;
	atomic_bool *stop;
	atomic_int *warm; /* vCPUs that have issued their first 100 hcalls */
	uint64_t calls, ok;
};

static void *vcpu_main(void *arg)
{
	struct vcpu *c = arg;
	while (!atomic_load_explicit(c->stop, memory_order_relaxed)) {
		uint64_t slots = hpt_slots(c->t);
		uint64_t x = tu_rand(&c->seed);
		uint64_t ptex = tu_rand(&c->seed) % slots;
		uint64_t args[8] = { 0 };
		long rc;
		switch (x % 8) {
		case 0:
		case 1:
		case 2: { /* H_ENTER of a real 4K mapping in its primary PTEG */
			uint64_t vsid = 1 + tu_rand(&c->seed) % 4096, ea = (tu_rand(&c->seed) % 4096) << 12;
			uint64_t pteg = hpt_pteg_index(hpt_shift(c->t), HPT_SEG_256M, vsid, ea, 12, false);
			uint64_t v = hpt_mapping_v(HPT_SEG_256M, vsid, ea, false, false) |
				     ((x >> 8) & 1 ? HPTE64_V_BOLTED : 0);
			uint64_t r = ((tu_rand(&c->seed) % 65536) << 12) | HPTE64_R_M | 0x2;
			rc = hpt_h_enter(c->t, 0, pteg * 8, v, r, NULL);
			break;
		}
		case 3:
			rc = hpt_h_remove(c->t, 0, ptex, 0, NULL, NULL);
			break;
		case 4:
			rc = hpt_h_protect(c->t, (x >> 8) & 7, ptex, 0);
			break;
		case 5:
			for (int i = 0; i < 4; i++) {
				args[2 * i] = H_BULK_REMOVE_REQUEST | H_BULK_REMOVE_ABSOLUTE |
					      (tu_rand(&c->seed) % slots);
				args[2 * i + 1] = 0;
			}
			rc = hpt_h_bulk_remove(c->t, args);
			break;
		case 6:
			rc = hpt_h_clear_ref(c->t, 0, ptex, NULL);
			break;
		default:
			rc = hpt_h_clear_mod(c->t, 0, ptex, NULL);
			break;
		}
		c->ok += rc == H_SUCCESS;
		if (++c->calls == 100)
			atomic_fetch_add(c->warm, 1);
	}
	return NULL;
}

#define NVCPU 3

static void round_trip(uint64_t seed, enum htab_scan scan, bool resize)
{
	hpt_t *t;
	unsigned shift = 18 + (unsigned)(seed % 3);
	assert_int_equal(hpt_create(shift, NULL, &t, NULL), 0);
	/*
	 * Random entries do not sit where their AVPN hashes, so a resize could
	 * not rehash them: resize rounds start empty and let H_ENTER fill.
	 */
	if (!resize)
		fill_random(t, &seed, (unsigned)(seed % 40));
	struct recorder *r = malloc(sizeof(*r));
	assert_non_null(r);
	rec_open(r);
	htab_save_opts_t o;
	htab_save_opts_default(&o);
	o.scan = scan;
	htab_save_t *s;
	assert_int_equal(htab_save_create(t, &o, &s, NULL), 0);
	rec_begin(r, QEMU_VM_SECTION_START);
	assert_int_equal(htab_save_setup(s, r->w), 0);
	rec_end(r);

	atomic_bool stop;
	atomic_init(&stop, false);
	atomic_int warm;
	atomic_init(&warm, 0);
	struct vcpu v[NVCPU];
	for (int i = 0; i < NVCPU; i++) {
		v[i] = (struct vcpu){ .t = t, .seed = tu_rand(&seed), .stop = &stop, .warm = &warm };
		assert_int_equal(pthread_create(&v[i].th, NULL, vcpu_main, &v[i]), 0);
	}
	/* The migration starts once every vCPU is issuing hypercalls. */
	while (atomic_load(&warm) < NVCPU)
		hm_sleep_ns(100000);
	int iters = 1 + (int)(tu_rand(&seed) % 40);
	for (int i = 0; i < iters; i++) {
		if (resize && i == iters / 2) {
			/* Growing never collides: every bolted entry has a slot. */
			unsigned ns = hpt_shift(t) + 1;
			assert_int_equal(hpt_h_resize_prepare(t, 0, ns), H_SUCCESS);
			assert_int_equal(hpt_h_resize_commit(t, 0, ns), H_SUCCESS);
		}
		/*
		 * Half the rounds end on a one-unit call, so complete often meets
		 * an interrupted sweep (where both bugs this test found lived).
		 */
		uint64_t budget = (i == iters - 1 && (seed & 1)) ? 1 : 200000 + tu_rand(&seed) % 1000000;
		rec_begin(r, QEMU_VM_SECTION_PART);
		int rc = htab_save_iterate(s, r->w, budget);
		rec_end(r);
		assert_true(rc == 0 || rc == 1);
		(void)htab_save_pending(s);
	}
	atomic_store(&stop, true);
	uint64_t calls = 0;
	for (int i = 0; i < NVCPU; i++) {
		pthread_join(v[i].th, NULL);
		calls += v[i].calls;
	}
	assert_true(calls >= 100 * NVCPU);
	rec_begin(r, QEMU_VM_SECTION_END);
	int rc = htab_save_complete(s, r->w);
	rec_end(r);
	assert_int_equal(rc, 0);
	htab_save_stats_t st;
	htab_save_get_stats(s, &st);
	printf("# %s%s shift %u: %llu hcalls, %llu iterate calls, %llu passes, %llu headers, "
	       "%llu valid + %llu invalid sent\n",
	       htab_scan_name(scan), resize ? " +resize" : "", shift, (unsigned long long)calls,
	       (unsigned long long)st.iterations, (unsigned long long)st.passes,
	       (unsigned long long)st.headers, (unsigned long long)st.valid_sent,
	       (unsigned long long)st.invalid_sent);
	fflush(stdout);
	htab_loader_t *l = rec_replay(r);
	assert_same_table(t, l);
	if (resize)
		assert_int_equal(st.headers, 1);
	htab_loader_destroy(l);
	htab_save_destroy(s);
	mig_file_close(r->w, NULL);
	free(r);
	hpt_destroy(t);
}

static void test_under_fire(void **state)
{
	(void)state;
	uint64_t seed = tu_seed("htab round trip under fire");
#ifdef HPTMIG_SANITIZED
	int rounds = 6;
#else
	int rounds = 24;
#endif
	for (int i = 0; i < rounds; i++) {
		uint64_t sd = tu_rand(&seed);
		round_trip(sd, i % 2 ? HTAB_SCAN_LINEAR : HTAB_SCAN_BITMAP, i % 3 == 2);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_under_fire),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
