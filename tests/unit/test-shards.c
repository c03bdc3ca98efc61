/*
 * test-shards.c - a batch cut into fixed shards (config `shards`) gives the
 * same bits whichever ranks compute the shards: one process doing all S in
 * turn equals 2 (or S) trainers exchanging their shards through a
 * trainer_comm, weights and history row by row; the last, short batch's
 * empty shards included, BatchNorm and Dropout too; shards = 1 is today's arithmetic; bad settings
 * are refused naming their key; a sharded job resumed from a mid-epoch
 * checkpoint equals one never stopped.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tests/lib/testutil.h"
#include "traind/checkpoint.h"

static struct dataset *ds;

struct result {
	char hex[65];
	uint32_t nhistory;
	struct history_row rows[8];
};

static void keep(const struct trainer *t, struct result *r)
{
	trainer_params_hash(t, r->hex);
	r->nhistory = t->nhistory;
	memcpy(r->rows, t->history, t->nhistory * sizeof(r->rows[0]));
}

static void train_alone(const struct train_config *cfg, struct result *r)
{
	struct trainer *t = NULL;
	struct tr_err err = { 0 };

	assert_int_equal(trainer_new(&t, cfg, ds, &err), 0);
	run_trainer(t, -1);
	assert_true(trainer_finished(t));
	keep(t, r);
	trainer_free(t);
}

/* In-process "ranks": threads meeting at a barrier, each copying the others'
 * own blocks out of their buffers. */
struct group {
	pthread_barrier_t bar;
	uint32_t n;
	struct trainer *t[CFG_MAX_RANKS];
};

struct member {
	struct group *g;
	struct trainer_comm comm;
	struct train_config cfg;
	struct result res;
};

static int fake_allgather(void *ctx, void *all, size_t bytes)
{
	struct member *m = ctx;
	struct group *g = m->g;

	pthread_barrier_wait(&g->bar);
	for (uint32_t q = 0; q < g->n; q++)
		if (q != m->comm.rank)
			memcpy((uint8_t *)all + q * bytes, g->t[q]->shard_buf + q * bytes, bytes);
	pthread_barrier_wait(&g->bar);
	return 0;
}

static void *member_main(void *p)
{
	struct member *m = p;
	struct trainer *t = m->g->t[m->comm.rank];

	run_trainer(t, -1);
	keep(t, &m->res);
	return NULL;
}

static void train_ranks(const struct train_config *cfg, uint32_t nranks, struct result *r)
{
	struct group g = { .n = nranks };
	struct member m[CFG_MAX_RANKS];
	pthread_t th[CFG_MAX_RANKS];
	struct tr_err err = { 0 };

	pthread_barrier_init(&g.bar, NULL, nranks);
	for (uint32_t i = 0; i < nranks; i++) {
		m[i] = (struct member){ .g = &g, .cfg = *cfg };
		m[i].comm = (struct trainer_comm){ .rank = i, .nranks = nranks,
						   .allgather = fake_allgather, .ctx = &m[i] };
		assert_int_equal(trainer_new(&g.t[i], cfg, ds, &err), 0);
		assert_int_equal(trainer_set_comm(g.t[i], &m[i].comm, &err), 0);
	}
	for (uint32_t i = 0; i < nranks; i++)
		assert_int_equal(pthread_create(&th[i], NULL, member_main, &m[i]), 0);
	for (uint32_t i = 0; i < nranks; i++)
		pthread_join(th[i], NULL);
	for (uint32_t i = 1; i < nranks; i++)
		assert_string_equal(m[i].res.hex, m[0].res.hex);
	*r = m[0].res;
	for (uint32_t i = 0; i < nranks; i++)
		trainer_free(g.t[i]);
	pthread_barrier_destroy(&g.bar);
}

static void assert_same(const struct result *a, const struct result *b)
{
	assert_string_equal(a->hex, b->hex);
	assert_int_equal(a->nhistory, b->nhistory);
	for (uint32_t i = 0; i < a->nhistory; i++) {
		const struct history_row *x = &a->rows[i], *y = &b->rows[i];

		assert_memory_equal(&x->train_loss, &y->train_loss, sizeof(double));
		assert_memory_equal(&x->train_acc, &y->train_acc, sizeof(double));
		assert_memory_equal(&x->train_macro_acc, &y->train_macro_acc, sizeof(double));
		assert_memory_equal(&x->val_loss, &y->val_loss, sizeof(double));
		assert_memory_equal(&x->val_acc, &y->val_acc, sizeof(double));
		assert_memory_equal(&x->grad_norm, &y->grad_norm, sizeof(double));
	}
}

static void shard_config(struct train_config *cfg, uint32_t shards)
{
	small_config(cfg);
	cfg->epochs = 2;
	cfg->train_size = 1190;      /* the last batch has 6 of 16: short and empty shards */
	cfg->shards = shards;
	cfg->clip_grad_norm = 5.0;   /* its norm is of the summed gradient */
}

static void test_ranks_same_bits(void **state)
{
	struct train_config cfg;
	struct result one, two, four, s1;

	(void)state;
	shard_config(&cfg, 4);
	train_alone(&cfg, &one);
	train_ranks(&cfg, 2, &two);
	assert_same(&one, &two);
	train_ranks(&cfg, 4, &four);
	assert_same(&one, &four);
	/* Four shards are other arithmetic than one batch. */
	shard_config(&cfg, 1);
	train_alone(&cfg, &s1);
	assert_string_not_equal(s1.hex, one.hex);
}

/* BatchNorm and Dropout: per-shard statistics, the running ones averaged
 * over the shards in shard order; the same on 1, 2 and 4 ranks. */
static void test_batchnorm_dropout(void **state)
{
	struct train_config cfg;
	struct result one, two, four;

	(void)state;
	shard_config(&cfg, 4);
	cfg.epochs = 1;
	snprintf(cfg.model, sizeof(cfg.model),
		 "flatten, linear(64), batchnorm1d, relu, dropout(0.2), linear(10)");
	train_alone(&cfg, &one);
	train_ranks(&cfg, 2, &two);
	assert_same(&one, &two);
	train_ranks(&cfg, 4, &four);
	assert_same(&one, &four);
}

static void test_two_shards(void **state)
{
	struct train_config cfg;
	struct result one, two;

	(void)state;
	shard_config(&cfg, 2);
	cfg.threads = 1;
	train_alone(&cfg, &one);
	train_ranks(&cfg, 2, &two);
	assert_same(&one, &two);
}

/* shards = 1 is the very code path of a job without the key: a config with
 * shards unset (0, "the ranks" = 1) and one with 1 give the same bits. */
static void test_one_shard_is_today(void **state)
{
	struct train_config cfg;
	struct result a, b;

	(void)state;
	small_config(&cfg);
	cfg.epochs = 1;
	train_alone(&cfg, &a);
	cfg.shards = 1;
	train_alone(&cfg, &b);
	assert_same(&a, &b);
}

static void test_resume_mid_epoch(void **state)
{
	struct train_config cfg;
	struct trainer *t = NULL, *u = NULL;
	struct tr_err err = { 0 };
	struct result whole, resumed;
	uint8_t *blob = NULL;
	size_t len = 0;

	(void)state;
	shard_config(&cfg, 2);
	train_alone(&cfg, &whole);
	assert_int_equal(trainer_new(&t, &cfg, ds, &err), 0);
	run_trainer(t, 100);         /* epoch 1, step 25 */
	assert_int_equal(checkpoint_save(t, &blob, &len, &err), 0);
	trainer_free(t);
	assert_int_equal(checkpoint_restore(&u, blob, len, ds, false, &err), 0);
	assert_int_equal(u->cfg.shards, 2);
	run_trainer(u, -1);
	keep(u, &resumed);
	assert_same(&whole, &resumed);
	trainer_free(u);
	free(blob);
}

static void expect_bad(const char *key, const char *value, const char *errkey, const char *words)
{
	struct train_config cfg;
	struct tr_err err = { 0 };
	int rc;

	config_defaults(&cfg);
	rc = config_set(&cfg, key, value, &err);
	if (rc == 0)
		rc = config_validate(&cfg, &err);
	assert_int_equal(rc, -EINVAL);
	assert_string_equal(err.key, errkey);
	if (!strstr(err.msg, words))
		fail_msg("'%s' lacks '%s'", err.msg, words);
}

static void test_bad_settings(void **state)
{
	struct train_config cfg;
	struct tr_err err = { 0 };

	(void)state;
	expect_bad("shards", "3", "shards", "does not divide batch_size 64");
	expect_bad("shards", "0", "shards", "out of range");
	expect_bad("ranks", "3", "shards", "does not divide batch_size 64");   /* shards = ranks */
	expect_bad("hosts", "a:2,", "hosts", "ends in a comma");
	expect_bad("hosts", "a b:2", "hosts", "host name");
	expect_bad("hosts", "a:0", "hosts", "slots");
	config_defaults(&cfg);
	assert_int_equal(config_set(&cfg, "shards", "4", &err), 0);
	assert_int_equal(config_set(&cfg, "ranks", "3", &err), 0);
	assert_int_equal(config_validate(&cfg, &err), -EINVAL);
	assert_string_equal(err.key, "shards");
	assert_non_null(strstr(err.msg, "not a multiple of ranks 3"));
	config_defaults(&cfg);
	assert_int_equal(config_set(&cfg, "ranks", "2", &err), 0);
	assert_int_equal(config_set(&cfg, "hosts", "a:1", &err), 0);
	assert_int_equal(config_validate(&cfg, &err), -EINVAL);
	assert_string_equal(err.key, "hosts");
	assert_non_null(strstr(err.msg, "1 slots for 2 ranks"));
	/* Batch normalization needs shards of two samples at least. */
	small_config(&cfg);
	cfg.shards = 16;
	snprintf(cfg.model, sizeof(cfg.model), "flatten, linear(64), batchnorm1d, relu, linear(10)");
	assert_int_equal(trainer_check_config(&cfg, ds, &err), -EINVAL);
	if (!strstr(err.msg, "a training shard of one sample"))
		fail_msg("%s", err.msg);
	cfg.shards = 4;
	cfg.train_size = 1197;       /* the last batch: 13 = 4 + 4 + 4 + 1 */
	assert_int_equal(trainer_check_config(&cfg, ds, &err), -EINVAL);
	if (!strstr(err.msg, "a training shard of one sample"))
		fail_msg("%s", err.msg);
}

/* The keys travel in JSON; a stored config without them is one shard. */
static void test_json(void **state)
{
	struct train_config cfg;
	struct tr_err err = { 0 };
	json_t *o = json_pack("{s:i, s:s}", "ranks", 2, "hosts", "n1:1,n2:1"), *back;

	(void)state;
	assert_int_equal(config_from_json(&cfg, o, &err), 0);
	assert_int_equal(cfg.shards, 2);
	assert_int_equal(cfg.max_restarts, 3);
	back = config_to_json(&cfg);
	assert_int_equal(json_integer_value(json_object_get(back, "shards")), 2);
	assert_string_equal(json_string_value(json_object_get(back, "hosts")), "n1:1,n2:1");
	json_decref(back);
	json_decref(o);
	o = json_pack("{s:i}", "epochs", 2);
	assert_int_equal(config_from_stored_json(&cfg, o, &err), 0);
	assert_int_equal(config_shards(&cfg), 1);
	assert_int_equal(cfg.ranks, 1);
	json_decref(o);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bad_settings),
		cmocka_unit_test(test_json),
		cmocka_unit_test(test_one_shard_is_today),
		cmocka_unit_test(test_two_shards),
		cmocka_unit_test(test_batchnorm_dropout),
		cmocka_unit_test(test_ranks_same_bits),
		cmocka_unit_test(test_resume_mid_epoch),
	};
	int rc;

	ds = make_synthetic(1300, 200, 28, 99);
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	free_synthetic(ds);
	return rc;
}
