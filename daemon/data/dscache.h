/*
 * dscache.h - datasets shared by the jobs that train on them.
 *
 * A dataset is loaded once (from DATA_DIR/NAME/) by the first job that needs
 * it and freed when its last job lets go. Names are checked by
 * config_dataset_name_ok (no '/', no leading '.'), and the resolved directory
 * must lie inside the data directory (a symlink pointing out is refused), so a
 * client can never make traind open a path of its choosing.
 *
 * Thread: any, but not the loop thread while it serves clients: every
 * function except dscache_free and dscache_put reads the file system
 * (realpath, the dataset's files); the daemon calls them on the thread pool,
 * on workers, and at start-up. A mutex guards the table; loading happens
 * outside it, one loader per name.
 */
#ifndef TRAIND_DSCACHE_H
#define TRAIND_DSCACHE_H

#include <jansson.h>
#include <stdint.h>

#include "traind/dataset.h"
#include "traind/error.h"
#include "daemon/store/store.h"
#include "daemon/store/storeq.h"

/* A dataset's identity, "sha256:" + 64 hex digits (plus NUL). */
#define DSCACHE_DIGEST_MAX 72

struct dscache;

int dscache_new(struct dscache **out, const char *data_dir);
/* Loads take at most max_bytes in memory (dataset_load_limited; the
 * machine's memory if less), named `limit_name` in refusals. Before any
 * load. */
void dscache_set_limit(struct dscache *c, uint64_t max_bytes, const char *limit_name);
void dscache_free(struct dscache *c);
/* A loaded dataset by name; pair with dscache_put. With `digest` (the
 * files' dscache_digest, taken just before), a dataset loaded for another
 * digest (its files have changed since) is not shared: it is loaded again. */
int dscache_get(struct dscache *c, const char *name, const char *digest, const struct dataset **out,
		struct tr_err *err);
void dscache_put(struct dscache *c, const struct dataset *ds);
/* The number of training images, their shape and the classes, without
 * keeping the pixels (dataset_probe: headers and labels where the format
 * allows it). */
int dscache_train_shape(struct dscache *c, const char *name, struct dataset_shape *shape,
			struct tr_err *err);

/*
 * The identity of DATA_DIR/NAME, independent of its format: SHA-256 over
 * every regular file in the directory whose name does not start with '.'
 * (symbolic links followed, subdirectories and others left out), in byte
 * order of their names, each contributing its name and a NUL, its size as 8
 * bytes little-endian, and the SHA-256 of its content (32 bytes). A file's
 * content digest is remembered in the store by (path, size, mtime, ctime,
 * inode) (store_file_digest_get/put), so a dataset is read in full once,
 * then only stat'ed. `rs`: a connection for the lookups; new digests are
 * written through `sq` (storeq_call), or through `rs` itself when sq is
 * NULL (start-up, before the store thread runs). *bytes (may be NULL): the
 * files' total size. Reads and hashes files: never on the loop thread.
 */
int dscache_digest(struct dscache *c, const char *name, struct store *rs, struct storeq *sq,
		   char out[DSCACHE_DIGEST_MAX], uint64_t *bytes, struct tr_err *err);

/* The message of a job whose dataset changed, as Resume, recovery and Eval
 * give it ("dataset mnist changed since job 3 started (sha256 1f0c… now
 * 9a2e…); ..."); `verb` is what to retry with --allow-data-change
 * ("resume", "eval"). */
void dscache_changed_message(char *buf, size_t len, const char *name, int64_t job,
			     const char *recorded, const char *current, const char *verb);

/* The names of the subdirectories of the data directory that are dataset
 * names (not hidden), sorted; *out is malloc'ed (free each and the array). */
int dscache_list(struct dscache *c, char ***out, size_t *n, struct tr_err *err);

/* Datasets' answer for one dataset, remembered by (name, files' digest)
 * so that listing the datasets does not load every one of them each time
 * (a listing loaded MNIST and Fashion-MNIST in full, 1.5 s on a busy
 * machine: too slow for shell completion's 2 s). dscache_memo_get: a new
 * object, a copy of what dscache_memo_set left for that name and digest;
 * NULL when none (or the files have changed since). dscache_memo_set keeps a
 * copy of `info` (the caller keeps its own). At most DSCACHE_MEMO_MAX
 * names; past that the oldest is forgotten. */
#define DSCACHE_MEMO_MAX 256
json_t *dscache_memo_get(struct dscache *c, const char *name, const char *digest);
void dscache_memo_set(struct dscache *c, const char *name, const char *digest, const json_t *info);

/* The resolved data directory. */
const char *dscache_dir(const struct dscache *c);

#endif
