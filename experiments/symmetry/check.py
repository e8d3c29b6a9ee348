"""Claim 5 (section 8.2.2): weight-space symmetry: n!^m permutations and ReLU rescalings leave the loss unchanged."""
import math
import os

import common

QUOTE = ("For example, we could take a neural network and modify layer 1 by swapping the incoming "
         "weight vector for unit i with the incoming weight vector for unit j, then doing the same "
         "for the outgoing weight vectors. If we have m layers with n units each, then there are "
         "n!^m ways of arranging the hidden units. This kind of non-identifiability is known as "
         "weight space symmetry. [...] in any rectified linear or maxout network, we can scale all "
         "of the incoming weights and biases of a unit by alpha if we also scale all of its outgoing "
         "weights by 1/alpha. (Goodfellow et al., section 8.2.2)")


def main(ctx):
    config = os.path.join(common.ROOT, "examples", "fashion_mlp.toml")
    if ctx.quick:
        base = ["data.limit_train=3000", "data.validation_size=1000", "data.limit_test=1000",
                "model.hidden=[32,32]", "epochs=2"]
        examples = 500
    else:
        base = ["epochs=3"]  # the default MLP 784-256-256-10
        examples = 2000
    # How close to "unchanged": float rounding of a loss summed over the examples.
    tol = {"f32": ctx.expect("tolerance_f32", 1e-5), "f64": ctx.expect("tolerance_f64", 1e-12)}
    min_move = ctx.expect("min_distance", 0.1)
    rows, ok, runs, dist = [], True, [], []
    for dtype in ("f32", "f64"):
        run = ctx.train(config, f"mlp_{dtype}", base + [f"model.dtype=\"{dtype}\""])
        runs.append(run)
        s = ctx.diagnose(run, "symmetry", "--examples", examples, "--trials", 10)
        # n!^m counted independently of descent: sum over hidden layers of log10(n!)
        widths = [l["units"] for l in s["layers"]]
        log10_count = sum(math.lgamma(n + 1) / math.log(10) for n in widths)
        count_ok = abs(log10_count - s["log10_equivalent_models"]) <= 1e-6 * max(1.0, log10_count)
        moved = min(s["permutation_distance"], s["rescaling_distance"])
        ok_d = (s["permutation_max_change"] <= tol[dtype] and s["rescaling_max_change"] <= tol[dtype]
                and count_ok and moved >= min_move and not s["not_covered"])
        ok &= ok_d
        dist.append(moved)
        rows.append((dtype, "x".join(map(str, widths)), s["loss"], s["permutation_max_change"], s["rescaling_max_change"],
                     tol[dtype], s["permutation_distance"], s["rescaling_distance"],
                     f"10^{s['log10_equivalent_models']:.1f} (by lgamma: 10^{log10_count:.1f})",
                     "yes" if ok_d else "NO"))
        ctx.log(f"{dtype}: permutation {s['permutation_max_change']:.3g}, rescaling {s['rescaling_max_change']:.3g}, moved {moved:.3g}")
    ctx.report(runs, os.path.join(ctx.out, "report.html"))
    table = common.markdown_table(
        ["dtype", "hidden widths", "loss", "largest relative loss change, permutations", "... rescalings",
         "tolerance", "distance moved (relative), permutations", "... rescalings", "equivalent permutations n!^m", "holds"], rows)
    summary = (f"largest relative loss change f32 {rows[0][3]:.2g}/{rows[0][4]:.2g}, f64 {rows[1][3]:.2g}/{rows[1][4]:.2g} "
               f"(permutations/rescalings) at parameters moved >= {min(dist):.2f} of their norm; {rows[0][8]} equivalent arrangements")
    res = common.Result(ok, summary)
    common.write_page(ctx, "Weight-space symmetry (claim 5, section 8.2.2)", QUOTE,
                      "Permuting hidden units (n!^m ways) and rescaling ReLU units leave the loss of the trained MLP unchanged: exactly up to rounding, far from the original parameters.",
                      f"descent diagnose --what symmetry (10 random permutations, 10 random rescalings) on the trained "
                      f"{'784-32-32-10 MLP (quick)' if ctx.quick else 'default MLP 784-256-256-10'} in float32 and float64, "
                      f"{examples} examples: relative loss change <= {tol['f32']:g} (f32), <= {tol['f64']:g} (f64); "
                      f"the parameters moved >= {min_move:g} of their norm; log10 n!^m agrees with lgamma.",
                      res, table, [], [("report.html", os.path.join(ctx.out, "report.html"))])
    return res
