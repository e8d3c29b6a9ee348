#include "support/gradcheck.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "descent/init/rng.hpp"
#include "descent/tensor/kernels.hpp"

namespace descent::testing {

using autodiff::Tape;
using autodiff::Var;

double evaluate(const Builder& build, const std::vector<Tensor>& inputs) {
  Tape tape;
  std::vector<Var> vars;
  for (const Tensor& x : inputs) vars.push_back(tape.variable(x));
  return build(tape, vars).value().item();
}

std::vector<Tensor> gradients(const Builder& build, const std::vector<Tensor>& inputs) {
  Tape tape;
  std::vector<Var> vars;
  for (const Tensor& x : inputs) vars.push_back(tape.variable(x));
  Var loss = build(tape, vars);
  tape.backward(loss);
  std::vector<Tensor> out;
  for (Var v : vars) out.push_back(tape.grad(v).clone());
  return out;
}

namespace {

double norm(const std::vector<double>& v) {
  double s = 0.0;
  for (double x : v) s += x * x;
  return std::sqrt(s);
}

Comparison compare(const std::vector<double>& analytic, const std::vector<double>& numeric) {
  std::vector<double> diff(analytic.size());
  for (std::size_t i = 0; i < analytic.size(); ++i) diff[i] = analytic[i] - numeric[i];
  Comparison c;
  c.analytic_norm = norm(analytic);
  c.numeric_norm = norm(numeric);
  const double denom = std::max(c.analytic_norm, c.numeric_norm);
  c.relative_error = denom == 0.0 ? 0.0 : norm(diff) / denom;
  return c;
}

void append(std::vector<double>& out, const Tensor& t) {
  for (std::int64_t i = 0; i < t.numel(); ++i) out.push_back(t.at(i));
}

std::vector<Tensor> copies(const std::vector<Tensor>& inputs) {
  std::vector<Tensor> out;
  for (const Tensor& t : inputs) out.push_back(t.clone());
  return out;
}

}  // namespace

Comparison check_gradient(const Builder& build, const std::vector<Tensor>& inputs, double h) {
  std::vector<double> analytic;
  for (const Tensor& g : gradients(build, inputs)) append(analytic, g);
  std::vector<double> numeric;
  std::vector<Tensor> x = copies(inputs);
  for (Tensor& t : x) {
    double* p = t.data<double>();
    for (std::int64_t i = 0; i < t.numel(); ++i) {
      const double saved = p[i];
      p[i] = saved + h;
      const double up = evaluate(build, x);
      p[i] = saved - h;
      const double down = evaluate(build, x);
      p[i] = saved;
      numeric.push_back((up - down) / (2.0 * h));
    }
  }
  return compare(analytic, numeric);
}

Comparison check_hvp(const Builder& build, const std::vector<Tensor>& inputs, const std::vector<Tensor>& tangents,
                     double h) {
  std::vector<double> analytic;
  for (const Tensor& hv : tape_hvp(build, inputs, tangents)) append(analytic, hv);
  auto shifted = [&](double sign) {
    std::vector<Tensor> x = copies(inputs);
    for (std::size_t k = 0; k < x.size(); ++k) kernels::axpby(sign * h, tangents[k], 1.0, x[k]);
    std::vector<double> g;
    for (const Tensor& t : gradients(build, x)) append(g, t);
    return g;
  };
  const std::vector<double> up = shifted(1.0);
  const std::vector<double> down = shifted(-1.0);
  std::vector<double> numeric(up.size());
  for (std::size_t i = 0; i < up.size(); ++i) numeric[i] = (up[i] - down[i]) / (2.0 * h);
  return compare(analytic, numeric);
}

Tensor random_tensor(const Shape& shape, DType dtype, std::uint64_t seed, double lo, double hi) {
  Rng rng(seed);
  Tensor t = Tensor::empty(shape, dtype);
  for (std::int64_t i = 0; i < t.numel(); ++i) {
    const double v = rng.uniform(lo, hi);
    if (dtype == DType::f64) {
      t.data<double>()[i] = v;
    } else {
      t.data<float>()[i] = static_cast<float>(v);
    }
  }
  return t;
}

double relative_difference(const Tensor& a, const Tensor& b) {
  std::vector<double> x, y;
  append(x, a);
  append(y, b);
  return compare(x, y).relative_error;
}

void expect_close(const Tensor& a, const Tensor& b, double tol, const std::string& what) {
  ASSERT_EQ(a.numel(), b.numel()) << what;
  EXPECT_LT(relative_difference(a, b), tol) << what;
}

Var quadratic_head(Tape& tape, Var y, std::uint64_t seed) {
  Var c = tape.constant(random_tensor(y.shape(), y.dtype(), seed));
  return autodiff::add(autodiff::sum(autodiff::mul(c, y)), autodiff::scale(autodiff::sum(autodiff::square(y)), 0.5));
}

Builder head(Operation op, const Shape& out_shape, std::uint64_t seed) {
  Tensor c = random_tensor(out_shape, DType::f64, seed);
  return [op = std::move(op), c](Tape& tape, const std::vector<Var>& v) {
    Var y = op(tape, v);
    EXPECT_EQ(y.shape(), c.shape());
    Var cc = tape.constant(c.reshape(y.shape()));
    return autodiff::add(autodiff::sum(autodiff::mul(cc, y)), autodiff::scale(autodiff::sum(autodiff::square(y)), 0.5));
  };
}

std::vector<Tensor> random_tangents(const std::vector<Tensor>& inputs, std::uint64_t seed) {
  std::vector<Tensor> out;
  for (std::size_t k = 0; k < inputs.size(); ++k) out.push_back(random_tensor(inputs[k].shape(), DType::f64, seed + 100 + k));
  return out;
}

std::vector<Tensor> tape_hvp(const Builder& build, const std::vector<Tensor>& inputs, const std::vector<Tensor>& tangents) {
  Tape tape;
  std::vector<Var> vars;
  for (std::size_t k = 0; k < inputs.size(); ++k) {
    vars.push_back(tape.variable(inputs[k]));
    tape.set_tangent(vars.back(), tangents[k]);
  }
  tape.hvp(build(tape, vars), Tensor(), Tensor());
  std::vector<Tensor> out;
  for (Var v : vars) out.push_back(tape.grad_tangent(v).clone());
  return out;
}

void expect_derivatives(const Builder& build, const std::vector<Tensor>& inputs, std::uint64_t seed, double tol) {
  const Comparison g = check_gradient(build, inputs);
  EXPECT_LT(g.relative_error, tol) << "gradient, |g| = " << g.analytic_norm;
  EXPECT_GT(g.analytic_norm, 0.0);
  const Comparison h = check_hvp(build, inputs, random_tangents(inputs, seed));
  EXPECT_LT(h.relative_error, tol) << "Hv, |Hv| = " << h.analytic_norm;
  EXPECT_GT(h.analytic_norm, 0.0);
}

}  // namespace descent::testing
