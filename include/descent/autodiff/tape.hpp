#pragma once
// Reverse-mode automatic differentiation over a recorded tape, with exact
// Hessian-vector products by forward-over-reverse (Pearlmutter 1994, the R-operator).
//
// Ordinary C++ code builds the tape: every operation (ops.hpp) computes its value at
// once and appends a node. Nothing is a fixed layer list, so a weight used at every time
// step of a recurrent net is one leaf whose gradient collects every use.
//
// Every node knows four things about its operation y = f(x):
//   value             y = f(x)                              (computed when recorded)
//   tangent_forward   y' = J x'                             (R-forward: directional derivative)
//   backward          gx += J^T gy                          (the gradient)
//   tangent_backward  R(gx) += J^T R(gy) + (d/dt J^T)[x'] gy (the derivative of the gradient along v)
// A gradient is one backward sweep. Hv is one tangent-forward sweep with the parameter
// tangents set to v, then one backward sweep that carries (g, R(g)) together; R(g) of
// the parameters is exactly H v. No finite differences anywhere. docs/autodiff.md says
// why this was chosen over double backward.
//
// An undefined tangent or gradient means zero: terms with it are skipped, so a data
// input costs nothing in either sweep.
//
// Cost: backward ~ 2x the forward's flops. On the MLP 784-256-256-10 at batch 1000 one
// hvp (its forward pass included) has 2.34 gradients of multiply-adds with the gradient
// returned too, 1.89 without it (bench/hvp_cost, docs/performance.md for the times).
// Not thread-safe: one tape per thread.
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "descent/tensor/arena.hpp"
#include "descent/tensor/tensor.hpp"

namespace descent::autodiff {

class Tape;

// A handle to a node of a tape.
struct Var {
  Tape* tape = nullptr;
  std::int32_t id = -1;
  bool valid() const { return tape != nullptr && id >= 0; }
  const Tensor& value() const;
  const Shape& shape() const { return value().shape(); }
  DType dtype() const { return value().dtype(); }
};

class Node {
 public:
  virtual ~Node() = default;
  virtual const char* name() const = 0;
  virtual void tangent_forward(Tape&) {}
  virtual void backward(Tape&) {}
  virtual void tangent_backward(Tape&) {}

  std::int32_t input[3] = {-1, -1, -1};
  int num_inputs = 0;
  Tensor value;
  Tensor grad;           // d loss / d value
  Tensor tangent;        // R(value): the directional derivative along v
  Tensor grad_tangent;   // R(grad)
  bool requires_grad = false;
  // A parameter leaf whose grad / grad_tangent are views into sinks: always accumulate (in
  // backward_overwrite the first contribution binds the sink with beta 0).
  bool external_grad = false;
  // Leaves that are parameters: their slice of the flat vectors.
  ParamId param{};
};

class Tape {
 public:
  Tape() = default;
  Tape(const Tape&) = delete;
  Tape& operator=(const Tape&) = delete;

  // Leaves.
  Var constant(const Tensor& value);  // data: no gradient, no tangent
  Var variable(const Tensor& value);  // a free leaf: grad(v) after backward, set_tangent for hvp
  // A parameter of `arena`: its value is the arena's view (no copy); backward accumulates
  // its gradient into the arena's gradient buffer (or the sink given to backward/hvp).
  // Recording the same parameter twice returns the same leaf.
  Var param(ParameterArena& arena, ParamId id);

  // Appends a node made by an operation (ops.cpp); its value must be set.
  Var record(std::unique_ptr<Node> node);

  Node& node(std::int32_t id) { return *nodes_[static_cast<std::size_t>(id)]; }
  Node& node(Var v) { return node(v.id); }
  std::size_t size() const { return nodes_.size(); }

  // Reverse sweep from a one-element `loss`, seeded with d loss / d loss = 1.
  // Parameter gradients ACCUMULATE into `param_grads` (default: the arena's gradient
  // buffer, so call arena.zero_grad() between steps); variables' gradients are
  // recomputed (grad(v)). May be called again on the same tape.
  void backward(Var loss);
  void backward(Var loss, const Tensor& param_grads);
  // backward(loss, param_grads) into a gradient that OVERWRITES param_grads instead of adding
  // to it, with no pass that zeroes it first (train::compute_gradient, train::train_step): a
  // parameter's first contribution writes its slice (beta 0), later ones add to it, and a
  // slice nothing writes (a parameter the loss does not reach, one recorded after the loss,
  // one of the arena never recorded on this tape) is set to zeros, the first two when the
  // sweep reaches their leaf, before param_ready reports them. The result is what zeroing
  // param_grads and calling backward(loss, param_grads) gives: the same operations on the same
  // values, except that a sum that starts from a zero (+0 + x) is x itself (an exact zero
  // keeps its sign: -0 where the accumulating sweep has +0). param_grads: the arena's layout
  // (ShapeError otherwise); without an arena, backward(loss, param_grads).
  void backward_overwrite(Var loss, const Tensor& param_grads);
  // Called during every reverse sweep the moment a parameter's gradient is final: the sweep
  // has reached its leaf, so every node that reads it is done (the last layers come first).
  // For starting the all-reduce of those gradients while the sweep goes on
  // (train/distributed.cpp). Parameters the loss does not reach are reported too (zero
  // gradient); parameters never recorded on this tape are not. Empty (the default): none.
  void set_param_ready(std::function<void(ParamId)> callback) { param_ready_ = std::move(callback); }
  const std::function<void(ParamId)>& param_ready() const { return param_ready_; }

  // Exact Hessian-vector product of `loss` with respect to the parameters of `arena`:
  // hv <- H v and param_grads <- g, both overwritten (not accumulated).
  // The contract, for a tape that recorded parameters of an arena:
  //   - v, hv (and param_grads when given) are flat vectors of the arena's layout:
  //     arena.size() elements of arena.dtype(); anything else, an undefined v or hv
  //     included, throws ShapeError naming the argument.
  //   - param_grads may be an undefined Tensor: Hv alone. The products that only give the
  //     parameter gradients are then skipped (a linear layer's gy^T x and sum_rows(gy)):
  //     on the MLP 784-256-256-10, 1.89 gradients of multiply-adds instead of 2.34
  //     (docs/performance.md). The gradients of the other nodes are still computed (R(g)
  //     needs them), so hvp_at_gradient may follow as after any hvp.
  //   - v may share memory with hv or param_grads: it is read as it was on entry (copied
  //     first), so hvp(loss, w, w) overwrites w with Hw, and
  //     hvp(loss, arena.grads(), hg, arena.grads()) gives hg = H g for the g in
  //     arena.grads() on entry (and leaves the fresh g there).
  //   - hv and param_grads must not share memory with each other or with arena.values():
  //     ShapeError.
  // Variables take their tangents from set_tangent and give R(grad) by grad_tangent(v).
  // The forward values are reused: many products at the same point (Lanczos) cost one
  // tangent-forward and one backward sweep each, never a new forward pass.
  void hvp(Var loss, const Tensor& v, const Tensor& hv, const Tensor& param_grads = Tensor());

  // hv <- H v like hvp(), reusing the gradient of the last backward()/hvp() of this `loss`
  // on this tape: one tangent-forward sweep and one sweep of the tangent-backward rules
  // only, the gradient terms (gy of every node) read from that sweep, not recomputed
  // (5 of the 19 matrix products of an MLP's hvp). For many products at one point
  // (Lanczos, CG, the curvature monitor after the step's gradient). The caller keeps the
  // parameter values as they were at that sweep (the tape cannot see them change);
  // without such a sweep since the last record/clear (or for another loss) it throws
  // Error. The parameter gradient sink of that sweep is not touched. v and hv as in
  // hvp(); v may share memory with hv.
  void hvp_at_gradient(Var loss, const Tensor& v, const Tensor& hv);
  // v' H v alone (a scalar), under the same conditions as hvp_at_gradient: one
  // tangent-forward sweep, then sum over the nodes of <gy, S> with S the node's own second
  // derivative along the tangents (the second-order forward term: 2 x' w'^T for linear, f''(x)
  // x'^2 for tanh, z'^T (diag p - p p^T) z' / B for softmax cross-entropy, 0 for relu and
  // the linear operations), by the adjoint identity d^2 L(theta + t v)/dt^2 = sum_n <gy_n,
  // S_n>. No reverse sweep: about half of hvp_at_gradient's work on an MLP. Returns nullopt
  // when a node on the gradient's path has no such rule (use hvp_at_gradient and a dot).
  std::optional<double> vhv_at_gradient(Var loss, const Tensor& v);
  // True when hvp_at_gradient(loss, ...) may be called.
  bool has_gradient(Var loss) const { return loss.tape == this && gradient_of_ == loss.id; }

  // Jacobian-vector product (the R-operator of Pearlmutter 1994 alone): the tangent of
  // `output` when the parameters move along v, J v with J = d output / d theta. One
  // tangent-forward sweep over the nodes up to `output`; the gradients already on the tape
  // are kept (hvp_at_gradient stays valid). v as in hvp(). Returns a new tensor of
  // output's shape (zeros when output does not depend on the parameters).
  Tensor jvp(Var output, const Tensor& v);
  // Vector-Jacobian product: param_grads += J^T seed, J = d output / d theta, seed of
  // output's shape and dtype. One reverse sweep from `output` seeded with `seed` (the
  // gradients of an earlier backward() are dropped: has_gradient() is false afterwards).
  // With jvp, the Gauss-Newton product J^T H_L J v (autodiff/gauss_newton.hpp).
  void vjp(Var output, const Tensor& seed, const Tensor& param_grads);

  // For variables (tests, diagnostics on plain tensors).
  void set_tangent(Var v, const Tensor& tangent);
  const Tensor& grad(Var v);          // zeros if the loss does not depend on v
  const Tensor& grad_tangent(Var v);  // R(grad), zeros when not computed

  // Drops every node (their tensors return to the storage cache).
  void clear();

  // ---- for operations (ops.cpp) ----
  bool requires_grad(std::int32_t id) { return node(id).requires_grad; }
  // Whether this sweep wants node id's gradient: requires_grad, except a parameter leaf's
  // during an hvp() given no param_grads (Hv alone). An operation may skip the products
  // that only feed such a gradient; one that computes it anyway gets a scratch sink.
  bool wants_grad(std::int32_t id) {
    const Node& n = node(id);
    return n.requires_grad && !(skip_param_grads_ && n.num_inputs == 0 && n.param.valid());
  }
  bool has_tangent(std::int32_t id) { return node(id).tangent.defined(); }
  // The buffer that receives node id's gradient contribution, and the beta to use with
  // it: 0 (fresh buffer: overwrite) or 1 (accumulate).
  Tensor grad_sink(std::int32_t id, double& beta);
  Tensor grad_tangent_sink(std::int32_t id, double& beta);

 private:
  void reset_derivatives();
  void bind_param_sinks(const Tensor& grads, const Tensor* tangents, const Tensor* hv);
  void sweep(Var loss, bool with_tangents);
  void tangent_forward_sweep();
  void seed_tangents_at_gradient(Var loss, const Tensor& v, const Tensor* hv, const char* what);

  std::vector<std::unique_ptr<Node>> nodes_;
  std::vector<std::int32_t> params_;  // node ids of parameter leaves
  ParameterArena* arena_ = nullptr;
  std::int32_t gradient_of_ = -1;  // the loss whose gradients the nodes hold (-1: none)
  bool skip_param_grads_ = false;  // inside hvp() without param_grads (wants_grad)
  std::function<void(ParamId)> param_ready_;
};

}  // namespace descent::autodiff
