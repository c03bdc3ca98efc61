"""st.py - read and write safetensors files with torch tensors (the tests
have no safetensors package: Debian 12 does not ship one)."""
import json
import struct

import torch

DTYPES = {"F32": torch.float32, "F64": torch.float64, "I64": torch.int64,
          "I32": torch.int32, "U8": torch.uint8}
NAMES = {v: k for k, v in DTYPES.items()}
# Read only: torch 1.13 has no uint32, and traind's U32 tensors (indices) fit int32.
LOAD_ONLY = {"U32": torch.int32}


def load(path):
    """(tensors by name, metadata) of a safetensors file."""
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    body = data[8 + n:]
    out = {}
    for name, e in header.items():
        b, end = e["data_offsets"]
        dt = DTYPES.get(e["dtype"], LOAD_ONLY.get(e["dtype"]))
        if dt is None:
            continue
        raw = bytearray(body[b:end])
        t = torch.frombuffer(raw, dtype=dt) if raw else torch.empty(0, dtype=dt)
        out[name] = t.reshape(e["shape"]).clone()
    return out, meta


def save(path, tensors, meta=None):
    """Write tensors (name -> contiguous CPU tensor) and string metadata."""
    header = {}
    chunks = []
    off = 0
    for name, t in tensors.items():
        t = t.detach().contiguous().cpu()
        raw = t.numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": NAMES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [off, off + len(raw)]}
        chunks.append(raw)
        off += len(raw)
    if meta:
        header["__metadata__"] = {k: str(v) for k, v in meta.items()}
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for c in chunks:
            f.write(c)


class Residual(torch.nn.Module):
    """A residual block: body(x) + shortcut(x), the shortcut nn.Identity()
    when the SPEC gives none."""

    def __init__(self, body, shortcut=None):
        super().__init__()
        self.body = body
        self.shortcut = shortcut if shortcut is not None else torch.nn.Identity()

    def forward(self, x):
        return self.body(x) + self.shortcut(x)


class Concat(torch.nn.Module):
    """A concat block: its branches' outputs along dim 1."""

    def __init__(self, *branches):
        super().__init__()
        self.branches = torch.nn.ModuleList(branches)

    def forward(self, x):
        return torch.cat([b(x) for b in self.branches], dim=1)


def causal_mask(t):
    """PyTorch's boolean attention mask that hides the positions after each."""
    return torch.triu(torch.ones(t, t, dtype=torch.bool), 1)


class LSTM(torch.nn.LSTM):
    """nn.LSTM(batch_first=True) as a layer: its output at every position."""

    def __init__(self, input_size, hidden_size, num_layers=1, dropout=0.0):
        super().__init__(input_size, hidden_size, num_layers, batch_first=True, dropout=dropout)

    def forward(self, x):
        return super().forward(x)[0]


class GRU(torch.nn.GRU):
    """nn.GRU(batch_first=True) as a layer: its output at every position."""

    def __init__(self, input_size, hidden_size, num_layers=1, dropout=0.0):
        super().__init__(input_size, hidden_size, num_layers, batch_first=True, dropout=dropout)

    def forward(self, x):
        return super().forward(x)[0]


class Last(torch.nn.Module):
    """A sequence's last position."""

    def forward(self, x):
        return x[:, -1]


class PosEmbedding(torch.nn.Embedding):
    """Learned positions: x + weight[:T]."""

    def forward(self, x):
        return x + self.weight[:x.shape[1]]


class SelfAttention(torch.nn.MultiheadAttention):
    """nn.MultiheadAttention(batch_first=True) on x, x, x, causal or not."""

    def __init__(self, embed_dim, num_heads, causal=False, dropout=0.0):
        super().__init__(embed_dim, num_heads, dropout=dropout, batch_first=True)
        self.causal = causal

    def forward(self, x):
        mask = causal_mask(x.shape[1]) if self.causal else None
        return super().forward(x, x, x, attn_mask=mask, need_weights=False)[0]


class EncoderLayer(torch.nn.TransformerEncoderLayer):
    """nn.TransformerEncoderLayer(batch_first=True), causal or not."""

    def __init__(self, d_model, nhead, dim_feedforward, dropout=0.1, norm_first=False, causal=False):
        super().__init__(d_model, nhead, dim_feedforward, dropout, batch_first=True,
                         norm_first=norm_first)
        self.causal = causal

    def forward(self, x):
        return super().forward(x, src_mask=causal_mask(x.shape[1]) if self.causal else None)


def split_top(text, sep):
    """text cut at `sep` outside parentheses."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch == sep and depth == 0:
            parts.append(cur.strip())
            cur = ""
            continue
        depth += ch == "("
        depth -= ch == ")"
        cur += ch
    parts.append(cur.strip())
    return parts


def layer(text, x):
    """The module of one layer (or block) of a SPEC for inputs like x."""
    name, _, rest = text.partition("(")
    name = name.strip()
    inner = rest[:rest.rindex(")")] if rest else ""
    if name in ("residual", "concat"):
        branches = split_top(inner, ";")
        seqs = []
        for br in branches:
            if br.startswith("shortcut"):
                br = br.partition("=")[2].strip()
            seqs.append(sequential_for(br, x))
        return Residual(*seqs) if name == "residual" else Concat(*seqs)
    args = [a.strip() for a in split_top(inner, ",") if a.strip()]
    pos = [float(a) for a in args if "=" not in a and a.lower() not in ("true", "false")]
    kw = dict((k.strip(), v.strip()) for k, v in (a.split("=") for a in args if "=" in a))
    bias = kw.get("bias", "true").lower() == "true"
    nn = torch.nn
    if name == "flatten":
        return nn.Flatten()
    if name == "identity":
        return nn.Identity()
    if name == "linear":
        return nn.Linear(x.shape[-1], int(pos[0]), bias=bias)
    if name == "relu":
        return nn.ReLU()
    if name == "leakyrelu":
        return nn.LeakyReLU(pos[0] if pos else float(kw.get("negative_slope", 0.01)))
    if name == "tanh":
        return nn.Tanh()
    if name == "sigmoid":
        return nn.Sigmoid()
    if name == "silu":
        return nn.SiLU()
    if name == "softplus":
        beta = pos[0] if pos else float(kw.get("beta", 1))
        thr = pos[1] if len(pos) > 1 else float(kw.get("threshold", 20))
        return nn.Softplus(beta=beta, threshold=thr)
    if name == "gelu":
        return nn.GELU()
    if name == "dropout":
        return nn.Dropout(pos[0] if pos else float(kw.get("p", 0.5)))
    if name == "batchnorm1d":
        return nn.BatchNorm1d(x.shape[1])
    if name == "batchnorm2d":
        return nn.BatchNorm2d(x.shape[1])
    if name == "conv2d":
        return nn.Conv2d(x.shape[1], int(pos[0]), int(pos[1]), stride=int(kw.get("stride", 1)),
                         padding=int(kw.get("padding", 0)), dilation=int(kw.get("dilation", 1)),
                         groups=int(kw.get("groups", 1)), bias=bias)
    if name == "maxpool2d":
        return nn.MaxPool2d(int(pos[0]), stride=int(kw.get("stride", pos[0])),
                            padding=int(kw.get("padding", 0)))
    if name == "avgpool2d":
        return nn.AvgPool2d(int(pos[0]), stride=int(kw.get("stride", pos[0])))
    if name == "adaptiveavgpool2d":
        return nn.AdaptiveAvgPool2d((int(pos[0]), int(pos[1] if len(pos) > 1 else pos[0])))
    if name == "upsample":
        return nn.Upsample(scale_factor=int(pos[0] if pos else kw["scale_factor"]), mode="nearest")
    true = ("true", "1")
    if name == "embedding":
        pad = kw.get("padding_idx")
        return nn.Embedding(int(pos[0]), int(pos[1]), padding_idx=int(pad) if pad is not None else None)
    if name == "posembedding":
        return PosEmbedding(int(pos[0]) if pos else x.shape[1], x.shape[2])
    if name in ("lstm", "gru"):
        cls = LSTM if name == "lstm" else GRU
        return cls(x.shape[2], int(pos[0]), int(kw.get("layers", 1)), float(kw.get("dropout", 0)))
    if name == "last":
        return Last()
    if name == "layernorm":
        return nn.LayerNorm(x.shape[-1])
    if name == "multiheadattention":
        causal = kw.get("causal", "false").lower() in true or (len(args) > 2 and "=" not in args[2]
                                                                and args[2].lower() in true)
        return SelfAttention(int(pos[0]), int(pos[1]), causal, float(kw.get("dropout", 0)))
    if name == "transformer_encoder_layer":
        return EncoderLayer(int(pos[0]), int(pos[1]), int(pos[2]), float(kw.get("dropout", 0.1)),
                            kw.get("norm_first", "false").lower() in true,
                            kw.get("causal", "false").lower() in true)
    raise ValueError("unknown layer " + name)


def sequential_for(spec, x):
    mods = []
    for text in split_top(spec, ","):
        m = layer(text, x)
        mods.append(m)
        m.eval()
        with torch.no_grad():
            x = m(x)
    return torch.nn.Sequential(*mods)


def sequential(spec, in_shape, tokens=False):
    """The nn.Sequential a traind model SPEC describes (blocks as Residual
    and Concat modules), for inputs of in_shape (C, H, W), (F,), a sequence
    (T, E), or with tokens (T,) token ids. Named architectures are not
    expanded here."""
    if tokens:
        return sequential_for(spec, torch.zeros((2,) + tuple(in_shape), dtype=torch.long))
    return sequential_for(spec, torch.zeros((2,) + tuple(in_shape)))


LENET5 = ("conv2d(6,5,padding=2),relu,maxpool2d(2),conv2d(16,5),relu,maxpool2d(2),"
          "flatten,linear(120),relu,linear(84),relu,linear(10)")
