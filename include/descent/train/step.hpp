#pragma once
// One step of minibatch stochastic gradient descent (Goodfellow et al. 2016, Algorithm 8.1,
// with Algorithm 8.3's interim point): the body of every training loop of descent (the
// trainer, the benchmarks, the tests), written once.
//
//   autodiff::Tape tape;
//   for (std::int64_t k = 0; ...; ++k) {
//     split.gather(indices, x, y);                                          // sample
//     train::Gradient g = train::compute_gradient(net, arena, *opt, tape, x, y, k);
//     if (!g.finite()) ...;                                                 // caught before the update
//     opt->step(arena, k);                                                  // update
//   }
//   // or, when nothing happens between the gradient and the update:
//   double loss = train::train_step(net, arena, *opt, tape, x, y, k);
#include <cstdint>

#include "descent/autodiff/tape.hpp"
#include "descent/nn/module.hpp"
#include "descent/optim/optimizer.hpp"

namespace descent::train {

// What compute_gradient leaves behind. The tape still holds the step's graph (logits and loss
// are its nodes, at the parameters the gradient was taken at), arena.grads() the gradient:
// enough for a Hessian-vector product at this point before the update moves the parameters.
struct Gradient {
  autodiff::Var logits;  // [b, classes]
  autodiff::Var loss;    // the mean cross-entropy over the minibatch (a scalar)
  double loss_value = 0.0;
  double grad_norm = -1.0;  // ||g||_2 over every parameter; -1 when not measured
  // Misclassified examples of the whole batch when `logits` covers only part of it
  // (train::batch_gradient: one rank's share, or the last deterministic block); -1 otherwise.
  std::int64_t errors = -1;
  bool finite() const;      // the loss and (when measured) the gradient norm are finite
};

// Clears the tape, lets the optimizer move the parameters to its interim point
// (optimizer.prepare(arena, k): Nesterov's theta + alpha v, a no-op for the others), records
// the forward pass of `net` on x [b, d], the mean cross-entropy against y i32 [b], and
// backpropagates it into arena.grads(), which it overwrites (Tape::backward_overwrite: no
// pass zeroing it first). With measure_norm, also ||g||_2 (one pass over the gradient, in the
// order of kernels::squares_in_lanes, tensor/fused_sums.hpp).
// Throws the errors of the forward pass and the loss.
Gradient compute_gradient(nn::Module& net, ParameterArena& arena, optim::Optimizer& optimizer, autodiff::Tape& tape,
                          const Tensor& x, const Tensor& y, std::int64_t k, bool measure_norm = true);

// compute_gradient without the norm, then optimizer.step(arena, k); with set_fused_update(true),
// the update fused into the backward sweep (backward_and_step). Returns the minibatch's mean
// loss (at the parameters before the update). No divergence check: a non-finite loss is
// returned and the update still happens.
double train_step(nn::Module& net, ParameterArena& arena, optim::Optimizer& optimizer, autodiff::Tape& tape,
                  const Tensor& x, const Tensor& y, std::int64_t k);

// The backward sweep from `loss` into arena.grads() (overwritten, Tape::backward_overwrite)
// and the update optimizer.step(arena, k), after the forward pass and optimizer.prepare(arena,
// k). When optimizer.steps_by_parameter(), each parameter is updated the moment the sweep has
// its gradient (Tape::set_param_ready; a callback already set on the tape is called first and
// kept), while its gradient and state are still in cache, instead of in one pass over the
// whole arena after the sweep; the arithmetic per element is step()'s, so the parameters,
// the optimizer's state and arena.grads() are the same bit for bit. Nothing may read the
// gradient before the update here (no clipping, norm, divergence check or callback between
// them: the trainer computes its gradient with compute_gradient instead). An exception in the
// sweep leaves the parameters partly updated.
void backward_and_step(autodiff::Tape& tape, autodiff::Var loss, ParameterArena& arena, optim::Optimizer& optimizer,
                       std::int64_t k);

// Whether train_step fuses the update into the sweep (backward_and_step) or runs it after the
// sweep as one pass (the same results either way). Default off: on session 11's 2-core Intel
// Xeon the fused update was no cheaper than the pass (the parameters and the optimizer's state
// come from memory either way, only the gradient is in cache, and the updates between the
// products evict theirs): MLP 784-256-256-10, 2 threads, A/B against the pass, within +-3% at
// batches 32 and 128 (fp32, bf16, Adam) and up to 9% slower at fp32 batch 512
// (docs/performance.md, session 11). Process-wide, for measurement (bench/train_mlp
// --fused-update 1).
void set_fused_update(bool on);
bool fused_update();

}  // namespace descent::train
