/* SPDX-License-Identifier: MIT */
/*
 * Test helper: keys and x509 certificates made at test time with GnuTLS'
 * x509 API (a CA, servers for 127.0.0.1 and localhost, clients; any
 * validity period, so expired ones too), written as PEM files in QEMU's
 * tls-creds-x509 names. Header-only; fails the running cmocka test on any
 * error. Never a substitute for the library's own TLS code.
 */
#ifndef HPTMIG_TESTS_TLS_CERTS_H
#define HPTMIG_TESTS_TLS_CERTS_H

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "testutil.h"

enum tc_purpose { TC_CA, TC_SERVER, TC_CLIENT };

struct tc_ident {
	gnutls_x509_privkey_t key;
	gnutls_x509_crt_t crt;
};

static inline void tc_write_pem(const char *dir, const char *name, const gnutls_datum_t *d)
{
	char path[1024];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	assert_int_equal(tu_write_file(path, d->data, d->size), 0);
}

/*
 * A key and a certificate for dn valid [now + from_s, now + to_s], signed by
 * issuer (NULL: self-signed, a CA).
 */
static inline void tc_make(struct tc_ident *id, const char *dn, enum tc_purpose p, long from_s, long to_s,
		       const struct tc_ident *issuer, unsigned serial)
{
	static const uint8_t loopback[4] = {127, 0, 0, 1};
	const char *bad = NULL;
	uint8_t ser[4] = {0, 0, (uint8_t)(serial >> 8), (uint8_t)serial};
	uint8_t kid[64];
	size_t kl = sizeof(kid);
	time_t now = time(NULL);
	gnutls_x509_crt_t c;
	assert_int_equal(gnutls_x509_privkey_init(&id->key), 0);
	assert_int_equal(gnutls_x509_privkey_generate(id->key, GNUTLS_PK_ECDSA,
						      GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1),
						      0),
			 0);
	assert_int_equal(gnutls_x509_crt_init(&c), 0);
	assert_int_equal(gnutls_x509_crt_set_version(c, 3), 0);
	assert_int_equal(gnutls_x509_crt_set_serial(c, ser, sizeof(ser)), 0);
	assert_int_equal(gnutls_x509_crt_set_activation_time(c, now + from_s), 0);
	assert_int_equal(gnutls_x509_crt_set_expiration_time(c, now + to_s), 0);
	if (gnutls_x509_crt_set_dn(c, dn, &bad) != 0)
		fail_msg("DN '%s' refused at '%s'", dn, bad ? bad : "?");
	assert_int_equal(gnutls_x509_crt_set_key(c, id->key), 0);
	assert_int_equal(gnutls_x509_crt_set_basic_constraints(c, p == TC_CA, -1), 0);
	if (p == TC_CA) {
		assert_int_equal(gnutls_x509_crt_set_key_usage(c, GNUTLS_KEY_KEY_CERT_SIGN |
								      GNUTLS_KEY_CRL_SIGN),
				 0);
	} else {
		assert_int_equal(gnutls_x509_crt_set_key_usage(c, GNUTLS_KEY_DIGITAL_SIGNATURE |
								      GNUTLS_KEY_KEY_ENCIPHERMENT),
				 0);
		assert_int_equal(gnutls_x509_crt_set_key_purpose_oid(
					 c, p == TC_SERVER ? GNUTLS_KP_TLS_WWW_SERVER
							  : GNUTLS_KP_TLS_WWW_CLIENT,
					 0),
				 0);
	}
	if (p == TC_SERVER) {
		assert_int_equal(gnutls_x509_crt_set_subject_alt_name(c, GNUTLS_SAN_IPADDRESS,
								     loopback, 4,
								     GNUTLS_FSAN_APPEND),
				 0);
		assert_int_equal(gnutls_x509_crt_set_subject_alt_name(c, GNUTLS_SAN_DNSNAME,
								     "localhost", 9,
								     GNUTLS_FSAN_APPEND),
				 0);
	}
	assert_int_equal(gnutls_x509_crt_get_key_id(c, 0, kid, &kl), 0);
	assert_int_equal(gnutls_x509_crt_set_subject_key_id(c, kid, kl), 0);
	if (issuer) {
		kl = sizeof(kid);
		assert_int_equal(gnutls_x509_crt_get_subject_key_id(issuer->crt, kid, &kl, NULL), 0);
		assert_int_equal(gnutls_x509_crt_set_authority_key_id(c, kid, kl), 0);
	}
	const struct tc_ident *by = issuer ? issuer : id;
	assert_int_equal(gnutls_x509_crt_sign2(c, issuer ? issuer->crt : c, by->key,
					       GNUTLS_DIG_SHA256, 0),
			 0);
	id->crt = c;
}

static inline void tc_free(struct tc_ident *id)
{
	gnutls_x509_crt_deinit(id->crt);
	gnutls_x509_privkey_deinit(id->key);
}

/* Write id's certificate (and key, when key_name) into dir. */
static inline void tc_put(const char *dir, const struct tc_ident *id, const char *crt_name,
		const char *key_name)
{
	gnutls_datum_t d;
	assert_int_equal(gnutls_x509_crt_export2(id->crt, GNUTLS_X509_FMT_PEM, &d), 0);
	tc_write_pem(dir, crt_name, &d);
	gnutls_free(d.data);
	if (key_name) {
		assert_int_equal(gnutls_x509_privkey_export2(id->key, GNUTLS_X509_FMT_PEM, &d), 0);
		tc_write_pem(dir, key_name, &d);
		gnutls_free(d.data);
	}
}

#endif
