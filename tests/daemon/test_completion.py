#!/usr/bin/env python3
"""The shell completion of trainctl (client/completion/), exercised by bash
and zsh themselves against a real traind.

bash: the script is loaded by bash-completion's own loader (a
BASH_COMPLETION_USER_DIR holding it, as the installed file is found) and
registered (`complete -p trainctl`); then COMP_WORDS/COMP_CWORD are set as
bash sets them and _trainctl's COMPREPLY read: verbs by prefix, a verb's
flags, the values of a flag (fixed choices; datasets from traind, also in
the --flag=value form bash splits at '='), job ids from traind, only those
a verb acts on (pause: running; resume: stopped), --socket taken from the
line itself, file names for --config, dataset names for `dataset rm`, verbs
for `help`; and nothing (no error text) when traind is not there.
zsh: the function with _describe and _files stubbed, for the same lines,
with the jobs' names as descriptions.
"""
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import TRAINCTL, Daemon, check, run  # noqa: E402

SRC = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BASH_SCRIPT = os.path.join(SRC, "client", "completion", "trainctl.bash")
ZSH_SCRIPT = os.path.join(SRC, "client", "completion", "_trainctl")
LOADER = "/usr/share/bash-completion/bash_completion"


def bash_complete(env, cwd, words, userdir):
    """COMPREPLY for the command line `words` (the last one being typed)."""
    quoted = " ".join("'%s'" % w.replace("'", "'\\''") for w in words)
    script = """
set -u
export BASH_COMPLETION_USER_DIR=%s
source %s
_completion_loader trainctl
reg=$(complete -p trainctl) || exit 9
[[ $reg == "complete -F _trainctl trainctl" ]] || exit 8
COMP_WORDS=(%s)
COMP_CWORD=%d
COMP_LINE="${COMP_WORDS[*]}"
COMP_POINT=${#COMP_LINE}
_trainctl
printf '%%s\\n' "${COMPREPLY[@]}"
""" % (userdir, LOADER, quoted, len(words) - 1)
    p = subprocess.run(["bash", "--norc", "--noprofile", "-c", script], capture_output=True, text=True,
                       env=env, cwd=cwd, timeout=60)
    lines = [l for l in p.stdout.splitlines() if l]
    return p.returncode, lines, p.stderr


def zsh_complete(env, words):
    """What _trainctl hands _describe ("word:description") and _files."""
    quoted = " ".join("'%s'" % w.replace("'", "'\\''") for w in words)
    script = """
_describe() { local a=${@[-1]}; print -rl -- "${(@P)a}"; }
_files() { print -r -- FILES; }
source %s
words=(%s)
CURRENT=%d
_trainctl
""" % (ZSH_SCRIPT, quoted, len(words))
    p = subprocess.run(["zsh", "-f", "-c", script], capture_output=True, text=True, env=env, timeout=60)
    return p.returncode, [l for l in p.stdout.splitlines() if l], p.stderr


def main():
    d = Daemon(max_running=1).start()
    bindir = tempfile.mkdtemp(prefix="traind-compl-")
    os.symlink(os.path.abspath(TRAINCTL), os.path.join(bindir, "trainctl"))
    userdir = os.path.join(bindir, "user")
    os.makedirs(os.path.join(userdir, "completions"))
    shutil.copy(BASH_SCRIPT, os.path.join(userdir, "completions", "trainctl"))
    work = os.path.join(bindir, "work")
    os.makedirs(work)
    for f in ("run.yaml", "runs.txt"):
        open(os.path.join(work, f), "w").close()
    env = dict(os.environ, PATH=bindir + ":" + os.environ["PATH"], TRAIND_SOCKET=d.socket)

    done = d.start_job("--name", "finished", "--epochs", "1", "--train-size", "500", "--val-size", "100")
    d.wait(done)
    slow = d.start_job("--name", "slow one", "--epochs", "50", "--train-size", "20000", "--batch-size", "8",
                       "--val-size", "1000", "--threads", "1")
    d.wait_running_at(slow, 0, min_step=1, timeout=120)
    # completion gives traind 2 s to answer (a shell must not hang); the
    # first Datasets call reads the data directory: made once here, so that
    # on a loaded machine the first one is not the one completion times
    d.ctl_json("datasets")

    def bash(*words, env_=None):
        rc, got, err = bash_complete(env_ or env, work, list(words), userdir)
        check(rc == 0 and not err.strip(), "bash: %s: bash-completion's loader found the script, `complete -p trainctl` "
              "names _trainctl, it ran cleanly (rc %d, %s)" % (" ".join(words), rc, err.strip()[:200]))
        return got

    got = bash("trainctl", "st")
    check(got == ["start", "status"], "bash: trainctl st<TAB> -> start, status (%s)" % got)
    got = bash("trainctl", "")
    check({"start", "watch", "config", "help", "rm"} <= set(got) and "__complete" not in got,
          "bash: trainctl <TAB> -> every verb, not the hidden one (%d)" % len(got))
    got = bash("trainctl", "start", "--data")
    check(got == ["--dataset"], "bash: start --data<TAB> -> --dataset (%s)" % got)
    got = bash("trainctl", "start", "--epochs", "3", "--")
    check("--lr" in got and "--config" in got and "--epochs" not in got and "--csv" not in got,
          "bash: start ... --<TAB>: start's flags, not those given nor another verb's (%d)" % len(got))
    got = bash("trainctl", "start", "--dataset", "")
    check(got == ["fashion-mnist", "mnist"], "bash: start --dataset <TAB> -> traind's datasets (%s)" % got)
    got = bash("trainctl", "start", "--dataset", "=", "mn")
    check(got == ["mnist"], "bash: start --dataset=mn<TAB> (split at '=') -> mnist (%s)" % got)
    got = bash("trainctl", "start", "--optimizer", "")
    check(got == ["adam", "adamw", "sgd"], "bash: --optimizer <TAB> -> adam adamw sgd (%s)" % got)
    got = bash("trainctl", "status", "")
    check(got == [str(done), str(slow)], "bash: status <TAB> -> the job ids from traind (%s)" % got)
    got = bash("trainctl", "pause", "")
    check(got == [str(slow)], "bash: pause <TAB> -> only the running job (%s)" % got)
    got = bash("trainctl", "resume", "")
    check(got == [str(done)], "bash: resume <TAB> -> only the stopped job (%s)" % got)
    got = bash("trainctl", "rm", str(done), "")
    check(got == [str(slow)], "bash: rm JOB <TAB> -> the other jobs (%s)" % got)
    got = bash("trainctl", "list", "--state", "paused,r")
    check(got == ["paused,running"], "bash: --state paused,r<TAB> -> paused,running (%s)" % got)
    got = bash("trainctl", "start", "--config", "ru")
    check(sorted(got) == ["run.yaml", "runs.txt"], "bash: --config ru<TAB> -> the files (%s)" % got)
    got = bash("trainctl", "dataset", "rm", "")
    check(got == ["fashion-mnist", "mnist"], "bash: dataset rm <TAB> -> the datasets (%s)" % got)
    got = bash("trainctl", "help", "w")
    check(sorted(got) == ["wait", "watch"], "bash: help w<TAB> -> wait, watch (%s)" % got)
    # the socket named on the line, not the environment's
    no_env = dict(env)
    del no_env["TRAIND_SOCKET"]
    no_env["XDG_RUNTIME_DIR"] = bindir
    got = bash("trainctl", "--socket", d.socket, "status", "", env_=no_env)
    check(got == [str(done), str(slow)], "bash: --socket PATH status <TAB> asks that socket (%s)" % got)
    got = bash("trainctl", "status", "", env_=no_env)
    check(got == [], "bash: no traind to ask: no candidates and no error text (%s)" % got)

    rc, got, err = zsh_complete(env, ["trainctl", "st"])
    check(rc == 0 and got == ["start:queue a new job; prints its id", "status:one job in detail, or all of them"],
          "zsh: trainctl st<TAB> -> start, status with their summaries (%s %s)" % (got, err.strip()[:200]))
    rc, got, err = zsh_complete(env, ["trainctl", "status", ""])
    check(rc == 0 and got == ["%d:finished (done)" % done, "%d:slow one (running)" % slow],
          "zsh: status <TAB> -> job ids described by name and state (%s %s)" % (got, err.strip()[:200]))
    rc, got, err = zsh_complete(env, ["trainctl", "start", "--optimizer=ad"])
    check(rc == 0 and got == ["--optimizer=adam", "--optimizer=adamw"],
          "zsh: --optimizer=ad<TAB> (one word) -> --optimizer=adam, --optimizer=adamw (%s)" % got)
    rc, got, err = zsh_complete(env, ["trainctl", "start", "--config", ""])
    check(rc == 0 and got == ["FILES"], "zsh: --config <TAB> -> file names (%s)" % got)

    d.ctl("kill", slow)
    shutil.rmtree(bindir, ignore_errors=True)


if __name__ == "__main__":
    run(main)
