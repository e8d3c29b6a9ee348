// The [model] section beyond the MLP: model.type = "sequential" with model.layers, read from
// TOML (inline arrays, [[model.layers]] tables, --set), written back by to_toml, refused with a
// message naming the layer when malformed, and built into a network whose shapes are
// inferred from the data.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "descent/error.hpp"
#include "descent/nn/conv.hpp"
#include "descent/nn/normalization.hpp"
#include "descent/nn/recurrent.hpp"
#include "descent/train/config.hpp"
#include "descent/train/trainer.hpp"

namespace descent::train {
namespace {

constexpr const char* kCnn = R"(
[model]
type = "sequential"
layers = [
  {type = "unflatten", shape = [1, 28, 28]},
  {type = "conv2d", channels = 32, kernel = 5, padding = 2},
  {type = "relu"},
  {type = "maxpool2d", kernel = 2},
  {type = "conv2d", channels = 64, kernel = 5, padding = 2},
  {type = "relu"},
  {type = "maxpool2d", kernel = 2},
  {type = "flatten"},
  {type = "linear", units = 256},
  {type = "relu"},
  {type = "dropout", p = 0.5},
  {type = "linear"},
]
)";

std::string error_of(const std::string& text, const std::vector<std::string>& overrides = {}) {
  try {
    parse_train_config(text, "m.toml", overrides);
  } catch (const ConfigError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a ConfigError for:\n" << text;
  return "";
}

std::string build_error(const std::string& text, std::int64_t dim = 784, std::int32_t classes = 10) {
  const TrainConfig c = parse_train_config(text, "m.toml");
  try {
    build_model(c.model, dim, classes);
  } catch (const ConfigError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected build_model to throw for:\n" << text;
  return "";
}

void expect_contains(const std::string& message, const std::vector<std::string>& parts) {
  for (const std::string& p : parts) EXPECT_NE(message.find(p), std::string::npos) << "missing '" << p << "' in: " << message;
}

TEST(ModelConfig, ReadsEveryLayerTypeWithItsOptions) {
  const TrainConfig c = parse_train_config(kCnn, "m.toml");
  ASSERT_EQ(c.model.type, "sequential");
  ASSERT_EQ(c.model.layers.size(), 12u);
  const LayerConfig& conv = c.model.layers[1];
  EXPECT_EQ(conv.type, "conv2d");
  EXPECT_EQ(conv.units, 32);
  EXPECT_EQ(conv.kernel, 5);
  EXPECT_EQ(conv.padding, 2);
  EXPECT_EQ(conv.stride, 0);  // the default (1)
  EXPECT_EQ(c.model.layers[0].shape, (std::vector<std::int64_t>{1, 28, 28}));
  EXPECT_DOUBLE_EQ(c.model.layers[10].p, 0.5);
  EXPECT_EQ(c.model.layers[11].units, 0);  // the number of classes

  const TrainConfig r = parse_train_config(R"(
[model]
type = "sequential"
[[model.layers]]
type = "lstm"
hidden = 64
input_size = 28
truncate = 7
return_sequence = true
forget_bias = 2.5
[[model.layers]]
type = "batchnorm"
eps = 0.001
momentum = 0.2
[[model.layers]]
type = "linear"
units = 10
bias = false
)",
                                           "m.toml");
  ASSERT_EQ(r.model.layers.size(), 3u);
  EXPECT_EQ(r.model.layers[0].units, 64);
  EXPECT_EQ(r.model.layers[0].input_size, 28);
  EXPECT_EQ(r.model.layers[0].truncate, 7);
  EXPECT_TRUE(r.model.layers[0].return_sequence);
  EXPECT_DOUBLE_EQ(r.model.layers[0].forget_bias, 2.5);
  EXPECT_DOUBLE_EQ(r.model.layers[1].eps, 0.001);
  EXPECT_DOUBLE_EQ(r.model.layers[1].momentum, 0.2);
  EXPECT_FALSE(r.model.layers[2].bias);
}

TEST(ModelConfig, RoundTripsThroughToToml) {
  const std::string texts[] = {
      kCnn,
      "[model]\ntype = \"sequential\"\nlayers = [{type = \"gru\", hidden = 8, input_size = 4, truncate = 3},"
      " {type = \"rnn\", hidden = 5, input_size = 1, return_sequence = true}, {type = \"avgpool2d\", kernel = 3, stride = 2},"
      " {type = \"batchnorm\", eps = 0.5}, {type = \"tanh\"}, {type = \"sigmoid\"},"
      " {type = \"lstm\", hidden = 3, input_size = 7, forget_bias = -1.5}, {type = \"conv2d\", channels = 2, kernel = 3,"
      " stride = 2, bias = false}, {type = \"linear\", units = 3, bias = false}]\n"};
  for (const std::string& text : texts) {
    const TrainConfig c = parse_train_config(text, "m.toml");
    const std::string written = to_toml(c);
    EXPECT_EQ(parse_train_config(written, "m.toml"), c) << written;
  }
}

TEST(ModelConfig, SetReplacesTheLayers) {
  const TrainConfig c =
      parse_train_config(kCnn, "m.toml", {"model.layers=[{type = \"flatten\"}, {type = \"linear\", units = 10}]"});
  ASSERT_EQ(c.model.layers.size(), 2u);
  EXPECT_EQ(c.model.layers[1].units, 10);
  expect_contains(error_of(kCnn, {"model.layers=[{type = \"linearr\"}]"}),
                  {"--set model.layers=", "model.layers[0].type", "did you mean linear?"});
}

TEST(ModelConfig, MalformedLayersAreRefusedNamingTheLayer) {
  const std::string head = "[model]\ntype = \"sequential\"\n";
  expect_contains(error_of(head + "layers = [{type = \"conv\", channels = 3, kernel = 3}]\n"),
                  {"m.toml, line 3", "model.layers[0].type", "unknown layer type \"conv\"", "did you mean conv2d?"});
  expect_contains(error_of(head + "layers = [{type = \"dropout\", rate = 0.5}]\n"),
                  {"line 3", "model.layers[0].rate", "unknown key for a dropout layer (it takes p)"});
  expect_contains(error_of(head + "layers = [{type = \"conv2d\", channels = 3, kernal = 3}]\n"),
                  {"model.layers[0].kernal", "did you mean kernel?"});
  expect_contains(error_of(head + "layers = [{type = \"relu\"}, {type = \"conv2d\", channels = 3}]\n"),
                  {"model.layers[1]", "a conv2d layer needs kernel"});
  expect_contains(error_of(head + "layers = [{type = \"lstm\", hidden = 8}]\n"), {"a lstm layer needs input_size"});
  expect_contains(error_of(head + "layers = [{type = \"dropout\", p = 1.0}]\n"),
                  {"model.layers[0].p", "a number in [0, 1)", "the float 1.0"});
  expect_contains(error_of(head + "layers = [{type = \"linear\", units = 0}]\n"),
                  {"model.layers[0].units", "an integer in [1,"});
  expect_contains(error_of(head + "layers = [{type = \"linear\", units = 10, bias = 1}]\n"),
                  {"model.layers[0].bias", "a boolean"});
  expect_contains(error_of(head + "layers = [{type = \"unflatten\", shape = [1, 2, 3, 4]}]\n"),
                  {"model.layers[0].shape", "1 to 3 integers"});
  expect_contains(error_of(head + "layers = [{units = 3}]\n"), {"model.layers[0]", "missing key type"});
  expect_contains(error_of(head + "layers = [\"relu\"]\n"), {"model.layers[0]", "expected a table"});
  expect_contains(error_of(head + "layers = {type = \"relu\"}\n"), {"model.layers", "expected an array of tables"});
  expect_contains(error_of(head), {"model.layers", "needs at least one layer"});
  expect_contains(error_of("[model]\nlayers = [{type = \"relu\"}]\n"),
                  {"m.toml, line 2", "only read with model.type = \"sequential\""});
}

// The builder's own tests are in tests/nn/build_test.cpp; here, that its messages name the
// file and line (or the --set argument) the config reader recorded for the layer.
TEST(ModelBuild, LayersThatDoNotFitAreRefusedNamingTheLayerAndItsLine) {
  const std::string head = "[model]\ntype = \"sequential\"\nlayers = [";
  EXPECT_EQ(build_error(head + "\n  {type = \"unflatten\", shape = [1, 28, 28]},\n  {type = \"linear\"},\n]"),
            "m.toml, line 5: model.layers[1] (linear): expects a flat input; add {type = \"flatten\"} before it (its "
            "input is [1, 28, 28] per example)");
  expect_contains(build_error(head + "{type = \"conv2d\", channels = 4, kernel = 3}, {type = \"linear\"}]"),
                  {"m.toml, line 3: model.layers[0] (conv2d)", "expects images", "[784]"});
  expect_contains(build_error("[model]\ntype = \"sequential\"\n\n[[model.layers]]\ntype = \"flatten\"\n\n"
                              "[[model.layers]]\ntype = \"linear\"\nunits = 12\n"),
                  {"m.toml, line 7: model.layers: the last layer gives [12]", "10 classes"});
  expect_contains(build_error(head + "{type = \"lstm\", hidden = 8, input_size = 30}, {type = \"linear\"}]"),
                  {"model.layers[0] (lstm)", "input_size 30 does not divide the 784 inputs"});
  const TrainConfig c =
      parse_train_config(head + "{type = \"relu\"}]", "m.toml", {"model.layers=[{type = \"linear\", units = 3}]"});
  try {
    build_model(c.model, 784, 10);
    ADD_FAILURE() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    const std::string expected = "m.toml: --set model.layers=[{type = \"linear\", units = 3}]: model.layers: the last layer";
    EXPECT_EQ(std::string(e.what()).substr(0, expected.size()), expected);
  }
}

TEST(ModelBuild, InitializeSetsTheLstmForgetBias) {
  TrainConfig c = parse_train_config(
      "[init]\nbias = 0.25\n[model]\ntype = \"sequential\"\nlayers = [{type = \"lstm\", hidden = 3, input_size = 2,"
      " forget_bias = 1.5}, {type = \"linear\"}]\n",
      "m.toml");
  Model m = build_model(c.model, 4, 2);
  initialize_model(m, c);
  auto& lstm = dynamic_cast<nn::Recurrent&>(m.net->at(0));
  const Tensor b = m.arena->value(lstm.bias());
  ASSERT_EQ(b.numel(), 12);
  for (std::int64_t j = 0; j < 12; ++j) {
    const bool forget = j >= 3 && j < 6;  // gates i, f, g, o
    EXPECT_FLOAT_EQ(b.data<float>()[j], forget ? 1.5f : 0.25f) << j;
  }
}

}  // namespace
}  // namespace descent::train