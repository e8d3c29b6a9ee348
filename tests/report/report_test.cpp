// The HTML report (descent/report/report.hpp, docs/report.md): its data against
// metrics.jsonl, the aggregation rule recomputed here, no network reference, malformed input,
// the CLI, and the page in a real browser (headless Chromium; skipped without it).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cctype>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string_view>

#include "descent/error.hpp"
#include "descent/init/rng.hpp"
#include "descent/report/report.hpp"
#include "support/process.hpp"

namespace {

namespace fs = std::filesystem;
using namespace descent::testing;  // support/process.hpp
using Result = ProcessResult;
using nlohmann::json;

void spit(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << text;
}

// The JSON the page embeds, parsed back.
json embedded(const std::string& page) {
  const std::string open = "<script type=\"application/json\" id=\"descent-data\">";
  const auto b = page.find(open);
  EXPECT_NE(b, std::string::npos);
  const auto e = page.find("</script>", b);
  return json::parse(page.substr(b + open.size(), e - b - open.size()));
}

// The records of metrics.jsonl of one kind, read here independently of the report code.
std::vector<json> records(const fs::path& metrics, const std::string& kind) {
  std::vector<json> out;
  std::ifstream in(metrics);
  for (std::string line; std::getline(in, line);) {
    json j = json::parse(line);
    if (j["kind"] == kind) out.push_back(j);
  }
  return out;
}

// Equal to 6 significant digits (the page rounds its step series).
bool close6(const json& page, const json& metrics) {
  const double a = page.get<double>(), b = metrics.get<double>();
  return std::abs(a - b) <= 5e-6 * std::abs(b);
}

// A real run of the CLI on a small CSV problem (validation split, clipping that fires),
// made once for the suite.
class Report : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // Each test process (ctest runs them in parallel) works in its own folder; the
    // screenshots and their pages are kept in build/report-test/screenshots.
    root_ = fs::path(DESCENT_BINARY_DIR) / "report-test" / ("work-" + std::to_string(::getpid()));
    fs::remove_all(root_);
    fs::create_directories(root_);
    descent::Rng rng(7);
    for (const char* name : {"train.csv", "test.csv"}) {
      std::ofstream f(root_ / name);
      for (int i = 0; i < 600; ++i) {
        const int c = static_cast<int>(rng.below(2));
        f << c << "," << (c ? 0.6 : -0.6) + rng.normal() << "," << rng.normal() << "," << (c ? -0.3 : 0.3) + rng.normal() << "\n";
      }
    }
    std::ofstream c(root_ / "tiny.toml");
    // progress = "plain": "none" prints nothing, not even the report's path.
    c << "name = \"tiny\"\nepochs = 6\nprogress = \"plain\"\neval_every_steps = 7\nout_dir = \"" << (root_ / "runs").string()
      << "\"\n[data]\nformat = \"csv\"\ntrain_features = \"" << (root_ / "train.csv").string() << "\"\ntest_features = \""
      << (root_ / "test.csv").string() << "\"\nscale = 1.0\nvalidation_size = 100\n[model]\nhidden = [8]\n"
      << "[optimizer]\nname = \"momentum\"\nlr = 0.1\n[schedule]\nname = \"linear\"\n[clip]\nglobal_norm = 0.3\n"
      << "[sampler]\nbatch_size = 16\n";
    c.close();
    for (const char* name : {"train16.csv", "test16.csv"}) {
      std::ofstream f(root_ / name);
      for (int i = 0; i < 240; ++i) {
        const int label = static_cast<int>(rng.below(2));
        f << label;
        for (int k = 0; k < 16; ++k) f << "," << (k % 5 == 0 ? (label ? 0.8 : -0.8) : 0.0) + rng.normal();
        f << "\n";
      }
    }
    const std::string data16 = "[data]\nformat = \"csv\"\ntrain_features = \"" + (root_ / "train16.csv").string() +
                               "\"\ntest_features = \"" + (root_ / "test16.csv").string() +
                               "\"\nscale = 1.0\nvalidation_size = 40\n[sampler]\nbatch_size = 20\n[optimizer]\nname = \"momentum\"\nlr = 0.05\n";
    const std::string head = "epochs = 3\nprogress = \"none\"\nout_dir = \"" + (root_ / "runs").string() + "\"\n";
    spit(root_ / "cnn.toml", "name = \"cnn\"\n" + head + data16 +
                                 "[model]\ntype = \"sequential\"\nlayers = [{type = \"unflatten\", shape = [1, 4, 4]}, "
                                 "{type = \"conv2d\", channels = 3, kernel = 3, padding = 1}, {type = \"relu\"}, "
                                 "{type = \"maxpool2d\", kernel = 2}, {type = \"flatten\"}, {type = \"linear\"}]\n");
    spit(root_ / "lstm.toml", "name = \"lstm\"\n" + head + data16 +
                                  "[model]\ntype = \"sequential\"\nlayers = [{type = \"lstm\", hidden = 6, input_size = 4}, "
                                  "{type = \"linear\"}]\n[clip]\nglobal_norm = 1.0\n");
    for (const char* name : {"cnn", "lstm"}) {
      train_output_[name] = shell(std::string(DESCENT_CLI) + " train " + (root_ / (std::string(name) + ".toml")).string(), root_);
    }
    for (const char* name : {"a", "b"}) {
      const Result r = shell(std::string(DESCENT_CLI) + " train " + (root_ / "tiny.toml").string() + " --name " + name +
                                 (std::string(name) == "b" ? " --set optimizer.lr=0.02" : ""),
                             root_);
      train_output_[name] = r;
    }
  }
  static void TearDownTestSuite() { fs::remove_all(root_); }
  static fs::path run(const char* name) { return root_ / "runs" / name; }

  static inline fs::path root_;
  static inline std::map<std::string, Result> train_output_;
};

// A run folder with every record of the monitors and every diagnostics file (the formats of
// docs/metrics.md and docs/diagnostics.md), made of numbers chosen here so that the tests can
// look for them in the page. `shift` makes a second, different run for overlays.
void write_full_run(const fs::path& dir, double shift = 0.0) {
  fs::remove_all(dir);
  std::ostringstream m;
  m << json{{"kind", "header"}, {"version", "0.9.0-test"}, {"config_digest", "c0ffee42"},
            {"examples", {{"train", 960}, {"validation", 240}, {"test", 300}}}, {"batch_size", 24},
            {"steps_per_epoch", 40}, {"threads", 2}, {"machine", {{"cpu", "Test CPU 9000"}, {"cores", 2}}},
            {"thread_rule", "auto"}, {"step", 0}, {"epoch", 0}, {"wall_s", 0.0}}.dump() << "\n";
  // The rule thread_rule = "auto" chose (docs/metrics.md): the page shows it beside the header's.
  m << json{{"kind", "thread_rule"}, {"step", 77}, {"epoch", 1}, {"rule", "tiny_serial"}, {"timed_steps", 77},
            {"median_ms", {{"small_serial", 0.4561}, {"tiny_serial", 0.3634}, {"parallel", 0.3669}}}, {"wall_s", 0.5}}.dump()
    << "\n";
  const int n = 160;
  for (int i = 0; i < n; ++i) {
    const double loss = 2.0 * std::exp(-i / 60.0) + 0.2 + shift;
    m << json{{"kind", "step"}, {"step", i}, {"epoch", 1 + i / 40}, {"loss", loss}, {"grad_norm", 1.0 + 0.2 * std::sin(i * 0.3)},
              {"lr", 0.1}, {"wall_s", 0.01 * i}}.dump() << "\n";
    if (i % 10 == 0) {
      const double gTg = 4.0 * std::exp(-i / 80.0), gHg = 30.0 * (1.0 + i / 160.0), lr = 0.1;
      json c = {{"kind", "curvature"}, {"step", i}, {"epoch", 1 + i / 40}, {"wall_s", 0.01 * i}, {"gTg", gTg}, {"gHg", gHg},
                {"lr", lr}, {"ratio", lr * gHg / (2 * gTg)}, {"predicted_change", -lr * gTg + 0.5 * lr * lr * gHg},
                {"observed_change", -lr * gTg + 0.45 * lr * lr * gHg}, {"update_predicted_change", -0.9 * lr * gTg},
                {"loss", 1.0}, {"loss_after", 0.9}, {"observed_mode", "train"}, {"seconds", 0.002}};
      if (i % 40 == 0) c["lambda_max"] = 12.5 + i / 40.0;
      if (i == 0) c["observed_change"] = nullptr;
      m << c.dump() << "\n";
    }
    if (i % 20 == 0) {
      m << json{{"kind", "layers"}, {"step", i}, {"epoch", 1 + i / 40}, {"wall_s", 0.01 * i},
                {"grad_norms", {{"layers.0.weight", 0.5 + i / 320.0}, {"layers.0.bias", 0.05}, {"layers.2.weight", 0.25},
                                {"layers.10.weight", 0.125 * (1 + i / 160.0)}}},
                {"weight_norms", {{"layers.0.weight", 3.0}, {"layers.0.bias", 0.1 + i / 1600.0}, {"layers.2.weight", 2.0},
                                  {"layers.10.weight", 1.5}}}}.dump()
        << "\n";
    }
    if (i == 17 || i == 55 || i == 101) {
      m << json{{"kind", "cliff"}, {"step", i}, {"epoch", 1 + i / 40}, {"wall_s", 0.01 * i}, {"grad_norm", 7.5 + i / 100.0},
                {"median", 1.1}, {"factor", 5}, {"clipped", i != 55}}.dump() << "\n";
    }
    if ((i + 1) % 40 == 0) {
      const int e = (i + 1) / 40;
      const double t = 2.0 * std::exp(-i / 60.0) + 0.25 + shift;
      m << json{{"kind", "epoch"}, {"epoch", e}, {"step", i + 1}, {"train_loss", t}, {"train_error", t / 6}, {"val_loss", t + 0.05},
                {"val_error", t / 6 + 0.01}, {"lr", 0.1}, {"grad_norm_mean", 1.0}, {"clip_count", 2 * e}, {"examples_per_s", 5000},
                {"wall_s", 0.01 * i}}.dump() << "\n";
      json norms = json::array();
      for (int k = 1; k <= 6; ++k) norms.push_back(std::pow(0.5 + 0.1 * e, 6 - k));
      m << json{{"kind", "recurrent"}, {"step", i + 1}, {"epoch", e}, {"wall_s", 0.01 * i}, {"growth_rate", 1.0 / (0.5 + 0.1 * e)},
                {"time_grad_norms", norms},
                {"matrices", {{{"name", "layers.0.weight_hh"}, {"gate", "input"}, {"spectral_radius", 0.8 + 0.05 * e},
                               {"singular_max", 1.2}, {"singular_min", 0.1}},
                              {{"name", "layers.0.weight_hh"}, {"gate", "forget"}, {"spectral_radius", 0.6 + 0.1 * e},
                               {"singular_max", 1.0}, {"singular_min", 0.05}}}}}.dump()
        << "\n";
    }
  }
  m << json{{"kind", "some_future_kind"}, {"step", 3}, {"whatever", true}}.dump() << "\n";
  m << json{{"kind", "final"}, {"epochs", 4}, {"steps", n}, {"best_epoch", 4}, {"stopped_early", false}, {"test_error", 0.125},
            {"test_loss", 0.375}, {"test_accuracy", 0.875}, {"cliffs", 3},
            {"monitor_seconds", {{"curvature", 0.03}, {"layers", 0.01}, {"cliff", 0.0}, {"recurrent", 0.2}, {"total", 0.24}}},
            {"wall_s", 1.6}}.dump() << "\n";
  spit(dir / "metrics.jsonl", m.str());
  spit(dir / "config.toml", "name = \"full\"\nepochs = 4\n[early_stopping]\nmonitor = \"val_error\"\npatience = 3\n");
  spit(dir / "run.json", "{\"format\": \"descent-run/1\", \"run_id\": \"feedc0de\", \"status\": \"finished\"}");
  const json common = {{"run", dir.string()}, {"weights", "model.safetensors"}, {"split", "train"}, {"examples", 512}, {"parameters", 1234}};
  auto diag = [&](const std::string& name, json j) {
    j.update(common);
    spit(dir / "diagnostics" / (name + ".json"), j.dump(1));
  };
  diag("spectrum", {{"eigenvalues_top", {42.5, 17.25, 9.5}}, {"eigenvalues_bottom", {-0.75, -0.125, 0.0625}},
                    {"residuals", {{"top", {1e-6, 0.5, 1.5}}, {"bottom", {0.25, 0.01, 0.02}}}}, {"lambda_max", 42.5},
                    {"lambda_min", -0.75}, {"negative_mass", 0.0625}, {"zero_mass", 0.5}, {"lanczos_steps", 30}});
  json grid = json::array(), density = json::array();
  for (int k = 0; k <= 200; ++k) {
    const double x = -2.0 + 46.0 * k / 200.0;
    grid.push_back(x);
    // Between the two peaks it falls to 1e-22, as SLQ's Gaussians do (the chart clamps it).
    density.push_back(0.9 * std::exp(-x * x / 0.5) + 0.002 * std::exp(-(x - 42.5) * (x - 42.5) / 2.0) + 1e-22);
  }
  diag("density", {{"grid", grid}, {"density", density}, {"sigma", 0.5}, {"negative_mass", 0.0625}, {"zero_mass", 0.5},
                   {"trace", 120.0}, {"trace_stderr", 6.0}, {"probes", 10}, {"lanczos_steps", 30}});
  diag("trace", {{"trace", 123.4}, {"stderr", 5.6}, {"mean_eigenvalue", 0.1}, {"probes", 100}});
  // noise: N = 512; corrected = stderr / sqrt((N - m) / (N - 1)), 0 at m = N.
  json sizes = {8, 16, 32, 64, 128, 256, 512}, se = {0.4, 0.29, 0.2, 0.141, 0.1, 0.0705, 0.0}, corrected = json::array(),
       predicted = json::array();
  for (std::size_t k = 0; k < sizes.size(); ++k) {
    const double m_ = sizes[k].get<double>(), f = std::sqrt((512.0 - m_) / 511.0);
    corrected.push_back(f > 0 ? se[k].get<double>() / f : 0.0);
    predicted.push_back(std::sqrt(1.2 / m_) * f);
  }
  diag("noise", {{"batch_sizes", sizes}, {"stderr", se}, {"stderr_corrected", corrected}, {"stderr_predicted", predicted},
                 {"squared_errors", json::array({json::array({0.1, 0.2})})}, {"slope", -0.48}, {"slope_uncorrected", -0.55},
                 {"trace_sigma", 1.2}, {"noise_scale", 321.0}, {"draws", 16}});
  diag("symmetry", {{"permutation_max_change", 2.5e-7}, {"rescaling_max_change", 4e-7}, {"log10_equivalent_models", 185.3},
                    {"rescaling_dimensions", 150}, {"permutation_distance", 1.25}, {"rescaling_distance", 0.5}, {"trials", 4},
                    {"layers", {{{"name", "layers.0"}, {"kind", "dense"}, {"units", 100}, {"rescaling", true}, {"between", {"relu"}}},
                                {{"name", "layers.2"}, {"kind", "dense"}, {"units", 50}, {"rescaling", true}, {"between", {"relu"}}}}},
                    {"not_covered", {"module 4 (BatchNorm(16)): its units are not permuted or rescaled (not covered)"}}});
  diag("critical", {{"gradient_norm", 0.0125}, {"lambda_min", -0.75}, {"lambda_max", 42.5}, {"residual_min", 0.001},
                    {"residual_max", 0.002}, {"gradient_gap", 1.8e-6}, {"gap_threshold", 3e-4}, {"critical", true},
                    {"verdict", "near a saddle (test verdict)"},
                    {"reason", "lambda_min = -0.75 < 0 < lambda_max = 42.5 and the gradient gap is below the threshold"}});
  json alpha = json::array(), tl = json::array(), te = json::array(), vl = json::array(), ve = json::array();
  for (int k = 0; k <= 20; ++k) {
    const double a = -0.5 + 0.1 * k;
    alpha.push_back(a);
    tl.push_back(0.3 + 2.0 * (a - 1) * (a - 1));
    vl.push_back(0.35 + 2.0 * (a - 1) * (a - 1));
    te.push_back(std::min(0.9, 0.1 + 0.35 * (a - 1) * (a - 1)));
    ve.push_back(std::min(0.9, 0.12 + 0.35 * (a - 1) * (a - 1)));
  }
  diag("interpolation", {{"alpha", alpha}, {"train_loss", tl}, {"train_error", te}, {"validation_loss", vl}, {"validation_error", ve}});
  json xs = json::array(), ys = json::array(), loss = json::array(), error = json::array();
  for (int i = 0; i <= 25; ++i) xs.push_back(-0.5 + 2.0 * i / 25.0);
  for (int j = 0; j <= 20; ++j) ys.push_back(-1.0 + 2.0 * j / 20.0);
  for (int j = 0; j <= 20; ++j) {
    json row = json::array(), erow = json::array();
    for (int i = 0; i <= 25; ++i) {
      const double x = xs[i].get<double>(), y = ys[j].get<double>();
      const double l = 0.2 + 2.0 * (x - 1) * (x - 1) + 1.5 * (y - 0.3 * std::sin(3 * x)) * (y - 0.3 * std::sin(3 * x));
      row.push_back(l);
      erow.push_back(std::min(0.9, l / 5));
    }
    loss.push_back(row);
    error.push_back(erow);
  }
  json tx = json::array(), ty = json::array(), ts = json::array();
  for (int k = 0; k <= 40; ++k) {
    const double x = 1.0 - std::exp(-k / 8.0) * (1.0 - k / 40.0 * std::exp(-5.0));
    tx.push_back(k == 40 ? 1.0 : x);
    ty.push_back(0.3 * std::sin(3 * (k == 40 ? 1.0 : x)) * (k == 40 ? 0.0 : 1.0));
    ts.push_back(4 * k);
  }
  diag("plane", {{"axes", {{"x", {{"label", "direction to theta*"}, {"values", xs}}}, {"y", {{"label", "orthogonal direction"}, {"values", ys}}}}},
                 {"method", "theta_0, theta* and a random orthogonal direction"}, {"loss", loss}, {"error", error},
                 {"trajectory", {{"x", tx}, {"y", ty}, {"step", ts}}},
                 {"points", {{"theta_0", {{"x", 0.0}, {"y", 0.0}}}, {"theta_star", {{"x", 1.0}, {"y", 0.0}}}}}});
}

TEST_F(Report, TrainWritesTheReportAndPrintsItsPath) {
  const Result& r = train_output_["a"];
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("report " + (run("a") / "report.html").string() + "\n"), std::string::npos) << r.out;
  EXPECT_TRUE(fs::exists(run("a") / "report.html"));
  EXPECT_EQ(r.err.find("warning"), std::string::npos) << r.err;
}

TEST_F(Report, EmbeddedDataMatchMetrics) {
  const fs::path metrics = run("a") / "metrics.jsonl";
  const json data = embedded(slurp(run("a") / "report.html"));
  ASSERT_EQ(data["runs"].size(), 1u);
  const json& r = data["runs"][0];
  EXPECT_EQ(r["name"], "a");
  EXPECT_EQ(r["config"], slurp(run("a") / "config.toml"));
  // Epoch records, field by field.
  const auto epochs = records(metrics, "epoch");
  ASSERT_EQ(r["epochs"].size(), epochs.size());
  ASSERT_GT(epochs.size(), 1u);
  for (std::size_t i = 0; i < epochs.size(); ++i) {
    for (const char* f : {"epoch", "step", "train_loss", "train_error", "val_loss", "val_error", "lr", "clip_count", "wall_s"}) {
      EXPECT_EQ(r["epochs"][i][f], epochs[i][f]) << "epoch " << i << " " << f;
    }
  }
  EXPECT_GT(epochs.back()["clip_count"].get<int>(), 0);  // the clipping panel has data
  const auto evals = records(metrics, "eval");
  ASSERT_EQ(r["evals"].size(), evals.size());
  ASSERT_FALSE(evals.empty());
  for (std::size_t i = 0; i < evals.size(); ++i) EXPECT_EQ(r["evals"][i]["val_error"], evals[i]["val_error"]);
  // Every step kept (the run is shorter than max_points): the values themselves.
  const auto steps = records(metrics, "step");
  const json& s = r["steps"];
  ASSERT_EQ(s["bucket"], 1);
  ASSERT_EQ(s["step"].size(), steps.size());
  EXPECT_FALSE(s["loss"].contains("min"));  // buckets of one: the mean alone
  for (std::size_t i = 0; i < steps.size(); ++i) {
    EXPECT_EQ(s["step"][i], steps[i]["step"]);
    for (const char* f : {"loss", "grad_norm", "lr"}) EXPECT_TRUE(close6(s[f]["mean"][i], steps[i][f])) << i << " " << f;
    EXPECT_TRUE(close6(s["wall_s"][i], steps[i]["wall_s"])) << i;
  }
  const json final_record = records(metrics, "final").at(0);
  for (const char* f : {"test_error", "test_loss", "best_epoch", "epochs", "steps", "stopped_early", "best_val_error"}) {
    EXPECT_EQ(r["final"][f], final_record[f]) << f;
  }
  const std::string decision = r["decision"];
  EXPECT_NE(decision.find("epoch " + std::to_string(final_record["best_epoch"].get<int>())), std::string::npos) << decision;
}

// The monitors' records of the fixture reach the page's data with the values written (rounded
// to 6 digits), the per-layer records as columns, and the unknown kind left out.
TEST_F(Report, MonitorRecordsReachThePage) {
  const fs::path dir = root_ / "full-data";
  write_full_run(dir);
  const json r = json::parse(descent::report::report_data({dir}))["runs"][0];
  const auto curvature = records(dir / "metrics.jsonl", "curvature");
  ASSERT_EQ(curvature.size(), 16u);
  ASSERT_EQ(r["curvature"]["count"], 16);
  ASSERT_EQ(r["curvature"]["stride"], 1);
  // As columns: one array per field, null where a record lacks the field.
  const json& columns = r["curvature"];
  ASSERT_EQ(columns["step"].size(), 16u);
  int lambdas = 0;
  for (std::size_t i = 0; i < curvature.size(); ++i) {
    json page = json::object();
    for (const auto& [f, column] : columns.items()) {
      if (column.is_array() && !column[i].is_null()) page[f] = column[i];
      if (column.is_array() && column[i].is_null() && f == "observed_change") page[f] = nullptr;
    }
    EXPECT_EQ(page["step"], curvature[i]["step"]);
    EXPECT_FALSE(page.contains("seconds"));  // not drawn, left out
    for (const char* f : {"gTg", "gHg", "lr", "ratio", "predicted_change", "update_predicted_change"}) {
      EXPECT_TRUE(close6(page[f], curvature[i][f])) << i << " " << f;
    }
    // The ratio written is lr * gHg / (2 gTg), and the prediction eq. 8.10's.
    const double lr = page["lr"], gTg = page["gTg"], gHg = page["gHg"];
    EXPECT_NEAR(page["ratio"].get<double>(), lr * gHg / (2 * gTg), 1e-5 * lr * gHg / (2 * gTg));
    if (i == 0) EXPECT_TRUE(page["observed_change"].is_null());
    else EXPECT_TRUE(close6(page["observed_change"], curvature[i]["observed_change"])) << i;
    EXPECT_EQ(page.contains("lambda_max"), curvature[i].contains("lambda_max")) << i;
    if (page.contains("lambda_max")) {
      ++lambdas;
      EXPECT_TRUE(close6(page["lambda_max"], curvature[i]["lambda_max"]));
    }
  }
  EXPECT_EQ(lambdas, 4);
  // Layers: columns by parameter, names in natural order (layers.2 before layers.10).
  const json& L = r["layers"];
  EXPECT_EQ(L["names"], json({"layers.0.bias", "layers.0.weight", "layers.2.weight", "layers.10.weight"}));
  ASSERT_EQ(L["step"], json({0, 20, 40, 60, 80, 100, 120, 140}));
  for (int k = 0; k < 8; ++k) {
    EXPECT_TRUE(close6(L["grad_norms"]["layers.0.weight"][k], 0.5 + 20 * k / 320.0)) << k;
    EXPECT_TRUE(close6(L["weight_norms"]["layers.0.bias"][k], 0.1 + 20 * k / 1600.0)) << k;
    EXPECT_EQ(L["grad_norms"]["layers.2.weight"][k], 0.25);
  }
  // Cliffs: every one, with the counts.
  EXPECT_EQ(r["cliffs"]["count"], 3);
  EXPECT_EQ(r["cliffs"]["clipped"], 2);
  ASSERT_EQ(r["cliffs"]["records"].size(), 3u);
  EXPECT_EQ(r["cliffs"]["records"][1]["step"], 55);
  EXPECT_EQ(r["cliffs"]["records"][1]["clipped"], false);
  EXPECT_TRUE(close6(r["cliffs"]["records"][2]["grad_norm"], json(8.51)));
  // Recurrent: per epoch, the time steps' norms and the matrices.
  const json& R = r["recurrent"]["records"];
  ASSERT_EQ(R.size(), 4u);
  for (int e = 1; e <= 4; ++e) {
    const json& rec = R[e - 1];
    EXPECT_EQ(rec["epoch"], e);
    ASSERT_EQ(rec["time_grad_norms"].size(), 6u);
    for (int k = 1; k <= 6; ++k) EXPECT_TRUE(close6(rec["time_grad_norms"][k - 1], json(std::pow(0.5 + 0.1 * e, 6 - k))));
    EXPECT_TRUE(close6(rec["growth_rate"], json(1.0 / (0.5 + 0.1 * e))));
    ASSERT_EQ(rec["matrices"].size(), 2u);
    EXPECT_EQ(rec["matrices"][1]["gate"], "forget");
    EXPECT_TRUE(close6(rec["matrices"][1]["spectral_radius"], json(0.6 + 0.1 * e)));
  }
  // The header as written, without its kind; the diagnostics files as read.
  EXPECT_EQ(r["header"]["config_digest"], "c0ffee42");
  EXPECT_EQ(r["header"]["examples"]["validation"], 240);
  EXPECT_FALSE(r["header"].contains("kind"));
  EXPECT_EQ(r["header"]["thread_rule"], "auto");
  EXPECT_EQ(r["header"]["thread_rule_chosen"], "tiny_serial (median ms per step: parallel 0.367 small_serial 0.456 tiny_serial 0.363)");
  EXPECT_EQ(r["diagnostics"].size(), 8u);
  EXPECT_EQ(r["diagnostics"]["critical"]["lambda_min"], -0.75);
  EXPECT_FALSE(r["diagnostics"]["noise"].contains("squared_errors"));  // per-draw data, not drawn
  EXPECT_EQ(r["diagnostics"]["noise"]["stderr_corrected"].size(), 7u);
  EXPECT_EQ(r["final"]["cliffs"], 3);
  EXPECT_EQ(r["final"]["monitor_seconds"], 0.24);
  EXPECT_EQ(r["run_info"]["run_id"], "feedc0de");
}

// More monitor records than max_points: every stride-th kept, stride = ceil(count / max_points),
// and the curvature records with lambda_max thinned on their own.
TEST_F(Report, MonitorRecordsAreThinnedByTheStatedRule) {
  const fs::path dir = root_ / "full-thin";
  write_full_run(dir);
  descent::report::Options options;
  options.max_points = 3;
  const json r = json::parse(descent::report::report_data({dir}, options))["runs"][0];
  // 16 curvature records: stride 6 keeps steps 0, 60, 120; the 4 with lambda_max (steps 0,
  // 40, 80, 120): stride 2 keeps 0 and 80.
  EXPECT_EQ(r["curvature"]["stride"], 6);
  json kept = json::array();
  EXPECT_EQ(r["curvature"]["step"], json({0, 60, 80, 120}));
  for (std::size_t k = 0; k < 4; ++k) kept.push_back(r["curvature"]["lambda_max"][k].is_null() ? 0 : 1);
  // lambda_max at steps 0 and 80 (its own stride) and 120 (kept by the main stride, with it).
  EXPECT_EQ(kept, json({1, 0, 1, 1}));
  EXPECT_EQ(r["layers"]["stride"], 3);
  EXPECT_EQ(r["layers"]["step"], json({0, 60, 120}));
  EXPECT_EQ(r["layers"]["grad_norms"]["layers.0.weight"].size(), 3u);
  EXPECT_EQ(r["cliffs"]["records"].size(), 3u);
  EXPECT_EQ(r["recurrent"]["stride"], 2);
  ASSERT_EQ(r["recurrent"]["records"].size(), 2u);
  EXPECT_EQ(r["recurrent"]["records"][1]["epoch"], 3);
}

// 10007 synthetic updates in at most 100 points: buckets of ceil(10007/100) = 101 updates,
// min/mean/max and the running mean (W = round(10007/100) = 100) recomputed here by brute force.
TEST_F(Report, LongRunsAreAggregatedByTheStatedRule) {
  const fs::path dir = root_ / "long";
  const int n = 10007;
  std::ostringstream m;
  std::vector<double> loss(n), grad(n);
  for (int i = 0; i < n; ++i) {
    loss[i] = 2.0 / (1.0 + 0.01 * i) + 0.1 * std::sin(i * 0.37);
    grad[i] = 1.0 + 0.5 * std::cos(i * 0.11) + i * 1e-4;
    m << json{{"kind", "step"}, {"step", i}, {"epoch", 1 + i / 1000}, {"loss", loss[i]}, {"grad_norm", grad[i]},
              {"lr", 0.1 * (1.0 - i / double(n))}, {"wall_s", i * 0.001}}.dump()
      << "\n";
  }
  spit(dir / "metrics.jsonl", m.str());
  descent::report::Options options;
  options.max_points = 100;
  const json s = json::parse(descent::report::report_data({dir}, options))["runs"][0]["steps"];
  const int bucket = 101, window = 100;
  ASSERT_EQ(s["bucket"], bucket);
  ASSERT_EQ(s["window"], window);
  ASSERT_EQ(s["step"].size(), static_cast<std::size_t>((n + bucket - 1) / bucket));
  for (std::size_t k = 0; k < s["step"].size(); ++k) {
    const int b = static_cast<int>(k) * bucket, e = std::min(n, b + bucket);
    double lo = 1e300, hi = -1e300, sum = 0;
    for (int i = b; i < e; ++i) lo = std::min(lo, loss[i]), hi = std::max(hi, loss[i]), sum += loss[i];
    EXPECT_EQ(s["step"][k], b);
    EXPECT_TRUE(close6(s["loss"]["min"][k], lo)) << k;
    EXPECT_TRUE(close6(s["loss"]["max"][k], hi)) << k;
    EXPECT_TRUE(close6(s["loss"]["mean"][k], sum / (e - b))) << k;
    EXPECT_TRUE(close6(s["wall_s"][k], (e - 1) * 0.001)) << k;
    double running = 0;
    const int from = std::max(0, e - window);
    for (int i = from; i < e; ++i) running += grad[i];
    EXPECT_TRUE(close6(s["grad_norm_running"][k], running / (e - from))) << k;
  }
}

// Nothing in the page but the inlined library may name a URL, and no element may load
// anything; a Content-Security-Policy forbids every request.
TEST_F(Report, NoNetworkReference) {
  std::string page = slurp(run("a") / "report.html");
  ASSERT_FALSE(page.empty());
  std::string library = slurp(descent::report::chart_library_path());
  library.erase(library.rfind("//# sourceMappingURL="));
  const auto at = page.find(library);
  ASSERT_NE(at, std::string::npos) << "the chart library is inlined";
  page.erase(at, library.size());
  for (const char* bad : {"http:", "https:", "ftp:", "ws:", "wss:", "//#", "<link", "@import", "url(", "src=", "href=", "<iframe",
                          "<img", "fetch(", "XMLHttpRequest"}) {
    EXPECT_EQ(page.find(bad), std::string::npos) << bad;
  }
  EXPECT_NE(page.find("content=\"default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:\""),
            std::string::npos);
  // The library's only URL is in its license comment.
  for (const char* scheme : {"http://", "https://"}) {
    for (std::size_t url_at = library.find(scheme); url_at != std::string::npos; url_at = library.find(scheme, url_at + 1)) {
      const std::size_t after = url_at + std::string_view(scheme).size();
      constexpr std::string_view allowed = "github.com/danvk/dygraphs/blob/";
      EXPECT_EQ(library.compare(after, allowed.size(), allowed), 0) << library.substr(url_at, 60);
    }
  }
}

// A malformed line: one error naming the file and the line.
TEST_F(Report, MalformedMetricsNameFileAndLine) {
  const fs::path dir = root_ / "bad";
  const std::string good = "{\"kind\":\"step\",\"step\":0,\"epoch\":1,\"loss\":1.0,\"grad_norm\":2.0,\"lr\":0.1,\"wall_s\":0.1}\n";
  struct Case {
    std::string line, expect;
  };
  const Case cases[] = {
      {"{\"kind\":\"step\",\"step\":1,", "line 3: malformed JSON"},
      {"[1,2]", "line 3: holds a JSON array, expected an object"},
      {"{\"kind\":\"step\",\"step\":1e999}", "line 3: malformed JSON: a number out of range"},
      {"{\"step\":1}", "line 3: lacks a string \"kind\""},
      {"{\"kind\":\"step\",\"step\":1,\"loss\":\"x\",\"grad_norm\":1}", "line 3: step record: \"loss\" is a JSON string, expected a number"},
      {"{\"kind\":\"step\",\"step\":1,\"loss\":1}", "line 3: step record lacks \"grad_norm\""},
      {"{\"kind\":\"epoch\",\"epoch\":1}", "line 3: epoch record lacks \"step\""},
      {"{\"kind\":\"final\",\"stopped_early\":1}", "line 3: final record: \"stopped_early\" is a JSON number, expected a boolean"},
      {"{\"kind\":\"eval\",\"step\":true}", "line 3: eval record: \"step\" is a JSON boolean"},
      {"{\"kind\":\"curvature\",\"step\":1,\"gHg\":\"x\"}", "line 3: curvature record: \"gHg\" is a JSON string, expected a number"},
      {"{\"kind\":\"layers\",\"step\":1,\"grad_norms\":[1]}", "line 3: layers record: \"grad_norms\" is a JSON array, expected an object"},
      {"{\"kind\":\"layers\",\"step\":1,\"weight_norms\":{\"w\":\"x\"}}", "line 3: layers record: \"weight_norms\"[\"w\"] is a JSON string"},
      {"{\"kind\":\"cliff\",\"step\":1,\"clipped\":1}", "line 3: cliff record: \"clipped\" is a JSON number, expected a boolean"},
      {"{\"kind\":\"recurrent\",\"step\":1,\"time_grad_norms\":{}}", "line 3: recurrent record: \"time_grad_norms\" is a JSON object"},
      {"{\"kind\":\"recurrent\",\"step\":1,\"matrices\":[{\"gate\":3}]}", "line 3: recurrent record: a matrix's \"gate\" is a JSON number"},
      {"{\"kind\":\"layers\",\"grad_norms\":{}}", "line 3: layers record lacks \"step\""},
  };
  for (const Case& c : cases) {
    spit(dir / "metrics.jsonl", good + "\n" + c.line + "\n" + good);
    try {
      descent::report::report_data({dir});
      ADD_FAILURE() << "accepted " << c.line;
    } catch (const descent::DataError& e) {
      EXPECT_EQ(std::string(e.what()).rfind((dir / "metrics.jsonl").string() + ": " + c.expect, 0), 0u) << e.what();
      EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos);
    }
  }
  fs::remove(dir / "metrics.jsonl");
  EXPECT_THROW(descent::report::report_data({dir}), descent::IoError);
  EXPECT_THROW(descent::report::report_data({root_ / "no-such-run"}), descent::IoError);
  spit(dir / "metrics.jsonl", good);
  spit(dir / "run.json", "{not json");
  try {
    descent::report::report_data({dir});
    ADD_FAILURE();
  } catch (const descent::DataError& e) {
    EXPECT_NE(std::string(e.what()).find("run.json: malformed JSON"), std::string::npos) << e.what();
  }
}

// Fuzz-style: 400 random corruptions of a real metrics.jsonl (bytes flipped, cut, duplicated,
// spliced). Each either reads or fails with a descent::Error naming the file; never a crash
// or another exception.
TEST_F(Report, RandomlyCorruptedMetricsFailCleanly) {
  const std::string original = slurp(run("a") / "metrics.jsonl");
  ASSERT_GT(original.size(), 1000u);
  const fs::path dir = root_ / "fuzz";
  descent::Rng rng(2024);
  int accepted = 0, rejected = 0;
  for (int round = 0; round < 400; ++round) {
    std::string text = original;
    const int edits = 1 + static_cast<int>(rng.below(4));
    for (int e = 0; e < edits; ++e) {
      const std::size_t at = rng.below(text.size());
      switch (rng.below(5)) {
        case 0: text[at] = static_cast<char>(rng.below(256)); break;
        case 1: text.resize(at); break;
        case 2: text.insert(at, text.substr(rng.below(text.size()), rng.below(40))); break;
        case 3: text.erase(at, rng.below(30)); break;
        default: text.insert(at, std::string(1, "{}[]\",:0-e.n\\"[rng.below(13)])); break;
      }
      if (text.empty()) text = "x";
    }
    spit(dir / "metrics.jsonl", text);
    try {
      const json d = json::parse(descent::report::report_data({dir}));
      ASSERT_EQ(d["runs"].size(), 1u);
      ++accepted;
    } catch (const descent::Error& e) {
      ++rejected;
      ASSERT_EQ(std::string(e.what()).rfind((dir / "metrics.jsonl").string() + ": line ", 0), 0u) << e.what();
    }
  }
  EXPECT_GT(rejected, 100);
  EXPECT_GT(accepted, 0);  // e.g. a cut at a line end
}

TEST_F(Report, CommandLine) {
  const std::string cli = DESCENT_CLI;
  fs::remove(run("b") / "report.html");
  Result r = shell(cli + " report " + run("b").string(), root_);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, (run("b") / "report.html").string() + "\n");
  EXPECT_TRUE(fs::exists(run("b") / "report.html"));
  const fs::path overlay = root_ / "overlay.html";
  r = shell(cli + " report " + run("a").string() + " " + run("b").string() + " --out " + overlay.string(), root_);
  EXPECT_EQ(r.code, 0) << r.err;
  const json data = embedded(slurp(overlay));
  ASSERT_EQ(data["runs"].size(), 2u);
  EXPECT_EQ(data["runs"][1]["name"], "b");
  // A file in a run folder (its metrics.jsonl) means the folder.
  fs::remove(run("b") / "report.html");
  r = shell(cli + " report " + (run("b") / "metrics.jsonl").string(), root_);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, (run("b") / "report.html").string() + "\n");
  EXPECT_EQ(embedded(slurp(run("b") / "report.html"))["runs"][0]["name"], "b");
  r = shell(cli + " report " + run("a").string() + " " + run("b").string(), root_);
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err, "descent: error: report: 2 run folders overlay into one page: say where with --out FILE\n");
  r = shell(cli + " report " + (root_ / "nowhere").string(), root_);
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err, "descent: error: " + (root_ / "nowhere").string() + ": not a run folder (no such directory)\n");
  r = shell("DESCENT_DYGRAPHS_JS=/nonexistent/dygraph.min.js " + cli + " report " + run("b").string(), root_);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("install libjs-dygraphs"), std::string::npos) << r.err;
}

// ---- in a real browser ------------------------------------------------------

// Loads `page` in headless Chromium: the DOM after the scripts ran (and a screenshot to
// `png`, `height` pixels of the page). Fails on any console message.
std::string browse(const fs::path& page, const fs::path& png, int height) {
  const fs::path work = png.parent_path() / (png.stem().string() + "-chromium");
  fs::remove_all(work);
  fs::create_directories(work);
  const std::string base = chromium() + " --headless --no-sandbox --disable-gpu --no-first-run --disable-extensions "
                           "--disable-background-networking --hide-scrollbars --enable-logging=stderr --v=0 "
                           "--user-data-dir=" + (work / "profile").string() + " ";
  const Result dom = shell(base + "--dump-dom file://" + fs::absolute(page).string(), work);
  EXPECT_EQ(dom.code, 0) << dom.err;
  // Console messages (errors included) are logged as "...:CONSOLE(line)] ..." on stderr.
  EXPECT_EQ(dom.err.find("CONSOLE"), std::string::npos) << dom.err;
  const Result shot = shell(base + "--window-size=1400," + std::to_string(height) + " --screenshot=" + fs::absolute(png).string() + " file://" +
                                fs::absolute(page).string(),
                            work);
  EXPECT_EQ(shot.code, 0) << shot.err;
  EXPECT_TRUE(fs::exists(png) && fs::file_size(png) > 10000) << png;
  fs::remove_all(work / "profile");  // keep the browser's logs, not its profile
  return dom.out;
}

int attribute(const std::string& dom, const std::string& name) {
  // <body ... NAME="digits" ...>: the attribute of the body tag, or -1.
  const std::size_t body = dom.find("<body");
  if (body == std::string::npos) return -1;
  const std::size_t end = dom.find('>', body);
  const std::string tag = dom.substr(body, end == std::string::npos ? std::string::npos : end - body);
  const std::string key = name + "=\"";
  for (std::size_t at = tag.find(key); at != std::string::npos; at = tag.find(key, at + 1)) {
    if (at == 0 || std::isspace(static_cast<unsigned char>(tag[at - 1])) == 0) continue;
    const std::size_t first = at + key.size();
    const std::size_t last = tag.find('"', first);
    if (last == std::string::npos || last == first) return -1;
    const std::string digits = tag.substr(first, last - first);
    if (digits.find_first_not_of("0123456789") != std::string::npos) return -1;
    return std::stoi(digits);
  }
  return -1;
}

// The number in NAME="..." of the first element that has the attribute, or NaN.
double number_attribute(const std::string& dom, const std::string& name) {
  const std::string key = " " + name + "=\"";
  const std::size_t at = dom.find(key);
  if (at == std::string::npos) return std::nan("");
  const std::size_t first = at + key.size(), last = dom.find('"', first);
  try {
    return std::stod(dom.substr(first, last - first));
  } catch (const std::exception&) {
    return std::nan("");
  }
}

class Browser : public Report {
 protected:
  void SetUp() override {
    if (chromium().empty()) GTEST_SKIP() << "SKIP: chromium not installed (scripts/install-deps installs it)";
  }
  // Every chart of the page drawn with data, no error; `charts` expected (at least `charts`
  // when !exact: the runs the CLI trains gain panels as the trainer writes more records).
  // Returns the DOM after the page's scripts ran.
  static std::string check(const fs::path& page, const std::string& shot, int charts, bool exact = true, int height = 2600) {
    const fs::path png = fs::path(DESCENT_BINARY_DIR) / "report-test" / "screenshots" / (shot + ".png");
    fs::create_directories(png.parent_path());
    fs::copy_file(page, png.parent_path() / (shot + ".html"), fs::copy_options::overwrite_existing);
    const std::string dom = browse(page, png, height);
    EXPECT_EQ(attribute(dom, "data-errors"), 0) << shot;
    if (exact) EXPECT_EQ(attribute(dom, "data-charts"), charts) << shot;
    else EXPECT_GE(attribute(dom, "data-charts"), charts) << shot;
    EXPECT_EQ(attribute(dom, "data-drawn"), attribute(dom, "data-charts"))
        << shot << ": charts without data: " << dom.substr(dom.find("data-empty="), 300);
    std::cout << "screenshot " << png.string() << "\n";
    return dom;
  }
};

// Loss and error against step and wall time (4), Fig. 8.1 (2), learning rate, clipping.
TEST_F(Browser, OneRun) { check(run("a") / "report.html", "mlp", 8, false); }

TEST_F(Browser, Cnn) {
  ASSERT_EQ(train_output_["cnn"].code, 0) << train_output_["cnn"].err;
  check(run("cnn") / "report.html", "cnn", 7, false);  // no clipping: a note instead of its chart
}

TEST_F(Browser, Lstm) {
  ASSERT_EQ(train_output_["lstm"].code, 0) << train_output_["lstm"].err;
  check(run("lstm") / "report.html", "lstm", 7, false);
}

// The CNN and LSTM runs after `descent diagnose` with every --what, their page rewritten by
// `descent report`: the run's charts and one panel per diagnostics file, drawn from the
// files the CLI wrote: spectrum (2), density (1), noise (1), interpolation (2), plane (2)
// charts more than the run alone, and the symmetry table naming the model's layers.
class BrowserDiagnosed : public Browser {
 protected:
  static void diagnosed_run(const fs::path& dir, const std::string& shot, const std::vector<std::string>& layers, bool rescaling);
};

void BrowserDiagnosed::diagnosed_run(const fs::path& dir, const std::string& shot, const std::vector<std::string>& layers, bool rescaling) {
  const Result d = shell(std::string(DESCENT_CLI) + " diagnose " + dir.string() +
                             " --what spectrum,trace,density,noise,symmetry,critical,interpolation,plane --examples 40 --steps 30"
                             " --probes 10 --draws 10 --trials 2 --points 5 --grid 5",
                         dir.parent_path());
  ASSERT_EQ(d.code, 0) << d.err;
  const Result r = shell(std::string(DESCENT_CLI) + " report " + dir.string(), dir.parent_path());
  ASSERT_EQ(r.code, 0) << r.err;
  const json data = embedded(slurp(dir / "report.html"));
  EXPECT_EQ(data["runs"][0]["diagnostics"].size(), 8u) << data["runs"][0]["diagnostics"].dump().substr(0, 300);
  const std::string dom = check(dir / "report.html", shot, 7 + 8, false, 7000);
  for (const char* text : {"Hessian spectrum: extreme eigenvalues", "Hessian spectral density", "Hessian trace",
                           "Gradient noise against batch size", "Weight space symmetry (section 8.2.2)", "Critical point check",
                           "Linear interpolation from", "The loss on a plane"}) {
    EXPECT_NE(dom.find(text), std::string::npos) << shot << ": " << text;
  }
  // The symmetry table's kind column (the DOM holds the page's script and data too: look for drawn cells).
  for (const std::string& kind : layers) EXPECT_NE(dom.find("\">" + kind + "</td>"), std::string::npos) << shot << ": " << kind;
  EXPECT_EQ(dom.find("lower bound): module"), std::string::npos) << shot;  // every layer covered: no note
  // The verdict: rescalings counted for the CNN's ReLU channels; for the LSTM, none applies
  // (the phrase once in the page's script, once more when drawn).
  EXPECT_EQ(data["runs"][0]["diagnostics"]["symmetry"]["rescaling_dimensions"].get<int>() > 0, rescaling) << shot;
  std::size_t phrases = 0;
  for (std::size_t at = dom.find("no layer allows a rescaling"); at != std::string::npos; at = dom.find("no layer allows a rescaling", at + 1)) ++phrases;
  EXPECT_EQ(phrases, rescaling ? 1u : 2u) << shot;
}

TEST_F(BrowserDiagnosed, Cnn) {
  ASSERT_EQ(train_output_["cnn"].code, 0) << train_output_["cnn"].err;
  diagnosed_run(run("cnn"), "cnn-diagnostics", {"conv"}, true);
}

TEST_F(BrowserDiagnosed, Lstm) {
  ASSERT_EQ(train_output_["lstm"].code, 0) << train_output_["lstm"].err;
  diagnosed_run(run("lstm"), "lstm-diagnostics", {"lstm"}, false);
}

// Every panel: the monitors' records and every diagnostics file, with the fixture's numbers
// on the page. Charts: loss and error against step and wall time (4), Fig. 8.1 (2), learning
// rate and clipping (2), curvature (4), per-layer norms (2), recurrent heat map, spectral
// radius, growth factor (3), spectrum (2), density (1), noise (1), interpolation (2), plane:
// loss and error heat maps (2).
TEST_F(Browser, EveryPanel) {
  const fs::path dir = root_ / "full";
  write_full_run(dir);
  descent::report::write_report({dir}, dir / "report.html");
  const std::string dom = check(dir / "report.html", "every-panel", 25, true, 9000);
  for (const char* text : {"near a saddle (test verdict)",                                       // critical
                           "lambda_min = -0.75 &lt; 0 &lt; lambda_max = 42.5 and the gradient gap",
                           "123.4 \u00b1 5.6",                                                // trace
                           "-0.480", "-0.550",                                              // noise slopes
                           "321",                                                           // noise scale
                           "10^185.3", "module 4 (BatchNorm(16)): its units are not permuted or rescaled (not covered)",  // symmetry
                           "3 cliffs (||g|| above 5 times the running median",             // cliffs
                           "2 clipped",
                           "c0ffee42", "Test CPU 9000", "feedc0de",                        // header, run.json
                           "thread_rule_chosen", "tiny_serial (median ms per step: parallel 0.367",  // the rule chosen
                           "42.5", "-0.75",                                                 // spectrum
                           "Per-layer norms", "Recurrent gradients", "Curvature along the path",
                           "Linear interpolation from", "The loss on a plane"}) {
    EXPECT_NE(dom.find(text), std::string::npos) << text;
  }
  EXPECT_EQ(dom.find("<h2>Diagnostics: "), std::string::npos);  // every diagnostics file has its panel
  // The density chart holds no value below 1e-6 of the density's maximum (read here from
  // density.json), and the notches (1e-22) sit at that floor.
  double top = 0.0, bottom = 1.0;
  const json written = json::parse(slurp(dir / "diagnostics" / "density.json"));
  for (const json& v : written["density"]) {
    top = std::max(top, v.get<double>());
    bottom = std::min(bottom, v.get<double>());
  }
  ASSERT_LT(bottom, 1e-20);
  const double plotted_min = number_attribute(dom, "data-plotted-min");
  EXPECT_NEAR(plotted_min, 1e-6 * top, 1e-9 * 1e-6 * top) << "the floor: " << number_attribute(dom, "data-floor");
}

TEST_F(Browser, Overlay) {
  const fs::path page = root_ / "overlay-browser.html";
  descent::report::write_report({run("a"), run("b")}, page);
  check(page, "overlay", 8, false);
  // Two runs with every panel overlaid: the curvature charts carry both, the per-run panels
  // appear once per run: 8 + 4 + 2 * (2 + 3 + 2 + 1 + 1 + 2 + 2) = 38 charts.
  write_full_run(root_ / "overlay-full" / "one");
  write_full_run(root_ / "overlay-full" / "two", 0.3);
  const fs::path full = root_ / "overlay-full" / "overlay.html";
  descent::report::write_report({root_ / "overlay-full" / "one", root_ / "overlay-full" / "two"}, full);
  check(full, "overlay-every-panel", 38, true, 14000);
}

// 30000 updates aggregated, a divergence, no clipping (a note instead of the chart), no
// validation split, a diagnostics file without a panel yet, and run.json.
TEST_F(Browser, LongRunWithoutValidation) {
  const fs::path dir = root_ / "long-browser";
  std::ostringstream m;
  descent::Rng rng(3);
  const int n = 30000, per_epoch = 1000;
  for (int i = 0; i < n; ++i) {
    m << json{{"kind", "step"}, {"step", i}, {"epoch", 1 + i / per_epoch}, {"loss", 2.3 * std::exp(-i / 8000.0) + 0.2 * rng.uniform()},
              {"grad_norm", 1.0 + 0.3 * rng.normal() + i / 20000.0}, {"lr", 0.1 * std::pow(0.5, i / 10000)}, {"wall_s", i * 0.002}}.dump()
      << "\n";
    if ((i + 1) % per_epoch == 0) {
      const double t = 2.3 * std::exp(-i / 8000.0);
      m << json{{"kind", "epoch"}, {"epoch", (i + 1) / per_epoch}, {"step", i + 1}, {"train_loss", t}, {"train_error", t / 5},
                {"lr", 0.1}, {"grad_norm_mean", 1.0}, {"clip_count", 0}, {"examples_per_s", 1e4}, {"wall_s", i * 0.002}}.dump()
        << "\n";
    }
    if (i == 12345) {
      m << json{{"kind", "divergence"}, {"step", i}, {"epoch", 13}, {"policy", "skip"}, {"loss", nullptr}, {"wall_s", 1.0}}.dump() << "\n";
    }
  }
  m << json{{"kind", "final"}, {"epochs", 30}, {"steps", n}, {"best_epoch", 30}, {"stopped_early", false}, {"test_error", 0.1},
            {"test_loss", 0.3}, {"test_accuracy", 0.9}, {"wall_s", 60.0}}.dump()
    << "\n";
  spit(dir / "metrics.jsonl", m.str());
  spit(dir / "run.json", "{\"host\": \"test\", \"threads\": 2}");
  spit(dir / "diagnostics" / "future_panel.json", "{\"values\": [1, 2, 3]}");
  const fs::path page = dir / "report.html";
  descent::report::write_report({dir}, page);
  EXPECT_LT(fs::file_size(page), 600000u);
  check(page, "long", 7);
}

}  // namespace
