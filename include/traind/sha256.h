/*
 * sha256.h - SHA-256 (FIPS 180-4), used for checkpoint checksums, dataset
 * digests and the parameter hashes that prove bit-exact determinism.
 *
 * Implemented over OpenSSL's libcrypto (EVP), which uses the CPU's SHA
 * instructions where it has them (about 4x the portable C this replaced;
 * bench/bench-hash measures both). A context holds a libcrypto digest
 * context: sha256_init allocates it, sha256_final always frees it, so every
 * sha256_init must be ended by one sha256_final (with out NULL to discard).
 * A context whose init or update failed stays harmless: updates are ignored
 * and sha256_final reports the failure.
 *
 * Thread: any; a context is owned by its caller.
 */
#ifndef TRAIND_SHA256_H
#define TRAIND_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_DIGEST_LEN 32
#define SHA256_HEX_LEN 64   /* without the terminating NUL */

struct evp_md_ctx_st;

struct sha256_ctx {
	struct evp_md_ctx_st *md;   /* libcrypto's context; NULL after a failure or final */
};

/* 0, or -ENOMEM (then updates are ignored and sha256_final fails). */
int sha256_init(struct sha256_ctx *ctx);
void sha256_update(struct sha256_ctx *ctx, const void *data, size_t len);
/* Writes the digest to `out` (unless NULL) and frees the context: 0, or
 * -ENOMEM / -EIO if any step failed (then `out` is zeroed). */
int sha256_final(struct sha256_ctx *ctx, uint8_t out[SHA256_DIGEST_LEN]);

/* One-shot digest of `len` bytes at `data`, as 64 lowercase hex digits plus
 * NUL: 0, or -ENOMEM (then `out` is ""). */
int sha256_hex(const void *data, size_t len, char out[SHA256_HEX_LEN + 1]);

/* Lowercase hex of a finished digest. */
void sha256_to_hex(const uint8_t digest[SHA256_DIGEST_LEN], char out[SHA256_HEX_LEN + 1]);

#endif
