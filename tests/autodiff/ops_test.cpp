// Every differentiable operation: gradient against central differences (float64,
// relative error < 1e-6) and the exact Hessian-vector product against central
// differences of the gradient, on inputs away from kinks.
#include <gtest/gtest.h>

#include <cmath>

#include "descent/autodiff/ops.hpp"
#include "descent/loss/loss.hpp"
#include "support/gradcheck.hpp"

namespace descent {
namespace {

using autodiff::Tape;
using autodiff::Var;
using testing::Builder;
using testing::expect_derivatives;
using testing::head;
using testing::random_tensor;

Tensor away_from_zero(const Shape& s, std::uint64_t seed) {
  Tensor t = random_tensor(s, DType::f64, seed, 0.1, 1.0);
  Tensor sign = random_tensor(s, DType::f64, seed + 7);
  for (std::int64_t i = 0; i < t.numel(); ++i) {
    if (sign.at(i) < 0) t.data<double>()[i] = -t.data<double>()[i];
  }
  return t;
}

TEST(Ops, LinearWithBias) {
  auto b = head([](Tape&, const std::vector<Var>& v) { return autodiff::linear(v[0], v[1], v[2]); }, Shape{4, 3}, 1);
  expect_derivatives(b, {random_tensor({4, 5}, DType::f64, 2), random_tensor({3, 5}, DType::f64, 3),
                         random_tensor({3}, DType::f64, 4)},
                     5);
}

TEST(Ops, LinearWithoutBias) {
  auto b = head([](Tape&, const std::vector<Var>& v) { return autodiff::linear(v[0], v[1]); }, Shape{2, 6}, 6);
  expect_derivatives(b, {random_tensor({2, 3}, DType::f64, 7), random_tensor({6, 3}, DType::f64, 8)}, 9);
}

TEST(Ops, LinearWithConstantInputSkipsItsGradient) {
  Tape tape;
  Var x = tape.constant(random_tensor({2, 3}, DType::f64, 1));
  Var w = tape.variable(random_tensor({4, 3}, DType::f64, 2));
  Var loss = autodiff::sum(autodiff::linear(x, w));
  tape.backward(loss);
  EXPECT_FALSE(tape.node(x).grad.defined());
  // d sum(x w^T) / d w[j, k] = sum_i x[i, k]
  for (std::int64_t j = 0; j < 4; ++j) {
    for (std::int64_t k = 0; k < 3; ++k) {
      EXPECT_NEAR(tape.grad(w).at(j * 3 + k), x.value().at(k) + x.value().at(3 + k), 1e-12);
    }
  }
}

TEST(Ops, Matmul) {
  auto b = head([](Tape&, const std::vector<Var>& v) { return autodiff::matmul(v[0], v[1]); }, Shape{3, 2}, 10);
  expect_derivatives(b, {random_tensor({3, 4}, DType::f64, 11), random_tensor({4, 2}, DType::f64, 12)}, 13);
}

TEST(Ops, AddSubMul) {
  auto b = head(
      [](Tape&, const std::vector<Var>& v) { return autodiff::mul(autodiff::add(v[0], v[1]), autodiff::sub(v[0], v[2])); },
      Shape{3, 3}, 14);
  expect_derivatives(b, {random_tensor({3, 3}, DType::f64, 15), random_tensor({3, 3}, DType::f64, 16),
                         random_tensor({3, 3}, DType::f64, 17)},
                     18);
}

TEST(Ops, MulOfAVariableWithItself) {
  auto b = head([](Tape&, const std::vector<Var>& v) { return autodiff::mul(v[0], v[0]); }, Shape{5}, 19);
  expect_derivatives(b, {random_tensor({5}, DType::f64, 20)}, 21);
}

TEST(Ops, ScaleAndAddScalar) {
  auto b = head([](Tape&, const std::vector<Var>& v) { return autodiff::add_scalar(autodiff::scale(v[0], -2.5), 0.75); },
                Shape{2, 2}, 22);
  expect_derivatives(b, {random_tensor({2, 2}, DType::f64, 23)}, 24);
}

TEST(Ops, MulScalar) {
  auto b = head([](Tape&, const std::vector<Var>& v) { return autodiff::mul_scalar(v[0], v[1]); }, Shape{3, 2}, 25);
  expect_derivatives(b, {random_tensor({3, 2}, DType::f64, 26), random_tensor({1}, DType::f64, 27, 0.5, 1.5)}, 28);
}

TEST(Ops, ReluAwayFromTheKink) {
  auto b = head([](Tape&, const std::vector<Var>& v) { return autodiff::relu(v[0]); }, Shape{4, 4}, 29);
  expect_derivatives(b, {away_from_zero({4, 4}, 30)}, 31);
}

TEST(Ops, Tanh) {
  auto b = head([](Tape&, const std::vector<Var>& v) { return autodiff::tanh(v[0]); }, Shape{3, 4}, 32);
  expect_derivatives(b, {random_tensor({3, 4}, DType::f64, 33, -2.0, 2.0)}, 34);
}

TEST(Ops, Sigmoid) {
  auto b = head([](Tape&, const std::vector<Var>& v) { return autodiff::sigmoid(v[0]); }, Shape{3, 4}, 35);
  expect_derivatives(b, {random_tensor({3, 4}, DType::f64, 36, -3.0, 3.0)}, 37);
}

TEST(Ops, SigmoidDoesNotOverflow) {
  Tape tape;
  Var x = tape.constant(Tensor::from<double>({3}, {-1000.0, 0.0, 1000.0}));
  const Tensor& y = autodiff::sigmoid(x).value();
  EXPECT_EQ(y.at(0), 0.0);
  EXPECT_EQ(y.at(1), 0.5);
  EXPECT_EQ(y.at(2), 1.0);
}

TEST(Ops, Exp) {
  auto b = head([](Tape&, const std::vector<Var>& v) { return autodiff::exp(v[0]); }, Shape{6}, 38);
  expect_derivatives(b, {random_tensor({6}, DType::f64, 39)}, 40);
}

TEST(Ops, Log) {
  auto b = head([](Tape&, const std::vector<Var>& v) { return autodiff::log(v[0]); }, Shape{6}, 41);
  expect_derivatives(b, {random_tensor({6}, DType::f64, 42, 0.5, 2.0)}, 43);
}

TEST(Ops, Square) {
  auto b = head([](Tape&, const std::vector<Var>& v) { return autodiff::square(v[0]); }, Shape{2, 3}, 44);
  expect_derivatives(b, {random_tensor({2, 3}, DType::f64, 45)}, 46);
}

TEST(Ops, Softmax) {
  auto b = head([](Tape&, const std::vector<Var>& v) { return autodiff::softmax(v[0]); }, Shape{3, 5}, 47);
  expect_derivatives(b, {random_tensor({3, 5}, DType::f64, 48, -2.0, 2.0)}, 49);
}

TEST(Ops, LogSoftmax) {
  auto b = head([](Tape&, const std::vector<Var>& v) { return autodiff::log_softmax(v[0]); }, Shape{3, 5}, 50);
  expect_derivatives(b, {random_tensor({3, 5}, DType::f64, 51, -2.0, 2.0)}, 52);
}

TEST(Ops, SumMeanReshape) {
  Builder b = [](Tape&, const std::vector<Var>& v) {
    Var s = autodiff::sum(autodiff::square(autodiff::reshape(v[0], Shape{6})));
    Var m = autodiff::mean(autodiff::tanh(v[0]));
    return autodiff::mul(s, autodiff::reshape(m, Shape{}));
  };
  expect_derivatives(b, {random_tensor({2, 3}, DType::f64, 53)}, 54);
}

TEST(Ops, SoftmaxCrossEntropy) {
  Tensor labels = Tensor::from<std::int32_t>({4}, {0, 2, 1, 2});
  Builder b = [labels](Tape&, const std::vector<Var>& v) { return autodiff::softmax_cross_entropy(v[0], labels); };
  expect_derivatives(b, {random_tensor({4, 3}, DType::f64, 55, -2.0, 2.0)}, 56);
}

TEST(Ops, SoftmaxCrossEntropyEqualsLogSoftmaxPick) {
  Tensor labels = Tensor::from<std::int32_t>({2}, {1, 0});
  Tensor z = Tensor::from<double>({2, 3}, {1.0, 2.0, 3.0, -1.0, 0.0, 0.5});
  Tape tape;
  Var loss = autodiff::softmax_cross_entropy(tape.constant(z), labels);
  // Row 0: lse(1,2,3) - 2; row 1: lse(-1,0,0.5) - (-1). Written out from the definition.
  const double lse0 = std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0));
  const double lse1 = std::log(std::exp(-1.0) + std::exp(0.0) + std::exp(0.5));
  EXPECT_NEAR(loss.value().item(), ((lse0 - 2.0) + (lse1 + 1.0)) / 2.0, 1e-14);
}

TEST(Ops, SoftmaxCrossEntropyIsStableForLargeLogits) {
  Tensor labels = Tensor::from<std::int32_t>({1}, {0});
  Tape tape;
  Var z = tape.variable(Tensor::from<float>({1, 3}, {1000.0f, 0.0f, -1000.0f}));
  Var loss = autodiff::softmax_cross_entropy(z, labels);
  EXPECT_EQ(loss.value().item(), 0.0);
  tape.backward(loss);
  EXPECT_TRUE(std::isfinite(tape.grad(z).at(0)));
  EXPECT_EQ(tape.grad(z).at(0), 0.0);
  Var wrong = autodiff::softmax_cross_entropy(z, Tensor::from<std::int32_t>({1}, {2}));
  EXPECT_FLOAT_EQ(static_cast<float>(wrong.value().item()), 2000.0f);
}

TEST(Ops, SoftmaxCrossEntropyRejectsLabelsOutOfRange) {
  Tape tape;
  Var z = tape.variable(Tensor::zeros({2, 3}, DType::f32));
  EXPECT_THROW(autodiff::softmax_cross_entropy(z, Tensor::from<std::int32_t>({2}, {0, 3})), DataError);
  EXPECT_THROW(autodiff::softmax_cross_entropy(z, Tensor::from<std::int32_t>({3}, {0, 1, 2})), ShapeError);
}

TEST(Ops, MeanSquaredError) {
  Builder b = [](Tape&, const std::vector<Var>& v) { return loss::mse(v[0], v[1]); };
  expect_derivatives(b, {random_tensor({3, 2}, DType::f64, 57), random_tensor({3, 2}, DType::f64, 58)}, 59);
  Tape tape;
  Var l = loss::mse(tape.constant(Tensor::from<double>({2}, {1.0, 2.0})), tape.constant(Tensor::from<double>({2}, {0.0, 4.0})));
  EXPECT_DOUBLE_EQ(l.value().item(), (1.0 + 4.0) / 2.0);
}

TEST(Ops, GaussianNegativeLogLikelihood) {
  Builder b = [](Tape&, const std::vector<Var>& v) { return loss::gaussian_nll(v[0], v[1], v[2]); };
  expect_derivatives(b, {random_tensor({4, 2}, DType::f64, 60), random_tensor({4, 2}, DType::f64, 61),
                         random_tensor({1}, DType::f64, 62, 0.5, 2.0)},
                     63);
  // beta = 2, residuals (1, -1): 2/2 * 1 - 1/2 log 2 + 1/2 log 2 pi.
  Tape tape;
  Var l = loss::gaussian_nll(tape.constant(Tensor::from<double>({2}, {1.0, 0.0})),
                             tape.constant(Tensor::from<double>({2}, {0.0, 1.0})),
                             tape.constant(Tensor::from<double>({1}, {2.0})));
  EXPECT_NEAR(l.value().item(), 1.0 - 0.5 * std::log(2.0) + 0.5 * std::log(2.0 * M_PI), 1e-14);
}

TEST(Ops, GaussianNllRunsToMinusInfinityWithAnExactFit) {
  // A perfect fit lets the learned precision grow without bound: the loss has no minimum.
  Tape tape;
  Var y = tape.constant(Tensor::from<double>({3}, {0.5, -1.0, 2.0}));
  double previous = 0.0;
  for (double beta : {1.0, 1e3, 1e6, 1e9}) {
    Var l = loss::gaussian_nll(y, y, tape.constant(Tensor::from<double>({1}, {beta})));
    if (beta > 1.0) {
      EXPECT_LT(l.value().item(), previous - 3.0);
    }
    previous = l.value().item();
  }
}

TEST(Ops, ShapeErrorsNameTheOperation) {
  Tape tape;
  Var a = tape.constant(Tensor::zeros({2, 3}, DType::f32));
  Var b = tape.constant(Tensor::zeros({3, 2}, DType::f32));
  try {
    autodiff::add(a, b);
    FAIL() << "expected ShapeError";
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("add"), std::string::npos) << e.what();
  }
  EXPECT_THROW(autodiff::linear(a, b), ShapeError);
  EXPECT_THROW(autodiff::matmul(a, a), ShapeError);
  Var d = tape.constant(Tensor::zeros({2, 3}, DType::f64));
  EXPECT_THROW(autodiff::mul(a, d), ShapeError);
  EXPECT_THROW(tape.backward(a), ShapeError);
}

TEST(Ops, Float32GradientMatchesFloat64) {
  // The same graph in both precisions: the float32 gradient agrees to float32 accuracy.
  Tensor x64 = random_tensor({8, 5}, DType::f64, 64);
  Tensor w64 = random_tensor({3, 5}, DType::f64, 65);
  Tensor labels = Tensor::from<std::int32_t>({8}, {0, 1, 2, 0, 1, 2, 0, 1});
  auto grad_of = [&](DType t) {
    Tape tape;
    Var x = tape.constant(x64.to(t));
    Var w = tape.variable(w64.to(t));
    tape.backward(autodiff::softmax_cross_entropy(autodiff::tanh(autodiff::linear(x, w)), labels));
    return tape.grad(w).to(DType::f64);
  };
  EXPECT_LT(testing::relative_difference(grad_of(DType::f32), grad_of(DType::f64)), 1e-6);
}

}  // namespace
}  // namespace descent
