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
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import SANITIZER, check, run  # noqa: E402
from crosspath import paths, phash, tt as tt_at  # noqa: E402
from textdata import corpus, text_dataset  # noqa: E402

TRAIN = "38" if SANITIZER else "76"   # windows of 24 tokens: 2 or 4 steps of 19 an epoch
CFG = ["--kernels", "portable", "--dataset", "words", "--context", "24", "--val-size", "4",
       "--train-size", TRAIN, "--batch-size", "19", "--optimizer", "adam",
       "--lr-scheduler", "onecycle(max_lr=0.01)", "--clip-grad-norm", "1", "--no-test", "--hash"]


def tt(*args, cwd, data, isa=None):
    """crosspath's tt on this test's text (and its 10 minutes a run)."""
    return tt_at(*args, cwd=cwd, data=data, isa=isa, timeout=600)


def main():
    w = tempfile.mkdtemp(prefix="traind-portable-seq-")
    data = os.path.join(w, "data")
    vocab = len(text_dataset(data, "words", corpus(4000)))
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
