"""Claim 10 (section 8.1.3): minibatch SGD reaches a training loss with far fewer example-gradients than batch GD."""
import os

import common

QUOTE = ("Most optimization algorithms converge much faster (in terms of total computation, not in "
         "terms of number of updates) if they are allowed to rapidly compute approximate estimates of "
         "the gradient rather than slowly computing the exact gradient. Another consideration "
         "motivating statistical estimation of the gradient from a small number of samples is "
         "redundancy in the training set. (Goodfellow et al., section 8.1.3)")


def first_reach(points, target):
    """The first (example-gradients, loss) with loss <= target, or None."""
    for cost, loss in points:
        if loss is not None and loss <= target:  # null: the loss overflowed
            return cost
    return None


def main(ctx):
    config = os.path.join(common.ROOT, "examples", "fashion_mlp.toml")
    if ctx.quick:
        # The advantage grows with the training set (an exact gradient costs N example-gradients,
        # while the updates either method needs hardly depend on N): 10000 examples, not fewer.
        n_train, data = 10000, ["data.limit_train=11000", "data.validation_size=1000", "data.limit_test=500", "model.hidden=[64]"]
        sgd_epochs, gd_epochs, gd_rates, every = 1, 40, [0.1, 0.3], 4
    else:
        n_train, data = 50000, []  # the default MLP on all 50000 training examples
        sgd_epochs, gd_epochs, gd_rates, every = 1, 40, [0.1, 0.3], 10
    target = ctx.expect("target_loss", 0.5)
    factor = ctx.expect("factor", 10.0)
    batch = 128
    base = data + ["early_stopping.enabled=false", "schedule.name=\"constant\"", "divergence.policy=\"skip\"",
                   "divergence.max_events=1000000"]
    sgd = ctx.train(config, "sgd_b128", base + [f"epochs={sgd_epochs}", f"sampler.batch_size={batch}",
                                                "optimizer.lr=0.05", f"eval_every_steps={every}"])
    m = common.read_metrics(sgd)
    # Example-gradients spent before the evaluation at `step` updates: step * batch (the last
    # minibatch of an epoch may be smaller: counted from the step records, exactly).
    steps = common.of_kind(m, "step")
    spent, total = {}, 0
    sizes = [batch] * len(steps)
    per_epoch = -(-n_train // batch)
    for i in range(len(steps)):
        if (i + 1) % per_epoch == 0:
            sizes[i] = n_train - batch * (per_epoch - 1)
    for i, s in enumerate(steps):
        total += sizes[i]
        spent[s["step"] + 1] = total
    sgd_pts = [(spent.get(e["step"], e["step"] * batch), e["train_loss"]) for e in common.of_kind(m, "eval")]
    sgd_pts += [(spent.get(e["step"], e["step"] * batch), e["train_loss"]) for e in common.of_kind(m, "epoch")]
    sgd_pts.sort()
    series = [(f"minibatch SGD, batch {batch}, eps 0.05", [p[0] for p in sgd_pts], [p[1] for p in sgd_pts])]
    sgd_cost = first_reach(sgd_pts, target)
    runs = [sgd]
    gd_best, rows = None, []
    for lr in gd_rates:
        gd = ctx.train(config, f"gd_lr{lr}", base + [f"epochs={gd_epochs}", "sampler.batch_size=\"full\"", f"optimizer.lr={lr}"])
        runs.append(gd)
        ep = common.of_kind(common.read_metrics(gd), "epoch")
        pts = [(e["step"] * n_train, e["train_loss"]) for e in ep]
        series.append((f"full-batch GD, eps {lr}", [p[0] for p in pts], [p[1] if p[1] is not None else float("inf") for p in pts]))
        c = first_reach(pts, target)
        rows.append((f"full-batch GD (momentum 0.9), eps {lr}", c if c is not None else f"not within {gd_epochs * n_train}",
                     min((p[1] for p in pts if p[1] is not None), default=float("nan"))))
        if c is not None and (gd_best is None or c < gd_best):
            gd_best = c
    rows.insert(0, (f"minibatch SGD (momentum 0.9), batch {batch}, eps 0.05", sgd_cost if sgd_cost else "not reached",
                    min((p[1] for p in sgd_pts if p[1] is not None), default=float("nan"))))
    ctx.report(runs, os.path.join(ctx.out, "report.html"))
    if sgd_cost is None:
        ok, ratio_txt = False, "SGD did not reach the target"
    elif gd_best is None:
        bound = gd_epochs * n_train / sgd_cost
        ok, ratio_txt = bound > factor, f"> {bound:.0f}x (full-batch GD did not reach it within {gd_epochs} steps)"
    else:
        ratio = gd_best / sgd_cost
        ok, ratio_txt = ratio > factor, f"{ratio:.1f}x"
    table = common.markdown_table(["method", f"example-gradients to train loss <= {target:g}", "lowest train loss seen"], rows)
    table += f"\n\nFull-batch GD needs {ratio_txt} the example-gradients of minibatch SGD ({n_train} training examples)."
    summary = f"to reach train loss {target:g}: SGD {sgd_cost} example-gradients, full-batch GD (best rate) {gd_best}: {ratio_txt} (claim > {factor:g}x)"
    res = common.Result(ok, summary)
    svg = common.svg_plot(series, "training loss against the example-gradients computed", "example-gradients",
                          "train loss", logx=True, logy=True)
    common.write_page(ctx, "Minibatches beat exact gradients in total computation (claim 10, section 8.1.3)", QUOTE,
                      "To reach a given training loss, minibatch SGD needs more than 10x fewer example-gradients than full-batch gradient descent.",
                      f"{'A 784-64-10 MLP on 10000 examples (quick)' if ctx.quick else 'The default MLP on 50000 examples'}: "
                      f"SGD with batch {batch} against full-batch GD at rates {gd_rates} (the best counted), both momentum 0.9 "
                      f"with a constant rate; the example-gradients until the whole training loss is <= {target:g}; "
                      f"the ratio must exceed {factor:g}.",
                      res, table, [svg], [("report.html", os.path.join(ctx.out, "report.html"))])
    return res
