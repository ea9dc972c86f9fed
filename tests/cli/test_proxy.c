/* SPDX-License-Identifier: MIT */
/*
 * CLI: `hptmig proxy` between a source the test plays (a writer replaying
 * a stream on a unix socket, reading back what the return path brings) and
 * a destination the test plays (a sink thread that keeps what arrives, may
 * answer on the return path, and notes how its connection ended). No QEMU:
 * the real-QEMU runs are the interop kit's.
 */
#include "test_migrate_util.h"

#include <poll.h>
#include <pthread.h>
#include <sys/un.h>

#include "hptmig/analyze.h"

/* ------------------------------------------------------------- the peers */

struct sink {
	char path[600];
	const char *reply;      /* written back right after accept (the return path) */
	uint8_t *data;          /* what arrived */
	size_t len, cap;
	bool accepted;
	int end;                /* 0: clean EOF, else the errno that ended it */
	pthread_t th;
	int lfd;
};

static void *sink_main(void *o)
{
	struct sink *k = o;
	struct pollfd p = {.fd = k->lfd, .events = POLLIN};
	if (poll(&p, 1, 30000) != 1)
		return NULL;
	int c = accept(k->lfd, NULL, NULL);
	if (c < 0)
		return NULL;
	k->accepted = true;
	if (k->reply)
		send(c, k->reply, strlen(k->reply), MSG_NOSIGNAL);
	for (;;) {
		if (k->cap - k->len < 65536) {
			k->cap = k->cap ? k->cap * 2 : 1 << 20;
			k->data = realloc(k->data, k->cap);
			assert_non_null(k->data);
		}
		ssize_t n = recv(c, k->data + k->len, 65536, 0);
		if (n > 0) {
			k->len += (size_t)n;
			continue;
		}
		k->end = n == 0 ? 0 : errno;
		break;
	}
	close(c);
	return NULL;
}

static void sink_start(struct sink *k, const char *reply)
{
	memset(k, 0, sizeof(*k));
	snprintf(k->path, sizeof(k->path), "%s/d.sock", tu_tmp);
	unlink(k->path);
	k->reply = reply;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", k->path);
	k->lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_true(k->lfd >= 0);
	assert_int_equal(bind(k->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(k->lfd, 2), 0);
	assert_int_equal(pthread_create(&k->th, NULL, sink_main, k), 0);
}

static void sink_join(struct sink *k)
{
	pthread_join(k->th, NULL);
	close(k->lfd);
	unlink(k->path);
}

static int connect_unix(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	for (int i = 0; i < 1000; i++) {
		int fd = socket(AF_UNIX, SOCK_STREAM, 0);
		assert_true(fd >= 0);
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			return fd;
		close(fd);
		usleep(10000);
	}
	fail_msg("cannot connect to %s", path);
	return -1;
}

/* What the source saw. */
struct source {
	size_t sent;
	char back[256];  /* the return path's bytes (NUL-terminated, cut) */
	size_t back_len;
	int end;         /* 0: clean EOF on the return path, else errno */
};

/* Replay buf into the proxy at path, then read the return path to its end.
 * pause_at: stop sending there and wait pause_ms first (0: never). */
static void source_run(const char *path, const uint8_t *buf, size_t len, struct source *s)
{
	memset(s, 0, sizeof(*s));
	int fd = connect_unix(path);
	while (s->sent < len) {
		ssize_t n = send(fd, buf + s->sent, len - s->sent, MSG_NOSIGNAL);
		if (n <= 0)
			break; /* the proxy cut us */
		s->sent += (size_t)n;
	}
	shutdown(fd, SHUT_WR);
	for (;;) {
		char b[256];
		ssize_t n = recv(fd, b, sizeof(b), 0);
		if (n <= 0) {
			s->end = n == 0 ? 0 : errno;
			break;
		}
		size_t room = sizeof(s->back) - 1 - s->back_len;
		size_t k = (size_t)n < room ? (size_t)n : room;
		memcpy(s->back + s->back_len, b, k);
		s->back_len += k;
	}
	s->back[s->back_len] = 0;
	close(fd);
}

struct run {
	struct bg proxy;
	struct sink sink;
	struct source src;
	char *err;   /* proxy's stderr */
	json_t *rep; /* its --json report, or NULL */
};

/* The whole set-up: sink, proxy (args appended), source replaying buf. */
static void proxy_run(struct run *r, const char *args, const uint8_t *buf, size_t len,
		      const char *reply)
{
	char cmd[2048], spath[600];
	snprintf(spath, sizeof(spath), "%s/s.sock", tu_tmp);
	sink_start(&r->sink, reply);
	snprintf(cmd, sizeof(cmd), "exec %s proxy unix:%s unix:%s --json --quiet %s", tu_bin(), spath,
		 r->sink.path, args);
	bg_start(&r->proxy, tu_tmp, "proxy", cmd);
	source_run(spath, buf, len, &r->src);
	bg_wait(&r->proxy, 120000);
	sink_join(&r->sink);
	r->err = slurp(r->proxy.err);
	char *out = slurp(r->proxy.out);
	r->rep = out[0] ? json_of(out) : NULL;
	free(out);
}

static void run_free(struct run *r)
{
	free(r->sink.data);
	free(r->err);
	json_decref(r->rep);
}

static uint8_t *fixture(const char *name, size_t *len)
{
	const char *path = tu_fixture(name);
	uint8_t *d = NULL;
	if (!path)
		return NULL;
	assert_int_equal(tu_read_file(path, &d, len), 0);
	return d;
}

/* ------------------------------------------------------------- the tests */

/* --passthrough: the destination gets the source's bytes, every one. */
static void test_passthrough_identical(void **state)
{
	(void)state;
	size_t len;
	uint8_t *in = fixture("pseries-qemu10-p8-2g-live.mig", &len);
	if (!in)
		skip();
	struct run r;
	proxy_run(&r, "--passthrough", in, len, NULL);
	if (r.proxy.status != 0)
		fail_msg("proxy failed: %s", r.err);
	assert_int_equal(r.src.sent, len);
	assert_int_equal(r.sink.len, len);
	assert_int_equal(r.sink.end, 0);
	assert_memory_equal(r.sink.data, in, len);
	assert_non_null(r.rep);
	assert_string_equal(jstr(r.rep, "status"), "ok");
	assert_int_equal((uint64_t)jnum(r.rep, "bytes"), len);
	run_free(&r);
	free(in);
}

/* Bytes the destination writes back reach the source; the source sees the
 * return path end cleanly when the destination closes. */
static void test_return_path_relayed(void **state)
{
	(void)state;
	size_t len;
	uint8_t *in = fixture("pseries-qemu72-p8-1g.mig", &len);
	if (!in)
		skip();
	struct run r;
	proxy_run(&r, "--passthrough", in, len, "RP:SHUT-and-more");
	if (r.proxy.status != 0)
		fail_msg("proxy failed: %s", r.err);
	assert_string_equal(r.src.back, "RP:SHUT-and-more");
	assert_int_equal(r.src.end, 0);
	assert_true(jbool(r.rep, "return_path"));
	assert_int_equal((int)jnum(r.rep, "return_path_bytes"), 16);
	run_free(&r);
	free(in);
}

/* No destination: one line, exit 1, and the source's connection is cut. */
static void test_destination_unreachable(void **state)
{
	(void)state;
	char cmd[2048], spath[600];
	snprintf(spath, sizeof(spath), "%s/s.sock", tu_tmp);
	snprintf(cmd, sizeof(cmd), "exec %s proxy unix:%s unix:%s/nobody.sock --connect-timeout 1",
		 tu_bin(), spath, tu_tmp);
	struct bg b;
	bg_start(&b, tu_tmp, "unreach", cmd);
	static const uint8_t hdr[] = {'Q', 'E', 'V', 'M', 0, 0, 0, 3};
	struct source s;
	source_run(spath, hdr, sizeof(hdr), &s);
	assert_int_equal(bg_wait(&b, 30000), 1);
	char *err = slurp(b.err);
	char *line = strstr(err, "cannot reach the destination");
	if (!line)
		fail_msg("stderr: %s", err);
	assert_one_line(strchr(err, '\n') + 1); /* after "listening on ..." */
	free(err);
}

/* A source that stops sending is cut after --idle-timeout; the destination
 * sees its input end in the middle (an aborted migration). */
static void test_idle_source_cut(void **state)
{
	(void)state;
	char cmd[2048], spath[600];
	struct sink k;
	snprintf(spath, sizeof(spath), "%s/s.sock", tu_tmp);
	sink_start(&k, NULL);
	snprintf(cmd, sizeof(cmd), "exec %s proxy unix:%s unix:%s --idle-timeout 1 --passthrough "
		 "--no-hold --quiet", tu_bin(), spath, k.path);
	struct bg b;
	bg_start(&b, tu_tmp, "idle", cmd);
	int fd = connect_unix(spath);
	static const uint8_t hdr[] = {'Q', 'E', 'V', 'M', 0, 0, 0, 3};
	assert_int_equal(send(fd, hdr, sizeof(hdr), 0), (ssize_t)sizeof(hdr));
	assert_int_equal(bg_wait(&b, 20000), 1);
	char b1;
	assert_true(recv(fd, &b1, 1, 0) <= 0); /* cut */
	close(fd);
	sink_join(&k);
	assert_true(k.accepted);
	char *err = slurp(b.err);
	if (!strstr(err, "nothing moved for 1000 ms") || !strstr(err, "both connections cut"))
		fail_msg("stderr: %s", err);
	free(err);
	free(k.data);
}

/* Where things are in a fixture (an in-memory walk keeps every record). */
struct layout {
	uint64_t part_off, part_len; /* a spapr/htab PART record in the middle of the passes */
	uint32_t htab_id;
	uint64_t mid_off, mid_len;   /* a section record near the middle of the stream */
	uint64_t hold_off;           /* the first FULL record: the final phase */
	char digest[65];
};

static void layout_of(const uint8_t *in, size_t len, struct layout *l)
{
	an_report_t *r = NULL;
	hm_error_t e;
	memset(l, 0, sizeof(*l));
	assert_int_equal(an_analyze(in, len, 0, &r, &e), 0);
	for (size_t i = 0; i < r->nrecords; i++) {
		const an_record_t *rec = &r->records[i];
		if (rec->section == UINT32_MAX)
			continue;
		const an_section_t *sec = &r->sections[rec->section];
		if (sec->kind == AN_SEC_HTAB && rec->type == QEMU_VM_SECTION_PART && !l->part_off &&
		    rec->offset > len / 4) {
			l->part_off = rec->offset;
			l->part_len = rec->length;
			l->htab_id = sec->id;
		}
		if (!l->mid_off && rec->offset > len / 2 && rec->type == QEMU_VM_SECTION_PART &&
		    sec->kind == AN_SEC_RAM) {
			l->mid_off = rec->offset;
			l->mid_len = rec->length;
		}
		if (!l->hold_off && rec->type == QEMU_VM_SECTION_FULL)
			l->hold_off = rec->offset;
	}
	hm_hex(r->htab.digest, HM_SHA256_LEN, l->digest);
	an_report_free(r);
	assert_true(l->hold_off);
}

/* The proxy refused: exit 1, one error line naming the offset (besides
 * "listening on"), the source and the destination cut, and the
 * destination got a prefix of the stream that ends before `before`. */
static void expect_cut(struct run *r, const uint8_t *in, uint64_t before, const char *what)
{
	if (r->proxy.status != 1)
		fail_msg("proxy exit %d, stderr: %s", r->proxy.status, r->err);
	char off[32];
	snprintf(off, sizeof(off), "%llu", (unsigned long long)before);
	const char *line = strstr(r->err, "hptmig: proxy: stream refused: both connections cut: ");
	if (!line || !strstr(line, what) || !strstr(line, off))
		fail_msg("expected one line naming '%s' and offset %s, got: %s", what, off, r->err);
	assert_one_line(line);
	assert_true(r->sink.accepted);
	if (r->sink.len > before)
		fail_msg("the destination got %zu bytes, past the bad record at %llu", r->sink.len,
			 (unsigned long long)before);
	assert_memory_equal(r->sink.data, in, r->sink.len);
	assert_string_equal(jstr(r->rep, "status"), "refused");
}

/* Splice: in[0, at) + ins + in[at + skip, len). */
static uint8_t *splice_in(const uint8_t *in, size_t len, size_t at, size_t skip, const uint8_t *ins,
		       size_t ins_len, size_t *out_len)
{
	*out_len = len - skip + ins_len;
	uint8_t *o = malloc(*out_len);
	assert_non_null(o);
	memcpy(o, in, at);
	memcpy(o + at, ins, ins_len);
	memcpy(o + at + ins_len, in + at + skip, len - at - skip);
	return o;
}

/* Default: the destination gets what `rewrite` makes of the stream, and
 * the proxy's digest is analyze's of the original. */
static void test_default_reencodes_as_rewrite(void **state)
{
	(void)state;
	size_t len, rlen;
	uint8_t *in = fixture("pseries-qemu10-p8-2g-live.mig", &len), *rw = NULL;
	if (!in)
		skip();
	struct layout l;
	layout_of(in, len, &l);
	char cmd[2048];
	snprintf(cmd, sizeof(cmd), "%s rewrite %s %s/rw.mig", tu_bin(),
		 tu_fixture("pseries-qemu10-p8-2g-live.mig"), tu_tmp);
	assert_int_equal(tu_run(cmd, NULL, NULL), 0);
	snprintf(cmd, sizeof(cmd), "%s/rw.mig", tu_tmp);
	assert_int_equal(tu_read_file(cmd, &rw, &rlen), 0);
	struct run r;
	proxy_run(&r, "", in, len, NULL);
	if (r.proxy.status != 0)
		fail_msg("proxy failed: %s", r.err);
	assert_int_equal(r.sink.len, rlen);
	assert_memory_equal(r.sink.data, rw, rlen);
	assert_string_equal(jstr(r.rep, "status"), "ok");
	assert_string_equal(jstr(r.rep, "htab.digest"), l.digest);
	assert_true(jbool(r.rep, "htab.reencoded"));
	assert_true(jbool(r.rep, "checked"));
	assert_true(json_is_null(json_object_get(json_object_get(r.rep, "htab"), "root")));
	assert_true(jnum(r.rep, "ram.data_pages") > 0);
	assert_true(jnum(r.rep, "held_bytes") > 0);
	run_free(&r);
	free(rw);
	free(in);
}

/* The 32-bit index wrap that corrupts QEMU's htab_load: a chunk at index
 * 0xffffffff with one valid entry, in a PART record between real ones. */
static void test_index_wrap_cut(void **state)
{
	(void)state;
	size_t len, hlen;
	uint8_t *in = fixture("pseries-qemu10-p8-2g-live.mig", &len);
	if (!in)
		skip();
	struct layout l;
	layout_of(in, len, &l);
	assert_true(l.part_off);
	uint8_t bad[5 + 4 + 8 + 16 + 8 + 5], *p = bad;
	*p++ = QEMU_VM_SECTION_PART;
	hm_store_be32(p, l.htab_id), p += 4;
	hm_store_be32(p, 0), p += 4;          /* no resize */
	hm_store_be32(p, 0xffffffffu), p += 4; /* index */
	hm_store_be16(p, 1), p += 2;          /* n_valid */
	hm_store_be16(p, 0), p += 2;          /* n_invalid */
	hm_store_be64(p, 0x4000000000000001ull), p += 8;
	hm_store_be64(p, 0x1000), p += 8;
	memset(p, 0, 8), p += 8;              /* end mark */
	*p++ = QEMU_VM_SECTION_FOOTER;
	hm_store_be32(p, l.htab_id);
	uint8_t *h = splice_in(in, len, l.part_off, 0, bad, sizeof(bad), &hlen);
	for (int pass = 0; pass < 2; pass++) {
		struct run r;
		proxy_run(&r, pass ? "--passthrough" : "", h, hlen, NULL);
		expect_cut(&r, h, l.part_off, "4294967296");
		run_free(&r);
	}
	free(h);
	free(in);
}

/* A broken footer in the middle of the stream. */
static void test_bad_footer_cut(void **state)
{
	(void)state;
	size_t len;
	uint8_t *in = fixture("pseries-qemu10-p8-2g-live.mig", &len);
	if (!in)
		skip();
	struct layout l;
	layout_of(in, len, &l);
	assert_true(l.mid_off);
	in[l.mid_off + l.mid_len - 5] = 0x7f; /* not QEMU_VM_SECTION_FOOTER */
	struct run r;
	proxy_run(&r, "--passthrough", in, len, NULL);
	expect_cut(&r, in, l.mid_off + l.mid_len - 5, "footer");
	run_free(&r);
	free(in);
}

/* Cut short in the middle: the walk wants more, the source closed. */
static void test_truncated_cut(void **state)
{
	(void)state;
	size_t len;
	uint8_t *in = fixture("pseries-qemu72-p8-1g.mig", &len);
	if (!in)
		skip();
	struct layout l;
	layout_of(in, len, &l);
	size_t half = l.hold_off + (len - l.hold_off) / 2; /* inside the final phase */
	struct run r;
	proxy_run(&r, "--passthrough", in, half, NULL);
	if (r.proxy.status != 1)
		fail_msg("proxy exit %d: %s", r.proxy.status, r.err);
	/* nothing of the held final phase went out */
	assert_true(r.sink.len <= l.hold_off);
	assert_memory_equal(r.sink.data, in, r.sink.len);
	assert_string_equal(jstr(r.rep, "status"), "refused");
	/* and the report says what was held: the phase up to the cut */
	assert_true(jnum(r.rep, "held_bytes") > 0);
	assert_true(jnum(r.rep, "held_bytes") <= (double)(half - l.hold_off));
	run_free(&r);
	free(in);
}

/* Device state over the cap: refused before any of it goes out; with
 * --no-hold it goes out unchecked and the run is not cut. */
static void test_device_state_cap(void **state)
{
	(void)state;
	size_t len;
	uint8_t *in = fixture("pseries-qemu10-p8-2g-live.mig", &len);
	if (!in)
		skip();
	struct layout l;
	layout_of(in, len, &l);
	struct run r;
	proxy_run(&r, "--passthrough --max-device-state 64K", in, len, NULL);
	expect_cut(&r, in, l.hold_off + 65536, "device-state cap");
	assert_true(r.sink.len <= l.hold_off);
	/* the report says what was held before the refusal (was 0) */
	if (jnum(r.rep, "held_bytes") <= 0)
		fail_msg("held_bytes %.0f in a run refused at the cap", jnum(r.rep, "held_bytes"));
	run_free(&r);
	proxy_run(&r, "--passthrough --no-hold --max-device-state 64K", in, len, NULL);
	if (r.proxy.status != 0)
		fail_msg("proxy --no-hold failed: %s", r.err);
	assert_int_equal(r.sink.len, len);
	assert_memory_equal(r.sink.data, in, len);
	assert_true(jbool(r.rep, "final_phase_unchecked"));
	assert_non_null(strstr(r.err, "warning: the final phase was forwarded unchecked"));
	run_free(&r);
	free(in);
}

static void test_usage(void **state)
{
	(void)state;
	char cmd[1024], *err = NULL;
	snprintf(cmd, sizeof(cmd), "%s proxy unix:/tmp/x", tu_bin());
	assert_int_equal(tu_run(cmd, NULL, &err), 2);
	assert_one_line(err);
	assert_non_null(strstr(err, "DEST_URI"));
	free(err);
	snprintf(cmd, sizeof(cmd), "%s proxy unix:/tmp/x unix:/tmp/y --idle-timeout 0", tu_bin());
	assert_int_equal(tu_run(cmd, NULL, &err), 2);
	assert_one_line(err);
	assert_non_null(strstr(err, "--idle-timeout"));
	free(err);
	snprintf(cmd, sizeof(cmd), "%s proxy unix:/tmp/x unix:/tmp/y --max-device-state 2G", tu_bin());
	assert_int_equal(tu_run(cmd, NULL, &err), 2);
	assert_one_line(err);
	free(err);
	snprintf(cmd, sizeof(cmd), "%s proxy bogus:1 unix:/tmp/y", tu_bin());
	assert_int_equal(tu_run(cmd, NULL, &err), 1);
	assert_one_line(err);
	free(err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_usage),
		cmocka_unit_test(test_passthrough_identical),
		cmocka_unit_test(test_return_path_relayed),
		cmocka_unit_test(test_destination_unreachable),
		cmocka_unit_test(test_idle_source_cut),
		cmocka_unit_test(test_default_reencodes_as_rewrite),
		cmocka_unit_test(test_index_wrap_cut),
		cmocka_unit_test(test_bad_footer_cut),
		cmocka_unit_test(test_truncated_cut),
		cmocka_unit_test(test_device_state_cap),
	};
	return cmocka_run_group_tests(tests, tu_setup_tmp, tu_teardown_tmp);
}
