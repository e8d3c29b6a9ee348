#pragma once
// The trainer's own callbacks that need nothing of its session: the records of
// metrics.jsonl and the progress display (train/callback.hpp says when each hook runs).
// Early stopping and periodic checkpoints hold the session's state and live with it
// (src/train/trainer.cpp).
#include "descent/train/callback.hpp"

namespace descent::train {

// metrics.jsonl: a "step" record every log_every_steps updates (loss, gradient norm, learning
// rate), an "eval" record per eval_every_steps evaluation, an "epoch" record per epoch and one
// for the initial evaluation, epoch 0 (docs/metrics.md). The header is the trainer's.
class MetricsRecords final : public Callback {
 public:
  bool on_step(const StepContext& c) override;
  bool on_evaluation(const EvalContext& c) override;
  bool on_epoch_end(const EpochContext& c) override;
};

// The display (run.progress()): the bar per step, a line per evaluation (epoch 0, every
// eval_every_steps, every epoch), the reason of a stop (docs/progress.md).
class ProgressDisplay final : public Callback {
 public:
  bool on_step(const StepContext& c) override;
  bool on_evaluation(const EvalContext& c) override;
  bool on_epoch_end(const EpochContext& c) override;
  void on_stop(const StopContext& c) override;
};

}  // namespace descent::train
