#include "gemm_dnnl.hpp"

#include <string>

#include "descent/error.hpp"

#ifdef DESCENT_HAVE_DNNL
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>

#include <dnnl.hpp>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#endif

namespace descent::kernels::gemm_dnnl {

#ifndef DESCENT_HAVE_DNNL
bool available() { return false; }
bool cpu_prefers_onednn() { return false; }
void sgemm(bool, bool, std::int64_t, std::int64_t, std::int64_t, float, const float*, std::int64_t, const float*,
           std::int64_t, float, float*, std::int64_t) {
  throw Error("gemm: descent was built without oneDNN (libdnnl-dev)");
}
void matmul(bool, bool, std::int64_t, std::int64_t, std::int64_t, float, const float*, std::int64_t, const float*,
            std::int64_t, float, float*, std::int64_t) {
  throw Error("gemm: descent was built without oneDNN (libdnnl-dev)");
}
void matmul_bias_act(bool, bool, std::int64_t, std::int64_t, std::int64_t, const float*, std::int64_t, const float*,
                     std::int64_t, const float*, bool, float*, std::int64_t) {
  throw Error("gemm: descent was built without oneDNN (libdnnl-dev)");
}
std::string matmul_implementation(bool, bool, std::int64_t, std::int64_t, std::int64_t, bool, bool) { return "none"; }
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

namespace {

using dnnl::memory;
using dt = memory::data_type;

dnnl::engine& engine() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}

struct Plan {
  memory::desc a_md, b_md, c_md, bias_md;
  dnnl::matmul prim;
  std::string impl;
};

// ta, tb, m, n, k, lda, ldb, ldc, alpha, beta, bias, relu, threads
using Key = std::tuple<bool, bool, std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t,
                       float, float, bool, bool, int>;

const Plan& plan_for(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, std::int64_t lda,
                     std::int64_t ldb, std::int64_t ldc, float alpha, float beta, bool bias, bool relu) {
  static std::mutex mutex;
  static std::map<Key, std::unique_ptr<Plan>> plans;
  // oneDNN divides the work by the OpenMP thread count when the primitive is created (one
  // thread inside kernels.cpp's SerialProducts)
  const Key key{ta, tb, m, n, k, lda, ldb, ldc, alpha, beta, bias, relu, omp_get_max_threads()};
  std::lock_guard<std::mutex> lock(mutex);
  auto it = plans.find(key);
  if (it != plans.end()) return *it->second;
  auto p = std::make_unique<Plan>();
  // transposed operands as strides: op(A) is m x k, element (i, l) at i*lda + l or l*lda + i
  p->a_md = memory::desc({m, k}, dt::f32, ta ? memory::dims{1, lda} : memory::dims{lda, 1});
  p->b_md = memory::desc({k, n}, dt::f32, tb ? memory::dims{1, ldb} : memory::dims{ldb, 1});
  p->c_md = memory::desc({m, n}, dt::f32, memory::dims{ldc, 1});
  dnnl::primitive_attr attr;
  if (alpha != 1.0f) attr.set_output_scales(0, {alpha});
  if (beta != 0.0f || relu) {
    dnnl::post_ops po;
    if (beta != 0.0f) po.append_sum(beta);
    if (relu) po.append_eltwise(1.0f, dnnl::algorithm::eltwise_relu, 0.0f, 0.0f);
    attr.set_post_ops(po);
  }
  dnnl::matmul::primitive_desc pd;
  if (bias) {
    p->bias_md = memory::desc({1, n}, dt::f32, memory::dims{n, 1});
    pd = dnnl::matmul::primitive_desc(dnnl::matmul::desc(p->a_md, p->b_md, p->bias_md, p->c_md), attr, engine());
  } else {
    pd = dnnl::matmul::primitive_desc(dnnl::matmul::desc(p->a_md, p->b_md, p->c_md), attr, engine());
  }
  p->prim = dnnl::matmul(pd);
  p->impl = pd.impl_info_str();
  return *plans.emplace(key, std::move(p)).first->second;
}

void run(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, float alpha, const float* a,
         std::int64_t lda, const float* b, std::int64_t ldb, float beta, const float* bias, bool relu, float* c,
         std::int64_t ldc) {
  try {
    const Plan& p = plan_for(ta, tb, m, n, k, lda, ldb, ldc, alpha, beta, bias != nullptr, relu);
    dnnl::stream s(engine());
    memory am(p.a_md, engine(), const_cast<float*>(a));
    memory bm(p.b_md, engine(), const_cast<float*>(b));
    memory cm(p.c_md, engine(), c);
    if (bias != nullptr) {
      memory biasm(p.bias_md, engine(), const_cast<float*>(bias));
      p.prim.execute(s, {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_BIAS, biasm}, {DNNL_ARG_DST, cm}});
    } else {
      p.prim.execute(s, {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}});
    }
    s.wait();
  } catch (const dnnl::error& e) {
    throw Error("gemm: oneDNN's f32 matmul failed on " + std::to_string(m) + "x" + std::to_string(k) + " times " +
                std::to_string(k) + "x" + std::to_string(n) + ": " + e.what());
  }
}

}  // namespace

void matmul(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, float alpha, const float* a,
            std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c, std::int64_t ldc) {
  run(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, nullptr, false, c, ldc);
}

void matmul_bias_act(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, const float* a,
                     std::int64_t lda, const float* b, std::int64_t ldb, const float* bias, bool relu, float* c,
                     std::int64_t ldc) {
  run(ta, tb, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, bias, relu, c, ldc);
}

std::string matmul_implementation(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, bool bias,
                                  bool relu) {
  return plan_for(ta, tb, m, n, k, ta ? m : k, tb ? k : n, n, 1.0f, 0.0f, bias, relu).impl;
}
#endif

}  // namespace descent::kernels::gemm_dnnl
