"""traind's models in PyTorch, without the safetensors package (Debian's
PyTorch 1.13 has none).

    import traind.torch
    model = traind.torch.module(job)                 # nn.Module, weights loaded, eval mode
    model = traind.torch.module("model.safetensors") # + model.py from `trainctl export --pytorch`
    state = traind.torch.load("model.safetensors")   # an OrderedDict of tensors
    net.load_state_dict(state, strict=True)

load() reads the safetensors format itself (an 8-byte little-endian header
length, a JSON header naming each tensor's dtype, shape and byte range, the
data), checking every field, and makes each tensor with torch.frombuffer. A
file of traind's (`trainctl export`, Client.export) holds the model's
state_dict under PyTorch's names, so it loads strict into the same
architecture. module() builds that architecture from the PyTorch code
traind writes for it (the Export method's pytorch) and loads the weights.
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


def module(path_or_job, client=None, code=None, epoch=None, best=None, eval=True):
    """The nn.Module of a traind model with its weights loaded (strict).

    path_or_job is a job id (an int): the model and its PyTorch code come
    from traind (the Export method with pytorch, as `trainctl export JOB
    --pytorch`; `epoch` or `best` choose the checkpoint as there), through
    `client` (default traind.Client()). Or it is the path of an export
    (safetensors): the code is `code` (the path of the file `trainctl export
    --pytorch FILE.py` wrote, or its text), default the file beside the
    export with the suffix .py (model.safetensors -> model.py).

    The module is in eval mode (BatchNorm's running statistics, no Dropout)
    unless eval=False; its class is the code's `Model`, whose `input_shape`
    is (C, H, W). The code is traind's own: run it only from a traind you
    trust, as you would any Python file."""
    if isinstance(path_or_job, bool) or not isinstance(path_or_job, (int, str, bytes, os.PathLike)):
        raise TypeError("traind.torch.module: a job id (int) or an export's path, not %r" % (path_or_job,))
    if isinstance(path_or_job, int):
        if code is not None:
            raise TypeError("traind.torch.module: code= goes with an export's path; a job's code comes from traind")
        if client is None:
            from .client import Client
            with Client() as c:
                return module(path_or_job, client=c, epoch=epoch, best=best, eval=eval)
        weights, text, what = _export_with_code(client, path_or_job, epoch, best)
    else:
        if epoch is not None or best is not None:
            raise TypeError("traind.torch.module: epoch= and best= choose a job's checkpoint; a file is one already")
        what = os.fsdecode(path_or_job)
        weights = load(what)
        if code is None:
            code = os.path.splitext(what)[0] + ".py"
            if not os.path.exists(code):
                raise FileNotFoundError(
                    "%s: no PyTorch code beside it (%s): write it with `trainctl export JOB --pytorch %s`, "
                    "or pass code= (its path or its text), or module(JOB) with the job's id"
                    % (what, code, os.path.basename(code)))
        if isinstance(code, (str, os.PathLike)) and "\n" not in os.fspath(code):
            with open(code, encoding="utf-8") as f:
                text = f.read()
        else:
            text = code
    ns = {"__name__": "traind_model"}
    exec(compile(text, "<traind model of %s>" % what, "exec"), ns)
    cls = ns.get("Model")
    if not isinstance(cls, type) or not issubclass(cls, _torch.nn.Module):
        raise FormatError("%s: the PyTorch code defines no nn.Module named Model" % what)
    model = cls()
    model.load_state_dict(weights, strict=True)
    return model.eval() if eval else model


def _export_with_code(client, job, epoch, best):
    """(state dict, code, what) of a job's checkpoint from traind, the
    bytes checked against the size and SHA-256 traind announced."""
    import base64
    import hashlib
    r = client.call("Export", {"id": int(job), "epoch": epoch, "best": best, "pytorch": True})
    data = base64.b64decode(r["data"])
    if len(data) != r["size"] or r["sha256"].split(":")[-1].lower() != hashlib.sha256(data).hexdigest():
        from . import errors
        raise errors.ProtocolMismatch("export of job %d: the bytes do not match the size and sha256 traind announced" % job)
    if not isinstance(r.get("pytorch"), str):
        from . import errors
        raise errors.ProtocolMismatch("export of job %d: traind sent no PyTorch code (a traind without export --pytorch?)" % job)
    return load(data), r["pytorch"], "job %d epoch %d" % (job, r["epoch"])
