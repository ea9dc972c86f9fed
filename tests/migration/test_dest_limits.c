/* SPDX-License-Identifier: MIT */
/*
 * The destination's limits at the library level: the table cap from the
 * destination guest's RAM (QEMU's rule) and its override, mig_accept_ex's
 * screening of stray connections (reported, counted, the accepted stream
 * intact from its first byte), the idle timeout named by mig_conn_timed_out,
 * and a cancel that wakes a read blocked on a pipe.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "hptmig/migration.h"
#include "hptmig/savevm.h"
#include "testutil.h"

static void test_max_shift_from_ram(void **state)
{
	(void)state;
	mig_dest_params_t p;
	mig_dest_params_default(&p);
	assert_int_equal(p.ram_bytes, MIG_DEST_RAM_DEFAULT);
	assert_int_equal(mig_dest_max_shift(&p), 25); /* 2 GiB: 24 + 1 */
	const struct {
		uint64_t ram;
		unsigned shift;
	} v[] = {
		{UINT64_C(512) << 20, 23}, {UINT64_C(3) << 30, 26}, /* pow2ceil: 4 GiB */
		{UINT64_C(8) << 30, 27},   {UINT64_C(256) << 30, 32},
		{UINT64_C(1) << 20, 19},   /* the smallest table (18) + 1 */
		{UINT64_C(1) << 50, 36},   /* clamped to the stream's limit */
	};
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		p.ram_bytes = v[i].ram;
		assert_int_equal(mig_dest_max_shift(&p), v[i].shift);
	}
	p.max_shift = 20; /* the override wins over the RAM */
	assert_int_equal(mig_dest_max_shift(&p), 20);
}

static int connect_unix(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

struct strays {
	unsigned n;
	char last[400];
};

static void on_stray(void *o, const char *line)
{
	struct strays *s = o;
	s->n++;
	snprintf(s->last, sizeof(s->last), "%s", line);
}

/*
 * Two strays queue up before the real stream; the listener reports both and
 * hands out the third connection with its first 8 bytes still in it. Then
 * the real peer goes silent: the idle timeout ends the read, named so.
 */
static void test_accept_screens_strays(void **state)
{
	(void)state;
	char path[600], uri[620];
	snprintf(path, sizeof(path), "%s/screen.sock", tu_tmp);
	snprintf(uri, sizeof(uri), "unix:%s", path);
	mig_uri_t u;
	mig_listener_t *l;
	hm_error_t e;
	hm_error_clear(&e);
	assert_int_equal(mig_uri_parse(uri, &u, &e), 0);
	assert_int_equal(mig_listen(&u, &l, &e), 0);

	int a = connect_unix(path);
	assert_int_equal(send(a, "SSH-2.0-", 8, 0), 8);
	close(a);
	int b = connect_unix(path);
	close(b);
	int c = connect_unix(path);
	const uint8_t hdr[] = {'Q', 'E', 'V', 'M', 0, 0, 0, 3, 0x07, 0, 0, 0, 12};
	assert_int_equal(send(c, hdr, sizeof(hdr), 0), (ssize_t)sizeof(hdr));

	struct strays s = {0};
	mig_accept_opts_t o;
	mig_accept_opts_default(&o);
	o.timeout_ms = 10000;
	o.probe_timeout_ms = 2000;
	o.idle_timeout_ms = 300;
	o.on_stray = on_stray;
	o.opaque = &s;
	unsigned n = 0;
	mig_conn_t *conn = NULL;
	assert_int_equal(mig_accept_ex(l, &o, &conn, &n, &e), 0);
	assert_int_equal(n, 2);
	assert_int_equal(s.n, 2);
	assert_non_null(strstr(s.last, "stray connection 2 of at most 10"));
	assert_non_null(strstr(s.last, "closed without sending anything"));

	mig_file_t *f = mig_conn_file(conn);
	assert_int_equal(mig_file_get_be32(f), QEMU_VM_FILE_MAGIC);
	assert_int_equal(mig_file_get_be32(f), QEMU_VM_FILE_VERSION);
	assert_int_equal(mig_file_get_u8(f), 0x07);
	assert_int_equal(mig_file_get_be32(f), 12);
	assert_int_equal(mig_file_status(f), 0);
	assert_int_equal(mig_conn_timed_out(conn), MIG_CONN_TIMEOUT_NONE);
	(void)mig_file_get_u8(f); /* nothing more comes */
	assert_int_equal(mig_file_status(f), HM_E_TIMEOUT);
	assert_int_equal(mig_conn_timed_out(conn), MIG_CONN_TIMEOUT_IDLE);
	assert_false(mig_conn_deadline_passed(conn));
	mig_conn_close(conn, NULL);
	close(c);
	mig_listener_close(l);
}

static void *abort_later(void *arg)
{
	usleep(100000);
	mig_conn_abort(arg);
	return NULL;
}

/* A read blocked on a silent pipe is woken by a cancel (mig_conn_abort). */
static void test_cancel_wakes_pipe(void **state)
{
	(void)state;
	int p[2];
	assert_int_equal(pipe(p), 0);
	char uri[32];
	snprintf(uri, sizeof(uri), "fd:%d", p[0]);
	mig_uri_t u;
	mig_listener_t *l;
	hm_error_t e;
	hm_error_clear(&e);
	assert_int_equal(mig_uri_parse(uri, &u, &e), 0);
	assert_int_equal(mig_listen(&u, &l, &e), 0);
	mig_accept_opts_t o;
	mig_accept_opts_default(&o);
	o.timeout_ms = -1; /* no first-byte limit: only the cancel can end it */
	mig_conn_t *conn = NULL;
	assert_int_equal(mig_accept_ex(l, &o, &conn, NULL, &e), 0);
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, abort_later, conn), 0);
	mig_file_t *f = mig_conn_file(conn);
	(void)mig_file_get_be32(f);
	assert_int_equal(mig_file_status(f), HM_E_CANCELLED);
	pthread_join(t, NULL);
	mig_conn_close(conn, NULL);
	mig_listener_close(l);
	close(p[0]);
	close(p[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_max_shift_from_ram),
		cmocka_unit_test(test_accept_screens_strays),
		cmocka_unit_test(test_cancel_wakes_pipe),
	};
	return cmocka_run_group_tests(tests, tu_setup_tmp, tu_teardown_tmp);
}
