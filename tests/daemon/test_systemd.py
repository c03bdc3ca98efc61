#!/usr/bin/env python3
"""test_systemd.py - traind as a systemd service, on a machine where systemd
is not PID 1: the tools systemd ships, and a few lines of Python, stand in
for the manager.

  units       `meson install --destdir` into a temporary root; `systemd-analyze
              verify` on the installed units (system units with --root, so
              ExecStart= resolves to the installed traind); `systemd-analyze
              security --offline`; systemd-sysusers creates user and group
              traind; the man pages cover every flag of --help.
  activation  `systemd-socket-activate`: the first trainctl connection starts
              traind and gets its answer; the socket file's group decides who
              may connect (--group overrides it); unusable inherited sockets
              are refused.
  notify      a datagram NOTIFY_SOCKET: READY=1 only after recovery and
              listen, STATUS= updates, WATCHDOG=1 at half of WATCHDOG_USEC
              while training loads both cores, STOPPING=1 on SIGTERM; the log
              carries <N> prefixes when JOURNAL_STREAM names stderr.
  reboot      a job trains under the unit's own ExecStart= and Environment=
              with an inherited socket; SIGKILL (power loss) or SIGTERM (clean
              shutdown), /run wiped, the same command again and no trainctl
              command: the job finishes bit-identical to an uninterrupted run
              (after SIGTERM from its exact mid-epoch position).
  sandbox     traind as user nobody under the unit's hardening, emulated where
              tools allow (unshare: ProtectSystem=strict, ProtectHome,
              PrivateTmp, PrivateDevices, PrivateNetwork, PrivateIPC,
              ProcSubset=pid; setpriv: NoNewPrivileges, no capabilities;
              prctl(PR_SET_MDWE): MemoryDenyWriteExecute); strace checks the
              system calls against the unit's SystemCallFilter= and the socket
              families against RestrictAddressFamilies=, while a non-root
              member of the service's group imports a dataset only it can
              read (passed as open files) and a job trains on it.

Needs root (setpriv, unshare, mount). Meson suite 'daemon'; TRAIND_BUILD_DIR
is the build directory, TRAIND_DATA_DIR the datasets.
"""
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
from harness import BUILD, DATA, TRAINCTL, Daemon, check, finish  # noqa: E402
from syscalls import expand, syscall_groups  # noqa: E402

SRC = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "../.."))
BUILD = os.path.abspath(BUILD)
DATA = os.path.abspath(DATA)


def _tmp_base():
    """Where scratch directories go: not /tmp (the sandbox test mounts a
    private /tmp), and short, as the sockets made in them must fit the
    108 bytes of sun_path wherever the checkout is: /run (this test runs as
    root), else the build tree."""
    if os.environ.get("TRAIND_TEST_TMP"):
        return os.environ["TRAIND_TEST_TMP"]
    if os.path.isdir("/run") and os.access("/run", os.W_OK):
        return "/run/traind-tests"
    return os.path.join(BUILD, "tests")


TMP_BASE = _tmp_base()

# A job long enough to stop in the middle of an epoch (2000 steps per epoch).
CONFIG = ["--train-size", "8000", "--val-size", "2000", "--batch-size", "4", "--epochs", "3"]
TINY = ["--train-size", "2000", "--val-size", "1000", "--epochs", "1"]
# Long enough that the job is still training when the notify test pauses it,
# however fast the machine.
NOTIFY_CONFIG = ["--train-size", "8000", "--val-size", "2000", "--batch-size", "4", "--epochs", "30"]

# Runs in the child between fork and the daemon's exec, so that getpid() is
# the daemon's pid: sets LISTEN_PID/WATCHDOG_PID to it, puts an inherited
# socket at fd 3, and can turn on PR_SET_MDWE (MemoryDenyWriteExecute=).
EXEC_WRAPPER = r"""
import ctypes, fcntl, json, os, sys
spec = json.loads(sys.argv[1])
pid = str(os.getpid())
for k in spec.get("pid_env", []):
    os.environ[k] = pid
high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 100) for fd in spec.get("fds", [])]
for i, fd in enumerate(high):
    os.dup2(fd, 3 + i)          # without O_CLOEXEC: the daemon inherits it
    os.close(fd)
if spec.get("mdwe"):
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(65, 1, 0, 0, 0) != 0:   # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
        sys.exit("PR_SET_MDWE: errno %d" % ctypes.get_errno())
os.execvp(sys.argv[2], sys.argv[2:])
"""


_tmpdirs = []
_procs = []     # everything started, killed at the end if still alive
_logs = []      # every log a traind wrote, searched for sanitizer reports


def scan_logs(paths):
    """In a sanitizer build (TRAIND_BUILD_DIR=build-asan) a report in any
    traind log is a failure, even when traind went on or exited 0."""
    for path in paths:
        reports = harness.sanitizer_reports(read(path))
        check(not reports, "no sanitizer report in %s%s" % (os.path.basename(path), " (%s)" % reports[:3]
                                                             if reports else ""))


def tmpdir(prefix):
    """A scratch directory under TMP_BASE; all are removed at the end."""
    os.makedirs(TMP_BASE, exist_ok=True)
    d = tempfile.mkdtemp(prefix="systemd-" + prefix, dir=TMP_BASE)
    _tmpdirs.append(d)
    return d


def spawn(argv, env, log, fds=(), pid_env=(), mdwe=False):
    """Start argv through EXEC_WRAPPER; fds end up at 3, 4, ... in the child
    (with LISTEN_FDS set, as systemd does)."""
    spec = {"fds": list(fds), "pid_env": list(pid_env), "mdwe": mdwe}
    if fds:
        env = dict(env, LISTEN_FDS=str(len(fds)))
    for fd in fds:
        os.set_inheritable(fd, True)
    logf = open(log, "ab")
    if log not in _logs:
        _logs.append(log)
    p = subprocess.Popen([sys.executable, "-c", EXEC_WRAPPER, json.dumps(spec)] + list(argv),
                         stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, env=env,
                         pass_fds=tuple(fds))
    logf.close()
    _procs.append(p)
    return p


def read(path):
    try:
        return open(path, errors="replace").read()
    except OSError:
        return ""


def ctl(sock, *args, timeout=600, user=None):
    cmd = [TRAINCTL, "--socket", sock] + [str(a) for a in args]
    if user:
        cmd = ["setpriv"] + user + ["--"] + cmd
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def ctl_json(sock, *args, **kw):
    rc, out, err = ctl(sock, *(list(args) + ["--json"]), **kw)
    if rc != 0:
        raise RuntimeError("trainctl %s -> %d: %s" % (" ".join(map(str, args)), rc, err.strip()))
    return json.loads(out)


def wait_for(pred, timeout, step=0.02):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


def db_rows(db, query, params=()):
    con = sqlite3.connect("file:%s?mode=ro" % db, uri=True, timeout=10)
    try:
        return con.execute(query, params).fetchall()
    finally:
        con.close()


def wait_mid_epoch(sock, job, epoch, min_step, timeout=300):
    """Poll status until `epoch` epochs are done and `min_step` steps into the next."""
    def at():
        st = ctl_json(sock, "status", job)
        st = st.get("job", st)
        return st if st.get("epoch", 0) >= epoch and st.get("step", 0) >= min_step else None
    return wait_for(at, timeout)


class Notify:
    """A datagram NOTIFY_SOCKET: collects (time, sender pid, {KEY: VALUE})."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        os.chmod(path, 0o666)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.settimeout(0.2)
        self.msgs = []
        self.lock = threading.Lock()
        self.stop = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        ucred = struct.calcsize("3i")
        while not self.stop:
            try:
                data, anc, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(ucred))
            except socket.timeout:
                continue
            except OSError:
                return
            pid = None
            for level, typ, cdata in anc:
                if level == socket.SOL_SOCKET and typ == socket.SCM_CREDENTIALS:
                    pid = struct.unpack("3i", cdata[:ucred])[0]
            kv = {}
            for line in data.decode(errors="replace").split("\n"):
                if "=" in line:
                    k, v = line.split("=", 1)
                    kv[k] = v
            with self.lock:
                self.msgs.append((time.time(), pid, kv))

    def snapshot(self):
        with self.lock:
            return list(self.msgs)

    def wait(self, key, value=None, timeout=60, since=0):
        def find():
            for m in self.snapshot():
                if m[0] >= since and key in m[2] and (value is None or m[2][key] == value):
                    return m
            return None
        return wait_for(find, timeout)

    def close(self):
        self.stop = True
        self.thread.join()
        self.sock.close()


# ---------------------------------------------------------------- install ----

class Installed:
    """`meson install --destdir` into a temporary root."""

    def __init__(self):
        self.root = tmpdir("install-")
        p = subprocess.run(["meson", "install", "-C", BUILD, "--destdir", self.root, "--no-rebuild",
                            "--quiet"], capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError("meson install failed:\n" + p.stdout + p.stderr)
        intro = json.loads(subprocess.run(["meson", "introspect", BUILD, "--installed"],
                                          capture_output=True, text=True, check=True).stdout)
        self.paths = sorted(set(intro.values()))

    def find(self, suffix):
        """The installed path (without the root) ending in suffix."""
        hits = [p for p in self.paths if p.endswith(suffix)]
        if len(hits) != 1:
            raise RuntimeError("expected one installed %s, got %s" % (suffix, hits))
        return hits[0]

    def at(self, path):
        return self.root + path


def parse_unit(path):
    """{key: [values]} of a unit file (all sections together)."""
    keys = {}
    for line in open(path):
        line = line.strip()
        if not line or line[0] in "#;[" or "=" not in line:
            continue
        k, v = line.split("=", 1)
        keys.setdefault(k.strip(), []).append(v.strip())
    return keys


def unit_environment(unit):
    """The unit's Environment=, plus the machine's pinned OpenBLAS settings
    (OPENBLAS_CORETYPE, OPENBLAS_L2_SIZE... where set) as the site's drop-in
    would pin them (doc/training.md: pinning the kernel). The kernel decides the bits:
    without them the unit's traind would run OpenBLAS's own pick for the CPU
    while the reference run, started from this environment, runs the pinned
    one, and the two are not comparable."""
    env = {k: v for k, v in os.environ.items() if k.startswith("OPENBLAS_") and k != "OPENBLAS_NUM_THREADS"}
    for v in unit.get("Environment", []):
        for item in shlex.split(v):
            k, _, val = item.partition("=")
            env[k] = val
    return env



def test_units(inst):
    print("== units: install, systemd-analyze verify/security, sysusers, man pages", flush=True)
    sysdir = os.path.dirname(inst.find("/systemd/system/traind.service"))
    userdir = os.path.dirname(inst.find("/systemd/user/traind.service"))
    sbin_traind = inst.find("/sbin/traind")
    check(os.access(inst.at(sbin_traind), os.X_OK), "traind installed at %s" % sbin_traind)
    check(os.access(inst.at(inst.find("/bin/trainctl")), os.X_OK), "trainctl installed")
    for f in ("traind.socket",):
        check(os.path.exists(inst.at(os.path.join(sysdir, f))), "system %s installed" % f)
        check(os.path.exists(inst.at(os.path.join(userdir, f))), "user %s installed" % f)
    sysusers = inst.find("/sysusers.d/traind.conf")
    man8 = inst.find("/man8/traind.8")
    man1 = inst.find("/man1/trainctl.1")

    service = parse_unit(inst.at(os.path.join(sysdir, "traind.service")))
    user_service = parse_unit(inst.at(os.path.join(userdir, "traind.service")))
    check(service["ExecStart"] == [sbin_traind], "ExecStart= is the installed traind (%s)" % service["ExecStart"])
    check(user_service["ExecStart"] == [sbin_traind], "the user unit runs the installed traind too")
    for k, v in (("Type", "notify"), ("StateDirectory", "traind"), ("RuntimeDirectory", "traind"),
                 ("Restart", "on-failure"), ("ProtectSystem", "strict"), ("NoNewPrivileges", "yes"),
                 ("RestrictAddressFamilies", "AF_UNIX"), ("MemoryDenyWriteExecute", "yes"),
                 ("User", "traind")):
        check(service.get(k) == [v], "traind.service has %s=%s" % (k, v))
    check("WatchdogSec" in service and "TimeoutStopSec" in service, "WatchdogSec= and TimeoutStopSec= set")
    sock = parse_unit(inst.at(os.path.join(sysdir, "traind.socket")))
    check(sock.get("SocketGroup") == ["traind"] and sock.get("SocketMode") == ["0660"],
          "traind.socket: group traind, mode 0660")

    # The system units, verified at their installed paths: --root makes
    # systemd-analyze resolve ExecStart= and the units they pull in inside the
    # temporary root, so it needs systemd's own units there too.
    os.makedirs(inst.at("/usr/lib/systemd"), exist_ok=True)
    if not os.path.exists(inst.at("/usr/lib/systemd/system")):
        shutil.copytree("/usr/lib/systemd/system", inst.at("/usr/lib/systemd/system"), symlinks=True)
    env = dict(os.environ, MANPATH=inst.at(os.path.dirname(os.path.dirname(man8))),
               SYSTEMD_LOG_LEVEL="notice")
    units = [os.path.join(sysdir, "traind.service"), os.path.join(sysdir, "traind.socket")]
    p = subprocess.run(["systemd-analyze", "verify", "--root=" + inst.root] + [u.lstrip("/") for u in units],
                       capture_output=True, text=True, env=env, cwd=inst.root)
    check(p.returncode == 0 and not p.stderr.strip(),
          "systemd-analyze verify --root: the system units pass (rc %d) %s" % (p.returncode, p.stderr.strip()))

    # Proof that --root checks ExecStart= against the installed file.
    os.rename(inst.at(sbin_traind), inst.at(sbin_traind) + ".away")
    p = subprocess.run(["systemd-analyze", "verify", "--root=" + inst.root, units[0].lstrip("/")],
                       capture_output=True, text=True, env=env, cwd=inst.root)
    os.rename(inst.at(sbin_traind) + ".away", inst.at(sbin_traind))
    check(p.returncode != 0 and "not executable" in p.stderr,
          "verify --root notices a missing installed traind (it checks the installed path)")

    # User units: systemd 252 cannot combine --user with --root ("Failed to
    # initialize unit search paths"), so verify copies whose ExecStart= is
    # the same installed file, addressed through the temporary root.
    ucopy = tmpdir("user-units-")
    for f in ("traind.service", "traind.socket"):
        text = open(inst.at(os.path.join(userdir, f))).read()
        text = text.replace("ExecStart=" + sbin_traind, "ExecStart=" + inst.at(sbin_traind))
        open(os.path.join(ucopy, f), "w").write(text)
    xdg = tmpdir("xdg-")
    uenv = dict(env, XDG_RUNTIME_DIR=xdg)
    p = subprocess.run(["systemd-analyze", "verify", "--user", os.path.join(ucopy, "traind.service"),
                        os.path.join(ucopy, "traind.socket")], capture_output=True, text=True, env=uenv)
    check(p.returncode == 0 and not p.stderr.strip(),
          "systemd-analyze verify --user: the user units pass (rc %d) %s" % (p.returncode, p.stderr.strip()))

    p = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--root=" + inst.root,
                        units[0].lstrip("/")], capture_output=True, text=True, env=env, cwd=inst.root)
    m = re.search(r"Overall exposure level for traind.service: ([0-9.]+) (\w+)", p.stdout)
    score = float(m.group(1)) if m else 99
    print("    systemd-analyze security --offline: %s" % (m.group(0) if m else p.stdout[-300:] + p.stderr))
    for line in p.stdout.splitlines():
        if line.startswith("\u2717"):
            print("      " + re.sub(r"\s{2,}", "  ", line.strip()))
    check(score <= 1.0, "exposure of traind.service is at most 1.0 (%.1f)" % score)
    p = subprocess.run(["systemd-analyze", "security", "--user", "--offline=yes",
                        os.path.join(ucopy, "traind.service")], capture_output=True, text=True, env=uenv)
    m = re.search(r"Overall exposure level for traind.service: ([0-9.]+ \w+)", p.stdout)
    print("    user unit: %s" % (m.group(0) if m else p.stderr.strip()[-200:]))

    # sysusers.d: user and group traind, in a scratch copy of /etc.
    sroot = tmpdir("sysusers-")
    os.makedirs(os.path.join(sroot, "etc"))
    for f in ("passwd", "group", "shadow", "gshadow"):
        if os.path.exists("/etc/" + f):
            shutil.copy2("/etc/" + f, os.path.join(sroot, "etc", f))
    p = subprocess.run(["systemd-sysusers", "--root=" + sroot, inst.at(sysusers)],
                       capture_output=True, text=True)
    pw = read(os.path.join(sroot, "etc/passwd"))
    gr = read(os.path.join(sroot, "etc/group"))
    check(p.returncode == 0 and re.search(r"^traind:x:\d+:\d+:", pw, re.M) and re.search(r"^traind:x:\d+:", gr, re.M),
          "systemd-sysusers creates user and group traind (rc %d %s)" % (p.returncode, p.stderr.strip()))

    # Man pages: installed, clean roff, every flag of --help.
    for page in (man8, man1):
        p = subprocess.run(["groff", "-man", "-ww", "-z", inst.at(page)], capture_output=True, text=True)
        check(p.returncode == 0 and not p.stderr.strip(), "%s renders without warnings %s"
              % (os.path.basename(page), p.stderr.strip()[:200]))
    for prog, page in ((inst.at(sbin_traind), man8), (TRAINCTL, man1)):
        helptext = subprocess.run([prog, "--help"], capture_output=True, text=True).stdout
        flags = sorted(set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", helptext)))
        text = subprocess.run(["groff", "-man", "-Tutf8", "-P-c", inst.at(page)], capture_output=True,
                              text=True).stdout
        text = re.sub(r".\x08", "", text).replace("\u2010", "-").replace("\u2212", "-")
        text = re.sub(r"-\n\s*", "-", text)
        missing = [f for f in flags if f not in text]
        check(flags and not missing, "%s covers every flag of %s --help (%d; missing %s)"
              % (os.path.basename(page), os.path.basename(prog), len(flags), missing))


# ------------------------------------------------------------- activation ----

def test_activation(inst):
    print("== socket activation (systemd-socket-activate)", flush=True)
    traind = inst.at(inst.find("/sbin/traind"))
    d = tmpdir("activate-")
    os.chmod(d, 0o755)
    sock = os.path.join(d, "traind.sock")
    log = os.path.join(d, "traind.log")

    def activate(extra=(), mode=None):
        if os.path.exists(sock):
            os.unlink(sock)
        argv = ["systemd-socket-activate", "-l", sock, traind, "--db", os.path.join(d, "traind.db"),
                "--data-dir", DATA] + list(extra)
        logf = open(log, "ab")
        p = subprocess.Popen(argv, stdout=logf, stderr=logf, stdin=subprocess.DEVNULL)
        logf.close()
        _procs.append(p)
        wait_for(lambda: os.path.exists(sock), 10)
        if mode is not None:
            os.chmod(sock, mode)
        return p

    p = activate(mode=0o666)
    time.sleep(0.3)
    exe = os.readlink("/proc/%d/exe" % p.pid)
    check(os.path.basename(exe) == "systemd-socket-activate" and p.poll() is None,
          "before any connection only the socket exists, traind has not started (%s)" % exe)
    t0 = time.time()
    rc, out, err = ctl(sock, "list", "--json", timeout=60)
    check(rc == 0 and json.loads(out) == [], "the first trainctl connection starts traind and gets its answer "
          "(rc %d, %.2f s, %s)" % (rc, time.time() - t0, (out + err).strip()[:200]))
    check(os.path.realpath(os.readlink("/proc/%d/exe" % p.pid)) == os.path.realpath(traind),
          "the activator exec'd traind in place (same pid, as systemd passes the socket)")
    lg = read(log)
    check("(from the service manager)" in lg, "traind serves the inherited socket")
    check("members of group root (gid 0), the socket file's group" in lg,
          "default access: the socket file's group")
    nobody = ["--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    rc, out, err = ctl(sock, "list", user=nobody)
    check(rc == 1 and read(log).count("refused a connection") == 1,
          "a user outside the socket's group is refused even though the file mode (0666) lets it connect "
          "(rc %d, %s)" % (rc, err.strip()))
    job = ctl_json(sock, "start", *TINY)["id"]
    rc, _, _ = ctl(sock, "wait", job, "--state", "done", "--timeout", "300")
    check(rc == 0, "a job runs to the end on the activated socket")
    p.send_signal(signal.SIGTERM)
    rc = p.wait(60)
    check(rc == 0 and os.path.exists(sock), "SIGTERM: exit 0 and the socket file, the manager's, is left "
          "in place (rc %s)" % rc)

    p = activate(["--group", "nogroup"], mode=0o666)
    rc, out, err = ctl(sock, "list", "--json", user=nobody, timeout=60)
    check(rc == 0, "--group nogroup: a member (primary group) may connect, and its connection starts traind "
          "(rc %d, %s)" % (rc, err.strip()))
    rc, out, err = ctl(sock, "list", user=["--reuid=daemon", "--regid=daemon", "--groups=nogroup"])
    check(rc == 0, "--group nogroup: a member by a supplementary group may connect (rc %d, %s)" % (rc, err.strip()))
    rc, out, err = ctl(sock, "list", user=["--reuid=daemon", "--regid=daemon", "--clear-groups"])
    check(rc == 1 and read(log).count("refused a connection") == 2,
          "--group nogroup: a non-member is refused (rc %d, %s)" % (rc, err.strip()))
    rc, out, err = ctl(sock, "list")
    check(rc == 0, "root may always connect")
    p.send_signal(signal.SIGTERM)
    p.wait(60)

    p = activate(["--group", "-"], mode=0o666)
    rc, out, err = ctl(sock, "list", user=nobody, timeout=60)
    check(rc == 0, "--group -: no peer check, the file mode alone decides (rc %d, %s)" % (rc, err.strip()))
    p.send_signal(signal.SIGTERM)
    p.wait(60)

    # A BLAS kernel other than OpenBLAS's own pick: traind runs itself again
    # to load it (blaskernel.h), in the same process, so the socket the
    # activator passed (LISTEN_FDS, LISTEN_PID) is still traind's.
    if "OPENBLAS_CORETYPE" not in os.environ:
        pin = "Core2" if "OpenBLAS's own pick: Prescott" in read(log) else "Prescott"
        p = activate(["--blas-kernel", pin])
        rc, out, err = ctl(sock, "info", "--json", timeout=60)
        blas = json.loads(out)["blas"] if rc == 0 else {}
        check(blas.get("kernel") == pin and blas.get("reason") == "flag",
              "socket activation with --blas-kernel %s: traind answers, running it (%s)" % (pin, blas or err.strip()))
        check(os.path.realpath(os.readlink("/proc/%d/exe" % p.pid)) == os.path.realpath(traind) and
              read(log).count("(from the service manager)") == 4,
              "re-executed in the activator's process, serving the socket it passed")
        job = ctl_json(sock, "start", *TINY)["id"]
        rc, _, _ = ctl(sock, "wait", job, "--state", "done", "--timeout", "300")
        check(rc == 0, "a job runs to the end there")
        p.send_signal(signal.SIGTERM)
        check(p.wait(60) == 0, "and SIGTERM stops it cleanly")
    rc = subprocess.run([traind, "--group", "no-such-group-here", "--db", os.path.join(d, "x.db")],
                        capture_output=True, text=True)
    check(rc.returncode == 2 and "no group" in rc.stderr, "an unknown --group is a usage error (exit 2)")

    # Unusable inherited sockets: refused with a reason, nothing else started.
    cases = []
    dgram = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    dgram.bind(os.path.join(d, "dgram.sock"))
    cases.append(("a datagram socket", [dgram], "not a listening Unix stream socket"))
    unlistened = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unlistened.bind(os.path.join(d, "stream.sock"))
    cases.append(("a stream socket that does not listen", [unlistened], "not a listening Unix stream socket"))
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(4)
    cases.append(("a TCP socket", [tcp], "not a listening Unix stream socket"))
    a = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    a.bind(os.path.join(d, "a.sock"))
    a.listen(4)
    b = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    b.bind(os.path.join(d, "b.sock"))
    b.listen(4)
    cases.append(("two sockets", [a, b], "passed 2 sockets"))
    for what, socks, msg in cases:
        env = dict(os.environ)
        blog = os.path.join(d, "bad.log")
        open(blog, "w").close()
        q = spawn([traind, "--db", os.path.join(d, "bad.db"), "--socket", os.path.join(d, "own.sock")],
                  env, blog, fds=[s.fileno() for s in socks], pid_env=["LISTEN_PID"])
        rc = q.wait(30)
        check(rc == 1 and msg in read(blog) and not os.path.exists(os.path.join(d, "own.sock")),
              "socket activation with %s: refused, exit 1 (%s)" % (what, read(blog).strip()[:120]))
        for s in socks:
            s.close()
    shutil.rmtree(d, ignore_errors=True)


# ----------------------------------------------------------------- notify ----

def test_notify():
    print("== sd_notify: READY, STATUS, WATCHDOG, STOPPING; journal log format", flush=True)
    # A database with a job that was running when its traind lost power.
    d = Daemon(workdir=tmpdir("notify-")).start()
    job = d.start_job(*NOTIFY_CONFIG)
    d.wait(job, "--epoch", "1")
    d.kill9()
    d.logf.close()
    check(db_rows(d.db, "SELECT state FROM jobs WHERE id=?", (job,)) == [("running",)],
          "the database says running after SIGKILL")

    n = Notify(os.path.join(d.dir, "notify.sock"))
    log = os.path.join(d.dir, "journal.log")
    open(log, "w").close()
    st = os.stat(log)
    env = dict(os.environ, NOTIFY_SOCKET=n.path, WATCHDOG_USEC="500000",
               JOURNAL_STREAM="%d:%d" % (st.st_dev, st.st_ino))
    t_start = time.time()
    p = spawn(d.command(), env, log, pid_env=["WATCHDOG_PID"])
    ready = n.wait("READY", "1", timeout=60)
    t_ready = time.time()
    lg_at_ready = read(log)
    connectable = False
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(d.socket)
        s.close()
        connectable = True
    except OSError:
        pass
    check(ready is not None, "READY=1 arrives (%.2f s after start)" % (t_ready - t_start))
    if ready is None:
        p.kill()
        n.close()
        return
    check(ready[1] == p.pid, "sent by traind's own pid (SCM_CREDENTIALS %s, traind %d)" % (ready[1], p.pid))
    check("continuing from its checkpoint" in lg_at_ready and "ready: socket" in lg_at_ready,
          "READY=1 comes after recovery and listen (both logged before it)")
    check(connectable, "at READY=1 the socket accepts connections")
    before = [m for m in n.snapshot() if m[0] <= ready[0]]
    check(all("READY" not in m[2] for m in before[:-1]), "READY=1 is sent once")
    check(re.match(r"\d+ running, \d+ queued, \d+ paused", ready[2].get("STATUS", "")) is not None,
          "READY=1 carries STATUS= (%s)" % ready[2].get("STATUS"))

    # While the job trains on both cores: the loop's watchdog pings and status.
    time.sleep(3.0)
    msgs = n.snapshot()
    wd = [m[0] for m in msgs if m[2].get("WATCHDOG") == "1" and m[0] >= ready[0]]
    gaps = [b - a for a, b in zip(wd, wd[1:])]
    mean = sum(gaps) / len(gaps) if gaps else 0
    check(len(wd) >= 9 and 0.2 <= mean <= 0.3 and max(gaps) < 0.5,
          "WATCHDOG=1 every %.3f s on average (half of WATCHDOG_USEC=0.5 s; %d pings, longest gap %.3f s)"
          % (mean, len(wd), max(gaps) if gaps else 0))
    statuses = [m[2]["STATUS"] for m in msgs if "STATUS" in m[2]]
    check(len(set(statuses)) >= 3 and any(re.search(r"1 running.*job %d epoch \d+/30 step \d+" % job, s)
                                          for s in statuses),
          "STATUS= follows the running job's epoch and step (%d distinct, e.g. %r)"
          % (len(set(statuses)), statuses[-1] if statuses else None))

    rc, out, err = ctl(d.socket, "pause", job)
    rc2, out2, err2 = ctl(d.socket, "resume", job)
    check(rc == 0 and rc2 == 0, "pause and resume through the socket (%s %s)" % (err.strip(), err2.strip()))
    rc, out, err = ctl(d.socket, "wait", job, "--epoch", "2", "--timeout", "120")
    check(rc == 0, "epoch 2 commits after the resume (%s)" % err.strip())
    kjob = ctl_json(d.socket, "start", *TINY)["id"]
    rc, out, err = ctl(d.socket, "kill", kjob)
    check(rc == 0, "kill a queued job (%s)" % err.strip())

    t_term = time.time()
    p.send_signal(signal.SIGTERM)
    stopping = n.wait("STOPPING", "1", timeout=30, since=t_term)
    rc = p.wait(60)
    check(stopping is not None and stopping[0] - t_term < 1.0,
          "STOPPING=1 on SIGTERM (%.3f s later)" % ((stopping[0] - t_term) if stopping else -1))
    check(rc == 0, "traind exits 0 after SIGTERM")
    n.close()

    lines = [l for l in read(log).splitlines() if l.strip()]
    check(lines and all(re.match(r"<[0-7]>", l) for l in lines),
          "with JOURNAL_STREAM naming stderr every line starts with a <N> priority (%d lines)" % len(lines))
    want = [("<5>", r"job %d .*: was running when traind stopped; continuing" % job, "recovered at start-up"),
            ("<5>", r"job %d .*: started" % job, "started"),
            ("<6>", r"job %d: epoch \d+/30 committed \| train_loss" % job, "epoch committed with metrics"),
            ("<5>", r"job %d: paused" % job, "paused"),
            ("<5>", r"job %d: resumed" % job, "resumed"),
            ("<5>", r"job %d: (killed|kill requested)" % kjob, "killed"),
            ("<5>", r"received SIGTERM", "shutdown")]
    for prio, pat, what in want:
        hit = [l for l in lines if re.search(pat, l)]
        check(hit and hit[0].startswith(prio), "logged: %s, at %s (%s)" % (what, prio, hit[0] if hit else None))

    # A job that fails (the disk fills: the database on a 1 MiB tmpfs, in a
    # mount namespace of its own) is logged as an error with its reason.
    full = os.path.join(d.dir, "full")
    os.makedirs(full)
    flog = os.path.join(d.dir, "full.log")
    open(flog, "w").close()
    st = os.stat(flog)
    fsock = os.path.join(d.dir, "full.sock")
    q = spawn(["unshare", "--mount", "--propagation", "private", "sh", "-c",
               'mount -t tmpfs -o size=1m tmpfs "$1" && shift && exec "$@"', "sh", full,
               d.command()[0], "--db", os.path.join(full, "traind.db"), "--socket", fsock, "--data-dir", DATA],
              dict(os.environ, JOURNAL_STREAM="%d:%d" % (st.st_dev, st.st_ino)), flog)
    wait_for(lambda: os.path.exists(fsock), 30)
    fjob = ctl_json(fsock, "start", *TINY)["id"]
    rc, _, _ = ctl(fsock, "wait", fjob, "--state", "failed", "--timeout", "120")
    q.send_signal(signal.SIGTERM)
    q.wait(60)
    hit = [l for l in read(flog).splitlines() if re.search(r"job %d: failed: \S" % fjob, l)]
    check(rc == 0 and hit and hit[0].startswith("<3>"),
          "logged: failed with its reason, at <3> (%s)" % (hit[0] if hit else read(flog)[-300:]))

    plain = read(d.log)
    check(plain and not re.search(r"^<\d>", plain, re.M) and " traind notice: " in plain,
          "without JOURNAL_STREAM lines are plain text with a timestamp and the level")

    # WATCHDOG_PID naming another process: no pings, but READY=1 and STATUS=.
    n = Notify(os.path.join(d.dir, "notify2.sock"))
    env = dict(os.environ, NOTIFY_SOCKET=n.path, WATCHDOG_USEC="200000", WATCHDOG_PID="1")
    p = spawn(d.command(), env, os.path.join(d.dir, "other.log"))
    ready = n.wait("READY", "1", timeout=60)
    time.sleep(0.6)
    p.send_signal(signal.SIGTERM)
    p.wait(60)
    check(ready is not None and not any("WATCHDOG" in m[2] for m in n.snapshot()),
          "WATCHDOG_PID of another process: READY=1 but no WATCHDOG=1")
    n.close()
    d.cleanup()


# ----------------------------------------------------------------- reboot ----

class Service:
    """traind as traind.service would run it: the unit's ExecStart= (the
    installed binary) and Environment=, StateDirectory=/RuntimeDirectory=
    as $STATE_DIRECTORY/$RUNTIME_DIRECTORY, a NOTIFY_SOCKET, and the socket
    of traind.socket passed as fd 3."""

    def __init__(self, inst):
        unit_path = inst.at(inst.find("/systemd/system/traind.service"))
        self.unit = parse_unit(unit_path)
        argv = shlex.split(self.unit["ExecStart"][0])
        self.argv = [inst.at(argv[0])] + argv[1:]
        self.root = tmpdir("service-")
        self.state = os.path.join(self.root, "var/lib/traind")
        self.run = os.path.join(self.root, "run/traind")
        os.makedirs(self.state, mode=0o750)
        os.symlink(DATA, os.path.join(self.state, "data"))
        self.sock_path = os.path.join(self.run, "traind.sock")
        self.db = os.path.join(self.state, "traind.db")
        self.log = os.path.join(self.root, "journal.log")
        self.notify = Notify(os.path.join(self.root, "notify.sock"))
        self.listener = None
        self.proc = None

    def boot(self):
        """A fresh /run (tmpfs after a reboot) and traind.socket listening."""
        if self.listener:
            self.listener.close()
        shutil.rmtree(os.path.dirname(self.run), ignore_errors=True)
        os.makedirs(self.run, mode=0o755)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.sock_path)
        os.chmod(self.sock_path, 0o660)
        self.listener.listen(128)

    def start(self):
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
               "STATE_DIRECTORY": self.state, "RUNTIME_DIRECTORY": self.run,
               "NOTIFY_SOCKET": self.notify.path, "WATCHDOG_USEC": "30000000"}
        env.update(unit_environment(self.unit))
        self.t_start = time.time()
        self.proc = spawn(self.argv, env, self.log, fds=[self.listener.fileno()],
                          pid_env=["LISTEN_PID", "WATCHDOG_PID"])
        env_note = " ".join("%s=%s" % kv for kv in unit_environment(self.unit).items())
        ready = self.notify.wait("READY", "1", timeout=120, since=self.t_start)
        check(ready is not None, "started as the unit does (%s %s): READY=1"
              % (env_note, " ".join(self.argv[-1:])))
        return ready

    def ctl(self, *args, **kw):
        return ctl(self.sock_path, *args, **kw)

    def ctl_json(self, *args, **kw):
        return ctl_json(self.sock_path, *args, **kw)

    def close(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.notify.close()
        if self.listener:
            self.listener.close()


def reference_run():
    d = Daemon(workdir=tmpdir("reference-")).start()
    job = d.start_job(*CONFIG)
    rc, _, err = d.wait(job, "--state", "done")
    if rc != 0:
        raise RuntimeError("reference run: " + err)
    sha = d.export_sha(job)
    hist = d.ctl_json("history", job)
    d.cleanup()
    return sha, hist


def strip_seconds(hist):
    return [{k: v for k, v in r.items() if k not in ("seconds", "created_at")} for r in hist]


def test_reboot(inst, ref_sha, ref_hist, how):
    print("== simulated reboot after %s" % how, flush=True)
    svc = Service(inst)
    try:
        svc.boot()
        if svc.start() is None:
            return
        job = svc.ctl_json("start", *CONFIG)["id"]
        rc, _, _ = svc.ctl("wait", job, "--epoch", "1")
        st = wait_mid_epoch(svc.sock_path, job, 1, 300)
        check(st is not None, "the job is in the middle of epoch 2 (step %s)" % (st or {}).get("step"))
        if how == "SIGKILL":
            svc.proc.kill()
            svc.proc.wait()
            check(db_rows(svc.db, "SELECT state FROM jobs WHERE id=?", (job,)) == [("running",)],
                  "power loss: the database still says running")
            newest = db_rows(svc.db, "SELECT epoch, step FROM checkpoints WHERE job_id=? ORDER BY epoch DESC, "
                             "step DESC LIMIT 1", (job,))[0]
        else:
            t = time.time()
            svc.proc.send_signal(signal.SIGTERM)
            rc = svc.proc.wait(90)
            stopping = svc.notify.wait("STOPPING", "1", timeout=5, since=t)
            check(rc == 0 and stopping is not None, "clean shutdown: STOPPING=1, exit 0 (rc %s)" % rc)
            pos = db_rows(svc.db, "SELECT epoch, step FROM checkpoints WHERE job_id=? AND kind='position'", (job,))
            check(len(pos) == 1 and pos[0][1] > 0, "a mid-epoch position checkpoint was committed (%s)" % pos)
            newest = pos[0] if pos else (0, 0)
            m = re.search(r"job %d: checkpointed for shutdown at epoch (\d+) step (\d+)" % job, read(svc.log))
            check(m is not None and (int(m.group(1)), int(m.group(2))) == tuple(newest),
                  "logged the exact position it saved (%s)" % (m.group(0) if m else None))

        # The reboot: /run is gone, traind.socket listens again, systemd starts
        # the enabled traind.service. Nobody runs trainctl.
        svc.boot()
        svc.start()
        lg = read(svc.log)
        want = "job %d (" % job
        m = re.search(r"job %d \([^)]*\): was running when traind stopped; continuing from its checkpoint at "
                      r"epoch (\d+) step (\d+)" % job, lg)
        check(want in lg and m is not None and (int(m.group(1)), int(m.group(2))) == tuple(newest),
              "at start-up traind continues the job from its newest checkpoint, epoch %d step %d, by itself"
              % tuple(newest))
        done = wait_for(lambda: db_rows(svc.db, "SELECT state FROM jobs WHERE id=?", (job,)) == [("done",)],
                        600, step=0.2)
        check(done, "the job finishes with no trainctl command (watched in SQLite only)")
        m = re.search(r"job %d: had resumed from epoch (\d+) step (\d+)" % job, read(svc.log))
        check(m is not None and (int(m.group(1)), int(m.group(2))) == tuple(newest),
              "the worker restored exactly epoch %d step %d" % tuple(newest))
        out = os.path.join(svc.root, "model.safetensors")
        rc, _, err = svc.ctl("export", job, "-o", out)
        sha = hashlib.sha256(open(out, "rb").read()).hexdigest() if rc == 0 else None
        check(sha == ref_sha, "weights bit-identical to an uninterrupted run (%s)" % (sha or err.strip())[:16])
        hist = svc.ctl_json("history", job)
        check(strip_seconds(hist) == strip_seconds(ref_hist), "history identical to the uninterrupted run's "
              "(but for wall time)")
        t = time.time()
        svc.proc.send_signal(signal.SIGTERM)
        check(svc.proc.wait(60) == 0, "stops cleanly (%.2f s)" % (time.time() - t))
    finally:
        svc.close()
        shutil.rmtree(svc.root, ignore_errors=True)


# ---------------------------------------------------------------- sandbox ----

SANDBOX = r"""
set -eu
state=$1 run=$2 data=$3; shift 3
# Writable: the state and runtime directories only (bind mounts of their own
# survive the read-only remount of their parents).
mount -n --bind "$state" "$state"
mount -n --bind "$run" "$run"
# The datasets, wherever the checkout lives (even under /tmp or /root, which
# the sandbox hides below): bound into the state directory, read-only below.
mount -n --bind "$data" "$state/data"
# ProtectSystem=strict: every other mount read-only but the API file systems.
awk '$4 ~ /(^|,)rw(,|$)/ { print $2 }' /proc/self/mounts | while read -r m; do
	case "$m" in
	/proc|/proc/*|/dev|/dev/*|"$state"|"$run") ;;
	*) mount -n -o remount,bind,ro "$m" ;;
	esac
done
# ProtectHome=yes
for d in /home /root /run/user; do
	if [ -d "$d" ]; then mount -n -t tmpfs -o ro,mode=000 tmpfs "$d"; fi
done
# PrivateTmp=yes
mount -n -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
mount -n -t tmpfs -o mode=1777,nosuid,nodev tmpfs /var/tmp
# PrivateDevices=yes: a /dev with the pseudo devices only.
mkdir /tmp/.dev
mount -n -t tmpfs -o mode=755,nosuid,noexec tmpfs /tmp/.dev
for n in null zero full random urandom tty; do
	touch /tmp/.dev/$n
	mount -n --bind /dev/$n /tmp/.dev/$n
done
mkdir /tmp/.dev/shm
mount -n -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp/.dev/shm
ln -s /proc/self/fd /tmp/.dev/fd
mount -n --move /tmp/.dev /dev
# ProcSubset=pid (and with it no /proc/sys) and ProtectProc=invisible
# (other users' processes hidden): a new proc instance.
mount -n -t proc -o subset=pid,hidepid=invisible,nosuid,nodev,noexec proc /proc
# UMask=0077
umask 0077
exec "$@"
"""


def status_field(pid, name):
    for line in read("/proc/%d/status" % pid).splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    return None


def test_sandbox(inst):
    print("== hardening: traind as nobody in the unit's sandbox (emulated), syscall audit", flush=True)
    unit = parse_unit(inst.at(inst.find("/systemd/system/traind.service")))
    # Outside every directory the sandbox hides (/tmp, /var/tmp, /home, /root),
    # wherever the build tree is: under /var/lib, as the service's would be.
    root = tempfile.mkdtemp(prefix="traind-sandbox-test-", dir="/var/lib")
    _tmpdirs.append(root)
    os.chmod(root, 0o755)
    traind = os.path.join(root, "traind")
    shutil.copy2(inst.at(inst.find("/sbin/traind")), traind)
    os.chmod(traind, 0o755)
    state = os.path.join(root, "state")
    run = os.path.join(root, "run")
    for dd in (state, run):
        os.makedirs(dd, mode=0o750)
        os.chown(dd, 65534, 65534)
    os.chmod(run, 0o755)
    os.makedirs(os.path.join(state, "data"))
    n = Notify(os.path.join(root, "notify.sock"))   # on a read-only mount inside
    log = os.path.join(root, "traind.log")
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "STATE_DIRECTORY": state,
           "RUNTIME_DIRECTORY": run, "NOTIFY_SOCKET": n.path, "WATCHDOG_USEC": "200000"}
    env.update(unit_environment(unit))
    setpriv = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--no-new-privs",
               "--bounding-set=-all", "--inh-caps=-all", "--"]
    argv = (["unshare", "--mount", "--net", "--ipc", "--uts", "--propagation", "private",
             "sh", "-c", SANDBOX, "sandbox", state, run, os.path.realpath(DATA)] + setpriv +
            [traind, "--group", "nogroup"])
    t0 = time.time()
    p = spawn(argv, env, log, pid_env=["WATCHDOG_PID"], mdwe=True)
    ready = n.wait("READY", "1", timeout=60, since=t0)
    check(ready is not None, "sandboxed traind starts and its READY=1 reaches a NOTIFY_SOCKET on a read-only "
          "mount%s" % ("" if ready else ": " + read(log)[-600:]))
    if ready is None:
        p.kill()
        n.close()
        return
    pid = p.pid
    check(status_field(pid, "Uid").split()[:2] == ["65534", "65534"], "runs as nobody")
    check(status_field(pid, "NoNewPrivs") == "1", "NoNewPrivileges")
    check(int(status_field(pid, "CapBnd"), 16) == 0 and int(status_field(pid, "CapEff"), 16) == 0,
          "no capabilities, empty bounding set")
    check(os.readlink("/proc/%d/ns/net" % pid) != os.readlink("/proc/self/ns/net"), "own network namespace")
    mounts = read("/proc/%d/mounts" % pid)
    check(re.search(r"^proc /proc proc \S*subset=pid", mounts, re.M) is not None, "ProcSubset=pid in force")
    check(re.search(r"^proc /proc proc \S*hidepid=invisible", mounts, re.M) is not None,
          "ProtectProc=invisible in force")
    check(re.search(r"^\S+ / \S+ ro[,\s]", mounts, re.M) is not None, "/ is read-only in its view")
    sock = os.path.join(run, "traind.sock")
    st = os.stat(sock)
    check(st.st_mode & 0o777 == 0o660 and st.st_gid == 65534,
          "its own socket: mode 0660 despite UMask=0077, group nogroup (--group)")
    job = ctl_json(sock, "start", *TINY)["id"]
    rc, _, err = ctl(sock, "wait", job, "--state", "done", "--timeout", "300")
    check(rc == 0, "a job trains to the end in the sandbox (rc %d %s)" % (rc, err.strip()))
    threads = len(os.listdir("/proc/%d/task" % pid))
    rc, out, err = ctl(sock, "eval", job, "--split", "test", "--json")
    check(rc == 0 and json.loads(out).get("acc", 0) > 0.5, "eval works (test acc %s)"
          % (json.loads(out).get("acc") if rc == 0 else err.strip()))
    rc, _, err = ctl(sock, "export", job, "-o", os.path.join(root, "m.safetensors"))
    check(rc == 0, "export works")
    rc, _, err = ctl(sock, "list", user=["--reuid=daemon", "--regid=daemon", "--groups=nogroup"])
    check(rc == 0, "with other users' processes invisible, a peer in group nogroup by a supplementary group "
          "is let in (its groups come from SO_PEERGROUPS) (rc %d %s)" % (rc, err.strip()))
    rc, _, err = ctl(sock, "list", user=["--reuid=daemon", "--regid=daemon", "--clear-groups"])
    check(rc == 1 and "Permission denied" in err, "... and one outside it is refused by the socket's mode "
          "(rc %d %s)" % (rc, err.strip()))
    wd = [m for m in n.snapshot() if m[2].get("WATCHDOG") == "1"]
    check(len(wd) >= 2, "watchdog pings from the sandbox (%d)" % len(wd))
    p.send_signal(signal.SIGTERM)
    rc = p.wait(60)
    check(rc == 0, "SIGTERM: exit 0 (%s)" % rc)
    owned = [f for f in os.listdir(state) if f.startswith("traind.db")]
    check("traind.db" in owned and all(os.stat(os.path.join(state, f)).st_uid == 65534 and
                                       os.stat(os.path.join(state, f)).st_mode & 0o077 == 0 for f in owned),
          "the database lives in the state directory, owned by nobody, mode 0600 (UMask=0077) (%s)" % owned)
    print("    threads while idle after a job: %d (OPENBLAS_NUM_THREADS=%s)"
          % (threads, unit_environment(unit).get("OPENBLAS_NUM_THREADS")))
    check(not re.search(r"<[34]>|error|warning", read(log)), "no errors or warnings in the log")

    # The emulation is real: outside its two directories traind cannot write.
    elsewhere = os.path.join(root, "elsewhere")
    os.makedirs(elsewhere)
    os.chown(elsewhere, 65534, 65534)
    p = spawn(argv[:-3] + [traind, "--db", os.path.join(elsewhere, "x.db")], env, log + ".2")
    rc = p.wait(60)
    check(rc == 1 and "Read-only file system" in read(log + ".2"),
          "a database outside the state directory fails with EROFS (the sandbox is in force)")

    # MemoryDenyWriteExecute= really applied (PR_SET_MDWE refuses W+X maps).
    probe = spawn([sys.executable, "-c",
                   "import ctypes,sys\nlibc=ctypes.CDLL(None)\nlibc.mmap.restype=ctypes.c_void_p\n"
                   "p=libc.mmap(None,4096,7,0x22,-1,0)\nsys.exit(0 if p in (None,2**64-1) else 1)"],
                  dict(os.environ), log + ".3", mdwe=True)
    check(probe.wait(30) == 0, "the MDWE wrapper does refuse writable+executable memory")
    n.close()

    # strace: every system call within the unit's filter, sockets AF_UNIX only.
    trace = os.path.join(root, "strace.out")
    d2 = os.path.join(root, "audit")
    os.makedirs(d2)
    os.chown(d2, 65534, 65534)
    env2 = dict(env, STATE_DIRECTORY=d2, RUNTIME_DIRECTORY=d2)
    if harness.SANITIZER == "asan":
        env2["ASAN_OPTIONS"] = "detect_leaks=0"   # LeakSanitizer cannot run under ptrace
    del env2["NOTIFY_SOCKET"]
    n = Notify(os.path.join(root, "notify3.sock"))
    env2["NOTIFY_SOCKET"] = n.path
    # traind runs as nobody here: a symlink to DATA would need every directory
    # above the checkout to be open to nobody (a clone under mktemp -d is not),
    # so the dataset it trains on is linked (or copied) in.
    mirror_dataset(os.path.join(DATA, "mnist"), os.path.join(d2, "data", "mnist"))
    os.chown(os.path.join(d2, "data"), 65534, 65534)   # the service's data directory is its own
    # A dataset only its owner, user daemon (a member of the service's group
    # here: nogroup), can read: traind cannot open it by path, so the import
    # must pass the open files.
    mine = os.path.join(root, "daemon-files")
    os.makedirs(mine, mode=0o700)
    for name in os.listdir(os.path.join(DATA, "mnist")):
        shutil.copyfile(os.path.join(DATA, "mnist", name), os.path.join(mine, name))
        os.chown(os.path.join(mine, name), 1, 1)
        os.chmod(os.path.join(mine, name), 0o600)
    os.chown(mine, 1, 1)
    member = ["--reuid=daemon", "--regid=daemon", "--groups=nogroup"]
    errf = open(log + ".4", "wb")
    # (no --group: chown(2) of its own socket is outside the unit's filter;
    # the socket is nobody:nogroup, mode 0660, all the same)
    p = subprocess.Popen(["strace", "-f", "-qq", "-o", trace, "--"] + setpriv[:-1] + ["--", traind],
                         env=env2, stdout=errf, stderr=errf)
    _procs.append(p)
    errf.close()
    ready = n.wait("READY", "1", timeout=120)
    sock = os.path.join(d2, "traind.sock")
    if ready:
        job = ctl_json(sock, "start", *TINY)["id"]
        ctl(sock, "wait", job, "--state", "done", "--timeout", "600", timeout=700)
        ctl(sock, "eval", job)
        ctl(sock, "status", job)
        # Import as a member of the group, into the service's data directory.
        files = sorted(os.path.join(mine, f) for f in os.listdir(mine))
        rc, out, err = ctl(sock, "dataset", "import", "theirs", *files, "--json", user=member)
        check(rc == 0 and json.loads(out).get("train") == 60000,
              "a non-root member of the service's group imports a dataset only it can read "
              "(rc %d %s)" % (rc, err.strip()))
        landed = os.path.join(d2, "data", "theirs")
        owners = {(os.stat(os.path.join(landed, f)).st_uid, os.stat(os.path.join(landed, f)).st_gid)
                  for f in os.listdir(landed)} if os.path.isdir(landed) else set()
        check(sorted(os.listdir(landed) if os.path.isdir(landed) else []) == sorted(os.listdir(mine))
              and owners == {(65534, 65534)} and os.stat(landed).st_uid == 65534,
              "it lands under the service's data directory, owned by the service's user (%s)" % owners)
        rc, out, err = ctl(sock, "start", "--dataset", "theirs", *TINY, "--json", user=member)
        job2 = json.loads(out)["id"] if rc == 0 else None
        rc, _, err = ctl(sock, "wait", job2 or 0, "--state", "done", "--timeout", "600", timeout=700,
                         user=member)
        check(rc == 0, "and a job of theirs trains on it (rc %d %s)" % (rc, err.strip()))
        rc, out, err = ctl(sock, "dataset", "rm", "theirs", user=member)
        check(rc == 1 and "used by job %s" % job2 in err, "rm is refused while their job uses it (%s)"
              % err.strip())
        os.kill(ready[1], signal.SIGTERM)    # traind (setpriv exec'd it), not strace
    else:
        p.kill()
    try:
        p.wait(120)
    except subprocess.TimeoutExpired:
        if ready:
            os.kill(ready[1], signal.SIGKILL)   # strace's death would only detach it
        p.kill()
        p.wait()
    n.close()
    check(ready is not None and p.returncode == 0, "traind under strace: READY=1, exit 0%s"
          % ("" if ready and p.returncode == 0 else " (%s %s)" % (p.returncode, read(log + ".4")[-300:])))
    text = read(trace)
    start = text.find('execve("%s"' % traind)
    body = text[start:] if start >= 0 else ""
    used = set()
    for line in body.splitlines():
        m = re.match(r"\d+\s+(?:<\.\.\. )?([a-z0-9_]+)[( ]", line)
        if m:
            used.add(m.group(1))
    groups = syscall_groups()
    allowed = set()
    for f in unit.get("SystemCallFilter", []):
        names = set()
        for item in f.lstrip("~").split():
            names |= expand(groups, item) if item.startswith("@") else {item}
        allowed = allowed - names if f.startswith("~") else allowed | names
    outside = sorted(used - allowed - {"execve"})
    check(start >= 0 and len(used) > 20 and not outside,
          "strace: the %d system calls traind made are all in SystemCallFilter= (outside: %s)"
          % (len(used), outside))
    fams = set(re.findall(r"\bsocket\((AF_\w+)", body))
    check(fams == {"AF_UNIX"}, "strace: sockets are AF_UNIX only (RestrictAddressFamilies=) %s" % sorted(fams))
    wx = re.findall(r"\b(?:mmap|mprotect|pkey_mprotect)\([^)]*PROT_WRITE\|PROT_EXEC", body)
    check(not wx, "strace: no writable+executable mapping (MemoryDenyWriteExecute=) %s" % wx[:2])
    rt = re.findall(r"sched_setscheduler\([^)]*SCHED_(?:FIFO|RR)", body)
    check(not rt, "strace: no realtime scheduling (RestrictRealtime=)")
    scan_logs([log, log + ".4"])
    shutil.rmtree(root, ignore_errors=True)


def mirror_dataset(src, dst):
    """dst holds src's files, hard-linked where the file system allows, else
    copied, readable by anyone."""
    os.makedirs(dst)
    for name in os.listdir(src):
        a, b = os.path.join(os.path.realpath(src), name), os.path.join(dst, name)
        try:
            os.link(os.path.realpath(a), b)
        except OSError:
            shutil.copyfile(a, b)
        os.chmod(b, 0o644)


def main():
    # meson's timeout sends SIGTERM: unwind, so that the finally below stops
    # every process started and removes the scratch directories.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit("SIGTERM"))
    if os.geteuid() != 0:
        print("SKIP: needs root (setpriv, unshare, mount)")
        sys.exit(77)
    for tool in ("systemd-analyze", "systemd-socket-activate", "systemd-sysusers", "setpriv", "unshare",
                 "strace", "groff", "meson"):
        if not shutil.which(tool):
            print("SKIP: %s is not installed" % tool)
            sys.exit(77)
    try:
        inst = Installed()
        test_units(inst)
        test_activation(inst)
        test_notify()
        ref_sha, ref_hist = reference_run()
        test_reboot(inst, ref_sha, ref_hist, "SIGKILL")
        test_reboot(inst, ref_sha, ref_hist, "SIGTERM")
        test_sandbox(inst)
    except Exception as e:
        traceback.print_exc()
        check(False, "exception %s: %s" % (type(e).__name__, (str(e).strip().splitlines() or [""])[0]))
    finally:
        for p in _procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for d in getattr(harness, "_daemons", []):
            d.stop()
        scan_logs(_logs)
        for d in _tmpdirs:
            shutil.rmtree(d, ignore_errors=True)
        if TMP_BASE == "/run/traind-tests":
            try:
                os.rmdir(TMP_BASE)    # unless another run is using it
            except OSError:
                pass
    finish()


if __name__ == "__main__":
    main()
