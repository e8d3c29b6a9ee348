// descent shard: writes the training set of a config's [data] section as a shard set
// (data/shards.hpp, docs/data.md "Sharded data sets"), shuffled once, optionally augmented
// by shifted copies, for data.format = "sharded".
#include <chrono>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "commands.hpp"
#include "descent/data/dataset.hpp"
#include "descent/data/shards.hpp"
#include "descent/error.hpp"
#include "descent/init/rng.hpp"
#include "descent/io/atomic_file.hpp"
#include "descent/train/config.hpp"
#include "descent/train/data.hpp"

namespace descent::cli {
namespace {

namespace fs = std::filesystem;

// The examples of one file as raw bytes: rows of `row_bytes`, u8 pixels or f32 values.
struct Source {
  data::ShardDType dtype = data::ShardDType::f32;
  std::vector<std::int64_t> shape;  // per example
  std::vector<std::uint8_t> bytes;
  std::vector<std::int32_t> labels;
  std::int64_t dim = 0;
  std::size_t row_bytes() const { return static_cast<std::size_t>(dim) * (dtype == data::ShardDType::u8 ? 1 : 4); }
  std::int64_t size() const { return static_cast<std::int64_t>(labels.size()); }
};

Source from_bytes(data::ByteDataset d, const std::vector<std::int64_t>& shape) {
  Source s;
  s.dtype = data::ShardDType::u8;
  s.shape.assign(shape.begin() + 1, shape.end());
  s.dim = d.dim();
  s.bytes = std::move(d.features.values);
  s.labels = std::move(d.labels);
  return s;
}

Source from_floats(const data::Dataset& d) {
  Source s;
  s.dtype = data::ShardDType::f32;
  s.shape.assign(d.features.shape.begin() + 1, d.features.shape.end());
  if (s.shape.empty()) s.shape = {1};
  s.dim = d.dim();
  s.bytes.resize(d.features.values.size() * 4);
  std::memcpy(s.bytes.data(), d.features.values.data(), s.bytes.size());
  s.labels = d.labels;
  return s;
}

// The copies of each training example: (0, 0) first, then every other shift (dy, dx) in
// [-K, K]^2 in row-major order.
std::vector<std::pair<int, int>> shifts(std::int64_t k) {
  std::vector<std::pair<int, int>> out = {{0, 0}};
  for (int dy = static_cast<int>(-k); dy <= k; ++dy) {
    for (int dx = static_cast<int>(-k); dx <= k; ++dx) {
      if (dy != 0 || dx != 0) out.emplace_back(dy, dx);
    }
  }
  return out;
}

// Row `row` of `s` shifted by (dy, dx) over its last two dimensions (zeros shifted in) into dst.
void shifted_row(const Source& s, std::int64_t row, std::pair<int, int> shift, std::uint8_t* dst) {
  const std::uint8_t* src = s.bytes.data() + static_cast<std::size_t>(row) * s.row_bytes();
  if (shift.first == 0 && shift.second == 0) {
    std::memcpy(dst, src, s.row_bytes());
    return;
  }
  const std::size_t e = s.dtype == data::ShardDType::u8 ? 1 : 4;
  const std::int64_t h = s.shape[s.shape.size() - 2], w = s.shape.back();
  const std::int64_t planes = s.dim / (h * w);
  std::memset(dst, 0, s.row_bytes());
  for (std::int64_t p = 0; p < planes; ++p) {
    for (std::int64_t y = 0; y < h; ++y) {
      const std::int64_t sy = y - shift.first;
      if (sy < 0 || sy >= h) continue;
      for (std::int64_t x = 0; x < w; ++x) {
        const std::int64_t sx = x - shift.second;
        if (sx < 0 || sx >= w) continue;
        std::memcpy(dst + static_cast<std::size_t>((p * h + y) * w + x) * e,
                    src + static_cast<std::size_t>((p * h + sy) * w + sx) * e, e);
      }
    }
  }
}

class Writer {
 public:
  Writer(fs::path dir, std::int64_t shard_size) : dir_(std::move(dir)), shard_size_(shard_size) {}

  // Writes `part` as shards "<name>-NNNNN.shard": example i of the part is copy
  // order[i] % copies of source row rows[order[i] / copies].
  data::ShardPart write(const std::string& name, const Source& s, const std::vector<std::int64_t>& rows,
                        const std::vector<std::int64_t>& order, std::int64_t k) {
    const auto copies_list = shifts(k);
    const auto copies = static_cast<std::int64_t>(copies_list.size());
    data::ShardPart part;
    const auto n = static_cast<std::int64_t>(order.size());
    std::vector<std::int64_t> ids;
    std::vector<std::int32_t> labels;
    std::vector<std::uint8_t> features;
    for (std::int64_t begin = 0, number = 0; begin < n; begin += shard_size_, ++number) {
      const std::int64_t count = std::min(shard_size_, n - begin);
      ids.resize(static_cast<std::size_t>(count));
      labels.resize(static_cast<std::size_t>(count));
      features.resize(static_cast<std::size_t>(count) * s.row_bytes());
      for (std::int64_t i = 0; i < count; ++i) {
        const std::int64_t example = order[static_cast<std::size_t>(begin + i)];
        const std::int64_t row = rows[static_cast<std::size_t>(example / copies)];
        ids[static_cast<std::size_t>(i)] = row * copies + example % copies;
        labels[static_cast<std::size_t>(i)] = s.labels[static_cast<std::size_t>(row)];
        shifted_row(s, row, copies_list[static_cast<std::size_t>(example % copies)],
                    features.data() + static_cast<std::size_t>(i) * s.row_bytes());
      }
      char file[64];
      std::snprintf(file, sizeof file, "%s-%05lld.shard", name.c_str(), static_cast<long long>(number));
      const std::string bytes = data::encode_shard(s.dtype, s.dim, ids, labels, features);
      io::write_file_atomic(dir_ / file, bytes);
      part.shards.push_back({file, count, static_cast<std::int64_t>(bytes.size()), data::crc32_of(bytes)});
      written_ += static_cast<std::int64_t>(bytes.size());
      const auto now = std::chrono::steady_clock::now();
      if (now - last_ > std::chrono::seconds(2)) {
        last_ = now;
        std::cerr << "descent shard: " << name << ": " << begin + count << " / " << n << " examples, "
                  << written_ / (1 << 20) << " MiB written\n";
      }
    }
    return part;
  }
  std::int64_t written() const { return written_; }

 private:
  fs::path dir_;
  std::int64_t shard_size_;
  std::int64_t written_ = 0;
  std::chrono::steady_clock::time_point last_ = std::chrono::steady_clock::now();
};

std::vector<std::int64_t> identity(std::int64_t n) {
  std::vector<std::int64_t> v(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) v[static_cast<std::size_t>(i)] = i;
  return v;
}

// Prepares --out: created if missing; a shard set there is replaced with --force (index.json
// first, so that an interrupted replacement leaves no readable set); anything else refused.
void prepare_out(const fs::path& out, bool force) {
  std::error_code ec;
  if (!fs::exists(out, ec)) {
    fs::create_directories(out, ec);
    if (ec) throw IoError(out.string() + ": cannot create the directory: " + ec.message());
    return;
  }
  if (!fs::is_directory(out, ec)) throw IoError(out.string() + ": exists and is not a directory");
  if (fs::is_empty(out, ec)) return;
  if (!force) throw IoError(out.string() + ": not empty; pass --force to replace the shard set there");
  fs::remove(out / "index.json", ec);
  for (const auto& entry : fs::directory_iterator(out)) {
    const std::string name = entry.path().filename().string();
    if (entry.is_regular_file() && name.ends_with(".shard")) fs::remove(entry.path(), ec);
  }
}

}  // namespace

void add_shard(CLI::App& app, ShardArgs& args) {
  CLI::App* cmd = app.add_subcommand(
      "shard", "Write the training set of a config's [data] section as shards shuffled once, for data.format = \"sharded\" "
               "(docs/data.md)");
  cmd->add_option("config", args.config, "The config file (TOML) whose [data] section names the data")->required();
  cmd->add_option("--set", args.overrides, "Override a config key, e.g. --set data.limit_train=1000 (repeatable)");
  cmd->add_option("--out", args.out, "The shard set's directory (created; must be empty unless --force)")->required();
  cmd->add_option("--shard-size", args.shard_size, "Examples per shard (default 10000)")->check(CLI::Range(1, 1 << 30));
  cmd->add_option("--seed", args.seed, "Seed of the one shuffle (default: the config's seed)");
  cmd->add_flag("--no-shuffle", args.no_shuffle, "Keep the training examples in file order (no shuffle)");
  cmd->add_option("--augment-shifts", args.augment_shifts,
                  "Write each training example and its copies shifted by up to K pixels in x and y ((2K+1)^2 copies)")
      ->check(CLI::Range(0, 8));
  cmd->add_flag("--force", args.force, "Replace the shard set already in --out");
}

int run_shard(const ShardArgs& args) {
  const train::TrainConfig config = train::load_train_config(args.config, args.overrides);
  const train::DataConfig& c = config.data;
  if (c.format == "sharded") throw ConfigError(args.config + ": data.format is already \"sharded\"; shard its source data");
  Source train_src, test_src;
  if (c.format == "mnist") {
    data::ByteTrainTest bt = data::load_mnist_dir_bytes(c.dir);
    const auto train_shape = bt.train.features.shape;
    const auto test_shape = bt.test.features.shape;
    train_src = from_bytes(std::move(bt.train), train_shape);
    test_src = from_bytes(std::move(bt.test), test_shape);
  } else {
    const data::TrainTest tt = train::read_data_files(c);
    train_src = from_floats(tt.train);
    test_src = from_floats(tt.test);
    train_src.labels.shrink_to_fit();
  }
  const std::int32_t classes = std::max(*std::max_element(train_src.labels.begin(), train_src.labels.end()),
                                        test_src.labels.empty() ? 0 : *std::max_element(test_src.labels.begin(), test_src.labels.end())) + 1;
  // What `descent train` would use: the first limit_train examples, less the validation part.
  const std::int64_t n = c.limit_train > 0 ? std::min(c.limit_train, train_src.size()) : train_src.size();
  if (c.validation_size >= n)
    throw ConfigError(args.config + ": data.validation_size = " + std::to_string(c.validation_size) +
                      " leaves no training examples (the training file has " + std::to_string(n) + ")");
  const auto [train_rows, validation_rows] =
      data::validation_split_indices(n, {.validation_size = c.validation_size, .shuffle = c.validation_shuffle, .seed = config.seed});
  const std::int64_t k = args.augment_shifts;
  // The readers flatten each example; the images of MNIST-format files are square (28 x 28),
  // and a square number of features is taken for a square single-channel image.
  std::int64_t side = 1;
  while ((side + 1) * (side + 1) <= train_src.dim) ++side;
  if (train_src.shape.size() == 1 && side * side == train_src.dim && side > 1) {
    train_src.shape = {side, side};
    test_src.shape = {side, side};
  }
  if (k > 0 && train_src.shape.size() < 2)
    throw ConfigError("--augment-shifts: the examples have " + std::to_string(train_src.dim) +
                      " features, not a square image to shift");
  const auto copies = static_cast<std::int64_t>(shifts(k).size());
  const std::int64_t total = static_cast<std::int64_t>(train_rows.size()) * copies;
  const std::uint64_t seed = args.seed ? *args.seed : config.seed;
  std::vector<std::int64_t> order = identity(total);
  if (!args.no_shuffle) {  // Fisher-Yates, as the samplers draw theirs
    Rng rng(seed);
    for (std::size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[static_cast<std::size_t>(rng.below(i))]);
  }
  const fs::path out = args.out;
  prepare_out(out, args.force);
  const auto t0 = std::chrono::steady_clock::now();
  Writer writer(out, args.shard_size);
  data::ShardIndex index;
  index.dtype = train_src.dtype;
  index.shape = train_src.shape;
  index.classes = classes;
  index.seed = seed;
  index.shuffled = !args.no_shuffle;
  index.augment_shifts = k;
  index.source = c.format == "mnist" ? c.dir : c.train_features;
  index.train = writer.write("train", train_src, train_rows, order, k);
  index.validation = writer.write("validation", train_src, validation_rows,
                                  identity(static_cast<std::int64_t>(validation_rows.size())), 0);
  const std::int64_t n_test = c.limit_test > 0 ? std::min(c.limit_test, test_src.size()) : test_src.size();
  index.test = writer.write("test", test_src, identity(n_test), identity(n_test), 0);
  io::write_file_atomic(out / "index.json", data::shard_index_json(index));  // last: the set exists from here
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cout << "descent shard: " << total << " training examples (" << train_rows.size() << " x " << copies
            << " copies) in " << index.train.shards.size() << " shards, " << validation_rows.size() << " validation, "
            << n_test << " test; " << writer.written() / (1 << 20) << " MiB in " << out.string() << " ("
            << static_cast<int>(seconds * 10) / 10.0 << " s)\n";
  return 0;
}

}  // namespace descent::cli
