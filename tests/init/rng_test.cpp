// descent::Rng: determinism per seed, the uniform/normal/below distributions, and the
// save_state/load_state round trip.
#include "descent/init/rng.hpp"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "descent/error.hpp"

namespace {

using descent::Rng;

constexpr double sigmas = 5.0;

TEST(Rng, SameSeedSameSequenceOtherSeedDiffers) {
  Rng a(42);
  Rng b(42);
  Rng c(43);
  int equal_to_c = 0;
  for (int i = 0; i < 1000; ++i) {
    const std::uint64_t x = a.next_u64();
    EXPECT_EQ(x, b.next_u64());
    equal_to_c += x == c.next_u64() ? 1 : 0;
  }
  EXPECT_EQ(equal_to_c, 0);

  Rng d(7);
  Rng e(7);
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(std::bit_cast<std::uint64_t>(d.normal()), std::bit_cast<std::uint64_t>(e.normal()));
    EXPECT_EQ(d.below(1000), e.below(1000));
    EXPECT_EQ(d.uniform(), e.uniform());
  }
}

TEST(Rng, BitsAreTheStandardMersenneTwister) {
  // The C++ standard fixes the 10000th output of mt19937_64 seeded with 5489.
  Rng rng(5489);
  for (int i = 0; i < 9999; ++i) rng.next_u64();
  EXPECT_EQ(rng.next_u64(), 9981545732273789042ull);
}

TEST(Rng, UniformIsTheTop53Bits) {
  Rng rng(3);
  Rng raw(3);
  for (int i = 0; i < 100; ++i) {
    const double expected = static_cast<double>(raw.next_u64() >> 11) * 0x1.0p-53;
    EXPECT_EQ(rng.uniform(), expected);
  }
}

TEST(Rng, UniformRangeMeanAndVariance) {
  Rng rng(1);
  constexpr int n = 200000;
  double sum = 0.0;
  double squares = 0.0;
  for (int i = 0; i < n; ++i) {
    const double u = rng.uniform();
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    sum += u;
    squares += u * u;
  }
  const double mean = sum / n;
  const double variance = squares / n - mean * mean;
  // U(0,1): mean 1/2, variance 1/12, Var((u - 1/2)^2) = 1/80 - 1/144.
  EXPECT_NEAR(mean, 0.5, sigmas * std::sqrt(1.0 / 12.0 / n));
  EXPECT_NEAR(variance, 1.0 / 12.0, sigmas * std::sqrt((1.0 / 80.0 - 1.0 / 144.0) / n));

  for (int i = 0; i < 10000; ++i) {
    const double x = rng.uniform(-3.0, -1.0);
    ASSERT_GE(x, -3.0);
    ASSERT_LT(x, -1.0);
  }
}

TEST(Rng, NormalMeanVarianceAndShape) {
  Rng rng(2);
  constexpr int n = 200000;
  double sum = 0.0;
  double squares = 0.0;
  double fourth = 0.0;
  int within_one = 0;
  for (int i = 0; i < n; ++i) {
    const double z = rng.normal();
    ASSERT_TRUE(std::isfinite(z));
    sum += z;
    squares += z * z;
    fourth += z * z * z * z;
    within_one += std::abs(z) < 1.0 ? 1 : 0;
  }
  const double mean = sum / n;
  EXPECT_NEAR(mean, 0.0, sigmas * std::sqrt(1.0 / n));
  EXPECT_NEAR(squares / n - mean * mean, 1.0, sigmas * std::sqrt(2.0 / n));
  // E z^4 = 3, Var(z^4) = 105 - 9.
  EXPECT_NEAR(fourth / n, 3.0, sigmas * std::sqrt(96.0 / n));
  const double p = 0.6826894921370859;
  EXPECT_NEAR(static_cast<double>(within_one) / n, p, sigmas * std::sqrt(p * (1 - p) / n));

  Rng shifted(2);
  Rng plain(2);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(shifted.normal(5.0, 2.0), 5.0 + 2.0 * plain.normal());
}

TEST(Rng, BelowInRangeAndRoughlyUniform) {
  Rng rng(4);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(rng.below(1), 0u);
  const std::uint64_t huge = (std::uint64_t{1} << 63) + 12345;
  for (int i = 0; i < 1000; ++i) ASSERT_LT(rng.below(huge), huge);

  constexpr std::uint64_t bins = 10;
  constexpr int n = 100000;
  std::vector<double> counts(bins, 0.0);
  for (int i = 0; i < n; ++i) {
    const std::uint64_t x = rng.below(bins);
    ASSERT_LT(x, bins);
    counts[x] += 1.0;
  }
  const double expected = static_cast<double>(n) / bins;
  double chi2 = 0.0;
  for (double c : counts) chi2 += (c - expected) * (c - expected) / expected;
  // 9 degrees of freedom: P(chi2 > 40) ~ 7e-6.
  EXPECT_LT(chi2, 40.0);

  // Large n, not a power of two: the top and bottom halves are equally likely.
  const std::uint64_t big = 3 * (std::uint64_t{1} << 61) + 1;
  int upper = 0;
  for (int i = 0; i < 20000; ++i) upper += rng.below(big) >= big / 2 ? 1 : 0;
  EXPECT_NEAR(upper, 10000, sigmas * std::sqrt(20000 * 0.25));
}

// Draws a mixed sequence whose every value is compared bit for bit.
std::vector<std::uint64_t> draw_mixed(Rng& rng) {
  std::vector<std::uint64_t> out;
  for (int i = 0; i < 50; ++i) {
    out.push_back(std::bit_cast<std::uint64_t>(rng.normal()));
    out.push_back(std::bit_cast<std::uint64_t>(rng.uniform()));
    out.push_back(rng.below(97));
    out.push_back(rng.next_u64());
  }
  return out;
}

TEST(Rng, SaveLoadContinuesTheSequenceWithACachedSpare) {
  Rng original(77);
  original.normal();  // leaves the second Box-Muller value cached
  const std::string state = original.save_state();

  Rng restored(1);
  restored.normal();
  restored.load_state(state);
  // The first draw after loading must be the cached spare, not a fresh pair.
  EXPECT_EQ(std::bit_cast<std::uint64_t>(restored.normal()), std::bit_cast<std::uint64_t>(original.normal()));
  EXPECT_EQ(draw_mixed(restored), draw_mixed(original));
}

TEST(Rng, SaveLoadContinuesTheSequenceWithoutASpare) {
  Rng original(78);
  original.normal();
  original.normal();  // the spare is consumed
  for (int i = 0; i < 5; ++i) original.next_u64();
  const std::string state = original.save_state();

  Rng restored(2);
  restored.normal();  // has a spare, which load_state must clear
  restored.load_state(state);
  EXPECT_EQ(draw_mixed(restored), draw_mixed(original));
  EXPECT_EQ(restored.save_state(), original.save_state());
}

TEST(Rng, LoadStateOfGarbageThrowsAndKeepsTheState) {
  Rng good(9);
  good.normal();
  const std::string state = good.save_state();
  const std::vector<std::string> garbage = {
      "",
      "hello",
      "1 2 3",
      state.substr(0, state.size() / 2),             // truncated engine
      state.substr(0, state.rfind(' ')),             // missing the spare's bits
      state.substr(0, state.rfind(' ')) + " x",      // spare bits not a number
  };
  std::string bad_flag = state;
  const std::size_t flag_at = bad_flag.rfind(' ', bad_flag.rfind(' ') - 1) + 1;
  bad_flag[flag_at] = '2';  // spare flag must be 0 or 1

  Rng rng(10);
  Rng twin(10);
  for (const std::string& text : garbage) {
    EXPECT_THROW(rng.load_state(text), descent::Error) << "state: '" << text.substr(0, 40) << "'";
  }
  EXPECT_THROW(rng.load_state(bad_flag), descent::Error);
  // A failed load leaves the generator as it was.
  EXPECT_EQ(draw_mixed(rng), draw_mixed(twin));
}

}  // namespace
