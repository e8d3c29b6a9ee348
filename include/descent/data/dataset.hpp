#pragma once
// The in-memory data a training run sees, its loaders and its preprocessing.
//
// A Dataset holds n examples: features of shape [n, d] (float32, row-major) and n integer
// labels in [0, num_classes). Everything here keeps that invariant or throws.
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "descent/data/array.hpp"

namespace descent::data {

struct Dataset {
  Array features;                    // shape [n, d]
  std::vector<std::int32_t> labels;  // n labels in [0, num_classes)
  std::int32_t num_classes = 0;

  std::int64_t size() const { return features.rows(); }     // n
  std::int64_t dim() const { return features.row_size(); }  // d
};

// Checks the Dataset invariant: features are 2-D [n, d] with n * d values, there are n
// labels, each in [0, num_classes), num_classes >= 1. Throws ShapeError (shapes) or
// DataError (labels), naming `source`. O(n).
void validate(const Dataset& dataset, const std::string& source);

// A Dataset from a features array of shape [n, ...] (flattened to [n, d]) and a labels
// array of shape [n] or [n, 1] (see to_labels). Throws DataError naming `source` if the
// counts differ or a label is not an integer in [0, num_classes).
Dataset make_dataset(Array features, const Array& labels, std::int32_t num_classes,
                     const std::string& source);

// ---- MNIST / Fashion-MNIST ---------------------------------------------------------------

// Where Debian's dataset-fashion-mnist package installs Fashion-MNIST.
inline constexpr const char* default_mnist_dir = "/usr/share/datasets/fashion-mnist";

struct MnistOptions {
  std::int32_t num_classes = 10;
};

struct TrainTest {
  Dataset train;
  Dataset test;
};

// Loads MNIST or Fashion-MNIST (Xiao, Rasul, Vollgraf 2017, arXiv:1708.07747) from a
// directory holding train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte
// and t10k-labels-idx1-ubyte, each plain or with a .gz suffix (the plain file is preferred
// when both exist). Images [n, rows, cols] are flattened to [n, rows * cols] (784 for
// 28x28) with their raw values (0..255 for ubyte); the image and label counts must match,
// and train and test images must have the same size.
// Throws IoError (directory or file missing) or the errors of read_idx / to_labels.
// Cost: reads and decompresses all four files (about 1 s for Fashion-MNIST).
TrainTest load_mnist_dir(const std::filesystem::path& dir = default_mnist_dir,
                         const MnistOptions& options = {});

// The same files with the images kept as bytes (0..255), a quarter of the memory: for a
// trainer that scales and standardizes each batch as it copies it (train/trainer.cpp).
// Throws as load_mnist_dir, and DataError when an images file does not hold unsigned bytes.
struct ByteDataset {
  ByteArray features;                // shape [n, d]
  std::vector<std::int32_t> labels;  // n labels in [0, num_classes)
  std::int32_t num_classes = 0;
  std::int64_t size() const { return features.rows(); }
  std::int64_t dim() const { return features.row_size(); }
};
struct ByteTrainTest {
  ByteDataset train;
  ByteDataset test;
};
ByteTrainTest load_mnist_dir_bytes(const std::filesystem::path& dir = default_mnist_dir,
                                   const MnistOptions& options = {});

// ---- preprocessing ------------------------------------------------------------------------

// Multiplies every feature by `factor` (e.g. 1/255 maps 0..255 pixels to [0, 1]).
// Throws ConfigError if factor is not finite.
void scale(Dataset& dataset, float factor);

// Standardization x -> (x - mean) / stddev with statistics of the TRAINING set only, so
// that no information from validation or test data leaks into the model.
struct Standardizer {
  enum class Mode { global, per_feature };
  Mode mode = Mode::global;
  std::vector<float> mean;    // size 1 (global) or d (per_feature)
  std::vector<float> stddev;  // population standard deviation; 1 for a constant feature
};

// Computes mean and population standard deviation (in double precision, two passes) over
// all features (global) or per feature column. A constant feature (all values equal) gets
// stddev 1, so it maps to exactly 0. Throws DataError if the training set is empty.
Standardizer fit_standardizer(const Dataset& train, Standardizer::Mode mode);

// Applies the standardizer in place. Throws ShapeError if a per_feature standardizer's
// size differs from the dataset's dim, or the standardizer is malformed.
void apply(const Standardizer& standardizer, Dataset& dataset);

// The same statistics for byte features scaled by `factor` (x = byte * factor in float, as
// scale() computes it), from per-feature histograms of the bytes: O(n d) time, O(256 d)
// memory, no float copy of the data.
Standardizer fit_standardizer(const ByteDataset& train, float factor, Standardizer::Mode mode);
// The same over the rows `rows` of `data` alone (the training part of a split), in place.
Standardizer fit_standardizer(const ByteDataset& data, std::span<const std::int64_t> rows, float factor,
                              Standardizer::Mode mode);

// What each byte value stands for after scale(factor) and then `standardizer` (nullptr: none),
// computed with those functions on a 256-row table, so the values are the ones the float path
// gives bit for bit: 256 floats (global or no standardizer) or 256 per feature, value of byte b
// of feature j at [b * d + j]. Throws as scale and apply.
std::vector<float> byte_values(float factor, const Standardizer* standardizer, std::int64_t d);

// ---- splits -------------------------------------------------------------------------------

struct SplitOptions {
  std::int64_t validation_size = 10000;
  bool shuffle = false;  // false: the last validation_size examples are the validation set
  std::uint64_t seed = 0;
};

// Carves a validation set out of a training set: {train, validation}. Without shuffle the
// validation set is the last `validation_size` examples; with shuffle it is a random subset
// drawn by a Fisher-Yates shuffle of the indices with descent::Rng(seed) (the same seed
// gives the same split on every platform). Both parts keep the original relative order of
// their examples. Throws ConfigError unless 0 <= validation_size < n. O(n * d).
std::pair<Dataset, Dataset> split_validation(Dataset full, const SplitOptions& options = {});

// The example indices of each part of that split, in increasing order: {train, validation}.
// Throws ConfigError as split_validation.
std::pair<std::vector<std::int64_t>, std::vector<std::int64_t>> validation_split_indices(std::int64_t n,
                                                                                        const SplitOptions& options);

// The examples at `indices`, in that order (repeats allowed).
// Throws ShapeError if an index is outside [0, n), or the errors of validate.
// O(n + indices.size() * d).
Dataset subset(const Dataset& dataset, std::span<const std::int64_t> indices);

}  // namespace descent::data
