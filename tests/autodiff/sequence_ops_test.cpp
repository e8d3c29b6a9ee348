// The sequence operations: values by hand, gradient against central differences (float64,
// relative error < 1e-6), the exact Hessian-vector product against central differences of
// the gradient, shape errors; stop_gradient blocks both sweeps.
#include "descent/autodiff/sequence.hpp"

#include <gtest/gtest.h>

#include <string>

#include "descent/autodiff/ops.hpp"
#include "support/expect_error.hpp"
#include "support/gradcheck.hpp"

namespace descent {
namespace {

using autodiff::Tape;
using autodiff::Var;
using testing::Builder;
using testing::expect_derivatives;
using testing::head;
using testing::random_tensor;

template <class F>
void expect_shape_error(F&& f, const std::string& needle) {
  testing::expect_error<ShapeError>(std::forward<F>(f), {needle});
}

TEST(SequenceOps, SliceColsValues) {
  Tape tape;
  Var x = tape.constant(Tensor::from<float>({2, 4}, {1, 2, 3, 4, 5, 6, 7, 8}));
  Var y = autodiff::slice_cols(x, 1, 3);
  ASSERT_EQ(y.shape(), (Shape{2, 2}));
  EXPECT_EQ(y.value().at(0), 2.0);
  EXPECT_EQ(y.value().at(1), 3.0);
  EXPECT_EQ(y.value().at(2), 6.0);
  EXPECT_EQ(y.value().at(3), 7.0);
  EXPECT_EQ(y.dtype(), DType::f32);
}

TEST(SequenceOps, SliceColsGradientAndHvp) {
  // The slice of a product, then a nonlinearity: the slice sees a real tangent and its
  // output's R(gy) carries a second-order term from tanh.
  auto b = head(
      [](Tape&, const std::vector<Var>& v) { return autodiff::tanh(autodiff::slice_cols(autodiff::mul(v[0], v[1]), 1, 4)); },
      Shape{3, 3}, 1);
  expect_derivatives(b, {random_tensor({3, 6}, DType::f64, 2), random_tensor({3, 6}, DType::f64, 3)}, 4);
}

TEST(SequenceOps, SlicesOfOneInputAccumulateAndZeroTheRest) {
  // Two overlapping slices and a gap: the gradient of the uncovered columns must be 0
  // (a fresh buffer is zeroed outside the block), the overlap gets both terms.
  auto b = head(
      [](Tape&, const std::vector<Var>& v) {
        Var a = autodiff::slice_cols(v[0], 0, 3);
        Var c = autodiff::slice_cols(v[0], 2, 5);
        return autodiff::mul(a, c);
      },
      Shape{2, 3}, 5);
  const std::vector<Tensor> x = {random_tensor({2, 7}, DType::f64, 6)};
  expect_derivatives(b, x, 7);
  const Tensor g = testing::gradients(b, x)[0];
  for (std::int64_t r = 0; r < 2; ++r) {
    EXPECT_EQ(g.at(r * 7 + 5), 0.0);
    EXPECT_EQ(g.at(r * 7 + 6), 0.0);
  }
}

TEST(SequenceOps, SelectStepValues) {
  // x [B*T, G] with B = 2, T = 3, G = 2: row b*3 + t.
  Tape tape;
  std::vector<double> v(12);
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<double>(i);
  Var x = tape.constant(Tensor::from<double>({6, 2}, v));
  Var y = autodiff::select_step(x, 1, 3);
  ASSERT_EQ(y.shape(), (Shape{2, 2}));
  EXPECT_EQ(y.value().at(0), 2.0);   // row 1
  EXPECT_EQ(y.value().at(1), 3.0);
  EXPECT_EQ(y.value().at(2), 8.0);   // row 4
  EXPECT_EQ(y.value().at(3), 9.0);
}

TEST(SequenceOps, SelectStepGradientAndHvp) {
  auto b = head(
      [](Tape&, const std::vector<Var>& v) {
        Var s0 = autodiff::select_step(autodiff::tanh(v[0]), 0, 3);
        Var s2 = autodiff::select_step(v[0], 2, 3);
        return autodiff::mul(s0, s2);
      },
      Shape{2, 4}, 8);
  expect_derivatives(b, {random_tensor({6, 4}, DType::f64, 9)}, 10);
}

TEST(SequenceOps, ConcatColsValuesAndGradientAndHvp) {
  Tape tape;
  Var a = tape.constant(Tensor::from<double>({2, 1}, {1, 2}));
  Var c = tape.constant(Tensor::from<double>({2, 2}, {3, 4, 5, 6}));
  Var y = autodiff::concat_cols(a, c);
  ASSERT_EQ(y.shape(), (Shape{2, 3}));
  const double expected[] = {1, 3, 4, 2, 5, 6};
  for (int i = 0; i < 6; ++i) EXPECT_EQ(y.value().at(i), expected[i]);

  auto b = head(
      [](Tape&, const std::vector<Var>& v) { return autodiff::tanh(autodiff::concat_cols(autodiff::mul(v[0], v[0]), v[1])); },
      Shape{3, 5}, 11);
  expect_derivatives(b, {random_tensor({3, 2}, DType::f64, 12), random_tensor({3, 3}, DType::f64, 13)}, 14);
}

TEST(SequenceOps, ConcatColsWithOneConstantPart) {
  // The constant part has no tangent: its block of y' is zero, and it gets no gradient.
  const Tensor fixed = random_tensor({3, 2}, DType::f64, 15);
  auto b = head(
      [fixed](Tape& t, const std::vector<Var>& v) {
        return autodiff::tanh(autodiff::concat_cols(t.constant(fixed), autodiff::mul(v[0], v[0])));
      },
      Shape{3, 4}, 16);
  expect_derivatives(b, {random_tensor({3, 2}, DType::f64, 17)}, 18);
}

TEST(SequenceOps, StopGradientPassesTheValueAndBlocksBothSweeps) {
  // L = f(x) + g(stop_gradient(x)): the tape's gradient and Hv are those of f alone.
  auto f = [](Var x) { return autodiff::sum(autodiff::mul(autodiff::tanh(x), x)); };
  auto g = [](Var x) { return autodiff::sum(autodiff::exp(autodiff::mul(x, x))); };
  Builder with_stop = [&](Tape&, const std::vector<Var>& v) { return autodiff::add(f(v[0]), g(autodiff::stop_gradient(v[0]))); };
  Builder f_only = [&](Tape&, const std::vector<Var>& v) { return f(v[0]); };
  const std::vector<Tensor> x = {random_tensor({2, 3}, DType::f64, 19)};
  const std::vector<Tensor> dir = {random_tensor({2, 3}, DType::f64, 20)};
  const Tensor g_stop = testing::gradients(with_stop, x)[0];
  const Tensor g_f = testing::gradients(f_only, x)[0];
  for (std::int64_t i = 0; i < g_f.numel(); ++i) EXPECT_EQ(g_stop.at(i), g_f.at(i));
  // The gradient of f itself passes the finite-difference check, Hv too.
  expect_derivatives(f_only, x, 21);

  Tape tape;
  Var xv = tape.variable(x[0]);
  tape.set_tangent(xv, dir[0]);
  Var y = autodiff::stop_gradient(xv);
  EXPECT_TRUE(y.value().same_view(x[0]));
  EXPECT_FALSE(tape.node(y).requires_grad);
  Var loss = autodiff::add(f(xv), g(y));
  tape.hvp(loss, Tensor(), Tensor());
  EXPECT_FALSE(tape.node(y).tangent.defined());
  const Tensor hv_stop = tape.grad_tangent(xv).clone();
  Tape tape_f;
  Var xf = tape_f.variable(x[0]);
  tape_f.set_tangent(xf, dir[0]);
  tape_f.hvp(f(xf), Tensor(), Tensor());
  for (std::int64_t i = 0; i < hv_stop.numel(); ++i) EXPECT_DOUBLE_EQ(hv_stop.at(i), tape_f.grad_tangent(xf).at(i));
  EXPECT_GT(testing::relative_difference(g_stop, testing::gradients(
                                                     [&](Tape&, const std::vector<Var>& v) {
                                                       return autodiff::add(f(v[0]), g(v[0]));
                                                     },
                                                     x)[0]),
            1e-3);
}

TEST(SequenceOps, Float32Values) {
  Tape tape;
  Var x = tape.variable(random_tensor({3, 8}, DType::f32, 22));
  Var y = autodiff::concat_cols(autodiff::slice_cols(x, 4, 8), autodiff::select_step(x, 0, 1));
  ASSERT_EQ(y.shape(), (Shape{3, 12}));
  for (std::int64_t r = 0; r < 3; ++r) {
    for (std::int64_t j = 0; j < 4; ++j) EXPECT_EQ(y.value().at(r * 12 + j), x.value().at(r * 8 + 4 + j));
    for (std::int64_t j = 0; j < 8; ++j) EXPECT_EQ(y.value().at(r * 12 + 4 + j), x.value().at(r * 8 + j));
  }
  tape.backward(autodiff::sum(y));
  // Columns 4..7 are used twice, 0..3 once.
  for (std::int64_t r = 0; r < 3; ++r) {
    for (std::int64_t j = 0; j < 8; ++j) EXPECT_EQ(tape.grad(x).at(r * 8 + j), j < 4 ? 1.0 : 2.0);
  }
}

TEST(SequenceOps, ShapeErrors) {
  Tape tape;
  Var x = tape.variable(Tensor::zeros({3, 4}, DType::f64));
  Var v = tape.variable(Tensor::zeros({4}, DType::f64));
  Var f = tape.variable(Tensor::zeros({3, 2}, DType::f32));
  Var labels = tape.constant(Tensor::zeros({3, 4}, DType::i32));
  expect_shape_error([&] { autodiff::slice_cols(x, 2, 2); }, "slice_cols: columns [2, 2) of [3, 4]");
  expect_shape_error([&] { autodiff::slice_cols(x, -1, 2); }, "slice_cols");
  expect_shape_error([&] { autodiff::slice_cols(x, 1, 5); }, "0 <= begin < end <= 4");
  expect_shape_error([&] { autodiff::slice_cols(v, 0, 1); }, "slice_cols: expects a 2-D input, got [4]");
  expect_shape_error([&] { autodiff::slice_cols(labels, 0, 1); }, "slice_cols: needs f32 or f64");
  expect_shape_error([&] { autodiff::select_step(x, 0, 2); }, "select_step: step 0 of 2 from [3, 4]");
  expect_shape_error([&] { autodiff::select_step(x, 3, 3); }, "select_step");
  expect_shape_error([&] { autodiff::select_step(x, 0, 0); }, "select_step");
  expect_shape_error([&] { autodiff::select_step(v, 0, 1); }, "select_step: expects a 2-D input");
  expect_shape_error([&] { autodiff::concat_cols(x, tape.variable(Tensor::zeros({2, 4}, DType::f64))); },
                     "concat_cols: [3, 4] and [2, 4] differ in rows");
  expect_shape_error([&] { autodiff::concat_cols(x, f); }, "concat_cols");
  expect_shape_error([&] { autodiff::stop_gradient(labels); }, "stop_gradient: needs f32 or f64");
}

}  // namespace
}  // namespace descent
