/* SPDX-License-Identifier: MIT */
/*
 * CLI tests of what an operator runs `hptmig proxy` with (docs/proxy.md,
 * docs/tls.md, docs/control.md): TLS on both sides and on one side only,
 * between a real `hptmig migrate` and `hptmig incoming` with credentials
 * made at test time (tests/tls_certs.h); a DN --tls-authz refuses; the
 * usage errors of the TLS options; status lines and a QMP client
 * (tests/cli/qmp_client.py) that cancels a relay in flight; and the
 * TLS handshake with a silent peer ended by SIGTERM/SIGINT within 100 ms,
 * for the proxy, `incoming` and `migrate`, and a proxy waiting for its
 * source; a plain source on the TLS port that cannot unload its stream.
 */
#include "test_migrate_util.h"
#include "tls_certs.h"

#include <sys/stat.h>
#include <time.h>

#define CLIENT_DN "CN=migration source,O=hptmig test"

static char d_good[600];

static int setup(void **state)
{
	if (tu_setup_tmp(state) != 0)
		return -1;
	struct tc_ident ca, srv, cli;
	const long day = 86400;
	tc_make(&ca, "CN=hptmig test CA", TC_CA, -day, 30 * day, NULL, 1);
	tc_make(&srv, "CN=localhost,O=hptmig test", TC_SERVER, -day, 30 * day, &ca, 3);
	tc_make(&cli, CLIENT_DN, TC_CLIENT, -day, 30 * day, &ca, 4);
	snprintf(d_good, sizeof(d_good), "%s/good", tu_tmp);
	assert_int_equal(mkdir(d_good, 0700), 0);
	tc_put(d_good, &ca, "ca-cert.pem", NULL);
	tc_put(d_good, &srv, "server-cert.pem", "server-key.pem");
	tc_put(d_good, &cli, "client-cert.pem", "client-key.pem");
	tc_free(&ca);
	tc_free(&srv);
	tc_free(&cli);
	return 0;
}

static uint64_t now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

/* Wait until something listens on 127.0.0.1:port (read from /proc, so the
 * proxy does not see a probe connection as a stray). */
static void wait_listen(int port)
{
	for (int w = 0; w < 10000; w += 10) {
		FILE *f = fopen("/proc/net/tcp", "r");
		char l[512];
		bool up = false;
		while (f && !up && fgets(l, sizeof(l), f)) {
			unsigned lport, st;
			if (sscanf(l, " %*u: %*x:%x %*x:%*x %x", &lport, &st) == 2)
				up = lport == (unsigned)port && st == 0x0A;
		}
		if (f)
			fclose(f);
		if (up)
			return;
		usleep(10000);
	}
	fail_msg("nothing listens on port %d", port);
}

struct chain {
	struct bg in, px;
	int dport, pport;
};

/* incoming (dest_opts) <- proxy (proxy_opts) <- migrate (src_opts); the
 * source's exit status, its stdout and stderr. */
static int chain_run(struct chain *c, const char *name, const char *dest_opts,
		     const char *proxy_opts, const char *src_opts, char **out, char **err)
{
	char cmd[4096], n[64];
	c->dport = free_port();
	c->pport = free_port();
	snprintf(cmd, sizeof(cmd),
		 "exec '%s' incoming tcp:127.0.0.1:%d --ram 256M --json --accept-timeout 60 %s",
		 tu_bin(), c->dport, dest_opts);
	snprintf(n, sizeof(n), "%s-in", name);
	bg_start(&c->in, tu_tmp, n, cmd);
	wait_listen(c->dport);
	snprintf(cmd, sizeof(cmd),
		 "exec '%s' proxy tcp:127.0.0.1:%d tcp:127.0.0.1:%d --json --quiet "
		 "--accept-timeout 60 %s",
		 tu_bin(), c->pport, c->dport, proxy_opts);
	snprintf(n, sizeof(n), "%s-px", name);
	bg_start(&c->px, tu_tmp, n, cmd);
	wait_listen(c->pport);
	snprintf(cmd, sizeof(cmd),
		 "'%s' migrate tcp:127.0.0.1:%d --ram 256M --json --connect-timeout 10 %s",
		 tu_bin(), c->pport, src_opts);
	return tu_run(cmd, out, err);
}

/* A chain that must work: the source resumed on the destination, the
 * proxy checked and forwarded it all, the destination verified it. */
static void chain_ok(const char *name, const char *dest_opts, const char *proxy_opts,
		     const char *src_opts)
{
	struct chain c;
	char *out = NULL, *err = NULL;
	int rc = chain_run(&c, name, dest_opts, proxy_opts, src_opts, &out, &err);
	if (rc != 0) {
		char *perr = slurp(c.px.err);
		bg_reap(&c.px);
		bg_reap(&c.in);
		fail_msg("%s: the source failed (%d): %s; proxy: %s", name, rc, err, perr);
	}
	json_t *s = json_of(out);
	assert_string_equal(jstr(s, "guest_state"), "resumed-on-destination");
	assert_int_equal(bg_wait(&c.px, 30000), 0);
	assert_int_equal(bg_wait(&c.in, 30000), 0);
	json_t *p = json_of_file(c.px.out);
	json_t *d = json_of_file(c.in.out);
	assert_string_equal(jstr(p, "status"), "ok");
	assert_true(jbool(p, "checked"));
	assert_true(jbool(p, "return_path"));
	assert_true(jbool(d, "verified"));
	/* every byte the proxy sent went through to the destination */
	assert_true(jnum(p, "bytes_out") == jnum(d, "bytes_total"));
	printf("%s: %.0f bytes in, %.0f out, digest %s\n", name, jnum(p, "bytes"),
	       jnum(p, "bytes_out"), jstr(p, "htab.digest"));
	json_decref(s);
	json_decref(p);
	json_decref(d);
	free(out);
	free(err);
}

static void test_tls_both_sides(void **state)
{
	(void)state;
	char dopt[1400], popt[1400], sopt[1400];
	snprintf(dopt, sizeof(dopt), "--tls-creds '%s' --tls-authz '%s'", d_good, CLIENT_DN);
	snprintf(popt, sizeof(popt), "--tls-creds '%s' --tls-authz '%s' --tls-hostname localhost",
		 d_good, CLIENT_DN);
	snprintf(sopt, sizeof(sopt), "--tls-creds '%s'", d_good);
	chain_ok("both", dopt, popt, sopt);
}

static void test_tls_one_side(void **state)
{
	(void)state;
	char copt[1400], popt[1400];
	snprintf(copt, sizeof(copt), "--tls-creds '%s'", d_good);
	/* TLS from the source, plain to the destination */
	snprintf(popt, sizeof(popt), "--listen-tls-creds '%s'", d_good);
	chain_ok("listen", "", popt, copt);
	/* plain from the source, TLS to the destination */
	snprintf(popt, sizeof(popt), "--dest-tls-creds '%s'", d_good);
	chain_ok("dest", copt, popt, "");
}

/* A DN --tls-authz does not allow: one line at the source (its guest
 * keeps running), one warning at the proxy, which waits on; SIGTERM then
 * ends it with 143 and a cancelled report. */
static void test_tls_authz_refused(void **state)
{
	(void)state;
	struct chain c;
	char popt[1400], sopt[1400];
	char *out = NULL, *err = NULL;
	snprintf(popt, sizeof(popt), "--tls-creds '%s' --tls-authz 'CN=someone else'", d_good);
	snprintf(sopt, sizeof(sopt), "--tls-creds '%s'", d_good);
	int rc = chain_run(&c, "authz", "", popt, sopt, &out, &err);
	print_message("source: %s", err);
	assert_int_equal(rc, 1);
	assert_one_line(err);
	assert_non_null(strstr(err, "Access was denied"));
	assert_non_null(strstr(err, "the guest kept running on the source"));
	usleep(100000);
	char *perr = slurp(c.px.err);
	print_message("proxy: %s", perr);
	assert_non_null(strstr(perr, "stray connection 1 of at most"));
	assert_non_null(strstr(perr, "not the DN --tls-authz allows ('CN=someone else')"));
	free(perr);
	bg_kill(&c.px, SIGTERM);
	assert_int_equal(bg_wait(&c.px, 10000), 143);
	json_t *p = json_of_file(c.px.out);
	assert_string_equal(jstr(p, "status"), "cancelled");
	json_decref(p);
	bg_kill(&c.in, SIGTERM);
	assert_int_equal(bg_wait(&c.in, 10000), 143);
	free(out);
	free(err);
}

static void test_tls_usage(void **state)
{
	(void)state;
	static const struct {
		const char *args;
		int rc;
		const char *want;
	} cases[] = {
		{"tcp:127.0.0.1:1 tcp:127.0.0.1:2 --tls-authz CN=x", 2, "--tls-authz needs TLS"},
		{"tcp:127.0.0.1:1 tcp:127.0.0.1:2 --listen-tls-creds D --tls-hostname h", 2,
		 "--tls-hostname needs TLS"},
		{"unix:/tmp/x tcp:127.0.0.1:2 --tls-creds D", 2, "tcp:HOST:PORT LISTEN_URI"},
		{"tcp:127.0.0.1:1 unix:/tmp/x --dest-tls-creds D", 2, "tcp:HOST:PORT DEST_URI"},
		{"tcp:127.0.0.1:1 tcp:127.0.0.1:2 --tls-creds", 2, "--tls-creds needs a value"},
		{"tcp:127.0.0.1:1 tcp:127.0.0.1:2 --status-interval 5", 2, "--status-interval"},
		{"tcp:127.0.0.1:1 tcp:127.0.0.1:2 --control tcp:1", 2, "--control"},
		{"tcp:127.0.0.1:0 tcp:127.0.0.1:2 --tls-creds D/none", 1, "ca-cert.pem"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char cmd[4096], args[2048], *out = NULL, *err = NULL;
		snprintf(args, sizeof(args), "%s", cases[i].args);
		char *d = strstr(args, " D");
		if (d && (d[2] == 0 || d[2] == '/' || d[2] == ' ')) {
			char rest[1024];
			snprintf(rest, sizeof(rest), "%s", d + 2);
			snprintf(d, sizeof(args) - (size_t)(d - args), " '%s'%s", d_good, rest);
		}
		snprintf(cmd, sizeof(cmd), "'%s' proxy %s", tu_bin(), args);
		int rc = tu_run(cmd, &out, &err);
		print_message("proxy %s: %d %s", cases[i].args, rc, err);
		assert_int_equal(rc, cases[i].rc);
		assert_one_line(err);
		if (!strstr(err, cases[i].want))
			fail_msg("'%s' lacks '%s'", err, cases[i].want);
		free(out);
		free(err);
	}
}

/* A tcp peer that connects to port and then says nothing (fd returned). */
static int silent_client(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_true(fd >= 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

/* The process b waits (in a TLS handshake with a silent peer, for a
 * source): sig must end it with 128 + sig. Returns the ms it took. */
static unsigned signal_in_handshake(struct bg *b, int sig)
{
	usleep(300000); /* well into the handshake's wait (5 s or 10 s) */
	assert_int_equal(b->status, -1);
	uint64_t t0 = now_ms();
	bg_kill(b, sig);
	int rc = bg_wait(b, 10000);
	unsigned ms = (unsigned)(now_ms() - t0);
	assert_int_equal(rc, 128 + sig);
	return ms;
}

static void test_signal_in_handshake(void **state)
{
	(void)state;
	char cmd[4096];
	struct bg b;
	unsigned ms[3];
	/* the proxy and incoming (TLS servers) with a client that says nothing */
	int port = free_port();
	snprintf(cmd, sizeof(cmd), "exec '%s' proxy tcp:127.0.0.1:%d tcp:127.0.0.1:1 --json "
		 "--tls-creds '%s'", tu_bin(), port, d_good);
	bg_start(&b, tu_tmp, "hs-proxy", cmd);
	wait_listen(port);
	int fd = silent_client(port);
	ms[0] = signal_in_handshake(&b, SIGTERM);
	close(fd);
	json_t *o = json_of_file(b.out);
	assert_string_equal(jstr(o, "status"), "cancelled");
	json_decref(o);
	char *err = slurp(b.err);
	assert_non_null(strstr(err, "cancelled"));
	free(err);
	port = free_port();
	snprintf(cmd, sizeof(cmd), "exec '%s' incoming tcp:127.0.0.1:%d --ram 256M --tls-creds '%s'",
		 tu_bin(), port, d_good);
	bg_start(&b, tu_tmp, "hs-in", cmd);
	wait_listen(port);
	fd = silent_client(port);
	ms[1] = signal_in_handshake(&b, SIGINT);
	close(fd);
	/* migrate (a TLS client) to a server that accepts and says nothing */
	int lfd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);
	assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(lfd, 1), 0);
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&sa, &sl), 0);
	snprintf(cmd, sizeof(cmd), "exec '%s' migrate tcp:127.0.0.1:%d --ram 256M --tls-creds '%s' "
		 "--json", tu_bin(), ntohs(sa.sin_port), d_good);
	bg_start(&b, tu_tmp, "hs-src", cmd);
	ms[2] = signal_in_handshake(&b, SIGINT);
	close(lfd);
	o = json_of_file(b.out);
	assert_string_equal(jstr(o, "guest_state"), "running-on-source");
	json_decref(o);
	printf("signal to exit in a TLS handshake: proxy %u ms, incoming %u ms, migrate %u ms\n",
	       ms[0], ms[1], ms[2]);
	for (int i = 0; i < 3; i++)
		assert_true(ms[i] <= 100);
}

/* A proxy waiting for its source (it did not watch the cancel there: it
 * sat out SIGINT until --accept-timeout, 600 s by default). */
static void test_signal_waiting(void **state)
{
	(void)state;
	char cmd[4096], path[600];
	struct bg b;
	snprintf(path, sizeof(path), "%s/wait.sock", tu_tmp);
	snprintf(cmd, sizeof(cmd), "exec '%s' proxy unix:%s unix:%s/none.sock --json", tu_bin(),
		 path, tu_tmp);
	bg_start(&b, tu_tmp, "waiting", cmd);
	for (int w = 0; access(path, F_OK) != 0 && w < 10000; w += 10)
		usleep(10000);
	unsigned ms = signal_in_handshake(&b, SIGINT);
	printf("SIGINT to exit, waiting for the source: %u ms\n", ms);
	assert_true(ms <= 100);
	json_t *o = json_of_file(b.out);
	assert_string_equal(jstr(o, "status"), "cancelled");
	assert_string_equal(jstr(o, "error.code"), "HM_E_CANCELLED");
	json_decref(o);
}

/*
 * A plain source without a return path (QEMU's default) on the TLS port:
 * it must not be able to send its whole stream into the refusal's linger
 * (it would take the migration for delivered and leave its guest
 * stopped): its send fails after at most the socket buffers' worth.
 */
static void test_plain_source_not_drained(void **state)
{
	(void)state;
	char cmd[4096];
	struct bg b;
	int port = free_port();
	snprintf(cmd, sizeof(cmd), "exec '%s' proxy tcp:127.0.0.1:%d tcp:127.0.0.1:1 --json "
		 "--tls-creds '%s'", tu_bin(), port, d_good);
	bg_start(&b, tu_tmp, "plain", cmd);
	wait_listen(port);
	int fd = silent_client(port);
	struct timeval tv = {.tv_sec = 10};
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	static uint8_t chunk[1 << 20];
	memcpy(chunk, "QEVM\0\0\0\3", 8);
	size_t sent = 0, want = 64u << 20;
	int e = 0;
	while (sent < want) {
		ssize_t n = send(fd, chunk, sizeof(chunk), MSG_NOSIGNAL);
		if (n < 0) {
			e = errno;
			break;
		}
		sent += (size_t)n;
	}
	close(fd);
	printf("a plain source sent %zu bytes before: %s\n", sent, e ? strerror(e) : "none");
	assert_true(e == ECONNRESET || e == EPIPE);
	assert_true(sent < want / 2); /* a socket buffer or two, not a drain */
	usleep(100000);
	char *err = slurp(b.err);
	assert_non_null(strstr(err, "the source sent a plain migration stream (QEVM), not TLS"));
	free(err);
	bg_kill(&b, SIGTERM);
	assert_int_equal(bg_wait(&b, 10000), 143);
}

/* Status lines and a QMP client on a relay in flight: side proxy, growing
 * bytes, no parameters; migrate_cancel cuts both connections. */
static void test_control_cancel(void **state)
{
	(void)state;
	if (tu_run("command -v python3 >/dev/null 2>&1", NULL, NULL) != 0)
		skip();
	struct chain c;
	char popt[1400], client[1024], cmd[4096], ctl[700];
	char *out = NULL, *err = NULL;
	snprintf(ctl, sizeof(ctl), "%s/px.ctl", tu_tmp);
	snprintf(popt, sizeof(popt), "--status-interval 100 --control unix:%s", ctl);
	struct bg src;
	/* the source in the background: 1G at 64 KiB/s takes long enough */
	c.dport = free_port();
	c.pport = free_port();
	snprintf(cmd, sizeof(cmd), "exec '%s' incoming tcp:127.0.0.1:%d --ram 1G --json",
		 tu_bin(), c.dport);
	bg_start(&c.in, tu_tmp, "ctl-in", cmd);
	wait_listen(c.dport);
	snprintf(cmd, sizeof(cmd), "exec '%s' proxy tcp:127.0.0.1:%d tcp:127.0.0.1:%d --json "
		 "--quiet %s", tu_bin(), c.pport, c.dport, popt);
	bg_start(&c.px, tu_tmp, "ctl-px", cmd);
	wait_listen(c.pport);
	snprintf(cmd, sizeof(cmd), "exec '%s' migrate tcp:127.0.0.1:%d --ram 1G --json "
		 "--max-bandwidth 64K", tu_bin(), c.pport);
	bg_start(&src, tu_tmp, "ctl-src", cmd);
	snprintf(client, sizeof(client), "%s/tests/cli/qmp_client.py", tu_source_dir());
	snprintf(cmd, sizeof(cmd), "python3 '%s' proxy '%s'", client, ctl);
	int rc = tu_run(cmd, &out, &err);
	if (rc != 0) {
		bg_reap(&src);
		bg_reap(&c.px);
		bg_reap(&c.in);
		fail_msg("qmp_client proxy: exit %d: %s", rc, err);
	}
	printf("qmp_client: %s", out);
	assert_int_equal(bg_wait(&c.px, 10000), 1);
	assert_int_equal(bg_wait(&src, 30000), 1);
	assert_int_equal(bg_wait(&c.in, 30000), 1);
	char *perr = slurp(c.px.err);
	assert_one_line(strstr(perr, "\n") + 1); /* after "listening on" */
	assert_non_null(strstr(perr, "cancelled (migrate_cancel): both connections cut after"));
	free(perr);
	char *serr = slurp(src.err);
	assert_non_null(strstr(serr, "the guest kept running on the source"));
	free(serr);
	/* status lines, then the report: cancelled with the same byte count */
	char *all = slurp(c.px.out);
	size_t lines = 0;
	json_t *last = NULL, *rep = NULL;
	char *save = NULL;
	for (char *l = strtok_r(all, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		json_t *o = json_of(l);
		if (json_object_get(o, "event")) {
			assert_string_equal(jstr(o, "side"), "proxy");
			json_decref(last);
			last = o;
			lines++;
		} else {
			rep = o;
		}
	}
	free(all);
	assert_non_null(last);
	assert_non_null(rep);
	assert_true(lines >= 3);
	assert_string_equal(jstr(last, "status"), "cancelled");
	assert_string_equal(jstr(rep, "status"), "cancelled");
	assert_true(jnum(last, "transferred") == jnum(rep, "bytes"));
	assert_true(jnum(rep, "bytes") > 0);
	json_decref(last);
	json_decref(rep);
	free(out);
	free(err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tls_both_sides),
		cmocka_unit_test(test_tls_one_side),
		cmocka_unit_test(test_tls_authz_refused),
		cmocka_unit_test(test_tls_usage),
		cmocka_unit_test(test_signal_in_handshake),
		cmocka_unit_test(test_signal_waiting),
		cmocka_unit_test(test_plain_source_not_drained),
		cmocka_unit_test(test_control_cancel),
	};
	return cmocka_run_group_tests(tests, setup, tu_teardown_tmp);
}
