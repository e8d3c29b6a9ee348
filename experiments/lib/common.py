"""Shared helpers of the experiments: run descent, read its files, write the claim's page.

Standard library only. Every experiment is a
module experiments/<name>/check.py with a function main(ctx) that returns a Result; the
runner (experiments/run) builds the context, calls it, and writes the summary.
"""
import html
import json
import math
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class CheckFailed(Exception):
    pass


class Context:
    """What one experiment gets: where descent is, where to write, quick or full, overrides."""

    def __init__(self, name, descent, out, quick, threads, overrides):
        self.name = name
        self.descent = descent
        self.out = out  # this experiment's folder: runs, diagnostics, claim.html, claim.md
        self.quick = quick
        self.threads = threads
        self.overrides = overrides  # {key: value} from --expect KEY=VALUE (to see a check fail)
        self.log_lines = []
        os.makedirs(out, exist_ok=True)

    def expect(self, key, default):
        """A check's expected value, overridable from the command line (--expect key=value)."""
        if key in self.overrides:
            return type(default)(self.overrides[key]) if not isinstance(default, bool) else self.overrides[key] in ("1", "true")
        return default

    def log(self, text):
        print(f"  [{self.name}] {text}", flush=True)
        self.log_lines.append(text)

    def descent_cmd(self, *args, capture=True):
        cmd = [self.descent] + [str(a) for a in args]
        t0 = time.time()
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.strip()[-800:]}")
        self.log_lines.append(f"$ {' '.join(cmd)}  ({time.time() - t0:.1f} s)")
        return proc.stdout

    def train(self, config, name, sets=()):
        """Trains `config` (a path) into out/runs/<name>, 1 thread unless told, no progress bar."""
        runs = os.path.join(self.out, "runs")
        os.makedirs(runs, exist_ok=True)
        args = ["train", config, "--out", runs, "--name", name, "--overwrite",
                "--set", f"threads={self.threads}", "--set", "progress=none"]
        for s in sets:
            args += ["--set", s]
        self.descent_cmd(*args)
        return os.path.join(runs, name)

    def diagnose(self, run_dir, what, *extra):
        self.descent_cmd("diagnose", run_dir, "--what", what, *extra)
        return read_json(os.path.join(run_dir, "diagnostics", f"{what}.json"))

    def report(self, run_dirs, out_html):
        if len(run_dirs) == 1:
            self.descent_cmd("report", run_dirs[0])
            return os.path.join(run_dirs[0], "report.html")
        self.descent_cmd("report", *run_dirs, "--out", out_html)
        return out_html


class Result:
    def __init__(self, passed, summary, rows=None):
        self.passed = passed
        self.summary = summary  # one line: the measured figure against the claim
        self.rows = rows or []


def read_json(path):
    with open(path) as f:
        return json.load(f)


def read_metrics(run_dir):
    records = []
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        for line in f:
            line = line.strip()
            if line:
                records.append(json.loads(line))
    return records


def of_kind(records, kind):
    return [r for r in records if r.get("kind") == kind]


def fmt(x, digits=4):
    if isinstance(x, float):
        if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e5):
            return f"{x:.{digits - 1}e}"
        return f"{x:.{digits}g}"
    return str(x)


def markdown_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        lines.append("| " + " | ".join(fmt(c) for c in r) + " |")
    return "\n".join(lines)


def svg_plot(series, title, xlabel, ylabel, logx=False, logy=False, width=560, height=340):
    """A line chart as inline SVG. series: [(label, xs, ys)]; non-finite points are skipped."""
    tx = (lambda v: math.log10(v)) if logx else (lambda v: v)
    ty = (lambda v: math.log10(v)) if logy else (lambda v: v)
    pts = []
    for label, xs, ys in series:
        p = [(tx(x), ty(y)) for x, y in zip(xs, ys)
             if x is not None and y is not None and math.isfinite(x) and math.isfinite(y)
             and (not logx or x > 0) and (not logy or y > 0)]
        pts.append((label, p))
    allp = [q for _, p in pts for q in p]
    if not allp:
        return "<p>(no finite points)</p>"
    x0, x1 = min(q[0] for q in allp), max(q[0] for q in allp)
    y0, y1 = min(q[1] for q in allp), max(q[1] for q in allp)
    if x1 == x0:
        x1 = x0 + 1
    if y1 == y0:
        y1 = y0 + 1
    ml, mr, mt, mb = 80, 150, 30, 45
    W, H = width - ml - mr, height - mt - mb
    sx = lambda v: ml + (v - x0) / (x1 - x0) * W
    sy = lambda v: mt + H - (v - y0) / (y1 - y0) * H
    colors = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">',
           f'<text x="{ml}" y="18" font-size="13">{html.escape(title)}</text>',
           f'<rect x="{ml}" y="{mt}" width="{W}" height="{H}" fill="none" stroke="#888"/>']
    for i in range(5):
        fx = x0 + (x1 - x0) * i / 4
        fy = y0 + (y1 - y0) * i / 4
        lx = f"{10 ** fx:.3g}" if logx else f"{fx:.3g}"
        ly = f"{10 ** fy:.3g}" if logy else f"{fy:.3g}"
        out.append(f'<text x="{sx(fx):.1f}" y="{mt + H + 14}" text-anchor="middle">{lx}</text>')
        out.append(f'<text x="{ml - 4}" y="{sy(fy) + 4:.1f}" text-anchor="end">{ly}</text>')
    out.append(f'<text x="{ml + W / 2}" y="{height - 8}" text-anchor="middle">{html.escape(xlabel)}</text>')
    out.append(f'<text x="12" y="{mt + H / 2}" transform="rotate(-90 12 {mt + H / 2})" text-anchor="middle">{html.escape(ylabel)}</text>')
    for i, (label, p) in enumerate(pts):
        c = colors[i % len(colors)]
        if p:
            d = " ".join(f"{sx(a):.1f},{sy(b):.1f}" for a, b in p)
            out.append(f'<polyline fill="none" stroke="{c}" stroke-width="1.5" points="{d}"/>')
            if len(p) < 30:
                for a, b in p:
                    out.append(f'<circle cx="{sx(a):.1f}" cy="{sy(b):.1f}" r="2.5" fill="{c}"/>')
        out.append(f'<text x="{ml + W + 8}" y="{mt + 12 + 14 * i}" fill="{c}">{html.escape(label)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def svg_heatmap(xs, ys, grid, title, xlabel, ylabel, path=None, marks=(), width=560, height=400):
    """A grid of values (grid[i][j] at x = xs[j], y = ys[i]) as colored cells on a log scale,
    with an optional path (xs, ys) and labelled marks [(x, y, label)] drawn on top."""
    vals = [v for row in grid for v in row if v is not None and math.isfinite(v) and v > 0]
    if not vals:
        return "<p>(no finite points)</p>"
    lo, hi = math.log10(min(vals)), math.log10(max(vals))
    hi = hi if hi > lo else lo + 1
    ml, mr, mt, mb = 80, 110, 30, 45
    W, H = width - ml - mr, height - mt - mb
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    x1 = x1 if x1 > x0 else x0 + 1
    y1 = y1 if y1 > y0 else y0 + 1
    sx = lambda v: ml + (v - x0) / (x1 - x0) * W
    sy = lambda v: mt + H - (v - y0) / (y1 - y0) * H
    cw, ch = W / max(1, len(xs) - 1), H / max(1, len(ys) - 1)

    def color(v):
        if v is None or not math.isfinite(v) or v <= 0:
            return "#ffffff"
        t = (math.log10(v) - lo) / (hi - lo)  # 0: low loss (dark blue) .. 1: high (yellow)
        r, g, b = int(30 + 225 * t), int(40 + 190 * t ** 0.7), int(120 * (1 - t) + 40)
        return f"rgb({r},{g},{b})"
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">',
           f'<text x="{ml}" y="18" font-size="13">{html.escape(title)}</text>']
    for i, yv in enumerate(ys):
        for j, xv in enumerate(xs):
            out.append(f'<rect x="{sx(xv) - cw / 2:.1f}" y="{sy(yv) - ch / 2:.1f}" width="{cw + 0.5:.1f}" '
                       f'height="{ch + 0.5:.1f}" fill="{color(grid[i][j])}"/>')
    for i in range(5):
        fx, fy = x0 + (x1 - x0) * i / 4, y0 + (y1 - y0) * i / 4
        out.append(f'<text x="{sx(fx):.1f}" y="{mt + H + ch / 2 + 14:.1f}" text-anchor="middle">{fx:.3g}</text>')
        out.append(f'<text x="{ml - cw / 2 - 4:.1f}" y="{sy(fy) + 4:.1f}" text-anchor="end">{fy:.3g}</text>')
    out.append(f'<text x="{ml + W / 2}" y="{height - 6}" text-anchor="middle">{html.escape(xlabel)}</text>')
    out.append(f'<text x="12" y="{mt + H / 2}" transform="rotate(-90 12 {mt + H / 2})" text-anchor="middle">{html.escape(ylabel)}</text>')
    for k in range(6):  # the color key
        v = lo + (hi - lo) * k / 5
        out.append(f'<rect x="{ml + W + 30}" y="{mt + 16 * k}" width="12" height="12" fill="{color(10 ** v)}"/>'
                   f'<text x="{ml + W + 46}" y="{mt + 16 * k + 10}">{10 ** v:.3g}</text>')
    if path:
        d = " ".join(f"{sx(a):.1f},{sy(b):.1f}" for a, b in zip(*path))
        out.append(f'<polyline fill="none" stroke="#ffffff" stroke-width="2" points="{d}"/>')
        for a, b in zip(*path):
            out.append(f'<circle cx="{sx(a):.1f}" cy="{sy(b):.1f}" r="2.5" fill="#ff3030"/>')
    for a, b, label in marks:
        out.append(f'<circle cx="{sx(a):.1f}" cy="{sy(b):.1f}" r="4" fill="#000" stroke="#fff"/>'
                   f'<text x="{sx(a) + 6:.1f}" y="{sy(b) - 6:.1f}" fill="#fff">{html.escape(label)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def write_page(ctx, title, quote, claim, check, result, table_md, svgs=(), links=()):
    """Writes out/claim.md (the table) and out/claim.html (quote, figure, table, verdict)."""
    verdict = "PASS" if result.passed else "FAIL"
    md = [f"# {title}", "", f"> {quote}", "", f"**Claim.** {claim}", "", f"**Check.** {check}", "",
          f"**Result ({verdict}{', quick form' if ctx.quick else ''}).** {result.summary}", "", table_md, ""]
    with open(os.path.join(ctx.out, "claim.md"), "w") as f:
        f.write("\n".join(md))
    body = [f"<h1>{html.escape(title)}</h1>", f"<blockquote>{html.escape(quote)}</blockquote>",
            f"<p><b>Claim.</b> {html.escape(claim)}</p>", f"<p><b>Check.</b> {html.escape(check)}</p>",
            f'<p><b>Result: <span style="color:{"green" if result.passed else "red"}">{verdict}</span></b>'
            f'{" (quick form)" if ctx.quick else ""}. {html.escape(result.summary)}</p>']
    body += [f"<div>{s}</div>" for s in svgs]
    body.append(markdown_to_html_table(table_md))
    if links:
        body.append("<p>Runs: " + ", ".join(f'<a href="{html.escape(os.path.relpath(h, ctx.out))}">{html.escape(t)}</a>'
                                             for t, h in links) + "</p>")
    body.append("<details><summary>commands</summary><pre>" + html.escape("\n".join(ctx.log_lines)) + "</pre></details>")
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>" + html.escape(title) +
            "</title><style>body{font-family:sans-serif;max-width:900px;margin:2em auto}"
            "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}"
            "blockquote{color:#444;border-left:3px solid #ccc;padding-left:1em}</style></head><body>"
            + "\n".join(body) + "</body></html>")
    with open(os.path.join(ctx.out, "claim.html"), "w") as f:
        f.write(page)


def markdown_to_html_table(md):
    """The tables of md as HTML tables, its other paragraphs as <p> (blocks split at blank lines)."""
    out = []
    for block in md.strip().split("\n\n"):
        lines = [l for l in block.strip().splitlines() if l.startswith("|")]
        if len(lines) < 2:
            if block.strip():
                out.append(f"<p>{html.escape(block.strip())}</p>")
            continue
        cells = lambda l: [c.strip() for c in l.strip().strip("|").split("|")]
        out.append("<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in cells(lines[0])) + "</tr>")
        for l in lines[2:]:
            out.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells(l)) + "</tr>")
        out.append("</table>")
    return "\n".join(out)


def loglog_slope(xs, ys):
    lx = [math.log(x) for x in xs]
    ly = [math.log(y) for y in ys]
    n = len(lx)
    mx, my = sum(lx) / n, sum(ly) / n
    sxx = sum((a - mx) ** 2 for a in lx)
    sxy = sum((a - mx) * (b - my) for a, b in zip(lx, ly))
    return sxy / sxx
