/*
 * bench-clip.c - what --clip-grad-norm costs per optimizer step: the total
 * norm (and the scaling) over a model's gradient array, on teams of 1 and 2,
 * for the lesson's MLP (203530 parameters) and a 4M-parameter model.
 *   build/bench/bench-clip
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "traind/clip.h"
#include "traind/team.h"

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(void)
{
	const size_t sizes[] = { 203530, 4u << 20 };

	for (size_t s = 0; s < 2; s++) {
		size_t n = sizes[s];
		float *g = malloc(n * sizeof(float));

		if (!g)
			return 1;
		for (size_t i = 0; i < n; i++)
			g[i] = (float)((int)(i % 97) - 48) * 1e-3f;
		for (unsigned th = 1; th <= 2; th++) {
			struct team *t = NULL;
			double best[2] = { 1e9, 1e9 };
			double norm = clip_total_norm(NULL, g, n);

			if (team_new(&t, th) < 0)
				return 1;
			for (int r = 0; r < 5; r++) {
				for (int clip = 0; clip < 2; clip++) {
					/* max_norm 1e9: the norm only; just below the norm: the
					 * norm and the scaling (by ~0.999, so 50 rounds stay normal) */
					double t0 = now(), dt;

					for (int k = 0; k < 50; k++)
						clip_grad_norm(t, g, n, clip ? norm * 0.999 : 1e9, NULL);
					dt = (now() - t0) / 50;
					best[clip] = dt < best[clip] ? dt : best[clip];
					for (size_t i = 0; clip && i < n; i++)   /* undo the scaling */
						g[i] = (float)((int)(i % 97) - 48) * 1e-3f;
				}
			}
			printf("%8zu gradients, %u thread%s: norm %.1f us, norm + scale %.1f us per step\n", n, th,
			       th == 1 ? " " : "s", best[0] * 1e6, best[1] * 1e6);
			team_free(t);
		}
		free(g);
	}
	return 0;
}
