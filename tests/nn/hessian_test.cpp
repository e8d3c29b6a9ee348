// Exact Hessian-vector products of whole models: against the dense Hessian built column by
// column from central differences of the gradient (float64, tanh and ReLU MLPs), and
// against finite differences of gradients in float32.
#include <gtest/gtest.h>

#include <cmath>

#include "descent/loss/loss.hpp"
#include "descent/nn/module.hpp"
#include "descent/tensor/kernels.hpp"
#include "support/finite_hessian.hpp"
#include "support/gradcheck.hpp"

namespace descent {
namespace {

using autodiff::Tape;
using autodiff::Var;
using testing::random_tensor;

struct Problem {
  ParameterArena arena;
  nn::Sequential net;
  Tensor x, labels;
  Problem(DType dtype, const std::vector<std::int64_t>& sizes, nn::Activation act, std::int64_t batch, std::uint64_t seed)
      : arena(dtype), net(nn::mlp(arena, sizes, act)) {
    arena.values().copy_from(random_tensor({arena.size()}, dtype, seed, -0.8, 0.8));
    x = random_tensor({batch, sizes.front()}, dtype, seed + 1, -1.5, 1.5);
    std::vector<std::int32_t> y(static_cast<std::size_t>(batch));
    for (std::size_t i = 0; i < y.size(); ++i) y[i] = static_cast<std::int32_t>((i * 7 + seed) % static_cast<std::size_t>(sizes.back()));
    labels = Tensor::from<std::int32_t>({batch}, y);
  }
  Var loss(Tape& tape) { return loss::cross_entropy(net.forward(tape, tape.constant(x)), labels); }
  Tensor gradient() {
    Tape tape;
    Tensor g = Tensor::zeros({arena.size()}, arena.dtype());
    tape.backward(loss(tape), g);
    return g;
  }
  Tensor hvp(const Tensor& v, Tensor* grad = nullptr) {
    Tape tape;
    Tensor hv = Tensor::empty({arena.size()}, arena.dtype());
    Tensor g = Tensor::empty({arena.size()}, arena.dtype());
    tape.hvp(loss(tape), v, hv, g);
    if (grad != nullptr) *grad = g;
    return hv;
  }
  // Dense Hessian [n, n] by central differences of the tape gradient (first-order code only).
  std::vector<double> dense_hessian(double h) {
    return testing::central_difference_hessian(arena.values().data<double>(), arena.size(), [&] {
      const Tensor g = gradient();
      std::vector<double> out(static_cast<std::size_t>(g.numel()));
      for (std::size_t i = 0; i < out.size(); ++i) out[i] = g.at(static_cast<std::int64_t>(i));
      return out;
    }, h);
  }
};

void expect_hessian_matches(nn::Activation act) {
  Problem p(DType::f64, {3, 4, 3}, act, 6, 11);
  const std::int64_t n = p.arena.size();
  ASSERT_EQ(n, 3 * 4 + 4 + 4 * 3 + 3);
  const std::vector<double> hess = p.dense_hessian(1e-6);
  // The dense Hessian is symmetric (to finite-difference accuracy).
  double asym = 0.0, scale = 0.0;
  for (std::int64_t i = 0; i < n; ++i) {
    for (std::int64_t j = 0; j < n; ++j) {
      asym = std::max(asym, std::abs(hess[static_cast<std::size_t>(i * n + j)] - hess[static_cast<std::size_t>(j * n + i)]));
      scale = std::max(scale, std::abs(hess[static_cast<std::size_t>(i * n + j)]));
    }
  }
  EXPECT_LT(asym, 1e-7 * scale);
  for (std::uint64_t seed : {21u, 22u, 23u}) {
    Tensor v = random_tensor({n}, DType::f64, seed);
    Tensor hv = p.hvp(v);
    Tensor expected = Tensor::zeros({n}, DType::f64);
    for (std::int64_t i = 0; i < n; ++i) {
      double s = 0.0;
      for (std::int64_t j = 0; j < n; ++j) s += hess[static_cast<std::size_t>(i * n + j)] * v.at(j);
      expected.data<double>()[i] = s;
    }
    EXPECT_LT(testing::relative_difference(hv, expected), 1e-7) << "seed " << seed;
    // Every element, not only the norm.
    for (std::int64_t i = 0; i < n; ++i) EXPECT_NEAR(hv.at(i), expected.at(i), 1e-7 * (1.0 + std::abs(expected.at(i))));
  }
}

TEST(Hessian, TanhMlpMatchesTheDenseHessian) { expect_hessian_matches(nn::Activation::tanh); }
TEST(Hessian, ReluMlpMatchesTheDenseHessian) { expect_hessian_matches(nn::Activation::relu); }
TEST(Hessian, SigmoidMlpMatchesTheDenseHessian) { expect_hessian_matches(nn::Activation::sigmoid); }

TEST(Hessian, Float32MlpMatchesFiniteDifferencesOfGradients) {
  Problem p(DType::f32, {20, 16, 16, 5}, nn::Activation::tanh, 32, 5);
  const std::int64_t n = p.arena.size();
  Tensor v = random_tensor({n}, DType::f32, 99);
  kernels::axpby(1.0 / std::sqrt(kernels::sum_squares(v)), v, 0.0, v);  // unit direction
  Tensor hv = p.hvp(v);
  const double h = 1e-2;
  Tensor theta0 = p.arena.values().clone();
  kernels::axpby(h, v, 1.0, p.arena.values());
  Tensor up = p.gradient();
  p.arena.values().copy_from(theta0);
  kernels::axpby(-h, v, 1.0, p.arena.values());
  Tensor down = p.gradient();
  p.arena.values().copy_from(theta0);
  Tensor fd = Tensor::empty({n}, DType::f32);
  kernels::axpby(1.0 / (2 * h), up, 0.0, fd);
  kernels::axpby(-1.0 / (2 * h), down, 1.0, fd);
  EXPECT_LT(testing::relative_difference(hv, fd), 2e-3);
  EXPECT_GT(std::sqrt(kernels::sum_squares(hv)), 1e-3);
}

TEST(Hessian, HvpGivesTheGradientAndIsLinearAndRepeatable) {
  Problem p(DType::f64, {5, 6, 4}, nn::Activation::tanh, 8, 3);
  const std::int64_t n = p.arena.size();
  Tensor v = random_tensor({n}, DType::f64, 1);
  Tensor w = random_tensor({n}, DType::f64, 2);
  Tensor g;
  Tensor hv = p.hvp(v, &g);
  EXPECT_LT(testing::relative_difference(g, p.gradient()), 1e-14);
  Tensor hw = p.hvp(w);
  // H (2v - 3w) = 2 Hv - 3 Hw: exact up to rounding.
  Tensor comb = Tensor::empty({n}, DType::f64);
  kernels::axpby(2.0, v, 0.0, comb);
  kernels::axpby(-3.0, w, 1.0, comb);
  Tensor expected = Tensor::empty({n}, DType::f64);
  kernels::axpby(2.0, hv, 0.0, expected);
  kernels::axpby(-3.0, hw, 1.0, expected);
  EXPECT_LT(testing::relative_difference(p.hvp(comb), expected), 1e-12);
  // v^T H w = w^T H v (symmetry of the exact products).
  EXPECT_NEAR(kernels::dot(v, hw), kernels::dot(w, hv), 1e-12 * (1 + std::abs(kernels::dot(v, hw))));
  // Several products on one recorded tape (no new forward pass) give the same numbers.
  Tape tape;
  Var loss = p.loss(tape);
  Tensor a = Tensor::empty({n}, DType::f64), b = Tensor::empty({n}, DType::f64);
  tape.hvp(loss, v, a);
  tape.hvp(loss, w, b);
  tape.hvp(loss, v, b);
  EXPECT_LT(testing::relative_difference(a, hv), 1e-15);
  EXPECT_LT(testing::relative_difference(b, hv), 1e-15);
}

TEST(Hessian, BackwardAccumulatesIntoTheArenaGradient) {
  Problem p(DType::f64, {4, 3, 2}, nn::Activation::relu, 5, 8);
  p.arena.zero_grad();
  {
    Tape tape;
    tape.backward(p.loss(tape));
  }
  Tensor once = p.arena.grads().clone();
  {
    Tape tape;
    tape.backward(p.loss(tape));
  }
  Tensor twice = Tensor::empty({p.arena.size()}, DType::f64);
  kernels::axpby(2.0, once, 0.0, twice);
  EXPECT_LT(testing::relative_difference(p.arena.grads(), twice), 1e-15);
  EXPECT_LT(testing::relative_difference(once, p.gradient()), 1e-15);
}

}  // namespace
}  // namespace descent
