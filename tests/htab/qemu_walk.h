/* SPDX-License-Identifier: MIT */
/*
 * TEST-ONLY walker over a real QEMU migration stream: it follows the framing
 * (wire-format.md §1), skips `ram` items (§4) and hands every `spapr/htab`
 * record payload to a callback, stopping at the first FULL record (QEMU sends
 * every live record before them). It is no general stream reader: it must
 * never be linked into the library; the analyzer owns that job.
 */
#ifndef HPTMIG_TEST_QEMU_WALK_H
#define HPTMIG_TEST_QEMU_WALK_H

#include <stddef.h>
#include <stdint.h>

#include "hptmig/base.h"
#include "hptmig/stream.h"

/*
 * Called for each spapr/htab record with f positioned at the payload; it must
 * consume exactly the payload (the walker then checks the footer) and return
 * 0 or a negative code (which stops the walk).
 */
typedef int (*qw_htab_fn)(void *opaque, int record_type, mig_file_t *f);

struct qw_stats {
	unsigned htab_records;
	unsigned ram_records;
	unsigned commands;
};

/* Walk buf[0..len). Returns 0 or a negative code with err filled. */
int qw_walk(const uint8_t *buf, size_t len, qw_htab_fn fn, void *opaque,
	    struct qw_stats *stats, hm_error_t *err);

#endif
