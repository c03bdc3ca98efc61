/*
 * ds-text.c - text datasets: UTF-8 text files and their vocabulary
 * (dataset.json's "vocab", "files", "code_points", "test_fraction"). See
 * include/traind/dataset.h and doc/sequences.md.
 *
 * Design
 * ------
 * A text dataset is its files, joined in the order dataset.json lists them
 * (byte for byte, nothing between them), cut into tokens: a character each
 * (vocab "char": the id of a character is its place among the sorted code
 * points of the vocabulary, which the import builds from the text itself,
 * so the same text always gives the same ids) or a byte each (vocab
 * "byte": ids 0..255, any bytes). The last test_fraction of the tokens is
 * the test split; the rest is the training split, whose validation part the
 * trainer takes from its end (trainer.c: by position, no window across the
 * cut). A split is kept as one stream of ids; a job's samples are its
 * windows of `context` tokens, each position's target the token after it.
 *
 * UTF-8 is checked strictly (RFC 3629: no overlong forms, no surrogates,
 * nothing past U+10FFFF); an error names the file, the byte offset in it
 * and the bytes there.
 */
#include "engine/data/ds.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "traind/fileio.h"

uint64_t dataset_windows(uint64_t n, uint32_t context)
{
	return n > 1 && context ? (n - 1) / context : 0;
}

/* The length of the UTF-8 sequence at s (len bytes left) and its code
 * point, or 0 when it is not valid there. */
static size_t utf8_one(const uint8_t *s, size_t len, uint32_t *cp)
{
	uint32_t c = s[0];
	size_t n;

	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	if (c >= 0xc2 && c <= 0xdf)
		n = 2;
	else if (c >= 0xe0 && c <= 0xef)
		n = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 4;
	else
		return 0;
	if (len < n)
		return 0;
	c &= n == 2 ? 0x1f : n == 3 ? 0x0f : 0x07;
	for (size_t k = 1; k < n; k++) {
		if ((s[k] & 0xc0) != 0x80)
			return 0;
		c = c << 6 | (s[k] & 0x3f);
	}
	if ((n == 3 && c < 0x800) || (n == 4 && (c < 0x10000 || c > 0x10ffff)) ||
	    (c >= 0xd800 && c <= 0xdfff))
		return 0;
	*cp = c;
	return n;
}

int dataset_utf8_scan(const uint8_t *buf, size_t len, uint64_t base, const char *what,
		      void (*add)(void *arg, uint32_t cp), void *arg, struct tr_err *err)
{
	size_t i = 0;

	while (i < len) {
		uint32_t cp;
		size_t n = utf8_one(buf + i, len - i, &cp);

		if (n == 0) {
			char bytes[16] = "";
			size_t show = len - i < 4 ? len - i : 4;

			for (size_t k = 0; k < show; k++)
				snprintf(bytes + 3 * k, sizeof(bytes) - 3 * k, "%s%02x", k ? " " : "", buf[i + k]);
			return tr_err_set(err, -EINVAL,
					  "%s: not UTF-8 text at byte offset %" PRIu64 " (bytes %s); import it with the byte vocabulary (--vocab byte) to take its bytes as they are",
					  what, base + i, bytes);
		}
		if (add)
			add(arg, cp);
		i += n;
	}
	return 0;
}

/* ---- building the vocabulary (at import) ---------------------------------- */

struct seen {
	uint8_t *bits;       /* (0x110000 / 8) one bit per code point */
};

static void mark(void *arg, uint32_t cp)
{
	struct seen *s = arg;

	s->bits[cp >> 3] |= (uint8_t)(1u << (cp & 7));
}

/* Read dir/name whole into *buf (at most `room` bytes). */
static int read_part(const char *dir, const char *name, size_t room, uint8_t **buf, size_t *len,
		     struct tr_err *err)
{
	char path[4400];
	int rc;

	rc = ds_read_file(dir, name, room, path, sizeof(path), buf, len, err);
	if (rc == -EFBIG || (rc == 0 && *len > room)) {
		free(*buf);
		*buf = NULL;
		return tr_err_set(err, -EFBIG, "%s: the text's files hold more than %zu bytes", name,
				  DATASET_MAX_TEXT);
	}
	if (rc < 0)
		tr_err_set(err, rc, "%s: %s", name, rc == -ENOENT ? "not found" : "cannot be read");
	return rc;
}

int dataset_text_meta(const char *dir, const char *const *files, size_t n, enum ds_vocab kind,
		      double test_fraction, char **json, struct tr_err *err)
{
	struct seen seen = { NULL };
	json_t *root = NULL, *names = NULL, *cps = NULL;
	size_t total = 0;
	uint32_t distinct = 0;
	int rc = 0;

	*json = NULL;
	if (kind != DS_VOCAB_CHAR && kind != DS_VOCAB_BYTE)
		return tr_err_set(err, -EINVAL, "vocab: expected char or byte");
	if (!(test_fraction >= 0.0 && test_fraction < 1.0))
		return tr_err_set(err, -EINVAL, "test_fraction: %g is not in [0, 1)", test_fraction);
	root = json_object();
	names = json_array();
	cps = json_array();
	if (kind == DS_VOCAB_CHAR)
		seen.bits = calloc(0x110000 / 8, 1);
	if (!root || !names || !cps || (kind == DS_VOCAB_CHAR && !seen.bits)) {
		rc = tr_err_set(err, -ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		uint8_t *buf = NULL;
		size_t len = 0;

		rc = read_part(dir, files[i], DATASET_MAX_TEXT - total, &buf, &len, err);
		if (rc == 0 && kind == DS_VOCAB_CHAR)
			rc = dataset_utf8_scan(buf, len, 0, files[i], mark, &seen, err);
		free(buf);
		if (rc < 0)
			goto out;
		total += len;
		if (json_array_append_new(names, json_string(files[i]))) {
			rc = tr_err_set(err, -EINVAL, "file %s: its name is not UTF-8", files[i]);
			goto out;
		}
	}
	if (total < 2) {
		rc = tr_err_set(err, -EINVAL, "the text has %zu bytes: nothing to learn from", total);
		goto out;
	}
	if (kind == DS_VOCAB_CHAR)
		for (uint32_t cp = 0; cp < 0x110000; cp++)
			if (seen.bits[cp >> 3] >> (cp & 7) & 1) {
				if (++distinct > DATASET_MAX_CHARS) {
					rc = tr_err_set(err, -EINVAL,
							"the text has more than %u distinct characters; import it with the byte vocabulary (--vocab byte)",
							DATASET_MAX_CHARS);
					goto out;
				}
				if (json_array_append_new(cps, json_integer(cp))) {
					rc = tr_err_set(err, -ENOMEM, "out of memory");
					goto out;
				}
			}
	if (json_object_set_new(root, "vocab", json_string(kind == DS_VOCAB_CHAR ? "char" : "byte")) ||
	    json_object_set(root, "files", names) ||
	    (kind == DS_VOCAB_CHAR && json_object_set(root, "code_points", cps)) ||
	    json_object_set_new(root, "test_fraction", json_real(test_fraction))) {
		rc = tr_err_set(err, -ENOMEM, "out of memory");
		goto out;
	}
	*json = json_dumps(root, JSON_COMPACT);
	if (!*json)
		rc = tr_err_set(err, -ENOMEM, "out of memory");
out:
	json_decref(names);
	json_decref(cps);
	json_decref(root);
	free(seen.bits);
	return rc;
}

/* ---- loading ---------------------------------------------------------------- */

int64_t dataset_token_id(const struct dataset *ds, uint32_t cp)
{
	size_t lo = 0, hi;

	if (ds->vocab_kind == DS_VOCAB_BYTE)
		return cp < 256 ? (int64_t)cp : -1;
	if (ds->vocab_kind != DS_VOCAB_CHAR || !ds->code_points)
		return -1;
	hi = ds->vocab;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (ds->code_points[mid] < cp)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < ds->vocab && ds->code_points[lo] == cp ? (int64_t)lo : -1;
}

size_t dataset_token_utf8(const struct dataset *ds, uint32_t id, char *buf)
{
	uint32_t c;

	if (ds->vocab_kind == DS_VOCAB_BYTE) {
		buf[0] = (char)id;
		return 1;
	}
	c = ds->code_points && id < ds->vocab ? ds->code_points[id] : 0xfffd;
	if (c < 0x80) {
		buf[0] = (char)c;
		return 1;
	}
	if (c < 0x800) {
		buf[0] = (char)(0xc0 | c >> 6);
		buf[1] = (char)(0x80 | (c & 0x3f));
		return 2;
	}
	if (c < 0x10000) {
		buf[0] = (char)(0xe0 | c >> 12);
		buf[1] = (char)(0x80 | (c >> 6 & 0x3f));
		buf[2] = (char)(0x80 | (c & 0x3f));
		return 3;
	}
	buf[0] = (char)(0xf0 | c >> 18);
	buf[1] = (char)(0x80 | (c >> 12 & 0x3f));
	buf[2] = (char)(0x80 | (c >> 6 & 0x3f));
	buf[3] = (char)(0x80 | (c & 0x3f));
	return 4;
}

struct tok {
	const struct dataset *ds;
	uint32_t *out;
	uint64_t n;
	uint32_t missing;    /* the first code point not in the vocabulary, or UINT32_MAX */
	uint64_t at;         /* ... and its place (tokens before it) */
	int32_t *bmp;        /* (0x10000) the ids of the Basic Multilingual Plane's, -1: none */
};

static void put_char(void *arg, uint32_t cp)
{
	struct tok *t = arg;
	int64_t id = cp < 0x10000 && t->bmp ? t->bmp[cp] : dataset_token_id(t->ds, cp);

	if (id < 0 && t->missing == UINT32_MAX) {
		t->missing = cp;
		t->at = t->n;
	}
	t->out[t->n++] = id < 0 ? 0 : (uint32_t)id;
}

/* Charge the load's budget before anything is read: a token id (4 bytes)
 * for each of the files' bytes at most, with the test split's copy, kept;
 * the text itself beside them while it is tokenized. */
static int charge_text(const char *dir, const struct ds_meta *m, struct tr_err *err)
{
	char path[4400], detail[96];
	uint64_t bytes = 0, test;
	struct stat st;
	int rc;

	for (uint32_t i = 0; i < m->nfiles; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, m->files[i]);
		if (stat(path, &st) == 0 && S_ISREG(st.st_mode))
			bytes += (uint64_t)st.st_size;   /* else read_part says what is wrong */
	}
	snprintf(detail, sizeof(detail), "the token ids of its %llu bytes of text",
		 (unsigned long long)bytes);
	test = (uint64_t)((double)bytes * (m->has_test_fraction ? m->test_fraction : 0.1)) + 1;
	rc = ds_budget_charge(m, (bytes + test) * sizeof(uint32_t), true, dir, detail, err);
	if (rc == 0) {
		snprintf(detail, sizeof(detail), "its %llu bytes of text", (unsigned long long)bytes);
		rc = ds_budget_charge(m, bytes, false, dir, detail, err);
	}
	return rc;
}

int ds_load_text(struct dataset *ds, const char *dir, const struct ds_meta *m, struct tr_err *err)
{
	uint8_t *text = NULL;
	uint32_t *ids = NULL;
	size_t total = 0;
	uint64_t ntest;
	struct tok t = { 0 };
	int rc = 0;

	if (m->nfiles == 0)
		return tr_err_set(err, -EINVAL, "%s/dataset.json: a text dataset lists its \"files\"", dir);
	if (m->vocab_kind == DS_VOCAB_CHAR && m->ncode_points == 0)
		return tr_err_set(err, -EINVAL,
				  "%s/dataset.json: a char vocabulary lists its \"code_points\"", dir);
	ds->tokens = true;
	ds->text = true;
	ds->vocab_kind = m->vocab_kind;
	ds->test_fraction = m->has_test_fraction ? m->test_fraction : 0.1;
	ds->vocab = m->vocab_kind == DS_VOCAB_BYTE ? 256 : m->ncode_points;
	if (m->vocab_kind == DS_VOCAB_CHAR) {
		ds->code_points = malloc(m->ncode_points * sizeof(uint32_t));
		if (!ds->code_points)
			return tr_err_set(err, -ENOMEM, "%s: out of memory", dir);
		memcpy(ds->code_points, m->code_points, m->ncode_points * sizeof(uint32_t));
	}
	rc = charge_text(dir, m, err);
	if (rc < 0)
		return rc;
	for (uint32_t i = 0; i < m->nfiles; i++) {
		uint8_t *buf = NULL, *all;
		size_t len = 0;

		rc = read_part(dir, m->files[i], DATASET_MAX_TEXT - total, &buf, &len, err);
		if (rc < 0)
			goto out;
		all = realloc(text, total + len + 1);
		if (!all) {
			free(buf);
			rc = tr_err_set(err, -ENOMEM, "%s: out of memory", dir);
			goto out;
		}
		text = all;
		memcpy(text + total, buf, len);
		free(buf);
		/* each file is checked on its own, so a message names its offset */
		if (m->vocab_kind == DS_VOCAB_CHAR) {
			rc = dataset_utf8_scan(text + total, len, 0, m->files[i], NULL, NULL, err);
			if (rc < 0)
				goto out;
		}
		total += len;
	}
	ids = malloc((total ? total : 1) * sizeof(uint32_t));
	if (!ids) {
		rc = tr_err_set(err, -ENOMEM, "%s: out of memory", dir);
		goto out;
	}
	t = (struct tok){ ds, ids, 0, UINT32_MAX, 0, NULL };
	if (m->vocab_kind == DS_VOCAB_CHAR && (t.bmp = malloc(0x10000 * sizeof(int32_t)))) {
		for (uint32_t c = 0; c < 0x10000; c++)
			t.bmp[c] = -1;
		for (uint32_t i = 0; i < ds->vocab; i++)
			if (ds->code_points[i] < 0x10000)
				t.bmp[ds->code_points[i]] = (int32_t)i;
	}
	if (m->vocab_kind == DS_VOCAB_BYTE) {
		for (size_t i = 0; i < total; i++)
			ids[i] = text[i];
		t.n = total;
	} else {
		rc = dataset_utf8_scan(text, total, 0, "text", put_char, &t, err);
		if (rc < 0)
			goto out;
		if (t.missing != UINT32_MAX) {
			rc = tr_err_set(err, -EINVAL,
					"%s/dataset.json: the text's character %" PRIu64 " (U+%04X) is not in \"code_points\" (import the text again to rebuild the vocabulary)",
					dir, t.at, t.missing);
			goto out;
		}
	}
	ntest = (uint64_t)((double)t.n * ds->test_fraction);
	ds->train.ntokens = t.n - ntest;
	ds->test.ntokens = ntest;
	ds->test.tokens = malloc((ntest ? ntest : 1) * sizeof(uint32_t));
	if (!ds->test.tokens) {
		rc = tr_err_set(err, -ENOMEM, "%s: out of memory", dir);
		goto out;
	}
	memcpy(ds->test.tokens, ids + ds->train.ntokens, ntest * sizeof(uint32_t));
	ds->train.tokens = ids;   /* the rest stays allocated, unused */
	ids = NULL;
	ds->train.channels = ds->test.channels = 1;
	ds->train.cols = ds->test.cols = 1;
	ds->target = DS_TARGET_TOKENS;
	ds->dtype = DS_U8;
	ds->layout = DS_NCHW;
out:
	free(t.bmp);
	free(text);
	free(ids);
	return rc;
}

/* ---- prompts and generated text --------------------------------------------- */

struct enc {
	const struct dataset *ds;
	uint32_t *ids;
	size_t n;
	uint32_t missing[8];   /* the first distinct code points the vocabulary lacks */
	size_t nmissing;
	bool more;             /* ... and others */
};

static void enc_char(void *arg, uint32_t cp)
{
	struct enc *e = arg;
	int64_t id = dataset_token_id(e->ds, cp);

	if (id >= 0) {
		e->ids[e->n++] = (uint32_t)id;
		return;
	}
	for (size_t k = 0; k < e->nmissing; k++)
		if (e->missing[k] == cp)
			return;
	if (e->nmissing < sizeof(e->missing) / sizeof(e->missing[0]))
		e->missing[e->nmissing++] = cp;
	else
		e->more = true;
}

int dataset_text_encode(const struct dataset *ds, const char *s, size_t len, uint32_t **ids, size_t *n,
			struct tr_err *err)
{
	struct enc e = { ds, NULL, 0, { 0 }, 0, false };
	int rc = 0;

	*ids = NULL;
	*n = 0;
	e.ids = malloc((len ? len : 1) * sizeof(uint32_t));
	if (!e.ids)
		return tr_err_set(err, -ENOMEM, "out of memory");
	if (ds->vocab_kind == DS_VOCAB_BYTE) {
		for (size_t i = 0; i < len; i++)
			e.ids[e.n++] = (uint8_t)s[i];
	} else {
		rc = dataset_utf8_scan((const uint8_t *)s, len, 0, "prompt", enc_char, &e, err);
	}
	if (rc == 0 && e.nmissing) {
		char list[256] = "";
		size_t used = 0;

		for (size_t k = 0; k < e.nmissing; k++) {
			char one[5] = "";
			struct dataset tmp = { .vocab_kind = DS_VOCAB_CHAR, .vocab = 1,
					       .code_points = &e.missing[k] };
			size_t w = e.missing[k] >= 0x20 && e.missing[k] != 0x7f ? dataset_token_utf8(&tmp, 0, one) : 0;

			one[w] = '\0';
			used += (size_t)snprintf(list + used, sizeof(list) - used, "%s%s%s%sU+%04X%s",
						 k ? ", " : "", w ? "'" : "", one, w ? "' (" : "", e.missing[k],
						 w ? ")" : "");
			if (used >= sizeof(list))
				break;
		}
		rc = tr_err_set(err, -EINVAL, "prompt: characters not in the vocabulary (%u tokens): %s%s",
				ds->vocab, list, e.more ? " and others" : "");
	}
	if (rc < 0) {
		free(e.ids);
		return rc;
	}
	*ids = e.ids;
	*n = e.n;
	return 0;
}

char *dataset_text_decode(const struct dataset *ds, const uint32_t *ids, size_t n)
{
	char *out = malloc(4 * n + 1), *fixed;
	size_t len = 0, k = 0;

	if (!out)
		return NULL;
	for (size_t i = 0; i < n; i++)
		len += dataset_token_utf8(ds, ids[i], out + len);
	if (ds->vocab_kind != DS_VOCAB_BYTE) {
		out[len] = '\0';
		return out;
	}
	/* bytes: keep the UTF-8 sequences, replace what is not one */
	fixed = malloc(3 * len + 1);
	if (!fixed) {
		free(out);
		return NULL;
	}
	for (size_t i = 0; i < len;) {
		uint32_t cp;
		size_t w = utf8_one((const uint8_t *)out + i, len - i, &cp);

		if (w && cp) {
			memcpy(fixed + k, out + i, w);
			k += w;
			i += w;
		} else {
			memcpy(fixed + k, w ? "\xef\xbf\xbd" : "\xef\xbf\xbd", 3);   /* U+FFFD (NUL too) */
			k += 3;
			i += w ? w : 1;
		}
	}
	fixed[k] = '\0';
	free(out);
	return fixed;
}
