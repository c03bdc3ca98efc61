"""test_bf16.py - precision bf16 against PyTorch 1.13's CPU autocast
(torch.autocast("cpu", dtype=torch.bfloat16)); doc/precision.md.

Exits 77, saying why, when this CPU cannot compute in bf16 (no AMX and no
AVX-512-BF16, or TRAIND_BF16=off).

1. The rounding. For a single linear or conv2d layer, traind's bf16 output,
   input gradient and weight gradient equal the float64 result of the same
   layer on the operands rounded to bfloat16 as PyTorch rounds them
   (tensor.bfloat16()) within float32 summation error: |got - exact| <=
   (k + 2) 2^-24 sum|a b| for each element (k the length of its sum). A
   rounding other than PyTorch's round-to-nearest-even (truncation, say)
   misses this by orders of magnitude.
2. The layer table (test_layers.py's CASES), teams of 1 and 2, training and
   eval, against a float64 reference of the float32 model, norm-wise per
   tensor: err(x) = ||x - ref|| / ||ref||, with u = 2^-8 (bfloat16's
   spacing; rounding one operand costs at most u/2 relative):
   - a model without linear or conv2d layers computes nothing in bf16:
     traind equals PyTorch (and its autocast, which leaves these layers in
     float32) within test_layers' 1e-5 of the largest value;
   - one linear or conv2d layer (and flatten): each product has two rounded
     operands, so err <= u per element; traind's err <= 2u, and traind and
     autocast (which also rounds its output and the bias) differ by <= 4u;
   - deeper models: a ReLU's mask or a max-pool's argmax can flip where a
     value is rounded, which moves whole gradient elements (both in traind
     and in autocast: lenet5's first-layer gradients are 5-10% from float64
     in both), so no fixed bound holds; traind must be as accurate as
     autocast: err(traind) <= 2 err(autocast) + 2u for every tensor, and the
     forward output within 4u of autocast's.
3. The lesson's runs: the MLP and lenet5, 5 epochs each through
   traind-train, bf16 against fp32: test accuracy within 0.003. The export
   of the bf16 run is float32 safetensors that PyTorch loads strictly, and
   PyTorch's autocast test accuracy of it is traind's within 0.003.
"""
import copy
import os
import re
import subprocess
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(__file__))
import st  # noqa: E402
import test_layers  # noqa: E402
import test_models  # noqa: E402

BUILD = os.environ.get("TRAIND_BUILD_DIR", os.path.join(os.path.dirname(__file__), "../../build"))
DATA = os.environ.get("TRAIND_DATA_DIR", os.path.join(os.path.dirname(__file__), "../../data"))
PROBE = os.path.join(BUILD, "tests", "torch", "layer-probe")
TT = os.path.join(BUILD, "cli", "traind-train")
U = 2.0 ** -8
FP32_TOL = 1e-5
ACC_TOL = 0.003

failures = []
worst = {}


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, flush=True)
    return cond


def probe(spec, in_shape, tensors, train, threads, seed, conv="gemm", seq_kernels=None):
    """in_shape (C, H, W), (F,), or with seq_kernels a sequence (T, E)."""
    flat = len(in_shape) == 1
    meta = {}
    if seq_kernels is not None:
        flat, (c, h, w) = False, (in_shape[1], in_shape[0], 1)
        meta = {"seq": 1, "seq_kernels": seq_kernels}
    else:
        c, h, w = (in_shape[0], 1, 1) if flat else in_shape
    meta.update({"model": spec, "input": "%d,%d,%d" % (c, h, w), "flat": int(flat), "train": int(train),
                 "threads": threads, "seed": seed, "step": 5, "precision": "bf16", "conv": conv})
    with tempfile.TemporaryDirectory() as d:
        src, dst = os.path.join(d, "in.safetensors"), os.path.join(d, "out.safetensors")
        st.save(src, tensors, meta)
        p = subprocess.run([PROBE, src, dst], capture_output=True, text=True)
        if p.returncode == 77:
            print("SKIP: " + p.stderr.strip().replace("layer-probe: ", ""), flush=True)
            sys.exit(77)
        if p.returncode != 0:
            raise RuntimeError("layer-probe: " + p.stderr.strip())
        return st.load(dst)[0]


def err(x, ref, floor=0.0):
    x, ref = x.reshape(ref.shape).double(), ref.double()
    return ((x - ref).norm() / max(ref.norm().item(), floor, 1e-300)).item()


def setup(spec, shape, batch, seed):
    torch.manual_seed(seed)
    net = st.sequential(spec, shape)
    for m in net:
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            with torch.no_grad():
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.num_batches_tracked.fill_(3)
    x = torch.randn((batch,) + tuple(shape))
    with torch.no_grad():
        dy = torch.randn(net.eval()(x).shape)
    tensors = {"x": x, "dy": dy}
    tensors.update({"net.%s" % k: v.clone() for k, v in net.state_dict().items()})
    return net, x, dy, tensors


def bf(t):
    return t.bfloat16().double()


# ---- 1. the rounding ---------------------------------------------------------

ROUNDING = [
    ("linear(13)", (200,), 9),
    ("linear(40,bias=false)", (784,), 16),
    ("conv2d(4,3)", (2, 8, 8), 5),
    ("conv2d(6,5,padding=2)", (1, 28, 28), 3),
    ("conv2d(5,3,stride=2,padding=1,bias=false)", (3, 9, 9), 4),
]


def rounding_case(spec, shape, batch, threads, seed, conv="gemm"):
    net, x, dy, tensors = setup(spec, shape, batch, seed)
    got = probe(spec, shape, tensors, True, threads, seed, conv)
    name = "%s, %d thread%s%s" % (spec, threads, "s" if threads > 1 else "", ", conv " + conv if conv != "gemm" else "")
    layer = net[0]
    k_fwd = layer.weight[0].numel()                  # in * k * k
    # the same layer in float64 on bf16-rounded operands (the bias is added
    # in float32, not rounded), and on their absolute values (sum |a b|)
    exact, bound = copy.deepcopy(net).double(), copy.deepcopy(net).double()
    with torch.no_grad():
        exact[0].weight.copy_(bf(layer.weight))
        bound[0].weight.copy_(bf(layer.weight).abs())
        if layer.bias is not None:
            bound[0].bias.zero_()
    xe = bf(x).requires_grad_(True)
    xb = bf(x).abs().requires_grad_(True)
    ye, yb = exact(xe), bound(xb)
    ye.backward(bf(dy))
    yb.backward(bf(dy).abs())
    # terms of each sum: dx (out channels x kernel area), dW (batch x output positions)
    k_dx = layer.weight.shape[0] * (layer.weight[0, 0].numel() if layer.weight.dim() == 4 else 1)
    k_dw = ye.numel() // ye.shape[1]
    for what, g, e, b, k in (("output", got["y"], ye, yb, k_fwd),
                             ("input gradient", got["dx"], xe.grad, xb.grad, k_dx),
                             ("weight gradient", got["grad.net.0.weight"], exact[0].weight.grad,
                              bound[0].weight.grad, k_dw)):
        g = g.reshape(e.shape).double()
        excess = ((g - e.detach()).abs() - (k + 2) * 2.0 ** -24 * b.detach().abs()).max().item()
        rel = ((g - e.detach()).abs().max() / e.detach().abs().max()).item()
        worst["rounding"] = max(worst.get("rounding", 0.0), rel)
        check(excess <= 1e-30, "rounding: %s of %s: |traind - float64 on bf16 operands| exceeds "
              "(k + 2) 2^-24 sum|a b| by %.3g (max relative difference %.3g)" % (what, name, excess, rel))
    if layer.bias is not None:   # a column sum of the float32 gradient: no rounding to bf16
        want = dy.double().sum(dim=[d for d in range(dy.dim()) if d != 1])
        check(err(got["grad.net.0.bias"], want) <= FP32_TOL,
              "rounding: bias gradient of %s is the float32 column sum" % name)


# ---- 2. the layer table ---------------------------------------------------------

def has_product(spec):
    return "linear" in spec or "conv2d" in spec or spec == st.LENET5


def products(spec):
    return sum(spec.count(p) for p in ("linear", "conv2d")) + (5 if spec == st.LENET5 else 0)


def table_case(spec, shape, batch, train, threads, seed):
    net, x, dy, tensors = setup(spec, shape, batch, seed)
    got = probe(spec, shape, tensors, train, threads, seed)
    name = "%s [%s, %d thread%s]" % (spec, "train" if train else "eval", threads, "s" if threads > 1 else "")
    mods = list(net)
    for i, m in enumerate(mods):
        if isinstance(m, torch.nn.Dropout) and train:
            mods[i] = test_layers.Masked(m.p, got["mask.%d" % i])
    model = torch.nn.Sequential(*mods)
    model.train(train)
    ref = copy.deepcopy(model).double()
    xr = x.double().requires_grad_(True)
    yr = ref(xr)
    xa = x.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ya = model(xa)
    tensors = [("output", got["y"], ya.detach().float(), yr.detach(), 0.0)]
    if train:
        yr.backward(dy.double())
        ya.float().backward(dy)   # as a float32 loss's gradient reaches autocast's output
        tensors.append(("input gradient", got["dx"], xa.grad, xr.grad, 0.0))
        # a gradient that is 0 in exact arithmetic (a bias before BatchNorm)
        # is measured against the model's largest gradient
        floor = 1e-3 * max([p.grad.norm().item() for p in ref.parameters()] + [0.0])
        for (k, p), (_, pr) in zip(model.named_parameters(), ref.named_parameters()):
            tensors.append(("gradient " + k, got["grad.net." + k], p.grad, pr.grad, floor))
        for (k, b), (_, br) in zip(model.named_buffers(), ref.named_buffers()):
            if not k.endswith("num_batches_tracked"):
                tensors.append(("buffer " + k, got["net." + k], b, br, 0.0))
    for what, g, a, r, floor in tensors:
        if not has_product(spec):
            scale = r.abs().max().item()
            for other, v in (("PyTorch", r), ("autocast", a)):
                d = (g.reshape(v.shape).double() - v.double()).abs().max().item()
                check(d <= max(FP32_TOL * scale, 1e-7),
                      "%s, %s: no product, so float32 as before: max |traind - %s| = %.3g (max %.3g)"
                      % (name, what, other, d, scale))
            continue
        et, ea, dta = err(g, r, floor), err(a, r, floor), err(g, a.double(), max(r.norm().item(), floor))
        kind = "one product" if products(spec) == 1 else "deep"
        worst[kind + " traind"] = max(worst.get(kind + " traind", 0.0), et)
        worst[kind + " autocast"] = max(worst.get(kind + " autocast", 0.0), ea)
        if products(spec) == 1:
            check(et <= 2 * U, "%s, %s: err(traind) %.3g > 2u" % (name, what, et))
            check(dta <= 4 * U, "%s, %s: ||traind - autocast|| / ||ref|| = %.3g > 4u" % (name, what, dta))
        else:
            check(et <= 2 * ea + 2 * U, "%s, %s: err(traind) %.3g > 2 err(autocast) %.3g + 2u"
                  % (name, what, et, ea))
            if what == "output":
                check(dta <= 4 * U, "%s, output: ||traind - autocast|| / ||ref|| = %.3g > 4u" % (name, dta))


# ---- 2b. the sequence layers with seq_kernels 3 ----------------------------------

# seq_kernels 3 (doc/sequences.md): a bf16 job's attention projections and
# feed-forward products in bf16, the per-head products and everything else
# float32; seq_kernels 2 keeps them all float32 (stored jobs' bits). Over
# 40 positions (two of the attention's blocks of rows) and 2 teams.
SEQ_BF16 = [
    ("multiheadattention(16,2,causal=true)", (40, 16), 3),
    ("transformer_encoder_layer(16,2,32,dropout=0,norm_first=true,causal=true)", (40, 16), 3),
    ("transformer_encoder_layer(16,4,24,dropout=0)", (40, 16), 2),
]


def seq_case(spec, shape, batch, threads, seed):
    """Against float64 and autocast (which rounds the per-head products too):
    err(traind) <= 2 err(autocast) + 2u for the output and every gradient,
    and the products really bf16 (err(traind) of the output over u/16, where
    float32 products give about 1e-7); with seq_kernels 2, float32: within
    1e-5 of float64 as before."""
    net, x, dy, tensors = setup(spec, shape, batch, seed)
    name = "%s [train, %d thread%s, seq %dx%d]" % (spec, threads, "s" if threads > 1 else "", *shape)
    ref = copy.deepcopy(net).double().train()
    xr = x.double().requires_grad_(True)
    yr = ref(xr)
    yr.backward(dy.double())
    model = net.train()
    xa = x.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ya = model(xa)
    ya.float().backward(dy)
    floor = 1e-3 * max(p.grad.norm().item() for p in ref.parameters())
    for sk in (3, 2):
        got = probe(spec, shape, tensors, True, threads, seed, seq_kernels=sk)
        rows = [("output", got["y"], ya.detach().float(), yr.detach(), 0.0),
                ("input gradient", got["dx"], xa.grad, xr.grad, 0.0)]
        for (k, p), (_, pr) in zip(model.named_parameters(), ref.named_parameters()):
            rows.append(("gradient " + k, got["grad.net." + k], p.grad, pr.grad, floor))
        for what, g, a, r, fl in rows:
            et, ea = err(g, r, fl), err(a, r, fl)
            if sk == 2:
                d = (g.reshape(r.shape).double() - r).abs().max().item()
                check(d <= max(FP32_TOL * r.abs().max().item(), 1e-7),
                      "%s, %s, seq_kernels 2: float32 as before: max |traind - float64| = %.3g" % (name, what, d))
                continue
            worst["seq traind"] = max(worst.get("seq traind", 0.0), et)
            worst["seq autocast"] = max(worst.get("seq autocast", 0.0), ea)
            check(et <= 2 * ea + 2 * U, "%s, %s: err(traind) %.3g > 2 err(autocast) %.3g + 2u"
                  % (name, what, et, ea))
            if what == "output":
                check(et > U / 16, "%s, output: err(traind) %.3g: its products are not bf16" % (name, et))


# ---- 3. the lesson's runs -------------------------------------------------------

def run(args):
    p = subprocess.run([TT] + args, capture_output=True, text=True, env=dict(os.environ, TRAIND_DATA_DIR=DATA))
    print(p.stdout, p.stderr, flush=True)
    if p.returncode != 0:
        raise RuntimeError("traind-train %s: %s" % (" ".join(args), p.stderr.strip()))
    m = re.search(r"test_loss: ([0-9.]+) \| test_acc: ([0-9.]+)", p.stdout)
    return float(m.group(1)), float(m.group(2))


def lesson_runs(d):
    x, y = test_models.test_set("mnist")
    for label, spec, model in (("the lesson's MLP", "flatten,linear(256),relu,linear(10)", []),
                               ("lenet5", st.LENET5, ["--model", "lenet5"])):
        _, a32 = run(["--epochs", "5"] + model)
        out = os.path.join(d, "bf16.safetensors")
        l16, a16 = run(["--epochs", "5", "--precision", "bf16", "--export", out] + model)
        check(abs(a16 - a32) <= ACC_TOL, "%s, 5 epochs: test accuracy bf16 %.4f, fp32 %.4f (within %g)"
              % (label, a16, a32, ACC_TOL))
        print("%s, 5 epochs: test accuracy bf16 %.4f, fp32 %.4f" % (label, a16, a32), flush=True)
        tensors, meta = st.load(out)
        check(meta.get("format") == "pt" and all(t.dtype == torch.float32 for t in tensors.values()),
              "%s: the bf16 job's export is float32 safetensors (format pt)" % label)
        m = test_models.Model(spec)
        try:
            m.load_state_dict(tensors, strict=True)
        except RuntimeError as e:
            check(False, "%s: PyTorch loads the bf16 job's export strictly (%s)" % (label, e))
            continue
        with torch.autocast("cpu", dtype=torch.bfloat16):
            tl, ta = test_models.torch_eval(m, x, y)
        print("%s: traind bf16 test loss %.4f acc %.4f; PyTorch autocast on its export %.4f %.4f"
              % (label, l16, a16, tl, ta), flush=True)
        check(abs(ta - a16) <= ACC_TOL, "%s: PyTorch's autocast test accuracy of the export %.4f is traind's "
              "bf16 %.4f within %g" % (label, ta, a16, ACC_TOL))


def main():
    if not os.path.exists(PROBE):
        print("FAIL: %s is not built" % PROBE)
        return 1
    seed = 100
    for spec, shape, batch in ROUNDING:
        for threads in (1, 2):
            seed += 1
            rounding_case(spec, shape, batch, threads, seed)
            if "conv2d" in spec:   # conv onednn: oneDNN's bf16 convolutions (doc/models.md)
                rounding_case(spec, shape, batch, threads, seed, "onednn")
    for spec, shape, batch in SEQ_BF16:
        for threads in (1, 2):
            seed += 1
            seq_case(spec, shape, batch, threads, seed)
    seq_cases = [c for c in test_layers.CASES if isinstance(c[1][0], str)]
    if seq_cases:
        # (the table's sequence cases, issue 24: in a bf16 job their linear
        # layers' products are bf16, the recurrent layers' stay float32,
        # doc/precision.md; the attention and transformer layers: SEQ_BF16)
        print("skip: %d sequence cases of the layer table (%s...): bf16 on sequence models: SEQ_BF16 only"
              % (len(seq_cases), seq_cases[0][0]), flush=True)
    for spec, shape, batch, *_ in test_layers.CASES:
        if isinstance(shape[0], str):
            continue
        for train in (True, False):
            for threads in (1, 2):
                seed += 1
                try:
                    table_case(spec, shape, batch, train, threads, seed)
                except SystemExit:
                    raise
                except Exception as e:
                    check(False, "%s: %r" % (spec, e))
    print("largest: " + ", ".join("%s %.3g" % kv for kv in sorted(worst.items())), flush=True)
    if os.environ.get("BF16_LESSON", "1") != "0":
        with tempfile.TemporaryDirectory() as d:
            lesson_runs(d)
    print("%d failures" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
