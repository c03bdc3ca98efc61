/*
 * sweep.h - the sweep registry: which jobs are which sweep's trials, how
 * many of a sweep's trials may train at once, and killing a sweep
 * (doc/sweeps.md). The searchers themselves are searcher.h's, pure code.
 *
 * DESIGN. A sweep's trials are ordinary jobs, stored with the sweep in one
 * transaction (store_sweep_create) and queued in trial order; the jobs
 * module runs them like any job. This module is the jobs scheduler's gate
 * (sweeps_may_start, handed to the jobs module as jobs_config.may_start):
 * a trial starts only while fewer than its sweep's max_parallel trials run
 * and the sweep has not been killed. Everything it decides follows from
 * what the store holds (the sweep's row, its trials' jobs and their
 * committed states), so a restart, after a crash or not, rebuilds it with
 * sweeps_recover and goes on where the sweep was: the jobs module resumes
 * the trials that were running from their checkpoints, the gate holds the
 * rest back as before, and a sweep killed before the crash has its trials
 * still queued killed again by sweeps_start.
 *
 * Successive halving: the searcher decides a rung from the trials' metrics
 * at its epoch (sweeps_epoch keeps them, from each commit; sweeps_recover
 * reads them from the histories), never from the order they arrived in;
 * a promoted trial's own job goes on to the next rung's epochs through
 * jobs_resume (the daemon's resume --epochs). The decisions are a pure
 * function of durable data, so there is no searcher state to lose: a
 * promotion cut short by a crash (the job still done at the rung, its
 * epochs not raised, or raised and not yet queued) is made again by
 * sweeps_start.
 *
 * PBT: a member's job is its current segment's; sweeps_epoch keeps each
 * member's metric at its last segment boundary. Once every member not
 * stopped is done at the next boundary, the searcher decides
 * (sweep_pbt_decide); the exploits' jobs are built off the loop (pbt.h),
 * as background work charged to the uid that started the sweep (the
 * caller's struct sweeps_pool: daemon.c hands bgwork's per-uid shares, so
 * one user's sweeps wait their turn beside another's calls), then the decision, the new jobs and the members' new current
 * jobs are stored in one transaction (jobs_start_group with
 * store_pbt_record) and only then are the continuing members resumed to
 * the next boundary, so that a source checkpoint is never pushed out by
 * retention before the decision is durable (the lineage keeps it after).
 * A crash before the transaction takes the same decision again; after it,
 * sweeps_start makes the continuations again (idempotent).
 * An exploit whose job cannot be built (its source checkpoint gone or
 * unreadable, the perturbed parameters refused, the dataset changed) is
 * part of the decision all the same: the member continues in its own job
 * with its own parameters, its row a 'continue' that names the top member
 * it was to copy (from_trial, from_job: see store_pbt_row), so a rerun
 * from the same durable state makes the same decision, and `sweep status`
 * says why. Only a failure to store the decision, or no memory (building
 * or deciding), leaves it to be taken again at `sweep resume` or the next
 * start.
 *
 * Answers: the module's own codes (SWEEP_E_*), mapped to the protocol's
 * errors by proto/errors-map.c.
 *
 * Thread: the loop thread (sweeps_new and sweeps_recover also before the
 * loop runs, sweeps_free after it has stopped); pbt's exploits are built
 * on the pool the caller's sweeps_pool posts to, their results taken on
 * the loop.
 */
#ifndef TRAIND_SWEEP_H
#define TRAIND_SWEEP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "traind/error.h"
#include "daemon/data/dscache.h"
#include "daemon/jobs/jobs.h"
#include "daemon/store/store.h"
#include "daemon/store/storeq.h"
#include "daemon/sweep/searcher.h"

struct sweeps;

enum sweep_code {
	SWEEP_OK = 0,
	SWEEP_E_NO_SUCH = -1,          /* no sweep of that id: id */
	SWEEP_E_STORAGE = -2,          /* what had to be recorded could not be: message */
	SWEEP_E_INVALID_STATE = -3,    /* not in a state the verb acts on: id, state, message */
};

/* A caller waiting for a verb's answer (the caller's memory). */
struct sweep_done {
	void (*fn)(struct sweep_done *done);
	int code;                      /* SWEEP_OK or a SWEEP_E_* */
	int64_t id;
	char state[16];                /* the sweep's state: the new one, or (refused) its own */
	char message[TR_ERR_MSG_MAX];
};

/* Where pbt's exploits are built: post(arg, uid, work, done, data) runs
 * work(data) off the loop as uid's background work, then done(data) on the
 * loop; < 0 when it cannot be queued (then neither runs). The caller's
 * (daemon.c: bg_post), alive while the sweeps are. */
struct sweeps_pool {
	int (*post)(void *arg, uid_t uid, void (*work)(void *data), void (*done)(void *data), void *data);
	void *arg;
};

/* pool: where pbt builds its exploits' jobs, reading db_path and the
 * datasets through dsc (the caller's, alive while sw is). */
int sweeps_new(struct sweeps **out, struct jobs *js, const struct sweeps_pool *pool, struct dscache *dsc,
	       const char *db_path);
/* The store thread, once it runs. */
void sweeps_set_store(struct sweeps *sw, struct storeq *sq);
/* Load every sweep and its trials' job ids (before the loop runs). */
int sweeps_recover(struct sweeps *sw, struct store *s, struct tr_err *err);
/* After jobs_start: a killed sweep's trials left queued are killed. */
void sweeps_start(struct sweeps *sw);
void sweeps_free(struct sweeps *sw);

/* A sweep just stored (store_sweep_create) with its spec (the sweeps.spec
 * JSON): its trials' jobs job_ids[0..n) in trial order; register it before
 * the jobs module schedules them. The spec's "uid" (the uid that started
 * it) is whose share its background work takes; a sweep stored without
 * one (before it was kept) is the daemon's own uid's. */
int sweeps_add(struct sweeps *sw, int64_t id, const char *spec_json, const int64_t *job_ids, size_t n);
/* An epoch of j committed (jobs_config.on_epoch): a trial's metric at a
 * rung. */
void sweeps_epoch(struct sweeps *sw, const struct job *j, const struct history_row *row);
/* A job's committed state changed (jobs_config.on_change): decide the rungs
 * whose trials have all reported, and continue the promoted trials' jobs
 * (jobs_resume with the rung's epochs). */
void sweeps_changed(struct sweeps *sw);
/* The scheduler's gate (jobs_config.may_start): may this queued job start
 * now? Any job of no sweep may. */
bool sweeps_may_start(struct sweeps *sw, const struct job *j);
/* Whether the sweep exists in the registry. */
bool sweeps_exists(struct sweeps *sw, int64_t id);
/* The verbs. Each records the sweep's new state (durable), then acts on
 * its trials' jobs, then done->fn runs; a refusal (SWEEP_E_*) is returned
 * at once with done filled in, else 1. From the call on no trial starts
 * (kill, pause, rm) or trials may start again (resume).
 * Kill: every trial queued or running is killed. Pause: every trial
 * queued or running is paused (a running one checkpoints its exact
 * position); no rung is decided while paused. Resume: the paused trials
 * are resumed and the rungs decided. Remove: the sweep's rows, then every
 * trial's job as Delete removes it (a queued or running one killed first;
 * refused without force while any is); a crash in between leaves those
 * jobs as ordinary jobs. */
int sweeps_kill(struct sweeps *sw, int64_t id, struct sweep_done *done);
int sweeps_pause(struct sweeps *sw, int64_t id, struct sweep_done *done);
int sweeps_resume(struct sweeps *sw, int64_t id, struct sweep_done *done);
int sweeps_remove(struct sweeps *sw, int64_t id, bool force, struct sweep_done *done);

#endif
