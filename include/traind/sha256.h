/*
 * sha256.h - SHA-256 (FIPS 180-4), used for checkpoint checksums and for the
 * parameter hashes that prove bit-exact determinism.
 *
 * Thread: any; a context is owned by its caller.
 */
#ifndef TRAIND_SHA256_H
#define TRAIND_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_DIGEST_LEN 32
#define SHA256_HEX_LEN 64   /* without the terminating NUL */

struct sha256_ctx {
	uint32_t h[8];
	uint64_t nbytes;
	uint8_t buf[64];
	size_t buflen;
};

void sha256_init(struct sha256_ctx *ctx);
void sha256_update(struct sha256_ctx *ctx, const void *data, size_t len);
void sha256_final(struct sha256_ctx *ctx, uint8_t out[SHA256_DIGEST_LEN]);

/* One-shot digest of `len` bytes at `data`, as 64 lowercase hex digits plus NUL. */
void sha256_hex(const void *data, size_t len, char out[SHA256_HEX_LEN + 1]);

/* Lowercase hex of a finished digest. */
void sha256_to_hex(const uint8_t digest[SHA256_DIGEST_LEN], char out[SHA256_HEX_LEN + 1]);

#endif
