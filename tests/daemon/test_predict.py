#!/usr/bin/env python3
"""trainctl predict: classes and probabilities for images the client passes as
open files (PGM, PNG, an IDX image file), computed by the stored model in eval
mode off the loop. They agree with PyTorch (/usr/bin/python3) running the
job's export on the same images, in eval mode (BatchNorm's running statistics,
no Dropout). Images of the wrong size are refused with ImageSizeMismatch
unless --resize; broken files get ImageError naming the file; traind stays up."""
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import zlib

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import Daemon, check, run  # noqa: E402
from dsdata import idx_images, mnist_split, write_small_mnist  # noqa: E402

MODEL = "flatten,linear(128),batchnorm1d,relu,dropout(0.2),linear(10)"
TORCH_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "torch")

REFERENCE = r"""
import json, sys
import torch
sys.path.insert(0, sys.argv[1])
import st
model, tensors, images = sys.argv[2], sys.argv[3], sys.argv[4]
w, _ = st.load(tensors)
net = st.sequential(model, (1, 28, 28))
net.load_state_dict({k[len("net."):]: v for k, v in w.items()}, strict=True)
net.eval()
raw = open(images, "rb").read()
x = torch.frombuffer(bytearray(raw), dtype=torch.uint8).reshape(-1, 1, 28, 28).float() / 255
if len(sys.argv) > 6:   # torchvision's Normalize(mean, std), as dataset.json asks
    x = (x - float(sys.argv[5])) / float(sys.argv[6])
with torch.no_grad():
    p = torch.softmax(net(x).double(), dim=1)
print(json.dumps(p.tolist()))
"""


def pgm(path, px, w, h):
    with open(path, "wb") as f:
        f.write(b"P5\n# written by test_predict\n%d %d\n255\n" % (w, h) + px)


def chunk(kind, data):
    """A PNG chunk: length, type, data, CRC."""
    c = kind + data
    return struct.pack(">I", len(data)) + c + struct.pack(">I", zlib.crc32(c) & 0xffffffff)


def png(path, px, w, h, rgb=False):
    rows = b""
    for y in range(h):
        line = px[y * w:(y + 1) * w]
        rows += b"\0" + (bytes(v for v in line for _ in range(3)) if rgb else line)
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2 if rgb else 0, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows)) +
                chunk(b"IEND", b""))


def main():
    work = os.path.abspath(os.path.join(os.environ.get("TMPDIR", "/tmp"), "traind-pred-%d" % os.getpid()))
    data = os.path.join(work, "data")
    write_small_mnist(os.path.join(data, "small"))
    d = Daemon(max_running=1, data_dir=data).start()
    job = d.start_job("--dataset", "small", "--model", MODEL, "--train-size", "4000", "--val-size", "1000",
                      "--epochs", "2")
    rc, out, err = d.wait(job, "--state", "done")
    check(rc == 0, "the job trains (%s)" % err.strip())
    export = d.export_file(job)

    # 24 test images: 8 PGM, 8 grey PNG, 8 RGB PNG (grey values in all three channels)
    px, labels, h, w = mnist_split("t10k", 64)
    img = [px[i * 784:(i + 1) * 784] for i in range(64)]
    files = []
    for i in range(24):
        p = os.path.join(work, "img%02d.%s" % (i, "pgm" if i < 8 else "png"))
        (pgm if i < 8 else png)(p, img[i], 28, 28, **({"rgb": True} if i >= 16 else {}))
        files.append(p)
    idx = os.path.join(work, "t10k-64-idx3-ubyte")
    with open(idx, "wb") as f:
        f.write(idx_images(px, 64, 28, 28))
    raw = os.path.join(work, "raw")
    with open(raw, "wb") as f:
        f.write(px)

    got = d.ctl_json("predict", job, *files, idx, "--top", "3")
    check(len(got) == 24 + 64, "one prediction per image: 24 files + 64 in the IDX file (%d)" % len(got))
    check([g["file"] for g in got[:24]] == [os.path.basename(f) for f in files] and
          [g["index"] for g in got[24:]] == list(range(64)), "in order, named by file and index")
    check(all(len(g["top"]) == 3 and g["top"][0]["class"] == g["class"] and g["top"][0]["prob"] == g["prob"]
              and g["top"][0]["prob"] >= g["top"][1]["prob"] >= g["top"][2]["prob"] for g in got),
          "--top 3: three classes, best first")
    p = subprocess.run(["/usr/bin/python3", "-c", REFERENCE, TORCH_DIR, d.status(job)["model"], export, raw],
                       capture_output=True, text=True, timeout=300)
    check(p.returncode == 0, "PyTorch runs the export (%s)" % p.stderr.strip()[-300:])
    ref = json.loads(p.stdout) if p.returncode == 0 else []
    if ref:
        mine = [g["class"] for g in got[24:]]
        theirs = [max(range(10), key=lambda c: r[c]) for r in ref]
        check(mine == theirs, "the IDX file's 64 classes are PyTorch's in eval mode")
        check([g["class"] for g in got[:24]] == theirs[:24], "the PGM and PNG files' classes are too")
        worst = max(abs(g["prob"] - ref[i if i < 24 else i - 24][g["class"]]) for i, g in enumerate(got))
        check(worst < 1e-4, "probabilities within 1e-4 of PyTorch's (worst %.2g)" % worst)
        acc = sum(m == labels[i] for i, m in enumerate(mine)) / 64
        check(acc > 0.7, "and mostly right (%.2f of the 64)" % acc)
    ev = d.ctl_json("eval", job, "--split", "test")
    check(ev.get("acc", 0) > 0.7, "eval agrees that the model is good (test acc %s)" % ev.get("acc"))
    rc, out, err = d.ctl("predict", job, files[0], files[8])
    check(rc == 0 and len(out.strip().splitlines()) == 2 and "class %d" % got[0]["class"] in out,
          "the text form: a line per image (%s)" % out.strip().splitlines()[:1])
    one = d.ctl_json("predict", job, files[0], "--epoch", "1")
    check(len(one) == 1 and len(one[0]["top"]) == 3, "--epoch 1 uses that epoch's checkpoint")

    # ---- a dataset with class names and normalisation (dataset.json); --best ----
    names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    named = os.path.join(data, "named")
    shutil.copytree(os.path.join(data, "small"), named)
    with open(os.path.join(named, "dataset.json"), "w") as f:
        json.dump({"classes": names, "mean": [0.1307], "std": [0.3081]}, f)
    nj = d.start_job("--dataset", "named", "--model", MODEL, "--train-size", "2000", "--val-size", "1000",
                     "--epochs", "2")
    rc, out, err = d.wait(nj, "--state", "done")
    check(rc == 0, "a job on the named, normalised dataset trains (%s)" % err.strip())
    best = d.status(nj).get("best_epoch")
    got2 = d.ctl_json("predict", nj, idx, "--best")
    check(len(got2) == 64 and all(g["name"] == names[g["class"]] and
                                  all(t["name"] == names[t["class"]] for t in g["top"]) for g in got2),
          "predict names each class from dataset.json")
    p = subprocess.run(["/usr/bin/python3", "-c", REFERENCE, TORCH_DIR, d.status(nj)["model"],
                        d.export_file(nj, epoch=best, name="best.safetensors"), raw, "0.1307", "0.3081"],
                       capture_output=True, text=True, timeout=300)
    ref2 = json.loads(p.stdout) if p.returncode == 0 else []
    check(p.returncode == 0 and [g["class"] for g in got2] == [max(range(10), key=lambda c: r[c]) for r in ref2]
          and max(abs(g["prob"] - ref2[i][g["class"]]) for i, g in enumerate(got2)) < 1e-4,
          "--best: PyTorch's classes and probabilities on the best epoch's export, images normalised as "
          "dataset.json says (%s)" % p.stderr.strip()[-200:])
    rc, out, err = d.ctl("predict", nj, files[0])
    check(rc == 0 and "class %d (%s)" % (got[0]["class"], names[got[0]["class"]]) in out or
          re.search(r"class \d \((zero|one|two|three|four|five|six|seven|eight|nine)\)", out) is not None,
          "the text form names the class (%s)" % out.strip())
    rc, out, err = d.ctl("predict", nj, files[0], "--best", "--epoch", "1", check_rc=False)
    check(rc == 2 and "--best" in err, "predict --best --epoch is a usage error (%s)" % err.strip())

    # ---- refusals ----
    small = os.path.join(work, "small.pgm")
    pgm(small, bytes(range(200)) * 2, 20, 20)
    rc, out, err = d.ctl("predict", job, small, check_rc=False)
    check(rc == 1 and "small.pgm: its images are 20x20, the model takes 28x28" in err and "--resize" in err,
          "a 20x20 image is refused, naming both sizes and --resize (%s)" % err.strip())
    r = d.ctl_json("predict", job, small, "--resize")
    check(len(r) == 1 and 0 <= r[0]["class"] < 10, "with --resize it is scaled and classified")
    for name, content, want in (("junk.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "not a valid PNG"),
                                ("cut.png", open(files[8], "rb").read()[:60], "not a valid PNG"),
                                ("text.txt", b"hello", "not a PGM (P5/P2), PNG or IDX image file"),
                                ("bad.pgm", b"P5\n28 28\n255\n" + b"\0" * 100, "ends after 100 of its 28x28"),
                                # issue 21: each of these named no problem before
                                ("huge.pgm", b"P5\n100000 100000\n255\n" + b"\0" * 10,
                                 "a PGM of 100000x100000 pixels, larger than 4096x4096"),
                                ("range.pgm", b"P2\n2 1\n255\n12 300\n", "pixel 1 is 300, above the maximum 255"),
                                ("huge.png", b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 20000,
                                                                                       8, 0, 0, 0, 0)),
                                 "a PNG of 20000x20000 pixels, larger than 4096x4096"),
                                ("lie.idx", idx_images(px[:784 * 2], 3, 28, 28), "need 2368 bytes")):
        path = os.path.join(work, name)
        with open(path, "wb") as f:
            f.write(content)
        rc, out, err = d.ctl("predict", job, path, check_rc=False)
        check(rc == 1 and name in err and want in err, "%s: refused naming it: %s" % (name, err.strip()))
    rc, out, err = d.ctl("predict", job, "--epoch", "9", files[0], check_rc=False)
    check(rc == 1 and "no such checkpoint" in err, "an epoch it does not have (%s)" % err.strip())
    r = d.call("io.traind.Predict", {"id": job, "files": [{"name": "x"}]})
    check(r.get("error") == "org.varlink.service.InvalidParameter" and "0 file descriptors" in json.dumps(r),
          "no descriptor passed: refused (%s)" % r.get("parameters"))
    check(d.alive(), "traind is still up")
    d.cleanup()
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    run(main)
