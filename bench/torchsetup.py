"""torchsetup.py - the thread setup and configuration line that
bench-engine's PyTorch scripts (torch-epoch.py, torch-seq.py) share.

setup(threads) fixes PyTorch's threads (torch.set_num_threads(threads),
one inter-op thread), seeds torch with 42, and prints the configuration,
"config ...": torch's version and threads, OPENBLAS_NUM_THREADS and
OPENBLAS_CORETYPE as given (bench-engine sets 1 and traind's kernel:
Debian's torch calls OpenBLAS for its float32 matmuls, whose own threads
would fight torch's on 2 cores), the OpenBLAS kernel torch's BLAS runs, and
oneDNN. bench-engine reads that line back (the bracketed line beside
PyTorch's figures).
"""
import ctypes
import os

import torch


def blas_corename():
    """The kernel of the OpenBLAS torch calls (libblas.so.3, already loaded)."""
    try:
        lib = ctypes.CDLL("libblas.so.3")
        lib.openblas_get_corename.restype = ctypes.c_char_p
        return lib.openblas_get_corename().decode()
    except (OSError, AttributeError):
        return "?"


def setup(threads):
    torch.set_num_threads(threads)
    torch.set_num_interop_threads(1)
    torch.manual_seed(42)
    print("config torch %s, %d thread%s (interop 1), OPENBLAS_NUM_THREADS=%s, OPENBLAS_CORETYPE=%s, its OpenBLAS "
          "runs %s, oneDNN %s" % (torch.__version__, threads, "" if threads == 1 else "s",
                                  os.environ.get("OPENBLAS_NUM_THREADS", "unset"),
                                  os.environ.get("OPENBLAS_CORETYPE", "unset"), blas_corename(),
                                  "on" if torch.backends.mkldnn.is_available() else "off"), flush=True)
