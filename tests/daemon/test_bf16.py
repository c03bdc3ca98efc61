#!/usr/bin/env python3
"""precision bf16 through traind (doc/precision.md). Skips (exit 77), saying
why, on a CPU without AMX or AVX-512-BF16.

- A bf16 lenet5 job paused mid-epoch and resumed, and one whose traind is
  SIGKILLed after an epoch and restarted, end bit-identical to an
  uninterrupted bf16 run (exported model and history losses); its
  checkpoints record "traind-bf16 1 PATH" as their numeric environment; the
  same job in fp32 ends elsewhere (the key takes effect).
- On a CPU with AMX: a bf16 job paused under AMX and resumed by a traind
  started with TRAIND_BF16=avx512 continues and says it is not
  bit-identical (status, history note); with --strict-numerics true the
  resume is refused, naming both paths.
- With TRAIND_BF16=off (what a CPU without bf16 does): start --precision bf16
  is refused with one line naming what the CPU lacks, also start --from
  with --precision bf16, and the resume of a stored bf16 job fails saying
  so; traind keeps running and fp32 jobs train.
"""
import json
import os
import struct
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import DATA, TRAIND_TRAIN, Daemon, check, run, sha256_file  # noqa: E402

# ~500 steps an epoch, so that a pause lands in the middle of one.
LENET = ["--model", "lenet5", "--train-size", "4000", "--batch-size", "8", "--val-size", "1000",
         "--epochs", "3"]
BF16 = LENET + ["--precision", "bf16"]
SMALL = ["--train-size", "2000", "--batch-size", "8", "--val-size", "500", "--epochs", "2",
         "--precision", "bf16"]


def bf16_unsupported():
    """Why this machine cannot train in bf16, or None."""
    p = subprocess.run([TRAIND_TRAIN, "--precision", "bf16", "--epochs", "1", "--train-size", "64",
                        "--val-size", "64", "--no-test"], capture_output=True, text=True,
                       env=dict(os.environ, TRAIND_DATA_DIR=DATA))
    return p.stderr.strip() if p.returncode != 0 and "bf16 needs" in p.stderr else None


def checkpoint_numerics(d, job):
    """The numerics metadata of each of the job's checkpoints in SQLite."""
    out = []
    for (blob,) in d.sql("SELECT blob FROM checkpoints WHERE job_id=? ORDER BY id", (job,)):
        n = struct.unpack("<Q", blob[:8])[0]
        out.append(json.loads(blob[8:8 + n])["__metadata__"].get("numerics"))
    return out


def losses(d, job):
    return [(r["train_loss"], r["val_loss"]) for r in d.history(job)]


def main():
    d = Daemon(max_running=1).start()

    # ---- pause mid-epoch, resume ----
    paused = d.start_job(*BF16)
    check(d.status(paused).get("config", {}).get("precision") == "bf16", "the job's config says precision bf16")
    j = d.wait_running_at(paused, epoch=1, min_step=100)
    print("    pausing at epoch %d step %d/%d" % (j["epoch"] + 1, j["step"], j["steps_per_epoch"]))
    d.ctl("pause", paused)
    st = d.status(paused)
    check(st["state"] == "paused" and st["epoch"] == 1 and st["step"] > 0,
          "paused mid-epoch 2 (epoch %s step %s)" % (st["epoch"], st["step"]))
    nums = checkpoint_numerics(d, paused)
    path = (nums[-1] or "").split(" ")[-1]
    check(nums and all(n == nums[0] for n in nums) and nums[0] in ("traind-bf16 1 amx", "traind-bf16 1 avx512-bf16"),
          "its checkpoints record the bf16 kernels and their path as the numerics (%s)" % nums)
    d.ctl("resume", paused)
    rc, out, err = d.wait(paused, "--state", "done")
    check(rc == 0, "the resumed job finishes (rc %d, %s)" % (rc, err.strip()))
    sha_paused = sha256_file(d.export_file(paused, "paused.safetensors"))

    # ---- SIGKILL after an epoch, restart ----
    crashed = d.start_job(*BF16)
    rc, out, err = d.wait(crashed, "--epoch", "1")
    check(rc == 0, "epoch 1 committed before the crash")
    j = d.wait_running_at(crashed, epoch=1, min_step=50)
    print("    SIGKILL at epoch %d step %d" % (j["epoch"] + 1, j["step"]))
    d.kill9()
    d.start()
    rc, out, err = d.wait(crashed, "--state", "done")
    check(rc == 0, "after the restart the job finishes by itself (rc %d, %s)" % (rc, err.strip()))
    sha_crashed = sha256_file(d.export_file(crashed, "crashed.safetensors"))

    # ---- the uninterrupted run, and fp32 ----
    ref = d.start_job(*BF16)
    rc, out, err = d.wait(ref, "--state", "done")
    check(rc == 0, "the uninterrupted bf16 job finishes")
    sha_ref = sha256_file(d.export_file(ref, "ref.safetensors"))
    check(sha_paused == sha_ref, "paused+resumed bf16 model == uninterrupted (%s vs %s)"
          % (sha_paused[:16], sha_ref[:16]))
    check(sha_crashed == sha_ref, "SIGKILLed+restarted bf16 model == uninterrupted (%s vs %s)"
          % (sha_crashed[:16], sha_ref[:16]))
    check(losses(d, paused) == losses(d, ref) and losses(d, crashed) == losses(d, ref),
          "the three histories' losses are equal bit for bit")
    check(all(r.get("note", "") == "" for job in (paused, crashed, ref) for r in d.history(job)),
          "no history row says the numerics changed")
    fp32 = d.start_job(*LENET)
    rc, out, err = d.wait(fp32, "--state", "done")
    check(rc == 0 and sha256_file(d.export_file(fp32, "fp32.safetensors")) != sha_ref,
          "the same job in fp32 ends with other weights")
    check(checkpoint_numerics(d, fp32)[-1].startswith("OpenBLAS "), "an fp32 job records OpenBLAS (%s)"
          % checkpoint_numerics(d, fp32)[-1])

    # ---- another path: TRAIND_BF16=avx512 ----
    moved = d.start_job(*SMALL)
    strict = d.start_job(*SMALL, "--strict-numerics", "true")
    stored = d.start_job(*SMALL)
    at = {}
    for job in (moved, strict, stored):
        d.wait_running_at(job, epoch=0, min_step=20)
        d.ctl("pause", job)
        at[job] = d.status(job)["epoch"]   # a small MLP may be in its second epoch by then
    d.stop()
    if path == "amx":
        d.extra_env = {"TRAIND_BF16": "avx512"}
        d.start()
        d.ctl("resume", moved)
        rc, out, err = d.wait(moved, "--state", "done")
        check(rc == 0, "a bf16 job moved from AMX to AVX-512-BF16 finishes (rc %d, %s)" % (rc, err.strip()))
        want = ("trained with traind-bf16 1 amx, resumed with traind-bf16 1 avx512-bf16: "
                "not bit-identical to an uninterrupted run")
        check(want in d.status(moved).get("numerics", ""), "status says %r (%r)"
              % (want, d.status(moved).get("numerics")))
        notes = [r.get("note", "") for r in d.history(moved)]
        check(want in notes[at[moved]] and sum(want in n for n in notes) == 1,
              "the resumed epoch's history note says it (%r, paused in epoch %d)" % (notes, at[moved] + 1))
        d.ctl("resume", strict)
        rc, out, err = d.wait(strict, "--state", "failed")
        e = d.status(strict).get("error", "")
        check(rc == 0 and "strict_numerics" in e and "traind-bf16 1 amx" in e and "avx512-bf16" in e
              and "TRAIND_BF16" in e, "with --strict-numerics the resume is refused, naming both paths and "
              "how to pin one (%r)" % e)
        d.stop()
    else:
        print("    (no AMX here: the move from AMX to AVX-512-BF16 is not tried)")

    # ---- TRAIND_BF16=off: as a CPU without bf16 ----
    d.extra_env = {"TRAIND_BF16": "off"}
    d.start()
    before = len(d.ctl_json("list"))
    rc, out, err = d.ctl("start", *BF16, check_rc=False)
    print("    start --precision bf16: rc %d, %s" % (rc, err.strip()))
    check(rc == 1 and out == "" and len(err.strip().splitlines()) == 1 and "precision" in err
          and "bf16 needs a CPU with AMX" in err and "AVX-512-BF16" in err and "TRAIND_BF16=off" in err,
          "start --precision bf16 is refused in one line naming the key and what is missing (%r)" % err.strip())
    rc, out, err = d.ctl("start", "--from", str(fp32), "--precision", "bf16", check_rc=False)
    check(rc == 1 and "precision" in err and "bf16 needs" in err,
          "start --from an fp32 job with --precision bf16 is refused the same way (%r)" % err.strip())
    check(len(d.ctl_json("list")) == before, "no job was added by the refused starts")
    d.ctl("resume", stored)
    rc, out, err = d.wait(stored, "--state", "failed")
    e = d.status(stored).get("error", "")
    check(rc == 0 and "precision" in e and "bf16 needs" in e,
          "a stored bf16 job resumed here fails saying why (%r)" % e)
    check("cannot continue on this machine" in e, "... that the job cannot continue on this machine")
    job = d.start_job("--train-size", "640", "--val-size", "200", "--epochs", "1")
    rc, out, err = d.wait(job, "--state", "done")
    check(rc == 0 and d.alive(), "traind keeps running, and an fp32 job trains")
    d.stop()
    d.extra_env = {}
    d.start()
    d.ctl("resume", stored)
    rc, out, err = d.wait(stored, "--state", "done")
    check(rc == 0, "back on a traind that has bf16, the stored job resumes and finishes (rc %d, %s)"
          % (rc, err.strip()))


if __name__ == "__main__":
    why = bf16_unsupported()
    if why:
        print("skip: this machine cannot train in bf16: " + why)
        sys.exit(77)
    run(main)
