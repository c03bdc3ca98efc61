#!/usr/bin/env python3
"""The README's first session, run as it stands: the console block of its
section "A first session" is cut into commands (the lines after "$ ") and
the output each is shown with, the commands run in one bash, in order, in a
temporary directory holding the checkout's `build` and `data` (links), and
each command's output must have the shape the README shows: the same lines,
with the same words, where numbers, durations, dates and digests may differ
(another CPU, another load). A README that shows other verbs, columns,
messages or lines than trainctl prints fails here, and so does a command
that fails.

    tests/daemon/test_readme.py [--print] [README]

--print: print each command and what it printed, in the README's form (to
paste into the README after changing the session).
"""
import os
import re
import shutil
import signal
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import harness  # noqa: E402
from harness import check, run  # noqa: E402

SECTION = "## A first session"
MARK = "@@readme-command@@ "
# A state word that depends on when a command lands: start returns with the
# job queued, and traind starts it at once; either is the program's truth.
SAME_STATE = {"queued": "STATE", "running": "STATE"}


def session(readme):
    """[(command, [expected output lines])] of the section's console blocks."""
    text = open(readme, encoding="utf-8").read()
    start = text.find("\n" + SECTION + "\n")
    if start < 0:
        raise SystemExit("%s: no section %r" % (readme, SECTION))
    end = text.find("\n## ", start + len(SECTION) + 2)
    body = text[start:end if end >= 0 else len(text)]
    cmds = []
    for block in re.findall(r"```console\n(.*?)```", body, re.S):
        for line in block.splitlines():
            if line.startswith("$ "):
                cmds.append((line[2:], []))
            elif cmds:
                cmds[-1][1].append(line)
            elif line.strip():
                raise SystemExit("%s: output before the first command: %r" % (readme, line))
    return cmds


def shape(line):
    """A line with what may differ from run to run replaced by a token."""
    s = re.sub(r"\b[0-9a-f]{12,}\b", "HEX", line)                   # digests
    s = re.sub(r"\b\d{4}-\d\d-\d\d( \d\d:\d\d(:\d\d)?)?", "DATE", s)  # local times
    s = re.sub(r"(?<![\w.])(\d+h)?(\d+m)?\d+(\.\d+)?(e[-+]?\d+)?(ms|s)\b", "DUR", s)
    s = re.sub(r"(?<![\w])-?\d+(\.\d+)?(e[-+]?\d+)?", "#", s)         # numbers
    words = s.split()
    return " ".join(SAME_STATE.get(w, w) for w in words)


def run_session(cmds, workdir):
    """Each command's output (stdout and stderr, as a terminal shows them)."""
    script = ["exec 2>&1", "set -o pipefail"]
    for i, (cmd, _) in enumerate(cmds):
        script.append("printf '%%s%d\\n' %s" % (i, shquote(MARK)))
        script.append(cmd)
        script.append("rc=$?; [ $rc = 0 ] || printf '%%sfailed %d %%d\\n' %s $rc" % (i, shquote(MARK)))
    script.append("wait")     # traind, once `kill %1` stopped it
    env = dict(os.environ)
    env.pop("TRAIND_SOCKET", None)
    env.pop("XDG_RUNTIME_DIR", None)
    p = subprocess.Popen(["bash", "-c", "\n".join(script)], cwd=workdir, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = p.communicate(timeout=400)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, _ = p.communicate()
        check(False, "the session ended within 400 s")
    finally:
        try:
            os.killpg(p.pid, signal.SIGKILL)     # traind, if the session left it running
        except ProcessLookupError:
            pass
    outs, failed = [[] for _ in cmds], {}
    cur = None
    for line in out.splitlines():
        if line.startswith(MARK):
            rest = line[len(MARK):]
            if rest.startswith("failed "):
                _, i, rc = rest.split()
                failed[int(i)] = int(rc)
            else:
                cur = int(rest)
            continue
        if cur is not None:
            outs[cur].append(line)
    return outs, failed


def shquote(s):
    return "'" + s.replace("'", "'\\''") + "'"


def main():
    readme = next((a for a in sys.argv[1:] if not a.startswith("--")), os.path.join(SRC, "README.md"))
    cmds = session(readme)
    check(len(cmds) >= 8, "the README's first session has its commands (%d)" % len(cmds))
    work = harness.socket_dir("traind-readme-")    # short: state/traind.sock goes in it
    try:
        os.symlink(os.path.abspath(harness.BUILD), os.path.join(work, "build"))
        os.symlink(os.path.abspath(harness.DATA), os.path.join(work, "data"))
        outs, failed = run_session(cmds, work)
        if "--print" in sys.argv:
            for (cmd, _), got in zip(cmds, outs):
                print("$ " + cmd)
                for line in got:
                    print(line)
            return
        for i, ((cmd, want), got) in enumerate(zip(cmds, outs)):
            check(i not in failed, "$ %s: exit status %d" % (cmd, failed.get(i, 0)))
            ws, gs = [shape(x) for x in want], [shape(x) for x in got]
            if ws == gs:
                check(True, "$ %s: %d line(s) as the README shows" % (cmd, len(want)))
                continue
            n = max(len(want), len(got))
            diff = ["  README: %s\n  printed: %s" % (w, g) for w, g in zip(want + [""] * n, got + [""] * n)
                    if shape(w) != shape(g)][:4]
            check(False, "$ %s: the README shows %d line(s), the program printed %d, unlike:\n%s"
                  % (cmd, len(want), len(got), "\n".join(diff) or "  (lines missing at the end)"))
        log = os.path.join(work, "state", "traind.log")
        text = open(log).read() if os.path.exists(log) else ""
        harness.check_sanitizer_log(text, "traind's log of the README's session")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    run(main)
