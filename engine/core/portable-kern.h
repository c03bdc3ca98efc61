/*
 * portable-kern.h - the inner loops of the portable kernels written once:
 * the GEMM register tile, the lanes of the reductions and the element-wise
 * loops of portable-math.h, over abstract vectors. Each path's file
 * (portable-{generic,avx2,avx512}.c) defines the operations and includes
 * this file once, which defines its `const struct pk_ops PK_OPS`
 * (portable-isa.h). Every lane of every path performs the same IEEE
 * operations in the same order; only the width and the instructions differ.
 *
 * Besides portable-math.h's V operations (and v_loadn(p, n), v_storen(p, v,
 * n) for the tail of an array, VL floats per V), the includer defines:
 *   PK_OPS, PK_NAME                   the table's name and the path's name
 *   T, TM, TVL                        the tile's vector, its lane mask, floats per T
 *   PK_NV, PK_NB1..PK_NB4             vectors across a tile, broadcast rows per nv
 *   t_zero t_set1 t_load t_mask(n) t_loadm(p, m) t_storem(p, v, m) t_mul t_fma t_add
 *   PK_CX_NB1..PK_CX_NB4, PK_DT_NB, PK_DT_NQ   the convolution tiles' shapes
 *   F16: 16 float lanes: f16_zero f16_loadn(p, n) f16_add f16_fma f16_maxnan
 *        f16_store(lanes, v) f16_load(lanes)   (n <= 16; missing lanes +0)
 *        f16_fman(a, b, c, n): fmaf on lanes < n, lanes >= n keep c's
 *   D16: 16 double lanes: d16_zero d16_cvtn(p, n) (n floats widened, the
 *        rest +0) d16_set1 d16_add d16_sub d16_mul d16_store d16_load
 *   pk_pack_t                         the transpose of portable-isa.h's pack_t
 *   PK_PROBE_ATTR                     attributes of the contraction probe
 * Thread: pure functions.
 */
#ifndef TRAIND_PORTABLE_KERN_H
#define TRAIND_PORTABLE_KERN_H

#include "engine/core/portable-math.h"

#define PK_ALWAYS_INLINE static inline __attribute__((always_inline))

/* ---- the GEMM tile ---------------------------------------------------------
 * One tile of NB broadcast rows by NV vectors: each k step broadcasts P[b][kk]
 * and multiplies it into the NV vectors of Q's row kk, each product added to
 * its accumulator by one fused multiply-add: the chain of every element is
 * over kk in order. panel: P[b][kk] at p[kk * p_cs + b] (p_rs 1), else at
 * row pointers p + b * p_rs (p_cs 1). */
PK_ALWAYS_INLINE void tile_body(const struct pk_tile *t, const int NB, const int NV, const int panel)
{
	T acc[PK_NB_MAX][PK_NV_MAX];
	const float *rows[PK_NB_MAX];
	const TM full = t_mask(TVL), lastm = t_mask(t->last);
	/* the fields in locals: the stores to C could alias *t for all the
	 * compiler knows, and it would reload them after every store */
	const float *q = t->q, *p = t->p;
	const size_t q_ld = t->q_ld, p_cs = t->p_cs, p_rs = t->p_rs, k = t->k, c_ld = t->c_ld;
	const enum pk_init init = t->init;
	const float beta = t->beta;
	float *c = t->c;

#pragma GCC unroll 12
	for (int b = 0; b < NB; b++) {
		rows[b] = p + b * p_rs;
#pragma GCC unroll 4
		for (int v = 0; v < NV; v++) {
			TM m = v == NV - 1 ? lastm : full;

			if (init == PK_INIT_ZERO)
				acc[b][v] = t_zero();
			else if (init == PK_INIT_LOAD)
				acc[b][v] = t_loadm(c + b * c_ld + v * TVL, m);
			else
				acc[b][v] = t_mul(t_set1(beta), t_loadm(c + b * c_ld + v * TVL, m));
		}
	}
	for (size_t kk = 0; kk < k; kk++) {
		T qv[PK_NV_MAX];

#pragma GCC unroll 4
		for (int v = 0; v < NV; v++)
			qv[v] = v == NV - 1 ? t_loadm(q + v * TVL, lastm) : t_load(q + v * TVL);
#pragma GCC unroll 12
		for (int b = 0; b < NB; b++) {
			T pb = t_set1(panel ? p[b] : rows[b][kk]);

#pragma GCC unroll 4
			for (int v = 0; v < NV; v++)
				acc[b][v] = t_fma(pb, qv[v], acc[b][v]);
		}
		q += q_ld;
		if (panel)
			p += p_cs;
	}
#pragma GCC unroll 12
	for (int b = 0; b < NB; b++)
#pragma GCC unroll 4
		for (int v = 0; v < NV; v++)
			t_storem(c + b * c_ld + v * TVL, acc[b][v], v == NV - 1 ? lastm : full);
}

#define PK_TILE_CASE(NB, NV)                                     \
	case (NV) * 16 + (NB):                                   \
		if (t->p_rs == 1)                                \
			tile_body(t, NB, NV, 1);                 \
		else                                             \
			tile_body(t, NB, NV, 0);                 \
		return;
#define PK_TILE_CASES_NV(NV)                                                             \
	PK_TILE_CASE(1, NV) PK_TILE_CASE(2, NV) PK_TILE_CASE(3, NV) PK_TILE_CASE(4, NV)  \
	PK_TILE_CASE(5, NV) PK_TILE_CASE(6, NV) PK_TILE_CASE(7, NV) PK_TILE_CASE(8, NV)
#define PK_TILE_CASES_WIDE(NV)                                                           \
	PK_TILE_CASE(9, NV) PK_TILE_CASE(10, NV) PK_TILE_CASE(11, NV) PK_TILE_CASE(12, NV)

static void pk_tile(const struct pk_tile *t)
{
	/* one specialised body per shape: the accumulators stay in registers */
	switch (t->nv * 16 + t->nb) {
		PK_TILE_CASES_NV(1)
#if PK_NB1 > 8
		PK_TILE_CASES_WIDE(1)
#endif
#if PK_NV >= 2
		PK_TILE_CASES_NV(2)
#endif
#if PK_NV >= 3
		PK_TILE_CASES_NV(3)
#endif
#if PK_NV >= 4
		PK_TILE_CASES_NV(4)
#endif
	default:
		break;
	}
}

/* ---- the convolution tiles (portable-isa.h: struct pk_ctile, pk_dtile) ----
 * ctile: NB rows by NV vectors; one chain over the taps (grouped 0: a
 * convolution's forward, each row from its bias), or per group a chain from
 * +0 added into the row's sum (grouped 1: the gradient at the input, the
 * groups being the kernel positions (i, j) and the taps the output
 * channels). The rows' P values are broadcast, the taps' vectors loaded
 * whole from src. */
PK_ALWAYS_INLINE void ctile_body(const struct pk_ctile *t, const int NB, const int NV, const int grouped)
{
	T acc[PK_NB_MAX][PK_NV_MAX], tmp[PK_NB_MAX][PK_NV_MAX];
	const float *prow[PK_NB_MAX];
	const TM full = t_mask(TVL), lastm = t_mask(t->last);
	const ptrdiff_t *koff = t->koff;
	const size_t nk = t->ntaps, p_cs = t->p_cs, c_ld = t->c_ld;
	const unsigned ng = grouped ? t->ngroups : 1;
	float *c = t->c;

#pragma GCC unroll 12
	for (int b = 0; b < NB; b++) {
		prow[b] = t->p + b * t->p_rs;
#pragma GCC unroll 4
		for (int v = 0; v < NV; v++)
			acc[b][v] = !grouped && t->bias ? t_set1(t->bias[b]) : t_zero();
	}
	for (unsigned g = 0; g < ng; g++) {
		const float *src;
		const ptrdiff_t gp = grouped ? t->g_p[g] : 0;

		if (grouped && t->g_src[g] == PK_GROUP_ZERO) {
			/* the chain of a group that reads only zeros: +0 */
#pragma GCC unroll 12
			for (int b = 0; b < NB; b++)
#pragma GCC unroll 4
				for (int v = 0; v < NV; v++)
					acc[b][v] = t_add(acc[b][v], t_zero());
			continue;
		}
		src = t->src + (grouped ? t->g_src[g] : 0);
		if (grouped)
#pragma GCC unroll 12
			for (int b = 0; b < NB; b++)
#pragma GCC unroll 4
				for (int v = 0; v < NV; v++)
					tmp[b][v] = t_zero();
		for (size_t kk = 0; kk < nk; kk++) {
			const float *sk = src + koff[kk];
			T qv[PK_NV_MAX];

#pragma GCC unroll 4
			for (int v = 0; v < NV; v++)
				qv[v] = t_load(sk + v * TVL);
#pragma GCC unroll 12
			for (int b = 0; b < NB; b++) {
				T pb = t_set1(prow[b][gp + (ptrdiff_t)(kk * p_cs)]);

#pragma GCC unroll 4
				for (int v = 0; v < NV; v++) {
					if (grouped)
						tmp[b][v] = t_fma(pb, qv[v], tmp[b][v]);
					else
						acc[b][v] = t_fma(pb, qv[v], acc[b][v]);
				}
			}
		}
		if (grouped)
#pragma GCC unroll 12
			for (int b = 0; b < NB; b++)
#pragma GCC unroll 4
				for (int v = 0; v < NV; v++)
					acc[b][v] = t_add(acc[b][v], tmp[b][v]);
	}
#pragma GCC unroll 12
	for (int b = 0; b < NB; b++)
#pragma GCC unroll 4
		for (int v = 0; v < NV; v++)
			t_storem(c + b * c_ld + v * TVL, acc[b][v], v == NV - 1 ? lastm : full);
}

#define PK_CTILE_CASE(NB, NV)                                    \
	case (NV) * 16 + (NB):                                   \
		if (t->grouped)                                  \
			ctile_body(t, NB, NV, 1);                \
		else                                             \
			ctile_body(t, NB, NV, 0);                \
		return;
#define PK_CTILE_CASES_NV(NV)                                                             \
	PK_CTILE_CASE(1, NV) PK_CTILE_CASE(2, NV) PK_CTILE_CASE(3, NV) PK_CTILE_CASE(4, NV)   \
	PK_CTILE_CASE(5, NV) PK_CTILE_CASE(6, NV) PK_CTILE_CASE(7, NV) PK_CTILE_CASE(8, NV)

static void pk_ctile(const struct pk_ctile *t)
{
	switch (t->nv * 16 + t->nb) {
		PK_CTILE_CASES_NV(1)
#if PK_NV >= 2
		PK_CTILE_CASES_NV(2)
#endif
#if PK_NV >= 3
		PK_CTILE_CASES_NV(3)
#endif
#if PK_NV >= 4
		PK_CTILE_CASES_NV(4)
#endif
	default:
		break;
	}
}

/* dtile: NB rows of dy by NQ taps, a 16-lane vector of partial sums each;
 * pixels by vectors of 16, the last one of a sample masked (its missing
 * lanes take no part). */
PK_ALWAYS_INLINE void dtile_body(const struct pk_dtile *t, const int NB, const int NQ)
{
	F16 acc[4][6];   /* NB <= PK_DT_NB <= 4, NQ <= PK_DT_NQ <= 6 */
	const size_t nt = t->nt, nfull = nt / 16, tail = nt % 16, dy_ld = t->dy_ld, x_qs = t->x_qs;

#pragma GCC unroll 8
	for (int b = 0; b < NB; b++)
#pragma GCC unroll 8
		for (int q = 0; q < NQ; q++)
			acc[b][q] = f16_zero();
	for (size_t r = 0; r < t->rows; r++) {
		const float *dyr = t->dy + r * t->dy_rs, *xr = t->x + r * t->x_rs;

		for (size_t v = 0; v < nfull; v++) {
			F16 d[4];

#pragma GCC unroll 8
			for (int b = 0; b < NB; b++)
				d[b] = f16_loadn(dyr + b * dy_ld + 16 * v, 16);
#pragma GCC unroll 8
			for (int q = 0; q < NQ; q++) {
				F16 xv = f16_loadn(xr + q * x_qs + 16 * v, 16);

#pragma GCC unroll 8
				for (int b = 0; b < NB; b++)
					acc[b][q] = f16_fma(d[b], xv, acc[b][q]);
			}
		}
		if (tail) {
			F16 d[4];

#pragma GCC unroll 8
			for (int b = 0; b < NB; b++)
				d[b] = f16_loadn(dyr + b * dy_ld + 16 * nfull, (unsigned)tail);
#pragma GCC unroll 8
			for (int q = 0; q < NQ; q++) {
				F16 xv = f16_loadn(xr + q * x_qs + 16 * nfull, (unsigned)tail);

#pragma GCC unroll 8
				for (int b = 0; b < NB; b++)
					acc[b][q] = f16_fman(d[b], xv, acc[b][q], (unsigned)tail);
			}
		}
	}
#pragma GCC unroll 8
	for (int b = 0; b < NB; b++)
#pragma GCC unroll 8
		for (int q = 0; q < NQ; q++) {
			float l[16];

			f16_store(l, acc[b][q]);
			for (int h = 8; h >= 1; h /= 2)
				for (int i = 0; i < h; i++)
					l[i] = l[i] + l[i + h];
			t->out[b * t->out_ld + q] = l[0];
		}
}

#define PK_DTILE_CASE(NB, NQ)            \
	case (NB) * 16 + (NQ):           \
		dtile_body(t, NB, NQ);   \
		return;
#define PK_DTILE_CASES_NB(NB)                                                        \
	PK_DTILE_CASE(NB, 1) PK_DTILE_CASE(NB, 2) PK_DTILE_CASE(NB, 3) PK_DTILE_CASE(NB, 4) \
	PK_DTILE_CASE(NB, 5) PK_DTILE_CASE(NB, 6)

static void pk_dtile(const struct pk_dtile *t)
{
	switch (t->nb * 16 + t->nq) {
		PK_DTILE_CASES_NB(1)
#if PK_DT_NB >= 2
		PK_DTILE_CASES_NB(2)
#endif
#if PK_DT_NB >= 3
		PK_DTILE_CASES_NB(3)
#endif
#if PK_DT_NB >= 4
		PK_DTILE_CASES_NB(4)
#endif
	default:
		break;
	}
}

/* ---- the lanes of the reductions ------------------------------------------ */

static void pk_sum_lanes(float lanes[16], const float *x, size_t n)
{
	F16 s = f16_load(lanes);
	size_t i = 0;

	for (; i + 16 <= n; i += 16)
		s = f16_add(s, f16_loadn(x + i, 16));
	if (i < n)
		s = f16_add(s, f16_loadn(x + i, (unsigned)(n - i)));
	f16_store(lanes, s);
}

static void pk_dot_lanes(float lanes[16], const float *x, const float *y, size_t n)
{
	F16 s = f16_load(lanes);
	size_t i = 0;

	for (; i + 16 <= n; i += 16)
		s = f16_fma(f16_loadn(x + i, 16), f16_loadn(y + i, 16), s);
	if (i < n)
		s = f16_fma(f16_loadn(x + i, (unsigned)(n - i)), f16_loadn(y + i, (unsigned)(n - i)), s);
	f16_store(lanes, s);
}

/* The tail's missing lanes must not take part: they are loaded as -inf. */
static void pk_max_lanes(float lanes[16], const float *x, size_t n)
{
	F16 s = f16_load(lanes);
	float tail[16];
	size_t i = 0;

	for (; i + 16 <= n; i += 16)
		s = f16_maxnan(s, f16_loadn(x + i, 16));
	if (i < n) {
		for (unsigned l = 0; l < 16; l++)
			tail[l] = i + l < n ? x[i + l] : -__builtin_inff();
		s = f16_maxnan(s, f16_loadn(tail, 16));
	}
	f16_store(lanes, s);
}

static void pk_sumd_lanes(double lanes[16], const float *x, size_t n)
{
	D16 s = d16_load(lanes);
	size_t i = 0;

	for (; i + 16 <= n; i += 16)
		s = d16_add(s, d16_cvtn(x + i, 16));
	if (i < n)
		s = d16_add(s, d16_cvtn(x + i, (unsigned)(n - i)));
	d16_store(lanes, s);
}

static void pk_sumsqd_lanes(double lanes[16], const float *x, size_t n)
{
	D16 s = d16_load(lanes);
	size_t i = 0;

	for (; i < n; i += 16) {
		D16 v = d16_cvtn(x + i, n - i < 16 ? (unsigned)(n - i) : 16);

		s = d16_add(s, d16_mul(v, v));
	}
	d16_store(lanes, s);
}

/* The tail's missing lanes would add (0 - mean)^2: they are masked by
 * adding +0 instead (s + 0 = s: lanes never hold -0, they start at +0). */
static void pk_sqdevd_lanes(double lanes[16], const float *x, size_t n, double mean)
{
	D16 s = d16_load(lanes), mu = d16_set1(mean);
	size_t i = 0;

	for (; i + 16 <= n; i += 16) {
		D16 d = d16_sub(d16_cvtn(x + i, 16), mu);

		s = d16_add(s, d16_mul(d, d));
	}
	if (i < n) {
		double sq[16];
		D16 d = d16_sub(d16_cvtn(x + i, (unsigned)(n - i)), mu);

		d16_store(sq, d16_mul(d, d));
		for (unsigned l = (unsigned)(n - i); l < 16; l++)
			sq[l] = 0.0;
		s = d16_add(s, d16_load(sq));
	}
	d16_store(lanes, s);
}

static void pk_bnd_lanes(double sdy[16], double sdyx[16], const float *dy, const float *x, size_t n,
			 double mean, double invstd)
{
	D16 s = d16_load(sdy), sx = d16_load(sdyx), mu = d16_set1(mean), is = d16_set1(invstd);
	size_t i = 0;

	for (; i + 16 <= n; i += 16) {
		D16 g = d16_cvtn(dy + i, 16);
		D16 xhat = d16_mul(d16_sub(d16_cvtn(x + i, 16), mu), is);

		s = d16_add(s, g);
		sx = d16_add(sx, d16_mul(g, xhat));
	}
	if (i < n) {
		unsigned c = (unsigned)(n - i);
		double prod[16];
		D16 g = d16_cvtn(dy + i, c);
		D16 xhat = d16_mul(d16_sub(d16_cvtn(x + i, c), mu), is);

		d16_store(prod, d16_mul(g, xhat));
		for (unsigned l = c; l < 16; l++)
			prod[l] = 0.0;   /* missing elements add +0 (g is +0 there already) */
		s = d16_add(s, g);
		sx = d16_add(sx, d16_load(prod));
	}
	d16_store(sdy, s);
	d16_store(sdyx, sx);
}

/* ---- element-wise --------------------------------------------------------- */

#define PK_ELEMENTWISE(name, fn)                                         \
	static void name(float *y, const float *x, size_t n)             \
	{                                                                \
		size_t i = 0;                                            \
                                                                         \
		for (; i + VL <= n; i += VL)                             \
			v_storen(y + i, fn(v_loadn(x + i, VL)), VL);     \
		if (i < n)                                               \
			v_storen(y + i, fn(v_loadn(x + i, (unsigned)(n - i))), (unsigned)(n - i)); \
	}

PK_ELEMENTWISE(pk_exp_arr, pkm_exp)
PK_ELEMENTWISE(pk_log_arr, pkm_log)
PK_ELEMENTWISE(pk_tanh_arr, pkm_tanh)
PK_ELEMENTWISE(pk_erf_arr, pkm_erf)
PK_ELEMENTWISE(pk_sigmoid_arr, pkm_sigmoid)

/* x * y + z with the C operators, compiled with this file's flags. */
PK_PROBE_ATTR static float pk_contract_probe(float x, float y, float z)
{
	return x * y + z;
}

const struct pk_ops PK_OPS = {
	.name = PK_NAME,
	.vl = TVL,
	.nv_max = PK_NV,
	.nb_max = { PK_NB1, PK_NB2, PK_NB3, PK_NB4 },
	.tile = pk_tile,
	.ctile = pk_ctile,
	.dtile = pk_dtile,
	.cx_nb = { PK_CX_NB1, PK_CX_NB2, PK_CX_NB3, PK_CX_NB4 },
	.dt_nb = PK_DT_NB,
	.dt_nq = PK_DT_NQ,
	.pack_t = pk_pack_t,
	.sum_lanes = pk_sum_lanes,
	.dot_lanes = pk_dot_lanes,
	.max_lanes = pk_max_lanes,
	.sumd_lanes = pk_sumd_lanes,
	.sumsqd_lanes = pk_sumsqd_lanes,
	.sqdevd_lanes = pk_sqdevd_lanes,
	.bnd_lanes = pk_bnd_lanes,
	.exp = pk_exp_arr,
	.log = pk_log_arr,
	.tanh = pk_tanh_arr,
	.erf = pk_erf_arr,
	.sigmoid = pk_sigmoid_arr,
	.contract_probe = pk_contract_probe,
};

#endif
