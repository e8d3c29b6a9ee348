// max_pool2d on float32 with a 2x2 window and stride 2 has its own vectorized kernel where
// the host has AVX-512 (conv_ops.cpp, max_pool_2x2); float64 and every other window take
// the scalar loop. Here both paths see the same values: the maxima must be equal and the
// chosen positions (read through the gradient, which lands on the argmax) identical,
// including ties (the first maximum in row-major order wins), NaN, odd sizes, rows of
// fewer than 8 and more than 16 windows.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>

#include "descent/autodiff/conv.hpp"
#include "descent/autodiff/ops.hpp"
#include "support/gradcheck.hpp"

namespace descent {
namespace {

using autodiff::Tape;
using autodiff::Var;

struct Pooled {
  Tensor y, gx;  // as float64
};

// y = max_pool2d(x, 2), and the gradient of sum(c (.) y) with c = 1, 2, 3, ... (so each
// window's gradient value says which output it came from).
Pooled pool(const Tensor& x64, DType dt) {
  Tape tape;
  Var x = tape.variable(x64.to(dt));
  Var y = autodiff::max_pool2d(x, 2);
  Tensor c = Tensor::empty(y.shape(), dt);
  for (std::int64_t k = 0; k < c.numel(); ++k) {
    if (dt == DType::f32) c.data<float>()[k] = static_cast<float>(k + 1);
    else c.data<double>()[k] = static_cast<double>(k + 1);
  }
  tape.backward(autodiff::sum(autodiff::mul(tape.constant(c), y)));
  return {y.value().to(DType::f64), tape.grad(x).to(DType::f64)};
}

void expect_same_paths(const Tensor& x64, const std::string& what) {
  const Pooled a = pool(x64, DType::f32);
  const Pooled b = pool(x64, DType::f64);
  ASSERT_EQ(a.y.shape(), b.y.shape()) << what;
  for (std::int64_t k = 0; k < a.y.numel(); ++k) {
    const double ya = a.y.at(k), yb = b.y.at(k);
    if (std::isnan(yb)) {
      EXPECT_TRUE(std::isnan(ya)) << what << ", output " << k;
    } else {
      EXPECT_EQ(ya, yb) << what << ", output " << k;
    }
  }
  for (std::int64_t k = 0; k < a.gx.numel(); ++k) EXPECT_EQ(a.gx.at(k), b.gx.at(k)) << what << ", input " << k;
}

TEST(MaxPoolFloat32, MatchesTheScalarPathOnRandomValues) {
  // Widths giving rows of 1, 3, 7, 8, 14, 16, 17 and 25 windows; odd heights and widths.
  for (std::int64_t w : {2, 7, 14, 16, 28, 32, 35, 50}) {
    for (std::int64_t h : {2, 5, 28}) {
      const Tensor x = testing::random_tensor({2, 3, h, w}, DType::f64, static_cast<std::uint64_t>(w * 100 + h));
      // Values exactly representable in float32, so both dtypes pool the same numbers.
      expect_same_paths(x.to(DType::f32).to(DType::f64), "h " + std::to_string(h) + ", w " + std::to_string(w));
    }
  }
}

TEST(MaxPoolFloat32, TiesTakeTheFirstMaximumInRowMajorOrder) {
  // Values from {0, 1, 2}: most windows hold ties.
  Tensor x = Tensor::empty({1, 2, 6, 34}, DType::f64);
  for (std::int64_t k = 0; k < x.numel(); ++k) x.data<double>()[k] = static_cast<double>((k * 7 + k / 5) % 3);
  expect_same_paths(x, "ties");
  // All equal: every window's first element.
  const Tensor ones = Tensor::full({1, 1, 4, 36}, DType::f64, 1.0);
  const Pooled p = pool(ones, DType::f32);
  for (std::int64_t i = 0; i < 4; ++i) {
    for (std::int64_t j = 0; j < 36; ++j) {
      const bool first = i % 2 == 0 && j % 2 == 0;
      EXPECT_EQ(p.gx.at(i * 36 + j) != 0.0, first) << i << ", " << j;
    }
  }
}

TEST(MaxPoolFloat32, NaNAndInfinities) {
  Tensor x = testing::random_tensor({1, 1, 4, 20}, DType::f64, 7).to(DType::f32).to(DType::f64);
  double* d = x.data<double>();
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  d[0] = nan;       // first in its window
  d[20 + 3] = nan;  // last in window (0, 1)
  d[5] = inf;
  d[40 + 8] = -inf;
  d[40 + 9] = -inf;
  d[60 + 8] = -inf;
  d[60 + 9] = -inf;  // a window of -inf only
  expect_same_paths(x, "NaN and inf");
}

}  // namespace
}  // namespace descent
