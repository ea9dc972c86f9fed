/* SPDX-License-Identifier: MIT */
/*
 * A program outside the tree that uses the installed library through
 * pkg-config: creates a table sized from RAM, enters an entry, digests it.
 * Built and run by check-install.sh against a fresh `cmake --install`.
 */
#include <stdio.h>
#include <hptmig/hpt.h>
int main(void)
{
	hpt_t *t;
	hm_error_t e;
	hm_error_clear(&e);
	if (hpt_create(hpt_shift_for_ram(2ull << 30), NULL, &t, &e) != 0) {
		fprintf(stderr, "hpt_create: %s\n", e.msg);
		return 1;
	}
	uint64_t slot;
	long rc = hpt_h_enter(t, 0, 0, 0x4001, 0x10, &slot);
	uint8_t d[32];
	if (rc != H_SUCCESS || hpt_digest(t, d) != 0)
		return 1;
	printf("shift %u enter rc %ld slot %llu digest %02x%02x\n", hpt_shift(t), rc, (unsigned long long)slot, d[0], d[1]);
	hpt_destroy(t);
	return 0;
}
