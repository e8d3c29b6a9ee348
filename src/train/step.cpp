#include "descent/train/step.hpp"

#include <cmath>

#include "descent/loss/loss.hpp"
#include "descent/tensor/kernels.hpp"

namespace descent::train {

bool Gradient::finite() const { return std::isfinite(loss_value) && (grad_norm < 0 || std::isfinite(grad_norm)); }

Gradient compute_gradient(nn::Module& net, ParameterArena& arena, optim::Optimizer& optimizer, autodiff::Tape& tape,
                          const Tensor& x, const Tensor& y, std::int64_t k, bool measure_norm) {
  tape.clear();
  arena.zero_grad();
  optimizer.prepare(arena, k);
  Gradient g;
  g.logits = net.forward(tape, tape.constant(x));
  g.loss = loss::cross_entropy(g.logits, y);
  tape.backward(g.loss);
  g.loss_value = g.loss.value().item();
  if (measure_norm) g.grad_norm = std::sqrt(kernels::sum_squares(arena.grads()));
  return g;
}

double train_step(nn::Module& net, ParameterArena& arena, optim::Optimizer& optimizer, autodiff::Tape& tape,
                  const Tensor& x, const Tensor& y, std::int64_t k) {
  const Gradient g = compute_gradient(net, arena, optimizer, tape, x, y, k, /*measure_norm=*/false);
  optimizer.step(arena, k);
  return g.loss_value;
}

}  // namespace descent::train
