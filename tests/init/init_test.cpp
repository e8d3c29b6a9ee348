// Weight initializers: distributions (bounds, moments, shape), orthogonality, sparsity
// patterns, reproducibility by seed, and the errors on bad arguments.
#include "descent/init/init.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "descent/error.hpp"

namespace {

using descent::ConfigError;
using descent::Rng;
namespace init = descent::init;
using init::Options;
using init::Scheme;

// The shape used for the statistical tests: 131072 samples.
constexpr std::int64_t fan_out = 256;
constexpr std::int64_t fan_in = 512;
constexpr std::size_t count = fan_out * fan_in;

// Tolerance in standard errors for every statistical check. With a fixed seed the tests are
// deterministic; 5 standard errors keeps them valid for any seed with overwhelming probability.
constexpr double sigmas = 5.0;

struct Moments {
  double mean = 0.0;
  double variance = 0.0;
  double min = 0.0;
  double max = 0.0;
  double max_abs = 0.0;
};

template <class T>
Moments moments(const std::vector<T>& w) {
  Moments m;
  m.min = std::numeric_limits<double>::infinity();
  m.max = -m.min;
  double sum = 0.0;
  for (T x : w) {
    const auto v = static_cast<double>(x);
    sum += v;
    m.min = std::min(m.min, v);
    m.max = std::max(m.max, v);
    m.max_abs = std::max(m.max_abs, std::abs(v));
  }
  m.mean = sum / static_cast<double>(w.size());
  double squares = 0.0;
  for (T x : w) squares += (static_cast<double>(x) - m.mean) * (static_cast<double>(x) - m.mean);
  m.variance = squares / static_cast<double>(w.size() - 1);
  return m;
}

// Checks mean and variance against their expected values within `sigmas` standard errors.
// fourth is the fourth central moment of the distribution (it sets the variance's error).
template <class T>
void expect_moments(const std::vector<T>& w, double mean, double variance, double fourth) {
  const auto n = static_cast<double>(w.size());
  const Moments m = moments(w);
  EXPECT_NEAR(m.mean, mean, sigmas * std::sqrt(variance / n)) << "sample mean";
  EXPECT_NEAR(m.variance, variance, sigmas * std::sqrt((fourth - variance * variance) / n))
      << "sample variance";
}

template <class T>
void expect_uniform_moments(const std::vector<T>& w, double low, double high) {
  const double half = (high - low) / 2.0;
  expect_moments(w, (low + high) / 2.0, half * half / 3.0, std::pow(half, 4) / 5.0);
}

template <class T>
void expect_normal_moments(const std::vector<T>& w, double mean, double stddev) {
  const double variance = stddev * stddev;
  expect_moments(w, mean, variance, 3.0 * variance * variance);
  // The shape, not only the moments: P(|x - mean| < stddev) = 0.682689... for a Gaussian
  // (a uniform of the same variance gives 0.577).
  std::size_t inside = 0;
  for (T x : w) inside += std::abs(static_cast<double>(x) - mean) < stddev ? 1 : 0;
  const double p = 0.6826894921370859;
  const auto n = static_cast<double>(w.size());
  EXPECT_NEAR(static_cast<double>(inside) / n, p, sigmas * std::sqrt(p * (1 - p) / n))
      << "fraction within one stddev";
}

// Every value within [T(low), T(high)] and both ends nearly reached: with 131072 draws the
// chance that no draw lands in the outer 0.1% at one end is (1 - 0.001)^131072 ~ e^-131.
template <class T>
void expect_uniform_range(const std::vector<T>& w, double low, double high) {
  const Moments m = moments(w);
  EXPECT_GE(m.min, static_cast<double>(static_cast<T>(low)));
  EXPECT_LE(m.max, static_cast<double>(static_cast<T>(high)));
  EXPECT_LT(m.min, low + 1e-3 * (high - low));
  EXPECT_GT(m.max, high - 1e-3 * (high - low));
}

// Pearson's chi-square statistic of 16 equal-width bins over [low, high).
template <class T>
double chi_square_16(const std::vector<T>& w, double low, double high) {
  std::vector<double> bins(16, 0.0);
  for (T x : w) {
    auto b = static_cast<std::int64_t>((static_cast<double>(x) - low) / (high - low) * 16.0);
    b = std::clamp<std::int64_t>(b, 0, 15);
    bins[static_cast<std::size_t>(b)] += 1.0;
  }
  const double expected = static_cast<double>(w.size()) / 16.0;
  double chi2 = 0.0;
  for (double c : bins) chi2 += (c - expected) * (c - expected) / expected;
  return chi2;
}

// (W^T W) if columns, (W W^T) otherwise, compared with gain^2 I; returns the largest deviation.
template <class T>
double orthogonality_error(const std::vector<T>& w, std::int64_t in, std::int64_t out, bool columns,
                           double gain) {
  const auto rows = static_cast<std::size_t>(out);
  const auto cols = static_cast<std::size_t>(in);
  const std::size_t n = columns ? cols : rows;
  double worst = 0.0;
  for (std::size_t a = 0; a < n; ++a) {
    for (std::size_t b = 0; b < n; ++b) {
      double dot = 0.0;
      if (columns) {
        for (std::size_t i = 0; i < rows; ++i) {
          dot += static_cast<double>(w[i * cols + a]) * static_cast<double>(w[i * cols + b]);
        }
      } else {
        for (std::size_t j = 0; j < cols; ++j) {
          dot += static_cast<double>(w[a * cols + j]) * static_cast<double>(w[b * cols + j]);
        }
      }
      const double expected = a == b ? gain * gain : 0.0;
      worst = std::max(worst, std::abs(dot - expected));
    }
  }
  return worst;
}

template <class T>
double orthogonality_tolerance() {
  return std::is_same_v<T, float> ? 1e-5 : 1e-12;
}

template <class T>
class InitTest : public ::testing::Test {};
using ValueTypes = ::testing::Types<float, double>;
TYPED_TEST_SUITE(InitTest, ValueTypes);

TYPED_TEST(InitTest, ZerosAndConstantAreExactAndDrawNothing) {
  using T = TypeParam;
  std::vector<T> w(count, T{7});
  Rng rng(3);
  init::initialize(std::span<T>(w), fan_in, fan_out, Scheme::zeros, Options{}, rng);
  for (T x : w) ASSERT_EQ(x, T{0});

  init::initialize(std::span<T>(w), fan_in, fan_out, Scheme::constant, Options{.value = 0.3}, rng);
  for (T x : w) ASSERT_EQ(x, static_cast<T>(0.3));

  init::constant(std::span<T>(w), -2.5);
  for (T x : w) ASSERT_EQ(x, T{-2.5});
  init::zeros(std::span<T>(w));
  for (T x : w) ASSERT_EQ(x, T{0});

  Rng fresh(3);
  EXPECT_EQ(rng.next_u64(), fresh.next_u64()) << "zeros/constant must not consume random draws";
}

TYPED_TEST(InitTest, UniformBoundsMomentsAndFlatness) {
  using T = TypeParam;
  std::vector<T> w(count);
  Rng rng(11);
  const Options options{.low = -0.2, .high = 0.6};
  init::initialize(std::span<T>(w), fan_in, fan_out, Scheme::uniform, options, rng);
  expect_uniform_range(w, -0.2, 0.6);
  expect_uniform_moments(w, -0.2, 0.6);
  // 15 degrees of freedom: mean 15, sd 5.5; 60 is ~8 sd out.
  EXPECT_LT(chi_square_16(w, -0.2, 0.6), 60.0);
}

TYPED_TEST(InitTest, NormalMomentsAndShape) {
  using T = TypeParam;
  std::vector<T> w(count);
  Rng rng(12);
  init::initialize(std::span<T>(w), fan_in, fan_out, Scheme::normal, Options{.mean = 0.5, .stddev = 0.1},
                   rng);
  expect_normal_moments(w, 0.5, 0.1);
}

TYPED_TEST(InitTest, NormalWithZeroStddevIsTheMean) {
  using T = TypeParam;
  std::vector<T> w(6);
  Rng rng(1);
  init::normal(std::span<T>(w), rng, 0.25, 0.0);
  for (T x : w) EXPECT_EQ(x, T{0.25});
}

TYPED_TEST(InitTest, GlorotUniformBoundAndVariance) {
  using T = TypeParam;
  std::vector<T> w(count);
  Rng rng(21);
  init::glorot_uniform(std::span<T>(w), fan_in, fan_out, rng);
  const double bound = std::sqrt(6.0 / (fan_in + fan_out));
  expect_uniform_range(w, -bound, bound);
  expect_uniform_moments(w, -bound, bound);
  EXPECT_LT(chi_square_16(w, -bound, bound), 60.0);
  EXPECT_NEAR(moments(w).variance, 2.0 / (fan_in + fan_out), 0.02 * 2.0 / (fan_in + fan_out));

  init::initialize(std::span<T>(w), fan_in, fan_out, Scheme::glorot_uniform, Options{.gain = 2.0}, rng);
  expect_uniform_range(w, -2.0 * bound, 2.0 * bound);
  expect_uniform_moments(w, -2.0 * bound, 2.0 * bound);
}

TYPED_TEST(InitTest, GlorotNormalVariance) {
  using T = TypeParam;
  std::vector<T> w(count);
  Rng rng(22);
  init::glorot_normal(std::span<T>(w), fan_in, fan_out, rng);
  const double stddev = std::sqrt(2.0 / (fan_in + fan_out));
  expect_normal_moments(w, 0.0, stddev);

  init::initialize(std::span<T>(w), fan_in, fan_out, Scheme::glorot_normal, Options{.gain = 0.5}, rng);
  expect_normal_moments(w, 0.0, 0.5 * stddev);
}

TYPED_TEST(InitTest, FanInUniformBound) {
  using T = TypeParam;
  std::vector<T> w(count);
  Rng rng(23);
  init::initialize(std::span<T>(w), fan_in, fan_out, Scheme::fan_in_uniform, Options{}, rng);
  const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
  expect_uniform_range(w, -bound, bound);
  expect_uniform_moments(w, -bound, bound);
  EXPECT_NEAR(moments(w).variance, 1.0 / (3.0 * fan_in), 0.02 / (3.0 * fan_in));
}

TYPED_TEST(InitTest, FanInUniformUsesFanInNotFanOut) {
  using T = TypeParam;
  // fan_out x fan_in = 512 x 4: bound 1/2. Swapping the fans would give bound 1/sqrt(512).
  std::vector<T> w(2048);
  Rng rng(24);
  init::fan_in_uniform(std::span<T>(w), 4, 512, rng);
  EXPECT_GT(moments(w).max_abs, 0.45);
  EXPECT_LE(moments(w).max_abs, 0.5);
}

TYPED_TEST(InitTest, HeNormalVarianceAndGain) {
  using T = TypeParam;
  std::vector<T> w(count);
  Rng rng(31);
  init::he_normal(std::span<T>(w), fan_in, fan_out, rng);
  expect_normal_moments(w, 0.0, std::sqrt(2.0 / fan_in));

  init::initialize(std::span<T>(w), fan_in, fan_out, Scheme::he_normal, Options{.gain = 3.0}, rng);
  expect_normal_moments(w, 0.0, 3.0 * std::sqrt(2.0 / fan_in));
}

TYPED_TEST(InitTest, HeUniformBoundAndVariance) {
  using T = TypeParam;
  std::vector<T> w(count);
  Rng rng(32);
  init::he_uniform(std::span<T>(w), fan_in, fan_out, rng);
  const double bound = std::sqrt(6.0 / fan_in);
  expect_uniform_range(w, -bound, bound);
  expect_uniform_moments(w, -bound, bound);
  EXPECT_NEAR(moments(w).variance, 2.0 / fan_in, 0.02 * 2.0 / fan_in);

  init::initialize(std::span<T>(w), fan_in, fan_out, Scheme::he_uniform, Options{.gain = 0.5}, rng);
  expect_uniform_range(w, -0.5 * bound, 0.5 * bound);
}

TYPED_TEST(InitTest, OrthogonalSquare) {
  using T = TypeParam;
  std::vector<T> w(64 * 64);
  Rng rng(41);
  init::orthogonal(std::span<T>(w), 64, 64, rng);
  EXPECT_LT(orthogonality_error(w, 64, 64, true, 1.0), orthogonality_tolerance<T>());
  EXPECT_LT(orthogonality_error(w, 64, 64, false, 1.0), orthogonality_tolerance<T>());
  // A dense random rotation, not a (signed) permutation: entries have variance 1/64, so
  // almost none are tiny, and the mean square is exactly 1/64.
  std::size_t tiny = 0;
  double squares = 0.0;
  for (T x : w) {
    tiny += std::abs(static_cast<double>(x)) < 1e-4 ? 1 : 0;
    squares += static_cast<double>(x) * static_cast<double>(x);
  }
  EXPECT_LT(tiny, 10u);
  EXPECT_NEAR(squares / static_cast<double>(w.size()), 1.0 / 64.0, 1e-6);
}

TYPED_TEST(InitTest, OrthogonalTallHasOrthonormalColumns) {
  using T = TypeParam;
  // fan_out 96 >= fan_in 40: W^T W = I (40 x 40); W W^T is a rank-40 projection, not I.
  std::vector<T> w(96 * 40);
  Rng rng(42);
  init::initialize(std::span<T>(w), 40, 96, Scheme::orthogonal, Options{}, rng);
  EXPECT_LT(orthogonality_error(w, 40, 96, true, 1.0), orthogonality_tolerance<T>());
  EXPECT_GT(orthogonality_error(w, 40, 96, false, 1.0), 0.1);
}

TYPED_TEST(InitTest, OrthogonalWideHasOrthonormalRows) {
  using T = TypeParam;
  // fan_out 30 < fan_in 100: W W^T = I (30 x 30).
  std::vector<T> w(30 * 100);
  Rng rng(43);
  init::orthogonal(std::span<T>(w), 100, 30, rng);
  EXPECT_LT(orthogonality_error(w, 100, 30, false, 1.0), orthogonality_tolerance<T>());
  EXPECT_GT(orthogonality_error(w, 100, 30, true, 1.0), 0.1);
}

TYPED_TEST(InitTest, OrthogonalGainScales) {
  using T = TypeParam;
  std::vector<T> tall(50 * 20);
  std::vector<T> wide(20 * 50);
  Rng rng(44);
  init::initialize(std::span<T>(tall), 20, 50, Scheme::orthogonal, Options{.gain = 2.0}, rng);
  init::orthogonal(std::span<T>(wide), 50, 20, rng, 0.5);
  EXPECT_LT(orthogonality_error(tall, 20, 50, true, 2.0), 4.0 * orthogonality_tolerance<T>());
  EXPECT_LT(orthogonality_error(wide, 50, 20, false, 0.5), orthogonality_tolerance<T>());

  // Same seed with gain 1 and gain 2: exactly twice the values (multiplying by 2 is exact).
  std::vector<T> one(64);
  std::vector<T> two(64);
  Rng a(45);
  Rng b(45);
  init::orthogonal(std::span<T>(one), 8, 8, a, 1.0);
  init::orthogonal(std::span<T>(two), 8, 8, b, 2.0);
  for (std::size_t i = 0; i < one.size(); ++i) EXPECT_EQ(two[i], 2 * one[i]);
}

TYPED_TEST(InitTest, OrthogonalDegenerateShapes) {
  using T = TypeParam;
  std::vector<T> one(1);
  Rng rng(46);
  init::orthogonal(std::span<T>(one), 1, 1, rng, 1.5);
  EXPECT_EQ(std::abs(one[0]), T{1.5});

  std::vector<T> column(7);  // 7 x 1: a unit column
  init::orthogonal(std::span<T>(column), 1, 7, rng);
  EXPECT_LT(orthogonality_error(column, 1, 7, true, 1.0), orthogonality_tolerance<T>());
  std::vector<T> row(7);  // 1 x 7: a unit row
  init::orthogonal(std::span<T>(row), 7, 1, rng);
  EXPECT_LT(orthogonality_error(row, 7, 1, false, 1.0), orthogonality_tolerance<T>());
}

TYPED_TEST(InitTest, SparseExactlyKPerRowAtVaryingPositions) {
  using T = TypeParam;
  std::vector<T> w(count, T{9});
  Rng rng(51);
  const std::int64_t k = 15;
  init::sparse(std::span<T>(w), fan_in, fan_out, rng, k, 1.0);

  std::set<std::vector<std::size_t>> patterns;
  std::vector<double> column_hits(fan_in, 0.0);
  std::vector<T> nonzeros;
  for (std::size_t i = 0; i < fan_out; ++i) {
    std::vector<std::size_t> pattern;
    for (std::size_t j = 0; j < fan_in; ++j) {
      const T x = w[i * fan_in + j];
      if (x != T{0}) {
        pattern.push_back(j);
        column_hits[j] += 1.0;
        nonzeros.push_back(x);
      }
    }
    ASSERT_EQ(pattern.size(), static_cast<std::size_t>(k)) << "row " << i;
    patterns.insert(pattern);
  }
  // Two rows sharing a pattern has probability ~ 256^2 / C(512, 15); all must differ.
  EXPECT_EQ(patterns.size(), static_cast<std::size_t>(fan_out));
  // Positions uniform over the columns: chi-square with 511 degrees of freedom
  // (mean 511, sd 32); 700 is ~6 sd out.
  const double expected = static_cast<double>(fan_out * k) / fan_in;
  double chi2 = 0.0;
  for (double c : column_hits) chi2 += (c - expected) * (c - expected) / expected;
  EXPECT_LT(chi2, 700.0);
  // Non-zeros are N(0, 1): 3840 samples.
  expect_normal_moments(nonzeros, 0.0, 1.0);
}

TYPED_TEST(InitTest, SparseThroughInitializeUsesOptions) {
  using T = TypeParam;
  std::vector<T> w(count);
  Rng rng(52);
  init::initialize(std::span<T>(w), fan_in, fan_out, Scheme::sparse,
                   Options{.stddev = 0.5, .sparse_k = 40}, rng);
  std::vector<T> nonzeros;
  for (std::size_t i = 0; i < fan_out; ++i) {
    std::size_t in_row = 0;
    for (std::size_t j = 0; j < fan_in; ++j) {
      if (w[i * fan_in + j] != T{0}) {
        ++in_row;
        nonzeros.push_back(w[i * fan_in + j]);
      }
    }
    ASSERT_EQ(in_row, 40u) << "row " << i;
  }
  expect_normal_moments(nonzeros, 0.0, 0.5);

  EXPECT_EQ(init::default_options(Scheme::sparse).stddev, 1.0);
  EXPECT_EQ(init::default_options(Scheme::normal).stddev, Options{}.stddev);
}

TYPED_TEST(InitTest, SparseWithKEqualToFanInIsDense) {
  using T = TypeParam;
  std::vector<T> w(3 * 5);
  Rng rng(53);
  init::sparse(std::span<T>(w), 5, 3, rng, 5, 1.0);
  for (T x : w) EXPECT_NE(x, T{0});
}

// Every scheme that draws: a seed fixes the bits, another seed changes them, the float
// result is the double result rounded, and initialize() equals the named function.
TEST(InitReproducibility, SameSeedSameBitsAcrossSchemesAndTypes) {
  const std::vector<Scheme> schemes = {Scheme::uniform,        Scheme::normal,     Scheme::glorot_uniform,
                                       Scheme::glorot_normal,  Scheme::fan_in_uniform, Scheme::he_normal,
                                       Scheme::he_uniform,     Scheme::orthogonal, Scheme::sparse};
  constexpr std::int64_t in = 24;
  constexpr std::int64_t out = 16;
  const Options options{.sparse_k = 5};
  for (Scheme scheme : schemes) {
    SCOPED_TRACE(std::string(init::scheme_name(scheme)));
    std::vector<double> first(in * out);
    std::vector<double> second(in * out);
    std::vector<double> other_seed(in * out);
    std::vector<float> as_float(in * out);
    Rng r1(2024);
    Rng r2(2024);
    Rng r3(2025);
    Rng r4(2024);
    init::initialize(std::span<double>(first), in, out, scheme, options, r1);
    init::initialize(std::span<double>(second), in, out, scheme, options, r2);
    init::initialize(std::span<double>(other_seed), in, out, scheme, options, r3);
    init::initialize(std::span<float>(as_float), in, out, scheme, options, r4);
    EXPECT_EQ(std::memcmp(first.data(), second.data(), first.size() * sizeof(double)), 0);
    EXPECT_NE(first, other_seed);
    for (std::size_t i = 0; i < first.size(); ++i) {
      ASSERT_EQ(as_float[i], static_cast<float>(first[i])) << "index " << i;
    }
    EXPECT_EQ(r1.next_u64(), r4.next_u64()) << "float and double consume the same draws";
  }

  std::vector<double> by_initialize(in * out);
  std::vector<double> by_name(in * out);
  Rng a(7);
  Rng b(7);
  init::initialize(std::span<double>(by_initialize), in, out, Scheme::he_uniform, Options{.gain = 1.5}, a);
  init::he_uniform(std::span<double>(by_name), in, out, b, 1.5);
  EXPECT_EQ(by_initialize, by_name);
}

TEST(InitReproducibility, PinnedValuesForOneSeed) {
  // uniform(lo, hi) = lo + (hi - lo) * (next_u64() >> 11) * 2^-53; recomputed here from the
  // raw generator so that a change in the drawing order is caught.
  std::vector<double> w(4);
  Rng rng(99);
  init::uniform(std::span<double>(w), rng, -1.0, 3.0);
  Rng raw(99);
  for (double x : w) {
    const double u = static_cast<double>(raw.next_u64() >> 11) * 0x1.0p-53;
    EXPECT_EQ(x, -1.0 + 4.0 * u);
  }
}

TEST(InitSchemeNames, RoundTripAndUnknownName) {
  const std::vector<std::string> names = {"zeros",      "constant",       "uniform",   "normal",
                                          "glorot_uniform", "glorot_normal", "fan_in_uniform", "he_normal",
                                          "he_uniform", "orthogonal",     "sparse"};
  std::set<Scheme> seen;
  for (const std::string& name : names) {
    const Scheme scheme = init::parse_scheme(name);
    EXPECT_EQ(init::scheme_name(scheme), name);
    seen.insert(scheme);
  }
  EXPECT_EQ(seen.size(), names.size());

  try {
    init::parse_scheme("xavier");
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("'xavier'"), std::string::npos) << what;
    for (const std::string& name : names) EXPECT_NE(what.find(name), std::string::npos) << what;
  }
  EXPECT_THROW(init::parse_scheme(""), ConfigError);
  EXPECT_THROW(init::parse_scheme("Glorot_Uniform"), ConfigError);
}

// Expects ConfigError mentioning `field`, with w and the Rng untouched.
void expect_config_error(Scheme scheme, std::int64_t in, std::int64_t out, std::size_t size,
                         const Options& options, const std::string& field) {
  std::vector<float> w(size, 3.0f);
  Rng rng(5);
  try {
    init::initialize(std::span<float>(w), in, out, scheme, options, rng);
    ADD_FAILURE() << "expected ConfigError for " << field;
  } catch (const ConfigError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(field), std::string::npos) << what;
    EXPECT_NE(what.find(std::string(init::scheme_name(scheme))), std::string::npos) << what;
  }
  for (float x : w) ASSERT_EQ(x, 3.0f);
  Rng fresh(5);
  EXPECT_EQ(rng.next_u64(), fresh.next_u64());
}

TEST(InitErrors, BadShapes) {
  for (Scheme scheme : {Scheme::zeros, Scheme::uniform, Scheme::glorot_uniform, Scheme::orthogonal,
                        Scheme::sparse, Scheme::he_normal}) {
    SCOPED_TRACE(std::string(init::scheme_name(scheme)));
    const Options options{.sparse_k = 2};
    expect_config_error(scheme, 4, 3, 11, options, "weight span holds 11 values");
    expect_config_error(scheme, 0, 3, 0, options, "fan_in");
    expect_config_error(scheme, 4, -1, 4, options, "fan_out");
    expect_config_error(scheme, std::int64_t{1} << 40, std::int64_t{1} << 40, 4, options, "overflows");
  }
}

TEST(InitErrors, BadOptions) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  expect_config_error(Scheme::uniform, 4, 3, 12, Options{.low = 0.5, .high = 0.5}, "low");
  expect_config_error(Scheme::uniform, 4, 3, 12, Options{.low = 1.0, .high = -1.0}, "high");
  expect_config_error(Scheme::uniform, 4, 3, 12, Options{.low = nan}, "low");
  expect_config_error(Scheme::uniform, 4, 3, 12, Options{.low = -1e308, .high = 1e308}, "overflows");
  expect_config_error(Scheme::normal, 4, 3, 12, Options{.stddev = -0.1}, "stddev");
  expect_config_error(Scheme::normal, 4, 3, 12, Options{.stddev = inf}, "stddev");
  expect_config_error(Scheme::normal, 4, 3, 12, Options{.mean = nan}, "mean");
  expect_config_error(Scheme::constant, 4, 3, 12, Options{.value = inf}, "value");
  expect_config_error(Scheme::glorot_uniform, 4, 3, 12, Options{.gain = 0.0}, "gain");
  expect_config_error(Scheme::glorot_normal, 4, 3, 12, Options{.gain = -1.0}, "gain");
  expect_config_error(Scheme::he_uniform, 4, 3, 12, Options{.gain = nan}, "gain");
  expect_config_error(Scheme::he_normal, 4, 3, 12, Options{.gain = inf}, "gain");
  expect_config_error(Scheme::orthogonal, 4, 3, 12, Options{.gain = -2.0}, "gain");
  expect_config_error(Scheme::sparse, 4, 3, 12, Options{.stddev = 1.0, .sparse_k = 0}, "sparse_k");
  expect_config_error(Scheme::sparse, 4, 3, 12, Options{.stddev = 1.0, .sparse_k = -3}, "sparse_k");
  expect_config_error(Scheme::sparse, 4, 3, 12, Options{.stddev = 1.0, .sparse_k = 5}, "exceeds fan_in = 4");
  expect_config_error(Scheme::sparse, 4, 3, 12, Options{.stddev = -1.0, .sparse_k = 2}, "stddev");
  expect_config_error(Scheme::sparse, 4, 3, 12, Options{.stddev = 0.0, .sparse_k = 2}, "stddev");
}

TEST(InitErrors, InvalidSchemeValue) {
  std::vector<float> w(12);
  Rng rng(5);
  EXPECT_THROW(init::initialize(std::span<float>(w), 4, 3, static_cast<Scheme>(99), Options{}, rng),
               ConfigError);
  EXPECT_EQ(init::scheme_name(static_cast<Scheme>(99)), "unknown");
}

TEST(InitErrors, OptionsUnusedByTheSchemeAreNotChecked) {
  std::vector<float> w(12);
  Rng rng(6);
  const Options odd{.low = 1.0, .high = -1.0, .stddev = -1.0, .gain = -1.0, .sparse_k = 0};
  EXPECT_NO_THROW(init::initialize(std::span<float>(w), 4, 3, Scheme::zeros, odd, rng));
  EXPECT_NO_THROW(init::initialize(std::span<float>(w), 4, 3, Scheme::fan_in_uniform, odd, rng));
}

TEST(InitErrors, NamedFunctionsCheckTheirArguments) {
  std::vector<double> w(12);
  Rng rng(8);
  EXPECT_THROW(init::glorot_uniform(std::span<double>(w), 4, 4, rng), ConfigError);
  EXPECT_THROW(init::orthogonal(std::span<double>(w), 4, 3, rng, 0.0), ConfigError);
  EXPECT_THROW(init::sparse(std::span<double>(w), 4, 3, rng, 5), ConfigError);
  EXPECT_THROW(init::uniform(std::span<double>(w), rng, 2.0, 1.0), ConfigError);
  EXPECT_THROW(init::normal(std::span<double>(w), rng, 0.0, -1.0), ConfigError);
  EXPECT_THROW(init::constant(std::span<double>(w), std::nan("")), ConfigError);
}

}  // namespace
