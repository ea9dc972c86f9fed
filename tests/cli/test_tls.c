/* SPDX-License-Identifier: MIT */
/*
 * CLI tests of TLS on tcp (docs/tls.md): credentials in QEMU's
 * tls-creds-x509 layout, made at test time with GnuTLS' x509 API (no
 * external tool, any validity period). A good migration over TLS, then every
 * refusal: wrong CA either way, expired certificates either way, a DN that
 * --tls-authz does not allow, a wrong server name, a plain-text source on a
 * TLS port and a TLS source on a plain port. Each refusal is one line on the
 * source's stderr, the source guest keeps running, and the destination
 * counts a stray and still receives the next, good source.
 */
#include "test_migrate_util.h"
#include "tls_certs.h"

#include <sys/stat.h>

/* The client certificate's subject (RFC 4514 order), a DN --tls-authz lets in. */
#define CLIENT_DN "CN=migration source,O=hptmig test"

static char *mkdir_in(const char *name)
{
	char *p = malloc(strlen(tu_tmp) + strlen(name) + 2);
	assert_non_null(p);
	sprintf(p, "%s/%s", tu_tmp, name);
	assert_int_equal(mkdir(p, 0700), 0);
	return p;
}

/*
 * The credential directories:
 *   good     CA, a server (127.0.0.1, localhost) and a client (CLIENT_DN)
 *   otherca  the good server and client, but another CA's ca-cert.pem
 *   rogue    the good CA, a server and a client signed by the other CA
 *   expired  the good CA, a server and a client that expired a day ago
 */
static char *d_good, *d_otherca, *d_rogue, *d_expired;

static int setup(void **state)
{
	if (tu_setup_tmp(state) != 0)
		return -1;
	struct tc_ident ca, other, srv, cli, rsrv, rcli, esrv, ecli;
	const long day = 86400;
	tc_make(&ca, "CN=hptmig test CA", TC_CA, -day, 30 * day, NULL, 1);
	tc_make(&other, "CN=another CA", TC_CA, -day, 30 * day, NULL, 2);
	tc_make(&srv, "CN=localhost,O=hptmig test", TC_SERVER, -day, 30 * day, &ca, 3);
	tc_make(&cli, CLIENT_DN, TC_CLIENT, -day, 30 * day, &ca, 4);
	tc_make(&rsrv, "CN=localhost,O=rogue", TC_SERVER, -day, 30 * day, &other, 5);
	tc_make(&rcli, CLIENT_DN, TC_CLIENT, -day, 30 * day, &other, 6);
	tc_make(&esrv, "CN=localhost,O=hptmig test", TC_SERVER, -30 * day, -day, &ca, 7);
	tc_make(&ecli, CLIENT_DN, TC_CLIENT, -30 * day, -day, &ca, 8);
	d_good = mkdir_in("good");
	d_otherca = mkdir_in("otherca");
	d_rogue = mkdir_in("rogue");
	d_expired = mkdir_in("expired");
	tc_put(d_good, &ca, "ca-cert.pem", NULL);
	tc_put(d_good, &srv, "server-cert.pem", "server-key.pem");
	tc_put(d_good, &cli, "client-cert.pem", "client-key.pem");
	tc_put(d_otherca, &other, "ca-cert.pem", NULL);
	tc_put(d_otherca, &srv, "server-cert.pem", "server-key.pem");
	tc_put(d_otherca, &cli, "client-cert.pem", "client-key.pem");
	tc_put(d_rogue, &ca, "ca-cert.pem", NULL);
	tc_put(d_rogue, &rsrv, "server-cert.pem", "server-key.pem");
	tc_put(d_rogue, &rcli, "client-cert.pem", "client-key.pem");
	tc_put(d_expired, &ca, "ca-cert.pem", NULL);
	tc_put(d_expired, &esrv, "server-cert.pem", "server-key.pem");
	tc_put(d_expired, &ecli, "client-cert.pem", "client-key.pem");
	struct tc_ident *all[] = {&ca, &other, &srv, &cli, &rsrv, &rcli, &esrv, &ecli};
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		tc_free(all[i]);
	return 0;
}

static int teardown(void **state)
{
	free(d_good);
	free(d_otherca);
	free(d_rogue);
	free(d_expired);
	return tu_teardown_tmp(state);
}

/* A source to tcp:127.0.0.1:port with opts; its exit status, stdout and stderr. */
static int source(int port, const char *opts, char **out, char **err)
{
	char cmd[4096];
	snprintf(cmd, sizeof(cmd),
		 "'%s' migrate tcp:127.0.0.1:%d --ram 256M --json --connect-timeout 10 %s", tu_bin(),
		 port, opts);
	return tu_run(cmd, out, err);
}

static void start_dest(struct bg *in, int port, const char *name, const char *opts)
{
	char cmd[4096];
	snprintf(cmd, sizeof(cmd), "exec '%s' incoming tcp:127.0.0.1:%d --json --accept-timeout 60 %s",
		 tu_bin(), port, opts);
	bg_start(in, tu_tmp, name, cmd);
}

/* A migration that the destination verified and resumed. */
static void good_source(int port, const char *opts)
{
	char *out = NULL, *err = NULL;
	int rc = source(port, opts, &out, &err);
	if (rc != 0)
		fail_msg("the good source failed (%d): %s", rc, err);
	json_t *o = json_of(out);
	assert_string_equal(jstr(o, "status"), "ok");
	assert_string_equal(jstr(o, "guest_state"), "resumed-on-destination");
	json_decref(o);
	free(out);
	free(err);
}

/*
 * dest_opts on the destination; a source with bad_opts must fail with one
 * line containing src_want, its guest still running; the destination must
 * report one stray whose line contains dest_want. Then, when good_opts is
 * not NULL, a source with them migrates to the same destination (a failed
 * handshake does not end `incoming`); otherwise the destination gives up
 * after that one stray (--max-strays 1).
 */
static void refused(const char *name, const char *dest_opts, const char *bad_opts,
		    const char *src_want, const char *dest_want, const char *good_opts)
{
	char opts[2048], *out = NULL, *err = NULL;
	struct bg in;
	int port = free_port();
	snprintf(opts, sizeof(opts), "%s%s", dest_opts, good_opts ? "" : " --max-strays 1");
	start_dest(&in, port, name, opts);
	int rc = source(port, bad_opts, &out, &err);
	print_message("%s: source: %s", name, err);
	assert_int_equal(rc, 1);
	assert_one_line(err);
	if (!strstr(err, src_want))
		fail_msg("the source's line lacks '%s'", src_want);
	assert_non_null(strstr(err, "the guest kept running on the source"));
	json_t *o = json_of(out);
	assert_string_equal(jstr(o, "status"), "failed");
	assert_string_equal(jstr(o, "guest_state"), "running-on-source");
	assert_true(jbool(o, "guest.running"));
	json_decref(o);
	free(out);
	free(err);
	if (good_opts)
		good_source(port, good_opts);
	rc = bg_wait(&in, 30000);
	char *derr = slurp(in.err);
	print_message("%s: destination: %s", name, derr);
	assert_int_equal(rc, good_opts ? 0 : 1);
	if (!strstr(derr, "stray connection 1 of at most"))
		fail_msg("the destination reported no stray");
	if (!strstr(derr, dest_want))
		fail_msg("the destination's stray line lacks '%s'", dest_want);
	assert_null(strstr(derr, "stray connection 2"));
	free(derr);
}

/* "--tls-creds 'dir'" (four live at a time). */
static char *creds(const char *dir)
{
	static char buf[4][1200];
	static int next;
	char *b = buf[next++ % 4];
	snprintf(b, sizeof(buf[0]), "--tls-creds '%s'", dir);
	return b;
}

static char *hostname_opts(const char *dir, const char *name)
{
	static char buf[1400];
	snprintf(buf, sizeof(buf), "--tls-creds '%s' --tls-hostname %s", dir, name);
	return buf;
}

static void test_good(void **state)
{
	(void)state;
	struct bg in;
	int port = free_port();
	char dopts[1400];
	snprintf(dopts, sizeof(dopts), "--tls-creds '%s' --tls-authz '%s'", d_good, CLIENT_DN);
	start_dest(&in, port, "good", dopts);
	/* the server is checked by its IP address (the URI host) and, next, by name */
	good_source(port, creds(d_good));
	assert_int_equal(bg_wait(&in, 30000), 0);
	json_t *d = json_of_file(in.out);
	assert_string_equal(jstr(d, "status"), "ok");
	assert_true(jbool(d, "verified"));
	json_decref(d);
	char *derr = slurp(in.err);
	assert_null(strstr(derr, "stray"));
	free(derr);
	/* the DN as QEMU's authz (gnutls_x509_crt_get_dn) writes it: the other order */
	port = free_port();
	snprintf(dopts, sizeof(dopts), "--tls-creds '%s' --tls-authz '%s'", d_good,
		 "O=hptmig test,CN=migration source");
	start_dest(&in, port, "good2", dopts);
	good_source(port, hostname_opts(d_good, "localhost"));
	assert_int_equal(bg_wait(&in, 30000), 0);
}

static void test_wrong_ca(void **state)
{
	(void)state;
	/* the source does not trust the destination's CA */
	refused("ca1", creds(d_good), creds(d_otherca),
		"The certificate issuer is unknown", "alert", creds(d_good));
	/* the source's certificate comes from a CA the destination does not trust */
	refused("ca2", creds(d_good), creds(d_rogue),
		"TLS", "the source sent no certificate issued by this ca-cert.pem",
		creds(d_good));
}

static void test_expired(void **state)
{
	(void)state;
	/* the source's certificate expired */
	refused("exp1", creds(d_good), creds(d_expired), "TLS",
		"expired", creds(d_good));
	/* the destination's certificate expired: no source can get in */
	refused("exp2", creds(d_expired), creds(d_good),
		"The certificate chain uses expired certificate", "alert", NULL);
}

static void test_authz(void **state)
{
	(void)state;
	char dopts[1400];
	snprintf(dopts, sizeof(dopts), "--tls-creds '%s' --tls-authz 'CN=someone else,O=hptmig test'",
		 d_good);
	refused("authz", dopts, creds(d_good), "Access was denied",
		"not the DN --tls-authz allows ('CN=someone else,O=hptmig test')", NULL);
}

/*
 * Without the PING (--qemu-pure) the refusal reaches the source only after
 * the whole stream, with the guest stopped: an alert before any answer
 * means the destination loaded nothing, so the source resumes its guest
 * (it would stay paused on a silent or reset destination).
 */
static void test_authz_after_stream(void **state)
{
	(void)state;
	char dopts[1400], *out = NULL, *err = NULL;
	struct bg in;
	int port = free_port();
	snprintf(dopts, sizeof(dopts), "--tls-creds '%s' --tls-authz 'CN=nobody' --max-strays 1",
		 d_good);
	start_dest(&in, port, "pure", dopts);
	char sopts[1400];
	/* the smallest guest: the whole stream goes out while the destination
	 * lingers to let its alert arrive (a longer one may meet a reset) */
	snprintf(sopts, sizeof(sopts), "--qemu-pure --ram 32M %s", creds(d_good));
	int rc = source(port, sopts, &out, &err);
	print_message("pure: source: %s", err);
	assert_int_equal(rc, 1);
	assert_one_line(err);
	assert_non_null(strstr(err, "alert 'Access was denied'"));
	assert_non_null(strstr(err, "resumed on the source"));
	json_t *o = json_of(out);
	assert_string_equal(jstr(o, "guest_state"), "resumed-on-source");
	assert_true(jbool(o, "guest.running"));
	json_decref(o);
	free(out);
	free(err);
	assert_int_equal(bg_wait(&in, 30000), 1);
}

static void test_hostname(void **state)
{
	(void)state;
	refused("name", creds(d_good),
		hostname_opts(d_good, "migration.example.org"),
		"The name in the certificate does not match", "alert",
		creds(d_good));
}

static void test_plain_peers(void **state)
{
	(void)state;
	/* a plain-text source on a TLS port */
	refused("plain1", creds(d_good), "", "it expects TLS (--tls-creds)",
		"the source sent a plain migration stream (QEVM), not TLS",
		creds(d_good));
	/* a TLS source on a plain port */
	refused("plain2", "", creds(d_good),
		"closed the connection during the TLS handshake", "it is a TLS handshake", "");
}

static void test_usage(void **state)
{
	(void)state;
	char cmd[2048], *out = NULL, *err = NULL;
	snprintf(cmd, sizeof(cmd), "'%s' migrate tcp:127.0.0.1:1 --tls-hostname x", tu_bin());
	assert_int_equal(tu_run(cmd, &out, &err), 2);
	assert_one_line(err);
	assert_non_null(strstr(err, "--tls-hostname needs --tls-creds DIR"));
	free(out);
	free(err);
	snprintf(cmd, sizeof(cmd), "'%s' incoming unix:%s/x.sock --tls-creds '%s'", tu_bin(), tu_tmp,
		 d_good);
	assert_int_equal(tu_run(cmd, &out, &err), 2);
	assert_non_null(strstr(err, "--tls-creds needs a tcp:HOST:PORT URI"));
	free(out);
	free(err);
	snprintf(cmd, sizeof(cmd), "'%s' incoming tcp:127.0.0.1:0 --tls-hostname x", tu_bin());
	assert_int_equal(tu_run(cmd, &out, &err), 2);
	assert_non_null(strstr(err, "does not apply here"));
	free(out);
	free(err);
	/* the file a side needs is named when it is missing */
	snprintf(cmd, sizeof(cmd), "'%s' incoming tcp:127.0.0.1:0 --tls-creds '%s'", tu_bin(),
		 tu_tmp);
	assert_int_equal(tu_run(cmd, &out, &err), 1);
	assert_one_line(err);
	assert_non_null(strstr(err, "ca-cert.pem: No such file or directory"));
	free(out);
	free(err);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good),
		cmocka_unit_test(test_wrong_ca),
		cmocka_unit_test(test_expired),
		cmocka_unit_test(test_authz),
		cmocka_unit_test(test_authz_after_stream),
		cmocka_unit_test(test_hostname),
		cmocka_unit_test(test_plain_peers),
		cmocka_unit_test(test_usage),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
