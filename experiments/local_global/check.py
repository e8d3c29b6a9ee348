"""Claim 9 (section 8.2.7, Fig. 8.2): local against global structure: the straight line from
theta_0 to theta* has no obstacle, yet training walks a path several times longer."""
import os

import common

QUOTE = ("Many of the problems we have discussed so far correspond to properties of the loss function "
         "at a single point [...] It is possible to overcome all these problems at a single point and "
         "still perform poorly if the direction that results in the most improvement locally does not "
         "point toward distant regions of much lower cost. Goodfellow et al. (2015) argue that much of "
         "the runtime of training is due to the length of the trajectory needed to arrive at the "
         "solution. Figure 8.2 shows that the learning trajectory spends most of its time tracing out "
         "a wide arc around a mountain-shaped structure. (Goodfellow et al., section 8.2.7)")


def main(ctx):
    config = os.path.join(common.ROOT, "examples", "fashion_mlp.toml")
    if ctx.quick:
        sets = ["data.limit_train=3000", "data.validation_size=1000", "data.limit_test=500", "model.hidden=[64]",
                "epochs=4", "sampler.batch_size=32", "snapshots.every_steps=25"]
        interp_args = ["--examples", 1000, "--points", 21]
        plane_args = ["--examples", 500, "--grid", 9]
    else:
        # The default MLP, 3 epochs under its linear decay (1,173 updates), a snapshot every 100.
        sets = ["epochs=3", "snapshots.every_steps=100"]
        interp_args = ["--examples", 5000]
        plane_args = ["--examples", 2000, "--grid", 21]
    min_ratio = ctx.expect("ratio", 3.0)
    run = ctx.train(config, "mlp", sets + ["early_stopping.enabled=false"])
    ctx.report([run], None)
    interp = ctx.diagnose(run, "interpolation", *interp_args)
    plane = ctx.diagnose(run, "plane", *plane_args)
    shape = interp["shape"]["train_loss"]
    vshape = interp["shape"]["validation_loss"]
    traj = interp["trajectory_length"]
    monotone = bool(shape["monotone"])
    ratio = traj["ratio"]
    ok = monotone and ratio >= min_ratio
    alphas = interp["alpha"]
    rows = [(a, l, e, vl, ve) for a, l, e, vl, ve in zip(alphas, interp["train_loss"], interp["train_error"],
                                                         interp["validation_loss"], interp["validation_error"])]
    table = common.markdown_table(["alpha", "train loss", "train 0-1 error", "validation loss", "validation 0-1 error"],
                                  rows[::max(1, len(rows) // 15)] + ([rows[-1]] if len(rows) % 15 else []))
    t = plane["trajectory"]
    table += "\n\n" + common.markdown_table(["step", "x (along theta* - theta_0)", "y (main deviation)", "distance off the plane"],
                                            list(zip(t["step"], t["x"], t["y"], t["off_plane"])))
    table += "\n\n" + common.markdown_table(
        ["figure", "value"],
        [("train loss at theta_0 / theta*", f"{shape['at_0']:.4g} / {shape['at_1']:.4g}"),
         ("monotone on [0, 1] (train)", monotone),
         ("largest rise between neighbours on [0, 1] (train)", shape["largest_rise"]),
         ("height above the chord (train)", shape["above_chord"]),
         ("validation loss: lowest on [0, 1], at alpha", f"{vshape['minimum']:.4g} at {vshape['alpha_of_minimum']:.3g}"),
         ("trajectory length", traj["length"]),
         ("straight distance: the norm of theta* - theta_0", traj["straight_distance"]),
         ("length / straight distance", ratio),
         ("updates", traj["steps"]),
         ("plane: second direction's share of the residuals", plane.get("explained"))])
    summary = (f"train loss along theta_0 -> theta* {shape['at_0']:.3g} -> {shape['at_1']:.3g}, "
               f"{'monotone' if monotone else 'NOT monotone'} (largest rise {shape['largest_rise']:.3g}, above the chord "
               f"{shape['above_chord']:.3g}); trajectory {traj['length']:.4g} = {ratio:.2f} x the straight distance "
               f"{traj['straight_distance']:.4g} (claim >= {min_ratio:g}x)")
    res = common.Result(ok, summary)
    svgs = [common.svg_plot([("train loss", alphas, interp["train_loss"]),
                             ("validation loss", alphas, interp["validation_loss"])],
                            "the loss on the line theta(alpha) = (1 - alpha) theta_0 + alpha theta*", "alpha", "loss",
                            logy=True),
            common.svg_heatmap(plane["axes"]["x"]["values"], plane["axes"]["y"]["values"], plane["loss"],
                               "the loss on the plane through theta_0, theta* and the trajectory's main deviation (log color)",
                               "x: along theta* - theta_0", "y: main deviation (units of the straight distance)",
                               path=(t["x"], t["y"]), marks=[(0.0, 0.0, "theta_0"), (1.0, 0.0, "theta*")])]
    common.write_page(ctx, "Local against global structure (claim 9, section 8.2.7, Fig. 8.2)", QUOTE,
                      "The loss along the straight line from theta_0 to theta* of a real run falls monotonically (no obstacle, "
                      "Goodfellow, Vinyals and Saxe 2015), and the trajectory training took, drawn on the plane, is several "
                      "times longer than the straight distance.",
                      f"descent train ({'quick: 784-64-10 on 2000 examples, batch 32, 4 epochs' if ctx.quick else 'the default MLP, 3 epochs'}, "
                      f"snapshots), then descent diagnose --what interpolation and --what plane: the training loss is monotone on "
                      f"alpha in [0, 1] (interpolation.json's shape.train_loss.monotone) and the trajectory's length (trajectory.json, "
                      f"summed exactly at every update) is at least {min_ratio:g} times ||theta* - theta_0||.",
                      res, table, svgs, [("report.html", os.path.join(run, "report.html"))])
    return res
