#include "descent/optim/network_objective.hpp"

#include <algorithm>
#include <string>

#include "descent/error.hpp"

namespace descent::optim {

NetworkObjective::NetworkObjective(nn::Module& model, ParameterArena& arena, const Tensor& x, const Tensor& labels,
                                   const diag::HessianOptions& options)
    : arena_(arena), hessian_(model, arena, x, labels, options), at_(parameters()) {}

namespace {
diag::HessianOptions without_recording(diag::HessianOptions options) {
  options.record = false;
  return options;
}
}  // namespace

NetworkObjective::NetworkObjective(nn::Module& model, ParameterArena& arena, const Tensor& x, const Tensor& labels,
                                   const RecordedPass& pass, const diag::HessianOptions& options)
    : arena_(arena), hessian_(model, arena, x, labels, without_recording(options)), at_(parameters()) {
  hessian_.adopt(pass.logits, pass.loss, pass.loss_value, pass.gradient);
}

Curvature parse_curvature(std::string_view name) {
  if (name == "hessian") return Curvature::hessian;
  if (name == "gauss_newton") return Curvature::gauss_newton;
  throw ConfigError("unknown curvature \"" + std::string(name) + "\" (expected hessian or gauss_newton)");
}

std::string_view curvature_name(Curvature curvature) {
  return curvature == Curvature::gauss_newton ? "gauss_newton" : "hessian";
}

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
  if (curvature_ == Curvature::gauss_newton) {
    hessian_.apply_gauss_newton(v, out);
  } else {
    hessian_.apply(v, out);
  }
}

}  // namespace descent::optim
