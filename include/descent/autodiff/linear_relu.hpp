#pragma once
// relu(x w^T + b) as one tape node under mixed precision (model.dtype = "bf16",
// descent/tensor/precision.hpp): one bf16 product with the bias and the ReLU fused into it,
// writing bf16, whose result the next linear layer reads without converting; the backward
// masks, converts and sums the bias gradient in one pass. Values and gradients are float32
// (the value is the bf16 result widened). In float32 where kernels::fused_linear (oneDNN
// built in, large enough batches, no deterministic products: kernels.hpp) one node too, its
// value one oneDNN matmul primitive with the bias and ReLU in it (kernels::linear), its
// gradients the linear node's products on the masked gradient. Otherwise (or for float64) it
// is relu(linear(x, w, b)), two nodes, exactly as before. nn::Sequential uses it for a
// Linear followed by ReLU.
#include "descent/autodiff/tape.hpp"

namespace descent::autodiff {

// Whether linear_relu(x, ...) may record a fused node (bf16, or float32 for x's batch).
bool fuses_linear_relu(Var x);
Var linear_relu(Var x, Var w, Var b = {});

}  // namespace descent::autodiff
