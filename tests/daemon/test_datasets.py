#!/usr/bin/env python3
"""Datasets through traind: `trainctl datasets` lists every dataset (broken
ones with their error); `dataset import` sends the files as open descriptors
(traind never opens a client's path), validates and renames them into place,
and a job trains on the result; refusals (exists, too big, broken files,
unsafe names, descriptors missing or not regular files, replace under a live
job, rm while jobs use it) each give their named error, and traind stays up.
Compressed files are weighed by what they expand to: a 200 KiB .npz and a
gzip IDX set of 200000 zero images are refused (DatasetTooBig naming both
sizes and --max-dataset-bytes) without traind's memory growing, and a job on
such a dataset put in DATA_DIR by hand fails with the same message. At
start-up, temporary directories a crash left (an import's, a removal's)
are deleted and logged; one whose traind is alive is kept."""
import gzip
import json
import os
import shutil
import socket
import sys
import threading
import time
import zipfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import Daemon, check, run  # noqa: E402
from dsdata import dataset_digest, write_small_mnist  # noqa: E402
from dsformats import npy_bytes  # noqa: E402

ZEROS = 200000     # images of 28x28 zeros: 156800000 bytes, a few hundred KiB compressed


def write_zero_npz(path, n):
    """A .npz like np.savez_compressed of n zero images (deflated as it is
    written: the bytes are never all in memory here either)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        with z.open("x_train.npy", "w", force_zip64=True) as f:
            f.write(npy_bytes("u1", (n, 28, 28), b""))
            for _ in range(n // 1000):
                f.write(bytes(1000 * 784))
        z.writestr("y_train.npy", npy_bytes("u1", (n,), bytes(n)))
        z.writestr("x_test.npy", npy_bytes("u1", (10, 28, 28), bytes(7840)))
        z.writestr("y_test.npy", npy_bytes("u1", (10,), bytes(10)))


def write_zero_idx(d, n):
    """A gzip IDX set of n zero training images."""
    import struct
    os.makedirs(d, exist_ok=True)
    with gzip.open(os.path.join(d, "train-images-idx3-ubyte.gz"), "wb") as f:
        f.write(struct.pack(">IIII", 0x803, n, 28, 28))
        for _ in range(n // 1000):
            f.write(bytes(1000 * 784))
    with gzip.open(os.path.join(d, "train-labels-idx1-ubyte.gz"), "wb") as f:
        f.write(struct.pack(">II", 0x801, n) + bytes(n))
    with gzip.open(os.path.join(d, "t10k-images-idx3-ubyte.gz"), "wb") as f:
        f.write(struct.pack(">IIII", 0x803, 10, 28, 28) + bytes(7840))
    with gzip.open(os.path.join(d, "t10k-labels-idx1-ubyte.gz"), "wb") as f:
        f.write(struct.pack(">II", 0x801, 10) + bytes(10))


def vmrss(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def raw_import(d, params, fds):
    """DatasetImport on a raw connection, the descriptors passed with SCM_RIGHTS."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(60)
    s.connect(d.socket)
    msg = json.dumps({"method": "io.traind.DatasetImport", "parameters": params}).encode() + b"\0"
    socket.send_fds(s, [msg], fds)
    buf = b""
    while b"\0" not in buf:
        chunk = s.recv(1 << 16)
        if not chunk:
            break
        buf += chunk
    s.close()
    return json.loads(buf.partition(b"\0")[0])


def refused(d, args, what, *words):
    rc, out, err = d.ctl(*args, check_rc=False)
    line = err.strip()
    check(rc == 1 and len(line.splitlines()) == 1 and all(w in line for w in words),
          "%s: refused with one line naming it (rc %d: %s)" % (what, rc, line))
    check(d.alive(), "traind is still up after: %s" % what)


def main():
    work = os.path.abspath(os.path.join(os.environ.get("TMPDIR", "/tmp"), "traind-dsi-%d" % os.getpid()))
    src = write_small_mnist(os.path.join(work, "src"))
    files = sorted(os.path.join(src, f) for f in os.listdir(src))
    data = os.path.join(work, "data")
    os.makedirs(os.path.join(data, "broken"))
    with open(os.path.join(data, "broken", "train-images-idx3-ubyte"), "wb") as f:
        f.write(b"\0\0\x08\x03junk")
    # what a crash left: an import's and a removal's temporary directories
    # (their traind gone), and one of an import still going (this pid)
    crashed = os.path.join(data, ".tmp-big-Ab12Cd")
    os.makedirs(crashed)
    with open(os.path.join(crashed, "train.csv"), "wb") as f:
        f.truncate(3 << 20)
    removal = os.path.join(data, ".rm-old-999999999-0")
    os.makedirs(removal)
    going = os.path.join(data, ".tmp-busy-%d-Xy34Zw" % os.getpid())
    os.makedirs(going)
    # a dataset put in DATA_DIR by hand that expands past the limit
    write_zero_idx(os.path.join(data, "zeros"), ZEROS)
    d = Daemon(max_running=1, data_dir=data, extra_args=["--max-dataset-bytes", "8M"]).start()
    log = d.read_log()
    check(not os.path.exists(crashed) and "removed %s (3145728 bytes), left by a dataset import cut short" % crashed
          in log, "start-up deletes the temporary directory of an import a crash cut short, and logs it")
    check(not os.path.exists(removal) and "left by a dataset removal cut short" in log,
          "and a removal's")
    check(os.path.isdir(going), "but not one whose traind is alive")
    os.rmdir(going)

    # ---- import, list, train ----
    got = d.ctl_json("dataset", "import", "small", *files)
    check(got.get("name") == "small" and got.get("train") == 6000 and got.get("test") == 1000 and
          got.get("shape") == [1, 28, 28] and got.get("classes") == 10 and got.get("format") == "idx",
          "import answers the dataset as listed (%s)" % {k: got.get(k) for k in ("name", "train", "shape")})
    landed = os.path.join(data, "small")
    check(sorted(os.listdir(landed)) == sorted(os.path.basename(f) for f in files),
          "the files landed in DATA_DIR/small under their base names")
    check(all(open(os.path.join(landed, os.path.basename(f)), "rb").read() == open(f, "rb").read()
              for f in files), "byte for byte")
    check(got.get("digest") == dataset_digest(landed) == dataset_digest(src), "its digest is the files'")
    check(not [n for n in os.listdir(data) if n.startswith(".")], "no temporary directory is left")
    lst = {x["name"]: x for x in d.ctl_json("datasets")}
    check(set(lst) == {"small", "broken", "zeros"}, "datasets lists them all (%s)" % sorted(lst))
    check("error" in lst["broken"] and "train-labels-idx1-ubyte" in lst["broken"]["error"],
          "a broken dataset is listed with its error (%s)" % lst["broken"].get("error"))
    rc, out, err = d.ctl("datasets")
    check("small" in out and "broken: error:" in out, "the table shows both, and the error")
    job = d.start_job("--dataset", "small", "--train-size", "2000", "--val-size", "1000", "--epochs", "1")
    rc, out, err = d.wait(job, "--state", "done")
    check(rc == 0, "a job trains on the imported dataset (%s)" % err.strip())
    check(d.status(job).get("dataset_digest") == got["digest"], "and records its digest")
    check([x["jobs"] for x in d.ctl_json("datasets") if x["name"] == "small"] == [[job]],
          "datasets names the job using it")

    # ---- refusals ----
    refused(d, ["dataset", "import", "small"] + files, "import over an existing name", "exists already",
            "--replace")
    big = os.path.join(work, "big")
    with open(big, "wb") as f:
        f.truncate(9 << 20)
    refused(d, ["dataset", "import", "huge", big], "import past --max-dataset-bytes", "dataset huge",
            "more than the 8388608", "--max-dataset-bytes")
    trunc = os.path.join(work, "trunc", "train-images-idx3-ubyte")
    os.makedirs(os.path.dirname(trunc))
    with open(trunc, "wb") as f:
        f.write(open(files[2], "rb").read()[:100000])
    refused(d, ["dataset", "import", "cut", files[0], files[1], trunc, files[3]], "a truncated image file",
            "dataset error: cut", "train-images-idx3-ubyte")
    check(not os.path.exists(os.path.join(data, "cut")), "a dataset that does not load is not added")
    # issue 21: the message lost the file names ("csv_2col:  dimensions mismatch")
    two = os.path.join(work, "csv_2col")
    os.makedirs(two)
    with open(os.path.join(two, "train.csv"), "w") as f:
        f.write("".join("%d,%s\n" % (i % 2, ",".join(["1"] * 4)) for i in range(4)))
    with open(os.path.join(two, "test.csv"), "w") as f:
        f.write("".join("%d,%s\n" % (i % 2, ",".join(["1"] * 9)) for i in range(2)))
    rc, out, err = d.ctl("dataset", "import", "csv_2col", os.path.join(two, "train.csv"),
                         os.path.join(two, "test.csv"), check_rc=False)
    check(rc == 1 and "dimensions mismatch: test images are 1x3x3 (test.csv) but training images are 1x2x2 "
          "(train.csv)" in err and "  " not in err and ".tmp-" not in err,
          "an import whose splits differ names both files, not the temporary directory (%s)" % err.strip())
    refused(d, ["dataset", "import", "../up"] + files, "a dataset name with '/'", "invalid parameter name")
    refused(d, ["dataset", "import", ".hidden"] + files, "a hidden dataset name", "invalid parameter name")
    refused(d, ["dataset", "rm", "small"], "rm while a job uses it", "dataset small is used by job %d" % job)
    refused(d, ["dataset", "rm", "nothing"], "rm of no dataset", "no dataset nothing")

    fds = [os.open(f, os.O_RDONLY) for f in files]
    try:
        for bad, why in (("../x", "'/'"), (".x", "starting with '.'"), ("a\nb", "control")):
            r = raw_import(d, {"name": "raw", "files": [{"name": bad}] + [{"name": "f%d" % i} for i in range(3)]},
                           fds)
            check(r.get("error") == "org.varlink.service.InvalidParameter" and
                  r["parameters"].get("parameter") == "files" and "safe file name" in r["parameters"]["message"],
                  "a file name with %s is refused (%s)" % (why, r))
        r = raw_import(d, {"name": "raw", "files": [{"name": "a"}, {"name": "a"}]}, fds[:2])
        check(r.get("error") == "org.varlink.service.InvalidParameter" and "named twice" in json.dumps(r),
              "a file named twice is refused")
        r = raw_import(d, {"name": "raw", "files": [{"name": os.path.basename(f)} for f in files]}, fds[:2])
        check(r.get("error") == "org.varlink.service.InvalidParameter" and
              "4 files named but 2 file descriptors" in r["parameters"]["message"],
              "fewer descriptors than files is refused (%s)" % r.get("parameters"))
        rp, wp = os.pipe()
        r = raw_import(d, {"name": "raw", "files": [{"name": "p"}]}, [rp])
        os.close(rp)
        os.close(wp)
        check(r.get("error") == "io.traind.DatasetError" and "not a regular file" in r["parameters"]["message"],
              "a pipe instead of a file is refused, never read (%s)" % r)
        wo = os.open(os.path.join(work, "wo"), os.O_WRONLY | os.O_CREAT, 0o600)
        r = raw_import(d, {"name": "raw", "files": [{"name": "w"}]}, [wo])
        os.close(wo)
        check(r.get("error") == "io.traind.DatasetError" and "not open for reading" in json.dumps(r),
              "a descriptor not open for reading is refused (%s)" % r)
        r = raw_import(d, {"name": "raw2", "files": [{"name": os.path.basename(f)} for f in files]}, fds)
        check("error" not in r and r["parameters"]["dataset"]["train"] == 6000,
              "the same descriptors, right: imported (%s)" % r.get("error"))
        check(all(os.lseek(fd, 0, os.SEEK_CUR) == 0 for fd in fds), "the client's file offsets are untouched")
    finally:
        for fd in fds:
            os.close(fd)
    check(not [n for n in os.listdir(data) if n.startswith(".")], "no temporary directory is left by the refusals")

    # ---- what compressed files expand to ----
    pid = d.proc.pid
    before = vmrss(pid)
    peak = [before]
    sampling = [True]

    def sample():
        while sampling[0]:
            try:
                peak[0] = max(peak[0], vmrss(pid))
            except OSError:
                return
            time.sleep(0.005)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    npz = os.path.join(work, "zeros.npz")
    write_zero_npz(npz, ZEROS)
    check(os.path.getsize(npz) < 1 << 20, "the .npz of %d zero images is %d bytes" % (ZEROS, os.path.getsize(npz)))
    refused(d, ["dataset", "import", "znpz", npz], "a small .npz that expands past --max-dataset-bytes",
            "zeros.npz: x_train.npy", "156800000", "8388608", "--max-dataset-bytes")
    gz = sorted(os.path.join(data, "zeros", f) for f in os.listdir(os.path.join(data, "zeros")))
    refused(d, ["dataset", "import", "zidx"] + gz, "a gzip IDX set that expands past --max-dataset-bytes",
            "train-images-idx3-ubyte.gz", "156800000", "(decompressed)", "8388608", "--max-dataset-bytes")
    sampling[0] = False
    sampler.join(10)
    grew = peak[0] - before
    check(grew < 32 << 20, "traind's memory never took what they expand to (peak VmRSS +%.1f MiB, not +150)"
          % (grew / 1048576))
    check(not os.path.exists(os.path.join(data, "znpz")) and not os.path.exists(os.path.join(data, "zidx")),
          "neither is added")
    rc, out, err = d.ctl("start", "--dataset", "zeros", "--train-size", "1000", "--val-size", "100", "--epochs",
                         "1", "--json", check_rc=False)
    if rc == 0:
        zj = json.loads(out)["id"]
        d.wait(zj, "--timeout", "60")
        st = d.status(zj)
        err = "%s: %s" % (st.get("state"), st.get("error"))
        d.ctl("rm", zj)
    check((rc != 0 or err.startswith("failed")) and "156800000" in err and "8388608" in err and
          "--max-dataset-bytes" in err, "a job on a dataset that expands past the limit is refused, or fails, "
          "naming both sizes and the flag (%s)" % err.strip())
    shutil.rmtree(os.path.join(data, "zeros"))

    # ---- replace: refused under a live job, fine otherwise ----
    live = d.start_job("--dataset", "raw2", "--train-size", "4000", "--val-size", "1000", "--batch-size", "4",
                       "--epochs", "3")
    d.wait_running_at(live, epoch=0, min_step=10)
    refused(d, ["dataset", "import", "raw2", "--replace"] + files, "replace under a running job",
            "dataset raw2 cannot be replaced while a queued or running job uses it", "job %d" % live)
    d.ctl("kill", live)
    got = d.ctl_json("dataset", "import", "raw2", "--replace", *files)
    check(got.get("train") == 6000, "with no live job, --replace replaces")
    d.ctl("rm", live)
    d.ctl("dataset", "rm", "raw2")
    check(not os.path.exists(os.path.join(data, "raw2")) and
          "raw2" not in [x["name"] for x in d.ctl_json("datasets")], "dataset rm removes it")
    check(not [n for n in os.listdir(data) if n.startswith(".")], "and leaves nothing hidden behind")

    # ---- the listing follows the files (Datasets remembers its answers by
    # the files' digest, not by name) ----
    write_small_mnist(os.path.join(data, "grows"), n_train=1000, n_test=100)
    first = [x.get("train") for x in d.ctl_json("datasets") if x["name"] == "grows"]
    again = [x.get("train") for x in d.ctl_json("datasets") if x["name"] == "grows"]
    write_small_mnist(os.path.join(data, "grows"), n_train=2000, n_test=100)
    after = [x.get("train") for x in d.ctl_json("datasets") if x["name"] == "grows"]
    check(first == again == [1000] and after == [2000],
          "datasets lists a dataset's new files once they change (%s, %s, then %s)" % (first, again, after))
    shutil.rmtree(os.path.join(data, "grows"))
    check(d.alive(), "traind is still up")
    d.cleanup()
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    run(main)
