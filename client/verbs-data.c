/*
 * verbs-data.c - trainctl's dataset verbs: datasets, dataset import,
 * dataset rm (see verbs.h).
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

static int dataset_import(struct cli *cli)
{
	const char *name = cli->args[1];
	size_t nfiles = cli->nargs - 2;
	int fds[VL_MAX_FDS];
	json_t *params, *files, *reply = NULL;
	size_t opened = 0;
	int rc = RC_OK;

	if (nfiles > VL_MAX_FDS)
		return failf(RC_USAGE, "dataset import: %zu files, at most %d", nfiles, VL_MAX_FDS);
	files = json_array();
	params = json_pack("{s:s,s:o}", "name", name, "files", files);
	if (!params)
		return failf(RC_ERROR, "out of memory");
	if (cli->set[O_REPLACE])
		json_object_set_new(params, "replace", json_true());
	for (size_t i = 0; i < nfiles; i++) {
		const char *path = cli->args[2 + i], *base = strrchr(path, '/');
		struct stat st;
		int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);

		if (fd < 0) {
			rc = failf(RC_ERROR, "dataset import: %s: %s", path, strerror(errno));
			break;
		}
		fds[opened++] = fd;
		if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
			rc = failf(RC_ERROR, "dataset import: %s: not a regular file", path);
			break;
		}
		base = base ? base + 1 : path;
		json_array_append_new(files, json_pack("{s:s,s:I}", "name", base, "size",
						       (json_int_t)st.st_size));
	}
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
			return failf(RC_USAGE, "dataset import: usage: dataset import NAME PATH... [--replace]");
		return dataset_import(cli);
	}
	if (cli->set[O_REPLACE])
		return failf(RC_USAGE, "dataset %s: unknown option --replace", sub);
	if (strcmp(sub, "rm") == 0) {
		if (cli->nargs != 2)
			return failf(RC_USAGE, "dataset rm: usage: dataset rm NAME");
		return dataset_rm(cli);
	}
	return failf(RC_USAGE, "dataset: expected import or rm, got '%.*s'", tr_utf8_cut(sub, TR_QUOTE_MAX),
		     sub);
}
