#pragma once
// The page of a comparison, compare.html (docs/compare.md): the ranking with its noise rule,
// the sensitivity of each method to the learning rate, and every run's validation curve (the
// seeds of a grid point as a band). Built from the summary (compare/summary.hpp) alone, with
// the run report's frame: the chart library inlined, no network request.
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "descent/report/report.hpp"

namespace descent::report {

// The page for `summary` (summary.json's content). Throws IoError naming the chart library
// when it cannot be read.
std::string render_compare(const nlohmann::json& summary, const Options& options = {});

// Writes render_compare(...) to `out` atomically.
void write_compare(const nlohmann::json& summary, const std::filesystem::path& out, const Options& options = {});

}  // namespace descent::report
