"""Claim 13 (section 8.3.1): the learning rate: too large oscillates, too small is stuck; linear decay beats constant."""
import math
import os

import common

QUOTE = ("Typically, the optimal initial learning rate, in terms of total training time and the final "
         "cost value, is higher than the learning rate that yields the best performance after the first "
         "100 iterations or so. [...] If it is too large, the learning curve will show violent "
         "oscillations, with the cost function often increasing significantly. Gentle oscillations are "
         "fine, especially if training with a stochastic cost function [...] If the learning rate is "
         "too low, learning proceeds slowly, and if the initial learning rate is too low, learning may "
         "become stuck with a high cost value. [...] it is common to decay the learning rate linearly "
         "until iteration tau: eps_k = (1 - alpha) eps_0 + alpha eps_tau [...] eps_tau should be set to "
         "roughly 1 percent the value of eps_0. (Goodfellow et al., section 8.3.1)")


def curve(ctx, run):
    m = common.read_metrics(run)
    # The whole training loss every few steps, and at each epoch's end (a run whose updates
    # overflowed may end before its first evaluation).
    ev = sorted(common.of_kind(m, "eval") + common.of_kind(m, "epoch"), key=lambda e: e["step"])
    losses = [e["train_loss"] if finite(e.get("train_loss")) else math.inf for e in ev]
    return [e["step"] for e in ev], losses, common.of_kind(m, "final")[-1]


def finite(x):
    return x is not None and math.isfinite(x)


def upward(losses):
    """The learning curve's total rise: the sum of its increases (0 for a monotone curve); a
    loss that overflowed (null or infinite in metrics.jsonl) is an infinite rise."""
    if not all(finite(x) for x in losses):
        return math.inf
    return sum(max(0.0, b - a) for a, b in zip(losses, losses[1:]))


def main(ctx):
    config = os.path.join(common.ROOT, "examples", "fashion_mlp.toml")
    if ctx.quick:
        data = ["data.limit_train=5000", "data.validation_size=1000", "data.limit_test=1000", "model.hidden=[64]"]
        epochs, every = 5, 5
    else:
        data = []
        epochs, every = 3, 100
    small, good, large = 1e-4, 0.05, 1.0
    common_sets = data + [f"epochs={epochs}", f"eval_every_steps={every}", "divergence.policy=\"skip\"",
                          "divergence.max_events=1000000", "early_stopping.enabled=false"]
    runs, curves = {}, {}
    for label, lr, sched in (("too small", small, "constant"), ("good", good, "constant"), ("too large", large, "constant"),
                             ("good, linear decay", good, "linear")):
        name = label.replace(", ", "_").replace(" ", "_")
        runs[label] = ctx.train(config, name, common_sets + [f"optimizer.lr={lr}", f"schedule.name=\"{sched}\""])
        curves[label] = curve(ctx, runs[label])
    ctx.report(list(runs.values()), os.path.join(ctx.out, "report.html"))
    stuck_factor = ctx.expect("stuck_factor", 2.0)
    oscillation_factor = ctx.expect("oscillation_factor", 10.0)
    rows = []
    for label, (steps, losses, final) in curves.items():
        rows.append((label, final.get("train_loss"), final.get("best_val_error"), losses[-1], upward(losses),
                     final.get("divergences", 0)))
    fin = {label: c[1][-1] for label, c in curves.items()}
    up = {label: upward(c[1]) for label, c in curves.items()}
    best = {label: c[2]["best_val_error"] for label, c in curves.items()}
    ok_large = up["too large"] > oscillation_factor * max(up["good"], 1e-12) and fin["too large"] > fin["good"]
    ok_small = fin["too small"] > stuck_factor * fin["good"]
    # "Beats" on the true loss the runs are selected by: the best validation 0-1 error. The
    # training loss at the end is reported beside it (a constant rate can be ahead on it in a
    # short run: it has taken larger steps).
    ok_decay = best["good, linear decay"] <= best["good"]
    ok = ok_large and ok_small and ok_decay
    table = common.markdown_table(["rate", "train loss (kept parameters)", "best validation 0-1 error",
                                   "last train loss on the curve", "total rise of the curve", "divergences skipped"], rows)
    table += (f"\n\nRates: too small {small:g}, good {good:g}, too large {large:g} (momentum 0.9, constant), and {good:g} "
              f"decayed linearly to 1% over the run. Too large: rise {up['too large']:.3g} against {up['good']:.3g} "
              f"({'holds' if ok_large else 'FAILS'}); too small: last loss {fin['too small']:.3g} against {fin['good']:.3g} "
              f"({'holds' if ok_small else 'FAILS'}); linear decay: last loss {fin['good, linear decay']:.3g} against "
              f"{fin['good']:.3g}, best validation error {best['good, linear decay']:.4f} against {best['good']:.4f} "
              f"(best validation error: {'holds' if ok_decay else 'FAILS'}).")
    summary = (f"too large ({large:g}): the curve rises by {up['too large']:.3g} in total (good {good:g}: {up['good']:.3g}); "
               f"too small ({small:g}): stuck at {fin['too small']:.3g} vs {fin['good']:.3g}; linear decay {fin['good, linear decay']:.3g} "
               f"(val error {best['good, linear decay']:.4f}) vs constant {fin['good']:.3g} ({best['good']:.4f})")
    res = common.Result(ok, summary)
    svg = common.svg_plot([(label, c[0], c[1]) for label, c in curves.items()],
                          "training loss (whole training split) against the step", "step", "train loss", logy=True)
    common.write_page(ctx, "The learning rate (claim 13, section 8.3.1)", QUOTE,
                      "Too large a rate gives violent oscillations of the learning curve, too small a rate gets stuck at a high cost, and the linear decay to 1% of eps_0 beats a constant rate.",
                      f"A rate sweep on {'a 784-64-10 MLP, 4000 examples (quick)' if ctx.quick else 'the default MLP'}, {epochs} epochs, "
                      f"the whole training loss every {every} steps: too large rises more than {oscillation_factor:g}x the good rate's "
                      f"curve and ends higher; too small ends above {stuck_factor:g}x the good rate's loss; the linear decay's best "
                      f"validation 0-1 error is no worse than the constant rate's (its last training loss reported beside it).",
                      res, table, [svg], [("report.html", os.path.join(ctx.out, "report.html"))])
    return res
