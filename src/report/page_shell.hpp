#pragma once
// The frame every page of descent shares (src/report/page.cpp): the Content-Security-Policy,
// the style, the chart library inlined, the data as `<script type="application/json"
// id="descent-data">`, a header (#title, #subtitle), <main id="panels">, a footer and the
// page's own script. Used by the run report and the comparison page (compare_page.cpp).
// The page's script runs inside one function, after kPageHelpers: what both pages use.
#include <filesystem>
#include <string>
#include <string_view>

namespace descent::report::detail {

// The script both pages start with (in the function that page() wraps around their own
// script): the embedded data, the self-check the browser tests read (data-charts, data-drawn,
// data-errors, data-empty on <body>), the series colors and the DOM and number helpers.
//   el(tag, attrs, children)   an element; children are nodes or text
//   section(title, note)       a panel appended to <main id="panels">
//   fmt(v, digits = 4)         a number to `digits` significant digits (exponent notation below
//                              1e-3 and from 1e6), integers as they are, '–' for null
//   drawn(box, title, region)  counts the chart in box as drawn when its canvases (within
//                              region {x, y, w, h}, the whole canvas by default) hold more than
//                              20 pixels of a series' colors (neither white, black nor gray)
inline constexpr std::string_view kPageHelpers = R"JS(
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
  const colors = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf', '#bcbd22', '#7f7f7f'];

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
    if (Number.isInteger(v) && Math.abs(v) < 1e15) return String(v);
    if (v !== 0 && (Math.abs(v) < 1e-3 || Math.abs(v) >= 1e6)) return v.toExponential((digits || 4) - 1);
    return v.toPrecision(digits || 4);
  }

  function coloredPixels(box, region) {
    let n = 0;
    box.querySelectorAll('canvas').forEach(function (c) {
      if (!c.width || !c.height) return;
      const r = region || { x: 0, y: 0, w: c.width, h: c.height };
      if (r.w < 1 || r.h < 1) return;
      const d = c.getContext('2d').getImageData(r.x, r.y, r.w, r.h).data;
      for (let i = 0; i < d.length; i += 4) {
        if (d[i + 3] > 60 && (Math.abs(d[i] - d[i + 1]) > 40 || Math.abs(d[i + 1] - d[i + 2]) > 40)) n++;
      }
    });
    return n;
  }
  const empty = [];  // the titles of the charts not drawn, for the test (data-empty)
  function drawn(box, title, region) {
    if (coloredPixels(box, region) > 20) check.drawn++;
    else empty.push(title);
    document.body.dataset.empty = empty.join(' | ');
    publish();
  }
)JS";


// Throws IoError naming the chart library's path when it cannot be read.
std::string page(const std::string& json_text, std::string_view script, std::string_view footer,
                 const std::filesystem::path& chart_library_file);

}  // namespace descent::report::detail
