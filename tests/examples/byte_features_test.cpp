// The byte path of Fashion-MNIST (format "mnist": images kept as bytes, decoded per batch)
// against the float path (format "idx" on the same files). Label slow: it reads the data set
// six times.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>

#include "descent/train/trainer.hpp"

namespace descent {
namespace {

// Fashion-MNIST's images are held as bytes (format "mnist") and decoded per batch; the same
// files read through the float path (format "idx") must train to the same bits, with each
// standardization and both ways of carving the validation set.
TEST(ByteFeatures, TrainBitIdenticalToTheFloatPath) {
  const std::filesystem::path data = "/usr/share/datasets/fashion-mnist";
  if (!std::filesystem::exists(data / "train-images-idx3-ubyte.gz")) GTEST_SKIP() << "dataset-fashion-mnist not installed";
  const std::filesystem::path dir = std::filesystem::temp_directory_path() / ("descent_bytes_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  for (const auto& [standardize, shuffle] : {std::pair{"none", false}, std::pair{"global", true}, std::pair{"per_feature", false}}) {
    {
      std::string models[2];
      double test_error[2] = {0, 0};
      for (int path = 0; path < 2; ++path) {
        std::ostringstream t;
        t << "name = \"r" << path << "\"\nseed = 2\nepochs = 1\nthreads = 1\nprogress = \"none\"\nout_dir = \""
          << dir.string() << "\"\n[data]\n";
        if (path == 0) {
          t << "format = \"mnist\"\ndir = \"" << data.string() << "\"\n";
        } else {
          t << "format = \"idx\"\ntrain_features = \"" << (data / "train-images-idx3-ubyte.gz").string()
            << "\"\ntrain_labels = \"" << (data / "train-labels-idx1-ubyte.gz").string() << "\"\ntest_features = \""
            << (data / "t10k-images-idx3-ubyte.gz").string() << "\"\ntest_labels = \""
            << (data / "t10k-labels-idx1-ubyte.gz").string() << "\"\n";
        }
        t << "standardize = \"" << standardize << "\"\nvalidation_size = 300\nvalidation_shuffle = "
          << (shuffle ? "true" : "false") << "\nlimit_train = 1500\nlimit_test = 500\n"
          << "[model]\nhidden = [32]\n[optimizer]\nname = \"momentum\"\nlr = 0.05\nmomentum = 0.9\n[sampler]\nbatch_size = 50\n";
        const train::TrainConfig c = train::parse_train_config(t.str(), "bytes.toml");
        const train::Data d = train::load_data(c);
        EXPECT_EQ(d.train.size(), 1200);
        EXPECT_EQ(d.validation.size(), 300);
        EXPECT_EQ(d.test.size(), 500);
        EXPECT_EQ(d.train.x.defined(), path == 1);
        const train::RunResult r = train::run(c, nullptr, {}, train::ExistingRun::overwrite);  // r0, r1 again for each case
        std::ifstream in(r.run_dir / "model.safetensors", std::ios::binary);
        models[path] = std::string(std::istreambuf_iterator<char>(in), {});
        test_error[path] = r.test.error;
      }
      SCOPED_TRACE(std::string(standardize) + (shuffle ? ", shuffled validation" : ", last rows validation"));
      EXPECT_FALSE(models[0].empty());
      EXPECT_TRUE(models[0] == models[1]) << "the byte path trained to different weights";
      EXPECT_EQ(test_error[0], test_error[1]);
    }
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace descent
