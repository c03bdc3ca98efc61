#!/usr/bin/env python3
"""Datasets through traind: `trainctl datasets` lists every dataset (broken
ones with their error); `dataset import` sends the files as open descriptors
(traind never opens a client's path), validates and renames them into place,
and a job trains on the result; refusals (exists, too big, broken files,
unsafe names, descriptors missing or not regular files, replace under a live
job, rm while jobs use it) each give their named error, and traind stays up."""
import json
import os
import shutil
import socket
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import Daemon, check, run  # noqa: E402
from dsdata import dataset_digest, write_small_mnist  # noqa: E402


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
    d = Daemon(max_running=1, data_dir=data, extra_args=["--max-dataset-bytes", "8M"]).start()

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
    check(set(lst) == {"small", "broken"}, "datasets lists both (%s)" % sorted(lst))
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
    check(d.alive(), "traind is still up")
    d.cleanup()
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    run(main)
