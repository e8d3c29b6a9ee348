// A network from the [model] section of a config: an MLP, or the layers of a "sequential"
// model built one after another through the layer registry.
#include "descent/nn/build.hpp"

#include "descent/error.hpp"
#include "descent/nn/recurrent.hpp"

namespace descent::nn {
namespace {

// Appends the modules of config.layers to `net`, each for the shape (one example, without
// the batch dimension) that the layers before it give.
void build_layers(Sequential& net, const ModelConfig& config, std::int64_t dim, std::int32_t classes,
                  std::uint64_t seed) {
  Shape shape{dim};
  const std::size_t count = config.layers.size();
  for (std::size_t i = 0; i < count; ++i) {
    const LayerConfig& l = config.layers[i];
    const std::string at = (l.source.text.empty() ? "" : l.source.text + ": ") + "model.layers[" + std::to_string(i) +
                           "] (" + l.type + "): ";
    const LayerType* type = find_layer_type(l.type);
    if (type == nullptr) throw ConfigError(at + "unknown layer type");
    const auto misfit = [&](const char* what) {
      return ConfigError(at + what + " (its input is " + shape.str() + " per example)");
    };
    try {
      std::unique_ptr<Module> module =
          type->build(l, {.shape = shape, .classes = classes, .last = i + 1 == count, .seed = layer_seed(seed, i)});
      const Shape out = module->output_shape(shape);
      net.append(std::move(module));
      shape = out;
    } catch (const LayerMisfit& e) {
      throw misfit(e.what());
    } catch (const ShapeError& e) {
      throw misfit(e.what());
    } catch (const ConfigError& e) {  // a module's own check of its options
      throw misfit(e.what());
    }
  }
  if (shape.ndim() != 1 || shape[0] != classes) {
    const std::string where = count == 0 || config.layers.back().source.text.empty()
                                  ? ""
                                  : config.layers.back().source.text + ": ";
    throw ConfigError(where + "model.layers: the last layer gives " + shape.str() + " per example; the data has " +
                      std::to_string(classes) + " classes, so it must give [" + std::to_string(classes) +
                      "] (end with {type = \"linear\"})");
  }
}

}  // namespace

std::uint64_t layer_seed(std::uint64_t seed, std::size_t layer) {
  std::uint64_t z = seed + 0x9E3779B97F4A7C15ull * (static_cast<std::uint64_t>(layer) + 2);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

Model build_model(const ModelConfig& config, std::int64_t dim, std::int32_t classes, std::uint64_t seed) {
  Model m;
  m.arena = std::make_unique<ParameterArena>(config.dtype == "f64" ? DType::f64 : DType::f32);
  if (config.type == "sequential") {
    m.net = std::make_unique<Sequential>(*m.arena);
    build_layers(*m.net, config, dim, classes, seed);
  } else if (config.type == "mlp") {
    std::vector<std::int64_t> sizes{dim};
    sizes.insert(sizes.end(), config.hidden.begin(), config.hidden.end());
    sizes.push_back(classes);
    m.net = std::make_unique<Sequential>(mlp(*m.arena, sizes, parse_activation(config.activation)));
  } else {
    throw ConfigError("model.type = \"" + config.type + "\" is not available; use \"mlp\" or \"sequential\"");
  }
  m.arena->freeze();
  return m;
}

void initialize_model(Model& model, const InitSpec& spec) {
  initialize(*model.arena, spec);
  reset_forget_biases(*model.net);
}

}  // namespace descent::nn
