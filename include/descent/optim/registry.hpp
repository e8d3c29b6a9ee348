#pragma once
// The registry of named optimizers and learning-rate schedules: the one list from which the
// config's validation, the CLI's help, the "did you mean" of errors, docs/config.md's lists
// and the tests' lists of names all come.
//
// Adding an optimizer: its element-wise update rule (src/optim/rules.hpp) with the link that
// runs it (transform.hpp / transform.cpp), one entry in kOptimizers (src/optim/registry.cpp:
// defaults, the keys it reads, and the function that appends its links to the chain and
// names its fused loop, if any), one test (tests/optim/registry_test.cpp builds and trains
// every entry by itself; an algorithms_test.cpp case checks it against its equations) and
// one section of docs/optimizers.md. The factory (make_optimizer) only looks the name up.
// Adding a schedule: its class (schedule.hpp) and one entry in kSchedules with its
// constructor from ScheduleConfig; docs/config.md's list is regenerated from here.
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "descent/optim/config.hpp"
#include "descent/optim/optimizer.hpp"
#include "descent/optim/schedule.hpp"

namespace descent::optim {

// The hyperparameters an optimizer takes when the config leaves them unset.
struct OptimizerDefaults {
  double lr = 0.01;
  double momentum = 0.0;  // alpha (mu)
  double rho = 0.0;       // rmsprop, adadelta
  double delta = 0.0;
  double weight_decay = 0.0;  // lambda when the config leaves it 0 (adamw: 0.01)
};

// Defined in src/optim/recipe.hpp (internal): what an entry's chain builder is given and fills.
struct ChainArgs;
struct ChainRecipe;

struct OptimizerEntry {
  std::string_view name;
  std::string_view doc;  // one line: what it is and where it comes from
  // The [optimizer] keys it reads besides name, form and weight_decay (which every one reads).
  std::span<const std::string_view> keys;
  OptimizerDefaults textbook;
  OptimizerDefaults pytorch;
  bool has_pytorch_form = true;
  // true: weight_decay is decoupled (the builder places it, AdamW); false: L2 decay, which
  // the factory puts in front of the builder's links.
  bool decoupled_weight_decay = false;
  // Appends the algorithm's links (scale_by_learning_rate included) to recipe.links and,
  // where a fused loop computes that chain, sets recipe.fused.kernel. Throws ConfigError
  // for a combination it refuses, naming the optimizer.
  void (*chain)(const ChainArgs& args, ChainRecipe& recipe) = nullptr;
};

struct ScheduleEntry {
  std::string_view name;
  std::string_view doc;  // one line: eps_k as a formula of the [schedule] keys
  std::span<const std::string_view> keys;  // the [schedule] keys it reads
  // Builds it from the config: lr is eps_0; total_steps the run's planned updates (what
  // tau = 0 means). Throws ConfigError naming the schedule and the key for a bad value.
  std::shared_ptr<Schedule> (*make)(const ScheduleConfig& config, double lr, std::int64_t total_steps);
};

// Every optimizer and schedule, in the order the docs list them.
std::span<const OptimizerEntry> optimizers();
std::span<const ScheduleEntry> schedules();
// Their names, in the same order (views of static storage).
std::span<const std::string_view> optimizer_name_list();
std::span<const std::string_view> schedule_name_list();
// The entry of a name, or nullptr.
const OptimizerEntry* find_optimizer(std::string_view name);
const ScheduleEntry* find_schedule(std::string_view name);
// `unknown optimizer name "adamm"; expected one of sgd, ..., nadam; did you mean adam?`
std::string unknown_optimizer(std::string_view name);
std::string unknown_schedule(std::string_view name);

// "rmsprop" or "adam and adamw": the optimizers whose entry reads `key`.
std::string readers_of(std::string_view key);

// A combination of keys that the named optimizer refuses, exactly those make_optimizer
// refuses: sgd with momentum > 0, centered or amsgrad on an optimizer that does not read
// them, form = "pytorch" where PyTorch has no such optimizer. Other keys it does not read
// are ignored.
struct KeyConflict {
  std::string key;      // the dotted key at fault, e.g. "optimizer.momentum"
  std::string message;  // what is wrong and what to do, without the key
};
// The first conflict of `config`, or an empty key when there is none. Assumes a known name.
KeyConflict check_keys(const OptimizerConfig& config);

// The factory's spec for a config (momentum + nesterov = true becomes "nesterov").
OptimizerSpec optimizer_spec(const OptimizerConfig& optimizer, const ClipConfig& clip, const AveragingConfig& averaging);
// The schedule of a config starting at `lr`. lr_scale multiplies every rate of it (a
// rollback after divergence lowers it). Throws ConfigError for an unknown name or bad value.
std::shared_ptr<Schedule> make_schedule(const ScheduleConfig& schedule, double lr, std::int64_t total_steps,
                                        double lr_scale = 1.0);
// The optimizer a training config asks for: spec, schedule (from the algorithm's default
// rate when lr is unset) and the optimizer. total_steps: the updates the run plans.
std::unique_ptr<Optimizer> make_optimizer(const OptimizerConfig& optimizer, const ScheduleConfig& schedule,
                                          const ClipConfig& clip, const AveragingConfig& averaging,
                                          std::int64_t total_steps, double lr_scale = 1.0);

}  // namespace descent::optim
