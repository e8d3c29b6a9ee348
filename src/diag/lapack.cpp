#include "descent/diag/lapack.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <string>

#include "descent/error.hpp"

// The Fortran interfaces (all arguments by reference; one hidden length per character
// argument at the end, as gfortran passes them).
extern "C" {
void dstev_(const char* jobz, const int* n, double* d, double* e, double* z, const int* ldz, double* work, int* info,
            std::size_t jobz_len);
void dsyev_(const char* jobz, const char* uplo, const int* n, double* a, const int* lda, double* w, double* work,
            const int* lwork, int* info, std::size_t jobz_len, std::size_t uplo_len);
void dgeev_(const char* jobvl, const char* jobvr, const int* n, double* a, const int* lda, double* wr, double* wi,
            double* vl, const int* ldvl, double* vr, const int* ldvr, double* work, const int* lwork, int* info,
            std::size_t jobvl_len, std::size_t jobvr_len);
void dgesvd_(const char* jobu, const char* jobvt, const int* m, const int* n, double* a, const int* lda, double* s,
             double* u, const int* ldu, double* vt, const int* ldvt, double* work, const int* lwork, int* info,
             std::size_t jobu_len, std::size_t jobvt_len);
}

namespace descent::diag {

namespace {

int checked_size(std::int64_t n, const char* what) {
  if (n < 0 || n > 1'000'000) throw ShapeError(std::string(what) + ": size " + std::to_string(n) + " out of range");
  return static_cast<int>(n);
}

}  // namespace

Eigen tridiagonal_eigen(const std::vector<double>& alpha, const std::vector<double>& beta, bool vectors) {
  const int m = checked_size(static_cast<std::int64_t>(alpha.size()), "tridiagonal_eigen");
  if (m == 0) return {};
  if (beta.size() + 1 < alpha.size()) {
    throw ShapeError("tridiagonal_eigen: " + std::to_string(alpha.size()) + " diagonal values need " +
                     std::to_string(alpha.size() - 1) + " off-diagonal values, got " + std::to_string(beta.size()));
  }
  Eigen out;
  out.values = alpha;
  std::vector<double> e(beta.begin(), beta.begin() + (m - 1));
  e.push_back(0.0);  // dstev's workspace for E has length n (n - 1 used)
  const char jobz = vectors ? 'V' : 'N';
  const int ldz = vectors ? m : 1;
  if (vectors) out.vectors.assign(static_cast<std::size_t>(m) * static_cast<std::size_t>(m), 0.0);
  double z_dummy = 0.0;
  std::vector<double> work(static_cast<std::size_t>(std::max(1, 2 * m - 2)));
  int info = 0;
  dstev_(&jobz, &m, out.values.data(), e.data(), vectors ? out.vectors.data() : &z_dummy, &ldz, work.data(), &info, 1);
  if (info != 0) throw NumericError("LAPACK dstev failed (info " + std::to_string(info) + ") on a tridiagonal of size " + std::to_string(m));
  return out;
}

Eigen symmetric_eigen(const std::vector<double>& a, std::int64_t n64, bool vectors) {
  const int n = checked_size(n64, "symmetric_eigen");
  if (static_cast<std::int64_t>(a.size()) != n64 * n64) {
    throw ShapeError("symmetric_eigen: expected " + std::to_string(n64 * n64) + " values, got " + std::to_string(a.size()));
  }
  if (n == 0) return {};
  // Row-major upper triangle = column-major lower triangle: ask for 'L'.
  std::vector<double> work_a = a;
  Eigen out;
  out.values.assign(static_cast<std::size_t>(n), 0.0);
  const char jobz = vectors ? 'V' : 'N', uplo = 'L';
  int info = 0, lwork = -1;
  double query = 0.0;
  dsyev_(&jobz, &uplo, &n, work_a.data(), &n, out.values.data(), &query, &lwork, &info, 1, 1);
  lwork = std::max(3 * n, static_cast<int>(query));
  std::vector<double> work(static_cast<std::size_t>(lwork));
  dsyev_(&jobz, &uplo, &n, work_a.data(), &n, out.values.data(), work.data(), &lwork, &info, 1, 1);
  if (info != 0) throw NumericError("LAPACK dsyev failed (info " + std::to_string(info) + ") on a matrix of size " + std::to_string(n));
  if (vectors) out.vectors = std::move(work_a);
  return out;
}

GeneralEigenvalues general_eigenvalues(const std::vector<double>& a, std::int64_t n64) {
  const int n = checked_size(n64, "general_eigenvalues");
  if (static_cast<std::int64_t>(a.size()) != n64 * n64) {
    throw ShapeError("general_eigenvalues: expected " + std::to_string(n64 * n64) + " values, got " +
                     std::to_string(a.size()));
  }
  GeneralEigenvalues out;
  if (n == 0) return out;
  // Row-major A read as column-major is A': the same eigenvalues.
  std::vector<double> work_a = a;
  out.real.assign(static_cast<std::size_t>(n), 0.0);
  out.imag.assign(static_cast<std::size_t>(n), 0.0);
  const char no = 'N';
  const int one = 1;
  double v_dummy = 0.0, query = 0.0;
  int info = 0, lwork = -1;
  dgeev_(&no, &no, &n, work_a.data(), &n, out.real.data(), out.imag.data(), &v_dummy, &one, &v_dummy, &one, &query,
         &lwork, &info, 1, 1);
  lwork = std::max(3 * n, static_cast<int>(query));
  std::vector<double> work(static_cast<std::size_t>(lwork));
  dgeev_(&no, &no, &n, work_a.data(), &n, out.real.data(), out.imag.data(), &v_dummy, &one, &v_dummy, &one,
         work.data(), &lwork, &info, 1, 1);
  if (info != 0) throw NumericError("LAPACK dgeev failed (info " + std::to_string(info) + ") on a matrix of size " + std::to_string(n));
  return out;
}

double GeneralEigenvalues::spectral_radius() const {
  double r = 0.0;
  for (std::size_t i = 0; i < real.size(); ++i) r = std::max(r, std::hypot(real[i], imag[i]));
  return r;
}

std::vector<double> singular_values(const std::vector<double>& a, std::int64_t rows, std::int64_t cols) {
  const int m = checked_size(rows, "singular_values"), n = checked_size(cols, "singular_values");
  if (static_cast<std::int64_t>(a.size()) != rows * cols) {
    throw ShapeError("singular_values: expected " + std::to_string(rows * cols) + " values, got " +
                     std::to_string(a.size()));
  }
  if (m == 0 || n == 0) return {};
  // Row-major A [m, n] read as column-major is A' [n, m]: the same singular values.
  std::vector<double> work_a = a;
  std::vector<double> s(static_cast<std::size_t>(std::min(m, n)));
  const char no = 'N';
  const int one = 1;
  double u_dummy = 0.0, query = 0.0;
  int info = 0, lwork = -1;
  dgesvd_(&no, &no, &n, &m, work_a.data(), &n, s.data(), &u_dummy, &one, &u_dummy, &one, &query, &lwork, &info, 1, 1);
  lwork = std::max(5 * std::min(m, n) + std::max(m, n), static_cast<int>(query));
  std::vector<double> work(static_cast<std::size_t>(lwork));
  dgesvd_(&no, &no, &n, &m, work_a.data(), &n, s.data(), &u_dummy, &one, &u_dummy, &one, work.data(), &lwork, &info,
          1, 1);
  if (info != 0) {
    throw NumericError("LAPACK dgesvd failed (info " + std::to_string(info) + ") on a " + std::to_string(m) + " x " +
                       std::to_string(n) + " matrix");
  }
  return s;  // descending
}

}  // namespace descent::diag
