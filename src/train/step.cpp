#include "descent/train/step.hpp"

#include <cmath>

#include "descent/loss/loss.hpp"
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

Gradient compute_gradient(nn::Module& net, ParameterArena& arena, optim::Optimizer& optimizer, autodiff::Tape& tape,
                          const Tensor& x, const kernels::bf16::Buffer* x16, const Tensor& y, std::int64_t k,
                          bool measure_norm) {
  tape.clear();
  arena.zero_grad();
  optimizer.prepare(arena, k);
  Gradient g;
  const bool with16 = x16 != nullptr && precision::products() == precision::Products::bf16 && x.dtype() == DType::f32;
  g.logits = net.forward(tape, with16 ? autodiff::constant_bf16(tape, x, *x16) : tape.constant(x));
  g.loss = loss::cross_entropy(g.logits, y);
  tape.backward(g.loss);
  g.loss_value = g.loss.value().item();
  if (measure_norm) g.grad_norm = std::sqrt(kernels::sum_squares(arena.grads()));
  return g;
}

double train_step(nn::Module& net, ParameterArena& arena, optim::Optimizer& optimizer, autodiff::Tape& tape,
                  const Tensor& x, const Tensor& y, std::int64_t k) {
  return train_step(net, arena, optimizer, tape, x, nullptr, y, k);
}

double train_step(nn::Module& net, ParameterArena& arena, optim::Optimizer& optimizer, autodiff::Tape& tape,
                  const Tensor& x, const kernels::bf16::Buffer* x16, const Tensor& y, std::int64_t k) {
  const Gradient g = compute_gradient(net, arena, optimizer, tape, x, x16, y, k, /*measure_norm=*/false);
  optimizer.step(arena, k);
  return g.loss_value;
}

}  // namespace descent::train
