"""test_blas_kernel.py - the BLAS kernel traind runs, as a user sees and sets
it (include/traind/blaskernel.h, doc/blas-kernel.md):

- `trainctl info` (io.traind.GetInfo) reports the CPU, its features, the
  kernel in use, OpenBLAS's own pick and why; by default the kernel the
  CPU's features choose (checked against /proc/cpuinfo's flags with this
  file's own copy of the rule), and traind's log says the same;
- `--blas-kernel NAME` and TRAIND_BLAS_KERNEL pin it; traind runs it in the
  same process (the pid the harness started, which the lock file records:
  socket activation's LISTEN_PID keeps working), re-executed with
  OPENBLAS_CORETYPE set; `--blas-kernel openblas` keeps OpenBLAS's own pick;
  a name traind does not know is refused at start;
- OPENBLAS_CORETYPE set by the user wins over everything (and over a
  conflicting --blas-kernel, with a note): the one test that sets it;
- a job trained under one kernel and resumed under another continues with
  the note (real kernels, no edited blob), --strict-numerics refuses it, and
  `traind --blas-kernel OLD` resumes it bit-exactly (its export equals an
  uninterrupted job's under that kernel).

On a machine whose environment already sets OPENBLAS_CORETYPE, traind must
keep it: the test checks that, and skips what needs traind to choose.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from harness import Daemon, check, run, TRAIND  # noqa: E402

import subprocess  # noqa: E402

SMALL = ["--train-size", "12000", "--val-size", "500", "--batch-size", "8", "--epochs", "1", "--threads", "1"]


def cpu_flags():
    for line in open("/proc/cpuinfo"):
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_vendor():
    for line in open("/proc/cpuinfo"):
        if line.startswith("vendor_id"):
            return line.split(":", 1)[1].strip()
    return ""


def expected_auto():
    """The rule of blaskernel.c, from Linux's flags (which leave out what
    the kernel does not enable: AVX-512 without its XSAVE state)."""
    f = cpu_flags()
    if {"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"} <= f:
        return "SkylakeX"
    if {"avx2", "fma"} <= f:
        return "Haswell"
    if "avx" in f:
        return "Sandybridge"
    if "sse4_2" in f:
        return "Nehalem"
    if "ssse3" in f:
        return "Core2"
    return "Prescott"


def other_kernel(than):
    """A kernel this CPU runs that is not `than` (SSE3: every x86-64 we run on)."""
    return "Prescott" if than != "Prescott" else "Core2"


def info(d):
    return d.ctl_json("info")


def lock_pid(d):
    try:
        return int(open(d.db + ".lock").read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def environ_of(pid):
    try:
        raw = open("/proc/%d/environ" % pid, "rb").read()
    except OSError:
        return {}
    out = {}
    for item in raw.split(b"\0"):
        k, sep, v = item.partition(b"=")
        if sep:
            out[k.decode(errors="replace")] = v.decode(errors="replace")
    return out


def restart(d, args=(), env=None):
    d.stop()
    d.extra_args = list(args)
    d.extra_env = dict(env or {})
    d.start()
    return d


def check_auto(d, auto):
    i = info(d)
    b, cpu = i["blas"], i["cpu"]
    check(b["kernel"] == auto and b["reason"] == "auto" and b["why"].startswith("auto by features: "),
          "default: the kernel the CPU's features choose, %s (info: %s, %s: %r)" % (auto, b["kernel"], b["reason"],
                                                                                   b["why"]))
    check(b["library"].startswith("OpenBLAS "), "info names the library (%r)" % b["library"])
    check(cpu["vendor"] == cpu_vendor() and cpu["features"] and set(cpu["features"]) <= cpu_flags() | {"sse3"},
          "info: the CPU's vendor and features, as Linux lists them (%s, %s)" % (cpu["vendor"], cpu["features"]))
    check(("avx2" in cpu["features"]) == ("avx2" in cpu_flags()), "info: avx2 as /proc/cpuinfo says")
    check(b["openblas_pick"], "info: OpenBLAS's own pick (%r)" % b["openblas_pick"])
    rc, out, err = d.ctl("info")
    check("kernel %s" % auto in out and "why       auto by features" in out and "openblas  its own pick" in out,
          "trainctl info prints the kernel, why and OpenBLAS's pick:\n%s" % out)
    log = d.read_log()
    check("BLAS: OpenBLAS" in log and " %s, auto by features" % auto in log and "CPU: " in log,
          "traind's log says the kernel and why at start-up")
    return b["openblas_pick"]


def check_pins(d, auto, own):
    pin = other_kernel(auto)
    restart(d, ["--blas-kernel", pin.lower()])
    i = info(d)["blas"]
    check(i["kernel"] == pin and i["reason"] == "flag" and i["why"] == "pinned by --blas-kernel %s" % pin,
          "--blas-kernel %s pins it (info: %s, %s, %r)" % (pin.lower(), i["kernel"], i["reason"], i["why"]))
    check(i["openblas_pick"] == own, "and still knows OpenBLAS's own pick (%r)" % i["openblas_pick"])
    pid = d.proc.pid
    check(lock_pid(d) == pid, "the same process: the pid traind was started as holds the lock (%s, %s)"
          % (pid, lock_pid(d)))
    env = environ_of(pid)
    if pin != own:
        check(env.get("OPENBLAS_CORETYPE") == pin and env.get("TRAIND_BLAS_CHOICE", "").endswith(":%d" % pid),
              "re-executed in place with OPENBLAS_CORETYPE=%s (its environment: %s, %s)"
              % (pin, env.get("OPENBLAS_CORETYPE"), env.get("TRAIND_BLAS_CHOICE")))
    log = d.read_log()
    check(log.count("ready: socket") == 2 and log.count("BLAS: OpenBLAS") == 2,
          "one start-up logged per start: the re-exec happens before anything, once")

    restart(d, [], {"TRAIND_BLAS_KERNEL": pin})
    i = info(d)["blas"]
    check(i["kernel"] == pin and i["reason"] == "env" and "TRAIND_BLAS_KERNEL=%s" % pin in i["why"],
          "TRAIND_BLAS_KERNEL=%s pins it too (%s, %s)" % (pin, i["kernel"], i["reason"]))
    restart(d, ["--blas-kernel", "auto"], {"TRAIND_BLAS_KERNEL": pin})
    i = info(d)["blas"]
    check(i["kernel"] == auto and i["reason"] == "auto", "--blas-kernel auto beats TRAIND_BLAS_KERNEL (%s)"
          % i["kernel"])
    restart(d, ["--blas-kernel", "openblas"])
    i = info(d)["blas"]
    check(i["kernel"] == own and i["reason"] == "openblas" and i["wanted"] is None,
          "--blas-kernel openblas keeps OpenBLAS's own pick %s (%s)" % (own, i["kernel"]))

    d.stop()
    for bad, want in (("Bulldozer", "'Bulldozer' is not a kernel traind knows"), ("", "empty")):
        p = subprocess.run(d.command() + ["--blas-kernel", bad], capture_output=True, text=True, timeout=60)
        check(p.returncode == 2 and want in p.stderr and "--blas-kernel" in p.stderr,
              "--blas-kernel %r is refused at start, naming it (rc %d: %s)" % (bad, p.returncode, p.stderr.strip()))
    return pin


def check_coretype_wins(d, auto):
    """The one place a test sets OPENBLAS_CORETYPE: the user's wins."""
    mine = other_kernel(auto)
    restart(d, ["--blas-kernel", auto], {"OPENBLAS_CORETYPE": mine})
    i = info(d)["blas"]
    check(i["kernel"] == mine and i["reason"] == "coretype" and "OPENBLAS_CORETYPE=%s" % mine in i["why"],
          "OPENBLAS_CORETYPE=%s from the environment wins (info: %s, %s)" % (mine, i["kernel"], i["reason"]))
    check(i["note"] and "--blas-kernel %s is not applied" % auto in i["note"],
          "a conflicting --blas-kernel is named in a note (%r)" % i["note"])
    check(i["openblas_pick"] is None, "OpenBLAS's own pick is unknown then (%r)" % i["openblas_pick"])
    check("is not applied" in d.read_log(), "and traind's log warns about it")
    d.stop()


def check_jobs_across_kernels(d, auto, old):
    """A job of the old kernel under the new one; and the pin that resumes it."""
    restart(d, ["--blas-kernel", old])
    moved = d.start_job(*SMALL)
    strict = d.start_job(*SMALL, "--strict-numerics", "true")
    pinned = d.start_job(*SMALL)
    whole = d.start_job(*SMALL)
    for job in (moved, strict, pinned):
        d.wait_running_at(job, epoch=0, min_step=20)
        d.ctl("pause", job)
    rc, out, err = d.wait(whole, "--state", "done")
    check(rc == 0, "an uninterrupted job under %s finishes" % old)

    restart(d, [])
    check(info(d)["blas"]["kernel"] == auto, "traind restarted by default runs %s" % auto)
    d.ctl("resume", moved)
    rc, out, err = d.wait(moved, "--state", "done")
    st = d.status(moved)
    lib = info(d)["blas"]["library"]
    want = "trained with %s %s, resumed with %s %s: not bit-identical" % (lib, old, lib, auto)
    check(rc == 0 and want in st.get("numerics", ""), "the %s job resumed under %s finishes and says %r (%r)"
          % (old, auto, want, st.get("numerics")))
    notes = [r.get("note", "") for r in d.history(moved)]
    check(want in notes[0], "its history note says it (%r)" % notes)
    d.ctl("resume", strict, check_rc=False)
    rc, out, err = d.wait(strict, "--state", "failed")
    st = d.status(strict)
    check(rc == 0 and "strict_numerics" in st.get("error", "") and old in st.get("error", ""),
          "--strict-numerics refuses it, naming the kernels (%r)" % st.get("error"))

    restart(d, ["--blas-kernel", old])
    d.ctl("resume", pinned)
    rc, out, err = d.wait(pinned, "--state", "done")
    st = d.status(pinned)
    check(rc == 0 and not st.get("numerics"), "traind --blas-kernel %s resumes its job without a note (%r)"
          % (old, st.get("numerics")))
    check(d.export_sha(pinned) == d.export_sha(whole),
          "and bit-exactly: its export equals the uninterrupted %s job's" % old)
    d.ctl("resume", strict)
    rc, out, err = d.wait(strict, "--state", "done")
    check(rc == 0, "the strict job resumes under its own kernel pinned")


def main():
    d = Daemon(max_running=4).start()
    auto = expected_auto()
    if os.environ.get("OPENBLAS_CORETYPE") is not None:
        i = info(d)["blas"]
        check(i["reason"] == "coretype" and i["kernel"].lower() == os.environ["OPENBLAS_CORETYPE"].lower(),
              "this machine's OPENBLAS_CORETYPE=%s is kept (info: %s, %s)"
              % (os.environ["OPENBLAS_CORETYPE"], i["kernel"], i["reason"]))
        print("skipped: the choice of kernel (OPENBLAS_CORETYPE is set here, and wins)")
        return
    own = check_auto(d, auto)
    old = check_pins(d, auto, own)
    check_coretype_wins(d, auto)
    check_jobs_across_kernels(d, auto, old)


if __name__ == "__main__":
    run(main)
