// model.safetensors' metadata (train/model_card.hpp): the preprocessing with the statistics of
// the training rows (computed here by hand from the CSV values), the class count, the layers
// in the config's words with each module's tensors, and what the trainer writes.
#include "descent/train/model_card.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "descent/io/safetensors.hpp"
#include "descent/version.hpp"

namespace descent::train {
namespace {

namespace fs = std::filesystem;

class ModelCardTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() / ("descent_model_card_" + std::to_string(::getpid()) + "_" + info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    // Six training rows (label, two features); the last two are the validation split.
    std::ofstream train(dir_ / "train.csv");
    for (int i = 0; i < 6; ++i) train << i % 3 << "," << kA[i] << "," << kB[i] << "\n";
    std::ofstream test(dir_ / "test.csv");
    test << "0,1,2\n1,3,4\n2,5,6\n";
  }
  void TearDown() override { fs::remove_all(dir_); }

  TrainConfig config(const std::string& standardize, const std::string& model) const {
    const std::string text = "epochs = 1\nprogress = \"none\"\nout_dir = \"" + (dir_ / "runs").string() +
                             "\"\n[data]\nformat = \"csv\"\ntrain_features = \"" + (dir_ / "train.csv").string() +
                             "\"\ntest_features = \"" + (dir_ / "test.csv").string() +
                             "\"\nscale = 0.5\nvalidation_size = 2\nstandardize = \"" + standardize +
                             "\"\n[sampler]\nbatch_size = 2\n[model]\n" + model;
    return parse_train_config(text, "card.toml");
  }

  static constexpr double kA[6] = {1, 2, 4, 7, 100, 200};
  static constexpr double kB[6] = {3, 3, 5, 9, -50, 50};
  fs::path dir_;
};

// Mean and population standard deviation of 0.5 * v over the first four rows (the training
// split), in double precision as the standardizer computes them.
std::pair<double, double> stats(const double* v) {
  double mean = 0;
  for (int i = 0; i < 4; ++i) mean += 0.5 * v[i] / 4.0;
  double var = 0;
  for (int i = 0; i < 4; ++i) var += (0.5 * v[i] - mean) * (0.5 * v[i] - mean) / 4.0;
  return {mean, std::sqrt(var)};
}

TEST_F(ModelCardTest, PerFeatureStatisticsAndSequentialLayers) {
  const TrainConfig c = config("per_feature",
                               "type = \"sequential\"\n[[model.layers]]\ntype = \"linear\"\nunits = 4\n"
                               "[[model.layers]]\ntype = \"relu\"\n[[model.layers]]\ntype = \"dropout\"\np = 0.25\n"
                               "[[model.layers]]\ntype = \"linear\"\nbias = false\n");
  const Data data = load_data(c);
  const Model model = build_model(c.model, data.dim, data.num_classes, c.seed);
  const auto meta = model_metadata(c, data, model, 7);
  EXPECT_EQ(meta.at("format"), "descent");
  EXPECT_EQ(meta.at("descent_version"), version);
  EXPECT_EQ(meta.at("classes"), "3");
  EXPECT_EQ(meta.at("best_epoch"), "7");
  EXPECT_EQ(nlohmann::json::parse(meta.at("input_shape")), nlohmann::json::array({2}));
  const auto pre = nlohmann::json::parse(meta.at("preprocessing"));
  EXPECT_EQ(pre["scale"], 0.5);
  EXPECT_EQ(pre["standardize"], "per_feature");
  EXPECT_EQ(pre["dtype"], "f32");
  ASSERT_EQ(pre["mean"].size(), 2u);
  ASSERT_EQ(pre["stddev"].size(), 2u);
  const double* columns[2] = {kA, kB};
  for (int j = 0; j < 2; ++j) {
    const auto [mean, stddev] = stats(columns[j]);
    EXPECT_EQ(pre["mean"][j].get<double>(), static_cast<double>(static_cast<float>(mean))) << j;
    EXPECT_EQ(pre["stddev"][j].get<double>(), static_cast<double>(static_cast<float>(stddev))) << j;
  }
  const auto expected = nlohmann::json::parse(R"([
    {"type": "linear", "units": 4, "bias": true, "tensors": {"weight": "layers.0.weight", "bias": "layers.0.bias"}},
    {"type": "relu"},
    {"type": "dropout", "p": 0.25},
    {"type": "linear", "units": 3, "bias": false, "tensors": {"weight": "layers.3.weight"}}])");
  EXPECT_EQ(nlohmann::json::parse(meta.at("layers")), expected) << meta.at("layers");
}

TEST_F(ModelCardTest, GlobalStatisticsAndAnMlpAsItsLayers) {
  const TrainConfig c = config("global", "hidden = [5, 4]\nactivation = \"tanh\"\ndtype = \"f64\"\n");
  const Data data = load_data(c);
  const Model model = build_model(c.model, data.dim, data.num_classes, c.seed);
  const auto pre = nlohmann::json::parse(model_metadata(c, data, model, 1).at("preprocessing"));
  double all[8];
  for (int i = 0; i < 4; ++i) {
    all[i] = kA[i];
    all[4 + i] = kB[i];
  }
  double mean = 0, var = 0;
  for (const double v : all) mean += 0.5 * v / 8.0;
  for (const double v : all) var += (0.5 * v - mean) * (0.5 * v - mean) / 8.0;
  ASSERT_EQ(pre["mean"].size(), 1u);
  EXPECT_EQ(pre["mean"][0].get<double>(), static_cast<double>(static_cast<float>(mean)));
  EXPECT_EQ(pre["stddev"][0].get<double>(), static_cast<double>(static_cast<float>(std::sqrt(var))));
  EXPECT_EQ(pre["dtype"], "f64");
  const auto layers = nlohmann::json::parse(model_metadata(c, data, model, 1).at("layers"));
  ASSERT_EQ(layers.size(), 5u) << layers;
  EXPECT_EQ(layers[0]["units"], 5);
  EXPECT_EQ(layers[1], nlohmann::json({{"type", "tanh"}}));
  EXPECT_EQ(layers[2]["tensors"]["weight"], "layers.2.weight");
  EXPECT_EQ(layers[4]["units"], 3);
  EXPECT_EQ(layers[4]["tensors"]["bias"], "layers.4.bias");
  // Without standardization: empty statistics; an identity activation is no layer at all.
  const TrainConfig plain = config("none", "hidden = [5]\nactivation = \"identity\"\n");
  const Data plain_data = load_data(plain);
  const Model plain_model = build_model(plain.model, plain_data.dim, plain_data.num_classes, 0);
  const auto meta = model_metadata(plain, plain_data, plain_model, 1);
  EXPECT_EQ(nlohmann::json::parse(meta.at("preprocessing"))["mean"], nlohmann::json::array());
  EXPECT_EQ(nlohmann::json::parse(meta.at("layers")).size(), 2u);
}

// The trainer writes this metadata into model.safetensors.
TEST_F(ModelCardTest, TheTrainerWritesIt) {
  const TrainConfig c = config("per_feature", "hidden = [4]\n");
  run(c, nullptr);
  const io::Safetensors file = io::read_safetensors(dir_ / "runs" / "run" / "model.safetensors");
  const Data data = load_data(c);
  const Model model = build_model(c.model, data.dim, data.num_classes, c.seed);
  auto expected = model_metadata(c, data, model, 1);
  EXPECT_EQ(file.metadata, expected);
}

}  // namespace
}  // namespace descent::train
