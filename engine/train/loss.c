/*
 * loss.c - the training losses and their gradients. See include/traind/loss.h.
 *
 * Each loss follows the expressions of ATen 1.13 (LossNLL.cpp, Loss.cpp), so
 * its value and gradient agree with torch.nn.functional's within float
 * rounding (tests/torch/test_losses.py): per element in float, the batch sum
 * in double. cross_entropy without smoothing and weights keeps
 * k_softmax_xent's exact arithmetic (the bits of every stored job).
 *
 * A portable job (kernels portable, doc/portable.md) computes the same
 * expressions with traind's own exp and log (portable.h) and its rows'
 * maxima and sums of exponentials in the 16 lanes of pk_max and pk_sum, so
 * no libm function decides a bit; mse, l1 and huber use IEEE operations
 * only and are the same code for both kernels. The batch sum is a chain
 * over the rows in order, in double, for every loss.
 */
#include "traind/loss.h"

#include "traind/dataset.h"
#include "traind/portable.h"

#include <errno.h>
#include <math.h>
#include <string.h>

static const char *const names[] = {
	[LOSS_CROSS_ENTROPY] = "cross_entropy",
	[LOSS_MSE] = "mse",
	[LOSS_L1] = "l1",
	[LOSS_HUBER] = "huber",
	[LOSS_BCE_WITH_LOGITS] = "bce_with_logits",
};

const char *loss_name(enum loss_kind k)
{
	return (size_t)k < sizeof(names) / sizeof(names[0]) ? names[k] : "?";
}

int loss_parse(const char *s, enum loss_kind *out)
{
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(s, names[i]) == 0) {
			*out = (enum loss_kind)i;
			return 0;
		}
	return -EINVAL;
}

enum loss_task loss_task_of(enum loss_kind k)
{
	switch (k) {
	case LOSS_CROSS_ENTROPY: return TASK_CLASSIFICATION;
	case LOSS_BCE_WITH_LOGITS: return TASK_MULTILABEL;
	default: return TASK_REGRESSION;
	}
}

const char *loss_task_name(enum loss_task t)
{
	switch (t) {
	case TASK_CLASSIFICATION: return "classification";
	case TASK_REGRESSION: return "regression";
	case TASK_MULTILABEL: return "multi-label";
	case TASK_TOKENS: return "per-token";
	}
	return "?";
}

struct loss_targets loss_targets_at(const struct loss_targets *y, size_t rows, uint32_t w)
{
	struct loss_targets r = {
		.classes = y->classes ? y->classes + rows : NULL,
		.values = y->values ? y->values + rows * w : NULL,
	};

	return r;
}

double loss_norm(const struct loss *l, const struct loss_targets *y, size_t n)
{
	double w = 0.0;

	if (l->kind != LOSS_CROSS_ENTROPY)
		return (double)n * l->width;
	if (!l->class_weights)
		return (double)n;
	for (size_t i = 0; i < n; i++)
		w += l->class_weights[y->classes[i]];
	return w;
}

/* The plain softmax cross-entropy, as k_softmax_xent (the same operations
 * in the same order: these are the bits of every stored job). */
static double xent_plain(const float *logits, const uint32_t *y, size_t m, size_t k,
			 float grad_scale, float *dlogits)
{
	double loss = 0.0;

	for (size_t i = 0; i < m; i++) {
		const float *z = logits + i * k;
		float mx = z[0];
		float sum = 0.0f;
		float lse;

		for (size_t j = 1; j < k; j++)
			if (z[j] > mx)
				mx = z[j];
		for (size_t j = 0; j < k; j++)
			sum += expf(z[j] - mx);
		lse = logf(sum);
		loss += (double)(lse - (z[y[i]] - mx));
		if (dlogits) {
			float *d = dlogits + i * k;

			for (size_t j = 0; j < k; j++) {
				float p = expf(z[j] - mx) / sum;

				d[j] = (p - (j == y[i] ? 1.0f : 0.0f)) * grad_scale;
			}
		}
	}
	return loss;
}

/* With label smoothing s and class weights w (1 each when NULL): a sample's
 * term is (1 - s) w[y] (-log p[y]) + s/C sum_c w[c] (-log p[c]); its
 * gradient (1 - s) w[y] (p - onehot(y)) + s/C (sum_c w[c] p - w). */
static double xent_general(const struct loss *l, const float *logits, const uint32_t *y, size_t m,
			   float grad_scale, float *dlogits)
{
	size_t k = l->width;
	const float *w = l->class_weights;
	float s = l->label_smoothing, sc = s / (float)k, sw = 0.0f;
	double loss = 0.0;

	for (size_t j = 0; j < k; j++)
		sw += w ? w[j] : 1.0f;
	for (size_t i = 0; i < m; i++) {
		const float *z = logits + i * k;
		float mx = z[0], sum = 0.0f, lse, wy = w ? w[y[i]] : 1.0f, smooth = 0.0f;

		for (size_t j = 1; j < k; j++)
			if (z[j] > mx)
				mx = z[j];
		for (size_t j = 0; j < k; j++)
			sum += expf(z[j] - mx);
		lse = logf(sum);
		for (size_t j = 0; j < k; j++)
			smooth += (w ? w[j] : 1.0f) * (lse - (z[j] - mx));
		loss += (double)((1.0f - s) * wy * (lse - (z[y[i]] - mx))) + (double)(sc * smooth);
		if (dlogits) {
			float *d = dlogits + i * k;

			for (size_t j = 0; j < k; j++) {
				float p = expf(z[j] - mx) / sum;

				d[j] = ((1.0f - s) * wy * (p - (j == y[i] ? 1.0f : 0.0f)) +
					sc * (sw * p - (w ? w[j] : 1.0f))) * grad_scale;
			}
		}
	}
	return loss;
}

/* xent_general with the portable kernels: per row, mx = pk_max(z),
 * e_j = pk_exp(z_j - mx), sum = pk_sum(e), lse = pk_log(sum); the smoothing
 * term's sum over the classes a chain in order; then xent_general's
 * expressions, with p_j = e_j / sum. */
static double xent_general_pk(const struct loss *l, const float *logits, const uint32_t *y,
			      size_t m, float grad_scale, float *dlogits)
{
	size_t k = l->width;
	const float *w = l->class_weights;
	float s = l->label_smoothing, sc = s / (float)k, sw = 0.0f, e[DATASET_MAX_CLASSES];
	double loss = 0.0;

	for (size_t j = 0; j < k; j++)
		sw += w ? w[j] : 1.0f;
	for (size_t i = 0; i < m; i++) {
		const float *z = logits + i * k;
		float mx = pk_max(z, k), sum, lse, wy = w ? w[y[i]] : 1.0f, smooth = 0.0f;

		for (size_t j = 0; j < k; j++)
			e[j] = z[j] - mx;
		pk_exp(e, e, k);
		sum = pk_sum(e, k);
		lse = pk_logf(sum);
		for (size_t j = 0; j < k; j++)
			smooth += (w ? w[j] : 1.0f) * (lse - (z[j] - mx));
		loss += (double)((1.0f - s) * wy * (lse - (z[y[i]] - mx))) + (double)(sc * smooth);
		if (dlogits) {
			float *d = dlogits + i * k;

			for (size_t j = 0; j < k; j++) {
				float p = e[j] / sum;

				d[j] = ((1.0f - s) * wy * (p - (j == y[i] ? 1.0f : 0.0f)) +
					sc * (sw * p - (w ? w[j] : 1.0f))) * grad_scale;
			}
		}
	}
	return loss;
}

/* F.mse_loss: (x - t)^2; backward (2 / numel) (x - t). */
static double mse(const float *x, const float *t, size_t n, double norm, float *d)
{
	float scale = (float)(2.0 / norm);
	double loss = 0.0;

	for (size_t e = 0; e < n; e++) {
		float diff = x[e] - t[e];

		loss += (double)(diff * diff);
		if (d)
			d[e] = scale * diff;
	}
	return loss;
}

/* F.l1_loss: |x - t|; backward sgn(x - t) / numel (sgn 0 at 0). */
static double l1(const float *x, const float *t, size_t n, double norm, float *d)
{
	float scale = 1.0f / (float)norm;
	double loss = 0.0;

	for (size_t e = 0; e < n; e++) {
		float diff = x[e] - t[e];

		loss += (double)fabsf(diff);
		if (d)
			d[e] = (diff > 0.0f ? 1.0f : diff < 0.0f ? -1.0f : 0.0f) * scale;
	}
	return loss;
}

/* F.huber_loss(delta): |x - t| < delta ? (x - t)^2 / 2 : delta (|x - t| - delta / 2);
 * backward (1 / numel) times -delta, delta or x - t by where x - t lies. */
static double huber(const float *x, const float *t, size_t n, float delta, double norm, float *d)
{
	float scale = (float)(1.0 / norm);
	double loss = 0.0;

	for (size_t e = 0; e < n; e++) {
		float diff = x[e] - t[e], ad = fabsf(diff);

		loss += (double)(ad < delta ? 0.5f * diff * diff : delta * (ad - 0.5f * delta));
		if (d)
			d[e] = diff < -delta ? -scale * delta : diff > delta ? scale * delta : scale * diff;
	}
	return loss;
}

/* The exp and log a loss's transcendental terms use: libm's for an openblas
 * job, traind's own (pk_expf, pk_logf) for a portable one. */
struct loss_math {
	float (*exp)(float);
	float (*log)(float);
};

static const struct loss_math libm_math = { expf, logf };
static const struct loss_math portable_math = { pk_expf, pk_logf };

/* F.binary_cross_entropy_with_logits(pos_weight): with m = max(-x, 0) and
 * lw = (pw - 1) t + 1, (1 - t) x + lw (log(e^-m + e^(-x-m)) + m); backward
 * ((pw t + 1 - t) sigmoid(x) - pw t) / numel. The same expressions for both
 * kernels; only the exp and log differ (fm). */
static double bce(const struct loss_math *fm, const float *x, const float *t, size_t rows,
		  uint32_t w, const float *pw, double norm, float *d)
{
	float numel = (float)norm;
	double loss = 0.0;

	for (size_t i = 0; i < rows; i++) {
		for (uint32_t c = 0; c < w; c++) {
			size_t e = i * w + c;
			float z = x[e], y = t[e], mv = -z > 0.0f ? -z : 0.0f;
			float sp = fm->log(fm->exp(-mv) + fm->exp(-z - mv)) + mv;
			float sig = 1.0f / (1.0f + fm->exp(-z));

			if (pw) {
				float lw = (pw[c] - 1.0f) * y + 1.0f, pt = pw[c] * y;

				loss += (double)((1.0f - y) * z + lw * sp);
				if (d)
					d[e] = ((pt + 1.0f - y) * sig - pt) / numel;
			} else {
				loss += (double)((1.0f - y) * z + sp);
				if (d)
					d[e] = (sig - y) / numel;
			}
		}
	}
	return loss;
}

double loss_batch(const struct loss *l, const float *out, const struct loss_targets *y, size_t m,
		  double norm, float *dout)
{
	size_t n = m * l->width;

	switch (l->kind) {
	case LOSS_CROSS_ENTROPY:
		if (l->label_smoothing == 0.0f && !l->class_weights)
			return l->kernels == KERNELS_PORTABLE
				? pk_softmax_xent(out, y->classes, m, l->width, 1.0f / (float)norm, dout, NULL)
				: xent_plain(out, y->classes, m, l->width, 1.0f / (float)norm, dout);
		if (l->kernels == KERNELS_PORTABLE)
			return xent_general_pk(l, out, y->classes, m, (float)(1.0 / norm), dout);
		return xent_general(l, out, y->classes, m, (float)(1.0 / norm), dout);
	case LOSS_MSE:
		return mse(out, y->values, n, norm, dout);
	case LOSS_L1:
		return l1(out, y->values, n, norm, dout);
	case LOSS_HUBER:
		return huber(out, y->values, n, l->delta, norm, dout);
	case LOSS_BCE_WITH_LOGITS:
		if (l->kernels == KERNELS_PORTABLE)
			return bce(&portable_math, out, y->values, m, l->width, l->pos_weight, norm, dout);
		return bce(&libm_math, out, y->values, m, l->width, l->pos_weight, norm, dout);
	}
	return 0.0;
}
