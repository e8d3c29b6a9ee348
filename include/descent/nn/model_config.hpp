#pragma once
// The [model] section of a training config and the registry of layer types.
//
// A model is an "mlp" (hidden widths and an activation) or a "sequential" list of layers,
// each a table with a `type` and that type's keys:
//   [model]
//   type = "sequential"
//   layers = [{type = "unflatten", shape = [1, 28, 28]}, {type = "conv2d", channels = 8, kernel = 3},
//             {type = "relu"}, {type = "flatten"}, {type = "linear"}]
// The registry (layer_types()) says, for each type, its keys (type, default, whether
// required, range, a docs line), its docs line, and how to build its module for the shape
// that reaches it. Everything else reads the registry: the config reader's validation and
// messages (read_layers), to_toml (layer_options), the model builder (nn/build.hpp) and the
// key table of docs/config.md (layer_types_markdown, checked by tests/nn/model_config_test.cpp).
// Adding a layer type is one entry in src/nn/model_config.cpp, its module, its test and,
// when it takes a new option, a field of LayerConfig.
//
// This header does not know TOML: the config reader (train/config.hpp) hands a layer's
// values over as ConfigValue, which says what each value is and where it was written.
#include <cstdint>
#include <exception>
#include <limits>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "descent/tensor/tensor.hpp"

namespace descent::nn {

class Module;

// Where a layer was written ("exp.toml, line 7", "exp.toml: --set model.layers=[...]"), for
// the messages of the model builder. Not part of a layer's value: any two compare equal.
struct SourceNote {
  std::string text;
  bool operator==(const SourceNote&) const { return true; }
};

// One layer of a "sequential" model: `type` picks the module, the other fields are its
// options (each type reads only its own keys; docs/config.md lists them). Input sizes are
// not written: the model builder infers every layer's input shape from the data's feature
// count and the layers before it.
struct LayerConfig {
  std::string type = {};  // a name of layer_types()
  // linear: output units (0: the number of classes; only the last layer may leave it out);
  // conv2d: output channels, >= 1; rnn/lstm/gru: hidden units, >= 1.
  std::int64_t units = 0;
  std::int64_t kernel = 0;   // conv2d, maxpool2d, avgpool2d: window side, >= 1
  std::int64_t stride = 0;   // conv2d: default 1; pools: default kernel (0 = the default)
  std::int64_t padding = 0;  // conv2d: zero padding on every side, >= 0
  bool bias = true;          // linear, conv2d
  std::vector<std::int64_t> shape = {};  // unflatten: e.g. [1, 28, 28] (1 to 3 sides, each >= 1)
  double p = 0.5;            // dropout: drop probability in [0, 1)
  double eps = 1e-5;         // batchnorm: added to the variance, >= 0
  double momentum = 0.1;     // batchnorm: running-statistics weight of the newest batch, [0, 1]
  std::int64_t input_size = 0;   // rnn/lstm/gru: features per time step D (>= 1); T = inputs / D
  bool return_sequence = false;  // rnn/lstm/gru: output every h_t, not only h_T
  std::int64_t truncate = 0;     // rnn/lstm/gru: truncated BPTT every k steps (0: full), >= 0
  double forget_bias = 1.0;      // lstm: the forget gate's initial bias
  SourceNote source = {};        // set by the config reader

  bool operator==(const LayerConfig&) const = default;
};

struct ModelConfig {
  // mlp: Linear layers of `hidden` widths with `activation` between them;
  // sequential: the modules of `layers`, in order.
  std::string type = "mlp";
  std::vector<std::int64_t> hidden = {256, 256};  // mlp: hidden layer widths, each >= 1; [] = softmax regression
  std::string activation = "relu";            // mlp: relu | tanh | sigmoid | identity
  std::string dtype = "f32";                  // f32 | f64 | bf16 (mixed precision, float32 parameters)
  bool bf16_emulate = false;                  // bf16 on a CPU without bf16 instructions: emulate, not refuse
  std::vector<LayerConfig> layers;            // sequential: at least one (an array of tables)
  // The input and output sizes come from the data.

  bool operator==(const ModelConfig&) const = default;
};

// The values model.type, model.activation and model.dtype take.
std::span<const std::string_view> model_types();   // mlp, sequential
std::span<const std::string_view> mlp_activations();  // relu, tanh, sigmoid, identity
std::span<const std::string_view> model_dtypes();  // f32, f64, bf16

// ---- The registry ----------------------------------------------------------------------

// One key of a layer type. Exactly one of the field pointers is set; it says the key's
// type: an integer, a boolean, a (finite) number, or an array of integers.
struct LayerKey {
  std::string_view name = {};
  std::int64_t LayerConfig::*integer = nullptr;
  bool LayerConfig::*boolean = nullptr;
  double LayerConfig::*number = nullptr;
  std::vector<std::int64_t> LayerConfig::*integers = nullptr;
  bool required = false;
  // integer, and each element of integers: in [min, max]. An integer key whose field holds 0
  // while min >= 1 is unset (the type's default applies) and is not written back.
  std::int64_t min = 0, max = 2147483647;
  // integers: how many elements.
  std::int64_t min_count = 1, max_count = 1;
  // number: the range [lo, hi], or [lo, hi) with hi_open.
  double lo = -std::numeric_limits<double>::infinity(), hi = std::numeric_limits<double>::infinity();
  bool hi_open = false;
  std::string_view example = {};        // integers: shown in messages, e.g. "[1, 28, 28]"
  std::string_view default_text = {};   // docs: the default when the key is left out
  std::string_view doc = {};            // docs: one line
  // Its name in model.safetensors' metadata when that differs (the output size of every
  // type is "units" there), else empty.
  std::string_view metadata_name = {};
};

// What reaches a layer when the model is built.
struct LayerInput {
  Shape shape = {};            // one example, without the batch dimension
  std::int32_t classes = 0;    // the data's number of classes
  bool last = false;           // the model's last layer
  std::uint64_t seed = 0;      // this layer's own stream (layer_seed of the run's seed)
};

// A layer type. build() makes the module for `in`, or throws LayerMisfit saying why the
// layer does not fit `in` in words of the config ("expects a flat input; add {type =
// "flatten"} before it"). The shape after the layer is the module's output_shape().
struct LayerType {
  std::string_view name = {};
  std::span<const LayerKey> keys;
  std::string_view doc;
  std::unique_ptr<Module> (*build)(const LayerConfig& layer, const LayerInput& in);
  // Fills in the values an unset key takes (linear units: the classes of a last layer;
  // stride: 1 or the kernel), or nullptr when nothing is left unset.
  void (*resolve)(LayerConfig& layer, const LayerInput& in);
};

class LayerMisfit : public std::exception {
 public:
  explicit LayerMisfit(std::string what) : what_(std::move(what)) {}
  const char* what() const noexcept override { return what_.c_str(); }

 private:
  std::string what_;
};

// Every layer type, in the order the docs and messages list them.
std::span<const LayerType> layer_types();
// The type called `name`, or nullptr.
const LayerType* find_layer_type(std::string_view name);

// ---- Reading and writing ---------------------------------------------------------------

// A value of a config file as the model section needs it: its type and value, and, for
// messages, what it is ("the float 1.0") and where it was written ("m.toml, line 3").
struct ConfigValue {
  enum class Type { integer, floating, boolean, string, array, table, other };
  Type type = Type::other;
  std::int64_t integer = 0;
  double floating = 0.0;
  bool boolean = false;
  std::string string;
  std::vector<ConfigValue> items;                             // array: the elements
  struct Entry;                                              // a key of a table and its value
  std::vector<Entry> entries;                                // table: key and value, in order
  std::string described;  // "the float -0.5", "a table"
  std::string where;      // "m.toml, line 7"
};
// (Defined after ConfigValue: a std::pair of an incomplete type is not allowed, a vector of
// one is.)
struct ConfigValue::Entry {
  std::string first;   // the key
  ConfigValue second;  // its value
};

// model.layers from its value in the config (`key` names it in messages, "model.layers"):
// an array of tables, each with a known type and only that type's keys, each of the key's
// type and range, the required ones present. Throws ConfigError "WHERE: KEY: WHAT", e.g.
//   m.toml, line 3: model.layers[0].type: unknown layer type "conv"; expected one of
//   linear, ...; did you mean conv2d?
// Each LayerConfig's source is the where of its table.
std::vector<LayerConfig> read_layers(const ConfigValue& value, std::string_view key);

// The keys of `layer` to write back, in the registry's order, with their values (unset
// optional integers left out), so that read_layers of what they write gives `layer` again.
using LayerOptionValue = std::variant<std::int64_t, bool, double, std::vector<std::int64_t>>;
std::vector<std::pair<std::string_view, LayerOptionValue>> layer_options(const LayerConfig& layer);

// The same with every unset key resolved for a layer built for `in` (only its classes and
// last are read), under the names model.safetensors' metadata uses (docs/model-file.md).
std::vector<std::pair<std::string_view, LayerOptionValue>> resolved_layer_options(const LayerConfig& layer,
                                                                                const LayerInput& in);

// The Markdown tables of docs/config.md's "layers" section: the layer types with their
// docs lines, then every key of every type with its type, default, range and docs line.
std::string layer_types_markdown();

}  // namespace descent::nn
