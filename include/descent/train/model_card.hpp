#pragma once
// What model.safetensors says about itself: everything a user needs to use the weights
// elsewhere (PyTorch, NumPy) without descent or the config, as safetensors metadata, each
// value a string (JSON for the structured ones). docs/model-file.md lists the keys;
// tests/reference/model_file_reference.py rebuilds a model in PyTorch from them alone.
//   format           "descent"
//   descent_version  e.g. "0.1.0"
//   model            the network as text (nn::Sequential::describe)
//   classes          the number of outputs (logits), e.g. "10"
//   input_shape      JSON: the features per example, e.g. [784]
//   preprocessing    JSON: {"scale", "standardize", "mean", "stddev", "dtype", "recipe"}
//   layers           JSON: [{"type", the config's keys of that type, "tensors": {...}}, ...]
//   best_epoch       the epoch whose parameters these are
#include <map>
#include <string>

#include "descent/train/config.hpp"
#include "descent/train/trainer.hpp"

namespace descent::train {

// The metadata above for `model` built from `config` on `data` (load_data: its dimensions and
// fitted standardization). A "mlp" model is listed as the layers it is made of (linear,
// activation, ..., linear), each "linear" with its units; a "sequential" model as its layers,
// with defaults filled in (a last linear's units, a pool's stride). Each layer's "tensors"
// maps the module's parameter and buffer names ("weight") to the file's tensor names
// ("layers.0.weight"). Throws ShapeError if the model's module count does not match the layers.
std::map<std::string, std::string> model_metadata(const TrainConfig& config, const Data& data, const Model& model,
                                                  std::int64_t best_epoch);

}  // namespace descent::train
