// Convolution and pooling: values against direct nested loops and hand-computed numbers,
// gradients against central differences and exact Hessian-vector products against
// central differences of the gradient (float64, relative error < 1e-6), shape errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <string>

#include "descent/autodiff/conv.hpp"
#include "descent/autodiff/ops.hpp"
#include "descent/init/rng.hpp"
#include "descent/tensor/parallel.hpp"
#include "support/expect_error.hpp"
#include "support/gradcheck.hpp"

namespace descent {
namespace {

using autodiff::Conv2dOptions;
using autodiff::Tape;
using autodiff::Var;
using testing::Builder;
using testing::expect_derivatives;
using testing::head;
using testing::random_tensor;

// y = conv(x, w) + b by the definition, with direct nested loops (no patch matrix).
Tensor direct_conv(const Tensor& x, const Tensor& w, const Tensor& b, std::int64_t stride, std::int64_t pad) {
  const std::int64_t batch = x.dim(0), cin = x.dim(1), h = x.dim(2), wd = x.dim(3);
  const std::int64_t cout = w.dim(0), kh = w.dim(2), kw = w.dim(3);
  const std::int64_t ho = (h + 2 * pad - kh) / stride + 1, wo = (wd + 2 * pad - kw) / stride + 1;
  Tensor y = Tensor::zeros({batch, cout, ho, wo}, DType::f64);
  double* yd = y.data<double>();
  for (std::int64_t n = 0; n < batch; ++n) {
    for (std::int64_t o = 0; o < cout; ++o) {
      for (std::int64_t i = 0; i < ho; ++i) {
        for (std::int64_t j = 0; j < wo; ++j) {
          double s = b.defined() ? b.at(o) : 0.0;
          for (std::int64_t c = 0; c < cin; ++c) {
            for (std::int64_t u = 0; u < kh; ++u) {
              for (std::int64_t v = 0; v < kw; ++v) {
                const std::int64_t r = i * stride - pad + u, q = j * stride - pad + v;
                if (r < 0 || r >= h || q < 0 || q >= wd) continue;
                s += x.at(((n * cin + c) * h + r) * wd + q) * w.at(((o * cin + c) * kh + u) * kw + v);
              }
            }
          }
          yd[((n * cout + o) * ho + i) * wo + j] = s;
        }
      }
    }
  }
  return y;
}

// Values i * 0.01 in a shuffled order: every two differ by >= 0.01, far from any tie
// that a finite-difference step (1e-5) could cross.
Tensor distinct_values(const Shape& shape, std::uint64_t seed) {
  const std::int64_t n = shape.numel();
  std::vector<std::int64_t> order(static_cast<std::size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  Rng rng(seed);
  for (std::int64_t i = n - 1; i > 0; --i) {
    std::swap(order[static_cast<std::size_t>(i)], order[static_cast<std::size_t>(rng.below(static_cast<std::uint64_t>(i + 1)))]);
  }
  std::vector<double> v(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) v[static_cast<std::size_t>(i)] = 0.01 * static_cast<double>(order[static_cast<std::size_t>(i)] - n / 2);
  return Tensor::from<double>(shape, v);
}

// ---- conv2d values ----

TEST(Conv2d, HandComputedValues) {
  Tape tape;
  Var x = tape.constant(Tensor::from<double>({1, 1, 3, 3}, {1, 2, 3, 4, 5, 6, 7, 8, 9}));
  Var w = tape.constant(Tensor::from<double>({1, 1, 2, 2}, {1, 2, 3, 4}));
  Var b = tape.constant(Tensor::from<double>({1}, {0.5}));
  // Valid positions: y[i, j] = x[i, j] + 2 x[i, j+1] + 3 x[i+1, j] + 4 x[i+1, j+1] + 0.5.
  const Tensor& y = autodiff::conv2d(x, w, b).value();
  ASSERT_EQ(y.shape(), (Shape{1, 1, 2, 2}));
  EXPECT_EQ(y.at(0), 37.5);
  EXPECT_EQ(y.at(1), 47.5);
  EXPECT_EQ(y.at(2), 67.5);
  EXPECT_EQ(y.at(3), 77.5);
  // Padding 1, stride 2: windows start at rows/columns -1 and 1.
  const Tensor& z = autodiff::conv2d(x, w, {}, {.stride = 2, .padding = 1}).value();
  ASSERT_EQ(z.shape(), (Shape{1, 1, 2, 2}));
  EXPECT_EQ(z.at(0), 4.0);                    // only x[0,0] under w[1,1]
  EXPECT_EQ(z.at(1), 3.0 * 2 + 4.0 * 3);      // x[0,1] w[1,0] + x[0,2] w[1,1]
  EXPECT_EQ(z.at(2), 2.0 * 4 + 4.0 * 7);      // x[1,0] w[0,1] + x[2,0] w[1,1]
  EXPECT_EQ(z.at(3), 5.0 + 2 * 6.0 + 3 * 8.0 + 4 * 9.0);
}

TEST(Conv2d, MatchesDirectLoops) {
  struct Case {
    std::int64_t batch, cin, h, w, cout, kh, kw, stride, pad;
  };
  for (const Case& c : {Case{2, 2, 7, 6, 3, 3, 3, 1, 0}, Case{1, 2, 7, 5, 3, 5, 5, 2, 2}, Case{3, 1, 9, 8, 2, 3, 2, 2, 1},
                        Case{17, 2, 5, 5, 3, 5, 5, 1, 2}, Case{2, 3, 4, 4, 2, 4, 4, 3, 0},
                        Case{2, 2, 3, 4, 2, 2, 2, 1, 3}}) {  // padding wider than the kernel: border windows see only zeros
    Tensor x = random_tensor({c.batch, c.cin, c.h, c.w}, DType::f64, 1);
    Tensor w = random_tensor({c.cout, c.cin, c.kh, c.kw}, DType::f64, 2);
    Tensor b = random_tensor({c.cout}, DType::f64, 3);
    Tensor expected = direct_conv(x, w, b, c.stride, c.pad);
    Tape tape;
    Tensor y = autodiff::conv2d(tape.constant(x), tape.constant(w), tape.constant(b), {.stride = c.stride, .padding = c.pad})
                   .value();
    ASSERT_EQ(y.shape(), expected.shape());
    for (std::int64_t i = 0; i < y.numel(); ++i) ASSERT_NEAR(y.at(i), expected.at(i), 1e-12) << "element " << i;
    // float32 agrees to rounding.
    Tensor y32 = autodiff::conv2d(tape.constant(x.to(DType::f32)), tape.constant(w.to(DType::f32)),
                                  tape.constant(b.to(DType::f32)), {.stride = c.stride, .padding = c.pad})
                     .value();
    EXPECT_EQ(y32.dtype(), DType::f32);
    for (std::int64_t i = 0; i < y.numel(); ++i) ASSERT_NEAR(y32.at(i), expected.at(i), 1e-5) << "element " << i;
  }
}

TEST(Conv2d, OutputSize) {
  EXPECT_EQ(autodiff::conv_output_size(28, 5, {.stride = 1, .padding = 2}, "t"), 28);
  EXPECT_EQ(autodiff::conv_output_size(7, 5, {.stride = 2, .padding = 2}, "t"), 4);
  EXPECT_EQ(autodiff::conv_output_size(7, 3, {.stride = 2, .padding = 0}, "t"), 3);
  EXPECT_EQ(autodiff::conv_output_size(3, 5, {.stride = 1, .padding = 1}, "t"), 1);
}

// ---- conv2d derivatives ----

struct ConvCase {
  std::int64_t batch, cin, h, w, cout, k, stride, pad;
  bool bias;
};

void expect_conv_derivatives(const ConvCase& c, std::uint64_t seed) {
  const Conv2dOptions o{.stride = c.stride, .padding = c.pad};
  const std::int64_t ho = autodiff::conv_output_size(c.h, c.k, o, "t"), wo = autodiff::conv_output_size(c.w, c.k, o, "t");
  auto b = head(
      [o, c](Tape&, const std::vector<Var>& v) { return autodiff::conv2d(v[0], v[1], c.bias ? v[2] : Var{}, o); },
      Shape{c.batch, c.cout, ho, wo}, seed);
  std::vector<Tensor> inputs{random_tensor({c.batch, c.cin, c.h, c.w}, DType::f64, seed + 1),
                             random_tensor({c.cout, c.cin, c.k, c.k}, DType::f64, seed + 2)};
  if (c.bias) inputs.push_back(random_tensor({c.cout}, DType::f64, seed + 3));
  expect_derivatives(b, inputs, seed + 4);
}

TEST(Conv2d, Kernel3Stride1Padding0) { expect_conv_derivatives({2, 2, 7, 6, 3, 3, 1, 0, true}, 10); }
TEST(Conv2d, Kernel3Stride2Padding2) { expect_conv_derivatives({2, 2, 7, 5, 3, 3, 2, 2, true}, 20); }
TEST(Conv2d, Kernel5Stride1Padding2) { expect_conv_derivatives({2, 2, 5, 7, 3, 5, 1, 2, true}, 30); }
TEST(Conv2d, Kernel5Stride2Padding0NoBias) { expect_conv_derivatives({1, 2, 9, 7, 3, 5, 2, 0, false}, 40); }
TEST(Conv2d, Kernel5Stride2Padding2) { expect_conv_derivatives({3, 2, 7, 5, 3, 5, 2, 2, true}, 50); }

TEST(Conv2d, ConstantInputOrConstantWeight) {
  Tensor x = random_tensor({2, 2, 5, 6}, DType::f64, 61);
  Tensor w = random_tensor({3, 2, 3, 3}, DType::f64, 62);
  const Conv2dOptions o{.stride = 1, .padding = 1};
  // Only the weight and bias vary (the first layer of a network: data input).
  auto wb = head([x, o](Tape& t, const std::vector<Var>& v) { return autodiff::conv2d(t.constant(x), v[0], v[1], o); },
                 Shape{2, 3, 5, 6}, 63);
  expect_derivatives(wb, {w, random_tensor({3}, DType::f64, 64)}, 65);
  // Only the input varies.
  auto xb = head([w, o](Tape& t, const std::vector<Var>& v) { return autodiff::conv2d(v[0], t.constant(w), Var{}, o); },
                 Shape{2, 3, 5, 6}, 66);
  expect_derivatives(xb, {x}, 67);
}

TEST(Conv2d, GradientsAccumulateOverUses) {
  // x, w and b each feed two convolutions: the second contribution lands with beta = 1.
  auto b = head(
      [](Tape&, const std::vector<Var>& v) {
        Var y1 = autodiff::conv2d(v[0], v[1], v[2], {.stride = 1, .padding = 1});
        Var y2 = autodiff::conv2d(autodiff::tanh(v[0]), v[1], v[2], {.stride = 1, .padding = 1});
        return autodiff::mul(y1, y2);
      },
      Shape{2, 3, 4, 5}, 70);
  expect_derivatives(b, {random_tensor({2, 2, 4, 5}, DType::f64, 71), random_tensor({3, 2, 3, 3}, DType::f64, 72),
                         random_tensor({3}, DType::f64, 73)},
                     74);
}

TEST(Conv2d, ManyChunksAreThreadCountIndependent) {
  // 40 examples: chunks of 3, the last one short, with enough work to run on several
  // threads. f32 results, gradients and R(gradients) bit-identical with 1 and 2 threads.
  Tensor x = random_tensor({40, 16, 12, 12}, DType::f32, 81);
  Tensor w = random_tensor({16, 16, 3, 3}, DType::f32, 82);
  Tensor bias = random_tensor({16}, DType::f32, 83);
  Tensor vx = random_tensor(x.shape(), DType::f32, 84), vw = random_tensor(w.shape(), DType::f32, 85);
  auto run = [&](int threads) {
    set_num_threads(threads);
    Tape tape;
    Var xv = tape.variable(x), wv = tape.variable(w), bv = tape.variable(bias);
    tape.set_tangent(xv, vx);
    tape.set_tangent(wv, vw);
    Var y = autodiff::conv2d(xv, wv, bv, {.stride = 1, .padding = 1});
    Var loss = autodiff::sum(autodiff::square(y));
    tape.hvp(loss, Tensor(), Tensor());
    std::vector<Tensor> out{y.value().clone(), tape.grad(xv).clone(), tape.grad(wv).clone(), tape.grad(bv).clone(),
                            tape.grad_tangent(xv).clone(), tape.grad_tangent(wv).clone(), tape.grad_tangent(bv).clone()};
    return out;
  };
  const int saved = num_threads();
  auto one = run(1);
  auto two = run(2);
  set_num_threads(saved);
  for (std::size_t k = 0; k < one.size(); ++k) {
    ASSERT_EQ(one[k].nbytes(), two[k].nbytes());
    EXPECT_EQ(std::memcmp(one[k].raw(), two[k].raw(), one[k].nbytes()), 0) << "output " << k;
  }
}

// ---- pooling ----

TEST(MaxPool2d, HandComputedValuesAndFirstMaxOnTies) {
  Tape tape;
  Var x = tape.variable(Tensor::from<double>({1, 1, 4, 5}, {1, 5, 2, 0, 9,   //
                                                            3, 4, 8, 8, 9,   //
                                                            7, 7, 0, 1, 9,   //
                                                            7, 6, 2, 3, 9}));
  Var y = autodiff::max_pool2d(x, 2);
  ASSERT_EQ(y.shape(), (Shape{1, 1, 2, 2}));  // the last column is dropped (floor)
  EXPECT_EQ(y.value().at(0), 5.0);
  EXPECT_EQ(y.value().at(1), 8.0);
  EXPECT_EQ(y.value().at(2), 7.0);
  EXPECT_EQ(y.value().at(3), 3.0);
  tape.backward(autodiff::sum(y));
  const Tensor& g = tape.grad(x);
  // Ties (8, 8 and 7, 7, 7) send the gradient to the first maximum in row-major order.
  const std::vector<double> expected{0, 1, 0, 0, 0,  //
                                     0, 0, 1, 0, 0,  //
                                     1, 0, 0, 0, 0,  //
                                     0, 0, 0, 1, 0};
  for (std::int64_t i = 0; i < 20; ++i) EXPECT_EQ(g.at(i), expected[static_cast<std::size_t>(i)]) << i;
}

TEST(MaxPool2d, OverlappingWindowsAccumulate) {
  Tape tape;
  Var x = tape.variable(Tensor::from<float>({1, 1, 3, 3}, {0, 0, 0, 0, 9, 0, 0, 0, 0}));
  Var y = autodiff::max_pool2d(x, 2, 1);  // four windows, all containing the center
  for (std::int64_t i = 0; i < 4; ++i) EXPECT_EQ(y.value().at(i), 9.0);
  tape.backward(autodiff::sum(y));
  EXPECT_EQ(tape.grad(x).at(4), 4.0);
  EXPECT_EQ(tape.grad(x).at(0), 0.0);
}

void expect_pool_derivatives(bool max, const Shape& in, std::int64_t k, std::int64_t s, std::uint64_t seed) {
  const Conv2dOptions o{.stride = s, .padding = 0};
  const Shape out{in[0], in[1], autodiff::conv_output_size(in[2], k, o, "t"), autodiff::conv_output_size(in[3], k, o, "t")};
  auto b = head(
      [max, k, s](Tape&, const std::vector<Var>& v) {
        return max ? autodiff::max_pool2d(v[0], k, s) : autodiff::avg_pool2d(v[0], k, s);
      },
      out, seed);
  expect_derivatives(b, {distinct_values(in, seed + 1)}, seed + 2);
}

TEST(MaxPool2d, Kernel2Stride2OddSizes) { expect_pool_derivatives(true, {2, 3, 7, 5}, 2, 2, 100); }
TEST(MaxPool2d, Kernel3Stride2Overlapping) { expect_pool_derivatives(true, {2, 2, 7, 7}, 3, 2, 110); }
TEST(MaxPool2d, Kernel3Stride1) { expect_pool_derivatives(true, {1, 2, 5, 6}, 3, 1, 120); }
TEST(MaxPool2d, Kernel4Stride3) { expect_pool_derivatives(true, {2, 2, 9, 8}, 4, 3, 125); }
TEST(AvgPool2d, Kernel2Stride2OddSizes) { expect_pool_derivatives(false, {2, 3, 7, 5}, 2, 2, 130); }
TEST(AvgPool2d, Kernel3Stride2Overlapping) { expect_pool_derivatives(false, {2, 2, 7, 7}, 3, 2, 140); }

TEST(MaxPool2d, SecondOrderThroughAConvolution) {
  // max-pool after a convolution: R(gy) of the pool comes from the conv's tangent.
  auto b = head(
      [](Tape&, const std::vector<Var>& v) {
        return autodiff::max_pool2d(autodiff::conv2d(v[0], v[1], Var{}, {.stride = 1, .padding = 1}), 2);
      },
      Shape{2, 3, 3, 2}, 150);
  expect_derivatives(b, {distinct_values({2, 2, 6, 5}, 151), distinct_values({3, 2, 3, 3}, 152)}, 153);
}

TEST(AvgPool2d, HandComputedValues) {
  Tape tape;
  Var x = tape.variable(Tensor::from<double>({1, 1, 2, 4}, {1, 2, 3, 4, 5, 6, 7, 8}));
  Var y = autodiff::avg_pool2d(x, 2);
  ASSERT_EQ(y.shape(), (Shape{1, 1, 1, 2}));
  EXPECT_EQ(y.value().at(0), (1 + 2 + 5 + 6) / 4.0);
  EXPECT_EQ(y.value().at(1), (3 + 4 + 7 + 8) / 4.0);
  tape.backward(autodiff::sum(y));
  for (std::int64_t i = 0; i < 8; ++i) EXPECT_EQ(tape.grad(x).at(i), 0.25);
}

// ---- shape errors ----

template <class F>
void expect_shape_error(F&& f, const std::vector<std::string>& fragments) {
  testing::expect_error<ShapeError>(std::forward<F>(f), fragments);
}

TEST(Conv2d, ShapeErrors) {
  Tape t;
  Var x = t.constant(Tensor::zeros({2, 3, 8, 8}, DType::f32));
  Var w = t.constant(Tensor::zeros({4, 3, 3, 3}, DType::f32));
  expect_shape_error([&] { autodiff::conv2d(t.constant(Tensor::zeros({2, 3, 8}, DType::f32)), w); },
                     {"conv2d", "[2, 3, 8]", "[4, 3, 3, 3]"});
  expect_shape_error([&] { autodiff::conv2d(x, t.constant(Tensor::zeros({4, 2, 3, 3}, DType::f32))); },
                     {"conv2d", "[2, 3, 8, 8]", "[4, 2, 3, 3]"});
  expect_shape_error([&] { autodiff::conv2d(x, w, t.constant(Tensor::zeros({3}, DType::f32))); },
                     {"conv2d", "bias", "[3]"});
  expect_shape_error([&] { autodiff::conv2d(x, t.constant(Tensor::zeros({4, 3, 9, 9}, DType::f32))); },
                     {"conv2d", "kernel 9", "8"});
  expect_shape_error([&] { autodiff::conv2d(x, w, Var{}, {.stride = 0}); }, {"conv2d", "stride"});
  expect_shape_error([&] { autodiff::conv2d(x, w, Var{}, {.stride = 1, .padding = -1}); }, {"conv2d", "padding"});
  expect_shape_error([&] { autodiff::conv2d(x, t.constant(Tensor::zeros({4, 3, 3, 3}, DType::f64))); }, {"conv2d"});
  expect_shape_error([&] { autodiff::conv2d(t.constant(Tensor::zeros({2, 3, 8, 8}, DType::i32)), w); }, {"conv2d", "i32"});
}

TEST(Pool2d, ShapeErrors) {
  Tape t;
  Var x = t.constant(Tensor::zeros({2, 3, 4, 5}, DType::f64));
  expect_shape_error([&] { autodiff::max_pool2d(t.constant(Tensor::zeros({6, 4}, DType::f64)), 2); },
                     {"max_pool2d", "[6, 4]"});
  expect_shape_error([&] { autodiff::max_pool2d(x, 5); }, {"max_pool2d", "kernel 5", "4"});
  expect_shape_error([&] { autodiff::avg_pool2d(x, 2, 0); }, {"avg_pool2d", "stride 0"});
  expect_shape_error([&] { autodiff::avg_pool2d(x, 0); }, {"avg_pool2d", "kernel 0"});
  expect_shape_error([&] { autodiff::avg_pool2d(t.constant(Tensor::zeros({2, 3, 4, 5}, DType::i32)), 2); },
                     {"avg_pool2d", "i32"});
}

}  // namespace
}  // namespace descent
