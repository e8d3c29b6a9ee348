#include "descent/data/dataset.hpp"

#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include "descent/error.hpp"
#include "descent/data/split.hpp"
#include "descent/tensor/parallel.hpp"

namespace descent::data {
namespace {

namespace fs = std::filesystem;
using Bytes = std::vector<unsigned char>;

template <typename Error, typename Call>
void expect_error(Call call, const std::string& name, const std::string& what) {
  try {
    call();
    ADD_FAILURE() << "expected an error mentioning '" << what << "'";
  } catch (const Error& error) {
    const std::string message = error.what();
    EXPECT_NE(message.find(name), std::string::npos) << message;
    EXPECT_NE(message.find(what), std::string::npos) << message;
  }
}

// n examples with d features: feature j of example i is 10 * i + j, label i % classes.
Dataset make_grid(std::int64_t n, std::int64_t d, std::int32_t classes) {
  Dataset data;
  data.features.shape = {n, d};
  for (std::int64_t i = 0; i < n; ++i) {
    for (std::int64_t j = 0; j < d; ++j) data.features.values.push_back(float(10 * i + j));
    data.labels.push_back(static_cast<std::int32_t>(i % classes));
  }
  data.num_classes = classes;
  return data;
}

// The example index encoded in the first feature by make_grid.
std::vector<std::int64_t> example_ids(const Dataset& data) {
  std::vector<std::int64_t> ids;
  for (std::int64_t i = 0; i < data.size(); ++i) {
    ids.push_back(static_cast<std::int64_t>(data.features.values[i * data.dim()]) / 10);
  }
  return ids;
}

// ---- make_dataset and validate ----------------------------------------------------------

TEST(MakeDataset, FlattensFeaturesAndConvertsLabels) {
  Array images{{2, 2, 2}, {1, 2, 3, 4, 5, 6, 7, 8}};
  const Array labels{{2}, {1, 0}};
  const Dataset data = make_dataset(std::move(images), labels, 2, "pairs");
  EXPECT_EQ(data.features.shape, (std::vector<std::int64_t>{2, 4}));
  EXPECT_EQ(data.features.values, (std::vector<float>{1, 2, 3, 4, 5, 6, 7, 8}));
  EXPECT_EQ(data.labels, (std::vector<std::int32_t>{1, 0}));
  EXPECT_EQ(data.num_classes, 2);
  EXPECT_EQ(data.size(), 2);
  EXPECT_EQ(data.dim(), 4);
}

TEST(MakeDataset, RejectsCountMismatch) {
  const Array labels{{3}, {1, 0, 1}};
  expect_error<DataError>([&] { make_dataset(Array{{2, 1}, {1, 2}}, labels, 2, "y.npy"); }, "y.npy",
                          "holds 3 labels, expected 2");
}

TEST(Validate, AcceptsGoodAndRejectsInconsistentDatasets) {
  Dataset data = make_grid(3, 2, 2);
  EXPECT_NO_THROW(validate(data, "grid"));
  data.labels.pop_back();
  expect_error<ShapeError>([&] { validate(data, "grid"); }, "grid", "2 labels for 3 examples");
  data = make_grid(3, 2, 2);
  data.features.values.pop_back();
  expect_error<ShapeError>([&] { validate(data, "grid"); }, "grid", "shape 3x2 but 5 values");
  data = make_grid(3, 2, 2);
  data.labels[1] = 2;
  expect_error<DataError>([&] { validate(data, "grid"); }, "grid", "label 1 is 2");
}

// ---- load_mnist_dir on a small synthetic directory -----------------------------------------

class MnistDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static std::atomic<int> counter{0};
    dir_ = fs::temp_directory_path() /
           ("descent_mnist_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  static Bytes idx(const std::vector<std::uint32_t>& dims, const Bytes& data) {
    Bytes bytes{0, 0, 0x08, static_cast<unsigned char>(dims.size())};
    for (const auto dim : dims) {
      for (int shift = 24; shift >= 0; shift -= 8) bytes.push_back((dim >> shift) & 0xFF);
    }
    bytes.insert(bytes.end(), data.begin(), data.end());
    return bytes;
  }

  void write_plain(const std::string& name, const Bytes& bytes) {
    std::ofstream out(dir_ / name, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  }

  void write_gzip(const std::string& name, const Bytes& bytes) {
    gzFile file = gzopen((dir_ / name).c_str(), "wb");
    ASSERT_NE(file, nullptr);
    gzwrite(file, bytes.data(), static_cast<unsigned>(bytes.size()));
    gzclose(file);
  }

  // 3 training and 2 test images of 2x2 pixels; training files gzipped, test files plain.
  void write_all() {
    write_gzip("train-images-idx3-ubyte.gz", idx({3, 2, 2}, {0, 1, 2, 3, 10, 11, 12, 13, 255, 254, 253, 252}));
    write_gzip("train-labels-idx1-ubyte.gz", idx({3}, {9, 0, 4}));
    write_plain("t10k-images-idx3-ubyte", idx({2, 2, 2}, {5, 6, 7, 8, 9, 10, 11, 12}));
    write_plain("t10k-labels-idx1-ubyte", idx({2}, {3, 3}));
  }

  fs::path dir_;
};

TEST_F(MnistDirTest, LoadsPlainAndGzippedFiles) {
  write_all();
  const TrainTest data = load_mnist_dir(dir_);
  EXPECT_EQ(data.train.features.shape, (std::vector<std::int64_t>{3, 4}));
  EXPECT_EQ(data.train.features.values,
            (std::vector<float>{0, 1, 2, 3, 10, 11, 12, 13, 255, 254, 253, 252}));
  EXPECT_EQ(data.train.labels, (std::vector<std::int32_t>{9, 0, 4}));
  EXPECT_EQ(data.train.num_classes, 10);
  EXPECT_EQ(data.test.features.shape, (std::vector<std::int64_t>{2, 4}));
  EXPECT_EQ(data.test.features.values, (std::vector<float>{5, 6, 7, 8, 9, 10, 11, 12}));
  EXPECT_EQ(data.test.labels, (std::vector<std::int32_t>{3, 3}));
}

TEST_F(MnistDirTest, MissingDirectoryIsIoError) {
  const auto missing = dir_ / "nowhere";
  expect_error<IoError>([&] { load_mnist_dir(missing); }, missing.string(), "no such directory");
}

TEST_F(MnistDirTest, MissingFileIsIoErrorNamingIt) {
  write_all();
  fs::remove(dir_ / "t10k-labels-idx1-ubyte");
  expect_error<IoError>([&] { load_mnist_dir(dir_); }, dir_.string(),
                        "neither t10k-labels-idx1-ubyte nor t10k-labels-idx1-ubyte.gz found");
}

TEST_F(MnistDirTest, RejectsCountMismatch) {
  write_all();
  write_plain("t10k-labels-idx1-ubyte", idx({3}, {3, 3, 3}));
  expect_error<DataError>([&] { load_mnist_dir(dir_); },
                          (dir_ / "t10k-labels-idx1-ubyte").string(), "holds 3 labels, expected 2");
}

TEST_F(MnistDirTest, RejectsLabelOutOfRange) {
  write_all();
  write_plain("t10k-labels-idx1-ubyte", idx({2}, {3, 10}));
  expect_error<DataError>([&] { load_mnist_dir(dir_); },
                          (dir_ / "t10k-labels-idx1-ubyte").string(), "label 1 is 10");
}

TEST_F(MnistDirTest, RejectsImagesThatAreNotThreeDimensional) {
  write_all();
  write_plain("t10k-images-idx3-ubyte", idx({2, 4}, {5, 6, 7, 8, 9, 10, 11, 12}));
  expect_error<DataError>([&] { load_mnist_dir(dir_); },
                          (dir_ / "t10k-images-idx3-ubyte").string(), "expected 3 dimensions");
}

TEST_F(MnistDirTest, RejectsDifferentTrainAndTestImageSizes) {
  write_all();
  write_plain("t10k-images-idx3-ubyte", idx({2, 1, 2}, {5, 6, 7, 8}));
  expect_error<DataError>([&] { load_mnist_dir(dir_); }, dir_.string(),
                          "train images have 4 pixels, test images 2");
}

TEST(FashionMnist, LoadsTheInstalledDataset) {
  if (!fs::exists(default_mnist_dir)) GTEST_SKIP() << default_mnist_dir << " is not installed";
  const TrainTest data = load_mnist_dir();
  ASSERT_EQ(data.train.size(), 60000);
  ASSERT_EQ(data.test.size(), 10000);
  EXPECT_EQ(data.train.dim(), 784);
  EXPECT_EQ(data.test.dim(), 784);
  EXPECT_EQ(data.train.num_classes, 10);
  std::vector<int> counts(10, 0);
  for (const auto label : data.train.labels) {
    ASSERT_GE(label, 0);
    ASSERT_LT(label, 10);
    ++counts[static_cast<std::size_t>(label)];
  }
  EXPECT_EQ(counts, std::vector<int>(10, 6000));
  // Values checked against an independent decoding of the files (Python's gzip module).
  EXPECT_EQ(std::vector<std::int32_t>(data.train.labels.begin(), data.train.labels.begin() + 10),
            (std::vector<std::int32_t>{9, 0, 0, 3, 0, 2, 7, 2, 5, 5}));
  EXPECT_EQ(std::vector<std::int32_t>(data.test.labels.begin(), data.test.labels.begin() + 10),
            (std::vector<std::int32_t>{9, 2, 1, 1, 6, 1, 4, 6, 5, 7}));
  const auto& pixels = data.train.features.values;
  EXPECT_EQ(std::accumulate(pixels.begin(), pixels.begin() + 784, 0.0), 76247.0);
  EXPECT_EQ(std::accumulate(pixels.begin(), pixels.end(), 0.0), 3431114169.0);
  EXPECT_EQ(*std::min_element(pixels.begin(), pixels.end()), 0.0f);
  EXPECT_EQ(*std::max_element(pixels.begin(), pixels.end()), 255.0f);
  EXPECT_EQ(std::accumulate(data.test.features.values.begin(), data.test.features.values.begin() + 784, 0.0),
            33456.0);
}

// ---- preprocessing ------------------------------------------------------------------------

TEST(Scale, MultipliesEveryFeature) {
  Dataset data{{{2, 2}, {0, 255, 51, 102}}, {0, 1}, 2};
  scale(data, 1.0f / 255.0f);
  EXPECT_FLOAT_EQ(data.features.values[0], 0.0f);
  EXPECT_FLOAT_EQ(data.features.values[1], 1.0f);
  EXPECT_FLOAT_EQ(data.features.values[2], 0.2f);
  EXPECT_FLOAT_EQ(data.features.values[3], 0.4f);
  expect_error<ConfigError>([&] { scale(data, std::numeric_limits<float>::quiet_NaN()); }, "scale",
                            "expected a finite number");
}

TEST(Standardizer, GlobalUsesOneMeanAndPopulationStddev) {
  Dataset train{{{2, 2}, {1, 2, 3, 4}}, {0, 1}, 2};
  const Standardizer s = fit_standardizer(train, Standardizer::Mode::global);
  ASSERT_EQ(s.mean.size(), 1u);
  ASSERT_EQ(s.stddev.size(), 1u);
  EXPECT_FLOAT_EQ(s.mean[0], 2.5f);
  EXPECT_FLOAT_EQ(s.stddev[0], std::sqrt(1.25f));
  apply(s, train);
  const float sd = std::sqrt(1.25f);
  EXPECT_FLOAT_EQ(train.features.values[0], -1.5f / sd);
  EXPECT_FLOAT_EQ(train.features.values[3], 1.5f / sd);
  EXPECT_NEAR(std::accumulate(train.features.values.begin(), train.features.values.end(), 0.0), 0.0, 1e-6);
}

TEST(Standardizer, PerFeatureUsesTrainingStatisticsOnly) {
  Dataset train{{{2, 3}, {1, 2, 7, 3, 4, 7}}, {0, 1}, 2};
  Dataset test{{{1, 3}, {5, 0, 8}}, {1}, 2};
  const Standardizer s = fit_standardizer(train, Standardizer::Mode::per_feature);
  EXPECT_EQ(s.mean, (std::vector<float>{2, 3, 7}));
  EXPECT_EQ(s.stddev, (std::vector<float>{1, 1, 1}));  // the constant third column gets 1
  apply(s, train);
  apply(s, test);
  EXPECT_EQ(train.features.values, (std::vector<float>{-1, -1, 0, 1, 1, 0}));
  EXPECT_EQ(test.features.values, (std::vector<float>{3, -3, 1}));
}

TEST(Standardizer, ConstantNonRepresentableColumnMapsToExactZero) {
  Dataset train{{{3, 1}, {0.1f, 0.1f, 0.1f}}, {0, 0, 0}, 1};
  const Standardizer s = fit_standardizer(train, Standardizer::Mode::per_feature);
  EXPECT_EQ(s.stddev[0], 1.0f);
  apply(s, train);
  EXPECT_EQ(train.features.values, (std::vector<float>{0, 0, 0}));
}

TEST(Standardizer, RejectsEmptyTrainingSetAndMismatchedDim) {
  Dataset empty{{{0, 3}, {}}, {}, 2};
  expect_error<DataError>([&] { fit_standardizer(empty, Standardizer::Mode::global); },
                          "fit_standardizer", "empty");
  Dataset train{{{2, 2}, {1, 2, 3, 4}}, {0, 1}, 2};
  const Standardizer s = fit_standardizer(train, Standardizer::Mode::per_feature);
  Dataset wide{{{1, 3}, {1, 2, 3}}, {0}, 2};
  expect_error<ShapeError>([&] { apply(s, wide); }, "apply", "expected 3 of each for 3 features");
}

// ---- splits and subsets ---------------------------------------------------------------------

TEST(Split, TakesTheLastExamplesWithoutShuffle) {
  const auto [train, validation] = split_validation(make_grid(10, 3, 4), {.validation_size = 3});
  EXPECT_EQ(train.features.shape, (std::vector<std::int64_t>{7, 3}));
  EXPECT_EQ(validation.features.shape, (std::vector<std::int64_t>{3, 3}));
  EXPECT_EQ(example_ids(train), (std::vector<std::int64_t>{0, 1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(example_ids(validation), (std::vector<std::int64_t>{7, 8, 9}));
  EXPECT_EQ(validation.features.values, (std::vector<float>{70, 71, 72, 80, 81, 82, 90, 91, 92}));
  EXPECT_EQ(validation.labels, (std::vector<std::int32_t>{3, 0, 1}));
  EXPECT_EQ(train.labels.size(), 7u);
  EXPECT_EQ(validation.num_classes, 4);
  EXPECT_EQ(train.num_classes, 4);
}

TEST(Split, ShuffledSplitIsSeededDisjointAndComplete) {
  const Dataset full = make_grid(100, 2, 5);
  const SplitOptions options{.validation_size = 30, .shuffle = true, .seed = 7};
  const auto [train, validation] = split_validation(full, options);
  const auto [train_again, validation_again] = split_validation(full, options);
  auto other_options = options;
  other_options.seed = 8;
  const auto [train_other, validation_other] = split_validation(full, other_options);

  const auto train_ids = example_ids(train);
  const auto validation_ids = example_ids(validation);
  EXPECT_EQ(train_ids.size(), 70u);
  EXPECT_EQ(validation_ids.size(), 30u);
  EXPECT_TRUE(std::is_sorted(train_ids.begin(), train_ids.end()));
  EXPECT_TRUE(std::is_sorted(validation_ids.begin(), validation_ids.end()));
  std::vector<std::int64_t> all = train_ids;
  all.insert(all.end(), validation_ids.begin(), validation_ids.end());
  std::sort(all.begin(), all.end());
  std::vector<std::int64_t> expected(100);
  std::iota(expected.begin(), expected.end(), 0);
  EXPECT_EQ(all, expected);
  for (std::size_t i = 0; i < validation_ids.size(); ++i) {
    EXPECT_EQ(validation.labels[i], validation_ids[i] % 5);
    EXPECT_EQ(validation.features.values[2 * i + 1], float(10 * validation_ids[i] + 1));
  }
  EXPECT_EQ(validation_ids, example_ids(validation_again));
  EXPECT_EQ(train_ids, example_ids(train_again));
  EXPECT_NE(validation_ids, example_ids(validation_other));
  EXPECT_NE(validation_ids, (std::vector<std::int64_t>{70, 71, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 83, 84,
                                                       85, 86, 87, 88, 89, 90, 91, 92, 93, 94, 95, 96, 97, 98, 99}));
}

TEST(Split, ShuffledSplitIsPinnedForAFixedSeed) {
  // Fisher-Yates with descent::Rng(42).below(i + 1), i = n-1 .. 1; the value was checked
  // against an independent Python implementation of mt19937_64.
  const auto [train, validation] =
      split_validation(make_grid(10, 1, 2), {.validation_size = 3, .shuffle = true, .seed = 42});
  EXPECT_EQ(example_ids(validation), (std::vector<std::int64_t>{2, 5, 6}));
}

TEST(Split, ZeroValidationKeepsEverything) {
  const auto [train, validation] = split_validation(make_grid(4, 2, 2), {.validation_size = 0});
  EXPECT_EQ(train.size(), 4);
  EXPECT_EQ(validation.size(), 0);
  EXPECT_EQ(validation.dim(), 2);
}

TEST(Split, RejectsImpossibleSizes) {
  expect_error<ConfigError>([] { split_validation(make_grid(5, 1, 2), {.validation_size = 5}); },
                            "split_validation", "validation_size is 5, expected 0 <= size < 5");
  expect_error<ConfigError>([] { split_validation(make_grid(5, 1, 2), {.validation_size = -1}); },
                            "split_validation", "validation_size is -1");
}

TEST(Subset, PicksRowsInOrderWithRepeats) {
  const Dataset data = make_grid(5, 2, 3);
  const std::vector<std::int64_t> indices{4, 0, 4};
  const Dataset picked = subset(data, indices);
  EXPECT_EQ(picked.features.shape, (std::vector<std::int64_t>{3, 2}));
  EXPECT_EQ(picked.features.values, (std::vector<float>{40, 41, 0, 1, 40, 41}));
  EXPECT_EQ(picked.labels, (std::vector<std::int32_t>{1, 0, 1}));
  EXPECT_EQ(picked.num_classes, 3);
}

TEST(Subset, RejectsIndicesOutOfRange) {
  const Dataset data = make_grid(5, 2, 3);
  const std::vector<std::int64_t> indices{0, 5};
  expect_error<ShapeError>([&] { subset(data, indices); }, "subset", "index 1 is 5, expected 0 <= index < 5");
  const std::vector<std::int64_t> negative{-1};
  expect_error<ShapeError>([&] { subset(data, negative); }, "subset", "index 0 is -1");
}

// Byte features: the statistics from histograms and the per-byte values equal what the float
// path (scale, fit_standardizer, apply) computes on the same data, bit for bit.
TEST(ByteFeatures, StandardizerAndValuesMatchTheFloatPath) {
  ByteDataset bytes;
  Dataset floats;
  const std::int64_t n = 97, d = 5;
  bytes.features.shape = floats.features.shape = {n, d};
  for (std::int64_t i = 0; i < n; ++i) {
    for (std::int64_t j = 0; j < d; ++j) {
      // feature 3 is constant; the others spread over the byte range differently
      const auto b = static_cast<std::uint8_t>(j == 3 ? 17 : (i * (7 + 13 * j) + 5 * j) % (64 + 48 * j));
      bytes.features.values.push_back(b);
      floats.features.values.push_back(static_cast<float>(b));
    }
  }
  bytes.labels.assign(n, 0);
  floats.labels.assign(n, 0);
  bytes.num_classes = floats.num_classes = 1;
  const float factor = 1.0f / 255.0f;
  scale(floats, factor);
  for (const auto mode : {Standardizer::Mode::global, Standardizer::Mode::per_feature}) {
    const Standardizer from_floats = fit_standardizer(floats, mode);
    const Standardizer from_bytes = fit_standardizer(bytes, factor, mode);
    ASSERT_EQ(from_bytes.mean.size(), from_floats.mean.size());
    for (std::size_t c = 0; c < from_floats.mean.size(); ++c) {
      EXPECT_EQ(from_bytes.mean[c], from_floats.mean[c]) << c;
      EXPECT_EQ(from_bytes.stddev[c], from_floats.stddev[c]) << c;
    }
    Dataset standardized = floats;
    apply(from_floats, standardized);
    const std::vector<float> values = byte_values(factor, &from_bytes, d);
    ASSERT_EQ(values.size(), mode == Standardizer::Mode::global ? 256u : static_cast<std::size_t>(256 * d));
    for (std::int64_t i = 0; i < n * d; ++i) {
      const std::uint8_t b = bytes.features.values[static_cast<std::size_t>(i)];
      const float v = mode == Standardizer::Mode::global ? values[b] : values[static_cast<std::size_t>(b * d + i % d)];
      ASSERT_EQ(v, standardized.features.values[static_cast<std::size_t>(i)]) << "element " << i;
    }
  }
  EXPECT_EQ(byte_values(factor, nullptr, d)[255], 255.0f * factor);
  ByteDataset empty;
  empty.features.shape = {0, 3};
  EXPECT_THROW(fit_standardizer(empty, factor, Standardizer::Mode::global), DataError);
}

// Byte features copied into a batch (Split::copy_features, the trainer's batch copy): every
// element is the value of its byte, rows picked out of order and repeated, for a row length
// that is not a multiple of the vector width, the global table and the per-feature one,
// with 1 and 2 threads (a batch large enough to split). Expected values from the byte by hand: b / 255 (+ j for per feature).
TEST(ByteFeatures, CopiedRowsAreTheValuesOfTheirBytes) {
  const std::int64_t n = 42, d = 787;  // rows first + idx up to 2 + 39 = 41 exist
  auto bytes = std::make_shared<std::vector<std::uint8_t>>(static_cast<std::size_t>(n * d));
  for (std::int64_t i = 0; i < n * d; ++i) (*bytes)[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>((i * 2654435761u) >> 24);
  std::vector<std::int64_t> idx{7, 0, 39, 7, 12, 3, 38, 21, 1, 30, 5, 5, 16, 9, 33, 2, 27, 11, 19, 24, 35};
  // 63 rows in all, 49,581 bytes: enough for the copy to split over the threads
  for (std::int64_t i = 0; i < 42; ++i) idx.push_back((i * 17 + 4) % 40);
  const int threads_before = num_threads();
  for (const bool per_feature : {false, true}) {
    std::vector<float> table(per_feature ? static_cast<std::size_t>(256 * d) : 256u);
    for (std::int64_t b = 0; b < 256; ++b) {
      for (std::int64_t j = 0; j < (per_feature ? d : 1); ++j) {
        table[static_cast<std::size_t>(b * (per_feature ? d : 1) + j)] = static_cast<float>(b) / 255.0f + static_cast<float>(j);
      }
    }
    Split s;
    s.bytes = bytes;
    s.values = std::make_shared<const std::vector<float>>(table);
    s.first = 2;
    s.features = d;
    for (const int threads : {1, 2}) {
      set_num_threads(threads);
      Tensor x;
      s.copy_features(idx, x);
      ASSERT_EQ(x.dim(0), static_cast<std::int64_t>(idx.size()));
      ASSERT_EQ(x.dim(1), d);
      const float* got = x.data<float>();
      for (std::size_t i = 0; i < idx.size(); ++i) {
        for (std::int64_t j = 0; j < d; ++j) {
          const std::uint8_t b = (*bytes)[static_cast<std::size_t>((2 + idx[i]) * d + j)];
          const float want = static_cast<float>(b) / 255.0f + (per_feature ? static_cast<float>(j) : 0.0f);
          ASSERT_EQ(got[static_cast<std::int64_t>(i) * d + j], want) << "row " << i << " feature " << j << " threads " << threads;
        }
      }
    }
  }
  set_num_threads(threads_before);
}

// The nearest bfloat16 to v (ties to the even one), by comparing the two candidates in double:
// an independent statement of round to nearest even (finite v).
std::uint16_t nearest_bf16(float v) {
  std::uint32_t u;
  std::memcpy(&u, &v, sizeof u);
  const auto lo = static_cast<std::uint16_t>(u >> 16);  // toward zero
  const auto hi = static_cast<std::uint16_t>(lo + 1);   // away from zero
  const auto widen = [](std::uint16_t h) {
    const std::uint32_t w = static_cast<std::uint32_t>(h) << 16;
    float f;
    std::memcpy(&f, &w, sizeof f);
    return static_cast<double>(f);
  };
  const double dl = std::fabs(static_cast<double>(v) - widen(lo)), dh = std::fabs(widen(hi) - static_cast<double>(v));
  if (dl != dh) return dl < dh ? lo : hi;
  return (lo & 1u) != 0 ? hi : lo;
}

// The batch's bf16 bits decoded with it (Split::copy_features' x16, the first product's input
// in a bf16 run): every element is the nearest bf16 of its float32 value, which is itself the
// copy without x16 bit for bit; byte features with the global and the per-feature table (a
// table holding a tie, a denormal, -0), rows out of order and repeated, 1 and 2 threads, the
// table replaced between copies; features held as a tensor (converted after the copy); float64
// features refused.
TEST(ByteFeatures, Bf16BitsAreTheNearestBf16OfTheCopiedValues) {
  const std::int64_t n = 42, d = 787;
  auto bytes = std::make_shared<std::vector<std::uint8_t>>(static_cast<std::size_t>(n * d));
  for (std::int64_t i = 0; i < n * d; ++i) (*bytes)[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>((i * 2654435761u) >> 24);
  std::vector<std::int64_t> idx{7, 0, 39, 7, 12, 3, 38, 21, 1, 30, 5, 5, 16, 9, 33, 2, 27, 11, 19, 24, 35};
  for (std::int64_t i = 0; i < 42; ++i) idx.push_back((i * 17 + 4) % 40);  // 63 rows: the copy splits
  const auto b = static_cast<std::int64_t>(idx.size());
  const int threads_before = num_threads();
  const auto check = [&](const Split& s, const char* what) {
    for (const int threads : {1, 2}) {
      set_num_threads(threads);
      Tensor plain, x;
      s.copy_features(idx, plain);
      std::vector<std::uint16_t> x16(static_cast<std::size_t>(b * d), 0xdeadu);
      s.copy_features(idx, x, x16.data());
      ASSERT_EQ(x.numel(), b * d);
      ASSERT_EQ(std::memcmp(x.data<float>(), plain.data<float>(), static_cast<std::size_t>(b * d) * 4), 0) << what;
      for (std::int64_t i = 0; i < b * d; ++i) {
        ASSERT_EQ(x16[static_cast<std::size_t>(i)], nearest_bf16(plain.data<float>()[i]))
            << what << ": element " << i << " (" << plain.data<float>()[i] << "), threads " << threads;
      }
    }
  };
  for (const bool per_feature : {false, true}) {
    std::vector<float> table(per_feature ? static_cast<std::size_t>(256 * d) : 256u);
    for (std::size_t i = 0; i < table.size(); ++i) table[i] = std::sin(0.37f * static_cast<float>(i + 1)) * 3.0f;
    table[0] = 1.0f + 0x1p-8f;  // a tie: to 1
    table[1] = 1.0f + 0x3p-8f;  // a tie: to 1 + 2^-6 (even)
    table[2] = 1e-40f;          // a denormal
    table[3] = -0.0f;
    Split s;
    s.bytes = bytes;
    s.values = std::make_shared<const std::vector<float>>(table);
    s.first = 2;
    s.features = d;
    check(s, per_feature ? "per-feature table" : "global table");
    for (float& v : table) v = -2.0f * v + 0.001f;  // a new table
    s.values = std::make_shared<const std::vector<float>>(table);
    check(s, per_feature ? "per-feature table, replaced" : "global table, replaced");
  }
  EXPECT_EQ(nearest_bf16(1.0f + 0x1p-8f), 0x3f80u);  // the reference itself on its ties
  EXPECT_EQ(nearest_bf16(1.0f + 0x3p-8f), 0x3f82u);
  Dataset ds;
  ds.features.shape = {n, d};
  ds.features.values.resize(static_cast<std::size_t>(n * d));
  for (std::size_t i = 0; i < ds.features.values.size(); ++i) ds.features.values[i] = std::cos(0.11f * static_cast<float>(i)) * 7.0f;
  ds.labels.assign(static_cast<std::size_t>(n), 0);
  check(to_split(ds, DType::f32), "float32 tensor");
  Tensor x;
  std::vector<std::uint16_t> x16(static_cast<std::size_t>(b * d));
  EXPECT_THROW(to_split(ds, DType::f64).copy_features(idx, x, x16.data()), ShapeError);
  set_num_threads(threads_before);
}

TEST(ByteFeatures, ValidationSplitIndicesAreThoseOfSplitValidation) {
  for (const bool shuffle : {false, true}) {
    const auto [train, validation] = validation_split_indices(10, {.validation_size = 3, .shuffle = shuffle, .seed = 4});
    EXPECT_EQ(train.size(), 7u);
    EXPECT_EQ(validation.size(), 3u);
    EXPECT_TRUE(std::is_sorted(train.begin(), train.end()));
    if (!shuffle) {
      EXPECT_EQ(validation, (std::vector<std::int64_t>{7, 8, 9}));
    }
  }
  EXPECT_THROW(validation_split_indices(10, {.validation_size = 10}), ConfigError);
}

}  // namespace
}  // namespace descent::data
