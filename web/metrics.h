/*
 * metrics.h - /metrics: traind's state in Prometheus' text exposition
 * format (version 0.0.4), made from List, each job's History and, when
 * traind has it, io.traind.Counters.
 *
 *   traind_up                          1 if traind answered List, else 0
 *   traind_jobs{state}                 jobs per state (all six, 0 included)
 *   traind_job_epoch{job,name}         the last committed epoch
 *   traind_job_step, traind_job_samples_per_second,
 *   traind_job_val_loss, traind_job_val_acc (the latest epoch's),
 *   traind_job_best_val_loss           the lowest val_loss of its history
 *   traind_checkpoint_commit_seconds   histogram    } from Counters; left
 *   traind_epochs_committed_total,                  } out while traind has
 *   traind_jobs_failed_total,                       } no such method
 *   traind_client_errors_total                      } (MethodNotFound)
 *   traind_sweep_trials{sweep,name,state}  a sweep's trials per state } from
 *   traind_sweep_best_metric{sweep,name,metric}  its best trial's     } SweepList
 *
 * Thread: any connection thread.
 */
#ifndef TRAIND_WEB_METRICS_H
#define TRAIND_WEB_METRICS_H

#include <jansson.h>
#include <stdio.h>

#include "resp.h"

/* The exposition for traind at `socket` into *out (always 200: a traind
 * that does not answer is traind_up 0). */
void metrics_handle(const char *socket, struct web_resp *out);

/* The exposition from replies already read: `jobs` (List's array or NULL
 * when traind did not answer), `histories` (an object "ID" -> rows array;
 * may be NULL), `counters` (Counters' reply or NULL). Caller frees *text.
 * Pure; exposed for the fuzz harness and tests. 0 or -ENOMEM. */
int metrics_render(json_t *jobs, json_t *histories, json_t *counters, char **text, size_t *len);
/* The same with the sweeps (SweepList's array, or NULL: none). */
int metrics_render_sweeps(json_t *jobs, json_t *histories, json_t *counters, json_t *sweeps, char **text,
			  size_t *len);

/* Write `s` as a label value: backslash, double quote and newline escaped. */
void metrics_label(FILE *f, const char *s);

#endif
