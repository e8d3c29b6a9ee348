// train::ThreadRuleTuner's schedule and choice with timings given by hand (record) or by a
// fake clock (begin_step / end_step), and the named rules.
#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "descent/tensor/kernels.hpp"
#include "descent/tensor/parallel.hpp"
#include "descent/train/thread_rule.hpp"

namespace descent {
namespace {

using train::ThreadRule;
using train::ThreadRuleTuner;

// The process-wide thresholds as they were before the test.
class ThreadRuleTest : public ::testing::Test {
 protected:
  void TearDown() override {
    kernels::set_gemm_serial_below(gemm_);
    set_elementwise_serial_below(serial_);
    set_elementwise_follow_below(follow_);
  }
  std::int64_t gemm_ = kernels::gemm_serial_below(), serial_ = elementwise_serial_below(),
               follow_ = elementwise_follow_below();
};

const std::vector<ThreadRule> kThree = {{"a", 100, 7, 8}, {"b", 10, 7, 8}, {"c", 0, 7, 8}};

TEST_F(ThreadRuleTest, TheNamedRulesAreTheBuiltInThresholdsAndTwoLowerOnes) {
  const auto rules = train::thread_rules();
  ASSERT_EQ(rules.size(), 3u);
  EXPECT_EQ(rules[0].name, "small_serial");
  EXPECT_EQ(rules[0].gemm_serial_below, std::int64_t{1} << 23);
  EXPECT_EQ(train::thread_rule("tiny_serial").gemm_serial_below, std::int64_t{1} << 20);
  EXPECT_EQ(train::thread_rule("parallel").gemm_serial_below, 0);
  for (const ThreadRule& r : rules) {
    EXPECT_EQ(r.elementwise_serial_below, std::int64_t{1} << 17) << r.name;
    EXPECT_EQ(r.elementwise_follow_below, std::int64_t{1} << 20) << r.name;
  }
  train::thread_rule("parallel").apply();
  EXPECT_EQ(kernels::gemm_serial_below(), 0);
  ThreadRule{"x", 5, 6, 7}.apply();
  EXPECT_EQ(kernels::gemm_serial_below(), 5);
  EXPECT_EQ(elementwise_serial_below(), 6);
  EXPECT_EQ(elementwise_follow_below(), 7);
}

TEST_F(ThreadRuleTest, AnUnknownRuleNameIsAnErrorListingTheKnownOnes) {
  try {
    (void)train::thread_rule("fast");
    FAIL() << "no error";
  } catch (const std::invalid_argument& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("'fast'"), std::string::npos) << m;
    EXPECT_NE(m.find("small_serial, tiny_serial, parallel"), std::string::npos) << m;
  }
}

TEST_F(ThreadRuleTest, BadOptionsAreRefused) {
  EXPECT_THROW(ThreadRuleTuner({}, {}), std::invalid_argument);
  EXPECT_THROW(ThreadRuleTuner(kThree, {.steps_per_turn = 1}), std::invalid_argument);
  EXPECT_THROW(ThreadRuleTuner(kThree, {.rounds = 0}), std::invalid_argument);
  EXPECT_THROW(ThreadRuleTuner(kThree, {.warmup_steps = -1}), std::invalid_argument);
  EXPECT_THROW(ThreadRuleTuner(kThree, {.margin = 1.0}), std::invalid_argument);
}

// warmup 1, turns of 2 steps, 2 rounds of 3 candidates, the second round rotated by one.
TEST_F(ThreadRuleTest, TheScheduleAlternatesTheCandidatesInRotatedRounds) {
  ThreadRuleTuner t(kThree, {.warmup_steps = 1, .steps_per_turn = 2, .rounds = 2});
  EXPECT_EQ(t.schedule_steps(), 1 + 2 * 3 * 2);
  const std::vector<std::size_t> expected = {0, 0, 0, 1, 1, 2, 2, 1, 1, 2, 2, 0, 0};
  std::vector<std::size_t> got;
  for (int s = 0; s < 13; ++s) {
    EXPECT_FALSE(t.done()) << s;
    got.push_back(t.record(1.0));
  }
  EXPECT_EQ(got, expected);
  EXPECT_TRUE(t.done());
}

// Steps under b take 2 ms, a 3 ms, c 2.5 ms: b is chosen and stays.
TEST_F(ThreadRuleTest, PicksTheFasterCandidateAndKeepsIt) {
  ThreadRuleTuner t(kThree, {.warmup_steps = 2, .steps_per_turn = 3, .rounds = 4});
  const double ms[] = {3e-3, 2e-3, 2.5e-3};
  while (!t.done()) t.record(ms[t.next_candidate()]);
  EXPECT_EQ(t.chosen_index(), 1u);
  EXPECT_EQ(t.chosen().name, "b");
  EXPECT_EQ(kernels::gemm_serial_below(), 10);  // applied when chosen
  const std::vector<double> m = t.medians();
  EXPECT_DOUBLE_EQ(m[0], 3e-3);
  EXPECT_DOUBLE_EQ(m[1], 2e-3);
  EXPECT_DOUBLE_EQ(m[2], 2.5e-3);
  EXPECT_EQ(t.summary(), "b (median ms per step: a 3.000, b 2.000, c 2.500)");
  for (int s = 0; s < 100; ++s) {
    EXPECT_EQ(t.record(s % 2 ? 1e-3 : 9.0), 1u);  // later timings change nothing
    t.begin_step();
    EXPECT_EQ(kernels::gemm_serial_below(), 10);
    t.end_step();
  }
  EXPECT_EQ(t.chosen_index(), 1u);
  EXPECT_EQ(t.medians(), m);
}

// The first candidate stays unless another is faster by the margin (3% by default).
TEST_F(ThreadRuleTest, TheFirstCandidateStaysWithinTheMargin) {
  for (const auto& [other, winner] : std::vector<std::pair<double, std::size_t>>{{0.98, 0u}, {0.96, 1u}, {1.2, 0u}}) {
    ThreadRuleTuner t({kThree[0], kThree[1]}, {.warmup_steps = 0, .steps_per_turn = 2, .rounds = 3});
    while (!t.done()) t.record(t.next_candidate() == 0 ? 1.0 : other);
    EXPECT_EQ(t.chosen_index(), winner) << other;
  }
}

// The first step of each turn and the warm-up are not timed, and one slow step per candidate
// does not move its median. Turns of 2 steps: half of b's steps are switch steps (10 s), which
// counted would make its median 10; the warm-up (0.1 s, 5 steps under a) counted would make a's
// 0.1; b's one outlier (50 s of 3 timed steps) leaves its median at 1.
TEST_F(ThreadRuleTest, SwitchStepsAndOutliersDoNotDecide) {
  ThreadRuleTuner t({kThree[0], kThree[1]}, {.warmup_steps = 5, .steps_per_turn = 2, .rounds = 3});
  std::int64_t s = 0;
  bool outlier = false;
  while (!t.done()) {
    double seconds = 1.0;
    if (s < 5) seconds = 0.1;
    else if (t.next_candidate() == 0) seconds = 2.0;
    else if ((s - 5) % 2 == 0) seconds = 10.0;  // b's switch steps
    else if (!outlier) seconds = 50.0, outlier = true;
    t.record(seconds);
    ++s;
  }
  EXPECT_EQ(s, 5 + 3 * 2 * 2);
  EXPECT_EQ(t.chosen_index(), 1u);
  EXPECT_DOUBLE_EQ(t.medians()[0], 2.0);
  EXPECT_DOUBLE_EQ(t.medians()[1], 1.0);
}

// begin_step applies each step's rule and the clock measures the step: a fake clock that
// advances by what the step's rule costs (read from the process-wide threshold begin_step set).
TEST_F(ThreadRuleTest, BeginStepAppliesTheRuleTheClockTimes) {
  double now = 0;
  ThreadRuleTuner t(kThree, {.warmup_steps = 1, .steps_per_turn = 2, .rounds = 2}, [&now] { return now; });
  std::vector<std::int64_t> applied;
  while (!t.done()) {
    t.begin_step();
    applied.push_back(kernels::gemm_serial_below());
    now += kernels::gemm_serial_below() == 0 ? 1.0 : 2.0;  // c (0: all parallel) is faster
    t.end_step();
  }
  EXPECT_EQ(applied, (std::vector<std::int64_t>{100, 100, 100, 10, 10, 0, 0, 10, 10, 0, 0, 100, 100}));
  EXPECT_EQ(t.chosen().name, "c");
  EXPECT_EQ(kernels::gemm_serial_below(), 0);
  EXPECT_DOUBLE_EQ(t.medians()[2], 1.0);
}

TEST_F(ThreadRuleTest, OneCandidateIsChosenWithoutASchedule) {
  ThreadRuleTuner t({kThree[2]});
  EXPECT_TRUE(t.done());
  EXPECT_EQ(t.schedule_steps(), 0);
  t.begin_step();
  EXPECT_EQ(kernels::gemm_serial_below(), 0);
  t.end_step();
  EXPECT_EQ(t.chosen().name, "c");
}

}  // namespace
}  // namespace descent
