// SGD and momentum against trajectories written out by hand and computed independently
// (plain scalar double loops in the test, not the implementation); the linear schedule's
// values at chosen steps.
#include <gtest/gtest.h>

#include <cmath>

#include "descent/optim/optimizer.hpp"

namespace descent {
namespace {

// f(theta) = 1/2 sum_i a_i theta_i^2, gradient a (.) theta.
void set_gradient(ParameterArena& arena, const std::vector<double>& a) {
  for (std::size_t i = 0; i < a.size(); ++i) {
    arena.grads().data<double>()[i] = a[i] * arena.values().data<double>()[i];
  }
}

ParameterArena& quadratic(ParameterArena& arena, std::vector<double> theta0) {
  arena.add("theta", {static_cast<std::int64_t>(theta0.size())});
  for (std::size_t i = 0; i < theta0.size(); ++i) arena.values().data<double>()[i] = theta0[i];
  return arena;
}

TEST(Schedule, LinearDecayValues) {
  auto s = optim::linear_decay(0.1, 0.001, 100);
  EXPECT_DOUBLE_EQ(s->at(0), 0.1);
  EXPECT_DOUBLE_EQ(s->at(50), 0.5 * 0.1 + 0.5 * 0.001);  // halfway: the mean
  EXPECT_DOUBLE_EQ(s->at(25), 0.75 * 0.1 + 0.25 * 0.001);
  EXPECT_DOUBLE_EQ(s->at(100), 0.001);
  EXPECT_DOUBLE_EQ(s->at(1000), 0.001);  // constant after tau
  EXPECT_DOUBLE_EQ(optim::constant(0.3)->at(12345), 0.3);
  EXPECT_THROW(optim::linear_decay(0.1, 0.001, 0), ConfigError);
  EXPECT_THROW(optim::linear_decay(-0.1, 0.001, 10), ConfigError);
  EXPECT_THROW(optim::constant(0.0), ConfigError);
}

TEST(Sgd, ExactStepsByHand) {
  // a = (1, 2), theta0 = (1, 1), eps = 0.25 (powers of two: exact in binary).
  // k=0: g = (1, 2)      theta = (1 - 0.25, 1 - 0.5)         = (0.75, 0.5)
  // k=1: g = (0.75, 1)   theta = (0.75 - 0.1875, 0.5 - 0.25) = (0.5625, 0.25)
  // k=2: g = (0.5625, 0.5) theta = (0.421875, 0.125)
  ParameterArena arena(DType::f64);
  quadratic(arena, {1.0, 1.0});
  auto opt = optim::sgd({.schedule = optim::constant(0.25)});
  const double expected[3][2] = {{0.75, 0.5}, {0.5625, 0.25}, {0.421875, 0.125}};
  for (int k = 0; k < 3; ++k) {
    set_gradient(arena, {1.0, 2.0});
    opt->step(arena, k);
    EXPECT_EQ(arena.values().at(0), expected[k][0]);
    EXPECT_EQ(arena.values().at(1), expected[k][1]);
  }
  EXPECT_TRUE(opt->state().empty());
}

TEST(Momentum, ExactStepsByHand) {
  // a = (1), theta0 = 1, eps = 0.5, alpha = 0.5.
  // k=0: g = 1      v = 0.5*0 - 0.5*1 = -0.5          theta = 0.5
  // k=1: g = 0.5    v = -0.25 - 0.25 = -0.5           theta = 0
  // k=2: g = 0      v = -0.25 - 0 = -0.25             theta = -0.25
  // k=3: g = -0.25  v = -0.125 + 0.125 = 0            theta = -0.25
  ParameterArena arena(DType::f64);
  quadratic(arena, {1.0});
  auto opt = optim::sgd({.schedule = optim::constant(0.5), .alpha = 0.5});
  for (double expected : {0.5, 0.0, -0.25, -0.25}) {
    set_gradient(arena, {1.0});
    opt->step(arena, 0);
    EXPECT_EQ(arena.values().at(0), expected);
  }
}

TEST(Momentum, TrajectoryUnderALinearScheduleMatchesAnIndependentLoop) {
  const std::vector<double> a = {0.3, 1.7, 4.0};
  const std::vector<double> theta0 = {1.0, -2.0, 0.5};
  auto schedule = optim::linear_decay(0.2, 0.002, 7);
  ParameterArena arena(DType::f64);
  quadratic(arena, theta0);
  auto opt = optim::sgd({.schedule = schedule, .alpha = 0.9});
  // The reference: Algorithm 8.2 in scalar double code, schedule eq. 8.14 written out.
  std::vector<double> theta = theta0, v(3, 0.0);
  for (int k = 0; k < 12; ++k) {
    const double t = std::min(1.0, k / 7.0);
    const double eps = (1 - t) * 0.2 + t * 0.002;
    for (int i = 0; i < 3; ++i) {
      v[static_cast<std::size_t>(i)] = 0.9 * v[static_cast<std::size_t>(i)] - eps * a[static_cast<std::size_t>(i)] * theta[static_cast<std::size_t>(i)];
      theta[static_cast<std::size_t>(i)] += v[static_cast<std::size_t>(i)];
    }
    set_gradient(arena, a);
    opt->step(arena, k);
    for (int i = 0; i < 3; ++i) EXPECT_NEAR(arena.values().at(i), theta[static_cast<std::size_t>(i)], 1e-15 * (1 + std::abs(theta[static_cast<std::size_t>(i)])));
  }
}

TEST(Momentum, TerminalVelocityUnderAConstantGradient) {
  // With a constant gradient g the velocity approaches eps |g| / (1 - alpha) (section 8.3.2).
  ParameterArena arena(DType::f64);
  arena.add("theta", {1});
  auto opt = optim::sgd({.schedule = optim::constant(0.1), .alpha = 0.9});
  double previous = 0.0;
  for (int k = 0; k < 400; ++k) {
    previous = arena.values().at(0);
    arena.grads().fill(2.0);
    opt->step(arena, k);
  }
  EXPECT_NEAR(previous - arena.values().at(0), 0.1 * 2.0 / (1 - 0.9), 1e-12);
  EXPECT_THROW(optim::sgd({.schedule = optim::constant(0.1), .alpha = 1.0}), ConfigError);
}

}  // namespace
}  // namespace descent
