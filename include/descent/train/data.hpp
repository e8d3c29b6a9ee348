#pragma once
// The data of a training config: the [data] section read (train/config.hpp) and turned into
// splits by data::prepare (data/split.hpp).
#include "descent/data/split.hpp"
#include "descent/train/config.hpp"

namespace descent::train {

using Split = data::Split;
using Data = data::Data;

// Reads the files of config.data (mnist folder, idx, npy or csv) and prepares them per its
// limits, scale, validation split (seeded by config.seed) and standardization, with features
// of config.model.dtype. MNIST-format folders stay bytes. Throws the readers' errors and
// ConfigError "<config source>: data.validation_size = ..." when nothing is left to train on.
Data load_data(const TrainConfig& config);

}  // namespace descent::train
