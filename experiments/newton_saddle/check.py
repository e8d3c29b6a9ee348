"""Claim 6 (section 8.2.3): Newton's method is drawn to saddle points; gradient descent and saddle-free Newton escape.

Two halves: the lab's saddle f = x^2 - y^2 (descent optimize), and a small tanh network started
near one of its saddle points (build/bin/experiment_newton_saddle, experiments/newton_saddle/newton_saddle_net.cpp).
"""
import json
import math
import os
import subprocess

import common

QUOTE = ("For Newton's method, it is clear that saddle points constitute a problem. Gradient descent is "
         "designed to move 'downhill' and is not explicitly designed to seek a critical point. Newton's "
         "method, however, is designed to solve for a point where the gradient is zero. Without "
         "appropriate modification, it can jump to a saddle point. [...] Dauphin et al. (2014) "
         "introduced a saddle-free Newton method [...] (Goodfellow et al., section 8.2.3)")


def final_point(ctx, optimizer, steps, start, *extra):
    out = ctx.descent_cmd("optimize", "--function", "saddle", "--optimizer", optimizer, f"--start={start}",
                          "--steps", steps, *extra)
    rows = [l.split(",") for l in out.splitlines() if l and l[0].isdigit()]
    xs = [float(r[1]) for r in rows]
    ys = [float(r[2]) for r in rows]
    summary = [l for l in out.splitlines() if l.startswith("#")]
    return xs, ys, (summary[-1] if summary else "")


def lab_half(ctx):
    start = "1,0.001"
    escape = ctx.expect("escape_distance", 1.0)
    reach = ctx.expect("saddle_distance", 1e-9)
    runs = [("newton", 20, ()), ("sgd", 100, ("--lr", "0.1")), ("saddle_free", 20, ())]
    rows, ok, series = [], True, []
    for opt, steps, extra in runs:
        xs, ys, line = final_point(ctx, opt, steps, start, *extra)
        d = math.hypot(xs[-1], ys[-1])  # the saddle of x^2 - y^2 is (0, 0)
        holds = d <= reach if opt == "newton" else d >= escape
        ok &= holds
        rows.append((opt + (" --lr 0.1" if extra else ""), steps, f"({xs[-1]:.3g}, {ys[-1]:.3g})", d,
                     f"<= {reach:g}" if opt == "newton" else f">= {escape:g}", "yes" if holds else "NO"))
        series.append((opt, list(range(len(xs))), [max(math.hypot(a, b), 1e-12) for a, b in zip(xs, ys)]))
        ctx.log(f"{opt}: {line}")
    table = common.markdown_table(["method", "steps", "end point", "distance to the saddle (0, 0)", "check", "holds"], rows)
    summary = (f"lab: from ({start}) on x^2 - y^2, Newton ends {rows[0][3]:.2g} from the saddle; gradient descent {rows[1][3]:.3g} and "
               f"saddle-free Newton {rows[2][3]:.3g} away (claim: Newton <= {reach:g}, the others >= {escape:g})")
    svg = common.svg_plot(series, "the lab: distance to the saddle against the step (0 drawn at 1e-12)", "step", "distance to the saddle", logy=True)
    check = (f"the lab: descent optimize --function saddle from ({start}): Newton (20 steps) ends within {reach:g} of (0, 0); "
             f"gradient descent (eps 0.1, 100 steps) and saddle-free Newton (20 steps) end at least {escape:g} away.")
    return ok, summary, table, svg, check


def network_half(ctx):
    prog = os.path.join(os.path.dirname(ctx.descent), "experiment_newton_saddle")
    if not os.access(prog, os.X_OK):
        raise RuntimeError(f"{prog} is not built (cmake --build build --target experiment_newton_saddle)")
    radius = ctx.expect("net_radius", 0.01)
    reach = ctx.expect("net_saddle_distance", 1e-6)   # Newton's end point from the saddle
    grad_tol = ctx.expect("net_grad_norm", 1e-8)      # Newton's end: a critical point
    escape = ctx.expect("net_escape_factor", 10.0)    # GD and saddle-free Newton: >= this x the start's distance
    drop = ctx.expect("net_loss_drop", 1e-4)          # ... a loss this much (nats) below the saddle's, and no negative eigenvalue
    gd_steps, lr = 5000, 5.0  # the quick form is the same (about 10 s at one thread)
    cmd = [prog, "--radius", radius, "--gd-steps", gd_steps, "--lr", lr, "--newton-steps", 30, "--sfn-steps", 100]
    cmd = [str(c) for c in cmd]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.strip()[-400:]}")
    ctx.log_lines.append("$ " + " ".join(cmd))
    with open(os.path.join(ctx.out, "network.json"), "w") as f:
        f.write(proc.stdout)
    r = json.loads(proc.stdout)
    sad = r["saddle"]
    lam = sad["eigenvalues"]
    scale = max(abs(lam[0]), abs(lam[-1]))
    tol = 1e-6 * scale  # an eigenvalue below -tol is negative curvature, not rounding
    negatives = lambda e: sum(1 for v in e if v < -tol)
    ctx.log(f"saddle (the {r['parameters']}-parameter net with a dead unit): loss {sad['loss']:.6g}, |g| {sad['grad_norm']:.2g}, "
            f"eigenvalues {lam[0]:.4g} .. {lam[-1]:.4g}, {negatives(lam)} of {len(lam)} negative")
    # The theory of the dead-unit saddle, checked independently of the search: its Hessian is
    # block diagonal, the smaller net's Hessian at its minimum beside [[0, M], [M', 0]], so its
    # eigenvalues are the minimum's and the pairs +-sigma(M): the negative ones mirrored.
    mn_ev = r["small_minimum"]["eigenvalues"]
    predicted = sorted(mn_ev + [-v for v in lam if v < -tol] + [v for v in lam if v < -tol])
    structure_err = max(abs(a - b) for a, b in zip(predicted, lam)) / scale if len(predicted) == len(lam) else math.inf
    structure_ok = structure_err <= 1e-6
    ctx.log(f"the saddle's eigenvalues against the minimum's and +-sigma(M): largest difference {structure_err:.2g} of the largest")
    rows, ok = [], structure_ok
    rows.append(("the saddle theta_s", "", sad["loss"], sad["grad_norm"], 0.0, lam[0], lam[-1], negatives(lam), "", ""))
    rows.append((f"start: theta_s + {radius:g} u", "", r["start"]["loss"], r["start"]["grad_norm"], r["start"]["distance"],
                 r["start"]["eigenvalues"][0], r["start"]["eigenvalues"][-1], negatives(r["start"]["eigenvalues"]), "", ""))
    ends = r["end"]
    newton_loss = ends["newton"]["loss"]
    for m, label in (("newton", "Newton"), ("gd", f"gradient descent, eps {lr:g}"), ("saddle_free", "saddle-free Newton (Krylov = dim)")):
        e = ends[m]
        ev = e["eigenvalues"]
        if m == "newton":
            holds = e["grad_norm"] <= grad_tol and e["distance"] <= reach and ev[0] < -tol
            check = f"gradient norm <= {grad_tol:g}, distance <= {reach:g}, lambda_min < 0"
        else:
            holds = e["distance"] >= escape * radius and e["loss"] <= sad["loss"] - drop and negatives(ev) == 0
            check = f"distance >= {escape * radius:g}, loss <= saddle's - {drop:g}, no negative eigenvalue"
        ok &= holds
        rows.append((label, r["steps"][m], e["loss"], e["grad_norm"], e["distance"], ev[0], ev[-1], negatives(ev), check,
                     "yes" if holds else "NO"))
        ctx.log(f"{m}: loss {e['loss']:.6g}, |g| {e['grad_norm']:.3g}, distance {e['distance']:.3g}, "
                f"lambda_min {ev[0]:.4g}, lambda_max {ev[-1]:.4g}")
    table = common.markdown_table(["point", "steps", "loss", "gradient norm", "distance to theta_s", "lambda_min", "lambda_max",
                                   "negative eigenvalues", "check", "holds"], rows)
    mn = r["small_minimum"]
    table += (f"\n\nNetwork: {r['network']}, {r['examples']} points (classes drawn from a 2-unit teacher), {r['parameters']} "
              f"parameters. theta_s: the minimum of the same net with one unit fewer (L-BFGS from the initialization seed "
              f"{r['minimum_seed']}, then Newton: loss {mn['loss']:.10g}, gradient norm {mn['grad_norm']:.2g}, Hessian eigenvalues "
              f"{mn['eigenvalues'][0]:.3g} to {mn['eigenvalues'][-1]:.3g}, all positive), with the extra unit's weights all 0: "
              f"a critical point, and a saddle by the eigenvalues above. u: a random unit vector (seed {r['seed']}). "
              f"Eigenvalues: the dense Hessian (one exact Hessian-vector product per parameter, LAPACK dsyev); "
              f"'negative' means below -1e-6 x the largest |eigenvalue| ({tol:.2g}).")
    tr = r["trace"]
    series = [(m, tr[m]["step"], [max(d, 1e-14) for d in tr[m]["distance"]]) for m in ("newton", "gd", "saddle_free")]
    svg = common.svg_plot(series, "the network: distance to the saddle theta_s against the step (log; 0 drawn at 1e-14)",
                          "step", "distance to theta_s", logy=True)
    svg2 = common.svg_plot([(m, tr[m]["step"], tr[m]["loss"]) for m in ("newton", "gd", "saddle_free")],
                           "the network: training loss against the step", "step", "loss")
    table += (f" The saddle's eigenvalues equal the smaller net's at its minimum together with +-sigma of the dead unit's "
              f"block to {structure_err:.1g} of the largest (checked: <= 1e-6): "
              f"{'yes' if structure_ok else 'NO'}.")
    g, s = ends["gd"], ends["saddle_free"]
    summary = (f"network ({r['parameters']} parameters, a dead unit's saddle) from {radius:g} off it (loss {sad['loss']:.4g}, "
               f"{negatives(lam)} negative eigenvalues, lambda_min {lam[0]:.3g}): Newton ends {ends['newton']['distance']:.2g} from it "
               f"with |g| {ends['newton']['grad_norm']:.2g} and lambda_min {ends['newton']['eigenvalues'][0]:.3g} (loss {newton_loss:.4g}); "
               f"gradient descent ends {g['distance']:.3g} away at loss {g['loss']:.4g} (lambda_min {g['eigenvalues'][0]:.3g}), "
               f"saddle-free Newton {s['distance']:.3g} away at loss {s['loss']:.4g} (lambda_min {s['eigenvalues'][0]:.3g})")
    check = (f"the network: from theta_s + {radius:g} u, Newton ends with |g| <= {grad_tol:g} within {reach:g} of theta_s, where the "
             f"Hessian has a negative eigenvalue; gradient descent (eps {lr:g}, {gd_steps} steps) and saddle-free Newton (100 steps) "
             f"end at least {escape:g}x the start's distance from theta_s, at a loss at least {drop:g} below the saddle's, where "
             f"the Hessian has no negative eigenvalue.")
    return ok, summary, table, [svg, svg2], check


def main(ctx):
    ok1, summary1, table1, svg1, check1 = lab_half(ctx)
    ok2, summary2, table2, svgs2, check2 = network_half(ctx)
    res = common.Result(ok1 and ok2, summary1 + "; " + summary2)
    common.write_page(ctx, "Newton is drawn to saddles (claim 6, section 8.2.3)", QUOTE,
                      "On the lab's saddle f = x^2 - y^2 and on a small network started near a saddle point, Newton's method "
                      "converges to the saddle while gradient descent and saddle-free Newton escape it.",
                      check1 + " " + check2, res,
                      "The lab:\n\n" + table1 + "\n\nThe network:\n\n" + table2, [svg1] + svgs2)
    return res
