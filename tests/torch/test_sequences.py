"""test_sequences.py - the language models of issue 24 against PyTorch 1.13.

- Initial weights: char_lstm and gpt (rng torch, seed 11) are bit for bit
  what `torch.manual_seed(11); Model()` of their exported code holds, and
  what the same modules built here independently hold (nn.Embedding,
  nn.LSTM, nn.TransformerEncoderLayer, GPT-2's N(0, 0.02) written out).
- A char_lstm and a gpt trained by traind (a real daemon, a text imported
  with `trainctl dataset import`): their exports load with strict=True
  into the module `export --pytorch` writes, and PyTorch's validation and
  test loss (the mean cross-entropy over every position of the same
  windows: doc/sequences.md's layout) equal `trainctl eval`'s within 1e-4,
  and its per-token accuracy is the same.
"""
import json
import math
import os
import subprocess
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import st  # noqa: E402
import harness  # noqa: E402
from textdata import corpus, text_dataset  # noqa: E402

BUILD = os.environ.get("TRAIND_BUILD_DIR", os.path.join(os.path.dirname(__file__), "../../build"))
PROBE = os.path.join(BUILD, "tests", "torch", "rng-probe")
TT = os.path.join(BUILD, "cli", "traind-train")
TOL = 1e-4

failures = []


def check(cond, what):
    print(("ok: " if cond else "FAIL: ") + what, flush=True)
    if not cond:
        failures.append(what)
    return cond


def load_code(path):
    ns = {}
    exec(compile(open(path).read(), path, "exec"), ns)
    return ns["Model"]


def same_bits(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a.view(-1).view(torch.int32) if a.dtype == torch.float32 else a,
                                                                      b.view(-1).view(torch.int32) if b.dtype == torch.float32 else b)


# ---- the modules built here, independently of pycode.c ----

class GPT(torch.nn.Module):
    """Token and position embeddings, pre-LN causal encoder layers, a final
    LayerNorm and a linear head; GPT-2's N(0, 0.02) init."""

    def __init__(self, vocab, T, layers, dim, heads, ff):
        super().__init__()
        mods = [torch.nn.Embedding(vocab, dim), st.PosEmbedding(T, dim)]
        mods += [st.EncoderLayer(dim, heads, ff, 0.0, norm_first=True, causal=True) for _ in range(layers)]
        mods += [torch.nn.LayerNorm(dim), torch.nn.Linear(dim, vocab)]
        self.net = torch.nn.Sequential(*mods)
        for m in self.modules():
            if isinstance(m, torch.nn.Linear):
                torch.nn.init.normal_(m.weight, 0.0, 0.02)
                if m.bias is not None:
                    torch.nn.init.zeros_(m.bias)
            elif isinstance(m, torch.nn.Embedding):
                torch.nn.init.normal_(m.weight, 0.0, 0.02)

    def forward(self, x):
        return self.net(x)


class CharLSTM(torch.nn.Module):
    def __init__(self, vocab, embed, hidden, layers):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Embedding(vocab, embed), st.LSTM(embed, hidden, layers),
                                       torch.nn.Linear(hidden, vocab))

    def forward(self, x):
        return self.net(x)


def check_init(root, vocab):
    T = 24
    for label, spec, make in [
        ("char_lstm", "char_lstm(embed=12,hidden=32,layers=2)", lambda: CharLSTM(vocab, 12, 32, 2)),
        ("gpt", "gpt(layers=2,dim=32,heads=4)", lambda: GPT(vocab, T, 2, 32, 4, 128)),
    ]:
        out = os.path.join(root, label + "-init.st")
        code = os.path.join(root, label + "-init.py")
        p = subprocess.run([PROBE, root, out, "dataset=words", "model=" + spec, "context=%d" % T, "val_size=10",
                            "epochs=1", "seed=11", "rng=torch"], capture_output=True, text=True)
        if not check(p.returncode == 0, "rng-probe builds the %s job (%s)" % (label, p.stderr.strip())):
            continue
        got, _ = st.load(out)
        p = subprocess.run([TT, "--data-dir", root, "--dataset", "words", "--model", spec, "--context", str(T),
                            "--val-size", "10", "--epochs", "1", "--train-size", "16", "--batch-size", "8", "--no-test",
                            "--export-pytorch", code], capture_output=True, text=True)
        check(p.returncode == 0, "traind-train --export-pytorch writes the %s code (%s)" % (label, p.stderr.strip()))
        for who, build in (("the exported code's Model()", lambda: load_code(code)()), ("the modules built here", make)):
            torch.manual_seed(11)
            ref = {"net." + k if not k.startswith("net.") else k: v for k, v in build().state_dict().items()}
            mine = {k: v for k, v in got.items() if k.startswith("net.")}
            diff = [k for k in ref if k not in mine or not same_bits(mine[k], ref[k])]
            check(set(ref) == set(mine) and not diff,
                  "%s: traind's initial weights (rng torch, seed 11) are %s's bit for bit (%d tensors; differ: %s)"
                  % (label, who, len(ref), diff[:4]))


# ---- trained by traind, evaluated by PyTorch ----

def windows(ids, starts, T):
    x = torch.tensor([ids[s:s + T] for s in starts], dtype=torch.long)
    y = torch.tensor([ids[s + 1:s + T + 1] for s in starts], dtype=torch.long)
    return x, y


def torch_eval(model, x, y, batch):
    """Mean cross-entropy over every position (and per-token accuracy)."""
    total, n, right = 0.0, 0, 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            z = model(x[i:i + batch])
            V = z.shape[-1]
            total += torch.nn.functional.cross_entropy(z.reshape(-1, V), y[i:i + batch].reshape(-1),
                                                        reduction="sum").double().item()
            right += (z.argmax(-1) == y[i:i + batch]).sum().item()
            n += y[i:i + batch].numel()
    return total / n, right / n


def check_trained(root):
    data = os.path.join(root, "daemon-data")
    os.makedirs(data)
    text = corpus(14000, seed=9)
    src = os.path.join(root, "lm.txt")
    with open(src, "w") as f:
        f.write(text)
    d = harness.Daemon(data_dir=data).start()
    try:
        d.ctl("dataset", "import", "lm", src)
        cps = json.load(open(os.path.join(data, "lm", "dataset.json")))["code_points"]
        index = {c: i for i, c in enumerate(cps)}
        ids = [index[ord(c)] for c in text]
        n_test = int(len(ids) * 0.1)
        train, test = ids[:len(ids) - n_test], ids[len(ids) - n_test:]
        T, V = 32, 25
        cut = len(train) - (V * T + 1)
        val_starts = [cut + j * T for j in range(V)]
        test_starts = [i * T for i in range((len(test) - 1) // T)]
        for label, spec in (("char_lstm", "char_lstm(embed=16,hidden=48,layers=2)"),
                            ("gpt", "gpt(layers=2,dim=48,heads=4)")):
            job = d.start_job("--dataset", "lm", "--model", spec, "--context", str(T), "--val-size", str(V),
                              "--batch-size", "16", "--epochs", "2", "--lr", "0.005", "--eval-batch-size", "7")
            rc, out, err = d.wait(job, "--state", "done")
            if not check(rc == 0, "%s trains in traind (%s)" % (label, err.strip())):
                continue
            sf = os.path.join(root, label + ".safetensors")
            py = os.path.join(root, label + ".py")
            d.ctl("export", job, "-o", sf, "--pytorch", py)
            model = load_code(py)()
            tensors, _ = st.load(sf)
            try:
                model.load_state_dict(tensors, strict=True)
                loaded = True
            except RuntimeError as e:
                print(e)
                loaded = False
            check(loaded, "%s: the export loads with strict=True into the code export --pytorch wrote" % label)
            model.eval()
            for split, starts in (("val", val_starts), ("test", test_starts)):
                ev = d.ctl_json("eval", job, "--split", split)
                x, y = windows(train if split == "val" else test, starts, T)
                loss, acc = torch_eval(model, x, y, 7)
                check(abs(loss - ev["loss"]) <= TOL and abs(acc - ev["acc"]) < 1e-9 and ev["count"] == len(starts)
                      and abs(math.exp(ev["loss"]) - ev["ppl"]) < 1e-9 * ev["ppl"],
                      "%s %s: PyTorch's loss %.6f on the same %d windows, trainctl eval's %.6f (|diff| %.2g); "
                      "per-token accuracy %.6f and %.6f" % (label, split, loss, len(starts), ev["loss"],
                                                            abs(loss - ev["loss"]), acc, ev["acc"]))
    finally:
        d.stop()
        d.cleanup()


def main():
    for prog in (PROBE, TT):
        if not os.path.exists(prog):
            print("FAIL: %s is not built" % prog)
            return 1
    root = tempfile.mkdtemp(prefix="traind-torch-seq-")
    cps = text_dataset(root, "words", corpus(12000))
    check_init(root, len(cps))
    check_trained(root)
    print("%d failures" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
