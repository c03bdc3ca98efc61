"""traind's Python client: the training daemon from a script or a notebook.

    import traind
    c = traind.Client()                  # the socket trainctl uses
    job = c.start(epochs=3, name="first")
    c.wait(job)
    c.history(job)                       # [{"epoch": 1, "train_loss": ...}, ...]
    sd = traind.torch.load(c.export(job, "model.safetensors"))

Standard library only (Debian's python3, any virtualenv); PyTorch only for
traind.torch, pandas only for history(frame=True). The protocol is
io.traind.varlink (doc/python.md has a walk through).
"""
from . import errors
from .client import Client, default_socket
from .errors import *  # noqa: F401,F403  (the exception classes)

__version__ = "0.1.0"
__all__ = ["Client", "default_socket", "errors", "torch"] + errors.__all__


def __getattr__(name):
    # traind.torch imports PyTorch: only when asked for
    if name == "torch":
        import importlib
        return importlib.import_module(".torch", __name__)
    raise AttributeError("module 'traind' has no attribute %r" % name)
