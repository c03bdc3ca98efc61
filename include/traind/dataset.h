/*
 * dataset.h - image classification datasets: IDX, NumPy (.npy, .npz),
 * safetensors and CSV, with an optional dataset.json.
 *
 * A dataset is a directory; the files found decide its format:
 *   idx          train-images-idx3-ubyte, train-labels-idx1-ubyte,
 *                t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (each plain
 *                or name + ".gz")
 *   npy          x_train.npy, y_train.npy, x_test.npy, y_test.npy
 *   npz          one NAME.npz holding those four arrays (read with libzip)
 *   safetensors  train.safetensors, test.safetensors, each with tensors
 *                "images" (U8 or F32, [N,H,W] or [N,C,H,W]) and "labels"
 *                (an integer dtype, [N])
 *   csv          train.csv, test.csv: one image a row, the label first, then
 *                the pixels; an optional header row; or with dataset.json
 *                "targets" the target columns named, the rest features
 *   cifar        CIFAR-10 binary: data_batch_1.bin ... data_batch_N.bin and
 *                test_batch.bin, records of a label byte and 3x32x32 pixel
 *                bytes (channel-major); batches.meta.txt the class names
 *   text         UTF-8 text files named in dataset.json "files", whose
 *                "vocab" is "char" (the characters of "code_points", sorted:
 *                a token per character) or "byte" (a token per byte); the
 *                text's last "test_fraction" (0.1) is the test split
 *                (doc/sequences.md). Samples are windows of the job's
 *                context, targets the next tokens.
 *
 * Token arrays (sequences): npy/npz x_train of integers (N, T), or a
 * safetensors tensor "tokens" I32/I64 [N, T], are T token ids per sample
 * (each < dataset.json "vocab_size" when given); their labels are a class
 * per sequence (integers (N)) or a class per position (integers (N, T)).
 *
 * Targets: integer labels of shape (N) are classes (classification); float
 * labels of shape (N) or (N, K), or 0/1 integers of shape (N, K), are float
 * targets (regression; multi-label when every value is 0 or 1).
 * Files of two formats in one directory are refused (ambiguous).
 *
 * dataset.json (optional, every key optional):
 *   {"classes": ["T-shirt", ...], "layout": "NHWC"|"NCHW",
 *    "height": H, "width": W, "channels": C, "dtype": "uint8"|"float32" (CSV),
 *    "mean": [m per channel], "std": [s per channel],
 *    "targets": ["y", ...] or [column numbers] (float targets: their names;
 *                in a CSV the target columns, the rest being features)}
 * A stated height/width/channels must agree with the data; "layout" decides
 * 4-D arrays ((N,H,W,C) or (N,C,H,W)), which are otherwise guessed only when
 * exactly one of the two candidate channel axes is 1, 3 or 4. mean/std is
 * torchvision's Normalize after ToTensor: uint8 x becomes (x/255 - mean[c]) /
 * std[c], float32 x becomes (x - mean[c]) / std[c], in float32.
 *
 * Pixels stay in their stored type (uint8 or float32) and layout in memory;
 * the trainer converts a batch to float NCHW when it gathers it
 * (k_gather for plain uint8, else k_gather_images). Labels are stored as
 * uint8: at most 256 classes. The
 * number of classes is the count of names in dataset.json, else the largest
 * label (of both splits) + 1.
 *
 * Loading validates everything: sizes (exact file sizes, no trailing bytes),
 * dtypes, byte order and C order (NumPy), counts of images and labels
 * agreeing, labels in range (0..255, and < the names' count), no NaN or
 * infinite float pixels, at most DATASET_MAX_COUNT images per split and
 * DATASET_MAX_SIDE pixels a side, DATASET_MAX_CHANNELS channels. Every error
 * is a negative code (-ENOENT missing file, -EIO truncated/corrupt/unreadable,
 * -EINVAL bad contents, -ENOMEM) with a message naming the file, the tensor
 * or row, and the problem.
 *
 * Ownership: a loaded struct ds_split / struct dataset owns its buffers; free
 * with the matching function (NULL accepted). Once loaded a dataset is
 * read-only and may be shared by any number of threads.
 */
#ifndef TRAIND_DATASET_H
#define TRAIND_DATASET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "traind/error.h"

#define DATASET_MAX_CLASSES  256          /* labels are uint8 */
#define DATASET_MAX_COUNT    10000000u    /* images per split */
#define DATASET_MAX_SIDE     4096u        /* rows and cols */
#define DATASET_MAX_CHANNELS 64u
#define DATASET_MAX_IMAGE    (1u << 24)   /* values per image (C*H*W) */
#define DATASET_NAME_MAX     64           /* a class name, with NUL */
#define DATASET_FORMAT_MAX   16
#define DATASET_MAX_TARGETS  4096         /* float targets per sample */

/* How pixels are stored. */
enum ds_dtype {
	DS_U8,
	DS_F32,
};

/* What a sample's target is. */
enum ds_target {
	DS_TARGET_CLASS,    /* one class per sample: labels (classification) */
	DS_TARGET_VALUES,   /* target_width floats per sample: targets (regression; multi-label
			       when every value is 0 or 1) */
	DS_TARGET_TOKENS,   /* a class per position of token data (each < classes): token arrays'
			       token_targets (count, T); a text's next tokens */
};

/* A text's vocabulary. */
enum ds_vocab {
	DS_VOCAB_NONE,      /* not text */
	DS_VOCAB_CHAR,      /* a token per Unicode character: code_points, sorted */
	DS_VOCAB_BYTE,      /* a token per byte: ids 0..255 */
};

/* Axis order of a stored image (one channel: both are the same). */
enum ds_layout {
	DS_NCHW,
	DS_NHWC,
};

/* One split (train or test): `count` images of channels x rows x cols. */
struct ds_split {
	uint32_t count;     /* number of images (== number of labels) */
	uint32_t channels;  /* C */
	uint32_t rows;      /* H */
	uint32_t cols;      /* W */
	uint8_t *pixels;    /* (count, C*H*W) in the dataset's dtype and layout (bytes of float32
	                       values when it is DS_F32, maybe unaligned: memcpy them), owned */
	uint8_t *labels;    /* DS_TARGET_CLASS: (count), each < the dataset's classes, owned; else NULL */
	float *targets;     /* DS_TARGET_VALUES: (count, target_width) finite floats, owned; else NULL */
	/* Token data: */
	uint32_t *tokens;   /* token arrays: (count, T) ids; text: its stream (ntokens); owned */
	uint64_t ntokens;   /* text: tokens of the split's part of the text (count is 0) */
	uint32_t *token_targets; /* token arrays with a class per position: (count, T); owned */
};

struct dataset {
	struct ds_split train;
	struct ds_split test;
	char format[DATASET_FORMAT_MAX]; /* "idx", "npy", "npz", "safetensors", "csv", "cifar" */
	enum ds_dtype dtype;             /* of every pixel of both splits */
	enum ds_layout layout;           /* as stored */
	uint32_t channels, height, width; /* equal to each split's */
	uint32_t classes;                /* names' count, else largest label + 1 */
	char (*class_names)[DATASET_NAME_MAX]; /* (classes) from dataset.json, or NULL; owned */
	bool normalize;                  /* mean/std given */
	float mean[DATASET_MAX_CHANNELS]; /* (channels) */
	float std[DATASET_MAX_CHANNELS];  /* (channels), each > 0 */
	enum ds_target target;           /* class labels (every format's default) or float targets */
	uint32_t target_width;           /* DS_TARGET_VALUES: floats per sample (1..DATASET_MAX_TARGETS); 0 */
	bool targets_binary;             /* DS_TARGET_VALUES: every value of both splits is 0 or 1 */
	char (*target_names)[DATASET_NAME_MAX]; /* (target_width) the targets' names (CSV columns,
					    dataset.json "targets"), or NULL; owned */
	/* Token data (sequences): channels 1, height T, width 1 */
	bool tokens;                     /* samples are token ids (token arrays, or text) */
	bool text;                       /* a text (format "text"): windows of the job's context */
	uint32_t seq_len;                /* token arrays: T; text: 0 (the job's context decides) */
	uint32_t vocab;                  /* ids are < vocab (and, a class per position, targets) */
	enum ds_vocab vocab_kind;        /* text: char or byte */
	uint32_t *code_points;           /* text, char: (vocab) each id's character, sorted; owned */
	double test_fraction;            /* text: the last part that is the test split */
};

/* What dataset_probe reports: the training split's size and the data's
 * shape and classes, as dataset_load would give them. */
struct dataset_shape {
	char format[DATASET_FORMAT_MAX];
	uint32_t train_count, test_count;
	uint32_t channels, height, width;
	uint32_t classes;                /* 0 for float targets */
	enum ds_target target;
	uint32_t target_width;           /* float targets per sample; 0 for classes */
	bool targets_binary;
	bool tokens, text;               /* as struct dataset's */
	uint32_t seq_len, vocab;
	uint64_t train_tokens, test_tokens;   /* text: the splits' tokens */
};

/* Load one IDX image file and its label file (paths given exactly; a ".gz"
 * suffix or gzip magic selects decompression). Fills `out` (free with
 * ds_split_deinit). Labels are only checked to be < DATASET_MAX_CLASSES.
 * Thread: any. */
int idx_set_load(struct ds_split *out, const char *images_path,
		 const char *labels_path, struct tr_err *err);

/* Release the buffers of `set` and zero it. NULL accepted. */
void ds_split_deinit(struct ds_split *set);

/* Load the dataset in directory `dir` (formats above). On success *out is a
 * new dataset owned by the caller. Thread: any (reads files). */
int dataset_load(struct dataset **out, const char *dir, struct tr_err *err);

/* dataset_load bounded by what the dataset takes in memory once loaded
 * (pixels and labels of both splits; a file read whole counts while it is
 * read), checked before anything large is allocated: from the headers'
 * shapes for IDX (gzip or not), npy and npz, whatever the files' compressed
 * size, and from the file sizes for safetensors, CSV and texts (a token
 * id, 4 bytes, for each byte of text). The limit is
 * max_bytes (named `limit_name` in messages), or this machine's memory
 * when that is less (dataset_memory_limit); max_bytes 0: the memory only.
 * Past it: -EFBIG, err naming both sizes and the limit, and *needed (may be
 * NULL) at least what the load would take. dataset_load is this with 0. */
int dataset_load_limited(struct dataset **out, const char *dir, uint64_t max_bytes, const char *limit_name,
			 uint64_t *needed, struct tr_err *err);

/* The most a dataset may take in memory: the physical memory, or less
 * where RLIMIT_AS, RLIMIT_DATA or the cgroup's memory.max say so; *name
 * (may be NULL) says which ("this machine's memory", ...). Thread: any. */
uint64_t dataset_memory_limit(const char **name);

/* The shape of the dataset in `dir` without keeping its pixels: IDX, npy and
 * npz read only the images' headers and the labels; safetensors and CSV are
 * parsed whole (and freed). Thread: any (reads files). */
int dataset_probe(struct dataset_shape *out, const char *dir, struct tr_err *err);
/* dataset_probe within dataset_load_limited's limit (safetensors and CSV are
 * read whole to probe them). */
int dataset_probe_limited(struct dataset_shape *out, const char *dir, uint64_t max_bytes,
			  const char *limit_name, struct tr_err *err);

/* Free a dataset from dataset_load. NULL accepted. */
void dataset_free(struct dataset *ds);

/* Bytes of pixel and label memory held by `ds` (for memory reports). */
size_t dataset_bytes(const struct dataset *ds);

/* Values per image (C*H*W). */
size_t dataset_image_size(const struct dataset *ds);

/* The outputs a model of the dataset ends in: its classes, or its float
 * targets per sample (token data with a class per position: at each
 * position). */
uint32_t dataset_outputs(const struct dataset *ds);

/* ---- text (doc/sequences.md) ---- */

#define DATASET_MAX_TEXT    ((size_t)1 << 28)   /* bytes of a text's files */
#define DATASET_MAX_CHARS   65536u              /* distinct characters of a char vocabulary */
#define DATASET_MAX_VOCAB   (1u << 24)          /* token ids (held as exact floats) */

/* Windows of `context` tokens in a stream of n tokens, each with its next
 * token as the target of every position: the stream's (n - 1) / context
 * windows, at 0, context, 2 context, ... */
uint64_t dataset_windows(uint64_t n, uint32_t context);

/* Check the UTF-8 of buf (len bytes): -EINVAL naming `what`, the byte
 * offset (base + the offset in buf) and the bytes when it is not valid
 * (overlong forms, surrogates and code points past U+10FFFF are not);
 * with add not NULL, each character's code point is passed to add(arg, cp). */
int dataset_utf8_scan(const uint8_t *buf, size_t len, uint64_t base, const char *what,
		      void (*add)(void *arg, uint32_t cp), void *arg, struct tr_err *err);

/* dataset.json of a text dataset made of files[0..n) (their base names, in
 * this order; read from dir/name): the vocabulary (char: every character
 * the text has, sorted by code point; byte: all 256 bytes) and the test
 * fraction. *json is a new malloc'ed string. Errors name the file and the
 * byte offset of text that is not UTF-8 (char), or -EFBIG past
 * DATASET_MAX_TEXT. Thread: any (reads files). */
int dataset_text_meta(const char *dir, const char *const *files, size_t n, enum ds_vocab kind,
		      double test_fraction, char **json, struct tr_err *err);

/* A text's tokens of UTF-8 s (len bytes): *ids (malloc'ed, *n of them).
 * -EINVAL when s is not UTF-8 (char) or has characters the vocabulary
 * lacks: the message names them ("'é' (U+00E9), '€' (U+20AC)", the first
 * few). */
int dataset_text_encode(const struct dataset *ds, const char *s, size_t len, uint32_t **ids, size_t *n,
			struct tr_err *err);
/* The text of ids[0, n) as a new malloc'ed NUL-terminated string, valid
 * UTF-8 (a byte vocabulary's bytes that are not UTF-8 become U+FFFD). */
char *dataset_text_decode(const struct dataset *ds, const uint32_t *ids, size_t n);

/* Token id `id` of a text's vocabulary as UTF-8 into buf (at least 5
 * bytes): its character, or its byte. Returns the bytes written. */
size_t dataset_token_utf8(const struct dataset *ds, uint32_t id, char *buf);
/* The token id of code point cp (char) or byte cp (byte), or -1 when the
 * vocabulary has no such token. */
int64_t dataset_token_id(const struct dataset *ds, uint32_t cp);

/* "classes", "float targets" or "0/1 targets", for messages and listings. */
const char *dataset_target_text(const struct dataset *ds);

/* True when a gather is the plain uint8 x/255 of one-channel (or NCHW)
 * images without normalisation: the IDX path, k_gather. */
bool dataset_plain_u8(const struct dataset *ds);

/* The name of class c ("3" when the dataset has no names). */
const char *dataset_class_name(const struct dataset *ds, uint32_t c, char buf[16]);

/* Fill the fields of a dataset built in memory (tests): format, one-channel
 * uint8 NCHW, shape from the train split, classes from the labels. */
void dataset_init_memory(struct dataset *ds);

#endif
