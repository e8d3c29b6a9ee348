#pragma once
// The one random number generator of descent: seeded, portable, serializable.
//
// Bits come from std::mt19937_64 (its output sequence is fixed by the C++ standard);
// uniform and normal draws are computed here rather than by <random>'s distributions,
// whose algorithms differ between standard libraries. So the same seed gives the same
// bits on every platform and compiler. The full state round-trips through
// save_state()/load_state() (checkpoints, exact resume).
#include <cstdint>
#include <cmath>
#include <random>
#include <string>

namespace descent {

class Rng {
 public:
  explicit Rng(std::uint64_t seed = 0) : engine_(seed) {}

  // 64 uniformly distributed bits.
  std::uint64_t next_u64() { return engine_(); }

  // Uniform on [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }

  // Uniform on [lo, hi).
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }

  // Standard normal by the Box-Muller transform; the second value of each pair is kept.
  double normal() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    double u1 = 0.0;
    do {
      u1 = uniform();
    } while (u1 <= 0.0);
    const double u2 = uniform();
    const double radius = std::sqrt(-2.0 * std::log(u1));
    constexpr double two_pi = 6.283185307179586476925286766559;
    spare_ = radius * std::sin(two_pi * u2);
    has_spare_ = true;
    return radius * std::cos(two_pi * u2);
  }

  double normal(double mean, double stddev) { return mean + stddev * normal(); }

  // Uniform integer in [0, n) without modulo bias (Lemire's method would do too; this
  // rejection loop is simple and exact). Requires n > 0.
  std::uint64_t below(std::uint64_t n) {
    if (n == 0) throw_empty_range();
    const std::uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    std::uint64_t x = 0;
    do {
      x = next_u64();
    } while (x >= limit);
    return x % n;
  }

  // The complete state as text (engine state and the cached normal), and back.
  std::string save_state() const;
  void load_state(const std::string& state);

 private:
  [[noreturn]] static void throw_empty_range();
  std::mt19937_64 engine_;
  bool has_spare_ = false;
  double spare_ = 0.0;
};

}  // namespace descent
