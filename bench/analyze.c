/* SPDX-License-Identifier: MIT */
/*
 * `hptmig bench analyze [--file F] [--runs N] [--qemu-analyzer PATH] [--json]`:
 * analyze of a real stream side by side with plainly reading the same file
 * (read() into a buffer) and copying it in memory (memcpy), in one run, as
 * MB/s and ratios; also the walk with --state decoding, and, when given the
 * path of QEMU's scripts/analyze-migration.py, QEMU's own analyser on the
 * same file. A .zst input is decompressed to a temporary file first (not
 * timed), so every side reads the same plain bytes from the page cache.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hptmig/analyze.h"
#include "tool.h"

static bool find_fixture(char *buf, size_t n)
{
	static const char rel[] = "fixtures/qemu/pseries-qemu10-p8-2g-live.mig.zst";
	char exe[PATH_MAX], cand[3][PATH_MAX];
	int k = 0;
	const char *env = getenv("HPTMIG_SHARED_DIR");
	if (env && *env)
		snprintf(cand[k++], PATH_MAX, "%s", env);
	ssize_t l = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (l > 0) {
		exe[l] = 0;
		char *slash = strrchr(exe, '/');
		if (slash)
			*slash = 0;
		/* <repo>/<build>/tools/hptmig -> <repo>/../shared */
		snprintf(cand[k++], PATH_MAX, "%.*s/../../../shared", PATH_MAX - 20, exe);
	}
	snprintf(cand[k++], PATH_MAX, "../shared");
	for (int i = 0; i < k; i++) {
		struct stat st;
		snprintf(buf, n, "%s/%s", cand[i], rel);
		if (stat(buf, &st) == 0)
			return true;
	}
	return false;
}

/* CPU seconds of this process: wall time on a shared machine says more
 * about the neighbours than about us, so both are reported. */
static double cpu_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double best(const double *v, int n)
{
	double b = v[0];
	for (int i = 1; i < n; i++)
		if (v[i] < b)
			b = v[i];
	return b;
}

static int read_whole(const char *path, uint8_t *buf, size_t len)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return -errno;
	size_t n = 0;
	while (n < len) {
		ssize_t k = read(fd, buf + n, len - n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			close(fd);
			return k < 0 ? -errno : -EIO;
		}
		n += (size_t)k;
	}
	close(fd);
	return 0;
}

static int run(int argc, char **argv, json_t **result)
{
	const char *file = NULL, *qemu_py = NULL;
	char fixture[PATH_MAX];
	int runs = 5;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--file") == 0 && i + 1 < argc) {
			file = argv[++i];
		} else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc) {
			runs = atoi(argv[++i]);
			if (runs < 1 || runs > 100) {
				tool_fail("bench analyze", "--runs takes 1..100");
				return 2;
			}
		} else if (strcmp(argv[i], "--qemu-analyzer") == 0 && i + 1 < argc) {
			qemu_py = argv[++i];
		} else {
			tool_fail("bench analyze",
				  "usage: hptmig bench analyze [--file F] [--runs N] [--qemu-analyzer PATH] [--json]");
			return 2;
		}
	}
	if (!file) {
		if (!find_fixture(fixture, sizeof(fixture))) {
			tool_fail("bench analyze", "no --file and the QEMU fixtures were not found (set HPTMIG_SHARED_DIR)");
			return 1;
		}
		file = fixture;
	}
	hm_error_t err;
	hm_error_clear(&err);
	an_input_t in;
	if (an_input_open(file, &in, &err) < 0) {
		tool_fail_error("bench analyze", &err);
		return 1;
	}
	/* The plain file every side reads. */
	char plain[PATH_MAX];
	bool tmp = in.compressed;
	if (tmp) {
		const char *td = getenv("TMPDIR");
		snprintf(plain, sizeof(plain), "%s/hptmig-bench-analyze-%ld.mig", td && *td ? td : "/tmp",
			 (long)getpid());
		FILE *f = fopen(plain, "wb");
		if (!f || fwrite(in.data, 1, in.len, f) != in.len || fclose(f) != 0) {
			tool_fail("bench analyze", "%s: %s", plain, strerror(errno));
			an_input_close(&in);
			return 1;
		}
	} else {
		snprintf(plain, sizeof(plain), "%s", file);
	}
	size_t len = in.len;
	an_input_close(&in);
	uint8_t *buf = malloc(len ? len : 1), *copy = malloc(len ? len : 1);
	double *t_read = calloc((size_t)runs, sizeof(double)), *t_memcpy = calloc((size_t)runs, sizeof(double)),
	       *t_file = calloc((size_t)runs, sizeof(double)), *t_walk = calloc((size_t)runs, sizeof(double)),
	       *t_state = calloc((size_t)runs, sizeof(double)), *c_state = calloc((size_t)runs, sizeof(double)),
	       *c_file = calloc((size_t)runs, sizeof(double)), *c_read = calloc((size_t)runs, sizeof(double));
	int status = 1;
	if (!buf || !copy || !t_read || !t_memcpy || !t_file || !t_walk || !t_state || !c_state || !c_file ||
	    !c_read) {
		tool_fail("bench analyze", "out of memory");
		goto out;
	}
	memset(buf, 0, len);
	memset(copy, 0, len);
	char dig[65] = "";
	uint64_t valid = 0;
	for (int r = 0; r < runs; r++) {
		/* baseline 1: read() the whole file into a buffer */
		uint64_t t0 = hm_now_ns();
		double c0 = cpu_now();
		if (read_whole(plain, buf, len) < 0) {
			tool_fail("bench analyze", "%s: read failed", plain);
			goto out;
		}
		t_read[r] = (double)(hm_now_ns() - t0) / 1e9;
		c_read[r] = cpu_now() - c0;
		/* baseline 2: copy it in memory */
		t0 = hm_now_ns();
		memcpy(copy, buf, len);
		t_memcpy[r] = (double)(hm_now_ns() - t0) / 1e9;
		/* ours: analyze the file (map + walk + table + digest) */
		t0 = hm_now_ns();
		c0 = cpu_now();
		an_input_t fin;
		an_report_t *rep = NULL;
		if (an_input_open(plain, &fin, &err) < 0 || an_analyze(fin.data, fin.len, 0, &rep, &err) < 0) {
			tool_fail_error("bench analyze", &err);
			an_report_free(rep);
			goto out;
		}
		an_report_free(rep);
		an_input_close(&fin);
		t_file[r] = (double)(hm_now_ns() - t0) / 1e9;
		c_file[r] = cpu_now() - c0;
		/* ours: the walk alone over the bytes in memory */
		t0 = hm_now_ns();
		if (an_analyze(copy, len, 0, &rep, &err) < 0) {
			tool_fail_error("bench analyze", &err);
			an_report_free(rep);
			goto out;
		}
		t_walk[r] = (double)(hm_now_ns() - t0) / 1e9;
		hm_hex(rep->htab.digest, HM_SHA256_LEN, dig);
		valid = rep->htab.valid;
		an_report_free(rep);
		/* ours with --state: decode every device and render it as JSON text */
		t0 = hm_now_ns();
		c0 = cpu_now();
		if (an_input_open(plain, &fin, &err) < 0 || an_analyze(fin.data, fin.len, AN_OPT_STATE, &rep, &err) < 0) {
			tool_fail_error("bench analyze", &err);
			an_report_free(rep);
			goto out;
		}
		if (!rep->state_text) {
			tool_fail("bench analyze", "no state text");
			an_report_free(rep);
			goto out;
		}
		an_report_free(rep);
		an_input_close(&fin);
		t_state[r] = (double)(hm_now_ns() - t0) / 1e9;
		c_state[r] = cpu_now() - c0;
	}
	double mb = (double)len / 1e6;
	double br = best(t_read, runs), bm = best(t_memcpy, runs), bf = best(t_file, runs), bw = best(t_walk, runs),
	       bs = best(t_state, runs);
	json_t *o = json_pack("{sssIsisssI}", "file", file, "bytes", (json_int_t)len, "runs", runs, "digest", dig,
			      "valid", (json_int_t)valid);
	json_object_set_new(o, "read_MBps", json_real(mb / br));
	json_object_set_new(o, "memcpy_MBps", json_real(mb / bm));
	json_object_set_new(o, "analyze_file_MBps", json_real(mb / bf));
	json_object_set_new(o, "analyze_walk_MBps", json_real(mb / bw));
	json_object_set_new(o, "analyze_state_MBps", json_real(mb / bs));
	json_object_set_new(o, "read_s", json_real(br));
	json_object_set_new(o, "analyze_file_s", json_real(bf));
	json_object_set_new(o, "analyze_walk_s", json_real(bw));
	json_object_set_new(o, "analyze_state_s", json_real(bs));
	json_object_set_new(o, "read_cpu_s", json_real(best(c_read, runs)));
	json_object_set_new(o, "analyze_file_cpu_s", json_real(best(c_file, runs)));
	json_object_set_new(o, "analyze_state_cpu_s", json_real(best(c_state, runs)));
	/* ratios > 1: analyze is slower than the baseline by that factor */
	json_object_set_new(o, "ratio_analyze_file_vs_read", json_real(bf / br));
	json_object_set_new(o, "ratio_analyze_walk_vs_memcpy", json_real(bw / bm));
	json_object_set_new(o, "ratio_state_vs_read", json_real(bs / br));
	if (qemu_py) {
		char cmd[PATH_MAX * 2 + 64];
		snprintf(cmd, sizeof(cmd), "python3 '%s' -f '%s' -d state > /dev/null", qemu_py, plain);
		struct rusage ru0, ru1;
		getrusage(RUSAGE_CHILDREN, &ru0);
		uint64_t t0 = hm_now_ns();
		int rc = system(cmd);
		double tq = (double)(hm_now_ns() - t0) / 1e9;
		getrusage(RUSAGE_CHILDREN, &ru1);
		double cq = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec + ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) +
			    (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec + ru1.ru_stime.tv_usec -
				     ru0.ru_stime.tv_usec) / 1e6;
		if (rc != 0) {
			tool_fail("bench analyze", "QEMU's analyser failed (status %d)", rc);
			json_decref(o);
			goto out;
		}
		json_object_set_new(o, "qemu_analyzer_state_s", json_real(tq));
		json_object_set_new(o, "speedup_state_vs_qemu_analyzer", json_real(tq / bs));
		json_object_set_new(o, "qemu_analyzer_state_cpu_s", json_real(cq));
		json_object_set_new(o, "speedup_state_cpu_vs_qemu_analyzer", json_real(cq / best(c_state, runs)));
	}
	*result = o;
	status = 0;
out:
	if (tmp)
		unlink(plain);
	free(buf);
	free(copy);
	free(t_read);
	free(t_memcpy);
	free(t_file);
	free(t_walk);
	free(t_state);
	free(c_state);
	free(c_file);
	free(c_read);
	return status;
}

const struct hm_bench hm_bench_analyze = {
	.name = "analyze",
	.summary = "analyze a real QEMU stream vs read()/memcpy of the same file (MB/s, ratios)",
	.run = run,
};
