/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the destination's whole `incoming` path: the input is
 * what a source sends; it goes over a real unix socket into mig_dest_run
 * (accept, load through the htab loader and the savevm registry, verify,
 * answer on the return path), with a small max table shift and no vCPUs so
 * an iteration is fast. The return path must carry exactly one well-formed
 * answer, RESUMED when mig_dest_run succeeded and REFUSED when it failed;
 * anything else, a crash or a hang is a finding.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "hptmig/migration.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_MAX_SHIFT 20 /* 1 MiB table at most: fast, still resizes */

static mig_listener_t *listener;
static char sock_dir[64];
static mig_uri_t uri;

static void cleanup(void)
{
	mig_listener_close(listener); /* removes the socket file */
	rmdir(sock_dir);
}

static void setup(void)
{
	hm_error_t err;
	char s[128];
	snprintf(sock_dir, sizeof(sock_dir), "/tmp/fuzz-incoming-XXXXXX");
	if (!mkdtemp(sock_dir))
		abort();
	snprintf(s, sizeof(s), "unix:%s/s", sock_dir);
	if (mig_uri_parse(s, &uri, &err) < 0 || mig_listen(&uri, &listener, &err) < 0) {
		fprintf(stderr, "fuzz_incoming: cannot listen on %s: %s\n", s, err.msg);
		abort();
	}
	atexit(cleanup);
}

struct source {
	const uint8_t *data;
	size_t size;
	uint8_t *rp; /* everything the destination answered */
	size_t rp_len, rp_cap;
	bool rp_overflow;
};

/* The source: connect, send every byte, half-close, read the return path. */
static void *source_main(void *arg)
{
	struct source *s = arg;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", uri.path);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
		abort(); /* the listener is ours and up: cannot happen */
	size_t off = 0;
	while (off < s->size) {
		ssize_t k = send(fd, s->data + off, s->size - off, MSG_NOSIGNAL);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break; /* the destination refused and closed: fine */
		off += (size_t)k;
	}
	shutdown(fd, SHUT_WR);
	for (;;) {
		uint8_t b[512];
		ssize_t k = recv(fd, b, sizeof(b), 0);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		size_t n = (size_t)k;
		if (n > s->rp_cap - s->rp_len) {
			n = s->rp_cap - s->rp_len;
			s->rp_overflow = true;
		}
		memcpy(s->rp + s->rp_len, b, n);
		s->rp_len += n;
	}
	close(fd);
	return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, setup);
	struct source *s = calloc(1, sizeof(*s));
	/* at most one 8-byte PONG per 7-byte PING, plus the final answer */
	size_t cap = 2 * size + 4096;
	uint8_t *rp = malloc(cap);
	if (!s || !rp) {
		free(s);
		free(rp);
		return 0;
	}
	s->rp = rp;
	s->rp_cap = cap;
	s->data = data;
	s->size = size;
	pthread_t th;
	if (pthread_create(&th, NULL, source_main, s) != 0)
		abort();
	mig_dest_params_t p;
	mig_dest_params_default(&p);
	p.accept_timeout_ms = 10000;
	p.max_shift = FZ_MAX_SHIFT;
	p.no_resume = true;
	/* an input without QEVM + version 3 is a stray: refused unanswered */
	p.max_strays = 1;
	p.probe_timeout_ms = 2000;
	mig_dest_report_t rep;
	hm_error_t err;
	int rc = mig_dest_run(listener, &p, &rep, &err);
	pthread_join(th, NULL);
	if (rc == HM_E_TIMEOUT && rep.bytes_total == 0 && rep.strays == 0)
		abort(); /* the accept timed out: the harness is broken */
	if (rep.strays) {
		/* screened out before the stream: no answer, no table */
		if (rc == 0 || s->rp_len != 0)
			abort();
		free(rp);
		free(s);
		return 0;
	}
	if (s->rp_overflow)
		abort();
	/* Return-path messages: be16 type, be16 length, payload. */
	size_t off = 0;
	int finals = 0;
	uint16_t last = 0;
	while (off < s->rp_len) {
		if (s->rp_len - off < 4 || finals)
			abort(); /* a torn message, or something after the answer */
		uint16_t type = (uint16_t)(rp[off] << 8 | rp[off + 1]);
		uint16_t len = (uint16_t)(rp[off + 2] << 8 | rp[off + 3]);
		if ((size_t)len > s->rp_len - off - 4)
			abort();
		if (type == MIG_RP_PONG) {
			if (len != 4)
				abort();
		} else if (type == MIG_RP_RESUMED || type == MIG_RP_RESUMED_ROOT) {
			if (len != (type == MIG_RP_RESUMED ? 56 : 92))
				abort();
			finals++;
		} else if (type == MIG_RP_REFUSED) {
			if (len < 12)
				abort();
			finals++;
		} else {
			abort();
		}
		last = type;
		off += 4 + (size_t)len;
	}
	if (finals != 1 || (rc == 0) != (last == MIG_RP_RESUMED || last == MIG_RP_RESUMED_ROOT))
		abort();
	if (rc == 0 && !rep.no_hpt && rep.htab_shift > FZ_MAX_SHIFT)
		abort();
	free(rp);
	free(s);
	return 0;
}
