#pragma once
// The whole Hessian spectrum, estimated: its density by stochastic Lanczos quadrature and
// its trace by Hutchinson's estimator. The chapter's use: section 8.2.1-8.2.3 (how much of
// the curvature is negative, how ill-conditioned the bulk is; Sagun et al. 2017 and
// Ghorbani, Krishnan & Xiao 2019 describe a bulk near zero plus a few outliers).
//
// Stochastic Lanczos quadrature (Ubaru, Chen & Saad 2017; Ghorbani et al. 2019): for each
// of n_v Rademacher probes v (unit after scaling by 1/sqrt(dim)), m Lanczos steps from v
// give Ritz values theta_k and weights tau_k = u_k[1]^2 (sum to 1), a quadrature of the
// spectral measure seen by v; the density is
//   phi(t) = (1/n_v) sum_v sum_k tau_k g_sigma(t - theta_k),   g_sigma Gaussian.
// It integrates to 1, and since sum_k tau_k theta_k = v' H v, dim * (its mean) is the
// Hutchinson estimate of tr(H) with the same probes.
// Cost: n_v * m Hessian-vector products.
//
// Hutchinson (1990): tr(H) ~ (1/m) sum_i z_i' H z_i with z_i Rademacher (+-1); unbiased,
// variance per probe 2 (|H|_F^2 - sum_j H_jj^2). Reported with the standard error of
// the mean, s / sqrt(m) (s the sample standard deviation). Cost: m products.
#include <cstdint>
#include <vector>

#include "descent/diag/lanczos.hpp"
#include "descent/init/rng.hpp"

namespace descent::diag {

struct DensityOptions {
  int probes = 10;             // Rademacher probes n_v
  int steps = 80;              // Lanczos steps per probe (at most dim)
  int grid = 1001;             // points of the grid
  double sigma = 0.0;          // Gaussian width; 0: sigma_fraction of the Ritz values' range
  double sigma_fraction = 0.01;
  std::uint64_t seed = 1;
};

struct Density {
  std::vector<double> grid;     // ascending, from min theta - 6 sigma to max theta + 6 sigma
  std::vector<double> density;  // phi at each grid point
  double sigma = 0.0;
  std::vector<std::vector<double>> nodes;    // per probe: Ritz values theta_k
  std::vector<std::vector<double>> weights;  // per probe: tau_k
  double mean = 0.0;           // integral of t phi(t) dt, from the nodes (exact, not the grid)
  double trace = 0.0;          // dim * mean
  double trace_stderr = 0.0;   // standard error of that over the probes
  // (1/n_v) sum_v sum_{theta_k < -tol} tau_k: the fraction of eigenvalues below zero, before
  // broadening (tol = the operator's zero_tolerance * max|theta| of that probe); zero_mass
  // the same over |theta_k| <= tol (numerically zero eigenvalues).
  double negative_mass = 0.0;
  double zero_mass = 0.0;
  int probes = 0;
  int steps = 0;
  std::int64_t dim = 0;
};

Density spectral_density(const LinearOperator& a, const DensityOptions& options = {});
Density spectral_density(HessianOperator& hessian, const DensityOptions& options = {});

struct TraceOptions {
  int probes = 100;  // at least 2 (for the standard error)
  std::uint64_t seed = 1;
};

struct TraceEstimate {
  double trace = 0.0;
  double standard_error = 0.0;  // sample standard deviation / sqrt(probes)
  std::vector<double> samples;  // z_i' H z_i
  int probes = 0;
};

TraceEstimate hutchinson_trace(const LinearOperator& a, const TraceOptions& options = {});
TraceEstimate hutchinson_trace(HessianOperator& hessian, const TraceOptions& options = {});

// A Rademacher vector (+-1 each with probability 1/2) from `rng`'s bits.
std::vector<double> rademacher(std::int64_t dim, Rng& rng);

}  // namespace descent::diag
