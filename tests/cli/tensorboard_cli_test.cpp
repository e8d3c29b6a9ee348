// TensorBoard event files of real `descent` processes, read by the independent reader
// (tests/reference/tensorboard_reader.py, written from the format's specification): every
// CRC checks, every scalar equals metrics.jsonl's (each step once), the parameter histograms
// equal the checkpoints' parameters; a run killed with SIGKILL several times and resumed
// holds each step once and the same scalars as the run never killed; a damaged byte, a file
// cut short and a metrics value that disagrees each make the reader fail.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iterator>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "support/process.hpp"
#include "support/synthetic_csv.hpp"

namespace {

namespace fs = std::filesystem;
using namespace descent::testing;  // support/process.hpp, support/synthetic_csv.hpp

const std::string kReader = std::string(DESCENT_SOURCE_DIR) + "/tests/reference/tensorboard_reader.py";

class TensorBoardCli : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists("/usr/bin/python3")) GTEST_SKIP() << "SKIP: /usr/bin/python3 is not installed (scripts/install-deps)";
    dir_ = fresh_test_dir("descent_tb_cli");
    write_three_class_csvs(dir_, {.seed = 17, .train = 1500, .test = 300});
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }

  // 1200 training examples in batches of 16: 75 updates per epoch.
  fs::path config(const std::string& name, int epochs, const std::string& extra) {
    const fs::path p = dir_ / (name + ".toml");
    std::ofstream c(p);
    c << "name = \"run\"\nseed = 9\nepochs = " << epochs << "\nthreads = 1\nprogress = \"plain\"\neval_every_steps = 50\n"
      << "[data]\nformat = \"csv\"\ntrain_features = \"" << (dir_ / "train.csv").string() << "\"\ntest_features = \""
      << (dir_ / "test.csv").string() << "\"\nscale = 1.0\nvalidation_size = 300\n"
      << "[model]\ntype = \"sequential\"\nlayers = [{type = \"linear\", units = 128}, {type = \"relu\"},"
         " {type = \"dropout\", p = 0.2}, {type = \"linear\"}]\n"
      << "[optimizer]\nname = \"adam\"\nlr = 0.003\n[sampler]\nbatch_size = 16\n[early_stopping]\npatience = 100\n"
      << extra;
    return p;
  }

  pid_t start(const std::string& program, const std::vector<std::string>& args, const std::string& log) {
    return spawn(program, args, dir_ / (log + ".out"), dir_ / (log + ".err"));
  }
  pid_t descent(const std::vector<std::string>& args, const std::string& log) { return start(DESCENT_CLI, args, log); }
  // The reader's exit code; its output in `out`.
  int reader(const std::vector<std::string>& args, std::string& out) {
    std::vector<std::string> a{kReader};
    a.insert(a.end(), args.begin(), args.end());
    const int code = wait_for(start("/usr/bin/python3", a, "reader"));
    out = slurp(dir_ / "reader.out") + slurp(dir_ / "reader.err");
    return code;
  }
  static fs::path event_file(const fs::path& run) {
    fs::path found;
    for (const auto& e : fs::directory_iterator(run / "tb")) found = e.path();
    return found;
  }
  static bool has_checkpoint(const fs::path& run) {
    if (!fs::exists(run / "checkpoints")) return false;
    for (const auto& e : fs::directory_iterator(run / "checkpoints")) {
      if (e.path().extension() == ".ckpt") return true;
    }
    return false;
  }

  fs::path dir_;
};

TEST_F(TensorBoardCli, TheReaderAgreesWithMetricsAndCheckpointsAndCatchesDamage) {
  const fs::path cfg = config("a", 2, "[checkpoint]\nevery_steps = 25\nkeep = 1000\n[tensorboard]\nhistogram_every_steps = 25\n");
  ASSERT_EQ(wait_for(descent({"train", cfg.string(), "--out", (dir_ / "a").string()}, "a")), 0) << slurp(dir_ / "a.err");
  const fs::path run = dir_ / "a" / "run";
  const fs::path file = event_file(run);
  EXPECT_TRUE(file.filename().string().starts_with("events.out.tfevents.")) << file;
  std::string out;
  ASSERT_EQ(reader({"check", run.string()}, out), 0) << out;
  // 150 updates: 150 step records; histograms at steps 0, 25, ..., 125 of 2 weights and 2
  // biases, parameters and gradients: 6 x 8 = 48, the 24 of the parameters against the
  // checkpoints of those steps.
  EXPECT_NE(out.find("(150 steps), 48 histograms (24 compared with checkpoints"), std::string::npos) << out;

  // A byte changed in the middle of the file: a CRC no longer matches.
  const std::string good = slurp(file);
  std::string bad = good;
  bad[bad.size() / 2] = static_cast<char>(bad[bad.size() / 2] ^ 0x10);
  std::ofstream(file, std::ios::binary | std::ios::trunc) << bad;
  EXPECT_EQ(reader({"check", run.string()}, out), 1) << out;
  EXPECT_NE(out.find("CRC mismatch"), std::string::npos) << out;
  // Cut short in its last record.
  std::ofstream(file, std::ios::binary | std::ios::trunc) << good.substr(0, good.size() - 3);
  EXPECT_EQ(reader({"check", run.string()}, out), 1) << out;
  EXPECT_NE(out.find("cut short"), std::string::npos) << out;
  // Intact again, but metrics.jsonl says another loss for one step.
  std::ofstream(file, std::ios::binary | std::ios::trunc) << good;
  ASSERT_EQ(reader({"check", run.string()}, out), 0) << out;
  std::string metrics = slurp(run / "metrics.jsonl");
  const std::size_t at = metrics.find("\"loss\":", metrics.find("\"step\":7,"));
  ASSERT_NE(at, std::string::npos);
  metrics.insert(at + 7, "1");  // 0.x -> 10.x
  std::ofstream(run / "metrics.jsonl", std::ios::trunc) << metrics;
  EXPECT_EQ(reader({"check", run.string()}, out), 1) << out;
  EXPECT_NE(out.find("train/batch_loss"), std::string::npos) << out;

  // --overwrite removes the old run's tb/ with its other files: one event file, the new run's.
  ASSERT_EQ(wait_for(descent({"train", cfg.string(), "--out", (dir_ / "a").string(), "--overwrite"}, "a2")), 0)
      << slurp(dir_ / "a2.err");
  EXPECT_EQ(std::distance(fs::directory_iterator(run / "tb"), fs::directory_iterator()), 1);
  EXPECT_EQ(reader({"check", run.string()}, out), 0) << out;
}

TEST_F(TensorBoardCli, AKilledAndResumedRunHasEachStepOnce) {
  const fs::path cfg = config("k", 5, "[checkpoint]\nevery_steps = 7\nkeep = 2\n[tensorboard]\nhistogram_every_steps = 20\n");
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(wait_for(descent({"train", cfg.string(), "--out", (dir_ / "ref").string()}, "ref")), 0) << slurp(dir_ / "ref.err");
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  std::mt19937 gen(7);
  std::uniform_real_distribution<double> when(0.05, 0.3);
  const fs::path run = dir_ / "killed" / "run";
  int kills = 0, code = -1;
  for (int attempt = 1; attempt <= 30; ++attempt) {
    // Killed before its first checkpoint (a loaded machine), a run has nothing to resume: anew.
    const std::vector<std::string> args =
        !has_checkpoint(run)
            ? std::vector<std::string>{"train", cfg.string(), "--out", (dir_ / "killed").string(), "--overwrite"}
            : std::vector<std::string>{"resume", run.string()};
    const pid_t pid = descent(args, "attempt");
    if (kills < 4) {
      std::this_thread::sleep_for(std::chrono::duration<double>(when(gen) * seconds));
      kill(pid, SIGKILL);
    }
    code = wait_for(pid);
    if (code == -SIGKILL) {
      ++kills;
      continue;
    }
    ASSERT_EQ(code, 0) << slurp(dir_ / "attempt.err");
    break;
  }
  ASSERT_EQ(code, 0);
  EXPECT_GE(kills, 2) << "the kills should land while the run trains (reference: " << seconds << " s)";
  std::string out;
  ASSERT_EQ(reader({"check", run.string()}, out), 0) << out;  // each scalar of metrics.jsonl once
  EXPECT_NE(out.find("(375 steps)"), std::string::npos) << out;
  // The same scalars as the run never killed, step by step (throughput left out: it is timing).
  std::string killed, reference;
  ASSERT_EQ(reader({"dump", event_file(run).string(), "--ignore", "examples_per_s"}, killed), 0) << killed;
  ASSERT_EQ(reader({"dump", event_file(dir_ / "ref" / "run").string(), "--ignore", "examples_per_s"}, reference), 0);
  EXPECT_GT(reference.size(), 10000U);
  EXPECT_TRUE(killed == reference) << "the killed run's scalars differ after " << kills << " kills";
}

}  // namespace
