/* SPDX-License-Identifier: MIT */
/*
 * The error object and code names. First error wins, so the message a user
 * sees is the root cause, not a later consequence. A message is always one
 * line of printable ASCII (hm_escape guards it). Never prints.
 */
#include "hptmig/base.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static const struct {
	int code;
	const char *name;
	const char *str;
} project_codes[] = {
	{HM_OK, "HM_OK", "success"},
	{HM_E_FORMAT, "HM_E_FORMAT", "malformed input"},
	{HM_E_TRUNCATED, "HM_E_TRUNCATED", "input ended early"},
	{HM_E_MAGIC, "HM_E_MAGIC", "not a QEMU migration stream"},
	{HM_E_VERSION, "HM_E_VERSION", "unsupported version"},
	{HM_E_UNKNOWN, "HM_E_UNKNOWN", "unknown section, record or command"},
	{HM_E_FOOTER, "HM_E_FOOTER", "bad section footer"},
	{HM_E_RANGE, "HM_E_RANGE", "value out of range"},
	{HM_E_DIGEST, "HM_E_DIGEST", "digest mismatch"},
	{HM_E_CANCELLED, "HM_E_CANCELLED", "cancelled"},
	{HM_E_TIMEOUT, "HM_E_TIMEOUT", "timed out"},
	{HM_E_UNSUPPORTED, "HM_E_UNSUPPORTED", "unsupported feature"},
	{HM_E_STATE, "HM_E_STATE", "invalid state"},
	{HM_E_PEER, "HM_E_PEER", "peer reported failure"},
};

static const struct {
	int err;
	const char *name;
} errno_names[] = {
	{EPERM, "EPERM"}, {ENOENT, "ENOENT"}, {EINTR, "EINTR"}, {EIO, "EIO"},
	{EBADF, "EBADF"}, {EAGAIN, "EAGAIN"}, {ENOMEM, "ENOMEM"}, {EACCES, "EACCES"},
	{EEXIST, "EEXIST"}, {EINVAL, "EINVAL"}, {ENOSPC, "ENOSPC"}, {EPIPE, "EPIPE"},
	{ERANGE, "ERANGE"}, {ENOSYS, "ENOSYS"}, {ECONNREFUSED, "ECONNREFUSED"},
	{ECONNRESET, "ECONNRESET"}, {ETIMEDOUT, "ETIMEDOUT"}, {EADDRINUSE, "EADDRINUSE"},
	{ENOTCONN, "ENOTCONN"}, {EOVERFLOW, "EOVERFLOW"}, {EBUSY, "EBUSY"},
};

const char *hm_err_name(int code)
{
	for (size_t i = 0; i < sizeof(project_codes) / sizeof(project_codes[0]); i++)
		if (project_codes[i].code == code)
			return project_codes[i].name;
	for (size_t i = 0; i < sizeof(errno_names) / sizeof(errno_names[0]); i++)
		if (-errno_names[i].err == code)
			return errno_names[i].name;
	return "HM_E_OTHER";
}

const char *hm_err_str(int code)
{
	for (size_t i = 0; i < sizeof(project_codes) / sizeof(project_codes[0]); i++)
		if (project_codes[i].code == code)
			return project_codes[i].str;
	if (code < 0 && code > -4096)
		return strerror(-code);
	return "unknown error";
}

void hm_error_clear(hm_error_t *e)
{
	if (!e)
		return;
	e->code = 0;
	e->offset = -1;
	e->msg[0] = '\0';
}

int hm_error_setv(hm_error_t *e, int code, int64_t offset, const char *fmt, va_list ap)
{
	if (!e || e->code != 0)
		return code;
	char raw[sizeof(e->msg)];
	e->code = code;
	e->offset = offset;
	vsnprintf(raw, sizeof(raw), fmt, ap);
	/* A last guard: whatever a caller formatted in (a peer's bytes it
	 * forgot to escape), the message stays one line of printable ASCII. */
	hm_escape(raw, strlen(raw), HM_ESC_KEEP_QUOTING, e->msg, sizeof(e->msg));
	return code;
}

int hm_error_set(hm_error_t *e, int code, int64_t offset, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	hm_error_setv(e, code, offset, fmt, ap);
	va_end(ap);
	return code;
}

void hm_error_prefix(hm_error_t *e, const char *fmt, ...)
{
	char pre[256], old[sizeof(e->msg)];
	va_list ap;
	if (!e || e->code == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(pre, sizeof(pre), fmt, ap);
	va_end(ap);
	memcpy(old, e->msg, sizeof(old));
	size_t n = strlen(pre);
	if (n >= sizeof(e->msg))
		n = sizeof(e->msg) - 1;
	memcpy(e->msg, pre, n);
	size_t rest = strlen(old);
	if (rest > sizeof(e->msg) - 1 - n)
		rest = sizeof(e->msg) - 1 - n;
	memcpy(e->msg + n, old, rest);
	e->msg[n + rest] = '\0';
	memcpy(old, e->msg, sizeof(old));
	hm_escape(old, strlen(old), HM_ESC_KEEP_QUOTING, e->msg, sizeof(e->msg));
}

const char *hm_error_line(const hm_error_t *e, char *buf, size_t len)
{
	if (!e || e->code == 0) {
		snprintf(buf, len, "no error");
		return buf;
	}
	const char *msg = e->msg[0] ? e->msg : hm_err_str(e->code);
	if (e->offset >= 0)
		snprintf(buf, len, "%s (at byte offset %lld) [%s]", msg, (long long)e->offset,
			 hm_err_name(e->code));
	else
		snprintf(buf, len, "%s [%s]", msg, hm_err_name(e->code));
	return buf;
}
