/*
 * trainctl.c - the command-line client of traind: main() and its tables.
 *
 * DESIGN. One verb per run. main() parses the command line against a table
 * of verbs and a table of options (cli.h; the global ones may appear
 * anywhere, a verb's own ones after the verb), then runs the verb's handler
 * (verbs.h). A handler checks its flag values, builds the call's parameters,
 * talks to the daemon (rpc.h over varlink.c) and prints the reply
 * (render.h): human text by default, exactly one JSON document (printed by
 * jansson) with --json.
 *
 * Help is the tables': `trainctl help` lists the verbs, `help VERB` and
 * `VERB --help` print a verb's usage, details and flags (print_help), and
 * the shell completion reads the same tables (complete.c).
 *
 * Errors: every failure ends in exactly one line "trainctl: ..." on stderr
 * and an exit code from enum rc (msg.h); nothing is printed on stdout then.
 * Flag values are checked before connecting: configuration keys through the
 * engine's config_set/config_validate (the code the daemon itself uses), so
 * a bad flag never reaches the daemon and its message names the flag. An
 * unknown verb or flag gets "did you mean" when one is near (suggest.h), or
 * the verbs that take the flag; the daemon's errors name the CLI's flags
 * (rpc.c).
 *
 * Files: `start --init-from` reads the model here and sends its bytes (the
 * daemon never opens client paths); `export -o` verifies size and SHA-256 of
 * what the daemon sent, then writes it atomically (temp file in the target's
 * directory, fsync, rename, fsync the directory).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "traind-config.h"
#include "traind/error.h"
#include "cli.h"
#include "msg.h"
#include "suggest.h"
#include "varlink.h"
#include "verbs.h"

#define BIT(o) OPT_BIT(o)
_Static_assert(O_COUNT <= 128, "opt_mask holds 128 options");
#define GLOBAL_OPTS (BIT(O_SOCKET) | BIT(O_JSON) | BIT(O_HELP) | BIT(O_VERSION))

const struct opt_desc opts[O_COUNT] = {
	[O_SOCKET] = { "socket", 0, true, NULL, "PATH",
		       "traind's socket (default $TRAIND_SOCKET, else $XDG_RUNTIME_DIR/traind/traind.sock if it exists, else /run/traind/traind.sock)" },
	[O_JSON] = { "json", 0, false, NULL, NULL, "print exactly one JSON document" },
	[O_HELP] = { "help", 'h', false, NULL, NULL, "this help" },
	[O_VERSION] = { "version", 0, false, NULL, NULL, "trainctl's version" },
	[O_NAME] = { "name", 0, true, NULL, "NAME", "the job's name (default DATASET-OPTIMIZER)" },
	[O_CONFIG] = { "config", 0, true, NULL, "FILE",
		       "settings from a YAML file of configuration keys (as `trainctl config JOB` prints); flags given too win" },
	[O_DATASET] = { "dataset", 0, true, "dataset", "NAME", "a dataset of traind's data directory (mnist)" },
	[O_EPOCHS] = { "epochs", 0, true, "epochs", "N", "epochs to train (5); resume: up to N in all, a done job too" },
	[O_BATCH_SIZE] = { "batch-size", 0, true, "batch_size", "N", "training batch (64)" },
	[O_EVAL_BATCH_SIZE] = { "eval-batch-size", 0, true, "eval_batch_size", "N", "validation and test batch (128)" },
	[O_LR] = { "lr", 0, true, "lr", "LR", "learning rate (0.001)" },
	[O_OPTIMIZER] = { "optimizer", 0, true, "optimizer", "adam|adamw|sgd", "the optimizer (adam)" },
	[O_MOMENTUM] = { "momentum", 0, true, "momentum", "M", "SGD's momentum (0)" },
	[O_WEIGHT_DECAY] = { "weight-decay", 0, true, "weight_decay", "W", "weight decay (0; adamw 0.01)" },
	[O_BETA1] = { "beta1", 0, true, "beta1", "B", "Adam's beta1 (0.9)" },
	[O_BETA2] = { "beta2", 0, true, "beta2", "B", "Adam's beta2 (0.999)" },
	[O_EPS] = { "eps", 0, true, "eps", "E", "Adam's eps (1e-8)" },
	[O_HIDDEN] = { "hidden", 0, true, "hidden", "N[,N...]", "the MLP's hidden layer widths (256)" },
	[O_SEED] = { "seed", 0, true, "seed", "N", "model init and shuffling (42)" },
	[O_SPLIT_SEED] = { "split-seed", 0, true, "split_seed", "N", "the train/validation split (42)" },
	[O_VAL_SIZE] = { "val-size", 0, true, "val_size", "N",
			 "training images held out for validation (10000; a sixth of a training file too small for that)" },
	[O_TRAIN_SIZE] = { "train-size", 0, true, "train_size", "N", "train on the first N of the rest (0: all)" },
	[O_THREADS] = { "threads", 0, true, "threads", "N", "threads computing the job (2); part of the bits" },
	[O_MODEL] = { "model", 0, true, "model", "SPEC|mlp|lenet5",
		      "the layers, e.g. flatten,linear(128),relu,linear(10) (default: the MLP of --hidden)" },
	[O_FTZ] = { "ftz", 0, true, "ftz", "true|false", "flush denormals to zero while training (true)" },
	[O_STRICT_NUMERICS] = { "strict-numerics", 0, true, "strict_numerics", "true|false",
				"refuse to resume under another BLAS kernel (false)" },
	[O_LR_SCHEDULER] = { "lr-scheduler", 0, true, "lr_scheduler", "SPEC", "a learning-rate schedule (below)" },
	[O_MONITOR] = { "monitor", 0, true, "monitor", "val_loss|val_acc|val_macro_acc|val_mae|val_rmse",
			"what the best checkpoint and early stopping go by (val_loss)" },
	[O_EARLY_STOP_PATIENCE] = { "early-stop-patience", 0, true, "early_stop_patience", "N",
				    "stop after N epochs without improvement (0: never)" },
	[O_EARLY_STOP_MIN_DELTA] = { "early-stop-min-delta", 0, true, "early_stop_min_delta", "D",
				     "an improvement beats the best by more than D (0)" },
	[O_CLIP_GRAD_NORM] = { "clip-grad-norm", 0, true, "clip_grad_norm", "X",
			       "clip the total gradient 2-norm to X (0: no clipping)" },
	[O_RNG] = { "rng", 0, true, "rng", "torch|xoshiro", "whose random streams (torch: the lesson's)" },
	[O_SHARDS] = { "shards", 0, true, "shards", "S", "fixed shards of each batch (default: the ranks); part of the bits" },
	[O_RANKS] = { "ranks", 0, true, "ranks", "R", "processes the job runs as, through mpirun (1)" },
	[O_HOSTS] = { "hosts", 0, true, "hosts", "HOST:SLOTS,...", "where the ranks run (localhost)" },
	[O_MAX_RESTARTS] = { "max-restarts", 0, true, "max_restarts", "N", "restarts of a failed multi-rank run (3)" },
	[O_LOSS] = { "loss", 0, true, "loss", "cross_entropy|mse|l1|huber|bce_with_logits",
		     "the loss: cross_entropy (classes), mse/l1/huber (float targets), bce_with_logits (0/1 targets)" },
	[O_LABEL_SMOOTHING] = { "label-smoothing", 0, true, "label_smoothing", "S", "cross_entropy's label smoothing (0)" },
	[O_CLASS_WEIGHTS] = { "class-weights", 0, true, "class_weights", "W,...", "cross_entropy's weight per class" },
	[O_HUBER_DELTA] = { "huber-delta", 0, true, "huber_delta", "D", "huber's delta (1)" },
	[O_POS_WEIGHT] = { "pos-weight", 0, true, "pos_weight", "W,...", "bce_with_logits' weight of positives per output" },
	[O_AUGMENT] = { "augment", 0, true, "augment", "SPEC",
			"training batches only, e.g. 'random_crop(32,padding=4),random_horizontal_flip(0.5)'" },
	[O_KERNELS] = { "kernels", 0, true, "kernels", "openblas|portable",
			"whose kernels (openblas); portable: the same bits on any CPU and thread count" },
	[O_PRECISION] = { "precision", 0, true, "precision", "fp32|bf16",
			  "matrix products on bfloat16 inputs with float32 accumulation (AMX or AVX-512-BF16; fp32)" },
	[O_CONV] = { "conv", 0, true, "conv", "gemm|onednn",
		     "conv2d by im2col + GEMM (gemm), or by oneDNN's convolutions (kernels openblas)" },
	[O_CONTEXT] = { "context", 0, true, "context", "N",
			"a text dataset's tokens per sample: its windows (doc/sequences.md)" },
	[O_SEQ_KERNELS] = { "seq-kernels", 0, true, "seq_kernels", "1|2|3",
			    "the sequence layers' arithmetic: 3 (new jobs) as 2, with bf16 projections and feed-forward in a "
			    "bf16 job; 2 blocked causal attention; 1 per head (doc/sequences.md)" },
	[O_KEEP] = { "keep", 0, true, NULL, "K|all", "epoch checkpoints kept besides the best (all)" },
	[O_INIT_FROM] = { "init-from", 0, true, NULL, "MODEL.safetensors", "start from this model's weights" },
	[O_WEIGHTS_ONLY] = { "weights-only", 0, false, NULL, NULL,
			     "the model alone, with a fresh optimizer (start: with --from)" },
	[O_AFTER_EPOCH] = { "after-epoch", 0, true, NULL, "N", "kill right after epoch N commits" },
	[O_CSV] = { "csv", 0, false, NULL, NULL, "CSV instead of a table" },
	[O_EPOCH] = { "epoch", 0, true, NULL, "N", "epoch N (its checkpoint; wait: until it commits)" },
	[O_STATE] = { "state", 0, true, NULL, "S[,S...]", "states: queued, running, paused, killed, failed, done" },
	[O_TIMEOUT] = { "timeout", 0, true, NULL, "SECONDS", "give up after SECONDS (exit 3)" },
	[O_SPLIT] = { "split", 0, true, NULL, "val|test", "which images (val)" },
	[O_OUTPUT] = { "output", 'o', true, NULL, "FILE", "the file to write" },
	[O_FORCE] = { "force", 0, false, NULL, NULL, "a queued or running job too (killed first)" },
	[O_METRIC] = { "metric", 0, true, NULL, "loss|acc|lr|mae|rmse|ppl", "what to plot (loss)" },
	[O_BEST] = { "best", 0, false, NULL, NULL, "the best epoch's checkpoint by the job's monitor" },
	[O_PER_CLASS] = { "per-class", 0, false, NULL, NULL, "add a line per class" },
	[O_ALLOW_DATA_CHANGE] = { "allow-data-change", 0, false, NULL, NULL,
				  "go on although the dataset's files changed" },
	[O_REPLACE] = { "replace", 0, false, NULL, NULL, "replace a dataset of that name" },
	[O_TOP] = { "top", 0, true, NULL, "K", "classes per image (3)" },
	[O_RESIZE] = { "resize", 0, false, NULL, NULL, "scale images to the model's size" },
	[O_FROM] = { "from", 0, true, NULL, "JOB[@EPOCH]",
		     "begin from another job's checkpoint (its full state, or with --weights-only its model)" },
	[O_SWEEP] = { "sweep", 0, true, NULL, "SWEEP", "every trial of the sweep (its jobs), besides any JOB" },
	[O_PYTORCH] = { "pytorch", 0, true, NULL, "FILE.py",
			"also write the model's PyTorch code: class Model, into which the export loads strict" },
	[O_VOCAB] = { "vocab", 0, true, NULL, "char|byte",
		      "import the files as one text: a token per character (char) or per byte" },
	[O_PROMPT] = { "prompt", 0, true, NULL, "TEXT", "the text the model continues" },
	[O_TOKENS] = { "tokens", 0, true, NULL, "N", "tokens to add (1..10000)" },
	[O_TEMPERATURE] = { "temperature", 0, true, NULL, "T",
			    "divide the scores by T before the softmax (1; 0: the most likely token)" },
	[O_TOP_K] = { "top-k", 0, true, NULL, "K", "draw among the K most likely tokens only (all)" },
};

/* start's flags: every configuration flag and the job's own. */
#define CONFIG_OPTS (((BIT(CONFIG_LAST) << 1) - 1) & ~(BIT(CONFIG_FIRST) - 1))

static const char start_details[] =
	"Queue a new job and print its id. Configuration: flags, or a YAML file of\n"
	"configuration keys (--config; `trainctl config JOB` prints one; flags win\n"
	"over the file). With --from, only the settings given change.\n"
	"\n"
	"--lr-scheduler SPEC: step(step_size=N[,gamma=G]), multistep(milestones=2:4[,gamma=G]),\n"
	"  exponential(gamma=G), cosine(t_max=N[,eta_min=E]),\n"
	"  linear([start_factor=F][,end_factor=F][,total_iters=N]),\n"
	"  onecycle(max_lr=L[,pct_start=P][,div_factor=D][,final_div_factor=F][,anneal=cos|linear]),\n"
	"  plateau([monitor=M][,factor=F][,patience=N][,threshold=T][,cooldown=N][,min_lr=L]),\n"
	"  or A then B (SequentialLR), e.g. 'linear(start_factor=0.1,total_iters=2) then cosine(t_max=8)'\n"
	"--ranks R: R processes through mpirun; --shards S (default R, a multiple of R dividing\n"
	"  the batch): the batch's fixed shards, whose count decides the bits\n"
	"\n"
	"examples:\n"
	"  trainctl start --name first --epochs 3\n"
	"  trainctl start --model lenet5 --dataset fashion-mnist --lr 0.002\n"
	"  trainctl config 1 > run.yaml; trainctl start --config run.yaml --seed 7\n"
	"  trainctl start --from 1 --epochs 10          (job 1's state, trained on to 10)";

const struct verb verbs[] = {
	{ "start", cmd_start, CONFIG_OPTS | BIT(O_NAME) | BIT(O_CONFIG) | BIT(O_KEEP) | BIT(O_INIT_FROM) |
	  BIT(O_FROM) | BIT(O_WEIGHTS_ONLY), JOB_NONE, "", "queue a new job; prints its id", start_details, false },
	{ "status", cmd_status, 0, JOB_OPTIONAL, "[JOB]", "one job in detail, or all of them",
	  "A finished job shows when it started and finished, how long it took and its final\n"
	  "metrics; a running one where it is in its epoch.", false },
	{ "list", cmd_list, BIT(O_STATE), JOB_NONE, "", "all jobs, or those in a state", NULL, false },
	{ "watch", cmd_watch, 0, JOB_REQUIRED, "JOB", "follow a job: a line per epoch, a summary at the end",
	  "A line per finished epoch with its train and validation metrics (on a terminal,\n"
	  "a progress bar while the epoch runs), then a summary once the job stops.", false },
	{ "wait", cmd_wait, BIT(O_EPOCH) | BIT(O_STATE) | BIT(O_TIMEOUT), JOB_REQUIRED, "JOB",
	  "block until an epoch commits or the job is in a state",
	  "Without --epoch or --state: until the job is paused, killed, failed or done.\n"
	  "Exit status 3 when --timeout passes, 4 when the job stopped in a state not asked for.", false },
	{ "history", cmd_history, BIT(O_CSV), JOB_REQUIRED, "JOB", "per-epoch losses and the task's metrics", NULL, false },
	{ "config", cmd_config, 0, JOB_REQUIRED, "JOB", "the job's configuration as YAML (start --config takes it)",
	  "Every configuration key of the job, with its name and retention, as a YAML file\n"
	  "that `trainctl start --config FILE` starts the same job from:\n"
	  "  trainctl config 3 > run.yaml; trainctl start --config run.yaml --lr 0.0005", false },
	{ "pause", cmd_pause, 0, JOB_REQUIRED, "JOB", "checkpoint the exact position, then stop", NULL, false },
	{ "resume", cmd_resume, BIT(O_WEIGHTS_ONLY) | BIT(O_ALLOW_DATA_CHANGE) | BIT(O_EPOCHS) | BIT(O_RANKS),
	  JOB_REQUIRED, "JOB", "continue from the newest checkpoint",
	  "Refused when the dataset's files changed, unless --allow-data-change. --epochs N:\n"
	  "train up to N epochs in all (also a done job); --ranks R: on R ranks (R divides the\n"
	  "job's shards). The bits are those of never stopping.", false },
	{ "kill", cmd_kill, BIT(O_AFTER_EPOCH), JOB_REQUIRED, "JOB", "stop at once (or right after epoch N commits)",
	  NULL, false },
	{ "rm", cmd_rm, BIT(O_FORCE), JOB_MANY, "JOB...", "remove jobs with their checkpoints and history",
	  "A queued or running job only with --force, which kills it first. Exit status 1\n"
	  "if any JOB was refused.", false },
	{ "checkpoints", cmd_checkpoints, 0, JOB_REQUIRED, "JOB", "the job's stored checkpoints", NULL, false },
	{ "eval", cmd_eval, BIT(O_SPLIT) | BIT(O_EPOCH) | BIT(O_BEST) | BIT(O_PER_CLASS) | BIT(O_ALLOW_DATA_CHANGE),
	  JOB_REQUIRED, "JOB", "loss and the task's metrics of a checkpoint on the validation or test split", NULL, false },
	{ "export", cmd_export, BIT(O_EPOCH) | BIT(O_OUTPUT) | BIT(O_BEST) | BIT(O_PYTORCH), JOB_REQUIRED,
	  "JOB [-o FILE.safetensors] [--pytorch FILE.py]",
	  "write the model (PyTorch's names) as safetensors, and/or its PyTorch code",
	  "The file is safetensors, whatever its name (a .pt or .pth name gets a warning):\n"
	  "load it in Python with traind.torch.load(FILE) (no safetensors package needed) or\n"
	  "safetensors.torch.load_file(FILE), then model.load_state_dict(...).\n"
	  "--pytorch FILE.py writes the model's code: exec it, Model(), then\n"
	  "load_state_dict(traind.torch.load(FILE), strict=True). At least one of -o and --pytorch.", false },
	{ "predict", cmd_predict, BIT(O_EPOCH) | BIT(O_BEST) | BIT(O_TOP) | BIT(O_RESIZE), ARGS, "JOB FILE...",
	  "classes and probabilities of images (PGM, PNG, IDX files of many), or the rows of a FILE.csv (a regression's values)", NULL, false },
	{ "generate", cmd_generate, BIT(O_EPOCH) | BIT(O_BEST) | BIT(O_PROMPT) | BIT(O_TOKENS) | BIT(O_TEMPERATURE) |
	  BIT(O_TOP_K) | BIT(O_SEED) | BIT(O_ALLOW_DATA_CHANGE), JOB_REQUIRED,
	  "JOB --prompt TEXT --tokens N", "text from a language model: the prompt continued",
	  "A job on a text dataset whose model gives the next token's scores at every\n"
	  "position (char_lstm, gpt, ...). Each token is drawn from the softmax of the\n"
	  "scores / --temperature among the --top-k most likely, by a generator seeded with\n"
	  "--seed S (1): the same call gives the same text. The model sees the last\n"
	  "`context` tokens. A prompt with characters the vocabulary lacks is refused.\n"
	  "\n"
	  "examples:\n"
	  "  trainctl generate 3 --prompt 'The ' --tokens 200\n"
	  "  trainctl generate 3 --best --prompt 'Q: ' --tokens 80 --temperature 0.7 --top-k 10 --seed 5", false },
	{ "plot", cmd_plot, BIT(O_METRIC) | BIT(O_OUTPUT) | BIT(O_SWEEP), JOB_MANY, "JOB... | --sweep SWEEP",
	  "learning curves by epoch: to an SVG or PNG file, or as text on a terminal", NULL, false },
	{ "datasets", cmd_datasets, 0, JOB_NONE, "", "every dataset: sizes, shape, classes, digest, jobs using it",
	  NULL, false },
	{ "dataset", cmd_dataset, BIT(O_REPLACE) | BIT(O_VOCAB), ARGS, "import NAME PATH... | rm NAME",
	  "add a dataset from files you can read, or remove one no job uses",
	  "import: the files are opened here and passed to traind as open files.\n"
	  "A text (files that all end in .txt, or any files with --vocab char|byte) gets\n"
	  "its vocabulary built by traind: a token per character (its UTF-8 checked) or per\n"
	  "byte; train on it with --context N (doc/sequences.md).", false },
	{ "counters", cmd_counters, 0, JOB_NONE, "",
	  "traind's counters since it started (epochs committed, jobs failed, errors, commit latency)", NULL, false },
	{ "sweep", cmd_sweep, CONFIG_OPTS | BIT(O_NAME) | BIT(O_CONFIG) | BIT(O_KEEP) | BIT(O_TIMEOUT) | BIT(O_FORCE),
	  ARGS, "start|status|list|wait|pause|resume|kill|rm [SWEEP]", "hyperparameter sweeps: trials as jobs (doc/sweeps.md)",
	  "sweep start --searcher grid|random|sha|hyperband|pbt --param KEY=DIST ... [--trials N] [--max-parallel K]\n"
	  "  [--seed S] [--metric val_loss|val_acc|val_macro_acc|val_mae|val_rmse] [--name N]\n"
	  "  [any start flag: the configuration every trial shares]\n"
	  "  DIST: choice(a,b,...), uniform(lo,hi), loguniform(lo,hi), int(lo,hi). Prints the sweep's id.\n"
	  "  sha (successive halving): --max-epochs M [--grace-epochs G (1)] [--reduction-factor R (3)]:\n"
	  "  every trial trains G epochs; once all have, the best 1/R go on (their own jobs, resumed)\n"
	  "  to G*R epochs, and so on up to M; ties by trial number. hyperband: the same options;\n"
	  "  successive halving in brackets from M/R^s epochs (the brackets decide the trials).\n"
	  "  pbt: --population P [--interval E (1)] [--quantile Q (0.25)] [--perturb F (1.2)]\n"
	  "  [--max-epochs M (the trials' --epochs)]: every E epochs, once all members have reported,\n"
	  "  the bottom Q continue a top-Q member's checkpoint (a new job, as start --from) with\n"
	  "  their parameters x or / F (choices redrawn 1 in 4), from the sweep's seed.\n"
	  "  --seed is the sweep's (the random searcher's draws); the trials' model seed comes from\n"
	  "  --config or a parameter (seed=choice(1,2)).\n"
	  "sweep status SWEEP: the trials, their jobs, states, metric, decisions and the best\n"
	  "sweep list; sweep wait SWEEP [--timeout S] (exit 3 on timeout, 4 when killed or paused);\n"
	  "sweep kill SWEEP: no trial starts any more, those queued or running are killed;\n"
	  "sweep pause SWEEP / resume SWEEP: its trials paused (checkpointed) / taken on again;\n"
	  "sweep rm SWEEP [--force]: the sweep and its trials' jobs (--force: kill them first)\n"
	  "\n"
	  "example:\n"
	  "  trainctl sweep start --searcher grid --param lr=choice(0.001,0.01) \\\n"
	  "    --param batch_size=choice(32,64) --epochs 2 --max-parallel 2", false },
	{ "info", cmd_info, 0, JOB_NONE, "",
	  "what traind computes on: the CPU, its features, the BLAS kernel in use, OpenBLAS's own pick, and why",
	  NULL, false },
	{ "help", cmd_help, 0, ARGS, "[VERB]", "this list, or a verb's flags", NULL, false },
	{ "__complete", cmd_complete, 0, ARGS, "-- WORD...", "the shell completion's candidates", NULL, true },
};
const size_t n_verbs = sizeof(verbs) / sizeof(verbs[0]);

const struct verb *verb_find(const char *name)
{
	for (size_t i = 0; i < n_verbs; i++)
		if (strcmp(verbs[i].name, name) == 0)
			return &verbs[i];
	return NULL;
}

static void print_opt(FILE *out, int o)
{
	char head[96];

	if (opts[o].short_name)
		snprintf(head, sizeof(head), "-%c, --%s%s%s", opts[o].short_name, opts[o].name,
			 opts[o].arg ? " " : "", opts[o].arg ? opts[o].arg : "");
	else
		snprintf(head, sizeof(head), "--%s%s%s", opts[o].name, opts[o].arg ? " " : "",
			 opts[o].arg ? opts[o].arg : "");
	if (strlen(head) > 26)
		fprintf(out, "  %s\n  %26s  %s\n", head, "", opts[o].help);
	else
		fprintf(out, "  %-26s  %s\n", head, opts[o].help);
}

void print_help(FILE *out, const struct verb *v)
{
	if (!v) {
		fputs("usage: trainctl [--socket PATH] [--json] VERB [ARGS...]\n"
		      "Control traind, the training daemon.\n\nverbs:\n", out);
		for (size_t i = 0; i < n_verbs; i++)
			if (!verbs[i].hidden)
				fprintf(out, "  %-12s %s\n", verbs[i].name, verbs[i].summary);
		fputs("\n'trainctl help VERB' or 'trainctl VERB --help' shows a verb's flags.\n\noptions:\n", out);
		for (int o = 0; o < O_COUNT; o++)
			if (GLOBAL_OPTS & BIT(o))
				print_opt(out, o);
		fputs("\nexit status: 0 success, 1 error (from traind or otherwise), 2 usage error,\n"
		      "3 wait timed out, 4 wait ended in a state not asked for (rm: 1 if any JOB\n"
		      "was refused)\n", out);
		return;
	}
	fprintf(out, "usage: trainctl %s%s%s%s\n%s\n", v->name, v->args[0] ? " " : "", v->args,
		v->opts ? " [FLAGS]" : "", v->summary);
	if (v->details)
		fprintf(out, "\n%s\n", v->details);
	if (v->opts) {
		fputs("\nflags:\n", out);
		for (int o = 0; o < O_COUNT; o++)
			if (v->opts & BIT(o))
				print_opt(out, o);
	}
	fputs("\nglobal options: --socket PATH, --json, -h/--help (trainctl help)\n", out);
}

int opt_find(const char *name)
{
	for (int o = 0; o < O_COUNT; o++)
		if (strcmp(opts[o].name, name) == 0)
			return o;
	return -1;
}

int opt_of_key(const char *key)
{
	for (int o = CONFIG_FIRST; o <= CONFIG_LAST; o++)
		if (strcmp(opts[o].key, key) == 0)
			return o;
	return -1;
}

/* ---- small parsers ---------------------------------------------------- */

/* Strict decimal: digits only, no sign, no spaces, within [min, max]. */
bool parse_int(const char *s, int64_t min, int64_t max, int64_t *out)
{
	int64_t v = 0;

	if (!*s)
		return false;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return false;
		if (v > (INT64_MAX - (*s - '0')) / 10)
			return false;
		v = v * 10 + (*s - '0');
	}
	if (v < min || v > max)
		return false;
	*out = v;
	return true;
}

int opt_int(struct cli *cli, enum opt o, int64_t min, int64_t max, int64_t *out)
{
	if (!parse_int(cli->val[o], min, max, out))
		return failf(RC_USAGE, "--%s: expected a whole number in [%lld, %lld], got '%.*s'",
			     opts[o].name, (long long)min, (long long)max, tr_utf8_cut(cli->val[o], TR_QUOTE_MAX),
			     cli->val[o]);
	return RC_OK;
}

/* ---- command line ----------------------------------------------------- */

static void default_socket(struct cli *cli)
{
	const char *env = getenv("TRAIND_SOCKET");
	const char *xdg = getenv("XDG_RUNTIME_DIR");

	/* A user's own daemon first; when the user has none, the system's. */
	if (env && *env)
		cli->socket = env;
	else if (xdg && *xdg &&
		 snprintf(cli->socket_buf, sizeof(cli->socket_buf), "%s/traind/traind.sock", xdg) <
			 (int)sizeof(cli->socket_buf) &&
		 (access(cli->socket_buf, F_OK) == 0 || access("/run/traind/traind.sock", F_OK) != 0))
		cli->socket = cli->socket_buf;
	else
		cli->socket = "/run/traind/traind.sock";
}

static int find_long(const char *name, size_t len)
{
	for (int o = 0; o < O_COUNT; o++)
		if (strlen(opts[o].name) == len && strncmp(opts[o].name, name, len) == 0)
			return o;
	return -1;
}

static int find_short(char c)
{
	for (int o = 0; o < O_COUNT; o++)
		if (opts[o].short_name && opts[o].short_name == c)
			return o;
	return -1;
}

/* " (did you mean 'start'?)" for a word that is near one of the verbs, else "". */
static const char *verb_hint(const char *word, char *buf, size_t n)
{
	const char *names[64];
	const char *best;
	size_t k = 0;

	for (size_t i = 0; i < n_verbs && k < 64; i++)
		if (!verbs[i].hidden)
			names[k++] = verbs[i].name;
	best = suggest_closest(word, names, k);
	if (!best)
		return "";
	snprintf(buf, n, " (did you mean '%s'?)", best);
	return buf;
}

/* A positional argument: the verb, then JOB. */
static int positional(struct cli *cli, const char *arg)
{
	int64_t id;

	if (!cli->verb) {
		char hint[64];

		cli->verb = verb_find(arg);
		if (!cli->verb)
			return failf(RC_USAGE, "unknown verb '%.*s'%s; 'trainctl help' lists them",
				     tr_utf8_cut(arg, TR_QUOTE_MAX), arg, verb_hint(arg, hint, sizeof(hint)));
		return RC_OK;
	}
	if (cli->verb->job == ARGS) {
		cli->args[cli->nargs++] = arg;   /* room for every argument: parse_args */
		return RC_OK;
	}
	if (cli->verb->job == JOB_NONE || (cli->has_job && cli->verb->job != JOB_MANY))
		return failf(RC_USAGE, "%s: unexpected argument '%.*s' (usage: trainctl %s %s)", cli->verb->name,
			     tr_utf8_cut(arg, TR_QUOTE_MAX), arg, cli->verb->name, cli->verb->args);
	if (!parse_int(arg, 1, INT64_MAX, &id))
		return failf(RC_USAGE, "%s: JOB must be a positive integer, got '%.*s'", cli->verb->name,
			     tr_utf8_cut(arg, TR_QUOTE_MAX), arg);
	if (cli->verb->job == JOB_MANY)
		cli->jobs[cli->njobs++] = id;   /* room for every argument: parse_args */
	if (!cli->has_job)
		cli->job = id;
	cli->has_job = true;
	return RC_OK;
}

/* The error for option `shown` (o: what it names, -1 if nothing) that the
 * verb does not take: a near option of the verb, or the verbs that take it. */
static int unknown_option(struct cli *cli, const char *shown, int o)
{
	const char *names[O_COUNT];
	const char *best;
	opt_mask mask = GLOBAL_OPTS | (cli->verb ? cli->verb->opts : 0);
	char takers[256] = "";
	size_t k = 0, used = 0, nt = 0;

	if (!cli->verb && o >= 0)
		return failf(RC_USAGE, "option %s must come after its verb", shown);
	for (int i = 0; i < O_COUNT; i++)
		names[k++] = mask & BIT(i) ? opts[i].name : NULL;
	best = shown[0] == '-' && shown[1] == '-' ? suggest_closest(shown + 2, names, k) : NULL;
	/* an option other verbs take: name them unless this verb has one a
	 * single edit away (--epoch: --epochs; --csv is 2 from --conv, and
	 * history takes it) */
	if (best && o >= 0 && suggest_distance(shown + 2, best) > 1)
		best = NULL;
	if (best)
		return failf(RC_USAGE, "%s%sunknown option %s (did you mean --%s?)", cli->verb ? cli->verb->name : "",
			     cli->verb ? ": " : "", shown, best);
	if (o >= 0) {
		for (size_t i = 0; i < n_verbs; i++) {
			if (verbs[i].hidden || !(verbs[i].opts & BIT(o)))
				continue;
			if (used < sizeof(takers))
				used += (size_t)snprintf(takers + used, sizeof(takers) - used, "%s%s", nt ? ", " : "",
							 verbs[i].name);
			nt++;
		}
		return failf(RC_USAGE, "%s: %s is not an option of %s (%s takes it); see trainctl %s --help",
			     cli->verb->name, shown, cli->verb->name, takers, cli->verb->name);
	}
	if (cli->verb)
		return failf(RC_USAGE, "%s: unknown option %s; see trainctl %s --help", cli->verb->name, shown,
			     cli->verb->name);
	return failf(RC_USAGE, "unknown option %s; see trainctl --help", shown);
}

/* Parse argv into cli. Returns RC_OK, or an exit code (-1: exit 0 now, after
 * --help or --version). */
static int parse_args(struct cli *cli, int argc, char **argv)
{
	bool only_positional = false;
	int rc;

	cli->jobs = calloc((size_t)argc, sizeof(*cli->jobs));
	cli->args = calloc((size_t)argc, sizeof(*cli->args));
	if (!cli->jobs || !cli->args)
		return failf(RC_ERROR, "out of memory");
	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i];
		const char *inline_val = NULL;
		char shown[80];
		int o;

		if (only_positional || arg[0] != '-' || arg[1] == '\0' || (arg[1] >= '0' && arg[1] <= '9')) {
			rc = positional(cli, arg);
			if (rc != RC_OK)
				return rc;
			/* the completion's words are its arguments, flags or not */
			if (cli->verb && cli->verb->run == cmd_complete)
				only_positional = true;
			continue;
		}
		if (strcmp(arg, "--") == 0) {
			only_positional = true;
			continue;
		}
		if (arg[1] == '-') {
			const char *eq = strchr(arg + 2, '=');
			size_t len = eq ? (size_t)(eq - arg - 2) : strlen(arg + 2);

			o = find_long(arg + 2, len);
			inline_val = eq ? eq + 1 : NULL;
			snprintf(shown, sizeof(shown), "--%.*s", tr_utf8_cut(arg + 2, len > 64 ? 64 : len), arg + 2);
		} else {
			o = find_short(arg[1]);
			inline_val = arg[2] ? arg + 2 : NULL;
			snprintf(shown, sizeof(shown), "-%c", arg[1]);
		}
		if (o == O_HELP) {
			print_help(stdout, cli->verb && !cli->verb->hidden ? cli->verb : NULL);
			return -1;
		}
		if (o < 0 || (!(GLOBAL_OPTS & BIT(o)) && !(cli->verb && (cli->verb->opts & BIT(o)))))
			return unknown_option(cli, shown, o);
		if (o == O_VERSION) {
			printf("trainctl %s\n", TRAIND_VERSION);
			return -1;
		}
		if (opts[o].value) {
			if (inline_val) {
				cli->val[o] = inline_val;
			} else if (i + 1 < argc) {
				cli->val[o] = argv[++i];
			} else {
				return failf(RC_USAGE, "%s: missing value (%s %s)", shown, shown, opts[o].arg);
			}
		} else if (inline_val) {
			return failf(RC_USAGE, "%s takes no value", shown);
		}
		cli->set[o] = true;
	}
	if (!cli->verb)
		return failf(RC_USAGE, "missing verb; 'trainctl help' lists them");
	if ((cli->verb->job == JOB_REQUIRED || cli->verb->job == JOB_MANY) && !cli->has_job &&
	    !(cli->verb->opts & BIT(O_SWEEP) && cli->set[O_SWEEP]))
		return failf(RC_USAGE, "%s: missing JOB (usage: trainctl %s %s)", cli->verb->name, cli->verb->name,
			     cli->verb->args);
	cli->json = cli->set[O_JSON];
	if (cli->set[O_SOCKET]) {
		if (!*cli->val[O_SOCKET])
			return failf(RC_USAGE, "--socket: empty path");
		cli->socket = cli->val[O_SOCKET];
	} else {
		default_socket(cli);
	}
	return RC_OK;
}

/* help [VERB] */
int cmd_help(struct cli *cli)
{
	const struct verb *v;
	char hint[64];

	if (cli->nargs == 0) {
		print_help(stdout, NULL);
		return RC_OK;
	}
	if (cli->nargs > 1)
		return failf(RC_USAGE, "help: one VERB at most");
	v = verb_find(cli->args[0]);
	if (!v || v->hidden)
		return failf(RC_USAGE, "help: unknown verb '%.*s'%s; 'trainctl help' lists them",
			     tr_utf8_cut(cli->args[0], TR_QUOTE_MAX), cli->args[0],
			     verb_hint(cli->args[0], hint, sizeof(hint)));
	print_help(stdout, v);
	return RC_OK;
}

int main(int argc, char **argv)
{
	struct cli cli;
	int rc;

	memset(&cli, 0, sizeof(cli));
	rc = sweep_take_flags(&argc, argv);
	if (rc != RC_OK)
		return rc;
	rc = parse_args(&cli, argc, argv);
	if (rc != RC_OK) {
		free(cli.jobs);
		free(cli.args);
		if (rc < 0)
			return fflush(stdout) == 0 ? RC_OK : RC_ERROR;
		return rc;
	}
	rc = cli.verb->run(&cli);
	vl_free(cli.conn);
	json_decref(cli.config_file);
	free(cli.jobs);
	free(cli.args);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		int e = errno;

		/* the result did not reach its reader: that is a failure */
		fprintf(stderr, "trainctl: cannot write to stdout: %s\n", strerror(e));
		return rc == RC_OK ? RC_ERROR : rc;
	}
	return rc;
}
