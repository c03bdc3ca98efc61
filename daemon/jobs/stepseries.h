/*
 * stepseries.h - the running training loss by step, kept for every job: a
 * bounded series of (epoch, step, loss) points in the store (migration
 * 0008), so that a step curve survives a reload of the dashboard and exists
 * for a finished job (io.traind.Steps reads it).
 *
 * DESIGN. The loop samples what the runs publish (job_progress_get: the
 * running mean loss of the epoch so far, at its step), the same snapshot
 * Watch streams, so any runner (a thread, MPI ranks) is covered without a
 * line in it. Every 25 ms, for each running job, a point is taken when the
 * job has moved at least `every` batches since the last one, or into a new
 * epoch: every = ceil(steps_per_epoch / P), with P points per epoch such
 * that P * epochs <= STEPSERIES_BUDGET (at least one per epoch), so a job
 * has about STEPSERIES_BUDGET points at most, STEPSERIES_CAP in any case
 * (a job faster than the sampling gets fewer: an MLP epoch of MNIST, 0.3 s
 * here, about a dozen).
 * Points wait in memory and go to the store thread in one small transaction
 * when 64 have gathered, 5 s after the last write, or when the job stops
 * training; a crash loses at most those, and a point lost or taken twice
 * does not matter: the loss at a position is a function of the job's
 * arithmetic, so one taken again after a restart is the same. The module
 * owns its per-job buffers (by job id; a job gone from the registry drops
 * its own) and its timer.
 *
 * main.c owns it (the daemon knows it only as its on_run_end hook, so the
 * jobs module need not include this one).
 *
 * Thread: loop thread only (the writes run on the store thread and own what
 * they write).
 */
#ifndef TRAIND_STEPSERIES_H
#define TRAIND_STEPSERIES_H

#define STEPSERIES_BUDGET 5000   /* points per job, spread over its epochs */
#define STEPSERIES_CAP 20000     /* points per job at most, whatever happens */

struct daemon;
struct job;
struct stepseries;

/* Start sampling the daemon's jobs (after daemon_start); 0 or -ENOMEM. */
int stepseries_new(struct stepseries **out, struct daemon *d);
/* j's run has ended (daemon_config.on_run_end: before the state it ended
 * in is written): its
 * last position, and every point of it still in memory, to the store
 * thread, ahead of that state: a client told the job stopped finds its
 * whole series. Accepts ss NULL. */
void stepseries_job_stopped(struct stepseries *ss, struct job *j);
/* Hand every point still in memory to the store thread: before
 * daemon_free, which stops it. */
void stepseries_flush_all(struct stepseries *ss);
/* Free it, after daemon_free (whose walk closed its timer with every
 * other handle). Accepts NULL. */
void stepseries_free(struct stepseries *ss);

#endif
