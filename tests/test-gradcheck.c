/*
 * test-gradcheck.c - the engine's analytic gradients (float32, BLAS, split
 * across a team) against central finite differences of a float64 reference
 * forward pass, for every layer, the bias terms and the loss.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "traind/kernels.h"
#include "traind/model.h"
#include "traind/rng.h"

/* Mean softmax cross-entropy of the MLP in float64, params given as doubles. */
static double ref_loss(const struct mlp *m, const double *p, const double *x, const uint8_t *y,
		       size_t batch)
{
	double total = 0;
	double a[2][1024];

	for (size_t r = 0; r < batch; r++) {
		const double *in = x + r * m->dims[0];
		double *cur = NULL;

		for (uint32_t l = 0; l < m->nlayers; l++) {
			size_t ni = m->dims[l], no = m->dims[l + 1];
			const double *w = p + m->w_off[l], *b = p + m->b_off[l];

			cur = a[l % 2];
			for (size_t o = 0; o < no; o++) {
				double s = b[o];

				for (size_t i = 0; i < ni; i++)
					s += w[o * ni + i] * in[i];
				cur[o] = (l + 1 < m->nlayers && s < 0) ? 0 : s;
			}
			in = cur;
		}
		{
			size_t k = m->dims[m->nlayers];
			double mx = cur[0], se = 0;

			for (size_t j = 1; j < k; j++)
				mx = cur[j] > mx ? cur[j] : mx;
			for (size_t j = 0; j < k; j++)
				se += exp(cur[j] - mx);
			total += log(se) + mx - cur[y[r]];
		}
	}
	return total / (double)batch;
}

static void check(uint32_t input_dim, const uint32_t *hidden, uint32_t nh, size_t batch,
		  unsigned threads, size_t probes_per_tensor)
{
	struct train_config cfg;
	struct team *team;
	struct mlp m;
	struct rng r;
	uint8_t y[256];
	double *p, *x;
	double loss_engine, loss_ref;
	size_t checked = 0;

	kernels_global_init();
	config_defaults(&cfg);
	cfg.n_hidden = nh;
	memcpy(cfg.hidden, hidden, nh * sizeof(uint32_t));
	assert_int_equal(team_new(&team, threads), 0);
	assert_int_equal(mlp_init(&m, input_dim, 10, &cfg, (uint32_t)batch, team), 0);
	rng_seed(&r, 7);
	mlp_init_params(&m, &r);
	/* Inputs in [0, 1) like pixels, labels spread over the classes. */
	x = malloc(batch * input_dim * sizeof(double));
	for (size_t i = 0; i < batch * input_dim; i++) {
		m.x[i] = rng_uniform(&r);
		x[i] = m.x[i];
	}
	for (size_t i = 0; i < batch; i++)
		y[i] = (uint8_t)(i * 7 % 10);

	mlp_forward(&m, batch);
	loss_engine = k_softmax_xent(mlp_logits(&m), y, batch, 10, 1.0f / (float)batch, m.dlogits,
				     NULL) / (double)batch;
	mlp_backward_update(&m, batch, NULL);

	p = malloc(m.nparams * sizeof(double));
	for (size_t i = 0; i < m.nparams; i++)
		p[i] = m.params[i];
	loss_ref = ref_loss(&m, p, x, y, batch);
	assert_true(fabs(loss_engine - loss_ref) < 1e-5 * (1 + fabs(loss_ref)));

	/* Probe entries of every weight and bias tensor (first, last, and spread). */
	for (uint32_t l = 0; l < m.nlayers; l++) {
		size_t offs[2] = { m.w_off[l], m.b_off[l] };
		size_t lens[2] = { (size_t)m.dims[l + 1] * m.dims[l], m.dims[l + 1] };

		for (int t = 0; t < 2; t++) {
			for (size_t k = 0; k < probes_per_tensor; k++) {
				size_t i = offs[t] + (k == 0 ? 0 : k == 1 ? lens[t] - 1
							 : (k * 7919) % lens[t]);
				double h = 1e-5, save = p[i], fd, g = m.grads[i];

				p[i] = save + h;
				fd = ref_loss(&m, p, x, y, batch);
				p[i] = save - h;
				fd -= ref_loss(&m, p, x, y, batch);
				p[i] = save;
				fd /= 2 * h;
				if (fabs(fd - g) > 2e-4 + 1e-2 * fabs(fd))
					fail_msg("layer %u %s index %zu: analytic %.8g, finite difference %.8g",
						 l, t ? "bias" : "weight", i - offs[t], g, fd);
				checked++;
			}
		}
	}
	assert_true(checked == m.nlayers * 2 * probes_per_tensor);
	free(p);
	free(x);
	mlp_deinit(&m);
	team_free(team);
}

static void test_lesson_shape(void **state)
{
	uint32_t hidden[] = { 256 };

	(void)state;
	check(784, hidden, 1, 16, 1, 24);
}

static void test_two_hidden_layers(void **state)
{
	uint32_t hidden[] = { 24, 12 };

	(void)state;
	check(30, hidden, 2, 5, 1, 30);
}

/* Layers large enough to be split across a team of 2 and 3: same gradients. */
static void test_split_across_team(void **state)
{
	uint32_t hidden[] = { 512, 64 };

	(void)state;
	check(96, hidden, 2, 12, 2, 24);
	check(96, hidden, 2, 12, 3, 24);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lesson_shape),
		cmocka_unit_test(test_two_hidden_layers),
		cmocka_unit_test(test_split_across_team),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
