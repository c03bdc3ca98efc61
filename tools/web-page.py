#!/usr/bin/env python3
"""web-page.py HEAD PAGE OUT

Write traind-web's page OUT from the pages' shared head (web/static/
head.html: the document's head, the site's header and navigation, the
message line) and a page's own source (web/static/*.in.html), whose first
line says what the head takes:

    @head title="traind job" page="job" charts

title: the <title>; page: the body's data-page (app.js picks the page's
code by it); charts: the page draws charts, so it loads uPlot (the head's
lines that start with "@charts ", without that prefix; other pages leave
them out). The rest of the source follows the head as it stands. Exits
with status 1 and a message naming the file on any problem.
"""
import re
import sys

DIRECTIVE_RE = re.compile(r'^@head title="([^"<>&]+)" page="([a-z]+)"( charts)?\n$')


def fail(path, msg):
    sys.stderr.write("web-page.py: %s: %s\n" % (path, msg))
    sys.exit(1)


def main():
    if len(sys.argv) != 4:
        sys.stderr.write(__doc__)
        return 2
    head_path, page_path, out_path = sys.argv[1:]
    with open(head_path, encoding="utf-8") as f:
        head = f.read()
    with open(page_path, encoding="utf-8") as f:
        first, rest = f.readline(), f.read()
    m = DIRECTIVE_RE.match(first)
    if not m:
        fail(page_path, 'its first line must be @head title="..." page="..." [charts]')
    title, page, charts = m.group(1), m.group(2), bool(m.group(3))
    for key in ("@TITLE@", "@PAGE@"):
        if key not in head:
            fail(head_path, "no %s in the head" % key)
    lines = []
    for line in head.splitlines(keepends=True):
        if line.startswith("@charts "):
            if charts:
                lines.append(line[len("@charts "):])
        else:
            lines.append(line)
    text = "".join(lines).replace("@TITLE@", title).replace("@PAGE@", page) + rest
    if "@TITLE@" in text or "@PAGE@" in text or "\n@charts " in text or text.startswith("@"):
        fail(page_path, "a placeholder left in the page")
    with open(out_path, "w", encoding="utf-8") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
