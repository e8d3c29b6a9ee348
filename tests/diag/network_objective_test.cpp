// The second-order methods on a network's loss (optim/network_objective.hpp): the objective's
// value and gradient equal one plain tape's over the same examples, its Hessian-vector
// products equal central differences of its gradient, and L-BFGS, saddle-free Newton and
// damped Newton (Hessian-free) lower a small MLP's full-batch loss.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "descent/init/rng.hpp"
#include "descent/optim/network_objective.hpp"
#include "problem.hpp"

namespace descent {
namespace {

using diag_testing::Problem;

TEST(NetworkObjective, ValueGradientAndHvAgainstIndependentComputations) {
  Problem p(DType::f64, {4, 6, 3}, nn::Activation::tanh, 40, 3);
  optim::NetworkObjective objective(p.net, p.arena, p.x, p.labels, {.chunk = 16});
  std::vector<double> theta = objective.parameters();
  for (double& v : theta) v *= 0.8;  // elsewhere than where it was built
  std::vector<double> g(theta.size());
  const double f = objective.evaluate(theta, g);
  std::vector<double> g_ref;
  const double f_ref = p.loss_and_gradient(g_ref);  // the arena now holds theta
  EXPECT_NEAR(f, f_ref, 1e-13 * std::abs(f_ref));
  EXPECT_LT(diag_testing::relative_difference(g, g_ref), 1e-12);
  // H v against (g(theta + h v) - g(theta - h v)) / 2h.
  std::vector<double> v(theta.size());
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = std::sin(1.0 + static_cast<double>(i));
  std::vector<double> hv(theta.size()), up(theta), down(theta), g_up(theta.size()), g_down(theta.size());
  const double h = 1e-5;
  for (std::size_t i = 0; i < v.size(); ++i) up[i] += h * v[i], down[i] -= h * v[i];
  objective.evaluate(up, g_up);
  objective.evaluate(down, g_down);
  objective.hessian_vector(theta, v, hv);  // moves the parameters back to theta first
  std::vector<double> fd(theta.size());
  for (std::size_t i = 0; i < v.size(); ++i) fd[i] = (g_up[i] - g_down[i]) / (2 * h);
  EXPECT_LT(diag_testing::relative_difference(hv, fd), 1e-7);
}

TEST(NetworkObjective, SecondOrderMethodsLowerAnMlpsFullBatchLoss) {
  for (const char* method : {"lbfgs", "saddle_free", "damped_newton", "bfgs", "cg"}) {
    SCOPED_TRACE(method);
    Problem p(DType::f64, {4, 6, 3}, nn::Activation::tanh, 64, 5);
    optim::NetworkObjective objective(p.net, p.arena, p.x, p.labels, {.chunk = 32});
    optim::SecondOrderOptions o{.method = method};
    if (std::string(method) == "saddle_free") o.line_search = optim::LineSearch::strong_wolfe;
    auto m = optim::make_second_order(o);
    m->start(objective, objective.parameters());
    const double f0 = m->value();
    double previous = f0;
    for (int k = 0; k < 25; ++k) {
      const auto r = m->step(objective);
      if (r.stalled) break;
      EXPECT_LE(m->value(), previous) << "step " << k;  // every method here only takes descending steps
      previous = m->value();
    }
    EXPECT_LT(m->value(), 0.8 * f0);
  }
}

}  // namespace
}  // namespace descent
