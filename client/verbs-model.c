/*
 * verbs-model.c - the verbs that use a job's model: eval, export (the
 * weights, and with --pytorch the module's PyTorch code).
 *
 * An export is safetensors whatever the file's name; a name PyTorch users
 * give pickles (.pt, .pth, .pkl, .ckpt) gets a warning on stderr (and the
 * file is written: scripts that name it so keep working).
 *
 * `export -o` verifies the size and SHA-256 of what the daemon sent, then
 * writes it atomically (temp file in the target's directory, fsync, rename,
 * fsync the directory); nothing is written when either check fails.
 */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "traind/base64.h"
#include "traind/error.h"
#include "traind/fileio.h"
#include "traind/sha256.h"
#include "msg.h"
#include "render.h"
#include "reply.h"
#include "rpc.h"
#include "verbs.h"

/* eval --per-class: one line per class, named when the dataset has names. */
static int print_per_class(const json_t *rows)
{
	size_t i;
	json_t *r;

	if (!json_is_array(rows))
		return malformed("Eval", "per_class");
	printf("%-5s %-24s %8s %8s %8s %8s\n", "class", "name", "count", "correct", "predicted", "acc");
	json_array_foreach(rows, i, r) {
		long long k, n, ok, pred;
		const char *name = pstr(r, "name");
		char *clean = name ? clean_dup(name) : NULL;
		double acc;

		if (!pint(r, "class", &k) || !pint(r, "count", &n) || !pint(r, "correct", &ok) ||
		    !pint(r, "predicted", &pred)) {
			free(clean);
			return malformed("Eval", "per_class");
		}
		if (pnum(r, "acc", &acc))
			printf("%-5lld %-24s %8lld %8lld %8lld %8.4f\n", k, clean ? clean : "-", n, ok, pred, acc);
		else
			printf("%-5lld %-24s %8lld %8lld %8lld %8s\n", k, clean ? clean : "-", n, ok, pred, "-");
		free(clean);
	}
	return RC_OK;
}

int cmd_eval(struct cli *cli)
{
	json_t *params, *reply = NULL;
	const char *split;
	int64_t epoch = 0;
	long long e, count;
	double loss = NAN, acc = NAN, macro = NAN, mae = NAN, rmse = NAN, ppl = NAN;
	bool has_acc, has_macro, has_mae, has_ppl;
	int rc;

	if (cli->set[O_SPLIT] && strcmp(cli->val[O_SPLIT], "val") != 0 &&
	    strcmp(cli->val[O_SPLIT], "test") != 0)
		return failf(RC_USAGE, "--split: expected val or test, got '%.*s'",
			     tr_utf8_cut(cli->val[O_SPLIT], TR_QUOTE_MAX), cli->val[O_SPLIT]);
	if (cli->set[O_EPOCH] && cli->set[O_BEST])
		return failf(RC_USAGE, "--best: give --epoch N or --best, not both");
	if (cli->set[O_EPOCH]) {
		rc = opt_int(cli, O_EPOCH, 1, 100000, &epoch);
		if (rc != RC_OK)
			return rc;
	}
	params = id_params(cli);
	if (!params)
		return failf(RC_ERROR, "out of memory");
	if (cli->set[O_SPLIT])
		json_object_set_new(params, "split", json_string(cli->val[O_SPLIT]));
	if (cli->set[O_EPOCH])
		json_object_set_new(params, "epoch", json_integer((json_int_t)epoch));
	if (cli->set[O_BEST])
		json_object_set_new(params, "best", json_true());
	if (cli->set[O_PER_CLASS])
		json_object_set_new(params, "per_class", json_true());
	if (cli->set[O_ALLOW_DATA_CHANGE])
		json_object_set_new(params, "allow_data_change", json_true());
	rc = rpc(cli, "io.traind.Eval", params, &reply);
	if (rc != RC_OK)
		return rc;
	split = pstr(reply, "split");
	/* acc, macro_acc: null where the job's task has none; mae, rmse: a regression's */
	has_acc = pnum(reply, "acc", &acc);
	has_macro = pnum(reply, "macro_acc", &macro);
	has_mae = pnum(reply, "mae", &mae) && pnum(reply, "rmse", &rmse);
	has_ppl = pnum(reply, "ppl", &ppl);
	if (!pnum(reply, "loss", &loss) && !json_is_null(json_object_get(reply, "loss")))
		rc = malformed("Eval", "loss");
	else if (!has_acc && !json_is_null(json_object_get(reply, "acc")))
		rc = malformed("Eval", "acc");
	else if (!has_macro && !json_is_null(json_object_get(reply, "macro_acc")))
		rc = malformed("Eval", "macro_acc");
	else if (!pint(reply, "count", &count))
		rc = malformed("Eval", "count");
	else if (!pint(reply, "epoch", &e))
		rc = malformed("Eval", "epoch");
	else if (!split)
		rc = malformed("Eval", "split");
	else if (cli->json)
		rc = render_json(stdout, reply);
	else {
		char *s = clean_dup(split);

		printf("job %lld epoch %lld %s: loss %.4f", (long long)cli->job, e, s ? s : "?", loss);
		if (has_acc)
			printf(" acc %.4f", acc);
		if (has_macro)
			printf(" macro_acc %.4f", macro);
		if (has_mae)
			printf(" mae %.4f rmse %.4f", mae, rmse);
		if (has_ppl)
			printf(" ppl %.4f", ppl);
		printf(" (%lld samples)\n", count);
		free(s);
		if (cli->set[O_PER_CLASS])
			rc = print_per_class(json_object_get(reply, "per_class"));
	}
	json_decref(reply);
	return rc;
}

/* Whether `path` has a name PyTorch users give torch.save's pickles. */
static bool pickle_name(const char *path)
{
	static const char *const exts[] = { ".pt", ".pth", ".pkl", ".ckpt" };
	size_t len = strlen(path);

	for (size_t i = 0; i < sizeof(exts) / sizeof(exts[0]); i++) {
		size_t el = strlen(exts[i]);

		if (len > el && strcasecmp(path + len - el, exts[i]) == 0)
			return true;
	}
	return false;
}

int cmd_export(struct cli *cli)
{
	struct tr_err err = { 0 };
	json_t *params, *reply = NULL, *data, *code = NULL;
	const char *sum;
	char hex[SHA256_HEX_LEN + 1];
	uint8_t *bytes = NULL;
	size_t len = 0;
	long long epoch, size;
	int64_t want_epoch = 0;
	int rc;

	if (!cli->set[O_OUTPUT] && !cli->set[O_PYTORCH])
		return failf(RC_USAGE, "export: missing -o FILE (the weights) or --pytorch FILE.py (the code)");
	if (cli->set[O_OUTPUT] && !*cli->val[O_OUTPUT])
		return failf(RC_USAGE, "-o: empty file name");
	if (cli->set[O_PYTORCH] && !*cli->val[O_PYTORCH])
		return failf(RC_USAGE, "--pytorch: empty file name");
	if (cli->set[O_EPOCH] && cli->set[O_BEST])
		return failf(RC_USAGE, "--best: give --epoch N or --best, not both");
	if (cli->set[O_EPOCH]) {
		rc = opt_int(cli, O_EPOCH, 1, 100000, &want_epoch);
		if (rc != RC_OK)
			return rc;
	}
	params = id_params(cli);
	if (!params)
		return failf(RC_ERROR, "out of memory");
	if (cli->set[O_EPOCH])
		json_object_set_new(params, "epoch", json_integer((json_int_t)want_epoch));
	if (cli->set[O_BEST])
		json_object_set_new(params, "best", json_true());
	if (cli->set[O_PYTORCH])
		json_object_set_new(params, "pytorch", json_true());
	rc = rpc(cli, "io.traind.Export", params, &reply);
	if (rc != RC_OK)
		return rc;
	data = json_object_get(reply, "data");
	sum = pstr(reply, "sha256");
	if (!pint(reply, "epoch", &epoch)) {
		rc = malformed("Export", "epoch");
		goto out;
	}
	if (!pint(reply, "size", &size) || size < 0) {
		rc = malformed("Export", "size");
		goto out;
	}
	if (!sum) {
		rc = malformed("Export", "sha256");
		goto out;
	}
	if (!json_is_string(data)) {
		rc = malformed("Export", "data");
		goto out;
	}
	rc = base64_decode(json_string_value(data), json_string_length(data), &bytes, &len);
	if (rc == -ENOMEM) {
		rc = failf(RC_ERROR, "out of memory");
		goto out;
	}
	if (rc < 0) {
		rc = failf(RC_ERROR, "malformed reply from traind: Export's data is not valid base64");
		goto out;
	}
	if ((unsigned long long)size != len) {
		rc = failf(RC_ERROR, "export: received %zu bytes, but traind announced %lld; nothing written",
			   len, size);
		goto out;
	}
	sha256_hex(bytes, len, hex);
	if (strncmp(sum, "sha256:", 7) == 0)
		sum += 7;
	if (strlen(sum) != SHA256_HEX_LEN || strcasecmp(sum, hex) != 0) {
		rc = failf(RC_ERROR, "export: checksum mismatch: received data has sha256 %s, traind announced %.*s; nothing written",
			   hex, tr_utf8_cut(sum, 80), sum);
		goto out;
	}
	if (cli->set[O_PYTORCH]) {
		code = json_object_get(reply, "pytorch");
		if (!json_is_string(code)) {
			rc = malformed("Export", "pytorch");
			goto out;
		}
	}
	/* Written all the same (scripts that name it so keep working), but
	 * said: torch.load cannot read safetensors under any name. */
	if (cli->set[O_OUTPUT] && pickle_name(cli->val[O_OUTPUT])) {
		char *f = clean_dup(cli->val[O_OUTPUT]);

		fflush(stdout);
		fprintf(stderr, "trainctl: warning: %s will hold safetensors, not a PyTorch pickle: torch.load "
				"cannot read it; load it with traind.torch.load() (or safetensors.torch.load_file), "
				"or name it .safetensors\n", f ? f : "?");
		free(f);
	}
	if (cli->set[O_OUTPUT] && file_write_atomic(cli->val[O_OUTPUT], bytes, len, &err) < 0) {
		rc = failf(err.code == -EISDIR ? RC_USAGE : RC_ERROR, "%s%s",
			   err.code == -EISDIR ? "-o: " : "", err.msg);
		goto out;
	}
	if (code && file_write_atomic(cli->val[O_PYTORCH], (const uint8_t *)json_string_value(code),
				      json_string_length(code), &err) < 0) {
		rc = failf(err.code == -EISDIR ? RC_USAGE : RC_ERROR, "%s%s",
			   err.code == -EISDIR ? "--pytorch: " : "", err.msg);
		goto out;
	}
	if (cli->json) {
		json_t *doc = json_pack("{s:I,s:I,s:s}", "epoch", (json_int_t)epoch, "size",
					(json_int_t)len, "sha256", hex);

		/* a file name that is not UTF-8 is left out */
		if (doc && cli->set[O_OUTPUT])
			json_object_set_new(doc, "file", json_string(cli->val[O_OUTPUT]));
		if (doc && code)
			json_object_set_new(doc, "pytorch_file", json_string(cli->val[O_PYTORCH]));
		rc = doc ? render_json(stdout, doc) : failf(RC_ERROR, "out of memory");
		json_decref(doc);
	} else {
		if (cli->set[O_OUTPUT]) {
			char *f = clean_dup(cli->val[O_OUTPUT]);

			printf("wrote %s (%zu bytes, epoch %lld)\n", f ? f : "?", len, epoch);
			free(f);
		}
		if (code) {
			char *f = clean_dup(cli->val[O_PYTORCH]);

			printf("wrote %s (the PyTorch code of the model, %zu bytes, epoch %lld)\n",
			       f ? f : "?", json_string_length(code), epoch);
			free(f);
		}
	}
out:
	free(bytes);
	json_decref(reply);
	return rc;
}

/* generate JOB --prompt TEXT --tokens N [--temperature T] [--top-k K] [--seed S]:
 * the prompt and what the model added, as text (--json: the reply). */
int cmd_generate(struct cli *cli)
{
	json_t *params, *reply = NULL;
	int64_t epoch = 0, tokens = 0, top_k = 0, seed = 1;
	double temp = 1.0;
	const char *text;
	int rc;

	if (!cli->set[O_PROMPT] || !cli->set[O_TOKENS])
		return failf(RC_USAGE, "generate: give --prompt TEXT and --tokens N");
	if (cli->set[O_EPOCH] && cli->set[O_BEST])
		return failf(RC_USAGE, "--best: give --epoch N or --best, not both");
	if ((cli->set[O_EPOCH] && (rc = opt_int(cli, O_EPOCH, 0, 100000, &epoch)) != RC_OK) ||
	    (rc = opt_int(cli, O_TOKENS, 1, 10000, &tokens)) != RC_OK ||
	    (cli->set[O_TOP_K] && (rc = opt_int(cli, O_TOP_K, 0, 1 << 24, &top_k)) != RC_OK) ||
	    (cli->set[O_SEED] && (rc = opt_int(cli, O_SEED, 0, INT64_MAX, &seed)) != RC_OK))
		return rc;
	if (cli->set[O_TEMPERATURE]) {
		char *end;

		temp = strtod(cli->val[O_TEMPERATURE], &end);
		if (end == cli->val[O_TEMPERATURE] || *end || !(temp >= 0.0 && temp <= 100.0))
			return failf(RC_USAGE, "--temperature: expected a number in [0, 100], got '%.*s'",
				     tr_utf8_cut(cli->val[O_TEMPERATURE], TR_QUOTE_MAX), cli->val[O_TEMPERATURE]);
	}
	if (!cli->val[O_PROMPT][0])
		return failf(RC_USAGE, "--prompt: give at least one character to continue");
	params = id_params(cli);
	if (!params)
		return failf(RC_ERROR, "out of memory");
	json_object_set_new(params, "prompt", json_string(cli->val[O_PROMPT]));
	if (!json_object_get(params, "prompt")) {
		json_decref(params);
		return failf(RC_USAGE, "--prompt: not valid UTF-8 text");
	}
	json_object_set_new(params, "tokens", json_integer((json_int_t)tokens));
	if (cli->set[O_EPOCH])
		json_object_set_new(params, "epoch", json_integer((json_int_t)epoch));
	if (cli->set[O_BEST])
		json_object_set_new(params, "best", json_true());
	if (cli->set[O_TEMPERATURE])
		json_object_set_new(params, "temperature", json_real(temp));
	if (cli->set[O_TOP_K])
		json_object_set_new(params, "top_k", json_integer((json_int_t)top_k));
	if (cli->set[O_SEED])
		json_object_set_new(params, "seed", json_integer((json_int_t)seed));
	if (cli->set[O_ALLOW_DATA_CHANGE])
		json_object_set_new(params, "allow_data_change", json_true());
	rc = rpc(cli, "io.traind.Generate", params, &reply);
	if (rc != RC_OK)
		return rc;
	text = pstr(reply, "text");
	if (!text)
		rc = malformed("Generate", "text");
	else if (cli->json)
		rc = render_json(stdout, reply);
	else
		printf("%s\n", text);   /* the model's text, as it is */
	json_decref(reply);
	return rc;
}
