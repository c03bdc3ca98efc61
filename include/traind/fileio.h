/*
 * fileio.h - whole-file reads and durable, atomic whole-file writes, for the
 * command-line tools (traind-train's checkpoints and exports, trainctl's
 * export). The daemon itself never writes files other than its database.
 *
 * Thread-safety: reentrant; each call works on its own file descriptors.
 */
#ifndef TRAIND_FILEIO_H
#define TRAIND_FILEIO_H

#include <stddef.h>
#include <stdint.h>

#include "traind/error.h"

/* Read all of the regular file `path` into a new buffer (*out, caller
 * frees; *len bytes), at most `max` bytes (0: no limit; a larger file is
 * refused with -EFBIG, not truncated). Errors name the file:
 * "m.safetensors: No such file or directory", "x: not a regular file". */
int file_read_all(const char *path, size_t max, uint8_t **out, size_t *len, struct tr_err *err);

/* Write data[0, len) to `path` so that it is either the old file or all of
 * the new one, durably: a hidden temporary file beside it (mode as a plain
 * create would give), fsync, rename over `path`, fsync the directory. On
 * failure the temporary file is removed and `path` is untouched; the error
 * names the file and the step ("cannot write m.safetensors: fsync: ..."). */
int file_write_atomic(const char *path, const uint8_t *data, size_t len, struct tr_err *err);

#endif
