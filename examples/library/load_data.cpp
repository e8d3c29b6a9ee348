// Load data: an IDX file as it is (data::read_idx), and the first N training examples as
// a Tensor preprocessed as a config says (train::load_data). Built and run by ctest
// (example.library.load_data); docs/library.md quotes it.
#include <cstdio>
#include <exception>
#include <string>

#include <descent/data/idx.hpp>
#include <descent/train/config.hpp>
#include <descent/train/trainer.hpp>

int run(int argc, char** argv) {
  const std::string config_path = argc > 1 ? argv[1] : "examples/fashion_mlp.toml";
  // [read_idx]
  descent::data::Array images =
      descent::data::read_idx("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz");
  // images.shape == {10000, 28, 28}; images.values: 7,840,000 floats, the raw bytes 0..255
  // [read_idx]
  // [first_n]
  const std::int64_t n = 512;
  descent::train::TrainConfig config =
      descent::train::load_train_config(config_path, {"data.limit_train=" + std::to_string(n), "data.validation_size=0"});
  descent::train::Data data = descent::train::load_data(config);  // read, scale, standardize
  descent::Tensor buffer;
  descent::Tensor x = data.train.rows(0, n, buffer);  // [n, 784], the config's dtype
  descent::Tensor y = data.train.y;                   // i32 [n]
  // [first_n]
  double mean = 0.0;
  for (std::int64_t i = 0; i < x.numel(); ++i) mean += x.at(i);
  mean /= static_cast<double>(x.numel());
  std::printf("read_idx: %lld x %lld x %lld, first pixel %g; first %lld examples: x %s, y %s, mean %.3g\n",
              static_cast<long long>(images.shape[0]), static_cast<long long>(images.shape[1]),
              static_cast<long long>(images.shape[2]), static_cast<double>(images.values[0]), static_cast<long long>(n),
              x.shape().str().c_str(), y.shape().str().c_str(), mean);
  const bool ok = images.shape.size() == 3 && images.shape[0] == 10000 && x.dim(0) == n && x.dim(1) == 784 &&
                  y.dim(0) == n && data.num_classes == 10;
  return ok ? 0 : 1;
}

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {  // descent::Error: one line naming the file
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
