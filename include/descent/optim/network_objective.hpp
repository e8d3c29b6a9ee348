#pragma once
// A model's mean cross-entropy over a fixed set of examples as an Objective for the
// second-order methods (second_order.hpp): value and gradient over all n examples, exact
// Hessian-vector products (diag::HessianOperator: forward-over-reverse on recorded tapes).
// Full-batch, or one large minibatch held fixed: the batch size of section 8.1.3.
//
//   J(theta) = (1/n) sum_i L(f(x_i; theta), y_i)
//
// evaluate(theta, g) writes theta into the arena's parameters (rounded to the model's
// dtype), records the forward passes again and returns J and its gradient (in double);
// hessian_vector(theta, v, out) moves the parameters to theta first when they are elsewhere.
// Cost per evaluation: one forward and backward pass over the n examples; per product about
// 1.5 gradients' work (hessian.hpp).
//
// Curvature::gauss_newton makes hessian_vector return G v, the Gauss-Newton matrix
// G = J^T H_L J instead of H v (Martens 2010; autodiff/gauss_newton.hpp): positive
// semi-definite, so damped Newton's and Newton-CG's conjugate gradient never meets negative
// curvature; about one gradient's work per product.
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "descent/diag/hessian.hpp"
#include "descent/optim/second_order.hpp"

namespace descent::optim {

// What hessian_vector multiplies by.
enum class Curvature : std::uint8_t { hessian, gauss_newton };
Curvature parse_curvature(std::string_view name);  // ConfigError naming the value
std::string_view curvature_name(Curvature curvature);

class NetworkObjective final : public Objective {
 public:
  // A forward and backward pass already recorded over the same examples at the arena's
  // current parameters (the trainer's step: train/second_order_loop.cpp), in evaluation mode.
  struct RecordedPass {
    autodiff::Var logits, loss;  // on one tape that holds loss's gradient and stays until the parameters move
    double loss_value = 0.0;
    std::span<const double> gradient;  // [dim]
  };
  // The model, its arena and the examples must outlive the objective; x and labels as
  // diag::HessianOperator takes them (throws ShapeError for mismatches).
  NetworkObjective(nn::Module& model, ParameterArena& arena, const Tensor& x, const Tensor& labels,
                   const diag::HessianOptions& options = default_options());
  // diag::HessianOperator's defaults with chunks of 1,024 examples: an evaluation is a
  // gradient over every example, and larger chunks make larger, faster matrix products (the
  // MLP 784-64-10 on 10,000 examples: an evaluation about 10% faster than at 256).
  static diag::HessianOptions default_options() { return {.chunk = 1024}; }
  // The objective over x, labels from `pass` (diag::HessianOperator::adopt): no pass of its
  // own until the parameters move. Needs all the examples in one chunk (n <= options.chunk).
  NetworkObjective(nn::Module& model, ParameterArena& arena, const Tensor& x, const Tensor& labels,
                   const RecordedPass& pass, const diag::HessianOptions& options = default_options());
  void set_curvature(Curvature curvature) { curvature_ = curvature; }
  Curvature curvature() const { return curvature_; }
  std::int64_t dim() const override { return hessian_.dim(); }
  double evaluate(std::span<const double> theta, std::span<double> g) override;
  void hessian_vector(std::span<const double> theta, std::span<const double> v, std::span<double> out) override;
  bool has_hessian() const override { return true; }
  // The arena's parameters now, in double: the start point of a run.
  std::vector<double> parameters() const;
  std::int64_t evaluations() const { return evaluations_; }
  std::int64_t products() const { return hessian_.products(); }
  // Forward-and-backward passes over the examples this objective ran (its own recordings).
  std::int64_t passes() const { return hessian_.passes(); }

 private:
  void move_to(std::span<const double> theta);
  ParameterArena& arena_;
  diag::HessianOperator hessian_;
  std::vector<double> at_;  // the parameters the recorded tapes were taken at
  std::int64_t evaluations_ = 0;
  Curvature curvature_ = Curvature::hessian;
};

}  // namespace descent::optim
