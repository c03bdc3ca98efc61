"""netns.py - two "hosts" on one machine for MPI tests: two network
namespaces joined by a veth pair, each with its own address.

    with NetnsHosts() as hosts:               # skips the test (exit 77) if it cannot
        cmd = hosts.wrap(0, [TRAIND, ...])    # traind on host 0: rank 0 is local to it
        args = hosts.traind_mpi_args()        # --mpi-arg ... for traind
        value = hosts.hosts_value()           # "10.213.0.1:1,10.213.0.2:1" for --hosts

mpirun, started in host 0's namespace, treats host 0's address as local and
starts the orted of the other host through tests/mpi/netns-agent, its launch
agent in place of ssh (OpenMPI's plm_rsh_agent), which runs it with
`ip netns exec`. mpi_args() makes the ranks and the daemons talk TCP on the
veth's subnet only (btl tcp,self; btl_tcp_if_include and oob_tcp_if_include
with the subnet), so no rank reaches another through shared memory or
loopback, and binds no rank to a core (the "hosts" share this machine's
cores). counters() reads the veth's byte counters, to show that the bytes
crossed.

The namespaces are named after this process (tn<pid>x<n>a / ...b, unique
per run) and removed by destroy(): on leaving the `with`, at exit, and
after SIGTERM when the caller unwinds (harness.run does). Namespaces left
by a run that was SIGKILLed are removed by the next run (stale(): the pid
in their name is gone). The unix sockets traind listens on are files, so
trainctl and the test reach traind from outside the namespaces.

Needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN) and iproute2; NetnsHosts.check()
says why not, and __enter__ exits 77 (meson's skip) with that reason.
"""
import atexit
import itertools
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

AGENT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "mpi", "netns-agent"))
PREFIX = "tn"                      # namespace and interface names: tn<pid>x<n>a
SKIP = 77                          # meson: the test was skipped
_serial = itertools.count()


def mpi_env(base=None):
    """The environment for mpirun and MPI programs of the tests: as given,
    but with LeakSanitizer off (ASAN_OPTIONS detect_leaks=0) for a sanitizer
    build's MPI programs. OpenMPI 4.1, PMIx and hwloc keep memory at
    MPI_Finalize in plugins they have dlclose()d by the time LeakSanitizer
    runs, so it cannot even name them: no suppression list can. The other
    checks (ASan's overflows, UBSan) stay on."""
    env = dict(os.environ if base is None else base)
    opts = env.get("ASAN_OPTIONS", "")
    env["ASAN_OPTIONS"] = (opts + ":" if opts else "") + "detect_leaks=0"
    return env


def _ip(*args, check=True, ns=None):
    cmd = ["ip"] + (["-n", ns] if ns else []) + [str(a) for a in args]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise RuntimeError("%s -> %d: %s" % (" ".join(cmd), p.returncode, p.stderr.strip()))
    return p


def _list_namespaces():
    p = _ip("netns", "list", check=False)
    return [line.split()[0] for line in p.stdout.splitlines() if line.strip()]


def stale():
    """Namespaces of ours whose creating process is gone (a SIGKILLed run)."""
    out = []
    for ns in _list_namespaces():
        m = re.fullmatch(PREFIX + r"(\d+)x\d+[ab]", ns)
        if m and not os.path.exists("/proc/%s" % m.group(1)):
            out.append(ns)
    return out


def _kill_pids_in(ns):
    """SIGKILL the processes left in namespace ns (only ours can be: the
    name is this run's) and wait until they are gone."""
    p = _ip("netns", "pids", ns, check=False)
    pids = [int(x) for x in p.stdout.split() if x.isdigit()]
    for pid in pids:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
    for pid in pids:
        for _ in range(500):
            if not os.path.exists("/proc/%d" % pid):
                break
            try:
                os.waitpid(pid, os.WNOHANG)    # our own child: reap it
            except ChildProcessError:
                pass
            time.sleep(0.01)


def _remove_namespace(ns):
    _kill_pids_in(ns)
    _ip("netns", "del", ns, check=False)


def _terminated(signum, frame):
    raise SystemExit(128 + signum)


class NetnsHosts:
    """Two namespaces, A (host 0) and B (host 1), a veth pair between them,
    addresses SUBNET.1 and SUBNET.2 (/24), lo up in both."""

    def __init__(self, subnet="10.213.0", mtu=None):
        n = next(_serial)
        base = "%s%dx%d" % (PREFIX, os.getpid(), n)
        if len(base) + 1 > 15:            # interface names: IFNAMSIZ-1 bytes
            base = "%s%dx%d" % (PREFIX, os.getpid() % 10 ** 8, n)
        self.names = [base + "a", base + "b"]      # namespace == its veth end's name
        self.subnet = subnet
        self.addrs = ["%s.1" % subnet, "%s.2" % subnet]
        self.cidr = "%s.0/24" % subnet
        self.mtu = mtu                    # the veth's MTU (None: the kernel's 1500, as Ethernet)
        self.created = []
        self._agent_dir = None
        self.agent = AGENT

    # ---- availability ----
    @staticmethod
    def check():
        """None if namespaces can be made here, else why not (a sentence)."""
        if os.geteuid() != 0:
            return "not root: network namespaces and veth pairs need CAP_SYS_ADMIN and CAP_NET_ADMIN"
        if not shutil.which("ip"):
            return "no `ip` (iproute2) on PATH"
        if not os.path.exists(AGENT):
            return "the launch agent %s is missing" % AGENT
        return None

    # ---- life cycle ----
    def create(self):
        # SIGTERM (meson's timeout) unwinds, so that destroy() runs, unless
        # the caller handles it already (harness.run does).
        if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _terminated)
        for ns in stale():
            _remove_namespace(ns)
        atexit.register(self.destroy)
        a, b = self.names
        try:
            for ns in self.names:
                _ip("netns", "add", ns)
                self.created.append(ns)
            _ip("link", "add", a, "type", "veth", "peer", "name", b)
            for ns, addr in zip(self.names, self.addrs):
                _ip("link", "set", ns, "netns", ns)
                _ip("addr", "add", addr + "/24", "dev", ns, ns=ns)
                _ip("link", "set", "lo", "up", ns=ns)
                if self.mtu:
                    _ip("link", "set", ns, "mtu", self.mtu, ns=ns)
                _ip("link", "set", ns, "up", ns=ns)
        except Exception:
            self.destroy()
            _ip("link", "del", a, check=False)     # if it never moved
            raise
        # mpirun splits plm_rsh_agent's value at spaces: an agent path with
        # one (a build in a deep directory) goes through a copy in /tmp.
        if any(c.isspace() for c in self.agent):
            self._agent_dir = tempfile.mkdtemp(prefix="netns-agent-", dir="/tmp")
            self.agent = os.path.join(self._agent_dir, "netns-agent")
            shutil.copy2(AGENT, self.agent)
        return self

    def destroy(self):
        """Kill what still runs in the namespaces, remove them (the veth
        pair goes with them). Safe to call more than once."""
        for ns in reversed(self.created):
            _ip("link", "del", ns, ns=ns, check=False)
            _remove_namespace(ns)
        self.created = []
        if self._agent_dir:
            shutil.rmtree(self._agent_dir, ignore_errors=True)
            self._agent_dir = None
            self.agent = AGENT

    def __enter__(self):
        why = self.check()
        if why:
            print("SKIP: %s" % why, flush=True)
            sys.exit(SKIP)
        try:
            return self.create()
        except RuntimeError as e:
            # e.g. a container without the capabilities, or no veth module
            print("SKIP: cannot make network namespaces here: %s" % e, flush=True)
            sys.exit(SKIP)

    def __exit__(self, *exc):
        self.destroy()
        return False

    # ---- what a test passes on ----
    def wrap(self, host, cmd):
        """cmd run inside host's namespace (host 0 or 1)."""
        return ["ip", "netns", "exec", self.names[host]] + [str(c) for c in cmd]

    def agent_map(self):
        return ",".join("%s=%s" % (addr, ns) for addr, ns in zip(self.addrs, self.names))

    def mpi_args(self):
        """mpirun's arguments for these hosts: the launch agent, TCP on the
        veth's subnet only, and no binding: each host's orted believes it
        has the machine to itself and would bind its rank to core 0, so the
        two ranks would share one core (measured: an 0.8 MB all-gather took
        16 ms instead of 1)."""
        return ["--bind-to", "none",
                "--mca", "plm_rsh_agent", "%s %s" % (self.agent, self.agent_map()),
                "--mca", "btl", "tcp,self",
                "--mca", "btl_tcp_if_include", self.cidr,
                "--mca", "oob_tcp_if_include", self.cidr]

    def traind_mpi_args(self):
        """The same as traind's flags: --mpi-arg ARG for each."""
        out = []
        for a in self.mpi_args():
            out += ["--mpi-arg", a]
        return out

    def hosts_value(self, slots=1):
        """--hosts for trainctl (and --host for mpirun): HOST:SLOTS,..."""
        return ",".join("%s:%d" % (addr, slots) for addr in self.addrs)

    def counters(self, host=0):
        """(rx_bytes, tx_bytes) of host's veth end."""
        ns = self.names[host]
        out = []
        for what in ("rx_bytes", "tx_bytes"):
            p = subprocess.run(["ip", "netns", "exec", ns, "cat", "/sys/class/net/%s/statistics/%s" % (ns, what)],
                               capture_output=True, text=True, check=True)
            out.append(int(p.stdout.strip()))
        return tuple(out)

    def describe(self):
        return "%s (%s) <-veth%s-> %s (%s)" % (self.names[0], self.addrs[0], ", mtu %d" % self.mtu if self.mtu else "",
                                              self.names[1], self.addrs[1])

    def shell(self, host=0):
        """A shell line to reproduce by hand what a test runs in host's namespace."""
        return " ".join(shlex.quote(c) for c in self.wrap(host, ["sh"]))
