/*
 * error.h - the project's error type.
 *
 * Every fallible function returns an int: 0 on success, a negative errno-style
 * code on failure (-EINVAL bad input, -EIO I/O or corrupt data, -ENOMEM, ...).
 * Functions that can explain a failure to a user also take a `struct tr_err *`
 * (which may be NULL) and fill it with one human-readable line that names what
 * was wrong ("train-images-idx3-ubyte: bad magic 0x00000804, expected 0x00000803").
 *
 * Thread-safety: a tr_err is plain data owned by the caller; any thread may use
 * its own.
 */
#ifndef TRAIND_ERROR_H
#define TRAIND_ERROR_H

#include <stddef.h>

#define TR_ERR_MSG_MAX 512

struct tr_err {
	int code;                   /* negative errno-style code, 0 if none */
	char msg[TR_ERR_MSG_MAX];   /* one line, no trailing newline */
};

/* Record `code` and a printf-style message in `err` (if not NULL).
 * Returns `code`, so callers can write `return tr_err_set(err, -EINVAL, ...)`. */
int tr_err_set(struct tr_err *err, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Prefix the message already in `err` with "prefix: " (if err is not NULL).
 * Returns err->code (or -EIO when err is NULL), for use in return statements. */
int tr_err_prefix(struct tr_err *err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Reset `err` to "no error". */
void tr_err_clear(struct tr_err *err);

#endif
