#pragma once
// model.dtype = "bf16" for a training run (descent/tensor/precision.hpp).
#include <memory>

#include "descent/tensor/precision.hpp"
#include "descent/data/split.hpp"
#include "descent/train/config.hpp"
#include "../tensor/matmul_bf16.hpp"

namespace descent::train {

// The precision scope of a run: bf16 products for model.dtype = "bf16", none otherwise.
// Throws ConfigError (one line naming the config file and the key) for bf16 on a CPU without
// bf16 instructions unless model.bf16_emulate is set.
std::unique_ptr<precision::Scope> enter_precision(const TrainConfig& config);

// Where the trainer's batch of `rows` examples of `split` gets its bf16 bits (Split::gather's
// x16, then train/step_bf16.hpp): `buffer`, made room for, when the products are bf16 and the
// features float32; null otherwise (and for the batch in pieces: deterministic mode, MPI).
kernels::bf16::Buffer* batch_bf16(const data::Split& split, std::int64_t rows, bool in_pieces,
                                  kernels::bf16::Buffer& buffer);

}  // namespace descent::train
