/*
 * rng.c - xoshiro256** (Blackman & Vigna, public domain reference algorithm)
 * with splitmix64 seeding. See include/traind/rng.h.
 */
#include "traind/rng.h"

#include <math.h>
#include <string.h>

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

void rng_seed(struct rng *r, uint64_t seed)
{
	uint64_t x = seed;

	for (int i = 0; i < 4; i++)
		r->s[i] = splitmix64(&x);
	/* splitmix64 never yields four zero words in a row, but be explicit. */
	if (!(r->s[0] | r->s[1] | r->s[2] | r->s[3]))
		r->s[0] = 1;
}

uint64_t rng_next(struct rng *r)
{
	uint64_t *s = r->s;
	uint64_t result = rotl(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return result;
}

uint32_t rng_below(struct rng *r, uint32_t n)
{
	uint64_t m = (uint64_t)(uint32_t)(rng_next(r) >> 32) * n;
	uint32_t low = (uint32_t)m;

	if (low < n) {
		uint32_t threshold = (uint32_t)-n % n;

		while (low < threshold) {
			m = (uint64_t)(uint32_t)(rng_next(r) >> 32) * n;
			low = (uint32_t)m;
		}
	}
	return (uint32_t)(m >> 32);
}

float rng_uniform(struct rng *r)
{
	return (float)(rng_next(r) >> 40) * (1.0f / 16777216.0f);
}

void rng_shuffle_u32(struct rng *r, uint32_t *v, uint32_t n)
{
	for (uint32_t i = n; i > 1; i--) {
		uint32_t j = rng_below(r, i);
		uint32_t tmp = v[i - 1];

		v[i - 1] = v[j];
		v[j] = tmp;
	}
}

void philox4x32(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4])
{
	uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
	uint32_t k0 = key[0], k1 = key[1];

	for (int round = 0; round < 10; round++) {
		uint64_t p0 = (uint64_t)0xD2511F53u * c0;
		uint64_t p1 = (uint64_t)0xCD9E8D57u * c2;
		uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
		uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;

		c1 = (uint32_t)p1;
		c3 = (uint32_t)p0;
		c0 = n0;
		c2 = n2;
		k0 += 0x9E3779B9u;
		k1 += 0xBB67AE85u;
	}
	out[0] = c0;
	out[1] = c1;
	out[2] = c2;
	out[3] = c3;
}

/* ---- mt19937, as PyTorch's CPU generator ------------------------------ */

void mt_seed(struct mt19937 *m, uint64_t seed)
{
	m->s[0] = (uint32_t)seed;
	for (uint32_t i = 1; i < MT_N; i++)
		m->s[i] = 1812433253u * (m->s[i - 1] ^ (m->s[i - 1] >> 30)) + i;
	m->idx = MT_N;
}

static void mt_twist(struct mt19937 *m)
{
	uint32_t *s = m->s;

	for (uint32_t i = 0; i < MT_N; i++) {
		uint32_t y = (s[i] & 0x80000000u) | (s[(i + 1) % MT_N] & 0x7fffffffu);

		s[i] = s[(i + 397) % MT_N] ^ (y >> 1) ^ ((y & 1u) ? 0x9908b0dfu : 0u);
	}
	m->idx = 0;
}

uint32_t mt_next32(struct mt19937 *m)
{
	uint32_t y;

	if (m->idx >= MT_N)
		mt_twist(m);
	y = m->s[m->idx++];
	y ^= y >> 11;
	y ^= (y << 7) & 0x9d2c5680u;
	y ^= (y << 15) & 0xefc60000u;
	y ^= y >> 18;
	return y;
}

uint64_t mt_random_i64(struct mt19937 *m)
{
	uint64_t hi = mt_next32(m);
	uint64_t lo = mt_next32(m);

	return ((hi << 32) | lo) & 0x7fffffffffffffffull;
}

float mt_uniform_f32(struct mt19937 *m, double from, double to)
{
	float lo = (float)from, hi = (float)to;
	double x = (double)(mt_next32(m) & 0xFFFFFFu) * (1.0 / 16777216.0);

	return (float)(x * (double)(hi - lo) + (double)lo);
}

void mt_randperm(struct mt19937 *m, uint32_t *v, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		v[i] = i;
	for (uint32_t i = 0; i + 1 < n; i++) {
		uint32_t z = mt_next32(m) % (n - i);
		uint32_t tmp = v[i];

		v[i] = v[i + z];
		v[i + z] = tmp;
	}
}

bool mt_state_ok(const struct mt19937 *m)
{
	uint32_t any = 0;

	for (uint32_t i = 0; i < MT_N; i++)
		any |= m->s[i];
	return m->idx <= MT_N && any != 0;
}

/* ---- normal_, as PyTorch's AVX2 kernel -------------------------------------- */

static uint32_t f2u(float f)
{
	uint32_t u;

	memcpy(&u, &f, sizeof(u));
	return u;
}

static float u2f(uint32_t u)
{
	float f;

	memcpy(&f, &u, sizeof(f));
	return f;
}

/* Cephes logf for x > 0 (one lane of PyTorch's log256_ps), with the fused
 * multiply-adds GCC forms from its separate multiplies and adds (PyTorch is
 * built with -mfma and GCC's default -ffp-contract=fast: a product whose
 * only use is an addition becomes one FMA; of two products added, the
 * earlier one). */
static float cephes_logf(float x)
{
	static const float p[9] = { 7.0376836292E-2f, -1.1514610310E-1f, 1.1676998740E-1f,
				    -1.2420140846E-1f, 1.4249322787E-1f, -1.6668057665E-1f,
				    2.0000714765E-1f, -2.4999993993E-1f, 3.3333331174E-1f };
	const float min_norm = u2f(0x00800000u), sqrthf = 0.707106781186547524f;
	bool invalid = x <= 0.0f;
	int32_t ei;
	float e, y, z, tmp;
	bool lt;

	x = x > min_norm ? x : min_norm;
	ei = (int32_t)(f2u(x) >> 23);
	x = u2f((f2u(x) & ~0x7f800000u) | f2u(0.5f));
	ei -= 0x7f;
	e = (float)ei;
	e = e + 1.0f;
	lt = x < sqrthf;
	tmp = lt ? x : 0.0f;
	x = x - 1.0f;
	e = e - (lt ? 1.0f : 0.0f);
	x = x + tmp;
	z = x * x;
	y = p[0];
	for (int k = 1; k < 9; k++)
		y = fmaf(y, x, p[k]);
	y = y * x;
	y = fmaf(y, z, e * -2.12194440e-4f);
	y = fmaf(-z, 0.5f, y);
	x = x + y;
	x = fmaf(e, 0.693359375f, x);
	return invalid ? u2f(0xffffffffu) : x;
}

/* Cephes sinf and cosf of x (one lane of PyTorch's sincos256_ps), with
 * GCC's fused multiply-adds as in cephes_logf. */
static void cephes_sincosf(float x, float *s, float *c)
{
	uint32_t sign_sin = f2u(x) & 0x80000000u, sign_cos, swap;
	int32_t j, j4;
	float y, z, y2, ysin1, ysin2;
	bool poly;

	x = u2f(f2u(x) & 0x7fffffffu);
	y = x * 1.27323954473516f;
	j = (int32_t)y;
	j = (j + 1) & ~1;
	y = (float)j;
	j4 = j;
	swap = ((uint32_t)j & 4u) << 29;
	poly = (j & 2) == 0;
	x = fmaf(y, -0.78515625f, x);
	x = fmaf(y, -2.4187564849853515625e-4f, x);
	x = fmaf(y, -3.77489497744594108e-8f, x);
	j4 -= 2;
	sign_cos = (~(uint32_t)j4 & 4u) << 29;
	sign_sin ^= swap;
	z = x * x;
	y = fmaf(2.443315711809948E-005f, z, -1.388731625493765E-003f);
	y = fmaf(y, z, 4.166664568298827E-002f);
	y = y * z;
	y = fmaf(y, z, -(z * 0.5f));
	y = y + 1.0f;
	y2 = fmaf(-1.9515295891E-4f, z, 8.3321608736E-3f);
	y2 = fmaf(y2, z, -1.6666654611E-1f);
	y2 = y2 * z;
	y2 = fmaf(y2, x, x);
	ysin2 = poly ? y2 : 0.0f;
	ysin1 = poly ? 0.0f : y;
	y2 = y2 - ysin2;
	y = y - ysin1;
	*s = u2f(f2u(ysin1 + ysin2) ^ sign_sin);
	*c = u2f(f2u(y + y2) ^ sign_cos);
}

static void normal_fill_16(float *d, float mean, float std)
{
	const float two_pi = (float)(2.0f * 3.14159265358979323846);

	for (int j = 0; j < 8; j++) {
		float u1 = 1.0f - d[j], u2 = d[j + 8];
		float radius = sqrtf(-2.0f * cephes_logf(u1));
		float theta = two_pi * u2, s, c;

		cephes_sincosf(theta, &s, &c);
		d[j] = fmaf(radius * c, std, mean);
		d[j + 8] = fmaf(radius * s, std, mean);
	}
}

void mt_normal_fill_f32(struct mt19937 *m, float *data, size_t n, double mean, double std)
{
	float fm = (float)mean, fs = (float)std;

	for (size_t i = 0; i < n; i++)
		data[i] = mt_uniform_f32(m, 0.0, 1.0);
	for (size_t i = 0; i + 16 <= n; i += 16)
		normal_fill_16(data + i, fm, fs);
	if (n % 16 != 0 && n >= 16) {
		float *tail = data + n - 16;

		for (size_t i = 0; i < 16; i++)
			tail[i] = mt_uniform_f32(m, 0.0, 1.0);
		normal_fill_16(tail, fm, fs);
	}
}
