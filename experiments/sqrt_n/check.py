"""Claim 1 (section 8.1.3): the standard error of the minibatch gradient falls as sigma / sqrt(n)."""
import math
import os

import common

QUOTE = ("The standard error of the mean estimated from n samples is given by sigma / sqrt(n), where "
         "sigma is the true standard deviation of the value of the samples. The denominator of "
         "sqrt(n) shows that there are less than linear returns to using more examples to estimate "
         "the gradient. Compare two hypothetical estimates of the gradient, one based on 100 "
         "examples and another based on 10,000 examples. The latter requires 100 times more "
         "computation than the former, but reduces the standard error of the mean only by a factor "
         "of 10. (Goodfellow et al., section 8.1.3)")


def main(ctx):
    config = os.path.join(common.ROOT, "examples", "fashion_mlp.toml")
    if ctx.quick:
        sets = ["data.limit_train=3000", "data.validation_size=1000", "data.limit_test=1000",
                "model.hidden=[64]", "epochs=1"]
        examples = 1000
    else:
        sets = ["epochs=1"]  # the default MLP after one epoch, on the first 1000 training examples
        examples = 1000
    run = ctx.train(config, "mlp", sets)
    ctx.report([run], None)
    noise = ctx.diagnose(run, "noise", "--examples", examples)
    expected = ctx.expect("slope", -0.5)
    tol = ctx.expect("tolerance", 0.05)
    slope = noise["slope"]
    ns = noise["batch_sizes"]
    se = noise["stderr_corrected"]
    sigma = math.sqrt(noise["trace_sigma"])  # sqrt(tr Sigma): the error of one example's gradient
    pred = [sigma / math.sqrt(n) for n in ns]
    N = noise["examples"]
    rows = []
    for n, s, p in zip(ns, se, pred):
        if n >= N:
            continue  # the whole set: no sampling error left
        rows.append((n, n, s, se[0] / s, math.sqrt(n), p))
    ok = abs(slope - expected) <= tol
    # "100x more computation for 10x less error": what the fitted slope says, and the measured
    # pair of batch sizes 128 apart (1 and 128; the grid holds powers of two).
    hundred = 100 ** (-slope)
    pair = [(a, b) for a in ns for b in ns if b == 128 * a and b < N]
    pair_txt = ""
    if pair:
        a, b = pair[0]
        r = se[ns.index(a)] / se[ns.index(b)]
        pair_txt = f"; measured: n = {a} -> {b} (128x the computation) cut the error {r:.2f}x (sqrt(128) = {math.sqrt(128):.2f})"
    table = common.markdown_table(
        ["batch size n", "example-gradients (computation)", "standard error (finite-population corrected)",
         "error at n=1 / error at n", "sqrt(n)", "sigma/sqrt(n), sigma = sqrt(tr Sigma)"], rows)
    table += (f"\n\nFitted log-log slope {slope:.4f} (uncorrected {noise['slope_uncorrected']:.4f}); "
              f"100x the computation cuts the error {hundred:.2f}x by the fit{pair_txt}. "
              f"{N} training examples, {noise['parameters']} parameters, {noise['draws']} draws per size at least.")
    summary = f"slope {slope:.3f} (claim {expected:g} +/- {tol:g}); 100x computation -> {hundred:.2f}x less error{pair_txt}"
    res = common.Result(ok, summary)
    svg = common.svg_plot([("measured (corrected)", [r[0] for r in rows], [r[2] for r in rows]),
                           ("sigma/sqrt(n)", [r[0] for r in rows], [r[5] for r in rows])],
                          "standard error of the minibatch gradient", "batch size n", "||g_B - g|| (rms)",
                          logx=True, logy=True)
    common.write_page(ctx, "sigma / sqrt(n): the minibatch gradient's standard error (claim 1, section 8.1.3)", QUOTE,
                      "The standard error of the minibatch gradient falls as 1/sqrt(n): log-log slope -0.5; 100x the computation buys 10x less error.",
                      f"descent diagnose --what noise on the default MLP ({'quick: 784-64-10 on 3000 examples, ' if ctx.quick else ''}"
                      f"after one epoch), {examples} training examples: the fitted slope within {tol:g} of {expected:g}.",
                      res, table, [svg], [("report.html", os.path.join(run, "report.html"))])
    return res
