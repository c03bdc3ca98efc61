"""harness.py - run a real traind on a temporary socket and database, and
drive it through trainctl (and, for protocol tests, a raw varlink socket).

Used by the tests in tests/daemon/ (meson suite 'daemon'). The build
directory comes from TRAIND_BUILD_DIR, the datasets from TRAIND_DATA_DIR.
"""
import hashlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time

BUILD = os.environ.get("TRAIND_BUILD_DIR", os.path.join(os.path.dirname(__file__), "../../build"))
DATA = os.environ.get("TRAIND_DATA_DIR", os.path.join(os.path.dirname(__file__), "../../data"))
TRAIND = os.path.join(BUILD, "daemon", "traind")
TRAINCTL = os.path.join(BUILD, "client", "trainctl")

failures = []


def check(cond, what):
    """Record a failed expectation (the test goes on, and fails at the end)."""
    if cond:
        print("ok:", what, flush=True)
    else:
        print("FAIL:", what, flush=True)
        failures.append(what)
    return cond


def finish():
    if failures:
        print("%d check(s) failed:" % len(failures))
        for f in failures:
            print("  -", f)
        sys.exit(1)
    print("all checks passed")
    sys.exit(0)


class Daemon:
    """A traind process with its own socket, database and log."""

    def __init__(self, workdir=None, max_running=1, data_dir=None, extra_env=None):
        self.dir = workdir or tempfile.mkdtemp(prefix="traind-test-")
        self.socket = os.path.join(self.dir, "traind.sock")
        self.db = os.path.join(self.dir, "traind.db")
        self.log = os.path.join(self.dir, "traind.log")
        self.data_dir = data_dir or DATA
        self.max_running = max_running
        self.extra_env = extra_env or {}
        self.proc = None

    def command(self):
        return [TRAIND, "--socket", self.socket, "--db", self.db, "--data-dir", self.data_dir,
                "--max-running", str(self.max_running)]

    def start(self, wait=True):
        env = dict(os.environ)
        env.update(self.extra_env)
        self.logf = open(self.log, "ab")
        self.proc = subprocess.Popen(self.command(), stdout=self.logf, stderr=subprocess.STDOUT, env=env)
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

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            if self.wait_exit(60) is None:
                self.kill9()
        if getattr(self, "logf", None):
            self.logf.close()

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    # ---- trainctl ----
    def ctl(self, *args, check_rc=True, timeout=600):
        """Run trainctl; returns (rc, stdout, stderr)."""
        cmd = [TRAINCTL, "--socket", self.socket] + [str(a) for a in args]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
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
