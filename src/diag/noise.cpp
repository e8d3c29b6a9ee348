#include "descent/diag/noise.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <string>

#include "descent/autodiff/tape.hpp"
#include "descent/init/rng.hpp"
#include "descent/loss/loss.hpp"
#include "descent/tensor/kernels.hpp"

namespace descent::diag {
namespace {

// Puts the model in evaluation mode for its lifetime, then back.
class EvalMode {
 public:
  explicit EvalMode(nn::Module& m) : m_(m), was_(m.training()) { m_.set_training(false); }
  ~EvalMode() { m_.set_training(was_); }
  EvalMode(const EvalMode&) = delete;
  EvalMode& operator=(const EvalMode&) = delete;

 private:
  nn::Module& m_;
  bool was_;
};

void check_inputs(ParameterArena& arena, const Tensor& x, const Tensor& labels, const char* who) {
  if (!x.defined() || x.ndim() < 1 || x.dim(0) < 1) {
    throw ShapeError(std::string(who) + ": needs at least one example, got inputs " + (x.defined() ? x.shape().str() : std::string("(none)")));
  }
  if (x.dtype() != arena.dtype()) {
    throw ShapeError(std::string(who) + ": the inputs are " + dtype_name(x.dtype()) + ", the parameters are " + dtype_name(arena.dtype()));
  }
  if (!labels.defined() || labels.dtype() != DType::i32 || labels.ndim() != 1 || labels.dim(0) != x.dim(0)) {
    throw ShapeError(std::string(who) + ": expects i32 labels [" + std::to_string(x.dim(0)) + "], got " +
                     (labels.defined() ? std::string(dtype_name(labels.dtype())) + " " + labels.shape().str() : std::string("(none)")));
  }
}

// Rows `indices` of t (contiguous, examples along dimension 0), copied in that order.
Tensor gather_rows(const Tensor& t, std::span<const std::int64_t> indices) {
  std::vector<std::int64_t> dims(t.shape().dims().begin(), t.shape().dims().end());
  const std::int64_t n = dims[0];
  const std::size_t row_bytes = t.nbytes() / static_cast<std::size_t>(n);
  dims[0] = static_cast<std::int64_t>(indices.size());
  Tensor out = Tensor::empty(Shape(std::span<const std::int64_t>(dims)), t.dtype());
  const auto* src = static_cast<const unsigned char*>(t.raw());
  auto* dst = static_cast<unsigned char*>(out.raw());
  for (std::size_t k = 0; k < indices.size(); ++k) {
    const std::int64_t i = indices[k];
    if (i < 0 || i >= n) throw ShapeError("gradient noise: example index " + std::to_string(i) + " outside [0, " + std::to_string(n) + ")");
    std::memcpy(dst + k * row_bytes, src + static_cast<std::size_t>(i) * row_bytes, row_bytes);
  }
  return out;
}

double squared_distance(const std::vector<double>& a, const std::vector<double>& b) {
  return kernels::squared_distance(a.data(), b.data(), static_cast<std::int64_t>(a.size()));
}

}  // namespace

double subset_gradient(nn::Module& model, ParameterArena& arena, const Tensor& x, const Tensor& labels,
                       std::span<const std::int64_t> indices, std::vector<double>& out, std::int64_t chunk) {
  check_inputs(arena, x, labels, "gradient noise");
  if (indices.empty()) throw ShapeError("gradient noise: a gradient over no examples");
  if (chunk < 1) throw ShapeError("gradient noise: chunk must be at least 1, got " + std::to_string(chunk));
  arena.freeze();
  const auto dim = static_cast<std::size_t>(arena.size());
  out.assign(dim, 0.0);
  EvalMode eval(model);
  const auto n = static_cast<std::int64_t>(indices.size());
  Tensor g = Tensor::empty(Shape{arena.size()}, arena.dtype());
  double loss = 0.0;
  for (std::int64_t b = 0; b < n; b += chunk) {
    const std::int64_t e = std::min(n, b + chunk);
    const auto part = indices.subspan(static_cast<std::size_t>(b), static_cast<std::size_t>(e - b));
    autodiff::Tape tape;
    autodiff::Var l = loss::cross_entropy(model.forward(tape, tape.constant(gather_rows(x, part))), gather_rows(labels, part));
    g.fill(0.0);  // backward accumulates
    tape.backward(l, g);
    const double w = static_cast<double>(e - b) / static_cast<double>(n);
    loss += w * l.value().item();
    dispatch_float(arena.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const T* p = g.data<T>();
      for (std::size_t i = 0; i < dim; ++i) out[i] += w * static_cast<double>(p[i]);
    });
  }
  return loss;
}

double mean_loss(nn::Module& model, const Tensor& x, const Tensor& labels, std::int64_t chunk) {
  if (chunk < 1) throw ShapeError("mean loss: chunk must be at least 1, got " + std::to_string(chunk));
  EvalMode eval(model);
  const std::int64_t n = x.dim(0);
  double loss = 0.0;
  for (std::int64_t b = 0; b < n; b += chunk) {
    const std::int64_t e = std::min(n, b + chunk);
    autodiff::Tape tape;
    autodiff::Var l = loss::cross_entropy(model.forward(tape, tape.constant(x.rows(b, e))), labels.rows(b, e));
    loss += static_cast<double>(e - b) / static_cast<double>(n) * l.value().item();
  }
  return loss;
}

double fitted_slope(std::span<const double> x, std::span<const double> y) {
  const auto m = static_cast<double>(x.size());
  if (x.size() < 2) return std::nan("");
  const double mx = std::accumulate(x.begin(), x.end(), 0.0) / m;
  const double my = std::accumulate(y.begin(), y.end(), 0.0) / m;
  double sxy = 0.0, sxx = 0.0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    sxy += (x[i] - mx) * (y[i] - my);
    sxx += (x[i] - mx) * (x[i] - mx);
  }
  return sxy / sxx;
}

NoiseResult gradient_noise(nn::Module& model, ParameterArena& arena, const Tensor& x, const Tensor& labels,
                           const NoiseOptions& options) {
  check_inputs(arena, x, labels, "gradient noise");
  if (options.draws < 2) throw ShapeError("gradient noise: draws must be at least 2, got " + std::to_string(options.draws));
  const std::int64_t n_all = x.dim(0);
  NoiseResult r;
  r.examples = n_all;
  r.draws = options.draws;

  std::vector<std::int64_t> all(static_cast<std::size_t>(n_all));
  std::iota(all.begin(), all.end(), std::int64_t{0});
  std::vector<double> full;
  r.loss = subset_gradient(model, arena, x, labels, all, full, options.chunk);
  r.gradient_norm = std::sqrt(squared_distance(full, std::vector<double>(full.size(), 0.0)));

  // tr(Sigma) = (1/N) sum_i |g_i - G|^2, each example's gradient once.
  std::vector<double> gi;
  double trace = 0.0;
  for (std::int64_t i = 0; i < n_all; ++i) {
    const std::int64_t one[1] = {i};
    subset_gradient(model, arena, x, labels, one, gi, options.chunk);
    trace += squared_distance(gi, full);
  }
  r.trace_sigma = trace / static_cast<double>(n_all);
  r.noise_scale = r.trace_sigma / (r.gradient_norm * r.gradient_norm);

  for (std::int64_t n = 1; n < n_all; n *= 2) r.batch_sizes.push_back(n);
  r.batch_sizes.push_back(n_all);

  Rng rng(options.seed);
  std::vector<std::int64_t> perm = all;
  std::vector<double> gb;
  std::vector<double> log_n, log_c, log_n_raw, log_raw;
  for (const std::int64_t n : r.batch_sizes) {
    std::vector<double> errors;
    // At least `draws`, and at least N examples in all: small batches are cheap, and a
    // heavy-tailed |g_i - G| needs many draws for its mean (few draws miss the rare large ones).
    const std::int64_t draws = std::max<std::int64_t>(options.draws, (n_all + n - 1) / n);
    r.draws_per_size.push_back(draws);
    for (std::int64_t d = 0; d < draws; ++d) {
      // The first n of a partial Fisher-Yates shuffle: n distinct examples, uniformly.
      for (std::int64_t k = 0; k < n; ++k) {
        const auto j = k + static_cast<std::int64_t>(rng.below(static_cast<std::uint64_t>(n_all - k)));
        std::swap(perm[static_cast<std::size_t>(k)], perm[static_cast<std::size_t>(j)]);
      }
      subset_gradient(model, arena, x, labels, std::span<const std::int64_t>(perm.data(), static_cast<std::size_t>(n)), gb,
                      options.chunk);
      errors.push_back(squared_distance(gb, full));
    }
    const double mse = std::accumulate(errors.begin(), errors.end(), 0.0) / static_cast<double>(errors.size());
    const double fpc = n_all > 1 ? static_cast<double>(n_all - n) / static_cast<double>(n_all - 1) : 0.0;
    r.squared_errors.push_back(errors);
    r.standard_error.push_back(std::sqrt(mse));
    r.predicted.push_back(std::sqrt(r.trace_sigma / static_cast<double>(n) * fpc));
    r.corrected.push_back(fpc > 0.0 ? std::sqrt(mse / fpc) : 0.0);
    if (n < n_all && mse > 0.0) {
      log_n.push_back(std::log(static_cast<double>(n)));
      log_c.push_back(0.5 * std::log(mse / fpc));
      if (2 * n <= n_all) {
        log_n_raw.push_back(log_n.back());
        log_raw.push_back(0.5 * std::log(mse));
      }
    }
  }
  r.slope = fitted_slope(log_n, log_c);
  r.slope_uncorrected = fitted_slope(log_n_raw, log_raw);
  return r;
}

}  // namespace descent::diag
