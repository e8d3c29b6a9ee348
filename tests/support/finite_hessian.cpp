#include "support/finite_hessian.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <stdexcept>

namespace descent::testing {

std::vector<double> central_difference_hessian(double* theta, std::int64_t n, const GradientFunction& gradient,
                                               double h) {
  const auto un = static_cast<std::size_t>(n);
  std::vector<double> hess(un * un);
  for (std::size_t j = 0; j < un; ++j) {
    const double saved = theta[j];
    theta[j] = saved + h;
    const std::vector<double> up = gradient();
    theta[j] = saved - h;
    const std::vector<double> down = gradient();
    theta[j] = saved;
    if (up.size() != un || down.size() != un) throw std::invalid_argument("central_difference_hessian: gradient size");
    for (std::size_t i = 0; i < un; ++i) hess[i * un + j] = (up[i] - down[i]) / (2 * h);
  }
  return hess;
}

HessianAgreement compare_hessians(const std::vector<double>& exact, const std::vector<double>& fd, std::int64_t n) {
  const auto un = static_cast<std::size_t>(n);
  HessianAgreement a;
  for (std::size_t i = 0; i < un; ++i) {
    for (std::size_t j = 0; j < un; ++j) {
      const double e = exact[i * un + j], f = fd[i * un + j];
      a.worst = std::max(a.worst, std::abs(e - f) / (1.0 + std::abs(f)));
      a.scale = std::max(a.scale, std::abs(e));
      a.asym = std::max(a.asym, std::abs(e - exact[j * un + i]));
    }
  }
  return a;
}

}  // namespace descent::testing
