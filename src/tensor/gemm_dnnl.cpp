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
void matmul_run(const MatmulSpec&, const void*, const void*, const float*, void*, const char* what) {
  throw Error(std::string(what) + ": descent was built without oneDNN (libdnnl-dev)");
}
const std::string& matmul_impl(const MatmulSpec&) {
  static const std::string none = "none";
  return none;
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

namespace {

using dnnl::memory;

dnnl::engine& engine() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}

memory::data_type dnnl_type(Type t) { return t == Type::bf16 ? memory::data_type::bf16 : memory::data_type::f32; }

struct Plan {
  memory::desc a_md, b_md, c_md, bias_md;
  dnnl::matmul prim;
  std::string impl;
};

// the spec's fields and the OpenMP thread count
using Key = std::tuple<bool, bool, std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t,
                       Type, Type, float, float, bool, bool, int>;

const Plan& plan_for(const MatmulSpec& q) {
  static std::mutex mutex;
  static std::map<Key, std::unique_ptr<Plan>> plans;
  const Key key{q.ta,  q.tb,    q.m,    q.n,    q.k,    q.lda,  q.ldb, q.ldc,
                q.in,  q.out,   q.alpha, q.beta, q.bias, q.relu, omp_get_max_threads()};
  std::lock_guard<std::mutex> lock(mutex);
  auto it = plans.find(key);
  if (it != plans.end()) return *it->second;
  auto p = std::make_unique<Plan>();
  // transposed operands as strides: op(A) is m x k, element (i, l) at i*lda + l or l*lda + i
  p->a_md = memory::desc({q.m, q.k}, dnnl_type(q.in), q.ta ? memory::dims{1, q.lda} : memory::dims{q.lda, 1});
  p->b_md = memory::desc({q.k, q.n}, dnnl_type(q.in), q.tb ? memory::dims{1, q.ldb} : memory::dims{q.ldb, 1});
  p->c_md = memory::desc({q.m, q.n}, dnnl_type(q.out), memory::dims{q.ldc, 1});
  dnnl::primitive_attr attr;
  if (q.alpha != 1.0f) attr.set_output_scales(0, {q.alpha});
  if (q.beta != 0.0f || q.relu) {
    dnnl::post_ops po;
    if (q.beta != 0.0f) po.append_sum(q.beta);
    if (q.relu) po.append_eltwise(1.0f, dnnl::algorithm::eltwise_relu, 0.0f, 0.0f);
    attr.set_post_ops(po);
  }
  dnnl::matmul::primitive_desc pd;
  if (q.bias) {
    p->bias_md = memory::desc({1, q.n}, memory::data_type::f32, memory::dims{q.n, 1});
    pd = dnnl::matmul::primitive_desc(dnnl::matmul::desc(p->a_md, p->b_md, p->bias_md, p->c_md), attr, engine());
  } else {
    pd = dnnl::matmul::primitive_desc(dnnl::matmul::desc(p->a_md, p->b_md, p->c_md), attr, engine());
  }
  p->prim = dnnl::matmul(pd);
  p->impl = pd.impl_info_str();
  return *plans.emplace(key, std::move(p)).first->second;
}

}  // namespace

void matmul_run(const MatmulSpec& q, const void* a, const void* b, const float* bias, void* c, const char* what) {
  try {
    const Plan& p = plan_for(q);
    dnnl::stream s(engine());
    memory am(p.a_md, engine(), const_cast<void*>(a));
    memory bm(p.b_md, engine(), const_cast<void*>(b));
    memory cm(p.c_md, engine(), c);
    if (q.bias) {
      memory biasm(p.bias_md, engine(), const_cast<float*>(bias));
      p.prim.execute(s, {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_BIAS, biasm}, {DNNL_ARG_DST, cm}});
    } else {
      p.prim.execute(s, {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}});
    }
    s.wait();
  } catch (const dnnl::error& e) {
    throw Error(std::string(what) + ": oneDNN failed on " + std::to_string(q.m) + "x" + std::to_string(q.k) +
                " times " + std::to_string(q.k) + "x" + std::to_string(q.n) + ": " + e.what());
  }
}

const std::string& matmul_impl(const MatmulSpec& q) { return plan_for(q).impl; }

namespace {
MatmulSpec f32_spec(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, std::int64_t lda,
                    std::int64_t ldb, std::int64_t ldc, float alpha, float beta, bool bias, bool relu) {
  MatmulSpec q;
  q.ta = ta, q.tb = tb, q.m = m, q.n = n, q.k = k, q.lda = lda, q.ldb = ldb, q.ldc = ldc;
  q.alpha = alpha, q.beta = beta, q.bias = bias, q.relu = relu;
  return q;
}
}  // namespace

void matmul(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, float alpha, const float* a,
            std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c, std::int64_t ldc) {
  matmul_run(f32_spec(ta, tb, m, n, k, lda, ldb, ldc, alpha, beta, false, false), a, b, nullptr, c, "gemm: f32 matmul");
}

void matmul_bias_act(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, const float* a,
                     std::int64_t lda, const float* b, std::int64_t ldb, const float* bias, bool relu, float* c,
                     std::int64_t ldc) {
  matmul_run(f32_spec(ta, tb, m, n, k, lda, ldb, ldc, 1.0f, 0.0f, bias != nullptr, relu), a, b, bias, c,
             "gemm: f32 matmul");
}

std::string matmul_implementation(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, bool bias,
                                  bool relu) {
  return matmul_impl(f32_spec(ta, tb, m, n, k, ta ? m : k, tb ? k : n, n, 1.0f, 0.0f, bias, relu));
}
#endif

}  // namespace descent::kernels::gemm_dnnl
