// The descent executable as a user runs it: exit codes, one-line errors, the run folder.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "descent/init/rng.hpp"

namespace {

namespace fs = std::filesystem;

struct Result {
  int code = -1;
  std::string out, err;
};

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

class Cli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("descent_cli_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  Result run(const std::string& args) {
    const fs::path out = dir_ / "stdout.txt", err = dir_ / "stderr.txt";
    const std::string cmd = std::string(DESCENT_CLI) + " " + args + " >" + out.string() + " 2>" + err.string() + " </dev/null";
    const int status = std::system(cmd.c_str());
    Result r;
    r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.out = slurp(out);
    r.err = slurp(err);
    return r;
  }

  // A small CSV problem (2 classes, 3 features) and a config that trains on it.
  fs::path write_problem() {
    descent::Rng rng(7);
    for (const char* name : {"train.csv", "test.csv"}) {
      std::ofstream f(dir_ / name);
      for (int i = 0; i < 300; ++i) {
        const int c = static_cast<int>(rng.below(2));
        f << c << "," << (c ? 1.5 : -1.5) + rng.normal() * 0.4 << "," << rng.normal() << "," << (c ? -1.0 : 1.0) << "\n";
      }
    }
    const fs::path config = dir_ / "tiny.toml";
    std::ofstream c(config);
    c << "name = \"tiny\"\nepochs = 3\nprogress = \"plain\"\nout_dir = \"" << (dir_ / "runs").string() << "\"\n"
      << "[data]\nformat = \"csv\"\ntrain_features = \"" << (dir_ / "train.csv").string() << "\"\ntest_features = \""
      << (dir_ / "test.csv").string() << "\"\nscale = 1.0\nvalidation_size = 50\n[model]\nhidden = [8]\n"
      << "[optimizer]\nname = \"sgd\"\nlr = 0.1\n";
    return config;
  }

  static int lines(const std::string& s) {
    int n = 0;
    for (char ch : s) n += ch == '\n' ? 1 : 0;
    return n;
  }

  fs::path dir_;
};

TEST_F(Cli, VersionAndHelp) {
  Result v = run("--version");
  EXPECT_EQ(v.code, 0);
  EXPECT_NE(v.out.find("descent 0."), std::string::npos) << v.out;
  Result h = run("--help");
  EXPECT_EQ(h.code, 0);
  EXPECT_NE(h.out.find("train"), std::string::npos);
  EXPECT_NE(h.out.find("eval"), std::string::npos);
  for (const char* sub : {"train", "eval"}) {
    Result s = run(std::string(sub) + " --help");
    EXPECT_EQ(s.code, 0) << sub;
    EXPECT_NE(s.out.find("--set"), std::string::npos) << sub;
  }
  Result bad = run("frobnicate");
  EXPECT_NE(bad.code, 0);
}

TEST_F(Cli, TrainThenEval) {
  const fs::path config = write_problem();
  Result t = run("train " + config.string() + " --set optimizer.lr=0.2 --name first");
  ASSERT_EQ(t.code, 0) << t.err;
  EXPECT_NE(t.out.find("test accuracy"), std::string::npos) << t.out;
  EXPECT_EQ(lines(t.out), 1) << t.out;  // the one-line summary
  EXPECT_NE(t.err.find("epoch 3/3"), std::string::npos) << t.err;  // plain progress lines
  const fs::path run_dir = dir_ / "runs" / "first";
  for (const char* f : {"config.toml", "metrics.jsonl", "model.safetensors"}) EXPECT_TRUE(fs::exists(run_dir / f)) << f;
  EXPECT_NE(slurp(run_dir / "config.toml").find("lr = 0.2"), std::string::npos);

  Result e = run("eval " + (run_dir / "model.safetensors").string() + " --config " + (run_dir / "config.toml").string());
  ASSERT_EQ(e.code, 0) << e.err;
  EXPECT_NE(e.out.find("test: 300 examples"), std::string::npos) << e.out;
  EXPECT_NE(e.out.find("confusion matrix"), std::string::npos);
  EXPECT_NE(e.out.find("accuracy"), std::string::npos);

  // The same weights under a different architecture: one clear line, exit 1.
  Result wrong = run("eval " + (run_dir / "model.safetensors").string() + " --config " + (run_dir / "config.toml").string() +
                     " --set model.hidden=[9]");
  EXPECT_EQ(wrong.code, 1);
  EXPECT_EQ(lines(wrong.err), 1) << wrong.err;
  EXPECT_NE(wrong.err.find("model.safetensors"), std::string::npos) << wrong.err;
  EXPECT_NE(wrong.err.find("layers.0.weight"), std::string::npos) << wrong.err;
}

TEST_F(Cli, BadInputIsOneLineAndExitOne) {
  const fs::path config = write_problem();
  struct Case {
    std::string args, expect;
  };
  {
    std::ofstream c(dir_ / "typo.toml");
    c << "[optimizer]\nlrr = 0.1\n";
  }
  {
    std::ofstream c(dir_ / "garbage.safetensors");
    c << "not a safetensors file at all";
  }
  const Case cases[] = {
      {"train " + (dir_ / "missing.toml").string(), "missing.toml"},
      {"train " + (dir_ / "typo.toml").string(), "optimizer.lrr"},
      {"train " + config.string() + " --set optimizer.lr=-1", "optimizer.lr"},
      {"train " + config.string() + " --set nonsense", "nonsense"},
      {"eval " + (dir_ / "garbage.safetensors").string() + " --config " + config.string(), "garbage.safetensors"},
  };
  for (const Case& c : cases) {
    Result r = run(c.args);
    EXPECT_EQ(r.code, 1) << c.args << "\n" << r.err;
    EXPECT_EQ(lines(r.err), 1) << c.args << "\n" << r.err;
    EXPECT_EQ(r.err.rfind("descent: error: ", 0), 0u) << r.err;
    EXPECT_NE(r.err.find(c.expect), std::string::npos) << c.args << "\n" << r.err;
  }
}

}  // namespace
