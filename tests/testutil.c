/* SPDX-License-Identifier: MIT */
/* Shared test helpers (see testutil.h). */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

uint64_t tu_seed(const char *what)
{
	const char *env = getenv("HPTMIG_SEED");
	uint64_t seed;
	if (env && *env)
		seed = strtoull(env, NULL, 0);
	else
		seed = hm_now_ns() ^ ((uint64_t)getpid() << 32);
	printf("# %s: seed %llu (rerun with HPTMIG_SEED=%llu)\n", what,
	       (unsigned long long)seed, (unsigned long long)seed);
	fflush(stdout);
	return seed;
}

static const char *env_dir(const char *name, const char *fallback)
{
	const char *d = getenv(name);
	return (d && *d) ? d : fallback;
}

const char *tu_source_dir(void)
{
	return env_dir("HPTMIG_SOURCE_DIR", ".");
}

const char *tu_binary_dir(void)
{
	return env_dir("HPTMIG_BINARY_DIR", ".");
}

const char *tu_shared_dir(void)
{
	static char path[4096];
	const char *d = getenv("HPTMIG_SHARED_DIR");
	struct stat st;
	if (!d || !*d)
		return NULL;
	snprintf(path, sizeof(path), "%s/fixtures/qemu", d);
	if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
		return NULL;
	snprintf(path, sizeof(path), "%s", d);
	return path;
}

const char *tu_fixture(const char *name)
{
	static char out[8][4096];
	static int next;
	const char *shared = tu_shared_dir();
	char src[4096], dir[4096], tmp[4200], cmd[9000];
	struct stat st;
	if (!shared)
		return NULL;
	snprintf(src, sizeof(src), "%s/fixtures/qemu/%s.zst", shared, name);
	if (stat(src, &st) != 0)
		return NULL;
	snprintf(dir, sizeof(dir), "%s/fixtures", tu_binary_dir());
	mkdir(dir, 0755);
	char *dst = out[next++ % 8];
	snprintf(dst, sizeof(out[0]), "%s/%s", dir, name);
	/* Several test programs may ask at once: serialise on a lock file. */
	snprintf(tmp, sizeof(tmp), "%s/.lock", dir);
	int lfd = open(tmp, O_CREAT | O_RDWR, 0644);
	if (lfd >= 0)
		flock(lfd, LOCK_EX);
	if (stat(dst, &st) != 0) {
		snprintf(tmp, sizeof(tmp), "%s.part", dst);
		snprintf(cmd, sizeof(cmd), "zstd -q -d -f -o '%s' '%s'", tmp, src);
		if (system(cmd) != 0 || rename(tmp, dst) != 0) {
			if (lfd >= 0)
				close(lfd);
			return NULL;
		}
	}
	if (lfd >= 0)
		close(lfd);
	return dst;
}

int tu_read_file(const char *path, uint8_t **data, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return -errno;
	if (fseek(f, 0, SEEK_END) != 0) {
		fclose(f);
		return -EIO;
	}
	long n = ftell(f);
	rewind(f);
	uint8_t *buf = malloc(n > 0 ? (size_t)n : 1);
	if (!buf) {
		fclose(f);
		return -ENOMEM;
	}
	if (n > 0 && fread(buf, 1, (size_t)n, f) != (size_t)n) {
		free(buf);
		fclose(f);
		return -EIO;
	}
	fclose(f);
	*data = buf;
	*len = (size_t)n;
	return 0;
}

int tu_write_file(const char *path, const void *data, size_t len)
{
	FILE *f = fopen(path, "wb");
	if (!f)
		return -errno;
	if (len && fwrite(data, 1, len, f) != len) {
		fclose(f);
		return -EIO;
	}
	return fclose(f) == 0 ? 0 : -errno;
}
