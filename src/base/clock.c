/* SPDX-License-Identifier: MIT */
/*
 * Monotonic clock and sleeping. All time budgets in the project are measured
 * with this clock, never with wall time.
 */
#include "hptmig/base.h"

#include <errno.h>
#include <time.h>

uint64_t hm_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void hm_sleep_ns(uint64_t ns)
{
	struct timespec req = {.tv_sec = (time_t)(ns / 1000000000ull),
			       .tv_nsec = (long)(ns % 1000000000ull)};
	struct timespec rem;
	while (nanosleep(&req, &rem) != 0 && errno == EINTR)
		req = rem;
}
