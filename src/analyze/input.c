/* SPDX-License-Identifier: MIT */
/*
 * Input files for the analyser: a plain stream (file, pipe or device) is read
 * into a private buffer, a zstd file (detected by its magic) is decompressed
 * into one with libzstd. The first bytes are checked before anything else is
 * read, and memory is bounded by a cap on the stream's size (never by what a
 * file or a frame header claims); the file is never mapped, so another
 * process truncating it cannot kill us with SIGBUS. Never prints.
 */
#include "hptmig/analyze.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>
#include <zstd_errors.h>

#define ZSTD_MAGIC_LE 0xFD2FB528u
#define QEVM_MAGIC 0x5145564du
/* Compressed bytes are read in pieces of this size (zstd's own input size). */
#define READ_PIECE ((size_t)128 << 10)
#define STR_(x) #x
#define STR(x) STR_(x)

static int read_some(int fd, uint8_t *b, size_t want, size_t *got, const char *path, hm_error_t *err)
{
	*got = 0;
	while (*got < want) {
		ssize_t k = read(fd, b + *got, want - *got);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			int e = errno;
			return hm_error_set(err, -e, (int64_t)*got, "%s: read: %s", path, strerror(e));
		}
		if (k == 0)
			break;
		*got += (size_t)k;
	}
	return 0;
}

static int check_qevm(const uint8_t *b, size_t n, const char *path, const char *what, hm_error_t *err)
{
	if (n < 4 || hm_load_be32(b) == QEVM_MAGIC)
		return 0; /* too short: the walk reports the truncated header */
	return hm_error_set(err, HM_E_MAGIC, 0,
			    "%s: stream header: magic 0x%08x at offset 0%s is not QEVM (0x%08x)%s", path,
			    hm_load_be32(b), what, QEVM_MAGIC, *what ? "" : " nor zstd (0xfd2fb528 LE)");
}

static int too_big(hm_error_t *err, const char *path, const char *what, uint64_t max)
{
	return hm_error_set(err, HM_E_RANGE, (int64_t)max, "%s: %s more than %" PRIu64 " bytes (the input cap;"
			    " --max-input SIZE changes it)", path, what, max);
}

/*
 * Grow *b (a private anonymous mapping, cap bytes) to hold at least need
 * bytes: doubling, in whole 2 MiB steps, at most max + 1 bytes plus that
 * rounding (one byte more than allowed tells "too big" from "exactly
 * max"). Pages not yet written cost no memory; transparent huge pages are
 * asked for, as the walk strides through the buffer page by page (RAM page
 * headers) and 4 KiB pages made it twice as slow as the page cache's.
 */
#define BUF_STEP ((size_t)2 << 20)

static int grow(uint8_t **b, size_t *cap, size_t need, uint64_t max, const char *path, hm_error_t *err)
{
	if (need <= *cap)
		return 0;
	size_t nc = *cap ? *cap : BUF_STEP;
	while (nc < need)
		nc *= 2;
	if (nc > max + 1)
		nc = (size_t)max + 1;
	nc = (nc + BUF_STEP - 1) & ~(BUF_STEP - 1);
	void *nb = *b ? mremap(*b, *cap, nc, MREMAP_MAYMOVE)
		      : mmap(NULL, nc, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (nb == MAP_FAILED)
		return hm_error_set(err, -ENOMEM, -1, "%s: out of memory for %zu bytes", path, nc);
	(void)madvise(nb, nc, MADV_HUGEPAGE); /* a hint: fine if refused */
	*b = nb;
	*cap = nc;
	return 0;
}

static void buf_free(uint8_t *b, size_t cap)
{
	if (b)
		munmap(b, cap);
}

/* Plain input: head[0, hn) already read; the rest up to EOF, at most max bytes. */
static int read_plain(int fd, const struct stat *st, const uint8_t *head, size_t hn, uint64_t max,
		      const char *path, an_input_t *in, hm_error_t *err)
{
	if (S_ISREG(st->st_mode) && (uint64_t)st->st_size > max)
		return too_big(err, path, "the file has", max);
	size_t cap = 0, n = hn;
	uint8_t *b = NULL;
	/* A regular file's size is a hint only: it may shrink or grow meanwhile. */
	size_t first = S_ISREG(st->st_mode) && st->st_size > 0 ? (size_t)st->st_size + 1 : (size_t)1 << 16;
	int rc = grow(&b, &cap, first > hn ? first : hn + 1, max, path, err);
	if (rc < 0)
		return rc;
	memcpy(b, head, hn);
	for (;;) {
		if (n == cap) {
			if (n > max) {
				buf_free(b, cap);
				return too_big(err, path, "the input has", max);
			}
			rc = grow(&b, &cap, cap + 1, max, path, err);
			if (rc < 0) {
				buf_free(b, cap);
				return rc;
			}
		}
		size_t got;
		rc = read_some(fd, b + n, cap - n, &got, path, err);
		if (rc < 0) {
			buf_free(b, cap);
			return rc;
		}
		n += got;
		if (n > max) {
			buf_free(b, cap);
			return too_big(err, path, "the input has", max);
		}
		if (got == 0 || n < cap)
			break; /* end of file (read_some stops short only there) */
	}
	in->data = b;
	in->len = n;
	in->map_ = b;
	in->maplen_ = cap;
	in->mapped_ = true;
	return 0;
}

/*
 * Compressed input: read piece by piece and decompress into a buffer that
 * never exceeds max + 1 bytes; the decoder's window is limited to
 * 2^AN_INPUT_ZSTD_WINDOW_LOG_MAX (and libzstd allocates no more than the
 * frame's content, so its memory is at most min(window, output)).
 */
static int read_zstd(int fd, const uint8_t *head, size_t hn, uint64_t max, const char *path,
		     an_input_t *in, hm_error_t *err)
{
	ZSTD_DCtx *dc = ZSTD_createDCtx();
	uint8_t *src = malloc(READ_PIECE), *b = NULL;
	size_t cap = 0, total_in = 0;
	int rc = 0;
	if (!dc || !src) {
		rc = hm_error_set(err, -ENOMEM, -1, "%s: out of memory", path);
		goto out;
	}
	size_t z = ZSTD_DCtx_setParameter(dc, ZSTD_d_windowLogMax, AN_INPUT_ZSTD_WINDOW_LOG_MAX);
	if (ZSTD_isError(z)) {
		rc = hm_error_set(err, -EINVAL, -1, "%s: zstd: %s", path, ZSTD_getErrorName(z));
		goto out;
	}
	memcpy(src, head, hn);
	ZSTD_inBuffer ib = {src, hn, 0};
	ZSTD_outBuffer ob = {NULL, 0, 0};
	bool eof = false, checked = false;
	size_t ret = 1;
	for (;;) {
		if (ib.pos == ib.size && !eof) {
			size_t got;
			total_in += ib.size;
			rc = read_some(fd, src, READ_PIECE, &got, path, err);
			if (rc < 0)
				goto out;
			ib.size = got;
			ib.pos = 0;
			eof = got == 0;
		}
		if (ib.pos == ib.size && eof) {
			if (ret != 0) {
				rc = hm_error_set(err, HM_E_TRUNCATED, (int64_t)total_in,
						  "%s: zstd: the compressed file ends inside a frame (%zu bytes"
						  " decompressed)", path, ob.pos);
				goto out;
			}
			break;
		}
		if (ob.pos == ob.size) {
			if (ob.pos > max) {
				rc = too_big(err, path, "decompresses to", max);
				goto out;
			}
			rc = grow(&b, &cap, cap + 1, max, path, err);
			if (rc < 0)
				goto out;
			ob.dst = b;
			ob.size = cap;
		}
		size_t in_before = ib.pos, out_before = ob.pos;
		ret = ZSTD_decompressStream(dc, &ob, &ib);
		if (ZSTD_isError(ret)) {
			rc = hm_error_set(err, HM_E_FORMAT, (int64_t)(total_in + ib.pos), "%s: zstd: %s%s", path,
					  ZSTD_getErrorName(ret),
					  ZSTD_getErrorCode(ret) == ZSTD_error_frameParameter_windowTooLarge
						  ? " (the decoder's window is limited to 2^"
						    STR(AN_INPUT_ZSTD_WINDOW_LOG_MAX) " bytes)"
						  : "");
			goto out;
		}
		if (!checked && ob.pos >= 4) {
			/* No point decompressing gigabytes of something else. */
			rc = check_qevm(b, ob.pos, path, " of the decompressed stream", err);
			if (rc < 0)
				goto out;
			checked = true;
		}
		if (ob.pos > max) {
			rc = too_big(err, path, "decompresses to", max);
			goto out;
		}
		if (in_before == ib.pos && out_before == ob.pos && ob.pos < ob.size && ib.pos < ib.size) {
			rc = hm_error_set(err, HM_E_FORMAT, (int64_t)(total_in + ib.pos), "%s: zstd: no progress",
					  path);
			goto out;
		}
	}
	if (!checked)
		rc = check_qevm(b, ob.pos, path, " of the decompressed stream", err);
	if (rc < 0)
		goto out;
	in->data = b ? b : (const uint8_t *)"";
	in->len = ob.pos;
	in->map_ = b;
	in->maplen_ = cap;
	in->mapped_ = b != NULL;
	in->compressed = true;
	b = NULL;
out:
	buf_free(b, cap);
	free(src);
	ZSTD_freeDCtx(dc);
	return rc;
}

int an_input_open_max(const char *path, uint64_t max, an_input_t *in, hm_error_t *err)
{
	memset(in, 0, sizeof(*in));
	if (max > AN_INPUT_MAX_LIMIT)
		return hm_error_set(err, HM_E_RANGE, -1, "%s: input cap %" PRIu64 " is above %" PRIu64, path, max,
				    (uint64_t)AN_INPUT_MAX_LIMIT);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		return hm_error_set(err, -e, -1, "%s: %s", path, strerror(e));
	}
	struct stat st;
	if (fstat(fd, &st) != 0) {
		int e = errno;
		close(fd);
		return hm_error_set(err, -e, -1, "%s: %s", path, strerror(e));
	}
	uint8_t head[8];
	size_t hn;
	int rc = read_some(fd, head, sizeof(head), &hn, path, err);
	if (rc == 0) {
		uint32_t m = hn >= 4 ? (uint32_t)head[0] | (uint32_t)head[1] << 8 | (uint32_t)head[2] << 16 |
						 (uint32_t)head[3] << 24
				     : 0;
		if (m == ZSTD_MAGIC_LE) {
			rc = read_zstd(fd, head, hn, max ? max : AN_INPUT_ZSTD_MAX_DEFAULT, path, in, err);
		} else {
			rc = check_qevm(head, hn, path, "", err);
			if (rc == 0)
				rc = read_plain(fd, &st, head, hn, max ? max : AN_INPUT_MAX_DEFAULT, path, in, err);
		}
	}
	close(fd);
	if (rc < 0)
		memset(in, 0, sizeof(*in));
	else if (!in->data)
		in->data = (const uint8_t *)"";
	return rc;
}

int an_input_open(const char *path, an_input_t *in, hm_error_t *err)
{
	return an_input_open_max(path, 0, in, err);
}

void an_input_close(an_input_t *in)
{
	if (!in)
		return;
	if (in->mapped_)
		buf_free(in->map_, in->maplen_);
	memset(in, 0, sizeof(*in));
}

/* ------------------------------------------------------------ byte sources */

struct an_fd_source {
	an_source_t pub;        /* what the walker reads */
	an_source_t fdsrc;      /* the fd as a raw source (an_fd_source_new) */
	const an_source_t *raw; /* the raw bytes */
	int fd;
	char name[256];
	uint8_t head[8];        /* read to tell zstd from QEVM, handed out first */
	size_t head_len, head_pos;
	bool compressed;
	ZSTD_DCtx *dc;
	uint8_t *zin;
	ZSTD_inBuffer ib;
	bool zeof;
	size_t zret;            /* ZSTD_decompressStream's last hint (0: frame ended) */
	uint8_t first[4];       /* the first decompressed bytes (magic check) */
	size_t nfirst;
	uint64_t raw_bytes;
};

static int64_t fd_read(void *ctx, uint8_t *buf, size_t n, hm_error_t *err)
{
	struct an_fd_source *s = ctx;
	for (;;) {
		ssize_t k = read(s->fd, buf, n);
		if (k >= 0)
			return k;
		if (errno == EINTR)
			continue;
		int e = errno;
		return hm_error_set(err, -e, (int64_t)s->raw_bytes, "%s: read: %s", s->name, strerror(e));
	}
}

/* Raw bytes: the head first, then the source. */
static int64_t raw_read(struct an_fd_source *s, uint8_t *buf, size_t n, hm_error_t *err)
{
	if (s->head_pos < s->head_len) {
		size_t k = s->head_len - s->head_pos < n ? s->head_len - s->head_pos : n;
		memcpy(buf, s->head + s->head_pos, k);
		s->head_pos += k;
		return (int64_t)k;
	}
	int64_t k = s->raw->read(s->raw->ctx, buf, n, err);
	if (k > 0)
		s->raw_bytes += (uint64_t)k;
	return k;
}

static int64_t plain_read(void *ctx, uint8_t *buf, size_t n, hm_error_t *err)
{
	return raw_read(ctx, buf, n, err);
}

static int64_t zstd_read(void *ctx, uint8_t *buf, size_t n, hm_error_t *err)
{
	struct an_fd_source *s = ctx;
	ZSTD_outBuffer ob = {buf, n, 0};
	while (ob.pos == 0) {
		if (s->ib.pos == s->ib.size && !s->zeof) {
			int64_t k = raw_read(s, s->zin, READ_PIECE, err);
			if (k < 0)
				return k;
			s->ib.size = (size_t)k;
			s->ib.pos = 0;
			s->zeof = k == 0;
		}
		if (s->ib.pos == s->ib.size && s->zeof) {
			if (s->zret != 0)
				return hm_error_set(err, HM_E_TRUNCATED, (int64_t)s->raw_bytes,
						    "%s: zstd: the compressed stream ends inside a frame", s->name);
			return 0;
		}
		size_t in_before = s->ib.pos;
		s->zret = ZSTD_decompressStream(s->dc, &ob, &s->ib);
		if (ZSTD_isError(s->zret))
			return hm_error_set(err, HM_E_FORMAT, (int64_t)(s->raw_bytes - (s->ib.size - s->ib.pos)),
					    "%s: zstd: %s%s", s->name, ZSTD_getErrorName(s->zret),
					    ZSTD_getErrorCode(s->zret) == ZSTD_error_frameParameter_windowTooLarge
						    ? " (the decoder's window is limited to 2^" STR(
							      AN_INPUT_ZSTD_WINDOW_LOG_MAX) " bytes)"
						    : "");
		if (ob.pos == 0 && s->ib.pos == in_before && s->ib.pos < s->ib.size)
			return hm_error_set(err, HM_E_FORMAT, (int64_t)s->raw_bytes, "%s: zstd: no progress", s->name);
	}
	for (size_t i = 0; s->nfirst < 4 && i < ob.pos; i++)
		s->first[s->nfirst++] = buf[i];
	if (s->nfirst == 4 && hm_load_be32(s->first) != QEVM_MAGIC) {
		s->nfirst = 5; /* report once; later reads fail the same way */
		return check_qevm(s->first, 4, s->name, " of the decompressed stream", err);
	}
	if (s->nfirst == 5)
		return HM_E_MAGIC;
	return (int64_t)ob.pos;
}

int an_src_source_new(const an_source_t *raw, const char *name, an_fd_source_t **out, hm_error_t *err)
{
	*out = NULL;
	struct an_fd_source *s = calloc(1, sizeof(*s));
	if (!s)
		return hm_error_set(err, -ENOMEM, -1, "%s: out of memory", name);
	snprintf(s->name, sizeof(s->name), "%s", name);
	s->raw = raw;
	s->fd = -1;
	while (s->head_len < 4) {
		int64_t k = raw->read(raw->ctx, s->head + s->head_len, 4 - s->head_len, err);
		if (k < 0) {
			free(s);
			return (int)k;
		}
		if (k == 0)
			break;
		s->head_len += (size_t)k;
	}
	s->raw_bytes = s->head_len;
	uint32_t m = s->head_len == 4 ? (uint32_t)s->head[0] | (uint32_t)s->head[1] << 8 |
						(uint32_t)s->head[2] << 16 | (uint32_t)s->head[3] << 24
				      : 0;
	s->pub.ctx = s;
	if (m != ZSTD_MAGIC_LE) {
		int rc = check_qevm(s->head, s->head_len, s->name, "", err);
		if (rc < 0) {
			free(s);
			return rc;
		}
		s->pub.read = plain_read;
		*out = s;
		return 0;
	}
	s->compressed = true;
	s->dc = ZSTD_createDCtx();
	s->zin = malloc(READ_PIECE);
	s->zret = 1;
	if (!s->dc || !s->zin) {
		an_fd_source_free(s);
		return hm_error_set(err, -ENOMEM, -1, "%s: out of memory", name);
	}
	size_t z = ZSTD_DCtx_setParameter(s->dc, ZSTD_d_windowLogMax, AN_INPUT_ZSTD_WINDOW_LOG_MAX);
	if (ZSTD_isError(z)) {
		an_fd_source_free(s);
		return hm_error_set(err, -EINVAL, -1, "%s: zstd: %s", name, ZSTD_getErrorName(z));
	}
	s->ib = (ZSTD_inBuffer){s->zin, 0, 0};
	memcpy(s->zin, s->head, s->head_len);
	s->ib.size = s->head_len;
	s->head_pos = s->head_len;
	s->pub.read = zstd_read;
	*out = s;
	return 0;
}

int an_fd_source_new(int fd, const char *name, an_fd_source_t **out, hm_error_t *err)
{
	/* the raw source lives inside the object it makes: built in two steps */
	struct an_fd_source tmp = {.fd = fd};
	snprintf(tmp.name, sizeof(tmp.name), "%s", name);
	tmp.fdsrc = (an_source_t){fd_read, &tmp};
	int rc = an_src_source_new(&tmp.fdsrc, name, out, err);
	if (rc < 0)
		return rc;
	struct an_fd_source *s = *out;
	s->fd = fd;
	s->fdsrc = (an_source_t){fd_read, s};
	s->raw = &s->fdsrc;
	return 0;
}

const an_source_t *an_fd_source_get(an_fd_source_t *s)
{
	return &s->pub;
}

bool an_fd_source_compressed(const an_fd_source_t *s)
{
	return s->compressed;
}

uint64_t an_fd_source_raw_bytes(const an_fd_source_t *s)
{
	return s->raw_bytes;
}

void an_fd_source_free(an_fd_source_t *s)
{
	if (!s)
		return;
	ZSTD_freeDCtx(s->dc);
	free(s->zin);
	free(s);
}
