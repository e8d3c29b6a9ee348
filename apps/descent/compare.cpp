// descent compare GRID.toml | CONFIG --vary KEY=V1,V2 [--vary ...] [--seeds 1,2,3] [--set KEY=VALUE]
//                 [--out DIR] [--jobs N] [--threads T] [--target E] [--dry-run]
// Runs a grid of training runs, several processes at a time, each a normal run folder under
// DIR/runs/, and writes DIR/summary.csv, DIR/summary.json and DIR/compare.html (docs/compare.md).
// Rerun on the same folder, it keeps finished runs and resumes the others from their checkpoints.
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <thread>

#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "descent/compare/grid.hpp"
#include "descent/compare/summary.hpp"
#include "descent/error.hpp"
#include "descent/io/atomic_file.hpp"
#include "descent/report/compare.hpp"
#include "descent/train/run_folder.hpp"

namespace descent::cli {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

volatile std::sig_atomic_t g_stop = 0;
extern "C" void on_compare_signal(int signal) { g_stop = signal; }

void install_handlers() {
  struct sigaction action {};
  action.sa_handler = on_compare_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = 0;
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
}

// The comparison folder's record of its grid: a rerun must be the same grid.
void check_or_write_grid(const compare::Grid& grid, const fs::path& dir) {
  const fs::path file = dir / "grid.json";
  std::error_code ec;
  if (fs::exists(file, ec)) {
    json saved;
    try {
      saved = json::parse(io::read_file(file, std::size_t{64} << 20));
    } catch (const json::exception& e) {
      throw DataError(file.string() + ": not valid JSON (" + e.what() + ")");
    }
    const std::string digest = saved.value("digest", "");
    if (digest != grid.digest) {
      throw ConfigError(dir.string() + " holds a comparison of another grid (grid.json digest " + digest.substr(0, 12) +
                        ", this grid " + grid.digest.substr(0, 12) +
                        "): rerun it with the grid it was started with, give another --out, or remove the folder");
    }
    return;
  }
  json runs = json::array(), points = json::array();
  for (const compare::Run& r : grid.runs) {
    runs.push_back({{"name", r.name}, {"point", grid.points[r.point].name}, {"seed", r.seed}, {"overrides", r.overrides}});
  }
  for (const compare::Point& p : grid.points) {
    json settings = json::object();
    for (const auto& [k, v] : p.values) settings[k] = v.text;
    points.push_back({{"name", p.name}, {"method", p.method}, {"lr", p.lr}, {"settings", settings}});
  }
  const json out = {{"format", "descent-compare/1"},
                    {"digest", grid.digest},
                    {"source", grid.spec.source},
                    {"config", fs::absolute(grid.spec.config).string()},
                    {"seeds", grid.spec.seeds},
                    {"points", points},
                    {"runs", runs}};
  io::write_file_atomic(file, out.dump(2) + "\n");
}

std::string status_of(const fs::path& run_dir) {
  try {
    return json::parse(io::read_file(run_dir / "run.json", std::size_t{1} << 20)).value("status", "");
  } catch (const std::exception&) {
    return "";
  }
}

bool has_checkpoint(const fs::path& run_dir) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(run_dir / "checkpoints", ec)) {
    if (e.path().extension() == ".ckpt") return true;
  }
  return false;
}

enum class Action { keep, train, retrain, resume };

Action action_for(const fs::path& run_dir) {
  if (!train::holds_run(run_dir)) return Action::train;
  const std::string status = status_of(run_dir);
  if (status == "finished" || status == "failed") return Action::keep;
  return has_checkpoint(run_dir) ? Action::resume : Action::retrain;
}

// Starts `argv` (this program) with stdout and stderr appended to `log`, in its own process
// group (a Ctrl-C reaches only descent compare, which passes it on once).
pid_t launch(const std::vector<std::string>& argv, const fs::path& log) {
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) throw IoError("compare: cannot start a process (fork failed)");
  if (pid == 0) {
    ::setpgid(0, 0);
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      ::dup2(fd, STDOUT_FILENO);
      ::dup2(fd, STDERR_FILENO);
      ::close(fd);
    }
    ::execv("/proc/self/exe", args.data());
    ::_exit(127);
  }
  return pid;
}

std::string pct(const json& v) {
  if (v.is_null()) return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f%%", 100.0 * v.get<double>());
  return buf;
}

}  // namespace

void add_compare(CLI::App& app, CompareArgs& args) {
  CLI::App* cmd = app.add_subcommand(
      "compare", "Train a grid of runs (optimizers x learning rates x seeds, ...) and rank them (docs/compare.md)");
  cmd->add_option("grid", args.input, "GRID.toml, or a config file (TOML) with --vary")->required();
  cmd->add_option("--vary", args.vary, "Vary a config key: KEY=V1,V2,... or KEY=log:A:B:N / lin:A:B:N (repeatable)");
  cmd->add_option("--set", args.set, "Set a config key for every run, e.g. --set epochs=3 (repeatable)");
  cmd->add_option("--seeds", args.seeds, "Seeds of every grid point, e.g. 1,2,3 (default: the grid's, or 1)");
  cmd->add_option("--out", args.out, "The comparison folder (default: the grid's out, else runs/compare-<name>)");
  cmd->add_option("--jobs", args.jobs, "Runs at a time (default: the grid's jobs, else 1)")->check(CLI::Range(1, 256));
  cmd->add_option("--threads", args.threads, "Threads of each run (default: the cores divided by --jobs, at least 1)")
      ->check(CLI::Range(1, 1024));
  cmd->add_option("--target", args.target, "Target validation 0-1 error for time and steps to target, in [0, 1]")
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_flag("--dry-run", args.dry_run, "Print the runs of the grid and what would be done, and train nothing");
}

int run_compare(const CompareArgs& args) {
  compare::GridSpec spec;
  if (!args.vary.empty()) {
    spec.config = args.input;
    spec.source = args.input;
    for (const std::string& v : args.vary) {
      compare::Axis axis = compare::parse_vary(v);
      for (const compare::Axis& other : spec.vary) {
        if (other.key == axis.key) throw ConfigError("--vary " + v + ": " + axis.key + " is varied twice");
      }
      spec.vary.push_back(std::move(axis));
    }
  } else {
    spec = compare::load_grid(args.input);
  }
  for (const std::string& s : args.set) spec.set.push_back(compare::parse_set(s));
  if (!args.seeds.empty()) spec.seeds = compare::parse_seeds(args.seeds);
  if (args.jobs > 0) spec.jobs = args.jobs;
  if (!std::isnan(args.target)) spec.target_val_error = args.target;
  fs::path dir = args.out.empty() ? spec.out : fs::path(args.out);
  if (dir.empty()) dir = fs::path("runs") / ("compare-" + fs::path(args.input).stem().string());
  const compare::Grid grid = compare::expand(spec);
  const int jobs = spec.jobs > 0 ? spec.jobs : 1;
  const int cores = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  const int threads = args.threads > 0 ? args.threads : std::max(1, cores / jobs);
  const fs::path runs_dir = dir / "runs", logs = dir / "logs";

  std::vector<Action> actions;
  std::size_t keep = 0, resume = 0;
  for (const compare::Run& r : grid.runs) {
    actions.push_back(action_for(runs_dir / r.name));
    keep += actions.back() == Action::keep;
    resume += actions.back() == Action::resume;
  }
  std::cout << "compare: " << grid.points.size() << " grid points x " << spec.seeds.size() << " seeds = "
            << grid.runs.size() << " runs; " << keep << " done (kept), " << resume << " to resume, "
            << grid.runs.size() - keep - resume << " to train; " << jobs << " at a time, " << threads
            << " thread(s) each; " << dir.string() << "\n";
  if (args.dry_run) {
    const char* names[] = {"keep", "train", "train", "resume"};
    for (std::size_t i = 0; i < grid.runs.size(); ++i) {
      std::cout << names[static_cast<int>(actions[i])] << " " << grid.runs[i].name;
      for (const std::string& o : grid.runs[i].overrides) std::cout << " --set " << o;
      std::cout << "\n";
    }
    return 0;
  }
  fs::create_directories(runs_dir);
  fs::create_directories(logs);
  check_or_write_grid(grid, dir);

  install_handlers();
  const std::string config = fs::absolute(spec.config).string();
  std::map<pid_t, std::size_t> running;
  std::size_t next = 0, done = keep, failed = 0;
  const auto started = std::chrono::steady_clock::now();
  bool forwarded = false;
  while (true) {
    if (g_stop != 0 && !forwarded) {
      for (const auto& [pid, i] : running) ::kill(pid, SIGTERM);  // each run writes a checkpoint and stops
      forwarded = true;
    }
    while (g_stop == 0 && running.size() < static_cast<std::size_t>(jobs) && next < grid.runs.size()) {
      const std::size_t i = next++;
      if (actions[i] == Action::keep) continue;
      const compare::Run& r = grid.runs[i];
      std::vector<std::string> argv{"descent"};
      if (actions[i] == Action::resume) {
        argv.insert(argv.end(), {"resume", (runs_dir / r.name).string()});
      } else {
        argv.insert(argv.end(), {"train", config});
        for (const std::string& o : r.overrides) argv.insert(argv.end(), {"--set", o});
        argv.insert(argv.end(), {"--set", "threads=" + std::to_string(threads), "--set", "progress=plain", "--out",
                                 fs::absolute(runs_dir).string(), "--name", r.name});
        if (actions[i] == Action::retrain) argv.push_back("--overwrite");
      }
      running[launch(argv, logs / (r.name + ".log"))] = i;
      std::cout << (actions[i] == Action::resume ? "resume " : "train  ") << r.name << "\n" << std::flush;
    }
    if (running.empty()) break;
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid <= 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      continue;
    }
    const auto it = running.find(pid);
    if (it == running.end()) continue;
    const compare::Run& r = grid.runs[it->second];
    running.erase(it);
    const compare::RunOutcome o = compare::read_run(runs_dir / r.name, spec.target_val_error);
    if (o.status == "finished" || o.status == "diverged") {
      ++done;
      std::cout << "[" << done << "/" << grid.runs.size() << "] " << r.name << " " << o.status;
      if (o.best_val_error) std::cout << ", best validation error " << pct(json(*o.best_val_error));
      if (o.wall_s) {
        char buf[32];
        std::snprintf(buf, sizeof buf, ", %.1f s", *o.wall_s);
        std::cout << buf;
      }
      std::cout << "\n" << std::flush;
    } else if (g_stop == 0) {
      ++failed;
      const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      std::cerr << "descent: warning: compare: " << r.name << " failed (exit " << code << "): see "
                << (logs / (r.name + ".log")).string() << "\n";
    }
  }
  const double wall =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  const json summary = compare::summarize(grid, runs_dir);
  io::write_file_atomic(dir / "summary.json", summary.dump(2) + "\n");
  io::write_file_atomic(dir / "summary.csv", compare::summary_csv(summary));
  try {
    report::write_compare(summary, dir / "compare.html");
  } catch (const Error& e) {
    std::cerr << "descent: warning: no compare.html: " << e.what() << "\n";
  }
  if (g_stop != 0) {
    std::cerr << "descent: compare interrupted (" << (g_stop == SIGINT ? "SIGINT" : "SIGTERM")
              << "): the runs in progress wrote checkpoints; run the same command again to continue\n";
    return 128 + g_stop;
  }
  std::cout << "ranking (mean best validation error over seeds, +- standard deviation; " << summary["rule"].get<std::string>()
            << ")\n";
  for (const json& e : summary["ranking"]) {
    const json& b = e["best_val_error"];
    std::cout << "  " << e["rank"].get<int>() << ". " << e["method"].get<std::string>() << " lr "
              << e["lr"].get<double>() << ": " << pct(b["mean"]) << " +- " << pct(b["std"]) << " (n " << b["n"].get<int>()
              << ")";
    if (!e["within_noise_of"].empty()) {
      std::cout << ", within noise of";
      for (const json& m : e["within_noise_of"]) std::cout << " " << m.get<std::string>();
    }
    std::cout << "\n";
  }
  std::cout << "wall time " << static_cast<long>(std::lround(wall)) << " s\n"
            << (dir / "summary.csv").string() << "\n"
            << (dir / "compare.html").string() << "\n";
  if (failed > 0) {
    throw Error("compare: " + std::to_string(failed) + " run(s) failed (see their logs under " + logs.string() +
                "); the others are summarized");
  }
  return 0;
}

}  // namespace descent::cli
