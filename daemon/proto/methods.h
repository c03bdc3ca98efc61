/*
 * methods.h - the io.traind varlink methods (daemon/proto/io.traind.varlink)
 * and org.varlink.service's: the table that dispatches them (methods.c),
 * and the methods in groups, one file each:
 *
 *   methods-jobs.c     Start, Pause, Resume, Kill, Delete: the jobs
 *                      module's verbs, answered through a struct jobs_done
 *   methods-query.c    Status, List, History, Steps, Checkpoints, Wait, Watch
 *   methods-model.c    Eval, Export, Generate, Predict: a job's stored checkpoints
 *   methods-data.c     Datasets, DatasetImport, DatasetRemove
 *   methods-service.c  GetInfo, GetInterfaceDescription, Counters
 *
 * Every parameter is checked before anything happens (params.h); a bad one
 * gets InvalidParameter naming it. Reads that touch the database or compute
 * run on libuv's thread pool with their own read-only connection
 * (bgwork.h); writes go through the jobs module and its store thread. The
 * loop never blocks. Errors go out only through call_error with the
 * fields of a struct proto_detail, the modules' codes through the map of
 * errors-map.c.
 *
 * The method table (methods.c) carries each method's flags: whether it is
 * answered during a shutdown (M_SHUTDOWN; the others get ShuttingDown), and
 * whether it takes the descriptors passed with it (M_FDS: taken, all of
 * them, before the method runs; those it does not keep are closed after).
 *
 * Thread: loop thread.
 */
#ifndef TRAIND_METHODS_H
#define TRAIND_METHODS_H

#include <stdint.h>

#include "daemon/core/daemon.h"
#include "daemon/data/dscache.h"
#include "daemon/proto/bgwork.h"
#include "daemon/proto/params.h"
#include "daemon/proto/server.h"
#include "daemon/store/store.h"

/* The server's dispatch function; ctx is the struct daemon. */
void methods_dispatch(void *ctx, struct call *c, const char *method);

/* ---- for the groups (methods-*.c) -------------------------------------- */

/* A method: fds holds the descriptors passed with the call for an M_FDS
 * method (it takes those it keeps), else NULL. */
typedef void method_fn(struct daemon *d, struct call *c, struct call_fds *fds);

method_fn m_start, m_pause, m_resume, m_kill, m_delete;
method_fn m_status, m_list, m_history, m_steps, m_checkpoints, m_wait, m_watch;
method_fn m_eval, m_export, m_generate, m_predict;
method_fn m_datasets, m_dataset_import, m_dataset_remove;
method_fn m_get_info, m_get_interface, m_counters, m_traind_info;
method_fn m_sweep_start, m_sweep_status, m_sweep_list, m_sweep_kill, m_sweep_pause, m_sweep_resume,
	m_sweep_delete;

/* On the pool (methods-jobs.c): the check of a new job, as Start makes it:
 * config_in (NULL: the defaults) parsed, its dataset's digest taken and the
 * dataset loaded into sp, val_size fitted to a small dataset, and with
 * `fit` the configuration checked against the dataset (steps per epoch,
 * parameters). Fails t, with *bad_param the parameter it names (written
 * into param when it is "config.KEY"). */
#define METHODS_PARAM_MAX 80
struct job_spec;
int methods_new_job(struct bg_task *t, struct daemon *d, json_t *config_in, bool fit, struct job_spec *sp,
		    char param[METHODS_PARAM_MAX], const char **bad_param);

/* Which stored checkpoint of a job a call names. */
struct ckpt_ref {
	int64_t id;                  /* the job */
	int64_t epoch;               /* -1: the newest epoch checkpoint, else the newest of any kind */
	bool best;                   /* the job's best epoch checkpoint instead */
};

/* On the pool (methods-model.c): the checkpoint ref names, with its blob,
 * from the task's store; fails t (NoSuchCheckpoint, StorageError). */
int methods_checkpoint(struct bg_task *t, const struct ckpt_ref *ref, struct store_checkpoint *ck);
/* On the pool (methods-data.c): the digest of dataset `name` now
 * (dscache_digest, with the task's store for the file digests it knows). */
int methods_digest(struct bg_task *t, struct daemon *d, const char *name, char out[DSCACHE_DIGEST_MAX]);

#endif
