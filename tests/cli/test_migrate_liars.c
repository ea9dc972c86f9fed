/* SPDX-License-Identifier: MIT */
/*
 * CLI tests of what the source reports when the destination misbehaves.
 * A relay thread sits between `hptmig migrate` and a real `hptmig incoming`
 * and lies (RESUMED with another digest), goes silent, trickles the answer,
 * resets the connection mid-stream or after it, sends garbage after
 * RESUMED or a REFUSED full of terminal control bytes. Each asserts the
 * guest state, source_resumed, the error and that downtime_ms is the time
 * the guest was really stopped.
 */
#include "test_migrate_util.h"
#include "hptmig/qemu_wire.h"

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/un.h>

enum mode {
	M_PASS,         /* forward everything */
	M_LIE,          /* flip a byte of RESUMED's digest */
	M_SILENT,       /* forward the stream, never answer */
	M_PONG_FLOOD,   /* after the stream: a PONG every 50 ms, nothing else */
	M_TRICKLE,      /* RESUMED one byte every trickle_ms */
	M_RESET_MID,    /* reset both sides after 20000 bytes of stream */
	M_RESET_AFTER,  /* reset the source once the whole stream is in (the
			 * answer, which may come before the half-close, is dropped) */
	M_GARBAGE,      /* RESUMED, then terminal garbage right behind it */
	M_REFUSE_EVIL,  /* after the stream: REFUSED with control bytes */
};

struct relay {
	enum mode mode;
	int trickle_ms;
	int lfd;
	char src_path[600], dst_path[600];
	pthread_t t;
	atomic_int stop;
	atomic_int stream_in; /* the source half-closed: its whole stream is in */
	bool refuse_first;    /* a first connection is refused after its stream */
	uint64_t fwd;
};

static int write_all_fd(int fd, const void *p, size_t n)
{
	const uint8_t *b = p;
	while (n) {
		ssize_t w = write(fd, b, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		b += w;
		n -= (size_t)w;
	}
	return 0;
}

static void reset_close(int fd)
{
	struct linger l = {.l_onoff = 1, .l_linger = 0};
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
	close(fd);
}

static int connect_unix(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	for (int i = 0; i < 1000; i++) {
		int fd = socket(AF_UNIX, SOCK_STREAM, 0);
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			return fd;
		close(fd);
		usleep(10000);
	}
	return -1;
}

/* Bytes no terminal or JSON parser should ever see raw. */
static const char evil[] = "\x1b]0;pwned\x07\x9b" "2J\xff\xfe\xc3(\nsecond line\r\x1b[31m";

/* One connection: accept, connect to the destination (unless with_dest is
 * false: then the relay is a sink that answers REFUSED), relay in mode. */
static void relay_conn(struct relay *r, enum mode mode, bool with_dest)
{
	struct pollfd lp = {.fd = r->lfd, .events = POLLIN};
	while (poll(&lp, 1, 100) != 1)
		if (atomic_load(&r->stop))
			return;
	int a = accept(r->lfd, NULL, NULL);
	int b = with_dest ? connect_unix(r->dst_path) : -1;
	if (a < 0 || (with_dest && b < 0)) {
		if (a >= 0)
			close(a);
		if (b >= 0)
			close(b);
		return;
	}
	uint8_t buf[65536], rp[4096];
	size_t rpn = 0;
	bool a_eof = false, b_eof = false, a_open = true, b_open = b >= 0;
	uint64_t last_pong = 0;
	while (!atomic_load(&r->stop)) {
		struct pollfd p[2] = {
			{.fd = a_open && !a_eof ? a : -1, .events = POLLIN},
			{.fd = b_open && !b_eof ? b : -1, .events = POLLIN},
		};
		poll(p, 2, 50);
		if (mode == M_PONG_FLOOD && a_eof && a_open && hm_now_ns() - last_pong > 50000000) {
			uint8_t pong[8] = {0, 3, 0, 4, 1, 2, 3, 4};
			if (write_all_fd(a, pong, sizeof(pong)) != 0) {
				close(a);
				a_open = false;
			}
			last_pong = hm_now_ns();
		}
		if (p[0].revents) {
			ssize_t n = read(a, buf, sizeof(buf));
			if (n > 0 && mode == M_RESET_MID && r->fwd + (uint64_t)n > 20000) {
				reset_close(a);
				reset_close(b);
				a_open = b_open = false;
				break;
			}
			if (n > 0) {
				if (b_open)
					write_all_fd(b, buf, (size_t)n);
				r->fwd += (uint64_t)n;
			} else {
				a_eof = true;
				atomic_store(&r->stream_in, 1);
				if (b_open)
					shutdown(b, SHUT_WR);
				if (mode == M_RESET_AFTER) {
					reset_close(a);
					a_open = false;
				}
				if (mode == M_REFUSE_EVIL) {
					uint8_t m[4 + 12 + sizeof(evil) - 1];
					hm_store_be16(m, 2);
					hm_store_be16(m + 2, (uint16_t)(12 + sizeof(evil) - 1));
					hm_store_be32(m + 4, (uint32_t)HM_E_FORMAT);
					hm_store_be64(m + 8, 1234);
					memcpy(m + 16, evil, sizeof(evil) - 1);
					write_all_fd(a, m, sizeof(m));
					if (!with_dest) {
						/* a sink: done once the source hangs up */
						struct pollfd hp = {.fd = a, .events = POLLIN};
						for (int i = 0; i < 100; i++)
							if (poll(&hp, 1, 100) == 1 && (hp.revents & POLLHUP))
								break;
						close(a);
						a_open = false;
						break;
					}
				}
			}
		}
		if (p[1].revents) {
			ssize_t n = read(b, rp + rpn, sizeof(rp) - rpn);
			if (n <= 0) {
				b_eof = true;
			} else {
				rpn += (size_t)n;
			}
			/* whole return-path messages: be16 type, be16 len, payload */
			while (rpn >= 4 && rpn >= 4u + hm_load_be16(rp + 2)) {
				size_t ml = 4u + hm_load_be16(rp + 2);
				uint16_t type = hm_load_be16(rp);
				/* RESUMED (1, or 4: RESUMED_ROOT, the answer to a
				 * version 2 stream) or REFUSED (2) is the final answer;
				 * the destination may send it before this relay has seen
				 * the source's half-close, so go by the type, not by
				 * a_eof. A lie flips the first byte of its digest or root. */
				bool resumed = type == MIG_RP_RESUMED || type == MIG_RP_RESUMED_ROOT;
				bool answer = resumed || type == MIG_RP_REFUSED;
				if (resumed && mode == M_LIE)
					rp[4] ^= 0x5a;
				if (!a_open || (answer && (mode == M_SILENT || mode == M_PONG_FLOOD ||
							   mode == M_REFUSE_EVIL || mode == M_RESET_AFTER))) {
					/* dropped */
				} else if (resumed && mode == M_TRICKLE) {
					for (size_t i = 0; i < ml && !atomic_load(&r->stop); i++) {
						if (write_all_fd(a, rp + i, 1) != 0)
							break;
						usleep((useconds_t)r->trickle_ms * 1000);
					}
				} else {
					write_all_fd(a, rp, ml);
					if (resumed && mode == M_GARBAGE)
						write_all_fd(a, evil, sizeof(evil) - 1);
				}
				memmove(rp, rp + ml, rpn - ml);
				rpn -= ml;
			}
			if (b_eof && a_open && mode != M_SILENT && mode != M_PONG_FLOOD)
				shutdown(a, SHUT_WR);
		}
	}
	if (a_open)
		close(a);
	if (b_open)
		close(b);
}

static void *relay_main(void *arg)
{
	struct relay *r = arg;
	if (r->refuse_first) /* attempt 1: refused after the whole stream */
		relay_conn(r, M_REFUSE_EVIL, false);
	relay_conn(r, r->mode, true);
	return NULL;
}

static void relay_start_opts(struct relay *r, enum mode mode, const char *name, bool refuse_first)
{
	memset(r, 0, sizeof(*r));
	r->mode = mode;
	r->refuse_first = refuse_first;
	r->trickle_ms = 100;
	snprintf(r->src_path, sizeof(r->src_path), "%s/%s-src.sock", tu_tmp, name);
	snprintf(r->dst_path, sizeof(r->dst_path), "%s/%s-dst.sock", tu_tmp, name);
	unlink(r->src_path);
	r->lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", r->src_path);
	assert_int_equal(bind(r->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(r->lfd, 1), 0);
	assert_int_equal(pthread_create(&r->t, NULL, relay_main, r), 0);
}

static void relay_start(struct relay *r, enum mode mode, const char *name)
{
	relay_start_opts(r, mode, name, false);
}

static void relay_stop(struct relay *r)
{
	atomic_store(&r->stop, 1);
	pthread_join(r->t, NULL);
	close(r->lfd);
	unlink(r->src_path);
}

/* One migration through a relay in `mode`; fills the source's JSON, stderr
 * and exit status, and the destination's JSON (NULL if it printed none). */
struct run {
	int rc, drc;
	char *err;
	json_t *s, *d;
	uint64_t wall_ms; /* the source process, start to exit */
};

static void run_through(struct run *o, enum mode mode, const char *name, const char *src_opts,
			int sigint_after_stream)
{
	char cmd[4096];
	struct relay r;
	struct bg in, src;
	memset(o, 0, sizeof(*o));
	relay_start(&r, mode, name);
	snprintf(cmd, sizeof(cmd), "exec '%s' incoming unix:%s --json --run 0 --accept-timeout 30",
		 tu_bin(), r.dst_path);
	bg_start(&in, tu_tmp, name, cmd);
	snprintf(cmd, sizeof(cmd),
		 "exec '%s' migrate unix:%s --json --htab-shift 20 --connect-timeout 10 %s", tu_bin(),
		 r.src_path, src_opts);
	char sname[64];
	snprintf(sname, sizeof(sname), "%s-src", name);
	uint64_t t0 = hm_now_ns();
	bg_start(&src, tu_tmp, sname, cmd);
	if (sigint_after_stream) {
		for (int i = 0; i < 3000 && !atomic_load(&r.stream_in); i++)
			usleep(10000);
		assert_true(atomic_load(&r.stream_in));
		usleep((useconds_t)sigint_after_stream * 1000);
		bg_kill(&src, SIGINT);
	}
	o->rc = bg_wait(&src, 60000);
	o->wall_ms = (hm_now_ns() - t0) / 1000000;
	relay_stop(&r);
	o->drc = bg_wait(&in, 30000);
	o->err = slurp(src.err);
	o->s = json_of_file(src.out);
	char *dout = slurp(in.out);
	o->d = dout[0] ? json_of(dout) : NULL;
	free(dout);
}

static void run_free(struct run *o)
{
	json_decref(o->s);
	json_decref(o->d);
	free(o->err);
}

/* stderr: one line of printable ASCII. */
static void assert_printable_line(const char *err)
{
	print_message("stderr: %s", err);
	assert_one_line(err);
	for (const char *p = err; p[1]; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
			fail_msg("byte 0x%02x in stderr: [%s]", (unsigned char)*p, err);
}

static void test_pass(void **state)
{
	(void)state;
	struct run o;
	run_through(&o, M_PASS, "pass", "", 0);
	if (o.rc != 0)
		fail_msg("rc %d: %s", o.rc, o.err);
	assert_string_equal(jstr(o.s, "guest_state"), "resumed-on-destination");
	assert_string_equal(jstr(o.s, "downtime_measured_to"), "destination-resumed");
	assert_false(jbool(o.s, "source_resumed"));
	assert_true(jbool(o.s, "verified"));
	assert_true(jnum(o.s, "downtime_ms") > 0);
	assert_true(jnum(o.s, "stopped_time_total_ms") == jnum(o.s, "downtime_ms"));
	run_free(&o);
}

/* RESUMED with a digest that is not ours: the destination really runs a
 * guest; the source must stay paused and say so. */
static void test_lie(void **state)
{
	(void)state;
	struct run o;
	run_through(&o, M_LIE, "lie", "", 0);
	assert_int_equal(o.rc, 1);
	assert_printable_line(o.err);
	assert_non_null(strstr(o.err, "NOT resumed"));
	assert_non_null(strstr(o.err, "differs"));
	assert_string_equal(jstr(o.s, "status"), "failed");
	assert_string_equal(jstr(o.s, "error_code"), "HM_E_DIGEST");
	assert_string_equal(jstr(o.s, "guest_state"), "paused-on-source-destination-diverged");
	assert_true(jbool(o.s, "stopped"));
	assert_false(jbool(o.s, "source_resumed"));
	assert_false(jbool(o.s, "verified"));
	assert_false(jbool(o.s, "guest.running"));
	assert_string_equal(jstr(o.s, "downtime_measured_to"), "destination-resumed");
	assert_true(jnum(o.s, "downtime_ms") > 0);
	assert_true(jnum(o.s, "downtime_ms") < (double)o.wall_ms);
	assert_int_equal((int64_t)jnum(o.s, "attempts"), 1);
	/* the destination did resume: two guests would have run */
	assert_non_null(o.d);
	assert_true(jbool(o.d, "resumed"));
	run_free(&o);
}

/* No answer after the whole stream: bounded by --resume-timeout, then the
 * guest stays paused, and downtime is the whole time it was stopped. */
static void test_silent(void **state)
{
	(void)state;
	struct run o;
	run_through(&o, M_SILENT, "silent", "--resume-timeout 1.5 --retries 3", 0);
	assert_int_equal(o.rc, 1);
	assert_printable_line(o.err);
	assert_non_null(strstr(o.err, "NOT resumed"));
	assert_non_null(strstr(o.err, "may be running"));
	assert_string_equal(jstr(o.s, "error_code"), "HM_E_TIMEOUT");
	assert_string_equal(jstr(o.s, "guest_state"), "paused-on-source-destination-unknown");
	assert_true(jbool(o.s, "stopped"));
	assert_false(jbool(o.s, "source_resumed"));
	assert_false(jbool(o.s, "guest.running"));
	assert_int_equal((int64_t)jnum(o.s, "attempts"), 1); /* never retried */
	assert_string_equal(jstr(o.s, "downtime_measured_to"), "still-paused");
	double dt = jnum(o.s, "downtime_ms");
	print_message("silent: downtime %.1f ms, source ran %llu ms\n", dt,
		      (unsigned long long)o.wall_ms);
	assert_true(dt >= 1500);
	assert_true(dt < (double)o.wall_ms);
	assert_true(jnum(o.s, "bytes_total") > 0);
	/* the destination did resume: resuming the source would have made two */
	assert_non_null(o.d);
	assert_true(jbool(o.d, "resumed"));
	run_free(&o);
}

/* PONGs forever are no answer: the bound is for the whole wait. */
static void test_pong_flood(void **state)
{
	(void)state;
	struct run o;
	run_through(&o, M_PONG_FLOOD, "flood", "--resume-timeout 1", 0);
	assert_int_equal(o.rc, 1);
	assert_printable_line(o.err);
	assert_string_equal(jstr(o.s, "guest_state"), "paused-on-source-destination-unknown");
	double dt = jnum(o.s, "downtime_ms");
	assert_true(dt >= 1000);
	assert_true(dt < 10000); /* not 1 s per PONG */
	run_free(&o);
}

/* An answer trickled slower than the bound: given up at the bound. */
static void test_trickle_too_slow(void **state)
{
	(void)state;
	struct run o;
	run_through(&o, M_TRICKLE, "trickle", "--resume-timeout 1", 0);
	assert_int_equal(o.rc, 1);
	assert_printable_line(o.err);
	assert_string_equal(jstr(o.s, "guest_state"), "paused-on-source-destination-unknown");
	assert_false(jbool(o.s, "source_resumed"));
	double dt = jnum(o.s, "downtime_ms");
	assert_true(dt >= 1000);
	assert_true(dt < 5000); /* 60 bytes at 100 ms would be 6 s */
	run_free(&o);
}

/* A trickled answer within the bound: a success whose downtime holds the
 * trickle (60 bytes at 20 ms: >= 1.2 s). */
static void test_trickle_within_bound(void **state)
{
	(void)state;
	struct run o;
	char cmd[4096];
	struct relay r;
	struct bg in, src;
	relay_start(&r, M_TRICKLE, "trick2");
	r.trickle_ms = 20;
	snprintf(cmd, sizeof(cmd), "exec '%s' incoming unix:%s --json --run 0 --accept-timeout 30",
		 tu_bin(), r.dst_path);
	bg_start(&in, tu_tmp, "trick2", cmd);
	snprintf(cmd, sizeof(cmd),
		 "exec '%s' migrate unix:%s --json --htab-shift 20 --resume-timeout 20", tu_bin(),
		 r.src_path);
	bg_start(&src, tu_tmp, "trick2-src", cmd);
	o.rc = bg_wait(&src, 60000);
	relay_stop(&r);
	bg_wait(&in, 30000);
	o.err = slurp(src.err);
	o.s = json_of_file(src.out);
	if (o.rc != 0)
		fail_msg("rc %d: %s", o.rc, o.err);
	assert_string_equal(jstr(o.s, "guest_state"), "resumed-on-destination");
	assert_true(jnum(o.s, "downtime_ms") >= 56 * 20);
	json_decref(o.s);
	free(o.err);
}

/* A reset mid-stream, before the stop: the guest never noticed. */
static void test_reset_mid_stream(void **state)
{
	(void)state;
	struct run o;
	run_through(&o, M_RESET_MID, "rmid", "--max-bandwidth 200K", 0);
	assert_int_equal(o.rc, 1);
	assert_printable_line(o.err);
	assert_non_null(strstr(o.err, "kept running on the source"));
	assert_string_equal(jstr(o.s, "guest_state"), "running-on-source");
	assert_false(jbool(o.s, "stopped"));
	assert_false(jbool(o.s, "source_resumed"));
	assert_true(jbool(o.s, "guest.running"));
	assert_true(jnum(o.s, "downtime_ms") == 0);
	assert_string_equal(jstr(o.s, "downtime_measured_to"), "not-stopped");
	assert_true(jnum(o.s, "bytes_total") >= 20000); /* what went out, not 0 */
	run_free(&o);
}

/* A reset once the whole stream is in: the destination may have resumed. */
static void test_reset_after_stream(void **state)
{
	(void)state;
	struct run o;
	run_through(&o, M_RESET_AFTER, "rafter", "--retries 2", 0);
	assert_int_equal(o.rc, 1);
	assert_printable_line(o.err);
	assert_non_null(strstr(o.err, "NOT resumed"));
	assert_string_equal(jstr(o.s, "guest_state"), "paused-on-source-destination-unknown");
	assert_true(jbool(o.s, "stopped"));
	assert_false(jbool(o.s, "source_resumed"));
	assert_false(jbool(o.s, "guest.running"));
	assert_int_equal((int64_t)jnum(o.s, "attempts"), 1);
	assert_string_equal(jstr(o.s, "downtime_measured_to"), "still-paused");
	assert_true(jnum(o.s, "downtime_ms") > 0);
	assert_true(jnum(o.s, "downtime_ms") < (double)o.wall_ms);
	run_free(&o);
}

/* Garbage right behind a good RESUMED changes nothing. */
static void test_garbage_after_resumed(void **state)
{
	(void)state;
	struct run o;
	run_through(&o, M_GARBAGE, "garbage", "", 0);
	if (o.rc != 0)
		fail_msg("rc %d: %s", o.rc, o.err);
	assert_string_equal(jstr(o.s, "guest_state"), "resumed-on-destination");
	assert_true(jbool(o.s, "verified"));
	assert_false(jbool(o.s, "source_resumed"));
	assert_true(jnum(o.s, "downtime_ms") > 0);
	run_free(&o);
}

/* REFUSED carrying ESC, BEL, C1, invalid UTF-8 and a newline: the source
 * resumes (the destination said it did not), stderr is one printable line,
 * the JSON parses and has the error. */
static void test_refused_with_control_bytes(void **state)
{
	(void)state;
	struct run o;
	run_through(&o, M_REFUSE_EVIL, "evil", "", 0);
	assert_int_equal(o.rc, 1);
	assert_printable_line(o.err);
	assert_non_null(strstr(o.err, "\\x1b]0;pwned\\x07\\x9b2J\\xff\\xfe\\xc3(\\x0asecond line"));
	assert_non_null(strstr(o.err, "was stopped, then resumed on the source"));
	assert_string_equal(jstr(o.s, "status"), "failed");
	/* the same text as on stderr, not escaped twice */
	assert_non_null(strstr(jstr(o.s, "error"), "\"\\x1b]0;pwned\\x07\\x9b2J"));
	assert_non_null(strstr(o.err, jstr(o.s, "error")));
	assert_string_equal(jstr(o.s, "guest_state"), "resumed-on-source");
	assert_true(jbool(o.s, "source_resumed"));
	assert_true(jbool(o.s, "guest.running"));
	assert_string_equal(jstr(o.s, "downtime_measured_to"), "source-resumed");
	assert_true(jnum(o.s, "downtime_ms") > 0);
	run_free(&o);
}

/* Ctrl-C while waiting for the answer: still no resume on the source. */
static void test_sigint_while_waiting(void **state)
{
	(void)state;
	struct run o;
	run_through(&o, M_SILENT, "sigwait", "--resume-timeout 30", 300);
	assert_int_equal(o.rc, 130); /* 128 + SIGINT, the shell's convention */
	assert_printable_line(o.err);
	assert_non_null(strstr(o.err, "NOT resumed"));
	assert_string_equal(jstr(o.s, "error_code"), "HM_E_CANCELLED");
	assert_string_equal(jstr(o.s, "guest_state"), "paused-on-source-destination-unknown");
	assert_false(jbool(o.s, "source_resumed"));
	assert_true(jnum(o.s, "downtime_ms") >= 300);
	assert_true(o.wall_ms < 20000); /* the cancel, not the 30 s bound */
	run_free(&o);
}

/* Attempt 1 refused after the stop (the guest resumed on the source),
 * attempt 2 goes through: the report is attempt 2's, and the stopped time
 * of both attempts adds up. */
static void test_refused_then_retried(void **state)
{
	(void)state;
	char cmd[4096];
	struct relay r;
	struct bg in, src;
	relay_start_opts(&r, M_PASS, "retry", true);
	snprintf(cmd, sizeof(cmd), "exec '%s' incoming unix:%s --json --run 0 --accept-timeout 30",
		 tu_bin(), r.dst_path);
	bg_start(&in, tu_tmp, "retry", cmd);
	snprintf(cmd, sizeof(cmd),
		 "exec '%s' migrate unix:%s --json --htab-shift 20 --retries 1 --retry-delay 0.2",
		 tu_bin(), r.src_path);
	bg_start(&src, tu_tmp, "retry-src", cmd);
	int rc = bg_wait(&src, 60000);
	relay_stop(&r);
	bg_wait(&in, 30000);
	char *err = slurp(src.err);
	json_t *o = json_of_file(src.out);
	if (rc != 0)
		fail_msg("rc %d: %s", rc, err);
	assert_int_equal((int64_t)jnum(o, "attempts"), 2);
	assert_string_equal(jstr(o, "guest_state"), "resumed-on-destination");
	assert_false(jbool(o, "source_resumed")); /* of the last attempt */
	double dt = jnum(o, "downtime_ms"), total = jnum(o, "stopped_time_total_ms");
	print_message("retry: downtime %.2f ms, stopped in all %.2f ms\n", dt, total);
	assert_true(dt > 0);
	assert_true(total > dt);
	json_decref(o);
	free(err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pass),
		cmocka_unit_test(test_lie),
		cmocka_unit_test(test_silent),
		cmocka_unit_test(test_pong_flood),
		cmocka_unit_test(test_trickle_too_slow),
		cmocka_unit_test(test_trickle_within_bound),
		cmocka_unit_test(test_reset_mid_stream),
		cmocka_unit_test(test_reset_after_stream),
		cmocka_unit_test(test_garbage_after_resumed),
		cmocka_unit_test(test_refused_with_control_bytes),
		cmocka_unit_test(test_sigint_while_waiting),
		cmocka_unit_test(test_refused_then_retried),
	};
	return cmocka_run_group_tests(tests, tu_setup_tmp, tu_teardown_tmp);
}
