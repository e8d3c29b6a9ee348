"""Claim 14 (sections 8.5.1-8.5.2): AdaGrad's effective per-parameter rates shrink early and stall
training, where RMSProp's exponentially weighted average keeps them."""
import array
import glob
import json
import math
import os
import re
import shutil
import struct
import tempfile

import common

QUOTE = ("The AdaGrad algorithm individually adapts the learning rates of all model parameters by scaling them "
         "inversely proportional to the square root of the sum of all the historical squared values of the "
         "gradient. [...] However, for training deep neural network models, the accumulation of squared gradients "
         "from the beginning of training can result in a premature and excessive decrease in the effective "
         "learning rate. (8.5.1) The RMSProp algorithm modifies AdaGrad to perform better in the nonconvex setting "
         "by changing the gradient accumulation into an exponentially weighted moving average. [...] RMSProp uses "
         "an exponentially decaying average to discard history from the extreme past so that it can converge "
         "rapidly after finding a convex bowl. (Goodfellow et al., section 8.5.2)")

QUANTILES = (0.1, 0.5, 0.9)
EARLY = (1, 2, 3, 4, 5)   # the start of training: the rates after updates 1-5 (their median)
PAST = 0.05               # "the extreme past": the first 5% of the updates


def step_of(path):
    return int(re.search(r"step-(\d+)\.ckpt$", path).group(1))


def read_accumulator(path):
    """The optimizer's accumulator r (the tensor `optimizer.0`, named adagrad.r or rms.r in the
    checkpoint's state) of a descent checkpoint: a safetensors file."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        base = 8 + n
        meta = header.pop("__metadata__")
        state = json.loads(meta["state"])
        names = state["optimizer"]["names"]
        t = header["optimizer.0"]
        if t["dtype"] != "F32":
            raise RuntimeError(f"{path}: optimizer.0 is {t['dtype']}, expected F32")
        f.seek(base + t["data_offsets"][0])
        raw = f.read(t["data_offsets"][1] - t["data_offsets"][0])
    a = array.array("f")
    a.frombytes(raw)
    return names[0], a


def quantiles(values, qs):
    s = sorted(values)
    return [s[min(len(s) - 1, int(q * len(s)))] for q in qs]


def thin_checkpoints(run, must=(), growth=1.2):
    """Keeps a subset of the run's step checkpoints and removes the others: step 0, the updates in
    `must`, a log-spaced set (the first after step 0, then each at least `growth` times the last
    kept one) and the last. A run writes one after every update: too many to keep or to read."""
    paths = sorted(glob.glob(os.path.join(run, "checkpoints", "step-*.ckpt")), key=step_of)
    keep, last = {}, None
    for i, path in enumerate(paths):
        step = step_of(path)
        if step == 0 or step in must or last is None or step >= growth * last or i == len(paths) - 1:
            keep[step] = path
            if step > 0:
                last = step
        else:
            os.remove(path)
    return keep


def effective_rate(r, eps, delta, kind):
    """eps / (delta + sqrt(r_i)) for AdaGrad, eps / sqrt(delta + r_i) for RMSProp (docs/optimizers.md)."""
    if kind == "adagrad":
        return [eps / (delta + math.sqrt(x)) for x in r]
    return [eps / math.sqrt(delta + x) for x in r]


def analyse(run, eps, delta, kind, past):
    """The effective rates' percentiles at every kept checkpoint, the early median (the median over
    updates 1-5 of the median rate), and the median share of the final sum of squared gradients
    that the first `past` updates put there (r_past / r_T over the parameters whose r_T > 0)."""
    kept = thin_checkpoints(run, must=set(EARLY) | {past})
    series, acc = [], {}
    for step in sorted(kept):
        if step == 0:
            continue  # r = 0: the first update's rate is eps / delta (AdaGrad), eps / sqrt(delta) (RMSProp)
        _, r = read_accumulator(kept[step])
        if step == past or step == max(kept):
            acc[step] = r
        series.append((step, quantiles(effective_rate(r, eps, delta, kind), QUANTILES)))
    med = dict((s, q[1]) for s, q in series)
    early = sorted(med[s] for s in EARLY)[len(EARLY) // 2]
    last = max(kept)
    r_t, r_k = acc[last], acc[past]
    share = quantiles([k / t for k, t in zip(r_k, r_t) if t > 0], (0.5,))[0]
    return dict(series=series, early=early, end=med[last], growth=med[last] / early, share=share, past=past, last=last)


def train_and_read(ctx, config, name, sets, eps, delta, kind):
    """Trains with a checkpoint after every update, reads the accumulators (analyse) and keeps the
    run in out/runs/<name> with only its last checkpoint. The run is written on a tmpfs
    (/dev/shm) where there is one: each checkpoint is fsynced (docs/reliability.md), which on
    a disk made the 600 checkpoints of a run take 4x its training time; on a tmpfs fsync is a
    no-op. Nothing else differs."""
    runs = os.path.join(ctx.out, "runs")
    os.makedirs(runs, exist_ok=True)
    shm = "/dev/shm"
    scratch = tempfile.mkdtemp(prefix="descent-adagrad-", dir=shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else runs)
    try:
        args = ["train", config, "--out", scratch, "--name", name, "--overwrite", "--set", f"threads={ctx.threads}",
                "--set", "progress=none"]
        for s in sets:
            args += ["--set", s]
        ctx.descent_cmd(*args)
        run = os.path.join(scratch, name)
        recs = common.read_metrics(run)
        total = common.of_kind(recs, "epoch")[-1]["step"]
        an = analyse(run, eps, delta, kind, max(1, round(PAST * total)))
        for path in glob.glob(os.path.join(run, "checkpoints", "step-*.ckpt")):
            if step_of(path) != an["last"]:
                os.remove(path)
        dest = os.path.join(runs, name)
        shutil.rmtree(dest, ignore_errors=True)
        shutil.move(run, dest)
        return dest, recs, an
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main(ctx):
    config = os.path.join(common.ROOT, "examples", "fashion_mlp.toml")
    share_min = ctx.expect("share", 0.5)   # AdaGrad: the first 5% of updates hold more than this share of its sum
    recover = ctx.expect("recover", 2.0)   # RMSProp's median rate ends above this multiple of its early value
    # A start far from the good region: every layer's weights 3x He's scale (init.gain = 3), so the
    # logits are about 27x too large, the loss starts near 60 and the first gradients are 10-100x
    # those of later training. AdaGrad adds those squares to r for good; RMSProp's average forgets
    # them within about 1/(1 - rho) = 10 updates. A training set the net fits (2000 examples,
    # batch 200) lets the gradients shrink as it does: the "convex bowl" of 8.5.2.
    if ctx.quick:
        seeds = (1,)
        sets = ["data.limit_train=1500", "data.validation_size=500", "data.limit_test=200", "model.hidden=[32]",
                "sampler.batch_size=100", "epochs=30"]
        lrs = {"adagrad": (0.01, 0.03), "rmsprop": (0.0003, 0.001)}
    else:
        seeds = (1, 2, 3)
        sets = ["data.limit_train=3000", "data.validation_size=1000", "data.limit_test=500", "model.hidden=[64,64]",
                "sampler.batch_size=200", "epochs=60"]
        lrs = {"adagrad": (0.003, 0.01, 0.03, 0.1), "rmsprop": (0.00003, 0.0001, 0.0003, 0.001)}
    sets += ["checkpoint.every_steps=1", "checkpoint.keep=1000000", "checkpoint.every_epochs=0",
             "schedule.name=\"constant\"", "early_stopping.enabled=false"]
    algos = {"adagrad": ["optimizer.name=\"adagrad\"", "optimizer.delta=1e-7"],
             "rmsprop": ["optimizer.name=\"rmsprop\"", "optimizer.delta=1e-6", "optimizer.rho=0.9"]}
    deltas = {"adagrad": 1e-7, "rmsprop": 1e-6}
    # For each seed, each algorithm at each rate of a small sweep; the comparison takes each at its
    # best rate (the lowest final training loss), so neither loses by a rate that suits only the other.
    sweep, per_seed, all_runs, controls = [], [], [], []
    for seed in seeds:
        best = {}
        for a, extra in algos.items():
            for lr in lrs[a]:
                run, recs, an = train_and_read(ctx, config, f"{a}_{lr:g}_s{seed}",
                                               sets + extra + ["init.gain=3", f"optimizer.lr={lr}", f"seed={seed}"],
                                               lr, deltas[a], a)
                ep = common.of_kind(recs, "epoch")
                steps = common.of_kind(recs, "step")
                loss = ep[-1]["train_loss"]
                half = ep[len(ep) // 2]["train_loss"]
                sweep.append((seed, a, lr, loss, half, ep[-1].get("val_error"), an["growth"],
                              an["share"] if a == "adagrad" else "-"))
                key = loss if loss is not None and math.isfinite(loss) else math.inf  # a diverged run is never best
                if a not in best or key < best[a]["key"]:
                    best[a] = dict(lr=lr, loss=loss, key=key, half=half, run=run, an=an,
                                   curve=([e["step"] for e in ep], [e["train_loss"] for e in ep]),
                                   gnorm=([s["step"] for s in steps], [s["grad_norm"] for s in steps]))
        all_runs += [b["run"] for b in best.values()]
        ada, rms = best["adagrad"], best["rmsprop"]
        # The control (full form, not gated): the same runs at each one's best rate from a start of
        # the usual scale (init.gain = 1), where the early gradients are not outsized.
        if not ctx.quick:
            for a, extra in algos.items():
                lr = best[a]["lr"]
                _, recs, an = train_and_read(ctx, config, f"{a}_{lr:g}_s{seed}_gain1",
                                             sets + extra + ["init.gain=1", f"optimizer.lr={lr}", f"seed={seed}"],
                                             lr, deltas[a], a)
                ep = common.of_kind(recs, "epoch")
                controls.append((seed, a, lr, ep[-1]["train_loss"], ep[len(ep) // 2]["train_loss"],
                                 ep[-1].get("val_error"), an["growth"], an["share"] if a == "adagrad" else "-"))
        oks = (ada["an"]["share"] > share_min, rms["an"]["growth"] > recover, ada["key"] > rms["key"])
        per_seed.append(dict(seed=seed, best=best, oks=oks, ok=all(oks)))

    def verdict(oks):
        failed = [n for n, o in zip(("the early updates do not dominate AdaGrad's sum", "RMSProp's rate did not recover",
                                     "AdaGrad's loss not higher"), oks) if not o]
        return "FAIL (" + ", ".join(failed) + ")" if failed else "PASS"
    ctx.report(all_runs, os.path.join(ctx.out, "report.html"))
    ok = all(p["ok"] for p in per_seed)
    first = per_seed[0]
    fa, fr = first["best"]["adagrad"], first["best"]["rmsprop"]
    k_past, t_last = fa["an"]["past"], fa["an"]["last"]
    table = common.markdown_table(
        ["seed", "AdaGrad eps", "RMSProp eps", f"AdaGrad: share of r_T from updates 1-{k_past}",
         "AdaGrad median rate end / early", "RMSProp median rate end / early",
         "AdaGrad final train loss", "RMSProp final train loss", "AdaGrad / RMSProp loss", "verdict"],
        [(p["seed"], p["best"]["adagrad"]["lr"], p["best"]["rmsprop"]["lr"], p["best"]["adagrad"]["an"]["share"],
          p["best"]["adagrad"]["an"]["growth"], p["best"]["rmsprop"]["an"]["growth"], p["best"]["adagrad"]["loss"],
          p["best"]["rmsprop"]["loss"], p["best"]["adagrad"]["loss"] / p["best"]["rmsprop"]["loss"], verdict(p["oks"]))
         for p in per_seed])
    rows = [(s, *qa, *qr) for (s, qa), (_, qr) in zip(fa["an"]["series"], fr["an"]["series"])]
    table += "\n\n" + common.markdown_table(
        ["update"] + [f"AdaGrad {int(q * 100)}th pct" for q in QUANTILES] + [f"RMSProp {int(q * 100)}th pct" for q in QUANTILES],
        rows)
    table += (f"\n\nEffective rate of parameter i: AdaGrad eps / (delta + sqrt(r_i)), RMSProp eps / sqrt(delta + r_i), "
              f"from the accumulator r in the checkpoint written after each update (a log-spaced subset kept; the "
              f"percentiles above are seed {first['seed']}'s, each at its best rate). Early: the median over updates "
              f"1-5 of the median rate. Share of r_T: the median over the parameters of r after update {k_past} "
              f"(the first {PAST:.0%} of the updates) over r after the last, {t_last}.")
    table += "\n\n" + common.markdown_table(
        ["seed", "algorithm", "eps", "final train loss", "train loss half-way", "final validation 0-1 error",
         "median rate end / early", f"AdaGrad: share of r_T from updates 1-{k_past}"], sweep)
    if controls:
        table += ("\n\nThe control, not gated: each at its best rate above from a start of the usual scale (init.gain = 1)."
                  "\n\n" + common.markdown_table(
                      ["seed", "algorithm", "eps", "final train loss", "train loss half-way", "final validation 0-1 error",
                       "median rate end / early", f"AdaGrad: share of r_T from updates 1-{k_past}"], controls))

    def listing(key, f=".3g"):
        return ", ".join(format(key(p), f) for p in per_seed)
    seeds_s = ", ".join(str(p["seed"]) for p in per_seed)
    n_ok = sum(p["ok"] for p in per_seed)
    summary = (f"seeds {seeds_s} ({n_ok} passed): the first {k_past} of {t_last} updates put "
               f"{listing(lambda p: p['best']['adagrad']['an']['share'])} of AdaGrad's final sum of squared gradients "
               f"there (median parameter; claim > {share_min:g}), its median rate ends "
               f"x{listing(lambda p: p['best']['adagrad']['an']['growth'])} its early value where RMSProp's ends "
               f"x{listing(lambda p: p['best']['rmsprop']['an']['growth'])} (claim > {recover:g}); final train loss at "
               f"each one's best rate AdaGrad {listing(lambda p: p['best']['adagrad']['loss'], '.4g')} vs RMSProp "
               f"{listing(lambda p: p['best']['rmsprop']['loss'], '.4g')} (claim: AdaGrad higher)")
    res = common.Result(ok, summary)
    svgs = [common.svg_plot([(f"AdaGrad {int(q * 100)}th pct", [s for s, _ in fa["an"]["series"]],
                              [x[1][i] for x in fa["an"]["series"]]) for i, q in enumerate(QUANTILES)] +
                            [(f"RMSProp {int(q * 100)}th pct", [s for s, _ in fr["an"]["series"]],
                              [x[1][i] for x in fr["an"]["series"]]) for i, q in enumerate(QUANTILES)],
                            f"effective per-parameter learning rates (10th, 50th, 90th percentiles; seed {first['seed']}, "
                            f"AdaGrad eps {fa['lr']:g}, RMSProp eps {fr['lr']:g})", "update", "effective rate",
                            logx=True, logy=True),
            common.svg_plot([(f"{a} seed {p['seed']}", b["curve"][0], b["curve"][1]) for p in per_seed
                             for a, b in p["best"].items()],
                            "training loss (whole training split) by epoch, each at its best rate", "update", "train loss",
                            logy=True),
            common.svg_plot([(f"{a} seed {first['seed']}", b["gnorm"][0], b["gnorm"][1]) for a, b in first["best"].items()],
                            "minibatch gradient norm per update (the large early gradients)", "update", "||g||", logy=True)]
    if ctx.quick:
        what = ("A 784-32-10 ReLU MLP on 1000 training examples, batch 100, 30 epochs (300 updates), seed 1 (quick); "
                "AdaGrad at 0.01, 0.03, RMSProp at 0.0003, 0.001")
    else:
        what = ("A 784-64-64-10 ReLU MLP on 2000 training examples, batch 200, 60 epochs (600 updates), seeds 1, 2, 3; "
                "AdaGrad at 0.003, 0.01, 0.03, 0.1, RMSProp at 0.00003, 0.0001, 0.0003, 0.001")
    common.write_page(ctx, "AdaGrad's premature decay (claim 14, sections 8.5.1-8.5.2)", QUOTE,
                      "On a non-convex net, AdaGrad's effective per-parameter rates shrink early and stall training, where "
                      "RMSProp's exponential average keeps them.",
                      f"{what}; He uniform weights at 3x their scale (init.gain = 3: loss about 60 at the start, "
                      f"gradients many times their later size); AdaGrad delta 1e-7, RMSProp rho 0.9, delta 1e-6, constant "
                      f"rates; for each seed each algorithm at the rate with the lowest final training loss; the "
                      f"accumulators read from checkpoints written after every update. For every seed: the first "
                      f"{PAST:.0%} of the updates put more than {share_min:g} of AdaGrad's final sum of squared gradients "
                      f"there (median parameter); RMSProp's median effective rate ends above {recover:g}x its early value "
                      f"(updates 1-5); AdaGrad's final training loss is higher than RMSProp's.",
                      res, table, svgs, [("report.html", os.path.join(ctx.out, "report.html"))])
    return res
