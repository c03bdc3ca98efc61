/*
 * dataset.c - a loaded dataset in memory: freeing it, its size, its class
 * names; and a dataset built in memory (tests, probes). Loading one from a
 * directory is load.c's. See include/traind/dataset.h.
 *
 * Thread: any; a dataset is read-only once loaded and may be shared.
 */
#include "traind/dataset.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ds_split_deinit(struct ds_split *set)
{
	if (!set)
		return;
	free(set->pixels);
	free(set->labels);
	free(set->targets);
	free(set->tokens);
	free(set->token_targets);
	memset(set, 0, sizeof(*set));
}

void dataset_free(struct dataset *ds)
{
	if (!ds)
		return;
	ds_split_deinit(&ds->train);
	ds_split_deinit(&ds->test);
	free(ds->class_names);
	free(ds->target_names);
	free(ds->code_points);
	free(ds);
}

size_t dataset_image_size(const struct dataset *ds)
{
	return (size_t)ds->channels * ds->height * ds->width;
}

static size_t set_bytes(const struct dataset *ds, const struct ds_split *set)
{
	size_t elem = ds->dtype == DS_F32 ? sizeof(float) : 1;

	if (ds->tokens)
		return (set->tokens ? (ds->text ? set->ntokens : (size_t)set->count * ds->seq_len) : 0) *
			       sizeof(uint32_t) +
		       (set->token_targets ? (size_t)set->count * ds->seq_len * sizeof(uint32_t) : 0) +
		       (set->labels ? set->count : 0);
	return (size_t)set->count * set->channels * set->rows * set->cols * elem +
	       (set->labels ? set->count : 0) +
	       (set->targets ? (size_t)set->count * ds->target_width * sizeof(float) : 0);
}

uint32_t dataset_outputs(const struct dataset *ds)
{
	return ds->target == DS_TARGET_VALUES ? ds->target_width : ds->classes;
}

const char *dataset_target_text(const struct dataset *ds)
{
	if (ds->target == DS_TARGET_TOKENS)
		return "next tokens";
	if (ds->target == DS_TARGET_CLASS)
		return "classes";
	return ds->targets_binary ? "0/1 targets" : "float targets";
}

size_t dataset_bytes(const struct dataset *ds)
{
	if (!ds)
		return 0;
	return set_bytes(ds, &ds->train) + set_bytes(ds, &ds->test);
}

bool dataset_plain_u8(const struct dataset *ds)
{
	return ds->dtype == DS_U8 && (ds->channels <= 1 || ds->layout == DS_NCHW) && !ds->normalize;
}

const char *dataset_class_name(const struct dataset *ds, uint32_t c, char buf[16])
{
	if (ds && ds->class_names && c < ds->classes)
		return ds->class_names[c];
	snprintf(buf, 16, "%u", c);
	return buf;
}

void dataset_init_memory(struct dataset *ds)
{
	uint32_t top = 0;

	snprintf(ds->format, sizeof(ds->format), "memory");
	ds->dtype = DS_U8;
	ds->layout = DS_NCHW;
	for (int s = 0; s < 2; s++) {
		struct ds_split *set = s ? &ds->test : &ds->train;

		if (!set->channels)
			set->channels = 1;
		for (uint32_t i = 0; i < set->count; i++)
			top = set->labels[i] > top ? set->labels[i] : top;
	}
	ds->channels = ds->train.channels;
	ds->height = ds->train.rows;
	ds->width = ds->train.cols;
	if (!ds->classes)
		ds->classes = top + 1;
}
