#pragma once
// Learning-rate schedules and optimizers over the flat parameter buffer.
//
// An Optimizer reads the gradient from arena.grads() and updates arena.values() in one
// fused pass (DESIGN.md, decisions 1 and 2). Its state (velocity, ...) is a flat vector of
// the arena's layout, explicit so that checkpoints can save it.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "descent/tensor/arena.hpp"

namespace descent::optim {

// eps_k: the learning rate used at update k = 0, 1, 2, ...
class Schedule {
 public:
  virtual ~Schedule() = default;
  virtual double at(std::int64_t k) const = 0;
  virtual std::string describe() const = 0;
};

// eps_k = eps.
std::shared_ptr<Schedule> constant(double eps);

// The textbook's linear decay (Goodfellow et al. 2016, eq. 8.14):
//   eps_k = (1 - k/tau) eps_0 + (k/tau) eps_tau   for k <= tau,   eps_tau after.
// Throws ConfigError unless eps_0 > 0, eps_tau >= 0, tau >= 1.
std::shared_ptr<Schedule> linear_decay(double eps0, double eps_tau, std::int64_t tau);

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  // Called before the gradient of update k is computed. Methods that evaluate the gradient
  // at an interim point (Nesterov momentum, Algorithm 8.3: theta + alpha v) move
  // arena.values() there; step() then moves them to the new iterate. Default: nothing.
  virtual void prepare(ParameterArena& arena, std::int64_t k) {
    (void)arena;
    (void)k;
  }
  // One update of arena.values() from arena.grads(); k counts the updates before this one.
  virtual void step(ParameterArena& arena, std::int64_t k) = 0;
  virtual double learning_rate(std::int64_t k) const = 0;
  virtual std::string describe() const = 0;
  // The state vectors (each of the arena's size), for checkpoints.
  virtual std::vector<Tensor> state() const = 0;
};

// Stochastic gradient descent (Algorithm 8.1), with momentum when alpha > 0 (Algorithm 8.2):
//   v     <- alpha v - eps_k g
//   theta <- theta + v
// With alpha = 0 this is theta <- theta - eps_k g exactly (no velocity is kept).
struct SgdOptions {
  std::shared_ptr<Schedule> schedule;
  double alpha = 0.0;  // momentum, in [0, 1)
};
std::unique_ptr<Optimizer> sgd(const SgdOptions& options);

}  // namespace descent::optim
