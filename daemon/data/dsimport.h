/*
 * dsimport.h - adding and removing datasets in the data directory, from
 * files a client passed as open descriptors (io.traind.DatasetImport,
 * DatasetRemove).
 *
 * traind never opens a path a client names: it reads the descriptors it
 * was given (regular files only, read with pread from offset 0, so a
 * descriptor shared with the client is left where it was), copies them
 * into a fresh DATA_DIR/.tmp-NAME-XXXXXX/ under the given base names,
 * fsyncs each file, validates the whole directory with dataset_load_limited
 * (within max_bytes once expanded too), fsyncs
 * it, and only then renames it to DATA_DIR/NAME (atomically: renameat2
 * RENAME_NOREPLACE, or RENAME_EXCHANGE for a replacement, whose old files
 * are then deleted) and fsyncs DATA_DIR. A crash leaves either the old
 * dataset or the new one, plus at most a hidden temporary directory that
 * no listing shows and the next start deletes (dsimport_sweep). Removal
 * renames DATA_DIR/NAME to a hidden name first, so it disappears at once
 * and whole.
 *
 * Thread: any but the loop thread (they read, write and fsync files).
 */
#ifndef TRAIND_DSIMPORT_H
#define TRAIND_DSIMPORT_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "traind/dataset.h"
#include "traind/error.h"

#define DSIMPORT_MAX_FILES 32
#define DSIMPORT_NAME_MAX 255     /* a file name's bytes */

/* A dataset file's name as a client gives it: a base name of 1 to 255
 * bytes, no '/', not starting with '.', no control characters. */
bool dsimport_file_name_ok(const char *name);

/* Copy fds[i] to DIR/.tmp-NAME-XXXXXX/names[i] and validate (see the top);
 * with vocab (char or byte) the files are one text (doc/sequences.md): its
 * dataset.json, the vocabulary built from the text, is written beside them
 * (a file of that name among them is refused).
 * Refusals: -EEXIST when DATA_DIR/NAME exists and !replace, -EFBIG when the
 * files hold more than max_bytes, or expand to more in memory (compressed
 * ones: dataset_load_limited; *bytes says how much), -EINVAL for a
 * descriptor that is not a readable regular file or a dataset that does
 * not load (err names the file and the problem). On success tmp (PATH_MAX)
 * holds the temporary directory, to commit or discard. */
int dsimport_copy(const char *data_dir, const char *name, const char *const *names, const int *fds,
		  size_t n, bool replace, enum ds_vocab vocab, uint64_t max_bytes, char *tmp,
		  uint64_t *bytes, struct tr_err *err);
/* The vocabulary a DatasetImport asks for: "char", "byte", or (NULL) char
 * when every name ends in ".txt", else none (not a text). -EINVAL for
 * another word. */
int dsimport_vocab(const char *word, const char *const *names, size_t n, enum ds_vocab *out);
/* Rename tmp to DATA_DIR/NAME (replacing an existing one only if replace:
 * else -EEXIST, and tmp is left for dsimport_discard), fsync DATA_DIR. */
int dsimport_commit(const char *data_dir, const char *tmp, const char *name, bool replace,
		    struct tr_err *err);
/* Delete a temporary directory and its files. */
void dsimport_discard(const char *tmp);
/* Remove DATA_DIR/NAME and its files; -ENOENT when there is none. */
int dsimport_remove(const char *data_dir, const char *name, struct tr_err *err);
/* Start-up: delete the temporary directories of imports and removals a
 * crash cut short (DATA_DIR/.tmp-NAME-PID-XXXXXX, .rm-NAME-PID-K, whose
 * traind is gone; .tmp-NAME-XXXXXX of older ones), each logged with its
 * size; how many. */
unsigned dsimport_sweep(const char *data_dir);

#endif
