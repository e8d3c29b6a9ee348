// model.dtype = "bf16" on the default example (examples/fashion_mlp.toml) on a slice of
// Fashion-MNIST: the minibatch losses of the first steps follow float32's (the same
// initialization, batches and updates; only the products' inputs are rounded to bf16, a
// relative error of ~2^-8 per product), and after two epochs the test loss and error are
// float32's within what that rounding moves them. Runs emulated where the CPU has no bf16
// instructions (model.bf16_emulate), so the comparison runs everywhere.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "descent/train/trainer.hpp"

namespace descent {
namespace {

namespace fs = std::filesystem;

const fs::path kData = "/usr/share/datasets/fashion-mnist";

struct Trained {
  train::RunResult result;
  std::vector<double> step_losses;
};

Trained train_default(const fs::path& out, const std::string& dtype) {
  const train::TrainConfig c = train::load_train_config(
      fs::path(DESCENT_SOURCE_DIR) / "examples" / "fashion_mlp.toml",
      {"data.limit_train=4000", "data.validation_size=1000", "data.limit_test=1000", "epochs=2", "progress=none",
       "threads=1", "model.dtype=\"" + dtype + "\"", "model.bf16_emulate=true", "out_dir=" + (out / dtype).string()});
  Trained t;
  t.result = train::run(c, nullptr);
  std::ifstream in(t.result.run_dir / "metrics.jsonl");
  std::string line;
  while (std::getline(in, line)) {
    const nlohmann::json j = nlohmann::json::parse(line);
    if (j.value("kind", "") == "step" && j.contains("loss")) t.step_losses.push_back(j["loss"].get<double>());
  }
  return t;
}

TEST(Bf16Example, DefaultMlpTrainsLikeFloat32) {
  if (!fs::exists(kData / "train-images-idx3-ubyte.gz")) GTEST_SKIP() << "dataset-fashion-mnist not installed";
  const fs::path out = fs::temp_directory_path() / ("descent_bf16_example_" + std::to_string(::getpid()));
  fs::remove_all(out);
  const Trained f32 = train_default(out, "f32");
  const Trained b16 = train_default(out, "bf16");
  fs::remove_all(out);
  ASSERT_EQ(f32.step_losses.size(), b16.step_losses.size());
  ASSERT_GE(f32.step_losses.size(), 10u);
  // the first minibatch: the same parameters, the loss through bf16 products (a few 2^-8)
  EXPECT_NEAR(b16.step_losses[0], f32.step_losses[0], 0.02 * f32.step_losses[0]);
  EXPECT_NE(b16.step_losses[0], f32.step_losses[0]) << "the bf16 products did not run";
  // the first ten: the trajectories drift apart only slowly
  for (std::size_t i = 0; i < 10; ++i) {
    EXPECT_NEAR(b16.step_losses[i], f32.step_losses[i], 0.05 * f32.step_losses[i]) << "step " << i;
  }
  EXPECT_NEAR(b16.result.test.loss, f32.result.test.loss, 0.05 * f32.result.test.loss);
  EXPECT_NEAR(b16.result.test.error, f32.result.test.error, 0.02);
  EXPECT_LT(b16.result.test.error, 0.3);
}

}  // namespace
}  // namespace descent
