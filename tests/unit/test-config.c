/*
 * test-config.c - the job configuration: defaults are the lesson's, text and
 * JSON input share one set of checks, every bad value is refused with a
 * message naming the key, and JSON round-trips exactly.
 */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "traind/config.h"

static void test_defaults_are_the_lesson(void **state)
{
	struct train_config c;

	(void)state;
	config_defaults(&c);
	assert_string_equal(c.dataset, "mnist");
	assert_int_equal(c.epochs, 5);
	assert_int_equal(c.batch_size, 64);
	assert_int_equal(c.eval_batch_size, 128);
	assert_true(c.lr == 1e-3);
	assert_int_equal(c.optimizer, OPTIM_ADAM);
	assert_true(c.beta1 == 0.9 && c.beta2 == 0.999 && c.eps == 1e-8);
	assert_int_equal(c.n_hidden, 1);
	assert_int_equal(c.hidden[0], 256);
	assert_int_equal(c.seed, 42);
	assert_int_equal(c.split_seed, 42);
	assert_int_equal(c.val_size, 10000);
	assert_int_equal(c.rng, RNG_TORCH);
	assert_int_equal(c.kernels, KERNELS_OPENBLAS);
	assert_int_equal(config_validate(&c, NULL), 0);
}

/* rng: torch for a new job, xoshiro for a stored job without the key, the
 * stored value when it has one; bad values name the key. */
static void test_rng_key(void **state)
{
	struct train_config c;
	struct tr_err err = { 0 };
	json_t *o = json_object(), *j;

	(void)state;
	assert_int_equal(config_from_json(&c, o, NULL), 0);
	assert_int_equal(c.rng, RNG_TORCH);
	assert_int_equal(config_from_stored_json(&c, o, NULL), 0);
	assert_int_equal(c.rng, RNG_XOSHIRO);
	json_object_set_new(o, "rng", json_string("torch"));
	assert_int_equal(config_from_stored_json(&c, o, NULL), 0);
	assert_int_equal(c.rng, RNG_TORCH);
	json_object_set_new(o, "rng", json_string("xoshiro"));
	assert_int_equal(config_from_json(&c, o, NULL), 0);
	assert_int_equal(c.rng, RNG_XOSHIRO);
	j = config_to_json(&c);
	assert_string_equal(json_string_value(json_object_get(j, "rng")), "xoshiro");
	json_decref(j);
	json_object_set_new(o, "rng", json_string("mt"));
	assert_int_equal(config_from_json(&c, o, &err), -EINVAL);
	assert_string_equal(err.key, "rng");
	assert_non_null(strstr(err.msg, "torch or xoshiro"));
	json_object_set_new(o, "rng", json_integer(1));
	assert_int_equal(config_from_json(&c, o, &err), -EINVAL);
	assert_string_equal(err.key, "rng");
	config_defaults(&c);
	assert_int_equal(config_set(&c, "rng", "xoshiro", NULL), 0);
	assert_int_equal(c.rng, RNG_XOSHIRO);
	assert_int_equal(config_set(&c, "rng", "Torch", &err), -EINVAL);
	assert_string_equal(err.key, "rng");
	json_decref(o);
}

/* kernels: openblas for a new job and for a stored job without the key,
 * portable when asked; recorded in the JSON, part of config_equal; bad
 * values name the key. */
static void test_kernels_key(void **state)
{
	struct train_config c, d;
	struct tr_err err = { 0 };
	json_t *o = json_object(), *j;

	(void)state;
	assert_int_equal(config_from_json(&c, o, NULL), 0);
	assert_int_equal(c.kernels, KERNELS_OPENBLAS);
	assert_int_equal(config_from_stored_json(&c, o, NULL), 0);
	assert_int_equal(c.kernels, KERNELS_OPENBLAS);
	json_object_set_new(o, "kernels", json_string("portable"));
	assert_int_equal(config_from_json(&c, o, NULL), 0);
	assert_int_equal(c.kernels, KERNELS_PORTABLE);
	assert_int_equal(config_from_stored_json(&d, o, NULL), 0);
	assert_int_equal(d.kernels, KERNELS_PORTABLE);
	j = config_to_json(&c);
	assert_string_equal(json_string_value(json_object_get(j, "kernels")), "portable");
	assert_int_equal(config_from_stored_json(&d, j, NULL), 0);
	assert_true(config_equal(&c, &d));
	json_decref(j);
	d.kernels = KERNELS_OPENBLAS;
	assert_false(config_equal(&c, &d));
	json_object_set_new(o, "kernels", json_string("mkl"));
	assert_int_equal(config_from_json(&c, o, &err), -EINVAL);
	assert_string_equal(err.key, "kernels");
	assert_non_null(strstr(err.msg, "openblas or portable"));
	json_object_set_new(o, "kernels", json_true());
	assert_int_equal(config_from_json(&c, o, &err), -EINVAL);
	assert_string_equal(err.key, "kernels");
	config_defaults(&c);
	assert_int_equal(config_set(&c, "kernels", "portable", NULL), 0);
	assert_int_equal(c.kernels, KERNELS_PORTABLE);
	assert_int_equal(config_set(&c, "kernels", "Portable", &err), -EINVAL);
	assert_string_equal(err.key, "kernels");
	assert_string_equal(config_kernels_name(KERNELS_OPENBLAS), "openblas");
	json_decref(o);
}

/* precision: fp32 for a new job and for a stored job without the key, bf16
 * when asked; recorded in the JSON, part of config_equal; bad values name
 * the key; bf16 with kernels portable is refused (the portable kernels are
 * float32 only). Whether the CPU has bf16 is the trainer's check. */
static void test_precision_key(void **state)
{
	struct train_config c, d;
	struct tr_err err = { 0 };
	json_t *o = json_object(), *j;

	(void)state;
	assert_int_equal(config_from_json(&c, o, NULL), 0);
	assert_int_equal(c.precision, K_FP32);
	json_object_set_new(o, "precision", json_string("bf16"));
	assert_int_equal(config_from_json(&c, o, NULL), 0);
	assert_int_equal(c.precision, K_BF16);
	assert_int_equal(config_from_stored_json(&d, o, NULL), 0);
	assert_int_equal(d.precision, K_BF16);
	json_object_del(o, "precision");
	assert_int_equal(config_from_stored_json(&d, o, NULL), 0);
	assert_int_equal(d.precision, K_FP32);
	j = config_to_json(&c);
	assert_string_equal(json_string_value(json_object_get(j, "precision")), "bf16");
	assert_int_equal(config_from_stored_json(&d, j, NULL), 0);
	assert_true(config_equal(&c, &d));
	json_decref(j);
	d.precision = K_FP32;
	assert_false(config_equal(&c, &d));
	json_object_set_new(o, "precision", json_string("fp16"));
	assert_int_equal(config_from_json(&c, o, &err), -EINVAL);
	assert_string_equal(err.key, "precision");
	assert_non_null(strstr(err.msg, "fp32 or bf16"));
	json_object_set_new(o, "precision", json_integer(16));
	assert_int_equal(config_from_json(&c, o, &err), -EINVAL);
	assert_string_equal(err.key, "precision");
	config_defaults(&c);
	assert_int_equal(config_set(&c, "precision", "bf16", NULL), 0);
	assert_int_equal(config_validate(&c, NULL), 0);
	assert_int_equal(config_set(&c, "kernels", "portable", NULL), 0);
	assert_int_equal(config_validate(&c, &err), -EINVAL);
	assert_string_equal(err.key, "precision");
	assert_non_null(strstr(err.msg, "portable"));
	json_decref(o);
}

/* seq_kernels: 3 for a new job, 1 for a stored job without the key (the
 * arithmetic it was trained with); recorded in the JSON, part of
 * config_equal; 2 and 3 accepted; 0, 4 and a string are refused naming
 * the key. */
static void test_seq_kernels_key(void **state)
{
	struct train_config c, d;
	struct tr_err err = { 0 };
	json_t *o = json_object(), *j;

	(void)state;
	assert_int_equal(config_from_json(&c, o, NULL), 0);
	assert_int_equal(c.seq_kernels, 3);
	assert_int_equal(config_from_stored_json(&d, o, NULL), 0);
	assert_int_equal(d.seq_kernels, 1);
	assert_false(config_equal(&c, &d));
	j = config_to_json(&d);
	assert_int_equal(json_integer_value(json_object_get(j, "seq_kernels")), 1);
	assert_int_equal(config_from_stored_json(&c, j, NULL), 0);
	assert_int_equal(c.seq_kernels, 1);
	assert_true(config_equal(&c, &d));
	json_decref(j);
	json_object_set_new(o, "seq_kernels", json_integer(1));
	assert_int_equal(config_from_json(&c, o, NULL), 0);
	assert_int_equal(c.seq_kernels, 1);
	for (int v = 2; v <= 3; v++) {
		json_object_set_new(o, "seq_kernels", json_integer(v));
		assert_int_equal(config_from_json(&c, o, NULL), 0);
		assert_int_equal((int)c.seq_kernels, v);
	}
	for (int bad = 0; bad < 3; bad++) {
		json_object_set_new(o, "seq_kernels", bad == 2 ? json_string("2") : json_integer(bad ? 4 : 0));
		assert_int_equal(config_from_json(&c, o, &err), -EINVAL);
		assert_string_equal(err.key, "seq_kernels");
	}
	config_defaults(&c);
	assert_int_equal(config_set(&c, "seq_kernels", "1", NULL), 0);
	assert_int_equal(c.seq_kernels, 1);
	assert_int_equal(config_set(&c, "seq_kernels", "5", &err), -EINVAL);
	json_decref(o);
}

/* conv: gemm for a stored job without the key, CONFIG_CONV_DEFAULT for a
 * new one, onednn when asked; recorded in the JSON, part of config_equal;
 * bad values name the key; onednn with kernels portable is refused naming
 * conv. */
static void test_conv_key(void **state)
{
	struct train_config c, d;
	struct tr_err err = { 0 };
	json_t *o = json_object(), *j;

	(void)state;
	assert_int_equal(config_from_json(&c, o, NULL), 0);
	assert_int_equal(c.conv, CONFIG_CONV_DEFAULT);
	assert_int_equal(config_from_stored_json(&d, o, NULL), 0);
	assert_int_equal(d.conv, CONV_GEMM);
	json_object_set_new(o, "conv", json_string("onednn"));
	assert_int_equal(config_from_json(&c, o, NULL), 0);
	assert_int_equal(c.conv, CONV_ONEDNN);
	assert_int_equal(config_from_stored_json(&d, o, NULL), 0);
	assert_int_equal(d.conv, CONV_ONEDNN);
	j = config_to_json(&c);
	assert_string_equal(json_string_value(json_object_get(j, "conv")), "onednn");
	assert_int_equal(config_from_stored_json(&d, j, NULL), 0);
	assert_true(config_equal(&c, &d));
	json_decref(j);
	d.conv = CONV_GEMM;
	assert_false(config_equal(&c, &d));
	json_object_set_new(o, "conv", json_string("winograd"));
	assert_int_equal(config_from_json(&c, o, &err), -EINVAL);
	assert_string_equal(err.key, "conv");
	assert_non_null(strstr(err.msg, "gemm or onednn"));
	json_object_set_new(o, "conv", json_true());
	assert_int_equal(config_from_json(&c, o, &err), -EINVAL);
	assert_string_equal(err.key, "conv");
	config_defaults(&c);
	assert_int_equal(config_set(&c, "conv", "onednn", NULL), 0);
	assert_int_equal(config_validate(&c, NULL), 0);
	assert_int_equal(config_set(&c, "kernels", "portable", NULL), 0);
	assert_int_equal(config_validate(&c, &err), -EINVAL);
	assert_string_equal(err.key, "conv");
	assert_non_null(strstr(err.msg, "portable"));
	json_decref(o);
}

static void test_set_from_text(void **state)
{
	struct train_config c;

	(void)state;
	config_defaults(&c);
	assert_int_equal(config_set(&c, "hidden", "512,256", NULL), 0);
	assert_int_equal(c.n_hidden, 2);
	assert_int_equal(c.hidden[1], 256);
	assert_int_equal(config_set(&c, "optimizer", "adamw", NULL), 0);
	assert_true(c.weight_decay == 0.01);   /* PyTorch's AdamW default */
	assert_int_equal(config_set(&c, "weight_decay", "0", NULL), 0);
	assert_true(c.weight_decay == 0);
	assert_int_equal(config_set(&c, "lr", "3e-4", NULL), 0);
	assert_true(c.lr == 3e-4);
	assert_int_equal(config_set(&c, "seed", "9223372036854775807", NULL), 0);
	assert_int_equal(config_set(&c, "dataset", "fashion-mnist", NULL), 0);
	assert_int_equal(config_validate(&c, NULL), 0);
}

static void test_bad_values_named(void **state)
{
	static const struct {
		const char *key, *value, *needle;
	} bad[] = {
		{ "epochs", "0", "epochs" },
		{ "epochs", "-1", "epochs" },
		{ "epochs", "5x", "epochs" },
		{ "epochs", "", "epochs" },
		{ "epochs", "99999999999999999999999", "epochs" },
		{ "batch_size", "0", "batch_size" },
		{ "lr", "nan", "lr" },
		{ "lr", "-0.1", "lr" },
		{ "lr", "0", "lr" },
		{ "lr", "inf", "lr" },
		{ "lr", "1e999", "larger than the largest double" },
		{ "lr", "1e-320", "subnormal" },   /* issue 21: was "expected a number" */
		{ "weight_decay", "-1e-400", "subnormal" },
		{ "lr", "abc", "lr" },
		{ "momentum", "1", "momentum" },
		{ "weight_decay", "-1", "weight_decay" },
		{ "hidden", "0", "hidden" },
		{ "hidden", "", "hidden" },
		{ "hidden", "256,", "hidden" },
		{ "hidden", ",256", "hidden" },
		{ "hidden", "1,2,3,4,5,6,7,8,9", "hidden" },
		{ "hidden", "99999999", "hidden" },
		{ "optimizer", "rmsprop", "rmsprop" },
		{ "dataset", "../etc", "dataset" },
		{ "dataset", "a/b", "dataset" },
		{ "dataset", ".hidden", "dataset" },
		{ "dataset", "", "dataset" },
		{ "seed", "18446744073709551615", "seed" },
		{ "threads", "0", "threads" },
		{ "threads", "1000", "threads" },
		{ "nonsense", "1", "nonsense" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct train_config c;
		struct tr_err err = { 0 };

		config_defaults(&c);
		if (config_set(&c, bad[i].key, bad[i].value, &err) != -EINVAL)
			fail_msg("%s=%s was accepted", bad[i].key, bad[i].value);
		if (!strstr(err.msg, bad[i].needle))
			fail_msg("%s=%s: message '%s' does not name '%s'", bad[i].key, bad[i].value,
				 err.msg, bad[i].needle);
		if (strcmp(err.key, bad[i].key) != 0)
			fail_msg("%s=%s: the error names key '%s'", bad[i].key, bad[i].value, err.key);
	}
}

static void test_cross_field(void **state)
{
	struct train_config c;
	struct tr_err err = { 0 };

	(void)state;
	config_defaults(&c);
	c.momentum = 0.9;   /* adam takes no momentum */
	assert_int_equal(config_validate(&c, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "momentum"));
	assert_string_equal(err.key, "momentum");
}

static void test_json_round_trip(void **state)
{
	struct train_config a, b;
	json_t *j;
	char *text;
	json_t *back;

	(void)state;
	config_defaults(&a);
	a.optimizer = OPTIM_SGD;
	a.momentum = 0.9;
	a.lr = 0.1 / 3;   /* not exactly representable in few digits */
	a.n_hidden = 3;
	a.hidden[0] = 512;
	a.hidden[1] = 128;
	a.hidden[2] = 64;
	a.seed = 123456789012345ull;
	a.train_size = 1000;
	j = config_to_json(&a);
	assert_non_null(j);
	text = json_dumps(j, JSON_COMPACT);
	back = json_loads(text, 0, NULL);
	assert_int_equal(config_from_json(&b, back, NULL), 0);
	assert_true(config_equal(&a, &b));
	assert_true(b.lr == a.lr);
	free(text);
	json_decref(j);
	json_decref(back);
}

static void test_json_bad_input(void **state)
{
	static const struct {
		const char *json, *needle;
	} bad[] = {
		{ "[]", "object" },
		{ "{\"epochs\": \"5\"}", "epochs" },
		{ "{\"epochs\": 5.5}", "epochs" },
		{ "{\"epochs\": -5}", "epochs" },
		{ "{\"epochs\": 0}", "epochs" },
		{ "{\"lr\": \"fast\"}", "lr" },
		{ "{\"lr\": -1}", "lr" },
		{ "{\"lr\": 1e308}", "lr" },
		{ "{\"hidden\": []}", "hidden" },
		{ "{\"hidden\": [256, 0]}", "hidden" },
		{ "{\"hidden\": [256, \"x\"]}", "hidden" },
		{ "{\"hidden\": {}}", "hidden" },
		{ "{\"optimizer\": 3}", "optimizer" },
		{ "{\"dataset\": \"..\"}", "dataset" },
		{ "{\"dataset\": null}", "dataset" },
		{ "{\"batch_size\": 9223372036854775807}", "batch_size" },
		{ "{\"unknown_key\": 1}", "unknown_key" },
		{ "{\"a:b\": 1}", "a:b" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct train_config c;
		struct tr_err err = { 0 };
		json_t *j = json_loads(bad[i].json, 0, NULL);

		assert_non_null(j);
		if (config_from_json(&c, j, &err) != -EINVAL)
			fail_msg("%s was accepted", bad[i].json);
		if (!strstr(err.msg, bad[i].needle))
			fail_msg("%s: message '%s' does not name '%s'", bad[i].json, err.msg, bad[i].needle);
		/* the key as data, not to be found in the message (a key may
		 * hold a colon: "a:b") */
		if (strcmp(bad[i].json, "[]") != 0 && strcmp(err.key, bad[i].needle) != 0)
			fail_msg("%s: the error names key '%s'", bad[i].json, err.key);
		json_decref(j);
	}
}

static void test_json_adamw_default_decay(void **state)
{
	struct train_config c;
	json_t *j = json_loads("{\"optimizer\": \"adamw\"}", 0, NULL);

	(void)state;
	assert_int_equal(config_from_json(&c, j, NULL), 0);
	assert_true(c.weight_decay == 0.01);
	json_decref(j);
	j = json_loads("{\"weight_decay\": 0, \"optimizer\": \"adamw\"}", 0, NULL);
	assert_int_equal(config_from_json(&c, j, NULL), 0);
	assert_true(c.weight_decay == 0);
	json_decref(j);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults_are_the_lesson),
		cmocka_unit_test(test_rng_key),
		cmocka_unit_test(test_kernels_key),
		cmocka_unit_test(test_precision_key),
		cmocka_unit_test(test_seq_kernels_key),
		cmocka_unit_test(test_conv_key),
		cmocka_unit_test(test_set_from_text),
		cmocka_unit_test(test_bad_values_named),
		cmocka_unit_test(test_cross_field),
		cmocka_unit_test(test_json_round_trip),
		cmocka_unit_test(test_json_bad_input),
		cmocka_unit_test(test_json_adamw_default_decay),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
