/*
 * portable-avx512.c - the AVX-512F path of the portable kernels: the
 * operations portable-kern.h and portable-math.h are written over, as
 * 16-float vectors. Compiled with -mavx512f -mavx2 -mfma and, as every file
 * of the engine, -ffp-contract=off (engine/meson.build); run only when the
 * CPU and the OS have AVX-512F (portable.c).
 *
 * Tiles: up to 4 vectors (64 columns) by 8 broadcast rows, 6 at 4 vectors
 * (24 accumulators of the 32 registers).
 */
#include "engine/core/portable-isa.h"

#if defined(__x86_64__)
#include <immintrin.h>

#if defined(__FAST_MATH__) || !defined(__AVX512F__) || !defined(__FMA__)
#error "portable-avx512.c needs -mavx512f -mfma and no fast-math"
#endif

#define PK_OPS pk_ops_avx512
#define PK_NAME "avx512"

/* portable-math.h's vector */
typedef __m512 V;
typedef __m512i VI;
typedef __mmask16 VM;
#define VL 16
#define v_set1(x) _mm512_set1_ps(x)
#define vi_set1(x) _mm512_set1_epi32(x)
#define v_add _mm512_add_ps
#define v_sub _mm512_sub_ps
#define v_mul _mm512_mul_ps
#define v_div _mm512_div_ps
#define v_fma _mm512_fmadd_ps
#define v_min _mm512_min_ps   /* a < b ? a : b */
#define v_max _mm512_max_ps   /* a > b ? a : b */
#define v_bits _mm512_castps_si512
#define v_from_bits _mm512_castsi512_ps
#define vi_add _mm512_add_epi32
#define vi_sub _mm512_sub_epi32
#define vi_and _mm512_and_si512
#define vi_or _mm512_or_si512
#define vi_xor _mm512_xor_si512
#define vi_srai _mm512_srai_epi32
#define vi_slli _mm512_slli_epi32
#define v_cvt _mm512_cvtepi32_ps
#define m_lt(a, b) _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ)
#define m_ge(a, b) _mm512_cmp_ps_mask(a, b, _CMP_GE_OQ)
#define m_eq(a, b) _mm512_cmp_ps_mask(a, b, _CMP_EQ_OQ)
#define m_nan(a) _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q)
#define mi_lt(a, b) _mm512_cmplt_epi32_mask(a, b)
#define mi_gt(a, b) _mm512_cmpgt_epi32_mask(a, b)
#define m_and(a, b) ((VM)((a) & (b)))
#define v_sel(m, a, b) _mm512_mask_blend_ps(m, b, a)
#define vi_sel(m, a, b) _mm512_mask_blend_epi32(m, b, a)

static inline __mmask16 mask_n(unsigned n)
{
	return n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1);
}

#define v_loadn(p, n) _mm512_maskz_loadu_ps(mask_n(n), p)
#define v_storen(p, v, n) _mm512_mask_storeu_ps(p, mask_n(n), v)

/* the tile */
typedef __m512 T;
typedef __mmask16 TM;
#define TVL 16
#define PK_NV 4
#define PK_NB1 8
#define PK_NB2 8
#define PK_NB3 8
#define PK_NB4 6
#define t_zero() _mm512_setzero_ps()
#define t_set1(x) _mm512_set1_ps(x)
#define t_load(p) _mm512_loadu_ps(p)
#define t_mask(n) mask_n(n)
#define t_loadm(p, m) _mm512_maskz_loadu_ps(m, p)
#define t_storem(p, v, m) _mm512_mask_storeu_ps(p, m, v)
#define t_mul _mm512_mul_ps
#define t_fma _mm512_fmadd_ps
#define t_add _mm512_add_ps
#define PK_CX_NB1 8
#define PK_CX_NB2 6
#define PK_CX_NB3 4
#define PK_CX_NB4 3
#define PK_DT_NB 4
#define PK_DT_NQ 6

/* 16 float lanes: one vector */
typedef __m512 F16;
#define f16_zero() _mm512_setzero_ps()
#define f16_loadn(p, n) _mm512_maskz_loadu_ps(mask_n(n), p)
#define f16_add _mm512_add_ps
#define f16_fma _mm512_fmadd_ps
#define f16_store(lanes, v) _mm512_storeu_ps(lanes, v)
#define f16_load(lanes) _mm512_loadu_ps(lanes)
#define f16_fman(a, b, c, n) _mm512_mask3_fmadd_ps(a, b, c, mask_n(n))


static inline F16 f16_maxnan(F16 s, F16 x)
{
	return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), _mm512_max_ps(x, s), x);
}

/* 16 double lanes: two vectors */
typedef struct {
	__m512d lo, hi;
} D16;

static inline D16 d16_cvtn(const float *p, unsigned n)
{
	__m512 f = _mm512_maskz_loadu_ps(mask_n(n), p);
	D16 r;

	r.lo = _mm512_cvtps_pd(_mm512_castps512_ps256(f));
	r.hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(f), 1)));
	return r;
}

static inline D16 d16_set1(double x)
{
	return (D16){ _mm512_set1_pd(x), _mm512_set1_pd(x) };
}

static inline D16 d16_add(D16 a, D16 b)
{
	return (D16){ _mm512_add_pd(a.lo, b.lo), _mm512_add_pd(a.hi, b.hi) };
}

static inline D16 d16_sub(D16 a, D16 b)
{
	return (D16){ _mm512_sub_pd(a.lo, b.lo), _mm512_sub_pd(a.hi, b.hi) };
}

static inline D16 d16_mul(D16 a, D16 b)
{
	return (D16){ _mm512_mul_pd(a.lo, b.lo), _mm512_mul_pd(a.hi, b.hi) };
}

static inline D16 d16_load(const double *lanes)
{
	return (D16){ _mm512_loadu_pd(lanes), _mm512_loadu_pd(lanes + 8) };
}

static inline void d16_store(double *lanes, D16 v)
{
	_mm512_storeu_pd(lanes, v.lo);
	_mm512_storeu_pd(lanes + 8, v.hi);
}

/* The packing transpose, in 16 x 16 blocks through the registers (edges
 * masked). */
static void pk_pack_t(float *dst, size_t ld_dst, const float *src, size_t ld_src, size_t k, size_t n)
{
	for (size_t j0 = 0; j0 < n; j0 += 16) {
		unsigned nj = n - j0 < 16 ? (unsigned)(n - j0) : 16;

		for (size_t k0 = 0; k0 < k; k0 += 16) {
			unsigned nk = k - k0 < 16 ? (unsigned)(k - k0) : 16;
			__m512 r[16], t[16];

			for (unsigned i = 0; i < 16; i++)
				r[i] = i < nj ? _mm512_maskz_loadu_ps(mask_n(nk), src + (j0 + i) * ld_src + k0)
					      : _mm512_setzero_ps();
			for (int i = 0; i < 16; i += 2) {
				t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
				t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
			}
			for (int g = 0; g < 16; g += 4) {
				r[g] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[g]), _mm512_castps_pd(t[g + 2])));
				r[g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[g]), _mm512_castps_pd(t[g + 2])));
				r[g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[g + 1]), _mm512_castps_pd(t[g + 3])));
				r[g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[g + 1]), _mm512_castps_pd(t[g + 3])));
			}
			/* r[4g + q], 128-bit lane L: column 4L + q of rows 4g .. 4g + 3 */
			for (int q = 0; q < 4; q++) {
				__m512 x = _mm512_shuffle_f32x4(r[q], r[4 + q], 0x88);
				__m512 y = _mm512_shuffle_f32x4(r[q], r[4 + q], 0xdd);
				__m512 x2 = _mm512_shuffle_f32x4(r[8 + q], r[12 + q], 0x88);
				__m512 y2 = _mm512_shuffle_f32x4(r[8 + q], r[12 + q], 0xdd);

				t[q] = _mm512_shuffle_f32x4(x, x2, 0x88);
				t[8 + q] = _mm512_shuffle_f32x4(x, x2, 0xdd);
				t[4 + q] = _mm512_shuffle_f32x4(y, y2, 0x88);
				t[12 + q] = _mm512_shuffle_f32x4(y, y2, 0xdd);
			}
			for (unsigned c = 0; c < nk; c++)
				_mm512_mask_storeu_ps(dst + (k0 + c) * ld_dst + j0, mask_n(nj), t[c]);
		}
	}
}

#define PK_PROBE_ATTR __attribute__((noinline, noclone))

#include "engine/core/portable-kern.h"

#endif
