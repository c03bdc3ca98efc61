#!/usr/bin/env python3
"""Dataset formats through traind: a job on MNIST converted to one NAME.npz
trains through the daemon and ends bit-identical (the exported model) to the
same job on the IDX files; after a restart, the recovered job's model and
parameter count come from the npz's headers again (dataset_probe); a
100-class safetensors dataset gets an MLP ending in 100 outputs, and a job on
it paused mid-epoch and resumed ends bit-identical to one never paused; a malformed
dataset is refused at start with its named DatasetError; eval --per-class
shows the class names of the dataset's dataset.json (the file and the
problem) while traind stays up and serves the other jobs."""
import os
import time
import random
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
from harness import DATA, Daemon, check, run  # noqa: E402
import dsformats as F  # noqa: E402

NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
CFG = ["--train-size", "2000", "--val-size", "1000", "--epochs", "2"]


def make_data(root):
    os.makedirs(root)
    os.makedirs(os.path.join(root, "mnist"))
    for f in os.listdir(os.path.join(DATA, "mnist")):    # the files (a directory link out is refused)
        os.symlink(os.path.join(os.path.abspath(DATA), "mnist", f), os.path.join(root, "mnist", f))
    mnist = F.load_idx_dir(os.path.join(DATA, "mnist"))
    F.write_npz(os.path.join(root, "mnist-npz", "mnist.npz"),
                {s: ((v[0], v[1], v[2]), v[3], v[4]) for s, v in mnist.items()})
    F.write_json(os.path.join(root, "mnist-npz"), {"classes": NAMES})
    r = random.Random(3)
    sp = {}
    for split, per in (("train", 30), ("test", 5)):
        n = per * 100
        px = bytes(r.randrange(60) + (190 if j == i % 100 else 0) for i in range(n) for j in range(100))
        sp[split] = ((n, 10, 10), px, F.labels_as(bytes(i % 100 for i in range(n)), "i8"))
    F.write_st_dir(os.path.join(root, "c100"), sp)
    bad = {s: ((v[0][0], 4, 4), bytearray(struct.pack("<%df" % (v[0][0] * 16), *([0.5] * v[0][0] * 16))), v[2][:v[0][0]])
           for s, v in (("train", ((20,), 0, bytes(20))), ("test", ((5,), 0, bytes(5))))}
    bad["train"][1][7 * 64 + 8:7 * 64 + 12] = struct.pack("<f", float("nan"))
    F.write_npy_dir(os.path.join(root, "broken"), {s: (v[0], bytes(v[1]), v[2]) for s, v in bad.items()},
                    img_tc="f4")


def main():
    d = Daemon(max_running=2)
    root = os.path.join(d.dir, "data")
    make_data(root)
    d.data_dir = root
    d.start()
    a = d.start_job("--dataset", "mnist", *CFG)
    b = d.start_job("--dataset", "mnist-npz", *CFG)
    # hidden 512: an epoch of 437 small steps takes a while even on a quiet
    # machine (with 32 it took ~30 ms, and the poll below could miss it)
    c100 = ["--dataset", "c100", "--val-size", "500", "--epochs", "3", "--hidden", "512", "--batch-size", "8"]
    c = d.start_job(*c100)
    deadline = time.time() + 300
    while time.time() < deadline:   # running, some steps into an epoch before the last
        j = d.job(c)
        if j["state"] != "queued" and (j["state"] != "running" or (j["step"] >= 1 and j["epoch"] < 2)):
            break
        time.sleep(0.002)
    check(j["state"] == "running", "the 100-class job is caught while it trains (%s)"
          % {k: j.get(k) for k in ("state", "epoch", "step")})
    d.ctl("pause", c)
    rc, out, err = d.wait(c, "--state", "paused")
    j = d.job(c)
    check(rc == 0, "the 100-class job pauses (at epoch %d step %d)" % (j["epoch"], j["step"]))
    d.ctl("resume", c)
    c_ref = d.start_job(*c100)
    rc, out, err = d.ctl("start", "--dataset", "broken", "--val-size", "5", "--epochs", "1", check_rc=False)
    check(rc != 0 and "dataset error: broken" in err and "x_train.npy" in err and "image 7 has a NaN pixel" in err,
          "a dataset with a NaN pixel is refused with its DatasetError (%s)" % err.strip())
    r = d.call("io.traind.Start", {"config": {"dataset": "broken", "val_size": 5, "epochs": 1}})
    check(r.get("error") == "io.traind.DatasetError" and r["parameters"].get("dataset") == "broken"
          and "NaN" in r["parameters"].get("message", ""), "... over varlink: io.traind.DatasetError (%s)" % r)
    for j in (a, b, c, c_ref):
        rc, out, err = d.wait(j, "--state", "done")
        check(rc == 0, "job %d finishes (%s)" % (j, err.strip()))
    check(d.export_sha(a) == d.export_sha(b), "the npz job's model is bit-identical to the IDX job's")
    check(d.export_sha(c) == d.export_sha(c_ref),
          "100 classes: paused mid-epoch (per-class counts of 100 classes in the checkpoint) and resumed, "
          "bit-identical to never pausing")
    st = d.status(c)
    check(st.get("model") == "flatten,linear(512),relu,linear(100)", "100 classes: the MLP ends in 100 outputs (%s)"
          % st.get("model"))
    check(st.get("params") == 100 * 512 + 512 + 512 * 100 + 100, "... with its parameter count (%s)" % st.get("params"))
    ev = d.ctl_json("eval", b, "--split", "test", "--per-class")
    rows = ev.get("per_class") or []
    check([r.get("name") for r in rows] == NAMES and sum(r["count"] for r in rows) == 10000
          and sum(r["correct"] for r in rows) == round(ev["acc"] * 10000),
          "eval --per-class: a row per class with the dataset's names, counts adding up (%s)" % rows[:2])
    rc, out, err = d.ctl("eval", b, "--split", "test", "--per-class")
    check("seven" in out and len(out.splitlines()) == 12, "... and as a table (%s)" % out[:300])
    ev = d.ctl_json("eval", c, "--per-class")
    check(len(ev.get("per_class") or []) == 100 and "name" not in ev["per_class"][0],
          "a dataset without names: 100 rows without names")
    params_b = d.status(b).get("params")
    check(d.alive(), "traind is still up")
    d.stop()
    d.start()
    st = d.status(b)
    check(st.get("params") == params_b and st.get("model") == "flatten,linear(256),relu,linear(10)",
          "after a restart the npz job's model and parameters come from its headers (%s, %s)"
          % (st.get("model"), st.get("params")))
    st = d.status(c)
    check(st.get("model") == "flatten,linear(512),relu,linear(100)", "... and the 100-class job's (%s)" % st.get("model"))


if __name__ == "__main__":
    run(main)
