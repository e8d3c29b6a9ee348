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
//
// The tests of single operations wrap the operation in head() and call expect_derivatives():
//   auto b = testing::head([](Tape&, const std::vector<Var>& v) { return autodiff::tanh(v[0]); }, Shape{4, 3}, 1);
//   testing::expect_derivatives(b, {testing::random_tensor({4, 3}, DType::f64, 2)}, 3);
#include <cstdint>
#include <functional>
#include <string>
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
// Fails the current test (with `what` in the message) unless a and b have the same numel and
// relative_difference(a, b) < tol.
void expect_close(const Tensor& a, const Tensor& b, double tol, const std::string& what);

// The scalar loss the operation tests put on an operation's output y,
//   L = sum(c (.) y) + 1/2 sum(y^2),
// so that the operation's backward sees a non-uniform gy and its R-backward a non-zero R(gy).
// c has y's shape, values uniform in [-1, 1), y's dtype, deterministic by seed.
autodiff::Var quadratic_head(autodiff::Tape& tape, autodiff::Var y, std::uint64_t seed);

// An operation of the inputs (as variables on the tape) that returns a tensor.
using Operation = std::function<autodiff::Var(autodiff::Tape&, const std::vector<autodiff::Var>&)>;
// The Builder of L = quadratic_head(op(inputs)) with c of shape out_shape (float64); the
// operation's output must have that shape (checked with EXPECT_EQ on every build).
Builder head(Operation op, const Shape& out_shape, std::uint64_t seed);

// One float64 tangent per input, of its shape, uniform in [-1, 1), seeds seed + 100 + k.
std::vector<Tensor> random_tangents(const std::vector<Tensor>& inputs, std::uint64_t seed);

// The tape's R(gradient) (Hv) of every input along `tangents`.
std::vector<Tensor> tape_hvp(const Builder& build, const std::vector<Tensor>& inputs, const std::vector<Tensor>& tangents);

// The check every differentiable operation passes (float64): the gradient against central
// differences and Hv along random_tangents(inputs, seed) against central differences of the
// gradient, both with relative error < tol, and neither identically zero (a zero on both
// sides would pass the comparison and prove nothing).
void expect_derivatives(const Builder& build, const std::vector<Tensor>& inputs, std::uint64_t seed,
                        double tol = 1e-6);

}  // namespace descent::testing
