#pragma once
// Weight initialization schemes (Goodfellow et al. 2016, section 8.4).
//
// Layout: a weight matrix is row-major fan_out x fan_in; row i holds the incoming weights
// of unit i (the layout of PyTorch's Linear). For a convolution kernel
// fan_in = in_channels * kh * kw and fan_out = out_channels, so the kernel tensor
// [out, in, kh, kw] is the same row-major matrix.
//
// Every random value is drawn in double precision from descent::Rng and then rounded to T
// (round to nearest), so for one seed the float result is exactly the double result rounded
// to float, and the same seed gives the same bits on every platform. Bounds below are
// therefore met after rounding: a value drawn from [lo, hi) lies in
// [T(lo), T(hi)] once stored as T.
//
// Errors: every function throws descent::ConfigError, naming the scheme and the offending
// field, when
//   - w.size() != fan_in * fan_out, or a fan is < 1 (or their product overflows int64),
//   - an option is out of range: low >= high, stddev < 0, gain <= 0, sparse_k < 1 or
//     sparse_k > fan_in, or any option used by the scheme is not finite.
// Only the options the scheme uses are checked. On error w is left unchanged and nothing is
// drawn from the Rng.
//
// The templates are defined in src/init/init.cpp and instantiated for T = float and double.
//
// Cost: O(fan_in * fan_out) time for every scheme except orthogonal, which is
// O(fan_in * fan_out * min(fan_in, fan_out)) time and O(fan_in * fan_out) doubles of scratch.
#include <cstdint>
#include <span>
#include <string_view>

#include "descent/init/rng.hpp"

namespace descent::init {

enum class Scheme {
  zeros,           // all 0
  constant,        // all Options::value
  uniform,         // U(low, high)
  normal,          // N(mean, stddev^2)
  glorot_uniform,  // U(-a, a), a = gain * sqrt(6 / (fan_in + fan_out))   (Glorot & Bengio 2010)
  glorot_normal,   // N(0, gain^2 * 2 / (fan_in + fan_out))
  fan_in_uniform,  // U(-1/sqrt(fan_in), 1/sqrt(fan_in))                 (Goodfellow et al. 8.4)
  he_normal,       // N(0, gain^2 * 2 / fan_in)                           (He et al. 2015)
  he_uniform,      // U(-a, a), a = gain * sqrt(6 / fan_in)
  orthogonal,      // gain * (orthonormal columns if fan_out >= fan_in, else rows)  (Saxe et al. 2013)
  sparse,          // k non-zeros N(0, stddev^2) per row, the rest 0        (Martens 2010)
};

struct Options {
  double value = 0.0;                // constant
  double low = -0.05, high = 0.05;   // uniform
  double mean = 0.0, stddev = 0.01;  // normal; stddev is also that of sparse's non-zeros
  double gain = 1.0;                 // glorot_*, he_*, orthogonal
  std::int64_t sparse_k = 15;        // sparse: non-zero incoming weights per unit
};

// The conventional options of a scheme: Options{} except for sparse, whose non-zeros are
// unit Gaussians in Martens (2010), so stddev = 1 there. Start a config from these.
Options default_options(Scheme scheme);

// "zeros", "constant", "uniform", "normal", "glorot_uniform", "glorot_normal",
// "fan_in_uniform", "he_normal", "he_uniform", "orthogonal", "sparse".
// parse_scheme throws ConfigError naming the unknown name and listing the valid ones.
Scheme parse_scheme(std::string_view name);
std::string_view scheme_name(Scheme scheme);

// Fills w (fan_out x fan_in, row-major) by the scheme, reading the options it uses.
template <class T>
void initialize(std::span<T> w, std::int64_t fan_in, std::int64_t fan_out, Scheme scheme,
                const Options& options, Rng& rng);

// One function per scheme; each is what initialize() calls.

// w[i] = 0 and w[i] = value. No random draws.
template <class T>
void zeros(std::span<T> w);
template <class T>
void constant(std::span<T> w, double value);

// Independent U(low, high) and N(mean, stddev^2) values, in index order.
template <class T>
void uniform(std::span<T> w, Rng& rng, double low, double high);
template <class T>
void normal(std::span<T> w, Rng& rng, double mean, double stddev);

// Normalized initialization (Glorot & Bengio 2010): U(-a, a) with
// a = gain * sqrt(6 / (fan_in + fan_out)), and N(0, gain^2 * 2 / (fan_in + fan_out)).
// Both have variance gain^2 * 2 / (fan_in + fan_out).
template <class T>
void glorot_uniform(std::span<T> w, std::int64_t fan_in, std::int64_t fan_out, Rng& rng,
                    double gain = 1.0);
template <class T>
void glorot_normal(std::span<T> w, std::int64_t fan_in, std::int64_t fan_out, Rng& rng,
                   double gain = 1.0);

// U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (Goodfellow et al. 2016, 8.4); variance 1/(3 fan_in).
template <class T>
void fan_in_uniform(std::span<T> w, std::int64_t fan_in, std::int64_t fan_out, Rng& rng);

// He et al. (2015), for rectifiers: N(0, gain^2 * 2 / fan_in) and U(-a, a) with
// a = gain * sqrt(6 / fan_in); both have variance gain^2 * 2 / fan_in. gain = 1 is He's
// ReLU setting (unlike PyTorch's kaiming_*, whose gain argument already includes sqrt(2)).
template <class T>
void he_normal(std::span<T> w, std::int64_t fan_in, std::int64_t fan_out, Rng& rng,
               double gain = 1.0);
template <class T>
void he_uniform(std::span<T> w, std::int64_t fan_in, std::int64_t fan_out, Rng& rng,
                double gain = 1.0);

// Random orthogonal initialization (Saxe et al. 2013). A fan_out x fan_in matrix of N(0, 1)
// values is drawn in row-major order and orthonormalized in double precision by modified
// Gram-Schmidt (with one re-orthogonalization pass): if fan_out >= fan_in its columns, so
// W^T W = gain^2 I; otherwise its rows, so W W^T = gain^2 I. The result is Haar-distributed
// over such matrices. A vector that loses almost all of its norm to the projection (an event
// of probability ~0) is redrawn.
template <class T>
void orthogonal(std::span<T> w, std::int64_t fan_in, std::int64_t fan_out, Rng& rng,
                double gain = 1.0);

// Sparse initialization (Martens 2010): each row (unit) gets exactly k non-zero incoming
// weights, at positions chosen uniformly without replacement (partial Fisher-Yates with
// Rng::below), each N(0, stddev^2); every other entry is 0. Requires 1 <= k <= fan_in and
// stddev > 0. Rows are processed in order; for each row the k positions and values are
// drawn alternately (position, value, position, value, ...).
template <class T>
void sparse(std::span<T> w, std::int64_t fan_in, std::int64_t fan_out, Rng& rng,
            std::int64_t k = 15, double stddev = 1.0);

}  // namespace descent::init
