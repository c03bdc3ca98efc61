#!/usr/bin/env python3
"""The Python client (python/traind/) against a real traind, from Debian's
/usr/bin/python3 (its PyTorch and pandas):

- doc/python.md's blocks run as they stand, as one notebook session (its
  socket from $TRAIND_SOCKET, as Client() finds it), and so does the
  README's Python block;
- every method as trainctl's verb: start(**config) passes any key (hidden
  as a list, lr_scheduler, name, keep), status/list, history (dicts, and a
  DataFrame equal to them), checkpoints, steps, wait (epoch, state, timeout
  -> traind.Timeout, UnexpectedState), watch (a generator: progress then the
  final update; closing it ends the call), pause/resume/kill/rm, eval,
  export (bytes checked, and a file), predict (PGM files passed as open
  files), datasets/dataset_import/dataset_rm, counters, info;
- errors: a traind.Error subclass per error name with name, parameters and
  message; ConnectionError without traind;
- traind.torch.load reads the export without the safetensors package, the
  same numbers as an independent reader, strict into the lesson's module,
  whose test accuracy is traind's eval; garbage is a FormatError;
  traind.torch.module builds traind's PyTorch code of the lesson's MLP
  and lenet5 (from the job, and from the exported files) with the weights:
  its test accuracy and loss are traind's eval;
- the package imports with the standard library alone (python3 -S: no
  site-packages), and `meson install` puts it where /usr/bin/python3 finds it.
"""
import contextlib
import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.insert(0, os.path.join(SRC, "python"))
import dsdata  # noqa: E402
import harness  # noqa: E402
from harness import DATA, Daemon, check, run  # noqa: E402

import traind  # noqa: E402

SMALL = dict(train_size=3000, val_size=1000, threads=1)


def doc_blocks():
    text = open(os.path.join(SRC, "doc", "python.md")).read()
    return re.findall(r"```python\n(.*?)```", text, re.S)


def run_doc(sock):
    blocks = doc_blocks()
    check(len(blocks) >= 6, "doc/python.md has its notebook blocks (%d)" % len(blocks))
    env = {"__name__": "__doc__"}
    os.environ["TRAIND_SOCKET"] = sock
    ran = 0
    for code in blocks:
        if code.startswith("# (needs matplotlib)"):
            try:
                import matplotlib  # noqa: F401
            except ImportError:
                continue
            import matplotlib
            matplotlib.use("Agg")
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                exec(compile(code, "doc/python.md", "exec"), env)
            ran += 1
        except Exception as e:
            check(False, "doc/python.md block runs: %s: %s\n%s" % (type(e).__name__, e, code))
        print(out.getvalue(), end="", flush=True)
    check(ran >= 6, "doc/python.md: %d blocks ran as written" % ran)
    del os.environ["TRAIND_SOCKET"]


def run_readme(sock):
    """The README's Python block as it stands (its job removed after)."""
    text = open(os.path.join(SRC, "README.md")).read()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    check(len(blocks) == 1, "the README has its Python block (%d)" % len(blocks))
    os.environ["TRAIND_SOCKET"] = sock
    env = {"__name__": "__readme__"}
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(blocks[0], "README.md", "exec"), env)
        m = env["model"]
        check(type(m).__name__ == "Model" and not m.training and 0.9 < float(out.getvalue()) <= 1,
              "the README's Python block runs as written: val_acc %s, a %s in eval mode"
              % (out.getvalue().strip(), type(m).__name__))
        env["c"].rm(env["job"])
    except Exception as e:
        check(False, "the README's Python block runs: %s: %s" % (type(e).__name__, e))
    del os.environ["TRAIND_SOCKET"]


def reference_tensors(blob):
    """name -> (shape, list of floats) of a safetensors blob, read here with struct."""
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        assert t["dtype"] == "F32"
        out[name] = (t["shape"], list(struct.unpack("<%df" % ((b - a) // 4), blob[8 + n + a:8 + n + b])))
    return out


def pgm(path, pixels):
    with open(path, "wb") as f:
        f.write(b"P5\n28 28\n255\n" + pixels)


def test_accuracy(torch, model, x, labels):
    """(correct count, loss) of a module on the test set, the loss as traind
    reports it: the mean of the per-batch mean losses, batches of 128 (the
    eval batch size) in order."""
    y = torch.frombuffer(bytearray(labels), dtype=torch.uint8).long()
    losses, correct = [], 0
    with torch.no_grad():
        for i in range(0, len(x), 128):
            z = model(x[i:i + 128])
            losses.append(torch.nn.functional.cross_entropy(z.double(), y[i:i + 128]).item())
            correct += int((z.argmax(1) == y[i:i + 128]).sum())
    return correct, sum(losses) / len(losses)


def check_module(c, ttorch, x, labels, tmp):
    """traind.torch.module: the lesson's MLP and lenet5, from the job and
    from the exported files, score on the test set what traind's eval does."""
    import torch
    n, jobs = len(labels), []
    for name, model in (("lesson MLP", "mlp"), ("lenet5", "lenet5")):
        job = c.start(name="module-" + model, epochs=1, model=model, **SMALL)
        jobs.append(job)
        c.wait(job, state="done")
        ev = c.eval(job, split="test")
        m = ttorch.module(job, client=c)
        check(type(m).__name__ == "Model" and not m.training and isinstance(m, torch.nn.Module),
              "module(job) of the %s: traind's Model class, in eval mode" % name)
        correct, loss = test_accuracy(torch, m, x, labels)
        # the same model in float32, summed in another order: a near-tie
        # may fall the other way, so one sample of 10000 may differ
        check(abs(correct - round(ev["acc"] * n)) <= 1 and abs(loss - ev["loss"]) <= 1e-4,
              "module(job) of the %s: test accuracy %.4f, loss %.5f; traind's eval %.4f, %.5f"
              % (name, correct / n, loss, ev["acc"], ev["loss"]))
        base = os.path.join(tmp, model)
        subprocess.run([harness.TRAINCTL, "--socket", c.socket, "export", str(job), "-o", base + ".safetensors",
                        "--pytorch", base + ".py"], check=True, capture_output=True)
        f = ttorch.module(base + ".safetensors")
        check(all(torch.equal(a, b) for a, b in zip(f.state_dict().values(), m.state_dict().values()))
              and list(f.state_dict()) == list(m.state_dict()),
              "module(path) of the %s: the export and the code beside it, the same tensors" % name)
    os.rename(base + ".py", base + "-code.py")
    try:
        ttorch.module(base + ".safetensors")
        check(False, "module(path) without the code beside it raises")
    except FileNotFoundError as e:
        check("--pytorch" in str(e), "module(path) without its code names the way to write it (%s)" % e)
    f = ttorch.module(base + ".safetensors", code=base + "-code.py", eval=False)
    check(f.training, "module(path, code=PATH, eval=False): in training mode")
    try:
        ttorch.module(base + ".safetensors", code="import torch\n")
        check(False, "code without a Model raises")
    except ttorch.FormatError as e:
        check("Model" in str(e), "code without a Model: FormatError (%s)" % e)
    try:
        ttorch.module(987654, client=c)
        check(False, "module of no job raises")
    except traind.NoSuchJob:
        check(True, "module(no such job): traind.NoSuchJob")
    for j in jobs:
        c.rm(j)


def main():
    import torch
    import traind.torch as ttorch

    tmp = tempfile.mkdtemp(prefix="traind-py-")
    # its own data directory: dataset_import below must not write into the
    # shared one (another session's test_python would find "small" there)
    d = Daemon(max_running=1, data_dir=harness.private_data(os.path.join(tmp, "data"))).start()
    try:
        run_doc(d.socket)
        run_readme(d.socket)

        c = traind.Client(d.socket)
        check(c.list() == [], "the doc's session removed its job")

        # ---- start(**config), status, list ----
        # a job ahead of it (traind runs one at a time here), so that the
        # snapshots below and watch's first update see it queued, not done:
        # the small job trains in a fraction of a second
        ahead = c.start(name="ahead", epochs=50, **SMALL)
        # (20000 samples: about a second, for watch to see it running)
        job = c.start(name="py", keep=2, epochs=2, hidden=[64, 32], lr=0.002, lr_scheduler="cosine(t_max=2)",
                      **dict(SMALL, train_size=20000))
        check(isinstance(job, int), "start returns the id")
        st = c.status(job)
        check(st["name"] == "py" and st["keep"] == 2 and st["config"]["hidden"] == [64, 32] and
              st["config"]["lr_scheduler"] == "cosine(t_max=2)" and st["config"]["lr"] == 0.002,
              "every configuration key passes through start(**config)")
        check([j["id"] for j in c.list(states="queued,running")] == [ahead, job] and
              [j["id"] for j in c.status()] == [j["id"] for j in c.list()] and
              c.list(states="queued")[-1]["id"] == job,
              "list(states='queued,running') and status() list the jobs")

        # ---- watch: progress, then the final update ----
        threading.Timer(0.5, lambda: traind.Client(d.socket).kill(ahead)).start()
        seen = list(c.watch(job))
        check(len(seen) >= 2 and seen[-1]["state"] == "done" and seen[-1]["committed_epoch"] == 2,
              "watch yields progress and ends with the job done (%d updates)" % len(seen))
        check(any(p["state"] == "running" and isinstance(p.get("loss"), float) for p in seen),
              "watch's updates carry the running loss")
        rows = c.history(job)
        check([r["epoch"] for r in rows] == [1, 2] and set(rows[0]) >= {"train_loss", "val_acc", "lr", "note"},
              "history: a dict per epoch")
        try:
            import pandas  # noqa: F401  (scripts/setup installs python3-pandas)
            df = c.history(job, frame=True)
            check(list(df.index) == [1, 2] and df.loc[2, "val_loss"] == rows[1]["val_loss"],
                  "history(frame=True): a DataFrame by epoch with the same numbers")
        except ImportError:
            try:
                c.history(job, frame=True)
                check(False, "history(frame=True) without pandas raises")
            except ImportError as e:
                check("pandas" in str(e), "without pandas, history(frame=True) says it needs it (%s)" % e)
        check(len(c.checkpoints(job)) == 2, "checkpoints: two epoch checkpoints")
        steps = c.steps(job)
        check(steps["steps_per_epoch"] == c.status(job)["steps_per_epoch"] == 313 and len(steps["points"]) >= 1 and
              all(set(p) == {"epoch", "step", "loss"} for p in steps["points"]),
              "steps: the step series (%d points)" % len(steps["points"]))

        # ---- wait ----
        w = c.wait(job, state="done")
        check(w["state"] == "done", "wait(state='done') on a done job returns it")
        slow = c.start(name="slow", epochs=30, batch_size=4, **SMALL)
        j = c.wait(slow, epoch=1)
        check(j["committed_epoch"] >= 1, "wait(epoch=1) returns once epoch 1 is committed")
        try:
            c.wait(slow, state="paused", timeout=0.5)
            check(False, "wait with a timeout raises")
        except traind.Timeout as e:
            check(isinstance(e, TimeoutError) and e.name == "io.traind.Timeout" and e.parameters == {"id": slow},
                  "wait(timeout=0.5): traind.Timeout, a TimeoutError, with name and parameters")
        r = c.pause(slow)
        check(r == {"id": slow, "state": "paused"}, "pause: {id, state}")
        check(c.resume(slow)["state"] in ("queued", "running"), "resume")
        c.kill(slow)
        try:
            c.wait(slow, state="done")
            check(False, "wait for done of a killed job raises")
        except traind.UnexpectedState as e:
            check(e.parameters["state"] == "killed", "a killed job: traind.UnexpectedState naming the state")

        # ---- errors ----
        try:
            c.status(123456)
        except traind.NoSuchJob as e:
            check(e.name == "io.traind.NoSuchJob" and e.parameters == {"id": 123456} and str(e) == "no such job 123456"
                  and isinstance(e, traind.Error) and isinstance(e, LookupError),
                  "no such job: traind.NoSuchJob with its name, parameters and message")
        try:
            c.start(bogus_key=1)
        except traind.InvalidParameter as e:
            check(e.parameters["parameter"] == "config.bogus_key" and isinstance(e, ValueError),
                  "an unknown configuration key: traind.InvalidParameter naming config.bogus_key (%s)" % e)
        try:
            c.rm(slow + 100)
        except traind.Error as e:
            check(type(e) is traind.NoSuchJob, "rm of no job: NoSuchJob")
        try:
            traind.Client(os.path.join(tmp, "nobody.sock")).list()
        except traind.ConnectionError as e:
            check(isinstance(e, ConnectionError) and "is traind running?" in str(e),
                  "no traind: traind.ConnectionError (%s)" % e)

        # ---- the model in PyTorch ----
        blob = c.export(job)
        check(isinstance(blob, bytes) and blob == open(d.export_file(job), "rb").read(),
              "export() gives trainctl export's bytes")
        state = ttorch.load(blob)
        ref = reference_tensors(blob)
        check(list(state) == list(ref) and all(list(state[k].shape) == ref[k][0] and state[k].flatten().tolist() == ref[k][1]
                                              for k in ref),
              "traind.torch.load: every tensor bit for bit as an independent reader reads it (%s)" % list(state))
        path = c.export(job, os.path.join(tmp, "m.safetensors"))
        check(all(torch.equal(a, b) for a, b in zip(ttorch.load(path).values(), state.values())),
              "export(job, path) writes the same file, which load(path) reads")

        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 64), torch.nn.ReLU(),
                                               torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))

            def forward(self, x):
                return self.net(x)
        model = Net()
        model.load_state_dict(state, strict=True)
        px, lab, rows_, cols = dsdata.mnist_split("t10k", 10000)
        x = (torch.frombuffer(bytearray(px), dtype=torch.uint8).float() * (1.0 / 255)).reshape(-1, 1, 28, 28)
        with torch.no_grad():
            pred = model(x).argmax(1)
        acc = (pred == torch.frombuffer(bytearray(lab), dtype=torch.uint8).long()).float().mean().item()
        ev = c.eval(job, split="test")
        check(abs(acc - ev["acc"]) <= 0.002,
              "the export loaded strict into the lesson's module: test accuracy %.4f, traind's eval %.4f" % (acc, ev["acc"]))
        try:
            ttorch.load(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}......")
        except ttorch.FormatError as e:
            check("not JSON" in str(e), "garbage: traind.torch.FormatError saying why (%s)" % e)
        check_module(c, ttorch, x, lab, tmp)

        # ---- predict, datasets ----
        files = []
        for i in range(3):
            files.append(os.path.join(tmp, "digit%d.pgm" % i))
            pgm(files[-1], px[i * 784:(i + 1) * 784])
        preds = c.predict(job, files, top=2)
        with torch.no_grad():
            probs = torch.softmax(model(x[:3]), 1)
        check(len(preds) == 3 and all(p["class"] == int(probs[i].argmax()) and abs(p["prob"] - float(probs[i].max())) < 1e-3
                                      and len(p["top"]) == 2 for i, p in enumerate(preds)),
              "predict of PGM files: PyTorch's classes and probabilities (%s)" % [(p["class"], round(p["prob"], 3)) for p in preds])
        src = dsdata.write_small_mnist(os.path.join(tmp, "small"), n_train=2000, n_test=300)
        dsi = c.dataset_import("small", [os.path.join(src, f) for f in sorted(os.listdir(src))])
        check(dsi["name"] == "small" and dsi["train"] == 2000, "dataset_import passes the files and answers the dataset")
        check("small" in [x["name"] for x in c.datasets()], "datasets() lists it")
        try:
            c.dataset_import("small", [os.path.join(src, f) for f in sorted(os.listdir(src))])
        except traind.DatasetExists as e:
            check(e.parameters["dataset"] == "small", "importing it again: traind.DatasetExists")
        check(c.dataset_rm("small") == "small", "dataset_rm")
        check(c.counters()["epochs_committed"] >= 3 and c.info()["product"] == "traind", "counters() and info()")

        # ---- rm ----
        running = c.start(name="running", epochs=30, batch_size=4, **SMALL)
        c.wait(running, epoch=1)
        try:
            c.rm(running)
        except traind.InvalidState as e:
            check(e.parameters["state"] == "running", "rm of a running job: traind.InvalidState")
        check(c.rm(running, force=True)["id"] == running, "rm(force=True) removes it")
        c.close()

        # ---- the standard library alone, and meson install ----
        p = subprocess.run([sys.executable, "-S", "-c",
                            "import sys; sys.path.insert(0, %r); import traind; "
                            "print(len(traind.Client(%r).list()))" % (os.path.join(SRC, "python"), d.socket)],
                           capture_output=True, text=True)
        check(p.returncode == 0 and p.stdout.strip() == "3",  # ahead, job, another
              "the package works with the standard library alone (python3 -S): %s" % (p.stdout + p.stderr).strip())
        dest = os.path.join(tmp, "destdir")
        p = subprocess.run(["meson", "install", "-C", harness.BUILD, "--destdir", dest, "--tags", "python",
                            "--no-rebuild", "--quiet"], capture_output=True, text=True)
        site = [os.path.join(r, x) for r, ds, _ in os.walk(dest) for x in ds if x == "traind"]
        check(p.returncode == 0 and len(site) == 1 and site[0].endswith("dist-packages/traind"),
              "meson install puts traind in a dist-packages directory (%s %s)" % (site, p.stderr.strip()[-200:]))
        if site:
            inst = os.path.relpath(os.path.dirname(site[0]), dest)
            p = subprocess.run(["/usr/bin/python3", "-c", "import sys; print(%r in sys.path)" % ("/" + inst)],
                               capture_output=True, text=True)
            check(p.stdout.strip() == "True", "... one /usr/bin/python3 searches (/%s)" % inst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    run(main)
