#include "gemm_dnnl.hpp"

#include <string>

#include "descent/error.hpp"

#ifdef DESCENT_HAVE_DNNL
#include <oneapi/dnnl/dnnl.h>
#endif

namespace descent::kernels::gemm_dnnl {

#ifndef DESCENT_HAVE_DNNL
bool available() { return false; }
bool cpu_prefers_onednn() { return false; }
void sgemm(bool, bool, std::int64_t, std::int64_t, std::int64_t, float, const float*, std::int64_t, const float*,
           std::int64_t, float, float*, std::int64_t) {
  throw Error("gemm: descent was built without oneDNN (libdnnl-dev)");
}
#else
bool available() { return true; }

bool cpu_prefers_onednn() {
  // oneDNN runs its AVX-512 sgemm kernels where the CPU has AVX-512 (Zen 4/5, Xeon since
  // Skylake-SP); there it beat OpenBLAS's kernels on every shape measured (docs/performance.md).
  // On AVX2-only CPUs OpenBLAS stays.
  static const bool avx512 = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  }();
  return avx512;
}

void sgemm(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, float alpha, const float* a,
           std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c, std::int64_t ldc) {
  // dnnl_sgemm is row-major, like descent's tensors
  const dnnl_status_t st = dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  if (st != dnnl_success) {
    throw Error("gemm: oneDNN's dnnl_sgemm failed (status " + std::to_string(static_cast<int>(st)) + ") on " +
                std::to_string(m) + "x" + std::to_string(k) + " times " + std::to_string(k) + "x" + std::to_string(n));
  }
}
#endif

}  // namespace descent::kernels::gemm_dnnl
