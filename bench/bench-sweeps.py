#!/usr/bin/env python3
"""bench-sweeps.py - what the sweep machinery costs (issue 23), measured in
one run against a baseline from the same run (these machines are shared).

  1. Overhead: the time from a trial's last epoch commit to the next trial
     started (traind's log: "job N: epoch E/E committed" to "job M (...):
     started"), for a grid sweep of TRIALS small trials run one at a time,
     against the same gap between the same jobs queued one after another by
     plain `trainctl start` (the jobs module's own hand-over): median and
     max of each, and their difference.
  2. PBT's decisions: a population of 4 at interval 1 for 3 epochs, one
     trial at a time (--max-parallel 1): from the last member's commit at
     a boundary to the next segment's first job started, against the plain
     hand-over of 1.; and of that, from the last commit to the decision
     taken, and from the decision to its exploit's job created (the
     exploit built through the uid's background work and the decision's
     transaction).
  3. Trials per hour on this machine (traind --max-running 2,
     --max-parallel 2, threads 1 per trial) for the lesson's MLP (its
     default configuration) on a 10000-image subset of MNIST, RANDOM_TRIALS
     random trials of EPOCHS epochs; and with --max-parallel 1, threads 2.

Usage: bench/bench-sweeps.py [TRIALS [RANDOM_TRIALS [EPOCHS]]]
       (build dir: TRAIND_BUILD_DIR or build/; data: TRAIND_DATA_DIR)
"""
import ctypes
import datetime
import os
import re
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "lib"))
import harness  # noqa: E402

trials = int(sys.argv[1]) if len(sys.argv) > 1 else 6
rtrials = int(sys.argv[2]) if len(sys.argv) > 2 else 4
epochs = int(sys.argv[3]) if len(sys.argv) > 3 else 1
SMALL = ["--train-size", "2000", "--val-size", "1000", "--hidden", "32", "--epochs", "1"]
STAMP = r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) traind \w+: "


def stamp(s):
    return datetime.datetime.strptime(s, "%Y-%m-%d %H:%M:%S.%f").timestamp()


def gaps(log, jobs):
    """Seconds from each job's last commit to the next job's start, in order."""
    commit, start = {}, {}
    for m in re.finditer(STAMP + r"job (\d+): epoch (\d+)/(\d+) committed", log, re.M):
        if m.group(3) == m.group(4):
            commit[int(m.group(2))] = stamp(m.group(1))
    for m in re.finditer(STAMP + r"job (\d+) \([^)]*\): started", log, re.M):
        start.setdefault(int(m.group(2)), stamp(m.group(1)))
    return [start[b] - commit[a] for a, b in zip(jobs, jobs[1:]) if a in commit and b in start]


def cpu():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "?"


def corename():
    for name in ("libopenblas.so.0", "libopenblas.so", "libblas.so.3"):
        try:
            f = ctypes.CDLL(name).openblas_get_corename
            f.restype = ctypes.c_char_p
            return f().decode()
        except (OSError, AttributeError):
            continue
    return "?"


print("CPU: %s; OpenBLAS core: %s; load average %s" % (cpu(), corename(), os.getloadavg()))

# 1. overhead: a sweep's hand-over against plain queued jobs', one traind, one at a time
d = harness.Daemon(max_running=1).start()
try:
    plain = [d.start_job("--lr", "0.00%d" % (i + 1), *SMALL) for i in range(trials)]
    d.wait(plain[-1], "--state", "done")
    sid = d.ctl_json("sweep", "start", "--searcher", "grid", "--max-parallel", "1",
                     "--param", "lr=choice(%s)" % ",".join("0.00%d" % (i + 1) for i in range(trials)), *SMALL)["id"]
    d.ctl("sweep", "wait", sid, "--timeout", "3600")
    swept = [t["job"] for t in d.ctl_json("sweep", "status", sid)["trials"]]
    log = d.read_log()
finally:
    d.cleanup()
gp, gs = gaps(log, plain), gaps(log, swept)
print("last commit -> next start, plain queued jobs: median %.1f ms, max %.1f ms (%d gaps)" % (
    1e3 * statistics.median(gp), 1e3 * max(gp), len(gp)))
print("last commit -> next start, a sweep's trials:  median %.1f ms, max %.1f ms (%d gaps)" % (
    1e3 * statistics.median(gs), 1e3 * max(gs), len(gs)))
print("the sweep machinery's overhead: %+.1f ms median per trial" % (1e3 * (statistics.median(gs) -
                                                                      statistics.median(gp))))

# 2. PBT's decisions, one traind, one trial at a time
PBT_SMALL = SMALL[:SMALL.index("--epochs")] + ["--epochs", "3"]
d = harness.Daemon(max_running=1).start()
try:
    sid = d.ctl_json("sweep", "start", "--searcher", "pbt", "--population", "4", "--interval", "1",
                     "--max-parallel", "1", "--seed", "7", "--param", "lr=loguniform(0.001,0.1)", *PBT_SMALL)["id"]
    d.ctl("sweep", "wait", sid, "--timeout", "3600")
    log = d.read_log()
finally:
    d.cleanup()
commits = [(stamp(m.group(1)), int(m.group(3))) for m in
           re.finditer(STAMP + r"job (\d+): epoch (\d+)/\d+ committed", log, re.M)]
starts = [stamp(m.group(1)) for m in re.finditer(STAMP + r"job \d+ \([^)]*\): started", log, re.M)]
created = [stamp(m.group(1)) for m in re.finditer(STAMP + r"job \d+ \([^)]*\): created", log, re.M)]
hand, decide, build = [], [], []
for m in re.finditer(STAMP + r"sweep \d+: decision \d+ at epoch (\d+): (\d+) of", log, re.M):
    t, b = stamp(m.group(1)), int(m.group(2))
    last = max(tc for tc, e in commits if e == b and tc <= t)
    hand.append(min(ts for ts in starts if ts > t) - last)
    decide.append(t - last)
    if int(m.group(3)):
        build.append(min(tc for tc in created if tc > t) - t)
if hand:
    print("pbt, last boundary commit -> next segment started: median %.1f ms, max %.1f ms (%d decisions); "
          "%+.1f ms median against plain jobs' hand-over" % (1e3 * statistics.median(hand), 1e3 * max(hand),
                                                            len(hand), 1e3 * (statistics.median(hand) -
                                                                              statistics.median(gp))))
    print("pbt, of which: last commit -> decision taken median %.1f ms; decision -> its exploit's job created "
          "(built and stored) median %.1f ms, max %.1f ms" % (1e3 * statistics.median(decide),
                                                              1e3 * statistics.median(build) if build else 0,
                                                              1e3 * max(build) if build else 0))
else:
    print("pbt: no decision found in traind's log")

# 3. trials per hour: the lesson's MLP on 10000 images
LESSON = ["--train-size", "10000", "--epochs", str(epochs)]
for par, threads in ((2, 1), (1, 2)):
    d = harness.Daemon(max_running=2).start()
    try:
        t0 = time.time()
        sid = d.ctl_json("sweep", "start", "--searcher", "random", "--trials", str(rtrials), "--seed", "1",
                         "--max-parallel", str(par), "--threads", str(threads),
                         "--param", "lr=loguniform(1e-4,1e-2)", *LESSON)["id"]
        d.ctl("sweep", "wait", sid, "--timeout", "7200")
        dt = time.time() - t0
    finally:
        d.cleanup()
    print("lesson MLP, 10000 images, %d epoch(s): %d trials in %.1f s with --max-parallel %d, threads %d: "
          "%.0f trials/hour" % (epochs, rtrials, dt, par, threads, 3600 * rtrials / dt))
