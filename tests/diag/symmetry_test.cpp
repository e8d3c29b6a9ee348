// Weight-space symmetry (symmetry.hpp): permuting hidden units on both sides and rescaling
// ReLU units leave the loss unchanged (to rounding) while moving the parameters far; the
// same permutation applied to one side only, or a rescaling of one side only, changes it.
// The permutation's layout is checked element by element on a layer small enough to write out.
#include "descent/diag/symmetry.hpp"

#include <gtest/gtest.h>

#include <cmath>

#include "descent/diag/noise.hpp"
#include "descent/nn/conv.hpp"
#include "descent/nn/normalization.hpp"
#include "descent/nn/recurrent.hpp"
#include "descent/train/trainer.hpp"
#include "descent/init/rng.hpp"
#include "problem.hpp"

namespace descent {
namespace {

using diag_testing::Problem;

double log10_factorial(int n) {
  double s = 0.0;
  for (int k = 2; k <= n; ++k) s += std::log10(static_cast<double>(k));
  return s;
}

TEST(Symmetry, PermutationMovesRowsBiasAndColumns) {
  ParameterArena arena(DType::f64);
  nn::Sequential net = nn::mlp(arena, {2, 3, 2});
  // Every parameter its own index: W1 [3, 2] = 0..5, b1 = 6..8, W2 [2, 3] = 9..14, b2 = 15, 16.
  for (std::int64_t i = 0; i < arena.size(); ++i) arena.values().data<double>()[i] = static_cast<double>(i);
  const auto layers = diag::find_symmetries(net, arena);
  ASSERT_EQ(layers.size(), 1u);
  EXPECT_EQ(layers[0].units, 3);
  EXPECT_EQ(layers[0].name, "layers.0");
  EXPECT_TRUE(layers[0].rescaling);
  const std::int64_t perm[3] = {2, 0, 1};  // new unit u = old unit perm[u]
  diag::permute_units(arena, layers[0], perm);
  const std::vector<double> expected = {4, 5, 0, 1, 2, 3,  // W1 rows 2, 0, 1
                                        8, 6, 7,           // b1
                                        11, 9, 10,         // W2 row 0, columns 2, 0, 1
                                        14, 12, 13,        // W2 row 1
                                        15, 16};           // b2 untouched
  for (std::int64_t i = 0; i < arena.size(); ++i) EXPECT_EQ(arena.values().at(i), expected[static_cast<std::size_t>(i)]) << i;
  const double scale[3] = {2.0, 4.0, 0.5};
  diag::rescale_units(arena, layers[0], scale);
  EXPECT_EQ(arena.values().at(2), 0.0 * 4.0);
  EXPECT_EQ(arena.values().at(3), 1.0 * 4.0);
  EXPECT_EQ(arena.values().at(7), 6.0 * 4.0);   // b1 of unit 1
  EXPECT_EQ(arena.values().at(10), 9.0 / 4.0);  // W2[0][1]
  EXPECT_EQ(arena.values().at(11), 10.0 / 0.5); // W2[0][2]
}

TEST(Symmetry, MlpLossUnchangedBothSidesChangedOneSide) {
  Problem p(DType::f64, {6, 8, 7, 4}, nn::Activation::relu, 40, 21);
  const diag::SymmetryResult r = diag::weight_space_symmetry(p.net, p.arena, p.x, p.labels, {.trials = 8, .seed = 3});
  ASSERT_EQ(r.layers.size(), 2u);
  EXPECT_EQ(r.layers[0].units, 8);
  EXPECT_EQ(r.layers[1].units, 7);
  EXPECT_EQ(r.rescaling_dimensions, 15);
  EXPECT_NEAR(r.log10_equivalent_models, log10_factorial(8) + log10_factorial(7), 1e-12);
  EXPECT_LT(r.permutation_max_change, 1e-13);
  EXPECT_LT(r.rescaling_max_change, 1e-13);
  EXPECT_GT(r.permutation_distance, 0.3);  // the same loss far away
  EXPECT_GT(r.rescaling_distance, 0.3);
  std::vector<double> g;
  EXPECT_NEAR(r.loss, p.loss_and_gradient(g), 1e-14);
  // The parameters are back.
  EXPECT_EQ(diag::mean_loss(p.net, p.x, p.labels), r.loss);

  // Broken on purpose: the permutation applied to the incoming side only changes the loss.
  const Tensor saved = p.arena.values().clone();
  diag::SymmetryLayer one_side = r.layers[0];
  one_side.outgoing.clear();
  const std::vector<std::int64_t> perm = {1, 2, 3, 4, 5, 6, 7, 0};
  diag::permute_units(p.arena, one_side, perm);
  const double broken = diag::mean_loss(p.net, p.x, p.labels);
  EXPECT_GT(std::abs(broken - r.loss) / r.loss, 1e-3) << "one-sided permutation should change the loss";
  p.arena.values().copy_from(saved);
  diag::permute_units(p.arena, r.layers[0], perm);
  EXPECT_NEAR(diag::mean_loss(p.net, p.x, p.labels), r.loss, 1e-13 * r.loss);
  p.arena.values().copy_from(saved);
  // Rescaling the incoming side only changes it too.
  const std::vector<double> a(8, 3.0);
  diag::rescale_units(p.arena, one_side, a);
  EXPECT_GT(std::abs(diag::mean_loss(p.net, p.x, p.labels) - r.loss) / r.loss, 1e-3);
  p.arena.values().copy_from(saved);
}

TEST(Symmetry, TanhPermutesButDoesNotRescale) {
  Problem p(DType::f64, {5, 6, 3}, nn::Activation::tanh, 30, 5);
  const diag::SymmetryResult r = diag::weight_space_symmetry(p.net, p.arena, p.x, p.labels, {.trials = 4});
  ASSERT_EQ(r.layers.size(), 1u);
  EXPECT_FALSE(r.layers[0].rescaling);
  EXPECT_EQ(r.rescaling_dimensions, 0);
  EXPECT_LT(r.permutation_max_change, 1e-13);
  EXPECT_EQ(r.rescaling_max_change, 0.0);
  // tanh is not homogeneous: a rescaling of both sides does change the loss.
  std::vector<double> a(6, 2.0);
  diag::rescale_units(p.arena, r.layers[0], a);
  EXPECT_GT(std::abs(diag::mean_loss(p.net, p.x, p.labels) - r.loss) / r.loss, 1e-3);
}

TEST(Symmetry, ConvChannelsIntoConvAndIntoFlattenedLinear) {
  ParameterArena arena(DType::f64);
  nn::Sequential net(arena);
  net.add(nn::Unflatten({1, 6, 6}));
  net.add(nn::Conv2d(1, 3, 3, {.stride = 1, .padding = 1}));
  net.add(nn::ReLU());
  net.add(nn::MaxPool2d(2));
  net.add(nn::Conv2d(3, 4, 3, {.stride = 1, .padding = 1}));
  net.add(nn::ReLU());
  net.add(nn::Flatten());
  net.add(nn::Linear(4 * 3 * 3, 5));
  arena.values().copy_from(testing::random_tensor({arena.size()}, DType::f64, 8, -0.8, 0.8));
  const Tensor x = testing::random_tensor({20, 36}, DType::f64, 9, -1.0, 1.0);
  std::vector<std::int32_t> y(20);
  for (std::size_t i = 0; i < y.size(); ++i) y[i] = static_cast<std::int32_t>(i % 5);
  const Tensor labels = Tensor::from<std::int32_t>({20}, y);
  const diag::SymmetryResult r = diag::weight_space_symmetry(net, arena, x, labels, {.trials = 6});
  ASSERT_EQ(r.layers.size(), 2u);
  EXPECT_EQ(r.layers[0].kind, "conv");
  EXPECT_EQ(r.layers[0].units, 3);
  EXPECT_EQ(r.layers[1].units, 4);
  EXPECT_EQ(r.layers[1].outgoing.at(0).group, 9);  // each channel: 3 x 3 columns of the Linear
  EXPECT_TRUE(r.layers[0].rescaling);
  EXPECT_LT(r.permutation_max_change, 1e-13);
  EXPECT_LT(r.rescaling_max_change, 1e-13);
  EXPECT_GT(r.permutation_distance, 0.1);
  // One side of the flattened channels only: the loss changes.
  diag::SymmetryLayer one_side = r.layers[1];
  one_side.incoming.clear();
  const std::vector<std::int64_t> perm = {3, 2, 1, 0};
  diag::permute_units(arena, one_side, perm);
  EXPECT_GT(std::abs(diag::mean_loss(net, x, labels) - r.loss) / r.loss, 1e-4);
}

TEST(Symmetry, BatchNormIsNamedAsNotCovered) {
  ParameterArena arena(DType::f64);
  nn::Sequential net(arena);
  net.add(nn::Linear(4, 5));
  net.add(nn::BatchNorm(5));
  net.add(nn::ReLU());
  net.add(nn::Linear(5, 3));
  std::vector<std::string> skipped;
  const auto layers = diag::find_symmetries(net, arena, &skipped);
  EXPECT_TRUE(layers.empty());
  ASSERT_FALSE(skipped.empty());
  EXPECT_NE(skipped.front().find("not covered"), std::string::npos) << skipped.front();
}

// What is covered in the example models, built from their configs as descent train builds them.
TEST(Symmetry, ExampleModelsCoverage) {
  auto layers_of = [](const char* config, std::vector<std::string>& skipped) {
    const train::TrainConfig c = train::load_train_config(std::string(DESCENT_SOURCE_DIR) + "/examples/" + config);
    train::Model m = train::build_model(c.model, 784, 10, c.seed);
    return diag::find_symmetries(*m.net, *m.arena, &skipped);
  };
  std::vector<std::string> skipped;
  const auto mlp = layers_of("fashion_mlp.toml", skipped);
  ASSERT_EQ(mlp.size(), 2u);
  EXPECT_EQ(mlp[0].units, 256);
  EXPECT_TRUE(mlp[1].rescaling);
  const auto cnn = layers_of("fashion_cnn.toml", skipped);
  ASSERT_EQ(cnn.size(), 3u);  // conv 32 -> conv, conv 64 -> flatten -> linear, linear 256 -> dropout -> linear
  EXPECT_EQ(cnn[0].kind, "conv");
  EXPECT_EQ(cnn[0].units, 32);
  EXPECT_EQ(cnn[1].units, 64);
  EXPECT_EQ(cnn[1].outgoing.at(0).group, 49);
  EXPECT_EQ(cnn[2].kind, "dense");
  EXPECT_TRUE(cnn[0].rescaling && cnn[1].rescaling && cnn[2].rescaling);
  EXPECT_TRUE(skipped.empty());
  const auto lstm = layers_of("fashion_rnn.toml", skipped);
  ASSERT_EQ(lstm.size(), 1u);  // the LSTM's 128 hidden units into the linear head
  EXPECT_EQ(lstm[0].kind, "lstm");
  EXPECT_EQ(lstm[0].units, 128);
  EXPECT_FALSE(lstm[0].rescaling);
  EXPECT_TRUE(skipped.empty());
}

// Recurrent hidden units: an LSTM returning its sequence into a GRU, the GRU's h_T into a
// Linear; and an RNN's flat sequence through tanh into a Linear. Permuting each layer's units
// (every gate's rows of W_ih, W_hh and the bias, W_hh's columns, b_hn, the next layer's
// inputs) leaves the loss unchanged; leaving out any one of those slices changes it.
TEST(Symmetry, RecurrentHiddenUnitsPermuteThroughEveryGate) {
  ParameterArena arena(DType::f64);
  nn::Sequential net(arena);
  net.add(nn::LSTM(3, 5, {.return_sequence = true}));
  net.add(nn::GRU(5, 4));
  net.add(nn::Linear(4, 3));
  arena.values().copy_from(testing::random_tensor({arena.size()}, DType::f64, 11, -0.9, 0.9));
  const Tensor x = testing::random_tensor({16, 4 * 3}, DType::f64, 12, -1.5, 1.5);  // 4 steps of 3
  std::vector<std::int32_t> y(16);
  for (std::size_t i = 0; i < y.size(); ++i) y[i] = static_cast<std::int32_t>(i % 3);
  const Tensor labels = Tensor::from<std::int32_t>({16}, y);
  const diag::SymmetryResult r = diag::weight_space_symmetry(net, arena, x, labels, {.trials = 6, .seed = 5});
  ASSERT_EQ(r.layers.size(), 2u);
  EXPECT_TRUE(r.skipped.empty());
  EXPECT_EQ(r.layers[0].kind, "lstm");
  EXPECT_EQ(r.layers[0].units, 5);
  EXPECT_EQ(r.layers[1].kind, "gru");
  EXPECT_EQ(r.layers[1].units, 4);
  EXPECT_EQ(r.layers[1].incoming.size(), 5u);  // W_ih rows, W_hh rows and columns, bias, b_hn
  EXPECT_EQ(r.rescaling_dimensions, 0);
  EXPECT_EQ(r.rescaling_max_change, 0.0);
  EXPECT_NEAR(r.log10_equivalent_models, log10_factorial(5) + log10_factorial(4), 1e-12);
  EXPECT_LT(r.permutation_max_change, 1e-13);
  EXPECT_GT(r.permutation_distance, 0.3);
  const Tensor saved = arena.values().clone();
  const std::vector<std::int64_t> p5 = {1, 2, 3, 4, 0}, p4 = {3, 0, 1, 2};
  for (std::size_t l = 0; l < 2; ++l) {
    const auto& perm = l == 0 ? p5 : p4;
    const diag::SymmetryLayer& layer = r.layers[l];
    std::vector<diag::UnitSlice> all = layer.incoming;
    all.insert(all.end(), layer.outgoing.begin(), layer.outgoing.end());
    for (std::size_t drop = 0; drop < all.size(); ++drop) {
      diag::SymmetryLayer partial = layer;
      partial.incoming.clear();
      partial.outgoing.clear();
      for (std::size_t k = 0; k < all.size(); ++k) {
        if (k != drop) partial.incoming.push_back(all[k]);
      }
      diag::permute_units(arena, partial, perm);
      EXPECT_GT(std::abs(diag::mean_loss(net, x, labels) - r.loss) / r.loss, 1e-6) << layer.kind << " without slice " << drop;
      arena.values().copy_from(saved);
    }
    diag::permute_units(arena, layer, perm);
    EXPECT_NEAR(diag::mean_loss(net, x, labels), r.loss, 1e-13 * r.loss) << layer.kind;
    arena.values().copy_from(saved);
  }
}

TEST(Symmetry, RnnSequenceIntoLinearAndLinearIntoRnnNamedAsNotCovered) {
  ParameterArena arena(DType::f64);
  nn::Sequential net(arena);
  net.add(nn::Linear(6, 6));
  net.add(nn::RNN(2, 5, {.return_sequence = true}));  // reads the Linear's 6 outputs as 3 steps of 2
  net.add(nn::Tanh());
  net.add(nn::Linear(3 * 5, 4));
  arena.values().copy_from(testing::random_tensor({arena.size()}, DType::f64, 21, -0.9, 0.9));
  const Tensor x = testing::random_tensor({12, 6}, DType::f64, 22, -1.5, 1.5);
  std::vector<std::int32_t> y(12);
  for (std::size_t i = 0; i < y.size(); ++i) y[i] = static_cast<std::int32_t>(i % 4);
  const Tensor labels = Tensor::from<std::int32_t>({12}, y);
  const diag::SymmetryResult r = diag::weight_space_symmetry(net, arena, x, labels, {.trials = 4});
  ASSERT_EQ(r.layers.size(), 1u);
  EXPECT_EQ(r.layers[0].kind, "rnn");
  EXPECT_EQ(r.layers[0].between, "tanh");
  EXPECT_EQ(r.layers[0].outgoing.at(0).outer, 4 * 3);  // each output row, each step
  EXPECT_LT(r.permutation_max_change, 1e-13);
  ASSERT_EQ(r.skipped.size(), 1u);
  EXPECT_NE(r.skipped[0].find("module 0 (Linear"), std::string::npos) << r.skipped[0];
  EXPECT_NE(r.skipped[0].find("not covered"), std::string::npos) << r.skipped[0];
}

}  // namespace
}  // namespace descent
