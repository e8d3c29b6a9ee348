#pragma once
// Critical point or not (sections 8.2.2, 8.2.3, 8.2.7): is the model's loss over N examples
// at a minimum, at a saddle point, or at no critical point at all? Training seldom ends at
// a critical point (Fig. 8.1: the gradient norm grows while the loss falls); this says
// where the parameters are, from the gradient G over the N examples and the Hessian's
// extreme eigenvalues (Lanczos, lanczos.hpp).
//
// First order: the gradient is small when one gradient step could gain almost nothing.
// With the curvature at most L = max(|lambda_max|, |lambda_min|), a step of 1/L along -G
// lowers the loss by about
//     gap = |G|^2 / (2 L)            (the descent lemma's guaranteed decrease, in nats)
// The point counts as critical when gap <= gradient_tolerance x J (default 1e-3: a step
// would gain less than 0.1% of the loss) or gap <= absolute_tolerance (for J near 0).
// Second order: an eigenvalue counts as negative (positive) below -t (above t), with
//     t = max(curvature_tolerance x L, its Ritz residual)     (curvature_tolerance 1e-3)
// so rounding in float32 products and an unconverged Ritz value are not read as curvature.
//   critical, nothing negative             "near a minimum"  (flat directions allowed)
//   critical, negative and positive        "near a saddle"
//   critical, nothing positive, negative   "near a maximum"
//   not critical                           "not a critical point"
#include <cstdint>
#include <string>

#include "descent/diag/hessian.hpp"

namespace descent::diag {

struct CriticalOptions {
  int steps = 80;                     // Lanczos steps
  std::uint64_t seed = 1;             // of Lanczos' start vector
  double gradient_tolerance = 1e-3;   // relative to the loss
  double absolute_tolerance = 1e-9;   // nats
  double curvature_tolerance = 1e-3;  // relative to L
};

struct CriticalPoint {
  double loss = 0.0;
  double gradient_norm = 0.0;
  double lambda_max = 0.0, lambda_min = 0.0;
  double residual_max = 0.0, residual_min = 0.0;  // of the two Ritz pairs
  double gap = 0.0;                // |G|^2 / (2 L)
  double gap_threshold = 0.0;      // max(gradient_tolerance J, absolute_tolerance)
  double curvature_threshold = 0.0;  // curvature_tolerance L
  bool critical = false;
  bool negative_curvature = false, positive_curvature = false;
  std::string verdict;  // one of the four above
  std::string reason;   // one sentence with the figures
  int lanczos_steps = 0;
};

// The verdict from the figures alone (what critical_point() does after Lanczos).
CriticalPoint classify_point(double loss, double gradient_norm, double lambda_min, double lambda_max, double residual_min,
                             double residual_max, const CriticalOptions& options = {});

CriticalPoint critical_point(HessianOperator& hessian, const CriticalOptions& options = {});

}  // namespace descent::diag
