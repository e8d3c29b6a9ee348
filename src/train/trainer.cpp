#include "descent/train/trainer.hpp"

#include "descent/train/early_stopping.hpp"

#include <unistd.h>

#include <algorithm>
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
#include "descent/tensor/kernels.hpp"
#include "descent/tensor/parallel.hpp"

namespace descent::train {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

DType model_dtype(const std::string& name) { return name == "f64" ? DType::f64 : DType::f32; }

std::int32_t max_label_plus_one(const data::Array& a, const data::Array& b) {
  double m = 0.0;
  for (float v : a.values) m = std::max(m, static_cast<double>(v));
  for (float v : b.values) m = std::max(m, static_cast<double>(v));
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
  const std::int32_t classes = max_label_plus_one(train_y, test_y);
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
  if (d.size() == 0) return s;
  Tensor x = Tensor::from<float>({d.size(), d.dim()}, std::span<const float>(d.features.values));
  s.x = dtype == DType::f32 ? x : x.to(dtype);
  s.y = Tensor::from<std::int32_t>({d.size()}, std::span<const std::int32_t>(d.labels));
  return s;
}

// Copies the examples at `idx` into the batch buffers (resized when the batch size changes).
void gather(const Split& from, const std::vector<std::int64_t>& idx, Tensor& x, Tensor& y) {
  const auto b = static_cast<std::int64_t>(idx.size());
  const std::int64_t d = from.x.dim(1);
  if (!x.defined() || x.dim(0) != b) {
    x = Tensor::empty({b, d}, from.x.dtype());
    y = Tensor::empty({b}, DType::i32);
  }
  const std::size_t row_bytes = static_cast<std::size_t>(d) * dtype_size(x.dtype());
  auto* dst = static_cast<std::byte*>(x.raw());
  const auto* src = static_cast<const std::byte*>(from.x.raw());
  const std::int32_t* ys = from.y.data<std::int32_t>();
  std::int32_t* yd = y.data<std::int32_t>();
  for (std::int64_t i = 0; i < b; ++i) {
    const auto r = static_cast<std::size_t>(idx[static_cast<std::size_t>(i)]);
    std::memcpy(dst + static_cast<std::size_t>(i) * row_bytes, src + r * row_bytes, row_bytes);
    yd[i] = ys[r];
  }
}

optim::OptimizerSpec optimizer_spec(const TrainConfig& c) {
  const OptimizerConfig& o = c.optimizer;
  optim::OptimizerSpec spec;
  spec.name = o.name == "momentum" && o.nesterov ? "nesterov" : o.name;
  spec.form = o.form;
  spec.lr = o.lr;
  spec.momentum = o.momentum;
  spec.rho = o.rho;
  spec.rho1 = o.rho1;
  spec.rho2 = o.rho2;
  spec.delta = o.delta;
  spec.weight_decay = o.weight_decay;
  spec.centered = o.centered;
  spec.amsgrad = o.amsgrad;
  spec.clip_global_norm = c.clip.global_norm;
  spec.clip_value = c.clip.value;
  spec.clip_param_norm = c.clip.param_norm;
  spec.averaging = c.averaging.kind == "arithmetic"    ? optim::Averaging::arithmetic
                   : c.averaging.kind == "exponential" ? optim::Averaging::exponential
                                                       : optim::Averaging::none;
  spec.averaging_rho = c.averaging.rho;
  return spec;
}

std::shared_ptr<optim::Schedule> make_schedule(const TrainConfig& c, double lr, std::int64_t total_steps) {
  const ScheduleConfig& s = c.schedule;
  const std::int64_t tau = s.tau > 0 ? s.tau : std::max<std::int64_t>(1, total_steps);
  const double floor = s.lr_end < 0 ? 0.0 : s.lr_end;
  if (s.name == "linear") return optim::linear_decay(lr, s.lr_end < 0 ? lr / 100.0 : s.lr_end, tau);
  if (s.name == "step") return optim::step_decay({.eps0 = lr, .gamma = s.gamma, .every = s.every});
  if (s.name == "exponential") return optim::exponential_decay({.eps0 = lr, .gamma = s.gamma});
  if (s.name == "inverse_time") return optim::inverse_time({.eps0 = lr, .decay = s.decay});
  if (s.name == "cosine") return optim::cosine({.eps0 = lr, .eps_min = floor, .warmup = s.warmup, .total = tau});
  if (s.name == "plateau") {
    return optim::reduce_on_plateau({.eps0 = lr, .factor = s.factor, .patience = s.patience, .eps_min = floor});
  }
  return optim::constant(lr);
}

std::unique_ptr<optim::Optimizer> make_optimizer(const TrainConfig& c, std::int64_t total_steps) {
  const optim::OptimizerSpec spec = optimizer_spec(c);
  return optim::make_optimizer(spec, make_schedule(c, optim::default_learning_rate(spec), total_steps));
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

Data load_data(const TrainConfig& config) {
  const DataConfig& c = config.data;
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
  if (c.standardize != "none") {
    const auto mode = c.standardize == "global" ? data::Standardizer::Mode::global : data::Standardizer::Mode::per_feature;
    const data::Standardizer s = data::fit_standardizer(train, mode);
    data::apply(s, train);
    if (validation.size() > 0) data::apply(s, validation);
    data::apply(s, test);
  }
  const DType dtype = model_dtype(config.model.dtype);
  Data out;
  out.num_classes = std::max(train.num_classes, test.num_classes);
  out.dim = train.dim();
  out.train = to_split(train, dtype);
  out.validation = to_split(validation, dtype);
  out.test = to_split(test, dtype);
  return out;
}

namespace {

std::string shape_text(const std::vector<std::int64_t>& shape) {
  std::string out = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) out += (i > 0 ? ", " : "") + std::to_string(shape[i]);
  return out + "]";
}

std::int64_t product(const std::vector<std::int64_t>& shape) {
  std::int64_t n = 1;
  for (const std::int64_t d : shape) n *= d;
  return n;
}

// The seed of the i-th layer's dropout mask stream: independent of the initialization's
// stream (seed itself) and of the sampler's (seed + 1).
std::uint64_t dropout_seed(std::uint64_t seed, std::size_t layer) {
  std::uint64_t z = seed + 0x9E3779B97F4A7C15ull * (static_cast<std::uint64_t>(layer) + 2);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Appends the modules of model.layers to `net`, inferring each layer's input shape (one
// example, without the batch dimension) from `dim` and the layers before it.
void build_layers(nn::Sequential& net, const ModelConfig& config, std::int64_t dim, std::int32_t classes,
                  std::uint64_t seed) {
  std::vector<std::int64_t> shape{dim};
  const std::size_t count = config.layers.size();
  for (std::size_t i = 0; i < count; ++i) {
    const LayerConfig& l = config.layers[i];
    const std::string at = "model.layers[" + std::to_string(i) + "] (" + l.type + "): ";
    const auto fail = [&](const std::string& what) -> void {
      throw ConfigError(at + what + " (its input is " + shape_text(shape) + " per example)");
    };
    const auto need_flat = [&] {
      if (shape.size() != 1) fail("expects a flat input; add {type = \"flatten\"} before it");
    };
    const auto need_image = [&] {
      if (shape.size() != 3)
        fail("expects images [channels, height, width]; add {type = \"unflatten\", shape = [C, H, W]} before it");
    };
    if (l.type == "linear") {
      need_flat();
      std::int64_t units = l.units;
      if (units == 0) {
        if (i + 1 != count) fail("needs units (only the last layer may leave it out: it then has one per class)");
        units = classes;
      }
      net.add(nn::Linear(shape[0], units, l.bias));
      shape = {units};
    } else if (l.type == "conv2d") {
      need_image();
      const autodiff::Conv2dOptions options{.stride = l.stride > 0 ? l.stride : 1, .padding = l.padding};
      const std::int64_t h = (shape[1] + 2 * options.padding - l.kernel) / options.stride + 1;
      const std::int64_t w = (shape[2] + 2 * options.padding - l.kernel) / options.stride + 1;
      if (shape[1] + 2 * options.padding < l.kernel || shape[2] + 2 * options.padding < l.kernel)
        fail("kernel " + std::to_string(l.kernel) + " is larger than the padded image");
      net.add(nn::Conv2d(shape[0], l.units, l.kernel, options, l.bias));
      shape = {l.units, h, w};
    } else if (l.type == "maxpool2d" || l.type == "avgpool2d") {
      need_image();
      const std::int64_t stride = l.stride > 0 ? l.stride : l.kernel;
      if (shape[1] < l.kernel || shape[2] < l.kernel) fail("kernel " + std::to_string(l.kernel) + " is larger than the image");
      if (l.type == "maxpool2d") {
        net.add(nn::MaxPool2d(l.kernel, stride));
      } else {
        net.add(nn::AvgPool2d(l.kernel, stride));
      }
      shape = {shape[0], (shape[1] - l.kernel) / stride + 1, (shape[2] - l.kernel) / stride + 1};
    } else if (l.type == "flatten") {
      net.add(nn::Flatten());
      shape = {product(shape)};
    } else if (l.type == "unflatten") {
      if (product(l.shape) != product(shape))
        fail("shape " + shape_text(l.shape) + " holds " + std::to_string(product(l.shape)) + " values, not " +
             std::to_string(product(shape)));
      net.add(nn::Unflatten(Shape(std::span<const std::int64_t>(l.shape))));
      shape = l.shape;
    } else if (l.type == "batchnorm") {
      if (shape.size() != 1 && shape.size() != 3) fail("expects a flat input or images");
      net.add(nn::BatchNorm(shape[0], {.eps = l.eps, .momentum = l.momentum}));
    } else if (l.type == "dropout") {
      net.add(nn::Dropout(l.p, dropout_seed(seed, i)));
    } else if (l.type == "relu" || l.type == "tanh" || l.type == "sigmoid") {
      net.append(std::make_unique<nn::ActivationModule>(nn::parse_activation(l.type)));
    } else if (l.type == "rnn" || l.type == "lstm" || l.type == "gru") {
      need_flat();
      if (shape[0] % l.input_size != 0)
        fail("input_size " + std::to_string(l.input_size) + " does not divide the " + std::to_string(shape[0]) +
             " inputs into time steps");
      const std::int64_t steps = shape[0] / l.input_size;
      const nn::CellKind kind = l.type == "rnn" ? nn::CellKind::rnn : l.type == "lstm" ? nn::CellKind::lstm : nn::CellKind::gru;
      net.append(std::make_unique<nn::Recurrent>(
          kind, l.input_size, l.units,
          nn::RecurrentOptions{.return_sequence = l.return_sequence, .truncate = l.truncate, .forget_bias = l.forget_bias}));
      shape = {l.return_sequence ? steps * l.units : l.units};
    } else {
      throw ConfigError(at + "unknown layer type");
    }
  }
  if (shape.size() != 1 || shape[0] != classes)
    throw ConfigError("model.layers: the last layer gives " + shape_text(shape) + " per example; the data has " +
                      std::to_string(classes) + " classes, so it must give [" + std::to_string(classes) +
                      "] (end with {type = \"linear\"})");
}

}  // namespace

Model build_model(const ModelConfig& config, std::int64_t dim, std::int32_t classes, std::uint64_t seed) {
  Model m;
  m.arena = std::make_unique<ParameterArena>(model_dtype(config.dtype));
  if (config.type == "sequential") {
    m.net = std::make_unique<nn::Sequential>(*m.arena);
    build_layers(*m.net, config, dim, classes, seed);
  } else if (config.type == "mlp") {
    std::vector<std::int64_t> sizes{dim};
    sizes.insert(sizes.end(), config.hidden.begin(), config.hidden.end());
    sizes.push_back(classes);
    m.net = std::make_unique<nn::Sequential>(nn::mlp(*m.arena, sizes, nn::parse_activation(config.activation)));
  } else {
    throw ConfigError("model.type = \"" + config.type + "\" is not available; use \"mlp\" or \"sequential\"");
  }
  m.arena->freeze();
  return m;
}

void initialize_model(Model& model, const TrainConfig& config) {
  nn::InitSpec spec;
  spec.weights = init::parse_scheme(config.init.weights);
  spec.options = init::default_options(spec.weights);
  spec.options.gain = config.init.gain;
  spec.options.sparse_k = config.init.sparse_k;
  spec.bias = config.init.bias;
  spec.seed = config.seed;
  nn::initialize(*model.arena, spec);
  nn::reset_forget_biases(*model.net);
}

Evaluation evaluate(Model& model, const Split& split, std::int64_t batch, std::vector<std::int64_t>* confusion) {
  Evaluation e;
  const std::int64_t n = split.size();
  if (n == 0) return e;
  double loss_sum = 0.0;
  std::int64_t errors = 0;
  autodiff::Tape tape;
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
    Tensor x = split.x.rows(begin, end);
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

RunResult run(const TrainConfig& config, std::ostream* log) {
  const auto t0 = Clock::now();
  if (config.threads > 0) set_num_threads(config.threads);
  RunResult result;
  Data data = load_data(config);
  Model model;
  try {
    model = build_model(config.model, data.dim, data.num_classes, config.seed);
  } catch (const ConfigError& e) {
    throw ConfigError(config.source + ": " + e.what());
  }
  initialize_model(model, config);
  // The run folder is made only once the data and the model are known to be good.
  result.run_dir = std::filesystem::path(config.out_dir) / config.name;
  std::error_code ec;
  std::filesystem::create_directories(result.run_dir, ec);
  if (ec) throw IoError(result.run_dir.string() + ": cannot create the run folder: " + ec.message());
  io::write_file_atomic(result.run_dir / "config.toml", to_toml(config));
  ParameterArena& arena = *model.arena;

  data::SamplerOptions so;
  so.kind = data::parse_sampler_kind(config.sampler.kind);
  so.batch_size = config.sampler.batch_size;
  so.drop_last = config.sampler.drop_last;
  so.seed = config.seed + 1;  // a stream of its own, independent of the initialization's
  data::Sampler sampler(data.train.size(), so);
  const std::int64_t steps_per_epoch = sampler.batches_per_epoch();
  check_batch_norm_batches(*model.net, config, data.train.size());
  auto optimizer = make_optimizer(config, steps_per_epoch * config.epochs);

  io::JsonLinesWriter metrics(result.run_dir / "metrics.jsonl");
  Progress progress(log, config.progress, config.epochs, steps_per_epoch);
  progress.line("descent: " + std::to_string(data.train.size()) + " train / " + std::to_string(data.validation.size()) +
                " validation / " + std::to_string(data.test.size()) + " test examples; " + model.net->describe() + ", " +
                std::to_string(arena.size()) + " parameters; " + optimizer->describe());

  const bool use_val = data.validation.size() > 0;
  const bool watch_loss = config.early_stopping.monitor == "val_loss";
  // The best parameters so far, with the buffers (running statistics) that go with them.
  Tensor best = arena.values().clone();
  Tensor best_buffers = arena.buffer_size() > 0 ? arena.buffers().clone() : Tensor();
  EarlyStopping stopper(config.early_stopping.patience, config.early_stopping.min_delta, config.early_stopping.enabled);
  std::int64_t k = 0;
  std::vector<std::int64_t> idx;
  Tensor bx, by;
  autodiff::Tape tape;

  // Polyak averaging: evaluation (and the kept weights) use the averaged iterate.
  Tensor iterate;
  const auto use_average = [&] {
    const Tensor avg = optimizer->averaged();
    if (!avg.defined()) return false;
    iterate = arena.values().clone();
    arena.values().copy_from(avg);
    return true;
  };
  auto eval_record = [&](std::int64_t epoch, double epoch_seconds, std::int64_t epoch_examples, double grad_norm_mean) {
    const Evaluation tr = evaluate(model, data.train);
    const Evaluation va = evaluate(model, data.validation);
    nlohmann::json r = {{"kind", "epoch"},           {"epoch", epoch},
                        {"step", k},                 {"train_loss", tr.loss},
                        {"train_error", tr.error},   {"lr", optimizer->learning_rate(k)},
                        {"grad_norm_mean", grad_norm_mean},
                        {"clip_count", optimizer->clip_count()},
                        {"examples_per_s", epoch_seconds > 0 ? epoch_examples / epoch_seconds : 0.0},
                        {"wall_s", seconds_since(t0)}};
    if (use_val) {
      r["val_loss"] = va.loss;
      r["val_error"] = va.error;
    }
    metrics.write(r);
    std::ostringstream line;
    line << std::fixed << "epoch " << epoch << "/" << config.epochs << "  train loss " << std::setprecision(4) << tr.loss
         << " error " << std::setprecision(2) << 100 * tr.error << "%";
    if (use_val) line << "  val loss " << std::setprecision(4) << va.loss << " error " << std::setprecision(2) << 100 * va.error << "%";
    line << "  |g| " << std::setprecision(3) << grad_norm_mean << "  " << std::setprecision(0)
         << (epoch_seconds > 0 ? epoch_examples / epoch_seconds : 0.0) << " ex/s";
    progress.line(line.str());
    return std::pair<Evaluation, Evaluation>{tr, va};
  };

  for (std::int64_t epoch = 1; epoch <= config.epochs && !sampler.exhausted(); ++epoch) {
    const auto e0 = Clock::now();
    double grad_norm_sum = 0.0, running_loss = 0.0, running_correct = 0.0, running_seen = 0.0;
    std::int64_t epoch_steps = 0, epoch_examples = 0;
    while (sampler.next(idx)) {
      gather(data.train, idx, bx, by);
      tape.clear();
      arena.zero_grad();
      optimizer->prepare(arena, k);
      autodiff::Var logits = model.net->forward(tape, tape.constant(bx));
      autodiff::Var loss = loss::cross_entropy(logits, by);
      tape.backward(loss);
      const double loss_value = loss.value().item();
      const double grad_norm = std::sqrt(kernels::sum_squares(arena.grads()));
      if (!std::isfinite(loss_value) || !std::isfinite(grad_norm)) {
        throw NumericError("training diverged at step " + std::to_string(k) + " (epoch " + std::to_string(epoch) +
                           "): loss " + std::to_string(loss_value) + ", first non-finite gradient in '" +
                           first_non_finite_gradient(arena) + "'; the parameters were not updated");
      }
      const double lr = optimizer->learning_rate(k);
      optimizer->step(arena, k);
      metrics.write({{"kind", "step"},
                     {"step", k},
                     {"epoch", epoch},
                     {"loss", loss_value},
                     {"grad_norm", grad_norm},
                     {"lr", lr},
                     {"wall_s", seconds_since(t0)}});
      ++k;
      if (config.eval_every_steps > 0 && k % config.eval_every_steps == 0) {
        const Evaluation tr = evaluate(model, data.train);
        nlohmann::json r = {{"kind", "eval"},        {"step", k},          {"epoch", epoch},
                            {"train_loss", tr.loss}, {"train_error", tr.error}, {"wall_s", seconds_since(t0)}};
        if (use_val) {
          const Evaluation va = evaluate(model, data.validation);
          r["val_loss"] = va.loss;
          r["val_error"] = va.error;
        }
        metrics.write(r);
      }
      ++epoch_steps;
      epoch_examples += by.numel();
      grad_norm_sum += grad_norm;
      const auto b = static_cast<double>(by.numel());
      running_loss += loss_value * b;
      running_correct += b - static_cast<double>(loss::count_errors(logits.value(), by));
      running_seen += b;
      progress.step(epoch, sampler.position(), running_loss / running_seen, running_correct / running_seen);
    }
    if (epoch_steps == 0) break;
    const double grad_norm_mean = grad_norm_sum / static_cast<double>(epoch_steps);
    const bool averaged = use_average();
    auto [tr, va] = eval_record(epoch, seconds_since(e0), epoch_examples, grad_norm_mean);
    result.epochs_run = epoch;
    result.grad_norm_at_stop = grad_norm_mean;
    const double metric = use_val ? (watch_loss ? va.loss : va.error) : (watch_loss ? tr.loss : tr.error);
    const bool stop = stopper.update(epoch, metric);
    optimizer->observe(metric);
    if (stopper.improved()) {
      best.copy_from(arena.values());
      if (best_buffers.defined()) best_buffers.copy_from(arena.buffers());
      result.best_epoch = epoch;
      result.best_validation_error = va.error;
      result.best_validation_loss = va.loss;
    }
    if (averaged) arena.values().copy_from(iterate);  // training goes on from the iterate
    if (stop) {
      result.stopped_early = true;
      progress.line("early stopping: no improvement of the " + config.early_stopping.monitor + " for " +
                    std::to_string(stopper.bad_epochs()) + " epochs; restoring epoch " + std::to_string(result.best_epoch));
      break;
    }
  }
  arena.values().copy_from(best);
  if (best_buffers.defined()) arena.buffers().copy_from(best_buffers);
  result.steps = k;
  result.train = evaluate(model, data.train);
  result.test = evaluate(model, data.test);
  result.wall_seconds = seconds_since(t0);
  io::save_parameters(result.run_dir / "model.safetensors", arena,
                      {{"format", "descent"}, {"model", model.net->describe()}, {"best_epoch", std::to_string(result.best_epoch)}});
  metrics.write({{"kind", "final"},
                 {"epochs", result.epochs_run},
                 {"steps", k},
                 {"best_epoch", result.best_epoch},
                 {"stopped_early", result.stopped_early},
                 {"grad_norm_at_stop", result.grad_norm_at_stop},
                 {"best_val_error", result.best_validation_error},
                 {"best_val_loss", result.best_validation_loss},
                 {"train_loss", result.train.loss},
                 {"train_error", result.train.error},
                 {"test_loss", result.test.loss},
                 {"test_error", result.test.error},
                 {"test_accuracy", 1.0 - result.test.error},
                 {"wall_s", result.wall_seconds}});
  metrics.flush();
  return result;
}

}  // namespace descent::train
