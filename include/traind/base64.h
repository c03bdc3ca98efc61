/*
 * base64.h - RFC 4648 base64 (standard alphabet, '=' padding), for model
 * files carried inside JSON messages. Decoding is strict: only alphabet
 * characters, correct padding, no whitespace.
 *
 * Thread: pure functions; any thread.
 */
#ifndef TRAIND_BASE64_H
#define TRAIND_BASE64_H

#include <stddef.h>
#include <stdint.h>

/* A new NUL-terminated string (caller frees), or NULL on ENOMEM. */
char *base64_encode(const uint8_t *data, size_t len);
/* Decode `len` chars; *out is malloc'ed (caller frees). -EINVAL if malformed. */
int base64_decode(const char *text, size_t len, uint8_t **out, size_t *out_len);

#endif
