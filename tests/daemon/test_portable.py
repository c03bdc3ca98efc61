#!/usr/bin/env python3
"""A portable job in the daemon (config kernels portable, doc/portable.md),
driven through trainctl on a real socket, SQLite and MNIST:

- start --kernels portable records the key (status config kernels); a job
  without it is openblas; an unknown value, and a model with a layer the
  portable kernels do not cover yet (lenet5: conv2d), are refused at start
  naming config.kernels.
- A portable job paused mid-epoch under one traind with TRAIND_ISA on the
  widest path, resumed under another traind on the same database with
  TRAIND_ISA=generic: its export is bit-identical to the same job run
  without a stop, and its status notes no change of numerics (another path
  is none).
- start --from JOB@1 --threads 3: the reference job's state at epoch 1 going
  on at 3 threads instead of 1 ends bit-identical to the reference.
A path this CPU cannot run is skipped, with the reason."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import Daemon, check, run  # noqa: E402

# 2 epochs of 500 steps of 8: long enough to pause in, short on the plain C path
CFG = ["--kernels", "portable", "--train-size", "4000", "--batch-size", "8", "--val-size", "1000",
       "--hidden", "64", "--epochs", "2", "--threads", "1"]


def widest():
    with open("/proc/cpuinfo") as f:
        flags = set(next((ln for ln in f if ln.startswith("flags")), "flags:").split(":", 1)[1].split())
    for name, need in (("avx512", {"avx512f", "avx2", "fma"}), ("avx2", {"avx2", "fma"})):
        if need <= flags:
            return name
        print("skip: the %s path: this CPU lacks %s" % (name, ", ".join(sorted(need - flags))))
    return "generic"


def main():
    top = widest()
    a = Daemon(max_running=1, extra_env={"TRAIND_ISA": top}).start()

    rc, out, err = a.ctl("start", "--kernels", "mkl", check_rc=False)
    check(rc != 0 and "unknown kernels 'mkl' (expected openblas or portable)" in err,
          "start --kernels mkl: refused naming the choices (rc %d: %s)" % (rc, err.strip()))
    r = a.call("io.traind.Start", {"config": {"kernels": "portable", "model": "lenet5"}})
    check(r.get("error") == "org.varlink.service.InvalidParameter" and
          r.get("parameters", {}).get("parameter") == "config.kernels" and
          "not yet supported for layer 1 conv2d" in str(r),
          "Start lenet5 with kernels portable: InvalidParameter config.kernels naming conv2d (%s)" % r)
    plain = a.start_job("--train-size", "2000", "--val-size", "1000", "--epochs", "1")
    check(a.status(plain)["config"].get("kernels") == "openblas", "a job without the flag is openblas")

    ref = a.start_job(*CFG)
    a.wait(ref, "--state", "done")
    st = a.status(ref)
    check(st["state"] == "done" and st["config"].get("kernels") == "portable",
          "the reference portable job is done; its config says kernels portable")
    ref_sha = a.export_sha(ref)

    job = a.start_job(*CFG)
    a.wait_running_at(job, epoch=0, min_step=120)
    a.ctl("pause", job)
    a.wait(job, "--state", "paused")
    a.stop()

    b = Daemon(workdir=a.dir, max_running=1, extra_env={"TRAIND_ISA": "generic"},
               socket_path=a.socket, db_path=a.db)
    b.start()
    b.ctl("resume", job)
    rc, out, err = b.wait(job, "--state", "done")
    st = b.status(job)
    check(rc == 0 and st["state"] == "done", "paused on %s, resumed on generic: done (%s)" % (top, st["state"]))
    check(b.export_sha(job) == ref_sha, "... bit-identical to the job that never stopped")
    check("numerics" not in st, "... with no note of other numerics (%r)" % st.get("numerics"))

    cont = b.start_job("--from", "%s@1" % ref, "--threads", "3")
    b.wait(cont, "--state", "done")
    check(b.status(cont)["config"]["threads"] == 3 and b.export_sha(cont) == ref_sha,
          "start --from %s@1 --threads 3 on generic: bit-identical to the reference's 1 thread on %s"
          % (ref, top))


if __name__ == "__main__":
    run(main)
