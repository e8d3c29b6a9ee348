#include "descent/nn/recurrent.hpp"

#include <cmath>

#include "descent/autodiff/sequence.hpp"
#include "descent/tensor/kernels.hpp"

namespace descent::nn {
namespace {

using autodiff::add;
using autodiff::concat_cols;
using autodiff::linear;
using autodiff::mul;
using autodiff::sigmoid;
using autodiff::slice_cols;
using autodiff::sub;

// The parameters of one forward pass as tape Vars, and what is built from them once.
struct Leaves {
  Var w_ih, b;      // [G*H, D], [G*H]
  Var w_hh;         // [G*H, H]
  Var w_cat;        // RNN, LSTM: [W_ih W_hh] [G*H, D + H] (steps t >= 1)
  Var b_hh;         // GRU: [0 0 b_hn] [3H], the recurrent product's bias (steps t >= 1)
  Var bias_hn_row;  // GRU: b_hn as the rows of [B, H] (step 0, where h_0 = 0)
  std::int64_t hidden = 0;
};

// The pre-activations of the gates at step t: [x_t h_{t-1}] [W_ih W_hh]^T + b, one product
// (x_t W_ih^T + b at t = 0, where h_0 = 0).
Var gate_inputs(const Leaves& l, Var x_t, Var h) {
  return h.valid() ? linear(concat_cols(x_t, h), l.w_cat, l.b) : linear(x_t, l.w_ih, l.b);
}

// LSTM: the state [h_t c_t] from the gates' pre-activations and [h_{t-1} c_{t-1}], one
// fused operation (autodiff::lstm_cell: c_t = f (.) c_{t-1} + i (.) g, h_t = o (.) tanh(c_t),
// gates in the order i, f, g, o); h_t is its first half.
Var step_lstm(const Leaves& l, Var a, Var& state) {
  state = autodiff::lstm_cell(a, state);
  return slice_cols(state, 0, l.hidden);
}

// r, z = sigma(u + v), n = tanh(u_n + r (.) (v_n + b_hn)), h_t = n + z (.) (h_{t-1} - n),
// u = p_t = W_ih x_t + b, v = W_hh h_{t-1}; gates in the order r, z, n.
Var step_gru(const Leaves& l, Var p, Var h) {
  const std::int64_t n = l.hidden;
  Var rz, vn;
  if (h.valid()) {
    Var v = linear(h, l.w_hh, l.b_hh);
    rz = sigmoid(add(slice_cols(p, 0, 2 * n), slice_cols(v, 0, 2 * n)));
    vn = slice_cols(v, 2 * n, 3 * n);
  } else {
    rz = sigmoid(slice_cols(p, 0, 2 * n));
    vn = l.bias_hn_row;
  }
  Var r = slice_cols(rz, 0, n);
  Var z = slice_cols(rz, n, 2 * n);
  Var cand = autodiff::tanh(add(slice_cols(p, 2 * n, 3 * n), mul(r, vn)));
  return h.valid() ? add(cand, mul(z, sub(h, cand))) : sub(cand, mul(z, cand));
}

// [v_0 v_1 ... v_{n-1}] by a balanced tree of pairwise concatenations: each element is
// copied about log2(n) times instead of n times by a chain.
Var concat_all(std::vector<Var> v) {
  while (v.size() > 1) {
    std::vector<Var> next;
    for (std::size_t i = 0; i < v.size(); i += 2) next.push_back(i + 1 < v.size() ? concat_cols(v[i], v[i + 1]) : v[i]);
    v = std::move(next);
  }
  return v.front();
}

}  // namespace

const char* cell_name(CellKind kind) {
  switch (kind) {
    case CellKind::rnn: return "RNN";
    case CellKind::lstm: return "LSTM";
    case CellKind::gru: return "GRU";
  }
  return "?";
}

Recurrent::Recurrent(CellKind kind, std::int64_t input_size, std::int64_t hidden_size, const RecurrentOptions& options)
    : kind_(kind), input_(input_size), hidden_(hidden_size), options_(options) {
  if (input_ <= 0 || hidden_ <= 0) {
    throw ConfigError(std::string(cell_name(kind_)) + ": input_size and hidden_size must be positive, got " +
                      std::to_string(input_) + " and " + std::to_string(hidden_));
  }
  if (options_.truncate < 0) {
    throw ConfigError(std::string(cell_name(kind_)) +
                      ": truncate must be >= 0 (0: full backprop through time, k: at most k steps), got " +
                      std::to_string(options_.truncate));
  }
}

int Recurrent::gates() const {
  switch (kind_) {
    case CellKind::rnn: return 1;
    case CellKind::lstm: return 4;
    case CellKind::gru: return 3;
  }
  return 1;
}

void Recurrent::declare(ParameterArena& arena, const std::string& prefix) {
  arena_ = &arena;
  const std::int64_t g = gates() * hidden_;
  weight_ih_ = arena.add(prefix + ".weight_ih", Shape{g, input_}, {.role = ParamRole::weight, .fan_in = input_, .fan_out = g});
  weight_hh_ = arena.add(prefix + ".weight_hh", Shape{g, hidden_}, {.role = ParamRole::weight, .fan_in = hidden_, .fan_out = g});
  bias_ = arena.add(prefix + ".bias", Shape{g}, {.role = ParamRole::bias, .fan_in = input_, .fan_out = g});
  if (kind_ == CellKind::gru) {
    bias_hn_ = arena.add(prefix + ".bias_hn", Shape{hidden_}, {.role = ParamRole::bias, .fan_in = hidden_, .fan_out = hidden_});
  }
}

Var Recurrent::forward(Tape& tape, Var x) {
  const std::string name = cell_name(kind_);
  if (arena_ == nullptr) throw ShapeError(name + ": parameters were never declared (add the module to a Sequential)");
  const Tensor& xv = x.value();
  const std::string expected = " (expected [batch, steps * " + std::to_string(input_) + "] or [batch, steps, " +
                               std::to_string(input_) + "])";
  std::int64_t batch = 0, steps = 0;
  if (xv.ndim() == 2 && xv.dim(1) > 0 && xv.dim(1) % input_ == 0) {
    batch = xv.dim(0);
    steps = xv.dim(1) / input_;
  } else if (xv.ndim() == 3 && xv.dim(1) > 0 && xv.dim(2) == input_) {
    batch = xv.dim(0);
    steps = xv.dim(1);
  } else {
    throw ShapeError(name + ": input " + xv.shape().str() + " does not fit input_size " + std::to_string(input_) + expected);
  }
  if (xv.dtype() != arena_->dtype()) {
    throw ShapeError(name + ": input is " + dtype_name(xv.dtype()) + ", the parameters are " + dtype_name(arena_->dtype()));
  }

  const std::int64_t n = hidden_;
  Leaves l;
  l.hidden = n;
  l.w_ih = tape.param(*arena_, weight_ih_);
  l.w_hh = tape.param(*arena_, weight_hh_);
  l.b = tape.param(*arena_, bias_);
  Var flat = xv.ndim() == 3 ? autodiff::reshape(x, Shape{batch, steps * input_}) : x;
  Var p;
  if (kind_ != CellKind::gru) {
    if (steps > 1) l.w_cat = concat_cols(l.w_ih, l.w_hh);
  } else {
    // GRU keeps W_ih x_t and W_hh h_{t-1} apart (the reset gate scales only the second):
    // the input projection of every step at once, rows b*T + t of P = X W_ih^T + b.
    p = linear(autodiff::reshape(x, Shape{batch * steps, input_}), l.w_ih, l.b);
    Var b_hn = tape.param(*arena_, bias_hn_);
    // b_hn as every row of [B, H]: the product of a column of ones with b_hn^T.
    Var ones = tape.constant(Tensor::full(Shape{batch, 1}, xv.dtype(), 1.0));
    l.bias_hn_row = linear(ones, autodiff::reshape(b_hn, Shape{n, 1}));
    if (steps > 1) {
      Var zeros = tape.constant(Tensor::zeros(Shape{1, 2 * n}, xv.dtype()));
      l.b_hh = autodiff::reshape(concat_cols(zeros, autodiff::reshape(b_hn, Shape{1, n})), Shape{3 * n});
    }
  }

  states_.clear();
  std::vector<Var> all;
  Var h, state;  // state: LSTM's [h c]
  const std::int64_t k = options_.truncate;
  for (std::int64_t t = 0; t < steps; ++t) {
    if (t > 0 && k > 0 && t % k == 0) {
      h = autodiff::stop_gradient(h);
      if (state.valid()) state = autodiff::stop_gradient(state);
    }
    if (kind_ == CellKind::gru) {
      h = step_gru(l, autodiff::select_step(p, t, steps), h);
    } else {
      Var a = gate_inputs(l, slice_cols(flat, t * input_, (t + 1) * input_), h);
      h = kind_ == CellKind::rnn ? autodiff::tanh(a) : step_lstm(l, a, state);
    }
    if (options_.record_states) states_.push_back(h);
    if (options_.return_sequence) all.push_back(h);
  }
  if (!options_.return_sequence) return h;
  Var seq = concat_all(std::move(all));
  return xv.ndim() == 3 ? autodiff::reshape(seq, Shape{batch, steps, n}) : seq;
}

Shape Recurrent::output_shape(const Shape& input) const {
  // As forward: [T D] (flat) or [T, D] per example.
  if (input.ndim() == 1 && input[0] > 0 && input[0] % input_ == 0) {
    const std::int64_t steps = input[0] / input_;
    return options_.return_sequence ? Shape{steps * hidden_} : Shape{hidden_};
  }
  if (input.ndim() == 2 && input[0] > 0 && input[1] == input_)
    return options_.return_sequence ? Shape{input[0], hidden_} : Shape{hidden_};
  throw ShapeError(describe() + ": input " + input.str() + " per example does not fit input_size " +
                   std::to_string(input_) + " (expected [steps * " + std::to_string(input_) + "] or [steps, " +
                   std::to_string(input_) + "])");
}

std::string Recurrent::describe() const {
  std::string s = std::string(cell_name(kind_)) + "(" + std::to_string(input_) + " -> " + std::to_string(hidden_);
  if (options_.truncate > 0) s += ", truncate " + std::to_string(options_.truncate);
  if (options_.return_sequence) s += ", sequence";
  return s + ")";
}

void Recurrent::reset_forget_bias() {
  if (kind_ != CellKind::lstm) return;
  if (arena_ == nullptr) throw ShapeError("LSTM: reset_forget_bias before the parameters were declared");
  arena_->value(bias_).view(hidden_, Shape{hidden_}).fill(options_.forget_bias);
}

std::vector<double> Recurrent::state_gradient_norms(Tape& tape) const {
  std::vector<double> norms;
  norms.reserve(states_.size());
  for (Var h : states_) {
    if (h.tape != &tape || static_cast<std::size_t>(h.id) >= tape.size()) {
      throw ShapeError(std::string(cell_name(kind_)) + ": state_gradient_norms on another tape than the last forward's");
    }
    norms.push_back(std::sqrt(kernels::sum_squares(tape.grad(h))));
  }
  return norms;
}

std::size_t reset_forget_biases(Sequential& net) {
  std::size_t count = 0;
  for (std::size_t i = 0; i < net.size(); ++i) {
    if (auto* r = dynamic_cast<Recurrent*>(&net.at(i)); r != nullptr && r->kind() == CellKind::lstm) {
      r->reset_forget_bias();
      ++count;
    }
  }
  return count;
}

std::vector<Recurrent*> recurrent_layers(Sequential& net) {
  std::vector<Recurrent*> out;
  for (std::size_t i = 0; i < net.size(); ++i) {
    if (auto* r = dynamic_cast<Recurrent*>(&net.at(i)); r != nullptr) out.push_back(r);
  }
  return out;
}

const char* gate_name(CellKind kind, int g) {
  static const char* const kLstm[] = {"i", "f", "g", "o"};
  static const char* const kGru[] = {"r", "z", "n"};
  switch (kind) {
    case CellKind::lstm: return g >= 0 && g < 4 ? kLstm[g] : "?";
    case CellKind::gru: return g >= 0 && g < 3 ? kGru[g] : "?";
    case CellKind::rnn: break;
  }
  return "";
}

}  // namespace descent::nn
