/*
 * portable-math.h - exp, log, tanh, erf and sigmoid of the portable kernels,
 * written once over an abstract vector and included by each path's file
 * (portable-{generic,avx2,avx512}.c), which defines the operations below
 * first. So every path performs the same IEEE operations in the same order
 * on every lane: the same bits (doc/portable.md has the algorithms and their
 * measured errors).
 *
 * The includer defines:
 *   V, VI, VM            a vector of floats, of int32, a lane mask
 *   v_set1 vi_set1       broadcast
 *   v_add v_sub v_mul v_div   IEEE, rounded once each
 *   v_fma(a, b, c)       a * b + c rounded once
 *   v_min(a, b) = a < b ? a : b;  v_max(a, b) = a > b ? a : b (SSE's rule)
 *   v_bits v_from_bits   reinterpret
 *   vi_add vi_sub vi_and vi_or vi_xor vi_srai vi_slli   int32 lanes
 *   v_cvt                int32 -> float
 *   m_lt m_ge m_eq m_nan ordered compares (m_nan: unordered x, x)
 *   mi_lt mi_gt          signed int32 compares
 *   m_and                mask and
 *   v_sel(m, a, b) vi_sel(m, a, b)   m ? a : b per lane
 * Thread: pure functions.
 */
#ifndef TRAIND_PORTABLE_MATH_H
#define TRAIND_PORTABLE_MATH_H

/* Coefficients: tools/portable-poly.py prints these tables. */
/* exp: Q(r), e^r = 1 + r + r^2 Q(r), |r| <= ln2/2, relative: max weighted error 3.08e-09 in float64 before rounding to float */
static const float pk_exp_q[5] = {
	0x1.fffffcp-2f,
	0x1.55549p-3f,
	0x1.5558f6p-5f,
	0x1.123a76p-7f,
	0x1.6a233ep-10f,
};
/* log: L(z), 2 atanh(s) = 2s + s z L(z), z = s^2 <= 0.1716^2, absolute in s z L: max weighted error 1.02e-12 in float64 before rounding to float */
static const float pk_log_l[4] = {
	0x1.555554p-1f,
	0x1.999abep-2f,
	0x1.242a9cp-2f,
	0x1.e4cef8p-3f,
};
/* tanh: P(z), tanh(x) = x + x z P(z), |x| < 1, relative: max weighted error 3.27e-11 in float64 before rounding to float */
static const float pk_tanh_p[9] = {
	-0x1.555556p-2f,
	0x1.1110fap-3f,
	-0x1.ba1694p-5f,
	0x1.66087p-6f,
	-0x1.2033d2p-7f,
	0x1.c09ff4p-9f,
	-0x1.368a38p-10f,
	0x1.40b8f2p-12f,
	-0x1.596adap-15f,
};
/* erf: P(z), erf(x) = x + x P(z), |x| < 1, relative: max weighted error 1.21e-09 in float64 before rounding to float */
static const float pk_erf_p[7] = {
	0x1.06eba8p-3f,
	-0x1.81273ep-2f,
	0x1.ce2cf8p-4f,
	-0x1.b7f90ep-6f,
	0x1.5405b2p-8f,
	-0x1.a3f7p-11f,
	0x1.496a32p-14f,
};
/* erfc on [1, 2] in t = (x - 1.5) * 2, absolute: max weighted error 1.15e-10 in float64 before rounding to float */
static const float pk_erfc_b[11] = {
	0x1.15aaa8p-5f,
	-0x1.e72372p-5f,
	0x1.6d5a96p-5f,
	-0x1.1c2a1ep-6f,
	0x1.6d5aeap-9f,
	0x1.e7498ap-12f,
	-0x1.3cadfep-12f,
	0x1.3419c8p-15f,
	0x1.37ed62p-17f,
	-0x1.93d8d4p-19f,
	0x1.28ccdap-25f,
};
/* erfc on [2, 4] in t = (x - 3) * 1, absolute: max weighted error 7.38e-10 in float64 before rounding to float */
static const float pk_erfc_c[12] = {
	0x1.72a0f4p-16f,
	-0x1.240752p-13f,
	0x1.b5ff32p-12f,
	-0x1.9dc154p-11f,
	0x1.11f402p-10f,
	-0x1.0a575ap-10f,
	0x1.81649ap-11f,
	-0x1.9b41bep-12f,
	0x1.27c3bep-13f,
	-0x1.83e528p-17f,
	-0x1.727226p-16f,
	0x1.3976ecp-17f,
};

#define PKM_LOG2E 0x1.715476p+0f      /* log2(e) rounded */
#define PKM_LN2_HI 0x1.62e43p-1f      /* ln 2 rounded to float */
#define PKM_LN2_LO -0x1.05c61p-29f    /* ln 2 - PKM_LN2_HI */
#define PKM_SHIFT 0x1.8p23f           /* adding it rounds to an integer */

#define PKM_HORNER(t, c, n, out)                                   \
	do {                                                       \
		V h_ = v_set1((c)[(n) - 1]);                       \
		for (int i_ = (n) - 2; i_ >= 0; i_--)              \
			h_ = v_fma(h_, (t), v_set1((c)[i_]));      \
		(out) = h_;                                        \
	} while (0)

static inline V pkm_abs(V x)
{
	return v_from_bits(vi_and(v_bits(x), vi_set1(0x7fffffff)));
}

/* mag with the sign of s */
static inline V pkm_copysign(V mag, V s)
{
	return v_from_bits(vi_or(vi_and(v_bits(mag), vi_set1(0x7fffffff)),
				 vi_and(v_bits(s), vi_set1((int32_t)0x80000000u))));
}

/* 2^n for n in [-126, 127], from the exponent field */
static inline V pkm_pow2i(VI n)
{
	return v_from_bits(vi_slli(vi_add(n, vi_set1(127)), 23));
}

/* e^x: x clamped to [-104, 89] (below, the result rounds to +0; above, it
 * overflows to +inf either way); n = round(x log2 e) by the shifter, r = x -
 * n ln2 in two fmaf (the first exact), e^r = 1 + (r + r^2 Q(r)), times 2^n
 * as two exact powers (2^(n>>1) then 2^(n - (n>>1))), so a denormal result is
 * rounded once. NaN gives x + x. */
static inline V pkm_exp(V x)
{
	V xc = v_min(v_max(x, v_set1(-104.0f)), v_set1(89.0f));
	V t = v_fma(xc, v_set1(PKM_LOG2E), v_set1(PKM_SHIFT));
	V n = v_sub(t, v_set1(PKM_SHIFT));
	VI ni = vi_sub(v_bits(t), v_bits(v_set1(PKM_SHIFT)));
	V r = v_fma(n, v_set1(-PKM_LN2_HI), xc);
	V q, p, y;
	VI n1, n2;

	r = v_fma(n, v_set1(-PKM_LN2_LO), r);
	PKM_HORNER(r, pk_exp_q, 5, q);
	p = v_fma(v_mul(r, r), q, r);
	p = v_add(p, v_set1(1.0f));
	n1 = vi_srai(ni, 1);
	n2 = vi_sub(ni, n1);
	y = v_mul(v_mul(p, pkm_pow2i(n1)), pkm_pow2i(n2));
	return v_sel(m_nan(x), v_add(x, x), y);
}

/* log x: a positive denormal scaled by 2^23 first; x = 2^k m with m in
 * [sqrt(1/2), sqrt(2)), f = m - 1 (exact), s = f / (2 + f), z = s^2,
 * log1p(f) = f - hfsq + s (hfsq + z L(z)), hfsq = f^2 / 2 (fdlibm's form),
 * plus k ln2 in two fmaf. x < 0 (and -inf) gives NaN, +-0 -inf, +inf +inf,
 * NaN x + x. */
static inline V pkm_log(V x)
{
	VI ix = v_bits(x);
	VM sub = m_and(mi_gt(ix, vi_set1(0)), mi_lt(ix, vi_set1(0x00800000)));
	VI kadj = vi_sel(sub, vi_set1(-23), vi_set1(0));
	VI k;
	V m, f, s, z, l, hfsq, dk, y;

	ix = vi_sel(sub, v_bits(v_mul(x, v_set1(0x1p23f))), ix);
	ix = vi_add(ix, vi_set1(0x3f800000 - 0x3f3504f3));
	k = vi_add(vi_sub(vi_srai(ix, 23), vi_set1(127)), kadj);
	ix = vi_add(vi_and(ix, vi_set1(0x007fffff)), vi_set1(0x3f3504f3));
	m = v_from_bits(ix);
	f = v_sub(m, v_set1(1.0f));
	s = v_div(f, v_add(v_set1(2.0f), f));
	z = v_mul(s, s);
	PKM_HORNER(z, pk_log_l, 4, l);
	hfsq = v_mul(v_mul(v_set1(0.5f), f), f);
	dk = v_cvt(k);
	y = v_mul(s, v_add(hfsq, v_mul(z, l)));
	y = v_fma(dk, v_set1(PKM_LN2_LO), y);
	y = v_sub(y, hfsq);
	y = v_add(y, f);
	y = v_fma(dk, v_set1(PKM_LN2_HI), y);
	y = v_sel(m_eq(x, v_set1(__builtin_inff())), x, y);
	y = v_sel(m_eq(x, v_set1(0.0f)), v_set1(-__builtin_inff()), y);
	y = v_sel(m_lt(x, v_set1(0.0f)), v_set1(__builtin_nanf("")), y);
	return v_sel(m_nan(x), v_add(x, x), y);
}

/* tanh x, computed on a = |x| and given x's sign (so tanh(-x) = -tanh(x)
 * exactly, and tanh(-0) = -0): a < 1: a + (a z) P(z), z = a^2 (one fmaf);
 * else, with a at most 10 (tanh rounds to 1 from 9.01), 1 - 2 / (e^(2a) + 1).
 * NaN gives x + x. */
static inline V pkm_tanh(V x)
{
	V a = pkm_abs(x);
	V z = v_mul(a, a);
	V p, small, ac, e, big;

	PKM_HORNER(z, pk_tanh_p, 9, p);
	small = v_fma(v_mul(a, z), p, a);
	ac = v_min(a, v_set1(10.0f));
	e = pkm_exp(v_add(ac, ac));
	big = v_sub(v_set1(1.0f), v_div(v_set1(2.0f), v_add(e, v_set1(1.0f))));
	return v_sel(m_nan(x), v_add(x, x), pkm_copysign(v_sel(m_lt(a, v_set1(1.0f)), small, big), x));
}

/* erf x, computed on a = |x| and given x's sign: a < 1: a + a P(a^2) (one
 * fmaf); 1 <= a < 2: 1 - E_b((a - 1.5) * 2); 2 <= a < 4: 1 - E_c(a - 3) (E ~
 * erfc, the shifts exact); beyond, 1. NaN gives x + x. */
static inline V pkm_erf(V x)
{
	V a = pkm_abs(x);
	V z = v_mul(a, a);
	V p, eb, ec, small, far;

	PKM_HORNER(z, pk_erf_p, 7, p);
	small = v_fma(a, p, a);
	PKM_HORNER(v_mul(v_sub(a, v_set1(1.5f)), v_set1(2.0f)), pk_erfc_b, 11, eb);
	PKM_HORNER(v_sub(a, v_set1(3.0f)), pk_erfc_c, 12, ec);
	far = v_sel(m_lt(a, v_set1(2.0f)), v_sub(v_set1(1.0f), eb),
		    v_sel(m_lt(a, v_set1(4.0f)), v_sub(v_set1(1.0f), ec), v_set1(1.0f)));
	return v_sel(m_nan(x), v_add(x, x), pkm_copysign(v_sel(m_lt(a, v_set1(1.0f)), small, far), x));
}

/* sigmoid x = (x >= 0 ? 1 : e) / (1 + e), e = e^-|x|: no overflow, and the
 * negative side keeps its relative accuracy. NaN stays NaN. */
static inline V pkm_sigmoid(V x)
{
	V e = pkm_exp(v_from_bits(vi_xor(v_bits(pkm_abs(x)), vi_set1((int32_t)0x80000000u))));
	V num = v_sel(m_ge(x, v_set1(0.0f)), v_set1(1.0f), e);

	return v_div(num, v_add(v_set1(1.0f), e));
}

#endif
