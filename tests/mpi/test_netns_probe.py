#!/usr/bin/env python3
"""Two "hosts" on one machine (tests/lib/netns.py): mpirun in the first
namespace starts one rank of tests/mpi/mpi-probe there and one in the
second through the launch agent tests/mpi/netns-agent; the ranks report
where they run and do an 8 MiB all-reduce over TCP on the veth.

Checks: each rank in its own namespace with that namespace's address, the
sums right, the all-reduce's bytes on the veth's counters in both
directions (so not through shared memory or loopback); a host missing from
the agent's map fails with the agent's message; the namespaces are gone
afterwards. Skips (77) when not root, without `ip` or mpirun, or when the
namespaces cannot be made here."""
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import netns  # noqa: E402
from netns import NetnsHosts  # noqa: E402
from harness import check, finish  # noqa: E402

BUILD = os.environ.get("TRAIND_BUILD_DIR", os.path.join(os.path.dirname(__file__), "../../build"))
PROBE = os.path.join(BUILD, "tests", "mpi", "mpi-probe")
COUNT = 1 << 20                       # doubles: 8 MiB each way


def mpirun(hosts, extra=(), count=COUNT, timeout=120):
    cmd = hosts.wrap(0, ["mpirun", "--allow-run-as-root", "-n", "2", "--host", hosts.hosts_value()]
                     + hosts.mpi_args() + list(extra) + [PROBE, str(count)])
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=netns.mpi_env())
    return p


def parse(out):
    ranks = {}
    reduce_ = None
    for line in out.splitlines():
        kv = dict(re.findall(r"(\w+)=(\S+)", line))
        if line.startswith("rank="):
            ranks[int(kv["rank"])] = kv
        elif line.startswith("allreduce "):
            reduce_ = kv
    return ranks, reduce_


def main():
    if not shutil.which("mpirun"):
        print("SKIP: no mpirun (openmpi-bin)")
        sys.exit(netns.SKIP)
    if not os.access(PROBE, os.X_OK):
        print("SKIP: %s not built (OpenMPI's ompi-c not found by meson)" % PROBE)
        sys.exit(netns.SKIP)
    with NetnsHosts() as hosts:
        print("hosts:", hosts.describe(), flush=True)
        before = [hosts.counters(0), hosts.counters(1)]
        p = mpirun(hosts)
        after = [hosts.counters(0), hosts.counters(1)]
        print(p.stdout, p.stderr, sep="", flush=True)
        check(p.returncode == 0, "mpirun with 2 ranks across the namespaces exits 0 (got %d)" % p.returncode)
        ranks, red = parse(p.stdout)
        check(sorted(ranks) == [0, 1], "both ranks reported (%s)" % sorted(ranks))
        if sorted(ranks) == [0, 1]:
            for r in (0, 1):
                check(ranks[r]["addrs"] == hosts.addrs[r], "rank %d runs on host %d, address %s (reports %s)"
                      % (r, r, hosts.addrs[r], ranks[r]["addrs"]))
            check(ranks[0]["netns"] != ranks[1]["netns"], "the ranks are in different network namespaces (%s, %s)"
                  % (ranks[0]["netns"], ranks[1]["netns"]))
            own = os.readlink("/proc/self/ns/net")
            check(own not in (ranks[0]["netns"], ranks[1]["netns"]),
                  "neither rank is in the test's own namespace %s" % own)
        check(red is not None and red.get("ok") == "1", "the all-reduce's sums are right on every rank (%s)" % red)
        nbytes = COUNT * 8
        for h in (0, 1):
            rx = after[h][0] - before[h][0]
            tx = after[h][1] - before[h][1]
            check(rx >= nbytes and tx >= nbytes, "host %d's veth carried the all-reduce both ways: "
                  "rx %d, tx %d bytes >= %d" % (h, rx, tx, nbytes))
        if red:
            secs = float(red["seconds"])
            print("    all-reduce of %d bytes in %.4f s: %.0f MB/s each way over the veth"
                  % (nbytes, secs, nbytes / secs / 1e6 if secs > 0 else 0))

        # A host the agent does not know: mpirun fails, with the agent's reason.
        bad = list(hosts.mpi_args())
        bad[bad.index("plm_rsh_agent") + 1] = "%s %s=%s" % (hosts.agent, hosts.addrs[0], hosts.names[0])
        cmd = hosts.wrap(0, ["mpirun", "--allow-run-as-root", "-n", "2", "--host", hosts.hosts_value()]
                         + bad + [PROBE, "16"])
        q = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=netns.mpi_env())
        check(q.returncode != 0, "a host missing from the agent's map: mpirun fails (rc %d)" % q.returncode)
        check("is not in the map" in q.stdout + q.stderr,
              "... and says the host is not in the agent's map (%s)" % (q.stderr.strip().splitlines() or [""])[0])
        names = list(hosts.names)
    left = [ns for ns in netns._list_namespaces() if ns in names]
    check(not left, "the namespaces are removed afterwards (left: %s)" % left)
    left_links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    check(not any(n + "@" in left_links or (n + ":") in left_links for n in names),
          "no veth end is left in the test's namespace")
    finish()


if __name__ == "__main__":
    main()
