#pragma once
// The trainer's own callbacks that need nothing of its session: the records of
// metrics.jsonl and the progress display (train/callback.hpp says when each hook runs).
// Early stopping and periodic checkpoints hold the session's state and live with it
// (src/train/trainer.cpp).
#include "descent/train/callback.hpp"

namespace descent::train {

// metrics.jsonl: a "step" record per update (loss, gradient norm, learning rate), an "eval"
// record per eval_every_steps evaluation, an "epoch" record per epoch (docs/metrics.md).
class MetricsRecords final : public Callback {
 public:
  bool on_step(const StepContext& c) override;
  bool on_evaluation(const EvalContext& c) override;
  bool on_epoch_end(const EpochContext& c) override;
};

// The display (run.progress()): the bar per step, a line per epoch, the reason of a stop.
class ProgressDisplay final : public Callback {
 public:
  bool on_step(const StepContext& c) override;
  bool on_epoch_end(const EpochContext& c) override;
  void on_stop(const StopContext& c) override;
};

}  // namespace descent::train
