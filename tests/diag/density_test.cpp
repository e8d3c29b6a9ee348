// Stochastic Lanczos quadrature and Hutchinson's trace: on an operator whose spectrum and
// probes' weights are known exactly, and on the exact Hessian of a small float64 MLP
// against LAPACK (the density integrates to 1, dim times its mean is the trace, the
// negative mass is the share of negative eigenvalues, the trace within 3 standard errors).
#include <gtest/gtest.h>

#include <cmath>

#include "descent/diag/density.hpp"
#include "descent/diag/lapack.hpp"
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

// Trapezoid rule of f(grid) * density over the grid.
template <class F>
double integrate(const diag::Density& d, F&& f) {
  double s = 0.0;
  for (std::size_t i = 0; i + 1 < d.grid.size(); ++i) {
    s += 0.5 * (d.grid[i + 1] - d.grid[i]) * (f(d.grid[i]) * d.density[i] + f(d.grid[i + 1]) * d.density[i + 1]);
  }
  return s;
}

TEST(SpectralDensity, ThreeEigenvaluesGiveGaussiansWithExactWeights) {
  // Eigenvalue -1 on 30 coordinates, 0 on 20 and 2 on 50: for a Rademacher probe, |P z|^2 / |z|^2
  // is 30/100, 20/100 and 50/100 exactly, and Lanczos stops after 3 steps with all three.
  std::vector<double> d(100, 2.0);
  for (int i = 0; i < 30; ++i) d[static_cast<std::size_t>(i * 3)] = -1.0;
  for (int i = 0; i < 20; ++i) d[static_cast<std::size_t>(i * 3 + 1)] = 0.0;
  diag::Density rho = diag::spectral_density(diagonal(d), {.probes = 3, .steps = 10, .grid = 2001, .sigma = 0.1});
  EXPECT_EQ(rho.steps, 3);
  EXPECT_NEAR(rho.negative_mass, 0.3, 1e-14);
  EXPECT_NEAR(rho.zero_mass, 0.2, 1e-14);
  EXPECT_NEAR(rho.trace, 30 * -1.0 + 50 * 2.0, 1e-11);
  EXPECT_NEAR(rho.trace_stderr, 0.0, 1e-11);
  // phi(t) = 0.3 g(t + 1) + 0.2 g(t) + 0.5 g(t - 2), g the N(0, 0.1^2) density, at every grid point.
  const double c = 1.0 / (0.1 * std::sqrt(2.0 * 3.14159265358979323846));
  for (std::size_t i = 0; i < rho.grid.size(); ++i) {
    const double t = rho.grid[i];
    const double expected = c * (0.3 * std::exp(-0.5 * std::pow((t + 1) / 0.1, 2)) + 0.2 * std::exp(-0.5 * std::pow(t / 0.1, 2)) +
                                 0.5 * std::exp(-0.5 * std::pow((t - 2) / 0.1, 2)));
    ASSERT_NEAR(rho.density[i], expected, 1e-12) << "t = " << t;
  }
  EXPECT_NEAR(rho.grid.front(), -1.0 - 0.6, 1e-12);
  EXPECT_NEAR(rho.grid.back(), 2.0 + 0.6, 1e-12);
}

struct Exact {
  std::int64_t n = 0;
  std::vector<double> dense;
  diag::Eigen eigen;
  double trace = 0.0;
  double frobenius2 = 0.0, diagonal2 = 0.0;
};

Exact exact_hessian(HessianOperator& h) {
  Exact e;
  e.n = h.dim();
  e.dense = diag::dense_hessian(h);
  e.eigen = diag::symmetric_eigen(e.dense, e.n);
  for (std::int64_t i = 0; i < e.n; ++i) {
    const double hii = e.dense[static_cast<std::size_t>(i * e.n + i)];
    e.trace += hii;
    e.diagonal2 += hii * hii;
  }
  for (double x : e.dense) e.frobenius2 += x * x;
  return e;
}

TEST(SpectralDensity, OnAnMlpHessianIntegratesToOneAndItsMeanGivesTheTrace) {
  Problem p(DType::f64, {6, 12, 4}, nn::Activation::tanh, 40, 31);
  HessianOperator h(p.net, p.arena, p.x, p.labels, {.chunk = 16});
  const Exact exact = exact_hessian(h);
  const int probes = 30;
  diag::Density rho = diag::spectral_density(h, {.probes = probes, .steps = 40, .seed = 3});
  EXPECT_EQ(rho.steps, 40);
  ASSERT_EQ(rho.nodes.size(), static_cast<std::size_t>(probes));
  EXPECT_NEAR(integrate(rho, [](double) { return 1.0; }), 1.0, 1e-8);
  // The mean from the grid and from the nodes (broadening keeps the mean), times dim.
  const double grid_mean = integrate(rho, [](double t) { return t; });
  EXPECT_NEAR(grid_mean, rho.mean, 1e-8 * std::abs(rho.mean) + 1e-12);
  EXPECT_NEAR(rho.trace, static_cast<double>(exact.n) * rho.mean, 1e-12 * std::abs(rho.trace));
  // dim * sum_k tau_k theta_k = z' H z for each probe: the same Rademacher probes, densely.
  Rng rng(3);
  double hutchinson = 0.0;
  for (int v = 0; v < probes; ++v) {
    const std::vector<double> z = diag::rademacher(exact.n, rng);
    double q = 0.0;
    for (std::int64_t i = 0; i < exact.n; ++i) {
      for (std::int64_t j = 0; j < exact.n; ++j) q += z[static_cast<std::size_t>(i)] * exact.dense[static_cast<std::size_t>(i * exact.n + j)] * z[static_cast<std::size_t>(j)];
    }
    double quadrature = 0.0;
    for (std::size_t k = 0; k < rho.nodes[static_cast<std::size_t>(v)].size(); ++k) {
      quadrature += rho.weights[static_cast<std::size_t>(v)][k] * rho.nodes[static_cast<std::size_t>(v)][k];
    }
    EXPECT_NEAR(static_cast<double>(exact.n) * quadrature, q, 1e-10 * std::sqrt(exact.frobenius2) * static_cast<double>(exact.n));
    hutchinson += q / probes;
  }
  EXPECT_NEAR(rho.trace, hutchinson, 1e-10 * std::sqrt(exact.frobenius2) * static_cast<double>(exact.n));
  // An unbiased estimate of the exact trace: within 3 standard errors.
  EXPECT_GT(rho.trace_stderr, 0.0);
  EXPECT_LT(std::abs(rho.trace - exact.trace), 3 * rho.trace_stderr) << "exact " << exact.trace << " estimate " << rho.trace;
  // The Ritz values lie within the spectrum, and the extremes are found.
  for (const auto& nodes : rho.nodes) {
    EXPECT_GE(nodes.front(), exact.eigen.values.front() - 1e-10);
    EXPECT_LE(nodes.back(), exact.eigen.values.back() + 1e-10);
  }
}

TEST(SpectralDensity, NegativeMassEstimatesTheShareOfNegativeEigenvalues) {
  Problem p(DType::f64, {5, 8, 3}, nn::Activation::tanh, 30, 32);
  HessianOperator h(p.net, p.arena, p.x, p.labels, {.chunk = 8});
  const Exact exact = exact_hessian(h);
  const double largest = std::max(std::abs(exact.eigen.values.front()), std::abs(exact.eigen.values.back()));
  int negative = 0;
  for (double lambda : exact.eigen.values) negative += lambda < -diag::zero_tolerance_f64 * largest ? 1 : 0;
  const double share = static_cast<double>(negative) / static_cast<double>(exact.n);
  ASSERT_GT(share, 0.05);
  // Full Lanczos runs: each probe's negative mass is |P_- z|^2 / dim, whose mean is the share.
  const int probes = 60;
  diag::Density rho = diag::spectral_density(h, {.probes = probes, .steps = static_cast<int>(exact.n), .seed = 4});
  std::vector<double> per_probe;
  for (int v = 0; v < probes; ++v) {
    double m = 0.0, big = 0.0;
    for (double theta : rho.nodes[static_cast<std::size_t>(v)]) big = std::max(big, std::abs(theta));
    for (std::size_t k = 0; k < rho.nodes[static_cast<std::size_t>(v)].size(); ++k) {
      if (rho.nodes[static_cast<std::size_t>(v)][k] < -diag::zero_tolerance_f64 * big) m += rho.weights[static_cast<std::size_t>(v)][k];
    }
    per_probe.push_back(m);
  }
  double mean = 0.0, ss = 0.0;
  for (double m : per_probe) mean += m / probes;
  for (double m : per_probe) ss += (m - mean) * (m - mean);
  const double se = std::sqrt(ss / (probes - 1) / probes);
  EXPECT_NEAR(rho.negative_mass, mean, 1e-14);
  EXPECT_LT(std::abs(rho.negative_mass - share), 3 * se) << "share " << share << " estimate " << rho.negative_mass;
}

TEST(HutchinsonTrace, WithinThreeStandardErrorsAndTheErrorShrinksWithProbes) {
  Problem p(DType::f64, {6, 12, 4}, nn::Activation::tanh, 40, 33);
  HessianOperator h(p.net, p.arena, p.x, p.labels, {.chunk = 16});
  const Exact exact = exact_hessian(h);
  const diag::TraceEstimate few = diag::hutchinson_trace(h, {.probes = 16, .seed = 2});
  const diag::TraceEstimate many = diag::hutchinson_trace(h, {.probes = 400, .seed = 3});
  EXPECT_EQ(many.samples.size(), 400u);
  for (const auto* e : {&few, &many}) {
    EXPECT_LT(std::abs(e->trace - exact.trace), 3 * e->standard_error) << "exact " << exact.trace << " estimate " << e->trace;
  }
  // sqrt(400 / 16) = 5 times smaller in expectation.
  EXPECT_LT(many.standard_error, few.standard_error / 2.5);
  // The variance per probe is 2 (|H|_F^2 - sum_j H_jj^2) (Hutchinson 1990).
  const double variance = 2 * (exact.frobenius2 - exact.diagonal2);
  const double sample_variance = many.standard_error * many.standard_error * 400;
  EXPECT_NEAR(sample_variance / variance, 1.0, 0.2);
  // The estimates are z' H z with the documented Rademacher probes.
  Rng rng(3);
  const std::vector<double> z = diag::rademacher(exact.n, rng);
  double q = 0.0;
  for (std::int64_t i = 0; i < exact.n; ++i) {
    for (std::int64_t j = 0; j < exact.n; ++j) q += z[static_cast<std::size_t>(i)] * exact.dense[static_cast<std::size_t>(i * exact.n + j)] * z[static_cast<std::size_t>(j)];
  }
  EXPECT_NEAR(many.samples[0], q, 1e-10 * std::abs(q) + 1e-12);
}

TEST(HutchinsonTrace, RejectsFewerThanTwoProbes) {
  EXPECT_THROW(diag::hutchinson_trace(diagonal({1.0, 2.0}), {.probes = 1}), ShapeError);
  EXPECT_THROW(diag::spectral_density(diagonal({1.0, 2.0}), {.probes = 0}), ShapeError);
}

}  // namespace
}  // namespace descent
