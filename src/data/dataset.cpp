#include "descent/data/dataset.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <sstream>
#include <system_error>

#include "descent/data/idx.hpp"
#include "descent/error.hpp"
#include "descent/init/rng.hpp"

namespace descent::data {
namespace {

std::filesystem::path find_idx_file(const std::filesystem::path& dir, const std::string& stem) {
  std::error_code error;
  const auto plain = dir / stem;
  if (std::filesystem::is_regular_file(plain, error)) return plain;
  const auto compressed = dir / (stem + ".gz");
  if (std::filesystem::is_regular_file(compressed, error)) return compressed;
  throw IoError(dir.string() + ": neither " + stem + " nor " + stem + ".gz found");
}

// Checks an images/labels pair of shapes [n, rows, cols] and [n].
void check_mnist_pair(const std::vector<std::int64_t>& images_shape, const Array& labels,
                      const std::filesystem::path& images_path, const std::filesystem::path& labels_path) {
  if (images_shape.size() != 3) {
    throw DataError(images_path.string() + ": images have shape " + shape_string(images_shape) +
                    ", expected 3 dimensions [n, rows, cols]");
  }
  if (labels.shape.size() != 1) {
    throw DataError(labels_path.string() + ": labels have shape " + shape_string(labels.shape) +
                    ", expected 1 dimension [n]");
  }
  if (labels.rows() != images_shape.front()) {
    throw DataError(labels_path.string() + ": holds " + std::to_string(labels.rows()) +
                    " labels, expected " + std::to_string(images_shape.front()) + " (the images in " +
                    images_path.filename().string() + ")");
  }
}

Dataset load_mnist_pair(const std::filesystem::path& dir, const std::string& prefix,
                        std::int32_t num_classes) {
  const auto images_path = find_idx_file(dir, prefix + "-images-idx3-ubyte");
  const auto labels_path = find_idx_file(dir, prefix + "-labels-idx1-ubyte");
  Array images = read_idx(images_path);
  const Array labels = read_idx(labels_path);
  check_mnist_pair(images.shape, labels, images_path, labels_path);
  return make_dataset(std::move(images), labels, num_classes, labels_path.string());
}

ByteDataset load_mnist_pair_bytes(const std::filesystem::path& dir, const std::string& prefix,
                                  std::int32_t num_classes) {
  const auto images_path = find_idx_file(dir, prefix + "-images-idx3-ubyte");
  const auto labels_path = find_idx_file(dir, prefix + "-labels-idx1-ubyte");
  ByteDataset d;
  d.features = read_idx_bytes_cached(images_path);
  const Array labels = read_idx(labels_path);
  check_mnist_pair(d.features.shape, labels, images_path, labels_path);
  d.features.shape = {d.features.shape[0], d.features.shape[1] * d.features.shape[2]};
  d.labels = to_labels(labels, num_classes, labels_path.string());
  d.num_classes = num_classes;
  return d;
}

// Copies the rows at `indices` (already bounds-checked) of `source` into a new Dataset.
Dataset gather(const Dataset& source, std::span<const std::int64_t> indices) {
  const auto d = static_cast<std::size_t>(source.dim());
  Dataset result;
  result.num_classes = source.num_classes;
  result.features.shape = {static_cast<std::int64_t>(indices.size()), source.dim()};
  result.features.values.resize(indices.size() * d);
  result.labels.resize(indices.size());
  for (std::size_t i = 0; i < indices.size(); ++i) {
    const auto row = static_cast<std::size_t>(indices[i]);
    std::copy_n(source.features.values.begin() + static_cast<std::ptrdiff_t>(row * d), d,
                result.features.values.begin() + static_cast<std::ptrdiff_t>(i * d));
    result.labels[i] = source.labels[row];
  }
  return result;
}

}  // namespace

void validate(const Dataset& dataset, const std::string& source) {
  const Array& features = dataset.features;
  if (features.shape.size() != 2 || features.shape[0] < 0 || features.shape[1] < 0) {
    throw ShapeError(source + ": features have shape " + shape_string(features.shape) +
                     ", expected 2 dimensions [n, d]");
  }
  const auto count = checked_product(features.shape);
  if (!count || static_cast<std::size_t>(*count) != features.values.size()) {
    throw ShapeError(source + ": features have shape " + shape_string(features.shape) + " but " +
                     std::to_string(features.values.size()) + " values");
  }
  if (static_cast<std::int64_t>(dataset.labels.size()) != features.rows()) {
    throw ShapeError(source + ": " + std::to_string(dataset.labels.size()) + " labels for " +
                     std::to_string(features.rows()) + " examples");
  }
  if (dataset.num_classes < 1) {
    throw DataError(source + ": num_classes is " + std::to_string(dataset.num_classes) +
                    ", expected at least 1");
  }
  for (std::size_t i = 0; i < dataset.labels.size(); ++i) {
    const std::int32_t label = dataset.labels[i];
    if (label < 0 || label >= dataset.num_classes) {
      throw DataError(source + ": label " + std::to_string(i) + " is " + std::to_string(label) +
                      ", expected an integer in [0, " + std::to_string(dataset.num_classes) + ")");
    }
  }
}

Dataset make_dataset(Array features, const Array& labels, std::int32_t num_classes,
                     const std::string& source) {
  if (features.shape.empty()) {
    throw DataError(source + ": features have no dimensions, expected [n, ...]");
  }
  Dataset dataset;
  dataset.labels = to_labels(labels, num_classes, source);
  if (static_cast<std::int64_t>(dataset.labels.size()) != features.rows()) {
    throw DataError(source + ": holds " + std::to_string(dataset.labels.size()) +
                    " labels, expected " + std::to_string(features.rows()) +
                    " (one per example)");
  }
  const std::int64_t rows = features.rows();
  const std::int64_t d = features.row_size();
  dataset.features = std::move(features);
  dataset.features.shape = {rows, d};
  dataset.num_classes = num_classes;
  return dataset;
}

namespace {

// The train and t10k pairs of an MNIST folder through `load_pair(dir, prefix, classes)`,
// with the checks both loaders share: the folder exists, both image sizes agree.
template <class Result, class LoadPair>
Result load_mnist_folder(const std::filesystem::path& dir, const MnistOptions& options, LoadPair load_pair) {
  std::error_code error;
  if (!std::filesystem::is_directory(dir, error)) {
    throw IoError(dir.string() + ": no such directory (expected the four MNIST IDX files)");
  }
  Result data;
  data.train = load_pair(dir, "train", options.num_classes);
  data.test = load_pair(dir, "t10k", options.num_classes);
  if (data.train.dim() != data.test.dim()) {
    throw DataError(dir.string() + ": train images have " + std::to_string(data.train.dim()) +
                    " pixels, test images " + std::to_string(data.test.dim()) +
                    ", expected the same");
  }
  return data;
}

}  // namespace

TrainTest load_mnist_dir(const std::filesystem::path& dir, const MnistOptions& options) {
  return load_mnist_folder<TrainTest>(dir, options, load_mnist_pair);
}

ByteTrainTest load_mnist_dir_bytes(const std::filesystem::path& dir, const MnistOptions& options) {
  return load_mnist_folder<ByteTrainTest>(dir, options, load_mnist_pair_bytes);
}

void scale(Dataset& dataset, float factor) {
  if (!std::isfinite(factor)) {
    throw ConfigError("scale: factor is " + std::to_string(factor) + ", expected a finite number");
  }
  for (float& value : dataset.features.values) value *= factor;
}

Standardizer fit_standardizer(const Dataset& train, Standardizer::Mode mode) {
  validate(train, "fit_standardizer");
  const auto n = static_cast<std::size_t>(train.size());
  const auto d = static_cast<std::size_t>(train.dim());
  if (n == 0 || d == 0) {
    throw DataError("fit_standardizer: the training set is empty (" +
                    shape_string(train.features.shape) + "), expected at least one value");
  }
  // Column c of the statistics covers feature c (per_feature) or every feature (global).
  const std::size_t stats = mode == Standardizer::Mode::global ? 1 : d;
  const auto column = [&](std::size_t j) { return stats == 1 ? 0 : j; };
  const float* x = train.features.values.data();

  std::vector<double> sum(stats, 0.0);
  std::vector<float> low(stats, x[0]);
  std::vector<float> high(stats, x[0]);
  for (std::size_t j = 0; j < d; ++j) low[column(j)] = high[column(j)] = x[j];
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t j = 0; j < d; ++j) {
      const float value = x[i * d + j];
      const std::size_t c = column(j);
      sum[c] += value;
      low[c] = std::min(low[c], value);
      high[c] = std::max(high[c], value);
    }
  }
  const double per_column = static_cast<double>(n) * static_cast<double>(d / stats);
  std::vector<double> mean(stats);
  for (std::size_t c = 0; c < stats; ++c) mean[c] = sum[c] / per_column;
  std::vector<double> squares(stats, 0.0);
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t j = 0; j < d; ++j) {
      const double delta = x[i * d + j] - mean[column(j)];
      squares[column(j)] += delta * delta;
    }
  }

  Standardizer standardizer;
  standardizer.mode = mode;
  standardizer.mean.resize(stats);
  standardizer.stddev.resize(stats);
  for (std::size_t c = 0; c < stats; ++c) {
    if (low[c] == high[c]) {
      standardizer.mean[c] = low[c];
      standardizer.stddev[c] = 1.0f;
    } else {
      standardizer.mean[c] = static_cast<float>(mean[c]);
      standardizer.stddev[c] = static_cast<float>(std::sqrt(squares[c] / per_column));
    }
  }
  return standardizer;
}

Standardizer fit_standardizer(const ByteDataset& train, float factor, Standardizer::Mode mode) {
  std::vector<std::int64_t> rows(static_cast<std::size_t>(train.size()));
  std::iota(rows.begin(), rows.end(), 0);
  return fit_standardizer(train, rows, factor, mode);
}

Standardizer fit_standardizer(const ByteDataset& data, std::span<const std::int64_t> rows, float factor,
                              Standardizer::Mode mode) {
  const auto n = rows.size();
  const auto d = static_cast<std::size_t>(data.dim());
  if (n == 0 || d == 0) {
    throw DataError("fit_standardizer: the training set is empty (" + std::to_string(n) + " of " +
                    shape_string(data.features.shape) + "), expected at least one value");
  }
  const std::size_t stats = mode == Standardizer::Mode::global ? 1 : d;
  std::vector<std::int64_t> counts(stats * 256, 0);
  for (const std::int64_t r : rows) {
    const std::uint8_t* x = data.features.values.data() + static_cast<std::size_t>(r) * d;
    for (std::size_t j = 0; j < d; ++j) ++counts[(stats == 1 ? 0 : j) * 256 + x[j]];
  }
  const double per_column = static_cast<double>(n) * static_cast<double>(d / stats);
  Standardizer standardizer;
  standardizer.mode = mode;
  standardizer.mean.resize(stats);
  standardizer.stddev.resize(stats);
  for (std::size_t c = 0; c < stats; ++c) {
    const std::int64_t* h = &counts[c * 256];
    double sum = 0.0;
    int low = 256, high = -1;
    for (int b = 0; b < 256; ++b) {
      if (h[b] == 0) continue;
      sum += static_cast<double>(h[b]) * static_cast<double>(static_cast<float>(b) * factor);
      low = std::min(low, b);
      high = std::max(high, b);
    }
    const double mean = sum / per_column;
    double squares = 0.0;
    for (int b = low; b <= high; ++b) {
      const double delta = static_cast<double>(static_cast<float>(b) * factor) - mean;
      squares += static_cast<double>(h[b]) * delta * delta;
    }
    if (low == high) {
      standardizer.mean[c] = static_cast<float>(low) * factor;
      standardizer.stddev[c] = 1.0f;
    } else {
      standardizer.mean[c] = static_cast<float>(mean);
      standardizer.stddev[c] = static_cast<float>(std::sqrt(squares / per_column));
    }
  }
  return standardizer;
}

std::vector<float> byte_values(float factor, const Standardizer* standardizer, std::int64_t d) {
  const bool per_feature = standardizer != nullptr && standardizer->mode == Standardizer::Mode::per_feature;
  const std::int64_t width = per_feature ? d : 1;
  Dataset table;
  table.num_classes = 1;
  table.features.shape = {256, width};
  table.features.values.resize(static_cast<std::size_t>(256 * width));
  table.labels.assign(256, 0);
  for (std::int64_t b = 0; b < 256; ++b) {
    for (std::int64_t j = 0; j < width; ++j) table.features.values[static_cast<std::size_t>(b * width + j)] = static_cast<float>(b);
  }
  scale(table, factor);
  if (standardizer != nullptr) apply(*standardizer, table);
  return std::move(table.features.values);
}

void apply(const Standardizer& standardizer, Dataset& dataset) {
  const auto d = static_cast<std::size_t>(dataset.dim());
  const std::size_t stats = standardizer.mode == Standardizer::Mode::global ? 1 : d;
  if (standardizer.mean.size() != stats || standardizer.stddev.size() != stats) {
    throw ShapeError("apply: standardizer has " + std::to_string(standardizer.mean.size()) +
                     " means and " + std::to_string(standardizer.stddev.size()) +
                     " stddevs, expected " + std::to_string(stats) + " of each for " +
                     std::to_string(d) + " features");
  }
  for (std::size_t c = 0; c < stats; ++c) {
    if (!(standardizer.stddev[c] > 0.0f) || !std::isfinite(standardizer.stddev[c]) ||
        !std::isfinite(standardizer.mean[c])) {
      throw ShapeError("apply: standardizer entry " + std::to_string(c) +
                       " has mean " + std::to_string(standardizer.mean[c]) + " and stddev " +
                       std::to_string(standardizer.stddev[c]) +
                       ", expected finite values and stddev > 0");
    }
  }
  float* x = dataset.features.values.data();
  const std::size_t n = d == 0 ? 0 : dataset.features.values.size() / d;
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t j = 0; j < d; ++j) {
      const std::size_t c = stats == 1 ? 0 : j;
      x[i * d + j] = (x[i * d + j] - standardizer.mean[c]) / standardizer.stddev[c];
    }
  }
}

std::pair<std::vector<std::int64_t>, std::vector<std::int64_t>> validation_split_indices(std::int64_t n,
                                                                                        const SplitOptions& options) {
  if (options.validation_size < 0 || options.validation_size >= n) {
    throw ConfigError("split_validation: validation_size is " +
                      std::to_string(options.validation_size) + ", expected 0 <= size < " +
                      std::to_string(n) + " (the training examples)");
  }
  const std::int64_t train_size = n - options.validation_size;
  std::vector<std::int64_t> order(static_cast<std::size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  if (options.shuffle) {
    Rng rng(options.seed);
    for (std::size_t i = order.size() - 1; i > 0; --i) {
      std::swap(order[i], order[rng.below(i + 1)]);
    }
  }
  const auto middle = order.begin() + train_size;
  std::sort(order.begin(), middle);
  std::sort(middle, order.end());
  std::vector<std::int64_t> validation(middle, order.end());
  order.resize(static_cast<std::size_t>(train_size));
  return {std::move(order), std::move(validation)};
}

std::pair<Dataset, Dataset> split_validation(Dataset full, const SplitOptions& options) {
  validate(full, "split_validation");
  const auto [train, validation] = validation_split_indices(full.size(), options);
  if (!options.shuffle) {
    Dataset tail = gather(full, validation);
    const auto train_size = static_cast<std::int64_t>(train.size());
    full.features.values.resize(static_cast<std::size_t>(train_size * full.dim()));
    full.features.shape[0] = train_size;
    full.labels.resize(static_cast<std::size_t>(train_size));
    return {std::move(full), std::move(tail)};
  }
  return {gather(full, train), gather(full, validation)};
}

Dataset subset(const Dataset& dataset, std::span<const std::int64_t> indices) {
  validate(dataset, "subset");
  const std::int64_t n = dataset.size();
  for (std::size_t i = 0; i < indices.size(); ++i) {
    if (indices[i] < 0 || indices[i] >= n) {
      throw ShapeError("subset: index " + std::to_string(i) + " is " + std::to_string(indices[i]) +
                       ", expected 0 <= index < " + std::to_string(n));
    }
  }
  return gather(dataset, indices);
}

}  // namespace descent::data
