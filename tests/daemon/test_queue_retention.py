#!/usr/bin/env python3
"""Scheduling (--max-running), checkpoint retention (--keep), the exported
model's safetensors layout, and --init-from (matching and mismatching)."""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import SANITIZER, Daemon, check, run, safetensors_header, sha256_file  # noqa: E402

# under the sanitizers (the release tree runs the long form) SLOW is 1000
# steps an epoch instead of 2500, still long beside the queue's changes
SLOW = ["--train-size", "4000" if SANITIZER else "10000", "--batch-size", "4",
        "--val-size", "500" if SANITIZER else "2000", "--epochs", "2"]
SMALL = ["--train-size", "1000" if SANITIZER else "3000", "--val-size", "500" if SANITIZER else "2000",
         "--epochs", "2"]
# A config whose best val_loss comes before the last two epochs (it overfits),
# so that "newest K + best" differs from "newest K".
OVERFIT = ["--train-size", "1000", "--lr", "0.01", "--val-size", "2000", "--epochs", "5"]


def states(d, *jobs):
    """The jobs' states from one io.traind.List reply: a single snapshot
    taken by the loop thread, so two jobs are never sampled at different
    moments (one Status call per job could see the first still running and
    the second already started after it finished)."""
    r = d.call("io.traind.List")
    if "error" in r:
        raise RuntimeError("List: %s" % r)
    by_id = {int(j["id"]): j["state"] for j in r["parameters"]["jobs"]}
    return tuple(by_id[int(j)] for j in jobs)


def check_queue_one(d):
    a = d.start_job(*SLOW)
    b = d.start_job(*SMALL)
    d.wait_running_at(a, epoch=0, min_step=1)
    sa, sb = states(d, a, b)
    check((sa, sb) == ("running", "queued"), "--max-running 1: the second job is queued while the first "
          "runs (%s, %s)" % (sa, sb))
    rc, out, err = d.ctl("status", b)
    check("queued" in out, "trainctl status shows queued: %s" % out.strip())
    check(d.history(b) == [], "history --json of a job that has not trained is []")
    rc, out, err = d.ctl("history", b, "--csv")
    check(rc == 0 and len(out.splitlines()) == 1 and out.startswith("epoch,"),
          "history --csv of a job that has not trained is the header only (%r)" % out)
    check(d.ctl_json("checkpoints", b) == [], "checkpoints --json of a job that has not trained is []")
    seen = set()
    deadline = time.time() + 600
    while time.time() < deadline:
        sa, sb = states(d, a, b)
        seen.add((sa, sb))
        if sa == "done":
            break
        time.sleep(0.005)
    bad = [s for s in seen if s[0] in ("queued", "running") and s[1] not in ("queued",)]
    check(not bad, "the second job never ran while the first did (seen %s)" % sorted(seen))
    rc, out, err = d.wait(b, "--state", "done")
    check(rc == 0, "the queued job then runs and finishes (rc %d, %s)" % (rc, err.strip()))
    return sha256_file(d.export_file(a, "slow-alone.safetensors"))


def check_queue_order(d):
    """Queued jobs start in the order they were queued; pause/kill take a
    queued job out of the queue, resume puts it at the back."""
    a = d.start_job(*SLOW)
    b = d.start_job(*SMALL)
    c = d.start_job(*SMALL)
    d.wait_running_at(a, epoch=0, min_step=1)
    rc, out, err = d.ctl("pause", b, check_rc=False)
    check(rc == 0 and d.job(b)["state"] == "paused", "a queued job can be paused (%s)" % d.job(b)["state"])
    rc, out, err = d.ctl("kill", c, check_rc=False)
    check(rc == 0 and d.job(c)["state"] == "killed", "a queued job can be killed (%s)" % d.job(c)["state"])
    e = d.start_job(*SMALL)
    d.ctl("resume", c)
    d.ctl("resume", b)
    check(states(d, a, b, c, e) == ("running", "queued", "queued", "queued"),
          "after resume both are queued again behind the running job (%s)" % (states(d, a, b, c, e),))
    order = []
    deadline = time.time() + 600
    while time.time() < deadline and len(order) < 4:
        snap = dict(zip((a, b, c, e), states(d, a, b, c, e)))
        # With one job running at a time, a job already done in this
        # snapshot started before the one running in it.
        order += [j for j in (a, b, c, e) if j not in order and snap[j] == "done"]
        order += [j for j in (a, b, c, e) if j not in order and snap[j] == "running"]
        time.sleep(0.001)
    names = {a: "first", b: "paused+resumed", c: "killed+resumed", e: "started later"}
    check(order == [a, e, c, b], "run order: the running one, the later start, then the resumed ones in "
          "the order resumed (got %s)" % [names[j] for j in order])
    for j in (a, b, c, e):
        rc, out, err = d.wait(j, "--state", "done")
        check(rc == 0, "job %s (%s) done" % (j, names[j]))


def check_queue_two(d):
    a = d.start_job(*SLOW)
    b = d.start_job(*SLOW)
    both = False
    deadline = time.time() + 300
    while time.time() < deadline:
        ja, jb = d.job(a), d.job(b)
        if ja["state"] == jb["state"] == "running" and ja["step"] > 0 and jb["step"] > 0:
            both = True
            break
        if "done" in (ja["state"], jb["state"]):
            break
        time.sleep(0.005)
    check(both, "--max-running 2: both jobs train at the same time")
    for j in (a, b):
        rc, out, err = d.wait(j, "--state", "done")
        check(rc == 0, "job %s done (rc %d, %s)" % (j, rc, err.strip()))
    return sha256_file(d.export_file(a, "slow-a.safetensors")), sha256_file(d.export_file(b, "slow-b.safetensors"))


def check_retention(d):
    k2 = d.start_job(*(OVERFIT + ["--keep", "2"]))
    kall = d.start_job(*(OVERFIT + ["--keep", "all"]))
    for j in (k2, kall):
        rc, out, err = d.wait(j, "--state", "done")
        check(rc == 0, "retention job %s done" % j)
    hist = d.history(k2)
    vl = {r["epoch"]: r["val_loss"] for r in hist}
    best = min(vl, key=lambda e: (vl[e], e))
    print("    val_loss by epoch: %s, best epoch %d" % ({e: round(v, 4) for e, v in vl.items()}, best))
    if best >= 4:
        print("    note: the best epoch is among the newest two; retention of 'best' is not exercised")
    cks = d.ctl_json("checkpoints", k2)
    got = sorted(c["epoch"] for c in cks if c["kind"] == "epoch")
    want = sorted({4, 5, best})
    check(got == want, "--keep 2 over 5 epochs keeps the newest 2 + the best by val_loss: %s (want %s)"
          % (got, want))
    check(all(c.get("val_loss") == vl[c["epoch"]] for c in cks if c["kind"] == "epoch"),
          "checkpoints --json val_loss values match the history")
    check(all(c["step"] == 0 for c in cks if c["kind"] == "epoch"), "epoch checkpoints are at step 0")
    check(d.status(k2)["keep"] == 2, "status shows keep 2")
    sql = sorted(r[0] for r in d.sql("SELECT epoch FROM checkpoints WHERE job_id=? AND kind='epoch'", (k2,)))
    check(sql == want, "SQLite holds exactly those epoch checkpoints (%s)" % sql)
    check([r["epoch"] for r in hist] == [1, 2, 3, 4, 5], "history is never pruned (epochs 1..5)")
    # a pruned epoch cannot be exported or evaluated; a kept one can
    pruned = [e for e in range(1, 6) if e not in want]
    if pruned:
        rc, out, err = d.ctl("export", k2, "--epoch", pruned[0], "-o", os.path.join(d.dir, "x.safetensors"),
                             check_rc=False)
        check(rc != 0 and err.strip(), "export of pruned epoch %d fails: %s" % (pruned[0], err.strip()))
    ev = d.ctl_json("eval", k2, "--epoch", best)
    check(ev.get("epoch") == best and abs(ev["loss"] - vl[best]) < 1e-9,
          "eval --epoch %d (the best, kept) gives the history's val_loss (%s vs %s)"
          % (best, ev.get("loss"), vl[best]))

    cks = d.ctl_json("checkpoints", kall)
    got = sorted(c["epoch"] for c in cks if c["kind"] == "epoch")
    check(got == [1, 2, 3, 4, 5], "--keep all keeps all 5 epoch checkpoints (%s)" % got)
    check(d.status(kall)["keep"] == -1, "status shows keep -1 for all")


def check_export_layout(path):
    header, data_len = safetensors_header(path)
    meta = header.pop("__metadata__", None)
    check(isinstance(meta, dict) and meta.get("format") == "pt", "__metadata__ has format pt (%s)" % meta)
    want = {"net.1.weight": [256, 784], "net.1.bias": [256], "net.3.weight": [10, 256], "net.3.bias": [10]}
    check(set(header) == set(want), "export holds exactly %s (got %s)" % (sorted(want), sorted(header)))
    for name, shape in want.items():
        t = header.get(name, {})
        check(t.get("dtype") == "F32" and t.get("shape") == shape, "%s: F32 %s (got %s %s)"
              % (name, shape, t.get("dtype"), t.get("shape")))
    spans = sorted(tuple(t["data_offsets"]) for t in header.values())
    pos, ok = 0, True
    for a, b in spans:
        ok = ok and a == pos and b >= a
        pos = b
    ok = ok and pos == data_len
    check(ok, "data_offsets tile the %d data bytes exactly (%s)" % (data_len, spans))
    sizes_ok = all(t["data_offsets"][1] - t["data_offsets"][0] == 4 * _prod(t["shape"]) for t in header.values())
    check(sizes_ok, "every tensor's byte span is 4 * its element count")


def _prod(shape):
    p = 1
    for s in shape:
        p *= s
    return p


def check_init_from(d):
    src = d.start_job(*SMALL)
    rc, out, err = d.wait(src, "--state", "done")
    check(rc == 0, "source job done")
    path = d.export_file(src, "model.safetensors")
    check_export_layout(path)

    init = d.start_job(*(SMALL[:-1] + ["1", "--init-from", path]))
    rc, out, err = d.wait(init, "--state", "done")
    check(rc == 0, "a job started --init-from the exported model finishes (rc %d, %s)" % (rc, err.strip()))
    h_init = d.history(init)
    h_src = d.history(src)
    check(len(h_init) == 1 and h_init[0]["val_loss"] < h_src[0]["val_loss"],
          "it starts from the trained model: val_loss after its 1 epoch %.4f < a fresh model's first epoch %.4f"
          % (h_init[0]["val_loss"] if h_init else -1, h_src[0]["val_loss"]))
    fresh = d.start_job(*(SMALL[:-1] + ["1"]))
    d.wait(fresh, "--state", "done")
    check(sha256_file(d.export_file(fresh, "fresh.safetensors")) != sha256_file(d.export_file(init, "init.safetensors")),
          "--init-from changes the result (differs from the same config without it)")

    # a model of another shape is refused at start, naming init_from
    small = d.start_job("--hidden", "128", "--train-size", "1000", "--val-size", "2000", "--epochs", "1")
    d.wait(small, "--state", "done")
    p128 = d.export_file(small, "h128.safetensors")
    header, _ = safetensors_header(p128)
    check(header.get("net.1.weight", {}).get("shape") == [128, 784], "--hidden 128 export has net.1.weight [128,784]")
    n_before = len(d.ctl_json("list") or [])
    rc, out, err = d.ctl("start", "--hidden", "256", "--train-size", "1000", "--epochs", "1",
                         "--init-from", p128, check_rc=False)
    print("    mismatch:", err.strip())
    check(rc != 0, "start --init-from a --hidden 128 model into a --hidden 256 job fails (rc %d)" % rc)
    check("init_from" in err or "init-from" in err, "the error names init_from: %s" % err.strip())
    check(len(err.strip().splitlines()) == 1, "the error is one line")
    check(out.strip() == "", "nothing on stdout")
    check(len(d.ctl_json("list") or []) == n_before, "no job was created")

    junk = os.path.join(d.dir, "junk.safetensors")
    with open(junk, "wb") as f:
        f.write(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\": 1}garbage!")
    rc, out, err = d.ctl("start", "--epochs", "1", "--init-from", junk, check_rc=False)
    check(rc != 0 and ("init_from" in err or "init-from" in err),
          "a file that is not a safetensors model is refused naming init_from: %s" % err.strip())


def main():
    d1 = Daemon(max_running=1).start()
    sha_alone = check_queue_one(d1)
    check_queue_order(d1)
    d2 = Daemon(max_running=2).start()
    sha_a, sha_b = check_queue_two(d2)
    check(sha_a == sha_b == sha_alone, "jobs side by side give the same bits as one alone (%s %s %s)"
          % (sha_a[:12], sha_b[:12], sha_alone[:12]))
    d2.stop()
    check_retention(d1)
    check_init_from(d1)


if __name__ == "__main__":
    run(main)
