// The report page: HTML, CSS and the script that draws the panels from the embedded data
// (report.hpp, docs/report.md). Charts: dygraphs, inlined from Debian's libjs-dygraphs.
#include <algorithm>
#include <cctype>
#include <string_view>

#include "descent/error.hpp"
#include "descent/io/atomic_file.hpp"
#include "descent/report/report.hpp"
#include "descent/version.hpp"

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
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(560px, 1fr)); gap: 14px 22px; }
figure { margin: 0; min-width: 0; }
figcaption { font-weight: 600; margin: 4px 0 2px; }
.chart { width: 100%; height: 300px; }
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

constexpr std::string_view kScript = R"JS(
(function () {
  'use strict';
  const data = JSON.parse(document.getElementById('descent-data').textContent);
  // Self-check, read by the browser test: charts made, charts with data drawn, errors met.
  const check = { charts: 0, drawn: 0, errors: 0 };
  function publish() {
    document.body.dataset.charts = check.charts;
    document.body.dataset.drawn = check.drawn;
    document.body.dataset.errors = check.errors;
  }
  window.addEventListener('error', function () { check.errors++; publish(); });
  document.addEventListener('securitypolicyviolation', function () { check.errors++; publish(); });

  const runs = data.runs;
  const overlay = runs.length > 1;
  const colors = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf'];
  // Unique display names: the folder name, or the whole path where two folders share it.
  runs.forEach(function (r) { r.label = runs.filter(function (o) { return o.name === r.name; }).length > 1 ? r.dir : r.name; });

  function el(tag, attrs, children) {
    const e = document.createElement(tag);
    for (const k in (attrs || {})) e.setAttribute(k, attrs[k]);
    (children || []).forEach(function (c) { e.append(c instanceof Node ? c : document.createTextNode(String(c))); });
    return e;
  }
  function section(title, note) {
    const s = el('section', {}, [el('h2', {}, [title])]);
    if (note) s.append(el('p', { class: 'note' }, [note]));
    document.getElementById('panels').append(s);
    return s;
  }
  function fmt(v, digits) {
    if (v === null || v === undefined) return '–';
    if (typeof v !== 'number') return String(v);
    if (Number.isInteger(v)) return String(v);
    return v.toPrecision(digits || 4);
  }
  function pct(v) { return v === null || v === undefined ? null : 100 * v; }
  function name(run, what) { return overlay ? run.label + ': ' + what : what; }
  function shade(color, k) { // the run's color, lighter for k > 0 (secondary series)
    const n = parseInt(color.slice(1), 16), r = n >> 16, g = (n >> 8) & 255, b = n & 255;
    const m = function (c) { return Math.round(c + (255 - c) * 0.45 * k); };
    return '#' + ((1 << 24) + (m(r) << 16) + (m(g) << 8) + m(b)).toString(16).slice(1);
  }

  // Pixels that are neither white, black nor gray: the series' own colors.
  function coloredPixels(box) {
    let n = 0;
    box.querySelectorAll('canvas').forEach(function (c) {
      if (!c.width || !c.height) return;
      const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      for (let i = 0; i < d.length; i += 4) {
        if (d[i + 3] > 60 && (Math.abs(d[i] - d[i + 1]) > 40 || Math.abs(d[i + 1] - d[i + 2]) > 40)) n++;
      }
    });
    return n;
  }

  // A chart of series {label, x[], y[] (numbers, or [min, mean, max] for a band), color,
  // dash, points}, merged on their x values; hover shows the values, drag zooms, double-click
  // resets.
  function chart(parent, title, series, opts) {
    series = series.filter(function (s) { return s.y.some(function (v) { return v !== null && v !== undefined; }); });
    const box = el('div', { class: 'chart' }), legend = el('div', { class: 'legend' });
    parent.append(el('figure', {}, [el('figcaption', {}, [title]), box, legend]));
    if (!series.length) { box.style.height = 'auto'; box.append(el('p', { class: 'note' }, ['no data'])); return; }
    const index = new Map();
    series.forEach(function (s) { s.x.forEach(function (x) { if (x !== null && !index.has(x)) index.set(x, 0); }); });
    const xs = Array.from(index.keys()).sort(function (a, b) { return a - b; });
    xs.forEach(function (x, i) { index.set(x, i); });
    const rows = xs.map(function (x) { const r = new Array(series.length + 1).fill(null); r[0] = x; return r; });
    series.forEach(function (s, j) {
      s.x.forEach(function (x, i) {
        const y = s.y[i];
        if (x === null || y === null || y === undefined) return;
        if (Array.isArray(y)) { if (y[1] !== null) rows[index.get(x)][j + 1] = y; }
        else rows[index.get(x)][j + 1] = [y, y, y];
      });
    });
    const per = {};
    series.forEach(function (s) {
      per[s.label] = { strokeWidth: s.width || 1.6, drawPoints: !!s.points, pointSize: 2.5,
                       strokePattern: s.dash ? [6, 3] : null };
    });
    check.charts++;
    const g = new Dygraph(box, rows, {
      labels: [opts.xlabel].concat(series.map(function (s) { return s.label; })),
      colors: series.map(function (s) { return s.color; }),
      series: per, customBars: true, connectSeparatedPoints: true, fillAlpha: 0.22,
      xlabel: opts.xlabel, ylabel: opts.ylabel, logscale: !!opts.log,
      labelsDiv: legend, legend: 'always', labelsKMB: false, digitsAfterDecimal: 4,
      axes: { x: { axisLabelWidth: 60 }, y: { axisLabelWidth: 64 } },
      gridLineColor: '#e3e7ee', axisLineColor: '#9aa3b2',
      xLabelHeight: 16, yLabelWidth: 16, rightGap: 12
    });
    if (coloredPixels(box) > 20) check.drawn++;
    publish();
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
      '). ' + bucketRule() + ' Right: the validation 0-1 error. As in the book, the gradient norm need not shrink while the error falls.');
    const grid = el('div', { class: 'grid' }); s.append(grid);
    const g = [], v = [];
    let anyVal = false;
    runs.forEach(function (run, i) {
      const c = colors[i % colors.length], recs = curves(run);
      g.push({ label: name(run, 'gradient norm'), x: run.steps.step, y: band(run.steps, 'grad_norm'), color: shade(c, 1.3), width: 1 });
      g.push({ label: name(run, 'running mean'), x: run.steps.step, y: run.steps.grad_norm_running, color: c, width: 2.2 });
      const hasVal = recs.some(function (r) { return r.val_error !== undefined && r.val_error !== null; });
      anyVal = anyVal || hasVal;
      v.push({ label: name(run, hasVal ? 'validation error' : 'train error (no validation split)'), x: col(recs, 'step'),
               y: col(recs, hasVal ? 'val_error' : 'train_error', pct), color: c, points: true, width: 2 });
    });
    chart(grid, 'Gradient norm ||g|| against step', g, { xlabel: 'step', ylabel: '||g||' });
    chart(grid, (anyVal ? 'Validation' : 'Training') + ' 0-1 error against step', v, { xlabel: 'step', ylabel: '0-1 error (%)' });
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
      ['grad_norm_at_stop', 'mean ||g|| of the last epoch'], ['divergences', 'divergences (NaN/Inf met)'], ['wall_s', 'wall time (s)']];
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
  function diagnostics() {
    runs.forEach(function (run) {
      Object.keys(run.diagnostics).forEach(function (key) {
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
    learningCurves();
    figure81();
    schedule();
    divergences();
    diagnostics();
    configAndMachine();
  } catch (e) {
    check.errors++;
    document.getElementById('panels').append(el('pre', {}, ['report error: ' + e]));
  }
  publish();
})();
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

std::string render_report(const std::vector<fs::path>& run_dirs, const Options& options) {
  const std::string json_text = report_data(run_dirs, options);
  const fs::path library = options.chart_library.empty() ? chart_library_path() : options.chart_library;
  const std::string script = chart_library(library);
  std::string page;
  page.reserve(json_text.size() + script.size() + 40000);
  page += "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n";
  page += "<meta http-equiv=\"Content-Security-Policy\" content=\"";
  page += kPolicy;
  page += "\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n";
  page += "<meta name=\"generator\" content=\"descent ";
  page += version;
  page += "\">\n<title>descent report</title>\n<style>";
  page += css_next_to(library);
  page += kStyle;
  page += "</style>\n<script>\n";
  page += script;
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
  page += " from the run folder's files. Charts: dygraphs (Debian libjs-dygraphs), inlined; this page makes no "
          "network request. docs/report.md describes every panel.</footer>\n<script>";
  page += kScript;
  page += "</script>\n</body>\n</html>\n";
  return page;
}

void write_report(const std::vector<fs::path>& run_dirs, const fs::path& out, const Options& options) {
  io::write_file_atomic(out, render_report(run_dirs, options));
}

}  // namespace descent::report
