"""Claim 4 (section 8.2.1, Fig. 8.1): on the CNN the gradient norm does not shrink while the
validation error falls, and g'Hg grows by more than 10x: training reaches no critical point."""
import math
import os

import common

QUOTE = ("Ill-conditioning can manifest by causing SGD to get 'stuck' in the sense that even very small "
         "steps increase the cost function. [...] a second-order Taylor series expansion of the cost "
         "function predicts that a gradient descent step of -eps g will add 1/2 eps^2 g'Hg - eps g'g to "
         "the cost. Ill-conditioning of the gradient becomes a problem when 1/2 eps^2 g'Hg exceeds eps g'g. "
         "[...] In many cases, the gradient norm does not shrink significantly throughout learning, but "
         "the g'Hg term grows by more than an order of magnitude. The result is that learning becomes "
         "very slow despite the presence of a strong gradient [...] (Figure 8.1: gradient descent often "
         "does not arrive at a critical point of any kind.) (Goodfellow et al., section 8.2.1)")


def window_mean(values, frac):
    k = max(1, int(len(values) * frac))
    return sum(values[:k]) / k, sum(values[-k:]) / k


def main(ctx):
    if ctx.quick:
        # A narrow CNN (4 and 8 channels, 32 dense units) on 2000 examples, 4 epochs.
        config = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cnn_small.toml")
        sets = ["data.limit_train=3000", "data.validation_size=1000", "data.limit_test=500", "epochs=4",
                "diagnostics.curvature_every=4", "schedule.name=\"constant\""]
    else:
        config = os.path.join(common.ROOT, "examples", "fashion_cnn.toml")
        # The book's Fig. 8.1 is a long run at a constant rate: 15 epochs (945 updates) at eps 0.02.
        sets = ["data.limit_train=10000", "data.validation_size=2000", "data.limit_test=1000", "epochs=15",
                "diagnostics.curvature_every=10", "diagnostics.observed_change=false", "schedule.name=\"constant\""]
    growth = ctx.expect("ghg_growth", 10.0)
    frac = 0.1  # the running means: the first and the last 10% of the updates
    # The output layer starts at zero (init.output_gain = 0): every class equally likely, loss ln 10, so the
    # start is not the confident-wrong transient that He on the output layer gives (loss 3.38, g'Hg 7354).
    run = ctx.train(config, "cnn", sets + ["early_stopping.enabled=false", "init.output_gain=0"])
    ctx.report([run], None)
    m = common.read_metrics(run)
    steps = common.of_kind(m, "step")
    curv = [c for c in common.of_kind(m, "curvature") if c.get("gHg") is not None]
    epochs = common.of_kind(m, "epoch")
    gn = [s["grad_norm"] for s in steps]
    gn0, gn1 = window_mean(gn, frac)
    ghg = [c["gHg"] for c in curv]
    gtg = [c["gTg"] for c in curv]
    h0, h1 = window_mean(ghg, frac)
    t0, t1 = window_mean(gtg, frac)
    # The curvature along the gradient, g'Hg / g'g: grows even if g'g does.
    val0, val1 = epochs[0]["val_error"], epochs[-1]["val_error"]
    # The same windows once the first epoch (the initial transient) is over: reported, not gated.
    gn_late = [s["grad_norm"] for s in steps if s["epoch"] >= 2]
    ghg_late = [c["gHg"] for c in curv if c["epoch"] >= 2]
    late = (window_mean(gn_late, frac), window_mean(ghg_late, frac)) if gn_late and ghg_late else None
    ok_norm = gn1 >= gn0
    ok_val = val1 < val0
    ok_ghg = h1 > growth * h0
    ok = ok_norm and ok_val and ok_ghg
    rows = []
    for e in epochs:
        in_e = [c for c in curv if c["epoch"] == e["epoch"]]
        sn = [s["grad_norm"] for s in steps if s["epoch"] == e["epoch"]]
        rows.append((e["epoch"], e["train_loss"], e["val_error"], sum(sn) / len(sn) if sn else "-",
                     sum(c["gTg"] for c in in_e) / len(in_e) if in_e else "-",
                     sum(c["gHg"] for c in in_e) / len(in_e) if in_e else "-",
                     sum(c["ratio"] for c in in_e if c.get("ratio") is not None) / len(in_e) if in_e else "-"))
    table = common.markdown_table(["epoch", "train loss", "validation 0-1 error", "mean gradient norm",
                                   "mean g'g", "mean g'Hg", "mean eps g'Hg / (2 g'g)"], rows)
    table += "\n\n" + common.markdown_table(
        ["figure", f"first {frac:.0%} of the updates", f"last {frac:.0%}", "ratio"],
        [("minibatch gradient norm (mean)", gn0, gn1, gn1 / gn0),
         ("g'g (mean)", t0, t1, t1 / t0),
         ("g'Hg (mean)", h0, h1, h1 / h0),
         ("validation 0-1 error (epoch 0 / last epoch)", val0, val1, val1 / val0)]
        + ([("from epoch 2 on (not gated): gradient norm", late[0][0], late[0][1], late[0][1] / late[0][0]),
            ("from epoch 2 on (not gated): g'Hg", late[1][0], late[1][1], late[1][1] / late[1][0])] if late else []))
    summary = (f"gradient norm's running mean {gn0:.3g} -> {gn1:.3g} (x{gn1 / gn0:.2f}, claim >= 1); validation error "
               f"{val0:.3f} -> {val1:.4f}; g'Hg {h0:.3g} -> {h1:.3g} (x{h1 / h0:.1f}, claim > {growth:g}x)")
    res = common.Result(ok, summary)
    xs = [s["step"] for s in steps]
    smooth = running(gn, max(1, len(gn) // 50))
    cx = [c["step"] for c in curv]
    svgs = [common.svg_plot([("gradient norm (running mean)", xs, smooth)], "the minibatch gradient norm against the update",
                            "update", "||g||"),
            common.svg_plot([("g'Hg", cx, running(ghg, max(1, len(ghg) // 30))),
                             ("g'g", cx, running(gtg, max(1, len(gtg) // 30)))],
                            "g'g and g'Hg on the step's minibatch (running means)", "update", "value", logy=True),
            common.svg_plot([("validation 0-1 error", [e["step"] for e in epochs], [e["val_error"] for e in epochs])],
                            "the validation error", "update", "0-1 error")]
    common.write_page(ctx, "No critical point: the gradient grows while the error falls (claim 4, section 8.2.1, Fig. 8.1)",
                      QUOTE,
                      "On the CNN example the per-step gradient norm does not shrink (its running mean at the end is at least "
                      "its running mean at the start) while the validation error falls, and g'Hg grows by more than 10x over training.",
                      f"descent train examples/fashion_cnn.toml ({'quick: 4 and 8 channels, 32 dense units, 2000 examples, 4 epochs' if ctx.quick else '8000 examples (2000 held out), 15 epochs'} at a constant rate 0.02, the output layer started at zero) "
                      f"with the curvature monitor ([diagnostics] curvature_every): the mean of the step records' grad_norm over "
                      f"the last {frac:.0%} of the updates is at least that over the first {frac:.0%}; the last epoch's validation "
                      f"0-1 error is below the initial one; the mean g'Hg of the curvature records over the last {frac:.0%} exceeds "
                      f"{growth:g}x that over the first {frac:.0%}.",
                      res, table, svgs, [("report.html", os.path.join(run, "report.html"))])
    return res


def running(values, k):
    out, s = [], 0.0
    for i, v in enumerate(values):
        s += v
        if i >= k:
            s -= values[i - k]
        out.append(s / min(i + 1, k))
    return out
