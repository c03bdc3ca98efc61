"""test_rng.py - a job with rng torch draws what PyTorch 1.13 draws.

- tests/rng-probe builds the job through trainer_new and ends its epochs
  (untrained) with trainer_end_epoch; its initial weights equal those of
  torch.manual_seed(seed) then the model's constructor, bit for bit (the
  lesson's MLP, and lenet5 with a seed above 2^32: its low 32 bits count);
  its split equals random_split(..., generator=Generator().manual_seed(
  split_seed)); every epoch's order equals the indices a DataLoader(shuffle=
  True) of that split yields, with the validation loader iterated after each
  epoch as the lesson's loop does.
- The named ResNets' initial weights (torchvision's init: kaiming_normal_
  fan_out for every conv, drawn by PyTorch's AVX2 normal_ kernel) equal
  PyTorch's bit for bit: resnet20 against He et al.'s CIFAR ResNet written
  here, resnet18 against torchvision.models.resnet18 itself (on a 3-channel
  dataset made here), and both against the Model of the code
  `traind-train --export-pytorch` writes.
- resnet20 trains as PyTorch does: traind-train (rng torch) and PyTorch's
  loop from the exported code's Model (same initial weights, split and
  order) agree on one epoch of 1024 Fashion-MNIST images, and so does
  lenet5 on 1024 MNIST images, each with conv gemm and with conv onednn
  (oneDNN's convolutions, doc/models.md): the mean training
  loss within 2e-3, the validation loss within 5% and the accuracies within
  0.02. (Not closer: each engine's float32 rounding puts an occasional
  pre-ReLU value that is within an ulp of 0 on the other side of it than
  exact arithmetic does, a different one in each; in a deep net with
  BatchNorm that changes a few dozen gradient entries of one sample by a
  percent, and Adam's first steps, which follow the gradients' signs, carry
  it on. The float64 checks of single layers and blocks are in test_layers.py
  and test-gradcheck.c.)
- The lesson's run: traind-train with the defaults and PyTorch's loop of the
  lesson (Adam 1e-3, batches of 64, pixels as v2.ToDtype(float32, scale=True))
  agree epoch by epoch within 2e-3 on every loss and accuracy, and on the test
  set; so does traind-train --kernels portable (doc/portable.md). LESSON_EPOCHS sets how many: default 3 (the test takes about 50 s on a
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


def mnist(part, dataset="mnist"):
    img = idx(os.path.join(DATA, dataset, part + "-images-idx3-ubyte"))
    lab = idx(os.path.join(DATA, dataset, part + "-labels-idx1-ubyte"))
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


class BasicBlock(torch.nn.Module):
    """He et al.'s CIFAR block, option B shortcut (conv1x1 stride 2 + BN)."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        nn = torch.nn
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(y + (x if self.down is None else self.down(x)))


class CifarResNet(torch.nn.Module):
    """resnet(6n+2) as the paper describes it, with torchvision's init."""

    def __init__(self, n, channels=1, classes=10):
        super().__init__()
        nn = torch.nn
        self.conv = nn.Conv2d(channels, 16, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        blocks, cin = [], 16
        for cout in (16, 32, 64):
            for b in range(n):
                blocks.append(BasicBlock(cin, cout, 2 if (b == 0 and cout != 16) else 1))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(64, classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")


def same_bits(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(
        a.view(-1).view(torch.int32) if a.is_floating_point() else a,
        b.view(-1).view(torch.int32) if b.is_floating_point() else b)


def check_init(label, got, ref_state, code_path, seed):
    """The probe's initial tensors (state_dict order) against a reference
    module's values in its own order, and against the exported code's Model."""
    ours = [k for k in got if k.startswith("net.")]
    vals = list(ref_state.values())
    check(len(ours) == len(vals), "%s: %d tensors, the reference has %d" % (label, len(ours), len(vals)))
    bad = [k for k, v in zip(ours, vals) if not same_bits(got[k], v)]
    check(not bad, "%s: every initial tensor equals the reference's bit for bit (differ: %s)" % (label, bad[:4]))
    ns = {}
    exec(open(code_path).read(), ns)
    torch.manual_seed(seed)
    sd = ns["Model"]().state_dict()
    check(list(sd) == ours, "%s: the exported code's Model has the probe's tensor names, in order" % label)
    bad = [k for k in ours if k not in sd or not same_bits(got[k], sd[k])]
    check(not bad, "%s: torch.manual_seed(%d); Model() of the exported code starts from traind's initial "
          "weights bit for bit (differ: %s)" % (label, seed, bad[:4]))


def check_resnets(d):
    # resnet20 on MNIST's 1x28x28
    code = os.path.join(d, "resnet20.py")
    p = subprocess.run([TT, "--model", "resnet20", "--epochs", "1", "--train-size", "64", "--val-size", "64",
                        "--no-test", "--seed", "11", "--export-pytorch", code], capture_output=True, text=True,
                       env=dict(os.environ, TRAIND_DATA_DIR=DATA))
    check(p.returncode == 0, "traind-train --export-pytorch writes resnet20's code (%s)" % p.stderr.strip())
    got = probe(os.path.join(d, "r20.st"), "epochs=1", "model=resnet20", "seed=11", "train_size=64",
                "val_size=64")
    torch.manual_seed(11)
    check_init("resnet20 seed 11", got, CifarResNet(3).state_dict(), code, 11)

    # resnet18 on a 3-channel 32x32 dataset, against torchvision's own
    try:
        import torchvision
    except ImportError:
        print("skip: no torchvision for the resnet18 check")
        return
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
    import dsformats
    ds = os.path.join(d, "data", "rgb32")
    os.makedirs(ds)
    g = torch.Generator().manual_seed(5)
    for split, n in (("train", 96), ("test", 32)):
        x = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
        y = torch.arange(n, dtype=torch.int64) % 10
        with open(os.path.join(ds, "x_%s.npy" % split), "wb") as f:
            f.write(dsformats.npy_bytes("u1", (n, 3, 32, 32), x.numpy().tobytes()))
        with open(os.path.join(ds, "y_%s.npy" % split), "wb") as f:
            f.write(dsformats.npy_bytes("i8", (n,), y.numpy().tobytes()))
    code = os.path.join(d, "resnet18.py")
    p = subprocess.run([TT, "--model", "resnet18", "--dataset", "rgb32", "--epochs", "1", "--val-size", "32",
                        "--batch-size", "32", "--no-test", "--seed", "3", "--export-pytorch", code],
                       capture_output=True, text=True, env=dict(os.environ, TRAIND_DATA_DIR=os.path.join(d, "data")))
    check(p.returncode == 0, "traind-train --export-pytorch writes resnet18's code (%s)" % p.stderr.strip())
    pr = subprocess.run([PROBE, os.path.join(d, "data"), os.path.join(d, "r18.st"), "epochs=1", "model=resnet18",
                         "dataset=rgb32", "seed=3", "val_size=32", "batch_size=32"], capture_output=True, text=True)
    check(pr.returncode == 0, "rng-probe builds resnet18 (%s)" % pr.stderr.strip())
    got = st.load(os.path.join(d, "r18.st"))[0]
    torch.manual_seed(3)
    check_init("resnet18 seed 3", got, torchvision.models.resnet18(num_classes=10).state_dict(), code, 3)


def resnet20_run(d, arch="resnet20", dataset="fashion-mnist"):
    """One epoch of resnet20 (or lenet5) in traind, with conv gemm and with
    conv onednn (doc/models.md), and in PyTorch from the same start."""
    code = os.path.join(d, "%s-run.py" % arch)
    runs = {}
    for conv in ("gemm", "onednn"):
        p = subprocess.run([TT, "--model", arch, "--dataset", dataset, "--epochs", "1", "--conv", conv,
                            "--train-size", "1024", "--val-size", "2000", "--no-test", "--export-pytorch", code],
                           capture_output=True, text=True, env=dict(os.environ, TRAIND_DATA_DIR=DATA))
        print(p.stdout, p.stderr, flush=True)
        if not check(p.returncode == 0, "traind-train trains %s for one epoch (conv %s)" % (arch, conv)):
            return
        runs[conv] = history(p.stdout)
    ns = {}
    exec(open(code).read(), ns)
    torch.set_num_threads(2)
    torch.manual_seed(42)
    x, y = mnist("train", dataset)
    full = utils.TensorDataset(x, y)
    train_ds, val_ds = utils.random_split(full, [58000, 2000], generator=torch.Generator().manual_seed(42))
    model = ns["Model"]()
    train_dl = utils.DataLoader(utils.Subset(train_ds, range(1024)), batch_size=64, shuffle=True)
    val_dl = utils.DataLoader(val_ds, batch_size=128, shuffle=False)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    losses, preds, ys = [], [], []
    for xb, yb in train_dl:
        z = model(xb)
        loss = torch.nn.functional.cross_entropy(z, yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        preds.append(z.argmax(1))
        ys.append(yb)
    pr, t = torch.cat(preds), torch.cat(ys)
    vl, va, vm = torch_evaluate(model, val_dl)
    theirs = [sum(losses) / len(losses), (pr == t).float().mean().item(), vl, va, vm]
    names = ["train_loss", "train_acc", "val_loss", "val_acc", "val_macro_acc"]
    tols = [TOL, 0.02, None, 0.02, 0.02]
    for conv, ours in runs.items():
        if check(len(ours) == 1, "traind printed %s's epoch (conv %s)" % (arch, conv)):
            for n, u, v, tol in zip(names, ours[0], theirs, tols):
                tol = tol if tol is not None else 0.05 * v
                check(abs(u - v) <= tol, "%s epoch 1, conv %s, %s: traind %.4f, PyTorch %.4f (within %.3g)"
                      % (arch, conv, n, u, v, tol))


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
        check_resnets(d)
        got = probe(os.path.join(d, "xoshiro.st"), "epochs=1", "rng=xoshiro")
        torch.manual_seed(42)
        check(not torch.equal(got["net.1.weight"], lesson_mlp().state_dict()["net.1.weight"]),
              "rng xoshiro keeps traind's own initial weights (not PyTorch's)")

    if EPOCHS == 0:   # the draws only
        finish()
    with tempfile.TemporaryDirectory() as d:
        resnet20_run(d)
        resnet20_run(d, "lenet5", "mnist")
    # kernels openblas (the default) and portable (doc/portable.md: other
    # roundings, the same math): each within TOL of PyTorch
    runs = {}
    t0 = time.time()
    for kernels in ("openblas", "portable"):
        p = subprocess.run([TT, "--epochs", str(EPOCHS), "--kernels", kernels], capture_output=True, text=True,
                           env=dict(os.environ, TRAIND_DATA_DIR=DATA))
        print(p.stdout, p.stderr, flush=True)
        check(p.returncode == 0, "traind-train --epochs %d --kernels %s runs" % (EPOCHS, kernels))
        runs[kernels] = (history(p.stdout), re.search(r"test_loss: ([0-9.]+) \| test_acc: ([0-9.]+)", p.stdout))
    t1 = time.time()
    theirs, (tl, ta, tm) = torch_lesson(EPOCHS)
    t2 = time.time()
    print("traind %.1fs (both kernels), PyTorch %.1fs" % (t1 - t0, t2 - t1))
    names = ["train_loss", "train_acc", "val_loss", "val_acc", "val_macro_acc"]
    for kernels, (ours, m) in runs.items():
        check(len(ours) == EPOCHS, "traind (%s) printed %d epochs" % (kernels, len(ours)))
        for e, (a, b) in enumerate(zip(ours, theirs), 1):
            for n, u, v in zip(names, a, b):
                check(abs(u - v) <= TOL, "%s epoch %d %s: traind %.4f, PyTorch %.4f (within %g)"
                      % (kernels, e, n, u, v, TOL))
        if check(m is not None, "traind (%s) printed the test result" % kernels):
            check(abs(float(m.group(1)) - tl) <= TOL and abs(float(m.group(2)) - ta) <= TOL,
                  "%s test: traind loss %s acc %s, PyTorch %.4f %.4f (macro %.4f)"
                  % (kernels, m.group(1), m.group(2), tl, ta, tm))
    finish()


if __name__ == "__main__":
    main()
