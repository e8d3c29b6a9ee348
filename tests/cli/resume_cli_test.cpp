// Nothing lost (issue 5), with real processes: a training run killed with SIGKILL at random
// moments, several times, and resumed each time with `descent resume`, ends with a model file
// bit-identical to the run never killed; SIGTERM and SIGINT stop after a checkpoint with a
// message that says how to resume.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "support/process.hpp"
#include "support/synthetic_csv.hpp"

namespace {

namespace fs = std::filesystem;
using namespace descent::testing;  // support/process.hpp, support/synthetic_csv.hpp

class ResumeCli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fresh_test_dir("descent_resume_cli");
    write_three_class_csvs(dir_, {.seed = 11, .train = 3000, .test = 500});
    std::ofstream c(dir_ / "run.toml");
    c << "name = \"run\"\nseed = 9\nepochs = 12\nthreads = 1\nprogress = \"plain\"\n"
      << "[data]\nformat = \"csv\"\ntrain_features = \"" << (dir_ / "train.csv").string() << "\"\ntest_features = \""
      << (dir_ / "test.csv").string() << "\"\nscale = 1.0\nvalidation_size = 500\n"
      << "[model]\ntype = \"sequential\"\nlayers = [{type = \"linear\", units = 256}, {type = \"relu\"},"
         " {type = \"dropout\", p = 0.2}, {type = \"linear\", units = 256}, {type = \"relu\"}, {type = \"linear\"}]\n"
      << "[optimizer]\nname = \"adam\"\nlr = 0.003\n[schedule]\nname = \"linear\"\n"
      << "[sampler]\nbatch_size = 16\n[early_stopping]\npatience = 100\n"
      << "[checkpoint]\nevery_steps = 9\nkeep = 2\n";
  }
  // run.toml again with a second-order method (issue 16): its state (L-BFGS pairs, damping,
  // the iterate in double precision) must survive the kills as exactly as Adam's moments.
  void write_second_order_config(const std::string& optimizer) {
    std::ofstream c(dir_ / "run.toml");
    c << "name = \"run\"\nseed = 9\nepochs = 6\nthreads = 1\nprogress = \"plain\"\n"
      << "[data]\nformat = \"csv\"\ntrain_features = \"" << (dir_ / "train.csv").string() << "\"\ntest_features = \""
      << (dir_ / "test.csv").string() << "\"\nscale = 1.0\nvalidation_size = 500\n"
      << "[model]\ntype = \"sequential\"\nlayers = [{type = \"linear\", units = 64}, {type = \"tanh\"},"
         " {type = \"dropout\", p = 0.2}, {type = \"linear\"}]\n"
      << optimizer << "[sampler]\nbatch_size = 500\n[early_stopping]\npatience = 100\n"
      << "[checkpoint]\nevery_steps = 2\nkeep = 2\n";
  }

  // Kills `descent train` with SIGKILL at random moments (at least three times), resumes it
  // each time, and compares the result with an uninterrupted run.
  void killed_and_resumed_ends_bit_identical();
  void TearDown() override { fs::remove_all(dir_); }

  // Starts `descent args...` with stdout and stderr to files in dir_; returns the pid.
  pid_t start(const std::vector<std::string>& args, const std::string& log) {
    return spawn(DESCENT_CLI, args, dir_ / (log + ".out"), dir_ / (log + ".err"));
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

TEST_F(ResumeCli, KilledAtRandomMomentsAndResumedEndsBitIdentical) { killed_and_resumed_ends_bit_identical(); }

// L-BFGS on resampled batches (history kept across batches) and Hessian-free damped Newton
// (damping lambda adapted): the same kills, the same bit-identical end.
TEST_F(ResumeCli, LbfgsKilledAndResumedEndsBitIdentical) {
  write_second_order_config("[optimizer]\nname = \"lbfgs\"\n[second_order]\nhistory = 5\nbatch = \"resample\"\n");
  killed_and_resumed_ends_bit_identical();
}

// Mixed precision (model.dtype = "bf16", issue 20): the checkpoints hold the float32 master
// weights and Adam's float32 moments; the bf16 copies are made again from them each step, so
// the same kills end bit-identical too. Four epochs of run.toml's model; emulated where the
// CPU has no bf16 instructions.
TEST_F(ResumeCli, Bf16KilledAndResumedEndsBitIdentical) {
  std::ifstream in(dir_ / "run.toml");
  std::string config((std::istreambuf_iterator<char>(in)), {});
  in.close();
  config.replace(config.find("epochs = 12"), 11, "epochs = 4");
  config.replace(config.find("[model]\n"), 8, "[model]\ndtype = \"bf16\"\nbf16_emulate = true\n");
  std::ofstream(dir_ / "run.toml") << config;
  killed_and_resumed_ends_bit_identical();
}

TEST_F(ResumeCli, HessianFreeKilledAndResumedEndsBitIdentical) {
  write_second_order_config(
      "[optimizer]\nname = \"damped_newton\"\n[second_order]\ncg_iterations = 8\nbatch = \"fixed\"\n");
  killed_and_resumed_ends_bit_identical();
}

void ResumeCli::killed_and_resumed_ends_bit_identical() {
  // The reference: one uninterrupted run.
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(wait_for(start({"train", (dir_ / "run.toml").string(), "--out", (dir_ / "ref").string()}, "ref")), 0)
      << slurp(dir_ / "ref.err");
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const std::string reference = slurp(dir_ / "ref" / "run" / "model.safetensors");
  ASSERT_FALSE(reference.empty());

  // The same run, killed with SIGKILL at random moments within its expected duration.
  std::mt19937 gen(2024);
  // Each attempt is killed within a quarter of the reference's duration, so it cannot finish
  // the run: at least four kills land before an attempt is let run to the end.
  std::uniform_real_distribution<double> when(0.03, 0.25);
  const fs::path run = dir_ / "killed" / "run";
  int kills = 0, attempts = 0, code = -1;
  while (attempts < 40) {
    ++attempts;
    const bool fresh = !has_checkpoint(run);
    const std::vector<std::string> args =
        // A run killed before its first checkpoint leaves a folder that cannot be resumed: start over in it.
        fresh ? std::vector<std::string>{"train", (dir_ / "run.toml").string(), "--out", (dir_ / "killed").string(),
                                         "--overwrite"}
              : std::vector<std::string>{"resume", run.string()};
    const pid_t pid = start(args, "attempt" + std::to_string(attempts));
    if (kills < 5) {
      std::this_thread::sleep_for(std::chrono::duration<double>(when(gen) * seconds));
      kill(pid, SIGKILL);
    }
    code = wait_for(pid);
    if (code == -SIGKILL) {
      ++kills;
      continue;
    }
    ASSERT_EQ(code, 0) << slurp(dir_ / ("attempt" + std::to_string(attempts) + ".err"));
    break;
  }
  ASSERT_EQ(code, 0);
  EXPECT_GE(kills, 3) << "the kills should land while the run trains (reference: " << seconds << " s)";
  EXPECT_TRUE(slurp(run / "model.safetensors") == reference) << "model.safetensors differs after " << kills << " kills";
  // The metrics file of the killed run has the reference's records, once each.
  std::size_t ref_lines = 0, lines = 0;
  std::string line;
  for (std::ifstream in(dir_ / "ref" / "run" / "metrics.jsonl"); std::getline(in, line);) ++ref_lines;
  for (std::ifstream in(run / "metrics.jsonl"); std::getline(in, line);) ++lines;
  EXPECT_EQ(lines, ref_lines);
}

TEST_F(ResumeCli, SigtermAndSigintCheckpointAndSayHowToResume) {
  for (const int signal : {SIGTERM, SIGINT}) {
    const fs::path out = dir_ / ("sig" + std::to_string(signal));
    const pid_t pid = start({"train", (dir_ / "run.toml").string(), "--out", out.string()}, "sig");
    // Wait until training has started (the step-0 checkpoint exists), then signal. Under a
    // loaded machine the start (loading, linking) can take seconds: wait up to a minute.
    for (int i = 0; i < 6000 && !has_checkpoint(out / "run"); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    ASSERT_TRUE(has_checkpoint(out / "run")) << "no checkpoint after 60 s: " << slurp(dir_ / "sig.err");
    std::this_thread::sleep_for(std::chrono::milliseconds(150));
    kill(pid, signal);
    const int code = wait_for(pid);
    const std::string err = slurp(dir_ / "sig.err");
    if (code == 0) continue;  // finished before the signal arrived: nothing to check
    EXPECT_EQ(code, 128 + signal) << err;
    EXPECT_NE(err.find("interrupted by SIG"), std::string::npos) << err;
    EXPECT_NE(err.find("descent resume " + (out / "run").string()), std::string::npos) << err;
    ASSERT_EQ(wait_for(start({"resume", (out / "run").string()}, "resumed")), 0) << slurp(dir_ / "resumed.err");
    EXPECT_NE(slurp(dir_ / "resumed.err").find("resuming"), std::string::npos);
    EXPECT_TRUE(fs::exists(out / "run" / "model.safetensors"));
  }
}

// Two signals in a row: the second ends the process at once (the signal's default action);
// the checkpoints already written stay valid and the run resumes to its end.
TEST_F(ResumeCli, ASecondSignalQuitsAtOnceAndTheRunStillResumes) {
  const fs::path out = dir_ / "twice";
  const pid_t pid = start({"train", (dir_ / "run.toml").string(), "--out", out.string()}, "twice");
  for (int i = 0; i < 6000 && !has_checkpoint(out / "run"); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_TRUE(has_checkpoint(out / "run")) << "no checkpoint after 60 s: " << slurp(dir_ / "twice.err");
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  kill(pid, SIGTERM);
  kill(pid, SIGTERM);
  const int code = wait_for(pid);
  if (code == 0) GTEST_SKIP() << "the run ended before the signals";
  EXPECT_TRUE(code == -SIGTERM || code == 128 + SIGTERM) << code;
  EXPECT_NE(slurp(dir_ / "twice.err").find("stopping after the current step"), std::string::npos) << slurp(dir_ / "twice.err");
  ASSERT_EQ(wait_for(start({"resume", (out / "run").string()}, "twice-resumed")), 0) << slurp(dir_ / "twice-resumed.err");
  EXPECT_TRUE(fs::exists(out / "run" / "model.safetensors"));
}

TEST_F(ResumeCli, ResumeWithoutARunIsOneClearError) {
  const int code = wait_for(start({"resume", (dir_ / "nothing").string()}, "none"));
  EXPECT_EQ(code, 1);
  const std::string err = slurp(dir_ / "none.err");
  EXPECT_NE(err.find("descent: error: "), std::string::npos) << err;
  EXPECT_NE(err.find("no such run folder"), std::string::npos) << err;
}

}  // namespace
