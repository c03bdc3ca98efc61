/*
 * bf16.c - bfloat16 products on AMX tiles and AVX-512-BF16. See bf16.h.
 *
 * A product, whichever the path: B is packed a panel of up to 256
 * columns at a time (fewer for a long k: a panel is about 512 KiB, at least
 * 16 columns) into the pair-interleaved layout (row p of the panel
 * holds, for each column j, the dword bf16(B[2p][j]) | bf16(B[2p+1][j]) << 16),
 * A a panel of as many rows at a time into rows of bfloat16; both are
 * padded with zeros, k to a multiple of 32 and the panels to multiples of 16
 * rows and columns. Then each block of up to 32 x 32 of C is summed over the
 * whole of k by a kernel into a staging block (zero at the start), and
 * C = alpha * acc + beta * C is written for the block's valid part. The
 * padding adds exact zeros at the end of the sums, so neither the padding
 * nor the blocking changes a bit.
 *
 *   AMX: tiles 0-3 the 2 x 2 tiles of a 32 x 32 block of C (16 x 16 float32
 *   each), 4-5 two tiles of A (16 rows x 32 bf16), 6-7 two tiles of B (16
 *   pair rows x 16 columns); one tdpbf16ps per pair of tiles per 32 values of k.
 *   AVX-512-BF16: up to 8 rows x 32 columns of accumulators in zmm registers,
 *   one vdpbf16ps per row, 16 columns and pair of k.
 *
 * Only this file uses the bf16 instruction sets; its functions are compiled
 * for them one by one (target attributes) and run only once bf16_isa() says
 * the CPU and the operating system have them.
 */
#include "engine/core/bf16.h"

#include <cpuid.h>
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define STAGE_BYTES (32 * 32 * sizeof(float))   /* one block of C, rows of 32 floats */
#define PANEL_MAX 256        /* rows of A, columns of B packed at a time at most */
#define PANEL_BYTES (512u << 10)   /* ... and in about this many bytes, at least 16 */

#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

/* Both paths pack with AVX-512 and AVX-512-BF16 (bf16_choose requires them) */
#define TARGET_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))
#define TARGET_AMX __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,amx-tile,amx-bf16")))

static size_t round_up(size_t x, size_t to)
{
	return (x + to - 1) / to * to;
}

/* ---- the CPU --------------------------------------------------------------- */

static uint64_t xgetbv0(void)
{
	uint32_t lo, hi;

	__asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
	return ((uint64_t)hi << 32) | lo;
}

void bf16_cpu_detect(struct bf16_cpu *cpu)
{
	unsigned a, b, c, d, max;
	uint64_t xcr0 = 0;

	memset(cpu, 0, sizeof(*cpu));
	max = __get_cpuid_max(0, NULL);
	if (max < 7)
		return;
	__cpuid_count(1, 0, a, b, c, d);
	if (c & (1u << 27))   /* OSXSAVE: xgetbv may be used */
		xcr0 = xgetbv0();
	__cpuid_count(7, 0, a, b, c, d);
	cpu->avx512f = b & (1u << 16);
	cpu->avx512bw = b & (1u << 30);
	cpu->amx_bf16 = d & (1u << 22);
	cpu->amx_tile = d & (1u << 24);
	__cpuid_count(7, 1, a, b, c, d);
	cpu->avx512_bf16 = a & (1u << 5);
	/* XCR0: SSE, AVX, opmask, ZMM_Hi256, Hi16_ZMM; XTILECFG, XTILEDATA */
	cpu->os_avx512 = (xcr0 & 0xe6) == 0xe6;
	if (cpu->amx_tile && (xcr0 & 0x60000) == 0x60000)
		cpu->os_amx = syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
}

/* Appends ", name" (or "name") to a list in buf when `lacks`. */
static void add_missing(char *buf, size_t len, bool lacks, const char *name)
{
	size_t used = strlen(buf);

	if (lacks && used < len)
		snprintf(buf + used, len - used, "%s%s", used ? ", " : "", name);
}

enum bf16_isa bf16_choose(const struct bf16_cpu *cpu, const char *env, char *why, size_t len)
{
	bool base = cpu->avx512f && cpu->avx512bw && cpu->os_avx512;
	bool avx = base && cpu->avx512_bf16;
	bool amx = avx && cpu->amx_tile && cpu->amx_bf16 && cpu->os_amx;   /* packs with AVX-512-BF16 */
	char lacks[160] = "";

	if (why && len)
		why[0] = '\0';
	add_missing(lacks, sizeof(lacks), !cpu->avx512f, "avx512f");
	add_missing(lacks, sizeof(lacks), !cpu->avx512bw, "avx512bw");
	add_missing(lacks, sizeof(lacks), !cpu->avx512_bf16, "avx512_bf16");
	add_missing(lacks, sizeof(lacks), !cpu->amx_tile, "amx_tile");
	add_missing(lacks, sizeof(lacks), !cpu->amx_bf16, "amx_bf16");
	if (!env || !*env || strcmp(env, "auto") == 0) {
		if (amx)
			return BF16_AMX;
		if (avx)
			return BF16_AVX512;
		if (why && len) {
			if (*lacks)
				snprintf(why, len,
					 "bf16 needs a CPU with AMX (amx_tile, amx_bf16) or AVX-512-BF16 (avx512f, avx512bw, avx512_bf16); this one lacks %s",
					 lacks);
			else
				snprintf(why, len,
					 "bf16 needs the operating system to enable AVX-512 state (XCR0) on this CPU, and it does not");
		}
		return BF16_NONE;
	}
	if (strcmp(env, "off") == 0) {
		if (why && len)
			snprintf(why, len,
				 "bf16 needs a CPU with AMX (amx_tile, amx_bf16) or AVX-512-BF16 (avx512_bf16); TRAIND_BF16=off in traind's environment hides them");
		return BF16_NONE;
	}
	if (strcmp(env, "amx") == 0) {
		if (amx)
			return BF16_AMX;
		if (why && len) {
			if (avx && cpu->amx_tile && cpu->amx_bf16)
				snprintf(why, len,
					 "TRAIND_BF16=amx asks for AMX tiles, and the kernel does not grant tile data to this process (arch_prctl ARCH_REQ_XCOMP_PERM; Linux 5.16 or later)");
			else
				snprintf(why, len, "TRAIND_BF16=amx asks for AMX tiles, and this CPU lacks %s", lacks);
		}
		return BF16_NONE;
	}
	if (strcmp(env, "avx512") == 0 || strcmp(env, "avx512-bf16") == 0) {
		if (avx)
			return BF16_AVX512;
		if (why && len)
			snprintf(why, len, "TRAIND_BF16=%s asks for AVX-512-BF16, and this %s", env,
				 base ? "CPU lacks avx512_bf16" : "CPU or operating system lacks AVX-512");
		return BF16_NONE;
	}
	if (why && len)
		snprintf(why, len, "TRAIND_BF16='%.32s' is not auto, amx, avx512 or off", env);
	return BF16_NONE;
}

static pthread_once_t isa_once = PTHREAD_ONCE_INIT;
static enum bf16_isa isa_chosen;
static char isa_why[256];

static void isa_decide(void)
{
	struct bf16_cpu cpu;

	bf16_cpu_detect(&cpu);
	isa_chosen = bf16_choose(&cpu, getenv("TRAIND_BF16"), isa_why, sizeof(isa_why));
}

enum bf16_isa bf16_isa(void)
{
	pthread_once(&isa_once, isa_decide);
	return isa_chosen;
}

const char *bf16_why(void)
{
	pthread_once(&isa_once, isa_decide);
	return isa_why;
}

const char *bf16_isa_name(enum bf16_isa isa)
{
	switch (isa) {
	case BF16_AMX: return "amx";
	case BF16_AVX512: return "avx512-bf16";
	case BF16_NONE: break;
	}
	return "none";
}

/* ---- rounding ----------------------------------------------------------- */

uint16_t bf16_from_float(float f)
{
	uint32_t u;

	if (f != f)
		return 0x7fc0;
	memcpy(&u, &f, sizeof(u));
	u += 0x7fffu + ((u >> 16) & 1u);
	return (uint16_t)(u >> 16);
}

float bf16_to_float(uint16_t h)
{
	uint32_t u = (uint32_t)h << 16;
	float f;

	memcpy(&f, &u, sizeof(f));
	return f;
}

/* The lanes [0, n) of a 16-lane vector (n may exceed 16). */
static inline __mmask16 lanes(size_t n)
{
	return n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1);
}

/* ---- packing ---------------------------------------------------------------- */

/* The packing converts with vcvtne(2)ps2bf16: round to nearest even as
 * bf16_from_float, except that float32 denormals become zero (the products'
 * instructions read bfloat16 denormals as zero anyway; the one difference is
 * a float32 just below FLT_MIN, which bf16_from_float rounds up to FLT_MIN)
 * and that a NaN stays the same NaN, quieted. */

/* 16 floats as 16 bfloat16. */
TARGET_BF16 static inline __m256i to_bf16(__m512 x)
{
	return (__m256i)_mm512_cvtneps_pbh(x);
}

/* Two rows of 16 floats as 16 pair dwords: bf16(lo[j]) | bf16(hi[j]) << 16. */
TARGET_BF16 static inline __m512i pairs_of_rows(__m512 lo, __m512 hi)
{
	return _mm512_or_si512(_mm512_cvtepu16_epi32(to_bf16(lo)),
			       _mm512_slli_epi32(_mm512_cvtepu16_epi32(to_bf16(hi)), 16));
}

/* 32 consecutive floats (two vectors) as 16 pair dwords: bf16(x[2j]) | bf16(x[2j + 1]) << 16. */
TARGET_BF16 static inline __m512i pairs_of_run(__m512 x0, __m512 x1)
{
	return (__m512i)_mm512_cvtne2ps_pbh(x1, x0);
}

/* r[i] (16 dwords each) becomes its transpose: r[j] holds element j of each old r[i]. */
TARGET_BF16 static inline void transpose16(__m512i r[16])
{
	__m512i t[16], c[16];

	for (int q = 0; q < 8; q++) {
		t[2 * q] = _mm512_unpacklo_epi32(r[2 * q], r[2 * q + 1]);
		t[2 * q + 1] = _mm512_unpackhi_epi32(r[2 * q], r[2 * q + 1]);
	}
	/* c[4g + s], lane L: element 4L + s of the rows 4g..4g+3 */
	for (int g = 0; g < 4; g++) {
		c[4 * g + 0] = _mm512_unpacklo_epi64(t[4 * g], t[4 * g + 2]);
		c[4 * g + 1] = _mm512_unpackhi_epi64(t[4 * g], t[4 * g + 2]);
		c[4 * g + 2] = _mm512_unpacklo_epi64(t[4 * g + 1], t[4 * g + 3]);
		c[4 * g + 3] = _mm512_unpackhi_epi64(t[4 * g + 1], t[4 * g + 3]);
	}
	for (int s = 0; s < 4; s++) {
		__m512i x01 = _mm512_shuffle_i32x4(c[s], c[4 + s], 0x44);
		__m512i x23 = _mm512_shuffle_i32x4(c[8 + s], c[12 + s], 0x44);
		__m512i y01 = _mm512_shuffle_i32x4(c[s], c[4 + s], 0xee);
		__m512i y23 = _mm512_shuffle_i32x4(c[8 + s], c[12 + s], 0xee);

		r[s] = _mm512_shuffle_i32x4(x01, x23, 0x88);
		r[4 + s] = _mm512_shuffle_i32x4(x01, x23, 0xdd);
		r[8 + s] = _mm512_shuffle_i32x4(y01, y23, 0x88);
		r[12 + s] = _mm512_shuffle_i32x4(y01, y23, 0xdd);
	}
}

/* 16 floats at p, the lanes [0, n) of them (none when p is NULL). */
TARGET_BF16 static inline __m512 load16(const float *p, size_t n)
{
	return p && n ? _mm512_maskz_loadu_ps(lanes(n), p) : _mm512_setzero_ps();
}

/* ap (mbp, kp) = bf16(op(A)[m0 + r][c]) for r < mb, c < k; zero elsewhere.
 * op(A) (m, k) is A (lda) or, with ta, the transpose of A stored (k, m). */
TARGET_BF16 static void pack_a(uint16_t *ap, size_t kp, int ta, const float *a, size_t lda,
				 size_t m0, size_t mb, size_t mbp, size_t k)
{
	if (!ta) {
		for (size_t r = 0; r < mbp; r++) {
			uint16_t *dst = ap + r * kp;
			const float *src = r < mb ? a + (m0 + r) * lda : NULL;

			for (size_t c = 0; c < kp; c += 16)
				_mm256_storeu_si256((__m256i *)(dst + c),
						    to_bf16(load16(src ? src + c : NULL, c < k ? k - c : 0)));
		}
		return;
	}
	/* pairs of rows of the stored A (k, m), 16 columns at a time, transposed */
	for (size_t r0 = 0; r0 < mbp; r0 += 16) {
		size_t cols = r0 < mb ? mb - r0 : 0;

		for (size_t p0 = 0; p0 < kp / 2; p0 += 16) {
			__m512i v[16];

			for (size_t i = 0; i < 16; i++) {
				size_t c = 2 * (p0 + i);
				const float *lo = c < k ? a + c * lda + m0 + r0 : NULL;
				const float *hi = c + 1 < k ? a + (c + 1) * lda + m0 + r0 : NULL;

				v[i] = pairs_of_rows(load16(lo, cols), load16(hi, cols));
			}
			transpose16(v);
			for (size_t j = 0; j < 16; j++)
				_mm512_storeu_si512(ap + (r0 + j) * kp + 2 * p0, v[j]);
		}
	}
}

/* bp (kp / 2, nbp) dwords: bf16(op(B)[2p][n0 + j]) | bf16(op(B)[2p + 1][n0 + j]) << 16
 * for j < nb and rows < k; zero elsewhere. op(B) (k, n) is B (ldb) or, with
 * tb, the transpose of B stored (n, k). */
TARGET_BF16 static void pack_b(uint32_t *bp, size_t nbp, int tb, const float *b, size_t ldb,
				 size_t n0, size_t nb, size_t k, size_t kp)
{
	if (!tb) {
		for (size_t p = 0; p < kp / 2; p++) {
			const float *r0 = 2 * p < k ? b + 2 * p * ldb + n0 : NULL;
			const float *r1 = 2 * p + 1 < k ? b + (2 * p + 1) * ldb + n0 : NULL;
			uint32_t *dst = bp + p * nbp;

			if (!r0) {   /* the padding of k */
				memset(dst, 0, nbp * sizeof(*dst));
				continue;
			}
			for (size_t c = 0; c < nbp; c += 16) {
				size_t n = c < nb ? nb - c : 0;

				_mm512_storeu_si512(dst + c, pairs_of_rows(load16(r0 ? r0 + c : NULL, n),
									   load16(r1 ? r1 + c : NULL, n)));
			}
		}
		return;
	}
	/* runs of k of 16 rows of the stored B (n, k), transposed */
	for (size_t j0 = 0; j0 < nbp; j0 += 16) {
		for (size_t p0 = 0; p0 < kp / 2; p0 += 16) {
			size_t c = 2 * p0, n0k = c < k ? k - c : 0, n1k = c + 16 < k ? k - c - 16 : 0;
			__m512i v[16];

			for (size_t i = 0; i < 16; i++) {
				const float *row = j0 + i < nb ? b + (n0 + j0 + i) * ldb + c : NULL;

				v[i] = pairs_of_run(load16(row, n0k), load16(row ? row + 16 : NULL, n1k));
			}
			transpose16(v);
			for (size_t q = 0; q < 16; q++)
				_mm512_storeu_si512(bp + (p0 + q) * nbp + j0, v[q]);
		}
	}
}

/* ---- the kernels ---------------------------------------------------------- */

/* acc (rows x cols of the staging block, rows of 32) from the packed panels:
 * ap at the block's first row (rows of kp), bp at its first column (rows of
 * nbp dwords). */

struct tilecfg {
	uint8_t palette;
	uint8_t start_row;
	uint8_t reserved[14];
	uint16_t colsb[16];
	uint8_t rows[16];
};

TARGET_AMX static void amx_config(void)
{
	struct tilecfg cfg;

	memset(&cfg, 0, sizeof(cfg));
	cfg.palette = 1;
	for (int t = 0; t < 8; t++) {
		cfg.rows[t] = 16;
		cfg.colsb[t] = 64;
	}
	/* not GCC 12's _tile_loadconfig: its asm names only the first 8 bytes
	 * of the configuration as read, so the stores to the rest were dropped */
	__asm__ volatile("ldtilecfg %0" : : "m"(cfg));
}

TARGET_AMX static void amx_release(void)
{
	_tile_release();
}

/* One block: 16 or 32 rows (two), 16 or 32 columns (two), into out (rows of
 * ldo floats: the staging block, or C itself when alpha 1 and beta 0 make acc
 * the result). */
TARGET_AMX static inline __attribute__((always_inline)) void
amx_block(const uint16_t *ap, size_t kp, const uint32_t *bp, size_t nbp, bool two_rows,
	  bool two_cols, float *out, size_t ldo)
{
	const size_t sa = kp * sizeof(uint16_t), sb = nbp * sizeof(uint32_t);

	_tile_zero(0);
	_tile_zero(1);
	_tile_zero(2);
	_tile_zero(3);
	for (size_t kk = 0; kk < kp; kk += 32) {
		const uint16_t *a0 = ap + kk;
		const uint32_t *b0 = bp + kk / 2 * nbp;

		_tile_loadd(4, a0, sa);
		_tile_loadd(6, b0, sb);
		_tile_dpbf16ps(0, 4, 6);
		if (two_cols) {
			_tile_loadd(7, b0 + 16, sb);
			_tile_dpbf16ps(1, 4, 7);
		}
		if (two_rows) {
			_tile_loadd(5, a0 + 16 * kp, sa);
			_tile_dpbf16ps(2, 5, 6);
			if (two_cols)
				_tile_dpbf16ps(3, 5, 7);
		}
	}
	_tile_stored(0, out, ldo * sizeof(float));
	if (two_cols)
		_tile_stored(1, out + 16, ldo * sizeof(float));
	if (two_rows)
		_tile_stored(2, out + 16 * ldo, ldo * sizeof(float));
	if (two_rows && two_cols)
		_tile_stored(3, out + 16 * ldo + 16, ldo * sizeof(float));
}

TARGET_AMX static void amx_any(const uint16_t *ap, size_t kp, const uint32_t *bp, size_t nbp,
			       size_t rows, size_t cols, float *out, size_t ldo)
{
	if (rows > 16 && cols > 16)
		amx_block(ap, kp, bp, nbp, true, true, out, ldo);
	else if (rows > 16)
		amx_block(ap, kp, bp, nbp, true, false, out, ldo);
	else if (cols > 16)
		amx_block(ap, kp, bp, nbp, false, true, out, ldo);
	else
		amx_block(ap, kp, bp, nbp, false, false, out, ldo);
}

/* R rows (R <= 8), 16 or 32 columns (two). */
TARGET_BF16 static inline __attribute__((always_inline)) void
avx_rows(const uint16_t *ap, size_t kp, const uint32_t *bp, size_t nbp, int R, bool two,
	 float *stage)
{
	__m512 acc[8][2];

	for (int r = 0; r < R; r++) {
		acc[r][0] = _mm512_setzero_ps();
		acc[r][1] = _mm512_setzero_ps();
	}
	for (size_t p = 0; p < kp / 2; p++) {
		__m512bh b0 = (__m512bh)_mm512_loadu_si512(bp + p * nbp);
		__m512bh b1 = two ? (__m512bh)_mm512_loadu_si512(bp + p * nbp + 16) : b0;

		for (int r = 0; r < R; r++) {
			uint32_t pair;
			__m512bh a;

			memcpy(&pair, ap + r * kp + 2 * p, sizeof(pair));
			a = (__m512bh)_mm512_set1_epi32((int)pair);
			acc[r][0] = _mm512_dpbf16_ps(acc[r][0], a, b0);
			if (two)
				acc[r][1] = _mm512_dpbf16_ps(acc[r][1], a, b1);
		}
	}
	for (int r = 0; r < R; r++) {
		_mm512_storeu_ps(stage + r * 32, acc[r][0]);
		if (two)
			_mm512_storeu_ps(stage + r * 32 + 16, acc[r][1]);
	}
}

TARGET_BF16 static void avx_any(const uint16_t *ap, size_t kp, const uint32_t *bp, size_t nbp,
				  size_t rows, size_t cols, float *stage)
{
	bool two = cols > 16;
	size_t r = 0;

	for (; r + 8 <= rows; r += 8) {
		if (two)
			avx_rows(ap + r * kp, kp, bp, nbp, 8, true, stage + r * 32);
		else
			avx_rows(ap + r * kp, kp, bp, nbp, 8, false, stage + r * 32);
	}
	for (; r < rows; r++) {
		if (two)
			avx_rows(ap + r * kp, kp, bp, nbp, 1, true, stage + r * 32);
		else
			avx_rows(ap + r * kp, kp, bp, nbp, 1, false, stage + r * 32);
	}
}

/* c (rows, cols; ldc) = alpha * acc + beta * c, acc the staging block; the
 * same operations as the scalar expression (no contraction to FMA). */
TARGET_BF16 static void store_block(float *c, size_t ldc, const float *stage, size_t rows,
				      size_t cols, float alpha, float beta)
{
	const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);

	for (size_t r = 0; r < rows; r++) {
		float *dst = c + r * ldc;
		const float *acc = stage + r * 32;

		for (size_t j = 0; j < cols; j += 16) {
			__mmask16 mk = lanes(cols - j);
			__m512 v = _mm512_maskz_loadu_ps(mk, acc + j);

			if (alpha != 1.0f)
				v = _mm512_mul_ps(va, v);
			if (beta == 1.0f)
				v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mk, dst + j));
			else if (beta != 0.0f)
				v = _mm512_add_ps(v, _mm512_mul_ps(vb, _mm512_maskz_loadu_ps(mk, dst + j)));
			_mm512_mask_storeu_ps(dst + j, mk, v);
		}
	}
}

/* ---- the product --------------------------------------------------------- */

/* Rows of A (and columns of B) in a panel for k padded to kp: a multiple of
 * 16 from 16 to PANEL_MAX, about PANEL_BYTES of bfloat16. A panel of A
 * takes panel * kp * 2 bytes, one of B as many, at most
 * max(PANEL_BYTES, 32 kp) each, so a scratch sized for a k serves any
 * shorter one. */
static size_t panel(size_t kp)
{
	size_t rows = kp ? PANEL_BYTES / (2 * kp) / 16 * 16 : PANEL_MAX;

	return rows < 16 ? 16 : rows > PANEL_MAX ? PANEL_MAX : rows;
}

size_t bf16_scratch_len(size_t kmax)
{
	size_t kp = round_up(kmax, 32), one = 32 * kp > PANEL_BYTES ? 32 * kp : PANEL_BYTES;

	return STAGE_BYTES + 2 * one;
}

void bf16_gemm(enum bf16_isa isa, void *scratch, size_t scratch_len, int ta, int tb, size_t m,
	       size_t n, size_t k, float alpha, const float *a, size_t lda, const float *b, size_t ldb,
	       float beta, float *c, size_t ldc)
{
	size_t kp = round_up(k, 32), rows_max = panel(kp);
	float *stage = scratch;
	uint16_t *ap = (uint16_t *)((char *)scratch + STAGE_BYTES);
	uint32_t *bp = (uint32_t *)(ap + rows_max * kp);
	bool a_once = m <= rows_max;

	if (m == 0 || n == 0)
		return;
	if (scratch_len < bf16_scratch_len(k) || (isa != BF16_AMX && isa != BF16_AVX512)) {
		/* a caller's bug (net_set_precision sizes the scratch; the trainer
		 * checks the path), never data: no way to go on with the right bits */
		fprintf(stderr, "bf16_gemm: %zu bytes of scratch for k = %zu (needs %zu), path %s\n",
			scratch_len, k, bf16_scratch_len(k), bf16_isa_name(isa));
		abort();
	}
	if (isa == BF16_AMX)
		amx_config();
	if (a_once)
		pack_a(ap, kp, ta, a, lda, 0, m, round_up(m, 16), k);
	for (size_t n0 = 0; n0 < n; n0 += rows_max) {
		size_t nb = n - n0 < rows_max ? n - n0 : rows_max, nbp = round_up(nb, 16);

		pack_b(bp, nbp, tb, b, ldb, n0, nb, k, kp);
		for (size_t m0 = 0; m0 < m; m0 += rows_max) {
			size_t mb = m - m0 < rows_max ? m - m0 : rows_max;

			if (!a_once)
				pack_a(ap, kp, ta, a, lda, m0, mb, round_up(mb, 16), k);
			for (size_t i = 0; i < mb; i += 32) {
				size_t rows = mb - i < 32 ? mb - i : 32;

				for (size_t j = 0; j < nb; j += 32) {
					size_t cols = nb - j < 32 ? nb - j : 32;
					float *cij = c + (m0 + i) * ldc + n0 + j;
					/* whole tiles of a result that is acc: straight into C */
					bool direct = isa == BF16_AMX && alpha == 1.0f && beta == 0.0f &&
						      rows % 16 == 0 && cols % 16 == 0;

					if (direct)
						amx_any(ap + i * kp, kp, bp + j, nbp, rows, cols, cij, ldc);
					else if (isa == BF16_AMX)
						amx_any(ap + i * kp, kp, bp + j, nbp, rows, cols, stage, 32);
					else
						avx_any(ap + i * kp, kp, bp + j, nbp, rows, cols, stage);
					if (!direct)
						store_block(cij, ldc, stage, rows, cols, alpha, beta);
				}
			}
		}
	}
	if (isa == BF16_AMX)
		amx_release();
}
