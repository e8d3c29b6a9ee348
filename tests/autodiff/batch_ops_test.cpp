// The per-channel operations of batch normalization (batch.hpp): gradients against central
// differences and Hv against central differences of gradients (float64, relative error
// < 1e-6), the fused batch_norm against the same computation composed from the basic
// operations of ops.hpp (values, gradients and Hv), statistics, determinism, shape errors.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "descent/autodiff/batch.hpp"
#include "descent/autodiff/ops.hpp"
#include "descent/tensor/kernels.hpp"
#include "descent/tensor/parallel.hpp"
#include "support/expect_error.hpp"
#include "support/gradcheck.hpp"

namespace descent {
namespace {

using autodiff::Tape;
using autodiff::Var;
using testing::Builder;
using testing::expect_derivatives;
using testing::head;
using testing::random_tangents;
using testing::random_tensor;
using testing::tape_hvp;

Var bn(const std::vector<Var>& v) { return autodiff::batch_norm(v[0], v[1], v[2], {.eps = 1e-3}); }

// ---- batch_norm: gradient and Hv -------------------------------------------------------

TEST(BatchOps, BatchNormMatrix) {
  auto b = head([](Tape&, const std::vector<Var>& v) { return bn(v); }, Shape{5, 3}, 1);
  expect_derivatives(b, {random_tensor({5, 3}, DType::f64, 2, -2.0, 2.0), random_tensor({3}, DType::f64, 3, 0.5, 1.5),
                         random_tensor({3}, DType::f64, 4)},
                     5);
}

TEST(BatchOps, BatchNormImages) {
  auto b = head([](Tape&, const std::vector<Var>& v) { return bn(v); }, Shape{2, 3, 2, 3}, 6);
  expect_derivatives(b, {random_tensor({2, 3, 2, 3}, DType::f64, 7, -2.0, 2.0), random_tensor({3}, DType::f64, 8, 0.5, 1.5),
                         random_tensor({3}, DType::f64, 9)},
                     10);
}

TEST(BatchOps, BatchNormSequences) {
  auto b = head([](Tape&, const std::vector<Var>& v) { return bn(v); }, Shape{3, 2, 4}, 11);
  expect_derivatives(b, {random_tensor({3, 2, 4}, DType::f64, 12, -2.0, 2.0), random_tensor({2}, DType::f64, 13, -1.5, -0.5),
                         random_tensor({2}, DType::f64, 14)},
                     15);
}

// Only x varies (gamma and beta are data): the rules with undefined tangents of gamma, beta.
TEST(BatchOps, BatchNormWithConstantScaleAndShift) {
  Tensor gamma = random_tensor({4}, DType::f64, 16, 0.5, 1.5);
  Tensor beta = random_tensor({4}, DType::f64, 17);
  auto b = head(
      [gamma, beta](Tape& t, const std::vector<Var>& v) {
        return autodiff::batch_norm(v[0], t.constant(gamma), t.constant(beta), {.eps = 1e-3});
      },
      Shape{6, 4}, 18);
  expect_derivatives(b, {random_tensor({6, 4}, DType::f64, 19, -2.0, 2.0)}, 20);
}

// Only gamma and beta vary (x is data): the rules with an undefined tangent of x.
TEST(BatchOps, BatchNormWithConstantInput) {
  Tensor x = random_tensor({2, 3, 2, 2}, DType::f64, 21, -2.0, 2.0);
  auto b = head(
      [x](Tape& t, const std::vector<Var>& v) { return autodiff::batch_norm(t.constant(x), v[0], v[1], {.eps = 1e-3}); },
      Shape{2, 3, 2, 2}, 22);
  expect_derivatives(b, {random_tensor({3}, DType::f64, 23, 0.5, 1.5), random_tensor({3}, DType::f64, 24)}, 25);
}

// Composed with a nonlinearity on both sides, so gy and the tangent of x both vary.
TEST(BatchOps, BatchNormBetweenNonlinearities) {
  auto b = head(
      [](Tape&, const std::vector<Var>& v) {
        Var x = autodiff::tanh(autodiff::linear(v[0], v[1]));
        return autodiff::sigmoid(autodiff::batch_norm(x, v[2], v[3], {.eps = 1e-3}));
      },
      Shape{7, 3}, 26);
  expect_derivatives(b, {random_tensor({7, 4}, DType::f64, 27), random_tensor({3, 4}, DType::f64, 28),
                         random_tensor({3}, DType::f64, 29, 0.5, 1.5), random_tensor({3}, DType::f64, 30)},
                     31);
}

// ---- the fused node against the composition of basic operations -------------------------

// Per-channel mean of z [N, C, ...] as [1, C], and a [1, C] row broadcast back to z's shape,
// both from matmul with constant matrices of ones.
struct Composite {
  Tape& t;
  std::int64_t n, c, inner;
  DType dtype;
  Var fill(const Shape& s, double v) { return t.constant(Tensor::full(s, dtype, v)); }
  Var mean_channels(Var z) {
    Var per_block = autodiff::matmul(autodiff::reshape(z, {n * c, inner}), fill({inner, 1}, 1.0 / static_cast<double>(inner)));
    return autodiff::matmul(fill({1, n}, 1.0 / static_cast<double>(n)), autodiff::reshape(per_block, {n, c}));
  }
  Var broadcast(Var row, const Shape& shape) {
    Var rows = autodiff::reshape(autodiff::matmul(fill({n, 1}, 1.0), row), {n * c, 1});
    return autodiff::reshape(autodiff::matmul(rows, fill({1, inner}, 1.0)), shape);
  }
  Var batch_norm(Var x, Var gamma, Var beta, double eps) {
    const Shape s = x.shape();
    Var d = autodiff::sub(x, broadcast(mean_channels(x), s));
    Var var = mean_channels(autodiff::square(d));
    Var inv_std = autodiff::exp(autodiff::scale(autodiff::log(autodiff::add_scalar(var, eps)), -0.5));
    Var xh = autodiff::mul(d, broadcast(inv_std, s));
    Var g = broadcast(autodiff::reshape(gamma, {1, c}), s);
    return autodiff::add(autodiff::mul(xh, g), broadcast(autodiff::reshape(beta, {1, c}), s));
  }
};

Var composite_bn(Tape& t, const std::vector<Var>& v, double eps) {
  const Shape s = v[0].shape();
  std::int64_t inner = 1;
  for (int d = 2; d < s.ndim(); ++d) inner *= s[d];
  Composite comp{t, s[0], s[1], inner, v[0].dtype()};
  return comp.batch_norm(v[0], v[1], v[2], eps);
}

void expect_fused_matches_composite(const Shape& xs, std::uint64_t seed) {
  const double eps = 1e-2;
  const std::int64_t c = xs[1];
  std::vector<Tensor> inputs = {random_tensor(xs, DType::f64, seed, -3.0, 3.0), random_tensor({c}, DType::f64, seed + 1, 0.5, 1.5),
                                random_tensor({c}, DType::f64, seed + 2)};
  // Values.
  {
    Tape t;
    std::vector<Var> v;
    for (const Tensor& x : inputs) v.push_back(t.constant(x));
    Var fused = autodiff::batch_norm(v[0], v[1], v[2], {.eps = eps});
    Var comp = composite_bn(t, v, eps);
    EXPECT_LT(testing::relative_difference(fused.value(), comp.value()), 1e-14);
  }
  Builder fused = head([eps](Tape&, const std::vector<Var>& v) { return autodiff::batch_norm(v[0], v[1], v[2], {.eps = eps}); },
                       xs, seed + 3);
  Builder comp = head([eps](Tape& t, const std::vector<Var>& v) { return composite_bn(t, v, eps); }, xs, seed + 3);
  const double lf = testing::evaluate(fused, inputs);
  EXPECT_NEAR(lf, testing::evaluate(comp, inputs), 1e-12 * (1.0 + std::abs(lf)));
  const std::vector<Tensor> gf = testing::gradients(fused, inputs);
  const std::vector<Tensor> gc = testing::gradients(comp, inputs);
  const std::vector<Tensor> tangents = random_tangents(inputs, seed + 4);
  const std::vector<Tensor> hf = tape_hvp(fused, inputs, tangents);
  const std::vector<Tensor> hc = tape_hvp(comp, inputs, tangents);
  for (std::size_t k = 0; k < inputs.size(); ++k) {
    EXPECT_LT(testing::relative_difference(gf[k], gc[k]), 1e-12) << "gradient of input " << k;
    EXPECT_LT(testing::relative_difference(hf[k], hc[k]), 1e-12) << "Hv of input " << k;
    EXPECT_GT(std::sqrt(kernels::sum_squares(hf[k])), 1e-3);
  }
}

TEST(BatchOps, FusedMatchesCompositeOnMatrices) { expect_fused_matches_composite({6, 4}, 40); }
TEST(BatchOps, FusedMatchesCompositeOnImages) { expect_fused_matches_composite({3, 2, 3, 2}, 50); }
// Large enough that the reductions and the elementwise passes are split into parallel chunks.
TEST(BatchOps, FusedMatchesCompositeOnLargeInputs) {
  expect_fused_matches_composite({300, 130}, 55);
  expect_fused_matches_composite({4, 10, 32, 32}, 57);
}

// ---- statistics ------------------------------------------------------------------------

TEST(BatchOps, BatchNormNormalizesEachChannel) {
  for (const Shape& s : {Shape{64, 5}, Shape{4, 5, 3, 6}}) {
    Tape t;
    Tensor x = random_tensor(s, DType::f64, 60, -2.0, 6.0);
    autodiff::BatchStatistics stats;
    Var y = autodiff::batch_norm(t.constant(x), t.constant(Tensor::full({5}, DType::f64, 1.0)),
                                 t.constant(Tensor::zeros({5}, DType::f64)), {.eps = 0.0, .statistics = &stats});
    const std::int64_t inner = s.ndim() == 4 ? s[2] * s[3] : 1;
    const double m = static_cast<double>(s[0] * inner);
    for (std::int64_t c = 0; c < 5; ++c) {
      double sx = 0, sxx = 0, sy = 0, syy = 0;
      for (std::int64_t n = 0; n < s[0]; ++n) {
        for (std::int64_t k = 0; k < inner; ++k) {
          const std::int64_t i = (n * 5 + c) * inner + k;
          sx += x.at(i);
          sxx += x.at(i) * x.at(i);
          sy += y.value().at(i);
          syy += y.value().at(i) * y.value().at(i);
        }
      }
      EXPECT_NEAR(sy / m, 0.0, 1e-12);
      EXPECT_NEAR(syy / m, 1.0, 1e-12);
      EXPECT_NEAR(stats.mean.at(c), sx / m, 1e-12);
      EXPECT_NEAR(stats.var.at(c), sxx / m - (sx / m) * (sx / m), 1e-12);
    }
  }
}

TEST(BatchOps, BatchNormValueByHand) {
  // One channel of 4 values {1, 3, 5, 7}: mean 4, biased variance 5; gamma 2, beta 1, eps 0.
  Tape t;
  Var y = autodiff::batch_norm(t.constant(Tensor::from<double>({4, 1}, {1, 3, 5, 7})),
                               t.constant(Tensor::from<double>({1}, {2.0})), t.constant(Tensor::from<double>({1}, {1.0})),
                               {.eps = 0.0});
  const double s = 1.0 / std::sqrt(5.0);
  const double expected[4] = {1 - 6 * s, 1 - 2 * s, 1 + 2 * s, 1 + 6 * s};
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(y.value().at(i), expected[i], 1e-15);
}

TEST(BatchOps, Float32AgreesWithFloat64) {
  const Shape s{16, 3, 4, 4};
  Tensor x = random_tensor(s, DType::f64, 70, -2.0, 2.0);
  Tensor g = random_tensor({3}, DType::f64, 71, 0.5, 1.5);
  Tensor b = random_tensor({3}, DType::f64, 72);
  Tape t;
  Var y64 = autodiff::batch_norm(t.constant(x), t.constant(g), t.constant(b));
  Tape t32;
  Var y32 = autodiff::batch_norm(t32.constant(x.to(DType::f32)), t32.constant(g.to(DType::f32)), t32.constant(b.to(DType::f32)));
  EXPECT_EQ(y32.dtype(), DType::f32);
  EXPECT_LT(testing::relative_difference(y32.value(), y64.value()), 1e-6);
}

// Large enough for the parallel loops: the same bits with one thread and with several.
TEST(BatchOps, ThreadCountDoesNotChangeTheBits) {
  auto run = [](std::vector<Tensor>& out) {
    for (const Shape& s : {Shape{300, 130}, Shape{8, 6, 40, 40}}) {
      Tape t;
      Var x = t.variable(random_tensor(s, DType::f32, 80, -2.0, 2.0));
      Var g = t.variable(random_tensor({s[1]}, DType::f32, 81, 0.5, 1.5));
      Var b = t.variable(random_tensor({s[1]}, DType::f32, 82));
      t.set_tangent(x, random_tensor(s, DType::f32, 83));
      Var y = autodiff::batch_norm(x, g, b);
      Var loss = autodiff::sum(autodiff::square(y));
      t.hvp(loss, Tensor(), Tensor());
      out.push_back(y.value().clone());
      out.push_back(t.grad(x).clone());
      out.push_back(t.grad(g).clone());
      out.push_back(t.grad_tangent(x).clone());
      out.push_back(t.grad_tangent(g).clone());
    }
  };
  const int saved = num_threads();
  std::vector<Tensor> one, many;
  set_num_threads(1);
  run(one);
  set_num_threads(4);
  run(many);
  set_num_threads(saved);
  ASSERT_EQ(one.size(), many.size());
  for (std::size_t k = 0; k < one.size(); ++k) {
    ASSERT_EQ(one[k].nbytes(), many[k].nbytes());
    EXPECT_EQ(std::memcmp(one[k].raw(), many[k].raw(), one[k].nbytes()), 0) << "tensor " << k;
  }
}

// ---- channel_affine --------------------------------------------------------------------

TEST(BatchOps, ChannelAffineMatrix) {
  auto b = head([](Tape&, const std::vector<Var>& v) { return autodiff::channel_affine(v[0], v[1], v[2]); }, Shape{4, 3}, 90);
  expect_derivatives(b, {random_tensor({4, 3}, DType::f64, 91), random_tensor({3}, DType::f64, 92), random_tensor({3}, DType::f64, 93)},
                     94);
}

TEST(BatchOps, ChannelAffineImagesWithoutShift) {
  auto b = head([](Tape&, const std::vector<Var>& v) { return autodiff::channel_affine(v[0], v[1]); }, Shape{2, 3, 2, 2}, 95);
  expect_derivatives(b, {random_tensor({2, 3, 2, 2}, DType::f64, 96), random_tensor({3}, DType::f64, 97)}, 98);
}

// The evaluation-mode composition: scale = gamma * k, shift = beta - m * scale.
TEST(BatchOps, ChannelAffineOfScaleAndShiftBuiltFromParameters) {
  Tensor k = random_tensor({3}, DType::f64, 100, 0.5, 1.5);
  Tensor mean = random_tensor({3}, DType::f64, 101);
  auto b = head(
      [k, mean](Tape& t, const std::vector<Var>& v) {
        Var scale = autodiff::mul(v[1], t.constant(k));
        Var shift = autodiff::sub(v[2], autodiff::mul(t.constant(mean), scale));
        return autodiff::channel_affine(autodiff::tanh(v[0]), scale, shift);
      },
      Shape{3, 3, 2}, 102);
  expect_derivatives(b, {random_tensor({3, 3, 2}, DType::f64, 103), random_tensor({3}, DType::f64, 104),
                         random_tensor({3}, DType::f64, 105)},
                     106);
}

TEST(BatchOps, ChannelAffineValue) {
  Tape t;
  Var y = autodiff::channel_affine(t.constant(Tensor::from<double>({2, 2, 2}, {1, 2, 3, 4, 5, 6, 7, 8})),
                                   t.constant(Tensor::from<double>({2}, {10, -1})), t.constant(Tensor::from<double>({2}, {0.5, 100})));
  const double expected[8] = {10.5, 20.5, 97, 96, 50.5, 60.5, 93, 92};
  for (int i = 0; i < 8; ++i) EXPECT_EQ(y.value().at(i), expected[i]);
}

// ---- errors ----------------------------------------------------------------------------

TEST(BatchOps, ShapeErrorsNameTheOperationAndTheShapes) {
  Tape t;
  Var x = t.constant(Tensor::zeros({4, 3}, DType::f64));
  Var g3 = t.constant(Tensor::zeros({3}, DType::f64));
  Var g2 = t.constant(Tensor::zeros({2}, DType::f64));
  auto expect_shape_error = [](auto&& f, const std::string& part) { testing::expect_error<ShapeError>(f, {part}); };
  expect_shape_error([&] { autodiff::batch_norm(x, g2, g3); }, "batch_norm: scale (gamma) [2] does not fit input [4, 3]");
  expect_shape_error([&] { autodiff::batch_norm(x, g3, g2); }, "batch_norm: shift (beta) [2]");
  expect_shape_error([&] { autodiff::batch_norm(t.constant(Tensor::zeros({3}, DType::f64)), g3, g3); },
                     "batch_norm: expects an input [N, C, ...] of 2 to 4 dimensions, got [3]");
  expect_shape_error([&] { autodiff::batch_norm(t.constant(Tensor::zeros({0, 3}, DType::f64)), g3, g3); },
                     "batch_norm: input [0, 3] has an empty channel");
  expect_shape_error([&] { autodiff::batch_norm(x, t.constant(Tensor::zeros({3}, DType::f32)), g3); }, "batch_norm");
  expect_shape_error([&] { autodiff::batch_norm(t.constant(Tensor::zeros({4, 3}, DType::i32)), g3, g3); }, "batch_norm");
  expect_shape_error([&] { autodiff::batch_norm(x, g3, Var{}); }, "batch_norm: the shift (beta) is missing");
  expect_shape_error([&] { autodiff::channel_affine(x, g2); }, "channel_affine: scale [2] does not fit input [4, 3]");
  expect_shape_error([&] { autodiff::channel_affine(x, g3, g2); }, "channel_affine: shift [2]");
  expect_shape_error([&] { autodiff::channel_affine(t.constant(Tensor::zeros({2, 3, 1, 1}, DType::f64)), g2); },
                     "channel_affine: scale [2] does not fit input [2, 3, 1, 1]");
  EXPECT_THROW(autodiff::batch_norm(x, g3, g3, {.eps = -1.0}), ConfigError);
  EXPECT_THROW(autodiff::batch_norm(x, g3, g3, {.eps = std::nan("")}), ConfigError);
}

}  // namespace
}  // namespace descent
