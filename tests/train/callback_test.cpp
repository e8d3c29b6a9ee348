// The training loop's hooks (train/callback.hpp): callbacks see every step and epoch in
// order, see the gradient before the update, can stop the run where they ask, and keep their
// state across an interruption and resume.
#include <gtest/gtest.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "descent/init/rng.hpp"
#include "descent/io/json_lines.hpp"
#include "descent/train/callback.hpp"
#include "descent/train/trainer.hpp"

#include "support/synthetic_csv.hpp"

namespace descent {
namespace {

namespace fs = std::filesystem;

class CallbackTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("descent_callback_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    testing::write_blobs(dir_ / "train.csv", 300, 1, testing::Blobs::separated);
    testing::write_blobs(dir_ / "test.csv", 60, 2, testing::Blobs::separated);
  }
  void TearDown() override {
    train::clear_stop_request();
    fs::remove_all(dir_);
  }


  // 200 training examples in batches of 32: 7 updates per epoch.
  train::TrainConfig config(const std::string& extra = "", const std::string& optimizer = "name = \"momentum\"\nlr = 0.05") {
    std::ostringstream t;
    t << "name = \"run\"\nseed = 3\nepochs = 4\nout_dir = \"" << dir_.string() << "\"\nprogress = \"none\"\n"
      << extra << "\n[data]\nformat = \"csv\"\ntrain_features = \"" << (dir_ / "train.csv").string()
      << "\"\ntest_features = \"" << (dir_ / "test.csv").string()
      << "\"\nscale = 1.0\nvalidation_size = 100\n[model]\nhidden = [8]\nactivation = \"tanh\"\n"
      << "[optimizer]\n" << optimizer << "\n[sampler]\nbatch_size = 32\n[early_stopping]\nenabled = false\n";
    return train::parse_train_config(t.str(), "test.toml");
  }

  static std::vector<nlohmann::json> records(const fs::path& run_dir, const std::string& kind) {
    std::vector<nlohmann::json> out;
    for (const auto& r : io::read_json_lines(run_dir / "metrics.jsonl")) {
      if (r.at("kind") == kind) out.push_back(r);
    }
    return out;
  }

  fs::path dir_;
};

// Writes down every event it sees, in order.
struct Recorder : train::Callback {
  std::vector<std::string> events;
  std::vector<std::int64_t> steps, epochs_ended;
  std::vector<double> losses;
  int stops = 0;
  train::StopReason reason{};
  void before_update(const train::StepContext& c) override { events.push_back("before " + std::to_string(c.step)); }
  bool on_step(const train::StepContext& c) override {
    events.push_back("step " + std::to_string(c.step));
    steps.push_back(c.step);
    losses.push_back(c.gradient.loss_value);
    return false;
  }
  bool on_epoch_end(const train::EpochContext& c) override {
    events.push_back("epoch " + std::to_string(c.epoch));
    epochs_ended.push_back(c.epoch);
    return false;
  }
  void on_stop(const train::StopContext& c) override {
    events.push_back("stop");
    ++stops;
    reason = c.reason;
  }
};

TEST_F(CallbackTest, SeesEveryStepAndEpochInOrder) {
  Recorder rec;
  const train::RunResult r = train::run(config(), nullptr, {&rec});
  ASSERT_EQ(r.steps, 4 * 7);
  EXPECT_EQ(r.epochs_run, 4);
  EXPECT_FALSE(r.stopped_early);
  // Steps 0..27 once each, before_update before on_step, an epoch end after every 7th step.
  std::vector<std::string> expected;
  for (std::int64_t k = 0; k < r.steps; ++k) {
    expected.push_back("before " + std::to_string(k));
    expected.push_back("step " + std::to_string(k));
    if ((k + 1) % 7 == 0) expected.push_back("epoch " + std::to_string((k + 1) / 7));
  }
  expected.push_back("stop");
  EXPECT_EQ(rec.events, expected);
  EXPECT_EQ(rec.reason, train::StopReason::completed);
  // The loss a callback sees is the one metrics.jsonl records for that step.
  const auto step_records = records(r.run_dir, "step");
  ASSERT_EQ(step_records.size(), rec.losses.size());
  for (std::size_t i = 0; i < rec.losses.size(); ++i) {
    EXPECT_EQ(step_records[i].at("step").get<std::int64_t>(), rec.steps[i]);
    EXPECT_DOUBLE_EQ(step_records[i].at("loss").get<double>(), rec.losses[i]);
  }
}

// Stops the run in on_step once `at` updates are done.
struct StopAt : train::Callback {
  std::int64_t at;
  explicit StopAt(std::int64_t k) : at(k) {}
  bool on_step(const train::StepContext& c) override {
    if (c.step + 1 < at) return false;
    c.stop_message = "enough";
    return true;
  }
};

TEST_F(CallbackTest, ACallbackStopsTheRunAtTheStepItAsks) {
  for (const std::int64_t k : {1, 10, 14}) {
    train::TrainConfig c = config();
    c.name = "stop" + std::to_string(k);
    StopAt stop(k);
    Recorder rec;  // attached after the stopper: it does not see the step that stopped
    std::ostringstream log;
    c.progress = "plain";
    const train::RunResult r = train::run(c, &log, {&stop, &rec});
    EXPECT_EQ(r.steps, k);
    EXPECT_TRUE(r.stopped_early);
    EXPECT_EQ(records(r.run_dir, "step").size(), static_cast<std::size_t>(k));
    // The epoch in progress ends there: evaluated and recorded, then the run ends.
    const std::int64_t epochs = (k + 6) / 7;
    EXPECT_EQ(r.epochs_run, epochs);
    const auto epoch_records = records(r.run_dir, "epoch");  // epoch 0 (the initial evaluation), 1, ...
    ASSERT_EQ(epoch_records.size(), static_cast<std::size_t>(epochs) + 1);
    EXPECT_EQ(epoch_records.back().at("step").get<std::int64_t>(), k);
    EXPECT_EQ(records(r.run_dir, "final").size(), 1u);
    EXPECT_EQ(rec.steps.size(), static_cast<std::size_t>(k - 1));
    EXPECT_EQ(rec.stops, 1);
    EXPECT_EQ(rec.reason, train::StopReason::callback);
    EXPECT_NE(log.str().find("enough"), std::string::npos) << log.str();
    // The run is over: a resume only redoes the final evaluation.
    const train::RunResult again = train::resume(r.run_dir, nullptr);
    EXPECT_EQ(again.steps, k);
    EXPECT_EQ(again.test.error, r.test.error);
  }
}

// Stops the run at the end of epoch `at`.
struct StopAtEpoch : train::Callback {
  std::int64_t at;
  explicit StopAtEpoch(std::int64_t e) : at(e) {}
  bool on_epoch_end(const train::EpochContext& c) override { return c.epoch == at; }
};

TEST_F(CallbackTest, ACallbackStopsTheRunAtTheEpochItAsks) {
  StopAtEpoch stop(2);
  Recorder rec;
  const train::RunResult r = train::run(config(), nullptr, {&stop, &rec});
  EXPECT_EQ(r.epochs_run, 2);
  EXPECT_EQ(r.steps, 14);
  EXPECT_TRUE(r.stopped_early);
  EXPECT_EQ(rec.epochs_ended, std::vector<std::int64_t>{1});  // the stopper came first
  EXPECT_EQ(rec.stops, 1);
}

// Plain SGD at a constant rate: the update a callback sees between before_update and on_step
// is theta - lr g, with g the gradient it saw in before_update.
struct UpdateCheck : train::Callback {
  std::vector<double> before, grad;
  double lr = 0, worst = 0;
  int checked = 0;
  void before_update(const train::StepContext& c) override {
    Tensor v = c.run.arena().values(), g = c.run.arena().grads();
    before.assign(v.data<float>(), v.data<float>() + v.numel());
    grad.assign(g.data<float>(), g.data<float>() + g.numel());
    lr = c.lr;
    // The tape holds this step's loss: its value is the one reported.
    if (c.gradient.loss.value().item() != c.gradient.loss_value) worst = 1e9;
  }
  bool on_step(const train::StepContext& c) override {
    const Tensor v = c.run.arena().values();
    for (std::size_t i = 0; i < before.size(); ++i) {
      const double expected = static_cast<double>(static_cast<float>(before[i] - static_cast<float>(lr) * grad[i]));
      worst = std::max(worst, std::abs(static_cast<double>(v.data<float>()[i]) - expected));
    }
    ++checked;
    return false;
  }
};

TEST_F(CallbackTest, BeforeUpdateSeesTheGradientOfTheUpdate) {
  UpdateCheck check;
  const train::RunResult r = train::run(config("", "name = \"sgd\"\nlr = 0.1"), nullptr, {&check});
  EXPECT_EQ(check.checked, r.steps);
  EXPECT_DOUBLE_EQ(check.lr, 0.1);
  EXPECT_LE(check.worst, 1e-6);
}

// A callback with state: the number of updates it has seen, saved in checkpoints.
struct Counter : train::Callback {
  std::int64_t seen = 0;
  std::int64_t interrupt_at = -1;
  bool on_step(const train::StepContext& c) override {
    ++seen;
    if (c.step + 1 == interrupt_at) train::request_stop(SIGINT);
    return false;
  }
  std::string state_key() const override { return "counter"; }
  nlohmann::json save_state() const override { return {{"seen", seen}}; }
  void load_state(const nlohmann::json& s) override { seen = s.at("seen").get<std::int64_t>(); }
};

TEST_F(CallbackTest, CallbackStateSurvivesAnInterruption) {
  const train::TrainConfig c = config();
  Counter first;
  first.interrupt_at = 10;
  EXPECT_THROW(train::run(c, nullptr, {&first}), train::Interrupted);
  EXPECT_EQ(first.seen, 10);
  train::clear_stop_request();
  Counter second;
  const train::RunResult r = train::resume(dir_ / "run", nullptr, {&second});
  EXPECT_EQ(r.steps, 28);
  EXPECT_EQ(second.seen, 28);  // 10 restored from the checkpoint + 18 seen after the resume
  // A resume without that callback ignores its saved state.
  train::TrainConfig c2 = c;
  c2.name = "again";
  Counter third;
  third.interrupt_at = 5;
  EXPECT_THROW(train::run(c2, nullptr, {&third}), train::Interrupted);
  train::clear_stop_request();
  EXPECT_EQ(train::resume(dir_ / "again", nullptr).steps, 28);
}

// An epoch's examples_per_s is the epoch's own time: the setup and the epoch-0 evaluation
// before the first update are not counted in epoch 1 (they were, through the step-0
// checkpoint, until session 8). A callback makes the epoch-0 evaluation take 1.5 s; epoch 1
// (200 examples of a 4-8-3 MLP) takes milliseconds.
TEST_F(CallbackTest, TheFirstEpochsRateLeavesOutTheInitialEvaluation) {
  struct SlowStart : train::Callback {
    std::vector<double> rates;
    bool on_evaluation(const train::EvalContext& c) override {
      if (c.epoch == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1500));
      return false;
    }
    bool on_epoch_end(const train::EpochContext& c) override {
      rates.push_back(c.examples_per_s);
      return false;
    }
  } slow;
  (void)train::run(config(), nullptr, {&slow});
  ASSERT_EQ(slow.rates.size(), 4u);
  // 300 - 100 validation = 200 training examples: 1.5 s in epoch 1 would give <= 133 ex/s.
  EXPECT_GT(slow.rates[0], 200.0 / 0.5) << "epoch 1's time includes the 1.5 s initial evaluation";
}

}  // namespace
}  // namespace descent
