// The training step's two passes removed (session 11): Tape::backward_overwrite (no pass
// zeroing the gradient before the sweep) and train::backward_and_step (each parameter updated
// the moment the sweep has its gradient, Optimizer::begin_step / step_parameter / end_step),
// against the path they replace: arena.zero_grad(), Tape::backward accumulating into the
// zeros, then Optimizer::step over the whole arena. Gradients, parameters, optimizer state and
// Polyak averages must be the same bit for bit, for every optimizer of the registry, on a model
// with a weight used twice, a parameter the loss does not reach and a parameter the tape
// never records, in float64 and float32, and on the bf16 products path. The unreached
// parameters' gradients are checked against 0 and the twice-used weight's against central
// differences (an independent computation, not the old path).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "descent/autodiff/ops.hpp"
#include "descent/autodiff/tape.hpp"
#include "descent/error.hpp"
#include "descent/init/rng.hpp"
#include "descent/loss/loss.hpp"
#include "descent/nn/initialize.hpp"
#include "descent/nn/module.hpp"
#include "descent/optim/optimizer.hpp"
#include "descent/optim/registry.hpp"
#include "descent/tensor/arena.hpp"
#include "descent/tensor/precision.hpp"
#include "descent/train/step.hpp"
#include "../../src/autodiff/linear_bf16.hpp"
#include "../../src/tensor/matmul_bf16.hpp"
#include "../../src/train/step_bf16.hpp"

namespace descent {
namespace {

using autodiff::Tape;
using autodiff::Var;

constexpr std::int64_t kIn = 7, kHidden = 300, kOut = 5, kBatch = 24;

// out = linear(tanh(linear(tanh(linear(relu(linear(x, W1, b1)), W2, b2)), W2, b2)), W3, b3):
// W2 (square, 90,000 values: large enough for the update's parallel chunks) and b2 used twice;
// "unused" recorded on the tape but not on the loss's path; "never" in the arena but never
// recorded. "never" sits between the used ones so that its slice is not at an end.
class Shared final : public nn::Module {
 public:
  explicit Shared(ParameterArena& a) : arena_(a) {
    w1_ = a.add("w1", {kHidden, kIn});
    b1_ = a.add("b1", {kHidden});
    never_ = a.add("never", {3, 2});
    w2_ = a.add("w2", {kHidden, kHidden});
    b2_ = a.add("b2", {kHidden});
    unused_ = a.add("unused", {4});
    w3_ = a.add("w3", {kOut, kHidden});
    b3_ = a.add("b3", {kOut});
  }
  Var forward(Tape& t, Var x) override {
    Var h = autodiff::relu(autodiff::linear(x, t.param(arena_, w1_), t.param(arena_, b1_)));
    (void)t.param(arena_, unused_);  // recorded, never read
    const Var w2 = t.param(arena_, w2_), b2 = t.param(arena_, b2_);
    h = autodiff::tanh(autodiff::linear(h, w2, b2));
    h = autodiff::tanh(autodiff::linear(h, w2, b2));
    return autodiff::linear(h, t.param(arena_, w3_), t.param(arena_, b3_));
  }
  std::string describe() const override { return "Shared"; }
  ParamId w2() const { return w2_; }
  ParamId unused() const { return unused_; }
  ParamId never() const { return never_; }

 private:
  ParameterArena& arena_;
  ParamId w1_, b1_, never_, w2_, b2_, unused_, w3_, b3_;
};

void fill_uniform(const Tensor& t, Rng& rng, double lo, double hi) {
  for (std::int64_t i = 0; i < t.numel(); ++i) {
    if (t.dtype() == DType::f64) {
      t.data<double>()[i] = rng.uniform(lo, hi);
    } else {
      t.data<float>()[i] = static_cast<float>(rng.uniform(lo, hi));
    }
  }
}

struct Batch {
  Tensor x, y;
  Batch(DType dtype, std::uint64_t seed) : x(Tensor::empty({kBatch, kIn}, dtype)), y(Tensor::empty({kBatch}, DType::i32)) {
    Rng rng(seed);
    fill_uniform(x, rng, -2.0, 2.0);
    for (std::int64_t i = 0; i < kBatch; ++i) y.data<std::int32_t>()[i] = static_cast<std::int32_t>((i * 3 + seed) % kOut);
  }
};

struct Model {
  ParameterArena arena;
  Shared net;
  Tape tape;
  std::unique_ptr<optim::Optimizer> opt;
  explicit Model(DType dtype) : arena(dtype), net(arena) {
    Rng rng(3);
    fill_uniform(arena.values(), rng, -0.3, 0.3);
  }
};

// The first index where the bytes of a and b differ, -1 when none (memcmp per element: +0 and
// -0 differ, NaNs compare by their bits).
std::int64_t first_difference(const Tensor& a, const Tensor& b) {
  if (a.numel() != b.numel() || a.dtype() != b.dtype()) return 0;
  const std::size_t e = dtype_size(a.dtype());
  const auto* pa = static_cast<const unsigned char*>(a.raw());
  const auto* pb = static_cast<const unsigned char*>(b.raw());
  for (std::int64_t i = 0; i < a.numel(); ++i) {
    if (std::memcmp(pa + i * e, pb + i * e, e) != 0) return i;
  }
  return -1;
}

#define EXPECT_SAME_BITS(a, b, what)                                                                          \
  do {                                                                                                        \
    const std::int64_t at_ = first_difference(a, b);                                                          \
    EXPECT_EQ(at_, -1) << (what) << ": first difference at " << at_ << ": "                                   \
                       << (at_ >= 0 && at_ < (a).numel() ? (a).at(at_) : 0.0) << " vs "                       \
                       << (at_ >= 0 && at_ < (b).numel() ? (b).at(at_) : 0.0);                                \
  } while (0)

// The old step: zero the gradient, accumulate the sweep into it, one update over the arena.
double unfused_step(Model& m, const Tensor& x, const kernels::bf16::Buffer* x16, const Tensor& y, std::int64_t k) {
  m.tape.clear();
  m.arena.zero_grad();
  m.opt->prepare(m.arena, k);
  const Var in = x16 != nullptr ? autodiff::constant_bf16(m.tape, x, *x16) : m.tape.constant(x);
  const Var loss = loss::cross_entropy(m.net.forward(m.tape, in), y);
  m.tape.backward(loss);
  m.opt->step(m.arena, k);
  return loss.value().item();
}

// train::set_fused_update for a scope.
struct FusedUpdate {
  bool before = train::fused_update();
  explicit FusedUpdate(bool on) { train::set_fused_update(on); }
  ~FusedUpdate() { train::set_fused_update(before); }
};

// ---- Tape::backward_overwrite ---------------------------------------------------------------

TEST(BackwardOverwrite, EqualsZeroingAndAccumulatingBitForBit) {
  for (DType dtype : {DType::f64, DType::f32}) {
    Model m(dtype);
    const Batch b(dtype, 1);
    // One parameter more, recorded after the loss (the sweep never reaches its leaf).
    const Var loss = loss::cross_entropy(m.net.forward(m.tape, m.tape.constant(b.x)), b.y);
    Tensor accumulated = Tensor::zeros({m.arena.size()}, dtype);
    m.tape.backward(loss, accumulated);

    // The sink starts as garbage (NaN): every value must be written.
    Tensor overwritten = Tensor::full({m.arena.size()}, dtype, std::numeric_limits<double>::quiet_NaN());
    std::vector<int> reported;
    bool unused_zero_when_reported = false;
    m.tape.set_param_ready([&](ParamId id) {
      reported.push_back(id.index);
      if (id == m.net.unused()) {
        const Tensor g = m.arena.slice(overwritten, id);
        unused_zero_when_reported = g.at(0) == 0.0 && g.at(3) == 0.0;
      }
    });
    m.tape.backward_overwrite(loss, overwritten);
    m.tape.set_param_ready({});
    EXPECT_SAME_BITS(overwritten, accumulated, dtype_name(dtype));
    EXPECT_TRUE(unused_zero_when_reported) << "the unreached parameter's zeros come before param_ready reports it";
    EXPECT_EQ(reported.size(), m.arena.count() - 1) << "every recorded parameter once, 'never' not";
    for (ParamId id : {m.net.unused(), m.net.never()}) {
      const Tensor g = m.arena.slice(overwritten, id);
      for (std::int64_t i = 0; i < g.numel(); ++i) EXPECT_EQ(g.at(i), 0.0) << m.arena.entry(id).name;
    }
    // The tape's view of the gradient is the sink's.
    EXPECT_EQ(m.tape.grad(m.tape.param(m.arena, m.net.unused())).raw(), m.arena.slice(overwritten, m.net.unused()).raw());
  }
}

TEST(BackwardOverwrite, ZeroesAParameterRecordedAfterTheLoss) {
  ParameterArena arena(DType::f64);
  const ParamId w = arena.add("w", {3});
  const ParamId late = arena.add("late", {2});
  arena.values().fill(0.5);
  Tape tape;
  const Var loss = autodiff::sum(autodiff::square(tape.param(arena, w)));
  (void)tape.param(arena, late);
  arena.grads().fill(7.0);
  tape.backward_overwrite(loss, arena.grads());
  for (std::int64_t i = 0; i < 3; ++i) EXPECT_EQ(arena.grad(w).at(i), 1.0);  // d/dw sum w^2 = 2 w
  for (std::int64_t i = 0; i < 2; ++i) EXPECT_EQ(arena.grad(late).at(i), 0.0);
  // An undefined sink, or one of another layout, is refused.
  EXPECT_THROW(tape.backward_overwrite(loss, Tensor()), ShapeError);
  EXPECT_THROW(tape.backward_overwrite(loss, Tensor::zeros({4}, DType::f64)), ShapeError);
}

// The twice-used W2 against central differences of the loss (float64): the first use's
// contribution overwrites, the second adds.
TEST(BackwardOverwrite, TwiceUsedWeightMatchesCentralDifferences) {
  Model m(DType::f64);
  const Batch b(DType::f64, 2);
  auto loss_at = [&]() {
    Tape t;
    return loss::cross_entropy(m.net.forward(t, t.constant(b.x)), b.y).value().item();
  };
  m.arena.grads().fill(std::numeric_limits<double>::quiet_NaN());
  m.tape.backward_overwrite(loss::cross_entropy(m.net.forward(m.tape, m.tape.constant(b.x)), b.y), m.arena.grads());
  const Tensor g = m.arena.grad(m.net.w2());
  const Tensor w = m.arena.value(m.net.w2());
  const double h = 1e-5;
  for (std::int64_t i = 0; i < w.numel(); i += 4099) {
    const double w0 = w.at(i);
    w.data<double>()[i] = w0 + h;
    const double up = loss_at();
    w.data<double>()[i] = w0 - h;
    const double down = loss_at();
    w.data<double>()[i] = w0;
    EXPECT_NEAR(g.at(i), (up - down) / (2 * h), 1e-8 * (1.0 + std::abs(g.at(i)))) << i;
  }
}

// The accumulating sweeps keep their contract after an overwriting one on the same tape.
TEST(BackwardOverwrite, LaterSweepsStillAccumulate) {
  Model m(DType::f64);
  const Batch b(DType::f64, 3);
  const Var loss = loss::cross_entropy(m.net.forward(m.tape, m.tape.constant(b.x)), b.y);
  Tensor reference = Tensor::zeros({m.arena.size()}, DType::f64);
  m.tape.backward(loss, reference);
  m.tape.backward(loss, reference);  // g, then g's contributions added to it
  Tensor g = Tensor::full({m.arena.size()}, DType::f64, 5.0);
  m.tape.backward_overwrite(loss, g);
  m.tape.backward(loss, g);  // adds to g: nothing of the overwriting sweep is left on the tape
  EXPECT_SAME_BITS(g, reference, "accumulated after an overwrite");
  m.tape.backward_overwrite(loss, g);
  const Tensor v = Tensor::full({m.arena.size()}, DType::f64, 0.25), hv = Tensor::zeros({m.arena.size()}, DType::f64);
  Tensor g2 = Tensor::full({m.arena.size()}, DType::f64, 9.0);
  m.tape.hvp(loss, v, hv, g2);  // overwrites g2 with g
  EXPECT_SAME_BITS(g2, g, "hvp's gradient");
}

// ---- Optimizer::begin_step / step_parameter / end_step --------------------------------------

std::vector<optim::OptimizerSpec> every_optimizer() {
  std::vector<optim::OptimizerSpec> specs;
  for (const std::string& name : optim::optimizer_names()) {
    for (const char* form : {"textbook", "pytorch"}) {
      specs.push_back({.name = name, .form = form, .lr = 0.02});
      specs.push_back({.name = name, .form = form, .lr = 0.02, .weight_decay = 0.01});
    }
  }
  specs.push_back({.name = "momentum", .lr = 0.02, .averaging = optim::Averaging::arithmetic});
  specs.push_back({.name = "adam", .lr = 0.01, .averaging = optim::Averaging::exponential, .averaging_rho = 0.9});
  specs.push_back({.name = "rmsprop", .lr = 0.01, .centered = true});
  specs.push_back({.name = "adam", .lr = 0.01, .amsgrad = true});
  specs.push_back({.name = "momentum", .lr = 0.02, .clip_global_norm = 0.5});  // needs the whole gradient
  specs.push_back({.name = "adam", .lr = 0.01, .clip_value = 0.01});
  specs.push_back({.name = "nesterov", .lr = 0.02, .fused = false});          // the chain, link by link
  return specs;
}

std::string label(const optim::OptimizerSpec& s, DType dtype) {
  return s.name + " (" + s.form + ", wd " + std::to_string(s.weight_decay) + (s.fused ? "" : ", unfused") +
         (s.clip_global_norm > 0 || s.clip_value > 0 ? ", clipped" : "") +
         (s.averaging != optim::Averaging::none ? ", averaged" : "") + ") " + dtype_name(dtype);
}

// Five steps of train::train_step (the update fused into the sweep, and after it) against
// five steps of the old path from the same start: the same losses, parameters, gradients,
// optimizer state and averages bit for bit.
void expect_every_optimizer_matches(bool fuse) {
  const FusedUpdate mode(fuse);
  int by_parameter = 0, cases = 0;
  for (const optim::OptimizerSpec& spec : every_optimizer()) {
    for (DType dtype : {DType::f64, DType::f32}) {
      Model fused(dtype), plain(dtype);
      try {
        fused.opt = optim::make_optimizer(spec, nullptr);
        plain.opt = optim::make_optimizer(spec, nullptr);
      } catch (const ConfigError&) {
        continue;  // a form or key this algorithm does not have
      }
      ++cases;
      const std::string what = label(spec, dtype) + (fuse ? " fused" : " after the sweep");
      // Garbage in the fused model's gradient buffer: every value must be written each step.
      fused.arena.grads().fill(std::numeric_limits<double>::quiet_NaN());
      by_parameter += fused.opt->steps_by_parameter() ? 1 : 0;
      for (std::int64_t k = 0; k < 5; ++k) {
        const Batch b(dtype, static_cast<std::uint64_t>(10 + k));
        const double lf = train::train_step(fused.net, fused.arena, *fused.opt, fused.tape, b.x, b.y, k);
        const double lp = unfused_step(plain, b.x, nullptr, b.y, k);
        EXPECT_EQ(lf, lp) << what << " step " << k;
      }
      EXPECT_SAME_BITS(fused.arena.values(), plain.arena.values(), what + ": parameters");
      EXPECT_SAME_BITS(fused.arena.grads(), plain.arena.grads(), what + ": gradient");
      const optim::OptimizerState sf = fused.opt->save_state(), sp = plain.opt->save_state();
      ASSERT_EQ(sf.names, sp.names) << what;
      EXPECT_EQ(sf.counters, sp.counters) << what;
      for (std::size_t t = 0; t < sf.tensors.size(); ++t) EXPECT_SAME_BITS(sf.tensors[t], sp.tensors[t], what + ": " + sf.names[t]);
      // The parameters moved (the comparison is not of two untouched buffers).
      Model start(dtype);
      EXPECT_NE(first_difference(fused.arena.values(), start.arena.values()), -1) << what;
    }
  }
  EXPECT_GE(cases, 40);
  // sgd, momentum, nesterov, adagrad, rmsprop, adam, adamw at least, in both dtypes.
  EXPECT_GE(by_parameter, 2 * 7 * 2);
}

TEST(FusedStep, EveryOptimizerMatchesTheUnfusedStepBitForBit) {
  expect_every_optimizer_matches(true);
  expect_every_optimizer_matches(false);
}

// step_parameter in any order equals step(); the checks of the protocol.
TEST(FusedStep, StepParameterInAnyOrderEqualsStep) {
  for (const char* name : {"momentum", "nesterov", "adam"}) {
    ParameterArena a(DType::f32), b(DType::f32);
    for (ParameterArena* arena : {&a, &b}) {
      arena->add("p", {1000});
      arena->add("q", {3});
      arena->add("r", {40000});
    }
    Rng rng(7);
    fill_uniform(a.values(), rng, -1.0, 1.0);
    b.values().copy_from(a.values());
    auto oa = optim::make_optimizer({.name = name, .lr = 0.1}, nullptr);
    auto ob = optim::make_optimizer({.name = name, .lr = 0.1}, nullptr);
    ASSERT_TRUE(oa->steps_by_parameter()) << name;
    for (std::int64_t k = 0; k < 3; ++k) {
      fill_uniform(a.grads(), rng, -1.0, 1.0);
      b.grads().copy_from(a.grads());
      oa->prepare(a, k);
      ob->prepare(b, k);
      oa->step(a, k);
      ob->begin_step(b, k);
      for (int i : {2, 0, 1}) ob->step_parameter(b, ParamId{i});
      ob->end_step();
      EXPECT_SAME_BITS(a.values(), b.values(), std::string(name) + " step " + std::to_string(k));
    }
    // A parameter left out, or a step outside begin/end, is a logic error.
    ob->prepare(b, 3);
    ob->begin_step(b, 3);
    ob->step_parameter(b, ParamId{0});
    EXPECT_THROW(ob->end_step(), std::logic_error);
    EXPECT_THROW(ob->step_parameter(b, ParamId{1}), std::logic_error);
  }
  ParameterArena c(DType::f32);
  c.add("p", {4});
  auto clipped = optim::make_optimizer({.name = "sgd", .clip_global_norm = 1.0}, nullptr);
  EXPECT_FALSE(clipped->steps_by_parameter());
  EXPECT_THROW(clipped->begin_step(c, 0), std::logic_error);
  auto nesterov = optim::make_optimizer({.name = "nesterov"}, nullptr);
  EXPECT_THROW(nesterov->begin_step(c, 0), ConfigError);  // no prepare(c, 0): no interim point
}

// A callback already on the tape (distributed.cpp's) is still called, and kept after the step.
TEST(FusedStep, KeepsTheTapesOwnCallback) {
  const FusedUpdate mode(true);
  Model m(DType::f32);
  m.opt = optim::make_optimizer({.name = "momentum", .lr = 0.02}, nullptr);
  int calls = 0;
  m.tape.set_param_ready([&](ParamId) { ++calls; });
  const Batch b(DType::f32, 4);
  train::train_step(m.net, m.arena, *m.opt, m.tape, b.x, b.y, 0);
  EXPECT_EQ(calls, static_cast<int>(m.arena.count()) - 1);  // "never" is not on the tape
  m.tape.clear();
  m.tape.backward(loss::cross_entropy(m.net.forward(m.tape, m.tape.constant(b.x)), b.y));
  EXPECT_EQ(calls, 2 * (static_cast<int>(m.arena.count()) - 1));
}

// The bf16 products (model.dtype = "bf16") with the input batch's bf16 bits: the fused step
// against the unfused one, bit for bit.
TEST(FusedStep, Bf16ProductsMatchTheUnfusedStepBitForBit) {
  const FusedUpdate mode(true);
  const bool emulate = !precision::cpu_has_bf16();
  precision::Scope scope(precision::Products::bf16, emulate);
  for (const char* name : {"momentum", "adam"}) {
    auto make = [&](Model& m) {
      m.opt = optim::make_optimizer({.name = name, .lr = 0.02}, nullptr);
    };
    Model fused(DType::f32), plain(DType::f32);
    make(fused);
    make(plain);
    for (std::int64_t k = 0; k < 4; ++k) {
      const Batch b(DType::f32, static_cast<std::uint64_t>(20 + k));
      kernels::bf16::Buffer x16;
      kernels::bf16::convert(b.x.data<float>(), b.x.numel(), x16.resize(b.x.numel()));
      const double lf = train::train_step(fused.net, fused.arena, *fused.opt, fused.tape, b.x, &x16, b.y, k);
      const double lp = unfused_step(plain, b.x, &x16, b.y, k);
      EXPECT_EQ(lf, lp) << name << " step " << k;
    }
    EXPECT_SAME_BITS(fused.arena.values(), plain.arena.values(), std::string(name) + " bf16: parameters");
    EXPECT_SAME_BITS(fused.arena.grads(), plain.arena.grads(), std::string(name) + " bf16: gradient");
  }
}

// The benchmark's MLP 784-256-256-10 at batch 128 (the products' real shapes: oneDNN or
// OpenBLAS with beta 0 where the old path had beta 1), float32 and bf16 products, fused.
TEST(FusedStep, Mlp784AtBatch128MatchesTheUnfusedStepBitForBit) {
  const FusedUpdate mode(true);
  for (bool bf16 : {false, true}) {
    std::unique_ptr<precision::Scope> scope;
    if (bf16) scope = std::make_unique<precision::Scope>(precision::Products::bf16, !precision::cpu_has_bf16());
    struct Mlp {
      ParameterArena arena{DType::f32};
      nn::Sequential net{nn::mlp(arena, {784, 256, 256, 10}, nn::Activation::relu)};
      Tape tape;
      std::unique_ptr<optim::Optimizer> opt = optim::make_optimizer({.name = "momentum", .lr = 0.05}, nullptr);
    } a, b;
    nn::initialize(a.arena, {.weights = init::Scheme::fan_in_uniform, .seed = 1});
    nn::initialize(b.arena, {.weights = init::Scheme::fan_in_uniform, .seed = 1});
    for (std::int64_t k = 0; k < 3; ++k) {
      Tensor x = Tensor::empty({128, 784}, DType::f32), y = Tensor::empty({128}, DType::i32);
      Rng rng(static_cast<std::uint64_t>(30 + k));
      fill_uniform(x, rng, 0.0, 1.0);
      for (std::int64_t i = 0; i < 128; ++i) y.data<std::int32_t>()[i] = static_cast<std::int32_t>((i + k) % 10);
      kernels::bf16::Buffer x16;
      kernels::bf16::convert(x.data<float>(), x.numel(), x16.resize(x.numel()));
      train::train_step(a.net, a.arena, *a.opt, a.tape, x, bf16 ? &x16 : nullptr, y, k);
      b.tape.clear();
      b.arena.zero_grad();
      b.opt->prepare(b.arena, k);
      const Var in = bf16 ? autodiff::constant_bf16(b.tape, x, x16) : b.tape.constant(x);
      b.tape.backward(loss::cross_entropy(b.net.forward(b.tape, in), y));
      b.opt->step(b.arena, k);
    }
    EXPECT_SAME_BITS(a.arena.values(), b.arena.values(), bf16 ? "bf16: parameters" : "f32: parameters");
    EXPECT_SAME_BITS(a.arena.grads(), b.arena.grads(), bf16 ? "bf16: gradient" : "f32: gradient");
  }
}

}  // namespace
}  // namespace descent
