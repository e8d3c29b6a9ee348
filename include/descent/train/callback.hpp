#pragma once
// The training loop's hooks: everything that is not the loop itself (metrics.jsonl, the
// progress display, early stopping, checkpoints, and next the diagnostics monitors, the
// TensorBoard writer) is a Callback attached to it. A new monitor is a new callback, not a
// new branch in the loop (docs/design.md, "The loop and its callbacks").
//
// The loop, per minibatch (train/step.hpp does the middle):
//   sample -> zero grads, prepare, forward, loss, backward -> [divergence check]
//     -> before_update(ctx)      gradient in arena.grads(), the tape still holds the step
//     -> optimizer.step          the update; the counters advance
//     -> for each callback: on_step(ctx), then on_evaluation(e) when eval_every_steps is due
// and per epoch: evaluation of train and validation -> for each callback:
// on_evaluation(e), on_epoch_end(ctx); finally on_stop(ctx) once when the loop ends.
// Before the first update of a fresh run (not on a resume) the initial parameters are
// evaluated once: on_evaluation(e) with e.epoch == 0, e.step == 0 (its return is ignored).
//
// Callbacks are called in the order they were attached. A callback returning true stops the
// run (as in ensmallen): the callbacks after it are not called for that event; a stop from
// on_step ends the epoch in progress there (it is evaluated, the best parameters kept), then
// the loop ends as after the last epoch: on_stop, the final checkpoint, the final evaluation
// on the best parameters. The trainer's own callbacks come first (metrics, progress, the
// [diagnostics] monitors of train/monitors.hpp when configured, early stopping), then the
// caller's, then checkpoints (so a checkpoint holds what every callback wrote before it).
//
// This header exposes nlohmann::json (a callback's checkpointed state): code that includes it
// (and train/trainer.hpp) needs nlohmann-json on its include path.
#include <cstdint>
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "descent/data/split.hpp"
#include "descent/io/json_lines.hpp"
#include "descent/nn/module.hpp"
#include "descent/optim/optimizer.hpp"
#include "descent/train/config.hpp"
#include "descent/train/evaluate.hpp"
#include "descent/train/progress.hpp"
#include "descent/train/step.hpp"

namespace descent::train {

// The run in progress, as a callback sees it.
class Run {
 public:
  virtual ~Run() = default;
  virtual const TrainConfig& config() const = 0;
  virtual nn::Module& net() = 0;
  virtual ParameterArena& arena() = 0;
  virtual optim::Optimizer& optimizer() = 0;
  virtual const data::Data& data() const = 0;
  virtual const std::filesystem::path& run_dir() const = 0;
  // metrics.jsonl: a callback writes its records here (docs/metrics.md lists the kinds).
  virtual io::JsonLinesWriter& metrics() = 0;
  // The display: lines that stay.
  virtual Progress& progress() = 0;
  // Seconds spent by every process of the run so far.
  virtual double wall_seconds() const = 0;
  // The epochs and updates the run will make at most: config().epochs full epochs, fewer when
  // the sampler runs out sooner (a stream has one epoch). The schedule's horizon is steps()
  // (0: not known).
  virtual std::int64_t epochs() const { return config().epochs; }
  virtual std::int64_t steps() const { return 0; }
  // `net` on a split in evaluation mode, in the model's evaluation chunk.
  virtual Evaluation evaluate(const data::Split& split) = 0;
};

struct StepContext {
  Run& run;
  std::int64_t step;             // the update's index k from 0 (the "step" of metrics.jsonl)
  std::int64_t epoch;            // from 1
  std::int64_t position;         // the minibatch's position in its epoch, from 1
  std::int64_t steps_per_epoch;
  const Tensor& x;               // the minibatch [b, d]
  const Tensor& y;               // its labels i32 [b]
  autodiff::Tape& tape;          // the step's graph, recorded at the parameters before the update
  const Gradient& gradient;      // logits, loss, its value, ||g||; arena.grads() holds g
                                 // (||g|| is -1 in before_update when the trainer takes it in
                                 // the update's pass: only when no callback of the caller's,
                                 // no monitor and no second-order method runs, trainer.cpp)
  double lr;                     // the learning rate of this update
  // on_step only: running means over the epoch's minibatches so far (this one included).
  double epoch_loss = 0.0, epoch_accuracy = 0.0;
  // A callback that stops the run may say why here (printed and kept in the stop context).
  std::string& stop_message;
  // on_step only: ||theta_{k+1} - theta_k||^2 when the update's pass measured it
  // (optim::Optimizer::step_measured, in kernels::squares_in_lanes' order), else -1 (the
  // trajectory then measures it from its copy of theta_k).
  double step_squares = -1.0;
};

struct EvalContext {
  Run& run;
  std::int64_t step;           // updates done
  std::int64_t epoch;          // the epoch in progress, or the one that just ended; 0: the initial evaluation
  bool end_of_epoch;           // the epoch's evaluation (then on_epoch_end follows); false for epoch 0
  const Evaluation& train;
  const Evaluation* validation;  // nullptr without a validation split
};

struct EpochContext {
  Run& run;
  std::int64_t epoch;            // the epoch that ended
  std::int64_t step;             // updates done
  const Evaluation& train;
  const Evaluation* validation;  // nullptr without a validation split
  // The figure early stopping and plateau schedules watch (early_stopping.monitor: the
  // validation's, or the training split's without validation).
  double monitored;
  double grad_norm_mean;         // over the epoch's updates
  double examples_per_s;
  double lr;                     // at the end of the epoch
  // The parameters that were evaluated: the averaged iterate under Polyak averaging, else
  // the arena's values (training goes on from the arena's values).
  const Tensor& evaluated;
  std::string& stop_message;
};

enum class StopReason {
  completed,  // every epoch ran, or the sampler ran out
  callback,   // a callback returned true (early stopping, a monitor, a test)
};

struct StopContext {
  Run& run;
  StopReason reason;
  std::string message;  // what the stopping callback said ("" if nothing)
  std::int64_t step;    // updates done
  std::int64_t epoch;   // the last epoch that ran
};

class Callback {
 public:
  virtual ~Callback() = default;
  // The gradient of the minibatch is ready and the parameters have not moved yet (a Hessian-
  // vector product through ctx.tape is taken here). It may not stop the run.
  virtual void before_update(const StepContext& ctx) { (void)ctx; }
  virtual bool on_step(const StepContext& ctx) {
    (void)ctx;
    return false;
  }
  virtual bool on_evaluation(const EvalContext& ctx) {
    (void)ctx;
    return false;
  }
  // The arena holds the training iterate; ctx.evaluated the evaluated parameters.
  virtual bool on_epoch_end(const EpochContext& ctx) {
    (void)ctx;
    return false;
  }
  virtual void on_stop(const StopContext& ctx) { (void)ctx; }
  // Adds the callback's totals (counts, costs) to metrics.jsonl's "final" record, written
  // after the final evaluation (also by a resume that only redoes it).
  virtual void final_fields(nlohmann::json& record) const { (void)record; }

  // A callback with state that decides what it does later (a running median, a counter)
  // gives it a key; checkpoints then save save_state() under it and resume hands it back to
  // load_state() (state_key "" : nothing saved).
  virtual std::string state_key() const { return {}; }
  virtual nlohmann::json save_state() const { return nullptr; }
  virtual void load_state(const nlohmann::json& state) { (void)state; }
};

}  // namespace descent::train
