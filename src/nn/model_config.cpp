// The registry of layer types, and model.layers read from, and written back to, a config.
#include "descent/nn/model_config.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>

#include "descent/error.hpp"
#include "descent/suggest.hpp"
#include "descent/nn/conv.hpp"
#include "descent/nn/module.hpp"
#include "descent/nn/normalization.hpp"
#include "descent/nn/recurrent.hpp"

namespace descent::nn {
namespace {

// ---- Fitting a layer to its input (the messages name the config's remedy) ----

void need_flat(const LayerInput& in) {
  if (in.shape.ndim() != 1) throw LayerMisfit("expects a flat input; add {type = \"flatten\"} before it");
}

void need_image(const LayerInput& in) {
  if (in.shape.ndim() != 3)
    throw LayerMisfit("expects images [channels, height, width]; add {type = \"unflatten\", shape = [C, H, W]} before it");
}

std::string shape_text(std::span<const std::int64_t> shape) { return Shape(shape).str(); }

std::int64_t product(std::span<const std::int64_t> shape) {
  std::int64_t n = 1;
  for (const std::int64_t d : shape) n *= d;
  return n;
}

// ---- The builders, one per type (or family of types) ----

std::unique_ptr<Module> build_linear(const LayerConfig& l, const LayerInput& in) {
  need_flat(in);
  std::int64_t units = l.units;
  if (units == 0) {
    if (!in.last) throw LayerMisfit("needs units (only the last layer may leave it out: it then has one per class)");
    units = in.classes;
  }
  return std::make_unique<Linear>(in.shape[0], units, l.bias);
}

std::unique_ptr<Module> build_conv2d(const LayerConfig& l, const LayerInput& in) {
  need_image(in);
  const autodiff::Conv2dOptions options{.stride = l.stride > 0 ? l.stride : 1, .padding = l.padding};
  if (in.shape[1] + 2 * options.padding < l.kernel || in.shape[2] + 2 * options.padding < l.kernel)
    throw LayerMisfit("kernel " + std::to_string(l.kernel) + " is larger than the padded image");
  return std::make_unique<Conv2d>(in.shape[0], l.units, l.kernel, options, l.bias);
}

template <class Pool>
std::unique_ptr<Module> build_pool(const LayerConfig& l, const LayerInput& in) {
  need_image(in);
  if (in.shape[1] < l.kernel || in.shape[2] < l.kernel)
    throw LayerMisfit("kernel " + std::to_string(l.kernel) + " is larger than the image");
  return std::make_unique<Pool>(l.kernel, l.stride > 0 ? l.stride : l.kernel);
}

std::unique_ptr<Module> build_flatten(const LayerConfig&, const LayerInput&) { return std::make_unique<Flatten>(); }

std::unique_ptr<Module> build_unflatten(const LayerConfig& l, const LayerInput& in) {
  const std::int64_t inputs = in.shape.numel();
  if (product(l.shape) != inputs)
    throw LayerMisfit("shape " + shape_text(l.shape) + " holds " + std::to_string(product(l.shape)) + " values, not " +
                      std::to_string(inputs));
  return std::make_unique<Unflatten>(Shape(std::span<const std::int64_t>(l.shape)));
}

std::unique_ptr<Module> build_batchnorm(const LayerConfig& l, const LayerInput& in) {
  if (in.shape.ndim() != 1 && in.shape.ndim() != 3) throw LayerMisfit("expects a flat input or images");
  return std::make_unique<BatchNorm>(in.shape[0], BatchNormOptions{.eps = l.eps, .momentum = l.momentum});
}

std::unique_ptr<Module> build_dropout(const LayerConfig& l, const LayerInput& in) {
  return std::make_unique<Dropout>(l.p, in.seed);
}

std::unique_ptr<Module> build_activation(const LayerConfig& l, const LayerInput&) {
  return std::make_unique<ActivationModule>(parse_activation(l.type));
}

template <CellKind kind>
std::unique_ptr<Module> build_recurrent(const LayerConfig& l, const LayerInput& in) {
  need_flat(in);
  if (in.shape[0] % l.input_size != 0)
    throw LayerMisfit("input_size " + std::to_string(l.input_size) + " does not divide the " +
                      std::to_string(in.shape[0]) + " inputs into time steps");
  return std::make_unique<Recurrent>(
      kind, l.input_size, l.units,
      RecurrentOptions{.return_sequence = l.return_sequence, .truncate = l.truncate, .forget_bias = l.forget_bias});
}

// ---- The values unset keys take ----

void resolve_linear(LayerConfig& l, const LayerInput& in) {
  if (l.units == 0 && in.last) l.units = in.classes;
}
void resolve_conv2d(LayerConfig& l, const LayerInput&) {
  if (l.stride == 0) l.stride = 1;
}
void resolve_pool(LayerConfig& l, const LayerInput&) {
  if (l.stride == 0) l.stride = l.kernel;
}

// ---- The keys ----

constexpr LayerKey kBias{.name = "bias", .boolean = &LayerConfig::bias, .default_text = "true",
                         .doc = "Adds a learned bias per output."};

constexpr LayerKey kLinearKeys[] = {
    {.name = "units", .integer = &LayerConfig::units, .min = 1, .default_text = "one per class (last layer only)",
     .doc = "Output units. Only the last layer may leave it out."},
    kBias,
};
constexpr LayerKey kConvKeys[] = {
    {.name = "channels", .integer = &LayerConfig::units, .required = true, .min = 1, .doc = "Output channels.",
     .metadata_name = "units"},
    {.name = "kernel", .integer = &LayerConfig::kernel, .required = true, .min = 1, .doc = "Side of the square kernel."},
    {.name = "stride", .integer = &LayerConfig::stride, .min = 1, .default_text = "1", .doc = "Step between windows."},
    {.name = "padding", .integer = &LayerConfig::padding, .default_text = "0",
     .doc = "Zeros added on every side of the image."},
    kBias,
};
constexpr LayerKey kPoolKeys[] = {
    {.name = "kernel", .integer = &LayerConfig::kernel, .required = true, .min = 1, .doc = "Side of the square window."},
    {.name = "stride", .integer = &LayerConfig::stride, .min = 1, .default_text = "kernel",
     .doc = "Step between windows (by default they do not overlap)."},
};
constexpr LayerKey kUnflattenKeys[] = {
    {.name = "shape", .integers = &LayerConfig::shape, .required = true, .min = 1, .min_count = 1, .max_count = 3,
     .example = "[1, 28, 28]", .doc = "The shape of one example after it, e.g. [1, 28, 28] (channels, height, width)."},
};
constexpr LayerKey kBatchNormKeys[] = {
    {.name = "eps", .number = &LayerConfig::eps, .lo = 0.0, .default_text = "1e-5",
     .doc = "Added to the variance before the square root."},
    {.name = "momentum", .number = &LayerConfig::momentum, .lo = 0.0, .hi = 1.0, .default_text = "0.1",
     .doc = "Weight of the newest batch in the running statistics."},
};
constexpr LayerKey kDropoutKeys[] = {
    {.name = "p", .number = &LayerConfig::p, .lo = 0.0, .hi = 1.0, .hi_open = true, .default_text = "0.5",
     .doc = "Probability of dropping a unit."},
};
constexpr LayerKey kHidden{.name = "hidden", .integer = &LayerConfig::units, .required = true, .min = 1,
                           .doc = "Hidden units H.", .metadata_name = "units"};
constexpr LayerKey kInputSize{.name = "input_size", .integer = &LayerConfig::input_size, .required = true, .min = 1,
                              .doc = "Features per time step D; the T = inputs / D steps are read in order."};
constexpr LayerKey kReturnSequence{.name = "return_sequence", .boolean = &LayerConfig::return_sequence,
                                   .default_text = "false", .doc = "Gives every h_t, not only h_T."};
constexpr LayerKey kTruncate{.name = "truncate", .integer = &LayerConfig::truncate, .default_text = "0",
                             .doc = "Truncated backprop through time every k steps; 0: through all steps."};
constexpr LayerKey kRecurrentKeys[] = {kHidden, kInputSize, kReturnSequence, kTruncate};
constexpr LayerKey kLstmKeys[] = {
    kHidden, kInputSize, kReturnSequence, kTruncate,
    {.name = "forget_bias", .number = &LayerConfig::forget_bias, .default_text = "1",
     .doc = "The forget gate's bias, set after initialization."},
};

constexpr std::string_view kActivationDoc = "Elementwise activation.";

// ---- The registry ----

const std::array<LayerType, 14> kLayerTypes = {{
    {"linear", kLinearKeys, "y = x W^T + b on a flat input.", build_linear, resolve_linear},
    {"conv2d", kConvKeys, "Convolution (cross-correlation) over images [C, H, W].", build_conv2d, resolve_conv2d},
    {"maxpool2d", kPoolKeys, "Maximum over windows of images.", build_pool<MaxPool2d>, resolve_pool},
    {"avgpool2d", kPoolKeys, "Mean over windows of images.", build_pool<AvgPool2d>, resolve_pool},
    {"flatten", {}, "Images to flat rows.", build_flatten, nullptr},
    {"unflatten", kUnflattenKeys, "Flat rows to images.", build_unflatten, nullptr},
    {"batchnorm", kBatchNormKeys,
     "Batch normalization (section 8.7.1) of a flat input or of images per channel; running statistics are saved "
     "with the model. Refuses a sampler that would give a batch of one example.",
     build_batchnorm, nullptr},
    {"dropout", kDropoutKeys,
     "Inverted dropout; layer i draws its masks from a stream seeded by (`seed`, i). Off in evaluation.",
     build_dropout, nullptr},
    {"relu", {}, kActivationDoc, build_activation, nullptr},
    {"tanh", {}, kActivationDoc, build_activation, nullptr},
    {"sigmoid", {}, kActivationDoc, build_activation, nullptr},
    {"rnn", kRecurrentKeys,
     "Elman recurrent layer, h_t = tanh(W_ih x_t + W_hh h_{t-1} + b), reading the flat input as T = inputs / "
     "`input_size` time steps (Fashion-MNIST with `input_size = 28`: the 28 rows). Gives h_T, or every h_t with "
     "`return_sequence`.",
     build_recurrent<CellKind::rnn>, nullptr},
    {"lstm", kLstmKeys, "Long short-term memory layer; reads its input as `rnn` does.", build_recurrent<CellKind::lstm>, nullptr},
    {"gru", kRecurrentKeys, "Gated recurrent unit layer; reads its input as `rnn` does.", build_recurrent<CellKind::gru>, nullptr},
}};

const std::vector<std::string_view>& layer_names() {
  static const std::vector<std::string_view> names = [] {
    std::vector<std::string_view> out;
    for (const LayerType& t : kLayerTypes) out.push_back(t.name);
    return out;
  }();
  return names;
}

constexpr std::string_view kModelTypes[] = {"mlp", "sequential"};
constexpr std::string_view kActivations[] = {"relu", "tanh", "sigmoid", "identity"};
constexpr std::string_view kDtypes[] = {"f32", "f64", "bf16"};

// ---- Reading ----

std::string did_you_mean(std::string_view word, std::span<const std::string_view> candidates) {
  const std::string_view near = closest(word, candidates);
  return near.empty() ? "" : "; did you mean " + std::string(near) + "?";
}

// A number for a message or the docs: "0", "1", "0.5", "1e-05".
std::string number_text(double v) {
  std::array<char, 32> buf{};
  const auto r = std::to_chars(buf.data(), buf.data() + buf.size(), v);
  return std::string(buf.data(), r.ptr);
}

std::string int_range(const LayerKey& k) {
  if (k.max == 2147483647 && k.min >= 0) return ">= " + std::to_string(k.min);
  return "in [" + std::to_string(k.min) + ", " + std::to_string(k.max) + "]";
}

// What a value of key `k` must be, for messages: "an integer in [1, 2147483647]",
// "a number in [0, 1)", "a finite number >= 0", "an array of 1 to 3 integers >= 1, e.g. [1, 28, 28]".
std::string expected(const LayerKey& k) {
  if (k.integer != nullptr) return "an integer in [" + std::to_string(k.min) + ", " + std::to_string(k.max) + "]";
  if (k.boolean != nullptr) return "a boolean (true or false)";
  if (k.number != nullptr) {
    const bool low = std::isfinite(k.lo), high = std::isfinite(k.hi);
    if (low && high)
      return "a number in [" + number_text(k.lo) + ", " + number_text(k.hi) + (k.hi_open ? ")" : "]");
    if (low) return "a finite number >= " + number_text(k.lo);
    if (high) return "a finite number " + std::string(k.hi_open ? "< " : "<= ") + number_text(k.hi);
    return "a finite number";
  }
  const std::string count = k.min_count == k.max_count ? std::to_string(k.min_count)
                                                       : std::to_string(k.min_count) + " to " + std::to_string(k.max_count);
  return "an array of " + count + " integers " + int_range(k) + (k.example.empty() ? "" : ", e.g. " + std::string(k.example));
}

[[noreturn]] void fail(const std::string& where, const std::string& key, const std::string& what) {
  throw ConfigError((where.empty() ? "" : where + ": ") + key + ": " + what);
}

[[noreturn]] void fail_type(const ConfigValue& v, const std::string& key, const std::string& what) {
  fail(v.where, key, "expected " + what + ", got " + v.described);
}

std::int64_t read_integer(const ConfigValue& v, const std::string& key, const LayerKey& k) {
  if (v.type != ConfigValue::Type::integer || v.integer < k.min || v.integer > k.max)
    fail_type(v, key, "an integer in [" + std::to_string(k.min) + ", " + std::to_string(k.max) + "]");
  return v.integer;
}

// Reads the value `v` of key `k` into `layer`.
void read_key(const LayerKey& k, const ConfigValue& v, const std::string& key, LayerConfig& layer) {
  using Type = ConfigValue::Type;
  if (k.integer != nullptr) {
    layer.*k.integer = read_integer(v, key, k);
  } else if (k.boolean != nullptr) {
    if (v.type != Type::boolean) fail_type(v, key, expected(k));
    layer.*k.boolean = v.boolean;
  } else if (k.number != nullptr) {
    const double x = v.type == Type::integer    ? static_cast<double>(v.integer)
                     : v.type == Type::floating ? v.floating
                                                : std::nan("");
    const bool in_range = x >= k.lo && (k.hi_open ? x < k.hi : x <= k.hi);
    if (!std::isfinite(x) || !in_range) fail_type(v, key, expected(k));
    layer.*k.number = x;
  } else {
    const auto count = static_cast<std::int64_t>(v.items.size());
    if (v.type != Type::array || count < k.min_count || count > k.max_count) fail_type(v, key, expected(k));
    std::vector<std::int64_t> values;
    for (std::size_t j = 0; j < v.items.size(); ++j)
      values.push_back(read_integer(v.items[j], key + "[" + std::to_string(j) + "]", k));
    layer.*k.integers = std::move(values);
  }
}

const ConfigValue* entry(const ConfigValue& table, std::string_view key) {
  for (const auto& [k, v] : table.entries)
    if (k == key) return &v;
  return nullptr;
}

LayerConfig read_layer(const std::string& at, const ConfigValue& table) {
  LayerConfig layer;
  layer.source.text = table.where;
  const std::span<const std::string_view> names = layer_names();
  const ConfigValue* type = entry(table, "type");
  if (type == nullptr) fail(table.where, at, "missing key type; expected one of " + join(names));
  if (type->type != ConfigValue::Type::string) fail_type(*type, at + ".type", "one of " + join(names));
  layer.type = type->string;
  const LayerType* spec = find_layer_type(layer.type);
  if (spec == nullptr)
    fail(type->where, at + ".type",
         "unknown layer type \"" + printable_excerpt(layer.type, 60) + "\"; expected one of " + join(names) +
             did_you_mean(layer.type, names));
  std::vector<std::string_view> allowed;
  for (const LayerKey& k : spec->keys) allowed.push_back(k.name);
  for (const auto& [key, value] : table.entries) {
    if (key == "type" || std::find(allowed.begin(), allowed.end(), key) != allowed.end()) continue;
    fail(value.where, at + "." + printable_excerpt(key, 64),
         "unknown key for a " + layer.type + " layer (it takes " + (allowed.empty() ? "none besides type" : join(allowed)) +
             ")" + did_you_mean(key, allowed));
  }
  for (const LayerKey& k : spec->keys) {
    const ConfigValue* value = entry(table, k.name);
    if (value != nullptr) {
      read_key(k, *value, at + "." + std::string(k.name), layer);
    } else if (k.required) {
      fail(table.where, at, "a " + layer.type + " layer needs " + std::string(k.name));
    }
  }
  return layer;
}

// ---- The docs ----

std::string value_text(const LayerKey& k) {
  if (k.integer != nullptr) return "integer " + int_range(k);
  if (k.boolean != nullptr) return "boolean";
  if (k.number != nullptr) {
    std::string e = expected(k);  // "a number in [0, 1)", "a finite number >= 0"
    e = e.substr(e.find("number"));
    return e;
  }
  const std::string count = k.min_count == k.max_count ? std::to_string(k.min_count)
                                                       : std::to_string(k.min_count) + " to " + std::to_string(k.max_count);
  return count + " integers " + int_range(k);
}

std::string code_list(const std::vector<const LayerType*>& types) {
  std::string out;
  for (std::size_t i = 0; i < types.size(); ++i) out += (i > 0 ? ", `" : "`") + std::string(types[i]->name) + "`";
  return out;
}

}  // namespace

std::span<const std::string_view> model_types() { return kModelTypes; }
std::span<const std::string_view> mlp_activations() { return kActivations; }
std::span<const std::string_view> model_dtypes() { return kDtypes; }

std::span<const LayerType> layer_types() { return kLayerTypes; }

const LayerType* find_layer_type(std::string_view name) {
  for (const LayerType& t : kLayerTypes)
    if (t.name == name) return &t;
  return nullptr;
}

std::vector<LayerConfig> read_layers(const ConfigValue& value, std::string_view key) {
  if (value.type != ConfigValue::Type::array)
    fail_type(value, std::string(key), "an array of tables ([[" + std::string(key) + "]] or [{type = \"linear\"}, ...])");
  std::vector<LayerConfig> layers;
  for (std::size_t i = 0; i < value.items.size(); ++i) {
    const std::string at = std::string(key) + "[" + std::to_string(i) + "]";
    const ConfigValue& item = value.items[i];
    if (item.type != ConfigValue::Type::table) fail_type(item, at, "a table with a type, e.g. {type = \"relu\"}");
    layers.push_back(read_layer(at, item));
  }
  return layers;
}

std::vector<std::pair<std::string_view, LayerOptionValue>> layer_options(const LayerConfig& layer) {
  std::vector<std::pair<std::string_view, LayerOptionValue>> out;
  const LayerType* spec = find_layer_type(layer.type);
  if (spec == nullptr) return out;
  for (const LayerKey& k : spec->keys) {
    if (k.integer != nullptr) {
      const std::int64_t v = layer.*k.integer;
      if (v == 0 && k.min >= 1) continue;  // unset: the type's default
      out.emplace_back(k.name, v);
    } else if (k.boolean != nullptr) {
      out.emplace_back(k.name, layer.*k.boolean);
    } else if (k.number != nullptr) {
      out.emplace_back(k.name, layer.*k.number);
    } else {
      out.emplace_back(k.name, layer.*k.integers);
    }
  }
  return out;
}

std::vector<std::pair<std::string_view, LayerOptionValue>> resolved_layer_options(const LayerConfig& layer,
                                                                                const LayerInput& in) {
  LayerConfig resolved = layer;
  const LayerType* spec = find_layer_type(layer.type);
  if (spec == nullptr) return {};
  if (spec->resolve != nullptr) spec->resolve(resolved, in);
  std::vector<std::pair<std::string_view, LayerOptionValue>> out = layer_options(resolved);
  for (auto& [key, value] : out)
    for (const LayerKey& k : spec->keys)
      if (k.name == key && !k.metadata_name.empty()) key = k.metadata_name;
  return out;
}

std::string layer_types_markdown() {
  // Types that share their docs line and keys share a row; types that share their keys
  // share the rows of the key table.
  std::string out = "| type | meaning |\n|---|---|\n";
  for (std::size_t i = 0; i < kLayerTypes.size();) {
    std::vector<const LayerType*> row{&kLayerTypes[i]};
    std::size_t j = i + 1;
    for (; j < kLayerTypes.size() && kLayerTypes[j].doc == kLayerTypes[i].doc &&
           kLayerTypes[j].keys.data() == kLayerTypes[i].keys.data();
         ++j)
      row.push_back(&kLayerTypes[j]);
    out += "| " + code_list(row) + " | " + std::string(kLayerTypes[i].doc) + " |\n";
    i = j;
  }
  out += "\n| type | key | value | default | meaning |\n|---|---|---|---|---|\n";
  std::vector<const LayerKey*> done;
  for (const LayerType& t : kLayerTypes) {
    if (t.keys.empty() || std::find(done.begin(), done.end(), t.keys.data()) != done.end()) continue;
    done.push_back(t.keys.data());
    std::vector<const LayerType*> sharing;
    for (const LayerType& u : kLayerTypes)
      if (u.keys.data() == t.keys.data()) sharing.push_back(&u);
    for (const LayerKey& k : t.keys)
      out += "| " + code_list(sharing) + " | `" + std::string(k.name) + "` | " + value_text(k) + " | " +
             (k.required ? std::string("required") : std::string(k.default_text)) + " | " + std::string(k.doc) + " |\n";
  }
  return out;
}

}  // namespace descent::nn
