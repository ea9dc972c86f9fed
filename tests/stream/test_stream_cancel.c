/* SPDX-License-Identifier: MIT */
/*
 * mig_file_shutdown from another thread wakes a reader blocked on a silent
 * socket peer and a writer blocked on a full one: both end with
 * HM_E_CANCELLED instead of hanging. Threads: label "concurrency".
 */
#include <errno.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include "testutil.h"
#include "hptmig/stream.h"

static void *canceller(void *arg)
{
	hm_sleep_ns(50000000ull);
	mig_file_shutdown(arg);
	return NULL;
}

static void test_cancel_blocked_read(void **state)
{
	(void)state;
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	mig_file_t *r;
	assert_int_equal(mig_file_open_fd(sv[0], MIG_FILE_READ, 0, &r), 0);
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, canceller, r), 0);
	assert_int_equal(mig_file_get_be32(r), 0); /* blocks until shutdown */
	pthread_join(t, NULL);
	tu_assert_err(mig_file_error(r), HM_E_CANCELLED);
	mig_file_close(r, NULL);
	close(sv[0]);
	close(sv[1]);
}

static void test_cancel_blocked_write(void **state)
{
	(void)state;
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	mig_file_t *w;
	assert_int_equal(mig_file_open_fd(sv[0], MIG_FILE_WRITE, 0, &w), 0);
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, canceller, w), 0);
	static uint8_t big[1 << 20];
	for (int i = 0; i < 64 && !mig_file_status(w); i++)
		mig_file_put_buffer(w, big, sizeof(big)); /* peer never reads */
	pthread_join(t, NULL);
	int rc = mig_file_status(w);
	/* Woken by shutdown(2): cancelled, or EPIPE from the shut-down socket. */
	assert_true(rc == HM_E_CANCELLED || rc == -EPIPE);
	mig_file_close(w, NULL);
	close(sv[0]);
	close(sv[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cancel_blocked_read),
		cmocka_unit_test(test_cancel_blocked_write),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
