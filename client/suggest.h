/*
 * suggest.h - "did you mean": the closest of a list of words to one that
 * was not recognised (a verb, a flag, a dataset name, a configuration key).
 *
 * Closeness is the optimal string alignment distance (insertions, deletions,
 * substitutions and swaps of two neighbours each count 1: "strat" is 1 from
 * "start", "mnsit" 1 from "mnist"); a word that starts the candidate
 * ("batch" for "batch-size") is close too. Only a near candidate is offered,
 * never a guess: at most 2 edits, and fewer than the word has letters.
 *
 * Thread: pure functions; any thread.
 */
#ifndef TRAIND_CLIENT_SUGGEST_H
#define TRAIND_CLIENT_SUGGEST_H

#include <stddef.h>

/* The distance between a and b (capped at 64: longer words are not compared
 * letter by letter). */
int suggest_distance(const char *a, const char *b);

/* The candidate closest to `word` among cands[0, n) (NULL entries skipped),
 * or NULL when none is near enough. */
const char *suggest_closest(const char *word, const char *const *cands, size_t n);

#endif
