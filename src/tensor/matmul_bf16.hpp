#pragma once
// bfloat16 matrix products with float32 accumulation and output (matmul_bf16.cpp), for the
// mixed-precision dense layers (descent/tensor/precision.hpp, autodiff/linear_bf16.cpp).
#include <cstdint>
#include <memory>
#include <vector>

#include "descent/tensor/storage.hpp"

namespace descent::kernels::bf16 {

// float32 -> bfloat16 bits, round to nearest even; NaN stays NaN (quiet), infinities stay.
inline std::uint16_t from_float_bits(std::uint32_t u) {
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((u >> 16) | 0x40u);
  return static_cast<std::uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

// dst[i] = bf16(src[i]) for i in [0, n) (threads for large n).
void convert(const float* src, std::int64_t n, std::uint16_t* dst);

// Whether convert and relu_backward use the CPU's conversion instruction (AVX512-BF16
// vcvtneps2bf16, with denormal inputs converted again in software: the same bits as the
// portable loop on every input). On where the CPU has it, unless the environment sets
// DESCENT_BF16_CONVERT=portable; set_conversion_instructions switches it (for tests and
// bench/bf16_ab; it stays off on a CPU without the instruction).
bool conversion_instructions();
void set_conversion_instructions(bool on);
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

// C (m x n, float32) <- op(A) op(B) + 1 bias^T: the bias (n float32) added to every row by the
// product itself (oneDNN's bias argument), so no pass writes the bias rows first. Emulated as
// gemm (beta 0) then the bias added row by row.
void gemm_bias(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, const std::uint16_t* a,
               std::int64_t lda, const std::uint16_t* b, std::int64_t ldb, const float* bias, float* c,
               std::int64_t ldc);

// C (m x n, bf16) <- bf16(relu(op(A) op(B) + 1 bias^T)) (bias may be null): the forward of a
// linear layer followed by ReLU in one product (oneDNN: the bias argument, a ReLU post-op, a
// bf16 destination). A ReLU output may be -0 (bits 0x8000). Emulated: the float32 product,
// the bias, max(., 0), rounded to nearest even.
void gemm_bias_relu(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, const std::uint16_t* a,
                    std::int64_t lda, const std::uint16_t* b, std::int64_t ldb, const float* bias, std::uint16_t* c,
                    std::int64_t ldc);

// The backward of ReLU in one pass, for the fused linear + ReLU: with the output gradient g
// (m x n float32) and the ReLU's output h (m x n bf16), gy = bf16(g where h > 0, else 0) and,
// when gb is not null, gb (n) <- beta gb + the column sums of the masked g in float32 (fixed
// blocks of rows added in order: the same with any thread count).
void relu_backward(const float* g, const std::uint16_t* h, std::int64_t m, std::int64_t n, std::uint16_t* gy, float* gb,
                   float beta);

// An uninitialized bf16 buffer from the tensors' caching allocator (descent/tensor/storage.hpp):
// a training step asks for the same sizes every time, so after the first step no malloc and
// no zero fill.
class Buffer {
 public:
  // Makes room for n values (contents unspecified).
  std::uint16_t* resize(std::int64_t n);
  std::uint16_t* data() const { return data_; }
  std::int64_t size() const { return size_; }  // values it has room for

 private:
  std::shared_ptr<Storage> storage_;
  std::uint16_t* data_ = nullptr;
  std::int64_t size_ = 0;
};

// The implementation oneDNN picked for a shape ("brg:avx512_core_bf16", ...; "emulated"
// when the products are emulated), for tests and the bench.
const char* implementation(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k);

}  // namespace descent::kernels::bf16
