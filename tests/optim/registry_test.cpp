// The registry of optimizers and schedules (optim/registry.hpp): every entry builds from a
// config and does its job, schedules give the rates of their formulas (computed here by
// hand), and unknown names are refused with a suggestion.
#include "descent/optim/registry.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <set>
#include <string>

#include "descent/error.hpp"

namespace descent {
namespace {

// f(theta) = 1/2 sum_i c_i theta_i^2 on 4 coordinates: gradient c_i theta_i.
double quadratic(ParameterArena& a) {
  double f = 0.0;
  for (int i = 0; i < 4; ++i) f += 0.5 * (1.0 + i) * a.values().at(i) * a.values().at(i);
  return f;
}

// Every registered optimizer, in both forms where it has them, built from a config the way
// the trainer builds it, lowers a convex quadratic by half within 2000 steps.
TEST(Registry, EveryOptimizerBuildsFromConfigAndTrains) {
  ASSERT_FALSE(optim::optimizers().empty());
  for (const optim::OptimizerEntry& e : optim::optimizers()) {
    for (const char* form : {"textbook", "pytorch"}) {
      if (std::string(form) == "pytorch" && !e.has_pytorch_form) continue;
      SCOPED_TRACE(std::string(e.name) + " " + form);
      optim::OptimizerConfig config;
      config.name = std::string(e.name);
      config.form = form;
      EXPECT_TRUE(optim::check_keys(config).key.empty());
      auto opt = optim::make_optimizer(config, {}, {}, {}, 2000);
      ASSERT_TRUE(opt);
      ParameterArena arena(DType::f64);
      arena.add("theta", {4});
      for (int i = 0; i < 4; ++i) arena.values().data<double>()[i] = 1.0;
      const double start = quadratic(arena);
      for (int k = 0; k < 2000; ++k) {
        opt->prepare(arena, k);
        for (int i = 0; i < 4; ++i) arena.grads().data<double>()[i] = (1.0 + i) * arena.values().at(i);
        opt->step(arena, k);
      }
      const double end = quadratic(arena);
      EXPECT_TRUE(std::isfinite(end));
      EXPECT_LT(end, 0.5 * start) << "from " << start << " to " << end;
      // The registry's default rate is the one the optimizer starts from (adadelta's
      // textbook form runs at rate 1 whatever lr says).
      const optim::OptimizerDefaults& d = std::string(form) == "pytorch" ? e.pytorch : e.textbook;
      EXPECT_EQ(opt->learning_rate(0), d.lr);
    }
  }
}

TEST(Registry, NamesAreUniqueAndListedInOrder) {
  std::set<std::string_view> seen;
  ASSERT_EQ(optim::optimizer_name_list().size(), optim::optimizers().size());
  for (std::size_t i = 0; i < optim::optimizers().size(); ++i) {
    EXPECT_EQ(optim::optimizer_name_list()[i], optim::optimizers()[i].name);
    EXPECT_TRUE(seen.insert(optim::optimizers()[i].name).second);
    EXPECT_EQ(optim::optimizer_names()[i], optim::optimizers()[i].name);
    EXPECT_FALSE(optim::optimizers()[i].doc.empty());
  }
  for (const optim::ScheduleEntry& e : optim::schedules()) {
    EXPECT_TRUE(seen.insert(e.name).second) << e.name;
    EXPECT_EQ(optim::find_schedule(e.name), &e);
  }
}

TEST(Registry, UnknownNamesSuggestTheClosest) {
  EXPECT_EQ(optim::unknown_optimizer("adamm"),
            "unknown optimizer name \"adamm\"; expected one of sgd, momentum, nesterov, adagrad, rmsprop, rmsprop_nesterov, "
            "adadelta, adam, adamw, amsgrad, adamax, nadam; did you mean adam?");
  EXPECT_EQ(optim::find_optimizer("adamm"), nullptr);
  try {
    optim::make_schedule({.name = "cosin"}, 0.1, 10);
    ADD_FAILURE() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("unknown schedule name \"cosin\"; expected one of constant, linear, step, "
                                         "exponential, inverse_time, cosine, plateau; did you mean cosine?"),
              std::string::npos)
        << e.what();
  }
}

// Each schedule of the config gives eps_k of its formula, evaluated here by hand.
TEST(Registry, EveryScheduleIsReachableFromConfig) {
  const double lr = 0.2;
  const std::int64_t total = 100;
  optim::ScheduleConfig s;
  std::set<std::string_view> checked;
  const auto rate = [&](std::string_view name, std::int64_t k, double scale = 1.0) {
    s.name = std::string(name);
    checked.insert(name);
    return optim::make_schedule(s, lr, total, scale)->at(k);
  };
  EXPECT_DOUBLE_EQ(rate("constant", 57), 0.2);
  s.lr_end = -1;  // lr / 100; tau = 0: the whole run
  EXPECT_DOUBLE_EQ(rate("linear", 25), 0.75 * 0.2 + 0.25 * 0.002);
  EXPECT_DOUBLE_EQ(rate("linear", 500), 0.002);
  s.gamma = 0.5;
  s.every = 10;
  EXPECT_DOUBLE_EQ(rate("step", 25), 0.2 * 0.25);
  EXPECT_DOUBLE_EQ(rate("exponential", 3), 0.2 * 0.125);
  s.decay = 0.1;
  EXPECT_DOUBLE_EQ(rate("inverse_time", 30), 0.2 / 4.0);
  s.lr_end = 0.02;
  s.warmup = 10;
  s.tau = 50;
  EXPECT_DOUBLE_EQ(rate("cosine", 4), 0.2 * 5 / 10);
  EXPECT_DOUBLE_EQ(rate("cosine", 30), 0.02 + 0.18 * 0.5);  // halfway from 10 to 50: cos(pi/2) = 0
  EXPECT_DOUBLE_EQ(rate("cosine", 30, 0.5), 0.01 + 0.09 * 0.5);  // lr_scale scales lr and the floor
  s.factor = 0.5;
  s.patience = 0;
  s.name = "plateau";
  checked.insert("plateau");
  auto plateau = optim::make_schedule(s, lr, total);
  plateau->observe(1.0);
  EXPECT_DOUBLE_EQ(plateau->at(0), 0.2);
  plateau->observe(1.0);  // no improvement, patience 0: cut
  EXPECT_DOUBLE_EQ(plateau->at(0), 0.1);
  EXPECT_EQ(checked.size(), optim::schedules().size()) << "a registered schedule is not checked here";
}

optim::OptimizerConfig named(const char* name, void (*set)(optim::OptimizerConfig&)) {
  optim::OptimizerConfig c;
  c.name = name;
  set(c);
  return c;
}

TEST(Registry, ConflictsNameTheKey) {
  const auto sgd_momentum = named("sgd", [](optim::OptimizerConfig& c) { c.momentum = 0.9; });
  const auto adam_centered = named("adam", [](optim::OptimizerConfig& c) { c.centered = true; });
  EXPECT_EQ(optim::check_keys(sgd_momentum).key, "optimizer.momentum");
  EXPECT_TRUE(optim::check_keys(named("sgd", [](optim::OptimizerConfig& c) { c.momentum = 0.0; })).key.empty());
  EXPECT_EQ(optim::check_keys(adam_centered).key, "optimizer.centered");
  EXPECT_EQ(optim::check_keys(named("rmsprop", [](optim::OptimizerConfig& c) { c.amsgrad = true; })).message,
            "only adam and adamw read it, not optimizer.name = \"rmsprop\"; remove it or set it to false");
  EXPECT_EQ(optim::check_keys(named("rmsprop_nesterov", [](optim::OptimizerConfig& c) { c.form = "pytorch"; })).key,
            "optimizer.form");
  // Each conflict is one make_optimizer refuses too.
  EXPECT_THROW(optim::make_optimizer(sgd_momentum, {}, {}, {}, 10), ConfigError);
  EXPECT_THROW(optim::make_optimizer(adam_centered, {}, {}, {}, 10), ConfigError);
}

}  // namespace
}  // namespace descent
