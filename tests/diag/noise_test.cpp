// Gradient noise (noise.hpp) against closed forms: on softmax regression (one linear layer)
// every example's gradient is (p - e_y) [x; 1]', computed here by hand, so G, tr(Sigma) and
// the noise scale are known exactly, and the expected squared error of a minibatch drawn
// without replacement is tr(Sigma) / n * (N - n) / (N - 1); the slope on an MLP.
#include "descent/diag/noise.hpp"

#include <gtest/gtest.h>

#include <cmath>

#include "descent/init/rng.hpp"
#include "problem.hpp"

namespace descent {
namespace {

using diag_testing::Problem;

// Per-example gradients of softmax regression by hand (the arena's layout: weight [k, d]
// row-major, then bias [k]).
std::vector<std::vector<double>> closed_form_gradients(Problem& p, std::int64_t d, std::int64_t k) {
  const std::int64_t n = p.x.dim(0);
  const ParamEntry& w = p.arena.entries().at(0);
  const ParamEntry& b = p.arena.entries().at(1);
  EXPECT_EQ(w.name, "layers.0.weight");
  EXPECT_EQ(b.name, "layers.0.bias");
  const Tensor& theta = p.arena.values();
  std::vector<std::vector<double>> g(static_cast<std::size_t>(n), std::vector<double>(static_cast<std::size_t>(p.arena.size()), 0.0));
  for (std::int64_t i = 0; i < n; ++i) {
    std::vector<double> z(static_cast<std::size_t>(k));
    for (std::int64_t c = 0; c < k; ++c) {
      double s = theta.at(b.offset + c);
      for (std::int64_t j = 0; j < d; ++j) s += theta.at(w.offset + c * d + j) * p.x.at(i * d + j);
      z[static_cast<std::size_t>(c)] = s;
    }
    const double m = *std::max_element(z.begin(), z.end());
    double sum = 0.0;
    for (double& v : z) sum += (v = std::exp(v - m));
    const auto y = static_cast<std::int64_t>(p.labels.at(i));
    auto& gi = g[static_cast<std::size_t>(i)];
    for (std::int64_t c = 0; c < k; ++c) {
      const double r = z[static_cast<std::size_t>(c)] / sum - (c == y ? 1.0 : 0.0);
      for (std::int64_t j = 0; j < d; ++j) gi[static_cast<std::size_t>(w.offset + c * d + j)] = r * p.x.at(i * d + j);
      gi[static_cast<std::size_t>(b.offset + c)] = r;
    }
  }
  return g;
}

TEST(GradientNoise, SoftmaxRegressionMatchesTheClosedForm) {
  const std::int64_t d = 5, k = 4, n = 48;
  Problem p(DType::f64, {d, k}, nn::Activation::relu, n, 11);
  const auto per_example = closed_form_gradients(p, d, k);
  std::vector<double> G(static_cast<std::size_t>(p.arena.size()), 0.0);
  for (const auto& gi : per_example)
    for (std::size_t j = 0; j < G.size(); ++j) G[j] += gi[j] / static_cast<double>(n);
  double trace = 0.0;
  for (const auto& gi : per_example)
    for (std::size_t j = 0; j < G.size(); ++j) trace += (gi[j] - G[j]) * (gi[j] - G[j]) / static_cast<double>(n);
  const double gnorm = diag_testing::norm(G);

  const int draws = 400;
  const diag::NoiseResult r = diag::gradient_noise(p.net, p.arena, p.x, p.labels, {.draws = draws, .seed = 5, .chunk = 7});
  EXPECT_EQ(r.examples, n);
  EXPECT_NEAR(r.gradient_norm, gnorm, 1e-12 * gnorm);
  EXPECT_NEAR(r.trace_sigma, trace, 1e-12 * trace);
  EXPECT_NEAR(r.noise_scale, trace / (gnorm * gnorm), 1e-10 * r.noise_scale);
  std::vector<double> tape_gradient;
  EXPECT_NEAR(r.loss, p.loss_and_gradient(tape_gradient), 1e-12);

  ASSERT_EQ(r.batch_sizes, (std::vector<std::int64_t>{1, 2, 4, 8, 16, 32, 48}));
  ASSERT_EQ(r.squared_errors.size(), r.batch_sizes.size());
  for (std::size_t s = 0; s < r.batch_sizes.size(); ++s) {
    const auto b = static_cast<double>(r.batch_sizes[s]);
    const double expected = trace / b * (static_cast<double>(n) - b) / static_cast<double>(n - 1);
    EXPECT_NEAR(r.predicted[s], std::sqrt(expected), 1e-12 * (1.0 + std::sqrt(expected)));
    // The mean of `draws` squared errors: within 4 standard errors of its expectation.
    const auto& e = r.squared_errors[s];
    ASSERT_EQ(e.size(), static_cast<std::size_t>(draws));
    double mean = 0.0, var = 0.0;
    for (double v : e) mean += v / draws;
    for (double v : e) var += (v - mean) * (v - mean) / (draws - 1);
    EXPECT_NEAR(r.standard_error[s], std::sqrt(mean), 1e-12);
    if (r.batch_sizes[s] == n) {
      EXPECT_LT(mean, 1e-25) << "the whole set is G itself";
      continue;
    }
    EXPECT_LT(std::abs(mean - expected), 4 * std::sqrt(var / draws) + 1e-15) << "batch size " << b;
    EXPECT_NEAR(r.corrected[s], std::sqrt(mean * (n - 1) / (n - b)), 1e-12);
  }
  // With the finite-population factor divided out the error falls as n^(-1/2).
  EXPECT_NEAR(r.slope, -0.5, 0.06);
  EXPECT_LT(r.slope_uncorrected, -0.5);  // the factor makes the raw errors fall faster
}

TEST(GradientNoise, MinibatchDrawsAreWithoutReplacement) {
  // With N = 2 and n = 2 a draw with replacement would repeat an example half the time and
  // give a nonzero error; without replacement the minibatch is the whole set.
  Problem p(DType::f64, {3, 3}, nn::Activation::relu, 2, 4);
  const diag::NoiseResult r = diag::gradient_noise(p.net, p.arena, p.x, p.labels, {.draws = 50, .seed = 1});
  ASSERT_EQ(r.batch_sizes, (std::vector<std::int64_t>{1, 2}));
  for (double e : r.squared_errors[1]) EXPECT_LT(e, 1e-28);
  // n = 1: each draw is one of the two examples, both at the same distance from G.
  EXPECT_EQ(r.draws_per_size, (std::vector<std::int64_t>{50, 50}));
  for (double e : r.squared_errors[0]) EXPECT_NEAR(e, r.trace_sigma, 1e-12 * r.trace_sigma);
}

TEST(GradientNoise, SlopeOnAnMlpIsAboutMinusOneHalf) {
  Problem p(DType::f32, {20, 32, 32, 5}, nn::Activation::relu, 256, 3);
  const diag::NoiseResult r = diag::gradient_noise(p.net, p.arena, p.x, p.labels, {.draws = 24, .seed = 2});
  EXPECT_EQ(r.batch_sizes.back(), 256);
  // At least N examples per batch size: 256 draws of 1, 128 of 2, ..., then 24.
  EXPECT_EQ(r.draws_per_size, (std::vector<std::int64_t>{256, 128, 64, 32, 24, 24, 24, 24, 24}));
  EXPECT_EQ(r.squared_errors[0].size(), 256u);
  EXPECT_GT(r.slope, -0.6);
  EXPECT_LT(r.slope, -0.4);
  EXPECT_GT(r.noise_scale, 0.0);
  // Each measured error near its prediction from the exact tr(Sigma).
  for (std::size_t s = 0; s + 1 < r.batch_sizes.size(); ++s) {
    EXPECT_NEAR(r.standard_error[s] / r.predicted[s], 1.0, 0.35) << "batch size " << r.batch_sizes[s];
  }
  EXPECT_LT(r.standard_error.back(), 1e-5 * r.gradient_norm);
}

TEST(GradientNoise, BadInputs) {
  Problem p(DType::f64, {3, 3}, nn::Activation::relu, 4, 4);
  EXPECT_THROW(diag::gradient_noise(p.net, p.arena, p.x, p.labels, {.draws = 1}), ShapeError);
  EXPECT_THROW(diag::gradient_noise(p.net, p.arena, p.x, p.labels.rows(0, 3)), ShapeError);
  EXPECT_THROW(diag::gradient_noise(p.net, p.arena, p.x.to(DType::f32), p.labels), ShapeError);
}

}  // namespace
}  // namespace descent
