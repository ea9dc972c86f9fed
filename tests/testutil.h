/* SPDX-License-Identifier: MIT */
/*
 * Shared test helpers: printed random seeds (reproduce a failure with
 * HPTMIG_SEED=N), paths of fixtures, reading whole files, and a small
 * deterministic PRNG. Included after <cmocka.h>'s prerequisites.
 */
#ifndef HPTMIG_TESTUTIL_H
#define HPTMIG_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <cmocka.h>

#include "hptmig/base.h"

/*
 * The seed for a randomized test: HPTMIG_SEED from the environment if set,
 * else from the clock. Printed on stdout with the test's name so that any
 * failure can be replayed.
 */
uint64_t tu_seed(const char *what);

/* splitmix64: small, fast, good enough for tests and workloads. */
static inline uint64_t tu_rand(uint64_t *state)
{
	uint64_t z = (*state += UINT64_C(0x9E3779B97F4A7C15));
	z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
	return z ^ (z >> 31);
}

/* Directory of ../shared (HPTMIG_SHARED_DIR), or NULL when it is absent. */
const char *tu_shared_dir(void);
/* Source tree root (HPTMIG_SOURCE_DIR). */
const char *tu_source_dir(void);
/* Build tree root (HPTMIG_BINARY_DIR). */
const char *tu_binary_dir(void);

/*
 * Path of a decompressed real QEMU fixture (name without ".zst", e.g.
 * "pseries-qemu72-p8-1g.mig"), decompressing it once into the build tree.
 * Returns NULL when ../shared is absent (the caller skips).
 */
const char *tu_fixture(const char *name);

/* Read a whole file into a malloc'd buffer. Returns 0 or -errno. */
int tu_read_file(const char *path, uint8_t **data, size_t *len);
/* Write a buffer to a file. Returns 0 or -errno. */
int tu_write_file(const char *path, const void *data, size_t len);

/*
 * Run a shell command line (sh -c), capturing stdout and stderr into malloc'd
 * NUL-terminated strings (either pointer may be NULL to discard). Returns the
 * exit status (0..255), 128+signal when killed, or -1 when it could not run.
 * tu_bin() is the hptmig binary under test (HPTMIG_BIN).
 */
int tu_run(const char *cmdline, char **out, char **err);
const char *tu_bin(void);
/*
 * A group fixture for tests that need one scratch directory: pass
 * tu_setup_tmp / tu_teardown_tmp to cmocka_run_group_tests and use tu_tmp.
 * Setup also ignores SIGPIPE (tests that talk to peers that hang up).
 */
extern char *tu_tmp;
int tu_setup_tmp(void **state);
int tu_teardown_tmp(void **state);
/* A fresh temporary directory (removed by tu_rmdir). */
char *tu_mkdtemp(void);
void tu_rmdir(const char *dir);

/* Assert an hm_error_t code, printing its message on mismatch. */
#define tu_assert_err(e, expected)                                                  \
	do {                                                                        \
		if ((e)->code != (expected))                                        \
			print_error("expected %s, got %s: %s (offset %lld)\n",       \
				    hm_err_name(expected), hm_err_name((e)->code),  \
				    (e)->msg, (long long)(e)->offset);              \
		assert_int_equal((e)->code, (expected));                            \
	} while (0)

#endif
