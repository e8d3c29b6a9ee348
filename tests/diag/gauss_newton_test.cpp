// Gauss-Newton products G v = J^T H_L J v (autodiff/gauss_newton.hpp, HessianOperator::
// apply_gauss_newton, NetworkObjective's curvature = gauss_newton) against independent
// computations: J by central differences of the logits, H_L written out by hand from the
// softmax (or 2 I / N for the squared error), G formed densely. G is symmetric positive
// semi-definite where H is indefinite, equals H for softmax regression (a model linear in
// theta) and differs from it on a nonlinear net.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "descent/autodiff/gauss_newton.hpp"
#include "descent/diag/hessian.hpp"
#include "descent/diag/lapack.hpp"
#include "descent/init/rng.hpp"
#include "descent/optim/network_objective.hpp"
#include "problem.hpp"

namespace descent {
namespace {

using diag_testing::Problem;
using diag_testing::relative_difference;

std::vector<double> as_vector(const Tensor& t) {
  std::vector<double> out(static_cast<std::size_t>(t.numel()));
  for (std::int64_t i = 0; i < t.numel(); ++i) out[static_cast<std::size_t>(i)] = t.at(i);
  return out;
}

// The logits [n, C] of every example at the arena's current parameters (one plain tape).
std::vector<double> logits(Problem& p) {
  autodiff::Tape tape;
  return as_vector(p.net.forward(tape, tape.constant(p.x)).value());
}

void set_parameters(Problem& p, const std::vector<double>& theta) {
  double* values = p.arena.values().data<double>();
  std::copy(theta.begin(), theta.end(), values);
}

// J [n C x dim], row-major, by central differences of the logits (f64 model).
std::vector<double> jacobian_by_differences(Problem& p) {
  const std::vector<double> theta = as_vector(p.arena.values());
  const std::size_t dim = theta.size(), outputs = logits(p).size();
  std::vector<double> j(outputs * dim);
  const double h = 1e-6;
  for (std::size_t k = 0; k < dim; ++k) {
    std::vector<double> t = theta;
    t[k] = theta[k] + h;
    set_parameters(p, t);
    const std::vector<double> up = logits(p);
    t[k] = theta[k] - h;
    set_parameters(p, t);
    const std::vector<double> down = logits(p);
    for (std::size_t r = 0; r < outputs; ++r) j[r * dim + k] = (up[r] - down[r]) / (2 * h);
  }
  set_parameters(p, theta);
  return j;
}

// H_L [n C x n C] of the mean cross-entropy over n examples: blocks (diag p_i - p_i p_i^T) / n.
std::vector<double> cross_entropy_hessian(const std::vector<double>& z, std::size_t n, std::size_t classes) {
  const std::size_t m = n * classes;
  std::vector<double> h(m * m, 0.0);
  for (std::size_t i = 0; i < n; ++i) {
    double top = z[i * classes], sum = 0.0;
    for (std::size_t c = 1; c < classes; ++c) top = std::max(top, z[i * classes + c]);
    std::vector<double> p(classes);
    for (std::size_t c = 0; c < classes; ++c) sum += (p[c] = std::exp(z[i * classes + c] - top));
    for (double& q : p) q /= sum;
    for (std::size_t a = 0; a < classes; ++a) {
      for (std::size_t b = 0; b < classes; ++b) {
        h[(i * classes + a) * m + i * classes + b] = ((a == b ? p[a] : 0.0) - p[a] * p[b]) / static_cast<double>(n);
      }
    }
  }
  return h;
}

// G = J^T H_L J [dim x dim].
std::vector<double> dense_gauss_newton(const std::vector<double>& j, const std::vector<double>& hl, std::size_t rows,
                                       std::size_t dim) {
  std::vector<double> hj(rows * dim, 0.0), g(dim * dim, 0.0);
  for (std::size_t r = 0; r < rows; ++r) {
    for (std::size_t s = 0; s < rows; ++s) {
      const double w = hl[r * rows + s];
      if (w == 0.0) continue;
      for (std::size_t k = 0; k < dim; ++k) hj[r * dim + k] += w * j[s * dim + k];
    }
  }
  for (std::size_t r = 0; r < rows; ++r) {
    for (std::size_t a = 0; a < dim; ++a) {
      for (std::size_t b = 0; b < dim; ++b) g[a * dim + b] += j[r * dim + a] * hj[r * dim + b];
    }
  }
  return g;
}

std::vector<double> times(const std::vector<double>& a, const std::vector<double>& v) {
  const std::size_t n = v.size();
  std::vector<double> out(n, 0.0);
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t k = 0; k < n; ++k) out[i] += a[i * n + k] * v[k];
  }
  return out;
}

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

std::vector<double> random_vector(std::size_t n, std::uint64_t seed) {
  Rng rng(seed);
  std::vector<double> v(n);
  for (double& x : v) x = rng.normal();
  return v;
}

TEST(GaussNewton, ProductEqualsJtHJFromDifferencesAndByHand) {
  // 40 examples in chunks of 16 (16 + 16 + 8): the chunk weights n_c / n are in the product.
  Problem p(DType::f64, {4, 6, 3}, nn::Activation::tanh, 40, 3);
  const auto dim = static_cast<std::size_t>(p.arena.size());
  const std::vector<double> g_dense =
      dense_gauss_newton(jacobian_by_differences(p), cross_entropy_hessian(logits(p), 40, 3), 40 * 3, dim);
  diag::HessianOperator op(p.net, p.arena, p.x, p.labels, {.chunk = 16});
  optim::NetworkObjective objective(p.net, p.arena, p.x, p.labels, {.chunk = 16});
  objective.set_curvature(optim::Curvature::gauss_newton);
  const std::vector<double> theta = objective.parameters();
  for (std::uint64_t seed : {11u, 12u, 13u}) {
    const std::vector<double> v = random_vector(dim, seed);
    std::vector<double> gv(dim), from_objective(dim);
    op.apply_gauss_newton(v, gv);
    objective.hessian_vector(theta, v, from_objective);
    const std::vector<double> expected = times(g_dense, v);
    EXPECT_LT(relative_difference(gv, expected), 1e-7) << "seed " << seed;
    EXPECT_EQ(gv, from_objective);
  }
  EXPECT_EQ(op.products(), 3);
}

TEST(GaussNewton, SymmetricPositiveSemiDefiniteWhereTheHessianIsIndefinite) {
  Problem p(DType::f64, {4, 6, 3}, nn::Activation::tanh, 40, 3);
  diag::HessianOperator op(p.net, p.arena, p.x, p.labels, {.chunk = 16});
  const auto dim = static_cast<std::size_t>(p.arena.size());
  // The exact Hessian here has negative eigenvalues: a PSD G is a property, not an accident.
  const diag::Eigen h_eigen = diag::symmetric_eigen(diag::dense_hessian(op), static_cast<std::int64_t>(dim));
  ASSERT_LT(h_eigen.values.front(), -1e-4);
  std::vector<double> g_dense(dim * dim), e(dim, 0.0), column(dim);
  for (std::size_t j = 0; j < dim; ++j) {
    e[j] = 1.0;
    op.apply_gauss_newton(e, column);
    e[j] = 0.0;
    for (std::size_t i = 0; i < dim; ++i) g_dense[i * dim + j] = column[i];
  }
  const diag::Eigen g_eigen = diag::symmetric_eigen(g_dense, static_cast<std::int64_t>(dim));
  EXPECT_GT(g_eigen.values.front(), -1e-12 * g_eigen.values.back());
  for (std::uint64_t seed = 20; seed < 40; seed += 2) {
    const std::vector<double> u = random_vector(dim, seed), v = random_vector(dim, seed + 1);
    std::vector<double> gu(dim), gv(dim);
    op.apply_gauss_newton(u, gu);
    op.apply_gauss_newton(v, gv);
    EXPECT_GE(dot(v, gv), 0.0);
    EXPECT_NEAR(dot(u, gv), dot(v, gu), 1e-12 * std::sqrt(dot(u, gu) * dot(v, gv)));
  }
}

TEST(GaussNewton, EqualsTheHessianForSoftmaxRegression) {
  // A linear model: z = W x + b, so d^2 z / d theta^2 = 0 and H = J^T H_L J exactly.
  Problem p(DType::f64, {5, 4}, nn::Activation::tanh, 30, 7);
  diag::HessianOperator op(p.net, p.arena, p.x, p.labels, {.chunk = 8});
  const auto dim = static_cast<std::size_t>(p.arena.size());
  for (std::uint64_t seed : {1u, 2u}) {
    const std::vector<double> v = random_vector(dim, seed);
    std::vector<double> gv(dim), hv(dim);
    op.apply_gauss_newton(v, gv);
    op.apply(v, hv);
    EXPECT_LT(relative_difference(gv, hv), 1e-13);
  }
}

TEST(GaussNewton, DiffersFromTheHessianOnANonlinearNet) {
  Problem p(DType::f64, {4, 6, 3}, nn::Activation::tanh, 40, 3);
  diag::HessianOperator op(p.net, p.arena, p.x, p.labels, {.chunk = 16});
  const auto dim = static_cast<std::size_t>(p.arena.size());
  const std::vector<double> v = random_vector(dim, 5);
  std::vector<double> gv(dim), hv(dim);
  op.apply_gauss_newton(v, gv);
  op.apply(v, hv);  // after a Gauss-Newton product (the tape's gradients were dropped): the full hvp
  EXPECT_GT(relative_difference(gv, hv), 0.05);
  // And H v itself is still right after the Gauss-Newton sweep: against a fresh operator.
  diag::HessianOperator fresh(p.net, p.arena, p.x, p.labels, {.chunk = 16});
  EXPECT_LT(relative_difference(fresh.apply(v), hv), 1e-13);
}

TEST(GaussNewton, MeanSquaredErrorProductByHand) {
  // prediction = tanh-MLP(x) [6, 2] against a fixed target, L = mean (z - t)^2:
  // H_L = 2 I / 12, G = (2 / 12) J^T J with J by central differences.
  Problem p(DType::f64, {3, 4, 2}, nn::Activation::tanh, 6, 9);
  const auto dim = static_cast<std::size_t>(p.arena.size());
  const std::vector<double> j = jacobian_by_differences(p);
  std::vector<double> hl(12 * 12, 0.0);
  for (std::size_t i = 0; i < 12; ++i) hl[i * 12 + i] = 2.0 / 12.0;
  const std::vector<double> g_dense = dense_gauss_newton(j, hl, 12, dim);
  autodiff::Tape tape;
  autodiff::Var z = p.net.forward(tape, tape.constant(p.x));
  const Tensor target = testing::random_tensor({6, 2}, DType::f64, 4);
  autodiff::Var loss = loss::mse(z, tape.constant(target));
  const std::vector<double> v = random_vector(dim, 3);
  Tensor gv = Tensor::empty({p.arena.size()}, DType::f64);
  autodiff::gauss_newton_product(tape, z, autodiff::OutputLoss::mean_squared_error,
                                 Tensor::from<double>({p.arena.size()}, v), gv);
  EXPECT_LT(relative_difference(as_vector(gv), times(g_dense, v)), 1e-7);
  EXPECT_GT(loss.value().item(), 0.0);  // the loss node is on the tape, unused by the product
}

TEST(GaussNewton, DampedNewtonOnGaussNewtonLowersAnMlpsLoss) {
  Problem p(DType::f64, {4, 6, 3}, nn::Activation::tanh, 64, 5);
  optim::NetworkObjective objective(p.net, p.arena, p.x, p.labels, {.chunk = 32});
  objective.set_curvature(optim::Curvature::gauss_newton);
  auto m = optim::make_second_order({.method = "damped_newton"});
  m->start(objective, objective.parameters());
  const double f0 = m->value();
  for (int k = 0; k < 15; ++k) (void)m->step(objective);
  EXPECT_LT(m->value(), 0.7 * f0);
}

}  // namespace
}  // namespace descent
