#pragma once
// Learning-rate schedules: eps_k, the learning rate of update k = 0, 1, 2, ...
//
// Any learning rate in descent::optim may be a schedule (scale_by_learning_rate takes one).
// A schedule is a function of k, except reduce_on_plateau, which also watches a validation
// metric that the trainer reports through observe(); its state (current rate, best metric,
// bad-epoch count) is saved with the optimizer so that a resumed run continues exactly.
//
// Every factory throws ConfigError naming the schedule and the hyperparameter when a value
// is out of range (rates must be positive and finite, factors in (0, 1], ...).
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace descent::optim {

class Schedule {
 public:
  virtual ~Schedule() = default;
  // eps_k. Cost: O(1).
  virtual double at(std::int64_t k) const = 0;
  virtual std::string describe() const = 0;
  // A validation metric measured after some updates (lower is better). Only
  // reduce_on_plateau reacts; every other schedule ignores it.
  virtual void observe(double metric) { (void)metric; }
  // The mutable state for checkpoints (empty for the pure functions of k).
  virtual std::vector<double> state() const { return {}; }
  // Restores state(); throws DataError when the length does not match.
  virtual void load_state(const std::vector<double>& state);
};

// eps_k = eps.
std::shared_ptr<Schedule> constant(double eps);

// The textbook's linear decay (Goodfellow et al. 2016, eq. 8.14):
//   eps_k = (1 - k/tau) eps_0 + (k/tau) eps_tau   for k <= tau,   eps_tau after.
// Throws ConfigError unless eps_0 > 0, eps_tau >= 0, tau >= 1.
std::shared_ptr<Schedule> linear_decay(double eps0, double eps_tau, std::int64_t tau);

// Step decay: eps_k = eps0 * gamma^floor(k / every)   (torch.optim.lr_scheduler.StepLR).
struct StepDecayOptions {
  double eps0 = 0.01;
  double gamma = 0.1;       // in (0, 1]
  std::int64_t every = 1;   // updates between drops, >= 1
};
std::shared_ptr<Schedule> step_decay(const StepDecayOptions& options);

// Exponential decay: eps_k = eps0 * gamma^k   (torch ExponentialLR, per update).
struct ExponentialDecayOptions {
  double eps0 = 0.01;
  double gamma = 0.999;  // in (0, 1]
};
std::shared_ptr<Schedule> exponential_decay(const ExponentialDecayOptions& options);

// Inverse time: eps_k = eps0 / (1 + decay * k)   (Adagrad's lr_decay in PyTorch).
struct InverseTimeOptions {
  double eps0 = 0.01;
  double decay = 1e-3;  // >= 0
};
std::shared_ptr<Schedule> inverse_time(const InverseTimeOptions& options);

// Cosine with linear warmup:
//   k < warmup:  eps_k = eps0 * (k + 1) / warmup
//   else:        t = min(1, (k - warmup) / (total - warmup))
//                eps_k = eps_min + (eps0 - eps_min) * (1 + cos(pi t)) / 2
// Throws ConfigError unless 0 <= eps_min <= eps0, 0 <= warmup < total.
struct CosineOptions {
  double eps0 = 0.01;
  double eps_min = 0.0;
  std::int64_t warmup = 0;
  std::int64_t total = 1000;
};
std::shared_ptr<Schedule> cosine(const CosineOptions& options);

// Reduce on plateau (the rule of torch.optim.lr_scheduler.ReduceLROnPlateau, mode "min",
// relative threshold): observe(m) counts m as an improvement when m < best * (1 - threshold);
// after more than `patience` observations without one, eps <- max(eps * factor, eps_min)
// and `cooldown` observations are ignored. at(k) is the current eps for every k.
struct PlateauOptions {
  double eps0 = 0.01;
  double factor = 0.1;        // in (0, 1)
  std::int64_t patience = 10; // >= 0
  double threshold = 1e-4;    // >= 0
  std::int64_t cooldown = 0;  // >= 0
  double eps_min = 0.0;       // >= 0
};
std::shared_ptr<Schedule> reduce_on_plateau(const PlateauOptions& options);

}  // namespace descent::optim
