// The model builder (src/nn/build.cpp): every layer's input shape inferred from the data and
// the layers before it (checked against the shapes a forward pass gives and against sizes
// counted by hand), refusals that name the layer and where it was written, per-layer seeds,
// and each module's output_shape against its own forward pass.
#include "descent/nn/build.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "descent/error.hpp"
#include "descent/nn/conv.hpp"
#include "descent/nn/normalization.hpp"
#include "descent/nn/recurrent.hpp"

namespace descent::nn {
namespace {

ModelConfig sequential(std::vector<LayerConfig> layers) {
  ModelConfig c;
  c.type = "sequential";
  c.layers = std::move(layers);
  return c;
}

const std::vector<LayerConfig> kCnn = {
    {.type = "unflatten", .shape = {1, 28, 28}},
    {.type = "conv2d", .units = 32, .kernel = 5, .padding = 2},
    {.type = "relu"},
    {.type = "maxpool2d", .kernel = 2},
    {.type = "conv2d", .units = 64, .kernel = 5, .padding = 2},
    {.type = "relu"},
    {.type = "maxpool2d", .kernel = 2},
    {.type = "flatten"},
    {.type = "linear", .units = 256},
    {.type = "relu"},
    {.type = "dropout", .p = 0.5},
    {.type = "linear"},
};

std::string build_error(std::vector<LayerConfig> layers, std::int64_t dim = 784, std::int32_t classes = 10) {
  try {
    build_model(sequential(std::move(layers)), dim, classes);
  } catch (const ConfigError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected build_model to throw";
  return "";
}

// The shape a forward pass gives one example, without the batch dimension.
Shape forward_shape(Module& m, const Shape& input, DType dtype = DType::f32) {
  std::vector<std::int64_t> dims{2};
  for (const std::int64_t d : input.dims()) dims.push_back(d);
  autodiff::Tape tape;
  const Shape out = m.forward(tape, tape.constant(Tensor::zeros(Shape(std::span<const std::int64_t>(dims)), dtype)))
                        .value()
                        .shape();
  EXPECT_EQ(out[0], 2);
  return Shape(out.dims().subspan(1));
}

TEST(ModelBuild, InfersEveryShapeOfTheCnn) {
  Model m = build_model(sequential(kCnn), 784, 10, 5);
  ASSERT_EQ(m.net->size(), 12u);
  auto* conv2 = dynamic_cast<Conv2d*>(&m.net->at(4));
  ASSERT_NE(conv2, nullptr);
  EXPECT_EQ(conv2->in_channels(), 32);
  auto* fc = dynamic_cast<Linear*>(&m.net->at(8));
  ASSERT_NE(fc, nullptr);
  EXPECT_EQ(fc->in_features(), 64 * 7 * 7);
  auto* head = dynamic_cast<Linear*>(&m.net->at(11));
  ASSERT_NE(head, nullptr);
  EXPECT_EQ(head->out_features(), 10);
  // 1*32*25 + 32, 32*64*25 + 64, 3136*256 + 256, 256*10 + 10 (counted by hand)
  EXPECT_EQ(m.arena->size(), 832 + 51264 + 803072 + 2570);
  EXPECT_EQ(m.net->output_shape(Shape{784}), Shape({10}));
  autodiff::Tape tape;
  const Tensor x = Tensor::zeros({3, 784}, DType::f32);
  EXPECT_EQ(m.net->forward(tape, tape.constant(x)).value().shape(), Shape({3, 10}));
}

TEST(ModelBuild, StridesAndPaddingFollowTheConvolutionFormula) {
  // 28 -> conv k3 s2 p1: floor((28 + 2 - 3) / 2) + 1 = 14; -> avgpool k3 s2: floor((14 - 3) / 2) + 1 = 6;
  // -> maxpool k2 (stride 2): 3. Flattened: 4 * 3 * 3 = 36 (by hand).
  Model m = build_model(sequential({{.type = "unflatten", .shape = {1, 28, 28}},
                                    {.type = "conv2d", .units = 4, .kernel = 3, .stride = 2, .padding = 1},
                                    {.type = "avgpool2d", .kernel = 3, .stride = 2},
                                    {.type = "maxpool2d", .kernel = 2},
                                    {.type = "batchnorm"},
                                    {.type = "flatten"},
                                    {.type = "linear"}}),
                        784, 5);
  EXPECT_EQ(dynamic_cast<Linear&>(m.net->at(6)).in_features(), 36);
  EXPECT_EQ(dynamic_cast<BatchNorm&>(m.net->at(4)).num_features(), 4);
}

TEST(ModelBuild, RecurrentLayersReadTheRowsAsTimeSteps) {
  Model m = build_model(sequential({{.type = "gru", .units = 6, .input_size = 7, .return_sequence = true},
                                    {.type = "lstm", .units = 5, .input_size = 6},
                                    {.type = "linear"}}),
                        28, 3);
  auto* lstm = dynamic_cast<Recurrent*>(&m.net->at(1));
  ASSERT_NE(lstm, nullptr);
  EXPECT_EQ(lstm->kind(), CellKind::lstm);
  EXPECT_EQ(lstm->input_size(), 6);
  autodiff::Tape tape;
  EXPECT_EQ(m.net->forward(tape, tape.constant(Tensor::zeros({2, 28}, DType::f32))).value().shape(), Shape({2, 3}));
}

TEST(ModelBuild, LayersThatDoNotFitAreRefusedNamingTheLayer) {
  EXPECT_EQ(build_error({{.type = "unflatten", .shape = {1, 28, 28}}, {.type = "linear"}}),
            "model.layers[1] (linear): expects a flat input; add {type = \"flatten\"} before it (its input is "
            "[1, 28, 28] per example)");
  EXPECT_EQ(build_error({{.type = "conv2d", .units = 4, .kernel = 3}, {.type = "linear"}}),
            "model.layers[0] (conv2d): expects images [channels, height, width]; add {type = \"unflatten\", shape = "
            "[C, H, W]} before it (its input is [784] per example)");
  EXPECT_EQ(build_error({{.type = "unflatten", .shape = {2, 28, 28}}}),
            "model.layers[0] (unflatten): shape [2, 28, 28] holds 1568 values, not 784 (its input is [784] per example)");
  EXPECT_EQ(build_error({{.type = "linear"}, {.type = "relu"}, {.type = "linear", .units = 10}}),
            "model.layers[0] (linear): needs units (only the last layer may leave it out: it then has one per class) "
            "(its input is [784] per example)");
  EXPECT_EQ(build_error({{.type = "linear", .units = 12}}),
            "model.layers: the last layer gives [12] per example; the data has 10 classes, so it must give [10] "
            "(end with {type = \"linear\"})");
  EXPECT_EQ(build_error({{.type = "lstm", .units = 8, .input_size = 30}, {.type = "linear"}}),
            "model.layers[0] (lstm): input_size 30 does not divide the 784 inputs into time steps (its input is [784] "
            "per example)");
  EXPECT_EQ(build_error({{.type = "unflatten", .shape = {1, 28, 28}}, {.type = "maxpool2d", .kernel = 29}}),
            "model.layers[1] (maxpool2d): kernel 29 is larger than the image (its input is [1, 28, 28] per example)");
  EXPECT_EQ(build_error({{.type = "unflatten", .shape = {1, 28, 28}}, {.type = "conv2d", .units = 2, .kernel = 31}}),
            "model.layers[1] (conv2d): kernel 31 is larger than the padded image (its input is [1, 28, 28] per example)");
  EXPECT_EQ(build_error({{.type = "unflatten", .shape = {784}}, {.type = "batchnorm"}, {.type = "unflatten", .shape = {4, 14, 14}},
                         {.type = "batchnorm"}, {.type = "unflatten", .shape = {28, 28}}, {.type = "batchnorm"}}),
            "model.layers[5] (batchnorm): expects a flat input or images (its input is [28, 28] per example)");
  EXPECT_EQ(build_error({{.type = "pool"}}), "model.layers[0] (pool): unknown layer type");
}

TEST(ModelBuild, MessagesNameWhereTheLayerWasWritten) {
  std::vector<LayerConfig> layers = {{.type = "unflatten", .shape = {1, 28, 28}}, {.type = "linear"}};
  layers[1].source.text = "m.toml, line 5";
  EXPECT_EQ(build_error(layers).substr(0, 42), "m.toml, line 5: model.layers[1] (linear): ");
  layers = {{.type = "linear", .units = 12}};
  layers[0].source.text = "m.toml: --set model.layers=[{type = \"linear\", units = 12}]";
  EXPECT_EQ(build_error(layers).substr(0, 80),
            "m.toml: --set model.layers=[{type = \"linear\", units = 12}]: model.layers: the la");
}

TEST(ModelBuild, DropoutLayersDrawIndependentSeededMasks) {
  const ModelConfig c = sequential({{.type = "dropout"}, {.type = "dropout"}, {.type = "linear"}});
  auto states = [&](std::uint64_t seed) {
    Model m = build_model(c, 4, 2, seed);
    return std::pair{dynamic_cast<Dropout&>(m.net->at(0)).rng_state(), dynamic_cast<Dropout&>(m.net->at(1)).rng_state()};
  };
  const auto a = states(1), b = states(1), other = states(2);
  EXPECT_EQ(a, b);                  // reproducible
  EXPECT_NE(a.first, a.second);     // two layers, two streams
  EXPECT_NE(a.first, other.first);  // the run's seed changes them
  EXPECT_EQ(a.first, Dropout(0.5, layer_seed(1, 0)).rng_state());
  EXPECT_EQ(a.second, Dropout(0.5, layer_seed(1, 1)).rng_state());
}

TEST(ModelBuild, LayerSeedIsSplitMix64OfTheSeedAndIndex) {
  // SplitMix64 (Steele, Lea & Flood 2014) of seed + golden ratio * (i + 2), worked out
  // step by step for seed 0, layer 0: z = 2 * 0x9E3779B97F4A7C15 mod 2^64.
  std::uint64_t z = 0x3C6EF372FE94F82Aull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  EXPECT_EQ(layer_seed(0, 0), z ^ (z >> 31));
  EXPECT_NE(layer_seed(0, 1), layer_seed(0, 0));
}

TEST(ModelBuild, MlpAndDtype) {
  ModelConfig c;
  c.hidden = {5, 4};
  c.activation = "tanh";
  c.dtype = "f64";
  Model m = build_model(c, 3, 2);
  EXPECT_EQ(m.arena->dtype(), DType::f64);
  EXPECT_EQ(m.net->describe(), "Sequential(Linear(3 -> 5, bias), tanh, Linear(5 -> 4, bias), tanh, Linear(4 -> 2, bias))");
  EXPECT_EQ(m.arena->size(), 3 * 5 + 5 + 5 * 4 + 4 + 4 * 2 + 2);
}

TEST(ModelBuild, InitializeSetsTheLstmForgetBias) {
  Model m = build_model(sequential({{.type = "lstm", .units = 3, .input_size = 2, .forget_bias = 1.5}, {.type = "linear"}}), 4, 2);
  initialize_model(m, {.bias = 0.25});
  auto& lstm = dynamic_cast<Recurrent&>(m.net->at(0));
  const Tensor b = m.arena->value(lstm.bias());
  ASSERT_EQ(b.numel(), 12);
  for (std::int64_t j = 0; j < 12; ++j) {
    const bool forget = j >= 3 && j < 6;  // gates i, f, g, o
    EXPECT_FLOAT_EQ(b.data<float>()[j], forget ? 1.5f : 0.25f) << j;
  }
}

// init.output_gain scales the output layer (the last weight matrix) after the draws and
// nothing else: every other parameter, and the output layer divided by the gain, are the
// bits of output_gain = 1 (the gains used are powers of two, so the product is exact).
TEST(ModelBuild, OutputGainScalesOnlyTheLastWeightMatrix) {
  ModelConfig c;
  c.hidden = {6, 5};
  auto draw = [&](double output_gain) {
    Model m = build_model(c, 4, 3);
    initialize_model(m, {.bias = 0.5, .output_gain = output_gain, .seed = 7});
    const Tensor& all = m.arena->values();
    return std::vector<float>(all.data<float>(), all.data<float>() + all.numel());
  };
  const std::vector<float> one = draw(1.0), quarter = draw(0.25), zero = draw(0.0);
  ASSERT_EQ(one.size(), quarter.size());
  // Layout in declaration order: W1 [6x4], b1 [6], W2 [5x6], b2 [5], W3 [3x5], b3 [3].
  const std::size_t w3 = 4 * 6 + 6 + 6 * 5 + 5, b3 = w3 + 5 * 3;
  std::size_t scaled = 0;
  for (std::size_t i = 0; i < one.size(); ++i) {
    const bool output_weight = i >= w3 && i < b3;
    EXPECT_EQ(quarter[i], output_weight ? 0.25f * one[i] : one[i]) << i;
    EXPECT_EQ(zero[i], output_weight ? 0.0f : one[i]) << i;
    scaled += output_weight && one[i] != 0.0f;
  }
  EXPECT_EQ(scaled, 15u);  // he_uniform draws no exact zero here: the test sees every weight scaled
}

// output_shape of each module against the shape its forward pass gives.
TEST(OutputShape, AgreesWithForwardForEveryModule) {
  ParameterArena arena(DType::f32);
  Sequential net(arena);
  struct Case {
    Module* m;
    Shape in;
  };
  std::vector<Case> cases;
  cases.push_back({&net.add(Linear(6, 4)), Shape{6}});
  cases.push_back({&net.add(Conv2d(2, 3, 3, {.stride = 2, .padding = 1})), Shape{2, 7, 5}});
  cases.push_back({&net.add(MaxPool2d(2)), Shape{3, 5, 4}});
  cases.push_back({&net.add(AvgPool2d(3, 1)), Shape{3, 5, 4}});
  cases.push_back({&net.add(Flatten()), Shape{2, 3, 4}});
  cases.push_back({&net.add(Unflatten(Shape{2, 3})), Shape{6}});
  cases.push_back({&net.add(BatchNorm(3)), Shape{3, 2, 2}});
  cases.push_back({&net.add(Dropout(0.5, 1)), Shape{5}});
  cases.push_back({&net.add(Tanh()), Shape{2, 2}});
  cases.push_back({&net.add(GRU(3, 4, {.return_sequence = true})), Shape{12}});
  cases.push_back({&net.add(LSTM(3, 4)), Shape{6}});
  cases.push_back({&net.add(RNN(3, 2, {.return_sequence = true})), Shape{5, 3}});
  arena.freeze();
  for (const Case& c : cases) EXPECT_EQ(c.m->output_shape(c.in), forward_shape(*c.m, c.in)) << c.m->describe();
  // Worked by hand: conv 7 -> floor((7 + 2 - 3) / 2) + 1 = 4, 5 -> 3; pools 5 x 4 -> 2 x 2 and 3 x 2.
  EXPECT_EQ(cases[1].m->output_shape(Shape{2, 7, 5}), Shape({3, 4, 3}));
  EXPECT_EQ(cases[2].m->output_shape(Shape{3, 5, 4}), Shape({3, 2, 2}));
  EXPECT_EQ(cases[3].m->output_shape(Shape{3, 5, 4}), Shape({3, 3, 2}));
  EXPECT_EQ(cases[9].m->output_shape(Shape{12}), Shape({16}));
  EXPECT_EQ(cases[11].m->output_shape(Shape{5, 3}), Shape({5, 2}));
}

TEST(OutputShape, InputsThatDoNotFitAreShapeErrors) {
  EXPECT_THROW(Linear(6, 4).output_shape(Shape{5}), ShapeError);
  EXPECT_THROW(Linear(6, 4).output_shape(Shape{2, 3}), ShapeError);
  EXPECT_THROW(Conv2d(2, 3, 3).output_shape(Shape{1, 7, 7}), ShapeError);
  EXPECT_THROW(Conv2d(2, 3, 3).output_shape(Shape{2, 2, 7}), ShapeError);
  EXPECT_THROW(MaxPool2d(2).output_shape(Shape{8}), ShapeError);
  EXPECT_THROW(Unflatten(Shape{2, 3}).output_shape(Shape{7}), ShapeError);
  EXPECT_THROW(BatchNorm(3).output_shape(Shape{4}), ShapeError);
  EXPECT_THROW(LSTM(3, 4).output_shape(Shape{7}), ShapeError);
}

}  // namespace
}  // namespace descent::nn
