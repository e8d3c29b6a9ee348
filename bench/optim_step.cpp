// One optimizer step on n = 10M float32 parameters, as bytes moved per second against a
// triad (a = b + s c) measured in the same run with the same parallel_for. Bytes per step
// count each array the fused loop reads and each it writes (Adam: g, theta, s, r read;
// theta, s, r written: 7 x 4 bytes per parameter); the triad counts 3 arrays as STREAM does.
// Nesterov (textbook) is prepare() + step(): its interim point costs one more pass.
// Prints one JSON line; bench/optim.sh runs the PyTorch peer and prints the ratios.
//   optim_step [--n N] [--reps N] [--threads N]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "descent/optim/optimizer.hpp"
#include "descent/tensor/parallel.hpp"

using namespace descent;

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

template <class F>
double time_it(F&& f, int reps) {
  f();
  f();  // warm-up: first touch, thread pool
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    f();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return median(t);
}

struct Case {
  const char* label;
  optim::OptimizerSpec spec;
  int arrays;  // 4-byte arrays read + written per parameter and step
};

}  // namespace

int main(int argc, char** argv) {
  std::int64_t n = 10'000'000;
  int reps = 20;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--n")) n = std::atoll(argv[i + 1]);
    if (!std::strcmp(argv[i], "--reps")) reps = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--threads")) set_num_threads(std::atoi(argv[i + 1]));
  }
  ParameterArena arena(DType::f32);
  arena.add("theta", {n});
  arena.values().fill(0.5);
  arena.grads().fill(1e-3);

  // The triad, a[i] = b[i] + s c[i], on buffers of the same size.
  Tensor a = Tensor::zeros({n}, DType::f32), b = Tensor::full({n}, DType::f32, 1.0), c = Tensor::full({n}, DType::f32, 2.0);
  float* pa = a.data<float>();
  const float* pb = b.data<float>();
  const float* pc = c.data<float>();
  const double triad_s = time_it(
      [&] {
        parallel_for(n, parallel_grain, [&](std::int64_t i0, std::int64_t i1) {
#pragma omp simd
          for (std::int64_t i = i0; i < i1; ++i) pa[i] = pb[i] + 0.5f * pc[i];
        });
      },
      reps);
  const double triad_gbs = 3.0 * 4.0 * static_cast<double>(n) / triad_s / 1e9;

  const std::vector<Case> cases = {
      {"sgd", {.name = "sgd"}, 3},
      {"momentum", {.name = "momentum"}, 5},
      {"nesterov", {.name = "nesterov"}, 8},
      {"nesterov_pytorch", {.name = "nesterov", .form = "pytorch"}, 5},
      {"adagrad", {.name = "adagrad"}, 5},
      {"rmsprop", {.name = "rmsprop"}, 5},
      {"adam", {.name = "adam"}, 7},
      {"adamw", {.name = "adamw"}, 7},
      {"adam_chain", {.name = "adam", .fused = false}, 7},
  };
  std::string out = "{\"impl\": \"descent\", \"n\": " + std::to_string(n) + ", \"threads\": " +
                    std::to_string(num_threads()) + ", \"triad_gbs\": " + std::to_string(triad_gbs) + ", \"steps\": {";
  bool first = true;
  for (const Case& cs : cases) {
    auto opt = optim::make_optimizer(cs.spec, optim::constant(1e-3));
    std::int64_t k = 0;
    const double s = time_it(
        [&] {
          opt->prepare(arena, k);
          opt->step(arena, k);
          ++k;
        },
        reps);
    const double gbs = cs.arrays * 4.0 * static_cast<double>(n) / s / 1e9;
    char buf[256];
    std::snprintf(buf, sizeof buf, "%s\"%s\": {\"ms\": %.3f, \"gbs\": %.2f, \"of_triad\": %.3f}", first ? "" : ", ",
                  cs.label, s * 1e3, gbs, gbs / triad_gbs);
    out += buf;
    first = false;
  }
  out += "}}";
  std::puts(out.c_str());
  return 0;
}
