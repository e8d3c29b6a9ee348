"""Claim 14 (sections 8.5.1-8.5.2): AdaGrad's effective per-parameter rates shrink early and stall
training, where RMSProp's exponentially weighted average keeps them."""
import array
import glob
import json
import math
import os
import re
import struct

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


def thin_checkpoints(run, growth=1.2):
    """Keeps a log-spaced subset of the run's step checkpoints (the first after step 0, then each
    at least `growth` times the last kept one, and the last) and removes the others: a run writes
    one every 10 updates, too many to keep or to read (2 MiB each for the default MLP)."""
    paths = sorted(glob.glob(os.path.join(run, "checkpoints", "step-*.ckpt")),
                   key=lambda p: int(re.search(r"step-(\d+)\.ckpt$", p).group(1)))
    keep, last = [], None
    for i, path in enumerate(paths):
        step = int(re.search(r"step-(\d+)\.ckpt$", path).group(1))
        if step == 0 or last is None or step >= growth * last or i == len(paths) - 1:
            keep.append(path)
            if step > 0:
                last = step
        else:
            os.remove(path)
    return keep


def rates_over_time(run, eps, delta, kind):
    out = []
    for path in thin_checkpoints(run):
        step = int(re.search(r"step-(\d+)\.ckpt$", path).group(1))
        if step == 0:
            continue  # r = 0: the first update's rate is eps / delta (AdaGrad), eps / sqrt(delta) (RMSProp)
        name, r = read_accumulator(path)
        if kind == "adagrad":
            rate = [eps / (delta + math.sqrt(x)) for x in r]
        else:
            rate = [eps / math.sqrt(delta + x) for x in r]
        out.append((step, name, quantiles(rate, QUANTILES)))
    return out


def main(ctx):
    config = os.path.join(common.ROOT, "examples", "fashion_mlp.toml")
    shrink = ctx.expect("shrink", 5.0)     # AdaGrad's median rate falls by more than this factor
    keep = ctx.expect("keep", 0.5)         # RMSProp's median rate ends above this fraction of its early value
    # Small batches on a training set of 10000 examples: the minibatch gradient keeps its size
    # (the sampling noise of 16 examples does not shrink as the net fits), so AdaGrad's sum of
    # squared gradients grows with every update and its rates fall like 1/sqrt(t), where RMSProp's
    # window of about 1/(1 - rho) = 10 updates keeps them. The first checkpoint comes after 10
    # updates, the start of training once r holds more than one gradient (README.md).
    if ctx.quick:
        seeds = (1,)
        sets = ["data.limit_train=3000", "data.validation_size=1000", "data.limit_test=500", "model.hidden=[64]",
                "epochs=10"]
    else:
        seeds = (1, 2, 3)
        sets = ["data.limit_train=15000", "data.validation_size=5000", "data.limit_test=500", "epochs=12"]
    sets += ["sampler.batch_size=16", "checkpoint.every_steps=10"]
    sets += ["checkpoint.keep=100000", "checkpoint.every_epochs=0", "schedule.name=\"constant\"",
             "early_stopping.enabled=false"]
    lrs = {"adagrad": (0.01, 0.03), "rmsprop": (0.00001, 0.00003)}
    algos = {"adagrad": ["optimizer.name=\"adagrad\"", "optimizer.delta=1e-7"],
             "rmsprop": ["optimizer.name=\"rmsprop\"", "optimizer.delta=1e-6", "optimizer.rho=0.9"]}
    deltas = {"adagrad": 1e-7, "rmsprop": 1e-6}
    # For each seed, each algorithm at each rate of a small sweep; the comparison takes each at its
    # best rate (the lowest final training loss), so neither loses by a rate that suits only the other.
    sweep, per_seed, all_runs = [], [], []
    for seed in seeds:
        eps, runs, rates, curves, finals = {}, {}, {}, {}, {}
        for a, extra in algos.items():
            best = None
            for lr in lrs[a]:
                run = ctx.train(config, f"{a}_{lr:g}_s{seed}", sets + extra + [f"optimizer.lr={lr}", f"seed={seed}"])
                ep = common.of_kind(common.read_metrics(run), "epoch")
                loss = ep[-1]["train_loss"]
                r = rates_over_time(run, lr, deltas[a], a)  # thins the run's checkpoints
                sweep.append((seed, a, lr, loss, ep[-1].get("val_error"), r[-1][2][1] / r[0][2][1]))
                if best is None or (loss is not None and math.isfinite(loss) and loss < best[1]):
                    best = (lr, loss, run, ep, r)
            lr, _, run, ep, r = best
            eps[a] = lr
            runs[a] = run
            rates[a] = r
            curves[a] = ([e["step"] for e in ep], [e["train_loss"] for e in ep])
            finals[a] = ep[-1]
        all_runs += list(runs.values())
        med = {a: [q[1] for _, _, q in rates[a]] for a in rates}
        ada_ratio = med["adagrad"][-1] / med["adagrad"][0]
        rms_ratio = med["rmsprop"][-1] / med["rmsprop"][0]
        loss_a, loss_r = finals["adagrad"]["train_loss"], finals["rmsprop"]["train_loss"]
        oks = (ada_ratio < 1.0 / shrink, rms_ratio > keep, loss_a > loss_r)
        per_seed.append(dict(seed=seed, eps=eps, rates=rates, curves=curves, finals=finals, med=med, ada=ada_ratio,
                             rms=rms_ratio, loss_a=loss_a, loss_r=loss_r, oks=oks, ok=all(oks)))
    def verdict(oks):
        failed = [n for n, o in zip(("AdaGrad's rate shrank less", "RMSProp's rate fell", "AdaGrad's loss not higher"), oks) if not o]
        return "FAIL (" + ", ".join(failed) + ")" if failed else "PASS"
    ctx.report(all_runs, os.path.join(ctx.out, "report.html"))
    ok = all(p["ok"] for p in per_seed)
    first = per_seed[0]
    rows = []
    for (s, _, qa), (_, _, qr) in zip(first["rates"]["adagrad"], first["rates"]["rmsprop"]):
        rows.append((s, *qa, *qr))
    k = max(1, len(rows) // 20)
    table = common.markdown_table(
        ["seed", "AdaGrad eps", "RMSProp eps", "AdaGrad median rate last / first", "RMSProp median rate last / first",
         "AdaGrad final train loss", "RMSProp final train loss", "AdaGrad / RMSProp loss", "verdict"],
        [(p["seed"], p["eps"]["adagrad"], p["eps"]["rmsprop"], p["ada"], p["rms"], p["loss_a"], p["loss_r"],
          p["loss_a"] / p["loss_r"], verdict(p["oks"]))
         for p in per_seed])
    table += "\n\n" + common.markdown_table(
        ["update"] + [f"AdaGrad {int(q * 100)}th pct" for q in QUANTILES] + [f"RMSProp {int(q * 100)}th pct" for q in QUANTILES],
        rows[::k] + ([rows[-1]] if (len(rows) - 1) % k else []))
    table += (f"\n\nEffective rate of parameter i: AdaGrad eps / (delta + sqrt(r_i)), RMSProp eps / sqrt(delta + r_i), "
              f"from the accumulator r in each checkpoint (first checkpoint at update {first['rates']['adagrad'][0][0]}; "
              f"the percentiles above are seed {first['seed']}'s).")
    table += "\n\n" + common.markdown_table(["seed", "algorithm", "eps", "final train loss", "final validation 0-1 error",
                                                  "median rate last / first"], sweep)

    def mean_sd(xs):
        m = sum(xs) / len(xs)
        return m, (math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0)
    ma, sa = mean_sd([p["ada"] for p in per_seed])
    mr, sr = mean_sd([p["rms"] for p in per_seed])
    seeds_s = ", ".join(str(p["seed"]) for p in per_seed)
    ada_s = ", x".join(format(p["ada"], ".3g") for p in per_seed)
    rms_s = ", x".join(format(p["rms"], ".3g") for p in per_seed)
    la_s = ", ".join(format(p["loss_a"], ".4g") for p in per_seed)
    lr_s = ", ".join(format(p["loss_r"], ".4g") for p in per_seed)
    n_ok = sum(p["ok"] for p in per_seed)
    step1 = first["rates"]["adagrad"][0][0]
    summary = (f"seeds {seeds_s} ({n_ok} passed): AdaGrad's median effective rate x{ada_s} from update {step1} to the end "
               f"(mean {ma:.3g}, sd {sa:.2g}; claim < 1/{shrink:g}), RMSProp's x{rms_s} (mean {mr:.3g}, sd {sr:.2g}; "
               f"claim > {keep:g}); final train loss at each one's best rate AdaGrad {la_s} vs RMSProp {lr_s} "
               f"(claim: AdaGrad higher)")
    res = common.Result(ok, summary)
    steps = [s for s, _, _ in first["rates"]["adagrad"]]
    svgs = [common.svg_plot([(f"AdaGrad {int(q * 100)}th pct", steps, [x[2][i] for x in first["rates"]["adagrad"]]) for i, q in enumerate(QUANTILES)] +
                            [(f"RMSProp {int(q * 100)}th pct", [s for s, _, _ in first["rates"]["rmsprop"]], [x[2][i] for x in first["rates"]["rmsprop"]])
                             for i, q in enumerate(QUANTILES)],
                            f"effective per-parameter learning rates (10th, 50th, 90th percentiles; seed {first['seed']})", "update",
                            "eps / sqrt(r)", logy=True),
            common.svg_plot([(f"{a} seed {p['seed']}", c[0], c[1]) for p in per_seed for a, c in p["curves"].items()],
                            "training loss by epoch (each at its best rate)", "update", "train loss", logy=True)]
    common.write_page(ctx, "AdaGrad's premature decay (claim 14, sections 8.5.1-8.5.2)", QUOTE,
                      "On a non-convex net, AdaGrad's effective per-parameter rates shrink early and stall training, where "
                      "RMSProp's exponential average keeps them.",
                      f"{'A 784-64-10 MLP on 2000 training examples, 10 epochs (1250 updates), seed 1 (quick)' if ctx.quick else 'The default MLP (784-256-256-10, ReLU) on 10000 training examples, 12 epochs (7500 updates), seeds 1, 2 and 3'}, "
                      f"batch 16, AdaGrad (delta 1e-7) at constant rates {', '.join(f'{x:g}' for x in lrs['adagrad'])} and RMSProp "
                      f"(rho 0.9, delta 1e-6) at {', '.join(f'{x:g}' for x in lrs['rmsprop'])}; for each seed each algorithm at the "
                      f"rate with the lowest final training loss; the accumulators read from checkpoints written every 10 updates (a log-spaced subset kept). "
                      f"For every seed: AdaGrad's median effective rate ends below 1/{shrink:g} of its value at the first checkpoint; "
                      f"RMSProp's ends above {keep:g} of its own; AdaGrad's final training loss is higher than RMSProp's.",
                      res, table, svgs, [("report.html", os.path.join(ctx.out, "report.html"))])
    return res
