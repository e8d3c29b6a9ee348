#pragma once
// Recurrent networks trained by backprop through time (Goodfellow et al. 2016, chapter 10;
// section 8.2.5 on why long products of the recurrent Jacobian make gradients vanish or
// explode).
//
// Input: a batch of sequences x [B, T*D] (the layout of a data set's flat rows: for
// Fashion-MNIST read row by row, T = 28 rows of D = 28 pixels) or [B, T, D]. D is the
// module's input_size; T is read from the input (x.dim(1) / D, which must divide).
// Output: the last hidden state h_T [B, H] (what a classifier head needs), or with
// return_sequence every state h_1..h_T as [B, T*H] ([B, T, H] for a 3-D input), the
// layout a second recurrent layer takes with D = H. The initial state is zero.
//
// Cells (W_ih [G*H, D], W_hh [G*H, H] hold the G gates' blocks stacked in the order given;
// b [G*H]; sigma the logistic sigmoid; (.) the elementwise product):
//   RNN  (G = 1)  h_t = tanh(W_ih x_t + W_hh h_{t-1} + b)
//   LSTM (G = 4, gates i, f, g, o: PyTorch's order; Hochreiter & Schmidhuber 1997, with
//        the forget gate of Gers et al. 2000)
//        [a_i a_f a_g a_o] = W_ih x_t + W_hh h_{t-1} + b
//        i = sigma(a_i), f = sigma(a_f), g = tanh(a_g), o = sigma(a_o)
//        c_t = f (.) c_{t-1} + i (.) g,   h_t = o (.) tanh(c_t)
//   GRU  (G = 3, gates r, z, n: PyTorch's formulation, Cho et al. 2014 with the reset gate
//        applied after the recurrent product, which keeps one product per step)
//        [u_r u_z u_n] = W_ih x_t + b,  [v_r v_z v_n] = W_hh h_{t-1}
//        r = sigma(u_r + v_r), z = sigma(u_z + v_z), n = tanh(u_n + r (.) (v_n + b_hn))
//        h_t = (1 - z) (.) n + z (.) h_{t-1}
//
// Parameters, declared under the module's prefix (e.g. "layers.0"):
//   "<prefix>.weight_ih" [G*H, D]   fan_in D, fan_out G*H   (role weight)
//   "<prefix>.weight_hh" [G*H, H]   fan_in H, fan_out G*H   (role weight)
//   "<prefix>.bias"      [G*H]                              (role bias)
//   "<prefix>.bias_hn"   [H]        GRU only: the candidate's recurrent bias (role bias)
// One bias per gate: PyTorch's b_ih + b_hh is one parameter here (a sum of two biases
// only adds a flat direction to the loss); GRU's b_hn is not such a sum, so it stays.
// Weights and biases are the same tape leaves at every time step, so backward sums each
// weight's gradient over the steps: backprop through time needs no special code.
//
// Method: RNN and LSTM compute all gates of a step with one product,
// [x_t h_{t-1}] [W_ih W_hh]^T + b (the weights side by side once per forward), then take
// the gates as column slices. GRU keeps the two products apart: the input projection of
// all steps is one product, P = x W_ih^T + b over the B*T rows, then per step one product
// h_{t-1} W_hh^T. Every operation is a tape operation with its four rules, so gradients
// and exact Hessian-vector products go through the recurrence.
// Cost per step: 2 B (D + H) G*H flops forward, twice that backward, plus O(B G H)
// elementwise; the tape keeps O(T B G H) values.
//
// Diagnostics: recurrent_weight() is W_hh, whose spectrum decides whether a long product
// of Jacobians shrinks or grows (section 8.2.5). With record_states the module keeps the
// Var of every h_t of its last forward; after tape.backward, state_gradient_norms(tape)
// gives ||dL/dh_t|| for t = 1..T (the gradient reaching step t along the kept paths).
//
// Errors: ConfigError for sizes < 1 or truncate < 0 at construction; ShapeError when the
// input does not fit ([B, T*D] or [B, T, D] with D = input_size), when forward runs
// before declare, or when the input's dtype is not the arena's.
#include <cstdint>
#include <string>
#include <vector>

#include "descent/nn/module.hpp"

namespace descent::nn {

struct RecurrentOptions {
  // forward returns every state [B, T*H] (or [B, T, H]) instead of h_T [B, H].
  bool return_sequence = false;
  // Truncated backprop through time: with k >= 1 the state entering steps k, 2k, 3k, ...
  // passes through stop_gradient, so the forward values are unchanged and gradients
  // (and Hv) flow through at most k steps of the recurrence (Williams & Peng 1990, with
  // k1 = k2 = k). 0: full backprop through time. The chunks start at step 0, so a loss on
  // h_T alone reaches the last T mod k steps (k when k divides T). Hv then differentiates
  // the truncated gradient with the cut states held constant (their tangent is zero), as
  // double backward through a detached tensor does.
  std::int64_t truncate = 0;
  // Keep the Var of every h_t of the last forward (states(), state_gradient_norms()).
  bool record_states = false;
  // LSTM only: the value reset_forget_bias() writes into the forget gate's bias. 1 is the
  // common recommendation (Jozefowicz, Zaremba & Sutskever 2015, "An empirical
  // exploration of recurrent network architectures"; Gers et al. 2000): a cell starts by
  // remembering, so gradients survive many steps from the first update on.
  double forget_bias = 1.0;
};

enum class CellKind { rnn, lstm, gru };
const char* cell_name(CellKind kind);  // "RNN", "LSTM", "GRU"

class Recurrent : public Module {
 public:
  Recurrent(CellKind kind, std::int64_t input_size, std::int64_t hidden_size, const RecurrentOptions& options = {});

  void declare(ParameterArena& arena, const std::string& prefix) override;
  Var forward(Tape& tape, Var x) override;
  // e.g. "LSTM(28 -> 128, truncate 5, sequence)"
  std::string describe() const override;
  // [T D] -> [H], or [T H] with return_sequence; [T, D] -> [H] or [T, H].
  Shape output_shape(const Shape& input) const override;

  CellKind kind() const { return kind_; }
  std::int64_t input_size() const { return input_; }
  std::int64_t hidden_size() const { return hidden_; }
  int gates() const;  // G: 1, 4 or 3
  const RecurrentOptions& options() const { return options_; }

  ParamId weight_ih() const { return weight_ih_; }
  ParamId weight_hh() const { return weight_hh_; }
  ParamId bias() const { return bias_; }
  ParamId bias_hn() const { return bias_hn_; }  // GRU only (invalid otherwise)
  // W_hh [G*H, H]: the matrix of the recurrence (section 8.2.5).
  ParamId recurrent_weight() const { return weight_hh_; }

  // LSTM: sets the forget gate's block of the bias to options().forget_bias (call after
  // nn::initialize, which sets every bias to one constant). Other cells: nothing.
  void reset_forget_bias();

  // h_1..h_T of the last forward (record_states), valid until its tape is cleared.
  const std::vector<Var>& states() const { return states_; }
  // ||dL/dh_t|| for t = 1..T after tape.backward on the tape of the last forward
  // (record_states); empty without. Cost: one pass over the states' gradients.
  std::vector<double> state_gradient_norms(Tape& tape) const;
  // Turns record_states on or off for the forwards to come (the training monitors,
  // train/monitors.hpp, switch it on for their own forward only).
  void set_record_states(bool on) { options_.record_states = on; }

 private:
  CellKind kind_;
  std::int64_t input_, hidden_;
  RecurrentOptions options_;
  ParameterArena* arena_ = nullptr;
  ParamId weight_ih_, weight_hh_, bias_, bias_hn_;
  std::vector<Var> states_;
};

// y = tanh(W_ih x_t + W_hh h_{t-1} + b), the Elman network.
class RNN : public Recurrent {
 public:
  RNN(std::int64_t input_size, std::int64_t hidden_size, const RecurrentOptions& options = {})
      : Recurrent(CellKind::rnn, input_size, hidden_size, options) {}
};

class LSTM : public Recurrent {
 public:
  LSTM(std::int64_t input_size, std::int64_t hidden_size, const RecurrentOptions& options = {})
      : Recurrent(CellKind::lstm, input_size, hidden_size, options) {}
};

class GRU : public Recurrent {
 public:
  GRU(std::int64_t input_size, std::int64_t hidden_size, const RecurrentOptions& options = {})
      : Recurrent(CellKind::gru, input_size, hidden_size, options) {}
};

// Calls reset_forget_bias() on every recurrent module of `net` (after nn::initialize);
// returns how many LSTMs it set.
std::size_t reset_forget_biases(Sequential& net);

// The recurrent modules of `net`, in order (the monitors of section 8.2.5).
std::vector<Recurrent*> recurrent_layers(Sequential& net);
// The name of gate `g` of a cell: "" for RNN; "i", "f", "g", "o" for LSTM; "r", "z", "n" for GRU
// (the order of the blocks of W_hh).
const char* gate_name(CellKind kind, int g);

}  // namespace descent::nn
