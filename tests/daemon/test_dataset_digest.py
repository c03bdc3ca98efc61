#!/usr/bin/env python3
"""A job's data cannot change under it. Each job records its dataset's digest
(shown by status); a dataset edited while the job is paused makes resume and
eval refuse, naming the dataset, both digests and --allow-data-change; with
the files restored the job resumes and ends bit-identical to a run that never
stopped. The same across a traind restart: a job recovered at start-up on
changed files goes to failed with that reason, and resumes once they are
restored. A job stored before digests records one at its next resume."""
import os
import shutil
import signal
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import SANITIZER, Daemon, check, run, sha256_file  # noqa: E402
from dsdata import dataset_digest, write_small_mnist  # noqa: E402

# 1000 small steps per epoch, so a pause lands mid-epoch.
# 1000 steps an epoch; under the sanitizers (the release tree runs the long
# form) 500, still past the step 100 the test pauses at
CONFIG = ["--dataset", "small", "--train-size", "2000" if SANITIZER else "4000",
          "--val-size", "500" if SANITIZER else "1000", "--batch-size", "4", "--epochs", "2"]


def edit(path):
    """Flip one pixel; returns the original bytes."""
    data = open(path, "rb").read()
    b = bytearray(data)
    b[5000] ^= 0xFF
    with open(path, "wb") as f:
        f.write(b)
    return data


def restore(path, data):
    with open(path, "wb") as f:
        f.write(data)


def refused_for_change(d, rc, err, job, recorded, now, verb):
    line = err.strip()
    check(rc != 0 and len(line.splitlines()) == 1, "%s is refused with one line (rc %d: %s)" % (verb, rc, line))
    want = ("dataset small changed since job %s started" % job, recorded[7:19], now[7:19],
            "--allow-data-change")
    check(all(w in line for w in want), "the refusal names the dataset, the job, both digests and "
          "--allow-data-change: %s" % line)


def main():
    work = os.path.abspath(os.path.join(os.environ.get("TMPDIR", "/tmp"), "traind-dsd-%d" % os.getpid()))
    data = os.path.join(work, "data")
    small = write_small_mnist(os.path.join(data, "small"))
    images = os.path.join(small, "train-images-idx3-ubyte")
    digest = dataset_digest(small)
    d = Daemon(max_running=1, data_dir=data).start()

    # ---- the reference: the same config, never stopped ----
    ref = d.start_job(*CONFIG)
    rc, out, err = d.wait(ref, "--state", "done")
    check(rc == 0, "the reference job finishes (%s)" % err.strip())
    ref_sha = sha256_file(d.export_file(ref))
    st = d.status(ref)
    check(st.get("dataset_digest") == digest, "status shows the dataset's digest, as defined "
          "(%s, computed here %s)" % (st.get("dataset_digest"), digest))
    rc, out, err = d.ctl("status", ref)
    check("dataset: small " + digest in out, "status's text names the dataset and its digest")
    check(d.sql("SELECT dataset_digest FROM jobs WHERE id=?", (ref,)) == [(digest,)],
          "the digest is stored with the job")
    check(d.sql("SELECT count(*) FROM dataset_files")[0][0] == 4, "each of the 4 files' digest is cached")

    # ---- edited while paused: resume and eval refused; restored: bit-identical ----
    job = d.start_job(*CONFIG)
    d.wait_running_at(job, epoch=1, min_step=100)
    d.ctl("pause", job)
    orig = edit(images)
    changed = dataset_digest(small)
    rc, out, err = d.ctl("resume", job, check_rc=False)
    refused_for_change(d, rc, err, job, digest, changed, "resume on an edited dataset")
    check(d.status(job)["state"] == "paused", "the job stays paused")
    rc, out, err = d.ctl("eval", job, check_rc=False)
    refused_for_change(d, rc, err, job, digest, changed, "eval on an edited dataset")
    r = d.call("io.traind.Resume", {"id": job})
    check(r.get("error") == "io.traind.DatasetChanged" and r["parameters"].get("recorded") == digest
          and r["parameters"].get("current") == changed and r["parameters"].get("dataset") == "small",
          "Resume's error is DatasetChanged with both digests (%s)" % r)
    restore(images, orig)
    d.ctl("resume", job)
    rc, out, err = d.wait(job, "--state", "done")
    check(rc == 0, "restored, the job resumes and finishes (%s)" % err.strip())
    check(sha256_file(d.export_file(job)) == ref_sha,
          "paused, data edited and restored, resumed: bit-identical to the uninterrupted run")

    # ---- across a restart: recovery fails the job; restored, it resumes ----
    job2 = d.start_job(*CONFIG)
    d.wait_running_at(job2, epoch=0, min_step=100)
    d.kill9()
    orig = edit(images)
    changed = dataset_digest(small)
    d.start()
    st = d.status(job2)
    check(st["state"] == "failed", "recovered on changed files, the job goes to failed (%s)" % st["state"])
    e = st.get("error", "")
    check("dataset small changed since job %s started" % job2 in e and changed[7:19] in e
          and "--allow-data-change" in e, "its error says why: %s" % e)
    check("not continued at start-up" in d.read_log(), "the log says it was not continued")
    restore(images, orig)
    d.ctl("resume", job2)
    rc, out, err = d.wait(job2, "--state", "done")
    check(rc == 0, "restored, the recovered job resumes and finishes (%s)" % err.strip())
    check(sha256_file(d.export_file(job2)) == ref_sha, "killed, failed on changed data, restored, resumed: "
          "bit-identical to the uninterrupted run")

    # ---- --allow-data-change: goes on, and the new digest is the job's ----
    job3 = d.start_job(*CONFIG[:-1], "1")
    d.wait_running_at(job3, epoch=0, min_step=100)
    d.ctl("pause", job3)
    orig = edit(images)
    changed = dataset_digest(small)
    d.ctl("resume", job3, "--allow-data-change")
    rc, out, err = d.wait(job3, "--state", "done")
    check(rc == 0, "resume --allow-data-change goes on (%s)" % err.strip())
    check(d.status(job3).get("dataset_digest") == changed, "and records the new digest")
    d.ctl("eval", job3)
    check("resumed on changed data" in d.read_log(), "the log warns of it")
    restore(images, orig)

    # ---- a job stored before digests records one at its next resume ----
    job4 = d.start_job(*CONFIG)
    d.wait_running_at(job4, epoch=0, min_step=100)
    d.ctl("pause", job4)
    d.stop()
    import sqlite3
    con = sqlite3.connect(d.db)
    con.execute("UPDATE jobs SET dataset_digest = NULL WHERE id = ?", (job4,))
    con.commit()
    con.close()
    d.start()
    check("dataset_digest" not in d.status(job4), "a job without a digest shows none")
    d.ctl("resume", job4)
    rc, out, err = d.wait(job4, "--state", "done")
    check(rc == 0, "it resumes (%s)" % err.strip())
    check(d.status(job4).get("dataset_digest") == digest and
          d.sql("SELECT dataset_digest FROM jobs WHERE id=?", (job4,)) == [(digest,)],
          "and has recorded its dataset's digest")
    check(sha256_file(d.export_file(job4)) == ref_sha, "bit-identical too")
    check(d.alive(), "traind is still up")
    d.cleanup()
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    run(main)
