// The lab's functions: gradients and Hessians against central differences, the known
// minimizers and saddles, and an optimizer run on them through the library's own code.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "descent/error.hpp"
#include "descent/optim/optimizer.hpp"
#include "descent/optim/test_functions.hpp"

namespace descent {
namespace {

TEST(TestFunctions, GradientsAndHessiansMatchCentralDifferences) {
  const double h = 1e-5;
  const optim::Point2 points[] = {{0.3, -0.7}, {-1.2, 1.0}, {1.1, 0.4}};
  for (const std::string& name : optim::test_function_names()) {
    auto f = optim::make_test_function(name, {.condition = 25.0});
    for (const auto& p : points) {
      SCOPED_TRACE(name);
      const auto g = f->gradient(p);
      const auto H = f->hessian(p);
      for (int j = 0; j < 2; ++j) {
        optim::Point2 up = p, down = p;
        up[static_cast<std::size_t>(j)] += h;
        down[static_cast<std::size_t>(j)] -= h;
        const double fd = (f->value(up) - f->value(down)) / (2 * h);
        EXPECT_NEAR(g[static_cast<std::size_t>(j)], fd, 1e-6 * (1 + std::abs(fd)));
        const auto gu = f->gradient(up), gd = f->gradient(down);
        for (int i = 0; i < 2; ++i) {
          const double hd = (gu[static_cast<std::size_t>(i)] - gd[static_cast<std::size_t>(i)]) / (2 * h);
          EXPECT_NEAR(H[static_cast<std::size_t>(i * 2 + j)], hd, 1e-5 * (1 + std::abs(hd)));
        }
      }
    }
  }
}

TEST(TestFunctions, MinimizersAndSaddles) {
  for (const char* name : {"quadratic", "rosenbrock", "beale"}) {
    auto f = optim::make_test_function(name);
    const auto m = *f->minimizer();
    const auto g = f->gradient(m);
    EXPECT_EQ(g[0], 0.0) << name;
    EXPECT_EQ(g[1], 0.0) << name;
    EXPECT_GT(optim::eigenvalues(f->hessian(m))[0], 0.0) << name;
  }
  // x^2 - y^2: Hessian eigenvalues -2 and 2 at the saddle.
  const auto e = optim::eigenvalues(optim::make_test_function("saddle")->hessian({0.0, 0.0}));
  EXPECT_EQ(e[0], -2.0);
  EXPECT_EQ(e[1], 2.0);
  EXPECT_EQ(optim::eigenvalues(optim::make_test_function("quadratic", {.condition = 50.0})->hessian({1, 1}))[1], 50.0);
  EXPECT_THROW(optim::make_test_function("himmelblau"), ConfigError);
  EXPECT_THROW(optim::make_test_function("quadratic", {.condition = 0.5}), ConfigError);
}

TEST(TestFunctions, CriticalPointsHaveZeroGradientAndTheirKind) {
  // Each listed critical point: gradient 0 (by the formulas), kind from the Hessian's signs.
  const std::vector<std::pair<std::string, std::vector<std::string>>> expected = {
      {"quadratic", {"minimum"}}, {"rosenbrock", {"minimum"}}, {"beale", {"minimum", "saddle"}},
      {"saddle", {"saddle"}},     {"monkey_saddle", {"degenerate"}}, {"no_minimum", {}}};
  for (const auto& [name, kinds] : expected) {
    auto f = optim::make_test_function(name);
    const auto points = f->critical_points();
    ASSERT_EQ(points.size(), kinds.size()) << name;
    for (std::size_t i = 0; i < points.size(); ++i) {
      const auto g = f->gradient(points[i]);
      EXPECT_EQ(g[0], 0.0) << name << " " << i;
      EXPECT_EQ(g[1], 0.0) << name << " " << i;
      EXPECT_EQ(optim::classify_critical_point(f->hessian(points[i])), kinds[i]) << name << " " << i;
    }
  }
  EXPECT_EQ(optim::classify_critical_point({-1.0, 0.0, 0.0, -3.0}), "maximum");
}

TEST(TestFunctions, NoMinimumHasAVanishingGradientAndDecreasingValues) {
  auto f = optim::make_test_function("no_minimum");
  EXPECT_FALSE(f->minimizer());
  EXPECT_GT(f->value({1.0, 0.0}), f->value({10.0, 0.0}));
  EXPECT_GT(f->value({10.0, 0.0}), 0.0);
  EXPECT_LT(std::abs(f->gradient({40.0, 0.0})[0]), 1e-17);
}

TEST(TestFunctions, MomentumBeatsSgdOnAnIllConditionedQuadratic) {
  // kappa = 100, eps = 1/100 (stable for the stiff direction): after 200 steps SGD has
  // shrunk x only by (1 - 0.01)^200 = 0.134; momentum 0.9 gets far closer.
  auto f = optim::make_test_function("quadratic", {.condition = 100.0});
  auto run = [&](const std::string& name) {
    ParameterArena arena(DType::f64);
    arena.add("xy", {2});
    arena.values().data<double>()[0] = 1.0;
    arena.values().data<double>()[1] = 1.0;
    auto opt = optim::make_optimizer({.name = name, .lr = 0.01}, nullptr);
    for (int k = 0; k < 200; ++k) {
      opt->prepare(arena, k);
      const auto g = f->gradient({arena.values().at(0), arena.values().at(1)});
      arena.grads().data<double>()[0] = g[0];
      arena.grads().data<double>()[1] = g[1];
      opt->step(arena, k);
    }
    return f->value({arena.values().at(0), arena.values().at(1)});
  };
  EXPECT_NEAR(run("sgd"), 0.5 * std::pow(0.99, 400), 1e-12);
  EXPECT_LT(run("momentum"), 1e-3 * run("sgd"));
}

}  // namespace
}  // namespace descent
