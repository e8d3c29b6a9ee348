#pragma once
// Differentiable operations. Each computes its value now and records a node on the tape
// of its inputs, with its gradient and its exact second-order (R-operator) rules.
// Shapes are checked; mismatches throw ShapeError naming the operation and the shapes.
// Inputs of one operation share a dtype (f32 or f64).
//
// Notation in the comments: y the output, x' a tangent (R-value), gy = dL/dy.
#include "descent/autodiff/tape.hpp"

namespace descent::autodiff {

// ---- linear algebra ----
// y[B, out] = x[B, in] w[out, in]^T + b[out]   (PyTorch's Linear layout). b may be empty.
Var linear(Var x, Var w, Var b = {});
// y[m, n] = a[m, k] b[k, n]
Var matmul(Var a, Var b);

// ---- elementwise (same shapes) ----
Var add(Var a, Var b);
Var sub(Var a, Var b);
Var mul(Var a, Var b);
Var scale(Var x, double c);       // c x
Var add_scalar(Var x, double c);  // x + c
Var mul_scalar(Var x, Var s);     // s x, s a one-element Var (a learned scalar)
inline Var operator+(Var a, Var b) { return add(a, b); }
inline Var operator-(Var a, Var b) { return sub(a, b); }
inline Var operator*(Var a, Var b) { return mul(a, b); }
inline Var operator*(double c, Var x) { return scale(x, c); }

// ---- elementwise functions ----
Var relu(Var x);     // max(0, x); derivative 0 at 0
Var tanh(Var x);
Var sigmoid(Var x);  // 1 / (1 + e^-x), computed without overflow
Var exp(Var x);
Var log(Var x);      // natural log; x <= 0 gives -inf / NaN (caught by divergence checks)
Var square(Var x);

// ---- rows of a 2-D tensor [B, C] ----
Var softmax(Var x);      // each row to a probability vector (max subtracted: no overflow)
Var log_softmax(Var x);  // x - log sum exp(x) per row, stable for large logits

// ---- reductions to one element (shape []) ----
Var sum(Var x);
Var mean(Var x);

// ---- shape ----
Var reshape(Var x, const Shape& shape);  // a view: no copy

// ---- losses (means over the batch, eq. 8.3 of the textbook) ----
// Negative log-likelihood of the correct class under softmax(logits), fused with the
// softmax and stable for large logits: mean_i [ log sum_c exp(z_ic) - z_i,y_i ].
// logits [B, C]; labels an i32 tensor [B] with values in [0, C) (else DataError).
Var softmax_cross_entropy(Var logits, const Tensor& labels);

}  // namespace descent::autodiff
