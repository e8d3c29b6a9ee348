#include "descent/diag/density.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "descent/diag/lapack.hpp"

namespace descent::diag {

std::vector<double> rademacher(std::int64_t dim, Rng& rng) {
  std::vector<double> z(static_cast<std::size_t>(dim));
  for (double& x : z) x = (rng.next_u64() >> 63) != 0 ? 1.0 : -1.0;
  return z;
}

namespace {

// Mean and standard error of the mean of samples (at least 2).
void mean_and_stderr(const std::vector<double>& x, double& mean, double& stderr_of_mean) {
  const auto m = static_cast<double>(x.size());
  double sum = 0.0;
  for (double v : x) sum += v;
  mean = sum / m;
  double ss = 0.0;
  for (double v : x) ss += (v - mean) * (v - mean);
  stderr_of_mean = x.size() > 1 ? std::sqrt(ss / (m - 1.0) / m) : 0.0;
}

}  // namespace

Density spectral_density(const LinearOperator& a, const DensityOptions& options) {
  if (a.dim < 1 || !a.apply) throw ShapeError("spectral_density: the operator has no dimensions");
  if (options.probes < 1) throw ShapeError("spectral_density: probes must be at least 1, got " + std::to_string(options.probes));
  if (options.grid < 2) throw ShapeError("spectral_density: the grid needs at least 2 points, got " + std::to_string(options.grid));
  if (options.sigma < 0.0 || !(options.sigma_fraction > 0.0)) throw ShapeError("spectral_density: sigma must be >= 0 and sigma_fraction > 0");
  Density d;
  d.probes = options.probes;
  d.dim = a.dim;
  Rng rng(options.seed);
  std::vector<double> quadratic;  // dim * sum_k tau_k theta_k = z' H z per probe
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (int p = 0; p < options.probes; ++p) {
    const std::vector<double> z = rademacher(a.dim, rng);  // |z|^2 = dim; lanczos normalizes
    const LanczosRun run = lanczos(a, z, options.steps, false);
    const Eigen t = tridiagonal_eigen(run.alpha, run.beta, true);
    const auto m = static_cast<std::size_t>(run.steps);
    std::vector<double> tau(m);
    double mean = 0.0, largest = 0.0;
    for (std::size_t k = 0; k < m; ++k) {
      tau[k] = t.vectors[k * m] * t.vectors[k * m];  // first component of u_k, squared
      mean += tau[k] * t.values[k];
      largest = std::max(largest, std::abs(t.values[k]));
    }
    const double tol = a.zero_tolerance * largest;
    for (std::size_t k = 0; k < m; ++k) {
      if (t.values[k] < -tol) d.negative_mass += tau[k] / options.probes;
      if (std::abs(t.values[k]) <= tol) d.zero_mass += tau[k] / options.probes;
    }
    quadratic.push_back(static_cast<double>(a.dim) * mean);
    lo = std::min(lo, t.values.front());
    hi = std::max(hi, t.values.back());
    d.nodes.push_back(t.values);
    d.weights.push_back(std::move(tau));
    d.steps = std::max(d.steps, run.steps);
  }
  mean_and_stderr(quadratic, d.trace, d.trace_stderr);
  d.mean = d.trace / static_cast<double>(a.dim);

  // phi(t) = (1/n_v) sum_v sum_k tau_k exp(-(t - theta_k)^2 / (2 sigma^2)) / (sigma sqrt(2 pi))
  const double range = hi - lo;
  d.sigma = options.sigma > 0.0 ? options.sigma
                                : options.sigma_fraction * (range > 0.0 ? range : std::max(std::abs(hi), 1.0));
  const double g0 = lo - 6.0 * d.sigma, g1 = hi + 6.0 * d.sigma;
  const double norm = 1.0 / (d.sigma * std::sqrt(2.0 * 3.14159265358979323846) * options.probes);
  d.grid.resize(static_cast<std::size_t>(options.grid));
  d.density.assign(d.grid.size(), 0.0);
  for (std::size_t i = 0; i < d.grid.size(); ++i) {
    const double t = g0 + (g1 - g0) * static_cast<double>(i) / static_cast<double>(d.grid.size() - 1);
    d.grid[i] = t;
    double phi = 0.0;
    for (std::size_t p = 0; p < d.nodes.size(); ++p) {
      for (std::size_t k = 0; k < d.nodes[p].size(); ++k) {
        const double u = (t - d.nodes[p][k]) / d.sigma;
        phi += d.weights[p][k] * std::exp(-0.5 * u * u);
      }
    }
    d.density[i] = phi * norm;
  }
  return d;
}

Density spectral_density(HessianOperator& hessian, const DensityOptions& options) {
  return spectral_density(as_operator(hessian), options);
}

TraceEstimate hutchinson_trace(const LinearOperator& a, const TraceOptions& options) {
  if (a.dim < 1 || !a.apply) throw ShapeError("hutchinson_trace: the operator has no dimensions");
  if (options.probes < 2) throw ShapeError("hutchinson_trace: probes must be at least 2 (for the standard error), got " + std::to_string(options.probes));
  TraceEstimate e;
  e.probes = options.probes;
  Rng rng(options.seed);
  std::vector<double> hz(static_cast<std::size_t>(a.dim));
  for (int p = 0; p < options.probes; ++p) {
    const std::vector<double> z = rademacher(a.dim, rng);
    a.apply(z, hz);
    double q = 0.0;  // z' H z
    for (std::size_t i = 0; i < z.size(); ++i) q += z[i] * hz[i];
    e.samples.push_back(q);
  }
  mean_and_stderr(e.samples, e.trace, e.standard_error);
  return e;
}

TraceEstimate hutchinson_trace(HessianOperator& hessian, const TraceOptions& options) {
  return hutchinson_trace(as_operator(hessian), options);
}

}  // namespace descent::diag
