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
// data.format = "sharded" (data/shards.hpp): the training split streams from the shards of
// data.dir (bounded memory; its labels alone are held), validation and test are the shard
// set's held-out parts, scaled by data.scale. Throws ConfigError for data.standardize other
// than "none" or a sampler kind that draws at random.
Data load_data(const TrainConfig& config);

// The files of config.data as read (idx, npy or csv; not mnist or sharded), before limits,
// scaling and the validation split: what `descent shard` writes out.
data::TrainTest read_data_files(const DataConfig& c);

}  // namespace descent::train
