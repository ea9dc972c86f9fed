/* SPDX-License-Identifier: MIT */
/*
 * Input files for the analyser: a plain stream is mapped read-only (read
 * once by the walk, no copy); a zstd file (detected by its magic) is
 * decompressed into memory with libzstd; a pipe is read whole. Never prints;
 * errors name the file and the system error.
 */
#include "hptmig/analyze.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#define ZSTD_MAGIC_LE 0xFD2FB528u
/* A decompressed stream above this is refused (a decompression bomb must
 * fail cleanly, not exhaust memory). */
#define AN_INPUT_MAX ((size_t)1 << 36)

static int read_all(int fd, uint8_t **out, size_t *len, const char *path, hm_error_t *err)
{
	size_t cap = 1 << 20, n = 0;
	uint8_t *b = malloc(cap);
	if (!b)
		return hm_error_set(err, -ENOMEM, -1, "%s: out of memory", path);
	for (;;) {
		if (n == cap) {
			if (cap >= AN_INPUT_MAX) {
				free(b);
				return hm_error_set(err, HM_E_RANGE, -1, "%s: larger than %zu bytes", path, AN_INPUT_MAX);
			}
			uint8_t *nb = realloc(b, cap * 2);
			if (!nb) {
				free(b);
				return hm_error_set(err, -ENOMEM, -1, "%s: out of memory", path);
			}
			b = nb;
			cap *= 2;
		}
		ssize_t k = read(fd, b + n, cap - n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			int e = errno;
			free(b);
			return hm_error_set(err, -e, -1, "%s: read: %s", path, strerror(e));
		}
		if (k == 0)
			break;
		n += (size_t)k;
	}
	*out = b;
	*len = n;
	return 0;
}

static int unzstd(const uint8_t *src, size_t slen, uint8_t **out, size_t *olen, const char *path,
		  hm_error_t *err)
{
	ZSTD_DStream *ds = ZSTD_createDStream();
	if (!ds)
		return hm_error_set(err, -ENOMEM, -1, "%s: out of memory", path);
	unsigned long long hint = ZSTD_getFrameContentSize(src, slen);
	size_t cap = (hint != ZSTD_CONTENTSIZE_UNKNOWN && hint != ZSTD_CONTENTSIZE_ERROR && hint < AN_INPUT_MAX)
			     ? (size_t)hint + 1
			     : slen * 4 + 4096;
	uint8_t *b = malloc(cap);
	if (!b) {
		ZSTD_freeDStream(ds);
		return hm_error_set(err, -ENOMEM, -1, "%s: out of memory", path);
	}
	ZSTD_initDStream(ds);
	ZSTD_inBuffer in = {src, slen, 0};
	ZSTD_outBuffer ob = {b, cap, 0};
	size_t ret = 1;
	while (in.pos < in.size || ret != 0) {
		if (ob.pos == ob.size) {
			if (cap >= AN_INPUT_MAX) {
				free(b);
				ZSTD_freeDStream(ds);
				return hm_error_set(err, HM_E_RANGE, -1, "%s: decompresses to more than %zu bytes", path,
						    AN_INPUT_MAX);
			}
			uint8_t *nb = realloc(b, cap * 2);
			if (!nb) {
				free(b);
				ZSTD_freeDStream(ds);
				return hm_error_set(err, -ENOMEM, -1, "%s: out of memory", path);
			}
			b = nb;
			cap *= 2;
			ob.dst = b;
			ob.size = cap;
		}
		size_t before_in = in.pos, before_out = ob.pos;
		ret = ZSTD_decompressStream(ds, &ob, &in);
		if (ZSTD_isError(ret)) {
			free(b);
			ZSTD_freeDStream(ds);
			return hm_error_set(err, HM_E_FORMAT, (int64_t)in.pos, "%s: zstd: %s", path,
					    ZSTD_getErrorName(ret));
		}
		if (in.pos == in.size && ret != 0 && ob.pos < ob.size && before_in == in.pos &&
		    before_out == ob.pos) {
			free(b);
			ZSTD_freeDStream(ds);
			return hm_error_set(err, HM_E_TRUNCATED, (int64_t)in.pos, "%s: zstd: truncated frame", path);
		}
	}
	ZSTD_freeDStream(ds);
	*out = b;
	*olen = ob.pos;
	return 0;
}

int an_input_open(const char *path, an_input_t *in, hm_error_t *err)
{
	memset(in, 0, sizeof(*in));
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
	const uint8_t *data = NULL;
	size_t len = 0;
	uint8_t *owned = NULL;
	void *map = NULL;
	if (S_ISREG(st.st_mode) && st.st_size > 0) {
		map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
		if (map == MAP_FAILED) {
			int e = errno;
			close(fd);
			return hm_error_set(err, -e, -1, "%s: mmap: %s", path, strerror(e));
		}
		data = map;
		len = (size_t)st.st_size;
	} else if (!S_ISREG(st.st_mode)) {
		int rc = read_all(fd, &owned, &len, path, err);
		if (rc < 0) {
			close(fd);
			return rc;
		}
		data = owned;
	}
	close(fd);
	if (len >= 4 && (uint32_t)(data[0] | data[1] << 8 | data[2] << 16 | (uint32_t)data[3] << 24) == ZSTD_MAGIC_LE) {
		uint8_t *plain = NULL;
		size_t plen = 0;
		int rc = unzstd(data, len, &plain, &plen, path, err);
		if (map)
			munmap(map, len);
		free(owned);
		if (rc < 0)
			return rc;
		in->data = plain;
		in->len = plen;
		in->map_ = plain;
		in->compressed = true;
		return 0;
	}
	in->data = data ? data : (const uint8_t *)"";
	in->len = len;
	if (map) {
		in->map_ = map;
		in->maplen_ = len;
		in->mapped_ = true;
	} else {
		in->map_ = owned;
	}
	return 0;
}

void an_input_close(an_input_t *in)
{
	if (!in)
		return;
	if (in->mapped_)
		munmap(in->map_, in->maplen_);
	else
		free(in->map_);
	memset(in, 0, sizeof(*in));
}
