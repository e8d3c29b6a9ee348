// The grid of `descent compare` (compare/grid.hpp): ranges against their formula, GRID.toml
// and --vary parsing, expansion (points, runs, overrides, names), the digest, and one clear
// error for each kind of malformed input.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>

#include "descent/compare/grid.hpp"
#include "descent/error.hpp"

namespace {

namespace fs = std::filesystem;
using namespace descent;

class Grid : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(DESCENT_BINARY_DIR) / "compare-test" / ("grid-" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    std::ofstream(dir_ / "base.toml") << "name = \"base\"\nepochs = 2\n[data]\nformat = \"csv\"\ntrain_features = \"a.csv\"\n"
                                         "test_features = \"b.csv\"\n[optimizer]\nname = \"sgd\"\nlr = 0.01\n";
  }
  void TearDown() override { fs::remove_all(dir_); }
  compare::GridSpec grid(const std::string& body) {
    return compare::parse_grid("config = \"base.toml\"\n" + body, "g.toml", dir_);
  }
  fs::path dir_;
};

std::string three(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g", v);
  return buf;
}

TEST_F(Grid, LogAndLinearRangesFollowTheirFormula) {
  const auto log = compare::expand_range("log:1e-4:1e-1:7", "x");
  ASSERT_EQ(log.size(), 7u);
  for (int i = 0; i < 7; ++i) {
    // 10^(-4 + i/2): 1e-4, 3.16e-4, 1e-3, ..., 1e-1, rounded to 3 significant digits.
    EXPECT_EQ(log[i].toml, three(std::pow(10.0, -4.0 + 0.5 * i))) << i;
    EXPECT_NEAR(std::stod(log[i].toml), std::pow(10.0, -4.0 + 0.5 * i), 0.005 * std::pow(10.0, -4.0 + 0.5 * i));
  }
  const auto lin = compare::expand_range("lin:0:1:5", "x");
  ASSERT_EQ(lin.size(), 5u);
  EXPECT_EQ(lin[0].toml, "0");
  EXPECT_EQ(lin[1].toml, "0.25");
  EXPECT_EQ(lin[4].toml, "1");
  EXPECT_EQ(compare::expand_range("log:0.01:0.01:1", "x").size(), 1u);
}

TEST_F(Grid, VaryAndSeedsFromTheCommandLine) {
  const compare::Axis names = compare::parse_vary("optimizer.name=sgd,momentum,adam");
  EXPECT_EQ(names.key, "optimizer.name");
  ASSERT_EQ(names.values.size(), 3u);
  EXPECT_EQ(names.values[1].toml, "\"momentum\"");
  EXPECT_EQ(names.values[1].text, "momentum");
  const compare::Axis lr = compare::parse_vary("optimizer.lr=log:1e-4:1e-1:7");
  EXPECT_EQ(lr.values.size(), 7u);
  const compare::Axis hidden = compare::parse_vary("model.hidden=[16,8],[32]");
  ASSERT_EQ(hidden.values.size(), 2u);
  EXPECT_EQ(hidden.values[1].toml, "[ 32 ]");
  EXPECT_EQ(compare::parse_seeds("1, 2,3"), (std::vector<std::uint64_t>{1, 2, 3}));
}

TEST_F(Grid, GroupsExpandToTheUnionOfTheirProducts) {
  const compare::GridSpec spec = grid(
      "seeds = [1, 2]\n[set]\nepochs = 3\n[vary]\n\"sampler.batch_size\" = [16, 32]\n"
      "[[group]]\nlabel = \"plain\"\nset = { \"optimizer.name\" = \"sgd\" }\nvary = { \"optimizer.lr\" = [0.1, 0.01, 0.001] }\n"
      "[[group]]\nset = { optimizer = { name = \"adam\" } }\nvary = { optimizer = { lr = [0.001] } }\n");
  const compare::Grid g = compare::expand(spec);
  // (2 batch sizes x 3 rates) + (2 x 1) points, 2 seeds each.
  ASSERT_EQ(g.points.size(), 8u);
  ASSERT_EQ(g.runs.size(), 16u);
  EXPECT_EQ(g.points[0].method, "plain");
  EXPECT_EQ(g.points[7].method, "adam");  // no label: the point's optimizer.name
  EXPECT_DOUBLE_EQ(g.points[1].lr, 0.01);
  EXPECT_EQ(g.points[1].name, "p01-plain-batch_size16-lr0.01");
  EXPECT_EQ(g.runs[3].name, "p01-plain-batch_size16-lr0.01-s2");
  EXPECT_EQ(g.runs[3].overrides,
            (std::vector<std::string>{"epochs=3", "optimizer.name=\"sgd\"", "sampler.batch_size=16", "optimizer.lr=0.01",
                                      "seed=2"}));
  std::set<std::string> names;
  for (const auto& r : g.runs) names.insert(r.name);
  EXPECT_EQ(names.size(), g.runs.size());
}

TEST_F(Grid, DigestChangesWithWhatIsTrainedOnly) {
  const std::string body = "seeds = [1, 2]\njobs = 2\n[vary]\n\"optimizer.lr\" = [0.1, 0.01]\n";
  const std::string a = compare::expand(grid(body)).digest;
  EXPECT_EQ(a.size(), 64u);
  EXPECT_EQ(compare::expand(grid(body)).digest, a);
  // jobs and the target do not change what a run trains.
  EXPECT_EQ(compare::expand(grid("target_val_error = 0.3\n" + body)).digest, a);
  EXPECT_NE(compare::expand(grid("seeds = [1, 3]\n[vary]\n\"optimizer.lr\" = [0.1, 0.01]\n")).digest, a);
  EXPECT_NE(compare::expand(grid("seeds = [1, 2]\n[vary]\n\"optimizer.lr\" = [0.1, 0.02]\n")).digest, a);
  std::ofstream(dir_ / "base.toml", std::ios::app) << "[sampler]\nbatch_size = 7\n";
  EXPECT_NE(compare::expand(grid(body)).digest, a);  // the base config changed
}

// The preset of the README: every run's config valid, the eight methods of 8.3 and 8.5.
TEST_F(Grid, PresetExpands) {
  const compare::Grid g = compare::expand(compare::load_grid(fs::path(DESCENT_SOURCE_DIR) / "examples" / "compare_optimizers.toml"));
  EXPECT_EQ(g.points.size(), 24u);
  EXPECT_EQ(g.runs.size(), 72u);
  std::vector<std::string> methods;
  for (const auto& p : g.points) {
    if (methods.empty() || methods.back() != p.method) methods.push_back(p.method);
    EXPECT_GT(p.lr, 0.0) << p.name;
  }
  EXPECT_EQ(methods, (std::vector<std::string>{"SGD", "momentum", "Nesterov", "AdaGrad", "RMSProp", "RMSProp+Nesterov",
                                               "AdaDelta", "Adam"}));
  EXPECT_EQ(g.spec.jobs, 2);
}

// One ConfigError, one line, naming the file (and line) and the key.
void expect_error(const std::function<void()>& f, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one with " << parts[0];
  } catch (const ConfigError& e) {
    const std::string m = e.what();
    EXPECT_EQ(m.find('\n'), std::string::npos) << m;
    for (const std::string& p : parts) EXPECT_NE(m.find(p), std::string::npos) << "'" << p << "' not in: " << m;
  }
}

TEST_F(Grid, MalformedGridsGiveOneClearError) {
  expect_error([&] { compare::parse_grid("seeds = [1]\n", "g.toml", dir_); }, {"g.toml: not a grid: no config key"});
  expect_error([&] { grid("jobz = 2\n"); }, {"g.toml, line 2", "jobz: unknown key"});
  expect_error([&] { grid("[vary]\n\"optimizer.lrr\" = [0.1]\n"); }, {"g.toml, line 3", "optimizer.lrr: not a config key"});
  expect_error([&] { grid("[vary]\n\"optimizer.lr\" = []\n"); }, {"line 3", "vary.optimizer.lr: an empty list"});
  expect_error([&] { grid("[vary]\n\"optimizer.lr\" = \"log:1:2\"\n"); }, {"line 3", "log:A:B:N", "got \"log:1:2\""});
  expect_error([&] { grid("[vary]\n\"optimizer.lr\" = \"log:-1:2:3\"\n"); }, {"line 3", "A > 0"});
  expect_error([&] { grid("[vary]\n\"optimizer.lr\" = 0.1\n"); }, {"line 3", "expected a list of values"});
  expect_error([&] { grid("seeds = [1, 1]\n"); }, {"line 2", "seeds", "twice"});
  expect_error([&] { grid("seeds = [\"a\"]\n"); }, {"line 2", "seeds: expected"});
  expect_error([&] { grid("jobs = 0\n"); }, {"line 2", "jobs: expected an integer in [1, 256]"});
  expect_error([&] { grid("target_val_error = 2\n"); }, {"line 2", "target_val_error"});
  expect_error([&] { grid("[[group]]\nlabels = \"x\"\n"); }, {"line 3", "group.labels: unknown key"});
  expect_error([&] { grid("[vary\n"); }, {"g.toml, line 2", "TOML syntax error"});
  // A value the config refuses names the point.
  expect_error([&] { compare::expand(grid("[vary]\n\"optimizer.lr\" = [0.1, -1]\n")); },
               {"g.toml: point p01 optimizer.lr=-1", "optimizer.lr", "> 0"});
  // Two points that train the same thing.
  expect_error([&] { compare::expand(grid("[[group]]\nvary = { \"optimizer.lr\" = [0.1] }\n[[group]]\nvary = { \"optimizer.lr\" = [0.1] }\n")); },
               {"g.toml: points p00-lr0.1 and p01-lr0.1 are the same settings"});
}

TEST_F(Grid, MalformedCommandLineValuesGiveOneClearError) {
  expect_error([] { compare::parse_vary("optimizer.lr"); }, {"--vary optimizer.lr", "KEY=V1,V2"});
  expect_error([] { compare::parse_vary("optimizer.lr="); }, {"--vary optimizer.lr=", "KEY=V1,V2"});
  expect_error([] { compare::parse_vary("optimizer.lr=0.1,,0.2"); }, {"an empty value"});
  expect_error([] { compare::parse_vary("optimiser.lr=0.1"); }, {"optimiser.lr: not a config key"});
  expect_error([] { compare::parse_vary("optimizer.lr=log:1e-4:1e-1"); }, {"--vary optimizer.lr=log:1e-4:1e-1", "log:A:B:N"});
  expect_error([] { compare::parse_vary("optimizer.lr=log:1e-4:1e-1:x"); }, {"log:A:B:N"});
  expect_error([] { compare::parse_seeds("1,two"); }, {"--seeds 1,two", "integers >= 0"});
  expect_error([] { compare::parse_seeds("1,2,1"); }, {"seed 1 is listed twice"});
  expect_error([] { compare::parse_set("epochs"); }, {"--set epochs", "KEY=VALUE"});
}

}  // namespace
