// Second-order methods (optim/second_order.hpp) against independent computations:
// SciPy's trajectories (tests/reference/second_order_reference.py wrote the fixture) replayed
// step by step, dense linear algebra written here from the equations, LAPACK's dense
// eigendecomposition, and the line-search conditions checked from the values themselves.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "descent/diag/lapack.hpp"
#include "descent/error.hpp"
#include "descent/optim/second_order.hpp"
#include "descent/optim/test_functions.hpp"
#include "support/expect_error.hpp"

namespace descent {
namespace {

using Vec = std::vector<double>;

double dot(const Vec& a, const Vec& b) {
  double s = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// f = x'Ax/2 - b'x with a dense symmetric A (row-major).
class Quadratic final : public optim::Objective {
 public:
  Quadratic(Vec a, Vec b) : a_(std::move(a)), b_(std::move(b)) {}
  std::int64_t dim() const override { return static_cast<std::int64_t>(b_.size()); }
  double evaluate(std::span<const double> x, std::span<double> g) override {
    const std::size_t n = b_.size();
    double f = 0.0;
    for (std::size_t i = 0; i < n; ++i) {
      double ax = 0.0;
      for (std::size_t j = 0; j < n; ++j) ax += a_[i * n + j] * x[j];
      g[i] = ax - b_[i];
      f += 0.5 * x[i] * ax - b_[i] * x[i];
    }
    return f;
  }
  void hessian(std::span<const double>, std::span<double> h) override { std::copy(a_.begin(), a_.end(), h.begin()); }
  bool has_hessian() const override { return true; }
  const Vec& a() const { return a_; }

 private:
  Vec a_, b_;
};

// A = Q diag(eigenvalues) Q' with a random orthogonal Q (Gram-Schmidt of Gaussian columns).
Vec symmetric_with(const Vec& eigenvalues, std::uint32_t seed) {
  const std::size_t n = eigenvalues.size();
  std::mt19937 rng(seed);
  std::normal_distribution<double> normal;
  std::vector<Vec> q(n, Vec(n));
  for (std::size_t k = 0; k < n; ++k) {
    for (double& v : q[k]) v = normal(rng);
    for (std::size_t j = 0; j < k; ++j) {
      const double c = dot(q[k], q[j]);
      for (std::size_t i = 0; i < n; ++i) q[k][i] -= c * q[j][i];
    }
    const double len = std::sqrt(dot(q[k], q[k]));
    for (double& v : q[k]) v /= len;
  }
  Vec a(n * n, 0.0);
  for (std::size_t k = 0; k < n; ++k) {
    for (std::size_t i = 0; i < n; ++i) {
      for (std::size_t j = 0; j < n; ++j) a[i * n + j] += eigenvalues[k] * q[k][i] * q[k][j];
    }
  }
  return a;
}

std::unique_ptr<optim::SecondOrderMinimizer> make(optim::SecondOrderOptions o) { return optim::make_second_order(o); }

TEST(SecondOrder, NewtonSolvesAQuadraticInOneStep) {
  const Vec x_star = {0.5, -1.0, 2.0, 0.25, -0.75};
  const Vec a = symmetric_with({0.1, 1.0, 3.0, 10.0, 100.0}, 7);
  Vec b(5, 0.0);
  for (std::size_t i = 0; i < 5; ++i) b[i] = dot(Vec(a.begin() + static_cast<long>(i * 5), a.begin() + static_cast<long>(i * 5 + 5)), x_star);
  Quadratic q(a, b);
  auto newton = make({.method = "newton"});
  newton->start(q, Vec(5, 0.0));
  newton->step(q);
  for (std::size_t i = 0; i < 5; ++i) EXPECT_NEAR(newton->x()[i], x_star[i], 1e-11) << i;
  // Indefinite too: Newton jumps to the critical point, whatever its kind.
  auto f = optim::make_test_function("saddle");
  auto lab = optim::as_objective(*f);
  auto n2 = make({.method = "newton"});
  n2->start(*lab, Vec{1.0, 1e-3});
  n2->step(*lab);
  EXPECT_EQ(n2->x()[0], 0.0);
  EXPECT_EQ(n2->x()[1], 0.0);
}

TEST(SecondOrder, LinearCgTerminatesInAtMostNSteps) {
  // damped_newton with lambda = 0 solves H d = -g by linear CG: exact after at most n steps.
  const std::size_t n = 6;
  const Vec a = symmetric_with({0.5, 1.0, 2.0, 4.0, 8.0, 16.0}, 3);
  const Vec b = {1.0, -2.0, 0.5, 3.0, -1.0, 0.25};
  Quadratic q(a, b);
  auto hf = make({.method = "damped_newton", .damping = 0.0, .adapt_damping = false});
  hf->start(q, Vec(n, 0.0));
  const auto r = hf->step(q);
  EXPECT_LE(r.inner_iterations, static_cast<int>(n));
  Vec g(n);
  q.evaluate(Vec(hf->x().begin(), hf->x().end()), g);
  EXPECT_LT(std::sqrt(dot(g, g)), 1e-9);
  // Nonlinear CG (Fletcher-Reeves and Polak-Ribiere) with an exact line search on a
  // quadratic is linear CG: the gradient vanishes after at most n iterations.
  for (const char* beta : {"fr", "pr", "pr+"}) {
    SCOPED_TRACE(beta);
    auto cg = make({.method = "cg", .beta = beta, .restart = -1});
    cg->start(q, Vec(n, 0.0));
    int k = 0;
    for (; k < 20; ++k) {
      Vec gk(cg->gradient().begin(), cg->gradient().end());
      if (std::sqrt(dot(gk, gk)) < 1e-10) break;
      const Vec d = cg->direction(q);
      Vec ad(n, 0.0);
      for (std::size_t i = 0; i < n; ++i) {
        for (std::size_t j = 0; j < n; ++j) ad[i] += a[i * n + j] * d[j];
      }
      cg->step_with(q, -dot(gk, d) / dot(d, ad));  // the exact minimizer along d
    }
    EXPECT_LE(k, static_cast<int>(n));
  }
}

TEST(SecondOrder, DampedNewtonAdjustsLambdaByTheReductionRatio) {
  // On a quadratic the model is exact: rho = 1 every step, so lambda <- 2/3 lambda.
  const Vec a = symmetric_with({1.0, 5.0, 20.0}, 11);
  Quadratic q(a, {1.0, 1.0, 1.0});
  auto hf = make({.method = "damped_newton", .damping = 3.0});
  hf->start(q, Vec(3, 0.0));
  double lambda = 3.0;
  for (int k = 0; k < 4; ++k) {
    const auto r = hf->step(q);
    EXPECT_DOUBLE_EQ(r.damping, lambda);
    EXPECT_TRUE(r.accepted);
    lambda *= 2.0 / 3.0;
  }
  // A step that increases f is rejected and lambda grows by 3/2: step 3 overshoots x^2/2.
  auto f = optim::make_test_function("quadratic", {.condition = 1.0});
  auto lab = optim::as_objective(*f);
  auto over = make({.method = "damped_newton", .step = 3.0, .damping = 0.0});
  over->start(*lab, Vec{1.0, 1.0});
  const auto r = over->step(*lab);
  EXPECT_FALSE(r.accepted);
  EXPECT_EQ(over->x()[0], 1.0);
}

TEST(SecondOrder, SaddleFreeEqualsTheDenseAbsoluteHessian) {
  // d = -(|H| + lambda I)^{-1} g with |H| from LAPACK's dense eigendecomposition.
  const std::size_t n = 5;
  const Vec a = symmetric_with({-3.0, -0.5, 0.2, 1.0, 4.0}, 5);
  Quadratic q(a, {0.3, -1.0, 0.7, 0.1, -0.4});
  const Vec x0 = {0.1, 0.2, -0.3, 0.4, 0.5};
  const double lambda = 0.01;
  auto sfn = make({.method = "saddle_free", .damping = lambda, .krylov = 5});
  sfn->start(q, x0);
  const Vec d = sfn->direction(q);
  const Vec g(sfn->gradient().begin(), sfn->gradient().end());
  const diag::Eigen e = diag::symmetric_eigen(a, static_cast<std::int64_t>(n), true);
  Vec expected(n, 0.0);
  for (std::size_t k = 0; k < n; ++k) {
    const Vec u(e.vectors.begin() + static_cast<long>(k * n), e.vectors.begin() + static_cast<long>(k * n + n));
    const double c = dot(u, g) / (std::abs(e.values[k]) + lambda);
    for (std::size_t i = 0; i < n; ++i) expected[i] -= c * u[i];
  }
  for (std::size_t i = 0; i < n; ++i) EXPECT_NEAR(d[i], expected[i], 1e-10 * (1 + std::abs(expected[i]))) << i;
}

// The strong Wolfe conditions checked from f and g before and after each accepted step.
TEST(SecondOrder, StrongWolfeHoldsAtEveryAcceptedStep) {
  for (const char* function : {"rosenbrock", "beale"}) {
    for (const char* method : {"bfgs", "lbfgs", "cg", "newton_cg"}) {
      for (const char* beta : {"fr", "pr+"}) {
        if (std::string(method) != "cg" && std::string(beta) == "fr") continue;
        SCOPED_TRACE(std::string(function) + " " + method + " " + beta);
        auto f = optim::make_test_function(function);
        auto lab = optim::as_objective(*f);
        auto m = make({.method = method, .beta = beta});
        const double c1 = 1e-4, c2 = std::string(method) == "cg" ? 0.1 : 0.9;
        m->start(*lab, Vec{f->default_start()[0], f->default_start()[1]});
        int checked = 0;
        for (int k = 0; k < 200 && std::hypot(m->gradient()[0], m->gradient()[1]) > 1e-8; ++k) {
          const Vec g0(m->gradient().begin(), m->gradient().end());
          const double f0 = m->value();
          const auto r = m->step(*lab);
          if (r.stalled) break;
          const Vec d(m->last_direction().begin(), m->last_direction().end());
          const Vec g1(m->gradient().begin(), m->gradient().end());
          ASSERT_TRUE(r.search_ok) << "step " << k;
          EXPECT_LT(dot(g0, d), 0.0) << "step " << k;
          EXPECT_LE(m->value(), f0 + c1 * r.alpha * dot(g0, d)) << "step " << k;
          EXPECT_LE(std::abs(dot(g1, d)), c2 * std::abs(dot(g0, d))) << "step " << k;
          EXPECT_GE(r.evaluations, 1);
          ++checked;
        }
        EXPECT_GT(checked, 3);
        EXPECT_LT(std::hypot(m->x()[0] - f->minimizer().value()[0], m->x()[1] - f->minimizer().value()[1]), 1e-5);
      }
    }
  }
}

TEST(SecondOrder, ArmijoBacktrackingHalvesUntilSufficientDecrease) {
  // phi(a) = f(x - a g) on x^2/2 from x = 1: phi(a) = (1 - a)^2 / 2, phi'(0) = -1. From a0 = 8:
  // 8, 4, 2 fail (phi >= 0.5 - 1e-4 a), 1 passes.
  auto f = optim::make_test_function("quadratic", {.condition = 1.0});
  auto lab = optim::as_objective(*f);
  const Vec x = {1.0, 0.0}, g = {1.0, 0.0}, d = {-1.0, 0.0};
  Vec x_new(2), g_new(2);
  const auto r = optim::line_search(*lab, x, 0.5, g, d, 8.0, {.kind = optim::LineSearch::armijo}, x_new, g_new);
  EXPECT_TRUE(r.ok);
  EXPECT_EQ(r.alpha, 1.0);
  EXPECT_EQ(r.evaluations, 4);
  EXPECT_EQ(x_new[0], 0.0);
  // An ascent direction is refused: no evaluation, no move.
  const auto up = optim::line_search(*lab, x, 0.5, g, g, 1.0, {}, x_new, g_new);
  EXPECT_FALSE(up.ok);
  EXPECT_EQ(up.evaluations, 0);
  EXPECT_EQ(x_new[0], 1.0);
}

TEST(SecondOrder, BfgsInverseHessianStaysPositiveDefiniteAndMeetsTheSecant) {
  auto f = optim::make_test_function("rosenbrock");
  auto lab = optim::as_objective(*f);
  auto m = make({.method = "bfgs"});
  m->start(*lab, Vec{-1.2, 1.0});
  for (int k = 0; k < 30; ++k) {
    const Vec x0(m->x().begin(), m->x().end()), g0(m->gradient().begin(), m->gradient().end());
    const auto r = m->step(*lab);
    if (r.stalled) break;
    const Vec h = m->inverse_hessian();
    ASSERT_EQ(h.size(), 4u);
    EXPECT_EQ(h[1], h[2]);
    const auto eig = optim::eigenvalues({h[0], h[1], h[2], h[3]});
    EXPECT_GT(eig[0], 0.0) << "step " << k;
    if (!r.restarted) {  // the secant equation H_{k+1} y_k = s_k
      const double s[2] = {m->x()[0] - x0[0], m->x()[1] - x0[1]};
      const double y[2] = {m->gradient()[0] - g0[0], m->gradient()[1] - g0[1]};
      for (int i = 0; i < 2; ++i) EXPECT_NEAR(h[i * 2] * y[0] + h[i * 2 + 1] * y[1], s[i], 1e-8 * (std::abs(s[i]) + 1e-12)) << k;
    }
  }
}

// ---- SciPy's trajectories, replayed ------------------------------------------------------
nlohmann::json fixture() {
  std::ifstream in(std::string(DESCENT_SOURCE_DIR) + "/tests/reference/second_order_scipy.json");
  EXPECT_TRUE(in) << "tests/reference/second_order_scipy.json is missing: run tests/reference/second_order_reference.py";
  return nlohmann::json::parse(in);
}

// Each step of SciPy's run x_k -> x_{k+1} must lie along descent's direction d_k (computed
// from the history of the steps replayed so far); the step length is then taken from SciPy.
void replay(const std::string& scipy_method, const optim::SecondOrderOptions& options, double tolerance) {
  int runs = 0;
  const nlohmann::json fx = fixture();
  for (const auto& run : fx["runs"]) {
    if (run["method"] != scipy_method) continue;
    const std::string name = run["function"];
    SCOPED_TRACE(scipy_method + " on " + name);
    auto f = optim::make_test_function(name, {.condition = fx["kappa"].get<double>()});
    auto lab = optim::as_objective(*f);
    auto m = make(options);
    const auto& path = run["trajectory"];
    m->start(*lab, Vec{path[0][0].get<double>(), path[0][1].get<double>()});
    int compared = 0;
    for (std::size_t k = 0; k + 1 < path.size(); ++k) {
      const Vec next = {path[k + 1][0].get<double>(), path[k + 1][1].get<double>()};
      const Vec delta = {next[0] - m->x()[0], next[1] - m->x()[1]};
      const double step = std::sqrt(dot(delta, delta));
      if (step < 1e-7 * (1.0 + std::hypot(next[0], next[1]))) break;  // rounding dominates from here on
      const Vec d = m->direction(*lab);
      const double alpha = dot(delta, d) / dot(d, d);
      // The sine of the angle between SciPy's step and descent's direction: below 1e-7 on
      // the whole path of BFGS and L-BFGS; CG's beta, from y = g_{k+1} - g_k near the minimum,
      // lets the rounding grow to ~1e-4 in its last steps. A different formula is off by far more.
      const double sine = std::abs(delta[0] * d[1] - delta[1] * d[0]) / (step * std::sqrt(dot(d, d)));
      EXPECT_LT(sine, tolerance) << "step " << k;
      EXPECT_GT(alpha, 0.0) << "step " << k;
      m->step_with(*lab, alpha);
      ++compared;
    }
    EXPECT_GE(compared, 2);  // Newton-CG ends the quadratic in 3 steps, the last one below rounding
    EXPECT_GE(static_cast<int>(path.size()) - 1, compared);
    ++runs;
  }
  EXPECT_EQ(runs, 2);
}

TEST(SecondOrderScipy, BfgsTakesScipysDirections) { replay("BFGS", {.method = "bfgs"}, 1e-6); }
TEST(SecondOrderScipy, LbfgsTakesLbfgsbsDirections) { replay("L-BFGS-B", {.method = "lbfgs", .history = 10}, 1e-6); }
TEST(SecondOrderScipy, PolakRibierePlusTakesScipysCgDirections) {
  replay("CG", {.method = "cg", .beta = "pr+", .restart = -1}, 1e-3);
}

TEST(SecondOrderScipy, NewtonCgTakesScipysDirections) { replay("Newton-CG", {.method = "newton_cg"}, 1e-6); }

TEST(SecondOrderScipy, OwnLineSearchesReachScipysMinimizers) {
  const nlohmann::json fx = fixture();
  for (const auto& run : fx["runs"]) {
    const std::string method = run["method"] == "BFGS" ? "bfgs" : run["method"] == "L-BFGS-B" ? "lbfgs"
                               : run["method"] == "CG" ? "cg" : "newton_cg";
    const std::string name = run["function"];
    SCOPED_TRACE(method + " on " + name);
    auto f = optim::make_test_function(name, {.condition = fx["kappa"].get<double>()});
    auto lab = optim::as_objective(*f);
    auto m = make({.method = method});
    m->start(*lab, Vec{run["start"][0].get<double>(), run["start"][1].get<double>()});
    int k = 0;
    for (; k < 500 && std::hypot(m->gradient()[0], m->gradient()[1]) > 1e-9; ++k) {
      if (m->step(*lab).stalled) break;
    }
    EXPECT_NEAR(m->x()[0], run["x"][0].get<double>(), 1e-4);
    EXPECT_NEAR(m->x()[1], run["x"][1].get<double>(), 1e-4);
    // Within a factor of SciPy's iteration count (different line searches).
    EXPECT_LE(k, 2 * run["iterations"].get<int>() + 10);
  }
}

// ---- The saddle (section 8.2.3) -----------------------------------------------------------
TEST(SecondOrder, NewtonIsDrawnToTheSaddleSaddleFreeLeavesIt) {
  auto f = optim::make_test_function("saddle");
  auto lab = optim::as_objective(*f);
  auto newton = make({.method = "newton"});
  newton->start(*lab, Vec{1.0, 1e-3});
  for (int k = 0; k < 5; ++k) {
    try {
      newton->step(*lab);
    } catch (const NumericError&) {
      FAIL() << "H = diag(2, -2) is not singular";
    }
  }
  EXPECT_EQ(newton->x()[0], 0.0);
  EXPECT_EQ(newton->x()[1], 0.0);
  // Saddle-free: x <- x - 2x / (2 + lambda), y <- y + 2y / (2 + lambda) per step.
  const double lambda = 1e-3;
  auto sfn = make({.method = "saddle_free", .damping = lambda, .krylov = 2});
  sfn->start(*lab, Vec{1.0, 1e-3});
  double x = 1.0, y = 1e-3;
  for (int k = 0; k < 10; ++k) {
    sfn->step(*lab);
    x -= 2 * x / (2 + lambda);
    y += 2 * y / (2 + lambda);
    // x loses digits to the cancellation x - 2x / (2 + lambda) (a factor 2 / lambda per step).
    EXPECT_NEAR(sfn->x()[0], x, 1e-9 * std::abs(x)) << k;
    EXPECT_NEAR(sfn->x()[1], y, 1e-12 * std::abs(y)) << k;
  }
  EXPECT_GT(std::abs(sfn->x()[1]), 0.5);  // left: |y| doubled ten times
}

// ---- State: resume is bit-identical ------------------------------------------------------
TEST(SecondOrder, ResumeFromSavedStateIsBitIdentical) {
  for (const auto& entry : optim::second_order_methods()) {
    const std::string method(entry.name);
    SCOPED_TRACE(method);
    auto f = optim::make_test_function("beale");
    auto lab = optim::as_objective(*f);
    const optim::SecondOrderOptions o{.method = method, .history = 3};
    auto whole = make(o);
    whole->start(*lab, Vec{1.0, 1.0});
    for (int k = 0; k < 12; ++k) whole->step(*lab);

    auto first = make(o);
    first->start(*lab, Vec{1.0, 1.0});
    for (int k = 0; k < 6; ++k) first->step(*lab);
    const optim::SecondOrderState saved = first->save_state();
    auto second = make(o);
    second->start(*lab, Vec{5.0, 5.0});  // a different history, overwritten by load_state
    second->step(*lab);
    second->load_state(saved);
    for (int k = 0; k < 6; ++k) second->step(*lab);
    EXPECT_EQ(second->x()[0], whole->x()[0]);
    EXPECT_EQ(second->x()[1], whole->x()[1]);
    EXPECT_EQ(second->iterations(), 12);
  }
  // A state of another method does not load.
  auto f = optim::make_test_function("beale");
  auto lab = optim::as_objective(*f);
  auto bfgs = make({.method = "bfgs"});
  bfgs->start(*lab, Vec{1.0, 1.0});
  auto lbfgs = make({.method = "lbfgs"});
  lbfgs->start(*lab, Vec{1.0, 1.0});
  testing::expect_error<DataError>([&] { lbfgs->load_state(bfgs->save_state()); }, {"lbfgs"});
}

TEST(SecondOrder, BadOptionsNameTheMethodAndTheOption) {
  testing::expect_error<ConfigError>([] { make({.method = "newtonn"}); }, {"newtonn", "saddle_free", "lbfgs"});
  testing::expect_error<ConfigError>([] { make({.method = "lbfgs", .history = 0}); }, {"lbfgs", "history"});
  testing::expect_error<ConfigError>([] { make({.method = "cg", .c1 = 0.5}); }, {"cg", "c1"});
  testing::expect_error<ConfigError>([] { make({.method = "cg", .beta = "hs"}); }, {"cg", "beta", "hs"});
  testing::expect_error<ConfigError>([] { make({.method = "damped_newton", .damping = -1.0}); }, {"damping"});
  testing::expect_error<ConfigError>([] { optim::parse_line_search("wolfe"); }, {"wolfe", "strong_wolfe"});
  // Newton at a singular Hessian stops with a clear error (the monkey saddle's H(0) = 0).
  auto f = optim::make_test_function("monkey_saddle");
  auto lab = optim::as_objective(*f);
  auto newton = make({.method = "newton"});
  newton->start(*lab, Vec{0.0, 0.0});
  testing::expect_error<NumericError>([&] { newton->step(*lab); }, {"newton", "singular"});
}

}  // namespace
}  // namespace descent
