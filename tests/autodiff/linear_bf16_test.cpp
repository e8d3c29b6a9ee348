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
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "descent/autodiff/linear_relu.hpp"
#include "descent/autodiff/ops.hpp"
#include "descent/autodiff/tape.hpp"
#include "descent/loss/loss.hpp"
#include "descent/nn/build.hpp"
#include "descent/nn/model_config.hpp"
#include "descent/nn/initialize.hpp"
#include "descent/nn/module.hpp"
#include "descent/optim/optimizer.hpp"
#include "descent/tensor/arena.hpp"
#include "descent/tensor/precision.hpp"
#include "descent/train/step.hpp"
#include "descent/error.hpp"
#include "../../src/autodiff/linear_bf16.hpp"
#include "../../src/tensor/matmul_bf16.hpp"
#include "../../src/train/step_bf16.hpp"
#include "support/distance.hpp"

namespace descent {
namespace {

struct Result {
  std::vector<float> grad;
  double loss = 0;
};

Result gradient(bool bf16, bool emulate, nn::Activation act = nn::Activation::tanh) {
  std::unique_ptr<precision::Scope> scope;
  if (bf16) scope = std::make_unique<precision::Scope>(precision::Products::bf16, emulate);
  ParameterArena arena{DType::f32};
  nn::Sequential net = nn::mlp(arena, {40, 64, 32, 5}, act);
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

using testing::relative_distance;

void expect_close_to_float32(bool emulate, nn::Activation act = nn::Activation::tanh) {
  const Result f32 = gradient(false, false, act);
  const Result b16 = gradient(true, emulate, act);
  ASSERT_EQ(f32.grad.size(), b16.grad.size());
  const double rel = relative_distance(b16.grad, f32.grad);
  EXPECT_LT(rel, 0x1p-5) << "bf16 gradient too far from float32";
  EXPECT_GT(rel, 0x1p-12) << "bf16 gradient equals float32's: the bf16 products did not run";
  EXPECT_NEAR(b16.loss, f32.loss, 0x1p-5 * std::abs(f32.loss));
  // the setting ended with its scope: float32 again, bit for bit
  const Result again = gradient(false, false, act);
  EXPECT_EQ(again.grad, f32.grad);
}

// ReLU hidden layers: nn::Sequential makes each Linear + ReLU one fused bf16 node
// (autodiff/linear_relu.hpp). Its gradient against the same network recorded unfused
// (autodiff::linear then autodiff::relu, each product in bf16): the same bf16 inputs, the same
// ReLU masks, only the order of the bias gradient's float32 sums differs. (Against float32
// this ReLU network's gradient moves by more than 2^-5: masks near zero flip.)
std::vector<float> relu_mlp_gradient(bool emulate, bool fused) {
  precision::Scope scope(precision::Products::bf16, emulate);
  ParameterArena arena{DType::f32};
  nn::Sequential net = nn::mlp(arena, {40, 64, 32, 5}, nn::Activation::relu);
  nn::initialize(arena, {.weights = init::Scheme::glorot_uniform, .seed = 5});
  Tensor x = Tensor::empty({48, 40}, DType::f32), y = Tensor::empty({48}, DType::i32);
  for (std::int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = std::sin(0.37f * static_cast<float>(i + 1));
  for (std::int64_t i = 0; i < 48; ++i) y.data<std::int32_t>()[i] = static_cast<std::int32_t>((i * 7) % 5);
  autodiff::Tape tape;
  autodiff::Var h = tape.constant(x);
  if (fused) {
    h = net.forward(tape, h);
    EXPECT_EQ(tape.size(), 1u + 6u + 3u) << "input, 6 parameters, 2 fused nodes and the last linear";
  } else {
    for (std::size_t i = 0; i < net.size(); ++i) {
      if (auto* lin = dynamic_cast<nn::Linear*>(&net.at(i))) {
        h = autodiff::linear(h, tape.param(arena, lin->weight()), tape.param(arena, lin->bias()));
      } else {
        h = autodiff::relu(h);
      }
    }
  }
  tape.backward(loss::cross_entropy(h, y));
  const Tensor& gr = arena.grads();
  return {gr.data<float>(), gr.data<float>() + gr.numel()};
}

TEST(LinearBf16, FusedReluMlpGradientIsTheUnfusedBf16Ones) {
  for (bool emulate : {false, true}) {
    if (!emulate && !precision::cpu_has_bf16()) continue;
    const std::vector<float> fused = relu_mlp_gradient(emulate, true);
    const std::vector<float> unfused = relu_mlp_gradient(emulate, false);
    EXPECT_LT(relative_distance(fused, unfused), 1e-6) << (emulate ? "emulated" : "native");
  }
}

// ---- the input batch given in bf16 (data::Split::gather's x16, train/step_bf16.hpp) ----

// x [48, 40] f32 with values sin(a (i + 1)), y [48] i32.
Tensor input_batch(float a) {
  Tensor x = Tensor::empty({48, 40}, DType::f32);
  for (std::int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = std::sin(a * static_cast<float>(i + 1));
  return x;
}

kernels::bf16::Buffer bits_of(const Tensor& x) {
  kernels::bf16::Buffer b;
  kernels::bf16::convert(x.data<float>(), x.numel(), b.resize(x.numel()));
  return b;
}

struct TrainRun {
  ParameterArena arena{DType::f32};
  nn::Sequential net;
  std::unique_ptr<optim::Optimizer> opt;
  autodiff::Tape tape;
  explicit TrainRun(nn::Activation act) : net(nn::mlp(arena, {40, 64, 32, 5}, act)) {
    nn::initialize(arena, {.weights = init::Scheme::glorot_uniform, .seed = 5});
    opt = optim::make_optimizer({.name = "momentum", .lr = 0.05, .momentum = 0.9}, nullptr);
  }
  std::vector<float> values() { return {arena.values().data<float>(), arena.values().data<float>() + arena.size()}; }
  std::vector<float> grads() { return {arena.grads().data<float>(), arena.grads().data<float>() + arena.size()}; }
};

Tensor labels() {
  Tensor y = Tensor::empty({48}, DType::i32);
  for (std::int64_t i = 0; i < 48; ++i) y.data<std::int32_t>()[i] = static_cast<std::int32_t>((i * 7) % 5);
  return y;
}

// Four momentum steps with the batch's bf16 bits given (the first layer reads them) against the
// same steps converting the batch in the first product: the same losses, parameters and
// Hessian-vector product bit for bit; for a first layer fused with ReLU and a plain linear one
// (tanh), native and emulated products.
TEST(LinearBf16, InputBatchGivenInBf16TrainsBitForBitAsConvertingIt) {
  for (bool emulate : {false, true}) {
    if (!emulate && !precision::cpu_has_bf16()) continue;
    precision::Scope scope(precision::Products::bf16, emulate);
    for (nn::Activation act : {nn::Activation::relu, nn::Activation::tanh}) {
      TrainRun a(act), b(act);
      const Tensor y = labels();
      for (int k = 0; k < 4; ++k) {
        const Tensor x = input_batch(0.37f + 0.1f * static_cast<float>(k));
        const kernels::bf16::Buffer x16 = bits_of(x);
        const double la = train::train_step(a.net, a.arena, *a.opt, a.tape, x, nullptr, y, k);
        const double lb = train::train_step(b.net, b.arena, *b.opt, b.tape, x, &x16, y, k);
        ASSERT_EQ(la, lb) << "step " << k << (emulate ? " emulated" : " native");
        ASSERT_EQ(a.values(), b.values()) << "step " << k << (emulate ? " emulated" : " native");
      }
      const Tensor x = input_batch(0.9f);
      const kernels::bf16::Buffer x16 = bits_of(x);
      const train::Gradient ga = train::compute_gradient(a.net, a.arena, *a.opt, a.tape, x, nullptr, y, 4);
      const train::Gradient gb = train::compute_gradient(b.net, b.arena, *b.opt, b.tape, x, &x16, y, 4);
      EXPECT_EQ(std::string(b.tape.node(0).name()), "constant_bf16");
      EXPECT_EQ(a.grads(), b.grads());
      Tensor v = Tensor::empty({a.arena.size()}, DType::f32);
      for (std::int64_t i = 0; i < v.numel(); ++i) v.data<float>()[i] = std::cos(0.3f * static_cast<float>(i));
      Tensor hva = Tensor::empty({a.arena.size()}, DType::f32), hvb = Tensor::empty({a.arena.size()}, DType::f32);
      a.tape.hvp_at_gradient(ga.loss, v, hva);
      b.tape.hvp_at_gradient(gb.loss, v, hvb);
      EXPECT_EQ(std::memcmp(hva.data<float>(), hvb.data<float>(), static_cast<std::size_t>(hva.numel()) * 4), 0);
    }
  }
}

// The bits given are what the first product reads: x with the bits of another batch x2 gives
// x2's loss and gradient exactly (and not x's); with float32 products the bits are ignored.
// A short buffer is refused.
TEST(LinearBf16, InputBatchBf16BitsAreWhatTheFirstProductReads) {
  const Tensor x = input_batch(0.37f), x2 = input_batch(0.81f), y = labels();
  const kernels::bf16::Buffer bits2 = bits_of(x2);
  for (bool emulate : {false, true}) {
    if (!emulate && !precision::cpu_has_bf16()) continue;
    precision::Scope scope(precision::Products::bf16, emulate);
    TrainRun a(nn::Activation::relu), b(nn::Activation::relu), c(nn::Activation::relu);
    const double l2 = train::compute_gradient(a.net, a.arena, *a.opt, a.tape, x2, y, 0, false).loss_value;
    const double lx = train::compute_gradient(b.net, b.arena, *b.opt, b.tape, x, &bits2, y, 0, false).loss_value;
    const double l1 = train::compute_gradient(c.net, c.arena, *c.opt, c.tape, x, y, 0, false).loss_value;
    EXPECT_EQ(lx, l2);
    EXPECT_NE(lx, l1);
    EXPECT_EQ(a.grads(), b.grads());
  }
  {
    precision::Scope scope(precision::Products::fp32, false);
    TrainRun a(nn::Activation::relu), b(nn::Activation::relu);
    const double l1 = train::compute_gradient(a.net, a.arena, *a.opt, a.tape, x, y, 0, false).loss_value;
    const double lx = train::compute_gradient(b.net, b.arena, *b.opt, b.tape, x, &bits2, y, 0, false).loss_value;
    EXPECT_EQ(lx, l1);
  }
  autodiff::Tape t;
  kernels::bf16::Buffer short_bits;
  short_bits.resize(x.numel() - 1);
  EXPECT_THROW(autodiff::constant_bf16(t, x, short_bits), ShapeError);
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

// ---- the fused linear + ReLU node against sums in double of the bf16-rounded inputs ----

float to_float(std::uint16_t h) {
  const std::uint32_t u = static_cast<std::uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
// round to nearest even, from the definition (finite inputs): the nearer of the truncation and
// the next bf16 away from zero; a tie to the even one
double bf16_round(double x) {
  const float f = static_cast<float>(x);
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  const std::uint16_t lo = static_cast<std::uint16_t>(u >> 16);
  const std::uint16_t hi = static_cast<std::uint16_t>(lo + 1);
  const double dl = std::abs(x - to_float(lo)), dh = std::abs(to_float(hi) - x);
  if (dl < dh) return to_float(lo);
  if (dh < dl) return to_float(hi);
  return (lo & 1) == 0 ? to_float(lo) : to_float(hi);
}

Tensor filled(std::int64_t r, std::int64_t c, float scale, float shift) {
  Tensor t = Tensor::empty({r, c}, DType::f32);
  for (std::int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = std::sin(scale * static_cast<float>(i + 1)) + shift;
  return t;
}

// h = relu(x w^T + b) for one fused node: h[i, j] against bf16(relu(sum_l bf16(x) bf16(w) + b))
// in double; the products accumulate in float32 (k + 2 roundings of the terms' absolute sum)
// before the one rounding to bf16 (half a unit in the last place, 2^-9 relative).
void expect_forward(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& h) {
  const std::int64_t rows = x.dim(0), in = x.dim(1), out = w.dim(0);
  int positive = 0;
  for (std::int64_t i = 0; i < rows; ++i) {
    for (std::int64_t j = 0; j < out; ++j) {
      double s = b.data<float>()[j], abs_sum = std::abs(s);
      for (std::int64_t l = 0; l < in; ++l) {
        const double t = bf16_round(x.data<float>()[i * in + l]) * bf16_round(w.data<float>()[j * in + l]);
        s += t;
        abs_sum += std::abs(t);
      }
      const double want = bf16_round(std::max(s, 0.0));
      const double tol = 0x1p-8 * std::abs(want) + static_cast<double>(in + 2) * 0x1p-24 * abs_sum;
      const double got = h.data<float>()[i * out + j];
      ASSERT_NEAR(got, want, tol) << "h at " << i << "," << j;
      ASSERT_EQ(got, bf16_round(got)) << "h is not a bf16 value at " << i << "," << j;
      positive += got > 0;
    }
  }
  EXPECT_GT(positive, rows * out / 5) << "the test should see both sides of the ReLU";
  EXPECT_LT(positive, rows * out * 4 / 5);
}

TEST(LinearReluBf16, TwoFusedLayersMatchSumsInDoubleOfTheRoundedInputs) {
  if (!precision::cpu_has_bf16()) GTEST_SKIP() << "this CPU has no bf16 instructions";
  for (bool emulate : {false, true}) {
    precision::Scope scope(precision::Products::bf16, emulate);
    const std::int64_t rows = 37, in = 29, mid = 23, out = 19;
    Tensor xv = filled(rows, in, 0.37f, 0.1f), w1v = filled(mid, in, 0.11f, 0.0f), w2v = filled(out, mid, 0.23f, 0.0f);
    Tensor b1v = filled(1, mid, 0.7f, 0.0f).reshape({mid}), b2v = filled(1, out, 0.3f, 0.0f).reshape({out});
    Tensor cv = filled(rows, out, 0.05f, 0.0f);  // loss = sum(h2 * c): d loss / d h2 = c
    autodiff::Tape tape;
    autodiff::Var x = tape.variable(xv), w1 = tape.variable(w1v), b1 = tape.variable(b1v);
    autodiff::Var w2 = tape.variable(w2v), b2 = tape.variable(b2v);
    ASSERT_TRUE(autodiff::fuses_linear_relu(x));
    const std::size_t before = tape.size();
    autodiff::Var h1 = autodiff::linear_relu(x, w1, b1);
    autodiff::Var h2 = autodiff::linear_relu(h1, w2, b2);
    EXPECT_EQ(tape.size(), before + 2) << "one node per fused layer";
    expect_forward(xv, w1v, b1v, h1.value());
    expect_forward(h1.value(), w2v, b2v, h2.value());  // the second layer reads the first's bf16 output
    if (::testing::Test::HasFatalFailure()) return;
    tape.backward(autodiff::sum(autodiff::mul(h2, tape.constant(cv))));
    // backward of layer 2: gy = bf16(c where h2 > 0); gw2 = gy^T bf16(h1), gb2 = column sums
    // of c where h2 > 0 (float32 sums), gh1 = gy bf16(w2); layer 1 the same with gy1 from gh1
    auto check_layer = [&](const Tensor& in_v, const Tensor& w_v, const Tensor& h_v, const std::vector<double>& g,
                           autodiff::Var wv, autodiff::Var bv, autodiff::Var xin, std::vector<double>* gx_out) {
      const std::int64_t n_in = in_v.dim(1), n_out = w_v.dim(0);
      std::vector<double> gy(static_cast<std::size_t>(rows * n_out)), gy_exact(gy.size());
      for (std::int64_t i = 0; i < rows * n_out; ++i) {
        gy_exact[i] = h_v.data<float>()[i] > 0 ? g[i] : 0.0;
        gy[i] = bf16_round(static_cast<float>(gy_exact[i]));
      }
      const Tensor& gw = tape.grad(wv);
      const Tensor& gb = tape.grad(bv);
      for (std::int64_t o = 0; o < n_out; ++o) {
        double sb = 0, ab = 0;
        for (std::int64_t i = 0; i < rows; ++i) {
          sb += gy_exact[i * n_out + o];
          ab += std::abs(gy_exact[i * n_out + o]);
        }
        ASSERT_NEAR(gb.data<float>()[o], sb, static_cast<double>(rows + 2) * 0x1p-24 * ab + 1e-30) << "gb at " << o;
        for (std::int64_t l = 0; l < n_in; ++l) {
          double s = 0, a = 0;
          for (std::int64_t i = 0; i < rows; ++i) {
            const double t = gy[i * n_out + o] * bf16_round(in_v.data<float>()[i * n_in + l]);
            s += t;
            a += std::abs(t);
          }
          ASSERT_NEAR(gw.data<float>()[o * n_in + l], s, static_cast<double>(rows + 2) * 0x1p-24 * a + 1e-30)
              << "gw at " << o << "," << l;
        }
      }
      const Tensor& gx = tape.grad(xin);
      gx_out->assign(static_cast<std::size_t>(rows * n_in), 0.0);
      for (std::int64_t i = 0; i < rows; ++i) {
        for (std::int64_t l = 0; l < n_in; ++l) {
          double s = 0, a = 0;
          for (std::int64_t o = 0; o < n_out; ++o) {
            const double t = gy[i * n_out + o] * bf16_round(w_v.data<float>()[o * n_in + l]);
            s += t;
            a += std::abs(t);
          }
          ASSERT_NEAR(gx.data<float>()[i * n_in + l], s, static_cast<double>(n_out + 2) * 0x1p-24 * a + 1e-30)
              << "gx at " << i << "," << l;
          (*gx_out)[i * n_in + l] = gx.data<float>()[i * n_in + l];
        }
      }
    };
    std::vector<double> g2(cv.data<float>(), cv.data<float>() + cv.numel()), g1, g0;
    check_layer(h1.value(), w2v, h2.value(), g2, w2, b2, h1, &g1);
    if (::testing::Test::HasFatalFailure()) return;
    check_layer(xv, w1v, h1.value(), g1, w1, b1, x, &g0);
    if (::testing::Test::HasFatalFailure()) return;
  }
}

TEST(LinearReluBf16, WithoutBf16ItIsLinearThenReluBitForBit) {
  Tensor xv = filled(9, 7, 0.37f, 0.1f), wv = filled(5, 7, 0.11f, 0.0f), bv = filled(1, 5, 0.7f, 0.0f).reshape({5});
  autodiff::Tape a, b;
  autodiff::Var ha = autodiff::linear_relu(a.constant(xv), a.constant(wv), a.constant(bv));
  autodiff::Var hb = autodiff::relu(autodiff::linear(b.constant(xv), b.constant(wv), b.constant(bv)));
  EXPECT_EQ(a.size(), b.size());
  const Tensor& va = ha.value();
  const Tensor& vb = hb.value();
  EXPECT_EQ(std::vector<float>(va.data<float>(), va.data<float>() + va.numel()),
            std::vector<float>(vb.data<float>(), vb.data<float>() + vb.numel()));
}

// Hessian-vector products through the fused nodes (their tangent rules, float32) against the
// float32 network's, same weights, batch and direction.
std::vector<float> relu_mlp_hvp(bool bf16) {
  std::unique_ptr<precision::Scope> scope;
  if (bf16) scope = std::make_unique<precision::Scope>(precision::Products::bf16, !precision::cpu_has_bf16());
  ParameterArena arena{DType::f32};
  nn::Sequential net = nn::mlp(arena, {40, 32, 24, 5}, nn::Activation::relu);
  nn::initialize(arena, {.weights = init::Scheme::glorot_uniform, .seed = 7});
  Tensor x = filled(48, 40, 0.37f, 0.0f), y = Tensor::empty({48}, DType::i32);
  for (std::int64_t i = 0; i < 48; ++i) y.data<std::int32_t>()[i] = static_cast<std::int32_t>((i * 7) % 5);
  autodiff::Tape tape;
  autodiff::Var loss = loss::cross_entropy(net.forward(tape, tape.constant(x)), y);
  Tensor v = Tensor::empty({arena.size()}, DType::f32), hv = Tensor::empty({arena.size()}, DType::f32);
  for (std::int64_t i = 0; i < v.numel(); ++i) v.data<float>()[i] = std::cos(0.13f * static_cast<float>(i));
  tape.hvp(loss, v, hv);
  return {hv.data<float>(), hv.data<float>() + hv.numel()};
}

TEST(LinearReluBf16, HessianVectorProductIsFloat32sWithinBf16Error) {
  const double rel = relative_distance(relu_mlp_hvp(true), relu_mlp_hvp(false));
  EXPECT_LT(rel, 0x1p-4);  // 0.022 here; 1.7 with the tangents' ReLU mask left out
  EXPECT_GT(rel, 0.0) << "the fused bf16 forward did not run";
}

TEST(LinearBf16, Float64ModelsIgnoreTheSetting) { EXPECT_EQ(float64_forward(true), float64_forward(false)); }

}  // namespace
}  // namespace descent
