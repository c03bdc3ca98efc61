/*
 * check-errors.c - a build-time tool: check the error table
 * (daemon/proto/errors.c) against the interface files, then embed the files.
 *
 *   check-errors OUTPUT.c SYMBOL=FILE.varlink...
 *
 * For every error in the table, the file of its interface (the one whose
 * "interface" line names the prefix of the error's name) must declare it
 * with the same parameters, types and optionality; every error an
 * io.traind* file declares must be in the table (nothing declared that
 * traind never sends). The standard org.varlink.service file may declare
 * errors traind does not send (MethodNotImplemented). On success OUTPUT.c
 * defines `const char SYMBOL[]` with each file's text, NUL-terminated; on a
 * mismatch it names it and exits 1, so the daemon does not build.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/proto/errors.h"

#define MAX_FILES 8
#define MAX_DECLS 64

struct iface {
	const char *symbol;
	const char *path;
	char *text;
	size_t len;
	char name[128];                 /* from its "interface" line */
	char *decls[MAX_DECLS];         /* error declarations, whitespace removed */
	char decl_names[MAX_DECLS][64];
	int ndecls;
};

static char *read_all(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t cap = 0, n = 0, r;

	if (!f)
		return NULL;
	do {
		if (cap - n < 4096) {
			char *nb = realloc(buf, cap + 65536);

			if (!nb) {
				free(buf);
				fclose(f);
				return NULL;
			}
			buf = nb;
			cap += 65536;
		}
		r = fread(buf + n, 1, cap - n - 1, f);
		n += r;
	} while (r > 0);
	fclose(f);
	buf[n] = '\0';
	*len = n;
	return buf;
}

static void strip_ws(char *s)
{
	char *o = s;

	for (; *s; s++)
		if (*s != ' ' && *s != '\t' && *s != '\n' && *s != '\r')
			*o++ = *s;
	*o = '\0';
}

/* The interface name and the error declarations of one file: comments
 * (# to the end of the line) dropped, a declaration runs from "error" at
 * the start of a line to the ")" that closes its parameter list. */
static int parse(struct iface *f)
{
	char *copy = strdup(f->text);
	char *line, *save = NULL;
	char *decl = NULL;
	size_t dlen = 0;
	int depth = 0;

	if (!copy)
		return -1;
	for (line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *hash = strchr(line, '#');
		char *p = line;

		if (hash)
			*hash = '\0';
		while (*p == ' ' || *p == '\t')
			p++;
		if (!decl && strncmp(p, "interface ", 10) == 0) {
			snprintf(f->name, sizeof(f->name), "%s", p + 10);
			strip_ws(f->name);
			continue;
		}
		if (!decl && strncmp(p, "error ", 6) == 0) {
			decl = calloc(1, strlen(f->text) + 1);
			dlen = 0;
			depth = 0;
			if (!decl)
				return -1;
		}
		if (!decl)
			continue;
		for (; *p; p++) {
			decl[dlen++] = *p;
			if (*p == '(')
				depth++;
			if (*p == ')' && --depth == 0)
				break;
		}
		decl[dlen++] = ' ';
		if (*p == ')') {
			char *paren;

			decl[dlen] = '\0';
			if (f->ndecls == MAX_DECLS) {
				fprintf(stderr, "%s: more than %d errors\n", f->path, MAX_DECLS);
				return -1;
			}
			paren = strchr(decl, '(');
			snprintf(f->decl_names[f->ndecls], sizeof(f->decl_names[0]), "%.*s",
				 (int)(paren - decl - 6), decl + 6);
			strip_ws(f->decl_names[f->ndecls]);
			strip_ws(decl);
			f->decls[f->ndecls++] = decl;
			decl = NULL;
		}
	}
	free(copy);
	if (decl) {
		fprintf(stderr, "%s: an error declaration is not closed\n", f->path);
		return -1;
	}
	if (!f->name[0]) {
		fprintf(stderr, "%s: no \"interface\" line\n", f->path);
		return -1;
	}
	return 0;
}

static struct iface *iface_of(struct iface *files, int n, const char *error)
{
	const char *dot = strrchr(error, '.');

	for (int i = 0; i < n; i++)
		if (strlen(files[i].name) == (size_t)(dot - error) &&
		    strncmp(files[i].name, error, (size_t)(dot - error)) == 0)
			return &files[i];
	return NULL;
}

static int check(struct iface *files, int n)
{
	int bad = 0;
	bool used[MAX_FILES][MAX_DECLS] = { { false } };

	for (int e = 0; e < PROTO_ERROR_COUNT; e++) {
		const char *name = proto_error_name((enum proto_error)e);
		struct iface *f = iface_of(files, n, name);
		char want[512], shown[512];
		int found = -1;

		proto_error_declaration((enum proto_error)e, shown, sizeof(shown));
		snprintf(want, sizeof(want), "%s", shown);
		strip_ws(want);
		if (!f) {
			fprintf(stderr, "check-errors: %s: no interface file for it\n", name);
			bad++;
			continue;
		}
		for (int i = 0; i < f->ndecls; i++)
			if (strcmp(f->decl_names[i], strrchr(name, '.') + 1) == 0)
				found = i;
		if (found < 0) {
			fprintf(stderr, "check-errors: %s: traind sends %s, which %s does not declare\n",
				f->path, name, f->path);
			bad++;
		} else {
			used[f - files][found] = true;
			if (strcmp(f->decls[found], want) != 0) {
				fprintf(stderr, "check-errors: %s: %s is declared as '%s', traind sends '%s'\n",
					f->path, name, f->decls[found], shown);
				bad++;
			}
		}
	}
	for (int i = 0; i < n; i++) {
		if (strncmp(files[i].name, "io.traind", 9) != 0)
			continue;
		for (int j = 0; j < files[i].ndecls; j++) {
			if (!used[i][j]) {
				fprintf(stderr, "check-errors: %s declares error %s.%s, which traind never sends\n",
					files[i].path, files[i].name, files[i].decl_names[j]);
				bad++;
			}
		}
	}
	return bad ? -1 : 0;
}

static int embed(const char *out, struct iface *files, int n)
{
	FILE *f = fopen(out, "w");

	if (!f)
		return -1;
	fprintf(f, "/* generated by tools/check-errors.c after checking the error table; do not edit */\n");
	for (int i = 0; i < n; i++) {
		fprintf(f, "/* %s */\nconst char %s[] = {\n", strrchr(files[i].path, '/') ?
			strrchr(files[i].path, '/') + 1 : files[i].path, files[i].symbol);
		for (size_t k = 0; k < files[i].len; k++)
			fprintf(f, "%s0x%02x,%s", k % 16 == 0 ? "\t" : " ", (unsigned char)files[i].text[k],
				k % 16 == 15 ? "\n" : "");
		fprintf(f, "%s\t0x00\n};\n", files[i].len % 16 ? "\n" : "");
	}
	return fclose(f) == 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
	struct iface files[MAX_FILES];
	int n = argc - 2, rc = 1;

	if (argc < 3 || n > MAX_FILES) {
		fprintf(stderr, "usage: check-errors OUTPUT.c SYMBOL=FILE...\n");
		return 2;
	}
	memset(files, 0, sizeof(files));
	for (int i = 0; i < n; i++) {
		char *eq = strchr(argv[i + 2], '=');

		if (!eq) {
			fprintf(stderr, "check-errors: expected SYMBOL=FILE, got %s\n", argv[i + 2]);
			rc = 2;
			goto out;
		}
		*eq = '\0';
		files[i].symbol = argv[i + 2];
		files[i].path = eq + 1;
		files[i].text = read_all(files[i].path, &files[i].len);
		if (!files[i].text) {
			perror(files[i].path);
			goto out;
		}
		if (parse(&files[i]) < 0)
			goto out;
	}
	if (check(files, n) < 0)
		goto out;
	if (embed(argv[1], files, n) < 0) {
		perror(argv[1]);
		goto out;
	}
	rc = 0;
out:
	/* A build tool, but the sanitizer builds run it under LeakSanitizer. */
	for (int i = 0; i < n; i++) {
		for (int j = 0; j < files[i].ndecls; j++)
			free(files[i].decls[j]);
		free(files[i].text);
	}
	return rc;
}
