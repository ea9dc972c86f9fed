/* SPDX-License-Identifier: MIT */
/*
 * CLI: where `hptmig rewrite` writes, on the built binary. A symlink planted
 * at the old predictable temporary name is not followed; a symlink OUT has
 * its target rewritten and stays a symlink; OUT's mode is kept (a new OUT
 * gets 0666 & ~umask); `-`, a pipe, /dev/stdout, a unix socket, /dev/null
 * and a FIFO are written straight through with a one-line note; a failure
 * leaves nothing behind.
 */
#include "testutil.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "../analyze/streamgen.h"

struct fx {
	char *dir;
	char in[4096];
	uint8_t *want; /* what rewrite IN must produce */
	size_t want_len;
};

static int run(const char *args, char **out, char **err)
{
	char cmd[16384];
	snprintf(cmd, sizeof(cmd), "'%s' %s", tu_bin(), args);
	return tu_run(cmd, out, err);
}

static int run_ok(const char *args)
{
	char *out, *err;
	int rc = run(args, &out, &err);
	if (rc != 0)
		fprintf(stderr, "hptmig %s -> %d: %s%s", args, rc, out, err);
	free(out);
	free(err);
	return rc;
}

static bool one_line(const char *s)
{
	const char *nl = strchr(s, '\n');
	return nl && nl[1] == 0;
}

static void assert_file_is(const char *path, const uint8_t *p, size_t n)
{
	uint8_t *got;
	size_t len;
	assert_int_equal(tu_read_file(path, &got, &len), 0);
	assert_int_equal(len, n);
	assert_memory_equal(got, p, n);
	free(got);
}

/* Names in dir other than the ones given (leftover temporary files). */
static int extra_files(const char *dir, const char *const *keep, size_t nkeep)
{
	DIR *d = opendir(dir);
	assert_non_null(d);
	int extra = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		bool k = false;
		for (size_t i = 0; i < nkeep; i++)
			k |= strcmp(de->d_name, keep[i]) == 0;
		if (!k) {
			fprintf(stderr, "leftover: %s/%s\n", dir, de->d_name);
			extra++;
		}
	}
	closedir(d);
	return extra;
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	f->dir = tu_mkdtemp();
	struct sg s = {0};
	struct sg_basic o;
	sg_build_basic(&s, &o, SG_VMDESC_BASIC);
	snprintf(f->in, sizeof(f->in), "%s/in.mig", f->dir);
	assert_int_equal(tu_write_file(f->in, s.p, s.len), 0);
	free(s.p);
	char args[8192], ref[4200];
	snprintf(ref, sizeof(ref), "%s/ref.mig", f->dir);
	snprintf(args, sizeof(args), "rewrite '%s' '%s'", f->in, ref);
	assert_int_equal(run_ok(args), 0);
	assert_int_equal(tu_read_file(ref, &f->want, &f->want_len), 0);
	assert_true(f->want_len > 0);
	unlink(ref);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	tu_rmdir(f->dir);
	free(f->dir);
	free(f->want);
	free(f);
	return 0;
}

/* The old code wrote OUT.tmp.<its pid>: plant a symlink there (the shell's
 * pid, which exec hands to hptmig) pointing at a victim file. */
static void test_planted_symlink_not_followed(void **state)
{
	struct fx *f = *state;
	char victim[4200], out[4200], cmd[16384];
	snprintf(victim, sizeof(victim), "%s/victim", f->dir);
	snprintf(out, sizeof(out), "%s/out.mig", f->dir);
	assert_int_equal(tu_write_file(victim, "precious\n", 9), 0);
	/* a fresh sh: its $$ is the pid hptmig gets through exec */
	snprintf(cmd, sizeof(cmd),
		 "sh -c 'ln -s \"$1\" \"$2.tmp.$$\" && exec \"$3\" rewrite \"$4\" \"$2\"' sh '%s' '%s' '%s' '%s'",
		 victim, out, tu_bin(), f->in);
	char *o, *e;
	assert_int_equal(tu_run(cmd, &o, &e), 0);
	free(o);
	free(e);
	assert_file_is(victim, (const uint8_t *)"precious\n", 9);
	assert_file_is(out, f->want, f->want_len);
	struct stat st;
	assert_int_equal(lstat(out, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	/* clean up the planted link (its name has the pid in it) */
	DIR *d = opendir(f->dir);
	struct dirent *de;
	while ((de = readdir(d))) {
		if (strncmp(de->d_name, "out.mig.tmp.", 12) == 0) {
			char p[4400];
			snprintf(p, sizeof(p), "%s/%s", f->dir, de->d_name);
			assert_int_equal(lstat(p, &st), 0);
			assert_true(S_ISLNK(st.st_mode)); /* still the link we planted */
			unlink(p);
		}
	}
	closedir(d);
	const char *keep[] = {"in.mig", "victim", "out.mig"};
	assert_int_equal(extra_files(f->dir, keep, 3), 0);
	unlink(victim);
	unlink(out);
}

/* A symlink OUT: the target is rewritten (its mode kept), the link stays. */
static void test_symlink_out_writes_target(void **state)
{
	struct fx *f = *state;
	char sub[4200], target[4300], link[4200], args[16384];
	snprintf(sub, sizeof(sub), "%s/sub", f->dir);
	assert_int_equal(mkdir(sub, 0700), 0);
	snprintf(target, sizeof(target), "%s/target.mig", sub);
	snprintf(link, sizeof(link), "%s/link.mig", f->dir);
	assert_int_equal(tu_write_file(target, "old", 3), 0);
	assert_int_equal(chmod(target, 0640), 0);
	assert_int_equal(symlink(target, link), 0);
	snprintf(args, sizeof(args), "rewrite '%s' '%s'", f->in, link);
	assert_int_equal(run_ok(args), 0);
	struct stat st;
	assert_int_equal(lstat(link, &st), 0);
	assert_true(S_ISLNK(st.st_mode));
	assert_int_equal(stat(target, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0640);
	assert_file_is(target, f->want, f->want_len);
	const char *keep[] = {"target.mig"};
	assert_int_equal(extra_files(sub, keep, 1), 0); /* the temporary file was beside the target */
	unlink(link);
	unlink(target);
	rmdir(sub);

	/* a dangling symlink is refused, and nothing is created through it */
	snprintf(args, sizeof(args), "rewrite '%s' '%s'", f->in, link);
	assert_int_equal(symlink(target, link), 0);
	char *o, *e;
	assert_int_equal(run(args, &o, &e), 1);
	assert_true(one_line(e));
	assert_non_null(strstr(e, "symlink"));
	free(o);
	free(e);
	assert_int_not_equal(access(sub, F_OK), 0);
	unlink(link);
}

/* An existing OUT keeps its mode; a new one gets 0666 & ~umask. */
static void test_mode_kept(void **state)
{
	struct fx *f = *state;
	char out[4200], args[16384];
	snprintf(out, sizeof(out), "%s/m.mig", f->dir);
	assert_int_equal(tu_write_file(out, "x", 1), 0);
	assert_int_equal(chmod(out, 0600), 0);
	snprintf(args, sizeof(args), "rewrite '%s' '%s'", f->in, out);
	assert_int_equal(run_ok(args), 0);
	struct stat st;
	assert_int_equal(stat(out, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_file_is(out, f->want, f->want_len);
	unlink(out);

	char cmd[16384], *o, *e;
	snprintf(cmd, sizeof(cmd), "umask 027 && exec '%s' rewrite '%s' '%s'", tu_bin(), f->in, out);
	assert_int_equal(tu_run(cmd, &o, &e), 0);
	assert_string_equal(e, ""); /* a regular file is read back: no note */
	free(o);
	free(e);
	assert_int_equal(stat(out, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0640);
	unlink(out);
}

/* `-` into a pipe: the stream alone on stdout, the summary and a note on
 * stderr. */
static void test_stdout_pipe(void **state)
{
	struct fx *f = *state;
	char got[4200], cmd[16384], *o, *e;
	snprintf(got, sizeof(got), "%s/got.mig", f->dir);
	snprintf(cmd, sizeof(cmd), "'%s' rewrite '%s' - --json | cat > '%s'", tu_bin(), f->in, got);
	assert_int_equal(tu_run(cmd, &o, &e), 0);
	assert_file_is(got, f->want, f->want_len);
	assert_non_null(strstr(e, "not read back"));
	assert_non_null(strstr(e, "\"status\":\"ok\""));
	assert_non_null(strstr(e, "\"read_back\":false"));
	free(o);
	free(e);
	unlink(got);

	/* /dev/stdout names the same pipe: written through it, never replaced */
	snprintf(cmd, sizeof(cmd), "'%s' rewrite '%s' /dev/stdout | cat > '%s'", tu_bin(), f->in, got);
	assert_int_equal(tu_run(cmd, &o, &e), 0);
	assert_file_is(got, f->want, f->want_len);
	assert_non_null(strstr(e, "rewrote"));
	free(o);
	free(e);
	unlink(got);
}

/* A listening unix socket (as QEMU's -incoming unix:PATH): connected to,
 * the whole stream sent; the socket file stays. */
static void test_unix_socket(void **state)
{
	struct fx *f = *state;
	char path[4200], args[16384], *o, *e;
	snprintf(path, sizeof(path), "%s/sock", f->dir);
	int l = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	assert_true(strlen(path) < sizeof(sa.sun_path));
	strcpy(sa.sun_path, path);
	assert_true(l >= 0);
	assert_int_equal(bind(l, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(l, 1), 0);
	/* the stream (a few KiB) fits the socket buffer: hptmig finishes
	 * before we accept */
	assert_true(f->want_len < 64 * 1024);
	snprintf(args, sizeof(args), "rewrite '%s' '%s'", f->in, path);
	assert_int_equal(run(args, &o, &e), 0);
	assert_non_null(strstr(e, "not read back"));
	free(o);
	free(e);
	int c = accept(l, NULL, NULL);
	assert_true(c >= 0);
	uint8_t *got = malloc(f->want_len + 1);
	size_t n = 0;
	for (;;) {
		ssize_t k = read(c, got + n, f->want_len + 1 - n);
		if (k <= 0)
			break;
		n += (size_t)k;
	}
	close(c);
	close(l);
	assert_int_equal(n, f->want_len);
	assert_memory_equal(got, f->want, n);
	free(got);
	struct stat st;
	assert_int_equal(lstat(path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	unlink(path);
}

/*
 * /dev/null (a character device) stays what it is. The symlink to it is
 * tried first: a binary that replaced OUT would replace only the link in
 * our directory and fail here, before /dev/null itself is put at risk.
 */
static void test_dev_null(void **state)
{
	struct fx *f = *state;
	struct stat before, after;
	char args[16384], *o, *e;
	char link[4200];
	snprintf(link, sizeof(link), "%s/null.mig", f->dir);
	assert_int_equal(symlink("/dev/null", link), 0);
	snprintf(args, sizeof(args), "rewrite '%s' '%s'", f->in, link);
	int rc = run_ok(args);
	assert_int_equal(lstat(link, &after), 0);
	unlink(link);
	assert_true(S_ISLNK(after.st_mode));
	assert_int_equal(rc, 0);

	assert_int_equal(stat("/dev/null", &before), 0);
	assert_true(S_ISCHR(before.st_mode));
	snprintf(args, sizeof(args), "rewrite '%s' /dev/null", f->in);
	assert_int_equal(run(args, &o, &e), 0);
	assert_true(one_line(e));
	assert_non_null(strstr(e, "not read back"));
	assert_non_null(strstr(o, "rewrote"));
	free(o);
	free(e);
	assert_int_equal(stat("/dev/null", &after), 0);
	assert_true(S_ISCHR(after.st_mode));
	assert_int_equal(after.st_rdev, before.st_rdev);
}

/* A FIFO: a reader gets the whole stream; the FIFO stays a FIFO. (The
 * reader gives up after 60 s if OUT was wrongly replaced.) */
static void test_fifo(void **state)
{
	struct fx *f = *state;
	char fifo[4200], got[4200], cmd[16384], *o, *e;
	snprintf(fifo, sizeof(fifo), "%s/fifo", f->dir);
	snprintf(got, sizeof(got), "%s/got.mig", f->dir);
	assert_int_equal(mkfifo(fifo, 0600), 0);
	snprintf(cmd, sizeof(cmd), "timeout 60 cat '%s' > '%s' & '%s' rewrite '%s' '%s'; rc=$?; wait; exit $rc", fifo, got,
		 tu_bin(), f->in, fifo);
	assert_int_equal(tu_run(cmd, &o, &e), 0);
	assert_non_null(strstr(e, "not read back"));
	free(o);
	free(e);
	assert_file_is(got, f->want, f->want_len);
	struct stat st;
	assert_int_equal(lstat(fifo, &st), 0);
	assert_true(S_ISFIFO(st.st_mode));
	unlink(fifo);
	unlink(got);
}

/* A directory OUT is refused in one line; a failed rewrite leaves neither
 * OUT nor a temporary file. */
static void test_refusals_leave_nothing(void **state)
{
	struct fx *f = *state;
	char args[16384], *o, *e;
	snprintf(args, sizeof(args), "rewrite '%s' '%s'", f->in, f->dir);
	assert_int_equal(run(args, &o, &e), 1);
	assert_true(one_line(e));
	assert_non_null(strstr(e, "not a regular file"));
	free(o);
	free(e);

	char bad[4200], out[4200];
	snprintf(bad, sizeof(bad), "%s/bad.mig", f->dir);
	snprintf(out, sizeof(out), "%s/out.mig", f->dir);
	uint8_t *copy = malloc(f->want_len);
	memcpy(copy, f->want, f->want_len);
	copy[f->want_len / 2] ^= 0x5a; /* somewhere in the RAM page or later */
	copy[0] ^= 1;                  /* and the magic: never a stream */
	assert_int_equal(tu_write_file(bad, copy, f->want_len), 0);
	free(copy);
	snprintf(args, sizeof(args), "rewrite '%s' '%s'", bad, out);
	assert_int_equal(run(args, &o, &e), 1);
	assert_true(one_line(e));
	free(o);
	free(e);
	const char *keep[] = {"in.mig", "bad.mig"};
	assert_int_equal(extra_files(f->dir, keep, 2), 0);
	unlink(bad);
}

/* --max-input: an IN over the cap is refused in one line naming the cap
 * and the option, before anything is written; a bad size is a usage error;
 * a cap the stream fits rewrites it. */
static void test_max_input(void **state)
{
	struct fx *f = *state;
	char out[4200], args[16384], *o, *e;
	snprintf(out, sizeof(out), "%s/out.mig", f->dir);
	snprintf(args, sizeof(args), "rewrite --max-input 1K '%s' '%s'", f->in, out);
	assert_int_equal(run(args, &o, &e), 1);
	assert_true(one_line(e));
	assert_non_null(strstr(e, "--max-input"));
	assert_null(strstr(e, "rewrite: rewrite:"));
	assert_int_not_equal(access(out, F_OK), 0);
	free(o);
	free(e);
	snprintf(args, sizeof(args), "rewrite --max-input 0 '%s' '%s'", f->in, out);
	assert_int_equal(run(args, &o, &e), 2);
	assert_true(one_line(e));
	free(o);
	free(e);
	snprintf(args, sizeof(args), "rewrite --max-input 16M '%s' '%s'", f->in, out);
	assert_int_equal(run_ok(args), 0);
	assert_file_is(out, f->want, f->want_len);
	unlink(out);
}

/* A walk that stops inside a record: rewritten (exit 0, the tail noted as
 * unchecked), or refused in one line naming the section; never "internal
 * check failed". The streams are seeds of fuzz/corpus/analyze. */
static void test_walk_stops_inside_record(void **state)
{
	struct fx *f = *state;
	char in[4096], out[4200], args[16384], *o, *e;
	snprintf(out, sizeof(out), "%s/stop.mig", f->dir);
	snprintf(in, sizeof(in), "%s/fuzz/corpus/analyze/stop-inside-record.stream", tu_source_dir());
	snprintf(args, sizeof(args), "rewrite '%s' '%s'", in, out);
	assert_int_equal(run(args, &o, &e), 0);
	assert_non_null(strstr(o, "copied unchecked"));
	assert_null(strstr(e, "internal"));
	free(o);
	free(e);
	struct stat st;
	assert_int_equal(stat(out, &st), 0);
	unlink(out);

	snprintf(in, sizeof(in), "%s/fuzz/corpus/analyze/stop-inside-record-before-htab-end.stream", tu_source_dir());
	snprintf(args, sizeof(args), "rewrite '%s' '%s'", in, out);
	assert_int_equal(run(args, &o, &e), 1);
	assert_true(one_line(e));
	assert_non_null(strstr(e, "'spapr'"));
	assert_non_null(strstr(e, "HM_E_UNSUPPORTED"));
	assert_null(strstr(e, "internal"));
	free(o);
	free(e);
	assert_int_not_equal(stat(out, &st), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_planted_symlink_not_followed),
		cmocka_unit_test(test_symlink_out_writes_target),
		cmocka_unit_test(test_mode_kept),
		cmocka_unit_test(test_stdout_pipe),
		cmocka_unit_test(test_unix_socket),
		cmocka_unit_test(test_dev_null),
		cmocka_unit_test(test_fifo),
		cmocka_unit_test(test_refusals_leave_nothing),
		cmocka_unit_test(test_walk_stops_inside_record),
		cmocka_unit_test(test_max_input),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
