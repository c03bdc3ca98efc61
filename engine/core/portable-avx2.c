/*
 * portable-avx2.c - the AVX2+FMA path of the portable kernels: the
 * operations portable-kern.h and portable-math.h are written over, as
 * 8-float vectors (the 16 lanes of a reduction are two). Compiled with -mavx2
 * -mfma and -ffp-contract=off (engine/meson.build); run only when the CPU
 * has AVX2 and FMA (portable.c).
 *
 * Tiles: up to 2 vectors (16 columns) by 8 broadcast rows, 6 at 2 vectors
 * (12 accumulators of the 16 registers, Haswell's classic shape).
 */
#include "engine/core/portable-isa.h"

#if defined(__x86_64__)
#include <immintrin.h>

#if defined(__FAST_MATH__) || !defined(__AVX2__) || !defined(__FMA__)
#error "portable-avx2.c needs -mavx2 -mfma and no fast-math"
#endif

#define PK_OPS pk_ops_avx2
#define PK_NAME "avx2"

typedef __m256 V;
typedef __m256i VI;
typedef __m256 VM;
#define VL 8
#define v_set1(x) _mm256_set1_ps(x)
#define vi_set1(x) _mm256_set1_epi32(x)
#define v_add _mm256_add_ps
#define v_sub _mm256_sub_ps
#define v_mul _mm256_mul_ps
#define v_div _mm256_div_ps
#define v_fma _mm256_fmadd_ps
#define v_min _mm256_min_ps   /* a < b ? a : b */
#define v_max _mm256_max_ps   /* a > b ? a : b */
#define v_bits _mm256_castps_si256
#define v_from_bits _mm256_castsi256_ps
#define vi_add _mm256_add_epi32
#define vi_sub _mm256_sub_epi32
#define vi_and _mm256_and_si256
#define vi_or _mm256_or_si256
#define vi_xor _mm256_xor_si256
#define vi_srai _mm256_srai_epi32
#define vi_slli _mm256_slli_epi32
#define v_cvt _mm256_cvtepi32_ps
#define m_lt(a, b) _mm256_cmp_ps(a, b, _CMP_LT_OQ)
#define m_ge(a, b) _mm256_cmp_ps(a, b, _CMP_GE_OQ)
#define m_eq(a, b) _mm256_cmp_ps(a, b, _CMP_EQ_OQ)
#define m_nan(a) _mm256_cmp_ps(a, a, _CMP_UNORD_Q)
#define mi_lt(a, b) _mm256_castsi256_ps(_mm256_cmpgt_epi32(b, a))
#define mi_gt(a, b) _mm256_castsi256_ps(_mm256_cmpgt_epi32(a, b))
#define m_and _mm256_and_ps
#define v_sel(m, a, b) _mm256_blendv_ps(b, a, m)
#define vi_sel(m, a, b) _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(b), _mm256_castsi256_ps(a), m))

/* lanes < n all ones */
static inline __m256i mask_n(unsigned n)
{
	return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

static inline __m256 loadn(const float *p, unsigned n)
{
	return n >= 8 ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, mask_n(n));
}

static inline void storen(float *p, __m256 v, unsigned n)
{
	if (n >= 8)
		_mm256_storeu_ps(p, v);
	else
		_mm256_maskstore_ps(p, mask_n(n), v);
}

#define v_loadn(p, n) loadn(p, n)
#define v_storen(p, v, n) storen(p, v, n)

/* the tile */
typedef __m256 T;
typedef __m256i TM;
#define TVL 8
#define PK_NV 2
#define PK_NB1 8
#define PK_NB2 6
#define PK_NB3 0
#define PK_NB4 0
#define t_zero() _mm256_setzero_ps()
#define t_set1(x) _mm256_set1_ps(x)
#define t_load(p) _mm256_loadu_ps(p)
#define t_mask(n) mask_n(n)
#define t_loadm(p, m) _mm256_maskload_ps(p, m)
#define t_storem(p, v, m) _mm256_maskstore_ps(p, m, v)
#define t_mul _mm256_mul_ps
#define t_fma _mm256_fmadd_ps
#define t_add _mm256_add_ps
#define PK_CX_NB1 6
#define PK_CX_NB2 3
#define PK_CX_NB3 0
#define PK_CX_NB4 0
#define PK_DT_NB 2
#define PK_DT_NQ 3

/* 16 float lanes: two vectors */
typedef struct {
	__m256 lo, hi;
} F16;

static inline F16 f16_loadn(const float *p, unsigned n)
{
	F16 r;

	r.lo = loadn(p, n < 8 ? n : 8);
	r.hi = n > 8 ? loadn(p + 8, n - 8) : _mm256_setzero_ps();
	return r;
}

static inline F16 f16_zero(void)
{
	return (F16){ _mm256_setzero_ps(), _mm256_setzero_ps() };
}

/* fmaf on lanes < n, lanes >= n keep c's */
static inline F16 f16_fman(F16 a, F16 b, F16 c, unsigned n)
{
	__m256 lo = _mm256_fmadd_ps(a.lo, b.lo, c.lo), hi = _mm256_fmadd_ps(a.hi, b.hi, c.hi);

	lo = _mm256_blendv_ps(c.lo, lo, _mm256_castsi256_ps(mask_n(n < 8 ? n : 8)));
	hi = n > 8 ? _mm256_blendv_ps(c.hi, hi, _mm256_castsi256_ps(mask_n(n - 8))) : c.hi;
	return (F16){ lo, hi };
}


static inline F16 f16_add(F16 a, F16 b)
{
	return (F16){ _mm256_add_ps(a.lo, b.lo), _mm256_add_ps(a.hi, b.hi) };
}

static inline F16 f16_fma(F16 a, F16 b, F16 c)
{
	return (F16){ _mm256_fmadd_ps(a.lo, b.lo, c.lo), _mm256_fmadd_ps(a.hi, b.hi, c.hi) };
}

static inline __m256 maxnan8(__m256 s, __m256 x)
{
	return _mm256_blendv_ps(_mm256_max_ps(x, s), x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}

static inline F16 f16_maxnan(F16 s, F16 x)
{
	return (F16){ maxnan8(s.lo, x.lo), maxnan8(s.hi, x.hi) };
}

static inline F16 f16_load(const float *lanes)
{
	return (F16){ _mm256_loadu_ps(lanes), _mm256_loadu_ps(lanes + 8) };
}

static inline void f16_store(float *lanes, F16 v)
{
	_mm256_storeu_ps(lanes, v.lo);
	_mm256_storeu_ps(lanes + 8, v.hi);
}

/* 16 double lanes: four vectors */
typedef struct {
	__m256d v[4];
} D16;

static inline D16 d16_cvtn(const float *p, unsigned n)
{
	F16 f = f16_loadn(p, n);
	D16 r;

	r.v[0] = _mm256_cvtps_pd(_mm256_castps256_ps128(f.lo));
	r.v[1] = _mm256_cvtps_pd(_mm256_extractf128_ps(f.lo, 1));
	r.v[2] = _mm256_cvtps_pd(_mm256_castps256_ps128(f.hi));
	r.v[3] = _mm256_cvtps_pd(_mm256_extractf128_ps(f.hi, 1));
	return r;
}

static inline D16 d16_set1(double x)
{
	__m256d v = _mm256_set1_pd(x);

	return (D16){ { v, v, v, v } };
}

#define D16_OP(name, op)                                                        \
	static inline D16 name(D16 a, D16 b)                                    \
	{                                                                       \
		return (D16){ { op(a.v[0], b.v[0]), op(a.v[1], b.v[1]), op(a.v[2], b.v[2]), \
				op(a.v[3], b.v[3]) } };                         \
	}
D16_OP(d16_add, _mm256_add_pd)
D16_OP(d16_sub, _mm256_sub_pd)
D16_OP(d16_mul, _mm256_mul_pd)

static inline D16 d16_load(const double *lanes)
{
	return (D16){ { _mm256_loadu_pd(lanes), _mm256_loadu_pd(lanes + 4), _mm256_loadu_pd(lanes + 8),
			_mm256_loadu_pd(lanes + 12) } };
}

static inline void d16_store(double *lanes, D16 x)
{
	for (int i = 0; i < 4; i++)
		_mm256_storeu_pd(lanes + 4 * i, x.v[i]);
}

/* The packing transpose, in 8 x 8 blocks through the registers (edges
 * masked). */
static void pk_pack_t(float *dst, size_t ld_dst, const float *src, size_t ld_src, size_t k, size_t n)
{
	for (size_t j0 = 0; j0 < n; j0 += 8) {
		unsigned nj = n - j0 < 8 ? (unsigned)(n - j0) : 8;

		for (size_t k0 = 0; k0 < k; k0 += 8) {
			unsigned nk = k - k0 < 8 ? (unsigned)(k - k0) : 8;
			__m256 r[8], t[8], u[8];

			for (unsigned i = 0; i < 8; i++)
				r[i] = i < nj ? loadn(src + (j0 + i) * ld_src + k0, nk) : _mm256_setzero_ps();
			for (int i = 0; i < 8; i += 2) {
				t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
				t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
			}
			for (int g = 0; g < 8; g += 4) {
				u[g] = _mm256_shuffle_ps(t[g], t[g + 2], 0x44);
				u[g + 1] = _mm256_shuffle_ps(t[g], t[g + 2], 0xee);
				u[g + 2] = _mm256_shuffle_ps(t[g + 1], t[g + 3], 0x44);
				u[g + 3] = _mm256_shuffle_ps(t[g + 1], t[g + 3], 0xee);
			}
			for (int q = 0; q < 4; q++) {
				r[q] = _mm256_permute2f128_ps(u[q], u[4 + q], 0x20);
				r[4 + q] = _mm256_permute2f128_ps(u[q], u[4 + q], 0x31);
			}
			for (unsigned c = 0; c < nk; c++)
				storen(dst + (k0 + c) * ld_dst + j0, r[c], nj);
		}
	}
}

#define PK_PROBE_ATTR __attribute__((noinline, noclone))

#include "engine/core/portable-kern.h"

#endif
