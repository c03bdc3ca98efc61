#!/usr/bin/env python3
"""trainctl rm (io.traind.Delete) and list --state.

Removing done, killed, paused and failed jobs takes their rows out of the
SQLite file (jobs, checkpoints, history); a running or queued job is refused
without --force and killed first with it; waiters on a removed job hear
"job N was removed"; several JOBs at once are answered one by one; ids are
never reused; a restart (also right after a SIGKILL) does not bring a removed
job back; an unrelated job trains on, bit-identical to a reference. Then 2000
jobs created and removed: the file shrinks back near its size before them and
list is as fast as before (the figures are printed)."""
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import DATA, SANITIZER, TRAINCTL, Daemon, Varlink, check, run  # noqa: E402

TINY = ["--train-size", "64", "--val-size", "64", "--epochs", "1", "--hidden", "2", "--threads", "1"]
SMALL = ["--train-size", "2000", "--val-size", "1000", "--epochs", "2"]
# Long enough to be caught running (about 10 s alone), short per step.
# (under the sanitizers, several times slower a step, 8000 samples are as long)
SLOW = ["--train-size", "8000" if SANITIZER else "20000", "--batch-size", "4", "--val-size", "500",
        "--epochs", "2"]
# The scale check's jobs. Under the sanitizers 500 (the release tree runs
# 2000): List's cost with them is still hundreds of times its cost after rm.
NJOBS = 500 if SANITIZER else 2000


def link_dataset(src, dst):
    """A copy of dataset directory src at dst, by hard links where possible."""
    os.makedirs(dst)
    for name in os.listdir(src):
        try:
            os.link(os.path.join(src, name), os.path.join(dst, name))
        except OSError:
            shutil.copy(os.path.join(src, name), os.path.join(dst, name))


def rows(d, job):
    """(jobs, checkpoints, history) rows of the job in the SQLite file."""
    return (d.sql("SELECT count(*) FROM jobs WHERE id = ?", (job,))[0][0],
            d.sql("SELECT count(*) FROM checkpoints WHERE job_id = ?", (job,))[0][0],
            d.sql("SELECT count(*) FROM history WHERE job_id = ?", (job,))[0][0])


def list_ids(d, *states):
    params = {"states": list(states)} if states else {}
    r = d.call("io.traind.List", params)
    if "error" in r:
        raise RuntimeError("List: %s" % r)
    return [int(j["id"]) for j in r["parameters"]["jobs"]]


def check_gone(d, job, what):
    rc, out, err = d.ctl("status", job, check_rc=False)
    check(rc == 1 and "no such job %s" % job in err, "%s: status says no such job (%d, %s)" % (
        what, rc, err.strip()))
    check(rows(d, job) == (0, 0, 0), "%s: no jobs/checkpoints/history rows left in the file (%s)" % (
        what, rows(d, job)))
    check(job not in list_ids(d), "%s: not in list" % what)


def check_stopped(d):
    """done, killed, paused, failed: each removed with its rows."""
    done = d.start_job(*SMALL)
    d.wait(done, "--state", "done")
    killed = d.start_job(*SLOW)
    d.wait_running_at(killed, epoch=0, min_step=20)
    d.ctl("kill", killed)
    paused = d.start_job(*SLOW)
    d.wait_running_at(paused, epoch=0, min_step=20)
    d.ctl("pause", paused)
    # failed: its dataset disappears while it is paused (a new job's first run
    # trains on the dataset its Start check loaded; a resumed one loads it again)
    link_dataset(os.path.join(DATA, "mnist"), os.path.join(d.data_dir, "doomed"))
    failed = d.start_job("--dataset", "doomed", *SLOW)
    d.wait_running_at(failed, epoch=0, min_step=5)
    d.ctl("pause", failed)
    shutil.rmtree(os.path.join(d.data_dir, "doomed"))
    d.ctl("resume", failed)
    d.wait(failed, "--state", "failed")
    states = {j: d.job(j)["state"] for j in (done, killed, paused, failed)}
    check(states == {done: "done", killed: "killed", paused: "paused", failed: "failed"},
          "jobs in each stopped state (%s)" % states)
    check(rows(d, done)[1] > 0 and rows(d, done)[2] == 2 and rows(d, paused)[1] > 0,
          "they have checkpoints and history in the file (%s, %s)" % (rows(d, done), rows(d, paused)))

    for job in (done, killed, paused, failed):
        state = states[job]
        rc, out, err = d.ctl("rm", job, check_rc=False)
        check(rc == 0 and out.strip() == "job %s: removed (was %s)" % (job, state) and not err,
              "rm of a %s job (rc %d, %r, %r)" % (state, rc, out.strip(), err.strip()))
        check_gone(d, job, "removed %s job" % state)
    rc, out, err = d.ctl("rm", done, check_rc=False)
    check(rc == 1 and "no such job %s" % done in err, "rm of a removed job: no such job (%d, %s)" % (
        rc, err.strip()))
    blockers = []   # two killed jobs around a removed one
    for _ in range(2):
        b = d.start_job(*SLOW)
        d.wait_running_at(b, epoch=0, min_step=1)
        d.ctl("kill", b)
        d.wait(b, "--state", "killed")
        blockers.append(b)
    rc, out, err = d.ctl("rm", blockers[0], done, blockers[1], "--json", check_rc=False)
    doc = json.loads(out) if out.strip() else None
    check(rc == 1 and doc == [{"id": blockers[0], "removed": True, "state": "killed"},
                              {"id": done, "removed": False, "error": "io.traind.NoSuchJob",
                               "message": "no such job %d" % done},
                              {"id": blockers[1], "removed": True, "state": "killed"}]
          and err.strip() == "trainctl: no such job %d" % done,
          "rm --json: one array, an object per job, the refusal also on stderr (%d, %s, %s)" % (
              rc, out.strip(), err.strip()))
    check(d.sql("SELECT count(*) FROM jobs")[0][0] == 1, "only the reference job is left in the file")
    return done


def spawn_ctl(d, *args):
    return subprocess.Popen([TRAINCTL, "--socket", d.socket] + [str(a) for a in args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def check_refused_and_forced(d, ref_hash):
    """Running and queued jobs are refused, then removed with --force; their
    waiters end; an unrelated job trains on, bit-identical."""
    spare = d.start_job(*TINY)
    d.wait(spare, "--state", "done")
    running = d.start_job(*SLOW)
    d.wait_running_at(running, epoch=0, min_step=20)
    # The second slot: a slow job, so that the queued ones stay queued
    # until the removals (a SMALL job there finished in a few seconds, and
    # the queued job took its slot and finished before rm --force reached it).
    blocker = d.start_job(*SLOW)
    other = d.start_job(*SMALL)          # trains once the removals free a slot
    queued = d.start_job(*SMALL)
    queued2 = d.start_job(*SMALL)
    check(d.job(queued)["state"] == "queued" and d.job(other)["state"] in ("queued", "running"),
          "a queued job behind two slots (%s)" % d.job(queued)["state"])
    for job, state in ((running, "running"), (queued, "queued")):
        rc, out, err = d.ctl("rm", job, check_rc=False)
        check(rc == 1 and "job %s is %s" % (job, state) in err and "--force" in err and not out,
              "rm of a %s job without --force is refused, naming the job, its state and --force "
              "(rc %d, %s)" % (state, rc, err.strip()))
        check(rows(d, job)[0] == 1 and d.job(job)["state"] == state,
              "the refused %s job is untouched (%s)" % (state, d.job(job)["state"]))

    # Several at once: one unknown, a done job removed, the running one refused.
    rc, out, err = d.ctl("rm", 424242, spare, running, check_rc=False)
    check(rc == 1 and "no such job 424242" in err and "job %s is running" % running in err and
          len(err.strip().splitlines()) == 2 and out == "job %s: removed (was done)\n" % spare,
          "rm of several: each answered on its own line, exit 1 (%d, %r, %r)" % (rc, out, err))
    check(rows(d, spare) == (0, 0, 0) and rows(d, running)[0] == 1,
          "rm of several: the done one is gone, the running one is not")

    waiters = [spawn_ctl(d, "wait", running), spawn_ctl(d, "watch", running),
               spawn_ctl(d, "wait", queued, "--state", "done")]
    time.sleep(0.3)
    killed_before = d.read_log().count("job %s: killed" % running)
    # The queued one first: removing the running one frees its slot for the
    # next queued job, which would then be running.
    rc, out, err = d.ctl("rm", "--force", queued, running, check_rc=False)
    check(rc == 0 and out.splitlines() == ["job %s: removed (was queued)" % queued,
                                           "job %s: removed (was running)" % running],
          "rm --force removes a running and a queued job (%d, %r, %r)" % (rc, out, err))
    check(d.read_log().count("job %s: killed" % running) == killed_before + 1,
          "the running one was killed first (the worker stopped)")
    for p, what in zip(waiters, ("wait", "watch", "wait (queued)")):
        try:
            out, err = p.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
        check(p.returncode == 1 and "was removed" in err,
              "%s on a removed job ends with \"was removed\" (rc %s, %s)" % (what, p.returncode,
                                                                          err.strip()))
    for job in (running, queued):
        check_gone(d, job, "forced removal")
    check(d.job(queued2)["state"] in ("queued", "running", "done"), "the job queued after them goes on")

    # list --state
    rc, out, err = d.ctl("list", "--state", "done,killed", "--json")
    listed = {j["state"] for j in json.loads(out)}
    check(listed <= {"done", "killed"} and "done" in listed, "list --state done,killed (%s)" % listed)
    rc, out, err = d.ctl("list", "--state", "bogus", check_rc=False)
    check(rc == 2 and "unknown state" in err, "list --state bogus is a usage error (%d)" % rc)

    rc, out, err = d.wait(other, "--state", "done")
    check(rc == 0, "the unrelated job finished (%s)" % err.strip())
    check(d.export_sha(other) == ref_hash,
          "the unrelated job, trained while others were removed, is bit-identical to the reference")
    d.wait(queued2, "--state", "done")
    d.wait(blocker, "--state", "done")
    return other


def check_commit_race(d):
    """--force on jobs that commit an epoch every few milliseconds, so that
    a commit is in flight when the kill comes: nothing of them comes back,
    neither a moment later nor after a restart."""
    fast = ["--train-size", "64", "--val-size", "64", "--epochs", "100000", "--hidden", "2",
            "--threads", "1", "--keep", "all"]
    gone = []
    for _ in range(6):
        job = d.start_job(*fast)
        d.ctl("wait", job, "--epoch", "3")
        rc, out, err = d.ctl("rm", "--force", job, check_rc=False)
        check(rc == 0 and out.strip() == "job %s: removed (was running)" % job,
              "rm --force of a job committing epochs (%d, %s)" % (rc, err.strip()))
        check(rows(d, job) == (0, 0, 0), "right after: no rows of it (%s)" % (rows(d, job),))
        gone.append(job)
    time.sleep(0.5)
    check(all(rows(d, j) == (0, 0, 0) for j in gone), "no commit in flight wrote rows for them later")
    d.stop()
    d.start()
    check(all(rows(d, j) == (0, 0, 0) for j in gone) and not set(gone) & set(list_ids(d)),
          "after a restart they stay gone")


def check_bad_input(d, ref):
    """Delete's and List's parameters are checked before anything happens."""
    cases = [
        ("io.traind.Delete", {}, "id"),
        ("io.traind.Delete", {"id": "1"}, "id"),
        ("io.traind.Delete", {"id": 0}, "id"),
        ("io.traind.Delete", {"id": ref, "force": 1}, "force"),
        ("io.traind.Delete", {"id": ref, "forse": True}, "forse"),
        ("io.traind.List", {"states": "done"}, "states"),
        ("io.traind.List", {"states": []}, "states"),
        ("io.traind.List", {"states": ["done", "gone"]}, "states"),
        ("io.traind.List", {"state": ["done"]}, "state"),
    ]
    for method, params, param in cases:
        r = d.call(method, params)
        got = r.get("error", ""), (r.get("parameters") or {}).get("parameter")
        check(got[0].endswith("InvalidParameter") and got[1] == param,
              "%s %s: InvalidParameter %s (%s)" % (method, json.dumps(params), param, got))
    check(rows(d, ref)[0] == 1, "and the job is still there")
    r = d.call("io.traind.Delete", {"id": 987654})
    check(r.get("error") == "io.traind.NoSuchJob" and r["parameters"] == {"id": 987654},
          "Delete of an unknown id: NoSuchJob (%s)" % r)
    r = d.call("io.traind.List", {"states": ["done"]})
    jobs = r.get("parameters", {}).get("jobs", [])
    check("error" not in r and set(r["parameters"]) == {"jobs"} and ref in [j["id"] for j in jobs] and
          all(j["state"] == "done" and set(j) == set(d.job(ref)) for j in jobs if j["id"] == ref) and
          all(j["state"] == "done" for j in jobs), "List with states keeps its reply's shape")


def check_ids_and_restart(d, ref, other, ref_hash):
    """The newest job removed: its id is not given again, not even after a
    restart; a removal survives SIGKILL right after its reply."""
    top = d.start_job(*TINY)
    d.wait(top, "--state", "done")
    d.ctl("rm", top)
    nxt = d.start_job(*TINY)
    check(nxt == top + 1, "after removing the newest job (%d), the next id is %d, not reused" % (top, nxt))
    d.wait(nxt, "--state", "done")
    d.ctl("rm", nxt)
    d.kill9()                                # right after the reply: it is durable
    d.start()
    check(nxt not in list_ids(d) and rows(d, nxt) == (0, 0, 0),
          "a SIGKILL right after rm does not bring the job back")
    again = d.start_job(*TINY)
    check(again == nxt + 1, "after a restart ids go on above every removed one (%d)" % again)
    d.wait(again, "--state", "done")
    d.stop()
    d.start()
    ids = list_ids(d)
    check(top not in ids and nxt not in ids and ref in ids and other in ids,
          "after a restart the removed jobs stay gone and the others are there (%s)" % ids)
    check(d.export_sha(ref) == ref_hash and d.export_sha(other) == ref_hash,
          "the jobs left alone still export the reference bits")
    rc, out, err = d.ctl("history", ref, "--json")
    check(len(json.loads(out)) == 2, "the reference job keeps its history")
    integrity = d.sql("PRAGMA integrity_check")[0][0]
    check(integrity == "ok", "integrity_check after all the removals: %s" % integrity)


def file_sizes(d):
    def size(p):
        try:
            return os.path.getsize(p)
        except OSError:
            return 0
    return size(d.db), size(d.db + "-wal")


def list_latency(d, n=40):
    """Median seconds of a raw List round trip, and of `trainctl list`."""
    vl = Varlink(d.socket, timeout=60)
    raw = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = vl.call("io.traind.List")
        raw.append(time.perf_counter() - t0)
        assert "error" not in r, r
    vl.close()
    ctl = []
    for _ in range(5):
        t0 = time.perf_counter()
        d.ctl("list")
        ctl.append(time.perf_counter() - t0)
    return statistics.median(raw), statistics.median(ctl)


def start_many(d, n, args):
    """n Start calls pipelined on one connection; their ids."""
    cfg = {"train_size": 64, "val_size": 64, "epochs": 1, "hidden": [2], "threads": 1}
    assert args == TINY
    vl = Varlink(d.socket, timeout=300)
    ids = []
    batch = 100
    for first in range(0, n, batch):
        k = min(batch, n - first)
        msg = json.dumps({"method": "io.traind.Start", "parameters": {"config": cfg, "keep": 1}})
        vl.send_raw((msg.encode() + b"\0") * k)
        for _ in range(k):
            r = vl.recv()
            if "error" in r:
                raise RuntimeError("Start: %s" % r)
            ids.append(int(r["parameters"]["id"]))
    vl.close()
    return ids


def check_many(workdir):
    """NJOBS jobs created (each trains one tiny epoch: a checkpoint and a
    history row) and removed: the file and list come back to where they were."""
    d = Daemon(workdir=os.path.join(workdir, "many"), max_running=3)
    os.makedirs(d.dir)
    d.start()
    keep = d.start_job(*TINY)               # one job that stays
    d.wait(keep, "--state", "done")
    d.stop()
    base_db, _ = file_sizes(d)              # the WAL is merged and gone after a clean stop
    d.start()
    base_raw, base_ctl = list_latency(d)

    # A long job holds the dataset in memory meanwhile, so that neither the
    # Start calls nor the tiny jobs load it again each (dscache frees a
    # dataset when its last job lets go).
    anchor = d.start_job("--train-size", "50000", "--batch-size", "4", "--epochs", "100", "--threads", "1")
    d.wait_running_at(anchor, epoch=0, min_step=1)
    t0 = time.time()
    ids = start_many(d, NJOBS, TINY)
    created = time.time() - t0
    deadline = time.time() + 900
    while len(list_ids(d, "done")) < NJOBS + 1:
        if time.time() > deadline:
            raise TimeoutError("the %d jobs did not finish" % NJOBS)
        bad = list_ids(d, "failed", "killed", "paused")
        if bad:
            raise RuntimeError("jobs stopped otherwise: %s" % bad[:5])
        time.sleep(0.5)
    trained = time.time() - t0
    d.ctl("kill", anchor)
    ids.append(anchor)
    peak_db, peak_wal = file_sizes(d)
    full_raw, full_ctl = list_latency(d, n=10)
    stored = d.sql("SELECT count(*), coalesce(sum(size), 0) FROM checkpoints")[0]
    nhist = d.sql("SELECT count(*) FROM history")[0][0]

    t0 = time.time()
    rc, out, err = d.ctl("rm", *ids, check_rc=False, timeout=900)
    removed = time.time() - t0
    check(rc == 0 and len(out.splitlines()) == len(ids) and not err,
          "rm of %d jobs in one call (rc %d, %d lines, %s)" % (len(ids), rc, len(out.splitlines()),
                                                                err.strip()[:200]))
    live_db, live_wal = file_sizes(d)
    after_raw, after_ctl = list_latency(d)
    left = d.sql("SELECT (SELECT count(*) FROM jobs), (SELECT count(*) FROM checkpoints), "
                 "(SELECT count(*) FROM history)")[0]
    check(tuple(left) == (1, 1, 1), "only the kept job's rows are left (jobs, checkpoints, history: %s)"
          % (tuple(left),))
    check(list_ids(d) == [keep], "list shows only the kept job")
    d.stop()
    end_db, _ = file_sizes(d)
    d.start()
    check(list_ids(d) == [keep] and d.start_job(*TINY) == max(ids) + 1,
          "after a restart: the kept job only, and ids go on above the removed ones")

    kib = lambda b: "%.0f KiB" % (b / 1024.0)  # noqa: E731
    print("figures: %d jobs (%d checkpoints, %s of blobs, %d history rows) created in %.1f s, "
          "trained in %.1f s, removed in %.1f s (%.1f ms per job)" % (
              NJOBS, stored[0], kib(stored[1]), nhist, created, trained, removed,
              removed * 1e3 / NJOBS))
    print("figures: file before %s; with the jobs %s + WAL %s; right after rm %s + WAL %s; "
          "after a restart %s" % (kib(base_db), kib(peak_db), kib(peak_wal), kib(live_db), kib(live_wal),
                                  kib(end_db)))
    print("figures: List round trip (median) before %.2f ms, with %d jobs %.2f ms, after rm %.2f ms; "
          "trainctl list %.1f / %.1f / %.1f ms" % (
              base_raw * 1e3, NJOBS + 1, full_raw * 1e3, after_raw * 1e3, base_ctl * 1e3,
              full_ctl * 1e3, after_ctl * 1e3))
    check(peak_db + peak_wal > base_db + stored[1] * 0.9,
          "the jobs' checkpoints were in the file (%s > %s)" % (kib(peak_db + peak_wal), kib(base_db)))
    check(end_db <= base_db + 64 * 1024,
          "the file shrinks back near its size before the jobs (%s vs %s)" % (kib(end_db), kib(base_db)))
    check(live_db <= base_db + 256 * 1024 or live_db < peak_db / 4,
          "already while traind runs the file is back down (%s, peak %s)" % (kib(live_db), kib(peak_db)))
    check(after_raw < full_raw / 10, "List after rm costs nothing for the removed jobs (%.2f ms, with "
          "them %.2f ms)" % (after_raw * 1e3, full_raw * 1e3))
    if not SANITIZER:   # a sanitizer's allocator and slowdown make timings noise
        check(after_raw <= max(2 * base_raw, base_raw + 0.002),
              "List is as fast after rm as before (%.2f ms vs %.2f ms)" % (after_raw * 1e3, base_raw * 1e3))
        check(after_ctl <= max(2 * base_ctl, base_ctl + 0.02),
              "trainctl list is as fast after rm as before (%.1f ms vs %.1f ms)" % (after_ctl * 1e3,
                                                                                   base_ctl * 1e3))


def main():
    work = tempfile.mkdtemp(prefix="traind-rm-")
    try:
        body(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def body(work):
    data = os.path.join(work, "data")
    os.makedirs(data)
    link_dataset(os.path.join(DATA, "mnist"), os.path.join(data, "mnist"))
    d = Daemon(workdir=os.path.join(work, "d"), max_running=2, data_dir=data)
    os.makedirs(d.dir)
    d.start()
    ref = d.start_job(*SMALL)
    d.wait(ref, "--state", "done")
    ref_hash = d.export_sha(ref)

    check_stopped(d)
    other = check_refused_and_forced(d, ref_hash)
    check_commit_race(d)
    check_bad_input(d, ref)
    check_ids_and_restart(d, ref, other, ref_hash)
    check(d.alive(), "traind kept running through all of it")
    d.stop()
    check_many(work)


run(main)
