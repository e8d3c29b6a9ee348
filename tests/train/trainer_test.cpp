// The training loop end to end on small data: it learns, writes a complete run folder,
// reproduces itself bit for bit, stops early, and refuses to carry on after divergence.
#include <gtest/gtest.h>

#include <bit>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "descent/init/rng.hpp"
#include "descent/io/json_lines.hpp"
#include "descent/io/model_file.hpp"
#include "descent/io/safetensors.hpp"
#include "descent/error.hpp"
#include "descent/tensor/kernels.hpp"
#include "descent/train/checkpoint.hpp"
#include "descent/train/early_stopping.hpp"
#include "descent/tensor/parallel.hpp"
#include "descent/train/thread_rule.hpp"
#include "descent/train/trainer.hpp"

#include "support/synthetic_csv.hpp"

namespace descent {
namespace {

namespace fs = std::filesystem;

class TrainerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("descent_trainer_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    testing::write_blobs(dir_ / "train.csv", 700, 1, testing::Blobs::separated);
    testing::write_blobs(dir_ / "test.csv", 200, 2, testing::Blobs::separated);
  }
  void TearDown() override { fs::remove_all(dir_); }


  static void write_blobs_noisy(const fs::path& path, int n, std::uint64_t seed) {
    Rng rng(seed);
    std::ofstream out(path);
    for (int i = 0; i < n; ++i) {
      const int c = static_cast<int>(rng.below(3));
      out << c;
      for (int k = 0; k < 4; ++k) out << "," << (k == c ? 1.0 : 0.0) + 1.2 * rng.normal();
      out << "\n";
    }
  }

  train::TrainConfig config(const std::string& name, const std::string& extra = "") {
    std::ostringstream t;
    t << "name = \"" << name << "\"\nseed = 3\nepochs = 12\nout_dir = \"" << dir_.string() << "\"\nprogress = \"none\"\n"
      << extra << "\n[data]\nformat = \"csv\"\ntrain_features = \"" << (dir_ / "train.csv").string()
      << "\"\ntest_features = \"" << (dir_ / "test.csv").string()
      << "\"\nscale = 1.0\nvalidation_size = 200\n[model]\nhidden = [16]\nactivation = \"tanh\"\n"
         "[optimizer]\nname = \"momentum\"\nlr = 0.05\nmomentum = 0.9\n[sampler]\nbatch_size = 32\n";
    return train::parse_train_config(t.str(), "test.toml");
  }

  static std::string read_bytes(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

  fs::path dir_;
};

TEST_F(TrainerTest, LearnsAndWritesTheRunFolder) {
  const train::TrainConfig c = config("blobs");
  const train::RunResult r = train::run(c, nullptr);
  EXPECT_LT(r.test.error, 0.05);
  EXPECT_LT(r.train.error, 0.05);
  EXPECT_GE(r.best_epoch, 1);
  EXPECT_EQ(r.run_dir, dir_ / "blobs");
  ASSERT_TRUE(fs::exists(r.run_dir / "config.toml"));
  // The resolved config reads back to the same config.
  train::TrainConfig again = train::load_train_config(r.run_dir / "config.toml");
  again.source = c.source;
  EXPECT_EQ(again, c);

  const auto records = io::read_json_lines(r.run_dir / "metrics.jsonl");
  std::int64_t steps = 0, epochs = 0, finals = 0;
  double last_step_norm = -1.0;
  for (const auto& rec : records) {
    const std::string kind = rec.at("kind");
    if (kind == "step") {
      EXPECT_EQ(rec.at("step").get<std::int64_t>(), steps);
      last_step_norm = rec.at("grad_norm").get<double>();
      EXPECT_GT(rec.at("lr").get<double>(), 0.0);
      ++steps;
    } else if (kind == "epoch") {
      epochs += rec.at("epoch").get<std::int64_t>() > 0 ? 1 : 0;  // epoch 0: the initial parameters
      EXPECT_TRUE(rec.contains("val_error"));
      EXPECT_TRUE(rec.contains("train_error"));
    } else if (kind == "final") {
      ++finals;
      EXPECT_DOUBLE_EQ(rec.at("test_error").get<double>(), r.test.error);
      EXPECT_EQ(rec.at("best_epoch").get<std::int64_t>(), r.best_epoch);
    }
  }
  EXPECT_EQ(steps, r.steps);
  EXPECT_EQ(steps, r.epochs_run * 16);  // 500 training examples / 32 = 15.6 -> 16 batches
  EXPECT_EQ(epochs, r.epochs_run);
  EXPECT_EQ(finals, 1);
  EXPECT_GT(last_step_norm, 0.0);

  // The saved weights are the best ones: loaded into a fresh model they give the same test error.
  train::Data data = train::load_data(c);
  train::Model m = train::build_model(c.model, data.dim, data.num_classes);
  io::load_parameters(r.run_dir / "model.safetensors", *m.arena);
  EXPECT_DOUBLE_EQ(train::evaluate(m, data.test).error, r.test.error);
  const io::Safetensors f = io::read_safetensors(r.run_dir / "model.safetensors");
  ASSERT_NE(f.find("layers.0.weight"), nullptr);
  EXPECT_EQ(f.find("layers.0.weight")->shape, (std::vector<std::int64_t>{16, 4}));
  EXPECT_EQ(f.find("layers.2.bias")->dtype, "F32");
}

TEST_F(TrainerTest, RestoresTheBestEpochNotTheLast) {
  // Noisy, overlapping classes and a wide layer: the validation loss falls, then rises.
  write_blobs_noisy(dir_ / "train.csv", 300, 5);
  train::TrainConfig c = config("best");
  c.epochs = 40;
  c.early_stopping.enabled = false;
  c.early_stopping.monitor = "val_loss";
  c.model.hidden = {64};
  c.optimizer.lr = 0.1;
  c.data.validation_size = 100;
  const train::RunResult r = train::run(c, nullptr);
  double best_loss = 1e300;
  std::int64_t best_epoch = 0, epochs = 0;
  for (const auto& rec : io::read_json_lines(r.run_dir / "metrics.jsonl")) {
    if (rec.at("kind") != "epoch" || rec.at("epoch") == 0) continue;  // epoch 0: the initial parameters
    ++epochs;
    if (rec.at("val_loss").get<double>() < best_loss) {
      best_loss = rec.at("val_loss").get<double>();
      best_epoch = rec.at("epoch").get<std::int64_t>();
    }
  }
  EXPECT_EQ(epochs, 40);
  EXPECT_EQ(r.best_epoch, best_epoch);
  ASSERT_LT(r.best_epoch, 40) << "the run did not overfit: the test cannot tell best from last";
  train::Data data = train::load_data(c);
  train::Model m = train::build_model(c.model, data.dim, data.num_classes);
  io::load_parameters(r.run_dir / "model.safetensors", *m.arena);
  EXPECT_NEAR(train::evaluate(m, data.validation).loss, best_loss, 1e-6 * best_loss);
}

TEST_F(TrainerTest, SameSeedSameBits) {
  const train::RunResult a = train::run(config("a"), nullptr);
  const train::RunResult b = train::run(config("b"), nullptr);
  EXPECT_EQ(read_bytes(a.run_dir / "model.safetensors"), read_bytes(b.run_dir / "model.safetensors"));
  train::TrainConfig other = config("c");
  other.seed = 4;
  const train::RunResult c = train::run(other, nullptr);
  EXPECT_NE(read_bytes(a.run_dir / "model.safetensors"), read_bytes(c.run_dir / "model.safetensors"));
}

TEST_F(TrainerTest, EveryBatchRegimeTrains) {
  for (const char* kind : {"sequential", "shuffle_once", "reshuffle", "with_replacement"}) {
    train::TrainConfig c = config(std::string("k_") + kind);
    c.sampler.kind = kind;
    c.epochs = 6;
    EXPECT_LT(train::run(c, nullptr).test.error, 0.1) << kind;
  }
  train::TrainConfig full = config("full");
  full.sampler.batch_size = 0;  // deterministic full-batch gradient descent
  full.optimizer.lr = 0.5;
  full.epochs = 60;
  full.early_stopping.enabled = false;
  const train::RunResult r = train::run(full, nullptr);
  EXPECT_EQ(r.steps, 60);
  EXPECT_LT(r.test.error, 0.1);
  train::TrainConfig online = config("online");
  online.sampler.batch_size = 1;
  online.optimizer.lr = 0.01;
  online.epochs = 2;
  EXPECT_LT(train::run(online, nullptr).test.error, 0.1);
  train::TrainConfig stream = config("stream");
  stream.sampler.kind = "stream";  // each example used once: one epoch at most
  EXPECT_EQ(train::run(stream, nullptr).epochs_run, 1);
}

TEST_F(TrainerTest, EveryOptimizerFamilyTrainsFromTheConfig) {
  for (const char* name : {"nesterov", "adagrad", "rmsprop", "adam", "adamw", "adadelta"}) {
    train::TrainConfig c = config(std::string("opt_") + name);
    c.optimizer.name = name;
    c.optimizer.lr = std::string(name) == "adadelta" ? std::optional<double>() : std::optional<double>(0.01);
    c.optimizer.momentum.reset();
    c.epochs = 8;
    EXPECT_LT(train::run(c, nullptr).test.error, 0.1) << name;
  }
  // Clipping fires and is counted; Polyak averaging trains and is evaluated.
  train::TrainConfig c = config("clip_avg");
  c.clip.global_norm = 0.05;
  c.averaging.kind = "exponential";
  c.averaging.rho = 0.9;
  c.schedule.name = "cosine";
  const train::RunResult r = train::run(c, nullptr);
  EXPECT_LT(r.test.error, 0.1);
  std::int64_t clipped = 0;
  for (const auto& rec : io::read_json_lines(r.run_dir / "metrics.jsonl")) {
    if (rec.at("kind") == "epoch") clipped = rec.at("clip_count").get<std::int64_t>();
  }
  EXPECT_GT(clipped, 0);
}

TEST_F(TrainerTest, DivergenceIsCaughtBeforeTheUpdate) {
  train::TrainConfig c = config("diverge");
  c.optimizer.lr = 1e12;
  c.optimizer.momentum = 0.0;
  c.optimizer.name = "sgd";
  c.model.activation = "relu";
  try {
    train::run(c, nullptr);
    FAIL() << "expected NumericError";
  } catch (const NumericError& e) {
    EXPECT_NE(std::string(e.what()).find("diverged at step"), std::string::npos) << e.what();
  }
}

// The trainer asks the model (nn::Module::min_batch_size) instead of looking for BatchNorm.
TEST_F(TrainerTest, AModelNeedingTwoExamplesPerBatchIsRefusedUpFront) {
  const auto with_batch = [&](int batch, bool drop_last) {
    std::ostringstream t;
    t << "name = \"bn\"\nout_dir = \"" << dir_.string() << "\"\nprogress = \"none\"\n[data]\nformat = \"csv\"\n"
      << "train_features = \"" << (dir_ / "train.csv").string() << "\"\ntest_features = \""
      << (dir_ / "test.csv").string() << "\"\nvalidation_size = 200\n[model]\ntype = \"sequential\"\n"
      << "layers = [{type = \"linear\", units = 8}, {type = \"batchnorm\"}, {type = \"relu\"}, {type = \"linear\"}]\n"
      << "[sampler]\nbatch_size = " << batch << "\ndrop_last = " << (drop_last ? "true" : "false") << "\n";
    return train::parse_train_config(t.str(), "bn.toml");
  };
  const auto message = [](const train::TrainConfig& c) -> std::string {
    try {
      train::run(c, nullptr);
    } catch (const ConfigError& e) {
      return e.what();
    }
    return "";
  };
  const std::string one = message(with_batch(1, false));
  EXPECT_NE(one.find("bn.toml: sampler.batch_size: BatchNorm(8"), std::string::npos) << one;
  EXPECT_NE(one.find("at least 2 examples"), std::string::npos) << one;
  // 500 training examples in batches of 499 leave a last batch of 1.
  const std::string last = message(with_batch(499, false));
  EXPECT_NE(last.find("sampler.drop_last: the last batch of each epoch would hold 1 example"), std::string::npos) << last;
  EXPECT_FALSE(fs::exists(dir_ / "bn"));  // refused before the run folder was made
  EXPECT_EQ(message(with_batch(250, false)), "");
}

TEST_F(TrainerTest, BadDataIsAnErrorNamingTheFile) {
  {
    std::ofstream out(dir_ / "train.csv", std::ios::app);
    out << "1,0.5,nan,0.1,0.2\n";
  }
  try {
    train::run(config("bad"), nullptr);
    FAIL() << "expected DataError";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("train.csv"), std::string::npos) << e.what();
  }
}

// A label far beyond any class count (1e30 in a float IDX labels file) is one error naming
// the file, not an overflowing conversion or a classifier with millions of outputs.
TEST_F(TrainerTest, AHugeLabelIsRefusedNamingTheFile) {
  const auto idx = [&](const std::string& name, unsigned char type, std::vector<std::uint32_t> dims,
                       const std::string& payload) {
    std::string bytes{'\0', '\0', static_cast<char>(type), static_cast<char>(dims.size())};
    for (const std::uint32_t d : dims) {
      for (int shift = 24; shift >= 0; shift -= 8) bytes += static_cast<char>((d >> shift) & 0xFF);
    }
    std::ofstream(dir_ / name, std::ios::binary) << bytes << payload;
  };
  idx("x.idx", 0x08, {4, 2}, std::string(8, '\1'));
  const auto be_float = [](float v) {
    const auto u = std::bit_cast<std::uint32_t>(v);
    return std::string{static_cast<char>(u >> 24), static_cast<char>((u >> 16) & 0xFF), static_cast<char>((u >> 8) & 0xFF),
                       static_cast<char>(u & 0xFF)};
  };
  idx("y.idx", 0x0D, {4}, be_float(0) + be_float(1) + be_float(1e30f) + be_float(2));
  idx("ty.idx", 0x0D, {4}, be_float(0) + be_float(1) + be_float(1) + be_float(2));
  std::ostringstream t;
  t << "name = \"huge\"\nout_dir = \"" << dir_.string() << "\"\nprogress = \"none\"\n[data]\nformat = \"idx\"\n"
    << "train_features = \"" << (dir_ / "x.idx").string() << "\"\ntrain_labels = \"" << (dir_ / "y.idx").string()
    << "\"\ntest_features = \"" << (dir_ / "x.idx").string() << "\"\ntest_labels = \"" << (dir_ / "ty.idx").string()
    << "\"\nvalidation_size = 0\n";
  try {
    train::run(train::parse_train_config(t.str(), "huge.toml"), nullptr);
    FAIL() << "a label of 1e30 was accepted";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("y.idx: label 1e+30 is not a class index"), std::string::npos) << e.what();
  }
}

TEST(EarlyStopping, StopsAfterPatienceAndRemembersTheBest) {
  train::EarlyStopping s(3, 0.0);
  EXPECT_FALSE(s.update(1, 0.50));
  EXPECT_TRUE(s.improved());
  EXPECT_FALSE(s.update(2, 0.40));
  EXPECT_FALSE(s.update(3, 0.45));
  EXPECT_FALSE(s.improved());
  EXPECT_FALSE(s.update(4, 0.41));
  EXPECT_TRUE(s.update(5, 0.40));  // equal is not better
  EXPECT_EQ(s.best_epoch(), 2);
  EXPECT_DOUBLE_EQ(s.best(), 0.40);
  train::EarlyStopping d(1, 0.05);
  EXPECT_FALSE(d.update(1, 0.50));
  EXPECT_TRUE(d.update(2, 0.46));  // improved by less than min_delta
  train::EarlyStopping off(1, 0.0, false);
  EXPECT_FALSE(off.update(1, 0.5));
  EXPECT_FALSE(off.update(2, 0.6));
  EXPECT_EQ(off.best_epoch(), 1);
}

TEST(FashionMnist, SmallRunLearns) {
  if (!fs::exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")) GTEST_SKIP() << "dataset-fashion-mnist not installed";
  const fs::path out = fs::temp_directory_path() / ("descent_fashion_" + std::to_string(::getpid()));
  train::TrainConfig c = train::parse_train_config(
      "name = \"small\"\nseed = 1\nepochs = 3\nprogress = \"none\"\nout_dir = \"" + out.string() +
          "\"\n[data]\nlimit_train = 12000\nlimit_test = 2000\nvalidation_size = 2000\nstandardize = \"global\"\n"
          "[model]\nhidden = [128]\n[optimizer]\nname = \"momentum\"\nlr = 0.05\nmomentum = 0.9\n",
      "small.toml");
  const train::RunResult r = train::run(c, nullptr);
  fs::remove_all(out);
  EXPECT_LT(r.test.error, 0.22);  // ~84% after 3 epochs on a fifth of the data
  EXPECT_EQ(r.test.examples, 2000);
}

// ---- the threading rule (config thread_rule, train/thread_rule.hpp) ------------------------

namespace rule_test {

// Reads the process-wide product threshold at every update (before_update runs inside the
// step, under the step's rule).
struct RuleSpy : train::Callback {
  std::vector<std::int64_t> seen;
  void before_update(const train::StepContext&) override { seen.push_back(kernels::gemm_serial_below()); }
};

std::vector<nlohmann::json> of_kind(const fs::path& run_dir, const std::string& kind) {
  std::vector<nlohmann::json> out;
  for (const auto& r : io::read_json_lines(run_dir / "metrics.jsonl"))
    if (r.value("kind", "") == kind) out.push_back(r);
  return out;
}

}  // namespace rule_test

// auto with 2 threads and 50 epochs of 16 steps (800 >= 10 x 77 timed steps): the first 77
// steps follow the schedule (5 warm-up steps under small_serial, then 6 rounds of turns of 4
// steps under each rule, each round starting one rule later), every later step runs under the
// rule of the thread_rule record, the checkpoints keep it, and the run leaves the process's
// rule as it found it.
TEST_F(TrainerTest, AutoThreadRuleTimesTheFirstStepsAndKeepsTheChoice) {
  const std::int64_t before = kernels::gemm_serial_below();
  train::TrainConfig c = config("rule_auto", "threads = 2\nthread_rule = \"auto\"");
  c.epochs = 50;
  c.early_stopping.enabled = false;
  rule_test::RuleSpy spy;
  const train::RunResult r = train::run(c, nullptr, {&spy});
  ASSERT_EQ(spy.seen.size(), 800u);
  const std::int64_t rules[] = {std::int64_t{1} << 23, std::int64_t{1} << 20, 0};
  for (std::size_t s = 0; s < 5; ++s) EXPECT_EQ(spy.seen[s], rules[0]) << s;
  for (std::size_t s = 5; s < 77; ++s) {
    const std::size_t turn = (s - 5) / 4;
    EXPECT_EQ(spy.seen[s], rules[(turn % 3 + turn / 3) % 3]) << s;
  }
  const auto records = rule_test::of_kind(r.run_dir, "thread_rule");
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0]["step"], 77);
  EXPECT_EQ(records[0]["timed_steps"], 77);
  const std::string chosen = records[0]["rule"].get<std::string>();
  const std::int64_t chosen_below = train::thread_rule(chosen).gemm_serial_below;
  for (std::size_t s = 77; s < spy.seen.size(); ++s) ASSERT_EQ(spy.seen[s], chosen_below) << s;
  for (const char* name : {"small_serial", "tiny_serial", "parallel"}) EXPECT_GT(records[0]["median_ms"][name].get<double>(), 0.0) << name;
  EXPECT_EQ(rule_test::of_kind(r.run_dir, "header").at(0)["thread_rule"], "auto");
  const std::optional<train::Checkpoint> ck = train::load_latest_checkpoint(r.run_dir / "checkpoints");
  ASSERT_TRUE(ck);
  EXPECT_EQ(ck->state.at("thread_rule"), chosen);
  EXPECT_EQ(kernels::gemm_serial_below(), before);
}

// A named rule holds for every step; auto times nothing in deterministic mode, with 1 thread,
// or in a run shorter than 10 times the timed steps (12 epochs of 16 steps): the built-in rule.
// A resume from a checkpoint written after the choice (step 100 > 77) keeps the chosen rule
// (the checkpoint records it) instead of timing again (which the 860 steps left would allow): every resumed step runs under it, no
// second thread_rule record, and the model ends bit-identical to the uninterrupted run's.
TEST_F(TrainerTest, AResumeKeepsTheChosenThreadRule) {
  train::TrainConfig c = config("rule_resume", "threads = 2\n[checkpoint]\nevery_steps = 100\nkeep = 100");
  c.epochs = 60;  // 960 steps: the 860 after the checkpoint are enough to be timed again
  c.early_stopping.enabled = false;
  const train::RunResult full = train::run(c, nullptr);
  const auto chosen = rule_test::of_kind(full.run_dir, "thread_rule");
  ASSERT_EQ(chosen.size(), 1u);
  const std::int64_t below = train::thread_rule(chosen[0]["rule"].get<std::string>()).gemm_serial_below;
  const fs::path copy = dir_ / "rule_resume_copy";
  fs::copy(full.run_dir, copy, fs::copy_options::recursive);
  fs::remove(copy / "model.safetensors");
  for (const fs::path& p : train::list_checkpoints(copy / "checkpoints")) {  // step-000000000100.ckpt
    if (std::stoll(p.filename().string().substr(5, 12)) > 100) fs::remove(p);
  }
  const std::optional<train::Checkpoint> from = train::load_latest_checkpoint(copy / "checkpoints");
  ASSERT_TRUE(from);
  ASSERT_EQ(from->state.at("loop").at("k"), 100);
  rule_test::RuleSpy spy;
  kernels::set_gemm_serial_below(12345);
  (void)train::resume(copy, nullptr, {&spy});
  kernels::set_gemm_serial_below(std::int64_t{1} << 23);
  ASSERT_EQ(spy.seen.size(), 860u);
  for (const std::int64_t v : spy.seen) ASSERT_EQ(v, below);
  EXPECT_EQ(rule_test::of_kind(copy, "thread_rule").size(), 1u);
  EXPECT_TRUE(read_bytes(copy / "model.safetensors") == read_bytes(full.run_dir / "model.safetensors"));
}

TEST_F(TrainerTest, AFixedThreadRuleAndTheCasesAutoDoesNotTime) {
  const std::int64_t built_in = std::int64_t{1} << 23;
  struct Case {
    const char* name;
    std::string extra;
    std::int64_t expected;
  };
  const Case cases[] = {{"rule_parallel", "threads = 2\nthread_rule = \"parallel\"", 0},
                        {"rule_tiny", "threads = 2\nthread_rule = \"tiny_serial\"", std::int64_t{1} << 20},
                        {"rule_det", "threads = 2\ndeterministic = true\ndeterministic_block = 32", built_in},
                        {"rule_one", "threads = 1", built_in},
                        {"rule_short", "threads = 2", built_in}};
  for (const Case& k : cases) {
    train::TrainConfig c = config(k.name, k.extra);
    if (k.expected == built_in && std::string(k.name) != "rule_short") c.epochs = 50;  // long enough to be timed
    c.early_stopping.enabled = false;
    kernels::set_gemm_serial_below(12345);
    rule_test::RuleSpy spy;
    const train::RunResult r = train::run(c, nullptr, {&spy});
    ASSERT_FALSE(spy.seen.empty()) << k.name;
    for (const std::int64_t v : spy.seen) ASSERT_EQ(v, k.expected) << k.name;
    EXPECT_TRUE(rule_test::of_kind(r.run_dir, "thread_rule").empty()) << k.name;
    EXPECT_EQ(kernels::gemm_serial_below(), 12345) << k.name;  // restored
  }
  kernels::set_gemm_serial_below(built_in);
}

// flush_denormals (default true): the run's updates see the flush on (read at every update by
// a callback), false leaves it off, and the process's setting is put back after the run.
namespace flush_test {
struct FlushSpy : train::Callback {
  std::vector<bool> seen;
  void before_update(const train::StepContext&) override { seen.push_back(flush_denormals()); }
};
}  // namespace flush_test

TEST_F(TrainerTest, FlushDenormalsHoldsDuringTheRunAndIsPutBack) {
  for (const bool on : {true, false}) {
    train::TrainConfig c = config(on ? "flush_on" : "flush_off", on ? "" : "flush_denormals = false");
    EXPECT_EQ(c.flush_denormals, on);  // the default is on
    set_flush_denormals(!on);
    flush_test::FlushSpy spy;
    (void)train::run(c, nullptr, {&spy});
    ASSERT_FALSE(spy.seen.empty());
    for (const bool v : spy.seen) ASSERT_EQ(v, on);
    EXPECT_EQ(flush_denormals(), !on);  // put back
  }
  set_flush_denormals(false);
}

TEST_F(TrainerTest, AnUnknownThreadRuleIsAConfigErrorListingTheRules) {
  try {
    (void)config("bad_rule", "thread_rule = \"fast\"");
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("thread_rule"), std::string::npos) << m;
    EXPECT_NE(m.find("parallel"), std::string::npos) << m;
    EXPECT_NE(m.find("auto"), std::string::npos) << m;
  }
  EXPECT_THROW((void)config("bad_rule", "thread_rule = 3"), ConfigError);
  EXPECT_EQ(config("ok_rule").thread_rule, "auto");
}

}  // namespace
}  // namespace descent
