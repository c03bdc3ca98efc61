/*
 * test-optim.c - one optimizer step at a time against known answers: values
 * worked out by hand from PyTorch's update rules (torch.optim.Adam, AdamW, SGD
 * with momentum and weight decay, defaults as PyTorch's), and a float64
 * reference of those rules over several steps.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "traind/optim.h"
#include "traind/rng.h"

/* |a - b| <= tol, with both values in the failure message. */
#define assert_near(a, b, tol)                                                     \
	do {                                                                       \
		double a_ = (a), b_ = (b);                                         \
		if (!(fabs(a_ - b_) <= (tol)))                                     \
			fail_msg("%s = %.10g, expected %.10g (tolerance %g)", #a, a_, b_, (double)(tol)); \
	} while (0)

static void make(struct optim *o, enum optim_kind kind, double lr, double wd, double momentum,
		 size_t n)
{
	struct train_config cfg;

	config_defaults(&cfg);
	cfg.optimizer = kind;
	cfg.lr = lr;
	cfg.weight_decay = wd;
	cfg.momentum = momentum;
	assert_int_equal(optim_init(o, &cfg, n), 0);
}

static void step(struct optim *o, float *p, const float *g, size_t n)
{
	optim_begin_step(o, o->lr);
	optim_update(o, p, g, 0, n);
}

/* Adam, lr 0.1, p = 1, g = 0.5 then -0.25:
 *   step 1: m = 0.05, v = 0.00025, bc1 = 0.1, bc2 = 0.001
 *           p = 1 - (0.1/0.1) * 0.05 / (sqrt(0.00025)/sqrt(0.001) + 1e-8) = 0.9 (+2e-8)
 *   step 2: m = 0.05 + 0.1*(-0.25 - 0.05) = 0.02
 *           v = 0.999*0.00025 + 0.001*0.0625 = 0.00031225
 *           bc1 = 0.19, bc2 = 0.001999
 *           p = 0.9 - (0.1/0.19) * 0.02 / (sqrt(0.00031225)/sqrt(0.001999)) = 0.87336...  */
static void test_adam_by_hand(void **state)
{
	struct optim o;
	float p = 1.0f, g = 0.5f;
	double expect2;

	(void)state;
	make(&o, OPTIM_ADAM, 0.1, 0, 0, 1);
	step(&o, &p, &g, 1);
	assert_near(o.m[0], 0.05f, 1e-8);
	assert_near(o.v[0], 0.00025f, 1e-10);
	assert_near(p, 0.9f, 1e-6);
	g = -0.25f;
	step(&o, &p, &g, 1);
	assert_near(o.m[0], 0.02f, 1e-7);
	assert_near(o.v[0], 0.00031225f, 1e-9);
	expect2 = 0.9 - (0.1 / 0.19) * 0.02 / (sqrt(0.00031225) / sqrt(0.001999) + 1e-8);
	assert_near(p, expect2, 2e-6);
	assert_near(p, 0.873367, 2e-6);
	assert_int_equal(o.step, 2);
	optim_deinit(&o);
}

/* AdamW decays the weight first: p = 2 * (1 - 0.1*0.5) = 1.9, then the Adam
 * step of size lr: 1.9 - 0.1 * sign(g) = 1.8 for step 1. Adam with the same
 * weight decay instead adds 0.5*2 = 1 to g = -0.4 (now +0.6): 2 - 0.1 = 1.9. */
static void test_adamw_and_l2_by_hand(void **state)
{
	struct optim o;
	float p = 2.0f, g = 0.5f;

	(void)state;
	make(&o, OPTIM_ADAMW, 0.1, 0.5, 0, 1);
	step(&o, &p, &g, 1);
	assert_near(p, 1.8f, 1e-6);
	optim_deinit(&o);

	p = 2.0f;
	g = -0.4f;
	make(&o, OPTIM_ADAM, 0.1, 0.5, 0, 1);
	step(&o, &p, &g, 1);
	assert_near(p, 1.9f, 1e-6);
	assert_near(o.m[0], 0.06f, 1e-7);   /* (1-0.9) * (g + wd*p) */
	optim_deinit(&o);
}

/* SGD lr 0.1, momentum 0.9, wd 0.1, p = 1:
 *   step 1: g' = 0.5 + 0.1 = 0.6, buf = 0.6, p = 1 - 0.06 = 0.94
 *   step 2: g = 0.2, g' = 0.2 + 0.094 = 0.294, buf = 0.54 + 0.294 = 0.834, p = 0.94 - 0.0834 = 0.8566 */
static void test_sgd_momentum_by_hand(void **state)
{
	struct optim o;
	float p = 1.0f, g = 0.5f;

	(void)state;
	make(&o, OPTIM_SGD, 0.1, 0.1, 0.9, 1);
	step(&o, &p, &g, 1);
	assert_near(o.m[0], 0.6f, 1e-7);
	assert_near(p, 0.94f, 1e-7);
	g = 0.2f;
	step(&o, &p, &g, 1);
	assert_near(o.m[0], 0.834f, 1e-6);
	assert_near(p, 0.8566f, 1e-6);
	optim_deinit(&o);

	/* plain SGD keeps no state */
	p = 1.0f;
	g = 0.5f;
	make(&o, OPTIM_SGD, 0.1, 0, 0, 1);
	assert_null(o.m);
	assert_null(o.v);
	step(&o, &p, &g, 1);
	assert_near(p, 0.95f, 1e-7);
	optim_deinit(&o);
}

/* Many parameters, several steps, against a float64 transcription of
 * torch.optim's rules; also checks that updating in pieces (as the team does)
 * gives exactly the bits of one pass. */
static void test_against_reference(void **state)
{
	enum { N = 1031, STEPS = 7 };
	const enum optim_kind kinds[] = { OPTIM_ADAM, OPTIM_ADAMW, OPTIM_SGD };
	struct rng r;

	(void)state;
	rng_seed(&r, 11);
	for (size_t k = 0; k < 3; k++) {
		struct optim o, o2;
		static float p[N], p2[N], g[N];
		static double rp[N], rm[N], rv[N];
		double lr = 0.01, wd = 0.05, mom = kinds[k] == OPTIM_SGD ? 0.8 : 0;

		make(&o, kinds[k], lr, wd, mom, N);
		make(&o2, kinds[k], lr, wd, mom, N);
		for (size_t i = 0; i < N; i++) {
			p[i] = p2[i] = rng_uniform(&r) * 2 - 1;
			rp[i] = p[i];
			rm[i] = rv[i] = 0;
		}
		for (int s = 1; s <= STEPS; s++) {
			for (size_t i = 0; i < N; i++)
				g[i] = (rng_uniform(&r) - 0.5f) * (float)(1 + s);
			step(&o, p, g, N);
			optim_begin_step(&o2, o2.lr);
			for (size_t off = 0; off < N; off += 100)
				optim_update(&o2, p2, g, off, N - off < 100 ? N - off : 100);
			for (size_t i = 0; i < N; i++) {
				double gi = g[i];

				if (kinds[k] == OPTIM_SGD) {
					gi += wd * rp[i];
					rm[i] = s == 1 ? gi : mom * rm[i] + gi;
					rp[i] -= lr * rm[i];
				} else {
					if (kinds[k] == OPTIM_ADAMW)
						rp[i] *= 1 - lr * wd;
					else
						gi += wd * rp[i];
					rm[i] = 0.9 * rm[i] + 0.1 * gi;
					rv[i] = 0.999 * rv[i] + 0.001 * gi * gi;
					rp[i] -= lr / (1 - pow(0.9, s)) * rm[i] /
						 (sqrt(rv[i]) / sqrt(1 - pow(0.999, s)) + 1e-8);
				}
			}
		}
		for (size_t i = 0; i < N; i++) {
			if (fabs(p[i] - rp[i]) > 1e-5 * (1 + fabs(rp[i])))
				fail_msg("%s param %zu: %.9g vs reference %.9g",
					 config_optim_name(kinds[k]), i, p[i], rp[i]);
		}
		assert_memory_equal(p, p2, sizeof(p));
		optim_deinit(&o);
		optim_deinit(&o2);
	}
}

static void test_reset(void **state)
{
	struct optim o;
	float p[3] = { 1, 2, 3 }, g[3] = { 1, 1, 1 };

	(void)state;
	make(&o, OPTIM_ADAM, 0.1, 0, 0, 3);
	step(&o, p, g, 3);
	optim_reset(&o);
	assert_int_equal(o.step, 0);
	for (int i = 0; i < 3; i++) {
		assert_true(o.m[i] == 0.0f);
		assert_true(o.v[i] == 0.0f);
	}
	optim_deinit(&o);
}

/* optim_update_consume: the same bits of p and the state as optim_update,
 * over every kind, on odd lengths and offsets (the loops' vector tails),
 * with signed zeros, subnormals, infinities and NaNs among the gradients;
 * and +0.0 left in exactly the range it read. */
static void test_consume_same_bits(void **state)
{
	enum { N = 1000, STEPS = 4 };
	static const enum optim_kind kinds[] = { OPTIM_ADAM, OPTIM_ADAMW, OPTIM_SGD, OPTIM_SGD };
	struct rng r;

	(void)state;
	rng_seed(&r, 5);
	for (size_t k = 0; k < 4; k++) {
		struct optim o, o2;
		static float p[N], p2[N], g[N], g2[N];
		double mom = k == 2 ? 0.9 : 0;   /* SGD with momentum, then plain */

		make(&o, kinds[k], 0.01, 0.05, mom, N);
		make(&o2, kinds[k], 0.01, 0.05, mom, N);
		for (size_t i = 0; i < N; i++)
			p[i] = p2[i] = rng_uniform(&r) * 2 - 1;
		for (int s = 1; s <= STEPS; s++) {
			for (size_t i = 0; i < N; i++)
				g[i] = (rng_uniform(&r) - 0.5f) * (float)s;
			g[3] = -0.0f;
			g[4] = 0.0f;
			g[5] = 1e-40f;          /* subnormal */
			g[6] = -1e-45f;
			g[7 + (size_t)s] = s == 1 ? INFINITY : NAN;
			memcpy(g2, g, sizeof(g));
			optim_begin_step(&o, o.lr);
			optim_begin_step(&o2, o2.lr);
			for (size_t off = 0, len; off < N; off += len) {
				len = N - off < 37 + (size_t)s ? N - off : 37 + (size_t)s;
				optim_update(&o, p, g, off, len);
				optim_update_consume(&o2, p2, g2, off + 1 < N ? off + 1 : off, 0);
				optim_update_consume(&o2, p2, g2, off, len);
			}
			assert_memory_equal(p, p2, sizeof(p));
			if (o.m)
				assert_memory_equal(o.m, o2.m, N * sizeof(float));
			if (o.v)
				assert_memory_equal(o.v, o2.v, N * sizeof(float));
			for (size_t i = 0; i < N; i++)
				if (g2[i] != 0.0f || signbit(g2[i]))
					fail_msg("%s: g[%zu] = %g after optim_update_consume, not +0.0",
						 config_optim_name(kinds[k]), i, g2[i]);
		}
		/* only its range */
		g2[0] = g2[N - 1] = 2.0f;
		optim_update_consume(&o2, p2, g2, 1, N - 2);
		assert_true(g2[0] == 2.0f && g2[N - 1] == 2.0f && g2[1] == 0.0f);
		optim_deinit(&o);
		optim_deinit(&o2);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_adam_by_hand),
		cmocka_unit_test(test_adamw_and_l2_by_hand),
		cmocka_unit_test(test_sgd_momentum_by_hand),
		cmocka_unit_test(test_against_reference),
		cmocka_unit_test(test_reset),
		cmocka_unit_test(test_consume_same_bits),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
