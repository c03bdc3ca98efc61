"""test_layers.py - every layer kind of traind's engine against PyTorch 1.13.

For each case: random inputs and parameters, the same in both; traind's
forward (tests/layer-probe) in training or eval mode, and in training mode
its gradients at the input and at every parameter for a random gradient at
the output, and BatchNorm's running statistics afterwards, must agree with
PyTorch's within 1e-5 relative to the tensor's largest value. Dropout's masks
are traind's own (a counter-based stream); PyTorch is handed the mask traind
drew, and the test checks the mask's keep rate. Teams of 1 and 2 threads.
The sequence cases run once more with the portable kernels (kernels
portable, doc/portable.md; 3 threads): within the same tolerance.
The cases with a conv2d run again with `conv onednn` (oneDNN's primitives,
doc/models.md), in training and eval, at 1 and 2 threads, to the same 1e-5,
and so do a few models of 16k channels whose activations stay in oneDNN's
blocked layout between layers (BLOCKED; engine/model/dnnblk.h).
"""
import os
import subprocess
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import st  # noqa: E402
from harness import fail, failures, finish  # noqa: E402

BUILD = os.environ.get("TRAIND_BUILD_DIR", os.path.join(os.path.dirname(__file__), "../../build"))
PROBE = os.path.join(BUILD, "tests", "torch", "layer-probe")
TOL = 1e-5

worst = {}


class Masked(torch.nn.Module):
    """nn.Dropout in training mode, with a given mask."""

    def __init__(self, p, mask):
        super().__init__()
        self.p = p
        self.mask = mask

    def forward(self, x):
        return x * self.mask.reshape(x.shape).to(x.dtype) / (1.0 - self.p)


def close(what, got, want, floor=1e-7):
    got = got.reshape(want.shape).to(torch.float64)
    want = want.to(torch.float64)
    scale = want.abs().max().item() if want.numel() else 0.0
    err = (got - want).abs().max().item() if want.numel() else 0.0
    # A gradient that is exactly 0 in exact arithmetic (a bias before
    # BatchNorm, which removes any shift) is rounding noise in both: such a
    # tensor is compared at the scale of the model's largest gradient (floor).
    rel = err / max(scale, floor / TOL)
    kind = what.split(":")[0].split(" ")[0]
    worst[kind] = max(worst.get(kind, 0.0), rel)
    if not (err <= max(TOL * scale, floor)):
        fail("%s: max |traind - torch| = %.3g, max |torch| = %.3g (> %g relative)" % (what, err, scale, TOL))


def run_case(spec, in_shape, batch, train, threads, seed, kernels="openblas", seq_kernels=3, conv="gemm"):
    """in_shape: (C, H, W), (F,), ("seq", T, E) a sequence, or ("tok", T, V)
    T token ids below V; seq_kernels: the sequence layers' arithmetic (the
    config key: 3, new jobs' (in float32 the blocked attention of 2), or 1,
    the per-head form of older jobs)."""
    kind = in_shape[0] if isinstance(in_shape[0], str) else None
    if kind:
        shape_text = "%s%dx%d" % (kind, in_shape[1], in_shape[2])
        in_shape = (in_shape[1],) if kind == "tok" else (in_shape[1], in_shape[2])
    else:
        shape_text = "x".join(map(str, in_shape))
    torch.manual_seed(seed)
    net = st.sequential(spec, in_shape, tokens=kind == "tok")
    # BatchNorm with statistics and affine parameters that matter.
    for m in net.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            with torch.no_grad():
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.num_batches_tracked.fill_(3)
    x = torch.randn((batch,) + tuple(in_shape))
    meta = {}
    if kind == "tok":
        x = torch.randint(0, int(shape_text.split("x")[1]), (batch, in_shape[0]))
        meta = {"vocab": int(shape_text.split("x")[1])}
    elif kind == "seq":
        meta = {"seq": 1}
    state = {"net.%s" % k: v.clone() for k, v in net.state_dict().items()}
    with torch.no_grad():
        out_shape = net.eval()(x).shape
    dy = torch.randn(out_shape)
    flat = len(in_shape) == 1 and not kind
    if kind == "tok":
        c, h, w = 1, in_shape[0], 1
    elif kind == "seq":
        c, h, w = in_shape[1], in_shape[0], 1
    else:
        c, h, w = (in_shape[0], 1, 1) if flat else in_shape
    with tempfile.TemporaryDirectory() as d:
        src, dst = os.path.join(d, "in.safetensors"), os.path.join(d, "out.safetensors")
        tensors = {"x": x.float(), "dy": dy}
        tensors.update(state)
        meta.update({"model": spec, "input": "%d,%d,%d" % (c, h, w),
                     "flat": int(flat), "train": int(train), "threads": threads,
                     "seed": seed, "step": 5, "kernels": kernels, "seq_kernels": seq_kernels,
                     "conv": conv})
        st.save(src, tensors, meta)
        subprocess.run([PROBE, src, dst], check=True)
        got, _ = st.load(dst)
    name = "%s [%s, %d thread%s, %s%s]" % (spec, "train" if train else "eval", threads,
                                          "s" if threads > 1 else "", shape_text,
                                          (", portable" if kernels == "portable" else "") +
                                          ("" if seq_kernels == 3 else ", seq_kernels %d" % seq_kernels) +
                                          (", conv " + conv if conv != "gemm" else ""))
    mods = list(net)
    for i, m in enumerate(mods):
        if isinstance(m, torch.nn.Dropout) and train:
            mask = got["mask.%d" % i]
            rate = mask.float().mean().item()
            if mask.numel() >= 1000 and abs(rate - (1 - m.p)) > 0.05:
                failures.append("%s: dropout keeps %.3f, expected about %.3f" % (name, rate, 1 - m.p))
            mods[i] = Masked(m.p, mask)
    model = torch.nn.Sequential(*mods)
    model.train(train)
    xr = x.clone() if kind == "tok" else x.clone().requires_grad_(True)
    y = model(xr)
    close("forward: " + name, got["y"], y.detach())
    if not train:
        return
    y.backward(dy)
    if kind != "tok":
        close("input gradient: " + name, got["dx"], xr.grad)
    gscale = max([p.grad.abs().max().item() for p in model.parameters()] + [0.0])
    for k, p in model.named_parameters():
        close("gradient %s: %s" % (k, name), got["grad.net." + k], p.grad, max(1e-7, TOL * gscale))
    for k, b in model.named_buffers():
        if k.endswith("num_batches_tracked"):
            if int(got["net." + k].item()) != int(b.item()):
                failures.append("%s: %s is %d, torch %d" % (name, k, int(got["net." + k].item()), int(b.item())))
        else:
            close("buffer %s: %s" % (k, name), got["net." + k], b)


CASES = [
    ("linear(13)", (20,), 9),
    ("linear(13,bias=false)", (20,), 9),
    ("relu", (50,), 8),
    ("tanh", (50,), 8),
    ("gelu", (50,), 8),
    ("dropout(0.3)", (256,), 16),
    ("batchnorm1d", (12,), 10),
    ("batchnorm2d", (3, 5, 5), 6),
    ("conv2d(4,3)", (2, 8, 8), 5),
    ("conv2d(5,3,stride=2,padding=1)", (3, 9, 9), 4),
    ("conv2d(3,5,padding=2,bias=false)", (1, 7, 7), 3),
    ("maxpool2d(2)", (3, 8, 8), 4),
    ("maxpool2d(3,stride=2)", (2, 9, 9), 4),
    ("avgpool2d(2)", (3, 8, 8), 4),
    ("avgpool2d(3,stride=1)", (2, 6, 6), 4),
    ("flatten,linear(6)", (2, 3, 3), 4),
    (st.LENET5, (1, 28, 28), 8),
    ("flatten,linear(64),batchnorm1d,relu,dropout(0.2),linear(10)", (1, 28, 28), 16),
    ("conv2d(8,3,padding=1),batchnorm2d,gelu,maxpool2d(2),conv2d(4,3),tanh,avgpool2d(2),flatten,linear(10)",
     (3, 12, 12), 6),
    # the layers after LeNet
    ("identity", (3, 4, 4), 3),
    ("leakyrelu", (50,), 8),
    ("leakyrelu(0.2)", (3, 5, 5), 4),
    ("sigmoid", (50,), 8),
    ("silu", (50,), 8),
    ("softplus", (50,), 8),
    ("softplus(beta=2,threshold=1.5)", (50,), 8),
    ("adaptiveavgpool2d(1,1)", (4, 7, 7), 5),
    ("adaptiveavgpool2d(3,2)", (2, 7, 5), 4),
    ("adaptiveavgpool2d(4)", (2, 10, 9), 3),
    ("upsample(2)", (2, 3, 4), 3),
    ("maxpool2d(3,stride=2,padding=1)", (2, 9, 8), 4),
    ("conv2d(6,3,groups=2)", (4, 7, 7), 4),
    ("conv2d(4,3,groups=4,padding=1,bias=false)", (4, 6, 6), 3),
    ("conv2d(5,3,dilation=2,padding=2)", (3, 9, 9), 4),
    ("conv2d(4,3,stride=2,dilation=3,padding=1)", (2, 11, 10), 3),
    # blocks: BasicBlock (conv shortcut, identity shortcut), DenseNet-style
    # concatenation, a U-Net-style skip (nested)
    ("residual(conv2d(6,3,stride=2,padding=1,bias=false),batchnorm2d,relu,conv2d(6,3,padding=1,bias=false),"
     "batchnorm2d;shortcut=conv2d(6,1,stride=2,bias=false),batchnorm2d),relu", (3, 8, 8), 5),
    ("conv2d(4,3,padding=1),residual(conv2d(4,3,padding=1),batchnorm2d,relu,conv2d(4,3,padding=1),batchnorm2d),"
     "relu,adaptiveavgpool2d(1,1),flatten,linear(10)", (2, 6, 6), 4),
    ("concat(identity;batchnorm2d,relu,conv2d(3,3,padding=1));concat(identity;conv2d(2,1))".replace(";concat", ",concat"),
     (2, 5, 5), 4),
    ("conv2d(3,3,padding=1),concat(identity;maxpool2d(2),conv2d(4,3,padding=1),relu,"
     "concat(identity;maxpool2d(2),conv2d(4,1),upsample(2)),conv2d(3,1),upsample(2)),conv2d(2,1)", (1, 8, 8), 3),
    ("residual(linear(12),silu),concat(linear(3);sigmoid),linear(10)", (12,), 6),
    # sequences (issue 24): embeddings, LSTM and GRU over 16+ steps,
    # (from here on also with the portable kernels: SEQ_FIRST)
    # attention with and without the causal mask, the transformer layer
    # (dropout 0 in training: PyTorch's masks are not traind's; eval checks
    # dropout > 0 is off), layer norm, a per-position linear, last
    ("embedding(11,6)", ("tok", 9, 11), 4),
    ("embedding(11,6,padding_idx=3),posembedding", ("tok", 9, 11), 4),
    ("linear(7),relu,linear(5)", ("seq", 6, 4), 3),
    ("layernorm", ("seq", 5, 12), 4),
    ("layernorm", (12,), 5),
    ("lstm(8)", ("seq", 17, 5), 3),
    ("lstm(6,layers=2)", ("seq", 16, 4), 3),
    ("lstm(6,layers=2,dropout=0.3)", ("seq", 16, 4), 3),
    ("gru(7)", ("seq", 18, 5), 3),
    ("gru(5,layers=3)", ("seq", 16, 3), 2),
    ("lstm(9),last,linear(3)", ("seq", 16, 4), 4),
    ("multiheadattention(8,2)", ("seq", 16, 8), 3),
    ("multiheadattention(8,2,causal=true)", ("seq", 16, 8), 3),
    ("multiheadattention(12,3,true)", ("seq", 7, 12), 2),
    ("transformer_encoder_layer(8,2,16,dropout=0)", ("seq", 16, 8), 3),
    ("transformer_encoder_layer(8,2,16,dropout=0,norm_first=true,causal=true)", ("seq", 16, 8), 3),
    ("transformer_encoder_layer(8,4,12,dropout=0,causal=true)", ("seq", 9, 8), 2),
    ("embedding(13,8),posembedding,transformer_encoder_layer(8,2,16,dropout=0,norm_first=true,causal=true),"
     "layernorm,linear(13)", ("tok", 16, 13), 3),
    ("embedding(13,8),lstm(10,layers=2),linear(13)", ("tok", 16, 13), 3),
    ("embedding(20,6),gru(8),last,linear(2)", ("tok", 16, 20), 4),
    ("embedding(9,8),dropout(0.2),residual(layernorm,linear(8),gelu),linear(9)", ("tok", 12, 9), 3),
]
# dropout > 0 inside a layer: eval mode only (the masks are traind's own)
EVAL_ONLY = ("lstm(6,layers=2,dropout=0.3)", "transformer_encoder_layer(8,2,16)",
             "multiheadattention(8,2,dropout=0.4)")
CASES += [("transformer_encoder_layer(8,2,16)", ("seq", 16, 8), 3),
          ("multiheadattention(8,2,dropout=0.4)", ("seq", 16, 8), 3)]
# seq_kernels 2 runs the attention in blocks of 32 rows: sequences longer
# than a block and not a multiple of it; and seq_kernels 1 (the per-head
# form stored jobs keep) on the attention and the layer norm
CASES += [("multiheadattention(8,2,causal=true)", ("seq", 40, 8), 2),
          ("multiheadattention(8,2)", ("seq", 40, 8), 2),
          ("transformer_encoder_layer(8,2,16,dropout=0,norm_first=true,causal=true)", ("seq", 70, 8), 2),
          ("multiheadattention(8,2,causal=true)", ("seq", 40, 8), 2, 1),
          ("transformer_encoder_layer(8,2,16,dropout=0,norm_first=true,causal=true)", ("seq", 16, 8), 2, 1),
          ("layernorm", ("seq", 5, 12), 4, 1)]

# conv onednn only: the blocked graph (engine/model/dnnblk.h) keeps the
# activations between conv2d, BatchNorm2d, ReLU and residual joins of 16k
# channels in oneDNN's layout: a BasicBlock with a conv shortcut and a bias,
# BatchNorms over 16 and 32 channels (2 threads: 8 + 8, 16 + 16) and the
# global average pool; an identity shortcut whose ReLU feeds a conv2d that
# is the output; 48 channels (24 + 24: part of a group of 16 each); max
# pools blocked to blocked, and blocked to NCHW (overlapping windows)
BLOCKED = [
    ("conv2d(16,3,padding=1),batchnorm2d,relu,residual(conv2d(16,3,padding=1,bias=false),batchnorm2d,relu,"
     "conv2d(32,3,padding=1),batchnorm2d;shortcut=conv2d(32,1)),relu,adaptiveavgpool2d(1,1),flatten,linear(10)",
     (3, 8, 8), 5),
    ("conv2d(16,3,padding=1,bias=false),batchnorm2d,relu,residual(conv2d(16,3,padding=1),batchnorm2d,relu,"
     "conv2d(16,3,padding=1),batchnorm2d),relu,conv2d(4,1)", (2, 6, 6), 4),
    ("conv2d(48,3),batchnorm2d,relu,conv2d(3,1)", (2, 6, 6), 3),
    ("conv2d(16,3,padding=1),batchnorm2d,relu,maxpool2d(2),conv2d(16,3),relu,maxpool2d(3,stride=2),flatten,"
     "linear(5)", (2, 12, 12), 4),
]

SEQ_FIRST = [case[0] for case in CASES].index("embedding(11,6)")


def main():
    if not os.path.exists(PROBE):
        fail("%s is not built" % PROBE)
        finish()
    seed = 1
    n = 0
    for at, (spec, shape, batch, *sk) in enumerate(CASES):
        runs = [(t, "openblas") for t in (1, 2)] + ([(3, "portable")] if at >= SEQ_FIRST else [])
        for train in ((False,) if spec in EVAL_ONLY else (True, False)):
            for threads, kernels in runs:
                seed += 1
                n += 1
                try:
                    run_case(spec, shape, batch, train, threads, seed, kernels, *sk)
                except Exception as e:  # a crash of the probe, a missing tensor...
                    fail("%s: %r" % (spec, e))
    # conv onednn: every case with a conv2d (groups, dilation, stride,
    # padding, blocks) through oneDNN's primitives
    onednn = [c for c in CASES if "conv2d" in c[0]] + BLOCKED
    for spec, shape, batch, *_ in onednn:
        for train in (True, False):
            for threads in (1, 2):
                seed += 1
                n += 1
                try:
                    run_case(spec, shape, batch, train, threads, seed, conv="onednn")
                except Exception as e:
                    fail("%s [conv onednn]: %r" % (spec, e))
    print("largest relative difference by check: " +
          ", ".join("%s %.2g" % kv for kv in sorted(worst.items())))
    print("%d cases, %d failures" % (n, len(failures)))
    finish()


if __name__ == "__main__":
    main()
