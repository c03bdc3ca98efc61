/*
 * safetensors.c - writer and strict parser for the safetensors layout.
 * See include/traind/safetensors.h for the format and the ownership rules.
 *
 * Parser design. The input is untrusted (a checkpoint on disk may be
 * truncated, corrupted or hostile), so st_parse checks, in this order:
 *   1. the buffer holds the 8-byte length N, N <= ST_MAX_HEADER and
 *      N <= len - 8;
 *   2. the header bytes: no NUL byte, first byte '{', and a bounded number
 *      of JSON containers and separators (MAX_JSON_TOKENS), because jansson
 *      allocates one heap object per value: without this a 16 MB header of
 *      "[0,0,0,..." would cost several hundred MB before we could say no;
 *   3. the JSON itself, with jansson (JSON_REJECT_DUPLICATES; jansson rejects
 *      invalid UTF-8, "\u0000" in strings, integers beyond int64 and nesting
 *      deeper than JSON_PARSER_MAX_DEPTH). Trailing ASCII spaces (the writer's
 *      padding) are stripped before parsing and the text must then end with
 *      the object's '}', so any other trailing byte, even a newline, fails;
 *   4. each entry: "__metadata__" must be an object of string values; any
 *      other key is a tensor whose value has exactly the keys dtype, shape
 *      and data_offsets with the right types and ranges, and whose element
 *      count times the dtype size (overflow-checked) equals end - begin;
 *   5. the tensors' byte ranges, sorted by (begin, end), tile the data
 *      section [0, len - 8 - N) exactly. Zero-size tensors (begin == end)
 *      may sit at any boundary between tensors, but not inside one.
 * On success st_file.header/header_len are the N stored header bytes,
 * padding included, and tensors[] is in header order (jansson keeps the
 * insertion order of object keys).
 * Every failure is -EINVAL (or -ENOMEM) with a one-line message that names
 * the tensor or field. Strings from the input are shown in messages with
 * control bytes and invalid UTF-8 replaced by '?' and long ones cut, so a
 * message stays one line of valid UTF-8 and bounded length.
 *
 * Writer design. st_writer_add and st_writer_meta validate their arguments
 * against the same limits the parser enforces, so that whatever the writer
 * accepts, st_parse accepts back: -EINVAL for a bad name, dtype, shape or
 * value, or a limit exceeded (st_writer_finish too, for a header over
 * ST_MAX_HEADER); -EEXIST for a name or key added twice; -ENOMEM. A failed
 * call leaves the writer as it was. Entries are kept as jansson objects
 * (insertion order is dump order) plus a list of data pointers; the data
 * offsets are assigned at add time as a running sum. st_writer_finish emits
 * "__metadata__" first (as the reference implementation does), then the
 * tensors in the order added, pads the header with spaces so that the data
 * section starts at a multiple of 8 bytes, and copies the data.
 */
#include "traind/safetensors.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors data is little-endian; traind supports little-endian hosts only"
#endif

/* Limits beyond those in the header. */
#define MAX_META 1024                    /* __metadata__ entries */
#define MAX_META_BYTES (8u << 20)        /* all __metadata__ values together */
#define MAX_DIM ((uint64_t)1 << 40)      /* one dimension, exclusive */
/* '{', '[' and ',' outside strings in a header. A tensor entry has at most
 * 6 + ST_MAX_DIMS: the ',' before it, its '{', 2 ','s between its keys, the
 * shape's '[' and up to ST_MAX_DIMS - 1 ','s, data_offsets' '[' and ','.
 * A metadata entry has one ','. Doubled for slack. */
#define MAX_JSON_TOKENS (2 * ((6 + ST_MAX_DIMS) * ST_MAX_TENSORS + MAX_META + 8))
/* How many bytes of an untrusted string an error message shows at most. */
#define SHOW_NAME (ST_MAX_NAME - 1)
#define SHOW_SHORT 40

static const struct {
	const char *name;
	size_t size;
} dtypes[] = {
	[ST_F32] = { "F32", 4 },
	[ST_F64] = { "F64", 8 },
	[ST_I32] = { "I32", 4 },
	[ST_I64] = { "I64", 8 },
	[ST_U8] = { "U8", 1 },
	[ST_U32] = { "U32", 4 },
	[ST_U64] = { "U64", 8 },
};

#define NDTYPES (sizeof(dtypes) / sizeof(dtypes[0]))

static bool dtype_valid(enum st_dtype dt)
{
	return (unsigned)dt < NDTYPES;
}

size_t st_dtype_size(enum st_dtype dt)
{
	return dtype_valid(dt) ? dtypes[dt].size : 0;
}

const char *st_dtype_name(enum st_dtype dt)
{
	return dtype_valid(dt) ? dtypes[dt].name : "?";
}

static uint64_t load_le64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static void store_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/*
 * Length of the UTF-8 character at s[0..n) (n > 0): 1 to 4, or 0 if it is not
 * valid UTF-8 as jansson understands it (no overlong forms, no UTF-16
 * surrogates, nothing above U+10FFFF).
 */
static size_t utf8_char_len(const uint8_t *s, size_t n)
{
	uint8_t c = s[0];
	uint32_t cp;
	size_t len;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		len = 2;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		cp = c & 0x07;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (size_t k = 1; k < len; k++) {
		if ((s[k] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[k] & 0x3f);
	}
	if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
	    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
		return 0;
	return len;
}

/* Is s[0..n) valid UTF-8? The writer checks names, keys and values with this
 * so that a jansson failure afterwards can only mean out of memory. */
static bool utf8_valid(const uint8_t *s, size_t n)
{
	for (size_t i = 0, len; i < n; i += len) {
		len = utf8_char_len(s + i, n - i);
		if (len == 0)
			return false;
	}
	return true;
}

/*
 * A printable copy of the untrusted string `s` for an error message: control
 * bytes and bytes that are not valid UTF-8 become '?' (messages end up in
 * JSON replies, which must be UTF-8), and if the copy would exceed `max`
 * bytes it is cut at a character boundary and "..." appended. `dst` must
 * hold max + 4 bytes. Returns dst.
 */
static const char *show(char *dst, const char *s, size_t max)
{
	const uint8_t *p = (const uint8_t *)s;
	size_t n = strlen(s);
	size_t i = 0, o = 0;

	while (i < n) {
		size_t len = utf8_char_len(p + i, n - i);
		size_t out = len ? len : 1;

		if (o + out > max) {
			memcpy(dst + o, "...", 3);
			o += 3;
			break;
		}
		if (len == 0 || (len == 1 && (p[i] < 0x20 || p[i] == 0x7f)))
			dst[o] = '?';
		else
			memcpy(dst + o, p + i, len);
		o += out;
		i += out;
	}
	dst[o] = '\0';
	return dst;
}

/* "an object", "a string", ... for messages about a JSON value of the wrong type. */
static const char *json_kind(const json_t *v)
{
	if (!v)
		return "missing";
	switch (json_typeof(v)) {
	case JSON_OBJECT: return "an object";
	case JSON_ARRAY: return "an array";
	case JSON_STRING: return "a string";
	case JSON_INTEGER: return "an integer";
	case JSON_REAL: return "a floating-point number";
	case JSON_TRUE: return "true";
	case JSON_FALSE: return "false";
	case JSON_NULL: return "null";
	}
	return "an unknown JSON value";
}

/* "[256,784]" into dst (at least 16 bytes; cut short if it does not fit). */
static void format_shape(char *dst, size_t cap, const struct st_tensor *t)
{
	size_t n = 0;

	n += (size_t)snprintf(dst + n, cap - n, "[");
	for (int i = 0; i < t->ndim && n < cap; i++)
		n += (size_t)snprintf(dst + n, cap - n, "%s%" PRIu64, i ? "," : "", t->shape[i]);
	if (n < cap)
		snprintf(dst + n, cap - n, "]");
}

/* ---------------------------------------------------------------------- */
/* Parser                                                                  */
/* ---------------------------------------------------------------------- */

/* A tensor's byte range in the data section, for the tiling check. */
struct range {
	uint64_t begin;
	uint64_t end;
	size_t idx;         /* index into st_file.tensors */
};

/*
 * Count '{', '[' and ',' outside JSON strings: every JSON value after the
 * first follows one of them, so this bounds how many values jansson would
 * allocate. Malformed input may miscount; jansson rejects it anyway.
 */
static size_t count_json_tokens(const uint8_t *p, size_t n)
{
	size_t count = 0;
	bool in_string = false;

	for (size_t i = 0; i < n; i++) {
		uint8_t c = p[i];

		if (in_string) {
			if (c == '\\')
				i++;
			else if (c == '"')
				in_string = false;
		} else if (c == '"') {
			in_string = true;
		} else if (c == '{' || c == '[' || c == ',') {
			count++;
		}
	}
	return count;
}

/*
 * Check the raw header bytes before handing them to jansson, and find the
 * length of the JSON text without its trailing space padding.
 */
static int check_header_bytes(const uint8_t *h, size_t n, size_t *json_len, struct tr_err *err)
{
	const uint8_t *nul = memchr(h, '\0', n);
	size_t tokens;

	if (nul)
		return tr_err_set(err, -EINVAL, "header contains a NUL byte at header offset %zu",
				  (size_t)(nul - h));
	if (n == 0 || h[0] != '{')
		return tr_err_set(err, -EINVAL, "header does not start with '{' (header length %zu)", n);
	tokens = count_json_tokens(h, n);
	if (tokens > MAX_JSON_TOKENS)
		return tr_err_set(err, -EINVAL,
				  "header has %zu JSON values, far more than %d tensors and %d metadata entries need",
				  tokens, ST_MAX_TENSORS, MAX_META);
	while (n > 0 && h[n - 1] == ' ')
		n--;
	*json_len = n;
	return 0;
}

/* Copy `__metadata__` (an object of string values) into f->meta. */
static int parse_meta(struct st_file *f, json_t *obj, struct tr_err *err)
{
	char shown[SHOW_NAME + 4];
	size_t total = 0;
	const char *key;
	json_t *value;

	if (!json_is_object(obj))
		return tr_err_set(err, -EINVAL, "__metadata__ is %s, not an object", json_kind(obj));
	if (json_object_size(obj) > MAX_META)
		return tr_err_set(err, -EINVAL, "__metadata__ has %zu entries; at most %d are allowed",
				  json_object_size(obj), MAX_META);
	if (json_object_size(obj) == 0)
		return 0;
	f->meta = calloc(json_object_size(obj), sizeof(*f->meta));
	if (!f->meta)
		return tr_err_set(err, -ENOMEM, "out of memory for %zu metadata entries", json_object_size(obj));

	json_object_foreach(obj, key, value) {
		struct st_meta *m = &f->meta[f->nmeta];
		size_t keylen = strlen(key);
		size_t vlen;

		if (keylen == 0 || keylen >= ST_MAX_NAME)
			return tr_err_set(err, -EINVAL, "__metadata__ key '%s' is %zu bytes; 1 to %d are allowed",
					  show(shown, key, SHOW_SHORT), keylen, ST_MAX_NAME - 1);
		if (!json_is_string(value))
			return tr_err_set(err, -EINVAL, "__metadata__ '%s' is %s, not a string",
					  show(shown, key, SHOW_NAME), json_kind(value));
		vlen = json_string_length(value);
		total += vlen;
		if (total > MAX_META_BYTES)
			return tr_err_set(err, -EINVAL, "__metadata__ values exceed %u bytes in total (at '%s')",
					  MAX_META_BYTES, show(shown, key, SHOW_NAME));
		m->key = malloc(keylen + 1);
		m->value = malloc(vlen + 1);
		if (!m->key || !m->value) {
			free(m->key);
			free(m->value);
			m->key = m->value = NULL;
			return tr_err_set(err, -ENOMEM, "out of memory for __metadata__ '%s'",
					  show(shown, key, SHOW_NAME));
		}
		memcpy(m->key, key, keylen + 1);
		memcpy(m->value, json_string_value(value), vlen + 1);
		f->nmeta++;
	}
	return 0;
}

/* The `field` of a tensor entry as a non-negative integer. */
static int get_uint(uint64_t *out, const json_t *v, const char *name, const char *field, size_t i,
		    struct tr_err *err)
{
	*out = 0;
	if (!json_is_integer(v))
		return tr_err_set(err, -EINVAL, "tensor '%s': %s[%zu] is %s, not an integer",
				  name, field, i, json_kind(v));
	if (json_integer_value(v) < 0)
		return tr_err_set(err, -EINVAL, "tensor '%s': %s[%zu] is negative (%" JSON_INTEGER_FORMAT ")",
				  name, field, i, json_integer_value(v));
	*out = (uint64_t)json_integer_value(v);
	return 0;
}

/* Fill t->shape, t->ndim and t->nbytes from the "shape" array. */
static int parse_shape(struct st_tensor *t, const json_t *shape, const char *name, struct tr_err *err)
{
	uint64_t count = 1;
	bool zero = false;
	bool overflow = false;
	size_t ndim;
	int rc;

	if (!json_is_array(shape))
		return tr_err_set(err, -EINVAL, "tensor '%s': shape is %s, not an array", name, json_kind(shape));
	ndim = json_array_size(shape);
	if (ndim > ST_MAX_DIMS)
		return tr_err_set(err, -EINVAL, "tensor '%s': shape has %zu dimensions; at most %d are supported",
				  name, ndim, ST_MAX_DIMS);
	for (size_t i = 0; i < ndim; i++) {
		uint64_t d;

		rc = get_uint(&d, json_array_get(shape, i), name, "shape", i, err);
		if (rc)
			return rc;
		if (d >= MAX_DIM)
			return tr_err_set(err, -EINVAL, "tensor '%s': shape[%zu] = %" PRIu64 " is 2^40 or more",
					  name, i, d);
		t->shape[i] = d;
		if (d == 0)
			zero = true;
		else if (count > UINT64_MAX / d)
			overflow = true;
		else
			count *= d;
	}
	t->ndim = (int)ndim;
	/* A zero dimension makes the count 0, however large the others are. */
	if (zero)
		count = 0;
	else if (overflow || count > UINT64_MAX / dtypes[t->dtype].size)
		return tr_err_set(err, -EINVAL, "tensor '%s': shape has too many elements (size overflows 64 bits)",
				  name);
	t->nbytes = count * dtypes[t->dtype].size;
	return 0;
}

/* Check one tensor entry and fill *t and *r from it. */
static int parse_tensor(struct st_tensor *t, struct range *r, const char *key, const json_t *entry,
			uint64_t datalen, struct tr_err *err)
{
	char name[SHOW_NAME + 4];
	char shown[SHOW_SHORT + 4];
	char shape_str[160];
	size_t keylen = strlen(key);
	const json_t *dtype, *shape, *offsets;
	const char *field;
	const json_t *v;
	uint64_t begin, end;
	size_t dt;
	int rc;

	if (keylen == 0)
		return tr_err_set(err, -EINVAL, "tensor with an empty name");
	if (keylen >= ST_MAX_NAME)
		return tr_err_set(err, -EINVAL, "tensor name '%s' is %zu bytes; at most %d are allowed",
				  show(shown, key, SHOW_SHORT), keylen, ST_MAX_NAME - 1);
	memcpy(t->name, key, keylen + 1);
	show(name, key, SHOW_NAME);

	if (!json_is_object(entry))
		return tr_err_set(err, -EINVAL, "tensor '%s': entry is %s, not an object", name, json_kind(entry));
	json_object_foreach((json_t *)entry, field, v) {
		if (strcmp(field, "dtype") && strcmp(field, "shape") && strcmp(field, "data_offsets"))
			return tr_err_set(err, -EINVAL, "tensor '%s': unexpected key '%s'",
					  name, show(shown, field, SHOW_SHORT));
	}
	dtype = json_object_get(entry, "dtype");
	shape = json_object_get(entry, "shape");
	offsets = json_object_get(entry, "data_offsets");
	if (!dtype || !shape || !offsets)
		return tr_err_set(err, -EINVAL, "tensor '%s': missing \"%s\"", name,
				  !dtype ? "dtype" : !shape ? "shape" : "data_offsets");

	/* dtype */
	if (!json_is_string(dtype))
		return tr_err_set(err, -EINVAL, "tensor '%s': dtype is %s, not a string", name, json_kind(dtype));
	for (dt = 0; dt < NDTYPES; dt++) {
		if (strcmp(json_string_value(dtype), dtypes[dt].name) == 0)
			break;
	}
	if (dt == NDTYPES)
		return tr_err_set(err, -EINVAL, "tensor '%s': unknown dtype '%s'",
				  name, show(shown, json_string_value(dtype), SHOW_SHORT));
	t->dtype = (enum st_dtype)dt;

	rc = parse_shape(t, shape, name, err);
	if (rc)
		return rc;

	/* data_offsets */
	if (!json_is_array(offsets))
		return tr_err_set(err, -EINVAL, "tensor '%s': data_offsets is %s, not an array",
				  name, json_kind(offsets));
	if (json_array_size(offsets) != 2)
		return tr_err_set(err, -EINVAL, "tensor '%s': data_offsets has %zu entries, not 2",
				  name, json_array_size(offsets));
	rc = get_uint(&begin, json_array_get(offsets, 0), name, "data_offsets", 0, err);
	if (rc)
		return rc;
	rc = get_uint(&end, json_array_get(offsets, 1), name, "data_offsets", 1, err);
	if (rc)
		return rc;
	if (begin > end)
		return tr_err_set(err, -EINVAL, "tensor '%s': data_offsets [%" PRIu64 ",%" PRIu64 "] end before they begin",
				  name, begin, end);
	if (end > datalen)
		return tr_err_set(err, -EINVAL,
				  "tensor '%s': data_offsets [%" PRIu64 ",%" PRIu64 "] run past the %" PRIu64 "-byte data section",
				  name, begin, end, datalen);
	if (end - begin != t->nbytes) {
		format_shape(shape_str, sizeof(shape_str), t);
		return tr_err_set(err, -EINVAL,
				  "tensor '%s': shape %s needs %" PRIu64 " bytes but data_offsets span %" PRIu64,
				  name, shape_str, t->nbytes, end - begin);
	}
	r->begin = begin;
	r->end = end;
	return 0;
}

static int compare_ranges(const void *pa, const void *pb)
{
	const struct range *a = pa, *b = pb;

	if (a->begin != b->begin)
		return a->begin < b->begin ? -1 : 1;
	if (a->end != b->end)
		return a->end < b->end ? -1 : 1;
	return a->idx < b->idx ? -1 : a->idx > b->idx;
}

/* Sort the ranges and require them to tile [0, datalen) exactly. */
static int check_tiling(const struct st_file *f, struct range *ranges, uint64_t datalen, struct tr_err *err)
{
	char a[SHOW_NAME + 4], b[SHOW_NAME + 4];
	const struct range *prev = NULL;
	uint64_t pos = 0;

	if (f->ntensors > 0)
		qsort(ranges, f->ntensors, sizeof(*ranges), compare_ranges);
	for (size_t i = 0; i < f->ntensors; i++) {
		const struct range *r = &ranges[i];
		const char *name = show(b, f->tensors[r->idx].name, SHOW_NAME);

		/* pos == prev->end here: every range accepted so far began at pos. */
		if (r->begin < pos)
			return tr_err_set(err, -EINVAL,
					  "tensors '%s' [%" PRIu64 ",%" PRIu64 ") and '%s' [%" PRIu64 ",%" PRIu64 ") overlap",
					  show(a, f->tensors[prev->idx].name, SHOW_NAME), prev->begin, prev->end,
					  name, r->begin, r->end);
		if (r->begin > pos && !prev)
			return tr_err_set(err, -EINVAL,
					  "data section begins with %" PRIu64 " bytes no tensor uses (first tensor '%s' begins at %" PRIu64 ")",
					  r->begin, name, r->begin);
		if (r->begin > pos)
			return tr_err_set(err, -EINVAL,
					  "gap of %" PRIu64 " bytes between tensor '%s' (ends at %" PRIu64 ") and tensor '%s' (begins at %" PRIu64 ")",
					  r->begin - pos, show(a, f->tensors[prev->idx].name, SHOW_NAME), pos,
					  name, r->begin);
		pos = r->end;
		prev = r;
	}
	if (pos != datalen && !prev)
		return tr_err_set(err, -EINVAL, "data section has %" PRIu64 " bytes but the header lists no tensors",
				  datalen);
	if (pos != datalen)
		return tr_err_set(err, -EINVAL,
				  "%" PRIu64 " trailing bytes after the last tensor '%s' "
				  "(tensors end at %" PRIu64 ", data section is %" PRIu64 " bytes)",
				  datalen - pos, show(a, f->tensors[prev->idx].name, SHOW_NAME), pos, datalen);
	return 0;
}

int st_parse(struct st_file **out, const uint8_t *buf, size_t len, struct tr_err *err)
{
	struct st_file *f = NULL;
	struct range *ranges = NULL;
	json_t *root = NULL;
	json_t *meta;
	json_t *value;
	json_error_t jerr;
	char jtext[JSON_ERROR_TEXT_LENGTH + 4];    /* jansson's message quotes input */
	const char *key;
	uint64_t hlen, datalen;
	size_t json_len = 0, ntensors, i;
	int rc;

	*out = NULL;
	if (len < 8)
		return tr_err_set(err, -EINVAL, "%zu bytes is too short for the 8-byte header length", len);
	hlen = load_le64(buf);
	if (hlen > ST_MAX_HEADER)
		return tr_err_set(err, -EINVAL, "header length %" PRIu64 " exceeds the limit of %u bytes",
				  hlen, ST_MAX_HEADER);
	if (hlen > len - 8)
		return tr_err_set(err, -EINVAL, "header length %" PRIu64 " runs past the end of the %zu-byte buffer",
				  hlen, len);
	datalen = len - 8 - hlen;

	rc = check_header_bytes(buf + 8, (size_t)hlen, &json_len, err);
	if (rc)
		return rc;
	root = json_loadb((const char *)buf + 8, json_len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		/* jansson 2.14 leaves the text empty when most allocations fail
		 * (its error code is then unset), reports a failed string copy
		 * as a syntax error, and only sometimes says "out of memory". */
		if (jerr.text[0] == '\0' || json_error_code(&jerr) == json_error_out_of_memory)
			return tr_err_set(err, -ENOMEM, "out of memory parsing the %zu-byte header", json_len);
		return tr_err_set(err, -EINVAL, "header is not valid JSON: %s (header byte %d)",
				  show(jtext, jerr.text, JSON_ERROR_TEXT_LENGTH), jerr.position);
	}
	/* The header starts with '{', so jansson returned an object; but it
	 * allows any whitespace after it, and only the padding spaces are ours. */
	if (!json_is_object(root) || buf[8 + json_len - 1] != '}') {
		rc = tr_err_set(err, -EINVAL, "header has bytes other than spaces after its JSON object");
		goto out;
	}

	meta = json_object_get(root, "__metadata__");
	ntensors = json_object_size(root) - (meta ? 1 : 0);
	if (ntensors > ST_MAX_TENSORS) {
		rc = tr_err_set(err, -EINVAL, "header lists %zu tensors; at most %d are allowed",
				ntensors, ST_MAX_TENSORS);
		goto out;
	}

	f = calloc(1, sizeof(*f));
	if (!f) {
		rc = tr_err_set(err, -ENOMEM, "out of memory");
		goto out;
	}
	/* At least one element each, so that neither is NULL for an empty file. */
	f->tensors = calloc(ntensors ? ntensors : 1, sizeof(*f->tensors));
	ranges = calloc(ntensors ? ntensors : 1, sizeof(*ranges));
	if (!f->tensors || !ranges) {
		rc = tr_err_set(err, -ENOMEM, "out of memory for %zu tensors", ntensors);
		goto out;
	}

	/* Entries in header order (jansson keeps insertion order). */
	i = 0;
	json_object_foreach(root, key, value) {
		if (strcmp(key, "__metadata__") == 0) {
			rc = parse_meta(f, meta, err);
		} else {
			rc = parse_tensor(&f->tensors[i], &ranges[i], key, value, datalen, err);
			ranges[i].idx = i;
			i++;
		}
		if (rc)
			goto out;
	}
	f->ntensors = ntensors;

	rc = check_tiling(f, ranges, datalen, err);
	if (rc)
		goto out;
	for (i = 0; i < ntensors; i++)
		f->tensors[ranges[i].idx].data = buf + 8 + hlen + ranges[i].begin;
	f->header = buf + 8;
	f->header_len = (size_t)hlen;

	*out = f;
	f = NULL;
out:
	free(ranges);
	st_file_free(f);
	json_decref(root);
	return rc;
}

void st_file_free(struct st_file *f)
{
	if (!f)
		return;
	for (size_t i = 0; i < f->nmeta; i++) {
		free(f->meta[i].key);
		free(f->meta[i].value);
	}
	free(f->meta);
	free(f->tensors);
	free(f);
}

const struct st_tensor *st_find(const struct st_file *f, const char *name)
{
	for (size_t i = 0; i < f->ntensors; i++) {
		if (strcmp(f->tensors[i].name, name) == 0)
			return &f->tensors[i];
	}
	return NULL;
}

const char *st_meta_get(const struct st_file *f, const char *key)
{
	for (size_t i = 0; i < f->nmeta; i++) {
		if (strcmp(f->meta[i].key, key) == 0)
			return f->meta[i].value;
	}
	return NULL;
}

/* ---------------------------------------------------------------------- */
/* Writer                                                                  */
/* ---------------------------------------------------------------------- */

struct st_writer_data {
	const void *data;       /* caller's bytes, valid until st_writer_finish */
	uint64_t nbytes;
};

struct st_writer {
	json_t *tensors;                /* name -> entry object, in the order added */
	json_t *meta;                   /* key -> string, in the order added */
	struct st_writer_data *data;    /* one per tensor, in the order added */
	size_t ntensors;
	size_t cap;                     /* allocated length of data */
	uint64_t datalen;               /* bytes of data so far = next tensor's offset */
	size_t meta_bytes;              /* total length of metadata values */
};

int st_writer_new(struct st_writer **out)
{
	struct st_writer *w;

	*out = NULL;
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->tensors = json_object();
	w->meta = json_object();
	if (!w->tensors || !w->meta) {
		st_writer_free(w);
		return -ENOMEM;
	}
	*out = w;
	return 0;
}

void st_writer_free(struct st_writer *w)
{
	if (!w)
		return;
	json_decref(w->tensors);
	json_decref(w->meta);
	free(w->data);
	free(w);
}

/* A name or metadata key the parser will accept: 1..ST_MAX_NAME-1 bytes of UTF-8. */
static bool name_valid(const char *s)
{
	size_t n = strlen(s);

	return n > 0 && n < ST_MAX_NAME && utf8_valid((const uint8_t *)s, n);
}

/*
 * {"dtype": ..., "shape": [...], "data_offsets": [begin, end]}, or NULL if out
 * of memory. jansson's *_set_new and *_append_new take the value's reference
 * even when they fail (and fail on a NULL value), so each new value is handed
 * to its parent at once and only the entry needs freeing on failure.
 */
static json_t *tensor_entry(enum st_dtype dt, int ndim, const uint64_t *shape, uint64_t begin, uint64_t end)
{
	json_t *entry = json_object();
	json_t *dims, *offsets;

	if (!entry)
		return NULL;
	if (json_object_set_new(entry, "dtype", json_string(dtypes[dt].name)) ||
	    json_object_set_new(entry, "shape", json_array()) ||
	    json_object_set_new(entry, "data_offsets", json_array()))
		goto fail;
	dims = json_object_get(entry, "shape");
	offsets = json_object_get(entry, "data_offsets");
	for (int i = 0; i < ndim; i++) {
		if (json_array_append_new(dims, json_integer((json_int_t)shape[i])))
			goto fail;
	}
	if (json_array_append_new(offsets, json_integer((json_int_t)begin)) ||
	    json_array_append_new(offsets, json_integer((json_int_t)end)))
		goto fail;
	return entry;

fail:
	json_decref(entry);
	return NULL;
}

int st_writer_add(struct st_writer *w, const char *name, enum st_dtype dt,
		  int ndim, const uint64_t *shape, const void *data)
{
	uint64_t count = 1;
	bool zero = false;
	bool overflow = false;
	uint64_t nbytes;
	json_t *entry;

	if (!name || !name_valid(name) || strcmp(name, "__metadata__") == 0 || !dtype_valid(dt) ||
	    ndim < 0 || ndim > ST_MAX_DIMS || (ndim > 0 && !shape))
		return -EINVAL;
	if (w->ntensors >= ST_MAX_TENSORS)
		return -EINVAL;
	if (json_object_get(w->tensors, name))
		return -EEXIST;
	for (int i = 0; i < ndim; i++) {
		if (shape[i] >= MAX_DIM)
			return -EINVAL;
		if (shape[i] == 0)
			zero = true;
		else if (count > UINT64_MAX / shape[i])
			overflow = true;
		else
			count *= shape[i];
	}
	/* As in parse_shape: a zero dimension makes the count 0. */
	if (zero)
		count = 0;
	else if (overflow || count > UINT64_MAX / dtypes[dt].size)
		return -EINVAL;
	nbytes = count * dtypes[dt].size;
	/* Offsets are JSON integers (int64) and the file must fit in memory. */
	if (nbytes > (uint64_t)INT64_MAX - w->datalen || nbytes > SIZE_MAX - w->datalen)
		return -EINVAL;
	if (nbytes > 0 && !data)
		return -EINVAL;

	if (w->ntensors == w->cap) {
		size_t cap = w->cap ? 2 * w->cap : 16;
		struct st_writer_data *grown = realloc(w->data, cap * sizeof(*grown));

		if (!grown)
			return -ENOMEM;
		w->data = grown;
		w->cap = cap;
	}
	entry = tensor_entry(dt, ndim, shape, w->datalen, w->datalen + nbytes);
	if (!entry)
		return -ENOMEM;
	if (json_object_set_new(w->tensors, name, entry))
		return -ENOMEM;
	w->data[w->ntensors].data = data;
	w->data[w->ntensors].nbytes = nbytes;
	w->ntensors++;
	w->datalen += nbytes;
	return 0;
}

int st_writer_meta(struct st_writer *w, const char *key, const char *value)
{
	size_t vlen;

	if (!key || !value || !name_valid(key))
		return -EINVAL;
	vlen = strlen(value);
	if (!utf8_valid((const uint8_t *)value, vlen))
		return -EINVAL;
	if (json_object_get(w->meta, key))
		return -EEXIST;
	if (json_object_size(w->meta) >= MAX_META || vlen > MAX_META_BYTES - w->meta_bytes)
		return -EINVAL;
	if (json_object_set_new(w->meta, key, json_stringn(value, vlen)))
		return -ENOMEM;
	w->meta_bytes += vlen;
	return 0;
}

int st_writer_finish(struct st_writer *w, uint8_t **out, size_t *out_len)
{
	size_t cap = 0;

	*out = NULL;
	return st_writer_finish_into(w, out, &cap, out_len);
}

int st_writer_finish_into(struct st_writer *w, uint8_t **out, size_t *cap, size_t *out_len)
{
	const size_t flags = JSON_PRESERVE_ORDER | JSON_COMPACT;
	json_t *root;
	uint8_t *buf = NULL;
	uint8_t *p;
	size_t json_len, hlen, total;
	int rc;

	*out_len = 0;
	root = json_object();
	if (!root)
		return -ENOMEM;
	/* Metadata first, then the tensors in the order added. */
	if (json_object_size(w->meta) > 0 && json_object_set(root, "__metadata__", w->meta)) {
		rc = -ENOMEM;
		goto out;
	}
	if (json_object_update(root, w->tensors)) {
		rc = -ENOMEM;
		goto out;
	}

	json_len = json_dumpb(root, NULL, 0, flags);
	if (json_len == 0) {
		rc = -ENOMEM;
		goto out;
	}
	/* Pad with spaces so that 8 + hlen is a multiple of 8. */
	hlen = json_len + (8 - (8 + json_len) % 8) % 8;
	if (hlen > ST_MAX_HEADER) {
		rc = -EINVAL;
		goto out;
	}
	if (w->datalen > SIZE_MAX - 8 - hlen) {
		rc = -EINVAL;
		goto out;
	}
	total = 8 + hlen + (size_t)w->datalen;
	buf = *out && *cap >= total ? *out : malloc(total);
	if (!buf) {
		rc = -ENOMEM;
		goto out;
	}

	store_le64(buf, hlen);
	if (json_dumpb(root, (char *)buf + 8, json_len, flags) != json_len) {
		rc = -ENOMEM;
		goto out;
	}
	memset(buf + 8 + json_len, ' ', hlen - json_len);
	p = buf + 8 + hlen;
	for (size_t i = 0; i < w->ntensors; i++) {
		if (w->data[i].nbytes > 0)
			memcpy(p, w->data[i].data, (size_t)w->data[i].nbytes);
		p += w->data[i].nbytes;
	}

	if (buf != *out) {
		free(*out);
		*out = buf;
		*cap = total;
	}
	*out_len = total;
	buf = NULL;
	rc = 0;
out:
	if (buf != *out)
		free(buf);
	json_decref(root);
	return rc;
}
