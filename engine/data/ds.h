/*
 * ds.h - the dataset format loaders (ds-idx.c, ds-npy.c, ds-st.c, ds-csv.c,
 * ds-cifar.c)
 * and what they share (ds.c); private to engine/data/.
 *
 * load.c finds the format, reads dataset.json (struct ds_meta) and calls
 * one format module (ds-idx.c, ds-npy.c, ds-st.c, ds-csv.c), which fills
 * ds->train and ds->test, ds->dtype and ds->layout; load.c then checks
 * that the splits agree and derives the classes. A format module turns the
 * arrays it read into a split with ds_split_from_arrays, which does every
 * check common to the array formats (ranks, dtypes, layout, caps, counts,
 * label range, NaN) so that their messages are the same everywhere.
 *
 * Thread: any (plain functions on the caller's data).
 */
#ifndef TRAIND_DS_H
#define TRAIND_DS_H

#include <stdbool.h>
#include <stdint.h>

#include "traind/dataset.h"
#include "traind/error.h"

/* What one load may hold in memory for the dataset: the arrays the splits
 * keep (pixels and labels), charged before they are allocated, from the
 * shapes in the headers, whatever the files' (compressed) size; a file read
 * whole must also fit beside them while it is read. */
struct ds_budget {
	uint64_t max;          /* bytes */
	uint64_t used;         /* charged so far */
	const char *limit;     /* what sets max, for messages ("--max-dataset-bytes") */
	uint64_t needed;       /* after a refusal: used + what was refused */
};

/* dataset.json, parsed and checked on its own (against the data later). */
struct ds_meta {
	bool present;
	uint32_t nnames;                       /* 0: no "classes" */
	char (*names)[DATASET_NAME_MAX];       /* (nnames), owned */
	bool has_layout;
	enum ds_layout layout;
	uint32_t height, width, channels;      /* 0: not given */
	bool has_dtype;
	enum ds_dtype dtype;                   /* "dtype" (CSV pixels) */
	uint32_t nmean, nstd;                  /* 0: not given */
	float mean[DATASET_MAX_CHANNELS], std[DATASET_MAX_CHANNELS];
	uint32_t ntargets;                     /* "targets": 0 not given */
	char (*target_names)[DATASET_NAME_MAX]; /* (ntargets) names (CSV: header columns), owned; or */
	uint32_t *target_cols;                 /* (ntargets) CSV column indices (0-based), owned; one of the two */
	/* Text (ds-text.c) and token arrays: */
	enum ds_vocab vocab_kind;              /* "vocab": char or byte; NONE: not text */
	uint32_t nfiles;                       /* "files": the text's, in order */
	char (*files)[256];                    /* (nfiles), owned */
	uint32_t ncode_points;                 /* "code_points": a char vocabulary's, sorted */
	uint32_t *code_points;                 /* (ncode_points), owned */
	bool has_test_fraction;
	double test_fraction;                  /* "test_fraction" in [0, 1) */
	uint32_t vocab_size;                   /* token arrays: "vocab_size", 0: not given */
	struct ds_budget *budget;              /* the load's (not dataset.json's); NULL: the caps only */
};

/* Charge `bytes` that `what` (a file or tensor) will take in memory to m's
 * budget (none: always fits); `detail` says what they are ("60000 images of
 * 1x28x28 uint8"). keep false: a buffer freed when the split is made (a file
 * read whole), which must fit beside what is charged but is not added to
 * it. Past the budget: -EFBIG naming both sizes and the limit. */
int ds_budget_charge(const struct ds_meta *m, uint64_t bytes, bool keep, const char *what, const char *detail,
		     struct tr_err *err);

/* Element types of the arrays files hold. */
enum ds_num {
	NUM_U8, NUM_I8, NUM_U16, NUM_I16, NUM_U32, NUM_I32, NUM_U64, NUM_I64,
	NUM_F16, NUM_F32, NUM_F64, NUM_BOOL,
};

/* An array read from a file: its type, shape and (maybe) data. */
struct ds_array {
	enum ds_num type;
	int ndim;
	uint64_t shape[8];
	void *data;            /* (prod(shape)) little-endian elements, owned; NULL: header only */
};

size_t ds_num_size(enum ds_num t);
const char *ds_num_name(enum ds_num t);   /* "uint8", "float32", ... */
bool ds_num_is_int(enum ds_num t);

/* Check an images array's rank, dtype, shape and caps, before its data is
 * read (so a header that lies about a huge shape allocates nothing): fills
 * channels/rows/cols/count of `set` and *layout. `what` names the file or
 * tensor in messages. */
int ds_check_images(const struct ds_array *img, const struct ds_meta *m, const char *what,
		    struct ds_split *set, enum ds_layout *layout, struct tr_err *err);

/* Token arrays: int32 or int64 of shape (N, T) (x_train of a sequence dataset). */
bool ds_is_tokens(const struct ds_array *a);
/* Their count and length within the caps, before the data is read. */
int ds_check_tokens(const struct ds_array *a, const char *what, struct tr_err *err);
#define DATASET_MAX_SEQ 65536u   /* tokens per sequence */

/* Check a labels array's rank and dtype, and its count against `count`:
 * integers (N) are classes; floats (N) or (N, K), or integers or bools
 * (N, K), are float targets (the integers and bools 0/1: multi-label). */
int ds_check_labels(const struct ds_array *lab, uint32_t count, const char *what,
		    struct tr_err *err);

/* True when a checked labels array holds classes (integers of shape (N)). */
bool ds_labels_are_classes(const struct ds_array *lab);

/* Convert checked float targets to float32 (*out (count, width), owned):
 * finite values only; integers and bools of shape (N, K) only 0 or 1. */
int ds_labels_to_float(const struct ds_array *lab, uint32_t count, const char *what, float **out,
		       struct tr_err *err);

/* Convert checked labels to uint8 (*out, owned), refusing negative values and
 * values >= limit (DATASET_MAX_CLASSES, or the names' count). */
int ds_labels_to_u8(const struct ds_array *lab, uint32_t count, uint32_t limit, const char *what,
		    uint8_t **out, struct tr_err *err);

/* Refuse NaN or infinite values among n floats. */
int ds_check_finite(const float *px, size_t n, size_t image, const char *what, struct tr_err *err);

/* Both checks and the move of img->data (may be NULL: probe) and the
 * converted labels into `set`; `first`: this is the train split, which sets
 * ds->dtype and ds->layout, else the test split must agree with them. On
 * success img->data belongs to set. */
int ds_split_from_arrays(struct dataset *ds, struct ds_split *set, bool first,
			 struct ds_array *img, const struct ds_array *lab, const struct ds_meta *m,
			 const char *img_what, const char *lab_what, struct tr_err *err);

/* The label limit for loading: the names' count, else DATASET_MAX_CLASSES. */
uint32_t ds_label_limit(const struct ds_meta *m);

/* The format modules. `probe`: headers and labels only where the format
 * allows it (pixels stay NULL). `dir` is the dataset directory; `path` the
 * one file (npz). */
int ds_load_idx(struct dataset *ds, const char *dir, bool probe, const struct ds_meta *m,
		struct tr_err *err);
int ds_load_npy(struct dataset *ds, const char *dir, bool probe, const struct ds_meta *m,
		struct tr_err *err);
int ds_load_npz(struct dataset *ds, const char *path, bool probe, const struct ds_meta *m,
		struct tr_err *err);
int ds_load_safetensors(struct dataset *ds, const char *dir, const struct ds_meta *m,
			struct tr_err *err);
int ds_load_csv(struct dataset *ds, const char *dir, const struct ds_meta *m,
		struct tr_err *err);
int ds_load_cifar(struct dataset *ds, const char *dir, bool probe, const struct ds_meta *m,
		  struct tr_err *err);
/* A text: m's "files" read from dir and cut into tokens (ds-text.c). */
int ds_load_text(struct dataset *ds, const char *dir, const struct ds_meta *m, struct tr_err *err);
/* CIFAR's class names: batches.meta.txt's into m, unless dataset.json has
 * "classes" (which win) or there is no such file. */
int ds_cifar_meta(struct ds_meta *m, const char *dir, struct tr_err *err);

/* Parse a .npy header at buf (len bytes available, at least the whole file
 * for files; at least the header for streams): fills *a (data NULL) and
 * *data_off (where the payload starts). Big-endian, Fortran order, object
 * and structured dtypes are refused with the reason. Exposed for the fuzz
 * harness. */
int ds_npy_header(const uint8_t *buf, size_t len, const char *what, struct ds_array *a,
		  size_t *data_off, struct tr_err *err);

/* Parse dataset.json text (len bytes). */
int ds_meta_parse(struct ds_meta *m, const char *text, size_t len, const char *what,
		  struct tr_err *err);
void ds_meta_deinit(struct ds_meta *m);
/* dir/dataset.json parsed into m, or m all zero when there is none. */
int ds_meta_load(struct ds_meta *m, const char *dir, struct tr_err *err);

/* Parse one CSV split from memory into set (fuzz harness; ds_load_csv reads
 * the file and calls this). */
/* Read dir/name whole (at most cap bytes) into *buf (malloc'ed); `path`
 * gets "dir/name" for messages; a missing file is "PATH: not found". */
int ds_read_file(const char *dir, const char *name, size_t cap, char *path, size_t path_len,
		 uint8_t **buf, size_t *len, struct tr_err *err);

int ds_csv_parse(struct dataset *ds, struct ds_split *set, bool first, const char *text,
		 size_t len, const struct ds_meta *m, const char *what, struct tr_err *err);

/* One safetensors split from memory (fuzz harness; ds_load_safetensors reads
 * the file and calls this). */
int ds_st_parse(struct dataset *ds, struct ds_split *set, bool first, const uint8_t *buf,
		size_t len, const struct ds_meta *m, const char *what, struct tr_err *err);

#endif
