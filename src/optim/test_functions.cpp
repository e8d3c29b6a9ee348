#include "descent/optim/test_functions.hpp"

#include <algorithm>
#include <cmath>

#include "descent/error.hpp"

namespace descent::optim {
namespace {

class Quadratic final : public TestFunction {
 public:
  explicit Quadratic(double kappa) : kappa_(kappa) {}
  std::string name() const override { return "quadratic"; }
  double value(const Point2& p) const override { return 0.5 * (p[0] * p[0] + kappa_ * p[1] * p[1]); }
  Point2 gradient(const Point2& p) const override { return {p[0], kappa_ * p[1]}; }
  Matrix2 hessian(const Point2&) const override { return {1.0, 0.0, 0.0, kappa_}; }
  std::optional<Point2> minimizer() const override { return Point2{0.0, 0.0}; }
  Point2 default_start() const override { return {-1.0, 1.0}; }
  std::vector<Point2> critical_points() const override { return {{0.0, 0.0}}; }

 private:
  double kappa_;
};

class Rosenbrock final : public TestFunction {
 public:
  std::string name() const override { return "rosenbrock"; }
  double value(const Point2& p) const override {
    const double a = 1.0 - p[0], b = p[1] - p[0] * p[0];
    return a * a + 100.0 * b * b;
  }
  Point2 gradient(const Point2& p) const override {
    const double b = p[1] - p[0] * p[0];
    return {-2.0 * (1.0 - p[0]) - 400.0 * p[0] * b, 200.0 * b};
  }
  Matrix2 hessian(const Point2& p) const override {
    const double hxy = -400.0 * p[0];
    return {2.0 - 400.0 * p[1] + 1200.0 * p[0] * p[0], hxy, hxy, 200.0};
  }
  std::optional<Point2> minimizer() const override { return Point2{1.0, 1.0}; }
  Point2 default_start() const override { return {-1.2, 1.0}; }
  std::vector<Point2> critical_points() const override { return {{1.0, 1.0}}; }
};

class Beale final : public TestFunction {
 public:
  std::string name() const override { return "beale"; }
  double value(const Point2& p) const override {
    double f = 0.0;
    for (int i = 0; i < 3; ++i) {
      const double t = c_[i] - p[0] + p[0] * std::pow(p[1], i + 1);
      f += t * t;
    }
    return f;
  }
  Point2 gradient(const Point2& p) const override {
    Point2 g{0.0, 0.0};
    for (int i = 0; i < 3; ++i) {
      const double yk = std::pow(p[1], i + 1);
      const double t = c_[i] - p[0] + p[0] * yk;      // t_i
      g[0] += 2.0 * t * (yk - 1.0);                   // dt/dx = y^k - 1
      g[1] += 2.0 * t * p[0] * (i + 1) * std::pow(p[1], i);  // dt/dy = k x y^(k-1)
    }
    return g;
  }
  Matrix2 hessian(const Point2& p) const override {
    Matrix2 h{0.0, 0.0, 0.0, 0.0};
    for (int i = 0; i < 3; ++i) {
      const int k = i + 1;
      const double yk = std::pow(p[1], k);
      const double t = c_[i] - p[0] + p[0] * yk;
      const double tx = yk - 1.0, ty = p[0] * k * std::pow(p[1], k - 1);
      const double txy = k * std::pow(p[1], k - 1);
      const double tyy = k > 1 ? p[0] * k * (k - 1) * std::pow(p[1], k - 2) : 0.0;
      h[0] += 2.0 * tx * tx;                  // t_xx = 0
      h[1] += 2.0 * (tx * ty + t * txy);
      h[3] += 2.0 * (ty * ty + t * tyy);
    }
    h[2] = h[1];
    return h;
  }
  std::optional<Point2> minimizer() const override { return Point2{3.0, 0.5}; }
  Point2 default_start() const override { return {1.0, 1.0}; }
  std::vector<Point2> critical_points() const override { return {{3.0, 0.5}, {0.0, 1.0}}; }

 private:
  static constexpr double c_[3] = {1.5, 2.25, 2.625};
};

class Saddle final : public TestFunction {
 public:
  std::string name() const override { return "saddle"; }
  double value(const Point2& p) const override { return p[0] * p[0] - p[1] * p[1]; }
  Point2 gradient(const Point2& p) const override { return {2.0 * p[0], -2.0 * p[1]}; }
  Matrix2 hessian(const Point2&) const override { return {2.0, 0.0, 0.0, -2.0}; }
  std::optional<Point2> minimizer() const override { return std::nullopt; }
  Point2 default_start() const override { return {1.0, 1e-3}; }
  std::vector<Point2> critical_points() const override { return {{0.0, 0.0}}; }
};

class MonkeySaddle final : public TestFunction {
 public:
  std::string name() const override { return "monkey_saddle"; }
  double value(const Point2& p) const override { return p[0] * p[0] * p[0] - 3.0 * p[0] * p[1] * p[1]; }
  Point2 gradient(const Point2& p) const override {
    return {3.0 * p[0] * p[0] - 3.0 * p[1] * p[1], -6.0 * p[0] * p[1]};
  }
  Matrix2 hessian(const Point2& p) const override {
    return {6.0 * p[0], -6.0 * p[1], -6.0 * p[1], -6.0 * p[0]};
  }
  std::optional<Point2> minimizer() const override { return std::nullopt; }
  Point2 default_start() const override { return {0.5, 0.1}; }
  std::vector<Point2> critical_points() const override { return {{0.0, 0.0}}; }
};

class NoMinimum final : public TestFunction {
 public:
  std::string name() const override { return "no_minimum"; }
  // softplus(-x) computed without overflow for large |x|.
  static double softplus(double z) { return z > 0 ? z + std::log1p(std::exp(-z)) : std::log1p(std::exp(z)); }
  static double sigmoid(double z) { return z >= 0 ? 1.0 / (1.0 + std::exp(-z)) : std::exp(z) / (1.0 + std::exp(z)); }
  double value(const Point2& p) const override { return softplus(-p[0]) + 0.5 * p[1] * p[1]; }
  Point2 gradient(const Point2& p) const override { return {-sigmoid(-p[0]), p[1]}; }
  Matrix2 hessian(const Point2& p) const override {
    const double s = sigmoid(-p[0]);
    return {s * (1.0 - s), 0.0, 0.0, 1.0};
  }
  std::optional<Point2> minimizer() const override { return std::nullopt; }
  Point2 default_start() const override { return {-2.0, 1.0}; }
  std::vector<Point2> critical_points() const override { return {}; }
};

}  // namespace

std::unique_ptr<TestFunction> make_test_function(const std::string& name, const TestFunctionOptions& o) {
  if (name == "quadratic") {
    if (!(o.condition >= 1.0) || !std::isfinite(o.condition)) {
      throw ConfigError("test function quadratic: condition must be >= 1, got " + std::to_string(o.condition));
    }
    return std::make_unique<Quadratic>(o.condition);
  }
  if (name == "rosenbrock") return std::make_unique<Rosenbrock>();
  if (name == "beale") return std::make_unique<Beale>();
  if (name == "saddle") return std::make_unique<Saddle>();
  if (name == "monkey_saddle") return std::make_unique<MonkeySaddle>();
  if (name == "no_minimum") return std::make_unique<NoMinimum>();
  throw ConfigError("test function \"" + name +
                    "\" is unknown; expected quadratic, rosenbrock, beale, saddle, monkey_saddle or no_minimum");
}

const std::vector<std::string>& test_function_names() {
  static const std::vector<std::string> names = {"quadratic", "rosenbrock", "beale", "saddle", "monkey_saddle", "no_minimum"};
  return names;
}

std::string classify_critical_point(const Matrix2& hessian) {
  const auto eig = eigenvalues(hessian);
  const double scale = std::max(std::abs(eig[0]), std::abs(eig[1]));
  const double zero = 1e-12 * scale;
  if (scale == 0.0 || std::abs(eig[0]) <= zero || std::abs(eig[1]) <= zero) return "degenerate";
  if (eig[0] > 0.0) return "minimum";
  if (eig[1] < 0.0) return "maximum";
  return "saddle";
}

std::array<double, 2> eigenvalues(const Matrix2& h) {
  const double mean = 0.5 * (h[0] + h[3]);
  const double d = std::sqrt(0.25 * (h[0] - h[3]) * (h[0] - h[3]) + h[1] * h[2]);
  return {mean - d, mean + d};
}

}  // namespace descent::optim
