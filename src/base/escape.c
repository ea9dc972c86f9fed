/* SPDX-License-Identifier: MIT */
/*
 * The one escaping function: bytes from a peer or a file become one line of
 * printable ASCII (so also valid UTF-8 and safe in JSON) before they reach
 * an error message, a report or a terminal. It never fails, never writes
 * past the buffer and always NUL-terminates a non-empty buffer.
 */
#include "hptmig/base.h"

#include <stdbool.h>
#include <string.h>

static size_t esc_len(unsigned char c, unsigned flags)
{
	if ((c == '\\' || c == '"') && !(flags & HM_ESC_KEEP_QUOTING))
		return 2;
	return c >= 0x20 && c <= 0x7e ? 1 : 4;
}

char *hm_escape(const void *bytes, size_t len, unsigned flags, char *out, size_t outlen)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *b = bytes;
	size_t o = 0;
	if (!out || outlen == 0)
		return out;
	if (!b)
		len = 0;
	size_t need = 0;
	for (size_t i = 0; i < len && need < outlen; i++)
		need += esc_len(b[i], flags);
	bool fits = need < outlen;
	for (size_t i = 0; i < len; i++) {
		char e[5];
		size_t n;
		unsigned char c = b[i];
		if ((c == '\\' || c == '"') && !(flags & HM_ESC_KEEP_QUOTING)) {
			e[0] = '\\';
			e[1] = (char)c;
			n = 2;
		} else if (c >= 0x20 && c <= 0x7e) {
			e[0] = (char)c;
			n = 1;
		} else {
			e[0] = '\\';
			e[1] = 'x';
			e[2] = hex[c >> 4];
			e[3] = hex[c & 15];
			n = 4;
		}
		/* Whole escapes only; a cut string ends in "..." so it cannot be
		 * mistaken for the whole value. */
		if (!fits && o + n + 3 >= outlen) {
			size_t keep = outlen - 1 >= 3 ? 3 : outlen - 1;
			if (o > outlen - 1 - keep)
				o = outlen - 1 - keep;
			memcpy(out + o, "...", keep);
			o += keep;
			break;
		}
		memcpy(out + o, e, n);
		o += n;
	}
	out[o] = '\0';
	return out;
}
