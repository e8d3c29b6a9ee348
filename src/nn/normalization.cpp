#include "descent/nn/normalization.hpp"

#include <cmath>
#include <sstream>
#include <vector>

namespace descent::nn {

BatchNorm::BatchNorm(std::int64_t num_features, BatchNormOptions options) : features_(num_features), options_(options) {
  if (features_ < 1) throw ConfigError("BatchNorm: num_features must be >= 1, got " + std::to_string(features_));
  if (!std::isfinite(options_.eps) || options_.eps < 0.0) {
    throw ConfigError("BatchNorm: eps must be a finite number >= 0, got " + std::to_string(options_.eps));
  }
  if (!(options_.momentum >= 0.0 && options_.momentum <= 1.0)) {
    throw ConfigError("BatchNorm: momentum must be in [0, 1], got " + std::to_string(options_.momentum));
  }
}

void BatchNorm::declare(ParameterArena& arena, const std::string& prefix) {
  arena_ = &arena;
  const Shape shape{features_};
  weight_ = arena.add(prefix + ".weight", shape, {.role = ParamRole::scale, .fan_in = 1, .fan_out = features_});
  bias_ = arena.add(prefix + ".bias", shape, {.role = ParamRole::shift, .fan_in = 1, .fan_out = features_});
  running_mean_ = arena.add_buffer(prefix + ".running_mean", shape, 0.0);
  running_var_ = arena.add_buffer(prefix + ".running_var", shape, 1.0);
}

Var BatchNorm::forward(Tape& tape, Var x) {
  if (arena_ == nullptr) throw ShapeError("BatchNorm: parameters were never declared (add the module to a Sequential)");
  const Tensor& xv = x.value();
  if (xv.ndim() < 2 || xv.ndim() > 4 || xv.dim(1) != features_) {
    throw ShapeError("BatchNorm(" + std::to_string(features_) + "): expects an input [N, " + std::to_string(features_) +
                     "] or [N, " + std::to_string(features_) + ", H, W], got " + xv.shape().str());
  }
  Var gamma = tape.param(*arena_, weight_);
  Var beta = tape.param(*arena_, bias_);
  const std::int64_t count = xv.numel() / features_;
  if (training_) {
    if (count < 2) {
      throw ShapeError("BatchNorm(" + std::to_string(features_) + "): training needs more than one value per channel, got input " +
                       xv.shape().str() + " (use a larger batch or drop the last partial batch)");
    }
    autodiff::BatchStatistics stats;
    Var y = autodiff::batch_norm(x, gamma, beta, {.eps = options_.eps, .statistics = &stats});
    update_running_statistics(stats, count);
    return y;
  }
  // Evaluation: y = scale x + shift with scale = gamma / sqrt(running_var + eps) and
  // shift = beta - running_mean scale; the running statistics are constants of the tape.
  Tensor inv_std = Tensor::empty(Shape{features_}, xv.dtype());
  const Tensor var = arena_->buffer(running_var_);
  dispatch_float(xv.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* v = var.data<T>();
    T* out = inv_std.data<T>();
    for (std::int64_t c = 0; c < features_; ++c) {
      out[c] = static_cast<T>(1.0 / std::sqrt(static_cast<double>(v[c]) + options_.eps));
    }
  });
  Var scale = autodiff::mul(gamma, tape.constant(inv_std));
  Var shift = autodiff::sub(beta, autodiff::mul(tape.constant(arena_->buffer(running_mean_)), scale));
  return autodiff::channel_affine(x, scale, shift);
}

void BatchNorm::update_running_statistics(const autodiff::BatchStatistics& stats, std::int64_t count) {
  const double mom = options_.momentum;
  const double unbias = static_cast<double>(count) / static_cast<double>(count - 1);
  Tensor mean = arena_->buffer(running_mean_);
  Tensor var = arena_->buffer(running_var_);
  dispatch_float(mean.dtype(), [&](auto zero) {
    using T = decltype(zero);
    T* rm = mean.data<T>();
    T* rv = var.data<T>();
    const T* bm = stats.mean.data<T>();
    const T* bv = stats.var.data<T>();
    for (std::int64_t c = 0; c < features_; ++c) {
      rm[c] = static_cast<T>((1.0 - mom) * static_cast<double>(rm[c]) + mom * static_cast<double>(bm[c]));
      rv[c] = static_cast<T>((1.0 - mom) * static_cast<double>(rv[c]) + mom * unbias * static_cast<double>(bv[c]));
    }
  });
}

Shape BatchNorm::output_shape(const Shape& input) const {
  if ((input.ndim() != 1 && input.ndim() != 3) || input[0] != features_)
    throw ShapeError(describe() + ": expects an input [" + std::to_string(features_) + "] or [" +
                     std::to_string(features_) + ", H, W] per example, got " + input.str());
  return input;
}

std::string BatchNorm::describe() const {
  std::ostringstream out;
  out << "BatchNorm(" << features_ << ", eps " << options_.eps << ", momentum " << options_.momentum << ")";
  return out.str();
}

Dropout::Dropout(double p, std::uint64_t seed) : p_(p), rng_(seed) {
  if (!(p_ >= 0.0 && p_ < 1.0)) throw ConfigError("Dropout: p must be in [0, 1), got " + std::to_string(p_));
}

Var Dropout::forward(Tape& tape, Var x) {
  if (!training_ || p_ == 0.0) return x;
  const Tensor& xv = x.value();
  Tensor mask = Tensor::empty(xv.shape(), xv.dtype());
  // Keep an element when a uniform 32-bit draw is below (1 - p) 2^32.
  const auto threshold = static_cast<std::uint64_t>(std::llround((1.0 - p_) * 4294967296.0));
  const double keep_scale = 1.0 / (1.0 - p_);
  dispatch_float(xv.dtype(), [&](auto zero) {
    using T = decltype(zero);
    T* m = mask.data<T>();
    const T kept = static_cast<T>(keep_scale);
    const std::int64_t n = mask.numel();
    std::int64_t i = 0;
    for (; i + 1 < n; i += 2) {
      const std::uint64_t bits = rng_.next_u64();
      m[i] = (bits & 0xffffffffu) < threshold ? kept : T(0);
      m[i + 1] = (bits >> 32) < threshold ? kept : T(0);
    }
    if (i < n) m[i] = (rng_.next_u64() & 0xffffffffu) < threshold ? kept : T(0);
  });
  return autodiff::mul(x, tape.constant(mask));
}

std::string Dropout::describe() const {
  std::ostringstream out;
  out << "Dropout(" << p_ << ")";
  return out.str();
}

}  // namespace descent::nn
