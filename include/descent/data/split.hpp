#pragma once
// The data a training run works on: its train, validation and test splits, preprocessed
// (limits, scale, validation split, standardization with the training part's statistics),
// ready to be copied minibatch by minibatch into batch tensors.
//
//   data::Data d = data::prepare(data::load_mnist_dir_bytes(dir), {.validation_size = 10000});
//   d.train.gather(indices, x, y);  // x [b, 784] f32, y [b] i32
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "descent/data/dataset.hpp"
#include "descent/tensor/tensor.hpp"

namespace descent::data {

class ShardStream;  // data/shards.hpp

// A data split: labels i32 [n] and features [n, d] of the model's dtype. The features are a
// tensor, or (Fashion-MNIST and other MNIST-format data: unsigned bytes) the bytes themselves
// with the value each byte stands for after scaling and standardization: a quarter of the
// memory, decoded as rows are copied into a batch (bit for bit the values of the float path).
struct Split {
  Tensor x;  // [n, d], or undefined when the features are bytes
  Tensor y;  // i32 [n]
  std::shared_ptr<const std::vector<std::uint8_t>> bytes;  // byte features: rows [first, first + n) of [*, d]
  std::shared_ptr<const std::vector<float>> values;        // value of byte b: [b] or, per feature j, [b * d + j]
  std::int64_t first = 0, features = 0;
  DType dtype = DType::f32;
  // A sharded training set (data/shards.hpp): the labels are in y, the features are read
  // from the shards as rows are copied (x undefined, bytes null).
  std::shared_ptr<ShardStream> stream;

  std::int64_t size() const { return y.defined() ? y.dim(0) : 0; }
  std::int64_t dim() const { return x.defined() ? x.dim(1) : features; }
  // The features of rows [begin, end): a view of x, or the rows decoded into `buffer`
  // (reallocated when its shape differs).
  Tensor rows(std::int64_t begin, std::int64_t end, Tensor& buffer) const;
  // Copies the examples at `idx` into x [b, d] and y [b] (reallocated when b changes).
  // x16 (float32 features only; null: none): also the bfloat16 bits of the same b x d values,
  // row-major, bit for bit what converting x afterwards gives (round to nearest even), for the
  // first product of a bf16 run (model.dtype = "bf16"). Byte features convert each value in
  // registers as they decode it (one pass: no float32 batch read back); other features are
  // converted after the copy.
  void gather(std::span<const std::int64_t> idx, Tensor& x_out, Tensor& y_out, std::uint16_t* x16 = nullptr) const;
  // The same for the features alone.
  void copy_features(std::span<const std::int64_t> idx, Tensor& x_out, std::uint16_t* x16 = nullptr) const;
};

struct Data {
  Split train, validation, test;
  std::int32_t num_classes = 0;
  std::int64_t dim = 0;
  std::optional<Standardizer> standardizer;  // the training split's statistics, when standardized
};

// How prepare() turns files into splits.
struct PrepareOptions {
  std::int64_t limit_train = 0, limit_test = 0;  // keep the first N examples of each file (0: all)
  double scale = 1.0;                            // features are multiplied by it first
  std::int64_t validation_size = 0;              // carved out of the training file (0: none)
  bool validation_shuffle = false;               // as SplitOptions::shuffle
  std::uint64_t seed = 0;                        // of a shuffled validation split
  std::optional<Standardizer::Mode> standardize;  // fitted on the training part only
  DType dtype = DType::f32;                      // of the feature tensors
};

// The splits of a training and a test file: limits, scale, validation split (as
// split_validation), standardization fitted on the training part and applied to all three.
// Throws ConfigError "validation_size = N leaves no training examples ..." when the
// validation part would take every example, and the errors of scale and apply.
Data prepare(TrainTest files, const PrepareOptions& options);
// The same for byte images (load_mnist_dir_bytes): the splits keep the bytes and the table of
// their values; the split, the statistics and the values are those of the float path.
Data prepare(ByteTrainTest files, const PrepareOptions& options);

// A split holding `d` as tensors of `dtype`.
Split to_split(const Dataset& d, DType dtype);

}  // namespace descent::data
