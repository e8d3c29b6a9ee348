#pragma once
// The second-order methods of optim/second_order.hpp (L-BFGS, Hessian-free damped Newton,
// nonlinear CG, BFGS, Newton, Newton-CG, saddle-free Newton) in `descent train`.
//
// optimizer.name = "lbfgs" (or another second-order name) and [second_order] choose the method
// and its settings. Each training step is one iteration of the method on
//
//   J_B(theta) = (1/|B|) sum_{i in B} L(f(x_i; theta), y_i)
//
// (optim::NetworkObjective: the model in evaluation mode, exact gradient and Hessian-vector
// products in double precision), where B is
//   - every training example with sampler.batch_size = "full" (the same objective throughout);
//   - second_order.batch = "fixed": the first batch_size training examples, throughout;
//   - second_order.batch = "resample": the sampler's batch of this step. The method keeps its
//     history (L-BFGS pairs, BFGS matrix, damping lambda; nonlinear CG restarts) and evaluates
//     J and its gradient again on the new batch before the iteration.
// The rest of the run is the trainer's: the sampler, evaluation, early stopping, the
// divergence policy, checkpoints, metrics and progress. The loop's own records are one
// `second_order` record per step in metrics.jsonl (docs/metrics.md).
//
// Everything here is reached through the Optimizer interface and one callback, so the
// trainer only branches where it makes the optimizer and adds the callback.
#include <memory>
#include <span>
#include <string_view>

#include "descent/optim/optimizer.hpp"
#include "descent/optim/second_order.hpp"
#include "descent/train/callback.hpp"
#include "descent/train/config.hpp"

namespace descent::train {

// Whether optimizer.name names a second-order method.
bool is_second_order(const TrainConfig& config);

// The minimizer's options from optimizer.name and [second_order].
optim::SecondOrderOptions second_order_options(const TrainConfig& config);

// [second_order]'s rules that involve more than one key (c1 < c2) and the method's own
// checks: throws ConfigError "<source>: second_order.<key>: ..." (nothing for first-order names).
void check_second_order(const TrainConfig& config);

// The optimizer the trainer holds for a second-order method; lr_scale (divergence rollback)
// multiplies second_order.step.
std::unique_ptr<optim::Optimizer> make_second_order_optimizer(const TrainConfig& config, double lr_scale);

// The callback that goes with it: before each update it hands the step's batch to the
// optimizer (building the objective); after it, writes the step's `second_order` record and
// stops the run when a line search on a fixed objective can make no more progress. Throws
// ConfigError for a model it cannot train (batch normalization: its running statistics would
// change the objective between evaluations).
std::unique_ptr<Callback> make_second_order_callback(const TrainConfig& config, ParameterArena& arena);

}  // namespace descent::train
