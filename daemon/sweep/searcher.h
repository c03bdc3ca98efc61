/*
 * searcher.h - a sweep's specification and its searchers: pure,
 * deterministic code with no I/O (doc/sweeps.md).
 *
 * A sweep is a space of parameters (configuration keys with a
 * distribution each), a searcher, a seed, a metric and the trials' shared
 * configuration. sweep_spec_parse checks it and names the field that is
 * wrong (err->key: "params.lr", "trials", "metric", ...);
 * sweep_spec_to_json gives its canonical form, which is what the store
 * keeps. sweep_trial_params gives trial t's parameters: a pure function of
 * (spec, t), so the same sweep makes the same trials on any machine state,
 * however often traind restarts.
 *
 * Searchers: grid (the cartesian product of choice() and int() values in
 * the order the parameters were given, the last one varying fastest) and
 * random (each parameter drawn from its distribution by a counter-based
 * generator keyed by (seed, trial, parameter), so no generator state
 * exists to be lost), and successive halving (sha: random trials trained
 * to the first rung's epochs, grace_epochs; at each rung, once every trial
 * in it has reported, the best 1/reduction_factor of them (at least one,
 * ties by trial number) go on to the next rung's epochs (x reduction_factor,
 * at most max_epochs), the rest stop there). sweep_decide gives every
 * decision from the trials' results in trial order: a pure function, so
 * the daemon needs no searcher state beyond what the store holds (the
 * trials' histories) and makes the same decisions after any restart and
 * whatever order the trials finished in. HyperBand runs successive halving
 * in brackets (Li et al.): bracket s (s_max ... 0, s_max the largest s
 * with grace * eta^s <= max_epochs) holds ceil((s_max + 1) eta^s / (s + 1))
 * trials starting at max_epochs / eta^s epochs; each bracket's rungs are
 * decided alone. PBT: see struct sweep_pbt_member below.
 *
 * Thread: any (no shared state).
 */
#ifndef TRAIND_SWEEP_SEARCHER_H
#define TRAIND_SWEEP_SEARCHER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "traind/error.h"
#include "traind/sched.h"

#define SWEEP_PARAMS_MAX 16
#define SWEEP_CHOICES_MAX 64
#define SWEEP_TRIALS_MAX 1000
#define SWEEP_KEY_MAX 40

#define SWEEP_RUNGS_MAX 16

enum sweep_searcher { SWEEP_GRID, SWEEP_RANDOM, SWEEP_SHA, SWEEP_HYPERBAND, SWEEP_PBT };

enum sweep_dist { DIST_CHOICE, DIST_UNIFORM, DIST_LOGUNIFORM, DIST_INT };

struct sweep_param {
	char key[SWEEP_KEY_MAX];     /* a configuration key (config.h) */
	enum sweep_dist dist;
	double lo, hi;               /* uniform, loguniform, int */
	json_t *choices;             /* choice: a JSON array of values, owned */
	char text[256];              /* as given: "loguniform(1e-4,1e-2)" */
};

struct sweep_spec {
	enum sweep_searcher searcher;
	struct sweep_param params[SWEEP_PARAMS_MAX];
	size_t nparams;
	uint32_t trials;
	uint64_t seed;
	enum monitor_kind metric;
	uint32_t max_parallel;       /* trials training at once (traind's --max-running caps it too) */
	/* sha */
	uint32_t grace_epochs, reduction_factor, max_epochs;   /* max_epochs: pbt's too */
	/* pbt: trials is the population */
	uint32_t interval;           /* epochs between exploits */
	double quantile;             /* (0, 0.5]: the bottom and top fraction */
	double perturb;              /* > 1: a numeric parameter x or / by it */
};

/* PBT (Jaderberg et al., 2017). A member is a trial; it trains in segments
 * of `interval` epochs, each an ordinary job that stops at the segment's
 * end (epoch k * interval, the last at max_epochs). Decision k (k >= 1) is
 * taken once every member not stopped has committed epoch k * interval:
 * the members are ranked by their metric there (missing and NaN last,
 * ties by trial number); the bottom q = max(1, floor(n * quantile)) each
 * exploit a top-q member drawn from the sweep's seed keyed by (k, trial):
 * a new job from that member's checkpoint at that epoch (start --from)
 * with its parameters perturbed (sweep_pbt_perturb); the others continue
 * their own job. */
struct sweep_pbt_member {
	bool stopped;                /* its job failed or was killed: not ranked */
	bool has;                    /* it reported at the decision's epoch */
	double metric;
};

struct sweep_pbt_choice {
	bool ranked;                 /* not stopped */
	bool exploit;
	uint32_t rank, of;           /* 1-based among the ranked */
	uint32_t source;             /* exploit: the top member it copies */
};

/* A trial's results as the searcher sees them: its metric at each rung's
 * epoch (has[k]: that epoch has committed), and whether it stopped on its
 * own (its job failed or was killed: it will not report more). */
struct sweep_result {
	bool has[SWEEP_RUNGS_MAX];
	double metric[SWEEP_RUNGS_MAX];
	bool stopped;
};

enum sweep_verdict {
	VERDICT_RUNNING,             /* in a rung not decided yet (or grid/random: its run) */
	VERDICT_STOPPED,             /* stopped at `rung` by the rung's decision */
	VERDICT_FINAL,               /* in the last rung: trains to max_epochs */
};

struct sweep_decision {
	uint32_t rung;               /* the highest rung it is in */
	uint32_t epochs;             /* that rung's epochs: what its job trains to */
	enum sweep_verdict verdict;
	uint32_t rank, of;           /* its place at the last rung decided for it (1-based), of how many */
};

const char *sweep_searcher_name(enum sweep_searcher s);

/* Parse and check a sweep (the SweepStart parameters' "searcher", "params"
 * (an array of "KEY=DIST" strings), "trials", "seed", "metric",
 * "max_parallel"). On failure -EINVAL with err->key naming the field and
 * nothing to free. */
int sweep_spec_parse(const json_t *in, struct sweep_spec *out, struct tr_err *err);
/* The canonical form (what sweep_spec_parse takes back to the same spec). */
json_t *sweep_spec_to_json(const struct sweep_spec *sp);
void sweep_spec_clear(struct sweep_spec *sp);

/* Trial t's parameters (t < sp->trials): a new JSON object {KEY: value},
 * in the order of the parameters; NULL when out of memory. */
json_t *sweep_trial_params(const struct sweep_spec *sp, uint32_t t);

/* sha or hyperband: a searcher that decides rungs. */
bool sweep_adaptive(const struct sweep_spec *sp);
/* Brackets: hyperband's s_max + 1, sha 1, else 0. Bracket b's trials are
 * consecutive trial numbers, the most exploratory bracket first. */
uint32_t sweep_brackets(const struct sweep_spec *sp);
uint32_t sweep_bracket_of(const struct sweep_spec *sp, uint32_t trial);
/* The rungs' epochs of bracket b (sha: grace, x reduction_factor, ...,
 * max_epochs; hyperband's bracket s: from max_epochs / eta^s) and of a
 * trial's bracket; their count (0: no rungs, grid and random). */
uint32_t sweep_bracket_rungs(const struct sweep_spec *sp, uint32_t b, uint32_t epochs[SWEEP_RUNGS_MAX]);
uint32_t sweep_trial_rungs(const struct sweep_spec *sp, uint32_t trial, uint32_t epochs[SWEEP_RUNGS_MAX]);
/* hyperband: the trials its brackets hold. */
uint32_t sweep_hyperband_trials(const struct sweep_spec *sp);
/* Every trial's decision (out[0..n)) from their results in trial order
 * (res[0..n); res[t].has[k]: the trial's rung k, of its bracket). A rung is decided only when each of its trials has reported
 * at its epoch or stopped; missing and NaN metrics rank last, ties by
 * trial number. Grid and random: every trial VERDICT_RUNNING, epochs 0. */
void sweep_decide(const struct sweep_spec *sp, const struct sweep_result *res, uint32_t n,
		  struct sweep_decision *out);

/* pbt: decision k's choices for the n members (out[0..n)), a pure
 * function of (spec, k, members). */
void sweep_pbt_decide(const struct sweep_spec *sp, uint32_t k, const struct sweep_pbt_member *m, uint32_t n,
		      struct sweep_pbt_choice *out);
/* pbt: the parameters of member `trial` exploiting at decision k, from
 * the source's (`from`, {KEY: value}): each uniform, loguniform or int
 * parameter x or / perturb (even odds), kept within its (lo, hi); each
 * choice() parameter drawn again from its values with probability 1/4,
 * else the source's. Keyed by (seed, k, trial): never by time. A new
 * object, NULL when out of memory. */
json_t *sweep_pbt_perturb(const struct sweep_spec *sp, uint32_t k, uint32_t trial, const json_t *from);
/* pbt: the epoch of decision k's boundary and the epochs segment k (after
 * decision k; 0: the first) trains to; the number of decisions (the
 * boundaries before max_epochs). */
uint32_t sweep_pbt_boundary(const struct sweep_spec *sp, uint32_t k);
uint32_t sweep_pbt_decisions(const struct sweep_spec *sp);
/* pbt: configuration keys a start --from with the full state cannot
 * change (methods-jobs.c's frozen keys): refused as PBT parameters. */
bool sweep_pbt_frozen_key(const char *key);

/* Whether a is a better value of the metric than b (ties: not better). */
bool sweep_metric_better(const struct sweep_spec *sp, double a, double b);

#endif
