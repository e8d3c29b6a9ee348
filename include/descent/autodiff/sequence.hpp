#pragma once
// Operations for sequences: column blocks of a matrix, one time step of a batch of
// sequences, concatenation, and a gradient barrier for truncated backprop through time.
// Like every tape operation each has its value, tangent, gradient and exact second-order
// (R-operator) rules, so Hessian-vector products work through recurrent networks
// (docs/autodiff.md). Inputs are 2-D f32 or f64 tensors; shapes are checked and a misfit
// throws ShapeError naming the operation and the shapes.
//
// The three copies (slice_cols, select_step, concat_cols) are linear in their inputs, so
// their R-rules have no second-order term: the tangent and R(gradient) pass through the
// same copy as the value and the gradient. A gradient written into a fresh buffer
// overwrites it (the part the copy does not cover is zeroed), later ones accumulate.
// Cost: one pass over the output (value, tangent) or over the input's buffer (gradient).
#include <cstdint>

#include "descent/autodiff/tape.hpp"

namespace descent::autodiff {

// Columns [begin, end) of x [R, C]: y[r, j] = x[r, begin + j], y [R, end - begin].
// Requires 0 <= begin < end <= C.
//   y' = x'[:, begin:end] ;  gx[:, begin:end] += gy ;  R(gx)[:, begin:end] += R(gy)
Var slice_cols(Var x, std::int64_t begin, std::int64_t end);

// Time step t of a batch of sequences stored example-major: x [B * steps, G] holds row
// b * steps + t for step t of example b (what linear gives on the rows of a [B, T*D]
// batch viewed as [B*T, D]). y [B, G], y[b, :] = x[b * steps + t, :].
// Requires steps >= 1, 0 <= t < steps and x.dim(0) divisible by steps.
//   y' = x'[rows of t] ;  gx[rows of t] += gy ;  R(gx)[rows of t] += R(gy)
Var select_step(Var x, std::int64_t t, std::int64_t steps);

// [a b]: a [R, Ca] and b [R, Cb] side by side, y [R, Ca + Cb] (same R, same dtype).
//   y' = [a' b'] ;  ga += gy[:, :Ca], gb += gy[:, Ca:] ;  the same for R(g)
Var concat_cols(Var a, Var b);

// One step of an LSTM cell, fused: gates [B, 4H] holds the pre-activations of the gates
// i, f, g, o side by side (that order), state [B, 2H] holds [h_{t-1} c_{t-1}]; an invalid
// (default) Var for state means the zero state. Returns the new state [h_t c_t] [B, 2H]:
//   i = sigma(a_i), f = sigma(a_f), g = tanh(a_g), o = sigma(a_o)
//   c_t = f (.) c_{t-1} + i (.) g,   h_t = o (.) tanh(c_t)
// h_{t-1} is not read (it went into the gates' product); its gradient is zero. The same
// values and derivatives as the graph of slices, sigmoids, tanhs, products and a sum, in
// one pass over the elements instead of about fifteen, keeping the activated gates and
// tanh(c_t) for the backward pass. Exact R-rules (second-order terms of sigma and tanh);
// tests/autodiff/sequence_ops_lstm_cell_test.cpp checks them against that graph and central differences.
// Requires gates [B, 4H] and state [B, 2H] of one dtype; throws ShapeError otherwise.
// Cost: O(B H) with five sigmoid/tanh per element (vectorized for float).
Var lstm_cell(Var gates, Var state = Var{});

// The value of x with the derivative blocked: y = x, but y is treated as a constant by
// both sweeps, so no gradient and no tangent pass through it (truncated backprop through
// time cuts the recurrence with it). The value is shared with x (no copy).
//   y = x ;  y' = 0 ;  gx += 0 ;  R(gx) += 0
// Finite differences see through it; the tape does not, by design.
Var stop_gradient(Var x);

}  // namespace descent::autodiff
