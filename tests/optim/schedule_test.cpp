// Each schedule's values at chosen steps (worked out in the comments), its range checks,
// and reduce-on-plateau's reaction to a reported metric.
#include <gtest/gtest.h>

#include <cmath>
#include <numbers>

#include "descent/error.hpp"
#include "descent/optim/schedule.hpp"

namespace descent {
namespace {

TEST(Schedules, StepDecay) {
  auto s = optim::step_decay({.eps0 = 0.8, .gamma = 0.5, .every = 3});
  // floor(k / 3) = 0, 0, 0, 1, 1, 1, 2: 0.8, 0.8, 0.8, 0.4, 0.4, 0.4, 0.2
  EXPECT_EQ(s->at(0), 0.8);
  EXPECT_EQ(s->at(2), 0.8);
  EXPECT_EQ(s->at(3), 0.4);
  EXPECT_EQ(s->at(5), 0.4);
  EXPECT_EQ(s->at(6), 0.2);
  EXPECT_THROW(optim::step_decay({.eps0 = 0.8, .gamma = 1.5}), ConfigError);
  EXPECT_THROW(optim::step_decay({.eps0 = 0.8, .every = 0}), ConfigError);
}

TEST(Schedules, ExponentialAndInverseTime) {
  auto e = optim::exponential_decay({.eps0 = 1.0, .gamma = 0.5});
  EXPECT_EQ(e->at(0), 1.0);
  EXPECT_EQ(e->at(3), 0.125);  // 0.5^3
  auto it = optim::inverse_time({.eps0 = 0.6, .decay = 0.5});
  EXPECT_DOUBLE_EQ(it->at(0), 0.6);
  EXPECT_DOUBLE_EQ(it->at(4), 0.2);  // 0.6 / (1 + 0.5 * 4)
  EXPECT_THROW(optim::inverse_time({.eps0 = 0.6, .decay = -1.0}), ConfigError);
  EXPECT_THROW(optim::exponential_decay({.eps0 = -1.0}), ConfigError);
}

TEST(Schedules, CosineWithWarmup) {
  auto s = optim::cosine({.eps0 = 1.0, .eps_min = 0.2, .warmup = 4, .total = 14});
  EXPECT_DOUBLE_EQ(s->at(0), 0.25);  // (0 + 1) / 4
  EXPECT_DOUBLE_EQ(s->at(3), 1.0);   // (3 + 1) / 4
  EXPECT_DOUBLE_EQ(s->at(4), 1.0);   // t = 0: eps0
  EXPECT_NEAR(s->at(9), 0.6, 1e-15);  // t = 1/2: cos = 0, the midpoint of 0.2 and 1
  EXPECT_DOUBLE_EQ(s->at(14), 0.2);  // t = 1: eps_min
  EXPECT_DOUBLE_EQ(s->at(100), 0.2);
  EXPECT_THROW(optim::cosine({.eps0 = 1.0, .warmup = 10, .total = 10}), ConfigError);
  EXPECT_THROW(optim::cosine({.eps0 = 1.0, .eps_min = 2.0}), ConfigError);
}

TEST(Schedules, ReduceOnPlateau) {
  auto s = optim::reduce_on_plateau({.eps0 = 1.0, .factor = 0.5, .patience = 2, .threshold = 0.1});
  s->observe(10.0);  // best 10
  s->observe(9.5);   // not below 10 * 0.9: bad 1
  s->observe(9.2);   // bad 2
  EXPECT_EQ(s->at(0), 1.0);
  s->observe(8.0);   // below 9: improvement, bad 0
  s->observe(8.0);   // bad 1
  s->observe(8.0);   // bad 2
  EXPECT_EQ(s->at(7), 1.0);
  s->observe(8.0);   // bad 3 > patience 2: halve
  EXPECT_EQ(s->at(7), 0.5);
  // The state round-trips: a fresh schedule with it continues identically.
  auto t = optim::reduce_on_plateau({.eps0 = 1.0, .factor = 0.5, .patience = 2, .threshold = 0.1});
  t->load_state(s->state());
  for (double m : {8.0, 8.0, 8.0}) {
    s->observe(m);
    t->observe(m);
  }
  EXPECT_EQ(s->at(0), 0.25);
  EXPECT_EQ(t->at(0), 0.25);
  EXPECT_THROW(t->load_state({1.0}), DataError);
  EXPECT_THROW(optim::reduce_on_plateau({.eps0 = 1.0, .factor = 1.0}), ConfigError);
}

TEST(Schedules, ErrorsNameTheScheduleAndTheField) {
  try {
    optim::cosine({.eps0 = 0.0});
    FAIL() << "no ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("cosine"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("eps0"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace descent
