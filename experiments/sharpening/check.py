"""Claim 12 (Cohen et al. 2021, behind section 8.2.1's growing g'Hg): in full-batch gradient
descent at rate eps, lambda_max rises to about 2/eps and hovers there (the edge of stability)."""
import os
import statistics

import common

QUOTE = ("[Beyond the chapter.] We empirically demonstrate that full-batch gradient descent on neural network "
         "training objectives typically operates in a regime we call the Edge of Stability. In this regime, the "
         "maximum eigenvalue of the training loss Hessian hovers just above the numerical value 2/(step size), "
         "and the training loss behaves non-monotonically over short timescales, yet consistently decreases over "
         "long timescales. (Cohen, Kaur, Li, Kolter and Talwalkar, 'Gradient Descent on Neural Networks Typically "
         "Occurs at the Edge of Stability', ICLR 2021.) It explains section 8.2.1's observation that g'Hg grows "
         "during training: 'the gradient norm does not shrink significantly throughout learning, but the g'Hg "
         "term grows by more than an order of magnitude' (Goodfellow et al., section 8.2.1).")


def main(ctx):
    config = os.path.join(common.ROOT, "examples", "fashion_mlp.toml")
    eps = ctx.expect("lr", 0.1)
    low, high = ctx.expect("band_low", 0.75), ctx.expect("band_high", 1.5)
    if ctx.quick:
        data, steps, every = ["data.limit_train=1500", "data.validation_size=500"], 300, 10
    else:
        data, steps, every = ["data.limit_train=3000", "data.validation_size=500"], 1000, 10
    # Full-batch gradient descent (one update per epoch), no momentum, constant rate; a tanh MLP
    # under Glorot initialization (Cohen et al.'s setting: it starts below 2/eps).
    run = ctx.train(config, "gd", data + ["data.limit_test=500", "model.hidden=[64,64]", "model.activation=\"tanh\"",
                                          "init.weights=\"glorot_uniform\"", "optimizer.name=\"sgd\"", "optimizer.momentum=0",
                                          f"optimizer.lr={eps}", "schedule.name=\"constant\"", "sampler.batch_size=\"full\"",
                                          f"epochs={steps}", "early_stopping.enabled=false",
                                          f"diagnostics.lambda_max_every={every}", "diagnostics.lanczos_steps=10",
                                          f"diagnostics.curvature_every={every}"])
    ctx.report([run], None)
    m = common.read_metrics(run)
    curv = [c for c in common.of_kind(m, "curvature") if c.get("lambda_max") is not None]
    xs = [c["step"] for c in curv]
    lam = [c["lambda_max"] for c in curv]
    edge = 2.0 / eps
    second = lam[len(lam) // 2:]
    med = statistics.median(second)
    first = lam[0]
    reached = max(lam)
    ok_start = first < 0.9 * edge
    ok_reach = reached >= 0.9 * edge
    ok_hover = low * edge <= med <= high * edge
    ok = ok_start and ok_reach and ok_hover
    rows = [(c["step"], c["lambda_max"], c["lambda_max"] / edge, c["loss"], c["gTg"], c["gHg"] / c["gTg"] if c["gTg"] else "-")
            for c in curv[::max(1, len(curv) // 25)]]
    table = common.markdown_table(["update", "lambda_max", "lambda_max / (2/eps)", "training loss (full batch)", "g'g",
                                   "g'Hg / g'g"], rows)
    table += "\n\n" + common.markdown_table(
        ["figure", "value"],
        [("2 / eps", edge), ("lambda_max at the first update", first), ("largest lambda_max", reached),
         ("median lambda_max over the second half", med), ("median / (2/eps)", med / edge),
         ("lowest and highest over the second half", f"{min(second):.4g} .. {max(second):.4g}")])
    summary = (f"full-batch GD at eps {eps:g} (2/eps = {edge:g}): lambda_max {first:.3g} at the start, reaches {reached:.3g}, "
               f"median over the second half {med:.3g} = {med / edge:.2f} x 2/eps (claim: starts below 0.9 x 2/eps, reaches "
               f"0.9 x 2/eps, hovers within [{low:g}, {high:g}] x 2/eps)")
    res = common.Result(ok, summary)
    svgs = [common.svg_plot([("lambda_max (Lanczos, warm-started)", xs, lam), ("2 / eps", [xs[0], xs[-1]], [edge, edge])],
                            "the sharpness lambda_max of the training loss against the update", "update", "lambda_max"),
            common.svg_plot([("training loss (full batch)", xs, [c["loss"] for c in curv])],
                            "the training loss", "update", "loss", logy=True)]
    common.write_page(ctx, "Progressive sharpening to the edge of stability (claim 12, Cohen et al. 2021)", QUOTE,
                      "In full-batch gradient descent with rate eps, lambda_max rises to about 2/eps and hovers there.",
                      f"Full-batch gradient descent (no momentum, constant eps {eps:g}) on a 784-64-64-10 tanh MLP under Glorot "
                      f"initialization, {'1000 (quick)' if ctx.quick else '2500'} training examples, {steps} updates; the curvature "
                      f"monitor's lambda_max (10 Lanczos steps on the batch's Hessian, which here is the whole training loss's, "
                      f"warm-started: a lower bound) every {every} updates: it starts below 0.9 x 2/eps, reaches 0.9 x 2/eps, and "
                      f"its median over the second half of the run lies within [{low:g}, {high:g}] x 2/eps.",
                      res, table, svgs, [("report.html", os.path.join(run, "report.html"))])
    return res
