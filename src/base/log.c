/* SPDX-License-Identifier: MIT */
/*
 * The logging hook. The library never writes to a terminal itself: messages
 * go to the sink the application installed, or nowhere.
 */
#include "hptmig/base.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

/* The sink is set once at start-up by the application; reads are relaxed. */
static hm_log_fn log_fn;
static void *log_opaque;
static atomic_int log_max = HM_LOG_WARN;

void hm_log_set(hm_log_fn fn, void *opaque, int max_level)
{
	log_fn = fn;
	log_opaque = opaque;
	atomic_store(&log_max, max_level);
}

void hm_log(int level, const char *fmt, ...)
{
	char buf[1024], safe[1024];
	va_list ap;
	if (!log_fn || level > atomic_load_explicit(&log_max, memory_order_relaxed))
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	/* The sink may be a terminal: one line of printable ASCII. */
	log_fn(log_opaque, level, hm_escape(buf, strlen(buf), HM_ESC_KEEP_QUOTING, safe, sizeof(safe)));
}
