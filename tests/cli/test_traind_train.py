#!/usr/bin/env python3
"""traind-train, the engine's command-line driver, the way a user runs it:
a run with per-epoch checkpoint files that "crashes" after epoch 1, then
--resume finishes it with the same parameter hash as an uninterrupted run
(and the same exported model); files that cannot be read or written give
one line naming the file and a non-zero exit, and leave nothing behind."""
import hashlib
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import BUILD, DATA, check, run  # noqa: E402

TT = os.path.join(BUILD, "cli", "traind-train")
CFG = ["--train-size", "3000", "--val-size", "1000", "--epochs", "2", "--no-test", "--hash"]


def tt(*args, cwd):
    p = subprocess.run([TT, "--data-dir", DATA] + [str(a) for a in args], capture_output=True, text=True,
                       cwd=cwd, timeout=600)
    return p.returncode, p.stdout, p.stderr


def phash(out):
    lines = [ln for ln in out.splitlines() if ln.startswith("params sha256: ")]
    return lines[-1].split()[-1] if lines else None


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def main():
    w = tempfile.mkdtemp(prefix="traind-train-test-")
    rc, out, err = tt(*CFG, "--export", "ref.safetensors", cwd=w)
    check(rc == 0 and phash(out), "an uninterrupted 2-epoch run (rc %d %s)" % (rc, err.strip()))
    ref = phash(out)
    rc, out, err = tt(*CFG, "--checkpoint", "ck.safetensors", "--crash-after-epoch", "1", cwd=w)
    check(rc == 3 and "Simulated crash after epoch 1" in out, "--crash-after-epoch 1 stops with exit 3 (rc %d)"
          % rc)
    rc, out, err = tt("--resume", "ck.safetensors", "--no-test", "--hash", "--export", "res.safetensors", cwd=w)
    check(rc == 0 and "Resumed from ck.safetensors: 1 epochs done" in out,
          "--resume continues after epoch 1 (rc %d %s)" % (rc, err.strip()))
    check(phash(out) == ref, "the resumed run's parameters hash as the uninterrupted run's (%s vs %s)"
          % ((phash(out) or "-")[:16], ref[:16]))
    check(sha(os.path.join(w, "res.safetensors")) == sha(os.path.join(w, "ref.safetensors")),
          "... and its exported model file is byte-identical")
    check(not [f for f in os.listdir(w) if ".tmp" in f], "no temporary files left (%s)" % os.listdir(w))

    for args, words, what in (
            (["--resume", "nosuch.safetensors"], ["nosuch.safetensors", "No such file"], "a missing --resume file"),
            (["--init-from", w, "--epochs", "1"], [w, "not a regular file"], "--init-from a directory"),
            (["--resume", "ref.safetensors"], ["ref.safetensors"], "--resume of a model-only file"),
            (CFG[:6] + ["--epochs", "1", "--export", "no/such/dir/m.safetensors"], ["no/such/dir"],
             "--export into a missing directory")):
        rc, out, err = tt(*args, cwd=w)
        lines = err.strip().splitlines()
        check(rc not in (0, 3) and len(lines) == 1 and all(x in lines[0] for x in words),
              "%s: exit %d, one line naming it (%s)" % (what, rc, err.strip()[:200]))
    subprocess.run(["rm", "-rf", w])


if __name__ == "__main__":
    run(main)
