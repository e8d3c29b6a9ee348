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
#include <cstdint>
#include <span>
#include <vector>

#include "descent/diag/hessian.hpp"
#include "descent/optim/second_order.hpp"

namespace descent::optim {

class NetworkObjective final : public Objective {
 public:
  // The model, its arena and the examples must outlive the objective; x and labels as
  // diag::HessianOperator takes them (throws ShapeError for mismatches).
  NetworkObjective(nn::Module& model, ParameterArena& arena, const Tensor& x, const Tensor& labels,
                   const diag::HessianOptions& options = default_options());
  // diag::HessianOperator's defaults with chunks of 1,024 examples: an evaluation is a
  // gradient over every example, and larger chunks make larger, faster matrix products (the
  // MLP 784-64-10 on 10,000 examples: an evaluation about 10% faster than at 256).
  static diag::HessianOptions default_options() { return {.chunk = 1024}; }
  std::int64_t dim() const override { return hessian_.dim(); }
  double evaluate(std::span<const double> theta, std::span<double> g) override;
  void hessian_vector(std::span<const double> theta, std::span<const double> v, std::span<double> out) override;
  bool has_hessian() const override { return true; }
  // The arena's parameters now, in double: the start point of a run.
  std::vector<double> parameters() const;
  std::int64_t evaluations() const { return evaluations_; }
  std::int64_t products() const { return hessian_.products(); }

 private:
  void move_to(std::span<const double> theta);
  ParameterArena& arena_;
  diag::HessianOperator hessian_;
  std::vector<double> at_;  // the parameters the recorded tapes were taken at
  std::int64_t evaluations_ = 0;
};

}  // namespace descent::optim
