// What `descent train` shows and writes, with real processes (issue 19): a stream that runs out
// says so on screen and in metrics.jsonl; the bar fits a 70-column terminal (a fake width:
// $COLUMNS, standard error being a file); evaluations every N steps show as lines;
// progress = "none" prints nothing; the header records the threads actually used.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "descent/io/json_lines.hpp"
#include "support/process.hpp"
#include "support/synthetic_csv.hpp"

namespace {

namespace fs = std::filesystem;
using namespace descent::testing;  // support/process.hpp, support/synthetic_csv.hpp
using Result = ProcessResult;

class ProgressCli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fresh_test_dir("descent_progress_cli");
    write_three_class_csvs(dir_, {.seed = 5, .train = 1200, .test = 200, .features = 6, .noise = 0.7});
    // 1000 training examples in batches of 16: 63 steps per epoch.
    std::ofstream c(dir_ / "run.toml");
    c << "name = \"run\"\nseed = 4\nepochs = 5\nthreads = 1\nprogress = \"plain\"\nout_dir = \""
      << (dir_ / "runs").string() << "\"\n"
      << "[data]\nformat = \"csv\"\ntrain_features = \"" << (dir_ / "train.csv").string() << "\"\ntest_features = \""
      << (dir_ / "test.csv").string() << "\"\nscale = 1.0\nvalidation_size = 200\n"
      << "[model]\nhidden = [16]\n[optimizer]\nname = \"momentum\"\nlr = 0.05\nmomentum = 0.9\n"
      << "[schedule]\nname = \"linear\"\n[sampler]\nbatch_size = 16\n[early_stopping]\npatience = 2\n";
  }
  void TearDown() override { fs::remove_all(dir_); }

  // `descent args...` with `env` added to the environment, stdout and stderr to files.
  Result run(const std::vector<std::string>& args, const std::vector<std::string>& env = {}) {
    return run_process(DESCENT_CLI, args, dir_ / "out.txt", dir_ / "err.txt", {.env = env});
  }

  std::vector<std::string> train(std::vector<std::string> sets) {
    std::vector<std::string> args = {"train", (dir_ / "run.toml").string()};
    for (const std::string& s : sets) {
      args.push_back("--set");
      args.push_back(s);
    }
    return args;
  }

  fs::path dir_;
};

TEST_F(ProgressCli, AStreamThatRunsOutSaysSoOnScreenAndInMetrics) {
  const Result r = run(train({"sampler.kind=stream", "epochs=5"}));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("epochs = 5 cannot be reached"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("epoch 1/1 "), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("epoch 1/5"), std::string::npos) << "5 epochs are not coming:\n" << r.err;
  EXPECT_NE(r.err.find("the stream sampler ran out after 63 steps"), std::string::npos) << r.err;
  EXPECT_NE(r.out.find("best epoch 1 of 1 (the stream ran out)"), std::string::npos) << r.out;
  const auto records = descent::io::read_json_lines(dir_ / "runs" / "run" / "metrics.jsonl");
  EXPECT_EQ(records.front().at("steps"), 63);
  const auto& f = records.back();
  EXPECT_EQ(f.at("kind"), "final");
  EXPECT_EQ(f.at("ended"), "sampler_exhausted");
  EXPECT_EQ(f.at("steps"), 63);
  // The linear schedule ran to its end: the last update's rate is one step from lr_end = lr/100.
  double last_lr = 0;
  for (const auto& rec : records) {
    if (rec.at("kind") == "step") last_lr = rec.at("lr").get<double>();
  }
  EXPECT_NEAR(last_lr, 0.05 * (1.0 / 63.0) + 0.0005 * (62.0 / 63.0), 1e-12);
}

// Every redraw of the bar and every line on a 70-column terminal is at most 69 columns wide.
TEST_F(ProgressCli, TheBarFitsASeventyColumnTerminalAndEvaluationsShow) {
  const Result r = run(train({"progress=bar", "eval_every_steps=20", "epochs=3"}), {"COLUMNS=70"});
  ASSERT_EQ(r.code, 0) << r.err;
  int bars = 0;
  std::string piece;
  auto check = [&] {
    std::string text;
    for (std::size_t p = 0; p < piece.size();) {
      if (piece.compare(p, 3, "\033[K") == 0) p += 3;
      else text += piece[p++];
    }
    if (text.find("ETA") != std::string::npos) ++bars;
    // A line that cannot be broken (a path) may be wider; these are the bar and the
    // evaluation lines.
    if (text.rfind("epoch", 0) == 0 || text.rfind("step", 0) == 0 || text.rfind("  ", 0) == 0) {
      EXPECT_LE(text.size(), 69u) << "'" << text << "'";
    }
    piece.clear();
  };
  for (const char c : r.err) {
    if (c == '\r' || c == '\n') check();
    else piece += c;
  }
  check();
  EXPECT_GT(bars, 3) << r.err;
  EXPECT_NE(r.err.find("step 20 (epoch 1)"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("step 80 (epoch 2)"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("epoch 0/3"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("ETA <="), std::string::npos) << "patience 2 < 3 epochs: the ETA is a bound\n" << r.err;
}

TEST_F(ProgressCli, NonePrintsNothingButTheRunIsWritten) {
  const Result r = run(train({"progress=none", "epochs=2"}));
  EXPECT_EQ(r.code, 0);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "");
  EXPECT_TRUE(fs::exists(dir_ / "runs" / "run" / "model.safetensors"));
  EXPECT_TRUE(fs::exists(dir_ / "runs" / "run" / "report.html"));
  // An error is still said.
  const Result bad = run(train({"progress=none", "epochs=0"}));
  EXPECT_EQ(bad.code, 1);
  EXPECT_NE(bad.err.find("descent: error: "), std::string::npos) << bad.err;
}

// threads = 0 means all cores: the header says how many that was.
TEST_F(ProgressCli, TheHeaderRecordsTheThreadsUsed) {
  const Result r = run(train({"threads=0", "epochs=1"}), {"OMP_NUM_THREADS=3"});
  ASSERT_EQ(r.code, 0) << r.err;
  const auto records = descent::io::read_json_lines(dir_ / "runs" / "run" / "metrics.jsonl");
  EXPECT_EQ(records.front().at("kind"), "header");
  EXPECT_EQ(records.front().at("threads"), 3);
  EXPECT_NE(slurp(dir_ / "runs" / "run" / "config.toml").find("threads = 0"), std::string::npos);
}

}  // namespace
