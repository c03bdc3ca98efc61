#!/usr/bin/env python3
"""bench-daemon.py - the daemon's speed, measured in one run (ratios to a
baseline from the same run; these machines are shared and noisy).

  1. Baseline: the engine alone (traind-train) trains the lesson's model for
     EPOCHS epochs; its best epoch time.
  2. The same job through traind, on a real socket and SQLite file: epoch
     times from its history, and the checkpoint costs traind logs per epoch
     ("held H ms, durable after D ms" of each "epoch N/M committed" line):
     how long the training thread was held (serializing to memory; target
     <= 1 ms) and the time from epoch end to durable commit (held + the
     hand-over to the store thread until COMMIT returned: hashing, the
     SQLite transaction and its fsync), as a share of that epoch's time
     (target <= 5%); per epoch, then median and max.
  3. Control latency: `status` round trips on a raw varlink connection while
     the job trains and commits checkpoints: p50 / p99 / max.
  4. Memory: traind's peak RSS (VmHWM of /proc/PID/status) with that one
     lesson job run to its end (target <= 150 MB).

Usage: bench/bench-daemon.py [EPOCHS]   (build dir: TRAIND_BUILD_DIR or build/)
"""
import os
import re
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "lib"))
import harness  # noqa: E402

epochs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
train = harness.TRAIND_TRAIN

out = subprocess.run([train, "--epochs", str(epochs), "--no-test", "--data-dir", harness.DATA],
                     capture_output=True, text=True, check=True).stdout
engine_epochs = [float(m) for m in re.findall(r"\| ([0-9.]+)s", out)]
engine_best = min(engine_epochs)

d = harness.Daemon().start()
try:
    job = d.start_job("--epochs", epochs)
    vl = harness.Varlink(d.socket)
    lat = []
    while True:
        t0 = time.perf_counter()
        r = vl.call("io.traind.Status", {"id": job})
        lat.append(time.perf_counter() - t0)
        if r["parameters"]["job"]["state"] not in ("queued", "running"):
            break
        time.sleep(0.002)
    vl.close()
    hist = d.ctl_json("history", job)
    daemon_epochs = [row["seconds"] for row in hist]
    log = d.read_log()
    commits = [(int(m.group(1)), float(m.group(2)), float(m.group(3)), float(m.group(4)))
               for m in re.finditer(r"epoch (\d+)/\d+ committed \|.*\| ([0-9.]+)s \| "
                                    r"held ([0-9.]+) ms, durable after ([0-9.]+) ms", log)]
    with open("/proc/%d/status" % d.proc.pid) as f:
        hwm_kb = int(re.search(r"VmHWM:\s+(\d+) kB", f.read()).group(1))
finally:
    d.cleanup()

lat_ms = sorted(x * 1e3 for x in lat)
p = lambda q: lat_ms[min(len(lat_ms) - 1, int(q * len(lat_ms)))]
daemon_best = min(daemon_epochs)
print("engine alone:   best epoch %.3f s (of %d)" % (engine_best, len(engine_epochs)))
print("through traind: best epoch %.3f s, median %.3f s -> %.1f%% of the engine's best (target <= 105%%)"
      % (daemon_best, statistics.median(daemon_epochs), 100 * daemon_best / engine_best))
print("checkpoint per epoch: epoch s | held ms | durable after hand-over ms | epoch end to durable, % of the epoch")
held, to_durable, to_durable_ms = [], [], []
for epoch, secs, h, dur in commits:
    held.append(h)
    to_durable_ms.append(h + dur)
    to_durable.append(100 * (h + dur) / 1e3 / secs)
    print("  %3d  %6.3f  %6.1f  %7.1f  %5.1f%%" % (epoch, secs, h, dur, to_durable[-1]))
print("training thread held: median %.1f ms, max %.1f ms (target <= 1 ms)%s"
      % (statistics.median(held), max(held), "" if max(held) <= 1.0 else "  ** over **"))
print("epoch end to durable commit: median %.1f%%, max %.1f%% of the epoch (target <= 5%%)%s; "
      "%.1f ms median, %.1f ms max"
      % (statistics.median(to_durable), max(to_durable), "" if max(to_durable) <= 5.0 else "  ** over **",
         statistics.median(to_durable_ms), max(to_durable_ms)))
print("status round trips while training: %d calls, p50 %.2f ms, p99 %.2f ms, max %.2f ms (target p99 <= 5 ms)"
      % (len(lat_ms), p(0.50), p(0.99), lat_ms[-1]))
print("traind peak RSS (VmHWM) with one lesson job: %.1f MB (target <= 150 MB)%s"
      % (hwm_kb / 1024, "" if hwm_kb / 1024 <= 150 else "  ** over **"))
