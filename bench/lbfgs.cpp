// Full-batch L-BFGS on a network, timed, for the side-by-side with torch.optim.LBFGS
// (bench/lbfgs.sh runs both; bench/lbfgs_torch.py is PyTorch's side).
//
// The problem: softmax regression (--hidden "") or a small MLP (--hidden 64, ReLU) on the
// first N Fashion-MNIST training examples (pixels / 255, no standardization), mean
// cross-entropy over all N (optim::NetworkObjective). The start weights (seed 1, Glorot
// uniform, bias 0) and the examples are written to EXPORT (init.safetensors, x.f32, y.i32)
// so that PyTorch starts from the same point on the same data.
//
//   lbfgs EXPORT [--hidden 64] [--examples 10000] [--iterations K] [--threads T] [--reps R]
//                [--history 10] [--trace]
// --trace: one untimed run of K iterations, prints the loss after each (JSON);
// otherwise: R timed runs of exactly K iterations (from building the objective, i.e. the
// first forward pass, to the K-th accepted iterate), the median and minimum seconds and the
// final loss (JSON). The script finds K for the target loss from the traces of both sides.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "descent/io/model_file.hpp"
#include "descent/optim/network_objective.hpp"
#include "descent/optim/second_order.hpp"
#include "descent/tensor/parallel.hpp"
#include "descent/train/data.hpp"
#include "descent/train/trainer.hpp"

using namespace descent;
namespace fs = std::filesystem;

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: lbfgs EXPORT [--hidden 64] [--examples N] [--iterations K] [--threads T] [--reps R] [--history M] [--trace]\n");
    return 2;
  }
  const fs::path export_dir = argv[1];
  std::string hidden = "64";
  std::int64_t examples = 10000;
  int iterations = 100, threads = 1, reps = 3, history = 10;
  std::int64_t chunk = optim::NetworkObjective::default_options().chunk;  // what `descent train` records
  bool trace = false;
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--trace") {
      trace = true;
      continue;
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "lbfgs: %s needs a value\n", a.c_str());
      return 2;
    }
    const char* v = argv[++i];
    if (a == "--hidden") hidden = v;
    else if (a == "--examples") examples = std::atoll(v);
    else if (a == "--iterations") iterations = std::atoi(v);
    else if (a == "--threads") threads = std::atoi(v);
    else if (a == "--reps") reps = std::atoi(v);
    else if (a == "--history") history = std::atoi(v);
    else if (a == "--chunk") chunk = std::atoll(v);
    else {
      std::fprintf(stderr, "lbfgs: unknown option %s\n", a.c_str());
      return 2;
    }
  }
  try {
    set_num_threads(threads);
    const std::string toml = "seed = 1\n[data]\nformat = \"mnist\"\ndir = \"/usr/share/datasets/fashion-mnist\"\n"
                             "scale = 0.00392156862745098\nstandardize = \"none\"\nvalidation_size = 0\nlimit_train = " +
                             std::to_string(examples) + "\nlimit_test = 100\n[model]\nhidden = [" + hidden +
                             "]\nactivation = \"relu\"\n[init]\nweights = \"glorot_uniform\"\nbias = 0.0\n";
    const train::TrainConfig config = train::parse_train_config(toml, "bench/lbfgs");
    train::Data data = train::load_data(config);
    train::Model model = train::build_model(config.model, data.dim, data.num_classes, config.seed);
    train::initialize_model(model, config);
    const Tensor init = model.arena->values().clone();
    const std::int64_t n = data.train.size();
    Tensor buffer;
    const Tensor x = data.train.rows(0, n, buffer).clone();
    const Tensor y = data.train.y;
    fs::create_directories(export_dir);
    std::ofstream(export_dir / "x.f32", std::ios::binary)
        .write(static_cast<const char*>(x.raw()), static_cast<std::streamsize>(x.nbytes()));
    std::ofstream(export_dir / "y.i32", std::ios::binary)
        .write(static_cast<const char*>(y.raw()), static_cast<std::streamsize>(y.nbytes()));
    io::save_parameters(export_dir / "init.safetensors", *model.arena);

    optim::SecondOrderOptions options;
    options.method = "lbfgs";
    options.history = history;
    options.max_evaluations = 25;  // torch.optim.LBFGS: max_eval = 1.25 max_iter per step; 25 per search here
    const auto run = [&](std::vector<double>* losses, std::int64_t* evaluations) {
      model.arena->values().copy_from(init);
      diag::HessianOptions ho;
      ho.chunk = chunk;
      optim::NetworkObjective objective(*model.net, *model.arena, x, y, ho);
      auto m = optim::make_second_order(options);
      m->start(objective, objective.parameters());
      for (int k = 0; k < iterations; ++k) {
        const optim::IterationRecord r = m->step(objective);
        if (losses != nullptr) losses->push_back(r.f);
        if (r.stalled) break;
      }
      if (evaluations != nullptr) *evaluations = objective.evaluations();
      return m->value();
    };
    const std::string model_name = hidden.empty() ? "softmax" : "mlp" + hidden;
    if (trace) {
      std::vector<double> losses;
      std::int64_t evaluations = 0;
      run(&losses, &evaluations);
      std::printf("{\"impl\": \"descent\", \"model\": \"%s\", \"examples\": %lld, \"evaluations\": %lld, \"losses\": [",
                  model_name.c_str(), static_cast<long long>(n), static_cast<long long>(evaluations));
      for (std::size_t i = 0; i < losses.size(); ++i) std::printf("%s%.9g", i > 0 ? ", " : "", losses[i]);
      std::printf("]}\n");
      return 0;
    }
    std::vector<double> seconds;
    double loss = 0.0;
    std::int64_t evaluations = 0;
    for (int r = 0; r < reps; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      loss = run(nullptr, &evaluations);
      seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    std::vector<double> sorted = seconds;
    std::sort(sorted.begin(), sorted.end());
    std::printf("{\"impl\": \"descent\", \"model\": \"%s\", \"threads\": %d, \"iterations\": %d, \"evaluations\": %lld, "
                "\"loss\": %.9g, \"seconds\": %.4f, \"seconds_min\": %.4f}\n",
                model_name.c_str(), threads, iterations, static_cast<long long>(evaluations), loss,
                sorted[sorted.size() / 2], sorted.front());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "lbfgs: %s\n", e.what());
    return 1;
  }
  return 0;
}
