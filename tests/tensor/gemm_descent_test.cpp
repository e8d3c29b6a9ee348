// descent's own float32 matrix product (GemmBackend::descent, src/tensor/gemm_avx512.cpp)
// against the product summed here in double from the definition: the four transpose
// combinations, odd sizes around its 12-row and 32-column blocks and its k blocks of 256,
// alpha and beta (beta 0 over a C full of NaN, which must not be read), leading dimensions
// wider than the matrices (the gaps must stay untouched), 1 and 2 threads (bit-identical: every
// element is the same sum in the same order), and the MLP's shapes. Skipped on a CPU without
// AVX-512F, where the backend is OpenBLAS.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "descent/tensor/kernels.hpp"
#include "descent/tensor/parallel.hpp"
#include "support/linear_reference.hpp"

namespace descent {
namespace {

using kernels::GemmBackend;

// Restores the process-wide settings when a test ends, even a failed one.
struct SettingsGuard {
  int threads = num_threads();
  ~SettingsGuard() {
    kernels::set_gemm_backend(GemmBackend::automatic);
    kernels::set_gemm_serial_below(kernels::gemm_serial_below_default);
    set_num_threads(threads);
  }
};

using testing::wave;

struct Case {
  bool ta, tb;
  std::int64_t m, n, k;
  float alpha, beta;
  std::int64_t pad;  // leading dimensions: the width plus pad (0: packed)
};

std::string name(const Case& c) {
  return "ta " + std::to_string(c.ta) + " tb " + std::to_string(c.tb) + " m " + std::to_string(c.m) + " n " +
         std::to_string(c.n) + " k " + std::to_string(c.k) + " alpha " + std::to_string(c.alpha) + " beta " +
         std::to_string(c.beta) + " pad " + std::to_string(c.pad);
}

// The product through gemm_raw with the descent backend on 1 and on 2 threads (every product
// split: gemm_serial_below 0), each element against the sum in double within k + 2 float
// roundings of the terms' absolute sum; the two results bit-identical; C's gaps untouched.
void expect_case(const Case& c) {
  const std::int64_t ar = c.ta ? c.k : c.m, ac = c.ta ? c.m : c.k, br = c.tb ? c.n : c.k, bc = c.tb ? c.k : c.n;
  const std::int64_t lda = ac + c.pad, ldb = bc + c.pad, ldc = c.n + c.pad;
  std::vector<float> a(static_cast<std::size_t>(ar * lda)), b(static_cast<std::size_t>(br * ldb));
  for (std::size_t i = 0; i < a.size(); ++i) a[i] = wave(static_cast<std::int64_t>(i), 0.37f);
  for (std::size_t i = 0; i < b.size(); ++i) b[i] = wave(static_cast<std::int64_t>(i), 0.11f);
  std::vector<float> c0(static_cast<std::size_t>(c.m * ldc));
  for (std::size_t i = 0; i < c0.size(); ++i) {
    c0[i] = c.beta == 0.0f ? std::numeric_limits<float>::quiet_NaN() : wave(static_cast<std::int64_t>(i), 0.23f);
  }
  std::vector<std::vector<float>> results;
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    std::vector<float> out = c0;
    kernels::gemm_raw<float>(c.ta, c.tb, c.m, c.n, c.k, c.alpha, a.data(), lda, b.data(), ldb, c.beta, out.data(), ldc);
    results.push_back(out);
  }
  const std::vector<float>& got = results[0];
  for (std::int64_t i = 0; i < c.m; ++i) {
    for (std::int64_t j = 0; j < ldc; ++j) {
      const std::size_t at = static_cast<std::size_t>(i * ldc + j);
      if (j >= c.n) {  // the gap between rows: never written
        ASSERT_TRUE(std::isnan(got[at]) ? std::isnan(c0[at]) : got[at] == c0[at]) << name(c) << " gap " << i << "," << j;
        continue;
      }
      double s = 0, abs_sum = 0;
      for (std::int64_t p = 0; p < c.k; ++p) {
        const double x = c.ta ? a[static_cast<std::size_t>(p * lda + i)] : a[static_cast<std::size_t>(i * lda + p)];
        const double y = c.tb ? b[static_cast<std::size_t>(j * ldb + p)] : b[static_cast<std::size_t>(p * ldb + j)];
        s += x * y;
        abs_sum += std::abs(x * y);
      }
      const double old = c.beta == 0.0f ? 0.0 : c0[at];
      const double want = static_cast<double>(c.alpha) * s + static_cast<double>(c.beta) * old;
      const double tol = 1.2e-7 * static_cast<double>(c.k + 2) *
                         (std::abs(c.alpha) * abs_sum + std::abs(static_cast<double>(c.beta) * old) + 1e-30);
      ASSERT_NEAR(got[at], want, tol) << name(c) << " at " << i << "," << j;
    }
  }
  ASSERT_EQ(std::memcmp(results[0].data(), results[1].data(), results[0].size() * sizeof(float)), 0)
      << name(c) << ": 1 and 2 threads differ";
}

class GemmDescent : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!kernels::gemm_backend_has_descent()) GTEST_SKIP() << "no AVX-512F: the descent backend is OpenBLAS here";
    kernels::set_gemm_backend(GemmBackend::descent);
    kernels::set_gemm_serial_below(0);
  }
  SettingsGuard guard_;
};

TEST_F(GemmDescent, OddSizesAllTransposes) {
  const std::vector<std::int64_t> sizes = {1, 7, 13, 31, 33, 127, 129, 300};
  const std::vector<std::int64_t> ks = {1, 7, 33, 300};
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      for (std::int64_t m : sizes) {
        for (std::int64_t n : sizes) {
          for (std::int64_t k : ks) expect_case({ta, tb, m, n, k, 1.0f, 0.0f, 0});
        }
      }
    }
  }
}

TEST_F(GemmDescent, AlphaBetaAndLeadingDimensions) {
  const std::vector<std::pair<float, float>> scales = {{1.0f, 0.0f}, {0.75f, -0.5f}, {1.0f, 1.0f}, {-2.0f, 0.0f}};
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      for (const auto& [alpha, beta] : scales) {
        for (std::int64_t pad : {0, 3, 17}) {
          expect_case({ta, tb, 13, 33, 7, alpha, beta, pad});
          expect_case({ta, tb, 129, 31, 300, alpha, beta, pad});
          expect_case({ta, tb, 31, 127, 513, alpha, beta, pad});
        }
      }
    }
  }
}

TEST_F(GemmDescent, EveryRowCountOfTheMicrokernel) {
  // m = 1 .. 12 and 12 + 1 .. 12 + 12: every microkernel (1 to 12 rows, each reading its rows
  // of A through its own set of row pointers), with A's rows wider than the matrix (pad) or
  // not, beside one full step; k 300 (two k blocks); 2 threads split by columns where the
  // product has 2^18 multiply-adds or more.
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      for (std::int64_t m = 1; m <= 2 * 12; ++m) {
        for (std::int64_t pad : {0, 5}) expect_case({ta, tb, m, 97, 300, 1.0f, 0.0f, pad});
      }
    }
  }
  // x w^T with 4 m <= n from k = 256 runs as w x^T, whose rows are n: n = 96 + r gives the
  // transposed-store microkernels their last step of r rows (one thread at m = 5, two at 24)
  for (std::int64_t r = 1; r <= 12; ++r) {
    for (std::int64_t m : {5, 24}) expect_case({false, true, m, 96 + r, 300, 1.0f, r % 2 == 0 ? 0.0f : 0.5f, 0});
  }
}

TEST_F(GemmDescent, BothSplitsOfTransposedA) {
  // op(A) = A^T split over 2 threads by columns (n >= 2 m) and by rows (n < 2 m), around the
  // boundary n = 2 m and around the panel and step edges, with beta 1 over the k blocks
  for (std::int64_t m : {95, 96, 97, 121}) {
    for (std::int64_t n : {2 * m - 1, 2 * m, 2 * m + 1, 3 * m + 7}) {
      expect_case({true, false, m, n, 129, 1.0f, 0.0f, 0});
      expect_case({true, true, m, n, 300, 0.5f, 1.0f, 3});
    }
  }
}

// A product the kernel runs on one thread (under 2^18 multiply-adds) says so to
// last_products_serial even where gemm_serial_below allowed both threads; a larger one, on
// both, does not.
TEST_F(GemmDescent, TheSmallestProductsSayTheyRanSerially) {
  set_num_threads(2);
  for (const auto& [m, serial] : {std::pair<std::int64_t, bool>{2, true}, {128, false}, {2, true}}) {
    std::vector<float> a(static_cast<std::size_t>(m * 256), 0.5f), b(256 * 256, 0.25f), c(static_cast<std::size_t>(m * 256));
    kernels::gemm_raw<float>(false, false, m, 256, 256, 1.0f, a.data(), 256, b.data(), 256, 0.0f, c.data(), 256);
    EXPECT_EQ(last_products_serial(), serial) << m << " rows";
    EXPECT_EQ(c[0], 32.0f);
  }
}

// kernels::linear on descent's kernel, the bias and ReLU in its stores: bit for bit the
// separate steps on the same kernel (the bias rows, the product added with beta 1, then
// y > 0 ? y : 0), within rounding of relu(sum + bias) summed in double, and the same on 1 and
// 2 threads; shapes around the blocks, the transposed store (4 m <= n, k >= 256), several k
// blocks (the bias in the first one's stores, the ReLU in the last one's only).
void expect_linear(std::int64_t m, std::int64_t n, std::int64_t k, bool with_bias, bool relu) {
  const std::string what = "m " + std::to_string(m) + " n " + std::to_string(n) + " k " + std::to_string(k) + " bias " +
                           std::to_string(with_bias) + " relu " + std::to_string(relu);
  const testing::LinearInputs in = testing::linear_inputs(m, n, k, with_bias);
  const Tensor &x = in.x, &w = in.w, &bias = in.b;
  std::vector<std::vector<float>> results;
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    ASSERT_TRUE(kernels::descent_linear(m, n, k));
    Tensor want = Tensor::empty({m, n}, DType::f32), got = Tensor::empty({m, n}, DType::f32);
    float* wp = want.data<float>();
    for (std::int64_t i = 0; i < m * n; ++i) wp[i] = with_bias ? bias.data<float>()[i % n] : 0.0f;
    kernels::gemm_raw<float>(false, true, m, n, k, 1.0f, x.data<float>(), k, w.data<float>(), k, with_bias ? 1.0f : 0.0f,
                             wp, n);
    if (relu) {
      for (std::int64_t i = 0; i < m * n; ++i) wp[i] = wp[i] > 0.0f ? wp[i] : 0.0f;
    }
    for (std::int64_t i = 0; i < m * n; ++i) got.data<float>()[i] = std::numeric_limits<float>::quiet_NaN();
    kernels::linear(x, w, bias, got, relu);
    ASSERT_EQ(std::memcmp(got.data<float>(), wp, static_cast<std::size_t>(m * n) * sizeof(float)), 0)
        << what << ", " << threads << " threads: not the separate steps bit for bit";
    results.emplace_back(got.data<float>(), got.data<float>() + m * n);
  }
  ASSERT_EQ(results[0], results[1]) << what << ": 1 and 2 threads differ";
  std::int64_t positive = 0;
  for (std::int64_t i = 0; i < m; ++i) {
    for (std::int64_t j = 0; j < n; ++j) {
      const testing::DoubleSum s = testing::linear_in_double(in, i, j);
      const double want = relu ? std::max(s.sum, 0.0) : s.sum;
      positive += want > 0.0 ? 1 : 0;
      ASSERT_NEAR(results[0][static_cast<std::size_t>(i * n + j)], want, 1.2e-7 * static_cast<double>(k + 2) * s.abs_sum + 1e-30)
          << what << " at " << i << "," << j;
    }
  }
  // the ReLU both cut and kept: the test can see it applied too early or not at all
  if (relu && m * n >= 16 && k >= 7) {
    EXPECT_GT(positive, 0) << what;
    EXPECT_LT(positive, m * n) << what;
  }
}

TEST_F(GemmDescent, LinearBiasAndReluInTheStores) {
  for (std::int64_t m : {1, 13, 130, 300}) {
    for (std::int64_t n : {1, 10, 33, 256}) {
      for (std::int64_t k : {0, 1, 7, 300, 784}) {
        for (bool with_bias : {false, true}) {
          for (bool relu : {false, true}) expect_linear(m, n, k, with_bias, relu);
        }
      }
    }
  }
  // the transposed stores (5 rows into 96 + r columns from k = 300: w x^T, its last step of
  // r rows), each adding the bias of its rows
  for (std::int64_t r = 1; r <= 12; ++r) {
    for (bool with_bias : {false, true}) {
      for (bool relu : {false, true}) expect_linear(5, 96 + r, 300, with_bias, relu);
    }
  }
}

TEST_F(GemmDescent, LinearOnDescentsKernelWhereItBeatThePrimitive) {
  // the rule of kernels.cpp (session 13): with the automatic backend, where linear would be
  // oneDNN's primitive (fused_linear), descent's kernel for the measured shapes it won
  kernels::set_gemm_backend(GemmBackend::automatic);
  if (!kernels::fused_linear(DType::f32, 128, 256)) GTEST_SKIP() << "oneDNN is not the automatic library here";
  EXPECT_TRUE(kernels::descent_linear(128, 256, 784));
  EXPECT_TRUE(kernels::descent_linear(128, 256, 256));
  EXPECT_TRUE(kernels::descent_linear(256, 256, 256));
  EXPECT_FALSE(kernels::descent_linear(64, 256, 784)) << "won alone, lost in the step";
  EXPECT_FALSE(kernels::descent_linear(512, 256, 256)) << "won alone, not in the step";
  EXPECT_TRUE(kernels::descent_linear(128, 10, 256));
  EXPECT_FALSE(kernels::descent_linear(512, 256, 784));
  EXPECT_FALSE(kernels::descent_linear(128, 512, 784));
  EXPECT_FALSE(kernels::descent_linear(512, 10, 256));
  EXPECT_FALSE(kernels::descent_linear(128, 256, 1024));
  EXPECT_FALSE(kernels::descent_linear(128, 512, 28)) << "the LSTM's gates keep the primitive";
  // below fused_linear: descent's kernel where gemm_choice picks it for x w^T
  EXPECT_EQ(kernels::descent_linear(32, 256, 784), kernels::gemm_choice(false, true, 32, 256, 784) == GemmBackend::descent);
  EXPECT_TRUE(kernels::descent_linear(32, 256, 784));
  EXPECT_FALSE(kernels::descent_linear(32, 64, 48));
  kernels::set_gemm_backend(GemmBackend::onednn);
  EXPECT_FALSE(kernels::descent_linear(128, 256, 784));
  kernels::set_gemm_backend(GemmBackend::automatic);
  kernels::set_deterministic_products(true);
  EXPECT_FALSE(kernels::descent_linear(128, 256, 784)) << "deterministic products keep their tiles";
  kernels::set_deterministic_products(false);
}

TEST_F(GemmDescent, ZeroKAndZeroAlphaScaleC) {
  // k = 0 or alpha = 0: C <- beta C without reading A or B (BLAS's rule); beta 0 writes zeros
  // over NaN.
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> a(12, nan), b(12, nan);
  for (float alpha : {1.0f, 0.0f}) {
    const std::int64_t k = alpha == 0.0f ? 3 : 0;
    std::vector<float> c = {1, 2, 3, 4, 5, 6};
    kernels::gemm_raw<float>(false, false, 2, 3, k, alpha, a.data(), 3, b.data(), 3, 0.5f, c.data(), 3);
    EXPECT_EQ(c, (std::vector<float>{0.5f, 1, 1.5f, 2, 2.5f, 3})) << "alpha " << alpha;
    std::vector<float> d(6, nan);
    kernels::gemm_raw<float>(false, false, 2, 3, k, alpha, a.data(), 3, b.data(), 3, 0.0f, d.data(), 3);
    EXPECT_EQ(d, std::vector<float>(6, 0.0f)) << "alpha " << alpha;
  }
}

TEST_F(GemmDescent, TheMlpProducts) {
  // MLP 784-256-256-10 at batches 32, 128 and 512: forward x w^T (beta 1 onto the bias rows),
  // weight gradients dy^T x, input gradients dy w
  for (std::int64_t batch : {32, 128, 512}) {
    expect_case({false, true, batch, 256, 784, 1.0f, 1.0f, 0});
    expect_case({false, true, batch, 256, 256, 1.0f, 1.0f, 0});
    expect_case({false, true, batch, 10, 256, 1.0f, 1.0f, 0});
    expect_case({true, false, 256, 784, batch, 1.0f, 0.0f, 0});
    expect_case({true, false, 256, 256, batch, 1.0f, 0.0f, 0});
    expect_case({true, false, 10, 256, batch, 1.0f, 0.0f, 0});
    expect_case({false, false, batch, 256, 256, 1.0f, 0.0f, 0});
    expect_case({false, false, batch, 256, 10, 1.0f, 0.0f, 0});
  }
}

}  // namespace
}  // namespace descent
