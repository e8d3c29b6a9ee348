#pragma once
// relu(x w^T + b) as one tape node under mixed precision (model.dtype = "bf16",
// descent/tensor/precision.hpp): one bf16 product with the bias and the ReLU fused into it,
// writing bf16, whose result the next linear layer reads without converting; the backward
// masks, converts and sums the bias gradient in one pass. Values and gradients are float32
// (the value is the bf16 result widened). Without bf16 products (or for float64) it is
// relu(linear(x, w, b)), two nodes, exactly as before. nn::Sequential uses it for a Linear
// followed by ReLU.
#include "descent/autodiff/tape.hpp"

namespace descent::autodiff {

// Whether linear_relu(x, ...) records the fused bf16 node.
bool fuses_linear_relu(Var x);
Var linear_relu(Var x, Var w, Var b = {});

}  // namespace descent::autodiff
