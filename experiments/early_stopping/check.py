"""Claim 2 (section 8.1.2): early stopping on the true loss halts where the gradient is still large."""
import os

import common

QUOTE = ("A very important difference between optimization in general and optimization as we use it "
         "for training algorithms is that training algorithms do not usually halt at a local minimum. "
         "Instead, a machine learning algorithm usually minimizes a surrogate loss function but halts "
         "when a convergence criterion based on early stopping (section 7.8) is satisfied. Typically "
         "the early stopping criterion is based on the true underlying loss function, such as 0-1 loss "
         "measured on a validation set, and is designed to cause the algorithm to halt whenever "
         "overfitting begins to occur. Training often halts while the surrogate loss function still "
         "has large derivatives. (Goodfellow et al., section 8.1.2)")


def main(ctx):
    config = os.path.join(common.ROOT, "examples", "fashion_mlp.toml")
    if ctx.quick:
        data = ["data.limit_train=5000", "data.validation_size=1000", "data.limit_test=1000", "model.hidden=[64]"]
        patience, examples = 3, 1000
    else:
        data = []  # the default MLP on all of Fashion-MNIST
        patience, examples = 3, 5000
    fraction = ctx.expect("fraction", 0.1)
    run = ctx.train(config, "early_stop", data + ["early_stopping.enabled=true", "early_stopping.monitor=\"val_error\"",
                                                  f"early_stopping.patience={patience}", f"epochs={30 if not ctx.quick else 60}",
                                                  "schedule.name=\"constant\""])
    ctx.report([run], None)
    # The same initialization (same seed and model), barely moved: one epoch at a rate of 1e-30.
    init = ctx.train(config, "at_init", data + ["epochs=1", "optimizer.lr=1e-30", "sampler.batch_size=\"full\"",
                                                "schedule.name=\"constant\""])
    # The full-batch gradient of the surrogate over the first N training examples (every
    # diagnostics file holds it; symmetry with one trial is the cheapest).
    g_stop = ctx.diagnose(run, "symmetry", "--examples", examples, "--trials", 1)
    g_init = ctx.diagnose(init, "symmetry", "--examples", examples, "--trials", 1)
    m = common.read_metrics(run)
    steps = common.of_kind(m, "step")
    epochs = common.of_kind(m, "epoch")
    final = common.of_kind(m, "final")[-1]
    full_ratio = g_stop["gradient_norm"] / g_init["gradient_norm"]
    mb_ratio = final["grad_norm_at_stop"] / steps[0]["grad_norm"]
    # The gate is the issue's: the gradient norm that training sees (descent's grad_norm_at_stop,
    # the last epoch's mean minibatch norm) against the first step's. The full-batch norm of the
    # kept parameters is reported beside it: it holds the noise out, and is smaller.
    ok = final["stopped_early"] and mb_ratio > fraction
    rows = [(e["epoch"], e["train_loss"], e["train_error"], e.get("val_loss"), e.get("val_error"), e.get("grad_norm_mean", "-"))
            for e in epochs]
    table = common.markdown_table(["epoch", "train loss", "train 0-1 error", "validation loss", "validation 0-1 error",
                                   "mean minibatch gradient norm"], rows)
    table += ("\n\n" + common.markdown_table(
        ["", "at initialization", f"at the kept epoch {final['best_epoch']} (stopped after {final['epochs']})", "ratio"],
        [("full gradient norm, first %d training examples" % examples, g_init["gradient_norm"], g_stop["gradient_norm"], full_ratio),
         ("surrogate loss on them", g_init["loss"], g_stop["loss"], g_stop["loss"] / g_init["loss"]),
         ("minibatch gradient norm (step 0; mean of the last epoch)", steps[0]["grad_norm"], final["grad_norm_at_stop"], mb_ratio)]))
    summary = (f"stopped early: {final['stopped_early']} after epoch {final['epochs']} (kept {final['best_epoch']}); "
               f"minibatch gradient norm {mb_ratio:.3f} of its initial value (claim > {fraction:g}); "
               f"full-batch gradient norm of the kept parameters {full_ratio:.3f} of its initial value (reported, not gated)")
    res = common.Result(ok, summary)
    E = [e["epoch"] for e in epochs]
    svgs = [common.svg_plot([("validation 0-1 error", E, [e["val_error"] for e in epochs]),
                             ("train 0-1 error", E, [e["train_error"] for e in epochs])],
                            "the true loss", "epoch", "0-1 error"),
            common.svg_plot([("mean minibatch gradient norm", E, [e.get("grad_norm_mean") for e in epochs]),
                             ("train surrogate loss", E, [e["train_loss"] for e in epochs])],
                            "the surrogate and its gradient", "epoch", "value")]
    common.write_page(ctx, "Early stopping halts with a large gradient (claim 2, section 8.1.2)", QUOTE,
                      "Training halted by early stopping on the validation 0-1 error stops with a gradient norm far from zero: more than 10% of its initial value.",
                      f"descent train ({'quick: 784-64-10 on 4000 examples' if ctx.quick else 'the default MLP'}, constant rate, "
                      f"early stopping on val_error, patience {patience}): it stops early, and the full-batch gradient norm "
                      f"the last epoch's mean minibatch gradient norm (descent's grad_norm_at_stop) exceeds {fraction:g} of the first step's; "
                      f"the full-batch gradient norm of the kept parameters over {examples} training examples against its value at "
                      f"initialization is reported beside it.",
                      res, table, svgs, [("report.html", os.path.join(run, "report.html"))])
    return res
