"""The portable kernels' paths (--kernels portable, doc/portable.md) and
traind-train runs on them, for the tests that check one hash on every path
and thread count (tests/cli/test_portable.py, test_portable_seq.py).

- paths(): the instruction-set paths this CPU runs (TRAIND_ISA values),
  widest last; those it cannot run are printed as skipped, with the reason.
- tt(*args, cwd, data=DATA, isa=None, timeout=900): run traind-train with
  --data-dir data (and TRAIND_ISA=isa, or none): (rc, stdout, stderr).
- phash(out): the last "params sha256: " of its output (--hash), or None."""
import os
import subprocess

from harness import BUILD, DATA

TT = os.path.join(BUILD, "cli", "traind-train")


def cpu_flags():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    return set()


def paths():
    """The paths this CPU runs, widest last; the others printed as skipped."""
    flags, out = cpu_flags(), ["generic"]
    for name, need in (("avx2", {"avx2", "fma"}), ("avx512", {"avx512f", "avx2", "fma"})):
        if need <= flags:
            out.append(name)
        else:
            print("skip: the %s path: this CPU lacks %s" % (name, ", ".join(sorted(need - flags))))
    return out


def tt(*args, cwd, data=DATA, isa=None, timeout=900):
    env = dict(os.environ)
    env.pop("TRAIND_ISA", None)
    if isa is not None:
        env["TRAIND_ISA"] = isa
    p = subprocess.run([TT, "--data-dir", data] + [str(a) for a in args], capture_output=True, text=True,
                       cwd=cwd, timeout=timeout, env=env)
    return p.returncode, p.stdout, p.stderr


def phash(out):
    lines = [ln for ln in out.splitlines() if ln.startswith("params sha256: ")]
    return lines[-1].split()[-1] if lines else None
