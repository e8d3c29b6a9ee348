// The run folder (train/run_folder.hpp) from the library: one run per folder, the run id in
// run.json and in every checkpoint, metrics.jsonl cut back only when it holds what the
// checkpoint says. The same with real processes: tests/cli/run_folder_cli_test.cpp.
#include "descent/train/run_folder.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "descent/error.hpp"
#include "descent/init/rng.hpp"
#include "descent/io/json_lines.hpp"
#include "descent/train/checkpoint.hpp"
#include "descent/train/trainer.hpp"

namespace descent::train {
namespace {

namespace fs = std::filesystem;

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

class RunFolderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("descent_run_folder_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    Rng rng(3);
    for (const char* name : {"train.csv", "test.csv"}) {
      std::ofstream f(dir_ / name);
      for (int i = 0; i < 120; ++i) {
        const int c = static_cast<int>(rng.below(2));
        f << c << "," << c + 0.5 * rng.normal() << "," << 0.5 * rng.normal() << "\n";
      }
    }
  }
  void TearDown() override { fs::remove_all(dir_); }

  TrainConfig config(const std::string& name, double lr = 0.05) const {
    std::ostringstream t;
    t << "name = \"" << name << "\"\nseed = 1\nepochs = 2\nthreads = 1\nprogress = \"none\"\nout_dir = \""
      << (dir_ / "runs").string() << "\"\n[data]\nformat = \"csv\"\ntrain_features = \"" << (dir_ / "train.csv").string()
      << "\"\ntest_features = \"" << (dir_ / "test.csv").string() << "\"\nscale = 1.0\nvalidation_size = 20\n[model]\nhidden = [4]\n"
      << "[optimizer]\nname = \"momentum\"\nlr = " << lr << "\nmomentum = 0.9\n[sampler]\nbatch_size = 16\n";
    return parse_train_config(t.str(), "run.toml");
  }

  fs::path dir_;
};

TEST_F(RunFolderTest, NewRunIdsAreSixteenHexDigitsAndDiffer) {
  std::set<std::string> seen;
  for (int i = 0; i < 100; ++i) {
    const std::string id = new_run_id();
    ASSERT_EQ(id.size(), 16u);
    EXPECT_EQ(id.find_first_not_of("0123456789abcdef"), std::string::npos) << id;
    seen.insert(id);
  }
  EXPECT_EQ(seen.size(), 100u);
}

TEST_F(RunFolderTest, EveryCheckpointCarriesTheRunIdOfRunJson) {
  const RunResult r = run(config("exp"), nullptr);
  const nlohmann::json file = nlohmann::json::parse(slurp(r.run_dir / "run.json"));
  EXPECT_EQ(file.at("format"), "descent-run/1");
  EXPECT_EQ(file.at("status"), "finished");
  const std::string id = file.at("run_id").get<std::string>();
  const auto checkpoints = list_checkpoints(r.run_dir / "checkpoints");
  ASSERT_FALSE(checkpoints.empty());
  for (const fs::path& p : checkpoints) {
    const Checkpoint c = decode_checkpoint(slurp(p), p.string());
    EXPECT_EQ(c.state.at("run_id"), id) << p;
  }
  // Not in the config.
  EXPECT_EQ(slurp(r.run_dir / "config.toml").find(id), std::string::npos);
}

TEST_F(RunFolderTest, ASecondRunIsRefusedReplacedOrRenamedAsAsked) {
  const RunResult first = run(config("exp"), nullptr);
  const std::string model = slurp(first.run_dir / "model.safetensors");
  EXPECT_TRUE(holds_run(first.run_dir));
  EXPECT_FALSE(holds_run(dir_));
  try {
    run(config("exp", 0.1), nullptr);
    FAIL() << "a second run into the same folder was not refused";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find(first.run_dir.string() + ": holds another run"), std::string::npos) << e.what();
  }
  EXPECT_EQ(slurp(first.run_dir / "model.safetensors"), model);

  const RunResult renamed = run(config("exp", 0.1), nullptr, {}, ExistingRun::fresh_name);
  EXPECT_EQ(renamed.run_dir, dir_ / "runs" / "exp-2");
  EXPECT_EQ(slurp(first.run_dir / "model.safetensors"), model);

  // Overwrite: the same config trains to the same model, with a new id; the other run's files go.
  const std::string old_id = nlohmann::json::parse(slurp(first.run_dir / "run.json")).at("run_id");
  { std::ofstream(first.run_dir / "checkpoints" / "step-000000999999.ckpt") << "stale"; }
  const RunResult again = run(config("exp"), nullptr, {}, ExistingRun::overwrite);
  EXPECT_EQ(again.run_dir, first.run_dir);
  EXPECT_EQ(slurp(again.run_dir / "model.safetensors"), model);
  EXPECT_FALSE(fs::exists(again.run_dir / "checkpoints" / "step-000000999999.ckpt"));
  EXPECT_NE(nlohmann::json::parse(slurp(again.run_dir / "run.json")).at("run_id"), old_id);
}

TEST_F(RunFolderTest, AdoptTakesTheCheckpointsIdOnlyWhenItMatches) {
  const RunResult r = run(config("exp"), nullptr);
  const fs::path newest = list_checkpoints(r.run_dir / "checkpoints").back();
  Checkpoint c = decode_checkpoint(slurp(newest), newest.string());
  RunFolder folder = RunFolder::for_resume(r.run_dir);
  EXPECT_NO_THROW(folder.adopt(c, newest.string()));
  c.state["run_id"] = "0123456789abcdef";
  EXPECT_THROW(folder.adopt(c, newest.string()), DataError);
  c.state.erase("run_id");
  EXPECT_THROW(folder.adopt(c, newest.string()), DataError);
  // Without run.json, the checkpoint's id is the run's.
  fs::remove(r.run_dir / "run.json");
  RunFolder legacy = RunFolder::for_resume(r.run_dir);
  c.state["run_id"] = "0123456789abcdef";
  legacy.adopt(c, newest.string());
  EXPECT_EQ(legacy.id(), "0123456789abcdef");
  // A malformed run.json is refused, naming it.
  { std::ofstream(r.run_dir / "run.json") << "{\"run_id\": 3}"; }
  try {
    RunFolder::for_resume(r.run_dir);
    FAIL();
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find((r.run_dir / "run.json").string() + ": not a descent run file"),
              std::string::npos)
        << e.what();
  }
}

TEST_F(RunFolderTest, CutMetricsCutsALongerFileAndRefusesAShorterOne) {
  const fs::path p = dir_ / "metrics.jsonl";
  { std::ofstream(p, std::ios::binary) << "{\"a\":1}\n{\"b\":2}\n"; }  // 16 bytes
  cut_metrics(p, 16, "ckpt");
  EXPECT_EQ(slurp(p), "{\"a\":1}\n{\"b\":2}\n");
  cut_metrics(p, 8, "ckpt");
  EXPECT_EQ(slurp(p), "{\"a\":1}\n");
  try {
    cut_metrics(p, 20, "step-000000000007.ckpt");
    FAIL();
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find(p.string() + ": holds 8 bytes, fewer than the 20 it held when "
                                                      "step-000000000007.ckpt was written"),
              std::string::npos)
        << e.what();
  }
  EXPECT_EQ(slurp(p), "{\"a\":1}\n");  // not padded
  EXPECT_THROW(cut_metrics(dir_ / "missing.jsonl", 8, "ckpt"), IoError);
}

TEST_F(RunFolderTest, ResumeRefusesAShortMetricsFile) {
  const RunResult r = run(config("exp"), nullptr);
  { std::ofstream(r.run_dir / "metrics.jsonl", std::ios::binary | std::ios::trunc) << "{}\n"; }
  EXPECT_THROW(resume(r.run_dir, nullptr), DataError);
  EXPECT_EQ(slurp(r.run_dir / "metrics.jsonl"), "{}\n");
}

}  // namespace
}  // namespace descent::train
