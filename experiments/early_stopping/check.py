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


def one_seed(ctx, config, data, patience, seed):
    """Trains with early stopping from one seed; the figures of the check for it."""
    run = ctx.train(config, f"early_stop_seed{seed}", data + [
        f"seed={seed}", "early_stopping.enabled=true", "early_stopping.monitor=\"val_error\"",
        f"early_stopping.patience={patience}", f"epochs={30 if not ctx.quick else 60}", "schedule.name=\"constant\""])
    m = common.read_metrics(run)
    steps = common.of_kind(m, "step")
    epochs = common.of_kind(m, "epoch")
    final = common.of_kind(m, "final")[-1]
    epoch1 = next(e for e in epochs if "grad_norm_mean" in e)  # the first trained epoch (an epoch-0 record has none)
    return {"seed": seed, "run": run, "epochs": epochs, "final": final, "step0": steps[0]["grad_norm"], "epoch1": epoch1["grad_norm_mean"],
            "ratio": final["grad_norm_at_stop"] / steps[0]["grad_norm"],
            # Another reference, reported: the first epoch's mean minibatch norm (past the first steps' transient).
            "ratio_epoch1": final["grad_norm_at_stop"] / epoch1["grad_norm_mean"]}


def mean_sd(xs):
    mu = sum(xs) / len(xs)
    sd = (sum((x - mu) ** 2 for x in xs) / (len(xs) - 1)) ** 0.5 if len(xs) > 1 else 0.0
    return mu, sd


def main(ctx):
    config = os.path.join(common.ROOT, "examples", "fashion_mlp.toml")
    if ctx.quick:
        data = ["data.limit_train=5000", "data.validation_size=1000", "data.limit_test=1000", "model.hidden=[64]"]
        patience, examples, seeds = 3, 1000, [1]
    else:
        data = []  # the default MLP on all of Fashion-MNIST
        patience, examples, seeds = 3, 5000, [1, 2, 3]  # the claim must hold across seeds
    fraction = ctx.expect("fraction", 0.1)
    per_seed = [one_seed(ctx, config, data, patience, s) for s in seeds]
    first = per_seed[0]
    run, epochs, final, step0 = first["run"], first["epochs"], first["final"], first["step0"]
    ctx.report([run], None)
    # The same initialization (same seed and model), barely moved: one epoch at a rate of 1e-30.
    init = ctx.train(config, "at_init", data + [f"seed={seeds[0]}", "epochs=1", "optimizer.lr=1e-30", "sampler.batch_size=\"full\"",
                                                "schedule.name=\"constant\""])
    # The full-batch gradient of the surrogate over the first N training examples (every
    # diagnostics file holds it; symmetry with one trial is the cheapest).
    g_stop = ctx.diagnose(run, "symmetry", "--examples", examples, "--trials", 1)
    g_init = ctx.diagnose(init, "symmetry", "--examples", examples, "--trials", 1)
    full_ratio = g_stop["gradient_norm"] / g_init["gradient_norm"]
    mb_ratio = first["ratio"]
    # The gate is the issue's: the gradient norm that training sees (descent's grad_norm_at_stop,
    # the last epoch's mean minibatch norm) against the first step's, for every seed. The
    # full-batch norm of the kept parameters (first seed) is reported beside it: it holds the
    # noise out, and is smaller.
    ok = all(r["final"]["stopped_early"] and r["ratio"] > fraction for r in per_seed)
    rows = [(e["epoch"], e["train_loss"], e["train_error"], e.get("val_loss"), e.get("val_error"), e.get("grad_norm_mean", "-"))
            for e in epochs]
    table = f"Seed {seeds[0]}, by epoch:\n\n" + common.markdown_table(
        ["epoch", "train loss", "train 0-1 error", "validation loss", "validation 0-1 error", "mean minibatch gradient norm"], rows)
    table += ("\n\n" + common.markdown_table(
        ["", "at initialization", f"at the kept epoch {final['best_epoch']} (stopped after {final['epochs']})", "ratio"],
        [("full gradient norm, first %d training examples" % examples, g_init["gradient_norm"], g_stop["gradient_norm"], full_ratio),
         ("surrogate loss on them", g_init["loss"], g_stop["loss"], g_stop["loss"] / g_init["loss"]),
         ("minibatch gradient norm (step 0; mean of the last epoch)", step0, final["grad_norm_at_stop"], mb_ratio)]))
    seed_rows = [(r["seed"], "yes" if r["final"]["stopped_early"] else "NO", r["final"]["epochs"], r["final"]["best_epoch"],
                  r["step0"], r["epoch1"], r["final"]["grad_norm_at_stop"], r["ratio"], r["ratio_epoch1"],
                  "yes" if r["final"]["stopped_early"] and r["ratio"] > fraction else "NO") for r in per_seed]
    table += "\n\nEvery seed:\n\n" + common.markdown_table(
        ["seed", "stopped early", "epochs run", "kept epoch", "minibatch norm at step 0", "mean norm, epoch 1",
         "mean norm, last epoch", f"ratio to step 0 (gated: > {fraction:g})", "ratio to epoch 1 (reported)", "holds"], seed_rows)
    ratios = ", ".join(f"{r['ratio']:.3f}" for r in per_seed)
    mu, sd = mean_sd([r["ratio"] for r in per_seed])
    mu1, sd1 = mean_sd([r["ratio_epoch1"] for r in per_seed])
    summary = (f"{len(seeds)} seed{'s' if len(seeds) > 1 else ''} ({', '.join(str(s) for s in seeds)}): stopped early in "
               f"{sum(1 for r in per_seed if r['final']['stopped_early'])}; last epoch's mean minibatch gradient norm "
               f"{ratios} of the first step's (mean {mu:.3f}, sd {sd:.3f}; claim > {fraction:g} "
               f"for every seed); against the first epoch's mean norm {mu1:.3f} (sd {sd1:.3f}, reported); full-batch gradient norm of "
               f"the kept parameters (seed {seeds[0]}) {full_ratio:.3f} of its initial value (reported, not gated)")
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
                      f"descent train ({'quick: 784-64-10 on 4000 examples, seed 1' if ctx.quick else 'the default MLP, seeds 1, 2, 3'}, constant rate, "
                      f"early stopping on val_error, patience {patience}): for every seed it stops early, and "
                      f"the last epoch's mean minibatch gradient norm (descent's grad_norm_at_stop) exceeds {fraction:g} of the first step's; "
                      f"the full-batch gradient norm of the kept parameters over {examples} training examples against its value at "
                      f"initialization is reported beside it.",
                      res, table, svgs, [("report.html", os.path.join(run, "report.html"))])
    return res
