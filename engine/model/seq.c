/*
 * seq.c - the layers of sequences. See engine/model/seq.h and
 * doc/sequences.md.
 *
 * Every buffer here is "planar": a layer's saved state is a list of
 * per-sample blocks, each block a (max_batch, size) array of its own
 * (struct carve), so one block of the member's samples [r0, r1) is
 * contiguous and a matrix product covers them all at once: rows (r0*T ..
 * r1*T) of (batch*T, width).
 *
 * The arithmetic follows PyTorch 1.13's CPU modules (the order of the
 * products and sums is BLAS's and ours, within float rounding of PyTorch's):
 *   LSTM   gates = x W_ih^T + b_ih + h W_hh^T + b_hh, packed i, f, g, o;
 *          c = f c' + i g, h = o tanh(c)
 *   GRU    r, z from x W_ih^T + b_ih + h W_hh^T + b_hh; n = tanh(x W_in^T +
 *          b_in + r (h W_hn^T + b_hn)) (the reset gate after b_hn);
 *          h = (h' - n) z + n (ATen's form of (1 - z) n + z h')
 *   LayerNorm  (x - mean) / sqrt(var + 1e-5) w + b over the last axis,
 *          the biased variance (mean and variance in double)
 *   MultiheadAttention  q, k, v = x W_in^T + b_in (packed); per head
 *          softmax(q k^T / sqrt(d) + mask) v, the causal mask -inf above
 *          the diagonal; dropout on the weights; out = o W_out^T + b_out
 *   TransformerEncoderLayer  post-LN: y = LN2(r + drop2(ff(r))), r =
 *          LN1(x + drop1(sa(x))); norm_first: r = x + drop1(sa(LN1(x))),
 *          y = r + drop2(ff(LN2(r))); ff(x) = W2 drop(relu(W1 x + b1)) + b2
 * The backward passes are these expressions' derivatives; backpropagation
 * through time runs over the whole window (the state starts at zero in
 * every sample and carries nothing across batches).
 */
#include "engine/model/seq.h"

#include <math.h>
#include <string.h>

#include "traind/kernels.h"
#include "traind/portable.h"
#include "traind/rng.h"
#include "engine/core/hot.h"
#include "engine/core/vmath.h"

#define LN_EPS 1e-5

/* Per-sample blocks of a planar buffer, taken in order. */
struct carve {
	float *base;
	size_t mb;           /* rows of every block: the net's max_batch */
	size_t at;           /* floats per sample taken so far */
};

static float *take(struct carve *c, size_t per_sample)
{
	float *p = c->base ? c->base + c->at * c->mb : NULL;

	c->at += per_sample;
	return p;
}

/* The dropout stream (as net.c's dropout layer: element g of the step's
 * masks of stream `stream` = node | sub << 8), 0 or 1/(1-p) each. */
static void drop_mask(const struct seq_ctx *n, uint64_t step, uint32_t stream, uint64_t g0, size_t len,
		      double p, float *mask)
{
	uint64_t threshold = (uint64_t)ldexp(1.0 - p, 32);
	float scale = (float)(1.0 / (1.0 - p));
	uint32_t k[2] = { (uint32_t)n->key, (uint32_t)(n->key >> 32) };
	uint32_t words[4];

	for (size_t e = 0; e < len; e++) {
		uint64_t g = g0 + e;

		if (e == 0 || (g & 3) == 0) {
			uint64_t block = g >> 2;
			uint32_t ctr[4] = { (uint32_t)block, (uint32_t)(block >> 32) ^ (stream << 16),
					    (uint32_t)step, (uint32_t)(step >> 32) };

			philox4x32(ctr, k, words);
		}
		mask[e] = words[g & 3] < threshold ? scale : 0.0f;
	}
}

/* d[j] += sum over the m rows of a (ld) of a[i][j], j < w, rows in order. */
static void colsum_add(float *d, const float *a, size_t ld, size_t m, size_t w)
{
	for (size_t i = 0; i < m; i++)
		for (size_t j = 0; j < w; j++)
			d[j] += a[i * ld + j];
}

/* A product over the member's rows of positions (a projection, the
 * feed-forward block, their gradients): the job's kernels, or with
 * seq_kernels 3 and precision bf16 the member's bf16 mode (l->mode). The
 * per-head products of the attention and the recurrences' stay float32
 * (k_gemm_by). */
static void prod(const struct seq_ctx *l, int ta, int tb, size_t m, size_t n, size_t k, float alpha,
		 const float *a, size_t lda, const float *b, size_t ldb, float beta, float *c, size_t ldc)
{
	k_gemm_job(l->kernels, l->mode, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

/* A weight's gradient over the member's rows: dw (m, n) += a^T b, a (k, m)
 * (lda), b (k, n) (ldb), k the rows. In bf16 (l->mode) k runs in chunks of
 * WG_ROWS rows, each chunk's product added to dw in chunk order: one call
 * over all the rows would re-pack a (k, m) for every 16 to 32 columns of
 * the result (bf16.c's panels shrink with k); float32 is one call. */
#define WG_ROWS 1024

static void prod_wgrad(const struct seq_ctx *l, size_t m, size_t n, size_t k, const float *a, size_t lda,
		       const float *b, size_t ldb, float *dw, size_t ldw)
{
	if (!l->mode || l->mode->prec != K_BF16) {
		prod(l, 1, 0, m, n, k, 1.0f, a, lda, b, ldb, 1.0f, dw, ldw);
		return;
	}
	for (size_t k0 = 0; k0 < k; k0 += WG_ROWS)
		prod(l, 1, 0, m, n, k - k0 < WG_ROWS ? k - k0 : WG_ROWS, 1.0f, a + k0 * lda, lda, b + k0 * ldb, ldb,
		     1.0f, dw, ldw);
}

/* Rows y (m, w) = b (the bias) + x (m, k) W^T, W (w, k). */
static void linear_rows(const struct seq_ctx *l, float *y, const float *x, const float *w, const float *b,
			size_t m, size_t k, size_t width)
{
	k_fill_rows(y, width, m, 0, width, b);
	prod(l, 0, 1, m, width, k, 1.0f, x, k, w, k, 1.0f, y, width);
}

/* ---- layer norm -------------------------------------------------------- */

#define SLANES 16  /* seq_kernels 2's float32 lanes */
#define LANES 8   /* partial sums of a row, added in lane order: vectorised, in a fixed order */

/* The sum of a[j] (sq: of (a[j] - shift)^2), j < n, in double. */
static inline double dsum(const float *restrict a, double shift, bool sq, size_t n)
{
	double acc[LANES] = { 0 }, s = 0.0;
	size_t j = 0;

	for (; j + LANES <= n; j += LANES)
		for (size_t k = 0; k < LANES; k++) {
			double v = (double)a[j + k] - shift;

			acc[k] += sq ? v * v : v;
		}
	for (size_t k = 0; k < LANES; k++)
		s += acc[k];
	for (; j < n; j++) {
		double v = (double)a[j] - shift;

		s += sq ? v * v : v;
	}
	return s;
}

/* The sum of a[j] (sq: of (a[j] - shift)^2), j < n, in float32 lanes
 * (seq_kernels 2). */
static inline float fsum(const float *restrict a, float shift, bool sq, size_t n)
{
	float acc[SLANES] = { 0 }, s = 0.0f;
	size_t j = 0;

	for (; j + SLANES <= n; j += SLANES)
		for (size_t k = 0; k < SLANES; k++) {
			float v = a[j + k] - shift;

			acc[k] += sq ? v * v : v;
		}
	for (size_t k = 0; k < SLANES; k++)
		s += acc[k];
	for (; j < n; j++) {
		float v = a[j] - shift;

		s += sq ? v * v : v;
	}
	return s;
}

/* v2: the mean and variance in float32 lanes; else in double. */
HOT_CLONES
static void ln_forward(bool v2, const float *x, float *y, const float *w, const float *b, float *stats,
		       size_t rows, size_t E)
{
	for (size_t r = 0; r < rows; r++) {
		const float *xr = x + r * E;
		float *yr = y + r * E;
		float m, rs;

		if (v2) {
			float var;

			m = fsum(xr, 0.0f, false, E) / (float)E;
			var = fsum(xr, m, true, E) / (float)E;
			rs = 1.0f / sqrtf(var + (float)LN_EPS);
		} else {
			double mean = dsum(xr, 0.0, false, E) / (double)E;
			double var = dsum(xr, mean, true, E) / (double)E;

			m = (float)mean;
			rs = (float)(1.0 / sqrt(var + LN_EPS));
		}
		stats[2 * r] = m;
		stats[2 * r + 1] = rs;
		for (size_t j = 0; j < E; j++)
			yr[j] = (xr[j] - m) * rs * w[j] + b[j];
	}
}

/* dx (may be NULL) = base + the layer norm's gradient at x from dy (base
 * NULL: without it; base may be dx itself); dw, db accumulated. v2: the
 * row sums in float32 lanes; else in double. */
HOT_CLONES
static void ln_backward(bool v2, const float *dy, const float *x, const float *w, const float *stats,
			float *dx, const float *base, float *dw, float *db, size_t rows, size_t E)
{
	for (size_t r = 0; r < rows; r++) {
		const float *dyr = dy + r * E, *xr = x + r * E;
		float m = stats[2 * r], rs = stats[2 * r + 1], a, c;

		if (v2) {
			float f1[SLANES] = { 0 }, f2[SLANES] = { 0 }, s1 = 0.0f, s2 = 0.0f;
			size_t j0 = E / SLANES * SLANES;

			for (size_t j = 0; j < j0; j += SLANES)
				for (size_t k = 0; k < SLANES; k++) {
					float xh = (xr[j + k] - m) * rs, g = dyr[j + k] * w[j + k];

					f1[k] += g;
					f2[k] += g * xh;
				}
			for (size_t k = 0; k < SLANES; k++) {
				s1 += f1[k];
				s2 += f2[k];
			}
			for (size_t j = j0; j < E; j++) {
				float xh = (xr[j] - m) * rs, g = dyr[j] * w[j];

				s1 += g;
				s2 += g * xh;
			}
			a = s1 / (float)E;
			c = s2 / (float)E;
		} else {
			double s1 = 0.0, s2 = 0.0, a1[LANES] = { 0 }, a2[LANES] = { 0 };
			size_t j0 = E / LANES * LANES;

			for (size_t j = 0; j < j0; j += LANES)
				for (size_t k = 0; k < LANES; k++) {
					float xh = (xr[j + k] - m) * rs, g = dyr[j + k] * w[j + k];

					a1[k] += g;
					a2[k] += (double)g * xh;
				}
			for (size_t k = 0; k < LANES; k++) {
				s1 += a1[k];
				s2 += a2[k];
			}
			for (size_t j = j0; j < E; j++) {
				float xh = (xr[j] - m) * rs, g = dyr[j] * w[j];

				s1 += g;
				s2 += (double)g * xh;
			}
			a = (float)(s1 / (double)E);
			c = (float)(s2 / (double)E);
		}
		for (size_t j = 0; j < E; j++) {
			float xh = (xr[j] - m) * rs;

			dw[j] += dyr[j] * xh;
			db[j] += dyr[j];
		}
		if (!dx)
			continue;
		{
			float *dxr = dx + r * E;
			const float *br = base ? base + r * E : NULL;

			for (size_t j = 0; j < E; j++) {
				float xh = (xr[j] - m) * rs;
				float v = rs * (dyr[j] * w[j] - a - xh * c);

				dxr[j] = br ? br[j] + v : v;
			}
		}
	}
}

/* ---- a portable job's layer norm (kernels portable, doc/portable.md) ---------
 * The statistics in the contract's 16 double lanes (pk_sum2d_f64 and
 * pk_sqdev2d_f64 over the row), the backward's two sums likewise (element j
 * into lane j mod 16, the lanes' fixed tree); the rest ln_forward's and
 * ln_backward's own IEEE expressions. */

static void ln_forward_pk(const float *x, float *y, const float *w, const float *b, float *stats,
			  size_t rows, size_t E)
{
	for (size_t r = 0; r < rows; r++) {
		const float *xr = x + r * E;
		float *yr = y + r * E;
		double mean, var;
		float m, rs;

		mean = pk_sum2d_f64(xr, 1, E, E) / (double)E;
		var = pk_sqdev2d_f64(xr, 1, E, E, mean) / (double)E;
		m = (float)mean;
		rs = (float)(1.0 / sqrt(var + LN_EPS));
		stats[2 * r] = m;
		stats[2 * r + 1] = rs;
		for (size_t j = 0; j < E; j++)
			yr[j] = (xr[j] - m) * rs * w[j] + b[j];
	}
}

/* The contract's tree over 16 double lanes: l += l+8, +4, +2, +1. */
static double lanes_tree(double *a)
{
	for (size_t w = PK_LANES / 2; w; w /= 2)
		for (size_t k = 0; k < w; k++)
			a[k] += a[k + w];
	return a[0];
}

static void ln_backward_pk(const float *dy, const float *x, const float *w, const float *stats,
			   float *dx, const float *base, float *dw, float *db, size_t rows, size_t E)
{
	for (size_t r = 0; r < rows; r++) {
		const float *dyr = dy + r * E, *xr = x + r * E;
		float m = stats[2 * r], rs = stats[2 * r + 1];
		double a1[PK_LANES] = { 0 }, a2[PK_LANES] = { 0 }, s1, s2;

		for (size_t j = 0; j < E; j++) {
			float xh = (xr[j] - m) * rs, g = dyr[j] * w[j];

			a1[j % PK_LANES] += g;
			a2[j % PK_LANES] += (double)g * xh;
		}
		s1 = lanes_tree(a1);
		s2 = lanes_tree(a2);
		for (size_t j = 0; j < E; j++) {
			float xh = (xr[j] - m) * rs;

			dw[j] += dyr[j] * xh;
			db[j] += dyr[j];
		}
		if (!dx)
			continue;
		{
			float a = (float)(s1 / (double)E), c = (float)(s2 / (double)E);
			float *dxr = dx + r * E;
			const float *br = base ? base + r * E : NULL;

			for (size_t j = 0; j < E; j++) {
				float xh = (xr[j] - m) * rs;
				float v = rs * (dyr[j] * w[j] - a - xh * c);

				dxr[j] = br ? br[j] + v : v;
			}
		}
	}
}

/* The dispatch points by the job's kernels (and, for an openblas job, its
 * seq_kernels: l->v2, never set for a portable job). */
static void ln_fwd(const struct seq_ctx *l, const float *x, float *y, const float *w, const float *b,
		   float *stats, size_t rows, size_t E)
{
	if (l->kernels == KERNELS_PORTABLE)
		ln_forward_pk(x, y, w, b, stats, rows, E);
	else
		ln_forward(l->v2, x, y, w, b, stats, rows, E);
}

/* dx (may be NULL) = base + the gradient at x (base NULL: without it; it
 * may be dx itself); dw, db accumulated. */
static void ln_bwd(const struct seq_ctx *l, const float *dy, const float *x, const float *w,
		   const float *stats, float *dx, const float *base, float *dw, float *db, size_t rows,
		   size_t E)
{
	if (l->kernels == KERNELS_PORTABLE)
		ln_backward_pk(dy, x, w, stats, dx, base, dw, db, rows, E);
	else
		ln_backward(l->v2, dy, x, w, stats, dx, base, dw, db, rows, E);
}

static void act_sigmoid(enum kernels_kind K, float *y, const float *x, size_t n)
{
	if (K == KERNELS_PORTABLE)
		pk_sigmoid(y, x, n);
	else
		vm_sigmoid(y, x, n);
}

static void act_tanh(enum kernels_kind K, float *y, const float *x, size_t n)
{
	if (K == KERNELS_PORTABLE)
		pk_tanh(y, x, n);
	else
		vm_tanh(y, x, n);
}

/* A portable job's attention softmax of row[0, end) (0 after it, up to T):
 * mx = pk_max, e_j = pk_exp(row_j - mx), sum = pk_sum(e), row_j = e_j / sum. */
static void softmax_row_pk(float *row, size_t end, size_t T)
{
	float mx = pk_max(row, end), sum;

	for (size_t j = 0; j < end; j++)
		row[j] -= mx;
	pk_exp(row, row, end);
	sum = pk_sum(row, end);
	for (size_t j = 0; j < end; j++)
		row[j] /= sum;
	for (size_t j = end; j < T; j++)
		row[j] = 0.0f;
}

/* ---- multi-head attention ------------------------------------------------- */

struct mha_state {
	float *qkv;          /* (T, 3E) */
	float *p;            /* (heads, T, T) the softmax */
	float *pm, *pd;      /* (heads, T, T) dropout: its mask, the weights used; NULL: none */
	float *o;            /* (T, E) the heads' outputs, side by side */
};

struct mha_tmp {
	float *d_o;          /* (T, E) */
	float *dqkv;         /* (T, 3E) */
	float *dp;           /* (T, T) one head's at a time */
};

static void mha_carve(struct carve *c, size_t T, size_t E, size_t heads, bool drop,
		      struct mha_state *s)
{
	s->qkv = take(c, T * 3 * E);
	s->p = take(c, heads * T * T);
	s->pm = drop ? take(c, heads * T * T) : NULL;
	s->pd = drop ? take(c, heads * T * T) : NULL;
	s->o = take(c, T * E);
}

static void mha_tmp_carve(struct carve *c, size_t T, size_t E, struct mha_tmp *t)
{
	t->d_o = take(c, T * E);
	t->dqkv = take(c, T * 3 * E);
	t->dp = take(c, T * T);
}

/* ---- seq_kernels 2: the attention in row blocks ---------------------------
 *
 * Rows [i0, i1) of a head's scores at a time (ABLK rows); a causal block
 * needs only the columns [0, i1) (the rest is masked), so its products
 * skip them: Q K^T, P V and the backward's four take 5/8 of the per-head
 * form's work at T = 128. The softmax runs on the block in float32 lanes
 * (the maximum, the sum; then one multiply by 1/sum). Only columns [0, n1)
 * of a block's rows of P are written and read. */

#define ABLK 32

/* The softmax of row[0, end), in place; row[end, n) = 0. */
HOT_CLONES
static void softmax_row_v2(float *restrict row, size_t end, size_t n)
{
	float m[SLANES], a[SLANES], mx, sum = 0.0f, inv;
	size_t j0 = end / SLANES * SLANES, j;

	mx = row[0];
	for (j = 0; j < j0; j += SLANES) {
		for (size_t k = 0; k < SLANES; k++)
			m[k] = j ? (row[j + k] > m[k] ? row[j + k] : m[k]) : row[j + k];
	}
	for (size_t k = 0; j0 && k < SLANES; k++)
		mx = m[k] > mx ? m[k] : mx;
	for (j = j0; j < end; j++)
		mx = row[j] > mx ? row[j] : mx;
	for (j = 0; j < end; j++)
		row[j] -= mx;
	vm_exp(row, row, end);
	for (size_t k = 0; k < SLANES; k++)
		a[k] = 0.0f;
	for (j = 0; j < j0; j += SLANES)
		for (size_t k = 0; k < SLANES; k++)
			a[k] += row[j + k];
	for (size_t k = 0; k < SLANES; k++)
		sum += a[k];
	for (j = j0; j < end; j++)
		sum += row[j];
	inv = 1.0f / sum;
	for (j = 0; j < end; j++)
		row[j] *= inv;
	for (j = end; j < n; j++)
		row[j] = 0.0f;
}

/* dr[j] = p[j] (dr[j] - sum_k dr[k] p[k]) for j < n (the softmax's
 * backward; p is 0 past a causal row's end, so the sum may run to n). */
HOT_CLONES
static void softmax_back_row_v2(float *restrict dr, const float *restrict p, size_t n)
{
	float a[SLANES] = { 0 }, dot = 0.0f;
	size_t j0 = n / SLANES * SLANES, j;

	for (j = 0; j < j0; j += SLANES)
		for (size_t k = 0; k < SLANES; k++)
			a[k] += dr[j + k] * p[j + k];
	for (size_t k = 0; k < SLANES; k++)
		dot += a[k];
	for (j = j0; j < n; j++)
		dot += dr[j] * p[j];
	for (j = 0; j < n; j++)
		dr[j] = p[j] * (dr[j] - dot);
}

/* y[j] = a[j] * m[j], n floats. */
HOT_CLONES
static void mul_into(float *restrict y, const float *restrict a, const float *restrict m, size_t n)
{
	for (size_t j = 0; j < n; j++)
		y[j] = a[j] * m[j];
}

/* d[j] *= m[j], n floats. */
HOT_CLONES
static void mul_inplace(float *restrict d, const float *restrict m, size_t n)
{
	for (size_t j = 0; j < n; j++)
		d[j] *= m[j];
}

/* The heads of samples [r0, r1) after the input projection (s->qkv
 * written): s->o, and P (and its dropped form) for the backward. */
static void mha_heads_v2(const struct seq_ctx *n, size_t T, size_t E, size_t heads, bool causal,
			 double p, const struct mha_state *s, size_t r0, size_t r1, bool drop, uint64_t step,
			 uint32_t stream)
{
	size_t d = E / heads, E3 = 3 * E;
	float scale = 1.0f / sqrtf((float)d);

	for (size_t b = r0; b < r1; b++)
		for (size_t h = 0; h < heads; h++) {
			const float *q = s->qkv + b * T * E3 + h * d, *k = q + E, *v = q + 2 * E;
			size_t at = (b * heads + h) * T * T;
			float *P = s->p + at, *o = s->o + b * T * E + h * d;

			if (drop)
				drop_mask(n, step, stream, at, T * T, p, s->pm + at);
			for (size_t i0 = 0; i0 < T; i0 += ABLK) {
				size_t i1 = i0 + ABLK < T ? i0 + ABLK : T, n1 = causal ? i1 : T;
				const float *use = P;

				k_gemm(0, 1, i1 - i0, n1, d, scale, q + i0 * E3, E3, k, E3, 0.0f, P + i0 * T, T);
				for (size_t i = i0; i < i1; i++)
					softmax_row_v2(P + i * T, causal ? i + 1 : T, n1);
				if (drop) {
					for (size_t i = i0; i < i1; i++)
						mul_into(s->pd + at + i * T, P + i * T, s->pm + at + i * T, n1);
					use = s->pd + at;
				}
				k_gemm(0, 0, i1 - i0, d, n1, 1.0f, use + i0 * T, T, v, E3, 0.0f, o + i0 * E, E);
			}
		}
}

/* The backward of mha_heads_v2 for samples [r0, r1): tm->dqkv from tm->d_o. */
static void mha_heads_back_v2(size_t T, size_t E, size_t heads, bool causal, bool drop,
			      const struct mha_state *s, const struct mha_tmp *tm, size_t r0, size_t r1)
{
	size_t d = E / heads, E3 = 3 * E, nblk = (T + ABLK - 1) / ABLK;
	float scale = 1.0f / sqrtf((float)d);

	for (size_t b = r0; b < r1; b++) {
		float *dP = tm->dp + b * T * T;

		for (size_t h = 0; h < heads; h++) {
			const float *q = s->qkv + b * T * E3 + h * d, *k = q + E, *v = q + 2 * E;
			const float *dO = tm->d_o + b * T * E + h * d;
			size_t at = (b * heads + h) * T * T;
			const float *P = s->p + at, *use = drop ? s->pd + at : P;
			float *dq = tm->dqkv + b * T * E3 + h * d, *dk = dq + E, *dv = dq + 2 * E;

			/* the last block first: its columns cover every row of dK, dV (beta 0) */
			for (size_t bi = nblk; bi-- > 0;) {
				size_t i0 = bi * ABLK, i1 = i0 + ABLK < T ? i0 + ABLK : T, n1 = causal ? i1 : T;
				float beta = bi + 1 == nblk ? 0.0f : 1.0f;

				k_gemm(0, 1, i1 - i0, n1, d, 1.0f, dO + i0 * E, E, v, E3, 0.0f, dP + i0 * T, T);
				k_gemm(1, 0, n1, d, i1 - i0, 1.0f, use + i0 * T, T, dO + i0 * E, E, beta, dv, E3);
				for (size_t i = i0; i < i1; i++) {
					if (drop)
						mul_inplace(dP + i * T, s->pm + at + i * T, n1);
					softmax_back_row_v2(dP + i * T, P + i * T, n1);
				}
				k_gemm(0, 0, i1 - i0, d, n1, scale, dP + i0 * T, T, k, E3, 0.0f, dq + i0 * E3, E3);
				k_gemm(1, 0, n1, d, i1 - i0, scale, dP + i0 * T, T, q + i0 * E3, E3, beta, dk, E3);
			}
		}
	}
}

/* w: in_proj_weight (3E, E), in_proj_bias (3E), out_proj.weight (E, E),
 * out_proj.bias (E). Samples [r0, r1) of x into y. */
static void mha_forward(const struct seq_ctx *n, size_t T, size_t E, size_t heads, bool causal,
			double p, const float *w, const float *x, float *y, const struct mha_state *s,
			size_t r0, size_t r1, bool train, uint64_t step, uint32_t stream)
{
	size_t nb = r1 - r0, d = E / heads, E3 = 3 * E;
	const float *inw = w, *inb = inw + E3 * E, *ow = inb + E3, *ob = ow + E * E;
	float scale = 1.0f / sqrtf((float)d);
	bool drop = train && p > 0.0;

	linear_rows(n, s->qkv + r0 * T * E3, x + r0 * T * E, inw, inb, nb * T, E, E3);
	if (n->v2) {
		mha_heads_v2(n, T, E, heads, causal, p, s, r0, r1, drop, step, stream);
		linear_rows(n, y + r0 * T * E, s->o + r0 * T * E, ow, ob, nb * T, E, E);
		return;
	}
	for (size_t b = r0; b < r1; b++) {
		for (size_t h = 0; h < heads; h++) {
			const float *q = s->qkv + b * T * E3 + h * d, *k = q + E, *v = q + 2 * E;
			size_t at = (b * heads + h) * T * T;
			float *P = s->p + at, *use = P;

			k_gemm_by(n->kernels, 0, 1, T, T, d, scale, q, E3, k, E3, 0.0f, P, T);
			for (size_t i = 0; i < T; i++) {
				float *row = P + i * T, mx, sum = 0.0f;
				size_t end = causal ? i + 1 : T;

				if (n->kernels == KERNELS_PORTABLE) {
					softmax_row_pk(row, end, T);
					continue;
				}
				mx = row[0];
				for (size_t j = 1; j < end; j++)
					mx = row[j] > mx ? row[j] : mx;
				for (size_t j = 0; j < end; j++)
					row[j] -= mx;
				vm_exp(row, row, end);
				for (size_t j = 0; j < end; j++)
					sum += row[j];
				for (size_t j = 0; j < end; j++)
					row[j] /= sum;
				for (size_t j = end; j < T; j++)
					row[j] = 0.0f;
			}
			if (drop) {
				drop_mask(n, step, stream, at, T * T, p, s->pm + at);
				for (size_t e = 0; e < T * T; e++)
					s->pd[at + e] = P[e] * s->pm[at + e];
				use = s->pd + at;
			}
			k_gemm_by(n->kernels, 0, 0, T, d, T, 1.0f, use, T, v, E3, 0.0f, s->o + b * T * E + h * d, E);
		}
	}
	linear_rows(n, y + r0 * T * E, s->o + r0 * T * E, ow, ob, nb * T, E, E);
}

/* The backward of mha_forward (after a training forward): dw's gradients
 * added; dx (may be NULL) written (beta 0) or added (beta 1). */
static void mha_backward(const struct seq_ctx *l, size_t T, size_t E, size_t heads, bool causal, bool drop,
			 const float *w, float *dw, const float *x, const float *dy, float *dx, float beta,
			 const struct mha_state *s, const struct mha_tmp *tm, size_t r0, size_t r1)
{
	enum kernels_kind K = l->kernels;
	bool v2 = l->v2;
	size_t nb = r1 - r0, d = E / heads, E3 = 3 * E, rows = nb * T;
	const float *inw = w, *ow = inw + E3 * E + E3;
	float *dinw = dw, *dinb = dinw + E3 * E, *dow = dinb + E3, *dob = dow + E * E;
	float scale = 1.0f / sqrtf((float)d);

	prod(l, 0, 0, rows, E, E, 1.0f, dy + r0 * T * E, E, ow, E, 0.0f, tm->d_o + r0 * T * E, E);
	prod_wgrad(l, E, E, rows, dy + r0 * T * E, E, s->o + r0 * T * E, E, dow, E);
	colsum_add(dob, dy + r0 * T * E, E, rows, E);
	if (v2)
		mha_heads_back_v2(T, E, heads, causal, drop, s, tm, r0, r1);
	for (size_t b = r0; !v2 && b < r1; b++) {
		float *dP = tm->dp + b * T * T;

		for (size_t h = 0; h < heads; h++) {
			const float *q = s->qkv + b * T * E3 + h * d, *k = q + E, *v = q + 2 * E;
			const float *dO = tm->d_o + b * T * E + h * d;
			size_t at = (b * heads + h) * T * T;
			const float *P = s->p + at, *use = drop ? s->pd + at : P;
			float *dq = tm->dqkv + b * T * E3 + h * d, *dk = dq + E, *dv = dq + 2 * E;

			k_gemm_by(K, 0, 1, T, T, d, 1.0f, dO, E, v, E3, 0.0f, dP, T);
			k_gemm_by(K, 1, 0, T, d, T, 1.0f, use, T, dO, E, 0.0f, dv, E3);
			if (drop)
				for (size_t e = 0; e < T * T; e++)
					dP[e] *= s->pm[at + e];
			for (size_t i = 0; i < T; i++) {
				const float *pr = P + i * T;
				float *dr = dP + i * T, dot = 0.0f;

				if (K == KERNELS_PORTABLE)
					dot = pk_dot(dr, pr, T);
				else
					for (size_t j = 0; j < T; j++)
						dot += dr[j] * pr[j];
				for (size_t j = 0; j < T; j++)
					dr[j] = pr[j] * (dr[j] - dot);
			}
			k_gemm_by(K, 0, 0, T, d, T, scale, dP, T, k, E3, 0.0f, dq, E3);
			k_gemm_by(K, 1, 0, T, d, T, scale, dP, T, q, E3, 0.0f, dk, E3);
		}
	}
	prod_wgrad(l, E3, E, rows, tm->dqkv + r0 * T * E3, E3, x + r0 * T * E, E, dinw, E);
	colsum_add(dinb, tm->dqkv + r0 * T * E3, E3, rows, E3);
	if (dx)
		prod(l, 0, 0, rows, E, E3, 1.0f, tm->dqkv + r0 * T * E3, E3, inw, E, beta,
		       dx + r0 * T * E, E);
}

/* ---- the transformer encoder layer ------------------------------------------ */

/* What the backward reads. The attention's and linear2's outputs are not
 * kept (they pass through the layer's y, which is written last), nor
 * linear1's: relu(h) * mask is positive exactly where both its factors are,
 * which is where the backward lets the gradient through. */
struct tel_state {
	float *n1, *s1;      /* LN1's output (T, E) and statistics (T, 2) */
	struct mha_state a;
	float *m1;           /* (T, E) dropout1's mask, or NULL */
	float *r1;           /* (T, E) the first residual sum */
	float *n2, *s2;      /* LN2's: norm_first, the FF block's input (n2 NULL otherwise) */
	float *mf;           /* (T, FF) the FF block's dropout mask, or NULL */
	float *hd;           /* (T, FF) relu(linear1) * mask: linear2's input */
	float *m2;           /* (T, E) dropout2's mask, or NULL */
	float *r2;           /* (T, E) post-LN: the second residual sum (NULL with norm_first) */
};

struct tel_tmp {
	float *da, *dr, *dn, *df, *dh;
	struct mha_tmp m;
};

static void tel_carve(struct carve *c, const struct seq_ctx *l, struct tel_state *s)
{
	size_t T = l->in.h, E = l->in.c, FF = l->spec->ff;
	bool drop = l->spec->p > 0.0;

	s->n1 = take(c, T * E);
	s->s1 = take(c, 2 * T);
	mha_carve(c, T, E, l->spec->heads, drop, &s->a);
	s->m1 = drop ? take(c, T * E) : NULL;
	s->r1 = take(c, T * E);
	s->n2 = l->spec->norm_first ? take(c, T * E) : NULL;
	s->s2 = take(c, 2 * T);
	s->mf = drop ? take(c, T * FF) : NULL;
	s->hd = take(c, T * FF);
	s->m2 = drop ? take(c, T * E) : NULL;
	s->r2 = l->spec->norm_first ? NULL : take(c, T * E);
}

static void tel_tmp_carve(struct carve *c, const struct seq_ctx *l, struct tel_tmp *t)
{
	size_t T = l->in.h, E = l->in.c;

	t->da = take(c, T * E);
	t->dr = take(c, T * E);
	t->dn = take(c, T * E);
	t->df = take(c, T * E);
	t->dh = take(c, T * l->spec->ff);
	mha_tmp_carve(c, T, E, &t->m);
}

/* The parameters' places (state_dict order). */
struct tel_params {
	const float *mha, *w1, *b1, *w2, *b2, *n1w, *n1b, *n2w, *n2b;
};

static void tel_params(const float *p, size_t E, size_t FF, struct tel_params *t)
{
	t->mha = p;
	t->w1 = p + 4 * E * E + 4 * E;
	t->b1 = t->w1 + FF * E;
	t->w2 = t->b1 + FF;
	t->b2 = t->w2 + E * FF;
	t->n1w = t->b2 + E;
	t->n1b = t->n1w + E;
	t->n2w = t->n1b + E;
	t->n2b = t->n2w + E;
}

/* y = x + a * m (m NULL: x + a), n floats. */
HOT_CLONES
static void add_masked(float *restrict y, const float *restrict x, const float *restrict a,
		       const float *restrict m, size_t n)
{
	if (m)
		for (size_t e = 0; e < n; e++)
			y[e] = x[e] + a[e] * m[e];
	else
		for (size_t e = 0; e < n; e++)
			y[e] = x[e] + a[e];
}

/* y = relu(y) (* m), n floats, in place. */
HOT_CLONES
static void relu_masked(float *restrict y, const float *restrict m, size_t n)
{
	if (m)
		for (size_t e = 0; e < n; e++)
			y[e] = (y[e] > 0.0f ? y[e] : 0.0f) * m[e];
	else
		for (size_t e = 0; e < n; e++)
			y[e] = y[e] > 0.0f ? y[e] : 0.0f;
}

/* y = x + y * m (m NULL: x + y), in place. */
HOT_CLONES
static void add_masked_into(float *restrict y, const float *restrict x, const float *restrict m, size_t n)
{
	if (m)
		for (size_t e = 0; e < n; e++)
			y[e] = x[e] + y[e] * m[e];
	else
		for (size_t e = 0; e < n; e++)
			y[e] = x[e] + y[e];
}

/* d = (d * m) where x > 0, else 0 (relu's and a dropout's backward). */
HOT_CLONES
static void relu_masked_back(float *restrict d, const float *restrict x, const float *restrict m, size_t n)
{
	if (m)
		for (size_t e = 0; e < n; e++)
			d[e] = x[e] > 0.0f ? d[e] * m[e] : 0.0f;
	else
		for (size_t e = 0; e < n; e++)
			d[e] = x[e] > 0.0f ? d[e] : 0.0f;
}

static void tel_forward(const struct seq_ctx *l, uint32_t index, const float *x,
			size_t r0, size_t r1, bool train, uint64_t step)
{
	const struct layer_spec *sp = l->spec;
	size_t T = l->in.h, E = l->in.c, FF = sp->ff, nb = r1 - r0, rows = nb * T;
	size_t o = r0 * T * E, of = r0 * T * FF;
	bool drop = train && sp->p > 0.0;
	struct carve c = { l->aux, l->mb, 0 };
	struct tel_state s;
	struct tel_params w;

	tel_carve(&c, l, &s);
	tel_params(l->params, E, FF, &w);
	if (drop) {
		drop_mask(l, step, index | 2u << 8, o, rows * E, sp->p, s.m1 + o);
		drop_mask(l, step, index | 3u << 8, of, rows * FF, sp->p, s.mf + of);
		drop_mask(l, step, index | 4u << 8, o, rows * E, sp->p, s.m2 + o);
	}
	/* the attention's output in y (written last), then r1 = x + drop1(it) */
	if (sp->norm_first) {
		ln_fwd(l, x + o, s.n1 + o, w.n1w, w.n1b, s.s1 + r0 * 2 * T, rows, E);
		mha_forward(l, T, E, sp->heads, sp->causal, sp->p, w.mha, s.n1, l->y, &s.a, r0, r1,
			    train, step, index | 1u << 8);
	} else {
		mha_forward(l, T, E, sp->heads, sp->causal, sp->p, w.mha, x, l->y, &s.a, r0, r1, train,
			    step, index | 1u << 8);
	}
	add_masked(s.r1 + o, x + o, l->y + o, drop ? s.m1 + o : NULL, rows * E);
	/* the feed-forward block's input: LN2(r1) (norm_first) or LN1(r1) */
	if (sp->norm_first)
		ln_fwd(l, s.r1 + o, s.n2 + o, w.n2w, w.n2b, s.s2 + r0 * 2 * T, rows, E);
	else
		ln_fwd(l, s.r1 + o, s.n1 + o, w.n1w, w.n1b, s.s1 + r0 * 2 * T, rows, E);
	linear_rows(l, s.hd + of, (sp->norm_first ? s.n2 : s.n1) + o, w.w1, w.b1, rows, E, FF);
	relu_masked(s.hd + of, drop ? s.mf + of : NULL, rows * FF);
	/* linear2's output in y, then the second sum */
	linear_rows(l, l->y + o, s.hd + of, w.w2, w.b2, rows, FF, E);
	if (sp->norm_first) {
		add_masked_into(l->y + o, s.r1 + o, drop ? s.m2 + o : NULL, rows * E);
	} else {
		add_masked(s.r2 + o, s.n1 + o, l->y + o, drop ? s.m2 + o : NULL, rows * E);
		ln_fwd(l, s.r2 + o, l->y + o, w.n2w, w.n2b, s.s2 + r0 * 2 * T, rows, E);
	}
}

HOT_CLONES
static void mul_mask(float *restrict d, const float *restrict m, size_t n)
{
	if (m)
		for (size_t e = 0; e < n; e++)
			d[e] *= m[e];
}

static void tel_backward(const struct seq_ctx *l, const float *x, const float *dy,
			 float *dx, float *dp, size_t r0, size_t r1)
{
	const struct layer_spec *sp = l->spec;
	size_t T = l->in.h, E = l->in.c, FF = sp->ff, nb = r1 - r0, rows = nb * T;
	size_t o = r0 * T * E, of = r0 * T * FF;
	bool drop = sp->p > 0.0;
	struct carve c = { l->aux, l->mb, 0 }, ct = { l->tmp, l->mb, 0 };
	struct tel_state s;
	struct tel_tmp t;
	struct tel_params w;
	float *dmha = dp, *dw1 = dp + 4 * E * E + 4 * E, *db1 = dw1 + FF * E, *dw2 = db1 + FF;
	float *db2 = dw2 + E * FF, *dn1w = db2 + E, *dn1b = dn1w + E, *dn2w = dn1b + E;
	float *dn2b = dn2w + E;
	const float *ffin, *df, *da;

	tel_carve(&c, l, &s);
	tel_tmp_carve(&ct, l, &t);
	tel_params(l->params, E, FF, &w);
	ffin = sp->norm_first ? s.n2 : s.n1;
	/* dr: the gradient at r1's output side (norm_first: dy, added to
	 * below); df at linear2's output: drop2's backward of dy or dr */
	if (!sp->norm_first)
		ln_bwd(l, dy + o, s.r2 + o, w.n2w, s.s2 + r0 * 2 * T, t.dr + o, NULL, dn2w, dn2b,
			    rows, E);
	df = sp->norm_first ? dy : t.dr;
	if (drop) {
		mul_into(t.df + o, df + o, s.m2 + o, rows * E);
		df = t.df;
	}
	prod_wgrad(l, E, FF, rows, df + o, E, s.hd + of, FF, dw2, FF);
	colsum_add(db2, df + o, E, rows, E);
	prod(l, 0, 0, rows, FF, E, 1.0f, df + o, E, w.w2, FF, 0.0f, t.dh + of, FF);
	relu_masked_back(t.dh + of, s.hd + of, drop ? s.mf + of : NULL, rows * FF);
	prod_wgrad(l, FF, E, rows, t.dh + of, FF, ffin + o, E, dw1, E);
	colsum_add(db1, t.dh + of, FF, rows, FF);
	if (sp->norm_first) {
		/* dn = dh W1; dr = dy + LN2's backward */
		prod(l, 0, 0, rows, E, FF, 1.0f, t.dh + of, FF, w.w1, E, 0.0f, t.dn + o, E);
		ln_bwd(l, t.dn + o, s.r1 + o, w.n2w, s.s2 + r0 * 2 * T, t.dr + o, dy + o, dn2w, dn2b,
			    rows, E);
	} else {
		/* n1 feeds the FF block and the second sum: dn = dr + dh W1 */
		memcpy(t.dn + o, t.dr + o, rows * E * sizeof(float));
		prod(l, 0, 0, rows, E, FF, 1.0f, t.dh + of, FF, w.w1, E, 1.0f, t.dn + o, E);
		ln_bwd(l, t.dn + o, s.r1 + o, w.n1w, s.s1 + r0 * 2 * T, t.dr + o, NULL, dn1w, dn1b,
			    rows, E);
	}
	/* t.dr: the gradient at r1 = x_or + drop1(att); da at the attention's output */
	da = t.dr;
	if (drop) {
		mul_into(t.da + o, t.dr + o, s.m1 + o, rows * E);
		da = t.da;
	}
	if (sp->norm_first) {
		mha_backward(l, T, E, sp->heads, sp->causal, drop, w.mha, dmha, s.n1, da, t.dn, 0.0f,
			     &s.a, &t.m, r0, r1);
		ln_bwd(l, t.dn + o, x + o, w.n1w, s.s1 + r0 * 2 * T, dx ? dx + o : NULL, t.dr + o,
			    dn1w, dn1b, rows, E);
	} else {
		if (dx)
			memcpy(dx + o, t.dr + o, rows * E * sizeof(float));
		mha_backward(l, T, E, sp->heads, sp->causal, drop, w.mha, dmha, x, da, dx, 1.0f, &s.a,
			     &t.m, r0, r1);
	}
}

/* ---- LSTM and GRU -------------------------------------------------------- */

/* Layer k's saved blocks: gates (T, G) (LSTM i, f, g, o after their
 * activations; GRU r, z, n), cells (T, H) (GRU: h W_hh^T + b_hh, (T, 3H)),
 * the layer's output h (T, H) (the last layer's is y), and between layers
 * with dropout its mask and the dropped output. */
struct rnn_layer {
	float *g, *c, *tc, *h, *m, *d;   /* tc: LSTM's tanh(c), for the backward */
};

static void rnn_carve(struct carve *c, const struct seq_ctx *l, float *y, struct rnn_layer *out)
{
	size_t T = l->in.h, H = l->spec->out, L = l->spec->layers;
	bool gru = l->spec->kind == LAYER_GRU;
	size_t G = (gru ? 3 : 4) * H;

	for (size_t k = 0; k < L; k++) {
		out[k].g = take(c, T * G);
		out[k].c = take(c, gru ? T * G : T * H);
		out[k].tc = gru ? NULL : take(c, T * H);
		out[k].h = k + 1 < L ? take(c, T * H) : y;
		bool drop = k + 1 < L && l->spec->p > 0.0;

		out[k].m = drop ? take(c, T * H) : NULL;
		out[k].d = drop ? take(c, T * H) : NULL;
	}
}

static void rnn_forward(const struct seq_ctx *l, uint32_t index, const float *in,
			size_t r0, size_t r1, bool train, uint64_t step)
{
	const struct layer_spec *sp = l->spec;
	bool gru = sp->kind == LAYER_GRU;
	size_t T = l->in.h, E = l->in.c, H = sp->out, L = sp->layers, nb = r1 - r0;
	size_t G = (gru ? 3 : 4) * H;
	struct carve c = { l->aux, l->mb, 0 };
	struct rnn_layer lay[16];
	const float *p = l->params, *x = in;

	rnn_carve(&c, l, l->y, lay);
	for (size_t k = 0; k < L; k++) {
		size_t Ek = k ? H : E;
		const float *wih = p, *whh = wih + G * Ek, *bih = whh + G * H, *bhh = bih + G;
		float *gx = lay[k].g + r0 * T * G, *hk = lay[k].h;

		p = bhh + G;
		/* the input's part for every step at once: b_ih (+ b_hh) + x W_ih^T */
		for (size_t r = 0; r < nb * T; r++)
			for (size_t j = 0; j < G; j++)
				gx[r * G + j] = gru ? bih[j] : bih[j] + bhh[j];
		k_gemm_by(l->kernels, 0, 1, nb * T, G, Ek, 1.0f, x + r0 * T * Ek, Ek, wih, Ek, 1.0f, gx, G);
		for (size_t t = 0; t < T; t++) {
			if (gru) {
				float *gh = lay[k].c + r0 * T * G + t * G;   /* (nb rows, ld T*G) */

				for (size_t b = 0; b < nb; b++)
					memcpy(gh + b * T * G, bhh, G * sizeof(float));
				if (t)
					k_gemm_by(l->kernels, 0, 1, nb, G, H, 1.0f, hk + r0 * T * H + (t - 1) * H, T * H, whh, H,
					       1.0f, gh, T * G);
				for (size_t b = r0; b < r1; b++) {
					float *g = lay[k].g + (b * T + t) * G;
					const float *hh = lay[k].c + (b * T + t) * G;
					float *h = hk + (b * T + t) * H;
					const float *hp = t ? h - H : NULL;

					/* r, z = sigmoid(gx + gh); n = tanh(gx_n + r gh_n) */
					for (size_t j = 0; j < 2 * H; j++)
						g[j] += hh[j];
					act_sigmoid(l->kernels, g, g, 2 * H);
					for (size_t j = 0; j < H; j++)
						g[2 * H + j] += g[j] * hh[2 * H + j];
					act_tanh(l->kernels, g + 2 * H, g + 2 * H, H);
					for (size_t j = 0; j < H; j++) {
						float nn = g[2 * H + j], prev = hp ? hp[j] : 0.0f;

						h[j] = (prev - nn) * g[H + j] + nn;
					}
				}
			} else {
				if (t)
					k_gemm_by(l->kernels, 0, 1, nb, G, H, 1.0f, hk + r0 * T * H + (t - 1) * H, T * H, whh, H,
					       1.0f, gx + t * G, T * G);
				for (size_t b = r0; b < r1; b++) {
					float *g = lay[k].g + (b * T + t) * G;
					float *cc = lay[k].c + (b * T + t) * H, *h = hk + (b * T + t) * H;
					float *tc = lay[k].tc + (b * T + t) * H;
					const float *cp = t ? cc - H : NULL;

					/* i, f, o = sigmoid, g = tanh; c = f c' + i g; h = o tanh(c) */
					act_sigmoid(l->kernels, g, g, 2 * H);
					act_tanh(l->kernels, g + 2 * H, g + 2 * H, H);
					act_sigmoid(l->kernels, g + 3 * H, g + 3 * H, H);
					for (size_t j = 0; j < H; j++)
						cc[j] = g[H + j] * (cp ? cp[j] : 0.0f) + g[j] * g[2 * H + j];
					act_tanh(l->kernels, tc, cc, H);
					for (size_t j = 0; j < H; j++)
						h[j] = g[3 * H + j] * tc[j];
				}
			}
		}
		x = hk;
		if (lay[k].m && train) {
			size_t at = r0 * T * H;

			drop_mask(l, step, index | (uint32_t)(k + 1) << 8, at, nb * T * H, sp->p, lay[k].m + at);
			for (size_t e = 0; e < nb * T * H; e++)
				lay[k].d[at + e] = hk[at + e] * lay[k].m[at + e];
			x = lay[k].d;
		}
	}
}

/* One step of one sample, the gradients at the gates (LSTM: d (4H), and dc
 * carried to the step before; GRU: dgx, dgh (3H) and dh2 = dh z) from the
 * gradient at the output dy + dh (the step after's), the saved gates g and
 * the cell before cp (LSTM), the output before hp (GRU); each 0 before the
 * first step. Loops the compiler vectorises. */
HOT_CLONES
static void lstm_step_back(float *restrict d, float *restrict dc, const float *restrict g,
			   const float *restrict dy, const float *restrict dh, const float *restrict tc,
			   const float *restrict cp, size_t H)
{
	for (size_t j = 0; j < H; j++) {
		float i = g[j], f = g[H + j], gg = g[2 * H + j], o = g[3 * H + j];
		float dhv = dy[j] + dh[j], t = tc[j];
		float dcv = dc[j] + dhv * o * (1.0f - t * t);

		d[j] = dcv * gg * i * (1.0f - i);
		d[H + j] = dcv * cp[j] * f * (1.0f - f);
		d[2 * H + j] = dcv * i * (1.0f - gg * gg);
		d[3 * H + j] = dhv * t * o * (1.0f - o);
		dc[j] = dcv * f;
	}
}

HOT_CLONES
static void gru_step_back(float *restrict d, float *restrict dgh, float *restrict dh2, const float *restrict g,
			  const float *restrict hh, const float *restrict dy, const float *restrict dh,
			  const float *restrict hp, size_t H)
{
	for (size_t j = 0; j < H; j++) {
		float r = g[j], z = g[H + j], nn = g[2 * H + j];
		float dhv = dy[j] + dh[j];
		float dn = dhv * (1.0f - z), dz = dhv * (hp[j] - nn);
		float dan = dn * (1.0f - nn * nn), dr = dan * hh[2 * H + j];
		float dgr = dr * r * (1.0f - r), dgz = dz * z * (1.0f - z);

		d[j] = dgr;
		d[H + j] = dgz;
		d[2 * H + j] = dan;
		dgh[j] = dgr;
		dgh[H + j] = dgz;
		dgh[2 * H + j] = dan * r;
		dh2[j] = dhv * z;
	}
}

static void rnn_backward(const struct seq_ctx *l, const float *in, const float *dy,
			 float *dx, float *dp, size_t r0, size_t r1)
{
	const struct layer_spec *sp = l->spec;
	bool gru = sp->kind == LAYER_GRU;
	size_t T = l->in.h, E = l->in.c, H = sp->out, L = sp->layers, nb = r1 - r0;
	size_t G = (gru ? 3 : 4) * H;
	struct carve c = { l->aux, l->mb, 0 }, ct = { l->tmp, l->mb, 0 };
	struct rnn_layer lay[16];
	const float *pw[16];
	float *dpw[16];
	float *dg = take(&ct, T * G), *dgh = gru ? take(&ct, T * G) : NULL;
	float *dha = take(&ct, T * H), *dhb = take(&ct, T * H), *hprev = take(&ct, T * H);
	float *dh = take(&ct, H), *dh2 = take(&ct, H), *dc = take(&ct, H), *zero = take(&ct, H);
	const float *dhk = dy;
	const float *p = l->params;
	float *q = dp;

	rnn_carve(&c, l, l->y, lay);
	for (size_t k = 0; k < L; k++) {
		size_t Ek = k ? H : E;

		pw[k] = p;
		dpw[k] = q;
		p += G * (Ek + H + 2);
		q += G * (Ek + H + 2);
	}
	for (size_t kk = L; kk-- > 0;) {
		size_t Ek = kk ? H : E;
		const float *wih = pw[kk], *whh = wih + G * Ek;
		float *dwih = dpw[kk], *dwhh = dwih + G * Ek, *dbih = dwhh + G * H, *dbhh = dbih + G;
		const float *x = kk == 0 ? in : lay[kk - 1].d ? lay[kk - 1].d : lay[kk - 1].h;
		const float *hk = lay[kk].h;
		float *dnext = dhk == dha ? dhb : dha;

		memset(dh + r0 * H, 0, nb * H * sizeof(float));
		memset(dc + r0 * H, 0, nb * H * sizeof(float));
		memset(zero + r0 * H, 0, nb * H * sizeof(float));
		for (size_t t = T; t-- > 0;) {
			for (size_t b = r0; b < r1; b++) {
				size_t at = b * T + t;

				if (gru)
					gru_step_back(dg + at * G, dgh + at * G, dh2 + b * H, lay[kk].g + at * G,
						      lay[kk].c + at * G, dhk + at * H, dh + b * H,
						      t ? hk + (at - 1) * H : zero + b * H, H);
				else
					lstm_step_back(dg + at * G, dc + b * H, lay[kk].g + at * G, dhk + at * H,
						       dh + b * H, lay[kk].tc + at * H,
						       t ? lay[kk].c + (at - 1) * H : zero + b * H, H);
			}
			if (gru) {
				/* dh' = dh z + dGh W_hh */
				if (t)
					k_gemm_by(l->kernels, 0, 0, nb, H, G, 1.0f, dgh + (r0 * T + t) * G, T * G, whh, H, 1.0f,
					       dh2 + r0 * H, H);
				memcpy(dh + r0 * H, dh2 + r0 * H, nb * H * sizeof(float));
			} else if (t) {
				k_gemm_by(l->kernels, 0, 0, nb, H, G, 1.0f, dg + (r0 * T + t) * G, T * G, whh, H, 0.0f,
				       dh + r0 * H, H);
			}
		}
		/* the weights' gradients over every step of the member's samples */
		k_gemm_by(l->kernels, 1, 0, G, Ek, nb * T, 1.0f, dg + r0 * T * G, G, x + r0 * T * Ek, Ek, 1.0f, dwih, Ek);
		colsum_add(dbih, dg + r0 * T * G, G, nb * T, G);
		if (gru)
			colsum_add(dbhh, dgh + r0 * T * G, G, nb * T, G);
		else
			colsum_add(dbhh, dg + r0 * T * G, G, nb * T, G);
		/* dW_hh = sum over steps of dG_t^T h_{t-1}: the outputs a step late
		 * (0 before the first), one product over every step and sample */
		for (size_t b = r0; b < r1; b++) {
			memset(hprev + b * T * H, 0, H * sizeof(float));
			memcpy(hprev + b * T * H + H, hk + b * T * H, (T - 1) * H * sizeof(float));
		}
		k_gemm_by(l->kernels, 1, 0, G, H, nb * T, 1.0f, (gru ? dgh : dg) + r0 * T * G, G, hprev + r0 * T * H, H, 1.0f,
		       dwhh, H);
		/* down: into the layer below (through its dropout), or dx */
		if (kk > 0) {
			k_gemm_by(l->kernels, 0, 0, nb * T, H, G, 1.0f, dg + r0 * T * G, G, wih, Ek, 0.0f, dnext + r0 * T * H, H);
			mul_mask(dnext + r0 * T * H, lay[kk - 1].m ? lay[kk - 1].m + r0 * T * H : NULL,
				 nb * T * H);
			dhk = dnext;
		} else if (dx) {
			k_gemm_by(l->kernels, 0, 0, nb * T, E, G, 1.0f, dg + r0 * T * G, G, wih, E, 0.0f, dx + r0 * T * E, E);
		}
	}
}

/* ---- the interface ---------------------------------------------------------- */

size_t seq_param_floats(const struct seq_ctx *l)
{
	const struct layer_spec *s = l->spec;
	size_t E = l->in.c, n = 0;

	switch (s->kind) {
	case LAYER_EMBEDDING:
		return (size_t)s->num * s->out;
	case LAYER_POSEMBEDDING:
		return (size_t)(s->num ? s->num : l->in.h) * E;
	case LAYER_LAYERNORM:
		return 2 * E;
	case LAYER_LSTM:
	case LAYER_GRU: {
		size_t G = (s->kind == LAYER_LSTM ? 4 : 3) * (size_t)s->out;

		for (uint32_t k = 0; k < s->layers; k++)
			n += G * ((k ? s->out : E) + s->out + 2);
		return n;
	}
	case LAYER_MHA:
		return 4 * E * E + 4 * E;
	case LAYER_TRANSFORMER:
		return 4 * E * E + 4 * E + 2 * E * s->ff + s->ff + E + 4 * E;
	default:
		return 0;
	}
}

size_t seq_aux_floats(const struct seq_ctx *l)
{
	struct carve c = { NULL, 0, 0 };
	size_t T = l->in.h;

	switch (l->spec->kind) {
	case LAYER_LAYERNORM:
		return 2 * (l->in.seq ? T : 1);
	case LAYER_LSTM:
	case LAYER_GRU: {
		struct rnn_layer lay[16];

		rnn_carve(&c, l, NULL, lay);
		return c.at;
	}
	case LAYER_MHA: {
		struct mha_state s;

		mha_carve(&c, T, l->in.c, l->spec->heads, l->spec->p > 0.0, &s);
		return c.at;
	}
	case LAYER_TRANSFORMER: {
		struct tel_state s;

		tel_carve(&c, l, &s);
		return c.at;
	}
	default:
		return 0;
	}
}

size_t seq_tmp_floats(const struct seq_ctx *l)
{
	struct carve c = { NULL, 0, 0 };
	size_t T = l->in.h, H = l->spec->out;

	switch (l->spec->kind) {
	case LAYER_LSTM:
		return T * 4 * H + 3 * T * H + 4 * H;
	case LAYER_GRU:
		return 2 * T * 3 * H + 3 * T * H + 4 * H;
	case LAYER_MHA: {
		struct mha_tmp t;

		mha_tmp_carve(&c, T, l->in.c, &t);
		return c.at;
	}
	case LAYER_TRANSFORMER: {
		struct tel_tmp t;

		tel_tmp_carve(&c, l, &t);
		return c.at;
	}
	default:
		return 0;
	}
}

void seq_forward(const struct seq_ctx *l, uint32_t index, const float *in,
		 size_t r0, size_t r1, bool train, uint64_t step)
{
	const struct layer_spec *s = l->spec;
	const float *p = l->params;
	size_t T = l->in.h, E = l->out.c;

	switch (s->kind) {
	case LAYER_EMBEDDING:
		for (size_t r = r0 * T; r < r1 * T; r++) {
			uint32_t id = (uint32_t)in[r];

			if (id < s->num)
				memcpy(l->y + r * E, p + (size_t)id * E, E * sizeof(float));
			else   /* not a token of the table: the checks upstream keep it from happening */
				memset(l->y + r * E, 0, E * sizeof(float));
		}
		break;
	case LAYER_POSEMBEDDING:
		for (size_t b = r0; b < r1; b++)
			for (size_t e = 0; e < T * E; e++)
				l->y[b * T * E + e] = in[b * T * E + e] + p[e];
		break;
	case LAYER_LAYERNORM: {
		size_t rows = l->in.seq ? T : 1;

		ln_fwd(l, in + r0 * rows * l->in.c, l->y + r0 * rows * l->in.c, p, p + l->in.c,
			   l->aux + r0 * rows * 2, (r1 - r0) * rows, l->in.c);
		break;
	}
	case LAYER_LSTM:
	case LAYER_GRU:
		rnn_forward(l, index, in, r0, r1, train, step);
		break;
	case LAYER_MHA: {
		struct carve c = { l->aux, l->mb, 0 };
		struct mha_state st;

		mha_carve(&c, T, E, s->heads, s->p > 0.0, &st);
		mha_forward(l, T, E, s->heads, s->causal, s->p, p, in, l->y, &st, r0, r1, train, step,
			    index | 1u << 8);
		break;
	}
	case LAYER_TRANSFORMER:
		tel_forward(l, index, in, r0, r1, train, step);
		break;
	default:
		break;
	}
}

void seq_backward(const struct seq_ctx *l, const float *in, const float *dy,
		  float *dx, float *dp, size_t r0, size_t r1)
{
	const struct layer_spec *s = l->spec;
	size_t T = l->in.h, E = l->in.c;

	switch (s->kind) {
	case LAYER_POSEMBEDDING:
		for (size_t b = r0; b < r1; b++) {
			colsum_add(dp, dy + b * T * E, T * E, 1, T * E);
			if (dx)
				memcpy(dx + b * T * E, dy + b * T * E, T * E * sizeof(float));
		}
		break;
	case LAYER_LAYERNORM: {
		size_t rows = l->in.seq ? T : 1;

		ln_bwd(l, dy + r0 * rows * E, in + r0 * rows * E, l->params,
			    l->aux + r0 * rows * 2, dx ? dx + r0 * rows * E : NULL, NULL, dp, dp + E,
			    (r1 - r0) * rows, E);
		break;
	}
	case LAYER_LSTM:
	case LAYER_GRU:
		rnn_backward(l, in, dy, dx, dp, r0, r1);
		break;
	case LAYER_MHA: {
		struct carve c = { l->aux, l->mb, 0 }, ct = { l->tmp, l->mb, 0 };
		struct mha_state st;
		struct mha_tmp tm;

		mha_carve(&c, T, E, s->heads, s->p > 0.0, &st);
		mha_tmp_carve(&ct, T, E, &tm);
		mha_backward(l, T, E, s->heads, s->causal, s->p > 0.0, l->params, dp, in, dy, dx, 0.0f,
			     &st, &tm, r0, r1);
		break;
	}
	case LAYER_TRANSFORMER:
		tel_backward(l, in, dy, dx, dp, r0, r1);
		break;
	default:
		break;
	}
}

void seq_embedding_backward(const struct seq_ctx *l, const float *in,
			    const float *dy, size_t batch, size_t c0, size_t c1)
{
	size_t T = l->in.h, E = l->out.c;
	float *dw = l->grads;

	for (size_t r = 0; r < l->spec->num; r++)
		memset(dw + r * E + c0, 0, (c1 - c0) * sizeof(float));
	for (size_t r = 0; r < batch * T; r++) {
		uint32_t id = (uint32_t)in[r];

		if (id >= l->spec->num || (l->spec->padding_idx >= 0 && id == (uint32_t)l->spec->padding_idx))
			continue;
		for (size_t e = c0; e < c1; e++)
			dw[(size_t)id * E + e] += dy[r * E + e];
	}
}
