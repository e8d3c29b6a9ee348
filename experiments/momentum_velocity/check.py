"""Claim 8 (section 8.3.2): under a constant gradient, momentum's step tends to eps ||g|| / (1 - alpha)."""
import math
import os

import common

QUOTE = ("If the momentum algorithm always observes gradient g, then it will accelerate in the "
         "direction of -g, until reaching a terminal velocity where the size of each step is "
         "eps ||g|| / (1 - alpha). [...] Common values of alpha used in practice include .5, .9, "
         "and .99. [...] momentum with alpha = 0.9 corresponds to multiplying the maximum speed "
         "by 10 relative to the gradient descent algorithm. (Goodfellow et al., section 8.3.2)")


def trajectory(ctx, alpha, lr, steps, start):
    out = ctx.descent_cmd("optimize", "--function", "no_minimum", "--optimizer",
                          "sgd" if alpha == 0 else "momentum", "--lr", lr,
                          *([] if alpha == 0 else ["--momentum", alpha]),
                          f"--start={start},0", "--steps", steps)
    rows = [l.split(",") for l in out.splitlines() if l and l[0].isdigit()]
    xs = [float(r[1]) for r in rows]
    ys = [float(r[2]) for r in rows]
    g = [float(r[4]) for r in rows]
    step = [math.hypot(xs[i] - xs[i - 1], ys[i] - ys[i - 1]) for i in range(1, len(xs))]
    return step, g


def main(ctx):
    lr = 0.01
    alphas = [0.0, 0.9, 0.99] if ctx.quick else [0.0, 0.5, 0.9, 0.95, 0.99]
    steps = 1500 if ctx.quick else 3000
    tol = ctx.expect("relative_tolerance", 0.01)
    factor_expected = ctx.expect("factor_at_0.9", 10.0)
    # no_minimum is log(1 + e^-x) + y^2/2: far to the left (x < -1000 for the whole run) its
    # gradient is (-1, 0) to double precision, a constant gradient of norm 1.
    start = -100000
    rows, series, ok = [], [], True
    terminal = {}
    for a in alphas:
        step, g = trajectory(ctx, a, lr, steps, start)
        gmax, gmin = max(g), min(g)
        predicted = lr * g[-1] / (1 - a)
        last = step[-1]
        rel = abs(last - predicted) / predicted
        terminal[a] = last
        ok_a = rel <= tol and gmax - gmin < 1e-12
        ok &= ok_a
        rows.append((a, f"{gmin:.12g}..{gmax:.12g}", predicted, last, f"{rel:.2e}", "yes" if ok_a else "NO"))
        series.append((f"alpha {a}", list(range(1, len(step) + 1)), step))
        ctx.log(f"alpha {a}: last step {last:.6g}, predicted eps|g|/(1-alpha) {predicted:.6g}, relative error {rel:.2e}")
    factor = terminal[0.9] / terminal[0.0]
    ok_factor = abs(factor - factor_expected) / factor_expected <= tol
    ok &= ok_factor
    table = common.markdown_table(
        ["alpha", "norm of g over the run", "predicted eps g/(1-alpha)", "measured last step", "relative error", "within tolerance"], rows)
    table += f"\n\nTerminal step at alpha 0.9 over plain gradient descent's: {factor:.4f} (expected {factor_expected:g})."
    summary = (f"terminal step / (eps||g||/(1-alpha)) within {tol:g} for alpha in {alphas}; "
               f"alpha 0.9 gives {factor:.3f}x gradient descent's step (expected {factor_expected:g}x)")
    res = common.Result(ok, summary)
    common.write_page(ctx, "Momentum's terminal velocity (claim 8, section 8.3.2)", QUOTE,
                      "With a constant gradient the step size tends to eps ||g|| / (1 - alpha): 10x gradient descent's at alpha = 0.9.",
                      f"descent optimize on no_minimum from x = {start} (gradient (-1, 0) for the whole run), eps = {lr}, "
                      f"{steps} steps: the last step within {tol:g} (relative) of eps||g||/(1-alpha) for every alpha, "
                      f"and the ratio at alpha 0.9 to alpha 0 within {tol:g} of {factor_expected:g}.",
                      res, table,
                      [common.svg_plot(series, "step size ||theta_k - theta_(k-1)|| against k", "step k",
                                       "step size", logx=True, logy=True)])
    return res
