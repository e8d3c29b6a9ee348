#pragma once
// The numerical kernels under autodiff, nn and optim: matrix products through BLAS and
// the few reductions that must be deterministic.
//
// All matrices are 2-D row-major tensors of one floating dtype. Throws ShapeError when
// shapes or dtypes do not fit.
#include <cstdint>
#include <string>

#include "descent/tensor/tensor.hpp"

namespace descent::kernels {

// C <- alpha * op(A) op(B) + beta * C, op(X) = X or X^T. cblas_sgemm / cblas_dgemm.
// Cost: 2 m n k flops.
void gemm(const Tensor& a, bool transpose_a, const Tensor& b, bool transpose_b, const Tensor& c, double alpha = 1.0,
          double beta = 0.0);

// Which library computes float32 matrix products (float64 always goes to OpenBLAS).
//   automatic: per product, by gemm_choice (the default)
//   openblas:  cblas_sgemm always
//   onednn:    oneDNN's dnnl_sgemm always (when descent was built with oneDNN; else OpenBLAS)
//   onednn_matmul: oneDNN's matmul primitive always, cached per shape (built with oneDNN;
//              else OpenBLAS), and the fused linear + ReLU forward below
// They agree to rounding (they sum the k products in different orders).
//   descent:   descent's own AVX-512 kernel (src/tensor/gemm_avx512.hpp) where the CPU has
//              AVX-512F; else OpenBLAS
enum class GemmBackend { automatic, openblas, onednn, onednn_matmul, descent };
void set_gemm_backend(GemmBackend backend);  // process-wide
GemmBackend gemm_backend();
bool gemm_backend_has_onednn();  // descent was built with libdnnl-dev
bool gemm_backend_has_descent();  // descent's AVX-512 kernel runs on this CPU (and build)
// The implementation oneDNN's matmul primitive picks for a float32 product of this shape
// ("brg:avx512_core", ...; "none" without oneDNN), for the bench and tests.
std::string gemm_matmul_implementation(bool transpose_a, bool transpose_b, std::int64_t m, std::int64_t n,
                                       std::int64_t k);
// The library `automatic` uses for a float32 product of this shape (openblas, onednn or
// descent): a fixed rule of the shape and of the CPU's instruction sets read at run time (no
// timing), so one shape on one CPU always gets the same library, and so the same rounding.
// Where oneDNN is built in and the CPU has AVX-512: descent's kernel for x w^T with
// 4 m <= n and k >= 256, for x w^T into n <= 16 columns, for dy^T x into m <= 16 rows and for
// dy w from k <= 16 with m <= 32 (where it was faster than dnnl_sgemm on every run,
// docs/performance.md session 12), dnnl_sgemm for the rest; OpenBLAS elsewhere.
GemmBackend gemm_choice(bool transpose_a, bool transpose_b, std::int64_t m, std::int64_t n, std::int64_t k);

// The forward of a dense layer, y [B, out] <- act(x [B, in] w^T [in, out] + 1 b^T) (b
// undefined: no bias; act = ReLU when relu, else the identity). Where descent_linear (float32)
// it is descent's own kernel with the bias and ReLU in its stores, bit for bit the separate
// steps below on that kernel; else where fused_linear(dtype, B, out) it is one oneDNN matmul
// primitive with the bias as its bias argument and the ReLU as a post-op; otherwise the bias
// rows, then gemm (beta 1) adding the product to them, then a ReLU pass (y > 0 ? y : 0): what
// the linear and relu nodes did before, bit for bit.
void linear(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& y, bool relu = false);
// Whether linear runs as one primitive for a batch of B rows into `out` columns: float32,
// descent built with oneDNN, no deterministic products, and the backend onednn_matmul (any
// shape), or automatic on a CPU where oneDNN is the automatic library (gemm_choice) and
// B >= 128, or B >= 64 and out >= 128. Measured (bench/gemm_backends, 2 threads,
// docs/performance.md session 11): the primitive with the bias (and ReLU) in it is 1.03-1.28x
// dnnl_sgemm with the separate steps from B = 128 up, 1.01-1.16x at B = 64 with 256 outputs,
// 0.86x at B = 64 with 10 outputs and 0.72-0.95x at B = 32 (oneDNN's matmul is slower than
// its sgemm on 32 rows).
bool fused_linear(DType dtype, std::int64_t batch, std::int64_t out);
// Whether linear (float32, x [m, k], w [n, k]) runs on descent's own kernel with the bias and
// the ReLU in its stores (on a CPU with AVX-512F, no deterministic products): with the
// backend descent (any shape); with the automatic backend where linear would otherwise be
// the separate steps on descent's kernel (gemm_choice; the same result bit for bit), and,
// where fused_linear, for the shapes where it beat oneDNN's primitive on every run
// and the training step (kernels.cpp gives the figures): 128 to 511 rows into 128 to 256
// columns from k = 256 to 784 with m k <= 2^17 (the MLP's hidden layers at batch 128), and
// 128 rows or fewer into 16 columns or fewer from k = 256 to 784 (its output layer at 128).
bool descent_linear(std::int64_t m, std::int64_t n, std::int64_t k);

// Products of fewer multiply-adds (m n k) run on the calling thread: in a training step a small
// split product (its start, the next operation pulling its output from the other core) costs
// more than the second core saves (train_mlp --profile, docs/performance.md). 0: all split.
// A process-wide setting (bench --gemm-serial-below); the default is gemm_serial_below_default.
inline constexpr std::int64_t gemm_serial_below_default = std::int64_t{1} << 23;
void set_gemm_serial_below(std::int64_t mnk);
std::int64_t gemm_serial_below();

// Raw-pointer form for kernels that already checked their shapes (row-major, leading
// dimensions lda, ldb, ldc in elements).
template <class T>
void gemm_raw(bool transpose_a, bool transpose_b, std::int64_t m, std::int64_t n, std::int64_t k, T alpha, const T* a,
              std::int64_t lda, const T* b, std::int64_t ldb, T beta, T* c, std::int64_t ldc);

// Deterministic matrix products (the training config's `deterministic`, train/distributed.hpp):
// while on, gemm_raw splits C into fixed 128 x 128 tiles, each computed by one thread (BLAS
// called inside the parallel region runs single-threaded), so every product is bit-identical
// with any thread count. Off by default (BLAS's own threading). A process-wide setting.
void set_deterministic_products(bool on);
bool deterministic_products();

// Sum of all elements, accumulated in double over fixed blocks (thread-count independent).
double sum(const Tensor& x);
// Sum of squares of all elements (same blocking). ||x||^2.
double sum_squares(const Tensor& x);
// Dot product of two tensors with the same numel (same blocking).
double dot(const Tensor& a, const Tensor& b);

// ||a - b||^2 = sum_i (a_i - b_i)^2 over n elements, each difference taken in double (exact
// for float inputs). Vectorized in a fixed order that depends on n alone, never on the
// thread count: blocks of 4096 elements, each summed in 8 double lanes (lane l takes the
// elements i = l mod 8 in order, the lanes then added 0..7), the block sums added in
// block order. One thread (memory-bound: a parallel region would cost more). With copy_to, copy_to[i] <- a[i] in the same pass (copy_to may be b: each
// b[i] is read before it is overwritten). The trajectory length (train/trajectory.cpp)
// and the noise diagnostic's distances (diag/noise.cpp).
double squared_distance(const float* a, const float* b, std::int64_t n, float* copy_to = nullptr);
double squared_distance(const double* a, const double* b, std::int64_t n, double* copy_to = nullptr);
// The same for two tensors of one float dtype and numel.
double squared_distance(const Tensor& a, const Tensor& b);

// out[j] (+)= sum_i x[i, j] over the rows of a 2-D tensor; beta 0 overwrites, 1 adds.
void sum_rows(const Tensor& x, const Tensor& out, double beta);

// y (+)= alpha * x elementwise (same numel); beta 0 overwrites y, 1 accumulates.
void axpby(double alpha, const Tensor& x, double beta, const Tensor& y);

// True when every element is finite.
bool all_finite(const Tensor& x);

}  // namespace descent::kernels
