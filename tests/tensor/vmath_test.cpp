// The vectorized float exp, tanh and sigmoid (src/tensor/vmath.hpp) against double std::
// over a dense sweep of float bit patterns (every 251st of the 2^32, both signs, every
// range: subnormal, normal, huge, inf, NaN), plus every float in windows around the points
// where the method switches (tanh's 0.625, exp's overflow and underflow) and the special
// values one by one.
//
// The bounds asserted (float results that are normal numbers; measured on all 2^32 floats
// when they were written, with and without FMA: exp 8.4e-8, tanh 1.42e-7, sigmoid 2.03e-7):
//   exp      relative error <= 1.0e-7
//   tanh     relative error <= 1.5e-7
//   sigmoid  relative error <= 2.5e-7
// Where the exact result is below the smallest normal float, the error is at most one
// subnormal step (2^-149); where it is above the largest float, the result is +inf (or
// FLT_MAX within half an ulp of it). NaN in gives NaN out.
#include "../../src/tensor/vmath.hpp"

#include <gtest/gtest.h>

#include <bit>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

namespace descent {
namespace {

enum class Fn { exp, tanh, sigmoid };

const char* fn_name(Fn f) {
  switch (f) {
    case Fn::exp: return "exp";
    case Fn::tanh: return "tanh";
    case Fn::sigmoid: return "sigmoid";
  }
  return "?";
}

double bound(Fn f) {
  switch (f) {
    case Fn::exp: return 1.0e-7;
    case Fn::tanh: return 1.5e-7;
    case Fn::sigmoid: return 2.5e-7;
  }
  return 0.0;
}

// The exact function in double (its own error, ~1e-16, is far below the float bounds).
double reference(Fn f, float xf) {
  const double x = xf;
  switch (f) {
    case Fn::exp: return std::exp(x);
    case Fn::tanh: return std::tanh(x);
    case Fn::sigmoid: return x >= 0 ? 1.0 / (1.0 + std::exp(-x)) : std::exp(x) / (1.0 + std::exp(x));
  }
  return 0.0;
}

void apply(Fn f, const std::vector<float>& x, std::vector<float>& y) {
  y.resize(x.size());
  const auto n = static_cast<std::int64_t>(x.size());
  switch (f) {
    case Fn::exp: vmath::exp(x.data(), y.data(), n); break;
    case Fn::tanh: vmath::tanh(x.data(), y.data(), n); break;
    case Fn::sigmoid: vmath::sigmoid(x.data(), y.data(), n); break;
  }
}

float from_bits(std::uint32_t b) { return std::bit_cast<float>(b); }

struct Worst {
  double relative = 0.0;  // over normal results
  float at = 0.0f;
  int failures = 0;
};

// Checks y = f(x) for every element against the contract above; counts failures (the
// first few reported with their input) and keeps the worst relative error.
void check_all(Fn f, const std::vector<float>& x, Worst& w) {
  std::vector<float> y;
  apply(f, x, y);
  const double subnormal_step = std::ldexp(1.0, -149);
  for (std::size_t k = 0; k < x.size(); ++k) {
    const float xi = x[k];
    const double yi = y[k];
    bool ok = true;
    if (std::isnan(xi)) {
      ok = std::isnan(yi);
    } else {
      const double r = reference(f, xi);
      if (std::abs(r) > static_cast<double>(FLT_MAX)) {
        const double halfway = static_cast<double>(FLT_MAX) * (1.0 + std::ldexp(1.0, -25));
        ok = (std::isinf(yi) || (std::abs(r) < halfway && std::abs(yi) == FLT_MAX)) && std::signbit(yi) == std::signbit(r);
      } else if (std::abs(r) < static_cast<double>(FLT_MIN)) {
        ok = std::abs(yi - r) <= subnormal_step;
      } else {
        const double e = std::abs(yi - r) / std::abs(r);
        if (e > w.relative) {
          w.relative = e;
          w.at = xi;
        }
        ok = e <= bound(f);
      }
    }
    if (!ok && ++w.failures <= 5) {
      ADD_FAILURE() << fn_name(f) << "(" << std::hexfloat << xi << ") = " << yi << ", reference " << reference(f, xi)
                    << std::defaultfloat;
    }
  }
}

TEST(Vmath, DenseSweepOfAllFloatsWithinTheBounds) {
  // Every 251st bit pattern (251 is prime: the low mantissa bits vary too), in batches.
  constexpr std::uint64_t stride = 251;
  for (Fn f : {Fn::exp, Fn::tanh, Fn::sigmoid}) {
    Worst w;
    std::vector<float> x;
    x.reserve(1 << 20);
    for (std::uint64_t b = 0; b < (std::uint64_t{1} << 32); b += stride) {
      x.push_back(from_bits(static_cast<std::uint32_t>(b)));
      if (x.size() == (1u << 20)) {
        check_all(f, x, w);
        x.clear();
      }
    }
    check_all(f, x, w);
    EXPECT_EQ(w.failures, 0) << fn_name(f);
    // The sweep reached the error the method has: not a vacuous pass.
    EXPECT_GT(w.relative, 2e-8) << fn_name(f);
    std::printf("vmath %-7s max relative error %.3g at %a (bound %.2g)\n", fn_name(f), w.relative,
                static_cast<double>(w.at), bound(f));
  }
}

TEST(Vmath, EveryFloatAroundTheSwitchPoints) {
  // 2^16 consecutive floats on each side of: 0 (subnormals into normals), tanh's switch
  // at 0.625, the ends of exp's range (overflow near 88.72 and the select to inf above
  // 88.75, subnormal results below -87.34, zero below -103.97 and the select to 0 below
  // -104), sigmoid's tails, and 1 (the rounding of 2^n scaling).
  const float centers[] = {0.0f, 0.625f, 88.7228f, 88.75f, -87.3365f, -103.972f, -104.0f, 44.36f, 9.01f, 1.0f, 17.0f};
  for (Fn f : {Fn::exp, Fn::tanh, Fn::sigmoid}) {
    Worst w;
    std::vector<float> x;
    for (float c : centers) {
      for (float sc : {c, -c}) {
        const std::uint32_t cb = std::bit_cast<std::uint32_t>(sc);
        for (std::uint32_t d = 0; d < (1u << 16); ++d) {
          x.push_back(from_bits(cb + d));
          if (cb >= d) x.push_back(from_bits(cb - d));
        }
      }
    }
    check_all(f, x, w);
    EXPECT_EQ(w.failures, 0) << fn_name(f);
  }
}

TEST(Vmath, SpecialValues) {
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float tiny = std::numeric_limits<float>::denorm_min();
  const float sub = from_bits(0x00400000u);  // a subnormal in the middle of the range
  const std::vector<float> x = {0.0f, -0.0f, inf, -inf, nan, -nan, from_bits(0x7f800001u), tiny, -tiny, sub, -sub,
                                FLT_MAX, -FLT_MAX, 88.72f, 88.73f, -103.98f, -100.0f};
  std::vector<float> e, t, s;
  apply(Fn::exp, x, e);
  apply(Fn::tanh, x, t);
  apply(Fn::sigmoid, x, s);
  // exp
  EXPECT_EQ(e[0], 1.0f);
  EXPECT_EQ(e[1], 1.0f);
  EXPECT_EQ(e[2], inf);
  EXPECT_EQ(e[3], 0.0f);
  EXPECT_TRUE(std::isnan(e[4]) && std::isnan(e[5]) && std::isnan(e[6]));
  for (int k = 7; k <= 10; ++k) EXPECT_EQ(e[k], 1.0f) << "exp of a subnormal";
  EXPECT_EQ(e[11], inf);
  EXPECT_EQ(e[12], 0.0f);
  EXPECT_TRUE(std::isfinite(e[13]));
  EXPECT_NEAR(e[13], std::exp(double{88.72f}), 1e-7 * std::exp(double{88.72f}));
  EXPECT_EQ(e[14], inf);
  EXPECT_EQ(e[15], 0.0f);
  EXPECT_GT(e[16], 0.0f);  // 3.7e-44: a subnormal, not flushed
  EXPECT_NEAR(e[16], std::exp(-100.0), std::ldexp(1.0, -149));
  // tanh: odd, the sign of zero kept, tanh(x) = x for subnormal x
  EXPECT_EQ(t[0], 0.0f);
  EXPECT_FALSE(std::signbit(t[0]));
  EXPECT_EQ(t[1], 0.0f);
  EXPECT_TRUE(std::signbit(t[1]));
  EXPECT_EQ(t[2], 1.0f);
  EXPECT_EQ(t[3], -1.0f);
  EXPECT_TRUE(std::isnan(t[4]) && std::isnan(t[5]) && std::isnan(t[6]));
  for (int k = 7; k <= 10; ++k) EXPECT_EQ(t[k], x[k]) << "tanh of a subnormal";
  EXPECT_EQ(t[11], 1.0f);
  EXPECT_EQ(t[12], -1.0f);
  // sigmoid
  EXPECT_EQ(s[0], 0.5f);
  EXPECT_EQ(s[1], 0.5f);
  EXPECT_EQ(s[2], 1.0f);
  EXPECT_EQ(s[3], 0.0f);
  EXPECT_TRUE(std::isnan(s[4]) && std::isnan(s[5]) && std::isnan(s[6]));
  for (int k = 7; k <= 10; ++k) EXPECT_EQ(s[k], 0.5f) << "sigmoid of a subnormal";
  EXPECT_EQ(s[11], 1.0f);
  EXPECT_EQ(s[12], 0.0f);
  EXPECT_GT(s[16], 0.0f);
  EXPECT_NEAR(s[16], std::exp(-100.0), std::ldexp(1.0, -149));
}

TEST(Vmath, EveryLengthAndInPlaceGiveTheSameBits) {
  // The vector body, its remainder and a lone element compute the same formula: lengths
  // 1..70 against one long call, and the output written over the input.
  std::vector<float> x(70);
  for (std::size_t k = 0; k < x.size(); ++k) x[k] = -12.0f + 0.37f * static_cast<float>(k);
  for (Fn f : {Fn::exp, Fn::tanh, Fn::sigmoid}) {
    std::vector<float> whole;
    apply(f, x, whole);
    for (std::size_t len = 1; len <= x.size(); ++len) {
      std::vector<float> part(x.begin(), x.begin() + static_cast<std::ptrdiff_t>(len)), y;
      apply(f, part, y);
      for (std::size_t k = 0; k < len; ++k) ASSERT_EQ(std::bit_cast<std::uint32_t>(y[k]), std::bit_cast<std::uint32_t>(whole[k]));
    }
    std::vector<float> inplace = x;
    const auto n = static_cast<std::int64_t>(inplace.size());
    if (f == Fn::exp) vmath::exp(inplace.data(), inplace.data(), n);
    if (f == Fn::tanh) vmath::tanh(inplace.data(), inplace.data(), n);
    if (f == Fn::sigmoid) vmath::sigmoid(inplace.data(), inplace.data(), n);
    for (std::size_t k = 0; k < x.size(); ++k) EXPECT_EQ(inplace[k], whole[k]);
  }
}

TEST(Vmath, DoubleIsLibm) {
  // float64 is not approximated: exp and tanh are std::'s, sigmoid the two-sided formula.
  std::vector<double> x;
  for (int k = -800; k <= 800; ++k) x.push_back(0.93 * k);
  x.push_back(-0.0);
  x.push_back(std::numeric_limits<double>::denorm_min());
  std::vector<double> e(x.size()), t(x.size()), s(x.size());
  const auto n = static_cast<std::int64_t>(x.size());
  vmath::exp(x.data(), e.data(), n);
  vmath::tanh(x.data(), t.data(), n);
  vmath::sigmoid(x.data(), s.data(), n);
  for (std::size_t k = 0; k < x.size(); ++k) {
    EXPECT_EQ(e[k], std::exp(x[k]));
    EXPECT_EQ(t[k], std::tanh(x[k]));
    const double ref = x[k] >= 0 ? 1.0 / (1.0 + std::exp(-x[k])) : std::exp(x[k]) / (1.0 + std::exp(x[k]));
    EXPECT_EQ(s[k], ref);
  }
  EXPECT_TRUE(std::signbit(t[t.size() - 2]));
}

}  // namespace
}  // namespace descent
