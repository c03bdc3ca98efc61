#!/usr/bin/env python3
"""embed-migrations.py OUT.c OUT.h MIGRATION.sql...

Write a C source OUT.c and header OUT.h embedding the schema migrations
(migrations/NNNN_name.sql) for daemon/store/store.c:

    struct store_migration { int version; const char *name; const char *sql; };
    extern const struct store_migration store_migrations[];
    extern const int store_migration_count;

The files may be given in any order; they are sorted by their number, which
becomes the migration's PRAGMA user_version. The numbers must run 1, 2, ...
without gaps or duplicates, every NNNN_*.sql in the migrations directory must
be listed (so one cannot be forgotten in daemon/meson.build), and a migration
must not contain transaction control or set user_version: the store wraps each
one in BEGIN IMMEDIATE ... PRAGMA user_version = N; COMMIT itself.
Exits with status 1 and a message naming the file on any problem.
"""
import os
import re
import sys

NAME_RE = re.compile(r"^(\d{4})_([a-z0-9][a-z0-9_]*)\.sql$")
ANY_MIGRATION_RE = re.compile(r"^\d+_.*\.sql$")
# Statements the runner owns. A trigger's BEGIN is followed by a statement,
# not by ';', and RAISE(ROLLBACK, ...) is not at a statement start, so neither
# matches.
FORBIDDEN_RE = re.compile(
    r"(?:^|;)\s*(BEGIN(?:\s+(?:DEFERRED|IMMEDIATE|EXCLUSIVE))?(?:\s+TRANSACTION)?\s*(?:;|$)"
    r"|COMMIT\b|END\s+TRANSACTION\b|ROLLBACK\b|SAVEPOINT\b|RELEASE\b|VACUUM\b)"
    r"|\buser_version\b",
    re.IGNORECASE)


def fail(msg):
    sys.stderr.write("embed-migrations: %s\n" % msg)
    sys.exit(1)


def strip_comments_and_strings(sql):
    """The SQL with comments removed and literals emptied, for the checks."""
    out = []
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if sql.startswith("--", i):
            j = sql.find("\n", i)
            i = n if j < 0 else j
        elif sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            i = n if j < 0 else j + 2
            out.append(" ")
        elif c in "'\"`[":
            close = "]" if c == "[" else c
            j = sql.find(close, i + 1)
            # '' inside a literal is an escaped quote: skip past pairs
            while j >= 0 and close != "]" and sql.startswith(close * 2, j):
                j = sql.find(close, j + 2)
            if j < 0:
                return None
            out.append(c + close)
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def c_bytes(data):
    lines = []
    for i in range(0, len(data), 16):
        lines.append("\t" + ", ".join("0x%02x" % b for b in data[i:i + 16]) + ",")
    lines.append("\t0x00")
    return "\n".join(lines)


def main(argv):
    if len(argv) < 4:
        fail("usage: embed-migrations.py OUT.c OUT.h MIGRATION.sql...")
    out_c, out_h, inputs = argv[1], argv[2], argv[3:]

    migrations = {}
    for path in inputs:
        base = os.path.basename(path)
        m = NAME_RE.match(base)
        if not m:
            fail("%s: the name must be NNNN_name.sql (four digits, lower-case name)" % path)
        version = int(m.group(1))
        if version in migrations:
            fail("%s: number %04d is also used by %s" % (path, version, migrations[version][0]))
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            fail("%s: %s" % (path, e.strerror))
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            fail("%s: not UTF-8 (%s)" % (path, e))
        if "\0" in text:
            fail("%s: contains a NUL byte" % path)
        code = strip_comments_and_strings(text)
        if code is None:
            fail("%s: unterminated string or identifier" % path)
        if not code.strip():
            fail("%s: no SQL in it" % path)
        bad = FORBIDDEN_RE.search(code)
        if bad:
            fail("%s: must not contain '%s': the store runs each migration in its own "
                 "transaction and sets PRAGMA user_version itself"
                 % (path, bad.group(0).strip(" \t\r\n;")))
        migrations[version] = (path, base[:-len(".sql")], data)

    if not migrations:
        fail("no migrations given")
    versions = sorted(migrations)
    for expect, version in enumerate(versions, start=1):
        if version != expect:
            fail("%s: migrations must be numbered 1, 2, ... without gaps; expected %04d here"
                 % (migrations[version][0], expect))

    # Every migration file in the directory must be one of the inputs.
    listed = {os.path.realpath(p) for p, _, _ in migrations.values()}
    for d in sorted({os.path.dirname(os.path.realpath(p)) for p in inputs}):
        for base in sorted(os.listdir(d)):
            full = os.path.realpath(os.path.join(d, base))
            if ANY_MIGRATION_RE.match(base) and full not in listed:
                fail("%s is not listed in daemon/meson.build (or is misnamed)"
                     % os.path.join(d, base))

    guard = "TRAIND_STORE_MIGRATIONS_H"
    header = """/* Generated by tools/embed-migrations.py; do not edit. */
#ifndef %(g)s
#define %(g)s

/* One schema migration: run in a transaction that also sets
 * PRAGMA user_version = version. */
struct store_migration {
	int version;      /* 1, 2, ...: the user_version once applied */
	const char *name; /* the file name without .sql, e.g. "0001_initial" */
	const char *sql;  /* the whole file, NUL-terminated */
};

/* (store_migration_count) migrations; store_migrations[i].version == i + 1. */
extern const struct store_migration store_migrations[];
extern const int store_migration_count;

#endif
""" % {"g": guard}

    parts = ["/* Generated by tools/embed-migrations.py from %s; do not edit. */\n"
             % ", ".join(migrations[v][1] + ".sql" for v in versions),
             '#include "%s"\n' % os.path.basename(out_h)]
    for v in versions:
        _, name, data = migrations[v]
        parts.append("\n/* %s.sql */\nstatic const char migration_%04d[] = {\n%s\n};\n"
                     % (name, v, c_bytes(data)))
    parts.append("\nconst struct store_migration store_migrations[] = {\n")
    for v in versions:
        parts.append('\t{ %d, "%s", migration_%04d },\n' % (v, migrations[v][1], v))
    parts.append("};\n\nconst int store_migration_count = %d;\n" % len(versions))

    for path, content in ((out_h, header), (out_c, "".join(parts))):
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(content)
        os.replace(tmp, path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
