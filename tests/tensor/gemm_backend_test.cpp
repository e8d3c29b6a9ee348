// kernels::gemm's float32 backends (OpenBLAS, oneDNN's sgemm, oneDNN's matmul primitive,
// descent's AVX-512 kernel where the CPU has it, the automatic per-shape rule) against a product computed here in double from the definition,
// and against each other: a training run forced through each library ends with the same
// parameters to rounding. kernels::linear (the dense layer's forward with its bias and ReLU,
// one primitive where kernels::fused_linear) against the same sums in double.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "descent/autodiff/tape.hpp"
#include "descent/nn/initialize.hpp"
#include "descent/nn/module.hpp"
#include "descent/optim/optimizer.hpp"
#include "descent/tensor/arena.hpp"
#include "descent/tensor/kernels.hpp"
#include "descent/train/step.hpp"
#include "support/linear_reference.hpp"

namespace descent {
namespace {

using kernels::GemmBackend;

// Restores the automatic backend when a test ends, even a failed one.
struct BackendGuard {
  ~BackendGuard() { kernels::set_gemm_backend(GemmBackend::automatic); }
};

using testing::wave;

// C = alpha op(A) op(B) + beta C0 through the library, checked element by element against
// the sum in double; the bound is k float roundings of the terms' absolute sum.
void expect_product(GemmBackend backend, bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k) {
  Tensor a = ta ? Tensor::empty({k, m}, DType::f32) : Tensor::empty({m, k}, DType::f32);
  Tensor b = tb ? Tensor::empty({n, k}, DType::f32) : Tensor::empty({k, n}, DType::f32);
  Tensor c = Tensor::empty({m, n}, DType::f32);
  for (std::int64_t i = 0; i < a.numel(); ++i) a.data<float>()[i] = wave(i, 0.37f);
  for (std::int64_t i = 0; i < b.numel(); ++i) b.data<float>()[i] = wave(i, 0.11f);
  for (std::int64_t i = 0; i < c.numel(); ++i) c.data<float>()[i] = wave(i, 0.23f);
  std::vector<float> c0(c.data<float>(), c.data<float>() + c.numel());
  const double alpha = 0.75, beta = -0.5;
  kernels::set_gemm_backend(backend);
  kernels::gemm(a, ta, b, tb, c, alpha, beta);
  const float* pa = a.data<float>();
  const float* pb = b.data<float>();
  for (std::int64_t i = 0; i < m; ++i) {
    for (std::int64_t j = 0; j < n; ++j) {
      double s = 0, abs_sum = 0;
      for (std::int64_t p = 0; p < k; ++p) {
        const double x = ta ? pa[p * m + i] : pa[i * k + p];
        const double y = tb ? pb[j * k + p] : pb[p * n + j];
        s += x * y;
        abs_sum += std::abs(x * y);
      }
      const double want = alpha * s + beta * c0[static_cast<std::size_t>(i * n + j)];
      const double tol = 2e-7 * static_cast<double>(k + 2) * (std::abs(alpha) * abs_sum + std::abs(beta) + 1.0);
      ASSERT_NEAR(c.data<float>()[i * n + j], want, tol)
          << "backend " << static_cast<int>(backend) << " ta " << ta << " tb " << tb << " at " << i << "," << j;
    }
  }
}

// Every backend this build has: OpenBLAS and automatic always, oneDNN's two with libdnnl-dev,
// descent's own kernel on an AVX-512 CPU.
std::vector<GemmBackend> built_backends() {
  std::vector<GemmBackend> backends = {GemmBackend::openblas, GemmBackend::automatic};
  if (kernels::gemm_backend_has_onednn()) {
    backends.push_back(GemmBackend::onednn);
    backends.push_back(GemmBackend::onednn_matmul);
  }
  if (kernels::gemm_backend_has_descent()) backends.push_back(GemmBackend::descent);
  return backends;
}

TEST(GemmBackend, EachLibraryMatchesTheProductInDouble) {
  BackendGuard guard;
  const std::vector<GemmBackend> backends = built_backends();
  // odd sizes, and the MLP's shapes at a small batch (forward, weight and input gradients)
  const std::vector<std::array<std::int64_t, 3>> shapes = {{7, 5, 3}, {37, 53, 61}, {16, 256, 784}, {256, 784, 16},
                                                           {16, 784, 256}, {1, 10, 256}};
  for (GemmBackend backend : backends) {
    for (bool ta : {false, true}) {
      for (bool tb : {false, true}) {
        for (const auto& s : shapes) expect_product(backend, ta, tb, s[0], s[1], s[2]);
      }
    }
  }
}

TEST(GemmBackend, RawFormHonoursLeadingDimensions) {
  // A 3x2 block of a 3x4 array times a 2x2 block of a 2x3 array, into a 3x2 block of a 3x5 array.
  BackendGuard guard;
  std::vector<GemmBackend> backends = {GemmBackend::openblas};
  if (kernels::gemm_backend_has_onednn()) {
    backends.push_back(GemmBackend::onednn);
    backends.push_back(GemmBackend::onednn_matmul);
  }
  if (kernels::gemm_backend_has_descent()) backends.push_back(GemmBackend::descent);
  for (GemmBackend backend : backends) {
    kernels::set_gemm_backend(backend);
    const std::vector<float> a = {1, 2, 9, 9, 3, 4, 9, 9, 5, 6, 9, 9};
    const std::vector<float> b = {1, 0, 9, 0, 1, 9};
    std::vector<float> c(15, -1.0f);
    kernels::gemm_raw<float>(false, false, 3, 2, 2, 1.0f, a.data(), 4, b.data(), 3, 0.0f, c.data(), 5);
    const std::vector<float> want = {1, 2, -1, -1, -1, 3, 4, -1, -1, -1, 5, 6, -1, -1, -1};
    EXPECT_EQ(c, want) << "backend " << static_cast<int>(backend);
  }
}

TEST(GemmBackend, AutomaticChoiceIsOneDnnOrDescentExactlyOnAvx512CpusWithOneDnn) {
  // The rule of docs/performance.md (sessions 11 and 12), from the CPU's flags read here
  // independently: OpenBLAS without oneDNN or AVX-512; else descent's kernel on the MLP's
  // forward at batch 32 and 64 and on the products beside its 10-wide layer, oneDNN otherwise.
  __builtin_cpu_init();
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  const bool dnnl = kernels::gemm_backend_has_onednn() && avx512;
  const GemmBackend own = dnnl ? GemmBackend::descent : GemmBackend::openblas;
  const GemmBackend lib = dnnl ? GemmBackend::onednn : GemmBackend::openblas;
  for (int r = 0; r < 3; ++r) {
    for (std::int64_t b : {1, 32, 64}) {
      EXPECT_EQ(kernels::gemm_choice(false, true, b, 256, 784), own) << b;
      EXPECT_EQ(kernels::gemm_choice(false, true, b, 256, 256), own) << b;
    }
    for (std::int64_t b : {128, 512}) {
      EXPECT_EQ(kernels::gemm_choice(false, true, b, 256, 784), lib) << b;
      EXPECT_EQ(kernels::gemm_choice(false, false, b, 256, 10), lib) << b;
    }
    for (std::int64_t b : {32, 128, 512}) {
      EXPECT_EQ(kernels::gemm_choice(false, true, b, 10, 256), own) << b;
      EXPECT_EQ(kernels::gemm_choice(true, false, 10, 256, b), own) << b;
      EXPECT_EQ(kernels::gemm_choice(true, false, 256, 784, b), lib) << b;
      EXPECT_EQ(kernels::gemm_choice(true, false, 256, 256, b), lib) << b;
      EXPECT_EQ(kernels::gemm_choice(false, false, b, 256, 256), lib) << b;
    }
    EXPECT_EQ(kernels::gemm_choice(false, false, 32, 256, 10), own);
    EXPECT_EQ(kernels::gemm_choice(false, true, 32, 256, 128), lib) << "k < 256";
    EXPECT_EQ(kernels::gemm_choice(false, true, 128, 512, 28), lib) << "the LSTM's input product";
    EXPECT_EQ(kernels::gemm_choice(false, true, 128, 2048, 512), lib) << "an LSTM(512)'s gates: not measured";
    EXPECT_EQ(kernels::gemm_choice(false, true, 64, 4096, 512), lib) << "wider than measured";
  }
  EXPECT_EQ(kernels::gemm_choice(false, false, 2048, 2048, 2048), lib);
}

// y = act(x w^T + b) through kernels::linear, each element against the sum in double (bound
// as expect_product's); with ReLU a negative sum further than the bound from 0 must give
// exactly 0.
void expect_linear(GemmBackend backend, std::int64_t m, std::int64_t n, std::int64_t k, bool bias, bool relu) {
  const testing::LinearInputs in = testing::linear_inputs(m, n, k, bias);
  Tensor y = Tensor::full({m, n}, DType::f32, 7.0);  // overwritten, never read
  kernels::set_gemm_backend(backend);
  kernels::linear(in.x, in.w, in.b, y, relu);
  for (std::int64_t i = 0; i < m; ++i) {
    for (std::int64_t j = 0; j < n; ++j) {
      const testing::DoubleSum ref = testing::linear_in_double(in, i, j);
      const double s = ref.sum, tol = 2e-7 * static_cast<double>(k + 2) * (ref.abs_sum + 1.0);
      const float got = y.data<float>()[i * n + j];
      const std::string where = "backend " + std::to_string(static_cast<int>(backend)) + " " + std::to_string(m) + "x" +
                                std::to_string(n) + "x" + std::to_string(k) + " bias " + std::to_string(bias) +
                                " relu " + std::to_string(relu) + " at " + std::to_string(i) + "," + std::to_string(j);
      if (relu && s < -tol) {
        ASSERT_EQ(got, 0.0f) << where;
      } else {
        ASSERT_NEAR(got, relu ? std::max(s, 0.0) : s, tol) << where;
      }
    }
  }
}

TEST(GemmBackend, LinearWithBiasAndReluMatchesTheSumsInDouble) {
  BackendGuard guard;
  const std::vector<GemmBackend> backends = built_backends();
  // small and odd shapes, and the MLP's layers at batches on both sides of the automatic rule
  const std::vector<std::array<std::int64_t, 3>> shapes = {{1, 1, 1},    {7, 5, 3},    {37, 53, 61},
                                                           {32, 256, 784}, {64, 10, 256}, {130, 256, 256}};
  for (GemmBackend backend : backends) {
    for (const auto& s : shapes) {
      for (bool bias : {false, true}) {
        for (bool relu : {false, true}) {
          expect_linear(backend, s[0], s[1], s[2], bias, relu);
          if (::testing::Test::HasFatalFailure()) return;
        }
      }
    }
  }
}

TEST(GemmBackend, LinearUnfusedIsTheBiasRowsThenGemmThenReluBitForBit) {
  // Where kernels::fused_linear is false (here: dnnl_sgemm or OpenBLAS), linear is exactly
  // what the linear and relu nodes computed before: bias rows, gemm with beta 1, max(., 0).
  BackendGuard guard;
  const std::int64_t m = 130, n = 40, k = 70;
  Tensor x = Tensor::empty({m, k}, DType::f32), w = Tensor::empty({n, k}, DType::f32), b = Tensor::empty({n}, DType::f32);
  for (std::int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = wave(i, 0.37f);
  for (std::int64_t i = 0; i < w.numel(); ++i) w.data<float>()[i] = wave(i, 0.11f);
  for (std::int64_t i = 0; i < n; ++i) b.data<float>()[i] = wave(i, 0.7f);
  std::vector<GemmBackend> backends = {GemmBackend::openblas};
  if (kernels::gemm_backend_has_onednn()) backends.push_back(GemmBackend::onednn);
  for (GemmBackend backend : backends) {
    kernels::set_gemm_backend(backend);
    EXPECT_FALSE(kernels::fused_linear(DType::f32, m, n));
    Tensor want = Tensor::empty({m, n}, DType::f32), got = Tensor::empty({m, n}, DType::f32);
    for (std::int64_t r = 0; r < m; ++r) {
      for (std::int64_t j = 0; j < n; ++j) want.data<float>()[r * n + j] = b.data<float>()[j];
    }
    kernels::gemm(x, false, w, true, want, 1.0, 1.0);
    for (std::int64_t i = 0; i < want.numel(); ++i) want.data<float>()[i] = std::max(want.data<float>()[i], 0.0f);
    kernels::linear(x, w, b, got, true);
    EXPECT_EQ(std::vector<float>(got.data<float>(), got.data<float>() + got.numel()),
              std::vector<float>(want.data<float>(), want.data<float>() + want.numel()))
        << "backend " << static_cast<int>(backend);
  }
}

TEST(GemmBackend, FusedLinearRule) {
  // the rule of docs/performance.md (session 11), from the CPU's flags read here independently
  BackendGuard guard;
  __builtin_cpu_init();
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  const bool dnnl = kernels::gemm_backend_has_onednn();
  kernels::set_gemm_backend(GemmBackend::automatic);
  EXPECT_EQ(kernels::fused_linear(DType::f32, 128, 10), dnnl && avx512);
  EXPECT_EQ(kernels::fused_linear(DType::f32, 512, 256), dnnl && avx512);
  EXPECT_EQ(kernels::fused_linear(DType::f32, 64, 256), dnnl && avx512);
  EXPECT_FALSE(kernels::fused_linear(DType::f32, 64, 10));
  EXPECT_FALSE(kernels::fused_linear(DType::f32, 32, 256));
  EXPECT_FALSE(kernels::fused_linear(DType::f64, 512, 256));
  kernels::set_deterministic_products(true);
  EXPECT_FALSE(kernels::fused_linear(DType::f32, 512, 256)) << "deterministic products keep their tiles";
  kernels::set_deterministic_products(false);
  kernels::set_gemm_backend(GemmBackend::onednn_matmul);
  EXPECT_EQ(kernels::fused_linear(DType::f32, 32, 10), dnnl);
  for (GemmBackend b : {GemmBackend::onednn, GemmBackend::openblas}) {
    kernels::set_gemm_backend(b);
    EXPECT_FALSE(kernels::fused_linear(DType::f32, 512, 256));
  }
  if (dnnl) {
    EXPECT_NE(kernels::gemm_matmul_implementation(false, true, 128, 256, 784), "none");
  }
}

// Eight SGD-with-momentum steps of a small MLP: the parameters after them through OpenBLAS
// and through oneDNN agree to rounding, and both moved away from the start.
std::vector<float> train_parameters(GemmBackend backend) {
  kernels::set_gemm_backend(backend);
  ParameterArena arena{DType::f32};
  nn::Sequential net = nn::mlp(arena, {20, 32, 16, 4}, nn::Activation::relu);
  nn::initialize(arena, {.weights = init::Scheme::fan_in_uniform, .seed = 3});
  std::unique_ptr<optim::Optimizer> opt = optim::make_optimizer({.name = "momentum", .lr = 0.05, .momentum = 0.9}, nullptr);
  autodiff::Tape tape;
  Tensor x = Tensor::empty({24, 20}, DType::f32), y = Tensor::empty({24}, DType::i32);
  for (std::int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = wave(i, 0.7f);
  for (std::int64_t i = 0; i < 24; ++i) y.data<std::int32_t>()[i] = static_cast<std::int32_t>(i % 4);
  for (std::int64_t k = 0; k < 8; ++k) train::train_step(net, arena, *opt, tape, x, y, k);
  const Tensor& p = arena.values();
  return {p.data<float>(), p.data<float>() + p.numel()};
}

TEST(GemmBackend, TrainingThroughEitherLibraryGivesTheSameParametersToRounding) {
  if (!kernels::gemm_backend_has_onednn()) GTEST_SKIP() << "descent was built without oneDNN";
  BackendGuard guard;
  kernels::set_gemm_backend(GemmBackend::openblas);
  ParameterArena start_arena{DType::f32};
  nn::Sequential start_net = nn::mlp(start_arena, {20, 32, 16, 4}, nn::Activation::relu);
  nn::initialize(start_arena, {.weights = init::Scheme::fan_in_uniform, .seed = 3});
  const std::vector<float> blas = train_parameters(GemmBackend::openblas);
  double moved = 0;
  std::vector<GemmBackend> others = {GemmBackend::onednn, GemmBackend::onednn_matmul};
  if (kernels::gemm_backend_has_descent()) others.push_back(GemmBackend::descent);
  for (GemmBackend other : others) {
    const std::vector<float> dnnl = train_parameters(other);
    ASSERT_EQ(blas.size(), dnnl.size());
    for (std::size_t i = 0; i < blas.size(); ++i) {
      EXPECT_NEAR(blas[i], dnnl[i], 1e-5 * (1.0 + std::abs(blas[i]))) << "parameter " << i << " backend "
                                                                       << static_cast<int>(other);
      moved = std::max(moved, static_cast<double>(std::abs(blas[i] - start_arena.values().data<float>()[i])));
    }
  }
  EXPECT_GT(moved, 1e-2);
}

}  // namespace
}  // namespace descent
