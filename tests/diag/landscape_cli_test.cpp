// descent diagnose --what interpolation,plane and --weights as a user runs them, on a small
// float64 run trained with snapshots: the curve's and the planes' values at theta_0 and
// theta* against evaluations of init.safetensors and model.safetensors made here, the
// trajectory's projections against coordinates computed here from the snapshot files, the
// trajectory length against trajectory.json, and the one-line errors.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "descent/io/model_file.hpp"
#include "descent/train/data.hpp"
#include "descent/train/evaluate.hpp"
#include "descent/train/trainer.hpp"
#include "support/process.hpp"
#include "support/synthetic_csv.hpp"

namespace descent {
namespace {

namespace fs = std::filesystem;
using namespace descent::testing;  // support/process.hpp, support/synthetic_csv.hpp
using Result = ProcessResult;
using json = nlohmann::json;

json read_json(const fs::path& p) { return json::parse(slurp(p)); }

class Landscape : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = fresh_test_dir("descent_landscape_cli");
    write_tiny_csvs(dir_);
    std::ofstream c(dir_ / "tiny.toml");
    c << tiny_config(dir_, 3, "[optimizer]\nname = \"momentum\"\nlr = 0.1\n[sampler]\nbatch_size = 16\n[snapshots]\nevery_steps = 4\n");
    c.close();
    const Result t = run("train " + (dir_ / "tiny.toml").string());
    ASSERT_EQ(t.code, 0) << t.err;
    run_dir_ = dir_ / "runs" / "tiny";
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }

  static Result run(const std::string& args) { return shell(std::string(DESCENT_CLI) + " " + args, dir_); }

  // The run's model with the weights of `file`, evaluated by train::evaluate on the first n
  // examples of a split (a split cut here, evaluated in one chunk).
  static train::Evaluation evaluation(const fs::path& file, const std::string& split, std::int64_t n) {
    const train::TrainConfig config = train::load_train_config(run_dir_ / "config.toml");
    train::Data data = train::load_data(config);
    train::Model model = train::build_model(config.model, data.dim, data.num_classes, config.seed);
    io::load_parameters(file, *model.arena);
    data::Split s = split == "validation" ? data.validation : data.train;
    n = std::min(n, s.size());
    s.y = s.y.rows(0, n);
    if (s.x.defined()) s.x = s.x.rows(0, n);
    return train::evaluate(*model.net, s, 100000);
  }

  static std::vector<double> parameters(const fs::path& file) {
    const train::TrainConfig config = train::load_train_config(run_dir_ / "config.toml");
    train::Data data = train::load_data(config);
    train::Model model = train::build_model(config.model, data.dim, data.num_classes, config.seed);
    io::load_parameters(file, *model.arena);
    const double* p = model.arena->values().data<double>();
    return std::vector<double>(p, p + model.arena->size());
  }

  static std::size_t index_of(const json& values, double v) {
    for (std::size_t i = 0; i < values.size(); ++i) {
      if (values[i].get<double>() == v) return i;
    }
    ADD_FAILURE() << v << " is not among " << values.dump();
    return 0;
  }

  static fs::path dir_, run_dir_;
};
fs::path Landscape::dir_, Landscape::run_dir_;

TEST_F(Landscape, InterpolationEndsAreTheEvaluationsOfTheInitialAndFinalWeights) {
  const Result r = run("diagnose " + run_dir_.string() + " --what interpolation --examples 60 --points 7");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("interpolation: 7 points"), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("interpolation: 7/7 points (100%)"), std::string::npos) << r.err;  // plain progress: not a terminal
  const json j = read_json(run_dir_ / "diagnostics" / "interpolation.json");
  EXPECT_EQ(j["weights"], "model.safetensors");
  ASSERT_EQ(j["alpha"].size(), 7u);
  EXPECT_EQ(j["train_loss"].size(), 7u);
  EXPECT_EQ(j["validation_error"].size(), 7u);
  EXPECT_EQ(j["train_examples"], 60);
  EXPECT_EQ(j["validation_examples"], 50);  // the whole validation split
  const std::size_t i0 = index_of(j["alpha"], 0.0), i1 = index_of(j["alpha"], 1.0);
  for (const std::string split : {"train", "validation"}) {
    const train::Evaluation e0 = evaluation(run_dir_ / "init.safetensors", split, 60);
    const train::Evaluation e1 = evaluation(run_dir_ / "model.safetensors", split, 60);
    EXPECT_NEAR(j[split + "_loss"][i0].get<double>(), e0.loss, 1e-12) << split;
    EXPECT_NEAR(j[split + "_loss"][i1].get<double>(), e1.loss, 1e-12) << split;
    EXPECT_EQ(j[split + "_error"][i0].get<double>(), e0.error) << split;
    EXPECT_EQ(j[split + "_error"][i1].get<double>(), e1.error) << split;
    EXPECT_LT(e1.loss, e0.loss);  // training did something
  }
  // The trajectory's length is training's; the straight distance |theta* - theta_0| is computed here.
  const std::vector<double> t0 = parameters(run_dir_ / "init.safetensors"), t1 = parameters(run_dir_ / "model.safetensors");
  double d = 0.0;
  for (std::size_t i = 0; i < t0.size(); ++i) d += (t1[i] - t0[i]) * (t1[i] - t0[i]);
  d = std::sqrt(d);
  const json& length = j["trajectory_length"];
  EXPECT_NEAR(length["straight_distance"].get<double>(), d, 1e-12 * d);
  EXPECT_EQ(length["length"].get<double>(), read_json(run_dir_ / "trajectory.json")["length"].get<double>());
  EXPECT_NEAR(length["ratio"].get<double>(), length["length"].get<double>() / d, 1e-12);
  EXPECT_GT(length["ratio"].get<double>(), 1.0);
}

TEST_F(Landscape, PlaneThroughTheLineHoldsTheEndsAndTheTrajectory) {
  // 7 points over [-0.25, 1.25]: x = 0 and 1 on the grid; y symmetric: 0 in the middle.
  const Result r = run("diagnose " + run_dir_.string() + " --what plane --examples 60 --grid 7");
  ASSERT_EQ(r.code, 0) << r.err;
  const json j = read_json(run_dir_ / "diagnostics" / "plane.json");
  EXPECT_EQ(j["method"], "line");
  EXPECT_NE(j["direction"].get<std::string>().find("main deviation"), std::string::npos) << j["direction"];
  EXPECT_GT(j["explained"].get<double>(), 0.0);
  EXPECT_LE(j["explained"].get<double>(), 1.0 + 1e-12);
  EXPECT_NEAR(j["points"]["theta_0"]["x"].get<double>(), 0.0, 1e-12);
  EXPECT_NEAR(j["points"]["theta_0"]["y"].get<double>(), 0.0, 1e-12);
  EXPECT_NEAR(j["points"]["theta_star"]["x"].get<double>(), 1.0, 1e-12);
  EXPECT_NEAR(j["points"]["theta_star"]["y"].get<double>(), 0.0, 1e-12);
  const json& xs = j["axes"]["x"]["values"];
  const json& ys = j["axes"]["y"]["values"];
  ASSERT_EQ(xs.size(), 7u);
  ASSERT_EQ(ys.size(), 7u);
  ASSERT_EQ(j["loss"].size(), 7u);
  ASSERT_EQ(j["loss"][0].size(), 7u);
  const std::size_t y0 = index_of(ys, 0.0), x0 = index_of(xs, 0.0), x1 = index_of(xs, 1.0);
  EXPECT_NEAR(j["loss"][y0][x0].get<double>(), evaluation(run_dir_ / "init.safetensors", "train", 60).loss, 1e-12);
  EXPECT_NEAR(j["loss"][y0][x1].get<double>(), evaluation(run_dir_ / "model.safetensors", "train", 60).loss, 1e-12);
  EXPECT_EQ(j["error"][y0][x1].get<double>(), evaluation(run_dir_ / "model.safetensors", "train", 60).error);
  // The trajectory: theta_0, then the snapshots of every 4 steps (150 examples / 16 = 10 per
  // epoch, 30 updates: steps 4, 8, ..., 28).
  const json& tr = j["trajectory"];
  ASSERT_EQ(tr["step"].size(), 8u);
  EXPECT_EQ(tr["step"][0], 0);
  EXPECT_EQ(tr["step"][7], 28);
  const std::vector<double> t0 = parameters(run_dir_ / "init.safetensors"), t1 = parameters(run_dir_ / "model.safetensors");
  double dd = 0.0;
  for (std::size_t i = 0; i < t0.size(); ++i) dd += (t1[i] - t0[i]) * (t1[i] - t0[i]);
  for (std::size_t k = 1; k < 8; ++k) {
    const std::vector<double> t = parameters(run_dir_ / "snapshots" / ("step-" + std::to_string(4 * k) + ".safetensors"));
    double along = 0.0, r2 = 0.0;
    for (std::size_t i = 0; i < t.size(); ++i) {
      along += (t[i] - t0[i]) * (t1[i] - t0[i]);
      r2 += (t[i] - t0[i]) * (t[i] - t0[i]);
    }
    const double x = tr["x"][k].get<double>(), y = tr["y"][k].get<double>(), off = tr["off_plane"][k].get<double>();
    EXPECT_NEAR(x, along / dd, 1e-10) << k;                       // the coordinate along theta* - theta_0
    EXPECT_NEAR(dd * (x * x + y * y) + off * off, r2, 1e-9 * r2) << k;  // Pythagoras: the plane's axes are orthogonal
  }
  // The plane is wide enough for the trajectory.
  double largest = 0.0;
  for (const auto& y : tr["y"]) largest = std::max(largest, std::abs(y.get<double>()));
  EXPECT_GE(ys.back().get<double>(), largest);
}

TEST_F(Landscape, RandomAndHessianPlanesAreCenteredOnThetaStar) {
  Result r = run("diagnose " + run_dir_.string() + " --what plane --plane random --grid 3 --range 0.5 --examples 60");
  ASSERT_EQ(r.code, 0) << r.err;
  json j = read_json(run_dir_ / "diagnostics" / "plane.json");
  EXPECT_EQ(j["method"], "random");
  EXPECT_EQ(j["axes"]["x"]["values"], json({-0.5, 0.0, 0.5}));
  const double at_star = evaluation(run_dir_ / "model.safetensors", "train", 60).loss;
  EXPECT_NEAR(j["loss"][1][1].get<double>(), at_star, 1e-12);
  EXPECT_NEAR(j["points"]["theta_star"]["x"].get<double>(), 0.0, 1e-12);
  EXPECT_GT(j["loss"][0][0].get<double>(), at_star);  // half a filter norm away is worse

  r = run("diagnose " + run_dir_.string() + " --what spectrum,plane --plane hessian --grid 3 --examples 60 --steps 40");
  ASSERT_EQ(r.code, 0) << r.err;
  j = read_json(run_dir_ / "diagnostics" / "plane.json");
  const json s = read_json(run_dir_ / "diagnostics" / "spectrum.json");
  EXPECT_EQ(j["method"], "hessian");
  EXPECT_NEAR(j["eigenvalues"][0].get<double>(), s["eigenvalues_top"][0].get<double>(), 1e-9);
  EXPECT_NEAR(j["eigenvalues"][1].get<double>(), s["eigenvalues_top"][1].get<double>(), 1e-9);
  EXPECT_NEAR(j["range"].get<double>(), 2.0 / std::sqrt(s["eigenvalues_top"][0].get<double>()), 1e-9);
  EXPECT_NEAR(j["loss"][1][1].get<double>(), at_star, 1e-12);
  // Along the top eigenvector the quadratic model predicts a rise of about 1/2 lambda r^2 = 2.
  const double rise = 0.5 * (j["loss"][1][0].get<double>() + j["loss"][1][2].get<double>()) - at_star;
  EXPECT_GT(rise, 0.5);
  EXPECT_LT(rise, 8.0);
}

TEST_F(Landscape, WeightsOptionChoosesTheWeightsOfEveryDiagnostic) {
  Result r = run("diagnose " + run_dir_.string() + " --what spectrum --weights init --examples 60 --steps 20");
  ASSERT_EQ(r.code, 0) << r.err;
  json s = read_json(run_dir_ / "diagnostics" / "spectrum.json");
  EXPECT_EQ(s["weights"], "init.safetensors");
  EXPECT_NEAR(s["loss"].get<double>(), evaluation(run_dir_ / "init.safetensors", "train", 60).loss, 1e-12);

  const fs::path snap = run_dir_ / "snapshots" / "step-12.safetensors";
  r = run("diagnose " + run_dir_.string() + " --what trace,interpolation --weights " + snap.string() +
          " --examples 60 --probes 4 --points 3");
  ASSERT_EQ(r.code, 0) << r.err;
  s = read_json(run_dir_ / "diagnostics" / "trace.json");
  EXPECT_EQ(s["weights"], snap.string());
  EXPECT_NEAR(s["loss"].get<double>(), evaluation(snap, "train", 60).loss, 1e-12);
  const json j = read_json(run_dir_ / "diagnostics" / "interpolation.json");
  EXPECT_EQ(j["weights"], snap.string());
  EXPECT_NEAR(j["train_loss"][index_of(j["alpha"], 1.0)].get<double>(), evaluation(snap, "train", 60).loss, 1e-12);

  r = run("diagnose " + run_dir_.string() + " --what interpolation --weights init");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("--weights init"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;

  r = run("diagnose " + run_dir_.string() + " --weights " + (dir_ / "nothing.safetensors").string());
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("nothing.safetensors"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

TEST_F(Landscape, WithoutSnapshotsThePlaneSaysItsSecondDirectionIsRandom) {
  // A copy of the run without its snapshots (and, for the second check, its init.safetensors).
  const fs::path copy = dir_ / "copy";
  fs::remove_all(copy);
  fs::copy(run_dir_, copy, fs::copy_options::recursive);
  fs::remove_all(copy / "snapshots");
  Result r = run("diagnose " + copy.string() + " --what plane --examples 30 --grid 3");
  ASSERT_EQ(r.code, 0) << r.err;
  const json j = read_json(copy / "diagnostics" / "plane.json");
  EXPECT_NE(j["direction"].get<std::string>().find("no snapshots"), std::string::npos) << j["direction"];
  EXPECT_EQ(j["trajectory"]["step"], json::array({0}));
  EXPECT_NEAR(j["points"]["theta_star"]["x"].get<double>(), 1.0, 1e-12);
  fs::remove(copy / "init.safetensors");
  r = run("diagnose " + copy.string() + " --what interpolation");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("init.safetensors: missing"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

}  // namespace
}  // namespace descent
