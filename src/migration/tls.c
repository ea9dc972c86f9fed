/* SPDX-License-Identifier: MIT */
/*
 * TLS for tcp migrations through GnuTLS, as QEMU's tls-creds-x509: the
 * credentials come from a directory of PEM files named as QEMU names them,
 * the peer's chain is always verified (and the server's name, and on the
 * server an optional allowed client DN). It never parses x509 or does any
 * crypto itself, never prints, and never waits past the deadline it is given.
 */
#include "mig_int.h"

#include <errno.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct mig_tls_creds {
	gnutls_certificate_credentials_t x509;
	enum mig_tls_endpoint ep;
	char dir[1024];
	char hostname[256]; /* client: empty = the URI host */
	char authz[1024];   /* server: empty = any client the CA signed */
};

struct mig_tls {
	gnutls_session_t s;
	int fd;
	bool server;
	int sys_errno;     /* the last errno of the transport */
	int last;          /* the last GnuTLS error */
	bool refused;      /* a fatal alert before any application byte from the peer */
	uint64_t bytes_in; /* application bytes received */
	uint8_t first[4];  /* the peer's first bytes: is it speaking TLS at all? */
	size_t first_len;
	char why[400];     /* a message for that error */
};

/* ---------------------------------------------------------- credentials */

/* dir/name if it can be read: 0; -ENOENT or -errno otherwise. */
static int creds_path(const char *dir, const char *name, char *buf, size_t len)
{
	int n = snprintf(buf, len, "%s/%s", dir, name);
	if (n < 0 || (size_t)n >= len)
		return -ENAMETOOLONG;
	return access(buf, R_OK) == 0 ? 0 : -errno;
}

static int creds_file_error(const char *dir, const char *name, int rc, hm_error_t *err)
{
	return hm_error_set(err, rc, -1, "TLS credentials %s: %s: %s", dir, name, strerror(-rc));
}

int mig_tls_creds_load(const mig_tls_opts_t *o, enum mig_tls_endpoint ep, mig_tls_creds_t **out,
		       hm_error_t *err)
{
	char ca[1100], crl[1100], cert[1100], key[1100];
	const bool server = ep == MIG_TLS_SERVER;
	const char *cert_name = server ? MIG_TLS_SERVER_CERT : MIG_TLS_CLIENT_CERT;
	const char *key_name = server ? MIG_TLS_SERVER_KEY : MIG_TLS_CLIENT_KEY;
	int rc;
	*out = NULL;
	if (!o || !o->dir || !o->dir[0])
		return hm_error_set(err, -EINVAL, -1, "TLS credentials: no directory");
	if (strlen(o->dir) >= sizeof(((mig_tls_creds_t *)0)->dir))
		return hm_error_set(err, HM_E_RANGE, -1, "TLS credentials: directory name too long");
	if (o->hostname && strlen(o->hostname) >= sizeof(((mig_tls_creds_t *)0)->hostname))
		return hm_error_set(err, HM_E_RANGE, -1, "--tls-hostname: longer than %zu bytes",
				    sizeof(((mig_tls_creds_t *)0)->hostname) - 1);
	if (o->authz_dn && strlen(o->authz_dn) >= sizeof(((mig_tls_creds_t *)0)->authz))
		return hm_error_set(err, HM_E_RANGE, -1, "--tls-authz: longer than %zu bytes",
				    sizeof(((mig_tls_creds_t *)0)->authz) - 1);
	/* As QEMU: the CA is always needed (peers are always verified); the
	 * server needs its certificate and key; a client's are optional for
	 * QEMU but our servers require them, so they are loaded when present. */
	rc = creds_path(o->dir, MIG_TLS_CA_CERT, ca, sizeof(ca));
	if (rc)
		return creds_file_error(o->dir, MIG_TLS_CA_CERT, rc, err);
	int crc = creds_path(o->dir, key_name, key, sizeof(key));
	rc = creds_path(o->dir, cert_name, cert, sizeof(cert));
	if (server && (rc || crc))
		return creds_file_error(o->dir, rc ? cert_name : key_name, rc ? rc : crc, err);
	bool have_cert = rc == 0 && crc == 0;

	mig_tls_creds_t *c = calloc(1, sizeof(*c));
	if (!c)
		return hm_error_set(err, -ENOMEM, -1, "out of memory");
	c->ep = ep;
	snprintf(c->dir, sizeof(c->dir), "%s", o->dir);
	snprintf(c->hostname, sizeof(c->hostname), "%s", o->hostname ? o->hostname : "");
	snprintf(c->authz, sizeof(c->authz), "%s", o->authz_dn ? o->authz_dn : "");
	int g = gnutls_certificate_allocate_credentials(&c->x509);
	if (g < 0) {
		free(c);
		return hm_error_set(err, -ENOMEM, -1, "TLS credentials: %s", gnutls_strerror(g));
	}
	g = gnutls_certificate_set_x509_trust_file(c->x509, ca, GNUTLS_X509_FMT_PEM);
	if (g <= 0) {
		rc = hm_error_set(err, HM_E_FORMAT, -1, "TLS credentials %s: %s: %s", o->dir,
				  MIG_TLS_CA_CERT, g < 0 ? gnutls_strerror(g) : "no certificate in it");
		goto fail;
	}
	if (creds_path(o->dir, MIG_TLS_CA_CRL, crl, sizeof(crl)) == 0) {
		g = gnutls_certificate_set_x509_crl_file(c->x509, crl, GNUTLS_X509_FMT_PEM);
		if (g < 0) {
			rc = hm_error_set(err, HM_E_FORMAT, -1, "TLS credentials %s: %s: %s", o->dir,
					  MIG_TLS_CA_CRL, gnutls_strerror(g));
			goto fail;
		}
	}
	if (have_cert) {
		g = gnutls_certificate_set_x509_key_file(c->x509, cert, key, GNUTLS_X509_FMT_PEM);
		if (g < 0) {
			rc = hm_error_set(err, HM_E_FORMAT, -1, "TLS credentials %s: %s with %s: %s",
					  o->dir, cert_name, key_name, gnutls_strerror(g));
			goto fail;
		}
	}
	*out = c;
	return 0;
fail:
	gnutls_certificate_free_credentials(c->x509);
	free(c);
	return rc;
}

void mig_tls_creds_free(mig_tls_creds_t *c)
{
	if (!c)
		return;
	gnutls_certificate_free_credentials(c->x509);
	free(c);
}

enum mig_tls_endpoint mig_tls_creds_endpoint(const mig_tls_creds_t *c)
{
	return c->ep;
}

/* -------------------------------------------------------------- session */

/*
 * The transport: reads never block (the callers poll the socket with their
 * own deadlines, after mig_tls_pending says nothing is buffered), writes
 * block as the socket does (its SO_SNDTIMEO bounds them) and never raise
 * SIGPIPE.
 */
static ssize_t tls_pull(gnutls_transport_ptr_t p, void *buf, size_t len)
{
	mig_tls_t *t = p;
	ssize_t n = recv(t->fd, buf, len, MSG_DONTWAIT);
	if (n < 0) {
		t->sys_errno = errno == EWOULDBLOCK ? EAGAIN : errno;
		gnutls_transport_set_errno(t->s, t->sys_errno);
	}
	for (ssize_t i = 0; i < n && t->first_len < sizeof(t->first); i++)
		t->first[t->first_len++] = ((const uint8_t *)buf)[i];
	return n;
}

static ssize_t tls_push(gnutls_transport_ptr_t p, const void *buf, size_t len)
{
	mig_tls_t *t = p;
	ssize_t n = send(t->fd, buf, len, MSG_NOSIGNAL);
	if (n < 0) {
		t->sys_errno = errno == EWOULDBLOCK ? EAGAIN : errno;
		gnutls_transport_set_errno(t->s, t->sys_errno);
	}
	return n;
}

/* The error of a failed handshake or record call, in words, into t->why. */
static void tls_explain(mig_tls_t *t, int g)
{
	const bool server = t->server;
	const char *peer = server ? "the source" : "the destination";
	t->last = g;
	if (g == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR || g == GNUTLS_E_CERTIFICATE_ERROR) {
		unsigned st = gnutls_session_get_verify_cert_status(t->s);
		gnutls_datum_t d = {NULL, 0};
		if (st && gnutls_certificate_verification_status_print(st, GNUTLS_CRT_X509, &d, 0) == 0) {
			size_t n = strlen((const char *)d.data);
			while (n && d.data[n - 1] == ' ')
				d.data[--n] = 0; /* GnuTLS ends each sentence with a space */
			snprintf(t->why, sizeof(t->why), "%s's certificate is refused: %s", peer,
				 (const char *)d.data);
			gnutls_free(d.data);
		} else {
			snprintf(t->why, sizeof(t->why), "%s's certificate is refused: %s", peer,
				 gnutls_strerror(g));
		}
	} else if (g == GNUTLS_E_NO_CERTIFICATE_FOUND || g == GNUTLS_E_CERTIFICATE_REQUIRED) {
		/* A client only sends a certificate the server's CA issued. */
		snprintf(t->why, sizeof(t->why),
			 "%s sent no certificate issued by this %s (its %s is missing or from "
			 "another CA)",
			 peer, MIG_TLS_CA_CERT, server ? MIG_TLS_CLIENT_CERT : MIG_TLS_SERVER_CERT);
	} else if (g == GNUTLS_E_FATAL_ALERT_RECEIVED || g == GNUTLS_E_WARNING_ALERT_RECEIVED) {
		snprintf(t->why, sizeof(t->why), "%s refused the session: alert '%s'", peer,
			 gnutls_alert_get_name(gnutls_alert_get(t->s)));
	} else if (g == GNUTLS_E_PREMATURE_TERMINATION || g == GNUTLS_E_PULL_ERROR ||
		   g == GNUTLS_E_PUSH_ERROR) {
		snprintf(t->why, sizeof(t->why),
			 "%s closed the connection during the TLS handshake (does it use "
			 "--tls-creds too?)",
			 peer);
	} else {
		snprintf(t->why, sizeof(t->why), "%s", gnutls_strerror(g));
	}
}

/* Wait for fd (POLLIN or POLLOUT) until end, or until the cancel's fd
 * (cfd, -1: none) is readable; 0, HM_E_TIMEOUT, HM_E_CANCELLED or -errno. */
static int tls_wait(int fd, short ev, uint64_t end, int cfd)
{
	for (;;) {
		uint64_t now = hm_now_ns();
		if (now >= end)
			return HM_E_TIMEOUT;
		uint64_t ms = (end - now + 999999) / 1000000;
		struct pollfd p[2] = {{.fd = fd, .events = ev}, {.fd = cfd, .events = POLLIN}};
		int k = poll(p, 2, ms > 60000 ? 60000 : (int)ms);
		if (k > 0 && p[1].revents)
			return HM_E_CANCELLED;
		if (k > 0)
			return 0;
		if (k < 0 && errno != EINTR)
			return -errno;
	}
}

/* The peer opened with a plain migration stream's magic instead of TLS. */
static bool peer_sent_plain_stream(const mig_tls_t *t)
{
	return t->first_len == 4 && memcmp(t->first, "QEVM", 4) == 0;
}

void mig_tls_free(mig_tls_t *t)
{
	if (!t)
		return;
	gnutls_deinit(t->s);
	free(t);
}

/* A session on t->fd for c, its transport our pull and push; host: the
 * name a client checks when c names none. 0, or a GnuTLS error. */
static int session_setup(mig_tls_t *t, const mig_tls_creds_t *c, const char *host)
{
	const char *name = c->hostname[0] ? c->hostname : host;
	int g;
	if ((g = gnutls_set_default_priority(t->s)) < 0 ||
	    (g = gnutls_credentials_set(t->s, GNUTLS_CRD_CERTIFICATE, c->x509)) < 0)
		return g;
	if (t->server) {
		/* QEMU's verify-peer=on: the source must show a certificate the CA signed. */
		gnutls_certificate_server_set_request(t->s, GNUTLS_CERT_REQUIRE);
		gnutls_session_set_verify_cert(t->s, NULL, 0);
	} else {
		gnutls_session_set_verify_cert(t->s, name, 0);
		if (name && name[0] &&
		    (g = gnutls_server_name_set(t->s, GNUTLS_NAME_DNS, name, strlen(name))) < 0)
			return g;
	}
	gnutls_transport_set_ptr(t->s, t);
	gnutls_transport_set_pull_function(t->s, tls_pull);
	gnutls_transport_set_push_function(t->s, tls_push);
	return 0;
}

/* Run the handshake to its end, waiting on the socket by end and waking on
 * the cancel (cfd). 0; HM_E_TIMEOUT, HM_E_CANCELLED or -errno with why
 * filled; or 1 with the failed GnuTLS call's code in *g. */
static int handshake_loop(mig_tls_t *t, uint64_t end, int cfd, int *g, char *why, size_t wl)
{
	for (;;) {
		*g = gnutls_handshake(t->s);
		if (*g == 0)
			return 0;
		if (*g != GNUTLS_E_AGAIN && *g != GNUTLS_E_INTERRUPTED) {
			if (gnutls_error_is_fatal(*g))
				return 1;
			continue;
		}
		short ev = gnutls_record_get_direction(t->s) ? POLLOUT : POLLIN;
		int rc = tls_wait(t->fd, ev, end, cfd);
		if (rc == HM_E_TIMEOUT)
			snprintf(why, wl, "the handshake did not complete in time");
		else if (rc == HM_E_CANCELLED)
			snprintf(why, wl, "cancelled during the TLS handshake");
		else if (rc)
			snprintf(why, wl, "%s", strerror(-rc));
		if (rc)
			return rc;
	}
}

/*
 * --tls-authz on a server: the client's certificate must be for c->authz.
 * QEMU's authz compares the DN as gnutls_x509_crt_get_dn writes it (most
 * significant part first, "O=...,CN=..."); certtool and openssl show the
 * RFC 4514 order ("CN=...,O=..."): either is let in. 0, or -EACCES with
 * why filled (the client is told by an alert).
 */
static int check_authz(mig_tls_t *t, const mig_tls_creds_t *c, char *why, size_t wl)
{
	unsigned n = 0;
	const gnutls_datum_t *certs = gnutls_certificate_get_peers(t->s, &n);
	gnutls_x509_crt_t crt;
	gnutls_datum_t rfc = {NULL, 0};
	char dn[1024];
	size_t dl = sizeof(dn);
	dn[0] = 0;
	if (n && gnutls_x509_crt_init(&crt) == 0) {
		if (gnutls_x509_crt_import(crt, &certs[0], GNUTLS_X509_FMT_DER) != 0 ||
		    gnutls_x509_crt_get_dn(crt, dn, &dl) != 0)
			dn[0] = 0;
		else if (gnutls_x509_crt_get_dn3(crt, &rfc, 0) != 0)
			rfc.data = NULL;
		gnutls_x509_crt_deinit(crt);
	}
	bool ok = dn[0] && (strcmp(dn, c->authz) == 0 ||
			    (rfc.data && strcmp((const char *)rfc.data, c->authz) == 0));
	if (!ok) {
		/* Tell the source why, so that it does not send a stream for nothing. */
		gnutls_alert_send(t->s, GNUTLS_AL_FATAL, GNUTLS_A_ACCESS_DENIED);
		snprintf(why, wl, "the source's certificate is for '%s', not the DN "
			 "--tls-authz allows ('%s')", rfc.data ? (const char *)rfc.data : dn,
			 c->authz);
	}
	gnutls_free(rfc.data);
	return ok ? 0 : -EACCES;
}

/* A handshake that GnuTLS refused (code g): tell the peer (an alert)
 * unless the connection is what failed, and put the reason in why. */
static void handshake_refused(mig_tls_t *t, int g, char *why, size_t wl)
{
	/* A plain source reads the alert on its return path and says so. */
	if (g != GNUTLS_E_PREMATURE_TERMINATION && g != GNUTLS_E_PULL_ERROR &&
	    g != GNUTLS_E_PUSH_ERROR)
		(void)gnutls_alert_send_appropriate(t->s, g);
	if (t->server && peer_sent_plain_stream(t)) {
		snprintf(why, wl, "the source sent a plain migration stream (QEVM), not TLS (is "
			 "--tls-creds missing on the source?)");
	} else {
		tls_explain(t, g);
		snprintf(why, wl, "%s", t->why);
	}
}

int mig_tls_handshake(const mig_tls_creds_t *c, int fd, const char *host, uint64_t end, int cfd,
		      mig_tls_t **out, char *why, size_t wl)
{
	mig_tls_t *t = calloc(1, sizeof(*t));
	*out = NULL;
	if (!t) {
		snprintf(why, wl, "out of memory");
		return -ENOMEM;
	}
	t->fd = fd;
	t->server = c->ep == MIG_TLS_SERVER;
	int g = gnutls_init(&t->s, t->server ? GNUTLS_SERVER : GNUTLS_CLIENT);
	if (g < 0) {
		free(t);
		snprintf(why, wl, "%s", gnutls_strerror(g));
		return -ENOMEM;
	}
	int rc = session_setup(t, c, host);
	if (rc < 0) {
		g = rc;
		rc = 1;
	} else {
		rc = handshake_loop(t, end, cfd, &g, why, wl);
	}
	if (rc == 1) {
		handshake_refused(t, g, why, wl);
		rc = t->server && peer_sent_plain_stream(t) ? -EPROTONOSUPPORT : -EPROTO;
	}
	if (rc == 0 && t->server && c->authz[0])
		rc = check_authz(t, c, why, wl);
	if (rc != 0) {
		mig_tls_free(t);
		return rc;
	}
	*out = t;
	return 0;
}

bool mig_tls_pending(mig_tls_t *t)
{
	return gnutls_record_check_pending(t->s) > 0;
}

/* A record call's failure as -errno; the words in t->why. */
static ssize_t tls_fail(mig_tls_t *t, ssize_t g)
{
	if (g == GNUTLS_E_AGAIN)
		return -EAGAIN; /* nothing to read now, or a send timed out */
	if (g == GNUTLS_E_PREMATURE_TERMINATION)
		return 0; /* a peer that closed without close_notify: end of input */
	if (g == GNUTLS_E_PUSH_ERROR || g == GNUTLS_E_PULL_ERROR)
		return -(t->sys_errno ? t->sys_errno : EPIPE);
	if (g == GNUTLS_E_FATAL_ALERT_RECEIVED && t->bytes_in == 0)
		t->refused = true;
	tls_explain(t, (int)g);
	return -EPROTO;
}

ssize_t mig_tls_recv(mig_tls_t *t, void *buf, size_t len)
{
	ssize_t n;
	do
		n = gnutls_record_recv(t->s, buf, len);
	while (n == GNUTLS_E_INTERRUPTED);
	if (n >= 0) {
		t->bytes_in += (uint64_t)n;
		return n;
	}
	return tls_fail(t, n);
}

ssize_t mig_tls_send(mig_tls_t *t, const void *buf, size_t len)
{
	ssize_t n;
	do
		n = gnutls_record_send(t->s, buf, len);
	while (n == GNUTLS_E_INTERRUPTED);
	if (n >= 0)
		return n;
	return tls_fail(t, n);
}

void mig_tls_bye(mig_tls_t *t)
{
	(void)gnutls_bye(t->s, GNUTLS_SHUT_WR);
}

bool mig_tls_refused(const mig_tls_t *t)
{
	return t->refused;
}

const char *mig_tls_why(const mig_tls_t *t)
{
	return t->why[0] ? t->why : "TLS error";
}
