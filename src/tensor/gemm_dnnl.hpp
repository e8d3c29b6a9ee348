#pragma once
// Float32 matrix products through oneDNN's dnnl_sgemm (gemm_dnnl.cpp), for kernels.cpp's
// GemmBackend. Without oneDNN (DESCENT_HAVE_DNNL unset) available() is false and sgemm is
// never called.
#include <cstdint>

namespace descent::kernels::gemm_dnnl {

bool available();
// Whether the CPU has the instruction sets on which oneDNN's sgemm beats OpenBLAS's here.
bool cpu_prefers_onednn();
// Row-major C <- alpha op(A) op(B) + beta C; throws descent::Error on a oneDNN failure.
void sgemm(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, float alpha, const float* a,
           std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c, std::int64_t ldc);

}  // namespace descent::kernels::gemm_dnnl
