#include "descent/tensor/fused_sums.hpp"

#include <algorithm>
#include <vector>

#include "descent/error.hpp"
#include "descent/tensor/parallel.hpp"
#include "dispatch.hpp"

namespace descent::kernels {
namespace {

// sum over [i0, i1) (one block) of x_i^2 in 8 double lanes (lane l: i = i0 + l mod 8), the
// lanes added in order, then the tail.
template <class T>
DESCENT_DISPATCH double squares_block(const T* x, std::int64_t i0, std::int64_t i1) {
  constexpr int lanes = lane_sum_lanes;
  double acc[lanes] = {};
  std::int64_t i = i0;
  for (; i + lanes <= i1; i += lanes) {
    for (int l = 0; l < lanes; ++l) {
      const double v = static_cast<double>(x[i + l]);
      acc[l] += v * v;
    }
  }
  double s = 0.0;
  for (int l = 0; l < lanes; ++l) s += acc[l];
  for (; i < i1; ++i) {
    const double v = static_cast<double>(x[i]);
    s += v * v;
  }
  return s;
}

template <class T>
double squares_impl(const T* x, std::int64_t n) {
  if (n <= 0) return 0.0;
  const std::int64_t blocks = (n + lane_sum_block - 1) / lane_sum_block;
  std::vector<double> partial(static_cast<std::size_t>(blocks), 0.0);
  parallel_for(blocks, 8, [&](std::int64_t b0, std::int64_t b1) {
    for (std::int64_t b = b0; b < b1; ++b) {
      partial[static_cast<std::size_t>(b)] = squares_block(x, b * lane_sum_block, std::min(n, (b + 1) * lane_sum_block));
    }
  });
  double s = 0.0;
  for (const double p : partial) s += p;
  return s;
}

}  // namespace

double squares_in_lanes(const float* x, std::int64_t n) { return squares_impl(x, n); }
double squares_in_lanes(const double* x, std::int64_t n) { return squares_impl(x, n); }

double squares_in_lanes(const Tensor& x) {
  if (x.dtype() == DType::f32) return squares_in_lanes(x.data<float>(), x.numel());
  if (x.dtype() == DType::f64) return squares_in_lanes(x.data<double>(), x.numel());
  throw ShapeError("squares_in_lanes: expected a float32 or float64 tensor");
}

}  // namespace descent::kernels
