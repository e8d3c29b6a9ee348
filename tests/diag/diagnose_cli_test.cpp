// descent diagnose as a user runs it: on a small float64 run, its spectrum.json against
// LAPACK's eigenvalues of the dense Hessian over the same first N training examples (built
// here from the run's config.toml and model.safetensors), trace.json against the exact
// trace, density.json's grid; and its one-line errors.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "descent/diag/hessian.hpp"
#include "descent/diag/lapack.hpp"
#include "descent/io/model_file.hpp"
#include "descent/train/data.hpp"
#include "descent/train/trainer.hpp"
#include "support/process.hpp"
#include "support/synthetic_csv.hpp"

namespace descent {
namespace {

namespace fs = std::filesystem;
using namespace descent::testing;  // support/process.hpp, support/synthetic_csv.hpp
using Result = ProcessResult;

class Diagnose : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = fresh_test_dir("descent_diag"); }
  void TearDown() override { fs::remove_all(dir_); }

  Result run(const std::string& args) { return shell(std::string(DESCENT_CLI) + " " + args, dir_); }

  // A small CSV problem (3 classes, 3 features), trained for two epochs by a float64 tanh MLP
  // with 3 * 7 + 7 + 7 * 3 + 3 = 52 parameters; returns the run folder.
  fs::path trained_run() {
    write_tiny_csvs(dir_);
    const fs::path config = dir_ / "tiny.toml";
    std::ofstream c(config);
    c << tiny_config(dir_, 2, "[optimizer]\nname = \"sgd\"\nlr = 0.1\n");
    c.close();
    const Result t = run("train " + config.string());
    EXPECT_EQ(t.code, 0) << t.err;
    return dir_ / "runs" / "tiny";
  }

  fs::path dir_;
};

// The dense Hessian of the run's model over its first n training examples, built here.
struct Exact {
  std::vector<double> dense;
  diag::Eigen eigen;
  double trace = 0.0, loss = 0.0;
  std::int64_t dim = 0;
};

Exact exact_hessian(const fs::path& run_dir, std::int64_t n) {
  const train::TrainConfig config = train::load_train_config(run_dir / "config.toml");
  train::Data data = train::load_data(config);
  train::Model model = train::build_model(config.model, data.dim, data.num_classes, config.seed);
  io::load_parameters(run_dir / "model.safetensors", *model.arena);
  Tensor buffer;
  diag::HessianOperator h(*model.net, *model.arena, data.train.rows(0, n, buffer), data.train.y.rows(0, n));
  Exact e;
  e.dim = h.dim();
  e.loss = h.loss();
  e.dense = diag::dense_hessian(h);
  e.eigen = diag::symmetric_eigen(e.dense, e.dim);
  for (std::int64_t i = 0; i < e.dim; ++i) e.trace += e.dense[static_cast<std::size_t>(i * e.dim + i)];
  return e;
}

TEST_F(Diagnose, WritesSpectrumTraceAndDensityOfTheRunsModel) {
  const fs::path run_dir = trained_run();
  ASSERT_TRUE(fs::exists(run_dir / "model.safetensors"));
  const Result r = run("diagnose " + run_dir.string() + " --examples 60 --top 3 --steps 40 --seed 3");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("60 train examples"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("spectrum: lambda_max"), std::string::npos) << r.out;
  const Exact exact = exact_hessian(run_dir, 60);
  ASSERT_EQ(exact.dim, 52);
  const double scale = std::max(std::abs(exact.eigen.values.front()), std::abs(exact.eigen.values.back()));

  const auto spectrum = nlohmann::json::parse(slurp(run_dir / "diagnostics" / "spectrum.json"));
  EXPECT_EQ(spectrum["examples"], 60);
  EXPECT_EQ(spectrum["parameters"], 52);
  EXPECT_EQ(spectrum["split"], "train");
  EXPECT_NEAR(spectrum["loss"].get<double>(), exact.loss, 1e-12);
  ASSERT_EQ(spectrum["eigenvalues_top"].size(), 3u);
  ASSERT_EQ(spectrum["eigenvalues_bottom"].size(), 3u);
  ASSERT_EQ(spectrum["residuals"]["top"].size(), 3u);
  for (std::size_t i = 0; i < 3; ++i) {
    EXPECT_NEAR(spectrum["eigenvalues_top"][i].get<double>(), exact.eigen.values[static_cast<std::size_t>(exact.dim) - 1 - i], 1e-8 * scale);
    EXPECT_NEAR(spectrum["eigenvalues_bottom"][i].get<double>(), exact.eigen.values[i], 1e-8 * scale);
  }
  EXPECT_EQ(spectrum["lambda_max"], spectrum["eigenvalues_top"][0]);

  const auto trace = nlohmann::json::parse(slurp(run_dir / "diagnostics" / "trace.json"));
  EXPECT_EQ(trace["probes"], 100);
  EXPECT_GT(trace["stderr"].get<double>(), 0.0);
  EXPECT_LT(std::abs(trace["trace"].get<double>() - exact.trace), 3 * trace["stderr"].get<double>());

  const auto density = nlohmann::json::parse(slurp(run_dir / "diagnostics" / "density.json"));
  const auto grid = density["grid"].get<std::vector<double>>();
  const auto phi = density["density"].get<std::vector<double>>();
  ASSERT_EQ(grid.size(), phi.size());
  double mass = 0.0;
  for (std::size_t i = 0; i + 1 < grid.size(); ++i) mass += 0.5 * (grid[i + 1] - grid[i]) * (phi[i] + phi[i + 1]);
  EXPECT_NEAR(mass, 1.0, 1e-8);
  EXPECT_EQ(density["probes"], 10);
  EXPECT_EQ(density["weights"], "model.safetensors");
  ASSERT_EQ(density["ritz_weights"].size(), 10u);
  for (const auto& tau : density["ritz_weights"]) {
    double sum = 0.0;
    for (const auto& t : tau) sum += t.get<double>();
    EXPECT_NEAR(sum, 1.0, 1e-12);
  }
  // The density's trace is Hutchinson's over its own 10 probes: with the same seed, those are
  // trace.json's first 10 (z' H z = dim * sum_k tau_k theta_k, exactly).
  const auto samples = trace["samples"].get<std::vector<double>>();
  ASSERT_EQ(samples.size(), 100u);
  double first10 = 0.0;
  for (std::size_t i = 0; i < 10; ++i) first10 += samples[i] / 10;
  EXPECT_NEAR(density["trace"].get<double>(), first10, 1e-9 * (1.0 + std::abs(first10)));

  // --what picks the files; more examples than the split holds takes the whole split.
  fs::remove_all(run_dir / "diagnostics");
  const Result s = run("diagnose " + run_dir.string() + " --what spectrum --split validation --examples 100000 --top 2");
  ASSERT_EQ(s.code, 0) << s.err;
  EXPECT_TRUE(fs::exists(run_dir / "diagnostics" / "spectrum.json"));
  EXPECT_FALSE(fs::exists(run_dir / "diagnostics" / "trace.json"));
  const auto v = nlohmann::json::parse(slurp(run_dir / "diagnostics" / "spectrum.json"));
  EXPECT_EQ(v["examples"], 50);
  EXPECT_EQ(v["split"], "validation");
}

TEST_F(Diagnose, BadArgumentsGiveOneLine) {
  const fs::path run_dir = trained_run();
  const Result what = run("diagnose " + run_dir.string() + " --what spectrum,hessian");
  EXPECT_EQ(what.code, 1);
  EXPECT_EQ(what.err, "descent: error: --what: unknown diagnostic 'hessian'; the diagnostics are spectrum, trace, density, noise, symmetry, critical, interpolation and plane\n");
  const Result missing = run("diagnose " + (dir_ / "nowhere").string());
  EXPECT_EQ(missing.code, 1);
  EXPECT_EQ(missing.err, "descent: error: " + (dir_ / "nowhere").string() +
                             ": not a folder (descent diagnose takes a run folder holding config.toml and model.safetensors)\n");
  fs::remove(run_dir / "model.safetensors");
  const Result no_model = run("diagnose " + run_dir.string());
  EXPECT_EQ(no_model.code, 1);
  EXPECT_NE(no_model.err.find("model.safetensors"), std::string::npos) << no_model.err;
  EXPECT_EQ(std::count(no_model.err.begin(), no_model.err.end(), '\n'), 1) << no_model.err;
}

}  // namespace
}  // namespace descent
