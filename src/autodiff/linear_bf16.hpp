#pragma once
// The bf16 products of a linear node (y = x w^T + b) under mixed precision
// (descent/tensor/precision.hpp): the forward converts x and w to bf16 once and keeps them
// for the backward, which converts the output gradient once for both of its products.
// Accumulation and every result stay float32. The bias is added by the forward product
// itself (no pass writing the bias rows first); the weight gradient reads the bf16 output
// gradient transposed through strides (no transposed copy). Buffers come from the tensors'
// caching allocator, uninitialized: after the first step a step allocates nothing new.
#include <cstdint>

#include "descent/autodiff/tape.hpp"
#include "descent/tensor/tensor.hpp"
#include "../tensor/matmul_bf16.hpp"

namespace descent::autodiff {

class LinearBf16 {
 public:
  // Whether the node's products run in bf16: mixed precision on and float32 operands.
  static bool wanted(const Tensor& x);
  bool on() const { return on_; }

  // y <- x w^T + b (b undefined: no bias); keeps bf16(x) and bf16(w). x16: bf16(x) made
  // already (the output of a fused linear + ReLU), shared instead of converting x again.
  void forward(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& y,
               const kernels::bf16::Buffer* x16 = nullptr);
  // h16 <- bf16(relu(x w^T + b)) [B, out], the fused linear + ReLU forward; keeps bf16(x), bf16(w).
  void forward_relu(const Tensor& x, const Tensor& w, const Tensor& b, kernels::bf16::Buffer& h16,
                    const kernels::bf16::Buffer* x16);

  // bf16(gy) [B, out], made once per backward for both products.
  struct Grad {
    kernels::bf16::Buffer gy;
  };
  Grad convert_grad(const Tensor& gy) const;
  std::int64_t batch() const { return batch_; }
  std::int64_t out() const { return out_; }
  // gx <- gy w + beta gx
  void input_grad(const Grad& g, const Tensor& gx, double beta) const;
  // gw <- gy^T x + beta gw
  void weight_grad(const Grad& g, const Tensor& gw, double beta) const;

 private:
  bool on_ = false;
  std::int64_t batch_ = 0, in_ = 0, out_ = 0;
  kernels::bf16::Buffer x_;  // [B, in]
  kernels::bf16::Buffer w_;  // [out, in]
  void convert_inputs(const Tensor& x, const Tensor& w, const kernels::bf16::Buffer* x16);
};

// bf16(value) of node `id` when a fused linear + ReLU made it (its forward product wrote
// bf16) or constant_bf16 recorded it, else null.
const kernels::bf16::Buffer* bf16_value(Tape& t, std::int32_t id);

// A data leaf like t.constant(x) (no gradient, no tangent) that carries x16, the bf16 bits of
// x's values (row-major, at least x.numel() of them; shared, not copied): a linear layer
// reading it in bf16 takes x16 instead of converting x (the input batch of a bf16 run, decoded
// in bf16 by data::Split::gather). The caller guarantees x16 = bf16(x) (train/step_bf16.hpp
// only passes what Split made with x); x itself stays the float32 value every other reader sees.
// Throws ShapeError when x is not float32 or x16 has fewer than x.numel() values.
Var constant_bf16(Tape& t, const Tensor& x, const kernels::bf16::Buffer& x16);

}  // namespace descent::autodiff
