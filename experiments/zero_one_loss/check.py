"""Claim 3 (section 8.1.2): the held-out 0-1 error keeps falling after the training 0-1 error
has reached 0, as training on the surrogate (the negative log-likelihood) goes on."""
import math
import os

import common

QUOTE = ("In some cases, a surrogate loss function actually results in being able to learn more. For example, "
         "the test set 0-1 loss often continues to decrease for a long time after the training set 0-1 loss has "
         "reached zero, when training using the log-likelihood surrogate. This is because even when the expected "
         "0-1 loss is zero, one can improve the robustness of the classifier by further pushing the classes apart "
         "from each other, obtaining a more confident and reliable classifier, thus extracting more information "
         "from the training data than would have been possible by simply minimizing the average 0-1 loss on the "
         "training set. (Goodfellow et al., section 8.1.2)")


def main(ctx):
    config = os.path.join(common.ROOT, "examples", "fashion_mlp.toml")
    z = ctx.expect("z", 2.0)  # the fall must exceed z standard errors of the held-out error
    if ctx.quick:
        n_train, n_val, epochs = 500, 2000, 40
    else:
        n_train, n_val, epochs = 2000, 10000, 150
    run = ctx.train(config, "mlp", [f"data.limit_train={n_train + n_val}", f"data.validation_size={n_val}",
                                    "data.limit_test=500", "model.hidden=[128]", "schedule.name=\"constant\"",
                                    f"epochs={epochs}", "early_stopping.enabled=false"])
    ctx.report([run], None)
    ep = [e for e in common.of_kind(common.read_metrics(run), "epoch")]
    zero = next((e for e in ep if e["train_error"] == 0), None)
    last = ep[-1]
    if zero is None:
        ok = False
        summary = (f"the training 0-1 error never reached 0 in {epochs} epochs (lowest "
                   f"{min(e['train_error'] for e in ep):.4f}): the claim's condition was not met")
        v0 = v1 = se = float("nan")
    else:
        v0, v1 = zero["val_error"], last["val_error"]
        se = math.sqrt(v0 * (1 - v0) / n_val)
        ok = v1 < v0 - z * se
        after = [e for e in ep if e["epoch"] >= zero["epoch"]]
        best_after = min(after, key=lambda e: e["val_error"])
        summary = (f"train 0-1 error 0 at epoch {zero['epoch']} with held-out error {v0:.4f}; after epoch {last['epoch']} "
                   f"{v1:.4f} (change {v1 - v0:+.4f}; claim: a fall of more than {z:g} standard errors, {z * se:.4f}); "
                   f"lowest after the zero {best_after['val_error']:.4f} at epoch {best_after['epoch']}; held-out NLL "
                   f"{zero['val_loss']:.3f} -> {last['val_loss']:.3f}")
    res = common.Result(ok, summary)
    step = max(1, len(ep) // 30)
    rows = [(e["epoch"], e["train_loss"], e["train_error"], e["val_loss"], e["val_error"]) for e in ep[::step]]
    if rows[-1][0] != last["epoch"]:
        rows.append((last["epoch"], last["train_loss"], last["train_error"], last["val_loss"], last["val_error"]))
    table = common.markdown_table(["epoch", "train NLL", "train 0-1 error", "held-out NLL", "held-out 0-1 error"], rows)
    E = [e["epoch"] for e in ep]
    svgs = [common.svg_plot([("train 0-1 error", E, [e["train_error"] for e in ep]),
                             ("held-out 0-1 error", E, [e["val_error"] for e in ep])],
                            "0-1 errors by epoch", "epoch", "0-1 error"),
            common.svg_plot([("train NLL", E, [e["train_loss"] for e in ep]), ("held-out NLL", E, [e["val_loss"] for e in ep])],
                            "the surrogate (negative log-likelihood) by epoch", "epoch", "NLL", logy=True)]
    common.write_page(ctx, "The 0-1 loss keeps falling after the training error reaches 0 (claim 3, section 8.1.2)", QUOTE,
                      "On a subset where the training 0-1 error reaches 0 under the NLL, the held-out 0-1 error continues to fall "
                      "while training goes on.",
                      f"A 784-128-10 ReLU MLP (momentum 0.9, constant eps 0.05, batch 128) on {n_train} training examples, "
                      f"{n_val} held out (the validation split), {epochs} epochs: let e0 be the first epoch with training 0-1 error "
                      f"0; the held-out 0-1 error after the last epoch is below its value at e0 by more than {z:g} standard errors "
                      f"(sqrt(p(1-p)/{n_val}) at e0's p).",
                      res, table, svgs, [("report.html", os.path.join(run, "report.html"))])
    return res
