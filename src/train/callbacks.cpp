#include "descent/train/callbacks.hpp"

#include <iomanip>
#include <sstream>

#include <nlohmann/json.hpp>

namespace descent::train {

// metrics.jsonl: a "step" record per update, an "eval" record per eval_every_steps
// evaluation, an "epoch" record per epoch (docs/metrics.md).
bool MetricsRecords::on_step(const StepContext& c) {
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
  nlohmann::json r = {{"kind", "eval"},          {"step", c.step},           {"epoch", c.epoch},
                      {"train_loss", c.train.loss}, {"train_error", c.train.error}, {"wall_s", c.run.wall_seconds()}};
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

// The display: the bar per step, a line per epoch, the reason of a stop.
bool ProgressDisplay::on_step(const StepContext& c) {
  c.run.progress().step(c.epoch, c.position, c.epoch_loss, c.epoch_accuracy);
  return false;
}

bool ProgressDisplay::on_epoch_end(const EpochContext& c) {
  std::ostringstream line;
  line << std::fixed << "epoch " << c.epoch << "/" << c.run.config().epochs << "  train loss " << std::setprecision(4)
       << c.train.loss << " error " << std::setprecision(2) << 100 * c.train.error << "%";
  if (c.validation != nullptr) {
    line << "  val loss " << std::setprecision(4) << c.validation->loss << " error " << std::setprecision(2)
         << 100 * c.validation->error << "%";
  }
  line << "  |g| " << std::setprecision(3) << c.grad_norm_mean << "  " << std::setprecision(0) << c.examples_per_s
       << " ex/s";
  c.run.progress().line(line.str());
  return false;
}

void ProgressDisplay::on_stop(const StopContext& c) {
  if (!c.message.empty()) c.run.progress().line(c.message);
}

}  // namespace descent::train
