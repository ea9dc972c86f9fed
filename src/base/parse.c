/* SPDX-License-Identifier: MIT */
/*
 * Parsing of numbers and sizes given on the command line or in options.
 * Strict: trailing garbage and overflow are errors, never silently clamped.
 */
#include "hptmig/base.h"

#include <ctype.h>
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
	if (shift && v > (UINT64_MAX >> shift))
		return HM_E_RANGE;
	*out = (uint64_t)v << shift;
	return 0;
}
