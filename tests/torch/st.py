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


def sequential(spec, in_shape):
    """The nn.Sequential a traind model SPEC describes, for inputs of
    in_shape (C, H, W) or (F,). Named architectures are not expanded here."""
    layers = []
    depth = 0
    cur = ""
    for ch in spec:
        if ch == "," and depth == 0:
            layers.append(cur.strip())
            cur = ""
            continue
        depth += ch == "("
        depth -= ch == ")"
        cur += ch
    layers.append(cur.strip())
    x = torch.zeros((2,) + tuple(in_shape))
    mods = []
    for text in layers:
        name, _, rest = text.partition("(")
        args = [a.strip() for a in rest.rstrip(")").split(",") if a.strip()]
        pos = [float(a) for a in args if "=" not in a]
        kw = dict(a.split("=") for a in args if "=" in a)
        bias = kw.get("bias", "true").lower() == "true"
        if name == "flatten":
            m = torch.nn.Flatten()
        elif name == "linear":
            m = torch.nn.Linear(x.shape[1], int(pos[0]), bias=bias)
        elif name == "relu":
            m = torch.nn.ReLU()
        elif name == "tanh":
            m = torch.nn.Tanh()
        elif name == "gelu":
            m = torch.nn.GELU()
        elif name == "dropout":
            m = torch.nn.Dropout(pos[0] if pos else float(kw.get("p", 0.5)))
        elif name == "batchnorm1d":
            m = torch.nn.BatchNorm1d(x.shape[1])
        elif name == "batchnorm2d":
            m = torch.nn.BatchNorm2d(x.shape[1])
        elif name == "conv2d":
            m = torch.nn.Conv2d(x.shape[1], int(pos[0]), int(pos[1]),
                                stride=int(kw.get("stride", 1)),
                                padding=int(kw.get("padding", 0)), bias=bias)
        elif name == "maxpool2d":
            m = torch.nn.MaxPool2d(int(pos[0]), stride=int(kw.get("stride", pos[0])))
        elif name == "avgpool2d":
            m = torch.nn.AvgPool2d(int(pos[0]), stride=int(kw.get("stride", pos[0])))
        else:
            raise ValueError("unknown layer " + name)
        mods.append(m)
        m.eval()
        with torch.no_grad():
            x = m(x)
    return torch.nn.Sequential(*mods)


LENET5 = ("conv2d(6,5,padding=2),relu,maxpool2d(2),conv2d(16,5),relu,maxpool2d(2),"
          "flatten,linear(120),relu,linear(84),relu,linear(10)")
