/* SPDX-License-Identifier: MIT */
/*
 * The QMP-style control socket (--control unix:PATH; docs/control.md): a
 * greeting, qmp_capabilities first, then query-migrate,
 * query-migrate-parameters, migrate-set-parameters and migrate_cancel,
 * with QMP's error classes and the id echoed. One thread serves up to
 * CTL_CLIENTS_MAX clients at once with poll(); a client's input is one
 * JSON object per line, at most CTL_LINE_MAX bytes (a longer line is
 * refused and skipped), and replies are sent without blocking: a client
 * that does not read them is dropped. So a hostile local client can cost
 * neither unbounded memory nor the migration's time.
 */
#include "control.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

struct client {
	int fd;            /* -1: free slot */
	bool negotiated;   /* qmp_capabilities done */
	bool skipping;     /* discarding an over-long line up to its newline */
	uint64_t last_ns;  /* when it connected or last sent a complete line */
	size_t len;        /* bytes in buf */
	char buf[CTL_LINE_MAX];
};

/* Owned by the control thread once started; path and lfd also by
 * control_start/control_stop on the main thread around it. */
static struct {
	pthread_t thread;
	bool running;
	int lfd;
	int wake[2];        /* control_stop writes wake[1] */
	unsigned idle_ms;   /* 0: clients are never closed for silence */
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	struct ctl_provider pv;
	struct client cl[CTL_CLIENTS_MAX];
} ct = {.lfd = -1, .wake = {-1, -1}};

static void client_close(struct client *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

/* One reply line, never blocking: a client whose socket buffer is full
 * (it does not read) is dropped. Takes the reference. */
static void client_send(struct client *c, json_t *o)
{
	char *s = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII | JSON_REAL_PRECISION(9));
	json_decref(o);
	if (!s) {
		client_close(c);
		return;
	}
	size_t n = strlen(s);
	s[n] = '\n'; /* json_dumps' terminator becomes the line's end */
	ssize_t w = send(c->fd, s, n + 1, MSG_NOSIGNAL | MSG_DONTWAIT);
	free(s);
	if (w != (ssize_t)(n + 1))
		client_close(c);
}

static void reply_return(struct client *c, json_t *id, json_t *ret)
{
	json_t *o = json_object();
	json_object_set_new(o, "return", ret);
	if (id)
		json_object_set(o, "id", id);
	client_send(c, o);
}

static void reply_error(struct client *c, json_t *id, const char *cls, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void reply_error(struct client *c, json_t *id, const char *cls, const char *fmt, ...)
{
	char desc[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(desc, sizeof(desc), fmt, ap);
	va_end(ap);
	json_t *e = json_object();
	json_object_set_new(e, "class", json_string(cls));
	json_object_set_new(e, "desc", json_string(desc));
	json_t *o = json_object();
	json_object_set_new(o, "error", e);
	if (id)
		json_object_set(o, "id", id);
	client_send(c, o);
}

static void greet(struct client *c)
{
	unsigned major = 0, minor = 0, micro = 0;
	sscanf(HPTMIG_VERSION, "%u.%u.%u", &major, &minor, &micro);
	json_t *v = json_pack("{s:{s:i,s:i,s:i},s:s}", "qemu", "major", (int)major, "minor",
			      (int)minor, "micro", (int)micro, "package", "hptmig " HPTMIG_VERSION);
	json_t *o = json_pack("{s:{s:o,s:[]}}", "QMP", "version", v, "capabilities");
	client_send(c, o);
}

/* -------------------------------------------------------------- commands */

/* A command that takes no arguments got some: QMP's answer. */
static bool no_args(struct client *c, json_t *id, json_t *args)
{
	const char *k;
	json_t *v;
	json_object_foreach(args, k, v) {
		reply_error(c, id, "GenericError", "Parameter '%.64s' is unexpected", k);
		return false;
	}
	return true;
}

static void cmd_set_parameters(struct client *c, json_t *id, json_t *args)
{
	const char *k;
	json_t *v;
	char msg[256];
	if (!ct.pv.set_param) {
		reply_error(c, id, "GenericError", "migrate-set-parameters is not supported here");
		return;
	}
	/* Check every member before changing anything (all or nothing). */
	json_object_foreach(args, k, v) {
		if (strcmp(k, "max-bandwidth") != 0 && strcmp(k, "downtime-limit") != 0) {
			reply_error(c, id, "GenericError", "Parameter '%.64s' is unexpected", k);
			return;
		}
		if (!json_is_integer(v) || json_integer_value(v) < 0) {
			reply_error(c, id, "GenericError",
				    "Invalid parameter type for '%s', expected: integer >= 0", k);
			return;
		}
	}
	json_object_foreach(args, k, v) {
		msg[0] = 0;
		if (ct.pv.set_param(ct.pv.opaque, k, (uint64_t)json_integer_value(v), msg,
				    sizeof(msg)) != 0) {
			reply_error(c, id, "GenericError", "%s",
				    msg[0] ? msg : "the value was refused");
			return;
		}
	}
	reply_return(c, id, json_object());
}

static void cmd_query_parameters(struct client *c, json_t *id)
{
	mig_status_t s;
	if (!ct.pv.set_param) {
		reply_error(c, id, "GenericError", "query-migrate-parameters is not supported here");
		return;
	}
	ct.pv.status(ct.pv.opaque, &s);
	json_t *o = json_object();
	json_object_set_new(o, "max-bandwidth", json_integer((json_int_t)s.max_bandwidth));
	json_object_set_new(o, "downtime-limit",
			    json_integer((json_int_t)(s.downtime_limit_ns / 1000000u)));
	reply_return(c, id, o);
}

static void dispatch(struct client *c, const char *cmd, json_t *id, json_t *args)
{
	if (!c->negotiated) {
		if (strcmp(cmd, "qmp_capabilities") != 0) {
			reply_error(c, id, "CommandNotFound",
				    "Expecting capabilities negotiation with 'qmp_capabilities'");
			return;
		}
		json_t *en = json_object_get(args, "enable");
		if (en && (!json_is_array(en) || json_array_size(en) > 0)) {
			reply_error(c, id, "GenericError", "Capability 'enable' not available");
			return;
		}
		c->negotiated = true;
		reply_return(c, id, json_object());
		return;
	}
	if (strcmp(cmd, "qmp_capabilities") == 0) {
		reply_error(c, id, "CommandNotFound",
			    "Capabilities negotiation is already complete, command ignored");
	} else if (strcmp(cmd, "query-migrate") == 0) {
		mig_status_t s;
		if (!no_args(c, id, args))
			return;
		reply_return(c, id, ctl_provider_json(&ct.pv, &s, true));
	} else if (strcmp(cmd, "query-migrate-parameters") == 0) {
		if (no_args(c, id, args))
			cmd_query_parameters(c, id);
	} else if (strcmp(cmd, "migrate-set-parameters") == 0) {
		cmd_set_parameters(c, id, args);
	} else if (strcmp(cmd, "migrate_cancel") == 0) {
		if (!no_args(c, id, args))
			return;
		if (ct.pv.cancel)
			ct.pv.cancel(ct.pv.opaque);
		reply_return(c, id, json_object());
	} else {
		char esc[HM_ESC_LEN(64)];
		reply_error(c, id, "CommandNotFound", "The command %s has not been found",
			    hm_escape(cmd, strlen(cmd), 0, esc, sizeof(esc)));
	}
}

/* One input line: a JSON object {"execute": NAME, "arguments": {...}, "id": ANY}. */
static void handle_line(struct client *c, const char *line, size_t n)
{
	size_t i = 0;
	while (i < n && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r'))
		i++;
	if (i == n)
		return; /* blank line */
	json_error_t je;
	json_t *in = json_loadb(line, n, JSON_REJECT_DUPLICATES, &je);
	if (!in) {
		reply_error(c, NULL, "GenericError", "JSON parse error, %s", je.text);
		return;
	}
	json_t *id = json_object_get(in, "id");
	json_t *ex = json_object_get(in, "execute");
	json_t *args = json_object_get(in, "arguments");
	const char *k;
	json_t *v;
	if (!json_is_object(in)) {
		reply_error(c, NULL, "GenericError", "QMP input must be a JSON object");
		goto out;
	}
	json_object_foreach(in, k, v) {
		if (strcmp(k, "execute") && strcmp(k, "arguments") && strcmp(k, "id")) {
			reply_error(c, id, "GenericError", "QMP input member '%.64s' is unexpected",
				    k);
			goto out;
		}
	}
	if (!json_is_string(ex)) {
		reply_error(c, id, "GenericError", "QMP input lacks member 'execute'");
		goto out;
	}
	if (args && !json_is_object(args)) {
		reply_error(c, id, "GenericError", "QMP input member 'arguments' must be an object");
		goto out;
	}
	json_t *empty = json_object();
	dispatch(c, json_string_value(ex), id, args ? args : empty);
	json_decref(empty);
out:
	json_decref(in);
}

/* Read what the client sent and act on every complete line. */
static void client_read(struct client *c)
{
	ssize_t r = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, MSG_DONTWAIT);
	if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
		client_close(c);
		return;
	}
	if (r < 0)
		return;
	c->len += (size_t)r;
	size_t start = 0;
	for (size_t i = 0; i < c->len && c->fd >= 0; i++) {
		if (c->buf[i] != '\n')
			continue;
		c->last_ns = hm_now_ns();
		if (!c->skipping)
			handle_line(c, c->buf + start, i - start);
		c->skipping = false;
		start = i + 1;
	}
	if (c->fd < 0)
		return;
	memmove(c->buf, c->buf + start, c->len - start);
	c->len -= start;
	if (c->len == sizeof(c->buf)) {
		/* No newline in CTL_LINE_MAX bytes: refuse the line, skip its rest. */
		if (!c->skipping)
			reply_error(c, NULL, "GenericError",
				    "QMP input line exceeds %d bytes: ignored", CTL_LINE_MAX);
		c->skipping = true;
		c->len = 0;
	}
}

static void accept_client(void)
{
	int fd = accept4(ct.lfd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return;
	for (size_t i = 0; i < CTL_CLIENTS_MAX; i++) {
		struct client *c = &ct.cl[i];
		if (c->fd >= 0)
			continue;
		*c = (struct client){.fd = fd, .last_ns = hm_now_ns()};
		greet(c);
		return;
	}
	struct client busy = {.fd = fd};
	reply_error(&busy, NULL, "GenericError", "too many control clients (at most %d)",
		    CTL_CLIENTS_MAX);
	client_close(&busy);
}

/*
 * Close the clients that sent no complete command for the idle timeout
 * (each told why in a GenericError line); the ms until the next one is
 * due, or -1 when none can be.
 */
static int idle_sweep(void)
{
	if (!ct.idle_ms)
		return -1;
	uint64_t now = hm_now_ns(), limit = (uint64_t)ct.idle_ms * 1000000u, next = UINT64_MAX;
	for (size_t i = 0; i < CTL_CLIENTS_MAX; i++) {
		struct client *c = &ct.cl[i];
		if (c->fd < 0)
			continue;
		if (now - c->last_ns >= limit) {
			reply_error(c, NULL, "GenericError",
				    "no command for %u s: the connection is closed (idle-timeout)",
				    ct.idle_ms / 1000u);
			client_close(c);
		} else if (c->last_ns + limit - now < next) {
			next = c->last_ns + limit - now;
		}
	}
	return next == UINT64_MAX ? -1 : (int)((next + 999999) / 1000000);
}

static void *control_main(void *arg)
{
	(void)arg;
	struct pollfd pf[2 + CTL_CLIENTS_MAX];
	for (;;) {
		int wait = idle_sweep();
		pf[0] = (struct pollfd){.fd = ct.wake[0], .events = POLLIN};
		pf[1] = (struct pollfd){.fd = ct.lfd, .events = POLLIN};
		for (size_t i = 0; i < CTL_CLIENTS_MAX; i++)
			pf[2 + i] = (struct pollfd){.fd = ct.cl[i].fd, .events = POLLIN};
		if (poll(pf, 2 + CTL_CLIENTS_MAX, wait) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (pf[0].revents)
			break;
		for (size_t i = 0; i < CTL_CLIENTS_MAX; i++)
			if (ct.cl[i].fd >= 0 && pf[2 + i].revents)
				client_read(&ct.cl[i]);
		if (pf[1].revents & POLLIN)
			accept_client();
	}
	for (size_t i = 0; i < CTL_CLIENTS_MAX; i++)
		client_close(&ct.cl[i]);
	return NULL;
}

/* ------------------------------------------------------------ the socket */

/* PATH exists: a socket nobody listens on (left by a crash) is replaced;
 * a live one or anything else is refused. */
static int clear_path(const char *path, char *msg, size_t len)
{
	struct stat sb;
	if (lstat(path, &sb) != 0)
		return 0;
	if (!S_ISSOCK(sb.st_mode)) {
		snprintf(msg, len, "%s exists and is not a socket", path);
		return -1;
	}
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	memcpy(a.sun_path, path, strlen(path) + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool live = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
	if (fd >= 0)
		close(fd);
	if (live) {
		snprintf(msg, len, "%s is in use by another process", path);
		return -1;
	}
	unlink(path);
	return 0;
}

static int listen_unix(const char *path, char *msg, size_t len)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	if (clear_path(path, msg, len) != 0)
		return -1;
	memcpy(a.sun_path, path, strlen(path) + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(msg, len, "socket: %s", strerror(errno));
		return -1;
	}
	/* Mode 0600 from the start: no window where others may connect. (The
	 * umask is the process's; no other thread creates files meanwhile.) */
	mode_t old = umask(0177);
	int rc = bind(fd, (struct sockaddr *)&a, sizeof(a));
	int e = errno;
	umask(old);
	if (rc == 0 && (chmod(path, 0600) != 0 || listen(fd, CTL_CLIENTS_MAX) != 0)) {
		e = errno;
		unlink(path);
		rc = -1;
	}
	if (rc != 0) {
		snprintf(msg, len, "%s: %s", path, strerror(e));
		close(fd);
		return -1;
	}
	return fd;
}

int control_parse(const char *spec, char *path, size_t plen, unsigned *idle_ms, char *msg,
		  size_t len)
{
	static const char opt[] = ",idle-timeout=";
	if (strncmp(spec, "unix:", 5) != 0 || !spec[5]) {
		snprintf(msg, len, "--control: expected unix:PATH[%sS], got '%.64s'", opt, spec);
		return -1;
	}
	const char *p = spec + 5;
	const char *o = strstr(p, opt);
	size_t n = o ? (size_t)(o - p) : strlen(p);
	uint64_t s = CTL_IDLE_S;
	if (o && hm_parse_u64(o + strlen(opt), CTL_IDLE_MAX_S, &s) != 0) {
		snprintf(msg, len, "--control: idle-timeout needs seconds from 0 to %d, got '%.32s'",
			 CTL_IDLE_MAX_S, o + strlen(opt));
		return -1;
	}
	if (n == 0 || n >= plen) {
		snprintf(msg, len, "--control: the path is empty or longer than %zu bytes", plen - 1);
		return -1;
	}
	memcpy(path, p, n);
	path[n] = 0;
	*idle_ms = (unsigned)s * 1000u;
	return 0;
}

int control_start(const char *spec, const struct ctl_provider *pv, char *msg, size_t len)
{
	char path[sizeof(ct.path)];
	if (control_parse(spec, path, sizeof(path), &ct.idle_ms, msg, len) != 0)
		return -1;
	for (size_t i = 0; i < CTL_CLIENTS_MAX; i++)
		ct.cl[i].fd = -1;
	ct.pv = *pv;
	ct.lfd = listen_unix(path, msg, len);
	if (ct.lfd < 0)
		return -1;
	snprintf(ct.path, sizeof(ct.path), "%s", path);
	if (pipe2(ct.wake, O_CLOEXEC) != 0 ||
	    pthread_create(&ct.thread, NULL, control_main, NULL) != 0) {
		snprintf(msg, len, "--control: out of resources");
		control_stop();
		return -1;
	}
	ct.running = true;
	return 0;
}

void control_stop(void)
{
	if (ct.running) {
		ssize_t w = write(ct.wake[1], "x", 1);
		(void)w;
		pthread_join(ct.thread, NULL);
		ct.running = false;
	}
	for (int i = 0; i < 2; i++) {
		if (ct.wake[i] >= 0)
			close(ct.wake[i]);
		ct.wake[i] = -1;
	}
	if (ct.lfd >= 0) {
		close(ct.lfd);
		ct.lfd = -1;
		unlink(ct.path);
		ct.path[0] = 0;
	}
}
