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


GAIN = 0.1  # init.output_gain (README: why; --expect output_gain=1 gives the example's start)
WHOLE_SPLIT = 1000000  # diagnose --examples beyond the split's size means the whole training split


def one_seed(ctx, config, data, patience, seed, steps_per_epoch, gain):
    """Trains with early stopping from one seed (a snapshot of the weights after every epoch, so
    the parameters where training halted are kept); the figures of the check for it."""
    run = ctx.train(config, f"early_stop_seed{seed}", data + [
        f"seed={seed}", "early_stopping.enabled=true", "early_stopping.monitor=\"val_error\"",
        f"early_stopping.patience={patience}", f"epochs={30 if not ctx.quick else 60}", "schedule.name=\"constant\"",
        f"snapshots.every_steps={steps_per_epoch}", f"init.output_gain={gain!r}"])
    m = common.read_metrics(run)
    header = m[0]
    if header.get("steps_per_epoch") != steps_per_epoch:
        raise RuntimeError(f"{run}: {header.get('steps_per_epoch')} steps per epoch, expected {steps_per_epoch}")
    steps = common.of_kind(m, "step")
    epochs = common.of_kind(m, "epoch")
    final = common.of_kind(m, "final")[-1]
    halt = os.path.join(run, "snapshots", f"step-{final['steps']}.safetensors")
    if not os.path.exists(halt):
        raise RuntimeError(f"{halt}: no snapshot of the weights where training halted")
    # The surrogate J (mean cross-entropy over the whole training split) and its full gradient,
    # at initialization, where training halted, and at the kept (returned) parameters.
    full = {w: ctx.diagnose(run, "symmetry", "--examples", WHOLE_SPLIT, "--trials", 1, "--weights", p)
            for w, p in (("init", "init"), ("halt", halt), ("kept", "model"))}
    epoch1 = next(e for e in epochs if "grad_norm_mean" in e)  # the first trained epoch (an epoch-0 record has none)
    g0 = full["init"]["gradient_norm"]
    trained = [e for e in epochs if "grad_norm_mean" in e]
    peak_epoch = max(trained, key=lambda e: e["grad_norm_mean"])
    return {"seed": seed, "run": run, "epochs": epochs, "steps": steps, "final": final, "full": full, "g0": g0,
            "ratio": full["halt"]["gradient_norm"] / g0,              # gated
            "ratio_kept": full["kept"]["gradient_norm"] / g0,         # reported
            "step0": steps[0]["grad_norm"], "epoch1": epoch1["grad_norm_mean"],
            # What training sees, reported: the last epoch's mean minibatch norm (descent's
            # grad_norm_at_stop: the full gradient plus the minibatch noise) against the first step's.
            "mb_ratio": final["grad_norm_at_stop"] / steps[0]["grad_norm"],
            "mb_ratio_epoch1": final["grad_norm_at_stop"] / epoch1["grad_norm_mean"],
            # Fig. 8.1's growing norm, reported: the largest epoch mean of the minibatch norms and its epoch
            # (the step where the largest single minibatch norm came is reported too).
            "peak_mean": peak_epoch["grad_norm_mean"], "peak_epoch": peak_epoch["epoch"],
            "peak_step": max(steps, key=lambda r: r["grad_norm"])["step"],
            "peak_step_norm": max(r["grad_norm"] for r in steps)}


def mean_sd(xs):
    mu = sum(xs) / len(xs)
    sd = (sum((x - mu) ** 2 for x in xs) / (len(xs) - 1)) ** 0.5 if len(xs) > 1 else 0.0
    return mu, sd


def main(ctx):
    config = os.path.join(common.ROOT, "examples", "fashion_mlp.toml")
    seeds = [1, 2, 3]  # the claim must hold across seeds, in both forms
    if ctx.quick:
        data = ["data.limit_train=5000", "data.validation_size=1000", "data.limit_test=1000"]
        patience, n_train = 3, 4000
    else:
        data = []  # the default MLP on all of Fashion-MNIST
        patience, n_train = 3, 50000
    steps_per_epoch = -(-n_train // 128)  # the example's batch size
    fraction = ctx.expect("fraction", 0.1)
    # The output layer's weights are multiplied by this once drawn (init.output_gain): GAIN starts
    # at a neutral loss near ln 10 (README: the start); 1 is the example's He draw, inflated.
    gain = ctx.expect("output_gain", GAIN)
    per_seed = [one_seed(ctx, config, data, patience, s, steps_per_epoch, gain) for s in seeds]
    first = per_seed[0]
    run, epochs, final = first["run"], first["epochs"], first["final"]
    ctx.report([run], None)
    ok = all(r["final"]["stopped_early"] and r["ratio"] > fraction for r in per_seed)
    rows = [(e["epoch"], e["train_loss"], e["train_error"], e.get("val_loss"), e.get("val_error"), e.get("grad_norm_mean", "-"))
            for e in epochs]
    table = f"Seed {seeds[0]}, by epoch:\n\n" + common.markdown_table(
        ["epoch", "train loss", "train 0-1 error", "validation loss", "validation 0-1 error", "mean minibatch gradient norm"], rows)
    seed_rows = [(r["seed"], "yes" if r["final"]["stopped_early"] else "NO", r["final"]["epochs"], r["final"]["best_epoch"],
                  r["full"]["init"]["loss"], r["full"]["halt"]["loss"], r["g0"], r["full"]["halt"]["gradient_norm"], r["ratio"],
                  r["full"]["kept"]["gradient_norm"], r["ratio_kept"], r["step0"], r["final"]["grad_norm_at_stop"], r["mb_ratio"],
                  r["mb_ratio_epoch1"], r["peak_mean"], r["peak_epoch"], r["peak_step_norm"], r["peak_step"], "yes" if r["final"]["stopped_early"] and r["ratio"] > fraction else "NO") for r in per_seed]
    table += "\n\nEvery seed (J: the mean cross-entropy over the whole training split; its gradient is the full-batch one):\n\n" + \
        common.markdown_table(
            ["seed", "stopped early", "epochs run", "kept epoch", "J at init", "J at the halt", "full gradient norm at init",
             "at the halt", f"ratio (gated: > {fraction:g})", "at the kept epoch", "ratio (reported)",
             "minibatch norm, step 0", "mean minibatch norm, last epoch", "ratio (reported)", "ratio to epoch 1's mean (reported)",
             "largest epoch mean of the minibatch norms", "its epoch", "largest minibatch norm", "its step", "holds"], seed_rows)
    ratios = ", ".join(f"{r['ratio']:.3f}" for r in per_seed)
    mu, sd = mean_sd([r["ratio"] for r in per_seed])
    muk, sdk = mean_sd([r["ratio_kept"] for r in per_seed])
    mum, sdm = mean_sd([r["mb_ratio"] for r in per_seed])
    mu1, sd1 = mean_sd([r["mb_ratio_epoch1"] for r in per_seed])
    peaks = ", ".join(f"{r['peak_mean']:.3g} (epoch {r['peak_epoch']})" for r in per_seed)
    peak_steps = ", ".join(f"{r['peak_step_norm']:.3g} (step {r['peak_step']})" for r in per_seed)
    summary = (f"output_gain {gain:g}, seeds {', '.join(str(s) for s in seeds)}: stopped early in {sum(1 for r in per_seed if r['final']['stopped_early'])} "
               f"(after epochs {', '.join(str(r['final']['epochs']) for r in per_seed)}; kept "
               f"{', '.join(str(r['final']['best_epoch']) for r in per_seed)}); full-batch gradient norm of the training loss where "
               f"training halted {ratios} of its value at initialization (mean {mu:.3f}, sd {sd:.3f}; claim > {fraction:g} for every "
               f"seed); reported: at the kept parameters {muk:.3f} (sd {sdk:.3f}); the last epoch's mean minibatch norm against the "
               f"first step's {mum:.3f} (sd {sdm:.3f}), against the first epoch's mean {mu1:.3f} (sd {sd1:.3f}); J at init "
               f"{', '.join(format(r['full']['init']['loss'], '.3f') for r in per_seed)}, full gradient at init "
               f"{', '.join(format(r['g0'], '.3g') for r in per_seed)}, at the halt "
               f"{', '.join(format(r['full']['halt']['gradient_norm'], '.3g') for r in per_seed)}; the largest epoch mean of "
               f"the minibatch norms {peaks}; the largest minibatch norm {peak_steps}")
    res = common.Result(ok, summary)
    E = [e["epoch"] for e in epochs]
    svgs = [common.svg_plot([("validation 0-1 error", E, [e["val_error"] for e in epochs]),
                             ("train 0-1 error", E, [e["train_error"] for e in epochs])],
                            "the true loss", "epoch", "0-1 error"),
            common.svg_plot([("mean minibatch gradient norm", E, [e.get("grad_norm_mean") for e in epochs]),
                             ("train surrogate loss", E, [e["train_loss"] for e in epochs])],
                            "the surrogate and its gradient", "epoch", "value"),
            common.svg_plot([(f"seed {r['seed']}", [q["step"] for q in r["steps"]], [q["grad_norm"] for q in r["steps"]])
                             for r in per_seed], "minibatch gradient norm by update (Fig. 8.1)", "update", "gradient norm")]
    common.write_page(ctx, "Early stopping halts with a large gradient (claim 2, section 8.1.2)", QUOTE,
                      "Training halted by early stopping on the validation 0-1 error stops with a gradient norm far from zero: more than 10% of its initial value.",
                      f"descent train ({'the default MLP, quick: on 4000 training examples' if ctx.quick else 'the default MLP'}, "
                      f"init.output_gain {gain:g}, seeds 1, 2, 3, "
                      f"constant rate, early stopping on val_error, patience {patience}): for every seed it stops early, and the "
                      f"full-batch gradient norm of the training loss (the whole training split, descent diagnose) at the parameters "
                      f"where training halted exceeds {fraction:g} of its value at initialization. Reported beside it: the same at the "
                      f"kept parameters, the minibatch norms training sees (descent's grad_norm_at_stop against the first step's), "
                      f"and their largest epoch mean over training (Fig. 8.1's growing norm).",
                      res, table, svgs, [("report.html", os.path.join(run, "report.html"))])
    return res
