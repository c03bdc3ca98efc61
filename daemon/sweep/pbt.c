/*
 * pbt.c - a PBT exploit's new job. See daemon/sweep/pbt.h.
 */
#include "daemon/sweep/pbt.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "traind/checkpoint.h"
#include "traind/config.h"
#include "traind/trainer.h"
#include "daemon/jobs/jobs.h"
#include "daemon/store/store.h"

void pbt_exploit_clear(struct pbt_exploit *x, struct dscache *dsc)
{
	free(x->params_json);
	x->params_json = NULL;
	job_spec_clear(dsc, &x->spec);
}

void pbt_build(struct pbt_exploit *x, const char *db_path, struct dscache *dsc)
{
	struct job_spec *sp = &x->spec;
	struct tr_err *err = &x->err;
	struct store_checkpoint ck;
	struct checkpoint_info info;
	struct store *rs = NULL;
	struct trainer *t = NULL;
	json_t *params = NULL;
	int rc;

	memset(&ck, 0, sizeof(ck));
	rc = store_open(&rs, db_path, true, err);
	if (rc == 0)
		rc = store_epoch_checkpoint(rs, x->from_job, x->epoch, &ck, err);
	if (rc == -ENOENT)
		tr_err_set(err, rc, "job %" PRId64 " has no checkpoint at epoch %u", x->from_job, x->epoch);
	if (rc == 0)
		rc = checkpoint_inspect(ck.blob, (size_t)ck.size, &info, err);
	if (rc < 0)
		goto out;
	sp->cfg = info.cfg;
	params = json_loads(x->params_json, 0, NULL);
	rc = params ? config_apply_json(&sp->cfg, params, err) : tr_err_set(err, -ENOMEM, "out of memory");
	if (rc < 0) {
		tr_err_prefix(err, "the perturbed parameters");
		goto out;
	}
	sp->cfg.epochs = x->epochs;
	snprintf(sp->dataset_digest, sizeof(sp->dataset_digest), "%s", x->digest);
	rc = dscache_get(dsc, sp->cfg.dataset, x->digest[0] ? x->digest : NULL, &sp->ds, err);
	if (rc == 0)
		rc = checkpoint_restore(&t, ck.blob, (size_t)ck.size, sp->ds, false, err);
	if (rc == 0)
		rc = trainer_set_epochs(t, sp->cfg.epochs, err);
	if (rc == 0)
		rc = trainer_set_lr(t, sp->cfg.lr, err);
	if (rc < 0)
		goto out;
	t->cfg = sp->cfg;   /* what may change: lr, betas, weight_decay...; the next run builds on it */
	snprintf(sp->origin, sizeof(sp->origin), "job %" PRId64 " epoch %u", x->from_job, ck.epoch);
	snprintf(t->note, sizeof(t->note), "started from %s (pbt exploit)", sp->origin);
	if (t->nhistory != t->epoch || t->step != 0) {
		rc = tr_err_set(err, -EINVAL, "job %" PRId64 "'s checkpoint at epoch %u: its history has %u rows at epoch %u step %u",
				x->from_job, x->epoch, t->nhistory, t->epoch, t->step);
		goto out;
	}
	rc = job_spec_take_origin(sp, t, err);
out:
	x->rc = rc < 0 ? rc : 0;
	json_decref(params);
	trainer_free(t);
	store_checkpoint_clear(&ck);
	store_close(rs);
}
