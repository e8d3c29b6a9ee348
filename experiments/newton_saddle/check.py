"""Claim 6 (section 8.2.3): Newton's method is drawn to saddle points; gradient descent and saddle-free Newton escape."""
import math

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


def main(ctx):
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
    table += "\n\nOnly the lab's saddle: the claim's second half, a small network started near a saddle, is not here yet."
    summary = (f"from ({start}): Newton ends {rows[0][3]:.2g} from the saddle; gradient descent {rows[1][3]:.3g} and "
               f"saddle-free Newton {rows[2][3]:.3g} away (claim: Newton <= {reach:g}, the others >= {escape:g})")
    res = common.Result(ok, summary)
    svg = common.svg_plot(series, "distance to the saddle against the step (0 drawn at 1e-12)", "step", "distance to the saddle", logy=True)
    common.write_page(ctx, "Newton is drawn to saddles (claim 6, section 8.2.3)", QUOTE,
                      "On the lab's saddle f = x^2 - y^2, Newton's method converges to the saddle while gradient descent and saddle-free Newton escape it.",
                      f"descent optimize --function saddle from ({start}): Newton (20 steps) ends within {reach:g} of (0, 0); "
                      f"gradient descent (eps 0.1, 100 steps) and saddle-free Newton (20 steps) end at least {escape:g} away.",
                      res, table, [svg])
    return res
