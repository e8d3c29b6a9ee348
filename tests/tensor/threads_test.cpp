// The thresholds below which work stays on the calling thread (kernels::gemm_serial_below,
// parallel_for_elements): small products and passes run on one thread, large ones split,
// the thread count is the same after a product as before it, and the results do not depend
// on the setting (the elementwise split and sum_rows' column split cannot change a value;
// the products are checked against the sum in double).
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <mutex>
#include <set>
#include <utility>
#include <vector>

#include "descent/tensor/kernels.hpp"
#include "descent/tensor/parallel.hpp"

namespace descent {
namespace {

// Restores the process-wide settings a test changes, even when it fails.
struct SettingsGuard {
  int threads = num_threads();
  SettingsGuard() { note_products_serial(false); }
  ~SettingsGuard() {
    set_elementwise_follow_below(elementwise_follow_below_default);
    set_num_threads(threads);
    kernels::set_gemm_backend(kernels::GemmBackend::automatic);
    kernels::set_gemm_serial_below(kernels::gemm_serial_below_default);
    set_elementwise_serial_below(elementwise_serial_below_default);
  }
};

template <class T>
Tensor filled(std::int64_t r, std::int64_t c, float scale) {
  Tensor t = Tensor::empty({r, c}, dtype_of<T>());
  for (std::int64_t i = 0; i < t.numel(); ++i) t.data<T>()[i] = static_cast<T>(std::sin(scale * static_cast<float>(i + 1)));
  return t;
}

// C = A B^T through kernels::gemm, each element against the sum in double.
template <class T>
void expect_product(std::int64_t m, std::int64_t n, std::int64_t k) {
  const Tensor a = filled<T>(m, k, 0.37f), b = filled<T>(n, k, 0.11f);
  Tensor c = Tensor::empty({m, n}, dtype_of<T>());
  kernels::gemm(a, false, b, true, c);
  for (std::int64_t i = 0; i < m; ++i) {
    for (std::int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (std::int64_t p = 0; p < k; ++p) s += static_cast<double>(a.data<T>()[i * k + p]) * b.data<T>()[j * k + p];
      ASSERT_NEAR(c.data<T>()[i * n + j], s, 1e-5 * static_cast<double>(k)) << m << "x" << n << "x" << k;
    }
  }
}

TEST(Threads, ProductsLeaveTheThreadCountAsTheyFoundIt) {
  SettingsGuard guard;
  set_num_threads(2);
  std::vector<kernels::GemmBackend> backends = {kernels::GemmBackend::openblas, kernels::GemmBackend::automatic};
  if (kernels::gemm_backend_has_onednn()) backends.push_back(kernels::GemmBackend::onednn);
  for (kernels::GemmBackend backend : backends) {
    kernels::set_gemm_backend(backend);
    // below the threshold (one thread), then above it (all threads), float and double
    for (std::int64_t below : {kernels::gemm_serial_below_default, std::int64_t{0}}) {
      kernels::set_gemm_serial_below(below);
      expect_product<float>(32, 64, 48);
      EXPECT_EQ(num_threads(), 2) << "after a float product, backend " << static_cast<int>(backend) << ", below " << below;
      expect_product<double>(32, 64, 48);
      EXPECT_EQ(num_threads(), 2) << "after a double product, backend " << static_cast<int>(backend);
    }
  }
  kernels::set_gemm_serial_below(-5);
  EXPECT_EQ(kernels::gemm_serial_below(), 0);
}

// Which OpenMP threads ran the calls of parallel_for_elements, and the ranges they got.
struct Calls {
  std::vector<std::pair<std::int64_t, std::int64_t>> ranges;
  std::set<int> threads;
};

Calls run(std::int64_t n) {
  Calls calls;
  std::mutex mu;
  parallel_for_elements(n, [&](std::int64_t i0, std::int64_t i1) {
    const std::lock_guard<std::mutex> lock(mu);
    calls.ranges.emplace_back(i0, i1);
    calls.threads.insert(omp_get_thread_num());
  });
  return calls;
}

TEST(Threads, ElementwisePassesSplitOnlyAboveTheThreshold) {
  SettingsGuard guard;
  set_num_threads(2);
  // below: one call over everything, on the calling thread
  const std::int64_t small = 3 * parallel_grain + 5;
  ASSERT_LT(small, elementwise_serial_below());
  Calls s = run(small);
  ASSERT_EQ(s.ranges.size(), 1u);
  EXPECT_EQ(s.ranges[0], (std::pair<std::int64_t, std::int64_t>{0, small}));
  EXPECT_EQ(s.threads, std::set<int>{0});
  // above (the threshold lowered): chunks of parallel_grain covering [0, n) once
  set_elementwise_serial_below(parallel_grain);
  Calls l = run(small);
  ASSERT_EQ(l.ranges.size(), 4u);
  std::sort(l.ranges.begin(), l.ranges.end());
  for (std::size_t c = 0; c < 4; ++c) {
    const std::int64_t b = static_cast<std::int64_t>(c) * parallel_grain;
    EXPECT_EQ(l.ranges[c], (std::pair<std::int64_t, std::int64_t>{b, std::min(small, b + parallel_grain)}));
  }
  EXPECT_TRUE(run(0).ranges.empty());
}

// A pass between elementwise_serial_below and elementwise_follow_below stays on the calling
// thread after a product that ran on one thread, and splits after one that ran on all.
TEST(Threads, ElementwisePassesFollowTheLatestProduct) {
  SettingsGuard guard;
  set_num_threads(2);
  const std::int64_t n = 4 * parallel_grain;
  ASSERT_GE(n, elementwise_serial_below());
  ASSERT_LT(n, elementwise_follow_below());
  kernels::set_gemm_serial_below(kernels::gemm_serial_below_default);
  expect_product<float>(32, 64, 48);  // 98k multiply-adds: one thread
  EXPECT_TRUE(last_products_serial());
  Calls after_serial = run(n);
  ASSERT_EQ(after_serial.ranges.size(), 1u);
  EXPECT_EQ(after_serial.threads, std::set<int>{0});
  kernels::set_gemm_serial_below(0);
  expect_product<float>(32, 64, 48);  // every product on all threads
  EXPECT_FALSE(last_products_serial());
  Calls after_parallel = run(n);
  EXPECT_EQ(after_parallel.ranges.size(), 4u);
  // the rule off: the pass splits whatever ran before
  kernels::set_gemm_serial_below(kernels::gemm_serial_below_default);
  expect_product<float>(32, 64, 48);
  set_elementwise_follow_below(0);
  EXPECT_EQ(run(n).ranges.size(), 4u);
}

// Which OpenMP thread ran each call of parallel_for_ranges, with its range.
struct RangeCall {
  std::int64_t begin, end;
  int thread;
  bool operator<(const RangeCall& o) const { return begin < o.begin; }
};

std::vector<RangeCall> run_ranges(const std::vector<Range>& ranges) {
  std::vector<RangeCall> calls;
  std::mutex mu;
  parallel_for_ranges(std::span<const Range>(ranges), [&](std::int64_t i0, std::int64_t i1) {
    const std::lock_guard<std::mutex> lock(mu);
    calls.push_back({i0, i1, omp_get_thread_num()});
  });
  std::sort(calls.begin(), calls.end());
  return calls;
}

// parallel_for_ranges over an MLP's parameters (784-256-256-10: two weights above
// range_split_min, four small ranges) and a range that starts off a 64-byte boundary: each
// large range in one contiguous part per thread, thread t the t-th, the cuts where computed
// here by hand; each small range whole on threads 0, 1, 0, ... in turn; every element once.
// Below the threshold, or after a product on one thread: one call over everything on the
// calling thread.
TEST(Threads, RangesSplitEachLargeRangeInOnePartPerThread) {
  SettingsGuard guard;
  set_num_threads(2);
  // w0 [0, 200704), b0 [.., 200960), w1 [.., 266496), b1 [.., 266752), w2 [.., 269312), b2 [.., 269322)
  const std::vector<Range> mlp = {{0, 200704},      {200704, 200960}, {200960, 266496},
                                  {266496, 266752}, {266752, 269312}, {269312, 269322}};
  ASSERT_GE(269322, elementwise_serial_below());
  const std::vector<RangeCall> calls = run_ranges(mlp);
  // w0: 200704 / 2 = 100352 (a multiple of 16); w1: 200960 + 32768 = 233728; w2 (2560) is small
  const std::vector<RangeCall> want = {{0, 100352, 0},      {100352, 200704, 1}, {200704, 200960, 0},
                                       {200960, 233728, 0}, {233728, 266496, 1}, {266496, 266752, 1},
                                       {266752, 269312, 0}, {269312, 269322, 1}};
  ASSERT_EQ(calls.size(), want.size());
  for (std::size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(calls[i].begin, want[i].begin) << i;
    EXPECT_EQ(calls[i].end, want[i].end) << i;
    EXPECT_EQ(calls[i].thread, want[i].thread) << i;
  }
  // a range off the 16-element grid, 3 threads: cuts 5 + 200000 / 3 = 66671 -> 66656 and
  // 5 + 400000 / 3 = 133338 -> 133328 (rounded down to multiples of 16)
  set_num_threads(3);
  const std::vector<RangeCall> odd = run_ranges({{5, 200005}});
  ASSERT_EQ(odd.size(), 3u);
  EXPECT_EQ(odd[0].begin, 5);
  EXPECT_EQ(odd[0].end, 66656);
  EXPECT_EQ(odd[1].end, 133328);
  EXPECT_EQ(odd[2].end, 200005);
  for (int t = 0; t < 3; ++t) EXPECT_EQ(odd[static_cast<std::size_t>(t)].thread, t);
  for (std::size_t i = 1; i < odd.size(); ++i) EXPECT_EQ(odd[i].begin, odd[i - 1].end);
  // serial: below the threshold, and between it and the follow rule's after a one-thread product
  set_num_threads(2);
  set_elementwise_serial_below(269323);
  std::vector<RangeCall> one = run_ranges(mlp);
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0].begin, 0);
  EXPECT_EQ(one[0].end, 269322);
  EXPECT_EQ(one[0].thread, 0);
  set_elementwise_serial_below(elementwise_serial_below_default);
  note_products_serial(true);
  one = run_ranges(mlp);
  EXPECT_EQ(one.size(), 1u);
  note_products_serial(false);
  EXPECT_TRUE(run_ranges({}).empty());
}

TEST(Threads, SumRowsIsTheSameWithAndWithoutTheSplit) {
  SettingsGuard guard;
  set_num_threads(2);
  const Tensor x = filled<float>(512, 300, 0.013f);
  Tensor serial = Tensor::empty({300}, DType::f32), split = Tensor::empty({300}, DType::f32);
  kernels::sum_rows(x, serial, 0.0);
  set_elementwise_serial_below(0);
  kernels::sum_rows(x, split, 0.0);
  for (std::int64_t c = 0; c < 300; ++c) {
    float want = 0.0f;  // each column summed over the rows in order
    for (std::int64_t r = 0; r < 512; ++r) want += x.data<float>()[r * 300 + c];
    ASSERT_EQ(serial.data<float>()[c], want) << c;
    ASSERT_EQ(split.data<float>()[c], want) << c;
  }
}

// ---- set_flush_denormals: FTZ and DAZ on every thread of the pool ----------------------

#if defined(__x86_64__) || defined(__i386__)
// On the calling thread: a product whose exact result is denormal (1e-30 * 1e-10 = 1e-40),
// and a denormal operand times one (the smallest positive float32, 2^-149). volatile keeps
// the compiler from folding them.
std::pair<float, float> denormal_probe() {
  volatile float a = 1e-30f, b = 1e-10f, tiny = std::numeric_limits<float>::denorm_min(), one = 1.0f;
  return {a * b, tiny * one};
}

TEST(Threads, FlushDenormalsOnEveryThreadOfThePoolAndBack) {
  SettingsGuard guard;
  set_num_threads(2);
  const auto on_every_thread = [](std::vector<std::pair<float, float>>& out) {
    out.assign(2, {-1.0f, -1.0f});
#pragma omp parallel num_threads(2)
    out[static_cast<std::size_t>(omp_get_thread_num())] = denormal_probe();
  };
  std::vector<std::pair<float, float>> seen;
  set_flush_denormals(true);
  EXPECT_TRUE(flush_denormals());
  on_every_thread(seen);
  for (const auto& [product, operand] : seen) {
    EXPECT_EQ(product, 0.0f);  // FTZ: the denormal result written as zero
    EXPECT_EQ(operand, 0.0f);  // DAZ: the denormal operand read as zero
  }
  set_flush_denormals(false);
  EXPECT_FALSE(flush_denormals());
  on_every_thread(seen);
  for (const auto& [product, operand] : seen) {
    EXPECT_GT(product, 0.0f);  // gradual underflow: 1e-40 is representable as a denormal
    EXPECT_LT(product, std::numeric_limits<float>::min());
    EXPECT_EQ(operand, std::numeric_limits<float>::denorm_min());
  }
}

TEST(Threads, FlushDenormalsScopePutsTheEarlierSettingBack) {
  SettingsGuard guard;
  set_flush_denormals(false);
  {
    const FlushDenormalsScope scope(true);
    EXPECT_TRUE(flush_denormals());
    EXPECT_EQ(denormal_probe().first, 0.0f);
  }
  EXPECT_FALSE(flush_denormals());
  EXPECT_GT(denormal_probe().first, 0.0f);
  set_flush_denormals(true);
  { const FlushDenormalsScope scope(false); EXPECT_FALSE(flush_denormals()); }
  EXPECT_TRUE(flush_denormals());
  set_flush_denormals(false);
}
#endif

}  // namespace
}  // namespace descent
