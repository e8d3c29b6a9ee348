// The descent executable as a user runs it: exit codes, one-line errors, the run folder.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "descent/init/rng.hpp"
#include "support/process.hpp"

namespace {

namespace fs = std::filesystem;
using namespace descent::testing;  // support/process.hpp
using Result = ProcessResult;

class Cli : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = fresh_test_dir("descent_cli"); }
  void TearDown() override { fs::remove_all(dir_); }

  Result run(const std::string& args) { return shell(std::string(DESCENT_CLI) + " " + args, dir_); }

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
  EXPECT_EQ(lines(t.out), 2) << t.out;  // the one-line summary, then the report's path
  EXPECT_NE(t.out.find("\nreport " + (dir_ / "runs" / "first" / "report.html").string() + "\n"), std::string::npos) << t.out;
  EXPECT_NE(t.err.find("epoch 3/3"), std::string::npos) << t.err;  // plain progress lines
  const fs::path run_dir = dir_ / "runs" / "first";
  for (const char* f : {"config.toml", "metrics.jsonl", "model.safetensors"}) EXPECT_TRUE(fs::exists(run_dir / f)) << f;
  EXPECT_NE(slurp(run_dir / "config.toml").find("lr = 0.2"), std::string::npos);

  Result e = run("eval " + (run_dir / "model.safetensors").string() + " --config " + (run_dir / "config.toml").string());
  ASSERT_EQ(e.code, 0) << e.err;
  EXPECT_NE(e.out.find("test: 300 examples"), std::string::npos) << e.out;
  EXPECT_NE(e.out.find("confusion matrix"), std::string::npos);
  EXPECT_NE(e.out.find("accuracy"), std::string::npos);

  // The same weights under a different architecture: one clear line, exit 1, naming the first
  // tensor that differs and both shapes.
  Result wrong = run("eval " + (run_dir / "model.safetensors").string() + " --config " + (run_dir / "config.toml").string() +
                     " --set model.hidden=[9]");
  EXPECT_EQ(wrong.code, 1);
  EXPECT_EQ(lines(wrong.err), 1) << wrong.err;
  EXPECT_NE(wrong.err.find("model.safetensors: the weights do not match the model of this config"), std::string::npos)
      << wrong.err;
  EXPECT_NE(wrong.err.find("parameter 'layers.0.weight' is [8, 3] in the file, [9, 3] in the model"), std::string::npos)
      << wrong.err;
}

// The first line of eval's figures: "test: N examples  loss ...  accuracy ...%".
std::string figures(const std::string& out) {
  const std::size_t at = out.find("test: ");
  return at == std::string::npos ? "" : out.substr(at, out.find('\n', at) - at);
}

TEST_F(Cli, EvalReadsCheckpointsAndConvertsDtypes) {
  const fs::path config = write_problem();
  Result t = run("train " + config.string() + " --set optimizer.lr=0.2 --name r");
  ASSERT_EQ(t.code, 0) << t.err;
  const fs::path run_dir = dir_ / "runs" / "r";
  const std::string with_config = " --config " + (run_dir / "config.toml").string();
  Result model = run("eval " + (run_dir / "model.safetensors").string() + with_config);
  ASSERT_EQ(model.code, 0) << model.err;
  ASSERT_FALSE(figures(model.out).empty()) << model.out;
  // The run folder alone means its model.safetensors under its config.toml.
  Result folder = run("eval " + run_dir.string());
  ASSERT_EQ(folder.code, 0) << folder.err;
  EXPECT_EQ(folder.out, model.out);

  // The newest checkpoint: its best parameters are those of model.safetensors, so the figures
  // are the same; it says what it evaluated.
  fs::path newest;
  for (const auto& e : fs::directory_iterator(run_dir / "checkpoints")) newest = std::max(newest, e.path());
  Result best = run("eval " + newest.string() + with_config);
  ASSERT_EQ(best.code, 0) << best.err;
  EXPECT_NE(best.out.find("a checkpoint after 6 updates; evaluating its best parameters"), std::string::npos) << best.out;
  EXPECT_EQ(figures(best.out), figures(model.out));
  Result current = run("eval " + newest.string() + with_config + " --params current");
  ASSERT_EQ(current.code, 0) << current.err;
  EXPECT_NE(current.out.find("evaluating its current parameters"), std::string::npos) << current.out;
  // A checkpoint of another model is refused as a model file is.
  Result other = run("eval " + newest.string() + with_config + " --set model.hidden=[9]");
  EXPECT_EQ(other.code, 1);
  EXPECT_NE(other.err.find("the weights do not match the model of this config"), std::string::npos) << other.err;
  EXPECT_NE(other.err.find("'layers.0.weight' is [8, 3] in the file, [9, 3] in the model"), std::string::npos) << other.err;

  // F32 weights in an f64 model are converted (exactly), and evaluate to the same accuracy.
  Result wide = run("eval " + (run_dir / "model.safetensors").string() + with_config + " --set model.dtype=\"f64\"");
  ASSERT_EQ(wide.code, 0) << wide.err;
  const std::string a = figures(model.out), b = figures(wide.out);
  EXPECT_EQ(a.substr(a.find("0-1 error")), b.substr(b.find("0-1 error"))) << a << "\n" << b;
}

// Every way of giving eval something other than this model's weights: one line, exit 1.
TEST_F(Cli, EvalRefusesWhatIsNotThisModelsWeights) {
  const fs::path config = write_problem();
  ASSERT_EQ(run("train " + config.string() + " --name r").code, 0);
  const fs::path run_dir = dir_ / "runs" / "r";
  const std::string with_config = " --config " + (run_dir / "config.toml").string();
  {
    std::ofstream(dir_ / "empty.safetensors");
  }
  struct Case {
    std::string args, expect;
  };
  const Case cases[] = {
      {"eval " + (run_dir / "config.toml").string() + with_config, "config.toml: not a safetensors file"},
      {"eval " + (dir_ / "empty.safetensors").string() + with_config, "empty.safetensors: not a safetensors file (0 bytes)"},
      {"eval " + dir_.string() + with_config, ": a folder without model.safetensors"},
      {"eval " + (run_dir / "model.safetensors").string(), "--config CONFIG.toml is required with a weights file"},
      {"eval " + (run_dir / "model.safetensors").string() + with_config + " --set model.hidden=[8,8]",
       "the weights do not match the model of this config (" + (run_dir / "config.toml").string() +
           "): parameter 'layers.2.weight' is [2, 8] in the file, [8, 8] in the model"},
      {"eval " + (run_dir / "model.safetensors").string() + with_config + " --params best", "only for a checkpoint"},
  };
  for (const Case& c : cases) {
    Result r = run(c.args);
    EXPECT_EQ(r.code, 1) << c.args << "\n" << r.err;
    EXPECT_EQ(lines(r.err), 1) << c.args << "\n" << r.err;
    EXPECT_EQ(r.err.rfind("descent: error: ", 0), 0u) << r.err;
    EXPECT_NE(r.err.find(c.expect), std::string::npos) << c.args << "\n" << r.err;
  }
}

// What CLI11 refuses (exit codes 105-109 of its own) is a usage error like any other: one line
// "descent: error: ...", exit 1, with a suggestion where one helps (README, "Exit status").
TEST_F(Cli, UsageErrorsSuggestAndExitOne) {
  const fs::path config = write_problem();
  const std::string c = config.string();
  struct Case {
    std::string args, expect;
  };
  const Case cases[] = {
      {"trian " + c, "unknown command 'trian'; did you mean 'descent train'?"},
      {"evla x --config " + c, "did you mean 'descent eval'?"},
      {"frobnicate", "unknown command 'frobnicate'; the commands are train, resume, eval, optimize, report, diagnose, compare and shard"},
      {"train " + c + " --lr 0.1", "unknown option --lr for descent train; optimizer.lr is a config key: use --set optimizer.lr=0.1"},
      {"train " + c + " --lr=0.1", "use --set optimizer.lr=0.1"},
      {"train " + c + " --epochs 5", "use --set epochs=5"},
      {"train " + c + " epochs=5", "unexpected argument epochs=5; to set epochs use --set epochs=5"},
      {"train " + c + " --batch-size 64", "use --set sampler.batch_size=64"},
      {"train " + c + " --optimizer.momentum", "use --set optimizer.momentum=VALUE"},
      {"train " + c + " --patience 3", "--set KEY=VALUE, here schedule.patience or early_stopping.patience"},
      {"eval m --config " + c + " --seed 3", "unknown option --seed for descent eval; seed is a config key: use --set seed=3"},
      {"train " + c + " --nmae x", "unknown option --nmae for descent train; did you mean --name?"},
      {"train " + c + " --zzzzzz", "unknown option --zzzzzz for descent train; its options are --help, --set, --out"},
      {"optimize --function rosenbrock --lrr 3", "unknown option --lrr for descent optimize; did you mean --lr?"},
      {"--frob train " + c, "unknown option --frob before the command"},
      {"train", "config is required (descent train --help)"},
      {"train " + c + " " + c, "not expected"},
      {"eval x --config " + c + " --split nowhere", "--split"},
      {"resume", "run_dir is required"},
  };
  for (const Case& k : cases) {
    Result r = run(k.args);
    EXPECT_EQ(r.code, 1) << k.args << "\n" << r.err;
    EXPECT_EQ(lines(r.err), 1) << k.args << "\n" << r.err;
    EXPECT_EQ(r.err.rfind("descent: error: ", 0), 0u) << r.err;
    EXPECT_NE(r.err.find(k.expect), std::string::npos) << k.args << "\n" << r.err;
    EXPECT_TRUE(r.out.empty()) << k.args << "\n" << r.out;
  }
}

// No command: the help on stdout, one error line on stderr, exit 1.
TEST_F(Cli, NoCommandPrintsTheHelpAndFails) {
  Result r = run("");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.out.find("Subcommands:"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("train"), std::string::npos) << r.out;
  EXPECT_EQ(r.err, "descent: error: no command given; the commands are train, resume, eval, optimize, report, diagnose, compare and shard\n");
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

// Issue 19: `--set optimizer.name=sgd` on a config with momentum 0.9 was refused by the
// optimizer factory without naming the file or the key.
TEST_F(Cli, OptimizerKeyConflictNamesTheFileAndTheKey) {
  const fs::path config = write_problem();
  const Result r = run("train " + config.string() + " --set optimizer.name=momentum --set optimizer.momentum=0.9 "
                                                    "--set optimizer.name=sgd");
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find(config.string() + ": optimizer.momentum: optimizer.name = \"sgd\" has no momentum"),
            std::string::npos)
      << r.err;
}
