/*
 * verbs-data.c - trainctl's verbs that send files: datasets, dataset
 * import, dataset rm, predict (see verbs.h).
 *
 * import opens each PATH here, as the user running trainctl, and passes the
 * open files to traind with the call (SCM_RIGHTS): traind never opens a
 * path a client names, and a user of the system service can add a dataset
 * to a data directory only the service may write. Only the files' base
 * names travel, as the names of the dataset's files.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "traind/error.h"
#include "msg.h"
#include "render.h"
#include "reply.h"
#include "rpc.h"
#include "verbs.h"

int cmd_datasets(struct cli *cli)
{
	json_t *reply = NULL, *list;
	int rc;

	rc = rpc(cli, "io.traind.Datasets", NULL, &reply);
	if (rc != RC_OK)
		return rc;
	list = json_object_get(reply, "datasets");
	if (!json_is_array(list)) {
		json_decref(reply);
		return malformed("Datasets", "datasets");
	}
	rc = cli->json ? render_json(stdout, list) : render_datasets(stdout, list);
	json_decref(reply);
	return rc;
}

/* Open paths[0, n) for reading; their base names into `files` (an array
 * of {"name", "size"}). RC_OK, or the error line printed; fds[0, *opened)
 * are the caller's to close either way. */
static int open_files(const char *verb, const char *const *paths, size_t n, int *fds, size_t *opened,
		      json_t *files)
{
	*opened = 0;
	if (n > VL_MAX_FDS)
		return failf(RC_USAGE, "%s: %zu files, at most %d", verb, n, VL_MAX_FDS);
	for (size_t i = 0; i < n; i++) {
		const char *path = paths[i], *base = strrchr(path, '/');
		struct stat st;
		int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);

		if (fd < 0)
			return failf(RC_ERROR, "%s: %s: %s", verb, path, strerror(errno));
		fds[(*opened)++] = fd;
		if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
			return failf(RC_ERROR, "%s: %s: not a regular file", verb, path);
		base = base ? base + 1 : path;
		json_array_append_new(files, json_pack("{s:s,s:I}", "name", base, "size", (json_int_t)st.st_size));
	}
	return RC_OK;
}

int cmd_predict(struct cli *cli)
{
	int fds[VL_MAX_FDS];
	json_t *params, *files, *reply = NULL, *list;
	int64_t id = 0, epoch = 0, top = 3;
	size_t opened = 0;
	int rc;

	if (cli->nargs < 2)
		return failf(RC_USAGE, "predict: usage: predict JOB FILE... [--epoch N|--best] [--top K] [--resize]");
	if (!parse_int(cli->args[0], 1, INT64_MAX, &id))
		return failf(RC_USAGE, "predict: JOB must be a positive integer, got '%.*s'",
			     tr_utf8_cut(cli->args[0], TR_QUOTE_MAX), cli->args[0]);
	if (cli->set[O_EPOCH] && (rc = opt_int(cli, O_EPOCH, 1, 100000, &epoch)) != RC_OK)
		return rc;
	if (cli->set[O_TOP] && (rc = opt_int(cli, O_TOP, 1, 10, &top)) != RC_OK)
		return rc;
	if (cli->set[O_BEST] && cli->set[O_EPOCH])
		return failf(RC_USAGE, "predict: give --epoch or --best, not both");
	files = json_array();
	params = json_pack("{s:I,s:o,s:I}", "id", (json_int_t)id, "files", files, "top", (json_int_t)top);
	if (!params)
		return failf(RC_ERROR, "out of memory");
	if (cli->set[O_EPOCH])
		json_object_set_new(params, "epoch", json_integer((json_int_t)epoch));
	if (cli->set[O_RESIZE])
		json_object_set_new(params, "resize", json_true());
	if (cli->set[O_BEST])
		json_object_set_new(params, "best", json_true());
	rc = open_files("predict", cli->args + 1, cli->nargs - 1, fds, &opened, files);
	if (rc == RC_OK)
		rc = rpc_fds(cli, "io.traind.Predict", json_incref(params), fds, opened, &reply);
	json_decref(params);
	for (size_t i = 0; i < opened; i++)
		close(fds[i]);
	if (rc != RC_OK)
		return rc;
	list = json_object_get(reply, "predictions");
	if (!json_is_array(list)) {
		json_decref(reply);
		return malformed("Predict", "predictions");
	}
	rc = cli->json ? render_json(stdout, list) : render_predictions(stdout, list);
	json_decref(reply);
	return rc;
}

static int dataset_import(struct cli *cli)
{
	const char *name = cli->args[1];
	size_t nfiles = cli->nargs - 2;
	int fds[VL_MAX_FDS];
	json_t *params, *files, *reply = NULL;
	size_t opened = 0;
	int rc = RC_OK;

	files = json_array();
	params = json_pack("{s:s,s:o}", "name", name, "files", files);
	if (!params)
		return failf(RC_ERROR, "out of memory");
	if (cli->set[O_REPLACE])
		json_object_set_new(params, "replace", json_true());
	if (cli->set[O_VOCAB]) {
		if (strcmp(cli->val[O_VOCAB], "char") != 0 && strcmp(cli->val[O_VOCAB], "byte") != 0) {
			json_decref(params);
			return failf(RC_USAGE, "--vocab: expected char or byte, got '%.*s'",
				     tr_utf8_cut(cli->val[O_VOCAB], TR_QUOTE_MAX), cli->val[O_VOCAB]);
		}
		json_object_set_new(params, "vocab", json_string(cli->val[O_VOCAB]));
	}
	rc = open_files("dataset import", cli->args + 2, nfiles, fds, &opened, files);
	if (rc == RC_OK)
		rc = rpc_fds(cli, "io.traind.DatasetImport", json_incref(params), fds, opened, &reply);
	json_decref(params);
	for (size_t i = 0; i < opened; i++)
		close(fds[i]);
	if (rc != RC_OK)
		return rc;
	if (cli->json) {
		rc = render_json(stdout, json_object_get(reply, "dataset"));
	} else {
		json_t *one = json_pack("[O]", json_object_get(reply, "dataset"));

		rc = one ? render_datasets(stdout, one) : failf(RC_ERROR, "out of memory");
		json_decref(one);
	}
	json_decref(reply);
	return rc;
}

static int dataset_rm(struct cli *cli)
{
	json_t *reply = NULL;
	int rc;

	rc = rpc(cli, "io.traind.DatasetRemove", json_pack("{s:s}", "name", cli->args[1]), &reply);
	if (rc != RC_OK)
		return rc;
	if (cli->json)
		rc = render_json(stdout, reply);
	else
		printf("dataset %s removed\n", cli->args[1]);
	json_decref(reply);
	return rc;
}

int cmd_dataset(struct cli *cli)
{
	const char *sub = cli->nargs ? cli->args[0] : "";

	if (strcmp(sub, "import") == 0) {
		if (cli->nargs < 3)
			return failf(RC_USAGE, "dataset import: usage: dataset import NAME PATH... [--replace] [--vocab char|byte]");
		return dataset_import(cli);
	}
	if (cli->set[O_REPLACE] || cli->set[O_VOCAB])
		return failf(RC_USAGE, "dataset %s: unknown option --%s", sub, cli->set[O_REPLACE] ? "replace" : "vocab");
	if (strcmp(sub, "rm") == 0) {
		if (cli->nargs != 2)
			return failf(RC_USAGE, "dataset rm: usage: dataset rm NAME");
		return dataset_rm(cli);
	}
	return failf(RC_USAGE, "dataset: expected import or rm, got '%.*s'", tr_utf8_cut(sub, TR_QUOTE_MAX),
		     sub);
}
