#pragma once
// Symmetric eigenproblems by LAPACK, from the OpenBLAS library descent already links
// (Debian's libopenblas exports the reference LAPACK routines; no LAPACKE header needed):
//   dstev  the symmetric tridiagonal T of Lanczos (QL/QR, eigenvalues and vectors)
//   dsyev  a dense symmetric matrix (the exact Hessian of small models, in tests and checks)
// Eigenvalues come in ascending order; eigenvectors as columns, column-major.
#include <cstdint>
#include <vector>

namespace descent::diag {

struct Eigen {
  std::vector<double> values;   // ascending
  std::vector<double> vectors;  // column k (n values from k * n) is the eigenvector of values[k]; empty if not asked
};

// T = tridiag(beta, alpha, beta): alpha the diagonal [m], beta the off-diagonal [m - 1].
// Throws NumericError when LAPACK does not converge.
Eigen tridiagonal_eigen(const std::vector<double>& alpha, const std::vector<double>& beta, bool vectors = true);

// A symmetric n x n matrix, row-major (only its upper triangle is read).
Eigen symmetric_eigen(const std::vector<double>& a, std::int64_t n, bool vectors = false);

}  // namespace descent::diag
