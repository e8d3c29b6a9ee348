#pragma once
// The Hessian of the mean loss over a fixed set of examples, as an operator v -> H v.
//
//   J(theta) = (1/n) sum_{i<n} L(f(x_i; theta), y_i),   L = cross-entropy (no regularization)
//   H = d^2 J / d theta^2                                 (dim x dim, dim = number of parameters)
//
// The object of every curvature diagnostic of chapter 8.2 (ill-conditioning 8.2.1, minima
// and saddles 8.2.2-8.2.3). Each product is exact to float rounding: the tape's
// forward-over-reverse Hv (docs/autodiff.md), never finite differences.
//
// The examples are cut into chunks of `chunk` examples (boundaries fixed by n and chunk
// alone). Each chunk's forward pass and gradient sweep are recorded once, when the operator
// is built (refresh()), and kept: every product then costs one tangent-forward sweep and
// one sweep of the tangent-backward rules per chunk (Tape::hvp_at_gradient: the gradient
// terms are read, not recomputed; 14 of the 19 matrix products of an MLP's full hvp),
// never a new forward pass. Chunks run in parallel, one tape
// per thread, each into its own buffer; the buffers are summed in chunk order, weighted by
// n_c / n, in double precision. So every figure is bit-identical with 1 and with N threads.
// (With one thread, one chunk, or a small problem, below HessianOptions::parallel_threshold,
// the chunks run one after another; each kernel's own parallel loops are thread-count
// independent, parallel.hpp. refresh() then runs each chunk's backward sweep right after
// its forward pass, while the chunk is still in cache.)
//
// The model is recorded in evaluation mode (batch normalization uses its running
// statistics, dropout is off), so J is one fixed function of theta and the sum over chunks
// is exactly the loss over all n examples; the model's mode is restored afterwards.
// The recorded tapes read the arena's parameters in place: after the parameters change,
// call refresh() (the gradient and loss were taken at the old parameters).
//
// Vectors are double precision whatever the model's dtype: a float32 model gets v rounded
// to float32, computes each chunk's H v in float32 and the sum is taken in double.
// Memory: the recorded forward passes of all n examples (activations, and after the first
// product their tangents and gradients), plus one parameter-sized buffer per chunk that
// runs at the same time (at most `parallel_chunks`).
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "descent/autodiff/tape.hpp"
#include "descent/nn/module.hpp"
#include "descent/tensor/arena.hpp"
#include "descent/tensor/tensor.hpp"

namespace descent::diag {

struct HessianOptions {
  std::int64_t chunk = 256;          // examples per recorded tape
  std::int64_t parallel_chunks = 16;  // chunks whose buffers are alive at once (memory bound)
  // Chunks run in parallel only when examples per chunk x parameters reaches this: below it
  // a parallel region costs more than the work (and far more on a loaded machine).
  std::int64_t parallel_threshold = std::int64_t{1} << 20;
  // false: the constructor records nothing; adopt() (or refresh()) must come before the
  // first product, loss() and gradient().
  bool record = true;
};

class HessianOperator {
 public:
  // x [n, ...] (any shape the model takes, examples along dimension 0) of the arena's
  // dtype; labels i32 [n]. Throws ShapeError for mismatched inputs or an empty set.
  HessianOperator(nn::Module& model, ParameterArena& arena, const Tensor& x, const Tensor& labels,
                  const HessianOptions& options = {});
  ~HessianOperator();
  HessianOperator(const HessianOperator&) = delete;
  HessianOperator& operator=(const HessianOperator&) = delete;

  std::int64_t dim() const { return dim_; }          // number of parameters
  DType dtype() const;                                // the model's
  std::int64_t examples() const { return examples_; }  // n
  std::int64_t chunks() const;

  // J(theta) and its gradient over the n examples, at the parameters of the last
  // construction or refresh().
  double loss() const { return loss_; }
  const std::vector<double>& gradient() const { return gradient_; }

  // hv <- H v (both of length dim(); they must not overlap).
  void apply(std::span<const double> v, std::span<double> hv);
  std::vector<double> apply(std::span<const double> v);
  // gv <- G v, the Gauss-Newton matrix G = J^T H_L J of the mean cross-entropy (J: the
  // logits' Jacobian, H_L the cross-entropy's Hessian in the logits; autodiff/gauss_newton.hpp)
  // at the same parameters as apply(). Positive semi-definite; G = H for a model linear in
  // theta. About one gradient's work per product (a tangent-forward and a reverse sweep).
  // Counted in products().
  void apply_gauss_newton(std::span<const double> v, std::span<double> gv);
  // Number of products computed so far (each about 1.5 gradients' work over n examples).
  std::int64_t products() const { return products_; }
  // Forward-and-backward passes over the n examples recorded so far (refresh() calls; the
  // construction's included, adopt() not).
  std::int64_t passes() const { return passes_; }

  // Records the forward passes again at the arena's current parameters (loss, gradient).
  void refresh();
  // Takes a forward and backward pass recorded elsewhere instead of recording one: for an
  // operator whose examples form one chunk, `logits` and `loss` (one tape, holding the
  // gradient of `loss` from its backward sweep) computed on the same examples at the arena's
  // current parameters in evaluation mode, with loss_value and gradient their figures. The
  // tape must stay as it is until the next refresh(); products then run on it. The trainer's
  // step gives its pass this way to the second-order methods (train/second_order_loop.cpp).
  void adopt(autodiff::Var logits, autodiff::Var loss, double loss_value, std::span<const double> gradient);

 private:
  struct Chunk;
  // Records chunk c's forward pass and loss on its tape (cleared first).
  void record(Chunk& c);
  // n_c / n: chunk c's weight in every sum.
  double weight(const Chunk& c) const;
  // Whether the chunks run one after another (one thread, one chunk, or a small problem).
  bool sequential() const;
  // Runs f(chunk index, its buffer in the model dtype) for every chunk, in parallel
  // groups, then adds weight_c * buffer_c into `out` in chunk order.
  template <class F>
  void for_chunks_summed(F&& f, std::span<double> out);

  nn::Module& model_;
  ParameterArena& arena_;
  Tensor x_, labels_;
  HessianOptions options_;
  std::int64_t dim_ = 0;
  std::int64_t examples_ = 0;
  std::vector<std::unique_ptr<Chunk>> chunks_;
  double loss_ = 0.0;
  std::vector<double> gradient_;
  std::int64_t products_ = 0;
  std::int64_t passes_ = 0;
};

// The dense Hessian [dim x dim], row-major, column j = H e_j (dim products): for small
// models and for tests. Not symmetrized: exact products are symmetric up to rounding, and
// the tests check that.
std::vector<double> dense_hessian(HessianOperator& hessian);

}  // namespace descent::diag
