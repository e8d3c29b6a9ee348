// Hessian-vector products of a model's loss: Hv for a direction v, and Hg for the gradient
// in place. Checked against central differences of the gradient. Built and run by ctest
// (example.library.hvp); docs/library.md quotes it.
#include <cmath>
#include <cstdio>
#include <vector>

#include <descent/autodiff/ops.hpp>
#include <descent/init/rng.hpp>
#include <descent/loss/loss.hpp>
#include <descent/nn/initialize.hpp>
#include <descent/nn/module.hpp>
#include <descent/tensor/kernels.hpp>

using namespace descent;

int main() {
  Rng rng(2);
  Tensor x = Tensor::empty({50, 10}, DType::f64);
  for (double& e : x.span<double>()) e = rng.normal();
  std::vector<std::int32_t> y(50);
  for (auto& label : y) label = static_cast<std::int32_t>(rng.below(4));
  Tensor labels = Tensor::from<std::int32_t>({50}, y);
  ParameterArena arena(DType::f64);
  nn::Sequential net = nn::mlp(arena, {10, 16, 4}, nn::Activation::tanh);
  nn::initialize(arena, {.seed = 3});
  Tensor v = Tensor::empty({arena.size()}, DType::f64);
  for (double& e : v.span<double>()) e = rng.normal();

  // [hvp]
  autodiff::Tape tape;
  autodiff::Var loss = loss::cross_entropy(net.forward(tape, tape.constant(x)), labels);
  Tensor hv = Tensor::empty({arena.size()}, arena.dtype());
  tape.hvp(loss, v, hv, arena.grads());  // hv <- H v, arena.grads() <- g (both overwritten)
  // The same recorded forward pass serves more products: Hg, in place from arena.grads().
  Tensor hg = Tensor::empty({arena.size()}, arena.dtype());
  tape.hvp(loss, arena.grads(), hg, arena.grads());  // hg <- H g (g read before it is rewritten)
  const double curvature = kernels::dot(arena.grads(), hg);  // g^T H g
  // [hvp]

  // Independent check: H v = (g(theta + h v) - g(theta - h v)) / 2h + O(h^2).
  auto gradient_at = [&](double h) {
    kernels::axpby(h, v, 1.0, arena.values());  // theta += h v
    autodiff::Tape t;
    arena.zero_grad();
    t.backward(loss::cross_entropy(net.forward(t, t.constant(x)), labels));
    kernels::axpby(-h, v, 1.0, arena.values());
    return arena.grads().clone();
  };
  const double h = 1e-5;
  Tensor gp = gradient_at(h), gm = gradient_at(-h);
  double worst = 0.0, scale = 0.0;
  for (std::int64_t i = 0; i < arena.size(); ++i) {
    worst = std::max(worst, std::abs((gp.at(i) - gm.at(i)) / (2 * h) - hv.at(i)));
    scale = std::max(scale, std::abs(hv.at(i)));
  }
  std::printf("|Hv| max %.4g, differs from the central difference by %.2g (relative %.2g); g^T H g = %.6g\n", scale,
              worst, worst / scale, curvature);
  return worst / scale < 1e-6 && curvature > 0.0 ? 0 : 1;
}
