/* SPDX-License-Identifier: MIT */
/*
 * SHA-256 through OpenSSL's EVP interface (no hand-rolled hash). Used for the
 * HTAB digest that proves a destination holds every entry the source had.
 */
#include "hptmig/base.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdlib.h>

struct hm_sha256 {
	EVP_MD_CTX *ctx;
};

int hm_sha256_new(hm_sha256_t **out)
{
	hm_sha256_t *h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->ctx = EVP_MD_CTX_new();
	if (!h->ctx || EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) != 1) {
		EVP_MD_CTX_free(h->ctx);
		free(h);
		return -ENOMEM;
	}
	*out = h;
	return 0;
}

void hm_sha256_update(hm_sha256_t *h, const void *data, size_t len)
{
	EVP_DigestUpdate(h->ctx, data, len);
}

void hm_sha256_final(hm_sha256_t *h, uint8_t out[HM_SHA256_LEN])
{
	unsigned int n = 0;
	EVP_DigestFinal_ex(h->ctx, out, &n);
}

void hm_sha256_free(hm_sha256_t *h)
{
	if (!h)
		return;
	EVP_MD_CTX_free(h->ctx);
	free(h);
}

int hm_sha256(const void *data, size_t len, uint8_t out[HM_SHA256_LEN])
{
	unsigned int n = 0;
	return EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) == 1 ? 0 : -EIO;
}

void hm_hex(const uint8_t *bytes, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[bytes[i] >> 4];
		out[2 * i + 1] = digits[bytes[i] & 15];
	}
	out[2 * n] = '\0';
}
