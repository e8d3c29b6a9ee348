#pragma once
// The dense Hessian of a loss by central differences of its gradient, in double precision,
// using first-order code only: column j is
//   H[:, j] ~ (g(theta + h e_j) - g(theta - h e_j)) / 2h,
// and how an exact dense Hessian agrees with it.
#include <cstdint>
#include <functional>
#include <vector>

namespace descent::testing {

// The gradient of the loss at the parameters as they are now (all n of them).
using GradientFunction = std::function<std::vector<double>()>;

// Row-major [n, n]; theta[j] is moved by +-h in place for each column and restored.
std::vector<double> central_difference_hessian(double* theta, std::int64_t n, const GradientFunction& gradient,
                                               double h = 1e-6);

struct HessianAgreement {
  double worst = 0.0;  // max over entries of |exact - fd| / (1 + |fd|)
  double scale = 0.0;  // max |exact|
  double asym = 0.0;   // max |exact[i, j] - exact[j, i]|
};
HessianAgreement compare_hessians(const std::vector<double>& exact, const std::vector<double>& fd, std::int64_t n);

}  // namespace descent::testing
