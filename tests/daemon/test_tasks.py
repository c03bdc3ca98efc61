#!/usr/bin/env python3
"""Losses, float targets, augmentation and the CIFAR-10 format through traind,
as a user drives it (trainctl on a real socket, real SQLite):

- a regression on scripts/sklearn-data's diabetes, imported with `trainctl
  dataset import`: loss mse, monitor val_rmse with early stopping; history
  has val_mae/val_rmse and null accuracies (absent from the table), status
  the best epoch by val_rmse, eval --split test gives mae/rmse, predict on
  a CSV of feature rows gives the model's values (checked against PyTorch
  on the export), plot --metric rmse draws and --metric acc is refused;
- a multi-label job on a small generated CSV set (0/1 targets named in
  dataset.json), bce_with_logits with pos_weight: per-label accuracy,
  macro null, eval --per-class names the labels, predict gives each label's
  probability;
- lenet5 with random_crop + random_horizontal_flip paused mid-epoch and
  resumed ends bit-identical to the same job never paused;
- CIFAR-10 binary files (generated) imported and trained with augmentation;
  a truncated batch file refused naming it;
- refused, naming the field, with nothing stored: cross_entropy on float
  targets, an augment SPEC with an unknown transform (in trainctl and on the
  wire) or a crop larger than image + padding, class_weights of the wrong
  length, a monitor of another task.
"""
import json
import math
import os
import random
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import Daemon, check, run  # noqa: E402
from dsdata import write_small_mnist  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SKLEARN_DATA = os.path.join(HERE, "..", "..", "scripts", "sklearn-data")
TORCH_DIR = os.path.join(HERE, "..", "torch")

REFERENCE = r"""
import json, sys
import torch
sys.path.insert(0, sys.argv[1])
import st
w, _ = st.load(sys.argv[2])
rows = [[float(v) for v in ln.split(",")] for ln in open(sys.argv[3]).read().splitlines()[1:] if ln]
x = torch.tensor(rows, dtype=torch.float32)
h = torch.relu(x @ w["net.1.weight"].T + w["net.1.bias"])
print(json.dumps((h @ w["net.3.weight"].T + w["net.3.bias"]).double().tolist()))
"""


def jobs_count(d):
    return len(d.ctl_json("list"))


def refused(d, what, call_config, key):
    """A Start with this config is refused naming config.<key>; no job is stored."""
    before = d.sql("SELECT count(*) FROM jobs")[0][0]
    r = d.call("io.traind.Start", {"config": call_config})
    p = r.get("parameters", {})
    check(r.get("error") == "org.varlink.service.InvalidParameter" and p.get("parameter") == "config." + key,
          "%s: refused naming config.%s (%s)" % (what, key, p.get("message", r)))
    check(d.sql("SELECT count(*) FROM jobs")[0][0] == before, "%s: nothing stored" % what)
    return p.get("message", "")


def regression(d, work):
    stage = os.path.join(work, "stage")
    subprocess.run([sys.executable, SKLEARN_DATA, "--only", "diabetes", stage], check=True, capture_output=True)
    src = os.path.join(stage, "diabetes")
    files = [os.path.join(src, f) for f in ("train.csv", "test.csv", "dataset.json")]
    ds = d.ctl_json("dataset", "import", "diabetes", *files)
    check(ds.get("targets") == "values" and ds.get("target_width") == 1 and ds.get("target_names") == ["target"]
          and ds.get("shape") == [1, 1, 10] and ds.get("train") == 354,
          "dataset import: diabetes has float targets named 'target', 10 features (%s)"
          % {k: ds.get(k) for k in ("targets", "target_width", "target_names", "shape", "train")})

    msg = refused(d, "cross_entropy on float targets", {"dataset": "diabetes", "val_size": 88}, "loss")
    check("cross_entropy needs class labels; dataset 'diabetes' has float targets" in msg,
          "the message says why: %s" % msg)
    msg = refused(d, "monitor val_acc for a regression",
                  {"dataset": "diabetes", "val_size": 88, "loss": "mse", "monitor": "val_acc"}, "monitor")
    check("not a metric of regression" in msg, "the message says why: %s" % msg)

    # early stopping by val_rmse: an improvement must beat the best by more
    # than 1000, so after epoch 1 none does: stopped after epoch 4
    job = d.start_job("--dataset", "diabetes", "--loss", "mse", "--val-size", "88", "--batch-size", "32",
                      "--lr", "0.01", "--hidden", "64", "--epochs", "20", "--monitor", "val_rmse",
                      "--early-stop-patience", "3", "--early-stop-min-delta", "1000")
    rc, out, err = d.wait(job, "--state", "done")
    check(rc == 0, "the regression job ends done (%s)" % err.strip())
    h = d.history(job)
    check(len(h) == 4 and "stopped early after epoch 4: val_rmse has not improved" in h[-1]["note"],
          "early stopping by val_rmse after epoch 4 (%d rows; %s)" % (len(h), h[-1]["note"] if h else ""))
    check(all(r["train_acc"] is None and r["val_acc"] is None and r["val_macro_acc"] is None and
              r["train_macro_acc"] is None for r in h), "history JSON: the accuracies are null")
    check(all(isinstance(r["val_mae"], float) and isinstance(r["val_rmse"], float) and
              r["val_rmse"] >= r["val_mae"] > 0 for r in h), "history JSON: val_mae and val_rmse")
    st = d.status(job)
    check(st.get("monitor") == "val_rmse" and st.get("best_epoch") == min(range(1, 5), key=lambda e: h[e - 1]["val_rmse"])
          and "val_acc" not in st, "status: the best epoch by val_rmse (%s)" % st.get("best_epoch"))
    rc, table, err = d.ctl("history", job)
    head = table.splitlines()[0].split()
    check("val_rmse" in head and "val_mae" in head and "train_acc" not in head and "val_acc" not in head,
          "the history table: val_mae and val_rmse, no accuracy columns (%s)" % " ".join(head))
    rc, csv, err = d.ctl("history", job, "--csv")
    check(csv.splitlines()[0].endswith(",lr,grad_norm,val_mae,val_rmse,val_ppl"),
          "the CSV adds val_mae,val_rmse (and a language model's val_ppl) last")
    ev = d.ctl_json("eval", job, "--split", "test")
    check(ev.get("task") == "regression" and ev.get("acc") is None and ev.get("macro_acc") is None and
          ev.get("rmse", 0) > 0 and ev.get("mae", 0) > 0 and ev.get("count") == 88,
          "eval --split test: task regression, mae %s, rmse %s, acc null" % (ev.get("mae"), ev.get("rmse")))
    check(abs(ev["loss"] - ev["rmse"] ** 2) <= 0.2 * ev["loss"], "eval: the mse loss is about rmse^2")
    rc, out, err = d.ctl("eval", job)
    check(" mae " in out and " rmse " in out and " acc " not in out, "eval's line: %s" % out.strip())

    rows = os.path.join(work, "rows.csv")
    with open(os.path.join(src, "test.csv")) as f:
        lines = f.read().splitlines()
    with open(rows, "w") as f:
        f.write(",".join(lines[0].split(",")[:-1]) + "\n")
        for ln in lines[1:6]:
            f.write(",".join(ln.split(",")[:-1]) + "\n")
    got = d.ctl_json("predict", job, rows)
    check(len(got) == 5 and all(len(g["values"]) == 1 and "class" not in g for g in got),
          "predict on 5 rows of features: a value each (%s)" % [g.get("values") for g in got])
    export = d.export_file(job)
    p = subprocess.run(["/usr/bin/python3", "-c", REFERENCE, TORCH_DIR, export, rows], capture_output=True,
                       text=True, timeout=300)
    ref = json.loads(p.stdout) if p.returncode == 0 else None
    check(ref is not None and all(abs(g["values"][0] - r[0]) <= 1e-4 * max(1, abs(r[0])) for g, r in zip(got, ref)),
          "the values are PyTorch's on the export (%s / %s)" % ([g["values"][0] for g in got][:2],
                                                               (ref or [None])[:2]))
    rc, out, err = d.ctl("predict", job, rows)
    check(rc == 0 and out.count("value") == 5, "predict's text: a value per row (%s)" % out.splitlines()[0])
    bad = os.path.join(work, "bad.csv")
    with open(bad, "w") as f:
        f.write("1,2,3\n")
    rc, out, err = d.ctl("predict", job, bad, check_rc=False)
    check(rc == 1 and "bad.csv: line 1: 3 values, the model takes 10" in err, "a short row refused: %s" % err.strip())
    svg = os.path.join(work, "rmse.svg")
    d.ctl("plot", job, "--metric", "rmse", "-o", svg)
    check(os.path.getsize(svg) > 1000 and "val" in open(svg).read(), "plot --metric rmse draws the val RMSE")
    rc, out, err = d.ctl("plot", job, "--metric", "acc", "-o", svg, check_rc=False)
    check(rc == 1 and "has no train_acc" in err, "plot --metric acc of a regression: refused (%s)" % err.strip())
    return job


def multilabel(d, work):
    rnd = random.Random(3)
    src = os.path.join(work, "tags")
    os.makedirs(src)
    for name, n in (("train.csv", 400), ("test.csv", 100)):
        with open(os.path.join(src, name), "w") as f:
            f.write("x0,x1,x2,x3,x4,x5,red,round,big\n")
            for _ in range(n):
                x = [rnd.uniform(-1, 1) for _ in range(6)]
                y = [int(x[0] > 0), int(x[1] + x[2] > 0), int(x[3] > 0.5)]
                f.write(",".join("%.6f" % v for v in x) + "," + ",".join(map(str, y)) + "\n")
    with open(os.path.join(src, "dataset.json"), "w") as f:
        json.dump({"targets": ["red", "round", "big"], "dtype": "float32"}, f)
    ds = d.ctl_json("dataset", "import", "tags", *[os.path.join(src, n) for n in ("train.csv", "test.csv",
                                                                                    "dataset.json")])
    check(ds.get("targets") == "binary" and ds.get("target_width") == 3, "tags: 0/1 targets (%s)" % ds.get("targets"))
    msg = refused(d, "class_weights on a multi-label loss", {"dataset": "tags", "val_size": 100,
                                                             "loss": "bce_with_logits", "class_weights": [1, 2, 3]},
                  "class_weights")
    msg = refused(d, "pos_weight of the wrong length", {"dataset": "tags", "val_size": 100,
                                                        "loss": "bce_with_logits", "pos_weight": [1, 2]}, "pos_weight")
    check("2 values, but dataset 'tags' has 3 labels" in msg, "the message counts them: %s" % msg)
    job = d.start_job("--dataset", "tags", "--loss", "bce_with_logits", "--pos-weight", "1,1.5,2", "--val-size",
                      "100", "--batch-size", "20", "--lr", "0.01", "--hidden", "32", "--epochs", "8",
                      "--monitor", "val_acc")
    rc, out, err = d.wait(job, "--state", "done")
    check(rc == 0, "the multi-label job ends done (%s)" % err.strip())
    h = d.history(job)
    check(all(isinstance(r["val_acc"], float) and r["val_macro_acc"] is None and r.get("val_mae") is None for r in h),
          "history: per-label accuracy in val_acc, macro null, no val_mae")
    check(h[-1]["val_acc"] > 0.8, "it learned the labels (per-label accuracy %.3f)" % h[-1]["val_acc"])
    ev = d.ctl_json("eval", job, "--split", "test", "--per-class")
    names = [r.get("name") for r in ev.get("per_class", [])]
    check(ev.get("task") == "multi-label" and names == ["red", "round", "big"] and
          all(r["count"] == 100 for r in ev["per_class"]),
          "eval --per-class: a row per label, named (%s)" % names)
    want = sum(r["correct"] for r in ev["per_class"]) / 300
    check(abs(ev["acc"] - want) < 1e-12, "eval's acc is the per-label accuracy: correct (sample, label) pairs / 300")
    rows = os.path.join(work, "tag-rows.csv")
    with open(rows, "w") as f:
        f.write("0.9,0.5,0.5,0.9,0,0\n-0.9,-0.5,-0.5,-0.9,0,0\n")
    got = d.ctl_json("predict", job, rows)
    check(len(got) == 2 and all(len(g["values"]) == 3 and all(0 <= v <= 1 for v in g["values"]) for g in got) and
          got[0]["labels"] == [0, 1, 2] and got[1]["labels"] == [],
          "predict: each label's probability and the labels above 0.5 (%s)" % [g.get("labels") for g in got])


def augmented_pause_resume(d):
    args = ["--dataset", "small", "--model", "lenet5", "--train-size", "4000", "--val-size", "1000",
            "--batch-size", "16", "--epochs", "2", "--augment", "random_crop(28,padding=2),random_horizontal_flip(0.5)"]
    ref = d.start_job(*args)
    rc, out, err = d.wait(ref, "--state", "done")
    check(rc == 0, "the augmented lenet5 reference ends done (%s)" % err.strip())
    plain = d.start_job(*args[:-2])
    job = d.start_job(*args)
    d.wait(plain, "--state", "done")
    j = d.wait_running_at(job, epoch=0, min_step=40)
    rc, out, err = d.ctl("pause", job, check_rc=False)
    st = d.status(job)
    check(rc == 0 and st["state"] == "paused" and st["epoch"] == 0 and st["step"] > 0,
          "paused mid-epoch 1 at step %s" % st.get("step"))
    d.ctl("resume", job)
    rc, out, err = d.wait(job, "--state", "done")
    check(rc == 0, "the resumed job ends done")
    check(d.export_sha(job) == d.export_sha(ref), "paused mid-epoch and resumed: bit-identical to never pausing")
    check(d.export_sha(plain) != d.export_sha(ref), "(and augmentation changed what it learned)")
    ha, hb = d.history(job), d.history(ref)
    check([r["val_loss"] for r in ha] == [r["val_loss"] for r in hb], "the same history")


def cifar(d, work):
    rnd = random.Random(5)
    src = os.path.join(work, "cifar-files")
    os.makedirs(src)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

    def batch(path, n):
        out = bytearray()
        for _ in range(n):
            lab = rnd.randrange(10)
            out.append(lab)
            for c in range(3):
                out += bytes(min(255, lab * 20 + c * 8 + rnd.randrange(30)) for _ in range(1024))
        with open(path, "wb") as f:
            f.write(out)
    batch(os.path.join(src, "data_batch_1.bin"), 200)
    batch(os.path.join(src, "data_batch_2.bin"), 150)
    batch(os.path.join(src, "test_batch.bin"), 100)
    with open(os.path.join(src, "batches.meta.txt"), "w") as f:
        f.write("\n".join(names) + "\n\n")
    files = [os.path.join(src, n) for n in ("data_batch_1.bin", "data_batch_2.bin", "test_batch.bin",
                                            "batches.meta.txt")]
    ds = d.ctl_json("dataset", "import", "cifar-small", *files)
    check(ds.get("format") == "cifar" and ds.get("shape") == [3, 32, 32] and ds.get("train") == 350 and
          ds.get("test") == 100 and ds.get("classes") == 10 and ds.get("class_names") == names,
          "CIFAR-10 files imported: format cifar, 350/100 images of 3x32x32, the 10 names (%s)"
          % {k: ds.get(k) for k in ("format", "shape", "train", "test", "classes")})
    bad = os.path.join(work, "cifar-bad")
    os.makedirs(bad)
    for n in ("data_batch_1.bin", "test_batch.bin"):
        shutil.copy(os.path.join(src, n), bad)
    with open(os.path.join(bad, "data_batch_1.bin"), "r+b") as f:
        f.truncate(3073 * 10 + 100)
    rc, out, err = d.ctl("dataset", "import", "cifar-bad", *[os.path.join(bad, n) for n in os.listdir(bad)],
                         check_rc=False)
    check(rc == 1 and "data_batch_1.bin" in err and "not a whole number of 3073-byte records" in err,
          "a truncated batch file is refused naming it (%s)" % err.strip())
    check("cifar-bad" not in [x["name"] for x in d.ctl_json("datasets")], "and not stored")
    msg = refused(d, "a crop larger than the image and its padding",
                  {"dataset": "cifar-small", "val_size": 50, "model": "lenet5", "augment": "random_crop(40,padding=2)"},
                  "augment")
    check("larger than the 32x32 images padded to 36x36" in msg, "the message gives the sizes: %s" % msg)
    job = d.start_job("--dataset", "cifar-small", "--val-size", "50", "--model", "lenet5", "--epochs", "2",
                      "--batch-size", "25", "--augment", "random_crop(32,padding=4),random_horizontal_flip(0.5)")
    rc, out, err = d.wait(job, "--state", "done")
    h = d.history(job)
    check(rc == 0 and len(h) == 2 and all(math.isfinite(r["train_loss"]) for r in h),
          "lenet5 with augmentation trains on the CIFAR files (%s)" % [round(r["train_loss"], 3) for r in h])


def main():
    work = os.path.abspath(os.path.join(os.environ.get("TMPDIR", "/tmp"), "traind-tasks-%d" % os.getpid()))
    data = os.path.join(work, "data")
    write_small_mnist(os.path.join(data, "small"), n_train=5000, n_test=500)
    d = Daemon(max_running=1, data_dir=data).start()

    # the flag is checked before the daemon sees it
    rc, out, err = d.ctl("start", "--augment", "random_rotation(10)", check_rc=False)
    check(rc == 2 and err.startswith("trainctl: --augment:") and "unknown transform 'random_rotation'" in err,
          "trainctl start --augment with an unknown transform: a usage error naming the flag (%s)" % err.strip())
    refused(d, "an unknown augment transform on the wire", {"dataset": "small", "augment": "random_rotation(10)"},
            "augment")
    refused(d, "an unknown loss", {"dataset": "small", "loss": "hinge"}, "loss")
    msg = refused(d, "class_weights of the wrong length", {"dataset": "small", "val_size": 1000,
                                                           "class_weights": [1, 2, 3]}, "class_weights")
    check("3 values, but dataset 'small' has 10 classes" in msg, "the message counts them: %s" % msg)

    regression(d, work)
    multilabel(d, work)
    augmented_pause_resume(d)
    cifar(d, work)
    check(d.alive(), "traind is still up")
    d.cleanup()
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    run(main)
