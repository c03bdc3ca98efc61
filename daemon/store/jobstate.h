/*
 * jobstate.h - the states of a job, as one enum from the database to the
 * protocol. The state machine that moves a job between them is jobs.h's; the
 * store keeps them as the text of the jobs.state column (store.c maps them
 * at the SQL boundary, the schema's CHECK lists the same texts), and the
 * protocol spells them with job_state_name (jobs.h).
 *
 * Thread: any (constants only).
 */
#ifndef TRAIND_JOBSTATE_H
#define TRAIND_JOBSTATE_H

enum job_state {
	JOB_QUEUED,
	JOB_RUNNING,
	JOB_PAUSED,
	JOB_KILLED,
	JOB_FAILED,
	JOB_DONE,
};

#define JOB_STATE_COUNT (JOB_DONE + 1)

#endif
