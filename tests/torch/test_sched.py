"""test_sched.py - traind's learning-rate schedules and gradient clipping
against PyTorch 1.13 (Debian's python3-torch).

Schedules: for each SPEC, tests/sched-probe prints the rate (and momentum)
every optimizer step uses; this test drives torch.optim.lr_scheduler with the
same settings the way a training loop does (per-epoch step() after the
epoch's batches, OneCycleLR.step() after each batch, ReduceLROnPlateau.step
(metric) after each epoch, SequentialLR for 'then') and reads
param_groups[0]['lr'] and the momentum before every optimizer.step(). PyTorch
computes the rates in Python floats (double): the two sequences must be equal
as doubles, bit for bit (so float32-exact too).

Clipping: clip_grad_norm_ on the gradients of a small MLP (the lesson's
shape) after a backward pass, and on random gradients of its tensors from
tiny to huge norms: traind's coefficient is the one of the correctly
rounded norm (traind sums in double) and within 2e-6 of PyTorch's (which
sums in float32, a few ulps off for 50k gradients), and for each team size the clipped gradients are the same bits.

Both again for a portable job (SCHED_PROBE_KERNELS=portable: traind's own
cos and integer powers, pk_sumsq_f64_team's norm): the same rates bit for
bit (its cos and powers are correctly rounded but in rare cases, as glibc's
are on these arguments), and clipped gradients that are the same bits at
every team size.
"""
import os
import struct
import subprocess
import sys
import tempfile
import warnings

import numpy as np
import torch
from torch.optim import lr_scheduler as S

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import fail, failures, finish  # noqa: E402

BUILD = os.environ.get("TRAIND_BUILD_DIR", os.path.join(os.path.dirname(__file__), "../../build"))
PROBE = os.path.join(BUILD, "tests", "torch", "sched-probe")
warnings.simplefilter("ignore")
CLIP_REL = 2e-6   # PyTorch's float32-summed norm against the exact one


def part(opt, name, kw, epochs, spe):
    if name == "step":
        return S.StepLR(opt, **kw), kw.get("step_size")
    if name == "multistep":
        return S.MultiStepLR(opt, **kw), None
    if name == "exponential":
        return S.ExponentialLR(opt, **kw), None
    if name == "cosine":
        return S.CosineAnnealingLR(opt, T_max=kw["t_max"], eta_min=kw.get("eta_min", 0)), kw["t_max"]
    if name == "linear":
        return S.LinearLR(opt, **kw), kw.get("total_iters", 5)
    if name == "onecycle":
        kw = dict(kw)
        if "anneal" in kw:
            kw["anneal_strategy"] = kw.pop("anneal")
        return S.OneCycleLR(opt, epochs=epochs, steps_per_epoch=spe, **kw), None
    if name == "plateau":
        kw = dict(kw)
        mon = kw.pop("monitor", "val_loss")
        return S.ReduceLROnPlateau(opt, mode="min" if mon == "val_loss" else "max", **kw), None
    raise ValueError(name)


def torch_sequence(parts, epochs, spe, lr, optim, metrics):
    p = torch.nn.Parameter(torch.zeros(3))
    if optim == "sgd":
        opt = torch.optim.SGD([p], lr=lr, momentum=0.9)
    else:
        opt = torch.optim.Adam([p], lr=lr)
    scheds, lengths = [], []
    for name, kw in parts:
        s, n = part(opt, name, kw, epochs, spe)
        scheds.append(s)
        lengths.append(n)
    if len(scheds) > 1:
        ms, acc = [], 0
        for n in lengths[:-1]:
            acc += n
            ms.append(acc)
        sched = S.SequentialLR(opt, scheds, milestones=ms)
    else:
        sched = scheds[0]
    per_batch = parts[0][0] == "onecycle"
    plateau = parts[0][0] == "plateau"
    out = []
    for e in range(epochs):
        for _ in range(spe):
            g = opt.param_groups[0]
            mom = g["momentum"] if optim == "sgd" else g["betas"][0]
            out.append((g["lr"], mom))
            p.grad = torch.ones(3)
            opt.step()
            if per_batch:
                sched.step()
        if plateau:
            sched.step(metrics[e])
        elif not per_batch:
            sched.step()
    return out


def spec_text(parts):
    def val(v):
        if isinstance(v, list):
            return ":".join(str(x) for x in v)
        if isinstance(v, bool):
            return "true" if v else "false"
        return repr(v) if isinstance(v, float) else str(v)
    return " then ".join("%s(%s)" % (n, ",".join("%s=%s" % (k, val(v)) for k, v in kw.items()))
                         for n, kw in parts)


def check_schedule(parts, epochs, spe=3, lr=1e-3, optim="adam", metrics=None):
    text = spec_text(parts)
    metrics = metrics or [1.0] * epochs
    args = [PROBE, "lr", text, str(epochs), str(spe), repr(lr), optim, ",".join(repr(m) for m in metrics)]
    r = subprocess.run(args, capture_output=True, text=True, env=probe_env())
    if r.returncode != 0:
        fail("%s: probe failed: %s" % (text, r.stderr.strip()))
        return
    got = [tuple(float(x) for x in line.split()) for line in r.stdout.split("\n") if line]
    want = torch_sequence(parts, epochs, spe, lr, optim, metrics)
    momentum = parts[0][0] == "onecycle" and parts[0][1].get("cycle_momentum", True)
    if len(got) != len(want):
        fail("%s: %d steps, torch %d" % (text, len(got), len(want)))
        return
    for i, (g, w) in enumerate(zip(got, want)):
        if g[0] != w[0] or (momentum and g[1] != w[1]):
            fail("%s: step %d: traind lr %r momentum %r, torch %r %r"
                 % (text, i, g[0], g[1], w[0], w[1]))
            return
    print("ok  %-8s %-70s %3d steps, last lr %.6g" % (KERNELS, text, len(got), got[-1][0]))


def check_clip():
    rng = np.random.default_rng(7)
    shapes = [(64, 784), (64,), (10, 64), (10,)]   # an MLP's tensors, in order
    n = sum(int(np.prod(s)) for s in shapes)
    worst = 0
    for case in range(40):
        scale = 10.0 ** rng.uniform(-4, 3)
        max_norm = float(10.0 ** rng.uniform(-2, 1))
        if case < 4:
            # a real model's gradients: the lesson's MLP shape on random images
            torch.manual_seed(case)
            net = torch.nn.Sequential(torch.nn.Linear(784, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
            x, y = torch.rand(32, 784) * (1 + 30 * case), torch.randint(0, 10, (32,))
            torch.nn.functional.cross_entropy(net(x), y).backward()
            flat = np.concatenate([p.grad.numpy().ravel() for p in net.parameters()]).astype(np.float32)
        else:
            flat = (rng.standard_normal(n) * scale).astype(np.float32)
        ps, off = [], 0
        for s in shapes:
            k = int(np.prod(s))
            p = torch.nn.Parameter(torch.zeros(s))
            p.grad = torch.from_numpy(flat[off:off + k].reshape(s).copy())
            ps.append(p)
            off += k
        total = torch.nn.utils.clip_grad_norm_(ps, max_norm).item()
        want_coef = np.float32(max_norm) * (np.float32(1) / (np.float32(total) + np.float32(1e-6)))
        want_coef = min(want_coef, np.float32(1.0))
        with tempfile.NamedTemporaryFile(suffix=".f32") as f:
            f.write(flat.tobytes())
            f.flush()
            hashes = set()
            for threads in (1, 2, 2, 3):
                r = subprocess.run([PROBE, "clip", repr(max_norm), str(threads), f.name],
                                   capture_output=True, text=True, check=True, env=probe_env())
                norm_s, coef_s, h = r.stdout.split()
                if threads == 2 or KERNELS == "portable":   # portable: any team size
                    hashes.add(h)
                coef = np.float32(float(coef_s))
                ulps = abs(int(np.array(coef).view(np.int32)) - int(np.array(want_coef).view(np.int32)))
                exact = np.float32(np.sqrt(np.sum(flat.astype(np.float64) ** 2)))
                want_exact = min(np.float32(max_norm) * (np.float32(1) / (exact + np.float32(1e-6))),
                                 np.float32(1.0))
                worst = max(worst, ulps)
                # traind's norm is the correctly rounded float32 of the exact
                # one (summed in double); PyTorch sums in float32, a few ulps off.
                if coef != want_exact:
                    fail("clip case %d (threads %d): coefficient %r, from the exact norm %r"
                         % (case, threads, coef, want_exact))
                    return
                if abs(float(coef) - float(want_coef)) > CLIP_REL * float(want_coef):
                    fail("clip case %d (threads %d): coefficient %r, torch %r (norm %s vs %r)"
                         % (case, threads, coef, want_coef, norm_s, total))
                    return
                if abs(float(norm_s) - total) > 2e-6 * total:
                    fail("clip case %d: norm %s, torch %r" % (case, norm_s, total))
                    return
            if len(hashes) != 1:
                fail("clip case %d (%s): runs clipped differently" % (case, KERNELS))
    print("ok  %s clip_grad_norm_: 40 cases, coefficient from the correctly rounded norm, within %d ulp (%g relative) of PyTorch's" % (KERNELS, worst, CLIP_REL))


KERNELS = "openblas"


def probe_env():
    return dict(os.environ, SCHED_PROBE_KERNELS=KERNELS)


def main():
    global KERNELS
    for KERNELS in ("openblas", "portable"):
        cases()
    if not failures:
        print("all schedules equal PyTorch's bit for bit, with kernels openblas and portable")
    finish()


def cases():
    E = 9
    check_schedule([("step", {"step_size": 2, "gamma": 0.5})], E)
    check_schedule([("step", {"step_size": 3})], E)
    check_schedule([("multistep", {"milestones": [2, 5, 5], "gamma": 0.3})], E)
    check_schedule([("exponential", {"gamma": 0.9})], E)
    check_schedule([("cosine", {"t_max": 3})], 10)   # past t_max: the periodic branch
    check_schedule([("cosine", {"t_max": 7, "eta_min": 1e-5})], E, lr=0.1, optim="sgd")
    check_schedule([("linear", {})], E)
    check_schedule([("linear", {"start_factor": 0.1, "end_factor": 0.9, "total_iters": 3})], E)
    check_schedule([("onecycle", {"max_lr": 0.01})], 4, spe=7)
    check_schedule([("onecycle", {"max_lr": 0.05, "pct_start": 0.25, "anneal": "linear",
                                  "div_factor": 10.0, "final_div_factor": 100.0})], 3, spe=5)
    check_schedule([("onecycle", {"max_lr": 0.1, "base_momentum": 0.8, "max_momentum": 0.9})], 3,
                   spe=4, lr=0.1, optim="sgd")
    check_schedule([("onecycle", {"max_lr": 0.02, "cycle_momentum": False})], 2, spe=6)
    losses = [1.0, 0.9, 0.95, 0.94, 0.97, 0.89, 0.99, 0.99, 0.98, 0.97, 0.96, 0.95]
    check_schedule([("plateau", {"patience": 1, "factor": 0.5})], 12, metrics=losses)
    check_schedule([("plateau", {"patience": 0, "cooldown": 2, "threshold": 0.05, "min_lr": 2e-4})], 12,
                   metrics=losses)
    accs = [0.5, 0.6, 0.6, 0.59, 0.61, 0.61, 0.7, 0.7, 0.7, 0.7]
    check_schedule([("plateau", {"monitor": "val_acc", "patience": 1})], 10, metrics=accs)
    check_schedule([("linear", {"start_factor": 0.1, "total_iters": 2}), ("cosine", {"t_max": 3})], 6)
    check_schedule([("linear", {"start_factor": 0.25, "total_iters": 3}), ("cosine", {"t_max": 5})], 12,
                   lr=0.05, optim="sgd")
    check_schedule([("cosine", {"t_max": 2}), ("linear", {"start_factor": 0.5, "total_iters": 2}),
                    ("step", {"step_size": 1, "gamma": 0.5})], 8)
    check_schedule([("linear", {"total_iters": 2}), ("multistep", {"milestones": [1, 3]})], 7)
    check_clip()


main()
