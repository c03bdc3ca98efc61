"""test_rng.py - a job with rng torch draws what PyTorch 1.13 draws.

- tests/rng-probe builds the job through trainer_new and ends its epochs
  (untrained) with trainer_end_epoch; its initial weights equal those of
  torch.manual_seed(seed) then the model's constructor, bit for bit (the
  lesson's MLP, and lenet5 with a seed above 2^32: its low 32 bits count);
  its split equals random_split(..., generator=Generator().manual_seed(
  split_seed)); every epoch's order equals the indices a DataLoader(shuffle=
  True) of that split yields, with the validation loader iterated after each
  epoch as the lesson's loop does.
- The lesson's run: traind-train with the defaults and PyTorch's loop of the
  lesson (Adam 1e-3, batches of 64, pixels as v2.ToDtype(float32, scale=True))
  agree epoch by epoch within 2e-3 on every loss and accuracy, and on the test
  set. LESSON_EPOCHS sets how many: default 3 (the test takes about 50 s on a
  quiet 2-core machine, PyTorch's side 13 s an epoch; 250 s under a load of
  15, PyTorch's side 65 s an epoch); 5 is the lesson's run; 0 checks the
  draws only.
"""
import os
import re
import subprocess
import sys
import tempfile
import time

import torch
import torch.utils.data as utils

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import st  # noqa: E402
from harness import check, finish, idx  # noqa: E402

BUILD = os.environ.get("TRAIND_BUILD_DIR", os.path.join(os.path.dirname(__file__), "../../build"))
DATA = os.environ.get("TRAIND_DATA_DIR", os.path.join(os.path.dirname(__file__), "../../data"))
TT = os.path.join(BUILD, "cli", "traind-train")
PROBE = os.path.join(BUILD, "tests", "torch", "rng-probe")
EPOCHS = int(os.environ.get("LESSON_EPOCHS", "3"))
TOL = 2e-3


def mnist(part):
    img = idx(os.path.join(DATA, "mnist", part + "-images-idx3-ubyte"))
    lab = idx(os.path.join(DATA, "mnist", part + "-labels-idx1-ubyte"))
    n = int.from_bytes(img[4:8], "big")
    x = torch.frombuffer(bytearray(img[16:]), dtype=torch.uint8).reshape(n, 1, 28, 28)
    y = torch.frombuffer(bytearray(lab[8:]), dtype=torch.uint8).long()
    # v2.ToDtype(torch.float32, scale=True): image.to(float32).mul_(1.0 / 255)
    return x.to(torch.float32).mul_(1.0 / 255), y


class Model(torch.nn.Module):
    def __init__(self, seq):
        super().__init__()
        self.net = seq

    def forward(self, x):
        return self.net(x)


def lesson_mlp():
    # The lesson's MLP, as its class builds it.
    return Model(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(28 * 28, 256),
                                     torch.nn.ReLU(), torch.nn.Linear(256, 10)))


class Index(utils.Dataset):
    """Yields the sample's own index: a DataLoader over it shows its order."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return i


def probe(out, *kv):
    p = subprocess.run([PROBE, DATA, out] + list(kv), capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError("rng-probe failed: " + p.stderr)
    return st.load(out)[0]


def check_draws(label, got, make_model, seed, split_seed, epochs):
    """PyTorch's own draws, in the lesson's order, against the probe's."""
    torch.manual_seed(seed)
    base = Index(60000)
    train_ds, val_ds = utils.random_split(base, [50000, 10000],
                                          generator=torch.Generator().manual_seed(split_seed))
    model = make_model()
    sd = model.state_dict()
    names = [k for k in sd]
    check(set(names) == {k for k in got if k.startswith("net.")},
          "%s: the probe has the model's %d tensors" % (label, len(names)))
    for k in names:
        a, b = sd[k], got.get(k)
        same = b is not None and a.dtype == b.dtype and a.shape == b.shape and \
            torch.equal(a.view(-1).view(torch.int32) if a.is_floating_point() else a,
                        b.view(-1).view(torch.int32) if b.is_floating_point() else b)
        check(same, "%s: initial %s %s equals PyTorch's bit for bit" % (label, k, tuple(a.shape)))
    split = got["split"].long()
    check(split[:50000].tolist() == list(train_ds.indices) and split[50000:].tolist() == list(val_ds.indices),
          "%s: the split equals random_split(generator=Generator().manual_seed(%d))" % (label, split_seed))
    train_dl = utils.DataLoader(train_ds, batch_size=64, shuffle=True)
    val_dl = utils.DataLoader(val_ds, batch_size=128, shuffle=False)
    for e in range(1, epochs + 1):
        want = torch.cat([b for b in train_dl]).tolist()
        order = got["order.%d" % e].long()
        check(split[order].tolist() == want, "%s: epoch %d's sample order equals the DataLoader's" % (label, e))
        for _ in val_dl:
            pass


def history(stdout):
    rows = []
    for m in re.finditer(r"train_loss: ([0-9.]+) \| train_acc: ([0-9.]+) \| val_loss: ([0-9.]+) \| "
                         r"val_acc: ([0-9.]+) \| val_macro_acc: ([0-9.]+)", stdout):
        rows.append([float(v) for v in m.groups()])
    return rows


def macro(pred, y):
    rec = [((pred == y) & (y == c)).sum().item() / max(1, (y == c).sum().item()) for c in range(10)]
    return sum(rec) / 10


def torch_evaluate(model, dl):
    model.eval()
    losses, preds, ys = [], [], []
    with torch.no_grad():
        for x, y in dl:
            z = model(x)
            losses.append(torch.nn.functional.cross_entropy(z, y).item())
            preds.append(z.argmax(1))
            ys.append(y)
    p, y = torch.cat(preds), torch.cat(ys)
    return sum(losses) / len(losses), (p == y).float().mean().item(), macro(p, y)


def torch_lesson(epochs):
    """The lesson's program (its DataLoaders, Adam, the loop of dt.train /
    dt.evaluate) without torchvision's v2 (not in Debian's 0.14)."""
    torch.set_num_threads(2)
    torch.manual_seed(42)
    x, y = mnist("train")
    xt, yt = mnist("t10k")
    full = utils.TensorDataset(x, y)
    train_ds, val_ds = utils.random_split(full, [50000, 10000], generator=torch.Generator().manual_seed(42))
    train_dl = utils.DataLoader(train_ds, batch_size=64, shuffle=True)
    val_dl = utils.DataLoader(val_ds, batch_size=128, shuffle=False)
    test_dl = utils.DataLoader(utils.TensorDataset(xt, yt), batch_size=128, shuffle=False)
    model = lesson_mlp()
    loss_fn = torch.nn.CrossEntropyLoss()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    rows = []
    for _ in range(epochs):
        model.train()
        losses, preds, ys = [], [], []
        for xb, yb in train_dl:
            z = model(xb)
            loss = loss_fn(z, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
            preds.append(z.argmax(1))
            ys.append(yb)
        p, t = torch.cat(preds), torch.cat(ys)
        vl, va, vm = torch_evaluate(model, val_dl)
        rows.append([sum(losses) / len(losses), (p == t).float().mean().item(), vl, va, vm])
        print("torch epoch %d: %s" % (len(rows), " ".join("%.4f" % v for v in rows[-1])), flush=True)
    return rows, torch_evaluate(model, test_dl)


def main():
    with tempfile.TemporaryDirectory() as d:
        got = probe(os.path.join(d, "mlp.st"), "epochs=3")
        check_draws("MLP seed 42", got, lesson_mlp, 42, 42, 3)
        got = probe(os.path.join(d, "lenet5.st"), "epochs=2", "model=lenet5", "seed=4294967301",
                    "split_seed=3")
        check_draws("lenet5 seed 2^32+5", got, lambda: Model(st.sequential(st.LENET5, (1, 28, 28))),
                    4294967301, 3, 2)
        got = probe(os.path.join(d, "xoshiro.st"), "epochs=1", "rng=xoshiro")
        torch.manual_seed(42)
        check(not torch.equal(got["net.1.weight"], lesson_mlp().state_dict()["net.1.weight"]),
              "rng xoshiro keeps traind's own initial weights (not PyTorch's)")

    if EPOCHS == 0:   # the draws only
        finish()
    t0 = time.time()
    p = subprocess.run([TT, "--epochs", str(EPOCHS)], capture_output=True, text=True,
                       env=dict(os.environ, TRAIND_DATA_DIR=DATA))
    print(p.stdout, p.stderr, flush=True)
    check(p.returncode == 0, "traind-train --epochs %d runs" % EPOCHS)
    ours = history(p.stdout)
    m = re.search(r"test_loss: ([0-9.]+) \| test_acc: ([0-9.]+)", p.stdout)
    t1 = time.time()
    theirs, (tl, ta, tm) = torch_lesson(EPOCHS)
    t2 = time.time()
    print("traind %.1fs, PyTorch %.1fs" % (t1 - t0, t2 - t1))
    names = ["train_loss", "train_acc", "val_loss", "val_acc", "val_macro_acc"]
    check(len(ours) == EPOCHS, "traind printed %d epochs" % len(ours))
    for e, (a, b) in enumerate(zip(ours, theirs), 1):
        for n, u, v in zip(names, a, b):
            check(abs(u - v) <= TOL, "epoch %d %s: traind %.4f, PyTorch %.4f (within %g)" % (e, n, u, v, TOL))
    if check(m is not None, "traind printed the test result"):
        check(abs(float(m.group(1)) - tl) <= TOL and abs(float(m.group(2)) - ta) <= TOL,
              "test: traind loss %s acc %s, PyTorch %.4f %.4f (macro %.4f)" % (m.group(1), m.group(2), tl, ta, tm))
    finish()


if __name__ == "__main__":
    main()
