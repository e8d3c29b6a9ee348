#include "descent/optim/network_objective.hpp"

#include <algorithm>
#include <string>

#include "descent/error.hpp"

namespace descent::optim {

NetworkObjective::NetworkObjective(nn::Module& model, ParameterArena& arena, const Tensor& x, const Tensor& labels,
                                   const diag::HessianOptions& options)
    : arena_(arena), hessian_(model, arena, x, labels, options), at_(parameters()) {}

std::vector<double> NetworkObjective::parameters() const {
  const Tensor& values = arena_.values();
  std::vector<double> theta(static_cast<std::size_t>(values.numel()));
  dispatch_float(values.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* p = values.data<T>();
    for (std::size_t i = 0; i < theta.size(); ++i) theta[i] = static_cast<double>(p[i]);
  });
  return theta;
}

void NetworkObjective::move_to(std::span<const double> theta) {
  if (static_cast<std::int64_t>(theta.size()) != dim()) {
    throw ShapeError("network objective: theta has " + std::to_string(theta.size()) + " values, the model " +
                     std::to_string(dim()) + " parameters");
  }
  if (std::equal(theta.begin(), theta.end(), at_.begin())) return;
  const Tensor& values = arena_.values();
  dispatch_float(values.dtype(), [&](auto zero) {
    using T = decltype(zero);
    T* p = values.data<T>();
    for (std::size_t i = 0; i < theta.size(); ++i) p[i] = static_cast<T>(theta[i]);
  });
  at_.assign(theta.begin(), theta.end());
  hessian_.refresh();
}

double NetworkObjective::evaluate(std::span<const double> theta, std::span<double> g) {
  move_to(theta);
  ++evaluations_;
  const std::vector<double>& grad = hessian_.gradient();
  std::copy(grad.begin(), grad.end(), g.begin());
  return hessian_.loss();
}

void NetworkObjective::hessian_vector(std::span<const double> theta, std::span<const double> v, std::span<double> out) {
  move_to(theta);
  hessian_.apply(v, out);
}

}  // namespace descent::optim
