#pragma once
// Losses (surrogates, minimized) and metrics (the true loss, reported).
//
// Every loss is a mean over the batch: J(theta) = (1/m) sum_i L(f(x_i; theta), y_i)
// (Goodfellow et al. 2016, eq. 8.2-8.3). Losses built from tape operations get their
// gradients and exact Hessian-vector products from the tape.
#include <cstdint>
#include <vector>

#include "descent/autodiff/ops.hpp"

namespace descent::loss {

using autodiff::Var;

// Negative log-likelihood of the correct class under softmax(logits), fused and stable
// for large logits. logits [B, C], labels i32 [B] in [0, C).
Var cross_entropy(Var logits, const Tensor& labels);

// Mean squared error, the mean over all elements of (prediction - target)^2
// (PyTorch's MSELoss with reduction='mean'). Same shapes.
Var mse(Var prediction, Var target);

// Gaussian negative log-likelihood with a learned precision beta (one element, > 0):
//   mean over elements of  beta/2 (y - yhat)^2 - 1/2 log beta + 1/2 log(2 pi).
// The chapter's example (section 8.1, via 5.5.1) of a loss without a lower bound: when
// the fit is exact on the training set, beta -> infinity drives it to -infinity.
Var gaussian_nll(Var prediction, Var target, Var beta);

// ---- metrics: the true loss ----
// argmax of each row of logits [B, C].
std::vector<std::int32_t> predictions(const Tensor& logits);
// Number of examples whose argmax differs from the label (0-1 loss, summed).
std::int64_t count_errors(const Tensor& logits, const Tensor& labels);
// Fraction misclassified (0-1 error).
double zero_one_error(const Tensor& logits, const Tensor& labels);
// Confusion counts, row-major [C, C]: entry (true, predicted) added into `counts`.
void accumulate_confusion(const Tensor& logits, const Tensor& labels, std::vector<std::int64_t>& counts);

}  // namespace descent::loss
