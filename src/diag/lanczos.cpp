#include "descent/diag/lanczos.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "descent/diag/lapack.hpp"
#include "descent/init/rng.hpp"
#include "descent/tensor/parallel.hpp"

namespace descent::diag {

namespace {

// Vectorized with a fixed order of partial sums (the vector width is fixed at compile
// time): the same result with any thread count.
double dot(std::span<const double> a, std::span<const double> b) {
  double s = 0.0;
  const double* x = a.data();
  const double* y = b.data();
  const std::size_t n = a.size();
#pragma omp simd reduction(+ : s)
  for (std::size_t i = 0; i < n; ++i) s += x[i] * y[i];
  return s;
}

// y += alpha x
void axpy(double alpha, std::span<const double> x, std::span<double> y) {
  const double* a = x.data();
  double* b = y.data();
  const std::size_t n = x.size();
#pragma omp simd
  for (std::size_t i = 0; i < n; ++i) b[i] += alpha * a[i];
}

// w -= Q_k (Q_k' w) for the basis vectors q[0..k): classical Gram-Schmidt, in two sweeps
// over the elements in fixed blocks, so that w and each q_i are read once per sweep (a block
// of w stays in cache while the k basis vectors pass by) and the blocks can be split among
// threads: c_i = q_i' w from one partial per (block, i) added in block order, then
// w -= sum_i c_i q_i element by element in i order. The same bits with any thread count.
void project_out(const std::vector<std::vector<double>>& q, std::size_t k, std::vector<double>& w) {
  constexpr std::int64_t block = 4096;
  const auto n = static_cast<std::int64_t>(w.size());
  const std::int64_t blocks = (n + block - 1) / block;
  std::vector<double> partial(static_cast<std::size_t>(blocks) * k);
  double* wp = w.data();
  parallel_for(blocks, 4, [&](std::int64_t b0, std::int64_t b1) {
    for (std::int64_t b = b0; b < b1; ++b) {
      const std::int64_t i0 = b * block, i1 = std::min(n, i0 + block);
      for (std::size_t j = 0; j < k; ++j) {
        const double* x = q[j].data();
        double s = 0.0;
#pragma omp simd reduction(+ : s)
        for (std::int64_t i = i0; i < i1; ++i) s += x[i] * wp[i];
        partial[static_cast<std::size_t>(b) * k + j] = s;
      }
    }
  });
  std::vector<double> c(k, 0.0);
  for (std::int64_t b = 0; b < blocks; ++b) {
    for (std::size_t j = 0; j < k; ++j) c[j] += partial[static_cast<std::size_t>(b) * k + j];
  }
  parallel_for(blocks, 4, [&](std::int64_t b0, std::int64_t b1) {
    for (std::int64_t b = b0; b < b1; ++b) {
      const std::int64_t i0 = b * block, i1 = std::min(n, i0 + block);
      for (std::size_t j = 0; j < k; ++j) {
        const double* x = q[j].data();
        const double cj = c[j];
#pragma omp simd
        for (std::int64_t i = i0; i < i1; ++i) wp[i] -= cj * x[i];
      }
    }
  });
}

void check_operator(const LinearOperator& a, const char* what) {
  if (a.dim < 1 || !a.apply) throw ShapeError(std::string(what) + ": the operator has no dimensions");
}

}  // namespace

LinearOperator as_operator(HessianOperator& hessian) {
  return {hessian.dim(), [&hessian](std::span<const double> v, std::span<double> out) { hessian.apply(v, out); },
          hessian.dtype() == DType::f64 ? zero_tolerance_f64 : zero_tolerance_f32};
}

LanczosRun lanczos(const LinearOperator& a, std::span<const double> start, int steps, bool keep_basis) {
  check_operator(a, "lanczos");
  const auto n = static_cast<std::size_t>(a.dim);
  if (start.size() != n) {
    throw ShapeError("lanczos: the start vector has " + std::to_string(start.size()) + " elements, the operator " + std::to_string(n));
  }
  if (steps < 1) throw ShapeError("lanczos: steps must be at least 1, got " + std::to_string(steps));
  const int m = static_cast<int>(std::min<std::int64_t>(steps, a.dim));
  const double start_norm = std::sqrt(dot(start, start));
  if (!(start_norm > 0.0) || !std::isfinite(start_norm)) throw NumericError("lanczos: the start vector is zero or not finite");

  LanczosRun run;
  std::vector<std::vector<double>> q;  // the orthonormal basis q_1..q_j
  q.reserve(static_cast<std::size_t>(m));
  q.emplace_back(start.begin(), start.end());
  for (double& x : q[0]) x /= start_norm;
  std::vector<double> w(n);
  double scale = 0.0;  // max |alpha|, |beta| so far: about |H| restricted to the Krylov space
  for (int j = 0; j < m; ++j) {
    const std::vector<double>& qj = q[static_cast<std::size_t>(j)];
    a.apply(qj, w);
    // w = H q_j - beta_{j-1} q_{j-1};  alpha_j = q_j' w;  w -= alpha_j q_j
    if (j > 0) axpy(-run.beta.back(), q[static_cast<std::size_t>(j - 1)], w);
    const double alpha = dot(qj, w);
    if (!std::isfinite(alpha)) throw NumericError("lanczos: the Hessian-vector product is not finite at step " + std::to_string(j + 1));
    axpy(-alpha, qj, w);
    run.alpha.push_back(alpha);
    // Full reorthogonalization against every q_i, twice (classical Gram-Schmidt repeated:
    // "twice is enough").
    for (int pass = 0; pass < 2; ++pass) project_out(q, static_cast<std::size_t>(j) + 1, w);
    const double b = std::sqrt(dot(w, w));
    scale = std::max({scale, std::abs(alpha), b});
    run.steps = j + 1;
    run.beta_last = b;
    // The last step, or an invariant subspace: T_j's Ritz values are then exact eigenvalues.
    if (j + 1 == m || b <= 1e-12 * scale) break;
    run.beta.push_back(b);
    std::vector<double> next(w);
    for (double& x : next) x /= b;
    q.push_back(std::move(next));
  }
  if (keep_basis) run.basis = std::move(q);
  return run;
}

Spectrum lanczos_extremes(const LinearOperator& a, const LanczosOptions& options) {
  check_operator(a, "lanczos_extremes");
  if (options.top < 0 || options.bottom < 0) throw ShapeError("lanczos_extremes: top and bottom must be >= 0");
  Rng rng(options.seed);
  std::vector<double> start(static_cast<std::size_t>(a.dim));
  for (double& x : start) x = rng.normal();
  const LanczosRun run = lanczos(a, start, options.steps, options.eigenvectors);
  const Eigen t = tridiagonal_eigen(run.alpha, run.beta, true);
  const int m = run.steps;
  const auto mm = static_cast<std::size_t>(m);

  Spectrum s;
  s.steps = m;
  s.dim = a.dim;
  double largest = 0.0;
  for (double theta : t.values) largest = std::max(largest, std::abs(theta));
  s.zero_tolerance = a.zero_tolerance * largest;
  for (int k = 0; k < m; ++k) {
    const double first = t.vectors[static_cast<std::size_t>(k) * mm];
    const double theta = t.values[static_cast<std::size_t>(k)];
    if (theta < -s.zero_tolerance) s.negative_mass += first * first;
    if (std::abs(theta) <= s.zero_tolerance) s.zero_mass += first * first;
  }
  // Ritz pair k: theta_k, y_k = Q u_k, residual beta_m |u_k[m]|.
  auto residual = [&](int k) { return run.beta_last * std::abs(t.vectors[static_cast<std::size_t>(k) * mm + mm - 1]); };
  auto ritz_vector = [&](int k) {
    std::vector<double> y(static_cast<std::size_t>(a.dim), 0.0);
    for (int j = 0; j < m; ++j) axpy(t.vectors[static_cast<std::size_t>(k) * mm + static_cast<std::size_t>(j)], run.basis[static_cast<std::size_t>(j)], y);
    return y;
  };
  const int top = std::min(options.top, m), bottom = std::min(options.bottom, m);
  for (int i = 0; i < top; ++i) {
    const int k = m - 1 - i;
    s.top.push_back(t.values[static_cast<std::size_t>(k)]);
    s.top_residuals.push_back(residual(k));
    if (options.eigenvectors) s.top_vectors.push_back(ritz_vector(k));
  }
  for (int k = 0; k < bottom; ++k) {
    s.bottom.push_back(t.values[static_cast<std::size_t>(k)]);
    s.bottom_residuals.push_back(residual(k));
    if (options.eigenvectors) s.bottom_vectors.push_back(ritz_vector(k));
  }
  s.lambda_max = t.values.back();
  s.lambda_min = t.values.front();
  return s;
}

Spectrum lanczos_extremes(HessianOperator& hessian, const LanczosOptions& options) {
  return lanczos_extremes(as_operator(hessian), options);
}

}  // namespace descent::diag
