/* SPDX-License-Identifier: MIT */
/*
 * The TLS transport through the library (src/migration/tls.c and
 * transport.c): megabytes of random bytes (seed printed) written by
 * mig_connect_tls in odd-sized pieces arrive intact through mig_accept on a
 * TLS listener (the unscreened path the CLI does not use), the return path
 * carries a PONG through the same session, and the misuses are refused
 * (TLS on unix, credentials of the wrong side, a missing file).
 */
#include "testutil.h"
#include "tls_certs.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "hptmig/migration.h"

#define PAYLOAD (3u << 20)

static char *pki;
static mig_tls_creds_t *server, *client;

static int setup(void **state)
{
	if (tu_setup_tmp(state) != 0)
		return -1;
	struct tc_ident ca, srv, cli;
	tc_make(&ca, "CN=unit CA", TC_CA, -3600, 86400, NULL, 1);
	tc_make(&srv, "CN=localhost", TC_SERVER, -3600, 86400, &ca, 2);
	tc_make(&cli, "CN=unit source", TC_CLIENT, -3600, 86400, &ca, 3);
	pki = tu_tmp;
	tc_put(pki, &ca, "ca-cert.pem", NULL);
	tc_put(pki, &srv, "server-cert.pem", "server-key.pem");
	tc_put(pki, &cli, "client-cert.pem", "client-key.pem");
	tc_free(&ca);
	tc_free(&srv);
	tc_free(&cli);
	hm_error_t e;
	hm_error_clear(&e);
	mig_tls_opts_t so = {.dir = pki, .authz_dn = "CN=unit source"};
	mig_tls_opts_t co = {.dir = pki, .hostname = "localhost"};
	if (mig_tls_creds_load(&so, MIG_TLS_SERVER, &server, &e) != 0 ||
	    mig_tls_creds_load(&co, MIG_TLS_CLIENT, &client, &e) != 0) {
		fprintf(stderr, "credentials: %s\n", e.msg);
		return -1;
	}
	return 0;
}

static int teardown(void **state)
{
	mig_tls_creds_free(server);
	mig_tls_creds_free(client);
	return tu_teardown_tmp(state);
}

struct dest {
	mig_listener_t *l;
	uint8_t *got;
	size_t len;
	int rc;
	hm_error_t e;
};

static void *dest_main(void *o)
{
	struct dest *d = o;
	mig_conn_t *c = NULL;
	hm_error_clear(&d->e);
	d->rc = mig_accept(d->l, 10000, &c, &d->e);
	if (d->rc)
		return NULL;
	mig_file_t *f = mig_conn_file(c);
	d->len = mig_file_get_buffer(f, d->got, PAYLOAD);
	uint8_t extra;
	/* the source's close_notify: the end of the stream, nothing more */
	if (mig_file_get_buffer(f, &extra, 1) != 0)
		d->rc = -EPROTO;
	mig_rp_send_pong(c, 0x68706d67);
	mig_conn_close(c, NULL);
	return NULL;
}

static void test_bytes_and_return_path(void **state)
{
	(void)state;
	uint64_t seed = (uint64_t)time(NULL);
	print_message("seed %llu\n", (unsigned long long)seed);
	uint8_t *data = malloc(PAYLOAD);
	struct dest d = {.got = calloc(1, PAYLOAD)};
	assert_non_null(data);
	assert_non_null(d.got);
	uint64_t x = seed | 1;
	for (size_t i = 0; i < PAYLOAD; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		data[i] = (uint8_t)x;
	}
	hm_error_t e;
	hm_error_clear(&e);
	mig_uri_t u;
	assert_int_equal(mig_uri_parse("tcp:127.0.0.1:0", &u, &e), 0);
	assert_int_equal(mig_listen(&u, &d.l, &e), 0);
	assert_int_equal(mig_listener_set_tls(d.l, server, &e), 0);
	mig_uri_t to = *mig_listener_uri(d.l);
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, dest_main, &d), 0);

	mig_conn_t *c = NULL;
	int rc = mig_connect_tls(&to, 5000, client, &c, &e);
	if (rc)
		fail_msg("connect: %s", e.msg);
	mig_file_t *f = mig_conn_file(c);
	/* odd sizes: short puts through the buffer, large ones past it, records split */
	size_t off = 0, step = 1;
	while (off < PAYLOAD) {
		size_t n = step < PAYLOAD - off ? step : PAYLOAD - off;
		mig_file_put_buffer(f, data + off, n);
		off += n;
		step = step * 7 % 100003 + 1;
	}
	assert_int_equal(mig_file_flush(f), 0);
	mig_conn_finish_write(c);
	mig_rp_msg_t m;
	rc = mig_rp_recv(c, 10000, &m, &e);
	if (rc)
		fail_msg("return path: %s", e.msg);
	assert_int_equal(m.type, MIG_RP_PONG);
	assert_int_equal(m.value, 0x68706d67);
	assert_int_equal(mig_conn_close(c, &e), 0);
	pthread_join(t, NULL);
	if (d.rc)
		fail_msg("destination: %d %s", d.rc, d.e.msg);
	assert_int_equal(d.len, PAYLOAD);
	assert_memory_equal(d.got, data, PAYLOAD);
	mig_listener_close(d.l);
	free(data);
	free(d.got);
}

static void test_misuse(void **state)
{
	(void)state;
	hm_error_t e;
	hm_error_clear(&e);
	mig_uri_t u;
	mig_listener_t *l = NULL;
	mig_conn_t *c = NULL;
	char path[1200];
	snprintf(path, sizeof(path), "unix:%s/s.sock", pki);
	assert_int_equal(mig_uri_parse(path, &u, &e), 0);
	assert_int_equal(mig_listen(&u, &l, &e), 0);
	assert_int_equal(mig_listener_set_tls(l, server, &e), HM_E_STATE);
	assert_non_null(strstr(e.msg, "needs a tcp: URI"));
	assert_int_equal(mig_connect_tls(&u, 100, client, &c, &e), HM_E_STATE);
	assert_null(c);
	mig_listener_close(l);
	assert_int_equal(mig_uri_parse("tcp:127.0.0.1:0", &u, &e), 0);
	assert_int_equal(mig_listen(&u, &l, &e), 0);
	assert_int_equal(mig_listener_set_tls(l, client, &e), HM_E_STATE);
	mig_listener_close(l);
	/* a source's directory has no server key: named */
	char dir[1200];
	snprintf(dir, sizeof(dir), "%s/src", pki);
	assert_int_equal(mkdir(dir, 0700), 0);
	struct tc_ident ca;
	tc_make(&ca, "CN=x", TC_CA, -60, 600, NULL, 9);
	tc_put(dir, &ca, "ca-cert.pem", NULL);
	tc_free(&ca);
	mig_tls_opts_t o = {.dir = dir};
	mig_tls_creds_t *cr = NULL;
	hm_error_clear(&e);
	assert_int_equal(mig_tls_creds_load(&o, MIG_TLS_SERVER, &cr, &e), -ENOENT);
	assert_null(cr);
	assert_non_null(strstr(e.msg, "server-cert.pem: No such file or directory"));
	/* a client may go without a certificate (QEMU's rule; our servers refuse it later) */
	assert_int_equal(mig_tls_creds_load(&o, MIG_TLS_CLIENT, &cr, &e), 0);
	mig_tls_creds_free(cr);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bytes_and_return_path),
		cmocka_unit_test(test_misuse),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
