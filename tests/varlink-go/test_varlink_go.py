#!/usr/bin/env python3
"""traind and the reference varlink implementation (github.com/varlink/go,
Debian's golang-github-varlink-go-dev in /usr/share/gocode).

Offline, in GOPATH mode (GO111MODULE=off) against /usr/share/gocode: builds
the library's interface generator (cmd/varlink-go-interface-generator), runs
it on daemon/proto/io.traind.varlink, builds conformance.go with the Go code it
generated (so that code must compile), and runs it against a real traind
(tests/lib/harness.py). conformance.go says what it checks. The Go build
cache is kept in the build directory, so only the first run compiles the
standard library. Meson suite 'daemon'.
"""
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
from harness import BUILD, Daemon, check, run  # noqa: E402

SRC = os.path.normpath(os.path.join(HERE, "..", ".."))
GOCODE = "/usr/share/gocode"


def go_env(gopath):
    env = dict(os.environ)
    env.update({
        "GO111MODULE": "off",
        "GOPATH": gopath + ":" + GOCODE,
        "GOFLAGS": "",
        "GOPROXY": "off",
        "GOTOOLCHAIN": "local",
        "CGO_ENABLED": "0",
        "GOCACHE": os.path.join(os.path.abspath(BUILD), "tests", "varlink-go", "gocache"),
    })
    env.setdefault("HOME", gopath)
    return env


def go(env, *args, cwd=None):
    p = subprocess.run(["go"] + list(args), env=env, cwd=cwd, capture_output=True, text=True, timeout=900)
    if p.returncode != 0:
        raise RuntimeError("go %s -> %d\n%s%s" % (" ".join(args), p.returncode, p.stdout, p.stderr))
    return p


def main():
    work = tempfile.mkdtemp(prefix="traind-go-")
    try:
        env = go_env(work)
        gen = os.path.join(work, "varlink-go-interface-generator")
        go(env, "build", "-o", gen, "github.com/varlink/go/cmd/varlink-go-interface-generator")
        pkg = os.path.join(work, "src", "iotraind")
        os.makedirs(pkg)
        shutil.copy(os.path.join(SRC, "daemon", "proto", "io.traind.varlink"), pkg)
        p = subprocess.run([gen, os.path.join(pkg, "io.traind.varlink")], env=env, capture_output=True,
                           text=True, timeout=120)
        generated = os.path.join(pkg, "iotraind.go")
        check(p.returncode == 0 and os.path.exists(generated),
              "the interface generator reads daemon/proto/io.traind.varlink (rc %d %s)" % (p.returncode, p.stderr.strip()))
        go(env, "vet", "iotraind")
        check(True, "the generated package iotraind compiles and passes go vet")
        prog = os.path.join(work, "src", "conformance")
        os.makedirs(prog)
        shutil.copy(os.path.join(HERE, "conformance.go"), prog)
        exe = os.path.join(work, "conformance")
        go(env, "build", "-o", exe, "conformance")
        check(True, "conformance.go builds against it and the library")

        d = Daemon(max_running=1).start()
        p = subprocess.run([exe, d.socket], capture_output=True, text=True, timeout=600)
        sys.stdout.write(p.stdout)
        sys.stdout.write(p.stderr)
        check(p.returncode == 0, "the Go client's checks pass (rc %d)" % p.returncode)
        check(d.alive(), "traind is up after the Go client")
    finally:
        shutil.rmtree(work, ignore_errors=True)


run(main)
