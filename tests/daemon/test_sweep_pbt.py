#!/usr/bin/env python3
"""Population based training (issue 23; doc/sweeps.md, "PBT"), driven as a
user would: real traind, real SQLite, the lesson's MLP on an MNIST subset.

- Bad input is refused at start naming the field, nothing stored: a
  parameter an exploit cannot change (batch_size), a quantile above 0.5, a
  perturb factor of 1, an interval longer than the trials, a population of
  1, a PBT flag with another searcher.
- A sweep of 4 members, interval 1, 3 epochs, --keep 1, uninterrupted at
  --max-parallel 2: 2 decisions, one exploit each (the bottom quarter),
  each exploit a new job whose origin is the top member's checkpoint at the
  decision's epoch; the lineage in `sweep status --json` agrees with the
  store's rows and the jobs' origins.
- Retention: with --keep 1 every checkpoint an exploit started from is
  still there (the rest of those jobs' old epochs are pruned); the best
  member's weights are replayed from its lineage (a plain `trainctl start`
  with its parameters when it was never exploited), and an exploited
  member's (the best first) with `trainctl start --from JOB@EPOCH` and its
  last segment's parameters: bit-identical.
- The same sweep at --max-parallel 1 with traind SIGKILLed right after a
  decision is recorded (its exploit queued) and once while a decision is
  pending or being built (best effort: said whether it hit), restarted:
  the same `sweep status --json` (max_parallel aside), the same lineage
  rows, the same weights for every job; no job ran twice.
- MPI trials: a 2-member sweep with --ranks 2 (a real mpirun) ends with
  the same lineage and bit-identical weights as the same sweep with
  --shards 2 in one process, through an exploit and a continuation.
  Skipped with the reason when mpirun or traind-rank is missing.
- sweep start --config pbt.yaml, the Python client's sweep_start("pbt",
  ...), --perturb 1.5 as given, the shell completion of --searcher pbt.
- An exploit whose job cannot be built (its source checkpoint removed
  while traind was stopped, the decision still pending): the decision is
  recorded all the same, the member continuing unchanged in its own job
  with its row naming the member it was to copy; `sweep status` says why,
  the sweep runs to its end, a restart takes no other decision, and traind
  keeps serving.

Short: about 10 s here; under the sanitizers (SANITIZER) 1000 images."""
import json
import os
import shutil
import sqlite3
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import SANITIZER, TRAIND_RANK, Daemon, check, run  # noqa: E402
from test_sweeps import refused  # noqa: E402  (its counts: sweeps, trials, jobs)

TRAIN = "1000" if SANITIZER else "3000"
SHARED = ["--train-size", TRAIN, "--val-size", "500", "--epochs", "3", "--optimizer", "sgd", "--keep", "1"]
PBT = ["--searcher", "pbt", "--population", "4", "--interval", "1", "--seed", "7",
       "--param", "lr=loguniform(0.005,0.2)", "--param", "momentum=uniform(0.5,0.95)"]
LINEAGE_SQL = ("SELECT interval, trial, action, rank, ranked, metric, epoch, from_trial, from_job, job_id, "
               "prev_job, params FROM sweep_lineage ORDER BY interval, trial")
MPI_ARGS = ["--mpi-arg=--oversubscribe"]
if SANITIZER:
    MPI_ARGS += ["--mpi-arg=-x", "--mpi-arg=ASAN_OPTIONS=detect_leaks=0"]


def bad_input(d):
    lr = ["--param", "lr=loguniform(0.005,0.2)"]
    refused(d, ["--searcher", "pbt", "--population", "4", "--param", "batch_size=choice(8,16)"] + SHARED,
            "params.batch_size", "a parameter an exploit cannot change")
    refused(d, ["--searcher", "pbt", "--population", "4", "--quantile", "0.7"] + lr + SHARED, "quantile",
            "quantile 0.7")
    refused(d, ["--searcher", "pbt", "--population", "4", "--perturb", "1"] + lr + SHARED, "perturb", "perturb 1")
    refused(d, ["--searcher", "pbt", "--population", "4", "--interval", "5"] + lr + SHARED, "interval",
            "an interval longer than the trials' 3 epochs")
    refused(d, ["--searcher", "pbt", "--population", "1"] + lr + SHARED, "population", "a population of 1")
    refused(d, ["--searcher", "random", "--trials", "2", "--interval", "1"] + lr + SHARED, "interval",
            "--interval with the random searcher")


def job_shas(d, status):
    return {j: d.export_sha(j) for t in status["trials"] for j in t["jobs"]}


def reference(d):
    sid = d.ctl_json("sweep", "start", "--name", "pbt", "--max-parallel", "2", *(PBT + SHARED))["id"]
    rc, out, err = d.ctl("sweep", "wait", sid, "--timeout", "600", check_rc=False)
    check(rc == 0, "pbt sweep done (rc %d: %s)" % (rc, err.strip()))
    s = d.ctl_json("sweep", "status", sid)
    check(s["searcher"] == "pbt" and s["population"] == 4 and s["interval"] == 1 and s["max_epochs"] == 3 and
          s["decisions"] == 2 and s["decisions_total"] == 2,
          "status: pbt, population 4, interval 1, max_epochs 3, 2 of 2 decisions (%s)" % {
              k: s.get(k) for k in ("searcher", "population", "interval", "max_epochs", "decisions")})
    rows = d.sql(LINEAGE_SQL)
    check(len(rows) == 8, "8 lineage rows: 4 members x 2 decisions (%d)" % len(rows))
    exploits = [r for r in rows if r[2] == "exploit"]
    check([r[0] for r in exploits] == [1, 2], "one exploit per decision, the bottom quarter of 4 (%s)" % exploits)
    for r in rows:
        k, trial, action, rank, ranked, metric, epoch, from_trial, from_job, job, prev, params = r
        check(epoch == k and ranked == 4, "decision %d at epoch %d, 4 ranked" % (k, epoch))
        if action == "exploit":
            check(rank == 4, "the exploiting member ranked last (%d of 4)" % rank)
            top = [x for x in rows if x[0] == k and x[1] == from_trial][0]
            check(top[3] == 1, "it copies the top member (quantile 1/4 of 4: the best), rank %d" % top[3])
            st = d.status(job)
            check(st.get("origin") == "job %d epoch %d" % (from_job, epoch),
                  "the exploit's job %d starts from job %d's checkpoint at epoch %d (origin %s)" % (
                      job, from_job, epoch, st.get("origin")))
            cfg, p = st["config"], json.loads(params)
            check(abs(cfg["lr"] - p["lr"]) < 1e-12 and abs(cfg["momentum"] - p["momentum"]) < 1e-12,
                  "the exploit's job trains with the perturbed parameters (%s vs %s)" % (cfg, p))
            src = json.loads([x for x in rows if x[0] == k and x[1] == from_trial][0][11])
            ratio = p["lr"] / src["lr"]
            check(abs(ratio - 1.2) < 1e-9 or abs(ratio - 1 / 1.2) < 1e-9,
                  "lr perturbed x or / 1.2 from the source's (%.6f)" % ratio)
        else:
            check(job == prev == from_job and from_trial == trial, "a continuing member keeps its job")
    for t in s["trials"]:
        mine = [r for r in rows if r[1] == t["trial"]]
        check(len(t["lineage"]) == 2 and
              [(x["decision"], x["action"], x["from_trial"], x["from_job"], x["job"]) for x in t["lineage"]] ==
              [(r[0], r[2], r[7], r[8], r[9]) for r in mine],
              "trial %d's lineage in status --json is the store's" % t["trial"])
        check(t["job"] == mine[-1][9] and t["jobs"][-1] == t["job"] and t["epochs"] == 3 and
              t["decision"] == "completed", "trial %d: its job now, trained to 3 epochs" % t["trial"])
    rc, out, err = d.ctl("sweep", "status", sid)
    check("lineage" in out.splitlines()[1] and "best's lineage:" in out,
          "sweep status shows a lineage column and the best's lineage")
    return sid, s, rows


def retention_and_replay(d, s, rows):
    for r in rows:
        if r[2] != "exploit":
            continue
        have = [e for (e,) in d.sql("SELECT epoch FROM checkpoints WHERE job_id = ? AND kind = 'epoch'", (r[8],))]
        check(r[6] in have, "keep 1: job %d's checkpoint at epoch %d, an exploit's source, is kept (%s)" % (
            r[8], r[6], have))
    pruned = d.sql("SELECT count(*) FROM history h WHERE h.job_id IN (SELECT job_id FROM sweep_trials) AND NOT EXISTS "
                   "(SELECT 1 FROM checkpoints c WHERE c.job_id = h.job_id AND c.epoch = h.epoch)")[0][0]
    check(pruned > 0, "keep 1 pruned the members' other old epochs (%d)" % pruned)
    best = s["best"]
    segs = best["lineage"]
    check(segs[-1]["job"] == best["job"] and segs[-1]["to_epoch"] == 3 and segs[0]["from_epoch"] == 0,
          "the best's lineage ends in its job at epoch 3 and starts at 0 (%s)" % segs)
    if len(segs) == 1:   # never exploited: its weights are a plain job's with its parameters
        p = segs[0]["params"]
        job = d.start_job("--lr", repr(p["lr"]), "--momentum", repr(p["momentum"]), *SHARED)
        rc, _, err = d.wait(job, "--state", "done")
        check(rc == 0 and d.export_sha(job) == d.export_sha(best["job"]),
              "the best (never exploited) replayed with trainctl start and its parameters: bit-identical")
        d.ctl("rm", job)
    # every member's last exploit segment, the best's first among them, from its kept source checkpoint
    members = sorted(s["trials"], key=lambda t: t["trial"] != best["trial"])
    replayed = 0
    for t in members:
        ex = [x for x in t["lineage"] if x["action"] == "exploit"]
        if not ex:
            continue
        x, p = ex[-1], ex[-1]["params"]
        job = d.start_job("--from", "%d@%d" % (x["from_job"], x["epoch"]), "--lr", repr(p["lr"]),
                          "--momentum", repr(p["momentum"]), "--epochs", "3")
        rc, _, err = d.wait(job, "--state", "done")
        check(rc == 0 and d.export_sha(job) == d.export_sha(t["job"]),
              "trial %d%s: its weights replayed with trainctl start --from %d@%d and its parameters: bit-identical"
              % (t["trial"], " (the best)" if t["trial"] == best["trial"] else "", x["from_job"], x["epoch"]))
        d.ctl("rm", job)
        replayed += 1
        break
    check(replayed == 1, "an exploited member was replayed")


def killed_run(ref, ref_rows, ref_shas):
    e = Daemon(max_running=2).start()
    sid = e.ctl_json("sweep", "start", "--name", "pbt", "--max-parallel", "1", *(PBT + SHARED))["id"]
    after_decision, pending = False, False
    deadline = time.time() + 600
    while time.time() < deadline:
        n = e.sql("SELECT count(*) FROM sweep_lineage")[0][0]
        if not after_decision and n >= 4:   # decision 1 recorded: its exploit queued or training
            e.kill9()
            e.start()
            after_decision = True
            continue
        if after_decision and n == 4:
            # decision 2 pending or being built: every member's job done at epoch 2
            done2 = e.sql("SELECT count(*) FROM jobs WHERE id IN (SELECT job_id FROM sweep_trials) "
                          "AND state = 'done' AND epoch = 2")[0][0]
            if done2 == 4:
                e.kill9()
                e.start()
                pending = True
                break
        if n >= 8:
            break
        time.sleep(0.003)
    check(after_decision, "traind SIGKILLed right after decision 1 was recorded")
    print("SIGKILL while decision 2 was pending: %s" % ("hit" if pending else "missed (the window is short)"))
    rc, out, err = e.ctl("sweep", "wait", sid, "--timeout", "600", check_rc=False)
    check(rc == 0, "the SIGKILLed sweep ends (rc %d: %s)" % (rc, err.strip()))
    got = e.ctl_json("sweep", "status", sid)
    got.pop("max_parallel")
    ref = dict(ref)
    ref.pop("max_parallel")
    check(got == ref, "status --json after SIGKILLs at --max-parallel 1 equals the uninterrupted --max-parallel 2 "
          "run's:\n%s\n%s" % (json.dumps(got, sort_keys=True), json.dumps(ref, sort_keys=True)))
    check(e.sql(LINEAGE_SQL) == ref_rows, "the same lineage rows, metrics and parameters bit for bit")
    check(job_shas(e, got) == ref_shas, "every job of every member has the uninterrupted run's weights")
    check(e.sql("SELECT count(*) FROM jobs")[0][0] == 6, "no exploit made twice (4 + 2 jobs)")
    e.cleanup()


def mpi_trials():
    if not shutil.which("mpirun") or not os.path.exists(TRAIND_RANK):
        print("skip: MPI trials: no mpirun or no traind-rank (libopenmpi-dev)")
        return
    small = ["--searcher", "pbt", "--population", "2", "--interval", "1", "--seed", "3", "--max-parallel", "2",
             "--param", "lr=loguniform(0.01,0.1)", "--train-size", "1000" if SANITIZER else "2000",
             "--val-size", "500", "--epochs", "2", "--optimizer", "sgd", "--threads", "1"]
    out = {}
    d = Daemon(max_running=2, extra_args=MPI_ARGS).start()
    for how in (["--shards", "2"], ["--ranks", "2"]):
        sid = d.ctl_json("sweep", "start", *small, *how)["id"]
        rc, _, err = d.ctl("sweep", "wait", sid, "--timeout", "600", check_rc=False)
        check(rc == 0, "pbt sweep with %s done (rc %d: %s)" % (" ".join(how), rc, err.strip()))
        s = d.ctl_json("sweep", "status", sid)
        acts = [(x["action"], x["from_trial"]) for t in s["trials"] for x in t["lineage"]]
        check(sorted(a for a, _ in acts) == ["continue", "exploit"],
              "%s: one decision, one exploit and one continuation (%s)" % (" ".join(how), acts))
        for t in s["trials"]:
            for j in t["jobs"]:
                cfg = d.status(j)["config"]
                check(cfg["ranks"] == (2 if how[0] == "--ranks" else 1) and cfg["shards"] == 2,
                      "job %d runs on %s" % (j, " ".join(how)))
        out[how[0]] = (acts, [d.export_sha(j) for t in s["trials"] for j in t["jobs"]])
    check("mpirun" in d.read_log() or "rank" in d.read_log(), "the --ranks sweep ran its trials through mpirun")
    check(out["--ranks"] == out["--shards"],
          "MPI trials: the same lineage and bit-identical weights as 1 process with 2 shards, through an "
          "exploit (a new job from a 2-rank job's checkpoint) and a continuation (resume --epochs)")
    d.cleanup()


def clients(d):
    """sweep.yaml, the Python client, the shell completion."""
    path = os.path.join(d.dir, "pbt.yaml")
    with open(path, "w") as f:
        f.write("searcher: pbt\npopulation: 2\ninterval: 1\nquantile: 0.5\nperturb: 1.5\nseed: 2\n"
                "params:\n  lr: loguniform(0.01,0.1)\noptimizer: sgd\ntrain_size: 1000\nval_size: 500\nepochs: 2\n")
    sid = d.ctl_json("sweep", "start", "--config", path)["id"]
    s = d.ctl_json("sweep", "status", sid)
    check(s["searcher"] == "pbt" and s["population"] == 2 and s["quantile"] == 0.5 and s["perturb"] == 1.5 and
          s["max_epochs"] == 2, "sweep start --config pbt.yaml: the pbt keys (%s)" % {
              k: s.get(k) for k in ("searcher", "population", "quantile", "perturb", "max_epochs")})
    d.ctl("sweep", "kill", sid)
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
    import traind
    with traind.Client(d.socket) as c:
        pid = c.sweep_start("pbt", {"lr": "loguniform(0.01,0.1)"}, population=2, interval=1, quantile=0.5,
                            perturb=1.5, seed=2, optimizer="sgd", train_size=1000, val_size=500, epochs=2)
        st = c.sweep_wait(pid, timeout=600)
        acts = sorted(x["action"] for t in st["trials"] for x in t["lineage"])
        check(st["state"] == "done" and acts == ["continue", "exploit"] and st["best"]["lineage"],
              "Python: sweep_start('pbt', population=2, ...) runs to done with a lineage (%s)" % acts)
    src = [t for t in st["trials"] if t["lineage"][0]["action"] == "continue"][0]["initial_params"]["lr"]
    mine = [t for t in st["trials"] if t["lineage"][0]["action"] == "exploit"][0]["lineage"][0]["params"]["lr"]
    check(abs(mine / src - 1.5) < 1e-9 or abs(mine / src - 1 / 1.5) < 1e-9,
          "--perturb 1.5: the exploit's lr is its source's x or / 1.5 (%.6f)" % (mine / src))
    out = d.ctl("__complete", "--", "sweep", "start", "--searcher", "p")[1]
    check(out.startswith("pbt\t"), "completion: sweep start --searcher p -> pbt (%r)" % out)
    out = d.ctl("__complete", "--", "sweep", "start", "--searcher", "pbt", "--pop")[1]
    check(out.startswith("--population\t"), "completion: --pop -> --population (%r)" % out)


def unbuildable_exploit():
    """Two identical members (lr=choice(0.05): the same bits, a tie, so trial 0
    ranks first and trial 1 is to copy its checkpoint at epoch 1). A plain
    job holds the one running slot while trial 1's job is paused in the
    queue; trial 0 trains to epoch 1 and waits for it. traind is stopped,
    trial 0's epoch-1 checkpoint removed, traind started, trial 1 resumed:
    decision 1 cannot build the exploit."""
    d = Daemon(max_running=1).start()
    blocker = d.start_job("--train-size", TRAIN, "--epochs", "200", "--optimizer", "sgd")
    small = ["--searcher", "pbt", "--population", "2", "--interval", "1", "--seed", "5", "--max-parallel", "2",
             "--param", "lr=choice(0.05)", "--train-size", "1000", "--val-size", "500", "--epochs", "2",
             "--optimizer", "sgd"]
    sid = d.ctl_json("sweep", "start", "--name", "broken", *small)["id"]
    jobs = d.ctl_json("sweep", "status", sid)["trials"]
    j0, j1 = jobs[0]["job"], jobs[1]["job"]
    d.ctl("pause", j1)
    d.ctl("kill", blocker)
    rc, _, err = d.wait(j0, "--state", "done", timeout=300)
    check(rc == 0 and d.status(j0)["epoch"] == 1, "trial 0 trained to the first boundary (%s)" % err.strip())
    check(d.sql("SELECT count(*) FROM sweep_lineage")[0][0] == 0, "no decision while trial 1 has not reported")
    d.stop()
    con = sqlite3.connect(d.db, timeout=10)
    with con:
        n = con.execute("DELETE FROM checkpoints WHERE job_id = ? AND epoch = 1", (j0,)).rowcount
    con.close()
    check(n >= 1, "trial 0's checkpoint at epoch 1, the exploit's source, removed (%d rows)" % n)
    d.start()
    d.ctl("resume", j1)
    rc, out, err = d.ctl("sweep", "wait", sid, "--timeout", "120", check_rc=False)
    check(rc == 0, "the sweep ends although an exploit could not be built (rc %d: %s)" % (rc, err.strip()))
    rows = d.sql(LINEAGE_SQL)
    check([(r[0], r[1], r[2]) for r in rows] == [(1, 0, "continue"), (1, 1, "continue")],
          "decision 1 recorded: both members continue (%s)" % [(r[0], r[1], r[2]) for r in rows])
    r1 = rows[1]
    check(r1[3] == 2 and r1[7] == 0 and r1[8] == j0 and r1[9] == j1 and r1[10] == j1,
          "trial 1 (rank %d) goes on in its own job %d; its row names trial %d's job %d it was to copy" % (
              r1[3], r1[9], r1[7], r1[8]))
    check(json.loads(r1[11]) == {"lr": 0.05}, "with its own parameters (%s)" % r1[11])
    check("cannot be built" in d.read_log(), "traind's log says why the exploit was not built")
    s = d.ctl_json("sweep", "status", sid)
    t1 = s["trials"][1]
    check(t1["jobs"] == [j1] and t1["epochs"] == 2 and [x["action"] for x in t1["lineage"]] == ["continue"],
          "trial 1 trained on to epoch 2 in its own job (%s)" % {k: t1.get(k) for k in ("jobs", "epochs")})
    x = t1["lineage"][0]
    check(x["exploit_failed"] is True and x["from_trial"] == 0 and x["from_job"] == j0 and
          s["trials"][0]["lineage"][0]["exploit_failed"] is False,
          "sweep status --json: trial 1's decision says its exploit of trial 0's job could not be built (%s)" % x)
    d.stop()
    d.start()
    time.sleep(0.5)
    check(d.sql(LINEAGE_SQL) == rows and d.sql("SELECT count(*) FROM jobs")[0][0] == 3,
          "after a restart, the same decision and no exploit job made (3 jobs)")
    rc, out, err = d.ctl("sweep", "list", check_rc=False)
    check(rc == 0 and "broken" in out and d.status(j1)["state"] == "done",
          "traind keeps serving: sweep list, status (rc %d %s)" % (rc, err.strip()))
    d.cleanup()


def main():
    unbuildable_exploit()
    d = Daemon(max_running=2).start()
    bad_input(d)
    sid, ref, rows = reference(d)
    ref_shas = job_shas(d, ref)
    retention_and_replay(d, ref, rows)
    clients(d)
    d.cleanup()
    killed_run(ref, rows, ref_shas)
    mpi_trials()


if __name__ == "__main__":
    run(main)
