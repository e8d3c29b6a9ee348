// train::compute_gradient and train::train_step against a forward pass, gradient and
// Nesterov update (Algorithm 8.3) written out by hand for a linear softmax classifier.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "descent/nn/module.hpp"
#include "descent/optim/optimizer.hpp"
#include "descent/train/step.hpp"

namespace descent {
namespace {

constexpr int kB = 4, kIn = 3, kOut = 2;

// theta = [W (kOut x kIn, row-major), b (kOut)], as the arena lays out Linear's parameters.
struct Hand {
  std::vector<double> x{0.5, -1.0, 2.0, 1.5, 0.25, -0.5, -2.0, 1.0, 0.0, 0.3, 0.7, -1.2};
  std::vector<int> y{0, 1, 1, 0};

  // Mean cross-entropy of softmax(x W^T + b) and its gradient with respect to theta.
  double loss_and_grad(const std::vector<double>& theta, std::vector<double>& g) const {
    g.assign(theta.size(), 0.0);
    double loss = 0.0;
    for (int i = 0; i < kB; ++i) {
      double z[kOut];
      for (int j = 0; j < kOut; ++j) {
        z[j] = theta[kOut * kIn + j];
        for (int k = 0; k < kIn; ++k) z[j] += theta[j * kIn + k] * x[i * kIn + k];
      }
      const double m = std::max(z[0], z[1]);
      const double s = std::exp(z[0] - m) + std::exp(z[1] - m);
      loss += -(z[y[i]] - m - std::log(s)) / kB;
      for (int j = 0; j < kOut; ++j) {
        const double dz = (std::exp(z[j] - m) / s - (j == y[i] ? 1.0 : 0.0)) / kB;
        for (int k = 0; k < kIn; ++k) g[j * kIn + k] += dz * x[i * kIn + k];
        g[kOut * kIn + j] += dz;
      }
    }
    return loss;
  }
};

struct Tiny {
  ParameterArena arena{DType::f64};
  nn::Sequential net{arena};
  autodiff::Tape tape;
  Tensor x, y;
  std::vector<double> theta0{0.1, -0.2, 0.3, 0.05, 0.4, -0.1, 0.02, -0.03};
  explicit Tiny(const Hand& h) {
    net.add(nn::Linear(kIn, kOut));
    arena.freeze();
    double* p = arena.values().data<double>();
    for (std::size_t i = 0; i < theta0.size(); ++i) p[i] = theta0[i];
    x = Tensor::from<double>({kB, kIn}, std::span<const double>(h.x));
    std::vector<std::int32_t> labels(h.y.begin(), h.y.end());
    y = Tensor::from<std::int32_t>({kB}, std::span<const std::int32_t>(labels));
  }
  std::vector<double> values() const {
    const double* p = const_cast<ParameterArena&>(arena).values().data<double>();
    return {p, p + theta0.size()};
  }
};

TEST(Step, GradientMatchesTheHandWrittenOne) {
  const Hand h;
  Tiny t(h);
  ASSERT_EQ(t.arena.size(), static_cast<std::int64_t>(t.theta0.size()));
  auto opt = optim::make_optimizer({.name = "sgd", .lr = 0.1}, nullptr);
  const train::Gradient g = train::compute_gradient(t.net, t.arena, *opt, t.tape, t.x, t.y, 0);
  std::vector<double> expected;
  const double loss = h.loss_and_grad(t.theta0, expected);
  EXPECT_NEAR(g.loss_value, loss, 1e-14);
  double norm2 = 0;
  const double* grads = t.arena.grads().data<double>();
  for (std::size_t i = 0; i < expected.size(); ++i) {
    EXPECT_NEAR(grads[i], expected[i], 1e-14) << i;
    norm2 += expected[i] * expected[i];
  }
  EXPECT_NEAR(g.grad_norm, std::sqrt(norm2), 1e-14);
  EXPECT_TRUE(g.finite());
  // The parameters have not moved and the tape still holds the step's graph.
  EXPECT_EQ(t.values(), t.theta0);
  EXPECT_GT(t.tape.size(), 0u);
  EXPECT_DOUBLE_EQ(g.loss.value().item(), g.loss_value);
  // A second call starts from zeroed gradients (no accumulation).
  train::compute_gradient(t.net, t.arena, *opt, t.tape, t.x, t.y, 0);
  EXPECT_NEAR(t.arena.grads().data<double>()[0], expected[0], 1e-14);
}

TEST(Step, NesterovStepsMatchAlgorithm83ByHand) {
  const Hand h;
  Tiny t(h);
  const double eps = 0.5, alpha = 0.9;
  auto opt = optim::make_optimizer({.name = "nesterov", .lr = eps, .momentum = alpha}, nullptr);
  std::vector<double> theta = t.theta0, v(theta.size(), 0.0), g, interim(theta.size());
  for (std::int64_t k = 0; k < 4; ++k) {
    // Algorithm 8.3: interim point, gradient there, v <- alpha v - eps g, theta <- theta + v.
    for (std::size_t i = 0; i < theta.size(); ++i) interim[i] = theta[i] + alpha * v[i];
    const double loss = h.loss_and_grad(interim, g);
    for (std::size_t i = 0; i < theta.size(); ++i) {
      v[i] = alpha * v[i] - eps * g[i];
      theta[i] += v[i];
    }
    const double got = train::train_step(t.net, t.arena, *opt, t.tape, t.x, t.y, k);
    EXPECT_NEAR(got, loss, 1e-13) << "step " << k;
    const std::vector<double> now = t.values();
    for (std::size_t i = 0; i < theta.size(); ++i) EXPECT_NEAR(now[i], theta[i], 1e-13) << "step " << k << " " << i;
  }
}

TEST(Step, NonFiniteLossIsReported) {
  const Hand h;
  Tiny t(h);
  t.x.data<double>()[0] = std::numeric_limits<double>::quiet_NaN();
  auto opt = optim::make_optimizer({.name = "sgd", .lr = 0.1}, nullptr);
  EXPECT_FALSE(train::compute_gradient(t.net, t.arena, *opt, t.tape, t.x, t.y, 0).finite());
  EXPECT_FALSE(train::compute_gradient(t.net, t.arena, *opt, t.tape, t.x, t.y, 0, false).finite());
}

}  // namespace
}  // namespace descent
