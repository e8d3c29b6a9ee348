#pragma once
// The subcommands of the descent CLI.
#include <CLI/CLI.hpp>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "descent/optim/optimizer.hpp"

namespace descent::cli {

// The one-line message (without "descent: error: ") for a command line `args` (argv without
// the program name) that `app` refused with `error`: an unknown command or option gets a
// suggestion (the nearest command or option, or --set KEY=VALUE for a config key), anything
// else CLI11's message and where to find the help. usage.cpp.
std::string usage_error(CLI::App& app, const std::vector<std::string>& args, const CLI::ParseError& error);

struct TrainArgs {
  std::string config;
  std::vector<std::string> overrides;
  std::string out;
  std::string name;
  bool overwrite = false;   // replace a run already in the run folder
  bool fresh_name = false;  // or train into <name>-2, <name>-3, ...
};
void add_train(CLI::App& app, TrainArgs& args);
int run_train(const TrainArgs& args);

struct ResumeArgs {
  std::string run_dir;
};
void add_resume(CLI::App& app, ResumeArgs& args);
int run_resume(const ResumeArgs& args);

struct EvalArgs {
  std::string model;
  std::string config;
  std::vector<std::string> overrides;
  std::string split = "test";
  std::string params;  // checkpoints: "best" (the default) or "current"
};
void add_eval(CLI::App& app, EvalArgs& args);
int run_eval(const EvalArgs& args);

struct OptimizeArgs {
  std::string function;
  optim::OptimizerSpec spec;
  double lr = std::numeric_limits<double>::quiet_NaN();  // NaN: the algorithm's default
  double momentum = std::numeric_limits<double>::quiet_NaN();
  double rho = std::numeric_limits<double>::quiet_NaN();
  double rho1 = std::numeric_limits<double>::quiet_NaN();
  double rho2 = std::numeric_limits<double>::quiet_NaN();
  double delta = std::numeric_limits<double>::quiet_NaN();
  double condition = 10.0;
  std::string start;
  std::int64_t steps = 100;
  std::string trace;
  // Second-order methods (optim/second_order.hpp); empty or NaN: the method's default.
  std::string line_search;
  double c1 = std::numeric_limits<double>::quiet_NaN();
  double c2 = std::numeric_limits<double>::quiet_NaN();
  double damping = std::numeric_limits<double>::quiet_NaN();
  int history = 10;
  int cg_iterations = 250;
  int krylov = 20;
  std::string beta = "pr+";
  std::int64_t restart = 0;
};
void add_optimize(CLI::App& app, OptimizeArgs& args);
int run_optimize(const OptimizeArgs& args);

struct ReportArgs {
  std::vector<std::string> run_dirs;
  std::string out;
  std::size_t max_points = 1000;
};
void add_report(CLI::App& app, ReportArgs& args);
int run_report(const ReportArgs& args);
// Writes RUN_DIR/report.html after a run and prints its path (a warning if it cannot).
void report_after_run(const std::filesystem::path& run_dir, bool announce = true);

struct DiagnoseArgs {
  std::string run_dir;
  std::string what = "spectrum,trace,density";
  std::int64_t examples = 1000;
  std::string split = "train";
  int top = 5;
  int steps = 80;
  int probes = 0;  // 0: trace 100, density 10
  int draws = 16;  // noise: minibatches per batch size
  int trials = 10; // symmetry: random permutations and rescalings
  std::uint64_t seed = 1;
  std::string weights = "model";  // model | init | PATH: the weights every diagnostic uses
  int points = 41;                // interpolation: alpha values over [-0.25, 1.25]
  int grid = 25;                  // plane: grid x grid points
  std::string plane = "line";     // plane: line | random | hessian
  double range = 0.0;             // plane random/hessian: half-width of the axes (0: the default)
};
void add_diagnose(CLI::App& app, DiagnoseArgs& args);
int run_diagnose(const DiagnoseArgs& args);

struct CompareArgs {
  std::string input;  // GRID.toml, or a config file with --vary
  std::vector<std::string> vary, set;
  std::string seeds, out;
  int jobs = 0;       // 0: the grid's, else 1
  int threads = 0;    // per run; 0: cores / jobs
  double target = std::numeric_limits<double>::quiet_NaN();
  bool dry_run = false;
};
void add_compare(CLI::App& app, CompareArgs& args);
int run_compare(const CompareArgs& args);

struct ShardArgs {
  std::string config;
  std::vector<std::string> overrides;
  std::string out;
  std::int64_t shard_size = 10000;
  std::optional<std::uint64_t> seed;  // default: the config's
  std::int64_t augment_shifts = 0;
  bool no_shuffle = false, force = false;
};
void add_shard(CLI::App& app, ShardArgs& args);
int run_shard(const ShardArgs& args);

}  // namespace descent::cli
