#!/usr/bin/env python3
"""The sequence layers of a portable job (--kernels portable, doc/portable.md)
through traind-train, as a user runs it, on a small character text:
  - a char_lstm (embedding, 2-layer LSTM with dropout between), a gpt
    (embeddings, transformer layers with attention dropout, layer norm, the
    per-token loss) and a GRU + layernorm model, with Adam, a schedule and
    clipping and a ragged batch (19: chunks of 1 and 2 samples), 24 tokens
    a sample (the attention's rows longer than 16 lanes): one final
    hash under TRAIND_ISA=avx512, avx2 and generic (a path this CPU cannot
    run is skipped, with the reason) and at threads 1, 2 and 3; not the
    hash of the same job with --kernels openblas;
  - a gpt crashed after epoch 1 on the widest path at 1 thread and resumed
    on the plain C path: the hash of the uninterrupted run at 3 threads on
    the widest path, with no "not bit-identical" note.
Tiny models and a few steps (CI is at its limit); SANITIZER shrinks them."""
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import BUILD, SANITIZER, check, run  # noqa: E402

TT = os.path.join(BUILD, "cli", "traind-train")
WORDS = ["the", "cat", "sat", "on", "a", "mat", "dog", "ran", "to", "big", "red", "house", "and",
         "fish", "swam", "in", "blue", "sea", "Über", "café"]
TRAIN = "38" if SANITIZER else "76"   # windows of 24 tokens: 2 or 4 steps of 19 an epoch
CFG = ["--kernels", "portable", "--dataset", "words", "--context", "24", "--val-size", "4",
       "--train-size", TRAIN, "--batch-size", "19", "--optimizer", "adam",
       "--lr-scheduler", "onecycle(max_lr=0.01)", "--clip-grad-norm", "1", "--no-test", "--hash"]


def cpu_flags():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    return set()


def paths():
    """The paths this CPU runs, widest last; the others printed as skipped."""
    flags, out = cpu_flags(), ["generic"]
    for name, need in (("avx2", {"avx2", "fma"}), ("avx512", {"avx512f", "avx2", "fma"})):
        if need <= flags:
            out.append(name)
        else:
            print("skip: the %s path: this CPU lacks %s" % (name, ", ".join(sorted(need - flags))))
    return out


def text_data(root):
    r = random.Random(3)
    text = ""
    while len(text) < 4000:
        text += " ".join(r.choice(WORDS) for _ in range(r.randint(3, 8))) + ".\n"
    d = os.path.join(root, "words")
    os.makedirs(d)
    with open(os.path.join(d, "corpus.txt"), "w") as f:
        f.write(text)
    cps = sorted(set(ord(c) for c in text))
    with open(os.path.join(d, "dataset.json"), "w") as f:
        json.dump({"vocab": "char", "files": ["corpus.txt"], "code_points": cps, "test_fraction": 0.1}, f)
    return len(cps)


def tt(*args, cwd, data, isa=None):
    env = dict(os.environ)
    env.pop("TRAIND_ISA", None)
    if isa is not None:
        env["TRAIND_ISA"] = isa
    p = subprocess.run([TT, "--data-dir", data] + [str(a) for a in args], capture_output=True, text=True,
                       cwd=cwd, timeout=600, env=env)
    return p.returncode, p.stdout, p.stderr


def phash(out):
    lines = [ln for ln in out.splitlines() if ln.startswith("params sha256: ")]
    return lines[-1].split()[-1] if lines else None


def main():
    w = tempfile.mkdtemp(prefix="traind-portable-seq-")
    data = os.path.join(w, "data")
    vocab = text_data(data)
    models = (("char_lstm", "char_lstm(embed=8,hidden=16,layers=2,dropout=0.2)"),
              ("gpt", "gpt(layers=2,dim=16,heads=2,dropout=0.1)"),
              ("gru+layernorm", "embedding(%d,8),gru(12,layers=2),layernorm,linear(%d)" % (vocab, vocab)))
    for label, spec in models:
        got = {}
        for isa in paths():
            for threads in (1, 2, 3):
                rc, out, err = tt(*CFG, "--model", spec, "--epochs", "1", "--threads", threads, cwd=w,
                                  data=data, isa=isa)
                check(rc == 0 and phash(out), "portable %s on %s, %d threads (rc %d %s)"
                      % (label, isa, threads, rc, err.strip()[-200:]))
                got[(isa, threads)] = phash(out)
        check(len(set(got.values())) == 1 and None not in got.values(),
              "%s: one hash for every path and thread count: %s"
              % (label, ", ".join("%s/%d %s" % (k[0], k[1], (v or "-")[:12]) for k, v in sorted(got.items()))))
        rc, out, err = tt(*CFG[2:], "--model", spec, "--epochs", "1", "--threads", 2, cwd=w, data=data)
        check(rc == 0 and phash(out) and phash(out) not in got.values(),
              "%s with --kernels openblas is other arithmetic: another hash (%s)" % (label, (phash(out) or "-")[:12]))

    # Crash on the widest path at 1 thread, resume on the plain C path; the
    # reference ran at 3 threads.
    first, gpt = paths()[-1], models[1][1]
    rc, out, err = tt(*CFG, "--model", gpt, "--epochs", "2", "--threads", 3, cwd=w, data=data, isa=first)
    ref = phash(out)
    check(rc == 0 and ref, "an uninterrupted 2-epoch portable gpt on %s at 3 threads (rc %d)" % (first, rc))
    rc, out, err = tt(*CFG, "--model", gpt, "--epochs", "2", "--threads", 1, "--checkpoint", "ck.safetensors",
                      "--crash-after-epoch", "1", cwd=w, data=data, isa=first)
    check(rc == 3, "--crash-after-epoch 1 on %s stops with exit 3 (rc %d %s)" % (first, rc, err.strip()[-200:]))
    rc, out, err = tt("--resume", "ck.safetensors", "--no-test", "--hash", cwd=w, data=data, isa="generic")
    check(rc == 0 and phash(out) == ref,
          "the gpt resumed on the generic path (1 thread): the uninterrupted run's hash (%s vs %s; rc %d %s)"
          % ((phash(out) or "-")[:16], (ref or "-")[:16], rc, err.strip()[-200:]))
    check("not bit-identical" not in out + err, "... and no note of other numerics: another path is none")
    shutil.rmtree(w, ignore_errors=True)


if __name__ == "__main__":
    run(main)
