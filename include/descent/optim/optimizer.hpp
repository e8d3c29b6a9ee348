#pragma once
// Optimizers over the flat parameter buffer (DESIGN.md, decisions 1 and 2).
//
// An Optimizer wraps a chain of gradient transformations (transform.hpp): step() copies
// arena.grads() into an update u, runs the chain on it and applies theta <- theta + u.
// The common chains (SGD, momentum, Nesterov, AdaGrad, RMSProp, Adam, AdamW; either form,
// with or without L2 weight decay) also have one fused, vectorized, parallel loop each that
// composes the same element-wise rules as the links (src/optim/rules.hpp, each written once)
// and reads and writes the same state tensors, found by their names: make_optimizer picks it
// unless spec.fused is false, and the tests check that both paths give the same trajectory.
//
// The trainer's loop, for update k = 0, 1, ...:
//   optimizer->prepare(arena, k);   // Nesterov (Algorithm 8.3): theta <- theta + alpha v
//   ... forward, backward: arena.grads() ...
//   optimizer->step(arena, k);      // theta <- the new iterate
//   optimizer->observe(metric);     // now and then: reduce_on_plateau watches it
// The state (velocities, accumulators, step counters, Polyak averages, schedule state) is
// explicit: save_state() copies it, load_state() restores it into a fresh optimizer for the
// same arena and the continuation is identical bit for bit.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "descent/optim/schedule.hpp"
#include "descent/optim/transform.hpp"
#include "descent/tensor/arena.hpp"

namespace descent::optim {

// Everything that makes an optimizer continue exactly where it stopped.
struct OptimizerState {
  std::vector<std::string> names;  // one per tensor: "adam.s", "trace.v", "average", ...
  std::vector<Tensor> tensors;     // copies, each [arena.size()] of the arena's dtype
  std::vector<std::string> counter_names;
  std::vector<std::int64_t> counters;
  std::vector<std::vector<double>> schedules;  // Schedule::state() of each schedule in the chain
};

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
  // Whether prepare() moves arena.values() (to an interim point).
  virtual bool has_interim() const { return false; }
  // Forgets a prepare() whose update will not happen (a skipped batch): the caller puts
  // arena.values() back; the next prepare(arena, k) moves them again.
  virtual void discard_prepared() {}
  // One update of arena.values() from arena.grads(); k counts the updates before this one.
  virtual void step(ParameterArena& arena, std::int64_t k) = 0;
  // step(arena, k) parameter by parameter, for an update fused into the backward sweep
  // (train::train_step: each parameter is updated the moment its gradient is final, while it
  // is still in cache): begin_step(arena, k), then step_parameter(arena, id) once for every
  // parameter of the arena, in any order, each reading its own slice of arena.grads() only,
  // then end_step(). The same arithmetic per element as step(), so the same parameters and
  // state bit for bit. Only where steps_by_parameter(): a chain whose update needs the whole
  // gradient first (clipping) or has no fused loop cannot (the defaults throw logic_error).
  // end_step throws logic_error when the parameters stepped do not cover the arena once.
  virtual bool steps_by_parameter() const { return false; }
  virtual void begin_step(ParameterArena& arena, std::int64_t k);
  virtual void step_parameter(ParameterArena& arena, ParamId id);
  virtual void end_step();
  // step(arena, k) and, as asked by `sums`, the sums of squares the trainer records every
  // update (its gradient norm and its path length: train/trainer.hpp, train/trajectory.hpp),
  // taken in the order of kernels::squares_in_lanes (tensor/fused_sums.hpp). Where
  // measures_in_update(), the update's own pass takes them (it reads g and theta and writes the
  // new theta: no pass and no parallel region of their own); otherwise (the default) the
  // gradient's squares in a pass of their own before step(), and step_squares stays -1 (the
  // caller measures the step). The same parameters and state bit for bit as step(arena, k); the
  // sums are the same bits either way (the order depends on the arena's size alone).
  struct StepSums {
    bool gradient = false;          // ask for sum_i g_i^2 (arena.grads(), before the update)
    bool step = false;              // ask for sum_i (theta_new_i - theta_old_i)^2
    double gradient_squares = -1.0; // set when asked
    double step_squares = -1.0;     // set when asked and measures_in_update(); else -1
  };
  virtual void step_measured(ParameterArena& arena, std::int64_t k, StepSums& sums);
  // Whether step_measured takes the sums in the update's pass: a fused loop (not a chain run
  // link by link), and no interim point (under Nesterov's theta moved to theta + alpha v before
  // the gradient, so theta_new - theta_interim is not the step from the last iterate).
  virtual bool measures_in_update() const { return false; }
  virtual double learning_rate(std::int64_t k) const = 0;
  virtual std::string describe() const = 0;
  // The state vectors (each of the arena's size; views, not copies), for checkpoints.
  virtual std::vector<Tensor> state() const = 0;

  // A validation metric (lower is better), forwarded to the schedules (reduce_on_plateau).
  virtual void observe(double metric) { (void)metric; }
  // How often the clipping links changed the gradient so far (0 without clipping).
  virtual std::int64_t clip_count() const { return 0; }
  // The Polyak average of the iterates, [arena.size()]; undefined without averaging or
  // before the first step.
  virtual Tensor averaged() const { return {}; }
  virtual OptimizerState save_state() const { return {}; }
  // Throws DataError when the state does not fit this optimizer and arena (names,
  // counts, sizes), naming what differs.
  virtual void load_state(const ParameterArena& arena, const OptimizerState& state) {
    (void)arena;
    (void)state;
  }
};

// Polyak averaging of the iterates theta_1, theta_2, ... (section 8.7.3):
//   arithmetic:  bar_t = bar_{t-1} + (theta_t - bar_{t-1}) / t         (the running mean)
//   exponential: bar_1 = theta_1,  bar_t = rho bar_{t-1} + (1 - rho) theta_t
enum class Averaging : std::uint8_t { none, arithmetic, exponential };

struct OptimizerOptions {
  Averaging averaging = Averaging::none;
  double averaging_rho = 0.999;  // exponential only, in [0, 1)
};

// Applies any chain: theta <- theta + chain(g). Throws ConfigError for an empty chain.
std::unique_ptr<Optimizer> make_optimizer(Transform chain, const OptimizerOptions& options = {});

// The factory the trainer calls. Hyperparameters left unset take the algorithm's default in
// the chosen form (docs/optimizers.md has the table):
//   name        textbook chain (form = "textbook")                   form = "pytorch"
//   sgd         lr                                                    the same
//   momentum    lr, trace(alpha)                 Alg. 8.2             trace(mu), lr
//   nesterov    lr, trace(alpha, interim)        Alg. 8.3             trace(mu, pytorch), lr
//   adagrad     adagrad(delta 1e-7), lr          Alg. 8.4             delta 1e-10
//   rmsprop     rms(rho .9, delta 1e-6 inside), lr   Alg. 8.5         rho .99, delta 1e-8 outside [, trace(mu)]
//   rmsprop_nesterov  rms, lr, trace(alpha, interim)   Alg. 8.6       (none: ConfigError)
//   adadelta    adadelta(rho .95, delta 1e-6), lr = 1 (schedule ignored)   lr from the schedule (default 1)
//   adam        adam(.9, .999, 1e-8), lr         Alg. 8.7             the same
//   adamw       adam, add_decayed_weights(wd = 0.01), lr              the same
//   amsgrad     adam(amsgrad), lr;   adamax: adamax, lr;   nadam: nadam, lr
// weight_decay > 0 (except adamw) puts add_decayed_weights (L2) in front; clip_* > 0 put
// the clipping links in front of everything. Throws ConfigError naming the algorithm and
// the hyperparameter for an unknown name or form, or a value out of range.
struct OptimizerSpec {
  std::string name = "sgd";
  std::string form = "textbook";  // "textbook" or "pytorch"
  std::optional<double> lr = std::nullopt;        // used when no schedule is given
  std::optional<double> momentum = std::nullopt;  // alpha (mu)
  std::optional<double> rho = std::nullopt;       // rmsprop, adadelta
  std::optional<double> rho1 = std::nullopt;
  std::optional<double> rho2 = std::nullopt;
  std::optional<double> delta = std::nullopt;
  double weight_decay = 0.0;
  bool centered = false;          // rmsprop
  bool amsgrad = false;           // adam, adamw
  double clip_global_norm = 0.0;  // 0: off
  double clip_value = 0.0;
  double clip_param_norm = 0.0;
  Averaging averaging = Averaging::none;
  double averaging_rho = 0.999;
  bool fused = true;  // false: always run the chain link by link
};
// The chain of a spec (what make_optimizer runs when it does not fuse). A null schedule
// means constant(spec.lr or the algorithm's default rate).
Transform make_chain(const OptimizerSpec& spec, std::shared_ptr<Schedule> schedule);
std::unique_ptr<Optimizer> make_optimizer(const OptimizerSpec& spec, std::shared_ptr<Schedule> schedule);
// The learning rate a spec uses when its lr is unset (the algorithm's default in its form);
// schedules built outside the factory start from it. Throws as make_optimizer.
double default_learning_rate(const OptimizerSpec& spec);
// The names make_optimizer accepts: those of optimizers() (registry.hpp), in its order.
const std::vector<std::string>& optimizer_names();

// Stochastic gradient descent (Algorithm 8.1), with momentum when alpha > 0 (Algorithm 8.2):
//   v     <- alpha v - eps g
//   theta <- theta + v
// With alpha = 0 this is theta <- theta - eps_k g exactly (no velocity is kept).
struct SgdOptions {
  std::shared_ptr<Schedule> schedule;
  double alpha = 0.0;  // momentum, in [0, 1)
};
std::unique_ptr<Optimizer> sgd(const SgdOptions& options);

}  // namespace descent::optim
