#include "descent/train/trainer.hpp"

#include "descent/train/early_stopping.hpp"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <csignal>
#include <limits>
#include <numeric>
#include <optional>
#include <span>
#include <type_traits>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iomanip>
#include <ostream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "descent/data/csv.hpp"
#include "descent/data/idx.hpp"
#include "descent/data/npy.hpp"
#include "descent/data/sampler.hpp"
#include "descent/io/atomic_file.hpp"
#include "descent/io/json_lines.hpp"
#include "descent/io/model_file.hpp"
#include "descent/loss/loss.hpp"
#include "descent/nn/conv.hpp"
#include "descent/nn/initialize.hpp"
#include "descent/nn/normalization.hpp"
#include "descent/nn/recurrent.hpp"
#include "descent/optim/optimizer.hpp"
#include "descent/optim/registry.hpp"
#include "descent/train/checkpoint.hpp"
#include "descent/train/model_card.hpp"
#include "descent/tensor/kernels.hpp"
#include "descent/tensor/parallel.hpp"

namespace descent::train {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

DType model_dtype(const std::string& name) { return name == "f64" ? DType::f64 : DType::f32; }

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
  if (c.format == "mnist") return data::load_mnist_dir(c.dir);
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

data::Dataset first(const data::Dataset& d, std::int64_t limit) {
  if (limit <= 0 || limit >= d.size()) return d;
  std::vector<std::int64_t> idx(static_cast<std::size_t>(limit));
  for (std::int64_t i = 0; i < limit; ++i) idx[static_cast<std::size_t>(i)] = i;
  return data::subset(d, idx);
}

Split to_split(const data::Dataset& d, DType dtype) {
  Split s;
  s.dtype = dtype;
  if (d.size() == 0) return s;
  Tensor x = Tensor::from<float>({d.size(), d.dim()}, std::span<const float>(d.features.values));
  s.x = dtype == DType::f32 ? x : x.to(dtype);
  s.y = Tensor::from<std::int32_t>({d.size()}, std::span<const std::int32_t>(d.labels));
  return s;
}

// Decodes rows of byte features into `out` ([rows, d] of T): out[i, j] = values[b] or, per
// feature, values[b * d + j], for the byte b of row first + rows[i] of `bytes`.
template <class T>
void decode_rows(const std::uint8_t* bytes, std::int64_t first, const float* values, bool per_feature, std::int64_t d,
                 std::span<const std::int64_t> rows, T* out) {
  const auto n = static_cast<std::int64_t>(rows.size());
  parallel_for(n, std::max<std::int64_t>(1, 16384 / std::max<std::int64_t>(1, d)), [&](std::int64_t i0, std::int64_t i1) {
    for (std::int64_t i = i0; i < i1; ++i) {
      const std::uint8_t* src = bytes + (first + rows[static_cast<std::size_t>(i)]) * d;
      T* dst = out + i * d;
      if (per_feature) {
        for (std::int64_t j = 0; j < d; ++j) dst[j] = static_cast<T>(values[src[j] * d + j]);
      } else {
        for (std::int64_t j = 0; j < d; ++j) dst[j] = static_cast<T>(values[src[j]]);
      }
    }
  });
}

// A split of byte features: the rows `rows` of `d` (shared when they are one contiguous range,
// copied otherwise) with their labels.
Split byte_split(const data::ByteDataset& d, const std::shared_ptr<const std::vector<std::uint8_t>>& all,
                 std::span<const std::int64_t> rows, const std::shared_ptr<const std::vector<float>>& values,
                 DType dtype) {
  Split s;
  s.dtype = dtype;
  s.features = d.dim();
  s.values = values;
  const auto n = static_cast<std::int64_t>(rows.size());
  std::vector<std::int32_t> labels(rows.size());
  for (std::size_t i = 0; i < rows.size(); ++i) labels[i] = d.labels[static_cast<std::size_t>(rows[i])];
  s.y = Tensor::from<std::int32_t>({n}, std::span<const std::int32_t>(labels));
  const bool contiguous = n == 0 || rows.back() - rows.front() + 1 == n;
  if (contiguous) {
    s.bytes = all;
    s.first = n == 0 ? 0 : rows.front();
    return s;
  }
  auto copy = std::make_shared<std::vector<std::uint8_t>>(rows.size() * static_cast<std::size_t>(d.dim()));
  const auto row_bytes = static_cast<std::size_t>(d.dim());
  for (std::size_t i = 0; i < rows.size(); ++i) {
    std::memcpy(copy->data() + i * row_bytes, all->data() + static_cast<std::size_t>(rows[i]) * row_bytes, row_bytes);
  }
  s.bytes = std::move(copy);
  return s;
}

// Fashion-MNIST and other MNIST-format folders: the images stay bytes (data::load_mnist_dir_bytes);
// the split, the standardization statistics (of the training part) and the byte values are those
// the float path computes.
Data load_byte_data(const TrainConfig& config) {
  const DataConfig& c = config.data;
  data::ByteTrainTest tt = data::load_mnist_dir_bytes(c.dir);
  const auto limit = [](data::ByteDataset& d, std::int64_t n) {
    if (n <= 0 || n >= d.size()) return;
    d.features.values.resize(static_cast<std::size_t>(n * d.dim()));
    d.features.values.shrink_to_fit();
    d.features.shape[0] = n;
    d.labels.resize(static_cast<std::size_t>(n));
  };
  limit(tt.train, c.limit_train);
  limit(tt.test, c.limit_test);
  const std::int64_t n = tt.train.size();
  std::vector<std::int64_t> train_rows, validation_rows;
  if (c.validation_size > 0) {
    if (c.validation_size >= n) {
      throw ConfigError(config.source + ": data.validation_size = " + std::to_string(c.validation_size) +
                        " leaves no training examples (the training file has " + std::to_string(n) + ")");
    }
    std::tie(train_rows, validation_rows) = data::validation_split_indices(
        n, {.validation_size = c.validation_size, .shuffle = c.validation_shuffle, .seed = config.seed});
  } else {
    train_rows.resize(static_cast<std::size_t>(n));
    std::iota(train_rows.begin(), train_rows.end(), 0);
  }
  const auto factor = static_cast<float>(c.scale);
  std::optional<data::Standardizer> standardizer;
  if (c.standardize != "none") {
    const auto mode = c.standardize == "global" ? data::Standardizer::Mode::global : data::Standardizer::Mode::per_feature;
    standardizer = data::fit_standardizer(tt.train, train_rows, factor, mode);  // the training part only
  }
  const auto values = std::make_shared<const std::vector<float>>(
      data::byte_values(factor, standardizer ? &*standardizer : nullptr, tt.train.dim()));
  const DType dtype = model_dtype(config.model.dtype);
  const auto train_bytes = std::make_shared<const std::vector<std::uint8_t>>(std::move(tt.train.features.values));
  const auto test_bytes = std::make_shared<const std::vector<std::uint8_t>>(std::move(tt.test.features.values));
  std::vector<std::int64_t> test_rows(static_cast<std::size_t>(tt.test.size()));
  std::iota(test_rows.begin(), test_rows.end(), 0);
  Data out;
  out.num_classes = std::max(tt.train.num_classes, tt.test.num_classes);
  out.dim = tt.train.dim();
  out.train = byte_split(tt.train, train_bytes, train_rows, values, dtype);
  out.validation = byte_split(tt.train, train_bytes, validation_rows, values, dtype);
  out.test = byte_split(tt.test, test_bytes, test_rows, values, dtype);
  out.standardizer = std::move(standardizer);
  return out;
}

std::unique_ptr<optim::Optimizer> make_optimizer(const TrainConfig& c, std::int64_t total_steps, double lr_scale) {
  if (const optim::KeyConflict k = optim::check_keys(c.optimizer); !k.key.empty())
    throw ConfigError(c.source + ": " + k.key + ": " + k.message);
  return optim::make_optimizer(c.optimizer, c.schedule, c.clip, c.averaging, total_steps, lr_scale);
}

// The progress display: a bar redrawn in place on a terminal, one line per epoch otherwise.
class Progress {
 public:
  Progress(std::ostream* out, const std::string& mode, std::int64_t epochs, std::int64_t steps_per_epoch)
      : out_(out), epochs_(epochs), steps_per_epoch_(std::max<std::int64_t>(1, steps_per_epoch)) {
    const bool tty = isatty(STDERR_FILENO) != 0;
    bar_ = out_ != nullptr && (mode == "bar" || (mode == "auto" && tty));
    if (mode == "none") out_ = nullptr;
    start_ = last_ = Clock::now();
  }

  void step(std::int64_t epoch, std::int64_t position, double loss, double accuracy) {
    if (!bar_) return;
    if (seconds_since(last_) < 0.1 && position != steps_per_epoch_) return;
    last_ = Clock::now();
    const double done = (static_cast<double>(epoch - 1) + static_cast<double>(position) / steps_per_epoch_) / epochs_;
    const double elapsed = seconds_since(start_);
    const double eta = done > 0 ? elapsed * (1 - done) / done : 0.0;
    constexpr int width = 28;
    const int filled = static_cast<int>(static_cast<double>(width) * static_cast<double>(position) / steps_per_epoch_);
    std::ostringstream line;
    line << "\repoch " << epoch << "/" << epochs_ << " [" << std::string(static_cast<std::size_t>(filled), '=')
         << std::string(static_cast<std::size_t>(width - filled), ' ') << "] " << std::fixed << std::setprecision(0)
         << 100.0 * position / steps_per_epoch_ << "%  ETA " << std::setprecision(1) << eta << " s  loss "
         << std::setprecision(4) << loss << "  acc " << std::setprecision(2) << 100.0 * accuracy << "%   ";
    *out_ << line.str() << std::flush;
  }

  void line(const std::string& text) {
    if (out_ == nullptr) return;
    if (bar_) *out_ << "\r\033[K";
    *out_ << text << "\n" << std::flush;
  }

 private:
  std::ostream* out_;
  std::int64_t epochs_, steps_per_epoch_;
  bool bar_ = false;
  Clock::time_point start_, last_;
};

std::string first_non_finite_gradient(ParameterArena& arena) {
  for (std::size_t i = 0; i < arena.count(); ++i) {
    const ParamId id{static_cast<std::int32_t>(i)};
    if (!kernels::all_finite(arena.grad(id))) return arena.entry(id).name;
  }
  return "(none)";
}

// Batch normalization in training needs two or more examples per batch (the variance of
// one value is undefined). Refuse, before training starts, a sampler that would give it one.
void check_batch_norm_batches(nn::Sequential& net, const TrainConfig& config, std::int64_t n) {
  bool has_batch_norm = false;
  for (std::size_t i = 0; i < net.size(); ++i) has_batch_norm |= dynamic_cast<nn::BatchNorm*>(&net.at(i)) != nullptr;
  if (!has_batch_norm) return;
  const std::int64_t batch = config.sampler.batch_size == 0 ? n : config.sampler.batch_size;
  if (batch == 1 || n == 1)
    throw ConfigError(config.source + ": sampler.batch_size: batch normalization needs at least 2 examples per batch");
  if (!config.sampler.drop_last && n % batch == 1)
    throw ConfigError(config.source + ": sampler.drop_last: the last batch of each epoch would hold 1 example (" +
                      std::to_string(n) + " = " + std::to_string(n / batch) + " x " + std::to_string(batch) +
                      " + 1), which batch normalization cannot normalize; set sampler.drop_last = true or "
                      "change sampler.batch_size");
}

}  // namespace

Tensor Split::rows(std::int64_t begin, std::int64_t end, Tensor& buffer) const {
  if (x.defined()) return x.rows(begin, end);
  std::vector<std::int64_t> idx(static_cast<std::size_t>(end - begin));
  std::iota(idx.begin(), idx.end(), begin);
  copy_features(idx, buffer);
  return buffer;
}

void Split::gather(std::span<const std::int64_t> idx, Tensor& x_out, Tensor& y_out) const {
  const auto b = static_cast<std::int64_t>(idx.size());
  if (!y_out.defined() || y_out.dim(0) != b) y_out = Tensor::empty({b}, DType::i32);
  const std::int32_t* ys = y.data<std::int32_t>();
  std::int32_t* yd = y_out.data<std::int32_t>();
  for (std::int64_t i = 0; i < b; ++i) yd[i] = ys[idx[static_cast<std::size_t>(i)]];
  copy_features(idx, x_out);
}

void Split::copy_features(std::span<const std::int64_t> idx, Tensor& x_out) const {
  const auto b = static_cast<std::int64_t>(idx.size());
  const std::int64_t d = dim();
  const DType t = x.defined() ? x.dtype() : dtype;
  if (!x_out.defined() || x_out.dim(0) != b || x_out.dim(1) != d || x_out.dtype() != t) x_out = Tensor::empty({b, d}, t);
  if (x.defined()) {
    const std::size_t row_bytes = static_cast<std::size_t>(d) * dtype_size(t);
    auto* dst = static_cast<std::byte*>(x_out.raw());
    const auto* src = static_cast<const std::byte*>(x.raw());
    for (std::int64_t i = 0; i < b; ++i) {
      std::memcpy(dst + static_cast<std::size_t>(i) * row_bytes, src + static_cast<std::size_t>(idx[static_cast<std::size_t>(i)]) * row_bytes,
                  row_bytes);
    }
    return;
  }
  const bool per_feature = values->size() != 256;
  if (t == DType::f64) {
    decode_rows(bytes->data(), first, values->data(), per_feature, d, idx, x_out.data<double>());
  } else {
    decode_rows(bytes->data(), first, values->data(), per_feature, d, idx, x_out.data<float>());
  }
}

std::unique_ptr<optim::Optimizer> make_optimizer(const TrainConfig& config, std::int64_t total_steps) {
  return make_optimizer(config, total_steps, 1.0);
}

Data load_data(const TrainConfig& config) {
  const DataConfig& c = config.data;
  if (c.format == "mnist") return load_byte_data(config);
  data::TrainTest tt = read_files(c);
  data::Dataset full = first(tt.train, c.limit_train);
  data::Dataset test = first(tt.test, c.limit_test);
  data::scale(full, static_cast<float>(c.scale));
  data::scale(test, static_cast<float>(c.scale));
  data::Dataset train, validation;
  if (c.validation_size > 0) {
    if (c.validation_size >= full.size()) {
      throw ConfigError(config.source + ": data.validation_size = " + std::to_string(c.validation_size) +
                        " leaves no training examples (the training file has " + std::to_string(full.size()) + ")");
    }
    std::tie(train, validation) = data::split_validation(
        std::move(full), {.validation_size = c.validation_size, .shuffle = c.validation_shuffle, .seed = config.seed});
  } else {
    train = std::move(full);
  }
  std::optional<data::Standardizer> standardizer;
  if (c.standardize != "none") {
    const auto mode = c.standardize == "global" ? data::Standardizer::Mode::global : data::Standardizer::Mode::per_feature;
    standardizer = data::fit_standardizer(train, mode);
    data::apply(*standardizer, train);
    if (validation.size() > 0) data::apply(*standardizer, validation);
    data::apply(*standardizer, test);
  }
  const DType dtype = model_dtype(config.model.dtype);
  Data out;
  out.standardizer = std::move(standardizer);
  out.num_classes = std::max(train.num_classes, test.num_classes);
  out.dim = train.dim();
  out.train = to_split(train, dtype);
  out.validation = to_split(validation, dtype);
  out.test = to_split(test, dtype);
  return out;
}

void initialize_model(Model& model, const TrainConfig& config) {
  nn::InitSpec spec;
  spec.weights = init::parse_scheme(config.init.weights);
  spec.options = init::default_options(spec.weights);
  spec.options.gain = config.init.gain;
  spec.options.sparse_k = config.init.sparse_k;
  spec.bias = config.init.bias;
  spec.seed = config.seed;
  nn::initialize_model(model, spec);
}

Evaluation evaluate(Model& model, const Split& split, std::int64_t batch, std::vector<std::int64_t>* confusion) {
  Evaluation e;
  const std::int64_t n = split.size();
  if (n == 0) return e;
  double loss_sum = 0.0;
  std::int64_t errors = 0;
  autodiff::Tape tape;
  Tensor buffer;
  // Evaluation mode (batch normalization uses its running statistics, dropout is off).
  const bool was_training = model.net->training();
  model.net->set_training(false);
  struct Restore {
    nn::Sequential& net;
    bool mode;
    ~Restore() { net.set_training(mode); }
  } restore{*model.net, was_training};
  for (std::int64_t begin = 0; begin < n; begin += batch) {
    const std::int64_t end = std::min(n, begin + batch);
    tape.clear();
    Tensor x = split.rows(begin, end, buffer);
    Tensor y = split.y.rows(begin, end);
    autodiff::Var logits = model.net->forward(tape, tape.constant(x));
    loss_sum += loss::cross_entropy(logits, y).value().item() * static_cast<double>(end - begin);
    errors += loss::count_errors(logits.value(), y);
    if (confusion != nullptr) loss::accumulate_confusion(logits.value(), y, *confusion);
  }
  e.examples = n;
  e.loss = loss_sum / static_cast<double>(n);
  e.error = static_cast<double>(errors) / static_cast<double>(n);
  return e;
}

namespace {

std::atomic<int> g_stop_signal{0};

// Doubles go into the checkpoint's JSON as their bit patterns: exact, and infinities too.
std::uint64_t bits(double v) { return std::bit_cast<std::uint64_t>(v); }
double from_bits(const nlohmann::json& j) { return std::bit_cast<double>(j.get<std::uint64_t>()); }

const char* signal_name(int signal) {
  switch (signal) {
    case SIGINT: return "SIGINT";
    case SIGTERM: return "SIGTERM";
    default: return "a signal";
  }
}

// Everything of a run that is not a tensor and changes as it trains: with the parameters,
// the optimizer's, sampler's, dropout generators' and early stopping's states it decides the
// rest of the run.
struct LoopState {
  std::int64_t k = 0;      // updates done
  std::int64_t epoch = 1;  // the epoch in progress (or next to start)
  bool finished = false;   // the training loop is over; only the final evaluation is left
  // The epoch in progress.
  std::int64_t epoch_steps = 0, epoch_examples = 0;
  double grad_norm_sum = 0, running_loss = 0, running_correct = 0, running_seen = 0;
  double epoch_seconds = 0;  // spent in this epoch by earlier processes
  double wall_seconds = 0;   // spent by earlier processes
  // Divergence handling.
  double lr_scale = 1.0;
  std::int64_t divergences = 0;
  // The result so far.
  std::int64_t epochs_run = 0, best_epoch = 0;
  bool stopped_early = false;
  double best_validation_error = 0, best_validation_loss = 0, grad_norm_at_stop = 0;

  // Calls f(name, field) for every field: the one list that writing and reading share.
  template <class Self, class F>
  static void fields(Self& s, F&& f) {
    f("k", s.k);
    f("epoch", s.epoch);
    f("finished", s.finished);
    f("epoch_steps", s.epoch_steps);
    f("epoch_examples", s.epoch_examples);
    f("grad_norm_sum", s.grad_norm_sum);
    f("running_loss", s.running_loss);
    f("running_correct", s.running_correct);
    f("running_seen", s.running_seen);
    f("epoch_seconds", s.epoch_seconds);
    f("wall_seconds", s.wall_seconds);
    f("lr_scale", s.lr_scale);
    f("divergences", s.divergences);
    f("epochs_run", s.epochs_run);
    f("best_epoch", s.best_epoch);
    f("stopped_early", s.stopped_early);
    f("best_validation_error", s.best_validation_error);
    f("best_validation_loss", s.best_validation_loss);
    f("grad_norm_at_stop", s.grad_norm_at_stop);
  }

  nlohmann::json to_json() const {
    nlohmann::json j = nlohmann::json::object();
    fields(*this, [&](const char* name, const auto& v) {
      if constexpr (std::is_same_v<std::decay_t<decltype(v)>, double>) {
        j[name] = bits(v);
      } else {
        j[name] = v;
      }
    });
    return j;
  }

  static LoopState from_json(const nlohmann::json& j) {
    LoopState s;
    fields(s, [&](const char* name, auto& v) {
      using V = std::decay_t<decltype(v)>;
      if constexpr (std::is_same_v<V, double>) {
        v = from_bits(j.at(name));
      } else {
        v = j.at(name).get<V>();
      }
    });
    if (s.k < 0 || s.epoch < 1 || s.epoch_steps < 0 || !(s.lr_scale > 0)) throw DataError("inconsistent counters");
    return s;
  }
};

// One training run, fresh or resumed from a checkpoint.
class Session {
 public:
  Session(const TrainConfig& config, std::ostream* log, std::filesystem::path run_dir, const Checkpoint* from)
      : config_(config), t0_(Clock::now()), progress_(log, config.progress, config.epochs, 1) {
    if (config_.threads > 0) set_num_threads(config_.threads);
    result_.run_dir = std::move(run_dir);
    ckpt_dir_ = result_.run_dir / "checkpoints";
    data_ = load_data(config_);
    // Its messages name the file and line of a layer that does not fit.
    model_ = build_model(config_.model, data_.dim, data_.num_classes, config_.seed);
    initialize_model(model_, config_);
    data::SamplerOptions so;
    so.kind = data::parse_sampler_kind(config_.sampler.kind);
    so.batch_size = config_.sampler.batch_size;
    so.drop_last = config_.sampler.drop_last;
    so.seed = config_.seed + 1;  // a stream of its own, independent of the initialization's
    sampler_ = std::make_unique<data::Sampler>(data_.train.size(), so);
    steps_per_epoch_ = sampler_->batches_per_epoch();
    check_batch_norm_batches(*model_.net, config_, data_.train.size());
    // Evaluation runs in chunks; a convolutional network's activations for 1,000 images are
    // hundreds of MB (kept by the storage cache), so it evaluates 200 at a time.
    for (std::size_t i = 0; i < model_.net->size(); ++i) {
      if (dynamic_cast<nn::Conv2d*>(&model_.net->at(i)) != nullptr) eval_batch_ = 200;
    }
    progress_ = Progress(log, config_.progress, config_.epochs, steps_per_epoch_);
    ParameterArena& arena = *model_.arena;
    best_ = arena.values().clone();
    best_buffers_ = arena.buffer_size() > 0 ? arena.buffers().clone() : Tensor();
    // The run folder is made only once the data and the model are known to be good.
    std::error_code ec;
    std::filesystem::create_directories(result_.run_dir, ec);
    if (ec) throw IoError(result_.run_dir.string() + ": cannot create the run folder: " + ec.message());
    const std::filesystem::path metrics_path = result_.run_dir / "metrics.jsonl";
    if (from == nullptr) {
      io::write_file_atomic(result_.run_dir / "config.toml", to_toml(config_));
      optimizer_ = make_optimizer(config_, steps_per_epoch_ * config_.epochs, 1.0);
      metrics_ = std::make_unique<io::JsonLinesWriter>(metrics_path);
    } else {
      restore(*from, metrics_path);
    }
    progress_.line(std::string(from != nullptr ? "descent: resuming " + result_.run_dir.string() + " at step " +
                                                     std::to_string(state_.k) + " (epoch " +
                                                     std::to_string(state_.epoch) + ")\n"
                                               : "") +
                   "descent: " + std::to_string(data_.train.size()) + " train / " +
                   std::to_string(data_.validation.size()) + " validation / " + std::to_string(data_.test.size()) +
                   " test examples; " + model_.net->describe() + ", " + std::to_string(arena.size()) +
                   " parameters; " + optimizer_->describe());
    if (from == nullptr) save_checkpoint();  // step 0: a resume or a rollback always has a start
  }

  RunResult go() {
    while (!state_.finished) {
      if (state_.epoch > config_.epochs || sampler_->exhausted()) {
        finish_loop();
        break;
      }
      if (!run_epoch()) continue;  // rolled back: start again from the checkpoint's position
      end_epoch();
    }
    return final_evaluation();
  }

 private:
  // ---- checkpoints -------------------------------------------------------------------

  // The checkpoint of the current state, to be encoded at once (it holds views of live tensors).
  Checkpoint snapshot() {
    ParameterArena& arena = *model_.arena;
    Checkpoint c;
    c.step = state_.k;
    c.config_toml = to_toml(config_);
    // Views, not copies: the checkpoint is encoded before anything changes them.
    c.tensors.emplace_back("params", arena.values());
    c.tensors.emplace_back("best", best_);
    if (best_buffers_.defined()) {
      c.tensors.emplace_back("buffers", arena.buffers());
      c.tensors.emplace_back("best_buffers", best_buffers_);
    }
    nlohmann::json state = {{"loop", state_.to_json()},
                             {"sampler", sampler_->save_state()},
                             {"early_stopping",
                              {{"best", bits(stopper_.best())},
                               {"best_epoch", stopper_.best_epoch()},
                               {"bad_epochs", stopper_.bad_epochs()}}}};
    nlohmann::json dropout = nlohmann::json::array();
    for (std::size_t i = 0; i < model_.net->size(); ++i) {
      if (auto* d = dynamic_cast<nn::Dropout*>(&model_.net->at(i))) dropout.push_back(d->rng_state());
    }
    state["dropout"] = dropout;
    if (state_.k > 0) {  // before the first update the optimizer holds nothing yet
      const optim::OptimizerState o = optimizer_->save_state();
      nlohmann::json schedules = nlohmann::json::array();
      for (const auto& sc : o.schedules) {
        nlohmann::json values = nlohmann::json::array();
        for (const double v : sc) values.push_back(bits(v));
        schedules.push_back(values);
      }
      state["optimizer"] = {{"names", o.names},
                            {"counter_names", o.counter_names},
                            {"counters", o.counters},
                            {"schedules", schedules}};
      for (std::size_t i = 0; i < o.tensors.size(); ++i) {
        c.tensors.emplace_back("optimizer." + std::to_string(i), o.tensors[i]);
      }
    }
    metrics_->flush();
    std::error_code ec;
    const auto bytes = std::filesystem::file_size(metrics_->path(), ec);
    if (ec) throw IoError(metrics_->path().string() + ": cannot read its size: " + ec.message());
    state["metrics_bytes"] = bytes;
    c.state = std::move(state);
    return c;
  }

  void save_checkpoint() {
    state_.wall_seconds += seconds_since(t0_);
    state_.epoch_seconds += seconds_since(epoch_t0_);
    t0_ = epoch_t0_ = Clock::now();
    const Checkpoint c = snapshot();
    last_checkpoint_ = write_checkpoint(ckpt_dir_, c, config_.checkpoint.keep);
    saved_at_ = state_.k;
  }

  // Puts the run back in the state of `c`: parameters, buffers, best copies, optimizer
  // (rebuilt for the checkpoint's learning-rate scale, or `lr_scale` when given: a rollback),
  // sampler, dropout generators, counters; metrics.jsonl is cut back to what it held then and
  // reopened for appending.
  void restore(const Checkpoint& c, const std::filesystem::path metrics_path,  // a copy: metrics_ is reset below
               std::optional<double> lr_scale = std::nullopt) {
    const std::string source = result_.run_dir.string();
    ParameterArena& arena = *model_.arena;
    try {
      state_ = LoopState::from_json(c.state.at("loop"));
      if (lr_scale) state_.lr_scale = *lr_scale;
      arena.values().copy_from(c.tensor("params", arena.values(), source));
      best_.copy_from(c.tensor("best", best_, source));
      if (best_buffers_.defined()) {
        arena.buffers().copy_from(c.tensor("buffers", arena.buffers(), source));
        best_buffers_.copy_from(c.tensor("best_buffers", best_buffers_, source));
      }
      sampler_->load_state(c.state.at("sampler").get<std::string>());
      const nlohmann::json& dropout = c.state.at("dropout");
      std::size_t next = 0;
      for (std::size_t i = 0; i < model_.net->size(); ++i) {
        if (auto* d = dynamic_cast<nn::Dropout*>(&model_.net->at(i))) {
          if (next >= dropout.size()) throw DataError("fewer dropout generator states than dropout layers");
          d->set_rng_state(dropout.at(next++).get<std::string>());
        }
      }
      optimizer_ = make_optimizer(config_, steps_per_epoch_ * config_.epochs, state_.lr_scale);
      if (c.state.contains("optimizer")) {
        const nlohmann::json& o = c.state.at("optimizer");
        optim::OptimizerState os;
        os.names = o.at("names").get<std::vector<std::string>>();
        os.counter_names = o.at("counter_names").get<std::vector<std::string>>();
        os.counters = o.at("counters").get<std::vector<std::int64_t>>();
        for (const auto& sc : o.at("schedules")) {
          std::vector<double> values;
          for (const auto& v : sc) values.push_back(from_bits(v));
          os.schedules.push_back(std::move(values));
        }
        for (std::size_t i = 0; i < os.names.size(); ++i) {
          os.tensors.push_back(c.tensor("optimizer." + std::to_string(i), arena.values(), source));
        }
        optimizer_->load_state(arena, os);
      }
      const nlohmann::json& stop = c.state.at("early_stopping");
      stopper_.restore(from_bits(stop.at("best")), stop.at("best_epoch").get<std::int64_t>(),
                       stop.at("bad_epochs").get<std::int64_t>());
      const auto bytes = c.state.at("metrics_bytes").get<std::uintmax_t>();
      metrics_.reset();
      std::error_code ec;
      std::filesystem::resize_file(metrics_path, bytes, ec);
      if (ec) throw IoError(metrics_path.string() + ": cannot cut it back to the checkpoint's " + std::to_string(bytes) +
                            " bytes: " + ec.message());
      metrics_ = std::make_unique<io::JsonLinesWriter>(metrics_path, /*append=*/true);
    } catch (const nlohmann::json::exception& e) {
      throw DataError(source + ": checkpoint state: " + e.what());
    } catch (const DataError& e) {
      const std::string what = e.what();
      throw DataError(what.starts_with(source) ? what : source + ": " + what);
    }
    t0_ = epoch_t0_ = Clock::now();
    saved_at_ = state_.k;
  }

  // ---- the loop ----------------------------------------------------------------------

  // Trains the rest of the epoch in progress. Returns false when a divergence rolled the run
  // back to a checkpoint (the epoch loop starts again from there).
  bool run_epoch() {
    ParameterArena& arena = *model_.arena;
    epoch_t0_ = Clock::now();
    while (sampler_->next(idx_)) {
      data_.train.gather(idx_, bx_, by_);
      tape_.clear();
      arena.zero_grad();
      const bool keep_iterate = config_.divergence.policy == "skip" && optimizer_->has_interim();
      if (keep_iterate) before_prepare_ = arena.values().clone();
      optimizer_->prepare(arena, state_.k);
      autodiff::Var logits = model_.net->forward(tape_, tape_.constant(bx_));
      autodiff::Var loss = loss::cross_entropy(logits, by_);
      tape_.backward(loss);
      const double loss_value = loss.value().item();
      const double grad_norm = std::sqrt(kernels::sum_squares(arena.grads()));
      if (!std::isfinite(loss_value) || !std::isfinite(grad_norm)) {
        if (!diverged(loss_value, keep_iterate)) return false;
        continue;  // skipped
      }
      const double lr = optimizer_->learning_rate(state_.k);
      optimizer_->step(arena, state_.k);
      metrics_->write({{"kind", "step"},
                       {"step", state_.k},
                       {"epoch", state_.epoch},
                       {"loss", loss_value},
                       {"grad_norm", grad_norm},
                       {"lr", lr},
                       {"wall_s", wall()}});
      ++state_.k;
      if (config_.eval_every_steps > 0 && state_.k % config_.eval_every_steps == 0) eval_step_record();
      ++state_.epoch_steps;
      state_.epoch_examples += by_.numel();
      state_.grad_norm_sum += grad_norm;
      const auto b = static_cast<double>(by_.numel());
      state_.running_loss += loss_value * b;
      state_.running_correct += b - static_cast<double>(loss::count_errors(logits.value(), by_));
      state_.running_seen += b;
      progress_.step(state_.epoch, sampler_->position(), state_.running_loss / state_.running_seen,
                     state_.running_correct / state_.running_seen);
      const std::int64_t every = config_.checkpoint.every_steps;
      if (every > 0 && state_.k % every == 0) save_checkpoint();
      check_stop_request();
    }
    return true;
  }

  // A non-finite loss or gradient at update k, caught before the parameters changed. Returns
  // true when the batch is skipped, false after a rollback; throws for "stop" and past
  // divergence.max_events.
  bool diverged(double loss_value, bool keep_iterate) {
    ParameterArena& arena = *model_.arena;
    const DivergenceConfig& d = config_.divergence;
    const std::string what = "training diverged at step " + std::to_string(state_.k) + " (epoch " +
                             std::to_string(state_.epoch) + "): loss " + std::to_string(loss_value) +
                             ", first non-finite gradient in '" + first_non_finite_gradient(arena) + "'";
    ++state_.divergences;
    if (d.policy == "stop") throw NumericError(what + "; the parameters were not updated");
    if (state_.divergences > d.max_events) {
      throw NumericError(what + "; this is divergence " + std::to_string(state_.divergences) +
                         ", more than divergence.max_events = " + std::to_string(d.max_events) + " (policy " +
                         d.policy + "); the parameters were not updated");
    }
    if (d.policy == "skip") {
      if (keep_iterate) {
        arena.values().copy_from(before_prepare_);
        optimizer_->discard_prepared();
      }
      metrics_->write({{"kind", "divergence"}, {"step", state_.k}, {"epoch", state_.epoch}, {"policy", "skip"},
                       {"loss", loss_value}, {"wall_s", wall()}});
      progress_.line(what + "; batch skipped");
      return true;
    }
    // rollback
    std::vector<std::string> warnings;
    const std::optional<Checkpoint> c = load_latest_checkpoint(ckpt_dir_, &warnings);
    for (const std::string& w : warnings) progress_.line("descent: warning: " + w);
    if (!c) throw NumericError(what + "; no checkpoint in " + ckpt_dir_.string() + " to roll back to");
    const double scale = state_.lr_scale * d.lr_scale;
    const std::int64_t events = state_.divergences;
    const double wall_so_far = state_.wall_seconds + seconds_since(t0_);
    restore(*c, metrics_->path(), scale);
    state_.divergences = events;
    state_.wall_seconds = wall_so_far;
    metrics_->write({{"kind", "divergence"}, {"step", state_.k}, {"epoch", state_.epoch}, {"policy", "rollback"},
                     {"loss", loss_value}, {"lr_scale", scale}, {"wall_s", wall()}});
    progress_.line(what + "; rolled back to step " + std::to_string(state_.k) + ", learning rate scaled to " +
                   std::to_string(scale) + " of the configured one");
    save_checkpoint();  // the new scale survives a crash from here on
    return false;
  }

  void eval_step_record() {
    const Evaluation tr = evaluate(model_, data_.train, eval_batch_);
    nlohmann::json r = {{"kind", "eval"},        {"step", state_.k},         {"epoch", state_.epoch},
                        {"train_loss", tr.loss}, {"train_error", tr.error}, {"wall_s", wall()}};
    if (data_.validation.size() > 0) {
      const Evaluation va = evaluate(model_, data_.validation, eval_batch_);
      r["val_loss"] = va.loss;
      r["val_error"] = va.error;
    }
    metrics_->write(r);
  }

  void end_epoch() {
    ParameterArena& arena = *model_.arena;
    if (state_.epoch_steps == 0) {
      finish_loop();
      return;
    }
    const std::int64_t epoch = state_.epoch;
    const double epoch_seconds = state_.epoch_seconds + seconds_since(epoch_t0_);
    const double grad_norm_mean = state_.grad_norm_sum / static_cast<double>(state_.epoch_steps);
    // Polyak averaging: evaluation (and the kept weights) use the averaged iterate.
    Tensor iterate;
    const Tensor avg = optimizer_->averaged();
    if (avg.defined()) {
      iterate = arena.values().clone();
      arena.values().copy_from(avg);
    }
    const bool use_val = data_.validation.size() > 0;
    const Evaluation tr = evaluate(model_, data_.train, eval_batch_);
    const Evaluation va = evaluate(model_, data_.validation, eval_batch_);
    const double rate = epoch_seconds > 0 ? static_cast<double>(state_.epoch_examples) / epoch_seconds : 0.0;
    nlohmann::json r = {{"kind", "epoch"},
                        {"epoch", epoch},
                        {"step", state_.k},
                        {"train_loss", tr.loss},
                        {"train_error", tr.error},
                        {"lr", optimizer_->learning_rate(state_.k)},
                        {"grad_norm_mean", grad_norm_mean},
                        {"clip_count", optimizer_->clip_count()},
                        {"examples_per_s", rate},
                        {"wall_s", wall()}};
    if (use_val) {
      r["val_loss"] = va.loss;
      r["val_error"] = va.error;
    }
    metrics_->write(r);
    std::ostringstream line;
    line << std::fixed << "epoch " << epoch << "/" << config_.epochs << "  train loss " << std::setprecision(4) << tr.loss
         << " error " << std::setprecision(2) << 100 * tr.error << "%";
    if (use_val) line << "  val loss " << std::setprecision(4) << va.loss << " error " << std::setprecision(2) << 100 * va.error << "%";
    line << "  |g| " << std::setprecision(3) << grad_norm_mean << "  " << std::setprecision(0) << rate << " ex/s";
    progress_.line(line.str());

    state_.epochs_run = epoch;
    state_.grad_norm_at_stop = grad_norm_mean;
    const bool watch_loss = config_.early_stopping.monitor == "val_loss";
    const double metric = use_val ? (watch_loss ? va.loss : va.error) : (watch_loss ? tr.loss : tr.error);
    const bool stop = stopper_.update(epoch, metric);
    optimizer_->observe(metric);
    if (stopper_.improved()) {
      best_.copy_from(arena.values());
      if (best_buffers_.defined()) best_buffers_.copy_from(arena.buffers());
      state_.best_epoch = epoch;
      state_.best_validation_error = va.error;
      state_.best_validation_loss = va.loss;
    }
    if (iterate.defined()) arena.values().copy_from(iterate);  // training goes on from the iterate
    state_.epoch = epoch + 1;
    state_.epoch_steps = state_.epoch_examples = 0;
    state_.grad_norm_sum = state_.running_loss = state_.running_correct = state_.running_seen = 0;
    state_.epoch_seconds = 0;
    epoch_t0_ = Clock::now();
    if (stop) {
      state_.stopped_early = true;
      progress_.line("early stopping: no improvement of the " + config_.early_stopping.monitor + " for " +
                     std::to_string(stopper_.bad_epochs()) + " epochs; restoring epoch " +
                     std::to_string(state_.best_epoch));
      finish_loop();
      return;
    }
    const std::int64_t every = config_.checkpoint.every_epochs;
    if (every > 0 && epoch % every == 0 && saved_at_ != state_.k) save_checkpoint();
    check_stop_request();
  }

  // The training loop is over: the last checkpoint says so, and a resume only redoes the
  // final evaluation.
  void finish_loop() {
    state_.finished = true;
    save_checkpoint();
  }

  RunResult final_evaluation() {
    ParameterArena& arena = *model_.arena;
    arena.values().copy_from(best_);
    if (best_buffers_.defined()) arena.buffers().copy_from(best_buffers_);
    RunResult& r = result_;
    r.epochs_run = state_.epochs_run;
    r.steps = state_.k;
    r.best_epoch = state_.best_epoch;
    r.stopped_early = state_.stopped_early;
    r.best_validation_error = state_.best_validation_error;
    r.best_validation_loss = state_.best_validation_loss;
    r.grad_norm_at_stop = state_.grad_norm_at_stop;
    r.divergences = state_.divergences;
    r.last_checkpoint = last_checkpoint_;
    r.train = evaluate(model_, data_.train, eval_batch_);
    r.test = evaluate(model_, data_.test, eval_batch_);
    r.wall_seconds = wall();
    io::save_parameters(r.run_dir / "model.safetensors", arena, model_metadata(config_, data_, model_, r.best_epoch));
    metrics_->write({{"kind", "final"},
                     {"epochs", r.epochs_run},
                     {"steps", r.steps},
                     {"best_epoch", r.best_epoch},
                     {"stopped_early", r.stopped_early},
                     {"grad_norm_at_stop", r.grad_norm_at_stop},
                     {"best_val_error", r.best_validation_error},
                     {"best_val_loss", r.best_validation_loss},
                     {"train_loss", r.train.loss},
                     {"train_error", r.train.error},
                     {"test_loss", r.test.loss},
                     {"test_error", r.test.error},
                     {"test_accuracy", 1.0 - r.test.error},
                     {"divergences", r.divergences},
                     {"wall_s", r.wall_seconds}});
    metrics_->flush();
    return r;
  }

  // SIGINT / SIGTERM (request_stop): the current step is done; write a checkpoint and stop.
  void check_stop_request() {
    const int signal = g_stop_signal.load(std::memory_order_relaxed);
    if (signal == 0) return;
    if (saved_at_ != state_.k) save_checkpoint();
    throw Interrupted(std::string("interrupted by ") + signal_name(signal) + " after step " + std::to_string(state_.k) +
                          " (epoch " + std::to_string(state_.epoch) + "); checkpoint " + last_checkpoint_.string() +
                          " written; continue with: descent resume " + result_.run_dir.string(),
                      signal);
  }

  double wall() const { return state_.wall_seconds + seconds_since(t0_); }

  const TrainConfig& config_;
  Clock::time_point t0_, epoch_t0_ = Clock::now();
  Progress progress_;
  RunResult result_;
  std::filesystem::path ckpt_dir_, last_checkpoint_;
  Data data_;
  Model model_;
  std::unique_ptr<data::Sampler> sampler_;
  std::int64_t steps_per_epoch_ = 0;
  std::unique_ptr<optim::Optimizer> optimizer_;
  std::unique_ptr<io::JsonLinesWriter> metrics_;
  LoopState state_;
  EarlyStopping stopper_{config_.early_stopping.patience, config_.early_stopping.min_delta, config_.early_stopping.enabled};
  Tensor best_, best_buffers_, before_prepare_;
  std::int64_t saved_at_ = -1;
  std::int64_t eval_batch_ = 1000;
  std::vector<std::int64_t> idx_;
  Tensor bx_, by_;
  autodiff::Tape tape_;
};

}  // namespace

void request_stop(int signal) noexcept { g_stop_signal.store(signal, std::memory_order_relaxed); }
void clear_stop_request() noexcept { g_stop_signal.store(0, std::memory_order_relaxed); }

RunResult run(const TrainConfig& config, std::ostream* log) {
  Session session(config, log, std::filesystem::path(config.out_dir) / config.name, nullptr);
  return session.go();
}

RunResult resume(const std::filesystem::path& run_dir, std::ostream* log) {
  std::error_code ec;
  if (!std::filesystem::is_directory(run_dir, ec)) throw IoError(run_dir.string() + ": no such run folder");
  std::vector<std::string> warnings;
  const std::optional<Checkpoint> c = load_latest_checkpoint(run_dir / "checkpoints", &warnings);
  if (log != nullptr) {
    for (const std::string& w : warnings) *log << "descent: warning: " << w << "\n";
  }
  if (!c) {
    throw IoError(run_dir.string() + ": no valid checkpoint in " + (run_dir / "checkpoints").string() +
                  (warnings.empty() ? " (none was written yet)" : " (all are damaged)"));
  }
  const std::string source = (run_dir / "checkpoints" / checkpoint_file_name(c->step)).string();
  TrainConfig config = parse_train_config(c->config_toml, source);
  Session session(config, log, run_dir, &*c);
  return session.go();
}

}  // namespace descent::train
