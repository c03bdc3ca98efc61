/*
 * sched-probe.c - prints the learning rate (and the momentum) every
 * optimizer step of a schedule would use, for tests/torch/test_sched.py to
 * compare with torch.optim.lr_scheduler; and the clip coefficient of
 * clip_grad_norm_ for gradients read from a file.
 *
 *   sched-probe lr SPEC EPOCHS STEPS_PER_EPOCH LR OPTIM [METRIC,...]
 *     one line per step: "<lr> <momentum>" (%.17g); METRICs are the
 *     validation metric of each epoch, for plateau (monitor val_loss).
 *   sched-probe clip MAX_NORM THREADS FILE
 *     FILE: little-endian float32 gradients; prints "<norm> <coef>" and the
 *     clipped gradients' sha256.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "traind/clip.h"
#include "traind/config.h"
#include "traind/sched.h"
#include "traind/sha256.h"
#include "traind/team.h"

/* SCHED_PROBE_KERNELS=portable: a portable job's schedules and clipping */
static bool portable(void)
{
	const char *k = getenv("SCHED_PROBE_KERNELS");

	return k && strcmp(k, "portable") == 0;
}

static int probe_lr(int argc, char **argv)
{
	struct sched_spec spec;
	struct sched s;
	struct tr_err err = { 0 };
	struct sched_config sc = { 0 };
	double metrics[1024];
	uint32_t nmetrics = 0;
	bool sgd;

	if (argc < 7)
		return 2;
	if (sched_parse(&spec, argv[2], (uint32_t)atoi(argv[3]), &err) < 0) {
		fprintf(stderr, "%s\n", err.msg);
		return 1;
	}
	sgd = strcmp(argv[6], "sgd") == 0;
	sc.lr = strtod(argv[5], NULL);
	sc.beta1_or_momentum = sgd ? 0.9 : 0.9;
	sc.epochs = (uint32_t)atoi(argv[3]);
	sc.steps_per_epoch = (uint32_t)atoi(argv[4]);
	sc.monitor = MONITOR_VAL_LOSS;
	sc.portable = portable();
	if (argc > 7)
		for (char *tok = strtok(argv[7], ","); tok && nmetrics < 1024; tok = strtok(NULL, ","))
			metrics[nmetrics++] = strtod(tok, NULL);
	sched_init(&s, &spec, &sc);
	for (uint32_t e = 0; e < sc.epochs; e++) {
		for (uint32_t k = 0; k < sc.steps_per_epoch; k++) {
			printf("%.17g %.17g\n", s.lr, s.momentum);
			sched_after_batch(&s);
		}
		{
			double m = e < nmetrics ? metrics[e] : 1.0;

			sched_after_epoch(&s, e + 1, m, m, m, m, m);
		}
	}
	return 0;
}

static int probe_clip(int argc, char **argv)
{
	struct team *team = NULL;
	FILE *f;
	float *g;
	long n;
	float coef;
	double norm;
	char hex[65];

	if (argc < 5)
		return 2;
	f = fopen(argv[4], "rb");
	if (!f || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f) / 4) <= 0)
		return 1;
	rewind(f);
	g = malloc((size_t)n * 4);
	if (!g || fread(g, 4, (size_t)n, f) != (size_t)n)
		return 1;
	fclose(f);
	if (team_new(&team, (unsigned)atoi(argv[3])) < 0)
		return 1;
	norm = clip_grad_norm_by(portable() ? KERNELS_PORTABLE : KERNELS_OPENBLAS, team, g, (size_t)n,
				 strtod(argv[2], NULL), &coef);
	sha256_hex(g, (size_t)n * 4, hex);
	printf("%.17g %.9g %s\n", norm, (double)coef, hex);
	team_free(team);
	free(g);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "lr") == 0)
		return probe_lr(argc, argv);
	if (argc > 1 && strcmp(argv[1], "clip") == 0)
		return probe_clip(argc, argv);
	fprintf(stderr, "usage: sched-probe lr SPEC EPOCHS STEPS LR OPTIM [METRICS] | clip MAX THREADS FILE\n");
	return 2;
}
