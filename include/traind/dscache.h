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

#include <stdint.h>

#include "traind/dataset.h"
#include "traind/error.h"

struct dscache;

int dscache_new(struct dscache **out, const char *data_dir);
void dscache_free(struct dscache *c);
/* A loaded dataset by name; pair with dscache_put. */
int dscache_get(struct dscache *c, const char *name, const struct dataset **out, struct tr_err *err);
void dscache_put(struct dscache *c, const struct dataset *ds);
/* The number of training images, their shape and the classes, without
 * keeping the pixels (dataset_probe: headers and labels where the format
 * allows it). */
int dscache_train_shape(struct dscache *c, const char *name, struct dataset_shape *shape,
			struct tr_err *err);

#endif
