/*
 * cli.c - traind-train: the engine's command-line driver. Trains one job in
 * the foreground without the daemon, prints the lesson's per-epoch lines and
 * the test accuracy, and can save a checkpoint after every epoch, stop after
 * an epoch (a simulated crash) and resume from a checkpoint file.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "traind-config.h"
#include "traind/blaskernel.h"
#include "traind/checkpoint.h"
#include "traind/config.h"
#include "traind/dataset.h"
#include "traind/fileio.h"
#include "traind/generate.h"
#include "traind/pycode.h"
#include "traind/trainer.h"

static void usage(FILE *out)
{
	fprintf(out,
		"usage: traind-train [OPTIONS]\n"
		"Train a model on a dataset in the foreground (no daemon).\n\n"
		"  --data-dir DIR         datasets live in DIR/NAME/ (default $TRAIND_DATA_DIR or ./data)\n"
		"  --dataset NAME         dataset directory name (mnist)\n"
		"  --epochs N             epochs (5)\n"
		"  --batch-size N         training batch (64)\n"
		"  --eval-batch-size N    validation/test batch (128)\n"
		"  --lr X                 learning rate (0.001)\n"
		"  --optimizer NAME       adam | adamw | sgd (adam)\n"
		"  --momentum X           SGD momentum (0)\n"
		"  --weight-decay X       weight decay (0; adamw 0.01)\n"
		"  --hidden W[,W...]      hidden layer widths of the MLP (256)\n"
		"  --model SPEC           layers, e.g. lenet5 or flatten,linear(256),relu,linear(10) (the MLP of --hidden)\n"
		"  --ftz true|false       flush denormals to zero while training (true)\n"
		"  --strict-numerics true|false  refuse to resume under another BLAS kernel or bf16 path (false)\n"
		"  --precision fp32|bf16  matrix products in float32, or on bfloat16 inputs with float32\n"
		"                         accumulation (AMX or AVX-512-BF16; doc/precision.md) (fp32)\n"
		"  --conv gemm|onednn     conv2d by im2col + GEMM, or by oneDNN's convolutions (kernels\n"
		"                         openblas; doc/models.md) (gemm)\n"
		"  --rng torch|xoshiro    random streams: PyTorch's (init, split, order as the lesson) or traind's own (torch)\n"
		"  --kernels openblas|portable  OpenBLAS and libm, or traind's own kernels: the same bits on any\n"
		"                         CPU and thread count (TRAIND_ISA=avx512|avx2|generic picks the path) (openblas)\n"
		"  --seed N               model/shuffle seed (42)\n"
		"  --split-seed N         train/val split seed (42)\n"
		"  --val-size N           validation images (10000)\n"
		"  --train-size N         train on the first N images of the training part (all)\n"
		"  --threads N            threads for this job; part of its bits (2)\n");
	fprintf(out,
		"  --lr-scheduler SPEC    e.g. cosine(t_max=5), onecycle(max_lr=0.01),\n"
		"                         'linear(start_factor=0.1,total_iters=2) then cosine(t_max=3)' (none)\n"
		"  --monitor NAME         val_loss | val_acc | val_macro_acc | val_mae | val_rmse: the best epoch (val_loss)\n"
		"  --early-stop-patience N  stop after N epochs without improvement (0: never)\n"
		"  --early-stop-min-delta X an improvement beats the best by more than X (0)\n"
		"  --clip-grad-norm X     clip the total gradient 2-norm to X (0: no clipping)\n"
		"  --loss NAME            cross_entropy | mse | l1 | huber | bce_with_logits (cross_entropy)\n"
		"  --label-smoothing X    cross_entropy's label smoothing, 0..1 (0)\n"
		"  --class-weights W,...  cross_entropy's weight of each class (none)\n"
		"  --huber-delta X        huber's delta (1.0)\n"
		"  --pos-weight W,...     bce_with_logits' weight of each label's positives (none)\n"
		"  --augment SPEC         training-batch augmentation, e.g.\n"
		"                         'random_crop(32,padding=4),random_horizontal_flip(0.5)' (none)\n"
		"  --context N            a text dataset's tokens per sample (windows; doc/sequences.md)\n"
		"  --seq-kernels 1|2|3    the sequence layers' arithmetic: 1 per head (jobs stored before the key),\n"
		"                         2 the blocked causal attention, float32 lanes; 3 as 2, and with\n"
		"                         --precision bf16 the projections and feed-forward products bf16 (3)\n"
		"  --checkpoint FILE      write a checkpoint to FILE after every epoch\n"
		"  --crash-after-epoch N  stop right after epoch N's checkpoint (simulated crash)\n"
		"  --resume FILE          continue from a checkpoint file\n"
		"  --weights-only         with --resume: keep the model, start a fresh optimizer\n"
		"  --init-from FILE       start from a model-only .safetensors file\n"
		"  --export FILE          write the final model (PyTorch names) to FILE\n"
		"  --export-pytorch FILE.py  write the model's PyTorch code (class Model) to FILE.py\n"
		"  --no-test              skip the test-set evaluation\n"
		"  --generate PROMPT      a language model (text dataset): print PROMPT continued after training\n"
		"                         (--generate-tokens N, 200; --generate-temperature T, 0.8; seed 1)\n"
		"  --hash                 print the SHA-256 of the final parameters\n"
		"  --blas-kernel NAME|auto|openblas  the OpenBLAS kernel ($TRAIND_BLAS_KERNEL; auto: the\n"
		"                         best the CPU's features allow; OPENBLAS_CORETYPE wins over it)\n"
		"  -h, --help, --version\n");
}

/* The lesson's line; a regression's has val_mae and val_rmse instead of the
 * accuracies, a multi-label's the per-label accuracy alone. */
static void print_row(const struct history_row *r, uint32_t epochs, enum loss_task task)
{
	int width = snprintf(NULL, 0, "%u", epochs);

	if (task == TASK_TOKENS)
		printf("Epoch [%0*u/%0*u] | train_loss: %.4f | train_acc: %.4f | val_loss: %.4f | val_acc: %.4f"
		       " | val_ppl: %.4f | %.2fs%s%s\n",
		       width, r->epoch, width, epochs, r->train_loss, r->train_acc, r->val_loss, r->val_acc,
		       r->val_ppl, r->seconds, r->note[0] ? " | " : "", r->note);
	else if (task == TASK_REGRESSION)
		printf("Epoch [%0*u/%0*u] | train_loss: %.4f | val_loss: %.4f | val_mae: %.4f | val_rmse: %.4f"
		       " | %.2fs%s%s\n",
		       width, r->epoch, width, epochs, r->train_loss, r->val_loss, r->val_mae, r->val_rmse,
		       r->seconds, r->note[0] ? " | " : "", r->note);
	else if (task == TASK_MULTILABEL)
		printf("Epoch [%0*u/%0*u] | train_loss: %.4f | train_acc: %.4f | val_loss: %.4f | val_acc: %.4f"
		       " | %.2fs%s%s\n",
		       width, r->epoch, width, epochs, r->train_loss, r->train_acc, r->val_loss, r->val_acc,
		       r->seconds, r->note[0] ? " | " : "", r->note);
	else
		printf("Epoch [%0*u/%0*u] | train_loss: %.4f | train_acc: %.4f | val_loss: %.4f | val_acc: %.4f"
		       " | val_macro_acc: %.4f | %.2fs%s%s\n",
		       width, r->epoch, width, epochs, r->train_loss, r->train_acc, r->val_loss, r->val_acc,
		       r->val_macro_acc, r->seconds, r->note[0] ? " | " : "", r->note);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "data-dir", required_argument, NULL, 'D' },
		{ "checkpoint", required_argument, NULL, 'c' },
		{ "crash-after-epoch", required_argument, NULL, 'x' },
		{ "resume", required_argument, NULL, 'r' },
		{ "weights-only", no_argument, NULL, 'w' },
		{ "init-from", required_argument, NULL, 'i' },
		{ "export", required_argument, NULL, 'e' },
		{ "export-pytorch", required_argument, NULL, 'P' },
		{ "no-test", no_argument, NULL, 'T' },
		{ "generate", required_argument, NULL, 'g' },
		{ "generate-tokens", required_argument, NULL, 'n' },
		{ "generate-temperature", required_argument, NULL, 't' },
		{ "hash", no_argument, NULL, 'H' },
		{ "blas-kernel", required_argument, NULL, 'K' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		/* configuration keys: --foo-bar sets foo_bar */
		{ "dataset", required_argument, NULL, 1 },
		{ "epochs", required_argument, NULL, 1 },
		{ "batch-size", required_argument, NULL, 1 },
		{ "eval-batch-size", required_argument, NULL, 1 },
		{ "lr", required_argument, NULL, 1 },
		{ "optimizer", required_argument, NULL, 1 },
		{ "momentum", required_argument, NULL, 1 },
		{ "weight-decay", required_argument, NULL, 1 },
		{ "hidden", required_argument, NULL, 1 },
		{ "seed", required_argument, NULL, 1 },
		{ "split-seed", required_argument, NULL, 1 },
		{ "val-size", required_argument, NULL, 1 },
		{ "train-size", required_argument, NULL, 1 },
		{ "threads", required_argument, NULL, 1 },
		{ "model", required_argument, NULL, 1 },
		{ "ftz", required_argument, NULL, 1 },
		{ "strict-numerics", required_argument, NULL, 1 },
		{ "lr-scheduler", required_argument, NULL, 1 },
		{ "monitor", required_argument, NULL, 1 },
		{ "early-stop-patience", required_argument, NULL, 1 },
		{ "early-stop-min-delta", required_argument, NULL, 1 },
		{ "clip-grad-norm", required_argument, NULL, 1 },
		{ "rng", required_argument, NULL, 1 },
		{ "loss", required_argument, NULL, 1 },
		{ "label-smoothing", required_argument, NULL, 1 },
		{ "class-weights", required_argument, NULL, 1 },
		{ "huber-delta", required_argument, NULL, 1 },
		{ "pos-weight", required_argument, NULL, 1 },
		{ "augment", required_argument, NULL, 1 },
		{ "kernels", required_argument, NULL, 1 },
		{ "precision", required_argument, NULL, 1 },
		{ "conv", required_argument, NULL, 1 },
		{ "context", required_argument, NULL, 1 },
		{ "seq-kernels", required_argument, NULL, 1 },
		{ NULL, 0, NULL, 0 },
	};
	const char *data_dir = getenv("TRAIND_DATA_DIR");
	const char *ckpt_path = NULL, *resume_path = NULL, *init_path = NULL, *export_path = NULL;
	const char *pycode_path = NULL, *prompt = NULL;
	struct gen_opts gen = { .tokens = 200, .temperature = 0.8, .top_k = 0, .seed = 1 };
	const char *blas_kernel = NULL;
	bool weights_only = false, run_test = true, show_hash = false;
	long crash_after = -1;
	struct train_config cfg;
	struct tr_err err = { 0 };
	struct dataset *ds = NULL;
	struct trainer *t = NULL;
	uint8_t *blob = NULL;
	size_t blob_len = 0;
	char path[4096];
	int c, idx, rc = 1;
	/* Set the optimizer before anything else: adamw changes the weight decay default. */
	const char *keys[32];
	const char *vals[32];
	int nkv = 0;

	config_defaults(&cfg);
	while ((c = getopt_long(argc, argv, "h", opts, &idx)) != -1) {
		switch (c) {
		case 1:
			if (nkv == 32) {
				fprintf(stderr, "traind-train: too many options\n");
				return 2;
			}
			keys[nkv] = opts[idx].name;
			vals[nkv++] = optarg;
			break;
		case 'D': data_dir = optarg; break;
		case 'c': ckpt_path = optarg; break;
		case 'x': {
			char *end;

			crash_after = strtol(optarg, &end, 10);
			if (*end || crash_after < 1) {
				fprintf(stderr, "traind-train: --crash-after-epoch: '%s' is not an epoch >= 1\n",
					optarg);
				return 2;
			}
			break;
		}
		case 'r': resume_path = optarg; break;
		case 'w': weights_only = true; break;
		case 'i': init_path = optarg; break;
		case 'e': export_path = optarg; break;
		case 'P': pycode_path = optarg; break;
		case 'T': run_test = false; break;
		case 'g': prompt = optarg; break;
		case 'n':
		case 't': {
			char *end;
			double v = strtod(optarg, &end);

			if (*end || !(c == 'n' ? v >= 1 && v <= GENERATE_MAX_TOKENS && v == (uint32_t)v
					       : v >= 0 && v <= 100)) {
				fprintf(stderr, "traind-train: --generate-%s: '%s' is out of range\n",
					c == 'n' ? "tokens" : "temperature", optarg);
				return 2;
			}
			if (c == 'n')
				gen.tokens = (uint32_t)v;
			else
				gen.temperature = v;
			break;
		}
		case 'H': show_hash = true; break;
		case 'K': blas_kernel = optarg; break;
		case 'h': usage(stdout); return 0;
		case 'V': printf("traind-train %s\n", TRAIND_VERSION); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "traind-train: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	/* Before anything else: this may run traind-train again, to load the
	 * BLAS kernel (blaskernel.h). */
	if (blaskernel_start(argv, blas_kernel, &err) < 0) {
		fprintf(stderr, "traind-train: %s\n", err.msg);
		return 2;
	}
	if (blaskernel_state()->note[0])
		fprintf(stderr, "traind-train: BLAS: %s\n", blaskernel_state()->note);
	for (int pass = 0; pass < 2; pass++) {
		for (int i = 0; i < nkv; i++) {
			char key[32];

			if ((strcmp(keys[i], "optimizer") == 0) != (pass == 0))
				continue;
			snprintf(key, sizeof(key), "%s", keys[i]);
			for (char *p = key; *p; p++)
				if (*p == '-')
					*p = '_';
			if (config_set(&cfg, key, vals[i], &err) < 0) {
				fprintf(stderr, "traind-train: --%s: %s\n", keys[i], err.msg);
				return 2;
			}
		}
	}
	if (config_validate(&cfg, &err) < 0) {
		fprintf(stderr, "traind-train: %s\n", err.msg);
		return 2;
	}
	if (weights_only && !resume_path) {
		fprintf(stderr, "traind-train: --weights-only needs --resume FILE\n");
		return 2;
	}
	if (resume_path && nkv) {
		fprintf(stderr, "traind-train: --resume takes the configuration from the checkpoint; drop the other training options\n");
		return 2;
	}
	if (resume_path) {
		struct checkpoint_info info;

		if (file_read_all(resume_path, 0, &blob, &blob_len, &err) < 0) {
			fprintf(stderr, "traind-train: %s\n", err.msg);
			goto out;
		}
		if (checkpoint_inspect(blob, blob_len, &info, &err) < 0) {
			fprintf(stderr, "traind-train: %s: %s\n", resume_path, err.msg);
			goto out;
		}
		cfg = info.cfg;
	}
	snprintf(path, sizeof(path), "%s/%s", data_dir ? data_dir : "data", cfg.dataset);
	if (dataset_load(&ds, path, &err) < 0) {
		fprintf(stderr, "traind-train: %s\n", err.msg);
		goto out;
	}
	if (resume_path) {
		if (checkpoint_restore(&t, blob, blob_len, ds, weights_only, &err) < 0) {
			fprintf(stderr, "traind-train: %s: %s\n", resume_path, err.msg);
			goto out;
		}
		printf("Resumed from %s: %u epochs done, step %u%s\n", resume_path, t->epoch, t->step,
		       weights_only ? " (weights only, fresh optimizer)" : "");
		for (uint32_t i = 0; i < t->nhistory; i++)
			print_row(&t->history[i], cfg.epochs, t->task);
	} else {
		if (trainer_new(&t, &cfg, ds, &err) < 0) {
			fprintf(stderr, "traind-train: %s\n", err.msg);
			goto out;
		}
		if (init_path) {
			free(blob);
			blob = NULL;
			if (file_read_all(init_path, 0, &blob, &blob_len, &err) < 0) {
				fprintf(stderr, "traind-train: %s\n", err.msg);
				goto out;
			}
			if (checkpoint_load_model(t, blob, blob_len, &err) < 0) {
				fprintf(stderr, "traind-train: %s: %s\n", init_path, err.msg);
				goto out;
			}
		}
	}
	while (!trainer_finished(t)) {
		struct history_row row;

		while (!trainer_epoch_done(t))
			if (trainer_step(t) < 0)
				goto out;
		if (trainer_end_epoch(t, &row) < 0)
			goto out;
		print_row(&row, cfg.epochs, t->task);
		fflush(stdout);
		if (ckpt_path) {
			uint8_t *cb = NULL;
			size_t cl = 0;
			int wrc;

			if (checkpoint_save(t, &cb, &cl, &err) < 0) {
				fprintf(stderr, "traind-train: %s\n", err.msg);
				goto out;
			}
			wrc = file_write_atomic(ckpt_path, cb, cl, &err);
			free(cb);
			if (wrc < 0) {
				fprintf(stderr, "traind-train: %s\n", err.msg);
				goto out;
			}
		}
		if (crash_after > 0 && (long)row.epoch == crash_after) {
			printf("Simulated crash after epoch %u%s\n", row.epoch,
			       ckpt_path ? "; resume with --resume" : "");
			rc = 3;
			goto out;
		}
	}
	if (run_test) {
		struct metrics m;

		trainer_evaluate(t, EVAL_TEST, &m);
		if (t->task == TASK_TOKENS)
			printf("[%s] | test_loss: %.6f | test_acc: %.6f | test_ppl: %.6f\n",
			       t->cfg.model[0] ? t->cfg.model : "MLP", m.loss, m.acc, m.ppl);
		else if (t->task == TASK_REGRESSION)
			printf("[%s] | test_loss: %.6f | test_mae: %.6f | test_rmse: %.6f\n",
			       t->cfg.model[0] ? t->cfg.model : "MLP", m.loss, m.mae, m.rmse);
		else if (t->task == TASK_MULTILABEL)
			printf("[%s] | test_loss: %.6f | test_acc: %.6f\n",
			       t->cfg.model[0] ? t->cfg.model : "MLP", m.loss, m.acc);
		else
			printf("[%s] | test_loss: %.6f | test_acc: %.6f | test_macro_acc: %.6f\n",
			       t->cfg.model[0] ? t->cfg.model : "MLP", m.loss, m.acc, m.macro_acc);
	}
	if (prompt) {
		uint32_t *ids = NULL, *out_ids = NULL, *all = NULL;
		size_t np = 0;
		char *text = NULL;
		int grc = !ds->text ? tr_err_set(&err, -EINVAL, "--generate: dataset %s is not a text", cfg.dataset)
				    : generate_check(&t->model, &err);

		if (grc == 0)
			grc = dataset_text_encode(ds, prompt, strlen(prompt), &ids, &np, &err);
		if (grc == 0 && (!(out_ids = malloc(gen.tokens * sizeof(*out_ids))) ||
				 !(all = malloc((np + gen.tokens) * sizeof(*all)))))
			grc = tr_err_set(&err, -ENOMEM, "out of memory");
		if (grc == 0)
			grc = generate_tokens(&t->model, ids, np, &gen, out_ids, &err);
		if (grc == 0) {
			memcpy(all, ids, np * sizeof(*all));
			memcpy(all + np, out_ids, gen.tokens * sizeof(*all));
			text = dataset_text_decode(ds, all, np + gen.tokens);
			printf("%s\n", text ? text : "(out of memory)");
		}
		free(text);
		free(ids);
		free(out_ids);
		free(all);
		if (grc < 0) {
			fprintf(stderr, "traind-train: %s\n", err.msg);
			goto out;
		}
	}
	if (show_hash) {
		char hex[65];

		trainer_params_hash(t, hex);
		printf("params sha256: %s\n", hex);
	}
	if (export_path) {
		uint8_t *mb = NULL;
		size_t ml = 0;
		int wrc;

		if (checkpoint_export_model(t, &mb, &ml, &err) < 0) {
			fprintf(stderr, "traind-train: %s\n", err.msg);
			goto out;
		}
		wrc = file_write_atomic(export_path, mb, ml, &err);
		free(mb);
		if (wrc < 0) {
			fprintf(stderr, "traind-train: %s\n", err.msg);
			goto out;
		}
	}
	if (pycode_path) {
		char *code = NULL;
		size_t cl = 0;
		int wrc;

		if (pycode_write(&t->model.spec, t->model.input, &code, &cl, &err) < 0) {
			fprintf(stderr, "traind-train: %s\n", err.msg);
			goto out;
		}
		wrc = file_write_atomic(pycode_path, (const uint8_t *)code, cl, &err);
		free(code);
		if (wrc < 0) {
			fprintf(stderr, "traind-train: %s\n", err.msg);
			goto out;
		}
	}
	rc = 0;
out:
	trainer_free(t);
	dataset_free(ds);
	free(blob);
	return rc;
}
