/*
 * sha256.c - SHA-256 over OpenSSL's libcrypto. See include/traind/sha256.h.
 *
 * EVP_sha256 picks libcrypto's fastest code for the CPU at run time (the SHA
 * extensions on x86-64 and arm64, else its assembly rounds). The digest is
 * the standard's, so checkpoints and digests written by the portable C code
 * this replaced verify unchanged (tests/unit/test-sha256.c keeps the NIST vectors).
 */
#include "traind/sha256.h"

#include <errno.h>
#include <string.h>

#include <openssl/evp.h>

int sha256_init(struct sha256_ctx *ctx)
{
	ctx->md = EVP_MD_CTX_new();
	if (!ctx->md)
		return -ENOMEM;
	if (!EVP_DigestInit_ex(ctx->md, EVP_sha256(), NULL)) {
		EVP_MD_CTX_free(ctx->md);
		ctx->md = NULL;
		return -ENOMEM;
	}
	return 0;
}

void sha256_update(struct sha256_ctx *ctx, const void *data, size_t len)
{
	if (!ctx->md || len == 0)
		return;
	if (!EVP_DigestUpdate(ctx->md, data, len)) {
		EVP_MD_CTX_free(ctx->md);
		ctx->md = NULL;
	}
}

int sha256_final(struct sha256_ctx *ctx, uint8_t out[SHA256_DIGEST_LEN])
{
	uint8_t md[EVP_MAX_MD_SIZE];
	unsigned n = 0;
	int rc = -ENOMEM;

	if (ctx->md) {
		rc = EVP_DigestFinal_ex(ctx->md, md, &n) && n == SHA256_DIGEST_LEN ? 0 : -EIO;
		EVP_MD_CTX_free(ctx->md);
		ctx->md = NULL;
	}
	if (out) {
		if (rc == 0)
			memcpy(out, md, SHA256_DIGEST_LEN);
		else
			memset(out, 0, SHA256_DIGEST_LEN);
	}
	return rc;
}

void sha256_to_hex(const uint8_t digest[SHA256_DIGEST_LEN], char out[SHA256_HEX_LEN + 1])
{
	static const char hexd[] = "0123456789abcdef";

	for (int i = 0; i < SHA256_DIGEST_LEN; i++) {
		out[2 * i] = hexd[digest[i] >> 4];
		out[2 * i + 1] = hexd[digest[i] & 15];
	}
	out[SHA256_HEX_LEN] = '\0';
}

int sha256_hex(const void *data, size_t len, char out[SHA256_HEX_LEN + 1])
{
	static const uint8_t empty[1];
	uint8_t md[EVP_MAX_MD_SIZE];
	unsigned n = 0;

	if (!EVP_Digest(len ? data : empty, len, md, &n, EVP_sha256(), NULL) ||
	    n != SHA256_DIGEST_LEN) {
		out[0] = '\0';
		return -ENOMEM;
	}
	sha256_to_hex(md, out);
	return 0;
}
