#pragma once
// Symmetric eigenproblems by LAPACK, from the OpenBLAS library descent already links
// (Debian's libopenblas exports the reference LAPACK routines; no LAPACKE header needed):
//   dstev  the symmetric tridiagonal T of Lanczos (QL/QR, eigenvalues and vectors)
//   dsyev  a dense symmetric matrix (the exact Hessian of small models, in tests and checks)
//   dgeev  the eigenvalues of a general square matrix (a recurrent weight matrix, section 8.2.5)
//   dgesvd its singular values
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

// The eigenvalues of a general n x n matrix, row-major (dgeev; no eigenvectors), in
// LAPACK's order, complex conjugate pairs adjacent. Throws NumericError when LAPACK does
// not converge.
struct GeneralEigenvalues {
  std::vector<double> real, imag;
  double spectral_radius() const;  // max |lambda|; 0 for an empty matrix
};
GeneralEigenvalues general_eigenvalues(const std::vector<double>& a, std::int64_t n);

// The min(rows, cols) singular values of a rows x cols matrix, row-major (dgesvd; no
// vectors), descending. Throws NumericError when LAPACK does not converge.
std::vector<double> singular_values(const std::vector<double>& a, std::int64_t rows, std::int64_t cols);

}  // namespace descent::diag
