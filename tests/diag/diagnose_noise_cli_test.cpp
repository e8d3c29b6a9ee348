// descent diagnose --what noise,symmetry,critical as a user runs it, on a small float64 tanh
// run: noise.json's tr(Sigma) and noise scale against per-example gradients taken here on
// plain tapes from the run's files, symmetry.json against n! and rounding, critical.json's
// eigenvalues against LAPACK's for the dense Hessian and its verdict against the thresholds
// applied to those.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "descent/autodiff/tape.hpp"
#include "descent/diag/critical.hpp"
#include "descent/diag/hessian.hpp"
#include "descent/diag/lapack.hpp"
#include "descent/io/model_file.hpp"
#include "descent/loss/loss.hpp"
#include "descent/train/data.hpp"
#include "descent/train/trainer.hpp"
#include "support/process.hpp"
#include "support/synthetic_csv.hpp"

namespace descent {
namespace {

namespace fs = std::filesystem;
using namespace descent::testing;  // support/process.hpp, support/synthetic_csv.hpp

class DiagnoseNoise : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = fresh_test_dir("descent_diagnoise"); }
  void TearDown() override { fs::remove_all(dir_); }

  // The exit code; standard output, then standard error, in `out`.
  int run(const std::string& args, std::string* out = nullptr) {
    const ProcessResult r = shell(std::string(DESCENT_CLI) + " " + args, dir_);
    if (out) *out = r.out + r.err;
    return r.code;
  }

  // 3 classes, 3 features, a float64 tanh MLP 3-7-3 (52 parameters) trained two epochs.
  fs::path trained_run() {
    write_tiny_csvs(dir_);
    const fs::path config = dir_ / "tiny.toml";
    std::ofstream c(config);
    c << tiny_config(dir_, 2, "[optimizer]\nname = \"sgd\"\nlr = 0.1\n");
    c.close();
    std::string out;
    EXPECT_EQ(run("train " + config.string(), &out), 0) << out;
    return dir_ / "runs" / "tiny";
  }

  fs::path dir_;
};

TEST_F(DiagnoseNoise, NoiseSymmetryAndCriticalOfTheRunsModel) {
  const fs::path run_dir = trained_run();
  std::string out;
  ASSERT_EQ(run("diagnose " + run_dir.string() + " --what noise,symmetry,critical --examples 60 --draws 8 --trials 3", &out), 0) << out;
  EXPECT_NE(out.find("noise: standard error slope"), std::string::npos) << out;
  EXPECT_NE(out.find("critical: "), std::string::npos) << out;

  // The same model and first 60 training examples, built here; every example's gradient on its own tape.
  const train::TrainConfig config = train::load_train_config(run_dir / "config.toml");
  train::Data data = train::load_data(config);
  train::Model model = train::build_model(config.model, data.dim, data.num_classes, config.seed);
  io::load_parameters(run_dir / "model.safetensors", *model.arena);
  Tensor buffer;
  const Tensor x = data.train.rows(0, 60, buffer);
  const Tensor y = data.train.y.rows(0, 60);
  const auto dim = static_cast<std::size_t>(model.arena->size());
  std::vector<std::vector<double>> per(60, std::vector<double>(dim));
  std::vector<double> G(dim, 0.0);
  for (std::int64_t i = 0; i < 60; ++i) {
    autodiff::Tape tape;
    autodiff::Var l = loss::cross_entropy(model.net->forward(tape, tape.constant(x.rows(i, i + 1))), y.rows(i, i + 1));
    Tensor g = Tensor::zeros({model.arena->size()}, DType::f64);
    tape.backward(l, g);
    for (std::size_t j = 0; j < dim; ++j) {
      per[static_cast<std::size_t>(i)][j] = g.at(static_cast<std::int64_t>(j));
      G[j] += per[static_cast<std::size_t>(i)][j] / 60.0;
    }
  }
  double trace = 0.0, g2 = 0.0;
  for (const auto& gi : per)
    for (std::size_t j = 0; j < dim; ++j) trace += (gi[j] - G[j]) * (gi[j] - G[j]) / 60.0;
  for (double g : G) g2 += g * g;

  const auto noise = nlohmann::json::parse(slurp(run_dir / "diagnostics" / "noise.json"));
  EXPECT_EQ(noise["batch_sizes"], nlohmann::json({1, 2, 4, 8, 16, 32, 60}));
  EXPECT_EQ(noise["stderr"].size(), 7u);
  EXPECT_EQ(noise["examples"], 60);
  EXPECT_EQ(noise["draws"], 8);
  EXPECT_NEAR(noise["trace_sigma"].get<double>(), trace, 1e-12 * trace);
  EXPECT_NEAR(noise["noise_scale"].get<double>(), trace / g2, 1e-10 * trace / g2);
  EXPECT_NEAR(noise["gradient_norm"].get<double>(), std::sqrt(g2), 1e-12);
  EXPECT_LT(noise["slope"].get<double>(), -0.3);
  EXPECT_GT(noise["slope"].get<double>(), -0.7);

  const auto sym = nlohmann::json::parse(slurp(run_dir / "diagnostics" / "symmetry.json"));
  ASSERT_EQ(sym["layers"].size(), 1u);
  EXPECT_EQ(sym["layers"][0]["units"], 7);
  EXPECT_EQ(sym["layers"][0]["rescaling"], false);  // tanh
  EXPECT_NEAR(sym["log10_equivalent_models"].get<double>(), std::log10(5040.0), 1e-12);
  EXPECT_LT(sym["permutation_max_change"].get<double>(), 1e-13);
  EXPECT_GT(sym["permutation_distance"].get<double>(), 0.01);

  diag::HessianOperator h(*model.net, *model.arena, x, y);
  const diag::Eigen e = diag::symmetric_eigen(diag::dense_hessian(h), h.dim());
  const auto crit = nlohmann::json::parse(slurp(run_dir / "diagnostics" / "critical.json"));
  const double scale = std::max(e.values.back(), -e.values.front());
  EXPECT_NEAR(crit["lambda_max"].get<double>(), e.values.back(), 1e-8 * scale);
  EXPECT_NEAR(crit["lambda_min"].get<double>(), e.values.front(), 1e-8 * scale);
  EXPECT_NEAR(crit["gradient_norm"].get<double>(), std::sqrt(g2), 1e-12);
  const diag::CriticalPoint expected = diag::classify_point(h.loss(), std::sqrt(g2), e.values.front(), e.values.back(), 0.0, 0.0);
  EXPECT_EQ(crit["verdict"], expected.verdict);
  EXPECT_NEAR(crit["gradient_gap"].get<double>(), g2 / (2 * scale), 1e-8 * g2 / scale);
}

}  // namespace
}  // namespace descent
