#pragma once
// descent's own float32 matrix product for CPUs with AVX-512 (gemm_avx512.cpp), the
// GemmBackend::descent of kernels.cpp.
//
// Row-major C <- alpha op(A) op(B) + beta C, op(X) = X or X^T. A register-blocked
// microkernel keeps a 12 x 32 block of C in 24 zmm registers and adds one rank-1 update per
// k (two 16-float loads of B, twelve broadcasts of A, 24 FMAs). B is read in panels of 32
// columns: copied (16 x 16 blocks transposed in registers where op(B) = B^T) into zero-padded
// panels per thread, or, where op(B) = B and the thread's block has fewer than 128 rows,
// straight from the matrix. A is broadcast in place where op(A) = A (12 rows streaming);
// where op(A) = A^T its 12 floats per k are copied into contiguous steps of 120 rows when 4
// or more panels reuse them (four rows' 48 floats permuted into three whole vectors). k is
// cut into blocks of at most 256 (equal lengths, a rule of k alone); the blocks are added
// into C in order. Edges: a microkernel for 1 to 12 rows,
// masked loads and stores for the last columns. No packing or blocking choice changes a
// sum: each element of C is the same sequence of FMAs whatever the path.
//
// Threads: C is split into contiguous rows (equal counts) or ranges of 32-column panels
// inside one OpenMP region (split_rows in the .cpp says which; each thread copies the part
// of op(B) it reads: a packed op(B) shared by the threads, each copying a part, measured
// 0.71-0.95x of this on the MLP's products, the other core's copy read out of its cache);
// products under 2^18 multiply-adds run on the calling thread. Every element of C is the same sum in the same
// order whatever the thread count and the split, so the result does not depend on them.
//
// beta = 0 writes C without reading it (C may hold NaN); alpha = 0 scales C by beta without
// reading A or B (BLAS's rule).
#include <cstdint>

namespace descent::kernels::gemm_avx512 {

// Whether this build has the kernel (GCC or Clang on x86-64) and the CPU runs AVX-512F.
bool available();

// Products of fewer multiply-adds (m n k) run on the calling thread whatever threads says.
inline constexpr std::int64_t serial_below = std::int64_t{1} << 18;

// threads: the most threads to use (1: the calling thread alone, no OpenMP region).
void sgemm(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, float alpha, const float* a,
           std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c, std::int64_t ldc, int threads);

// kernels::linear's y <- x w^T + bias (bias[j] added to column j; nullptr: none), then
// max(0, .) where relu, x [m, k], w [n, k], y [m, n], all packed: bias and ReLU in the
// stores of the product's first and last k blocks. Bit for bit sgemm(x, w^T, beta 1) over y's
// rows holding the bias, then y = y > 0 ? y : 0.
void linear(std::int64_t m, std::int64_t n, std::int64_t k, const float* x, const float* w, const float* bias, bool relu,
            float* y, int threads);

}  // namespace descent::kernels::gemm_avx512
