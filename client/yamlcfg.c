/*
 * yamlcfg.c - a job's settings as a YAML file (see yamlcfg.h).
 */
#include "yamlcfg.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <yaml.h>

#include "traind/error.h"
#include "traind/jsonfmt.h"

/* The text of a scalar node (NULL for a null: "", "~", "null" unquoted). */
static bool scalar_text(const yaml_node_t *node, const char **text)
{
	const char *v = (const char *)node->data.scalar.value;

	*text = v;
	if (node->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
	    (!*v || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 || strcmp(v, "Null") == 0 ||
	     strcmp(v, "NULL") == 0))
		*text = NULL;
	return true;
}

/* "PATH:LINE: KEY: MSG" (KEY NULL: none) into why. */
static void fail(char *why, size_t n, const char *path, const yaml_mark_t *mark, const char *key,
		 const char *msg)
{
	if (mark)
		snprintf(why, n, "%s:%zu: %.*s%s%s", path, mark->line + 1, key ? tr_utf8_cut(key, TR_QUOTE_MAX) : 0,
			 key ? key : "", key ? ": " : "", msg);
	else
		snprintf(why, n, "%s: %s", path, msg);
}

int yamlcfg_read(const char *path, json_t **out, char *why, size_t n)
{
	yaml_parser_t parser;
	yaml_document_t doc;
	yaml_node_t *root;
	struct stat st;
	FILE *f;
	json_t *o = NULL;
	int rc = -1;

	*out = NULL;
	f = fopen(path, "rb");
	if (!f) {
		snprintf(why, n, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fileno(f), &st) == 0 && (!S_ISREG(st.st_mode) || (size_t)st.st_size > YAMLCFG_MAX_BYTES)) {
		snprintf(why, n, "%s: %s", path, !S_ISREG(st.st_mode) ? "not a regular file"
								       : "larger than 1 MiB: not a settings file");
		fclose(f);
		return -1;
	}
	if (!yaml_parser_initialize(&parser)) {
		snprintf(why, n, "out of memory");
		fclose(f);
		return -1;
	}
	yaml_parser_set_input_file(&parser, f);
	if (!yaml_parser_load(&parser, &doc)) {
		snprintf(why, n, "%s:%zu:%zu: not YAML: %s%s%s", path, parser.problem_mark.line + 1,
			 parser.problem_mark.column + 1, parser.problem ? parser.problem : "?",
			 parser.context ? " " : "", parser.context ? parser.context : "");
		yaml_parser_delete(&parser);
		fclose(f);
		return -1;
	}
	root = yaml_document_get_root_node(&doc);
	o = json_object();
	if (!o) {
		snprintf(why, n, "out of memory");
		goto out;
	}
	if (!root) {
		rc = 0;   /* an empty file: no settings */
		goto out;
	}
	if (root->type != YAML_MAPPING_NODE) {
		fail(why, n, path, &root->start_mark, NULL, "expected a mapping of settings (key: value lines)");
		goto out;
	}
	for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
		yaml_node_t *k = yaml_document_get_node(&doc, p->key);
		yaml_node_t *v = yaml_document_get_node(&doc, p->value);
		const char *key, *text = NULL;
		char joined[1024];
		json_t *entry;

		if (!k || !v || k->type != YAML_SCALAR_NODE) {
			fail(why, n, path, k ? &k->start_mark : NULL, NULL, "a key must be a plain name");
			goto out;
		}
		key = (const char *)k->data.scalar.value;
		if (json_object_get(o, key)) {
			fail(why, n, path, &k->start_mark, key, "set twice");
			goto out;
		}
		if (strcmp(key, "params") == 0 && v->type != YAML_SCALAR_NODE) {
			/* a sweep's parameters: a mapping KEY: DIST or a list of
			 * "KEY=DIST", kept whole as a list of "KEY=DIST" */
			json_t *list = json_array();
			bool map = v->type == YAML_MAPPING_NODE;
			size_t count = map ? (size_t)(v->data.mapping.pairs.top - v->data.mapping.pairs.start)
					   : (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);

			for (size_t i = 0; list && i < count; i++) {
				yaml_node_t *a = yaml_document_get_node(&doc, map ? v->data.mapping.pairs.start[i].key
										  : v->data.sequence.items.start[i]);
				yaml_node_t *b = map ? yaml_document_get_node(&doc, v->data.mapping.pairs.start[i].value) : NULL;
				char item[512];

				if (!a || a->type != YAML_SCALAR_NODE || (map && (!b || b->type != YAML_SCALAR_NODE))) {
					json_decref(list);
					fail(why, n, path, &v->start_mark, key, "expected KEY: DIST lines or a list of KEY=DIST");
					goto out;
				}
				snprintf(item, sizeof(item), "%s%s%s", (const char *)a->data.scalar.value, map ? "=" : "",
					 map ? (const char *)b->data.scalar.value : "");
				json_array_append_new(list, json_string(item));
			}
			entry = list ? json_pack("{s:n,s:o,s:I}", "text", "list", list, "line",
						 (json_int_t)(k->start_mark.line + 1)) : NULL;
			if (!entry || json_object_set_new(o, key, entry)) {
				fail(why, n, path, &k->start_mark, key, "not valid UTF-8 text, or out of memory");
				goto out;
			}
			continue;
		}
		if (v->type == YAML_SCALAR_NODE) {
			scalar_text(v, &text);
		} else if (v->type == YAML_SEQUENCE_NODE) {
			size_t used = 0;

			/* a list of scalars: hidden: [512, 256] is hidden 512,256 */
			joined[0] = '\0';
			for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++) {
				yaml_node_t *e = yaml_document_get_node(&doc, *it);

				if (!e || e->type != YAML_SCALAR_NODE) {
					fail(why, n, path, e ? &e->start_mark : &v->start_mark, key,
					     "a list of plain values is expected");
					goto out;
				}
				if (used + 1 + e->data.scalar.length >= sizeof(joined)) {
					fail(why, n, path, &v->start_mark, key, "the list is too long");
					goto out;
				}
				used += (size_t)snprintf(joined + used, sizeof(joined) - used, "%s%s", used ? "," : "",
							 (const char *)e->data.scalar.value);
			}
			text = joined;
		} else {
			fail(why, n, path, &v->start_mark, key, "expected a value, not a mapping");
			goto out;
		}
		entry = json_pack("{s:o,s:I}", "text", text ? json_string(text) : json_null(), "line",
				  (json_int_t)(k->start_mark.line + 1));
		if (!entry || json_object_set_new(o, key, entry)) {
			fail(why, n, path, &k->start_mark, key, "not valid UTF-8 text, or out of memory");
			goto out;
		}
	}
	rc = 0;
out:
	yaml_document_delete(&doc);
	yaml_parser_delete(&parser);
	fclose(f);
	if (rc == 0)
		*out = o;
	else
		json_decref(o);
	return rc;
}

/* Whether YAML (1.1 or 1.2) reads `s` unquoted as this very string: not
 * empty, not a null, bool or number, no character with a meaning at its
 * start, no ": " or " #" inside, no blanks at its ends. */
static bool plain_ok(const char *s)
{
	static const char *const words[] = { "~", "null", "true", "false", "yes", "no", "on", "off", "y", "n" };
	size_t len = strlen(s);
	char *end;

	if (len == 0 || s[0] == ' ' || s[len - 1] == ' ' || strchr("-?:,[]{}#&*!|>'\"%@`", s[0]) ||
	    strstr(s, ": ") || strstr(s, " #") || s[len - 1] == ':')
		return false;
	for (const char *p = s; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return false;
	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		if (strcasecmp(s, words[i]) == 0)
			return false;
	strtod(s, &end);
	if (end != s && *end == '\0')
		return false;   /* a number */
	if (s[0] == '.' || ((s[0] == '+' || s[0] == '-') && s[1] == '.'))
		return false;   /* .inf, .nan */
	return true;
}

/* A real as YAML 1.1 and 1.2 both read a float: jsonfmt's shortest form,
 * with a '.' and a signed exponent ("1.0e-8", "1.0e+16", "0.001"). */
static void yaml_real(double v, char *out, size_t n)
{
	char num[48], *e;

	jsonfmt_real(v, num, sizeof(num));
	e = strchr(num, 'e');
	if (!e) {
		snprintf(out, n, "%s", num);
		return;
	}
	*e = '\0';
	snprintf(out, n, "%s%se%s%s", num, strchr(num, '.') ? "" : ".0", e[1] == '-' ? "" : "+", e + 1);
}

static void write_value(FILE *out, json_t *v)
{
	char num[64];
	size_t i;
	json_t *e;

	if (json_is_integer(v)) {
		fprintf(out, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
	} else if (json_is_real(v)) {
		yaml_real(json_real_value(v), num, sizeof(num));
		fputs(num, out);
	} else if (json_is_boolean(v)) {
		fputs(json_is_true(v) ? "true" : "false", out);
	} else if (json_is_string(v)) {
		if (plain_ok(json_string_value(v))) {
			fputs(json_string_value(v), out);
		} else {
			/* a JSON string is a YAML double-quoted scalar */
			char *q = json_dumps(v, JSON_ENCODE_ANY);

			fputs(q ? q : "\"\"", out);
			free(q);
		}
	} else if (json_is_array(v)) {
		fputc('[', out);
		json_array_foreach(v, i, e) {
			if (i)
				fputs(", ", out);
			write_value(out, e);
		}
		fputc(']', out);
	} else {
		fputc('~', out);
	}
}

int yamlcfg_write(FILE *out, const char *comment, json_t *settings)
{
	const char *key;
	json_t *v;

	for (const char *line = comment; line && *line;) {
		size_t len = strcspn(line, "\n");

		fprintf(out, "# %.*s\n", (int)len, line);
		line += len + (line[len] == '\n');
	}
	json_object_foreach(settings, key, v) {
		fprintf(out, "%s: ", key);
		write_value(out, v);
		fputc('\n', out);
	}
	return ferror(out) ? -1 : 0;
}
