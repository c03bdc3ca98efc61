/*
 * safetensors.h - writing and strictly parsing the safetensors layout.
 *
 * Layout: 8-byte little-endian header length N, N bytes of a JSON object, then
 * the raw little-endian tensor data. The JSON maps each tensor name to
 * {"dtype": ..., "shape": [...], "data_offsets": [begin, end]} (offsets relative
 * to the start of the data section) plus an optional "__metadata__" object of
 * string -> string. The writer pads the header with spaces so the data section
 * starts 8-byte aligned, as the reference implementation does.
 *
 * The parser never trusts its input: it bounds-checks N against the buffer and
 * a cap, parses the JSON strictly (jansson; duplicate keys rejected, invalid
 * UTF-8 rejected), requires every entry to have exactly those three keys with
 * the right types, a known dtype, a shape whose element count times the dtype
 * size equals end - begin without overflow, and requires the tensors' byte
 * ranges, sorted, to tile the data section exactly: no gap, no overlap, no
 * trailing bytes. Errors name the tensor and the problem.
 *
 * Ownership: a parsed struct st_file points into the caller's buffer (which
 * must outlive it) and owns only its own arrays; free with st_file_free.
 * A struct st_writer owns its growing buffer until st_writer_finish hands it
 * over. Thread: any; objects are not shared.
 */
#ifndef TRAIND_SAFETENSORS_H
#define TRAIND_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "traind/error.h"

#define ST_MAX_HEADER (16u << 20)  /* header bytes we accept at most */
#define ST_MAX_DIMS 8
#define ST_MAX_TENSORS 1024
#define ST_MAX_NAME 128

enum st_dtype {
	ST_F32,
	ST_F64,
	ST_I32,
	ST_I64,
	ST_U8,
	ST_U32,
	ST_U64,
};

struct st_tensor {
	char name[ST_MAX_NAME];     /* NUL-terminated */
	enum st_dtype dtype;
	int ndim;                   /* 0..ST_MAX_DIMS */
	uint64_t shape[ST_MAX_DIMS];
	uint64_t nbytes;            /* element count * dtype size */
	const uint8_t *data;        /* into the parsed buffer; may be unaligned */
};

struct st_meta {
	char *key;                  /* owned, NUL-terminated */
	char *value;                /* owned, NUL-terminated */
};

struct st_file {
	struct st_tensor *tensors;  /* owned array, in header order */
	size_t ntensors;
	struct st_meta *meta;       /* owned array of __metadata__ entries */
	size_t nmeta;
	const uint8_t *header;      /* the JSON header bytes, inside the buffer */
	size_t header_len;
};

/* Size in bytes of one element of `dt`. */
size_t st_dtype_size(enum st_dtype dt);
/* "F32", "I64", ... */
const char *st_dtype_name(enum st_dtype dt);

/* Parse `len` bytes at `buf`. On success *out is a new st_file (caller frees).
 * On failure returns -EINVAL (malformed) and explains in err. */
int st_parse(struct st_file **out, const uint8_t *buf, size_t len, struct tr_err *err);
void st_file_free(struct st_file *f);

/* Lookups on a parsed file; NULL when absent. */
const struct st_tensor *st_find(const struct st_file *f, const char *name);
const char *st_meta_get(const struct st_file *f, const char *key);

/* Writer: add tensors and metadata, then finish into one buffer. The data
 * pointers given to st_writer_add must stay valid until st_writer_finish. */
struct st_writer;
int st_writer_new(struct st_writer **out);
/* Copies `name`; records a pointer to `data` (nbytes = elements * dtype size,
 * written little-endian: this machine is little-endian and the build checks). */
int st_writer_add(struct st_writer *w, const char *name, enum st_dtype dt,
		  int ndim, const uint64_t *shape, const void *data);
/* Copies key and value. */
int st_writer_meta(struct st_writer *w, const char *key, const char *value);
/* Serialize into a new malloc'ed buffer *out of *out_len bytes (caller frees).
 * Tensors are laid out in the order added; metadata keys in the order added. */
int st_writer_finish(struct st_writer *w, uint8_t **out, size_t *out_len);
/* The same into the caller's buffer *buf of *cap bytes (may be NULL / 0)
 * when the file fits, else into a new malloc'ed one that replaces it (the
 * old one freed, *cap updated). On error *buf and *cap are still valid and
 * the caller's. */
int st_writer_finish_into(struct st_writer *w, uint8_t **buf, size_t *cap, size_t *out_len);
void st_writer_free(struct st_writer *w);

#endif
