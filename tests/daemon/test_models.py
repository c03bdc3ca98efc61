#!/usr/bin/env python3
"""Models beyond the lesson's MLP, through traind: an MLP with batchnorm1d and
dropout paused mid-epoch and resumed ends bit-identical to never pausing; a
lenet5 job killed after an epoch and resumed ends bit-identical too; status,
list and the job's JSON show the model and its parameter count; a bad SPEC is
refused at start naming the layer, and traind keeps running."""
import hashlib
import json
import os
import re
import sqlite3
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import SANITIZER, Daemon, check, run, sha256_file  # noqa: E402

BN_MLP = "flatten,linear(128),batchnorm1d,relu,dropout(0.2),linear(10)"
# Small steps, so that a pause lands in the middle of an epoch (1000 an
# epoch; under the sanitizers, where the release tree runs the long form,
# 500, still past the step 200 the test pauses at).
BN_CONFIG = ["--model", BN_MLP, "--train-size", "4000" if SANITIZER else "8000", "--batch-size", "8",
             "--val-size", "500" if SANITIZER else "1000", "--epochs", "2"]
LENET_CONFIG = ["--model", "lenet5", "--train-size", "1280" if SANITIZER else "2560",
                "--val-size", "250" if SANITIZER else "500", "--epochs", "3"]


def move_to_other_kernel(db, job):
    """Rewrite the job's newest checkpoint as if it had been trained under
    another BLAS kernel: its "numerics" metadata changed (same length, so the
    layout stays), its checksum sealed again. Returns the pretended kernel."""
    con = sqlite3.connect(db, timeout=30)
    rid, blob = con.execute("SELECT id, blob FROM checkpoints WHERE job_id=? ORDER BY id DESC LIMIT 1",
                            (job,)).fetchone()
    blob = bytearray(blob)
    n = struct.unpack("<Q", blob[:8])[0]
    meta = json.loads(blob[8:8 + n])["__metadata__"]
    was = meta["numerics"]
    other = "OpenBLAS 0.0.0 " + "Q" * (len(was) - len("OpenBLAS 0.0.0 "))
    i = blob.index(json.dumps(was).encode(), 8, 8 + n)
    blob[i:i + len(was) + 2] = json.dumps(other).encode()
    m = re.search(rb"sha256:([0-9a-f]{64})", bytes(blob[8:8 + n]))
    pos = 8 + m.start(1)
    blob[pos:pos + 64] = b"0" * 64
    blob[pos:pos + 64] = hashlib.sha256(bytes(blob)).hexdigest().encode()
    con.execute("UPDATE checkpoints SET blob=?, checksum=? WHERE id=?",
                (bytes(blob), "sha256:" + bytes(blob[pos:pos + 64]).decode(), rid))
    con.commit()
    con.close()
    return was, other


def numerics(d):
    """A job resumed under another BLAS kernel continues and says so (status,
    history note, log); with --strict-numerics true it is refused."""
    cfg = ["--train-size", "2000", "--batch-size", "8", "--val-size", "500", "--epochs", "2"]
    for strict in (False, True):
        job = d.start_job(*cfg, *(["--strict-numerics", "true"] if strict else []))
        d.wait_running_at(job, epoch=0, min_step=20)
        d.ctl("pause", job)
        was, other = move_to_other_kernel(d.db, job)
        d.ctl("resume", job, check_rc=False)
        if not strict:
            rc, out, err = d.wait(job, "--state", "done")
            check(rc == 0, "a job moved to another kernel finishes")
            st = d.status(job)
            want = "trained with %s, resumed with %s: not bit-identical" % (other, was)
            check(want in st.get("numerics", ""), "status says %r (%r)" % (want, st.get("numerics")))
            rc, out, err = d.ctl("status", job)
            check("numerics: trained with" in out, "trainctl status prints it")
            notes = [r.get("note", "") for r in d.history(job)]
            check(want in notes[0] and notes[1] == "", "the resumed epoch's history note says it (%r)" % notes)
            check(want in d.read_log(), "the log says it")
        else:
            rc, out, err = d.wait(job, "--state", "failed")
            st = d.status(job)
            check(rc == 0 and "strict_numerics" in st.get("error", "") and other in st.get("error", ""),
                  "with --strict-numerics the resume is refused, naming both kernels (%r)" % st.get("error"))


def main():
    d = Daemon(max_running=1).start()

    # ---- the model in status, list and the job's JSON ----
    job = d.start_job(*BN_CONFIG)
    st = d.status(job)
    check(st.get("model") == BN_MLP, "status shows the model's SPEC (%r)" % st.get("model"))
    check(st.get("config", {}).get("model") == BN_MLP, "the job's config holds the model")
    want_params = 784 * 128 + 128 + 2 * 128 + 128 * 10 + 10
    check(st.get("params") == want_params, "status shows the parameter count %s (got %s)"
          % (want_params, st.get("params")))
    lst = d.ctl_json("list")
    mine = [j for j in lst if j["id"] == job]
    check(mine and mine[0].get("model") == BN_MLP and mine[0].get("params") == want_params,
          "list shows the model and its parameters")
    rc, out, err = d.ctl("status", job)
    check(BN_MLP in out and str(want_params) in out.replace(",", ""),
          "trainctl status prints the model and parameter count:\n%s" % out)

    # ---- BatchNorm + Dropout: pause mid-epoch, resume, bit-exact ----
    j = d.wait_running_at(job, epoch=0, min_step=200)
    rc, out, err = d.ctl("pause", job, check_rc=False)
    check(rc == 0, "pause mid-epoch 1 (rc %d, %s)" % (rc, err.strip()))
    st = d.status(job)
    check(st["state"] == "paused" and st["step"] > 0, "paused mid-epoch (epoch %s step %s)"
          % (st["epoch"], st["step"]))
    rc, out, err = d.ctl("resume", job, check_rc=False)
    check(rc == 0, "resume (rc %d, %s)" % (rc, err.strip()))
    rc, out, err = d.wait(job, "--state", "done")
    check(rc == 0, "the resumed BatchNorm job finishes (%s)" % err.strip())
    ref = d.start_job(*BN_CONFIG)
    rc, out, err = d.wait(ref, "--state", "done")
    check(rc == 0, "its uninterrupted reference finishes")
    a, b = sha256_file(d.export_file(job)), sha256_file(d.export_file(ref))
    check(a == b, "BatchNorm+Dropout MLP: paused+resumed export == uninterrupted (%s vs %s)" % (a[:16], b[:16]))
    check([(r["train_loss"], r["val_loss"]) for r in d.history(job)] ==
          [(r["train_loss"], r["val_loss"]) for r in d.history(ref)],
          "and the histories agree bit for bit")

    # ---- lenet5: kill after epoch 1, resume, bit-exact ----
    le = d.start_job(*LENET_CONFIG)
    rc, out, err = d.ctl("kill", le, "--after-epoch", "1", check_rc=False)
    check(rc == 0, "kill --after-epoch 1 accepted")
    rc, out, err = d.wait(le, "--state", "killed")
    check(rc == 0, "lenet5 job killed after epoch 1 (%s)" % err.strip())
    check([r["epoch"] for r in d.history(le)] == [1], "its history ends at epoch 1")
    rc, out, err = d.ctl("resume", le, check_rc=False)
    check(rc == 0, "resume the lenet5 job")
    rc, out, err = d.wait(le, "--state", "done")
    check(rc == 0, "the resumed lenet5 job finishes")
    le_ref = d.start_job(*LENET_CONFIG)
    rc, out, err = d.wait(le_ref, "--state", "done")
    check(rc == 0, "the uninterrupted lenet5 job finishes")
    a, b = sha256_file(d.export_file(le)), sha256_file(d.export_file(le_ref))
    check(a == b, "lenet5: killed+resumed export == uninterrupted (%s vs %s)" % (a[:16], b[:16]))
    st = d.status(le)
    check(st.get("params") == 61706, "lenet5 has 61706 parameters (status says %s)" % st.get("params"))
    check(st.get("model", "").startswith("conv2d(6,5,padding=2),relu,maxpool2d(2)"),
          "status shows lenet5 expanded (%r)" % st.get("model"))
    ev = d.ctl_json("eval", le, "--split", "test")
    check(0 < ev.get("acc", 0) <= 1 and ev.get("count") == 10000, "eval of a lenet5 checkpoint on the test set (%s)" % ev)

    numerics(d)

    # ---- bad SPECs: refused at start, naming what is wrong ----
    cases = [
        (["--model", "conv2d(6,5),relu,linear(10)"], "not a flat vector"),
        (["--model", "flatten,linear(12)"], "12 outputs"),
        (["--model", "flatten,linear(256),relu,linaer(10)"], "linaer"),
        (["--model", "conv2d(16)"], "conv2d"),
        (["--model", "conv2d(6,5),maxpool2d(2),conv2d(16,5),maxpool2d(2),conv2d(16,5),flatten,linear(10)"],
         "smaller than the kernel"),
        (["--model", "flatten,linear(65536),relu,linear(65536),linear(10)"], "parameters"),
        (["--model", "flatten,batchnorm1d,linear(10)", "--train-size", "6401"], "one sample"),
        (["--ftz", "maybe"], "ftz"),
    ]
    for args, needle in cases:
        rc, out, err = d.ctl("start", *args, check_rc=False)
        check(rc != 0 and needle in err and len(err.strip().splitlines()) == 1,
              "start %s is refused naming %r (rc %d: %s)" % (" ".join(args), needle, rc, err.strip()))
    check(d.alive(), "traind is still running after the refused starts")
    rc, out, err = d.ctl("status", job)
    check(rc == 0, "and answers")


if __name__ == "__main__":
    run(main)
