/* SPDX-License-Identifier: MIT */
/*
 * The migration layer in process: URI parsing (golden good and bad
 * spellings), the return path's messages, a whole migration between two
 * threads with running vCPUs, and the faults: a destination that hangs up
 * or refuses (the source guest keeps running, or is resumed, with its table
 * intact, and a new attempt works), a policy that aborts, a cancel from
 * another thread.
 */
#include "testutil.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "hptmig/migration.h"
#include "hptmig/savevm.h"
#include "hptmig/htab.h"
#include "hptmig/machine.h"
#include "dest_thread.h"

static void test_uri_parse(void **state)
{
	(void)state;
	mig_uri_t u;
	hm_error_t e;
	char buf[300];
	const char *good[] = {"tcp:127.0.0.1:4444", "tcp:[::1]:5", "tcp:localhost:0",
			      "unix:/tmp/x.sock", "exec:cat > /dev/null", "file:/tmp/f.mig", "fd:3"};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		hm_error_clear(&e);
		assert_int_equal(mig_uri_parse(good[i], &u, &e), 0);
		mig_uri_format(&u, buf, sizeof(buf));
		assert_string_equal(buf, good[i]);
	}
	assert_int_equal(mig_uri_parse("tcp:[::1]:5", &u, NULL), 0);
	assert_string_equal(u.host, "::1");
	assert_int_equal(u.port, 5);
	assert_true(mig_uri_has_return_path(&u));
	assert_int_equal(mig_uri_parse("file:/x", &u, NULL), 0);
	assert_false(mig_uri_has_return_path(&u));
	struct {
		const char *s;
		int code;
		const char *says;
	} bad[] = {
		{"", HM_E_FORMAT, "unknown transport"},
		{"rdma:1.2.3.4:5", HM_E_FORMAT, "unknown transport"},
		{"tcp:host", HM_E_FORMAT, "HOST:PORT"},
		{"tcp:h:70000", HM_E_FORMAT, "port"},
		{"tcp:h:-1", HM_E_FORMAT, "port"},
		{"tcp:[::1:5", HM_E_FORMAT, "[ADDR]"},
		{"unix:", HM_E_FORMAT, "empty"},
		{"exec:", HM_E_FORMAT, "empty"},
		{"fd:x", HM_E_FORMAT, "not a number"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		hm_error_clear(&e);
		assert_int_equal(mig_uri_parse(bad[i].s, &u, &e), bad[i].code);
		if (!strstr(e.msg, bad[i].says))
			fail_msg("'%s': message '%s' lacks '%s'", bad[i].s, e.msg, bad[i].says);
	}
	char longp[300];
	memset(longp, 'a', sizeof(longp));
	memcpy(longp, "unix:", 5);
	longp[sizeof(longp) - 1] = 0;
	assert_int_equal(mig_uri_parse(longp, &u, &e), HM_E_RANGE);
}

static void test_return_path(void **state)
{
	(void)state;
	char s[600];
	mig_uri_t u;
	mig_listener_t *l;
	mig_conn_t *src, *dst;
	hm_error_t e;
	hm_error_clear(&e);
	snprintf(s, sizeof(s), "unix:%s/rp.sock", tu_tmp);
	assert_int_equal(mig_uri_parse(s, &u, &e), 0);
	assert_int_equal(mig_listen(&u, &l, &e), 0);
	assert_int_equal(mig_connect(&u, 1000, &src, &e), 0);
	assert_int_equal(mig_accept(l, 1000, &dst, &e), 0);
	assert_true(mig_conn_has_return_path(src) && mig_conn_has_return_path(dst));
	/* stream one way */
	mig_file_put_be32(mig_conn_file(src), 0xdeadbeef);
	assert_int_equal(mig_file_flush(mig_conn_file(src)), 0);
	assert_int_equal(mig_file_get_be32(mig_conn_file(dst)), 0xdeadbeef);
	/* answers the other way */
	mig_rp_msg_t m = {.type = MIG_RP_RESUMED, .valid = 12345, .bytes = 678, .load_ns = 9};
	for (int i = 0; i < 32; i++)
		m.digest[i] = (uint8_t)i;
	assert_int_equal(mig_rp_send_resumed(dst, &m), 0);
	mig_rp_msg_t got;
	assert_int_equal(mig_rp_recv(src, 1000, &got, &e), 0);
	assert_int_equal(got.type, MIG_RP_RESUMED);
	assert_memory_equal(got.digest, m.digest, 32);
	assert_int_equal(got.valid, 12345);
	assert_int_equal(got.bytes, 678);
	assert_true(got.has_digest && !got.has_root);
	/* RESUMED_ROOT (a version 2 stream): root, and the digest when computed */
	for (int with_digest = 0; with_digest < 2; with_digest++) {
		mig_rp_msg_t mr = {.valid = 7, .bytes = 8, .load_ns = 9, .has_root = true,
				   .has_digest = with_digest};
		for (int i = 0; i < 32; i++) {
			mr.root[i] = (uint8_t)(0x80 + i);
			mr.digest[i] = (uint8_t)(0x40 + i);
		}
		assert_int_equal(mig_rp_send_resumed(dst, &mr), 0);
		assert_int_equal(mig_rp_recv(src, 1000, &got, &e), 0);
		assert_int_equal(got.type, MIG_RP_RESUMED_ROOT);
		assert_true(got.has_root);
		assert_int_equal(got.has_digest, with_digest);
		assert_memory_equal(got.root, mr.root, 32);
		if (with_digest)
			assert_memory_equal(got.digest, mr.digest, 32);
		assert_true(got.valid == 7 && got.bytes == 8 && got.load_ns == 9);
	}
	hm_error_t why;
	hm_error_clear(&why);
	hm_error_set(&why, HM_E_DIGEST, 4242, "digests differ");
	assert_int_equal(mig_rp_send_refused(dst, &why), 0);
	assert_int_equal(mig_rp_recv(src, 1000, &got, &e), 0);
	assert_int_equal(got.type, MIG_RP_REFUSED);
	assert_int_equal(got.code, HM_E_DIGEST);
	assert_int_equal(got.offset, 4242);
	assert_string_equal(got.msg, "digests differ");
	assert_int_equal(mig_rp_send_pong(dst, 0x01020304), 0);
	assert_int_equal(mig_rp_recv(src, 1000, &got, &e), 0);
	assert_int_equal(got.type, MIG_RP_PONG);
	assert_int_equal(got.value, 0x01020304);
	/* silence is a timeout, a hang-up is a peer failure */
	assert_int_equal(mig_rp_recv(src, 50, &got, &e), HM_E_TIMEOUT);
	assert_int_equal(mig_conn_close(dst, NULL), 0);
	hm_error_clear(&e);
	assert_int_equal(mig_rp_recv(src, 1000, &got, &e), HM_E_PEER);
	mig_conn_close(src, NULL);
	mig_listener_close(l);
	/* the listener removed its socket file */
	assert_int_not_equal(access(u.path, F_OK), 0);
}

/*
 * The return path fed bad bytes by a destination that is only a raw socket:
 * a known type with the wrong length, an unknown type, a length above the
 * maximum, and a message cut short by a hang-up. Each is a clear error.
 */
static int raw_listen(const char *path)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	unlink(path);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(fd, 1), 0);
	return fd;
}

static void test_return_path_bad_bytes(void **state)
{
	(void)state;
	static const struct {
		uint8_t bytes[8];
		size_t len;
		int code;
		const char *msg;
	} cases[] = {
		{{0, 1, 0, 4, 1, 2, 3, 4}, 8, HM_E_FORMAT, "type 1 with length 4 is unknown"},
		{{0x12, 0x34, 0, 0}, 4, HM_E_FORMAT, "type 4660 with length 0 is unknown"},
		{{0, 3, 0, 3, 1, 2, 3}, 7, HM_E_FORMAT, "type 3 with length 3 is unknown"},
		{{0, 2, 0x04, 0x01}, 4, HM_E_FORMAT, "length 1025 exceeds max 1024"},
		{{0, 1, 0, 56, 9, 9}, 6, HM_E_PEER, "closed the connection without an answer"},
		{{0, 1}, 2, HM_E_PEER, "closed the connection without an answer"},
	};
	char path[600], uri[700];
	snprintf(path, sizeof(path), "%s/rpbad.sock", tu_tmp);
	snprintf(uri, sizeof(uri), "unix:%s", path);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int lfd = raw_listen(path);
		mig_uri_t u;
		mig_conn_t *src;
		hm_error_t e;
		hm_error_clear(&e);
		assert_int_equal(mig_uri_parse(uri, &u, &e), 0);
		assert_int_equal(mig_connect(&u, 1000, &src, &e), 0);
		int dfd = accept(lfd, NULL, NULL);
		assert_true(dfd >= 0);
		assert_int_equal(write(dfd, cases[i].bytes, cases[i].len), (ssize_t)cases[i].len);
		if (cases[i].code == HM_E_PEER)
			close(dfd);
		mig_rp_msg_t got;
		assert_int_equal(mig_rp_recv(src, 2000, &got, &e), cases[i].code);
		if (!strstr(e.msg, cases[i].msg))
			fail_msg("case %zu: message '%s' lacks '%s'", i, e.msg, cases[i].msg);
		if (cases[i].code != HM_E_PEER)
			close(dfd);
		mig_conn_close(src, NULL);
		close(lfd);
		unlink(path);
	}
}

/* --------------------------------------------------- in-process migration */

/* The resumed destination guest runs 20 ms before it stops. */
static void dest_run_20ms(void *opaque, machine_t *m)
{
	(void)opaque;
	(void)m;
	hm_sleep_ns(20000000);
}

/* The next destination also computes the flat digest (--digest). */
static bool next_dest_digest;

static void dest_start_hook(struct dest_thread *d, const char *uri,
			    void (*hook)(void *, machine_t *), void *opaque)
{
	dest_thread_listen(d, uri);
	d->p.guest.vcpus = 1;
	d->p.on_resumed = hook;
	d->p.resumed_opaque = opaque;
	d->p.digest = next_dest_digest;
	next_dest_digest = false;
	dest_thread_run(d);
}

static void dest_start(struct dest_thread *d, const char *uri)
{
	dest_start_hook(d, uri, dest_run_20ms, NULL);
}


/* Migrate m to a destination thread listening on dest_uri, the source
 * connecting to src_uri (the same, or a relay in between); both must
 * succeed. */
static void migrate_via(machine_t *m, const char *src_uri, const char *dest_uri,
			const mig_params_t *p, struct dest_thread *d, mig_report_t *rep)
{
	hm_error_t e;
	hm_error_clear(&e);
	dest_start(d, dest_uri);
	int rc = mig_source_run(m, src_uri, p, rep, &e);
	dest_thread_join(d);
	if (rc || d->rc)
		fail_msg("source: %s / destination: %s", e.msg, d->err.msg);
}

static machine_t *guest(unsigned shift, unsigned vcpus, uint64_t rate)
{
	machine_config_t c;
	machine_t *m;
	machine_config_default(&c);
	c.ram_bytes = 0;
	c.htab_shift = shift;
	c.vcpus = vcpus;
	c.rate = rate;
	c.seed = tu_seed("guest");
	assert_int_equal(machine_create(&c, &m, NULL), 0);
	assert_int_equal(machine_start(m, NULL), 0);
	return m;
}

/* A test's start: its socket's URI (unix:, in the test directory), default
 * params, and a running guest (guest()). */
static machine_t *begin(char *uri, size_t n, const char *name, unsigned shift, unsigned vcpus,
			uint64_t rate, mig_params_t *p)
{
	snprintf(uri, n, "unix:%s/%s.sock", tu_tmp, name);
	mig_params_default(p);
	return guest(shift, vcpus, rate);
}

static void migrate_ok(machine_t *m, const char *uri, mig_params_t *p)
{
	static unsigned calls;
	struct dest_thread d;
	mig_report_t rep;
	hm_error_t e;
	hm_error_clear(&e);
	next_dest_digest = calls++ & 1; /* every other one with --digest */
	dest_start(&d, uri);
	int rc = mig_source_run(m, uri, p, &rep, &e);
	dest_thread_join(&d);
	if (rc || d.rc)
		fail_msg("source: %s / destination: %s", e.msg, d.err.msg);
	assert_true(rep.verified);
	assert_true(d.rep.verified);
	/* the destination's flat digest only when asked (a whole-table walk
	 * in the downtime); the source's always (after the downtime) */
	assert_int_equal(d.rep.has_digest, d.p.digest);
	if (d.rep.has_digest)
		assert_memory_equal(rep.digest, d.rep.digest, 32);
	/* the roots kept current on both sides equal a full recomputation of
	 * the source's stopped table */
	uint8_t full[32], flat[32];
	assert_int_equal(hpt_root(machine_hpt(m), HPT_READ_LOCKED, full), 0);
	assert_memory_equal(full, rep.root, 32);
	assert_int_equal(hpt_digest(machine_hpt(m), flat), 0);
	assert_memory_equal(flat, rep.digest, 32);
	/* version 2: the roots were compared, and RESUMED_ROOT carried it */
	assert_true(rep.has_root && d.rep.has_root && rep.has_dest_root);
	assert_memory_equal(rep.root, d.rep.root, 32);
	assert_memory_equal(rep.dest_root, d.rep.root, 32);
	assert_int_equal(rep.guest, MIG_GUEST_RESUMED_ON_DESTINATION);
	assert_int_equal(rep.downtime_end, MIG_DOWNTIME_DEST_RESUMED);
	assert_false(rep.source_resumed);
	assert_true(rep.downtime_ns > 0 && rep.stopped_total_ns == rep.downtime_ns);
	/* the round trip was measured (PING answered PONG) and is in the fixed cost */
	assert_true(rep.rtt_ns > 0 && rep.rtt_ns < 2000000000ull);
	assert_true(rep.fixed_downtime_ns >= rep.rtt_ns);
	assert_int_equal(rep.bytes_total, d.rep.bytes_total);
	/* the source's table, hashed by hpt itself, is what arrived */
	assert_memory_equal(full, d.rep.root, 32);
	/* migrated: the source guest stays stopped */
	assert_true(machine_paused(m));
	assert_true(d.rep.guest.hcalls > 0); /* and runs on at the destination */
	assert_int_equal(d.rep.guest.unexpected, 0);
}

/* What the destination handed its on_resumed hook. */
struct resumed_seen {
	unsigned calls;
	bool running;     /* the guest's vCPUs were running when it was called */
	uint64_t hcalls;  /* hypercalls the guest made while the hook waited */
};

static void dest_record_resumed(void *opaque, machine_t *m)
{
	struct resumed_seen *r = opaque;
	machine_stats_t a, b;
	r->calls++;
	r->running = !machine_paused(m);
	machine_get_stats(m, &a);
	/* at least 30 ms, and until the guest made a hypercall (bounded: a
	 * loaded machine may not schedule its vCPU at once) */
	uint64_t t0 = hm_now_ns();
	do {
		hm_sleep_ns(10000000);
		machine_get_stats(m, &b);
	} while (hm_now_ns() - t0 < 30000000ull ||
		 (b.hcalls == a.hcalls && hm_now_ns() - t0 < 5000000000ull));
	r->hcalls = b.hcalls - a.hcalls;
}

/*
 * The destination calls on_resumed once, after the resume, with the
 * running guest, and stops it only when the hook returns (the CLI's --run
 * lives in tools/ on this hook); run_ns covers the hook's time.
 */
static void test_dest_on_resumed(void **state)
{
	(void)state;
	char uri[600];
	struct dest_thread d;
	struct resumed_seen seen = {0};
	mig_report_t rep;
	mig_params_t p;
	hm_error_t e;
	hm_error_clear(&e);
	mig_params_default(&p);
	machine_t *m = guest(20, 1, 0);
	snprintf(uri, sizeof(uri), "unix:%s/resumed.sock", tu_tmp);
	dest_start_hook(&d, uri, dest_record_resumed, &seen);
	int rc = mig_source_run(m, uri, &p, &rep, &e);
	dest_thread_join(&d);
	if (rc || d.rc)
		fail_msg("source: %s / destination: %s", e.msg, d.err.msg);
	assert_true(d.rep.resumed);
	assert_int_equal(seen.calls, 1);
	assert_true(seen.running);
	assert_true(seen.hcalls > 0);
	assert_true(d.rep.run_ns >= 30000000ull);
	machine_destroy(m);
}

static void test_migrate_in_process(void **state)
{
	(void)state;
	char uri[600];
	mig_params_t p;
	mig_params_default(&p);
	machine_t *m = guest(21, 2, 0); /* flat out */
	p.max_iterations = 4;
	snprintf(uri, sizeof(uri), "unix:%s/ok.sock", tu_tmp);
	migrate_ok(m, uri, &p);
	machine_destroy(m);

	/* the seed's policy and linear scan also produce a correct copy */
	m = guest(20, 2, 20000);
	mig_params_default(&p);
	p.policy = mig_policy_qemu_stop_rule;
	p.scan = HTAB_SCAN_LINEAR;
	migrate_ok(m, uri, &p);
	machine_destroy(m);
}

/* A destination that accepts, reads `n` bytes and hangs up, or reads the
 * whole stream and answers REFUSED. */
struct fake {
	mig_listener_t *l;
	size_t n;
	bool refuse;
	bool bad_pong; /* answer the PING at once with the wrong value */
	pthread_t t;
};

static void *fake_main(void *arg)
{
	struct fake *f = arg;
	mig_conn_t *c;
	if (mig_accept(f->l, 20000, &c, NULL) != 0)
		return NULL;
	mig_file_t *in = mig_conn_file(c);
	if (f->bad_pong)
		mig_rp_send_pong(c, 7);
	if (f->refuse) {
		while (!mig_file_eof(in) && mig_file_status(in) == 0)
			mig_file_get_u8(in);
		hm_error_t e;
		hm_error_clear(&e);
		hm_error_set(&e, HM_E_FORMAT, 77, "not today");
		mig_rp_send_refused(c, &e);
	} else {
		for (size_t i = 0; i < f->n; i++)
			mig_file_get_u8(in);
	}
	mig_conn_close(c, NULL);
	return NULL;
}

/* Migrate m to a fake destination f listening on uri; returns the source's code. */
static int migrate_to_fake(machine_t *m, const char *uri, const mig_params_t *p, struct fake *f,
			   mig_report_t *rep, hm_error_t *e)
{
	mig_uri_t u;
	assert_int_equal(mig_uri_parse(uri, &u, NULL), 0);
	assert_int_equal(mig_listen(&u, &f->l, NULL), 0);
	assert_int_equal(pthread_create(&f->t, NULL, fake_main, f), 0);
	hm_error_clear(e);
	int rc = mig_source_run(m, uri, p, rep, e);
	pthread_join(f->t, NULL);
	mig_listener_close(f->l);
	return rc;
}

static void test_failure_leaves_guest_running(void **state)
{
	(void)state;
	char uri[600];
	mig_params_t p;
	machine_t *m = begin(uri, sizeof(uri), "fail", 22, 2, 20000, &p);
	/* The first pass (128 KiB) must span several 100 ms rate windows, so the
	 * hang-up of kind 0 lands before the stop whatever the scheduling. */
	p.max_bandwidth = 256u << 10;
	p.max_iterations = 1; /* the guest dirties faster than that: stop anyway */
	for (int kind = 0; kind < 2; kind++) {
		struct fake f = {.n = 20000, .refuse = kind == 1};
		mig_report_t rep;
		hm_error_t e;
		int rc = migrate_to_fake(m, uri, &p, &f, &rep, &e);
		if (rc >= 0 || rep.stopped != (kind == 1))
			print_message("kind %d: rc %d (%s), stopped %d: %s\n", kind, rc,
				      hm_err_name(rc), rep.stopped, e.msg);
		assert_true(rc < 0);
		if (kind == 0) {
			/* hung up during precopy: the guest never stopped */
			assert_false(rep.stopped);
			assert_int_equal(rep.guest, MIG_GUEST_RUNNING_ON_SOURCE);
			assert_int_equal(rep.downtime_end, MIG_DOWNTIME_NOT_STOPPED);
			assert_true(rep.downtime_ns == 0);
		} else {
			/* refused after the stop: resumed, and the reason is shown */
			assert_true(rep.stopped);
			assert_true(rep.source_resumed);
			assert_int_equal(rep.guest, MIG_GUEST_RESUMED_ON_SOURCE);
			assert_int_equal(rep.downtime_end, MIG_DOWNTIME_SOURCE_RESUMED);
			/* stopped from the pause to the resume: more than the pause */
			assert_true(rep.downtime_ns > rep.pause_ns);
			assert_true(rep.stopped_total_ns == rep.downtime_ns);
			assert_int_equal(rc, HM_E_FORMAT);
			assert_non_null(strstr(e.msg, "not today"));
		}
		/* the guest runs: its hypercalls go on and change its table */
		assert_false(machine_paused(m));
		/* polled for up to 5 s: on a loaded machine (sanitizers, other
		 * builds) the vCPU threads may not run within a fixed short sleep */
		machine_stats_t s1, s2;
		machine_get_stats(m, &s1);
		for (int i = 0; i < 500; i++) {
			hm_sleep_ns(10000000);
			machine_get_stats(m, &s2);
			if (s2.hcalls > s1.hcalls)
				break;
		}
		assert_true(s2.hcalls > s1.hcalls);
		assert_false(hpt_tracking(machine_hpt(m))); /* tracking stopped */
	}
	/* and a new attempt works, with a full pass */
	mig_params_default(&p);
	migrate_ok(m, uri, &p);
	machine_destroy(m);
}

static enum mig_policy_answer abort_after_two(void *opaque, const mig_policy_stats_t *st)
{
	int *calls = opaque;
	(*calls)++;
	assert_true(st->downtime_limit_ns == 300000000ull);
	return st->rounds >= 2 ? MIG_POLICY_ABORT : MIG_POLICY_CONTINUE;
}

struct canceller {
	mig_cancel_t *c;
	uint64_t after_ns;
};

static void *cancel_main(void *arg)
{
	struct canceller *c = arg;
	hm_sleep_ns(c->after_ns);
	mig_cancel_request(c->c);
	return NULL;
}

static void test_policy_abort_and_cancel(void **state)
{
	(void)state;
	char uri[600];
	mig_params_t p;
	machine_t *m = begin(uri, sizeof(uri), "abort", 22, 1, 1000, &p);
	int calls = 0;
	p.policy = abort_after_two;
	p.policy_opaque = &calls;
	p.max_bandwidth = 1u << 20;
	struct dest_thread d;
	dest_start(&d, uri);
	mig_report_t rep;
	hm_error_t e;
	hm_error_clear(&e);
	assert_int_equal(mig_source_run(m, uri, &p, &rep, &e), HM_E_CANCELLED);
	dest_thread_join(&d);
	assert_int_equal(calls, 2);
	assert_true(d.rc < 0); /* half a stream: refused */
	assert_false(d.rep.resumed);
	assert_false(machine_paused(m));

	/* a cancel from another thread wakes a transfer blocked on the link */
	mig_params_default(&p);
	p.max_bandwidth = 64u << 10;
	assert_int_equal(mig_cancel_new(&p.cancel), 0);
	struct canceller c = {.c = p.cancel, .after_ns = 200000000};
	pthread_t t;
	dest_start(&d, uri);
	assert_int_equal(pthread_create(&t, NULL, cancel_main, &c), 0);
	uint64_t t0 = hm_now_ns();
	hm_error_clear(&e);
	int rc = mig_source_run(m, uri, &p, &rep, &e);
	uint64_t took = hm_now_ns() - t0;
	pthread_join(t, NULL);
	dest_thread_join(&d);
	assert_int_equal(rc, HM_E_CANCELLED);
	assert_true(took < 3000000000ull);
	assert_false(machine_paused(m));
	mig_cancel_free(p.cancel);
	machine_destroy(m);
}

/*
 * A cancel that comes with the policy's STOP, before the catch-up rounds
 * (mig_params_t.stop_catchup): the guest has not been stopped, so it runs
 * on, and the destination refuses half a stream.
 */
static enum mig_policy_answer stop_and_cancel(void *opaque, const mig_policy_stats_t *st)
{
	mig_cancel_t *c = opaque;
	if (st->iterations < 1)
		return MIG_POLICY_CONTINUE;
	mig_cancel_request(c);
	return MIG_POLICY_STOP;
}

static void test_cancel_in_catchup(void **state)
{
	(void)state;
	char uri[600];
	mig_params_t p;
	machine_t *m = begin(uri, sizeof(uri), "catchup", 24, 2, 20000, &p);
	assert_true(p.stop_catchup);
	assert_int_equal(mig_cancel_new(&p.cancel), 0);
	p.policy = stop_and_cancel;
	p.policy_opaque = p.cancel;
	struct dest_thread d;
	dest_start(&d, uri);
	mig_report_t rep;
	hm_error_t e;
	hm_error_clear(&e);
	assert_int_equal(mig_source_run(m, uri, &p, &rep, &e), HM_E_CANCELLED);
	dest_thread_join(&d);
	assert_non_null(strstr(e.msg, "before the guest was stopped"));
	assert_false(rep.stopped);
	assert_int_equal(rep.catchup_rounds, 0);
	assert_false(machine_paused(m));
	assert_true(d.rc < 0);
	assert_false(d.rep.resumed);
	mig_cancel_free(p.cancel);
	machine_destroy(m);
}

/*
 * The guest grows its table after the last round and before the stop: the
 * source sends the new table in PART records once the vCPUs are stopped,
 * and the destination ends with the new, equal table.
 */
struct resize_policy {
	machine_t *m;
	unsigned new_shift;
};

static enum mig_policy_answer resize_then_stop(void *opaque, const mig_policy_stats_t *st)
{
	struct resize_policy *r = opaque;
	if (st->iterations < 1)
		return MIG_POLICY_CONTINUE;
	hpt_t *h = machine_hpt(r->m);
	unsigned ns = hpt_shift(h) + 1;
	if (!r->new_shift && hpt_h_resize_prepare(h, 0, ns) == H_SUCCESS &&
	    hpt_h_resize_commit(h, 0, ns) == H_SUCCESS)
		r->new_shift = ns;
	return MIG_POLICY_STOP;
}

static void test_resize_before_stop(void **state)
{
	(void)state;
	char uri[600];
	snprintf(uri, sizeof(uri), "unix:%s/resize.sock", tu_tmp);
	machine_t *m = guest(20, 2, 20000);
	struct resize_policy r = {.m = m};
	mig_params_t p;
	mig_params_default(&p);
	p.policy = resize_then_stop;
	p.policy_opaque = &r;
	/* the resize right before the pause, as the policy's STOP leaves it
	 * (a catch-up round would send the new table before the stop) */
	p.stop_catchup = false;
	struct dest_thread d;
	mig_report_t rep;
	migrate_via(m, uri, uri, &p, &d, &rep);
	assert_int_equal(r.new_shift, 21);
	assert_true(rep.resized_at_stop);
	assert_true(rep.verified && d.rep.verified);
	assert_int_equal(d.rep.htab_shift, 21);
	uint8_t dg[32];
	assert_int_equal(hpt_root(machine_hpt(m), HPT_READ_LOCKED, dg), 0);
	assert_memory_equal(dg, d.rep.root, 32);
	assert_memory_equal(dg, rep.root, 32);
	assert_int_equal(d.rep.htab.tables, 2); /* START and the resize's PART */
	machine_destroy(m);
}

/*
 * A source that sends the header and then a COMMAND the destination must
 * refuse: a PING with 3 bytes instead of 4, or a command it does not know.
 * The destination answers REFUSED naming it and never resumes.
 */
static void test_dest_refuses_commands(void **state)
{
	(void)state;
	static const struct {
		uint8_t cmd[9];
		size_t len;
		int code;
		const char *msg;
	} cases[] = {
		{{0x08, 0, 2, 0, 3, 1, 2, 3}, 8, HM_E_FORMAT, "PING has length 3, expected 4"},
		{{0x08, 0, 1, 0, 0}, 5, HM_E_UNKNOWN, "unknown COMMAND 1"},
	};
	char uri[600];
	snprintf(uri, sizeof(uri), "unix:%s/cmd.sock", tu_tmp);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct dest_thread d;
		dest_start(&d, uri);
		mig_uri_t u;
		mig_conn_t *src;
		hm_error_t e;
		hm_error_clear(&e);
		assert_int_equal(mig_uri_parse(uri, &u, &e), 0);
		assert_int_equal(mig_connect(&u, 5000, &src, &e), 0);
		savevm_registry_t *r;
		assert_int_equal(savevm_registry_new(&r), 0);
		mig_file_t *f = mig_conn_file(src);
		assert_int_equal(savevm_write_header(r, f, "pseries", &e), 0);
		mig_file_put_buffer(f, cases[i].cmd, cases[i].len);
		assert_int_equal(mig_file_flush(f), 0);
		mig_conn_finish_write(src);
		mig_rp_msg_t got;
		assert_int_equal(mig_rp_recv(src, 5000, &got, &e), 0);
		assert_int_equal(got.type, MIG_RP_REFUSED);
		assert_int_equal(got.code, cases[i].code);
		if (!strstr(got.msg, cases[i].msg))
			fail_msg("case %zu: '%s' lacks '%s'", i, got.msg, cases[i].msg);
		dest_thread_join(&d);
		assert_int_equal(d.rc, cases[i].code);
		assert_false(d.rep.resumed);
		savevm_registry_free(r);
		mig_conn_close(src, NULL);
	}
}

/* A destination whose PONG does not answer our PING: a clear error before
 * the stop, and the guest keeps running. */
static void test_bad_pong(void **state)
{
	(void)state;
	char uri[600];
	mig_params_t p;
	machine_t *m = begin(uri, sizeof(uri), "pong", 20, 1, 1000, &p);
	struct fake f = {.n = 1 << 20, .bad_pong = true};
	mig_report_t rep;
	hm_error_t e;
	int rc = migrate_to_fake(m, uri, &p, &f, &rep, &e);
	assert_int_equal(rc, HM_E_FORMAT);
	assert_non_null(strstr(e.msg, "expected PONG"));
	assert_false(rep.stopped);
	assert_false(machine_paused(m));
	machine_destroy(m);
}

/*
 * The catch-up waits for the destination (source.c, dest_barrier): after
 * each catch-up round a PING, whose PONG comes once the destination has
 * loaded and hashed the round. A guest that changes blocks faster than a
 * round's refresh re-hashes them (32 MiB table, 2 x 200 000 hcalls/s)
 * and a policy that says STOP after the first pass make the catch-up run.
 */
static enum mig_policy_answer stop_after_first(void *opaque, const mig_policy_stats_t *st)
{
	(void)opaque;
	return st->iterations < 1 ? MIG_POLICY_CONTINUE : MIG_POLICY_STOP;
}

static void test_catchup_waits_for_destination(void **state)
{
	(void)state;
	char uri[600];
	mig_params_t p;
	machine_t *m = begin(uri, sizeof(uri), "barrier", 25, 2, 200000, &p);
	p.policy = stop_after_first;
	struct dest_thread d;
	mig_report_t rep;
	migrate_via(m, uri, uri, &p, &d, &rep);
	assert_true(rep.verified && d.rep.verified);
	if (rep.catchup_rounds == 0)
		fail_msg("no catch-up round (blocks at the decision: %llu)",
			 (unsigned long long)rep.verify_blocks_at_decision);
	/* every round answered in time (each wait is bounded by the 300 ms
	 * limit; a 32 MiB table's round is hashed in a few ms) */
	assert_int_equal(rep.catchup_dest_caught_up, rep.catchup_rounds);
	assert_true(rep.catchup_dest_wait_ns > 0 && rep.catchup_dest_wait_ns <= rep.catchup_ns);
	machine_destroy(m);
}

/*
 * A relay between source and destination that passes the stream and the
 * return path, except the PONGs of the catch-up's PINGs (value
 * 0x687063xx): it swallows them (a destination that never says it caught
 * up), or puts a REFUSED with terminal escapes in its message, or a
 * message of an unknown type, in place of the first one.
 */
enum barrier_mode { BARRIER_EAT, BARRIER_REFUSE, BARRIER_GARBAGE };
struct pong_eater {
	enum barrier_mode mode;
	int lfd;
	char path[200], dest_path[200];
	pthread_t t;
	unsigned eaten;
};

/* What the relay sends instead of a catch-up PONG (mode REFUSE or
 * GARBAGE); false when it sends nothing. */
static bool barrier_reply(enum barrier_mode mode, int a)
{
	static const char msg[] = "no\x1b[2J";
	uint8_t w[4 + 12 + sizeof(msg)];
	size_t n = 4 + 4;
	if (mode == BARRIER_EAT)
		return false;
	memset(w, 0, sizeof(w));
	if (mode == BARRIER_REFUSE) {
		hm_store_be16(w, MIG_RP_REFUSED);
		hm_store_be32(w + 4, (uint32_t)HM_E_FORMAT);
		hm_store_be64(w + 8, 77);
		memcpy(w + 16, msg, sizeof(msg) - 1);
		n = 16 + sizeof(msg) - 1;
	} else {
		hm_store_be16(w, 0x99);
	}
	hm_store_be16(w + 2, (uint16_t)(n - 4));
	return write(a, w, n) == (ssize_t)n;
}

static void relay_copy(int from, int to)
{
	uint8_t buf[65536];
	ssize_t n;
	while ((n = read(from, buf, sizeof(buf))) > 0)
		for (ssize_t o = 0; o < n;) {
			ssize_t w = write(to, buf + o, (size_t)(n - o));
			if (w <= 0)
				return;
			o += w;
		}
	shutdown(to, SHUT_WR);
}

static bool read_full(int fd, uint8_t *b, size_t n)
{
	for (size_t o = 0; o < n;) {
		ssize_t r = read(fd, b + o, n - o);
		if (r <= 0)
			return false;
		o += (size_t)r;
	}
	return true;
}

struct copy_args {
	int from, to;
};

static void *relay_fwd(void *arg)
{
	struct copy_args *c = arg;
	relay_copy(c->from, c->to);
	return NULL;
}

static void *pong_eater_main(void *arg)
{
	struct pong_eater *pe = arg;
	int a = accept(pe->lfd, NULL, NULL);
	int b = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", pe->dest_path);
	if (a < 0 || b < 0 || connect(b, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		close(a);
		close(b);
		return NULL;
	}
	struct copy_args fwd = {a, b};
	pthread_t t;
	if (pthread_create(&t, NULL, relay_fwd, &fwd) != 0) {
		close(a);
		close(b);
		return NULL;
	}
	/* the return path, message by message: be16 type, be16 length, payload */
	uint8_t h[4], body[MIG_RP_PAYLOAD_MAX];
	while (read_full(b, h, 4)) {
		uint16_t type = hm_load_be16(h), len = hm_load_be16(h + 2);
		if (len > sizeof(body) || !read_full(b, body, len))
			break;
		if (type == MIG_RP_PONG && len == 4 && (hm_load_be32(body) >> 8) == 0x687063u) {
			pe->eaten++;
			barrier_reply(pe->mode, a);
			continue;
		}
		if (write(a, h, 4) != 4 || write(a, body, len) != (ssize_t)len)
			break;
	}
	shutdown(a, SHUT_WR);
	pthread_join(t, NULL);
	close(a);
	close(b);
	return NULL;
}

/* The relay listening on uri (source side), its destination on duri;
 * running until relay_join. */
static void relay_start(struct pong_eater *pe, enum barrier_mode mode, char *uri, char *duri,
			size_t n)
{
	memset(pe, 0, sizeof(*pe));
	pe->mode = mode;
	snprintf(pe->path, sizeof(pe->path), "%s/eater.sock", tu_tmp);
	snprintf(pe->dest_path, sizeof(pe->dest_path), "%s/eaterdest.sock", tu_tmp);
	snprintf(uri, n, "unix:%s", pe->path);
	snprintf(duri, n, "unix:%s", pe->dest_path);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", pe->path);
	unlink(sa.sun_path);
	pe->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(pe->lfd >= 0);
	assert_int_equal(bind(pe->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(pe->lfd, 1), 0);
	assert_int_equal(pthread_create(&pe->t, NULL, pong_eater_main, pe), 0);
}

static void relay_join(struct pong_eater *pe)
{
	pthread_join(pe->t, NULL);
	close(pe->lfd);
	unlink(pe->path);
}

/* The swallowed PONGs: the source waits at most the downtime limit per
 * round, then stops all the same; the migration completes, verified. */
static void test_catchup_destination_never_catches_up(void **state)
{
	(void)state;
	char uri[600], duri[600];
	struct pong_eater pe;
	machine_t *m = guest(25, 2, 200000);
	mig_params_t p;
	mig_params_default(&p);
	p.policy = stop_after_first;
	p.downtime_limit_ns = 50000000; /* the bound of each wait */
	struct dest_thread d;
	relay_start(&pe, BARRIER_EAT, uri, duri, sizeof(uri));
	mig_report_t rep;
	migrate_via(m, uri, duri, &p, &d, &rep);
	relay_join(&pe);
	assert_true(rep.verified && d.rep.verified);
	assert_int_equal(rep.guest, MIG_GUEST_RESUMED_ON_DESTINATION);
	if (rep.catchup_rounds == 0)
		fail_msg("no catch-up round (blocks at the decision: %llu)",
			 (unsigned long long)rep.verify_blocks_at_decision);
	assert_int_equal(rep.catchup_dest_caught_up, 0);
	assert_int_equal(pe.eaten, rep.catchup_rounds);
	/* each round waited its 50 ms, no longer */
	assert_true(rep.catchup_dest_wait_ns >= rep.catchup_rounds * 45000000ull);
	assert_true(rep.catchup_dest_wait_ns <= rep.catchup_rounds * 1000000000ull);
	machine_destroy(m);
}

/* A REFUSED (its message with terminal escapes) or a message of an
 * unknown type where the catch-up's PONG should be: the source fails with
 * one clear line before the pause (the peer's bytes escaped), and the
 * guest runs on. */
static void test_catchup_bad_answer(void **state)
{
	(void)state;
	for (int mode = BARRIER_REFUSE; mode <= BARRIER_GARBAGE; mode++) {
		char uri[600], duri[600];
		struct pong_eater pe;
		machine_t *m = guest(25, 2, 200000);
		mig_params_t p;
		mig_params_default(&p);
		p.policy = stop_after_first;
		struct dest_thread d;
		relay_start(&pe, (enum barrier_mode)mode, uri, duri, sizeof(uri));
		dest_start(&d, duri);
		mig_report_t rep;
		hm_error_t e;
		hm_error_clear(&e);
		int rc = mig_source_run(m, uri, &p, &rep, &e);
		dest_thread_join(&d);
		relay_join(&pe);
		if (rep.catchup_rounds == 0)
			fail_msg("no catch-up round (blocks at the decision: %llu)",
				 (unsigned long long)rep.verify_blocks_at_decision);
		assert_int_equal(pe.eaten, 1);
		assert_int_equal(rc, HM_E_FORMAT);
		if (mode == BARRIER_REFUSE) {
			assert_non_null(strstr(e.msg, "refused the stream: \"no\\x1b[2J\""));
			assert_int_equal(e.offset, 77);
		} else {
			assert_non_null(strstr(e.msg, "waiting for the destination to catch up"));
		}
		assert_null(strchr(e.msg, 0x1b));
		assert_false(rep.stopped);
		assert_int_equal(rep.catchup_dest_caught_up, 0);
		assert_false(machine_paused(m));
		assert_true(d.rc < 0 && !d.rep.resumed);
		machine_destroy(m);
	}
}

/* A destination-side load of a stream file: the guest's sections over a
 * loader's own table. */
struct loaded {
	hpt_t *t;
	htab_loader_t *l;
	savevm_registry_t *r;
	spapr_state_t spapr;
	savevm_verify_t verify;
};

static void load_file(struct loaded *x, const char *path)
{
	uint8_t *data;
	size_t len;
	mig_file_t *f;
	hm_error_t e;
	hm_error_clear(&e);
	memset(x, 0, sizeof(*x));
	assert_int_equal(tu_read_file(path, &data, &len), 0);
	assert_int_equal(hpt_create(HPT_SHIFT_MIN, NULL, &x->t, NULL), 0);
	htab_loader_opts_t lo = {.exclusive = true};
	assert_int_equal(htab_loader_create(x->t, &lo, &x->l), 0);
	assert_int_equal(savevm_registry_new(&x->r), 0);
	assert_int_equal(htab_register_load(x->r, x->l, &e), 0);
	assert_int_equal(machine_spapr_register(x->r, &x->spapr, &e), 0);
	assert_int_equal(savevm_register_verify(x->r, &x->verify, &e), 0);
	assert_int_equal(mig_file_open_mem_reader(data, len, &f), 0);
	if (savevm_load_stream(f, x->r, &e) != 0)
		fail_msg("load: %s", e.msg);
	mig_file_close(f, NULL);
	free(data);
}

/* Compare the loaded table with the stream's hptmig/verify, as the
 * destination does after a load. */
static int check_loaded(struct loaded *x, hm_error_t *e)
{
	hpt_t *t = htab_loader_table(x->l);
	uint8_t root[32];
	uint64_t valid;
	assert_int_equal(hpt_root_summary(t, HPT_READ_QUIESCENT, &valid, NULL, NULL, root), 0);
	hm_error_clear(e);
	return savevm_verify_check(&x->verify, hpt_shift(t), valid, NULL, root, e);
}

/*
 * A destination whose table changes after the load (one bit of R, one bit
 * of V, an entry dropped, an entry added) is caught by the version 2
 * verification: every change fails the check, naming the root, and
 * undoing it passes again.
 */
static void test_dest_corrupted_after_load(void **state)
{
	(void)state;
	machine_t *m = guest(18, 1, 2000);
	char uri[600];
	snprintf(uri, sizeof(uri), "file:%s/corrupt.mig", tu_tmp);
	mig_params_t p;
	mig_params_default(&p);
	mig_report_t rep;
	hm_error_t e;
	hm_error_clear(&e);
	if (mig_source_run(m, uri, &p, &rep, &e) != 0)
		fail_msg("source: %s", e.msg);
	struct loaded x;
	load_file(&x, uri + 5);
	assert_true(x.verify.loaded);
	assert_int_equal(x.verify.version, 2);
	assert_memory_equal(x.verify.root, rep.root, 32);
	assert_int_equal(check_loaded(&x, &e), 0);

	hpt_t *t = htab_loader_table(x.l);
	uint64_t seed = tu_seed("corrupt after load");
	uint8_t ent[16];
	uint64_t slot = 0, v = 0, r = 0, empty = UINT64_MAX;
	/* a valid entry at a random place, and an empty slot */
	for (uint64_t i = 0, s0 = tu_rand(&seed) % hpt_slots(t); i < hpt_slots(t); i++) {
		uint64_t s = (s0 + i) % hpt_slots(t);
		hpt_read_entries(t, s, 1, ent);
		if (hm_load_be64(ent) & HPTE64_V_VALID) {
			if (!v) {
				slot = s;
				v = hm_load_be64(ent);
				r = hm_load_be64(ent + 8);
			}
		} else if (empty == UINT64_MAX) {
			empty = s;
		}
	}
	assert_true(v != 0 && empty != UINT64_MAX);
	const struct {
		uint64_t slot, v, r;
	} bad[] = {
		{slot, v, r ^ HPTE64_R_C},                 /* one bit of R */
		{slot, v ^ (UINT64_C(1) << 40), r},        /* one bit of V (AVPN) */
		{slot, v & ~HPTE64_V_VALID, r},            /* the entry lost */
		{empty, HPTE64_V_VALID | 0x80, 0x1000},    /* an entry that was never sent */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		hpt_read_entries(t, bad[i].slot, 1, ent);
		assert_true(hpt_write_entry(t, bad[i].slot, bad[i].v, bad[i].r));
		int rc = check_loaded(&x, &e);
		if (rc != HM_E_DIGEST)
			fail_msg("change %zu at slot %llu not caught: %s", i,
				 (unsigned long long)bad[i].slot, e.msg);
		assert_non_null(strstr(e.msg, "root"));
		assert_true(hpt_write_entry(t, bad[i].slot, hm_load_be64(ent), hm_load_be64(ent + 8)));
		assert_int_equal(check_loaded(&x, &e), 0);
	}
	savevm_registry_free(x.r);
	htab_loader_destroy(x.l);
	hpt_destroy(x.t);
	machine_destroy(m);
}

/*
 * Turn the version 2 hptmig/verify section of a stream into the version 1
 * an older sender wrote: version 1, be32 shift, be64 valid, the flat
 * digest (4 bytes shorter). Returns the new length.
 */
static size_t verify_to_v1(uint8_t *d, size_t len, const uint8_t digest[32])
{
	uint8_t *p = memmem(d, len, "hptmig/verify", 13);
	assert_non_null(p);
	uint8_t *ver = p + 13 + 4, *pay = ver + 4; /* idstr, be32 instance, be32 version */
	assert_int_equal(hm_load_be32(ver), 2);
	assert_int_equal(hm_load_be32(pay + 12), 4096);
	hm_store_be32(ver, 1);
	memcpy(pay + 12, digest, 32);
	size_t tail = (size_t)(pay + 48 - d);
	memmove(pay + 44, pay + 48, len - tail);
	return len - 4;
}

static int dest_file(const char *path, mig_dest_report_t *rep, hm_error_t *e)
{
	char uri[700];
	mig_uri_t u;
	mig_listener_t *l;
	mig_dest_params_t p;
	snprintf(uri, sizeof(uri), "file:%s", path);
	assert_int_equal(mig_uri_parse(uri, &u, NULL), 0);
	assert_int_equal(mig_listen(&u, &l, NULL), 0);
	mig_dest_params_default(&p);
	p.no_resume = true;
	hm_error_clear(e);
	int rc = mig_dest_run(l, &p, rep, e);
	mig_listener_close(l);
	return rc;
}

/*
 * The destination loads both versions: the stream as sent (version 2,
 * checked by the root) and the same stream with a version 1 section
 * (checked by the digest); a version 1 digest one bit off is refused with
 * the verify record's offset.
 */
static void test_dest_loads_v1_and_v2(void **state)
{
	(void)state;
	machine_t *m = guest(18, 1, 2000);
	char path[600], uri[700];
	snprintf(path, sizeof(path), "%s/v1v2.mig", tu_tmp);
	snprintf(uri, sizeof(uri), "file:%s", path);
	mig_params_t p;
	mig_params_default(&p);
	mig_report_t rep;
	mig_dest_report_t dr;
	hm_error_t e;
	hm_error_clear(&e);
	if (mig_source_run(m, uri, &p, &rep, &e) != 0)
		fail_msg("source: %s", e.msg);
	if (dest_file(path, &dr, &e) != 0)
		fail_msg("v2: %s", e.msg);
	assert_true(dr.verified && dr.has_root);
	assert_memory_equal(dr.root, rep.root, 32);
	/* v2 is checked by the root: the flat digest only with --digest */
	assert_false(dr.has_digest);

	uint8_t *d;
	size_t len;
	assert_int_equal(tu_read_file(path, &d, &len), 0);
	size_t n1 = verify_to_v1(d, len, rep.digest);
	assert_int_equal(tu_write_file(path, d, n1), 0);
	memset(&dr, 0, sizeof(dr));
	if (dest_file(path, &dr, &e) != 0)
		fail_msg("v1: %s", e.msg);
	assert_true(dr.verified);
	assert_memory_equal(dr.digest, rep.digest, 32);

	uint8_t *v = memmem(d, n1, "hptmig/verify", 13);
	v[13 + 8 + 12 + 31] ^= 1; /* the digest's last byte */
	assert_int_equal(tu_write_file(path, d, n1), 0);
	assert_int_equal(dest_file(path, &dr, &e), HM_E_DIGEST);
	assert_non_null(strstr(e.msg, "version 1"));
	/* the FULL record: type byte, be32 section id, idstr length, idstr */
	assert_int_equal(e.offset, (int64_t)(v - 6 - d));
	free(d);
	machine_destroy(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_uri_parse),
		cmocka_unit_test(test_return_path),
		cmocka_unit_test(test_return_path_bad_bytes),
		cmocka_unit_test(test_migrate_in_process),
		cmocka_unit_test(test_dest_on_resumed),
		cmocka_unit_test(test_failure_leaves_guest_running),
		cmocka_unit_test(test_policy_abort_and_cancel),
		cmocka_unit_test(test_resize_before_stop),
		cmocka_unit_test(test_cancel_in_catchup),
		cmocka_unit_test(test_dest_refuses_commands),
		cmocka_unit_test(test_bad_pong),
		cmocka_unit_test(test_catchup_waits_for_destination),
		cmocka_unit_test(test_catchup_destination_never_catches_up),
		cmocka_unit_test(test_catchup_bad_answer),
		cmocka_unit_test(test_dest_corrupted_after_load),
		cmocka_unit_test(test_dest_loads_v1_and_v2),
	};
	return cmocka_run_group_tests(tests, tu_setup_tmp, tu_teardown_tmp);
}
