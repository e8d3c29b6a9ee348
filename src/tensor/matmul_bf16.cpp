#include "matmul_bf16.hpp"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>

#include "descent/error.hpp"
#include "descent/tensor/kernels.hpp"
#include "descent/tensor/parallel.hpp"
#include "descent/tensor/precision.hpp"
#include "dispatch.hpp"
#include "gemm_dnnl.hpp"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#include <immintrin.h>
#endif

#ifdef DESCENT_HAVE_DNNL
#include <dnnl.hpp>
#endif

namespace descent {

// ---- precision.hpp -------------------------------------------------------------------

namespace precision {
namespace {
std::atomic<Products> g_products{Products::fp32};
std::atomic<bool> g_emulate{false};
}  // namespace

void set_products(Products p) { g_products.store(p, std::memory_order_relaxed); }
Products products() { return g_products.load(std::memory_order_relaxed); }
void set_emulate(bool on) { g_emulate.store(on, std::memory_order_relaxed); }
bool emulate() { return g_emulate.load(std::memory_order_relaxed); }

Scope::Scope(Products p, bool emulate_on) : old_products_(products()), old_emulate_(emulate()) {
  set_products(p);
  set_emulate(emulate_on);
}
Scope::~Scope() {
  set_products(old_products_);
  set_emulate(old_emulate_);
}

bool cpu_has_bf16() {
  const char* hook = std::getenv("DESCENT_BF16_CPU");
  if (hook != nullptr && std::string(hook) == "none") return false;
#ifdef DESCENT_HAVE_DNNL
  const unsigned isa = static_cast<unsigned>(dnnl_get_effective_cpu_isa());
  const unsigned bf16 = static_cast<unsigned>(dnnl_cpu_isa_avx512_core_bf16);
  return (isa & bf16) == bf16;
#else
  return false;
#endif
}

std::string cpu_isa_name() {
  const char* hook = std::getenv("DESCENT_BF16_CPU");
  if (hook != nullptr && std::string(hook) == "none") return "none (DESCENT_BF16_CPU=none)";
#ifdef DESCENT_HAVE_DNNL
  switch (dnnl_get_effective_cpu_isa()) {
    case dnnl_cpu_isa_sse41: return "sse41";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    default: return "other";
  }
#else
  return "unknown (descent built without oneDNN)";
#endif
}

}  // namespace precision

// ---- conversions ---------------------------------------------------------------------

namespace kernels::bf16 {
namespace {

DESCENT_DISPATCH void convert_range(const float* src, std::uint16_t* dst, std::int64_t i0, std::int64_t i1) {
#pragma omp simd
  for (std::int64_t i = i0; i < i1; ++i) {
    std::uint32_t u;
    std::memcpy(&u, src + i, sizeof u);
    dst[i] = from_float_bits(u);
  }
}

DESCENT_DISPATCH void widen_range(const std::uint16_t* src, float* dst, std::int64_t i0, std::int64_t i1) {
#pragma omp simd
  for (std::int64_t i = i0; i < i1; ++i) {
    const std::uint32_t u = static_cast<std::uint32_t>(src[i]) << 16;
    std::memcpy(dst + i, &u, sizeof u);
  }
}

}  // namespace

// ---- the CPU's own conversion instruction (AVX512-BF16 vcvtneps2bf16) ------------------
//
// vcvtneps2bf16 rounds to nearest even and quiets NaNs exactly as from_float_bits does, but
// reads a float32 denormal as zero (the result is +-0 where from_float_bits gives a bf16
// denormal). So each vector of 16 is checked for denormals (exponent bits 0, mantissa not 0)
// and a vector holding one is converted again by from_float_bits: the results are bit for
// bit those of the portable loop, on every input.

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define DESCENT_BF16_INSTRUCTIONS 1
#define DESCENT_AVX512_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

namespace {

// bf16 of the 16 floats of v, written to dst.
DESCENT_AVX512_BF16 inline void store16(__m512 v, std::uint16_t* dst) {
  const __m512i u = _mm512_castps_si512(v);
  const __mmask16 denormal =
      _mm512_mask_test_epi32_mask(_mm512_testn_epi32_mask(u, _mm512_set1_epi32(0x7f800000)), u, _mm512_set1_epi32(0x007fffff));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst), reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(v)));
  if (denormal != 0) {
    alignas(64) std::uint32_t w[16];
    _mm512_store_si512(w, u);
    for (int l = 0; l < 16; ++l) dst[l] = from_float_bits(w[l]);
  }
}

DESCENT_AVX512_BF16 void convert_range_instr(const float* src, std::uint16_t* dst, std::int64_t i0, std::int64_t i1) {
  std::int64_t i = i0;
  for (; i + 16 <= i1; i += 16) store16(_mm512_loadu_ps(src + i), dst + i);
  for (; i < i1; ++i) {
    std::uint32_t u;
    std::memcpy(&u, src + i, sizeof u);
    dst[i] = from_float_bits(u);
  }
}

// The rows [r0, r1) of relu_backward (mask_rows below) with the conversion instruction.
DESCENT_AVX512_BF16 void mask_rows_instr(const float* g, const std::uint16_t* h, std::uint16_t* gy, float* partial,
                                         std::int64_t n, std::int64_t r0, std::int64_t r1) {
  for (std::int64_t j = 0; j < n; ++j) partial[j] = 0.0f;
  for (std::int64_t r = r0; r < r1; ++r) {
    const float* gr = g + r * n;
    const std::uint16_t* hr = h + r * n;
    std::uint16_t* out = gy + r * n;
    std::int64_t j = 0;
    for (; j + 16 <= n; j += 16) {
      // h > 0: the bits as a signed 16-bit integer are > 0 (not +-0, not negative)
      const __mmask16 on = _mm256_cmpgt_epi16_mask(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(hr + j)),
                                                   _mm256_setzero_si256());
      const __m512 v = _mm512_maskz_loadu_ps(on, gr + j);
      _mm512_storeu_ps(partial + j, _mm512_add_ps(_mm512_loadu_ps(partial + j), v));
      store16(v, out + j);
    }
    for (; j < n; ++j) {
      const float v = static_cast<std::int16_t>(hr[j]) > 0 ? gr[j] : 0.0f;
      partial[j] += v;
      std::uint32_t u;
      std::memcpy(&u, &v, sizeof u);
      out[j] = from_float_bits(u);
    }
  }
}

std::atomic<int> g_instructions{-1};  // -1: not decided yet

}  // namespace

bool conversion_instructions() {
  int on = g_instructions.load(std::memory_order_relaxed);
  if (on < 0) {
    const char* env = std::getenv("DESCENT_BF16_CONVERT");
    const bool portable = env != nullptr && std::string(env) == "portable";
    on = !portable && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                 __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bf16")
             ? 1
             : 0;
    g_instructions.store(on, std::memory_order_relaxed);
  }
  return on == 1;
}

void set_conversion_instructions(bool on) {
  const bool cpu = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                   __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bf16");
  g_instructions.store(on && cpu ? 1 : 0, std::memory_order_relaxed);
}

#else

bool conversion_instructions() { return false; }
void set_conversion_instructions(bool) {}

#endif

void convert(const float* src, std::int64_t n, std::uint16_t* dst) {
#ifdef DESCENT_BF16_INSTRUCTIONS
  if (conversion_instructions()) {
    parallel_for(n, 1 << 15, [&](std::int64_t i0, std::int64_t i1) { convert_range_instr(src, dst, i0, i1); });
    return;
  }
#endif
  parallel_for(n, 1 << 15, [&](std::int64_t i0, std::int64_t i1) { convert_range(src, dst, i0, i1); });
}

void convert_transposed(const float* src, std::int64_t rows, std::int64_t cols, std::uint16_t* dst) {
  // blocks of 32 x 32 keep both sides in cache
  constexpr std::int64_t tile = 32;
  const std::int64_t tr = (rows + tile - 1) / tile;
  parallel_for(tr, 4, [&](std::int64_t b0, std::int64_t b1) {
    for (std::int64_t b = b0; b < b1; ++b) {
      const std::int64_t r0 = b * tile, r1 = std::min(rows, r0 + tile);
      for (std::int64_t c0 = 0; c0 < cols; c0 += tile) {
        const std::int64_t c1 = std::min(cols, c0 + tile);
        for (std::int64_t r = r0; r < r1; ++r) {
          for (std::int64_t c = c0; c < c1; ++c) {
            std::uint32_t u;
            std::memcpy(&u, src + r * cols + c, sizeof u);
            dst[c * rows + r] = from_float_bits(u);
          }
        }
      }
    }
  });
}

void widen(const std::uint16_t* src, std::int64_t n, float* dst) {
  parallel_for(n, 1 << 15, [&](std::int64_t i0, std::int64_t i1) { widen_range(src, dst, i0, i1); });
}

namespace {

[[maybe_unused]] bool emulated() { return precision::emulate() || deterministic_products() || !precision::cpu_has_bf16(); }

void gemm_emulated(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, const std::uint16_t* a,
                   std::int64_t lda, const std::uint16_t* b, std::int64_t ldb, float beta, float* c, std::int64_t ldc) {
  // the operands' extents in memory, as stored
  const std::int64_t a_rows = ta ? k : m, b_rows = tb ? n : k;
  const std::int64_t a_n = (a_rows - 1) * lda + (ta ? m : k), b_n = (b_rows - 1) * ldb + (tb ? k : n);
  std::vector<float> af(static_cast<std::size_t>(a_n)), bf(static_cast<std::size_t>(b_n));
  widen(a, a_n, af.data());
  widen(b, b_n, bf.data());
  gemm_raw<float>(ta, tb, m, n, k, 1.0f, af.data(), lda, bf.data(), ldb, beta, c, ldc);
}

// c[i, :] += bias for every row i (each element one addition: no order to depend on threads).
void add_bias_rows(std::int64_t m, std::int64_t n, const float* bias, float* c, std::int64_t ldc) {
  parallel_for(m, 64, [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) {
      float* row = c + r * ldc;
#pragma omp simd
      for (std::int64_t j = 0; j < n; ++j) row[j] += bias[j];
    }
  });
}

// The fused forward emulated: the float32 product of the widened inputs, the bias, ReLU, then
// rounded to bf16, element by element (no order that depends on the threads).
void bias_relu_emulated(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, const std::uint16_t* a,
                        std::int64_t lda, const std::uint16_t* b, std::int64_t ldb, const float* bias,
                        std::uint16_t* c, std::int64_t ldc) {
  std::vector<float> y(static_cast<std::size_t>(m * n));
  gemm_emulated(ta, tb, m, n, k, a, lda, b, ldb, 0.0f, y.data(), n);
  if (bias != nullptr) add_bias_rows(m, n, bias, y.data(), n);
  parallel_for(m, 64, [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) {
      for (std::int64_t j = 0; j < n; ++j) {
        const float v = std::max(y[static_cast<std::size_t>(r * n + j)], 0.0f);
        std::uint32_t u;
        std::memcpy(&u, &v, sizeof u);
        c[r * ldc + j] = from_float_bits(u);
      }
    }
  });
}

// Rows [r0, r1) of the ReLU backward pass; partial (n floats) gets the column sums of these rows.
DESCENT_DISPATCH void mask_rows(const float* g, const std::uint16_t* h, std::uint16_t* gy, float* partial,
                                std::int64_t n, std::int64_t r0, std::int64_t r1) {
  for (std::int64_t j = 0; j < n; ++j) partial[j] = 0.0f;
  for (std::int64_t r = r0; r < r1; ++r) {
    const float* gr = g + r * n;
    const std::uint16_t* hr = h + r * n;
    std::uint16_t* out = gy + r * n;
#pragma omp simd
    for (std::int64_t j = 0; j < n; ++j) {
      const float v = static_cast<std::int16_t>(hr[j]) > 0 ? gr[j] : 0.0f;  // h > 0 (bits: not +-0, not negative)
      partial[j] += v;
      std::uint32_t u;
      std::memcpy(&u, &v, sizeof u);
      out[j] = from_float_bits(u);
    }
  }
}

}  // namespace

void relu_backward(const float* g, const std::uint16_t* h, std::int64_t m, std::int64_t n, std::uint16_t* gy, float* gb,
                   float beta) {
  // fixed blocks of rows, their column sums added in block order: the same bias gradient
  // with any number of threads
  constexpr std::int64_t rows = 32;
  const std::int64_t blocks = (m + rows - 1) / rows;
  std::vector<float> partial(gb != nullptr ? static_cast<std::size_t>(blocks * n) : static_cast<std::size_t>(n));
  // threads as an elementwise pass of m n elements (parallel.hpp: small passes stay on one core)
  const std::int64_t elements = m * n;
  const bool serial = elementwise_on_one_thread(elements);
  const std::int64_t grain =
      serial ? blocks : std::max<std::int64_t>(1, parallel_grain / std::max<std::int64_t>(1, rows * n));
  [[maybe_unused]] const bool instr = conversion_instructions();  // read only where the instructions are compiled
  parallel_for(blocks, grain, [&](std::int64_t b0, std::int64_t b1) {
    for (std::int64_t blk = b0; blk < b1; ++blk) {
      float* part = gb != nullptr ? partial.data() + blk * n : nullptr;
      std::vector<float> scratch;
      if (part == nullptr) {
        scratch.resize(static_cast<std::size_t>(n));
        part = scratch.data();
      }
#ifdef DESCENT_BF16_INSTRUCTIONS
      if (instr) {
        mask_rows_instr(g, h, gy, part, n, blk * rows, std::min(m, (blk + 1) * rows));
        continue;
      }
#endif
      mask_rows(g, h, gy, part, n, blk * rows, std::min(m, (blk + 1) * rows));
    }
  });
  if (gb == nullptr) return;
  for (std::int64_t j = 0; j < n; ++j) {
    float sum = 0.0f;
    for (std::int64_t blk = 0; blk < blocks; ++blk) sum += partial[static_cast<std::size_t>(blk * n + j)];
    gb[j] = beta == 0.0f ? sum : beta * gb[j] + sum;
  }
}

std::uint16_t* Buffer::resize(std::int64_t n) {
  if (n > size_ || !storage_) {
    storage_ = allocate_storage(static_cast<std::size_t>(n) * sizeof(std::uint16_t));
    data_ = static_cast<std::uint16_t*>(storage_->data);
    size_ = n;
  }
  return data_;
}

#ifndef DESCENT_HAVE_DNNL

void gemm(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, const std::uint16_t* a, std::int64_t lda,
          const std::uint16_t* b, std::int64_t ldb, float beta, float* c, std::int64_t ldc) {
  if (m == 0 || n == 0) return;
  gemm_emulated(ta, tb, m, n, k, a, lda, b, ldb, beta, c, ldc);
}
void gemm_bias(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, const std::uint16_t* a,
               std::int64_t lda, const std::uint16_t* b, std::int64_t ldb, const float* bias, float* c,
               std::int64_t ldc) {
  if (m == 0 || n == 0) return;
  gemm_emulated(ta, tb, m, n, k, a, lda, b, ldb, 0.0f, c, ldc);
  add_bias_rows(m, n, bias, c, ldc);
}
void gemm_bias_relu(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, const std::uint16_t* a,
                    std::int64_t lda, const std::uint16_t* b, std::int64_t ldb, const float* bias, std::uint16_t* c,
                    std::int64_t ldc) {
  if (m == 0 || n == 0) return;
  bias_relu_emulated(ta, tb, m, n, k, a, lda, b, ldb, bias, c, ldc);
}
const char* implementation(bool, bool, std::int64_t, std::int64_t, std::int64_t) { return "emulated"; }

#else

namespace {

// The product through the oneDNN matmul primitive shared with the f32 products
// (gemm_dnnl::matmul_run): bf16 operands, a float32 destination, or bf16 with ReLU as a
// post-op (relu_bf16: the fused linear + ReLU forward).
gemm_dnnl::MatmulSpec spec(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, std::int64_t lda,
                           std::int64_t ldb, std::int64_t ldc, float beta, bool bias, bool relu_bf16) {
  gemm_dnnl::MatmulSpec q;
  q.ta = ta, q.tb = tb, q.m = m, q.n = n, q.k = k, q.lda = lda, q.ldb = ldb, q.ldc = ldc;
  q.in = gemm_dnnl::Type::bf16;
  q.out = relu_bf16 ? gemm_dnnl::Type::bf16 : gemm_dnnl::Type::f32;
  q.beta = beta, q.bias = bias, q.relu = relu_bf16;
  return q;
}

void run(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, const std::uint16_t* a, std::int64_t lda,
         const std::uint16_t* b, std::int64_t ldb, float beta, const float* bias, void* c, std::int64_t ldc,
         bool relu_bf16 = false) {
  gemm_dnnl::matmul_run(spec(ta, tb, m, n, k, lda, ldb, ldc, beta, bias != nullptr, relu_bf16), a, b, bias, c,
                        "bf16 matmul");
}

}  // namespace

void gemm(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, const std::uint16_t* a, std::int64_t lda,
          const std::uint16_t* b, std::int64_t ldb, float beta, float* c, std::int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0 || emulated()) {
    gemm_emulated(ta, tb, m, n, k, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  run(ta, tb, m, n, k, a, lda, b, ldb, beta, nullptr, c, ldc);
}

void gemm_bias(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, const std::uint16_t* a,
               std::int64_t lda, const std::uint16_t* b, std::int64_t ldb, const float* bias, float* c,
               std::int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0 || emulated()) {
    gemm_emulated(ta, tb, m, n, k, a, lda, b, ldb, 0.0f, c, ldc);
    add_bias_rows(m, n, bias, c, ldc);
    return;
  }
  run(ta, tb, m, n, k, a, lda, b, ldb, 0.0f, bias, c, ldc);
}

void gemm_bias_relu(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, const std::uint16_t* a,
                    std::int64_t lda, const std::uint16_t* b, std::int64_t ldb, const float* bias, std::uint16_t* c,
                    std::int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0 || emulated()) {
    bias_relu_emulated(ta, tb, m, n, k, a, lda, b, ldb, bias, c, ldc);
    return;
  }
  run(ta, tb, m, n, k, a, lda, b, ldb, 0.0f, bias, c, ldc, true);
}

const char* implementation(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k) {
  if (emulated()) return "emulated";
  return gemm_dnnl::matmul_impl(spec(ta, tb, m, n, k, ta ? m : k, tb ? k : n, n, 0.0f, false, false)).c_str();
}

#endif

}  // namespace kernels::bf16
}  // namespace descent
