// descent train CONFIG.toml [--set key=value ...] [--out DIR] [--name NAME] [--overwrite | --fresh-name]
// descent resume RUN_DIR
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstring>
#include <iomanip>
#include <iostream>

#include "commands.hpp"
#include "descent/train/distributed.hpp"
#include "descent/train/trainer.hpp"

namespace descent::cli {
namespace {

std::atomic<int> g_signals{0};  // lock-free, so usable in a signal handler

// The first SIGINT or SIGTERM asks the loop to stop after its current update and write a
// checkpoint; a second one ends the process at once (the signal's default action: the
// checkpoints already written are intact, being written atomically). Only async-signal-safe
// calls here.
extern "C" void on_stop_signal(int signal) {
  if (g_signals.fetch_add(1) > 0) {
    std::signal(signal, SIG_DFL);
    std::raise(signal);
    return;
  }
  static const char message[] =
      "\ndescent: stopping after the current step to write a checkpoint (signal again to quit at once)\n";
  const char* mpi = train::distributed_stop_message();  // under mpirun: rank 0 names the run folder
  [[maybe_unused]] const ssize_t written =
      mpi != nullptr ? ::write(STDERR_FILENO, mpi, std::strlen(mpi)) : ::write(STDERR_FILENO, message, sizeof message - 1);
  train::request_stop(signal);
}

void install_stop_handlers() {
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = 0;
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
}

// The summary line and the report's path on stdout; nothing with progress = "none" (the
// report is still written: a failure to write it is a warning on stderr).
int report(const train::RunResult& r) {
  train::Communicator& world = train::Communicator::world();
  if (!world.root()) return 0;  // mpirun: rank 0 reports (docs/distributed.md)
  if (world.distributed() && r.shows_progress && world.calls() > 0) {
    std::cerr << std::fixed << std::setprecision(3) << "descent: " << world.size() << " ranks; gradient all-reduce: "
              << world.calls() << " calls, " << static_cast<double>(world.bytes()) / static_cast<double>(world.calls()) / 1e6
              << " MB and " << 1e3 * world.seconds() / static_cast<double>(world.calls())
              << " ms per step on rank 0 (waiting for the other ranks included)\n";
  }
  if (!r.shows_progress) {
    report_after_run(r.run_dir, /*announce=*/false);
    return 0;
  }
  std::cout << std::fixed << std::setprecision(2) << "test accuracy " << 100.0 * (1.0 - r.test.error) << "% (0-1 error "
            << 100.0 * r.test.error << "%, loss " << std::setprecision(4) << r.test.loss << ")  best epoch "
            << r.best_epoch << " of " << r.epochs_run << (r.stopped_early ? " (stopped early)" : "")
            << (r.sampler_exhausted ? " (the stream ran out)" : "") << "  |g| at stop "
            << std::setprecision(3) << r.grad_norm_at_stop << "  " << std::setprecision(1) << r.wall_seconds << " s  "
            << r.run_dir.string() << "\n";
  report_after_run(r.run_dir);
  return 0;
}

// Runs `body`; an interruption is reported on stderr with exit status 128 + the signal.
template <class F>
int interruptible(F body) {
  install_stop_handlers();
  try {
    return report(body());
  } catch (const train::Interrupted& e) {
    std::cerr << "descent: " << e.what() << "\n";
    return 128 + e.signal();
  }
}

}  // namespace

void add_train(CLI::App& app, TrainArgs& args) {
  CLI::App* cmd = app.add_subcommand("train", "Train a model from a config file and write its run folder");
  cmd->add_option("config", args.config, "The config file (TOML); see docs/config.md")->required();
  cmd->add_option("--set", args.overrides, "Override a config key, e.g. --set optimizer.lr=0.01 (repeatable)");
  cmd->add_option("--out", args.out, "Parent folder of the run folder (default: the config's out_dir, runs)");
  cmd->add_option("--name", args.name, "Name of the run folder (default: the config's name)");
  CLI::Option* overwrite = cmd->add_flag(
      "--overwrite", args.overwrite, "If the run folder holds a run, remove that run's files first (see docs/reliability.md)");
  cmd->add_flag("--fresh-name", args.fresh_name,
                "If the run folder holds a run, train into NAME-2, NAME-3, ... (the first that does not exist)")
      ->excludes(overwrite);
}

int run_train(const TrainArgs& args) {
  install_stop_handlers();  // before the config and data load: a signal then stops at the first step, with a checkpoint
  std::vector<std::string> overrides = args.overrides;
  if (!args.out.empty()) overrides.push_back("out_dir=\"" + args.out + "\"");
  if (!args.name.empty()) overrides.push_back("name=\"" + args.name + "\"");
  const train::TrainConfig config = train::load_train_config(args.config, overrides);
  const train::ExistingRun existing = args.overwrite    ? train::ExistingRun::overwrite
                                      : args.fresh_name ? train::ExistingRun::fresh_name
                                                        : train::ExistingRun::refuse;
  return interruptible([&] { return train::run(config, &std::cerr, {}, existing); });
}

void add_resume(CLI::App& app, ResumeArgs& args) {
  CLI::App* cmd = app.add_subcommand(
      "resume", "Continue a run from the newest valid checkpoint in its folder (see docs/reliability.md)");
  cmd->add_option("run_dir", args.run_dir, "The run folder (holds config.toml, metrics.jsonl, checkpoints/)")->required();
}

int run_resume(const ResumeArgs& args) {
  return interruptible([&] { return train::resume(args.run_dir, &std::cerr); });
}

}  // namespace descent::cli
