// Lanczos' extreme eigenvalues against LAPACK's dense eigendecomposition of the exact
// Hessian of small float64 MLPs, on operators with a known spectrum, and the residual and
// Ritz-vector claims; the LAPACK wrappers against each other and by hand.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "descent/diag/lanczos.hpp"
#include "descent/diag/lapack.hpp"
#include "descent/init/rng.hpp"
#include "problem.hpp"

namespace descent {
namespace {

using diag::HessianOperator;
using diag::LinearOperator;
using diag_testing::Problem;

LinearOperator diagonal(const std::vector<double>& d) {
  return {static_cast<std::int64_t>(d.size()), [d](std::span<const double> v, std::span<double> out) {
            for (std::size_t i = 0; i < d.size(); ++i) out[i] = d[i] * v[i];
          }};
}

TEST(Lapack, TridiagonalAndDenseAgreeAndMatchTwoByTwoByHand) {
  // [[2, 1], [1, 2]]: eigenvalues 1 and 3, eigenvectors (1, -1)/sqrt2 and (1, 1)/sqrt2.
  diag::Eigen t = diag::tridiagonal_eigen({2.0, 2.0}, {1.0});
  ASSERT_EQ(t.values.size(), 2u);
  EXPECT_NEAR(t.values[0], 1.0, 1e-15);
  EXPECT_NEAR(t.values[1], 3.0, 1e-15);
  EXPECT_NEAR(std::abs(t.vectors[2] + t.vectors[3]), std::sqrt(2.0), 1e-15);  // column 1 ~ (1, 1)/sqrt2
  EXPECT_NEAR(t.vectors[0] + t.vectors[1], 0.0, 1e-15);                     // column 0 ~ (1, -1)/sqrt2
  // A random tridiagonal of size 30, densely.
  Rng rng(4);
  std::vector<double> alpha(30), beta(29), a(900, 0.0);
  for (double& x : alpha) x = rng.normal();
  for (double& x : beta) x = rng.normal();
  for (int i = 0; i < 30; ++i) {
    a[static_cast<std::size_t>(i * 31)] = alpha[static_cast<std::size_t>(i)];
    if (i < 29) a[static_cast<std::size_t>(i * 30 + i + 1)] = a[static_cast<std::size_t>((i + 1) * 30 + i)] = beta[static_cast<std::size_t>(i)];
  }
  diag::Eigen e1 = diag::tridiagonal_eigen(alpha, beta, false);
  diag::Eigen e2 = diag::symmetric_eigen(a, 30);
  for (int i = 0; i < 30; ++i) EXPECT_NEAR(e1.values[static_cast<std::size_t>(i)], e2.values[static_cast<std::size_t>(i)], 1e-13);
  EXPECT_TRUE(std::is_sorted(e1.values.begin(), e1.values.end()));
}

TEST(Lanczos, FindsTheExtremesOfAKnownSpectrum) {
  // 400 eigenvalues: a bulk in [-0.5, 1] and outliers 9, 7, 5 and -3, -2.
  std::vector<double> d(400);
  Rng rng(1);
  for (double& x : d) x = rng.uniform(-0.5, 1.0);
  d[17] = 9.0;
  d[100] = 7.0;
  d[230] = 5.0;
  d[5] = -3.0;
  d[399] = -2.0;
  diag::Spectrum s = diag::lanczos_extremes(diagonal(d), {.steps = 60, .top = 3, .bottom = 2, .eigenvectors = true});
  ASSERT_EQ(s.top.size(), 3u);
  ASSERT_EQ(s.bottom.size(), 2u);
  EXPECT_NEAR(s.top[0], 9.0, 1e-12);
  EXPECT_NEAR(s.top[1], 7.0, 1e-12);
  EXPECT_NEAR(s.top[2], 5.0, 1e-12);
  EXPECT_NEAR(s.bottom[0], -3.0, 1e-12);
  EXPECT_NEAR(s.bottom[1], -2.0, 1e-12);
  EXPECT_EQ(s.lambda_max, s.top[0]);
  EXPECT_EQ(s.lambda_min, s.bottom[0]);
  EXPECT_EQ(s.steps, 60);
  // The Ritz vector of 9 is e_17 (up to sign).
  EXPECT_NEAR(std::abs(s.top_vectors[0][17]), 1.0, 1e-10);
}

TEST(Lanczos, StopsAtAnInvariantSubspaceWithExactEigenvalues) {
  // Three distinct eigenvalues: the Krylov space has dimension 3.
  std::vector<double> d(50);
  for (std::size_t i = 0; i < d.size(); ++i) d[i] = i % 3 == 0 ? -1.0 : (i % 3 == 1 ? 0.5 : 4.0);
  diag::Spectrum s = diag::lanczos_extremes(diagonal(d), {.steps = 20, .top = 5, .bottom = 5});
  EXPECT_EQ(s.steps, 3);
  ASSERT_EQ(s.top.size(), 3u);
  EXPECT_NEAR(s.top[0], 4.0, 1e-14);
  EXPECT_NEAR(s.top[1], 0.5, 1e-14);
  EXPECT_NEAR(s.top[2], -1.0, 1e-14);
  for (double r : s.top_residuals) EXPECT_LT(r, 1e-12);
}

struct DenseCase {
  std::vector<std::int64_t> sizes;
  nn::Activation act;
  std::int64_t examples;
  int steps;
};

void expect_extremes_match_lapack(const DenseCase& c) {
  Problem p(DType::f64, c.sizes, c.act, c.examples, 21);
  HessianOperator h(p.net, p.arena, p.x, p.labels, {.chunk = 16});
  const std::int64_t n = h.dim();
  const diag::Eigen exact = diag::symmetric_eigen(diag::dense_hessian(h), n, true);
  const double scale = std::max(std::abs(exact.values.front()), std::abs(exact.values.back()));
  ASSERT_LT(exact.values.front(), -1e-3 * scale) << "the test wants an indefinite Hessian";
  const std::int64_t before = h.products();
  const int k = 3;
  diag::Spectrum s = diag::lanczos_extremes(h, {.steps = c.steps, .top = k, .bottom = k, .seed = 5, .eigenvectors = true});
  EXPECT_EQ(h.products() - before, c.steps);
  ASSERT_EQ(s.dim, n);
  for (int i = 0; i < k; ++i) {
    const double top = exact.values[static_cast<std::size_t>(n - 1 - i)];
    const double bottom = exact.values[static_cast<std::size_t>(i)];
    EXPECT_NEAR(s.top[static_cast<std::size_t>(i)], top, 1e-8 * scale) << "top " << i;
    EXPECT_NEAR(s.bottom[static_cast<std::size_t>(i)], bottom, 1e-8 * scale) << "bottom " << i;
    // The residual beta_m |u_k[m]| is |H y - theta y| of the Ritz vector, computed here.
    for (bool is_top : {true, false}) {
      const std::vector<double>& y = is_top ? s.top_vectors[static_cast<std::size_t>(i)] : s.bottom_vectors[static_cast<std::size_t>(i)];
      const double theta = is_top ? s.top[static_cast<std::size_t>(i)] : s.bottom[static_cast<std::size_t>(i)];
      const double claimed = is_top ? s.top_residuals[static_cast<std::size_t>(i)] : s.bottom_residuals[static_cast<std::size_t>(i)];
      std::vector<double> r = h.apply(y);
      for (std::size_t j = 0; j < r.size(); ++j) r[j] -= theta * y[j];
      EXPECT_NEAR(diag_testing::norm(y), 1.0, 1e-12);
      EXPECT_NEAR(diag_testing::norm(r), claimed, 1e-9 * scale) << (is_top ? "top " : "bottom ") << i;
      EXPECT_LT(claimed, 1e-5 * scale);
    }
  }
  // lambda_max's Ritz vector is LAPACK's eigenvector up to sign.
  double overlap = 0.0;
  for (std::int64_t j = 0; j < n; ++j) overlap += s.top_vectors[0][static_cast<std::size_t>(j)] * exact.vectors[static_cast<std::size_t>((n - 1) * n + j)];
  EXPECT_NEAR(std::abs(overlap), 1.0, 1e-8);
}

TEST(Lanczos, ExtremesOfATanhMlpHessianMatchLapack) {
  expect_extremes_match_lapack({{6, 12, 4}, nn::Activation::tanh, 40, 70});  // 136 parameters, 70 steps
}
TEST(Lanczos, ExtremesOfALargerTanhMlpHessianMatchLapack) {
  expect_extremes_match_lapack({{10, 16, 8, 5}, nn::Activation::tanh, 64, 90});  // 357 parameters, 90 steps
}
TEST(Lanczos, ExtremesOfAReluMlpHessianMatchLapack) {
  expect_extremes_match_lapack({{6, 12, 4}, nn::Activation::relu, 40, 70});
}

TEST(Lanczos, NegativeMassIsTheStartVectorsShareOfTheNegativeEigenspace) {
  Problem p(DType::f64, {5, 8, 3}, nn::Activation::tanh, 30, 22);
  HessianOperator h(p.net, p.arena, p.x, p.labels, {.chunk = 8});
  const std::int64_t n = h.dim();
  const diag::Eigen exact = diag::symmetric_eigen(diag::dense_hessian(h), n, true);
  // Lanczos run to the end (or an invariant subspace) integrates the start vector's
  // spectral measure exactly: the mass below zero is |P_- q_1|^2.
  const std::uint64_t seed = 8;
  diag::Spectrum s = diag::lanczos_extremes(h, {.steps = static_cast<int>(n), .seed = seed});
  Rng rng(seed);
  std::vector<double> q(static_cast<std::size_t>(n));
  for (double& x : q) x = rng.normal();
  const double qq = diag_testing::norm(q);
  const double largest = std::max(std::abs(exact.values.front()), std::abs(exact.values.back()));
  double mass = 0.0, zero = 0.0;
  int negative = 0, zeros = 0;
  for (std::int64_t k = 0; k < n; ++k) {
    const double lambda = exact.values[static_cast<std::size_t>(k)];
    double c = 0.0;
    for (std::int64_t j = 0; j < n; ++j) c += exact.vectors[static_cast<std::size_t>(k * n + j)] * q[static_cast<std::size_t>(j)];
    if (lambda < -diag::zero_tolerance_f64 * largest) {
      ++negative;
      mass += c * c / (qq * qq);
    } else if (lambda <= diag::zero_tolerance_f64 * largest) {
      ++zeros;
      zero += c * c / (qq * qq);
    }
  }
  ASSERT_GT(negative, 2);
  // Softmax's shift invariance: adding one vector to every row of the last weight matrix and
  // one number to every output bias leaves the loss alone, 8 + 1 null directions.
  EXPECT_EQ(zeros, 9);
  EXPECT_GT(mass, 0.01);
  EXPECT_NEAR(s.negative_mass, mass, 1e-8);
  EXPECT_NEAR(s.zero_mass, zero, 1e-8);
  EXPECT_NEAR(s.zero_tolerance, diag::zero_tolerance_f64 * largest, 1e-9 * s.zero_tolerance);
}

TEST(Lanczos, RejectsBadArguments) {
  LinearOperator a = diagonal({1.0, 2.0, 3.0});
  EXPECT_THROW(diag::lanczos(a, std::vector<double>{1.0, 2.0}, 3, false), ShapeError);
  EXPECT_THROW(diag::lanczos(a, std::vector<double>{0.0, 0.0, 0.0}, 3, false), NumericError);
  EXPECT_THROW(diag::lanczos(a, std::vector<double>{1.0, 1.0, 1.0}, 0, false), ShapeError);
  EXPECT_THROW(diag::lanczos_extremes(LinearOperator{}), ShapeError);
}

}  // namespace
}  // namespace descent
