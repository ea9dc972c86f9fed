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

/* Seconds (wall and CPU) of every run, per side. */
struct times {
	double *t_read, *t_memcpy, *t_file, *t_walk, *t_state, *c_state, *c_file, *c_read;
};

static bool times_alloc(struct times *t, int runs)
{
	double **all[] = {&t->t_read, &t->t_memcpy, &t->t_file, &t->t_walk,
			  &t->t_state, &t->c_state, &t->c_file, &t->c_read};
	bool ok = true;
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		ok &= (*all[i] = calloc((size_t)runs, sizeof(double))) != NULL;
	return ok;
}

static void times_free(struct times *t)
{
	free(t->t_read);
	free(t->t_memcpy);
	free(t->t_file);
	free(t->t_walk);
	free(t->t_state);
	free(t->c_state);
	free(t->c_file);
	free(t->c_read);
}

/* analyze plain (map + walk + table + digest), with the given options. */
static int analyze_file(const char *plain, unsigned opts, hm_error_t *err)
{
	an_input_t fin;
	an_report_t *rep = NULL;
	if (an_input_open(plain, &fin, err) < 0)
		return -1;
	int rc = an_analyze(fin.data, fin.len, opts, &rep, err) < 0 ? -1 : 0;
	if (rc == 0 && (opts & AN_OPT_STATE) && !rep->state_text)
		rc = hm_error_set(err, -EINVAL, -1, "no state text");
	an_report_free(rep);
	an_input_close(&fin);
	return rc;
}

/*
 * Run r: the baselines (read() the file, memcpy it), then ours (analyze
 * the file, the walk alone over the bytes in memory, --state). dig and
 * valid: what the walk found.
 */
static int measure_once(struct times *t, int r, const char *plain, uint8_t *buf, uint8_t *copy,
			size_t len, char dig[65], uint64_t *valid, hm_error_t *err)
{
	uint64_t t0 = hm_now_ns();
	double c0 = cpu_now();
	if (read_whole(plain, buf, len) < 0)
		return hm_error_set(err, -EIO, -1, "%s: read failed", plain);
	t->t_read[r] = (double)(hm_now_ns() - t0) / 1e9;
	t->c_read[r] = cpu_now() - c0;
	t0 = hm_now_ns();
	memcpy(copy, buf, len);
	t->t_memcpy[r] = (double)(hm_now_ns() - t0) / 1e9;
	t0 = hm_now_ns();
	c0 = cpu_now();
	if (analyze_file(plain, 0, err) != 0)
		return -1;
	t->t_file[r] = (double)(hm_now_ns() - t0) / 1e9;
	t->c_file[r] = cpu_now() - c0;
	an_report_t *rep = NULL;
	t0 = hm_now_ns();
	if (an_analyze(copy, len, 0, &rep, err) < 0) {
		an_report_free(rep);
		return -1;
	}
	t->t_walk[r] = (double)(hm_now_ns() - t0) / 1e9;
	hm_hex(rep->htab.digest, HM_SHA256_LEN, dig);
	*valid = rep->htab.valid;
	an_report_free(rep);
	t0 = hm_now_ns();
	c0 = cpu_now();
	if (analyze_file(plain, AN_OPT_STATE, err) != 0)
		return -1;
	t->t_state[r] = (double)(hm_now_ns() - t0) / 1e9;
	t->c_state[r] = cpu_now() - c0;
	return 0;
}

/* QEMU's analyze-migration.py -d state on plain, timed into o. */
static int time_qemu_analyzer(const char *qemu_py, const char *plain, double bs, double cs,
			      json_t *o)
{
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
		return -1;
	}
	json_object_set_new(o, "qemu_analyzer_state_s", json_real(tq));
	json_object_set_new(o, "speedup_state_vs_qemu_analyzer", json_real(tq / bs));
	json_object_set_new(o, "qemu_analyzer_state_cpu_s", json_real(cq));
	json_object_set_new(o, "speedup_state_cpu_vs_qemu_analyzer", json_real(cq / cs));
	return 0;
}

/* The result object from the best of each side's runs. */
static json_t *result_json(const struct times *t, int runs, const char *file, size_t len,
			   const char *dig, uint64_t valid)
{
	double mb = (double)len / 1e6;
	double br = best(t->t_read, runs), bm = best(t->t_memcpy, runs), bf = best(t->t_file, runs),
	       bw = best(t->t_walk, runs), bs = best(t->t_state, runs);
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
	json_object_set_new(o, "read_cpu_s", json_real(best(t->c_read, runs)));
	json_object_set_new(o, "analyze_file_cpu_s", json_real(best(t->c_file, runs)));
	json_object_set_new(o, "analyze_state_cpu_s", json_real(best(t->c_state, runs)));
	/* ratios > 1: analyze is slower than the baseline by that factor */
	json_object_set_new(o, "ratio_analyze_file_vs_read", json_real(bf / br));
	json_object_set_new(o, "ratio_analyze_walk_vs_memcpy", json_real(bw / bm));
	json_object_set_new(o, "ratio_state_vs_read", json_real(bs / br));
	return o;
}

/* --file, --runs, --qemu-analyzer; the fixture when no --file. 0 or an exit code. */
static int parse_args(int argc, char **argv, const char **file, int *runs, const char **qemu_py,
		      char *fixture, size_t fixture_len)
{
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--file") == 0 && i + 1 < argc) {
			*file = argv[++i];
		} else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc) {
			*runs = atoi(argv[++i]);
			if (*runs < 1 || *runs > 100) {
				tool_fail("bench analyze", "--runs takes 1..100");
				return 2;
			}
		} else if (strcmp(argv[i], "--qemu-analyzer") == 0 && i + 1 < argc) {
			*qemu_py = argv[++i];
		} else {
			tool_fail("bench analyze",
				  "usage: hptmig bench analyze [--file F] [--runs N] [--qemu-analyzer PATH] [--json]");
			return 2;
		}
	}
	if (!*file) {
		if (!find_fixture(fixture, fixture_len)) {
			tool_fail("bench analyze", "no --file and the QEMU fixtures were not found (set HPTMIG_SHARED_DIR)");
			return 1;
		}
		*file = fixture;
	}
	return 0;
}

/* The plain file every side reads: file itself, or a decompressed copy
 * (*tmp set: the caller unlinks it). *len: its size. 0 or an exit code. */
static int make_plain(const char *file, char *plain, size_t plain_len, bool *tmp, size_t *len)
{
	hm_error_t err;
	hm_error_clear(&err);
	an_input_t in;
	if (an_input_open(file, &in, &err) < 0) {
		tool_fail_error("bench analyze", &err);
		return 1;
	}
	*tmp = in.compressed;
	if (*tmp) {
		const char *td = getenv("TMPDIR");
		snprintf(plain, plain_len, "%s/hptmig-bench-analyze-%ld.mig", td && *td ? td : "/tmp",
			 (long)getpid());
		FILE *f = fopen(plain, "wb");
		if (!f || fwrite(in.data, 1, in.len, f) != in.len || fclose(f) != 0) {
			tool_fail("bench analyze", "%s: %s", plain, strerror(errno));
			an_input_close(&in);
			return 1;
		}
	} else {
		snprintf(plain, plain_len, "%s", file);
	}
	*len = in.len;
	an_input_close(&in);
	return 0;
}

static int run(int argc, char **argv, json_t **result)
{
	const char *file = NULL, *qemu_py = NULL;
	char fixture[PATH_MAX], plain[PATH_MAX];
	int runs = 5;
	bool tmp = false;
	size_t len = 0;
	int status = parse_args(argc, argv, &file, &runs, &qemu_py, fixture, sizeof(fixture));
	if (status == 0)
		status = make_plain(file, plain, sizeof(plain), &tmp, &len);
	if (status)
		return status;
	status = 1;
	struct times t = {0};
	uint8_t *buf = malloc(len ? len : 1), *copy = malloc(len ? len : 1);
	if (!buf || !copy || !times_alloc(&t, runs)) {
		tool_fail("bench analyze", "out of memory");
		goto out;
	}
	memset(buf, 0, len);
	memset(copy, 0, len);
	char dig[65] = "";
	uint64_t valid = 0;
	hm_error_t err;
	hm_error_clear(&err);
	for (int r = 0; r < runs; r++) {
		if (measure_once(&t, r, plain, buf, copy, len, dig, &valid, &err) != 0) {
			tool_fail_error("bench analyze", &err);
			goto out;
		}
	}
	json_t *o = result_json(&t, runs, file, len, dig, valid);
	if (qemu_py && time_qemu_analyzer(qemu_py, plain, best(t.t_state, runs),
					  best(t.c_state, runs), o) != 0) {
		json_decref(o);
		goto out;
	}
	*result = o;
	status = 0;
out:
	if (tmp)
		unlink(plain);
	free(buf);
	free(copy);
	times_free(&t);
	return status;
}

const struct hm_bench hm_bench_analyze = {
	.name = "analyze",
	.summary = "analyze a real QEMU stream vs read()/memcpy of the same file (MB/s, ratios)",
	.usage = "hptmig bench analyze [--file F] [--runs N] [--qemu-analyzer PATH] [--json]",
	.run = run,
};
