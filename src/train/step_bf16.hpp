#pragma once
// train::compute_gradient and train::train_step (descent/train/step.hpp) given the input
// batch's bf16 bits as well (data::Split::gather's x16), for a bf16 run (model.dtype = "bf16"):
// the network's input is recorded with autodiff::constant_bf16, so the first linear layer
// reads x16 instead of converting x. The same values, gradient and update bit for bit as
// without x16 when x16 = bf16(x), which is what Split::gather writes. x16 null, or products
// not in bf16 (precision::products()), or x not float32: exactly the functions of step.hpp.
#include "descent/train/step.hpp"
#include "../tensor/matmul_bf16.hpp"

namespace descent::train {

Gradient compute_gradient(nn::Module& net, ParameterArena& arena, optim::Optimizer& optimizer, autodiff::Tape& tape,
                          const Tensor& x, const kernels::bf16::Buffer* x16, const Tensor& y, std::int64_t k,
                          bool measure_norm = true);

double train_step(nn::Module& net, ParameterArena& arena, optim::Optimizer& optimizer, autodiff::Tape& tape,
                  const Tensor& x, const kernels::bf16::Buffer* x16, const Tensor& y, std::int64_t k);

}  // namespace descent::train
