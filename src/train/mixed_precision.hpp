#pragma once
// model.dtype = "bf16" for a training run (descent/tensor/precision.hpp).
#include <memory>

#include "descent/tensor/precision.hpp"
#include "descent/train/config.hpp"

namespace descent::train {

// The precision scope of a run: bf16 products for model.dtype = "bf16", none otherwise.
// Throws ConfigError (one line naming the config file and the key) for bf16 on a CPU without
// bf16 instructions unless model.bf16_emulate is set.
std::unique_ptr<precision::Scope> enter_precision(const TrainConfig& config);

}  // namespace descent::train
