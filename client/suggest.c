/*
 * suggest.c - "did you mean" (see suggest.h).
 */
#include "suggest.h"

#include <string.h>

#define MAXLEN 64

int suggest_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	int d[MAXLEN + 1][MAXLEN + 1];

	if (la > MAXLEN || lb > MAXLEN)
		return MAXLEN;
	for (size_t i = 0; i <= la; i++)
		d[i][0] = (int)i;
	for (size_t j = 0; j <= lb; j++)
		d[0][j] = (int)j;
	for (size_t i = 1; i <= la; i++) {
		for (size_t j = 1; j <= lb; j++) {
			int cost = a[i - 1] != b[j - 1];
			int v = d[i - 1][j] + 1;

			if (d[i][j - 1] + 1 < v)
				v = d[i][j - 1] + 1;
			if (d[i - 1][j - 1] + cost < v)
				v = d[i - 1][j - 1] + cost;
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1 < v)
				v = d[i - 2][j - 2] + 1;
			d[i][j] = v;
		}
	}
	return d[la][lb];
}

const char *suggest_closest(const char *word, const char *const *cands, size_t n)
{
	size_t len = strlen(word);
	const char *best = NULL, *prefixed = NULL;
	int best_d = 3, nprefixed = 0;

	if (len == 0)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		int dist;

		if (!cands[i] || strcmp(cands[i], word) == 0)
			continue;
		dist = suggest_distance(word, cands[i]);
		if (dist < best_d && (size_t)dist < len) {
			best_d = dist;
			best = cands[i];
		}
		if (len >= 3 && strncmp(cands[i], word, len) == 0) {
			prefixed = cands[i];
			nprefixed++;
		}
	}
	if (best)
		return best;
	return nprefixed == 1 ? prefixed : NULL;
}
