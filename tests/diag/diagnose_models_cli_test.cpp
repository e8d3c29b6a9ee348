// descent diagnose with every --what on a tiny float64 CNN run and a tiny LSTM run, as a user
// runs it (a real `descent train`, then `descent diagnose`), each figure against an
// independent computation made here from the run's config.toml and weight files:
// spectrum.json and critical.json against LAPACK's eigenvalues of the dense Hessian (built
// column by column from exact products; hessian_models_test checks those products against
// finite differences of gradients through conv and LSTM layers), trace.json within 3
// standard errors of the exact trace, density.json's mass, noise.json's tr(Sigma) and |G|
// against per-example gradients taken here one tape per example, symmetry.json's layers and
// a change at float rounding (and a one-sided permutation that does change the loss),
// interpolation.json's and plane.json's ends against train::evaluate of init.safetensors and
// model.safetensors.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "descent/autodiff/tape.hpp"
#include "descent/diag/hessian.hpp"
#include "descent/diag/lapack.hpp"
#include "descent/diag/noise.hpp"
#include "descent/diag/symmetry.hpp"
#include "descent/init/rng.hpp"
#include "descent/io/model_file.hpp"
#include "descent/loss/loss.hpp"
#include "descent/train/data.hpp"
#include "descent/train/evaluate.hpp"
#include "descent/train/trainer.hpp"
#include "support/process.hpp"

namespace descent {
namespace {

namespace fs = std::filesystem;
using namespace descent::testing;  // support/process.hpp
using Result = ProcessResult;
using json = nlohmann::json;

json read_json(const fs::path& p) { return json::parse(slurp(p)); }

constexpr std::int64_t kExamples = 40;

const char* kCnnLayers =
    "layers = [\n"
    "  {type = \"unflatten\", shape = [1, 4, 4]},\n"
    "  {type = \"conv2d\", channels = 3, kernel = 3, padding = 1},\n"
    "  {type = \"relu\"},\n"
    "  {type = \"maxpool2d\", kernel = 2},\n"
    "  {type = \"flatten\"},\n"
    "  {type = \"linear\", units = 4},\n"
    "  {type = \"relu\"},\n"
    "  {type = \"linear\"},\n"
    "]\n";
const char* kLstmLayers =
    "layers = [\n"
    "  {type = \"lstm\", hidden = 3, input_size = 4},\n"
    "  {type = \"linear\"},\n"
    "]\n";

class DiagnoseModels : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = fresh_test_dir("descent_diagnose_models");
    // 16 features: a 4 x 4 image (CNN) or 4 steps of 4 (LSTM); the class moves one row's mean.
    Rng rng(5);
    for (const char* name : {"train.csv", "test.csv"}) {
      std::ofstream f(dir_ / name);
      for (int i = 0; i < 120; ++i) {
        const int c = static_cast<int>(rng.below(3));
        f << c;
        for (int k = 0; k < 16; ++k) f << "," << (k / 4 == c ? 1.0 : 0.0) + 0.7 * rng.normal();
        f << "\n";
      }
    }
    for (const auto& [name, layers] : {std::pair{"cnn", kCnnLayers}, std::pair{"lstm", kLstmLayers}}) {
      std::ofstream c(dir_ / (std::string(name) + ".toml"));
      c << "name = \"" << name << "\"\nepochs = 2\nprogress = \"none\"\nout_dir = \"" << (dir_ / "runs").string() << "\"\n"
        << "[data]\nformat = \"csv\"\ntrain_features = \"" << (dir_ / "train.csv").string() << "\"\ntest_features = \""
        << (dir_ / "test.csv").string() << "\"\nscale = 1.0\nvalidation_size = 30\n[model]\ntype = \"sequential\"\n"
        << "dtype = \"f64\"\n" << layers << "[optimizer]\nname = \"momentum\"\nlr = 0.05\n[sampler]\nbatch_size = 10\n"
        << "[snapshots]\nevery_steps = 3\n";
      c.close();
      const Result t = run("train " + (dir_ / (std::string(name) + ".toml")).string());
      ASSERT_EQ(t.code, 0) << t.err;
    }
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }

  static Result run(const std::string& args) { return shell(std::string(DESCENT_CLI) + " " + args, dir_); }

  // The run's model with the weights of `file`, and its first n training examples.
  struct Loaded {
    train::Data data;
    train::Model model;
    Tensor buffer, x, y;
  };
  static std::unique_ptr<Loaded> load(const fs::path& run_dir, const fs::path& file, std::int64_t n) {
    const train::TrainConfig config = train::load_train_config(run_dir / "config.toml");
    auto l = std::make_unique<Loaded>();
    l->data = train::load_data(config);
    l->model = train::build_model(config.model, l->data.dim, l->data.num_classes, config.seed);
    io::load_parameters(file, *l->model.arena);
    l->x = l->data.train.rows(0, n, l->buffer);
    l->y = l->data.train.y.rows(0, n);
    return l;
  }

  static train::Evaluation evaluation(const fs::path& run_dir, const fs::path& file, std::int64_t n) {
    const train::TrainConfig config = train::load_train_config(run_dir / "config.toml");
    train::Data data = train::load_data(config);
    train::Model model = train::build_model(config.model, data.dim, data.num_classes, config.seed);
    io::load_parameters(file, *model.arena);
    data::Split s = data.train;
    s.y = s.y.rows(0, n);
    if (s.x.defined()) s.x = s.x.rows(0, n);
    return train::evaluate(*model.net, s, 100000);
  }

  static std::size_t index_of(const json& values, double v) {
    for (std::size_t i = 0; i < values.size(); ++i) {
      if (values[i].get<double>() == v) return i;
    }
    ADD_FAILURE() << v << " is not among " << values.dump();
    return 0;
  }

  void diagnose_everything(const std::string& name, const std::vector<std::string>& layer_kinds, bool rescaling) {
    const fs::path run_dir = dir_ / "runs" / name;
    ASSERT_TRUE(fs::exists(run_dir / "init.safetensors"));
    const Result r = run("diagnose " + run_dir.string() +
                         " --what spectrum,trace,density,noise,symmetry,critical,interpolation,plane --examples " +
                         std::to_string(kExamples) + " --top 2 --steps 400 --draws 20 --trials 4 --points 5 --grid 7 --seed 2");
    ASSERT_EQ(r.code, 0) << r.err;
    for (const char* what : {"spectrum:", "trace:", "density:", "noise:", "symmetry:", "critical:", "interpolation:", "plane"}) {
      EXPECT_NE(r.out.find(what), std::string::npos) << what << " missing from\n" << r.out;
    }
    const fs::path d = run_dir / "diagnostics";

    // The dense Hessian over the same examples, built here, and its eigenvalues by LAPACK.
    auto l = load(run_dir, run_dir / "model.safetensors", kExamples);
    diag::HessianOperator h(*l->model.net, *l->model.arena, l->x, l->y);
    const std::int64_t dim = h.dim();
    const std::vector<double> dense = diag::dense_hessian(h);
    const diag::Eigen eig = diag::symmetric_eigen(dense, dim);
    double exact_trace = 0.0;
    for (std::int64_t i = 0; i < dim; ++i) exact_trace += dense[static_cast<std::size_t>(i * dim + i)];
    const double lmax = eig.values.back(), lmin = eig.values.front();
    const double scale = std::max(std::abs(lmax), std::abs(lmin));

    const json spectrum = read_json(d / "spectrum.json");
    EXPECT_EQ(spectrum["parameters"], dim);
    EXPECT_EQ(spectrum["examples"], kExamples);
    EXPECT_NEAR(spectrum["lambda_max"].get<double>(), lmax, 1e-8 * scale);
    EXPECT_NEAR(spectrum["lambda_min"].get<double>(), lmin, 1e-8 * scale);
    EXPECT_NEAR(spectrum["eigenvalues_top"][1].get<double>(), eig.values[static_cast<std::size_t>(dim) - 2], 1e-8 * scale);
    EXPECT_NEAR(spectrum["eigenvalues_bottom"][1].get<double>(), eig.values[1], 1e-8 * scale);
    EXPECT_NEAR(spectrum["loss"].get<double>(), evaluation(run_dir, run_dir / "model.safetensors", kExamples).loss, 1e-12);

    const json critical = read_json(d / "critical.json");
    EXPECT_NEAR(critical["lambda_max"].get<double>(), lmax, 1e-6 * scale);
    EXPECT_NEAR(critical["lambda_min"].get<double>(), lmin, 1e-6 * scale);
    EXPECT_FALSE(critical["verdict"].get<std::string>().empty());

    const json trace = read_json(d / "trace.json");
    EXPECT_GT(trace["stderr"].get<double>(), 0.0);
    EXPECT_LT(std::abs(trace["trace"].get<double>() - exact_trace), 3 * trace["stderr"].get<double>())
        << "exact " << exact_trace << ", estimate " << trace["trace"] << " +- " << trace["stderr"];

    const json density = read_json(d / "density.json");
    const auto grid = density["grid"].get<std::vector<double>>();
    const auto phi = density["density"].get<std::vector<double>>();
    ASSERT_EQ(grid.size(), phi.size());
    double mass = 0.0;
    for (std::size_t i = 0; i + 1 < grid.size(); ++i) mass += 0.5 * (grid[i + 1] - grid[i]) * (phi[i] + phi[i + 1]);
    EXPECT_NEAR(mass, 1.0, 1e-8);

    // Per-example gradients, one tape each: G their mean, tr(Sigma) = mean |g_i - G|^2.
    {
      const std::int64_t p = l->model.arena->size();
      std::vector<std::vector<double>> g(static_cast<std::size_t>(kExamples));
      l->model.net->set_training(false);
      for (std::int64_t i = 0; i < kExamples; ++i) {
        autodiff::Tape tape;
        autodiff::Var loss = loss::cross_entropy(l->model.net->forward(tape, tape.constant(l->x.rows(i, i + 1))), l->y.rows(i, i + 1));
        Tensor grad = Tensor::zeros({p}, l->model.arena->dtype());
        tape.backward(loss, grad);
        for (std::int64_t k = 0; k < p; ++k) g[static_cast<std::size_t>(i)].push_back(grad.at(k));
      }
      std::vector<double> mean(static_cast<std::size_t>(p), 0.0);
      for (const auto& gi : g) {
        for (std::size_t k = 0; k < gi.size(); ++k) mean[k] += gi[k] / kExamples;
      }
      double g2 = 0.0, tr = 0.0;
      for (double m : mean) g2 += m * m;
      for (const auto& gi : g) {
        for (std::size_t k = 0; k < gi.size(); ++k) tr += (gi[k] - mean[k]) * (gi[k] - mean[k]) / kExamples;
      }
      const json noise = read_json(d / "noise.json");
      EXPECT_NEAR(noise["trace_sigma"].get<double>(), tr, 1e-10 * tr);
      EXPECT_NEAR(noise["noise_scale"].get<double>(), tr / g2, 1e-8 * tr / g2);
      EXPECT_NEAR(noise["gradient_norm"].get<double>(), std::sqrt(g2), 1e-10 * std::sqrt(g2));
      EXPECT_EQ(noise["batch_sizes"][0], 1);
      EXPECT_LT(noise["slope"].get<double>(), -0.2);  // the standard error falls with the batch size
      EXPECT_GT(noise["slope"].get<double>(), -0.8);
    }

    const json symmetry = read_json(d / "symmetry.json");
    ASSERT_EQ(symmetry["layers"].size(), layer_kinds.size()) << symmetry.dump(1);
    for (std::size_t i = 0; i < layer_kinds.size(); ++i) EXPECT_EQ(symmetry["layers"][i]["kind"], layer_kinds[i]);
    EXPECT_TRUE(symmetry["not_covered"].empty()) << symmetry["not_covered"];
    EXPECT_LT(symmetry["permutation_max_change"].get<double>(), 1e-13);
    EXPECT_GT(symmetry["permutation_distance"].get<double>(), 0.05);
    if (rescaling) {
      EXPECT_LT(symmetry["rescaling_max_change"].get<double>(), 1e-13);
      EXPECT_GT(symmetry["rescaling_distance"].get<double>(), 0.05);
    } else {
      EXPECT_EQ(symmetry["rescaling_max_change"].get<double>(), 0.0);
      EXPECT_EQ(symmetry["rescaling_dimensions"], 0);
    }
    {  // The same layers' permutation applied to the incoming side only does change the loss.
      const auto layers = diag::find_symmetries(*l->model.net, *l->model.arena);
      ASSERT_EQ(layers.size(), layer_kinds.size());
      const double before = diag::mean_loss(*l->model.net, l->x, l->y);
      diag::SymmetryLayer one_side = layers[0];
      one_side.outgoing.clear();
      std::vector<std::int64_t> perm(static_cast<std::size_t>(one_side.units));
      for (std::size_t u = 0; u < perm.size(); ++u) perm[u] = static_cast<std::int64_t>((u + 1) % perm.size());
      diag::permute_units(*l->model.arena, one_side, perm);
      EXPECT_GT(std::abs(diag::mean_loss(*l->model.net, l->x, l->y) - before) / before, 1e-4);
    }

    const json interpolation = read_json(d / "interpolation.json");
    const std::size_t i0 = index_of(interpolation["alpha"], 0.0), i1 = index_of(interpolation["alpha"], 1.0);
    const train::Evaluation e0 = evaluation(run_dir, run_dir / "init.safetensors", kExamples);
    const train::Evaluation e1 = evaluation(run_dir, run_dir / "model.safetensors", kExamples);
    EXPECT_NEAR(interpolation["train_loss"][i0].get<double>(), e0.loss, 1e-12);
    EXPECT_NEAR(interpolation["train_loss"][i1].get<double>(), e1.loss, 1e-12);
    EXPECT_EQ(interpolation["train_error"][i1].get<double>(), e1.error);
    EXPECT_LT(e1.loss, e0.loss);  // training did something

    const json plane = read_json(d / "plane.json");
    EXPECT_EQ(plane["method"], "line");  // 7 points over [-0.25, 1.25]: x = 0 and 1 on the grid, y = 0 in the middle
    const std::size_t y0 = index_of(plane["axes"]["y"]["values"], 0.0);
    const std::size_t x0 = index_of(plane["axes"]["x"]["values"], 0.0), x1 = index_of(plane["axes"]["x"]["values"], 1.0);
    EXPECT_NEAR(plane["loss"][y0][x0].get<double>(), e0.loss, 1e-12);
    EXPECT_NEAR(plane["loss"][y0][x1].get<double>(), e1.loss, 1e-12);
    EXPECT_GT(plane["trajectory"]["step"].size(), 2u);
  }

  static fs::path dir_;
};
fs::path DiagnoseModels::dir_;

TEST_F(DiagnoseModels, EveryDiagnosticOnATinyCnn) { diagnose_everything("cnn", {"conv", "dense"}, true); }

TEST_F(DiagnoseModels, EveryDiagnosticOnATinyLstm) { diagnose_everything("lstm", {"lstm"}, false); }

}  // namespace
}  // namespace descent
