#!/usr/bin/env python3
"""Bad input never hurts the daemon. Through trainctl: impossible job
configurations and broken datasets give a non-zero exit and one line naming
the problem. Through the raw socket: malformed, ill-typed, oversized, half,
deeply nested and non-UTF-8 messages and floods of connections each get an
error reply naming the problem where one is possible; afterwards trainctl
still works and a job that trained through it all has the same bits as on
a quiet daemon. Also org.varlink.service.GetInfo/GetInterfaceDescription."""
import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import DATA, TRAINCTL, Daemon, Varlink, check, run, sha256_file  # noqa: E402

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
BG = ["--train-size", "10000", "--batch-size", "4", "--val-size", "2000", "--epochs", "3"]
MNIST_FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
               "t10k-labels-idx1-ubyte"]


def one_line_error(rc, out, err, what, *words):
    line = err.strip()
    check(rc != 0, "%s: non-zero exit (rc %d)" % (what, rc))
    check(len(line.splitlines()) == 1, "%s: exactly one line on stderr (%r)" % (what, err))
    low = line.lower()
    check(all(w.lower() in low for w in words), "%s: the error names %s: %s" % (what, "/".join(words), line))
    check(out.strip() == "", "%s: nothing on stdout (%r)" % (what, out[:80]))


# ---- trainctl -------------------------------------------------------------

def check_trainctl(d):
    cases = [
        (["--epochs", "0"], ["epochs"]),
        (["--batch-size", "0"], ["batch"]),
        (["--train-size", "100", "--batch-size", "500"], ["batch", "500"]),
        (["--lr", "nan"], ["lr", "nan"]),
        (["--lr", "-0.001"], ["lr"]),
        (["--hidden", "0"], ["hidden"]),
        (["--dataset", "nosuch"], ["nosuch"]),
        (["--optimizer", "rmsprop"], ["rmsprop"]),
        (["--epochs", "abc"], ["epochs"]),
        (["--val-size", "60000"], ["--val-size"]),
    ]
    n_before = len(d.ctl_json("list"))
    for args, words in cases:
        rc, out, err = d.ctl("start", *args, check_rc=False)
        one_line_error(rc, out, err, "start " + " ".join(args), *words)
    check(len(d.ctl_json("list")) == n_before, "no job was created by a refused start")
    rc, out, err = d.ctl("status", 999, check_rc=False)
    one_line_error(rc, out, err, "status of a job that does not exist", "999")
    rc, out, err = d.ctl("eval", 1, "--split", "train", check_rc=False)
    one_line_error(rc, out, err, "eval --split train", "split")
    p = subprocess.run([TRAINCTL, "--socket", os.path.join(os.path.dirname(d.socket), "nobody.sock"), "list"],
                       capture_output=True, text=True, timeout=60)
    one_line_error(p.returncode, p.stdout, p.stderr, "trainctl on a socket nobody listens on", "nobody.sock")


def check_broken_dataset():
    tmp = tempfile.mkdtemp(prefix="traind-data-")
    try:
        # copies (hard links where possible): traind refuses a dataset that
        # resolves outside its data directory, so no symlinks to the real one
        def stored(f):   # plain or .gz, as the data directory has it
            p = os.path.join(DATA, "mnist", f)
            return f if os.path.exists(p) else f + ".gz"

        def place(f, dst_dir):
            src = os.path.join(DATA, "mnist", stored(f))
            dst = os.path.join(tmp, dst_dir, stored(f))
            try:
                os.link(src, dst)
            except OSError:
                shutil.copyfile(src, dst)
        for sub in ("mnist", "broken", "partial", "truncated"):
            os.mkdir(os.path.join(tmp, sub))
        for f in MNIST_FILES:
            place(f, "mnist")
        for f in MNIST_FILES[:3]:    # no t10k labels
            place(f, "partial")
        for f in MNIST_FILES:        # the train labels cut short
            if f == "train-labels-idx1-ubyte":
                with open(os.path.join(DATA, "mnist", stored(f)), "rb") as i, \
                        open(os.path.join(tmp, "truncated", stored(f)), "wb") as o:
                    o.write(i.read(1000))
            else:
                place(f, "truncated")
        d = Daemon(data_dir=tmp).start()
        rc, out, err = d.ctl("start", "--dataset", "broken", check_rc=False)
        one_line_error(rc, out, err, "start --dataset broken (an empty directory)", "broken",
                       "train-images-idx3-ubyte")
        rc, out, err = d.ctl("start", "--dataset", "partial", check_rc=False)
        one_line_error(rc, out, err, "start --dataset partial (no t10k labels)", "t10k-labels-idx1-ubyte")
        rc, out, err = d.ctl("start", "--dataset", "truncated", "--train-size", "1000", check_rc=False)
        if rc == 0:
            # refused when the job loads it, then: the job fails naming the file
            job = json.loads(out)["id"] if out.strip().startswith("{") else int(out.split()[0])
            d.wait(job, "--state", "failed,done", timeout=120)
            st = d.status(job)
            check(st["state"] == "failed" and "train-labels-idx1-ubyte" in (st.get("error") or ""),
                  "a truncated labels file fails the job naming the file (%s: %s)"
                  % (st["state"], st.get("error")))
        else:
            one_line_error(rc, out, err, "start --dataset truncated (short labels file)",
                           "train-labels-idx1-ubyte")
        job = d.start_job("--dataset", "mnist", "--train-size", "1000", "--val-size", "1000", "--epochs", "1")
        rc, out, err = d.wait(job, "--state", "done")
        check(rc == 0, "the good dataset next to the broken ones still trains (rc %d %s)" % (rc, err.strip()))
        check(d.alive(), "traind is still up after the broken datasets")
        d.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---- raw varlink ----------------------------------------------------------

def exchange(d, data, timeout=10):
    """Send raw bytes (a NUL is not added) on a new connection, read one reply."""
    v = Varlink(d.socket, timeout=timeout)
    try:
        v.send_raw(data)
        return v.recv()
    finally:
        v.close()


def call(d, method, params=None, **extra):
    msg = {"method": method}
    if params is not None:
        msg["parameters"] = params
    msg.update(extra)
    return exchange(d, json.dumps(msg).encode() + b"\0")


def is_error(r, name, what, param=None, words=()):
    ok = isinstance(r, dict) and r.get("error") == name
    if ok and param is not None:
        ok = r.get("parameters", {}).get("parameter") == param
    text = json.dumps(r.get("parameters", {})).lower() if isinstance(r, dict) else ""
    ok = ok and all(w.lower() in text for w in words)
    check(ok, "%s -> %s%s%s (got %s)" % (what, name, " parameter=" + param if param else "",
                                          " naming " + "/".join(words) if words else "",
                                          json.dumps(r)[:300]))
    return ok


def connect_retrying(s, path):
    """connect(); a full listen backlog (EAGAIN) is the kernel's answer to a
    flood, not the daemon's: wait a little and retry."""
    for _ in range(2000):
        try:
            s.connect(path)
            return
        except BlockingIOError:
            connect_retrying.eagain += 1
            time.sleep(0.001)
    raise RuntimeError("the listen backlog stayed full for 2 s")


connect_retrying.eagain = 0


def check_raw(d, bg):
    P = "io.traind.ProtocolError"
    IP = "org.varlink.service.InvalidParameter"
    # framing and JSON
    is_error(exchange(d, b'{"method": \0'), P, "malformed JSON", words=["JSON"])
    is_error(exchange(d, b'{"method": "io.traind.List",}\0'), P, "trailing comma", words=["JSON"])
    is_error(exchange(d, b'\0'), P, "an empty message", words=["JSON"])
    is_error(exchange(d, b'[1, 2, 3]\0'), P, "a JSON array", words=["object"])
    is_error(exchange(d, b'"io.traind.List"\0'), P, "a JSON string")
    is_error(exchange(d, b'{"parameters": {}}\0'), P, "no \"method\"", words=["method"])
    is_error(exchange(d, b'{"method": 42}\0'), P, "a numeric method", words=["method"])
    is_error(exchange(d, b'{"method": "io.traind.List", "parameters": [1]}\0'), P,
             "parameters not an object", words=["parameters"])
    is_error(exchange(d, b'{"method": "io.traind.List", "more": "yes"}\0'), P, "\"more\" not a boolean",
             words=["more"])
    is_error(exchange(d, b'{"method": "io.traind.List", "method": "io.traind.Kill"}\0'), P,
             "a duplicate key", words=["duplicate"])
    is_error(exchange(d, b'[' * 100000 + b'\0'), P, "100000 nested '['", words=["depth"])
    is_error(exchange(d, b'{"a":' * 50000 + b'1' + b'}' * 50000 + b'\0'), P, "50000 nested objects",
             words=["depth"])
    is_error(exchange(d, b'{"method": "io.traind.\xc3\x28"}\0'), P, "invalid UTF-8 in a string",
             words=["byte"])
    is_error(exchange(d, b'{"method": "io.traind.List", "parameters": {"\xff": 1}}\0'), P,
             "invalid UTF-8 in a key", words=["byte"])
    is_error(exchange(d, b'{"method": "io.traind.Status", "parameters": {"id": 1e999}}\0'), P,
             "a number too large for a double", words=["JSON"])
    # "parameters": null (the reference Go client's call without any) and
    # absent are both {}
    r = exchange(d, b'{"method": "org.varlink.service.GetInfo", "parameters": null}\0')
    check("interfaces" in r.get("parameters", {}), "GetInfo with \"parameters\": null is answered (%s)"
          % json.dumps(r)[:200])
    r = exchange(d, b'{"method": "io.traind.List", "parameters": null}\0')
    check("jobs" in r.get("parameters", {}), "List with \"parameters\": null is answered (%s)" % json.dumps(r)[:200])
    is_error(exchange(d, b'{"method": "io.traind.Status", "parameters": null}\0'), IP,
             "Status with \"parameters\": null: id missing", "id", ["missing"])
    is_error(exchange(d, b'{"method": "io.traind.List", "parameters": 7}\0'), P,
             "parameters a number", words=["parameters"])
    # methods
    r = call(d, "io.traind.NoSuchMethod", {})
    is_error(r, "org.varlink.service.MethodNotFound", "unknown method")
    check(r.get("parameters", {}).get("method") == "io.traind.NoSuchMethod", "MethodNotFound names the method")
    r = call(d, "com.example.Foo", {})
    is_error(r, "org.varlink.service.InterfaceNotFound", "unknown interface", words=["com.example"])
    check(r.get("parameters", {}).get("interface") == "com.example",
          "InterfaceNotFound names the interface, not the method (%s)" % json.dumps(r)[:200])
    # parameters
    is_error(call(d, "io.traind.Status", {"id": "1"}), IP, "id as a string", "id")
    is_error(call(d, "io.traind.Status", {"id": 1.5}), IP, "id as a float", "id")
    is_error(call(d, "io.traind.Status", {"id": -3}), IP, "id negative", "id")
    is_error(call(d, "io.traind.Status", {"id": [bg]}), IP, "id as an array", "id")
    is_error(call(d, "io.traind.Status", {}), IP, "missing id", "id", ["missing"])
    is_error(call(d, "io.traind.Pause"), IP, "no parameters at all, id missing", "id")
    is_error(call(d, "io.traind.Status", {"id": bg, "verbose": True}), IP, "unknown parameter name",
             "verbose")
    is_error(call(d, "io.traind.Start", {"epochs": 5}), IP, "Start with a config key at the top level",
             "epochs")
    is_error(call(d, "io.traind.Start", {"config": {"epochs": "5"}}), IP, "epochs as a string",
             "config.epochs")
    is_error(call(d, "io.traind.Start", {"config": {"epochs": 0}}), IP, "epochs 0", "config.epochs")
    is_error(call(d, "io.traind.Start", {"config": {"batch_size": 0}}), IP, "batch_size 0",
             "config.batch_size")
    is_error(call(d, "io.traind.Start", {"config": {"lr": -0.1}}), IP, "lr negative", "config.lr")
    is_error(call(d, "io.traind.Start", {"config": {"lr": "nan"}}), IP, "lr \"nan\"", "config.lr")
    is_error(exchange(d, b'{"method": "io.traind.Start", "parameters": {"config": {"lr": NaN}}}\0'), P,
             "lr NaN (not JSON)", words=["JSON"])
    r = call(d, "io.traind.Start", {"config": {"hidden": [0]}})
    is_error(r, IP, "hidden [0]", "config.hidden")
    msg = r.get("parameters", {}).get("message", "")
    check(msg.count("hidden:") <= 1, "the message names the key once, not 'hidden: hidden:' (%r)" % msg)
    is_error(call(d, "io.traind.Start", {"config": {"hidden": "wide"}}), IP, "hidden a string",
             "config.hidden")
    is_error(call(d, "io.traind.Start", {"config": {"optimizer": "rmsprop"}}), IP, "unknown optimizer",
             "config.optimizer", ["rmsprop"])
    is_error(call(d, "io.traind.Start", {"config": {"dataset": "nosuch"}}), "io.traind.DatasetError",
             "unknown dataset", words=["nosuch"])
    r = call(d, "io.traind.Start", {"config": {"dataset": "../../etc"}})
    check(r.get("error") in (IP, "io.traind.DatasetError"), "a dataset name that is a path is refused (%s)"
          % json.dumps(r)[:200])
    is_error(call(d, "io.traind.Start", {"config": {"train_size": 100, "batch_size": 500}}), IP,
             "batch larger than the data", words=["500"])
    is_error(call(d, "io.traind.Start", {"config": {"momentum": 0.9, "bogus": 1}}), IP,
             "unknown config key", words=["bogus"])
    is_error(call(d, "io.traind.Start", {"config": [1]}), IP, "config not an object", "config")
    is_error(call(d, "io.traind.Start", {"keep": -2}), IP, "keep -2", "keep")
    is_error(call(d, "io.traind.Start", {"name": ""}), IP, "an empty name", "name")
    is_error(call(d, "io.traind.Start", {"name": "a\nb"}), IP, "a name with a newline", "name")
    is_error(call(d, "io.traind.Start", {"init_from": "!!not base64!!"}), IP, "init_from not base64",
             "init_from")
    is_error(call(d, "io.traind.Wait", {"id": bg, "states": ["sleeping"]}), IP, "an unknown state", "states")
    is_error(call(d, "io.traind.Wait", {"id": bg, "timeout": -1}), IP, "a negative timeout", "timeout")
    is_error(call(d, "io.traind.Eval", {"id": bg, "split": "train"}), IP, "an unknown split", "split")
    is_error(call(d, "io.traind.Kill", {"id": bg, "after_epoch": 0}), IP, "after_epoch 0", "after_epoch")
    is_error(call(d, "io.traind.Resume", {"id": bg, "weights_only": "yes"}), IP, "weights_only a string",
             "weights_only")
    # invalid parameters: the standard error, with traind's message as an extra field
    r = call(d, "io.traind.Status", {"id": "1"})
    check(r.get("error") == "org.varlink.service.InvalidParameter" and
          sorted(r.get("parameters", {})) == ["message", "parameter"] and
          "integer" in r["parameters"]["message"],
          "InvalidParameter carries parameter and traind's message (%s)" % json.dumps(r)[:200])
    is_error(call(d, "io.traind.Start", {"config": {"a:b": 1}}), IP,
             "an unknown config key with a colon in it names the key", "config.a:b", ["unknown"])
    # client text quoted in a message is cut at a character boundary: a
    # 2-byte character across byte 64 of what is quoted is left out whole
    # (cut inside it, the message is not UTF-8, and the reply loses its
    # parameters)
    cut = "a" * 63 + "\u00e9" + "z"
    is_error(call(d, "io.traind.Status", {"id": bg, cut: 1}), IP,
             "an unknown parameter with a multi-byte character at the cut", "a" * 63, ["a" * 63])
    is_error(call(d, "io.traind.Start", {"config": {cut: 1}}), IP,
             "an unknown config key with a multi-byte character at the cut", "config." + "a" * 63,
             ["unknown configuration key"])
    is_error(call(d, "io.traind.Start", {"config": {"optimizer": cut}}), IP,
             "an unknown optimizer with a multi-byte character at the cut", "config.optimizer", ["a" * 63])
    is_error(call(d, "io.traind.Start", {"config": {"dataset": "\u20ac" * 30}}), IP,
             "a dataset name of 3-byte characters, cut inside one", "config.dataset", ["dataset name"])
    is_error(call(d, "io.traind.Wait", {"id": bg, "states": ["s" * 31 + "\u00e9"]}), IP,
             "an unknown state with a multi-byte character at the cut", "states", ["s" * 31])
    r = call(d, "io.traind.Status", {"id": 12345})
    is_error(r, "io.traind.NoSuchJob", "an unknown job")
    check(r.get("parameters", {}).get("id") == 12345, "NoSuchJob names the id")
    is_error(call(d, "io.traind.Export", {"id": bg, "epoch": 99}), "io.traind.NoSuchCheckpoint",
             "export of an epoch not stored")
    is_error(call(d, "io.traind.Resume", {"id": bg}), "io.traind.InvalidState", "resume of a running job")
    check(d.job(bg)["state"] == "running", "the background job still runs")

    # a large (12 MiB) but legal message is read and answered
    big = base64.b64encode(os.urandom(9 << 20)).decode()
    r = call(d, "io.traind.Start", {"init_from": big})
    is_error(r, IP, "a 12 MiB init_from of random bytes", "init_from")

    # over the cap, with no NUL: an error, then the connection is closed
    v = Varlink(d.socket, timeout=20)
    chunk = b" " * (1 << 20)
    sent = 0
    try:
        for _ in range(24):
            v.s.sendall(chunk)
            sent += len(chunk)
    except (BrokenPipeError, ConnectionResetError):
        pass
    try:
        r = v.recv()
    except (EOFError, ConnectionResetError) as e:
        r = {"exception": repr(e)}
    is_error(r, P, "a message over 16 MiB without a NUL (%d MiB sent)" % (sent >> 20), words=["larger"])
    closed = False
    try:
        v.s.settimeout(5)
        closed = v.s.recv(1) == b""
    except ConnectionResetError:
        closed = True
    except OSError:
        closed = False
    check(closed, "... and the connection is closed")
    v.close()
    check(d.alive(), "traind is up after the oversized message")

    # half a message, then gone
    for data in (b'{"method": "io.traind.Sta', b'{"method": "io.traind.List"}', b" " * 100000):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(d.socket)
        s.sendall(data)
        s.close()
    # a call whose client hangs up before the reply (Wait on a running job)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(d.socket)
    s.sendall(json.dumps({"method": "io.traind.Wait", "parameters": {"id": bg}}).encode() + b"\0")
    s.sendall(json.dumps({"method": "io.traind.Watch", "parameters": {"id": bg}, "more": True}).encode() + b"\0")
    time.sleep(0.05)
    s.close()
    check(d.alive(), "traind is up after half messages and hang-ups")

    # 1000 connections, one after the other, dropped at once
    t0 = time.time()
    for _ in range(1000):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        connect_retrying(s, d.socket)
        s.close()
    # 1000 connections open at the same time, then all dropped
    socks = []
    try:
        for _ in range(1000):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(10)
            connect_retrying(s, d.socket)
            socks.append(s)
        # each of them still gets served
        for s in socks[::100]:
            s.sendall(b'{"method": "io.traind.List"}\0')
        replies = []
        for s in socks[::100]:
            buf = b""
            while b"\0" not in buf:
                c = s.recv(65536)
                if not c:
                    break
                buf += c
            replies.append(json.loads(buf.split(b"\0")[0]))
        check(all("jobs" in r.get("parameters", {}) for r in replies),
              "with 1000 connections open, calls on them are answered (%d of %d)"
              % (sum("jobs" in r.get("parameters", {}) for r in replies), len(replies)))
    finally:
        for s in socks:
            s.close()
    print("    2000 connections in %.2f s (%d connect() retries on a full backlog)"
          % (time.time() - t0, connect_retrying.eagain))
    check(d.alive(), "traind is up after 2000 connections")

    # several calls in one write are answered in order; oneway gets no reply
    v = Varlink(d.socket)
    v.send_raw(b'{"method": "io.traind.List", "oneway": true}\0'
               b'{"method": "io.traind.Status", "parameters": {"id": %d}}\0'
               b'{"method": "io.traind.Nope"}\0'
               b'{"method": "org.varlink.service.GetInfo"}\0' % bg)
    r1, r2, r3 = v.recv(), v.recv(), v.recv()
    check(r1.get("parameters", {}).get("job", {}).get("id") == bg and r2.get("error") ==
          "org.varlink.service.MethodNotFound" and "interfaces" in r3.get("parameters", {}),
          "pipelined calls are answered in order, the oneway one not at all")
    # the connection survives an error reply
    v.send_raw(b'{"method": \0')
    r = v.recv()
    r2 = v.call("io.traind.List")
    print("    after a malformed message the connection %s" %
          ("stays usable" if "jobs" in r2.get("parameters", {}) else "is not usable: %s" % r2))
    v.close()


def check_service(d):
    r = call(d, "org.varlink.service.GetInfo", {})
    p = r.get("parameters", {})
    check("io.traind" in p.get("interfaces", []), "GetInfo lists io.traind (%s)" % p.get("interfaces"))
    check(all(k in p for k in ("vendor", "product", "version", "url")), "GetInfo has vendor/product/version/url")
    r = call(d, "org.varlink.service.GetInterfaceDescription", {"interface": "io.traind"})
    desc = r.get("parameters", {}).get("description", "")
    with open(os.path.join(SRC, "daemon", "proto", "io.traind.varlink")) as f:
        want = f.read()
    check("interface io.traind" in desc and "method Start(" in desc,
          "GetInterfaceDescription(io.traind) returns the interface description")
    check(desc == want, "... exactly daemon/proto/io.traind.varlink (%d vs %d chars)" % (len(desc), len(want)))
    r = call(d, "org.varlink.service.GetInterfaceDescription", {"interface": "org.varlink.service"})
    desc = r.get("parameters", {}).get("description", "")
    with open(os.path.join(SRC, "daemon", "proto", "org.varlink.service.varlink")) as f:
        want = f.read()
    check(desc == want and "error InvalidParameter (parameter: string)" in desc,
          "GetInterfaceDescription(org.varlink.service) returns the standard description (%d vs %d chars)"
          % (len(desc), len(want)))
    r = call(d, "org.varlink.service.GetInterfaceDescription", {"interface": "io.other"})
    is_error(r, "org.varlink.service.InterfaceNotFound", "GetInterfaceDescription of another interface")
    check(r.get("parameters", {}).get("interface") == "io.other", "... naming it")
    is_error(call(d, "org.varlink.service.GetInterfaceDescription", {}),
             "org.varlink.service.InvalidParameter", "GetInterfaceDescription without interface")


def main():
    d = Daemon(max_running=1).start()
    check_service(d)
    bg = d.start_job(*BG)
    d.wait_running_at(bg, epoch=0, min_step=1)
    check_trainctl(d)
    check_raw(d, bg)
    check(d.alive(), "traind survived all of it")
    rc, out, err = d.ctl("list", check_rc=False)
    check(rc == 0 and ("running" in out or "done" in out), "a well-behaved trainctl list still works (rc %d)" % rc)
    check(d.job(bg)["state"] in ("running", "done"), "the background job was unaffected so far")
    rc, out, err = d.wait(bg, "--state", "done")
    check(rc == 0, "the background job finishes (rc %d, %s)" % (rc, err.strip()))
    sha_bg = sha256_file(d.export_file(bg))
    rc, out, err = d.ctl("export", bg, "-o", os.path.join(d.dir, "no", "such", "dir", "m.safetensors"),
                         check_rc=False)
    one_line_error(rc, out, err, "export into a directory that does not exist", "no/such/dir")
    check([r["epoch"] for r in d.history(bg)] == [1, 2, 3], "its history is epochs 1..3")

    q = Daemon(max_running=1).start()
    ref = q.start_job(*BG)
    rc, out, err = q.wait(ref, "--state", "done")
    check(rc == 0, "the same job on a quiet daemon finishes")
    sha_q = sha256_file(q.export_file(ref))
    check(sha_bg == sha_q, "the job that trained through the abuse has the quiet daemon's bits (%s vs %s)"
          % (sha_bg[:16], sha_q[:16]))
    q.stop()
    check_broken_dataset()


if __name__ == "__main__":
    run(main)
