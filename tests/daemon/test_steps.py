#!/usr/bin/env python3
"""The step series (migration 0008, daemon/jobs/stepseries.c, io.traind.Steps):
traind keeps a bounded sample of each job's running train loss by step.

- a trained job has points in every epoch, in order, each a position of
  that epoch (1 <= step <= steps_per_epoch) and at least `every` batches
  after the one before (every = ceil(steps_per_epoch / P), P points per
  epoch at most), with finite losses near the history's train loss at the
  epoch's end;
- they are stored: the same after traind restarts; a job killed mid-epoch
  and resumed keeps one point per position (a point taken again replaces
  the old one);
- the Job object has started (and finished once it is done);
- Steps of no job is NoSuchJob, an unknown parameter InvalidParameter;
- rm removes the job's points with it.
"""
import math
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import Daemon, check, run  # noqa: E402

SMALL = ["--train-size", "4000", "--val-size", "1000", "--threads", "1"]


def steps(d, job):
    r = d.call("io.traind.Steps", {"id": job})
    if "error" in r:
        raise RuntimeError("Steps(%s): %s" % (job, r))
    return r["parameters"]


def main():
    d = Daemon().start()
    job = d.start_job(*SMALL, "--epochs", "3", "--batch-size", "8", "--name", "stepped")
    d.wait(job)
    s = steps(d, job)
    spe = s["steps_per_epoch"]
    pts = s["points"]
    every = math.ceil(spe / 100)
    check(spe == 500 and len(pts) >= 6, "a 3-epoch job of 500 steps has points (%d)" % len(pts))
    check({p["epoch"] for p in pts} == {0, 1, 2}, "in every epoch")
    check(all(1 <= p["step"] <= spe and math.isfinite(p["loss"]) and p["loss"] > 0 for p in pts),
          "each at a position of its epoch, with a finite loss")
    pos = [(p["epoch"], p["step"]) for p in pts]
    check(pos == sorted(set(pos)), "by position, each once")
    check(all(b[1] - a[1] >= every for a, b in zip(pos, pos[1:]) if a[0] == b[0]),
          "at least %d batches apart within an epoch" % every)
    hist = d.history(job)
    for e in range(3):
        last = [p for p in pts if p["epoch"] == e][-1]
        if last["step"] > spe * 0.8:
            check(abs(last["loss"] - hist[e]["train_loss"]) < 0.25 * hist[e]["train_loss"] + 0.05,
                  "epoch %d's last point (step %d, %.4f) is near its train loss %.4f" % (
                      e + 1, last["step"], last["loss"], hist[e]["train_loss"]))
    j = d.job(job)
    check(isinstance(j.get("started"), int) and j.get("finished", 0) >= j["started"],
          "the job has started and finished")
    check(d.sql("SELECT started_at FROM jobs WHERE id=?", (job,)) == [(j["started"],)],
          "started is stored (jobs.started_at)")

    d.stop()
    d.start()
    check(steps(d, job) == s, "after a restart of traind, the same series")

    # killed mid-epoch, resumed: the epoch again, its points replaced
    k = d.start_job(*SMALL, "--epochs", "2", "--batch-size", "4", "--name", "killed")
    d.wait_running_at(k, 1, min_step=400, timeout=300)
    d.ctl("kill", k)
    before = steps(d, k)["points"]
    d.ctl("resume", k)
    d.wait(k)
    after = steps(d, k)["points"]
    pos = [(p["epoch"], p["step"]) for p in after]
    check(before and pos == sorted(set(pos)) and {p["epoch"] for p in after} == {0, 1},
          "killed in epoch 2 and resumed: one point per position (%d before, %d after)" % (len(before), len(after)))
    same = {(p["epoch"], p["step"]): p["loss"] for p in before}
    both = [(p["loss"], same[(p["epoch"], p["step"])]) for p in after if (p["epoch"], p["step"]) in same]
    check(all(a == b for a, b in both), "a position trained twice has the same loss (%d compared)" % len(both))

    r = d.call("io.traind.Steps", {"id": 999})
    check(r.get("error") == "io.traind.NoSuchJob", "Steps of no job: NoSuchJob")
    r = d.call("io.traind.Steps", {"id": job, "extra": 1})
    check(r.get("error") == "org.varlink.service.InvalidParameter", "Steps with an unknown parameter: InvalidParameter")

    d.ctl("rm", job)
    check(d.sql("SELECT count(*) FROM step_series WHERE job_id=?", (job,)) == [(0,)],
          "rm removes the job's points")
    check(d.sql("SELECT count(*) FROM step_series WHERE job_id=?", (k,))[0][0] == len(after),
          "and only its own")


if __name__ == "__main__":
    run(main)
