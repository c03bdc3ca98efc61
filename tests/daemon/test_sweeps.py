#!/usr/bin/env python3
"""Hyperparameter sweeps (issue 23; doc/sweeps.md), driven as a user would:
real traind, real SQLite, MNIST subsets (2000 training images), small MLPs.

- Bad input is refused at start naming the field, with nothing stored: an
  unknown key, a distribution grid cannot enumerate, lo > hi, a metric the
  task lacks, a value the configuration refuses (named as the parameter),
  a random sweep without --trials.
- A 2x2 grid (--max-parallel 2): each trial's job has the configuration
  `trainctl start` stores for the same flags, and its final weights equal a
  plain job's started with them.
- The same grid with --max-parallel 1, traind SIGKILLed at random moments
  several times and restarted: `sweep status --json` and every trial's
  weights identical to the uninterrupted run's (max_parallel aside); never
  more than one trial running.
- sweep kill: no trial starts any more, those queued or running are killed;
  it stays killed across a SIGKILL; `sweep wait` ends with exit 4.
- sweep list, NoSuchSweep.

TRAIND_SWEEP_KILLS (default 3) sets how many SIGKILLs the crash run takes."""
import json
import os
import random
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import Daemon, check, run  # noqa: E402

SHARED = ["--train-size", "2000", "--val-size", "1000", "--hidden", "64", "--epochs", "3"]
GRID = ["--searcher", "grid", "--param", "lr=choice(0.001,0.01)", "--param", "batch_size=choice(2,4)"]
KILLS = int(os.environ.get("TRAIND_SWEEP_KILLS", "3"))


def counts(d):
    return d.sql("SELECT (SELECT count(*) FROM sweeps), (SELECT count(*) FROM sweep_trials), "
                 "(SELECT count(*) FROM jobs)")[0]


def refused(d, args, field, what):
    before = counts(d)
    rc, out, err = d.ctl("sweep", "start", *args, check_rc=False)
    check(rc != 0 and field in err and out == "",
          "%s: refused naming %s (rc %d: %s)" % (what, field, rc, err.strip()))
    check(counts(d) == before, "%s: nothing stored (%s -> %s)" % (what, before, counts(d)))


def trial_shas(d, status):
    return {t["trial"]: d.export_sha(t["job"]) for t in status["trials"]}


def running_trials(d, sweep):
    s = d.call("io.traind.SweepStatus", {"id": sweep})["parameters"]["sweep"]
    return sum(1 for t in s["trials"] if t["state"] == "running"), s


def main():
    rnd = random.Random(23)
    a = Daemon(max_running=2).start()

    refused(a, ["--searcher", "grid", "--param", "learning_rate=choice(0.1,0.01)"] + SHARED,
            "params.learning_rate", "an unknown key")
    refused(a, ["--searcher", "grid", "--param", "lr=uniform(0.001,0.1)"] + SHARED,
            "params.lr", "uniform() in a grid")
    refused(a, ["--searcher", "random", "--trials", "2", "--param", "lr=loguniform(0.1,0.001)"] + SHARED,
            "params.lr", "lo > hi")
    refused(a, GRID + ["--metric", "val_mae"] + SHARED, "metric", "val_mae on a classification")
    refused(a, ["--searcher", "grid", "--param", "batch_size=choice(16,0)"] + SHARED,
            "--param batch_size", "a value the configuration refuses")
    refused(a, ["--searcher", "random", "--param", "lr=uniform(0.001,0.01)"] + SHARED, "trials",
            "random without --trials")
    r = a.call("io.traind.SweepStatus", {"id": 99})
    check(r.get("error") == "io.traind.NoSuchSweep" and r["parameters"].get("id") == 99,
          "SweepStatus of no sweep: NoSuchSweep (%s)" % r)

    # ---- a 2x2 grid, two trials at once, uninterrupted ----
    sid = a.ctl_json("sweep", "start", "--name", "g", "--max-parallel", "2", *(GRID + SHARED))["id"]
    rc, out, err = a.ctl("sweep", "wait", sid, "--timeout", "600", check_rc=False)
    check(rc == 0, "sweep wait: the grid is done (rc %d: %s)" % (rc, err.strip()))
    ref = a.ctl_json("sweep", "status", sid)
    check(ref["state"] == "done" and len(ref["trials"]) == 4 and ref["trials_done"] == 4,
          "the grid's four trials are done (%s)" % {k: ref[k] for k in ("state", "trials_done")})
    got = [(t["params"]["lr"], t["params"]["batch_size"]) for t in ref["trials"]]
    check(got == [(0.001, 2), (0.001, 4), (0.01, 2), (0.01, 4)], "the grid's order (%s)" % got)
    check(all(t["decision"] == "completed" and t["epochs"] == 3 and isinstance(t["metric"], float)
              for t in ref["trials"]), "every trial completed its 3 epochs with a metric")
    best = min(ref["trials"], key=lambda t: (t["metric"], t["trial"]))
    check(ref["best"]["trial"] == best["trial"] and ref["best"]["job"] == best["job"],
          "the best trial is the lowest val_loss (%s vs %s)" % (ref["best"], best["trial"]))
    ref_shas = trial_shas(a, ref)
    check(len(set(ref_shas.values())) == 4, "four different models")
    # each trial is the job trainctl start makes with its configuration
    for t in ref["trials"]:
        p = t["params"]
        job = a.start_job("--lr", p["lr"], "--batch-size", p["batch_size"], *SHARED)
        rc, _, err = a.wait(job, "--state", "done")
        check(rc == 0, "plain job %s is done (%s)" % (job, err.strip()))
        check(a.status(job)["config"] == a.status(t["job"])["config"],
              "trial %d's job has the configuration start stores" % t["trial"])
        check(a.export_sha(job) == ref_shas[t["trial"]],
              "trial %d's weights equal a plain job's with %s" % (t["trial"], p))
    lst = a.ctl_json("sweep", "list")["sweeps"]
    check([s["id"] for s in lst] == [sid] and lst[0]["state"] == "done", "sweep list (%s)" % lst)
    a.cleanup()

    # ---- the same grid, one trial at a time, SIGKILLed and restarted ----
    b = Daemon(max_running=2).start()
    sid_b = b.ctl_json("sweep", "start", "--name", "g", "--max-parallel", "1", *(GRID + SHARED))["id"]
    check(sid_b == sid, "the same sweep id in a fresh database")
    kills = 0
    while kills < KILLS:
        deadline = time.time() + rnd.uniform(0.2, 1.2)
        while time.time() < deadline:
            n, s = running_trials(b, sid_b)
            check(n <= 1, "max_parallel 1: %d trials running" % n)
            time.sleep(0.02)
        if s["state"] != "running":
            break
        b.kill9()
        kills += 1
        b.start()
    check(kills >= 2, "traind was SIGKILLed mid-sweep %d times" % kills)
    rc, out, err = b.ctl("sweep", "wait", sid_b, "--timeout", "600", check_rc=False)
    check(rc == 0, "sweep wait after %d SIGKILLs: done (rc %d: %s)" % (kills, rc, err.strip()))
    got = b.ctl_json("sweep", "status", sid_b)
    check(got.pop("max_parallel") == 1 and ref.pop("max_parallel") == 2, "max_parallel as given")
    check(got == ref, "sweep status --json after %d SIGKILLs equals the uninterrupted run's:\n%s\n%s" % (
        kills, json.dumps(got, sort_keys=True), json.dumps(ref, sort_keys=True)))
    check(trial_shas(b, got) == ref_shas, "every trial's weights equal the uninterrupted run's")
    check(b.sql("SELECT count(*) FROM jobs")[0][0] == 4, "no trial ran twice (4 jobs)")

    # ---- sweep kill ----
    k = b.ctl_json("sweep", "start", "--searcher", "random", "--trials", "3", "--seed", "5",
                   "--param", "lr=loguniform(1e-3,1e-2)", *SHARED)["id"]
    for _ in range(3000):
        n, s = running_trials(b, k)
        if n:
            break
        time.sleep(0.01)
    r = b.ctl_json("sweep", "kill", k)
    check(r == {"id": k, "state": "killed"}, "sweep kill answers (%s)" % r)
    for _ in range(3000):
        s = b.ctl_json("sweep", "status", k)
        if all(t["state"] not in ("queued", "running") for t in s["trials"]):
            break
        time.sleep(0.01)
    check(s["state"] == "killed" and all(t["state"] in ("killed", "done") for t in s["trials"]) and
          sum(t["state"] == "killed" for t in s["trials"]) >= 2,
          "a killed sweep's trials are killed (%s)" % [t["state"] for t in s["trials"]])
    b.kill9()
    b.start()
    time.sleep(0.5)
    s2 = b.ctl_json("sweep", "status", k)
    check(s2 == s, "the killed sweep is the same after a SIGKILL (%s)" % [t["state"] for t in s2["trials"]])
    rc, out, err = b.ctl("sweep", "wait", k, check_rc=False)
    check(rc == 4, "sweep wait of a killed sweep: exit 4 (%d)" % rc)
    rc, out, err = b.ctl("sweep", "kill", 77, check_rc=False)
    check(rc == 1 and "77" in err, "sweep kill of no sweep (%s)" % err.strip())
    b.cleanup()


if __name__ == "__main__":
    run(main)
