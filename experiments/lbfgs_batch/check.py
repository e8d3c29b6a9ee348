"""Claim 11 (section 8.1.3): second-order methods need large batches: L-BFGS on a small batch
is worse per update, and erratic, where on a large batch it is not."""
import math
import os

import common

QUOTE = ("Methods that compute updates based only on the gradient g are usually relatively robust and "
         "can handle smaller batch sizes like 100. Second-order methods, which use also the Hessian "
         "matrix H and compute updates such as H^{-1} g, typically require much larger batch sizes like "
         "10,000. These large batch sizes are required to minimize fluctuations in the estimates of "
         "H^{-1} g. (Goodfellow et al., section 8.1.3)")


def loss_curve(m, every):
    """The whole training loss after k updates, k = 0, every, 2 every, ... (eval records, and the
    epoch records that fall on that grid); a missing or non-finite loss is inf."""
    pts = {}
    for r in common.of_kind(m, "epoch") + common.of_kind(m, "eval"):
        k = r["step"]
        if k % every == 0:
            v = r.get("train_loss")
            pts[k] = v if isinstance(v, (int, float)) and math.isfinite(v) else math.inf
    return sorted(pts.items())


def at(curve, n):
    """The loss after n updates: the last point at or before n (a run that stopped early did
    not move after its last point)."""
    before = [v for k, v in curve if k <= n]
    return before[-1] if before else math.inf


def total_rise(curve, n):
    """Sum of the rises of the whole training loss between consecutive points up to n,
    relative to the loss at the start: 0 for a curve that never goes up."""
    pts = [v for k, v in curve if k <= n]
    if not pts or not math.isfinite(pts[0]):
        return math.inf
    rise = 0.0
    for a, b in zip(pts, pts[1:]):
        if not math.isfinite(b):
            return math.inf
        rise += max(0.0, b - a)
    return rise / pts[0]


def search_stats(m, n):
    so = [r for r in common.of_kind(m, "second_order") if r["step"] < n]
    if not so:
        return dict(updates=0, evals=math.nan, failed=math.nan, restarted=math.nan, stalled=math.nan, alpha=math.nan)
    k = len(so)
    return dict(updates=k,
                evals=sum(r["line_search_evaluations"] for r in so) / k,
                failed=sum(1 for r in so if not r.get("search_ok", True)) / k,
                restarted=sum(1 for r in so if r.get("restarted")) / k,
                stalled=sum(1 for r in so if r.get("stalled")) / k,
                alpha=sorted(r["alpha"] for r in so)[k // 2])


def main(ctx):
    config = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lbfgs.toml")
    if ctx.quick:
        ntrain, nval, hidden = 1000, 200, "[32]"
        sizes, n_updates, every = [10, "full"], 20, 2
    else:
        ntrain, nval, hidden = 5000, 1000, "[256, 256]"
        sizes, n_updates, every = [10, 100, 1000, "full"], 50, 5
    higher = ctx.expect("higher_factor", 1.1)
    rise_ratio = ctx.expect("rise_ratio", 2.0)
    data = [f"data.limit_train={ntrain + nval}", f"data.validation_size={nval}", f"model.hidden={hidden}",
            f"eval_every_steps={every}"]
    rows, curves, runs, res_by = [], [], [], {}
    for b in sizes:
        bsz = ntrain if b == "full" else b
        epochs = max(1, math.ceil(n_updates * bsz / ntrain))  # at least n_updates updates
        bset = 'sampler.batch_size="full"' if b == "full" else f"sampler.batch_size={b}"
        run = ctx.train(config, f"batch_{b}", data + [bset, f"epochs={epochs}"])
        runs.append(run)
        m = common.read_metrics(run)
        curve = loss_curve(m, every)
        final = common.of_kind(m, "final")[-1]
        st = search_stats(m, n_updates)
        r = dict(loss=at(curve, n_updates), rise=total_rise(curve, n_updates), div=final.get("divergences", 0),
                 stopped=final.get("stopped_early", False), curve=curve, st=st, bsz=bsz)
        res_by[b] = r
        curves.append((f"batch {b}", [k for k, _ in curve if k <= n_updates], [v for k, v in curve if k <= n_updates]))
        rows.append((b, st["updates"], r["loss"], f"{r['rise']:.4f}", st["evals"], st["failed"], st["restarted"],
                     st["stalled"], st["alpha"], r["div"]))
    small, large = res_by[sizes[0]], res_by[sizes[-1]]
    ok_higher = small["loss"] > higher * large["loss"]
    ok_unstable = (small["div"] > 0 or not math.isfinite(small["loss"]) or
                   (small["rise"] > 0.01 and small["rise"] > rise_ratio * large["rise"]))
    ok = ok_higher and ok_unstable
    ctx.report(runs, os.path.join(ctx.out, "report.html"))
    table = common.markdown_table(
        ["batch", f"updates (first {n_updates})", f"whole training loss after {n_updates} updates",
         "total rise / start loss", "line-search evaluations per update", "search not satisfied",
         "pair skipped / history dropped", "stalled", "median step length", "non-finite updates skipped"], rows)
    table += (f"\n\nL-BFGS (m = 10, strong Wolfe, up to 20 evaluations), resampled batches, {ntrain} training "
              f"examples, the whole training loss every {every} updates. Gated: batch {sizes[0]} against batch "
              f"{sizes[-1]}; the line-search figures are over the first {n_updates} updates and are not gated.")
    summary = (f"after {n_updates} updates the whole training loss is {small['loss']:.4g} at batch {sizes[0]} against "
               f"{large['loss']:.4g} at batch {sizes[-1]} (x{small['loss'] / large['loss']:.2f}, claim > {higher:g}x); "
               f"total rise {small['rise']:.4f} against {large['rise']:.4f} of the start loss (claim > 0.01 and > "
               f"{rise_ratio:g}x); non-finite updates skipped {small['div']} / {large['div']}; line search not satisfied "
               f"in {small['st']['failed']:.0%} / {large['st']['failed']:.0%}, pairs skipped in "
               f"{small['st']['restarted']:.0%} / {large['st']['restarted']:.0%} of the updates")
    res = common.Result(ok, summary)
    # The same runs against the examples seen (not gated): the per-computation view.
    per_example = [(f"batch {b}", [k * res_by[b]["bsz"] for k, _ in res_by[b]["curve"]],
                    [v for _, v in res_by[b]["curve"]]) for b in sizes]
    svgs = [common.svg_plot(curves, "whole training loss against the update", "update", "training loss", logy=True),
            common.svg_plot(per_example, "the same runs against examples seen (not gated)", "examples seen",
                            "training loss", logx=True, logy=True)]
    common.write_page(ctx, "L-BFGS needs large batches (claim 11, section 8.1.3)", QUOTE,
                      "A second-order method such as L-BFGS on small batches suffers from the noise in its "
                      "estimates of the gradient and of the curvature: per update it makes less progress "
                      "than on a large batch, and its progress is erratic.",
                      f"L-BFGS on resampled batches of {sizes[0]} and of the whole training set ({ntrain} examples, "
                      f"{'784-32-10, quick' if ctx.quick else 'the default MLP 784-256-256-10'}); after {n_updates} "
                      f"updates the whole training loss at batch {sizes[0]} must exceed {higher:g}x the large batch's, "
                      f"and the small batch must be erratic: a non-finite update, or the sum of the rises of its whole "
                      f"training loss (every {every} updates) above 0.01 of the start loss and above {rise_ratio:g}x "
                      f"the large batch's.",
                      res, table, svgs, [("report.html", os.path.join(ctx.out, "report.html"))])
    return res
