// relu_max_pool2d (conv_ops.cpp: ReLU and max-pooling in one pass) against the two
// operations it replaces, max_pool2d(relu(x)), recorded on their own tape: the value, the
// gradient and the exact Hessian-vector product (which runs the node's tangent rule and its
// R-backward) must be equal element for element (== compares +0 and -0 as equal), in float32
// and float64, on random values, on ties (values from a few integers, zeros included), on
// windows with no positive element, with NaN and infinities, for disjoint and overlapping
// windows and each kernel the pass has a form for (2, 3, and any other size). Then central
// differences (float64), alone and behind a convolution.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <string>
#include <vector>

#include "descent/autodiff/conv.hpp"
#include "descent/autodiff/ops.hpp"
#include "descent/tensor/kernels.hpp"
#include "support/gradcheck.hpp"

namespace descent {
namespace {

using autodiff::Conv2dOptions;
using autodiff::Tape;
using autodiff::Var;

struct Result {
  Tensor y, gx, hv;  // float64 copies
};

// y = op(x), L = sum(c (.) y) + 1/2 sum(y^2) (c = 1, -2, 3, -4, ... so gy takes both signs);
// gx = dL/dx, hv = H v for the tangent v.
Result run(bool fused, const Tensor& x64, const Tensor& v64, DType dt, std::int64_t k, std::int64_t s) {
  Tape tape;
  Var x = tape.variable(x64.to(dt));
  tape.set_tangent(x, v64.to(dt));
  Var y = fused ? autodiff::relu_max_pool2d(x, k, s) : autodiff::max_pool2d(autodiff::relu(x), k, s);
  Tensor c64 = Tensor::empty(y.shape(), DType::f64);
  for (std::int64_t i = 0; i < c64.numel(); ++i) c64.data<double>()[i] = (i % 2 == 0 ? 1.0 : -2.0) * static_cast<double>(i % 7 + 1);
  Var loss = autodiff::add(autodiff::sum(autodiff::mul(tape.constant(c64.to(dt)), y)),
                           autodiff::scale(autodiff::sum(autodiff::square(y)), 0.5));
  tape.hvp(loss, Tensor(), Tensor());
  Result r;
  r.y = y.value().to(DType::f64);
  r.gx = tape.grad(x).to(DType::f64);
  r.hv = tape.grad_tangent(x).to(DType::f64);
  // The fused form is one node: no ReLU node on the tape.
  bool has_relu = false;
  for (std::size_t i = 0; i < tape.size(); ++i) has_relu = has_relu || std::string(tape.node(static_cast<std::int32_t>(i)).name()) == "relu";
  EXPECT_EQ(has_relu, !fused);
  return r;
}

void expect_equal(const Tensor& a, const Tensor& b, const std::string& what) {
  ASSERT_EQ(a.shape(), b.shape()) << what;
  for (std::int64_t i = 0; i < a.numel(); ++i) {
    if (std::isnan(b.at(i))) {
      EXPECT_TRUE(std::isnan(a.at(i))) << what << " [" << i << "]";
    } else {
      EXPECT_EQ(a.at(i), b.at(i)) << what << " [" << i << "]";
    }
  }
}

// Fused and unfused agree on x (float64 values exactly representable in float32).
void expect_same(const Tensor& x, std::int64_t k, std::int64_t s, const std::string& what) {
  const Tensor v = testing::random_tensor(x.shape(), DType::f64, 99).to(DType::f32).to(DType::f64);
  for (DType dt : {DType::f32, DType::f64}) {
    const std::string w = what + (dt == DType::f32 ? ", f32" : ", f64");
    const Result a = run(true, x, v, dt, k, s);
    const Result b = run(false, x, v, dt, k, s);
    expect_equal(a.y, b.y, w + ", y");
    expect_equal(a.gx, b.gx, w + ", gx");
    expect_equal(a.hv, b.hv, w + ", Hv");
    // Non-trivial: some outputs positive (windows of no positive element are made sure of
    // by the callers' data: the negative case).
    std::int64_t positive = 0;
    for (std::int64_t i = 0; i < a.y.numel(); ++i) positive += a.y.at(i) > 0.0;
    EXPECT_GT(positive, 0) << w;
  }
}

struct Case {
  Shape in;
  std::int64_t k, s;
};
const Case kCases[] = {
    {{2, 3, 7, 5}, 2, 2},    // kernel 2's form, odd sizes (a last row and column no window reads)
    {{2, 2, 7, 7}, 3, 2},    // kernel 3's form, overlapping windows: gradients add up
    {{1, 2, 5, 6}, 3, 1},    // overlapping, stride 1
    {{2, 2, 9, 8}, 4, 3},    // the general form
    {{3, 4, 28, 28}, 2, 2},  // the benchmark CNN's first pool on a smaller batch
};

std::string name(const Case& c) {
  return c.in.str() + " kernel " + std::to_string(c.k) + " stride " + std::to_string(c.s);
}

TEST(ReluMaxPool2d, EqualsReluThenMaxPoolOnRandomValues) {
  for (const Case& c : kCases) {
    // Shifted down so that many windows hold no positive element (their output is 0).
    const Tensor x = testing::random_tensor(c.in, DType::f64, 7, -1.5, 1.0).to(DType::f32).to(DType::f64);
    expect_same(x, c.k, c.s, name(c));
  }
}

TEST(ReluMaxPool2d, EqualsReluThenMaxPoolOnTiesZerosAndNegativeWindows) {
  for (const Case& c : kCases) {
    // Values from {-2, -1, 0, 1, 2}: ties among positives, among zeros (relu's kink: the
    // derivative there is 0), and windows of negatives and zeros only.
    Tensor x = Tensor::empty(c.in, DType::f64);
    for (std::int64_t i = 0; i < x.numel(); ++i) x.data<double>()[i] = static_cast<double>((i * 7 + i / 3) % 5) - 2.0;
    expect_same(x, c.k, c.s, name(c) + ", ties");
    // Negative everywhere but the first element of the last plane: every other output 0,
    // every other gradient 0.
    Tensor neg = testing::random_tensor(c.in, DType::f64, 11, -1.0, -0.1).to(DType::f32).to(DType::f64);
    neg.data<double>()[neg.numel() - c.in[2] * c.in[3]] = 0.5;
    expect_same(neg, c.k, c.s, name(c) + ", negative");
  }
}

TEST(ReluMaxPool2d, EqualsReluThenMaxPoolWithNaNAndInfinities) {
  // relu(NaN) is 0 (x > 0 is false), so a NaN loses to any positive element of its window.
  Tensor x = testing::random_tensor({1, 2, 6, 8}, DType::f64, 13, -1.0, 1.0).to(DType::f32).to(DType::f64);
  double* d = x.data<double>();
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  d[0] = nan;                          // first in its window
  d[1] = 0.25;
  d[8 + 3] = nan;                      // last in window (0, 1)
  d[16 + 4] = inf;
  d[16 + 6] = -inf;
  d[16 + 7] = -inf;
  d[24 + 6] = nan;
  d[24 + 7] = -inf;                    // a window of -inf and NaN: output 0
  d[48 + 0] = nan;
  d[48 + 1] = nan;
  d[56 + 0] = nan;
  d[56 + 1] = nan;                     // a window of NaN only
  for (const auto& [k, s] : {std::pair<std::int64_t, std::int64_t>{2, 2}, {3, 2}, {4, 2}}) {
    const Tensor v = testing::random_tensor(x.shape(), DType::f64, 99).to(DType::f32).to(DType::f64);
    for (DType dt : {DType::f32, DType::f64}) {
      const std::string w = "kernel " + std::to_string(k) + (dt == DType::f32 ? ", f32" : ", f64");
      const Result a = run(true, x, v, dt, k, s);
      const Result b = run(false, x, v, dt, k, s);
      expect_equal(a.y, b.y, w + ", y");
      expect_equal(a.gx, b.gx, w + ", gx");
      expect_equal(a.hv, b.hv, w + ", Hv");
    }
  }
  // By hand (kernel 2, output [1, 2, 3, 4]): window (0, 0) holds NaN, 0.25 and two values
  // below 1; window (1, 2) holds inf; window (1, 3) only -inf and NaN; plane 1's window
  // (0, 0) only NaN.
  Tape tape;
  Var y = autodiff::relu_max_pool2d(tape.constant(x), 2, 2);
  EXPECT_GE(y.value().at(0), 0.25);
  EXPECT_EQ(y.value().at(6), inf);
  EXPECT_EQ(y.value().at(7), 0.0);
  EXPECT_EQ(y.value().at(12), 0.0);
}

// Values 0.01 (i - n/2) + 0.005 in a shuffled order: no zeros (relu's kink) and no two
// within 0.01, far from any tie or kink that a finite-difference step (1e-5) could cross.
Tensor distinct_nonzero(const Shape& shape, std::uint64_t seed) {
  const std::int64_t n = shape.numel();
  Tensor r = testing::random_tensor({n}, DType::f64, seed);
  std::vector<std::int64_t> order(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) order[static_cast<std::size_t>(i)] = i;
  std::sort(order.begin(), order.end(), [&](std::int64_t a, std::int64_t b) { return r.at(a) < r.at(b); });
  std::vector<double> v(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) {
    v[static_cast<std::size_t>(i)] = 0.01 * static_cast<double>(order[static_cast<std::size_t>(i)] - n / 2) + 0.005;
  }
  return Tensor::from<double>(shape, v);
}

TEST(ReluMaxPool2d, DerivativesMatchFiniteDifferences) {
  for (const Case& c : kCases) {
    if (c.in.numel() > 1000) continue;  // values up to +-47 there: the differences lose too many digits
    const Conv2dOptions o{.stride = c.s, .padding = 0};
    const Shape out{c.in[0], c.in[1], autodiff::conv_output_size(c.in[2], c.k, o, "t"),
                    autodiff::conv_output_size(c.in[3], c.k, o, "t")};
    auto b = testing::head(
        [c](Tape&, const std::vector<Var>& v) { return autodiff::relu_max_pool2d(v[0], c.k, c.s); }, out, 200);
    SCOPED_TRACE(name(c));
    testing::expect_derivatives(b, {distinct_nonzero(c.in, 201)}, 202);
  }
}

TEST(ReluMaxPool2d, SecondOrderThroughAConvolution) {
  // conv -> relu -> max-pool, the CNN's block: R(gy) of the fused node comes from the
  // convolution's tangent, and R(gx) feeds the convolution's R-backward.
  auto b = testing::head(
      [](Tape&, const std::vector<Var>& v) {
        return autodiff::relu_max_pool2d(autodiff::conv2d(v[0], v[1], v[2], {.stride = 1, .padding = 1}), 2, 2);
      },
      Shape{2, 3, 3, 2}, 210);
  testing::expect_derivatives(
      b, {distinct_nonzero({2, 2, 6, 5}, 211), distinct_nonzero({3, 2, 3, 3}, 212), Tensor::from<double>({3}, {0.05, -0.3, 0.1})},
      213);
}

TEST(ReluMaxPool2d, UnfusedByTheEnvironment) {
  // DESCENT_CONV_KERNELS=unfused (bench/cnn_ab.sh's reference side) records relu and max_pool2d.
  const char* saved = std::getenv("DESCENT_CONV_KERNELS");
  const std::string keep = saved != nullptr ? saved : "";
  setenv("DESCENT_CONV_KERNELS", "unfused", 1);
  Tape tape;
  Var y = autodiff::relu_max_pool2d(tape.constant(Tensor::full({1, 1, 4, 4}, DType::f32, -1.0)), 2, 2);
  if (saved != nullptr) setenv("DESCENT_CONV_KERNELS", keep.c_str(), 1);
  else unsetenv("DESCENT_CONV_KERNELS");
  EXPECT_EQ(std::string(tape.node(y).name()), "max_pool2d");
  EXPECT_EQ(std::string(tape.node(tape.node(y).input[0]).name()), "relu");
  Var z = autodiff::relu_max_pool2d(tape.constant(Tensor::full({1, 1, 4, 4}, DType::f32, -1.0)), 2, 2);
  EXPECT_EQ(std::string(tape.node(z).name()), "relu_max_pool2d");
  EXPECT_EQ(z.value().at(0), 0.0);
}

// ---- conv2d_relu_max_pool2d (oneDNN's blocked layout) ----

struct ConvResult {
  std::vector<Tensor> g, hv;  // of x, w, b (float64 copies)
  Tensor y;
  std::vector<std::string> names;
};

// y = relu_max_pool2d(conv2d(x, w, b)) fused or as separate nodes, L = sum(c (.) y) + 1/2
// sum(y^2); the gradient and H v along (vx, vw, vb) of every input, float32.
ConvResult conv_run(bool fused, const std::vector<Tensor>& in, const std::vector<Tensor>& tangents,
                    const Conv2dOptions& o, std::int64_t k, std::int64_t s) {
  Tape tape;
  std::vector<Var> v;
  for (std::size_t i = 0; i < in.size(); ++i) {
    v.push_back(tape.variable(in[i].to(DType::f32)));
    tape.set_tangent(v.back(), tangents[i].to(DType::f32));
  }
  Var y = fused ? autodiff::conv2d_relu_max_pool2d(v[0], v[1], v[2], o, k, s)
                : autodiff::relu_max_pool2d(autodiff::conv2d(v[0], v[1], v[2], o), k, s);
  Tensor c = Tensor::empty(y.shape(), DType::f32);
  for (std::int64_t i = 0; i < c.numel(); ++i) c.data<float>()[i] = (i % 2 == 0 ? 1.0f : -2.0f) * static_cast<float>(i % 7 + 1);
  Var loss = autodiff::add(autodiff::sum(autodiff::mul(tape.constant(c), y)),
                           autodiff::scale(autodiff::sum(autodiff::square(y)), 0.5));
  tape.hvp(loss, Tensor(), Tensor());
  ConvResult r;
  r.y = y.value().to(DType::f64);
  for (Var x : v) {
    r.g.push_back(tape.grad(x).to(DType::f64));
    r.hv.push_back(tape.grad_tangent(x).to(DType::f64));
  }
  for (std::size_t i = 0; i < tape.size(); ++i) r.names.emplace_back(tape.node(static_cast<std::int32_t>(i)).name());
  return r;
}

TEST(ConvReluMaxPool2d, EqualsTheSeparateOperations) {
  // The direct convolution on both sides (DESCENT_CONV_KERNELS=direct): the fused node's
  // forward and input gradient would otherwise take Winograd F(2x2, 5x5) for the 5x5 pad-2
  // case, equal to float rounding only (tests/autodiff/conv_winograd_test.cpp compares them).
  const char* saved = std::getenv("DESCENT_CONV_KERNELS");
  const std::string keep = saved != nullptr ? saved : "";
  setenv("DESCENT_CONV_KERNELS", "direct", 1);
  struct Restore {
    const char* saved;
    const std::string& keep;
    ~Restore() {
      if (saved != nullptr) setenv("DESCENT_CONV_KERNELS", keep.c_str(), 1);
      else unsetenv("DESCENT_CONV_KERNELS");
    }
  } restore{saved, keep};
  struct C {
    std::int64_t batch, cin, h, w, cout, kernel, pad, pool, pool_stride;
  };
  std::int64_t zeros = 0;
  for (const C& c : {// oneDNN's blocked layout (where built with it and the CPU has AVX-512)
                     C{3, 16, 10, 9, 16, 3, 1, 2, 2}, C{2, 32, 14, 14, 64, 5, 2, 2, 2}, C{2, 16, 9, 9, 32, 3, 0, 3, 2},
                     // the im2col path (fewer than 8 input channels): one chunk of examples,
                     // several chunks (37: partial sums per chunk), overlapping windows
                     C{3, 1, 12, 12, 8, 5, 2, 2, 2}, C{37, 2, 6, 6, 4, 3, 1, 2, 2}, C{2, 3, 9, 9, 5, 3, 0, 3, 2}}) {
    const std::string what = "batch " + std::to_string(c.batch) + ", " + std::to_string(c.cin) + " -> " +
                             std::to_string(c.cout) + ", pool " + std::to_string(c.pool) + "/" + std::to_string(c.pool_stride);
    const Conv2dOptions o{.stride = 1, .padding = c.pad};
    std::vector<Tensor> in{testing::random_tensor({c.batch, c.cin, c.h, c.w}, DType::f64, 301),
                                 testing::random_tensor({c.cout, c.cin, c.kernel, c.kernel}, DType::f64, 302, -0.3, 0.3),
                                 testing::random_tensor({c.cout}, DType::f64, 303, -0.5, 0.2)};
    // Output channels 0 and 1 with zero weights: their outputs are the bias everywhere, so
    // every window ties (positive for channel 0: the first position must win; negative for
    // channel 1: masked). The weight gradient says which position won.
    for (std::int64_t i = 0; i < 2 * c.cin * c.kernel * c.kernel; ++i) in[1].data<double>()[i] = 0.0;
    in[2].data<double>()[0] = 0.25;
    in[2].data<double>()[1] = -0.25;
    const std::vector<Tensor> tangents = testing::random_tangents(in, 304);
    Tape probe;
    const bool fuses = autodiff::fuses_conv2d_relu_max_pool2d(
        probe.constant(in[0].to(DType::f32)), probe.constant(in[1].to(DType::f32)), probe.constant(in[2].to(DType::f32)), o);
    const ConvResult a = conv_run(true, in, tangents, o, c.pool, c.pool_stride);
    const ConvResult b = conv_run(false, in, tangents, o, c.pool, c.pool_stride);
    if (c.cin < 8) {
      EXPECT_TRUE(fuses) << what << ": float32 on the im2col path always fuses";
    }
    EXPECT_EQ(std::count(a.names.begin(), a.names.end(), "conv2d_relu_max_pool2d"), fuses ? 1 : 0) << what;
    EXPECT_EQ(std::count(a.names.begin(), a.names.end(), "conv2d"), fuses ? 0 : 1) << what;
    expect_equal(a.y, b.y, what + ", y");
    expect_equal(a.g[0], b.g[0], what + ", gx");
    expect_equal(a.g[1], b.g[1], what + ", gw");
    // The bias gradient: the same terms summed in another order (in double).
    testing::expect_close(a.g[2], b.g[2], 1e-6, what + ", gb");
    for (int i = 0; i < 3; ++i) expect_equal(a.hv[i], b.hv[i], what + ", Hv " + std::to_string(i));
    std::int64_t positive = 0;
    for (std::int64_t i = 0; i < a.y.numel(); ++i) {
      positive += a.y.at(i) > 0.0;
      zeros += a.y.at(i) == 0.0;
    }
    EXPECT_GT(positive, 0) << what;
    EXPECT_GT(std::sqrt(kernels::sum_squares(a.g[2])), 0.0) << what;
  }
  EXPECT_GT(zeros, 0);  // windows with no positive element, where the mask is 0
}

TEST(ConvReluMaxPool2d, PoolsAsTheScalarLoopOnEveryRowWidth) {
  // A 1x1 convolution of weight 1 and no bias passes x through (z = 1 x), so the fused
  // node's pooling (on AVX-512 CPUs a vector kernel for 2x2 windows, 16 per step, masked at
  // a row's end) meets the values relu_max_pool2d's scalar loop sees: the same maxima and
  // argmax (read through x's gradient), with ties, zeros, NaN and infinities, on rows of
  // 1 to 25 windows and odd sizes.
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  for (std::int64_t w : {2, 7, 14, 16, 28, 32, 35, 50}) {
    for (std::int64_t h : {2, 5, 28}) {
      Tensor x = testing::random_tensor({2, 1, h, w}, DType::f64, static_cast<std::uint64_t>(w * 100 + h), -1.0, 1.0);
      double* d = x.data<double>();
      // The first image from {-1, 0, 1, 2}: ties among positive values and among zeros.
      for (std::int64_t i = 0; i < h * w; ++i) d[i] = static_cast<double>((i * 7 + i / 5) % 4) - 1.0;
      d[0] = nan;
      d[x.numel() - 1] = nan;
      d[x.numel() / 2] = inf;
      d[x.numel() / 3] = -inf;
      d[1 % x.numel()] = -0.0;
      const Tensor x32 = x.to(DType::f32);
      Tensor c = Tensor::empty({2, 1, h / 2, w / 2}, DType::f32);
      for (std::int64_t i = 0; i < c.numel(); ++i) c.data<float>()[i] = static_cast<float>(i + 1);
      Tensor ys[2], gs[2];
      for (int fused = 0; fused < 2; ++fused) {
        Tape tape;
        Var xv = tape.variable(x32);
        Var y = fused ? autodiff::conv2d_relu_max_pool2d(xv, tape.constant(Tensor::full({1, 1, 1, 1}, DType::f32, 1.0)),
                                                         Var{}, {}, 2, 2)
                      : autodiff::relu_max_pool2d(xv, 2, 2);
        if (fused) {
          EXPECT_EQ(std::string(tape.node(y).name()), "conv2d_relu_max_pool2d");
        }
        tape.backward(autodiff::sum(autodiff::mul(tape.constant(c), y)));
        ys[fused] = y.value().to(DType::f64);
        gs[fused] = tape.grad(xv).to(DType::f64);
      }
      const std::string what = "h " + std::to_string(h) + ", w " + std::to_string(w);
      expect_equal(ys[1], ys[0], what + ", y");
      expect_equal(gs[1], gs[0], what + ", gx");
    }
  }
}

TEST(ReluMaxPool2d, ShapeErrorsNameTheOperation) {
  Tape tape;
  try {
    autodiff::relu_max_pool2d(tape.constant(Tensor::zeros({2, 3}, DType::f32)), 2, 2);
    ADD_FAILURE() << "expected ShapeError";
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("relu_max_pool2d: expects a 4-D"), std::string::npos) << e.what();
  }
  EXPECT_THROW(autodiff::relu_max_pool2d(tape.constant(Tensor::zeros({1, 1, 3, 3}, DType::f32)), 4, 1), ShapeError);
  EXPECT_THROW(autodiff::relu_max_pool2d(tape.constant(Tensor::zeros({1, 1, 3, 3}, DType::f32)), 2, 0), ShapeError);
}

}  // namespace
}  // namespace descent
