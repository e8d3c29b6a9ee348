#include "descent/loss/loss.hpp"

#include <cmath>
#include <numbers>

namespace descent::loss {

Var cross_entropy(Var logits, const Tensor& labels) { return autodiff::softmax_cross_entropy(logits, labels); }

Var mse(Var prediction, Var target) { return autodiff::mean(autodiff::square(autodiff::sub(prediction, target))); }

Var gaussian_nll(Var prediction, Var target, Var beta) {
  using namespace autodiff;
  if (beta.value().numel() != 1) throw ShapeError("gaussian_nll: beta must have one element, got " + beta.shape().str());
  // beta/2 mean((y - yhat)^2) - 1/2 log(beta) + 1/2 log(2 pi)
  Var fit = mul_scalar(mean(square(sub(prediction, target))), beta);
  Var log_beta = reshape(log(beta), Shape{});
  return add_scalar(sub(scale(fit, 0.5), scale(log_beta, 0.5)), 0.5 * std::log(2.0 * std::numbers::pi));
}

namespace {
void check_logits_labels(const Tensor& logits, const Tensor& labels, const char* what) {
  if (logits.ndim() != 2 || labels.dtype() != DType::i32 || labels.numel() != logits.dim(0)) {
    throw ShapeError(std::string(what) + ": expects logits [B, C] and i32 labels [B], got " + logits.shape().str() +
                     " and " + labels.shape().str());
  }
}
}  // namespace

std::vector<std::int32_t> predictions(const Tensor& logits) {
  if (logits.ndim() != 2) throw ShapeError("predictions: logits must be [B, C], got " + logits.shape().str());
  const std::int64_t rows = logits.dim(0), cols = logits.dim(1);
  std::vector<std::int32_t> out(static_cast<std::size_t>(rows));
  dispatch_float(logits.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* z = logits.data<T>();
    for (std::int64_t r = 0; r < rows; ++r) {
      std::int64_t best = 0;
      for (std::int64_t c = 1; c < cols; ++c) {
        if (z[r * cols + c] > z[r * cols + best]) best = c;
      }
      out[static_cast<std::size_t>(r)] = static_cast<std::int32_t>(best);
    }
  });
  return out;
}

std::int64_t count_errors(const Tensor& logits, const Tensor& labels) {
  check_logits_labels(logits, labels, "count_errors");
  const auto pred = predictions(logits);
  const std::int32_t* y = labels.data<std::int32_t>();
  std::int64_t errors = 0;
  for (std::size_t i = 0; i < pred.size(); ++i) errors += pred[i] != y[i] ? 1 : 0;
  return errors;
}

double zero_one_error(const Tensor& logits, const Tensor& labels) {
  check_logits_labels(logits, labels, "zero_one_error");
  if (logits.dim(0) == 0) return 0.0;
  return static_cast<double>(count_errors(logits, labels)) / static_cast<double>(logits.dim(0));
}

void accumulate_confusion(const Tensor& logits, const Tensor& labels, std::vector<std::int64_t>& counts) {
  check_logits_labels(logits, labels, "confusion");
  const std::int64_t classes = logits.dim(1);
  counts.resize(static_cast<std::size_t>(classes * classes), 0);
  const auto pred = predictions(logits);
  const std::int32_t* y = labels.data<std::int32_t>();
  for (std::size_t i = 0; i < pred.size(); ++i) {
    if (y[i] < 0 || y[i] >= classes) throw DataError("confusion: label " + std::to_string(y[i]) + " out of range");
    counts[static_cast<std::size_t>(y[i] * classes + pred[i])] += 1;
  }
}

}  // namespace descent::loss
