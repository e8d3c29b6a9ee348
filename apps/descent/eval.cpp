// descent eval MODEL.safetensors --config CONFIG.toml [--split test|validation|train]
#include <iomanip>
#include <iostream>

#include "commands.hpp"
#include "descent/io/model_file.hpp"
#include "descent/train/trainer.hpp"

namespace descent::cli {

void add_eval(CLI::App& app, EvalArgs& args) {
  CLI::App* cmd = app.add_subcommand("eval", "Evaluate saved weights: surrogate loss, 0-1 error, accuracy, confusion matrix");
  cmd->add_option("model", args.model, "The weights (model.safetensors of a run folder)")->required();
  cmd->add_option("--config", args.config, "The config the model was trained with (its run folder's config.toml)")->required();
  cmd->add_option("--set", args.overrides, "Override a config key (repeatable)");
  cmd->add_option("--split", args.split, "Which data to evaluate on")->check(CLI::IsMember({"test", "validation", "train"}));
}

int run_eval(const EvalArgs& args) {
  const train::TrainConfig config = train::load_train_config(args.config, args.overrides);
  train::Data data = train::load_data(config);
  train::Model model = train::build_model(config.model, data.dim, data.num_classes, config.seed);
  io::load_parameters(args.model, *model.arena);
  const train::Split& split = args.split == "train" ? data.train : args.split == "validation" ? data.validation : data.test;
  if (split.size() == 0) throw ConfigError("the " + args.split + " split is empty");
  std::vector<std::int64_t> confusion;
  const train::Evaluation e = train::evaluate(model, split, 1000, &confusion);
  std::cout << std::fixed << args.split << ": " << e.examples << " examples  loss " << std::setprecision(4) << e.loss
            << "  0-1 error " << std::setprecision(2) << 100.0 * e.error << "%  accuracy " << 100.0 * (1.0 - e.error)
            << "%\nconfusion matrix (row: true class, column: predicted)\n";
  const auto c = static_cast<std::size_t>(data.num_classes);
  std::cout << "      ";
  for (std::size_t j = 0; j < c; ++j) std::cout << std::setw(6) << j;
  std::cout << "\n";
  for (std::size_t i = 0; i < c; ++i) {
    std::cout << std::setw(6) << i;
    for (std::size_t j = 0; j < c; ++j) std::cout << std::setw(6) << confusion[i * c + j];
    std::cout << "\n";
  }
  return 0;
}

}  // namespace descent::cli
