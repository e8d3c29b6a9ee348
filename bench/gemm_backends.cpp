// The float32 matrix products of the training benchmarks' steps through each library that
// kernels::gemm can use (OpenBLAS's cblas_sgemm, oneDNN's dnnl_sgemm, oneDNN's matmul
// primitive, descent's own AVX-512 kernel where the CPU has AVX-512F), shape by shape: the figures behind kernels::gemm_choice's rule
// (docs/performance.md). Prints one JSON line per shape: GFLOP/s of each library (the median
// of --reps timings of a batch of calls, the four alternated), the ratios to OpenBLAS, of
// the primitive and of descent's kernel to dnnl_sgemm (descent_over_onednn), the primitive's
// implementation, the library the automatic rule picks, and the largest relative differences
// of dnnl_sgemm's and descent's results from OpenBLAS's (rounding only). For the forward
// products (x w^T) also kernels::linear three ways, with a bias and with a bias and ReLU:
// dnnl_sgemm after the bias rows, then the ReLU pass (bias_unfused_gflops,
// bias_relu_unfused_gflops), one matmul primitive with the bias and ReLU in it
// (bias_primitive_gflops, bias_relu_primitive_gflops), and descent's kernel with the bias
// and ReLU in its stores (bias_descent_gflops, bias_relu_descent_gflops; the same result bit
// for bit as that kernel after the bias rows, then the ReLU pass), and whether the automatic
// linear runs on descent's kernel (linear_on_descent: kernels::descent_linear).
//
//   gemm_backends [--threads 2] [--reps 7]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <tuple>
#include <vector>

#include "descent/tensor/kernels.hpp"
#include "descent/tensor/parallel.hpp"

using namespace descent;

namespace {

struct GemmShape {
  const char* what;
  bool ta, tb;
  std::int64_t m, n, k;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 2, reps = 7;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--threads")) threads = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--reps")) reps = std::atoi(argv[i + 1]);
  }
  set_num_threads(threads);
  std::vector<GemmShape> shapes;
  for (std::int64_t b : {32, 64, 128, 512}) {
    // MLP 784-256-256-10: forward x W^T, backward gW = gy^T x, gx = gy W
    shapes.push_back({"mlp fwd 784->256", false, true, b, 256, 784});
    shapes.push_back({"mlp fwd 256->256", false, true, b, 256, 256});
    shapes.push_back({"mlp fwd 256->10", false, true, b, 10, 256});
    shapes.push_back({"mlp gW 256x784", true, false, 256, 784, b});
    shapes.push_back({"mlp gW 256x256", true, false, 256, 256, b});
    shapes.push_back({"mlp gW 10x256", true, false, 10, 256, b});
    shapes.push_back({"mlp gx 256<-256", false, false, b, 256, 256});
    shapes.push_back({"mlp gx 256<-10", false, false, b, 256, 10});
  }
  // LSTM(128) over 28 inputs, batch 128: the gates' input and recurrent products
  shapes.push_back({"lstm gates x", false, true, 128, 512, 28});
  shapes.push_back({"lstm gates h", false, true, 128, 512, 128});
  shapes.push_back({"lstm gates [x h]", false, true, 128, 512, 156});  // steps t >= 1: one product
  shapes.push_back({"lstm gx h", false, false, 128, 128, 512});
  shapes.push_back({"lstm gW h", true, false, 512, 128, 128});
  shapes.push_back({"square 2048", false, false, 2048, 2048, 2048});
  if (!kernels::gemm_backend_has_onednn()) {
    std::printf("{\"status\": \"descent was built without oneDNN\"}\n");
    return 0;
  }
  for (const GemmShape& s : shapes) {
    const std::int64_t ar = s.ta ? s.k : s.m, ac = s.ta ? s.m : s.k, br = s.tb ? s.n : s.k, bc = s.tb ? s.k : s.n;
    Tensor a = Tensor::empty({ar, ac}, DType::f32), b = Tensor::empty({br, bc}, DType::f32);
    for (std::int64_t i = 0; i < a.numel(); ++i) a.data<float>()[i] = std::sin(0.37f * static_cast<float>(i));
    for (std::int64_t i = 0; i < b.numel(); ++i) b.data<float>()[i] = std::cos(0.11f * static_cast<float>(i));
    Tensor c1 = Tensor::zeros({s.m, s.n}, DType::f32), c2 = Tensor::zeros({s.m, s.n}, DType::f32);
    const double flops = 2.0 * static_cast<double>(s.m * s.n * s.k);
    const int calls = std::max<int>(1, static_cast<int>(2e8 / flops));
    Tensor c3 = Tensor::zeros({s.m, s.n}, DType::f32), c4 = Tensor::zeros({s.m, s.n}, DType::f32);
    const bool with_descent = kernels::gemm_backend_has_descent();
    std::vector<double> t_blas, t_dnnl, t_prim, t_desc;
    for (int r = 0; r < reps + 1; ++r) {
      for (auto [backend, into, c] : {std::tuple{kernels::GemmBackend::openblas, &t_blas, &c1},
                                      std::tuple{kernels::GemmBackend::onednn, &t_dnnl, &c2},
                                      std::tuple{kernels::GemmBackend::onednn_matmul, &t_prim, &c3},
                                      std::tuple{kernels::GemmBackend::descent, &t_desc, &c4}}) {
        if (backend == kernels::GemmBackend::descent && !with_descent) continue;
        kernels::set_gemm_backend(backend);
        const auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < calls; ++i) kernels::gemm(a, s.ta, b, s.tb, *c);
        const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (r > 0) into->push_back(sec / calls);
      }
    }
    // The forward's linear (x [m, k], w [n, k], bias), without and with ReLU: separate steps
    // (bias rows, dnnl_sgemm, ReLU pass) against one primitive, alternated
    double unfused_gflops[2] = {0, 0}, fused_gflops[2] = {0, 0}, descent_linear_gflops[2] = {0, 0};
    if (!s.ta && s.tb) {
      Tensor bias = Tensor::empty({s.n}, DType::f32);
      for (std::int64_t i = 0; i < s.n; ++i) bias.data<float>()[i] = 0.01f * static_cast<float>(i % 50) - 0.25f;
      for (int relu = 0; relu < 2; ++relu) {
        std::vector<double> t_unfused, t_fused, t_descent;
        for (int r = 0; r < reps + 1; ++r) {
          for (auto [backend, into] : {std::tuple{kernels::GemmBackend::onednn, &t_unfused},
                                       std::tuple{kernels::GemmBackend::onednn_matmul, &t_fused},
                                       std::tuple{kernels::GemmBackend::descent, &t_descent}}) {
            if (backend == kernels::GemmBackend::descent && !with_descent) continue;
            kernels::set_gemm_backend(backend);
            const auto t0 = std::chrono::steady_clock::now();
            for (int i = 0; i < calls; ++i) kernels::linear(a, b, bias, c3, relu == 1);
            const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            if (r > 0) into->push_back(sec / calls);
          }
        }
        unfused_gflops[relu] = flops / median(t_unfused) / 1e9;
        fused_gflops[relu] = flops / median(t_fused) / 1e9;
        if (with_descent) descent_linear_gflops[relu] = flops / median(t_descent) / 1e9;
      }
    }
    kernels::set_gemm_backend(kernels::GemmBackend::automatic);
    // The automatic library with all threads against one thread (kernels::set_gemm_serial_below),
    // alternated: the figures behind gemm_serial_below_default.
    std::vector<double> t_all, t_one;
    for (int r = 0; r < reps + 1; ++r) {
      for (auto [below, into] : {std::tuple{std::int64_t{0}, &t_all}, std::tuple{INT64_MAX, &t_one}}) {
        kernels::set_gemm_serial_below(below);
        const auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < calls; ++i) kernels::gemm(a, s.ta, b, s.tb, c1);
        const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (r > 0) into->push_back(sec / calls);
      }
    }
    kernels::set_gemm_serial_below(kernels::gemm_serial_below_default);
    kernels::set_gemm_backend(kernels::GemmBackend::openblas);
    kernels::gemm(a, s.ta, b, s.tb, c1);  // c1 is OpenBLAS's result again
    kernels::set_gemm_backend(kernels::GemmBackend::automatic);
    double diff = 0, diff_descent = 0;
    for (std::int64_t i = 0; i < c1.numel(); ++i) {
      const double x = c1.data<float>()[i], y = c2.data<float>()[i], z = c4.data<float>()[i];
      diff = std::max(diff, std::abs(x - y) / std::max(1.0, std::abs(x)));
      if (with_descent) diff_descent = std::max(diff_descent, std::abs(x - z) / std::max(1.0, std::abs(x)));
    }
    const double gdesc = with_descent ? flops / median(t_desc) / 1e9 : 0.0;
    const double gb = flops / median(t_blas) / 1e9, gd = flops / median(t_dnnl) / 1e9, gp = flops / median(t_prim) / 1e9;
    const std::string impl = kernels::gemm_matmul_implementation(s.ta, s.tb, s.m, s.n, s.k);
    const kernels::GemmBackend choice = kernels::gemm_choice(s.ta, s.tb, s.m, s.n, s.k);
    const char* pick = choice == kernels::GemmBackend::onednn    ? "onednn"
                       : choice == kernels::GemmBackend::descent ? "descent"
                                                                 : "openblas";
    std::printf("{\"shape\": \"%s\", \"ta\": %d, \"tb\": %d, \"m\": %lld, \"n\": %lld, \"k\": %lld, \"threads\": %d, "
                "\"openblas_gflops\": %.1f, \"onednn_gflops\": %.1f, \"onednn_over_openblas\": %.2f, \"automatic\": \"%s\", "
                "\"max_rel_diff\": %.2g, \"descent_gflops\": %.1f, \"descent_over_onednn\": %.2f, \"descent_max_rel_diff\": %.2g, "
                "\"automatic_all_threads_gflops\": %.1f, \"automatic_one_thread_gflops\": %.1f, "
                "\"serial_by_default\": %s, \"onednn_matmul_gflops\": %.1f, \"matmul_over_sgemm\": %.2f, "
                "\"matmul_impl\": \"%s\", \"bias_unfused_gflops\": %.1f, \"bias_primitive_gflops\": %.1f, "
                "\"bias_fused_over_unfused\": %.2f, \"bias_relu_unfused_gflops\": %.1f, \"bias_relu_primitive_gflops\": %.1f, "
                "\"bias_relu_fused_over_unfused\": %.2f, \"bias_descent_gflops\": %.1f, \"bias_relu_descent_gflops\": %.1f, "
                "\"linear_on_descent\": %s}\n",
                s.what, s.ta, s.tb, static_cast<long long>(s.m), static_cast<long long>(s.n), static_cast<long long>(s.k),
                threads, gb, gd, gd / gb, pick, diff, gdesc, gdesc / gd, diff_descent, flops / median(t_all) / 1e9,
                flops / median(t_one) / 1e9, s.m * s.n * s.k < kernels::gemm_serial_below_default ? "true" : "false", gp,
                gp / gd, impl.c_str(), unfused_gflops[0], fused_gflops[0],
                unfused_gflops[0] > 0 ? fused_gflops[0] / unfused_gflops[0] : 0.0, unfused_gflops[1], fused_gflops[1],
                unfused_gflops[1] > 0 ? fused_gflops[1] / unfused_gflops[1] : 0.0, descent_linear_gflops[0],
                descent_linear_gflops[1],
                !s.ta && s.tb && kernels::descent_linear(s.m, s.n, s.k) ? "true" : "false");
    std::fflush(stdout);
  }
  return 0;
}
