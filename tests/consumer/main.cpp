// A project that uses the installed descent through find_package(descent), as a user
// would: one check per public area, each against a value worked out independently, so a
// broken install (headers, link interface, dependencies) fails to build or to pass.
//   data:     an IDX file and a CSV file it writes, read back
//   autodiff: gradient and Hessian-vector product of L = (w . x)^2 against the formulas
//   optim:    one SGD step against theta - lr g
//   io:       parameters saved and loaded into another arena
//   train:    a config parsed from text, a tiny training run on CSV data it writes
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <descent/autodiff/ops.hpp>
#include <descent/data/csv.hpp>
#include <descent/data/idx.hpp>
#include <descent/io/model_file.hpp>
#include <descent/nn/module.hpp>
#include <descent/optim/optimizer.hpp>
#include <descent/optim/schedule.hpp>
#include <descent/train/config.hpp>
#include <descent/train/trainer.hpp>
#include <descent/version.hpp>

using namespace descent;
namespace fs = std::filesystem;

namespace {

int failures = 0;

void check(bool ok, const std::string& what) {
  std::printf("%s %s\n", ok ? "ok  " : "FAIL", what.c_str());
  if (!ok) ++failures;
}

bool near(double a, double b, double tol = 1e-9) { return std::abs(a - b) <= tol * (1.0 + std::abs(b)); }

void write(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out << bytes;
}

void data_area(const fs::path& dir) {
  // IDX: unsigned bytes, 2 x 3 (magic 00 00 08 02, dimensions big-endian).
  std::string idx = {0, 0, 0x08, 2, 0, 0, 0, 2, 0, 0, 0, 3};
  for (int v : {0, 1, 2, 250, 254, 255}) idx.push_back(static_cast<char>(v));
  write(dir / "small.idx", idx);
  const data::Array a = data::read_idx(dir / "small.idx");
  check(a.shape == std::vector<std::int64_t>{2, 3} && a.values.size() == 6 && a.values[3] == 250.0f && a.values[5] == 255.0f,
        "data: read_idx gives the 2x3 bytes");
  write(dir / "small.csv", "label,a,b\n1,0.5,-2\n0,3,4.25\n");
  const data::Labeled c = data::read_csv(dir / "small.csv");
  const std::vector<float>& x = c.features.values;
  check(c.size() == 2 && c.dim() == 2 && x[1] == -2.0f && x[3] == 4.25f && c.labels == std::vector<std::int32_t>{1, 0},
        "data: read_csv gives the features and labels");
}

void autodiff_area() {
  // L = (w . x)^2: g = 2 (w . x) x, H = 2 x x^T, so H v = 2 (x . v) x.
  const std::vector<double> xs = {1.0, -2.0, 0.5}, ws = {0.3, 0.1, -0.4}, vs = {1.0, 2.0, 3.0};
  autodiff::Tape tape;
  autodiff::Var x = tape.constant(Tensor::from<double>({1, 3}, xs));
  autodiff::Var w = tape.variable(Tensor::from<double>({1, 3}, ws));
  autodiff::Var loss = autodiff::sum(autodiff::square(autodiff::linear(x, w)));
  tape.backward(loss);
  const double wx = 0.3 - 0.2 - 0.2, xv = 1.0 - 4.0 + 1.5;
  bool grad_ok = true;
  for (int i = 0; i < 3; ++i) grad_ok = grad_ok && near(tape.grad(w).at(i), 2 * wx * xs[i]);
  check(grad_ok, "autodiff: gradient of (w.x)^2 is 2 (w.x) x");
  tape.set_tangent(w, Tensor::from<double>({1, 3}, vs));
  tape.hvp(loss, Tensor(), Tensor());  // no arena: the product comes from the variable's tangent
  bool hv_ok = true;
  for (int i = 0; i < 3; ++i) hv_ok = hv_ok && near(tape.grad_tangent(w).at(i), 2 * xv * xs[i]);
  check(hv_ok, "autodiff: Hv of (w.x)^2 is 2 (x.v) x");
}

void optim_area() {
  ParameterArena arena(DType::f64);
  arena.add("w", {3});
  const std::vector<double> theta = {1.0, -1.0, 2.0}, g = {0.5, 0.25, -1.0};
  arena.values().copy_from(Tensor::from<double>({3}, theta));
  arena.grads().copy_from(Tensor::from<double>({3}, g));
  optim::OptimizerSpec spec;
  spec.name = "sgd";
  auto opt = optim::make_optimizer(spec, optim::constant(0.1));
  opt->prepare(arena, 0);
  opt->step(arena, 0);
  bool ok = true;
  for (int i = 0; i < 3; ++i) ok = ok && near(arena.values().at(i), theta[i] - 0.1 * g[i], 1e-15);
  check(ok, "optim: one SGD step is theta - lr g");
}

void io_area(const fs::path& dir) {
  ParameterArena a(DType::f32), b(DType::f32);
  nn::Sequential net_a = nn::mlp(a, {4, 3, 2});
  nn::Sequential net_b = nn::mlp(b, {4, 3, 2});
  float* p = a.values().data<float>();
  for (std::int64_t i = 0; i < a.size(); ++i) p[i] = 0.25f * static_cast<float>(i) - 3.0f;
  io::save_parameters(dir / "model.safetensors", a, {{"note", "consumer"}});
  const auto metadata = io::load_parameters(dir / "model.safetensors", b);
  bool ok = b.size() == a.size() && metadata.count("note") == 1 && metadata.at("note") == "consumer";
  for (std::int64_t i = 0; ok && i < a.size(); ++i) ok = b.values().at(i) == a.values().at(i);
  check(ok, "io: save_parameters then load_parameters gives the same values");
}

void train_area(const fs::path& dir) {
  // Two Gaussian blobs in 4-D, class = which blob: separable, so a few epochs learn it.
  std::string train_csv, test_csv;
  std::uint64_t state = 12345;
  auto uniform = [&] {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<double>(state >> 11) * 0x1.0p-53;
  };
  for (int i = 0; i < 500; ++i) {
    const int label = i % 2;
    std::string row = std::to_string(label);
    for (int j = 0; j < 4; ++j) row += "," + std::to_string((label ? 1.0 : -1.0) + 0.6 * (uniform() - 0.5));
    (i < 400 ? train_csv : test_csv) += row + "\n";
  }
  write(dir / "train.csv", train_csv);
  write(dir / "test.csv", test_csv);
  const std::string toml = "name = \"tiny\"\nseed = 3\nepochs = 4\nthreads = 1\nprogress = \"none\"\nout_dir = \"" +
                           (dir / "runs").string() +
                           "\"\n[data]\nformat = \"csv\"\ntrain_features = \"" + (dir / "train.csv").string() +
                           "\"\ntest_features = \"" + (dir / "test.csv").string() +
                           "\"\nscale = 1.0\nvalidation_size = 100\n[model]\ntype = \"mlp\"\nhidden = [8]\n"
                           "[optimizer]\nname = \"sgd\"\nlr = 0.1\n[sampler]\nbatch_size = 20\n";
  const train::TrainConfig config = train::parse_train_config(toml, "consumer.toml");
  check(config.epochs == 4 && config.data.format == "csv", "train: parse_train_config reads the text");
  const train::RunResult result = train::run(config, nullptr);
  check(result.epochs_run >= 1 && result.test.examples == 100, "train: run() trains and evaluates the test split");
  check(result.test.error < 0.05, "train: the separable blobs are learned (test error " + std::to_string(result.test.error) + ")");
  check(fs::exists(result.run_dir / "model.safetensors") && fs::exists(result.run_dir / "metrics.jsonl"),
        "train: the run folder holds the model and the metrics");
}

}  // namespace

int main(int argc, char** argv) {
  const fs::path dir = argc > 1 ? fs::path(argv[1]) : fs::temp_directory_path() / "descent-consumer";
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::printf("descent %s from the installed package\n", descent::version);
  try {
    data_area(dir);
    autodiff_area();
    optim_area();
    io_area(dir);
    train_area(dir);
  } catch (const std::exception& e) {
    std::printf("FAIL exception: %s\n", e.what());
    return 1;
  }
  return failures == 0 ? 0 : 1;
}
