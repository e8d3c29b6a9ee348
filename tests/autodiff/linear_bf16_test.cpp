// Mixed precision (model.dtype = "bf16") on a small MLP: the gradient with the dense layers'
// products in bf16 against the float32 gradient of the same parameters and batch.
//
// Bound: every product input is rounded to bf16 (relative error <= u = 2^-8, since bf16 keeps
// 8 significant bits), so each product term carries a relative error <= 2u + u^2, and the
// error passes through the three layers' forward and backward products: a relative error in
// the gradient of a few times u in norm, well under 8u = 2^-5. Float32 alone (no bf16) would
// be ~2^-20: a gradient closer to float32 than 2^-12 means the bf16 path did not run.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <vector>

#include "descent/autodiff/tape.hpp"
#include "descent/nn/build.hpp"
#include "descent/nn/model_config.hpp"
#include "descent/nn/initialize.hpp"
#include "descent/nn/module.hpp"
#include "descent/optim/optimizer.hpp"
#include "descent/tensor/arena.hpp"
#include "descent/tensor/precision.hpp"
#include "descent/train/step.hpp"

namespace descent {
namespace {

struct Result {
  std::vector<float> grad;
  double loss = 0;
};

Result gradient(bool bf16, bool emulate) {
  std::unique_ptr<precision::Scope> scope;
  if (bf16) scope = std::make_unique<precision::Scope>(precision::Products::bf16, emulate);
  ParameterArena arena{DType::f32};
  nn::Sequential net = nn::mlp(arena, {40, 64, 32, 5}, nn::Activation::tanh);
  nn::initialize(arena, {.weights = init::Scheme::glorot_uniform, .seed = 5});
  std::unique_ptr<optim::Optimizer> opt = optim::make_optimizer({.name = "sgd", .lr = 0.1}, nullptr);
  autodiff::Tape tape;
  Tensor x = Tensor::empty({48, 40}, DType::f32), y = Tensor::empty({48}, DType::i32);
  for (std::int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = std::sin(0.37f * static_cast<float>(i + 1));
  for (std::int64_t i = 0; i < 48; ++i) y.data<std::int32_t>()[i] = static_cast<std::int32_t>((i * 7) % 5);
  const train::Gradient g = train::compute_gradient(net, arena, *opt, tape, x, y, 0, false);
  const Tensor& gr = arena.grads();
  Result r;
  r.grad.assign(gr.data<float>(), gr.data<float>() + gr.numel());
  r.loss = g.loss_value;
  return r;
}

double relative_distance(const std::vector<float>& a, const std::vector<float>& b) {
  double d = 0, n = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    d += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
    n += static_cast<double>(b[i]) * b[i];
  }
  return std::sqrt(d / n);
}

void expect_close_to_float32(bool emulate) {
  const Result f32 = gradient(false, false);
  const Result b16 = gradient(true, emulate);
  ASSERT_EQ(f32.grad.size(), b16.grad.size());
  const double rel = relative_distance(b16.grad, f32.grad);
  EXPECT_LT(rel, 0x1p-5) << "bf16 gradient too far from float32";
  EXPECT_GT(rel, 0x1p-12) << "bf16 gradient equals float32's: the bf16 products did not run";
  EXPECT_NEAR(b16.loss, f32.loss, 0x1p-5 * std::abs(f32.loss));
  // the setting ended with its scope: float32 again, bit for bit
  const Result again = gradient(false, false);
  EXPECT_EQ(again.grad, f32.grad);
}

TEST(LinearBf16, NativeGradientIsFloat32sWithinBf16Error) {
  if (!precision::cpu_has_bf16()) GTEST_SKIP() << "this CPU has no bf16 instructions";
  expect_close_to_float32(false);
}

TEST(LinearBf16, EmulatedGradientIsFloat32sWithinBf16Error) { expect_close_to_float32(true); }

TEST(LinearBf16, NativeAndEmulatedAgreeToFloat32Rounding) {
  // the same bf16 inputs, only the order of the float32 sums differs
  if (!precision::cpu_has_bf16()) GTEST_SKIP() << "this CPU has no bf16 instructions";
  const Result native = gradient(true, false);
  const Result emulated = gradient(true, true);
  EXPECT_LT(relative_distance(native.grad, emulated.grad), 1e-5);
}

// An LSTM(16) over 6 steps of 5 features, then a linear layer: its gate products go through
// autodiff::linear too, so they run in bf16; the gradient through 6 steps of recurrence stays
// within the same bound of float32's.
std::vector<float> lstm_gradient(bool bf16) {
  std::unique_ptr<precision::Scope> scope;
  if (bf16) scope = std::make_unique<precision::Scope>(precision::Products::bf16, false);
  nn::ModelConfig mc;
  mc.type = "sequential";
  nn::LayerConfig lstm, out;
  lstm.type = "lstm";
  lstm.units = 16;
  lstm.input_size = 5;
  out.type = "linear";
  mc.layers = {lstm, out};
  nn::Model m = nn::build_model(mc, 30, 3, 4);
  nn::initialize(*m.arena, {.weights = init::Scheme::glorot_uniform, .seed = 4});
  std::unique_ptr<optim::Optimizer> opt = optim::make_optimizer({.name = "sgd", .lr = 0.1}, nullptr);
  autodiff::Tape tape;
  Tensor x = Tensor::empty({24, 30}, DType::f32), y = Tensor::empty({24}, DType::i32);
  for (std::int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = std::cos(0.29f * static_cast<float>(i + 1));
  for (std::int64_t i = 0; i < 24; ++i) y.data<std::int32_t>()[i] = static_cast<std::int32_t>(i % 3);
  train::compute_gradient(*m.net, *m.arena, *opt, tape, x, y, 0, false);
  const Tensor& gr = m.arena->grads();
  return {gr.data<float>(), gr.data<float>() + gr.numel()};
}

TEST(LinearBf16, LstmGradientIsFloat32sWithinBf16Error) {
  const double rel = relative_distance(lstm_gradient(true), lstm_gradient(false));
  EXPECT_LT(rel, 0x1p-5);
  EXPECT_GT(rel, 0x1p-12) << "the LSTM's products did not run in bf16";
}

std::vector<double> float64_forward(bool bf16) {
  std::unique_ptr<precision::Scope> scope;
  if (bf16) scope = std::make_unique<precision::Scope>(precision::Products::bf16, false);
  ParameterArena arena{DType::f64};
  nn::Sequential net = nn::mlp(arena, {40, 16, 3}, nn::Activation::relu);
  nn::initialize(arena, {.weights = init::Scheme::glorot_uniform, .seed = 1});
  autodiff::Tape tape;
  Tensor x = Tensor::empty({4, 40}, DType::f64);
  for (std::int64_t i = 0; i < x.numel(); ++i) x.data<double>()[i] = std::sin(0.1 * static_cast<double>(i)) + 1.0 / 3.0;
  const Tensor& out = net.forward(tape, tape.constant(x)).value();
  return {out.data<double>(), out.data<double>() + out.numel()};
}

TEST(LinearBf16, Float64ModelsIgnoreTheSetting) { EXPECT_EQ(float64_forward(true), float64_forward(false)); }

}  // namespace
}  // namespace descent
