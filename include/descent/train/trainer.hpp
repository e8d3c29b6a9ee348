#pragma once
// The training loop: learning is not pure optimization (Goodfellow et al. 2016, 8.1).
//
// It minimizes the surrogate loss (negative log-likelihood, mean over the minibatch) and
// reports the true loss (0-1 error) on train, validation and test; it stops early on the
// validation 0-1 error (or surrogate) and restores the best parameters. The test set is
// touched once, at the end.
//
// A run writes <out_dir>/<name>/:
//   config.toml        the resolved config
//   metrics.jsonl      one JSON object per line: "step" records (every minibatch's loss,
//                      gradient norm and learning rate), "epoch" records (train and
//                      validation surrogate and 0-1 error), one "final" record
//   model.safetensors  the best parameters (by the monitored validation metric)
//   checkpoints/       step-<k>.ckpt: the whole training state (train/checkpoint.hpp), written
//                      at the start, every checkpoint.every_epochs epochs / every_steps updates,
//                      on SIGINT/SIGTERM (request_stop) and when the loop ends; the newest
//                      checkpoint.keep are kept. resume() continues from the newest valid one.
// docs/metrics.md documents every field; docs/reliability.md what a resume guarantees.
#include <cstdint>
#include <filesystem>
#include <iosfwd>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "descent/data/dataset.hpp"
#include "descent/error.hpp"
#include "descent/nn/build.hpp"
#include "descent/nn/module.hpp"
#include "descent/optim/optimizer.hpp"
#include "descent/train/config.hpp"

namespace descent::train {

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

  std::int64_t size() const { return y.defined() ? y.dim(0) : 0; }
  std::int64_t dim() const { return x.defined() ? x.dim(1) : features; }
  // The features of rows [begin, end): a view of x, or the rows decoded into `buffer`
  // (reallocated when its shape differs).
  Tensor rows(std::int64_t begin, std::int64_t end, Tensor& buffer) const;
  // Copies the examples at `idx` into x [b, d] and y [b] (reallocated when b changes).
  void gather(std::span<const std::int64_t> idx, Tensor& x_out, Tensor& y_out) const;
  // The same for the features alone.
  void copy_features(std::span<const std::int64_t> idx, Tensor& x_out) const;
};

struct Data {
  Split train, validation, test;
  std::int32_t num_classes = 0;
  std::int64_t dim = 0;
  std::optional<data::Standardizer> standardizer;  // the training split's statistics, when standardized
};

// Loads and preprocesses the data of a config (read, scale, split, standardize with the
// training split's statistics, limits). Throws the readers' errors.
Data load_data(const TrainConfig& config);

// Building the model of config.model: nn/build.hpp.
using nn::build_model;
using Model = nn::Model;
// Initializes the parameters per config.init with config.seed, then sets every LSTM's forget
// gate bias to its forget_bias.
void initialize_model(Model& model, const TrainConfig& config);

// The optimizer of config.optimizer, .schedule, .clip and .averaging for a run of
// `total_steps` updates (the linear and cosine schedules end there unless schedule.tau is set),
// as run() builds it. Throws ConfigError as optim::make_optimizer.
std::unique_ptr<optim::Optimizer> make_optimizer(const TrainConfig& config, std::int64_t total_steps);

struct Evaluation {
  double loss = 0.0;   // mean surrogate (cross-entropy)
  double error = 0.0;  // 0-1 error
  std::int64_t examples = 0;
};
// Surrogate and 0-1 loss of the model on a split, in chunks of `batch` examples.
// With `confusion`, also the [C, C] confusion counts (row: true class, column: predicted).
Evaluation evaluate(Model& model, const Split& split, std::int64_t batch = 1000,
                    std::vector<std::int64_t>* confusion = nullptr);

struct RunResult {
  std::filesystem::path run_dir;
  std::int64_t epochs_run = 0;
  std::int64_t steps = 0;
  std::int64_t best_epoch = 0;
  bool stopped_early = false;
  double best_validation_error = 0.0;
  double best_validation_loss = 0.0;
  double grad_norm_at_stop = 0.0;  // mean gradient norm over the last epoch run
  Evaluation train, test;          // of the restored best parameters
  double wall_seconds = 0.0;       // all processes of the run together (a resumed run included)
  std::int64_t divergences = 0;    // non-finite losses or gradients met (skipped or rolled back)
  std::filesystem::path last_checkpoint;
};

// A run stopped on request (request_stop, i.e. SIGINT or SIGTERM in the CLI) after finishing
// its current update and writing a checkpoint; what() says how to resume.
class Interrupted : public Error {
 public:
  Interrupted(const std::string& message, int signal) : Error(message), signal_(signal) {}
  int signal() const { return signal_; }

 private:
  int signal_;
};

// Asks the running training loop to stop after its current update (async-signal-safe: a
// signal handler may call it). clear_stop_request() withdraws the request.
void request_stop(int signal) noexcept;
void clear_stop_request() noexcept;

// Trains per the config and writes the run folder. `log` receives the progress display and
// the summary (nullptr: silent).
// Divergence (a NaN or infinite loss or gradient, caught before the update) follows
// config.divergence.policy: stop (NumericError naming the step and the first non-finite
// gradient), skip the batch, or roll back to the newest checkpoint with the learning rate
// scaled by divergence.lr_scale. Throws Interrupted after request_stop.
RunResult run(const TrainConfig& config, std::ostream* log);

// Continues the run in `run_dir` from its newest valid checkpoint (damaged ones are skipped
// with a warning on `log`) with the config saved in it. With the same thread count the
// result is bit for bit that of the run never interrupted (docs/reliability.md). A run whose
// loop had ended only redoes the final evaluation. Throws IoError when the folder or a valid
// checkpoint is missing, DataError when the checkpoint does not fit the data or the model.
RunResult resume(const std::filesystem::path& run_dir, std::ostream* log);

}  // namespace descent::train
