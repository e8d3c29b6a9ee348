// The trajectory of a run (train/trajectory.hpp): init.safetensors is the initialization,
// snapshots are the iterates after every N updates, and trajectory.json's length is the sum
// of the steps' lengths, computed here by hand from the snapshot files; a resumed run
// measures the same length and writes the same files as one never interrupted.
#include <gtest/gtest.h>

#include <cmath>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "descent/init/rng.hpp"
#include "descent/io/model_file.hpp"
#include "descent/train/callback.hpp"
#include "descent/train/trainer.hpp"
#include "descent/train/trajectory.hpp"

namespace descent {
namespace {

namespace fs = std::filesystem;

class TrajectoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("descent_trajectory_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    Rng rng(1);
    for (const char* name : {"train.csv", "test.csv"}) {
      std::ofstream out(dir_ / name);
      for (int i = 0; i < 300; ++i) {
        const int c = static_cast<int>(rng.below(3));
        out << c << "," << c + 0.5 * rng.normal() << "," << rng.normal() << "," << -c + rng.normal() << "\n";
      }
    }
  }
  void TearDown() override {
    train::clear_stop_request();
    fs::remove_all(dir_);
  }

  // limit_train 196 - validation 100 = 96 training examples: 3 updates of 32 per epoch.
  train::TrainConfig config(const std::string& name, int epochs, int every, const std::string& dtype = "f64") {
    std::ostringstream t;
    t << "name = \"" << name << "\"\nseed = 5\nepochs = " << epochs << "\nout_dir = \"" << dir_.string()
      << "\"\nprogress = \"none\"\n[data]\nformat = \"csv\"\ntrain_features = \"" << (dir_ / "train.csv").string()
      << "\"\ntest_features = \"" << (dir_ / "test.csv").string()
      << "\"\nscale = 1.0\nvalidation_size = 100\nlimit_train = 196\n[model]\nhidden = [6]\nactivation = \"tanh\"\ndtype = \""
      << dtype << "\"\n[optimizer]\nname = \"momentum\"\nlr = 0.1\n[sampler]\nbatch_size = 32\n[snapshots]\nevery_steps = "
      << every << "\n";
    return train::parse_train_config(t.str(), "test.toml");
  }

  static nlohmann::json read_json(const fs::path& p) {
    std::ifstream in(p);
    return nlohmann::json::parse(in);
  }

  // The parameters of a weights file, read into a model of the config built here.
  static std::vector<double> parameters(const train::TrainConfig& c, const fs::path& file) {
    train::Data data = train::load_data(c);
    train::Model m = train::build_model(c.model, data.dim, data.num_classes, c.seed);
    io::load_parameters(file, *m.arena);
    const Tensor& v = m.arena->values();
    std::vector<double> out(static_cast<std::size_t>(v.numel()));
    for (std::size_t i = 0; i < out.size(); ++i) {
      out[i] = v.dtype() == DType::f64 ? v.data<double>()[i] : static_cast<double>(v.data<float>()[i]);
    }
    return out;
  }

  static double distance(const std::vector<double>& a, const std::vector<double>& b) {
    double s = 0.0;
    for (std::size_t i = 0; i < a.size(); ++i) s += (a[i] - b[i]) * (a[i] - b[i]);
    return std::sqrt(s);
  }

  fs::path dir_;
};

TEST_F(TrajectoryTest, LengthIsTheSumOfTheStepsOfAThreeStepRun) {
  for (const std::string dtype : {"f64", "f32"}) {
    const train::TrainConfig c = config("three_" + dtype, 1, 1, dtype);
    const train::RunResult r = train::run(c, nullptr);
    ASSERT_EQ(r.steps, 3);
    const fs::path run = r.run_dir;
    // init.safetensors is the initialization, made again here from the config.
    train::Data data = train::load_data(c);
    train::Model fresh = train::build_model(c.model, data.dim, data.num_classes, c.seed);
    train::initialize_model(fresh, c);
    const std::vector<double> theta0 = parameters(c, run / "init.safetensors");
    ASSERT_EQ(theta0.size(), static_cast<std::size_t>(fresh.arena->size()));
    for (std::size_t i = 0; i < theta0.size(); ++i) {
      const double v = dtype == "f64" ? fresh.arena->values().data<double>()[i] : fresh.arena->values().data<float>()[i];
      ASSERT_EQ(theta0[i], v) << i;
    }
    // L = |theta_1 - theta_0| + |theta_2 - theta_1| + |theta_3 - theta_2| from the files.
    std::vector<std::vector<double>> theta = {theta0};
    for (int k = 1; k <= 3; ++k) theta.push_back(parameters(c, run / "snapshots" / ("step-" + std::to_string(k) + ".safetensors")));
    double by_hand = 0.0;
    for (int k = 0; k < 3; ++k) by_hand += distance(theta[static_cast<std::size_t>(k + 1)], theta[static_cast<std::size_t>(k)]);
    ASSERT_GT(by_hand, 0.0);
    const nlohmann::json t = read_json(run / "trajectory.json");
    EXPECT_EQ(t.at("steps"), 3);
    EXPECT_TRUE(t.at("complete").get<bool>());
    EXPECT_NEAR(t.at("length").get<double>(), by_hand, 1e-13 * by_hand) << dtype;
    EXPECT_NEAR(t.at("distance_from_init").get<double>(), distance(theta[3], theta0), 1e-13 * by_hand);
    EXPECT_NEAR(t.at("length_ratio").get<double>(), by_hand / distance(theta[3], theta0), 1e-12);
    // The steps do not go in one straight line: the path is longer than the chord.
    EXPECT_GT(by_hand, distance(theta[3], theta0));
    // The last snapshot is the last iterate, which here is also model.safetensors (the best epoch is the only one).
    EXPECT_EQ(theta[3], parameters(c, run / "model.safetensors"));
    EXPECT_FALSE(fs::exists(run / "snapshots" / "step-0.safetensors"));
  }
}

TEST_F(TrajectoryTest, NoSnapshotsByDefaultButInitAndLengthAlways) {
  const train::RunResult r = train::run(config("plain", 2, 0), nullptr);
  EXPECT_TRUE(fs::exists(r.run_dir / "init.safetensors"));
  EXPECT_FALSE(fs::exists(r.run_dir / "snapshots"));
  const nlohmann::json t = read_json(r.run_dir / "trajectory.json");
  EXPECT_EQ(t.at("steps"), 6);
  EXPECT_GT(t.at("length").get<double>(), t.at("distance_from_init").get<double>());
}

// Requests a stop (as SIGINT does) once `at` updates are done.
struct InterruptAt : train::Callback {
  std::int64_t at;
  explicit InterruptAt(std::int64_t k) : at(k) {}
  bool on_step(const train::StepContext& c) override {
    if (c.step + 1 == at) train::request_stop(SIGINT);
    return false;
  }
};

TEST_F(TrajectoryTest, AResumedRunMeasuresTheSameLengthAndWritesTheSameFiles) {
  const train::RunResult straight = train::run(config("straight", 4, 2), nullptr);
  ASSERT_EQ(straight.steps, 12);
  const train::TrainConfig c = config("resumed", 4, 2);
  InterruptAt stop(7);
  EXPECT_THROW(train::run(c, nullptr, {&stop}), train::Interrupted);
  train::clear_stop_request();
  const fs::path run = dir_ / "resumed";
  const auto init_time = fs::last_write_time(run / "init.safetensors");
  ASSERT_TRUE(fs::exists(run / "snapshots" / "step-6.safetensors"));
  EXPECT_FALSE(fs::exists(run / "snapshots" / "step-8.safetensors"));
  train::resume(run, nullptr);
  EXPECT_EQ(fs::last_write_time(run / "init.safetensors"), init_time);  // not rewritten
  const nlohmann::json a = read_json(straight.run_dir / "trajectory.json"), b = read_json(run / "trajectory.json");
  EXPECT_EQ(a.at("length").get<double>(), b.at("length").get<double>());  // bit for bit
  EXPECT_EQ(a.at("distance_from_init").get<double>(), b.at("distance_from_init").get<double>());
  EXPECT_TRUE(b.at("complete").get<bool>());
  for (int k = 2; k <= 12; k += 2) {
    const std::string name = "step-" + std::to_string(k) + ".safetensors";
    EXPECT_EQ(parameters(c, straight.run_dir / "snapshots" / name), parameters(c, run / "snapshots" / name)) << name;
  }
  EXPECT_EQ(parameters(c, straight.run_dir / "init.safetensors"), parameters(c, run / "init.safetensors"));
}

TEST_F(TrajectoryTest, SnapshotsEveryStepsIsAConfigKeyThatRefusesNegatives) {
  EXPECT_EQ(config("x", 1, 7).snapshots.every_steps, 7);
  EXPECT_EQ(train::TrainConfig().snapshots.every_steps, 0);
  try {
    train::parse_train_config("[snapshots]\nevery_steps = -1\n", "bad.toml");
    FAIL() << "accepted a negative snapshots.every_steps";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("snapshots.every_steps"), std::string::npos) << e.what();
  }
}

// A Run for calling a callback directly: the trajectory reads nothing of it.
class NoRun final : public train::Run {
 public:
  [[noreturn]] static void none() { throw std::logic_error("NoRun: not a run"); }
  const train::TrainConfig& config() const override { none(); }
  nn::Module& net() override { none(); }
  ParameterArena& arena() override { none(); }
  optim::Optimizer& optimizer() override { none(); }
  const data::Data& data() const override { none(); }
  const fs::path& run_dir() const override { none(); }
  io::JsonLinesWriter& metrics() override { none(); }
  train::Progress& progress() override { none(); }
  double wall_seconds() const override { none(); }
  train::Evaluation evaluate(const data::Split&) override { none(); }
};

// Steps measured by the update's pass (StepContext::step_squares): the length adds their
// square roots; a NaN step (a NaN parameter) is a NaN length, not "a step without its
// length"; an unmeasured step after measured ones is refused (previous_ is stale).
TEST_F(TrajectoryTest, StepsMeasuredByTheUpdateAddTheirRootsAndANaNStepIsANaNLength) {
  ParameterArena arena(DType::f32);
  arena.add("w", Shape{4});
  arena.values().fill(1.0);
  train::Trajectory t(arena, dir_, 0, {});
  t.begin(true, 0);
  NoRun run;
  const Tensor x, y;
  autodiff::Tape tape;
  const train::Gradient g;
  std::string message;
  auto step = [&](std::int64_t k, double squares) {
    train::StepContext c{.run = run, .step = k, .epoch = 1, .position = k + 1, .steps_per_epoch = 10, .x = x, .y = y,
                         .tape = tape, .gradient = g, .lr = 0.1, .stop_message = message};
    c.step_squares = squares;
    return t.on_step(c);
  };
  // unmeasured: from the copy of theta_0 (all ones) to (1, 1, 1, 4): length 3
  arena.values().data<float>()[3] = 4.0f;
  step(0, -1.0);
  EXPECT_DOUBLE_EQ(t.length(), 3.0);
  step(1, 0.25);
  EXPECT_DOUBLE_EQ(t.length(), 3.5);
  EXPECT_NO_THROW(step(2, std::numeric_limits<double>::quiet_NaN()));
  EXPECT_TRUE(std::isnan(t.length()));
  EXPECT_THROW(step(3, -1.0), Error);
}

}  // namespace
}  // namespace descent
