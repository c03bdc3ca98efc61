/*
 * load.c - reading a dataset directory: which format it holds, its
 * dataset.json, and the checks every format shares. dataset_load and
 * dataset_probe of include/traind/dataset.h.
 *
 * Design
 * ------
 * dataset_load lists the directory once and sorts the names it knows into
 * formats; exactly one format may be present. dataset.json, when present, is
 * parsed first (strictly: unknown keys, wrong types, duplicate keys are
 * refused), because the loaders need it: class names bound the labels,
 * "layout" decides 4-D arrays, height/width/channels decide CSV rows. The
 * format's loader (ds-*.c, engine/data/ds.h) fills both splits; finish then
 * checks what must hold whatever the format (the splits agree in shape,
 * dataset.json agrees with the data, mean/std have one value per channel)
 * and derives the classes.
 *
 * Thread: any; no shared state.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "traind/dataset.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/data/ds.h"

enum fmt { F_IDX, F_NPY, F_NPZ, F_ST, F_CSV, F_CIFAR, F_TEXT, F_N };

static const char *const fmt_names[F_N] = { "idx", "npy", "npz", "safetensors", "csv", "cifar",
					    "text" };
/* Where each format keeps the training and the test images (npz: inside the .npz). */
static const char *const split_files[F_N][2] = {
	{ "train-images-idx3-ubyte", "t10k-images-idx3-ubyte" },
	{ "x_train.npy", "x_test.npy" },
	{ "x_train.npy", "x_test.npy" },
	{ "train.safetensors", "test.safetensors" },
	{ "train.csv", "test.csv" },
	{ "data_batch_N.bin", "test_batch.bin" },
	{ "the text's files", "the text's files" },
};
static bool has_suffix(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = strlen(suffix);

	return n > k && strcmp(s + n - k, suffix) == 0;
}

static int classify(const char *name)
{
	static const char *const idx[] = {
		"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
		"t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte",
	};

	for (size_t i = 0; i < 4; i++) {
		size_t n = strlen(idx[i]);

		if (strncmp(name, idx[i], n) == 0 && (!name[n] || strcmp(name + n, ".gz") == 0))
			return F_IDX;
	}
	if (!strcmp(name, "x_train.npy") || !strcmp(name, "y_train.npy") ||
	    !strcmp(name, "x_test.npy") || !strcmp(name, "y_test.npy"))
		return F_NPY;
	if (has_suffix(name, ".npz"))
		return F_NPZ;
	if (!strcmp(name, "train.safetensors") || !strcmp(name, "test.safetensors"))
		return F_ST;
	if (!strcmp(name, "train.csv") || !strcmp(name, "test.csv"))
		return F_CSV;
	if (!strcmp(name, "test_batch.bin") || !strcmp(name, "batches.meta.txt"))
		return F_CIFAR;
	if (strncmp(name, "data_batch_", 11) == 0 && has_suffix(name, ".bin")) {
		const char *d = name + 11;

		while (*d >= '0' && *d <= '9')
			d++;
		if (d > name + 11 && strcmp(d, ".bin") == 0)
			return F_CIFAR;
	}
	return -1;
}

/* Which format `dir` holds; *npz gets the one .npz file's name. A text is
 * what dataset.json says it is (text: its "vocab"); its files may have any
 * names, so another format's files beside it are refused. */
static int detect(const char *dir, bool text, int *fmt, char *npz, size_t npz_len, struct tr_err *err)
{
	char first[F_N][256] = { { 0 } };
	int nnpz = 0, found = -1, rc = 0;
	struct dirent *de;
	DIR *d;

	d = opendir(dir);
	if (!d) {
		rc = -errno;
		if (rc == -ENOENT)
			return tr_err_set(err, rc, "%s: no such dataset directory", dir);
		return tr_err_set(err, rc, "%s: cannot open: %s", dir, strerror(-rc));
	}
	while ((de = readdir(d))) {
		int f = classify(de->d_name);

		if (f < 0)
			continue;
		if (f == F_NPZ && nnpz++ == 0)
			snprintf(npz, npz_len, "%s", de->d_name);
		if (!first[f][0])
			snprintf(first[f], sizeof(first[f]), "%s", de->d_name);
	}
	closedir(d);
	if (text)
		snprintf(first[F_TEXT], sizeof(first[F_TEXT]), "dataset.json's \"files\"");
	for (int f = 0; f < F_N; f++) {
		if (!first[f][0])
			continue;
		if (found >= 0)
			return tr_err_set(err, -EINVAL,
					  "%s: files of two formats (%s: %s, %s: %s); keep one", dir,
					  fmt_names[found], first[found], fmt_names[f], first[f]);
		found = f;
	}
	if (found < 0)
		return tr_err_set(err, -ENOENT,
				  "%s: no dataset files: expected the IDX files (train-images-idx3-ubyte ...), x_train.npy ..., one NAME.npz, train.safetensors and test.safetensors, train.csv and test.csv, or CIFAR-10's data_batch_1.bin ... and test_batch.bin",
				  dir);
	if (found == F_NPZ && nnpz > 1)
		return tr_err_set(err, -EINVAL, "%s: %d .npz files; a dataset is one NAME.npz", dir, nnpz);
	*fmt = found;
	return 0;
}

/* Float targets: whether they are all 0/1, and their names. */
static int finish_targets(struct dataset *ds, struct ds_meta *m, const char *dir, struct tr_err *err)
{
	ds->classes = 0;
	ds->targets_binary = true;
	for (int s = 0; s < 2 && ds->targets_binary; s++) {
		const struct ds_split *set = s ? &ds->test : &ds->train;
		size_t n = (size_t)set->count * ds->target_width;

		for (size_t i = 0; set->targets && i < n; i++)
			if (set->targets[i] != 0.0f && set->targets[i] != 1.0f) {
				ds->targets_binary = false;
				break;
			}
	}
	if (m->ntargets && m->ntargets != ds->target_width)
		return tr_err_set(err, -EINVAL,
				  "%s/dataset.json: names %u \"targets\" but the data has %u per sample", dir,
				  m->ntargets, ds->target_width);
	if (m->target_names && !ds->target_names) {
		ds->target_names = m->target_names;
		m->target_names = NULL;
	}
	return 0;
}

/* Token data: the vocabulary (the text's, or dataset.json's vocab_size, or
 * every id and per-position target below it: the largest + 1) and the
 * classes (per position: the vocabulary; per sequence: the labels'). */
static int finish_tokens(struct dataset *ds, struct ds_meta *m, const char *dir, struct tr_err *err)
{
	uint32_t top = 0, lab = 0;

	(void)dir;
	(void)err;
	for (int s = 0; s < 2 && !ds->text; s++) {
		const struct ds_split *set = s ? &ds->test : &ds->train;
		size_t n = (size_t)set->count * ds->seq_len;

		for (size_t i = 0; set->tokens && i < n; i++)
			top = set->tokens[i] > top ? set->tokens[i] : top;
		for (size_t i = 0; set->token_targets && i < n; i++)
			top = set->token_targets[i] > top ? set->token_targets[i] : top;
		for (uint32_t i = 0; set->labels && i < set->count; i++)
			lab = set->labels[i] > lab ? set->labels[i] : lab;
	}
	if (!ds->text)
		ds->vocab = m->vocab_size ? m->vocab_size : top + 1;
	if (ds->target == DS_TARGET_TOKENS) {
		ds->classes = ds->vocab;
		return 0;
	}
	ds->classes = lab + 1;
	if (m->nnames) {
		ds->classes = m->nnames;
		ds->class_names = m->names;
		m->names = NULL;
		m->nnames = 0;
	}
	return 0;
}

/* Checks that hold whatever the format, and the derived fields. */
static int finish(struct dataset *ds, struct ds_meta *m, const char *dir, int fmt, struct tr_err *err)
{
	const struct ds_split *a = &ds->train, *b = &ds->test;
	uint32_t top = 0;

	if (a->channels != b->channels || a->rows != b->rows || a->cols != b->cols)
		return tr_err_set(err, -EINVAL,
				  "%s: dimensions mismatch: test images are %ux%ux%u (%s) but training images are "
				  "%ux%ux%u (%s), CxHxW",
				  dir, b->channels, b->rows, b->cols, split_files[fmt][1], a->channels, a->rows, a->cols,
				  split_files[fmt][0]);
	ds->channels = a->channels;
	ds->height = a->rows;
	ds->width = a->cols;
	if (ds->tokens)
		return finish_tokens(ds, m, dir, err);
	if ((m->height && m->height != ds->height) || (m->width && m->width != ds->width) ||
	    (m->channels && m->channels != ds->channels))
		return tr_err_set(err, -EINVAL,
				  "%s/dataset.json: says height %u, width %u, channels %u but the images are %ux%ux%u (CxHxW)",
				  dir, m->height ? m->height : ds->height, m->width ? m->width : ds->width,
				  m->channels ? m->channels : ds->channels, ds->channels, ds->height,
				  ds->width);
	if (m->has_dtype && m->dtype != ds->dtype)
		return tr_err_set(err, -EINVAL, "%s/dataset.json: says dtype %s but the images are %s", dir,
				  m->dtype == DS_F32 ? "float32" : "uint8",
				  ds->dtype == DS_F32 ? "float32" : "uint8");
	if (m->nmean && m->nmean != ds->channels)
		return tr_err_set(err, -EINVAL,
				  "%s/dataset.json: \"mean\" and \"std\" have %u values but the images have %u channels",
				  dir, m->nmean, ds->channels);
	if (m->nmean) {
		ds->normalize = true;
		memcpy(ds->mean, m->mean, sizeof(ds->mean));
		memcpy(ds->std, m->std, sizeof(ds->std));
	}
	if (ds->target == DS_TARGET_VALUES)
		return finish_targets(ds, m, dir, err);
	if (m->ntargets)
		return tr_err_set(err, -EINVAL,
				  "%s/dataset.json: names %u \"targets\", but the labels are classes (integers of shape (N)); float targets are floats, or (N, K)",
				  dir, m->ntargets);
	for (int s = 0; s < 2; s++) {
		const struct ds_split *set = s ? b : a;

		for (uint32_t i = 0; i < set->count; i++)
			top = set->labels[i] > top ? set->labels[i] : top;
	}
	ds->classes = top + 1;
	if (m->nnames) {
		ds->classes = m->nnames;
		ds->class_names = m->names;
		m->names = NULL;
		m->nnames = 0;
	}
	return 0;
}

static int load(struct dataset **out, const char *dir, bool probe, struct ds_budget *budget,
		struct tr_err *err)
{
	char npz[256], path[4096 + 256];
	struct ds_meta m;
	struct dataset *ds;
	int fmt = 0, rc;

	*out = NULL;
	rc = ds_meta_load(&m, dir, err);   /* first: it says whether the files are a text */
	if (rc < 0)
		return rc;
	rc = detect(dir, m.vocab_kind != DS_VOCAB_NONE, &fmt, npz, sizeof(npz), err);
	if (rc < 0) {
		ds_meta_deinit(&m);
		return rc;
	}
	m.budget = budget;
	ds = calloc(1, sizeof(*ds));
	if (!ds) {
		rc = tr_err_set(err, -ENOMEM, "%s: out of memory", dir);
		goto out;
	}
	snprintf(ds->format, sizeof(ds->format), "%s", fmt_names[fmt]);
	switch (fmt) {
	case F_IDX:
		rc = ds_load_idx(ds, dir, probe, &m, err);
		break;
	case F_NPY:
		rc = ds_load_npy(ds, dir, probe, &m, err);
		break;
	case F_NPZ:
		snprintf(path, sizeof(path), "%s/%s", dir, npz);
		rc = ds_load_npz(ds, path, probe, &m, err);
		break;
	case F_ST:
		rc = ds_load_safetensors(ds, dir, &m, err);
		break;
	case F_CIFAR:
		rc = ds_cifar_meta(&m, dir, err);
		if (rc == 0)
			rc = ds_load_cifar(ds, dir, probe, &m, err);
		break;
	case F_TEXT:
		rc = ds_load_text(ds, dir, &m, err);
		break;
	default:
		rc = ds_load_csv(ds, dir, &m, err);
		break;
	}
	if (rc == 0)
		rc = finish(ds, &m, dir, fmt, err);
	if (rc < 0) {
		dataset_free(ds);
		goto out;
	}
	*out = ds;
out:
	ds_meta_deinit(&m);
	return rc;
}

uint64_t dataset_memory_limit(const char **name)
{
	long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
	uint64_t lim = pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page : UINT64_MAX;
	const char *why = "this machine's memory";
	char line[4096], path[4096 + 64];
	struct rlimit rl;
	FILE *f;

	if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < lim) {
		lim = rl.rlim_cur;
		why = "the process's address space limit (RLIMIT_AS)";
	}
	if (getrlimit(RLIMIT_DATA, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < lim) {
		lim = rl.rlim_cur;
		why = "the process's data limit (RLIMIT_DATA)";
	}
	/* cgroup v2: "0::/system.slice/traind.service", its memory.max */
	f = fopen("/proc/self/cgroup", "re");
	path[0] = '\0';
	while (f && fgets(line, sizeof(line), f))
		if (strncmp(line, "0::", 3) == 0) {
			line[strcspn(line, "\n")] = '\0';
			snprintf(path, sizeof(path), "/sys/fs/cgroup%s/memory.max", line + 3);
		}
	if (f)
		fclose(f);
	if (path[0] && (f = fopen(path, "re"))) {
		unsigned long long v;

		if (fscanf(f, "%llu", &v) == 1 && v < lim) {
			lim = v;
			why = "the service's memory limit (cgroup memory.max)";
		}
		fclose(f);
	}
	if (name)
		*name = why;
	return lim;
}

/* The budget of a load limited to max_bytes (0: none) and the memory. */
static void budget_init(struct ds_budget *b, uint64_t max_bytes, const char *limit_name)
{
	const char *mem_name;
	uint64_t mem = dataset_memory_limit(&mem_name);

	memset(b, 0, sizeof(*b));
	b->max = max_bytes && max_bytes < mem ? max_bytes : mem;
	b->limit = max_bytes && max_bytes < mem ? (limit_name ? limit_name : "the caller's limit") : mem_name;
}

int dataset_load_limited(struct dataset **out, const char *dir, uint64_t max_bytes, const char *limit_name,
			 uint64_t *needed, struct tr_err *err)
{
	struct ds_budget b;
	int rc;

	budget_init(&b, max_bytes, limit_name);
	rc = load(out, dir, false, &b, err);
	if (needed)
		*needed = rc == -EFBIG ? b.needed : b.used;
	return rc;
}

int dataset_load(struct dataset **out, const char *dir, struct tr_err *err)
{
	return dataset_load_limited(out, dir, 0, NULL, NULL, err);
}

int dataset_probe_limited(struct dataset_shape *out, const char *dir, uint64_t max_bytes,
			  const char *limit_name, struct tr_err *err)
{
	struct dataset *ds;
	struct ds_budget b;
	int rc;

	budget_init(&b, max_bytes, limit_name);
	rc = load(&ds, dir, true, &b, err);
	if (rc < 0)
		return rc;
	memset(out, 0, sizeof(*out));
	snprintf(out->format, sizeof(out->format), "%s", ds->format);
	out->train_count = ds->train.count;
	out->test_count = ds->test.count;
	out->channels = ds->channels;
	out->height = ds->height;
	out->width = ds->width;
	out->classes = ds->classes;
	out->target = ds->target;
	out->target_width = ds->target_width;
	out->targets_binary = ds->targets_binary;
	out->tokens = ds->tokens;
	out->text = ds->text;
	out->seq_len = ds->seq_len;
	out->vocab = ds->vocab;
	out->train_tokens = ds->train.ntokens;
	out->test_tokens = ds->test.ntokens;
	dataset_free(ds);
	return 0;
}

int dataset_probe(struct dataset_shape *out, const char *dir, struct tr_err *err)
{
	return dataset_probe_limited(out, dir, 0, NULL, err);
}
