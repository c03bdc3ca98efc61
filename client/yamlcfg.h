/*
 * yamlcfg.h - a job's settings as a YAML file: read for `start --config
 * FILE`, written by `trainctl config JOB`.
 *
 * The file is one YAML mapping of setting names to values: the
 * configuration keys of config.h (dataset, epochs, lr, hidden...) and the
 * job's own `name` and `keep`. A value is a scalar, as the flag takes it
 * (`lr: 0.001`, `optimizer: adamw`, `model: flatten,linear(128),relu,
 * linear(10)`), or for `hidden` also a list (`hidden: [512, 256]`). The
 * reader only splits the file into (key, text, line): what a value means is
 * config_set's business (the code flags and the daemon use), so a file and
 * a flag are checked alike. The writer quotes a string that YAML would read
 * as something else ("", "true", "1e-3", a leading '[' ...) and writes a
 * real so that YAML 1.1 readers (PyYAML) read a float too (1.0e-8).
 *
 * Library: libyaml (Debian's libyaml-dev), the parser PyYAML and most
 * YAML-reading C programs use: small, long stable, and its loader gives each
 * node's line for the error messages. Only the reader uses it: the files
 * written here are a flat mapping that a few lines of printf write
 * faithfully.
 *
 * Thread: trainctl has one.
 */
#ifndef TRAIND_CLIENT_YAMLCFG_H
#define TRAIND_CLIENT_YAMLCFG_H

#include <jansson.h>
#include <stddef.h>
#include <stdio.h>

#define YAMLCFG_MAX_BYTES (1u << 20)   /* a settings file is small; anything bigger is a mistake */

/* Read the settings file at `path` into *out, a JSON object in file order:
 * {KEY: {"text": TEXT or null (an empty value), "line": LINE}}, a list
 * value's items joined with ','. 0, or -1 with one line in why ("run.yaml:3:
 * ..."): the file cannot be read, is not YAML, is not a mapping, repeats a
 * key, has a nested value. A sweep's `params` (sweep start --config) may be
 * a mapping KEY: DIST or a list of KEY=DIST: {"text": null, "list":
 * ["KEY=DIST", ...], "line"}. */
int yamlcfg_read(const char *path, json_t **out, char *why, size_t n);

/* Write `settings` (a JSON object: name, keep, then configuration keys as
 * config_to_json has them) as the YAML file `start --config` reads, after
 * the comment lines of `comment` (each prefixed with "# "; NULL: none). */
int yamlcfg_write(FILE *out, const char *comment, json_t *settings);

#endif
