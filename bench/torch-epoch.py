"""torch-epoch.py - PyTorch 1.13's epoch time for the same model, data and
cores as bench-engine: MNIST pre-converted to float tensors, Adam 1e-3, one
epoch of training samples then validation samples (eval batch 128).

    /usr/bin/python3 bench/torch-epoch.py MODEL DATA_DIR THREADS EPOCHS [HIDDEN BATCH TRAIN VAL]

MODEL is lenet5 or mlp (Flatten, Linear(784, HIDDEN), ReLU, Linear(HIDDEN,
10)). The defaults are the lesson's: HIDDEN 256, BATCH 64, TRAIN 50000, VAL
10000. PyTorch runs on THREADS threads (torch.set_num_threads, and one
inter-op thread). First prints its configuration, "config ...": torch's
version and threads, OPENBLAS_NUM_THREADS and OPENBLAS_CORETYPE as given
(bench-engine sets 1 and traind's kernel: Debian's torch calls OpenBLAS for
its float32 matmuls, whose own threads fight torch's on 2 cores), the
OpenBLAS kernel torch's BLAS runs, and oneDNN (its convolutions); then one
line per epoch: "epoch SECONDS CPU_SECONDS" (the process's CPU time:
what a busy machine's waiting does not blur). With TORCH_EPOCH_GIVE_UP=SECONDS it stops
after the first epoch that took longer than that (bounded: whose estimate or
whose measured batches took longer, the batches cut short once they took
longer, at least 10 of them; printing "gave up"):
bench-engine measures a second configuration only to see whether it beats
the first, and torch's 2 threads on a busy 2-core machine can take 50 times
as long.

MODEL resnet20: He et al.'s CIFAR ResNet as traind builds it (the module
`traind-train --export-pytorch` writes: BasicBlocks, option-B shortcuts,
global average pooling) on Fashion-MNIST, SGD (lr 0.1, momentum 0.9, weight
decay 5e-4) as bench-engine trains it.

With TORCH_EPOCH_AUTOCAST=bf16 in the environment, the model's forward
passes and losses run under torch.autocast("cpu", dtype=torch.bfloat16) (the
counterpart of traind's precision bf16).

With TORCH_EPOCH_BATCHES=N (bounded time: torch's autocast runs did not
finish under a loaded machine's share) each epoch trains only its first N
batches (after 3 warm-up batches, the first epoch only) and evaluates its
first N/4 validation batches, timing every batch; the "epoch" line then
gives an estimated full epoch, the median training batch times the epoch's
training batches plus the median validation batch times its validation
batches (wall clock and process CPU time alike), and a line "batches
TRAIN_MEASURED of TRAIN_TOTAL, VAL_MEASURED of VAL_TOTAL; median train batch
MS ms, slowest MS ms" says so. The median batch is PyTorch at its best: a
batch slowed by the machine's other load does not count.
"""
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torchsetup  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "lib"))
from harness import idx  # noqa: E402

model_name, data, threads, epochs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
hidden, batch, n_train, n_val = (int(a) for a in (sys.argv[5:9] if len(sys.argv) >= 9 else (256, 64, 50000, 10000)))
give_up = float(os.environ.get("TORCH_EPOCH_GIVE_UP", "0"))
torchsetup.setup(threads)


dataset = "fashion-mnist" if model_name == "resnet20" else "mnist"
img = idx(os.path.join(data, dataset, "train-images-idx3-ubyte"))
lab = idx(os.path.join(data, dataset, "train-labels-idx1-ubyte"))
x = torch.frombuffer(bytearray(img[16:]), dtype=torch.uint8).reshape(-1, 1, 28, 28).float() / 255
y = torch.frombuffer(bytearray(lab[8:]), dtype=torch.uint8).long()
perm = torch.randperm(len(x))
xt, yt = x[perm[:n_train]], y[perm[:n_train]]
xv, yv = x[perm[len(x) - n_val:]], y[perm[len(x) - n_val:]]
nn = torch.nn
if model_name == "lenet5":
    m = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5),
                      nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(400, 120), nn.ReLU(),
                      nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))
elif model_name == "resnet20":
    class Residual(nn.Module):
        def __init__(self, body, shortcut=None):
            super().__init__()
            self.body = body
            self.shortcut = shortcut if shortcut is not None else nn.Identity()

        def forward(self, x):
            return self.body(x) + self.shortcut(x)

    def block(cin, cout, stride):
        body = nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout),
                             nn.ReLU(), nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout))
        short = None
        if stride != 1 or cin != cout:
            short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
        return [Residual(body, short), nn.ReLU()]

    layers, cin = [nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU()], 16
    for cout in (16, 32, 64):
        for b in range(3):
            layers += block(cin, cout, 2 if (b == 0 and cout != 16) else 1)
            cin = cout
    m = nn.Sequential(*layers, nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(), nn.Linear(64, 10))
else:
    m = nn.Sequential(nn.Flatten(), nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, 10))
if model_name == "resnet20":
    opt = torch.optim.SGD(m.parameters(), 0.1, momentum=0.9, weight_decay=5e-4)
else:
    opt = torch.optim.Adam(m.parameters(), 1e-3)
lf = nn.CrossEntropyLoss()
bf16 = os.environ.get("TORCH_EPOCH_AUTOCAST") == "bf16"
bounded = int(os.environ.get("TORCH_EPOCH_BATCHES", "0"))


def train_batch(b):
    opt.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = lf(m(xt[b]), yt[b])
    loss.backward()
    opt.step()


def median(v):
    v = sorted(v)
    return v[len(v) // 2]


if bounded > 0:
    n_batches, v_batches = (n_train + batch - 1) // batch, (n_val + 127) // 128
    tb, vb = min(bounded, n_batches), min(max(bounded // 4, 1), v_batches)
    print("config bounded: %d of %d training batches and %d of %d validation batches an epoch, per-batch timing,"
          " epoch = median batch x batches%s" % (tb, n_batches, vb, v_batches, ", autocast bf16" if bf16 else ""),
          flush=True)
    m.train()
    for i in range(3):   # warm-up: oneDNN's primitives, the allocator
        train_batch(torch.arange(i * batch, (i + 1) * batch) % n_train)
    for e in range(epochs):
        order = torch.randperm(n_train)
        tw, tc, vw, vc = [], [], [], []
        m.train()
        for i in range(tb):
            t0, c0 = time.time(), time.process_time()
            train_batch(order[i * batch:(i + 1) * batch])
            tw.append(time.time() - t0)
            tc.append(time.process_time() - c0)
            if give_up and len(tw) >= 10 and sum(tw) > give_up:
                break      # the estimate from the batches so far; "gave up" below
        tb_done = len(tw)
        m.eval()
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            for i in range(vb):
                t0, c0 = time.time(), time.process_time()
                lf(m(xv[i * 128:(i + 1) * 128]), yv[i * 128:(i + 1) * 128])
                vw.append(time.time() - t0)
                vc.append(time.process_time() - c0)
        print("batches %d of %d, %d of %d; median train batch %.3f ms, slowest %.3f ms" %
              (tb_done, n_batches, vb, v_batches, median(tw) * 1e3, max(tw) * 1e3), flush=True)
        est = median(tw) * n_batches + median(vw) * v_batches
        print("epoch %.4f %.4f" % (est, median(tc) * n_batches + median(vc) * v_batches), flush=True)
        if give_up and (est > give_up or sum(tw) + sum(vw) > give_up):
            print("gave up: epoch %.1f s (its measured batches %.1f s) > %.1f s" % (est, sum(tw) + sum(vw), give_up),
                  flush=True)
            break
    sys.exit(0)
for e in range(epochs):
    t0, c0 = time.time(), time.process_time()
    m.train()
    order = torch.randperm(n_train)
    for i in range(0, n_train, batch):
        b = order[i:i + batch]
        opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = lf(m(xt[b]), yt[b])
        loss.backward()
        opt.step()
    m.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for i in range(0, n_val, 128):
            lf(m(xv[i:i + 128]), yv[i:i + 128])
    took = time.time() - t0
    print("epoch %.4f %.4f" % (took, time.process_time() - c0), flush=True)
    if give_up and took > give_up:
        print("gave up: epoch %.1f s > %.1f s" % (took, give_up), flush=True)
        break
