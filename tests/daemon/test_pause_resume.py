#!/usr/bin/env python3
"""Pause mid-epoch saves the exact position; resume continues bit-exactly.
resume --weights-only keeps the model with a fresh optimizer: different
bits, and the history says so."""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import SANITIZER, Daemon, Varlink, check, run, sha256_file  # noqa: E402

# ~2500 small steps per epoch (a fraction of a second each), so that a pause
# lands in the middle of an epoch; under the sanitizers (the release tree
# runs the long form) 1000, still three times the step the test pauses at
CONFIG = ["--train-size", "4000" if SANITIZER else "10000", "--batch-size", "4",
          "--val-size", "500" if SANITIZER else "2000", "--epochs", "3"]


def pause_mid_epoch_2(d, job, min_step):
    """Pause the job once it is min_step steps into epoch 2; return the
    pause's reply line."""
    j = d.wait_running_at(job, epoch=1, min_step=min_step)
    print("    pausing at epoch %d step %d/%d" % (j["epoch"] + 1, j["step"], j["steps_per_epoch"]))
    rc, out, err = d.ctl("pause", job, check_rc=False)
    check(rc == 0, "pause %s returns 0 (rc %d, %s)" % (job, rc, err.strip()))
    return out


def main():
    d = Daemon(max_running=1).start()

    # ---- pause, resume: bit-exact ----
    job = d.start_job(*CONFIG)
    out = pause_mid_epoch_2(d, job, 300)
    print("   ", out.strip())
    st = d.status(job)
    check(st["state"] == "paused", "the job is paused (state %s)" % st["state"])
    check(st["epoch"] == 1 and st["step"] > 0, "status shows the paused position: epoch 1 step > 0 "
          "(got epoch %s step %s)" % (st["epoch"], st["step"]))
    cks = d.ctl_json("checkpoints", job)
    pos = [c for c in cks if c.get("kind") == "position"]
    check(len(pos) == 1, "exactly one 'position' checkpoint after the pause (%s)"
          % [(c["epoch"], c["step"], c["kind"]) for c in cks])
    if pos:
        check(pos[0]["epoch"] == 1 and pos[0]["step"] > 0,
              "the position checkpoint is at epoch 1, step %s > 0" % pos[0]["step"])
        check(pos[0]["step"] == st["step"], "status step == the position checkpoint's step")
        check(st.get("checkpoint", {}).get("kind") == "position",
              "status names the position checkpoint as the newest")
    rows = d.sql("SELECT epoch, step FROM checkpoints WHERE job_id=? AND kind='position'", (job,))
    check(len(rows) == 1 and rows[0][1] > 0, "SQLite holds the position checkpoint (%s)" % rows)
    check([r["epoch"] for r in d.history(job)] == [1], "history after the pause: epoch 1 only")
    check(d.sql("SELECT state FROM jobs WHERE id=?", (job,)) == [("paused",)], "SQLite: job paused")

    # Eval's default is "the newest epoch checkpoint" (io.traind.varlink), not
    # the mid-epoch position: its loss is epoch 1's val_loss in the history.
    ev = d.ctl_json("eval", job)
    h1 = d.history(job)[0]
    check(ev.get("epoch") == 1 and ev.get("step", 0) == 0 and ev.get("loss") == h1["val_loss"],
          "eval with no --epoch on a paused job evaluates the newest epoch checkpoint (epoch 1, step 0, "
          "loss %s == history's %s; got epoch %s step %s)" % (ev.get("loss"), h1["val_loss"], ev.get("epoch"),
                                                             ev.get("step")))

    # pause again: not running -> refused, still paused
    rc, out, err = d.ctl("pause", job, check_rc=False)
    check(rc != 0 and err.strip(), "pausing a paused job is refused (rc %d: %s)" % (rc, err.strip()))

    rc, out, err = d.ctl("resume", job, check_rc=False)
    check(rc == 0, "resume %s (rc %d, %s)" % (job, rc, err.strip()))
    rc, out, err = d.wait(job, "--state", "done")
    check(rc == 0, "the resumed job finishes (rc %d, %s)" % (rc, err.strip()))
    hist = d.history(job)
    check([r["epoch"] for r in hist] == [1, 2, 3], "history: epochs 1..3 once each (%s)"
          % [r["epoch"] for r in hist])
    check(not [c for c in d.ctl_json("checkpoints", job) if c.get("kind") == "position"],
          "the position checkpoint is superseded once the next epoch commits")
    sha_paused = sha256_file(d.export_file(job))
    rc, out, err = d.ctl("resume", job, check_rc=False)
    check(rc != 0 and "done" in err and len(err.strip().splitlines()) == 1,
          "resuming a done job is refused, saying it is done (rc %d: %s)" % (rc, err.strip()))

    ref = d.start_job(*CONFIG)
    rc, out, err = d.wait(ref, "--state", "done")
    check(rc == 0, "uninterrupted reference job done")
    sha_ref = sha256_file(d.export_file(ref))
    check(sha_paused == sha_ref, "paused+resumed model == uninterrupted model (%s vs %s)"
          % (sha_paused[:16], sha_ref[:16]))
    ref_hist = d.history(ref)
    check([(r["train_loss"], r["val_loss"]) for r in hist] == [(r["train_loss"], r["val_loss"]) for r in ref_hist],
          "paused+resumed history losses == uninterrupted history's, bit for bit")

    # ---- pause, resume --weights-only ----
    wo = d.start_job(*CONFIG)
    # right after the epoch boundary (the epoch-1 commit may still be in
    # flight), by two clients at once: both are answered once it is paused
    d.wait_running_at(wo, epoch=1, min_step=1)
    v1, v2 = Varlink(d.socket, timeout=120), Varlink(d.socket, timeout=120)
    for v in (v1, v2):
        v.send_raw(json.dumps({"method": "io.traind.Pause", "parameters": {"id": wo}}).encode() + b"\0")
    r1, r2 = v1.recv(), v2.recv()
    v1.close()
    v2.close()
    check(all(r.get("parameters", {}).get("state") == "paused" for r in (r1, r2)),
          "two Pause calls at once both reply paused (%s, %s)" % (r1, r2))
    st = d.status(wo)
    check(st["state"] == "paused", "second job paused")
    check(len([c for c in d.ctl_json("checkpoints", wo) if c["kind"] == "position"]) <= 1,
          "at most one position checkpoint")
    rc, out, err = d.ctl("resume", wo, "--weights-only", check_rc=False)
    check(rc == 0, "resume --weights-only (rc %d, %s)" % (rc, err.strip()))
    rc, out, err = d.wait(wo, "--state", "done")
    check(rc == 0, "the weights-only resumed job finishes (rc %d, %s)" % (rc, err.strip()))
    sha_wo = sha256_file(d.export_file(wo))
    check(sha_wo != sha_ref, "a weights-only resume gives different weights than the uninterrupted run")
    hist = d.history(wo)
    check([r["epoch"] for r in hist] == [1, 2, 3], "weights-only history: epochs 1..3 once each")
    notes = {r["epoch"]: r.get("note", "") for r in hist}
    print("    notes:", notes)
    n2 = notes.get(2, "").lower().replace("_", "-").replace(" ", "-")
    check("weights-only" in n2, "the history note of epoch 2 (the one resumed) says weights-only (%r)"
          % notes.get(2))
    check(notes.get(1) == "" and notes.get(3) == "", "epochs 1 and 3 carry no note")
    rc, out, err = d.ctl("history", wo, "--csv")
    check("weights-only" in out.lower(), "history --csv shows the note")


if __name__ == "__main__":
    run(main)
