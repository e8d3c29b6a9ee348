// BatchNorm and Dropout: training and evaluation modes, running statistics by hand,
// initialization of gamma and beta, Hv through networks with batch normalization against
// finite differences of gradients (float64), dropout's mask statistics and seeding.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "descent/loss/loss.hpp"
#include "descent/nn/initialize.hpp"
#include "descent/nn/module.hpp"
#include "descent/nn/normalization.hpp"
#include "descent/tensor/kernels.hpp"
#include "support/gradcheck.hpp"

namespace descent {
namespace {

using autodiff::Tape;
using autodiff::Var;
using testing::random_tensor;

// Reshapes every example: [N, ...] -> [N, dims...] (to put convolution-shaped tensors
// between linear layers).
class Reshape : public nn::Module {
 public:
  explicit Reshape(std::vector<std::int64_t> dims) : dims_(std::move(dims)) {}
  Var forward(Tape&, Var x) override {
    std::vector<std::int64_t> s{x.value().dim(0)};
    s.insert(s.end(), dims_.begin(), dims_.end());
    return autodiff::reshape(x, Shape(std::span<const std::int64_t>(s)));
  }
  std::string describe() const override { return "Reshape"; }

 private:
  std::vector<std::int64_t> dims_;
};

// ---- BatchNorm -------------------------------------------------------------------------

TEST(BatchNorm, DeclaresScaleShiftAndTwoBuffers) {
  ParameterArena arena(DType::f64);
  nn::Sequential net(arena);
  net.add(nn::Linear(3, 4));
  auto& bn = net.add(nn::BatchNorm(4));
  EXPECT_EQ(arena.entry(bn.weight()).name, "layers.1.weight");
  EXPECT_EQ(arena.entry(bn.weight()).info.role, ParamRole::scale);
  EXPECT_EQ(arena.entry(bn.bias()).name, "layers.1.bias");
  EXPECT_EQ(arena.entry(bn.bias()).info.role, ParamRole::shift);
  EXPECT_EQ(arena.buffer_entry(bn.running_mean()).name, "layers.1.running_mean");
  EXPECT_EQ(arena.buffer_entry(bn.running_var()).name, "layers.1.running_var");
  // Trainable: 3*4 + 4 + 4 + 4; the running statistics are not parameters.
  EXPECT_EQ(arena.size(), 24);
  EXPECT_EQ(arena.buffer_size(), 8);
  arena.freeze();
  for (std::int64_t c = 0; c < 4; ++c) {
    EXPECT_EQ(arena.buffer(bn.running_mean()).at(c), 0.0);
    EXPECT_EQ(arena.buffer(bn.running_var()).at(c), 1.0);
  }
  EXPECT_EQ(bn.describe(), "BatchNorm(4, eps 1e-05, momentum 0.1)");
}

TEST(BatchNorm, InitializeSetsGammaToOneAndBetaToZero) {
  ParameterArena arena(DType::f32);
  nn::Sequential net(arena);
  auto& lin = net.add(nn::Linear(3, 4));
  auto& bn = net.add(nn::BatchNorm(4));
  arena.freeze();
  arena.buffer(bn.running_var()).fill(7.0);
  nn::initialize(arena, {.bias = 0.25, .seed = 3});
  for (std::int64_t c = 0; c < 4; ++c) {
    EXPECT_EQ(arena.value(bn.weight()).at(c), 1.0);
    EXPECT_EQ(arena.value(bn.bias()).at(c), 0.0);
    EXPECT_FLOAT_EQ(static_cast<float>(arena.value(lin.bias()).at(c)), 0.25f);  // biases still get the constant
    EXPECT_EQ(arena.buffer(bn.running_var()).at(c), 1.0);                      // buffers back to their start
  }
}

TEST(BatchNorm, TrainingOutputHasMeanZeroAndVarianceOnePerFeature) {
  for (const Shape& s : {Shape{32, 6}, Shape{4, 6, 3, 5}}) {
    ParameterArena arena(DType::f64);
    nn::Sequential net(arena);
    net.add(nn::BatchNorm(6, {.eps = 0.0}));
    nn::initialize(arena, {});
    Tape tape;
    Tensor x = random_tensor(s, DType::f64, 1, -3.0, 5.0);
    Tensor y = net.forward(tape, tape.constant(x)).value();
    const std::int64_t inner = x.numel() / (s[0] * 6);
    const double m = static_cast<double>(s[0] * inner);
    for (std::int64_t c = 0; c < 6; ++c) {
      double sum = 0.0, sq = 0.0;
      for (std::int64_t n = 0; n < s[0]; ++n) {
        for (std::int64_t k = 0; k < inner; ++k) {
          const double v = y.at((n * 6 + c) * inner + k);
          sum += v;
          sq += v * v;
        }
      }
      EXPECT_NEAR(sum / m, 0.0, 1e-12) << s.str() << " channel " << c;
      EXPECT_NEAR(sq / m, 1.0, 1e-12) << s.str() << " channel " << c;
    }
  }
}

TEST(BatchNorm, RunningStatisticsFollowPyTorchsUpdate) {
  ParameterArena arena(DType::f64);
  nn::Sequential net(arena);
  auto& bn = net.add(nn::BatchNorm(2, {.eps = 1e-5, .momentum = 0.1}));
  nn::initialize(arena, {});
  Tape tape;
  // Channel 0: {1, 3, 5, 7}: mean 4, unbiased variance 20/3. Channel 1: {2, 2, 2, 10}: mean 4,
  // unbiased variance (4 + 4 + 4 + 36) / 3 = 16.
  net.forward(tape, tape.constant(Tensor::from<double>({4, 2}, {1, 2, 3, 2, 5, 2, 7, 10})));
  Tensor rm = arena.buffer(bn.running_mean());
  Tensor rv = arena.buffer(bn.running_var());
  EXPECT_NEAR(rm.at(0), 0.1 * 4, 1e-15);
  EXPECT_NEAR(rm.at(1), 0.1 * 4, 1e-15);
  EXPECT_NEAR(rv.at(0), 0.9 * 1 + 0.1 * 20.0 / 3.0, 1e-15);
  EXPECT_NEAR(rv.at(1), 0.9 * 1 + 0.1 * 16.0, 1e-15);
  // A second batch: channel 0 {0, 2}: mean 1, unbiased variance 2; channel 1 {-1, -1}: mean -1, variance 0.
  tape.clear();
  net.forward(tape, tape.constant(Tensor::from<double>({2, 2}, {0, -1, 2, -1})));
  EXPECT_NEAR(rm.at(0), 0.9 * 0.4 + 0.1 * 1, 1e-15);
  EXPECT_NEAR(rm.at(1), 0.9 * 0.4 + 0.1 * -1, 1e-15);
  EXPECT_NEAR(rv.at(0), 0.9 * (0.9 + 0.1 * 20.0 / 3.0) + 0.1 * 2, 1e-15);
  EXPECT_NEAR(rv.at(1), 0.9 * (0.9 + 0.1 * 16.0), 1e-15);
}

TEST(BatchNorm, EvaluationUsesTheRunningStatistics) {
  ParameterArena arena(DType::f64);
  nn::Sequential net(arena);
  auto& bn = net.add(nn::BatchNorm(2, {.eps = 0.5}));
  arena.freeze();
  arena.value(bn.weight()).copy_from(Tensor::from<double>({2}, {2.0, -1.0}));
  arena.value(bn.bias()).copy_from(Tensor::from<double>({2}, {0.5, 3.0}));
  arena.buffer(bn.running_mean()).copy_from(Tensor::from<double>({2}, {1.0, -2.0}));
  arena.buffer(bn.running_var()).copy_from(Tensor::from<double>({2}, {3.5, 0.5}));
  net.set_training(false);
  EXPECT_FALSE(bn.training());
  Tape tape;
  // Channel 0: y = 2 (x - 1) / sqrt(4) + 0.5 = x - 0.5; channel 1: y = -(x + 2) / 1 + 3 = 1 - x.
  Var y = net.forward(tape, tape.constant(Tensor::from<double>({3, 2}, {1, 2, 3, 4, -5, 0.5})));
  const double expected[6] = {0.5, -1, 2.5, -3, -5.5, 0.5};
  for (int i = 0; i < 6; ++i) EXPECT_NEAR(y.value().at(i), expected[i], 1e-15) << i;
  // Evaluation leaves the running statistics alone, and a single example is fine.
  tape.clear();
  Var one = net.forward(tape, tape.constant(Tensor::from<double>({1, 2}, {3, 4})));
  EXPECT_NEAR(one.value().at(0), 2.5, 1e-15);
  EXPECT_EQ(arena.buffer(bn.running_mean()).at(1), -2.0);
  EXPECT_EQ(arena.buffer(bn.running_var()).at(0), 3.5);
}

TEST(BatchNorm, EvaluationOfImagesByHand) {
  ParameterArena arena(DType::f32);
  nn::Sequential net(arena);
  auto& bn = net.add(nn::BatchNorm(2, {.eps = 0.0}));
  arena.freeze();
  arena.value(bn.weight()).copy_from(Tensor::from<float>({2}, {1.0f, 3.0f}));
  arena.value(bn.bias()).copy_from(Tensor::from<float>({2}, {0.0f, 1.0f}));
  arena.buffer(bn.running_mean()).copy_from(Tensor::from<float>({2}, {2.0f, 0.0f}));
  arena.buffer(bn.running_var()).copy_from(Tensor::from<float>({2}, {4.0f, 9.0f}));
  net.set_training(false);
  Tape tape;
  // [1, 2, 1, 2]: channel 0 values {4, 6} -> (x - 2) / 2; channel 1 values {3, -3} -> 3 x / 3 + 1.
  Var y = net.forward(tape, tape.constant(Tensor::from<float>({1, 2, 1, 2}, {4, 6, 3, -3})));
  const float expected[4] = {1.0f, 2.0f, 4.0f, -2.0f};
  for (int i = 0; i < 4; ++i) EXPECT_FLOAT_EQ(static_cast<float>(y.value().at(i)), expected[i]);
}

TEST(BatchNorm, TrainingAndEvaluationDifferAndSwitchBack) {
  ParameterArena arena(DType::f64);
  nn::Sequential net(arena);
  net.add(nn::BatchNorm(3));
  nn::initialize(arena, {});
  Tensor x = random_tensor({5, 3}, DType::f64, 4, 2.0, 4.0);
  Tape tape;
  Tensor train1 = net.forward(tape, tape.constant(x)).value().clone();
  net.set_training(false);
  tape.clear();
  Tensor eval = net.forward(tape, tape.constant(x)).value().clone();
  net.set_training(true);
  tape.clear();
  Tensor train2 = net.forward(tape, tape.constant(x)).value().clone();
  EXPECT_GT(testing::relative_difference(train1, eval), 0.1);
  EXPECT_LT(testing::relative_difference(train1, train2), 1e-15);  // batch statistics only
}

TEST(BatchNorm, Errors) {
  EXPECT_THROW(nn::BatchNorm(0), ConfigError);
  EXPECT_THROW(nn::BatchNorm(3, {.eps = -1.0}), ConfigError);
  EXPECT_THROW(nn::BatchNorm(3, {.momentum = 1.5}), ConfigError);
  nn::BatchNorm loose(3);
  Tape tape;
  EXPECT_THROW(loose.forward(tape, tape.constant(Tensor::zeros({2, 3}, DType::f32))), ShapeError);
  ParameterArena arena(DType::f32);
  nn::Sequential net(arena);
  net.add(nn::BatchNorm(3));
  try {
    net.forward(tape, tape.constant(Tensor::zeros({2, 4}, DType::f32)));
    ADD_FAILURE() << "no ShapeError";
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("BatchNorm(3): expects an input [N, 3] or [N, 3, H, W], got [2, 4]"), std::string::npos)
        << e.what();
  }
  // One value per channel in training: the variance is undefined (as in PyTorch).
  EXPECT_THROW(net.forward(tape, tape.constant(Tensor::zeros({1, 3}, DType::f32))), ShapeError);
  EXPECT_NO_THROW(net.forward(tape, tape.constant(Tensor::zeros({1, 3, 2, 1}, DType::f32))));
}

// ---- Hv through networks with batch normalization ---------------------------------------

struct Problem {
  ParameterArena arena{DType::f64};
  nn::Sequential net{arena};
  Tensor x, labels;
  Var loss(Tape& tape) { return loss::cross_entropy(net.forward(tape, tape.constant(x)), labels); }
  Tensor gradient() {
    Tape tape;
    Tensor g = Tensor::zeros({arena.size()}, arena.dtype());
    tape.backward(loss(tape), g);
    return g;
  }
  Tensor hvp(const Tensor& v) {
    Tape tape;
    Tensor hv = Tensor::empty({arena.size()}, arena.dtype());
    tape.hvp(loss(tape), v, hv);
    return hv;
  }
  // (g(theta + h v) - g(theta - h v)) / 2h: first-order code only.
  Tensor finite_difference_hvp(const Tensor& v, double h) {
    Tensor theta0 = arena.values().clone();
    kernels::axpby(h, v, 1.0, arena.values());
    Tensor up = gradient();
    arena.values().copy_from(theta0);
    kernels::axpby(-h, v, 1.0, arena.values());
    Tensor down = gradient();
    arena.values().copy_from(theta0);
    Tensor fd = Tensor::empty({arena.size()}, DType::f64);
    kernels::axpby(1.0 / (2 * h), up, 0.0, fd);
    kernels::axpby(-1.0 / (2 * h), down, 1.0, fd);
    return fd;
  }
  void setup(std::int64_t batch, std::int64_t in, std::int32_t classes, std::uint64_t seed) {
    arena.values().copy_from(random_tensor({arena.size()}, DType::f64, seed, -0.8, 0.8));
    x = random_tensor({batch, in}, DType::f64, seed + 1, -1.5, 1.5);
    std::vector<std::int32_t> y(static_cast<std::size_t>(batch));
    for (std::size_t i = 0; i < y.size(); ++i) y[i] = static_cast<std::int32_t>((i * 7 + seed) % static_cast<std::size_t>(classes));
    labels = Tensor::from<std::int32_t>({batch}, y);
  }
  void expect_hvp_matches(std::uint64_t seed, double tol) {
    const std::int64_t n = arena.size();
    for (std::uint64_t k = 0; k < 3; ++k) {
      Tensor v = random_tensor({n}, DType::f64, seed + k);
      Tensor hv = hvp(v);
      Tensor fd = finite_difference_hvp(v, 1e-5);
      EXPECT_LT(testing::relative_difference(hv, fd), tol) << "direction " << k;
      EXPECT_GT(std::sqrt(kernels::sum_squares(hv)), 1e-3);
    }
  }
};

TEST(BatchNorm, HvThroughAnMlpMatchesFiniteDifferencesOfGradients) {
  Problem p;
  p.net.add(nn::Linear(3, 5));
  p.net.add(nn::BatchNorm(5, {.eps = 1e-3}));
  p.net.add(nn::Tanh());
  p.net.add(nn::Linear(5, 4));
  p.net.add(nn::BatchNorm(4, {.eps = 1e-3}));
  p.net.add(nn::Sigmoid());
  p.net.add(nn::Linear(4, 3));
  p.setup(7, 3, 3, 11);
  p.expect_hvp_matches(21, 1e-7);
}

TEST(BatchNorm, HvThroughAConvolutionShapedBatchNorm) {
  Problem p;
  p.net.add(nn::Linear(3, 12));
  p.net.add(Reshape({3, 2, 2}));
  p.net.add(nn::BatchNorm(3, {.eps = 1e-3}));
  p.net.add(Reshape({12}));
  p.net.add(nn::Tanh());
  p.net.add(nn::Linear(12, 3));
  p.setup(4, 3, 3, 31);
  p.expect_hvp_matches(41, 1e-7);
}

TEST(BatchNorm, HvInEvaluationModeMatchesFiniteDifferencesOfGradients) {
  Problem p;
  p.net.add(nn::Linear(3, 5));
  auto& bn = p.net.add(nn::BatchNorm(5, {.eps = 1e-3}));
  p.net.add(nn::Tanh());
  p.net.add(nn::Linear(5, 3));
  p.setup(6, 3, 3, 51);
  p.arena.buffer(bn.running_mean()).copy_from(random_tensor({5}, DType::f64, 52));
  p.arena.buffer(bn.running_var()).copy_from(random_tensor({5}, DType::f64, 53, 0.5, 2.0));
  p.net.set_training(false);
  p.expect_hvp_matches(61, 1e-7);
}

// ---- Dropout ---------------------------------------------------------------------------

Tensor dropout_mask(nn::Dropout& d, const Shape& s, DType dtype = DType::f64) {
  Tape tape;
  return d.forward(tape, tape.constant(Tensor::full(s, dtype, 1.0))).value().clone();
}

TEST(Dropout, KeepsAFractionOneMinusPScaledByItsInverse) {
  const double p = 0.3;
  nn::Dropout d(p, 7);
  Tensor m = dropout_mask(d, {200, 101});
  const auto n = static_cast<double>(m.numel());
  double kept = 0.0, total = 0.0;
  for (std::int64_t i = 0; i < m.numel(); ++i) {
    const double v = m.at(i);
    if (v != 0.0) {
      EXPECT_DOUBLE_EQ(v, 1.0 / (1.0 - p));
      kept += 1.0;
    }
    total += v;
  }
  // Binomial(n, 0.7): the kept fraction within 4 standard deviations.
  const double sd = std::sqrt(p * (1 - p) / n);
  EXPECT_NEAR(kept / n, 1.0 - p, 4 * sd);
  EXPECT_NEAR(total / n, 1.0, 4 * sd / (1.0 - p));  // E[y] = x
}

TEST(Dropout, EvaluationAndPZeroAreTheIdentity) {
  nn::Dropout d(0.5, 1);
  d.set_training(false);
  Tape tape;
  Var x = tape.constant(random_tensor({4, 3}, DType::f32, 2));
  Var y = d.forward(tape, x);
  EXPECT_EQ(y.id, x.id);
  nn::Dropout none(0.0, 1);
  EXPECT_EQ(none.forward(tape, x).id, x.id);
}

TEST(Dropout, SameSeedSameMaskAndTheStateResumes) {
  nn::Dropout a(0.5, 42), b(0.5, 42), c(0.5, 43);
  Tensor ma = dropout_mask(a, {10, 9}, DType::f32);
  Tensor mb = dropout_mask(b, {10, 9}, DType::f32);
  Tensor mc = dropout_mask(c, {10, 9}, DType::f32);
  EXPECT_EQ(std::memcmp(ma.raw(), mb.raw(), ma.nbytes()), 0);
  EXPECT_NE(std::memcmp(ma.raw(), mc.raw(), ma.nbytes()), 0);
  // Successive steps draw new masks; a saved state replays them.
  const std::string state = a.rng_state();
  Tensor next1 = dropout_mask(a, {10, 9}, DType::f32);
  EXPECT_NE(std::memcmp(ma.raw(), next1.raw(), ma.nbytes()), 0);
  nn::Dropout resumed(0.5, 999);
  resumed.set_rng_state(state);
  Tensor next2 = dropout_mask(resumed, {10, 9}, DType::f32);
  EXPECT_EQ(std::memcmp(next1.raw(), next2.raw(), next1.nbytes()), 0);
}

TEST(Dropout, GradientIsTheMaskAndHvGoesThroughTheProduct) {
  nn::Dropout d(0.4, 5);
  Tape tape;
  Var x = tape.variable(random_tensor({6, 5}, DType::f64, 8));
  Var y = d.forward(tape, x);
  ASSERT_NE(y.id, x.id);
  // y = x (.) mask elementwise with a constant mask: dL/dx = mask for L = sum(y).
  tape.backward(autodiff::sum(y));
  for (std::int64_t i = 0; i < 30; ++i) {
    const double mask = y.value().at(i) / x.value().at(i);
    EXPECT_NEAR(tape.grad(x).at(i), mask, 1e-15);
    EXPECT_TRUE(std::abs(mask) < 1e-15 || std::abs(mask - 1.0 / 0.6) < 1e-12);
  }
  // L = 1/2 sum(y^2): H = diag(mask^2), so Hv = mask^2 (.) v.
  Tensor v = random_tensor({6, 5}, DType::f64, 9);
  tape.set_tangent(x, v);
  tape.hvp(autodiff::scale(autodiff::sum(autodiff::square(y)), 0.5), Tensor(), Tensor());
  for (std::int64_t i = 0; i < 30; ++i) {
    const double mask = y.value().at(i) / x.value().at(i);
    EXPECT_NEAR(tape.grad_tangent(x).at(i), mask * mask * v.at(i), 1e-12);
  }
}

TEST(Dropout, Errors) {
  EXPECT_THROW(nn::Dropout(1.0), ConfigError);
  EXPECT_THROW(nn::Dropout(-0.1), ConfigError);
  EXPECT_THROW(nn::Dropout(std::nan("")), ConfigError);
  EXPECT_EQ(nn::Dropout(0.25).describe(), "Dropout(0.25)");
}

// ---- modes and buffers -----------------------------------------------------------------

TEST(Modes, SequentialPassesTheModeToItsChildren) {
  ParameterArena arena(DType::f32);
  nn::Sequential net(arena);
  auto& lin = net.add(nn::Linear(2, 3));
  auto& drop = net.add(nn::Dropout(0.5));
  EXPECT_TRUE(net.training());
  EXPECT_TRUE(drop.training());
  net.set_training(false);
  EXPECT_FALSE(lin.training());
  EXPECT_FALSE(drop.training());
  auto& late = net.add(nn::BatchNorm(3));  // joins in the container's mode
  EXPECT_FALSE(late.training());
  net.set_training(true);
  EXPECT_TRUE(late.training());
  EXPECT_TRUE(drop.training());
}

TEST(Modes, AnOptimizerStepOverValuesNeverTouchesTheBuffers) {
  ParameterArena arena(DType::f64);
  nn::Sequential net(arena);
  net.add(nn::Linear(3, 4));
  auto& bn = net.add(nn::BatchNorm(4));
  net.add(nn::Linear(4, 2));
  nn::initialize(arena, {.seed = 1});
  // values() and grads() hold the parameters only; buffers() is a separate allocation.
  EXPECT_EQ(arena.values().numel(), arena.size());
  EXPECT_EQ(arena.buffers().numel(), 8);
  const auto* v0 = static_cast<const std::byte*>(arena.values().raw());
  const auto* b0 = static_cast<const std::byte*>(arena.buffers().raw());
  EXPECT_TRUE(b0 + arena.buffers().nbytes() <= v0 || v0 + arena.values().nbytes() <= b0);
  Tape tape;
  Var out = net.forward(tape, tape.constant(random_tensor({5, 3}, DType::f64, 2)));
  Tensor buffers_after_forward = arena.buffers().clone();
  arena.zero_grad();
  tape.backward(autodiff::sum(autodiff::square(out)));
  kernels::axpby(-0.1, arena.grads(), 1.0, arena.values());  // an SGD step over the flat vectors
  EXPECT_EQ(std::memcmp(arena.buffers().raw(), buffers_after_forward.raw(), buffers_after_forward.nbytes()), 0);
  // The forward pass did update the running statistics (and only it).
  EXPECT_NE(arena.buffer(bn.running_mean()).at(0), 0.0);
}

}  // namespace
}  // namespace descent
