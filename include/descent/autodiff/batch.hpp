#pragma once
// Per-channel operations for batch normalization (Ioffe & Szegedy 2015, "Batch
// Normalization: Accelerating Deep Network Training by Reducing Internal Covariate Shift";
// Goodfellow et al. 2016, section 8.7.1), with their gradient and exact second-order
// (R-operator) rules like every operation of ops.hpp.
//
// Channels: an input of 2 to 4 dimensions is read as [N, C, ...]: dimension 1 is the
// channel, and a channel's statistics run over every other dimension, N times the product
// of the trailing ones. So x [N, C] (after a linear layer) normalizes each feature over the
// batch, and x [B, C, H, W] (after a convolution) each channel over (B, H, W).
//
// Notation: m the count of a channel, mean_c and var_c (biased: divides by m) its batch
// statistics, s_c = 1 / sqrt(var_c + eps), xh = (x - mean_c) s_c the normalized input.
#include "descent/autodiff/tape.hpp"

namespace descent::autodiff {

// A channel's batch statistics as batch_norm computed them, each [C] in x's dtype.
struct BatchStatistics {
  Tensor mean;
  Tensor var;  // biased: sum (x - mean)^2 / m
};

struct BatchNormArgs {
  double eps = 1e-5;                        // added to the variance; >= 0 (else ConfigError)
  BatchStatistics* statistics = nullptr;    // when set, receives the batch statistics
};

// y = gamma_c xh + beta_c, with the mean and variance of the batch (training mode): one
// fused node whose rules differentiate through the statistics (the mean and variance
// depend on every example of the batch), so gradients and Hv are those of the
// composition mean -> variance -> normalize -> scale and shift.
// x [N, C, ...] (2 to 4 dimensions), gamma and beta with C elements, one dtype.
// Throws ShapeError for other shapes, an empty channel (m = 0) or mixed dtypes.
// Cost: value 3 passes over x; backward 2; Hv about 5 more.
Var batch_norm(Var x, Var gamma, Var beta, const BatchNormArgs& args = {});

// y[n, c, ...] = scale_c x[n, c, ...] + shift_c: a per-channel affine map (batch
// normalization in evaluation mode, with scale = gamma / sqrt(running_var + eps) and
// shift = beta - running_mean scale). x [N, C, ...] (2 to 4 dimensions); scale and shift
// (which may be empty: no shift) with C elements, one dtype. Throws ShapeError otherwise.
Var channel_affine(Var x, Var scale, Var shift = {});

}  // namespace descent::autodiff
