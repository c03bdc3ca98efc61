#!/usr/bin/env python3
"""resnet20 through traind: a job paused mid-epoch and resumed, then (after
an epoch) traind SIGKILLed and restarted, ends bit-identical to the same job
never stopped; status names the model and its parameters; export --pytorch
writes the module's code (its loading into PyTorch is the torch suite's
test_models.py). A small subset of Fashion-MNIST (512 training images,
batches of 32: 16 steps an epoch) keeps it short.

The same with `conv onednn` (oneDNN's convolutions, doc/models.md), on a
smaller job: paused mid-epoch and SIGKILLed, it ends bit-identical to the
same job never stopped, and its numerics name oneDNN; `conv onednn` with
`kernels portable` is refused naming the key (2 threads, the default), and
again on 1 thread.

A block model's SPEC errors name the block, the layer and the shapes, and
leave traind running."""
import os
import re
import sys
import zlib

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import SANITIZER, Daemon, check, run, sha256_file  # noqa: E402

# under the sanitizers (the release tree runs this form) 10 steps an epoch
CONFIG = ["--model", "resnet20", "--dataset", "fashion-mnist", "--train-size", "320" if SANITIZER else "512",
          "--val-size", "128" if SANITIZER else "256", "--batch-size", "32", "--eval-batch-size", "128", "--epochs", "3",
          "--lr", "0.01", "--optimizer", "sgd", "--momentum", "0.9", "--weight-decay", "0.0001"]
# He et al.'s resnet20 on one-channel images and 10 classes: 272474 for CIFAR's three
# channels, less the stem's 16 x 2 x 3 x 3 weights.
PARAMS = 272474 - 16 * 2 * 9
# conv onednn: 3 epochs of 8 steps (under the sanitizers: 4 steps of 16)
ONEDNN = ["--model", "resnet20", "--dataset", "fashion-mnist", "--conv", "onednn",
          "--train-size", "128" if SANITIZER else "256", "--val-size", "64", "--batch-size", "32",
          "--eval-batch-size", "64", "--epochs", "3", "--lr", "0.01", "--optimizer", "sgd", "--momentum", "0.9"]


# the same on 1 thread (ONEDNN runs on the default 2, whose members split
# the blocked graph's BatchNorms by channels), 2 epochs of 6 steps
ONEDNN_1T = ["--model", "resnet20", "--dataset", "fashion-mnist", "--conv", "onednn", "--train-size", "192",
             "--val-size", "32", "--batch-size", "32", "--eval-batch-size", "32", "--epochs", "2", "--lr", "0.01",
             "--optimizer", "sgd", "--momentum", "0.9", "--threads", "1"]


def onednn(d, name="conv onednn", config=ONEDNN):
    """A conv onednn job paused mid-epoch, then SIGKILLed after an epoch,
    against the same job never stopped."""
    job = d.start_job(*config)
    j = d.wait_running_at(job, epoch=0, min_step=2)
    rc, out, err = d.ctl("pause", job, check_rc=False)
    st = d.status(job)
    check(rc == 0 and st["state"] == "paused" and 0 < st["step"] < st["steps_per_epoch"],
          name + ": paused mid-epoch 1 (step %s of %s; %s)" % (st.get("step"), st.get("steps_per_epoch"),
                                                                  err.strip()))
    d.ctl("resume", job)
    rc, out, err = d.wait(job, "--epoch", "1")
    check(rc == 0, name + ": epoch 1 committed (rc %d, %s)" % (rc, err.strip()))
    d.kill9()
    d.start()
    rc, out, err = d.wait(job, "--state", "done")
    check(rc == 0, name + ": after SIGKILL and a restart the job finishes (rc %d, %s)" % (rc, err.strip()))
    # the numerics a checkpoint records (a resume compares them): oneDNN's too
    blob = bytes(d.sql("SELECT blob FROM checkpoints WHERE job_id = ? ORDER BY id DESC LIMIT 1",
                       (int(job),))[0][0])
    if b"numerics" not in blob:
        blob = zlib.decompress(blob, 47)   # zlib or gzip
    m = re.search(rb'"numerics":"([^"]*)"', blob)
    num = m.group(1).decode() if m else ""
    check("+ oneDNN " in num, name + ": the checkpoint's numerics name oneDNN (%r)" % num)
    ref = d.start_job(*config)
    rc, out, err = d.wait(ref, "--state", "done")
    check(rc == 0, name + ": the uninterrupted job finishes")
    a = sha256_file(d.export_file(job, "onednn-stopped.safetensors"))
    b = sha256_file(d.export_file(ref, "onednn-ref.safetensors"))
    check(a == b, name + ": paused, SIGKILLed and resumed == never stopped (%s vs %s)" % (a[:16], b[:16]))
    check([r["train_loss"] for r in d.history(job)] == [r["train_loss"] for r in d.history(ref)],
          name + ": ... and the same history")
    if config is not ONEDNN:
        return
    rc, out, err = d.ctl("start", "--model", "lenet5", "--conv", "onednn", "--kernels", "portable", check_rc=False)
    check(rc != 0 and "conv" in err and "portable" in err,
          "conv onednn with kernels portable is refused, naming conv (rc %d: %s)" % (rc, err.strip()))


def main():
    d = Daemon(max_running=1).start()

    job = d.start_job(*CONFIG)
    st = d.status(job)
    check(st.get("model") == "resnet20", "status names the model resnet20 (%r)" % st.get("model"))
    check(st.get("params") == PARAMS, "resnet20 on 1x28x28 has %d parameters (status: %s)"
          % (PARAMS, st.get("params")))

    # ---- pause mid-epoch 2, resume ----
    j = d.wait_running_at(job, epoch=1, min_step=3)
    rc, out, err = d.ctl("pause", job, check_rc=False)
    check(rc == 0, "pause the resnet20 job at epoch 2 step %d (rc %d, %s)" % (j["step"], rc, err.strip()))
    st = d.status(job)
    check(st["state"] == "paused" and st["epoch"] == 1 and 0 < st["step"] < st["steps_per_epoch"],
          "paused mid-epoch 2 (epoch %s, step %s of %s)" % (st["epoch"], st["step"], st["steps_per_epoch"]))
    rc, out, err = d.ctl("resume", job, check_rc=False)
    check(rc == 0, "resume it (rc %d, %s)" % (rc, err.strip()))

    # ---- SIGKILL after epoch 2, restart ----
    rc, out, err = d.wait(job, "--epoch", "2")
    check(rc == 0, "epoch 2 committed (rc %d, %s)" % (rc, err.strip()))
    d.kill9()
    d.start()
    rc, out, err = d.wait(job, "--state", "done")
    check(rc == 0, "after SIGKILL and a restart the job finishes by itself (rc %d, %s)" % (rc, err.strip()))
    hist = d.history(job)
    check([r["epoch"] for r in hist] == [1, 2, 3], "history: epochs 1..3 once each (%s)"
          % [r["epoch"] for r in hist])
    check(all(r["train_loss"] == r["train_loss"] and r["train_loss"] < 5 for r in hist),
          "no divergence: train losses %s" % [round(r["train_loss"], 4) for r in hist])

    ref = d.start_job(*CONFIG)
    rc, out, err = d.wait(ref, "--state", "done")
    check(rc == 0, "the uninterrupted resnet20 job finishes")
    a = sha256_file(d.export_file(job, "stopped.safetensors"))
    b = sha256_file(d.export_file(ref, "ref.safetensors"))
    check(a == b, "resnet20 paused mid-epoch, SIGKILLed after an epoch and resumed == never stopped "
          "(%s vs %s)" % (a[:16], b[:16]))
    ha, hb = d.history(job), d.history(ref)
    check([(r["train_loss"], r["val_loss"], r["val_acc"]) for r in ha] ==
          [(r["train_loss"], r["val_loss"], r["val_acc"]) for r in hb],
          "... and the same history, loss for loss")

    # ---- export --pytorch ----
    py = os.path.join(d.dir, "model.py")
    st_path = os.path.join(d.dir, "both.safetensors")
    rc, out, err = d.ctl("export", job, "-o", st_path, "--pytorch", py, check_rc=False)
    check(rc == 0 and os.path.exists(py) and os.path.exists(st_path),
          "export -o FILE --pytorch FILE.py writes both (rc %d, %s%s)" % (rc, out.strip(), err.strip()))
    if os.path.exists(py):
        code = open(py).read()
        try:
            compile(code, py, "exec")
            ok = True
        except SyntaxError as e:
            ok = False
            print(e)
        check(ok and "class Model(nn.Module)" in code and "kaiming_normal_" in code,
              "the code is Python with class Model and torchvision's init")
        check(sha256_file(st_path) == a, "the weights written beside the code are the export's")
    doc = d.ctl_json("export", job, "--pytorch", os.path.join(d.dir, "only.py"))
    check(doc.get("pytorch_file", "").endswith("only.py") and "file" not in doc,
          "export --pytorch alone writes the code only (%s)" % doc)
    rc, out, err = d.ctl("export", job, check_rc=False)
    check(rc != 0 and "--pytorch" in err, "export without -o or --pytorch is refused, naming both (%s)"
          % err.strip())
    r = d.call("io.traind.Export", {"id": int(job), "pytorch": "yes"})
    check("error" in r and "pytorch" in str(r.get("parameters", r)),
          "Export with a pytorch that is not a boolean is refused, naming it (%s)" % str(r)[:200])

    onednn(d)
    onednn(d, "conv onednn, 1 thread", ONEDNN_1T)

    # ---- SPEC errors in blocks ----
    cases = [
        (["--model", "conv2d(16,3,padding=1),residual(conv2d(32,3,stride=2,padding=1),batchnorm2d),flatten,linear(10)"],
         "block 2 (residual), body layer 2 batchnorm2d: output 32\u00d714\u00d714 does not match the block's input 16\u00d728\u00d728"),
        (["--model", "conv2d(16,3,padding=1),residual(conv2d(32,3,stride=2,padding=1);shortcut=conv2d(32,1)),flatten,linear(10)"],
         "does not match the shortcut's 32\u00d728\u00d728"),
        (["--model", "concat(identity;maxpool2d(2)),flatten,linear(10)"], "block 1 (concat)"),
        (["--model", "residual(conv2d(1,3,padding=1);conv2d(1,1)),flatten,linear(10)"], "shortcut="),
        (["--model", "residual(conv2d(1,3,padding=1),flatten,linear(10)"], "block 1 (residual)"),
        (["--model", "resnet21"], "unknown layer 'resnet21'"),
    ]
    for args, needle in cases:
        rc, out, err = d.ctl("start", *args, check_rc=False)
        check(rc != 0 and needle in err and len(err.strip().splitlines()) == 1,
              "start %s is refused naming %r (rc %d: %s)" % (" ".join(args), needle, rc, err.strip()))
    check(d.alive(), "traind is still running after the refused starts")


if __name__ == "__main__":
    run(main)
