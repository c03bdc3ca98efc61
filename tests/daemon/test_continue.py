#!/usr/bin/env python3
"""Going on from a job.

- resume JOB --epochs N: a done job (and a paused one, mid-epoch) trains on to
  N epochs in all from its newest checkpoint; the history continues (epochs
  1..N once each) and its export is bit-identical to a job started with N
  epochs. N not more than the committed epochs is refused naming epochs.
- The job's config (status, SQLite) says N afterwards, so a daemon restart
  keeps it.
- start --from JOB@EPOCH: a new job from the full state of another's epoch
  checkpoint, with nothing changed, ends bit-identical to that job, its
  history beginning with the other's rows; with --lr changed it trains on
  differently and its first own history row says where it started; a
  setting the state depends on (batch size) is refused naming it; with
  --weights-only it is a fresh job from that model, bit-identical to
  start --init-from the epoch's export. The job records its origin (status,
  SQLite, across a restart)."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import Daemon, check, run  # noqa: E402

# small epochs (1250 steps of 4): a few seconds each, long enough to pause in
SMALL = ["--train-size", "5000", "--batch-size", "4", "--val-size", "1000", "--hidden", "32"]
# For the pause mid-epoch: 5000 steps an epoch, so that a pause sent at step
# 200 lands mid-epoch even on a loaded machine (SMALL's 1250 steps took 30 ms).
LONG = ["--train-size", "20000", "--batch-size", "4", "--val-size", "1000", "--hidden", "32"]


def epochs_of(rows):
    return [r["epoch"] for r in rows]


def main():
    d = Daemon(max_running=1).start()

    # the rng setting: torch by default, named when bad
    r = d.call("io.traind.Start", {"config": {"rng": "mt"}})
    check(r.get("error") == "org.varlink.service.InvalidParameter" and
          r.get("parameters", {}).get("parameter") == "config.rng",
          "Start with config rng 'mt': InvalidParameter config.rng (%s)" % r)
    rc, out, err = d.ctl("start", "--rng", "numpy", check_rc=False)
    check(rc == 2 and "--rng" in err and "torch or xoshiro" in err, "start --rng numpy: usage error (%s)" % err.strip())

    ref = d.start_job(*SMALL, "--epochs", "4")
    check(d.status(ref)["config"].get("rng") == "torch", "a new job's config says rng torch")
    a = d.start_job(*SMALL, "--epochs", "2")
    rc, _, err = d.wait(a, "--state", "done")
    check(rc == 0, "job %s (2 epochs) is done (rc %d, %s)" % (a, rc, err.strip()))

    # refused: not more than committed, and a bad value
    rc, out, err = d.ctl("resume", a, "--epochs", "2", check_rc=False)
    check(rc != 0 and "epochs" in err and "2" in err,
          "resume --epochs 2 of a job with 2 epochs is refused naming epochs (rc %d: %s)" % (rc, err.strip()))
    rc, out, err = d.ctl("resume", a, "--epochs", "1", check_rc=False)
    check(rc != 0 and "epochs" in err, "resume --epochs 1 is refused naming epochs (%s)" % err.strip())
    rc, out, err = d.ctl("resume", a, "--epochs", "zero", check_rc=False)
    check(rc == 2 and "--epochs" in err, "resume --epochs zero is a usage error (rc %d: %s)" % (rc, err.strip()))
    r = d.call("io.traind.Resume", {"id": a, "epochs": 0})
    check(r.get("error") == "org.varlink.service.InvalidParameter" and
          r.get("parameters", {}).get("parameter") == "epochs",
          "Resume epochs 0 over varlink: InvalidParameter epochs (%s)" % r)
    rc, out, err = d.ctl("resume", a, check_rc=False)
    check(rc != 0 and "done" in err, "resume of a done job without --epochs is refused (%s)" % err.strip())
    check(d.status(a)["state"] == "done", "the refused resumes left the job done")

    rc, out, err = d.ctl("resume", a, "--epochs", "4", check_rc=False)
    check(rc == 0, "resume %s --epochs 4 of a done job (rc %d, %s)" % (a, rc, err.strip()))
    st = d.status(a)
    check(st["epochs"] == 4 and st["config"]["epochs"] == 4, "status shows 4 epochs (%s, config %s)"
          % (st["epochs"], st["config"]["epochs"]))
    rc, _, err = d.wait(a, "--state", "done")
    check(rc == 0, "the resumed job is done again (rc %d, %s)" % (rc, err.strip()))
    rc, _, err = d.wait(ref, "--state", "done")
    check(rc == 0, "the 4-epoch job is done (rc %d)" % rc)
    check(epochs_of(d.history(a)) == [1, 2, 3, 4], "history continues: epochs %s" % epochs_of(d.history(a)))
    ha, hr = d.history(a), d.history(ref)
    same = all(x[k] == y[k] for x, y in zip(ha, hr) for k in ("train_loss", "val_loss", "val_acc"))
    check(same and len(ha) == len(hr), "its history equals the 4-epoch job's, to the bit")
    check(d.export_sha(a) == d.export_sha(ref), "the export of 2 epochs + resume --epochs 4 is bit-identical "
          "to a job started with 4 epochs")
    check(d.sql("SELECT epochs, json_extract(config, '$.epochs') FROM jobs WHERE id=?", (a,)) == [(4, 4)],
          "SQLite: the job's epochs column and config say 4")

    # a paused job, mid-epoch, given more epochs than it had
    b = d.start_job(*LONG, "--epochs", "2")
    ref_long = d.start_job(*LONG, "--epochs", "4")
    d.wait_running_at(b, epoch=1, min_step=200)
    d.ctl("pause", b)
    st = d.status(b)
    check(st["state"] == "paused" and st["step"] > 0, "job %s paused mid-epoch 2 (step %s)" % (b, st["step"]))
    rc, out, err = d.ctl("resume", b, "--epochs", "1", check_rc=False)
    check(rc != 0 and "epochs" in err, "resume --epochs 1 of a job with 1 committed epoch is refused (%s)"
          % err.strip())
    d.ctl("resume", b, "--epochs", "4")
    rc, _, err = d.wait(b, "--state", "done")
    check(rc == 0, "the paused job resumed with --epochs 4 is done (rc %d)" % rc)
    check(epochs_of(d.history(b)) == [1, 2, 3, 4], "its history: %s" % epochs_of(d.history(b)))
    rc, _, err = d.wait(ref_long, "--state", "done")
    check(d.export_sha(b) == d.export_sha(ref_long), "pause mid-epoch + resume --epochs 4 is bit-identical to the "
          "4-epoch job")

    # ---- start --from ----
    rc, out, err = d.ctl("start", "--from", ref, "--batch-size", "8", check_rc=False)
    check(rc != 0 and "--batch-size" in err and "--weights-only" in err,
          "start --from %s --batch-size 8 is refused naming --batch-size and --weights-only (rc %d: %s)"
          % (ref, rc, err.strip()))
    rc, out, err = d.ctl("start", "--from", "999", check_rc=False)
    check(rc != 0 and "999" in err, "start --from 999: no such job (%s)" % err.strip())
    rc, out, err = d.ctl("start", "--from", "%s@9" % ref, check_rc=False)
    check(rc != 0 and "checkpoint" in err, "start --from %s@9: no such checkpoint (%s)" % (ref, err.strip()))
    for bad in ("x", "3@", "@2", "3@-1"):
        rc, out, err = d.ctl("start", "--from", bad, check_rc=False)
        check(rc == 2 and "--from" in err, "start --from %s is a usage error (rc %d: %s)" % (bad, rc, err.strip()))
    rc, out, err = d.ctl("start", "--weights-only", check_rc=False)
    check(rc == 2 and "--from" in err, "start --weights-only without --from is a usage error (%s)" % err.strip())

    c = d.start_job("--from", "%s@2" % ref)
    st = d.status(c)
    check(st.get("origin") == "job %s epoch 2" % ref, "status: origin 'job %s epoch 2' (%r)" % (ref, st.get("origin")))
    check(st["epochs"] == 4 and st["config"]["train_size"] == 5000 and st["config"]["hidden"] == [32],
          "the new job has the other's configuration (epochs %s, train_size %s, hidden %s)"
          % (st["epochs"], st["config"]["train_size"], st["config"]["hidden"]))
    rc, out, err = d.ctl("status", c)
    check("from: job %s epoch 2" % ref in out, "trainctl status prints 'from: job %s epoch 2'" % ref)
    rc, _, err = d.wait(c, "--state", "done")
    check(rc == 0, "the job from %s@2 is done (rc %d)" % (ref, rc))
    hc = d.history(c)
    check(epochs_of(hc) == [1, 2, 3, 4], "its history: epochs %s" % epochs_of(hc))
    check([(r["train_loss"], r["val_loss"]) for r in hc[:2]] == [(r["train_loss"], r["val_loss"]) for r in hr[:2]],
          "its epochs 1-2 are the other job's rows")
    check(d.export_sha(c) == d.export_sha(ref), "from %s@2 with nothing changed: bit-identical to %s" % (ref, ref))
    check(d.sql("SELECT origin FROM jobs WHERE id=?", (c,)) == [("job %s epoch 2" % ref,)], "SQLite: jobs.origin")

    e = d.start_job("--from", "%s@2" % ref, "--lr", "0.0003", "--epochs", "3")
    rc, _, err = d.wait(e, "--state", "done")
    check(rc == 0, "the job from %s@2 with --lr 0.0003 is done (rc %d)" % (ref, rc))
    he = d.history(e)
    check(epochs_of(he) == [1, 2, 3] and d.status(e)["config"]["lr"] == 0.0003,
          "with --lr 0.0003 --epochs 3: epochs %s, lr %s" % (epochs_of(he), d.status(e)["config"]["lr"]))
    check(he[2]["val_loss"] != hr[2]["val_loss"], "its epoch 3 differs from the other job's (another lr)")
    check("started from job %s epoch 2" % ref in he[2]["note"], "epoch 3's note says where it started (%r)"
          % he[2]["note"])

    w = d.start_job("--from", "%s@2" % ref, "--weights-only", "--epochs", "1", "--lr", "0.0005")
    model2 = d.export_file(ref, name="ref-2.safetensors", epoch=2)
    i = d.start_job(*SMALL, "--epochs", "1", "--lr", "0.0005", "--init-from", model2)
    for job in (w, i):
        rc, _, err = d.wait(job, "--state", "done")
        check(rc == 0, "job %s is done (rc %d)" % (job, rc))
    check(d.status(w).get("origin") == "job %s epoch 2 (weights only)" % ref,
          "origin of the weights-only job: %r" % d.status(w).get("origin"))
    check(epochs_of(d.history(w)) == [1], "the weights-only job starts at epoch 0: history %s" % epochs_of(d.history(w)))
    check(d.export_sha(w) == d.export_sha(i), "--from %s@2 --weights-only is bit-identical to --init-from the "
          "epoch-2 export" % ref)

    # restart: the new epochs and the origins are the jobs'
    d.stop()
    d.start()
    check(d.status(a)["epochs"] == 4, "after a restart the job still has 4 epochs")
    check(d.status(c).get("origin") == "job %s epoch 2" % ref, "after a restart job %s still shows its origin" % c)


if __name__ == "__main__":
    run(main)
