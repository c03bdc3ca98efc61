#!/usr/bin/env python3
"""Jobs over MPI (doc/distributed.md, "Using it"), with a real mpirun and real
processes on this machine: a 2-rank job ends bit-identical to the same job
as one process computing its 2 shards in turn, with the same history row
by row; SIGKILL of a rank mid-epoch makes traind restart the job from its
newest checkpoint and it still ends bit-identical, while with
--max-restarts 0 it stays failed with the reason; SIGKILL of traind leaves
no rank running, and after a restart of traind the job finishes
bit-identical; a 2-rank job killed after epoch 2 resumed on 1 rank, and a
paused one resumed, end bit-identical too. Skips (exit 77) without mpirun."""
import os
import shutil
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import BUILD, SANITIZER, TRAIND_RANK, Daemon, check, poll, run  # noqa: E402

# Small and fast: 63 steps an epoch of a 1-thread MLP.
JOB = ["--epochs", "3", "--train-size", "4000", "--val-size", "1000", "--threads", "1"]
ROW_KEYS = ["epoch", "train_loss", "train_acc", "train_macro_acc", "val_loss", "val_acc",
            "val_macro_acc", "lr"]
MPI_ARGS = ["--mpi-arg=--oversubscribe"]
if SANITIZER:   # OpenMPI's own allocations at exit are not the ranks' leaks
    MPI_ARGS += ["--mpi-arg=-x", "--mpi-arg=ASAN_OPTIONS=detect_leaks=0"]


def rows(d, job):
    return [{k: r.get(k) for k in ROW_KEYS} for r in d.history(job)]


def ppid(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def descends(pid, root):
    for _ in range(64):
        if pid in (0, 1):
            return False
        if pid == root:
            return True
        pid = ppid(pid)
    return False


def ranks_of(root=None, contact=None):
    """{pid: rank} of the traind-rank processes under traind `root` (or
    whose contact socket is `contact`)."""
    out = {}
    for e in os.listdir("/proc"):
        if not e.isdigit():
            continue
        pid = int(e)
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if not argv or not argv[0].endswith(b"traind-rank"):
            continue
        if contact is not None and contact.encode() not in argv:
            continue
        if root is not None and not descends(pid, root):
            continue
        try:
            with open("/proc/%d/environ" % pid, "rb") as f:
                env = dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
            out[pid] = int(env.get(b"OMPI_COMM_WORLD_RANK", b"-1"))
        except OSError:
            continue
    return out


def contact_of(pids):
    for pid in pids:
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                argv = f.read().split(b"\0")
            return argv[argv.index(b"--contact") + 1].decode()
        except (OSError, ValueError, IndexError):
            continue
    return None


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_ranks(d, n=2, timeout=60):
    return poll(lambda: (lambda r: r if len(r) == n else None)(ranks_of(d.proc.pid)), timeout=timeout,
                interval=0.01, what="%d ranks of traind %d" % (n, d.proc.pid))


def main():
    d = Daemon(max_running=1, extra_args=MPI_ARGS).start()

    # The reference: one process computing the 2 shards in turn.
    ref = d.start_job(*JOB, "--shards", "2")
    check(d.wait(ref, "--state", "done")[0] == 0, "the 1-process 2-shard job is done")
    ref_sha, ref_rows = d.export_sha(ref), rows(d, ref)
    st = d.status(ref)
    check(st["config"]["shards"] == 2 and st["config"]["ranks"] == 1,
          "status shows shards 2, ranks 1 (got %s, %s)" % (st["config"].get("shards"), st["config"].get("ranks")))
    one = d.start_job(*JOB)
    check(d.wait(one, "--state", "done")[0] == 0, "the unsharded job is done")
    check(d.export_sha(one) != ref_sha, "2 shards are other arithmetic than 1 (different bits)")

    # 2 ranks on this machine: the same bits, the same history.
    job = d.start_job(*JOB, "--ranks", "2")
    pids = wait_ranks(d)
    check(sorted(pids.values()) == [0, 1], "2 traind-rank processes under traind, ranks 0 and 1 (%s)" % pids)
    rc, out, err = d.ctl("watch", job, check_rc=False, timeout=300)
    check(rc == 0 and "done" in out, "watch follows the 2-rank job to its end (rc %d: %s)" % (rc, out.strip()[-200:]))
    check(d.wait(job, "--state", "done")[0] == 0, "the 2-rank job is done")
    rc, out, err = d.ctl("status", job)
    check("ranks: 2, shards 2" in out, "status says ranks: 2, shards 2")
    st = d.status(job)
    check(st["config"]["shards"] == 2 and st["config"]["ranks"] == 2 and st["config"]["max_restarts"] == 3,
          "status shows shards 2 (default: the ranks), ranks 2, max_restarts 3")
    check(d.export_sha(job) == ref_sha, "2 ranks end bit-identical to 1 process with 2 shards")
    check(rows(d, job) == ref_rows, "the history equals the 1-process run's row by row")
    check(not ranks_of(d.proc.pid), "no rank is left once the job is done")
    rc, out, err = d.ctl("eval", job, "--split", "test")
    check(rc == 0 and "acc" in out, "eval of the 2-rank job works")

    # BatchNorm and Dropout: per-shard statistics, the same on 2 ranks as in 1 process.
    bn = ["--epochs", "1", "--train-size", "2000", "--val-size", "500", "--threads", "1", "--model",
          "flatten,linear(64),batchnorm1d,relu,dropout(0.2),linear(10)"]
    a = d.start_job(*bn, "--shards", "2")
    b = d.start_job(*bn, "--ranks", "2")
    check(d.wait(a, "--state", "done")[0] == 0 and d.wait(b, "--state", "done")[0] == 0,
          "BatchNorm + Dropout jobs, 1 process and 2 ranks, done")
    check(d.export_sha(a) == d.export_sha(b) and rows(d, a) == rows(d, b),
          "BatchNorm + Dropout: 2 ranks bit-identical to 1 process with 2 shards, history too")

    # Bad settings: clear errors naming the flag.
    rc, out, err = d.ctl("start", *JOB, "--ranks", "2", "--shards", "3", check_rc=False)
    check(rc != 0 and "--shards" in err and "multiple of ranks 2" in err,
          "--ranks 2 --shards 3 is refused naming --shards (%s)" % err.strip())
    rc, out, err = d.ctl("start", *JOB, "--ranks", "2", "--hosts", "localhost:1", check_rc=False)
    check(rc != 0 and "--hosts" in err and "1 slots for 2 ranks" in err,
          "--hosts with too few slots is refused (%s)" % err.strip())

    # SIGKILL of rank 1 mid-epoch: failed, restarted from the newest checkpoint, same bits.
    job = d.start_job(*JOB, "--ranks", "2")
    d.wait_running_at(job, 1, min_step=10)
    pids = wait_ranks(d)
    victim = [p for p, r in pids.items() if r == 1][0]
    os.kill(victim, signal.SIGKILL)
    check(d.wait(job, "--state", "done")[0] == 0, "the job whose rank 1 was killed finishes")
    st = d.status(job)
    check(st.get("restarts", 0) >= 1, "it was restarted (restarts %s)" % st.get("restarts"))
    check("rank 1" in (st.get("last_failure") or ""), "the failure names rank 1: %r" % st.get("last_failure"))
    check(d.export_sha(job) == ref_sha, "after the restart it ends bit-identical")
    check(rows(d, job) == ref_rows, "and its history equals the reference row by row")

    # --max-restarts 0: stays failed with the reason.
    job = d.start_job(*JOB, "--ranks", "2", "--max-restarts", "0")
    d.wait_running_at(job, 1, min_step=5)
    pids = wait_ranks(d)
    os.kill([p for p, r in pids.items() if r == 1][0], signal.SIGKILL)
    check(d.wait(job, "--state", "failed")[0] == 0, "with --max-restarts 0 the job fails")
    st = d.status(job)
    check(st["state"] == "failed" and "rank 1" in (st.get("error") or "") and "signal 9" in st.get("error", ""),
          "failed with the reason: %r" % st.get("error"))
    poll(lambda: not ranks_of(d.proc.pid), timeout=30, what="no rank left after the failure")
    rc, out, err = d.ctl("resume", job, check_rc=False)
    check(rc == 0 and d.wait(job, "--state", "done")[0] == 0, "resumed by hand, it finishes")
    check(d.export_sha(job) == ref_sha, "bit-identical after the failure and the resume")

    # kill: at once, no rank left.
    job = d.start_job(*JOB, "--ranks", "2")
    d.wait_running_at(job, 0, min_step=5)
    d.ctl("kill", job)
    check(d.wait(job, "--state", "killed")[0] == 0, "a 2-rank job is killed")
    poll(lambda: not ranks_of(d.proc.pid), timeout=30, what="no rank left after the kill")
    check(True, "no rank is left after the kill")

    # Kill after epoch 2, resume on 1 rank (elastic): same bits.
    job = d.start_job(*JOB, "--ranks", "2")
    d.ctl("kill", job, "--after-epoch", "2")
    check(d.wait(job, "--state", "killed")[0] == 0, "the 2-rank job is killed after epoch 2")
    check([r["epoch"] for r in d.history(job)] == [1, 2], "its history has epochs 1, 2")
    rc, out, err = d.ctl("resume", job, "--ranks", "1", check_rc=False)
    check(rc == 0, "resume --ranks 1 (%s)" % err.strip())
    check(d.wait(job, "--state", "done")[0] == 0, "it finishes on 1 rank")
    st = d.status(job)
    check(st["config"]["ranks"] == 1 and st["config"]["shards"] == 2, "now ranks 1, still shards 2")
    check(d.export_sha(job) == ref_sha, "a 2-rank job resumed on 1 rank ends bit-identical")
    check(rows(d, job) == ref_rows, "and its history equals the reference row by row")
    rc, out, err = d.ctl("resume", job, "--ranks", "4", "--epochs", "4", check_rc=False)
    check(rc != 0 and "ranks" in err and "do not divide" in err,
          "resume --ranks 4 of a 2-shard job is refused (%s)" % err.strip())

    # Pause mid-epoch and resume on 2 ranks: the exact position, same bits.
    job = d.start_job(*JOB, "--ranks", "2")
    d.wait_running_at(job, 1, min_step=10)
    d.ctl("pause", job)
    st = d.status(job)
    check(st["state"] == "paused" and st["checkpoint"]["step"] > 0,
          "paused at a position inside epoch 2 (%s)" % st.get("checkpoint"))
    d.ctl("resume", job)
    check(d.wait(job, "--state", "done")[0] == 0, "the paused job finishes")
    check(d.export_sha(job) == ref_sha, "pause and resume of a 2-rank job: bit-identical")

    # SIGKILL of traind: no rank left; after a restart the job finishes, same bits.
    job = d.start_job(*JOB, "--ranks", "2")
    d.wait_running_at(job, 1, min_step=10)
    pids = wait_ranks(d)
    contact = contact_of(pids)
    d.kill9()
    poll(lambda: not any(alive(p) for p in pids) and not ranks_of(contact=contact), timeout=30,
         what="every rank gone after SIGKILL of traind")
    check(True, "no rank is left running after SIGKILL of traind")
    check(contact and not os.path.exists(os.path.dirname(contact)),
          "nor its contact directory (%s)" % contact)
    d.start()
    check(d.wait(job, "--state", "done")[0] == 0, "after traind's restart the job finishes")
    check(d.export_sha(job) == ref_sha, "recovered after SIGKILL of traind: bit-identical")

    # SIGTERM of traind: rank 0 saves the exact position first.
    job = d.start_job(*JOB, "--ranks", "2")
    d.wait_running_at(job, 1, min_step=10)
    d.signal(signal.SIGTERM)
    check(d.wait_exit(60) == 0, "traind stops on SIGTERM")
    saved = d.sql("SELECT max(step) FROM checkpoints WHERE job_id=? AND epoch=1", (job,))[0][0]
    check(saved and saved > 0, "the position inside epoch 2 was saved at shutdown (step %s)" % saved)
    d.start()
    check(d.wait(job, "--state", "done")[0] == 0, "after traind's restart the job finishes")
    check(d.export_sha(job) == ref_sha, "stopped by SIGTERM and continued: bit-identical")
    d.stop()

    # --hosts and --mpi-arg: rank 1 on "otherhost", started through a launch
    # agent (here one that runs the command on this machine) and reached over
    # TCP only; the same bits. (Two network namespaces: the mpinet tests.)
    agent = os.path.join(d.dir, "agent")
    with open(agent, "w") as f:
        f.write('#!/bin/sh\nwhile [ "${1#-}" != "$1" ]; do shift; done\nshift\nexec sh -c "$*"\n')
    os.chmod(agent, 0o755)
    h = Daemon(max_running=1, extra_args=MPI_ARGS + [
        "--mpi-arg=--mca", "--mpi-arg=plm_rsh_agent", "--mpi-arg=" + agent,
        "--mpi-arg=--mca", "--mpi-arg=btl", "--mpi-arg=self,tcp"]).start()
    job = h.start_job(*JOB, "--ranks", "2", "--hosts", "localhost:1,otherhost:1", "--max-restarts", "0")
    check(h.wait(job, "--state", "done")[0] == 0, "a job on hosts localhost:1,otherhost:1 is done")
    check(h.export_sha(job) == ref_sha, "on two 'hosts' over TCP: bit-identical")
    h.stop()

    # No traind-rank: failed at once with the reason, not restarted.
    e = Daemon(max_running=1, extra_args=MPI_ARGS,
               extra_env={"TRAIND_RANK_PROGRAM": "/nonexistent/traind-rank"}).start()
    job = e.start_job(*JOB, "--ranks", "2")
    check(e.wait(job, "--state", "failed")[0] == 0, "a job whose traind-rank is missing fails")
    st = e.status(job)
    check("/nonexistent/traind-rank" in (st.get("error") or "") and not st.get("restarts"),
          "its error names the program, and it was not restarted (%r, restarts %s)"
          % (st.get("error"), st.get("restarts")))


if __name__ == "__main__":
    if not shutil.which("mpirun") or not os.path.exists(TRAIND_RANK):
        print("skip: no mpirun or no traind-rank (libopenmpi-dev)")
        sys.exit(77)
    run(main)
