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

#include <jansson.h>

#include "cli.h"

/* verbs-jobs.c */
int cmd_start(struct cli *cli);
int cmd_pause(struct cli *cli);
int cmd_resume(struct cli *cli);
int cmd_kill(struct cli *cli);
int cmd_rm(struct cli *cli);

/* start's configuration flags and --config file as Start's "config" (only
 * the keys given), with the file's name and keep; RC_OK or an exit code. */
int verbs_build_config(struct cli *cli, json_t **out, const char **name, const char **keep);

/* verbs-sweep.c */
int cmd_sweep(struct cli *cli);     /* sweep start|status|list|wait|kill */
/* Before the generic parser: a sweep's own flags (--param, --searcher,
 * --trials, --max-parallel, --seed, --metric) taken out of argv (argc
 * updated); RC_OK or RC_USAGE (line printed). */
int sweep_take_flags(int *argc, char **argv);
/* A key of a sweep's --config file that is the sweep's own (searcher,
 * params, trials, ...), not a configuration key. */
bool sweep_file_key(const char *key);

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
