/* SPDX-License-Identifier: MIT */
/* Shared test helpers (see testutil.h). */
#include "testutil.h"

#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
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

static char *slurp_fd(int fd)
{
	size_t cap = 4096, len = 0;
	char *buf = malloc(cap);
	ssize_t n;
	if (!buf)
		return NULL;
	while ((n = read(fd, buf + len, cap - len - 1)) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		len += (size_t)n;
		if (cap - len < 2) {
			char *nb = realloc(buf, cap * 2);
			if (!nb)
				break;
			buf = nb;
			cap *= 2;
		}
	}
	buf[len] = '\0';
	return buf;
}

int tu_run(const char *cmdline, char **out, char **err)
{
	char *dir = tu_mkdtemp();
	char ofile[4200], efile[4200], cmd[16384];
	int status, rc;
	if (!dir)
		return -1;
	snprintf(ofile, sizeof(ofile), "%s/out", dir);
	snprintf(efile, sizeof(efile), "%s/err", dir);
	snprintf(cmd, sizeof(cmd), "( %s ) >'%s' 2>'%s' </dev/null", cmdline, ofile, efile);
	status = system(cmd);
	if (status == -1)
		rc = -1;
	else if (WIFEXITED(status))
		rc = WEXITSTATUS(status);
	else if (WIFSIGNALED(status))
		rc = 128 + WTERMSIG(status);
	else
		rc = -1;
	if (out) {
		int fd = open(ofile, O_RDONLY);
		*out = fd >= 0 ? slurp_fd(fd) : strdup("");
		if (fd >= 0)
			close(fd);
	}
	if (err) {
		int fd = open(efile, O_RDONLY);
		*err = fd >= 0 ? slurp_fd(fd) : strdup("");
		if (fd >= 0)
			close(fd);
	}
	tu_rmdir(dir);
	free(dir);
	return rc;
}

const char *tu_bin(void)
{
	const char *b = getenv("HPTMIG_BIN");
	return (b && *b) ? b : "hptmig";
}

char *tu_mkdtemp(void)
{
	char tmpl[] = "/tmp/hptmig-test-XXXXXX";
	char *d = mkdtemp(tmpl);
	return d ? strdup(d) : NULL;
}

void tu_rmdir(const char *dir)
{
	char cmd[4200];
	if (!dir || strncmp(dir, "/tmp/hptmig-test-", 17) != 0)
		return;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		return;
}

char *tu_tmp;

int tu_setup_tmp(void **state)
{
	(void)state;
	signal(SIGPIPE, SIG_IGN);
	tu_tmp = tu_mkdtemp();
	return tu_tmp ? 0 : -1;
}

int tu_teardown_tmp(void **state)
{
	(void)state;
	tu_rmdir(tu_tmp);
	free(tu_tmp);
	tu_tmp = NULL;
	return 0;
}
