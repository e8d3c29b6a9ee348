// Hessian-vector products through convolution, pooling and recurrent layers: the dense
// Hessian that HessianOperator builds from its exact products, column by column, against
// central differences of gradients taken on one plain tape, on tiny float64 models (a CNN
// with two convolutions, max pooling and a dense head; an LSTM returning its sequence into a
// GRU into a dense head; an Elman RNN). Lanczos' extremes on those Hessians against LAPACK.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "descent/diag/hessian.hpp"
#include "descent/diag/lanczos.hpp"
#include "descent/diag/lapack.hpp"
#include "descent/init/rng.hpp"
#include "descent/nn/conv.hpp"
#include "descent/nn/recurrent.hpp"
#include "problem.hpp"
#include "support/finite_hessian.hpp"

namespace descent {
namespace {

struct Model {
  ParameterArena arena{DType::f64};
  nn::Sequential net{arena};
  Tensor x, labels;
  void data(std::int64_t n, std::int64_t features, int classes, std::uint64_t seed) {
    arena.values().copy_from(testing::random_tensor({arena.size()}, DType::f64, seed, -0.7, 0.7));
    x = testing::random_tensor({n, features}, DType::f64, seed + 1, -1.5, 1.5);
    std::vector<std::int32_t> y(static_cast<std::size_t>(n));
    Rng rng(seed + 2);
    for (auto& label : y) label = static_cast<std::int32_t>(rng.below(static_cast<std::uint64_t>(classes)));
    labels = Tensor::from<std::int32_t>({n}, y);
  }
  std::vector<double> gradient() {  // over all examples, one tape
    autodiff::Tape tape;
    autodiff::Var loss = loss::cross_entropy(net.forward(tape, tape.constant(x)), labels);
    Tensor grad = Tensor::zeros({arena.size()}, arena.dtype());
    tape.backward(loss, grad);
    std::vector<double> g(static_cast<std::size_t>(arena.size()));
    for (std::int64_t i = 0; i < arena.size(); ++i) g[static_cast<std::size_t>(i)] = grad.at(i);
    return g;
  }
};

// The dense Hessian from exact products (3 chunks) against central differences; then the
// extreme eigenvalues by Lanczos against LAPACK's on that dense matrix.
void expect_hessian_matches_finite_differences(Model& m) {
  const std::int64_t n = m.arena.size();
  diag::HessianOperator h(m.net, m.arena, m.x, m.labels, {.chunk = (m.x.dim(0) + 2) / 3});
  const std::vector<double> dense = diag::dense_hessian(h);
  const testing::HessianAgreement a = testing::compare_hessians(
      dense, testing::central_difference_hessian(m.arena.values().data<double>(), n, [&] { return m.gradient(); }), n);
  EXPECT_GT(a.scale, 1e-2);
  EXPECT_LT(a.worst, 1e-7);
  EXPECT_LT(a.asym, 1e-12 * a.scale);

  const diag::Eigen eig = diag::symmetric_eigen(dense, n);
  h.refresh();
  const diag::Spectrum s = diag::lanczos_extremes(h, {.steps = static_cast<int>(n), .top = 2, .bottom = 2, .seed = 4});
  const double big = std::max(std::abs(eig.values.front()), std::abs(eig.values.back()));
  EXPECT_NEAR(s.lambda_max, eig.values.back(), 1e-8 * big);
  EXPECT_NEAR(s.lambda_min, eig.values.front(), 1e-8 * big);
  EXPECT_LT(eig.values.front(), 0.0);  // random parameters: an indefinite Hessian
}

TEST(HessianModels, ConvPoolDenseMatchesFiniteDifferences) {
  Model m;
  m.net.add(nn::Unflatten({1, 5, 5}));
  m.net.add(nn::Conv2d(1, 2, 3, {.stride = 1, .padding = 1}));
  m.net.add(nn::Tanh());
  m.net.add(nn::MaxPool2d(2));  // -> [2, 2, 2]
  m.net.add(nn::Conv2d(2, 3, 2, {.stride = 1, .padding = 0}));
  m.net.add(nn::ReLU());
  m.net.add(nn::Flatten());  // -> [3]
  m.net.add(nn::Linear(3, 3));
  m.data(9, 25, 3, 31);
  ASSERT_EQ(m.arena.size(), (9 + 1) * 2 + (8 + 1) * 3 + 3 * 3 + 3);
  expect_hessian_matches_finite_differences(m);
}

TEST(HessianModels, LstmIntoGruIntoDenseMatchesFiniteDifferences) {
  Model m;
  m.net.add(nn::LSTM(2, 3, {.return_sequence = true}));
  m.net.add(nn::GRU(3, 2));
  m.net.add(nn::Linear(2, 3));
  m.data(7, 3 * 2, 3, 41);  // 3 steps of 2
  expect_hessian_matches_finite_differences(m);
}

TEST(HessianModels, ElmanRnnMatchesFiniteDifferences) {
  Model m;
  m.net.add(nn::RNN(3, 4));
  m.net.add(nn::Linear(4, 3));
  m.data(8, 5 * 3, 3, 51);  // 5 steps of 3
  expect_hessian_matches_finite_differences(m);
}

}  // namespace
}  // namespace descent
