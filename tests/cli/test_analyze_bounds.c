/* SPDX-License-Identifier: MIT */
/*
 * CLI: `hptmig analyze` stays within docs/limits.md ("analyze") on hostile
 * input, measured on the built binary: the child's peak RSS (ru_maxrss from
 * wait4) under 64 MiB + 4 bytes per input byte (512 MiB for .zst input),
 * one clear error naming the cap, and never a signal death, also when the
 * file is truncated while being read. Sanitizer builds check everything but
 * the RSS figures (ASan's shadow and quarantine are not ours).
 */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#include "../analyze/streamgen.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

#define MIB (UINT64_C(1) << 20)
/* Sanitizer builds (no RSS check) walk smaller streams: same paths, a fifth
 * of the time. */
#define SCALE (SANITIZED ? 5u : 1u)

struct child {
	int status;
	long maxrss_kb;
	char *out, *err;
};

static char *slurp(const char *path)
{
	uint8_t *d = NULL;
	size_t n = 0;
	if (tu_read_file(path, &d, &n) != 0)
		return strdup("");
	char *s = malloc(n + 1);
	assert_non_null(s);
	memcpy(s, d, n);
	s[n] = 0;
	free(d);
	return s;
}

/*
 * Start `hptmig analyze <args...>` with stdout and stderr to files; when
 * mid is given it is called after the start (e.g. to truncate the input).
 * Outside sanitizer builds the child's address space is limited to 3 GiB so
 * that the unbounded behaviour this file guards against fails fast instead
 * of eating the shared machine.
 */
static void run_child(const char *const *args, struct child *c, void (*mid)(void *), void *opaque)
{
	/* The child's ru_maxrss includes what it shared with us between fork
	 * and exec: keep this process well under every limit checked (all are
	 * 64 MiB or more), so that only the binary can exceed one. */
	malloc_trim(0);
	long pages = 0, resident = 0;
	FILE *sf = fopen("/proc/self/statm", "r");
	assert_non_null(sf);
	assert_int_equal(fscanf(sf, "%ld %ld", &pages, &resident), 2);
	fclose(sf);
	if (!SANITIZED && (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE) > 32 * MIB)
		fail_msg("the test process has %ld KiB resident: its child's peak RSS would not be the binary's",
			 resident * sysconf(_SC_PAGESIZE) / 1024);
	char o[4200], e[4200];
	snprintf(o, sizeof(o), "%s/child.out", tu_tmp);
	snprintf(e, sizeof(e), "%s/child.err", tu_tmp);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int fo = open(o, O_WRONLY | O_CREAT | O_TRUNC, 0644), fe = open(e, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fo < 0 || fe < 0 || dup2(fo, 1) < 0 || dup2(fe, 2) < 0)
			_exit(127);
		if (!SANITIZED) {
			struct rlimit rl = {(rlim_t)3 << 30, (rlim_t)3 << 30};
			setrlimit(RLIMIT_AS, &rl);
		}
		char *argv[16] = {strdup(tu_bin()), strdup("analyze")};
		int n = 2;
		for (int i = 0; args[i] && n < 15; i++)
			argv[n++] = strdup(args[i]);
		argv[n] = NULL;
		execv(tu_bin(), argv);
		_exit(127);
	}
	if (mid)
		mid(opaque);
	struct rusage ru;
	pid_t w;
	do
		w = wait4(pid, &c->status, 0, &ru);
	while (w < 0 && errno == EINTR);
	assert_int_equal(w, pid);
	c->maxrss_kb = ru.ru_maxrss;
	c->out = slurp(o);
	c->err = slurp(e);
}

static void child_free(struct child *c)
{
	free(c->out);
	free(c->err);
}

/* Exited (no signal) with this status; stderr one line containing want. */
static void expect_exit(const struct child *c, int code, const char *want)
{
	if (WIFSIGNALED(c->status))
		fail_msg("killed by signal %d; stderr: %s", WTERMSIG(c->status), c->err);
	assert_true(WIFEXITED(c->status));
	if (WEXITSTATUS(c->status) != code)
		fail_msg("exit %d, expected %d; stderr: %s", WEXITSTATUS(c->status), code, c->err);
	if (want) {
		if (!strstr(c->err, want))
			fail_msg("stderr lacks '%s': %s", want, c->err);
		const char *nl = strchr(c->err, '\n');
		assert_true(nl && nl[1] == 0);
	}
}

static void expect_rss(const struct child *c, uint64_t limit, const char *what)
{
	print_message("%s: peak RSS %ld KiB (limit %llu KiB)%s\n", what, c->maxrss_kb,
		      (unsigned long long)(limit >> 10), SANITIZED ? ", not checked in a sanitizer build" : "");
	if (!SANITIZED && (uint64_t)c->maxrss_kb * 1024 > limit)
		fail_msg("%s: peak RSS %ld KiB above %llu KiB", what, c->maxrss_kb, (unsigned long long)(limit >> 10));
}

static uint64_t plain_limit(uint64_t n)
{
	return 64 * MIB + 4 * n;
}

/* Write the stream to path and free it (see run_child); its length. */
static size_t write_sg(const char *path, struct sg *s)
{
	assert_int_equal(tu_write_file(path, s->p, s->len), 0);
	size_t n = s->len;
	free(s->p);
	memset(s, 0, sizeof(*s));
	return n;
}

static void copy_file(const char *from, const char *to)
{
	int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(in >= 0 && out >= 0);
	static char buf[1 << 16];
	ssize_t k;
	while ((k = read(in, buf, sizeof(buf))) > 0)
		assert_int_equal(write(out, buf, (size_t)k), k);
	assert_int_equal(k, 0);
	close(in);
	assert_int_equal(close(out), 0);
}

/* ------------------------------------------------------------- table */

#define FAR_N (1000000u / SCALE) /* 24 MB of chunks, each in a group of its own */

/* A stream whose spapr/htab (shift 36: 2^32 slots) gets n one-entry chunks
 * at slots spread over the whole table; invalidate_all then sends invalid
 * runs over every slot. Valid entries in slot order. */
static void build_far_n(struct sg *s, uint32_t n, bool invalidate_all)
{
	sg_header(s);
	sg_config(s, "pseries-test");
	sg_start(s, 0x01, 1, "spapr/htab", 0, 1);
	sg_be32(s, 36);
	sg_footer(s, 1);
	sg_part(s, 0x03, 1);
	sg_be32(s, 0);
	uint64_t stride = (UINT64_C(1) << 32) / n;
	for (uint32_t i = 0; i < n; i++) {
		sg_be32(s, (uint32_t)(i * stride));
		sg_be16(s, 1);
		sg_be16(s, 0);
		sg_hpte(s, 0x4000000000000001ull | (uint64_t)i << 7, 0x1000 + i);
	}
	if (invalidate_all)
		for (uint64_t at = 0; at < (UINT64_C(1) << 32); at += 65535) {
			uint64_t run = (UINT64_C(1) << 32) - at < 65535 ? (UINT64_C(1) << 32) - at : 65535;
			sg_be32(s, (uint32_t)at);
			sg_be16(s, 0);
			sg_be16(s, (uint16_t)run);
		}
	sg_be32(s, 0);
	sg_be32(s, 0);
	sg_footer(s, 1);
	sg_u8(s, 0x00);
}

static void build_far(struct sg *s, bool invalidate_all)
{
	build_far_n(s, FAR_N, invalidate_all);
}

static void test_sparse_table_worst_case(void **state)
{
	(void)state;
	for (int inval = 0; inval < 2; inval++) {
		struct sg s = {0};
		build_far(&s, inval);
		char path[4200];
		snprintf(path, sizeof(path), "%s/far.mig", tu_tmp);
		size_t len = write_sg(path, &s);
		struct child c;
		const char *args[] = {path, "--json", NULL};
		run_child(args, &c, NULL, NULL);
		expect_exit(&c, 0, NULL);
		json_t *j = json_loads(c.out, 0, NULL);
		assert_non_null(j);
		json_t *h = json_object_get(j, "htab");
		assert_int_equal(json_integer_value(json_object_get(h, "shift")), 36);
		assert_int_equal(json_integer_value(json_object_get(h, "valid_sent")), FAR_N);
		assert_int_equal(json_integer_value(json_object_get(h, "valid")), inval ? 0 : FAR_N);
		json_decref(j);
		expect_rss(&c, plain_limit(len), inval ? "1M far-apart entries, then all invalidated"
						       : "1M one-entry chunks at far-apart slots");
		child_free(&c);
		if (inval)
			continue;
		/* --htab lists every entry, streamed: JSON and text */
		for (int as_json = 0; as_json < 2; as_json++) {
			const char *hargs[] = {path, "--htab", as_json ? "--json" : NULL, NULL};
			run_child(hargs, &c, NULL, NULL);
			expect_exit(&c, 0, NULL);
			size_t count = 0, nl = as_json ? 8 : 4;
			const char *needle = as_json ? "{\"slot\":" : " V=4";
			/* a plain loop: sanitizers' strstr is linear in what is left */
			for (const char *q = c.out; *q; q++)
				if (*q == needle[0] && strncmp(q, needle, nl) == 0)
					count++;
			assert_int_equal(count, FAR_N);
			expect_rss(&c, plain_limit(len), as_json ? "the same, --htab --json" : "the same, --htab");
			child_free(&c);
		}
	}
}

/* ------------------------------------------------------------- vmdesc */

/* Header, EOF, then a vmdesc of `json` (any size). */
static void write_vmdesc_stream(const char *path, const char *json, size_t jlen)
{
	struct sg s = {0};
	sg_header(&s);
	sg_u8(&s, 0x00);
	sg_u8(&s, 0x06);
	sg_be32(&s, (uint32_t)jlen);
	sg_bytes(&s, json, jlen);
	write_sg(path, &s);
}

static char *repeat_json(const char *head, const char *item, size_t n, const char *tail, size_t *len)
{
	size_t hl = strlen(head), il = strlen(item), tl = strlen(tail);
	char *j = malloc(hl + n * (il + 1) + tl + 1);
	assert_non_null(j);
	char *p = j;
	memcpy(p, head, hl);
	p += hl;
	for (size_t i = 0; i < n; i++) {
		if (i)
			*p++ = ',';
		memcpy(p, item, il);
		p += il;
	}
	memcpy(p, tail, tl + 1);
	*len = (size_t)(p - j) + tl;
	return j;
}

static void test_vmdesc_bombs(void **state)
{
	(void)state;
	char path[4200];
	snprintf(path, sizeof(path), "%s/vd.mig", tu_tmp);
	const struct {
		const char *what, *item, *want;
		size_t n;
	} cases[] = {
		{"60 MB vmdesc of {}", "{}", "bytes of JSON, more than the cap", 20000000},
		{"3.6 MB vmdesc of 1.2M values", "[]", "JSON values", 1200000},
		{"vmdesc nested 1000 deep", NULL, "nested deeper than the cap", 1000},
	};
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		size_t len;
		char *j;
		if (cases[k].item) {
			j = repeat_json("{\"page_size\":4096,\"devices\":[],\"x\":[", cases[k].item, cases[k].n, "]}", &len);
		} else {
			len = 2 * cases[k].n + 2;
			j = malloc(len + 1);
			assert_non_null(j);
			j[0] = '{';
			memset(j + 1, '[', cases[k].n);
			memset(j + 1 + cases[k].n, ']', cases[k].n);
			j[len - 1] = '}';
			j[len] = 0;
		}
		write_vmdesc_stream(path, j, len);
		free(j);
		struct child c;
		const char *args[] = {path, NULL};
		run_child(args, &c, NULL, NULL);
		expect_exit(&c, 1, cases[k].want);
		expect_rss(&c, plain_limit(len), cases[k].what);
		child_free(&c);
	}
}

/* ------------------------------------------------------------- state */

#define BIG_ARRAY 10000000u

static void test_state_big_array(void **state)
{
	(void)state;
	char vd[512];
	snprintf(vd, sizeof(vd),
		 "{\"page_size\":4096,\"devices\":[{\"name\":\"big\",\"instance_id\":0,\"vmsd_name\":\"big\","
		 "\"version\":1,\"fields\":[{\"name\":\"a\",\"type\":\"uint8\",\"size\":1,\"array_len\":%u}]}]}",
		 BIG_ARRAY);
	struct sg s = {0};
	sg_header(&s);
	sg_config(&s, "pseries-test");
	sg_start(&s, 0x04, 1, "big", 0, 1);
	uint8_t *zero = calloc(1, BIG_ARRAY);
	assert_non_null(zero);
	sg_bytes(&s, zero, BIG_ARRAY);
	free(zero);
	sg_footer(&s, 1);
	sg_u8(&s, 0x00);
	sg_vmdesc(&s, vd);
	char path[4200];
	snprintf(path, sizeof(path), "%s/big.mig", tu_tmp);
	size_t len = write_sg(path, &s);

	struct child c;
	const char *plain[] = {path, NULL};
	run_child(plain, &c, NULL, NULL);
	expect_exit(&c, 0, NULL); /* walking it is cheap */
	expect_rss(&c, plain_limit(len), "10 MB array, no --state");
	child_free(&c);

	const char *st[] = {path, "--state", NULL};
	run_child(st, &c, NULL, NULL);
	expect_exit(&c, 1, "decoded state (--state) needs more than its cap");
	expect_rss(&c, plain_limit(len), "10 MB array, --state");
	child_free(&c);

	const char *sj[] = {path, "--state", "--json", NULL};
	run_child(sj, &c, NULL, NULL);
	expect_exit(&c, 1, "decoded state (--state) needs more than its cap");
	expect_rss(&c, plain_limit(len), "10 MB array, --state --json");
	child_free(&c);
}

/* ------------------------------------------------------------- input */

/* zstd of "QEVM", version 3 and then `zeros` bytes of zeros (qevm false:
 * zeros only), made here with libzstd, 1 MiB at a time. */
static void write_zstd_bomb(const char *path, uint64_t zeros, bool qevm)
{
	ZSTD_CCtx *cc = ZSTD_createCCtx();
	assert_non_null(cc);
	ZSTD_CCtx_setParameter(cc, ZSTD_c_compressionLevel, 1);
	size_t piece = 1 << 20, ocap = ZSTD_CStreamOutSize();
	uint8_t *zero = calloc(1, piece), *ob = malloc(ocap);
	assert_non_null(zero);
	assert_non_null(ob);
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	uint8_t hdr[8] = {'Q', 'E', 'V', 'M', 0, 0, 0, 3};
	uint64_t left = zeros;
	bool first = qevm;
	for (;;) {
		ZSTD_inBuffer in;
		if (first)
			in = (ZSTD_inBuffer){hdr, sizeof(hdr), 0};
		else
			in = (ZSTD_inBuffer){zero, left < piece ? (size_t)left : piece, 0};
		if (!first)
			left -= in.size;
		first = false;
		ZSTD_EndDirective mode = left ? ZSTD_e_continue : ZSTD_e_end;
		size_t rem;
		do {
			ZSTD_outBuffer out = {ob, ocap, 0};
			rem = ZSTD_compressStream2(cc, &out, &in, mode);
			assert_false(ZSTD_isError(rem));
			assert_int_equal(fwrite(ob, 1, out.pos, f), out.pos);
		} while (mode == ZSTD_e_end ? rem != 0 : in.pos < in.size);
		if (!left)
			break;
	}
	assert_int_equal(fclose(f), 0);
	free(zero);
	free(ob);
	ZSTD_freeCCtx(cc);
}

static void test_zstd_bombs(void **state)
{
	(void)state;
	char path[4200];
	snprintf(path, sizeof(path), "%s/bomb.mig.zst", tu_tmp);
	struct stat st;

	/* 4 GiB of zeros after a QEVM header: stops at the first byte after
	 * the EOF record (offset 8), decompressed as it is read */
	write_zstd_bomb(path, UINT64_C(4) << 30, true);
	assert_int_equal(stat(path, &st), 0);
	print_message("zstd bomb: %lld compressed bytes for 4 GiB\n", (long long)st.st_size);
	struct child c;
	const char *def[] = {path, NULL};
	run_child(def, &c, NULL, NULL);
	expect_exit(&c, 1, "byte 0x00 after the EOF record at offset 8 is not a vmdesc");
	expect_rss(&c, 64 * MIB, "4 GiB zstd bomb");
	child_free(&c);

	/* (--max-input on a long valid stream: test_analyze_stream.c) */

	/* zeros only: not QEVM, known after the first block */
	write_zstd_bomb(path, UINT64_C(4) << 30, false);
	run_child(def, &c, NULL, NULL);
	expect_exit(&c, 1, "at offset 0 of the decompressed stream is not QEVM");
	expect_rss(&c, 64 * MIB, "4 GiB zstd bomb of zeros");
	child_free(&c);
}

static void test_zero_inputs(void **state)
{
	(void)state;
	struct child c;
	const char *dz[] = {"/dev/zero", NULL};
	run_child(dz, &c, NULL, NULL);
	expect_exit(&c, 1, "magic 0x00000000 at offset 0 is not QEVM");
	expect_rss(&c, 64 * MIB, "/dev/zero");
	child_free(&c);

	/* 4 GiB of zeros without writing them: a sparse file */
	char path[4200];
	snprintf(path, sizeof(path), "%s/zero4g", tu_tmp);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)4 << 30), 0);
	close(fd);
	const char *zf[] = {path, NULL};
	run_child(zf, &c, NULL, NULL);
	expect_exit(&c, 1, "magic 0x00000000 at offset 0 is not QEVM");
	expect_rss(&c, 64 * MIB, "4 GiB sparse file of zeros");
	child_free(&c);

	/* a real header, then zeros: EOF at offset 8 and no vmdesc after it,
	 * refused at the first byte after EOF (the stream is read as it
	 * comes, never whole: no size cap needed for its memory) */
	fd = open(path, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, "QEVM\0\0\0\3", 8, 0), 8);
	close(fd);
	run_child(zf, &c, NULL, NULL);
	expect_exit(&c, 1, "byte 0x00 after the EOF record at offset 8 is not a vmdesc");
	expect_rss(&c, 64 * MIB, "4 GiB file with a QEVM header");
	child_free(&c);
	unlink(path);

	/* --max-input on a plain stream: a small valid one passes at its size
	 * and fails one byte below; bad sizes are usage errors */
	struct sg s = {0};
	struct sg_basic o;
	sg_build_basic(&s, &o, SG_VMDESC_BASIC);
	snprintf(path, sizeof(path), "%s/basic.mig", tu_tmp);
	size_t len = write_sg(path, &s);
	char exact[32], below[32];
	snprintf(exact, sizeof(exact), "%zu", len);
	snprintf(below, sizeof(below), "%zu", len - 1);
	const char *ok[] = {path, "--max-input", exact, NULL};
	run_child(ok, &c, NULL, NULL);
	expect_exit(&c, 0, NULL);
	child_free(&c);
	const char *bad[] = {path, "--max-input", below, NULL};
	run_child(bad, &c, NULL, NULL);
	expect_exit(&c, 1, "the stream has more than");
	child_free(&c);
	const char *usage[][4] = {{path, "--max-input", "0", NULL}, {path, "--max-input", "17G", NULL},
				  {path, "--max-input", "12Q", NULL}, {path, "--max-input", NULL, NULL}};
	for (size_t i = 0; i < sizeof(usage) / sizeof(usage[0]); i++) {
		run_child(usage[i], &c, NULL, NULL);
		expect_exit(&c, 2, "--max-input needs a size");
		child_free(&c);
	}
}

/* ------------------------------------------------------------- truncation */

struct cut {
	const char *path;
	useconds_t delay;
};

static void cut_file(void *opaque)
{
	const struct cut *t = opaque;
	usleep(t->delay);
	assert_int_equal(truncate(t->path, 4096), 0);
}

static void test_truncated_while_read(void **state)
{
	(void)state;
	uint64_t seed = tu_seed("truncation delays");
	char path[4200];
	snprintf(path, sizeof(path), "%s/cut.mig", tu_tmp);
	/* A valid 32 MB stream of 1.4M one-entry chunks: walking it reads every
	 * byte for a while, which is when the old mmap'ed input raised SIGBUS
	 * once cut. */
	struct sg s = {0};
	sg_header(&s);
	sg_config(&s, "pseries-test");
	sg_start(&s, 0x01, 1, "spapr/htab", 0, 1);
	sg_be32(&s, 24);
	sg_footer(&s, 1);
	sg_part(&s, 0x03, 1);
	sg_be32(&s, 0);
	for (uint32_t i = 0; s.len < (32u << 20) / SCALE; i++) {
		sg_be32(&s, i & ((1u << 20) - 1));
		sg_be16(&s, 1);
		sg_be16(&s, 0);
		sg_hpte(&s, 0x4000000000000001ull, i);
	}
	sg_be32(&s, 0);
	sg_be32(&s, 0);
	sg_footer(&s, 1);
	sg_u8(&s, 0x00);
	char src[4200];
	snprintf(src, sizeof(src), "%s/cut.src", tu_tmp);
	write_sg(src, &s);
	int by_status[2] = {0, 0};
	for (int run = 0; run < 30; run++) {
		copy_file(src, path);
		struct cut t = {path, (useconds_t)(tu_rand(&seed) % 150000)};
		struct child c;
		const char *args[] = {path, NULL};
		run_child(args, &c, cut_file, &t);
		if (WIFSIGNALED(c.status))
			fail_msg("run %d (cut after %u us): killed by signal %d", run, (unsigned)t.delay,
				 WTERMSIG(c.status));
		assert_true(WIFEXITED(c.status));
		/* read whole before the cut: 0; cut first: one error line */
		int st = WEXITSTATUS(c.status);
		if (st != 0 && st != 1)
			fail_msg("run %d: exit %d: %s", run, st, c.err);
		if (st == 1) {
			const char *nl = strchr(c.err, '\n');
			assert_true(nl && nl[1] == 0);
		}
		by_status[st]++;
		child_free(&c);
	}
	print_message("30 runs cut while read: no signal death (%d read whole, %d cut first)\n", by_status[0],
		      by_status[1]);
}

/* The table's worst case again, compressed, decompressing to just under
 * the default cap: the whole walk stays under 512 MiB. */
static void test_zstd_worst_case(void **state)
{
	(void)state;
	struct sg s = {0};
	build_far_n(&s, (uint32_t)((112 * MIB - 4096) / 24 / SCALE), false);
	assert_true(s.len <= 112 * MIB);
	size_t zcap = ZSTD_compressBound(s.len);
	uint8_t *z = malloc(zcap);
	assert_non_null(z);
	size_t zn = ZSTD_compress(z, zcap, s.p, s.len, 1);
	assert_false(ZSTD_isError(zn));
	char path[4200];
	snprintf(path, sizeof(path), "%s/far.mig.zst", tu_tmp);
	assert_int_equal(tu_write_file(path, z, zn), 0);
	free(z);
	free(s.p);
	struct child c;
	const char *args[] = {path, "--json", NULL};
	run_child(args, &c, NULL, NULL);
	expect_exit(&c, 0, NULL);
	json_t *j = json_loads(c.out, 0, NULL);
	assert_non_null(j);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "htab"), "shift")), 36);
	assert_true(json_is_true(json_object_get(j, "compressed")));
	json_decref(j);
	expect_rss(&c, 512 * MIB, "112 MiB of one-entry chunks at far-apart slots, compressed");
	child_free(&c);
}

/* Many tiny records: COMMAND records are capped; RAM PART records of one
 * EOS item (18 bytes each) cost their record entry only. */
static void test_record_floods(void **state)
{
	(void)state;
	char path[4200];
	snprintf(path, sizeof(path), "%s/flood.mig", tu_tmp);
	struct child c;
	const char *args[] = {path, NULL};

	struct sg s = {0};
	sg_header(&s);
	sg_config(&s, "pseries-test");
	for (unsigned i = 0; i < 4000000u / SCALE; i++) { /* 20 MB of switchover-start */
		sg_u8(&s, 0x08);
		sg_be16(&s, 11);
		sg_be16(&s, 0);
	}
	sg_u8(&s, 0x00);
	size_t len = write_sg(path, &s);
	run_child(args, &c, NULL, NULL);
	expect_exit(&c, 1, "more than 4096 COMMAND records");
	expect_rss(&c, plain_limit(len), "4M COMMAND records");
	child_free(&c);

	sg_header(&s);
	sg_config(&s, "pseries-test");
	sg_start(&s, 0x01, 1, "ram", 0, 4);
	sg_be64(&s, (1u << 20) | 0x04); /* MEM_SIZE 1 MiB */
	sg_str8(&s, "ram0");
	sg_be64(&s, 1u << 20);
	sg_be64(&s, 0x10); /* EOS */
	sg_footer(&s, 1);
	uint32_t parts = 2000000u / SCALE; /* 36 MB */
	for (uint32_t i = 0; i < parts; i++) {
		sg_part(&s, 0x02, 1);
		sg_be64(&s, 0x10);
		sg_footer(&s, 1);
	}
	sg_u8(&s, 0x00);
	len = write_sg(path, &s);
	const char *jargs[] = {path, "--json", NULL};
	run_child(jargs, &c, NULL, NULL);
	expect_exit(&c, 0, NULL);
	json_t *j = json_loads(c.out, 0, NULL);
	assert_non_null(j);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "ram"), "eos")), parts + 1);
	json_decref(j);
	expect_rss(&c, plain_limit(len), "2M RAM PART records of one EOS");
	child_free(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_zero_inputs),
		cmocka_unit_test(test_zstd_bombs),
		cmocka_unit_test(test_vmdesc_bombs),
		cmocka_unit_test(test_state_big_array),
		cmocka_unit_test(test_sparse_table_worst_case),
		cmocka_unit_test(test_zstd_worst_case),
		cmocka_unit_test(test_record_floods),
		cmocka_unit_test(test_truncated_while_read),
	};
	return cmocka_run_group_tests(tests, tu_setup_tmp, tu_teardown_tmp);
}
