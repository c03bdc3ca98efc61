#!/usr/bin/env python3
"""A portable job in the daemon (config kernels portable, doc/portable.md),
driven through trainctl on a real socket, SQLite and MNIST:

- start --kernels portable records the key (status config kernels); a job
  without it is openblas; an unknown value is refused at start naming the
  choices.
- The job is lenet5 (conv2d, maxpool) with Adam, OneCycle and clipping.
- A portable job paused mid-epoch under one traind with TRAIND_ISA on the
  widest path, resumed under another traind on the same database with
  TRAIND_ISA=generic: its export is bit-identical to the same job run
  without a stop, and its status notes no change of numerics (another path
  is none).
- start --from JOB@1 --threads 3: the reference job's state at epoch 1 going
  on at 3 threads instead of 1 ends bit-identical to the reference.
- MPI: a portable lenet5 job on 2 ranks, rank 0 on the widest path and
  rank 1 on the plain C path (TRAIND_RANK_PROGRAM is a wrapper that sets
  each rank's TRAIND_ISA from OMPI_COMM_WORLD_RANK), ends bit-identical to
  the same job as one process computing its 2 shards in turn (skipped
  without mpirun).
A path this CPU cannot run is skipped, with the reason."""
import os
import shutil
import stat
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import SANITIZER, TRAIND_RANK, Daemon, check, run  # noqa: E402

# 2 epochs of 250 steps of 8: long enough to pause in, short on the plain C path
# (under the sanitizers, whose plain C path is several times slower: 50 steps,
# paused after 25; the release tree runs the long form)
TRAIN = "400" if SANITIZER else "2000"
PAUSE_STEP = 25 if SANITIZER else 120
CFG = ["--kernels", "portable", "--train-size", TRAIN, "--batch-size", "8",
       "--val-size", "200" if SANITIZER else "500",
       "--model", "lenet5", "--optimizer", "adam", "--lr-scheduler", "onecycle(max_lr=0.005)",
       "--clip-grad-norm", "1", "--epochs", "2", "--threads", "1"]


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
    # (only its config is checked: a short job, ahead of the reference in the queue)
    plain = a.start_job("--train-size", "500", "--val-size", "200", "--epochs", "1")
    check(a.status(plain)["config"].get("kernels") == "openblas", "a job without the flag is openblas")

    ref = a.start_job(*CFG)
    a.wait(ref, "--state", "done")
    st = a.status(ref)
    check(st["state"] == "done" and st["config"].get("kernels") == "portable",
          "the reference portable job is done; its config says kernels portable")
    ref_sha = a.export_sha(ref)

    job = a.start_job(*CFG)
    a.wait_running_at(job, epoch=0, min_step=PAUSE_STEP)
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

    b.stop()
    mpi(top)


def mpi(top):
    if not shutil.which("mpirun") or not os.path.exists(TRAIND_RANK):
        print("skip: the MPI part: no mpirun or no traind-rank (libopenmpi-dev)")
        return
    w = tempfile.mkdtemp(prefix="traind-portable-mpi-")
    wrapper = os.path.join(w, "rank-by-isa")
    with open(wrapper, "w") as f:
        f.write("#!/bin/sh\n"
                "# each rank its own instruction-set path\n"
                "case \"$OMPI_COMM_WORLD_RANK\" in 0) TRAIND_ISA=%s ;; *) TRAIND_ISA=generic ;; esac\n"
                "export TRAIND_ISA\n"
                "exec %s \"$@\"\n" % (top, TRAIND_RANK))
    os.chmod(wrapper, os.stat(wrapper).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    args = ["--mpi-arg=--oversubscribe"]
    if SANITIZER:
        args += ["--mpi-arg=-x", "--mpi-arg=ASAN_OPTIONS=detect_leaks=0"]
    d = Daemon(max_running=1, extra_args=args,
               extra_env={"TRAIND_ISA": top, "TRAIND_RANK_PROGRAM": wrapper}).start()
    job = ["--kernels", "portable", "--model", "lenet5", "--train-size", "200" if SANITIZER else "1000",
           "--val-size", "100" if SANITIZER else "200",
           "--epochs", "1", "--threads", "1", "--optimizer", "adam", "--clip-grad-norm", "1"]
    ref = d.start_job(*job, "--shards", "2")
    check(d.wait(ref, "--state", "done")[0] == 0, "the 1-process 2-shard portable job on %s is done" % top)
    two = d.start_job(*job, "--ranks", "2")
    check(d.wait(two, "--state", "done", timeout=600)[0] == 0,
          "the 2-rank portable job (rank 0 on %s, rank 1 on generic) is done (%s)" % (top, d.status(two).get("error")))
    check(d.export_sha(two) == d.export_sha(ref),
          "2 ranks on %s and generic end bit-identical to 1 process with 2 shards" % top)
    d.stop()
    shutil.rmtree(w, ignore_errors=True)


if __name__ == "__main__":
    run(main)
