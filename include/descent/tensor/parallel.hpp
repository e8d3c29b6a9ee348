#pragma once
// Parallel loops over cores (OpenMP, the same libgomp pool that OpenBLAS's OpenMP build
// uses, so our loops and the matrix products never oversubscribe the cores).
//
// Work is split into fixed chunks whose boundaries depend only on n and the grain, never
// on the thread count: every reduction built on them sums the same partials in the same
// order, so results are bit-identical with 1 and with N threads. Except parallel_for_ranges
// (and part_of), whose cuts depend on the thread count: for element-wise work only, never
// for a sum.
#include <algorithm>
#include <cstdint>
#include <span>
#include <utility>

namespace descent {

int num_threads();
void set_num_threads(int n);

// Below this many elements a loop runs on the calling thread.
inline constexpr std::int64_t parallel_grain = 1 << 15;

// Elementwise passes (no reduction: the split cannot change a result) over fewer elements
// than this run on the calling thread. On the 2-core machine of docs/performance.md a
// parallel pass over a few hundred thousand floats took 2-3x longer than one thread (the
// start of the region and the cache lines moving between the cores cost more than the
// second core's bandwidth gives), so only large passes split. Process-wide, settable for
// measurement (bench --elementwise-serial-below).
inline constexpr std::int64_t elementwise_serial_below_default = std::int64_t{1} << 17;
void set_elementwise_serial_below(std::int64_t n);
std::int64_t elementwise_serial_below();

// Keep consecutive work on the core that holds its data: when the latest matrix product ran
// on one thread (kernels::gemm_serial_below), a pass over fewer than this many elements runs
// on one thread too, even above elementwise_serial_below. At batch 32 the MLP's products run
// serially and its optimizer update (269k parameters) split over 2 threads cost more than
// one thread (the second core pulls the gradient out of the first one's cache): 83k against
// 121k examples/s; at batch 128 and 512 the products are parallel and so is the update
// (docs/performance.md). Settable for measurement (bench --elementwise-follow-below).
inline constexpr std::int64_t elementwise_follow_below_default = std::int64_t{1} << 20;
void set_elementwise_follow_below(std::int64_t n);
std::int64_t elementwise_follow_below();
// Called by the matrix products: whether the latest one ran on one thread.
void note_products_serial(bool serial);
bool last_products_serial();
// Whether a pass over n elements follows a product that ran on one thread and stays there.
inline bool follows_serial_products(std::int64_t n) { return n < elementwise_follow_below() && last_products_serial(); }
// The element-wise passes' rule (parallel_for_elements, parallel_for_ranges): n elements on
// the calling thread.
inline bool elementwise_on_one_thread(std::int64_t n) {
  return n < elementwise_serial_below() || follows_serial_products(n);
}

// Denormal floats (nonzero, magnitude below 2^-126 in float32, 2^-1022 in float64) read as
// zero and results that would be denormal written as zero: the x86 MXCSR bits DAZ and FTZ,
// which the SSE/AVX/AVX-512 units (ours, OpenBLAS's and oneDNN's kernels) obey. On Intel
// CPUs an operation on a denormal takes a microcode assist of about a hundred cycles: Adam's
// second moments of tiny gradients drift into that range and its update pass slowed 2x
// within a run (docs/performance.md, session 11). PyTorch's torch.set_flush_denormal(True)
// sets the same bits. Per thread: set_flush_denormals sets them on the calling thread and on
// every thread of the OpenMP pool (num_threads() of them; threads added later start as the
// process did). No effect, and flush_denormals() false, on CPUs without MXCSR.
void set_flush_denormals(bool on);
bool flush_denormals();  // the calling thread's setting
// Sets flush_denormals for a scope and puts the calling thread's earlier setting back on the
// pool when it ends (the Trainer's config key `flush_denormals`, the bench programs).
class FlushDenormalsScope {
 public:
  explicit FlushDenormalsScope(bool on) : before_(flush_denormals()) { set_flush_denormals(on); }
  ~FlushDenormalsScope() { set_flush_denormals(before_); }
  FlushDenormalsScope(const FlushDenormalsScope&) = delete;
  FlushDenormalsScope& operator=(const FlushDenormalsScope&) = delete;

 private:
  bool before_;
};

// Calls f(begin, end) over [0, n) in chunks of `grain` elements, in parallel when there is
// more than one chunk.
template <class F>
void parallel_for(std::int64_t n, std::int64_t grain, F&& f) {
  if (n <= grain) {
    if (n > 0) f(std::int64_t{0}, n);
    return;
  }
  const std::int64_t chunks = (n + grain - 1) / grain;
#pragma omp parallel for schedule(static)
  for (std::int64_t c = 0; c < chunks; ++c) {
    const std::int64_t begin = c * grain;
    f(begin, std::min(n, begin + grain));
  }
}

// An elementwise pass: f(begin, end) over [0, n), on the calling thread when n is below
// elementwise_serial_below(), else in chunks of parallel_grain across the threads.
template <class F>
void parallel_for_elements(std::int64_t n, F&& f) {
  if (elementwise_on_one_thread(n)) {
    if (n > 0) f(std::int64_t{0}, n);
    return;
  }
  parallel_for(n, parallel_grain, std::forward<F>(f));
}

// A part of a flat buffer: elements [begin, end).
struct Range {
  std::int64_t begin = 0, end = 0;
};

// Ranges of fewer elements than this go whole to one thread in parallel_for_ranges.
inline constexpr std::int64_t range_split_min = 4096;

// Part t of `parts` contiguous parts of r: the cuts at begin + (end - begin) t / parts rounded
// down to a multiple of 16 elements (64 bytes of float), never before begin; part parts - 1
// ends at end.
inline Range part_of(Range r, int t, int parts) {
  const auto cut = [&](int q) {
    return q >= parts ? r.end : std::max(r.begin, (r.begin + (r.end - r.begin) * q / parts) & ~std::int64_t{15});
  };
  return {cut(t), cut(t + 1)};
}

// An elementwise pass over `ranges`, consecutive parts of one flat buffer (each begins where
// the one before ends; a model's parameters end to end): f(begin, end) over all of them in one
// call on the calling thread under parallel_for_elements' rule for their total; else, with T
// threads, every range of range_split_min elements or more cut into T contiguous parts (part
// t to thread t: part_of), and each smaller range whole to one thread, in turn. Each weight's
// gradient was just written by a matrix product that split its rows over the threads in the
// same order (descent's own kernel gives thread t the t-th block of rows where it splits by
// rows, not for A^T with n >= 2m or few rows, which it splits by columns; oneDNN's sgemm
// behaves so: cutting every row in halves instead made the update 1.7x slower), so each core
// updates mostly what is in its own cache; the parallel_grain chunks of parallel_for_elements
// gave one thread 5 of an MLP's 9 chunks, much of them written by the other core
// (docs/performance.md, loop helper, session 13).
template <class F>
void parallel_for_ranges(std::span<const Range> ranges, F&& f) {
  if (ranges.empty()) return;
  const std::int64_t first = ranges.front().begin, last = ranges.back().end, n = last - first;
  const int parts = num_threads();
  if (parts <= 1 || elementwise_on_one_thread(n)) {
    if (n > 0) f(first, last);
    return;
  }
#pragma omp parallel for schedule(static)
  for (int t = 0; t < parts; ++t) {
    std::int64_t small = 0;  // the smaller ranges so far: small % parts is the thread of the next
    for (const Range& r : ranges) {
      const std::int64_t m = r.end - r.begin;
      if (m < range_split_min) {
        if (small++ % parts == t && m > 0) f(r.begin, r.end);
        continue;
      }
      const Range p = part_of(r, t, parts);
      if (p.begin < p.end) f(p.begin, p.end);
    }
  }
}

}  // namespace descent
