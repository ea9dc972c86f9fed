/* SPDX-License-Identifier: MIT */
/*
 * Two hosts: network namespaces joined by a veth pair with a bandwidth limit
 * (tbf, 100 Mbit/s) and a latency of 10 ms each way, and live migrations
 * over tcp between them. The latency comes from netem under the shaper
 * where the kernel has it, else from tests/cli/delay_relay run in the
 * source's namespace (127.0.0.1:4447 -> 10.231.0.2:4446 across the shaped
 * link); the output says which. Skips cleanly where namespaces cannot be
 * made (not root, no veth).
 */
#include "test_migrate_util.h"

#define DELAY_MS 10.0 /* each way: the round trip is 20 ms */
#define CAP_BYTES_PER_S 13.5e6 /* 100 Mbit/s = 12.5 MB/s, plus the 4 KB burst */

static char ns_a[32], ns_b[32], scripts[1024];
static bool ns_made;
static struct bg bg_in, bg_relay; /* reaped by the teardown even after a failed assert */

static int teardown_ns(void **state)
{
	(void)state;
	char cmd[2048];
	bg_reap(&bg_in);
	bg_reap(&bg_relay);
	if (ns_made) {
		snprintf(cmd, sizeof(cmd), "sh '%s/netns-teardown.sh' %s %s", scripts, ns_a, ns_b);
		tu_run(cmd, NULL, NULL);
		ns_made = false;
	}
	return 0;
}

struct run {
	json_t *s, *d;
};

/*
 * One migration from namespace A to B. via_relay: through delay_relay in A
 * (which must then end cleanly by itself and print nothing), else straight
 * to 10.231.0.2 (the latency then is netem's, or none for the baseline).
 */
static void migrate_once(const char *src_opts, bool via_relay, struct run *r)
{
	char cmd[4096], *out = NULL, *err = NULL;
	char *dir = tu_mkdtemp();
	memset(&bg_relay, 0, sizeof(bg_relay));
	snprintf(cmd, sizeof(cmd), "exec ip netns exec %s '%s' incoming tcp:10.231.0.2:4446 --json "
		 "--accept-timeout 30 --run 0.2", ns_b, tu_bin());
	bg_start(&bg_in, dir, "nsin", cmd);
	const char *uri = "tcp:10.231.0.2:4446";
	if (via_relay) {
		snprintf(cmd, sizeof(cmd), "exec ip netns exec %s '%s' -t 60 127.0.0.1:4447 "
			 "10.231.0.2:4446 %g", ns_a, getenv("DELAY_RELAY_BIN"), DELAY_MS);
		bg_start(&bg_relay, dir, "relay", cmd);
		uri = "tcp:127.0.0.1:4447";
	}
	snprintf(cmd, sizeof(cmd), "ip netns exec %s '%s' migrate %s --json --vcpus 2 --rate 20000 "
		 "--connect-timeout 20 --timeout 30 %s", ns_a, tu_bin(), uri, src_opts);
	int rc = tu_run(cmd, &out, &err);
	int irc = bg_wait(&bg_in, 60000);
	if (rc != 0 || irc != 0)
		fail_msg("migrate %s rc %d [%s], incoming rc %d", src_opts, rc, err, irc);
	if (via_relay) {
		assert_int_equal(bg_wait(&bg_relay, 10000), 0);
		char *rerr = slurp(bg_relay.err);
		if (*rerr)
			fail_msg("delay_relay: %s", rerr);
		free(rerr);
	}
	r->s = json_of(out);
	r->d = json_of_file(bg_in.out);
	free(out);
	free(err);
	tu_rmdir(dir);
	free(dir);
	json_t *s = r->s, *d = r->d;
	assert_string_equal(jstr(s, "status"), "ok");
	assert_string_equal(jstr(d, "status"), "ok");
	assert_string_equal(jstr(s, "htab.root"), jstr(d, "htab.root"));
	assert_true(jbool(s, "verified"));
	assert_true(jbool(d, "verified"));
	assert_int_equal((int64_t)jnum(s, "bytes_total"), (int64_t)jnum(d, "bytes_total"));
	/* the shaper held, and the stream could not have crossed faster */
	assert_true(jnum(s, "bandwidth_bytes_per_s") <= CAP_BYTES_PER_S);
	assert_true(jnum(s, "total_time_ms") / 1000 >= jnum(s, "bytes_total") / CAP_BYTES_PER_S);
	assert_string_equal(jstr(s, "downtime_measured_to"), "destination-resumed");
}

static void run_free(struct run *r)
{
	json_decref(r->s);
	json_decref(r->d);
}

static void test_two_hosts(void **state)
{
	(void)state;
	char cmd[4096], *out = NULL, *err = NULL;
	snprintf(scripts, sizeof(scripts), "%s/scripts", tu_source_dir());
	snprintf(ns_a, sizeof(ns_a), "hm-a-%d", (int)getpid() % 100000);
	snprintf(ns_b, sizeof(ns_b), "hm-b-%d", (int)getpid() % 100000);
	snprintf(cmd, sizeof(cmd), "sh '%s/netns-setup.sh' %s %s 100mbit %g", scripts, ns_a, ns_b,
		 DELAY_MS);
	int rc = tu_run(cmd, &out, &err);
	if (rc == 77) {
		print_message("two hosts: %s", err ? err : "namespaces unavailable\n");
		free(out);
		free(err);
		skip();
	}
	ns_made = true;
	if (rc != 0)
		fail_msg("netns setup failed: %s", err);
	print_message("%s", out); /* says whether netem could add the latency */
	bool netem = strstr(out, "netem delay") != NULL;
	free(out);
	free(err);
	bool relay = !netem;
	if (relay && !getenv("DELAY_RELAY_BIN"))
		fail_msg("no netem and DELAY_RELAY_BIN is not set");
	print_message("latency: %g ms each way by %s\n", DELAY_MS,
		      netem ? "netem" : "delay_relay (tcp via 127.0.0.1:4447 in the source's namespace)");

	/* 1. A 2 GiB guest at the default 300 ms limit. The stop costs at
	 * least the final bytes' way there and the RESUMED answer's way back. */
	struct run big;
	migrate_once("--ram 2G", relay, &big);
	print_message("2 GiB guest: %.0f bytes, bandwidth %.0f B/s, %d passes, downtime %.1f ms "
		      "(expected %.1f), total %.1f ms\n",
		      jnum(big.s, "bytes_total"), jnum(big.s, "bandwidth_bytes_per_s"),
		      (int)jnum(big.s, "iterations"), jnum(big.s, "downtime_ms"),
		      jnum(big.s, "expected_downtime_ms"), jnum(big.s, "total_time_ms"));
	assert_true(jnum(big.s, "downtime_ms") >= 2 * DELAY_MS);
	run_free(&big);

	/*
	 * 2. A 256 MiB guest (small table: a stop of a few ms without latency)
	 * with a 15 ms limit, below the round trip. The controller measures
	 * the round trip (PING/PONG at setup) and counts it in the fixed cost
	 * of the stop, so it sees the limit cannot be met and stops at the best
	 * point (fixed-cost-over-limit) instead of iterating to --timeout;
	 * the downtime contains the round trip.
	 */
	struct run small;
	migrate_once("--ram 256M --downtime-limit 15", relay, &small);
	const char *why = jstr(small.s, "stop_reason");
	if (strcmp(why, "converged") != 0 && strcmp(why, "fixed-cost-over-limit") != 0)
		fail_msg("the controller stopped for '%s'", why);
	double dt = jnum(small.s, "downtime_ms");
	print_message("256 MiB guest, limit 15 ms: %.0f bytes, stopped (%s) after %d passes, "
		      "downtime %.1f ms, expected %.1f ms (fixed %.1f)\n",
		      jnum(small.s, "bytes_total"), why, (int)jnum(small.s, "iterations"), dt,
		      jnum(small.s, "expected_downtime_ms"), jnum(small.s, "fixed_downtime_ms"));
	assert_true(dt >= 2 * DELAY_MS);
	print_message("measured round trip %.1f ms\n", jnum(small.s, "rtt_ms"));
	/* (a tenth off: the relay's clock and ours are read at other moments) */
	assert_true(jnum(small.s, "rtt_ms") >= 1.8 * DELAY_MS);
	assert_true(jnum(small.s, "fixed_downtime_ms") >= 1.8 * DELAY_MS);
	assert_true(jnum(small.s, "expected_downtime_ms") >= 1.8 * DELAY_MS);
	assert_string_equal(why, "fixed-cost-over-limit");
	run_free(&small);

	if (relay) {
		/* 3. The same without the relay (shaped link, no latency): the
		 * baseline that shows the round trip above is the relay's. */
		struct run base;
		migrate_once("--ram 256M --downtime-limit 15", false, &base);
		print_message("baseline without latency: downtime %.1f ms (round trip added: ~%.1f ms)\n",
			      jnum(base.s, "downtime_ms"), dt - jnum(base.s, "downtime_ms"));
		run_free(&base);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_two_hosts, teardown_ns),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
