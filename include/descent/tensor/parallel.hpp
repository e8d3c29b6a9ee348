#pragma once
// Parallel loops over cores (OpenMP, the same libgomp pool that OpenBLAS's OpenMP build
// uses, so our loops and the matrix products never oversubscribe the cores).
//
// Work is split into fixed chunks whose boundaries depend only on n and the grain, never
// on the thread count: every reduction built on them sums the same partials in the same
// order, so results are bit-identical with 1 and with N threads.
#include <algorithm>
#include <cstdint>

namespace descent {

int num_threads();
void set_num_threads(int n);

// Below this many elements a loop runs on the calling thread.
inline constexpr std::int64_t parallel_grain = 1 << 15;

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

}  // namespace descent
