#pragma once
// A network from the [model] section of a config (nn/model_config.hpp).
//
//   nn::Model m = nn::build_model(config.model, 784, 10, seed);
//   nn::initialize_model(m, spec);
//   autodiff::Var logits = m.net->forward(tape, tape.constant(x));
#include <cstdint>
#include <memory>

#include "descent/nn/initialize.hpp"
#include "descent/nn/model_config.hpp"
#include "descent/nn/module.hpp"

namespace descent::nn {

// A model and the arena that holds its parameters.
struct Model {
  std::unique_ptr<ParameterArena> arena;
  std::unique_ptr<Sequential> net;
};

// The network of `config` for inputs of `dim` features and `classes` outputs (not
// initialized). A "sequential" model builds each layer through its registry entry for the
// shape that reaches it (one example: [dim] first, then each module's output_shape); layer i
// gets the seed layer_seed(seed, i) (dropout draws its masks from it). Throws ConfigError
// naming the layer and where it was written when it does not fit the data or the layers
// before it:
//   exp.toml, line 9: model.layers[3] (linear): expects a flat input; add {type = "flatten"}
//   before it (its input is [64, 7, 7] per example)
Model build_model(const ModelConfig& config, std::int64_t dim, std::int32_t classes, std::uint64_t seed = 0);

// The seed of layer i's own random stream: independent of the initialization's stream
// (seed itself) and of the sampler's (seed + 1). A SplitMix64 finalizer of seed + golden
// ratio * (i + 2).
std::uint64_t layer_seed(std::uint64_t seed, std::size_t layer);

// Initializes the parameters (nn::initialize), then sets every LSTM's forget-gate bias to its
// forget_bias.
void initialize_model(Model& model, const InitSpec& spec);

}  // namespace descent::nn
