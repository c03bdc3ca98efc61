/*
 * verbs.h - the handlers of trainctl's verbs, one per verb, grouped by kind:
 * verbs-jobs.c changes jobs (start, pause, resume, kill, rm), verbs-query.c
 * reads them (status, list, history, checkpoints, wait, watch), traind's
 * counters (counters) and what it computes on (info),
 * verbs-model.c uses a job's model (eval, export), verbs-plot.c draws
 * learning curves (plot), verbs-data.c the datasets (datasets, dataset
 * import, dataset rm).
 *
 * Each checks its flag values before connecting, makes its call(s) (rpc.h)
 * and prints the reply (render.h): human text by default, exactly one JSON
 * document with --json. Returns an exit code (msg.h); on failure exactly one
 * line on stderr and nothing on stdout (rm: a line per refused JOB).
 *
 * Thread: trainctl has one.
 */
#ifndef TRAIND_CLIENT_VERBS_H
#define TRAIND_CLIENT_VERBS_H

#include "cli.h"

/* verbs-jobs.c */
int cmd_start(struct cli *cli);
int cmd_pause(struct cli *cli);
int cmd_resume(struct cli *cli);
int cmd_kill(struct cli *cli);
int cmd_rm(struct cli *cli);

/* verbs-query.c */
int cmd_status(struct cli *cli);
int cmd_list(struct cli *cli);
int cmd_history(struct cli *cli);
int cmd_checkpoints(struct cli *cli);
int cmd_wait(struct cli *cli);
int cmd_watch(struct cli *cli);
int cmd_counters(struct cli *cli);
int cmd_info(struct cli *cli);

/* verbs-plot.c */
int cmd_plot(struct cli *cli);

/* verbs-model.c */
int cmd_eval(struct cli *cli);
int cmd_export(struct cli *cli);
int cmd_generate(struct cli *cli);  /* generate JOB --prompt TEXT --tokens N */

/* verbs-config.c */
int cmd_config(struct cli *cli);    /* config JOB: the job's configuration as YAML */

/* complete.c */
int cmd_complete(struct cli *cli);  /* __complete -- WORD...: the shell completion's candidates */

/* trainctl.c */
int cmd_help(struct cli *cli);      /* help [VERB] */

/* verbs-data.c */
int cmd_datasets(struct cli *cli);
int cmd_dataset(struct cli *cli);   /* import NAME PATH... [--replace], rm NAME */
int cmd_predict(struct cli *cli);   /* predict JOB FILE... */

#endif
