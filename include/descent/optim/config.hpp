#pragma once
// The optimizer side of the training config: the [optimizer], [schedule], [clip] and
// [averaging] tables of a config file (docs/config.md), as plain structs. Reading them from
// TOML is train/config.hpp's job; optim/registry.hpp turns them into an Optimizer.
#include <cstdint>
#include <optional>
#include <string>

namespace descent::optim {

struct OptimizerConfig {
  // One of optim::optimizers() (registry.hpp; docs/optimizers.md).
  std::string name = "sgd";
  std::string form = "textbook";  // textbook | pytorch: where delta sits, how momentum/Nesterov are written
  // Unset hyperparameters take the algorithm's textbook default (docs/optimizers.md).
  std::optional<double> lr;        // epsilon; finite, > 0
  std::optional<double> momentum;  // alpha; in [0, 1)
  bool nesterov = false;           // with name = "momentum": Nesterov momentum (Algorithm 8.3)
  std::optional<double> rho;       // RMSProp / AdaDelta decay; in [0, 1)
  std::optional<double> rho1;      // Adam first-moment decay; in [0, 1)
  std::optional<double> rho2;      // Adam second-moment decay; in [0, 1)
  std::optional<double> delta;     // numerical stabilizer; finite, > 0
  double weight_decay = 0.0;       // finite, >= 0 (L2 for sgd..adam, decoupled for adamw)
  bool centered = false;           // rmsprop: PyTorch's centered variant
  bool amsgrad = false;            // adam / adamw: AMSGrad

  bool operator==(const OptimizerConfig&) const = default;
};

struct ScheduleConfig {
  // One of optim::schedules() (registry.hpp): constant | linear (eq. 8.14) | step | exponential |
  // inverse_time | cosine | plateau (reduce on plateau of the monitored metric)
  std::string name = "constant";
  double lr_end = -1.0;      // linear: eps_tau; cosine: the floor; plateau: the floor. < 0 means lr / 100 (linear) or 0
  std::int64_t tau = 0;      // linear and cosine: steps, >= 0; 0 means the run's total number of steps
  double gamma = 0.1;        // step: factor per drop; exponential: factor per step. In (0, 1]
  std::int64_t every = 1000; // step: updates between drops, >= 1
  double decay = 1e-3;       // inverse_time: eps_k = lr / (1 + decay k), >= 0
  std::int64_t warmup = 0;   // cosine: linear warmup steps, >= 0
  double factor = 0.1;       // plateau: multiply the rate by this, in (0, 1)
  std::int64_t patience = 2; // plateau: epochs without improvement before a cut, >= 0

  bool operator==(const ScheduleConfig&) const = default;
};

// Gradient clipping (section 8.2.4): 0 turns a rule off.
struct ClipConfig {
  double global_norm = 0.0;  // rescale g when ||g|| > c
  double value = 0.0;        // clamp each component to [-c, c]
  double param_norm = 0.0;   // rescale each parameter tensor's gradient when its norm > c

  bool operator==(const ClipConfig&) const = default;
};

// Polyak averaging of the iterates (section 8.7.3); evaluation uses the averaged weights.
struct AveragingConfig {
  std::string kind = "none";  // none | arithmetic | exponential
  double rho = 0.999;         // exponential: theta_avg <- rho theta_avg + (1 - rho) theta; in [0, 1)

  bool operator==(const AveragingConfig&) const = default;
};

}  // namespace descent::optim
