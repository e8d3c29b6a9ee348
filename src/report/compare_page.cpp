// compare.html: the page of `descent compare` (report/compare.hpp, docs/compare.md), in the
// run report's frame (page_shell.hpp). Charts: dygraphs, inlined.
#include <string_view>

#include "descent/io/atomic_file.hpp"
#include "descent/report/compare.hpp"
#include "page_shell.hpp"

namespace descent::report {
namespace {

// The page's own part of the script, after the shared helpers (page_shell.hpp, kPageHelpers).
// Its numbers have 3 significant digits (fmt(v, 3)); the run report's have 4.
constexpr std::string_view kScript = R"JS(
  function pctStat(s) { return s ? (100 * s.mean).toFixed(2) + ' ± ' + (100 * s.std).toFixed(2) + ' % (n = ' + s.n + ')' : '–'; }
  function table(parent, head, rows) {
    const t = el('table', {}, [el('tr', {}, head.map(function (h) { return el('th', {}, [h]); }))]);
    rows.forEach(function (r) { t.append(el('tr', {}, r.map(function (c) { return el('td', {}, [c]); }))); });
    parent.append(t);
    return t;
  }

  // series: {label, x[], y[] ([low, mid, high] or null), color}; merged on x.
  function chart(parent, title, series, opts) {
    series = series.filter(function (s) { return s.y.some(function (v) { return v !== null; }); });
    const box = el('div', { class: 'chart' }), legend = el('div', { class: 'legend' });
    parent.append(el('figure', {}, [el('figcaption', {}, [title]), box, legend]));
    if (!series.length) { box.style.height = 'auto'; box.append(el('p', { class: 'note' }, ['no data'])); return; }
    const xs = Array.from(new Set([].concat.apply([], series.map(function (s) { return s.x; }))))
      .filter(function (x) { return x !== null && (!opts.xlog || x > 0); }).sort(function (a, b) { return a - b; });
    const at = new Map(xs.map(function (x, i) { return [x, i]; }));
    const rows = xs.map(function (x) { const r = new Array(series.length + 1).fill(null); r[0] = x; return r; });
    series.forEach(function (s, j) {
      s.x.forEach(function (x, i) { if (at.has(x) && s.y[i] !== null) rows[at.get(x)][j + 1] = s.y[i]; });
    });
    const per = {};
    series.forEach(function (s) { per[s.label] = { strokeWidth: 1.8, drawPoints: true, pointSize: 2.5 }; });
    check.charts++;
    const compact = function (v) { const a = Math.abs(v); return v === 0 ? '0' : a >= 1e5 || a < 1e-2 ? v.toExponential(0) : String(+v.toPrecision(3)); };
    const o = {
      labels: [opts.xlabel].concat(series.map(function (s) { return s.label; })),
      colors: series.map(function (s) { return s.color; }), series: per,
      customBars: true, connectSeparatedPoints: true, fillAlpha: 0.18,
      xlabel: opts.xlabel, ylabel: opts.ylabel, labelsDiv: legend, legend: 'always', digitsAfterDecimal: 3,
      axes: { x: { axisLabelWidth: 60, logscale: !!opts.xlog }, y: { axisLabelWidth: 56 } },
      gridLineColor: '#e3e7ee', axisLineColor: '#9aa3b2', xLabelHeight: 16, yLabelWidth: 16, rightGap: 12
    };
    if (opts.xlog) o.axes.x.axisLabelFormatter = compact;
    if (opts.xlabel === 'epoch') o.axes.x.axisLabelFormatter = function (v) { return Number.isInteger(v) ? String(v) : ''; };
    new Dygraph(box, rows, o);
    drawn(box, title);
  }

  const methods = [];
  data.points.forEach(function (p) { if (methods.indexOf(p.method) < 0) methods.push(p.method); });
  const color = function (m) { return colors[methods.indexOf(m) % colors.length]; };
  const runsOf = function (point) { return data.runs.filter(function (r) { return r.point === point.name; }); };
  // The seeds of a point at each epoch: [min, mean, max] of the validation error (%).
  function seedBand(point) {
    const byEpoch = new Map();
    runsOf(point).forEach(function (r) {
      r.curve.forEach(function (c) {
        if (c.val_error === null) return;
        if (!byEpoch.has(c.epoch)) byEpoch.set(c.epoch, []);
        byEpoch.get(c.epoch).push(100 * c.val_error);
      });
    });
    const epochs = Array.from(byEpoch.keys()).sort(function (a, b) { return a - b; });
    return { x: epochs, y: epochs.map(function (e) {
      const v = byEpoch.get(e), mean = v.reduce(function (a, b) { return a + b; }, 0) / v.length;
      return [Math.min.apply(null, v), mean, Math.max.apply(null, v)];
    }) };
  }

  function ranking() {
    const s = section('Ranking', data.rule);
    if (data.target_val_error !== null) {
      s.append(el('p', { class: 'note' }, ['Target validation error for time and steps to target: ' + (100 * data.target_val_error).toFixed(2) + ' %.']));
    }
    const verdict = data.ranking.map(function (r) {
      return r.rank + '. ' + r.method + (r.within_noise_of.length ? ' (within noise of ' + r.within_noise_of.join(', ') + ')' : '');
    }).join('   ');
    s.append(el('div', { class: 'verdict' }, [verdict || 'No method has a point where every seed finished.']));
    table(s, ['rank', 'method', 'best point', 'learning rate', 'best validation error (mean ± sd)', 'standard error',
              'test error at the best epoch', 'within noise of'],
      data.ranking.map(function (r) {
        return [r.rank, r.method, r.point, fmt(r.lr, 3), pctStat(r.best_val_error), (100 * r.standard_error).toFixed(2) + ' %',
                pctStat(r.test_error), r.within_noise_of.join(', ') || 'none'];
      }));
    if (data.unranked.length) s.append(el('p', { class: 'note' }, ['Not ranked (no point where every seed finished): ' + data.unranked.join(', ')]));
  }

  function sensitivity() {
    const s = section('Sensitivity to the learning rate',
      'Best validation error against the learning rate, per method: the dot is the mean over seeds, the band one ' +
      'standard deviation either side. A wide flat valley is a method that is easy to tune. Points where a seed ' +
      'diverged are left out (see the table).');
    const grid = el('div', { class: 'grid' }); s.append(grid);
    chart(grid, 'Best validation error against learning rate', methods.map(function (m) {
      const pts = data.points.filter(function (p) { return p.method === m && p.lr > 0; });
      return { label: m, color: color(m), x: pts.map(function (p) { return p.lr; }), y: pts.map(function (p) {
        const b = p.best_val_error;
        return b && p.finished === p.runs ? [100 * (b.mean - b.std), 100 * b.mean, 100 * (b.mean + b.std)] : null;
      }) };
    }), { xlabel: 'learning rate', ylabel: 'validation 0-1 error (%)', xlog: true });
    const best = data.ranking.map(function (r) { return data.points.find(function (p) { return p.name === r.point; }); });
    chart(grid, 'Validation error against epoch, each method at its best point', best.map(function (p) {
      const b = seedBand(p);
      return { label: p.method + ' lr ' + fmt(p.lr, 3), color: color(p.method), x: b.x, y: b.y };
    }), { xlabel: 'epoch', ylabel: 'validation 0-1 error (%)' });
  }

  function curves() {
    const s = section('Every run',
      'Validation error against epoch for every grid point of each method: the line is the mean over seeds, the band ' +
      'the lowest to the highest seed.');
    const grid = el('div', { class: 'grid' }); s.append(grid);
    methods.forEach(function (m) {
      const pts = data.points.filter(function (p) { return p.method === m; });
      chart(grid, m + ': validation error against epoch', pts.map(function (p, i) {
        const b = seedBand(p);
        return { label: (pts.length > 1 ? 'lr ' + fmt(p.lr, 3) : p.name), color: colors[i % colors.length], x: b.x, y: b.y };
      }), { xlabel: 'epoch', ylabel: 'validation 0-1 error (%)' });
    });
  }

  function points() {
    const s = section('Grid points', 'One row per point: mean ± standard deviation over its seeds (finished runs).');
    table(s, ['point', 'method', 'learning rate', 'runs', 'finished', 'diverged', 'best validation error', 'test error',
              'time to target (s)', 'steps to target', 'wall time (s)'],
      data.points.map(function (p) {
        const sd = function (st, f) { return st ? fmt(f(st.mean), 3) + ' ± ' + fmt(f(st.std), 3) : '–'; };
        const id = function (v) { return v; };
        return [p.name, p.method, fmt(p.lr, 3), p.runs, p.finished, p.diverged_runs, pctStat(p.best_val_error),
                pctStat(p.test_error), sd(p.time_to_target_s, id) + (p.time_to_target_s ? ' (' + p.reached_target + ' reached)' : ''),
                sd(p.steps_to_target, id), sd(p.wall_s, id)];
      }));
    const d = el('details', {}, [el('summary', {}, ['Every run (' + data.runs.length + ')'])]);
    s.append(d);
    table(d, ['run', 'status', 'best validation error', 'test error', 'best epoch', 'steps', 'divergences', 'wall time (s)'],
      data.runs.map(function (r) {
        return [r.name, r.status, r.best_val_error === null ? '–' : (100 * r.best_val_error).toFixed(2) + ' %',
                r.test_error === null ? '–' : (100 * r.test_error).toFixed(2) + ' %', fmt(r.best_epoch, 3), fmt(r.steps, 3),
                r.divergences, fmt(r.wall_s, 3)];
      }));
  }

  document.title = 'descent compare: ' + data.source;
  document.getElementById('title').textContent = 'descent compare: ' + methods.length + ' methods, ' +
    data.points.length + ' grid points, ' + data.runs.length + ' runs';
  document.getElementById('subtitle').textContent = data.source + '  ·  grid ' + data.digest.slice(0, 16);
  try {
    ranking();
    sensitivity();
    curves();
    points();
  } catch (e) {
    check.errors++;
    document.getElementById('panels').append(el('pre', {}, ['report error: ' + e]));
  }
  publish();
)JS";

}  // namespace

std::string render_compare(const nlohmann::json& summary, const Options& options) {
  const std::filesystem::path library = options.chart_library.empty() ? chart_library_path() : options.chart_library;
  return detail::page(summary.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), kScript,
                      " from the comparison's summary.json. Charts: dygraphs (Debian libjs-dygraphs), inlined; this page "
                      "makes no network request. docs/compare.md describes every panel.",
                      library);
}

void write_compare(const nlohmann::json& summary, const std::filesystem::path& out, const Options& options) {
  io::write_file_atomic(out, render_compare(summary, options));
}

}  // namespace descent::report
