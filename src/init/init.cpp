#include "descent/init/init.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <limits>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

#include "descent/error.hpp"

namespace descent::init {
namespace {

constexpr std::array<std::pair<Scheme, std::string_view>, 11> scheme_names{{
    {Scheme::zeros, "zeros"},
    {Scheme::constant, "constant"},
    {Scheme::uniform, "uniform"},
    {Scheme::normal, "normal"},
    {Scheme::glorot_uniform, "glorot_uniform"},
    {Scheme::glorot_normal, "glorot_normal"},
    {Scheme::fan_in_uniform, "fan_in_uniform"},
    {Scheme::he_normal, "he_normal"},
    {Scheme::he_uniform, "he_uniform"},
    {Scheme::orthogonal, "orthogonal"},
    {Scheme::sparse, "sparse"},
}};

[[noreturn]] void fail(Scheme scheme, const std::string& what) {
  throw ConfigError("init." + std::string(scheme_name(scheme)) + ": " + what);
}

std::string number(double x) {
  std::array<char, 32> buffer{};
  std::snprintf(buffer.data(), buffer.size(), "%.10g", x);
  return buffer.data();
}

void check_finite(Scheme scheme, const char* field, double x) {
  if (!std::isfinite(x)) {
    fail(scheme, std::string(field) + " = " + number(x) + ", expected a finite number");
  }
}

void check_gain(Scheme scheme, double gain) {
  if (!std::isfinite(gain) || gain <= 0.0) {
    fail(scheme, "gain = " + number(gain) + ", expected a finite number > 0");
  }
}

// The span must hold exactly fan_out x fan_in values, both fans >= 1.
void check_shape(Scheme scheme, std::size_t size, std::int64_t fan_in, std::int64_t fan_out) {
  if (fan_in < 1) fail(scheme, "fan_in = " + std::to_string(fan_in) + ", expected >= 1");
  if (fan_out < 1) fail(scheme, "fan_out = " + std::to_string(fan_out) + ", expected >= 1");
  if (fan_in > std::numeric_limits<std::int64_t>::max() / fan_out) {
    fail(scheme, "fan_out x fan_in = " + std::to_string(fan_out) + " x " + std::to_string(fan_in) +
                     " overflows int64");
  }
  const std::int64_t expected = fan_in * fan_out;
  if (static_cast<std::uint64_t>(expected) != static_cast<std::uint64_t>(size)) {
    fail(scheme, "weight span holds " + std::to_string(size) + " values, expected fan_out x fan_in = " +
                     std::to_string(fan_out) + " x " + std::to_string(fan_in) + " = " +
                     std::to_string(expected));
  }
}

void check_uniform(Scheme scheme, double low, double high) {
  check_finite(scheme, "low", low);
  check_finite(scheme, "high", high);
  if (!(low < high)) {
    fail(scheme, "low = " + number(low) + ", high = " + number(high) + ", expected low < high");
  }
  if (!std::isfinite(high - low)) {
    fail(scheme, "high - low overflows double (low = " + number(low) + ", high = " + number(high) + ")");
  }
}

void check_normal(Scheme scheme, double mean, double stddev) {
  check_finite(scheme, "mean", mean);
  if (!std::isfinite(stddev) || stddev < 0.0) {
    fail(scheme, "stddev = " + number(stddev) + ", expected a finite number >= 0");
  }
}

void check_sparse(std::int64_t fan_in, std::int64_t k, double stddev) {
  if (k < 1) fail(Scheme::sparse, "sparse_k = " + std::to_string(k) + ", expected >= 1");
  if (k > fan_in) {
    fail(Scheme::sparse,
         "sparse_k = " + std::to_string(k) + " exceeds fan_in = " + std::to_string(fan_in));
  }
  if (!std::isfinite(stddev) || stddev <= 0.0) {
    fail(Scheme::sparse, "stddev = " + number(stddev) + ", expected a finite number > 0");
  }
}

template <class T>
void fill_uniform(std::span<T> w, Rng& rng, double low, double high) {
  for (T& x : w) x = static_cast<T>(rng.uniform(low, high));
}

template <class T>
void fill_normal(std::span<T> w, Rng& rng, double mean, double stddev) {
  for (T& x : w) x = static_cast<T>(rng.normal(mean, stddev));
}

// Orthonormalizes `count` vectors of length `len` stored contiguously (vector j at
// v[j * len]) by modified Gram-Schmidt with one re-orthogonalization pass. Requires
// count <= len. A vector left with (almost) nothing after the projections is redrawn.
void orthonormalize(std::vector<double>& v, std::size_t count, std::size_t len, Rng& rng) {
  constexpr int max_redraws = 64;
  for (std::size_t j = 0; j < count; ++j) {
    double* vj = v.data() + j * len;
    for (int attempt = 0;; ++attempt) {
      double before = 0.0;
      for (std::size_t i = 0; i < len; ++i) before += vj[i] * vj[i];
      for (int pass = 0; pass < 2; ++pass) {
        for (std::size_t p = 0; p < j; ++p) {
          const double* qp = v.data() + p * len;
          double r = 0.0;
          for (std::size_t i = 0; i < len; ++i) r += qp[i] * vj[i];
          for (std::size_t i = 0; i < len; ++i) vj[i] -= r * qp[i];
        }
      }
      double after = 0.0;
      for (std::size_t i = 0; i < len; ++i) after += vj[i] * vj[i];
      if (before > 0.0 && after > 1e-20 * before) {
        const double inv = 1.0 / std::sqrt(after);
        for (std::size_t i = 0; i < len; ++i) vj[i] *= inv;
        break;
      }
      if (attempt == max_redraws) {
        throw NumericError("init.orthogonal: Gram-Schmidt found no independent direction for vector " +
                           std::to_string(j) + " after " + std::to_string(max_redraws) + " redraws");
      }
      for (std::size_t i = 0; i < len; ++i) vj[i] = rng.normal();
    }
  }
}

}  // namespace

Options default_options(Scheme scheme) {
  Options options;
  if (scheme == Scheme::sparse) options.stddev = 1.0;
  return options;
}

Scheme parse_scheme(std::string_view name) {
  for (const auto& [scheme, scheme_str] : scheme_names) {
    if (scheme_str == name) return scheme;
  }
  std::string valid;
  for (const auto& entry : scheme_names) {
    if (!valid.empty()) valid += ", ";
    valid += entry.second;
  }
  throw ConfigError("init: unknown initialization scheme '" + std::string(name) +
                    "', expected one of: " + valid);
}

std::string_view scheme_name(Scheme scheme) {
  for (const auto& [s, name] : scheme_names) {
    if (s == scheme) return name;
  }
  return "unknown";
}

template <class T>
void zeros(std::span<T> w) {
  std::fill(w.begin(), w.end(), T{0});
}

template <class T>
void constant(std::span<T> w, double value) {
  check_finite(Scheme::constant, "value", value);
  std::fill(w.begin(), w.end(), static_cast<T>(value));
}

template <class T>
void uniform(std::span<T> w, Rng& rng, double low, double high) {
  check_uniform(Scheme::uniform, low, high);
  fill_uniform(w, rng, low, high);
}

template <class T>
void normal(std::span<T> w, Rng& rng, double mean, double stddev) {
  check_normal(Scheme::normal, mean, stddev);
  fill_normal(w, rng, mean, stddev);
}

template <class T>
void glorot_uniform(std::span<T> w, std::int64_t fan_in, std::int64_t fan_out, Rng& rng, double gain) {
  check_shape(Scheme::glorot_uniform, w.size(), fan_in, fan_out);
  check_gain(Scheme::glorot_uniform, gain);
  const double bound = gain * std::sqrt(6.0 / (static_cast<double>(fan_in) + static_cast<double>(fan_out)));
  fill_uniform(w, rng, -bound, bound);
}

template <class T>
void glorot_normal(std::span<T> w, std::int64_t fan_in, std::int64_t fan_out, Rng& rng, double gain) {
  check_shape(Scheme::glorot_normal, w.size(), fan_in, fan_out);
  check_gain(Scheme::glorot_normal, gain);
  const double stddev = gain * std::sqrt(2.0 / (static_cast<double>(fan_in) + static_cast<double>(fan_out)));
  fill_normal(w, rng, 0.0, stddev);
}

template <class T>
void fan_in_uniform(std::span<T> w, std::int64_t fan_in, std::int64_t fan_out, Rng& rng) {
  check_shape(Scheme::fan_in_uniform, w.size(), fan_in, fan_out);
  const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
  fill_uniform(w, rng, -bound, bound);
}

template <class T>
void he_normal(std::span<T> w, std::int64_t fan_in, std::int64_t fan_out, Rng& rng, double gain) {
  check_shape(Scheme::he_normal, w.size(), fan_in, fan_out);
  check_gain(Scheme::he_normal, gain);
  const double stddev = gain * std::sqrt(2.0 / static_cast<double>(fan_in));
  fill_normal(w, rng, 0.0, stddev);
}

template <class T>
void he_uniform(std::span<T> w, std::int64_t fan_in, std::int64_t fan_out, Rng& rng, double gain) {
  check_shape(Scheme::he_uniform, w.size(), fan_in, fan_out);
  check_gain(Scheme::he_uniform, gain);
  const double bound = gain * std::sqrt(6.0 / static_cast<double>(fan_in));
  fill_uniform(w, rng, -bound, bound);
}

template <class T>
void orthogonal(std::span<T> w, std::int64_t fan_in, std::int64_t fan_out, Rng& rng, double gain) {
  check_shape(Scheme::orthogonal, w.size(), fan_in, fan_out);
  check_gain(Scheme::orthogonal, gain);
  const auto rows = static_cast<std::size_t>(fan_out);
  const auto cols = static_cast<std::size_t>(fan_in);
  const bool tall = rows >= cols;  // orthonormal columns; otherwise orthonormal rows
  const std::size_t count = tall ? cols : rows;
  const std::size_t len = tall ? rows : cols;

  // Vectors to orthonormalize, stored contiguously: the columns (tall) or the rows (wide)
  // of a Gaussian matrix drawn in row-major order.
  std::vector<double> v(rows * cols);
  for (std::size_t i = 0; i < rows; ++i) {
    for (std::size_t j = 0; j < cols; ++j) {
      const double g = rng.normal();
      if (tall) {
        v[j * len + i] = g;
      } else {
        v[i * len + j] = g;
      }
    }
  }
  orthonormalize(v, count, len, rng);
  for (std::size_t i = 0; i < rows; ++i) {
    for (std::size_t j = 0; j < cols; ++j) {
      const double q = tall ? v[j * len + i] : v[i * len + j];
      w[i * cols + j] = static_cast<T>(gain * q);
    }
  }
}

template <class T>
void sparse(std::span<T> w, std::int64_t fan_in, std::int64_t fan_out, Rng& rng, std::int64_t k,
            double stddev) {
  check_shape(Scheme::sparse, w.size(), fan_in, fan_out);
  check_sparse(fan_in, k, stddev);
  const auto cols = static_cast<std::size_t>(fan_in);
  const auto nonzeros = static_cast<std::size_t>(k);
  std::vector<std::size_t> positions(cols);
  for (std::size_t i = 0; i < static_cast<std::size_t>(fan_out); ++i) {
    const std::span<T> row = w.subspan(i * cols, cols);
    std::fill(row.begin(), row.end(), T{0});
    std::iota(positions.begin(), positions.end(), std::size_t{0});
    for (std::size_t j = 0; j < nonzeros; ++j) {
      const std::size_t pick = j + static_cast<std::size_t>(rng.below(cols - j));
      std::swap(positions[j], positions[pick]);
      row[positions[j]] = static_cast<T>(rng.normal(0.0, stddev));
    }
  }
}

template <class T>
void initialize(std::span<T> w, std::int64_t fan_in, std::int64_t fan_out, Scheme scheme,
                const Options& options, Rng& rng) {
  switch (scheme) {
    case Scheme::zeros:
      check_shape(scheme, w.size(), fan_in, fan_out);
      zeros(w);
      return;
    case Scheme::constant:
      check_shape(scheme, w.size(), fan_in, fan_out);
      constant(w, options.value);
      return;
    case Scheme::uniform:
      check_shape(scheme, w.size(), fan_in, fan_out);
      uniform(w, rng, options.low, options.high);
      return;
    case Scheme::normal:
      check_shape(scheme, w.size(), fan_in, fan_out);
      normal(w, rng, options.mean, options.stddev);
      return;
    case Scheme::glorot_uniform:
      glorot_uniform(w, fan_in, fan_out, rng, options.gain);
      return;
    case Scheme::glorot_normal:
      glorot_normal(w, fan_in, fan_out, rng, options.gain);
      return;
    case Scheme::fan_in_uniform:
      fan_in_uniform(w, fan_in, fan_out, rng);
      return;
    case Scheme::he_normal:
      he_normal(w, fan_in, fan_out, rng, options.gain);
      return;
    case Scheme::he_uniform:
      he_uniform(w, fan_in, fan_out, rng, options.gain);
      return;
    case Scheme::orthogonal:
      orthogonal(w, fan_in, fan_out, rng, options.gain);
      return;
    case Scheme::sparse:
      sparse(w, fan_in, fan_out, rng, options.sparse_k, options.stddev);
      return;
  }
  throw ConfigError("init: invalid Scheme value " + std::to_string(static_cast<int>(scheme)));
}

#define DESCENT_INIT_INSTANTIATE(T)                                                               \
  template void initialize<T>(std::span<T>, std::int64_t, std::int64_t, Scheme, const Options&, Rng&); \
  template void zeros<T>(std::span<T>);                                                           \
  template void constant<T>(std::span<T>, double);                                                \
  template void uniform<T>(std::span<T>, Rng&, double, double);                                   \
  template void normal<T>(std::span<T>, Rng&, double, double);                                    \
  template void glorot_uniform<T>(std::span<T>, std::int64_t, std::int64_t, Rng&, double);        \
  template void glorot_normal<T>(std::span<T>, std::int64_t, std::int64_t, Rng&, double);         \
  template void fan_in_uniform<T>(std::span<T>, std::int64_t, std::int64_t, Rng&);                \
  template void he_normal<T>(std::span<T>, std::int64_t, std::int64_t, Rng&, double);             \
  template void he_uniform<T>(std::span<T>, std::int64_t, std::int64_t, Rng&, double);            \
  template void orthogonal<T>(std::span<T>, std::int64_t, std::int64_t, Rng&, double);            \
  template void sparse<T>(std::span<T>, std::int64_t, std::int64_t, Rng&, std::int64_t, double);

DESCENT_INIT_INSTANTIATE(float)
DESCENT_INIT_INSTANTIATE(double)

#undef DESCENT_INIT_INSTANTIATE

}  // namespace descent::init
