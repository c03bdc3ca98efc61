"""traind's errors as Python exceptions.

Every error reply of traind (io.traind.NoSuchJob, ...) and of the varlink
service (org.varlink.service.InvalidParameter, ...) is raised as a subclass
of `traind.Error` named after it, carrying the error's full name, its
parameters and a message in words; a failure to reach traind at all is
`traind.ConnectionError`. So a script can catch exactly what it expects:

    try:
        c.wait(job, timeout=60)
    except traind.Timeout:
        ...
    except traind.UnexpectedState as e:
        print(e.parameters["state"])
"""
import builtins

__all__ = [
    "Error", "ConnectionError", "ProtocolMismatch",
    "NoSuchJob", "NoSuchSweep", "JobRemoved", "NoSuchCheckpoint", "InvalidState", "UnexpectedState", "Timeout",
    "DatasetError", "DatasetChanged", "NoSuchDataset", "DatasetExists", "DatasetInUse", "DatasetTooBig",
    "ImageError", "ImageSizeMismatch", "CheckpointError", "StorageError", "ShuttingDown",
    "ProtocolError", "TooManyRequests", "PermissionDenied",
    "InvalidParameter", "MethodNotFound", "InterfaceNotFound", "MethodNotImplemented",
]


class Error(Exception):
    """An error from traind (or on the way to it).

    name: the varlink error's full name ("io.traind.NoSuchJob");
    parameters: its parameters as traind sent them (a dict);
    message: one line in words, the same trainctl would print.
    """

    def __init__(self, name, parameters=None, message=None):
        self.name = name
        self.parameters = dict(parameters or {})
        self.message = message or _describe(name, self.parameters)
        super().__init__(self.message)

    def __repr__(self):
        return "%s(%r, %r)" % (type(self).__name__, self.name, self.parameters)


class ConnectionError(Error, builtins.ConnectionError):
    """traind could not be reached, or the connection broke."""

    def __init__(self, message, socket=None):
        super().__init__("traind.ConnectionError", {"socket": socket} if socket else {}, message)


class ProtocolMismatch(Error):
    """traind's reply was not what its interface promises."""

    def __init__(self, message):
        super().__init__("traind.ProtocolMismatch", {}, message)


def _decamel(name):
    out = []
    for ch in name:
        if ch.isupper() and out:
            out.append(" ")
        out.append(ch.lower())
    return "".join(out)


def _describe(name, p):
    """The error in words, as trainctl says it ("no such job 42")."""
    last = name.rsplit(".", 1)[-1]
    msg = p.get("message")
    if last == "NoSuchJob" and "id" in p:
        return "no such job %s" % p["id"]
    if last == "NoSuchCheckpoint" and "id" in p:
        return ("no such checkpoint: job %s epoch %s" % (p["id"], p["epoch"]) if p.get("epoch") is not None
                else "no such checkpoint: job %s has none" % p["id"])
    if last == "InvalidParameter" and "parameter" in p:
        key = p["parameter"].rsplit(".", 1)[-1]
        if msg and msg.startswith(key + ":"):
            msg = msg[len(key) + 1:].lstrip()
        return "invalid parameter %s%s" % (p["parameter"], ": " + msg if msg else "")
    if last == "InvalidState" and "id" in p:
        return "invalid state: job %s is %s%s" % (p["id"], p.get("state"), ": " + msg if msg else "")
    if last == "UnexpectedState" and "id" in p:
        return "unexpected state: job %s is %s" % (p["id"], p.get("state"))
    if last == "JobRemoved" and "id" in p:
        return "job %s was removed" % p["id"]
    if last == "Timeout" and "id" in p:
        return "timeout: job %s" % p["id"]
    if last == "DatasetError" and "dataset" in p:
        return "dataset error: %s%s" % (p["dataset"], ": " + msg if msg else "")
    if msg:
        return msg
    words = ", ".join("%s %s" % (k, v) for k, v in p.items())
    return _decamel(last) + (": " + words if words else "")


def _subclass(name, doc, *bases):
    return type(name, bases or (Error,), {"__doc__": doc, "__module__": __name__})


NoSuchJob = _subclass("NoSuchJob", "No job of that id (parameters: id).", Error, builtins.LookupError)
NoSuchSweep = _subclass("NoSuchSweep", "No sweep of that id (parameters: id).", Error, builtins.LookupError)
JobRemoved = _subclass("JobRemoved", "The job was removed while the call waited on it (id).")
NoSuchCheckpoint = _subclass("NoSuchCheckpoint", "The job has no such checkpoint (id, epoch).", Error,
                             builtins.LookupError)
InvalidState = _subclass("InvalidState", "The job's state does not allow it (id, state, message).")
UnexpectedState = _subclass("UnexpectedState", "wait: the job stopped in a state not asked for (id, state).")
Timeout = _subclass("Timeout", "wait: the timeout passed first (id).", Error, builtins.TimeoutError)
DatasetError = _subclass("DatasetError", "The dataset cannot be used (dataset, message).")
DatasetChanged = _subclass("DatasetChanged", "The dataset's files are not those the job started with "
                           "(dataset, id, recorded, current, message); pass allow_data_change=True.")
NoSuchDataset = _subclass("NoSuchDataset", "No dataset of that name (dataset, message).", Error,
                          builtins.LookupError)
DatasetExists = _subclass("DatasetExists", "A dataset of that name exists (dataset, message); replace=True.")
DatasetInUse = _subclass("DatasetInUse", "Jobs use the dataset (dataset, message).")
DatasetTooBig = _subclass("DatasetTooBig", "More bytes than traind takes (dataset, size, limit, message).")
ImageError = _subclass("ImageError", "Not a readable image (file, message).")
ImageSizeMismatch = _subclass("ImageSizeMismatch", "An image of another size than the model's "
                              "(file, size, expected, message); resize=True.")
CheckpointError = _subclass("CheckpointError", "A stored checkpoint cannot be used (id, message).")
StorageError = _subclass("StorageError", "traind's database failed (message).")
ShuttingDown = _subclass("ShuttingDown", "traind is stopping (message).")
ProtocolError = _subclass("ProtocolError", "traind did not understand the message (message).")
TooManyRequests = _subclass("TooManyRequests", "traind is busy; try again later (message).")
PermissionDenied = _subclass("PermissionDenied", "Not allowed to use this traind (message).", Error,
                             builtins.PermissionError)
InvalidParameter = _subclass("InvalidParameter", "A parameter is wrong (parameter, message): "
                             "parameter 'config.lr' names a configuration key.", Error, builtins.ValueError)
MethodNotFound = _subclass("MethodNotFound", "This traind has no such method (method): an older traind?")
InterfaceNotFound = _subclass("InterfaceNotFound", "No such interface (interface).")
MethodNotImplemented = _subclass("MethodNotImplemented", "Not implemented (method).")

_BY_NAME = {cls.__name__: cls for cls in (
    NoSuchJob, NoSuchSweep, JobRemoved, NoSuchCheckpoint, InvalidState, UnexpectedState, Timeout, DatasetError,
    DatasetChanged, NoSuchDataset, DatasetExists, DatasetInUse, DatasetTooBig, ImageError, ImageSizeMismatch,
    CheckpointError, StorageError, ShuttingDown, ProtocolError, TooManyRequests, PermissionDenied,
    InvalidParameter, MethodNotFound, InterfaceNotFound, MethodNotImplemented)}


def from_reply(name, parameters):
    """The exception for a varlink error reply: the subclass of its name
    (io.traind.X or org.varlink.service.X), else Error itself."""
    prefix, _, last = name.rpartition(".")
    cls = _BY_NAME.get(last) if prefix in ("io.traind", "org.varlink.service") else None
    return (cls or Error)(name, parameters)
