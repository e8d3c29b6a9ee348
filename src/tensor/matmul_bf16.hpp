#pragma once
// bfloat16 matrix products with float32 accumulation and output (matmul_bf16.cpp), for the
// mixed-precision dense layers (descent/tensor/precision.hpp, autodiff/linear_bf16.cpp).
#include <cstdint>
#include <vector>

namespace descent::kernels::bf16 {

// float32 -> bfloat16 bits, round to nearest even; NaN stays NaN (quiet), infinities stay.
inline std::uint16_t from_float_bits(std::uint32_t u) {
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((u >> 16) | 0x40u);
  return static_cast<std::uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

// dst[i] = bf16(src[i]) for i in [0, n) (threads for large n).
void convert(const float* src, std::int64_t n, std::uint16_t* dst);
// dst = bf16(src^T): src rows x cols row-major, dst cols x rows row-major.
void convert_transposed(const float* src, std::int64_t rows, std::int64_t cols, std::uint16_t* dst);
// dst[i] = float(src[i]) (exact).
void widen(const std::uint16_t* src, std::int64_t n, float* dst);

// Row-major C (m x n, float32) <- op(A) op(B) + beta C, A and B bf16 (op(A) m x k,
// op(B) k x n; transposed operands given by their strides as in BLAS). oneDNN's bf16
// matmul (primitives cached per shape) unless emulation or deterministic products are on
// (precision.hpp): then A and B widened to float32 and kernels::gemm_raw<float>.
void gemm(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, const std::uint16_t* a, std::int64_t lda,
          const std::uint16_t* b, std::int64_t ldb, float beta, float* c, std::int64_t ldc);

// The implementation oneDNN picked for a shape ("brg:avx512_core_bf16", ...; "emulated"
// when the products are emulated), for tests and the bench.
const char* implementation(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k);

}  // namespace descent::kernels::bf16
