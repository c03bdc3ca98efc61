#!/usr/bin/env python3
"""Float targets in every array format, through traind-train: a small
synthetic regression (y = a linear function of the pixels, 2 targets per
sample) as npy (float32 (N, 2)), npz, safetensors (tensor 'targets', F64) and
safetensors (tensor 'labels', F32) trains with --loss mse to the same bits in
each (the same float32 targets); 0/1 integer targets of shape (N, 3) are
multi-label (bce_with_logits trains, mse too); refused with the file and the
reason: an integer (N, K) with a 2, a NaN target, targets whose count differs
between the splits, and cross_entropy on float targets."""
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import dsformats as F  # noqa: E402
from harness import check, finish  # noqa: E402

BUILD = os.environ.get("TRAIND_BUILD_DIR", os.path.join(os.path.dirname(__file__), "../../build"))
TRAIN = os.path.join(BUILD, "cli", "traind-train")


def f32(vals):
    return struct.pack("<%df" % len(vals), *vals)


def f64(vals):
    return struct.pack("<%dd" % len(vals), *vals)


def make(n, seed):
    """n images of 4x4 uint8 and their 2 float targets (float32-exact)."""
    import random
    r = random.Random(seed)
    px, y = bytearray(), []
    for _ in range(n):
        img = [r.randrange(256) for _ in range(16)]
        px += bytes(img)
        y += [float(sum(img[:8]) // 8) / 4, float(img[15] - img[0]) / 8]
    return bytes(px), y


def train(data, name, *args):
    p = subprocess.run([TRAIN, "--data-dir", data, "--dataset", name, "--epochs", "2", "--val-size", "40",
                        "--batch-size", "16", "--threads", "1", "--hidden", "8", "--hash"] + list(args),
                       capture_output=True, text=True)
    h = re.search(r"params sha256: ([0-9a-f]{64})", p.stdout)
    return p.returncode, (h.group(1) if h else None), p.stdout + p.stderr


def main():
    d = tempfile.mkdtemp(prefix="traind-targets-")
    tr, te = make(200, 1), make(50, 2)
    # npy: float32 (N, 2)
    npy = os.path.join(d, "npy")
    os.makedirs(npy)
    F.write(os.path.join(npy, "x_train.npy"), F.npy_bytes("u1", (200, 4, 4), tr[0]))
    F.write(os.path.join(npy, "y_train.npy"), F.npy_bytes("f4", (200, 2), f32(tr[1])))
    F.write(os.path.join(npy, "x_test.npy"), F.npy_bytes("u1", (50, 4, 4), te[0]))
    F.write(os.path.join(npy, "y_test.npy"), F.npy_bytes("f4", (50, 2), f32(te[1])))
    # npz of the same arrays
    npz = os.path.join(d, "npz")
    os.makedirs(npz)
    import zipfile
    with zipfile.ZipFile(os.path.join(npz, "reg.npz"), "w", zipfile.ZIP_DEFLATED) as z:
        for n in ("x_train", "y_train", "x_test", "y_test"):
            z.writestr(n + ".npy", open(os.path.join(npy, n + ".npy"), "rb").read())
    # safetensors: 'targets' F64, and 'labels' F32
    F.ST_DTYPES["f8"] = "F64"
    for name, tname, tc, pack in (("st64", "targets", "f8", f64), ("st32", "labels", "f4", f32)):
        sd = os.path.join(d, name)
        os.makedirs(sd)
        for split, (px, y), n in (("train", tr, 200), ("test", te, 50)):
            F.write(os.path.join(sd, split + ".safetensors"),
                    F.st_bytes([("images", "u1", (n, 4, 4), px), (tname, tc, (n, 2), pack(y))]))
    hashes = {}
    for name in ("npy", "npz", "st64", "st32"):
        rc, h, out = train(d, name, "--loss", "mse")
        check(rc == 0 and h and "val_rmse" in out, "%s: float targets train with mse (%s)" % (name, out.strip()[-120:]))
        hashes[name] = h
    check(len(set(hashes.values())) == 1, "the same bits from every format (%s)" % set(hashes.values()))
    rc, h, out = train(d, "npy")
    check(rc != 0 and "cross_entropy needs class labels; dataset 'npy' has float targets (2 per sample)" in out,
          "cross_entropy on them is refused: %s" % out.strip())

    # multi-label: uint8 (N, 3) of 0/1
    ml = os.path.join(d, "ml")
    shutil.copytree(npy, ml)
    lab = lambda px, n: bytes(int(px[i * 16 + k] > 127) for i in range(n) for k in range(3))
    F.write(os.path.join(ml, "y_train.npy"), F.npy_bytes("u1", (200, 3), lab(tr[0], 200)))
    F.write(os.path.join(ml, "y_test.npy"), F.npy_bytes("u1", (50, 3), lab(te[0], 50)))
    rc, h, out = train(d, "ml", "--loss", "bce_with_logits", "--pos-weight", "1,2,1")
    check(rc == 0 and "test_acc" in out, "0/1 integers of shape (N, 3): bce_with_logits trains (%s)" % out.strip()[-80:])
    rc, h, out = train(d, "ml", "--loss", "mse")
    check(rc == 0, "and mse takes them as floats")

    def refused(name, mutate, words):
        bad = os.path.join(d, name)
        shutil.copytree(npy, bad)
        mutate(bad)
        rc, h, out = train(d, name, "--loss", "mse")
        check(rc != 0 and all(w in out for w in words), "%s: refused: %s" % (name, out.strip()))
    refused("two", lambda b: F.write(os.path.join(b, "y_test.npy"), F.npy_bytes("u1", (50, 2), bytes([2] * 100))),
            ["y_test.npy", "integer labels of shape (N, K) are multi-label targets, 0 or 1; sample 0 has 2"])
    refused("nan", lambda b: F.write(os.path.join(b, "y_train.npy"),
                                     F.npy_bytes("f4", (200, 2), f32(tr[1][:5] + [float("nan")] + tr[1][6:]))),
            ["y_train.npy", "target 1 of sample 2 is NaN"])
    refused("width", lambda b: F.write(os.path.join(b, "y_test.npy"), F.npy_bytes("f4", (50, 3), f32([0.5] * 150))),
            ["y_test.npy", "3 targets per sample, but the training split has 2"])
    shutil.rmtree(d, ignore_errors=True)
    finish()


if __name__ == "__main__":
    main()
