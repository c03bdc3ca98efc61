#!/usr/bin/env python3
"""Disk and I/O faults: disk full during a commit (small tmpfs), a read-only
database, I/O errors on write and fsync (LD_PRELOAD tests/lib/faultshim.c), a
corrupted checkpoint blob, a database deleted under the daemon, a database of
a newer schema. In each: the job fails with the cause in status and the log
(or falls back to the previous good checkpoint), the daemon keeps serving,
nothing committed is lost, and once the cause is gone resume finishes
bit-identical to an uninterrupted run. (A half-applied migration is covered by
tests/unit/test-store.c.) The tmpfs cases need root and mount; skipped otherwise.
"""
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import BUILD, FAULTSHIM, Daemon, check, poll, preload, run  # noqa: E402

JOB = ["--train-size", "4000", "--val-size", "2000", "--epochs", "4", "--keep", "all"]
SHIM = FAULTSHIM


def history_epochs(d, jid):
    return [r[0] for r in d.sql("SELECT epoch FROM history WHERE job_id=? ORDER BY epoch", (jid,))]


def wait_stopped(d, jid, timeout=300):
    d.wait(jid, "--state", "done,paused,killed,failed", "--timeout", timeout)
    return d.job(jid)


def committed_intact(d, jid, n, what):
    """History 1..n and every epoch checkpoint 1..n still there and verifiable."""
    h = history_epochs(d, jid)
    check(h[:n] == list(range(1, n + 1)) and h == list(range(1, len(h) + 1)),
          "%s: committed history intact (%s)" % (what, h))
    for ep in range(1, n + 1):
        rc, out, err = d.ctl("eval", jid, "--epoch", ep, "--json", check_rc=False)
        check(rc == 0, "%s: epoch %d checkpoint still loads (%s)" % (what, ep, err.strip()))


def mount_tmpfs(path, size):
    os.makedirs(path, exist_ok=True)
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s" % size, "tmpfs", path],
                       capture_output=True, text=True)
    return p.returncode == 0, p.stderr.strip()


def umount(path):
    subprocess.run(["umount", "-l", path], capture_output=True)


def fill(path):
    """Fill the filesystem of `path` completely with a file at `path`."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    except OSError:
        return   # already full
    try:
        for size in (1 << 16, 512):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)


def truncate_wal(db):
    """PRAGMA wal_checkpoint(TRUNCATE) from a connection of our own (traind,
    idle with its job paused, holds no transaction open), retried while busy."""
    for _ in range(50):
        con = sqlite3.connect(db)
        try:
            busy, _, _ = con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            con.close()
        if busy == 0:
            wal = db + "-wal"
            check(not os.path.exists(wal) or os.path.getsize(wal) == 0,
                  "disk full: the write-ahead log is empty before the disk fills")
            return
        time.sleep(0.1)
    check(False, "disk full: could not empty the write-ahead log (busy)")


def reference(ref):
    jid = ref.start_job(*JOB)
    ref.wait(jid, "--state", "done")
    return ref.export_sha(jid)


def finish_after_fault(d, jid, ref_sha, what):
    rc, out, err = d.ctl("resume", jid, check_rc=False)
    check(rc == 0, "%s: resume accepted (%s)" % (what, err.strip()))
    j = wait_stopped(d, jid)
    check(j["state"] == "done", "%s: resumed job finishes (%s %s)" % (what, j["state"], j.get("error")))
    if j["state"] == "done":
        check(d.export_sha(jid) == ref_sha, "%s: final weights bit-identical to an uninterrupted run" % what)
        check(history_epochs(d, jid) == [1, 2, 3, 4], "%s: history 1..4" % what)


def pause_at_epoch(d, jid, epoch):
    """Pause the job once `epoch` epochs are committed (it is then mid-epoch)."""
    d.wait(jid, "--epoch", epoch)
    d.ctl("pause", jid)
    j = d.job(jid)
    check(j["state"] == "paused" and j["committed_epoch"] >= epoch, "job %s paused after epoch %d" % (jid, epoch))
    return j["committed_epoch"]


def test_disk_full(ref_sha, root):
    mnt = os.path.join(root, "full")
    ok, why = mount_tmpfs(mnt, "32m")
    if not ok:
        print("SKIP: disk full: cannot mount a tmpfs (%s); needs root" % why)
        return
    try:
        d = Daemon(workdir=tempfile.mkdtemp(prefix="traind-full-"), db_path=os.path.join(mnt, "traind.db"))
        d.start()
        jid = d.start_job(*JOB)
        n = pause_at_epoch(d, jid, 1)
        # Empty the write-ahead log first: the blocks of a WAL grown by earlier
        # writes are reused without new space, so the next commits could fit
        # in it even on a full disk (and the test would see no fault at all).
        truncate_wal(d.db)
        filler = os.path.join(mnt, "filler")
        fill(filler)
        d.ctl("resume", jid)
        j = wait_stopped(d, jid)
        err = j.get("error") or ""
        check(j["state"] == "failed", "disk full: job failed (%s)" % j["state"])
        check(re.search(r"disk|full|space", err, re.I) is not None, "disk full: cause in status: %r" % err)
        check(re.search(r"job %s: failed: .*(disk|full|space)" % jid, d.read_log(), re.I) is not None,
              "disk full: cause in the log")
        # 'failed' is in the database itself (the write used the room traind
        # reserves beside it), so a restart does not run the job again
        check(d.sql("SELECT state FROM jobs WHERE id = ?", (jid,)) == [("failed",)],
              "disk full: 'failed' is recorded in the database (%s)" % d.sql("SELECT state FROM jobs WHERE id = ?",
                                                                             (jid,)))
        check(re.search(r"job %s: the disk is full: its state \w+ was recorded in the room reserved" % jid,
                        d.read_log()) is not None, "disk full: traind says it used its reserve")
        logged = len(d.read_log())
        d.kill9()
        d.start()
        time.sleep(1.5)
        j = d.job(jid)
        check(j["state"] == "failed" and "job %s (" % jid not in d.read_log()[logged:] and
              "job %s: started" % jid not in d.read_log()[logged:],
              "disk full: after a restart (the disk still full) the job stays failed, not run again (%s)" % j["state"])
        # the daemon keeps serving: status, list, a new job's start and status
        check(d.alive(), "disk full: traind still running")
        rc, out, _ = d.ctl("list", check_rc=False)
        check(rc == 0, "disk full: list answers")
        rc, out, e2 = d.ctl("start", *(JOB + ["--json"]), check_rc=False)
        check(rc == 0 or (rc == 1 and re.search(r"storage error: .*(disk|full)", e2) is not None),
              "disk full: another job can be queued (or is refused cleanly): %s" % e2.strip())
        if rc == 0:
            other = int(__import__("json").loads(out)["id"])
            jo = wait_stopped(d, other, timeout=120)
            check(jo["state"] in ("failed", "done"), "disk full: the other job stops cleanly (%s: %s)" % (
                jo["state"], jo.get("error")))
            d.ctl("status", other)
        committed_intact(d, jid, n, "disk full")
        os.unlink(filler)
        finish_after_fault(d, jid, ref_sha, "disk full")
        d.stop()
        con = sqlite3.connect(d.db)
        check(con.execute("PRAGMA integrity_check").fetchall() == [("ok",)], "disk full: integrity_check ok")
        con.close()
    finally:
        try:
            d.stop()
        except Exception:
            pass
        umount(mnt)


def test_read_only(ref_sha, root):
    """The database's file system turns read-only while traind is stopped (a
    remount of a busy file system is refused, so not while it runs)."""
    mnt = os.path.join(root, "ro")
    ok, why = mount_tmpfs(mnt, "64m")
    if not ok:
        print("SKIP: read-only database: cannot mount a tmpfs (%s); needs root" % why)
        return
    try:
        d = Daemon(workdir=tempfile.mkdtemp(prefix="traind-ro-"), db_path=os.path.join(mnt, "traind.db"))
        d.start()
        jid = d.start_job(*JOB)
        n = pause_at_epoch(d, jid, 1)
        d.stop()
        p = subprocess.run(["mount", "-o", "remount,ro", mnt], capture_output=True, text=True)
        check(p.returncode == 0, "read-only: remount ro (%s)" % p.stderr.strip())
        d.start(wait=False)
        rc = d.wait_exit(30)
        if rc is None:
            # it serves: then the job must fail with a clear error on resume
            d.wait_ready()
            d.ctl("resume", jid, check_rc=False)
            j = wait_stopped(d, jid)
            err = j.get("error") or ""
            check(j["state"] == "failed", "read-only: job failed (%s)" % j["state"])
            check(re.search(r"read-only|readonly|read only", err, re.I) is not None,
                  "read-only: cause in status: %r" % err)
            d.stop()
        else:
            last = (d.read_log().strip().splitlines() or [""])[-1]
            check(rc != 0 and re.search(r"read-only|readonly|read only", last, re.I) is not None,
                  "read-only: traind refuses to start with a clear message: %r" % last)
        subprocess.run(["mount", "-o", "remount,rw", mnt], check=True)
        d.start()
        committed_intact(d, jid, n, "read-only")
        finish_after_fault(d, jid, ref_sha, "read-only")
        d.stop()
    finally:
        try:
            d.stop()
        except Exception:
            pass
        umount(mnt)


def test_eio(ref_sha, ops):
    what = "EIO on %s" % ops
    if not os.path.exists(SHIM):
        print("SKIP: %s: %s not built" % (what, SHIM))
        return
    wd = tempfile.mkdtemp(prefix="traind-eio-")
    trig = os.path.join(wd, "fail-now")
    d = Daemon(workdir=wd, extra_env={"LD_PRELOAD": preload(SHIM),
                                      "FAULTSHIM_PATH": os.path.join(wd, "traind.db"),
                                      "FAULTSHIM_OPS": ops, "FAULTSHIM_TRIGGER": trig})
    d.start()
    jid = d.start_job(*JOB)
    n = pause_at_epoch(d, jid, 1)
    open(trig, "w").close()
    d.ctl("resume", jid)
    j = wait_stopped(d, jid)
    err = j.get("error") or ""
    check(j["state"] == "failed", "%s: job failed (%s)" % (what, j["state"]))
    check(re.search(r"I/O|disk", err, re.I) is not None, "%s: cause in status: %r" % (what, err))
    check(re.search(r"job %s: failed: " % jid, d.read_log()) is not None, "%s: failure in the log" % what)
    check(d.alive(), "%s: traind still running" % what)
    os.unlink(trig)
    rc, _, _ = d.ctl("list", check_rc=False)
    check(rc == 0, "%s: list answers" % what)
    committed_intact(d, jid, n, what)
    finish_after_fault(d, jid, ref_sha, what)
    d.stop()


def flip_newest_epoch_blob(db, jid):
    con = sqlite3.connect(db)
    cid, ep, blob = con.execute("SELECT id, epoch, blob FROM checkpoints WHERE job_id=? AND kind='epoch' "
                                "ORDER BY epoch DESC LIMIT 1", (jid,)).fetchone()
    b = bytearray(blob)
    for off in (len(b) - 100, len(b) // 2):
        b[off] ^= 0xFF
    con.execute("UPDATE checkpoints SET blob=? WHERE id=?", (bytes(b), cid))
    con.commit()
    con.close()
    return ep


def test_corrupt_blob(ref_sha):
    d = Daemon()
    d.start()
    jid = d.start_job(*JOB)
    # Killed by traind right after epoch 3 commits: a kill sent once `wait`
    # saw epoch 3 could arrive after epoch 4 on a loaded machine.
    d.ctl("kill", jid, "--after-epoch", "3")
    d.wait(jid, "--state", "killed")
    d.stop()
    ep = flip_newest_epoch_blob(d.db, jid)
    check(ep == 3, "corrupt blob: flipped bytes in the epoch %d checkpoint" % ep)
    d.start()
    rc, out, err = d.ctl("eval", jid, "--epoch", ep, check_rc=False)
    check(rc != 0, "corrupt blob: eval of the corrupt checkpoint refused (%s)" % err.strip())
    d.ctl("resume", jid)
    j = wait_stopped(d, jid)
    log = d.read_log()
    check("falling back" in log, "corrupt blob: the log says it falls back to the checkpoint before")
    check(re.search(r"had resumed from epoch 2 step 0", log) is not None, "corrupt blob: resumed from epoch 2")
    check(j["state"] == "done", "corrupt blob: job done (%s %s)" % (j["state"], j.get("error")))
    if j["state"] == "done":
        check(d.export_sha(jid) == ref_sha, "corrupt blob: final weights bit-identical")
        check(history_epochs(d, jid) == [1, 2, 3, 4], "corrupt blob: history 1..4 (3 recomputed)")


def test_moved_db(ref_sha, how):
    """The database file deleted (or replaced by a copy) under a running
    traind: SQLite would write on into the old inode and every later commit
    would be lost at the next start; traind notices before each write
    transaction and fails the job with a clear error; it keeps serving."""
    what = "database %s" % how
    d = Daemon()
    d.start()
    jid = d.start_job(*JOB)
    d.wait(jid, "--epoch", 1)
    if how == "deleted":
        for suffix in ("", "-wal", "-shm"):
            try:
                os.unlink(d.db + suffix)
            except FileNotFoundError:
                pass
    else:
        shutil.copyfile(d.db, d.db + ".new")
        os.replace(d.db + ".new", d.db)
    j = wait_stopped(d, jid)
    err = j.get("error") or ""
    print("%s: job ended %s (%s)" % (what, j["state"], err))
    check(d.alive(), "%s: traind still running" % what)
    check(j["state"] == "failed" and "deleted or replaced" in err,
          "%s: the job fails with a clear error (%s: %r)" % (what, j["state"], err))
    rc, out, e = d.ctl("list", check_rc=False)
    check(rc == 0, "%s: list answers" % what)
    rc, out, e = d.ctl("start", *JOB, check_rc=False)
    check(rc != 0 and "deleted or replaced" in e, "%s: a new start is refused clearly: %r" % (what, e.strip()))
    d.stop()
    if how == "replaced":
        # the replacement holds what was committed before; traind continues from it
        d.start()
        j = d.job(jid)
        check(j["committed_epoch"] >= 1, "%s: after a restart the replacement's epochs are there" % what)
        if j["state"] in ("failed", "paused", "killed"):
            d.ctl("resume", jid)
        j = wait_stopped(d, jid)
        check(j["state"] == "done" and d.export_sha(jid) == ref_sha,
              "%s: after a restart the job finishes bit-identical (%s)" % (what, j["state"]))
        d.stop()


def test_newer_schema():
    d = Daemon()
    d.start()
    d.stop()
    con = sqlite3.connect(d.db)
    con.execute("PRAGMA user_version=99")
    con.commit()
    con.close()
    d.start(wait=False)
    rc = d.wait_exit(30)
    log = d.read_log()
    check(rc not in (None, 0), "newer schema: traind refuses to start (rc %s)" % rc)
    check("newer" in log, "newer schema: the message says newer: %s" % log.strip().splitlines()[-1:])


def main():
    root = tempfile.mkdtemp(prefix="traind-faults-")
    ref = Daemon()
    ref.start()
    ref_sha = reference(ref)
    ref.stop()
    test_newer_schema()
    test_corrupt_blob(ref_sha)
    test_disk_full(ref_sha, root)
    test_read_only(ref_sha, root)
    test_eio(ref_sha, "fsync")
    test_eio(ref_sha, "write")
    test_moved_db(ref_sha, "deleted")
    test_moved_db(ref_sha, "replaced")
    shutil.rmtree(root, ignore_errors=True)


run(main)
