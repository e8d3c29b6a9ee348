#pragma once
// The summary of a comparison (docs/compare.md): each run's figures read from its own
// metrics.jsonl, each grid point's mean and standard deviation over its seeds, and the
// ranking of the methods with the noise rule.
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "descent/compare/grid.hpp"

namespace descent::compare {

struct CurvePoint {
  std::int64_t epoch = 0, step = 0;
  double wall_s = 0.0;
  std::optional<double> val_error, train_loss;
};

// One run's figures. status: finished (a "final" record), diverged (a "stopped" record with
// reason diverged), interrupted, failed (run.json says so, without either record), missing.
struct RunOutcome {
  std::string name, status = "missing";
  std::optional<double> best_val_error, test_error, time_to_target_s, wall_s;
  std::optional<std::int64_t> steps_to_target, best_epoch, steps;
  std::int64_t divergences = 0;
  std::vector<CurvePoint> curve;  // the epoch records
};

// Reads `run_dir`/metrics.jsonl and run.json (missing files: status "missing"). The best
// validation error is the final record's best_val_error, else the lowest val_error of the
// epochs after epoch 0; time and steps to `target`: the first epoch record whose val_error
// is <= target. Throws DataError naming the file when metrics.jsonl is malformed.
RunOutcome read_run(const std::filesystem::path& run_dir, std::optional<double> target);

// Mean, sample standard deviation (n - 1; 0 for n = 1) and n of the values present.
struct Stat {
  std::size_t n = 0;
  double mean = 0.0, std = 0.0;
};
Stat stat_of(const std::vector<double>& values);

// The summary as JSON (summary.json's content): "runs", "points", "ranking", "rule".
// `runs_dir` holds the run folders named as grid.runs.
nlohmann::json summarize(const Grid& grid, const std::filesystem::path& runs_dir);

// summary.csv: one row per run, then one row per point (row = "run" or "point").
std::string summary_csv(const nlohmann::json& summary);

}  // namespace descent::compare
