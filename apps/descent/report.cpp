// descent report RUN_DIR [RUN_DIR ...] [--out FILE]; a file in a run folder (its metrics.jsonl) means the folder.
#include <iostream>

#include "commands.hpp"
#include "descent/error.hpp"
#include "descent/report/report.hpp"

namespace descent::cli {

void add_report(CLI::App& app, ReportArgs& args) {
  CLI::App* cmd = app.add_subcommand(
      "report", "Write the HTML report of a run (RUN_DIR/report.html) or of several runs overlaid (--out FILE)");
  cmd->add_option("run_dirs", args.run_dirs,
                  "Run folders (each holds metrics.jsonl and config.toml), or a file in one (its metrics.jsonl)")
      ->required();
  cmd->add_option("--out", args.out, "The page to write (default: RUN_DIR/report.html; required for several runs)");
  cmd->add_option("--max-points", args.max_points,
                  "Points per step series; longer runs are aggregated in buckets (min, mean, max)")
      ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 24));
}

namespace {

// A run folder, or a file in one (its metrics.jsonl, config.toml, report.html, ...): the folder.
std::filesystem::path run_folder_of(const std::string& arg) {
  std::error_code ec;
  const std::filesystem::path p = arg;
  if (!std::filesystem::is_regular_file(p, ec)) return p;
  const std::filesystem::path parent = p.parent_path();
  return parent.empty() ? std::filesystem::path(".") : parent;
}

}  // namespace

int run_report(const ReportArgs& args) {
  std::vector<std::filesystem::path> dirs;
  for (const std::string& arg : args.run_dirs) dirs.push_back(run_folder_of(arg));
  std::filesystem::path out = args.out;
  if (out.empty()) {
    if (args.run_dirs.size() > 1) {
      throw Error("report: " + std::to_string(args.run_dirs.size()) +
                  " run folders overlay into one page: say where with --out FILE");
    }
    out = dirs[0] / "report.html";
  }
  report::Options options;
  options.max_points = args.max_points;
  report::write_report(dirs, out, options);
  std::cout << out.string() << "\n";
  return 0;
}

// The report at the end of `descent train` and `descent resume`: its path on stdout, or a
// warning on stderr when it cannot be written (the run itself succeeded). `announce` false:
// the path is not printed (progress = "none").
void report_after_run(const std::filesystem::path& run_dir, bool announce) {
  const std::filesystem::path out = run_dir / "report.html";
  try {
    report::write_report({run_dir}, out);
    if (announce) std::cout << "report " << out.string() << "\n";
  } catch (const Error& e) {
    std::cerr << "descent: warning: no report: " << e.what() << "\n";
  }
}

}  // namespace descent::cli
