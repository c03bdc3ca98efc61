#!/usr/bin/env python3
"""check_tree.py [SRC]: no tracked file is one .gitignore says to ignore
(build output, logs, data brought back into git by a merge: `git ls-files
--cached --ignored --exclude-standard` must list nothing). Skipped (77)
outside a git checkout."""
import os
import subprocess
import sys

src = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", ".."))
p = subprocess.run(["git", "-C", src, "ls-files", "--cached", "--ignored", "--exclude-standard"],
                   capture_output=True, text=True)
if p.returncode != 0:
    print("tree: not a git checkout (%s): skipped" % p.stderr.strip())
    sys.exit(77)
bad = p.stdout.split()
for f in bad:
    print("tree: %s is tracked, but .gitignore ignores it (git rm --cached %s, or fix .gitignore)" % (f, f))
if bad:
    sys.exit(1)
print("tree: no tracked file is ignored")
