#!/usr/bin/env python3
"""Datasets in every format traind reads, trained by traind-train:

- one MNIST, five formats: the test converts the IDX bytes of
  $TRAIND_DATA_DIR/mnist into x_*.npy/y_*.npy, one NAME.npz, train/test
  .safetensors and train/test.csv (with a header row), and, when Debian's
  python3 has NumPy, an npz written by np.savez_compressed; a job with the same
  configuration on each ends with the same parameter hash and test line as
  the IDX job (the same bytes, the same arithmetic);
- Fashion-MNIST with class names in dataset.json (the names change nothing
  in the arithmetic; too few names for its labels are refused);
- a 3-channel dataset generated here (32x32 RGB patterns, NHWC uint8 npy with
  mean/std normalisation) trained by a small CNN to a high test accuracy;
- datasets with 2 and with 100 classes: the MLP's last layer follows the
  data, and a SPEC whose last layer does not match is refused naming it."""
import os
import random
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
from harness import BUILD, DATA, check, run  # noqa: E402
import dsformats as F  # noqa: E402

TT = os.path.join(BUILD, "cli", "traind-train")
CFG = ["--train-size", "2000", "--val-size", "1000", "--epochs", "1", "--hash"]


def tt(data_dir, *args):
    p = subprocess.run([TT, "--data-dir", data_dir] + [str(a) for a in args], capture_output=True,
                       text=True, timeout=600)
    return p.returncode, p.stdout, p.stderr


def result(out):
    """(params hash, test line) of a run."""
    h = [ln.split()[-1] for ln in out.splitlines() if ln.startswith("params sha256: ")]
    t = [ln for ln in out.splitlines() if "test_acc" in ln]
    return (h[-1] if h else None, t[-1] if t else None)


def test_acc(out):
    t = result(out)[1]
    return float(t.split("test_acc: ")[1].split()[0]) if t else -1.0


def splits_of(ds):
    return {s: ((v[0], v[1], v[2]), v[3], v[4]) for s, v in ds.items()}


SYS_PYTHON = "/usr/bin/python3"   # Debian's, with NumPy (beside PyTorch)
NUMPY_NPZ = r"""
import gzip, os, struct, sys
import numpy as np
src, dst = sys.argv[1], sys.argv[2]
def idx(name):
    with open(os.path.join(src, name), "rb") as f:
        data = f.read()
    magic, n = struct.unpack(">II", data[:8])
    if magic == 0x803:
        r, c = struct.unpack(">II", data[8:16])
        return np.frombuffer(data, np.uint8, offset=16).reshape(n, r, c)
    return np.frombuffer(data, np.uint8, offset=8).astype(np.int64)
os.makedirs(os.path.dirname(dst))
np.savez_compressed(dst, x_train=idx("train-images-idx3-ubyte"), y_train=idx("train-labels-idx1-ubyte"),
                    x_test=idx("t10k-images-idx3-ubyte"), y_test=idx("t10k-labels-idx1-ubyte"))
"""


def numpy_npz(src, dst):
    """The IDX files saved by NumPy itself (np.savez_compressed, int64
    labels), when Debian's python3 has NumPy and the IDX files are plain."""
    if not os.path.exists(SYS_PYTHON) or not os.path.exists(os.path.join(src, "train-images-idx3-ubyte")):
        return False
    p = subprocess.run([SYS_PYTHON, "-c", NUMPY_NPZ, src, dst], capture_output=True, text=True, timeout=300)
    return p.returncode == 0


def mnist_five_formats(w):
    mnist = F.load_idx_dir(os.path.join(DATA, "mnist"))
    sp = splits_of(mnist)
    dd = os.path.join(w, "data")
    F.write_npy_dir(os.path.join(dd, "m-npy"), sp)
    F.write_npz(os.path.join(dd, "m-npz", "mnist.npz"),
                {s: (v[0], v[1], F.labels_as(v[2], "i8")) for s, v in sp.items()}, lab_tc="i8")
    F.write_st_dir(os.path.join(dd, "m-st"), {s: (v[0], v[1], F.labels_as(v[2], "i8")) for s, v in sp.items()})
    F.write_csv_dir(os.path.join(dd, "m-csv"), sp, header=True)
    names = ["m-npy", "m-npz", "m-st", "m-csv"]
    if numpy_npz(os.path.join(DATA, "mnist"), os.path.join(dd, "m-numpy", "mnist.npz")):
        names.append("m-numpy")
    else:
        print("SKIP m-numpy: no NumPy in %s" % SYS_PYTHON)
    rc, out, err = tt(DATA, "--dataset", "mnist", *CFG)
    ref = result(out)
    check(rc == 0 and ref[0] and ref[1], "the IDX job runs (rc %d %s)" % (rc, err.strip()))
    for name in names:
        rc, out, err = tt(dd, "--dataset", name, *CFG)
        got = result(out)
        check(rc == 0 and got == ref, "%s: the same parameters and test line as IDX (rc %d, %s vs %s; %s)"
              % (name, rc, (got[0] or "-")[:16], (ref[0] or "-")[:16], err.strip()[:200]))


def fashion_names(w):
    src = os.path.join(DATA, "fashion-mnist")
    if not os.path.isdir(src):
        print("SKIP fashion-mnist: not in %s" % DATA)
        return
    dd = os.path.join(w, "fdata")
    d = os.path.join(dd, "fashion")
    os.makedirs(d)
    for f in os.listdir(src):
        if f != "dataset.json":  # this test writes its own
            os.symlink(os.path.join(src, f), os.path.join(d, f))
    names = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
             "Ankle boot"]
    rc, out, err = tt(DATA, "--dataset", "fashion-mnist", *CFG)
    ref = result(out)
    F.write_json(d, {"classes": names, "height": 28, "width": 28, "channels": 1})
    rc, out, err = tt(dd, "--dataset", "fashion", *CFG)
    check(rc == 0 and result(out) == ref and ref[0],
          "Fashion-MNIST with class names trains as without them (rc %d %s)" % (rc, err.strip()[:200]))
    F.write_json(d, {"classes": names[:9]})
    rc, out, err = tt(dd, "--dataset", "fashion", *CFG)
    check(rc != 0 and "label 9" in err and "out of range" in err and "labels-idx1-ubyte" in err,
          "9 names for 10 classes: refused naming the file and the label (%s)" % err.strip()[:200])
    F.write_json(d, {"classes": names, "height": 32})
    rc, out, err = tt(dd, "--dataset", "fashion", *CFG)
    check(rc != 0 and "dataset.json" in err and "height 32" in err,
          "a dataset.json height that disagrees with the data is refused (%s)" % err.strip()[:200])


def rgb_patterns(n, seed):
    """n 32x32 RGB images (NHWC bytes) of 4 classes: a red or a blue bar,
    horizontal or vertical, at a random place, on noise."""
    r = random.Random(seed)
    px, lab = bytearray(n * 32 * 32 * 3), bytearray(n)
    for i in range(n):
        k = r.randrange(4)
        lab[i] = k
        ch = 0 if k < 2 else 2
        vertical = k % 2 == 1
        at = r.randrange(4, 28)
        base = i * 32 * 32 * 3
        for y in range(32):
            for x in range(32):
                for c in range(3):
                    v = r.randrange(80)
                    if c == ch and abs((x if vertical else y) - at) <= 1:
                        v += 150
                    px[base + (y * 32 + x) * 3 + c] = v
    return bytes(px), bytes(lab)


def rgb_cnn(w):
    dd = os.path.join(w, "rgb")
    d = os.path.join(dd, "bars")
    sp = {}
    for split, n, seed in (("train", 3000, 1), ("test", 500, 2)):
        px, lab = rgb_patterns(n, seed)
        sp[split] = ((n, 32, 32, 3), px, lab)
    F.write_npy_dir(d, sp)
    F.write_json(d, {"layout": "NHWC", "classes": ["red-h", "red-v", "blue-h", "blue-v"],
                     "mean": [0.3, 0.2, 0.3], "std": [0.25, 0.2, 0.25]})
    cnn = "conv2d(8,3,padding=1),relu,maxpool2d(2),conv2d(16,3,padding=1),relu,maxpool2d(2),flatten,linear(4)"
    rc, out, err = tt(dd, "--dataset", "bars", "--model", cnn, "--val-size", "500", "--epochs", "3",
                      "--batch-size", "32", "--hash")
    acc = test_acc(out)
    check(rc == 0 and acc >= 0.95, "a 3-channel 32x32 NHWC dataset, normalised, trains a CNN to test_acc %.4f "
          "(>= 0.95; rc %d %s)" % (acc, rc, err.strip()[:200]))
    rc, out, err = tt(dd, "--dataset", "bars", "--model", cnn.replace("linear(4)", "linear(10)"), "--val-size", "500",
                      "--epochs", "1")
    check(rc != 0 and "layer 8 linear(10)" in err and "4 classes" in err,
          "a CNN ending in 10 outputs on 4 classes is refused naming the layer (%s)" % err.strip()[:200])


def k_classes(w, k, fmt):
    """A k-class dataset of 10x10 images: class c lights pixel c (c < 100)."""
    r = random.Random(k)
    sp = {}
    for split, per in (("train", 40), ("test", 10)):
        n = per * k
        px, lab = bytearray(n * 100), bytearray(n)
        for i in range(n):
            c = i % k
            lab[i] = c
            for j in range(100):
                px[i * 100 + j] = r.randrange(60) + (190 if j == c else 0)
        sp[split] = ((n, 10, 10), bytes(px), bytes(lab))
    dd = os.path.join(w, "k%d" % k)
    name = "c%d" % k
    if fmt == "csv":
        F.write_csv_dir(os.path.join(dd, name), sp, header=False)
    else:
        F.write_st_dir(os.path.join(dd, name), {s: (v[0], v[1], F.labels_as(v[2], "i4")) for s, v in sp.items()},
                       lab_tc="i4")
    # lr 0.003: at 0.01 Adam overshoots on 100 classes (test_acc 0.87 with rng torch, 0.98 xoshiro;
    # 1.0 for both at 0.003)
    cfg = ["--dataset", name, "--val-size", str(5 * k), "--epochs", "8", "--batch-size", "16", "--lr", "0.003",
           "--hidden", "64", "--hash"]
    rc, out, err = tt(dd, *cfg)
    acc = test_acc(out)
    check(rc == 0 and acc >= 0.9, "%d classes (%s): the MLP ends in %d outputs, test_acc %.4f >= 0.9 (rc %d %s)"
          % (k, fmt, k, acc, rc, err.strip()[:200]))
    ck = os.path.join(dd, "ck.safetensors")
    rc2, out2, err2 = tt(dd, *cfg, "--checkpoint", ck, "--crash-after-epoch", "3")
    rc2, out2, err2 = tt(dd, "--resume", ck, "--hash")
    check(rc2 == 0 and result(out2) == result(out),
          "%d classes: a checkpoint after epoch 3 resumes to the same bits (rc %d %s)" % (k, rc2, err2.strip()[:200]))
    rc, out, err = tt(dd, "--dataset", name, "--model", "flatten,linear(10)", "--val-size", str(5 * k),
                      "--epochs", "1")
    check(rc != 0 and "layer 2 linear(10)" in err and "%d classes" % k in err,
          "%d classes: a SPEC ending in linear(10) is refused naming the layer (%s)" % (k, err.strip()[:200]))


def main():
    w = tempfile.mkdtemp(prefix="traind-formats-", dir=os.environ.get("TRAIND_TEST_TMP"))
    try:
        mnist_five_formats(w)
        fashion_names(w)
        rgb_cnn(w)
        k_classes(w, 2, "csv")
        k_classes(w, 100, "safetensors")
    finally:
        subprocess.run(["rm", "-rf", w])


if __name__ == "__main__":
    run(main)
