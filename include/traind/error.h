/*
 * error.h - the project's error type.
 *
 * Every fallible function returns an int: 0 on success, a negative errno-style
 * code on failure (-EINVAL bad input, -EIO I/O or corrupt data, -ENOMEM, ...).
 * Functions that can explain a failure to a user also take a `struct tr_err *`
 * (which may be NULL) and fill it with one human-readable line that names what
 * was wrong ("train-images-idx3-ubyte: bad magic 0x00000804, expected 0x00000803").
 * An error about one named input (a configuration key, a protocol parameter)
 * also carries that name in `key`, so that callers need not find it in the
 * message.
 *
 * Text from outside (a client's key or value, a file's field) is quoted in a
 * message cut to a few dozen bytes with tr_utf8_cut, never with a bare
 * "%.64s": a message must stay valid UTF-8 (JSON replies carry it), so a cut
 * never splits a character. tr_err_set and tr_err_prefix keep that when they
 * truncate too.
 *
 * Thread-safety: a tr_err is plain data owned by the caller; any thread may use
 * its own.
 */
#ifndef TRAIND_ERROR_H
#define TRAIND_ERROR_H

#include <stddef.h>

#define TR_ERR_MSG_MAX 512
#define TR_ERR_KEY_MAX 64
/* How much outside text a message quotes (bytes, before tr_utf8_cut). */
#define TR_QUOTE_MAX 64

struct tr_err {
	int code;                   /* negative errno-style code, 0 if none */
	char msg[TR_ERR_MSG_MAX];   /* one line, no trailing newline */
	char key[TR_ERR_KEY_MAX];   /* the input it is about ("epochs"), "" if none */
};

/* Record `code` and a printf-style message in `err` (if not NULL); clears
 * the key. Returns `code`, so callers can write
 * `return tr_err_set(err, -EINVAL, ...)`. */
int tr_err_set(struct tr_err *err, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* As tr_err_set, for an error about the input named `key`: the message is
 * "key: " followed by the formatted text, and err->key is `key`. */
int tr_err_set_key(struct tr_err *err, int code, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* Name the input the error in `err` is about (cut like tr_utf8_cut to fit
 * TR_ERR_KEY_MAX), keeping its message. Returns err->code (-EIO when err is
 * NULL or holds no code). */
int tr_err_key(struct tr_err *err, const char *key);

/* Prefix the message already in `err` with "prefix: " (if err is not NULL).
 * Returns err->code (or -EIO when err is NULL), for use in return statements. */
int tr_err_prefix(struct tr_err *err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Reset `err` to "no error". */
void tr_err_clear(struct tr_err *err);

/* The length in bytes of the longest prefix of `s` that is at most `max`
 * bytes and ends on a UTF-8 character boundary (a multi-byte character that
 * does not fit is left out whole), as an int for printf's "%.*s":
 *   tr_err_set(err, -EINVAL, "unknown key '%.*s'", tr_utf8_cut(k, TR_QUOTE_MAX), k);
 * Bytes that are not valid UTF-8 count one each. */
int tr_utf8_cut(const char *s, size_t max);

#endif
