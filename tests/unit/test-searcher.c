/*
 * test-searcher.c - the sweep's specification and its searchers
 * (daemon/sweep/searcher.c): pure functions of (spec, trial).
 *
 * - grid: the cartesian product in the order given, the last parameter
 *   fastest; int() enumerated; trials must match the product.
 * - random: each value within its distribution, the same for the same
 *   (seed, trial) however often asked and in whatever order, different
 *   for another seed; loguniform spread over its decades.
 * - the spec's canonical JSON parses back to the same trials.
 * - bad input names its field: an unknown key, a distribution grid cannot
 *   enumerate, lo > hi, an unknown searcher or metric, a random sweep
 *   without trials.
 * - pbt: the boundaries and decisions; a decision ranks on the metric
 *   (missing, NaN last, ties by trial number), the bottom quantile exploits
 *   one of the top quantile, stopped members are left out; the source and
 *   the perturbation are pure functions of (seed, decision, trial): x or
 *   / perturb within the bounds, ints moved, choices kept or redrawn;
 *   parameters an exploit cannot change are refused.
 */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "daemon/sweep/searcher.h"

static json_t *spec_of(const char *text)
{
	json_error_t e;
	json_t *j = json_loads(text, 0, &e);

	assert_non_null(j);
	return j;
}

static void parse_ok(const char *text, struct sweep_spec *sp)
{
	json_t *j = spec_of(text);
	struct tr_err err = { 0 };
	int rc = sweep_spec_parse(j, sp, &err);

	if (rc != 0)
		fail_msg("%s: %s (%s)", text, err.msg, err.key);
	json_decref(j);
}

static void refused(const char *text, const char *key)
{
	json_t *j = spec_of(text);
	struct sweep_spec sp;
	struct tr_err err = { 0 };

	assert_int_equal(sweep_spec_parse(j, &sp, &err), -EINVAL);
	if (strcmp(err.key, key) != 0)
		fail_msg("%s: named '%s' (%s), expected '%s'", text, err.key, err.msg, key);
	json_decref(j);
}

static char *params_text(const struct sweep_spec *sp, uint32_t t)
{
	json_t *p = sweep_trial_params(sp, t);
	char *s;

	assert_non_null(p);
	s = json_dumps(p, JSON_COMPACT | JSON_REAL_PRECISION(17));
	json_decref(p);
	return s;
}

static void test_grid(void **state)
{
	static const char *const want[] = {
		"{\"lr\":0.001,\"batch_size\":32,\"hidden\":1}", "{\"lr\":0.001,\"batch_size\":32,\"hidden\":2}",
		"{\"lr\":0.001,\"batch_size\":64,\"hidden\":1}", "{\"lr\":0.001,\"batch_size\":64,\"hidden\":2}",
		"{\"lr\":0.01,\"batch_size\":32,\"hidden\":1}",  "{\"lr\":0.01,\"batch_size\":32,\"hidden\":2}",
		"{\"lr\":0.01,\"batch_size\":64,\"hidden\":1}",  "{\"lr\":0.01,\"batch_size\":64,\"hidden\":2}",
	};
	struct sweep_spec sp;

	(void)state;
	parse_ok("{\"searcher\":\"grid\",\"params\":[\"lr=choice(0.001, 0.01)\",\"batch_size=choice(32,64)\","
		 "\"hidden=int(1,2)\"]}", &sp);
	assert_int_equal(sp.trials, 8);
	for (uint32_t t = 0; t < 8; t++) {
		char *s = params_text(&sp, t);

		assert_string_equal(s, want[t]);
		free(s);
	}
	sweep_spec_clear(&sp);
	refused("{\"searcher\":\"grid\",\"params\":[\"lr=choice(0.001,0.01)\"],\"trials\":3}", "trials");
}

static void test_random(void **state)
{
	const char *text = "{\"searcher\":\"random\",\"trials\":50,\"seed\":7,\"params\":[\"lr=loguniform(1e-4,1e-1)\","
			   "\"momentum=uniform(0,0.9)\",\"batch_size=int(16,20)\",\"optimizer=choice(sgd,adam)\"]}";
	struct sweep_spec a, b, c;
	char *first[50];
	int decades[3] = { 0 };
	bool both[2] = { false };

	(void)state;
	parse_ok(text, &a);
	parse_ok(text, &b);
	for (uint32_t t = 0; t < 50; t++) {
		json_t *p = sweep_trial_params(&a, t);
		double lr = json_real_value(json_object_get(p, "lr"));
		double m = json_real_value(json_object_get(p, "momentum"));
		json_int_t bs = json_integer_value(json_object_get(p, "batch_size"));
		const char *opt = json_string_value(json_object_get(p, "optimizer"));

		assert_true(lr >= 1e-4 && lr < 1e-1);
		assert_true(m >= 0 && m < 0.9);
		assert_true(bs >= 16 && bs <= 20);
		assert_non_null(opt);
		both[strcmp(opt, "sgd") == 0] = true;
		decades[(int)floor(log10(lr)) + 4]++;
		json_decref(p);
		first[t] = params_text(&a, t);
	}
	assert_true(both[0] && both[1]);
	for (int i = 0; i < 3; i++)
		assert_true(decades[i] > 5);   /* spread over its decades (log-uniform), not bunched at the top */
	/* asked again, backwards, from another parse: the same values */
	for (uint32_t t = 50; t-- > 0;) {
		char *s = params_text(&b, t);

		assert_string_equal(s, first[t]);
		free(s);
	}
	/* another seed: other values */
	{
		json_t *j = spec_of(text);
		struct tr_err err = { 0 };
		char *s;

		json_object_set_new(j, "seed", json_integer(8));
		assert_int_equal(sweep_spec_parse(j, &c, &err), 0);
		s = params_text(&c, 0);
		assert_string_not_equal(s, first[0]);
		free(s);
		json_decref(j);
	}
	/* the canonical form parses back to the same trials */
	{
		json_t *canon = sweep_spec_to_json(&a);
		struct sweep_spec d;
		struct tr_err err = { 0 };

		assert_int_equal(sweep_spec_parse(canon, &d, &err), 0);
		for (uint32_t t = 0; t < 50; t++) {
			char *s = params_text(&d, t);

			assert_string_equal(s, first[t]);
			free(s);
		}
		sweep_spec_clear(&d);
		json_decref(canon);
	}
	for (uint32_t t = 0; t < 50; t++)
		free(first[t]);
	sweep_spec_clear(&a);
	sweep_spec_clear(&b);
	sweep_spec_clear(&c);
}

static void test_refused(void **state)
{
	(void)state;
	refused("{\"searcher\":\"grid\",\"params\":[\"learning_rate=choice(1,2)\"]}", "params.learning_rate");
	refused("{\"searcher\":\"grid\",\"params\":[\"lr=uniform(0.001,0.1)\"]}", "params.lr");
	refused("{\"searcher\":\"grid\",\"params\":[\"lr=loguniform(1e-4,1e-2)\"]}", "params.lr");
	refused("{\"searcher\":\"random\",\"trials\":2,\"params\":[\"lr=uniform(0.1,0.01)\"]}", "params.lr");
	refused("{\"searcher\":\"random\",\"trials\":2,\"params\":[\"lr=loguniform(0,1)\"]}", "params.lr");
	refused("{\"searcher\":\"random\",\"trials\":2,\"params\":[\"lr=normal(0,1)\"]}", "params.lr");
	refused("{\"searcher\":\"random\",\"params\":[\"lr=uniform(0,1)\"]}", "trials");
	refused("{\"searcher\":\"bayes\",\"params\":[\"lr=uniform(0,1)\"]}", "searcher");
	refused("{\"searcher\":\"grid\",\"metric\":\"val_f1\",\"params\":[\"lr=choice(1,2)\"]}", "metric");
	refused("{\"searcher\":\"grid\",\"params\":[]}", "params");
	refused("{\"searcher\":\"grid\",\"params\":[\"epochs=choice(1,2)\"]}", "params.epochs");
	refused("{\"searcher\":\"grid\",\"params\":[\"lr=choice(1,2)\",\"lr=choice(3)\"]}", "params");
	refused("{\"searcher\":\"grid\",\"max_parallel\":0,\"params\":[\"lr=choice(1,2)\"]}", "max_parallel");
}

/* Successive halving: rungs, and decisions made only on complete
 * information, the same whatever order the results came in. */
static void test_sha(void **state)
{
	struct sweep_spec sp;
	uint32_t rungs[SWEEP_RUNGS_MAX];
	struct sweep_result res[8];
	struct sweep_decision d[8], d2[8];
	/* val_loss at rung 0 (1 epoch); trials 2 and 5 tie */
	static const double r0[8] = { 0.9, 0.5, 0.4, 0.7, 0.3, 0.4, NAN, 0.8 };

	(void)state;
	parse_ok("{\"searcher\":\"sha\",\"trials\":8,\"max_epochs\":4,\"reduction_factor\":2,"
		 "\"params\":[\"lr=loguniform(1e-4,1e-2)\"]}", &sp);
	assert_int_equal(sweep_bracket_rungs(&sp, 0, rungs), 3);
	assert_int_equal(rungs[0], 1);
	assert_int_equal(rungs[1], 2);
	assert_int_equal(rungs[2], 4);
	memset(res, 0, sizeof(res));
	/* seven of eight reported: nothing decided */
	for (int i = 0; i < 7; i++) {
		res[i].has[0] = true;
		res[i].metric[0] = r0[i];
	}
	sweep_decide(&sp, res, 8, d);
	for (int i = 0; i < 8; i++) {
		assert_int_equal(d[i].rung, 0);
		assert_int_equal(d[i].epochs, 1);
		assert_int_equal(d[i].verdict, VERDICT_RUNNING);
	}
	/* the last one reports: the best 4 go on (4, then 2 and 5 tied: 2 first, then 1) */
	res[7].has[0] = true;
	res[7].metric[0] = r0[7];
	sweep_decide(&sp, res, 8, d);
	for (int i = 0; i < 8; i++) {
		bool up = i == 1 || i == 2 || i == 4 || i == 5;

		assert_int_equal(d[i].rung, up ? 1 : 0);
		assert_int_equal(d[i].epochs, up ? 2 : 1);
		assert_int_equal(d[i].verdict, up ? VERDICT_RUNNING : VERDICT_STOPPED);
		assert_int_equal(d[i].of, 8);
	}
	assert_int_equal(d[4].rank, 1);
	assert_int_equal(d[2].rank, 2);
	assert_int_equal(d[5].rank, 3);   /* tied with trial 2: the higher number ranks after */
	assert_int_equal(d[6].rank, 8);   /* NaN ranks last */
	/* rung 1: three of four reported, one stopped (killed): decided; the best 2 go to 4 epochs */
	res[1].has[1] = true, res[1].metric[1] = 0.35;
	res[2].has[1] = true, res[2].metric[1] = 0.30;
	res[4].stopped = true;
	res[5].has[1] = true, res[5].metric[1] = 0.33;
	sweep_decide(&sp, res, 8, d);
	assert_int_equal(d[2].rung, 2);
	assert_int_equal(d[2].epochs, 4);
	assert_int_equal(d[2].verdict, VERDICT_FINAL);
	assert_int_equal(d[5].rung, 2);
	assert_int_equal(d[1].verdict, VERDICT_STOPPED);
	assert_int_equal(d[4].verdict, VERDICT_STOPPED);
	assert_int_equal(d[4].rank, 4);
	/* the same results with the trials' extra, later epochs known: the same decisions */
	res[2].has[2] = true, res[2].metric[2] = 0.1;
	sweep_decide(&sp, res, 8, d2);
	assert_memory_equal(d, d2, sizeof(d));
	sweep_spec_clear(&sp);
	refused("{\"searcher\":\"sha\",\"trials\":8,\"max_epochs\":4,\"reduction_factor\":1,"
		"\"params\":[\"lr=loguniform(1e-4,1e-2)\"]}", "reduction_factor");
	refused("{\"searcher\":\"sha\",\"trials\":8,\"params\":[\"lr=loguniform(1e-4,1e-2)\"]}", "max_epochs");
	refused("{\"searcher\":\"sha\",\"trials\":8,\"max_epochs\":2,\"grace_epochs\":3,"
		"\"params\":[\"lr=loguniform(1e-4,1e-2)\"]}", "grace_epochs");
	refused("{\"searcher\":\"random\",\"trials\":8,\"max_epochs\":2,"
		"\"params\":[\"lr=loguniform(1e-4,1e-2)\"]}", "max_epochs");
}

/* HyperBand: Li et al.'s brackets (R 81, eta 3: 81, 34, 15, 8, 5 trials
 * from 1, 3, 9, 27, 81 epochs), each decided alone. */
static void test_hyperband(void **state)
{
	static const uint32_t n[5] = { 81, 34, 15, 8, 5 }, first[5] = { 1, 3, 9, 27, 81 };
	struct sweep_spec sp;
	uint32_t rungs[SWEEP_RUNGS_MAX], t = 0;
	struct sweep_result res[10];
	struct sweep_decision d[10];

	(void)state;
	parse_ok("{\"searcher\":\"hyperband\",\"max_epochs\":81,\"params\":[\"lr=loguniform(1e-4,1e-2)\"]}", &sp);
	assert_int_equal(sp.reduction_factor, 3);
	assert_int_equal(sweep_brackets(&sp), 5);
	assert_int_equal(sp.trials, 81 + 34 + 15 + 8 + 5);
	for (uint32_t b = 0; b < 5; b++) {
		uint32_t nr = sweep_bracket_rungs(&sp, b, rungs);

		assert_int_equal(rungs[0], first[b]);
		assert_int_equal(rungs[nr - 1], 81);
		assert_int_equal(nr, 5 - b);
		assert_int_equal(sweep_bracket_of(&sp, t), b);
		assert_int_equal(sweep_bracket_of(&sp, t + n[b] - 1), b);
		t += n[b];
	}
	sweep_spec_clear(&sp);
	refused("{\"searcher\":\"hyperband\",\"max_epochs\":81,\"trials\":10,\"params\":[\"lr=uniform(0,1)\"]}",
		"trials");
	/* max 4, eta 2: brackets of 4 (1, 2, 4 epochs), 3 (2, 4) and 3 (4) trials */
	parse_ok("{\"searcher\":\"hyperband\",\"max_epochs\":4,\"reduction_factor\":2,"
		 "\"params\":[\"lr=uniform(0,1)\"]}", &sp);
	assert_int_equal(sp.trials, 10);
	memset(res, 0, sizeof(res));
	for (int i = 0; i < 4; i++)   /* bracket 0 reports at 1 epoch: trials 3 and 2 best */
		res[i].has[0] = true, res[i].metric[0] = 1.0 - 0.1 * i;
	sweep_decide(&sp, res, 10, d);
	assert_int_equal(d[3].rung, 1);
	assert_int_equal(d[3].epochs, 2);
	assert_int_equal(d[2].rung, 1);
	assert_int_equal(d[0].verdict, VERDICT_STOPPED);
	for (int i = 4; i < 7; i++) {   /* bracket 1 undecided: it has not reported */
		assert_int_equal(d[i].epochs, 2);
		assert_int_equal(d[i].verdict, VERDICT_RUNNING);
	}
	for (int i = 7; i < 10; i++) {   /* bracket 2: one rung, trained to max */
		assert_int_equal(d[i].epochs, 4);
		assert_int_equal(d[i].verdict, VERDICT_FINAL);
	}
	sweep_spec_clear(&sp);
}


static void test_pbt(void **state)
{
	struct sweep_spec sp, other;
	struct sweep_pbt_member m[8];
	struct sweep_pbt_choice c[8], c2[8];
	json_t *from, *p, *q;
	int up = 0, down = 0, kept = 0, redrawn = 0;

	(void)state;
	refused("{\"searcher\":\"pbt\",\"population\":8,\"params\":[\"hidden=choice(32,64)\"]}", "params.hidden");
	refused("{\"searcher\":\"pbt\",\"population\":8,\"params\":[\"batch_size=choice(8,16)\"]}", "params.batch_size");
	refused("{\"searcher\":\"pbt\",\"params\":[\"lr=uniform(0,1)\"]}", "population");
	refused("{\"searcher\":\"pbt\",\"population\":1,\"params\":[\"lr=uniform(0,1)\"]}", "population");
	refused("{\"searcher\":\"pbt\",\"population\":4,\"trials\":5,\"params\":[\"lr=uniform(0,1)\"]}", "trials");
	refused("{\"searcher\":\"pbt\",\"population\":4,\"quantile\":0,\"params\":[\"lr=uniform(0,1)\"]}", "quantile");
	refused("{\"searcher\":\"pbt\",\"population\":4,\"perturb\":0.8,\"params\":[\"lr=uniform(0,1)\"]}", "perturb");
	refused("{\"searcher\":\"pbt\",\"population\":4,\"interval\":5,\"max_epochs\":3,\"params\":[\"lr=uniform(0,1)\"]}",
		"interval");
	refused("{\"searcher\":\"sha\",\"trials\":4,\"max_epochs\":3,\"perturb\":2,\"params\":[\"lr=uniform(0,1)\"]}",
		"perturb");
	parse_ok("{\"searcher\":\"pbt\",\"population\":8,\"interval\":2,\"max_epochs\":7,\"seed\":3,"
		 "\"params\":[\"lr=loguniform(1e-3,1e-1)\",\"augment=choice(none,flip,crop)\",\"weight_decay=uniform(0,0.1)\","
		 "\"early_stop_patience=int(1,9)\"]}", &sp);
	assert_int_equal(sp.trials, 8);
	assert_true(sp.quantile == 0.25 && sp.perturb == 1.2);
	/* segments end at 2, 4, 6, 7; decisions at 2, 4, 6 */
	assert_int_equal(sweep_pbt_boundary(&sp, 0), 2);
	assert_int_equal(sweep_pbt_boundary(&sp, 2), 6);
	assert_int_equal(sweep_pbt_boundary(&sp, 3), 7);
	assert_int_equal(sweep_pbt_decisions(&sp), 3);
	{   /* the canonical form parses back to the same spec */
		json_t *j = sweep_spec_to_json(&sp);
		struct tr_err err = { 0 };

		assert_int_equal(sweep_spec_parse(j, &other, &err), 0);
		assert_true(other.interval == 2 && other.max_epochs == 7 && other.quantile == 0.25 && other.trials == 8);
		sweep_spec_clear(&other);
		json_decref(j);
	}

	/* val_loss: lower is better; trial 5 NaN, trial 6 missing, 2 and 3 tie */
	for (int i = 0; i < 8; i++)
		m[i] = (struct sweep_pbt_member){ .has = true, .metric = 1.0 + i * 0.1 };
	m[2].metric = m[3].metric = 0.5;
	m[5].metric = NAN;
	m[6].has = false;
	sweep_pbt_decide(&sp, 1, m, 8, c);
	assert_int_equal(c[2].rank, 1);   /* the tie: the lower trial first */
	assert_int_equal(c[3].rank, 2);
	assert_int_equal(c[0].rank, 3);
	assert_int_equal(c[5].rank, 7);   /* NaN and missing last, by trial */
	assert_int_equal(c[6].rank, 8);
	for (int i = 0; i < 8; i++) {   /* q = 2: 5 and 6 exploit 2 or 3 */
		bool bottom = i == 5 || i == 6;

		assert_int_equal(c[i].exploit, bottom);
		if (bottom)
			assert_true(c[i].source == 2 || c[i].source == 3);
	}
	sweep_pbt_decide(&sp, 1, m, 8, c2);   /* pure */
	assert_memory_equal(c, c2, sizeof(c));
	{   /* the sources vary with the decision and the seed, never with anything else */
		bool differ = false;

		for (uint32_t k = 1; k < 40 && !differ; k++) {
			sweep_pbt_decide(&sp, k, m, 8, c2);
			differ = c2[5].source != c[5].source || c2[6].source != c[6].source;
		}
		assert_true(differ);
	}
	/* a stopped member is not ranked: 7 left, q = 1 */
	m[4].stopped = true;
	sweep_pbt_decide(&sp, 1, m, 8, c);
	assert_false(c[4].ranked);
	assert_false(c[4].exploit);
	assert_int_equal(c[6].of, 7);
	assert_true(c[6].exploit && c[6].source == 2);
	assert_false(c[5].exploit);

	/* perturbation: x or / 1.2 within the bounds, ints moved, choices kept or redrawn */
	from = json_pack("{s:f, s:s, s:f, s:i}", "lr", 0.01, "augment", "flip", "weight_decay", 0.095,
			 "early_stop_patience", 5);
	for (uint32_t k = 1; k <= 200; k++) {
		double lr, wd;
		json_int_t pat;

		p = sweep_pbt_perturb(&sp, k, 3, from);
		q = sweep_pbt_perturb(&sp, k, 3, from);
		assert_non_null(p);
		assert_true(json_equal(p, q));   /* pure */
		json_decref(q);
		lr = json_real_value(json_object_get(p, "lr"));
		if (fabs(lr - 0.012) < 1e-12)
			up++;
		else if (fabs(lr - 0.01 / 1.2) < 1e-12)
			down++;
		else
			fail_msg("lr %g is not 0.01 x or / 1.2", lr);
		wd = json_real_value(json_object_get(p, "weight_decay"));
		assert_true(wd == 0.1 || fabs(wd - 0.095 / 1.2) < 1e-12);   /* x 1.2 clamped to hi */
		pat = json_integer_value(json_object_get(p, "early_stop_patience"));
		assert_true(pat == 6 || pat == 4);
		if (strcmp(json_string_value(json_object_get(p, "augment")), "flip") == 0)
			kept++;
		else
			redrawn++;
		json_decref(p);
	}
	assert_true(up > 60 && down > 60);
	assert_true(kept > 120 && redrawn > 20);   /* a redraw 1 in 4, two thirds of them another value */
	json_decref(from);
	sweep_spec_clear(&sp);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_grid),
		cmocka_unit_test(test_random),
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_sha),
		cmocka_unit_test(test_hyperband),
		cmocka_unit_test(test_pbt),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
