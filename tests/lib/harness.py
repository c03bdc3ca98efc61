"""harness.py - run a real traind on a temporary socket and database, and
drive it through trainctl (and, for protocol tests, a raw varlink socket).

Used by the tests in tests/daemon/ (meson suite 'daemon'). The build
directory comes from TRAIND_BUILD_DIR, the datasets from TRAIND_DATA_DIR.
"""
import gzip
import hashlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import struct
import tempfile
import time
import traceback

BUILD = os.environ.get("TRAIND_BUILD_DIR", os.path.join(os.path.dirname(__file__), "../../build"))
DATA = os.environ.get("TRAIND_DATA_DIR", os.path.join(os.path.dirname(__file__), "../../data"))
TRAIND = os.path.join(BUILD, "daemon", "traind")
TRAINCTL = os.path.join(BUILD, "client", "trainctl")
TRAIND_TRAIN = os.path.join(BUILD, "cli", "traind-train")
TRAIND_RANK = os.path.join(BUILD, "daemon", "traind-rank")  # beside traind, as installed
TRAIND_WEB = os.path.join(BUILD, "web", "traind-web")
FAULTSHIM = os.path.join(BUILD, "tests", "lib", "faultshim.so")
POWERCUT = os.path.join(BUILD, "tests", "lib", "powercut.so")



def _sanitizer():
    """"asan" or "tsan" when traind was built with that sanitizer, else None
    (its allocator quarantines freed memory and it runs several times
    slower, so memory and latency figures do not hold there)."""
    try:
        with open(TRAIND, "rb") as f:
            data = f.read()
    except OSError:
        return None
    if b"__asan_init" in data:
        return "asan"
    if b"__tsan_init" in data:
        return "tsan"
    return None


SANITIZER = _sanitizer()


def preload(lib):
    """LD_PRELOAD for an interposer library: after the sanitizer runtime,
    which must come first in a sanitizer build."""
    if SANITIZER:
        out = subprocess.run(["ldd", TRAIND], capture_output=True, text=True).stdout
        m = [ln.split("=>")[1].split()[0] for ln in out.splitlines()
             if "lib%s.so" % SANITIZER in ln and "=>" in ln]
        if m:
            return m[0] + " " + lib
    return lib
failures = []
_daemons = []   # every Daemon created, stopped and removed by run()


def check(cond, what):
    """Record a failed expectation (the test goes on, and fails at the end)."""
    if cond:
        print("ok:", what, flush=True)
    else:
        print("FAIL:", what, flush=True)
        failures.append(what)
    return cond


def fail(what):
    """Record a failure (check(False, what))."""
    return check(False, what)


def idx(path):
    """The bytes of an IDX file at path, or gzipped at path + ".gz"."""
    for p in (path, path + ".gz"):
        if os.path.exists(p):
            with (gzip.open(p) if p.endswith(".gz") else open(p, "rb")) as f:
                return f.read()
    raise FileNotFoundError(path)


def poll(fn, timeout=60, interval=0.01, what="condition"):
    """Call fn until it returns something true; returns that. Raises
    TimeoutError after `timeout` seconds."""
    deadline = time.time() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.time() > deadline:
            raise TimeoutError("timed out after %ss waiting for %s" % (timeout, what))
        time.sleep(interval)


def sha256_file(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def safetensors_header(path_or_bytes):
    """(header dict, data length) of a safetensors file: 8-byte LE length, JSON, data."""
    if isinstance(path_or_bytes, (bytes, bytearray)):
        blob = bytes(path_or_bytes)
    else:
        with open(path_or_bytes, "rb") as f:
            blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    return header, len(blob) - 8 - n


class Terminated(BaseException):
    """SIGTERM (meson's timeout): unwind so that the daemons get stopped."""


SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "WARNING: ThreadSanitizer", "SUMMARY: UndefinedBehaviorSanitizer",
                     # traind's own: an error reply whose parameters are not
                     # as its interface declares them (server.c), in any build
                     "protocol bug:")


def sanitizer_reports(text):
    """The first line of each sanitizer report in a log (ASan, LSan, UBSan,
    TSan), and of each protocol bug traind logged: in a sanitizer build a
    report is a failure even when traind carried on or exited 0, and in
    every build an error sent with undeclared parameters is."""
    return [line.strip() for line in text.splitlines() if any(m in line for m in SANITIZER_MARKERS)]


def check_sanitizer_log(text, what):
    reports = sanitizer_reports(text)
    check(not reports, "%s: no sanitizer report%s" % (what, " (%d: %s)" % (len(reports), reports[:3])
                                                       if reports else ""))
    return not reports


def _terminated(signum, frame):
    raise Terminated()


def run(main):
    """Run main() (the test body); an exception is a failure. Stops and
    removes every Daemon created, prints their logs on failure, then exits
    through finish()."""
    signal.signal(signal.SIGTERM, _terminated)
    try:
        main()
    except Exception as e:
        traceback.print_exc()
        first = (str(e).strip().splitlines() or [""])[0]
        failures.append("exception %s: %s" % (type(e).__name__, first))
    except (Terminated, KeyboardInterrupt) as e:
        traceback.print_exc()
        failures.append("interrupted (%s)" % type(e).__name__)
    for d in _daemons:
        try:
            d.stop()
        except Exception:
            traceback.print_exc()
        if failures:
            print("---- traind log (%s), last 6000 bytes ----" % d.dir)
            print(d.read_log()[-6000:])
        shutil.rmtree(d.dir, ignore_errors=True)
        if d.sockdir:
            shutil.rmtree(d.sockdir, ignore_errors=True)
    finish()


def finish():
    if failures:
        print("%d check(s) failed:" % len(failures))
        for f in failures:
            print("  -", f)
        sys.exit(1)
    print("all checks passed")
    sys.exit(0)


SUN_PATH_MAX = 107     # bytes of a Unix socket's path, NUL excluded (sun_path[108])


def others_can_run(path):
    """True when another uid (the abuse tests' attackers run as nobody) can
    read the file at path and reach it: every directory above it searchable
    by others, the file readable by them. A checkout in a private directory
    (mktemp -d makes 0700 ones) is not."""
    path = os.path.abspath(path)
    try:
        if not os.stat(path).st_mode & 0o004:
            return False
        d = os.path.dirname(path)
        while True:
            if not os.stat(d).st_mode & 0o001:
                return False
            if d == os.path.dirname(d):
                return True
            d = os.path.dirname(d)
    except OSError:
        return False


def socket_dir(prefix="traind-sock-"):
    """A new directory short enough for sockets (sun_path is 108 bytes): the
    usual temporary directory if its path is short, else /tmp, else /run.
    The caller removes it."""
    for base in (None, "/tmp", "/run"):
        if base is not None and not os.access(base, os.W_OK):
            continue
        d = tempfile.mkdtemp(prefix=prefix, dir=base)
        if len(os.fsencode(d)) <= 60:
            return d
        os.rmdir(d)
    raise RuntimeError("no directory with a path short enough for sockets")


def private_data(directory, names=("mnist",)):
    """A data directory of the test's own (DIRECTORY, made) holding the
    shared datasets NAMES as hard links to their files (copies across file
    systems), so a test that imports or removes datasets never writes into
    TRAIND_DATA_DIR, which other tests and sessions share."""
    os.makedirs(directory, exist_ok=True)
    for name in names:
        src, dst = os.path.join(DATA, name), os.path.join(directory, name)
        os.makedirs(dst)
        for f in os.listdir(src):
            try:
                os.link(os.path.join(src, f), os.path.join(dst, f))
            except OSError:
                shutil.copy2(os.path.join(src, f), os.path.join(dst, f))
    return directory


def _die_with_parent():
    """In the child before exec: SIGKILL it if the test process dies, so an
    interrupted test leaves no traind behind (Linux prctl PR_SET_PDEATHSIG)."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)
    except Exception:
        pass


class Daemon:
    """A traind process with its own socket, database and log."""

    def __init__(self, workdir=None, max_running=1, data_dir=None, extra_env=None, extra_args=None,
                 socket_path=None, db_path=None):
        self.dir = workdir or tempfile.mkdtemp(prefix="traind-test-")
        self.socket = socket_path or os.path.join(self.dir, "traind.sock")
        self.sockdir = None    # a short directory of our own for the socket, if the default is too long
        if socket_path is None and len(os.fsencode(self.socket)) > SUN_PATH_MAX - 8:
            self.sockdir = socket_dir()
            self.socket = os.path.join(self.sockdir, "traind.sock")
        self.db = db_path or os.path.join(self.dir, "traind.db")
        self.log = os.path.join(self.dir, "traind.log")
        self.data_dir = data_dir or DATA
        self.max_running = max_running
        self.extra_env = extra_env or {}
        self.extra_args = list(extra_args or [])
        self.proc = None
        self._vl = None
        self._scanned = 0      # log bytes already searched for sanitizer reports
        _daemons.append(self)

    def command(self):
        return [TRAIND, "--socket", self.socket, "--db", self.db, "--data-dir", self.data_dir,
                "--max-running", str(self.max_running)] + self.extra_args

    def start(self, wait=True):
        env = dict(os.environ)
        env.update(self.extra_env)
        self.logf = open(self.log, "ab")
        self.proc = subprocess.Popen(self.command(), stdout=self.logf, stderr=subprocess.STDOUT, env=env,
                                     preexec_fn=_die_with_parent)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("traind exited with %s:\n%s" % (self.proc.returncode, self.read_log()))
            try:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(self.socket)
                s.close()
                return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("traind did not listen within %ss" % timeout)

    def read_log(self):
        try:
            return open(self.log, errors="replace").read()
        except OSError:
            return ""

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait_exit(self, timeout=60):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill9(self):
        self.proc.kill()
        self.proc.wait()
        self._drop_varlink()
        self.scan_log()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            if self.wait_exit(60) is None:
                self.kill9()
        if getattr(self, "logf", None):
            self.logf.close()
        self._drop_varlink()
        self.scan_log()

    def scan_log(self):
        """Fail on sanitizer reports written since the last scan (a report
        only shows in sanitizer builds: TRAIND_BUILD_DIR=build-asan...)."""
        text = self.read_log()
        new, self._scanned = text[self._scanned:], len(text)
        reports = sanitizer_reports(new)
        if reports:
            # The report itself, so that a CI log shows where it comes from.
            at = new.find("==ERROR:")
            at = new.rfind("\n", 0, at) + 1 if at >= 0 else 0
            print("---- sanitizer report ----\n" + new[at:at + 8000], flush=True)
            check(False, "traind (%s) wrote %d sanitizer report(s): %s" % (self.dir, len(reports), reports[:3]))

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
        if self.sockdir:
            shutil.rmtree(self.sockdir, ignore_errors=True)

    # ---- trainctl ----
    def ctl(self, *args, check_rc=True, timeout=600):
        """Run trainctl; returns (rc, stdout, stderr)."""
        cmd = [TRAINCTL, "--socket", self.socket] + [str(a) for a in args]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if sanitizer_reports(p.stderr):
            check(False, "trainctl %s wrote a sanitizer report: %s" % (" ".join(map(str, args))[:80],
                                                                     sanitizer_reports(p.stderr)[:3]))
        if check_rc and p.returncode != 0:
            raise RuntimeError("%s -> %d\nstdout: %s\nstderr: %s\nlog:\n%s" % (
                " ".join(cmd), p.returncode, p.stdout, p.stderr, self.read_log()[-4000:]))
        return p.returncode, p.stdout, p.stderr

    def ctl_json(self, *args, **kw):
        rc, out, err = self.ctl(*(list(args) + ["--json"]), **kw)
        return json.loads(out) if out.strip() else None

    def start_job(self, *args):
        return self.ctl_json("start", *args)["id"]

    def wait(self, job, *args, timeout=600):
        return self.ctl("wait", job, *args, check_rc=False, timeout=timeout)

    def export_sha(self, job, epoch=None):
        out = os.path.join(self.dir, "export-%s-%s.safetensors" % (job, epoch))
        args = ["export", job, "-o", out]
        if epoch is not None:
            args += ["--epoch", epoch]
        self.ctl(*args)
        return hashlib.sha256(open(out, "rb").read()).hexdigest()

    def export_file(self, job, name=None, epoch=None):
        """Export the job's model to a file in the work dir; returns its path."""
        out = os.path.join(self.dir, name or "export-%s-%s.safetensors" % (job, epoch))
        args = ["export", job, "-o", out]
        if epoch is not None:
            args += ["--epoch", epoch]
        self.ctl(*args)
        return out

    def status(self, job):
        return self.ctl_json("status", job)

    def history(self, job):
        return self.ctl_json("history", job)

    # ---- raw protocol, for fast polling ----
    def _drop_varlink(self):
        if self._vl:
            try:
                self._vl.close()
            except OSError:
                pass
            self._vl = None

    def call(self, method, params=None):
        """One varlink call on a connection kept open (reconnects if needed)."""
        for attempt in (0, 1):
            try:
                if not self._vl:
                    self._vl = Varlink(self.socket, timeout=60)
                return self._vl.call(method, params)
            except (OSError, EOFError):
                self._drop_varlink()
                if attempt:
                    raise

    def job(self, job):
        """The job object of io.traind.Status (raw, fast)."""
        r = self.call("io.traind.Status", {"id": int(job)})
        if "error" in r:
            raise RuntimeError("Status(%s): %s" % (job, r))
        return r["parameters"]["job"]

    def wait_running_at(self, job, epoch, min_step=1, timeout=300):
        """Poll until the job trains in epoch `epoch`+1 (that is, `epoch`
        epochs completed) with at least min_step batches done. Returns the
        job object. Raises if the job got past that point or stopped."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            j = self.job(job)
            if j["state"] == "running" and j["epoch"] == epoch and j["step"] >= min_step:
                return j
            if j["epoch"] > epoch or j["state"] not in ("queued", "running"):
                raise RuntimeError("job %s went past epoch %d step %d before we looked: %s" % (
                    job, epoch, min_step, {k: j.get(k) for k in ("state", "epoch", "step")}))
            time.sleep(0.002)
        raise TimeoutError("job %s did not reach epoch %d step %d" % (job, epoch, min_step))

    def sql(self, query, params=()):
        con = sqlite3.connect("file:%s?mode=ro" % self.db, uri=True, timeout=10)
        try:
            return con.execute(query, params).fetchall()
        finally:
            con.close()


class Varlink:
    """A raw varlink connection for protocol tests."""

    def __init__(self, path, timeout=10):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(timeout)
        self.s.connect(path)
        self.buf = b""

    def send_raw(self, data):
        self.s.sendall(data)

    def call(self, method, params=None, more=False):
        msg = {"method": method, "parameters": params or {}}
        if more:
            msg["more"] = True
        self.send_raw(json.dumps(msg).encode() + b"\0")
        return self.recv()

    def recv(self):
        while b"\0" not in self.buf:
            chunk = self.s.recv(1 << 20)
            if not chunk:
                raise EOFError("connection closed")
            self.buf += chunk
        msg, _, self.buf = self.buf.partition(b"\0")
        return json.loads(msg)

    def close(self):
        self.s.close()
