// The layer registry (src/nn/model_config.cpp): model.layers read from config values (no
// TOML here: the values are written by hand as the config reader hands them over), the
// messages for each kind of mistake, the options written back, and the table of
// docs/config.md, which must be what the registry writes.
#include "descent/nn/model_config.hpp"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "descent/error.hpp"

namespace descent::nn {
namespace {

using Type = ConfigValue::Type;

ConfigValue integer(std::int64_t v, std::string where = "m.toml, line 4") {
  ConfigValue c;
  c.type = Type::integer;
  c.integer = v;
  c.described = "the integer " + std::to_string(v);
  c.where = std::move(where);
  return c;
}

ConfigValue floating(double v, const std::string& text) {
  ConfigValue c;
  c.type = Type::floating;
  c.floating = v;
  c.described = "the float " + text;
  c.where = "m.toml, line 5";
  return c;
}

ConfigValue boolean(bool v) {
  ConfigValue c;
  c.type = Type::boolean;
  c.boolean = v;
  c.described = v ? "the boolean true" : "the boolean false";
  c.where = "m.toml, line 6";
  return c;
}

ConfigValue string(const std::string& v) {
  ConfigValue c;
  c.type = Type::string;
  c.string = v;
  c.described = "the string \"" + v + "\"";
  c.where = "m.toml, line 3";
  return c;
}

ConfigValue array(std::vector<ConfigValue> items) {
  ConfigValue c;
  c.type = Type::array;
  c.items = std::move(items);
  c.described = "an array";
  c.where = "m.toml, line 2";
  return c;
}

ConfigValue table(std::vector<ConfigValue::Entry> entries, std::string where = "m.toml, line 7") {
  ConfigValue c;
  c.type = Type::table;
  c.entries = std::move(entries);
  c.described = "a table";
  c.where = std::move(where);
  return c;
}

std::vector<LayerConfig> read(std::vector<ConfigValue> layers) { return read_layers(array(std::move(layers)), "model.layers"); }

std::string error_of(std::vector<ConfigValue> layers) {
  try {
    read(std::move(layers));
  } catch (const ConfigError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a ConfigError";
  return "";
}

TEST(LayerRegistry, ReadsTheKeysOfEachTypeIntoTheirFields) {
  const std::vector<LayerConfig> l = read({
      table({{"type", string("conv2d")}, {"channels", integer(8)}, {"kernel", integer(3)}, {"padding", integer(1)},
             {"bias", boolean(false)}},
            "m.toml, line 9"),
      table({{"type", string("unflatten")}, {"shape", array({integer(1), integer(28), integer(28)})}}),
      table({{"type", string("dropout")}, {"p", floating(0.25, "0.25")}}),
      table({{"type", string("batchnorm")}, {"momentum", integer(1)}}),  // an integer where a number is expected
      table({{"type", string("lstm")}, {"hidden", integer(5)}, {"input_size", integer(7)},
             {"forget_bias", floating(-2.5, "-2.5")}, {"return_sequence", boolean(true)}, {"truncate", integer(0)}}),
      table({{"type", string("relu")}}),
  });
  ASSERT_EQ(l.size(), 6u);
  EXPECT_EQ(l[0].type, "conv2d");
  EXPECT_EQ(l[0].units, 8);
  EXPECT_EQ(l[0].kernel, 3);
  EXPECT_EQ(l[0].padding, 1);
  EXPECT_EQ(l[0].stride, 0);  // unset: 1
  EXPECT_FALSE(l[0].bias);
  EXPECT_EQ(l[0].source.text, "m.toml, line 9");
  EXPECT_EQ(l[1].shape, (std::vector<std::int64_t>{1, 28, 28}));
  EXPECT_EQ(l[2].p, 0.25);
  EXPECT_EQ(l[3].momentum, 1.0);
  EXPECT_EQ(l[3].eps, 1e-5);  // the default
  EXPECT_EQ(l[4].units, 5);
  EXPECT_EQ(l[4].input_size, 7);
  EXPECT_EQ(l[4].forget_bias, -2.5);
  EXPECT_TRUE(l[4].return_sequence);
  EXPECT_EQ(l[5], LayerConfig{.type = "relu"});
}

TEST(LayerRegistry, EachMistakeGetsItsOwnMessageWithWhereItWasWritten) {
  EXPECT_EQ(error_of({table({{"type", string("conv")}})}),
            "m.toml, line 3: model.layers[0].type: unknown layer type \"conv\"; expected one of linear, conv2d, "
            "maxpool2d, avgpool2d, flatten, unflatten, batchnorm, dropout, relu, tanh, sigmoid, rnn, lstm, gru; "
            "did you mean conv2d?");
  EXPECT_EQ(error_of({table({{"type", integer(3, "m.toml, line 3")}})}).substr(0, 61),
            "m.toml, line 3: model.layers[0].type: expected one of linear,");
  EXPECT_EQ(error_of({table({{"units", integer(3)}})}),
            "m.toml, line 7: model.layers[0]: missing key type; expected one of linear, conv2d, maxpool2d, avgpool2d, "
            "flatten, unflatten, batchnorm, dropout, relu, tanh, sigmoid, rnn, lstm, gru");
  EXPECT_EQ(error_of({table({{"type", string("relu")}}), table({{"rate", integer(1)}, {"type", string("dropout")}})}),
            "m.toml, line 4: model.layers[1].rate: unknown key for a dropout layer (it takes p)");
  EXPECT_EQ(error_of({table({{"kernal", integer(3)}, {"type", string("maxpool2d")}})}),
            "m.toml, line 4: model.layers[0].kernal: unknown key for a maxpool2d layer (it takes kernel, stride); "
            "did you mean kernel?");
  EXPECT_EQ(error_of({table({{"p", integer(1)}, {"type", string("relu")}})}),
            "m.toml, line 4: model.layers[0].p: unknown key for a relu layer (it takes none besides type)");
  EXPECT_EQ(error_of({table({{"type", string("conv2d")}, {"channels", integer(3)}})}),
            "m.toml, line 7: model.layers[0]: a conv2d layer needs kernel");
  EXPECT_EQ(error_of({table({{"type", string("dropout")}, {"p", floating(1.0, "1.0")}})}),
            "m.toml, line 5: model.layers[0].p: expected a number in [0, 1), got the float 1.0");
  EXPECT_EQ(error_of({table({{"type", string("batchnorm")}, {"eps", floating(-0.5, "-0.5")}})}),
            "m.toml, line 5: model.layers[0].eps: expected a finite number >= 0, got the float -0.5");
  EXPECT_EQ(error_of({table({{"type", string("batchnorm")}, {"momentum", boolean(true)}})}),
            "m.toml, line 6: model.layers[0].momentum: expected a number in [0, 1], got the boolean true");
  EXPECT_EQ(error_of({table({{"type", string("lstm")}, {"hidden", integer(2)}, {"input_size", integer(1)},
                             {"forget_bias", floating(std::numeric_limits<double>::infinity(), "inf")}})}),
            "m.toml, line 5: model.layers[0].forget_bias: expected a finite number, got the float inf");
  EXPECT_EQ(error_of({table({{"type", string("linear")}, {"units", integer(0)}})}),
            "m.toml, line 4: model.layers[0].units: expected an integer in [1, 2147483647], got the integer 0");
  EXPECT_EQ(error_of({table({{"type", string("conv2d")}, {"channels", integer(2)}, {"kernel", integer(3)},
                             {"padding", integer(-1)}})}),
            "m.toml, line 4: model.layers[0].padding: expected an integer in [0, 2147483647], got the integer -1");
  EXPECT_EQ(error_of({table({{"type", string("linear")}, {"bias", integer(1)}})}),
            "m.toml, line 4: model.layers[0].bias: expected a boolean (true or false), got the integer 1");
  EXPECT_EQ(error_of({table({{"type", string("unflatten")},
                             {"shape", array({integer(1), integer(2), integer(3), integer(4)})}})}),
            "m.toml, line 2: model.layers[0].shape: expected an array of 1 to 3 integers >= 1, e.g. [1, 28, 28], "
            "got an array");
  EXPECT_EQ(error_of({table({{"type", string("unflatten")}, {"shape", array({integer(1), integer(0, "m.toml, line 8")})}})}),
            "m.toml, line 8: model.layers[0].shape[1]: expected an integer in [1, 2147483647], got the integer 0");
  EXPECT_EQ(error_of({string("relu")}),
            "m.toml, line 3: model.layers[0]: expected a table with a type, e.g. {type = \"relu\"}, got the string \"relu\"");
  EXPECT_EQ([] {
    try {
      read_layers(table({}), "model.layers");
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string();
  }(),
            "m.toml, line 7: model.layers: expected an array of tables ([[model.layers]] or [{type = \"linear\"}, ...]), "
            "got a table");
}

// Every type's options, written back by layer_options and read again, give the same layer;
// unset optional integers (units 0 of the last linear layer, stride 0) are left out.
TEST(LayerRegistry, OptionsWrittenBackReadAgainToTheSameLayer) {
  const auto value_of = [](const LayerOptionValue& v) {
    if (const auto* i = std::get_if<std::int64_t>(&v)) return integer(*i);
    if (const auto* b = std::get_if<bool>(&v)) return boolean(*b);
    if (const auto* x = std::get_if<double>(&v)) return floating(*x, "x");
    std::vector<ConfigValue> items;
    for (const std::int64_t i : std::get<std::vector<std::int64_t>>(v)) items.push_back(integer(i));
    return array(std::move(items));
  };
  const std::vector<LayerConfig> layers = {
      {.type = "linear", .units = 12, .bias = false},
      {.type = "linear"},
      {.type = "conv2d", .units = 4, .kernel = 5, .stride = 2, .padding = 3},
      {.type = "conv2d", .units = 4, .kernel = 5},
      {.type = "maxpool2d", .kernel = 3, .stride = 1},
      {.type = "avgpool2d", .kernel = 2},
      {.type = "flatten"},
      {.type = "unflatten", .shape = {3, 4}},
      {.type = "batchnorm", .eps = 0.25, .momentum = 1.0},
      {.type = "dropout", .p = 0.0},
      {.type = "tanh"},
      {.type = "rnn", .units = 3, .input_size = 2, .return_sequence = true, .truncate = 4},
      {.type = "lstm", .units = 3, .input_size = 2, .forget_bias = -1.0},
      {.type = "gru", .units = 1, .input_size = 9},
  };
  for (const LayerConfig& layer : layers) {
    std::vector<ConfigValue::Entry> entries{{"type", string(layer.type)}};
    for (const auto& [key, value] : layer_options(layer)) entries.push_back({std::string(key), value_of(value)});
    EXPECT_EQ(read({table(entries)}).at(0), layer) << layer.type;
  }
  const auto keys = [](const LayerConfig& l) {
    std::string out;
    for (const auto& [key, value] : layer_options(l)) out += std::string(key) + " ";
    return out;
  };
  EXPECT_EQ(keys(layers[1]), "bias ");
  EXPECT_EQ(keys(layers[3]), "channels kernel padding bias ");
  EXPECT_EQ(keys(layers[5]), "kernel ");
  EXPECT_EQ(keys(layers[11]), "hidden input_size return_sequence truncate ");
  EXPECT_EQ(keys(layers[12]), "hidden input_size return_sequence truncate forget_bias ");
}

// model.safetensors' metadata: unset keys resolved, output sizes called units.
TEST(LayerRegistry, ResolvedOptionsFillTheDefaultsUnderTheMetadataNames) {
  const auto text = [](const LayerConfig& l, bool last) {
    std::string out;
    for (const auto& [key, value] : resolved_layer_options(l, {.classes = 7, .last = last})) {
      out += std::string(key) + "=";
      if (const auto* i = std::get_if<std::int64_t>(&value)) out += std::to_string(*i);
      if (const auto* b = std::get_if<bool>(&value)) out += *b ? "true" : "false";
      out += " ";
    }
    return out;
  };
  EXPECT_EQ(text({.type = "linear"}, true), "units=7 bias=true ");
  EXPECT_EQ(text({.type = "conv2d", .units = 3, .kernel = 5}, false), "units=3 kernel=5 stride=1 padding=0 bias=true ");
  EXPECT_EQ(text({.type = "avgpool2d", .kernel = 3}, false), "kernel=3 stride=3 ");
  EXPECT_EQ(text({.type = "gru", .units = 2, .input_size = 4}, false), "units=2 input_size=4 return_sequence=false truncate=0 ");
}

TEST(LayerRegistry, EveryTypeIsFoundByNameAndHasDocsAndABuilder) {
  ASSERT_FALSE(layer_types().empty());
  for (const LayerType& t : layer_types()) {
    EXPECT_EQ(find_layer_type(t.name), &t);
    EXPECT_FALSE(t.doc.empty()) << t.name;
    EXPECT_NE(t.build, nullptr) << t.name;
    for (const LayerKey& k : t.keys) {
      const int fields = (k.integer != nullptr) + (k.boolean != nullptr) + (k.number != nullptr) + (k.integers != nullptr);
      EXPECT_EQ(fields, 1) << t.name << "." << k.name;
      EXPECT_FALSE(k.doc.empty()) << t.name << "." << k.name;
      EXPECT_NE(k.required, !k.default_text.empty()) << t.name << "." << k.name << ": a default or required";
    }
  }
  EXPECT_EQ(find_layer_type("conv"), nullptr);
}

// docs/config.md holds, between its two markers, exactly what layer_types_markdown() writes.
TEST(LayerRegistry, TheDocsTableIsTheRegistrys) {
  std::ifstream in(std::string(DESCENT_SOURCE_DIR) + "/docs/config.md");
  ASSERT_TRUE(in) << "docs/config.md";
  std::stringstream text;
  text << in.rdbuf();
  const std::string doc = text.str();
  const std::string begin = "<!-- layer types: generated by nn::layer_types_markdown() -->\n";
  const std::string end = "<!-- end of layer types -->";
  const auto a = doc.find(begin);
  const auto b = doc.find(end);
  ASSERT_NE(a, std::string::npos) << "docs/config.md lacks the line " << begin;
  ASSERT_NE(b, std::string::npos) << "docs/config.md lacks the line " << end;
  const std::string table = doc.substr(a + begin.size(), b - a - begin.size());
  EXPECT_EQ(table, layer_types_markdown()) << "replace the table of docs/config.md by:\n" << layer_types_markdown();
  // The table names every type and every key (what the test above could not see, had the
  // writer left some out).
  for (const LayerType& t : layer_types()) {
    EXPECT_NE(table.find("`" + std::string(t.name) + "`"), std::string::npos) << t.name;
    for (const LayerKey& k : t.keys) EXPECT_NE(table.find("| `" + std::string(k.name) + "` |"), std::string::npos) << k.name;
  }
}

TEST(LayerRegistry, MarkdownRowsCarryTypeRangeAndDefault) {
  const std::string md = layer_types_markdown();
  EXPECT_NE(md.find("| `conv2d` | `kernel` | integer >= 1 | required | "), std::string::npos) << md;
  EXPECT_NE(md.find("| `maxpool2d`, `avgpool2d` | `stride` | integer >= 1 | kernel | "), std::string::npos) << md;
  EXPECT_NE(md.find("| `dropout` | `p` | number in [0, 1) | 0.5 | "), std::string::npos) << md;
  EXPECT_NE(md.find("| `batchnorm` | `eps` | number >= 0 | 1e-5 | "), std::string::npos) << md;
  EXPECT_NE(md.find("| `unflatten` | `shape` | 1 to 3 integers >= 1 | required | "), std::string::npos) << md;
  EXPECT_NE(md.find("| `rnn`, `gru` | `truncate` | integer >= 0 | 0 | "), std::string::npos) << md;
  EXPECT_NE(md.find("| `relu`, `tanh`, `sigmoid` | Elementwise activation. |"), std::string::npos) << md;
}

}  // namespace
}  // namespace descent::nn
