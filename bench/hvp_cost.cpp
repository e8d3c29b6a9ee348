// The cost of one exact Hessian-vector product as a multiple of one gradient, on the MLP
// 784-256-256-10 (ReLU, softmax cross-entropy) at batch 1000. Both include the forward
// pass, as a fresh Hv at a new point would. Hv alone (hvp without param_grads: the
// parameter-gradient products skipped) and Hv with the gradient returned too are timed;
// the three alternate within each repetition, so a slow spell of a loaded machine hits all
// of them. The multiply-adds of each (counted from the layer sizes, docs/performance.md)
// are printed beside the times. Prints one JSON line; bench/hvp.sh runs the PyTorch peer
// (double backward) in the same run and prints the ratios side by side.
//   hvp_cost [--batch N] [--reps N] [--threads N]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
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

// The medians of fs' times, the fs run in turn within each of `reps` rounds (one warm-up round).
std::vector<double> time_alternating(const std::vector<std::function<void()>>& fs, int reps) {
  std::vector<std::vector<double>> t(fs.size());
  for (int r = -1; r < reps; ++r) {
    for (std::size_t k = 0; k < fs.size(); ++k) {
      auto t0 = std::chrono::steady_clock::now();
      fs[k]();
      if (r >= 0) t[k].push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
  }
  std::vector<double> out;
  for (auto& v : t) out.push_back(median(v));
  return out;
}

// Multiply-adds per example of an MLP with layer sizes n_0..n_L whose input is data (no
// tangent, no gradient wanted): the gradient, Hv alone and Hv with the gradient, each with
// its forward pass. A layer l (n_{l-1} -> n_l, m = n_{l-1} n_l) costs m in the forward pass;
// the backward pass m for gW and m for gx (not for the first layer: x is data); the
// R-forward y' = x' W^T + x W'^T m or 2m (x' = 0 at the first layer); the R-backward
// R(gx) = R(gy) W + gy W' 2m (none at the first layer) and R(gW) = R(gy)^T x + gy^T x' m
// or 2m. Hv alone drops gW. The element-wise work is not counted.
struct Macs {
  double grad = 0, hvp = 0, hvp_with_grad = 0;
};
Macs count_macs(const std::vector<std::int64_t>& sizes) {
  Macs c;
  for (std::size_t l = 1; l < sizes.size(); ++l) {
    const double m = static_cast<double>(sizes[l - 1]) * static_cast<double>(sizes[l]);
    const bool first = l == 1;
    const double forward = m, grad_w = m, grad_x = first ? 0 : m;
    const double r_forward = first ? m : 2 * m, r_grad_x = first ? 0 : 2 * m, r_grad_w = first ? m : 2 * m;
    c.grad += forward + grad_w + grad_x;
    c.hvp += forward + grad_x + r_forward + r_grad_x + r_grad_w;
    c.hvp_with_grad += forward + grad_w + grad_x + r_forward + r_grad_x + r_grad_w;
  }
  return c;
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

  // Gradient, Hv alone, Hv with the gradient: each from a fresh forward pass.
  const std::vector<double> t = time_alternating(
      {[&] {
         autodiff::Tape tape;
         arena.zero_grad();
         tape.backward(loss::cross_entropy(net.forward(tape, tape.constant(x)), labels));
       },
       [&] {
         autodiff::Tape tape;
         tape.hvp(loss::cross_entropy(net.forward(tape, tape.constant(x)), labels), v, hv);
       },
       [&] {
         autodiff::Tape tape;
         tape.hvp(loss::cross_entropy(net.forward(tape, tape.constant(x)), labels), v, hv, arena.grads());
       }},
      reps);
  const double grad_s = t[0], hvp_s = t[1], hvp_with_grad_s = t[2];
  // Many products at one point (Lanczos, CG): the forward pass is recorded once.
  autodiff::Tape kept;
  autodiff::Var loss = loss::cross_entropy(net.forward(kept, kept.constant(x)), labels);
  const double hvp_reuse_s = time_it([&] { kept.hvp(loss, v, hv); }, reps);
  // ... and its gradient sweep too (HessianOperator): the tangent sweeps alone.
  const double hvp_at_gradient_s = time_it([&] { kept.hvp_at_gradient(loss, v, hv); }, reps);
  const Macs macs = count_macs({784, 256, 256, 10});
  std::printf("{\"impl\": \"descent\", \"batch\": %lld, \"threads\": %d, \"grad_ms\": %.3f, \"hvp_ms\": %.3f, "
              "\"hvp_with_grad_ms\": %.3f, \"hvp_reuse_ms\": %.3f, \"hvp_at_gradient_ms\": %.3f, "
              "\"hvp_over_grad\": %.3f, \"hvp_with_grad_over_grad\": %.3f, \"hvp_reuse_over_grad\": %.3f, "
              "\"hvp_at_gradient_over_grad\": %.3f, \"macs_hvp_over_grad\": %.3f, \"macs_hvp_with_grad_over_grad\": %.3f, "
              "\"grad_gflops\": %.1f, \"hvp_gflops\": %.1f, \"hvp_with_grad_gflops\": %.1f}\n",
              static_cast<long long>(batch), num_threads(), grad_s * 1e3, hvp_s * 1e3, hvp_with_grad_s * 1e3,
              hvp_reuse_s * 1e3, hvp_at_gradient_s * 1e3, hvp_s / grad_s, hvp_with_grad_s / grad_s, hvp_reuse_s / grad_s,
              hvp_at_gradient_s / grad_s, macs.hvp / macs.grad, macs.hvp_with_grad / macs.grad,
              2e-9 * macs.grad * static_cast<double>(batch) / grad_s, 2e-9 * macs.hvp * static_cast<double>(batch) / hvp_s,
              2e-9 * macs.hvp_with_grad * static_cast<double>(batch) / hvp_with_grad_s);
  return 0;
}
