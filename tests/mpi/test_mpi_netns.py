#!/usr/bin/env python3
"""A data-parallel job across two "hosts" (tests/lib/netns.py: two
network namespaces joined by a veth pair): traind runs in the first, so rank
0 is on its machine; mpirun starts rank 1 in the second through the launch
agent tests/mpi/netns-agent, and the ranks talk TCP over the veth only.

The lesson's model on a lesson-sized subset with --ranks 2 --shards 2
--hosts A:1,B:1 ends bit-identical to --ranks 1 --shards 2 (the exported
model's sha256), with the same history row by row; a rank really ran in the
second namespace while the job trained, the reduction's bytes crossed the
veth, and nothing of the job is left running in either namespace after it.

Then the second host goes away in the middle of epoch 2 of a 2-rank job
with --max-restarts 0 (every process in its namespace SIGKILLed): the job
is failed with a reason naming the rank or host, nothing of it is left running on
either host, and `resume --ranks 1` continues it on the first host alone
(elastic) to the same bits and history as a 1-rank job that never failed.

trainctl and the test reach traind from outside the namespaces: its unix
socket is a file. Skips (77) when not root, without `ip` or mpirun, or when
traind has no MPI runner (--mpi-launcher)."""
import os
import re
import shutil
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import netns  # noqa: E402
from harness import TRAIND, Daemon, check, run, sha256_file  # noqa: E402
from netns import NetnsHosts  # noqa: E402

TRAIN, BATCH, EPOCHS = 4000, 64, 2
# long enough to lose a host in the middle of an epoch (1000 steps each)
LONG = ["--train-size", "4000", "--val-size", "1000", "--batch-size", "4", "--epochs", "3"]
CONFIG = ["--train-size", str(TRAIN), "--val-size", "1000", "--batch-size", str(BATCH), "--epochs", str(EPOCHS)]
PARAMS = 784 * 256 + 256 + 256 * 10 + 10       # the lesson's 784-256-10 MLP: 203,530
METRICS = ["train_loss", "train_acc", "train_macro_acc", "val_loss", "val_acc", "val_macro_acc"]


class NetnsDaemon(Daemon):
    """traind inside host 0's namespace, told how to reach the other host."""

    def __init__(self, hosts, **kw):
        self.hosts = hosts
        super().__init__(extra_args=hosts.traind_mpi_args(), **kw)

    def command(self):
        return self.hosts.wrap(0, super().command())


def skip(why):
    print("SKIP:", why, flush=True)
    sys.exit(netns.SKIP)


def pids_in(ns):
    p = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
    return [int(x) for x in p.stdout.split() if x.isdigit()]


def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


class Watcher(threading.Thread):
    """Notes every process seen in a namespace until stopped."""

    def __init__(self, ns):
        super().__init__(daemon=True)
        self.ns, self.seen, self.stop = ns, {}, False

    def run(self):
        while not self.stop:
            for pid in pids_in(self.ns):
                if pid not in self.seen:
                    self.seen[pid] = cmdline(pid)
            time.sleep(0.02)


def settle(ns, keep=(), timeout=15):
    """The processes left in ns after waiting up to timeout for them to go."""
    deadline = time.time() + timeout
    while True:
        left = set(pids_in(ns)) - set(keep)
        if not left or time.time() > deadline:
            return left
        time.sleep(0.05)


def lose_a_host(d, hosts):
    print("== the second host goes away mid-epoch; resume on one rank", flush=True)
    ref = d.start_job(*LONG, "--ranks", "1", "--shards", "2")
    d.wait(ref, "--state", "done,failed,killed")
    check(d.status(ref)["state"] == "done", "the 1-rank reference job of the long config is done")

    job = d.start_job(*LONG, "--ranks", "2", "--shards", "2", "--hosts", hosts.hosts_value(), "--max-restarts", "0")
    d.wait_running_at(job, 1, min_step=50, timeout=300)
    gone = pids_in(hosts.names[1])
    print("    SIGKILL in %s: %s" % (hosts.names[1], [cmdline(p) for p in gone]), flush=True)
    check(any("traind-rank" in cmdline(p) for p in gone), "a rank was running on the second host when it went")
    for pid in gone:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
    rc, out, err = d.wait(job, "--state", "done,failed,killed", "--timeout", "120")
    st = d.status(job)
    reason = st.get("error") or ""
    check(st["state"] == "failed", "with --max-restarts 0 the job is failed (%s, %s)" % (st["state"], reason))
    check(re.search(r"rank \d", reason) or hosts.addrs[1] in reason,
          "its reason names the rank or the host that was lost (%r)" % reason)
    left = settle(hosts.names[0], keep=[d.proc.pid])
    check(not left, "no rank or mpirun of it is left on the first host (%s)" % [cmdline(p) for p in left])
    left = settle(hosts.names[1])
    check(not left, "nor on the second (%s)" % [cmdline(p) for p in left])

    rc, out, err = d.ctl("resume", job, "--ranks", "1", check_rc=False)
    check(rc == 0, "resume --ranks 1: on the first host alone (rc %d, %s)" % (rc, err.strip()))
    d.wait(job, "--state", "done,failed,killed")
    st = d.status(job)
    check(st["state"] == "done", "... and it finishes (%s)" % st)
    sha_ref = sha256_file(d.export_file(ref, "long-ranks1.safetensors"))
    sha_job = sha256_file(d.export_file(job, "long-lost-host.safetensors"))
    check(sha_job == sha_ref, "the job that lost a host and went on with one rank == the 1-rank job, bit for bit "
          "(%s vs %s)" % (sha_job[:16], sha_ref[:16]))
    h_ref, h_job = d.history(ref), d.history(job)
    same = [all(a[k] == b[k] for k in METRICS) for a, b in zip(h_job, h_ref)]
    check(len(h_job) == len(h_ref) == 3 and all(same), "... with the same history row by row (%s)" % same)


def main():
    why = NetnsHosts.check()
    if why:
        skip(why)
    if not shutil.which("mpirun"):
        skip("no mpirun (openmpi-bin)")
    # a traind without the MPI runner refuses the flag (exit 2)
    p = subprocess.run([TRAIND, "--mpi-launcher", "mpirun", "--help"], capture_output=True, text=True)
    if p.returncode != 0:
        skip("this traind has no MPI runner (traind --mpi-launcher: %s)" % (p.stderr.strip().splitlines() or ["?"])[0])

    with NetnsHosts() as hosts:
        print("hosts:", hosts.describe(), flush=True)
        d = NetnsDaemon(hosts, max_running=1).start()
        try:

            ref = d.start_job(*CONFIG, "--ranks", "1", "--shards", "2")
            rc, out, err = d.wait(ref, "--state", "done,failed,killed")
            st = d.status(ref)
            check(st["state"] == "done", "the 1-rank, 2-shard reference job is done (%s)" % st)

            before = [hosts.counters(0), hosts.counters(1)]
            watch = Watcher(hosts.names[1])
            watch.start()
            # no restarts: a failure shows as failed, not hidden by a retry
            job = d.start_job(*CONFIG, "--ranks", "2", "--shards", "2", "--hosts", hosts.hosts_value(),
                              "--max-restarts", "0")
            rc, out, err = d.wait(job, "--state", "done,failed,killed")
            watch.stop = True
            watch.join()
            after = [hosts.counters(0), hosts.counters(1)]
            st = d.status(job)
            check(st["state"] == "done", "the 2-rank job across the namespaces is done (%s)" % st)

            remote = [c for c in watch.seen.values() if c]
            print("    processes seen in %s: %s" % (hosts.names[1], remote), flush=True)
            check(any("orted" in c for c in remote), "mpirun's daemon (orted) ran in the second namespace")
            check(any("traind-rank" in c and "orted" not in c for c in remote),
                  "a rank (traind-rank) ran in the second namespace")

            steps = EPOCHS * (TRAIN // BATCH)
            # Each step a rank learns the other's shard gradient, at least half
            # of the parameters' bytes each way whatever the algorithm (float32).
            least = steps * PARAMS * 4 // 2
            for h in (0, 1):
                rx, tx = after[h][0] - before[h][0], after[h][1] - before[h][1]
                check(rx >= least and tx >= least, "host %d's veth carried the reduction both ways: rx %.1f MB, "
                      "tx %.1f MB >= %.1f MB (%d steps x half of %d float32 parameters)"
                      % (h, rx / 1e6, tx / 1e6, least / 1e6, steps, PARAMS))

            sha_ref = sha256_file(d.export_file(ref, "ranks1.safetensors"))
            sha_job = sha256_file(d.export_file(job, "ranks2-netns.safetensors"))
            check(sha_job == sha_ref, "the 2-rank job across two hosts exports the same model as the 1-rank job "
                  "(%s vs %s)" % (sha_job[:16], sha_ref[:16]))
            h_ref, h_job = d.history(ref), d.history(job)
            same = [all(a[k] == b[k] for k in METRICS) for a, b in zip(h_job, h_ref)]
            check(len(h_job) == len(h_ref) == EPOCHS and all(same),
                  "its history equals the 1-rank job's row by row, bit for bit (%s)" % same)

            # Nothing of the job is left running: poll a little, mpirun's
            # daemons exit after the ranks.
            deadline = time.time() + 10
            while time.time() < deadline and pids_in(hosts.names[1]):
                time.sleep(0.05)
            left = pids_in(hosts.names[1])
            check(not left, "nothing is left running in the second namespace (%s)" % [cmdline(p) for p in left])
            mine = set(pids_in(hosts.names[0])) - {d.proc.pid}
            check(not mine, "only traind is left in the first namespace (%s)" % [cmdline(p) for p in mine])

            lose_a_host(d, hosts)
        finally:
            d.stop()    # before the namespaces go (destroy() would SIGKILL it)


if __name__ == "__main__":
    run(main)
