#pragma once
// The training loop: learning is not pure optimization (Goodfellow et al. 2016, 8.1).
//
// The loop is a small core (sample, train::compute_gradient, the divergence policy, the
// update, the epoch's evaluation) with callbacks (train/callback.hpp): metrics.jsonl, the
// progress display, early stopping and periodic checkpoints are callbacks of the trainer,
// and run() takes more. Data splits come from train/data.hpp, evaluation from
// train/evaluate.hpp.
//
// It minimizes the surrogate loss (negative log-likelihood, mean over the minibatch) and
// reports the true loss (0-1 error) on train, validation and test; it stops early on the
// validation 0-1 error (or surrogate) and restores the best parameters. The test set is
// touched once, at the end.
//
// A run writes <out_dir>/<name>/:
//   run.json           the run id and how the run ended (train/run_folder.hpp)
//   config.toml        the resolved config
//   metrics.jsonl      one JSON object per line: a "header" record (the run's sizes), "step"
//                      records (every log_every_steps-th minibatch's loss, gradient norm
//                      and learning rate), "epoch" records (train and validation surrogate
//                      and 0-1 error; epoch 0 is the initial parameters), one "final" record
//                      (or a "stopped" record: diverged, interrupted)
//   model.safetensors  the best parameters (by the monitored validation metric)
//   init.safetensors   the initial parameters, written at step 0 (train/trajectory.hpp)
//   snapshots/         step-<k>.safetensors every snapshots.every_steps updates (when > 0)
//   trajectory.json    the trajectory's length sum ||theta_{k+1} - theta_k|| and its
//                      straight distance from theta_0
//   checkpoints/       step-<k>.ckpt: the whole training state (train/checkpoint.hpp), written
//                      at the start, every checkpoint.every_epochs epochs / every_steps updates,
//                      on SIGINT/SIGTERM (request_stop) and when the loop ends; the newest
//                      checkpoint.keep are kept. resume() continues from the newest valid one.
//   tb/                TensorBoard event files: metrics.jsonl's scalars, histograms of the
//                      parameters and gradients (train/tensorboard.hpp, docs/tensorboard.md)
// docs/metrics.md documents every field; docs/reliability.md what a resume guarantees.
#include <cstdint>
#include <filesystem>
#include <iosfwd>
#include <memory>
#include <span>
#include <vector>

#include "descent/error.hpp"
#include "descent/nn/build.hpp"
#include "descent/nn/module.hpp"
#include "descent/optim/optimizer.hpp"
#include "descent/train/callback.hpp"
#include "descent/train/config.hpp"
#include "descent/train/data.hpp"
#include "descent/train/evaluate.hpp"
#include "descent/train/run_folder.hpp"

namespace descent::train {

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

// evaluate() of the model's network (train/evaluate.hpp).
Evaluation evaluate(Model& model, const Split& split, std::int64_t batch = 1000,
                    std::vector<std::int64_t>* confusion = nullptr);

struct RunResult {
  std::filesystem::path run_dir;
  std::int64_t epochs_run = 0;
  std::int64_t steps = 0;
  std::int64_t best_epoch = 0;
  bool stopped_early = false;      // a callback ended the loop before its epochs (early stopping, ...)
  double best_validation_error = 0.0;
  double best_validation_loss = 0.0;
  double grad_norm_at_stop = 0.0;  // mean gradient norm over the last epoch run
  Evaluation train, test;          // of the restored best parameters
  double wall_seconds = 0.0;       // all processes of the run together (a resumed run included)
  std::int64_t divergences = 0;    // non-finite losses or gradients met (skipped or rolled back)
  bool sampler_exhausted = false;  // the sampler (a stream) ran out before config.epochs
  bool shows_progress = true;      // config.progress is not "none" (and a log was given)
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
int stop_requested() noexcept;  // the signal of a pending request, 0 when none

// Trains per the config and writes the run folder <out_dir>/<name> (train/run_folder.hpp: a
// folder that already holds a run is refused unless `existing` says otherwise; a run that
// fails before its first checkpoint leaves no folder). `log` receives the progress display and
// the summary (nullptr: silent). `callbacks` (not owned; they must outlive the call) are
// attached to the loop after the trainer's own and before checkpoints (train/callback.hpp).
// Divergence (a NaN or infinite loss, caught before the update, or gradient, caught before it
// or, where nothing reads the norm before the update and the optimizer's fused loop sums it,
// right after it: docs/reliability.md) follows
// config.divergence.policy: stop (NumericError naming the step and the first non-finite
// gradient), skip the batch, or roll back to the newest checkpoint with the learning rate
// scaled by divergence.lr_scale. Throws Interrupted after request_stop.
RunResult run(const TrainConfig& config, std::ostream* log, const std::vector<Callback*>& callbacks = {},
              ExistingRun existing = ExistingRun::refuse);

// Continues the run in `run_dir` from its newest valid checkpoint (damaged ones are skipped
// with a warning on `log`) with the config saved in it. With the same thread count the
// result is bit for bit that of the run never interrupted (docs/reliability.md). A run whose
// loop had ended only redoes the final evaluation. Throws IoError when the folder is missing,
// is a file or is not a run folder (RunFolder::for_resume), or holds no valid checkpoint;
// DataError when the checkpoint belongs to another run (run id), does not fit the data or the
// model, or metrics.jsonl is shorter than the checkpoint recorded.
// `callbacks` as for run(): those with a state_key get their saved state back.
RunResult resume(const std::filesystem::path& run_dir, std::ostream* log, const std::vector<Callback*>& callbacks = {});

}  // namespace descent::train
