/* SPDX-License-Identifier: MIT */
/*
 * Entry-level inspection of a table for the tests and the benchmarks, not
 * part of the public API (include/hptmig/hpt.h): one entry at a time under
 * its lock, valid/invalid search, marking every slot. Migration code reads
 * through hpt_read_entries / hpt_read_chunks / hpt_track_take instead.
 */
#ifndef HPTMIG_HPT_INSPECT_H
#define HPTMIG_HPT_INSPECT_H

#include "hptmig/hpt.h"

/*
 * A consistent, never torn snapshot of one entry (taken under its lock), V
 * with 0x40 cleared. Returns false (and 0, 0) when slot is out of range (the
 * table may have been resized: check hpt_generation()).
 */
bool hpt_read_entry(hpt_t *h, uint64_t slot, uint64_t *v, uint64_t *r);

/*
 * First slot >= from (and < limit) whose entry is valid / invalid, or limit
 * if none (lock-free hint: a concurrent hcall may change it right after).
 */
uint64_t hpt_find_valid(hpt_t *h, uint64_t from, uint64_t limit);
uint64_t hpt_find_invalid(hpt_t *h, uint64_t from, uint64_t limit);

/* Mark every slot (e.g. to force a full pass). No-op when not tracking. */
void hpt_track_mark_all(hpt_t *h);

#endif
