#!/usr/bin/env python3
"""The lesson's scenario through the daemon: a 5-epoch job on full MNIST
(the lesson's defaults) is killed right after epoch 3, resumed, finishes,
and its model is bit-identical to an uninterrupted job's. Also the JSON/CSV
shapes trainctl promises (a stable interface)."""
import csv
import io
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import Daemon, check, run, sha256_file  # noqa: E402

HISTORY_KEYS = {"epoch", "train_loss", "train_acc", "train_macro_acc", "val_loss", "val_acc",
                "val_macro_acc", "seconds"}
METRICS = ["train_loss", "train_acc", "train_macro_acc", "val_loss", "val_acc", "val_macro_acc"]


def epochs_of(rows):
    return [r["epoch"] for r in rows]


def main():
    d = Daemon(max_running=1).start()

    # start --json prints exactly {"id": N}
    rc, out, err = d.ctl("start", "--epochs", "5", "--json")
    doc = json.loads(out)
    check(isinstance(doc, dict) and set(doc) == {"id"} and isinstance(doc["id"], int),
          "start --json prints exactly {\"id\": N} (got %r)" % out.strip())
    job = doc["id"]

    rc, out, err = d.ctl("kill", job, "--after-epoch", "3", check_rc=False)
    check(rc == 0, "kill %s --after-epoch 3 accepted (rc %d, %s)" % (job, rc, err.strip()))
    rc, out, err = d.wait(job, "--state", "killed")
    check(rc == 0, "wait --state killed returns 0 (rc %d, %s)" % (rc, err.strip()))

    st = d.status(job)
    check(st["state"] == "killed", "the job is killed (state %s)" % st["state"])
    check(st["epoch"] == 3, "status shows epoch 3 after the kill (got %s)" % st["epoch"])
    hist = d.history(job)
    check(epochs_of(hist) == [1, 2, 3], "history after the kill has exactly epochs 1..3 (got %s)"
          % epochs_of(hist))
    check(d.sql("SELECT epoch FROM history WHERE job_id=? ORDER BY epoch", (job,)) == [(1,), (2,), (3,)],
          "SQLite history after the kill: epochs 1..3")
    check(d.sql("SELECT max(epoch) FROM checkpoints WHERE job_id=? AND kind='epoch'", (job,)) == [(3,)],
          "SQLite: the newest epoch checkpoint after the kill is epoch 3")

    rc, out, err = d.ctl("resume", job, check_rc=False)
    check(rc == 0, "resume %s (rc %d, %s)" % (job, rc, err.strip()))
    rc, out, err = d.wait(job, "--state", "done")
    check(rc == 0, "wait --state done returns 0 after the resume (rc %d, %s)" % (rc, err.strip()))

    hist = d.history(job)
    check(epochs_of(hist) == [1, 2, 3, 4, 5], "history has epochs 1..5 exactly once (got %s)"
          % epochs_of(hist))

    # The store: history, epoch checkpoints and the job row agree.
    h_sql = d.sql("SELECT epoch, val_loss FROM history WHERE job_id=? ORDER BY epoch", (job,))
    check([e for e, _ in h_sql] == [1, 2, 3, 4, 5], "SQLite history: epochs 1..5 exactly once (%s)"
          % [e for e, _ in h_sql])
    ck_sql = d.sql("SELECT epoch, step, kind, val_loss, size, length(blob) FROM checkpoints "
                   "WHERE job_id=? ORDER BY epoch, step", (job,))
    ck_epochs = [r[0] for r in ck_sql if r[2] == "epoch"]
    check(ck_epochs and ck_epochs[-1] == 5, "SQLite: the newest epoch checkpoint is epoch 5 (%s)" % ck_epochs)
    check(len(ck_epochs) == len(set(ck_epochs)), "SQLite: no epoch checkpoint twice")
    check(all(r[2] == "epoch" for r in ck_sql), "SQLite: no position checkpoint left once done (%s)"
          % [(r[0], r[1], r[2]) for r in ck_sql])
    hv = dict(h_sql)
    check(all(r[0] in hv and r[3] == hv[r[0]] for r in ck_sql if r[2] == "epoch"),
          "SQLite: every epoch checkpoint has its history row with the same val_loss")
    check(all(r[4] == r[5] for r in ck_sql), "SQLite: checkpoint size == length(blob)")
    check(d.sql("SELECT epoch, state FROM jobs WHERE id=?", (job,)) == [(5, "done")],
          "SQLite: jobs row says epoch 5, done")
    # default retention: keep 3 newest + best by val_loss
    best = min(h_sql, key=lambda r: (r[1], r[0]))[0]
    check(set(ck_epochs) == {3, 4, 5} | {best}, "default --keep 3: epoch checkpoints %s == {3,4,5} + best %d"
          % (ck_epochs, best))

    # eval on the test split
    ev = d.ctl_json("eval", job, "--split", "test")
    check({"loss", "acc"} <= set(ev), "eval --json has loss and acc (%s)" % sorted(ev))
    check(ev.get("acc", 0) >= 0.97, "test accuracy >= 0.97 (got %s)" % ev.get("acc"))
    check(ev.get("split") in (None, "test"), "eval --split test evaluates the test split")
    rc, out, err = d.ctl("eval", job, "--split", "test")
    print("   ", out.strip())

    # status --json
    st = d.status(job)
    check({"id", "state", "epoch", "epochs"} <= set(st), "status --json has id/state/epoch/epochs (%s)"
          % sorted(st))
    check(st["id"] == job and st["state"] == "done" and st["epoch"] == 5 and st["epochs"] == 5,
          "status: id %s, done, epoch 5/5 (got %s %s %s/%s)" % (job, st["id"], st["state"], st["epoch"],
                                                               st["epochs"]))

    # history --json keys
    # (+ note; + lr and grad_norm since schedules and clipping: the rate each
    # epoch began with, the constant lr here, and null as this job does not clip;
    # + val_mae and val_rmse since regression, null for a classification;
    # + val_ppl since language models, null for a classification)
    later = {"note", "lr", "grad_norm", "val_mae", "val_rmse", "val_ppl"}
    ok = all(isinstance(r, dict) and HISTORY_KEYS <= set(r) and set(r) - HISTORY_KEYS <= later
             and r.get("lr") == 0.001 and r.get("grad_norm") is None
             and r.get("val_mae") is None and r.get("val_rmse") is None and r.get("val_ppl") is None
             for r in hist)
    check(ok, "history --json rows keyed exactly %s (+ %s) (got %s)" % (sorted(HISTORY_KEYS), ", ".join(sorted(later)),
                                                                         sorted(hist[0]) if hist else None))
    notes = [r.get("note", "") for r in hist]
    check(all(n == "" for n in notes), "a plain resume adds no note to the history (%s)" % notes)

    # history --csv
    rc, out, err = d.ctl("history", job, "--csv")
    lines = out.splitlines()
    header = lines[0].split(",") if lines else []
    expect = ["epoch", "train_loss", "train_acc", "train_macro_acc", "val_loss", "val_acc",
              "val_macro_acc", "seconds"]
    check(header[:8] == expect and header[8:] in ([], ["note"], ["note", "lr", "grad_norm"],
                                                  ["note", "lr", "grad_norm", "val_mae", "val_rmse"],
                                                  ["note", "lr", "grad_norm", "val_mae", "val_rmse", "val_ppl"]),
          "history --csv header is %s[,note[,lr,grad_norm[,val_mae,val_rmse[,val_ppl]]]] (got %s)"
          % (",".join(expect), lines[0] if lines else ""))
    rows = list(csv.DictReader(io.StringIO(out)))
    check([int(r["epoch"]) for r in rows] == [1, 2, 3, 4, 5], "history --csv has rows for epochs 1..5")
    check(all(float(r["val_loss"]) == h["val_loss"] for r, h in zip(rows, hist)),
          "history --csv values read back exactly as the JSON ones")

    # The proof: an uninterrupted job with the same config gives the same bits.
    sha_resumed = sha256_file(d.export_file(job, "resumed.safetensors"))
    ref = d.start_job("--epochs", "5")
    rc, out, err = d.wait(ref, "--state", "done")
    check(rc == 0, "the uninterrupted reference job %s is done" % ref)
    sha_ref = sha256_file(d.export_file(ref, "reference.safetensors"))
    check(sha_resumed == sha_ref, "exported model of the killed+resumed job == uninterrupted job's "
          "(%s vs %s)" % (sha_resumed[:16], sha_ref[:16]))
    ref_hist = d.history(ref)
    same = [all(a[k] == b[k] for k in METRICS) for a, b in zip(hist, ref_hist)]
    check(len(ref_hist) == 5 and all(same), "history metrics of the resumed job == uninterrupted job's, "
          "bit for bit (per epoch: %s)" % same)
    # export reports the sha256 of what it wrote; --json form
    doc = d.ctl_json("export", job, "-o", os.path.join(d.dir, "again.safetensors"))
    if isinstance(doc, dict) and "sha256" in doc:
        check(doc["sha256"] == sha_resumed, "export --json's sha256 is the file's")


if __name__ == "__main__":
    run(main)
