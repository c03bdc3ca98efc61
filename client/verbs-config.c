/*
 * verbs-config.c - config JOB: the job's settings as the YAML file that
 * `start --config FILE` reads back (yamlcfg.h): its name, its retention
 * (keep) and every key of its configuration, as traind holds them (Status).
 * Started from that file, a job has the same configuration, and so, on the
 * same data and numeric environment, the same bits.
 */
#include <stdio.h>
#include <stdlib.h>

#include <jansson.h>

#include "msg.h"
#include "render.h"
#include "reply.h"
#include "rpc.h"
#include "verbs.h"
#include "yamlcfg.h"

int cmd_config(struct cli *cli)
{
	json_t *reply = NULL, *job, *cfg, *doc, *v;
	const char *name, *key;
	long long keep = -1, id = cli->job;
	char comment[256];
	int rc;

	rc = rpc_id(cli, "io.traind.Status", &reply);
	if (rc != RC_OK)
		return rc;
	job = json_object_get(reply, "job");
	cfg = json_object_get(job, "config");
	name = pstr(job, "name");
	if (!json_is_object(cfg)) {
		json_decref(reply);
		return malformed("Status", "config");
	}
	pint(job, "keep", &keep);
	pint(job, "id", &id);
	doc = json_object();
	if (doc && name && *name)
		json_object_set_new(doc, "name", json_string(name));
	if (doc)
		json_object_set_new(doc, "keep", keep < 0 ? json_string("all") : json_integer(keep));
	json_object_foreach(cfg, key, v)
		if (doc)
			json_object_set(doc, key, v);
	if (!doc) {
		json_decref(reply);
		return failf(RC_ERROR, "out of memory");
	}
	if (cli->json) {
		rc = render_json(stdout, doc);
	} else {
		snprintf(comment, sizeof(comment),
			 "job %lld: trainctl start --config FILE starts a job like it (flags given too win)", id);
		rc = yamlcfg_write(stdout, comment, doc) < 0 ? failf(RC_ERROR, "cannot write the configuration")
							       : RC_OK;
	}
	json_decref(doc);
	json_decref(reply);
	return rc;
}
