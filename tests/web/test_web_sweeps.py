#!/usr/bin/env python3
"""The sweep page (/sweeps/N, issue 23) in a real headless Chromium against a
real traind and traind-web: for a running sweep (the table with every trial,
then live, without a reload, until it is done with a line per trial in the
parallel coordinates, a scatter per parameter and a curve per trial) and
for a finished one (sorted by the metric both ways and by a parameter);
a finished pbt sweep's lineage column and its best's lineage.
Also /api/sweeps and /api/sweeps/N over HTTP, and a bad sweep id refused.

Under the sanitizers only the C side runs (traind-web and traind): the page
and the requests its script makes (/api/sweeps/N while the sweep waits and
until it is done, each trial's /api/jobs/N/history), over HTTP without
Chromium; the page's JavaScript (the pbt lineage column too) is the same in
both trees and the release tree's run checks it, and daemon-sweep-pbt runs
pbt itself under the sanitizers."""
import http.client
import json
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import harness  # noqa: E402
from harness import Daemon, check, run  # noqa: E402

SRC = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PLAYWRIGHT = os.path.join(SRC, "web", "node_modules", "playwright-core")
SHOTS = os.path.join(harness.BUILD, "web-artifacts")
SHARED = ["--train-size", "2000", "--val-size", "1000", "--hidden", "32", "--epochs", "3"]


class Web:
    def __init__(self, d):
        self.dir = tempfile.mkdtemp(prefix="traind-web-sweeps-")
        self.proc = subprocess.Popen([harness.TRAIND_WEB, "--socket", d.socket, "--listen", "127.0.0.1:0",
                                      "--token-file", os.path.join(self.dir, "token"), "--static-dir",
                                      os.path.join(harness.BUILD, "web")], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL)
        m = re.search(r"(http://127\.0\.0\.1:(\d+))/\?token=([0-9a-f]{64})", self.proc.stdout.readline().decode())
        self.url, self.port, self.token = m.group(1), int(m.group(2)), m.group(3)

    def get(self, path):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        c.request("GET", path, headers={"Authorization": "Bearer " + self.token})
        r = c.getresponse()
        return r.status, r.read()

    def stop(self):
        self.proc.terminate()
        self.proc.wait(30)


def page(web, sweep, trials, params, step, after_first=None):
    """Run sweep-page.cjs; after_first() runs once the page has been seen
    the first time (the test lets a held-back sweep go on)."""
    os.makedirs(SHOTS, exist_ok=True)
    env = dict(os.environ, TRAIND_WEB_URL=web.url, TRAIND_WEB_TOKEN=web.token, TRAIND_WEB_SWEEP=str(sweep),
               TRAIND_WEB_TRIALS=str(trials), TRAIND_WEB_PARAMS=",".join(params), TRAIND_WEB_STEP=step,
               TRAIND_WEB_SHOTS=SHOTS, PLAYWRIGHT_CORE=PLAYWRIGHT)
    p = subprocess.Popen(["node", os.path.join(os.path.dirname(__file__), "sweep-page.cjs")], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    for line in p.stdout:
        lines.append(line)
        if '"phase":"first"' in line and after_first:
            after_first()
    err = p.stderr.read()
    p.wait(400)
    try:
        out = json.loads(lines[-1])
    except (ValueError, IndexError):
        out = {}
    if p.returncode != 0:
        print("".join(lines), err, flush=True)
        check(False, "the sweep page (%s) ran (exit %d: %s)" % (step, p.returncode, out.get("error")))
    print("sweep page %s: %s" % (step, out), flush=True)
    check(out.get("page_errors") == [], "no JavaScript errors (%s): %s" % (step, out.get("page_errors")))
    check(out.get("not_found") == [], "nothing missing (%s): %s" % (step, out.get("not_found")))
    return out


def http_only(d, web):
    """The sanitizer tree's form: what the page asks traind-web for, asked
    over HTTP, for a sweep held back, then let go to done."""
    blocker = d.start_job("--epochs", "50")
    sid = d.ctl_json("sweep", "start", "--name", "live", "--searcher", "grid", "--max-parallel", "1",
                     "--param", "lr=choice(0.001,0.003,0.01)", "--param", "batch_size=choice(8)",
                     *SHARED)["id"]
    status, body = web.get("/sweeps/%d" % sid)
    check(status == 200 and b"app.js" in body, "/sweeps/%d: the page (%d)" % (sid, status))
    status, body = web.get("/api/sweeps/%d" % sid)
    first = json.loads(body)["sweep"] if status == 200 else {}
    check(first.get("state") == "running" and len(first.get("trials", [])) == 3 and
          all(t.get("metric") is None for t in first["trials"]),
          "a running sweep held back: /api/sweeps/N has its 3 trials, no metric yet (%d %s)" % (status, first.get("state")))
    d.ctl("kill", blocker)
    last = harness.poll(lambda: (lambda st: st if st["state"] == "done" else None)(
        json.loads(web.get("/api/sweeps/%d" % sid)[1])["sweep"]), timeout=300, interval=0.5, what="the sweep done")
    check(len(last["trials"]) == 3 and all(t.get("metric") is not None for t in last["trials"]),
          "live to done: every trial has its metric (%s)" % [t.get("metric") for t in last["trials"]])
    for t in last["trials"]:
        status, body = web.get("/api/jobs/%d/history" % t["job"])
        rows = json.loads(body).get("rows", []) if status == 200 else []
        check(status == 200 and [r["epoch"] for r in rows] == [1, 2, 3],
              "trial %s's curve: /api/jobs/%d/history has epochs 1..3 (%d)" % (t.get("trial"), t["job"], status))
    lst = json.loads(web.get("/api/sweeps")[1])["sweeps"]
    check([s["id"] for s in lst] == [sid], "/api/sweeps")
    status, body = web.get("/api/sweeps/77")
    check(status == 404 and b"NoSuchSweep" in body, "/api/sweeps/77: 404 NoSuchSweep (%d %s)" % (status, body[:80]))
    check(web.get("/sweeps/x")[0] == 404, "/sweeps/x: 404")


def main():
    if harness.SANITIZER and os.path.exists(harness.TRAIND_WEB):
        d = Daemon(max_running=1).start()
        web = Web(d)
        try:
            http_only(d, web)
        finally:
            web.stop()
            d.cleanup()
        return
    if not os.path.exists(harness.TRAIND_WEB) or not os.path.exists("/usr/bin/chromium"):
        print("traind-web or chromium missing: skipped")
        sys.exit(77)
    d = Daemon(max_running=1).start()
    web = Web(d)
    try:
        # a running sweep held back: its trials queue behind a long plain job
        # until the page has been seen, then it goes on to done
        blocker = d.start_job("--epochs", "50")   # the lesson's MLP on all of MNIST: minutes
        sid = d.ctl_json("sweep", "start", "--name", "live", "--searcher", "grid", "--max-parallel", "1",
                         "--param", "lr=choice(0.001,0.003,0.01)", "--param", "batch_size=choice(8)",
                         *SHARED)["id"]
        out = page(web, sid, 3, ["lr", "batch_size"], "running", after_first=lambda: d.ctl("kill", blocker))
        check(out["status"] == 200 and out["first"]["rows"] == 3 and out["first"]["state"] == "running",
              "a running sweep's page: 3 rows, state running (%s)" % out.get("first"))
        check(out["first"]["lines"] == 0, "while it waits, no trial has a metric yet (%d lines)" %
              out["first"]["lines"])
        check(out["first"]["heads"][:5] == ["trial", "job", "state", "lr", "batch_size"] and
              "metric" in out["first"]["heads"], "the table's columns (%s)" % out["first"]["heads"])
        last = out.get("last", {})
        check(last.get("state") == "done" and last.get("lines") == 3 and last.get("points") == 6 and last.get("rows") == 3 and
              last.get("scatters") == ["lr", "batch_size"] and last.get("series") == 3,
              "live to done: 3 lines, 2 scatters of 3 points, 3 curves (%s)" % last)
        st = json.loads(web.get("/api/sweeps/%d" % sid)[1])["sweep"]
        lst = json.loads(web.get("/api/sweeps")[1])["sweeps"]
        check(st["state"] == "done" and [s["id"] for s in lst] == [sid], "/api/sweeps/N and /api/sweeps")
        status, body = web.get("/api/sweeps/77")
        check(status == 404 and b"NoSuchSweep" in body, "/api/sweeps/77: 404 NoSuchSweep (%d %s)" % (status, body[:80]))
        check(web.get("/sweeps/x")[0] == 404, "/sweeps/x: 404")

        # a finished sweep: sorting
        out = page(web, sid, 3, ["lr"], "done")
        metric = [t["metric"] for t in st["trials"]]
        check(out["by_trial"] == [0, 1, 2], "sorted by trial at first (%s)" % out["by_trial"])
        check(out["metric_asc"] == sorted(out["metric_asc"]) and len(out["metric_asc"]) == 3 and
              out["metric_desc"] == sorted(out["metric_desc"], reverse=True),
              "sorted by the metric, then the other way (%s, %s; %s)" % (out["metric_asc"], out["metric_desc"], metric))
        lrs = [st["trials"][i]["params"]["lr"] for i in out["param_order"]]
        check(lrs == sorted(lrs), "sorted by lr (%s)" % lrs)

        # a pbt sweep: the lineage column and the best's lineage
        pid = d.ctl_json("sweep", "start", "--name", "pbt", "--searcher", "pbt", "--population", "4", "--seed", "7",
                         "--param", "lr=loguniform(0.005,0.2)", "--optimizer", "sgd", "--max-parallel", "2",
                         "--train-size", "2000", "--val-size", "1000", "--hidden", "32", "--epochs", "2")["id"]
        check(d.ctl("sweep", "wait", pid, "--timeout", "300", check_rc=False)[0] == 0, "the pbt sweep is done")
        ps = d.ctl_json("sweep", "status", pid)
        want = ["t%d@%d" % (x["from_trial"], x["epoch"]) for t in ps["trials"] for x in t["lineage"]
                if x["action"] == "exploit"]
        out = page(web, pid, 4, ["lr"], "done")
        heads = out["first"]["heads"]
        check("lineage" in heads and heads.index("lineage") == heads.index("reason") - 1,
              "pbt: a lineage column before the reason (%s)" % heads)
        cells = [c for c in out["first"]["lineage"] if c != "-"]
        check(len(want) == 1 and cells == want and out["first"].get("exploits") == 1,
              "pbt: the exploit in the lineage column (%s; status says %s)" % (out["first"]["lineage"], want))
        check("lineage: trial" in out["first"]["best"] and "→" in out["first"]["best"] or
              len(ps["best"]["lineage"]) == 1, "pbt: the best's lineage (%s)" % out["first"]["best"])
    finally:
        web.stop()
        d.cleanup()


if __name__ == "__main__":
    run(main)
