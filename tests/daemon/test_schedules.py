#!/usr/bin/env python3
"""A job with warm-up + cosine, early stopping and gradient clipping, paused
in the middle of an epoch, its daemon killed (SIGKILL), restarted and the job
resumed, ends bit-identical to the same job never interrupted: the same
exported model, the same history (losses, lr, grad_norm, the early-stop
note), stopped early at the same epoch; the best checkpoint (by the job's
monitor) is marked, kept by retention, and what eval/export --best use.
Bad values are refused at start, naming the flag or the config key."""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import Daemon, Varlink, check, run, sha256_file  # noqa: E402

LR = 0.003
# 250 steps an epoch. min_delta 0.5 on val_acc: nothing after epoch 1 is an
# improvement, so with patience 2 the job stops after epoch 3 of 6 (whatever
# the BLAS kernel's rounding), in the first epoch of the cosine.
CONFIG = ["--train-size", "4000", "--val-size", "2000", "--batch-size", "16", "--epochs", "6",
          "--lr", str(LR), "--lr-scheduler", "linear(start_factor=0.1,total_iters=2) then cosine(t_max=4)",
          "--monitor", "val_acc", "--early-stop-patience", "2", "--early-stop-min-delta", "0.5",
          "--clip-grad-norm", "1.0", "--keep", "1"]
NOTE_START = "stopped early after epoch 3: val_acc has not improved on "


def main():
    d = Daemon(max_running=1).start()

    # ---- the uninterrupted reference ----
    ref = d.start_job(*CONFIG)
    rc, out, err = d.wait(ref, "--state", "done")
    check(rc == 0, "the reference job ends done (rc %d, %s)" % (rc, err.strip()))
    ref_hist = d.history(ref)
    check([r["epoch"] for r in ref_hist] == [1, 2, 3], "it stopped early after epoch 3 of 6 (history %s)"
          % [r["epoch"] for r in ref_hist])
    note = ref_hist[-1].get("note", "") if ref_hist else ""
    check(note.startswith(NOTE_START) and note.endswith("(epoch 1) for 2 epochs"),
          "epoch 3's note says why (%r)" % note)
    lrs = [r.get("lr") for r in ref_hist]
    check(lrs[:1] == [LR * 0.1] and lrs[2:3] == [LR] and 0 < lrs[1] < LR,
          "history lr: warm-up from lr*0.1, then the cosine from lr at epoch 3 (%s)" % lrs)
    gn = [r.get("grad_norm") for r in ref_hist]
    check(all(isinstance(g, float) and g > 0 for g in gn), "history grad_norm: the mean pre-clip norms (%s)" % gn)
    st = d.status(ref)
    check(st.get("stopped_early", "").startswith(NOTE_START), "status has the note (%r)" % st.get("stopped_early"))
    check(st.get("monitor") == "val_acc", "status names the monitor")
    best = max(range(3), key=lambda i: (ref_hist[i]["val_acc"], -i)) + 1
    check(st.get("best_epoch") == best and st.get("best_value") == ref_hist[best - 1]["val_acc"],
          "status: best epoch %s value %s (expected epoch %d %s)" % (st.get("best_epoch"), st.get("best_value"),
                                                                  best, ref_hist[best - 1]["val_acc"]))
    rc, out, err = d.ctl("status", ref)
    check(NOTE_START in out and ("best: epoch %d, val_acc" % best) in out,
          "trainctl status prints the best epoch and the note:\n%s" % out)

    # ---- the same job: paused mid-epoch 2, traind killed, restarted, resumed ----
    job = d.start_job(*CONFIG)
    j = d.wait_running_at(job, epoch=1, min_step=100)
    print("    pausing at epoch %d step %d/%d" % (j["epoch"] + 1, j["step"], j["steps_per_epoch"]))
    rc, out, err = d.ctl("pause", job, check_rc=False)
    check(rc == 0, "pause (rc %d, %s)" % (rc, err.strip()))
    st = d.status(job)
    check(st["state"] == "paused" and st["epoch"] == 1 and st["step"] > 0,
          "paused in the middle of epoch 2 (%s)" % {k: st.get(k) for k in ("state", "epoch", "step")})
    check(isinstance(st.get("lr"), float), "status shows the current lr (%s)" % st.get("lr"))
    d.kill9()
    d.start()
    rc, out, err = d.ctl("resume", job, check_rc=False)
    check(rc == 0, "resume after the restart (rc %d, %s)" % (rc, err.strip()))
    rc, out, err = d.wait(job, "--state", "done")
    check(rc == 0, "the resumed job ends done (rc %d, %s)" % (rc, err.strip()))
    hist = d.history(job)
    keys = ("epoch", "train_loss", "val_loss", "val_acc", "lr", "grad_norm", "note")
    check([[r.get(k) for k in keys] for r in hist] == [[r.get(k) for k in keys] for r in ref_hist],
          "resumed history == uninterrupted history: losses, lr, grad_norm, note, bit for bit")
    sha_job, sha_ref = sha256_file(d.export_file(job)), sha256_file(d.export_file(ref))
    check(sha_job == sha_ref, "resumed model == uninterrupted model (%s vs %s)" % (sha_job[:16], sha_ref[:16]))
    st = d.status(job)
    check(st.get("stopped_early") == note and st.get("best_epoch") == best,
          "after the restart, status still has the note and the best epoch (%s, %s)"
          % (st.get("stopped_early"), st.get("best_epoch")))
    rc, out, err = d.ctl("resume", job, check_rc=False)
    check(rc != 0 and "done" in err, "an early-stopped job is done: resume is refused (%s)" % err.strip())
    # ---- a third: killed (trainctl kill: nothing saved) mid-epoch 3, resumed ----
    k = d.start_job(*CONFIG)
    d.wait_running_at(k, epoch=2, min_step=50)
    rc, out, err = d.ctl("kill", k, check_rc=False)
    check(rc == 0 and d.status(k)["state"] == "killed", "kill mid-epoch 3 (rc %d, %s)" % (rc, err.strip()))
    rc, out, err = d.ctl("resume", k, check_rc=False)
    rc, out, err = d.wait(k, "--state", "done")
    kh = d.history(k)
    check([[r.get(x) for x in keys] for r in kh] == [[r.get(x) for x in keys] for r in ref_hist]
          and sha256_file(d.export_file(k)) == sha_ref,
          "killed mid-epoch and resumed from epoch 2's checkpoint == uninterrupted (model, history)")

    # ---- the best checkpoint: marked, kept (--keep 1), used by --best ----
    for jid in (ref, job):
        cks = [c for c in d.ctl_json("checkpoints", jid) if c["kind"] == "epoch"]
        marked = [c["epoch"] for c in cks if c.get("best")]
        check(marked == [best], "job %s: the best checkpoint is marked (%s)" % (jid, marked))
        check(sorted(c["epoch"] for c in cks) == sorted({best, 3}),
              "job %s: --keep 1 kept the newest and the best (%s)" % (jid, [c["epoch"] for c in cks]))
    rows = d.sql("SELECT epoch, score FROM checkpoints WHERE job_id=? AND kind='epoch'", (ref,))
    check(all(s == -ref_hist[e - 1]["val_acc"] for e, s in rows), "SQLite: score = -val_acc (%s)" % rows)
    rows = d.sql("SELECT count(*) FROM history WHERE job_id=? AND lr IS NOT NULL AND grad_norm IS NOT NULL", (ref,))
    check(rows == [(3,)], "SQLite: the history's lr and grad_norm columns are filled (%s)" % rows)
    ev = d.ctl_json("eval", job, "--best")
    check(ev.get("epoch") == best and ev.get("acc") == ref_hist[best - 1]["val_acc"],
          "eval --best evaluates epoch %d (got epoch %s acc %s)" % (best, ev.get("epoch"), ev.get("acc")))
    out = d.export_file(job, name="best.safetensors")
    rc, _, err = d.ctl("export", job, "--best", "-o", out, check_rc=False)
    check(rc == 0 and sha256_file(out) == d.export_sha(job, epoch=best),
          "export --best == export --epoch %d" % best)
    rc, _, err = d.ctl("export", job, "--best", "--epoch", "1", "-o", out, check_rc=False)
    check(rc == 2 and "--best" in err, "export --best --epoch is refused (%d, %s)" % (rc, err.strip()))
    r = d.call("io.traind.Eval", {"id": job, "best": True, "epoch": 1})
    check(r.get("error") == "org.varlink.service.InvalidParameter", "Eval best and epoch: InvalidParameter (%s)" % r)

    # ---- resume --epochs goes on from an early stop (job k, done at epoch 3): early stopping
    # counts on from its state (wait 2 of patience 2), so the next epoch
    # without an improvement stops it again.
    rc, out, err = d.ctl("resume", k, "--epochs", "6", check_rc=False)
    check(rc == 0, "resume --epochs 6 of an early-stopped job is accepted (rc %d, %s)" % (rc, err.strip()))
    rc, out, err = d.wait(k, "--state", "done")
    hist4 = d.history(k)
    check([r["epoch"] for r in hist4] == [1, 2, 3, 4] and
          hist4[-1].get("note", "").startswith("stopped early after epoch 4: val_acc has not improved on "),
          "it trained epoch 4 and stopped early again (history %s, note %r)"
          % ([r["epoch"] for r in hist4], hist4[-1].get("note") if hist4 else None))
    # start --from with another lr: a schedule's rate is its state's
    rc, out, err = d.ctl("start", "--from", str(ref), "--lr", "0.001", check_rc=False)
    check(rc != 0 and "lr" in err and "schedule" in err,
          "start --from a scheduled job with another --lr is refused naming lr (rc %d, %s)" % (rc, err.strip()))

    # ---- bad values, refused at start naming what is wrong ----
    bad = [
        (["--epochs", "5", "--lr-scheduler", "multistep(milestones=2:5)"], "--lr-scheduler", "milestone 5"),
        (["--lr-scheduler", "onecycle(pct_start=0.2)"], "--lr-scheduler", "max_lr"),
        (["--early-stop-patience", "-1"], "--early-stop-patience", "-1"),
        (["--monitor", "val_f1"], "--monitor", "val_f1"),
        (["--clip-grad-norm", "-2"], "--clip-grad-norm", "-2"),
    ]
    for args, flag, needle in bad:
        rc, out, err = d.ctl("start", *args, check_rc=False)
        check(rc == 2 and flag in err and needle in err, "start %s refused: %s" % (" ".join(args), err.strip()))
    for cfg, key in [({"monitor": "loss"}, "config.monitor"), ({"early_stop_patience": -3}, "config.early_stop_patience"),
                     ({"epochs": 3, "lr_scheduler": "cosine(t_max=3) then step(1)"}, "config.lr_scheduler"),
                     ({"lr_scheduler": "onecycle"}, "config.lr_scheduler")]:
        r = d.call("io.traind.Start", {"config": cfg})
        check(r.get("error") == "org.varlink.service.InvalidParameter" and r.get("parameters", {}).get("parameter") == key,
              "Start %s: InvalidParameter naming %s (%s)" % (json.dumps(cfg), key, r))
    check(d.alive(), "traind is still up")


if __name__ == "__main__":
    run(main)
