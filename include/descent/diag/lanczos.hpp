#pragma once
// Extreme eigenvalues of the Hessian of the mean loss over a fixed example set, by Lanczos
// with full reorthogonalization in double precision (Golub & Van Loan, Alg. 10.1.1; Saad,
// Numerical Methods for Large Eigenvalue Problems, ch. 6). The chapter's use: section 8.2.1
// (lambda_max against the step size: ill-conditioning) and 8.2.2-8.2.3 (at a minimum every
// eigenvalue is >= 0; a saddle has eigenvalues of both signs).
//
//   q_1 = v / |v|
//   for j = 1..m:  w = H q_j - beta_{j-1} q_{j-1};  alpha_j = q_j' w;  w -= alpha_j q_j
//                  w -= Q_j (Q_j' w), twice (full reorthogonalization: "twice is enough")
//                  beta_j = |w|;  q_{j+1} = w / beta_j
//   T_m = tridiag(beta, alpha, beta) = U diag(theta) U'   (LAPACK dstev)
// Ritz values theta_k approximate eigenvalues, the extreme ones first; the Ritz vector
// y_k = Q_m u_k has residual |H y_k - theta_k y_k| = beta_m |u_k[m]| (no extra product).
// Lanczos stops early at an invariant subspace (beta_j ~ 0): then its Ritz values are
// exact eigenvalues. Distinct eigenvalues only: a multiple eigenvalue shows once.
//
// Cost: `steps` Hessian-vector products (about 1.3 gradients over the examples each: the
// forward pass and the gradient recorded once, Tape::hvp_at_gradient) plus 4 steps^2 dim
// flops (the reorthogonalization: two sweeps over the basis per pass, split among threads
// in fixed blocks) and steps * dim doubles of memory for the basis. Checked against LAPACK's dense eigenvalues of the exact Hessian (tests/diag).
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "descent/diag/hessian.hpp"

namespace descent::diag {

// Relative sizes below which a Ritz value counts as zero: about the relative precision of
// exact Hessian-vector products computed in float64 and in float32.
inline constexpr double zero_tolerance_f64 = 1e-10;
inline constexpr double zero_tolerance_f32 = 1e-5;

// A symmetric linear map on R^dim in double precision: apply(v, out) sets out = A v.
// Ritz values theta with |theta| <= zero_tolerance * max|theta| count as zero (neither
// negative nor positive): rounding in the products puts exact zero eigenvalues (a network
// has many: softmax's shift invariance, dead ReLU units) at tiny values of either sign.
struct LinearOperator {
  std::int64_t dim = 0;
  std::function<void(std::span<const double>, std::span<double>)> apply;
  double zero_tolerance = zero_tolerance_f64;
};
// Refers to `hessian`, which must outlive it; zero_tolerance by the model's dtype.
LinearOperator as_operator(HessianOperator& hessian);

// One Lanczos run from a start vector.
struct LanczosRun {
  std::vector<double> alpha;            // diagonal of T [m]
  std::vector<double> beta;             // off-diagonal of T [m - 1]
  double beta_last = 0.0;               // |w| after step m: the residual factor
  std::vector<std::vector<double>> basis;  // q_1..q_m (kept only when asked)
  int steps = 0;                        // m (fewer than asked at an invariant subspace)
};
LanczosRun lanczos(const LinearOperator& a, std::span<const double> start, int steps, bool keep_basis);

struct LanczosOptions {
  int steps = 60;          // Lanczos steps (Hessian-vector products); at most dim
  int top = 5;             // largest Ritz values reported
  int bottom = 5;          // smallest Ritz values reported
  std::uint64_t seed = 1;  // of the Gaussian start vector
  bool eigenvectors = false;
};

struct Spectrum {
  std::vector<double> top;               // descending, top[0] = lambda_max
  std::vector<double> top_residuals;     // |H y - theta y| of each
  std::vector<double> bottom;            // ascending, bottom[0] = lambda_min
  std::vector<double> bottom_residuals;
  std::vector<std::vector<double>> top_vectors, bottom_vectors;  // unit Ritz vectors, when asked
  double lambda_max = 0.0, lambda_min = 0.0;
  // The share of the spectrum below zero as the start vector sees it: the sum of the Ritz
  // weights u_k[1]^2 over theta_k < -zero_tolerance (a one-probe stochastic Lanczos
  // quadrature; spectral_density gives it over several probes); zero_mass the same over
  // |theta_k| <= zero_tolerance.
  double negative_mass = 0.0;
  double zero_mass = 0.0;
  double zero_tolerance = 0.0;  // absolute: the operator's relative tolerance * max|theta|
  int steps = 0;            // Lanczos steps taken
  std::int64_t dim = 0;     // number of parameters
};

Spectrum lanczos_extremes(const LinearOperator& a, const LanczosOptions& options = {});
Spectrum lanczos_extremes(HessianOperator& hessian, const LanczosOptions& options = {});


}  // namespace descent::diag
