"""Writers for traind's dataset formats, without NumPy: .npy exactly as
numpy.save writes it (format 1.0, header padded to 64 bytes), .npz as
numpy.savez (a zip of .npy entries, stored or deflated), safetensors, CSV,
and dataset.json. Shared by tests/cli/test_formats.py and the daemon tests.

Arrays are (typecode, shape, bytes): typecode 'u1', 'i8', 'f4' ... little-endian."""
import gzip
import json
import os
import struct
import zipfile

ST_DTYPES = {"u1": "U8", "f4": "F32", "i8": "I64", "i4": "I32", "u4": "U32", "u8": "U64"}


def npy_bytes(typecode, shape, data, descr=None, fortran=False, version=1):
    order = "|" if typecode[1] == "1" else "<"
    d = descr or (order + typecode)
    shp = "(%s)" % (", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else ""))
    head = "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }" % (d, "True" if fortran else "False", shp)
    pre = 10 if version == 1 else 12
    pad = 64 - (pre + len(head) + 1) % 64
    head = head + " " * pad + "\n"
    if version == 1:
        return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(head)) + head.encode() + data
    return b"\x93NUMPY" + bytes([version, 0]) + struct.pack("<I", len(head)) + head.encode() + data


def st_bytes(tensors):
    """tensors: list of (name, typecode, shape, data)."""
    header, off = {}, 0
    for name, tc, shape, data in tensors:
        header[name] = {"dtype": ST_DTYPES[tc], "shape": list(shape), "data_offsets": [off, off + len(data)]}
        off += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(t[3] for t in tensors)


def read_idx(path):
    """(count, rows, cols, pixels) or (count, labels) of an IDX file, plain or .gz."""
    for p in (path, path + ".gz"):
        if os.path.exists(p):
            with (gzip.open(p) if p.endswith(".gz") else open(p, "rb")) as f:
                data = f.read()
            magic, n = struct.unpack(">II", data[:8])
            if magic == 0x803:
                rows, cols = struct.unpack(">II", data[8:16])
                return n, rows, cols, data[16:]
            return n, data[8:]
    raise FileNotFoundError(path)


def load_idx_dir(d):
    """{'train': (n, rows, cols, pixels, labels), 'test': ...} of an IDX dataset."""
    out = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        n, rows, cols, px = read_idx(os.path.join(d, prefix + "-images-idx3-ubyte"))
        m, lab = read_idx(os.path.join(d, prefix + "-labels-idx1-ubyte"))
        assert n == m
        out[split] = (n, rows, cols, px, lab)
    return out


def write(path, data):
    """Writes a new file at path. A symlink there (tests link shared data in
    their own folders) is replaced, never written through."""
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def write_npy_dir(d, splits, img_tc="u1", lab_tc="u1", shape_of=None):
    """splits: {'train': (images shape, pixel bytes, labels bytes), 'test': ...}."""
    os.makedirs(d, exist_ok=True)
    for split, (shape, px, lab) in splits.items():
        write(os.path.join(d, "x_%s.npy" % split), npy_bytes(img_tc, shape, px))
        write(os.path.join(d, "y_%s.npy" % split), npy_bytes(lab_tc, (shape[0],), lab))


def write_npz(path, splits, img_tc="u1", lab_tc="u1", compress=True):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED) as z:
        for split, (shape, px, lab) in splits.items():
            z.writestr("x_%s.npy" % split, npy_bytes(img_tc, shape, px))
            z.writestr("y_%s.npy" % split, npy_bytes(lab_tc, (shape[0],), lab))


def write_st_dir(d, splits, img_tc="u1", lab_tc="i8"):
    os.makedirs(d, exist_ok=True)
    for split, (shape, px, lab) in splits.items():
        write(os.path.join(d, "%s.safetensors" % split),
              st_bytes([("images", img_tc, shape, px), ("labels", lab_tc, (shape[0],), lab)]))


def labels_as(lab, tc):
    """uint8 label bytes as another integer typecode."""
    fmt = {"u1": "B", "i8": "q", "i4": "i", "u4": "I", "u8": "Q"}[tc]
    return struct.pack("<%d%s" % (len(lab), fmt), *lab)


def write_csv_dir(d, splits, header=True):
    os.makedirs(d, exist_ok=True)
    for split, (shape, px, lab) in splits.items():
        n = shape[0]
        dim = len(px) // n
        with open(os.path.join(d, "%s.csv" % split), "w") as f:
            if header:
                f.write("label," + ",".join("pixel%d" % i for i in range(dim)) + "\n")
            for i in range(n):
                f.write("%d,%s\n" % (lab[i], ",".join(map(str, px[i * dim:(i + 1) * dim]))))


def write_json(d, obj):
    os.makedirs(d, exist_ok=True)
    write(os.path.join(d, "dataset.json"), json.dumps(obj).encode())
