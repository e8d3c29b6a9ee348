// The per-update cost of the trajectory length (train::Trajectory::on_step: ||theta_{k+1} -
// theta_k|| and theta_k <- theta_{k+1} in one pass over the parameters) on the default MLP
// 784-256-256-10, against one batch-128 gradient step (forward + backward) for scale. The
// pass before (the serial double-accumulated loop on_step had) and after
// (kernels::squared_distance: 8 double lanes per fixed block) are timed alternately in one
// run, so that a loaded machine hits both alike. Prints one JSON line.
//   trajectory_step [--reps N] [--threads N]
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "bench_options.hpp"
#include "descent/init/rng.hpp"
#include "descent/loss/loss.hpp"
#include "descent/nn/module.hpp"
#include "descent/tensor/kernels.hpp"
#include "descent/tensor/parallel.hpp"

using namespace descent;

namespace {

// The pass as on_step had it before: one double accumulator, element by element.
double serial_distance_and_copy(const float* a, float* b, std::size_t n) {
  double s = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(a[i]) - static_cast<double>(b[i]);
    s += d * d;
    b[i] = a[i];
  }
  return std::sqrt(s);
}

}  // namespace

int main(int argc, char** argv) {
  int reps = 2000, threads = 2;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--reps")) reps = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--threads")) threads = std::atoi(argv[i + 1]);
    else {
      std::fprintf(stderr, "trajectory_step: unknown option %s\n", argv[i]);
      return 2;
    }
  }
  set_num_threads(threads);
  ParameterArena arena(DType::f32);
  nn::Sequential net = nn::mlp(arena, {784, 256, 256, 10});
  Rng rng(1);
  float* w = arena.values().data<float>();
  for (std::int64_t i = 0; i < arena.size(); ++i) w[i] = static_cast<float>(0.05 * rng.normal());
  const auto n = static_cast<std::size_t>(arena.size());
  std::vector<float> previous(w, w + n);
  // Each repetition moves the parameters a little first, as an update would.
  auto nudge = [&](int r) {
    for (std::size_t i = 0; i < n; i += 97) w[i] += 1e-4f * static_cast<float>(r % 7 - 3);
  };
  std::vector<double> before, after;
  double sink = 0.0;
  for (int r = 0; r < reps; ++r) {
    nudge(r);
    auto t0 = bench::Clock::now();
    sink += serial_distance_and_copy(w, previous.data(), n);
    before.push_back(bench::seconds(t0, bench::Clock::now()));
    nudge(r + 1);
    t0 = bench::Clock::now();
    sink += std::sqrt(kernels::squared_distance(w, previous.data(), static_cast<std::int64_t>(n), previous.data()));
    after.push_back(bench::seconds(t0, bench::Clock::now()));
  }
  // One gradient step at batch 128 for scale.
  Tensor x = Tensor::empty({128, 784}, DType::f32);
  for (float& e : x.span<float>()) e = static_cast<float>(rng.normal());
  std::vector<std::int32_t> y(128);
  for (auto& label : y) label = static_cast<std::int32_t>(rng.below(10));
  const Tensor labels = Tensor::from<std::int32_t>({128}, y);
  std::vector<double> step;
  for (int r = 0; r < 50; ++r) {
    const auto t0 = bench::Clock::now();
    autodiff::Tape tape;
    arena.zero_grad();
    tape.backward(loss::cross_entropy(net.forward(tape, tape.constant(x)), labels));
    step.push_back(bench::seconds(t0, bench::Clock::now()));
  }
  const double b = bench::median(before) * 1e3, a = bench::median(after) * 1e3, s = bench::median(step) * 1e3;
  std::printf("{\"parameters\": %zu, \"threads\": %d, \"reps\": %d, \"serial_ms\": %.4f, \"vectorized_ms\": %.4f, "
              "\"speedup\": %.2f, \"gradient_step_ms\": %.3f, \"serial_share\": %.4f, \"vectorized_share\": %.4f, \"check\": %.3g}\n",
              n, num_threads(), reps, b, a, b / a, s, b / (s + b), a / (s + a), sink);
  return 0;
}
