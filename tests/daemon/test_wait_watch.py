#!/usr/bin/env python3
"""trainctl wait (epoch, states, timeout, exit codes 3 and 4), watch without
a terminal, and status latency while a job trains."""
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import SANITIZER, TRAINCTL, Daemon, check, poll, run  # noqa: E402

# 2500 steps an epoch; under the sanitizers (the release tree runs the long
# form) 1000, still seconds an epoch there
TRAIN = 4000 if SANITIZER else 10000
SLOW = ["--train-size", str(TRAIN), "--batch-size", "4", "--val-size", "500" if SANITIZER else "2000"]


def popen_ctl(d, *args):
    return subprocess.Popen([TRAINCTL, "--socket", d.socket] + [str(a) for a in args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def main():
    d = Daemon(max_running=1).start()

    # ---- wait --epoch ----
    job = d.start_job(*SLOW, "--epochs", "3")
    before = d.job(job)
    t0 = time.time()
    rc, out, err = d.wait(job, "--epoch", "2")
    took = time.time() - t0
    hist = d.history(job)
    check(rc == 0, "wait --epoch 2 returns 0 (rc %d, %s)" % (rc, err.strip()))
    check(before["epoch"] < 2, "it had to wait: the job was at epoch %d when asked" % before["epoch"])
    check(len(hist) >= 2 and [r["epoch"] for r in hist][:2] == [1, 2],
          "when it returns, the history has epochs 1 and 2 (%s; waited %.2f s)" % ([r["epoch"] for r in hist], took))
    check(d.sql("SELECT count(*) FROM checkpoints WHERE job_id=? AND kind='epoch' AND epoch=2", (job,)) == [(1,)],
          "... and epoch 2's checkpoint is in the database")
    st = json.loads(d.ctl("wait", job, "--epoch", "1", "--json")[1])
    check(isinstance(st, dict) and (st.get("id") == job or st.get("job", {}).get("id") == job),
          "wait --json on an epoch already committed returns the job at once")
    rc, out, err = d.wait(job, "--epoch", "4")
    check(rc not in (0, 3, 4) and "epoch" in err, "wait --epoch beyond the job's epochs is refused (rc %d: %s)"
          % (rc, err.strip()))
    rc, out, err = d.wait(job, "--state", "done")
    check(rc == 0, "wait --state done returns 0 once done")
    rc, out, err = d.wait(job, "--state", "done")
    check(rc == 0, "wait --state done on a job already done returns 0 at once")
    rc, out, err = d.wait(job)
    check(rc == 0, "wait with no condition on a finished job returns 0")

    # ---- watch, stdout not a terminal ----
    job2 = d.start_job(*SLOW, "--epochs", "2")
    t_watch = time.time()
    p = popen_ctl(d, "watch", job2)
    try:
        out, err = p.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
    watch_s = time.time() - t_watch
    lines = out.splitlines()
    check(len(lines) <= 10 * watch_s + 3, "watch sends at most 10 updates per second (%d lines in %.2f s)"
          % (len(lines), watch_s))
    check(p.returncode == 0, "watch exits 0 when the job finishes (rc %s, %s)" % (p.returncode, err.strip()))
    check("\r" not in out and "\x1b" not in out, "watch without a terminal prints no \\r or escape sequences")
    check(len(lines) >= 3, "watch printed progress lines (%d lines)" % len(lines))
    check(all(l.startswith("job %d" % job2) for l in lines), "each line is about job %d" % job2)
    check(bool(lines) and "done" in lines[-1], "the last line says done: %r" % (lines[-1] if lines else ""))
    print("    watch: %d lines, e.g. %r ... %r" % (len(lines), lines[len(lines) // 2] if lines else "",
                                                  lines[-1] if lines else ""))
    check(d.status(job2)["state"] == "done", "the job is done when watch returns")
    rc, out, err = d.ctl("watch", job2, "--json")
    doc = json.loads(out) if rc == 0 else None
    check(rc == 0 and isinstance(doc, dict) and doc.get("state") == "done",
          "watch --json of a finished job prints one JSON document saying done (%s)" % out.strip()[:200])

    # ---- a long job: status latency, wait --timeout, wait ending in killed ----
    long_job = d.start_job(*SLOW, "--epochs", "50")
    d.wait_running_at(long_job, epoch=0, min_step=1)
    j = poll(lambda: (lambda x: x if x.get("samples_per_second", 0) > 0 else None)(d.job(long_job)),
             timeout=300, what="a throughput figure")
    check(j["samples_per_second"] > 0 and isinstance(j.get("eta_seconds"), (int, float)) and j["eta_seconds"] > 0,
          "status while training shows samples/s %.0f and an ETA %.1f s" % (j["samples_per_second"],
                                                                          j.get("eta_seconds") or -1))
    check(j["steps_per_epoch"] == TRAIN // 4, "status shows steps_per_epoch %d (%s)" % (TRAIN // 4,
                                                                                   j["steps_per_epoch"]))
    times, answers = [], []
    for _ in range(20):
        t0 = time.time()
        rc, out, err = d.ctl("status", long_job, "--json", check_rc=False)
        times.append(time.time() - t0)
        answers.append(json.loads(out)["state"] if rc == 0 else "rc %d" % rc)
    check(all(a == "running" for a in answers), "20 status calls while training all answer running (%s)"
          % sorted(set(answers)))
    raw = []
    for _ in range(200):
        t0 = time.time()
        d.job(long_job)
        raw.append(time.time() - t0)
    print("    20 x trainctl status while training: max %.1f ms, median %.1f ms; raw Status max %.2f ms"
          % (max(times) * 1e3, sorted(times)[10] * 1e3, max(raw) * 1e3))
    check(max(times) < 1.0, "status answers within 1 s while training (max %.3f s)" % max(times))

    t0 = time.time()
    rc, out, err = d.wait(long_job, "--timeout", "0.5")
    took = time.time() - t0
    check(rc == 3, "wait --timeout 0.5 on a long job exits 3 (rc %d, %s)" % (rc, err.strip()))
    check(0.4 <= took < 5, "... after about 0.5 s (%.2f s)" % took)
    check(len(err.strip().splitlines()) == 1, "... with one line on stderr: %s" % err.strip())
    rc, out, err = d.wait(long_job, "--epoch", "1", "--timeout", "60")
    check(rc == 0, "wait --epoch 1 --timeout 60 returns 0 before the timeout (rc %d)" % rc)

    w = popen_ctl(d, "wait", long_job, "--state", "done")
    time.sleep(0.3)
    check(w.poll() is None, "wait --state done blocks while the job runs")
    rc, out, err = d.ctl("kill", long_job, check_rc=False)
    check(rc == 0, "kill the long job (rc %d, %s)" % (rc, err.strip()))
    try:
        out, err = w.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        w.kill()
        out, err = w.communicate()
    check(w.returncode == 4, "wait --state done on a job that gets killed exits 4 (rc %s)" % w.returncode)
    check("killed" in err and len(err.strip().splitlines()) == 1, "... naming the state it ended in: %s"
          % err.strip())
    st = d.status(long_job)
    cks = d.ctl_json("checkpoints", long_job)
    nh = len(d.history(long_job))
    check(not [c for c in cks if c["kind"] == "position"] and st["epoch"] == nh,
          "kill saved nothing more: no position checkpoint, status epoch %s == history rows %d"
          % (st["epoch"], nh))
    rc, out, err = d.wait(long_job, "--state", "done")
    check(rc == 4, "wait --state done on a job already killed exits 4 at once (rc %d)" % rc)
    rc, out, err = d.wait(long_job, "--epoch", "50")
    check(rc == 4, "wait --epoch 50 on a killed job that cannot reach it exits 4 (rc %d)" % rc)
    rc, out, err = d.wait(long_job, "--state", "killed,failed")
    check(rc == 0, "wait --state killed,failed on the killed job returns 0 (rc %d)" % rc)
    rc, out, err = d.wait(long_job, "--state", "sleeping")
    check(rc not in (0, 3, 4), "wait --state with an unknown state is an error (rc %d: %s)" % (rc, err.strip()))


if __name__ == "__main__":
    run(main)
