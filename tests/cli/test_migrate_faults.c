/* SPDX-License-Identifier: MIT */
/*
 * CLI fault tests: the destination killed mid-stream (the source guest keeps
 * running; with --retries a second destination receives it with equal
 * digests), the source killed (the destination refuses), truncated and
 * bit-flipped files refused with the offset, an unreachable destination,
 * --timeout, and Ctrl-C. Every failure is a non-zero exit status and one
 * line on stderr.
 */
#include "test_migrate_util.h"

#include <poll.h>
#include <sys/un.h>

static void test_destination_killed(void **state)
{
	(void)state;
	char cmd[4096], uri[600];
	struct bg in, src;
	snprintf(uri, sizeof(uri), "unix:%s/k.sock", tu_tmp);
	snprintf(cmd, sizeof(cmd), "exec '%s' incoming %s", tu_bin(), uri);
	bg_start(&in, tu_tmp, "kin", cmd);
	snprintf(cmd, sizeof(cmd), "exec '%s' migrate %s --json --ram 1G --max-bandwidth 300K "
		 "--connect-timeout 5", tu_bin(), uri);
	bg_start(&src, tu_tmp, "ksrc", cmd);
	usleep(400000);
	bg_kill(&in, SIGKILL);
	bg_wait(&in, 5000);
	int rc = bg_wait(&src, 20000);
	char *err = slurp(src.err);
	assert_int_equal(rc, 1);
	assert_one_line(err);
	assert_non_null(strstr(err, "kept running on the source"));
	json_t *o = json_of_file(src.out);
	assert_string_equal(jstr(o, "status"), "failed");
	assert_false(jbool(o, "stopped"));
	assert_string_equal(jstr(o, "guest_state"), "running-on-source");
	assert_string_equal(jstr(o, "downtime_measured_to"), "not-stopped");
	/* the guest never noticed: still running, its table intact */
	assert_true(jbool(o, "guest.running"));
	assert_true(jnum(o, "htab.valid") >= 16384);
	json_decref(o);
	free(err);
}

static void test_destination_killed_retry(void **state)
{
	(void)state;
	char cmd[4096], uri[600], path[600];
	struct bg in2, src;
	snprintf(path, sizeof(path), "%s/r.sock", tu_tmp);
	snprintf(uri, sizeof(uri), "unix:%s", path);
	/* The first destination is this test: it accepts the source, takes
	 * part of the stream and dies (closes everything), so the first attempt
	 * surely failed mid-stream. */
	int lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(lfd, 1), 0);
	snprintf(cmd, sizeof(cmd), "exec '%s' migrate %s --json --ram 1G --max-bandwidth 1M "
		 "--vcpus 2 --retries 2 --retry-delay 0.3 --connect-timeout 20", tu_bin(), uri);
	bg_start(&src, tu_tmp, "rsrc", cmd);
	struct pollfd pf = {.fd = lfd, .events = POLLIN};
	assert_int_equal(poll(&pf, 1, 30000), 1);
	int cfd = accept(lfd, NULL, NULL);
	assert_true(cfd >= 0);
	char buf[4096];
	size_t got = 0;
	while (got < 20000) {
		ssize_t n = read(cfd, buf, sizeof(buf));
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	assert_true(got >= 20000);
	close(cfd);
	close(lfd);
	unlink(path);
	/* a second destination on the same address receives the guest */
	snprintf(cmd, sizeof(cmd), "exec '%s' incoming %s --json --run 0.1", tu_bin(), uri);
	bg_start(&in2, tu_tmp, "rin2", cmd);
	int rc = bg_wait(&src, 60000);
	int rc2 = bg_wait(&in2, 60000);
	char *err = slurp(src.err);
	if (rc != 0 || rc2 != 0)
		fail_msg("source rc %d [%s], second destination rc %d", rc, err, rc2);
	json_t *s = json_of_file(src.out);
	json_t *d = json_of_file(in2.out);
	assert_string_equal(jstr(s, "status"), "ok");
	assert_true(jnum(s, "attempts") >= 2);
	assert_string_equal(jstr(s, "htab.root"), jstr(d, "htab.root"));
	assert_true(jbool(d, "verified"));
	/* the retry started over with a full pass: everything valid was sent */
	assert_true(jnum(d, "htab.entries_sent") >= jnum(d, "htab.valid"));
	json_decref(s);
	json_decref(d);
	free(err);
}

static void test_source_killed(void **state)
{
	(void)state;
	char cmd[4096], uri[600];
	struct bg in, src;
	snprintf(uri, sizeof(uri), "unix:%s/s.sock", tu_tmp);
	snprintf(cmd, sizeof(cmd), "exec '%s' incoming %s --json", tu_bin(), uri);
	bg_start(&in, tu_tmp, "sin", cmd);
	snprintf(cmd, sizeof(cmd), "exec '%s' migrate %s --ram 1G --max-bandwidth 150K", tu_bin(),
		 uri);
	bg_start(&src, tu_tmp, "ssrc", cmd);
	usleep(800000); /* booted and connected, first pass under way (>1 s) */
	bg_kill(&src, SIGKILL);
	bg_wait(&src, 5000);
	int rc = bg_wait(&in, 20000);
	char *err = slurp(in.err);
	assert_int_equal(rc, 1);
	assert_one_line(err);
	assert_non_null(strstr(err, "refused"));
	assert_non_null(strstr(err, "offset"));
	json_t *o = json_of_file(in.out);
	assert_string_equal(jstr(o, "status"), "failed");
	assert_string_equal(jstr(o, "error_code"), "HM_E_TRUNCATED");
	assert_false(jbool(o, "resumed"));
	json_decref(o);
	free(err);
}

static void load_expect(const char *file, const char *code)
{
	char cmd[4096], *out = NULL, *err = NULL;
	snprintf(cmd, sizeof(cmd), "'%s' incoming file:%s --json", tu_bin(), file);
	int rc = tu_run(cmd, &out, &err);
	assert_int_equal(rc, 1);
	assert_one_line(err);
	assert_non_null(strstr(err, "offset"));
	json_t *o = json_of(out);
	assert_string_equal(jstr(o, "status"), "failed");
	if (code)
		assert_string_equal(jstr(o, "error_code"), code);
	assert_true(jnum(o, "error_offset") >= 0);
	assert_false(jbool(o, "resumed"));
	json_decref(o);
	free(out);
	free(err);
}

static void test_bad_files(void **state)
{
	(void)state;
	char cmd[4096], file[600], bad[700], *out = NULL, *err = NULL;
	snprintf(file, sizeof(file), "%s/good.mig", tu_tmp);
	snprintf(cmd, sizeof(cmd), "'%s' save %s --htab-shift 20 --vcpus 2", tu_bin(), file);
	assert_int_equal(tu_run(cmd, &out, &err), 0);
	free(out);
	free(err);
	uint8_t *d;
	size_t n;
	assert_int_equal(tu_read_file(file, &d, &n), 0);
	snprintf(bad, sizeof(bad), "%s/bad.mig", tu_tmp);
	uint64_t seed = tu_seed("bad-files");

	/* truncated anywhere: refused, HM_E_TRUNCATED, with the offset */
	for (int i = 0; i < 6; i++) {
		size_t cut = (size_t)(tu_rand(&seed) % (n - 1)) + 1;
		/* cuts inside the vmdesc are still "truncated" */
		assert_int_equal(tu_write_file(bad, d, cut), 0);
		load_expect(bad, NULL);
	}
	assert_int_equal(tu_write_file(bad, d, n / 2), 0);
	load_expect(bad, "HM_E_TRUNCATED");

	/* the source's root altered: the destination refuses the mismatch */
	uint8_t *c = malloc(n);
	memcpy(c, d, n);
	uint8_t *p = memmem(c, n, "hptmig/verify", 13);
	assert_non_null(p);
	/* idstr, be32 instance, be32 version (2), be32 shift, be64 valid,
	 * be32 slots per block, root */
	assert_int_equal(p[13 + 7], 2);
	p[13 + 4 + 4 + 4 + 8 + 4] ^= 0x01;
	assert_int_equal(tu_write_file(bad, c, n), 0);
	load_expect(bad, "HM_E_DIGEST");
	/* another block size: refused by name */
	memcpy(c, d, n);
	p[13 + 4 + 4 + 4 + 8 + 2] ^= 0x01;
	assert_int_equal(tu_write_file(bad, c, n), 0);
	load_expect(bad, "HM_E_FORMAT");

	/* bits flipped inside the table data: refused (digest mismatch or a
	 * structural error), or, when the flip cannot matter (bit 0x40 of V,
	 * an entry sent again later), loaded with exactly the source's table:
	 * never a silent wrong answer */
	snprintf(cmd, sizeof(cmd), "'%s' incoming file:%s --json", tu_bin(), file);
	assert_int_equal(tu_run(cmd, &out, &err), 0);
	json_t *good = json_of(out);
	char good_digest[65];
	snprintf(good_digest, sizeof(good_digest), "%s", jstr(good, "htab.root"));
	json_decref(good);
	free(out);
	free(err);
	int refused = 0;
	for (int i = 0; i < 12; i++) {
		memcpy(c, d, n);
		size_t at = n / 8 + (size_t)(tu_rand(&seed) % (n / 2));
		c[at] ^= (uint8_t)(1u << (tu_rand(&seed) % 8));
		assert_int_equal(tu_write_file(bad, c, n), 0);
		snprintf(cmd, sizeof(cmd), "'%s' incoming file:%s --json", tu_bin(), bad);
		int rc = tu_run(cmd, &out, &err);
		json_t *o = json_of(out);
		if (rc == 0) {
			assert_string_equal(jstr(o, "htab.root"), good_digest);
		} else {
			assert_int_equal(rc, 1);
			assert_one_line(err);
			assert_false(jbool(o, "resumed"));
			refused++;
		}
		json_decref(o);
		free(out);
		free(err);
	}
	assert_true(refused > 0);
	free(c);
	free(d);
}

static void test_unreachable(void **state)
{
	(void)state;
	char cmd[4096], *out = NULL, *err = NULL;
	snprintf(cmd, sizeof(cmd), "'%s' migrate tcp:127.0.0.1:%d --htab-shift 19 --json --connect-timeout 0.3",
		 tu_bin(), free_port());
	assert_int_equal(tu_run(cmd, &out, &err), 1);
	assert_one_line(err);
	assert_non_null(strstr(err, "cannot connect"));
	json_t *o = json_of(out);
	assert_true(jbool(o, "guest.running"));
	json_decref(o);
	free(out);
	free(err);
	snprintf(cmd, sizeof(cmd), "'%s' migrate unix:%s/nobody.sock --htab-shift 19 "
		 "--connect-timeout 0.3", tu_bin(), tu_tmp);
	uint64_t t0 = hm_now_ns();
	assert_int_equal(tu_run(cmd, &out, &err), 1);
	assert_true(hm_now_ns() - t0 < 10000000000ull);
	assert_one_line(err);
	free(out);
	free(err);
	/* retries against nobody: still a failure, after the attempts */
	snprintf(cmd, sizeof(cmd), "'%s' migrate tcp:127.0.0.1:%d --htab-shift 19 --retries 2 "
		 "--retry-delay 0.05 --json --connect-timeout 0.2", tu_bin(), free_port());
	assert_int_equal(tu_run(cmd, &out, &err), 1);
	o = json_of(out);
	assert_int_equal((int)jnum(o, "attempts"), 3);
	json_decref(o);
	free(out);
	free(err);
}

static void test_timeout(void **state)
{
	(void)state;
	char cmd[4096], uri[600];
	struct bg in;
	snprintf(uri, sizeof(uri), "unix:%s/t.sock", tu_tmp);
	snprintf(cmd, sizeof(cmd), "exec '%s' incoming %s --json", tu_bin(), uri);
	bg_start(&in, tu_tmp, "tin", cmd);
	char *out = NULL, *err = NULL;
	snprintf(cmd, sizeof(cmd), "'%s' migrate %s --json --ram 1G --max-bandwidth 100K "
		 "--timeout 0.5", tu_bin(), uri);
	uint64_t t0 = hm_now_ns();
	int rc = tu_run(cmd, &out, &err);
	uint64_t took = hm_now_ns() - t0;
	int irc = bg_wait(&in, 20000);
	assert_int_equal(rc, 1);
	assert_one_line(err);
	assert_non_null(strstr(err, "timeout"));
	assert_true(took < 5000000000ull);
	json_t *o = json_of(out);
	assert_string_equal(jstr(o, "error_code"), "HM_E_TIMEOUT");
	assert_false(jbool(o, "stopped"));
	assert_true(jbool(o, "guest.running"));
	json_decref(o);
	/* the destination saw half a stream and refused it */
	assert_int_equal(irc, 1);
	free(out);
	free(err);
}

static void test_interrupt(void **state)
{
	(void)state;
	char cmd[4096], uri[600];
	struct bg in, src;
	snprintf(uri, sizeof(uri), "unix:%s/i.sock", tu_tmp);
	snprintf(cmd, sizeof(cmd), "exec '%s' incoming %s --json", tu_bin(), uri);
	bg_start(&in, tu_tmp, "iin", cmd);
	snprintf(cmd, sizeof(cmd), "exec '%s' migrate %s --json --ram 1G --max-bandwidth 150K",
		 tu_bin(), uri);
	bg_start(&src, tu_tmp, "isrc", cmd);
	usleep(800000);
	bg_kill(&src, SIGINT);
	int rc = bg_wait(&src, 10000);
	int irc = bg_wait(&in, 20000);
	char *err = slurp(src.err);
	assert_int_equal(rc, 130); /* 128 + SIGINT */
	assert_one_line(err);
	assert_non_null(strstr(err, "interrupted"));
	json_t *o = json_of_file(src.out);
	assert_string_equal(jstr(o, "error_code"), "HM_E_CANCELLED");
	assert_true(jbool(o, "guest.running"));
	assert_string_equal(jstr(o, "guest_state"), "running-on-source");
	assert_false(jbool(o, "source_resumed"));
	assert_true(jnum(o, "downtime_ms") == 0);
	assert_int_equal(irc, 1);
	/* what went out before the Ctrl-C is counted, not 0: at least what
	 * the destination read before it refused the cut stream */
	json_t *d = json_of_file(in.out);
	print_message("interrupt: source sent %.0f bytes, destination read %.0f\n",
		      jnum(o, "bytes_total"), jnum(d, "bytes_total"));
	assert_true(jnum(o, "bytes_total") >= jnum(d, "bytes_total"));
	json_decref(d);
	json_decref(o);
	free(err);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_destination_killed),
		cmocka_unit_test(test_destination_killed_retry),
		cmocka_unit_test(test_source_killed),
		cmocka_unit_test(test_bad_files),
		cmocka_unit_test(test_unreachable),
		cmocka_unit_test(test_timeout),
		cmocka_unit_test(test_interrupt),
	};
	return cmocka_run_group_tests(tests, tu_setup_tmp, tu_teardown_tmp);
}
