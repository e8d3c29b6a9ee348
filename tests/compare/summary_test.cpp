// The summary's reading of a run folder (compare/summary.hpp) on hand-written metrics.jsonl:
// a run that diverged, an interrupted one, and the mean and sample deviation by hand.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "descent/compare/summary.hpp"

namespace {

namespace fs = std::filesystem;
using namespace descent;

fs::path folder(const std::string& name, const std::string& metrics, const std::string& status) {
  const fs::path dir = fs::path(DESCENT_BINARY_DIR) / "compare-test" / ("summary-" + std::to_string(::getpid())) / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::ofstream(dir / "metrics.jsonl") << metrics;
  std::ofstream(dir / "run.json") << "{\"format\": \"descent-run/1\", \"run_id\": \"0123456789abcdef\", \"status\": \"" << status
                                  << "\"}\n";
  return dir;
}

const std::string kEpochs =
    "{\"kind\":\"header\",\"step\":0,\"epoch\":0}\n"
    "{\"kind\":\"epoch\",\"epoch\":0,\"step\":0,\"val_error\":0.1,\"train_loss\":2.0,\"wall_s\":0.5}\n"
    "{\"kind\":\"epoch\",\"epoch\":1,\"step\":10,\"val_error\":0.4,\"train_loss\":1.0,\"wall_s\":1.5}\n"
    "{\"kind\":\"epoch\",\"epoch\":2,\"step\":20,\"val_error\":0.25,\"train_loss\":0.5,\"wall_s\":2.5}\n";

TEST(Summary, DivergedRunKeepsItsEpochsAndCountsTheDivergence) {
  const fs::path dir = folder("div", kEpochs +
                                         "{\"kind\":\"stopped\",\"reason\":\"diverged\",\"step\":25,\"epoch\":3,"
                                         "\"divergences\":1,\"wall_s\":3.0}\n",
                              "failed");
  const compare::RunOutcome o = compare::read_run(dir, 0.3);
  EXPECT_EQ(o.status, "diverged");
  EXPECT_EQ(o.divergences, 1);
  // Epoch 0 (0.1) is the initial parameters: not a candidate for the best epoch.
  EXPECT_DOUBLE_EQ(*o.best_val_error, 0.25);
  EXPECT_EQ(*o.best_epoch, 2);
  EXPECT_FALSE(o.test_error.has_value());
  // The first epoch at or below 0.3 is epoch 0 (the target counts the initial evaluation too).
  EXPECT_DOUBLE_EQ(*o.time_to_target_s, 0.5);
  EXPECT_EQ(*o.steps_to_target, 0);
  EXPECT_DOUBLE_EQ(*o.wall_s, 3.0);
  EXPECT_EQ(o.curve.size(), 3u);
}

TEST(Summary, FinalRecordWins) {
  const fs::path dir = folder("fin", kEpochs +
                                         "{\"kind\":\"final\",\"best_val_error\":0.25,\"best_epoch\":2,\"test_error\":0.27,"
                                         "\"divergences\":0,\"wall_s\":2.75,\"steps\":20}\n",
                              "finished");
  const compare::RunOutcome o = compare::read_run(dir, 0.05);
  EXPECT_EQ(o.status, "finished");
  EXPECT_DOUBLE_EQ(*o.test_error, 0.27);
  EXPECT_DOUBLE_EQ(*o.wall_s, 2.75);
  EXPECT_FALSE(o.time_to_target_s.has_value());  // never at or below 5%
}

TEST(Summary, InterruptedFailedAndMissing) {
  EXPECT_EQ(compare::read_run(folder("int", kEpochs, "running"), std::nullopt).status, "interrupted");
  EXPECT_EQ(compare::read_run(folder("bad", kEpochs, "failed"), std::nullopt).status, "failed");
  EXPECT_EQ(compare::read_run(fs::path(DESCENT_BINARY_DIR) / "compare-test" / "nowhere", std::nullopt).status, "missing");
}

TEST(Summary, MeanAndSampleDeviationByHand) {
  // 0.2, 0.3, 0.4: mean 0.3, sample variance ((0.1)^2 + 0 + (0.1)^2) / 2 = 0.01.
  const compare::Stat s = compare::stat_of({0.2, 0.3, 0.4});
  EXPECT_EQ(s.n, 3u);
  EXPECT_NEAR(s.mean, 0.3, 1e-15);
  EXPECT_NEAR(s.std, 0.1, 1e-15);
  EXPECT_EQ(compare::stat_of({0.5}).std, 0.0);
  EXPECT_EQ(compare::stat_of({}).n, 0u);
}

}  // namespace
