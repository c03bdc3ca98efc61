#!/usr/bin/env python3
"""A portable job (--kernels portable, doc/portable.md) through traind-train,
as a user runs it, on the lesson's MLP and real MNIST:
  - the same final parameter hash under TRAIND_ISA=avx512, avx2 and generic
    (a path this CPU cannot run is skipped, with the reason) and at threads
    1, 2 and 3; not the hash of the same job with --kernels openblas; the
    same for a BatchNorm+Dropout MLP with a ragged batch (37);
  - a run that crashes after epoch 1 on one path and thread count, resumed
    on another path: the uninterrupted run's hash, and no "not
    bit-identical" note (another path is no change); the checkpoint's
    numerics name the path it trained on;
  - lenet5 with Adam, OneCycle (per step: cos) and clipping, and resnet20 with
    augmentation (random crop, flip, normalize) on a small subset: one hash
    for every path and thread count (resnet20 on the plain C path at one
    thread count only: that path is ~60x slower);
  - what is refused at start with a clear error: TRAIND_ISA naming no path,
    --kernels with an unknown value."""
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import check, run, safetensors_header  # noqa: E402
from crosspath import paths, phash, tt  # noqa: E402

CFG = ["--kernels", "portable", "--train-size", "2000", "--val-size", "1000", "--no-test", "--hash"]
BN_MLP = "flatten,linear(64),relu,dropout(0.3),linear(32),batchnorm1d,relu,linear(10)"


def main():
    w = tempfile.mkdtemp(prefix="traind-portable-test-")
    hashes = {}
    for isa in paths():
        for threads in (1, 2, 3):
            rc, out, err = tt(*CFG, "--epochs", "1", "--threads", threads, cwd=w, isa=isa)
            check(rc == 0 and phash(out), "a portable epoch on %s, %d threads (rc %d %s)"
                  % (isa, threads, rc, err.strip()[-200:]))
            hashes[(isa, threads)] = phash(out)
    one = set(hashes.values())
    check(len(one) == 1, "one hash for every path and thread count: %s"
          % ", ".join("%s/%d %s" % (k[0], k[1], (v or "-")[:12]) for k, v in sorted(hashes.items())))
    # A BatchNorm+Dropout MLP, a ragged batch: batchnorm's per-channel sums and
    # dropout's masks are already fixed by their code; one hash too.
    bn = {}
    for isa in paths():
        for threads in (1, 2, 3):
            rc, out, err = tt(*CFG, "--epochs", "1", "--threads", threads, "--batch-size", 37, "--model", BN_MLP,
                              cwd=w, isa=isa)
            bn[(isa, threads)] = phash(out) if rc == 0 else None
    check(len(set(bn.values())) == 1 and None not in bn.values(),
          "the BatchNorm+Dropout MLP: one hash for every path and thread count: %s"
          % ", ".join("%s/%d %s" % (k[0], k[1], (v or "-")[:12]) for k, v in sorted(bn.items())))
    # lenet5 (conv2d, maxpool) with Adam, a schedule and clipping; resnet20
    # (batchnorm2d, residual blocks, adaptive pooling) with augmentation.
    lenet = ["--model", "lenet5", "--train-size", "600", "--val-size", "200", "--optimizer", "adam",
             "--lr-scheduler", "onecycle(max_lr=0.01)", "--clip-grad-norm", "1"]
    resnet = ["--model", "resnet20", "--dataset", "fashion-mnist", "--train-size", "96", "--val-size", "32",
              "--batch-size", "32", "--lr-scheduler", "onecycle(max_lr=0.05)", "--clip-grad-norm", "2",
              "--augment", "random_crop(28,padding=2),random_horizontal_flip(0.5),normalize(0.29,0.35)"]
    for name, extra, gen_threads in (("lenet5", lenet, (1, 2, 3)), ("resnet20", resnet, (2,))):
        got = {}
        for isa in paths():
            for threads in (gen_threads if isa == "generic" else (1, 2, 3)):
                rc, out, err = tt(*CFG, "--epochs", "1", "--threads", threads, *extra, cwd=w, isa=isa)
                check(rc == 0 and phash(out), "portable %s on %s, %d threads (rc %d %s)"
                      % (name, isa, threads, rc, err.strip()[-200:]))
                got[(isa, threads)] = phash(out)
        check(len(set(got.values())) == 1,
              "%s: one hash for every path and thread count: %s"
              % (name, ", ".join("%s/%d %s" % (k[0], k[1], (v or "-")[:12]) for k, v in sorted(got.items()))))

    rc, out, err = tt(*(CFG[2:]), "--epochs", "1", "--threads", 2, cwd=w)
    check(rc == 0 and phash(out) and phash(out) not in one,
          "--kernels openblas (the default) is other arithmetic: another hash (%s)" % (phash(out) or "-")[:12])

    # Crash on the widest path at 1 thread, resume on the plain C path.
    first = paths()[-1]
    rc, out, err = tt(*CFG, "--epochs", "2", "--threads", 1, cwd=w, isa=first)
    check(rc == 0 and phash(out), "an uninterrupted 2-epoch portable run on %s (rc %d)" % (first, rc))
    ref = phash(out)
    rc, out, err = tt(*CFG, "--epochs", "2", "--threads", 1, "--checkpoint", "ck.safetensors",
                      "--crash-after-epoch", "1", cwd=w, isa=first)
    check(rc == 3, "--crash-after-epoch 1 on %s stops with exit 3 (rc %d %s)" % (first, rc, err.strip()))
    meta = safetensors_header(os.path.join(w, "ck.safetensors"))[0].get("__metadata__", {})
    check(meta.get("numerics") == "traind portable 1 %s" % first,
          "the checkpoint's numerics name the contract and the path (%r)" % meta.get("numerics"))
    rc, out, err = tt("--resume", "ck.safetensors", "--no-test", "--hash", cwd=w, isa="generic")
    check(rc == 0 and phash(out) == ref,
          "resumed on the generic path: the uninterrupted run's hash (%s vs %s; rc %d %s)"
          % ((phash(out) or "-")[:16], (ref or "-")[:16], rc, err.strip()[-200:]))
    check("not bit-identical" not in out + err, "... and no note of other numerics: another path is none")

    for args, env, words, what in (
            ([], "sse9", ["TRAIND_ISA: 'sse9' is not a path (expected avx512, avx2 or generic)"],
             "TRAIND_ISA naming no path"),):
        rc, out, err = tt(*CFG, "--epochs", "1", *args, cwd=w, isa=env)
        check(rc != 0 and all(s in err for s in words) and len(err.strip().splitlines()) == 1,
              "%s is refused with one line naming it (rc %d: %r)" % (what, rc, err.strip()))
    rc, out, err = tt("--kernels", "mkl", "--epochs", "1", cwd=w)
    check(rc == 2 and "unknown kernels 'mkl' (expected openblas or portable)" in err,
          "--kernels mkl: a usage error naming the choices (rc %d %r)" % (rc, err.strip()))
    shutil.rmtree(w, ignore_errors=True)


if __name__ == "__main__":
    run(main)
