/* SPDX-License-Identifier: MIT */
/*
 * base: the error object every layer fills, the monotonic clock, the logging
 * hook, SHA-256, size parsing and big-endian helpers. (The change-tracking
 * bitmap lives with its only user, src/hpt/track.c: see docs/design.md.)
 * Nothing here prints, exits or aborts on input.
 */
#ifndef HPTMIG_BASE_H
#define HPTMIG_BASE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ errors */

/*
 * Error codes. Functions return 0 on success or a negative code: either a
 * negative errno value (-EIO, -ENOMEM, ...) for system failures, or one of
 * these project codes for bad data and protocol outcomes. Values are stable.
 */
enum hm_err {
	HM_OK = 0,
	HM_E_FORMAT = -1000,     /* malformed input: a field has a bad value */
	HM_E_TRUNCATED = -1001,  /* input ended before a complete record */
	HM_E_MAGIC = -1002,      /* not a QEMU migration stream */
	HM_E_VERSION = -1003,    /* stream or section version not supported */
	HM_E_UNKNOWN = -1004,    /* unknown section, record type or command */
	HM_E_FOOTER = -1005,     /* section footer missing or naming another id */
	HM_E_RANGE = -1006,      /* a value out of its allowed range */
	HM_E_DIGEST = -1007,     /* end-to-end digest mismatch */
	HM_E_CANCELLED = -1008,  /* cancelled by the caller */
	HM_E_TIMEOUT = -1009,    /* a time limit was reached */
	HM_E_UNSUPPORTED = -1010,/* valid input using a feature we do not implement */
	HM_E_STATE = -1011,      /* call not valid in the current state */
	HM_E_PEER = -1012,       /* the other side reported a failure */
};

/* Stable symbolic name of a code ("HM_E_FORMAT", "EIO", ...). Never NULL. */
const char *hm_err_name(int code);
/* Short human description of a code. Never NULL. */
const char *hm_err_str(int code);

/*
 * An error: code, where (byte offset in the stream, or -1) and a message that
 * names the section, the field and the value. First error wins: once code is
 * non-zero, hm_error_set leaves the object as it is, so the root cause is kept.
 * Every function taking an hm_error_t * accepts NULL.
 */
typedef struct hm_error {
	int code;
	int64_t offset;
	char msg[512];
} hm_error_t;

void hm_error_clear(hm_error_t *e);
/* Record an error (if none is recorded yet) and return code. */
int hm_error_set(hm_error_t *e, int code, int64_t offset, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
int hm_error_setv(hm_error_t *e, int code, int64_t offset, const char *fmt, va_list ap)
	__attribute__((format(printf, 4, 0)));
/* Put context ("section 'spapr/htab': ") in front of an existing message. */
void hm_error_prefix(hm_error_t *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* One line for the user: "message (at byte offset N) [NAME]" into buf. */
const char *hm_error_line(const hm_error_t *e, char *buf, size_t len);

/* ---------------------------------------------------------------- escaping */

/*
 * Bytes from a peer or a file, made fit for a message: printable ASCII is
 * kept, a backslash is doubled and '"' becomes \" (unless HM_ESC_KEEP_QUOTING), every
 * other byte (controls, NUL, DEL, 0x80-0xff, so ESC, BEL, C1 and invalid
 * UTF-8 too) becomes \xNN. The result is always one line of printable ASCII,
 * valid UTF-8 and JSON-safe. Writes at most outlen bytes with the NUL; a
 * value cut to fit ends in "...". Returns out, so it can be a printf
 * argument. HM_ESC_LEN(n) is a size that always holds n bytes escaped.
 * HM_ESC_KEEP_QUOTING is for text already escaped (a last guard before
 * output: it cannot double an escape).
 */
#define HM_ESC_KEEP_QUOTING 1u
#define HM_ESC_LEN(n) (4 * (size_t)(n) + 1)
char *hm_escape(const void *bytes, size_t len, unsigned flags, char *out, size_t outlen);

/* ------------------------------------------------------------------- clock */

/* Monotonic time in nanoseconds (CLOCK_MONOTONIC). */
uint64_t hm_now_ns(void);
/* Sleep for ns nanoseconds (restarts after signals). */
void hm_sleep_ns(uint64_t ns);

/* ----------------------------------------------------------------- logging */

enum hm_log_level { HM_LOG_ERROR = 0, HM_LOG_WARN = 1, HM_LOG_INFO = 2, HM_LOG_DEBUG = 3 };
typedef void (*hm_log_fn)(void *opaque, int level, const char *msg);
/* Install the process-wide log sink (NULL: discard, the default). */
void hm_log_set(hm_log_fn fn, void *opaque, int max_level);
void hm_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ------------------------------------------------------------------ digest */

/* SHA-256 through OpenSSL's libcrypto. */
#define HM_SHA256_LEN 32
typedef struct hm_sha256 hm_sha256_t;
int hm_sha256_new(hm_sha256_t **out);
void hm_sha256_update(hm_sha256_t *h, const void *data, size_t len);
void hm_sha256_final(hm_sha256_t *h, uint8_t out[HM_SHA256_LEN]);
void hm_sha256_free(hm_sha256_t *h);
/* One-shot helper. */
int hm_sha256(const void *data, size_t len, uint8_t out[HM_SHA256_LEN]);
/* Lower-case hex of a digest into out (65 bytes with the NUL). */
void hm_hex(const uint8_t *bytes, size_t n, char *out);

/* ----------------------------------------------------------------- parsing */

/*
 * Parse a size or rate: decimal digits with an optional K, M, G or T suffix
 * (powers of 1024, case-insensitive, optional trailing "B" or "iB").
 * With a suffix, a decimal fraction of 1 to 9 digits may follow the
 * integer ("1.5G" = 1610612736): the exact value times the suffix's power,
 * rounded down to a whole byte ("0.1K" = 102). Digits are needed on both
 * sides of the point; a fraction without a suffix ("1.5"), a sign, spaces,
 * hex or a second point are HM_E_FORMAT.
 * Returns 0, or HM_E_FORMAT / HM_E_RANGE on garbage or overflow.
 */
int hm_parse_size(const char *s, uint64_t *out);
/* Parse an unsigned decimal integer (or 0x hex) with range check. */
int hm_parse_u64(const char *s, uint64_t max, uint64_t *out);

/* Big-endian helpers for wire and table code. */
static inline uint64_t hm_load_be64(const void *p)
{
	const uint8_t *b = (const uint8_t *)p;
	return ((uint64_t)b[0] << 56) | ((uint64_t)b[1] << 48) | ((uint64_t)b[2] << 40) |
	       ((uint64_t)b[3] << 32) | ((uint64_t)b[4] << 24) | ((uint64_t)b[5] << 16) |
	       ((uint64_t)b[6] << 8) | (uint64_t)b[7];
}
static inline uint32_t hm_load_be32(const void *p)
{
	const uint8_t *b = (const uint8_t *)p;
	return ((uint32_t)b[0] << 24) | ((uint32_t)b[1] << 16) | ((uint32_t)b[2] << 8) | b[3];
}
static inline uint16_t hm_load_be16(const void *p)
{
	const uint8_t *b = (const uint8_t *)p;
	return (uint16_t)(((uint16_t)b[0] << 8) | b[1]);
}
static inline void hm_store_be64(void *p, uint64_t v)
{
	uint8_t *b = (uint8_t *)p;
	for (int i = 7; i >= 0; i--) {
		b[i] = (uint8_t)v;
		v >>= 8;
	}
}
static inline void hm_store_be32(void *p, uint32_t v)
{
	uint8_t *b = (uint8_t *)p;
	b[0] = (uint8_t)(v >> 24);
	b[1] = (uint8_t)(v >> 16);
	b[2] = (uint8_t)(v >> 8);
	b[3] = (uint8_t)v;
}
static inline void hm_store_be16(void *p, uint16_t v)
{
	uint8_t *b = (uint8_t *)p;
	b[0] = (uint8_t)(v >> 8);
	b[1] = (uint8_t)v;
}

#ifdef __cplusplus
}
#endif
#endif
