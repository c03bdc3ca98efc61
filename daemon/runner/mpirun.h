/*
 * mpirun.h - the MPI runner: a job with ranks > 1 as that many traind-rank
 * processes started by the MPI launcher of run_env (mpi_launcher,
 * mpi_args). See mpirun.c for how a run talks to its rank 0, runner.h for
 * what a run sees and how it reports.
 *
 * Thread: mpi_runner.start on the loop thread; the run on its own.
 */
#ifndef TRAIND_MPIRUN_H
#define TRAIND_MPIRUN_H

#include "daemon/runner/runner.h"

extern const struct runner_ops mpi_runner;

#endif
