#!/usr/bin/env python3
"""trainctl plot: two small jobs drawn to SVG (parsed as XML: one path per
job and series, named job-N-KIND, with a point per epoch), to PNG (decoded
with zlib: the page's size), as a text chart on a pseudo-terminal (within
its width), and every bad input refused with a named error and nothing
written: an unknown job, an unknown metric, an unknown extension, an
unwritable -o, a directory as -o, a JOB given twice, no -o without a
terminal, a job with no epoch yet, a job without a learning-rate history."""
import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import xml.etree.ElementTree as ET
import zlib

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import TRAINCTL, Daemon, check, run  # noqa: E402

SVG_NS = "{http://www.w3.org/2000/svg}"
SLOW = ["--train-size", "20000", "--batch-size", "4", "--val-size", "500", "--epochs", "2"]


def svg_series(path):
    """{id: number of points} of the data paths (class "series ...")."""
    root = ET.parse(path).getroot()
    out = {}
    for el in root.iter(SVG_NS + "path"):
        if "series" in (el.get("class") or "").split():
            pid = el.get("id")
            pts = len(re.findall(r"[ML]\s*-?[0-9.]+[ ,]+-?[0-9.]+", el.get("d") or ""))
            out[pid] = out.get(pid, []) + [pts]
    return root, out


def png_info(path):
    """(width, height, color type, bit depth, decompressed image bytes)."""
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    pos, idat, ihdr = 8, b"", None
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        if zlib.crc32(kind + body) != struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])[0]:
            raise ValueError("bad CRC in chunk %r" % kind)
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
        pos += 12 + n
    w, h, depth, ctype = ihdr[0], ihdr[1], ihdr[2], ihdr[3]
    return w, h, ctype, depth, zlib.decompress(idat)


def on_pty(d, cols, *args):
    """trainctl on a pseudo-terminal `cols` wide: (rc, output)."""
    m, s = pty.openpty()
    fcntl.ioctl(s, termios.TIOCSWINSZ, struct.pack("HHHH", 40, cols, 0, 0))
    p = subprocess.Popen([TRAINCTL, "--socket", d.socket] + [str(a) for a in args], stdout=s, stderr=s,
                         stdin=subprocess.DEVNULL)
    os.close(s)
    out = b""
    while True:
        try:
            chunk = os.read(m, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.close(m)
    return p.wait(timeout=30), out.decode("utf-8", "replace")


def refused(d, args, rc_want, words, what, path=None):
    rc, out, err = d.ctl(*args, check_rc=False)
    ok = rc == rc_want and all(w in err for w in words) and not out and len(err.strip().splitlines()) == 1
    if path:
        ok = ok and not os.path.exists(path)
    check(ok, "%s: exit %d, one line naming it (%d: %s)" % (what, rc_want, rc, err.strip()))


def main():
    d = Daemon(max_running=1).start()
    a = d.start_job("--name", "alpha", "--train-size", "1000", "--val-size", "500", "--epochs", "3",
                    "--lr-scheduler", "step(step_size=1,gamma=0.5)")  # a falling lr: one point an epoch (cairo merges collinear segments)
    b = d.start_job("--name", "beta", "--train-size", "1000", "--val-size", "500", "--epochs", "2",
                    "--lr", "0.003")
    for j in (a, b):
        rc, out, err = d.wait(j, "--state", "done")
        check(rc == 0, "job %s finishes" % j)
    epochs = {a: 3, b: 2}

    # ---- SVG ----
    svg = os.path.join(d.dir, "loss.svg")
    rc, out, err = d.ctl("plot", a, b, "-o", svg)
    check(rc == 0 and out.startswith("wrote %s (SVG" % svg), "plot to SVG (%d %s %s)" % (rc, out.strip(), err.strip()))
    root, series = svg_series(svg)
    check(root.tag == SVG_NS + "svg" and root.get("width", "").startswith("800"),
          "the SVG parses as XML, an <svg> 800 wide (%s %s)" % (root.tag, root.get("width")))
    want = {"job-%d-%s" % (j, k): [epochs[j]] for j in (a, b) for k in ("train", "val")}
    check(series == want, "one path per job and series, a point per epoch (%s)" % series)

    svg_acc = os.path.join(d.dir, "acc.svg")
    j = d.ctl_json("plot", a, b, "--metric", "acc", "-o", svg_acc)
    check(j == {"file": svg_acc, "format": "svg", "metric": "acc", "jobs": [a, b], "width": 800,
                "height": 500, "size": os.path.getsize(svg_acc)},
          "plot --json says what it wrote (%s)" % j)
    check(svg_series(svg_acc)[1] == want, "--metric acc: train and val accuracy paths per job")

    # ---- PNG ----
    png = os.path.join(d.dir, "loss.png")
    rc, out, err = d.ctl("plot", a, b, "-o", png)
    check(rc == 0, "plot to PNG (%d %s)" % (rc, err.strip()))
    w, h, ctype, depth, raw = png_info(png)
    bpp = {6: 4, 2: 3}.get(ctype, 0)
    check((w, h) == (800, 500) and depth == 8 and bpp and len(raw) == h * (1 + w * bpp),
          "the PNG decodes: %dx%d, color type %d, %d bytes of scanlines" % (w, h, ctype, len(raw)))
    check(len(set(raw)) > 16, "... and is not a blank page (%d distinct byte values)" % len(set(raw)))

    # ---- lr: the history's lr column, where it exists ----
    hist = d.history(a)
    if hist and "lr" in hist[0] and hist[0]["lr"] is not None:
        svg_lr = os.path.join(d.dir, "lr.svg")
        rc, out, err = d.ctl("plot", a, b, "--metric", "lr", "-o", svg_lr)
        series = svg_series(svg_lr)[1] if rc == 0 else None
        check(rc == 0 and series == {"job-%d-lr" % a: [3], "job-%d-lr" % b: [2]},
              "--metric lr: one lr path per job (%d %s %s)" % (rc, err.strip(), series))
    else:
        raw_hist = d.call("io.traind.History", {"id": a})["parameters"]["rows"]
        check("lr" not in raw_hist[0], "(this traind's history has no lr column)")
        refused(d, ["plot", a, "--metric", "lr", "-o", os.path.join(d.dir, "lr.svg")], 1,
                ["job %d has no learning-rate history" % a], "--metric lr without an lr history",
                os.path.join(d.dir, "lr.svg"))

    # ---- the text chart on a terminal ----
    rc, out = on_pty(d, 60, "plot", a, b)
    plain = re.sub(r"\x1b\[[0-9;]*m", "", out).replace("\r", "")
    lines = [ln for ln in plain.split("\n") if ln]
    check(rc == 0 and lines and lines[0] == "loss by epoch", "plot on a terminal draws a text chart (%d)" % rc)
    check(all(len(ln) <= 60 for ln in lines), "no line wider than the terminal (widest %d)" %
          max(len(ln) for ln in lines))
    check(sum(1 for ch in plain if 0x2801 <= ord(ch) <= 0x28ff) > 40, "the curves are braille dots")
    check("job %d (alpha) train" % a in plain and "job %d (beta) val" % b in plain, "a legend with the jobs' names")
    check("\x1b[" in out, "in color on a terminal")
    rc, out = on_pty(d, 100, "plot", a, "--metric", "acc")
    check(rc == 0 and "accuracy by epoch" in out and max(len(re.sub(r"\x1b\[[0-9;]*m", "", ln))
                                                          for ln in out.replace("\r", "").split("\n")) > 60,
          "a wider terminal, a wider chart")

    # ---- bad input ----
    nowhere = os.path.join(d.dir, "no-such-dir", "x.svg")
    refused(d, ["plot", a, "-o", os.path.join(d.dir, "x.jpg")], 2, ["-o", "unknown extension", "x.jpg"],
            "an unknown extension", os.path.join(d.dir, "x.jpg"))
    refused(d, ["plot", a, "--metric", "f1", "-o", os.path.join(d.dir, "m.svg")], 2,
            ["--metric", "loss, acc, lr, mae, rmse or ppl", "f1"], "an unknown metric", os.path.join(d.dir, "m.svg"))
    refused(d, ["plot", a, 999, "-o", os.path.join(d.dir, "u.svg")], 1, ["no such job 999"], "an unknown job",
            os.path.join(d.dir, "u.svg"))
    refused(d, ["plot", a, "-o", nowhere], 1, ["cannot write", nowhere], "an unwritable -o path", nowhere)
    os.mkdir(os.path.join(d.dir, "dir.svg"))
    refused(d, ["plot", a, "-o", os.path.join(d.dir, "dir.svg")], 2, ["-o", "dir.svg"], "a directory as -o")
    refused(d, ["plot", a, a, "-o", os.path.join(d.dir, "t.svg")], 2, ["job %d is given twice" % a],
            "a JOB given twice", os.path.join(d.dir, "t.svg"))
    refused(d, ["plot", a], 2, ["not a terminal", "-o FILE.svg"], "no -o and stdout not a terminal")
    refused(d, ["plot"], 2, ["missing JOB"], "no JOB")
    c = d.start_job(*SLOW)
    d.wait_running_at(c, epoch=0, min_step=1)
    refused(d, ["plot", a, c, "-o", os.path.join(d.dir, "c.svg")], 1, ["job %d has no committed epoch" % c],
            "a job with no epoch yet", os.path.join(d.dir, "c.svg"))
    d.ctl("kill", c)
    check(d.alive(), "traind is still up")


if __name__ == "__main__":
    run(main)
