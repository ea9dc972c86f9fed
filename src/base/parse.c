/* SPDX-License-Identifier: MIT */
/*
 * Parsing of numbers and sizes given on the command line or in options.
 * Strict: trailing garbage and overflow are errors, never silently clamped.
 * Sizes take binary suffixes and a decimal fraction ("1.5G"), rounded down
 * to a whole byte (the rules are in hptmig/base.h and the README).
 */
#include "hptmig/base.h"

#include <ctype.h>
#include <stdbool.h>
#include <errno.h>
#include <stdlib.h>
#include <strings.h>

int hm_parse_u64(const char *s, uint64_t max, uint64_t *out)
{
	char *end = NULL;
	if (!s || !*s || *s == '-' || *s == '+' || isspace((unsigned char)*s))
		return HM_E_FORMAT;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 0);
	if (end == s || *end != '\0')
		return HM_E_FORMAT;
	if (errno == ERANGE || v > max)
		return HM_E_RANGE;
	*out = v;
	return 0;
}

/* Digits of a size's fraction: at most 9, so that 2 * 10^9 fits the
 * remainder of the exact division below. */
#define SIZE_FRAC_DIGITS_MAX 9

int hm_parse_size(const char *s, uint64_t *out)
{
	char *end = NULL;
	if (!s || !isdigit((unsigned char)*s))
		return HM_E_FORMAT;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (end == s)
		return HM_E_FORMAT;
	if (errno == ERANGE)
		return HM_E_RANGE;
	/* A decimal fraction: "1.5G". Digits on both sides of the point. */
	uint64_t frac = 0, den = 1;
	bool has_frac = false;
	if (*end == '.') {
		end++;
		if (!isdigit((unsigned char)*end))
			return HM_E_FORMAT;
		for (; isdigit((unsigned char)*end); end++) {
			if (den == UINT64_C(1000000000))
				return HM_E_FORMAT; /* more than SIZE_FRAC_DIGITS_MAX */
			frac = frac * 10 + (uint64_t)(*end - '0');
			den *= 10;
		}
		has_frac = true;
	}
	unsigned shift = 0;
	switch (*end) {
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	case 't': case 'T': shift = 40; end++; break;
	default: break;
	}
	if (shift && (strcasecmp(end, "ib") == 0))
		end += 2;
	else if (strcasecmp(end, "b") == 0)
		end += 1;
	if (*end != '\0')
		return HM_E_FORMAT;
	if (has_frac && shift == 0)
		return HM_E_FORMAT; /* a fraction of a byte */
	if (shift && v > (UINT64_MAX >> shift))
		return HM_E_RANGE;
	/* frac / den * 2^shift, rounded down to a whole byte, exactly: binary
	 * long division, one bit of the multiplier at a time (rem < den). */
	uint64_t part = 0, rem = frac;
	for (unsigned i = 0; has_frac && i < shift; i++) {
		rem *= 2;
		part = part * 2 + rem / den;
		rem %= den;
	}
	uint64_t whole = (uint64_t)v << shift;
	if (part > UINT64_MAX - whole)
		return HM_E_RANGE;
	*out = whole + part;
	return 0;
}
