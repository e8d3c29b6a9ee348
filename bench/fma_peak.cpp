// The machine's fp32 FMA peak, measured: each of --threads OpenMP threads runs 16 independent
// chains of vector fused multiply-adds (enough to cover the FMA latency times the FMA units
// of the cores seen so far: 4 cycles x 2 units needs 8) in registers, no memory traffic. The
// widest instruction set the CPU has is chosen at run time (AVX-512F, else AVX2+FMA, else
// scalar). Prints one JSON line: GFLOP/s (an FMA counts 2 flops), the best of --reps timings,
// by wall time and by CPU time (flops per CPU-second times the threads: on a loaded machine
// the second is the cores' own peak, the first what this process got).
// bench/run reads the per-case roofline (achieved GFLOP/s of the step's matrix products
// against this peak) against it.
//
//   fma_peak [--threads 2] [--reps 5] [--iters 20000000]
#include <immintrin.h>
#include <omp.h>

#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

constexpr int kChains = 16;

// Returns a value that depends on every chain, so the compiler keeps the work.
__attribute__((target("avx512f"))) float chains_avx512(std::int64_t iters, float seed) {
  __m512 acc[kChains];
  for (int c = 0; c < kChains; ++c) acc[c] = _mm512_set1_ps(seed + static_cast<float>(c) * 1e-3f);
  const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
  for (std::int64_t i = 0; i < iters; ++i) {
#pragma GCC unroll 16
    for (int c = 0; c < kChains; ++c) acc[c] = _mm512_fmadd_ps(acc[c], a, b);
  }
  __m512 s = acc[0];
  for (int c = 1; c < kChains; ++c) s = _mm512_add_ps(s, acc[c]);
  float out[16];  // not _mm512_reduce_add_ps: GCC 12's form of it trips -Wuninitialized
  _mm512_storeu_ps(out, s);
  float t = 0;
  for (float v : out) t += v;
  return t;
}

__attribute__((target("avx2,fma"))) float chains_avx2(std::int64_t iters, float seed) {
  __m256 acc[kChains];
  for (int c = 0; c < kChains; ++c) acc[c] = _mm256_set1_ps(seed + static_cast<float>(c) * 1e-3f);
  const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
  for (std::int64_t i = 0; i < iters; ++i) {
#pragma GCC unroll 16
    for (int c = 0; c < kChains; ++c) acc[c] = _mm256_fmadd_ps(acc[c], a, b);
  }
  __m256 s = acc[0];
  for (int c = 1; c < kChains; ++c) s = _mm256_add_ps(s, acc[c]);
  float out[8];
  _mm256_storeu_ps(out, s);
  float t = 0;
  for (float v : out) t += v;
  return t;
}

float chains_scalar(std::int64_t iters, float seed) {
  float acc[kChains];
  for (int c = 0; c < kChains; ++c) acc[c] = seed + static_cast<float>(c) * 1e-3f;
  for (std::int64_t i = 0; i < iters; ++i) {
    for (int c = 0; c < kChains; ++c) acc[c] = acc[c] * 0.999999f + 1e-7f;
  }
  float t = 0;
  for (float v : acc) t += v;
  return t;
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 2, reps = 5;
  std::int64_t iters = 20000000;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--threads")) threads = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--reps")) reps = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--iters")) iters = std::atoll(argv[i + 1]);
    else {
      std::fprintf(stderr, "fma_peak: unknown option %s (--threads N --reps N --iters N)\n", argv[i]);
      return 2;
    }
  }
  if (argc % 2 == 0 || threads < 1 || reps < 1 || iters < 1) {
    std::fprintf(stderr, "fma_peak: usage: fma_peak [--threads N>=1] [--reps N>=1] [--iters N>=1]\n");
    return 2;
  }
  __builtin_cpu_init();
  int lanes = 1;
  std::string isa = "scalar";
  if (__builtin_cpu_supports("avx512f")) {
    lanes = 16;
    isa = "avx512f";
  } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    lanes = 8;
    isa = "avx2+fma";
  }
  double best = 0, best_cpu = 0;
  float sink = 0;
  auto cpu_s = [] {
    timespec t{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
  };
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    const double c0 = cpu_s();
#pragma omp parallel num_threads(threads) reduction(+ : sink)
    {
      const float seed = 1.0f + 0.01f * static_cast<float>(omp_get_thread_num());
      sink += lanes == 16 ? chains_avx512(iters, seed) : lanes == 8 ? chains_avx2(iters, seed) : chains_scalar(iters, seed);
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double flops = 2.0 * kChains * lanes * static_cast<double>(iters) * threads;
    best = std::max(best, flops / s / 1e9);
    // per CPU-second times the threads: what the cores give when this process has them,
    // which other processes on a loaded machine barely disturb
    best_cpu = std::max(best_cpu, flops / (cpu_s() - c0) * threads / 1e9);
  }
  std::printf("{\"impl\": \"fma_peak\", \"isa\": \"%s\", \"threads\": %d, \"chains\": %d, \"fma_peak_gflops\": %.2f, "
              "\"fma_peak_gflops_by_cpu_time\": %.2f, \"check\": %.3g}\n",
              isa.c_str(), threads, kChains, best, best_cpu, static_cast<double>(sink));
  return 0;
}
