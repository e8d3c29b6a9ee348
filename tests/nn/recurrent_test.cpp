// Recurrent modules: outputs against formulas written out in the test, gradients through
// time against central differences (float64), exact Hessian-vector products against
// central differences of the gradient, weight sharing across steps, truncated backprop
// through time, and the per-step gradient norms of section 8.2.5.
#include "descent/nn/recurrent.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>

#include "descent/autodiff/sequence.hpp"
#include "descent/loss/loss.hpp"
#include "descent/nn/initialize.hpp"
#include "descent/tensor/kernels.hpp"
#include "support/gradcheck.hpp"

namespace descent {
namespace {

using autodiff::Tape;
using autodiff::Var;
using nn::CellKind;
using testing::random_tensor;

double sigma(double a) { return 1.0 / (1.0 + std::exp(-a)); }

// The states h_1..h_T ([T][B*H]) of a cell, straight from the formulas of recurrent.hpp
// with plain loops: W_ih [G*H, D], W_hh [G*H, H], b [G*H], b_hn [H] (GRU), x [B, T*D].
std::vector<std::vector<double>> reference_states(CellKind kind, const ParameterArena& arena_in, const std::string& prefix,
                                                  const Tensor& x, std::int64_t d, std::int64_t n) {
  auto& arena = const_cast<ParameterArena&>(arena_in);
  const Tensor wih = arena.value(arena.find(prefix + ".weight_ih"));
  const Tensor whh = arena.value(arena.find(prefix + ".weight_hh"));
  const Tensor b = arena.value(arena.find(prefix + ".bias"));
  const Tensor bhn = kind == CellKind::gru ? arena.value(arena.find(prefix + ".bias_hn")) : Tensor();
  const std::int64_t g = wih.dim(0);
  const std::int64_t batch = x.dim(0);
  const std::int64_t steps = x.dim(1) / d;
  std::vector<std::vector<double>> out;
  std::vector<double> h(static_cast<std::size_t>(batch * n), 0.0), c = h;
  for (std::int64_t t = 0; t < steps; ++t) {
    std::vector<double> next = h;
    for (std::int64_t e = 0; e < batch; ++e) {
      std::vector<double> u(static_cast<std::size_t>(g)), v(static_cast<std::size_t>(g));
      for (std::int64_t j = 0; j < g; ++j) {
        double su = b.at(j), sv = 0.0;
        for (std::int64_t k = 0; k < d; ++k) su += wih.at(j * d + k) * x.at(e * x.dim(1) + t * d + k);
        for (std::int64_t k = 0; k < n; ++k) sv += whh.at(j * n + k) * h[static_cast<std::size_t>(e * n + k)];
        u[static_cast<std::size_t>(j)] = su;
        v[static_cast<std::size_t>(j)] = sv;
      }
      for (std::int64_t k = 0; k < n; ++k) {
        const auto at = [&](const std::vector<double>& a, int gate) { return a[static_cast<std::size_t>(gate * n + k)]; };
        const std::size_t s = static_cast<std::size_t>(e * n + k);
        if (kind == CellKind::rnn) {
          next[s] = std::tanh(at(u, 0) + at(v, 0));
        } else if (kind == CellKind::lstm) {
          const double i = sigma(at(u, 0) + at(v, 0)), f = sigma(at(u, 1) + at(v, 1));
          const double gg = std::tanh(at(u, 2) + at(v, 2)), o = sigma(at(u, 3) + at(v, 3));
          c[s] = f * c[s] + i * gg;
          next[s] = o * std::tanh(c[s]);
        } else {
          const double r = sigma(at(u, 0) + at(v, 0)), z = sigma(at(u, 1) + at(v, 1));
          const double cand = std::tanh(at(u, 2) + r * (at(v, 2) + bhn.at(k)));
          next[s] = (1.0 - z) * cand + z * h[s];
        }
      }
    }
    h = next;
    out.push_back(h);
  }
  return out;
}

// One recurrent layer (optionally under a classifier head) on a fixed batch, float64,
// parameters drawn uniformly from [-0.8, 0.8].
struct Problem {
  ParameterArena arena{DType::f64};
  nn::Sequential net{arena};
  nn::Recurrent* rec = nullptr;
  Tensor x, labels, c;
  std::int64_t batch, steps, d, n, classes;

  Problem(CellKind kind, const nn::RecurrentOptions& options, std::uint64_t seed, std::int64_t classes_ = 0,
          std::int64_t batch_ = 3, std::int64_t steps_ = 4, std::int64_t d_ = 2, std::int64_t n_ = 3,
          const std::function<void(nn::Sequential&)>& more = {})
      : batch(batch_), steps(steps_), d(d_), n(n_), classes(classes_) {
    rec = &net.add(nn::Recurrent(kind, d, n, options));
    if (more) {
      more(net);  // further layers, ending in `classes` logits
    } else if (classes > 0) {
      net.add(nn::Linear(n, classes));
    }
    arena.values().copy_from(random_tensor({arena.size()}, DType::f64, seed, -0.8, 0.8));
    x = random_tensor({batch, steps * d}, DType::f64, seed + 1, -1.5, 1.5);
    std::vector<std::int32_t> y(static_cast<std::size_t>(batch));
    for (std::size_t i = 0; i < y.size(); ++i) y[i] = static_cast<std::int32_t>((i * 5 + seed) % static_cast<std::size_t>(std::max<std::int64_t>(classes, 1)));
    labels = Tensor::from<std::int32_t>({batch}, y);
    const std::int64_t out = options.return_sequence ? steps * n : n;
    c = random_tensor({batch, out}, DType::f64, seed + 2);
  }
  // Classifier: cross-entropy. Otherwise sum(c (.) y) + 1/2 sum(y^2) of the module's output.
  Var loss_of(Tape& tape, Var y) {
    if (classes > 0) return loss::cross_entropy(y, labels);
    return autodiff::add(autodiff::sum(autodiff::mul(tape.constant(c), y)), autodiff::scale(autodiff::sum(autodiff::square(y)), 0.5));
  }
  Var loss(Tape& tape) { return loss_of(tape, net.forward(tape, tape.constant(x))); }
  double value() {
    Tape tape;
    return loss(tape).value().item();
  }
  Tensor gradient() {
    Tape tape;
    Tensor g = Tensor::zeros({arena.size()}, DType::f64);
    tape.backward(loss(tape), g);
    return g;
  }
  Tensor numeric_gradient(double h = 1e-6) {
    Tensor g = Tensor::empty({arena.size()}, DType::f64);
    double* theta = arena.values().data<double>();
    for (std::int64_t i = 0; i < arena.size(); ++i) {
      const double saved = theta[i];
      theta[i] = saved + h;
      const double up = value();
      theta[i] = saved - h;
      const double down = value();
      theta[i] = saved;
      g.data<double>()[i] = (up - down) / (2 * h);
    }
    return g;
  }
  Tensor hvp(const Tensor& v) {
    Tape tape;
    Tensor hv = Tensor::empty({arena.size()}, DType::f64);
    tape.hvp(loss(tape), v, hv);
    return hv;
  }
  Tensor numeric_hvp(const Tensor& v, double h = 1e-5) {
    Tensor theta0 = arena.values().clone();
    kernels::axpby(h, v, 1.0, arena.values());
    Tensor up = gradient();
    arena.values().copy_from(theta0);
    kernels::axpby(-h, v, 1.0, arena.values());
    Tensor down = gradient();
    arena.values().copy_from(theta0);
    Tensor fd = Tensor::empty({arena.size()}, DType::f64);
    kernels::axpby(1.0 / (2 * h), up, 0.0, fd);
    kernels::axpby(-1.0 / (2 * h), down, 1.0, fd);
    return fd;
  }
  Tensor param(const char* name) { return arena.value(arena.find(std::string("layers.0.") + name)); }
};

double norm(const Tensor& t) { return std::sqrt(kernels::sum_squares(t)); }

void expect_gradient_through_time(CellKind kind, const nn::RecurrentOptions& options, std::int64_t classes) {
  Problem p(kind, options, 31, classes);
  const Tensor g = p.gradient();
  const Tensor fd = p.numeric_gradient();
  EXPECT_LT(testing::relative_difference(g, fd), 1e-7) << nn::cell_name(kind);
  EXPECT_GT(norm(g), 1e-2);
  // Every parameter block gets a gradient (W_hh only through steps t >= 2).
  for (const ParamEntry& e : p.arena.entries()) {
    EXPECT_GT(norm(p.arena.slice(g, p.arena.find(e.name))), 0.0) << e.name;
  }
  // The input's gradient, through the input projection of every step.
  testing::Builder build = [&](Tape& tape, const std::vector<Var>& v) { return p.loss_of(tape, p.net.forward(tape, v[0])); };
  const auto cmp = testing::check_gradient(build, {p.x});
  EXPECT_LT(cmp.relative_error, 1e-7);
  EXPECT_GT(cmp.analytic_norm, 0.0);
}

TEST(Recurrent, RnnStepsComputedByHand) {
  ParameterArena arena(DType::f64);
  nn::Sequential net(arena);
  nn::RNN& rnn = net.add(nn::RNN(2, 2, {.return_sequence = true}));
  arena.value(rnn.weight_ih()).copy_from(Tensor::from<double>({2, 2}, {0.5, -1.0, 0.25, 2.0}));
  arena.value(rnn.weight_hh()).copy_from(Tensor::from<double>({2, 2}, {0.3, -0.6, 0.9, 0.1}));
  arena.value(rnn.bias()).copy_from(Tensor::from<double>({2}, {0.1, -0.2}));
  // One example, two steps: x_1 = (1, 2), x_2 = (-0.5, 0.4).
  Tape tape;
  Var y = net.forward(tape, tape.constant(Tensor::from<double>({1, 4}, {1.0, 2.0, -0.5, 0.4})));
  ASSERT_EQ(y.shape(), (Shape{1, 4}));
  const double h1a = std::tanh(0.5 * 1.0 - 1.0 * 2.0 + 0.1);
  const double h1b = std::tanh(0.25 * 1.0 + 2.0 * 2.0 - 0.2);
  const double h2a = std::tanh(0.5 * -0.5 - 1.0 * 0.4 + 0.3 * h1a - 0.6 * h1b + 0.1);
  const double h2b = std::tanh(0.25 * -0.5 + 2.0 * 0.4 + 0.9 * h1a + 0.1 * h1b - 0.2);
  EXPECT_NEAR(y.value().at(0), h1a, 1e-15);
  EXPECT_NEAR(y.value().at(1), h1b, 1e-15);
  EXPECT_NEAR(y.value().at(2), h2a, 1e-15);
  EXPECT_NEAR(y.value().at(3), h2b, 1e-15);
}

TEST(Recurrent, EveryCellMatchesItsFormulas) {
  for (CellKind kind : {CellKind::rnn, CellKind::lstm, CellKind::gru}) {
    Problem seq(kind, {.return_sequence = true}, 3, 0, 2, 3, 2, 3);
    Problem last(kind, {}, 3, 0, 2, 3, 2, 3);
    const auto ref = reference_states(kind, seq.arena, "layers.0", seq.x, seq.d, seq.n);
    Tape tape, tape_last;
    const Tensor all = seq.net.forward(tape, tape.constant(seq.x)).value();
    const Tensor h_t = last.net.forward(tape_last, tape_last.constant(last.x)).value();
    ASSERT_EQ(all.shape(), (Shape{2, 3 * 3}));
    ASSERT_EQ(h_t.shape(), (Shape{2, 3}));
    for (std::int64_t t = 0; t < 3; ++t) {
      for (std::int64_t e = 0; e < 2; ++e) {
        for (std::int64_t k = 0; k < 3; ++k) {
          const double expected = ref[static_cast<std::size_t>(t)][static_cast<std::size_t>(e * 3 + k)];
          EXPECT_NEAR(all.at(e * 9 + t * 3 + k), expected, 1e-14) << nn::cell_name(kind) << " t " << t;
          if (t == 2) {
            EXPECT_NEAR(h_t.at(e * 3 + k), expected, 1e-14) << nn::cell_name(kind);
          }
        }
      }
    }
  }
}

TEST(Recurrent, ParametersAreNamedAndShapedPerCell) {
  ParameterArena arena(DType::f32);
  nn::Sequential net(arena);
  net.add(nn::LSTM(28, 16));
  net.add(nn::GRU(16, 8));
  net.add(nn::RNN(8, 4));
  ASSERT_EQ(arena.count(), 3u + 4u + 3u);
  const auto shape = [&](const char* name) { return arena.entry(arena.find(name)).shape; };
  EXPECT_EQ(shape("layers.0.weight_ih"), (Shape{64, 28}));
  EXPECT_EQ(shape("layers.0.weight_hh"), (Shape{64, 16}));
  EXPECT_EQ(shape("layers.0.bias"), (Shape{64}));
  EXPECT_EQ(shape("layers.1.weight_ih"), (Shape{24, 16}));
  EXPECT_EQ(shape("layers.1.weight_hh"), (Shape{24, 8}));
  EXPECT_EQ(shape("layers.1.bias_hn"), (Shape{8}));
  EXPECT_EQ(shape("layers.2.weight_hh"), (Shape{4, 4}));
  const ParamEntry& whh = arena.entry(arena.find("layers.0.weight_hh"));
  EXPECT_EQ(whh.info.fan_in, 16);
  EXPECT_EQ(whh.info.fan_out, 64);
  EXPECT_EQ(arena.entry(arena.find("layers.1.bias_hn")).info.role, ParamRole::bias);
  auto& lstm = dynamic_cast<nn::Recurrent&>(net.at(0));
  EXPECT_EQ(lstm.recurrent_weight(), arena.find("layers.0.weight_hh"));
  EXPECT_EQ(lstm.gates(), 4);
  EXPECT_FALSE(lstm.bias_hn().valid());
  EXPECT_EQ(net.describe(), "Sequential(LSTM(28 -> 16), GRU(16 -> 8), RNN(8 -> 4))");
  EXPECT_EQ(nn::LSTM(2, 3, {.truncate = 5}).describe(), "LSTM(2 -> 3, truncate 5)");
  EXPECT_EQ(nn::GRU(2, 3, {.return_sequence = true}).describe(), "GRU(2 -> 3, sequence)");
}

TEST(Recurrent, ForgetGateBiasStartsAtOne) {
  ParameterArena arena(DType::f32);
  nn::Sequential net(arena);
  net.add(nn::LSTM(4, 3));
  net.add(nn::GRU(3, 3));
  net.add(nn::LSTM(3, 2, {.forget_bias = 2.5}));
  nn::initialize(arena, {.weights = init::Scheme::glorot_uniform, .bias = 0.25, .seed = 3});
  EXPECT_EQ(nn::reset_forget_biases(net), 2u);
  const Tensor b0 = arena.value(arena.find("layers.0.bias"));
  for (std::int64_t j = 0; j < 12; ++j) EXPECT_EQ(b0.at(j), (j >= 3 && j < 6) ? 1.0 : 0.25) << j;
  const Tensor b2 = arena.value(arena.find("layers.2.bias"));
  for (std::int64_t j = 0; j < 8; ++j) EXPECT_EQ(b2.at(j), (j >= 2 && j < 4) ? 2.5 : 0.25) << j;
  const Tensor b1 = arena.value(arena.find("layers.1.bias"));
  for (std::int64_t j = 0; j < 9; ++j) EXPECT_EQ(b1.at(j), 0.25);
}

TEST(Recurrent, RnnGradientThroughTime) { expect_gradient_through_time(CellKind::rnn, {}, 0); }
TEST(Recurrent, LstmGradientThroughTime) { expect_gradient_through_time(CellKind::lstm, {}, 0); }
TEST(Recurrent, GruGradientThroughTime) { expect_gradient_through_time(CellKind::gru, {}, 0); }
TEST(Recurrent, GradientThroughTimeOfAllStatesUnderAClassifier) {
  expect_gradient_through_time(CellKind::lstm, {.return_sequence = true}, 0);
  expect_gradient_through_time(CellKind::gru, {}, 4);
}

TEST(Recurrent, LstmClassifierHvpMatchesCentralDifferencesOfTheGradient) {
  Problem p(CellKind::lstm, {}, 41, 4);
  const std::int64_t n = p.arena.size();
  ASSERT_EQ(n, 12 * 2 + 12 * 3 + 12 + 4 * 3 + 4);
  Tensor hv_first;
  for (std::uint64_t seed : {51u, 52u, 53u}) {
    const Tensor v = random_tensor({n}, DType::f64, seed);
    const Tensor hv = p.hvp(v);
    const Tensor fd = p.numeric_hvp(v);
    EXPECT_LT(testing::relative_difference(hv, fd), 1e-7) << "seed " << seed;
    for (std::int64_t i = 0; i < n; ++i) EXPECT_NEAR(hv.at(i), fd.at(i), 1e-7 * (1.0 + std::abs(fd.at(i))));
    EXPECT_GT(norm(hv), 1e-3);
    if (seed == 51u) hv_first = hv;
  }
  // v^T H w = w^T H v.
  const Tensor v = random_tensor({n}, DType::f64, 51), w = random_tensor({n}, DType::f64, 52);
  const Tensor hw = p.hvp(w);
  EXPECT_NEAR(kernels::dot(v, hw), kernels::dot(w, hv_first), 1e-12 * (1.0 + std::abs(kernels::dot(v, hw))));
}

TEST(Recurrent, RnnAndGruAndStackedHvpMatchCentralDifferences) {
  for (CellKind kind : {CellKind::rnn, CellKind::gru}) {
    Problem p(kind, {}, 61, 3);
    const Tensor v = random_tensor({p.arena.size()}, DType::f64, 62);
    EXPECT_LT(testing::relative_difference(p.hvp(v), p.numeric_hvp(v)), 1e-7) << nn::cell_name(kind);
  }
  // LSTM (all states) -> GRU -> Linear: the states' concatenation carries tangents too.
  Problem p(CellKind::lstm, {.return_sequence = true}, 63, 3, 3, 4, 2, 3, [](nn::Sequential& net) {
    net.add(nn::GRU(3, 2));
    net.add(nn::Linear(2, 3));
  });
  ASSERT_EQ(p.arena.count(), 3u + 4u + 2u);
  const Tensor v = random_tensor({p.arena.size()}, DType::f64, 65);
  EXPECT_LT(testing::relative_difference(p.hvp(v), p.numeric_hvp(v)), 1e-7);
  EXPECT_LT(testing::relative_difference(p.gradient(), p.numeric_gradient()), 1e-7);
}

TEST(Recurrent, RecurrentWeightGradientIsTheSumOverSteps) {
  // The module (one shared W_hh) against the same RNN unrolled by hand with a separate
  // copy of W_hh per step: the shared gradient is the sum of the copies' gradients.
  Problem p(CellKind::rnn, {}, 71, 0, 2, 3, 2, 3);
  const Tensor g = p.gradient();
  const Tensor g_whh = p.arena.slice(g, p.rec->weight_hh());

  Tape tape;
  Var x = tape.constant(p.x);
  Var w_ih = tape.constant(p.param("weight_ih"));
  Var b = tape.constant(p.param("bias"));
  std::vector<Var> copies;
  Var h;
  for (std::int64_t t = 0; t < 3; ++t) {
    Var a = autodiff::linear(autodiff::slice_cols(x, t * 2, t * 2 + 2), w_ih, b);
    if (t > 0) {
      copies.push_back(tape.variable(p.param("weight_hh").clone()));
      a = autodiff::add(a, autodiff::linear(h, copies.back()));
    }
    h = autodiff::tanh(a);
  }
  tape.backward(p.loss_of(tape, h));
  ASSERT_EQ(copies.size(), 2u);
  Tensor sum = tape.grad(copies[0]).clone();
  kernels::axpby(1.0, tape.grad(copies[1]), 1.0, sum);
  for (std::int64_t i = 0; i < 9; ++i) EXPECT_NEAR(g_whh.at(i), sum.at(i), 1e-14);
  // Both steps contribute, differently.
  EXPECT_GT(norm(tape.grad(copies[0])), 1e-3);
  EXPECT_GT(testing::relative_difference(tape.grad(copies[0]), tape.grad(copies[1])), 1e-2);
  // And the shared gradient is the derivative of the loss in W_hh's entries.
  const Tensor fd = p.numeric_gradient();
  EXPECT_LT(testing::relative_difference(g_whh, p.arena.slice(fd, p.rec->weight_hh())), 1e-8);
}

TEST(Recurrent, TruncationToOneStepGivesTheLastStepsGradient) {
  // With k = 1 the loss sum(c h_T) + 1/2 |h_T|^2 sees h_{T-1} as a constant:
  //   dA = (c + h_T) (.) (1 - h_T^2),  gW_hh = dA^T h_{T-1},  gW_ih = dA^T x_T,  gb = sum_rows(dA).
  Problem full(CellKind::rnn, {.record_states = true}, 81, 0, 2, 3, 2, 3);
  Problem cut(CellKind::rnn, {.truncate = 1, .record_states = true}, 81, 0, 2, 3, 2, 3);
  Tape tape;
  Var loss = cut.loss(tape);
  cut.arena.zero_grad();
  tape.backward(loss);
  const Tensor h_last = cut.rec->states()[2].value();
  const Tensor h_prev = cut.rec->states()[1].value();
  std::vector<double> da(6);
  for (std::int64_t i = 0; i < 6; ++i) {
    const double hv = h_last.at(i);
    da[static_cast<std::size_t>(i)] = (cut.c.at(i) + hv) * (1.0 - hv * hv);
  }
  const Tensor gw_hh = cut.arena.grad(cut.rec->weight_hh());
  const Tensor gw_ih = cut.arena.grad(cut.rec->weight_ih());
  const Tensor gb = cut.arena.grad(cut.rec->bias());
  for (std::int64_t i = 0; i < 3; ++i) {
    double sb = 0.0;
    for (std::int64_t e = 0; e < 2; ++e) sb += da[static_cast<std::size_t>(e * 3 + i)];
    EXPECT_NEAR(gb.at(i), sb, 1e-14);
    for (std::int64_t j = 0; j < 3; ++j) {
      double s = 0.0;
      for (std::int64_t e = 0; e < 2; ++e) s += da[static_cast<std::size_t>(e * 3 + i)] * h_prev.at(e * 3 + j);
      EXPECT_NEAR(gw_hh.at(i * 3 + j), s, 1e-14);
    }
    for (std::int64_t k = 0; k < 2; ++k) {
      double s = 0.0;
      for (std::int64_t e = 0; e < 2; ++e) s += da[static_cast<std::size_t>(e * 3 + i)] * cut.x.at(e * 6 + 4 + k);
      EXPECT_NEAR(gw_ih.at(i * 2 + k), s, 1e-14);
    }
  }
  // Only the last state receives a gradient.
  const auto norms = cut.rec->state_gradient_norms(tape);
  ASSERT_EQ(norms.size(), 3u);
  EXPECT_EQ(norms[0], 0.0);
  EXPECT_EQ(norms[1], 0.0);
  EXPECT_GT(norms[2], 0.0);
  // The forward pass is unchanged; the gradient differs from full backprop through time.
  EXPECT_EQ(cut.value(), full.value());
  EXPECT_GT(testing::relative_difference(cut.gradient(), full.gradient()), 1e-2);
}

TEST(Recurrent, TruncationBlocksEveryKSteps) {
  for (CellKind kind : {CellKind::lstm, CellKind::gru}) {
    // T = 5, k = 2: the states entering steps 2 and 4 are cut, so the loss on h_5 reaches
    // only h_5 (step 4 starts a chunk of one step).
    Problem p(kind, {.truncate = 2, .record_states = true}, 91, 0, 2, 5, 2, 3);
    Tape tape;
    Tensor g = Tensor::zeros({p.arena.size()}, DType::f64);
    tape.backward(p.loss(tape), g);
    const auto norms = p.rec->state_gradient_norms(tape);
    ASSERT_EQ(norms.size(), 5u);
    for (int t = 0; t < 4; ++t) EXPECT_EQ(norms[static_cast<std::size_t>(t)], 0.0) << nn::cell_name(kind) << " " << t;
    EXPECT_GT(norms[4], 0.0);
    // With all states as the output, the chunks [h_1 h_2], [h_3 h_4], [h_5] are separate:
    // the loss on h_2 reaches h_1, but h_3's gradient does not reach h_2.
    Problem s(kind, {.return_sequence = true, .truncate = 2, .record_states = true}, 91, 0, 2, 5, 2, 3);
    Problem s_full(kind, {.return_sequence = true, .record_states = true}, 91, 0, 2, 5, 2, 3);
    Tape ts, tf;
    ts.backward(s.loss(ts), Tensor::zeros({s.arena.size()}, DType::f64));
    tf.backward(s_full.loss(tf), Tensor::zeros({s.arena.size()}, DType::f64));
    const auto cut = s.rec->state_gradient_norms(ts);
    const auto all = s_full.rec->state_gradient_norms(tf);
    // The last state of each chunk gets only its own loss term, as in full backprop
    // for the very last state.
    EXPECT_NEAR(cut[4], all[4], 1e-14);
    EXPECT_GT(std::abs(cut[1] - all[1]), 1e-6);
    EXPECT_GT(std::abs(cut[0] - all[0]), 1e-6);
    // A truncation at least as long as the sequence is full backprop through time.
    Problem longer(kind, {.truncate = 5}, 91, 0, 2, 5, 2, 3);
    Problem full(kind, {}, 91, 0, 2, 5, 2, 3);
    EXPECT_EQ(testing::relative_difference(longer.gradient(), full.gradient()), 0.0);
    const Tensor v = random_tensor({full.arena.size()}, DType::f64, 92);
    EXPECT_EQ(testing::relative_difference(longer.hvp(v), full.hvp(v)), 0.0);
  }
}

TEST(Recurrent, StateGradientNormsShowVanishingAndExplodingGradients) {
  // Loss sum(c h_T) + 1/2 |h_T|^2, so dL/dh_T = c + h_T exactly; one step back
  // dL/dh_{t-1} = W_hh^T ((1 - h_t^2) (.) dL/dh_t).
  const auto run = [](double scale, double input) {
    Problem p(CellKind::rnn, {.record_states = true}, 101, 0, 2, 6, 2, 3);
    p.param("weight_hh").fill(0.0);
    for (int i = 0; i < 3; ++i) p.param("weight_hh").data<double>()[i * 4] = scale;  // scale * I
    p.param("bias").fill(0.0);
    kernels::axpby(input, p.x, 0.0, p.x);
    Tape tape;
    p.arena.zero_grad();
    Var loss = p.loss(tape);
    tape.backward(loss);
    Tensor expected_last = p.c.clone();
    kernels::axpby(1.0, p.rec->states().back().value(), 1.0, expected_last);
    EXPECT_NEAR(p.rec->state_gradient_norms(tape).back(), norm(expected_last), 1e-14);
    return p.rec->state_gradient_norms(tape);
  };
  // Contractive W_hh = 0.2 I: each step back multiplies the norm by at most 0.2.
  const auto shrink = run(0.2, 1.0);
  ASSERT_EQ(shrink.size(), 6u);
  for (std::size_t t = 0; t + 1 < shrink.size(); ++t) {
    EXPECT_GT(shrink[t], 0.0);
    EXPECT_LE(shrink[t], 0.2 * shrink[t + 1] * (1 + 1e-12));
  }
  // W_hh = 1.5 I in tanh's linear regime (tiny inputs): each step back multiplies by ~1.5.
  const auto grow = run(1.5, 1e-4);
  for (std::size_t t = 0; t + 1 < grow.size(); ++t) {
    EXPECT_GT(grow[t] / grow[t + 1], 1.5 * (1 - 1e-5));
    EXPECT_LE(grow[t] / grow[t + 1], 1.5);
  }
}

TEST(Recurrent, ThreeDimensionalInputGivesTheSameResult) {
  Problem p(CellKind::lstm, {.return_sequence = true}, 111);
  Tape tape;
  const Tensor flat = p.net.forward(tape, tape.constant(p.x)).value();
  Var y = p.net.forward(tape, tape.constant(p.x.reshape({p.batch, p.steps, p.d})));
  ASSERT_EQ(y.shape(), (Shape{p.batch, p.steps, p.n}));
  for (std::int64_t i = 0; i < flat.numel(); ++i) EXPECT_EQ(y.value().at(i), flat.at(i));
}

TEST(Recurrent, Float32AgreesWithFloat64) {
  Problem p(CellKind::lstm, {}, 121, 0, 4, 6, 3, 5);
  ParameterArena arena32(DType::f32);
  nn::Sequential net32(arena32);
  net32.add(nn::LSTM(3, 5));
  arena32.values().copy_from(p.arena.values().to(DType::f32));
  Tape tape, tape32;
  const Tensor y64 = p.net.forward(tape, tape.constant(p.x)).value();
  const Tensor y32 = net32.forward(tape32, tape32.constant(p.x.to(DType::f32))).value();
  EXPECT_EQ(y32.dtype(), DType::f32);
  for (std::int64_t i = 0; i < y64.numel(); ++i) EXPECT_NEAR(y32.at(i), y64.at(i), 1e-5);
}

template <class E, class F>
void expect_error(F&& f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "no error (expected one mentioning '" << needle << "')";
  } catch (const E& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(Recurrent, Errors) {
  expect_error<ConfigError>([] { nn::LSTM(0, 3); }, "LSTM: input_size and hidden_size must be positive, got 0 and 3");
  expect_error<ConfigError>([] { nn::GRU(2, -1); }, "GRU");
  expect_error<ConfigError>([] { nn::RNN(2, 3, {.truncate = -1}); }, "RNN: truncate must be >= 0");
  nn::LSTM loose(2, 3);
  Tape tape;
  expect_error<ShapeError>([&] { loose.forward(tape, tape.constant(Tensor::zeros({1, 4}, DType::f32))); },
                           "LSTM: parameters were never declared");
  expect_error<ShapeError>([&] { loose.reset_forget_bias(); }, "LSTM: reset_forget_bias");

  ParameterArena arena(DType::f64);
  nn::Sequential net(arena);
  net.add(nn::GRU(2, 3));
  expect_error<ShapeError>([&] { net.forward(tape, tape.constant(Tensor::zeros({2, 5}, DType::f64))); },
                           "GRU: input [2, 5] does not fit input_size 2 (expected [batch, steps * 2] or [batch, steps, 2])");
  expect_error<ShapeError>([&] { net.forward(tape, tape.constant(Tensor::zeros({2, 3, 4}, DType::f64))); }, "[2, 3, 4]");
  expect_error<ShapeError>([&] { net.forward(tape, tape.constant(Tensor::zeros({6}, DType::f64))); }, "[6]");
  expect_error<ShapeError>([&] { net.forward(tape, tape.constant(Tensor::zeros({2, 0}, DType::f64))); }, "[2, 0]");
  expect_error<ShapeError>([&] { net.forward(tape, tape.constant(Tensor::zeros({2, 4}, DType::f32))); },
                           "GRU: input is f32, the parameters are f64");
  auto& gru = dynamic_cast<nn::Recurrent&>(net.at(0));
  EXPECT_TRUE(gru.state_gradient_norms(tape).empty());  // record_states is off
  nn::RNN& rnn = net.add(nn::RNN(3, 2, {.record_states = true}));
  arena.values().fill(0.1);
  Tape first, other;
  rnn.forward(first, first.constant(Tensor::zeros({2, 6}, DType::f64)));
  EXPECT_EQ(rnn.states().size(), 2u);
  expect_error<ShapeError>([&] { rnn.state_gradient_norms(other); }, "RNN: state_gradient_norms on another tape");
  first.clear();
  expect_error<ShapeError>([&] { rnn.state_gradient_norms(first); }, "RNN: state_gradient_norms");
}

}  // namespace
}  // namespace descent
