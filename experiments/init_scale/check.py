"""Claim 15 (section 8.4): initialization scale, per-layer variances of a deep MLP at initialization."""
import json
import math
import os
import subprocess

import common

QUOTE = ("Larger initial weights will yield a stronger symmetry-breaking effect [...] Too large of "
         "initial weights may, however, result in exploding values during forward propagation or "
         "back-propagation. [...] Glorot and Bengio (2010) suggest using the normalized "
         "initialization W ~ U(-sqrt(6/(m+n)), sqrt(6/(m+n))). This latter heuristic is designed to "
         "compromise between the goal of initializing all layers to have the same activation variance "
         "and the goal of initializing all layers to have the same gradient variance. The formula is "
         "derived using the assumption that the network consists only of a chain of matrix "
         "multiplications, with no nonlinearities. (Goodfellow et al., section 8.4)")


def per_layer_factor(v):
    """The geometric-mean factor from one layer to the next: (v_L / v_1)^(1 / (L - 1))."""
    return (v[-1] / v[0]) ** (1.0 / (len(v) - 1))


def tanh_mean_field(layers, input_var, points=4000, span=10.0):
    """q_l = E[tanh(sqrt(q_(l-1)) Z)^2], Z ~ N(0, 1): the activation variance of a wide tanh net
    whose weights have variance 1/fan_in (Glorot with fan_in = fan_out), the expectation by
    Simpson's rule on [-10, 10] (the standard library only)."""
    h = 2 * span / points
    zs = [-span + i * h for i in range(points + 1)]
    ws = [(1 if i in (0, points) else (4 if i % 2 else 2)) * h / 3 * math.exp(-z * z / 2) / math.sqrt(2 * math.pi)
          for i, z in enumerate(zs)]
    q, out = input_var, []
    for _ in range(layers):
        q = sum(w * math.tanh(math.sqrt(q) * z) ** 2 for w, z in zip(ws, zs))
        out.append(q)
    return out


def main(ctx):
    prog = os.path.join(os.path.dirname(ctx.descent), "experiment_init_scale")
    if not os.access(prog, os.X_OK):
        raise RuntimeError(f"{prog} is not built (cmake --build build --target experiment_init_scale)")
    width, batch = (128, 200) if ctx.quick else (512, 2000)
    layers = 10
    cmd = [prog, "--layers", str(layers), "--width", str(width), "--batch", str(batch)]
    out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {out.returncode}: {out.stderr.strip()}")
    ctx.log_lines.append("$ " + " ".join(cmd))
    data = json.loads(out.stdout)
    with open(os.path.join(ctx.out, "variances.json"), "w") as f:
        json.dump(data, f, indent=1)
    band = ctx.expect("band", 2.0)            # "within a factor of 2"
    geometric = ctx.expect("geometric", 2.0)  # a per-layer factor this far from 1 is geometric growth/decay
    mf_tol = ctx.expect("mean_field_tolerance", 0.15)
    rows, ok, notes = [], True, []
    by = {(c["activation"], c["label"]): c for c in data["configs"]}
    for c in data["configs"]:
        a, g = c["activation_variance"], c["gradient_variance"]
        ra, rg = per_layer_factor(a), per_layer_factor(g)
        spread_a, spread_g = max(a) / min(a), max(g) / min(g)
        lab = c["label"]
        if lab in ("he",):
            verdict = spread_a <= band and spread_g <= band
            expect = f"max/min over layers <= {band:g}"
        elif lab == "glorot":
            verdict = 1 / geometric < ra < geometric and 1 / geometric < rg < geometric
            expect = f"per-layer factor in (1/{geometric:g}, {geometric:g}); mean field (below)"
        elif "x4" in lab or "x1/4" in lab:
            verdict = max(abs(math.log(ra)), abs(math.log(rg))) >= math.log(geometric)
            expect = f"per-layer factor >= {geometric:g} or <= 1/{geometric:g}"
        else:
            verdict, expect = None, "shown"
        if verdict is not None:
            ok &= verdict
        rows.append((c["activation"], lab, f"{a[0]:.3g} .. {a[-1]:.3g}", f"{ra:.3g}", f"{spread_a:.3g}",
                     f"{g[0]:.3g} .. {g[-1]:.3g}", f"{rg:.3g}", f"{spread_g:.3g}", expect,
                     "-" if verdict is None else ("yes" if verdict else "NO")))
    # The tanh net under Glorot against the mean-field recursion (an independent computation).
    tg = by[("tanh", "glorot")]["activation_variance"]
    mf = tanh_mean_field(layers, 1.0)
    worst = max(abs(m - t) / m for m, t in zip(mf, tg))
    ok &= worst <= mf_tol
    notes.append(f"tanh + Glorot against the mean-field recursion q_l = E[tanh(sqrt(q_(l-1)) Z)^2] (q_0 = 1): "
                 f"largest relative difference {worst:.3f} (tolerance {mf_tol:g}); predicted "
                 + ", ".join(f"{m:.3g}" for m in mf) + ". The variance decays like 1/(2l), not geometrically: "
                 "over 10 layers it falls %.1fx, so 'within a factor of 2' holds per layer, not end to end." % (tg[0] / tg[-1]))
    he = by[("relu", "he")]
    table = common.markdown_table(
        ["activation", "weights", "activation variance, layer 1 .. 10", "per-layer factor", "max/min",
         "gradient variance, layer 1 .. 10", "per-layer factor", "max/min", "check", "holds"], rows)
    table += "\n\n" + "\n\n".join(notes)
    svgs = []
    for act in ("tanh", "relu"):
        cs = [c for c in data["configs"] if c["activation"] == act]
        L = list(range(1, layers + 1))
        svgs.append(common.svg_plot([(c["label"], L, c["activation_variance"]) for c in cs],
                                    f"{act}: activation variance by layer", "layer", "Var(h_l)", logy=True))
        svgs.append(common.svg_plot([(c["label"], L, c["gradient_variance"]) for c in cs],
                                    f"{act}: back-propagated gradient variance by layer", "layer", "Var(dL/dz_l)", logy=True))
    he_a = max(he["activation_variance"]) / min(he["activation_variance"])
    summary = (f"He/ReLU max/min over 10 layers {he_a:.2f} (activations), "
               f"{max(he['gradient_variance']) / min(he['gradient_variance']):.2f} (gradients); "
               f"4x too large/small ReLU: x{per_layer_factor(by[('relu', 'he x4')]['activation_variance']):.1f} and "
               f"x{per_layer_factor(by[('relu', 'he x1/4')]['activation_variance']):.3f} per layer; "
               f"Glorot/tanh follows the mean field within {worst:.1%} and drifts {tg[0] / tg[-1]:.1f}x end to end (1/(2l), not geometric)")
    res = common.Result(ok, summary)
    common.write_page(ctx, "Initialization scale (claim 15, section 8.4)", QUOTE,
                      "In a 10-layer MLP at initialization the activation and gradient variances stay level under Glorot (tanh) and He (ReLU), and explode or vanish geometrically with weights 4x too large or too small; orthogonal and sparse beside them.",
                      f"experiment_init_scale (descent's nn::mlp and nn::initialize, exact gradients from the tape), "
                      f"{layers} layers of {width} units, {batch} standard normal inputs: He/ReLU max/min over layers <= {band:g}; "
                      f"Glorot/tanh per-layer factor within {geometric:g} and the mean-field recursion within {mf_tol:g}; "
                      f"4x too large or small: a per-layer factor of at least {geometric:g} in activations or gradients.",
                      res, table, svgs)
    return res
