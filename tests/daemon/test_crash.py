#!/usr/bin/env python3
"""traind dies (SIGKILL) mid-epoch: restarted with the same command, the job
continues by itself and ends bit-identical to an uninterrupted run, with a
sound database and a contiguous history. SIGTERM mid-epoch: traind exits 0
within seconds, and the next start continues the job bit-exactly. A pending
kill --after-epoch N survives a crash before epoch N."""
import os
import signal
import sqlite3
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import SANITIZER, Daemon, check, poll, run, sha256_file  # noqa: E402

# 2500 steps an epoch; under the sanitizers (the release tree runs the long
# form) 1000 steps, still several times the steps the test stops at (200)
CONFIG = ["--train-size", "4000" if SANITIZER else "10000", "--batch-size", "4",
          "--val-size", "500" if SANITIZER else "2000", "--epochs", "3"]
SMALL = ["--train-size", "1000" if SANITIZER else "3000", "--val-size", "500" if SANITIZER else "2000",
         "--epochs", "2"]


def store_consistent(d, job, what):
    """The store invariants a crash must not break, checked in SQLite."""
    hist = [r[0] for r in d.sql("SELECT epoch FROM history WHERE job_id=? ORDER BY epoch", (job,))]
    ck = d.sql("SELECT epoch, step, kind FROM checkpoints WHERE job_id=? ORDER BY epoch, step", (job,))
    (jepoch,) = d.sql("SELECT epoch FROM jobs WHERE id=?", (job,))[0]
    epoch_cks = [e for e, s, k in ck if k == "epoch"]
    ok = hist == list(range(1, len(hist) + 1)) and jepoch == len(hist)
    check(ok, "%s: history epochs contiguous 1..%d exactly once, jobs.epoch agrees (%s, %s)"
          % (what, len(hist), hist, jepoch))
    check((max(epoch_cks) if epoch_cks else 0) == len(hist),
          "%s: the history ends at the newest epoch checkpoint (%s)" % (what, epoch_cks))
    pos = [(e, s) for e, s, k in ck if k == "position"]
    check(len(pos) <= 1 and all(e == jepoch for e, s in pos),
          "%s: at most one position checkpoint, at the committed epoch (%s)" % (what, pos))
    return hist, pos


def integrity(d, what):
    r = d.sql("PRAGMA integrity_check")
    check(r == [("ok",)], "%s: PRAGMA integrity_check says ok (%s)" % (what, r[:3]))
    r = d.sql("PRAGMA foreign_key_check")
    check(r == [], "%s: PRAGMA foreign_key_check is clean (%s)" % (what, r[:3]))


def main():
    d = Daemon(max_running=1).start()

    # ---- SIGKILL mid-epoch ----
    job = d.start_job(*CONFIG)
    queued = d.start_job(*SMALL)
    rc, out, err = d.wait(job, "--epoch", "1")
    check(rc == 0, "epoch 1 committed before the crash")
    j = d.wait_running_at(job, epoch=1, min_step=200)
    check(d.status(queued)["state"] == "queued", "the second job waits as queued (max-running 1)")
    print("    SIGKILL at epoch %d step %d" % (j["epoch"] + 1, j["step"]))
    d.kill9()
    integrity(d, "after SIGKILL")
    hist, pos = store_consistent(d, job, "after SIGKILL")
    check(len(hist) >= 1, "at least one epoch was committed before the crash (%s)" % hist)
    check(d.sql("SELECT state FROM jobs WHERE id=?", (job,)) == [("running",)],
          "SQLite still says running after the crash")

    d.start()   # the same command
    st = d.status(job)
    check(st["state"] in ("queued", "running"), "after the restart the job is queued/running by itself (%s)"
          % st["state"])
    rc, out, err = d.wait(job, "--state", "done")
    check(rc == 0, "the job finishes after the restart with no command but wait (rc %d, %s)"
          % (rc, err.strip()))
    rc, out, err = d.wait(queued, "--state", "done")
    check(rc == 0, "the job queued at the crash runs and finishes too (rc %d, %s)" % (rc, err.strip()))
    hist, pos = store_consistent(d, job, "after the restart")
    check(hist == [1, 2, 3] and not pos, "history 1..3, no position checkpoint left (%s %s)" % (hist, pos))
    rows = d.history(job)
    check([r["epoch"] for r in rows] == [1, 2, 3], "trainctl history: epochs 1..3 once each")
    sha_crash = sha256_file(d.export_file(job, "crash.safetensors"))

    # ---- SIGTERM mid-epoch (and a paused job that must stay paused) ----
    paused = d.start_job(*CONFIG)
    d.wait_running_at(paused, epoch=1, min_step=100)
    d.ctl("pause", paused)
    before = d.job(paused)
    job2 = d.start_job(*CONFIG)
    d.wait_running_at(job2, epoch=1, min_step=200)
    t0 = time.time()
    d.signal(signal.SIGTERM)
    rc = d.wait_exit(30)
    took = time.time() - t0
    check(rc == 0, "SIGTERM during training: traind exits 0 (rc %s)" % rc)
    check(rc is not None and took < 5, "... within a few seconds (%.2f s)" % took)
    d.stop()
    integrity(d, "after SIGTERM")
    hist, pos = store_consistent(d, job2, "after SIGTERM")
    check(len(pos) == 1 and pos[0][1] > 0,
          "SIGTERM saved the exact position (a position checkpoint with step > 0: %s)" % pos)
    check(d.sql("SELECT state FROM jobs WHERE id=?", (job2,)) == [("running",)],
          "SQLite says running after SIGTERM, so the next start continues it")
    check(not os.path.exists(d.socket), "traind removed its socket on a clean exit")

    d.start()
    after = d.job(paused)
    keys = ("state", "epoch", "step", "val_acc")
    check(after["state"] == "paused", "a paused job stays paused across a restart (%s)" % after["state"])
    check(all(after.get(k) == before.get(k) for k in keys),
          "its status after the restart shows the same position: %s (before: %s)"
          % ({k: after.get(k) for k in keys}, {k: before.get(k) for k in keys}))
    check(after.get("steps_per_epoch") == before.get("steps_per_epoch"),
          "... and the same steps_per_epoch (%s, before the restart %s; trainctl shows step %s/%s)"
          % (after.get("steps_per_epoch"), before.get("steps_per_epoch"), after.get("step"),
             after.get("steps_per_epoch")))
    check((after.get("checkpoint") or {}).get("kind") == "position" and after["checkpoint"].get("step") == before["step"],
          "its newest checkpoint is still the position it paused at")
    rc, out, err = d.wait(job2, "--state", "done")
    check(rc == 0, "after SIGTERM and a restart the job finishes by itself (rc %d, %s)" % (rc, err.strip()))
    hist, pos = store_consistent(d, job2, "after SIGTERM + restart")
    check(hist == [1, 2, 3] and not pos, "history 1..3, no position checkpoint left")
    sha_term = sha256_file(d.export_file(job2, "term.safetensors"))
    d.ctl("resume", paused)
    rc, out, err = d.wait(paused, "--state", "done")
    check(rc == 0, "the paused job, resumed after the restart, finishes")
    sha_paused = sha256_file(d.export_file(paused, "paused.safetensors"))

    # ---- SIGKILL, and the newest checkpoint turns out corrupt ----
    job3 = d.start_job(*CONFIG)
    rc, out, err = d.wait(job3, "--epoch", "2")
    check(rc == 0, "epoch 2 committed")
    d.wait_running_at(job3, epoch=2, min_step=100)
    d.kill9()
    con = sqlite3.connect(d.db)
    try:
        cid, blob = con.execute("SELECT id, blob FROM checkpoints WHERE job_id=? AND kind='epoch' AND epoch=2",
                                (job3,)).fetchone()
        b = bytearray(blob)
        b[-100] ^= 0x55          # a flipped bit in the tensor data: the checksum no longer matches
        con.execute("UPDATE checkpoints SET blob=? WHERE id=?", (bytes(b), cid))
        con.commit()
    finally:
        con.close()
    d.start()
    # the worker finds epoch 2's checkpoint corrupt, drops it (and history row 2)
    # and continues from epoch 1: wait until it trains in epoch 2 again
    def retrained():
        j = d.job(job3)
        return j if j["state"] == "running" and j["epoch"] == 1 and j["step"] > 0 else None
    poll(retrained, timeout=300, what="job %d to restart from epoch 1" % job3)
    h = [r[0] for r in d.sql("SELECT epoch FROM history WHERE job_id=? ORDER BY epoch", (job3,))]
    check(h == [1], "the corrupt epoch 2 was dropped with its history row (history %s)" % h)
    st = d.job(job3)
    ck = st.get("checkpoint") or {}
    check(ck.get("epoch") == 1 and ck.get("kind") == "epoch",
          "status names epoch 1's checkpoint as the newest once epoch 2's was dropped (got %s %s)"
          % (ck.get("epoch"), ck.get("kind")))
    rc, out, err = d.wait(job3, "--epoch", "2")
    h = [r[0] for r in d.sql("SELECT epoch FROM history WHERE job_id=? ORDER BY epoch", (job3,))]
    check(rc == 0 and len(h) >= 2, "wait --epoch 2 returns only once epoch 2 is committed again "
          "(rc %d, history at that moment %s)" % (rc, h))
    rc, out, err = d.wait(job3, "--state", "done")
    check(rc == 0, "the job with a corrupt checkpoint finishes from the one before it (rc %d, %s)"
          % (rc, err.strip()))
    hist, pos = store_consistent(d, job3, "after the corrupt checkpoint")
    check(hist == [1, 2, 3], "history 1..3 once each after the fallback (%s)" % hist)
    check("unusable" in d.read_log() or "corrupt" in d.read_log(), "the log says the checkpoint was unusable")
    sha_corrupt = sha256_file(d.export_file(job3, "corrupt.safetensors"))

    # ---- --init-from: SIGKILL before the first epoch commits ----
    model = d.export_file(job, "model.safetensors")
    init = d.start_job(*(CONFIG + ["--init-from", model]))
    d.wait_running_at(init, epoch=0, min_step=100)
    d.kill9()
    d.start()
    rc, out, err = d.wait(init, "--state", "done")
    check(rc == 0, "an --init-from job SIGKILLed in its first epoch finishes after the restart (rc %d, %s)"
          % (rc, err.strip()))
    sha_init = sha256_file(d.export_file(init, "init-crash.safetensors"))
    init_ref = d.start_job(*(CONFIG + ["--init-from", model]))
    rc, out, err = d.wait(init_ref, "--state", "done")
    check(rc == 0, "uninterrupted --init-from job done")
    sha_init_ref = sha256_file(d.export_file(init_ref, "init-ref.safetensors"))
    check(sha_init == sha_init_ref, "it restarted from the --init-from model, not from scratch: same bits as "
          "an uninterrupted --init-from job (%s vs %s)" % (sha_init[:16], sha_init_ref[:16]))

    # ---- kill --after-epoch survives a crash before that epoch ----
    ka = d.start_job(*CONFIG)
    d.wait_running_at(ka, epoch=0, min_step=50)
    rc, out, err = d.ctl("kill", ka, "--after-epoch", "2", check_rc=False)
    check(rc == 0 and d.job(ka).get("kill_after") == 2, "kill --after-epoch 2 is pending (status kill_after %s)"
          % d.job(ka).get("kill_after"))
    rc, out, err = d.ctl("status", ka)
    check("pending: kill after epoch 2" in out, "trainctl status shows the pending kill (%r)" % out[-200:])
    check(d.sql("SELECT kill_after FROM jobs WHERE id=?", (ka,)) == [(2,)], "... and it is stored with the job")
    d.wait_running_at(ka, epoch=1, min_step=50)
    d.kill9()
    d.start()
    rc, out, err = d.wait(ka, "--state", "killed")
    st = d.job(ka)
    check(rc == 0 and st["epoch"] == 2, "after a SIGKILL in epoch 2 and a restart, the job is still killed "
          "right after epoch 2 (rc %d, state %s, epoch %s)" % (rc, st["state"], st["epoch"]))
    hist, pos = store_consistent(d, ka, "killed after epoch 2")
    check(hist == [1, 2] and "kill_after" not in st, "history 1..2, no kill pending any more (%s, %s)"
          % (hist, st.get("kill_after")))
    # traind stopped after epoch 2 committed but before it recorded 'killed'
    d.stop()
    con = sqlite3.connect(d.db)
    try:
        con.execute("UPDATE jobs SET state='running' WHERE id=?", (ka,))
        con.commit()
    finally:
        con.close()
    d.start()
    st = d.job(ka)
    check(st["state"] == "killed" and st["epoch"] == 2, "a job stored as running whose kill epoch had "
          "committed comes back killed, not retrained (%s at epoch %s)" % (st["state"], st["epoch"]))
    check("killed after epoch 2 as requested" in d.read_log(), "the log says why")
    d.ctl("resume", ka)
    rc, out, err = d.wait(ka, "--state", "done")
    check(rc == 0, "resumed, it finishes (rc %d, %s)" % (rc, err.strip()))
    check(d.sql("SELECT kill_after FROM jobs WHERE id=?", (ka,)) == [(None,)],
          "resume cleared the stored kill")
    sha_killed = sha256_file(d.export_file(ka, "killed.safetensors"))

    # ---- the uninterrupted reference ----
    ref = d.start_job(*CONFIG)
    rc, out, err = d.wait(ref, "--state", "done")
    check(rc == 0, "uninterrupted reference job done")
    sha_ref = sha256_file(d.export_file(ref, "ref.safetensors"))
    check(sha_crash == sha_ref, "SIGKILLed+restarted model == uninterrupted model (%s vs %s)"
          % (sha_crash[:16], sha_ref[:16]))
    check(sha_term == sha_ref, "SIGTERMed+restarted model == uninterrupted model (%s vs %s)"
          % (sha_term[:16], sha_ref[:16]))
    check(sha_paused == sha_ref, "paused, restarted, resumed model == uninterrupted model")
    check(sha_killed == sha_ref, "killed after epoch 2 across a crash, resumed: model == uninterrupted model")
    check(sha_corrupt == sha_ref, "the model replayed from the checkpoint before the corrupt one == "
          "uninterrupted model (%s vs %s)" % (sha_corrupt[:16], sha_ref[:16]))
    a = [(r["train_loss"], r["val_loss"]) for r in d.history(job)]
    b = [(r["train_loss"], r["val_loss"]) for r in d.history(ref)]
    check(a == b, "the crashed job's history == the uninterrupted one's, bit for bit")
    d.stop()
    integrity(d, "at the end")


if __name__ == "__main__":
    run(main)
