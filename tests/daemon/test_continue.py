#!/usr/bin/env python3
"""Going on from a job.

- resume JOB --epochs N: a done job (and a paused one, mid-epoch) trains on to
  N epochs in all from its newest checkpoint; the history continues (epochs
  1..N once each) and its export is bit-identical to a job started with N
  epochs. N not more than the committed epochs is refused naming epochs.
- The job's config (status, SQLite) says N afterwards, so a daemon restart
  keeps it."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Daemon, check, run  # noqa: E402

# small epochs (1250 steps of 4): a few seconds each, long enough to pause in
SMALL = ["--train-size", "5000", "--batch-size", "4", "--val-size", "1000", "--hidden", "32"]


def epochs_of(rows):
    return [r["epoch"] for r in rows]


def main():
    d = Daemon(max_running=1).start()

    ref = d.start_job(*SMALL, "--epochs", "4")
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
    b = d.start_job(*SMALL, "--epochs", "2")
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
    check(d.export_sha(b) == d.export_sha(ref), "pause mid-epoch + resume --epochs 4 is bit-identical to the "
          "4-epoch job")

    # restart: the new epochs are the job's
    d.stop()
    d.start()
    check(d.status(a)["epochs"] == 4, "after a restart the job still has 4 epochs")


if __name__ == "__main__":
    run(main)
