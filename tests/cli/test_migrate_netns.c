/* SPDX-License-Identifier: MIT */
/*
 * Two hosts: network namespaces joined by a veth pair with a bandwidth limit
 * (tbf; netem latency is not available on every kernel, and the setup says
 * so), and a live migration over tcp between them. Skips cleanly where
 * namespaces cannot be made (not root, no veth).
 */
#include "test_migrate_util.h"

static char ns_a[32], ns_b[32], scripts[1024];

static void teardown_ns(void)
{
	char cmd[2048];
	snprintf(cmd, sizeof(cmd), "sh '%s/netns-teardown.sh' %s %s", scripts, ns_a, ns_b);
	tu_run(cmd, NULL, NULL);
}

static void test_two_hosts(void **state)
{
	(void)state;
	char cmd[4096], *out = NULL, *err = NULL;
	snprintf(scripts, sizeof(scripts), "%s/scripts", tu_source_dir());
	snprintf(ns_a, sizeof(ns_a), "hm-a-%d", (int)getpid() % 100000);
	snprintf(ns_b, sizeof(ns_b), "hm-b-%d", (int)getpid() % 100000);
	/* 100 Mbit/s, and ask for 20 ms of latency (skipped where netem is missing) */
	snprintf(cmd, sizeof(cmd), "sh '%s/netns-setup.sh' %s %s 100mbit 20", scripts, ns_a, ns_b);
	int rc = tu_run(cmd, &out, &err);
	if (rc == 77) {
		print_message("two hosts: %s", err ? err : "namespaces unavailable\n");
		free(out);
		free(err);
		skip();
	}
	if (rc != 0) {
		teardown_ns();
		fail_msg("netns setup failed: %s", err);
	}
	print_message("%s", out); /* says whether latency could be added */
	free(out);
	free(err);

	char *dir = tu_mkdtemp();
	struct bg in;
	snprintf(cmd, sizeof(cmd), "exec ip netns exec %s '%s' incoming tcp:10.231.0.2:4446 --json "
		 "--accept-timeout 30 --run 0.2", ns_b, tu_bin());
	bg_start(&in, dir, "nsin", cmd);
	snprintf(cmd, sizeof(cmd), "ip netns exec %s '%s' migrate tcp:10.231.0.2:4446 --json "
		 "--ram 2G --vcpus 2 --rate 20000 --connect-timeout 20", ns_a, tu_bin());
	rc = tu_run(cmd, &out, &err);
	int irc = bg_wait(&in, 60000);
	teardown_ns();
	if (rc != 0 || irc != 0)
		fail_msg("migrate rc %d [%s], incoming rc %d", rc, err, irc);
	json_t *s = json_of(out);
	json_t *d = json_of_file(in.out);
	assert_string_equal(jstr(s, "status"), "ok");
	assert_string_equal(jstr(d, "status"), "ok");
	assert_string_equal(jstr(s, "htab.digest"), jstr(d, "htab.digest"));
	assert_true(jbool(s, "verified"));
	assert_int_equal((int64_t)jnum(s, "bytes_total"), (int64_t)jnum(d, "bytes_total"));
	/* the shaper held: 100 Mbit/s = 12.5 MB/s (plus the 4 KB burst) */
	assert_true(jnum(s, "bandwidth_bytes_per_s") <= 13.5e6);
	assert_true(jnum(s, "total_time_ms") / 1000 >= jnum(s, "bytes_total") / 13.5e6);
	print_message("two hosts over 100 Mbit/s: %.0f bytes, downtime %.1f ms, total %.1f ms\n",
		      jnum(s, "bytes_total"), jnum(s, "downtime_ms"), jnum(s, "total_time_ms"));
	json_decref(s);
	json_decref(d);
	free(out);
	free(err);
	tu_rmdir(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {cmocka_unit_test(test_two_hosts)};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
