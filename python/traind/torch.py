"""traind's exports in PyTorch, without the safetensors package (Debian's
PyTorch 1.13 has none).

    import traind.torch
    state = traind.torch.load("model.safetensors")   # an OrderedDict of tensors
    model.load_state_dict(state, strict=True)

load() reads the safetensors format itself (an 8-byte little-endian header
length, a JSON header naming each tensor's dtype, shape and byte range, the
data), checking every field, and makes each tensor with torch.frombuffer. A
file of traind's (`trainctl export`, Client.export) holds the model's
state_dict under PyTorch's names, so it loads strict into the same
architecture.
"""
import collections
import json
import os
import struct

import torch as _torch

__all__ = ["load", "module"]

_DTYPES = {
    "F64": (_torch.float64, 8), "F32": (_torch.float32, 4), "F16": (_torch.float16, 2),
    "BF16": (_torch.bfloat16, 2), "I64": (_torch.int64, 8), "I32": (_torch.int32, 4),
    "I16": (_torch.int16, 2), "I8": (_torch.int8, 1), "U8": (_torch.uint8, 1), "BOOL": (_torch.bool, 1),
}
_HEADER_MAX = 100 << 20


class FormatError(ValueError):
    """The bytes are not a safetensors file (the message says where)."""


def load(source, device="cpu"):
    """The state dict of a safetensors file: `source` a path, or the file's
    bytes (Client.export without a path). An OrderedDict name -> tensor in
    the file's order (by offset), on `device`. FormatError names what is
    wrong with a file that is not safetensors."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        blob, what = bytes(source), "the data"
    else:
        what = os.fspath(source)
        with open(what, "rb") as f:
            blob = f.read()
    if len(blob) < 8:
        raise FormatError("%s: %d bytes, too short for safetensors" % (what, len(blob)))
    (n,) = struct.unpack("<Q", blob[:8])
    if n > _HEADER_MAX or 8 + n > len(blob):
        raise FormatError("%s: the header claims %d bytes of %d" % (what, n, len(blob) - 8))
    try:
        header = json.loads(blob[8:8 + n].decode("utf-8"))
    except ValueError as e:
        raise FormatError("%s: the header is not JSON: %s" % (what, e)) from e
    if not isinstance(header, dict):
        raise FormatError("%s: the header is not a JSON object" % what)
    data = memoryview(blob)[8 + n:]
    entries = []
    for name, t in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(t, dict) or set(t) - {"dtype", "shape", "data_offsets"}:
            raise FormatError("%s: tensor %r: expected dtype, shape, data_offsets" % (what, name))
        if t.get("dtype") not in _DTYPES:
            raise FormatError("%s: tensor %r: dtype %r is not one of %s" % (what, name, t.get("dtype"), ", ".join(_DTYPES)))
        shape, off = t.get("shape"), t.get("data_offsets")
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise FormatError("%s: tensor %r: bad shape %r" % (what, name, shape))
        if (not isinstance(off, list) or len(off) != 2 or not all(isinstance(o, int) for o in off)
                or not 0 <= off[0] <= off[1] <= len(data)):
            raise FormatError("%s: tensor %r: data_offsets %r outside the %d bytes of data" % (what, name, off, len(data)))
        dtype, size = _DTYPES[t["dtype"]]
        count = 1
        for d in shape:
            count *= d
        if off[1] - off[0] != count * size:
            raise FormatError("%s: tensor %r: %d bytes for shape %s of %s (%d expected)"
                              % (what, name, off[1] - off[0], shape, t["dtype"], count * size))
        entries.append((off[0], name, dtype, shape, off))
    out = collections.OrderedDict()
    for _, name, dtype, shape, (a, b) in sorted(entries):
        buf = bytearray(data[a:b])   # a copy of its own: writable, aligned
        flat = _torch.frombuffer(buf, dtype=dtype) if buf else _torch.empty(0, dtype=dtype)
        out[name] = flat.reshape(shape).to(device)
    return out


def module(path_or_job, client=None):
    """The nn.Module of an export, with its weights.

    Needs traind's `export --pytorch` (issue 22: the architecture written
    out as PyTorch code), which this traind does not have yet; until it
    lands this raises NotImplementedError. Meanwhile build the same
    architecture yourself (the job's "model" field spells its layers) and
    load load(path) into it with strict=True."""
    raise NotImplementedError(
        "traind.torch.module needs traind's `export --pytorch` (issue 22), which this traind does not have: "
        "build the architecture yourself (Client.status(job)['model'] spells its layers, e.g. "
        "flatten,linear(256),relu,linear(10) is nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), "
        "nn.Linear(256, 10))) and model.load_state_dict(traind.torch.load(path), strict=True)")
