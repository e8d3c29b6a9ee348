// The monitors during training (train/monitors.hpp), each figure against an independent
// computation: g'Hg against central differences of the gradient, eq. 8.10 against the exact
// change of a quadratic, per-parameter norms against a hand sum, cliffs on a made-up sequence
// of norms, spectral radius and singular values against hand-computed 2x2 cases, the growth
// rate on a geometric sequence; then whole runs: the records and their relations, and a
// resume that is bit-identical with every monitor on.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "descent/diag/lapack.hpp"
#include "descent/init/rng.hpp"
#include "descent/io/json_lines.hpp"
#include "descent/loss/loss.hpp"
#include "descent/nn/recurrent.hpp"
#include "descent/tensor/kernels.hpp"
#include "descent/train/checkpoint.hpp"
#include "descent/train/monitors.hpp"
#include "descent/train/trainer.hpp"
#include "support/gradcheck.hpp"
#include "support/synthetic_csv.hpp"

namespace descent {
namespace {

namespace fs = std::filesystem;
using train::CliffDetector;

// ---- g'Hg and eq. 8.10 -------------------------------------------------------------------

struct SmallMlp {
  ParameterArena arena{DType::f64};
  nn::Sequential net{nn::mlp(arena, {4, 5, 3}, nn::Activation::tanh)};
  Tensor x = testing::random_tensor({8, 4}, DType::f64, 11, -1.5, 1.5);
  Tensor y = Tensor::from<std::int32_t>({8}, std::vector<std::int32_t>{0, 1, 2, 1, 0, 2, 2, 1});
  SmallMlp() { arena.values().copy_from(testing::random_tensor({arena.size()}, DType::f64, 12, -0.9, 0.9)); }
  // The gradient at the arena's values, on a fresh tape.
  std::vector<double> gradient() {
    autodiff::Tape tape;
    Tensor g = Tensor::zeros({arena.size()}, DType::f64);
    tape.backward(loss::cross_entropy(net.forward(tape, tape.constant(x)), y), g);
    std::vector<double> out(static_cast<std::size_t>(arena.size()));
    for (std::int64_t i = 0; i < arena.size(); ++i) out[static_cast<std::size_t>(i)] = g.at(i);
    return out;
  }
};

TEST(CurvatureFigures, GHgMatchesCentralDifferencesOfTheGradient) {
  SmallMlp m;
  autodiff::Tape tape;
  m.arena.zero_grad();
  const autodiff::Var loss = loss::cross_entropy(m.net.forward(tape, tape.constant(m.x)), m.y);
  tape.backward(loss);
  const Tensor g = m.arena.grads().clone();
  const Tensor hv = Tensor::zeros({m.arena.size()}, DType::f64);
  const double lr = 0.3;
  const train::CurvatureFigures f = train::curvature_figures(tape, loss, m.arena, g, lr, hv);

  // Independently: H g ~ (grad(theta + h g) - grad(theta - h g)) / 2h, on fresh tapes.
  const std::vector<double> g0 = m.gradient();
  double gtg = 0;
  for (const double v : g0) gtg += v * v;
  const double h = 1e-5 / std::sqrt(gtg);
  const Tensor theta = m.arena.values().clone();
  auto at = [&](double s) {
    m.arena.values().copy_from(theta);
    kernels::axpby(s, g, 1.0, m.arena.values());
    return m.gradient();
  };
  const std::vector<double> plus = at(h), minus = at(-h);
  m.arena.values().copy_from(theta);
  double ghg = 0;
  for (std::size_t i = 0; i < g0.size(); ++i) ghg += g0[i] * (plus[i] - minus[i]) / (2 * h);

  EXPECT_NEAR(f.gTg, gtg, 1e-13 * gtg);
  EXPECT_NEAR(f.gHg, ghg, 1e-6 * std::abs(ghg));
  EXPECT_GT(std::abs(ghg), 1e-3);  // not a vacuous comparison
  EXPECT_NEAR(f.ratio, lr * ghg / (2 * gtg), 1e-6 * std::abs(f.ratio));
  EXPECT_NEAR(f.predicted_change, -lr * gtg + 0.5 * lr * lr * ghg, 1e-6 * std::abs(f.predicted_change));
}

TEST(LanczosLambdaMax, MatchesTheDenseHessiansLargestEigenvalue) {
  SmallMlp m;
  autodiff::Tape tape;
  const autodiff::Var loss = loss::cross_entropy(m.net.forward(tape, tape.constant(m.x)), m.y);
  const auto n = static_cast<std::size_t>(m.arena.size());  // 43
  // Independently: the dense Hessian by central differences of the gradient, column by column.
  const Tensor theta = m.arena.values().clone();
  std::vector<double> dense(n * n);
  const double h = 1e-5;
  for (std::size_t j = 0; j < n; ++j) {
    m.arena.values().copy_from(theta);
    m.arena.values().data<double>()[j] += h;
    const std::vector<double> plus = m.gradient();
    m.arena.values().data<double>()[j] -= 2 * h;
    const std::vector<double> minus = m.gradient();
    for (std::size_t i = 0; i < n; ++i) dense[i * n + j] = (plus[i] - minus[i]) / (2 * h);
  }
  m.arena.values().copy_from(theta);
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t j = 0; j < i; ++j) dense[i * n + j] = dense[j * n + i] = 0.5 * (dense[i * n + j] + dense[j * n + i]);
  }
  const double top = diag::symmetric_eigen(dense, static_cast<std::int64_t>(n)).values.back();
  ASSERT_GT(top, 1e-2);

  std::vector<double> start(n);
  Rng rng(9);
  for (double& v : start) v = rng.normal();
  std::vector<double> ritz;
  const double full = train::lanczos_lambda_max(tape, loss, m.arena, start, static_cast<int>(n), &ritz);
  EXPECT_NEAR(full, top, 1e-6 * top);
  // A few steps give a lower bound ...
  const double few = train::lanczos_lambda_max(tape, loss, m.arena, start, 3);
  EXPECT_LE(few, top * (1 + 1e-6));
  // ... and one step from the top Ritz vector (a warm start) its Rayleigh quotient: lambda_max.
  EXPECT_NEAR(train::lanczos_lambda_max(tape, loss, m.arena, ritz, 1), top, 1e-6 * top);
}

// L(theta) = theta' A theta / 2 + b' theta on a parameter theta [1, 3]: eq. 8.10 is exact.
struct Quadratic {
  ParameterArena arena{DType::f64};
  ParamId theta = arena.add("theta", {1, 3});
  double a[3][3] = {{4, 1, 0.5}, {1, 3, -1}, {0.5, -1, -2}};  // indefinite
  double b[3] = {0.3, -0.7, 1.1};
  Quadratic() { arena.values().copy_from(Tensor::from<double>({3}, std::vector<double>{0.5, -1.0, 2.0})); }
  autodiff::Var record(autodiff::Tape& tape) {
    std::vector<double> flat;
    for (auto& row : a) flat.insert(flat.end(), row, row + 3);
    const autodiff::Var t = tape.param(arena, theta);
    const autodiff::Var at = autodiff::matmul(t, tape.constant(Tensor::from<double>({3, 3}, flat)));
    const autodiff::Var bt = autodiff::mul(t, tape.constant(Tensor::from<double>({1, 3}, std::vector<double>(b, b + 3))));
    return autodiff::add(autodiff::scale(autodiff::sum(autodiff::mul(at, t)), 0.5), autodiff::sum(bt));
  }
  // By hand, in double.
  double value(const double* t) const {
    double v = 0;
    for (int i = 0; i < 3; ++i) {
      v += b[i] * t[i];
      for (int j = 0; j < 3; ++j) v += 0.5 * t[i] * a[i][j] * t[j];
    }
    return v;
  }
};

TEST(CurvatureFigures, PredictedChangeIsTheExactChangeOfAQuadratic) {
  Quadratic q;
  autodiff::Tape tape;
  q.arena.zero_grad();
  const autodiff::Var loss = q.record(tape);
  tape.backward(loss);
  const Tensor g = q.arena.grads().clone();
  const Tensor hv = Tensor::zeros({3}, DType::f64);
  const double theta[3] = {0.5, -1.0, 2.0};
  for (const double lr : {0.01, 0.2, 0.9}) {
    const train::CurvatureFigures f = train::curvature_figures(tape, loss, q.arena, g, lr, hv);
    double moved[3];
    for (int i = 0; i < 3; ++i) moved[i] = theta[i] - lr * g.at(i);
    const double exact = q.value(moved) - q.value(theta);
    EXPECT_NEAR(f.predicted_change, exact, 1e-12 * (1 + std::abs(exact))) << "lr " << lr;
  }
  // Any step d: d'g + d'Hd / 2 is the exact change.
  const double d[3] = {0.7, 0.2, -0.4};
  const Tensor dt = Tensor::from<double>({3}, std::vector<double>(d, d + 3));
  double moved[3];
  for (int i = 0; i < 3; ++i) moved[i] = theta[i] + d[i];
  const double exact = q.value(moved) - q.value(theta);
  EXPECT_NEAR(train::step_prediction(tape, loss, q.arena, g, dt, hv), exact, 1e-12 * (1 + std::abs(exact)));
}

// ---- per-parameter norms -------------------------------------------------------------------

TEST(ParameterNorms, MatchAHandSumOverEachSlice) {
  SmallMlp m;
  const Tensor v = testing::random_tensor({m.arena.size()}, DType::f64, 5);
  const auto norms = train::parameter_norms(m.arena, v);
  const double* p = v.data<double>();
  ASSERT_EQ(norms.size(), 4u);
  const char* names[] = {"layers.0.weight", "layers.0.bias", "layers.2.weight", "layers.2.bias"};
  const std::int64_t sizes[] = {20, 5, 15, 3};
  std::int64_t offset = 0;
  for (std::size_t i = 0; i < 4; ++i) {
    double s = 0;
    for (std::int64_t k = 0; k < sizes[i]; ++k) s += p[offset + k] * p[offset + k];
    offset += sizes[i];
    EXPECT_EQ(norms[i].first, names[i]);
    EXPECT_NEAR(norms[i].second, std::sqrt(s), 1e-14 * std::sqrt(s)) << names[i];
  }
}

// ---- cliffs -------------------------------------------------------------------------------

TEST(CliffDetector, FlagsNormsAboveTheFactorTimesTheRunningMedian) {
  CliffDetector c(3.0, 4);
  // The first four fill the window: never flagged, however large.
  EXPECT_FALSE(c.observe(1.0));
  EXPECT_FALSE(c.observe(100.0));
  EXPECT_FALSE(c.observe(2.0));
  EXPECT_FALSE(c.observe(3.0));
  // window {1, 100, 2, 3}: median 2.5; 7.5 is not above 3 x 2.5.
  EXPECT_FALSE(c.observe(7.5));  // the oldest (1) goes: {7.5, 100, 2, 3}, median 5.25
  const auto cliff = c.observe(15.76);
  ASSERT_TRUE(cliff);
  EXPECT_DOUBLE_EQ(*cliff, 5.25);
  // {7.5, 15.76, 2, 3}: median 5.25 still; 15.75 is not above 15.75.
  EXPECT_FALSE(c.observe(15.75));  // {7.5, 15.76, 15.75, 3}: median 11.625
  EXPECT_FALSE(c.observe(34.875));
  // {7.5, 15.76, 15.75, 34.875}: median 15.755
  const auto second = c.observe(47.27);
  ASSERT_TRUE(second);
  EXPECT_DOUBLE_EQ(*second, 15.755);
}

TEST(CliffDetector, ItsSavedWindowContinuesExactly) {
  CliffDetector a(2.0, 5), b(2.0, 5);
  Rng rng(3);
  for (int i = 0; i < 7; ++i) a.observe(1 + rng.uniform());
  b.load(a.save());
  for (int i = 0; i < 30; ++i) {
    const double norm = 1 + 3 * rng.uniform();
    EXPECT_EQ(a.observe(norm), b.observe(norm)) << i;
  }
  CliffDetector small(2.0, 3);
  EXPECT_THROW(small.load(a.save()), DataError);  // a window of 5 does not fit in 3
}

// ---- recurrent matrices and the growth rate ------------------------------------------------

TEST(Lapack, GeneralEigenvaluesAndSingularValuesOfHandCases) {
  // [[3, 0], [4, 5]]: eigenvalues 3 and 5; A'A = [[25, 20], [20, 25]]: 45 and 5.
  EXPECT_NEAR(diag::general_eigenvalues({3, 0, 4, 5}, 2).spectral_radius(), 5.0, 1e-14);
  const std::vector<double> s = diag::singular_values({3, 0, 4, 5}, 2, 2);
  ASSERT_EQ(s.size(), 2u);
  EXPECT_NEAR(s[0], std::sqrt(45.0), 1e-14);
  EXPECT_NEAR(s[1], std::sqrt(5.0), 1e-14);
  // A rotation by 90 degrees scaled by 2: eigenvalues +-2i.
  const diag::GeneralEigenvalues r = diag::general_eigenvalues({0, -2, 2, 0}, 2);
  EXPECT_NEAR(r.spectral_radius(), 2.0, 1e-14);
  EXPECT_NEAR(std::abs(r.imag[0]), 2.0, 1e-14);
  // Triangular 3x3: the eigenvalues are the diagonal; a 3x2 matrix's singular values.
  EXPECT_NEAR(diag::general_eigenvalues({1, 7, 3, 0, -4, 5, 0, 0, 2}, 3).spectral_radius(), 4.0, 1e-13);
  const std::vector<double> t = diag::singular_values({0, 1, 2, 0, 0, 0}, 3, 2);
  ASSERT_EQ(t.size(), 2u);
  EXPECT_NEAR(t[0], 2.0, 1e-14);
  EXPECT_NEAR(t[1], 1.0, 1e-14);
}

TEST(RecurrentMatrices, EachGateBlockOfAnLstm) {
  ParameterArena arena(DType::f64);
  nn::Sequential net(arena);
  net.add(nn::LSTM(2, 2));
  arena.freeze();
  // W_hh [8, 2]: gates i, f, g, o of 2 rows each.
  const std::vector<double> w = {0.5, 0, 0, 0.25,  // i: diag(0.5, 0.25)
                                 0, -2, 2, 0,      // f: radius 2, singular values 2, 2
                                 3, 0, 4, 5,       // g: radius 5, singular values sqrt 45, sqrt 5
                                 1, 1, 0, 1};      // o: a Jordan block: radius 1, singular values golden ratio^(+-1)
  arena.value(arena.find("layers.0.weight_hh")).copy_from(Tensor::from<double>({8, 2}, w));
  const auto m = train::recurrent_matrices(net);
  ASSERT_EQ(m.size(), 4u);
  const double phi = (1 + std::sqrt(5.0)) / 2;
  const double radius[] = {0.5, 2, 5, 1}, smax[] = {0.5, 2, std::sqrt(45.0), phi}, smin[] = {0.25, 2, std::sqrt(5.0), 1 / phi};
  const char* gates[] = {"i", "f", "g", "o"};
  for (std::size_t k = 0; k < 4; ++k) {
    EXPECT_EQ(m[k].name, "layers.0.weight_hh");
    EXPECT_EQ(m[k].gate, gates[k]);
    EXPECT_NEAR(m[k].spectral_radius, radius[k], 1e-7) << gates[k];  // a Jordan block's eigenvalue is ill-conditioned
    EXPECT_NEAR(m[k].singular_max, smax[k], 1e-13) << gates[k];
    EXPECT_NEAR(m[k].singular_min, smin[k], 1e-13) << gates[k];
  }
}

TEST(GrowthRate, OfAGeometricSequence) {
  // ||dL/dh_t|| = 3 r^(T - t): going back one step multiplies it by r.
  for (const double r : {0.8, 1.5}) {
    std::vector<double> n;
    for (int t = 1; t <= 12; ++t) n.push_back(3 * std::pow(r, 12 - t));
    EXPECT_NEAR(*train::growth_rate(n), r, 1e-12) << r;
    // Steps a truncated backprop does not reach (zero) are left out.
    n[0] = n[1] = 0;
    EXPECT_NEAR(*train::growth_rate(n), r, 1e-12) << r;
  }
  EXPECT_FALSE(train::growth_rate(std::vector<double>{0, 0, 2}));
}

TEST(TimeGradientNorms, MatchBackpropThroughTimeByHandAndLeaveTheTrainingGradientAlone) {
  ParameterArena arena(DType::f64);
  nn::Sequential net(arena);
  net.add(nn::RNN(1, 3));
  net.add(nn::Linear(3, 2));
  arena.values().copy_from(testing::random_tensor({arena.size()}, DType::f64, 4, -0.9, 0.9));
  arena.grads().fill(7.0);
  const int batch = 5, steps = 6, hidden = 3;
  const Tensor x = testing::random_tensor({batch, steps}, DType::f64, 6);
  const std::vector<std::int32_t> labels = {0, 1, 1, 0, 1};
  const Tensor y = Tensor::from<std::int32_t>({batch}, labels);
  const auto norms = train::time_gradient_norms(net, arena, x, y);
  ASSERT_EQ(norms.size(), 1u);
  ASSERT_EQ(norms[0].size(), 6u);  // T = 6 steps of 1 input
  EXPECT_TRUE(net.training());
  for (std::int64_t i = 0; i < arena.size(); ++i) ASSERT_EQ(arena.grads().at(i), 7.0);

  // By hand: h_t = tanh(W_ih x_t + W_hh h_{t-1} + b), logits = W h_T + c, mean cross-entropy;
  // then back through time: da_t = dh_t (1 - h_t^2), dh_{t-1} = W_hh' da_t.
  auto p = [&](const char* name, int i) { return arena.value(arena.find(name)).at(i); };
  std::vector<double> sq(steps, 0.0);  // sum over the batch of ||dL/dh_t||^2
  for (int b = 0; b < batch; ++b) {
    std::vector<std::vector<double>> h(steps + 1, std::vector<double>(hidden, 0.0));
    for (int t = 1; t <= steps; ++t) {
      for (int i = 0; i < hidden; ++i) {
        double a = p("layers.0.weight_ih", i) * x.at(b * steps + t - 1) + p("layers.0.bias", i);
        for (int j = 0; j < hidden; ++j) a += p("layers.0.weight_hh", i * hidden + j) * h[t - 1][j];
        h[t][i] = std::tanh(a);
      }
    }
    double z[2], zmax = -1e300, sum = 0;
    for (int k = 0; k < 2; ++k) {
      z[k] = p("layers.1.bias", k);
      for (int i = 0; i < hidden; ++i) z[k] += p("layers.1.weight", k * hidden + i) * h[steps][i];
      zmax = std::max(zmax, z[k]);
    }
    for (const double v : z) sum += std::exp(v - zmax);
    std::vector<double> dh(hidden, 0.0);
    for (int k = 0; k < 2; ++k) {
      const double dz = (std::exp(z[k] - zmax) / sum - (labels[static_cast<std::size_t>(b)] == k ? 1.0 : 0.0)) / batch;
      for (int i = 0; i < hidden; ++i) dh[i] += p("layers.1.weight", k * hidden + i) * dz;
    }
    for (int t = steps; t >= 1; --t) {
      for (const double v : dh) sq[static_cast<std::size_t>(t - 1)] += v * v;
      std::vector<double> da(hidden), prev(hidden, 0.0);
      for (int i = 0; i < hidden; ++i) da[i] = dh[i] * (1 - h[t][i] * h[t][i]);
      for (int j = 0; j < hidden; ++j) {
        for (int i = 0; i < hidden; ++i) prev[j] += p("layers.0.weight_hh", i * hidden + j) * da[i];
      }
      dh = prev;
    }
  }
  for (int t = 0; t < steps; ++t) {
    const double expected = std::sqrt(sq[static_cast<std::size_t>(t)]);
    EXPECT_NEAR(norms[0][static_cast<std::size_t>(t)], expected, 1e-12 * expected) << "t = " << t + 1;
  }
}

// ---- whole runs ----------------------------------------------------------------------------

class MonitorRuns : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("descent_monitors_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    testing::write_blobs(dir_ / "train.csv", 300, 1, testing::Blobs::overlapping);
    testing::write_blobs(dir_ / "test.csv", 60, 2, testing::Blobs::overlapping);
  }
  void TearDown() override { fs::remove_all(dir_); }


  // 200 training examples in batches of 32: 7 updates per epoch.
  train::TrainConfig config(const std::string& name, const std::string& model, const std::string& rest) const {
    std::ostringstream t;
    t << "name = \"" << name << "\"\nseed = 5\nepochs = 3\nthreads = 1\nout_dir = \"" << dir_.string()
      << "\"\nprogress = \"none\"\n"
      << "[data]\nformat = \"csv\"\ntrain_features = \"" << (dir_ / "train.csv").string() << "\"\ntest_features = \""
      << (dir_ / "test.csv").string() << "\"\nscale = 1.0\nvalidation_size = 100\n"
      << "[model]\n" << model << "\n[sampler]\nbatch_size = 32\n[early_stopping]\nenabled = false\n" << rest;
    return train::parse_train_config(t.str(), "monitors.toml");
  }

  static std::vector<nlohmann::json> of_kind(const std::vector<nlohmann::json>& lines, const std::string& kind) {
    std::vector<nlohmann::json> out;
    for (const auto& l : lines) {
      if (l.value("kind", "") == kind) out.push_back(l);
    }
    return out;
  }

  fs::path dir_;
};

TEST_F(MonitorRuns, CurvatureAndLayerRecordsHoldTheirRelations) {
  const train::TrainConfig c =
      config("sgd", "type = \"mlp\"\nhidden = [6]\nactivation = \"tanh\"\ndtype = \"f64\"",
             "[optimizer]\nname = \"sgd\"\nlr = 0.05\n[diagnostics]\ncurvature_every = 2\ncurvature_update = true\n"
             "lambda_max_every = 4\nlanczos_steps = 6\nlayers_every = 3\n");
  const train::RunResult r = train::run(c, nullptr);
  ASSERT_EQ(r.steps, 21);
  const auto lines = io::read_json_lines(r.run_dir / "metrics.jsonl");
  const auto steps = of_kind(lines, "step");
  const auto curv = of_kind(lines, "curvature");
  ASSERT_EQ(curv.size(), 11u);  // steps 0, 2, ..., 20
  bool first_lambda = true;
  for (const auto& k : curv) {
    const std::int64_t s = k["step"];
    SCOPED_TRACE("step " + std::to_string(s));
    EXPECT_EQ(s % 2, 0);
    const auto& st = steps.at(static_cast<std::size_t>(s));
    ASSERT_EQ(st["step"], s);
    const double gtg = k["gTg"], ghg = k["gHg"], lr = k["lr"], norm = st["grad_norm"];
    EXPECT_NEAR(gtg, norm * norm, 1e-12 * gtg);
    EXPECT_EQ(lr, st["lr"].get<double>());
    EXPECT_NEAR(k["ratio"].get<double>(), lr * ghg / (2 * gtg), 1e-12 * std::abs(lr * ghg / gtg));
    const double predicted = k["predicted_change"];
    EXPECT_NEAR(predicted, -lr * gtg + 0.5 * lr * lr * ghg, 1e-12 * lr * gtg);
    // Plain SGD: the update is -lr g, so both predictions agree ...
    EXPECT_NEAR(k["update_predicted_change"].get<double>(), predicted, 1e-8 * std::abs(predicted));
    // ... and the loss observed after the step is the prediction up to third-order terms.
    const double observed = k["observed_change"];
    EXPECT_EQ(k["observed_mode"], "train");
    EXPECT_NEAR(observed, predicted, 0.05 * std::abs(predicted));
    EXPECT_NEAR(k["loss_after"].get<double>() - k["loss"].get<double>(), observed, 1e-15);
    EXPECT_GE(k["seconds"].get<double>(), 0.0);
    EXPECT_EQ(k.contains("lambda_max"), s % 4 == 0);
    if (k.contains("lambda_max") && first_lambda) {
      // Started from g: the Krylov space holds g, so lambda_max >= the Rayleigh quotient g'Hg/g'g.
      EXPECT_GE(k["lambda_max"].get<double>(), ghg / gtg * (1 - 1e-12));
      first_lambda = false;
    }
  }
  const auto layers = of_kind(lines, "layers");
  ASSERT_EQ(layers.size(), 7u);  // steps 0, 3, ..., 18
  for (const auto& l : layers) {
    const std::int64_t s = l["step"];
    double sum = 0;
    for (const auto& [name, norm] : l["grad_norms"].items()) sum += norm.get<double>() * norm.get<double>();
    const double norm = steps.at(static_cast<std::size_t>(s))["grad_norm"];
    EXPECT_NEAR(std::sqrt(sum), norm, 1e-12 * norm) << "step " << s;
    EXPECT_TRUE(l["weight_norms"].contains("layers.0.weight"));
    EXPECT_TRUE(l["weight_norms"].contains("layers.2.bias"));
  }
  const nlohmann::json final_record = lines.back();
  ASSERT_EQ(final_record["kind"], "final");
  EXPECT_GT(final_record["monitor_seconds"]["curvature"].get<double>(), 0.0);
  EXPECT_FALSE(final_record.contains("cliffs"));  // cliff detection is off
}

TEST_F(MonitorRuns, CliffsAreCountedWithWhetherClippingActed) {
  for (const bool clip : {false, true}) {
    SCOPED_TRACE(clip ? "clipped" : "not clipped");
    const std::string name = clip ? "clip" : "noclip";
    const train::TrainConfig c = config(name, "type = \"mlp\"\nhidden = [6]\nactivation = \"tanh\"",
                                        std::string("[optimizer]\nname = \"sgd\"\nlr = 0.05\n") +
                                            (clip ? "[clip]\nglobal_norm = 1e-6\n" : "") +
                                            "[diagnostics]\ncliff_factor = 1.0\ncliff_window = 3\n");
    const train::RunResult r = train::run(c, nullptr);
    const auto lines = io::read_json_lines(r.run_dir / "metrics.jsonl");
    const auto steps = of_kind(lines, "step");
    const auto cliffs = of_kind(lines, "cliff");
    // Independently: each step's norm against the median of the three before it.
    std::vector<std::int64_t> expected;
    for (std::size_t s = 3; s < steps.size(); ++s) {
      std::vector<double> w = {steps[s - 1]["grad_norm"], steps[s - 2]["grad_norm"], steps[s - 3]["grad_norm"]};
      std::sort(w.begin(), w.end());
      if (steps[s]["grad_norm"].get<double>() > w[1]) expected.push_back(static_cast<std::int64_t>(s));
    }
    ASSERT_FALSE(expected.empty());
    ASSERT_EQ(cliffs.size(), expected.size());
    for (std::size_t i = 0; i < cliffs.size(); ++i) {
      EXPECT_EQ(cliffs[i]["step"], expected[i]);
      EXPECT_EQ(cliffs[i]["grad_norm"], steps.at(static_cast<std::size_t>(expected[i]))["grad_norm"]);
      EXPECT_EQ(cliffs[i]["clipped"], clip);
      EXPECT_EQ(cliffs[i]["factor"], 1.0);
    }
    EXPECT_EQ(lines.back()["cliffs"], static_cast<std::int64_t>(cliffs.size()));
  }
}

TEST_F(MonitorRuns, RecurrentRecordsEachEpoch) {
  const train::TrainConfig c = config(
      "rnn", "type = \"sequential\"\nlayers = [{type = \"gru\", hidden = 3, input_size = 1}, {type = \"linear\"}]",
      "[optimizer]\nname = \"adam\"\nlr = 0.01\n[diagnostics]\nrecurrent_every_epochs = 1\nrecurrent_examples = 50\n");
  const train::RunResult r = train::run(c, nullptr);
  const auto lines = io::read_json_lines(r.run_dir / "metrics.jsonl");
  const auto rec = of_kind(lines, "recurrent");
  ASSERT_EQ(rec.size(), 3u);
  for (const auto& x : rec) {
    ASSERT_EQ(x["matrices"].size(), 3u);  // GRU: r, z, n
    EXPECT_EQ(x["matrices"][2]["gate"], "n");
    EXPECT_EQ(x["matrices"][0]["name"], "layers.0.weight_hh");
    for (const auto& m : x["matrices"]) {
      // |lambda| lies between the smallest and the largest singular value.
      EXPECT_LE(m["spectral_radius"].get<double>(), m["singular_max"].get<double>() * (1 + 1e-12));
      EXPECT_GE(m["spectral_radius"].get<double>(), m["singular_min"].get<double>() * (1 - 1e-12));
    }
    ASSERT_EQ(x["time_grad_norms"].size(), 4u);  // 4 features = 4 steps of 1
    std::vector<double> n;
    for (const auto& v : x["time_grad_norms"]) n.push_back(v);
    EXPECT_NEAR(x["growth_rate"].get<double>(), *train::growth_rate(n), 1e-15);
    EXPECT_EQ(x["examples"], 50);
  }
}

TEST_F(MonitorRuns, ResumeIsBitIdenticalWithEveryMonitorOn) {
  // Dropout and batch normalization (the observed change in evaluation mode), momentum,
  // clipping, and every monitor; checkpoints every 4 steps.
  const std::string model =
      "type = \"sequential\"\nlayers = [{type = \"linear\", units = 8, bias = false}, {type = \"batchnorm\"},"
      " {type = \"relu\"}, {type = \"dropout\", p = 0.3}, {type = \"linear\"}]";
  const std::string rest =
      "[optimizer]\nname = \"momentum\"\nlr = 0.05\nmomentum = 0.9\n[clip]\nglobal_norm = 2.0\n"
      "[checkpoint]\nevery_steps = 4\nkeep = 1000\n"
      "[diagnostics]\ncurvature_every = 3\ncurvature_update = true\nlambda_max_every = 5\nlanczos_steps = 4\n"
      "layers_every = 4\ncliff_factor = 1.2\ncliff_window = 4\n";
  const train::TrainConfig c = config("full", model, rest);
  const train::RunResult full = train::run(c, nullptr);
  std::ifstream in(full.run_dir / "model.safetensors", std::ios::binary);
  const std::string model_bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto lines = io::read_json_lines(full.run_dir / "metrics.jsonl");
  ASSERT_FALSE(of_kind(lines, "cliff").empty());
  ASSERT_EQ(of_kind(lines, "curvature")[0]["observed_mode"], "eval");
  const auto checkpoints = train::list_checkpoints(full.run_dir / "checkpoints");
  ASSERT_GE(checkpoints.size(), 6u);
  // Fields that must agree exactly (everything but costs and times).
  auto same = [](const nlohmann::json& a, const nlohmann::json& b) {
    nlohmann::json x = a, y = b;
    for (auto* j : {&x, &y}) {
      j->erase("wall_s");
      j->erase("seconds");
      j->erase("monitor_seconds");
      j->erase("examples_per_s");
    }
    return x == y;
  };
  for (const std::size_t i : {std::size_t{1}, std::size_t{3}, checkpoints.size() - 3}) {
    SCOPED_TRACE(checkpoints[i].filename().string());
    const fs::path copy = dir_ / ("copy" + std::to_string(i));
    fs::copy(full.run_dir, copy, fs::copy_options::recursive);
    fs::remove(copy / "model.safetensors");
    for (std::size_t j = i + 1; j < checkpoints.size(); ++j) fs::remove(copy / "checkpoints" / checkpoints[j].filename());
    train::resume(copy, nullptr);
    std::ifstream again(copy / "model.safetensors", std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(again)), std::istreambuf_iterator<char>());
    EXPECT_TRUE(bytes == model_bytes) << "model.safetensors differs";
    const auto relines = io::read_json_lines(copy / "metrics.jsonl");
    ASSERT_EQ(relines.size(), lines.size());
    for (std::size_t l = 0; l < lines.size(); ++l) EXPECT_TRUE(same(lines[l], relines[l])) << "line " << l << ": " << lines[l].dump() << " vs " << relines[l].dump();
  }
}

TEST(DiagnosticsConfig, BadValuesAreOneClearError) {
  try {
    train::parse_train_config("[diagnostics]\ncurvature_every = -1\n", "x.toml");
    FAIL() << "accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("diagnostics.curvature_every"), std::string::npos) << e.what();
  }
  try {
    train::parse_train_config("[diagnostics]\ncliff_windw = 10\n", "x.toml");
    FAIL() << "accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("cliff_window"), std::string::npos) << e.what();
  }
  const train::TrainConfig c = train::parse_train_config("[diagnostics]\nlanczos_steps = 12\ncliff_factor = 4\n", "x.toml");
  EXPECT_EQ(train::parse_train_config(train::to_toml(c), "y.toml").diagnostics, c.diagnostics);
}

}  // namespace
}  // namespace descent
