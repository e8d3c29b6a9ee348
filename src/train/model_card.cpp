#include "descent/train/model_card.hpp"

#include <nlohmann/json.hpp>

#include <variant>

#include "descent/error.hpp"
#include "descent/version.hpp"

namespace descent::train {
namespace {

// A layer of the config as JSON, with only the keys its type reads and defaults resolved
// (the layer registry, nn/model_config.hpp, says which and how).
nlohmann::json layer_json(const LayerConfig& l, std::int32_t classes, bool last) {
  nlohmann::json j = {{"type", l.type}};
  for (const auto& [key, value] : nn::resolved_layer_options(l, {.classes = classes, .last = last}))
    std::visit([&j, key = key](const auto& v) { j[std::string(key)] = v; }, value);
  return j;
}

// The layers of config.model in the sequential form: one entry per module of the network.
nlohmann::json layers_json(const ModelConfig& m, std::int32_t classes) {
  nlohmann::json layers = nlohmann::json::array();
  if (m.type == "mlp") {
    for (const std::int64_t units : m.hidden) {
      layers.push_back({{"type", "linear"}, {"units", units}, {"bias", true}});
      if (m.activation != "identity") layers.push_back({{"type", m.activation}});
    }
    layers.push_back({{"type", "linear"}, {"units", classes}, {"bias", true}});
    return layers;
  }
  for (std::size_t i = 0; i < m.layers.size(); ++i) {
    layers.push_back(layer_json(m.layers[i], classes, i + 1 == m.layers.size()));
  }
  return layers;
}

}  // namespace

std::map<std::string, std::string> model_metadata(const TrainConfig& config, const Data& data, const Model& model,
                                                  std::int64_t best_epoch) {
  nlohmann::json layers = layers_json(config.model, data.num_classes);
  if (layers.size() != model.net->size()) {
    throw ShapeError("model_metadata: the config lists " + std::to_string(layers.size()) + " layers, the network has " +
                     std::to_string(model.net->size()) + " modules");
  }
  // Each module's tensors: the arena names "layers.<i>.<name>".
  const ParameterArena& arena = *model.arena;
  const auto add_tensor = [&](const std::string& full) {
    const std::size_t dot = full.find('.');
    const std::size_t next = full.find('.', dot + 1);
    if (dot == std::string::npos || next == std::string::npos) return;
    const std::size_t index = std::stoul(full.substr(dot + 1, next - dot - 1));
    if (index < layers.size()) layers[index]["tensors"][full.substr(next + 1)] = full;
  };
  for (const ParamEntry& e : arena.entries()) add_tensor(e.name);
  for (const BufferEntry& e : arena.buffer_entries()) add_tensor(e.name);

  const DataConfig& d = config.data;
  nlohmann::json pre = {{"scale", d.scale}, {"standardize", d.standardize}, {"dtype", config.model.dtype}};
  if (data.standardizer) {
    pre["mean"] = data.standardizer->mean;
    pre["stddev"] = data.standardizer->stddev;
  } else {
    pre["mean"] = nlohmann::json::array();
    pre["stddev"] = nlohmann::json::array();
  }
  pre["recipe"] =
      "x = float32(raw) * float32(scale); if standardize is not none: x = (x - mean[j]) / stddev[j] in float32, "
      "j the feature (per_feature) or 0 (global); then cast to dtype. MNIST-format images are flattened row by row.";
  return {
      {"format", "descent"},
      {"descent_version", version},
      {"model", model.net->describe()},
      {"classes", std::to_string(data.num_classes)},
      {"input_shape", nlohmann::json::array({data.dim}).dump()},
      {"preprocessing", pre.dump()},
      {"layers", layers.dump()},
      {"output", "logits [batch, classes]: the predicted class is the argmax; the loss is the cross-entropy of their softmax"},
      {"best_epoch", std::to_string(best_epoch)},
  };
}

}  // namespace descent::train
