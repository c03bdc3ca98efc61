#!/usr/bin/env python3
"""trainctl as a newcomer meets it (issue 26), against a real traind:

- help: `help` lists the verbs, `help VERB` and `VERB -h` print that verb's
  usage and flags only; an unknown verb, flag or setting gets "did you mean";
  a flag of another verb names the verbs that take it;
- the daemon's errors in the CLI's words: flags (--batch-size, --weights-only),
  one prefix, the --config file's line for a setting from there, and for a
  dataset traind lacks, those it has with the nearest;
- numbers as people write them: --json and traind's own replies carry the
  shortest exact reals (0.9, 0.0003), the history table four digits;
- a finished job: status shows started/finished, how long, the final metrics
  and its checkpoint, list no "step 0/N"; watch (a pipe, then a terminal)
  prints a line per epoch with train and val metrics and a summary;
- config files: `config JOB` prints YAML that `start --config` takes back:
  the same configuration, and trained, the same bits; flags win over the
  file; bad files are refused naming the line;
- a 3000-image dataset trains with the default val_size; a val_size too big
  names --val-size;
- `export -o model.pt` warns that the file is safetensors and writes it;
- Fashion-MNIST fetched by scripts/fetch-data has its class names
  (eval --per-class, predict).
"""
import json
import os
import pty
import re
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import dsdata  # noqa: E402
from harness import DATA, TRAINCTL, Daemon, check, run, safetensors_header  # noqa: E402

SRC = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SMALL = ["--train-size", "2000", "--val-size", "500", "--threads", "1"]


def raw_reply(sock, method, params):
    """traind's reply to one call, as the bytes it sent."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(30)
    s.connect(sock)
    s.sendall(json.dumps({"method": method, "parameters": params}).encode() + b"\0")
    got = b""
    while not got.endswith(b"\0"):
        chunk = s.recv(1 << 16)
        if not chunk:
            break
        got += chunk
    s.close()
    return got.rstrip(b"\0").decode()


def on_terminal(argv, timeout=300):
    """Run argv with its stdout on a pseudo-terminal; what it wrote."""
    master, slave = pty.openpty()
    p = subprocess.Popen(argv, stdout=slave, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    os.close(slave)
    out = b""
    deadline = time.time() + timeout
    while time.time() < deadline:
        r, _, _ = select.select([master], [], [], 0.5)
        if r:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        elif p.poll() is not None:
            break
    p.wait(30)
    os.close(master)
    return p.returncode, out.decode(errors="replace"), p.stderr.read().decode()


def help_and_typos(d):
    rc, out, err = d.ctl("help")
    check(rc == 0 and all(("\n  %s " % v) in out for v in ("start", "watch", "config", "help", "rm")),
          "trainctl help lists the verbs")
    check("__complete" not in out, "... but not the completion's helper")
    rc, out, err = d.ctl("start", "-h")
    check(rc == 0 and out.startswith("usage: trainctl start") and "--config FILE" in out and "--val-size" in out
          and "\n  watch " not in out and "--csv" not in out,
          "start -h prints start's usage and flags, not everything")
    rc, out2, err = d.ctl("help", "start")
    check(out2 == out, "help start prints the same as start -h")
    rc, out, err = d.ctl("resume", "--help")
    check(rc == 0 and "--allow-data-change" in out and "--lr" not in out, "resume --help: resume's flags")
    rc, out, err = d.ctl("strat", check_rc=False)
    check(rc == 2 and not out and err.strip() == "trainctl: unknown verb 'strat' (did you mean 'start'?); "
          "'trainctl help' lists them", "a typo of a verb: did you mean start (%r)" % err.strip())
    rc, out, err = d.ctl("help", "wacth", check_rc=False)
    check(rc == 2 and "did you mean 'watch'" in err, "help wacth: did you mean watch (%r)" % err.strip())
    rc, out, err = d.ctl("start", "--epoch", "5", check_rc=False)
    check(rc == 2 and err.strip() == "trainctl: start: unknown option --epoch (did you mean --epochs?)",
          "start --epoch: did you mean --epochs (%r)" % err.strip())
    rc, out, err = d.ctl("start", "--csv", check_rc=False)
    check(rc == 2 and "--csv is not an option of start (history takes it)" in err,
          "start --csv: the verbs that take it (%r)" % err.strip())
    check(d.call("io.traind.List")["parameters"]["jobs"] == [], "none of these reached traind")


def daemon_words(d, job):
    rc, out, err = d.ctl("start", "--from", job, "--batch-size", "128", check_rc=False)
    e = err.strip()
    check(rc == 1 and e.startswith("trainctl: --batch-size: cannot change when starting from job") and
          "--weights-only" in e and "weights_only" not in e and "invalid parameter" not in e and
          e.count("batch") == 1, "start --from --batch-size: the flags' names, one prefix (%r)" % e)
    rc, out, err = d.ctl("start", "--dataset", "mnsit", check_rc=False)
    e = err.strip()
    have = ", ".join(x["name"] for x in d.ctl_json("datasets"))
    check(rc == 1 and e == "trainctl: --dataset: traind has no dataset 'mnsit' (it has: %s); did you mean mnist?" % have,
          "--dataset mnsit: the datasets traind has and the nearest (%r)" % e)
    rc, out, err = d.ctl("start", "--val-size", "70000", check_rc=False)
    check(rc == 1 and err.strip() == "trainctl: --val-size: 70000 leaves no training images (the training file has 60000)",
          "--val-size too big: named by its flag, once (%r)" % err.strip())


def numbers(d):
    job = d.start_job(*SMALL, "--epochs", "2", "--lr", "0.003", "--lr-scheduler", "step(step_size=1,gamma=0.1)",
                      "--beta1", "0.9", "--name", "numbers")
    d.wait(job)
    rc, out, err = d.ctl("status", job, "--json")
    check('"beta1": 0.9,' in out and '"lr": 0.003,' in out and "0.90000000000000002" not in out,
          "status --json: the shortest exact reals (beta1 0.9, lr 0.003)")
    raw = raw_reply(d.socket, "io.traind.Status", {"id": job})
    check('"beta1":0.9,' in raw and '"eps":1e-8' in raw and '"lr":0.003,' in raw,
          "traind's own reply: beta1 0.9, eps 1e-8, lr 0.003 (%s)" % re.findall(r'"(?:beta1|eps|lr)":[^,]*', raw))
    rc, out, err = d.ctl("history", job)
    check(re.search(r"\s0\.0003\s", out.splitlines()[2] + " ") is not None and "0.00030000000000000003" not in out,
          "history's table: lr 0.0003, not 0.00030000000000000003:\n%s" % out)
    rc, out, err = d.ctl("history", job, "--json")
    rows = json.loads(out)
    check(rows[1]["lr"] == 0.003 * 0.1 and "0.00030000000000000003" in out,
          "history --json keeps the exact rate (0.00030000000000000003 is 0.003 * 0.1 exactly)")
    return job


def finished_job(d, job):
    rc, out, err = d.ctl("status", job)
    lines = out.splitlines()
    row = lines[1].split()
    check(row[3] == "2/2" and row[4] == "-" and re.match(r"\d{4}-\d\d-\d\d", row[8]) is not None,
          "status of a done job: epoch 2/2, no step, its start time (%r)" % lines[1])
    check(any(re.match(r"started: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d, finished \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \(\S+, \S+ training\)$", l)
              for l in lines), "status: started, finished, how long (%s)" % lines[2:4])
    check(any(re.match(r"final: epoch 2/2: train_loss \S+  train_acc \S+  val_loss \S+  val_acc \S+$", l) for l in lines),
          "status: the final metrics")
    check("checkpoint: epoch 2" in lines and not any("/0" in l.split()[-1] for l in lines[1:2]),
          "status: its checkpoint, not 'checkpoint 2/0'")
    rc, out, err = d.ctl("list")
    check(re.search(r"\bdone\s+2/2\s+-\s", out) is not None and "/157" not in out, "list: a done job has no 'step 0/N'")
    j = d.status(job)
    check(isinstance(j.get("started"), int) and isinstance(j.get("finished"), int) and j["finished"] >= j["started"],
          "the Job object has started and finished")


def watch(d):
    job = d.start_job(*SMALL, "--epochs", "2", "--batch-size", "8", "--name", "watched")
    rc, out, err = d.ctl("watch", job)
    lines = out.splitlines()
    check(rc == 0 and len(lines) == 3, "watch (a pipe): two epoch lines and a summary, nothing else (%r)" % lines)
    for e in (1, 2):
        check(len(lines) > e - 1 and re.match(r"job %d: epoch %d/2  train_loss \S+  train_acc \S+  val_loss \S+  val_acc \S+  \S+s$"
                                               % (job, e), lines[e - 1]) is not None,
              "watch: epoch %d's line has its train and val metrics (%r)" % (e, lines[e - 1] if len(lines) >= e else None))
    hist = d.history(job)
    check(len(lines) == 3 and ("val_loss %.4g" % hist[1]["val_loss"]) in lines[1], "watch: the epoch line's figures are the history's")
    check(len(lines) == 3 and lines[2].startswith("job %d: done: 2 epochs in " % job) and "best epoch" in lines[2]
          and "batch 0/" not in out and "ETA -" not in out, "watch: a summary at the end (%r)" % lines[-1:])
    # on a terminal: a progress bar while an epoch runs
    job = d.start_job(*SMALL, "--epochs", "2", "--batch-size", "2", "--name", "watched-tty")
    rc, out, err = on_terminal([TRAINCTL, "--socket", d.socket, "watch", str(job)])
    printed = [l.split("\r")[-1].replace("\x1b[K", "") for l in out.replace("\r\n", "\n").split("\n")]
    printed = [l for l in printed if l]
    check(rc == 0 and "[" in out and "#" in out and "\r" in out, "watch on a terminal draws a progress bar (%d bytes)" % len(out))
    check(len(printed) >= 3 and printed[-1].startswith("job %d: done: 2 epochs" % job) and
          sum(1 for l in printed if re.match(r"job %d: epoch \d/2  train_loss" % job, l)) == 2,
          "watch on a terminal: the epoch lines and the summary stay (%r)" % printed[-3:])


def config_files(d, tmp):
    job = d.start_job(*SMALL, "--epochs", "1", "--name", "cfg", "--lr", "0.002", "--hidden", "64,32",
                      "--optimizer", "adamw", "--lr-scheduler", "cosine(t_max=3)", "--keep", "2")
    d.wait(job)
    rc, text, err = d.ctl("config", job)
    path = os.path.join(tmp, "run.yaml")
    open(path, "w").write(text)
    check(rc == 0 and "lr: 0.002\n" in text and "hidden: [64, 32]\n" in text and 'lr_scheduler: cosine(t_max=3)\n' in text
          and "name: cfg\n" in text and "keep: 2\n" in text and "eps: 1.0e-8\n" in text,
          "config JOB prints YAML with every key:\n%s" % text)
    try:
        import yaml  # Debian's python3-yaml: another reader agrees on the types
        doc = yaml.safe_load(text)
        check(doc["eps"] == 1e-8 and doc["lr"] == 0.002 and doc["hidden"] == [64, 32] and doc["model"] == ""
              and doc["ftz"] is True, "PyYAML reads the same values (eps a float, model an empty string)")
    except ImportError:
        print("skip: no PyYAML")
    again = d.start_job("--config", path)
    d.wait(again)
    a, b = d.status(job), d.status(again)
    check(a["config"] == b["config"] and b["name"] == "cfg" and b["keep"] == 2,
          "start --config with config's output: the same configuration, name and keep")
    check(d.export_sha(job) == d.export_sha(again), "... and, trained, the same weights")
    other = d.start_job("--config", path, "--epochs", "2", "--name", "flagged")
    cfg = d.status(other)["config"]
    check(cfg["epochs"] == 2 and cfg["lr"] == 0.002 and d.status(other)["name"] == "flagged",
          "flags given with --config win over the file, the rest is the file's")
    d.ctl("kill", other, check_rc=False)
    for content, want in (("epochs: 2\nbatchsize: 16\n", "%s:2: unknown setting 'batchsize' (did you mean batch_size?)"),
                          ("epochs: 2\nlr: fast\n", "%s:2: lr: expected a number, got 'fast'"),
                          ("epochs: [2\n", "--config: %s:2:1: not YAML"),
                          ("epochs: 2\nepochs: 3\n", "--config: %s:2: epochs: set twice"),
                          ("model:\n  layers: 3\n", "--config: %s:2: model: expected a value, not a mapping"),
                          ("- 1\n- 2\n", "--config: %s:1: expected a mapping")):
        open(path, "w").write(content)
        rc, out, err = d.ctl("start", "--config", path, check_rc=False)
        check(rc == 2 and err.strip().startswith("trainctl: " + want % path), "a bad settings file: %r" % err.strip())
    open(path, "w").write("epochs: 1\ntrain_size: 2000\nval_size: 70000\n")
    rc, out, err = d.ctl("start", "--config", path, check_rc=False)
    check(rc == 1 and err.strip() == "trainctl: %s:3: val_size: 70000 leaves no training images (the training file has 60000)" % path,
          "traind's error about a setting of the file names the file's line (%r)" % err.strip())


def small_dataset(d, tmp):
    src = dsdata.write_small_mnist(os.path.join(tmp, "small"), n_train=3000, n_test=500)
    files = [os.path.join(src, f) for f in sorted(os.listdir(src))]
    d.ctl("dataset", "import", "small", *files)
    job = d.start_job("--dataset", "small", "--epochs", "1")
    rc, out, err = d.wait(job)
    st = d.status(job)
    check(rc == 0 and st["state"] == "done" and st["config"]["val_size"] == 500,
          "a 3000-image dataset trains with the default val_size: a sixth, 500, recorded (%s)" % st["config"]["val_size"])
    rc, out, err = d.ctl("start", "--dataset", "small", "--val-size", "3000", check_rc=False)
    check(rc == 1 and err.strip().startswith("trainctl: --val-size: 3000 leaves no training images"),
          "a val_size too big for it names --val-size (%r)" % err.strip())
    big = d.start_job("--epochs", "1", "--train-size", "1000")
    check(d.status(big)["config"]["val_size"] == 10000, "MNIST keeps the lesson's 10000")
    d.ctl("kill", big, check_rc=False)
    d.wait(big)
    return job


def export_pt(d, job, tmp):
    path = os.path.join(tmp, "model.pt")
    rc, out, err = d.ctl("export", job, "-o", path)
    header, _ = safetensors_header(path)
    check(rc == 0 and "warning" in err and "safetensors" in err and "traind.torch.load" in err
          and any(k.endswith(".weight") for k in header),
          "export -o model.pt: written (safetensors), with a warning saying so (%r)" % err.strip())
    rc, out, err = d.ctl("export", job, "-o", os.path.join(tmp, "model.safetensors"))
    check(rc == 0 and not err, "export -o model.safetensors: no warning")


def fashion_names(tmp):
    if not os.path.isdir("/usr/share/datasets/fashion-mnist"):
        print("skip: no /usr/share/datasets/fashion-mnist (dataset-fashion-mnist)")
        return
    data = os.path.join(tmp, "data")
    os.makedirs(data)
    os.symlink(os.path.join(os.path.abspath(DATA), "mnist"), os.path.join(data, "mnist"))
    p = subprocess.run([os.path.join(SRC, "scripts", "fetch-data"), "--no-mnist", data], capture_output=True, text=True)
    check(p.returncode == 0 and os.path.exists(os.path.join(data, "fashion-mnist", "dataset.json")),
          "scripts/fetch-data writes fashion-mnist's dataset.json (%s)" % p.stdout.strip())
    d = Daemon(data_dir=data).start()
    job = d.start_job("--dataset", "fashion-mnist", "--epochs", "1", "--train-size", "2000", "--val-size", "1000")
    d.wait(job)
    rc, out, err = d.ctl("eval", job, "--per-class")
    check("T-shirt/top" in out and "Ankle boot" in out and " - " not in out.splitlines()[2],
          "eval --per-class names Fashion-MNIST's classes:\n%s" % out)
    ds = [x for x in d.ctl_json("datasets") if x["name"] == "fashion-mnist"][0]
    check(ds.get("class_names", [None])[0] == "T-shirt/top", "datasets --json has the class names")
    d.stop()


def main():
    tmp = tempfile.mkdtemp(prefix="traind-cli-")
    # a data directory of our own (dataset import writes there): MNIST's
    # files linked in, read only
    data = os.path.join(tmp, "data-main")
    os.makedirs(os.path.join(data, "mnist"))
    for name in sorted(os.listdir(os.path.join(DATA, "mnist"))):
        os.symlink(os.path.join(os.path.abspath(DATA), "mnist", name), os.path.join(data, "mnist", name))
    d = Daemon(max_running=1, data_dir=data).start()
    try:
        help_and_typos(d)
        job = numbers(d)
        daemon_words(d, job)
        finished_job(d, job)
        watch(d)
        config_files(d, tmp)
        small = small_dataset(d, tmp)
        export_pt(d, small, tmp)
        fashion_names(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    run(main)
