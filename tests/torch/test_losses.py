"""test_losses.py - traind's losses, augmentation transforms and a regression
against PyTorch 1.13 (Debian's python3-torch, python3-torchvision 0.14).

1. Each loss (engine/train/loss.c, through tests/torch/loss-probe) against
   torch.nn.functional's with reduction 'mean': cross_entropy (plain, with
   label_smoothing, with a weight per class, with both), mse, l1, huber (two
   deltas), binary_cross_entropy_with_logits (plain, with pos_weight). The
   batch mean and its gradient at the outputs (autograd's) must agree within
   1e-5 of the largest value, with kernels openblas and portable (traind's
   own exp and log); the batch computed in 3 pieces (the trainer's
   shards) gives the same gradient bits and the same mean within 1e-12.
2. Each augmentation transform (engine/data/augment.c) applied with given
   draws against torchvision's for the same choices: RandomCrop(size,
   padding, fill) with get_params made to return traind's crop, hflip, vflip
   and normalize, exactly (bit for bit: they move values, and normalize is
   the same float32 expression). Debian's torchvision 0.14 has no
   transforms.v2 (0.15 made it public); v2 kept these semantics (padding then
   crop, zero fill by default, a flip with probability p, Normalize per
   channel). Also: the crop's place covers every offset, the flips' rate is p.
3. An MLP regressor on scripts/sklearn-data's diabetes (Flatten, Linear(10,
   64), ReLU, Linear(64, 1); Adam lr 0.01; batch 32; 88 of the 354 training
   rows for validation; 60 epochs; MSE): traind-train with rng torch and the
   same model, optimizer, schedule and split in PyTorch (random_split,
   DataLoader(shuffle=True), torch.manual_seed) reach the same validation
   RMSE within 2% (the result the issue asks to state; printed).
"""
import math
import os
import re
import subprocess
import sys
import tempfile

import torch
import torch.nn.functional as F
import torch.utils.data as utils
import torchvision.transforms as T
import torchvision.transforms.functional as TF

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import st  # noqa: E402
from harness import check, finish  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD = os.environ.get("TRAIND_BUILD_DIR", os.path.join(HERE, "../../build"))
PROBE = os.path.join(BUILD, "tests", "torch", "loss-probe")
TRAIN = os.path.join(BUILD, "cli", "traind-train")
SKLEARN_DATA = os.path.join(HERE, "../../scripts/sklearn-data")
TOL = 1e-5


def close(got, want):
    got, want = got.double().reshape(want.shape), want.double()
    scale = max(want.abs().max().item(), 1e-30)
    return (got - want).abs().max().item() / scale


def probe(kind, d, tensors, meta):
    src, dst = os.path.join(d, "in.st"), os.path.join(d, "out.st")
    st.save(src, tensors, meta)
    p = subprocess.run([PROBE, kind, src, dst], capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError("loss-probe failed: " + p.stderr)
    return st.load(dst)[0]


# ---- 1. losses -------------------------------------------------------------

def torch_loss(name, z, target, opts):
    if name == "cross_entropy":
        return F.cross_entropy(z, target, weight=opts.get("class_weights"),
                               label_smoothing=opts.get("label_smoothing", 0.0))
    if name == "mse":
        return F.mse_loss(z, target)
    if name == "l1":
        return F.l1_loss(z, target)
    if name == "huber":
        return F.huber_loss(z, target, delta=opts.get("delta", 1.0))
    return F.binary_cross_entropy_with_logits(z, target, pos_weight=opts.get("pos_weight"))


def loss_case(d, name, opts, n=37, w=10, seed=0, kernels="openblas"):
    g = torch.Generator().manual_seed(seed)
    z = (torch.randn(n, w, generator=g) * 3).float()
    if name == "cross_entropy":
        target = torch.randint(0, w, (n,), generator=g)
        tensors = {"out": z, "classes": target.long()}
    elif name == "bce_with_logits":
        target = (torch.rand(n, w, generator=g) < 0.4).float()
        tensors = {"out": z, "values": target}
    else:
        target = (torch.randn(n, w, generator=g) * 2).float()
        tensors = {"out": z, "values": target}
    meta = {"loss": name, "kernels": kernels}
    for k in ("class_weights", "pos_weight"):
        if k in opts:
            tensors[k] = opts[k]
    for k in ("label_smoothing", "delta"):
        if k in opts:
            meta[k] = repr(opts[k])
    zz = z.clone().requires_grad_(True)
    want = torch_loss(name, zz, target, opts)
    want.backward()
    one = probe("loss", d, tensors, dict(meta, pieces="1"))
    three = probe("loss", d, tensors, dict(meta, pieces="3"))
    label = "%s %s (%s)" % (name, ", ".join(k if isinstance(v, torch.Tensor) else "%s=%g" % (k, v)
                                             for k, v in opts.items()) or "plain", kernels)
    rv = close(one["loss"], want.detach().reshape(1))
    rg = close(one["dout"], zz.grad)
    check(rv <= TOL, "%s: the mean loss %.7g equals torch's %.7g (relative %.2g)"
          % (label, one["loss"].item(), want.item(), rv))
    check(rg <= TOL, "%s: the gradient at the outputs equals autograd's (relative %.2g)" % (label, rg))
    check(torch.equal(one["dout"], three["dout"]) and abs(one["loss"].item() - three["loss"].item()) <= 1e-12 *
          max(1.0, abs(one["loss"].item())), "%s: in 3 pieces: the same gradient bits and mean" % label)


def losses(d):
    w = torch.rand(10, generator=torch.Generator().manual_seed(5)) * 2 + 0.1
    pw = torch.rand(6, generator=torch.Generator().manual_seed(6)) * 3 + 0.2
    for k in ("openblas", "portable"):   # a portable job: traind's own exp and log
        loss_case(d, "cross_entropy", {}, kernels=k)
        loss_case(d, "cross_entropy", {"label_smoothing": 0.1}, kernels=k)
        loss_case(d, "cross_entropy", {"class_weights": w}, kernels=k)
        loss_case(d, "cross_entropy", {"class_weights": w, "label_smoothing": 0.25}, seed=1, kernels=k)
        loss_case(d, "mse", {}, w=3, kernels=k)
        loss_case(d, "l1", {}, w=3, kernels=k)
        loss_case(d, "huber", {"delta": 0.5}, w=3, kernels=k)
        loss_case(d, "huber", {"delta": 2.0}, w=3, seed=2, kernels=k)
        loss_case(d, "bce_with_logits", {}, w=6, kernels=k)
        loss_case(d, "bce_with_logits", {"pos_weight": pw}, w=6, kernels=k)


# ---- 2. augmentation --------------------------------------------------------

class FixedCrop(T.RandomCrop):
    """RandomCrop whose random choice is given (traind's)."""

    def __init__(self, size, padding, fill, where):
        super().__init__(size, padding=padding, fill=fill)
        self.where = where

    def get_params(self, img, output_size):
        return self.where[0], self.where[1], output_size[0], output_size[1]


def augmentation(d):
    g = torch.Generator().manual_seed(7)
    x = torch.rand(3, 8, 10, generator=g).float()
    places, flips = set(), 0
    for k in range(200):
        draw = torch.randint(0, 2 ** 32, (4,), generator=g, dtype=torch.int64)
        fill = 0.0 if k % 2 == 0 else 0.5
        spec = "random_crop(8:10,padding=2%s)" % ("" if fill == 0 else ",fill=0.5")
        out = probe("augment", d, {"x": x, "draw": draw}, {"spec": spec})
        top, left = out["where"][0].item(), out["where"][1].item()
        places.add((top, left))
        want = FixedCrop((8, 10), 2, fill, (top, left))(x)
        if not torch.equal(out["y"], want):
            check(False, "%s with crop at (%d, %d): equals torchvision's RandomCrop" % (spec, top, left))
            return
        out = probe("augment", d, {"x": x, "draw": draw}, {"spec": "random_horizontal_flip(0.3)"})
        flipped = out["where"][2].item() == 1
        flips += flipped
        if not torch.equal(out["y"], TF.hflip(x) if flipped else x):
            check(False, "random_horizontal_flip: equals hflip or the identity")
            return
        out = probe("augment", d, {"x": x, "draw": draw}, {"spec": "random_vertical_flip(0.5)"})
        if not torch.equal(out["y"], TF.vflip(x) if out["where"][2].item() == 1 else x):
            check(False, "random_vertical_flip: equals vflip or the identity")
            return
    check(True, "random_crop(8:10,padding=2[,fill=0.5]) x 200 draws: torchvision's RandomCrop at traind's place, bit for bit")
    check(len(places) == 25, "the crop's place took all %d of the 5 x 5 offsets (got %d)" % (25, len(places)))
    check(True, "random_horizontal_flip / random_vertical_flip x 200: torchvision's hflip / vflip or the identity")
    check(30 <= flips <= 90, "random_horizontal_flip(0.3) flipped %d of 200 (p = 0.3)" % flips)
    mean, std = [0.49, 0.48, 0.45], [0.25, 0.24, 0.26]
    out = probe("augment", d, {"x": x, "draw": torch.zeros(4, dtype=torch.int64)},
                {"spec": "normalize(mean=%s,std=%s)" % (":".join(map(str, mean)), ":".join(map(str, std)))})
    check(torch.equal(out["y"], TF.normalize(x, mean, std)), "normalize: equals torchvision's normalize bit for bit")


# ---- 3. the diabetes regression --------------------------------------------

def read_csv(path):
    with open(path) as f:
        rows = [ln.strip().split(",") for ln in f.read().splitlines()[1:] if ln.strip()]
    x = torch.tensor([[float(v) for v in r[:-1]] for r in rows], dtype=torch.float32)
    y = torch.tensor([[float(r[-1])] for r in rows], dtype=torch.float32)
    return x.reshape(len(rows), 1, 1, x.shape[1]), y


class Model(torch.nn.Module):
    def __init__(self, seq):
        super().__init__()
        self.net = seq

    def forward(self, x):
        return self.net(x)


EPOCHS, LR, BATCH, VAL, HIDDEN = 60, 0.01, 32, 88, 64


def torch_diabetes(data):
    torch.set_num_threads(1)
    torch.manual_seed(42)
    x, y = read_csv(os.path.join(data, "diabetes", "train.csv"))
    full = utils.TensorDataset(x, y)
    train_ds, val_ds = utils.random_split(full, [len(full) - VAL, VAL],
                                          generator=torch.Generator().manual_seed(42))
    train_dl = utils.DataLoader(train_ds, batch_size=BATCH, shuffle=True)
    val_dl = utils.DataLoader(val_ds, batch_size=128, shuffle=False)
    model = Model(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(10, HIDDEN), torch.nn.ReLU(),
                                      torch.nn.Linear(HIDDEN, 1)))
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    rmse = []
    for _ in range(EPOCHS):
        model.train()
        for xb, yb in train_dl:
            loss = F.mse_loss(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        se, n = 0.0, 0
        with torch.no_grad():
            for xb, yb in val_dl:
                se += ((model(xb).double() - yb.double()) ** 2).sum().item()
                n += yb.numel()
        rmse.append(math.sqrt(se / n))
    return rmse


def diabetes(d):
    data = os.path.join(d, "data")
    subprocess.run([sys.executable, SKLEARN_DATA, "--only", "diabetes", data], check=True)
    p = subprocess.run([TRAIN, "--data-dir", data, "--dataset", "diabetes", "--loss", "mse", "--rng", "torch",
                        "--epochs", str(EPOCHS), "--lr", str(LR), "--batch-size", str(BATCH), "--val-size",
                        str(VAL), "--hidden", str(HIDDEN), "--threads", "1"],
                       capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError("traind-train failed: " + p.stderr)
    ours = [float(v) for v in re.findall(r"val_rmse: ([0-9.]+)", p.stdout)]
    theirs = torch_diabetes(data)
    check(len(ours) == EPOCHS, "traind-train printed %d epochs of val_rmse" % len(ours))
    rel = abs(ours[-1] - theirs[-1]) / theirs[-1]
    print("diabetes MLP regressor, epoch %d val RMSE: traind %.4f, PyTorch 1.13 %.4f (%.3f%%)"
          % (EPOCHS, ours[-1], theirs[-1], 100 * rel), flush=True)
    for e in (0, 9, 29):
        print("  epoch %d: traind %.4f, PyTorch %.4f" % (e + 1, ours[e], theirs[e]))
    check(rel <= 0.02, "the val RMSE is within 2%% of PyTorch's (%.3f%%)" % (100 * rel))
    check(ours[-1] < 0.8 * ours[0], "the regressor learned: val RMSE %.2f after epoch 1, %.2f after %d"
          % (ours[0], ours[-1], EPOCHS))


def main():
    with tempfile.TemporaryDirectory() as d:
        losses(d)
        augmentation(d)
        diabetes(d)
    finish()


if __name__ == "__main__":
    main()
