#!/usr/bin/env python3
"""bench-daemon.py - the daemon's speed, measured in one run (ratios to a
baseline from the same run; these machines are shared and noisy).

  1. Baseline: the engine alone (traind-train) trains the lesson's model for
     EPOCHS epochs; its best epoch time.
  2. The same job through traind: epoch times from its history, and the
     checkpoint costs traind logs per epoch: how long the training thread was
     held (serializing to memory) and the time from epoch end to durable commit.
  3. Control latency: `status` round trips on a raw varlink connection while
     the job trains and commits checkpoints: p50 / p99 / max.

Usage: bench/bench-daemon.py [EPOCHS]   (build dir: TRAIND_BUILD_DIR or build/)
"""
import os
import re
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "daemon"))
import harness  # noqa: E402

epochs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
train = os.path.join(harness.BUILD, "engine", "traind-train")

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
    held = [float(x) for x in re.findall(r"held ([0-9.]+) ms", log)]
    durable = [float(x) for x in re.findall(r"durable after ([0-9.]+) ms", log)]
finally:
    d.cleanup()

lat_ms = sorted(x * 1e3 for x in lat)
p = lambda q: lat_ms[min(len(lat_ms) - 1, int(q * len(lat_ms)))]
daemon_best = min(daemon_epochs)
print("engine alone:   best epoch %.3f s (of %d)" % (engine_best, len(engine_epochs)))
print("through traind: best epoch %.3f s, median %.3f s -> %.1f%% of the engine's best (target <= 105%%)"
      % (daemon_best, statistics.median(daemon_epochs), 100 * daemon_best / engine_best))
print("checkpoint: training thread held %.1f ms median (%.2f%% of an epoch; target <= 1%%), "
      "durable %.1f ms after hand-over median, %.1f ms max (%.1f%% of an epoch; target <= 10%%)"
      % (statistics.median(held), 100 * statistics.median(held) / 1e3 / daemon_best,
         statistics.median(durable), max(durable), 100 * max(durable) / 1e3 / daemon_best))
print("status round trips while training: %d calls, p50 %.2f ms, p99 %.2f ms, max %.2f ms (target p99 <= 5 ms)"
      % (len(lat_ms), p(0.50), p(0.99), lat_ms[-1]))
