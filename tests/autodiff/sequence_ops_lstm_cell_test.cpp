// The fused LSTM cell (autodiff::lstm_cell): values by hand; value, gradient and exact
// Hessian-vector product against the same cell built from primitive operations (slices,
// sigmoid, tanh, products, a sum, a concatenation) and against central differences
// (float64, relative error < 1e-6); sinks that accumulate, inputs without a gradient or a
// tangent, the zero state, float32, shape errors.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "descent/autodiff/ops.hpp"
#include "descent/autodiff/sequence.hpp"
#include "support/expect_error.hpp"
#include "support/gradcheck.hpp"

namespace descent {
namespace {

using autodiff::Tape;
using autodiff::Var;
using testing::Builder;
using testing::expect_close;
using testing::random_tensor;

constexpr double fd_tol = 1e-6;     // against central differences
constexpr double same_tol = 1e-13;  // against the unfused graph (float64: rounding only)

// The cell from primitive operations: [o tanh(c) c], c = f c_prev + i g.
Var reference_cell(Var a, Var state) {
  const std::int64_t n = a.value().dim(1) / 4;
  Var i = autodiff::sigmoid(autodiff::slice_cols(a, 0, n));
  Var f = autodiff::sigmoid(autodiff::slice_cols(a, n, 2 * n));
  Var g = autodiff::tanh(autodiff::slice_cols(a, 2 * n, 3 * n));
  Var o = autodiff::sigmoid(autodiff::slice_cols(a, 3 * n, 4 * n));
  Var c = state.valid() ? autodiff::add(autodiff::mul(f, autodiff::slice_cols(state, n, 2 * n)), autodiff::mul(i, g))
                        : autodiff::mul(i, g);
  return autodiff::concat_cols(autodiff::mul(o, autodiff::tanh(c)), c);
}

using Cell = Var (*)(Var, Var);
Var fused_cell(Var a, Var state) { return autodiff::lstm_cell(a, state); }

// L = sum(w (.) y) + 1/2 sum(y^2): a non-uniform gy and a non-zero R(gy).
Var head(Tape& t, Var y, std::uint64_t seed) { return testing::quadratic_head(t, y, seed); }

// Gradient and Hv of `build` under the fused and the reference cell, element by element.
void expect_same_derivatives(const std::function<Var(Tape&, const std::vector<Var>&, Cell)>& build,
                             const std::vector<Tensor>& inputs, std::uint64_t seed) {
  const std::vector<Tensor> tangents = testing::random_tangents(inputs, seed);
  std::vector<Tensor> grads[2], hvs[2], values[2];
  const Cell cells[2] = {fused_cell, reference_cell};
  for (int which = 0; which < 2; ++which) {
    Tape tape;
    std::vector<Var> vars;
    for (std::size_t k = 0; k < inputs.size(); ++k) {
      vars.push_back(tape.variable(inputs[k]));
      tape.set_tangent(vars.back(), tangents[k]);
    }
    Var loss = build(tape, vars, cells[which]);
    values[which].push_back(loss.value().clone());
    tape.hvp(loss, Tensor(), Tensor());
    for (Var v : vars) {
      grads[which].push_back(tape.grad(v).clone());
      hvs[which].push_back(tape.grad_tangent(v).clone());
    }
  }
  EXPECT_NEAR(values[0][0].item(), values[1][0].item(), 1e-12 * std::abs(values[1][0].item()));
  for (std::size_t k = 0; k < inputs.size(); ++k) {
    EXPECT_GT(testing::relative_difference(grads[1][k], Tensor::zeros(grads[1][k].shape(), DType::f64)), 0.0);
    expect_close(grads[0][k], grads[1][k], same_tol, "gradient of input " + std::to_string(k));
    expect_close(hvs[0][k], hvs[1][k], same_tol, "Hv of input " + std::to_string(k));
  }
  // The fused cell against central differences too.
  Builder fused = [&](Tape& t, const std::vector<Var>& v) { return build(t, v, fused_cell); };
  testing::expect_derivatives(fused, inputs, seed, fd_tol);
}

TEST(LstmCell, ValuesByHand) {
  // H = 1, a = [0, ln 3, 0, 0]: i = o = 1/2, f = 3/4, g = 0; c_prev = 2: c = 3/2, h = tanh(3/2) / 2.
  Tape tape;
  Var a = tape.constant(Tensor::from<double>({1, 4}, {0.0, std::log(3.0), 0.0, 0.0}));
  Var s = tape.constant(Tensor::from<double>({1, 2}, {5.0, 2.0}));
  Var y = autodiff::lstm_cell(a, s);
  ASSERT_EQ(y.shape(), (Shape{1, 2}));
  EXPECT_NEAR(y.value().at(1), 1.5, 1e-15);
  EXPECT_NEAR(y.value().at(0), 0.5 * std::tanh(1.5), 1e-15);
  // The zero state: c = i g with g = tanh(1) here.
  Var a2 = tape.constant(Tensor::from<double>({1, 4}, {0.0, 7.0, 1.0, 0.0}));
  Var y2 = autodiff::lstm_cell(a2);
  EXPECT_NEAR(y2.value().at(1), 0.5 * std::tanh(1.0), 1e-15);
  EXPECT_NEAR(y2.value().at(0), 0.5 * std::tanh(0.5 * std::tanh(1.0)), 1e-15);
}

TEST(LstmCell, ValuesMatchThePrimitiveGraphInBothDtypes) {
  // H = 7 (shorter than one AVX-512 vector of floats) and 37 (two vectors and a remainder),
  // with a state and from the zero state: each loop of the dispatched kernel.
  for (DType dt : {DType::f64, DType::f32}) {
    for (std::int64_t n : {7, 37}) {
      for (bool with_state : {true, false}) {
        Tape tape;
        // Pre-activations up to +-6: sigmoid and tanh well into their tails.
        Var a = tape.constant(random_tensor({5, 4 * n}, dt, 1, -6.0, 6.0));
        Var s = with_state ? tape.constant(random_tensor({5, 2 * n}, dt, 2, -3.0, 3.0)) : Var();
        const Tensor fused = autodiff::lstm_cell(a, s).value();
        const Tensor ref = reference_cell(a, s).value();
        ASSERT_EQ(fused.shape(), ref.shape());
        ASSERT_EQ(fused.dtype(), dt);
        for (std::int64_t k = 0; k < fused.numel(); ++k) {
          EXPECT_NEAR(fused.at(k), ref.at(k), dt == DType::f64 ? 1e-15 : 1e-6)
              << dtype_name(dt) << " H " << n << (with_state ? " state" : " zero state") << " element " << k;
        }
      }
    }
  }
}

TEST(LstmCell, GradientAndHvpWithAState) {
  expect_same_derivatives(
      [](Tape& t, const std::vector<Var>& v, Cell cell) { return head(t, cell(v[0], v[1]), 3); },
      {random_tensor({3, 4 * 4}, DType::f64, 4, -2.0, 2.0), random_tensor({3, 2 * 4}, DType::f64, 5, -2.0, 2.0)}, 6);
}

TEST(LstmCell, GradientAndHvpFromTheZeroState) {
  expect_same_derivatives([](Tape& t, const std::vector<Var>& v, Cell cell) { return head(t, cell(v[0], Var{}), 7); },
                          {random_tensor({2, 4 * 3}, DType::f64, 8, -2.0, 2.0)}, 9);
}

TEST(LstmCell, ThreeStepsOfARecurrence) {
  // a_t = x_t + W h_{t-1} (x_t columns of v[0], W = v[1]), the state carried from step to
  // step: second-order terms cross the steps through c and through h.
  expect_same_derivatives(
      [](Tape& t, const std::vector<Var>& v, Cell cell) {
        const std::int64_t n = 2;
        Var state;
        for (std::int64_t s = 0; s < 3; ++s) {
          Var a = autodiff::slice_cols(v[0], s * 4 * n, (s + 1) * 4 * n);
          if (state.valid()) a = autodiff::add(a, autodiff::matmul(autodiff::slice_cols(state, 0, n), v[1]));
          state = cell(a, state);
        }
        return head(t, autodiff::slice_cols(state, 0, n), 10);
      },
      {random_tensor({2, 3 * 4 * 2}, DType::f64, 11, -1.5, 1.5), random_tensor({2, 4 * 2}, DType::f64, 12)}, 13);
}

TEST(LstmCell, SinksThatAccumulate) {
  // The gates and the state also feed other operations recorded after the cell (their
  // backward runs first: the cell adds into started buffers) and before it (the cell
  // writes first, the others add).
  expect_same_derivatives(
      [](Tape& t, const std::vector<Var>& v, Cell cell) {
        Var before = autodiff::sum(autodiff::mul(autodiff::tanh(v[0]), autodiff::tanh(v[0])));
        Var y = cell(v[0], v[1]);
        Var after = autodiff::add(autodiff::sum(autodiff::mul(v[1], v[1])), autodiff::sum(autodiff::exp(autodiff::scale(v[0], 0.3))));
        return autodiff::add(autodiff::add(head(t, y, 14), before), after);
      },
      {random_tensor({3, 4 * 2}, DType::f64, 15, -2.0, 2.0), random_tensor({3, 2 * 2}, DType::f64, 16, -2.0, 2.0)}, 17);
  // Another use of the state recorded before the cell only: the cell's sinks are fresh,
  // the other use adds to the state's after it.
  expect_same_derivatives(
      [](Tape& t, const std::vector<Var>& v, Cell cell) {
        Var other = autodiff::sum(autodiff::square(v[1]));
        Var y = cell(v[0], v[1]);
        return autodiff::add(head(t, y, 18), other);
      },
      {random_tensor({2, 4 * 3}, DType::f64, 19, -2.0, 2.0), random_tensor({2, 2 * 3}, DType::f64, 20, -2.0, 2.0)}, 21);
}

TEST(LstmCell, InputsWithoutGradientOrTangent) {
  // The state a constant: no tangent, no gradient for it.
  const Tensor fixed_state = random_tensor({3, 2 * 3}, DType::f64, 22, -2.0, 2.0);
  expect_same_derivatives(
      [fixed_state](Tape& t, const std::vector<Var>& v, Cell cell) { return head(t, cell(v[0], t.constant(fixed_state)), 23); },
      {random_tensor({3, 4 * 3}, DType::f64, 24, -2.0, 2.0)}, 25);
  // The gates a constant: only the state's gradient is written.
  const Tensor fixed_gates = random_tensor({3, 4 * 3}, DType::f64, 26, -2.0, 2.0);
  expect_same_derivatives(
      [fixed_gates](Tape& t, const std::vector<Var>& v, Cell cell) { return head(t, cell(t.constant(fixed_gates), v[0]), 27); },
      {random_tensor({3, 2 * 3}, DType::f64, 28, -2.0, 2.0)}, 29);
}

TEST(LstmCell, HPrevGetsAZeroGradient) {
  Tape tape;
  Var a = tape.variable(random_tensor({2, 8}, DType::f64, 30));
  Var s = tape.variable(random_tensor({2, 4}, DType::f64, 31));
  tape.backward(autodiff::sum(autodiff::lstm_cell(a, s)));
  const Tensor& gs = tape.grad(s);
  for (std::int64_t r = 0; r < 2; ++r) {
    EXPECT_EQ(gs.at(r * 4 + 0), 0.0);
    EXPECT_EQ(gs.at(r * 4 + 1), 0.0);
    EXPECT_NE(gs.at(r * 4 + 2), 0.0);
    EXPECT_NE(gs.at(r * 4 + 3), 0.0);
  }
}

TEST(LstmCell, Float32GradientAndHvpAgreeWithFloat64) {
  // A batch wide enough for the parallel rows (more than one chunk).
  const std::int64_t b = 64, n = 256;
  const Tensor a64 = random_tensor({b, 4 * n}, DType::f64, 32, -3.0, 3.0);
  const Tensor s64 = random_tensor({b, 2 * n}, DType::f64, 33, -2.0, 2.0);
  const Tensor va = random_tensor({b, 4 * n}, DType::f64, 34);
  const Tensor vs = random_tensor({b, 2 * n}, DType::f64, 35);
  Tensor out[2][3];
  for (int k = 0; k < 2; ++k) {
    const DType dt = k == 0 ? DType::f64 : DType::f32;
    Tape tape;
    Var a = tape.variable(a64.to(dt));
    Var s = tape.variable(s64.to(dt));
    tape.set_tangent(a, va.to(dt));
    tape.set_tangent(s, vs.to(dt));
    Var y = autodiff::lstm_cell(a, s);
    tape.hvp(head(tape, y, 36), Tensor(), Tensor());
    out[k][0] = y.value().to(DType::f64);
    out[k][1] = tape.grad(a).to(DType::f64);
    out[k][2] = tape.grad_tangent(a).to(DType::f64);
  }
  for (int q = 0; q < 3; ++q) expect_close(out[1][q], out[0][q], 1e-5, "float32 against float64, quantity " + std::to_string(q));
}

TEST(LstmCell, ShapeErrors) {
  Tape tape;
  Var a = tape.variable(Tensor::zeros({3, 8}, DType::f64));
  auto expect_error = [](auto&& f, const std::string& needle) { testing::expect_error<ShapeError>(f, {needle}); };
  expect_error([&] { autodiff::lstm_cell(tape.variable(Tensor::zeros({3, 6}, DType::f64))); },
               "lstm_cell: gates [3, 6] (expected [batch, 4 * hidden]");
  expect_error([&] { autodiff::lstm_cell(a, tape.variable(Tensor::zeros({3, 2}, DType::f64))); },
               "lstm_cell: state [3, 2] does not fit gates [3, 8] (expected [3, 4] = [h c])");
  expect_error([&] { autodiff::lstm_cell(a, tape.variable(Tensor::zeros({2, 4}, DType::f64))); }, "lstm_cell: state [2, 4]");
  expect_error([&] { autodiff::lstm_cell(a, tape.variable(Tensor::zeros({3, 4}, DType::f32))); }, "lstm_cell");
  expect_error([&] { autodiff::lstm_cell(tape.variable(Tensor::zeros({8}, DType::f64))); }, "lstm_cell: expects a 2-D input");
  expect_error([&] { autodiff::lstm_cell(tape.constant(Tensor::zeros({3, 8}, DType::i32))); }, "lstm_cell: needs f32 or f64");
  Tape other;
  expect_error([&] { autodiff::lstm_cell(a, other.variable(Tensor::zeros({3, 4}, DType::f64))); }, "different tapes");
}

}  // namespace
}  // namespace descent
