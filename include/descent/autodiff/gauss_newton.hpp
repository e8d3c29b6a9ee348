#pragma once
// Gauss-Newton products (Schraudolph 2002; Martens 2010, "Deep learning via Hessian-free
// optimization"): for a loss L(z(theta)) of the network outputs z,
//
//   H = J^T H_L J + sum_k (dL/dz_k) d^2 z_k / d theta^2,     J = dz/dtheta, H_L = d^2 L / dz^2
//   G = J^T H_L J                                             (the Gauss-Newton matrix)
//
// G drops the second term, the one that makes H indefinite: for a convex L (softmax
// cross-entropy, squared error) H_L is positive semi-definite, so G is too, and conjugate
// gradient on G never meets negative curvature. For a model linear in theta (softmax
// regression) the second term is zero and G = H.
//
// G v is computed as J v by one tangent-forward sweep (Tape::jvp, the R-operator), H_L (J v)
// in closed form for the loss at the outputs, and J^T (H_L J v) by one reverse sweep
// (Tape::vjp): about the work of one gradient, on a tape that already holds the forward
// pass. No second autodiff: the same tangent and backward rules as Tape::hvp.
#include "descent/autodiff/tape.hpp"

namespace descent::autodiff {

// The loss at the outputs, which fixes H_L.
enum class OutputLoss {
  softmax_cross_entropy,  // mean over the B rows of z [B, C] of lse(z_i) - z_i,y_i:  H_L = blockdiag((diag p_i - p_i p_i^T) / B)
  mean_squared_error,     // mean over all N elements of (z - t)^2:                    H_L = 2 I / N
};

// H_L u for softmax cross-entropy at logits z [B, C]: row i of the result is
// (p_i .* u_i - p_i (p_i . u_i)) / B, p_i = softmax(z_i). In z's dtype (double inside).
Tensor softmax_cross_entropy_hessian_product(const Tensor& logits, const Tensor& u);
// H_L u for the mean squared error over prediction's N elements: 2 u / N.
Tensor mean_squared_error_hessian_product(const Tensor& prediction, const Tensor& u);

// gv <- G v = J^T H_L J v (overwritten), J = d output / d theta over the parameters of the
// tape's arena; output is the tape's node the loss reads (the logits, the prediction).
// v and gv flat vectors of the arena's layout (as Tape::hvp). The tape's gradients are
// dropped (the reverse sweep reuses their slots).
void gauss_newton_product(Tape& tape, Var output, OutputLoss loss, const Tensor& v, const Tensor& gv);

}  // namespace descent::autodiff
