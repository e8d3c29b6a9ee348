// Convolutional modules: parameter declarations, shapes, descriptions, errors, and the
// exact Hessian-vector product of a small CNN (Unflatten, Conv2d, ReLU, MaxPool2d,
// Flatten, Linear) against central differences of its gradient (float64), plus
// thread-count independence of its gradient and Hv (float32, bit-identical).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "descent/loss/loss.hpp"
#include "descent/nn/conv.hpp"
#include "descent/nn/initialize.hpp"
#include "descent/tensor/kernels.hpp"
#include "descent/tensor/parallel.hpp"
#include "support/gradcheck.hpp"

namespace descent {
namespace {

using autodiff::Tape;
using autodiff::Var;
using testing::random_tensor;

TEST(ConvModules, Conv2dDeclaresWeightAndBiasWithFans) {
  ParameterArena arena(DType::f32);
  nn::Sequential net(arena);
  net.add(nn::Conv2d(3, 8, 5, {.stride = 2, .padding = 2}));
  net.add(nn::Conv2d(8, 4, 3, {}, false));
  ASSERT_EQ(arena.count(), 3u);
  const ParamEntry& w = arena.entry(arena.find("layers.0.weight"));
  EXPECT_EQ(w.shape, (Shape{8, 3, 5, 5}));
  EXPECT_EQ(w.info.role, ParamRole::weight);
  EXPECT_EQ(w.info.fan_in, 3 * 25);
  EXPECT_EQ(w.info.fan_out, 8 * 25);
  const ParamEntry& b = arena.entry(arena.find("layers.0.bias"));
  EXPECT_EQ(b.shape, (Shape{8}));
  EXPECT_EQ(b.info.role, ParamRole::bias);
  EXPECT_EQ(b.info.fan_in, 75);
  EXPECT_FALSE(arena.find("layers.1.bias").valid());
  EXPECT_EQ(arena.entry(arena.find("layers.1.weight")).shape, (Shape{4, 8, 3, 3}));
  EXPECT_EQ(arena.size(), 8 * 3 * 25 + 8 + 4 * 8 * 9);
  EXPECT_EQ(net.describe(),
            "Sequential(Conv2d(3 -> 8, kernel 5, stride 2, padding 2, bias), Conv2d(8 -> 4, kernel 3, stride 1, padding 0))");
}

TEST(ConvModules, ShapesThroughALeNetLikeStack) {
  ParameterArena arena(DType::f32);
  nn::Sequential net(arena);
  net.add(nn::Unflatten({1, 28, 28}));
  net.add(nn::Conv2d(1, 4, 5, {.stride = 1, .padding = 2}));
  net.add(nn::ReLU());
  net.add(nn::MaxPool2d(2));
  net.add(nn::Conv2d(4, 6, 3));
  net.add(nn::AvgPool2d(3, 2));
  net.add(nn::Flatten());
  net.add(nn::Linear(6 * 5 * 5, 10));
  arena.values().copy_from(random_tensor({arena.size()}, DType::f32, 3, -0.1, 0.1));
  Tape tape;
  Var x = tape.constant(random_tensor({3, 784}, DType::f32, 1, 0.0, 1.0));
  std::vector<Shape> shapes;
  Var h = x;
  for (std::size_t i = 0; i < net.size(); ++i) {
    h = net.at(i).forward(tape, h);
    shapes.push_back(h.shape());
  }
  EXPECT_EQ(shapes[0], (Shape{3, 1, 28, 28}));
  EXPECT_EQ(shapes[1], (Shape{3, 4, 28, 28}));
  EXPECT_EQ(shapes[3], (Shape{3, 4, 14, 14}));
  EXPECT_EQ(shapes[4], (Shape{3, 6, 12, 12}));
  EXPECT_EQ(shapes[5], (Shape{3, 6, 5, 5}));
  EXPECT_EQ(shapes[6], (Shape{3, 150}));
  EXPECT_EQ(shapes[7], (Shape{3, 10}));
  EXPECT_EQ(net.at(3).describe(), "MaxPool2d(2, stride 2)");
  EXPECT_EQ(net.at(5).describe(), "AvgPool2d(3, stride 2)");
  EXPECT_EQ(net.at(0).describe(), "Unflatten([1, 28, 28])");
  EXPECT_EQ(net.at(6).describe(), "Flatten");
  // The flat rows are the images, row-major: Unflatten is a view, Flatten its inverse.
  EXPECT_EQ(net.at(0).forward(tape, x).value().at(28 * 3 + 5), x.value().at(28 * 3 + 5));
  Var back = net.at(6).forward(tape, net.at(0).forward(tape, x));
  EXPECT_TRUE(back.value().same_view(x.value()));
  // Flatten leaves a 2-D input alone.
  EXPECT_EQ(net.at(6).forward(tape, x).id, x.id);
}

TEST(ConvModules, ConfigAndShapeErrors) {
  EXPECT_THROW(nn::Conv2d(0, 4, 3), ConfigError);
  EXPECT_THROW(nn::Conv2d(1, 4, 0), ConfigError);
  EXPECT_THROW(nn::Conv2d(1, 4, 3, {.stride = 0}), ConfigError);
  EXPECT_THROW(nn::Conv2d(1, 4, 3, {.stride = 1, .padding = -1}), ConfigError);
  EXPECT_THROW(nn::MaxPool2d(0), ConfigError);
  EXPECT_THROW(nn::AvgPool2d(2, 0), ConfigError);
  EXPECT_THROW(nn::Unflatten(Shape{}), ConfigError);
  EXPECT_THROW(nn::Unflatten(Shape{1, 2, 3, 4}), ConfigError);
  EXPECT_THROW(nn::Unflatten(Shape{1, 0, 3}), ConfigError);
  Tape tape;
  Var x = tape.constant(Tensor::zeros({2, 780}, DType::f32));
  try {
    nn::Unflatten({1, 28, 28}).forward(tape, x);
    ADD_FAILURE() << "expected ShapeError";
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("[2, 780]"), std::string::npos) << e.what();
  }
  EXPECT_THROW(nn::Flatten().forward(tape, tape.constant(Tensor::zeros({5}, DType::f32))), ShapeError);
  // Too few channels for the layer.
  ParameterArena arena(DType::f32);
  nn::Sequential net(arena);
  net.add(nn::Conv2d(3, 2, 3));
  arena.freeze();
  EXPECT_THROW(net.forward(tape, tape.constant(Tensor::zeros({1, 2, 5, 5}, DType::f32))), ShapeError);
  EXPECT_THROW(nn::Conv2d(1, 2, 3).forward(tape, tape.constant(Tensor::zeros({1, 1, 5, 5}, DType::f32))), ShapeError);
}

// conv -> relu -> maxpool -> conv -> tanh -> flatten -> linear on [B, 2 * 7 * 6] rows,
// cross-entropy. `wide`: 4 x 12 x 12 inputs and 16 channels, enough work per chunk of
// examples for the convolutions to run on several threads.
struct SmallCnn {
  ParameterArena arena;
  nn::Sequential net;
  Tensor x, labels;
  SmallCnn(DType dtype, std::int64_t batch, std::uint64_t seed, bool wide = false) : arena(dtype), net(arena) {
    const std::int64_t c = wide ? 4 : 2, h = wide ? 12 : 7, w = wide ? 12 : 6, k = wide ? 16 : 3;
    net.add(nn::Unflatten({c, h, w}));
    net.add(nn::Conv2d(c, k, 3, {.stride = 1, .padding = 1}));
    net.add(nn::ReLU());
    net.add(nn::MaxPool2d(2));
    net.add(nn::Conv2d(k, k, 2, {.stride = 2, .padding = 1}));
    net.add(nn::Tanh());
    net.add(nn::Flatten());
    const std::int64_t side_h = h / 2 / 2 + 1, side_w = w / 2 / 2 + 1;
    net.add(nn::Linear(k * side_h * side_w, 4));
    arena.values().copy_from(random_tensor({arena.size()}, dtype, seed, -0.8, 0.8));
    x = random_tensor({batch, c * h * w}, dtype, seed + 1, -1.5, 1.5);
    std::vector<std::int32_t> y(static_cast<std::size_t>(batch));
    for (std::size_t i = 0; i < y.size(); ++i) y[i] = static_cast<std::int32_t>((i * 5 + seed) % 4);
    labels = Tensor::from<std::int32_t>({batch}, y);
  }
  Var loss(Tape& tape) { return loss::cross_entropy(net.forward(tape, tape.constant(x)), labels); }
  Tensor gradient() {
    Tape tape;
    Tensor g = Tensor::zeros({arena.size()}, arena.dtype());
    tape.backward(loss(tape), g);
    return g;
  }
  Tensor hvp(const Tensor& v, Tensor* grad = nullptr) {
    Tape tape;
    Tensor hv = Tensor::empty({arena.size()}, arena.dtype());
    Tensor g = Tensor::empty({arena.size()}, arena.dtype());
    tape.hvp(loss(tape), v, hv, g);
    if (grad != nullptr) *grad = g;
    return hv;
  }
  double loss_value() {
    Tape tape;
    return loss(tape).value().item();
  }
};

TEST(ConvModules, CnnGradientMatchesFiniteDifferences) {
  SmallCnn p(DType::f64, 3, 7);
  const std::int64_t n = p.arena.size();
  Tensor g = p.gradient();
  double* theta = p.arena.values().data<double>();
  const double h = 1e-6;
  std::vector<double> numeric(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) {
    const double saved = theta[i];
    theta[i] = saved + h;
    const double up = p.loss_value();
    theta[i] = saved - h;
    const double down = p.loss_value();
    theta[i] = saved;
    numeric[static_cast<std::size_t>(i)] = (up - down) / (2 * h);
  }
  Tensor fd = Tensor::from<double>({n}, numeric);
  EXPECT_LT(testing::relative_difference(g, fd), 1e-6);
  EXPECT_GT(std::sqrt(kernels::sum_squares(g)), 1e-3);
}

TEST(ConvModules, CnnHvpMatchesFiniteDifferencesOfGradients) {
  SmallCnn p(DType::f64, 3, 7);
  const std::int64_t n = p.arena.size();
  for (std::uint64_t seed : {31u, 32u, 33u}) {
    Tensor v = random_tensor({n}, DType::f64, seed);
    Tensor g;
    Tensor hv = p.hvp(v, &g);
    EXPECT_LT(testing::relative_difference(g, p.gradient()), 1e-14);
    const double h = 1e-5;
    Tensor theta0 = p.arena.values().clone();
    kernels::axpby(h, v, 1.0, p.arena.values());
    Tensor up = p.gradient();
    p.arena.values().copy_from(theta0);
    kernels::axpby(-h, v, 1.0, p.arena.values());
    Tensor down = p.gradient();
    p.arena.values().copy_from(theta0);
    Tensor fd = Tensor::empty({n}, DType::f64);
    kernels::axpby(1.0 / (2 * h), up, 0.0, fd);
    kernels::axpby(-1.0 / (2 * h), down, 1.0, fd);
    EXPECT_LT(testing::relative_difference(hv, fd), 1e-6) << "seed " << seed;
    for (std::int64_t i = 0; i < n; ++i) EXPECT_NEAR(hv.at(i), fd.at(i), 1e-6 * (1.0 + std::abs(fd.at(i)))) << i;
    EXPECT_GT(std::sqrt(kernels::sum_squares(hv)), 1e-3);
  }
  // Symmetry of the exact products: v^T H w = w^T H v.
  Tensor v = random_tensor({n}, DType::f64, 41), w = random_tensor({n}, DType::f64, 42);
  const double vhw = kernels::dot(v, p.hvp(w)), whv = kernels::dot(w, p.hvp(v));
  EXPECT_NEAR(vhw, whv, 1e-12 * (1.0 + std::abs(vhw)));
}

TEST(ConvModules, GradientAndHvpDoNotDependOnTheThreadCount) {
  SmallCnn p(DType::f32, 37, 9, true);  // several chunks of examples, the last one short
  Tensor v = random_tensor({p.arena.size()}, DType::f32, 10);
  const int saved = num_threads();
  set_num_threads(1);
  Tensor g1;
  Tensor hv1 = p.hvp(v, &g1);
  set_num_threads(2);
  Tensor g2;
  Tensor hv2 = p.hvp(v, &g2);
  set_num_threads(saved);
  EXPECT_EQ(std::memcmp(g1.raw(), g2.raw(), g1.nbytes()), 0);
  EXPECT_EQ(std::memcmp(hv1.raw(), hv2.raw(), hv1.nbytes()), 0);
  EXPECT_GT(std::sqrt(kernels::sum_squares(hv1)), 0.0);
}

TEST(ConvModules, ReluBeforeMaxPoolIsOneNodeWithTheSameGradientAndHv) {
  // Sequential records Conv2d, ReLU, MaxPool2d as autodiff::conv2d_relu_max_pool2d (float32)
  // or the convolution and relu_max_pool2d (float64); the gradient and Hv of the whole CNN
  // equal those of the separate nodes (DESCENT_CONV_KERNELS=unfused) element for element:
  // float64, and float32 with 37 examples in several chunks (the fused im2col path's
  // per-chunk sums) and 16 channels in the second convolution (oneDNN's where built with it).
  const char* saved = std::getenv("DESCENT_CONV_KERNELS");
  const std::string keep = saved != nullptr ? saved : "";
  for (bool wide : {false, true}) {
    SmallCnn p(wide ? DType::f32 : DType::f64, wide ? 37 : 5, 11, wide);
    Tensor v = random_tensor({p.arena.size()}, p.arena.dtype(), 12);
    unsetenv("DESCENT_CONV_KERNELS");
    {
      Tape tape;
      p.loss(tape);
      std::vector<std::string> names;
      for (std::size_t i = 0; i < tape.size(); ++i) names.emplace_back(tape.node(static_cast<std::int32_t>(i)).name());
      // float32: the convolution too (conv2d_relu_max_pool2d); float64: relu_max_pool2d.
      EXPECT_EQ(std::count(names.begin(), names.end(), "conv2d_relu_max_pool2d"), wide ? 1 : 0);
      EXPECT_EQ(std::count(names.begin(), names.end(), "relu_max_pool2d"), wide ? 0 : 1);
      EXPECT_EQ(std::count(names.begin(), names.end(), "conv2d"), wide ? 1 : 2);
      EXPECT_EQ(std::count(names.begin(), names.end(), "relu"), 0);
      EXPECT_EQ(std::count(names.begin(), names.end(), "max_pool2d"), 0);
    }
    Tensor g_fused;
    Tensor hv_fused = p.hvp(v, &g_fused);
    setenv("DESCENT_CONV_KERNELS", "unfused", 1);
    Tensor g_plain;
    Tensor hv_plain = p.hvp(v, &g_plain);
    if (saved != nullptr) setenv("DESCENT_CONV_KERNELS", keep.c_str(), 1);
    else unsetenv("DESCENT_CONV_KERNELS");
    for (std::int64_t i = 0; i < p.arena.size(); ++i) {
      EXPECT_EQ(g_fused.at(i), g_plain.at(i)) << "wide " << wide << ", gradient " << i;
      EXPECT_EQ(hv_fused.at(i), hv_plain.at(i)) << "wide " << wide << ", Hv " << i;
    }
    EXPECT_GT(std::sqrt(kernels::sum_squares(hv_fused)), 0.0);
  }
}

}  // namespace
}  // namespace descent

namespace descent {
namespace {

TEST(ConvInitialization, EverySchemeInitializesAConvWeight) {
  // A conv kernel [C_out, C_in, k, k] is drawn as a [C_out, C_in k^2] matrix.
  for (const char* scheme : {"he_uniform", "glorot_uniform", "orthogonal", "sparse", "fan_in_uniform"}) {
    ParameterArena arena(DType::f64);
    nn::Sequential net(arena);
    net.add(nn::Conv2d(2, 4, 3));
    arena.freeze();
    nn::InitSpec spec;
    spec.weights = init::parse_scheme(scheme);
    spec.options = init::default_options(spec.weights);
    spec.options.sparse_k = 5;
    ASSERT_NO_THROW(nn::initialize(arena, spec)) << scheme;
    const Tensor w = arena.value(arena.find("layers.0.weight"));
    double max_abs = 0.0;
    for (std::int64_t i = 0; i < w.numel(); ++i) max_abs = std::max(max_abs, std::abs(w.at(i)));
    EXPECT_GT(max_abs, 0.0) << scheme;
    if (std::string(scheme) == "he_uniform") {
      EXPECT_LE(max_abs, std::sqrt(6.0 / 18.0)) << scheme;  // fan_in = 2 * 9
    }
  }
}

}  // namespace
}  // namespace descent
