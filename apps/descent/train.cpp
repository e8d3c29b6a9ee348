// descent train CONFIG.toml [--set key=value ...] [--out DIR] [--name NAME]
#include <iomanip>
#include <iostream>

#include "commands.hpp"
#include "descent/train/trainer.hpp"

namespace descent::cli {

void add_train(CLI::App& app, TrainArgs& args) {
  CLI::App* cmd = app.add_subcommand("train", "Train a model from a config file and write its run folder");
  cmd->add_option("config", args.config, "The config file (TOML); see docs/config.md")->required();
  cmd->add_option("--set", args.overrides, "Override a config key, e.g. --set optimizer.lr=0.01 (repeatable)");
  cmd->add_option("--out", args.out, "Parent folder of the run folder (default: the config's out_dir, runs)");
  cmd->add_option("--name", args.name, "Name of the run folder (default: the config's name)");
}

int run_train(const TrainArgs& args) {
  std::vector<std::string> overrides = args.overrides;
  if (!args.out.empty()) overrides.push_back("out_dir=\"" + args.out + "\"");
  if (!args.name.empty()) overrides.push_back("name=\"" + args.name + "\"");
  const train::TrainConfig config = train::load_train_config(args.config, overrides);
  const train::RunResult r = train::run(config, &std::cerr);
  std::cout << std::fixed << std::setprecision(2) << "test accuracy " << 100.0 * (1.0 - r.test.error) << "% (0-1 error "
            << 100.0 * r.test.error << "%, loss " << std::setprecision(4) << r.test.loss << ")  best epoch "
            << r.best_epoch << " of " << r.epochs_run << (r.stopped_early ? " (stopped early)" : "") << "  |g| at stop "
            << std::setprecision(3) << r.grad_norm_at_stop << "  " << std::setprecision(1) << r.wall_seconds << " s  "
            << r.run_dir.string() << "\n";
  return 0;
}

}  // namespace descent::cli
