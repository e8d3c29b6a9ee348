// lambda_max of a run's model by descent's Lanczos (diag::lanczos_extremes), timed, for the
// side-by-side with PyHessian's power iteration in PyTorch (bench/lambda_max.sh runs both).
// The examples are the run's first N training examples after its preprocessing; they are
// written to EXPORT/x.f32 and EXPORT/y.i32 so that PyTorch reads exactly the same ones.
//
// Stopping rule: the same as PyHessian's power iteration (stop when the estimate changes by
// less than tol relative between two steps). Lanczos' top Ritz value after m steps is
// found once (untimed) from one long run's tridiagonal matrix, prefix by prefix (the first
// m steps of a run are the same whatever the total); the timed run then does exactly those
// m steps from the same start vector (the reference value: all max_steps steps): building the operator (the forward pass over the N
// examples) plus m products and the reorthogonalization.
//   lambda_max RUN_DIR EXPORT [--examples N] [--tol T] [--threads T] [--reps R] [--max-steps M]
//              [--rule change|error|residual]
// --rule change (default) is PyHessian's stopping rule; --rule error stops at the first
// estimate within tol of the reference (the top Ritz value after max-steps steps), so that
// both sides reach the same accuracy (an oracle: neither side could stop so in practice);
// --rule residual is Lanczos' own a-posteriori rule, which needs no reference: stop at the
// first m whose top Ritz pair (theta, y) has the error bound min(r, r^2 / gap) <= tol |theta|,
// r = |H y - theta y| = beta_m |u_m| (free: from T_m), gap = theta_1 - theta_2 (Kato-Temple,
// the second Ritz value standing in for the second eigenvalue).
// Prints one JSON line.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "bench_options.hpp"
#include "descent/diag/hessian.hpp"
#include "descent/diag/lanczos.hpp"
#include "descent/diag/lapack.hpp"
#include "descent/init/rng.hpp"
#include "descent/io/model_file.hpp"
#include "descent/tensor/parallel.hpp"
#include "descent/train/data.hpp"
#include "descent/train/trainer.hpp"

using namespace descent;

namespace {
// The process's CPU time (all threads): steadier than wall time on a loaded machine.
double cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}
}  // namespace
namespace fs = std::filesystem;

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: lambda_max RUN_DIR EXPORT [--examples N] [--tol T] [--threads T] [--reps R] [--max-steps M]\n");
    return 2;
  }
  const fs::path run_dir = argv[1], export_dir = argv[2];
  std::int64_t examples = 1000;
  double tol = 1e-3;
  int threads = 2, reps = 5, max_steps = 60;
  std::string rule = "change";
  for (int i = 3; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--examples")) examples = std::atoll(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--tol")) tol = std::atof(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--threads")) threads = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--reps")) reps = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--max-steps")) max_steps = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--rule")) rule = argv[i + 1];
    else {
      std::fprintf(stderr, "lambda_max: unknown option %s\n", argv[i]);
      return 2;
    }
  }
  try {
    set_num_threads(threads);
    const train::TrainConfig config = train::load_train_config(run_dir / "config.toml");
    train::Data data = train::load_data(config);
    train::Model model = train::build_model(config.model, data.dim, data.num_classes, config.seed);
    io::load_parameters(run_dir / "model.safetensors", *model.arena);
    const std::int64_t n = std::min<std::int64_t>(examples, data.train.size());
    Tensor buffer;
    const Tensor x = data.train.rows(0, n, buffer);
    const Tensor x32 = x.dtype() == DType::f32 ? x : x.to(DType::f32);
    const Tensor y = data.train.y.rows(0, n);
    fs::create_directories(export_dir);
    std::ofstream(export_dir / "x.f32", std::ios::binary).write(static_cast<const char*>(x32.raw()), static_cast<std::streamsize>(x32.nbytes()));
    std::ofstream(export_dir / "y.i32", std::ios::binary).write(static_cast<const char*>(y.raw()), static_cast<std::streamsize>(y.nbytes()));

    // Calibration (untimed): the top Ritz value after each prefix of one long run.
    const std::uint64_t seed = 1;
    diag::HessianOperator h(*model.net, *model.arena, x, y);
    Rng rng(seed);
    std::vector<double> start(static_cast<std::size_t>(h.dim()));
    for (double& v : start) v = rng.normal();  // lanczos_extremes' start vector for this seed
    const diag::LanczosRun run = diag::lanczos(diag::as_operator(h), start, max_steps, false);
    std::vector<double> tops, bounds;
    for (int m = 1; m <= run.steps; ++m) {
      const std::vector<double> a(run.alpha.begin(), run.alpha.begin() + m), b(run.beta.begin(), run.beta.begin() + (m - 1));
      const diag::Eigen e = diag::tridiagonal_eigen(a, b, true);
      const auto mm = static_cast<std::size_t>(m);
      const double top = e.values.back();
      tops.push_back(top);
      // The residual of the top Ritz pair, |H y - theta y| = beta_m |u[m]| (no product),
      // and the error bound min(r, r^2 / gap), gap = theta_1 - theta_2 (Kato-Temple with
      // the next Ritz value standing in for the next eigenvalue; Parlett, ch. 11).
      const double beta_m = m < run.steps ? run.beta[mm - 1] : run.beta_last;
      const double r = beta_m * std::abs(e.vectors[(mm - 1) * mm + mm - 1]);
      const double gap = m >= 2 ? top - e.values[mm - 2] : 0.0;
      bounds.push_back(gap > 0 ? std::min(r, r * r / gap) : r);
    }
    const double reference = tops.back();  // all max_steps steps
    // --rule change: PyHessian's (the estimate moved by less than tol); --rule error: the
    // first estimate within tol of the reference (the same accuracy on both sides).
    int steps = run.steps;
    for (int m = 2; m <= run.steps; ++m) {
      const double t = tops[static_cast<std::size_t>(m - 1)];
      const bool done = rule == "error"      ? std::abs(t - reference) <= tol * std::abs(reference)
                        : rule == "residual" ? bounds[static_cast<std::size_t>(m - 1)] <= tol * std::abs(t)
                                             : std::abs(t - tops[static_cast<std::size_t>(m - 2)]) <= tol * std::abs(t);
      if (done) {
        steps = m;
        break;
      }
    }

    std::vector<double> times, cpu;
    double estimate = 0.0;
    for (int r = 0; r < reps; ++r) {
      const double c0 = cpu_seconds();
      const auto t0 = bench::Clock::now();
      diag::HessianOperator timed(*model.net, *model.arena, x, y);
      estimate = diag::lanczos_extremes(timed, {.steps = steps, .top = 1, .bottom = 1, .seed = seed}).lambda_max;
      times.push_back(bench::seconds(t0, bench::Clock::now()));
      cpu.push_back(cpu_seconds() - c0);
    }
    std::printf(
        "{\"impl\": \"descent-lanczos\", \"rule\": \"%s\", \"seconds_min\": %.4f, \"examples\": %lld, \"parameters\": %lld, \"threads\": %d, \"tol\": %g, \"steps\": %d, "
        "\"lambda_max\": %.10g, \"reference_lambda_max\": %.10g, \"relative_error\": %.3g, \"seconds\": %.4f, \"seconds_all\": [",
        rule.c_str(), *std::min_element(times.begin(), times.end()), static_cast<long long>(n), static_cast<long long>(h.dim()), threads, tol, steps, estimate, reference,
        std::abs(estimate - reference) / std::abs(reference), bench::median(times));
    for (std::size_t i = 0; i < times.size(); ++i) std::printf("%s%.4f", i ? ", " : "", times[i]);
    std::printf("], \"cpu_seconds_min\": %.4f, \"cpu_seconds\": %.4f, \"model\": \"%s\"}\n", *std::min_element(cpu.begin(), cpu.end()),
                bench::median(cpu), (run_dir / "model.safetensors").string().c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "lambda_max: %s\n", e.what());
    return 1;
  }
  return 0;
}
