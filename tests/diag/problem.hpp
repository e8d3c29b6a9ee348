#pragma once
// A small classification problem for the diagnostics' tests: an MLP with random parameters
// (away from a minimum, so its Hessian is indefinite) on random inputs and labels, and the
// loss over all examples on one plain tape (independent of the chunked Hessian operator).
#include <cstdint>
#include <vector>

#include "descent/autodiff/tape.hpp"
#include "descent/loss/loss.hpp"
#include "descent/nn/module.hpp"
#include "descent/tensor/kernels.hpp"
#include "support/gradcheck.hpp"

namespace descent::diag_testing {

struct Problem {
  ParameterArena arena;
  nn::Sequential net;
  Tensor x, labels;
  Problem(DType dtype, const std::vector<std::int64_t>& sizes, nn::Activation act, std::int64_t n, std::uint64_t seed)
      : arena(dtype), net(nn::mlp(arena, sizes, act)) {
    arena.values().copy_from(testing::random_tensor({arena.size()}, dtype, seed, -0.9, 0.9));
    x = testing::random_tensor({n, sizes.front()}, dtype, seed + 1, -1.5, 1.5);
    std::vector<std::int32_t> y(static_cast<std::size_t>(n));
    Rng rng(seed + 2);
    for (auto& label : y) label = static_cast<std::int32_t>(rng.below(static_cast<std::uint64_t>(sizes.back())));
    labels = Tensor::from<std::int32_t>({n}, y);
  }
  // Loss and gradient over all examples on one tape.
  double loss_and_gradient(std::vector<double>& g) {
    autodiff::Tape tape;
    autodiff::Var loss = loss::cross_entropy(net.forward(tape, tape.constant(x)), labels);
    Tensor grad = Tensor::zeros({arena.size()}, arena.dtype());
    tape.backward(loss, grad);
    g.resize(static_cast<std::size_t>(arena.size()));
    for (std::int64_t i = 0; i < arena.size(); ++i) g[static_cast<std::size_t>(i)] = grad.at(i);
    return loss.value().item();
  }
  std::vector<double> gradient() {
    std::vector<double> g;
    loss_and_gradient(g);
    return g;
  }
};

inline double norm(const std::vector<double>& a) {
  double s = 0.0;
  for (double x : a) s += x * x;
  return std::sqrt(s);
}

inline double relative_difference(const std::vector<double>& a, const std::vector<double>& b) {
  double d = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) d += (a[i] - b[i]) * (a[i] - b[i]);
  return std::sqrt(d) / std::max(norm(a), norm(b));
}

}  // namespace descent::diag_testing
