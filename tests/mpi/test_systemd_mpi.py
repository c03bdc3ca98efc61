#!/usr/bin/env python3
"""The drop-ins for jobs with ranks (systemd/traind-mpi-local.conf: ranks on
this machine; systemd/traind-mpi.conf: ranks on others) against the unit
they change and against what mpirun really does.

  units    the built traind.service with each drop-in in traind.service.d/:
           `systemd-analyze verify` passes without a word about the drop-in;
           `systemd-analyze security --offline` finds the unit alone as
           exposed as before, and each drop-in opens only network items;
           meson installs the drop-ins as examples (share/doc), never in a
           traind.service.d/ where they would apply.
  default  under the unit's own network settings (a private network with
           loopback, socket() limited to AF_UNIX as RestrictAddressFamilies=
           does it): a 2-rank mpirun on this machine fails (why the local
           drop-in exists).
  local    under traind-mpi-local.conf's (the same private network, its
           families), with MemoryDenyWriteExecute (prctl PR_SET_MDWE),
           no_new_privs and ProcSubset=pid emulated: 2 ranks of
           tests/mpi/mpi-probe on this machine succeed, and strace finds
           mpirun's, orted's and the ranks' system calls inside the unit's
           SystemCallFilter= and their socket families inside the drop-in's.
  traind   (when traind has the MPI runner) traind itself in a private
           network with socket() limited as the unit does: a --ranks 2 job
           fails, with mpirun's reason; limited as the local drop-in does:
           it finishes.
  network  under traind-mpi.conf's: 2 ranks across two network namespaces
           (tests/lib/netns.py, TCP over a veth) succeed, with the same
           strace checks, the remote orted included. What this drop-in
           adds over the local one, PrivateNetwork=no and no IP filter, no
           tool here emulates for a process tree: checked in the unit files
           (units, above).

Needs root (unshare, ip netns), strace, systemd-analyze; skips (77) without.
"""
import ctypes
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import defaultdict

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import netns  # noqa: E402
from netns import NetnsHosts  # noqa: E402
import harness  # noqa: E402
from harness import TRAIND, Daemon, check, finish  # noqa: E402
from syscalls import expand, syscall_groups  # noqa: E402

SRC = os.path.normpath(os.path.join(HERE, "..", ".."))
BUILD = os.path.abspath(os.environ.get("TRAIND_BUILD_DIR", os.path.join(SRC, "build")))
PROBE = os.path.join(BUILD, "tests", "mpi", "mpi-probe")
RESTRICT = os.path.join(BUILD, "tests", "mpi", "restrict-families")
UNIT = os.path.join(BUILD, "systemd", "traind.service")
DROPINS = {"local": os.path.join(SRC, "systemd", "traind-mpi-local.conf"),
           "network": os.path.join(SRC, "systemd", "traind-mpi.conf")}
# the processes whose behaviour the drop-ins must cover (not the launch
# agent's `ip netns exec`, which only the test's fake hosts need)
MPI_PROGRAMS = {"mpirun", "orterun", "orted", "mpi-probe"}
# what a drop-in may open in `systemd-analyze security`
NETWORK_ITEMS = re.compile(r"^(RestrictAddressFamilies=|PrivateNetwork=|IPAddressDeny=|IPAddressAllow=)")
_tmp = []


def skip(why):
    print("SKIP:", why, flush=True)
    sys.exit(netns.SKIP)


LIST_KEYS = {"RestrictAddressFamilies", "SystemCallFilter", "IPAddressDeny", "IPAddressAllow", "Environment"}


def assignments(text):
    """The [Service] section's (key, value) pairs in order."""
    out, section = [], None
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line:
            k, _, v = line.partition("=")
            out.append((k, v))
    return out


def apply(unit, pairs):
    """Assignments onto {key: [values]} as systemd reads them: a list
    setting grows, an empty assignment resets it, others are replaced."""
    for k, v in pairs:
        if v == "":
            unit[k] = []
        elif k in LIST_KEYS:
            unit.setdefault(k, []).append(v)
        else:
            unit[k] = [v]
    return unit


def parse_unit(text):
    return apply({}, assignments(text))


def effective(dropin):
    """The unit's settings with the drop-in applied."""
    return apply(parse_unit(open(UNIT).read()), assignments(open(dropin).read()))


def families_of(unit):
    return set(" ".join(unit.get("RestrictAddressFamilies", [])).split())



def allowed_syscalls(unit):
    """The set SystemCallFilter= allows: allow lists united, then ~deny lists removed."""
    groups = syscall_groups()
    allow, deny = set(), set()
    for v in unit.get("SystemCallFilter", []):
        neg = v.startswith("~")
        names = set()
        for n in v.lstrip("~").split():
            names |= expand(groups, n) if n.startswith("@") else {n}
        (deny if neg else allow).update(names)
    return allow - deny


def unit_dir(dropin=None):
    """A unit directory with the built traind.service (ExecStart= the build's
    traind) and traind.socket, and the drop-in as traind.service.d/mpi.conf."""
    d = tempfile.mkdtemp(prefix="traind-units-")
    _tmp.append(d)
    text = open(UNIT).read()
    text = re.sub(r"(?m)^ExecStart=.*$", "ExecStart=" + os.path.join(BUILD, "daemon", "traind"), text)
    open(os.path.join(d, "traind.service"), "w").write(text)
    shutil.copy(os.path.join(BUILD, "systemd", "traind.socket"), d)
    if dropin:
        os.mkdir(os.path.join(d, "traind.service.d"))
        shutil.copy(dropin, os.path.join(d, "traind.service.d", "mpi.conf"))
    return d


def analyze(d, *args):
    env = dict(os.environ, SYSTEMD_UNIT_PATH=d + ":")
    return subprocess.run(["systemd-analyze"] + list(args) + [os.path.join(d, "traind.service")],
                          capture_output=True, text=True, env=env)


def security(d):
    """(exposure, {failed item names})"""
    p = analyze(d, "security", "--offline=true", "--no-pager")
    level = re.search(r"Overall exposure level for traind.service: ([0-9.]+)", p.stdout)
    items = {line.split()[1] for line in p.stdout.splitlines() if line.startswith("✗")}
    return (float(level.group(1)) if level else None), items


def test_units():
    print("== units", flush=True)
    base = parse_unit(open(UNIT).read())
    check(base.get("PrivateNetwork") == ["yes"] and families_of(base) == {"AF_UNIX"}
          and base.get("IPAddressDeny") == ["any"],
          "the unit itself keeps PrivateNetwork=yes, RestrictAddressFamilies=AF_UNIX, IPAddressDeny=any")
    p = analyze(unit_dir(), "verify", "--man=no")
    check(p.returncode == 0, "systemd-analyze verify: the unit alone (rc %d) %s" % (p.returncode, p.stderr.strip()))
    level0, items0 = security(unit_dir())
    print("    exposure of the unit alone: %s" % level0)
    for name, path in DROPINS.items():
        d = unit_dir(path)
        p = analyze(d, "verify", "--man=no")
        check(p.returncode == 0 and "mpi.conf" not in p.stderr,
              "systemd-analyze verify: the unit with %s (rc %d) %s" % (os.path.basename(path), p.returncode,
                                                                       p.stderr.strip()))
        level, items = security(d)
        opened = items - items0
        print("    exposure with %s: %s, opens %s" % (os.path.basename(path), level, sorted(opened)))
        check(level is not None and level0 is not None and level >= level0,
              "%s: exposure %s >= the unit's %s" % (os.path.basename(path), level, level0))
        check(opened and all(NETWORK_ITEMS.match(i) for i in opened) and not (items0 - items),
              "%s opens only network items (%s)" % (os.path.basename(path), sorted(opened)))
        keys = {k for k, _ in assignments(open(path).read())}
        check(keys <= {"RestrictAddressFamilies", "PrivateNetwork", "IPAddressDeny", "IPAddressAllow", "KillMode"},
              "%s sets only the network's keys and KillMode (%s)" % (os.path.basename(path), sorted(keys)))
        check(("KillMode", "mixed") in assignments(open(path).read()),
              "%s has SIGTERM go to traind alone (KillMode=mixed), so rank 0 saves the exact position"
              % os.path.basename(path))
    local, net = effective(DROPINS["local"]), effective(DROPINS["network"])
    check(local.get("PrivateNetwork") == ["yes"] and local.get("IPAddressDeny") == ["any"]
          and local.get("IPAddressAllow") == ["localhost"],
          "traind-mpi-local.conf keeps the private network and allows loopback only")
    check(net.get("PrivateNetwork") == ["no"] and net.get("IPAddressDeny") == [],
          "traind-mpi.conf turns the private network off and lifts the IP filter")

    p = subprocess.run(["meson", "introspect", "--installed", BUILD], capture_output=True, text=True)
    if p.returncode == 0:
        import json
        dest = [v for k, v in json.loads(p.stdout).items() if os.path.basename(k).startswith("traind-mpi")]
        check(len(dest) == 2 and all("/share/doc/" in v and "/examples/" in v for v in dest),
              "meson installs the drop-ins as examples under share/doc (%s)" % dest)
        check(not any(".service.d" in v for v in dest), "... and not in a traind.service.d/")


def mdwe_nnp():
    """In the child before exec: MemoryDenyWriteExecute (PR_SET_MDWE) and
    NoNewPrivileges (PR_SET_NO_NEW_PRIVS), both inherited by every process."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(38, 1, 0, 0, 0)            # PR_SET_NO_NEW_PRIVS
    if libc.prctl(65, 1, 0, 0, 0) != 0:   # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
        os.write(2, b"PR_SET_MDWE failed\n")


def traced(cmd, families, private_net, procsubset=True):
    """Run cmd (a list) under strace -f with socket() limited to families;
    in a private network with loopback up when private_net; with /proc
    mounted subset=pid. Returns (returncode, output, {program: syscalls},
    {program: families})."""
    trace = tempfile.mktemp(prefix="mpi-strace-", dir="/tmp")
    inner = ["strace", "-f", "-qq", "-o", trace, "--", RESTRICT, ",".join(sorted(families))] + cmd
    script = []
    if private_net:
        script.append("ip link set lo up")
    if procsubset:
        script.append("mount -t proc -o subset=pid,hidepid=invisible proc /proc")
    script.append('exec "$@"')
    flags = ["--mount", "--pid", "--fork", "--propagation", "private"] + (["--net"] if private_net else [])
    argv = ["unshare"] + flags + ["sh", "-c", "; ".join(script), "sh"] + inner
    p = subprocess.run(argv, capture_output=True, text=True, timeout=180, preexec_fn=mdwe_nnp,
                       env=netns.mpi_env())
    calls, fams = defaultdict(set), defaultdict(set)
    prog, pending = {}, {}
    try:
        lines = open(trace).read().splitlines()
    finally:
        if os.path.exists(trace):
            os.unlink(trace)
    for line in lines:
        m = re.match(r"(\d+)\s+(?:<\.\.\. (\w+) resumed>|(\w+)\()(.*)", line)
        if not m:
            continue
        pid, resumed, name, rest = m.groups()
        name = name or resumed
        ret = re.search(r"\)\s+=\s+(-?\d+)", line)
        if name == "execve":
            if not resumed and '"' in rest:
                pending[pid] = rest.split('"')[1].rsplit("/", 1)[-1]
            if ret and ret.group(1) == "0":
                prog[pid] = pending.get(pid, "?")
            continue
        if name in ("clone", "clone3", "vfork", "fork") and ret and int(ret.group(1)) > 0:
            prog.setdefault(ret.group(1), prog.get(pid, "?"))
        who = prog.get(pid, "?")
        calls[who].add(name)
        if name == "socket" and not resumed:
            fams[who].add(rest.split(",")[0])
    return p.returncode, p.stdout + p.stderr, calls, fams


def check_trace(label, calls, fams, allowed, families):
    progs = sorted(set(calls) & MPI_PROGRAMS)
    check({"mpirun", "mpi-probe"} <= set(progs), "%s: strace saw mpirun and the ranks (%s)" % (label, progs))
    outside = {p: sorted(calls[p] - allowed) for p in progs if calls[p] - allowed}
    check(not outside, "%s: every system call of %s is in the unit's SystemCallFilter= (outside: %s)"
          % (label, progs, outside))
    used = set().union(*(fams[p] for p in progs)) if progs else set()
    check(used <= families, "%s: socket families %s are within the drop-in's %s" % (label, sorted(used),
                                                                                  sorted(families)))
    return used


def test_runtime():
    base = parse_unit(open(UNIT).read())
    allowed = allowed_syscalls(base)
    local_fams = families_of(effective(DROPINS["local"]))
    net_fams = families_of(effective(DROPINS["network"]))
    local_run = ["mpirun", "--allow-run-as-root", "-n", "2", PROBE, "100000"]

    print("== default: the unit's own network settings", flush=True)
    rc, out, calls, fams = traced(local_run, families_of(base), private_net=True)
    check(rc != 0, "a 2-rank mpirun on this machine fails under RestrictAddressFamilies=AF_UNIX (rc %d)" % rc)
    why = [ln.strip() for ln in out.splitlines() if "PMIx server" in ln or "socket() failed" in ln]
    check(bool(why), "... at mpirun's interface lookup and PMIx server (%s)" % "; ".join(why[:3]))

    print("== local: traind-mpi-local.conf", flush=True)
    rc, out, calls, fams = traced(local_run, local_fams, private_net=True)
    check(rc == 0 and "ok=1" in out, "2 ranks on this machine in a private network with the local drop-in's "
          "families, MDWE, no_new_privs, ProcSubset=pid: the all-reduce is right (rc %d)%s"
          % (rc, "" if rc == 0 else ": " + out[-600:]))
    used = check_trace("local", calls, fams, allowed, local_fams)
    check("AF_INET" in used, "local: mpirun did use AF_INET (so the unit's AF_UNIX-only list cannot do)")

    print("== network: traind-mpi.conf, two hosts", flush=True)
    with NetnsHosts() as hosts:
        cmd = hosts.wrap(0, ["mpirun", "--allow-run-as-root", "-n", "2", "--host", hosts.hosts_value()]
                         + hosts.mpi_args() + [PROBE, "100000"])
        rc, out, calls, fams = traced(cmd, net_fams, private_net=False)
        check(rc == 0 and "ok=1" in out, "2 ranks across two network namespaces with the drop-in's families, "
              "MDWE, no_new_privs, ProcSubset=pid: the all-reduce is right (rc %d)%s"
              % (rc, "" if rc == 0 else ": " + out[-600:]))
        ranks = re.findall(r"addrs=(\S+)", out)
        check(ranks == hosts.addrs, "one rank on each host (%s)" % ranks)
        check_trace("network", calls, fams, allowed, net_fams)
        check("orted" in calls, "network: strace followed the remote orted too")


class RestrictedDaemon(Daemon):
    """traind in a private network (loopback up) with socket() limited to
    `families`, as the unit's PrivateNetwork= and RestrictAddressFamilies=."""

    def __init__(self, families, **kw):
        self.families = families
        super().__init__(extra_args=["--mpi-arg=--oversubscribe"], extra_env=netns.mpi_env(), **kw)

    def command(self):
        return (["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", RESTRICT,
                 ",".join(sorted(self.families))] + super().command())


def test_traind():
    p = subprocess.run([TRAIND, "--mpi-launcher", "mpirun", "--help"], capture_output=True, text=True)
    if p.returncode != 0:
        print("== traind: skipped, this traind has no MPI runner", flush=True)
        return
    job_args = ["--train-size", "2000", "--val-size", "500", "--epochs", "1", "--ranks", "2", "--shards", "2"]
    for label, families, want in (("the unit's AF_UNIX", {"AF_UNIX"}, "failed"),
                                  ("traind-mpi-local.conf's", families_of(effective(DROPINS["local"])), "done")):
        print("== traind: a 2-rank job under %s families" % label, flush=True)
        d = RestrictedDaemon(families, max_running=1)
        try:
            d.start()
            job = d.start_job(*job_args)
            d.wait(job, "--state", "done,failed,killed", "--timeout", "300")
            st = d.status(job)
            print("    %s %s" % (st["state"], st.get("error") or ""), flush=True)
            check(st["state"] == want, "a 2-rank job under %s families is %s (%s %s)"
                  % (label, want, st["state"], st.get("error") or ""))
        finally:
            d.stop()
            log = d.read_log()
            d.cleanup()
        reports = harness.sanitizer_reports(log)
        check(not reports, "traind wrote no sanitizer report %s" % reports[:3])


def main():
    if os.geteuid() != 0:
        skip("needs root (unshare, ip netns)")
    for tool in ("systemd-analyze", "strace", "unshare", "mpirun"):
        if not shutil.which(tool):
            skip("no %s" % tool)
    if not os.path.exists(UNIT):
        skip("%s not built (-Dsystemd=disabled or no libsystemd)" % UNIT)
    for exe in (PROBE, RESTRICT):
        if not os.access(exe, os.X_OK):
            skip("%s not built" % exe)
    why = NetnsHosts.check()
    if why:
        skip(why)
    try:
        test_units()
        test_runtime()
        test_traind()
    finally:
        for d in _tmp:
            shutil.rmtree(d, ignore_errors=True)
    finish()


if __name__ == "__main__":
    main()
