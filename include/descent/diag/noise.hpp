#pragma once
// Gradient noise (section 8.1.3): how far the gradient of a minibatch of n examples lies
// from the gradient over all N examples, and the gradient noise scale of McCandlish et al.
// (2018, "An Empirical Model of Large-Batch Training").
//
//   g_i     the gradient of example i's loss,  G = (1/N) sum_i g_i   (the N-example gradient)
//   Sigma   = (1/N) sum_i (g_i - G)(g_i - G)'  (the per-example covariance over the N examples)
//   g_B     = (1/n) sum_{i in B} g_i,  B drawn uniformly without replacement from the N
//   E |g_B - G|^2 = tr(Sigma) / n * (N - n) / (N - 1)      (sampling without replacement)
//
// The chapter's sigma / sqrt(n): the standard error falls as n^(-1/2), so on a log-log plot
// its slope is -1/2. Drawing from a finite set adds the finite-population correction
// (N - n) / (N - 1), which takes the error to 0 at n = N; `slope` is fitted to the errors
// with that factor divided out (n < N), so it is -1/2 in expectation for any model;
// `slope_uncorrected` is the plain fit over n <= N / 2.
//
// The noise scale B = tr(Sigma) / |G|^2 (McCandlish's B_simple) is the batch size at which
// the minibatch gradient's noise, E |g_B - G|^2 ~ tr(Sigma) / n, equals the signal |G|^2:
// batches much smaller than B are noise-dominated (each step's direction is mostly noise),
// batches much larger waste examples.
//
// Gradients are of the mean cross-entropy (no regularization term) in evaluation mode (batch
// normalization with its running statistics, dropout off), as the Hessian's (hessian.hpp).
// tr(Sigma) is exact over the N examples: each example's gradient is computed once.
// Cost: N single-example gradients, plus about draws x 2N + N log2(N / draws) examples'
// gradients for the minibatches (batch sizes 1, 2, 4, ..., N; batch size n gets
// max(draws, ceil(N / n)) draws: a heavy-tailed |g_i - G| needs many draws at small n).
#include <cstdint>
#include <span>
#include <vector>

#include "descent/nn/module.hpp"
#include "descent/tensor/arena.hpp"
#include "descent/tensor/tensor.hpp"

namespace descent::diag {

struct NoiseOptions {
  int draws = 16;             // minibatches drawn per batch size (at least 2), and at least N / n
  std::uint64_t seed = 1;     // of the draws
  std::int64_t chunk = 256;   // examples per tape when a gradient covers many
};

struct NoiseResult {
  std::vector<std::int64_t> batch_sizes;  // 1, 2, 4, ..., and N itself
  // Per batch size: sqrt of the mean over the draws of |g_B - G|^2 (the root-mean-square
  // error of the minibatch gradient: its standard error).
  std::vector<double> standard_error;
  // sqrt(tr(Sigma) / n * (N - n) / (N - 1)): what standard_error estimates.
  std::vector<double> predicted;
  // standard_error / sqrt((N - n) / (N - 1)) (0 at n = N, where the correction is 0):
  // the sigma / sqrt(n) of the chapter, for an infinite population.
  std::vector<double> corrected;
  // Per batch size, per draw: |g_B - G|^2.
  std::vector<std::vector<double>> squared_errors;
  double slope = 0.0;              // least-squares slope of log(corrected) on log(n), n < N
  double slope_uncorrected = 0.0;  // of log(standard_error) on log(n), n <= N / 2
  double trace_sigma = 0.0;        // tr(Sigma)
  double gradient_norm = 0.0;      // |G|
  double noise_scale = 0.0;        // tr(Sigma) / |G|^2
  double loss = 0.0;               // J over the N examples
  std::int64_t examples = 0;       // N
  int draws = 0;                            // the options' draws
  std::vector<std::int64_t> draws_per_size;  // max(draws, ceil(N / n)) per batch size
};

// x [N, ...] of the arena's dtype, labels i32 [N]. Throws ShapeError for mismatched inputs.
NoiseResult gradient_noise(nn::Module& model, ParameterArena& arena, const Tensor& x, const Tensor& labels,
                           const NoiseOptions& options = {});

// The mean cross-entropy over the examples `indices` (in that order) and its gradient
// (out: arena.size() values), in evaluation mode, `chunk` examples per tape, summed in
// double precision weighted by chunk size.
double subset_gradient(nn::Module& model, ParameterArena& arena, const Tensor& x, const Tensor& labels,
                       std::span<const std::int64_t> indices, std::vector<double>& out, std::int64_t chunk = 256);

// The mean cross-entropy over all examples, in evaluation mode (no gradient).
double mean_loss(nn::Module& model, const Tensor& x, const Tensor& labels, std::int64_t chunk = 256);

// Least-squares slope of y on x.
double fitted_slope(std::span<const double> x, std::span<const double> y);

}  // namespace descent::diag
