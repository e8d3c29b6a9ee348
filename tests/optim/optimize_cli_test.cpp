// `descent optimize`, the lab, as a user runs it: the trajectory CSV equals the library's
// optimizer driven by hand on the same function, and bad input gives one line and exit 1.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "descent/optim/optimizer.hpp"
#include "descent/optim/test_functions.hpp"
#include "support/process.hpp"

#ifdef DESCENT_CLI
namespace descent {
namespace {

namespace fs = std::filesystem;
using namespace descent::testing;  // support/process.hpp
using Result = ProcessResult;

class Lab : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = fresh_test_dir("descent_lab"); }
  void TearDown() override { fs::remove_all(dir_); }
  Result run(const std::string& args) { return shell(std::string(DESCENT_CLI) + " optimize " + args, dir_); }
  fs::path dir_;
};

TEST_F(Lab, TraceEqualsTheLibraryDrivenByHand) {
  const fs::path trace = dir_ / "trace.csv";
  const Result r = run("--function rosenbrock --optimizer nesterov --lr 0.001 --momentum 0.8 --start -1.2,1 --steps 25 --trace " +
                       trace.string());
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out.rfind("# rosenbrock with nesterov", 0), 0u) << r.out;
  std::istringstream csv(slurp(trace));
  std::string line;
  std::getline(csv, line);
  EXPECT_EQ(line, "step,x,y,f,grad_norm");

  auto f = optim::make_test_function("rosenbrock");
  ParameterArena arena(DType::f64);
  arena.add("xy", {2});
  arena.values().data<double>()[0] = -1.2;
  arena.values().data<double>()[1] = 1.0;
  auto opt = optim::make_optimizer({.name = "nesterov", .lr = 0.001, .momentum = 0.8}, nullptr);
  int rows = 0;
  for (int k = 0; std::getline(csv, line); ++k) {
    double step, x, y, fx, gn;
    char c;
    std::istringstream row(line);
    row >> step >> c >> x >> c >> y >> c >> fx >> c >> gn;
    EXPECT_EQ(step, k);
    EXPECT_EQ(x, arena.values().at(0)) << "step " << k;
    EXPECT_EQ(y, arena.values().at(1)) << "step " << k;
    EXPECT_EQ(fx, f->value({x, y}));
    opt->prepare(arena, k);
    const auto g = f->gradient({arena.values().at(0), arena.values().at(1)});
    arena.grads().data<double>()[0] = g[0];
    arena.grads().data<double>()[1] = g[1];
    opt->step(arena, k);
    ++rows;
  }
  EXPECT_EQ(rows, 26);  // the start and 25 steps
}

TEST_F(Lab, BadInputIsOneLineAndExitOne) {
  Result r = run("--function himmelblau --optimizer adam");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("himmelblau"), std::string::npos) << r.err;
  r = run("--function beale --optimizer adam --rho1 1.0");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("rho1"), std::string::npos) << r.err;
  r = run("--function beale --optimizer adam --start 1:2");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("--start"), std::string::npos) << r.err;
}

TEST_F(Lab, SaddleAndNoMinimum) {
  // Gradient descent from just off the saddle of x^2 - y^2 leaves along y: |y| grows by
  // (1 + 2 eps) per step, x shrinks by (1 - 2 eps).
  Result r = run("--function saddle --optimizer sgd --lr 0.1 --start 1,0.001 --steps 10");
  ASSERT_EQ(r.code, 0) << r.err;
  std::istringstream csv(r.out);
  std::string line, last;
  while (std::getline(csv, line)) {
    if (!line.empty() && line[0] != '#') last = line;
  }
  double step, x, y;
  char c;
  std::istringstream row(last);
  row >> step >> c >> x >> c >> y;
  EXPECT_NEAR(x, std::pow(0.8, 10), 1e-12);
  EXPECT_NEAR(y, 0.001 * std::pow(1.2, 10), 1e-12);
  r = run("--function no_minimum --optimizer sgd --lr 1 --steps 200");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out.find("distance to the minimum"), std::string::npos);  // there is none
}

TEST_F(Lab, TheSaddleExperiment) {
  // Section 8.2.3: Newton's method jumps to the saddle of x^2 - y^2 (H^{-1} g = x exactly),
  // gradient descent and saddle-free Newton leave it along -y's direction of negative curvature.
  Result r = run("--function saddle --optimizer newton --start 1,0.001 --steps 20");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("# ended near the saddle (0, 0) at distance 0, Hessian eigenvalues there -2, 2"), std::string::npos)
      << r.out;
  for (const char* leaves : {"sgd --lr 0.1", "saddle_free"}) {
    r = run(std::string("--function saddle --optimizer ") + leaves + " --start 1,0.001 --steps 20");
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.out.find("# ended near no critical point; the nearest is the saddle (0, 0)"), std::string::npos)
        << leaves << "\n" << r.out;
  }
  r = run("--function rosenbrock --optimizer lbfgs --steps 100");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("# ended near the minimum (1, 1)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("gradient exactly 0 after step"), std::string::npos) << r.out;
}

TEST_F(Lab, SecondOrderBadInputIsOneLine) {
  const std::pair<const char*, const char*> cases[] = {
      {"--function saddle --optimizer newton --momentum 0.9", "--momentum: the second-order method newton does not read it"},
      {"--function saddle --optimizer adam --history 3", "--history: only the second-order methods"},
      {"--function saddle --optimizer lbfgs --line-search wolfe", "line search \"wolfe\" is unknown"},
      {"--function saddle --optimizer newtonn", "(or a second-order method: newton,"},
      {"--function saddle --optimizer lbfgs --history 0", "lbfgs: history must be at least 1"},
  };
  for (const auto& [args, message] : cases) {
    const Result r = run(args);
    EXPECT_EQ(r.code, 1) << args;
    EXPECT_NE(r.err.find(message), std::string::npos) << args << "\n" << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
}

}  // namespace
}  // namespace descent
#endif
