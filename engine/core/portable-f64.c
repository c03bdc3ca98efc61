/*
 * portable-f64.c - cos, sin, log and integer powers in double precision for
 * a portable job's schedules and initialisation (include/traind/portable.h;
 * the contract is doc/portable.md). libm's double functions are not the
 * same on every machine: glibc picks FMA variants of exp, log, pow, sin and
 * cos by CPU (ifunc), and their last bit is not promised across versions.
 *
 * Design. Each function is computed in double-double arithmetic (a value is
 * hi + lo, two doubles, about 106 bits) from IEEE additions, multiplications,
 * divisions and fma() alone (fma is correctly rounded by C99: the same on
 * every CPU, an instruction or glibc's exact software), then rounded once to
 * double. So the result is the correctly rounded one except where the exact
 * value lies within about 2^-95 (relative) of a rounding boundary, which is
 * also where glibc's own results may differ between its variants; and it is
 * the same bits everywhere, since every operation is defined by IEEE 754.
 *   - cos, sin: x = k pi/2 + r, k = rint(x 2/pi), r in double-double from pi/2
 *     in four doubles (212 bits; exact products by fma), then the Taylor
 *     series of cos r and sin r (|r| <= pi/4 + a little) to r^28 and r^27 by
 *     Horner's rule in double-double. Accurate as stated for |x| < 2^30
 *     (traind's arguments are below 2^22); beyond, the same bits everywhere
 *     but a larger error.
 *   - log: x = 2^e m, m in [sqrt(1/2), sqrt(2)); s = (m - 1) / (m + 1);
 *     log m = 2 (s + s^3/3 + ... + s^43/43) (|s| <= 0.1716), plus e ln 2.
 *   - pown: x^n by squaring, low bit first, in double-double, each product
 *     rescaled into [1/2, 1) (exactly, by a power of two) so that it neither
 *     overflows nor underflows before the one final rounding.
 * The series' coefficients (1/n!, 1/(2k+1)) are computed once by the same
 * double-double divisions, so they too are the same bits everywhere.
 *
 * Thread: any; the coefficient table is built once (pthread_once).
 */
#include "traind/portable.h"

#include <math.h>
#include <pthread.h>

struct dd {
	double hi, lo;
};

static struct dd two_sum(double a, double b)
{
	double s = a + b, bb = s - a;

	return (struct dd){ s, (a - (s - bb)) + (b - bb) };
}

static struct dd fast_two_sum(double a, double b)
{
	double s = a + b;

	return (struct dd){ s, b - (s - a) };
}

static struct dd two_prod(double a, double b)
{
	double p = a * b;

	return (struct dd){ p, fma(a, b, -p) };
}

static struct dd dd_add(struct dd x, struct dd y)
{
	struct dd s = two_sum(x.hi, y.hi), t = two_sum(x.lo, y.lo);

	s.lo += t.hi;
	s = fast_two_sum(s.hi, s.lo);
	s.lo += t.lo;
	return fast_two_sum(s.hi, s.lo);
}

static struct dd dd_neg(struct dd x)
{
	return (struct dd){ -x.hi, -x.lo };
}

static struct dd dd_mul(struct dd x, struct dd y)
{
	struct dd p = two_prod(x.hi, y.hi);

	p.lo += x.hi * y.lo + x.lo * y.hi;
	return fast_two_sum(p.hi, p.lo);
}

static struct dd dd_mul_d(struct dd x, double d)
{
	struct dd p = two_prod(x.hi, d);

	p.lo += x.lo * d;
	return fast_two_sum(p.hi, p.lo);
}

/* x / y: a first quotient, its remainder's correction (twice). */
static struct dd dd_div(struct dd x, struct dd y)
{
	double q1 = x.hi / y.hi, q2, q3;
	struct dd r = dd_add(x, dd_neg(dd_mul_d(y, q1)));

	q2 = r.hi / y.hi;
	r = dd_add(r, dd_neg(dd_mul_d(y, q2)));
	q3 = r.hi / y.hi;
	return dd_add(fast_two_sum(q1, q2), (struct dd){ q3, 0.0 });
}

static struct dd dd(double x)
{
	return (struct dd){ x, 0.0 };
}

/* pi/2 and ln 2 to 212 and 159 bits (mpmath), 2/pi to 106. */
static const double PIO2[4] = { 0x1.921fb54442d18p+0, 0x1.1a62633145c07p-54, -0x1.f1976b7ed8fbcp-110,
				0x1.4cf98e804177dp-164 };
static const struct dd LN2 = { 0x1.62e42fefa39efp-1, 0x1.abc9e3b39803fp-56 };
static const double TWO_OVER_PI = 0x1.45f306dc9c883p-1;

#define FACT_N 30            /* 1/n! for n < FACT_N */
#define ODD_N 23             /* 1/(2k+1) for k < ODD_N */

static struct dd inv_fact[FACT_N], inv_odd[ODD_N];
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void table_init(void)
{
	inv_fact[0] = dd(1.0);
	for (int n = 1; n < FACT_N; n++)
		inv_fact[n] = dd_div(inv_fact[n - 1], dd((double)n));
	for (int k = 0; k < ODD_N; k++)
		inv_odd[k] = dd_div(dd(1.0), dd(2.0 * k + 1.0));
}

/* r = x - k pi/2 in double-double; k's quadrant mod 4. */
static struct dd reduce(double x, unsigned *quadrant)
{
	double k = rint(x * TWO_OVER_PI);
	struct dd r = dd(x);

	for (int i = 0; i < 3; i++)
		r = dd_add(r, dd_neg(two_prod(k, PIO2[i])));
	r = dd_add(r, dd(-k * PIO2[3]));
	*quadrant = (unsigned)((int64_t)fmod(k, 4.0) & 3);
	return r;
}

/* cos r and sin r, |r| <= pi/4 + a little, by their Taylor series in z = r^2:
 * cos r = sum (-1)^n z^n/(2n)!, n <= 14; sin r = r sum (-1)^n z^n/(2n+1)!, n <= 13. */
static void sincos_dd(struct dd r, struct dd *s, struct dd *c)
{
	struct dd z = dd_mul(r, r), pc = inv_fact[28], ps = dd_neg(inv_fact[27]);

	for (int n = 13; n >= 0; n--) {
		struct dd cn = n & 1 ? dd_neg(inv_fact[2 * n]) : inv_fact[2 * n];

		pc = dd_add(cn, dd_mul(z, pc));
	}
	for (int n = 12; n >= 0; n--) {
		struct dd sn = n & 1 ? dd_neg(inv_fact[2 * n + 1]) : inv_fact[2 * n + 1];

		ps = dd_add(sn, dd_mul(z, ps));
	}
	*c = pc;
	*s = dd_mul(r, ps);
}

void pk_sincos64(double x, double *s, double *c)
{
	struct dd r, sr, cr;
	unsigned q;

	if (!isfinite(x)) {
		*s = *c = x - x;
		return;
	}
	if (x == 0.0) {   /* sin(+-0) = +-0 */
		*s = x;
		*c = 1.0;
		return;
	}
	pthread_once(&table_once, table_init);
	r = reduce(x, &q);
	sincos_dd(r, &sr, &cr);
	switch (q) {
	case 0: *s = sr.hi; *c = cr.hi; break;
	case 1: *s = cr.hi; *c = -sr.hi; break;
	case 2: *s = -sr.hi; *c = -cr.hi; break;
	default: *s = -cr.hi; *c = sr.hi; break;
	}
}

double pk_cos64(double x)
{
	double s, c;

	pk_sincos64(x, &s, &c);
	return c;
}

double pk_log64(double x)
{
	struct dd m, s, z, p, num, den;
	int e;

	if (isnan(x) || x < 0.0)
		return isnan(x) ? x + x : (x - x) / 0.0;   /* NaN */
	if (x == 0.0)
		return -HUGE_VAL;
	if (isinf(x))
		return x;
	pthread_once(&table_once, table_init);
	m = dd(frexp(x, &e));   /* [1/2, 1), exact */
	if (m.hi < M_SQRT1_2) {
		m.hi *= 2.0;
		e--;
	}
	num = two_sum(m.hi, -1.0);
	den = two_sum(m.hi, 1.0);
	s = dd_div(num, den);
	z = dd_mul(s, s);
	p = inv_odd[ODD_N - 1];
	for (int k = ODD_N - 2; k >= 0; k--)
		p = dd_add(inv_odd[k], dd_mul(z, p));
	p = dd_mul_d(dd_mul(s, p), 2.0);
	return dd_add(p, dd_mul_d(LN2, (double)e)).hi;
}

/* x 2^e with x's exponent taken into e (exact): a double-double kept
 * in [1/2, 1) cannot overflow or lose its low part to underflow. */
static struct dd dd_normalize(struct dd x, long *e)
{
	int k;

	x.hi = frexp(x.hi, &k);
	x.lo = ldexp(x.lo, -k);
	*e += k;
	return x;
}

double pk_pown64(double x, uint64_t n)
{
	struct dd r = dd(1.0), b;
	long er = 0, eb = 0;
	uint64_t k = n;

	if (n == 0)
		return 1.0;
	if (!isfinite(x) || x == 0.0)
		return pk_powi(x, n);   /* 0, inf, NaN: the plain powers are exact */
	b = dd_normalize(dd(x), &eb);
	while (k) {
		if (k & 1) {
			r = dd_normalize(dd_mul(r, b), &er);
			er += eb;
		}
		k >>= 1;
		if (k) {
			eb *= 2;
			b = dd_normalize(dd_mul(b, b), &eb);
		}
		if (er > 4096 || er < -4096 || eb > (1L << 40) || eb < -(1L << 40))
			return pk_powi(x, n);   /* far out of range: 0 or inf, as the plain powers give */
	}
	/* one rounding to double (two for a subnormal result) */
	return ldexp(r.hi + r.lo, (int)er);
}
