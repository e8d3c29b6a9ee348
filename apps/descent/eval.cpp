// descent eval RUN_DIR [--split test|validation|train]
// descent eval MODEL --config CONFIG.toml [--split test|validation|train] [--params best|current]
// A run folder means its model.safetensors under its config.toml (--config may name another).
// MODEL is the model.safetensors of a run folder, other weights of the config's model (F32 or
// F64: converted to the model's dtype), or a checkpoint (checkpoints/step-*.ckpt), whose best
// parameters (or, with --params current, those of its last step) are evaluated.
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <cstring>
#include <limits>

#include "commands.hpp"
#include "descent/io/atomic_file.hpp"
#include "descent/io/model_file.hpp"
#include "descent/train/checkpoint.hpp"
#include "descent/train/trainer.hpp"

namespace descent::cli {
namespace {

// Loads the parameters args.params ("best", the default, or "current") of the checkpoint
// args.model into `model`. The checkpoint's tensors are flat; they are given names by the model
// of the checkpoint's own config, so that a checkpoint of another model is reported as a model
// file would be (the first tensor that differs, with both shapes). Returns what was loaded.
// A run folder given as MODEL: its model.safetensors, and its config.toml unless --config
// names one. A file: as given, and --config is required.
EvalArgs resolve_run_folder(EvalArgs args) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_directory(args.model, ec)) {
    const fs::path dir = args.model;
    if (!fs::exists(dir / "model.safetensors", ec)) {
      throw ConfigError(args.model + ": a folder without model.safetensors (descent eval takes a run folder that finished, "
                        "a model.safetensors or a checkpoint)");
    }
    if (args.config.empty()) {
      if (!fs::exists(dir / "config.toml", ec)) {
        throw ConfigError(args.model + ": a run folder without config.toml; name the model's config with --config");
      }
      args.config = (dir / "config.toml").string();
    }
    args.model = (dir / "model.safetensors").string();
  } else if (args.config.empty()) {
    throw ConfigError("--config CONFIG.toml is required with a weights file (" + args.model +
                      "); give the run folder instead to use its config.toml");
  }
  return args;
}

std::string load_checkpoint(const EvalArgs& args, const train::Data& data, train::Model& model) {
  const std::string& path = args.model;
  const train::Checkpoint c =
      train::decode_checkpoint(io::read_file(path, std::numeric_limits<std::size_t>::max()), path);
  const train::TrainConfig own_config = train::parse_train_config(c.config_toml, path + " (its config)");
  train::Model own = train::build_model(own_config.model, data.dim, data.num_classes, own_config.seed);
  ParameterArena& arena = *own.arena;
  const bool best = args.params != "current";
  arena.values().copy_from(c.tensor(best ? "best" : "params", arena.values(), path));
  if (arena.buffer_size() > 0) arena.buffers().copy_from(c.tensor(best ? "best_buffers" : "buffers", arena.buffers(), path));
  // The checkpoint's parameters under their names, as a model file holds them.
  io::Safetensors named;
  const auto add = [&](const std::string& name, const Shape& shape, const Tensor& t) {
    io::TensorData d{name, arena.dtype() == DType::f64 ? "F64" : "F32",
                     std::vector<std::int64_t>(shape.dims().begin(), shape.dims().end()),
                     std::vector<std::byte>(t.nbytes())};
    if (t.nbytes() > 0) std::memcpy(d.data.data(), t.raw(), t.nbytes());
    named.tensors.push_back(std::move(d));
  };
  for (std::size_t i = 0; i < arena.count(); ++i) {
    const ParamId id{static_cast<std::int32_t>(i)};
    add(arena.entry(id).name, arena.entry(id).shape, arena.value(id));
  }
  for (std::size_t i = 0; i < arena.buffer_count(); ++i) {
    const BufferId id{static_cast<std::int32_t>(i)};
    add(arena.buffer_entry(id).name, arena.buffer_entry(id).shape, arena.buffer(id));
  }
  named.metadata["model"] = own.net->describe();
  io::load_parameters(named, path, *model.arena, {.model = "the model of this config (" + args.config + ")"});
  std::string what = path + ": a checkpoint after " + std::to_string(c.step) + " updates; evaluating its ";
  if (best) {
    const auto& stopping = c.state.value("early_stopping", nlohmann::json::object());
    what += "best parameters (by validation";
    if (stopping.contains("best_epoch")) what += ", epoch " + std::to_string(stopping["best_epoch"].get<std::int64_t>());
    what += "; --params current for those of its last step)";
  } else {
    what += "current parameters (those of its last step)";
  }
  return what;
}

}  // namespace

void add_eval(CLI::App& app, EvalArgs& args) {
  CLI::App* cmd = app.add_subcommand("eval", "Evaluate saved weights: surrogate loss, 0-1 error, accuracy, confusion matrix");
  cmd->add_option("model", args.model,
                  "A run folder (its model.safetensors and config.toml), or the weights: a model.safetensors or a "
                  "checkpoints/step-*.ckpt")
      ->required();
  cmd->add_option("--config", args.config,
                  "The config the model was trained with (its run folder's config.toml); required with a weights file");
  cmd->add_option("--set", args.overrides, "Override a config key (repeatable)");
  cmd->add_option("--split", args.split, "Which data to evaluate on")->check(CLI::IsMember({"test", "validation", "train"}));
  cmd->add_option("--params", args.params, "For a checkpoint: its best parameters (by validation) or those of its last step")
      ->check(CLI::IsMember({"best", "current"}));
}

int run_eval(const EvalArgs& given) {
  const EvalArgs args = resolve_run_folder(given);
  const train::TrainConfig config = train::load_train_config(args.config, args.overrides);
  // The file first: a file that is not weights is reported before the data is read.
  const io::Safetensors file = io::read_model_file(args.model);
  const bool checkpoint = io::is_checkpoint(file);
  if (!checkpoint && !args.params.empty()) {
    throw ConfigError("--params " + args.params + ": only for a checkpoint; " + args.model + " holds model weights");
  }
  train::Data data = train::load_data(config);
  train::Model model = train::build_model(config.model, data.dim, data.num_classes, config.seed);
  if (checkpoint) {
    std::cout << load_checkpoint(args, data, model) << "\n";
  } else {
    io::load_parameters(file, args.model, *model.arena, {.model = "the model of this config (" + args.config + ")"});
  }
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
