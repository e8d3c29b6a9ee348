#pragma once
// Float32 matrix products through oneDNN (gemm_dnnl.cpp), for kernels.cpp's GemmBackend:
// its dnnl_sgemm, and its matmul primitive (with the bias and a ReLU as part of the product).
// Without oneDNN (DESCENT_HAVE_DNNL unset) available() is false and none of them is called.
#include <cstdint>
#include <string>

namespace descent::kernels::gemm_dnnl {

bool available();
// Whether the CPU has the instruction sets on which oneDNN's sgemm beats OpenBLAS's here.
bool cpu_prefers_onednn();
// Row-major C <- alpha op(A) op(B) + beta C; throws descent::Error on a oneDNN failure.
void sgemm(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, float alpha, const float* a,
           std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c, std::int64_t ldc);

// The same product through oneDNN's matmul primitive: one primitive per shape, transposes,
// leading dimensions, alpha, beta and OpenMP thread count, created on first use and cached
// (as the bf16 products' plans, matmul_bf16.cpp). Throws descent::Error on a oneDNN failure.
void matmul(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, float alpha, const float* a,
            std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c, std::int64_t ldc);

// Row-major C <- act(op(A) op(B) + 1 bias^T) in one matmul primitive: the bias (n values, or
// null: none) through the primitive's bias argument, act = ReLU (a post-op) when relu, else
// the identity. Cached as matmul's.
void matmul_bias_act(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, const float* a,
                     std::int64_t lda, const float* b, std::int64_t ldb, const float* bias, bool relu, float* c,
                     std::int64_t ldc);

// One oneDNN matmul primitive as both the f32 products above and the bf16 products
// (matmul_bf16.cpp) use it: row-major C <- act(alpha op(A) op(B) + 1 bias^T + beta C), A and B
// of type `in`, C of type `out`, the bias float32 (n values) when `bias`, act = ReLU when
// `relu`. Created on first use per spec and OpenMP thread count (oneDNN divides the work by
// the thread count when it creates the primitive) and cached for the process.
enum class Type { f32, bf16 };
struct MatmulSpec {
  bool ta = false, tb = false;
  std::int64_t m = 0, n = 0, k = 0, lda = 0, ldb = 0, ldc = 0;
  Type in = Type::f32, out = Type::f32;
  float alpha = 1.0f, beta = 0.0f;
  bool bias = false, relu = false;
};
// Runs it on a, b (and bias when spec.bias) into c; throws descent::Error starting with
// `what` on a oneDNN failure.
void matmul_run(const MatmulSpec& spec, const void* a, const void* b, const float* bias, void* c, const char* what);
// The implementation oneDNN picks for it (impl_info_str, e.g. "brg:avx512_core"), "none"
// without oneDNN; the reference stays valid for the process.
const std::string& matmul_impl(const MatmulSpec& spec);

// The implementation oneDNN's matmul primitive picks for a product (impl_info_str, e.g.
// "brg:avx512_core"), for the bench and tests; "none" without oneDNN.
std::string matmul_implementation(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, bool bias,
                                  bool relu);

}  // namespace descent::kernels::gemm_dnnl
