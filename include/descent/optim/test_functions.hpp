#pragma once
// Analytic functions of two variables with exact gradients and Hessians: the optimization
// lab (`descent optimize`) runs the library's optimizers on them, and the tests use them.
//
//   quadratic      f = (x^2 + kappa y^2) / 2           ill-conditioned: condition number kappa
//   rosenbrock     f = (1 - x)^2 + 100 (y - x^2)^2     a curved valley, minimum (1, 1)
//   beale          f = (1.5 - x + xy)^2 + (2.25 - x + xy^2)^2 + (2.625 - x + xy^3)^2, min (3, 0.5)
//   saddle         f = x^2 - y^2                        a saddle point at 0 (section 8.2.3)
//   monkey_saddle  f = x^3 - 3 x y^2                    a degenerate saddle: H(0) = 0
//   no_minimum     f = log(1 + exp(-x)) + y^2 / 2       no minimum: f decreases towards
//                  x -> infinity with a vanishing gradient (in the spirit of Figure 8.4,
//                  where local descent heads for an asymptote, not a minimum)
// Cost: O(1) per call. make_test_function throws ConfigError for an unknown name or a
// condition number below 1.
#include <array>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace descent::optim {

using Point2 = std::array<double, 2>;
using Matrix2 = std::array<double, 4>;  // row-major [[h_xx, h_xy], [h_yx, h_yy]]

class TestFunction {
 public:
  virtual ~TestFunction() = default;
  virtual std::string name() const = 0;
  virtual double value(const Point2& p) const = 0;
  virtual Point2 gradient(const Point2& p) const = 0;
  virtual Matrix2 hessian(const Point2& p) const = 0;
  // The global minimizer when there is one.
  virtual std::optional<Point2> minimizer() const = 0;
  // A start point that shows the function's difficulty.
  virtual Point2 default_start() const = 0;
  // The critical points (gradient zero) it has, known in closed form; empty when there is
  // none (no_minimum). The lab reports which one a run ended near.
  virtual std::vector<Point2> critical_points() const = 0;
};

// What the Hessian's eigenvalues make of a critical point: "minimum" (all > 0), "maximum"
// (all < 0), "saddle" (both signs) or "degenerate" (a zero eigenvalue: the test is silent).
std::string classify_critical_point(const Matrix2& hessian);

struct TestFunctionOptions {
  double condition = 10.0;  // quadratic: kappa >= 1
};
std::unique_ptr<TestFunction> make_test_function(const std::string& name, const TestFunctionOptions& options = {});
const std::vector<std::string>& test_function_names();

// The eigenvalues of a symmetric 2x2 matrix, ascending.
std::array<double, 2> eigenvalues(const Matrix2& h);

}  // namespace descent::optim
