/* SPDX-License-Identifier: MIT */
/*
 * Helpers shared by the spapr/htab benchmarks (htab-pass, htab-first,
 * htab-budget): option parsing, a table filled the way H_ENTER fills it
 * (random PTEGs, first free slot), per-thread CPU and wall clocks, a /dev/null
 * channel, medians. Benchmark code only: the library never includes this.
 */
#ifndef HPTMIG_BENCH_HTAB_BENCH_H
#define HPTMIG_BENCH_HTAB_BENCH_H

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "hptmig/htab.h"
#include "tool.h"

static inline uint64_t hb_rand(uint64_t *s)
{
	uint64_t z = (*s += UINT64_C(0x9E3779B97F4A7C15));
	z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
	return z ^ (z >> 31);
}

/* Thread CPU time: on a shared machine, time spent preempted is not ours. */
static inline uint64_t hb_cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * UINT64_C(1000000000) + (uint64_t)ts.tv_nsec;
}

static inline int hb_cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Sort v[0..n) and drop repeats; returns how many are left. */
static inline uint64_t hb_sort_unique(uint64_t *v, uint64_t n)
{
	qsort(v, n, sizeof(*v), hb_cmp_u64);
	uint64_t u = 0;
	for (uint64_t i = 0; i < n; i++)
		if (u == 0 || v[i] != v[u - 1])
			v[u++] = v[i];
	return u;
}

static inline uint64_t hb_median(uint64_t *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), hb_cmp_u64);
	return v[n / 2];
}

/*
 * Parse "--name VALUE" options into u64s. Returns 0, or 2 after printing a
 * usage line for an unknown option or bad value.
 */
struct hb_opt {
	const char *name;
	uint64_t *val;
	uint64_t max;
};

static inline int hb_parse(const char *bench, int argc, char **argv, const struct hb_opt *o,
			   const char *usage)
{
	int i = 1;
	while (i < argc) {
		const struct hb_opt *p = o;
		if (strcmp(argv[i], "--help") == 0) {
			printf("%s\n", usage);
			return 1;
		}
		while (p->name && strcmp(p->name, argv[i]) != 0)
			p++;
		if (!p->name || i + 1 >= argc || hm_parse_u64(argv[i + 1], p->max, p->val) != 0) {
			tool_fail(bench, "bad option '%s' (%s)", argv[i], usage);
			return 2;
		}
		i += 2;
	}
	return 0;
}

/*
 * Fill about per_mille / 1000 of the slots as H_ENTER would: each entry goes
 * to the first free slot of a random PTEG (so runs are short and start at
 * slot 0 of a group, as in a real guest's table). V has valid and, for
 * 9 in 10, bolted; R a page number. Returns the number of valid entries.
 */
static inline uint64_t hb_fill(hpt_t *t, uint64_t per_mille, uint64_t *seed)
{
	uint64_t slots = hpt_slots(t), groups = slots / 8, want = slots * per_mille / 1000;
	uint8_t *used = calloc(groups, 1);
	uint64_t n = 0;
	if (!used)
		return 0;
	for (uint64_t tries = 0; n < want && tries < want * 4; tries++) {
		uint64_t g = hb_rand(seed) % groups;
		if (used[g] == 8)
			continue;
		uint64_t x = hb_rand(seed);
		uint64_t v = (x & UINT64_C(0x3FFFFFFFFFFFFF80)) | HPTE64_V_LARGE | HPTE64_V_VALID |
			     ((x >> 60) < 15 ? HPTE64_V_BOLTED : 0);
		uint64_t r = ((hb_rand(seed) & UINT64_C(0xFFFFFFF)) << 16) | 0x1000 | HPTE64_R_M | 0x2;
		hpt_write_entry(t, g * 8 + used[g], v, r);
		used[g]++;
		n++;
	}
	free(used);
	return n;
}

/* A write channel to /dev/null (the cost of a transport is not measured). */
static inline mig_file_t *hb_null_writer(void)
{
	int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
	mig_file_t *f = NULL;
	if (fd < 0 || mig_file_open_fd(fd, MIG_FILE_WRITE, MIG_FILE_OWN_FD, &f) != 0) {
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	return f;
}

#endif
