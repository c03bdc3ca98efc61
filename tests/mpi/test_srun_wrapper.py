#!/usr/bin/env python3
"""The srun wrapper of doc/distributed.md (traind's mpirun-style launcher
line to srun), taken from the document as it stands and run with a
stand-in `srun` first on PATH that prints its arguments: -n and --host are
translated wherever they come before the program, --allow-run-as-root is
dropped, other options and the program with its own arguments (a -n among
them too) pass unchanged; without -n it refuses. No Slurm needed."""
import json
import os
import re
import stat
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import check, finish  # noqa: E402

DOC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "doc", "distributed.md")


def main():
    text = open(DOC).read()
    m = re.search(r"```sh\n(#!/bin/sh\n# /usr/local/libexec/traind-srun.*?)```", text, re.S)
    check(m is not None, "doc/distributed.md has the traind-srun wrapper")
    if not m:
        finish()
    d = tempfile.mkdtemp(prefix="srun-wrapper-")
    wrapper = os.path.join(d, "traind-srun")
    fake = os.path.join(d, "srun")
    open(wrapper, "w").write(m.group(1))
    open(fake, "w").write("#!/usr/bin/env python3\nimport json, sys\nprint(json.dumps(sys.argv[1:]))\n")
    for f in (wrapper, fake):
        os.chmod(f, stat.S_IRWXU)
    env = dict(os.environ, PATH=d + ":" + os.environ.get("PATH", ""))

    def run(*args):
        p = subprocess.run([wrapper] + list(args), capture_output=True, text=True, env=env)
        try:
            return p.returncode, json.loads(p.stdout), p.stderr
        except ValueError:
            return p.returncode, None, p.stderr

    fixed = ["--distribution=block", "--cpu-bind=none", "--kill-on-bad-exit=1"]
    rc, argv, err = run("--allow-run-as-root", "-n", "4", "--host", "node1:2,node2:2", "--partition=gpu",
                        "/opt/traind/traind-rank", "--contact", "/run/traind/c.sock", "-n", "7")
    check(rc == 0 and argv == ["--mpi=pmix", "--ntasks=4", "--nodelist=node1,node2"] + fixed +
          ["--partition=gpu", "/opt/traind/traind-rank", "--contact", "/run/traind/c.sock", "-n", "7"],
          "traind's line becomes srun's, the program's own -n untouched (%s %s)" % (argv, err.strip()))
    rc, argv, err = run("--partition=gpu", "-n", "2", "--host", "a:1,b:1", "prog")
    check(rc == 0 and argv == ["--mpi=pmix", "--ntasks=2", "--nodelist=a,b"] + fixed + ["--partition=gpu", "prog"],
          "options before -n and --host are passed on (%s)" % argv)
    rc, argv, err = run("-n", "3", "prog", "x")
    check(rc == 0 and argv == ["--mpi=pmix", "--ntasks=3"] + fixed + ["prog", "x"],
          "without --host no --nodelist: the allocation's nodes (%s)" % argv)
    rc, argv, err = run("--host", "a:1", "prog")
    check(rc == 2 and "no -n" in err, "without -n it refuses (rc %d, %s)" % (rc, err.strip()))
    for f in (wrapper, fake):
        os.unlink(f)
    os.rmdir(d)
    finish()


if __name__ == "__main__":
    main()
