"""test_web.py - traind-web against a real traind, a real headless Chromium
and a real Prometheus (meson suite 'web').

A traind on a temporary socket trains a small MNIST job; traind-web serves
it on a loopback port. Checked:
  - every refused request gets its status (no token 401 on pages, API,
    events and export; POST without X-Traind-Control 403; a foreign Origin
    403; oversized headers 431; broken chunking 400; bad method 405) and
    traind-web stays up and never passes them to traind;
  - the token URL sets an HttpOnly SameSite=Strict cookie; keep-alive; gzip;
    the export is the checkpoint's bytes; SSE has retry:, ids and events;
  - hundreds of connections at once and a slow client do not hurt it;
  - in Chromium (tests/web/browser.cjs): the table shows the job, the job
    page's loss curve gains points as epochs commit (read from uPlot's
    data), pressing pause pauses the job in traind (trainctl says so), a
    page whose cookie is gone is refused; at 1280x800: no horizontal scroll
    with a long model spec (cut, the whole on hover), the buttons of each
    state only, kill asks first, delete asks and removes, a finished job's
    step curve after a reload (traind's step series), whole epoch ticks and
    distinct lr labels, charts as wide as their boxes (also after the
    window shrinks), compare's settings table with the differences marked,
    train and val curves, smoothing, log scale, CSV and PNG downloads, a
    favicon and no 404 on any page; screenshots in the build dir;
  - Prometheus scrapes /metrics every second and its HTTP API returns the
    job's committed epoch for traind_job_epoch; promtool accepts /metrics.
Under the sanitizers the browser steps that check only the pages'
JavaScript (layout, a finished job's page, compare) are left to the release
tree's run; the requests they make are made over HTTP instead.
"""
import atexit
import gzip
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import harness  # noqa: E402
from harness import check, poll  # noqa: E402

SRC = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
WEB = harness.TRAIND_WEB
STATIC = os.path.join(harness.BUILD, "web")
PLAYWRIGHT = os.path.join(SRC, "web", "node_modules", "playwright-core")
SHOTS = os.path.join(harness.BUILD, "web-artifacts")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


WEBS = []   # every Web started, stopped at exit even when a check raised


@atexit.register
def _stop_webs():
    for w in WEBS:
        if w.alive():
            w.proc.kill()
            w.proc.wait()


class Web:
    """A traind-web process on a free loopback port."""

    def __init__(self, d, extra=()):
        WEBS.append(self)
        self.dir = tempfile.mkdtemp(prefix="traind-web-test-")
        self.token_file = os.path.join(self.dir, "token")
        self.log = open(os.path.join(self.dir, "web.log"), "wb")
        self.proc = subprocess.Popen([WEB, "--socket", d.socket, "--listen", "127.0.0.1:0",
                                      "--token-file", self.token_file, "--static-dir", STATIC,
                                      "--timeout", "3", "--request-timeout", "2"] + list(extra),
                                     stdout=subprocess.PIPE, stderr=self.log)
        line = self.proc.stdout.readline().decode()
        m = re.search(r"(http://127\.0\.0\.1:(\d+))/\?token=([0-9a-f]{64})", line)
        if not m:
            raise RuntimeError("traind-web did not print its URL: %r" % line)
        self.url, self.port, self.token = m.group(1), int(m.group(2)), m.group(3)

    def alive(self):
        return self.proc.poll() is None

    def request(self, method, path, headers=None, body=None, token=True, conn=None):
        """(status, headers dict lower-cased, body bytes)."""
        h = dict(headers or {})
        if token:
            h["Authorization"] = "Bearer " + self.token
        c = conn or http.client.HTTPConnection("127.0.0.1", self.port, timeout=300)
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        data = r.read()
        if not conn:
            c.close()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data

    def raw(self, data, timeout=10):
        """Send raw bytes; the status of the reply (0 if none)."""
        s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        try:
            s.sendall(data)
            got = b""
            while b"\r\n" not in got:
                chunk = s.recv(4096)
                if not chunk:
                    break
                got += chunk
        except (ConnectionResetError, BrokenPipeError):
            got = b""
        finally:
            s.close()
        m = re.match(rb"HTTP/1\.[01] (\d{3})", got)
        return int(m.group(1)) if m else 0

    def stop(self):
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode

    def read_log(self):
        return open(os.path.join(self.dir, "web.log"), errors="replace").read()


def browser(web, job, step, jobs=None):
    env = dict(os.environ, TRAIND_WEB_URL=web.url, TRAIND_WEB_TOKEN=web.token, TRAIND_WEB_JOB=str(job),
               TRAIND_WEB_SHOTS=SHOTS, TRAIND_WEB_STEP=step, PLAYWRIGHT_CORE=PLAYWRIGHT,
               TRAIND_WEB_JOBS=json.dumps(jobs or {}))
    p = subprocess.run(["node", os.path.join(os.path.dirname(__file__), "browser.cjs")], env=env,
                       capture_output=True, text=True, timeout=400)
    try:
        out = json.loads(p.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        out = {}
    if p.returncode != 0:
        print(p.stdout, p.stderr, flush=True)
        check(False, "browser step %s ran (exit %d: %s)" % (step, p.returncode, out.get("error")))
    print("browser %s: %s" % (step, {k: v for k, v in out.items() if k != "val_loss_series"}), flush=True)
    check(out.get("page_errors") == [], "no JavaScript errors on the %s pages: %s" % (step, out.get("page_errors")))
    check(out.get("not_found") == [], "nothing the %s pages asked for was missing: %s" % (step, out.get("not_found")))
    return out


LONG_SPEC = ("flatten,linear(300),relu,linear(300),relu,linear(300),relu,linear(300),relu,linear(300),relu,"
             "linear(300),relu,linear(10)")
ACTIONS = {"queued": ["pause", "kill"], "running": ["pause", "kill"], "paused": ["resume", "delete"],
           "killed": ["resume", "delete"], "failed": ["resume", "delete"], "done": ["delete"]}


def layout(d, web, jobs):
    """The table's layout in Chromium (release tree only, see dashboard())."""
    long_ = jobs["long"]
    out = browser(web, long_, "layout", jobs)
    check(out.get("viewport") == [1280, 800], "the window is 1280x800")
    check(out.get("page_scroll_width", 1e9) <= out.get("page_client_width", 0) and out.get("table_right", 1e9) <= 1280 and
          out.get("wrap_scroll", [1, 0])[0] <= out.get("wrap_scroll", [0, 0])[1],
          "no horizontal scroll with a long model spec (page %s/%s, table right %s, table box %s)" % (
              out.get("page_scroll_width"), out.get("page_client_width"), out.get("table_right"), out.get("wrap_scroll")))
    check(out.get("model_cut") and out.get("model_title") == LONG_SPEC,
          "the long spec is cut, the whole of it on hover (title)")
    rows = out.get("rows", [])
    check(rows and all(r["actions"] == ACTIONS[r["state"]] for r in rows) and
          {r["state"] for r in rows} >= {"done", "paused", "running", "killed"},
          "each job has the buttons of its state only: %s" % [(r["state"], r["actions"]) for r in rows])



def done_compare(d, web, jobs):
    """A finished job's page and compare in Chromium (release tree only, see
    dashboard())."""
    long_ = jobs["long"]
    out = browser(web, long_, "done", jobs)
    check(out.get("step_points_after_reload", 0) >= 3 and out.get("step_x_max", 0) > 2,
          "a finished job's page after a reload: the step curve from traind (%s points up to epoch %.2f)" % (
              out.get("step_points_after_reload"), out.get("step_x_max", 0)))
    ticks = out.get("loss_ticks") or []
    check(ticks and all(float(t).is_integer() for t in ticks) and all(float(t).is_integer() for t in out.get("steps_ticks") or [0.5]),
          "epoch axes have whole-number ticks (%s; steps %s)" % (ticks, out.get("steps_ticks")))
    labels = out.get("lr_labels") or []
    check(len(labels) >= 2 and len(set(labels)) == len(labels), "the lr axis's labels all differ: %s" % labels)
    for axis in ("lr", "loss_y"):
        labels, splits = out.get(axis + "_labels") or [], out.get(axis + "_splits") or []
        check(labels and len(labels) == len(splits) and
              all(abs(float(l) - v) <= 1e-9 * abs(v) for l, v in zip(labels, splits) if l),
              "the %s axis's labels are its ticks' values (%s at %s)" % (axis, labels, splits))
    check(abs(out.get("chart_width", 0) - out.get("box_width", -9)) <= 1 and out.get("chart_width", 0) > 560,
          "the chart is as wide as its box (%s of %s px, not capped)" % (out.get("chart_width"), out.get("box_width")))
    narrow = out.get("chart_width_narrow") or [0, 1]
    check(abs(narrow[0] - narrow[1]) <= 1, "... and follows the window when it narrows (%s)" % narrow)
    check(out.get("buttons") == ["delete"] and "finished" in out.get("times", ""),
          "a done job's page: delete only, when it started and finished (%r)" % out.get("times"))

    out = browser(web, long_, "compare2", jobs)
    t = out.get("table", {})
    check(t.get("lr", {}).get("diff") and t.get("model (layers)", {}).get("diff") and t.get("lr_scheduler", {}).get("diff"),
          "compare: the settings that differ are marked (lr, model, lr_scheduler)")
    check(t.get("dataset", {}).get("diff") is False and t.get("epochs", {}).get("diff") is False and
          t.get("dataset", {}).get("cells") == ["mnist", "mnist"], "compare: the ones that agree are not")
    check("final val loss" in t and "best val acc" in t and t.get("final val loss", {}).get("diff"),
          "compare: the final and best metrics beside the settings")
    only = out.get("table_only_diff", {})
    check(only.get("dataset", {}).get("shown") is False and only.get("lr", {}).get("shown") is True,
          "compare: 'only the rows that differ' hides the others")
    ch = out.get("chart", {})
    check(ch.get("n") == 4 and ch.get("dashed") == [False, True, False, True],
          "compare: train (solid) and val (dashed) of each job together (%s)" % ch.get("labels"))
    check(ch.get("ticks") and all(float(x).is_integer() for x in ch["ticks"]), "compare: whole epoch ticks")
    hist = d.history(long_)
    check(ch.get("y1") == [r["train_loss"] for r in hist], "compare: the first curve is the history's train loss")
    sm = out.get("smoothed", {}).get("y1") or []
    x0, x1 = hist[0]["train_loss"], hist[1]["train_loss"]
    check(len(sm) == 3 and abs(sm[0] - x0) < 1e-12 and abs(sm[1] - (0.375 * x0 + 0.625 * x1)) < 1e-12,
          "compare: smoothing 0.6 is the debiased moving average (%s)" % sm)
    check(out.get("logged", {}).get("distr") == 3, "compare: the log scale (uPlot distr 3)")
    csv = out.get("csv", "").splitlines()
    check(out.get("csv_name") == "traind-compare.csv" and csv and csv[0].startswith("epoch,job %d train_loss,job %d val_loss"
          % (long_, long_)) and len(csv) == 4 and csv[1].split(",")[1] == repr(hist[0]["train_loss"]),
          "compare: the CSV download has the raw curves (%s)" % csv[:2])
    check(out.get("png_name") == "traind-compare.png" and out.get("png_magic") == [137, 80, 78, 71, 13, 10, 26, 10],
          "compare: the PNG download is a PNG")


def dashboard(d, web):
    """The dashboard of issue 26, at 1280x800."""
    small = ["--train-size", "2000", "--val-size", "500", "--threads", "1"]
    long_ = d.start_job("--name", "long spec", "--model", LONG_SPEC, "--epochs", "3", "--lr-scheduler", "cosine(t_max=3)",
                        "--batch-size", "16", *small)
    other = d.start_job("--name", "other", "--epochs", "3", "--lr", "0.002", *small)
    d.wait(long_)
    d.wait(other)
    paused = d.start_job("--name", "paused", "--epochs", "400", "--batch-size", "4", *small)
    d.wait_running_at(paused, 0, min_step=1, timeout=120)
    d.ctl("pause", paused)
    running = d.start_job("--name", "running", "--epochs", "400", "--batch-size", "4", *small)
    d.wait_running_at(running, 0, min_step=1, timeout=120)
    jobs = {"long": long_, "other": other, "paused": paused, "running": running}

    st, h, body = web.request("GET", "/favicon.ico")
    check(st == 200 and h.get("content-type") == "image/svg+xml" and body.startswith(b"<svg"),
          "/favicon.ico: the SVG favicon (%d %s)" % (st, h.get("content-type")))
    st, h, body = web.request("GET", "/api/jobs/%d/steps" % long_)
    steps = json.loads(body)
    check(st == 200 and steps["steps_per_epoch"] == 125 and len(steps["points"]) >= 3,
          "/api/jobs/N/steps: traind's step series of a finished job (%d points)" % len(steps.get("points", [])))

    if harness.SANITIZER:
        # The layout, a finished job's page and compare's table, charts and
        # downloads are the pages' JavaScript, the same in both trees: the
        # release tree's run checks them. What they ask traind-web for
        # (/api/jobs, history, steps, checkpoints) the other steps ask too;
        # kill and delete, which act through traind-web, run here as well.
        for path in ("/api/jobs", "/api/jobs/%d/history" % long_, "/api/jobs/%d/checkpoints" % long_,
                     "/jobs/%d" % long_, "/compare?jobs=%d,%d" % (long_, other)):
            st, h, body = web.request("GET", path)
            check(st == 200, "GET %s: 200 (%d)" % (path, st))
    else:
        layout(d, web, jobs)
    out = browser(web, running, "confirm", jobs)
    check(len(out.get("dialogs", [])) == 2 and "Kill job %d" % running in out["dialogs"][0],
          "kill asks first (%s)" % out.get("dialogs"))
    check(out.get("state_after_dismiss") == "running" and "not done" in out.get("after_dismiss", ""),
          "dismissed: the job is still running")
    check(d.status(running)["state"] == "killed" and out.get("actions_after") == ACTIONS["killed"],
          "accepted: traind killed it, and its row offers resume and delete (%s)" % out.get("actions_after"))
    if not harness.SANITIZER:
        done_compare(d, web, jobs)

    out = browser(web, other, "delete", jobs)
    check(len(out.get("dialogs", [])) == 1 and "Delete job %d" % other in out["dialogs"][0] and
          out.get("landed") == web.url + "/" and out.get("status_after") == 404,
          "delete asks, removes the job in traind and goes back to the table (%s)" % out.get("status_after"))
    rc, _, err = d.ctl("status", other, check_rc=False)
    check(rc == 1 and "no such job" in err, "trainctl agrees: no such job %d" % other)
    d.ctl("rm", "--force", paused, running)


def refusals(d, web, job):
    errors_before = d.read_log().count("error")
    for path in ("/", "/jobs/%d" % job, "/compare", "/api/jobs", "/api/jobs/%d" % job,
                 "/api/jobs/%d/history" % job, "/api/jobs/%d/events" % job, "/api/jobs/%d/export" % job,
                 "/static/app.js", "/nonexistent"):
        st, h, _ = web.request("GET", path, token=False)
        check(st == 401, "GET %s without the token: 401 (got %d)" % (path, st))
    st, h, _ = web.request("GET", "/api/jobs", token=False, headers={"Authorization": "Bearer " + "0" * 64})
    check(st == 401, "a wrong bearer token: 401 (got %d)" % st)
    st, h, _ = web.request("GET", "/api/jobs", token=False, headers={"Cookie": "traind_token=" + web.token[:-1] + ("1" if web.token[-1] == "0" else "0")})
    check(st == 401, "a wrong cookie: 401 (got %d)" % st)
    st, h, _ = web.request("GET", "/?token=" + "f" * 64, token=False)
    check(st == 401 and "set-cookie" not in h, "a wrong ?token=: 401 and no cookie (got %d)" % st)
    st, h, _ = web.request("POST", "/api/jobs/%d/pause" % job, token=False, headers={"X-Traind-Control": "1"})
    check(st == 401, "POST pause without the token: 401 (got %d)" % st)
    st, h, _ = web.request("POST", "/api/jobs/%d/pause" % job)
    check(st == 403, "POST pause without X-Traind-Control: 403 (got %d)" % st)
    st, h, _ = web.request("POST", "/api/jobs/%d/kill" % job,
                           headers={"X-Traind-Control": "1", "Origin": "http://evil.example"})
    check(st == 403, "POST kill with a foreign Origin: 403 (got %d)" % st)
    st, h, _ = web.request("POST", "/api/jobs/%d/kill" % job,
                           headers={"X-Traind-Control": "1", "Origin": "null"})
    check(st == 403, "POST kill with Origin null: 403 (got %d)" % st)
    st, h, _ = web.request("POST", "/api/jobs/%d/kill" % job,
                           headers={"X-Traind-Control": "1", "Sec-Fetch-Site": "cross-site"})
    check(st == 403, "POST kill from a cross-site fetch: 403 (got %d)" % st)
    st, h, _ = web.request("DELETE", "/api/jobs/%d" % job)
    check(st == 405, "DELETE: 405 (got %d)" % st)
    st, h, _ = web.request("GET", "/api/jobs/%d/pause" % job)
    check(st == 405, "GET of an action: 405 (got %d)" % st)
    st, h, _ = web.request("GET", "/api/jobs/01")
    check(st == 404, "a job id with a leading zero: 404 (got %d)" % st)
    st, h, _ = web.request("GET", "/static/../../etc/passwd")
    check(st in (400, 404), "a path outside the static files: 400/404 (got %d)" % st)
    check(d.read_log().count("error") == errors_before,
          "none of the refused requests reached traind (no new errors in its log)")
    st, h, body = web.request("POST", "/api/jobs", headers={"X-Traind-Control": "1"}, body=b"{not json")
    check(st == 400 and b"not JSON" in body, "a start body that is not JSON: 400 naming it (got %d %r)" % (st, body[:80]))
    st, h, body = web.request("POST", "/api/jobs", headers={"X-Traind-Control": "1"},
                              body=json.dumps({"config": {"epochs": "many"}}).encode())
    check(st == 400 and b"epochs" in body, "a start with a bad epochs: 400 from traind naming it (got %d %r)" % (st, body[:120]))
    st, h, body = web.request("POST", "/api/jobs", headers={"X-Traind-Control": "1"},
                              body=b"{" + b'"name":"' + b"x" * 70000 + b'"}')
    check(st == 413, "a start body over 64 KiB: 413 (got %d)" % st)
    st, h, body = web.request("GET", "/api/jobs/999999")
    check(st == 404 and json.loads(body)["message"] == "no such job 999999", "no such job: 404 with trainctl's words (got %d %r)" % (st, body))
    # Raw HTTP: oversized headers, broken chunking, garbage.
    big = b"GET /api/jobs HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100000 + b"\r\n\r\n"
    st = web.raw(big)
    check(st == 431, "headers of 100 kB: 431 (got %d)" % st)
    st = web.raw(b"GET /" + b"a" * 100000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    check(st in (414, 431), "a request line of 100 kB: 414/431 (got %d)" % st)
    st = web.raw(b"POST /api/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + web.token.encode() +
                 b"\r\nX-Traind-Control: 1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nbroken\r\n0\r\n\r\n")
    check(st == 400, "broken chunking: 400 (got %d)" % st)
    st = web.raw(b"\x00\xff garbage \r\n\r\n")
    check(st == 400 or st == 0, "garbage: 400 or closed (got %d)" % st)
    check(web.alive(), "traind-web is up after the refused requests")


def protocol(d, web, job):
    # The token URL: cookie flags, redirect without the token.
    st, h, _ = web.request("GET", "/jobs/%d?token=%s" % (job, web.token), token=False)
    cookie = h.get("set-cookie", "")
    check(st == 303 and h.get("location") == "/jobs/%d" % job, "the token URL redirects to the page (got %d %s)" % (st, h.get("location")))
    # issue 21: /compare?jobs=1,2&token=... went to /compare, without its jobs
    st, h, _ = web.request("GET", "/compare?jobs=1,2&token=%s&metric=val_loss&x=a%%20b" % web.token, token=False)
    check(st == 303 and h.get("location") == "/compare?jobs=1,2&metric=val_loss&x=a%20b",
          "the token URL keeps the page's other parameters (got %d %s)" % (st, h.get("location")))
    check("HttpOnly" in cookie and "SameSite=Strict" in cookie and web.token in cookie,
          "the cookie is HttpOnly and SameSite=Strict: %s" % cookie.replace(web.token, "TOKEN"))
    st, h, body = web.request("GET", "/jobs/%d" % job, token=False, headers={"Cookie": "a=b; traind_token=" + web.token})
    check(st == 200 and b"<html" in body, "the cookie opens the page (got %d)" % st)
    check("default-src 'self'" in h.get("content-security-policy", ""), "pages carry a Content-Security-Policy")
    # Keep-alive: two requests on one connection.
    c = http.client.HTTPConnection("127.0.0.1", web.port, timeout=30)
    web.request("GET", "/api/jobs", conn=c)
    sock1 = c.sock
    st, h, _ = web.request("GET", "/api/jobs/%d" % job, conn=c)
    check(st == 200 and c.sock is sock1 and sock1 is not None, "HTTP/1.1 keep-alive: the second request on the same connection")
    c.close()
    # gzip.
    st, h, plain = web.request("GET", "/static/uPlot.iife.min.js")
    st2, h2, zipped = web.request("GET", "/static/uPlot.iife.min.js", headers={"Accept-Encoding": "gzip"})
    check(h2.get("content-encoding") == "gzip" and gzip.decompress(zipped) == plain and len(zipped) < len(plain) / 2,
          "uPlot gzipped: %d -> %d bytes" % (len(plain), len(zipped)))
    st, h, _ = web.request("GET", "/api/jobs", headers={"Accept-Encoding": "gzip;q=0"})
    check("content-encoding" not in h, "gzip;q=0 is honoured")
    # The JSON API mirrors varlink.
    st, h, body = web.request("GET", "/api/jobs/%d" % job)
    j = json.loads(body)["job"]
    check(st == 200 and j["id"] == job and j["state"] in ("queued", "running"), "GET /api/jobs/N is Status's job")
    st, h, body = web.request("GET", "/api/jobs?state=running,queued")
    check(st == 200 and [x["id"] for x in json.loads(body)["jobs"]] == [job], "GET /api/jobs?state= filters")
    # SSE: retry, ids, progress events.
    s = socket.create_connection(("127.0.0.1", web.port), timeout=30)
    s.sendall(("GET /api/jobs/%d/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
               "Last-Event-ID: 41\r\n\r\n" % (job, web.token)).encode())
    got = b""
    deadline = time.time() + 30
    while got.count(b"event: progress") < 2 and time.time() < deadline:
        chunk = s.recv(65536)
        if not chunk:
            break
        got += chunk
    s.close()
    text = got.decode(errors="replace")
    check("text/event-stream" in text and "retry: 3000" in text, "events: text/event-stream with retry:")
    check("id: 42" in text and "id: 43" in text, "events: ids go on from Last-Event-ID 41")
    m = re.search(r"data: (\{.*\})", text)
    check(m and json.loads(m.group(1))["id"] == job, "events: the data is Watch's reply")
    st, h, body = web.request("GET", "/api/jobs/999999/events")
    check(st == 200 and b"event: error" in body and b"no such job" in body, "events of no such job: an error event")


def many_connections(web):
    n = 400
    socks = []
    for i in range(n):
        try:
            s = socket.create_connection(("127.0.0.1", web.port), timeout=5)
            s.sendall(b"GET /api/jobs HTTP/1.1\r\nHost: x\r\n")   # never finished
            socks.append(s)
        except OSError:
            pass
    check(web.alive(), "traind-web is up with %d half-open connections" % len(socks))
    # One client (this test's uid) holds at most its share (half of
    # --max-connections 128): each connection past it closes the client's
    # own oldest (a 503 "closed to make room" to one whose request began).
    time.sleep(0.3)
    closed = 0
    for s in socks:
        s.setblocking(False)
        try:
            got = s.recv(4096)
            closed += got == b"" or got.startswith(b"HTTP/1.1 503")
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
    check(closed >= n - 64, "a client holds at most its share of connections: the oldest are closed to make "
          "room (%d of %d closed, 64 may stay)" % (closed, n))
    for s in socks:
        s.close()
    st = poll(lambda: web.request("GET", "/api/jobs")[0] == 200, timeout=30, interval=0.2,
              what="traind-web to serve again")
    check(st, "traind-web serves after the connection flood")
    # A slow client is answered 408 and closed at its request's deadline
    # (--request-timeout 2), however it trickles.
    s = socket.create_connection(("127.0.0.1", web.port), timeout=30)
    s.sendall(b"GET / HTTP/1.1\r\n")
    t0 = time.time()
    rest = b""
    try:
        for _ in range(20):
            time.sleep(0.5)
            s.sendall(b"X")
    except OSError:
        pass
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            rest += chunk
    except OSError:
        pass
    waited = time.time() - t0
    s.close()
    check(rest.startswith(b"HTTP/1.1 408") and b"--request-timeout" in rest and waited < 8,
          "a slow client gets 408 and is dropped at the request deadline, however it trickles (after %.1f s: "
          "%r)" % (waited, rest[:60]))


def concurrent(web, job):
    """64 clients at once, each a few requests on its own connection."""
    import threading
    statuses = []

    def client():
        c = http.client.HTTPConnection("127.0.0.1", web.port, timeout=60)
        try:
            for path in ("/api/jobs", "/api/jobs/%d/history" % job, "/metrics", "/static/app.js"):
                statuses.append(web.request("GET", path, conn=c)[0])
        except OSError as e:
            statuses.append(str(e))
        finally:
            c.close()
    threads = [threading.Thread(target=client) for _ in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    bad = [s for s in statuses if s != 200]
    check(len(statuses) == 256 and not bad, "64 concurrent clients, 256 requests: all 200 (%d bad: %s)" % (len(bad), bad[:5]))


def command_line(d):
    """Bad flags and a non-loopback --listen without --behind-proxy are refused."""
    for args, what in ((["--listen", "0.0.0.0:0"], "--behind-proxy"), (["--listen", "[::]:0"], "--behind-proxy"),
                       (["--listen", "localhost:8765"], "numeric"), (["--listen", "127.0.0.1"], "ADDR:PORT"),
                       (["--max-connections", "0"], "--max-connections"), (["--bogus"], "option"),
                       (["--static-dir", "/nonexistent"], "/nonexistent")):
        p = subprocess.run([WEB, "--socket", d.socket, "--token-file", os.path.join(d.dir, "t")] + args,
                           capture_output=True, text=True, timeout=30)
        want = 1 if what == "/nonexistent" else 2
        check(p.returncode == want and what in p.stderr and p.stderr.startswith("traind-web: "),
              "traind-web %s: refused naming %s, exit %d (exit %d: %s)" % (" ".join(args), what, want, p.returncode, p.stderr.strip()[:120]))
    # A Unix socket: every peer is local (no token for /metrics), the rest needs the token.
    path = os.path.join(d.sockdir or d.dir, "web.sock")
    p = subprocess.Popen([WEB, "--socket", d.socket, "--listen", "unix:" + path, "--token-file",
                          os.path.join(d.dir, "unix-token"), "--static-dir", STATIC],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        p.stdout.readline()
        token = open(os.path.join(d.dir, "unix-token")).read().strip()
        check(oct(os.stat(os.path.join(d.dir, "unix-token")).st_mode & 0o777) == "0o640", "the token file is mode 0640")

        def get(path_, auth):
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(30)
            s.connect(path)
            s.sendall(("GET %s HTTP/1.1\r\nHost: localhost\r\n%sConnection: close\r\n\r\n" % (
                path_, "Authorization: Bearer %s\r\n" % token if auth else "")).encode())
            got = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
            s.close()
            return int(got.split(b" ")[1])
        check(get("/metrics", False) == 200, "unix:PATH: /metrics without the token")
        check(get("/api/jobs", False) == 401, "unix:PATH: the API without the token is 401")
        check(get("/api/jobs", True) == 200, "unix:PATH: the API with the token")
    finally:
        p.terminate()
        p.wait(30)


def prometheus(d, web, job, want_epoch):
    promdir = tempfile.mkdtemp(prefix="traind-prom-")
    port = free_port()
    cfg = os.path.join(promdir, "prometheus.yml")
    with open(cfg, "w") as f:
        f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                "scrape_configs:\n  - job_name: traind\n    honor_labels: true\n"
                "    static_configs:\n      - targets: ['127.0.0.1:%d']\n" % web.port)
    log = open(os.path.join(promdir, "prometheus.log"), "wb")
    p = subprocess.Popen(["/usr/bin/prometheus", "--config.file", cfg, "--storage.tsdb.path",
                          os.path.join(promdir, "data"), "--web.listen-address", "127.0.0.1:%d" % port],
                         stdout=log, stderr=subprocess.STDOUT)
    try:
        q = "http://127.0.0.1:%d/api/v1/query?query=%s" % (
            port, urllib.parse.quote('traind_job_epoch{job="%d"}' % job))

        def value():
            try:
                r = json.load(urllib.request.urlopen(q, timeout=5))
            except OSError:
                return None
            res = r.get("data", {}).get("result", [])
            return res[0]["value"][1] if res else None
        v = poll(value, timeout=90, interval=0.5, what="Prometheus to have traind_job_epoch")
        check(v == str(want_epoch), "Prometheus: traind_job_epoch{job=\"%d\"} = %s, the committed epoch %d" % (job, v, want_epoch))
        up = json.load(urllib.request.urlopen("http://127.0.0.1:%d/api/v1/query?query=traind_up" % port, timeout=5))
        check(up["data"]["result"] and up["data"]["result"][0]["value"][1] == "1", "Prometheus: traind_up 1")
    finally:
        p.terminate()
        p.wait(30)
        log.close()
        shutil.rmtree(promdir, ignore_errors=True)


def metrics(d, web, job):
    st, h, body = web.request("GET", "/metrics", token=False)
    check(st == 200 and h.get("content-type", "").startswith("text/plain; version=0.0.4"),
          "/metrics without a token from loopback: 200 in the text format")
    st, _, _ = web.request("GET", "/metrics", token=False, headers={"Host": "rebound.example:8765"})
    check(st == 401, "/metrics for a Host that is not loopback (DNS rebinding) needs the token: %d" % st)
    p = subprocess.run(["/usr/bin/promtool", "check", "metrics"], input=body, capture_output=True)
    check(p.returncode == 0, "promtool check metrics accepts the exposition: %s" % p.stdout.decode()[:300] + p.stderr.decode()[:300])
    text = body.decode()
    jobj = d.job(job)
    check('traind_job_epoch{job="%d",name="web \\"test\\"\\\\x"} %d' % (job, jobj["committed_epoch"]) in text,
          "traind_job_epoch with the name's quote and backslash escaped")
    for name in ("traind_up 1", 'traind_jobs{state="paused"} 1', "traind_job_best_val_loss{", "traind_job_val_acc{"):
        check(name in text, "/metrics has %s" % name)
    check(d.call("io.traind.Counters").get("error") is None, "traind answers io.traind.Counters")
    check("traind_checkpoint_commit_seconds_bucket{le=\"+Inf\"}" in text and "traind_epochs_committed_total" in text,
          "/metrics has traind's counters and the commit histogram")
    web2 = Web(d, extra=["--metrics-token"])
    try:
        st, _, _ = web2.request("GET", "/metrics", token=False)
        check(st == 401, "--metrics-token: /metrics without a token is 401 (got %d)" % st)
        st, _, _ = web2.request("GET", "/metrics")
        check(st == 200, "--metrics-token: with the token 200")
    finally:
        web2.stop()


def regression(d, web):
    """A regression job (diabetes from scripts/sklearn-data): its page charts
    the validation MAE and RMSE and its history table has those columns, the
    compare view offers val_rmse, Prometheus has traind_job_val_rmse."""
    job = d.start_job("--dataset", "diabetes", "--loss", "mse", "--val-size", "88", "--hidden", "16",
                      "--epochs", "3", "--batch-size", "32", "--lr", "0.01")
    check(d.wait(job, "--state", "done")[0] == 0, "the regression job finishes")
    hist = d.history(job)
    out = browser(web, job, "regression")
    check(out.get("metric_title") == "Validation error by epoch" and
          out.get("metric_series", [])[1:] == ["val MAE", "val RMSE"],
          "the job page charts val MAE and RMSE (%s %s)" % (out.get("metric_title"), out.get("metric_series")))
    rmse = out.get("rmse_series") or []
    check(len(rmse) == 3 and abs(rmse[-1] - hist[-1]["val_rmse"]) < 1e-9, "the chart's RMSE is the history's")
    head = out.get("history_head", "")
    check("val RMSE" in head and "val MAE" in head and "acc" not in head,
          "the history table has the task's columns (%s)" % head)
    cmp_ = out.get("compare_rmse") or []
    check(len(cmp_) == 3 and abs(cmp_[-1] - hist[-1]["val_rmse"]) < 1e-9, "compare --metric val_rmse")
    st, h, body = web.request("GET", "/metrics")
    line = [ln for ln in body.decode().splitlines() if ln.startswith("traind_job_val_rmse{") and
            'job="%d"' % job in ln]
    check(len(line) == 1 and abs(float(line[0].split()[-1]) - hist[-1]["val_rmse"]) < 1e-6 * hist[-1]["val_rmse"],
          "Prometheus: traind_job_val_rmse of the job (%s)" % line)


def language_model(d, web, data):
    """A language model (issue 24): a char_lstm on a small text. Its page
    charts the validation perplexity, its history has val ppl, and it shows
    a sample of the model's text (the API's, which is traind's Generate);
    a prompt the vocabulary cannot spell gets traind's message. Prometheus
    has traind_job_val_ppl."""
    src = os.path.join(tempfile.mkdtemp(prefix="traind-web-lm-"), "lm-corpus.txt")
    words = ["the", "cat", "sat", "on", "a", "mat", "dog", "ran", "to", "big", "red"]
    rnd = __import__("random").Random(5)
    with open(src, "w") as f:
        f.write("".join(" ".join(rnd.choice(words) for _ in range(6)) + ".\n" for _ in range(600)))
    d.ctl("dataset", "import", "lmtext", src)
    job = d.start_job("--dataset", "lmtext", "--model", "char_lstm(embed=8,hidden=24,layers=1)", "--context", "16",
                      "--epochs", "2", "--batch-size", "16", "--val-size", "40", "--threads", "1")
    check(d.wait(job, "--state", "done")[0] == 0, "the language model job finishes")
    hist = d.history(job)
    out = browser(web, job, "lm")
    ppl = out.get("ppl_series") or []
    check(len(ppl) == 2 and abs(ppl[-1] - hist[-1]["val_ppl"]) < 1e-9, "the perplexity chart is the history's (%s)" % ppl)
    check("val ppl" in out.get("history_head", "") and out.get("metric_title") == "Per-token accuracy by epoch",
          "the history table has val ppl, the metric chart the per-token accuracy (%s)" % out.get("metric_title"))
    api = json.loads(web.request("GET", "/api/jobs/%d/sample?tokens=200&temperature=0.8&seed=1" % job)[2])
    check(out.get("sample") == api.get("text") and api["text"].startswith("\n") and len(api["generated"]) == 200,
          "the page shows a sample of the model's text, traind's Generate's (%r)" % (out.get("sample") or "")[:60])
    check((out.get("sample2") or "").startswith("the ") and out.get("sample2") != out.get("sample"),
          "sampling again from the prompt 'the ' (%r)" % (out.get("sample2") or "")[:60])
    check("'Z'" in (out.get("sample_refused") or "") and "é" in (out.get("sample_refused") or ""),
          "a prompt the vocabulary cannot spell: traind's message (%r)" % out.get("sample_refused"))
    st, h, body = web.request("GET", "/metrics")
    line = [ln for ln in body.decode().splitlines() if ln.startswith("traind_job_val_ppl{") and 'job="%d"' % job in ln]
    check(len(line) == 1 and abs(float(line[0].split()[-1]) - hist[-1]["val_ppl"]) < 1e-6 * hist[-1]["val_ppl"],
          "Prometheus: traind_job_val_ppl of the job (%s)" % line)


def main():
    os.makedirs(SHOTS, exist_ok=True)
    # a copy of MNIST (a link out of the data directory is refused) and a
    # regression set of the test's own
    data = tempfile.mkdtemp(prefix="traind-web-data-")
    shutil.copytree(os.path.join(harness.DATA, "mnist"), os.path.join(data, "mnist"))
    subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "sklearn-data"),
                    "--only", "diabetes", data], check=True, capture_output=True)
    d = harness.Daemon(data_dir=data).start()
    web = Web(d)
    # Long enough to still be training when the browser presses pause (the
    # test kills it at the end): 30 epochs were done before Chromium got there.
    # (Under the sanitizers a third of the data: epochs commit three times as
    # often for the live curve, and 400 still outlast the test.)
    job = d.start_job("--name", 'web "test"\\x', "--epochs", "400",
                      "--train-size", "10000" if harness.SANITIZER else "30000",
                      "--val-size", "1000", "--threads", "1")
    d.wait_running_at(job, 0, min_step=1, timeout=120)

    refusals(d, web, job)
    protocol(d, web, job)
    many_connections(web)
    concurrent(web, job)
    command_line(d)

    out = browser(web, job, "live")
    check(out.get("index_url") == web.url + "/", "the token URL lands on / (got %s)" % out.get("index_url"))
    check(out.get("table_rows") == 1 and out.get("table_state") in ("running", "queued"),
          "the table shows the training job")
    check(out.get("points_later", 0) > out.get("points_first", 0) >= 1,
          "the loss curve gains points as epochs commit: %s -> %s" % (out.get("points_first"), out.get("points_later")))
    hist = d.history(job)
    series = out.get("val_loss_series") or []
    check(len(series) >= 1 and abs(series[0] - hist[0]["val_loss"]) < 1e-9,
          "the chart's first val loss is the history's")
    check(out.get("step_points", 0) >= 2, "the running loss by step has points from the events")
    st = d.status(job)
    check(st["state"] == "paused", "pressing pause paused the job in traind (trainctl status: %s)" % st["state"])

    out = browser(web, job, "refused")
    check("(401)" in out.get("refused_message", ""),
          "resume without the cookie is refused: %r" % out.get("refused_message"))
    check(out.get("page_without_token") == 401, "the page without the cookie: 401")
    check(d.status(job)["state"] == "paused", "the refused resume did not resume the job")

    out = browser(web, job, "compare")
    check(out.get("compare_points", 0) >= 2, "the compare view shows the job's curve (%s points)" % out.get("compare_points"))

    # The export is the checkpoint.
    committed = d.job(job)["committed_epoch"]
    st, h, body = web.request("GET", "/api/jobs/%d/export?epoch=%d" % (job, committed))
    sha = hashlib.sha256(body).hexdigest()
    check(st == 200 and h.get("content-type") == "application/octet-stream" and
          "attachment" in h.get("content-disposition", ""), "the export is a download")
    check(sha == d.export_sha(job, committed) and h.get("x-checksum-sha256", "").endswith(sha),
          "the export's bytes are trainctl export's (sha256 %s...)" % sha[:12])

    metrics(d, web, job)
    prometheus(d, web, job, committed)

    # Resume through the API, as the button does (same origin).
    st, h, body = web.request("POST", "/api/jobs/%d/resume" % job,
                              headers={"X-Traind-Control": "1", "Origin": web.url})
    check(st == 200 and json.loads(body)["state"] in ("queued", "running"), "POST resume with the header: %d %r" % (st, body[:80]))
    st, h, body = web.request("POST", "/api/jobs/%d/kill" % job, headers={"X-Traind-Control": "1"})
    check(st == 200 and json.loads(body)["state"] == "killed", "POST kill: %d %r" % (st, body[:80]))
    st, h, body = web.request("POST", "/api/jobs", headers={"X-Traind-Control": "1"},
                              body=json.dumps({"name": "from-web", "config": {"epochs": 1, "train_size": 500, "val_size": 100}}).encode())
    check(st == 201 and json.loads(body)["id"] == job + 1, "POST /api/jobs starts a job: %d %r" % (st, body[:80]))
    check(d.wait(job + 1, "--timeout", "120")[0] == 0, "the job started from the web finishes")
    out = browser(web, job, "start")
    st = d.status(out["started"]) if out.get("started") else {}
    check(st.get("name") == "from-form" and st.get("epochs") == 1 and st["config"].get("train_size") == 500,
          "the start form started job %s with its settings in traind" % out.get("started"))
    d.wait(out["started"])
    dashboard(d, web)

    regression(d, web)
    language_model(d, web, data)
    check(web.alive(), "traind-web is up at the end")
    rc = web.stop()
    check(rc == 0, "traind-web exits 0 on SIGTERM (got %s)" % rc)
    check(not os.path.exists(web.token_file), "the token file is removed at exit")
    log = web.read_log()
    check("Assertion" not in log and not harness.sanitizer_reports(log),
          "traind-web's log has no assertion or sanitizer report: %s" % harness.sanitizer_reports(log)[:3])
    print("screenshots in", SHOTS, sorted(os.listdir(SHOTS)), flush=True)
    shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    harness.run(main)
