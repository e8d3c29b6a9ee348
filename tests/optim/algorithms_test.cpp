// Every algorithm in every form against a trajectory computed here, independently, in
// plain scalar double code written from the equations (Goodfellow et al. 2016, Algorithms
// 8.1-8.7; Zeiler 2012; the update rules of torch.optim as its documentation states them).
// Twelve steps on f(theta) = 1/2 sum_i a_i theta_i^2 with a diagonal Hessian, both through
// the chain link by link and through the fused loop, to 1e-9 relative.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "descent/optim/optimizer.hpp"

namespace descent {
namespace {

using Vec = std::vector<double>;
const Vec kA = {0.5, 2.0, 7.0};        // the Hessian's diagonal
const Vec kTheta0 = {1.0, -1.5, 0.3};  // the start
constexpr int kSteps = 12;

Vec gradient(const Vec& x) {  // g = a (.) x
  Vec g(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) g[i] = kA[i] * x[i];
  return g;
}

// One reference step: updates theta (the iterate) given the step index k.
using Reference = std::function<void(Vec& theta, int k)>;

struct Case {
  std::string label;
  optim::OptimizerSpec spec;
  std::shared_ptr<optim::Schedule> schedule;
  Reference reference;
};

void expect_same_trajectory(const Case& c, bool fused) {
  SCOPED_TRACE(c.label + (fused ? " fused" : " chain"));
  optim::OptimizerSpec spec = c.spec;
  spec.fused = fused;
  ParameterArena arena(DType::f64);
  arena.add("theta", {3});
  for (int i = 0; i < 3; ++i) arena.values().data<double>()[i] = kTheta0[static_cast<std::size_t>(i)];
  auto opt = optim::make_optimizer(spec, c.schedule);
  Reference reference = c.reference;  // a fresh copy of the reference's state (zero)
  Vec theta = kTheta0;
  for (int k = 0; k < kSteps; ++k) {
    opt->prepare(arena, k);
    const Vec g = gradient({arena.values().at(0), arena.values().at(1), arena.values().at(2)});
    for (int i = 0; i < 3; ++i) arena.grads().data<double>()[i] = g[static_cast<std::size_t>(i)];
    opt->step(arena, k);
    reference(theta, k);
    for (int i = 0; i < 3; ++i) {
      const double want = theta[static_cast<std::size_t>(i)];
      ASSERT_NEAR(arena.values().at(i), want, 1e-9 * std::max(1.0, std::abs(want))) << "k = " << k << ", i = " << i;
    }
  }
  // The iterate moved: a reference that never moves cannot pass by accident.
  EXPECT_GT(std::abs(theta[2] - kTheta0[2]), 1e-3);
}

double linear(int k, double e0, double et, int tau) {  // eq. 8.14 written out
  const double t = std::min(1.0, static_cast<double>(k) / tau);
  return (1 - t) * e0 + t * et;
}

std::vector<Case> cases() {
  std::vector<Case> out;
  using optim::OptimizerSpec;
  // Algorithm 8.1 under the linear schedule.
  out.push_back({"sgd", OptimizerSpec{.name = "sgd"}, optim::linear_decay(0.2, 0.02, 8), [](Vec& th, int k) {
                   const Vec g = gradient(th);
                   for (std::size_t i = 0; i < 3; ++i) th[i] -= linear(k, 0.2, 0.02, 8) * g[i];
                 }});
  // L2 weight decay: g + lambda theta.
  out.push_back({"sgd + L2", OptimizerSpec{.name = "sgd", .weight_decay = 0.3}, optim::constant(0.1), [](Vec& th, int) {
                   const Vec g = gradient(th);
                   for (std::size_t i = 0; i < 3; ++i) th[i] -= 0.1 * (g[i] + 0.3 * th[i]);
                 }});
  // Algorithm 8.2 under a schedule.
  out.push_back({"momentum", OptimizerSpec{.name = "momentum", .momentum = 0.8}, optim::linear_decay(0.1, 0.01, 6),
                 [v = Vec(3, 0.0)](Vec& th, int k) mutable {
                   const Vec g = gradient(th);
                   for (std::size_t i = 0; i < 3; ++i) {
                     v[i] = 0.8 * v[i] - linear(k, 0.1, 0.01, 6) * g[i];
                     th[i] += v[i];
                   }
                 }});
  // torch.optim.SGD(momentum=mu): buf = mu buf + g; p -= lr buf.
  out.push_back({"momentum pytorch", OptimizerSpec{.name = "momentum", .form = "pytorch", .momentum = 0.8},
                 optim::linear_decay(0.1, 0.01, 6), [v = Vec(3, 0.0)](Vec& th, int k) mutable {
                   const Vec g = gradient(th);
                   for (std::size_t i = 0; i < 3; ++i) {
                     v[i] = 0.8 * v[i] + g[i];
                     th[i] -= linear(k, 0.1, 0.01, 6) * v[i];
                   }
                 }});
  // Algorithm 8.3: the gradient at the interim point theta + alpha v.
  out.push_back({"nesterov", OptimizerSpec{.name = "nesterov", .momentum = 0.7}, optim::constant(0.05),
                 [v = Vec(3, 0.0)](Vec& th, int) mutable {
                   Vec interim(3);
                   for (std::size_t i = 0; i < 3; ++i) interim[i] = th[i] + 0.7 * v[i];
                   const Vec g = gradient(interim);
                   for (std::size_t i = 0; i < 3; ++i) {
                     v[i] = 0.7 * v[i] - 0.05 * g[i];
                     th[i] += v[i];
                   }
                 }});
  // torch.optim.SGD(nesterov=True): buf = mu buf + g; p -= lr (g + mu buf).
  out.push_back({"nesterov pytorch", OptimizerSpec{.name = "nesterov", .form = "pytorch", .momentum = 0.7},
                 optim::constant(0.05), [v = Vec(3, 0.0)](Vec& th, int) mutable {
                   const Vec g = gradient(th);
                   for (std::size_t i = 0; i < 3; ++i) {
                     v[i] = 0.7 * v[i] + g[i];
                     th[i] -= 0.05 * (g[i] + 0.7 * v[i]);
                   }
                 }});
  // Algorithm 8.4 with its default delta = 1e-7; a large delta makes its place visible.
  out.push_back({"adagrad", OptimizerSpec{.name = "adagrad"}, optim::constant(0.3), [r = Vec(3, 0.0)](Vec& th, int) mutable {
                   const Vec g = gradient(th);
                   for (std::size_t i = 0; i < 3; ++i) {
                     r[i] += g[i] * g[i];
                     th[i] -= 0.3 / (1e-7 + std::sqrt(r[i])) * g[i];
                   }
                 }});
  out.push_back({"adagrad delta 0.5", OptimizerSpec{.name = "adagrad", .delta = 0.5}, optim::constant(0.3),
                 [r = Vec(3, 0.0)](Vec& th, int) mutable {
                   const Vec g = gradient(th);
                   for (std::size_t i = 0; i < 3; ++i) {
                     r[i] += g[i] * g[i];
                     th[i] -= 0.3 / (0.5 + std::sqrt(r[i])) * g[i];
                   }
                 }});
  // Algorithm 8.5: delta inside the root (0.01 so that its place matters at 1e-9).
  out.push_back({"rmsprop", OptimizerSpec{.name = "rmsprop", .rho = 0.8, .delta = 0.01}, optim::constant(0.05),
                 [r = Vec(3, 0.0)](Vec& th, int) mutable {
                   const Vec g = gradient(th);
                   for (std::size_t i = 0; i < 3; ++i) {
                     r[i] = 0.8 * r[i] + 0.2 * g[i] * g[i];
                     th[i] -= 0.05 / std::sqrt(0.01 + r[i]) * g[i];
                   }
                 }});
  // torch.optim.RMSprop: eps added to the root.
  out.push_back({"rmsprop pytorch", OptimizerSpec{.name = "rmsprop", .form = "pytorch", .rho = 0.8, .delta = 0.01},
                 optim::constant(0.05), [r = Vec(3, 0.0)](Vec& th, int) mutable {
                   const Vec g = gradient(th);
                   for (std::size_t i = 0; i < 3; ++i) {
                     r[i] = 0.8 * r[i] + 0.2 * g[i] * g[i];
                     th[i] -= 0.05 * g[i] / (std::sqrt(r[i]) + 0.01);
                   }
                 }});
  // torch.optim.RMSprop(centered=True, momentum=mu).
  out.push_back({"rmsprop pytorch centered momentum",
                 OptimizerSpec{.name = "rmsprop", .form = "pytorch", .momentum = 0.5, .rho = 0.8, .delta = 0.01, .centered = true},
                 optim::constant(0.02), [r = Vec(3, 0.0), s = Vec(3, 0.0), v = Vec(3, 0.0)](Vec& th, int) mutable {
                   const Vec g = gradient(th);
                   for (std::size_t i = 0; i < 3; ++i) {
                     r[i] = 0.8 * r[i] + 0.2 * g[i] * g[i];
                     s[i] = 0.8 * s[i] + 0.2 * g[i];
                     v[i] = 0.5 * v[i] + g[i] / (std::sqrt(r[i] - s[i] * s[i]) + 0.01);
                     th[i] -= 0.02 * v[i];
                   }
                 }});
  // Algorithm 8.6 (with 8.5's delta inside the root).
  out.push_back({"rmsprop_nesterov", OptimizerSpec{.name = "rmsprop_nesterov", .momentum = 0.6, .rho = 0.8, .delta = 0.01},
                 optim::constant(0.02), [r = Vec(3, 0.0), v = Vec(3, 0.0)](Vec& th, int) mutable {
                   Vec interim(3);
                   for (std::size_t i = 0; i < 3; ++i) interim[i] = th[i] + 0.6 * v[i];
                   const Vec g = gradient(interim);
                   for (std::size_t i = 0; i < 3; ++i) {
                     r[i] = 0.8 * r[i] + 0.2 * g[i] * g[i];
                     v[i] = 0.6 * v[i] - 0.02 / std::sqrt(0.01 + r[i]) * g[i];
                     th[i] += v[i];
                   }
                 }});
  // Zeiler (2012), Algorithm 1: no learning rate.
  out.push_back({"adadelta", OptimizerSpec{.name = "adadelta", .rho = 0.9, .delta = 1e-3}, optim::constant(123.0),
                 [eg = Vec(3, 0.0), ex = Vec(3, 0.0)](Vec& th, int) mutable {
                   const Vec g = gradient(th);
                   for (std::size_t i = 0; i < 3; ++i) {
                     eg[i] = 0.9 * eg[i] + 0.1 * g[i] * g[i];
                     const double dx = -std::sqrt(ex[i] + 1e-3) / std::sqrt(eg[i] + 1e-3) * g[i];
                     ex[i] = 0.9 * ex[i] + 0.1 * dx * dx;
                     th[i] += dx;
                   }
                 }});
  // torch.optim.Adadelta(lr): the same, then p -= lr delta.
  out.push_back({"adadelta pytorch", OptimizerSpec{.name = "adadelta", .form = "pytorch", .rho = 0.9, .delta = 1e-3},
                 optim::constant(0.5), [eg = Vec(3, 0.0), ex = Vec(3, 0.0)](Vec& th, int) mutable {
                   const Vec g = gradient(th);
                   for (std::size_t i = 0; i < 3; ++i) {
                     eg[i] = 0.9 * eg[i] + 0.1 * g[i] * g[i];
                     const double d = std::sqrt(ex[i] + 1e-3) / std::sqrt(eg[i] + 1e-3) * g[i];
                     ex[i] = 0.9 * ex[i] + 0.1 * d * d;
                     th[i] -= 0.5 * d;
                   }
                 }});
  // Algorithm 8.7 (delta = 0.01 so that its place is tested).
  auto adam_ref = [](double lr, double wd_l2, double wd_decoupled, bool ams) {
    return [=, s = Vec(3, 0.0), r = Vec(3, 0.0), rmax = Vec(3, 0.0), t = 0](Vec& th, int) mutable {
      Vec g = gradient(th);
      ++t;
      for (std::size_t i = 0; i < 3; ++i) {
        g[i] += wd_l2 * th[i];
        th[i] *= 1 - lr * wd_decoupled;  // torch.optim.AdamW decays first
        s[i] = 0.85 * s[i] + 0.15 * g[i];
        r[i] = 0.95 * r[i] + 0.05 * g[i] * g[i];
        rmax[i] = std::max(rmax[i], r[i]);
        const double s_hat = s[i] / (1 - std::pow(0.85, t));
        const double r_hat = (ams ? rmax[i] : r[i]) / (1 - std::pow(0.95, t));
        th[i] -= lr * s_hat / (std::sqrt(r_hat) + 0.01);
      }
    };
  };
  const OptimizerSpec adam{.name = "adam", .rho1 = 0.85, .rho2 = 0.95, .delta = 0.01};
  out.push_back({"adam", adam, optim::constant(0.1), adam_ref(0.1, 0.0, 0.0, false)});
  OptimizerSpec adam_l2 = adam;
  adam_l2.weight_decay = 0.2;
  out.push_back({"adam + L2", adam_l2, optim::constant(0.1), adam_ref(0.1, 0.2, 0.0, false)});
  OptimizerSpec adamw = adam;
  adamw.name = "adamw";
  adamw.weight_decay = 0.2;
  out.push_back({"adamw", adamw, optim::constant(0.1), adam_ref(0.1, 0.0, 0.2, false)});
  OptimizerSpec ams = adam;
  ams.name = "amsgrad";
  out.push_back({"amsgrad", ams, optim::constant(0.1), adam_ref(0.1, 0.0, 0.0, true)});
  // torch.optim.Adamax: exp_inf = max(beta2 exp_inf, |g| + eps); p -= lr / (1 - beta1^t) m / exp_inf.
  out.push_back({"adamax", OptimizerSpec{.name = "adamax", .rho1 = 0.85, .rho2 = 0.95, .delta = 0.01}, optim::constant(0.1),
                 [s = Vec(3, 0.0), m = Vec(3, 0.0), t = 0](Vec& th, int) mutable {
                   const Vec g = gradient(th);
                   ++t;
                   for (std::size_t i = 0; i < 3; ++i) {
                     s[i] = 0.85 * s[i] + 0.15 * g[i];
                     m[i] = std::max(0.95 * m[i], std::abs(g[i]) + 0.01);
                     th[i] -= 0.1 / (1 - std::pow(0.85, t)) * s[i] / m[i];
                   }
                 }});
  // torch.optim.NAdam (momentum_decay psi = 0.004).
  out.push_back({"nadam", OptimizerSpec{.name = "nadam", .rho1 = 0.85, .rho2 = 0.95, .delta = 0.01}, optim::constant(0.1),
                 [s = Vec(3, 0.0), r = Vec(3, 0.0), t = 0, prod = 1.0](Vec& th, int) mutable {
                   const Vec g = gradient(th);
                   ++t;
                   const double mu = 0.85 * (1 - 0.5 * std::pow(0.96, t * 0.004));
                   const double mu_next = 0.85 * (1 - 0.5 * std::pow(0.96, (t + 1) * 0.004));
                   prod *= mu;
                   for (std::size_t i = 0; i < 3; ++i) {
                     s[i] = 0.85 * s[i] + 0.15 * g[i];
                     r[i] = 0.95 * r[i] + 0.05 * g[i] * g[i];
                     const double d = std::sqrt(r[i] / (1 - std::pow(0.95, t))) + 0.01;
                     th[i] -= 0.1 * (1 - mu) / (1 - prod) * g[i] / d;
                     th[i] -= 0.1 * mu_next / (1 - prod * mu_next) * s[i] / d;
                   }
                 }});
  return out;
}

TEST(Algorithms, EveryFormMatchesAnIndependentTrajectoryChainAndFused) {
  for (const Case& c : cases()) {
    expect_same_trajectory(c, false);
    expect_same_trajectory(c, true);
  }
}

TEST(Algorithms, AllNamesAreAccepted) {
  ASSERT_EQ(optim::optimizer_names().size(), 12u);
  for (const std::string& name : optim::optimizer_names()) {
    auto opt = optim::make_optimizer({.name = name}, nullptr);
    EXPECT_FALSE(opt->describe().empty()) << name;
  }
}

// Hand-checked first steps (constants chosen so the arithmetic is short).
TEST(Algorithms, FirstStepsByHand) {
  ParameterArena arena(DType::f64);
  arena.add("theta", {1});
  // AdaGrad, eps = 0.5, g = 3: r = 9, theta = 0 - 0.5 * 3 / (1e-7 + 3) = -0.5 (to 2e-8).
  // Then g = 4: r = 25, theta = -0.5 - 0.5 * 4 / (1e-7 + 5) = -0.9.
  auto adagrad = optim::make_optimizer({.name = "adagrad", .lr = 0.5}, nullptr);
  arena.grads().fill(3.0);
  adagrad->step(arena, 0);
  EXPECT_NEAR(arena.values().at(0), -0.5, 2e-8);
  arena.grads().fill(4.0);
  adagrad->step(arena, 1);
  EXPECT_NEAR(arena.values().at(0), -0.9, 4e-8);
  // Adam's first step is -eps g / (|g| + delta) whatever rho1, rho2: s_hat = g, r_hat = g^2.
  // eps = 0.25, g = -8, delta = 1e-8: theta = 0 + 0.25 * 8 / (8 + 1e-8) = 0.25 (to 1e-9).
  auto adam = optim::make_optimizer({.name = "adam", .lr = 0.25}, nullptr);
  arena.values().fill(0.0);
  arena.grads().fill(-8.0);
  adam->step(arena, 0);
  EXPECT_NEAR(arena.values().at(0), 0.25, 1e-9);
  // RMSProp, rho = 0.75, delta = 1e-6 inside the root, eps = 0.5, g = 2: r = 0.25 * 4 = 1,
  // theta = 0 - 0.5 * 2 / sqrt(1 + 1e-6) = -1 + 5e-7 (to 1e-12). With delta outside the
  // root it would be -1 + 1e-6: the test tells the two places apart.
  auto rms = optim::make_optimizer({.name = "rmsprop", .lr = 0.5, .rho = 0.75}, nullptr);
  arena.values().fill(0.0);
  arena.grads().fill(2.0);
  rms->step(arena, 0);
  EXPECT_NEAR(arena.values().at(0), -1.0 + 5e-7, 1e-12);
}

}  // namespace
}  // namespace descent
