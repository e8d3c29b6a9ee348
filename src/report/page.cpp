// The report page: HTML, CSS and the script that draws the panels from the embedded data
// (report.hpp, docs/report.md). Charts: dygraphs, inlined from Debian's libjs-dygraphs.
#include <algorithm>
#include <cctype>
#include <string_view>

#include "descent/error.hpp"
#include "descent/io/atomic_file.hpp"
#include "descent/report/report.hpp"
#include "descent/version.hpp"
#include "page_shell.hpp"

namespace descent::report {
namespace {

namespace fs = std::filesystem;

// Every request is refused: the page must work from its own bytes (no network, no file).
constexpr std::string_view kPolicy =
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:";

constexpr std::string_view kStyle = R"CSS(
:root { --fg: #1d2330; --muted: #5b6475; --line: #d9dee7; --card: #ffffff; --bg: #f4f6f9; --accent: #1f5fbf; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg);
       font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
header { background: #1d2330; color: #fff; padding: 18px 28px; }
header h1 { margin: 0; font-size: 22px; font-weight: 600; }
header p { margin: 4px 0 0; color: #b9c2d3; font-size: 13px; word-break: break-all; }
main { max-width: 1480px; margin: 0 auto; padding: 16px 24px 40px; }
section { background: var(--card); border: 1px solid var(--line); border-radius: 8px; margin: 16px 0; padding: 14px 18px; }
section > h2 { margin: 0 0 4px; font-size: 17px; }
section > p.note { margin: 0 0 10px; color: var(--muted); font-size: 13px; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(560px, 1fr)); gap: 14px 22px; }
figure { margin: 0; min-width: 0; }
figcaption { font-weight: 600; margin: 4px 0 2px; }
.chart { width: 100%; height: 300px; }
.chart.heat { height: 380px; position: relative; }
.chart.heat canvas { display: block; }
.verdict { border-left: 4px solid #7a4fbf; background: #f3eefb; padding: 8px 12px; margin: 10px 0 4px; }
label.toggle { font-size: 12px; color: var(--muted); margin-left: 10px; font-weight: 400; cursor: pointer; }
.legend { min-height: 1.6em; font-size: 12px; color: var(--muted); }
.legend .dygraph-legend-line { bottom: .4ex; }
table { border-collapse: collapse; font-size: 13px; font-variant-numeric: tabular-nums; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 12px 4px 0; text-align: left; vertical-align: top; }
th { color: var(--muted); font-weight: 500; }
td.num { text-align: right; }
.summary { display: flex; flex-wrap: wrap; gap: 14px; margin: 8px 0 4px; }
.stat { border: 1px solid var(--line); border-radius: 6px; padding: 8px 14px; min-width: 150px; }
.stat b { display: block; font-size: 22px; font-weight: 600; }
.stat span { color: var(--muted); font-size: 12px; }
.decision { border-left: 4px solid var(--accent); background: #eef3fb; padding: 8px 12px; margin: 10px 0 4px; }
pre { background: #f7f8fa; border: 1px solid var(--line); border-radius: 6px; padding: 10px; overflow: auto;
      font-size: 12px; max-height: 520px; margin: 6px 0; }
details summary { cursor: pointer; font-weight: 600; margin: 6px 0; }
.run-name { font-weight: 600; }
footer { color: var(--muted); font-size: 12px; max-width: 1480px; margin: 0 auto; padding: 0 24px 30px; }
)CSS";

// The page's own part of the script: detail::page puts it after the shared helpers
// (page_shell.hpp, kPageHelpers) inside one function.
constexpr std::string_view kScript = R"JS(

  const runs = data.runs;
  // The curvature records come as columns (docs/report.md); the panels read them as records.
  runs.forEach(function (r) {
    const c = r.curvature;
    if (!c || !Array.isArray(c.step)) return;
    const fields = Object.keys(c).filter(function (k) { return Array.isArray(c[k]); });
    c.records = c.step.map(function (_, i) { const o = {}; fields.forEach(function (k) { o[k] = c[k][i]; }); return o; });
  });
  const overlay = runs.length > 1;
  // Unique display names: the folder name, or the whole path where two folders share it.
  runs.forEach(function (r) { r.label = runs.filter(function (o) { return o.name === r.name; }).length > 1 ? r.dir : r.name; });

  function pct(v) { return v === null || v === undefined ? null : 100 * v; }
  function name(run, what) { return overlay ? run.label + ': ' + what : what; }
  function shade(color, k) { // the run's color, lighter for k > 0 (secondary series)
    const n = parseInt(color.slice(1), 16), r = n >> 16, g = (n >> 8) & 255, b = n & 255;
    const m = function (c) { return Math.round(c + (255 - c) * 0.45 * k); };
    return '#' + ((1 << 24) + (m(r) << 16) + (m(g) << 8) + m(b)).toString(16).slice(1);
  }

  // Dashed vertical lines with a label at data x (dygraphs' underlay): marks = [{x, label}].
  function marks(list) {
    return function (ctx, area, g) {
      list.forEach(function (m) {
        const px = g.toDomXCoord(m.x);
        if (!(px >= area.x - 0.5 && px <= area.x + area.w + 0.5)) return;
        ctx.save();
        ctx.strokeStyle = '#5b6475'; ctx.setLineDash([5, 4]); ctx.lineWidth = 1.2;
        ctx.beginPath(); ctx.moveTo(px, area.y); ctx.lineTo(px, area.y + area.h); ctx.stroke();
        ctx.fillStyle = '#1d2330'; ctx.font = '12px system-ui, sans-serif';
        ctx.fillText(m.label, Math.min(px + 4, area.x + area.w - ctx.measureText(m.label).width - 2), area.y + 14);
        ctx.restore();
      });
    };
  }

  // A dygraphs plotter: each point as a dot with a vertical bar from its band's low to high
  // (the band of customBars, [low, value, high]), no line between points.
  function errorBarPlotter(e) {
    const ctx = e.drawingContext, a = e.plotArea;
    ctx.save();
    ctx.strokeStyle = e.color; ctx.fillStyle = e.color; ctx.lineWidth = 1.5;
    e.points.forEach(function (p) {
      if (!isFinite(p.canvasy)) return;
      const top = isFinite(p.y_top) ? a.h * p.y_top + a.y : p.canvasy, bottom = isFinite(p.y_bottom) ? a.h * p.y_bottom + a.y : p.canvasy;
      ctx.beginPath();
      ctx.moveTo(p.canvasx, top); ctx.lineTo(p.canvasx, bottom);
      ctx.moveTo(p.canvasx - 5, top); ctx.lineTo(p.canvasx + 5, top);
      ctx.moveTo(p.canvasx - 5, bottom); ctx.lineTo(p.canvasx + 5, bottom);
      ctx.stroke();
      ctx.beginPath(); ctx.arc(p.canvasx, p.canvasy, 4, 0, 2 * Math.PI); ctx.fill();
    });
    ctx.restore();
  }

  // A chart of series {label, x[], y[] (numbers, or [min, mean, max] for a band), color,
  // dash, points}, merged on their x values; hover shows the values, drag zooms, double-click
  // resets.
  function chart(parent, title, series, opts) {
    series = series.filter(function (s) {
      return s.y.some(function (v) { const m = Array.isArray(v) ? v[1] : v; return m !== null && m !== undefined && (!opts.log || m > 0); });
    });
    const box = el('div', { class: 'chart' }), legend = el('div', { class: 'legend' });
    parent.append(el('figure', {}, [el('figcaption', {}, [title]), box, legend]));
    if (!series.length) { box.style.height = 'auto'; box.append(el('p', { class: 'note' }, ['no data'])); return null; }
    const index = new Map();
    series.forEach(function (s) { s.x.forEach(function (x) { if (x !== null && !(opts.xlog && !(x > 0)) && !index.has(x)) index.set(x, 0); }); });
    const xs = Array.from(index.keys()).sort(function (a, b) { return a - b; });
    xs.forEach(function (x, i) { index.set(x, i); });
    const rows = xs.map(function (x) { const r = new Array(series.length + 1).fill(null); r[0] = x; return r; });
    // Log scales: values <= 0 have no place on them (left out; a band's low end raised to its value).
    const keep = function (v) { return v !== null && v !== undefined && (!opts.log || v > 0); };
    series.forEach(function (s, j) {
      s.x.forEach(function (x, i) {
        let y = s.y[i];
        if (x === null || (opts.xlog && !(x > 0)) || y === null || y === undefined) return;
        if (Array.isArray(y)) {
          if (!keep(y[1])) return;
          y = [keep(y[0]) ? y[0] : y[1], y[1], keep(y[2]) ? y[2] : y[1]];
        } else if (!keep(y)) {
          return;
        }
        if (Array.isArray(y)) { if (y[1] !== null) rows[index.get(x)][j + 1] = y; }
        else rows[index.get(x)][j + 1] = [y, y, y];
      });
    });
    const per = {};
    series.forEach(function (s) {
      per[s.label] = { strokeWidth: s.width !== undefined ? s.width : 1.6, drawPoints: !!s.points, pointSize: s.pointSize || 2.5,
                       strokePattern: s.dash ? [6, 3] : null };
      if (s.errorBars) per[s.label].plotter = errorBarPlotter;
    });
    const compact = function (v) {  // axis labels of log scales: 1e-5, not 1.0000e-5
      const a = Math.abs(v);
      return v === 0 ? '0' : a >= 1e5 || a < 1e-3 ? v.toExponential(0) : String(+v.toPrecision(3));
    };
    const integers = function (v) { return Number.isInteger(v) ? String(v) : ''; };
    check.charts++;
    const o = {
      labels: [opts.xlabel].concat(series.map(function (s) { return s.label; })),
      colors: series.map(function (s) { return s.color; }),
      series: per, customBars: true, connectSeparatedPoints: true, fillAlpha: 0.22,
      xlabel: opts.xlabel, ylabel: opts.ylabel, logscale: !!opts.log,
      labelsDiv: legend, legend: 'always', labelsKMB: false, digitsAfterDecimal: 4,
      axes: { x: { axisLabelWidth: 60, logscale: !!opts.xlog },
              y: { axisLabelWidth: 64 } },
      yRangePad: 6,
      gridLineColor: '#e3e7ee', axisLineColor: '#9aa3b2',
      xLabelHeight: 16, yLabelWidth: 16, rightGap: 12
    };
    if (opts.marks) o.underlayCallback = marks(opts.marks);
    if (opts.log) o.axes.y.axisLabelFormatter = compact;
    if (opts.xlog) o.axes.x.axisLabelFormatter = compact;
    if (opts.integerX) o.axes.x.axisLabelFormatter = integers;
    if (opts.xpad && !opts.xlog) o.xRangePad = opts.xpad;  // room for the dots at either end (dygraphs 2.2 loses a log x axis with it)
    const g = new Dygraph(box, rows, o);
    drawn(box, title);
    return g;
  }

  // Train and validation figures of the eval and epoch records, by step (an epoch record
  // replaces an eval record at the same step).
  function curves(run) {
    const byStep = new Map();
    run.evals.concat(run.epochs).forEach(function (r) { byStep.set(r.step, r); });
    return Array.from(byStep.values()).sort(function (a, b) { return a.step - b.step; });
  }
  function col(records, field, f) { return records.map(function (r) { const v = r[field]; return v === undefined ? null : (f ? f(v) : v); }); }
  function band(s, field, f) {
    f = f || function (v) { return v; };
    const lo = s[field].min || s[field].mean, hi = s[field].max || s[field].mean;  // buckets of one: mean only
    return s[field].mean.map(function (m, i) {
      return m === null ? null : [f(lo[i]), f(m), f(hi[i])];
    });
  }

  function learningCurves() {
    const s = section('Learning curves',
      'Surrogate loss (mean cross-entropy) and true loss (0-1 error) on the training and validation splits. ' +
      'Minibatch loss: ' + bucketRule() + ' Drag to zoom, double-click to reset; hover for values.');
    const grid = el('div', { class: 'grid' }); s.append(grid);
    [['step', 'step'], ['wall_s', 'wall time (s)']].forEach(function (axis) {
      const lossSeries = [], errorSeries = [];
      runs.forEach(function (run, i) {
        const c = colors[i % colors.length], recs = curves(run);
        const x = axis[0] === 'step' ? col(recs, 'step') : col(recs, 'wall_s');
        const sx = axis[0] === 'step' ? run.steps.step : run.steps.wall_s;
        lossSeries.push({ label: name(run, 'minibatch loss'), x: sx, y: band(run.steps, 'loss'), color: shade(c, 1.3), width: 1 });
        lossSeries.push({ label: name(run, 'train loss'), x: x, y: col(recs, 'train_loss'), color: c, points: true, width: 2 });
        lossSeries.push({ label: name(run, 'validation loss'), x: x, y: col(recs, 'val_loss'), color: c, dash: true, points: true, width: 2 });
        errorSeries.push({ label: name(run, 'train error'), x: x, y: col(recs, 'train_error', pct), color: c, points: true, width: 2 });
        errorSeries.push({ label: name(run, 'validation error'), x: x, y: col(recs, 'val_error', pct), color: c, dash: true, points: true, width: 2 });
      });
      chart(grid, 'Surrogate loss against ' + axis[1], lossSeries, { xlabel: axis[1], ylabel: 'cross-entropy', log: true });
      chart(grid, '0-1 error against ' + axis[1], errorSeries, { xlabel: axis[1], ylabel: '0-1 error (%)' });
    });
  }

  function bucketRule() {
    return runs.map(function (r) {
      const s = r.steps, who = overlay ? r.label + ': ' : '';
      return s.bucket > 1
        ? who + s.count + ' updates in buckets of ' + s.bucket + ' (line: mean, band: min to max per bucket).'
        : who + 'every one of the ' + s.count + ' updates.';
    }).join(' ');
  }

  function figure81() {
    const s = section('Gradient norm and validation error (Fig. 8.1)',
      'Left: the norm of every minibatch gradient and its running mean over the last W updates (' +
      runs.map(function (r) { return (overlay ? r.label + ': ' : '') + 'W = ' + r.steps.window; }).join(', ') +
      '). ' + bucketRule() + ' Right: the validation 0-1 error. As in the book, the gradient norm need not shrink while the error falls. ' + cliffNote());
    const grid = el('div', { class: 'grid' }); s.append(grid);
    const g = [], v = [];
    let anyVal = false;
    runs.forEach(function (run, i) {
      const c = colors[i % colors.length], recs = curves(run);
      g.push({ label: name(run, 'gradient norm'), x: run.steps.step, y: band(run.steps, 'grad_norm'), color: shade(c, 1.3), width: 1 });
      g.push({ label: name(run, 'running mean'), x: run.steps.step, y: run.steps.grad_norm_running, color: c, width: 2.2 });
      if (run.cliffs && run.cliffs.records.length) {
        g.push({ label: name(run, 'cliff'), x: steps(run.cliffs.records), y: field(run.cliffs.records, 'grad_norm'),
                 color: overlay ? c : '#e6550d', width: 0, points: true, pointSize: 4.5 });
      }
      const hasVal = recs.some(function (r) { return r.val_error !== undefined && r.val_error !== null; });
      anyVal = anyVal || hasVal;
      v.push({ label: name(run, hasVal ? 'validation error' : 'train error (no validation split)'), x: col(recs, 'step'),
               y: col(recs, hasVal ? 'val_error' : 'train_error', pct), color: c, points: true, width: 2 });
    });
    chart(grid, 'Gradient norm ||g|| against step', g, { xlabel: 'step', ylabel: '||g||' });
    chart(grid, (anyVal ? 'Validation' : 'Training') + ' 0-1 error against step', v, { xlabel: 'step', ylabel: '0-1 error (%)' });
    cliffTable(s);
  }

  function schedule() {
    const s = section('Learning rate and clipping', 'The learning rate each update used (eps_k of the schedule); ' +
      'gradient clipping counts from the epoch records (docs/metrics.md, clip_count).');
    const grid = el('div', { class: 'grid' }); s.append(grid);
    chart(grid, 'Learning rate against step', runs.map(function (run, i) {
      return { label: name(run, 'learning rate'), x: run.steps.step, y: band(run.steps, 'lr'), color: colors[i % colors.length], width: 2 };
    }), { xlabel: 'step', ylabel: 'learning rate' });
    const clipped = runs.filter(function (r) { return r.epochs.some(function (e) { return e.clip_count > 0; }); });
    if (clipped.length) {
      const series = [];
      runs.forEach(function (run, i) {
        const c = colors[i % colors.length];
        const per = run.epochs.map(function (e, k) { return k ? e.clip_count - run.epochs[k - 1].clip_count : e.clip_count; });
        series.push({ label: name(run, 'clipped steps, total'), x: col(run.epochs, 'epoch'), y: col(run.epochs, 'clip_count'), color: c, points: true, width: 2 });
        series.push({ label: name(run, 'clipped in the epoch'), x: col(run.epochs, 'epoch'), y: per, color: c, dash: true, points: true });
      });
      chart(grid, 'Gradient clipping against epoch', series, { xlabel: 'epoch', ylabel: 'clipped updates' });
    } else {
      grid.append(el('figure', {}, [el('figcaption', {}, ['Gradient clipping']),
        el('p', { class: 'note' }, ['No update was clipped (clip_count stays 0, or no [clip] rule in the config).'])]));
    }
  }

  function summary() {
    const s = section(overlay ? 'Final figures' : 'Result', null);
    runs.forEach(function (run, i) {
      const f = run.final;
      if (overlay) s.append(el('p', { class: 'run-name', style: 'color:' + colors[i % colors.length] }, [run.label + ' (' + run.dir + ')']));
      if (f) {
        const stat = function (v, what) { return el('div', { class: 'stat' }, [el('b', {}, [v]), el('span', {}, [what])]); };
        s.append(el('div', { class: 'summary' }, [
          stat(f.test_accuracy !== undefined && f.test_accuracy !== null ? (100 * f.test_accuracy).toFixed(2) + '%' : '–', 'test accuracy'),
          stat(f.test_loss !== undefined && f.test_loss !== null ? f.test_loss.toFixed(4) : '–', 'test loss (cross-entropy)'),
          stat(f.best_val_error !== undefined && f.best_val_error !== null ? (100 * f.best_val_error).toFixed(2) + '%' : '–', 'best validation error'),
          stat(fmt(f.best_epoch) + ' / ' + fmt(f.epochs), 'best epoch / epochs run'),
          stat(f.wall_s !== undefined && f.wall_s !== null ? f.wall_s.toFixed(1) + ' s' : '–', 'wall time')]));
      }
      s.append(el('div', { class: 'decision' }, [run.decision]));
    });
    const fields = [['test_error', '0-1 error, test', pct], ['test_loss', 'loss, test'], ['test_accuracy', 'accuracy, test', pct],
      ['train_error', '0-1 error, train (best parameters)', pct], ['train_loss', 'loss, train (best parameters)'],
      ['best_val_error', 'best validation 0-1 error', pct], ['best_val_loss', 'best validation loss'],
      ['best_epoch', 'best epoch'], ['epochs', 'epochs run'], ['steps', 'updates'], ['stopped_early', 'stopped early'],
      ['grad_norm_at_stop', 'mean ||g|| of the last epoch'], ['divergences', 'divergences (NaN/Inf met)'], ['cliffs', 'cliffs'],
      ['monitor_seconds', 'monitors\u2019 cost (s)'], ['wall_s', 'wall time (s)']];
    if (runs.some(function (r) { return r.final; })) {
      const head = el('tr', {}, [el('th', {}, ['final record'])].concat(runs.map(function (r) { return el('th', {}, [r.label]); })));
      const body = fields.map(function (f) {
        return el('tr', {}, [el('td', {}, [f[1] + (f[2] ? ' (%)' : '')])].concat(runs.map(function (r) {
          const v = r.final ? r.final[f[0]] : undefined;
          return el('td', { class: 'num' }, [typeof v === 'boolean' ? (v ? 'yes' : 'no') : fmt(f[2] && typeof v === 'number' ? f[2](v) : v)]);
        })));
      });
      s.append(el('details', {}, [el('summary', {}, ['All final figures']), el('table', {}, [head].concat(body))]));
    }
  }

  function divergences() {
    const rows = [];
    runs.forEach(function (run) { run.divergences.forEach(function (d) { rows.push([run.label, d.step, d.epoch, d.policy, d.loss, d.lr_scale]); }); });
    if (!rows.length) return;
    const s = section('Divergences', 'NaN or Inf losses or gradients caught before the update (docs/reliability.md).');
    s.append(el('table', {}, [el('tr', {}, ['run', 'step', 'epoch', 'policy', 'loss', 'lr scale'].map(function (h) { return el('th', {}, [h]); }))]
      .concat(rows.map(function (r) { return el('tr', {}, r.map(function (v) { return el('td', {}, [fmt(v)]); })); }))));
  }

  // Panels for RUN_DIR/diagnostics/NAME.json, by NAME; a file without one is listed.
  const diagnosticPanels = {};
  // ---- small pieces shared by the panels below ----------------------------------------
  function isNum(v) { return typeof v === 'number' && isFinite(v); }
  function hue(k, n) {  // n distinguishable colors (hex), for one series per parameter or matrix
    const h = (210 + k * 360 / Math.max(n, 1)) % 360, s = 0.68, l = 0.44, a = s * Math.min(l, 1 - l);
    const f = function (m) { const t = (m + h / 30) % 12; return Math.round(255 * (l - a * Math.max(-1, Math.min(t - 3, 9 - t, 1)))); };
    return '#' + ((1 << 24) + (f(0) << 16) + (f(8) << 8) + f(4)).toString(16).slice(1);
  }
  function table(head, rows) {
    return el('table', {}, [el('tr', {}, head.map(function (h) { return el('th', {}, [h]); }))].concat(
      rows.map(function (r) { return el('tr', {}, r.map(function (v) { return el('td', { class: typeof v === 'number' ? 'num' : '' }, [fmt(v)]); })); })));
  }
  function stats(parent, items) {  // items: [[value text, what], ...]
    parent.append(el('div', { class: 'summary' }, items.map(function (it) {
      return el('div', { class: 'stat' }, [el('b', {}, [it[0]]), el('span', {}, [it[1]])]);
    })));
  }
  function rawData(parent, what, value) {
    parent.append(el('details', {}, [el('summary', {}, [what]), el('pre', {}, [JSON.stringify(value, null, 1).slice(0, 20000)])]));
  }
  function runTitle(title, run) { return overlay ? title + ' (' + run.label + ')' : title; }
  function steps(records) { return records.map(function (r) { return r.step; }); }
  function field(records, f) { return records.map(function (r) { return isNum(r[f]) ? r[f] : null; }); }
  function constant(xs, v) { return xs.map(function () { return v; }); }

  // ---- heat maps (dygraphs has none): a canvas drawn here --------------------------------
  const ramp = [[68, 1, 84], [65, 68, 135], [42, 120, 142], [34, 168, 132], [122, 209, 81], [253, 231, 37]];
  function rampColor(t) {
    t = Math.max(0, Math.min(1, t));
    const x = t * (ramp.length - 1), i = Math.min(ramp.length - 2, Math.floor(x)), f = x - i;
    return 'rgb(' + ramp[i].map(function (v, k) { return Math.round(v + (ramp[i + 1][k] - v) * f); }).join(',') + ')';
  }
  function ticks(lo, hi, n) {
    if (!(hi > lo)) return [lo];
    const span = (hi - lo) / Math.max(1, n), p = Math.pow(10, Math.floor(Math.log10(span))), m = span / p;
    const step = (m < 1.5 ? 1 : m < 3 ? 2 : m < 7 ? 5 : 10) * p, out = [];
    for (let v = Math.ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-9; v += step) out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
    return out;
  }
  function tickText(v) { return Math.abs(v) >= 1e5 || (Math.abs(v) < 1e-3 && v !== 0) ? v.toExponential(0) : String(+v.toPrecision(6)); }
  function edges(v) {  // cell boundaries around grid values: the midpoints, half a gap outside
    if (v.length === 1) return [v[0] - 0.5, v[0] + 0.5];
    const e = [v[0] - (v[1] - v[0]) / 2];
    for (let i = 0; i + 1 < v.length; i++) e.push((v[i] + v[i + 1]) / 2);
    e.push(v[v.length - 1] + (v[v.length - 1] - v[v.length - 2]) / 2);
    return e;
  }
  // z[j][i] at (xs[i], ys[j]) (both increasing) as colored cells; opts: xlabel, ylabel, zlabel,
  // log (log10 color scale; values <= 0 gray), contours (levels), draw(ctx, X, Y) on top.
  // Hover writes the cell's values in the line under it.
  function heatmap(parent, title, xs, ys, z, opts) {
    const box = el('div', { class: 'chart heat' }), legend = el('div', { class: 'legend' });
    parent.append(el('figure', {}, [el('figcaption', {}, [title]), box, legend]));
    const ok = function (v) { return isNum(v) && (!opts.log || v > 0); };
    const f = opts.log ? Math.log10 : function (v) { return v; };
    let lo = Infinity, hi = -Infinity;
    z.forEach(function (row) { (row || []).forEach(function (v) { if (ok(v)) { lo = Math.min(lo, f(v)); hi = Math.max(hi, f(v)); } }); });
    if (!(hi >= lo) || !xs.length || !ys.length) { box.style.height = 'auto'; box.append(el('p', { class: 'note' }, ['no data'])); return; }
    if (hi === lo) { lo -= 0.5; hi += 0.5; }
    check.charts++;
    const width = box.clientWidth || 600, height = box.clientHeight || 380, dpr = window.devicePixelRatio || 1;
    const canvas = el('canvas', { width: Math.round(width * dpr), height: Math.round(height * dpr) });
    canvas.style.width = width + 'px'; canvas.style.height = height + 'px';
    box.append(canvas);
    const ctx = canvas.getContext('2d');
    ctx.scale(dpr, dpr);
    const area = { x: 74, y: 8, w: Math.max(40, width - 74 - 92), h: Math.max(40, height - 8 - 46) };
    const ex = edges(xs), ey = edges(ys);
    const X = function (v) { return area.x + (v - ex[0]) / (ex[ex.length - 1] - ex[0]) * area.w; };
    const Y = function (v) { return area.y + area.h - (v - ey[0]) / (ey[ey.length - 1] - ey[0]) * area.h; };
    ctx.save();
    ctx.beginPath(); ctx.rect(area.x, area.y, area.w, area.h); ctx.clip();
    for (let j = 0; j < ys.length; j++) {
      for (let i = 0; i < xs.length; i++) {
        const v = (z[j] || [])[i];
        ctx.fillStyle = ok(v) ? rampColor((f(v) - lo) / (hi - lo)) : '#d4d7dd';
        const x0 = X(ex[i]), x1 = X(ex[i + 1]), y0 = Y(ey[j + 1]), y1 = Y(ey[j]);
        ctx.fillRect(Math.floor(x0), Math.floor(y0), Math.ceil(x1 - x0) + 1, Math.ceil(y1 - y0) + 1);
      }
    }
    if (opts.contours && xs.length > 1 && ys.length > 1) {  // marching squares through the cell centers
      ctx.strokeStyle = 'rgba(255,255,255,0.55)'; ctx.lineWidth = 1;
      for (let k = 1; k <= opts.contours; k++) {
        const level = lo + (hi - lo) * k / (opts.contours + 1);
        ctx.beginPath();
        for (let j = 0; j + 1 < ys.length; j++) {
          for (let i = 0; i + 1 < xs.length; i++) {
            const c = [[i, j], [i + 1, j], [i + 1, j + 1], [i, j + 1]];
            const v = c.map(function (p) { const w = (z[p[1]] || [])[p[0]]; return ok(w) ? f(w) : NaN; });
            if (v.some(isNaN)) continue;
            const cut = [];
            for (let e = 0; e < 4; e++) {
              const a = v[e], b = v[(e + 1) % 4];
              if ((a < level) !== (b < level)) {
                const t = (level - a) / (b - a), p = c[e], q = c[(e + 1) % 4];
                cut.push([X(xs[p[0]] + t * (xs[q[0]] - xs[p[0]])), Y(ys[p[1]] + t * (ys[q[1]] - ys[p[1]]))]);
              }
            }
            for (let e = 0; e + 1 < cut.length; e += 2) { ctx.moveTo(cut[e][0], cut[e][1]); ctx.lineTo(cut[e + 1][0], cut[e + 1][1]); }
          }
        }
        ctx.stroke();
      }
    }
    if (opts.draw) opts.draw(ctx, X, Y);
    ctx.restore();
    // Axes, ticks and labels.
    ctx.fillStyle = '#1d2330'; ctx.strokeStyle = '#9aa3b2'; ctx.font = '12px system-ui, sans-serif';
    ctx.strokeRect(area.x, area.y, area.w, area.h);
    ctx.textAlign = 'center';
    ticks(ex[0], ex[ex.length - 1], Math.max(2, Math.floor(area.w / 90))).forEach(function (t) {
      ctx.fillText(tickText(t), X(t), area.y + area.h + 15);
      ctx.beginPath(); ctx.moveTo(X(t), area.y + area.h); ctx.lineTo(X(t), area.y + area.h + 4); ctx.stroke();
    });
    ctx.fillText(opts.xlabel, area.x + area.w / 2, area.y + area.h + 36);
    ctx.textAlign = 'right';
    ticks(ey[0], ey[ey.length - 1], Math.max(2, Math.floor(area.h / 50))).forEach(function (t) {
      ctx.fillText(tickText(t), area.x - 7, Y(t) + 4);
      ctx.beginPath(); ctx.moveTo(area.x - 4, Y(t)); ctx.lineTo(area.x, Y(t)); ctx.stroke();
    });
    ctx.save(); ctx.translate(16, area.y + area.h / 2); ctx.rotate(-Math.PI / 2); ctx.textAlign = 'center';
    ctx.fillText(opts.ylabel, 0, 0); ctx.restore();
    // The color bar.
    const bx = area.x + area.w + 14, bw = 14;
    for (let p = 0; p < area.h; p++) { ctx.fillStyle = rampColor(1 - p / area.h); ctx.fillRect(bx, area.y + p, bw, 1.5); }
    ctx.strokeRect(bx, area.y, bw, area.h);
    ctx.fillStyle = '#1d2330'; ctx.textAlign = 'left';
    // Log scales: ticks at powers of ten when the range spans one, else at round values.
    let barTicks = ticks(lo, hi, 5).map(function (t) { return [t, t]; });
    if (opts.log) {
      barTicks = [];
      if (hi - lo >= 1) {
        const every = Math.max(1, Math.ceil((hi - lo) / 6));
        for (let e = Math.floor(lo); e <= hi; e += every) {
          (hi - lo < 3 ? [1, 2, 5] : [1]).forEach(function (m) {
            const t = e + Math.log10(m);
            if (t >= lo && t <= hi) barTicks.push([t, m * Math.pow(10, e)]);
          });
        }
      } else {
        ticks(Math.pow(10, lo), Math.pow(10, hi), 4).forEach(function (v) { if (v > 0) barTicks.push([Math.log10(v), v]); });
      }
    }
    barTicks.forEach(function (t) {
      const py = area.y + area.h - (t[0] - lo) / (hi - lo) * area.h;
      ctx.fillText(tickText(t[1]), bx + bw + 4, py + 4);
    });
    legend.textContent = opts.zlabel + (opts.log ? ' (log color scale)' : '') + '; hover for values.';
    canvas.addEventListener('mousemove', function (e) {
      const r = canvas.getBoundingClientRect(), px = e.clientX - r.left, py = e.clientY - r.top;
      const i = ex.findIndex(function (v, k) { return k + 1 < ex.length && px >= X(v) && px < X(ex[k + 1]); });
      const j = ey.findIndex(function (v, k) { return k + 1 < ey.length && py <= Y(v) && py > Y(ey[k + 1]); });
      if (i < 0 || j < 0) return;
      legend.textContent = opts.xlabel + ' ' + fmt(xs[i]) + ', ' + opts.ylabel + ' ' + fmt(ys[j]) + ': ' + opts.zlabel + ' ' + fmt((z[j] || [])[i]);
    });
    // Drawn: colored pixels inside the plot area (the color bar beside it does not count).
    drawn(box, title, { x: Math.ceil((area.x + 1) * dpr), y: Math.ceil((area.y + 1) * dpr),
                        w: Math.floor((area.w - 2) * dpr), h: Math.floor((area.h - 2) * dpr) });
  }
  function dot(ctx, x, y, label, shape) {
    ctx.save();
    ctx.fillStyle = '#ffffff'; ctx.strokeStyle = '#1d2330'; ctx.lineWidth = 2;
    ctx.beginPath();
    if (shape === 'star') {
      for (let k = 0; k < 10; k++) {
        const r = k % 2 ? 3.5 : 8, a = -Math.PI / 2 + k * Math.PI / 5;
        ctx.lineTo(x + r * Math.cos(a), y + r * Math.sin(a));
      }
      ctx.closePath();
    } else {
      ctx.arc(x, y, 5.5, 0, 2 * Math.PI);
    }
    ctx.fill(); ctx.stroke();
    ctx.font = 'bold 13px system-ui, sans-serif'; ctx.lineWidth = 3; ctx.strokeStyle = '#ffffff';
    ctx.strokeText(label, x + 10, y - 8); ctx.fillStyle = '#1d2330'; ctx.fillText(label, x + 10, y - 8);
    ctx.restore();
  }

  // ---- the run's header and machine ----------------------------------------------------
  function flatten(value, prefix, out) {
    if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
      Object.keys(value).forEach(function (k) { flatten(value[k], prefix ? prefix + '.' + k : k, out); });
    } else {
      out[prefix] = Array.isArray(value) ? JSON.stringify(value) : value;
    }
    return out;
  }
  function header() {
    const have = runs.filter(function (r) { return r.header || r.run_info; });
    if (!have.length) return;
    const s = section('Run and machine', 'The header record of metrics.jsonl (the first line: version, config digest, ' +
      'examples per split, batch size, updates per epoch, threads, the machine) and run.json.');
    const rows = {}, order = [];
    runs.forEach(function (run, i) {
      const flat = {};
      if (run.header) {
        flatten(run.header, '', flat);
        ['step', 'epoch', 'wall_s'].forEach(function (k) { delete flat[k]; });  // the common fields say nothing here
      }
      if (run.run_info) flatten(run.run_info, 'run.json', flat);
      Object.keys(flat).forEach(function (k) { if (!rows[k]) { rows[k] = []; order.push(k); } rows[k][i] = flat[k]; });
    });
    s.append(table(['field'].concat(runs.map(function (r) { return r.label; })),
      order.map(function (k) { return [k].concat(runs.map(function (r, i) { const v = rows[k][i]; return v === undefined ? null : typeof v === 'boolean' ? String(v) : v; })); })));
  }

  // ---- the monitors' records -------------------------------------------------------------
  function thinned(what, part) {
    return part.stride > 1 ? ' ' + what + ': ' + part.count + ' records, one in ' + part.stride + ' drawn.' : '';
  }
  function curvature() {
    const have = runs.filter(function (r) { return r.curvature && r.curvature.records.length; });
    if (!have.length) return;
    const s = section('Curvature along the path (section 8.2.1)',
      'On the step\u2019s minibatch before the update: g\u1d40g and g\u1d40Hg, the ratio \u03b5 g\u1d40Hg / (2 g\u1d40g) (above 1 the ' +
      'second-order term outweighs the first and the quadratic model predicts a rise, eq. 8.10), the change eq. 8.10 predicts ' +
      '(\u2212\u03b5 g\u1d40g + \u00bd \u03b5\u00b2 g\u1d40Hg) against the change observed on the same minibatch, and \u03bb_max of the Hessian ' +
      'with the stability limit 2/\u03b5.' + have.map(function (r) { return thinned(r.label, r.curvature); }).join(''));
    const grid = el('div', { class: 'grid' }); s.append(grid);
    const gg = [], ratio = [], change = [], lambda = [];
    let positive = true;
    have.forEach(function (run) {
      const i = runs.indexOf(run), c = colors[i % colors.length], recs = run.curvature.records, x = steps(recs), few = recs.length <= 120;
      field(recs, 'gHg').concat(field(recs, 'gTg')).forEach(function (v) { if (v !== null && v <= 0) positive = false; });
      gg.push({ label: name(run, 'g\u1d40g'), x: x, y: field(recs, 'gTg'), color: c, width: 2 });
      gg.push({ label: name(run, 'g\u1d40Hg'), x: x, y: field(recs, 'gHg'), color: shade(c, 1), dash: true, width: 2 });
      ratio.push({ label: name(run, 'ratio \u03b5 g\u1d40Hg / (2 g\u1d40g)'), x: x, y: field(recs, 'ratio'), color: c, width: few ? 2 : 1.2, points: few });
      change.push({ label: name(run, 'predicted change'), x: x, y: field(recs, 'predicted_change'), color: c, width: 2 });
      change.push({ label: name(run, 'observed change'), x: x, y: field(recs, 'observed_change'), color: shade(c, 1), dash: true, points: few, width: 1.4 });
      if (recs.some(function (r) { return isNum(r.update_predicted_change); })) {
        change.push({ label: name(run, 'predicted for the update made'), x: x, y: field(recs, 'update_predicted_change'), color: '#9467bd', width: 1.4 });
      }
      const lam = recs.filter(function (r) { return isNum(r.lambda_max); });
      if (lam.length) {
        lambda.push({ label: name(run, '\u03bb_max'), x: steps(lam), y: field(lam, 'lambda_max'), color: c, width: 2, points: true });
        lambda.push({ label: name(run, '2/\u03b5 (stability limit)'), x: steps(lam), y: lam.map(function (r) { return isNum(r.lr) && r.lr > 0 ? 2 / r.lr : null; }), color: shade(c, 1), dash: true });
      }
    });
    const allX = [].concat.apply([], have.map(function (r) { return steps(r.curvature.records); }));
    const lo = Math.min.apply(null, allX), hi = Math.max.apply(null, allX);
    chart(grid, 'g\u1d40g and g\u1d40Hg against step', gg, { xlabel: 'step', ylabel: 'g\u1d40g, g\u1d40Hg', log: positive });
    chart(grid, 'Ratio \u03b5 g\u1d40Hg / (2 g\u1d40g) against step', ratio.concat([
      { label: 'ratio 1 (predicted change 0)', x: [lo, hi], y: [1, 1], color: '#7f7f7f', dash: true, width: 1.2 }]), { xlabel: 'step', ylabel: 'ratio' });
    chart(grid, 'Predicted (eq. 8.10) and observed change of the minibatch loss', change, { xlabel: 'step', ylabel: 'change of the loss' });
    if (lambda.length) chart(grid, 'Largest Hessian eigenvalue \u03bb_max against step', lambda, { xlabel: 'step', ylabel: '\u03bb_max', log: true });
  }

  function layers() {
    runs.forEach(function (run) {
      const L = run.layers;
      if (!L || !L.step.length || !L.names.length) return;
      const s = section(runTitle('Per-layer norms', run), 'The norm of each parameter tensor\u2019s gradient (on the step\u2019s minibatch) and of the ' +
        'tensor itself, one series per parameter (' + L.names.length + ').' + thinned('layers', L));
      const grid = el('div', { class: 'grid' }); s.append(grid);
      ['grad_norms', 'weight_norms'].forEach(function (f) {
        const positive = L.names.every(function (n) { return L[f][n].every(function (v) { return v === null || v > 0; }); });
        chart(grid, (f === 'grad_norms' ? 'Gradient norm' : 'Weight norm') + ' per parameter against step', L.names.map(function (n, k) {
          return { label: n, x: L.step, y: L[f][n], color: hue(k, L.names.length), width: 1.6 };
        }), { xlabel: 'step', ylabel: f === 'grad_norms' ? '||\u2207 W||' : '||W||', log: positive });
      });
    });
  }

  function cliffNote() {
    return runs.filter(function (r) { return r.cliffs && r.cliffs.count; }).map(function (r) {
      return (overlay ? r.label + ': ' : '') + r.cliffs.count + ' cliff' + (r.cliffs.count === 1 ? '' : 's') +
        ' (||g|| above ' + (r.cliffs.records[0] && isNum(r.cliffs.records[0].factor) ? r.cliffs.records[0].factor + ' times' : 'a multiple of') +
        ' the running median; marked \u25cf), ' + r.cliffs.clipped + ' clipped.';
    }).join(' ');
  }
  function cliffTable(parent) {
    runs.forEach(function (run) {
      if (!run.cliffs || !run.cliffs.count) return;
      parent.append(el('details', {}, [el('summary', {}, [runTitle('Cliffs: ' + run.cliffs.count + ' (section 8.2.4), ' + run.cliffs.clipped + ' clipped', run)]),
        table(['step', 'epoch', '||g||', 'running median', 'factor', 'clipped'], run.cliffs.records.slice(0, 500).map(function (c) {
          return [c.step, c.epoch, c.grad_norm, c.median, c.factor, c.clipped ? 'yes' : 'no'];
        }))]));
    });
  }

  function recurrent() {
    runs.forEach(function (run) {
      const R = run.recurrent;
      if (!R || !R.records.length) return;
      const recs = R.records;
      const s = section(runTitle('Recurrent gradients (section 8.2.5)', run),
        'Left: ||\u2202L/\u2202h_t|| for every time step t (up the page) at each recorded training step (across), log color scale: ' +
        'vanishing gradients fade towards the first time steps, exploding ones glow there. Right: the spectral radius of each ' +
        'recurrent matrix (per gate) against epoch, and the fitted growth factor of ||\u2202L/\u2202h_t|| per time step (>1 exploding, <1 vanishing).' +
        thinned('recurrent', R));
      const grid = el('div', { class: 'grid' }); s.append(grid);
      const T = Math.max.apply(null, recs.map(function (r) { return r.time_grad_norms.length; }));
      if (T > 0) {
        const ts = []; for (let t = 1; t <= T; t++) ts.push(t);
        const z = ts.map(function (t) { return recs.map(function (r) { const v = r.time_grad_norms[t - 1]; return v === undefined ? null : v; }); });
        heatmap(grid, '||\u2202L/\u2202h_t|| over time steps and training steps', steps(recs), ts, z,
          { xlabel: 'training step', ylabel: 'time step t', zlabel: '||\u2202L/\u2202h_t||', log: true });
      }
      const byEpoch = recs.some(function (r) { return isNum(r.epoch); });
      const x = byEpoch ? field(recs, 'epoch') : steps(recs), xl = byEpoch ? 'epoch' : 'step';
      const keys = [];
      recs.forEach(function (r) { r.matrices.forEach(function (m) { const k = m.name + (m.gate ? ' (' + m.gate + ')' : ''); if (keys.indexOf(k) < 0) keys.push(k); }); });
      const series = keys.map(function (k, j) {
        return { label: 'spectral radius ' + k, x: x, y: recs.map(function (r) {
          const m = r.matrices.find(function (m) { return m.name + (m.gate ? ' (' + m.gate + ')' : '') === k; });
          return m && isNum(m.spectral_radius) ? m.spectral_radius : null; }), color: hue(j, keys.length), width: 2, points: true };
      });
      if (series.length) {
        series.push({ label: 'radius 1', x: [Math.min.apply(null, x), Math.max.apply(null, x)], y: [1, 1], color: '#7f7f7f', dash: true, width: 1.2 });
        chart(grid, 'Spectral radius of the recurrent matrices against ' + xl, series, { xlabel: xl, ylabel: 'spectral radius' });
      }
      chart(grid, 'Growth factor of ||\u2202L/\u2202h_t|| per time step against ' + xl, [
        { label: 'growth factor', x: x, y: field(recs, 'growth_rate'), color: colors[runs.indexOf(run) % colors.length], width: 2, points: true },
        { label: 'factor 1', x: [Math.min.apply(null, x), Math.max.apply(null, x)], y: [1, 1], color: '#7f7f7f', dash: true, width: 1.2 }],
        { xlabel: xl, ylabel: 'factor per time step', log: true });
      const last = recs[recs.length - 1];
      if (last.matrices.length) {
        s.append(el('details', {}, [el('summary', {}, ['Recurrent matrices at ' + xl + ' ' + fmt(byEpoch ? last.epoch : last.step)]),
          table(['matrix', 'gate', 'spectral radius', 'largest singular value', 'smallest singular value'],
            last.matrices.map(function (m) { return [m.name, m.gate || '\u2013', m.spectral_radius, m.singular_max, m.singular_min]; }))]));
      }
    });
  }

  // ---- diagnostics/*.json panels (descent diagnose) --------------------------------------
  function diagSection(run, key, title, note) {
    const s = section(runTitle(title, run), note);
    const d = run.diagnostics[key], where = [];
    ['split', 'examples', 'weights', 'parameters'].forEach(function (k) { if (d[k] !== undefined) where.push(k + ' ' + fmt(d[k])); });
    if (where.length) s.append(el('p', { class: 'note' }, ['diagnostics/' + key + '.json: ' + where.join(', ') + '.']));
    return s;
  }
  function pm(v, e) { return fmt(v) + (isNum(e) ? ' \u00b1 ' + fmt(e, 2) : ''); }

  diagnosticPanels.spectrum = function (run, d) {
    const s = diagSection(run, 'spectrum', 'Hessian spectrum: extreme eigenvalues',
      'Lanczos Ritz values of the Hessian of the mean loss; the bar through each is \u00b1 its residual ||Hv \u2212 \u03bbv|| ' +
      '(a bound on its distance to an eigenvalue). Negative eigenvalues: directions of negative curvature (section 8.2.3).');
    stats(s, [[fmt(d.lambda_max), '\u03bb_max'], [fmt(d.lambda_min), '\u03bb_min'],
      [isNum(d.negative_mass) ? (100 * d.negative_mass).toFixed(1) + '%' : '\u2013', 'negative mass'],
      [isNum(d.zero_mass) ? (100 * d.zero_mass).toFixed(1) + '%' : '\u2013', 'mass near zero'], [fmt(d.lanczos_steps), 'Lanczos steps']]);
    const grid = el('div', { class: 'grid' }); s.append(grid);
    const res = d.residuals || {}, c = colors[runs.indexOf(run) % colors.length];
    [['eigenvalues_top', 'top', 'Largest eigenvalues'], ['eigenvalues_bottom', 'bottom', 'Smallest eigenvalues']].forEach(function (w) {
      const v = d[w[0]] || [], r = res[w[1]] || [];
      chart(grid, w[2] + ' (k-th ' + (w[1] === 'top' ? 'largest' : 'smallest') + ')', [{ label: 'eigenvalue', x: v.map(function (_, k) { return k + 1; }),
        y: v.map(function (l, k) { const e = isNum(r[k]) ? r[k] : 0; return isNum(l) ? [l - e, l, l + e] : null; }), color: c, errorBars: true }],
        { xlabel: 'k', ylabel: 'eigenvalue', integerX: true, xpad: 16 });
    });
    s.append(el('details', {}, [el('summary', {}, ['Eigenvalues and residuals']), table(['k', 'largest', 'residual', 'smallest', 'residual'],
      (d.eigenvalues_top || []).map(function (l, k) { return [k + 1, l, (res.top || [])[k], (d.eigenvalues_bottom || [])[k], (res.bottom || [])[k]]; }))]));
    rawData(s, 'spectrum.json', d);
  };
  diagnosticPanels.density = function (run, d) {
    const s = diagSection(run, 'density', 'Hessian spectral density',
      'Stochastic Lanczos quadrature: the eigenvalue density smoothed by Gaussians of width \u03c3 = ' + fmt(d.sigma) +
      ', averaged over ' + fmt(d.probes) + ' probes.');
    stats(s, [[isNum(d.negative_mass) ? (100 * d.negative_mass).toFixed(1) + '%' : '\u2013', 'negative mass'],
      [isNum(d.zero_mass) ? (100 * d.zero_mass).toFixed(1) + '%' : '\u2013', 'mass near zero'], [pm(d.trace, d.trace_stderr), 'trace (\u00b1 standard error)']]);
    const grid = el('div', { class: 'grid' }); s.append(grid);
    // Between its Gaussians the density falls to ~1e-22 and such notches would take most of a
    // log axis: the chart shows no value below 1e-6 of the maximum (density.json keeps them).
    const density = d.density || [];
    const top = density.reduce(function (m, v) { return isNum(v) && v > m ? v : m; }, 0), floor = 1e-6 * top;
    const g = chart(grid, 'Spectral density against eigenvalue', [{ label: 'density', x: d.grid || [],
      y: density.map(function (v) { return isNum(v) && top > 0 ? Math.max(v, floor) : v; }),
      color: colors[runs.indexOf(run) % colors.length], width: 2 }], { xlabel: 'eigenvalue', ylabel: 'density', log: true });
    if (g) {
      // The smallest value the chart holds and the floor, for the browser test.
      let lowest = Infinity;
      for (let i = 0; i < g.numRows(); i++) {
        const v = g.getValue(i, 1), low = Array.isArray(v) ? v[0] : v;
        if (isNum(low)) lowest = Math.min(lowest, low);
      }
      grid.lastChild.dataset.plottedMin = lowest;
      grid.lastChild.dataset.floor = floor;
      const box = el('input', { type: 'checkbox', checked: '' });
      box.addEventListener('change', function () { g.updateOptions({ logscale: box.checked }); });
      grid.lastChild.querySelector('figcaption').append(el('label', { class: 'toggle' }, [box, ' log scale']));
    }
    rawData(s, 'density.json', d);
  };
  diagnosticPanels.trace = function (run, d) {
    const s = diagSection(run, 'trace', 'Hessian trace', 'Hutchinson\u2019s estimator: the mean of v\u1d40Hv over ' + fmt(d.probes) +
      ' random sign vectors; the standard error is that of the mean.');
    stats(s, [[pm(d.trace, d.stderr), 'trace \u00b1 standard error'], [fmt(d.mean_eigenvalue), 'mean eigenvalue (trace / parameters)'],
      [fmt(d.probes), 'probes']]);
    rawData(s, 'trace.json', d);
  };
  diagnosticPanels.noise = function (run, d) {
    const s = diagSection(run, 'noise', 'Gradient noise against batch size (section 8.1.3)',
      'The standard error of the minibatch gradient falls as 1/\u221am (slope \u22120.5 on log-log axes) while the cost of a ' +
      'minibatch grows as m. Drawn without replacement from N examples it carries the factor \u221a((N \u2212 m)/(N \u2212 1)); the ' +
      'corrected error divides it out. The fitted line has the file\u2019s slope through the mean of the logs of the points it was ' +
      'fitted to (the corrected errors below N when the file has them), where a least-squares line passes; the dashed line has slope \u22120.5.');
    const items = [[fmt(d.slope, 3), 'fitted log-log slope (\u22120.5 expected)']];
    if (isNum(d.slope_uncorrected)) items.push([fmt(d.slope_uncorrected, 3), 'slope without the correction']);
    items.push([fmt(d.noise_scale), 'noise scale tr(\u03a3)/|G|\u00b2']);
    if (isNum(d.trace_sigma)) items.push([fmt(d.trace_sigma), 'tr(\u03a3)']);
    stats(s, items);
    // The chart leaves out m = N (the full gradient: its error is rounding); the table keeps it.
    const N = isNum(d.examples) ? d.examples : Infinity, all = d.batch_sizes || [];
    const sub = function (v) { return Array.isArray(v) ? v.filter(function (_, k) { return !(all[k] >= N); }) : v; };
    const B = sub(all), se = sub(d.stderr || []), corr = Array.isArray(d.stderr_corrected) ? sub(d.stderr_corrected) : null;
    const predicted = sub(d.stderr_predicted);
    const fitted = corr || se, pts = [];
    B.forEach(function (b, k) { if (isNum(b) && b > 0 && isNum(fitted[k]) && fitted[k] > 0) pts.push([Math.log(b), Math.log(fitted[k])]); });
    const grid = el('div', { class: 'grid' }); s.append(grid);
    const c = colors[runs.indexOf(run) % colors.length];
    const series = [{ label: 'measured', x: B, y: se, color: c, width: 0, points: true, pointSize: 4 }];
    if (corr) series.push({ label: 'corrected', x: B, y: corr.map(function (v) { return v > 0 ? v : null; }), color: '#e6550d', width: 0, points: true, pointSize: 3.5 });
    if (Array.isArray(predicted)) {
      series.push({ label: 'predicted \u221a(tr \u03a3 / m \u00b7 (N\u2212m)/(N\u22121))', x: B, y: predicted.map(function (v) { return v > 0 ? v : null; }),
                    color: shade(c, 0.9), width: 1.4 });
    }
    if (pts.length) {
      const mx = pts.reduce(function (a, p) { return a + p[0]; }, 0) / pts.length, my = pts.reduce(function (a, p) { return a + p[1]; }, 0) / pts.length;
      const line = function (k) { return B.map(function (b) { return b > 0 ? Math.exp(my + k * (Math.log(b) - mx)) : null; }); };
      if (isNum(d.slope)) series.push({ label: 'fit, slope ' + fmt(d.slope, 3), x: B, y: line(d.slope), color: '#9467bd', width: 2 });
      series.push({ label: 'slope \u22120.5', x: B, y: line(-0.5), color: '#7f7f7f', dash: true, width: 1.4 });
    }
    chart(grid, 'Standard error of the gradient against batch size' + (all.length > B.length ? ' (m < N = ' + fmt(N) + ')' : ''), series, { xlabel: 'batch size m', ylabel: 'standard error', log: true, xlog: true });
    const head = ['batch size', 'standard error'].concat(corr ? ['corrected'] : [], Array.isArray(d.stderr_predicted) ? ['predicted'] : []);
    s.append(el('details', {}, [el('summary', {}, ['Standard errors per batch size']), table(head, all.map(function (b, k) {
      return [b, (d.stderr || [])[k]].concat(corr ? [d.stderr_corrected[k]] : [], Array.isArray(d.stderr_predicted) ? [d.stderr_predicted[k]] : []);
    }))]));
    rawData(s, 'noise.json', d);
  };
  diagnosticPanels.symmetry = function (run, d) {
    const s = diagSection(run, 'symmetry', 'Weight space symmetry (section 8.2.2)',
      'Permuting the hidden units of a layer, or scaling a ReLU unit\u2019s inputs by a and its outputs by 1/a, gives another model ' +
      'with the same function: the loss changes by rounding only. These symmetries make the model non-identifiable and its ' +
      'minima come in large families.');
    const items = [[fmt(d.permutation_max_change, 3), 'largest relative loss change, permutation'],
      [fmt(d.rescaling_max_change, 3), 'largest relative loss change, rescaling'],
      [isNum(d.log10_equivalent_models) ? '10^' + +d.log10_equivalent_models.toFixed(1) : '\u2013', 'equivalent permutations']];
    if (isNum(d.rescaling_dimensions)) items.push([fmt(d.rescaling_dimensions), 'dimensions of the rescaling continuum']);
    if (isNum(d.permutation_distance)) items.push([fmt(d.permutation_distance, 3), 'parameters moved, permutation (|\u03b8\u2032\u2212\u03b8|/|\u03b8|)']);
    stats(s, items);
    s.append(el('div', { class: 'verdict' }, [(isNum(d.permutation_max_change) && isNum(d.rescaling_max_change)
      ? 'Permutations changed the loss by at most ' + fmt(d.permutation_max_change, 3) +
        (d.rescaling_dimensions === 0 ? ' (no layer allows a rescaling: not ReLU, or recurrent)' : ' and rescalings by at most ' + fmt(d.rescaling_max_change, 3)) +
        ': the same function, as the symmetry argument says' + (isNum(d.log10_equivalent_models) ? '; at least 10^' + +d.log10_equivalent_models.toFixed(1) + ' equivalent models.' : '.')
      : 'The file lacks the loss changes.')]));
    if (Array.isArray(d.layers) && d.layers.length && typeof d.layers[0] === 'object') {
      const keys = Object.keys(d.layers[0]).sort(function (a, b) { return (b === 'name') - (a === 'name'); });
      s.append(table(keys, d.layers.map(function (l) { return keys.map(function (k) { return typeof l[k] === 'object' || typeof l[k] === 'boolean' ? JSON.stringify(l[k]) : l[k]; }); })));
    }
    if (Array.isArray(d.not_covered) && d.not_covered.length) {
      s.append(el('p', { class: 'note' }, ['Not covered (the count is a lower bound): ' + d.not_covered.map(String).join('; ')]));
    }
    rawData(s, 'symmetry.json', d);
  };
  diagnosticPanels.critical = function (run, d) {
    const s = diagSection(run, 'critical', 'Critical point check (section 8.2.3)',
      'A small gradient norm alone does not make a minimum: the sign of the Hessian\u2019s extreme eigenvalues tells a minimum ' +
      '(\u03bb_min \u2265 0) from a saddle point (\u03bb_min < 0 < \u03bb_max).');
    const items = [[fmt(d.gradient_norm), 'gradient norm |G|'], [pm(d.lambda_min, d.residual_min), '\u03bb_min (\u00b1 residual)'],
      [pm(d.lambda_max, d.residual_max), '\u03bb_max (\u00b1 residual)']];
    if (isNum(d.gradient_gap)) items.push([fmt(d.gradient_gap), 'gradient gap |G|\u00b2/(2L) (threshold ' + fmt(d.gap_threshold) + ')']);
    stats(s, items);
    s.append(el('div', { class: 'verdict' }, [el('b', {}, [typeof d.verdict === 'string' ? d.verdict : 'no verdict in the file']),
      typeof d.reason === 'string' ? ': ' + d.reason : '']));
    rawData(s, 'critical.json', d);
  };
  diagnosticPanels.interpolation = function (run, d) {
    const s = diagSection(run, 'interpolation', 'Linear interpolation from \u03b8\u2080 to \u03b8* (Fig. 8.2, after Goodfellow et al. 2015)',
      'The loss and 0-1 error of \u03b8 = (1 \u2212 \u03b1) \u03b8\u2080 + \u03b1 \u03b8* on the training and validation splits: \u03b1 = 0 is the ' +
      'initial point, \u03b1 = 1 the trained parameters. A smooth, monotone descent along the line says the path between them has no barrier.');
    const grid = el('div', { class: 'grid' }); s.append(grid);
    const a = d.alpha || [], c = colors[runs.indexOf(run) % colors.length], m = [{ x: 0, label: '\u03b8\u2080 (\u03b1 = 0)' }, { x: 1, label: '\u03b8* (\u03b1 = 1)' }];
    const positive = (d.train_loss || []).concat(d.validation_loss || []).every(function (v) { return v === null || v > 0; });
    chart(grid, 'Loss along the line', [{ label: 'train loss', x: a, y: d.train_loss || [], color: c, width: 2 },
      { label: 'validation loss', x: a, y: d.validation_loss || [], color: shade(c, 0.9), dash: true, width: 2 }],
      { xlabel: '\u03b1', ylabel: 'cross-entropy', log: positive, marks: m });
    chart(grid, '0-1 error along the line', [{ label: 'train error', x: a, y: (d.train_error || []).map(pct), color: c, width: 2 },
      { label: 'validation error', x: a, y: (d.validation_error || []).map(pct), color: shade(c, 0.9), dash: true, width: 2 }],
      { xlabel: '\u03b1', ylabel: '0-1 error (%)', marks: m });
    rawData(s, 'interpolation.json', d);
  };
  diagnosticPanels.plane = function (run, d) {
    const ax = d.axes || {}, xs = (ax.x || {}).values || [], ys = (ax.y || {}).values || [];
    const s = diagSection(run, 'plane', 'The loss on a plane through the parameters, with the path of training',
      'The loss (color, log scale, with contour lines) on the plane ' + (d.method ? '(' + d.method + ') ' : '') +
      'through \u03b8\u2080 and \u03b8*; the white line is the training trajectory projected onto it (from \u25cb \u03b8\u2080 to \u2606 \u03b8*). ' +
      'Hover for values.');
    const grid = el('div', { class: 'grid' }); s.append(grid);
    let points = d.points || {};
    if (Array.isArray(points)) { const o = {}; points.forEach(function (p) { if (p && p.name) o[p.name] = p; }); points = o; }
    const tr = d.trajectory || {};
    const draw = function (ctx, X, Y) {
      const tx = tr.x || [], ty = tr.y || [];
      if (tx.length > 1) {
        [['rgba(29,35,48,0.75)', 4.5], ['#ffffff', 2]].forEach(function (st) {
          ctx.strokeStyle = st[0]; ctx.lineWidth = st[1]; ctx.lineJoin = 'round'; ctx.beginPath();
          tx.forEach(function (x, k) { if (isNum(x) && isNum(ty[k])) ctx.lineTo(X(x), Y(ty[k])); });
          ctx.stroke();
        });
      }
      Object.keys(points).forEach(function (k) {
        const p = points[k];
        if (!p || !isNum(p.x) || !isNum(p.y)) return;
        const star = /star|\*/.test(k), label = k === 'theta_0' ? '\u03b8\u2080' : k === 'theta_star' ? '\u03b8*' : k;
        dot(ctx, X(p.x), Y(p.y), label, star ? 'star' : 'circle');
      });
    };
    const positive = (d.loss || []).every(function (row) { return (row || []).every(function (v) { return v === null || v > 0; }); });
    heatmap(grid, 'Loss on the plane', xs, ys, d.loss || [], { xlabel: (ax.x || {}).label || 'x', ylabel: (ax.y || {}).label || 'y',
      zlabel: 'loss', log: positive, contours: 12, draw: draw });
    if (Array.isArray(d.error) && d.error.length) {
      heatmap(grid, '0-1 error on the plane', xs, ys, d.error.map(function (row) { return (row || []).map(pct); }),
        { xlabel: (ax.x || {}).label || 'x', ylabel: (ax.y || {}).label || 'y', zlabel: '0-1 error (%)', contours: 8, draw: draw });
    }
    rawData(s, 'plane.json', d);
  };

  function diagnostics() {
    runs.forEach(function (run) {
      const order = ['spectrum', 'density', 'trace', 'critical', 'symmetry', 'noise', 'interpolation', 'plane'];
      const rank = function (k) { const i = order.indexOf(k); return i < 0 ? order.length : i; };
      Object.keys(run.diagnostics).sort(function (a, b) { return rank(a) - rank(b) || (a < b ? -1 : a > b ? 1 : 0); }).forEach(function (key) {
        const panel = diagnosticPanels[key];
        if (panel) { panel(run, run.diagnostics[key]); return; }
        const s = section('Diagnostics: ' + key, 'diagnostics/' + key + '.json of ' + run.label + ' (no panel for it yet; the data):');
        s.append(el('details', {}, [el('summary', {}, ['data']), el('pre', {}, [JSON.stringify(run.diagnostics[key], null, 1).slice(0, 20000)])]));
      });
    });
  }

  function configAndMachine() {
    const s = section('Config and machine', 'config.toml as the run resolved it' + (runs.some(function (r) { return r.run_info; }) ? '; run.json' : '') + '.');
    runs.forEach(function (run) {
      const d = el('details', overlay ? {} : { open: '' }, [el('summary', {}, [run.label + ': config.toml']), el('pre', {}, [run.config || '(no config.toml in the run folder)'])]);
      s.append(d);
      if (run.run_info) s.append(el('details', {}, [el('summary', {}, [run.label + ': run.json']), el('pre', {}, [JSON.stringify(run.run_info, null, 2)])]));
    });
  }

  document.title = 'descent report: ' + runs.map(function (r) { return r.label; }).join(', ');
  document.getElementById('title').textContent = overlay ? 'descent: ' + runs.length + ' runs' : 'descent run ' + runs[0].label;
  document.getElementById('subtitle').textContent = runs.map(function (r) { return r.dir; }).join('  ·  ');
  try {
    summary();
    header();
    learningCurves();
    figure81();
    schedule();
    curvature();
    layers();
    recurrent();
    divergences();
    diagnostics();
    configAndMachine();
  } catch (e) {
    check.errors++;
    document.getElementById('panels').append(el('pre', {}, ['report error: ' + e]));
  }
  publish();
)JS";

// The library's text, with its source-map comment cut (it would name another file).
std::string chart_library(const fs::path& path) {
  std::string text;
  try {
    text = io::read_file(path, std::size_t{16} << 20);
  } catch (const IoError& e) {
    throw IoError(std::string(e.what()) + " (the report's chart library: install libjs-dygraphs, scripts/install-deps)");
  }
  if (const auto at = text.rfind("//# sourceMappingURL="); at != std::string::npos) text.erase(at);
  std::string lower = text;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  if (lower.find("</script") != std::string::npos) {
    throw IoError(path.string() + ": holds \"</script\", cannot be inlined into the report");
  }
  return text;
}

std::string css_next_to(const fs::path& library) {
  const fs::path css = library.parent_path() / "dygraph.min.css";
  std::error_code ec;
  if (!fs::exists(css, ec)) return {};
  std::string text = io::read_file(css, std::size_t{1} << 20);
  if (const auto at = text.rfind("/*# sourceMappingURL="); at != std::string::npos) text.erase(at);
  return text;
}

}  // namespace

namespace detail {

std::string page(const std::string& json_text, std::string_view script, std::string_view footer,
                 const fs::path& chart_library_file) {
  const std::string library = chart_library(chart_library_file);
  std::string page;
  page.reserve(json_text.size() + library.size() + 40000);
  page += "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n";
  page += "<meta http-equiv=\"Content-Security-Policy\" content=\"";
  page += kPolicy;
  page += "\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n";
  page += "<meta name=\"generator\" content=\"descent ";
  page += version;
  page += "\">\n<title>descent report</title>\n<style>";
  page += css_next_to(chart_library_file);
  page += kStyle;
  page += "</style>\n<script>\n";
  page += library;
  page += "\n</script>\n<script type=\"application/json\" id=\"descent-data\">";
  // "<" only occurs inside JSON strings, where \u003c means the same: no "</script>" or "<!--".
  for (const char c : json_text) {
    if (c == '<') page += "\\u003c";
    else page += c;
  }
  page += "</script>\n</head>\n<body>\n<header><h1 id=\"title\">descent report</h1><p id=\"subtitle\"></p></header>\n";
  page += "<noscript><p>The charts of this page need JavaScript.</p></noscript>\n<main id=\"panels\"></main>\n";
  page += "<footer>Written by descent ";
  page += version;
  page += footer;
  page += "</footer>\n<script>\n(function () {\n  'use strict';";
  page += kPageHelpers;
  page += script;
  page += "})();\n</script>\n</body>\n</html>\n";
  return page;
}

}  // namespace detail

std::string render_report(const std::vector<fs::path>& run_dirs, const Options& options) {
  const std::string json_text = report_data(run_dirs, options);
  const fs::path library = options.chart_library.empty() ? chart_library_path() : options.chart_library;
  return detail::page(json_text, kScript,
                      " from the run folder's files. Charts: dygraphs (Debian libjs-dygraphs), inlined; this page makes no "
                      "network request. docs/report.md describes every panel.",
                      library);
}

void write_report(const std::vector<fs::path>& run_dirs, const fs::path& out, const Options& options) {
  io::write_file_atomic(out, render_report(run_dirs, options));
}

}  // namespace descent::report
