// Tape::hvp's contract (tape.hpp) on a small float64 MLP, each case against the dense
// Hessian computed independently: central differences of the gradient, column by column.
//   - outputs that are undefined, of the wrong size or dtype: a clear ShapeError;
//   - v aliasing hv (hvp(loss, w, w)): w becomes H w;
//   - v aliasing param_grads (Hg by hvp(loss, arena.grads(), hg, arena.grads())): H g;
//   - hv aliasing param_grads or the parameter values: refused;
//   - no param_grads (Hv alone): the parameter-gradient products skipped, the same Hv
//     (a ReLU MLP, also against central differences of the gradient along v).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "descent/autodiff/tape.hpp"
#include "descent/error.hpp"
#include "descent/init/rng.hpp"
#include "descent/loss/loss.hpp"
#include "descent/nn/module.hpp"
#include "support/finite_hessian.hpp"

namespace descent {
namespace {

struct Fixture {
  ParameterArena arena{DType::f64};
  nn::Sequential net = nn::mlp(arena, {3, 4, 2}, nn::Activation::tanh);
  Tensor x = Tensor::empty({5, 3}, DType::f64);
  Tensor labels = Tensor::from<std::int32_t>({5}, {0, 1, 1, 0, 1});

  Fixture() {
    Rng rng(7);
    double* w = arena.values().data<double>();
    for (std::int64_t i = 0; i < arena.size(); ++i) w[i] = rng.uniform(-1.0, 1.0);
    double* px = x.data<double>();
    for (std::int64_t i = 0; i < x.numel(); ++i) px[i] = rng.uniform(-2.0, 2.0);
  }
  autodiff::Var loss(autodiff::Tape& tape) { return loss::cross_entropy(net.forward(tape, tape.constant(x)), labels); }

  std::vector<double> gradient() {
    autodiff::Tape tape;
    arena.zero_grad();
    tape.backward(loss(tape));
    const double* g = arena.grads().data<double>();
    return {g, g + arena.size()};
  }
  // H[i][j] = (g_i(w + h e_j) - g_i(w - h e_j)) / 2h, symmetrized.
  std::vector<std::vector<double>> dense_hessian() {
    const std::int64_t n = arena.size();
    const double h = 1e-5;
    std::vector<std::vector<double>> H(static_cast<std::size_t>(n), std::vector<double>(static_cast<std::size_t>(n)));
    double* w = arena.values().data<double>();
    for (std::int64_t j = 0; j < n; ++j) {
      const double keep = w[j];
      w[j] = keep + h;
      const auto gp = gradient();
      w[j] = keep - h;
      const auto gm = gradient();
      w[j] = keep;
      for (std::int64_t i = 0; i < n; ++i) H[i][j] = (gp[i] - gm[i]) / (2 * h);
    }
    for (std::int64_t i = 0; i < n; ++i) {
      for (std::int64_t j = 0; j < i; ++j) H[i][j] = H[j][i] = 0.5 * (H[i][j] + H[j][i]);
    }
    return H;
  }
  Tensor random_vector(std::uint64_t seed) {
    Tensor v = Tensor::empty({arena.size()}, DType::f64);
    Rng rng(seed);
    for (double& e : v.span<double>()) e = rng.uniform(-1.0, 1.0);
    return v;
  }
};

std::vector<double> times(const std::vector<std::vector<double>>& H, const std::vector<double>& v) {
  std::vector<double> out(v.size(), 0.0);
  for (std::size_t i = 0; i < v.size(); ++i) {
    for (std::size_t j = 0; j < v.size(); ++j) out[i] += H[i][j] * v[j];
  }
  return out;
}

std::vector<double> values(const Tensor& t) {
  const double* p = t.data<double>();
  return {p, p + t.numel()};
}

// max |a - b| / max(1, max |b|)
double relative_error(const std::vector<double>& a, const std::vector<double>& b) {
  double worst = 0.0, scale = 1.0;
  for (std::size_t i = 0; i < b.size(); ++i) {
    worst = std::max(worst, std::abs(a[i] - b[i]));
    scale = std::max(scale, std::abs(b[i]));
  }
  return worst / scale;
}

constexpr double tol = 1e-6;

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const ShapeError& e) {
    return e.what();
  }
  return "(no ShapeError)";
}

TEST(HvpContract, SeparateBuffersGiveHvAndTheGradient) {
  Fixture f;
  const auto H = f.dense_hessian();
  const auto g = f.gradient();
  const Tensor v = f.random_vector(3);
  Tensor hv = Tensor::empty({f.arena.size()}, DType::f64);
  Tensor grads = Tensor::empty({f.arena.size()}, DType::f64);
  autodiff::Tape tape;
  tape.hvp(f.loss(tape), v, hv, grads);
  EXPECT_LT(relative_error(values(hv), times(H, values(v))), tol);
  EXPECT_LT(relative_error(values(grads), g), 1e-12);
}

TEST(HvpContract, OutputAliasingTheInputGivesHTimesTheInput) {
  Fixture f;
  const auto H = f.dense_hessian();
  Tensor w = f.random_vector(4);
  const auto expected = times(H, values(w));
  autodiff::Tape tape;
  tape.hvp(f.loss(tape), w, w);  // w <- H w
  EXPECT_LT(relative_error(values(w), expected), tol);
}

TEST(HvpContract, HgFromTheArenaGradientsInPlace) {
  Fixture f;
  const auto H = f.dense_hessian();
  const auto g = f.gradient();  // leaves g in arena.grads()
  const auto expected = times(H, g);
  Tensor hg = Tensor::empty({f.arena.size()}, DType::f64);
  autodiff::Tape tape;
  tape.hvp(f.loss(tape), f.arena.grads(), hg, f.arena.grads());
  EXPECT_LT(relative_error(values(hg), expected), tol);
  EXPECT_LT(relative_error(values(f.arena.grads()), g), 1e-12);  // the fresh gradient, the same point
}

TEST(HvpContract, ManyProductsAtOnePointWithTheOutputAsTheNextInput) {
  Fixture f;
  const auto H = f.dense_hessian();
  Tensor w = f.random_vector(5);
  auto expected = values(w);
  autodiff::Tape tape;
  const autodiff::Var loss = f.loss(tape);
  for (int k = 0; k < 3; ++k) {  // power iteration without a second buffer: w <- H w
    tape.hvp(loss, w, w);
    expected = times(H, expected);
  }
  EXPECT_LT(relative_error(values(w), expected), 1e-5);
}

// hvp_at_gradient: the tangent sweeps alone, the gradient read from the last backward.
// Several products in a row (stale tangents or R(g) from the previous one would show), one
// with v aliasing hv; each against the dense Hessian; the arena's gradient untouched.
TEST(HvpContract, AtTheGradientGivesHvForEveryProductAtThePoint) {
  Fixture f;
  const auto H = f.dense_hessian();
  const auto g = f.gradient();
  autodiff::Tape tape;
  const autodiff::Var loss = f.loss(tape);
  f.arena.zero_grad();
  tape.backward(loss);
  ASSERT_TRUE(tape.has_gradient(loss));
  Tensor hv = Tensor::empty({f.arena.size()}, DType::f64);
  Tensor full = Tensor::empty({f.arena.size()}, DType::f64);
  for (std::uint64_t seed = 11; seed < 14; ++seed) {
    const Tensor v = f.random_vector(seed);
    tape.hvp_at_gradient(loss, v, hv);
    EXPECT_LT(relative_error(values(hv), times(H, values(v))), tol) << seed;
    autodiff::Tape fresh;
    fresh.hvp(f.loss(fresh), v, full);
    EXPECT_LT(relative_error(values(hv), values(full)), 1e-13) << seed;
  }
  Tensor w = f.random_vector(15);
  const auto expected = times(H, values(w));
  tape.hvp_at_gradient(loss, w, w);  // w <- H w
  EXPECT_LT(relative_error(values(w), expected), tol);
  EXPECT_LT(relative_error(values(f.arena.grads()), g), 1e-12);
  // After a full hvp on the same tape, the fast path still holds.
  const Tensor v = f.random_vector(16);
  tape.hvp(loss, v, full);
  tape.hvp_at_gradient(loss, v, hv);
  EXPECT_LT(relative_error(values(hv), values(full)), 1e-13);
}

TEST(HvpContract, AtTheGradientNeedsAGradientSweepOfThatLoss) {
  Fixture f;
  const Tensor v = f.random_vector(17);
  Tensor hv = Tensor::empty({f.arena.size()}, DType::f64);
  autodiff::Tape tape;
  const autodiff::Var loss = f.loss(tape);
  EXPECT_FALSE(tape.has_gradient(loss));
  EXPECT_THROW(tape.hvp_at_gradient(loss, v, hv), Error);
  tape.backward(loss, Tensor::zeros({f.arena.size()}, DType::f64));
  EXPECT_TRUE(tape.has_gradient(loss));
  const autodiff::Var again = f.loss(tape);  // recording invalidates the sweep
  EXPECT_FALSE(tape.has_gradient(loss));
  EXPECT_FALSE(tape.has_gradient(again));
  EXPECT_THROW(tape.hvp_at_gradient(again, v, hv), Error);
  tape.hvp(again, v, hv);
  EXPECT_TRUE(tape.has_gradient(again));
  EXPECT_FALSE(tape.has_gradient(loss));  // the sweep was of the other loss
  EXPECT_NE(message_of([&] { tape.hvp_at_gradient(again, v, Tensor::empty({3}, DType::f64)); })
                .find("hv has 3 elements, the arena has 26"),
            std::string::npos);
  tape.clear();
  EXPECT_FALSE(tape.has_gradient(again));
}

// vhv_at_gradient: v'Hv from the tangent-forward sweep and the kept gradient alone, against
// the dense Hessian (tanh MLP: linear and tanh second-order terms, softmax cross-entropy);
// on a ReLU MLP against v . (H v) of a full product; nullopt for an operation without a rule.
TEST(HvpContract, VhvAtTheGradientIsTheQuadraticFormOfTheDenseHessian) {
  Fixture f;
  const auto H = f.dense_hessian();
  autodiff::Tape tape;
  const autodiff::Var loss = f.loss(tape);
  EXPECT_THROW((void)tape.vhv_at_gradient(loss, f.random_vector(20)), Error);  // no gradient yet
  tape.backward(loss, Tensor::zeros({f.arena.size()}, DType::f64));
  for (std::uint64_t seed = 21; seed < 24; ++seed) {
    const Tensor v = f.random_vector(seed);
    const auto hv = times(H, values(v));
    double expected = 0.0;
    for (std::size_t i = 0; i < hv.size(); ++i) expected += values(v)[i] * hv[i];
    const std::optional<double> q = tape.vhv_at_gradient(loss, v);
    ASSERT_TRUE(q.has_value());
    EXPECT_NEAR(*q, expected, 1e-6 * std::max(1.0, std::abs(expected))) << seed;
    EXPECT_GT(std::abs(expected), 1e-3);
  }

  ParameterArena arena{DType::f64};
  nn::Sequential relu = nn::mlp(arena, {3, 6, 5, 2}, nn::Activation::relu);
  Rng rng(9);
  for (double& e : arena.values().span<double>()) e = rng.uniform(-1.0, 1.0);
  autodiff::Tape t2;
  const autodiff::Var l2 = loss::cross_entropy(relu.forward(t2, t2.constant(f.x)), f.labels);
  t2.backward(l2, Tensor::zeros({arena.size()}, DType::f64));
  Tensor v = Tensor::empty({arena.size()}, DType::f64);
  for (double& e : v.span<double>()) e = rng.uniform(-1.0, 1.0);
  Tensor hv = Tensor::empty({arena.size()}, DType::f64);
  autodiff::Tape t3;
  t3.hvp(loss::cross_entropy(relu.forward(t3, t3.constant(f.x)), f.labels), v, hv);
  double expected = 0.0;
  for (std::int64_t i = 0; i < arena.size(); ++i) expected += v.data<double>()[i] * hv.data<double>()[i];
  const std::optional<double> q = t2.vhv_at_gradient(l2, v);
  ASSERT_TRUE(q.has_value());
  EXPECT_NEAR(*q, expected, 1e-12 * std::max(1.0, std::abs(expected)));
  EXPECT_GT(std::abs(expected), 1e-3);

  ParameterArena sa{DType::f64};
  nn::Sequential sig = nn::mlp(sa, {3, 4, 2}, nn::Activation::sigmoid);
  autodiff::Tape t4;
  const autodiff::Var l4 = loss::cross_entropy(sig.forward(t4, t4.constant(f.x)), f.labels);
  t4.backward(l4, Tensor::zeros({sa.size()}, DType::f64));
  EXPECT_FALSE(t4.vhv_at_gradient(l4, Tensor::zeros({sa.size()}, DType::f64)).has_value());
}

// Hv alone (no param_grads): the parameter-gradient products are skipped. On a 3-layer ReLU
// MLP with biases (first layer: data input, so x' = 0 there) Hv alone is checked against
// (1) the dense Hessian (central differences of the gradient, column by column), (2) central
// differences of the gradient along v directly, and (3) the same product with the gradient
// returned, bit for bit; nothing computed a parameter's gradient (its leaf holds none) and
// the arena's gradient buffer is not written.
TEST(HvpContract, HvAloneSkipsTheParameterGradientsAndIsTheSameProduct) {
  Fixture f;
  ParameterArena arena{DType::f64};
  nn::Sequential relu = nn::mlp(arena, {3, 6, 5, 2}, nn::Activation::relu);
  Rng rng(31);
  for (double& e : arena.values().span<double>()) e = rng.uniform(-1.0, 1.0);
  const auto loss_of = [&](autodiff::Tape& tape) {
    return loss::cross_entropy(relu.forward(tape, tape.constant(f.x)), f.labels);
  };
  const auto gradient = [&] {
    autodiff::Tape tape;
    arena.zero_grad();
    tape.backward(loss_of(tape));
    return values(arena.grads());
  };
  const std::int64_t n = arena.size();
  Tensor v = Tensor::empty({n}, DType::f64);
  for (double& e : v.span<double>()) e = rng.uniform(-1.0, 1.0);
  // (1) and (2): ReLU is piecewise linear, so h must not carry a pre-activation across 0.
  const double h = 1e-6;
  double* w = arena.values().data<double>();
  const std::vector<double> dense = descent::testing::central_difference_hessian(w, n, gradient, h);  // row-major
  std::vector<std::vector<double>> H(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) H[static_cast<std::size_t>(i)].assign(dense.begin() + i * n, dense.begin() + (i + 1) * n);
  std::vector<double> fd(static_cast<std::size_t>(n));
  {
    const std::vector<double> keep(w, w + n);
    for (std::int64_t i = 0; i < n; ++i) w[i] = keep[i] + h * v.data<double>()[i];
    const auto gp = gradient();
    for (std::int64_t i = 0; i < n; ++i) w[i] = keep[i] - h * v.data<double>()[i];
    const auto gm = gradient();
    for (std::int64_t i = 0; i < n; ++i) {
      w[i] = keep[i];
      fd[static_cast<std::size_t>(i)] = (gp[i] - gm[i]) / (2 * h);
    }
  }
  const auto g = gradient();
  arena.grads().fill(-7.0);  // a sentinel: Hv alone must not write here
  Tensor hv = Tensor::empty({n}, DType::f64);
  autodiff::Tape tape;
  const autodiff::Var loss = loss_of(tape);
  tape.hvp(loss, v, hv);
  EXPECT_LT(relative_error(values(hv), times(H, values(v))), 1e-6);
  EXPECT_LT(relative_error(values(hv), fd), 1e-6);
  EXPECT_GT(*std::max_element(fd.begin(), fd.end()), 1e-2);  // not a vacuous comparison
  for (double e : arena.grads().span<double>()) ASSERT_EQ(e, -7.0);
  for (std::int32_t p = 0; p < static_cast<std::int32_t>(arena.count()); ++p) {
    const autodiff::Var leaf = tape.param(arena, ParamId{p});
    EXPECT_FALSE(tape.node(leaf).grad.defined()) << "parameter " << p << ": its gradient was computed";
  }
  // (3) the same tape, the gradient wanted: the same Hv bit for bit, and the gradient.
  Tensor hv_g = Tensor::empty({n}, DType::f64);
  Tensor grads = Tensor::empty({n}, DType::f64);
  tape.hvp(loss, v, hv_g, grads);
  EXPECT_EQ(values(hv_g), values(hv));
  EXPECT_LT(relative_error(values(grads), g), 1e-12);
  // hvp_at_gradient after Hv alone: the nodes' gradients are there.
  autodiff::Tape t2;
  const autodiff::Var l2 = loss_of(t2);
  t2.hvp(l2, v, hv_g);
  ASSERT_TRUE(t2.has_gradient(l2));
  Tensor again = Tensor::empty({n}, DType::f64);
  t2.hvp_at_gradient(l2, v, again);
  EXPECT_EQ(values(again), values(hv));
}

TEST(HvpContract, UndefinedOrMisshapenArgumentsAreRefusedByName) {
  Fixture f;
  const Tensor v = f.random_vector(6);
  Tensor hv = Tensor::empty({f.arena.size()}, DType::f64);
  autodiff::Tape tape;
  const autodiff::Var loss = f.loss(tape);
  EXPECT_NE(message_of([&] { tape.hvp(loss, v, Tensor()); }).find("hvp: hv is an undefined Tensor"), std::string::npos);
  EXPECT_NE(message_of([&] { tape.hvp(loss, Tensor(), hv); }).find("hvp: v is an undefined Tensor"), std::string::npos);
  EXPECT_NE(message_of([&] { tape.hvp(loss, v, Tensor::empty({3}, DType::f64)); }).find("hv has 3 elements, the arena has 26"),
            std::string::npos);
  EXPECT_NE(message_of([&] { tape.hvp(loss, v, hv, Tensor::empty({26}, DType::f32)); }).find("param_grads is f32"),
            std::string::npos);
}

TEST(HvpContract, OutputsSharingMemoryAreRefused) {
  Fixture f;
  const Tensor v = f.random_vector(8);
  Tensor hv = Tensor::empty({f.arena.size()}, DType::f64);
  autodiff::Tape tape;
  const autodiff::Var loss = f.loss(tape);
  EXPECT_NE(message_of([&] { tape.hvp(loss, v, hv, hv); }).find("hv and param_grads share memory"), std::string::npos);
  EXPECT_NE(message_of([&] { tape.hvp(loss, v, f.arena.values()); }).find("hv shares memory with the parameter values"),
            std::string::npos);
  EXPECT_NE(message_of([&] { tape.hvp(loss, v, hv, f.arena.values()); })
                .find("param_grads shares memory with the parameter values"),
            std::string::npos);
}

}  // namespace
}  // namespace descent
