#pragma once
// The report of a run: one self-contained HTML page (docs/report.md).
//
// Built only from a run folder's files: config.toml, metrics.jsonl (docs/metrics.md),
// run.json and diagnostics/*.json when present. The page inlines the chart library
// (Debian's libjs-dygraphs, read from /usr/share/javascript at run time) and the data as one
// JSON object, `<script type="application/json" id="descent-data">`; a Content-Security-Policy
// forbids every request, so it opens offline and never touches the network.
//
// Long runs stay legible: at most `max_points` per step series. Beyond that the step records
// are cut into buckets of B = ceil(steps / max_points) consecutive updates, and each bucket
// gives its first step, its last wall time, and the min, mean and max of loss, grad_norm and lr
// over the bucket (non-finite values, written as null, left out). The step series are rounded
// to 6 significant digits; the epoch, eval, divergence and final records keep every digit.
#include <cstddef>
#include <filesystem>
#include <string>
#include <vector>

namespace descent::report {

struct Options {
  std::size_t max_points = 1000;  // per step series; >= 1
  std::filesystem::path chart_library;  // empty: chart_library_path()
};

// $DESCENT_DYGRAPHS_JS when set, else /usr/share/javascript/dygraphs/dygraph.min.js.
std::filesystem::path chart_library_path();

// The data of the page for `run_dirs` (one run, or several overlaid), as JSON text: what the
// page embeds. Throws IoError naming the folder or file when a run folder or its metrics.jsonl
// is missing or unreadable, DataError naming the file and the 1-based line when a line of
// metrics.jsonl is not a JSON object or a field has the wrong type, DataError naming the file
// for a malformed config.toml, run.json or diagnostics/*.json.
std::string report_data(const std::vector<std::filesystem::path>& run_dirs, const Options& options = {});

// The whole page. Throws as report_data, and IoError naming the chart library's path (and
// scripts/install-deps) when it cannot be read.
std::string render_report(const std::vector<std::filesystem::path>& run_dirs, const Options& options = {});

// Writes render_report(...) to `out` atomically. Throws as render_report and
// io::write_file_atomic.
void write_report(const std::vector<std::filesystem::path>& run_dirs, const std::filesystem::path& out,
                  const Options& options = {});

}  // namespace descent::report
