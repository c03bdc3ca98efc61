#!/usr/bin/env python3
"""One traind per database; a stale socket file is replaced, a live socket is
never taken over, and the refused daemons leave the running one alone."""
import json
import os
import signal
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import Daemon, check, run  # noqa: E402

SLOW = ["--train-size", "10000", "--batch-size", "4", "--val-size", "2000", "--epochs", "2"]


def refused(d, what, *words):
    """Start d expecting it to refuse: non-zero exit, a message naming words."""
    d.start(wait=False)
    rc = d.wait_exit(20)
    if rc is None:
        d.kill9()
    msg = d.read_log().strip()
    check(rc is not None and rc != 0, "%s: traind refuses to start (exit %s)" % (what, rc))
    low = msg.lower()
    check(any(w.lower() in low for w in words), "%s: the message mentions %s: %s"
          % (what, " or ".join(words), msg.splitlines()[-1] if msg else "(nothing)"))
    return msg


def still_serving(d, job, what):
    rc, out, err = d.ctl("list", "--json", check_rc=False)
    ids = []
    if rc == 0:
        ids = [j["id"] for j in json.loads(out)]
    check(rc == 0 and job in ids, "%s: the first traind still answers on its socket (rc %d, jobs %s)"
          % (what, rc, ids))
    check(d.alive(), "%s: the first traind is still running" % what)


def main():
    d1 = Daemon(max_running=1).start()
    job = d1.start_job(*SLOW)
    d1.wait_running_at(job, epoch=0, min_step=1)
    ino = os.stat(d1.socket).st_ino

    # another traind on the same database (with its own socket)
    d2 = Daemon(db_path=d1.db)
    refused(d2, "same --db, another socket", "another traind", "database", d1.db)
    check(not os.path.exists(d2.socket), "the refused traind created no socket")
    still_serving(d1, job, "after a second traind on its database")

    # same database and same socket
    d2b = Daemon(db_path=d1.db, socket_path=d1.socket)
    refused(d2b, "same --db and --socket", "another traind", "database")
    check(os.path.exists(d1.socket) and os.stat(d1.socket).st_ino == ino, "the first traind's socket file is untouched")
    still_serving(d1, job, "after a second traind on its database and socket")

    # another database, but the live socket of the first
    d3 = Daemon(socket_path=d1.socket)
    refused(d3, "another --db, the same live --socket", "another traind", "listening", "socket", "in use")
    check(os.path.exists(d1.socket) and os.stat(d1.socket).st_ino == ino,
          "the live socket was not taken over (same inode)")
    still_serving(d1, job, "after a second traind on its socket")

    # a file that is not a socket where the socket should go
    d4 = Daemon()
    with open(d4.socket, "w") as f:
        f.write("not a socket\n")
    refused(d4, "a regular file at the socket path", "not a socket", "exists")
    check(open(d4.socket).read() == "not a socket\n", "the regular file is left alone")

    rc, out, err = d1.wait(job, "--state", "done")
    check(rc == 0, "the first traind's job finished undisturbed (rc %d, %s)" % (rc, err.strip()))

    # SIGKILL leaves a stale socket file; the restart replaces it
    d1.kill9()
    check(os.path.exists(d1.socket), "after SIGKILL the socket file is left behind (stale)")
    d1.start()
    rc, out, err = d1.ctl("status", job, check_rc=False)
    check(rc == 0 and "done" in out, "the restarted traind replaced the stale socket and serves (rc %d: %s)"
          % (rc, out.strip().splitlines()[-1] if out.strip() else err.strip()))
    check("stale" in d1.read_log().lower(), "the log says the stale socket was replaced")

    # a clean stop releases the database: the next traind on it starts
    d1.signal(signal.SIGTERM)
    check(d1.wait_exit(30) == 0, "SIGTERM: traind exits 0")
    d1.stop()
    d5 = Daemon(db_path=d1.db).start()
    rc, out, err = d5.ctl("status", job, check_rc=False)
    check(rc == 0 and "done" in out, "a new traind on the released database starts and sees the job")
    d5.stop()


if __name__ == "__main__":
    run(main)
