#include "descent/train/data.hpp"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <sstream>

#include "descent/data/csv.hpp"
#include "descent/data/idx.hpp"
#include "descent/data/npy.hpp"
#include "descent/data/shards.hpp"
#include "descent/error.hpp"
#include "descent/train/distributed.hpp"

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

// A held-out part of a shard set, read whole, with the features scaled as data::scale does.
data::Split held_out(const std::filesystem::path& dir, const data::ShardIndex& index, const data::ShardPart& part,
                     float factor, DType dtype) {
  const std::int64_t d = index.dim();
  data::Dataset out;
  out.num_classes = index.classes;
  out.features.shape = {part.examples(), d};
  out.features.values.reserve(static_cast<std::size_t>(part.examples() * d));
  for (const data::ShardEntry& e : part.shards) {
    const data::Shard s = data::read_shard(dir, e, index);
    out.labels.insert(out.labels.end(), s.labels.begin(), s.labels.end());
    const std::uint8_t* f = s.features();
    if (index.dtype == data::ShardDType::u8) {
      for (std::size_t i = 0; i < s.feature_bytes(); ++i) out.features.values.push_back(static_cast<float>(f[i]) * factor);
    } else {
      const std::size_t n = s.feature_bytes() / 4;
      for (std::size_t i = 0; i < n; ++i) {
        float v = 0;
        std::memcpy(&v, f + i * 4, 4);
        out.features.values.push_back(v * factor);
      }
    }
  }
  return data::to_split(out, dtype);
}

// data.format = "sharded": the training part streamed from its shards, validation and test
// read whole (docs/data.md, "Sharded data sets").
Data load_sharded(const TrainConfig& config) {
  const DataConfig& c = config.data;
  if (c.standardize != "none")
    throw ConfigError(config.source + ": data.standardize = \"" + c.standardize +
                      "\" needs the statistics of the whole training set; with data.format = \"sharded\" it must be \"none\"");
  const std::string& kind = config.sampler.kind;
  if (kind != "stream" && kind != "sequential" && kind != "shuffle_once")
    throw ConfigError(config.source + ": sampler.kind = \"" + kind +
                      "\" draws examples at random; a sharded data set is read in order: use \"stream\", \"sequential\" or \"shuffle_once\"");
  const std::filesystem::path dir = c.dir;
  data::ShardIndex index = data::read_shard_index(dir);
  const auto factor = static_cast<float>(c.scale);
  const DType dtype = config.model.dtype == "f64" ? DType::f64 : DType::f32;
  Data d;
  d.num_classes = index.classes;
  d.dim = index.dim();
  d.validation = held_out(dir, index, index.validation, factor, dtype);
  d.test = held_out(dir, index, index.test, factor, dtype);
  // Shard groups: rank r of P reads groups [r G / P, (r+1) G / P) alone (docs/data.md).
  const std::int64_t groups = c.shard_groups;
  const auto shards = static_cast<std::int64_t>(index.train.shards.size());
  if (groups > shards)
    throw ConfigError(config.source + ": data.shard_groups = " + std::to_string(groups) + " is more than the " +
                      std::to_string(shards) + " training shards of " + c.dir);
  if (groups > 1 && (config.sampler.batch_size <= 0 || config.sampler.batch_size % groups != 0))
    throw ConfigError(config.source + ": sampler.batch_size = " + std::to_string(config.sampler.batch_size) +
                      " is not a multiple of data.shard_groups = " + std::to_string(groups) +
                      " (each batch takes batch_size / shard_groups examples of each group)");
  if (groups > 1 && config.deterministic && (groups & (groups - 1)) != 0)
    throw ConfigError(config.source + ": data.shard_groups = " + std::to_string(groups) +
                      " with deterministic = true must be a power of two (the groups are the top of the reduction tree)");
  const Communicator& world = Communicator::world();
  const std::int64_t p = world.size(), r = world.rank();
  if (groups % p != 0)
    throw ConfigError(config.source + ": data.shard_groups = " + std::to_string(groups) + " cannot be shared out over " +
                      std::to_string(p) + " ranks (mpirun -np " + std::to_string(p) +
                      "): each rank reads whole groups of shards, so the number of ranks must divide data.shard_groups; "
                      "set it to a multiple of " + std::to_string(p) + " (the batches depend on it, not on the ranks)");
  if (world.distributed()) data::set_shard_trace_rank(world.rank());
  auto stream = std::make_shared<data::ShardStream>(dir, std::move(index), factor, groups, groups * r / p,
                                                    groups * (r + 1) / p);
  d.train.dtype = dtype;
  d.train.features = d.dim;
  d.train.y = Tensor::from<std::int32_t>({stream->size()}, std::span<const std::int32_t>(stream->labels()));
  d.train.stream = std::move(stream);
  return d;
}

}  // namespace

data::TrainTest read_data_files(const DataConfig& c) {
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

Data load_data(const TrainConfig& config) {
  const DataConfig& c = config.data;
  if (c.format == "sharded") return load_sharded(config);
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
  return prepare(read_data_files(c));
}

}  // namespace descent::train
