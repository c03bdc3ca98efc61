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
- Successive halving of 8 trials (rungs at 1, 2 and 4 epochs): run once
  uninterrupted with --max-parallel 2, then with --max-parallel 1 and
  traind SIGKILLed at random moments and once right as a rung's promotions
  are made: `sweep status --json` and every trial's weights identical; a
  trial that reached 4 epochs through two promotions equals a plain job
  started with 4 epochs.
- sweep start --config sweep.yaml gives the sweep the flags give.
- The Python client: sweep_start, sweep_wait, sweeps, sweep_rm, its errors.
- sweep list, NoSuchSweep; traind-web's /metrics has the per-sweep gauges
  (traind_sweep_trials by state, traind_sweep_best_metric).

TRAIND_SWEEP_KILLS (default 3) sets how many SIGKILLs the crash run takes."""
import http.client
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
from harness import Daemon, check, run  # noqa: E402

SHARED = ["--train-size", "2000", "--val-size", "1000", "--hidden", "64", "--epochs", "3"]
GRID = ["--searcher", "grid", "--param", "lr=choice(0.001,0.01)", "--param", "batch_size=choice(2,4)"]
KILLS = int(os.environ.get("TRAIND_SWEEP_KILLS", "3"))


def kill_mid_trial(d, sid, rnd, max_parallel, promotion=False):
    """SIGKILL traind once one of the sweep's trials trains at a random step
    of its epoch (promotion: instead right as a rung's promotion is made,
    its job not yet running), then start it again. False when the sweep
    ended first. Checks meanwhile that at most max_parallel trials run."""
    want = rnd.randint(1, 150)
    deadline = time.time() + 600
    while time.time() < deadline:
        n, s = running_trials(d, sid)
        if n > max_parallel:
            check(False, "max_parallel %d: %d trials running" % (max_parallel, n))
        if s["state"] != "running":
            return False
        hit = False
        if promotion:
            hit = any(t["decision"] == "promoted" and t["state"] != "running" for t in s["trials"])
        else:
            for t in s["trials"]:
                if t["state"] == "running":
                    j = d.job(t["job"])
                    hit = hit or (j["state"] == "running" and j["step"] >= want)
        if hit:
            d.kill9()
            d.start()
            if promotion:
                # its trials' jobs are all done until the restarted sweep
                # resumes the promoted ones: the sweep is still running
                # (a status "done" here made `sweep wait` return early)
                s = d.call("io.traind.SweepStatus", {"id": sid})["parameters"]["sweep"]
                check(s["state"] == "running", "right after a restart at a promotion the sweep is running (%s: %s)"
                      % (s["state"], [(t["state"], t["decision"]) for t in s["trials"]]))
            return True
        time.sleep(0.002)
    check(False, "the sweep went on for 10 minutes")
    return False


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


SHA = ["--searcher", "sha", "--trials", "8", "--seed", "11", "--max-epochs", "4", "--grace-epochs", "1",
       "--reduction-factor", "2", "--param", "lr=loguniform(0.001,0.03)", "--param", "batch_size=choice(4,8)"]
SHA_SHARED = ["--train-size", "2000", "--val-size", "1000", "--hidden", "32"]


def sha_runs(rnd):
    c = Daemon(max_running=2).start()
    sid = c.ctl_json("sweep", "start", "--name", "h", "--max-parallel", "2", *(SHA + SHA_SHARED))["id"]
    rc, out, err = c.ctl("sweep", "wait", sid, "--timeout", "600", check_rc=False)
    check(rc == 0, "sha sweep done (rc %d: %s)" % (rc, err.strip()))
    ref = c.ctl_json("sweep", "status", sid)
    rungs = [t.get("rung") for t in ref["trials"]]
    check(ref["rungs"] == [1, 2, 4] and sorted(rungs) == [0, 0, 0, 0, 1, 1, 2, 2],
          "sha: 8 trials, 4 promoted to rung 1, 2 to rung 2 (%s)" % rungs)
    check(sorted(t["epochs"] for t in ref["trials"]) == [1, 1, 1, 1, 2, 2, 4, 4],
          "each trial trained to its rung's epochs")
    check(sum(t["decision"] == "stopped" for t in ref["trials"]) == 6 and
          sum(t["decision"] == "completed" for t in ref["trials"]) == 2, "6 stopped, 2 completed")
    check(ref["best"]["trial"] in [t["trial"] for t in ref["trials"] if t["epochs"] == 4],
          "the best trial is one that reached max_epochs")
    ref_shas = trial_shas(c, ref)
    top = [t for t in ref["trials"] if t["epochs"] == 4][0]
    plain = c.start_job("--lr", repr(top["params"]["lr"]), "--batch-size", top["params"]["batch_size"],
                        "--epochs", "4", *SHA_SHARED)
    rc, _, err = c.wait(plain, "--state", "done")
    check(rc == 0 and c.export_sha(plain) == ref_shas[top["trial"]],
          "a trial promoted twice (1 -> 2 -> 4 epochs) equals a plain job of 4 epochs")
    c.cleanup()

    e = Daemon(max_running=2).start()
    sid_e = e.ctl_json("sweep", "start", "--name", "h", "--max-parallel", "1", *(SHA + SHA_SHARED))["id"]
    kills, at_promotion = 0, False
    while kills < KILLS and kill_mid_trial(e, sid_e, rnd, 1):
        kills += 1
        if kills == 1:   # then once right as a rung's promotions are made
            at_promotion = kill_mid_trial(e, sid_e, rnd, 1, promotion=True)
            kills += at_promotion
    check(kills >= 2 and at_promotion, "sha: traind SIGKILLed %d times, once at a promotion (%s)" % (
        kills, at_promotion))
    rc, out, err = e.ctl("sweep", "wait", sid_e, "--timeout", "600", check_rc=False)
    check(rc == 0, "sha sweep done after %d SIGKILLs (rc %d: %s)" % (kills, rc, err.strip()))
    got = e.ctl_json("sweep", "status", sid_e)
    got.pop("max_parallel"), ref.pop("max_parallel")
    check(got == ref, "sha: status --json after SIGKILLs, --max-parallel 1, equals the uninterrupted "
          "--max-parallel 2 run's:\n%s\n%s" % (json.dumps(got, sort_keys=True), json.dumps(ref, sort_keys=True)))
    check(trial_shas(e, got) == ref_shas, "sha: every trial's weights equal the uninterrupted run's")
    check(e.sql("SELECT count(*) FROM jobs")[0][0] == 8, "sha: no trial ran twice (8 jobs)")
    e.cleanup()


def metrics(d):
    """traind-web's /metrics for traind d (a real traind-web on a loopback port)."""
    tmp = tempfile.mkdtemp(prefix="traind-web-sweeps-")
    static = os.path.join(harness.BUILD, "web")
    web = os.path.join(harness.BUILD, "web", "traind-web")
    p = subprocess.Popen([web, "--socket", d.socket, "--listen", "127.0.0.1:0", "--token-file",
                          os.path.join(tmp, "token"), "--static-dir", static], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL)
    try:
        m = re.search(r"http://127\.0\.0\.1:(\d+)/\?token=([0-9a-f]{64})", p.stdout.readline().decode())
        c = http.client.HTTPConnection("127.0.0.1", int(m.group(1)), timeout=60)
        c.request("GET", "/metrics", headers={"Authorization": "Bearer " + m.group(2)})
        r = c.getresponse()
        return r.status, r.read().decode()
    finally:
        p.terminate()
        p.wait(30)


def sweep_file(d, ref):
    """sweep start --config sweep.yaml: the same sweep as the flags (params
    as a mapping), flags winning over the file."""
    path = os.path.join(d.dir, "sweep.yaml")
    with open(path, "w") as f:
        f.write("# the grid of the flags\nname: g\nsearcher: random\nmax_parallel: 2\nparams:\n"
                "  lr: choice(0.001,0.01)\n  batch_size: choice(2,4)\n"
                "train_size: 2000\nval_size: 1000\nhidden: [64]\nepochs: 3\n")
    sid = d.ctl_json("sweep", "start", "--config", path, "--searcher", "grid")["id"]
    d.ctl_json("sweep", "kill", sid)
    s = d.ctl_json("sweep", "status", sid)
    for k in ("searcher", "params", "config", "max_parallel", "metric", "name"):
        check(s[k] == ref[k], "sweep start --config: %s as with the flags (%s vs %s)" % (k, s[k], ref[k]))
    check([t["params"] for t in s["trials"]] == [t["params"] for t in ref["trials"]],
          "sweep start --config: the same trials")
    with open(path, "a") as f:
        f.write("params2: x\n")
    rc, out, err = d.ctl("sweep", "start", "--config", path, check_rc=False)
    check(rc == 2 and "params2" in err, "an unknown key in the file is refused naming it (%s)" % err.strip())
    d.ctl("sweep", "rm", sid)


def python_client(d):
    """The Python client's sweeps (python/traind)."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
    import traind
    with traind.Client(d.socket) as c:
        sid = c.sweep_start("random", {"lr": "loguniform(1e-3,1e-2)"}, trials=2, seed=4, max_parallel=2,
                            name="py", train_size=2000, val_size=1000, hidden=[32], epochs=1)
        s = c.sweep_wait(sid, timeout=600)
        check(s["state"] == "done" and [t["trial"] for t in s["trials"]] == [0, 1] and
              s == d.ctl_json("sweep", "status", sid), "Python: sweep_start, sweep_wait = sweep status --json")
        check(any(x["id"] == sid for x in c.sweeps()), "Python: sweeps() lists it")
        try:
            c.sweep_status(999)
            check(False, "Python: NoSuchSweep raised")
        except traind.NoSuchSweep as e:
            check(e.parameters.get("id") == 999, "Python: NoSuchSweep for sweep 999")
        try:
            c.sweep_start("grid", {"learning_rate": "choice(1,2)"})
            check(False, "Python: InvalidParameter raised")
        except traind.InvalidParameter as e:
            check(e.parameters.get("parameter") == "params.learning_rate", "Python: InvalidParameter "
                  "names params.learning_rate (%s)" % e.parameters)
        check(c.sweep_rm(sid) == {"id": sid, "state": "removed"}, "Python: sweep_rm")


def hyperband(d):
    """HyperBand (max 2 epochs, eta 2): a bracket of 2 trials from 1 epoch
    (the better goes on to 2), one of 2 trials at 2 epochs."""
    sid = d.ctl_json("sweep", "start", "--name", "hb", "--searcher", "hyperband", "--max-epochs", "2",
                     "--reduction-factor", "2", "--seed", "3", "--max-parallel", "2",
                     "--param", "lr=loguniform(1e-3,1e-2)", *SHA_SHARED)["id"]
    rc, out, err = d.ctl("sweep", "wait", sid, "--timeout", "600", check_rc=False)
    check(rc == 0, "hyperband sweep done (rc %d: %s)" % (rc, err.strip()))
    s = d.ctl_json("sweep", "status", sid)
    check(s["brackets"] == [{"rungs": [1, 2], "trials": 2}, {"rungs": [2], "trials": 2}] and
          [t["bracket"] for t in s["trials"]] == [0, 0, 1, 1], "hyperband's brackets (%s)" % s.get("brackets"))
    b0 = s["trials"][:2]
    better = min(b0, key=lambda t: (d.history(t["job"])[0]["val_loss"], t["trial"]))
    check(sorted(t["epochs"] for t in b0) == [1, 2] and better["epochs"] == 2 and
          [t["decision"] for t in b0 if t is not better] == ["stopped"],
          "bracket 0: the better trial at 1 epoch goes on to 2 (%s)" % [(t["epochs"], t["decision"]) for t in b0])
    check(all(t["epochs"] == 2 and t["decision"] == "completed" for t in s["trials"][2:]),
          "bracket 1: both trials trained 2 epochs")


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
    refused(a, SHA[:-4] + ["--reduction-factor", "1", "--param", "lr=uniform(0.001,0.01)"] + SHARED,
            "reduction_factor", "a reduction factor < 2")
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
    status, text = metrics(a) if os.path.exists(os.path.join(harness.BUILD, "web", "traind-web")) else (0, "")
    want = 'traind_sweep_trials{sweep="%d",name="g",state="done"} 4' % sid
    check(status == 200 and want in text and
          'traind_sweep_trials{sweep="%d",name="g",state="running"} 0' % sid in text,
          "/metrics has the sweep's trials by state (%s)" % want)
    m = re.search(r'traind_sweep_best_metric\{sweep="%d",name="g",metric="val_loss"\} (\S+)' % sid, text)
    check(m and float(m.group(1)) == ref["best"]["metric"], "/metrics has the sweep's best metric (%s)" % (
        m and m.group(0)))
    # trainctl plot --sweep: every trial's curves
    svg = os.path.join(a.dir, "sweep.svg")
    j = a.ctl_json("plot", "--sweep", sid, "-o", svg)
    check(j["jobs"] == [t["job"] for t in ref["trials"]] and os.path.getsize(svg) == j["size"],
          "plot --sweep draws every trial's job (%s)" % j.get("jobs"))
    rc, out, err = a.ctl("plot", "--sweep", 99, "-o", svg, check_rc=False)
    check(rc == 1 and "no such sweep 99" in err, "plot --sweep of no sweep (%s)" % err.strip())
    sweep_file(a, ref)
    python_client(a)
    hyperband(a)
    a.cleanup()

    # ---- the same grid, one trial at a time, SIGKILLed and restarted ----
    b = Daemon(max_running=2).start()
    sid_b = b.ctl_json("sweep", "start", "--name", "g", "--max-parallel", "1", *(GRID + SHARED))["id"]
    check(sid_b == sid, "the same sweep id in a fresh database")
    kills = 0
    while kills < KILLS and kill_mid_trial(b, sid_b, rnd, 1):
        kills += 1
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

    # ---- sweep pause, resume, rm ----
    # Trials long enough (10 epochs of 4000 images) that the pause lands while
    # they train, even on a loaded machine: with SHARED's 3 short epochs both
    # trials could finish before the pause arrived.
    long_trials = ["--train-size", "4000", "--val-size", "1000", "--hidden", "64", "--epochs", "10"]
    p = b.ctl_json("sweep", "start", "--searcher", "random", "--trials", "2", "--seed", "6", "--max-parallel", "2",
                   "--param", "lr=loguniform(1e-3,1e-2)", *long_trials)["id"]
    for _ in range(3000):
        n, s = running_trials(b, p)
        if n:
            break
        time.sleep(0.01)
    rc, out, err = b.ctl("sweep", "rm", p, check_rc=False)
    check(rc == 1 and "kill the sweep first" in err, "sweep rm of a running sweep refused (%s)" % err.strip())
    check(b.ctl_json("sweep", "pause", p) == {"id": p, "state": "paused"}, "sweep pause answers")
    for _ in range(3000):
        s = b.ctl_json("sweep", "status", p)
        if all(t["state"] in ("paused", "done") for t in s["trials"]):
            break
        time.sleep(0.01)
    check(s["state"] == "paused" and any(t["state"] == "paused" for t in s["trials"]),
          "a paused sweep's trials are paused (%s)" % [t["state"] for t in s["trials"]])
    rc, out, err = b.ctl("sweep", "wait", p, check_rc=False)
    check(rc == 4, "sweep wait of a paused sweep: exit 4 (%d)" % rc)
    rc, out, err = b.ctl("sweep", "pause", p, check_rc=False)
    check(rc == 1 and "running sweep" in err, "pausing a paused sweep is refused (%s)" % err.strip())
    b.kill9()
    b.start()
    time.sleep(0.5)
    s = b.ctl_json("sweep", "status", p)
    check(s["state"] == "paused" and all(t["state"] in ("paused", "done") for t in s["trials"]),
          "still paused after a SIGKILL (%s)" % [t["state"] for t in s["trials"]])
    check(b.ctl_json("sweep", "resume", p) == {"id": p, "state": "running"}, "sweep resume answers")
    rc, out, err = b.ctl("sweep", "wait", p, "--timeout", "600", check_rc=False)
    check(rc == 0, "the resumed sweep is done (rc %d: %s)" % (rc, err.strip()))
    jobs = [t["job"] for t in b.ctl_json("sweep", "status", p)["trials"]]
    check(b.ctl_json("sweep", "rm", p) == {"id": p, "state": "removed"}, "sweep rm answers")
    r = b.call("io.traind.SweepStatus", {"id": p})
    check(r.get("error") == "io.traind.NoSuchSweep", "a removed sweep is gone (%s)" % r.get("error"))
    for j in jobs:
        r = b.call("io.traind.Status", {"id": j})
        check(r.get("error") == "io.traind.NoSuchJob", "a removed sweep's trial job %d is gone" % j)
    check(b.sql("SELECT count(*) FROM sweeps WHERE id = ?", (p,))[0][0] == 0, "its row is gone")
    b.cleanup()

    sha_runs(rnd)


if __name__ == "__main__":
    run(main)
