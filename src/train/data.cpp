#include "descent/train/data.hpp"

#include <algorithm>
#include <sstream>

#include "descent/data/csv.hpp"
#include "descent/data/idx.hpp"
#include "descent/data/npy.hpp"
#include "descent/error.hpp"

namespace descent::train {
namespace {

// The number of classes of integer labels 0..C-1: the largest label + 1. A label of a million
// or more is refused (a classifier with that many outputs is not what the file meant), before
// the float-to-int conversion could overflow.
std::int32_t max_label_plus_one(const data::Array& a, const std::string& a_source, const data::Array& b,
                                const std::string& b_source) {
  constexpr double kMaxClasses = 1'000'000;
  double m = 0.0;
  for (const auto& [array, source] : {std::pair{&a, &a_source}, std::pair{&b, &b_source}}) {
    for (const float v : array->values) {
      if (!(static_cast<double>(v) < kMaxClasses)) {
        std::ostringstream text;
        text << v;
        throw DataError(*source + ": label " + text.str() + " is not a class index below 1000000");
      }
      m = std::max(m, static_cast<double>(v));
    }
  }
  return static_cast<std::int32_t>(m) + 1;
}

data::TrainTest read_files(const DataConfig& c) {
  if (c.format == "csv") {
    data::CsvOptions o;
    o.label_column = c.csv_label_column;
    o.header = c.csv_header ? data::CsvOptions::Header::yes : data::CsvOptions::Header::no;
    data::TrainTest tt{data::read_csv(c.train_features, o), data::read_csv(c.test_features, o)};
    const std::int32_t classes = std::max(tt.train.num_classes, tt.test.num_classes);
    tt.train.num_classes = tt.test.num_classes = classes;
    return tt;
  }
  auto read = [&](const std::string& path) { return c.format == "idx" ? data::read_idx(path) : data::read_npy(path); };
  data::Array train_x = read(c.train_features), train_y = read(c.train_labels);
  data::Array test_x = read(c.test_features), test_y = read(c.test_labels);
  const std::int32_t classes = max_label_plus_one(train_y, c.train_labels, test_y, c.test_labels);
  return {data::make_dataset(std::move(train_x), train_y, classes, c.train_labels),
          data::make_dataset(std::move(test_x), test_y, classes, c.test_labels)};
}

}  // namespace

Data load_data(const TrainConfig& config) {
  const DataConfig& c = config.data;
  data::PrepareOptions o;
  o.limit_train = c.limit_train;
  o.limit_test = c.limit_test;
  o.scale = c.scale;
  o.validation_size = c.validation_size;
  o.validation_shuffle = c.validation_shuffle;
  o.seed = config.seed;
  if (c.standardize != "none") {
    o.standardize = c.standardize == "global" ? data::Standardizer::Mode::global : data::Standardizer::Mode::per_feature;
  }
  o.dtype = config.model.dtype == "f64" ? DType::f64 : DType::f32;
  const auto prepare = [&](auto files) {
    try {
      return data::prepare(std::move(files), o);
    } catch (const ConfigError& e) {
      const std::string what = e.what();
      if (what.starts_with("validation_size")) throw ConfigError(config.source + ": data." + what);
      throw;
    }
  };
  // MNIST-format folders stay bytes (data::load_mnist_dir_bytes).
  if (c.format == "mnist") return prepare(data::load_mnist_dir_bytes(c.dir));
  return prepare(read_files(c));
}

}  // namespace descent::train
