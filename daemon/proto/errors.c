/* errors.c - the protocol's errors. See daemon/proto/errors.h. */
#include "daemon/proto/errors.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

#define INT(n) { n, PROTO_INT, false }
#define OPT_INT(n) { n, PROTO_INT, true }
#define STR(n) { n, PROTO_STRING, false }

static const struct proto_error_desc table[PROTO_ERROR_COUNT] = {
	[PROTO_NO_SUCH_JOB] = { "io.traind.NoSuchJob", { INT("id") } },
	[PROTO_NO_SUCH_SWEEP] = { "io.traind.NoSuchSweep", { INT("id") } },
	[PROTO_JOB_REMOVED] = { "io.traind.JobRemoved", { INT("id") } },
	[PROTO_NO_SUCH_CHECKPOINT] = { "io.traind.NoSuchCheckpoint", { INT("id"), OPT_INT("epoch") } },
	[PROTO_INVALID_STATE] = { "io.traind.InvalidState", { INT("id"), STR("state"), STR("message") } },
	[PROTO_UNEXPECTED_STATE] = { "io.traind.UnexpectedState", { INT("id"), STR("state") } },
	[PROTO_TIMEOUT] = { "io.traind.Timeout", { INT("id") } },
	[PROTO_DATASET_ERROR] = { "io.traind.DatasetError", { STR("dataset"), STR("message") } },
	[PROTO_DATASET_CHANGED] = { "io.traind.DatasetChanged", { STR("dataset"), INT("id"), STR("recorded"),
								   STR("current"), STR("message") } },
	[PROTO_NO_SUCH_DATASET] = { "io.traind.NoSuchDataset", { STR("dataset"), STR("message") } },
	[PROTO_DATASET_EXISTS] = { "io.traind.DatasetExists", { STR("dataset"), STR("message") } },
	[PROTO_DATASET_IN_USE] = { "io.traind.DatasetInUse", { STR("dataset"), STR("message") } },
	[PROTO_DATASET_TOO_BIG] = { "io.traind.DatasetTooBig", { STR("dataset"), INT("size"), INT("limit"),
								  STR("message") } },
	[PROTO_IMAGE_ERROR] = { "io.traind.ImageError", { STR("file"), STR("message") } },
	[PROTO_IMAGE_SIZE_MISMATCH] = { "io.traind.ImageSizeMismatch", { STR("file"), STR("size"),
									  STR("expected"), STR("message") } },
	[PROTO_CHECKPOINT_ERROR] = { "io.traind.CheckpointError", { INT("id"), STR("message") } },
	[PROTO_STORAGE_ERROR] = { "io.traind.StorageError", { STR("message") } },
	[PROTO_SHUTTING_DOWN] = { "io.traind.ShuttingDown", { STR("message") } },
	[PROTO_PROTOCOL_ERROR] = { "io.traind.ProtocolError", { STR("message") } },
	[PROTO_TOO_MANY_REQUESTS] = { "io.traind.TooManyRequests", { STR("message") } },
	[PROTO_PERMISSION_DENIED] = { "io.traind.PermissionDenied", { STR("message") } },
	[PROTO_INTERFACE_NOT_FOUND] = { "org.varlink.service.InterfaceNotFound", { STR("interface") } },
	[PROTO_METHOD_NOT_FOUND] = { "org.varlink.service.MethodNotFound", { STR("method") } },
	[PROTO_INVALID_PARAMETER] = { "org.varlink.service.InvalidParameter", { STR("parameter") },
				      STR("message") },
};

const struct proto_error_desc *proto_error_desc(enum proto_error e)
{
	return &table[e];
}

const char *proto_error_name(enum proto_error e)
{
	return table[e].name;
}

int proto_error_find(const char *name)
{
	for (int i = 0; i < PROTO_ERROR_COUNT; i++)
		if (strcmp(table[i].name, name) == 0)
			return i;
	return -1;
}

static const char *type_name(enum proto_type t)
{
	switch (t) {
	case PROTO_INT: return "int";
	case PROTO_FLOAT: return "float";
	case PROTO_STRING: return "string";
	}
	return "?";
}

static bool type_ok(enum proto_type t, const json_t *v)
{
	switch (t) {
	case PROTO_INT: return json_is_integer(v);
	case PROTO_FLOAT: return json_is_number(v);
	case PROTO_STRING: return json_is_string(v);
	}
	return false;
}

static const struct proto_param *find_param(const struct proto_error_desc *d, const char *key)
{
	for (const struct proto_param *p = d->params; p->name; p++)
		if (strcmp(p->name, key) == 0)
			return p;
	if (d->extra.name && strcmp(d->extra.name, key) == 0)
		return &d->extra;
	return NULL;
}

bool proto_error_check(enum proto_error e, const json_t *params, char *why, size_t n)
{
	const struct proto_error_desc *d = &table[e];
	const char *key;
	json_t *v;

	if (params && !json_is_object(params)) {
		snprintf(why, n, "the parameters are not an object");
		return false;
	}
	for (const struct proto_param *p = d->params; p->name; p++) {
		v = params ? json_object_get(params, p->name) : NULL;
		if ((!v || json_is_null(v)) && p->optional)
			continue;
		if (!v) {
			snprintf(why, n, "'%s' is missing", p->name);
			return false;
		}
		if (!type_ok(p->type, v)) {
			snprintf(why, n, "'%s' is not %s %s", p->name, p->type == PROTO_INT ? "an" : "a",
				 type_name(p->type));
			return false;
		}
	}
	if (params) {
		json_object_foreach((json_t *)params, key, v) {
			const struct proto_param *p = find_param(d, key);

			if (!p) {
				snprintf(why, n, "'%s' is not declared", key);
				return false;
			}
			if (p == &d->extra && !type_ok(p->type, v)) {
				snprintf(why, n, "'%s' is not a %s", key, type_name(p->type));
				return false;
			}
		}
	}
	return true;
}

int proto_error_declaration(enum proto_error e, char *out, size_t n)
{
	const struct proto_error_desc *d = &table[e];
	const char *last = strrchr(d->name, '.') + 1;
	size_t o;
	int r;

	r = snprintf(out, n, "error %s (", last);
	o = r < 0 ? 0 : (size_t)r;
	for (const struct proto_param *p = d->params; p->name; p++) {
		r = snprintf(out + (o < n ? o : n), o < n ? n - o : 0, "%s%s: %s%s", p == d->params ? "" : ", ",
			     p->name, p->optional ? "?" : "", type_name(p->type));
		o += r < 0 ? 0 : (size_t)r;
	}
	r = snprintf(out + (o < n ? o : n), o < n ? n - o : 0, ")");
	o += r < 0 ? 0 : (size_t)r;
	return (int)o;
}

/* The string fields of struct proto_detail, by parameter name. */
static const struct {
	const char *name;
	size_t offset;
} detail_strings[] = {
	{ "message", offsetof(struct proto_detail, message) },
	{ "state", offsetof(struct proto_detail, state) },
	{ "parameter", offsetof(struct proto_detail, parameter) },
	{ "dataset", offsetof(struct proto_detail, dataset) },
	{ "recorded", offsetof(struct proto_detail, recorded) },
	{ "current", offsetof(struct proto_detail, current) },
	{ "file", offsetof(struct proto_detail, file) },
	{ "size", offsetof(struct proto_detail, size_text) },
	{ "expected", offsetof(struct proto_detail, expected) },
	{ "interface", offsetof(struct proto_detail, interface) },
	{ "method", offsetof(struct proto_detail, method) },
};

/* The value of parameter p from d, or NULL when d does not have it. */
static json_t *detail_value(const struct proto_detail *d, const struct proto_param *p)
{
	if (p->type == PROTO_INT) {
		if (strcmp(p->name, "id") == 0)
			return d->has_id ? json_integer(d->id) : NULL;
		if (strcmp(p->name, "epoch") == 0)
			return d->has_epoch ? json_integer(d->epoch) : NULL;
		if (strcmp(p->name, "size") == 0)
			return d->has_size ? json_integer(d->size) : NULL;
		if (strcmp(p->name, "limit") == 0)
			return d->has_size ? json_integer(d->limit) : NULL;
		return NULL;
	}
	for (size_t i = 0; i < sizeof(detail_strings) / sizeof(detail_strings[0]); i++) {
		if (strcmp(detail_strings[i].name, p->name) == 0) {
			const char *v = *(const char *const *)((const char *)d + detail_strings[i].offset);

			return v ? json_string(v) : NULL;
		}
	}
	return NULL;
}

json_t *proto_error_params(enum proto_error e, const struct proto_detail *d)
{
	const struct proto_error_desc *desc = &table[e];
	json_t *o = json_object();

	if (!o || !d)
		return o;
	for (const struct proto_param *p = desc->params; p->name; p++) {
		json_t *v = detail_value(d, p);

		if (v)
			json_object_set_new(o, p->name, v);
	}
	if (desc->extra.name) {
		json_t *v = detail_value(d, &desc->extra);

		if (v)
			json_object_set_new(o, desc->extra.name, v);
	}
	return o;
}
