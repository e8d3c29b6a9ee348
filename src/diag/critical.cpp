#include "descent/diag/critical.hpp"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "descent/diag/lanczos.hpp"

namespace descent::diag {

CriticalPoint classify_point(double loss, double gradient_norm, double lambda_min, double lambda_max, double residual_min,
                             double residual_max, const CriticalOptions& options) {
  CriticalPoint c;
  c.loss = loss;
  c.gradient_norm = gradient_norm;
  c.lambda_min = lambda_min;
  c.lambda_max = lambda_max;
  c.residual_min = residual_min;
  c.residual_max = residual_max;
  const double scale = std::max(std::abs(lambda_max), std::abs(lambda_min));
  const double g2 = gradient_norm * gradient_norm;
  c.gap = g2 == 0.0 ? 0.0 : scale > 0.0 ? g2 / (2.0 * scale) : INFINITY;
  c.gap_threshold = std::max(options.gradient_tolerance * std::abs(loss), options.absolute_tolerance);
  c.curvature_threshold = options.curvature_tolerance * scale;
  c.critical = c.gap <= c.gap_threshold;
  c.negative_curvature = lambda_min < -std::max(c.curvature_threshold, residual_min);
  c.positive_curvature = lambda_max > std::max(c.curvature_threshold, residual_max);
  std::ostringstream why;
  why.precision(3);
  if (!c.critical) {
    c.verdict = "not a critical point";
    why << "a gradient step of 1/L would lower the loss by " << c.gap << " (" << c.gap / std::max(std::abs(loss), 1e-300)
        << " of it), above the threshold " << c.gap_threshold;
  } else if (!c.negative_curvature) {
    c.verdict = "near a minimum";
    why << "gradient step gain " << c.gap << " <= " << c.gap_threshold << " and no eigenvalue below -" << std::max(c.curvature_threshold, residual_min);
  } else if (c.positive_curvature) {
    c.verdict = "near a saddle";
    why << "gradient step gain " << c.gap << " <= " << c.gap_threshold << ", lambda_min " << lambda_min << " < 0 < lambda_max " << lambda_max;
  } else {
    c.verdict = "near a maximum";
    why << "gradient step gain " << c.gap << " <= " << c.gap_threshold << " and no eigenvalue above " << std::max(c.curvature_threshold, residual_max);
  }
  c.reason = why.str();
  return c;
}

CriticalPoint critical_point(HessianOperator& hessian, const CriticalOptions& options) {
  const int steps = static_cast<int>(std::min<std::int64_t>(options.steps, hessian.dim()));
  const Spectrum s = lanczos_extremes(hessian, {.steps = steps, .top = 1, .bottom = 1, .seed = options.seed});
  double g2 = 0.0;
  for (double g : hessian.gradient()) g2 += g * g;
  CriticalPoint c = classify_point(hessian.loss(), std::sqrt(g2), s.lambda_min, s.lambda_max, s.bottom_residuals.front(),
                                   s.top_residuals.front(), options);
  c.lanczos_steps = s.steps;
  return c;
}

}  // namespace descent::diag
