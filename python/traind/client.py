"""A client of traind's control socket (io.traind, varlink), with the Python
standard library only.

    import traind
    c = traind.Client()                      # the socket trainctl would use
    job = c.start(epochs=3, lr=0.002, name="first")
    for p in c.watch(job):                   # progress while it trains
        print(p["epoch"], p["step"], p.get("loss"))
    c.wait(job)                              # as `trainctl wait`
    rows = c.history(job)                    # a list of dicts (frame=True: pandas)

One connection per Client, opened on first use, for the calls that answer
once; watch() opens its own while it streams. A Client is not meant to be
shared between threads (make one per thread). Every error traind sends is
raised as a subclass of traind.Error (errors.py); the reply's parameters
come back as dicts and lists, exactly as traind sent them (JSON keys of
io.traind.varlink).
"""
import base64
import hashlib
import json
import os
import socket as _socket
import time

from . import errors

MAX_MESSAGE = 16 << 20         # traind's limit on a message, either way
DEFAULT_TIMEOUT = 300.0        # seconds for any one reply (wait/watch: their own)

__all__ = ["Client", "default_socket"]


def default_socket():
    """The socket trainctl uses: $TRAIND_SOCKET, else a user's own traind
    ($XDG_RUNTIME_DIR/traind/traind.sock) if it exists or the system's does
    not, else the system's (/run/traind/traind.sock)."""
    env = os.environ.get("TRAIND_SOCKET")
    if env:
        return env
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    system = "/run/traind/traind.sock"
    if xdg:
        user = os.path.join(xdg, "traind", "traind.sock")
        if os.path.exists(user) or not os.path.exists(system):
            return user
    return system


class _Conn:
    """One varlink connection: a JSON object and a NUL byte per message."""

    def __init__(self, path, timeout):
        self.path = path
        self.sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(path)
        except OSError as e:
            self.sock.close()
            hint = " (is traind running?)" if isinstance(e, (FileNotFoundError, ConnectionRefusedError)) else ""
            raise errors.ConnectionError("cannot connect to %s: %s%s" % (path, e.strerror or e, hint), path) from e
        self.buf = b""

    def settimeout(self, timeout):
        self.sock.settimeout(timeout)

    def send(self, method, params, more=False, fds=()):
        msg = {"method": method, "parameters": params}
        if more:
            msg["more"] = True
        data = json.dumps(msg, separators=(",", ":"), allow_nan=False).encode() + b"\0"
        if len(data) > MAX_MESSAGE + 1:
            raise errors.Error("traind.MessageTooBig", {"size": len(data)},
                               "the call %s is %d bytes, more than traind accepts (%d)" % (method, len(data), MAX_MESSAGE))
        try:
            if fds:
                sent = _socket.send_fds(self.sock, [data], list(fds))
                if sent < len(data):
                    self.sock.sendall(data[sent:])
            else:
                self.sock.sendall(data)
        except OSError as e:
            raise errors.ConnectionError("sending %s to %s: %s" % (method, self.path, e), self.path) from e

    def recv(self):
        """The next reply: (parameters, error name or None, continues)."""
        while b"\0" not in self.buf:
            try:
                chunk = self.sock.recv(1 << 20)
            except _socket.timeout as e:
                raise errors.ConnectionError("no reply from traind at %s within %s s" % (self.path, self.sock.gettimeout()),
                                             self.path) from e
            except OSError as e:
                raise errors.ConnectionError("reading from %s: %s" % (self.path, e), self.path) from e
            if not chunk:
                raise errors.ConnectionError("traind closed the connection (%s)" % self.path, self.path)
            self.buf += chunk
            if len(self.buf) > MAX_MESSAGE + 1 and b"\0" not in self.buf:
                raise errors.ProtocolMismatch("a reply over %d bytes" % MAX_MESSAGE)
        msg, _, self.buf = self.buf.partition(b"\0")
        try:
            reply = json.loads(msg)
        except ValueError as e:
            raise errors.ProtocolMismatch("a reply that is not JSON: %s" % e) from e
        if not isinstance(reply, dict):
            raise errors.ProtocolMismatch("a reply that is not a JSON object")
        params = reply.get("parameters") or {}
        return params, reply.get("error"), bool(reply.get("continues"))

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def _states(states):
    if states is None:
        return None
    if isinstance(states, str):
        states = [s for s in states.split(",") if s]
    return list(states)


class Client:
    """A connection to traind.

    socket: the control socket's path (default: as trainctl finds it,
    default_socket()); timeout: seconds to wait for any one reply (wait and
    watch wait as long as they are asked to).
    """

    def __init__(self, socket=None, timeout=DEFAULT_TIMEOUT):
        self.socket = socket or default_socket()
        self.timeout = timeout
        self._conn = None

    # ---- plumbing ----

    def close(self):
        if self._conn:
            self._conn.close()
            self._conn = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return "traind.Client(%r)" % self.socket

    def call(self, method, params=None, timeout=..., fds=()):
        """Call `method` ("io.traind.Status" or just "Status") with params
        (a dict; None values left out) and return its reply's parameters; a
        traind error is raised as its traind.Error subclass. timeout: seconds
        for the reply (default the Client's; None: as long as it takes)."""
        if "." not in method:
            method = "io.traind." + method
        params = {k: v for k, v in (params or {}).items() if v is not None}
        for attempt in (0, 1):
            if not self._conn:
                self._conn = _Conn(self.socket, self.timeout)
            conn = self._conn
            conn.settimeout(self.timeout if timeout is ... else timeout)
            try:
                conn.send(method, params, fds=fds)
                reply, error, _ = conn.recv()
                break
            except errors.ConnectionError:
                # a connection traind closed while it sat idle: once more
                self.close()
                if attempt or fds:
                    raise
        if error:
            raise errors.from_reply(error, reply)
        return reply

    # ---- jobs ----

    def start(self, name=None, keep=None, init_from=None, from_job=None, from_epoch=None, weights_only=None,
              **config):
        """Queue a new job; its id. Every other keyword is a configuration
        key as `trainctl config JOB` names them (dataset, epochs, lr,
        hidden=[512, 256], model, lr_scheduler, ...), passed to traind as
        given, so keys traind gains work here unchanged.

        keep: epoch checkpoints to keep ("all" or -1: all). init_from: a
        model-only safetensors file (a path or its bytes) to start from.
        from_job (from_epoch, weights_only): begin from another job's
        checkpoint, config then holding only what changes."""
        params = {"name": name, "config": config}
        if keep is not None:
            params["keep"] = -1 if keep == "all" else int(keep)
        if init_from is not None:
            data = init_from if isinstance(init_from, (bytes, bytearray)) else open(init_from, "rb").read()
            params["init_from"] = base64.b64encode(bytes(data)).decode()
        if from_job is not None:
            params["from_job"] = int(from_job)
            params["from_epoch"] = from_epoch
            params["weights_only"] = True if weights_only else None
        return self.call("Start", params)["id"]

    def status(self, id=None):
        """The job (a dict: Status's Job), or with no id every job."""
        if id is None:
            return self.list()
        return self.call("Status", {"id": int(id)})["job"]

    def list(self, states=None):
        """Every job, by id; states ("running,paused" or a list): only those."""
        return self.call("List", {"states": _states(states)})["jobs"]

    def history(self, id, frame=False):
        """The job's per-epoch rows (dicts: epoch, train_loss, train_acc,
        train_macro_acc, val_loss, val_acc, val_macro_acc, seconds, note, lr,
        grad_norm). frame=True: a pandas DataFrame indexed by epoch (needs
        pandas)."""
        rows = self.call("History", {"id": int(id)})["rows"]
        if not frame:
            return rows
        try:
            import pandas
        except ImportError as e:
            raise ImportError("history(frame=True) needs pandas (apt install python3-pandas, or pip install "
                              "pandas); without it history() gives a list of dicts") from e
        cols = ["epoch", "train_loss", "train_acc", "train_macro_acc", "val_loss", "val_acc", "val_macro_acc",
                "seconds", "note", "lr", "grad_norm"]
        return pandas.DataFrame(rows, columns=cols).set_index("epoch")

    def checkpoints(self, id):
        """The job's stored checkpoints (dicts), oldest first."""
        return self.call("Checkpoints", {"id": int(id)})["checkpoints"]

    def steps(self, id):
        """The running train loss by step as traind kept it: {"steps_per_epoch":
        N, "points": [{"epoch", "step", "loss"}...]}; a point's x in epochs is
        epoch + step / steps_per_epoch."""
        return self.call("Steps", {"id": int(id)})

    def wait(self, id, state=None, epoch=None, timeout=None):
        """As `trainctl wait`: block until epoch `epoch` is committed or the
        job is in `state` (a name, "a,b" or a list; default: paused, killed,
        failed or done); the job. Raises traind.Timeout after `timeout`
        seconds, traind.UnexpectedState when it stopped otherwise."""
        params = {"id": int(id), "epoch": epoch, "states": _states(state),
                  "timeout": float(timeout) if timeout is not None else None}
        # traind answers when the condition holds: the socket waits that long
        return self.call("Wait", params, timeout=None if timeout is None else float(timeout) + 30)["job"]

    def watch(self, id):
        """Progress while the job trains: a generator of Watch's replies
        (dicts: id, state, epoch, epochs, step, steps_per_epoch, loss,
        samples_per_second, eta_seconds, committed_epoch), at most 10 a
        second, the last once the job has stopped. On a connection of its
        own; closing the generator closes it."""
        conn = _Conn(self.socket, None)
        try:
            conn.send("io.traind.Watch", {"id": int(id)}, more=True)
            while True:
                params, error, more = conn.recv()
                if error:
                    raise errors.from_reply(error, params)
                yield params
                if not more:
                    return
        finally:
            conn.close()

    def pause(self, id):
        """Checkpoint the exact position, then stop: {"id", "state"}."""
        return self.call("Pause", {"id": int(id)})

    def resume(self, id, weights_only=None, allow_data_change=None, epochs=None, ranks=None):
        """Continue from the newest checkpoint: {"id", "state"}."""
        return self.call("Resume", {"id": int(id), "weights_only": weights_only,
                                    "allow_data_change": allow_data_change, "epochs": epochs, "ranks": ranks})

    def kill(self, id, after_epoch=None):
        """Stop at once (or right after epoch after_epoch commits): {"id", "state"}."""
        return self.call("Kill", {"id": int(id), "after_epoch": after_epoch})

    def rm(self, id, force=False):
        """Remove the job with its checkpoints and history (force: a queued or
        running one too, killed first): {"id", "state"} (the state it was in)."""
        return self.call("Delete", {"id": int(id), "force": True if force else None})

    # ---- sweeps (doc/sweeps.md) ----

    def sweep_start(self, searcher, params, trials=None, max_parallel=None, seed=None, metric=None,
                    grace_epochs=None, reduction_factor=None, max_epochs=None, name=None, keep=None,
                    population=None, interval=None, quantile=None, perturb=None, **config):
        """Start a hyperparameter sweep; its id. searcher: "grid", "random",
        "sha", "hyperband" or "pbt" (population, interval, quantile, perturb);
        params: {"lr": "loguniform(1e-4,1e-2)", ...} (or a list of
        "KEY=DIST" strings); every other keyword is the configuration the
        trials share, as start() takes it."""
        if isinstance(params, dict):
            params = ["%s=%s" % (k, v) for k, v in params.items()]
        p = {"searcher": searcher, "params": list(params), "trials": trials, "max_parallel": max_parallel,
             "seed": seed, "metric": metric, "grace_epochs": grace_epochs, "reduction_factor": reduction_factor,
             "max_epochs": max_epochs, "name": name, "config": config, "population": population,
             "interval": interval, "quantile": None if quantile is None else float(quantile),
             "perturb": None if perturb is None else float(perturb)}
        if keep is not None:
            p["keep"] = -1 if keep == "all" else int(keep)
        return self.call("SweepStart", p)["id"]

    def sweep_status(self, id):
        """The sweep: its trials (trial, job, params, state, epochs, metric,
        decision, reason) and its best trial (a dict, as `trainctl sweep
        status --json` prints it)."""
        return self.call("SweepStatus", {"id": int(id)})["sweep"]

    def sweeps(self):
        """Every sweep, by id (without their trials)."""
        return self.call("SweepList", {})["sweeps"]

    def sweep_wait(self, id, timeout=None, interval=0.5):
        """Poll until the sweep is no longer running; its status. Raises
        errors.Timeout after timeout seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            s = self.sweep_status(id)
            if s["state"] != "running":
                return s
            if deadline is not None and time.monotonic() >= deadline:
                raise errors.Timeout("io.traind.Timeout", {"id": int(id)}, "sweep %d is still running" % int(id))
            time.sleep(interval)

    def sweep_pause(self, id):
        return self.call("SweepPause", {"id": int(id)})

    def sweep_resume(self, id):
        return self.call("SweepResume", {"id": int(id)})

    def sweep_kill(self, id):
        return self.call("SweepKill", {"id": int(id)})

    def sweep_rm(self, id, force=False):
        """Remove the sweep with its trials' jobs (force: kill them first)."""
        return self.call("SweepDelete", {"id": int(id), "force": True if force else None})

    # ---- models ----

    def eval(self, id, split=None, epoch=None, best=None, per_class=None, allow_data_change=None):
        """Loss and accuracy of a checkpoint on "val" (default) or "test"."""
        return self.call("Eval", {"id": int(id), "split": split, "epoch": epoch, "best": best,
                                  "per_class": per_class, "allow_data_change": allow_data_change})

    def export(self, id, path=None, epoch=None, best=None):
        """The model (PyTorch's state_dict names) as safetensors bytes, checked
        against traind's size and SHA-256; with path, written there
        atomically (and the path returned). Load it with traind.torch.load."""
        r = self.call("Export", {"id": int(id), "epoch": epoch, "best": best})
        data = base64.b64decode(r["data"])
        digest = hashlib.sha256(data).hexdigest()
        if len(data) != r["size"] or r["sha256"].split(":")[-1].lower() != digest:
            raise errors.ProtocolMismatch("export: %d bytes with sha256 %s, traind announced %d bytes, %s"
                                          % (len(data), digest, r["size"], r["sha256"]))
        if path is None:
            return data
        path = os.fspath(path)
        tmp = "%s.tmp-%d" % (path, os.getpid())
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return path

    def generate(self, id, prompt, tokens, epoch=None, best=None, temperature=None, top_k=None, seed=None,
                 allow_data_change=None):
        """Text from a language model (a job on a text dataset): `prompt`
        continued by `tokens` tokens, each drawn from the softmax of the
        scores / temperature (default 1; 0: the most likely) among the top_k
        most likely (default all), with the generator seeded by seed (default
        1: the same call gives the same text). Returns the prompt and what
        followed it as one string; the reply's "generated" is what followed
        alone: text[len(prompt):]."""
        r = self.call("Generate", {"id": int(id), "prompt": prompt, "tokens": int(tokens), "epoch": epoch,
                                   "best": best, "temperature": temperature, "top_k": top_k, "seed": seed,
                                   "allow_data_change": allow_data_change})
        return r["text"]

    def predict(self, id, files, epoch=None, best=None, top=None, resize=None):
        """The classes of images (paths of PGM or PNG files, or IDX image
        files of many), passed to traind as open files: a list of
        predictions (file, index, class, name, prob, top)."""
        paths = [os.fspath(f) for f in ([files] if isinstance(files, (str, os.PathLike)) else files)]
        opened = []
        try:
            for p in paths:
                opened.append(os.open(p, os.O_RDONLY | os.O_CLOEXEC))
            listing = [{"name": os.path.basename(p), "size": os.fstat(fd).st_size} for p, fd in zip(paths, opened)]
            return self.call("Predict", {"id": int(id), "files": listing, "epoch": epoch, "best": best,
                                         "top": top, "resize": resize}, fds=opened)["predictions"]
        finally:
            for fd in opened:
                os.close(fd)

    # ---- datasets and traind ----

    def datasets(self):
        """Every dataset traind can see (dicts: name, format, train, test,
        shape, classes, class_names, size, digest, jobs, or error)."""
        return self.call("Datasets")["datasets"]

    def dataset_import(self, name, paths, replace=False, vocab=None):
        """Add the dataset `name` from files you can read (passed to traind as
        open files); the dataset as Datasets lists it. vocab "char" or "byte"
        imports them as one text (files that all end in .txt are one, char);
        traind builds its vocabulary."""
        paths = [os.fspath(p) for p in paths]
        opened = []
        try:
            for p in paths:
                opened.append(os.open(p, os.O_RDONLY | os.O_CLOEXEC))
            listing = [{"name": os.path.basename(p), "size": os.fstat(fd).st_size} for p, fd in zip(paths, opened)]
            return self.call("DatasetImport", {"name": name, "files": listing, "replace": True if replace else None,
                                               "vocab": vocab}, fds=opened)["dataset"]
        finally:
            for fd in opened:
                os.close(fd)

    def dataset_rm(self, name):
        """Remove a dataset no job uses."""
        return self.call("DatasetRemove", {"name": name})["name"]

    def counters(self):
        """traind's counters since it started (epochs_committed, jobs_failed,
        client_errors, commit_seconds)."""
        return self.call("Counters")

    def info(self):
        """What traind says of itself (org.varlink.service.GetInfo: vendor,
        product, version, url, interfaces)."""
        return self.call("org.varlink.service.GetInfo")
