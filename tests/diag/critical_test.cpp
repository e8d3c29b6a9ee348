// The critical-point verdict (critical.hpp) on constructed problems: softmax regression at
// its minimum (reached here by Newton's method on the dense Hessian), a tanh MLP at the
// saddle where every parameter is zero (balanced labels make the gradient vanish there;
// the input-to-hidden and hidden-to-output blocks couple into curvature of both signs),
// random parameters (no critical point); the extreme eigenvalues against LAPACK's; and the
// thresholds of the verdict on numbers chosen on either side of them.
#include "descent/diag/critical.hpp"

#include <gtest/gtest.h>

#include <cmath>

#include "descent/diag/lapack.hpp"
#include "descent/init/rng.hpp"
#include "problem.hpp"

namespace descent {
namespace {

using diag_testing::Problem;

struct Dense {
  double lambda_min = 0.0, lambda_max = 0.0;
};
Dense dense_extremes(diag::HessianOperator& h) {
  const diag::Eigen e = diag::symmetric_eigen(diag::dense_hessian(h), h.dim());
  return {e.values.front(), e.values.back()};
}

TEST(Critical, SoftmaxRegressionAtItsMinimum) {
  Problem p(DType::f64, {3, 3}, nn::Activation::relu, 60, 2);
  p.arena.values().fill(0.0);
  // Newton's method with the pseudo-inverse (the Hessian is singular along softmax's shift).
  for (int it = 0; it < 30; ++it) {
    diag::HessianOperator h(p.net, p.arena, p.x, p.labels);
    const diag::Eigen e = diag::symmetric_eigen(diag::dense_hessian(h), h.dim(), true);
    const auto n = static_cast<std::size_t>(h.dim());
    std::vector<double> step(n, 0.0);
    for (std::size_t k = 0; k < n; ++k) {
      if (e.values[k] <= 1e-10 * e.values.back()) continue;
      double c = 0.0;
      for (std::size_t i = 0; i < n; ++i) c += e.vectors[k * n + i] * h.gradient()[i];
      for (std::size_t i = 0; i < n; ++i) step[i] += c / e.values[k] * e.vectors[k * n + i];
    }
    // Backtracking: halve the step until the loss falls (a full Newton step can overshoot).
    double* theta = p.arena.values().data<double>();
    const std::vector<double> before(theta, theta + n);
    std::vector<double> g;
    for (double t = 1.0; t > 1e-6; t /= 2) {
      for (std::size_t i = 0; i < n; ++i) theta[i] = before[i] - t * step[i];
      if (p.loss_and_gradient(g) <= h.loss()) break;
    }
  }
  diag::HessianOperator h(p.net, p.arena, p.x, p.labels);
  const diag::CriticalPoint c = diag::critical_point(h);
  EXPECT_LT(c.gradient_norm, 1e-10);
  EXPECT_TRUE(c.critical);
  EXPECT_EQ(c.verdict, "near a minimum") << c.reason;
  const Dense d = dense_extremes(h);
  EXPECT_NEAR(c.lambda_max, d.lambda_max, 1e-10 * d.lambda_max);
  EXPECT_NEAR(c.lambda_min, d.lambda_min, 1e-10 * d.lambda_max);  // zero: softmax's shift invariance
  EXPECT_GT(d.lambda_min, -1e-12);
}

TEST(Critical, ZeroWeightsOfATanhMlpAreASaddle) {
  Problem p(DType::f64, {3, 4, 3}, nn::Activation::tanh, 60, 6);
  p.arena.values().fill(0.0);
  std::vector<std::int32_t> y(60);
  for (std::size_t i = 0; i < y.size(); ++i) y[i] = static_cast<std::int32_t>(i % 3);  // balanced
  p.labels = Tensor::from<std::int32_t>({60}, y);
  diag::HessianOperator h(p.net, p.arena, p.x, p.labels);
  const diag::CriticalPoint c = diag::critical_point(h);
  EXPECT_LT(c.gradient_norm, 1e-14);
  const Dense d = dense_extremes(h);
  ASSERT_LT(d.lambda_min, -1e-3);
  ASSERT_GT(d.lambda_max, 1e-3);
  EXPECT_NEAR(c.lambda_min, d.lambda_min, 1e-9 * d.lambda_max);
  EXPECT_NEAR(c.lambda_max, d.lambda_max, 1e-9 * d.lambda_max);
  EXPECT_EQ(c.verdict, "near a saddle") << c.reason;
}

TEST(Critical, RandomParametersAreNotACriticalPoint) {
  Problem p(DType::f64, {4, 6, 3}, nn::Activation::tanh, 50, 9);
  diag::HessianOperator h(p.net, p.arena, p.x, p.labels);
  const diag::CriticalPoint c = diag::critical_point(h);
  EXPECT_EQ(c.verdict, "not a critical point") << c.reason;
  EXPECT_NEAR(c.gradient_norm, diag_testing::norm(p.gradient()), 1e-12);
  const Dense d = dense_extremes(h);
  EXPECT_NEAR(c.gap, c.gradient_norm * c.gradient_norm / (2 * std::max(d.lambda_max, -d.lambda_min)), 1e-9 * c.gap);
}

TEST(Critical, ThresholdsOfTheVerdict) {
  // Loss 2, L = 4: the gradient counts as small when |g|^2 / 8 <= 2e-3, i.e. |g| <= 0.1265.
  EXPECT_EQ(diag::classify_point(2.0, 0.12, 0.5, 4.0, 0.0, 0.0).verdict, "near a minimum");
  EXPECT_EQ(diag::classify_point(2.0, 0.13, 0.5, 4.0, 0.0, 0.0).verdict, "not a critical point");
  // Negative curvature counts below -1e-3 L = -0.004, or below minus its residual.
  EXPECT_EQ(diag::classify_point(2.0, 0.0, -0.003, 4.0, 0.0, 0.0).verdict, "near a minimum");
  EXPECT_EQ(diag::classify_point(2.0, 0.0, -0.005, 4.0, 0.0, 0.0).verdict, "near a saddle");
  EXPECT_EQ(diag::classify_point(2.0, 0.0, -0.005, 4.0, 0.01, 0.0).verdict, "near a minimum");
  EXPECT_EQ(diag::classify_point(2.0, 0.0, -4.0, -0.001, 0.0, 0.0).verdict, "near a maximum");
  // Loss near zero: the absolute tolerance.
  EXPECT_EQ(diag::classify_point(0.0, 1e-5, 0.0, 1.0, 0.0, 0.0).verdict, "near a minimum");
  EXPECT_EQ(diag::classify_point(0.0, 1e-4, 0.0, 1.0, 0.0, 0.0).verdict, "not a critical point");
  const diag::CriticalPoint c = diag::classify_point(2.0, 0.2, -1.0, 4.0, 0.0, 0.0);
  EXPECT_DOUBLE_EQ(c.gap, 0.04 / 8);
  EXPECT_DOUBLE_EQ(c.gap_threshold, 2e-3);
  EXPECT_TRUE(c.negative_curvature);
}

}  // namespace
}  // namespace descent
