#!/usr/bin/env python3
"""Language models through traind (issue 24, doc/sequences.md), on a small
generated text:

- `trainctl dataset import NAME corpus.txt` builds the char vocabulary
  (dataset.json: its code points, sorted); --vocab byte takes any bytes.
- A char_lstm and a gpt job, each paused mid-epoch and resumed, then
  traind SIGKILLed after an epoch and restarted: bit-identical to the same
  job never stopped (export and history); the history has val_ppl and the
  per-token accuracy, eval the perplexity, status the model.
- A gpt job as the last session stored it (no seq_kernels key: the
  per-head attention, LayerNorm in double) paused, restarted and resumed:
  bit for bit the same job with seq_kernels 1 never stopped, not a new
  job's arithmetic (seq_kernels 3, float32 here: the blocked attention of
  seq_kernels 2; the context of 40 is two blocks).
- `generate`: the prompt continued, the same text for the same seed,
  another for another seed; a prompt with characters the vocabulary lacks
  is refused naming them.
- Bad input gets a clear error, changes nothing and leaves traind running:
  a file that is not UTF-8 (its byte offset named), a context longer than
  the text, a vocabulary over the embedding's rows, a model whose output is
  not the vocabulary.
"""
import json
import os
import sqlite3
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.insert(0, os.path.join(HERE, "..", "..", "python"))
from harness import SANITIZER, Daemon, check, run, sha256_file  # noqa: E402
import traind  # noqa: E402
import textdata  # noqa: E402


def corpus(n, seed=1):
    return textdata.corpus(n, seed, textdata.ASCII_WORDS)


# The stopped-and-resumed jobs train on a longer text of the same words
# ("long": the first 12000 characters are "words"' text): with 16 steps an
# epoch, an epoch took a few ms and the pause could land on its boundary.
LONG_CHARS = 40000 if SANITIZER else 120000
LSTM = ["--dataset", "long", "--model", "char_lstm(embed=12,hidden=32,layers=2)", "--context", "24",
        "--batch-size", "16", "--epochs", "3", "--lr", "0.01", "--val-size", "20"]
GPT = ["--dataset", "long", "--model", "gpt(layers=2,dim=32,heads=4)", "--context", "40",
       "--batch-size", "16", "--epochs", "3", "--lr", "0.005", "--val-size", "20"]


def stop_and_go(d, cfg, what):
    """cfg's job paused mid-epoch 2 (or 3) and resumed, SIGKILLed after the
    next epoch and restarted, against the same job never stopped."""
    job = d.start_job(*cfg)
    j = d.wait_running_at(job, epoch=1, min_step=3)
    rc, out, err = d.ctl("pause", job, check_rc=False)
    st = d.status(job)
    # mid-epoch 2, or (a fast machine: an epoch takes a few ms) mid-epoch 3
    check(rc == 0 and st["state"] == "paused" and st["epoch"] in (1, 2) and 0 < st["step"] < st["steps_per_epoch"],
          "%s: paused mid-epoch %s (step %s of %s; %s)" % (what, st["epoch"] + 1, st["step"], st["steps_per_epoch"],
                                                          err.strip()))
    d.ctl("resume", job)
    rc, out, err = d.wait(job, "--epoch", str(st["epoch"] + 1))
    check(rc == 0, "%s: epoch %s committed after the resume (%s)" % (what, st["epoch"] + 1, err.strip()))
    d.kill9()
    d.start()
    rc, out, err = d.wait(job, "--state", "done")
    check(rc == 0, "%s: after SIGKILL and a restart the job finishes (%s)" % (what, err.strip()))
    ref = d.start_job(*cfg)
    rc, out, err = d.wait(ref, "--state", "done")
    check(rc == 0, "%s: the job never stopped finishes" % what)
    a = sha256_file(d.export_file(job, "%s-stopped.safetensors" % what))
    b = sha256_file(d.export_file(ref, "%s-ref.safetensors" % what))
    check(a == b, "%s paused mid-epoch, SIGKILLed after an epoch and resumed == never stopped (%s vs %s)"
          % (what, a[:16], b[:16]))
    ha, hb = d.history(job), d.history(ref)
    keys = ("train_loss", "train_acc", "val_loss", "val_acc", "val_ppl")
    check([[r.get(k) for k in keys] for r in ha] == [[r.get(k) for k in keys] for r in hb],
          "%s: the same history, metric for metric" % what)
    return job, ha


def stored_before_key(d):
    """A gpt job stored without seq_kernels (before the key) resumes in the
    arithmetic it was trained with."""
    old = GPT + ["--seq-kernels", "1"]
    job = d.start_job(*old)
    d.wait_running_at(job, epoch=1, min_step=3)
    rc, out, err = d.ctl("pause", job, check_rc=False)
    st = d.status(job)
    check(rc == 0 and st["state"] == "paused", "seq_kernels 1: paused (%s)" % err.strip())
    d.stop()
    con = sqlite3.connect(d.db)
    cfg = json.loads(con.execute("SELECT config FROM jobs WHERE id = ?", (job,)).fetchone()[0])
    check(cfg.pop("seq_kernels", None) == 1, "the job's stored config has seq_kernels 1")
    con.execute("UPDATE jobs SET config = ? WHERE id = ?", (json.dumps(cfg), job))
    con.commit()
    con.close()
    d.start()
    rc, out, err = d.ctl("config", job, check_rc=False)
    check(rc == 0 and "seq_kernels: 1" in out, "a job stored without the key shows seq_kernels 1 (%s)"
          % [x for x in out.splitlines() if "seq" in x])
    d.ctl("resume", job)
    rc, out, err = d.wait(job, "--state", "done")
    check(rc == 0, "the job stored without the key finishes (%s)" % err.strip())
    ref = d.start_job(*old)
    new = d.start_job(*GPT)
    for j in (ref, new):
        rc, out, err = d.wait(j, "--state", "done")
        check(rc == 0, "job %s finishes (%s)" % (j, err.strip()))
    a, b, c = (sha256_file(d.export_file(j, "keyless-%s.safetensors" % j)) for j in (job, ref, new))
    check(a == b, "stored without seq_kernels, paused and resumed == seq_kernels 1 never stopped (%s vs %s)"
          % (a[:16], b[:16]))
    check(a != c, "... and not a new job's arithmetic, seq_kernels 3 (%s)" % c[:16])


def bad_start(d, args, key, words, what):
    before = d.ctl_json("list")
    rc, out, err = d.ctl("start", *args, check_rc=False)
    check(rc != 0 and key in err and all(w in err for w in words),
          "%s: refused naming %s (%s)" % (what, key, err.strip()))
    check(d.ctl_json("list") == before and d.alive(), "%s: nothing stored, traind running" % what)


def main():
    work = tempfile.mkdtemp(prefix="traind-seq-")
    data = os.path.join(work, "data")
    os.makedirs(data)
    d = Daemon(data_dir=data, max_running=1).start()
    text = corpus(12000)
    src = os.path.join(work, "corpus.txt")
    with open(src, "w") as f:
        f.write(text)

    long_src = os.path.join(work, "long.txt")
    with open(long_src, "w") as f:
        f.write(corpus(LONG_CHARS))
    rc, out, err = d.ctl("dataset", "import", "long", long_src, check_rc=False)
    check(rc == 0, "dataset import long long.txt (rc %d, %s)" % (rc, err.strip()))

    # ---- import: the char vocabulary, sorted ----
    rc, out, err = d.ctl("dataset", "import", "words", src, check_rc=False)
    check(rc == 0, "dataset import words corpus.txt (rc %d, %s)" % (rc, err.strip()))
    meta = json.load(open(os.path.join(data, "words", "dataset.json")))
    want = sorted(set(ord(c) for c in text))
    check(meta.get("vocab") == "char" and meta.get("code_points") == want and meta.get("files") == ["corpus.txt"],
          "dataset.json: vocab char, the text's %d code points sorted, its file (%s)"
          % (len(want), {k: meta.get(k) for k in ("vocab", "files")}))
    ds = [x for x in d.ctl_json("datasets") if x["name"] == "words"][0]
    n_test = int(len(text) * 0.1)
    check(ds.get("format") == "text" and ds.get("vocab") == len(want) and ds.get("targets") == "tokens"
          and ds.get("train_tokens") == len(text) - n_test and ds.get("test_tokens") == n_test,
          "datasets: a text of %d + %d tokens, vocabulary %d (%s)"
          % (len(text) - n_test, n_test, len(want),
             {k: ds.get(k) for k in ("format", "vocab", "targets", "train_tokens", "test_tokens")}))

    # ---- bad input ----
    bad = os.path.join(work, "bad.txt")
    raw = text[:500].encode() + b"\xff\xfe" + text[500:900].encode()
    with open(bad, "wb") as f:
        f.write(raw)
    rc, out, err = d.ctl("dataset", "import", "bad", bad, check_rc=False)
    check(rc != 0 and "bad.txt" in err and "not UTF-8" in err and "byte offset 500" in err,
          "a file that is not UTF-8: refused naming it and byte offset 500 (%s)" % err.strip())
    check(not os.path.exists(os.path.join(data, "bad")) and d.alive(), "... no dataset made, traind running")
    rc, out, err = d.ctl("dataset", "import", "bytes", bad, "--vocab", "byte", check_rc=False)
    bmeta = json.load(open(os.path.join(data, "bytes", "dataset.json"))) if rc == 0 else {}
    check(rc == 0 and bmeta.get("vocab") == "byte", "--vocab byte imports the same bytes (%s)" % err.strip())
    rc, out, err = d.ctl("dataset", "import", "x", src, "--vocab", "word", check_rc=False)
    check(rc == 2 and "--vocab" in err, "--vocab word: a usage error naming --vocab (%s)" % err.strip())

    bad_start(d, ["--dataset", "words", "--model", "char_lstm", "--context", "20000"], "context",
              ["longer than the text"], "a context longer than the text")
    bad_start(d, ["--dataset", "words", "--model", "char_lstm"], "context", ["give the tokens"],
              "a text without a context")
    bad_start(d, ["--dataset", "words", "--model", "embedding(5,8),lstm(8),linear(%d)" % len(want), "--context", "16"],
              "model", ["vocabulary has %d tokens" % len(want), "embedding(5,8)"],
              "a vocabulary over the embedding's size")
    bad_start(d, ["--dataset", "words", "--model", "embedding(%d,8),lstm(8),linear(7)" % len(want), "--context", "16"],
              "model", ["linear(%d)" % len(want)], "a model whose output size is not the vocabulary")
    bad_start(d, ["--dataset", "words", "--model", "embedding(%d,8),lstm(8),last,linear(%d)" % (len(want), len(want)),
                  "--context", "16"], "model", ["per position"], "a model with one output per sample")

    # ---- char_lstm, gpt: stopped and resumed == never stopped ----
    lstm, hist = stop_and_go(d, LSTM, "char_lstm")
    check(all(r.get("val_ppl") and abs(r["val_ppl"] - 2.718281828459045 ** r["val_loss"]) < 1e-9 * r["val_ppl"]
              and 0 < r["val_acc"] < 1 and r.get("val_macro_acc") is None for r in hist),
          "history: val_ppl = exp(val_loss), a per-token accuracy, no macro accuracy (%s)"
          % [(round(r["val_loss"], 4), r.get("val_ppl")) for r in hist])
    check(hist[-1]["val_ppl"] < len(want) / 2, "char_lstm learns: val_ppl %.3f after 3 epochs (vocabulary %d)"
          % (hist[-1]["val_ppl"], len(want)))
    st = d.status(lstm)
    check(st.get("model", "").startswith("char_lstm(") and st.get("params"), "status: the model %r, %s params"
          % (st.get("model"), st.get("params")))
    ev = d.ctl_json("eval", lstm)
    check(ev.get("task") == "per-token" and abs(ev["ppl"] - 2.718281828459045 ** ev["loss"]) < 1e-9 * ev["ppl"]
          and abs(ev["loss"] - hist[-1]["val_loss"]) < 1e-12, "eval: per-token, ppl = exp(loss), the history's (%s)"
          % {k: ev.get(k) for k in ("task", "loss", "ppl", "acc")})
    rc, out, err = d.ctl("eval", lstm, "--split", "test", check_rc=False)
    check(rc == 0 and " ppl " in out, "eval --split test prints the perplexity (%s)" % (out + err).strip())
    gpt, ghist = stop_and_go(d, GPT, "gpt")
    check(ghist[-1]["val_ppl"] < len(want) / 2, "gpt learns: val_ppl %.3f" % ghist[-1]["val_ppl"])
    stored_before_key(d)

    # ---- generate ----
    g1 = d.ctl_json("generate", lstm, "--prompt", "the ", "--tokens", "60", "--seed", "7")
    g2 = d.ctl_json("generate", lstm, "--prompt", "the ", "--tokens", "60", "--seed", "7")
    g3 = d.ctl_json("generate", lstm, "--prompt", "the ", "--tokens", "60", "--seed", "8")
    check(g1["text"] == "the " + g1["generated"] and len(g1["generated"]) == 60 and g1 == g2,
          "generate: the prompt and 60 characters, the same for the same seed (%r)" % g1["text"])
    check(g3["generated"] != g1["generated"], "another seed, another text")
    check(all(c in text for c in g1["generated"]), "the generated characters are the text's")
    c = traind.Client(d.socket)
    check(c.generate(lstm, "the ", 60, seed=7) == g1["text"],
          "the Python client's generate gives trainctl's text for the same call")
    try:
        c.generate(lstm, "Zzz", 5)
        refused = None
    except traind.Error as e:
        refused = e
    check(refused is not None and "'Z'" in str(refused), "... and raises traind's error for a prompt it cannot spell (%s)"
          % refused)
    c.close()
    rc, out, err = d.ctl("generate", lstm, "--prompt", "the ", "--tokens", "40", "--temperature", "0", check_rc=False)
    check(rc == 0 and out.startswith("the "), "generate --temperature 0 (the most likely tokens): %r" % out.strip())
    rc, out, err = d.ctl("generate", gpt, "--prompt", "a big ", "--tokens", "40", "--top-k", "3", check_rc=False)
    check(rc == 0 and out.startswith("a big "), "generate from the gpt with --top-k 3: %r" % out.strip())
    rc, out, err = d.ctl("generate", lstm, "--prompt", "the QUé€", "--tokens", "5", check_rc=False)
    check(rc != 0 and "prompt" in err and "'Q'" in err and "'é' (U+00E9)" in err and "'€' (U+20AC)" in err,
          "a prompt with characters the vocabulary lacks is refused naming them (%s)" % err.strip())
    rc, out, err = d.ctl("generate", lstm, "--prompt", "the", "--tokens", "0", check_rc=False)
    check(rc != 0 and "--tokens" in err, "--tokens 0 is refused (%s)" % err.strip())

    png = os.path.join(work, "x.pgm")
    with open(png, "wb") as f:
        f.write(b"P5 2 2 255\n\0\0\0\0")
    rc, out, err = d.ctl("predict", lstm, png, check_rc=False)
    check(rc != 0 and "token ids" in err and "generate" in err, "predict on a language model: refused, pointing "
          "to generate (%s)" % err.strip())

    # ---- export --pytorch: the code compiles ----
    py = os.path.join(work, "lm.py")
    rc, out, err = d.ctl("export", gpt, "--pytorch", py, check_rc=False)
    code = open(py).read() if rc == 0 else ""
    try:
        compile(code, py, "exec")
        compiled = True
    except SyntaxError:
        compiled = False
    check(rc == 0 and compiled and "EncoderLayer" in code and "GPT-2's initialisation" in code,
          "export --pytorch of the gpt writes code that compiles (%s)" % err.strip())
    check(d.alive(), "traind is still running")


if __name__ == "__main__":
    run(main)
