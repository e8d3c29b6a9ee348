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


def rates_over_time(run, eps, delta, kind):
    out = []
    for path in sorted(glob.glob(os.path.join(run, "checkpoints", "step-*.ckpt"))):
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
    lrs = (0.001, 0.003, 0.01, 0.03)       # 0.01: both algorithms' default rate in descent
    eps = {}
    shrink = ctx.expect("shrink", 5.0)     # AdaGrad's median rate falls by more than this factor
    keep = ctx.expect("keep", 0.5)         # RMSProp's median rate ends above this fraction of its early value
    if ctx.quick:
        sets = ["data.limit_train=3000", "data.validation_size=1000", "data.limit_test=500", "model.hidden=[64]",
                "epochs=4", "checkpoint.every_steps=4"]
    else:
        sets = ["data.limit_train=25000", "data.validation_size=5000", "data.limit_test=2000", "epochs=5",
                "checkpoint.every_steps=40"]
    sets += ["checkpoint.keep=100000", "checkpoint.every_epochs=0", "schedule.name=\"constant\"",
             "early_stopping.enabled=false"]
    algos = {"adagrad": ["optimizer.name=\"adagrad\"", "optimizer.delta=1e-7"],
             "rmsprop": ["optimizer.name=\"rmsprop\"", "optimizer.delta=1e-6", "optimizer.rho=0.9"]}
    deltas = {"adagrad": 1e-7, "rmsprop": 1e-6}
    # Each algorithm at each rate of a small sweep; the comparison takes each at its best rate (the
    # lowest final training loss), so neither loses by a rate that suits only the other.
    runs, rates, curves, finals, sweep = {}, {}, {}, {}, []
    for a, extra in algos.items():
        best = None
        for lr in lrs:
            run = ctx.train(config, f"{a}_{lr:g}", sets + extra + [f"optimizer.lr={lr}"])
            ep = common.of_kind(common.read_metrics(run), "epoch")
            loss = ep[-1]["train_loss"]
            sweep.append((a, lr, loss, ep[-1].get("val_error")))
            if best is None or (loss is not None and math.isfinite(loss) and loss < best[1]):
                best = (lr, loss, run, ep)
        lr, _, run, ep = best
        eps[a] = lr
        runs[a] = run
        rates[a] = rates_over_time(run, lr, deltas[a], a)
        curves[a] = ([e["step"] for e in ep], [e["train_loss"] for e in ep], [e.get("val_error") for e in ep])
        finals[a] = ep[-1]
    ctx.report(list(runs.values()), os.path.join(ctx.out, "report.html"))
    med = {a: [q[1] for _, _, q in rates[a]] for a in rates}
    ada_ratio = med["adagrad"][-1] / med["adagrad"][0]
    rms_ratio = med["rmsprop"][-1] / med["rmsprop"][0]
    # "Early": the share of AdaGrad's whole decay (in log) already done at a tenth of the run.
    k10 = max(0, len(med["adagrad"]) // 10)
    early_share = (math.log(med["adagrad"][0] / med["adagrad"][k10]) / math.log(med["adagrad"][0] / med["adagrad"][-1])
                   if med["adagrad"][-1] < med["adagrad"][0] else 0.0)
    loss_a, loss_r = finals["adagrad"]["train_loss"], finals["rmsprop"]["train_loss"]
    ok_shrink = ada_ratio < 1.0 / shrink
    ok_keep = rms_ratio > keep
    ok_stall = loss_a > loss_r
    ok = ok_shrink and ok_keep and ok_stall
    rows = []
    for (s, _, qa), (_, _, qr) in zip(rates["adagrad"], rates["rmsprop"]):
        rows.append((s, *qa, *qr))
    table = common.markdown_table(["update"] + [f"AdaGrad {int(q * 100)}th pct" for q in QUANTILES] +
                                  [f"RMSProp {int(q * 100)}th pct" for q in QUANTILES],
                                  rows[::max(1, len(rows) // 20)] + ([rows[-1]] if (len(rows) - 1) % max(1, len(rows) // 20) else []))
    table += "\n\n" + common.markdown_table(
        ["algorithm", "median rate (first checkpoint)", "median rate (last)", "last / first", "final train loss",
         "final validation 0-1 error"],
        [("AdaGrad", med["adagrad"][0], med["adagrad"][-1], ada_ratio, loss_a, finals["adagrad"].get("val_error")),
         ("RMSProp", med["rmsprop"][0], med["rmsprop"][-1], rms_ratio, loss_r, finals["rmsprop"].get("val_error"))])
    table += (f"\n\nEffective rate of parameter i: AdaGrad eps / (delta + sqrt(r_i)), RMSProp eps / sqrt(delta + r_i), "
              f"from the accumulator r in each checkpoint (first checkpoint at update {rates['adagrad'][0][0]}). "
              f"A tenth into the run AdaGrad's median rate had done {early_share:.0%} of its whole decay (log scale).")
    summary = (f"at their best rates (AdaGrad {eps['adagrad']:g}, RMSProp {eps['rmsprop']:g}): AdaGrad's median effective rate x{ada_ratio:.3g} from update {rates['adagrad'][0][0]} to the end "
               f"(claim < 1/{shrink:g}; {early_share:.0%} of that decay in the first tenth), RMSProp's x{rms_ratio:.3g} (claim > {keep:g}); "
               f"final train loss AdaGrad {loss_a:.4g} vs RMSProp {loss_r:.4g} (claim: AdaGrad higher)")
    table += "\n\n" + common.markdown_table(["algorithm", "eps", "final train loss", "final validation 0-1 error"], sweep)
    res = common.Result(ok, summary)
    steps = [s for s, _, _ in rates["adagrad"]]
    svgs = [common.svg_plot([(f"AdaGrad {int(q * 100)}th pct", steps, [x[2][i] for x in rates["adagrad"]]) for i, q in enumerate(QUANTILES)] +
                            [(f"RMSProp {int(q * 100)}th pct", [s for s, _, _ in rates["rmsprop"]], [x[2][i] for x in rates["rmsprop"]])
                             for i, q in enumerate(QUANTILES)],
                            "effective per-parameter learning rates (10th, 50th, 90th percentiles)", "update", "eps / sqrt(r)",
                            logy=True),
            common.svg_plot([(a, c[0], c[1]) for a, c in curves.items()], "training loss by epoch", "update", "train loss", logy=True)]
    common.write_page(ctx, "AdaGrad's premature decay (claim 14, sections 8.5.1-8.5.2)", QUOTE,
                      "On a non-convex net, AdaGrad's effective per-parameter rates shrink early and stall training, where "
                      "RMSProp's exponential average keeps them.",
                      f"{'A 784-64-10 MLP on 2000 examples, 4 epochs (quick)' if ctx.quick else 'The default MLP (784-256-256-10, ReLU) on 20000 examples, 5 epochs'}, "
                      f"batch 128, constant rates {', '.join(f'{x:g}' for x in lrs)} for each, AdaGrad (delta 1e-7) and RMSProp (rho 0.9, "
                      f"delta 1e-6); each at the rate with the lowest final training loss; the accumulators read from checkpoints written every few updates. AdaGrad's median effective rate "
                      f"ends below 1/{shrink:g} of its value at the first checkpoint; RMSProp's ends above {keep:g} of its own; "
                      f"AdaGrad's final training loss is higher than RMSProp's.",
                      res, table, svgs, [("report.html", os.path.join(ctx.out, "report.html"))])
    return res
