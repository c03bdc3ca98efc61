/*
 * clip.c - clip_grad_norm_. See include/traind/clip.h.
 */
#include "traind/clip.h"

#include <math.h>

#include "engine/core/hot.h"
#include "traind/kernels.h"
#include "traind/portable.h"

#define CLIP_ALIGN 1024   /* shares of whole 4 KiB blocks */

struct clip_job {
	const float *g;
	float *gw;              /* scaling: the array to scale */
	size_t n;
	float coef;
	double part[32];        /* one partial sum per member (CFG_MAX_THREADS <= 32) */
};

/* Squares of g[lo, hi) summed in double in 8 lanes (element lo + 8k + l
 * into lane l), the lanes then added in order: a fixed order, and no chain of
 * dependent additions through the whole range. */
HOT_CLONES
static double sum_squares_range(const float *restrict g, size_t lo, size_t hi)
{
	double acc[8] = { 0 };
	double s = 0.0;
	size_t i = lo;

	for (; i + 8 <= hi; i += 8)
		for (int l = 0; l < 8; l++)
			acc[l] += (double)g[i + l] * (double)g[i + l];
	for (int l = 0; i < hi; i++, l++)
		acc[l] += (double)g[i] * (double)g[i];
	for (int l = 0; l < 8; l++)
		s += acc[l];
	return s;
}

static void sum_squares(void *arg, unsigned idx, unsigned nm)
{
	struct clip_job *j = arg;
	size_t lo, hi;

	team_split(j->n, idx, nm, CLIP_ALIGN, &lo, &hi);
	j->part[idx] = sum_squares_range(j->g, lo, hi);
}

static void scale(void *arg, unsigned idx, unsigned nm)
{
	struct clip_job *j = arg;
	size_t lo, hi;

	team_split(j->n, idx, nm, CLIP_ALIGN, &lo, &hi);
	for (size_t i = lo; i < hi; i++)
		j->gw[i] *= j->coef;
}

/* Below this many gradients one thread is faster than waking the team. */
#define CLIP_SPLIT_MIN ((size_t)1 << 20)

static void run(struct team *team, team_fn fn, struct clip_job *j)
{
	if (team && team_size(team) > 1 && j->n >= CLIP_SPLIT_MIN)
		team_run(team, fn, j);
	else
		fn(j, 0, 1);
}

double clip_total_norm(struct team *team, const float *g, size_t n)
{
	struct clip_job j = { .g = g, .n = n };
	unsigned members = team && team_size(team) > 1 && n >= CLIP_SPLIT_MIN ? team_size(team) : 1;
	double s = 0.0;

	run(team, sum_squares, &j);
	for (unsigned i = 0; i < members; i++)
		s += j.part[i];
	return sqrt(s);
}

float clip_coef(double max_norm, double norm)
{
	/* total_norm (float32) + 1e-6, then max_norm / that as PyTorch's
	 * Tensor.__rtruediv__ computes it: reciprocal() * max_norm, in float32. */
	float denom = (float)norm + 1e-6f;
	float recip = 1.0f / denom;

	return recip * (float)max_norm;
}

double clip_total_norm_by(enum kernels_kind kernels, struct team *team, const float *g, size_t n)
{
	if (kernels == KERNELS_PORTABLE)
		return sqrt(pk_sumsq_f64_team(team, g, n));
	return clip_total_norm(team, g, n);
}

double clip_grad_norm(struct team *team, float *g, size_t n, double max_norm, float *coef)
{
	return clip_grad_norm_by(KERNELS_OPENBLAS, team, g, n, max_norm, coef);
}

double clip_grad_norm_by(enum kernels_kind kernels, struct team *team, float *g, size_t n,
			 double max_norm, float *coef)
{
	double norm = clip_total_norm_by(kernels, team, g, n);
	float c = 1.0f;

	if (max_norm > 0) {
		c = clip_coef(max_norm, norm);
		if (c < 1.0f) {
			struct clip_job j = { .g = g, .gw = g, .n = n, .coef = c };

			run(team, scale, &j);
		} else {
			c = 1.0f;
		}
	}
	if (coef)
		*coef = c;
	return norm;
}
