#pragma once
// Finite-difference references for the autodiff tests, in double precision.
//
// A Builder records a scalar loss on a fresh tape from variables holding the given
// inputs. check_gradient compares the tape's gradient with central differences
//   dL/dx_i ~ (L(x + h e_i) - L(x - h e_i)) / 2h,
// check_hvp compares the tape's R(gradient) along tangents v with central differences of
// the tape's gradient
//   H v ~ (g(x + h v) - g(x - h v)) / 2h,
// which uses only first-order code. Errors are norm-wise relative: ||a - b|| / max(||a||, ||b||).
#include <functional>
#include <vector>

#include "descent/autodiff/ops.hpp"

namespace descent::testing {

using Builder = std::function<autodiff::Var(autodiff::Tape&, const std::vector<autodiff::Var>&)>;

struct Comparison {
  double relative_error = 0.0;  // ||analytic - numeric|| / max(||analytic||, ||numeric||)
  double analytic_norm = 0.0;
  double numeric_norm = 0.0;
};

// Loss value at the inputs.
double evaluate(const Builder& build, const std::vector<Tensor>& inputs);
// Tape gradients of every input.
std::vector<Tensor> gradients(const Builder& build, const std::vector<Tensor>& inputs);

Comparison check_gradient(const Builder& build, const std::vector<Tensor>& inputs, double h = 1e-6);
Comparison check_hvp(const Builder& build, const std::vector<Tensor>& inputs, const std::vector<Tensor>& tangents,
                     double h = 1e-5);

// A tensor of the given shape with values uniform in [lo, hi), deterministic by seed.
Tensor random_tensor(const Shape& shape, DType dtype, std::uint64_t seed, double lo = -1.0, double hi = 1.0);

// Norm-wise relative difference of two tensors of equal numel.
double relative_difference(const Tensor& a, const Tensor& b);

}  // namespace descent::testing
