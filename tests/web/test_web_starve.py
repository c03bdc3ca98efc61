#!/usr/bin/env python3
"""No local client can starve traind-web's other clients (issue 21, item 1):
each attack runs against a real traind-web on a real traind while a
well-behaved client (Prometheus-like: a new connection for each GET
/api/jobs with the bearer token) measures its latency, and traind-web's
threads, descriptors and memory are sampled.

The attackers run in a child process as another uid (nobody) when the test
runs as root, else as the same uid. traind-web tells local TCP clients apart
by their uid (sock_diag); the same attacks from the prober's own uid go
through the other path, closing the oldest idle or slow connection to make
room. traind-web runs with its defaults (--max-connections 128, one client
at most 64) but --request-timeout 4, so that the deadline shows in seconds.

  slowloris      the issue's attack: 140 connections each send
                 "GET /api/jobs HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\n" then one
                 header byte a second; past the client's share (64) each new
                 one closes the client's own oldest (503 "closed to make
                 room"), and those held get a 408 at the deadline.
  slowloris-same the same from the prober's own uid.
  slowpost       40 POSTs whose 60000-byte body trickles: 408 at the deadline
                 (a whole request includes its body).
  idle           1000 connections that send nothing (half-open) from nobody.
  unix           140 slow-loris on a --listen unix: socket, nobody against root.

Bounds (release build): every prober request answered 200, p99 under 250 ms
(or, on a loaded machine, under 4 times the same run's unattacked p99)
(each is a new TCP connection, a new thread in traind-web and a List call
to traind); traind-web's threads under 2 x 128 + 16 and descriptors under
4 x 128 + 128 + 64 (see below); VmRSS
under +64 MiB. --long: 2000-connection attacks for a minute each.
"""
import argparse
import http.client
import json
import os
import resource
import select
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import SANITIZER, Daemon, check  # noqa: E402
from test_web import Web, _stop_webs  # noqa: E402

MIB = 1 << 20
LATENCY_P99 = 0.250
LOAD_FACTOR = 4              # see the bound's check in main()
# Under the sanitizers (latency not checked there; the release tree runs the
# long form) a shorter deadline and phases: the same requests, closings and
# replies, 1.5 s past the deadline instead of 2.
REQUEST_TIMEOUT = 3 if SANITIZER else 4
SAMPLE = 1.0 if SANITIZER else 2.0     # the prober's samples between the phases
NOBODY = 65534
# root runs the attackers as nobody, when nobody can read this file
AS_NOBODY = os.geteuid() == 0 and harness.others_can_run(__file__)
ATTACK_PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
BG = ["--train-size", "10000", "--batch-size", "4", "--val-size", "2000", "--epochs", "1000"]


# ---- the attacker (a child process) ----------------------------------------------

def attacker(kind, where, n, seconds, token):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    socks, replies, closed = [], [], 0
    first = {"slowloris": b"GET /api/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\n",
             "slowpost": b"POST /api/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                         b"X-Traind-Control: 1\r\nAuthorization: Bearer " + token.encode() +
                         b"\r\nContent-Length: 60000\r\n\r\n{",
             "idle": b""}[kind]
    for _ in range(n):
        try:
            if where.startswith("unix:"):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(where[5:])
            else:
                s = socket.create_connection(("127.0.0.1", int(where)))
            if first:
                s.sendall(first)
            s.setblocking(False)
            socks.append([s, b""])
        except OSError as e:
            replies.append("connect: %s" % e)
    print(json.dumps({"ready": len(socks)}), flush=True)
    end = time.time() + seconds
    last = 0.0
    while time.time() < end:
        if select.select([sys.stdin], [], [], 0.05)[0] and not sys.stdin.readline():
            break
        if kind != "idle" and time.time() - last >= 1.0:
            last = time.time()
            for s in socks:
                try:
                    s[0].send(b"X" if kind == "slowloris" else b" ")
                except OSError:
                    pass
        for s in list(socks):
            try:
                d = s[0].recv(65536)
                if d:
                    s[1] += d
                    continue
            except BlockingIOError:
                continue
            except OSError:
                pass
            closed += 1
            replies.append(s[1].split(b"\r\n")[0].decode("latin-1") or "closed without a reply")
            if b"\r\n\r\n" in s[1]:
                replies[-1] += " | " + s[1].split(b"\r\n\r\n", 1)[1][:200].decode("latin-1")
            s[0].close()
            socks.remove(s)
    counts = {}
    for r in replies:
        k = r.split(" | ")[0]
        counts.setdefault(k, [0, r])[0] += 1
    print(json.dumps({"end": {"open": len(socks), "closed": closed, "replies": counts}}), flush=True)


class Attacker:
    def __init__(self, kind, where, n, seconds, other_uid=True, group=None, token="-"):
        kw = {}
        if AS_NOBODY and other_uid:
            kw = {"user": NOBODY, "group": group if group is not None else NOBODY, "extra_groups": []}
        self.p = subprocess.Popen([ATTACK_PYTHON, os.path.abspath(__file__), "--attack", kind, str(where),
                                   str(n), str(seconds), token], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True, **kw)
        line = self.p.stdout.readline()
        self.ready = json.loads(line)["ready"] if line else 0

    def wait(self):
        out = self.p.stdout.read()
        self.p.wait(120)
        for line in out.splitlines():
            if line.startswith('{"end"'):
                return json.loads(line)["end"]
        return {"open": 0, "closed": 0, "replies": {}}


# ---- the well-behaved client ----------------------------------------------------

def proc_status(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def nfds(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return 0


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else 0.0


class Prober(threading.Thread):
    """GET /api/jobs with the token on a new connection every 20 ms."""

    def __init__(self, web, unix=None):
        super().__init__(daemon=True)
        self.web, self.unix, self.phase, self.stop = web, unix, "start", False
        self.lat, self.errors, self.peak = {}, [], {}

    def get(self):
        if self.unix:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(30)
            s.connect(self.unix)
            s.sendall(("GET /api/jobs HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer %s\r\n"
                       "Connection: close\r\n\r\n" % self.web.token).encode())
            data = b""
            while True:
                c = s.recv(65536)
                if not c:
                    break
                data += c
            s.close()
            status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else 0
            return status, data.split(b"\r\n\r\n", 1)[-1]
        c = http.client.HTTPConnection("127.0.0.1", self.web.port, timeout=30)
        c.request("GET", "/api/jobs", headers={"Authorization": "Bearer " + self.web.token})
        r = c.getresponse()
        body = r.read()
        c.close()
        return r.status, body

    def run(self):
        pid = self.web.proc.pid
        while not self.stop:
            phase = self.phase
            t0 = time.perf_counter()
            try:
                status, body = self.get()
                if status != 200 or b'"jobs"' not in body:
                    self.errors.append("%s: %s %r" % (phase, status, body[:120]))
            except Exception as e:  # noqa: BLE001 - any failure is a finding
                self.errors.append("%s: %r" % (phase, e))
            # latencies and peaks by the whole phase, connect burst included
            phase = phase.replace(" (connecting)", "")
            self.lat.setdefault(phase, []).append(time.perf_counter() - t0)
            p = self.peak.setdefault(phase, [0, 0, 0])
            try:
                p[0] = max(p[0], proc_status(pid, "Threads"))
                p[1] = max(p[1], nfds(pid))
                p[2] = max(p[2], proc_status(pid, "VmRSS") * 1024)
            except OSError:
                pass
            time.sleep(0.02)


def run_phase(pr, name, make):
    # While the attacker opens its connections, requests count as
    # "NAME (connecting)": from the attacker's own uid, the prober is the
    # same client, and among a burst of that client's fresh connections the
    # gate cannot tell which one is slow.
    pr.phase = name + " (connecting)"
    attack = make()
    pr.phase = name
    rep = attack.wait()
    print("    %-15s %d connections opened; at the end %d open, %d closed by traind-web: %s"
          % (name, attack.ready, rep["open"], rep["closed"],
             {k: v[0] for k, v in rep["replies"].items()}))
    return rep


def replies(rep, prefix):
    got = [v for k, v in rep["replies"].items() if k.startswith(prefix)]
    return sum(v[0] for v in got), (got[0][1] if got else "")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--long", action="store_true", help="2000-connection attacks, a minute each")
    args = ap.parse_args()
    n, secs = (2000, 60) if args.long else (140, REQUEST_TIMEOUT + (1.5 if SANITIZER else 2))
    root = AS_NOBODY
    if os.geteuid() == 0 and not root:
        print("the attackers cannot run as nobody: %s is not readable by other uids (a private checkout); "
              "they share the prober's uid" % os.path.abspath(__file__))
    if not root:
        print("not root: the attackers share the prober's uid (only the closing of idle and slow "
              "connections tells them apart)")
    d = Daemon(max_running=1).start()
    os.chmod(d.dir, 0o755)
    job = d.start_job(*BG)
    web = Web(d, extra=["--request-timeout", str(REQUEST_TIMEOUT)])
    pid = web.proc.pid
    base_rss = proc_status(pid, "VmRSS") * 1024
    pr = Prober(web)
    pr.start()
    time.sleep(SAMPLE)

    rep = run_phase(pr, "slowloris", lambda: Attacker("slowloris", web.port, n, secs))
    k408, s408 = replies(rep, "HTTP/1.1 408")
    check(k408 <= 64 and rep["closed"] == n,
          "slowloris: the attacker holds at most its share (64): each connection past it closes its own oldest "
          "(503 'closed to make room', or closed when no request had begun); %d reach the deadline" % k408)
    check(k408 > 0 and "--request-timeout" in s408,
          "slowloris: those it holds get 408 naming --request-timeout at the deadline (%d): %s"
          % (k408, s408[-100:]))
    rep = run_phase(pr, "slowloris-same", lambda: Attacker("slowloris", web.port, n, secs, other_uid=False))
    # a token holder whose POST body trickles: the deadline covers the body
    rep = run_phase(pr, "slowpost", lambda: Attacker("slowpost", web.port, 40, secs, token=web.token))
    k408, s408 = replies(rep, "HTTP/1.1 408")
    check(k408 >= 35, "slowpost: a trickling body gets 408 at the request's deadline (%d of 40): %s"
          % (k408, s408[-100:]))
    rep = run_phase(pr, "idle", lambda: Attacker("idle", web.port, n * 7, secs))
    pr.phase = "after"
    time.sleep(SAMPLE)
    pr.stop = True
    pr.join(60)

    # The same on a Unix socket: clients are uids by SO_PEERCRED.
    upath = os.path.join(d.dir, "web.sock")
    uweb = UnixWeb(d, upath)
    os.chmod(upath, 0o666)
    upr = Prober(uweb, unix=upath)
    upr.start()
    time.sleep(SAMPLE)
    rep = run_phase(upr, "unix slowloris", lambda: Attacker("slowloris", "unix:" + upath, n, secs))
    upr.stop = True
    upr.join(60)
    k408, s408 = replies(rep, "HTTP/1.1 408")
    check(k408 <= 64 and k408 > 0 and rep["closed"] == n, "unix: a uid holds at most its share (64) until the "
          "deadline (%d reach it, of %d)" % (k408, n))

    # traind-web's bounds: a thread per connection and per one being closed
    # (at most twice --max-connections in all); two descriptors each (the
    # socket and the gate's duplicate), up to 128 refused ones lingering,
    # one varlink socket per request being handled. Unbounded, the issue's
    # attack took a thread and a descriptor per connection.
    thr_limit, fd_limit = 2 * 128 + 16, 4 * 128 + 128 + 64
    # The bound holds on a quiet machine; on a loaded one the same run's
    # unattacked phases ("start", "after") say what its noise is, and an
    # attacked phase may be up to LOAD_FACTOR times as slow as they are
    # before it counts as starved (starvation is seconds: the issue's
    # request waited 70 s).
    quiet = pr.lat.get("start", []) + pr.lat.get("after", []) + upr.lat.get("start", [])
    bound = max(LATENCY_P99, LOAD_FACTOR * pct(quiet, 0.99))
    print("    unattacked p99 %.1f ms: the bound is %.0f ms" % (pct(quiet, 0.99) * 1e3, bound * 1e3))
    for p in (pr, upr):
        for name, xs in p.lat.items():
            thr, fds, r = p.peak.get(name, [0, 0, 0])
            print("    %-15s prober %4d requests, p50 %6.2f ms, p99 %6.2f ms, max %7.1f ms; traind-web peak "
                  "%d threads, %d descriptors, VmRSS +%.0f MiB" % (name, len(xs), pct(xs, 0.5) * 1e3,
                                                                 pct(xs, 0.99) * 1e3, max(xs) * 1e3, thr, fds,
                                                                 (r - base_rss) / MIB if r else 0))
            check(SANITIZER or name in ("start", "after") or pct(xs, 0.99) < bound,
                  "%s: the prober's GET /api/jobs p99 %.1f ms, under %.0f ms" % (name, pct(xs, 0.99) * 1e3,
                                                                            bound * 1e3))
            check(thr < thr_limit and fds < fd_limit, "%s: traind-web's threads (%d, under %d) and descriptors "
                  "(%d, under %d) stay bounded" % (name, thr, thr_limit, fds, fd_limit))
            check(SANITIZER or p is upr or r - base_rss < 64 * MIB,
                  "%s: traind-web's VmRSS grows by under 64 MiB (+%.0f)" % (name, (r - base_rss) / MIB))
    # the same client's own burst: a 503 naming the per-client cap is its
    # own misbehaviour's cost (shown, not hidden)
    # Run as nobody, the attackers leave the prober's uid its own client's
    # cap. From the prober's uid (slowloris-same, or every attack when they
    # cannot run as nobody), the attack's connections, still arriving from
    # the kernel's queue after connect() returned, share it.
    own = [e for e in pr.errors + upr.errors
           if (e.startswith("slowloris-same (connecting): 503") or (not root and ": 503" in e))
           and "TooManyConnections" in e]
    if own:
        print("    %d of the prober's requests got 503 while its own uid attacked (the "
              "client's cap): %s" % (len(own), own[0][:160]))
    errs = [e for e in pr.errors + upr.errors if e not in own]
    check(not errs, "every request of the well-behaved client was answered 200 (%d not: %s)" % (len(errs), errs[:3]))
    if harness.failures:
        print("---- traind-web's log ----\n" + web.read_log()[-4000:])
    check(web.alive() and uweb.alive(), "traind-web is up at the end")
    check(web.stop() == 0 and uweb.stop() == 0, "traind-web exits 0 on SIGTERM")
    reports = harness.sanitizer_reports(web.read_log() + uweb.read_log())
    check(not reports, "traind-web's logs have no sanitizer report: %s" % reports[:3])
    d.ctl("kill", job)


class UnixWeb(Web):
    """traind-web on a Unix socket (no URL with a port to read: the token from its file)."""

    def __init__(self, d, path):
        import tempfile
        import test_web
        test_web.WEBS.append(self)
        self.dir = tempfile.mkdtemp(prefix="traind-web-test-")
        self.token_file = os.path.join(self.dir, "token")
        self.log = open(os.path.join(self.dir, "web.log"), "wb")
        self.proc = subprocess.Popen([test_web.WEB, "--socket", d.socket, "--listen", "unix:" + path,
                                      "--token-file", self.token_file, "--static-dir", test_web.STATIC,
                                      "--timeout", "3", "--request-timeout", str(REQUEST_TIMEOUT)],
                                     stdout=subprocess.PIPE, stderr=self.log)
        self.proc.stdout.readline()
        self.token = open(self.token_file).read().strip()
        self.port = None


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--attack":
        attacker(sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]), sys.argv[6])
        sys.exit(0)
    try:
        harness.run(main)
    finally:
        _stop_webs()
