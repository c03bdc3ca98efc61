/*
 * clip.h - gradient clipping by the total norm, as torch.nn.utils.clip_grad_norm_
 * (norm_type 2): the 2-norm of all the gradients together; when max_norm /
 * (norm + 1e-6) is below 1, every gradient is multiplied by it (float32, as
 * PyTorch's clip_coef_clamped).
 *
 * The norm is summed in double, in 8 lanes added in order: for up to 2^20
 * gradients by the owner alone; for more, each member of the job's team sums
 * the squares of its share of the flat gradient array (team_split: fixed by
 * the array's size and the team's), and the shares are added in member order.
 * So a given model and team size always give the same bits. (PyTorch sums in float32 per tensor,
 * then takes the norm of the norms; the two agree to float32 rounding.)
 * With the portable kernels (the _by functions, kernels portable) the sum is
 * pk_sumsq_f64_team's: 16 double lanes in blocks of PK_BLOCK, the blocks
 * added in order whichever member summed them, so the bits no longer depend
 * on the team size either (doc/portable.md).
 *
 * Thread: the job's owner thread (it drives the team).
 */
#ifndef TRAIND_CLIP_H
#define TRAIND_CLIP_H

#include <stddef.h>

#include "traind/kernels.h"
#include "traind/team.h"

/* The total 2-norm of g[0, n) (team may be NULL: one member). */
double clip_total_norm(struct team *team, const float *g, size_t n);

/* clip_grad_norm_'s coefficient for a norm: float32 (1 / (norm + 1e-6)) * max_norm
 * (PyTorch's max_norm / tensor is reciprocal() * max_norm). */
float clip_coef(double max_norm, double norm);

/* The norm of g, and, when max_norm > 0 and the coefficient is below 1, g
 * scaled by it (*coef gets the coefficient applied, 1 when none; may be NULL).
 * Returns the norm before clipping. */
double clip_grad_norm(struct team *team, float *g, size_t n, double max_norm, float *coef);

/* The same by a job's kernels: KERNELS_OPENBLAS is the two above; with
 * KERNELS_PORTABLE the norm is sqrt(pk_sumsq_f64_team(team, g, n)). */
double clip_total_norm_by(enum kernels_kind kernels, struct team *team, const float *g, size_t n);
double clip_grad_norm_by(enum kernels_kind kernels, struct team *team, float *g, size_t n,
			 double max_norm, float *coef);

#endif
