#!/usr/bin/env python3
"""io.traind.Counters and `trainctl counters`: traind's own counters since
it started. A fresh traind counts nothing; a 2-epoch job commits 2 epochs
and puts 2 observations in the commit latency histogram (cumulative counts,
as Prometheus' "le"); each error reply (an unknown job, a malformed message,
an unknown method, a bad parameter) counts one client error and a good call
none; a job whose dataset vanishes counts one failed job; a restart starts
again at zero."""
import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import DATA, Daemon, Varlink, check, run  # noqa: E402

SMALL = ["--train-size", "2000", "--val-size", "500", "--epochs", "2"]
SLOW = ["--train-size", "20000", "--batch-size", "4", "--val-size", "500", "--epochs", "2"]
BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]


def counters(d):
    r = d.call("io.traind.Counters")
    if "error" in r:
        raise RuntimeError("Counters: %s" % r)
    return r["parameters"]


def check_shape(c, what):
    h = c.get("commit_seconds", {})
    bg = c.get("background", {})
    ok = (set(c) == {"epochs_committed", "jobs_failed", "client_errors", "commit_seconds", "background"} and
          set(h) == {"buckets", "counts", "sum", "count"} and
          set(bg) == {"waiting", "running", "refused"} and all(isinstance(v, int) for v in bg.values()) and
          all(isinstance(c[k], int) for k in ("epochs_committed", "jobs_failed", "client_errors")) and
          h["buckets"] == BUCKETS and len(h["counts"]) == len(BUCKETS) and
          all(isinstance(n, int) for n in h["counts"]) and isinstance(h["count"], int) and
          isinstance(h["sum"], (int, float)))
    check(ok, "%s: Counters has the declared shape (%s)" % (what, json.dumps(c)[:300]))
    counts = h.get("counts", [])
    check(all(a <= b for a, b in zip(counts, counts[1:])) and (not counts or counts[-1] <= h.get("count", -1)),
          "%s: the bucket counts are cumulative and within count (%s, count %s)" % (what, counts, h.get("count")))


def link_dataset(src, dst):
    os.makedirs(dst)
    for name in os.listdir(src):
        try:
            os.link(os.path.join(src, name), os.path.join(dst, name))
        except OSError:
            shutil.copy(os.path.join(src, name), os.path.join(dst, name))


def main():
    data = tempfile.mkdtemp(prefix="traind-counters-data-")
    try:
        body(data)
    finally:
        shutil.rmtree(data, ignore_errors=True)


def body(data):
    link_dataset(os.path.join(DATA, "mnist"), os.path.join(data, "mnist"))
    d = Daemon(data_dir=data).start()
    c0 = counters(d)
    check_shape(c0, "fresh traind")
    check(c0["epochs_committed"] == 0 and c0["jobs_failed"] == 0 and c0["client_errors"] == 0 and
          c0["commit_seconds"]["count"] == 0 and c0["commit_seconds"]["counts"][-1] == 0,
          "a fresh traind has counted nothing (%s)" % json.dumps(c0))

    # ---- a small job: 2 epochs committed, 2 commit latencies ----
    job = d.start_job(*SMALL)
    rc, out, err = d.wait(job, "--state", "done")
    check(rc == 0, "the small job finishes (%d %s)" % (rc, err.strip()))
    c1 = counters(d)
    check_shape(c1, "after the job")
    h = c1["commit_seconds"]
    check(c1["epochs_committed"] == 2, "epochs_committed is 2 after a 2-epoch job (%d)" % c1["epochs_committed"])
    check(h["count"] == 2 and h["counts"][-1] == 2,
          "the histogram holds the 2 commits, all under 10 s (%s, count %d)" % (h["counts"], h["count"]))
    check(0 < h["sum"] < 20, "the commit latencies sum to a plausible time (%.4f s)" % h["sum"])
    logged = [float(x) / 1e3 for x in
              __import__("re").findall(r"durable after ([0-9.]+) ms", d.read_log())]
    check(len(logged) == 2 and abs(sum(logged) - h["sum"]) < 0.001 * len(logged) + 1e-6,
          "the sum is the log's 'durable after' times (%s vs %.4f)" % (logged, h["sum"]))
    for i, b in enumerate(BUCKETS):
        want = sum(1 for x in logged if x <= b + 5e-5)
        low = sum(1 for x in logged if x <= b - 5e-5)
        if not check(low <= h["counts"][i] <= want, "bucket le=%g counts the commits at or under it (%d)"
                     % (b, h["counts"][i])):
            break
    check(c1["client_errors"] == 0, "no error replies yet (%d)" % c1["client_errors"])

    # ---- errors sent to clients: one each; good calls count none ----
    d.status(job)
    rc, out, err = d.ctl("status", "999", check_rc=False)
    check(rc == 1 and "no such job 999" in err, "status of an unknown job fails (%d %s)" % (rc, err.strip()))
    check(counters(d)["client_errors"] == 1, "an unknown job's error reply counts 1 (%d)"
          % counters(d)["client_errors"])
    v = Varlink(d.socket)
    v.send_raw(b"{not json\0")
    r = v.recv()
    check(r.get("error") == "io.traind.ProtocolError", "malformed JSON gets a ProtocolError (%s)" % r)
    r = v.call("io.traind.NoSuchMethod")
    check(r.get("error") == "org.varlink.service.MethodNotFound", "an unknown method: MethodNotFound (%s)" % r)
    r = v.call("io.traind.Counters", {"bogus": 1})
    check(r.get("error") == "org.varlink.service.InvalidParameter" and r["parameters"].get("parameter") == "bogus",
          "Counters with an unknown parameter: InvalidParameter naming it (%s)" % r)
    v.close()
    c2 = counters(d)
    check(c2["client_errors"] == 4, "4 error replies in all (%d)" % c2["client_errors"])
    check(c2["epochs_committed"] == 2 and c2["jobs_failed"] == 0, "the other counters did not move")

    # ---- a failed job: its dataset vanishes while it is paused ----
    link_dataset(os.path.join(DATA, "mnist"), os.path.join(data, "doomed"))
    failed = d.start_job("--dataset", "doomed", *SLOW)
    d.wait_running_at(failed, epoch=0, min_step=5)
    d.ctl("pause", failed)
    shutil.rmtree(os.path.join(data, "doomed"))
    d.ctl("resume", failed)
    rc, out, err = d.wait(failed, "--state", "failed")
    check(rc == 0, "the job whose dataset vanished fails")
    c3 = counters(d)
    check(c3["jobs_failed"] == 1, "jobs_failed is 1 (%d)" % c3["jobs_failed"])
    check(c3["epochs_committed"] == 2, "a pause's position checkpoint is not an epoch commit (%d)"
          % c3["epochs_committed"])

    # ---- trainctl counters ----
    j = d.ctl_json("counters")
    check(j == counters(d), "trainctl counters --json prints the reply (%s)" % json.dumps(j)[:200])
    rc, out, err = d.ctl("counters")
    lines = out.splitlines()
    check(rc == 0 and "epochs_committed   2" in lines and "jobs_failed        1" in lines and
          any(ln.startswith("client_errors") for ln in lines) and
          any(ln.split() == ["le", "+Inf", "2"] for ln in lines) and
          any(ln.startswith("commit_seconds     2 commits") for ln in lines),
          "trainctl counters prints them as text:\n%s" % out)
    rc, out, err = d.ctl("counters", "3", check_rc=False)
    check(rc == 2 and "unexpected argument" in err, "counters takes no JOB (%d %s)" % (rc, err.strip()))

    # ---- in memory: a restart begins at zero ----
    d.stop()
    d.start()
    c4 = counters(d)
    check(c4["epochs_committed"] == 0 and c4["jobs_failed"] == 0 and c4["client_errors"] == 0 and
          c4["commit_seconds"]["count"] == 0, "after a restart the counters start at zero (%s)" % json.dumps(c4))


if __name__ == "__main__":
    run(main)
