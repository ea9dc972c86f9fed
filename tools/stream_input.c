/* SPDX-License-Identifier: MIT */
/*
 * Stream inputs of analyze and rewrite (stream_input.h): stdin and plain
 * paths are read straight from their descriptor; every migration URI goes
 * through the migration layer's transports (mig_listen/mig_accept), whose
 * channel is read here as a byte source.
 */
#include "stream_input.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hptmig/migration.h"
#include "hptmig/stream.h"

struct tool_input {
	int fd;                /* stdin or a plain path (owned unless stdin), else -1 */
	mig_listener_t *l;
	mig_conn_t *c;
	an_source_t conn_src;  /* the connection's channel as a raw source */
	an_fd_source_t *src;   /* plain or zstd over the raw bytes */
};

/* What the channel holds, or one refill's worth (blocking until a byte
 * arrives or the stream ends). */
static int64_t conn_read(void *ctx, uint8_t *buf, size_t n, hm_error_t *err)
{
	mig_file_t *f = mig_conn_file(ctx);
	size_t have;
	const uint8_t *p = mig_file_buffered(f, &have);
	if (!have) {
		if (mig_file_peek_u8(f) < 0) {
			if (mig_file_status(f) < 0)
				return mig_file_error_copy(f, err);
			return 0;
		}
		p = mig_file_buffered(f, &have);
	}
	size_t k = have < n ? have : n;
	memcpy(buf, p, k);
	mig_file_get_ptr(f, k);
	return (int64_t)k;
}

static bool is_uri(const char *s)
{
	static const char *const pre[] = {"tcp:", "unix:", "exec:", "file:", "fd:"};
	for (size_t i = 0; i < sizeof(pre) / sizeof(pre[0]); i++)
		if (strncmp(s, pre[i], strlen(pre[i])) == 0)
			return true;
	return false;
}

static int open_uri(const char *cmd, const char *spec, tool_input_t *in, hm_error_t *err)
{
	mig_uri_t u;
	int rc = mig_uri_parse(spec, &u, err);
	if (rc < 0)
		return rc;
	if ((rc = mig_listen(&u, &in->l, err)) < 0)
		return rc;
	if (u.kind == MIG_URI_TCP || u.kind == MIG_URI_UNIX) {
		char b[4200];
		mig_uri_format(mig_listener_uri(in->l), b, sizeof(b));
		fprintf(stderr, "hptmig: %s: listening on %s\n", cmd, b);
		fflush(stderr);
	}
	if ((rc = mig_accept(in->l, -1, &in->c, err)) < 0)
		return rc;
	in->conn_src = (an_source_t){conn_read, in->c};
	return an_src_source_new(&in->conn_src, spec, &in->src, err);
}

int tool_input_open(const char *cmd, const char *spec, tool_input_t **out, hm_error_t *err)
{
	*out = NULL;
	tool_input_t *in = calloc(1, sizeof(*in));
	if (!in)
		return hm_error_set(err, -ENOMEM, -1, "out of memory");
	in->fd = -1;
	int rc;
	if (strcmp(spec, "-") == 0) {
		rc = an_fd_source_new(STDIN_FILENO, "-", &in->src, err);
	} else if (is_uri(spec)) {
		rc = open_uri(cmd, spec, in, err);
	} else {
		in->fd = open(spec, O_RDONLY | O_CLOEXEC);
		if (in->fd < 0)
			rc = hm_error_set(err, -errno, -1, "%s: %s", spec, strerror(errno));
		else
			rc = an_fd_source_new(in->fd, spec, &in->src, err);
	}
	if (rc < 0) {
		tool_input_close(in);
		return rc;
	}
	*out = in;
	return 0;
}

const an_source_t *tool_input_source(tool_input_t *in)
{
	return an_fd_source_get(in->src);
}

bool tool_input_compressed(const tool_input_t *in)
{
	return an_fd_source_compressed(in->src);
}

void tool_input_close(tool_input_t *in)
{
	if (!in)
		return;
	an_fd_source_free(in->src);
	if (in->c) {
		hm_error_t e;
		hm_error_clear(&e);
		mig_conn_close(in->c, &e);
	}
	mig_listener_close(in->l);
	if (in->fd >= 0)
		close(in->fd);
	free(in);
}

void tool_follow_line(const an_progress_t *p)
{
	char line[160];
	int n = snprintf(line, sizeof(line), "%9.1f MiB  ram it %llu: %llu+%llu pg  htab pass %llu: %llu valid%s",
			 (double)p->bytes / (1 << 20), (unsigned long long)p->ram_records,
			 (unsigned long long)p->ram_data_pages, (unsigned long long)p->ram_zero_pages,
			 (unsigned long long)p->htab_records, (unsigned long long)p->htab_valid,
			 p->held ? "  final" : "");
	if (n > 79)
		n = 79;
	fprintf(stderr, "%.*s\n", n, line);
	fflush(stderr);
}
