#include "descent/train/callbacks.hpp"

#include <iomanip>
#include <sstream>

#include <nlohmann/json.hpp>

namespace descent::train {
namespace {

// "train loss 0.4321 error 12.34%  val loss 0.4567 error 13.00%"
std::string evaluation_text(const Evaluation& train, const Evaluation* validation) {
  std::ostringstream line;
  line << std::fixed << "train loss " << std::setprecision(4) << train.loss << " error " << std::setprecision(2)
       << 100 * train.error << "%";
  if (validation != nullptr) {
    line << "  val loss " << std::setprecision(4) << validation->loss << " error " << std::setprecision(2)
         << 100 * validation->error << "%";
  }
  return line.str();
}

}  // namespace

// metrics.jsonl: a "step" record every log_every_steps updates, an "eval" record per
// eval_every_steps evaluation, an "epoch" record per epoch and for the initial evaluation
// (epoch 0) (docs/metrics.md).
bool MetricsRecords::on_step(const StepContext& c) {
  const std::int64_t every = c.run.config().log_every_steps;
  if (every > 1 && c.step % every != 0) return false;
  c.run.metrics().write({{"kind", "step"},
                         {"step", c.step},
                         {"epoch", c.epoch},
                         {"loss", c.gradient.loss_value},
                         {"grad_norm", c.gradient.grad_norm},
                         {"lr", c.lr},
                         {"wall_s", c.run.wall_seconds()}});
  return false;
}

bool MetricsRecords::on_evaluation(const EvalContext& c) {
  if (c.end_of_epoch) return false;  // the epoch record holds it
  nlohmann::json r;
  if (c.epoch == 0) {  // the initial parameters, before the first update: epoch 0's record
    r = {{"kind", "epoch"}, {"epoch", 0}, {"step", c.step}, {"train_loss", c.train.loss},
         {"train_error", c.train.error}, {"lr", c.run.optimizer().learning_rate(0)},
         {"clip_count", 0}, {"wall_s", c.run.wall_seconds()}};
  } else {
    r = {{"kind", "eval"},          {"step", c.step},           {"epoch", c.epoch},
         {"train_loss", c.train.loss}, {"train_error", c.train.error}, {"wall_s", c.run.wall_seconds()}};
  }
  if (c.validation != nullptr) {
    r["val_loss"] = c.validation->loss;
    r["val_error"] = c.validation->error;
  }
  c.run.metrics().write(r);
  return false;
}

bool MetricsRecords::on_epoch_end(const EpochContext& c) {
  nlohmann::json r = {{"kind", "epoch"},
                      {"epoch", c.epoch},
                      {"step", c.step},
                      {"train_loss", c.train.loss},
                      {"train_error", c.train.error},
                      {"lr", c.lr},
                      {"grad_norm_mean", c.grad_norm_mean},
                      {"clip_count", c.run.optimizer().clip_count()},
                      {"examples_per_s", c.examples_per_s},
                      {"wall_s", c.run.wall_seconds()}};
  if (c.validation != nullptr) {
    r["val_loss"] = c.validation->loss;
    r["val_error"] = c.validation->error;
  }
  c.run.metrics().write(r);
  return false;
}

// The display: the bar per step, a line per evaluation, the reason of a stop.
bool ProgressDisplay::on_step(const StepContext& c) {
  c.run.progress().step(c.epoch, c.position, c.epoch_loss, c.epoch_accuracy);
  return false;
}

bool ProgressDisplay::on_evaluation(const EvalContext& c) {
  if (c.end_of_epoch) return false;  // on_epoch_end's line says it
  if (c.epoch == 0) {
    c.run.progress().line("epoch 0/" + std::to_string(c.run.epochs()) + "  " + evaluation_text(c.train, c.validation) +
                          "  (initial weights)");
  } else {
    c.run.progress().line("step " + std::to_string(c.step) + " (epoch " + std::to_string(c.epoch) + ")  " +
                          evaluation_text(c.train, c.validation));
  }
  return false;
}

bool ProgressDisplay::on_epoch_end(const EpochContext& c) {
  std::ostringstream line;
  line << std::fixed << "epoch " << c.epoch << "/" << c.run.epochs() << "  " << evaluation_text(c.train, c.validation)
       << "  |g| " << std::setprecision(3) << c.grad_norm_mean << "  " << std::setprecision(0) << c.examples_per_s
       << " ex/s";
  c.run.progress().line(line.str());
  return false;
}

void ProgressDisplay::on_stop(const StopContext& c) {
  if (!c.message.empty()) c.run.progress().line(c.message);
}

}  // namespace descent::train
