// `descent train` with model.dtype = "bf16" on a CPU without bf16 instructions (forced by the
// test hook DESCENT_BF16_CPU=none): one clear line and a non-zero exit, unless the user asks
// for emulation, which then trains.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

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

class Bf16Cli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("descent_bf16_cli_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    descent::Rng rng(7);
    for (const char* name : {"train.csv", "test.csv"}) {
      std::ofstream f(dir_ / name);
      for (int i = 0; i < 300; ++i) {
        const int c = static_cast<int>(rng.below(2));
        f << c << "," << (c ? 1.5 : -1.5) + rng.normal() * 0.4 << "," << rng.normal() << "," << (c ? -1.0 : 1.0) << "\n";
      }
    }
    config_ = dir_ / "tiny.toml";
    std::ofstream c(config_);
    c << "name = \"tiny\"\nepochs = 3\nprogress = \"plain\"\nout_dir = \"" << (dir_ / "runs").string() << "\"\n"
      << "[data]\nformat = \"csv\"\ntrain_features = \"" << (dir_ / "train.csv").string() << "\"\ntest_features = \""
      << (dir_ / "test.csv").string() << "\"\nscale = 1.0\nvalidation_size = 50\n[model]\nhidden = [8]\ndtype = \"bf16\"\n"
      << "[optimizer]\nname = \"sgd\"\nlr = 0.1\n";
  }
  void TearDown() override { fs::remove_all(dir_); }

  Result run(const std::string& env, const std::string& args) {
    const fs::path out = dir_ / "stdout.txt", err = dir_ / "stderr.txt";
    const std::string cmd =
        env + " " + std::string(DESCENT_CLI) + " " + args + " >" + out.string() + " 2>" + err.string() + " </dev/null";
    const int status = std::system(cmd.c_str());
    Result r;
    r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.out = slurp(out);
    r.err = slurp(err);
    return r;
  }

  fs::path dir_, config_;
};

TEST_F(Bf16Cli, CpuWithoutBf16IsRefusedInOneLine) {
  const Result r = run("DESCENT_BF16_CPU=none", "train " + config_.string());
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.code, -1) << "crashed";
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_NE(r.err.find("tiny.toml"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("model.dtype = \"bf16\""), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("model.bf16_emulate = true"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir_ / "runs" / "tiny" / "model.safetensors"));
}

TEST_F(Bf16Cli, CpuWithoutBf16TrainsWhenEmulationIsAskedFor) {
  const Result r = run("DESCENT_BF16_CPU=none", "train " + config_.string() + " --set model.bf16_emulate=true");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(fs::exists(dir_ / "runs" / "tiny" / "model.safetensors")) << r.err;
}

TEST_F(Bf16Cli, UnknownDtypeNamesTheChoices) {
  const Result r = run("", "train " + config_.string() + " --set model.dtype='\"bf8\"'");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("bf16"), std::string::npos) << r.err;
}

}  // namespace
