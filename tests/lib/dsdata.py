"""Small datasets for the dataset tests, cut from real MNIST (TRAIND_DATA_DIR),
and the dataset digest as traind defines it (daemon/data/dscache.h),
computed here independently."""
import gzip
import hashlib
import os
import struct

from harness import DATA


def _read(path):
    for p in (path, path + ".gz"):
        if os.path.exists(p):
            with open(p, "rb") as f:
                data = f.read()
            return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
    raise FileNotFoundError(path)


def mnist_split(prefix, n, source="mnist"):
    """(images bytes (n*784), labels bytes (n)) of MNIST's `prefix` split
    ("train" or "t10k"): its first n."""
    img = _read(os.path.join(DATA, source, prefix + "-images-idx3-ubyte"))
    lab = _read(os.path.join(DATA, source, prefix + "-labels-idx1-ubyte"))
    rows, cols = struct.unpack(">II", img[8:16])
    return img[16:16 + n * rows * cols], lab[8:8 + n], rows, cols


def idx_images(pixels, n, rows, cols):
    return struct.pack(">IIII", 0x803, n, rows, cols) + pixels


def idx_labels(labels):
    return struct.pack(">II", 0x801, len(labels)) + labels


def write_small_mnist(d, n_train=6000, n_test=1000):
    """The first n_train/n_test images of MNIST as an IDX dataset in d."""
    os.makedirs(d, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        px, lb, r, c = mnist_split(prefix, n)
        with open(os.path.join(d, prefix + "-images-idx3-ubyte"), "wb") as f:
            f.write(idx_images(px, n, r, c))
        with open(os.path.join(d, prefix + "-labels-idx1-ubyte"), "wb") as f:
            f.write(idx_labels(lb))
    return d


def dataset_digest(d):
    """sha256 over every regular non-hidden file of d, by name: name NUL,
    size (8 bytes LE), sha256(content)."""
    h = hashlib.sha256()
    for name in sorted(os.listdir(d), key=os.fsencode):
        p = os.path.join(d, name)
        if name.startswith(".") or not os.path.isfile(p):
            continue
        data = open(p, "rb").read()
        h.update(os.fsencode(name) + b"\0" + struct.pack("<Q", len(data)) + hashlib.sha256(data).digest())
    return "sha256:" + h.hexdigest()
