// The cost of one exact Hessian-vector product as a multiple of one gradient, on the MLP
// 784-256-256-10 (ReLU, softmax cross-entropy) at batch 1000. Both include the forward
// pass, as a fresh Hv at a new point would. Prints one JSON line; bench/hvp.sh runs the
// PyTorch peer (double backward) in the same run and prints the ratios side by side.
//   hvp_cost [--batch N] [--reps N] [--threads N]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "descent/init/rng.hpp"
#include "descent/loss/loss.hpp"
#include "descent/nn/module.hpp"
#include "descent/tensor/parallel.hpp"

using namespace descent;

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

template <class F>
double time_it(F&& f, int reps) {
  f();  // warm-up: caches, allocator, thread pool
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    f();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return median(t);
}

void fill(const Tensor& t, Rng& rng, double scale) {
  float* p = t.data<float>();
  for (std::int64_t i = 0; i < t.numel(); ++i) p[i] = static_cast<float>(scale * rng.normal());
}

}  // namespace

int main(int argc, char** argv) {
  std::int64_t batch = 1000;
  int reps = 20;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--batch")) batch = std::atoll(argv[i + 1]);
    if (!std::strcmp(argv[i], "--reps")) reps = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--threads")) set_num_threads(std::atoi(argv[i + 1]));
  }
  ParameterArena arena(DType::f32);
  nn::Sequential net = nn::mlp(arena, {784, 256, 256, 10});
  Rng rng(1);
  fill(arena.values(), rng, 0.05);
  Tensor x = Tensor::empty({batch, 784}, DType::f32);
  fill(x, rng, 1.0);
  std::vector<std::int32_t> y(static_cast<std::size_t>(batch));
  for (auto& label : y) label = static_cast<std::int32_t>(rng.below(10));
  Tensor labels = Tensor::from<std::int32_t>({batch}, y);
  Tensor v = Tensor::empty({arena.size()}, DType::f32);
  fill(v, rng, 1.0);
  Tensor hv = Tensor::empty({arena.size()}, DType::f32);

  const double grad_s = time_it(
      [&] {
        autodiff::Tape tape;
        arena.zero_grad();
        tape.backward(loss::cross_entropy(net.forward(tape, tape.constant(x)), labels));
      },
      reps);
  const double hvp_s = time_it(
      [&] {
        autodiff::Tape tape;
        tape.hvp(loss::cross_entropy(net.forward(tape, tape.constant(x)), labels), v, hv, arena.grads());
      },
      reps);
  // Many products at one point (Lanczos, CG): the forward pass is recorded once.
  autodiff::Tape kept;
  autodiff::Var loss = loss::cross_entropy(net.forward(kept, kept.constant(x)), labels);
  const double hvp_reuse_s = time_it([&] { kept.hvp(loss, v, hv, arena.grads()); }, reps);
  // ... and its gradient sweep too (HessianOperator): the tangent sweeps alone.
  const double hvp_at_gradient_s = time_it([&] { kept.hvp_at_gradient(loss, v, hv); }, reps);
  std::printf("{\"impl\": \"descent\", \"batch\": %lld, \"threads\": %d, \"grad_ms\": %.3f, \"hvp_ms\": %.3f, "
              "\"hvp_reuse_ms\": %.3f, \"hvp_at_gradient_ms\": %.3f, \"hvp_over_grad\": %.3f, \"hvp_reuse_over_grad\": %.3f, "
              "\"hvp_at_gradient_over_grad\": %.3f}\n",
              static_cast<long long>(batch), num_threads(), grad_s * 1e3, hvp_s * 1e3, hvp_reuse_s * 1e3,
              hvp_at_gradient_s * 1e3, hvp_s / grad_s, hvp_reuse_s / grad_s, hvp_at_gradient_s / grad_s);
  return 0;
}
