#include "descent/train/step.hpp"

#include <atomic>
#include <cmath>
#include <functional>
#include <vector>

#include "descent/loss/loss.hpp"
#include "descent/tensor/fused_sums.hpp"
#include "descent/tensor/kernels.hpp"
#include "descent/tensor/precision.hpp"
#include "../autodiff/linear_bf16.hpp"
#include "step_bf16.hpp"

namespace descent::train {

bool Gradient::finite() const { return std::isfinite(loss_value) && (grad_norm < 0 || std::isfinite(grad_norm)); }

Gradient compute_gradient(nn::Module& net, ParameterArena& arena, optim::Optimizer& optimizer, autodiff::Tape& tape,
                          const Tensor& x, const Tensor& y, std::int64_t k, bool measure_norm) {
  return compute_gradient(net, arena, optimizer, tape, x, nullptr, y, k, measure_norm);
}

namespace {

// The forward pass and the loss of compute_gradient and train_step, after the tape is cleared
// and the optimizer prepared.
Gradient forward(nn::Module& net, autodiff::Tape& tape, const Tensor& x, const kernels::bf16::Buffer* x16,
                 const Tensor& y) {
  Gradient g;
  const bool with16 = x16 != nullptr && precision::products() == precision::Products::bf16 && x.dtype() == DType::f32;
  g.logits = net.forward(tape, with16 ? autodiff::constant_bf16(tape, x, *x16) : tape.constant(x));
  g.loss = loss::cross_entropy(g.logits, y);
  g.loss_value = g.loss.value().item();
  return g;
}

std::atomic<bool> g_fused_update{false};  // set_fused_update

}  // namespace

void set_fused_update(bool on) { g_fused_update.store(on, std::memory_order_relaxed); }
bool fused_update() { return g_fused_update.load(std::memory_order_relaxed); }

void backward_and_step(autodiff::Tape& tape, autodiff::Var loss, ParameterArena& arena, optim::Optimizer& optimizer,
                       std::int64_t k) {
  if (!optimizer.steps_by_parameter()) {
    tape.backward_overwrite(loss, arena.grads());
    optimizer.step(arena, k);
    return;
  }
  // Each parameter is updated when the sweep reports its gradient final (a callback the tape
  // already had is called first, then restored); those it does not report (never recorded
  // on this tape: gradient 0, written by backward_overwrite) after the sweep.
  std::vector<char> stepped(arena.count(), 0);
  std::function<void(ParamId)> before = tape.param_ready();
  struct Restore {
    autodiff::Tape& tape;
    std::function<void(ParamId)>& callback;
    ~Restore() { tape.set_param_ready(std::move(callback)); }
  } restore{tape, before};
  optimizer.begin_step(arena, k);
  tape.set_param_ready([&](ParamId id) {
    if (before) before(id);
    stepped[static_cast<std::size_t>(id.index)] = 1;
    optimizer.step_parameter(arena, id);
  });
  tape.backward_overwrite(loss, arena.grads());
  for (std::size_t i = 0; i < stepped.size(); ++i) {
    if (stepped[i] == 0) optimizer.step_parameter(arena, ParamId{static_cast<std::int32_t>(i)});
  }
  optimizer.end_step();
}

Gradient compute_gradient(nn::Module& net, ParameterArena& arena, optim::Optimizer& optimizer, autodiff::Tape& tape,
                          const Tensor& x, const kernels::bf16::Buffer* x16, const Tensor& y, std::int64_t k,
                          bool measure_norm) {
  tape.clear();
  optimizer.prepare(arena, k);
  Gradient g = forward(net, tape, x, x16, y);
  tape.backward_overwrite(g.loss, arena.grads());  // the gradient with no zeroing pass first
  if (measure_norm) g.grad_norm = std::sqrt(kernels::squares_in_lanes(arena.grads()));  // the order of step_measured's
  return g;
}

double train_step(nn::Module& net, ParameterArena& arena, optim::Optimizer& optimizer, autodiff::Tape& tape,
                  const Tensor& x, const Tensor& y, std::int64_t k) {
  return train_step(net, arena, optimizer, tape, x, nullptr, y, k);
}

double train_step(nn::Module& net, ParameterArena& arena, optim::Optimizer& optimizer, autodiff::Tape& tape,
                  const Tensor& x, const kernels::bf16::Buffer* x16, const Tensor& y, std::int64_t k) {
  if (!fused_update()) {
    const Gradient g = compute_gradient(net, arena, optimizer, tape, x, x16, y, k, /*measure_norm=*/false);
    optimizer.step(arena, k);
    return g.loss_value;
  }
  tape.clear();
  optimizer.prepare(arena, k);
  const Gradient g = forward(net, tape, x, x16, y);
  backward_and_step(tape, g.loss, arena, optimizer, k);
  return g.loss_value;
}

}  // namespace descent::train
