#!/usr/bin/env python3
"""Every malformed-input case of every dataset format (npy, npz,
safetensors, CSV, dataset.json, the directory itself) gives its named error:
traind-train refuses the dataset with one line that names the file (or the
tensor, or the line) and the problem. Each case is one small dataset (7
training and 3 test images of 4x4 pixels, 5 classes) written here and broken
in one way; the same dataset unbroken loads, so each refusal is the break."""
import os
import random
import struct
import subprocess
import sys
import tempfile
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
from harness import BUILD, check, run  # noqa: E402
import dsformats as F  # noqa: E402

TT = os.path.join(BUILD, "cli", "traind-train")


def base():
    r = random.Random(5)
    out = {}
    for split, n in (("train", 7), ("test", 3)):
        px = bytes(r.randrange(256) for _ in range(n * 16))
        lab = bytes(i % 5 for i in range(n))
        out[split] = ((n, 4, 4), px, lab)
    return out


def f32(px):
    return struct.pack("<%df" % len(px), *[v / 255.0 for v in px])


def tt(d):
    p = subprocess.run([TT, "--data-dir", os.path.dirname(d), "--dataset", os.path.basename(d),
                        "--val-size", "2", "--batch-size", "2", "--epochs", "1", "--no-test"],
                       capture_output=True, text=True, timeout=120)
    return p.returncode, p.stderr.strip()


def npy(d, sp, **kw):
    F.write_npy_dir(d, sp, **kw)


def rewrite(path, fn):
    with open(path, "rb") as f:
        data = f.read()
    F.write(path, fn(data))


# Each case: (name, writer(d) -> None, words the one error line must hold).
def cases():
    b = base()
    tr, te = b["train"], b["test"]
    npy_img = lambda d: os.path.join(d, "x_train.npy")  # noqa: E731
    cs = []

    def add(name, words):
        def deco(fn):
            cs.append((name, fn, words))
            return fn
        return deco

    @add("npy-good", None)
    def _(d):
        npy(d, b)

    @add("npy-truncated", ["x_train.npy", "truncated"])
    def _(d):
        npy(d, b)
        rewrite(npy_img(d), lambda x: x[:-10])

    @add("npy-trailing", ["x_test.npy", "size mismatch"])
    def _(d):
        npy(d, b)
        rewrite(os.path.join(d, "x_test.npy"), lambda x: x + b"\0")

    @add("npy-header-lies", ["x_train.npy", "truncated", "the header's shape needs"])
    def _(d):
        npy(d, b)
        F.write(npy_img(d), F.npy_bytes("u1", (1000, 4, 4), tr[1]))

    # issue 21: the shape's size overflowed and was shown as "needs 0 bytes"
    @add("npy-shape-overflow", ["x_train.npy", "(4294967296, 4294967296, 1)", "more than 2^50 bytes"])
    def _(d):
        npy(d, b)
        F.write(npy_img(d), F.npy_bytes("u1", (1 << 32, 1 << 32, 1), b""))

    # issue 21: '|u1\x00' passed for '|u1' once read as a C string
    @add("npy-descr-nul", ["x_train.npy", "control character 0x00"])
    def _(d):
        npy(d, b)
        F.write(npy_img(d), F.npy_bytes("u1", (7, 4, 4), tr[1], descr="|u1\x00"))

    @add("npy-wrong-dtype-images", ["x_train.npy", "images must be uint8 or float32, not int64"])
    def _(d):
        npy(d, b)
        F.write(npy_img(d), F.npy_bytes("i8", (7, 4, 4), F.labels_as(tr[1], "i8")))

    # issue 21: the message named neither file ("csv_2col:  dimensions mismatch")
    @add("csv-dims-differ", ["dimensions mismatch", "(test.csv)", "(train.csv)"])
    def _(d):
        F.write_csv_dir(d, {"train": tr, "test": ((3, 2, 2), bytes(12), te[2])})

    @add("npy-float-labels", ["y_test.npy", "float targets, but the training split has classes"])
    def _(d):
        npy(d, b)
        F.write(os.path.join(d, "y_test.npy"), F.npy_bytes("f4", (3,), f32(te[2])))

    @add("npy-label-out-of-range", ["y_train.npy", "label 300 at index 2", "at most 256 classes"])
    def _(d):
        lab = list(tr[2])
        lab[2] = 300
        npy(d, b)
        F.write(os.path.join(d, "y_train.npy"), F.npy_bytes("i8", (7,), struct.pack("<7q", *lab)))

    @add("npy-negative-label", ["y_train.npy", "label -1 at index 0", "out of range"])
    def _(d):
        lab = list(tr[2])
        lab[0] = -1
        npy(d, b)
        F.write(os.path.join(d, "y_train.npy"), F.npy_bytes("i8", (7,), struct.pack("<7q", *lab)))

    @add("npy-counts-disagree", ["y_train.npy", "count mismatch: 6 labels but 7 images"])
    def _(d):
        npy(d, b)
        F.write(os.path.join(d, "y_train.npy"), F.npy_bytes("u1", (6,), tr[2][:6]))

    @add("npy-nan-pixel", ["x_train.npy", "image 3 has a NaN pixel"])
    def _(d):
        px = bytearray(f32(tr[1]))
        px[(3 * 16 + 5) * 4:(3 * 16 + 6) * 4] = struct.pack("<f", float("nan"))
        npy(d, {"train": ((7, 4, 4), bytes(px), tr[2]), "test": ((3, 4, 4), f32(te[1]), te[2])}, img_tc="f4")

    @add("npy-inf-pixel", ["x_test.npy", "infinite pixel"])
    def _(d):
        px = bytearray(f32(te[1]))
        px[0:4] = struct.pack("<f", float("inf"))
        npy(d, {"train": ((7, 4, 4), f32(tr[1]), tr[2]), "test": ((3, 4, 4), bytes(px), te[2])}, img_tc="f4")

    @add("npy-big-endian", ["x_train.npy", "big-endian dtype '>f4'"])
    def _(d):
        npy(d, b)
        F.write(npy_img(d), F.npy_bytes("f4", (7, 4, 4), f32(tr[1]), descr=">f4"))

    @add("npy-fortran-order", ["x_train.npy", "Fortran-order"])
    def _(d):
        npy(d, b)
        F.write(npy_img(d), F.npy_bytes("u1", (7, 4, 4), tr[1], fortran=True))

    @add("npy-bad-magic", ["x_train.npy", "not a .npy file"])
    def _(d):
        npy(d, b)
        rewrite(npy_img(d), lambda x: b"\x93NUMPZ" + x[6:])

    @add("npy-malformed-dict", ["x_train.npy", "malformed header dict"])
    def _(d):
        npy(d, b)
        rewrite(npy_img(d), lambda x: x.replace(b"'shape': (7,", b"'shape': [7,", 1))

    @add("npy-2d-images", ["x_train.npy", "3 dimensions"])
    def _(d):
        npy(d, b)
        F.write(npy_img(d), F.npy_bytes("u1", (7, 16), tr[1]))

    @add("npy-ambiguous-layout", ["x_train.npy", "could be NHWC or NCHW", "layout"])
    def _(d):
        r = random.Random(1)
        sp = {s: ((n, 3, 5, 3), bytes(r.randrange(256) for _ in range(n * 45)), bytes(n))
              for s, n in (("train", 7), ("test", 3))}
        npy(d, sp)

    @add("npy-test-dims-differ", ["dimensions mismatch", "test images are 1x4x5"])
    def _(d):
        npy(d, {"train": tr, "test": ((3, 4, 5), bytes(60), te[2])})

    @add("npy-missing-file", ["y_test.npy", "not found"])
    def _(d):
        npy(d, b)
        os.unlink(os.path.join(d, "y_test.npy"))

    @add("npy-version-9", ["x_train.npy", "version 9.0"])
    def _(d):
        npy(d, b)
        rewrite(npy_img(d), lambda x: x[:6] + b"\x09\x00" + x[8:])

    # npz
    @add("npz-good", None)
    def _(d):
        F.write_npz(os.path.join(d, "small.npz"), b)

    @add("npz-truncated", ["small.npz", "not a readable zip"])
    def _(d):
        F.write_npz(os.path.join(d, "small.npz"), b)
        rewrite(os.path.join(d, "small.npz"), lambda x: x[:len(x) // 2])

    @add("npz-missing-entry", ["small.npz", "no entry y_test.npy"])
    def _(d):
        with zipfile.ZipFile(os.path.join(d, "small.npz"), "w") as z:
            for s in ("train", "test"):
                z.writestr("x_%s.npy" % s, F.npy_bytes("u1", b[s][0], b[s][1]))
            z.writestr("y_train.npy", F.npy_bytes("u1", (7,), tr[2]))

    @add("npz-crc", ["small.npz", "x_train.npy", "CRC"])
    def _(d):
        p = os.path.join(d, "small.npz")
        F.write_npz(p, b, compress=False)
        data = bytearray(open(p, "rb").read())
        i = data.find(tr[1][:16])
        data[i + 20] ^= 0x55     # a pixel of a stored entry: its CRC no longer matches
        F.write(p, bytes(data))

    @add("npz-label-out-of-range", ["small.npz: y_test.npy", "label 300 at index 1"])
    def _(d):
        F.write_npz(os.path.join(d, "small.npz"), {"train": (tr[0], tr[1], F.labels_as(tr[2], "i8")),
                                                  "test": (te[0], te[1], struct.pack("<3q", 0, 300, 1))},
                    lab_tc="i8")

    @add("npz-two-files", [".npz files"])
    def _(d):
        F.write_npz(os.path.join(d, "a.npz"), b)
        F.write_npz(os.path.join(d, "b.npz"), b)

    # safetensors
    st = lambda d, sp=b, **kw: F.write_st_dir(d, sp, **kw)  # noqa: E731

    @add("st-good", None)
    def _(d):
        st(d, {s: (v[0], v[1], F.labels_as(v[2], "i8")) for s, v in b.items()})

    @add("st-truncated", ["train.safetensors"])
    def _(d):
        st(d, {s: (v[0], v[1], F.labels_as(v[2], "i8")) for s, v in b.items()})
        rewrite(os.path.join(d, "train.safetensors"), lambda x: x[:-3])

    @add("st-no-labels", ["test.safetensors", "no tensor 'labels'"])
    def _(d):
        st(d, {s: (v[0], v[1], F.labels_as(v[2], "i8")) for s, v in b.items()})
        F.write(os.path.join(d, "test.safetensors"), F.st_bytes([("images", "u1", te[0], te[1])]))

    @add("st-float-labels", ["test.safetensors: tensor 'labels'", "classes (integers of shape (N)), but the training split has float targets"])
    def _(d):
        st(d, {s: (v[0], v[1], F.labels_as(v[2], "i8")) for s, v in b.items()})
        F.write(os.path.join(d, "train.safetensors"),
                F.st_bytes([("images", "u1", tr[0], tr[1]), ("labels", "f4", (7,), f32(tr[2]))]))

    @add("st-wrong-dtype-images", ["train.safetensors: tensor 'images'", "not int64"])
    def _(d):
        st(d, {s: (v[0], v[1], F.labels_as(v[2], "i8")) for s, v in b.items()})
        F.write(os.path.join(d, "train.safetensors"),
                F.st_bytes([("images", "i8", tr[0], F.labels_as(tr[1], "i8")),
                            ("labels", "i8", (7,), F.labels_as(tr[2], "i8"))]))

    @add("st-extra-tensor", ["train.safetensors", "unexpected tensor 'extra'"])
    def _(d):
        st(d, {s: (v[0], v[1], F.labels_as(v[2], "i8")) for s, v in b.items()})
        F.write(os.path.join(d, "train.safetensors"),
                F.st_bytes([("images", "u1", tr[0], tr[1]), ("labels", "i8", (7,), F.labels_as(tr[2], "i8")),
                            ("extra", "u1", (1,), b"\0")]))

    @add("st-header-lies", ["train.safetensors"])
    def _(d):
        st(d, {s: (v[0], v[1], F.labels_as(v[2], "i8")) for s, v in b.items()})
        rewrite(os.path.join(d, "train.safetensors"), lambda x: x.replace(b'"shape":[7,4,4]', b'"shape":[9,4,4]'))

    @add("st-counts-disagree", ["train.safetensors: tensor 'labels'", "count mismatch: 6 labels but 7 images"])
    def _(d):
        st(d, {s: (v[0], v[1], F.labels_as(v[2], "i8")) for s, v in b.items()})
        F.write(os.path.join(d, "train.safetensors"),
                F.st_bytes([("images", "u1", tr[0], tr[1]), ("labels", "i8", (6,), F.labels_as(tr[2][:6], "i8"))]))

    @add("st-label-out-of-range", ["test.safetensors: tensor 'labels'", "label 256 at index 2"])
    def _(d):
        st(d, {s: (v[0], v[1], F.labels_as(v[2], "i8")) for s, v in b.items()})
        F.write(os.path.join(d, "test.safetensors"),
                F.st_bytes([("images", "u1", te[0], te[1]), ("labels", "i8", (3,), struct.pack("<3q", 0, 1, 256))]))

    @add("st-nhwc-unstated", ["train.safetensors: tensor 'images'", "looks like NHWC", "layout"])
    def _(d):
        st(d, {s: ((v[0][0], 2, 8, 1), v[1], F.labels_as(v[2], "i8")) for s, v in b.items()})

    @add("st-nhwc-stated", None)
    def _(d):
        st(d, {s: ((v[0][0], 2, 8, 1), v[1], F.labels_as(v[2], "i8")) for s, v in b.items()})
        F.write_json(d, {"layout": "NHWC"})

    @add("st-nan-pixel", ["test.safetensors: tensor 'images'", "image 2 has a NaN pixel"])
    def _(d):
        px = bytearray(f32(te[1]))
        px[2 * 64:2 * 64 + 4] = struct.pack("<f", float("nan"))
        st(d, {"train": (tr[0], f32(tr[1]), F.labels_as(tr[2], "i8")),
               "test": (te[0], bytes(px), F.labels_as(te[2], "i8"))}, img_tc="f4")

    # CSV
    def csv(d, lines_train=None, lines_test=None, header=True):
        F.write_csv_dir(d, b, header=header)
        for split, lines in (("train", lines_train), ("test", lines_test)):
            if lines is not None:
                with open(os.path.join(d, split + ".csv"), "w") as f:
                    f.write("\n".join(lines) + "\n")

    def rows(split, n=None):
        shape, px, lab = b[split]
        return ["%d,%s" % (lab[i], ",".join(map(str, px[i * 16:(i + 1) * 16]))) for i in range(shape[0])][:n]

    @add("csv-good", None)
    def _(d):
        csv(d)

    @add("csv-ragged", ["train.csv", "line 3", "16 fields, expected 17"])
    def _(d):
        r = rows("train")
        r[2] = r[2].rsplit(",", 1)[0]
        csv(d, r)

    @add("csv-pixel-256", ["test.csv", "line 2", "field 5 '256' is not a pixel 0..255"])
    def _(d):
        r = rows("test")
        f = r[1].split(",")
        f[4] = "256"
        r[1] = ",".join(f)
        csv(d, None, r)

    @add("csv-bad-label", ["train.csv", "line 4", "label 'x' is not an integer"])
    def _(d):
        r = ["label," + ",".join("p%d" % i for i in range(16))] + rows("train")
        r[3] = "x" + r[3][1:]
        csv(d, r)

    @add("csv-not-square", ["train.csv", "15 pixels do not make a square image", "dataset.json"])
    def _(d):
        csv(d, [x.rsplit(",", 1)[0] for x in rows("train")])

    @add("csv-header-only", ["test.csv", "no images (only a header)"])
    def _(d):
        csv(d, None, ["label," + ",".join("p%d" % i for i in range(16))])

    @add("csv-float-nan", ["train.csv", "line 1", "not a finite number (NaN)"])
    def _(d):
        r = rows("train")
        r[0] = r[0].split(",", 1)[0] + ",nan" + r[0][r[0].index(",", 2):]
        csv(d, r)
        F.write_json(d, {"dtype": "float32"})

    @add("csv-label-beyond-names", ["train.csv", "line 5", "label '4' is not an integer 0..3", "class names"])
    def _(d):
        csv(d, rows("train"))
        F.write_json(d, {"classes": ["a", "b", "c", "d"]})

    @add("csv-empty-line", ["train.csv", "line 2: empty line"])
    def _(d):
        r = rows("train")
        csv(d, r[:1] + [""] + r[1:])

    # dataset.json
    @add("json-invalid", ["dataset.json", "not valid JSON"])
    def _(d):
        npy(d, b)
        F.write(os.path.join(d, "dataset.json"), b"{\"classes\": [")

    @add("json-unknown-key", ["dataset.json", "unknown key \"colour\""])
    def _(d):
        npy(d, b)
        F.write_json(d, {"colour": 1})

    @add("json-std-zero", ["dataset.json", "\"std\"[0] = 0 is not a positive number"])
    def _(d):
        npy(d, b)
        F.write_json(d, {"mean": [0.5], "std": [0]})

    @add("json-mean-count", ["dataset.json", "have 3 values but the images have 1 channels"])
    def _(d):
        npy(d, b)
        F.write_json(d, {"mean": [0.5, 0.5, 0.5], "std": [1, 1, 1]})

    @add("json-duplicate-names", ["dataset.json", "\"classes\"[2] \"a\" is also \"classes\"[0]"])
    def _(d):
        npy(d, b)
        F.write_json(d, {"classes": ["a", "b", "a", "c", "d"]})

    @add("json-dtype-disagrees", ["dataset.json", "says dtype float32 but the images are uint8"])
    def _(d):
        npy(d, b)
        F.write_json(d, {"dtype": "float32"})

    @add("json-bad-layout", ["dataset.json", "\"layout\" must be"])
    def _(d):
        npy(d, b)
        F.write_json(d, {"layout": "HWC"})

    # the directory
    @add("dir-two-formats", ["files of two formats", "npy", "csv"])
    def _(d):
        npy(d, b)
        F.write_csv_dir(d, b)

    @add("dir-empty", ["no dataset files"])
    def _(d):
        os.makedirs(d, exist_ok=True)
    return cs


def main():
    w = tempfile.mkdtemp(prefix="traind-formats-bad-", dir=os.environ.get("TRAIND_TEST_TMP"))
    try:
        for name, fn, words in cases():
            d = os.path.join(w, name)
            os.makedirs(d)
            fn(d)
            rc, err = tt(d)
            if words is None:
                check(rc == 0, "%s: loads and trains (rc %d %s)" % (name, rc, err[:200]))
                continue
            lines = err.splitlines()
            check(rc != 0 and len(lines) == 1 and all(x in lines[0] for x in words),
                  "%s: refused with %s (rc %d: %s)" % (name, words, rc, err[:300]))
    finally:
        subprocess.run(["rm", "-rf", w])


if __name__ == "__main__":
    run(main)
