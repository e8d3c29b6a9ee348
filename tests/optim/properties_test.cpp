// Properties the chapter states, equivalences between forms and chains, clipping counts,
// Polyak averages, the fused loops against the chains on a large buffer, state round trips
// and the rejection of bad hyperparameters.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "descent/error.hpp"
#include "descent/init/rng.hpp"
#include "descent/optim/optimizer.hpp"
#include "descent/tensor/parallel.hpp"

namespace descent {
namespace {

void set_values(ParameterArena& arena, const std::vector<double>& v) {
  for (std::size_t i = 0; i < v.size(); ++i) arena.values().data<double>()[i] = v[i];
}

TEST(Momentum, PytorchFormTerminalVelocity) {
  // Constant g: v -> g / (1 - mu), so each step moves lr g / (1 - mu) = 0.1 * 2 / 0.1 = 2.
  ParameterArena arena(DType::f64);
  arena.add("theta", {1});
  auto opt = optim::make_optimizer({.name = "momentum", .form = "pytorch", .momentum = 0.9}, optim::constant(0.1));
  double previous = 0.0;
  for (int k = 0; k < 400; ++k) {
    previous = arena.values().at(0);
    arena.grads().fill(2.0);
    opt->step(arena, k);
  }
  EXPECT_NEAR(previous - arena.values().at(0), 2.0, 1e-12);
}

// The rate inside the velocity (textbook) or outside it (PyTorch): equal under a constant
// rate, different under a schedule, because the textbook's v remembers the old rates.
TEST(Momentum, TextbookAndPytorchFormsAgreeUnderAConstantRateOnly) {
  auto run = [](const std::string& form, std::shared_ptr<optim::Schedule> s) {
    ParameterArena arena(DType::f64);
    arena.add("theta", {2});
    set_values(arena, {1.0, -2.0});
    auto opt = optim::make_optimizer({.name = "momentum", .form = form, .momentum = 0.9}, s);
    for (int k = 0; k < 20; ++k) {
      arena.grads().data<double>()[0] = 0.5 * arena.values().at(0);
      arena.grads().data<double>()[1] = 3.0 * arena.values().at(1);
      opt->step(arena, k);
    }
    return std::vector<double>{arena.values().at(0), arena.values().at(1)};
  };
  const auto a = run("textbook", optim::constant(0.05)), b = run("pytorch", optim::constant(0.05));
  EXPECT_NEAR(a[0], b[0], 1e-14);
  EXPECT_NEAR(a[1], b[1], 1e-14);
  const auto c = run("textbook", optim::step_decay({.eps0 = 0.05, .gamma = 0.1, .every = 5}));
  const auto d = run("pytorch", optim::step_decay({.eps0 = 0.05, .gamma = 0.1, .every = 5}));
  EXPECT_GT(std::abs(c[0] - d[0]), 1e-3);
  EXPECT_GT(std::abs(c[1] - d[1]), 1e-3);
}

TEST(Adagrad, EffectiveRateNeverIncreases) {
  // eps / (delta + sqrt(r)) with r read from the optimizer's state after each step.
  ParameterArena arena(DType::f64);
  arena.add("theta", {4});
  set_values(arena, {1.0, -1.0, 0.1, 3.0});
  auto opt = optim::make_optimizer({.name = "adagrad"}, optim::constant(0.1));
  Rng rng(5);
  std::vector<double> previous(4, 1e300);
  for (int k = 0; k < 50; ++k) {
    for (int i = 0; i < 4; ++i) arena.grads().data<double>()[i] = rng.normal() * (k % 7 == 0 ? 0.0 : 1.0);
    opt->step(arena, k);
    const Tensor r = opt->state().at(0);
    for (int i = 0; i < 4; ++i) {
      const double rate = 0.1 / (1e-7 + std::sqrt(r.at(i)));
      EXPECT_LE(rate, previous[static_cast<std::size_t>(i)]);
      previous[static_cast<std::size_t>(i)] = rate;
    }
  }
}

// ---- fused == chain on a buffer of many chunks, in both precisions -----------------

template <class T>
void fill_normal(const Tensor& t, Rng& rng, double scale) {
  T* p = t.data<T>();
  for (std::int64_t i = 0; i < t.numel(); ++i) p[i] = static_cast<T>(scale * rng.normal());
}

void expect_fused_equals_chain(const optim::OptimizerSpec& spec, DType dtype) {
  SCOPED_TRACE(spec.name + " " + spec.form + (dtype == DType::f32 ? " f32" : " f64") +
               (spec.weight_decay > 0 ? " wd" : ""));
  const std::int64_t n = 2 * parallel_grain + 3;  // three parallel chunks, the last one ragged
  ParameterArena fa(dtype), ca(dtype);
  fa.add("w", {n});
  ca.add("w", {n});
  Rng init(1);
  dispatch_float(dtype, [&](auto zero) { fill_normal<decltype(zero)>(fa.values(), init, 1.0); });
  ca.values().copy_from(fa.values());
  optim::OptimizerSpec unfused = spec;
  unfused.fused = false;
  auto fused_opt = optim::make_optimizer(spec, optim::linear_decay(0.01, 0.001, 6));
  auto chain_opt = optim::make_optimizer(unfused, optim::linear_decay(0.01, 0.001, 6));
  ASSERT_NE(fused_opt->describe().find("[fused]"), std::string::npos);
  ASSERT_EQ(chain_opt->describe().find("[fused]"), std::string::npos);
  for (int k = 0; k < 10; ++k) {
    fused_opt->prepare(fa, k);
    chain_opt->prepare(ca, k);
    dispatch_float(dtype, [&](auto zero) {  // a cheap gradient of both signs and many sizes
      using T = decltype(zero);
      T* g = fa.grads().data<T>();
      for (std::int64_t i = 0; i < n; ++i) g[i] = static_cast<T>(std::sin(0.618 * static_cast<double>(i) + k) * (1 + i % 7));
    });
    ca.grads().copy_from(fa.grads());
    fused_opt->step(fa, k);
    chain_opt->step(ca, k);
  }
  // The same operations in the same order; only floating-point contraction (FMA) may
  // differ between the two loops, so the tolerance is a few ulps of the values.
  const double tol = dtype == DType::f32 ? 1e-5 : 1e-13;
  double worst = 0.0;
  for (std::int64_t i = 0; i < n; ++i) {
    worst = std::max(worst, std::abs(fa.values().at(i) - ca.values().at(i)) / (1.0 + std::abs(ca.values().at(i))));
  }
  EXPECT_LE(worst, tol);
  const auto fs = fused_opt->save_state(), cs = chain_opt->save_state();
  ASSERT_EQ(fs.names, cs.names);
  EXPECT_EQ(fs.counters, cs.counters);
  for (std::size_t t = 0; t < fs.tensors.size(); ++t) {
    for (std::int64_t i = 0; i < n; i += 997) {
      EXPECT_NEAR(fs.tensors[t].at(i), cs.tensors[t].at(i), tol * (1.0 + std::abs(cs.tensors[t].at(i))));
    }
  }
}

TEST(Fused, EqualsTheChainLinkByLink) {
  const std::vector<optim::OptimizerSpec> specs = {
      {.name = "sgd"},
      {.name = "sgd", .weight_decay = 0.1},
      {.name = "momentum"},
      {.name = "momentum", .form = "pytorch"},
      {.name = "nesterov"},
      {.name = "nesterov", .form = "pytorch", .weight_decay = 0.1},
      {.name = "adagrad"},
      {.name = "rmsprop"},
      {.name = "rmsprop", .form = "pytorch"},
      {.name = "adam"},
      {.name = "adam", .delta = 1e-3, .weight_decay = 0.1},
      {.name = "adamw"},
  };
  for (const auto& s : specs) {
    expect_fused_equals_chain(s, DType::f64);
    expect_fused_equals_chain(s, DType::f32);
  }
}

// ---- clipping ----------------------------------------------------------------------

TEST(Clipping, GlobalNormScalesAndCounts) {
  ParameterArena arena(DType::f64);
  arena.add("a", {2});
  arena.add("b", {1});
  auto opt = optim::make_optimizer({.name = "sgd", .clip_global_norm = 1.0}, optim::constant(1.0));
  // g = (3, 4, 0): |g| = 5 > 1, so g becomes (0.6, 0.8, 0): theta = (-0.6, -0.8, 0).
  arena.grads().data<double>()[0] = 3.0;
  arena.grads().data<double>()[1] = 4.0;
  opt->step(arena, 0);
  EXPECT_NEAR(arena.values().at(0), -0.6, 1e-15);
  EXPECT_NEAR(arena.values().at(1), -0.8, 1e-15);
  EXPECT_EQ(opt->clip_count(), 1);
  // g = (0.3, 0.4, 0): |g| = 0.5, not clipped.
  arena.grads().data<double>()[0] = 0.3;
  arena.grads().data<double>()[1] = 0.4;
  opt->step(arena, 1);
  EXPECT_NEAR(arena.values().at(0), -0.9, 1e-15);
  EXPECT_EQ(opt->clip_count(), 1);
  EXPECT_EQ(opt->describe().find("[fused]"), std::string::npos);
}

TEST(Clipping, ValueAndParamNormCount) {
  ParameterArena arena(DType::f64);
  arena.add("a", {2});
  arena.add("b", {2});
  auto by_value = optim::make_optimizer({.name = "sgd", .clip_value = 0.5}, optim::constant(1.0));
  const double g[4] = {0.2, -3.0, 0.5, 0.1};
  for (int i = 0; i < 4; ++i) arena.grads().data<double>()[i] = g[i];
  by_value->step(arena, 0);
  EXPECT_EQ(arena.values().at(0), -0.2);
  EXPECT_EQ(arena.values().at(1), 0.5);  // -3 clipped to -0.5
  EXPECT_EQ(by_value->clip_count(), 1);
  // Per tensor: a = (0.2, -3) has norm > 1 and is scaled; b = (0.5, 0.1) is not.
  arena.values().fill(0.0);
  auto by_param = optim::make_optimizer({.name = "sgd", .clip_param_norm = 1.0}, optim::constant(1.0));
  by_param->step(arena, 0);
  const double na = std::sqrt(0.04 + 9.0);
  EXPECT_NEAR(arena.values().at(0), -0.2 / na, 1e-15);
  EXPECT_NEAR(arena.values().at(1), 3.0 / na, 1e-15);
  EXPECT_EQ(arena.values().at(2), -0.5);
  EXPECT_EQ(by_param->clip_count(), 1);
  by_param->step(arena, 1);
  EXPECT_EQ(by_param->clip_count(), 2);
}

// ---- Polyak averaging ----------------------------------------------------------------

TEST(Averaging, ArithmeticAndExponential) {
  // SGD with eps = 1 and g = -1 walks theta = 1, 2, 3, 4: the running mean is 2.5, the
  // exponential average with rho = 0.5 is ((1 * .5 + 2 * .5) * .5 + 3 * .5) * .5 + 4 * .5 = 3.125.
  for (auto [kind, want] : {std::pair{optim::Averaging::arithmetic, 2.5}, std::pair{optim::Averaging::exponential, 3.125}}) {
    ParameterArena arena(DType::f64);
    arena.add("theta", {1});
    auto opt = optim::make_optimizer({.name = "sgd", .averaging = kind, .averaging_rho = 0.5}, optim::constant(1.0));
    EXPECT_FALSE(opt->averaged().defined());
    for (int k = 0; k < 4; ++k) {
      arena.grads().fill(-1.0);
      opt->step(arena, k);
    }
    EXPECT_EQ(arena.values().at(0), 4.0);
    EXPECT_EQ(opt->averaged().at(0), want);
  }
}

// ---- state round trip ------------------------------------------------------------------

TEST(State, SaveLoadContinuesBitForBit) {
  for (const std::string& name : optim::optimizer_names()) {
    for (bool fused : {true, false}) {
      SCOPED_TRACE(name + (fused ? " fused" : " chain"));
      optim::OptimizerSpec spec{.name = name, .clip_global_norm = fused ? 0.0 : 5.0, .averaging = optim::Averaging::arithmetic,
                                .fused = fused};
      auto schedule = [] { return optim::reduce_on_plateau({.eps0 = 0.01, .factor = 0.5, .patience = 1}); };
      auto gradient = [](ParameterArena& a, int k) {
        Rng rng(static_cast<std::uint64_t>(100 + k));
        for (int i = 0; i < 5; ++i) a.grads().data<double>()[i] = a.values().at(i) + rng.normal();
      };
      auto run = [&](optim::Optimizer& opt, ParameterArena& a, int from, int to) {
        for (int k = from; k < to; ++k) {
          opt.prepare(a, k);
          gradient(a, k);
          opt.step(a, k);
          opt.observe(static_cast<double>(k % 3));
        }
      };
      ParameterArena straight(DType::f64), resumed(DType::f64);
      straight.add("w", {5});
      resumed.add("w", {5});
      set_values(straight, {1, -2, 3, -4, 5});
      set_values(resumed, {1, -2, 3, -4, 5});
      auto a = optim::make_optimizer(spec, schedule());
      run(*a, straight, 0, 12);
      auto b = optim::make_optimizer(spec, schedule());
      run(*b, resumed, 0, 5);
      const optim::OptimizerState saved = b->save_state();
      auto c = optim::make_optimizer(spec, schedule());
      c->load_state(resumed, saved);
      run(*c, resumed, 5, 12);
      for (int i = 0; i < 5; ++i) {
        EXPECT_EQ(straight.values().at(i), resumed.values().at(i));
        EXPECT_EQ(a->averaged().at(i), c->averaged().at(i));
      }
      EXPECT_EQ(a->learning_rate(12), c->learning_rate(12));
      EXPECT_EQ(a->clip_count(), c->clip_count());
    }
  }
}

TEST(State, MismatchedStateIsRejected) {
  ParameterArena arena(DType::f64);
  arena.add("w", {3});
  auto adam = optim::make_optimizer({.name = "adam"}, nullptr);
  auto momentum = optim::make_optimizer({.name = "momentum"}, nullptr);
  arena.grads().fill(1.0);
  adam->step(arena, 0);
  EXPECT_THROW(momentum->load_state(arena, adam->save_state()), DataError);
  ParameterArena bigger(DType::f64);
  bigger.add("w", {4});
  auto adam2 = optim::make_optimizer({.name = "adam"}, nullptr);
  EXPECT_THROW(adam2->load_state(bigger, adam->save_state()), DataError);
}

// ---- Nesterov needs prepare() -----------------------------------------------------------

TEST(Nesterov, StepWithoutPrepareIsAnError) {
  ParameterArena arena(DType::f64);
  arena.add("w", {2});
  auto opt = optim::make_optimizer({.name = "nesterov"}, nullptr);
  EXPECT_THROW(opt->step(arena, 0), ConfigError);
  // With prepare, the parameters stand at theta + alpha v while the gradient is taken:
  // after one step from theta = 0 with g = 1, v = -0.01, and prepare(1) moves theta to
  // -0.01 + 0.9 * -0.01 = -0.019.
  opt->prepare(arena, 0);
  arena.grads().fill(1.0);
  opt->step(arena, 0);
  EXPECT_NEAR(arena.values().at(0), -0.01, 1e-17);
  opt->prepare(arena, 1);
  EXPECT_NEAR(arena.values().at(0), -0.019, 1e-17);
  opt->prepare(arena, 1);  // a second call for the same update does not move further
  EXPECT_NEAR(arena.values().at(0), -0.019, 1e-17);
}

// ---- bad hyperparameters ----------------------------------------------------------------

void expect_config_error(const optim::OptimizerSpec& spec, const std::string& algorithm, const std::string& field) {
  try {
    optim::make_optimizer(spec, nullptr);
    ADD_FAILURE() << "no ConfigError for " << algorithm << " " << field;
  } catch (const ConfigError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(algorithm), std::string::npos) << what;
    EXPECT_NE(what.find(field), std::string::npos) << what;
  }
}

TEST(Hyperparameters, BadValuesAreRejectedNamingAlgorithmAndField) {
  expect_config_error({.name = "rmsprop", .rho = 1.0}, "rmsprop", "rho");
  expect_config_error({.name = "adam", .rho1 = -0.1}, "adam", "rho1");
  expect_config_error({.name = "adam", .rho2 = 1.5}, "adam", "rho2");
  expect_config_error({.name = "adagrad", .delta = 0.0}, "adagrad", "delta");
  expect_config_error({.name = "momentum", .momentum = 1.0}, "momentum", "momentum");
  expect_config_error({.name = "sgd", .lr = -0.1}, "sgd", "lr");
  expect_config_error({.name = "adamw", .weight_decay = -1.0}, "adamw", "weight_decay");
  expect_config_error({.name = "adagrad", .form = "keras"}, "adagrad", "form");
  expect_config_error({.name = "lbfgs"}, "lbfgs", "name");
  expect_config_error({.name = "rmsprop_nesterov", .form = "pytorch"}, "rmsprop_nesterov", "PyTorch");
  EXPECT_THROW(optim::scale_by_rms({.rho = 1.0}), ConfigError);
  EXPECT_THROW(optim::scale_by_adam({.delta = -1.0}), ConfigError);
  EXPECT_THROW(optim::clip_by_global_norm(0.0), ConfigError);
  EXPECT_THROW(optim::trace({.alpha = -0.5}), ConfigError);
}

// A hand-built chain is an optimizer too: clip, then PyTorch-form momentum.
TEST(Chain, HandBuiltChainComposes) {
  ParameterArena arena(DType::f64);
  arena.add("w", {1});
  auto opt = optim::make_optimizer(optim::chain(optim::clip_by_value(1.0), optim::trace({.alpha = 0.5}),
                                                optim::scale_by_learning_rate(optim::constant(0.5))));
  // g = 4 -> clipped 1 -> v = 1 -> theta = -0.5;  g = -4 -> -1 -> v = 0.5 - 1 = -0.5 -> theta = -0.25.
  arena.grads().fill(4.0);
  opt->step(arena, 0);
  EXPECT_EQ(arena.values().at(0), -0.5);
  arena.grads().fill(-4.0);
  opt->step(arena, 1);
  EXPECT_EQ(arena.values().at(0), -0.25);
  EXPECT_EQ(opt->clip_count(), 2);
}

}  // namespace
}  // namespace descent
