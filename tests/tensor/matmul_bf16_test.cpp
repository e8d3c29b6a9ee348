// The bf16 matrix products of mixed precision (src/tensor/matmul_bf16.cpp) against a
// reference computed here: the inputs rounded to bf16 by a converter of this file (round to
// nearest, ties to even, from the definition), the product summed in double. The products
// accumulate in float32: each element may differ from the exact sum of its k exact terms
// (a bf16 x bf16 product is exact in float32) by at most about k float32 roundings of the
// terms' absolute sum, gamma_k = k 2^-24 sum |a b|; the bound below is (k + 2) 2^-24 sum |a b|
// plus beta's term. The same results must differ from the product of the unrounded float32
// inputs by more than that bound somewhere, so a product that skipped the rounding fails.
#include "../../src/tensor/matmul_bf16.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <string>
#include <tuple>
#include <vector>

#include "descent/tensor/kernels.hpp"
#include "descent/tensor/precision.hpp"

namespace descent {
namespace {

namespace bf = kernels::bf16;

// bf16 by the definition: the two bf16 neighbours of x (x truncated, and one unit in the last
// place further from zero), the nearer one; a tie goes to the one whose last bit is 0.
std::uint16_t reference_bf16(float x) {
  if (std::isnan(x)) return 0x7fc0;
  std::uint32_t u;
  std::memcpy(&u, &x, 4);
  const std::uint16_t lo = static_cast<std::uint16_t>(u >> 16);
  const std::uint16_t hi = static_cast<std::uint16_t>(lo + 1);
  auto widen = [](std::uint16_t h) {
    const std::uint32_t w = static_cast<std::uint32_t>(h) << 16;
    float f;
    std::memcpy(&f, &w, 4);
    return static_cast<double>(f);
  };
  const double dl = std::abs(static_cast<double>(x) - widen(lo));
  if ((lo & 0x7f80) == 0x7f80) return lo;  // infinity
  // past the largest finite bf16, IEEE rounding treats infinity as 2^128 in magnitude
  const double dh = (hi & 0x7fff) == 0x7f80 ? std::ldexp(1.0, 128) - std::abs(static_cast<double>(x))
                                            : std::abs(widen(hi) - static_cast<double>(x));
  if (dl < dh) return lo;
  if (dh < dl) return hi;
  return (lo & 1) == 0 ? lo : hi;
}

double widen(std::uint16_t h) {
  const std::uint32_t w = static_cast<std::uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &w, 4);
  return f;
}

float value(std::int64_t i, float scale) { return std::sin(scale * static_cast<float>(i + 1)) * 1.7f; }

TEST(Bf16Convert, MatchesTheDefinitionIncludingTiesAndSpecialValues) {
  std::vector<float> xs = {0.0f, -0.0f, 1.0f, -2.5f, 1.0f + 0x1p-8f, 1.0f + 3 * 0x1p-8f, 1.0f + 0x1p-8f + 0x1p-20f,
                           std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                           std::numeric_limits<float>::max(), std::numeric_limits<float>::denorm_min(), 1e-40f, 3.14159f};
  for (std::int64_t i = 0; i < 20000; ++i) xs.push_back(value(i, 0.731f) * std::pow(10.0f, static_cast<float>(i % 9 - 4)));
  std::vector<std::uint16_t> got(xs.size());
  bf::convert(xs.data(), static_cast<std::int64_t>(xs.size()), got.data());
  for (std::size_t i = 0; i < xs.size(); ++i) ASSERT_EQ(got[i], reference_bf16(xs[i])) << "x = " << xs[i];
  // ties: 1 + 2^-8 lies halfway between 1 and 1 + 2^-7 and goes to the even 1
  EXPECT_EQ(got[4], 0x3f80);
  EXPECT_EQ(got[5], 0x3f82);  // 1 + 3 2^-8: halfway, to the even 1 + 2^-6
  EXPECT_EQ(got[6], 0x3f81);  // just above halfway: up
  EXPECT_EQ(got[9], 0x7f80);  // FLT_MAX rounds to infinity
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::uint16_t n16 = 0;
  bf::convert(&nan, 1, &n16);
  EXPECT_TRUE(std::isnan(widen(n16)));
  // the transposed conversion is the same values, transposed
  std::vector<std::uint16_t> t(6 * 5);
  bf::convert_transposed(xs.data() + 13, 5, 6, t.data());
  for (int r = 0; r < 5; ++r) {
    for (int c = 0; c < 6; ++c) EXPECT_EQ(t[c * 5 + r], reference_bf16(xs[13 + r * 6 + c]));
  }
}

// The CPU's conversion instruction (vcvtneps2bf16, with the software fix-up of denormal
// inputs) gives the bits of the portable loop on every kind of input: random bit patterns
// (every exponent, NaNs with any payload, infinities, denormals of both signs), ties, and
// vectors that hold one denormal among normal values; and equals the definition off NaN.
TEST(Bf16Convert, InstructionEqualsThePortableLoopBitForBit) {
  bf::set_conversion_instructions(true);
  if (!bf::conversion_instructions()) GTEST_SKIP() << "no AVX512-BF16 on this CPU";
  std::vector<float> xs;
  std::uint64_t state = 0x9e3779b97f4a7c15ull;
  auto next = [&state] {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return static_cast<std::uint32_t>(state);
  };
  auto from_bits = [](std::uint32_t u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  };
  for (int i = 0; i < 200000; ++i) {
    std::uint32_t u = next();
    switch (i % 8) {
      case 0: u &= 0x807fffffu; break;                  // denormals and zeros
      case 1: u |= 0x7f800000u; break;                  // NaNs and infinities
      case 2: u = (u & 0xffff0000u) | 0x8000u; break;   // exact ties
      case 3: u = (u & 0xffff0000u) | 0x7fffu; break;   // just below a tie
      default: break;
    }
    xs.push_back(from_bits(u));
  }
  for (int v = 0; v < 64; ++v) {  // whole vectors of normal values with one denormal at lane v % 16
    for (int l = 0; l < 16; ++l) xs.push_back(l == v % 16 ? from_bits(0x00012345u + static_cast<std::uint32_t>(v)) : 1.5f + static_cast<float>(l));
  }
  const auto n = static_cast<std::int64_t>(xs.size());
  std::vector<std::uint16_t> instr(xs.size()), portable(xs.size());
  bf::convert(xs.data(), n, instr.data());
  bf::set_conversion_instructions(false);
  bf::convert(xs.data(), n, portable.data());
  bf::set_conversion_instructions(true);
  for (std::size_t i = 0; i < xs.size(); ++i) {
    std::uint32_t u;
    std::memcpy(&u, &xs[i], 4);
    ASSERT_EQ(instr[i], portable[i]) << "bits 0x" << std::hex << u;
    if (!std::isnan(xs[i])) {
      ASSERT_EQ(instr[i], reference_bf16(xs[i])) << "bits 0x" << std::hex << u;
    }
  }
}

// relu_backward (the fused linear + ReLU's backward pass: mask, bf16 conversion, bias
// gradient) with the conversion instruction against the portable loop, bit for bit, and both
// against the definition: gy = bf16(g where h > 0), gb = beta gb + column sums of the masked g
// (in fixed blocks of 32 rows). h holds +0, -0 (0x8000), negative and positive values; g holds
// denormals; n = 37 leaves a tail past the vectors of 16.
TEST(Bf16ReluBackward, InstructionEqualsThePortableLoopAndTheDefinition) {
  const std::int64_t m = 70, n = 37;
  std::vector<float> g(static_cast<std::size_t>(m * n));
  std::vector<std::uint16_t> h(g.size());
  for (std::int64_t i = 0; i < m * n; ++i) {
    g[static_cast<std::size_t>(i)] = i % 11 == 0 ? 3e-39f * static_cast<float>(i % 5 + 1) : value(i, 0.37f);
    const std::uint16_t kinds[] = {0x0000, 0x8000, 0xbf80, 0x3f80, 0x0001, 0x3c00, 0xc000};
    h[static_cast<std::size_t>(i)] = kinds[(i * 7 + i / n) % 7];
  }
  std::vector<float> gb0(static_cast<std::size_t>(n));
  for (std::int64_t j = 0; j < n; ++j) gb0[static_cast<std::size_t>(j)] = value(j, 1.3f);
  // the definition
  std::vector<std::uint16_t> want(g.size());
  std::vector<float> want_gb(static_cast<std::size_t>(n));
  for (std::int64_t j = 0; j < n; ++j) {
    float total = 0.0f;
    for (std::int64_t b0 = 0; b0 < m; b0 += 32) {
      float part = 0.0f;
      for (std::int64_t r = b0; r < std::min(m, b0 + 32); ++r) {
        const std::size_t i = static_cast<std::size_t>(r * n + j);
        const bool on = h[i] != 0 && (h[i] & 0x8000) == 0;
        const float v = on ? g[i] : 0.0f;
        part += v;
        want[i] = reference_bf16(v);
      }
      total += part;
    }
    want_gb[static_cast<std::size_t>(j)] = 0.5f * gb0[static_cast<std::size_t>(j)] + total;
  }
  std::vector<std::vector<std::uint16_t>> gys;
  std::vector<std::vector<float>> gbs;
  for (const bool instr : {false, true}) {
    bf::set_conversion_instructions(instr);
    std::vector<std::uint16_t> gy(g.size());
    std::vector<float> gb = gb0;
    bf::relu_backward(g.data(), h.data(), m, n, gy.data(), gb.data(), 0.5f);
    for (std::size_t i = 0; i < g.size(); ++i) ASSERT_EQ(gy[i], want[i]) << "element " << i << " instr " << instr;
    for (std::int64_t j = 0; j < n; ++j) {
      ASSERT_EQ(gb[static_cast<std::size_t>(j)], want_gb[static_cast<std::size_t>(j)]) << "column " << j << " instr " << instr;
    }
    gys.push_back(gy);
    gbs.push_back(gb);
  }
  bf::set_conversion_instructions(true);
  EXPECT_EQ(gys[0], gys[1]);
  EXPECT_EQ(gbs[0], gbs[1]);
}

// Checks C = op(A) op(B) + beta C0 for one shape (with_bias: C = op(A) op(B) + 1 bias^T through
// gemm_bias, C0 ignored); returns the largest |C - product of the unrounded inputs| / bound over
// the elements (> 1: the rounding to bf16 is visible).
double expect_product(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, float beta,
                      bool with_bias = false) {
  std::vector<float> bias(static_cast<std::size_t>(n));
  for (std::int64_t j = 0; j < n; ++j) bias[static_cast<std::size_t>(j)] = 3.0f * value(j, 0.61f);
  if (with_bias) beta = 0.0f;
  const std::int64_t a_n = m * k, b_n = k * n;
  std::vector<float> af(a_n), bfl(b_n), c(m * n);
  for (std::int64_t i = 0; i < a_n; ++i) af[i] = value(i, 0.37f);
  for (std::int64_t i = 0; i < b_n; ++i) bfl[i] = value(i, 0.11f);
  for (std::int64_t i = 0; i < m * n; ++i) c[i] = value(i, 0.23f);
  const std::vector<float> c0 = c;
  std::vector<std::uint16_t> a16(a_n), b16(b_n);
  for (std::int64_t i = 0; i < a_n; ++i) a16[i] = reference_bf16(af[i]);
  for (std::int64_t i = 0; i < b_n; ++i) b16[i] = reference_bf16(bfl[i]);
  const std::int64_t lda = ta ? m : k, ldb = tb ? k : n;
  if (with_bias) {
    bf::gemm_bias(ta, tb, m, n, k, a16.data(), lda, b16.data(), ldb, bias.data(), c.data(), n);
  } else {
    bf::gemm(ta, tb, m, n, k, a16.data(), lda, b16.data(), ldb, beta, c.data(), n);
  }
  double visible = 0;
  for (std::int64_t i = 0; i < m; ++i) {
    for (std::int64_t j = 0; j < n; ++j) {
      double s = 0, s32 = 0, abs_sum = 0;
      for (std::int64_t p = 0; p < k; ++p) {
        const std::int64_t ia = ta ? p * m + i : i * k + p, ib = tb ? j * k + p : p * n + j;
        const double x = widen(a16[ia]), y = widen(b16[ib]);
        s += x * y;
        s32 += static_cast<double>(af[ia]) * bfl[ib];
        abs_sum += std::abs(x * y);
      }
      // with the bias: beta 1 on a C0 of the bias rows
      const double c_old = with_bias ? bias[static_cast<std::size_t>(j)] : c0[i * n + j];
      if (with_bias) beta = 1.0f;
      const double want = s + beta * c_old;
      const double tol = static_cast<double>(k + 2) * 0x1p-24 * abs_sum + 0x1p-23 * std::abs(beta * c_old) + 1e-30;
      const double got = c[i * n + j];
      EXPECT_NEAR(got, want, tol) << "ta " << ta << " tb " << tb << " " << m << "x" << n << "x" << k << " beta " << beta
                                  << " at " << i << "," << j;
      if (::testing::Test::HasFailure()) return 0;
      visible = std::max(visible, std::abs(got - (s32 + beta * c_old)) / tol);
    }
  }
  return visible;
}

void expect_products() {
  const std::vector<std::array<std::int64_t, 3>> shapes = {{7, 5, 3}, {37, 53, 61}, {16, 256, 784}, {256, 784, 16},
                                                           {16, 784, 256}, {1, 10, 256}};
  // each beta (0: overwrite, 1: accumulate, -0.5) on every shape over the four transpose cases
  const float betas[] = {0.0f, 1.0f, -0.5f};
  double visible = 0;
  int i = 0;
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      for (const auto& s : shapes) {
        visible = std::max(visible, expect_product(ta, tb, s[0], s[1], s[2], betas[i++ % 3]));
        if (::testing::Test::HasFailure()) return;
        // the bias added by the product (the forward of a linear layer with its bias)
        visible = std::max(visible, expect_product(ta, tb, s[0], s[1], s[2], 0.0f, true));
        if (::testing::Test::HasFailure()) return;
      }
    }
  }
  EXPECT_GT(visible, 10.0) << "the results look like products of the unrounded float32 inputs";
}

TEST(Bf16Gemm, NativeProductsMatchTheDoubleSumOfTheRoundedInputs) {
  if (!precision::cpu_has_bf16()) GTEST_SKIP() << "this CPU has no bf16 instructions (" << precision::cpu_isa_name() << ")";
  precision::Scope scope(precision::Products::bf16, false);
  // oneDNN's kernel for the MLP's three products at batch 128 (not its reference "ref:any")
  for (const auto& [ta, tb, m, n, k] : std::vector<std::tuple<bool, bool, int, int, int>>{
           {false, true, 128, 256, 784}, {false, false, 128, 784, 256}, {false, false, 256, 784, 128}}) {
    const std::string impl = bf::implementation(ta, tb, m, n, k);
    std::printf("bf16 matmul %dx%dx%d%s: %s\n", m, n, k, tb ? " (B^T)" : "", impl.c_str());
    EXPECT_NE(impl, "emulated");
    EXPECT_EQ(impl.find("ref"), std::string::npos) << impl;
  }
  expect_products();
}

TEST(Bf16Gemm, EmulatedProductsMatchTheDoubleSumOfTheRoundedInputs) {
  precision::Scope scope(precision::Products::bf16, true);
  EXPECT_STREQ(bf::implementation(false, true, 128, 256, 784), "emulated");
  expect_products();
}

TEST(Bf16Gemm, DeterministicProductsAreEmulatedOnTheTiledFloat32Product) {
  precision::Scope scope(precision::Products::bf16, false);
  kernels::set_deterministic_products(true);
  const std::string impl = bf::implementation(false, true, 128, 256, 784);
  kernels::set_deterministic_products(false);
  EXPECT_EQ(impl, "emulated");
}

// What the CPU has, read here from /proc/cpuinfo's flags; the test hook forces "none".
TEST(Bf16Cpu, DetectionAgreesWithTheCpuFlagsAndTheHookForcesNone) {
  std::ifstream f("/proc/cpuinfo");
  if (!f) GTEST_SKIP() << "no /proc/cpuinfo";
  std::string line;
  bool flags_bf16 = false;
  while (std::getline(f, line)) {
    if (line.rfind("flags", 0) == 0) {
      flags_bf16 = line.find(" avx512_bf16") != std::string::npos || line.find(" amx_bf16") != std::string::npos;
      break;
    }
  }
  const bool has_onednn = kernels::gemm_backend_has_onednn();
  EXPECT_EQ(precision::cpu_has_bf16(), has_onednn && flags_bf16) << precision::cpu_isa_name();
  ::setenv("DESCENT_BF16_CPU", "none", 1);
  const bool forced = precision::cpu_has_bf16();
  const std::string impl = [] {
    precision::Scope scope(precision::Products::bf16, false);
    return std::string(bf::implementation(false, false, 8, 8, 8));
  }();
  ::unsetenv("DESCENT_BF16_CPU");
  EXPECT_FALSE(forced);
  EXPECT_EQ(impl, "emulated");
}

}  // namespace
}  // namespace descent
